/*
 * http/unsub_form.c: the one-click unsubscribe body (RFC 8058, form-urlencoded
 * and multipart/form-data), the page's HTML escaping and address masking.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http/unsub_form.h"

#define FORM "application/x-www-form-urlencoded"
#define MP   "multipart/form-data; boundary=XyZ"

static int check(const char *ctype, const char *body)
{
    char err[200] = "";
    int r = pmx_unsub_form_check(ctype, body, strlen(body), err, sizeof err);
    if (r != PMX_UNSUB_FORM_OK) assert_true(err[0] != '\0');   /* always a reason */
    return r;
}

static void test_urlencoded(void **state)
{
    (void)state;
    assert_int_equal(check(FORM, "List-Unsubscribe=One-Click"), PMX_UNSUB_FORM_OK);
    assert_int_equal(check("Application/X-WWW-Form-Urlencoded ; charset=UTF-8",
                           "List-Unsubscribe=One-Click"), PMX_UNSUB_FORM_OK);
    assert_int_equal(check(FORM, "List-Unsubscribe=One%2DClick&"), PMX_UNSUB_FORM_OK);
    assert_int_equal(check(FORM, "List%2dUnsubscribe=One-Click"), PMX_UNSUB_FORM_OK);
    assert_int_equal(check(FORM, "&&List-Unsubscribe=One-Click"), PMX_UNSUB_FORM_OK);

    assert_int_equal(check(FORM, ""), PMX_UNSUB_FORM_BAD);
    assert_int_equal(check(FORM, "List-Unsubscribe=one-click"), PMX_UNSUB_FORM_BAD);
    assert_int_equal(check(FORM, "list-unsubscribe=One-Click"), PMX_UNSUB_FORM_BAD);
    assert_int_equal(check(FORM, "List-Unsubscribe=One-Click\r\n"), PMX_UNSUB_FORM_BAD);
    assert_int_equal(check(FORM, "List-Unsubscribe=One+Click"), PMX_UNSUB_FORM_BAD);
    assert_int_equal(check(FORM, "List-Unsubscribe"), PMX_UNSUB_FORM_BAD);
    assert_int_equal(check(FORM, "List-Unsubscribe=One-Click&a=b"), PMX_UNSUB_FORM_BAD);
    assert_int_equal(check(FORM, "a=b&List-Unsubscribe=One-Click"), PMX_UNSUB_FORM_BAD);
    assert_int_equal(check(FORM, "List-Unsubscribe=One-Click&List-Unsubscribe=One-Click"),
                     PMX_UNSUB_FORM_BAD);
    assert_int_equal(check(FORM, "List-Unsubscribe=One-Click%"), PMX_UNSUB_FORM_BAD);
    assert_int_equal(check(FORM, "List-Unsubscribe=One-Click%4"), PMX_UNSUB_FORM_BAD);
    assert_int_equal(check(FORM, "List-Unsubscribe=One-Clic%zz"), PMX_UNSUB_FORM_BAD);
    /* A NUL inside the value is compared as a byte, not as the end. */
    char err[200];
    assert_int_equal(pmx_unsub_form_check(FORM, "List-Unsubscribe=One-Click\0x", 28, err,
                                          sizeof err), PMX_UNSUB_FORM_BAD);
    assert_int_equal(check(FORM, "List-Unsubscribe=One-Click%00"), PMX_UNSUB_FORM_BAD);
}

static void test_media(void **state)
{
    (void)state;
    assert_int_equal(check(NULL, "List-Unsubscribe=One-Click"), PMX_UNSUB_FORM_MEDIA);
    assert_int_equal(check("text/plain", "List-Unsubscribe=One-Click"), PMX_UNSUB_FORM_MEDIA);
    assert_int_equal(check("application/x-www-form-urlencodedX", "List-Unsubscribe=One-Click"),
                     PMX_UNSUB_FORM_MEDIA);
    assert_int_equal(check("application/json", "{}"), PMX_UNSUB_FORM_MEDIA);
}

