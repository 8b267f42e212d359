/*
 * smtp/reply.c: single and multi-line replies, partial input, every error the
 * parser promises (bad codes, separators, mismatched codes, line and line-count
 * caps), sanitised text, enhanced status codes, EHLO keywords, and the
 * formatter's output parsed back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "smtp/reply.h"

/* Parses s (as a C string) and returns the parser's result. */
static int parse(pmx_smtp_reply_t *r, const char *s, size_t *used)
{
    return pmx_smtp_reply_parse(r, s, strlen(s), used);
}

static void test_single_line(void **state)
{
    (void)state;
    pmx_smtp_reply_t r;
    pmx_smtp_reply_init(&r);
    size_t used;
    const char *in = "250 2.1.0 Ok\r\nEXTRA";
    assert_int_equal(parse(&r, in, &used), 1);
    assert_int_equal(used, 14);
    assert_int_equal(r.code, 250);
    assert_string_equal(r.enhanced, "2.1.0");
    assert_string_equal(r.text.data, "250 2.1.0 Ok");
    assert_int_equal(r.nlines, 1);
    pmx_smtp_reply_free(&r);
}

static void test_multi_line(void **state)
{
    (void)state;
    pmx_smtp_reply_t r;
    pmx_smtp_reply_init(&r);
    size_t used;
    const char *in = "550-5.1.1 The email account that you tried to reach\r\n"
                     "550-5.1.1 does not exist. Please try\r\n"
                     "550 5.1.1 double-checking the recipient's address\r\n"
                     "250 next\r\n";
    assert_int_equal(parse(&r, in, &used), 1);
    assert_int_equal(used, strlen(in) - strlen("250 next\r\n"));
    assert_int_equal(r.code, 550);
    assert_string_equal(r.enhanced, "5.1.1");
    assert_int_equal(r.nlines, 3);
    assert_string_equal(r.text.data,
                        "550-5.1.1 The email account that you tried to reach\n"
                        "550-5.1.1 does not exist. Please try\n"
                        "550 5.1.1 double-checking the recipient's address");
    /* The next reply follows. */
    assert_int_equal(parse(&r, in + used, &used), 1);
    assert_int_equal(r.code, 250);
    assert_string_equal(r.enhanced, "");
    pmx_smtp_reply_free(&r);
}

static void test_bare_code_and_lf(void **state)
{
    (void)state;
    pmx_smtp_reply_t r;
    pmx_smtp_reply_init(&r);
    size_t used;
    assert_int_equal(parse(&r, "354\r\n", &used), 1);
    assert_int_equal(r.code, 354);
    assert_int_equal(used, 5);
    assert_int_equal(parse(&r, "354\r", &used), 0);         /* the LF may still come */
    assert_int_equal(parse(&r, "354\rx", &used), PMX_SMTP_REPLY_EBADSEP);
    assert_int_equal(parse(&r, "220 ready\n", &used), 1);   /* LF alone ends a line too */
    assert_int_equal(r.code, 220);
    assert_string_equal(r.text.data, "220 ready");
    assert_int_equal(parse(&r, "250-a\n250 b\r\n", &used), 1);
    assert_int_equal(r.nlines, 2);
    pmx_smtp_reply_free(&r);
}

static void test_partial(void **state)
{
    (void)state;
    pmx_smtp_reply_t r;
    pmx_smtp_reply_init(&r);
    size_t used = 99;
    const char *full = "250-mx.example.com\r\n250-PIPELINING\r\n250 SIZE 1000\r\n";
    /* Every strict prefix needs more input; nothing is consumed. */
    for (size_t n = 0; n < strlen(full); n++) {
        assert_int_equal(pmx_smtp_reply_parse(&r, full, n, &used), 0);
        assert_int_equal(used, 0);
    }
    assert_int_equal(pmx_smtp_reply_parse(&r, full, strlen(full), &used), 1);
    assert_int_equal(used, strlen(full));
    pmx_smtp_reply_free(&r);
}

