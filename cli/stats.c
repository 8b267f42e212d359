/*
 * `postmux stats [--workspace WS] [--since 24h] [--json]` (docs/webhooks.md): per
 * workspace, recipients by current status and events by type, one row per
 * workspace and a total.
 *
 * It reads the hourly rollup stats_counts (sql/002_stats.sql), never the
 * events table, so it answers in milliseconds whatever the number of events
 * (tests/bench/stats_bench.sh measures it). The window therefore starts on a
 * whole UTC hour: --since 24h at 10:37 counts from 10:00 the day before up to
 * now; the start used is printed. --since takes the config's durations (30m,
 * 24h, 7d, ...), default 24h, or "all".
 * - recipients: the recipients of the messages created in the window, by
 *   their status now (queued, sent, deferred, bounced, rejected, suppressed);
 * - events: the message.* events created in the window, by type.
 * - rates: bounce rate = hard bounces / attempted, complaint rate = complaints
 *   / attempted, where attempted = recipients now sent or bounced (of the
 *   counts above: an async bounce moves a recipient from sent to bounced, so
 *   it is counted once), and hard bounces and complaints are the workspace's
 *   hard_bounce and complaint suppressions made in the window that name a
 *   message (what the reputation guard counts, docs/feedback.md).
 * Workspaces listed: every workspace (zero rows too), plus any workspace id
 * that has counts but no workspaces row (jobs rejected as unknown_workspace),
 * named "(unknown)".
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/cli.h"
#include "lib/mem.h"

#define SINCE_DEFAULT "24h"

static const char usage_text[] =
    "usage: postmux stats [--workspace WS] [--since 24h|7d|all] [--json]\n"
    "Recipients by status (messages created in the window) and events by type,\n"
    "per workspace and in total. The window starts on a whole UTC hour.\n";

static const char *const statuses[] = {
    "queued", "sent", "deferred", "bounced", "rejected", "suppressed",
};
#define N_COUNTS (sizeof statuses / sizeof statuses[0])

typedef struct {
    char    *id;
    char    *name;                  /* NULL: no workspaces row */
    int64_t  status[N_COUNTS];      /* recipients by status */
    int64_t  event[N_COUNTS];       /* events message.<status> */
    int64_t  hard;                  /* hard_bounce suppressions naming a message */
    int64_t  complaints;            /* complaint suppressions naming a message */
} ws_row_t;

typedef struct {
    ws_row_t *rows;
    size_t    n;
    ws_row_t  total;
    char      since[32];            /* "" = all time */
    char      until[32];
} stats_t;

static int count_index(const char *kind, const char *name, bool *is_event)
{
    *is_event = strcmp(kind, "event") == 0;
    if (*is_event) {
        if (strncmp(name, "message.", 8) != 0) return -1;
        name += 8;
    }
    for (size_t k = 0; k < N_COUNTS; k++)
        if (strcmp(statuses[k], name) == 0) return (int)k;
    return -1;
}

