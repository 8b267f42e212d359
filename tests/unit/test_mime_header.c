/*
 * lib/mime.c's pmx_mime_header_get and pmx_mime_header_remove (SMTP
 * submission's X-Workspace-Id): case-insensitive names, folded values, only
 * the header (never the body), several fields, bad headers refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "lib/buf.h"
#include "lib/mime.h"

static const char msg[] =
    "From: a@acme.test\r\n"
    "x-workspace-id:  ws_abc \r\n"
    "Subject: hi\r\n"
    "X-Workspace-Id: ws_second\r\n"
    "\tfolded\r\n"
    "\r\n"
    "X-Workspace-Id: in the body\r\n";

static void test_get(void **state)
{
    (void)state;
    pmx_buf_t v = PMX_BUF_INIT;
    char err[100];
    assert_int_equal(pmx_mime_header_get(msg, strlen(msg), "X-Workspace-Id", &v, err, sizeof err), 2);
    assert_string_equal(v.data, "ws_abc");
    assert_int_equal(pmx_mime_header_get(msg, strlen(msg), "Subject", NULL, err, sizeof err), 1);
    assert_int_equal(pmx_mime_header_get(msg, strlen(msg), "To", NULL, err, sizeof err), 0);
    pmx_buf_reset(&v);
    const char *folded = "X-A: one\r\n two\r\n\r\nbody";
    assert_int_equal(pmx_mime_header_get(folded, strlen(folded), "x-a", &v, err, sizeof err), 1);
    assert_string_equal(v.data, "one two");
    const char *bad = "From: a@b.c\r\nnot a header\r\n\r\n";
    assert_int_equal(pmx_mime_header_get(bad, strlen(bad), "X-A", NULL, err, sizeof err), -1);
    assert_string_equal(err, "line 2 is not a header field");
    pmx_buf_free(&v);
}

static void test_remove(void **state)
{
    (void)state;
    pmx_buf_t out = PMX_BUF_INIT;
    char err[100];
    assert_int_equal(pmx_mime_header_remove(msg, strlen(msg), "X-Workspace-Id", &out, err, sizeof err), 2);
    assert_string_equal(out.data, "From: a@acme.test\r\nSubject: hi\r\n\r\n"
                                  "X-Workspace-Id: in the body\r\n");
    pmx_buf_reset(&out);
    assert_int_equal(pmx_mime_header_remove(msg, strlen(msg), "To", &out, err, sizeof err), 0);
    assert_int_equal(out.len, strlen(msg));
    assert_memory_equal(out.data, msg, out.len);
    pmx_buf_reset(&out);
    pmx_buf_append_str(&out, "keep");
    const char *bad = "From: a@b.c\r\n: x\r\n\r\n";
    assert_int_equal(pmx_mime_header_remove(bad, strlen(bad), "From", &out, err, sizeof err), -1);
    assert_string_equal(out.data, "keep");
    pmx_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get),
        cmocka_unit_test(test_remove),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
