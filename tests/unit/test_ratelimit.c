/*
 * queue/ratelimit.c without Redis: argument checks, the reply decoder, and
 * the callbacks that never reach Redis (unlimited limits, Redis not up):
 * always from the loop, never inside pmx_ratelimit_take(), none after a
 * cancel or a free. The script itself runs against a real redis-server in
 * tests/integration/test_ratelimit.sh.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/log.h"
#include "queue/ratelimit.h"

typedef struct {
    uv_loop_t         loop;
    pmx_redis_conn_t *rc;
    pmx_ratelimit_t  *rl;
    int               in_take;     /* > 0 while inside pmx_ratelimit_take() */
    int               calls;
    int               reentrant;   /* callbacks that came from inside take() */
    pmx_ratelimit_result_t last;
    int               order[8];
    int               norder;
} fx_t;

typedef struct {
    fx_t *fx;
    int   id;
    int   again;   /* take once more from the callback */
} tag_t;

static int setup(void **state)
{
    fx_t *fx = calloc(1, sizeof *fx);
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    char err[256];
    /* Never started: not up. */
    fx->rc = pmx_redis_conn_new(&fx->loop, "unix:/nonexistent/redis.sock", NULL, 0, err,
                                sizeof err);
    assert_non_null(fx->rc);
    fx->rl = pmx_ratelimit_new(&fx->loop, fx->rc, "pmx", err, sizeof err);
    assert_non_null(fx->rl);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    if (fx->rl) pmx_ratelimit_free(fx->rl);
    pmx_redis_conn_close(fx->rc);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&fx->loop), 0);
    free(fx);
    return 0;
}

static void cb(const pmx_ratelimit_result_t *res, void *arg);

static int take(fx_t *fx, tag_t *t, double rate, int burst, int64_t quota, unsigned n)
{
    fx->in_take++;
    int rc = pmx_ratelimit_take(fx->rl, "ws_abc", rate, burst, quota, n, cb, t);
    fx->in_take--;
    return rc;
}

static void cb(const pmx_ratelimit_result_t *res, void *arg)
{
    tag_t *t = arg;
    fx_t *fx = t->fx;
    if (fx->in_take) fx->reentrant++;
    fx->calls++;
    fx->last = *res;
    if (fx->norder < 8) fx->order[fx->norder++] = t->id;
    if (t->again) {
        t->again--;
        assert_int_equal(take(fx, t, 0, 0, 0, 1), 0);
    }
}

static void test_new_refuses_bad_prefix(void **state)
{
    fx_t *fx = *state;
    char err[256];
    const char *bad[] = { "", "a{b", "a}b", "has space", "tab\t" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_null(pmx_ratelimit_new(&fx->loop, fx->rc, bad[i], err, sizeof err));
        assert_non_null(strstr(err, "prefix"));
    }
    assert_null(pmx_ratelimit_new(&fx->loop, fx->rc, NULL, err, sizeof err));
}