/* Reads the window and the counts; prints why not and returns -1. */
static int load(pmx_cli_t *c, const char *ws_id, const char *since_ms, stats_t *st)
{
    const char *p1[1] = { since_ms };
    PGresult *res = pmx_cli_query(c,
        "SELECT to_char(s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
        "       to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
        "       COALESCE(s, '-infinity')"
        "  FROM (SELECT date_trunc('hour', now() - $1::bigint * interval '1 millisecond', 'UTC')"
        "        AS s) w", 1, p1);
    if (!res) return -1;
    snprintf(st->since, sizeof st->since, "%s", PQgetvalue(res, 0, 0));
    snprintf(st->until, sizeof st->until, "%s", PQgetvalue(res, 0, 1));
    char from[64];
    snprintf(from, sizeof from, "%s", PQgetvalue(res, 0, 2));
    PQclear(res);

    const char *p2[2] = { ws_id, from };
    res = pmx_cli_query(c,
        "WITH c AS ("
        "  SELECT workspace_id, kind, name, sum(n) AS n FROM ("
        "    SELECT workspace_id, kind, name, n FROM stats_counts"
        "     WHERE folded AND hour >= $2::timestamptz"
        "       AND ($1::text IS NULL OR workspace_id = $1)"
        "    UNION ALL"
        "    SELECT workspace_id, kind, name, n FROM stats_counts"
        "     WHERE NOT folded AND hour >= $2::timestamptz"
        "       AND ($1::text IS NULL OR workspace_id = $1)) s"
        "   GROUP BY 1, 2, 3"
        "), w AS ("
        "  SELECT id, name FROM workspaces WHERE $1::text IS NULL OR id = $1"
        "  UNION ALL"
        "  SELECT DISTINCT c.workspace_id, NULL FROM c"
        "   WHERE NOT EXISTS (SELECT 1 FROM workspaces x WHERE x.id = c.workspace_id)"
        ")"
        "SELECT w.id, w.name, c.kind, c.name, c.n FROM w"
        "  LEFT JOIN c ON c.workspace_id = w.id"
        " ORDER BY w.name IS NULL, w.name, w.id", 2, p2);
    if (!res) return -1;

    int nr = PQntuples(res);
    st->rows = pmx_xcalloc((size_t)nr + 1, sizeof *st->rows);
    for (int r = 0; r < nr; r++) {
        const char *id = PQgetvalue(res, r, 0);
        if (st->n == 0 || strcmp(st->rows[st->n - 1].id, id) != 0) {
            ws_row_t *w = &st->rows[st->n++];
            w->id = pmx_xstrdup(id);
            w->name = PQgetisnull(res, r, 1) ? NULL : pmx_xstrdup(PQgetvalue(res, r, 1));
        }
        if (PQgetisnull(res, r, 2)) continue;
        bool is_event;
        int k = count_index(PQgetvalue(res, r, 2), PQgetvalue(res, r, 3), &is_event);
        if (k < 0) continue;     /* domain.verified and the like */
        int64_t v = strtoll(PQgetvalue(res, r, 4), NULL, 10);
        ws_row_t *w = &st->rows[st->n - 1];
        if (is_event) {
            w->event[k] += v;
            st->total.event[k] += v;
        } else {
            w->status[k] += v;
            st->total.status[k] += v;
        }
    }
    PQclear(res);

    /* Hard bounces and complaints: one index range per workspace and reason. */
    res = pmx_cli_query(c,
        "SELECT workspace_id, reason, count(*) FROM suppressions"
        " WHERE reason IN ('hard_bounce', 'complaint') AND message_id IS NOT NULL"
        "   AND created_at >= $2::timestamptz AND ($1::text IS NULL OR workspace_id = $1)"
        " GROUP BY 1, 2", 2, p2);
    if (!res) return -1;
    for (int r = 0; r < PQntuples(res); r++) {
        int64_t v = strtoll(PQgetvalue(res, r, 2), NULL, 10);
        bool hard = strcmp(PQgetvalue(res, r, 1), "hard_bounce") == 0;
        for (size_t i = 0; i < st->n; i++) {
            if (strcmp(st->rows[i].id, PQgetvalue(res, r, 0)) != 0) continue;
            *(hard ? &st->rows[i].hard : &st->rows[i].complaints) += v;
            *(hard ? &st->total.hard : &st->total.complaints) += v;
        }
    }
    PQclear(res);
    return 0;
}

static void stats_free(stats_t *st)
{
    for (size_t i = 0; i < st->n; i++) {
        free(st->rows[i].id);
        free(st->rows[i].name);
    }
    free(st->rows);
}

static int64_t sum(const int64_t *v)
{
    int64_t s = 0;
    for (size_t k = 0; k < N_COUNTS; k++) s += v[k];
    return s;
}

/* ---- output ---- */

/* Recipients attempted: now sent or bounced (the rates' denominator). */
static int64_t attempted(const ws_row_t *w)
{
    return w->status[1] + w->status[3];     /* sent, bounced */
}

static json_t *rate_json(int64_t n, int64_t of)
{
    return of > 0 ? json_real((double)n / (double)of) : json_null();
}

static json_t *rates_json(const ws_row_t *w)
{
    json_t *o = json_object();
    json_object_set_new(o, "attempted", json_integer(attempted(w)));
    json_object_set_new(o, "hard_bounces", json_integer(w->hard));
    json_object_set_new(o, "complaints", json_integer(w->complaints));
    json_object_set_new(o, "bounce_rate", rate_json(w->hard, attempted(w)));
    json_object_set_new(o, "complaint_rate", rate_json(w->complaints, attempted(w)));
    return o;
}

