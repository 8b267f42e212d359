/*
 * The queue consumer's lifecycle (queue/consumer_int.h, queue/consumer_phase.c):
 * - the transition table, cell by cell, against the table written here again
 *   by hand, and the rules it exists for: no way back to reading once a drain
 *   began, the drain callback only after the give-back, nothing after close
 *   but freeing, close possible from every live phase;
 * - pmx__queue_phase_set: a legal change is made; an illegal one is refused
 *   and the phase kept (release build) or aborts (ASan build, PMX_DEBUG);
 * - a real consumer whose Redis never comes up, through the public calls:
 *   start / drain / close move it through the table, start and drain are
 *   taken once, the drain waits PMX__QUEUE_DRAIN_REDIS_WAIT_MS for Redis and
 *   then ends, and close from NEW or mid-drain frees everything (ASan's leak
 *   check at exit).
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/log.h"
#include "queue/consumer_int.h"

#define N PMX__Q_NPHASES

#define NEW      PMX__Q_NEW
#define RUN      PMX__Q_RUNNING
#define DRAINING PMX__Q_DRAINING
#define GIVING   PMX__Q_GIVING_BACK
#define DRAINED  PMX__Q_DRAINED
#define CLOSED   PMX__Q_CLOSED
#define FREEING  PMX__Q_FREEING

/* The table at the top of queue/consumer_int.h, copied by hand. */
static const int expected[][2] = {
    { NEW, RUN }, { NEW, DRAINING }, { NEW, CLOSED },
    { RUN, DRAINING }, { RUN, CLOSED },
    { DRAINING, GIVING }, { DRAINING, CLOSED },
    { GIVING, DRAINED }, { GIVING, CLOSED },
    { DRAINED, CLOSED },
    { CLOSED, FREEING },
};

static bool expected_legal(int from, int to)
{
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++)
        if (expected[i][0] == from && expected[i][1] == to) return true;
    return false;
}

static void test_table_cell_by_cell(void **state)
{
    (void)state;
    int legal = 0;
    for (int from = 0; from < N; from++)
        for (int to = 0; to < N; to++) {
            bool got = pmx__queue_phase_legal((pmx__queue_phase_t)from, (pmx__queue_phase_t)to);
            if (got != expected_legal(from, to))
                fail_msg("%s -> %s: table says %d", pmx__queue_phase_name(from),
                         pmx__queue_phase_name(to), got);
            legal += got;
        }
    assert_int_equal(legal, (int)(sizeof expected / sizeof expected[0]));
    /* Out of range on either side is never legal. */
    assert_false(pmx__queue_phase_legal(N, NEW));
    assert_false(pmx__queue_phase_legal(NEW, N));
    assert_false(pmx__queue_phase_legal((pmx__queue_phase_t)-1, RUN));
}

/* The rules the phases exist for, stated on the table itself. */
static void test_table_rules(void **state)
{
    (void)state;
    for (int p = 0; p < N; p++) {
        /* No phase changes to itself (a second start/drain/close is refused by
         * the callers, not made again). */
        assert_false(pmx__queue_phase_legal(p, p));
        /* Reading again after a drain began (or after close): never. */
        assert_int_equal(pmx__queue_phase_legal(p, RUN), p == NEW);
        /* The give-back starts only from DRAINING, the drain callback (DRAINED)
         * only after the give-back. */
        assert_int_equal(pmx__queue_phase_legal(p, GIVING), p == DRAINING);
        assert_int_equal(pmx__queue_phase_legal(p, DRAINED), p == GIVING);
        /* close() from every live phase; after it, only freeing. */
        assert_int_equal(pmx__queue_phase_legal(p, CLOSED), p < CLOSED);
        if (p == CLOSED || p == FREEING)
            for (int q = 0; q < N; q++)
                assert_int_equal(pmx__queue_phase_legal(p, q), p == CLOSED && q == FREEING);
    }
    /* Every phase is reachable from NEW (and FREEING from each, through CLOSED). */
    bool seen[N] = { [NEW] = true };
    for (int round = 0; round < N; round++)
        for (int a = 0; a < N; a++)
            for (int b = 0; b < N; b++)
                if (seen[a] && pmx__queue_phase_legal(a, b)) seen[b] = true;
    for (int p = 0; p < N; p++) assert_true(seen[p]);
}

static void test_names(void **state)
{
    (void)state;
    for (int p = 0; p < N; p++) {
        const char *a = pmx__queue_phase_name(p);
        assert_non_null(a);
        assert_true(a[0] != '\0' && strcmp(a, "?") != 0);
        for (int q = 0; q < p; q++) assert_string_not_equal(a, pmx__queue_phase_name(q));
    }
    assert_string_equal(pmx__queue_phase_name(N), "?");
    assert_string_equal(pmx__queue_phase_name(RUN), "running");
}

static void test_set_legal_and_illegal(void **state)
{
    (void)state;
    pmx__queue_c_t c;
    memset(&c, 0, sizeof c);
    char name[] = "test-1";
    c.name = name;
    assert_int_equal(c.phase, NEW);
    assert_true(pmx__queue_phase_set(&c, RUN));
    assert_int_equal(c.phase, RUN);
    assert_true(pmx__queue_phase_set(&c, DRAINING));
    assert_int_equal(c.phase, DRAINING);

#ifdef PMX_DEBUG
    /* The ASan build aborts on an illegal change: in a child, so we see it. */
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        pmx__queue_phase_set(&c, RUN);   /* back to reading after a drain */
        _exit(0);                        /* not reached */
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGABRT);
#else
    /* The release build refuses it, says so, and keeps the phase. */
    assert_false(pmx__queue_phase_set(&c, RUN));
    assert_int_equal(c.phase, DRAINING);
    assert_false(pmx__queue_phase_set(&c, DRAINED));   /* skipping the give-back */
    assert_int_equal(c.phase, DRAINING);
