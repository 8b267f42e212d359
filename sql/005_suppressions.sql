-- 005: the suppression list (docs/feedback.md).
--
-- One row per (workspace, address, scope): the workspace never mails the
-- address again in that scope ('*' = everything, else a job category) until
-- the row is removed or expires_at passes. Addresses are stored lower-cased,
-- as every comparison in postmux is case-insensitive.
--
-- Workers keep the whole list in memory (inbound/suppress.h) and follow it
-- through NOTIFY postmux_suppressions: a small change sends one notification
-- per row ("+ ws scope reason expires address" / "- ws scope address"), so a
-- bounce costs each worker one insertion, not a reload; a bulk change (an
-- import of more than 100 rows in one statement, a TRUNCATE) sends one '*'
-- and every worker reloads the list.

CREATE TABLE suppressions (
    -- Only for paging: workers load the list in keyset pages of id, which the
    -- planner serves from its index (a row comparison on the primary key is
    -- estimated so badly that every page became a full scan).
    id           bigint GENERATED ALWAYS AS IDENTITY,
    workspace_id text NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    address      text NOT NULL CHECK (address = lower(address)
                                      AND length(address) BETWEEN 3 AND 320
                                      AND address !~ '[[:space:][:cntrl:]]'),
    scope        text NOT NULL DEFAULT '*' CHECK (scope = '*' OR scope ~ '^[a-z0-9_.-]{1,64}$'),
    reason       text NOT NULL CHECK (reason IN
                     ('hard_bounce', 'soft_bounce', 'complaint', 'unsubscribe', 'manual')),
    detail       text CHECK (length(detail) <= 1000),
    message_id   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,                       -- null = never
    PRIMARY KEY (workspace_id, address, scope)
);
CREATE INDEX suppressions_reason_idx ON suppressions (workspace_id, reason, created_at);
CREATE UNIQUE INDEX suppressions_id_idx ON suppressions (id);

CREATE FUNCTION pmx_notify_suppressions() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n bigint := 0;
    r record;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('postmux_suppressions', '*');
        RETURN NULL;
    END IF;
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        SELECT count(*) INTO n FROM old_rows;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        n := n + (SELECT count(*) FROM new_rows);
    END IF;
    IF n > 100 THEN
        PERFORM pg_notify('postmux_suppressions', '*');
        RETURN NULL;
    END IF;
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        FOR r IN SELECT * FROM old_rows LOOP
            PERFORM pg_notify('postmux_suppressions',
                              '- ' || r.workspace_id || ' ' || r.scope || ' ' || r.address);
        END LOOP;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        FOR r IN SELECT * FROM new_rows LOOP
            PERFORM pg_notify('postmux_suppressions',
                              '+ ' || r.workspace_id || ' ' || r.scope || ' ' || r.reason || ' '
                              || COALESCE(floor(extract(epoch FROM r.expires_at))::bigint::text, '0')
                              || ' ' || r.address);
        END LOOP;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER suppressions_notify_ins AFTER INSERT ON suppressions
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION pmx_notify_suppressions();
CREATE TRIGGER suppressions_notify_upd AFTER UPDATE ON suppressions
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION pmx_notify_suppressions();
CREATE TRIGGER suppressions_notify_del AFTER DELETE ON suppressions
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION pmx_notify_suppressions();
CREATE TRIGGER suppressions_notify_trunc AFTER TRUNCATE ON suppressions
    FOR EACH STATEMENT EXECUTE FUNCTION pmx_notify_suppressions();
