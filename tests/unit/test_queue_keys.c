/*
 * queue/keys.c: every Redis key shape under the default and another prefix,
 * the SCAN pattern with the prefix's glob characters escaped, and the
 * workspace id read back out of a job stream key — refusing keys of another
 * prefix, another kind, or with no id.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/buf.h"
#include "queue/keys.h"

static void expect_key(pmx_queue_key_t which, const char *prefix, const char *ws,
                       const char *want)
{
    pmx_buf_t b = PMX_BUF_INIT;
    pmx_queue_key(&b, which, prefix, ws);
    assert_string_equal(pmx_buf_cstr(&b), want);
    pmx_buf_free(&b);
    char *s = pmx_queue_key_new(which, prefix, ws);
    assert_string_equal(s, want);
    free(s);
}

static void test_shapes(void **state)
{
    (void)state;
    expect_key(PMX_QUEUE_KEY_JOBS, "pmx", "ws_a", "pmx:{ws_a}:jobs");
    expect_key(PMX_QUEUE_KEY_RETRY, "pmx", "ws_a", "pmx:{ws_a}:retry");
    expect_key(PMX_QUEUE_KEY_DEAD, "pmx", "ws_a", "pmx:{ws_a}:dead");
    expect_key(PMX_QUEUE_KEY_RATE, "pmx", "ws_a", "pmx:{ws_a}:rate");
    expect_key(PMX_QUEUE_KEY_QUOTA, "pmx", "ws_a", "pmx:{ws_a}:quota:");
    expect_key(PMX_QUEUE_KEY_JOBS, "acme", "ws_b", "acme:{ws_b}:jobs");
    expect_key(PMX_QUEUE_KEY_DEAD, "acme-q", "ws_b", "acme-q:{ws_b}:dead");

    pmx_buf_t b = PMX_BUF_INIT;
    pmx_queue_key_idem(&b, "acme", "ws_c", "order-17");
    assert_string_equal(pmx_buf_cstr(&b), "acme:{ws_c}:idem:order-17");
    pmx_buf_reset(&b);
    pmx_queue_key_site_rate(&b, "pmx", "google");
    assert_string_equal(pmx_buf_cstr(&b), "pmx:site:{google}:rate");
    size_t n;
    assert_null(pmx_queue_key_jobs_ws("pmx", pmx_buf_cstr(&b), b.len, &n));   /* not a stream */
    pmx_buf_free(&b);
    assert_string_equal(PMX_QUEUE_GROUP, "postmux");
}

static void test_pattern(void **state)
{
    (void)state;
    pmx_buf_t b = PMX_BUF_INIT;
    pmx_queue_key_jobs_pattern(&b, "pmx");
    assert_string_equal(pmx_buf_cstr(&b), "pmx:{*}:jobs");
    pmx_buf_reset(&b);
    pmx_queue_key_jobs_pattern(&b, "a*b?c[d]e\\f");
    assert_string_equal(pmx_buf_cstr(&b), "a\\*b\\?c\\[d\\]e\\\\f:{*}:jobs");
    pmx_buf_free(&b);
}

static const char *ws_of(const char *prefix, const char *key, size_t *n)
{
    return pmx_queue_key_jobs_ws(prefix, key, strlen(key), n);
}

static void test_ws_of_jobs_key(void **state)
{
    (void)state;
    size_t n = 0;
    const char *key = "acme:{ws_abc}:jobs";
    const char *id = ws_of("acme", key, &n);
    assert_ptr_equal(id, key + 6);
    assert_int_equal(n, 6);
    assert_memory_equal(id, "ws_abc", 6);

    /* What the builder makes, the parser reads back. */
    char *built = pmx_queue_key_new(PMX_QUEUE_KEY_JOBS, "pmx", "ws_x1");
    id = ws_of("pmx", built, &n);
    assert_non_null(id);
    assert_int_equal(n, 5);
    assert_memory_equal(id, "ws_x1", 5);
    free(built);

    assert_null(ws_of("pmx", "acme:{ws_abc}:jobs", &n));      /* another prefix */
    assert_null(ws_of("acme", "acme:{ws_abc}:dead", &n));     /* another kind */
    assert_null(ws_of("acme", "acme:{ws_abc}:jobs2", &n));
    assert_null(ws_of("acme", "acme:{}:jobs", &n));           /* no id */
    assert_null(ws_of("acme", "acme:ws_abc:jobs", &n));       /* no hash tag */
    assert_null(ws_of("acme", "acme:{ws_abc:jobs", &n));
    assert_null(ws_of("acme", "acme", &n));
    assert_null(ws_of("acme", "", &n));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shapes),
        cmocka_unit_test(test_pattern),
        cmocka_unit_test(test_ws_of_jobs_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