static void test_errors(void **state)
{
    (void)state;
    static const struct { const char *in; int err; } cases[] = {
        { "HTTP/1.1 400 Bad Request\r\n", PMX_SMTP_REPLY_EBADCODE },
        { "H",                            PMX_SMTP_REPLY_EBADCODE },   /* refused before the line ends */
        { "25",                           0 },                         /* could still be valid */
        { "2x0 ok\r\n",                   PMX_SMTP_REPLY_EBADCODE },
        { "150 old\r\n",                  PMX_SMTP_REPLY_EBADCODE },   /* 1yz is not SMTP */
        { "600 no\r\n",                   PMX_SMTP_REPLY_EBADCODE },
        { "260 no\r\n",                   PMX_SMTP_REPLY_EBADCODE },   /* second digit 0-5 */
        { "25\r\n",                       PMX_SMTP_REPLY_EBADCODE },
        { "\r\n",                         PMX_SMTP_REPLY_EBADCODE },
        { "250ok\r\n",                    PMX_SMTP_REPLY_EBADSEP },
        { "250_ok",                       PMX_SMTP_REPLY_EBADSEP },
        { "250-a\r\n251 b\r\n",           PMX_SMTP_REPLY_EMISMATCH },
        { "250-a\r\n550-b\r\n",           PMX_SMTP_REPLY_EMISMATCH },
        { "250-a\r\nxyz\r\n",             PMX_SMTP_REPLY_EBADCODE },
    };
    pmx_smtp_reply_t r;
    pmx_smtp_reply_init(&r);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t used;
        int rc = parse(&r, cases[i].in, &used);
        if (rc != cases[i].err) fail_msg("case %zu \"%s\": got %d, want %d", i, cases[i].in, rc, cases[i].err);
    }
    assert_string_equal(pmx_smtp_reply_strerror(PMX_SMTP_REPLY_EMISMATCH),
                        "multi-line reply with different codes");
    pmx_smtp_reply_free(&r);
}

static void test_caps(void **state)
{
    (void)state;
    pmx_smtp_reply_t r;
    pmx_smtp_reply_init(&r);
    size_t used;
    char *buf = malloc(PMX_SMTP_REPLY_LINE_MAX * 2);

    /* A line of exactly the cap (CRLF included) is fine, one more octet is not. */
    memset(buf, 'a', PMX_SMTP_REPLY_LINE_MAX * 2);
    memcpy(buf, "250 ", 4);
    memcpy(buf + PMX_SMTP_REPLY_LINE_MAX - 2, "\r\n", 2);
    assert_int_equal(pmx_smtp_reply_parse(&r, buf, PMX_SMTP_REPLY_LINE_MAX, &used), 1);
    memset(buf, 'a', PMX_SMTP_REPLY_LINE_MAX * 2);
    memcpy(buf, "250 ", 4);
    memcpy(buf + PMX_SMTP_REPLY_LINE_MAX - 1, "\r\n", 2);
    assert_int_equal(pmx_smtp_reply_parse(&r, buf, PMX_SMTP_REPLY_LINE_MAX + 1, &used),
                     PMX_SMTP_REPLY_ETOOLONG);
    /* An endless line is refused once the cap is reached, without its end. */
    memset(buf, 'a', PMX_SMTP_REPLY_LINE_MAX * 2);
    memcpy(buf, "250 ", 4);
    assert_int_equal(pmx_smtp_reply_parse(&r, buf, PMX_SMTP_REPLY_LINE_MAX - 1, &used), 0);
    assert_int_equal(pmx_smtp_reply_parse(&r, buf, PMX_SMTP_REPLY_LINE_MAX, &used),
                     PMX_SMTP_REPLY_ETOOLONG);
    free(buf);

    /* Line count. */
    pmx_buf_t many = PMX_BUF_INIT;
    for (int i = 0; i < PMX_SMTP_REPLY_LINES_MAX - 1; i++) pmx_buf_append_str(&many, "250-x\r\n");
    pmx_buf_append_str(&many, "250 x\r\n");
    assert_int_equal(pmx_smtp_reply_parse(&r, many.data, many.len, &used), 1);
    assert_int_equal(r.nlines, PMX_SMTP_REPLY_LINES_MAX);
    pmx_buf_reset(&many);
    for (int i = 0; i < PMX_SMTP_REPLY_LINES_MAX; i++) pmx_buf_append_str(&many, "250-x\r\n");
    pmx_buf_append_str(&many, "250 x\r\n");
    assert_int_equal(pmx_smtp_reply_parse(&r, many.data, many.len, &used), PMX_SMTP_REPLY_ETOOMANY);
    pmx_buf_free(&many);
    pmx_smtp_reply_free(&r);
}

