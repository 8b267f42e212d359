/*
 * The webhook outbox's statements; see q_webhooks.h.
 */
#include "sql/q_webhooks.h"

#include <inttypes.h>
#include <stdio.h>

#define CLEAN_BATCH "5000"

/*
 * $1 rows wanted, $2 lease seconds. Of one ordering key only the oldest
 * pending row qualifies (NOT EXISTS); SKIP LOCKED lets every worker claim at
 * once without waiting on each other; the lease (next_attempt_at moved
 * forward in the same statement) keeps the row from being claimed again
 * while its POST is in flight. The outer SELECT joins what the body needs.
 */
static const char CLAIM_SQL[] =
    "WITH c AS ("
    "  UPDATE webhook_deliveries d"
    "     SET next_attempt_at = now() + $2::integer * interval '1 second'"
    "   WHERE d.id IN ("
    "         SELECT w.id FROM webhook_deliveries w"
    "          WHERE w.delivered_at IS NULL AND w.failed_at IS NULL"
    "            AND w.next_attempt_at <= now()"
    "            AND NOT EXISTS ("
    "                SELECT 1 FROM webhook_deliveries o"
    "                 WHERE o.webhook_id = w.webhook_id AND o.message_id = w.message_id"
    "                   AND o.recipient = w.recipient AND o.id < w.id"
    "                   AND o.delivered_at IS NULL AND o.failed_at IS NULL)"
    "          ORDER BY w.next_attempt_at"
    "          LIMIT $1::integer"
    "          FOR UPDATE SKIP LOCKED)"
    "  RETURNING d.id, d.webhook_id, d.event_id, d.attempt, d.response, d.attempts)"
    "SELECT c.id, c.attempts, h.id, h.url, h.secret, e.id, e.type,"
    "       to_char(e.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
    "       e.workspace_id, ws.name, e.message_id, m.job_id, m.client_id, e.recipient,"
    "       coalesce(e.detail, c.response), coalesce(c.attempt, 0), m.metadata"
    "  FROM c JOIN webhooks h ON h.id = c.webhook_id"
    "  LEFT JOIN events e ON e.id = c.event_id"
    "  LEFT JOIN workspaces ws ON ws.id = e.workspace_id"
    "  LEFT JOIN messages m ON m.id = e.message_id"
    " ORDER BY c.id";

/*
 * $1 ids, $2 delivered (2xx), $3 errors, $4 gone (the event row no longer
 * exists: give up now), $5 retry base ms, $6 retry cap ms. A failure moves
 * next_attempt_at to now + base * 2^attempts (capped), but never past the
 * expiry, so the last attempt is made at the 24 h mark; a failure at or after
 * it gives the row up. The rows queued behind a failed one (same key) are
 * moved to the same time, so the due scan does not keep finding rows that
 * cannot go before it. Returns the rows given up, for the log.
 */
static const char RESULT_SQL[] =
    "WITH r AS ("
    "  SELECT * FROM unnest($1::bigint[], $2::bool[], $3::text[], $4::bool[])"
    "    AS r(id, ok, err, gone)"
    "), u AS ("
    "  UPDATE webhook_deliveries d"
    "     SET attempts = d.attempts + 1,"
    "         delivered_at = CASE WHEN r.ok THEN now() END,"
    "         failed_at = CASE WHEN NOT r.ok AND (r.gone OR now() >= d.expires_at)"
    "                          THEN now() END,"
    "         last_error = r.err,"
    "         next_attempt_at = CASE WHEN r.ok THEN d.next_attempt_at ELSE"
    "             least(now() + least($5::bigint * power(2, least(d.attempts, 30)), $6::bigint)"
    "                           * interval '1 millisecond', d.expires_at) END"
    "    FROM r"
    "   WHERE d.id = r.id AND d.delivered_at IS NULL AND d.failed_at IS NULL"
    "  RETURNING d.id, d.webhook_id, d.message_id, d.recipient, d.event_id, d.attempts,"
    "            d.next_attempt_at, d.delivered_at IS NOT NULL AS delivered,"
    "            d.failed_at IS NOT NULL AS gave_up"
    "), b AS ("
    "  UPDATE webhook_deliveries o SET next_attempt_at = u.next_attempt_at"
    "    FROM u"
    "   WHERE NOT u.delivered AND NOT u.gave_up"
    "     AND o.webhook_id = u.webhook_id AND o.message_id = u.message_id"
    "     AND o.recipient = u.recipient AND o.id > u.id"
    "     AND o.delivered_at IS NULL AND o.failed_at IS NULL"
    "     AND o.next_attempt_at < u.next_attempt_at"
    ")"
    "SELECT u.id, u.webhook_id, u.event_id, u.attempts FROM u WHERE u.gave_up ORDER BY u.id";

/* $1 hours. A small batch, SKIP LOCKED: workers never queue on each other. */
static const char CLEAN_SQL[] =
    "DELETE FROM webhook_deliveries WHERE id IN ("
    "  SELECT id FROM webhook_deliveries"
    "   WHERE (delivered_at IS NOT NULL OR failed_at IS NOT NULL)"
    "     AND coalesce(delivered_at, failed_at) < now() - $1::integer * interval '1 hour'"
    "   LIMIT " CLEAN_BATCH " FOR UPDATE SKIP LOCKED)";

pmx_db_async_req_t *pmx_db_webhooks_claim(pmx_db_async_t *db, unsigned n, int lease_s,
                                          pmx_db_async_result_fn cb, void *arg)
{
    char n_s[16], lease[16];
    snprintf(n_s, sizeof n_s, "%u", n);
    snprintf(lease, sizeof lease, "%d", lease_s);
    const char *params[] = { n_s, lease };
    return pmx_db_async_query_params(db, CLAIM_SQL, 2, params, cb, arg);
}

pmx_db_async_req_t *pmx_db_webhooks_record(pmx_db_async_t *db, const char *ids,
                                           const char *delivered, const char *errors,
                                           const char *gone, uint64_t base_ms, uint64_t cap_ms,
                                           pmx_db_async_result_fn cb, void *arg)
{
    char base[24], cap[24];
    snprintf(base, sizeof base, "%" PRIu64, base_ms);
    snprintf(cap, sizeof cap, "%" PRIu64, cap_ms);
    const char *params[] = { ids, delivered, errors, gone, base, cap };
    return pmx_db_async_query_params(db, RESULT_SQL, 6, params, cb, arg);
}

pmx_db_async_req_t *pmx_db_webhooks_clean(pmx_db_async_t *db, int keep_h,
                                          pmx_db_async_result_fn cb, void *arg)
{
    char hours[16];
    snprintf(hours, sizeof hours, "%d", keep_h);
    const char *params[] = { hours };
    return pmx_db_async_query_params(db, CLEAN_SQL, 1, params, cb, arg);
}
