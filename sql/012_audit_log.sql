-- 012: audit_log, one row per change made through API v1 or the CLI
-- (docs/http.md "Audit log", postmux(1) `audit`). Written by the statement that
-- makes the change (a data-modifying WITH in the same statement, so in the same
-- transaction): a change is never recorded without happening, nor the reverse.
--   api_key_id: the API key that made the change, or 'cli' for `postmux`
--   action:     what was done, e.g. 'tester.add', 'apikey.revoke'
--   target:     what it was done to (an address, a key id, a domain)
-- No foreign keys: the log outlives what it names.

CREATE TABLE audit_log (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    api_key_id   text NOT NULL CHECK (api_key_id = 'cli' OR api_key_id ~ '^key_[a-z2-7]{16}$'),
    workspace_id text,                                    -- NULL = the organization
    action       text NOT NULL CHECK (action ~ '^[a-z_]+\.[a-z_]+$'),
    target       text NOT NULL CHECK (length(target) <= 1000)
);
CREATE INDEX audit_log_at_idx ON audit_log (at);
CREATE INDEX audit_log_workspace_idx ON audit_log (workspace_id, at);

-- GET /v1/events pages a workspace's events by id (docs/http.md): one index
-- range per page, however many events other workspaces have.
CREATE INDEX events_workspace_id_idx ON events (workspace_id, id);
