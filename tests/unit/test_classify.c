/*
 * inbound/classify.c: class names, the precedence rule (a known reason in the
 * text wins over a generic or contradicting status code; the status code
 * decides when the text names nothing known; then the reply code), the
 * RFC 3463 table's specificity, provider wordings of the built-in rules,
 * patterns with '*', rules-file errors with line numbers, and finding an
 * enhanced code inside a text.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmocka.h>

#include "inbound/classify.h"

static pmx_fb_rules_t *R;

static int setup(void **state)
{
    (void)state;
    R = pmx_fb_rules_builtin();
    return R ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    pmx_fb_rules_free(R);
    return 0;
}

/* The class name the built-in rules give. */
static const char *cls(int code, const char *status, const char *text)
{
    return pmx_fb_class_name(pmx_fb_classify(R, code, status, text, text ? strlen(text) : 0));
}

static void test_names(void **state)
{
    (void)state;
    for (int c = 1; c < PMX_FB_CLASS_COUNT; c++) {
        const char *n = pmx_fb_class_name((pmx_fb_class_t)c);
        assert_true(n[0] != '\0');
        assert_int_equal(pmx_fb_class_parse(n, strlen(n)), c);
    }
    assert_int_equal(pmx_fb_class_parse("bogus", 5), PMX_FB_CLASS_NONE);
    assert_int_equal(pmx_fb_class_parse("user_unknow", 11), PMX_FB_CLASS_NONE);
    assert_true(pmx_fb_class_is_hard(PMX_FB_CLASS_USER_UNKNOWN));
    assert_true(pmx_fb_class_is_hard(PMX_FB_CLASS_DOMAIN_UNKNOWN));
    assert_true(pmx_fb_class_is_hard(PMX_FB_CLASS_HAS_MOVED));
    assert_false(pmx_fb_class_is_hard(PMX_FB_CLASS_MAILBOX_FULL));
    assert_false(pmx_fb_class_is_hard(PMX_FB_CLASS_POLICY));
    assert_false(pmx_fb_class_is_hard(PMX_FB_CLASS_OTHER));
    size_t ns, nc, nt;
    pmx_fb_rules_count(R, &ns, &nc, &nt);
    assert_true(ns >= 20 && nc >= 5 && nt >= 200);
}

/* The status code alone, with texts that name nothing known (RFC 3463). */
static void test_status_table(void **state)
{
    (void)state;
    assert_string_equal(cls(550, "5.1.1", "nope"), "user_unknown");
    assert_string_equal(cls(550, "5.1.2", "nope"), "domain_unknown");
    assert_string_equal(cls(550, "5.1.10", "nope"), "domain_unknown");
    assert_string_equal(cls(550, "5.1.6", "nope"), "has_moved");
    assert_string_equal(cls(552, "5.2.2", "nope"), "mailbox_full");
    assert_string_equal(cls(452, "4.2.2", "nope"), "mailbox_full");
    assert_string_equal(cls(552, "5.3.4", "nope"), "message_too_big");
    assert_string_equal(cls(552, "5.2.3", "nope"), "message_too_big");
    assert_string_equal(cls(550, "5.7.1", "nope"), "policy");
    assert_string_equal(cls(550, "5.7.26", "nope"), "policy");
    assert_string_equal(cls(451, "4.4.1", "nope"), "network");
    assert_string_equal(cls(0, "4.4.7", NULL), "expired");
    assert_string_equal(cls(554, "5.6.0", "nope"), "content_rejected");
    assert_string_equal(cls(451, "4.3.0", "nope"), "system");
    /* The class digit makes a line more specific: 5.4.4 and 4.4.4 differ. */
    assert_string_equal(cls(550, "5.4.4", "nope"), "domain_unknown");
    assert_string_equal(cls(450, "4.4.4", "nope"), "network");
    assert_string_equal(cls(550, "5.2.1", "nope"), "other");
}

