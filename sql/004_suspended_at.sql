-- 004: when a workspace was suspended.
--
-- Workers hold a suspended workspace's jobs for [delivery] suspend_hold after
-- this moment, so a short suspension loses nothing; once the hold is over the
-- jobs are rejected (workspace_suspended, docs/queue.md). Workers load how long ago
-- that was by Postgres's clock, so every worker on every host counts the hold
-- from the same instant, also after a restart, whatever their own clocks say. A trigger keeps it, whoever flips `suspended` (the CLI or
-- a plain UPDATE): set when a workspace becomes suspended, kept while it stays
-- suspended, cleared when it is resumed.

ALTER TABLE workspaces ADD COLUMN suspended_at timestamptz;
UPDATE workspaces SET suspended_at = updated_at WHERE suspended;   -- the best guess there is

CREATE FUNCTION pmx_workspace_suspended_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT NEW.suspended THEN
        NEW.suspended_at := NULL;
    ELSIF TG_OP = 'INSERT' OR NOT OLD.suspended OR OLD.suspended_at IS NULL THEN
        NEW.suspended_at := now();
    ELSE
        NEW.suspended_at := OLD.suspended_at;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER workspaces_suspended_at BEFORE INSERT OR UPDATE ON workspaces
    FOR EACH ROW EXECUTE FUNCTION pmx_workspace_suspended_at();
