/*
 * http/email.c: a POST /v1/emails JSON body becomes job fields checked by
 * lib/job.h, with errors naming the JSON field.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http/email.h"

typedef struct {
    int  rc;
    char err[600];
    char field[PMX_HTTP_EMAIL_FIELD_MAX];
    pmx_http_email_t e;
} result_t;

static result_t convert(const char *body, const char *idem)
{
    result_t r;
    memset(&r, 0, sizeof r);
    json_t *doc = pmx_http_json_parse(body, strlen(body), r.err, sizeof r.err);
    assert_non_null(doc);
    r.rc = pmx_http_email_convert(doc, idem, 1024 * 1024, &r.e, NULL, r.err, sizeof r.err, r.field);
    json_decref(doc);
    return r;
}

static const char *value_of(const pmx_http_email_t *e, const char *name)
{
    for (size_t i = 0; i < e->n; i++)
        if (strcmp(e->f[i].name, name) == 0) return e->f[i].value;
    return NULL;
}

static void test_fields(void **state)
{
    (void)state;
    result_t r = convert("{\"from\":\"News <n@acme.test>\",\"to\":[\"a@x.net\",\"b@x.net\"],"
                         "\"cc\":\"c@x.net\",\"bcc\":[],\"subject\":\"hi\",\"text\":\"t\","
                         "\"headers\":{\"X-Campaign\":\"spring\"},\"metadata\":\"m\"}", "k-1");
    assert_int_equal(r.rc, 0);
    assert_string_equal(value_of(&r.e, "from"), "News <n@acme.test>");
    assert_string_equal(value_of(&r.e, "to"), "a@x.net, b@x.net");
    assert_string_equal(value_of(&r.e, "cc"), "c@x.net");
    assert_null(value_of(&r.e, "bcc"));                 /* empty array = left out */
    assert_string_equal(value_of(&r.e, "header:X-Campaign"), "spring");
    assert_string_equal(value_of(&r.e, "id"), "k-1");
    assert_string_equal(value_of(&r.e, "metadata"), "m");
    pmx_http_email_free(&r.e);
}

static void expect_refused(const char *body, const char *idem, const char *field)
{
    result_t r = convert(body, idem);
    if (r.rc != -1) fail_msg("accepted: %s", body);
    if (strcmp(r.field, field) != 0) fail_msg("field '%s', expected '%s' (%s)", r.field, field, r.err);
    assert_int_equal(r.e.n, 0);
}

static void test_refusals(void **state)
{
    (void)state;
    const char *ok = "\"to\":\"a@x.net\",\"subject\":\"s\",\"text\":\"t\"";
    char b[512];
    expect_refused("{\"from\":\"not an address\",\"to\":\"a@x.net\",\"subject\":\"s\",\"text\":\"t\"}",
                   NULL, "from");
    expect_refused("{\"to\":\"a@x.net\",\"subject\":\"s\",\"text\":\"t\"}", NULL, "from");
    snprintf(b, sizeof b, "{\"from\":\"a@acme.test\",%s,\"headers\":{\"X-Foo\":\"a\\r\\nBcc: e@x.net\"}}", ok);
    expect_refused(b, NULL, "headers.X-Foo");
    snprintf(b, sizeof b, "{\"from\":\"a@acme.test\",%s,\"headers\":{\"X-Foo\":1}}", ok);
    expect_refused(b, NULL, "headers.X-Foo");
    snprintf(b, sizeof b, "{\"from\":\"a@acme.test\",%s,\"headers\":\"X-Foo: 1\"}", ok);
    expect_refused(b, NULL, "headers");
    expect_refused("{\"from\":\"a@acme.test\",\"to\":\"a@x.net\",\"subject\":\"s\\nBcc: e@x.net\",\"text\":\"t\"}",
                   NULL, "subject");
    snprintf(b, sizeof b, "{\"from\":\"a@acme.test\",%s,\"_source\":\"smtp\"}", ok);
    expect_refused(b, NULL, "_source");
    snprintf(b, sizeof b, "{\"from\":\"a@acme.test\",%s,\"header:X\":\"y\"}", ok);
    expect_refused(b, NULL, "header:X");
    snprintf(b, sizeof b, "{\"from\":\"a@acme.test\",%s,\"id\":\"x\"}", ok);
    expect_refused(b, NULL, "id");
    snprintf(b, sizeof b, "{\"from\":\"a@acme.test\",%s,\"nosuch\":\"x\"}", ok);
    expect_refused(b, NULL, "nosuch");
    expect_refused("{\"from\":\"a@acme.test\",\"to\":[\"a@x.net\",7],\"subject\":\"s\",\"text\":\"t\"}",
                   NULL, "to");
    expect_refused("{\"from\":\"a@acme.test\",\"to\":\"a@x.net\",\"subject\":null,\"text\":\"t\"}",
                   NULL, "subject");
    snprintf(b, sizeof b, "{\"from\":\"a@acme.test\",%s}", ok);
    expect_refused(b, "bad\x01key", "Idempotency-Key");
    expect_refused("[1]", NULL, "");
}

static void test_parse(void **state)
{
    (void)state;
    char err[300];
    const char *bad[] = { "{", "{\"a\":\"\xff\"}", "{\"a\":1,\"a\":2}", "{\"a\":\"\\u0000\"}", "" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *j = pmx_http_json_parse(bad[i], strlen(bad[i]), err, sizeof err);
        if (j) fail_msg("parsed: %s", bad[i]);
        assert_non_null(strstr(err, "not valid JSON"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