/* A known reason in the text wins over a generic or contradicting code. */
static void test_text_wins(void **state)
{
    (void)state;
    assert_string_equal(cls(550, "5.1.1", "Mailbox full"), "mailbox_full");
    assert_string_equal(cls(550, "5.7.1", "user unknown"), "user_unknown");
    assert_string_equal(cls(554, "5.0.0", "Recipient address rejected: User unknown"),
                        "user_unknown");
    assert_string_equal(cls(552, "5.2.2", "Message size exceeds fixed maximum message size"),
                        "message_too_big");
    assert_string_equal(cls(421, "4.7.0", "[TSS04] Messages from 192.0.2.1 temporarily deferred"),
                        "policy");
    /* Case and white space do not matter (folded diagnostics). */
    assert_string_equal(cls(550, "5.0.0", "USER\r\n   UNKNOWN"), "user_unknown");
    /* The first rule written wins: "over quota" (mailbox_full) precedes the weak
     * "mailbox unavailable" (user_unknown). */
    assert_string_equal(cls(550, NULL, "mailbox unavailable: over quota"), "mailbox_full");
    assert_string_equal(cls(550, NULL, "Requested action not taken: mailbox unavailable"),
                        "user_unknown");
    /* The sender's domain is not the recipient's. */
    assert_string_equal(cls(553, "5.1.8", "Domain of sender address x@y.example does not exist"),
                        "policy");
}

/* The status decides when the text names nothing; a generic X.0.0 gives way to
 * one written in the text; without any, the reply code. */
static void test_fallbacks(void **state)
{
    (void)state;
    assert_string_equal(cls(550, "5.0.0", "550 5.1.1 <a@b.example>... nope"), "user_unknown");
    assert_string_equal(cls(0, NULL, "smtp; 550 5.2.2 nope"), "mailbox_full");
    assert_string_equal(cls(552, NULL, "nope"), "mailbox_full");
    assert_string_equal(cls(0, NULL, "552 nope"), "mailbox_full");
    assert_string_equal(cls(551, NULL, "nope"), "has_moved");
    assert_string_equal(cls(550, NULL, "nope"), "other");
    assert_string_equal(cls(0, NULL, NULL), "other");
    assert_string_equal(cls(0, "garbage", "nothing"), "other");
    assert_string_equal(cls(550, "5.0.0", "nope"), "other");
    /* An IP address or a version is not a status code. */
    assert_string_equal(cls(0, NULL, "host 5.1.1.4 said nope"), "other");
}

static void test_provider_texts(void **state)
{
    (void)state;
    struct { const char *text, *want; } t[] = {
        { "No such user here", "user_unknown" },
        { "The email account that you tried to reach does not exist.", "user_unknown" },
        { "RESOLVER.ADR.RecipNotFound; not found", "user_unknown" },
        { "This user doesn't have a yahoo.com account", "user_unknown" },
        { "Host or domain name not found. Name service error", "domain_unknown" },
        { "Unrouteable address", "domain_unknown" },
        { "Quota exceeded (mailbox for user is full)", "mailbox_full" },
        { "The email account that you tried to reach is over quota.", "mailbox_full" },
        { "Message size exceeds fixed limit", "message_too_big" },
        { "Our system has detected that this message is likely unsolicited mail",
          "content_rejected" },
        { "Message rejected: virus found", "content_rejected" },
        { "Service unavailable; client host [192.0.2.1] blocked using zen.spamhaus.org",
          "policy" },
        { "Unfortunately, messages from [192.0.2.1] weren't sent. (S3150)", "policy" },
        { "DMARC policy", "policy" },
        { "Relay access denied", "policy" },
        { "Too many connections from your IP", "rate_limited" },
        { "receiving mail at a rate that prevents additional messages", "rate_limited" },
        { "Rate limit exceeded", "rate_limited" },
        { "connect to mx.example[192.0.2.1]:25: Connection refused", "network" },
        { "retry timeout exceeded", "expired" },
        { "Message could not be delivered for 5 days", "expired" },
        { "Mailbox has moved", "has_moved" },
        { "temporary local problem - please try later", "system" },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        const char *got = cls(550, NULL, t[i].text);
        if (strcmp(got, t[i].want) != 0) fail_msg("'%s': got %s, want %s", t[i].text, got, t[i].want);
    }
}

