/*
 * workers/plan.c: who gets what for one job — deduplication across to/cc/bcc,
 * recipients already final in Postgres, and test mode (testers, catch-all
 * redirection with X-Original-To, suppression).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "lib/addr.h"
#include "lib/job.h"
#include "workers/plan.h"

static void make_job(pmx_job_t *j, const char *to, const char *cc, const char *bcc)
{
    char err[256];
    memset(j, 0, sizeof *j);
    assert_int_equal(pmx_addr_list_parse(to, strlen(to), &j->to, err, sizeof err), 0);
    if (cc) assert_int_equal(pmx_addr_list_parse(cc, strlen(cc), &j->cc, err, sizeof err), 0);
    if (bcc) assert_int_equal(pmx_addr_list_parse(bcc, strlen(bcc), &j->bcc, err, sizeof err), 0);
}

static void test_plain_dedup(void **state)
{
    (void)state;
    pmx_job_t j;
    make_job(&j, "a@x.test, B <b@X.TEST>", "b@x.test, c@x.test", "a@x.test, d@x.test");
    pmx_plan_policy_t pol = { 0 };
    pmx_plan_t p;
    pmx_plan_make(&j, &pol, NULL, &p);
    assert_int_equal(p.nr, 4);
    assert_int_equal(p.d[0].n, 4);
    assert_int_equal(p.d[1].n, 0);
    const char *want[] = { "a@x.test", "b@x.test", "c@x.test", "d@x.test" };
    for (size_t i = 0; i < 4; i++) {
        assert_string_equal(p.r[i].addr, want[i]);
        assert_int_equal(p.r[i].action, PMX_PLAN_RELAY);
        assert_int_equal(p.r[i].slot, i);
        assert_string_equal(p.d[0].rcpts[i], want[i]);
    }
    pmx_plan_free(&p);
    pmx_job_free(&j);
}

static void test_known_final_skipped(void **state)
{
    (void)state;
    pmx_job_t j;
    make_job(&j, "a@x.test, b@x.test, c@x.test", NULL, NULL);
    pmx_outcome_known_rcpt_t kr[] = {
        { "a@x.test", "sent", 1 }, { "b@x.test", "deferred", 2 }, { "c@x.test", "bounced", 1 },
    };
    pmx_outcome_lookup_t known = { .message_id = "msg_aaaaaaaaaaaaaaaa", .rcpts = kr, .nrcpts = 3 };
    pmx_plan_policy_t pol = { 0 };
    pmx_plan_t p;
    pmx_plan_make(&j, &pol, &known, &p);
    assert_int_equal(p.nr, 3);
    assert_int_equal(p.r[0].action, PMX_PLAN_SKIP);
    assert_int_equal(p.r[1].action, PMX_PLAN_RELAY);
    assert_int_equal(p.r[1].attempts, 2);
    assert_int_equal(p.r[2].action, PMX_PLAN_SKIP);
    assert_int_equal(p.d[0].n, 1);
    assert_string_equal(p.d[0].rcpts[0], "b@x.test");
    pmx_plan_free(&p);
    pmx_job_free(&j);
}

static void test_test_mode_catch_all(void **state)
{
    (void)state;
    pmx_job_t j;
    make_job(&j, "Tester <QA@x.test>, a@y.test", "b@y.test", "qa@x.test");
    const char *testers[] = { "qa@x.test" };
    pmx_plan_policy_t pol = { .test_mode = true, .catch_all = "catch@x.test",
                              .testers = testers, .ntesters = 1 };
    pmx_plan_t p;
    pmx_plan_make(&j, &pol, NULL, &p);
    /* QA@x.test and qa@x.test differ in the local part: both kept, both testers. */
    assert_int_equal(p.nr, 4);
    assert_int_equal(p.r[0].action, PMX_PLAN_RELAY);
    assert_int_equal(p.r[1].action, PMX_PLAN_REDIRECT);
    assert_int_equal(p.r[2].action, PMX_PLAN_REDIRECT);
    assert_int_equal(p.r[3].action, PMX_PLAN_RELAY);
    assert_int_equal(p.d[0].n, 2);
    assert_int_equal(p.d[1].n, 1);
    assert_string_equal(p.d[1].rcpts[0], "catch@x.test");
    assert_int_equal(p.noriginal_to, 2);
    assert_string_equal(p.original_to[0], "a@y.test");
    assert_string_equal(p.original_to[1], "b@y.test");
    assert_int_equal(p.r[1].delivery, 1);
    assert_int_equal(p.r[1].slot, 0);
    pmx_plan_free(&p);
    pmx_job_free(&j);
}

