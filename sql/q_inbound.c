/* The inbound listener's statements; see q_inbound.h. */
#include "sql/q_inbound.h"

#include <inttypes.h>
#include <stdio.h>

#include "sql/pgarray.h"

static const char STORE_SQL[] =
    "INSERT INTO inbound_reports (workspace_id, message_id, rcpt_idx, rcpt, mail_from, kind,"
    "                             parsed, raw)"
    "SELECT COALESCE((SELECT m.workspace_id FROM messages m WHERE m.id = x.mid), x.ws),"
    "       x.mid, x.idx, x.rcpt, $6, x.kind, $7::jsonb, $8::bytea"
    "  FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::text[])"
    "       WITH ORDINALITY AS x(rcpt, mid, idx, kind, ws, o)"
    " ORDER BY x.o "
    "RETURNING id, workspace_id, rcpt";

/* The recipient is found by its token's (message id, idx) only, never by an
 * address the report names (docs/feedback.md "Recipient tokens"). Hard and
 * soft bounces are handled as sql/outcomes.c handles the relay's replies; a
 * hard bounce or a complaint replaces a soft_bounce (expiring) or
 * unsubscribe row of the same address and scope. */
static const char APPLY_SQL[] =
    "WITH rep AS ("
    "  UPDATE inbound_reports SET applied_at = now()"
    "   WHERE id = $1::bigint AND applied_at IS NULL"
    "  RETURNING message_id, rcpt_idx"
    "), t AS ("
    "  SELECT m.workspace_id AS ws, m.id AS mid, r.address, lower(r.address) AS a"
    "    FROM rep JOIN recipients r ON r.message_id = rep.message_id AND r.idx = rep.rcpt_idx"
    "    JOIN messages m ON m.id = r.message_id"
    "   LIMIT 1"
    "), b AS ("
    "  UPDATE recipients r SET status = 'bounced', bounce_class = $4,"
    "         last_response = left(COALESCE($6::text, $3::text, 'bounced (async)'), 1000),"
    "         updated_at = now()"
    "    FROM t"
    "   WHERE $2 = 'bounce' AND r.message_id = t.mid AND r.address = t.address"
    "     AND r.status IN ('sent', 'deferred', 'queued')"
    "  RETURNING t.ws, t.mid, t.address, t.a"
    "), ev AS ("
    "  INSERT INTO events (workspace_id, message_id, recipient, type, detail)"
    "  SELECT ws, mid, address, 'message.bounced', $7 FROM b"
    "  UNION ALL"
    "  SELECT ws, mid, address,"
    "         CASE $2 WHEN 'delay' THEN 'message.delayed' ELSE 'message.complained' END, $7"
    "    FROM t WHERE $2 IN ('delay', 'complaint')"
    "), hard AS ("
    "  INSERT INTO suppressions AS s (workspace_id, address, scope, reason, detail, message_id)"
    "  SELECT ws, a, '*', 'hard_bounce', left($6, 1000), mid FROM b WHERE $5::bool"
    "  ON CONFLICT (workspace_id, address, scope) DO UPDATE"
    "     SET reason = 'hard_bounce', detail = EXCLUDED.detail, message_id = EXCLUDED.message_id,"
    "         expires_at = NULL, created_at = now()"
    "   WHERE s.reason IN ('soft_bounce', 'unsubscribe')"
    "), soft AS ("
    "  INSERT INTO bounce_counts AS c (workspace_id, address, soft_bounces, updated_at)"
    "  SELECT ws, a, 1, now() FROM b WHERE NOT $5::bool AND $8::int > 0"
    "  ON CONFLICT (workspace_id, address) DO UPDATE"
    "     SET soft_bounces = c.soft_bounces + 1, updated_at = now()"
    "  RETURNING c.workspace_id, c.address, c.soft_bounces"
    "), soft_supp AS ("
    "  INSERT INTO suppressions (workspace_id, address, scope, reason, detail, expires_at)"
    "  SELECT workspace_id, address, '*', 'soft_bounce',"
    "         soft_bounces || ' soft bounces in a row', now() + make_interval(secs => $9::bigint)"
    "    FROM soft WHERE soft_bounces >= $8::int"
    "  ON CONFLICT (workspace_id, address, scope) DO NOTHING"
    "), comp AS ("
    "  INSERT INTO suppressions AS s (workspace_id, address, scope, reason, detail, message_id)"
    "  SELECT ws, a, '*', 'complaint', $10, mid FROM t WHERE $2 = 'complaint'"
    "  ON CONFLICT (workspace_id, address, scope) DO UPDATE"
    "     SET reason = 'complaint', detail = EXCLUDED.detail, message_id = EXCLUDED.message_id,"
    "         expires_at = NULL, created_at = now()"
    "   WHERE s.reason IN ('soft_bounce', 'unsubscribe')"
    ")"
    "SELECT (SELECT count(*) FROM rep), (SELECT ws FROM t), (SELECT count(*) FROM b)";