static void test_take_refuses_bad_arguments(void **state)
{
    fx_t *fx = *state;
    tag_t t = { fx, 1, 0 };
    assert_int_equal(take(fx, &t, -1, 5, 0, 1), -EINVAL);
    assert_int_equal(take(fx, &t, NAN, 5, 0, 1), -EINVAL);
    assert_int_equal(take(fx, &t, INFINITY, 5, 0, 1), -EINVAL);
    assert_int_equal(take(fx, &t, 1e-9, 5, 0, 1), -EINVAL);
    assert_int_equal(take(fx, &t, 2e9, 5, 0, 1), -EINVAL);
    assert_int_equal(take(fx, &t, 10, 0, 0, 1), -EINVAL);
    assert_int_equal(take(fx, &t, 10, PMX_RATELIMIT_BURST_MAX + 1, 0, 1), -EINVAL);
    assert_int_equal(take(fx, &t, 10, 5, -1, 1), -EINVAL);
    assert_int_equal(take(fx, &t, 10, 5, PMX_RATELIMIT_QUOTA_MAX + 1, 1), -EINVAL);
    assert_int_equal(take(fx, &t, 10, 5, 0, 0), -EINVAL);
    assert_int_equal(take(fx, &t, 10, 5, 0, PMX_RATELIMIT_N_MAX + 1), -EINVAL);
    const char *bad_ws[] = { "", "ws{x}", "ws x", "w\xc3\xa9" };
    for (size_t i = 0; i < sizeof bad_ws / sizeof bad_ws[0]; i++)
        assert_int_equal(pmx_ratelimit_take(fx->rl, bad_ws[i], 10, 5, 0, 1, cb, &t), -EINVAL);
    char longws[130];
    memset(longws, 'a', 129);
    longws[129] = '\0';
    assert_int_equal(pmx_ratelimit_take(fx->rl, longws, 10, 5, 0, 1, cb, &t), -EINVAL);
    assert_int_equal(pmx_ratelimit_take(fx->rl, NULL, 10, 5, 0, 1, cb, &t), -EINVAL);
    assert_int_equal(pmx_ratelimit_take(fx->rl, "ws_abc", 10, 5, 0, 1, NULL, &t), -EINVAL);
    /* Burst does not matter without a rate. */
    assert_int_equal(take(fx, &t, 0, 0, 100, 1), 0);
    assert_int_equal(pmx_ratelimit_pending(fx->rl), 1);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    assert_int_equal(fx->calls, 1);
    assert_int_equal(pmx_ratelimit_pending(fx->rl), 0);
}

/* A shaping rule's site (pmx_ratelimit_take_site): a rate is required; Redis
 * not up answers -EAGAIN from the loop, never inside the call. */
static void test_take_site(void **state)
{
    fx_t *fx = *state;
    tag_t t = { fx, 1, 0 };
    assert_int_equal(pmx_ratelimit_take_site(fx->rl, "google", 0, 1, 1, cb, &t), -EINVAL);
    assert_int_equal(pmx_ratelimit_take_site(fx->rl, "google", 2, 0, 1, cb, &t), -EINVAL);
    assert_int_equal(pmx_ratelimit_take_site(fx->rl, "go{og}le", 2, 1, 1, cb, &t), -EINVAL);
    assert_int_equal(pmx_ratelimit_take_site(fx->rl, "", 2, 1, 1, cb, &t), -EINVAL);
    assert_int_equal(pmx_ratelimit_take_site(fx->rl, "google", 2, 1, 0, cb, &t), -EINVAL);
    assert_int_equal(fx->calls, 0);
    fx->in_take++;
    assert_int_equal(pmx_ratelimit_take_site(fx->rl, "google", 2, 1, 1, cb, &t), 0);
    fx->in_take--;
    assert_int_equal(fx->calls, 0);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    assert_int_equal(fx->calls, 1);
    assert_int_equal(fx->reentrant, 0);
    assert_int_equal(fx->last.status, -EAGAIN);
    assert_false(fx->last.allowed);
}

/* Nothing to check: allowed without Redis, on the loop's next turn. */
static void test_unlimited_allowed_from_the_loop(void **state)
{
    fx_t *fx = *state;
    tag_t t = { fx, 1, 0 };
    assert_int_equal(take(fx, &t, 0, 0, 0, 1000), 0);
    assert_int_equal(fx->calls, 0);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    assert_int_equal(fx->calls, 1);
    assert_int_equal(fx->reentrant, 0);
    assert_int_equal(fx->last.status, 0);
    assert_true(fx->last.allowed);
    assert_int_equal(fx->last.reason, PMX_RATELIMIT_OK);
    assert_int_equal(fx->last.quota_used, -1);
    assert_int_equal(fx->last.now_us, 0);
}

