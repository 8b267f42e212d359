-- 015: the update trigger of recipients returns at once when no row was updated
-- (docs/data.md "Recording outcomes cheaply"). The outcome statement is an
-- INSERT ... ON CONFLICT DO UPDATE, and Postgres fires statement-level UPDATE
-- triggers for such a statement even when every row was inserted: one plpgsql
-- call and an INSERT ... SELECT with an aggregate and a LATERAL join per batch,
-- for nothing on nearly every batch (~30 us of the backend's CPU, measured with
-- one-message batches). An empty old_rows is the only change; the rest is 002's.
CREATE OR REPLACE FUNCTION pmx_stats_recipients_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM old_rows) THEN
        RETURN NULL;
    END IF;
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