static void test_test_mode_suppressed(void **state)
{
    (void)state;
    pmx_job_t j;
    make_job(&j, "a@y.test, b@y.test", NULL, NULL);
    pmx_plan_policy_t pol = { .test_mode = true };
    pmx_plan_t p;
    pmx_plan_make(&j, &pol, NULL, &p);
    assert_int_equal(p.nr, 2);
    assert_int_equal(p.r[0].action, PMX_PLAN_SUPPRESS);
    assert_int_equal(p.r[1].action, PMX_PLAN_SUPPRESS);
    assert_int_equal(p.d[0].n + p.d[1].n, 0);
    pmx_plan_free(&p);
    pmx_job_free(&j);
}

static void test_status_final(void **state)
{
    (void)state;
    assert_true(pmx_plan_status_final("sent"));
    assert_true(pmx_plan_status_final("bounced"));
    assert_true(pmx_plan_status_final("rejected"));
    assert_true(pmx_plan_status_final("suppressed"));
    assert_false(pmx_plan_status_final("deferred"));
    assert_false(pmx_plan_status_final("queued"));
}

/* The suppression list stand-in: b@x.test and the catch-all are on it. */
static const char *list_says(const char *addr, void *arg)
{
    int *asked = arg;
    (*asked)++;
    if (strcmp(addr, "b@x.test") == 0) return "hard_bounce";
    if (strcmp(addr, "sink@x.test") == 0) return "complaint";
    return NULL;
}

static void test_suppression_list(void **state)
{
    (void)state;
    pmx_job_t j;
    make_job(&j, "a@x.test, b@x.test", NULL, NULL);
    int asked = 0;
    pmx_plan_policy_t pol = { .suppressed = list_says, .suppressed_arg = &asked };
    pmx_plan_t p;
    pmx_plan_make(&j, &pol, NULL, &p);
    assert_int_equal(p.nr, 2);
    assert_int_equal(p.r[0].action, PMX_PLAN_RELAY);
    assert_null(p.r[0].suppressed);
    assert_int_equal(p.r[1].action, PMX_PLAN_SUPPRESS);
    assert_string_equal(p.r[1].suppressed, "hard_bounce");
    assert_int_equal(p.d[0].n, 1);               /* only a@ goes out */
    assert_string_equal(p.d[0].rcpts[0], "a@x.test");
    assert_int_equal(asked, 2);
    pmx_plan_free(&p);
    pmx_job_free(&j);
}

/* Test mode: the list is asked about the catch-all, the address actually mailed, once. */
static void test_suppression_catch_all(void **state)
{
    (void)state;
    pmx_job_t j;
    make_job(&j, "a@x.test, c@x.test, t@x.test", NULL, NULL);
    const char *testers[] = { "t@x.test" };
    int asked = 0;
    pmx_plan_policy_t pol = { .test_mode = true, .catch_all = "sink@x.test", .testers = testers,
                              .ntesters = 1, .suppressed = list_says, .suppressed_arg = &asked };
    pmx_plan_t p;
    pmx_plan_make(&j, &pol, NULL, &p);
    assert_int_equal(p.r[0].action, PMX_PLAN_SUPPRESS);
    assert_string_equal(p.r[0].suppressed, "complaint");
    assert_int_equal(p.r[1].action, PMX_PLAN_SUPPRESS);
    assert_int_equal(p.r[2].action, PMX_PLAN_RELAY);   /* the tester is asked about itself */
    assert_int_equal(p.d[1].n, 0);                      /* no catch-all copy */
    assert_int_equal(p.noriginal_to, 0);
    assert_int_equal(asked, 2);                         /* catch-all once, tester once */
    pmx_plan_free(&p);
    pmx_job_free(&j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_dedup),
        cmocka_unit_test(test_known_final_skipped),
        cmocka_unit_test(test_test_mode_catch_all),
        cmocka_unit_test(test_test_mode_suppressed),
        cmocka_unit_test(test_status_final),
        cmocka_unit_test(test_suppression_list),
        cmocka_unit_test(test_suppression_catch_all),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
