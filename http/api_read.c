/*
 * API v1's read endpoints (docs/http.md), scope `read`, always within the
 * call's workspace:
 * - GET /v1/messages/{id}: a message and each recipient's status;
 * - GET /v1/events?type=&since=&limit=&after=: events by id, a page at a
 *   time; `next` is the cursor of the following page (null at the end);
 * - GET /v1/stats?since=24h: what `postmux stats` shows for the workspace,
 *   from the hourly rollup.
 * The statements are in sql/q_api_read.c.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "http/api_call.h"
#include "sql/q_api_read.h"

#define EVENTS_LIMIT_DEFAULT 100
#define EVENTS_LIMIT_MAX     1000
#define SINCE_MAX_MS         (36500ULL * 24 * 3600 * 1000)   /* 100 years */

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

/* ---- ?since= ---- */

/* since: a duration (30m, 24h, 7d: postmux.conf(5)'s form) or "all" (out
 * ""). Writes milliseconds into out; -1 after a 400. */
static int since_arg(pmx_api_call_t *c, const char *dflt, char out[24])
{
    const char *s = pmx_api_call_arg(c, "since");
    if (!s) s = dflt;
    out[0] = '\0';
    if (!s || strcmp(s, "all") == 0) return 0;
    uint64_t ms;
    if (pmx_config_parse_duration(s, &ms) < 0 || ms == 0 || ms > SINCE_MAX_MS) {
        pmx_api_call_problem(c, 400, "since must be a duration such as 30m, 24h or 7d, or all",
                             "since");
        return -1;
    }
    snprintf(out, 24, "%" PRIu64, ms);
    return 0;
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

/* A whole decimal number in [lo, hi]. */
static bool parse_num(const char *s, long long lo, long long hi, long long *out)
{
    if (!s || !*s || strlen(s) > 19) return false;
    long long v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') return false;
        v = v * 10 + (*p - '0');
    }
    if (v < lo || v > hi) return false;
    *out = v;
    return true;
}

void pmx_api_get_events(pmx_api_call_t *c)
{
    const char *type = pmx_api_call_arg(c, "type");
    if (type) {
        size_t n = strlen(type), dot = strcspn(type, ".");
        bool ok = n > 0 && n <= 64 && dot > 0 && dot < n - 1;
        for (size_t i = 0; ok && i < n; i++)
            ok = (type[i] >= 'a' && type[i] <= 'z') || type[i] == '_' || (type[i] == '.' && i == dot);
        if (!ok) {
            pmx_api_call_problem(c, 400, "type must be an event type such as message.sent", "type");
            return;
        }
    }
    char since[24];
    if (since_arg(c, NULL, since) < 0) return;
    long long limit = EVENTS_LIMIT_DEFAULT, after = 0;
    const char *l = pmx_api_call_arg(c, "limit");
    if (l && !parse_num(l, 1, EVENTS_LIMIT_MAX, &limit)) {
        pmx_api_call_problem(c, 400, "limit must be a whole number from 1 to 1000", "limit");
        return;
    }
    const char *a = pmx_api_call_arg(c, "after");
    if (a && !parse_num(strncmp(a, "evt_", 4) == 0 ? a + 4 : a, 0, INT64_MAX, &after)) {
        pmx_api_call_problem(c, 400, "after must be the next cursor of a previous page (evt_...)",
                             "after");
        return;
    }
    char after_s[24], limit_s[24];
    snprintf(after_s, sizeof after_s, "%lld", after);
    snprintf(limit_s, sizeof limit_s, "%lld", limit);
    snprintf(c->text, sizeof c->text, "%lld", limit);
    const char *vals[5] = { c->ws, type, since[0] ? since : NULL, after_s, limit_s };
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
    if (since_arg(c, "24h", since) < 0) return;
    const char *vals[2] = { c->ws, since[0] ? since : NULL };
    pmx_api_call_query(c, pmx_sql_api_stats, 2, vals, stats_rows);
}
