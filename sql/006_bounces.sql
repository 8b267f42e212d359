-- 006: what the feedback loop keeps about failures (docs/feedback.md).
--
-- recipients.bounce_class: the class of the recipient's last failure, as the
-- classifier (inbound/classify.h, rules in inbound/bounce-rules.conf) named it
-- from the relay's reply; kept when a later attempt succeeds.
-- bounce_counts: soft bounces in a row per (workspace, address). The outcome
-- writer adds to it when a recipient bounces with a soft class, deletes the row
-- when the address is sent to, and suppresses the address for
-- [feedback] soft_bounce_suppress_for when the count reaches soft_bounce_limit.

ALTER TABLE recipients ADD COLUMN bounce_class text CHECK (bounce_class IN
    ('user_unknown', 'domain_unknown', 'has_moved', 'mailbox_full', 'message_too_big',
     'content_rejected', 'policy', 'rate_limited', 'network', 'expired', 'system', 'other'));

CREATE TABLE bounce_counts (
    workspace_id text NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    address      text NOT NULL CHECK (address = lower(address)),
    soft_bounces integer NOT NULL CHECK (soft_bounces > 0),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, address)
);