static void test_sanitise(void **state)
{
    (void)state;
    pmx_smtp_reply_t r;
    pmx_smtp_reply_init(&r);
    size_t used;
    /* NUL, ESC, a bare CR, DEL, an invalid byte and an overlong encoding become '?'; tab a space;
       valid UTF-8 stays. */
    static const char in[] = "550 a\0b\x1b[31m\rc\x7f\xff\xc0\xaf\td \xc3\xa9t\xc3\xa9 \xe2\x82\xac\r\n";
    assert_int_equal(pmx_smtp_reply_parse(&r, in, sizeof in - 1, &used), 1);
    assert_int_equal(used, sizeof in - 1);
    assert_string_equal(r.text.data, "550 a?b?[31m?c???? d \xc3\xa9t\xc3\xa9 \xe2\x82\xac");
    assert_int_equal(strlen(r.text.data), r.text.len);
    /* A truncated sequence at the end of the line. */
    assert_int_equal(parse(&r, "550 x\xe2\x82\r\n", &used), 1);
    assert_string_equal(r.text.data, "550 x??");
    /* Surrogates are not UTF-8. */
    assert_int_equal(parse(&r, "550 \xed\xa0\x80\r\n", &used), 1);
    assert_string_equal(r.text.data, "550 ???");
    pmx_smtp_reply_free(&r);
}

static void test_enhanced(void **state)
{
    (void)state;
    static const struct { const char *in; const char *enh; } cases[] = {
        { "250 2.0.0 Ok\r\n",             "2.0.0" },
        { "250 2.0.0\r\n",                "2.0.0" },
        { "451 4.7.1 Try later\r\n",      "4.7.1" },
        { "550 5.123.456 x\r\n",          "5.123.456" },
        { "550 5.1234.1 x\r\n",           "" },        /* more than 3 digits */
        { "550 4.1.1 x\r\n",              "" },        /* class does not match the code */
        { "550 5.1 x\r\n",                "" },
        { "550 5.1.1x\r\n",               "" },
        { "250 mx.example.com\r\n",       "" },
        { "250-2.1.0 a\r\n250 2.1.5 b\r\n", "2.1.0" }, /* the first line's */
    };
    pmx_smtp_reply_t r;
    pmx_smtp_reply_init(&r);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t used;
        assert_int_equal(parse(&r, cases[i].in, &used), 1);
        if (strcmp(r.enhanced, cases[i].enh) != 0)
            fail_msg("case %zu \"%s\": got \"%s\", want \"%s\"", i, cases[i].in, r.enhanced, cases[i].enh);
    }
    pmx_smtp_reply_free(&r);
}

