-- 014: a cheaper outcome batch (docs/data.md "Recording outcomes cheaply";
-- docs/bench.md). The delivery path's statement (sql/outcomes.c) writes the
-- stats_counts deltas of the events and recipients it inserts, the same the insert
-- triggers of 002 would, and says so with a transaction-local setting,
-- postmux.stats = 'inline': the two triggers below skip such a statement. The
-- update trigger stays as it was: only it sees the row version an update replaced.
-- Every other writer (the CLI, inbound reports, the unsubscribe page, the guard)
-- leaves the setting alone and is counted by the triggers as before. A statement trigger's WHEN cannot see rows, only the
-- setting; the transition tables are still captured.
DROP TRIGGER events_stats ON events;
DROP TRIGGER recipients_stats_insert ON recipients;
CREATE TRIGGER events_stats AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT
    WHEN (current_setting('postmux.stats', true) IS DISTINCT FROM 'inline')
    EXECUTE FUNCTION pmx_stats_events();
CREATE TRIGGER recipients_stats_insert AFTER INSERT ON recipients
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT
    WHEN (current_setting('postmux.stats', true) IS DISTINCT FROM 'inline')
    EXECUTE FUNCTION pmx_stats_recipients_insert();

-- Two indexes no query reads (docs/data.md lists what each index serves): every
-- message paid an entry in each. postmux stats reads stats_counts; GET /v1/events
-- pages by (workspace_id, id) and filters `since` through events_workspace_idx.
DROP INDEX messages_created_idx;
DROP INDEX events_message_idx;

-- The foreign key from recipients to messages checked every recipient row with a
-- query of its own (FOR KEY SHARE on the message). Its one writer, the outcome
-- statement, puts recipients only under a message it just inserted or found in
-- the item's workspace (sql/outcomes.c), which is a stronger check. Without it,
-- deleting messages no longer deletes their recipients: delete both (docs/data.md).
ALTER TABLE recipients DROP CONSTRAINT recipients_message_id_fkey;