/* Redis is not up: -EAGAIN through the callback, never from inside take(). */
static void test_not_up_reports_eagain(void **state)
{
    fx_t *fx = *state;
    tag_t t = { fx, 1, 0 };
    assert_int_equal(take(fx, &t, 20, 5, 0, 1), 0);
    assert_int_equal(take(fx, &t, 0, 0, 100, 1), 0);
    assert_int_equal(fx->calls, 0);
    assert_int_equal(pmx_ratelimit_pending(fx->rl), 2);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    assert_int_equal(fx->calls, 2);
    assert_int_equal(fx->reentrant, 0);
    assert_int_equal(fx->last.status, -EAGAIN);
    assert_false(fx->last.allowed);
}

/* A take from inside a callback is answered later, in order. */
static void test_take_from_callback(void **state)
{
    fx_t *fx = *state;
    tag_t a = { fx, 1, 2 }, b = { fx, 2, 0 };
    assert_int_equal(take(fx, &a, 0, 0, 0, 1), 0);
    assert_int_equal(take(fx, &b, 0, 0, 0, 1), 0);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    assert_int_equal(fx->calls, 4);
    assert_int_equal(fx->reentrant, 0);
    int want[] = { 1, 2, 1, 1 };
    assert_memory_equal(fx->order, want, sizeof want);
}

static void test_cancel(void **state)
{
    fx_t *fx = *state;
    tag_t a = { fx, 1, 0 }, b = { fx, 2, 0 };
    assert_int_equal(take(fx, &a, 0, 0, 0, 1), 0);
    assert_int_equal(take(fx, &b, 20, 5, 0, 1), 0);
    assert_int_equal(take(fx, &a, 20, 5, 0, 1), 0);
    assert_int_equal(pmx_ratelimit_pending(fx->rl), 3);
    assert_int_equal(pmx_ratelimit_cancel(fx->rl, &a), 2);
    assert_int_equal(pmx_ratelimit_cancel(fx->rl, &a), 0);
    assert_int_equal(pmx_ratelimit_pending(fx->rl), 1);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    assert_int_equal(fx->calls, 1);
    assert_int_equal(fx->order[0], 2);
}

/* Freed with requests waiting: no callback, nothing leaks (ASan). */
static void test_free_with_pending(void **state)
{
    fx_t *fx = *state;
    tag_t a = { fx, 1, 0 };
    assert_int_equal(take(fx, &a, 0, 0, 0, 1), 0);
    assert_int_equal(take(fx, &a, 20, 5, 100, 1), 0);
    pmx_ratelimit_free(fx->rl);
    fx->rl = NULL;
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    assert_int_equal(fx->calls, 0);
}

/* A callback that frees the limiter: the other answers are not delivered. */
static void free_cb(const pmx_ratelimit_result_t *res, void *arg)
{
    (void)res;
    fx_t *fx = arg;
    fx->calls++;
    pmx_ratelimit_free(fx->rl);
    fx->rl = NULL;
}

static void test_free_from_callback(void **state)
{
    fx_t *fx = *state;
    for (int i = 0; i < 3; i++)
        assert_int_equal(pmx_ratelimit_take(fx->rl, "ws_abc", 0, 0, 0, 1, free_cb, fx), 0);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    assert_int_equal(fx->calls, 1);
}

/* ---- the reply decoder ---------------------------------------------------- */

static redisReply *int_reply(long long v)
{
    redisReply *r = calloc(1, sizeof *r);
    r->type = REDIS_REPLY_INTEGER;
    r->integer = v;
    return r;
}

static redisReply *array5(long long a, long long w, long long why, long long used, long long now)
{
    redisReply *r = calloc(1, sizeof *r);
    r->type = REDIS_REPLY_ARRAY;
    r->elements = 5;
    r->element = calloc(5, sizeof *r->element);
    long long v[] = { a, w, why, used, now };
    for (int i = 0; i < 5; i++) r->element[i] = int_reply(v[i]);
    return r;
}

static void reply_free(redisReply *r)
{
    for (size_t i = 0; i < r->elements; i++) free(r->element[i]);
    free(r->element);
    free(r);
}

