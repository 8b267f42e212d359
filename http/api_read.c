/*
 * API v1's read endpoints (docs/http.md), scope `read`, always within the
 * call's workspace:
 * - GET /v1/messages/{id}: a message and each recipient's status;
 * - GET /v1/events?type=&since=&limit=&after=: events by id, a page at a
 *   time; `next` is the cursor of the following page (null at the end);
 * - GET /v1/stats?since=24h: what `postmux stats` shows for the workspace,
 *   from the hourly rollup.
 * The arguments are checked by http/api_input.h, the statements are in
 * sql/q_api_read.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/api_call.h"
#include "http/api_input.h"
#include "sql/q_api_read.h"

/* ---- GET /v1/messages/{id} ---- */

static void message_rows(pmx_api_call_t *c, const PGresult *res)
{
    int n = PQntuples(res);
    if (n == 0) {
        pmx_api_call_problem(c, 404, "no such message in this workspace (a message appears "
                             "once a worker has taken it from the queue)", NULL);
        return;
    }
    json_t *rcpts = json_array();
    for (int r = 0; r < n; r++) {
        if (PQgetisnull(res, r, PMX_Q_MSG_ADDRESS)) continue;
        json_array_append_new(rcpts, json_pack(
            "{s:s,s:s,s:I,s:o,s:o,s:s}",
            "address", PQgetvalue(res, r, PMX_Q_MSG_ADDRESS),
            "status", PQgetvalue(res, r, PMX_Q_MSG_STATUS),
            "attempts", (json_int_t)strtoll(PQgetvalue(res, r, PMX_Q_MSG_ATTEMPTS), NULL, 10),
            "last_response", pmx_api_text_or_null(res, r, PMX_Q_MSG_RESPONSE),
            "bounce_class", pmx_api_text_or_null(res, r, PMX_Q_MSG_CLASS),
            "updated_at", PQgetvalue(res, r, PMX_Q_MSG_UPDATED)));
    }
    json_t *doc = json_pack("{s:s,s:s,s:o,s:s,s:o,s:s,s:s,s:o}",
                            "id", PQgetvalue(res, 0, PMX_Q_MSG_JOB),
                            "message_id", PQgetvalue(res, 0, PMX_Q_MSG_ID),
                            "client_id", pmx_api_text_or_null(res, 0, PMX_Q_MSG_CLIENT),
                            "mail_from", PQgetvalue(res, 0, PMX_Q_MSG_FROM),
                            "subject", pmx_api_text_or_null(res, 0, PMX_Q_MSG_SUBJECT),
                            "created_at", PQgetvalue(res, 0, PMX_Q_MSG_CREATED),
                            "workspace_id", c->ws,
                            "recipients", rcpts);
    pmx_api_call_json(c, 200, doc);
}

void pmx_api_get_message(pmx_api_call_t *c)
{
    const char *vals[2] = { c->ws, c->param };
    pmx_api_call_query(c, pmx_sql_api_message, 2, vals, message_rows);
}

/* ---- GET /v1/events ---- */

static void event_rows(pmx_api_call_t *c, const PGresult *res)
{
    int n = PQntuples(res);
    long limit = strtol(c->text, NULL, 10);
    json_t *items = json_array();
    for (int r = 0; r < n; r++) {
        char id[32];
        snprintf(id, sizeof id, "evt_%s", PQgetvalue(res, r, 0));
        json_array_append_new(items, json_pack("{s:s,s:s,s:o,s:o,s:o,s:o,s:s}",
            "id", id, "type", PQgetvalue(res, r, 1),
            "message_id", pmx_api_text_or_null(res, r, 2),
            "job_id", pmx_api_text_or_null(res, r, 3),
            "recipient", pmx_api_text_or_null(res, r, 4),
            "detail", pmx_api_text_or_null(res, r, 5),
            "created_at", PQgetvalue(res, r, 6)));
    }
    json_t *next = json_null();
    if (n > 0 && n == limit) {
        char id[32];
        snprintf(id, sizeof id, "evt_%s", PQgetvalue(res, n - 1, 0));
        next = json_string(id);
    }
    pmx_api_call_json(c, 200, json_pack("{s:o,s:o}", "events", items, "next", next));
}

void pmx_api_get_events(pmx_api_call_t *c)
{
    pmx_api_events_q_t q;
    pmx_api_bad_t bad;
    if (pmx_api_events_query(pmx_api_call_arg(c, "type"), pmx_api_call_arg(c, "since"),
                             pmx_api_call_arg(c, "limit"), pmx_api_call_arg(c, "after"), &q,
                             &bad) < 0) {
        pmx_api_call_refused(c, &bad);
        return;
    }
    char after_s[24], limit_s[24];
    snprintf(after_s, sizeof after_s, "%lld", q.after);
    snprintf(limit_s, sizeof limit_s, "%lld", q.limit);
    snprintf(c->text, sizeof c->text, "%lld", q.limit);
    const char *vals[5] = { c->ws, q.type, q.since[0] ? q.since : NULL, after_s, limit_s };
    pmx_api_call_query(c, pmx_sql_api_events, 5, vals, event_rows);
}

/* ---- GET /v1/stats ---- */

static const char *const statuses[] = {
    "queued", "sent", "deferred", "bounced", "rejected", "suppressed",
};

static void stats_rows(pmx_api_call_t *c, const PGresult *res)
{
    json_t *rcpts = json_object(), *events = json_object();
    for (size_t k = 0; k < sizeof statuses / sizeof statuses[0]; k++)
        json_object_set_new(rcpts, statuses[k], json_integer(0));
    int n = PQntuples(res);
    for (int r = 0; r < n; r++) {
        if (PQgetisnull(res, r, 2)) continue;
        const char *kind = PQgetvalue(res, r, 2), *name = PQgetvalue(res, r, 3);
        json_int_t v = (json_int_t)strtoll(PQgetvalue(res, r, 4), NULL, 10);
        json_object_set_new(strcmp(kind, "event") == 0 ? events : rcpts, name, json_integer(v));
    }
    json_t *doc = json_pack("{s:s,s:o,s:s,s:o,s:o}", "workspace_id", c->ws,
                            "since", n ? pmx_api_text_or_null(res, 0, 0) : json_null(),
                            "until", n ? PQgetvalue(res, 0, 1) : "",
                            "recipients", rcpts, "events", events);
    pmx_api_call_json(c, 200, doc);
}

void pmx_api_get_stats(pmx_api_call_t *c)
{
    char since[24];
    pmx_api_bad_t bad;
    if (pmx_api_since(pmx_api_call_arg(c, "since"), "24h", since, &bad) < 0) {
        pmx_api_call_refused(c, &bad);
        return;
    }
    const char *vals[2] = { c->ws, since[0] ? since : NULL };
    pmx_api_call_query(c, pmx_sql_api_stats, 2, vals, stats_rows);
}
