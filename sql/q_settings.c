/*
 * The settings statement; see q_settings.h. One UNION ALL of four SELECTs,
 * each row tagged by its kind, so the whole state is one snapshot.
 */
#include "sql/q_settings.h"

static const char LOAD_SQL[] =
    "SELECT 'w', w.id, w.name, w.suspended::text, w.test_mode::text, w.catch_all,"
    "       w.rate_per_second::float8::text, w.burst::text, w.daily_quota::text,"
    "       (extract(epoch FROM now() - w.suspended_at) * 1000)::bigint::text,"
    "       (w.paused_at IS NOT NULL)::text"
    "  FROM workspaces w"
    " UNION ALL "
    /* A workspace's pool and route (sql/013_pools_routes.sql), only when set. */
    "SELECT 'r', w.id, w.pool, w.route, encode(w.route_password_enc, 'hex'),"
    "       NULL, NULL, NULL, NULL, NULL, NULL"
    "  FROM workspaces w WHERE w.pool IS NOT NULL OR w.route IS NOT NULL"
    " UNION ALL "
    "SELECT 't', t.workspace_id, t.address, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
    "  FROM workspace_testers t"
    " UNION ALL "
    "SELECT 'd', d.workspace_id, d.domain, (d.verified_at IS NOT NULL)::text, d.id::text,"
    "       d.return_path, NULL, NULL, NULL, NULL, NULL"
    "  FROM domains d"
    " UNION ALL "
    "SELECT 'k', d.workspace_id, d.id::text, k.selector, k.algorithm, k.id::text, c.us::text,"
    "       CASE WHEN (k.id, c.us) IN (SELECT * FROM unnest($1::bigint[], $2::bigint[]))"
    "            THEN NULL ELSE encode(k.private_key_enc, 'hex') END,"
    "       NULL, NULL, NULL"
    "  FROM dkim_keys k JOIN domains d ON d.id = k.domain_id"
    "  CROSS JOIN LATERAL (SELECT (extract(epoch FROM k.created_at) * 1000000)::bigint AS us) c"
    " WHERE k.active"
    /* One row that changes whenever an API key is revoked, deleted or its
     * scopes change: the load then swaps, and the generation it bumps makes
     * every submission session check its key again (docs/submission.md). */
    " UNION ALL "
    "SELECT 'a', count(*)::text,"
    "       encode(sha256(convert_to(COALESCE(string_agg(a.id || ':' || (a.revoked_at IS NULL)::text"
    "           || ':' || array_to_string(a.scopes, ','), ',' ORDER BY a.id), ''), 'UTF8')), 'hex'),"
    "       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
    "  FROM api_keys a";

const char *pmx_db_settings_load_sql(void) { return LOAD_SQL; }

pmx_db_async_req_t *pmx_db_settings_load(pmx_db_async_t *db, const char *key_ids,
                                         const char *key_created_us,
                                         pmx_db_async_result_fn cb, void *arg)
{
    const char *vals[2] = { key_ids, key_created_us };
    return pmx_db_async_query_params(db, LOAD_SQL, 2, vals, cb, arg);
}
