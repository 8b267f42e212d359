/*
 * lib/addr.c: mailboxes and address lists, valid and invalid, with the
 * reasons, the canonical forms and the RFC 5321 length limits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/addr.h"

typedef struct {
    const char *in;
    const char *addr;     /* canonical address */
    const char *display;  /* NULL = none */
} ok_case_t;

static const ok_case_t ok_cases[] = {
    { "bob@example.com",                        "bob@example.com", NULL },
    { "  bob@example.com\t",                    "bob@example.com", NULL },
    { "Bob@EXAMPLE.Com",                        "Bob@example.com", NULL },
    { "first.last+tag@sub.example.co.uk",       "first.last+tag@sub.example.co.uk", NULL },
    { "!#$%&'*+-/=?^_`{|}~@example.com",        "!#$%&'*+-/=?^_`{|}~@example.com", NULL },
    { "<bob@example.com>",                      "bob@example.com", NULL },
    { "< bob@example.com >",                    "bob@example.com", NULL },
    { "Bob <bob@example.com>",                  "bob@example.com", "Bob" },
    { "Bob Smith<bob@example.com>",             "bob@example.com", "Bob Smith" },
    { "  Bob   \t Smith   <bob@example.com>  ", "bob@example.com", "Bob Smith" },
    { "John Q. Public <jq@example.com>",        "jq@example.com",  "John Q. Public" },
    { "\"Smith, Bob\" <bob@example.com>",       "bob@example.com", "Smith, Bob" },
    { "\"Bob \\\"The Builder\\\" \\\\o/\" <b@example.com>",
                                                "b@example.com",   "Bob \"The Builder\" \\o/" },
    { "\"Re: <odd>; name\" <b@example.com>",   "b@example.com",   "Re: <odd>; name" },
    { "\"\" <b@example.com>",                   "b@example.com",   NULL },
    { "\"Bob\" Smith <b@example.com>",          "b@example.com",   "Bob Smith" },
    { "\"bob\"@example.com",                    "bob@example.com", NULL },
    { "\"bob.smith\"@example.com",              "bob.smith@example.com", NULL },
    { "\"bob smith\"@example.com",              "\"bob smith\"@example.com", NULL },
    { "\"a@b\"@example.com",                    "\"a@b\"@example.com", NULL },
    { "\"a\\\"b\"@example.com",                 "\"a\\\"b\"@example.com", NULL },
    { "\"a..b\"@example.com",                   "\"a..b\"@example.com", NULL },
    { "Name <\"john doe\"@example.com>",        "\"john doe\"@example.com", "Name" },
    /* UTF-8 (SMTPUTF8): local part, domain and display name. */
    { "J\xc3\xbcrgen <j\xc3\xbcrgen@m\xc3\xbcller.de>",
                                                "j\xc3\xbcrgen@m\xc3\xbcller.de", "J\xc3\xbcrgen" },
    { "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\x9b\xbd\xe9\x99\x85",
      "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\x9b\xbd\xe9\x99\x85", NULL },
    { "\"\xc3\x89lodie, \xf0\x9f\x98\x80\" <e@example.com>",
                                                "e@example.com", "\xc3\x89lodie, \xf0\x9f\x98\x80" },
    { "bob@xn--mller-kva.de",                   "bob@xn--mller-kva.de", NULL },
    { "bob@localhost",                          "bob@localhost", NULL },
    { "bob@a-b.c0",                             "bob@a-b.c0", NULL },
};

typedef struct {
    const char *in;
    const char *reason;   /* the error starts with this */
} bad_case_t;