#endif
    assert_int_equal(c.phase, DRAINING);
    assert_true(pmx__queue_phase_set(&c, GIVING));
    assert_true(pmx__queue_phase_set(&c, DRAINED));
    assert_true(pmx__queue_phase_set(&c, CLOSED));
    assert_true(pmx__queue_phase_set(&c, FREEING));
    assert_int_equal(c.phase, FREEING);
}

/* ---- a real consumer whose Redis never answers ---------------------------------- */

typedef struct {
    uv_loop_t         loop;
    pmx_redis_conn_t *rc;
    int               drained;
    uint64_t          drain_at, drained_at;
    pmx__queue_phase_t phase_in_cb;
} ctx_t;

static void on_job(pmx_queue_consumer_t *c, pmx_queue_job_t *job, void *arg)
{
    (void)c;
    (void)job;
    (void)arg;
    fail_msg("a consumer without Redis handed a job over");
}

static pmx_queue_consumer_t *make(ctx_t *x)
{
    pmx_queue_consumer_opts_t o;
    pmx_queue_consumer_opts_init(&o);
    o.name = "phase-test";
    o.job = on_job;
    o.arg = x;
    char err[256];
    pmx_queue_consumer_t *c = pmx_queue_consumer_new(&x->loop, x->rc, &o, err, sizeof err);
    if (!c) fail_msg("consumer_new: %s", err);
    return c;
}

static int setup(void **state)
{
    ctx_t *x = calloc(1, sizeof *x);
    if (!x) return -1;
    uv_loop_init(&x->loop);
    char err[256];
    /* Never started: never up, so nothing is ever sent. */
    x->rc = pmx_redis_conn_new(&x->loop, "127.0.0.1:1", NULL, 0, err, sizeof err);
    if (!x->rc) return -1;
    *state = x;
    return 0;
}

static int teardown(void **state)
{
    ctx_t *x = *state;
    pmx_redis_conn_close(x->rc);
    uv_run(&x->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&x->loop);
    free(x);
    return rc == 0 ? 0 : -1;
}

static void drained_cb(pmx_queue_consumer_t *c, void *arg)
{
    ctx_t *x = arg;
    x->drained++;
    x->drained_at = uv_now(&x->loop);
    x->phase_in_cb = c->phase;
    pmx_queue_consumer_close(c);
    /* Closed with nothing outstanding: freeing at once (freed by the loop). */
    assert_int_equal(c->phase, FREEING);
}

static void test_consumer_drain_without_redis(void **state)
{
    ctx_t *x = *state;
    pmx_queue_consumer_t *c = make(x);
    assert_int_equal(c->phase, NEW);
    const char *ids[] = { "ws_a", "ws_b" };
    assert_int_equal(pmx_queue_consumer_set_workspaces(c, ids, 2), 0);
    pmx_queue_consumer_start(c);
    assert_int_equal(c->phase, RUN);
    pmx_queue_consumer_start(c);                  /* once */
    assert_int_equal(c->phase, RUN);

    uv_update_time(&x->loop);
    x->drain_at = uv_now(&x->loop);
    pmx_queue_consumer_drain(c, drained_cb, x);
    assert_int_equal(c->phase, DRAINING);
    pmx_queue_consumer_drain(c, drained_cb, x);   /* once: the callback comes once */
    assert_int_equal(c->phase, DRAINING);
    assert_int_equal(x->drained, 0);              /* never from inside the call */

    /* Runs until the consumer is freed and only the idle Redis connection is left. */
    uv_run(&x->loop, UV_RUN_DEFAULT);
    assert_int_equal(x->drained, 1);
    assert_int_equal(x->phase_in_cb, DRAINED);
    /* Redis away when the drain went quiet: it waited for it before giving up. */
    assert_true(x->drained_at - x->drain_at >= PMX__QUEUE_DRAIN_REDIS_WAIT_MS);
}

static void test_consumer_close_from_new(void **state)
{
    ctx_t *x = *state;
    pmx_queue_consumer_t *c = make(x);
    pmx_queue_consumer_close(c);
    assert_int_equal(c->phase, FREEING);   /* still allocated until the loop runs */
    uv_run(&x->loop, UV_RUN_DEFAULT);
}

static void test_consumer_close_mid_drain(void **state)
{
    ctx_t *x = *state;
    pmx_queue_consumer_t *c = make(x);
    const char *ids[] = { "ws_a" };
    pmx_queue_consumer_set_workspaces(c, ids, 1);
    pmx_queue_consumer_start(c);
    pmx_queue_consumer_drain(c, drained_cb, x);
    uv_run(&x->loop, UV_RUN_NOWAIT);           /* one turn: still waiting for Redis */
    assert_int_equal(c->phase, DRAINING);
    pmx_queue_consumer_close(c);
    assert_int_equal(c->phase, FREEING);
    uv_run(&x->loop, UV_RUN_DEFAULT);
    assert_int_equal(x->drained, 0);           /* no callback after close */
}

int main(void)
{
    pmx_log_set_level(PMX_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_cell_by_cell),
        cmocka_unit_test(test_table_rules),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_set_legal_and_illegal),
        cmocka_unit_test_setup_teardown(test_consumer_drain_without_redis, setup, teardown),
        cmocka_unit_test_setup_teardown(test_consumer_close_from_new, setup, teardown),
        cmocka_unit_test_setup_teardown(test_consumer_close_mid_drain, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
