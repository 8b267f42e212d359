/* The administrator's changes with their audit rows; see q_admin.h. */
#include "sql/q_admin.h"

#define AUDIT(action, ws, target, from)                                             \
    " INSERT INTO audit_log (api_key_id, workspace_id, action, target)"              \
    " SELECT $1, " ws ", '" action "', " target " FROM " from

const char pmx_sql_tester_add[] =
    "WITH a AS (SELECT lower($3) AS address),"
    " w AS (INSERT INTO workspace_testers (workspace_id, address)"
    "       SELECT $2, address FROM a ON CONFLICT DO NOTHING RETURNING address),"
    " l AS (" AUDIT("tester.add", "$2", "address", "w") ")"
    " SELECT address, (SELECT count(*) FROM w) FROM a";

const char pmx_sql_tester_remove[] =
    "WITH a AS (SELECT lower($3) AS address),"
    " w AS (DELETE FROM workspace_testers t USING a"
    "       WHERE t.workspace_id = $2 AND t.address = a.address RETURNING t.address),"
    " l AS (" AUDIT("tester.remove", "$2", "address", "w") ")"
    " SELECT address, (SELECT count(*) FROM w) FROM a";

const char pmx_sql_tester_list[] =
    "SELECT address, " PMX_SQL_ISO_UTC("created_at")
    " FROM workspace_testers WHERE workspace_id = $1 ORDER BY address";

const char pmx_sql_suppression_add[] =
    "WITH a AS (SELECT lower($3) AS address),"
    " s AS (INSERT INTO suppressions (workspace_id, address, scope, reason, detail)"
    "       SELECT $2, address, $4, $5, $6 FROM a"
    "       ON CONFLICT (workspace_id, address, scope) DO UPDATE"
    "         SET reason = EXCLUDED.reason, detail = EXCLUDED.detail,"
    "             created_at = now(), expires_at = NULL, message_id = NULL"
    "       RETURNING address),"
    " l AS (" AUDIT("suppression.add", "$2", "address || ' ' || $4", "s") ")"
    " SELECT address FROM s";

const char pmx_sql_suppression_remove[] =
    "WITH s AS (DELETE FROM suppressions"
    "           WHERE workspace_id = $2 AND address = lower($3) AND scope = $4"
    "           RETURNING address),"
    " l AS (" AUDIT("suppression.remove", "$2", "address || ' ' || $4", "s") ")"
    " SELECT address FROM s";

const char pmx_sql_suppression_list[] =
    "SELECT address, scope, reason, detail, message_id,"
    "  " PMX_SQL_ISO_UTC("created_at") ", " PMX_SQL_ISO_UTC("expires_at")
    " FROM suppressions"
    " WHERE workspace_id = $1 AND ($2::text IS NULL OR reason = $2)"
    "   AND (expires_at IS NULL OR expires_at > now())"
    " ORDER BY address, scope";

const char pmx_sql_apikey_create[] =
    "WITH k AS (INSERT INTO api_keys (id, workspace_id, name, prefix, hash, scopes)"
    "           VALUES ($2, $3, $4, $5, decode($6, 'hex'), $7::text[])"
    "           RETURNING id, workspace_id, created_at),"
    " l AS (" AUDIT("apikey.create", "workspace_id", "id", "k") ")"
    " SELECT " PMX_SQL_ISO_UTC("created_at") " FROM k";

/* Whose keys $N names: NULL any, "" the organization's, else a workspace's. */
#define KEY_OWNER(n) \
    "(" n "::text IS NULL OR COALESCE(workspace_id, '') = " n ")"

const char pmx_sql_apikey_revoke[] =
    "WITH k AS (SELECT id FROM api_keys WHERE id = $2 AND " KEY_OWNER("$3") "),"
    " u AS (UPDATE api_keys SET revoked_at = now()"
    "       WHERE id IN (SELECT id FROM k) AND revoked_at IS NULL"
    "       RETURNING id, workspace_id),"
    " l AS (" AUDIT("apikey.revoke", "workspace_id", "id", "u") ")"
    " SELECT (SELECT count(*) FROM k), (SELECT count(*) FROM u)";

const char pmx_sql_apikey_list[] =
    "SELECT id, workspace_id, name, prefix, array_to_string(scopes, ','), "
    PMX_SQL_ISO_UTC("created_at") ", " PMX_SQL_ISO_UTC("revoked_at") ", "
    PMX_SQL_ISO_UTC("last_used_at")
    " FROM api_keys WHERE " KEY_OWNER("$1")
    " ORDER BY created_at, id";

const char pmx_sql_audit_list[] =
    "SELECT " PMX_SQL_ISO_UTC("at") ", api_key_id, workspace_id, action, target"
    " FROM audit_log"
    " WHERE ($1::text IS NULL OR workspace_id = $1)"
    "   AND ($2::bigint IS NULL OR at >= now() - $2::bigint * interval '1 millisecond')"
    " ORDER BY at, id";
