-- 002: what `postmux stats` reads (docs/webhooks.md), and webhook housekeeping.
--
-- stats_counts is an hourly rollup kept up to date by statement-level triggers,
-- so stats costs the same on 10 million events as on 10: it sums a few rows
-- per workspace and hour instead of counting events.
--   kind 'event':  events inserted, per (workspace, UTC hour of created_at, type)
--   kind 'status': recipients per current status, per (workspace, UTC hour of
--                  the MESSAGE's created_at, status); a status change adds -1
--                  to the old status and +1 to the new one.
-- The triggers only ever INSERT delta rows (folded = false): no row is updated
-- on the delivery path, so concurrent outcome batches never wait on each other
-- or deadlock over a hot counter. pmx_stats_fold() sums the deltas into one
-- folded row per key; each trigger runs it about once every 64 statements
-- (or by hand: SELECT pmx_stats_fold()), at most one at a time
-- (pg_try_advisory_xact_lock: a second caller skips). Readers sum folded and
-- unfolded rows alike, so a fold never changes an answer.
-- The rollup is history: pruning old messages, recipients or events does not
-- lower it (delete stats_counts rows by hour to prune it too).

CREATE TABLE stats_counts (
    workspace_id text NOT NULL,
    hour         timestamptz NOT NULL,   -- date_trunc('hour', ..., 'UTC')
    kind         text NOT NULL CHECK (kind IN ('event', 'status')),
    name         text NOT NULL,          -- event type or recipient status
    n            bigint NOT NULL,        -- a delta; a 'status' delta may be negative
    folded       boolean NOT NULL DEFAULT false
);
-- Two partial indexes and no other: a delta row costs one index entry on the
-- delivery path. stats reads the folded rows through the first (by hour, the
-- workspace compared in the index) and the few deltas through the second.
CREATE UNIQUE INDEX stats_counts_folded_key ON stats_counts (hour, workspace_id, kind, name)
    WHERE folded;
CREATE INDEX stats_counts_deltas_idx ON stats_counts (hour) WHERE NOT folded;

CREATE FUNCTION pmx_stats_fold() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    folded_rows bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('postmux'), hashtext('stats_fold')) THEN
        RETURN 0;
    END IF;
    -- Deltas committed after this statement's snapshot are not seen, so not
    -- deleted: they wait for the next fold.
    WITH d AS (
        DELETE FROM stats_counts WHERE NOT folded
        RETURNING workspace_id, hour, kind, name, n
    )
    INSERT INTO stats_counts AS s (workspace_id, hour, kind, name, n, folded)
    SELECT workspace_id, hour, kind, name, sum(n), true
      FROM d GROUP BY hour, workspace_id, kind, name
     ORDER BY hour, workspace_id, kind, name
    ON CONFLICT (hour, workspace_id, kind, name) WHERE folded
    DO UPDATE SET n = s.n + EXCLUDED.n;
    GET DIAGNOSTICS folded_rows = ROW_COUNT;
    RETURN folded_rows;
END $$;

CREATE FUNCTION pmx_stats_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO stats_counts (workspace_id, hour, kind, name, n)
    SELECT workspace_id, date_trunc('hour', created_at, 'UTC'), 'event', type, count(*)
      FROM new_rows GROUP BY 1, 2, 4;
    IF random() < 1.0 / 64 THEN
        PERFORM pmx_stats_fold();
    END IF;
    RETURN NULL;
END $$;

-- Each message is looked up once by its primary key (LATERAL ... LIMIT 1 keeps
-- the planner from hashing all of messages: it cannot know how few rows a
-- transition table holds; MATERIALIZED keeps it from repeating the lookup for
-- every status of the message).
CREATE FUNCTION pmx_stats_recipients_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH x AS (
        SELECT message_id, status, count(*) AS n FROM new_rows GROUP BY 1, 2
    ), m AS MATERIALIZED (
        SELECT d.message_id, l.workspace_id, date_trunc('hour', l.created_at, 'UTC') AS hour
          FROM (SELECT DISTINCT message_id FROM x) d
         CROSS JOIN LATERAL (SELECT workspace_id, created_at FROM messages
                              WHERE id = d.message_id LIMIT 1) l
    )
    INSERT INTO stats_counts (workspace_id, hour, kind, name, n)
    SELECT m.workspace_id, m.hour, 'status', x.status, sum(x.n)
      FROM x JOIN m USING (message_id)
     GROUP BY 1, 2, 4;
    IF random() < 1.0 / 64 THEN
        PERFORM pmx_stats_fold();
    END IF;
    RETURN NULL;
END $$;

-- Every old row counts -1, every new row +1; unchanged statuses cancel out
-- before any message is looked up (an update that only bumps attempts costs
-- no lookup at all).
CREATE FUNCTION pmx_stats_recipients_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH x AS (
        SELECT message_id, status, sum(d) AS d
          FROM (SELECT message_id, status, -1 AS d FROM old_rows
                UNION ALL
                SELECT message_id, status, 1 FROM new_rows) u
         GROUP BY 1, 2
        HAVING sum(d) <> 0
    ), m AS MATERIALIZED (
        SELECT d.message_id, l.workspace_id, date_trunc('hour', l.created_at, 'UTC') AS hour
          FROM (SELECT DISTINCT message_id FROM x) d
         CROSS JOIN LATERAL (SELECT workspace_id, created_at FROM messages
                              WHERE id = d.message_id LIMIT 1) l
    )
    INSERT INTO stats_counts (workspace_id, hour, kind, name, n)
    SELECT m.workspace_id, m.hour, 'status', x.status, sum(x.d)
      FROM x JOIN m USING (message_id)
     GROUP BY 1, 2, 4
    HAVING sum(x.d) <> 0;
    IF random() < 1.0 / 64 THEN
        PERFORM pmx_stats_fold();
    END IF;
    RETURN NULL;
END $$;

-- Triggers before the backfill: CREATE TRIGGER waits for writers in flight and
-- holds new ones until this migration commits, so no row is counted twice or
-- missed.
CREATE TRIGGER events_stats AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION pmx_stats_events();
CREATE TRIGGER recipients_stats_insert AFTER INSERT ON recipients
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION pmx_stats_recipients_insert();
CREATE TRIGGER recipients_stats_update AFTER UPDATE ON recipients
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION pmx_stats_recipients_update();

INSERT INTO stats_counts (workspace_id, hour, kind, name, n, folded)
SELECT workspace_id, date_trunc('hour', created_at, 'UTC'), 'event', type, count(*), true
  FROM events GROUP BY 1, 2, 4;
INSERT INTO stats_counts (workspace_id, hour, kind, name, n, folded)
SELECT m.workspace_id, date_trunc('hour', m.created_at, 'UTC'), 'status', r.status, count(*), true
  FROM recipients r JOIN messages m ON m.id = r.message_id
 GROUP BY 1, 2, 4;

-- Webhooks: one per URL per scope (a workspace, or the organization), so an
-- endpoint is never sent the same event twice by accident.
CREATE UNIQUE INDEX webhooks_scope_url_key ON webhooks (COALESCE(workspace_id, ''), url);

COMMENT ON COLUMN webhooks.secret IS
    'v1:<base64 of an AES-256-GCM blob under the master key, as dkim/keycrypt.h seals>; '
    'aad "postmux-webhook-v1:<webhook id>"; plaintext = the secret as printed by webhook add';