static const bad_case_t bad_cases[] = {
    { "",                               "empty address" },
    { "   ",                            "empty address" },
    { "bob",                            "missing '@' in 'bob'" },
    { "Bob <bob>",                      "missing '@' in 'bob'" },
    { "@example.com",                   "empty local part" },
    { "bob@",                           "missing domain" },
    { "bob@@example.com",               "invalid character '@' in domain" },
    { "a@b@example.com",                "invalid character '@' in domain" },
    { ".bob@example.com",               "misplaced '.' in local part" },
    { "bob.@example.com",               "misplaced '.' in local part" },
    { "bo..b@example.com",              "misplaced '.' in local part" },
    { "bo b@example.com",               "unexpected space in local part" },
    { "Bob bob@example.com",            "unexpected space in local part" },
    { "bob@exa mple.com",               "unexpected space in domain" },
    { "b[o]b@example.com",              "invalid character '[' in local part" },
    { "bob@exam_ple.com",               "invalid character '_' in domain" },
    { "bob@[192.0.2.1]",                "address literals are not supported" },
    { "bob@example..com",               "empty label in domain" },
    { "bob@.example.com",               "empty label in domain" },
    { "bob@example.com.",               "empty label in domain" },
    { "bob@-example.com",               "domain label starts or ends with '-'" },
    { "bob@example-.com",               "domain label starts or ends with '-'" },
    { "\"\"@example.com",               "empty local part" },
    { "\"bob\"x@example.com",           "expected '@' after quoted local part" },
    { "\"bob\"",                        "missing '@'" },
    { "\"bob@example.com",              "unbalanced quote" },
    { "Bob\" <bob@example.com>",        "unbalanced quote" },
    { "\"Bob\\\" <bob@example.com>",    "unbalanced quote" },
    { "Bob <bob@example.com",           "missing '>'" },
    { "Bob bob@example.com>",           "'>' without '<'" },
    { "Bob <<bob@example.com>>",        "unexpected '<'" },
    { "Bob <bob@example.com> x",        "unexpected text after '>'" },
    { "Bob <a@example.com> <b@example.com>", "unexpected text after '>'" },
    { "Bob <>",                         "empty address" },
    { "<@relay.example:bob@example.com>", "source routes are not supported" },
    { "bob@example.com (Bob)",          "comments in parentheses are not supported" },
    { "(Bob) bob@example.com",          "comments in parentheses are not supported" },
    { "friends: a@example.com, b@example.com;", "group syntax is not supported" },
    { "undisclosed-recipients:;",       "group syntax is not supported" },
    { "Bob@Home <bob@example.com>",     "invalid character '@' in display name" },
    { "Bob [x] <bob@example.com>",      "invalid character '[' in display name" },
    { "Smith, Bob <bob@example.com>",   "more than one address" },
    { "bob@example.com\r",              "control character (CR)" },
    { "bob@example.com\nBcc: x@y.z",    "control character (LF)" },
    { "bob\x01@example.com",            "control character (0x01)" },
    { "bob\x7f@example.com",            "control character (0x7f)" },
    { "\"Bob\x1b\" <bob@example.com>",  "control character (0x1b)" },
    { "bob\xc2\x85@example.com",        "control character (C1)" },
    { "bob\xff@example.com",            "invalid UTF-8" },
    { "bob\xc0\xaf@example.com",        "invalid UTF-8" },            /* overlong '/' */
    { "bob\xed\xa0\x80@example.com",    "invalid UTF-8" },            /* surrogate */
    { "bob@ex\xc3.com",                 "invalid UTF-8" },            /* truncated */
    { "\"a\tb\"@example.com",           "TAB in quoted local part" },
};

static void test_valid(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof ok_cases / sizeof ok_cases[0]; i++) {
        const ok_case_t *c = &ok_cases[i];
        pmx_addr_t a;
        char err[256] = "";
        if (pmx_addr_parse(c->in, strlen(c->in), &a, err, sizeof err) != 0)
            fail_msg("'%s' refused: %s", c->in, err);
        if (strcmp(a.addr, c->addr) != 0) fail_msg("'%s' -> '%s', want '%s'", c->in, a.addr, c->addr);
        if (c->display == NULL) {
            if (a.display) fail_msg("'%s' display '%s', want none", c->in, a.display);
        } else if (!a.display || strcmp(a.display, c->display) != 0) {
            fail_msg("'%s' display '%s', want '%s'", c->in, a.display ? a.display : "(none)",
                     c->display);
        }
        pmx_addr_free(&a);

        /* The same text is a valid one-element list. */
        pmx_addr_list_t l;
        if (pmx_addr_list_parse(c->in, strlen(c->in), &l, err, sizeof err) != 0)
            fail_msg("list '%s' refused: %s", c->in, err);
        assert_int_equal(l.n, 1);
        assert_string_equal(l.v[0].addr, c->addr);
        pmx_addr_list_free(&l);
    }
}