static json_t *counts_json(const int64_t *v, const char *prefix)
{
    json_t *o = json_object();
    char key[40];
    for (size_t k = 0; k < N_COUNTS; k++) {
        snprintf(key, sizeof key, "%s%s", prefix, statuses[k]);
        json_object_set_new(o, key, json_integer(v[k]));
    }
    json_object_set_new(o, "total", json_integer(sum(v)));
    return o;
}

static int print_json(const stats_t *st)
{
    json_t *root = json_object();
    json_object_set_new(root, "since", st->since[0] ? json_string(st->since) : json_null());
    json_object_set_new(root, "until", json_string(st->until));
    json_t *a = json_array();
    for (size_t i = 0; i < st->n; i++) {
        const ws_row_t *w = &st->rows[i];
        json_t *o = json_object();
        json_object_set_new(o, "workspace_id", json_string(w->id));
        json_object_set_new(o, "name", w->name ? json_string(w->name) : json_null());
        json_object_set_new(o, "recipients", counts_json(w->status, ""));
        json_object_set_new(o, "events", counts_json(w->event, "message."));
        json_object_set_new(o, "rates", rates_json(w));
        json_array_append_new(a, o);
    }
    json_object_set_new(root, "workspaces", a);
    json_t *t = json_object();
    json_object_set_new(t, "recipients", counts_json(st->total.status, ""));
    json_object_set_new(t, "events", counts_json(st->total.event, "message."));
    json_object_set_new(t, "rates", rates_json(&st->total));
    json_object_set_new(root, "total", t);
    return pmx_cli_print_json(root);
}

/* One table: WORKSPACE NAME <6 counts> TOTAL, a row per workspace, then total. */
static void print_table(const stats_t *st, bool events, bool with_total)
{
    static const char *const head[N_COUNTS] = { "QUEUED", "SENT", "DEFERRED", "BOUNCED",
                                                "REJECTED", "SUPPRESSED" };
    int wid = (int)strlen("WORKSPACE"), wname = (int)strlen("NAME"), wnum[N_COUNTS + 1];
    for (size_t i = 0; i < st->n; i++) {
        if (pmx_cli_text_width(st->rows[i].id) > wid) wid = pmx_cli_text_width(st->rows[i].id);
        int nl = pmx_cli_text_width(st->rows[i].name ? st->rows[i].name : "(unknown)");
        if (nl > wname) wname = nl;
    }
    for (size_t k = 0; k <= N_COUNTS; k++) {
        wnum[k] = (int)strlen(k < N_COUNTS ? head[k] : "TOTAL");
        const int64_t *tv = events ? st->total.event : st->total.status;
        char b[32];
        int len = snprintf(b, sizeof b, "%" PRId64, k < N_COUNTS ? tv[k] : sum(tv));
        if (len > wnum[k]) wnum[k] = len;
        for (size_t i = 0; i < st->n; i++) {
            const int64_t *v = events ? st->rows[i].event : st->rows[i].status;
            len = snprintf(b, sizeof b, "%" PRId64, k < N_COUNTS ? v[k] : sum(v));
            if (len > wnum[k]) wnum[k] = len;
        }
    }
    pmx_cli_print_cell("WORKSPACE", wid, false);
    fputs("  ", stdout);
    pmx_cli_print_cell("NAME", wname, false);
    for (size_t k = 0; k <= N_COUNTS; k++) {
        fputs("  ", stdout);
        pmx_cli_print_cell(k < N_COUNTS ? head[k] : "TOTAL", wnum[k], true);
    }
    putchar('\n');
    for (size_t i = 0; i <= st->n; i++) {
        if (i == st->n && !with_total) break;
        const ws_row_t *w = i < st->n ? &st->rows[i] : &st->total;
        pmx_cli_print_cell(i < st->n ? w->id : "total", wid, false);
        fputs("  ", stdout);
        pmx_cli_print_cell(i < st->n ? (w->name ? w->name : "(unknown)") : "", wname, false);
        const int64_t *v = events ? w->event : w->status;
        for (size_t k = 0; k <= N_COUNTS; k++) {
            char b[32];
            snprintf(b, sizeof b, "%" PRId64, k < N_COUNTS ? v[k] : sum(v));
            fputs("  ", stdout);
            pmx_cli_print_cell(b, wnum[k], true);
        }
        putchar('\n');
    }
}

