/*
 * db_async_probe: drives sql/db_async.c (the workers' non-blocking Postgres
 * connection) against a real server, for tests/integration/test_supervisor.sh.
 *
 *   db_async_probe CONNINFO
 *
 * Runs a fixed script on one loop and prints one line per step:
 *   up 1                       first connection
 *   q1 2                       select 1+1
 *   q2 42 / q3 t               text parameters, a NULL parameter
 *   q4 error 42703             a failing query gives its error result
 *   q5 2 / q5b error 42703     multi-statement: last result, or the first error
 *   notify pmx_probe hello     LISTEN registered before connecting
 *   q6 3                       the query after a cancelled one (the cancelled
 *                              one must never call back: "cancelled-called")
 *   q7 ordered 20              20 queued queries answered in order
 *   q9 error|null              in flight while another session kills ours
 *   down                       state change
 *   refused-while-down yes     queries are refused while down
 *   up 2                       reconnected by itself
 *   notify pmx_probe again     LISTEN re-issued after the reconnect
 *   q10 null null              close() with two queries pending
 *   closed clean               every handle closed, loop closed
 * Exit 0 when the script ran to the end, 1 otherwise (with "fail STEP").
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <uv.h>

#include "lib/log.h"
#include "sql/db_async.h"

typedef struct {
    uv_loop_t      loop;
    uv_timer_t     tick;
    pmx_db_async_t *db;
    int            ups, downs, notifies;
    char           last_notify[128];
} probe_t;

typedef struct {
    int  calls;
    bool null;
    char text[128];   /* first value, or "error SQLSTATE" */
} res_t;

static void tick_cb(uv_timer_t *t) { (void)t; }

static void state_cb(pmx_db_async_t *db, bool up, void *arg)
{
    (void)db;
    probe_t *p = arg;
    if (up) {
        p->ups++;
        printf("up %d\n", p->ups);
    } else {
        p->downs++;
        printf("down\n");
    }
    fflush(stdout);
}

static void notify_cb(pmx_db_async_t *db, const char *channel, const char *payload, void *arg)
{
    (void)db;
    probe_t *p = arg;
    p->notifies++;
    snprintf(p->last_notify, sizeof p->last_notify, "%s %s", channel, payload);
    printf("notify %s %s\n", channel, payload);
    fflush(stdout);
}

static void result_cb(pmx_db_async_t *db, const PGresult *res, void *arg)
{
    (void)db;
    res_t *r = arg;
    r->calls++;
    if (!res) {
        r->null = true;
        snprintf(r->text, sizeof r->text, "null");
        return;
    }
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_TUPLES_OK && PQntuples(res) > 0)
        snprintf(r->text, sizeof r->text, "%s", PQgetvalue(res, 0, 0));
    else if (st == PGRES_FATAL_ERROR)
        snprintf(r->text, sizeof r->text, "error %s",
                 PQresultErrorField(res, PG_DIAG_SQLSTATE) ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : "?");
    else
        snprintf(r->text, sizeof r->text, "%s", PQresStatus(st));
}

static void cancelled_cb(pmx_db_async_t *db, const PGresult *res, void *arg)
{
    (void)db;
    (void)res;
    (void)arg;
    printf("cancelled-called\n");
}

static bool run_until(probe_t *p, const int *v, int want, uint64_t ms)
{
    uint64_t end = uv_now(&p->loop) + ms;
    while (*v < want && uv_now(&p->loop) < end) uv_run(&p->loop, UV_RUN_ONCE);
    return *v >= want;
}

#define FAIL(step) do { printf("fail %s\n", step); return 1; } while (0)

/* Sends sql and waits for its answer. */
static bool ask(probe_t *p, const char *sql, res_t *r)
{
    memset(r, 0, sizeof *r);
    if (!pmx_db_async_query(p->db, sql, result_cb, r)) return false;
    return run_until(p, &r->calls, 1, 10000);
}

/* Runs a prepared statement with one parameter and waits for its answer. */
static bool ask_prepared(probe_t *p, const char *name, const char *sql, const char *v1, res_t *r)
{
    const char *v[] = { v1 };
    memset(r, 0, sizeof *r);
    if (!pmx_db_async_query_prepared(p->db, name, sql, 1, v, result_cb, r)) return false;
    return run_until(p, &r->calls, 1, 10000);
}