static void test_invalid(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const bad_case_t *c = &bad_cases[i];
        pmx_addr_t a = { (char *)"untouched", (char *)"untouched" };
        char err[256] = "";
        if (pmx_addr_parse(c->in, strlen(c->in), &a, err, sizeof err) != -1)
            fail_msg("'%s' accepted as '%s'", c->in, a.addr);
        if (strncmp(err, c->reason, strlen(c->reason)) != 0)
            fail_msg("'%s': reason '%s', want '%s...'", c->in, err, c->reason);
        assert_string_equal(a.addr, "untouched");
        assert_string_equal(a.display, "untouched");
    }
}

/* The reason names the input, with control bytes escaped (it goes to logs and DB). */
static void test_reason_text(void **state)
{
    (void)state;
    pmx_addr_t a;
    char err[256];
    assert_int_equal(pmx_addr_parse("bob", 3, &a, err, sizeof err), -1);
    assert_string_equal(err, "missing '@' in 'bob'");

    assert_int_equal(pmx_addr_parse("a@b\r\nRCPT TO:<x@y>", 18, &a, err, sizeof err), -1);
    assert_string_equal(err, "control character (CR) in 'a@b\\x0d\\x0aRCPT TO:<x@y>'");

    const char nul[] = "a\0b@example.com";
    assert_int_equal(pmx_addr_parse(nul, sizeof nul - 1, &a, err, sizeof err), -1);
    assert_string_equal(err, "control character (NUL) in 'a\\x00b@example.com'");

    /* Long input is truncated in the reason. */
    char longin[600];
    memset(longin, 'x', sizeof longin);
    assert_int_equal(pmx_addr_parse(longin, sizeof longin, &a, err, sizeof err), -1);
    assert_true(strlen(err) < 120);
    assert_non_null(strstr(err, "...'"));

    /* A tiny err buffer is still NUL-terminated; errlen 0 is allowed. */
    char small[8];
    assert_int_equal(pmx_addr_parse("bob", 3, &a, small, sizeof small), -1);
    assert_int_equal(strlen(small), 7);
    assert_int_equal(pmx_addr_parse("bob", 3, &a, NULL, 0), -1);
}

/* The length is given explicitly: bytes after n are not read. */
static void test_explicit_length(void **state)
{
    (void)state;
    pmx_addr_t a;
    char err[256];
    const char *s = "bob@example.com, garbage";
    assert_int_equal(pmx_addr_parse(s, 15, &a, err, sizeof err), 0);
    assert_string_equal(a.addr, "bob@example.com");
    pmx_addr_free(&a);
}

static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

/* A domain of exactly `len` octets: 63-octet labels and a remainder. */
static void make_domain(char *out, size_t len)
{
    size_t i = 0;
    while (len - i > 64) {
        memset(out + i, 'd', 63);
        out[i + 63] = '.';
        i += 64;
    }
    memset(out + i, 'e', len - i);
    out[len] = '\0';
}

static void expect_len(const char *local, size_t domain_len, int ok, const char *reason)
{
    char domain[400], in[600];
    make_domain(domain, domain_len);
    snprintf(in, sizeof in, "%s@%s", local, domain);
    pmx_addr_t a;
    char err[256] = "";
    int rc = pmx_addr_parse(in, strlen(in), &a, err, sizeof err);
    if (ok) {
        if (rc != 0) fail_msg("%zu-octet address refused: %s", strlen(in), err);
        assert_int_equal(strlen(a.addr), strlen(in));
        pmx_addr_free(&a);
    } else {
        if (rc == 0) fail_msg("%zu-octet address accepted", strlen(in));
        if (strncmp(err, reason, strlen(reason)) != 0) fail_msg("reason '%s', want '%s'", err, reason);
    }
}