static void test_ehlo(void **state)
{
    (void)state;
    pmx_smtp_reply_t r;
    pmx_smtp_reply_init(&r);
    size_t used;
    const char *in = "250-mx.example.com Hello [127.0.0.1]\r\n"
                     "250-pipelining\r\n"
                     "250-SIZE 10240000\r\n"
                     "250-8BITMIME\r\n"
                     "250-SMTPUTF8\r\n"
                     "250-STARTTLS\r\n"
                     "250-AUTH=LOGIN\r\n"
                     "250-AUTH CRAM-MD5 PLAIN\r\n"
                     "250-ENHANCEDSTATUSCODES\r\n"
                     "250-X-UNKNOWN foo\r\n"
                     "250 DSN\r\n";
    assert_int_equal(parse(&r, in, &used), 1);
    pmx_smtp_ehlo_t e;
    pmx_smtp_ehlo_parse(&r, &e);
    assert_int_equal(e.ext, PMX_SMTP_EXT_PIPELINING | PMX_SMTP_EXT_SIZE | PMX_SMTP_EXT_8BITMIME
                            | PMX_SMTP_EXT_SMTPUTF8 | PMX_SMTP_EXT_STARTTLS | PMX_SMTP_EXT_AUTH
                            | PMX_SMTP_EXT_ENHANCED | PMX_SMTP_EXT_DSN);
    assert_int_equal(e.auth, PMX_SMTP_AUTH_LOGIN | PMX_SMTP_AUTH_PLAIN);
    assert_int_equal(e.size_max, 10240000);

    /* The greeting line's words are not keywords; odd SIZE values mean "no limit known". */
    assert_int_equal(parse(&r, "250-PIPELINING STARTTLS\r\n250-SIZE\r\n250 AUTH CRAM-MD5\r\n", &used), 1);
    pmx_smtp_ehlo_parse(&r, &e);
    assert_int_equal(e.ext, PMX_SMTP_EXT_SIZE | PMX_SMTP_EXT_AUTH);
    assert_int_equal(e.size_max, 0);
    assert_int_equal(e.auth, 0);
    assert_int_equal(parse(&r, "250-x\r\n250 SIZE 99999999999999999999999\r\n", &used), 1);
    pmx_smtp_ehlo_parse(&r, &e);
    assert_int_equal(e.size_max, 0);
    assert_int_equal(parse(&r, "250-x\r\n250 SIZE 12x\r\n", &used), 1);
    pmx_smtp_ehlo_parse(&r, &e);
    assert_int_equal(e.size_max, 0);
    /* A one-line EHLO reply announces nothing. */
    assert_int_equal(parse(&r, "250 mx.example.com\r\n", &used), 1);
    pmx_smtp_ehlo_parse(&r, &e);
    assert_int_equal(e.ext, 0);
    pmx_smtp_reply_free(&r);
}

static void test_format(void **state)
{
    (void)state;
    pmx_buf_t out = PMX_BUF_INIT;
    pmx_smtp_reply_format(&out, 250, "2.0.0", "Ok: queued as abc");
    assert_string_equal(out.data, "250 2.0.0 Ok: queued as abc\r\n");
    pmx_buf_reset(&out);
    pmx_smtp_reply_format(&out, 250, NULL, "mx.example.com\nPIPELINING\nSIZE 1000");
    assert_string_equal(out.data, "250-mx.example.com\r\n250-PIPELINING\r\n250 SIZE 1000\r\n");
    pmx_buf_reset(&out);
    /* A CR in text cannot end the line early. */
    pmx_smtp_reply_format(&out, 550, "5.7.1", "no\r\n");
    assert_string_equal(out.data, "550-5.7.1 no\r\n550 5.7.1\r\n");
    pmx_buf_reset(&out);
    pmx_smtp_reply_format(&out, 354, NULL, "");
    assert_string_equal(out.data, "354 \r\n");

    /* What the formatter writes, the parser reads back. */
    pmx_buf_reset(&out);
    pmx_smtp_reply_format(&out, 451, "4.3.0", "temporary\nfailure");
    pmx_smtp_reply_t r;
    pmx_smtp_reply_init(&r);
    size_t used;
    assert_int_equal(pmx_smtp_reply_parse(&r, out.data, out.len, &used), 1);
    assert_int_equal(used, out.len);
    assert_int_equal(r.code, 451);
    assert_string_equal(r.enhanced, "4.3.0");
    assert_string_equal(r.text.data, "451-4.3.0 temporary\n451 4.3.0 failure");
    pmx_smtp_reply_free(&r);
    pmx_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_line),
        cmocka_unit_test(test_multi_line),
        cmocka_unit_test(test_bare_code_and_lf),
        cmocka_unit_test(test_partial),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_sanitise),
        cmocka_unit_test(test_enhanced),
        cmocka_unit_test(test_ehlo),
        cmocka_unit_test(test_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
