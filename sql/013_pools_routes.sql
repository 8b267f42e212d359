-- 013: a workspace's egress pool and its own route (docs/delivery.md "Egress pools"
-- and "Per-workspace routes"; postmux(1) workspace set --pool, --route).
--
-- pool: the name of a [pool NAME] section of postmux.conf(5); NULL = default (no pool).
--   The database cannot see the config: `postmux workspace set` refuses a name its
--   config lacks, and a worker whose config lacks it defers the workspace's mail.
-- route: NULL = default (the daemon's route), 'mx', or a canonical
--   smtp://[user@]host:port[?tls=none] / smtps://[user@]host:port (routing/wsroute.h).
-- route_password_enc: the route user's password, AES-256-GCM under the master key
--   (additional data "postmux-route-v1:<workspace id>:<route>"); only with a route.
-- The workspaces trigger of 001 announces every change on postmux_settings.
ALTER TABLE workspaces
    ADD COLUMN pool text CHECK (pool ~ '^[A-Za-z0-9._-]{1,63}$' AND pool <> 'default'),
    ADD COLUMN route text CHECK (route = 'mx' OR (route ~ '^smtps?://' AND length(route) <= 1024)),
    ADD COLUMN route_password_enc bytea,
    ADD CONSTRAINT workspaces_route_password_check
        CHECK (route_password_enc IS NULL OR route ~ '^smtps?://');