static void test_limits(void **state)
{
    (void)state;
    char *l64 = repeat('l', 64), *l65 = repeat('l', 65);
    expect_len(l64, 189, 1, NULL);                                   /* 254 octets */
    expect_len(l64, 190, 0, "address longer than 254 octets");       /* 255 octets */
    expect_len(l65, 10, 0, "local part longer than 64 octets");
    expect_len("a", 252, 1, NULL);                                   /* 254 octets */
    expect_len("a", 253, 0, "address longer than 254 octets");       /* domain ok, address 255 */
    expect_len("a", 254, 0, "domain longer than 253 octets");
    free(l64);
    free(l65);

    /* Label of 63 octets is fine, 64 is not. */
    char in[200];
    char *l63 = repeat('x', 63), *lab64 = repeat('x', 64);
    pmx_addr_t a;
    char err[256];
    snprintf(in, sizeof in, "a@%s.com", l63);
    assert_int_equal(pmx_addr_parse(in, strlen(in), &a, err, sizeof err), 0);
    pmx_addr_free(&a);
    snprintf(in, sizeof in, "a@%s.com", lab64);
    assert_int_equal(pmx_addr_parse(in, strlen(in), &a, err, sizeof err), -1);
    assert_non_null(strstr(err, "domain label longer than 63 octets"));
    free(l63);
    free(lab64);

    /* Limits count octets: 32 two-octet characters = 64, 33 = 66. */
    char u[200] = "";
    for (int i = 0; i < 32; i++) strcat(u, "\xc3\xa9");
    strcat(u, "@example.com");
    assert_int_equal(pmx_addr_parse(u, strlen(u), &a, err, sizeof err), 0);
    pmx_addr_free(&a);
    memmove(u + 2, u, strlen(u) + 1);
    memcpy(u, "\xc3\xa9", 2);
    assert_int_equal(pmx_addr_parse(u, strlen(u), &a, err, sizeof err), -1);
    assert_non_null(strstr(err, "local part longer than 64 octets"));

    /* The quotes of a quoted local part count (RFC 5321 measures the wire form). */
    char q[120];
    char *l63b = repeat('x', 62);
    snprintf(q, sizeof q, "\"%s \"@example.com", l63b);            /* 63 + 2 quotes = 65 */
    assert_int_equal(pmx_addr_parse(q, strlen(q), &a, err, sizeof err), -1);
    assert_non_null(strstr(err, "local part longer than 64 octets"));
    free(l63b);
}

