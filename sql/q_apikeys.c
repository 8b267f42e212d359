/*
 * The api_keys statements of SMTP submission; see q_apikeys.h.
 */
#include "sql/q_apikeys.h"

static const char LOOKUP_SQL[] =
    "SELECT id, COALESCE(workspace_id, ''), revoked_at IS NOT NULL,"
    "       array_to_string(scopes, ',')"
    "  FROM api_keys WHERE hash = decode($1, 'hex')";

static const char TOUCH_SQL[] =
    "UPDATE api_keys SET last_used_at = now() WHERE id = ANY($1::text[])";

pmx_db_async_req_t *pmx_db_apikeys_lookup(pmx_db_async_t *db, const char *hash_hex,
                                          pmx_db_async_result_fn cb, void *arg)
{
    const char *params[1] = { hash_hex };
    return pmx_db_async_query_params(db, LOOKUP_SQL, 1, params, cb, arg);
}

pmx_db_async_req_t *pmx_db_apikeys_touch(pmx_db_async_t *db, const char *ids,
                                         pmx_db_async_result_fn cb, void *arg)
{
    const char *params[1] = { ids };
    return pmx_db_async_query_params(db, TOUCH_SQL, 1, params, cb, arg);
}
