/*
 * inbound/suppress_table.c: the suppression list's hash set — scopes, case,
 * expiry, replacement, removal with back-shifting (checked against a plain
 * reference under many random inserts and deletes), notification payloads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "inbound/suppress.h"

#define NOW 1893456000LL   /* 2030-01-01 */
#define WS  "ws_aaaaaaaaaaaaaaaa"

static void test_reasons(void **state)
{
    (void)state;
    const char *names[] = { "hard_bounce", "soft_bounce", "complaint", "unsubscribe", "manual" };
    for (size_t i = 0; i < 5; i++) {
        pmx_supp_reason_t r = pmx_supp_reason_parse(names[i]);
        assert_int_not_equal(r, PMX_SUPP_NONE);
        assert_string_equal(pmx_supp_reason_name(r), names[i]);
    }
    assert_int_equal(pmx_supp_reason_parse("bounce"), PMX_SUPP_NONE);
    assert_int_equal(pmx_supp_reason_parse(NULL), PMX_SUPP_NONE);
    assert_null(pmx_supp_reason_name(PMX_SUPP_NONE));
}

static void test_scope_case_and_workspace(void **state)
{
    (void)state;
    pmx_supp_table_t *t = pmx_supp_table_new();
    assert_int_equal(pmx_supp_table_put(t, WS, "*", "a@x.test", PMX_SUPP_HARD_BOUNCE, 0), 0);
    assert_int_equal(pmx_supp_table_put(t, WS, "news", "b@x.test", PMX_SUPP_UNSUBSCRIBE, 0), 0);
    assert_int_equal(pmx_supp_table_get(t, WS, "*", "A@X.Test", NOW), PMX_SUPP_HARD_BOUNCE);
    assert_int_equal(pmx_supp_table_get(t, WS, "*", "b@x.test", NOW), PMX_SUPP_NONE);
    assert_int_equal(pmx_supp_table_get(t, WS, "news", "b@x.test", NOW), PMX_SUPP_UNSUBSCRIBE);
    assert_int_equal(pmx_supp_table_get(t, WS, "promo", "b@x.test", NOW), PMX_SUPP_NONE);
    /* Another workspace never sees this one's list. */
    assert_int_equal(pmx_supp_table_get(t, "ws_bbbbbbbbbbbbbbbb", "*", "a@x.test", NOW),
                     PMX_SUPP_NONE);
    /* Bad arguments are refused, not stored. */
    assert_int_equal(pmx_supp_table_put(t, WS, "*", "", PMX_SUPP_MANUAL, 0), -1);
    assert_int_equal(pmx_supp_table_put(t, "", "*", "c@x.test", PMX_SUPP_MANUAL, 0), -1);
    assert_int_equal(pmx_supp_table_put(t, WS, "*", "c@x.test", PMX_SUPP_NONE, 0), -1);
    assert_int_equal(pmx_supp_table_count(t), 2);
    pmx_supp_table_free(t);
}

static void test_expiry_and_replace(void **state)
{
    (void)state;
    pmx_supp_table_t *t = pmx_supp_table_new();
    assert_int_equal(pmx_supp_table_put(t, WS, "*", "s@x.test", PMX_SUPP_SOFT_BOUNCE, NOW + 3600), 0);
    assert_int_equal(pmx_supp_table_get(t, WS, "*", "s@x.test", NOW), PMX_SUPP_SOFT_BOUNCE);
    assert_int_equal(pmx_supp_table_get(t, WS, "*", "s@x.test", NOW + 3600 + 60), PMX_SUPP_NONE);
    /* Replaced by a permanent entry with another reason. */
    assert_int_equal(pmx_supp_table_put(t, WS, "*", "s@x.test", PMX_SUPP_MANUAL, 0), 0);
    assert_int_equal(pmx_supp_table_count(t), 1);
    assert_int_equal(pmx_supp_table_get(t, WS, "*", "s@x.test", NOW + 99999999), PMX_SUPP_MANUAL);
    /* An entry already past removes what it would replace. */
    assert_int_equal(pmx_supp_table_put(t, WS, "*", "s@x.test", PMX_SUPP_MANUAL, 1000), 0);
    assert_int_equal(pmx_supp_table_count(t), 0);
    pmx_supp_table_free(t);
}

/* Many random puts and deletes against a plain array: removal keeps every run intact. */
static void test_against_reference(void **state)
{
    (void)state;
    enum { N = 5000, OPS = 60000 };
    static bool ref[N];
    memset(ref, 0, sizeof ref);
    pmx_supp_table_t *t = pmx_supp_table_new();
    srand(12345);
    char addr[64];
    size_t live = 0;
    for (int op = 0; op < OPS; op++) {
        int i = rand() % N;
        snprintf(addr, sizeof addr, "user%d@d%d.test", i, i % 7);
        if (rand() % 3) {
            assert_int_equal(pmx_supp_table_put(t, WS, "*", addr, PMX_SUPP_COMPLAINT, 0), 0);
            if (!ref[i]) live++;
            ref[i] = true;
        } else {
            pmx_supp_table_del(t, WS, "*", addr);
            if (ref[i]) live--;
            ref[i] = false;
        }
    }
    assert_int_equal(pmx_supp_table_count(t), live);
    for (int i = 0; i < N; i++) {
        snprintf(addr, sizeof addr, "user%d@d%d.test", i, i % 7);
        assert_int_equal(pmx_supp_table_get(t, WS, "*", addr, NOW) == PMX_SUPP_COMPLAINT, ref[i]);
    }
    pmx_supp_table_free(t);
}

static void test_apply_payloads(void **state)
{
    (void)state;
    pmx_supp_table_t *t = pmx_supp_table_new();
    assert_int_equal(pmx_supp_table_apply(t, "+ " WS " * hard_bounce 0 a@x.test"), 0);
    assert_int_equal(pmx_supp_table_apply(t, "+ " WS " news unsubscribe 0 \"a b\"@x.test"), 0);
    assert_int_equal(pmx_supp_table_get(t, WS, "*", "a@x.test", NOW), PMX_SUPP_HARD_BOUNCE);
    assert_int_equal(pmx_supp_table_get(t, WS, "news", "\"a b\"@x.test", NOW), PMX_SUPP_UNSUBSCRIBE);
    assert_int_equal(pmx_supp_table_apply(t, "- " WS " * a@x.test"), 0);
    assert_int_equal(pmx_supp_table_get(t, WS, "*", "a@x.test", NOW), PMX_SUPP_NONE);
    assert_int_equal(pmx_supp_table_apply(t, "*"), 1);
    const char *bad[] = { "", "+", "x " WS " * a@x.test", "+ " WS " * bogus 0 a@x.test",
                          "+ " WS " * manual -5 a@x.test", "+ " WS " * manual 12x a@x.test",
                          "+ " WS " * manual 0 ", "- " WS " *", "- " WS " * ", NULL };
    for (size_t i = 0; bad[i]; i++) assert_int_equal(pmx_supp_table_apply(t, bad[i]), -1);
    assert_int_equal(pmx_supp_table_apply(t, NULL), -1);
    assert_int_equal(pmx_supp_table_count(t), 1);
    pmx_supp_table_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reasons),
        cmocka_unit_test(test_scope_case_and_workspace),
        cmocka_unit_test(test_expiry_and_replace),
        cmocka_unit_test(test_against_reference),
        cmocka_unit_test(test_apply_payloads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