static void rate_text(char *b, size_t n, int64_t num, int64_t of)
{
    if (of > 0) snprintf(b, n, "%.2f%%", 100.0 * (double)num / (double)of);
    else snprintf(b, n, "-");
}

/* WORKSPACE NAME ATTEMPTED HARD BOUNCE_RATE COMPLAINTS COMPLAINT_RATE. */
static void print_rates(const stats_t *st, bool with_total)
{
    enum { NC = 5 };
    static const char *const head[NC] = { "ATTEMPTED", "HARD", "BOUNCE_RATE", "COMPLAINTS",
                                          "COMPLAINT_RATE" };
    size_t nrows = st->n + (with_total ? 1 : 0);
    char (*cell)[NC][32] = pmx_xcalloc(nrows + 1, sizeof *cell);
    int wid = (int)strlen("WORKSPACE"), wname = (int)strlen("NAME"), wnum[NC];
    for (size_t k = 0; k < NC; k++) wnum[k] = (int)strlen(head[k]);
    for (size_t i = 0; i < nrows; i++) {
        const ws_row_t *w = i < st->n ? &st->rows[i] : &st->total;
        if (i < st->n) {
            if (pmx_cli_text_width(w->id) > wid) wid = pmx_cli_text_width(w->id);
            int nl = pmx_cli_text_width(w->name ? w->name : "(unknown)");
            if (nl > wname) wname = nl;
        }
        snprintf(cell[i][0], 32, "%" PRId64, attempted(w));
        snprintf(cell[i][1], 32, "%" PRId64, w->hard);
        rate_text(cell[i][2], 32, w->hard, attempted(w));
        snprintf(cell[i][3], 32, "%" PRId64, w->complaints);
        rate_text(cell[i][4], 32, w->complaints, attempted(w));
        for (size_t k = 0; k < NC; k++)
            if ((int)strlen(cell[i][k]) > wnum[k]) wnum[k] = (int)strlen(cell[i][k]);
    }
    pmx_cli_print_cell("WORKSPACE", wid, false);
    fputs("  ", stdout);
    pmx_cli_print_cell("NAME", wname, false);
    for (size_t k = 0; k < NC; k++) {
        fputs("  ", stdout);
        pmx_cli_print_cell(head[k], wnum[k], true);
    }
    putchar('\n');
    for (size_t i = 0; i < nrows; i++) {
        const ws_row_t *w = i < st->n ? &st->rows[i] : &st->total;
        pmx_cli_print_cell(i < st->n ? w->id : "total", wid, false);
        fputs("  ", stdout);
        pmx_cli_print_cell(i < st->n ? (w->name ? w->name : "(unknown)") : "", wname, false);
        for (size_t k = 0; k < NC; k++) {
            fputs("  ", stdout);
            pmx_cli_print_cell(cell[i][k], wnum[k], true);
        }
        putchar('\n');
    }
    free(cell);
}

static void print_text(const stats_t *st, bool with_total)
{
    if (st->since[0]) printf("since %s (whole UTC hour) until %s\n\n", st->since, st->until);
    else printf("all time until %s\n\n", st->until);
    printf("Recipients by status (messages created in the window):\n");
    print_table(st, false, with_total);
    printf("\nEvents by type (message.*):\n");
    print_table(st, true, with_total);
    printf("\nRates (hard bounces and complaints over recipients sent or bounced):\n");
    print_rates(st, with_total);
}

int pmx_cli_stats(pmx_cli_t *c, int argc, char **argv)
{
    pmx_cli_window_t w;
    int done = pmx_cli_window_opts(c, "stats", argc, argv, usage_text, SINCE_DEFAULT, &w);
    if (done >= 0) return done;

    stats_t st;
    memset(&st, 0, sizeof st);
    int rc = PMX_EXIT_USER;
    if (load(c, w.has_ws ? w.ws_id : NULL, w.since_ms[0] ? w.since_ms : NULL, &st) == 0) {
        if (w.json) {
            rc = print_json(&st);
        } else {
            print_text(&st, !w.has_ws);
            rc = PMX_EXIT_OK;
        }
    }
    stats_free(&st);
    return rc;
}
