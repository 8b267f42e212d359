/* Unsubscribe by recipient token; see q_unsubscribe.h. */
#include "sql/q_unsubscribe.h"

#include <stdio.h>

/* The recipient a token names, with its workspace (which must still exist). */
#define TARGET                                                                      \
    "SELECT m.workspace_id, w.name, lower(r.address) AS address,"                   \
    "       COALESCE(m.category, '*') AS scope, m.id AS message_id"                 \
    "  FROM recipients r JOIN messages m ON m.id = r.message_id"                    \
    "  JOIN workspaces w ON w.id = m.workspace_id"                                  \
    " WHERE r.message_id = $1 AND r.idx = $2::int"

static const char LOOKUP_SQL[] =
    "WITH t AS (" TARGET ")"
    "SELECT t.name, t.address, t.scope,"
    "       EXISTS (SELECT 1 FROM suppressions s WHERE s.workspace_id = t.workspace_id"
    "                  AND s.address = t.address AND s.scope IN ('*', t.scope)"
    "                  AND (s.expires_at IS NULL OR s.expires_at > now())) AS already"
    "  FROM t";

static const char APPLY_SQL[] =
    "WITH t AS (" TARGET "), s AS ("
    "  INSERT INTO suppressions (workspace_id, address, scope, reason, detail, message_id)"
    "  SELECT workspace_id, address, scope, 'unsubscribe', $3, message_id FROM t"
    "  ON CONFLICT (workspace_id, address, scope) DO NOTHING"
    "  RETURNING workspace_id, address, message_id"
    "), e AS ("
    "  INSERT INTO events (workspace_id, message_id, recipient, type, detail)"
    "  SELECT workspace_id, message_id, address, 'message.unsubscribed', $3 FROM s"
    ")"
    "SELECT t.workspace_id, t.address, t.scope, (SELECT count(*) FROM s) AS added, t.name FROM t";

pmx_db_async_req_t *pmx_db_unsub_lookup(pmx_db_async_t *db, const char *msg_id, unsigned idx,
                                        pmx_db_async_result_fn cb, void *arg)
{
    char i[16];
    snprintf(i, sizeof i, "%u", idx);
    const char *vals[2] = { msg_id, i };
    return pmx_db_async_query_params(db, LOOKUP_SQL, 2, vals, cb, arg);
}

pmx_db_async_req_t *pmx_db_unsub_apply(pmx_db_async_t *db, const char *msg_id, unsigned idx,
                                       const char *via, pmx_db_async_result_fn cb, void *arg)
{
    char i[16];
    snprintf(i, sizeof i, "%u", idx);
    const char *vals[3] = { msg_id, i, via };
    return pmx_db_async_query_params(db, APPLY_SQL, 3, vals, cb, arg);
}
