-- 009: the event types of what comes back after the hand-off (docs/feedback.md):
-- message.delayed (a delay DSN), message.complained (an ARF / FBL report) and
-- message.unsubscribed (one-click or mailto unsubscribe, docs/http.md).

ALTER TABLE events DROP CONSTRAINT events_type_check;
ALTER TABLE events ADD CONSTRAINT events_type_check CHECK (type IN
    ('message.queued', 'message.sent', 'message.deferred', 'message.bounced',
     'message.rejected', 'message.suppressed', 'message.delayed', 'message.complained',
     'message.unsubscribed', 'domain.verified', 'workspace.paused'));

-- recipients.idx: the recipient's position in its job (0-based; the same on every
-- attempt), the second half of what a recipient token names (lib/reftoken.h,
-- docs/feedback.md "Recipient tokens"). NULL on rows written before this migration.
ALTER TABLE recipients ADD COLUMN idx integer CHECK (idx BETWEEN 0 AND 65535);

-- messages.category: the job's category (docs/queue.md), the scope of an
-- unsubscribe made through the message. NULL = none (scope '*').
ALTER TABLE messages ADD COLUMN category text CHECK (category ~ '^[a-z0-9_.-]{1,64}$');

-- domains.return_path: the return-path domain of a verified domain D when
-- `domain add --return-path NAME` chose one (a subdomain of D); NULL = bounces.D.
ALTER TABLE domains ADD COLUMN return_path text
    CHECK (return_path = lower(return_path) AND length(return_path) <= 253);