static void test_custom_rules(void **state)
{
    (void)state;
    const char *text =
        "# a comment\n"
        "[status]\n"
        "X.1.* = system   # every X.1\n"
        "5.1.1 = has_moved\n"
        "[code]\n"
        "550 = network\n"
        "[text]\n"
        "policy = gone * for good\n"
        "rate_limited = slow\tdown\n";
    pmx_fb_rules_t *r = NULL;
    char err[200];
    assert_int_equal(pmx_fb_rules_compile(text, strlen(text), &r, err, sizeof err), 0);
    size_t ns, nc, nt;
    pmx_fb_rules_count(r, &ns, &nc, &nt);
    assert_int_equal(ns, 2);
    assert_int_equal(nc, 1);
    assert_int_equal(nt, 2);
    const char *t1 = "It is GONE, really, for good.";
    assert_int_equal(pmx_fb_classify(r, 550, "5.1.1", t1, strlen(t1)), PMX_FB_CLASS_POLICY);
    const char *t2 = "gone away";   /* the second segment is missing */
    assert_int_equal(pmx_fb_classify(r, 550, "5.1.1", t2, strlen(t2)), PMX_FB_CLASS_HAS_MOVED);
    assert_int_equal(pmx_fb_classify(r, 550, "5.1.3", t2, strlen(t2)), PMX_FB_CLASS_SYSTEM);
    assert_int_equal(pmx_fb_classify(r, 550, NULL, t2, strlen(t2)), PMX_FB_CLASS_NETWORK);
    const char *t3 = "please slow   down";
    assert_int_equal(pmx_fb_classify(r, 0, NULL, t3, strlen(t3)), PMX_FB_CLASS_RATE_LIMITED);
    assert_int_equal(pmx_fb_classify(r, 0, NULL, "x", 1), PMX_FB_CLASS_OTHER);
    pmx_fb_rules_free(r);
}

static void expect_error(const char *text, const char *want)
{
    pmx_fb_rules_t *r = NULL;
    char err[200];
    assert_int_equal(pmx_fb_rules_compile(text, strlen(text), &r, err, sizeof err), -1);
    assert_null(r);
    if (!strstr(err, want)) fail_msg("error '%s' does not say '%s'", err, want);
}

static void test_rule_errors(void **state)
{
    (void)state;
    expect_error("[text]\nbogus = x y z\n", "line 2: unknown class");
    expect_error("[text]\nuser_unknown = *abc\n", "line 2: a pattern cannot start");
    expect_error("[text]\nuser_unknown = ab*cd\n", "line 2: a pattern needs at least 3");
    expect_error("\n\n[status]\n6.1.1 = other\n", "line 4: a status is");
    expect_error("[status]\n5.x.1 = other\n", "a status is");
    expect_error("[code]\n55 = other\n", "three digits");
    expect_error("[code]\n650 = other\n", "three digits");
    expect_error("user_unknown = abc\n", "line 1: rule outside a section");
    expect_error("[nope]\n", "unknown section");
    expect_error("[text]\njust words\n", "expected KEY = VALUE");
    expect_error("[text]\npolicy = abc*b*c*d*e*f*g*h*i*j\n", "more than 8");
}

static void test_load_file(void **state)
{
    (void)state;
    pmx_fb_rules_t *r = NULL;
    char err[300];
    assert_int_equal(pmx_fb_rules_load_file("/nonexistent/rules.conf", &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent/rules.conf: "));
    char path[] = "/tmp/pmx_rules_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "[text]\nmailbox_full = brimming\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    assert_int_equal(pmx_fb_rules_load_file(path, &r, err, sizeof err), 0);
    assert_int_equal(pmx_fb_classify(r, 0, NULL, "Brimming", 8), PMX_FB_CLASS_MAILBOX_FULL);
    pmx_fb_rules_free(r);
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "[text]\nx = y\n", 13), 13);
    close(fd);
    assert_int_equal(pmx_fb_rules_load_file(path, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "line 2: unknown class"));
    unlink(path);
}

static void test_find_status(void **state)
{
    (void)state;
    char st[12];
    assert_true(pmx_fb_find_status("550-5.7.26 no", 13, st));
    assert_string_equal(st, "5.7.26");
    assert_true(pmx_fb_find_status("(#5.5.0)", 8, st));
    assert_string_equal(st, "5.5.0");
    assert_true(pmx_fb_find_status("said 4.2.2.", 11, st));
    assert_string_equal(st, "4.2.2");
    assert_false(pmx_fb_find_status("192.5.1.1 x", 11, st));
    assert_false(pmx_fb_find_status("v5.1.1", 6, st));
    assert_false(pmx_fb_find_status("5.1.1.4", 7, st));
    assert_false(pmx_fb_find_status("3.1.1 x", 7, st));
    assert_false(pmx_fb_find_status("5.1234.1", 8, st));
    assert_false(pmx_fb_find_status("5.1.", 4, st));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_status_table),
        cmocka_unit_test(test_text_wins),
        cmocka_unit_test(test_fallbacks),
        cmocka_unit_test(test_provider_texts),
        cmocka_unit_test(test_custom_rules),
        cmocka_unit_test(test_rule_errors),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_find_status),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
