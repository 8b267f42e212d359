-- 003: the webhook outbox (docs/webhooks.md; webhooks/sender.h sends it).
--
-- Every events row gets one webhook_deliveries row per matching webhook in the
-- same transaction that records the event (a statement trigger over the
-- inserted rows), so an event can never be recorded without its deliveries,
-- whoever inserts it. Matching: the event's own workspace's webhooks plus the
-- organization-wide ones (workspace_id NULL), whose events array is empty or
-- holds the event's type.
--
-- Workers claim due rows (FOR UPDATE SKIP LOCKED), lease them while the POST
-- is in flight (next_attempt_at pushed forward), and record delivered_at, or
-- the error and the next attempt, or failed_at once the 24 h after the event
-- are over. Order per recipient: within one ordering key (webhook_id,
-- message_id, recipient) only the oldest pending row may be claimed.
-- message_id and recipient are '' (not NULL) when the event has none, so the
-- key compares with plain equality and one index serves it.

CREATE TABLE webhook_deliveries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id      text NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event_id        bigint NOT NULL,              -- events.id (events is append-only)
    message_id      text NOT NULL DEFAULT '',     -- ordering key: events.message_id or ''
    recipient       text NOT NULL DEFAULT '',     -- ordering key: events.recipient or ''
    attempt         integer,                      -- recipients.attempts when the event was recorded
    response        text,                         -- recipients.last_response then, when the event has no detail
    attempts        integer NOT NULL DEFAULT 0,   -- POSTs made so far
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,         -- the event's created_at + 24 h: then give up
    delivered_at    timestamptz,                  -- a 2xx answer
    failed_at       timestamptz,                  -- given up
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now()
);
-- The ordering key (the "older pending row" probe), and webhook removal's cascade.
CREATE INDEX webhook_deliveries_key_idx
    ON webhook_deliveries (webhook_id, message_id, recipient, id);
-- What is due.
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
-- Clean-up of finished rows.
CREATE INDEX webhook_deliveries_done_idx
    ON webhook_deliveries ((coalesce(delivered_at, failed_at)))
    WHERE delivered_at IS NOT NULL OR failed_at IS NOT NULL;

-- One statement trigger per INSERT into events (the pipeline records a whole
-- batch in one statement): one INSERT ... SELECT for all its rows, and one
-- NOTIFY on postmux_webhooks (identical notifications of one transaction are
-- folded into one by Postgres) so senders look at once instead of at their
-- next poll. The attempt count and SMTP reply are copied now: the recipients
-- row moves on with later attempts.
CREATE FUNCTION pmx_webhook_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhooks) THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_deliveries (webhook_id, event_id, message_id, recipient, attempt,
                                    response, expires_at)
    SELECT w.id, e.id, coalesce(e.message_id, ''), coalesce(e.recipient, ''), r.attempts,
           CASE WHEN e.detail IS NULL THEN r.last_response END,
           e.created_at + interval '24 hours'
      FROM pmx_new_events e
      JOIN webhooks w
        ON (w.workspace_id = e.workspace_id OR w.workspace_id IS NULL)
       AND (cardinality(w.events) = 0 OR e.type = ANY (w.events))
      LEFT JOIN recipients r ON r.message_id = e.message_id AND r.address = e.recipient
     ORDER BY e.id, w.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        PERFORM pg_notify('postmux_webhooks', '');
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER events_webhooks AFTER INSERT ON events
    REFERENCING NEW TABLE AS pmx_new_events
    FOR EACH STATEMENT EXECUTE FUNCTION pmx_webhook_enqueue();