static void expect_proto(redisReply *r)
{
    pmx_ratelimit_result_t res;
    pmx__ratelimit_parse_reply(r, &res);
    assert_int_equal(res.status, -EPROTO);
    assert_false(res.allowed);
    reply_free(r);
}

static void test_parse_reply(void **state)
{
    (void)state;
    pmx_ratelimit_result_t res;
    redisReply *r = array5(1, 0, 0, 42, 1795399819071949LL);
    pmx__ratelimit_parse_reply(r, &res);
    assert_int_equal(res.status, 0);
    assert_true(res.allowed);
    assert_int_equal(res.quota_used, 42);
    assert_int_equal(res.now_us, 1795399819071949LL);
    reply_free(r);

    r = array5(0, 150, 1, -1, 5);
    pmx__ratelimit_parse_reply(r, &res);
    assert_int_equal(res.status, 0);
    assert_false(res.allowed);
    assert_int_equal(res.reason, PMX_RATELIMIT_RATE);
    assert_string_equal(pmx_ratelimit_reason_name(res.reason), "rate");
    assert_int_equal(res.wait_ms, 150);
    assert_false(res.never);
    reply_free(r);

    r = array5(0, 3600000, 2, 100, 5);
    pmx__ratelimit_parse_reply(r, &res);
    assert_int_equal(res.reason, PMX_RATELIMIT_QUOTA);
    assert_string_equal(pmx_ratelimit_reason_name(res.reason), "quota");
    assert_int_equal(res.wait_ms, 3600000);
    assert_int_equal(res.quota_used, 100);
    assert_false(res.never);
    reply_free(r);

    r = array5(0, 10, 3, 0, 5);
    pmx__ratelimit_parse_reply(r, &res);
    assert_int_equal(res.reason, PMX_RATELIMIT_QUOTA);
    assert_true(res.never);
    reply_free(r);

    /* A refusal always waits at least 1 ms: no caller spins. */
    r = array5(0, 0, 1, -1, 5);
    pmx__ratelimit_parse_reply(r, &res);
    assert_int_equal(res.wait_ms, 1);
    reply_free(r);

    pmx__ratelimit_parse_reply(NULL, &res);
    assert_int_equal(res.status, -ECONNRESET);
    assert_false(res.allowed);

    redisReply err = { .type = REDIS_REPLY_ERROR, .str = "ERR boom", .len = 8 };
    pmx__ratelimit_parse_reply(&err, &res);
    assert_int_equal(res.status, -EPROTO);

    expect_proto(array5(2, 0, 0, 0, 0));     /* allowed out of range */
    expect_proto(array5(1, 0, 1, 0, 0));     /* allowed with a reason */
    expect_proto(array5(0, 5, 0, 0, 0));     /* refused without one */
    expect_proto(array5(0, 5, 4, 0, 0));     /* unknown reason */
    expect_proto(array5(0, -5, 1, 0, 0));    /* negative wait */
    expect_proto(array5(1, 0, 0, -2, 0));    /* bad count */
    r = array5(1, 0, 0, 0, 0);
    r->elements = 4;
    free(r->element[4]);
    expect_proto(r);
    r = array5(1, 0, 0, 0, 0);
    r->element[1]->type = REDIS_REPLY_STRING;
    expect_proto(r);
}

static void test_reason_names(void **state)
{
    (void)state;
    assert_string_equal(pmx_ratelimit_reason_name(PMX_RATELIMIT_OK), "");
    assert_non_null(strstr(pmx__ratelimit_lua_ymd, "local function ymd"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_new_refuses_bad_prefix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_take_site, setup, teardown),
        cmocka_unit_test_setup_teardown(test_take_refuses_bad_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unlimited_allowed_from_the_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_up_reports_eagain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_take_from_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_with_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_from_callback, setup, teardown),
        cmocka_unit_test(test_parse_reply),
        cmocka_unit_test(test_reason_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