pmx_db_async_req_t *pmx_db_inbound_store(pmx_db_async_t *db, const pmx_db_inbound_rcpt_t *r,
                                         size_t nr, const char *mail_from, const char *parsed,
                                         const char *raw, size_t n,
                                         pmx_db_async_result_fn cb, void *arg)
{
    pmx_buf_t a[5];
    for (int i = 0; i < 5; i++) {
        pmx_buf_init(&a[i]);
        pmx_buf_append_char(&a[i], '{');
    }
    for (size_t i = 0; i < nr; i++) {
        char idx[16];
        snprintf(idx, sizeof idx, "%d", r[i].idx);
        pmx_pgarray_text(&a[0], r[i].rcpt);
        pmx_pgarray_text(&a[1], r[i].message_id);
        pmx_pgarray_text(&a[2], r[i].message_id ? idx : NULL);
        pmx_pgarray_text(&a[3], r[i].kind);
        pmx_pgarray_text(&a[4], r[i].ws);
    }
    for (int i = 0; i < 5; i++) pmx_buf_append_char(&a[i], '}');
    const char *vals[8] = { pmx_buf_cstr(&a[0]), pmx_buf_cstr(&a[1]), pmx_buf_cstr(&a[2]),
                            pmx_buf_cstr(&a[3]), pmx_buf_cstr(&a[4]), mail_from, parsed,
                            raw ? raw : "" };
    int lens[8] = { -1, -1, -1, -1, -1, -1, -1, (int)n };
    pmx_db_async_req_t *q = pmx_db_async_query_binary(db, STORE_SQL, 8, vals, lens, cb, arg);
    for (int i = 0; i < 5; i++) pmx_buf_free(&a[i]);
    return q;
}

pmx_db_async_req_t *pmx_db_inbound_apply(pmx_db_async_t *db, const char *id,
                                         const pmx_db_inbound_act_t *a,
                                         pmx_db_async_result_fn cb, void *arg)
{
    char lim[16], secs[24];
    snprintf(lim, sizeof lim, "%u", a->soft_limit);
    snprintf(secs, sizeof secs, "%" PRIu64, a->soft_for_s);
    const char *vals[10] = { id, a->act, a->status, a->cls, a->hard ? "t" : "f", a->diagnostic,
                             a->detail, lim, secs,
                             a->feedback_type ? a->feedback_type : "complaint" };
    return pmx_db_async_query_params(db, APPLY_SQL, 10, vals, cb, arg);
}

pmx_db_async_req_t *pmx_db_inbound_mark(pmx_db_async_t *db, const char *id,
                                        pmx_db_async_result_fn cb, void *arg)
{
    const char *vals[1] = { id };
    return pmx_db_async_query_params(db,
        "UPDATE inbound_reports SET applied_at = now() WHERE id = $1::bigint AND applied_at IS NULL",
        1, vals, cb, arg);
}

pmx_db_async_req_t *pmx_db_inbound_unapplied(pmx_db_async_t *db, unsigned older_s, unsigned limit,
                                             pmx_db_async_result_fn cb, void *arg)
{
    char o[16], l[16];
    snprintf(o, sizeof o, "%u", older_s);
    snprintf(l, sizeof l, "%u", limit);
    const char *vals[2] = { o, l };
    return pmx_db_async_query_params(db,
        "SELECT id, rcpt, message_id, rcpt_idx, raw, workspace_id FROM inbound_reports"
        " WHERE applied_at IS NULL AND created_at < now() - make_interval(secs => $1::int)"
        " ORDER BY created_at LIMIT $2::int", 2, vals, cb, arg);
}

pmx_db_async_req_t *pmx_db_inbound_prune(pmx_db_async_t *db, unsigned keep_days,
                                         pmx_db_async_result_fn cb, void *arg)
{
    char d[16];
    snprintf(d, sizeof d, "%u", keep_days);
    const char *vals[1] = { d };
    return pmx_db_async_query_params(db,
        "DELETE FROM inbound_reports WHERE id IN (SELECT id FROM inbound_reports"
        " WHERE created_at < now() - make_interval(days => $1::int) LIMIT 10000)",
        1, vals, cb, arg);
}

pmx_db_async_req_t *pmx_db_inbound_domains(pmx_db_async_t *db, pmx_db_async_result_fn cb, void *arg)
{
    return pmx_db_async_query(db,
        "SELECT COALESCE(return_path, 'bounces.' || domain), workspace_id, domain FROM domains"
        " WHERE verified_at IS NOT NULL", cb, arg);
}