static void test_lists(void **state)
{
    (void)state;
    pmx_addr_list_t l;
    char err[256];
    const char *s = "a@example.com, \"Smith, Bob\" <bob@example.com>,Carol <c@EXAMPLE.org> ,"
                    "\"x,y\"@example.net";
    assert_int_equal(pmx_addr_list_parse(s, strlen(s), &l, err, sizeof err), 0);
    assert_int_equal(l.n, 4);
    assert_string_equal(l.v[0].addr, "a@example.com");
    assert_null(l.v[0].display);
    assert_string_equal(l.v[1].addr, "bob@example.com");
    assert_string_equal(l.v[1].display, "Smith, Bob");
    assert_string_equal(l.v[2].addr, "c@example.org");
    assert_string_equal(l.v[2].display, "Carol");
    assert_string_equal(l.v[3].addr, "\"x,y\"@example.net");
    assert_string_equal(pmx_addr_domain(&l.v[3]), "example.net");
    pmx_addr_list_free(&l);
    assert_null(l.v);
    assert_int_equal(l.n, 0);

    /* Many elements (growth of the array). */
    char big[3000] = "";
    for (int i = 0; i < 100; i++) {
        char one[32];
        snprintf(one, sizeof one, "%su%d@example.com", i ? "," : "", i);
        strcat(big, one);
    }
    assert_int_equal(pmx_addr_list_parse(big, strlen(big), &l, err, sizeof err), 0);
    assert_int_equal(l.n, 100);
    assert_string_equal(l.v[99].addr, "u99@example.com");
    pmx_addr_list_free(&l);

    static const bad_case_t bad[] = {
        { "",                                   "empty address list" },
        { " \t ",                               "empty address list" },
        { ",",                                  "empty element in address list" },
        { "a@example.com,",                     "empty element in address list" },
        { ",a@example.com",                     "empty element in address list" },
        { "a@example.com,,b@example.com",       "empty element in address list" },
        { "a@example.com, ,b@example.com",      "empty element in address list" },
        { "a@example.com, bob",                 "missing '@' in 'bob'" },
        { "Smith, Bob <bob@example.com>",       "missing '@' in 'Smith'" },
        { "a@example.com, b@example.com\n",     "control character (LF)" },
        { "a@example.com, \"b@example.com",     "unbalanced quote" },
        { "a@example.com, <b@example.com",      "missing '>'" },
        { "team: a@example.com;",               "group syntax is not supported" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        pmx_addr_list_t out = { (pmx_addr_t *)0x1, 77 };
        char e[256] = "";
        if (pmx_addr_list_parse(bad[i].in, strlen(bad[i].in), &out, e, sizeof e) != -1)
            fail_msg("list '%s' accepted", bad[i].in);
        if (strncmp(e, bad[i].reason, strlen(bad[i].reason)) != 0)
            fail_msg("list '%s': reason '%s', want '%s...'", bad[i].in, e, bad[i].reason);
        assert_true(out.v == (pmx_addr_t *)0x1 && out.n == 77);
    }
}

static void test_domain(void **state)
{
    (void)state;
    pmx_addr_t a;
    char err[256];
    const char *s = "\"odd@local\"@Mail.Example.COM";
    assert_int_equal(pmx_addr_parse(s, strlen(s), &a, err, sizeof err), 0);
    assert_string_equal(pmx_addr_domain(&a), "mail.example.com");
    pmx_addr_free(&a);
    pmx_addr_free(&a);  /* idempotent */
    pmx_addr_free(NULL);
    pmx_addr_list_free(NULL);
}

/* The exported predicates: RFC 5322 atext and dot-atom-text, ASCII only. */
static void test_predicates(void **state)
{
    (void)state;
    const char *specials = "!#$%&'*+-/=?^_`{|}~";
    for (int c = 0; c < 256; c++) {
        bool want = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    (c != 0 && strchr(specials, c) != NULL);
        if (pmx_addr_is_atext((unsigned char)c) != want)
            fail_msg("atext(0x%02x) = %d, want %d", c, !want, want);
    }
    assert_true(pmx_addr_is_dot_atom("a", 1));
    assert_true(pmx_addr_is_dot_atom("1.2.x$y", 7));
    assert_true(pmx_addr_is_dot_atom("a.b, garbage", 3));     /* bytes after n not read */
    assert_false(pmx_addr_is_dot_atom("", 0));
    assert_false(pmx_addr_is_dot_atom(NULL, 0));
    assert_false(pmx_addr_is_dot_atom(".a", 2));
    assert_false(pmx_addr_is_dot_atom("a.", 2));
    assert_false(pmx_addr_is_dot_atom("a..b", 4));
    assert_false(pmx_addr_is_dot_atom("a b", 3));
    assert_false(pmx_addr_is_dot_atom("a@b", 3));
    assert_false(pmx_addr_is_dot_atom("\xc3\xa9", 2));           /* ASCII only */
}

typedef struct {
    const char *in;
    const char *canon;    /* NULL = refused */
    const char *reason;   /* refused: the error starts with this */
} env_case_t;

/* RFC 5321 Mailbox: the text between '<' and '>' of MAIL FROM / RCPT TO. */
static const env_case_t env_cases[] = {
    { "bob@example.com",             "bob@example.com", NULL },
    { "Bob@EXAMPLE.Com",             "Bob@example.com", NULL },
    { "\"a b\"@dest.test",           "\"a b\"@dest.test", NULL },
    { "\"a>b\"@dest.test",           "\"a>b\"@dest.test", NULL },
    { "\"a\\\"b\\\\c\"@dest.test",   "\"a\\\"b\\\\c\"@dest.test", NULL },
    { "\"\\a\"@dest.test",           "a@dest.test", NULL },      /* quoted-pairSMTP */
    { "\"john.doe\"@dest.test",      "john.doe@dest.test", NULL },
    { "j\xc3\xbcrgen@m\xc3\xbcller.de", "j\xc3\xbcrgen@m\xc3\xbcller.de", NULL },
    { "",                            NULL, "empty address" },
    { " bob@example.com",            NULL, "unexpected space in local part" },
    { "bob@example.com ",            NULL, "unexpected space in domain" },
    { "a b@dest.test",               NULL, "unexpected space in local part" },
    { "Bob <bob@example.com>",       NULL, "unexpected space in local part" },
    { "<bob@example.com>",           NULL, "invalid character '<' in local part" },
    { "\"\"@dest.test",              NULL, "empty local part" },
    { "\"a\tb\"@dest.test",          NULL, "TAB in quoted local part" },
    { "\"a\\\xc3\xa9\"@dest.test",   NULL, "invalid quoted-pair in local part" },
    { "bob@[192.0.2.1]",             NULL, "address literals are not supported" },
    { "bob@example.com\r\nRSET",     NULL, "control character (CR)" },
    { "bob@exam_ple.com",            NULL, "invalid character '_' in domain" },
};

static void test_envelope(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof env_cases / sizeof env_cases[0]; i++) {
        const env_case_t *c = &env_cases[i];
        char *out = (char *)"untouched";
        char err[256] = "";
        int rc = pmx_addr_parse_envelope(c->in, strlen(c->in), &out, err, sizeof err);
        if (c->canon) {
            if (rc != 0) fail_msg("'%s' refused: %s", c->in, err);
            assert_string_equal(out, c->canon);
            assert_true(pmx_addr_envelope_ok(c->in));
            assert_true(pmx_addr_envelope_ok(out));
            free(out);
        } else {
            if (rc == 0) fail_msg("'%s' accepted as '%s'", c->in, out);
            assert_string_equal(out, "untouched");
            if (strncmp(err, c->reason, strlen(c->reason)) != 0)
                fail_msg("'%s': reason '%s', want '%s...'", c->in, err, c->reason);
            assert_false(pmx_addr_envelope_ok(c->in));
        }
    }
    assert_false(pmx_addr_envelope_ok(NULL));
    /* 254 octets is the most (RFC 5321 path of 256 with the brackets). */
    char big[300];
    memset(big, 'd', sizeof big);
    memcpy(big, "a@", 2);
    for (size_t k = 60; k < 260; k += 60) big[k] = '.';
    big[254] = '\0';
    assert_true(pmx_addr_envelope_ok(big));
    big[254] = 'd';
    big[255] = '\0';
    assert_false(pmx_addr_envelope_ok(big));
}

