/*
 * The statements that change what an administrator manages — testers,
 * suppressions, API keys — shared by the CLI (`postmux tester|suppression|
 * apikey`, postmux(1)) and API v1 (http/api_manage.c, docs/http.md), so both
 * check and write the same way. Every change writes its audit_log row in the
 * same statement (sql/012_audit_log.sql): parameter $1 is always the actor,
 * "cli" or the id of the API key that made the change; no row is written when
 * nothing changed.
 *
 * These are SQL texts with text parameters, run with PQexecParams by the CLI
 * and with pmx_db_async_query_params by a worker. Columns are listed per
 * statement; timestamps are ISO 8601 UTC text ("2026-12-07T01:02:03Z").
 */
#ifndef PMX_SQL_Q_ADMIN_H
#define PMX_SQL_Q_ADMIN_H

#define PMX_SQL_ISO_UTC(col) \
    "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

/* $1 actor, $2 workspace id, $3 address (parsed; lowercased here).
 * One row: address (stored form), changed (1 or 0). */
extern const char pmx_sql_tester_add[];
extern const char pmx_sql_tester_remove[];
/* $1 workspace id. Rows: address, created_at. */
extern const char pmx_sql_tester_list[];

/* $1 actor, $2 workspace id, $3 address, $4 scope, $5 reason, $6 detail (or NULL).
 * Adds or replaces. One row: address. */
extern const char pmx_sql_suppression_add[];
/* $1 actor, $2 workspace id, $3 address, $4 scope. A row (address) when removed. */
extern const char pmx_sql_suppression_remove[];
/* $1 workspace id, $2 reason or NULL. Rows: address, scope, reason, detail,
 * message_id, created_at, expires_at (the live entries, by address and scope). */
extern const char pmx_sql_suppression_list[];

/* $1 actor, $2 key id, $3 workspace id (NULL = organization key), $4 name,
 * $5 prefix, $6 SHA-256 of the key text (hex), $7 scopes (array literal).
 * One row: created_at. */
extern const char pmx_sql_apikey_create[];
/* $1 actor, $2 key id, $3 whose keys: NULL any, "" organization keys, else a
 * workspace id. One row: exists (0/1), revoked now (0/1). */
extern const char pmx_sql_apikey_revoke[];
/* $1 whose keys (as for revoke). Rows: id, workspace_id, name, prefix,
 * scopes (comma-separated), created_at, revoked_at, last_used_at. */
extern const char pmx_sql_apikey_list[];

/* $1 workspace id or NULL (all), $2 the window in milliseconds or NULL (all).
 * Rows: at, api_key_id, workspace_id, action, target, oldest first. */
extern const char pmx_sql_audit_list[];

#endif
