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