/* One grammar: every address an RFC 5322 field accepts is an RFC 5321 Mailbox
 * the relay client sends, in the same canonical form. */
static void test_one_grammar(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof ok_cases / sizeof ok_cases[0]; i++) {
        pmx_addr_t a;
        char err[256];
        assert_int_equal(pmx_addr_parse(ok_cases[i].in, strlen(ok_cases[i].in), &a, err,
                                        sizeof err), 0);
        if (!pmx_addr_envelope_ok(a.addr)) fail_msg("'%s' is not sendable", a.addr);
        char *again = NULL;
        assert_int_equal(pmx_addr_parse_envelope(a.addr, strlen(a.addr), &again, err,
                                                 sizeof err), 0);
        assert_string_equal(again, a.addr);
        free(again);
        pmx_addr_free(&a);
    }
    /* And the other way: what a path refuses, a job field refuses too (up to
     * the white space and display name a field may carry around it). */
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        char *out = NULL;
        char err[256];
        if (pmx_addr_parse_envelope(bad_cases[i].in, strlen(bad_cases[i].in), &out, err,
                                    sizeof err) == 0)
            fail_msg("path '%s' accepted as '%s'", bad_cases[i].in, out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_reason_text),
        cmocka_unit_test(test_explicit_length),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_lists),
        cmocka_unit_test(test_domain),
        cmocka_unit_test(test_predicates),
        cmocka_unit_test(test_envelope),
        cmocka_unit_test(test_one_grammar),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
