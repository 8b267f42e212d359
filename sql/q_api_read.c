/* API v1's read statements; see q_api_read.h. */
#include "sql/q_api_read.h"

#include "sql/q_admin.h"

const char pmx_sql_api_message[] =
    "SELECT m.id, m.job_id, m.client_id, m.mail_from, m.subject, "
    PMX_SQL_ISO_UTC("m.created_at") ","
    "       r.address, r.status, r.attempts, r.last_response, r.bounce_class, "
    PMX_SQL_ISO_UTC("r.updated_at")
    "  FROM messages m LEFT JOIN recipients r ON r.message_id = m.id"
    " WHERE m.workspace_id = $1 AND (m.job_id = $2 OR m.id = $2)"
    " ORDER BY r.idx NULLS LAST, r.address";

const char pmx_sql_api_events[] =
    "SELECT e.id, e.type, e.message_id, m.job_id, e.recipient, e.detail, "
    PMX_SQL_ISO_UTC("e.created_at")
    "  FROM events e LEFT JOIN messages m ON m.id = e.message_id"
    " WHERE e.workspace_id = $1 AND e.id > COALESCE($4::bigint, 0)"
    "   AND ($2::text IS NULL OR e.type = $2)"
    "   AND ($3::bigint IS NULL OR e.created_at >= now() - $3::bigint * interval '1 millisecond')"
    " ORDER BY e.workspace_id, e.id LIMIT $5::int";

/* Folded rows and deltas apart, so each reads through its own partial index
 * (sql/002_stats.sql). */
const char pmx_sql_api_stats[] =
    "WITH w AS (SELECT CASE WHEN $2::bigint IS NULL THEN NULL::timestamptz"
    "                  ELSE date_trunc('hour', now() - $2::bigint * interval '1 millisecond',"
    "                                  'UTC') END AS s),"
    " c AS (SELECT kind, name, sum(n) AS n FROM ("
    "         SELECT kind, name, n FROM stats_counts, w"
    "          WHERE folded AND hour >= COALESCE(w.s, '-infinity') AND workspace_id = $1"
    "         UNION ALL"
    "         SELECT kind, name, n FROM stats_counts, w"
    "          WHERE NOT folded AND hour >= COALESCE(w.s, '-infinity') AND workspace_id = $1) x"
    "        GROUP BY 1, 2)"
    "SELECT " PMX_SQL_ISO_UTC("w.s") ", " PMX_SQL_ISO_UTC("now()") ", c.kind, c.name, c.n"
    "  FROM w LEFT JOIN c ON true";
