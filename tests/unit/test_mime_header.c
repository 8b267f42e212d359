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

/* pmx_mime_header_cut: as pmx_mime_header_remove, in place; the body never moves. */
static void test_cut(void **state)
{
    (void)state;
    char m[sizeof msg];
    memcpy(m, msg, sizeof msg);
    char err[100];
    size_t skip = 99;
    const char *body = strstr(msg, "\r\n\r\n") + 4;
    size_t body_off = (size_t)(body - msg);
    assert_int_equal(pmx_mime_header_cut(m, strlen(m), "X-Workspace-Id", &skip, err, sizeof err), 2);
    assert_int_equal(skip, strlen("x-workspace-id:  ws_abc \r\n") +
                           strlen("X-Workspace-Id: ws_second\r\n\tfolded\r\n"));
    assert_string_equal(m + skip, "From: a@acme.test\r\nSubject: hi\r\n\r\n"
                                  "X-Workspace-Id: in the body\r\n");
    assert_memory_equal(m + body_off, body, strlen(body));      /* in its place */

    memcpy(m, msg, sizeof msg);
    assert_int_equal(pmx_mime_header_cut(m, strlen(m), "To", &skip, err, sizeof err), 0);
    assert_int_equal(skip, 0);
    assert_string_equal(m, msg);
    /* the first field, and the last one before the body */
    char one[] = "X-A: 1\r\nFrom: a@b.c\r\nx-a: 2\r\n\r\nbody";
    assert_int_equal(pmx_mime_header_cut(one, strlen(one), "X-A", &skip, err, sizeof err), 2);
    assert_string_equal(one + skip, "From: a@b.c\r\n\r\nbody");
    char bad[] = "From: a@b.c\r\n: x\r\n\r\n";
    assert_int_equal(pmx_mime_header_cut(bad, strlen(bad), "From", &skip, err, sizeof err), -1);
    assert_string_equal(bad, "From: a@b.c\r\n: x\r\n\r\n");
    assert_int_equal(skip, 0);
    assert_string_equal(err, "line 2 is not a header field");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get),
        cmocka_unit_test(test_remove),
        cmocka_unit_test(test_cut),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