static void test_multipart(void **state)
{
    (void)state;
    const char *ok = "--XyZ\r\n"
                     "Content-Disposition: form-data; name=\"List-Unsubscribe\"\r\n"
                     "\r\n"
                     "One-Click\r\n"
                     "--XyZ--\r\n";
    assert_int_equal(check(MP, ok), PMX_UNSUB_FORM_OK);
    assert_int_equal(check("multipart/form-data; boundary=\"XyZ\"; charset=utf-8", ok),
                     PMX_UNSUB_FORM_OK);
    /* curl -F style: a preamble-free body with a long boundary and a Content-Type. */
    assert_int_equal(check("multipart/form-data; boundary=------------------------d74496d66958873e",
                           "--------------------------d74496d66958873e\r\n"
                           "Content-Disposition: form-data; name=List-Unsubscribe\r\n"
                           "Content-Type: text/plain; charset=utf-8\r\n"
                           "\r\n"
                           "One-Click\r\n"
                           "--------------------------d74496d66958873e--\r\n"),
                     PMX_UNSUB_FORM_OK);
    /* A preamble and an epilogue are ignored. */
    assert_int_equal(check(MP, "preamble\r\n--XyZ\r\n"
                               "content-disposition: form-data; name=\"List-Unsubscribe\"\r\n"
                               "\r\nOne-Click\r\n--XyZ--\r\nepilogue"),
                     PMX_UNSUB_FORM_OK);

    assert_int_equal(check("multipart/form-data", ok), PMX_UNSUB_FORM_BAD);             /* no boundary */
    assert_int_equal(check("multipart/form-data; boundary=abc", ok), PMX_UNSUB_FORM_BAD);
    assert_int_equal(check("multipart/form-data; boundary=\"XyZ", ok), PMX_UNSUB_FORM_BAD);
    assert_int_equal(check("multipart/form-data; boundary=XyZ; boundary=XyZ", ok),
                     PMX_UNSUB_FORM_BAD);
    assert_int_equal(check(MP, "--XyZ\r\n"
                               "Content-Disposition: form-data; name=\"List-Unsubscribe\"\r\n"
                               "\r\nOne-Click\r\n--XyZ"), PMX_UNSUB_FORM_BAD);                 /* no close */
    assert_int_equal(check(MP, "--XyZ\r\n"
                               "Content-Disposition: form-data; name=\"List-Unsubscribe\"\r\n"
                               "\r\nOne-Click"), PMX_UNSUB_FORM_BAD);                   /* never ends */
    assert_int_equal(check(MP, "--XyZ\r\n"
                               "Content-Disposition: form-data; name=\"List-Unsubscribe\"\r\n"
                               "\r\nOne-Click\r\n"
                               "--XyZ\r\n"
                               "Content-Disposition: form-data; name=\"x\"\r\n"
                               "\r\ny\r\n--XyZ--"), PMX_UNSUB_FORM_BAD);                /* two fields */
    assert_int_equal(check(MP, "--XyZ\r\n"
                               "Content-Disposition: form-data; name=\"List-Unsubscribe\"; "
                               "filename=\"a.txt\"\r\n"
                               "\r\nOne-Click\r\n--XyZ--"), PMX_UNSUB_FORM_BAD);        /* a file */
    assert_int_equal(check(MP, "--XyZ\r\n"
                               "Content-Disposition: form-data; name=\"List-Unsubscribe\"\r\n"
                               "Content-Type: application/octet-stream\r\n"
                               "\r\nOne-Click\r\n--XyZ--"), PMX_UNSUB_FORM_BAD);
    assert_int_equal(check(MP, "--XyZ\r\n"
                               "Content-Disposition: attachment; name=\"List-Unsubscribe\"\r\n"
                               "\r\nOne-Click\r\n--XyZ--"), PMX_UNSUB_FORM_BAD);
    assert_int_equal(check(MP, "--XyZ\r\n\r\nOne-Click\r\n--XyZ--"), PMX_UNSUB_FORM_BAD);
    assert_int_equal(check(MP, "--XyZ\r\n"
                               "Content-Disposition: form-data; name=\"List-Unsubscribe\"\r\n"
                               "\r\nOne-Click \r\n--XyZ--"), PMX_UNSUB_FORM_BAD);       /* value */
    assert_int_equal(check(MP, "--XyZ\n"
                               "Content-Disposition: form-data; name=\"List-Unsubscribe\"\n"
                               "\nOne-Click\n--XyZ--"), PMX_UNSUB_FORM_BAD);            /* bare LF */
    assert_int_equal(check(MP, "--XyZ--"), PMX_UNSUB_FORM_BAD);                          /* empty */
    assert_int_equal(check(MP, ""), PMX_UNSUB_FORM_BAD);
}

static void test_escape_and_mask(void **state)
{
    (void)state;
    pmx_buf_t b = PMX_BUF_INIT;
    pmx_html_escape(&b, "<a href=\"x\">Tom & 'Jerry'</a>\r\n\x7f!");
    assert_string_equal(pmx_buf_cstr(&b), "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;"
                                          "&lt;/a&gt;!");
    pmx_buf_reset(&b);
    pmx_unsub_mask_address(&b, "john.doe@example.com");
    assert_string_equal(pmx_buf_cstr(&b), "j***@example.com");
    pmx_buf_reset(&b);
    pmx_unsub_mask_address(&b, "j@example.com");
    assert_string_equal(pmx_buf_cstr(&b), "j***@example.com");
    pmx_buf_reset(&b);
    pmx_unsub_mask_address(&b, "\xc3\xa9lise@exemple.fr");   /* é: both bytes kept */
    assert_string_equal(pmx_buf_cstr(&b), "\xc3\xa9***@exemple.fr");
    pmx_buf_reset(&b);
    pmx_unsub_mask_address(&b, "\"a@b\"@example.com");       /* the last '@' splits */
    assert_string_equal(pmx_buf_cstr(&b), "\"***@example.com");
    pmx_buf_reset(&b);
    pmx_unsub_mask_address(&b, "@example.com");
    assert_string_equal(pmx_buf_cstr(&b), "***");
    pmx_buf_reset(&b);
    pmx_unsub_mask_address(&b, "nodomain");
    assert_string_equal(pmx_buf_cstr(&b), "***");
    pmx_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_urlencoded),
        cmocka_unit_test(test_media),
        cmocka_unit_test(test_multipart),
        cmocka_unit_test(test_escape_and_mask),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
