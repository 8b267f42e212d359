-- 007: revoking an API key reaches the workers at once.
--
-- A submission session keeps the key it authenticated with; every new
-- transaction checks it again when the workers' settings moved on
-- (docs/submission.md: "a revoked key stops working within 5 s", also inside an open
-- session). Announcing api_keys changes on postmux_settings makes every worker
-- reload: the load carries a digest of the keys' revocation and scopes, so
-- the reload swaps and bumps the generation the sessions compare with.
-- Only the columns that decide whether a key may be used: last_used_at,
-- written every minute, does not notify.

CREATE TRIGGER api_keys_notify AFTER UPDATE OF revoked_at, scopes, hash OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION pmx_notify_settings();
