/*
 * submission/budget.c: holds grow within the limit, shrink always, the last
 * eighth is kept for holds up to PMX_SUBMISSION_BUDGET_SMALL, room() changes
 * nothing, refusals are counted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "submission/budget.h"

#define MIB (UINT64_C(1024) * 1024)

static void test_hold_and_release(void **state)
{
    (void)state;
    pmx_submission_budget_t b;
    pmx_submission_budget_init(&b, 16 * MIB);
    uint64_t a = 0, c = 0;
    assert_true(pmx_submission_budget_hold(&b, &a, 5 * MIB));
    assert_true(pmx_submission_budget_hold(&b, &c, 9 * MIB));
    assert_int_equal(b.used, 14 * MIB);
    /* big holds stop at 7/8 = 14 MiB */
    assert_false(pmx_submission_budget_hold(&b, &a, 5 * MIB + 1));
    assert_int_equal(a, 5 * MIB);
    assert_int_equal(b.refusals, 1);
    /* small ones may use the last eighth */
    uint64_t s1 = 0, s2 = 0, s3 = 0;
    assert_true(pmx_submission_budget_hold(&b, &s1, MIB));
    assert_true(pmx_submission_budget_hold(&b, &s2, MIB));
    assert_false(pmx_submission_budget_hold(&b, &s3, 1));      /* 16 MiB used */
    assert_int_equal(b.refusals, 2);
    assert_int_equal(b.used, 16 * MIB);
    assert_int_equal(b.peak, 16 * MIB);
    /* shrinking is always granted; giving back frees room */
    assert_true(pmx_submission_budget_hold(&b, &c, 8 * MIB));
    assert_true(pmx_submission_budget_hold(&b, &s3, 512 * 1024));
    assert_true(pmx_submission_budget_hold(&b, &a, 0));
    assert_true(pmx_submission_budget_hold(&b, &c, 0));
    assert_true(pmx_submission_budget_hold(&b, &s1, 0));
    assert_true(pmx_submission_budget_hold(&b, &s2, 0));
    assert_true(pmx_submission_budget_hold(&b, &s3, 0));
    assert_int_equal(b.used, 0);
    assert_int_equal(b.peak, 16 * MIB);
}

static void test_room(void **state)
{
    (void)state;
    pmx_submission_budget_t b;
    pmx_submission_budget_init(&b, 8 * MIB);
    uint64_t a = 0;
    assert_true(pmx_submission_budget_room(&b, 0, 7 * MIB));
    assert_false(pmx_submission_budget_room(&b, 0, 7 * MIB + 1));   /* over 7/8 */
    assert_true(pmx_submission_budget_hold(&b, &a, 6 * MIB));
    assert_true(pmx_submission_budget_room(&b, a, 7 * MIB));        /* counts its own hold */
    assert_false(pmx_submission_budget_room(&b, 0, 2 * MIB));
    assert_true(pmx_submission_budget_room(&b, 0, MIB));            /* small: the whole budget */
    assert_true(pmx_submission_budget_room(&b, 0, 2 * MIB - 2 * MIB));
    assert_int_equal(b.used, 6 * MIB);
    assert_int_equal(b.refusals, 0);                                 /* room() counts nothing */
    assert_true(pmx_submission_budget_hold(&b, &a, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hold_and_release),
        cmocka_unit_test(test_room),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
