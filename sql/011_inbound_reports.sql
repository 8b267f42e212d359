-- 011: what the [inbound] listener received (docs/feedback.md "Inbound SMTP").
--
-- inbound_reports: every message accepted by the inbound SMTP listener, kept
-- whole, one row per accepted envelope recipient, written BEFORE the "250"
-- (nothing accepted is lost). The recipient row a report is about is named
-- the way its token names it: (message_id, rcpt_idx) = recipients.message_id
-- and recipients.idx (lib/reftoken.h); both NULL when the report names no
-- recipient of ours (an fbl@ report without a valid X-Postmux-Ref, or a token
-- whose message was pruned). No foreign key: a report outlives the rows it
-- names (pruning messages must not lose reports).
--   recipient_id  the same pair as one value, "<message_id>:<rcpt_idx>" (derived,
--              NULL with them): the name the product documents for the column
--   rcpt       the envelope recipient it came to (b-<token>@…, u-<token>@…, fbl@…)
--   kind       bounce | delay | complaint | auto_reply | unknown (the parser's
--              kind, inbound/report.h) or unsubscribe (mail to u-<token>@…)
--   parsed     what `postmux feedback parse` prints for it
--   raw        the message as received (CRLF, dots unstuffed)
--   applied_at when its outcome (status, events, suppression, unsubscribe) was
--              written: in the same transaction as those writes, so a report is
--              applied once; NULL = not yet (postmuxd retries such rows).
-- Rows older than 30 days are deleted by the workers' upkeep.
CREATE TABLE inbound_reports (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id text,
    message_id   text,
    rcpt_idx     integer CHECK (rcpt_idx BETWEEN 0 AND 65535),
    recipient_id text GENERATED ALWAYS AS (message_id || ':' || rcpt_idx::text) STORED,
    rcpt         text NOT NULL CHECK (length(rcpt) <= 320),
    mail_from    text NOT NULL CHECK (length(mail_from) <= 320),
    kind         text NOT NULL CHECK (kind IN
                     ('bounce', 'delay', 'complaint', 'auto_reply', 'unknown', 'unsubscribe')),
    parsed       jsonb NOT NULL,
    raw          bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    applied_at   timestamptz
);
CREATE INDEX inbound_reports_created_idx ON inbound_reports (created_at);
CREATE INDEX inbound_reports_unapplied_idx ON inbound_reports (created_at) WHERE applied_at IS NULL;
CREATE INDEX inbound_reports_message_idx ON inbound_reports (message_id) WHERE message_id IS NOT NULL;
