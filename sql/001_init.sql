-- 001: the tables of docs/data.md.
-- Ids that users see are text with a type prefix (ws_, key_, wh_, msg_) and 16
-- lowercase base32 characters; the worker generates message ids itself so a
-- batch of messages, recipients and events goes to Postgres in one round trip.

CREATE TABLE workspaces (
    id              text PRIMARY KEY CHECK (id ~ '^ws_[a-z2-7]{16}$'),
    name            text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
    industry        text CHECK (length(industry) <= 200),
    website         text CHECK (length(website) <= 2000),
    test_mode       boolean NOT NULL DEFAULT false,
    catch_all       text CHECK (length(catch_all) <= 320),
    rate_per_second numeric CHECK (rate_per_second > 0),          -- null = unlimited
    burst           integer NOT NULL DEFAULT 10 CHECK (burst BETWEEN 1 AND 1000000),
    daily_quota     bigint CHECK (daily_quota > 0),                -- null = none
    suspended       boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE workspace_testers (
    workspace_id text NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    address      text NOT NULL CHECK (address = lower(address) AND length(address) <= 320),
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, address)
);

CREATE TABLE domains (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id text NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    domain       text NOT NULL UNIQUE CHECK (domain = lower(domain) AND length(domain) <= 253),
    verify_token text NOT NULL,
    verified_at  timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX domains_workspace_idx ON domains (workspace_id);

CREATE TABLE dkim_keys (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    domain_id       bigint NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
    selector        text NOT NULL CHECK (selector ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    algorithm       text NOT NULL CHECK (algorithm IN ('rsa-sha256', 'ed25519-sha256')),
    public_key      text NOT NULL,            -- base64 of the DER SubjectPublicKeyInfo (rsa) or raw key (ed25519), as in p=
    private_key_enc bytea NOT NULL,           -- AES-256-GCM under the master key
    active          boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (domain_id, selector)
);

CREATE TABLE api_keys (
    id           text PRIMARY KEY CHECK (id ~ '^key_[a-z2-7]{16}$'),
    workspace_id text REFERENCES workspaces(id) ON DELETE CASCADE,   -- null = organization key
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    prefix       text NOT NULL,
    hash         bytea NOT NULL UNIQUE CHECK (length(hash) = 32),   -- SHA-256 of the secret
    scopes       text[] NOT NULL DEFAULT '{send}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    last_used_at timestamptz
);
CREATE INDEX api_keys_workspace_idx ON api_keys (workspace_id);

CREATE TABLE webhooks (
    id           text PRIMARY KEY CHECK (id ~ '^wh_[a-z2-7]{16}$'),
    workspace_id text REFERENCES workspaces(id) ON DELETE CASCADE,   -- null = organization-wide
    url          text NOT NULL CHECK (url ~ '^https?://'),
    events       text[] NOT NULL DEFAULT '{}',                       -- empty = every event
    secret       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhooks_workspace_idx ON webhooks (workspace_id);

-- messages and events carry workspace_id without a foreign key: a job in the
-- stream of a workspace that does not exist is still recorded as rejected.
CREATE TABLE messages (
    id           text PRIMARY KEY,
    workspace_id text NOT NULL,
    job_id       text NOT NULL,
    client_id    text,
    mail_from    text NOT NULL,
    header_from  text,
    subject      text,
    metadata     text CHECK (length(metadata) <= 4096),
    source       text NOT NULL CHECK (source IN ('redis', 'smtp')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, job_id)
);
CREATE INDEX messages_client_id_idx ON messages (workspace_id, client_id, created_at)
    WHERE client_id IS NOT NULL;
CREATE INDEX messages_created_idx ON messages (workspace_id, created_at);

CREATE TABLE recipients (
    message_id      text NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    address         text NOT NULL,
    status          text NOT NULL CHECK (status IN
                        ('queued', 'sent', 'deferred', 'bounced', 'rejected', 'suppressed')),
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_response   text,
    next_attempt_at timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, address)
);
CREATE INDEX recipients_deferred_idx ON recipients (next_attempt_at) WHERE status = 'deferred';

CREATE TABLE events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id text NOT NULL,
    message_id   text,
    recipient    text,
    type         text NOT NULL CHECK (type IN
                     ('message.queued', 'message.sent', 'message.deferred', 'message.bounced',
                      'message.rejected', 'message.suppressed', 'domain.verified')),
    detail       text,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_workspace_idx ON events (workspace_id, created_at);
CREATE INDEX events_message_idx ON events (message_id);

-- Live settings: every change to what a worker caches (workspaces, testers,
-- domains, keys) is announced on channel postmux_settings with the workspace id
-- as payload, so workers refresh within seconds without a restart.
CREATE FUNCTION pmx_notify_settings() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ws text;
BEGIN
    IF TG_TABLE_NAME = 'workspaces' THEN
        ws := COALESCE(NEW.id, OLD.id);
    ELSIF TG_TABLE_NAME = 'dkim_keys' THEN
        SELECT d.workspace_id INTO ws FROM domains d
         WHERE d.id = COALESCE(NEW.domain_id, OLD.domain_id);
    ELSE
        ws := COALESCE(NEW.workspace_id, OLD.workspace_id);
    END IF;
    PERFORM pg_notify('postmux_settings', COALESCE(ws, '*'));
    RETURN NULL;
END $$;

CREATE TRIGGER workspaces_notify AFTER INSERT OR UPDATE OR DELETE ON workspaces
    FOR EACH ROW EXECUTE FUNCTION pmx_notify_settings();
CREATE TRIGGER testers_notify AFTER INSERT OR UPDATE OR DELETE ON workspace_testers
    FOR EACH ROW EXECUTE FUNCTION pmx_notify_settings();
CREATE TRIGGER domains_notify AFTER INSERT OR UPDATE OR DELETE ON domains
    FOR EACH ROW EXECUTE FUNCTION pmx_notify_settings();
CREATE TRIGGER dkim_keys_notify AFTER INSERT OR UPDATE OR DELETE ON dkim_keys
    FOR EACH ROW EXECUTE FUNCTION pmx_notify_settings();
