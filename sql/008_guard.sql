-- 008: the reputation guard (docs/feedback.md, "Reputation guard").
--
-- A workspace whose hard-bounce or complaint rate over [feedback] guard_window
-- passes its limit is paused: paused_at and pause_reason are set, nothing more
-- is sent, its jobs stay queued (never rejected), and an event
-- workspace.paused goes to its webhooks. max_bounce_rate / max_complaint_rate
-- override the [feedback] defaults per workspace: a percentage, 'Infinity' for
-- "none" (never paused on it), NULL for the default. `workspace set --resume`
-- clears the pause and sets guard_since, so the window starts afresh.

ALTER TABLE workspaces
    ADD COLUMN paused_at          timestamptz,
    ADD COLUMN pause_reason       text CHECK (length(pause_reason) <= 1000),
    ADD COLUMN max_bounce_rate    numeric CHECK (max_bounce_rate >= 0),
    ADD COLUMN max_complaint_rate numeric CHECK (max_complaint_rate >= 0),
    ADD COLUMN guard_since        timestamptz NOT NULL DEFAULT '-infinity';

ALTER TABLE events DROP CONSTRAINT events_type_check;
ALTER TABLE events ADD CONSTRAINT events_type_check CHECK (type IN
    ('message.queued', 'message.sent', 'message.deferred', 'message.bounced',
     'message.rejected', 'message.suppressed', 'domain.verified', 'workspace.paused'));
