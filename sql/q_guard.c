/* The reputation guard's statement; see q_guard.h. */
#include "sql/q_guard.h"

#include <inttypes.h>
#include <stdio.h>

static const char GUARD_SQL[] =
    "WITH lock AS MATERIALIZED ("
    "  SELECT pg_try_advisory_xact_lock(hashtext('postmux'), hashtext('guard')) AS ok"
    "), w AS ("
    "  SELECT w.id, greatest(now() - make_interval(secs => $1::bigint), w.guard_since) AS since,"
    "         COALESCE(w.max_bounce_rate, $2::numeric, 'Infinity') AS mb,"
    "         COALESCE(w.max_complaint_rate, $3::numeric, 'Infinity') AS mc"
    "    FROM workspaces w, lock"
    "   WHERE lock.ok AND w.paused_at IS NULL"
    "), c AS ("
    "  SELECT w.*,"
    "    (SELECT COALESCE(sum(s.n), 0) FROM stats_counts s"
    "      WHERE s.hour >= date_trunc('hour', w.since, 'UTC') AND s.workspace_id = w.id"
    "        AND s.kind = 'event' AND s.name IN ('message.sent', 'message.bounced')) AS attempted,"
    "    (SELECT count(*) FROM suppressions x WHERE x.workspace_id = w.id"
    "        AND x.reason = 'hard_bounce' AND x.message_id IS NOT NULL"
    "        AND x.created_at >= w.since) AS hard,"
    "    (SELECT count(*) FROM suppressions x WHERE x.workspace_id = w.id"
    "        AND x.reason = 'complaint' AND x.message_id IS NOT NULL"
    "        AND x.created_at >= w.since) AS complaints"
    "    FROM w"
    "), o AS ("
    "  SELECT id, CASE WHEN 100.0 * hard / attempted > mb"
    "    THEN format('hard-bounce rate %s%% is over %s%% (%s of %s attempted since %s)',"
    "                round(100.0 * hard / attempted, 2), trim_scale(mb), hard, attempted,"
    "                to_char(since AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'))"
    "    ELSE format('complaint rate %s%% is over %s%% (%s of %s attempted since %s)',"
    "                round(100.0 * complaints / attempted, 2), trim_scale(mc), complaints, attempted,"
    "                to_char(since AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')) END AS why"
    "    FROM c"
    "   WHERE attempted > 0 AND attempted >= $4::bigint"
    "     AND (100.0 * hard / attempted > mb OR 100.0 * complaints / attempted > mc)"
    "), p AS ("
    "  UPDATE workspaces ws SET paused_at = now(), pause_reason = o.why"
    "    FROM o WHERE ws.id = o.id AND ws.paused_at IS NULL"
    "  RETURNING ws.id, ws.pause_reason"
    "), e AS ("
    "  INSERT INTO events (workspace_id, type, detail)"
    "  SELECT id, 'workspace.paused', pause_reason FROM p"
    ")"
    "SELECT id, pause_reason FROM p";

pmx_db_async_req_t *pmx_db_guard_run(pmx_db_async_t *db, uint64_t window_s, double max_bounce,
                                     double max_complaint, int min_sent,
                                     pmx_db_async_result_fn cb, void *arg)
{
    char w[24], mb[32], mc[32], ms[16];
    snprintf(w, sizeof w, "%" PRIu64, window_s);
    snprintf(mb, sizeof mb, "%.6f", max_bounce);
    snprintf(mc, sizeof mc, "%.6f", max_complaint);
    snprintf(ms, sizeof ms, "%d", min_sent);
    /* A negative default is "none": NULL, and COALESCE makes it Infinity. */
    const char *vals[4] = { w, max_bounce < 0 ? NULL : mb, max_complaint < 0 ? NULL : mc, ms };
    return pmx_db_async_query_params(db, GUARD_SQL, 4, vals, cb, arg);
}
