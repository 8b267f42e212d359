/*
 * sql/outcomes.c pieces that need no Postgres: the text-array literal every
 * batch parameter is built with (quoting of ", \, commas, braces, NULL vs
 * the string "NULL"), and submit's refusal of items missing a required field.
 * The batching, idempotency and isolation run against a real Postgres in
 * tests/integration/test_outcomes.sh.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "lib/buf.h"
#include "sql/outcomes.h"
#include "sql/pgarray.h"

static char *literal(const char *const *v, size_t n)
{
    pmx_buf_t b = PMX_BUF_INIT;
    pmx_buf_append_char(&b, '{');
    for (size_t i = 0; i < n; i++) pmx_pgarray_text(&b, v[i]);
    pmx_buf_append_char(&b, '}');
    return pmx_buf_detach(&b);
}

static void test_array_literal(void **state)
{
    (void)state;
    const char *v[] = { "plain", NULL, "NULL", "a,b", "{x}", "say \"hi\"", "back\\slash", "", "é\n" };
    char *s = literal(v, sizeof v / sizeof *v);
    assert_string_equal(s, "{\"plain\",NULL,\"NULL\",\"a,b\",\"{x}\",\"say \\\"hi\\\"\","
                           "\"back\\\\slash\",\"\",\"é\n\"}");
    free(s);
    const char *one[] = { NULL };
    s = literal(one, 1);
    assert_string_equal(s, "{NULL}");
    free(s);
    s = literal(NULL, 0);
    assert_string_equal(s, "{}");
    free(s);
}

static void never(const pmx_outcome_result_t *r, void *arg)
{
    (void)r;
    (void)arg;
    fail_msg("callback of a refused item");
}

static void test_submit_refuses_incomplete_items(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    pmx_outcomes_t *o = pmx_outcomes_new(&loop, NULL, NULL);
    pmx_outcome_rcpt_t r = { .address = "a@example.net", .status = NULL };
    pmx_outcome_t items[] = {
        { .workspace_id = "ws_x", .job_id = "1-0", .mail_from = "" },                 /* no id */
        { .message_id = "msg_x", .job_id = "1-0", .mail_from = "" },                  /* no ws */
        { .message_id = "msg_x", .workspace_id = "ws_x", .mail_from = "" },           /* no job */
        { .message_id = "msg_x", .workspace_id = "ws_x", .job_id = "1-0" },           /* no from */
        { .message_id = "msg_x", .workspace_id = "ws_x", .job_id = "1-0", .mail_from = "",
          .rcpts = &r, .nrcpts = 1 },                                                 /* no status */
    };
    for (size_t i = 0; i < sizeof items / sizeof *items; i++)
        assert_null(pmx_outcomes_submit(o, &items[i], never, NULL));
    assert_int_equal(pmx_outcomes_pending(o), 0);
    /* update_only needs neither job nor mail_from; with no connection it waits. */
    pmx_outcome_t upd = { .update_only = true, .message_id = "msg_x", .workspace_id = "ws_x" };
    assert_non_null(pmx_outcomes_submit(o, &upd, NULL, NULL));
    assert_int_equal(pmx_outcomes_pending(o), 1);
    pmx_outcomes_free(o);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_array_literal),
        cmocka_unit_test(test_submit_refuses_incomplete_items),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