static int script(probe_t *p, const char *conninfo)
{
    res_t r, r2;
    if (pmx_db_async_listen(p->db, "pmx_probe") != 0) FAIL("listen");
    if (pmx_db_async_listen(p->db, "") != -1) FAIL("listen-empty");
    pmx_db_async_start(p->db);
    if (!run_until(p, &p->ups, 1, 15000)) FAIL("connect");

    if (!ask(p, "select 1+1", &r)) FAIL("q1");
    printf("q1 %s\n", r.text);

    const char *v21[] = { "21" };
    memset(&r, 0, sizeof r);
    if (!pmx_db_async_query_params(p->db, "select $1::int * 2", 1, v21, result_cb, &r) ||
        !run_until(p, &r.calls, 1, 10000))
        FAIL("q2");
    printf("q2 %s\n", r.text);
    const char *vnull[] = { NULL };
    memset(&r, 0, sizeof r);
    if (!pmx_db_async_query_params(p->db, "select $1::text is null", 1, vnull, result_cb, &r) ||
        !run_until(p, &r.calls, 1, 10000))
        FAIL("q3");
    printf("q3 %s\n", r.text);

    if (!ask(p, "select nope", &r)) FAIL("q4");
    printf("q4 %s\n", r.text);
    if (!ask(p, "select 1; select 2", &r)) FAIL("q5");
    printf("q5 %s\n", r.text);
    if (!ask(p, "select nope; select 2", &r)) FAIL("q5b");
    printf("q5b %s\n", r.text);

    if (!ask(p, "NOTIFY pmx_probe, 'hello'", &r)) FAIL("notify-send");
    if (!run_until(p, &p->notifies, 1, 5000)) FAIL("notify-1");

    pmx_db_async_req_t *slow = pmx_db_async_query(p->db, "select pg_sleep(0.3)", cancelled_cb, NULL);
    if (!slow) FAIL("q6-slow");
    pmx_db_async_cancel(slow);
    if (!ask(p, "select 3", &r)) FAIL("q6");
    printf("q6 %s\n", r.text);

    res_t many[20];
    char num[20][16];
    memset(many, 0, sizeof many);
    for (int i = 0; i < 20; i++) {
        snprintf(num[i], sizeof num[i], "%d", i);
        const char *v[] = { num[i] };
        if (!pmx_db_async_query_params(p->db, "select $1::int", 1, v, result_cb, &many[i]))
            FAIL("q7-send");
    }
    if (pmx_db_async_pending(p->db) < 19) FAIL("q7-pending");
    if (!run_until(p, &many[19].calls, 1, 10000)) FAIL("q7");
    int ordered = 0;
    for (int i = 0; i < 20; i++)
        if (many[i].calls == 1 && strcmp(many[i].text, num[i]) == 0) ordered++;
    printf("q7 ordered %d\n", ordered);

    /* Prepared: the second run uses the server-side statement, a bad one falls back. */
    res_t pa, pb, pc;
    if (!ask_prepared(p, "probe_double", "select $1::int * 2", "21", &pa) ||
        !ask_prepared(p, "probe_double", "select $1::int * 2", "42", &pb) ||
        !ask(p, "select count(*) from pg_prepared_statements where name = 'probe_double'", &pc))
        FAIL("p1");
    printf("p1 %s %s prepared %s\n", pa.text, pb.text, pc.text);
    if (!ask_prepared(p, "probe_bad", "select nope_col + $1::int", "1", &pa) ||
        !ask_prepared(p, "probe_bad", "select nope_col + $1::int", "1", &pb))
        FAIL("p2");
    printf("p2 %s / %s\n", pa.text, pb.text);

    /* Kill our backend from a second connection while a query is in flight. */
    if (!ask(p, "select pg_backend_pid()", &r)) FAIL("pid");
    char killer_sql[256];
    snprintf(killer_sql, sizeof killer_sql, "select pg_terminate_backend(%s)", r.text);
    memset(&r, 0, sizeof r);
    if (!pmx_db_async_query(p->db, "select pg_sleep(30)", result_cb, &r)) FAIL("q9-send");
    pmx_db_async_t *killer = pmx_db_async_new(&p->loop, conninfo);
    pmx_db_async_set_state_cb(killer, NULL, NULL);
    pmx_db_async_start(killer);
    uint64_t end = uv_now(&p->loop) + 10000;
    while (!pmx_db_async_is_up(killer) && uv_now(&p->loop) < end) uv_run(&p->loop, UV_RUN_ONCE);
    memset(&r2, 0, sizeof r2);
    if (!pmx_db_async_query(killer, killer_sql, result_cb, &r2)) FAIL("kill-send");
    if (!run_until(p, &r.calls, 1, 10000)) FAIL("q9");
    printf("q9 %s\n", r.null ? "null" : r.text);
    pmx_db_async_close(killer);
    if (!run_until(p, &p->downs, 1, 5000)) FAIL("down");
    printf("refused-while-down %s\n",
           pmx_db_async_query(p->db, "select 1", result_cb, &r2) ? "no" : "yes");
    if (!run_until(p, &p->ups, 2, 15000)) FAIL("reconnect");
    if (!ask(p, "NOTIFY pmx_probe, 'again'", &r)) FAIL("notify-send-2");
    if (!run_until(p, &p->notifies, 2, 5000)) FAIL("notify-2");
    /* A new connection: prepared again before its first use. */
    if (!ask_prepared(p, "probe_double", "select $1::int * 2", "5", &pa) ||
        !ask(p, "select count(*) from pg_prepared_statements where name = 'probe_double'", &pc))
        FAIL("p3");
    printf("p3 %s prepared %s\n", pa.text, pc.text);

    res_t a = { 0 }, b = { 0 };
    if (!pmx_db_async_query(p->db, "select pg_sleep(5)", result_cb, &a) ||
        !pmx_db_async_query(p->db, "select 1", result_cb, &b))
        FAIL("q10-send");
    uv_run(&p->loop, UV_RUN_NOWAIT);
    pmx_db_async_close(p->db);
    p->db = NULL;
    printf("q10 %s %s\n", a.calls == 1 ? a.text : "?", b.calls == 1 ? b.text : "?");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: db_async_probe CONNINFO\n");
        return 2;
    }
    pmx_log_set_tag("db_async_probe");
    probe_t p;
    memset(&p, 0, sizeof p);
    uv_loop_init(&p.loop);
    uv_timer_init(&p.loop, &p.tick);
    uv_timer_start(&p.tick, tick_cb, 20, 20);
    p.db = pmx_db_async_new(&p.loop, argv[1]);
    pmx_db_async_set_state_cb(p.db, state_cb, &p);
    pmx_db_async_set_notify_cb(p.db, notify_cb, &p);

    int rc = script(&p, argv[1]);
    if (p.db) pmx_db_async_close(p.db);
    uv_close((uv_handle_t *)&p.tick, NULL);
    uv_run(&p.loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&p.loop) == 0)
        printf("closed clean\n");
    else
        rc = 1;
    return rc;
}
