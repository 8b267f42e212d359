/*
 * lib/job.c: decoding of the fields of one job (docs/queue.md). Every rule has a
 * case, and each refusal is checked to name the field it is about.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/job.h"

#define MAX_FIELDS 1200
#define BIG (25u * 1024 * 1024)

typedef struct {
    pmx_job_field_t f[MAX_FIELDS];
    size_t n;
} fields_t;

static void add_n(fields_t *fs, const char *name, const char *value, size_t value_len)
{
    assert_true(fs->n < MAX_FIELDS);
    fs->f[fs->n].name = name;
    fs->f[fs->n].name_len = strlen(name);
    fs->f[fs->n].value = value;
    fs->f[fs->n].value_len = value_len;
    fs->n++;
}

static void add(fields_t *fs, const char *name, const char *value)
{
    add_n(fs, name, value, strlen(value));
}

/* A valid composed job to start from. */
static void base(fields_t *fs)
{
    fs->n = 0;
    add(fs, "from", "Acme <news@acme.example>");
    add(fs, "to", "bob@example.com");
    add(fs, "subject", "Hello");
    add(fs, "text", "Hi Bob");
}

/* Removes the field called name (it must exist). */
static void drop(fields_t *fs, const char *name)
{
    for (size_t i = 0; i < fs->n; i++) {
        if (strcmp(fs->f[i].name, name) == 0) {
            memmove(&fs->f[i], &fs->f[i + 1], (fs->n - i - 1) * sizeof fs->f[0]);
            fs->n--;
            return;
        }
    }
    fail_msg("no field %s", name);
}

static void expect_ok(const fields_t *fs, size_t max, pmx_job_t *job)
{
    char err[512] = "";
    if (pmx_job_decode(fs->f, fs->n, max, job, err, sizeof err) != 0)
        fail_msg("valid job refused: %s", err);
    if (pmx_job_check(fs->f, fs->n, max, err, sizeof err) != 0)
        fail_msg("pmx_job_check refused a valid job: %s", err);
}

/* The job is refused and the reason starts with `reason`. */
static void expect_bad_max(const fields_t *fs, size_t max, const char *reason)
{
    char err[512] = "";
    pmx_job_t job;
    memset(&job, 0xa5, sizeof job);
    unsigned char before[sizeof job];
    memcpy(before, &job, sizeof job);
    if (pmx_job_decode(fs->f, fs->n, max, &job, err, sizeof err) != -1)
        fail_msg("job accepted, want '%s'", reason);
    if (strncmp(err, reason, strlen(reason)) != 0)
        fail_msg("reason '%s', want '%s...'", err, reason);
    if (memcmp(before, &job, sizeof job) != 0) fail_msg("*out changed on '%s'", err);
    char err2[512] = "";
    if (pmx_job_check(fs->f, fs->n, max, err2, sizeof err2) != -1 || strcmp(err, err2) != 0)
        fail_msg("pmx_job_check said '%s', pmx_job_decode '%s'", err2, err);
}

static void expect_bad(const fields_t *fs, const char *reason)
{
    expect_bad_max(fs, BIG, reason);
}

static void test_composed_ok(void **state)
{
    (void)state;
    fields_t fs;
    base(&fs);
    add(&fs, "cc", "\"Smith, Carol\" <carol@example.com>, dan@example.com");
    add(&fs, "bcc", "eve@example.com");
    add(&fs, "html", "<p>Hi <b>Bob</b></p>");
    add(&fs, "reply_to", "Support <help@acme.example>");
    add(&fs, "header:X-Campaign", "spring-2024");
    add(&fs, "header:List-Unsubscribe", "<mailto:u@acme.example>");
    add(&fs, "id", "order-42 confirmation");
    add(&fs, "metadata", "{\"order\":42}");
    pmx_job_t j;
    expect_ok(&fs, BIG, &j);
    assert_string_equal(j.from.addr, "news@acme.example");
    assert_string_equal(j.from.display, "Acme");
    assert_string_equal(pmx_addr_domain(&j.from), "acme.example");
    assert_int_equal(j.to.n, 1);
    assert_int_equal(j.cc.n, 2);
    assert_string_equal(j.cc.v[0].display, "Smith, Carol");
    assert_int_equal(j.bcc.n, 1);
    assert_int_equal(pmx_job_recipient_count(&j), 4);
    assert_non_null(j.reply_to);
    assert_string_equal(j.reply_to->addr, "help@acme.example");
    assert_string_equal(j.subject, "Hello");
    assert_string_equal(j.text, "Hi Bob");
    assert_int_equal(j.text_len, 6);
    assert_string_equal(j.html, "<p>Hi <b>Bob</b></p>");
    assert_int_equal(j.nheaders, 2);
    assert_string_equal(j.headers[0].name, "X-Campaign");
    assert_string_equal(j.headers[0].value, "spring-2024");
    assert_string_equal(j.headers[1].name, "List-Unsubscribe");
    assert_null(j.raw);
    assert_string_equal(j.client_id, "order-42 confirmation");
    assert_string_equal(j.metadata, "{\"order\":42}");
    pmx_job_free(&j);
    pmx_job_free(&j);       /* freed job is all zero: a second free is harmless */

    /* Minimal: html only; optional fields absent. */
    base(&fs);
    drop(&fs, "text");
    add(&fs, "html", "<p>x</p>");
    expect_ok(&fs, BIG, &j);
    assert_null(j.text);
    assert_int_equal(j.cc.n, 0);
    assert_null(j.reply_to);
    assert_null(j.client_id);
    assert_null(j.metadata);
    pmx_job_free(&j);

    /* UTF-8 subject and names; bodies keep CR, LF and TAB; field order is free. */
    fs.n = 0;
    add(&fs, "text", "line 1\r\nline 2\n\tindented");
    add(&fs, "subject", "Gr\xc3\xbc\xc3\x9f" "e \xf0\x9f\x91\x8b\tsoon");
    add(&fs, "to", "J\xc3\xbcrgen <j@m\xc3\xbcller.example>");
    add(&fs, "from", "\xc3\x89quipe <team@acme.example>");
    expect_ok(&fs, BIG, &j);
    assert_string_equal(j.from.display, "\xc3\x89quipe");
    assert_string_equal(j.to.v[0].addr, "j@m\xc3\xbcller.example");
    pmx_job_free(&j);

    /* An empty subject and an empty text are present, hence valid. */
    base(&fs);
    fs.f[2].value = "";
    fs.f[2].value_len = 0;
    fs.f[3].value_len = 0;
    expect_ok(&fs, BIG, &j);
    assert_string_equal(j.subject, "");
    assert_int_equal(j.text_len, 0);
    pmx_job_free(&j);

    /* Empty values may come as NULL pointers (length 0). */
    fs.f[2].value = NULL;
    fs.f[3].value = NULL;
    add_n(&fs, "metadata", NULL, 0);
    add_n(&fs, "header:X-Empty", NULL, 0);
    expect_ok(&fs, BIG, &j);
    assert_string_equal(j.subject, "");
    assert_string_equal(j.text, "");
    assert_string_equal(j.metadata, "");
    assert_string_equal(j.headers[0].value, "");
    pmx_job_free(&j);
    fs.f[1].value = NULL;
    fs.f[1].value_len = 0;
    expect_bad(&fs, "to: empty address list");
}

static void test_raw_ok(void **state)
{
    (void)state;
    fields_t fs = { .n = 0 };
    const char *raw = "From: a@acme.example\r\nTo: b@example.com\r\nSubject: x\r\n\r\nbody\r\n";
    add(&fs, "from", "a@acme.example");
    add(&fs, "to", "b@example.com, c@example.com");
    add(&fs, "raw", raw);
    add(&fs, "id", "r1");
    pmx_job_t j;
    expect_ok(&fs, BIG, &j);
    assert_string_equal(j.raw, raw);
    assert_int_equal(j.raw_len, strlen(raw));
    assert_null(j.subject);
    assert_null(j.text);
    assert_null(j.html);
    assert_int_equal(j.nheaders, 0);
    assert_int_equal(pmx_job_recipient_count(&j), 2);
    pmx_job_free(&j);

    /* Raw may be 8-bit (a legacy charset): only NUL is refused. */
    fs.f[2].value = "Subject: \xe9t\xe9\r\n\r\n\xff\r\n";
    fs.f[2].value_len = strlen(fs.f[2].value);
    expect_ok(&fs, BIG, &j);
    pmx_job_free(&j);
}

static void test_required(void **state)
{
    (void)state;
    fields_t fs;
    base(&fs); drop(&fs, "from");    expect_bad(&fs, "from: missing");
    base(&fs); drop(&fs, "to");      expect_bad(&fs, "to: missing");
    base(&fs); drop(&fs, "subject"); expect_bad(&fs, "subject: missing");
    base(&fs); drop(&fs, "text");    expect_bad(&fs, "text: missing (a job needs text, html or raw)");
    fs.n = 0;                        expect_bad(&fs, "from: missing");
}

static void test_raw_exclusions(void **state)
{
    (void)state;
    static const char *const composed[] = { "subject", "text", "html", "header:X-Tag" };
    for (size_t i = 0; i < 4; i++) {
        fields_t fs = { .n = 0 };
        add(&fs, "from", "a@acme.example");
        add(&fs, "to", "b@example.com");
        add(&fs, "raw", "Subject: x\r\n\r\nbody\r\n");
        add(&fs, composed[i], "v");
        char want[64];
        snprintf(want, sizeof want, "%s: not allowed with raw", composed[i]);
        expect_bad(&fs, want);
    }
    fields_t fs = { .n = 0 };
    add(&fs, "from", "a@acme.example");
    add(&fs, "to", "b@example.com");
    add(&fs, "raw", "");
    expect_bad(&fs, "raw: empty");
    fs.f[2].value = "Subject: x\r\n\r\nbo\0dy";
    fs.f[2].value_len = 19;
    expect_bad(&fs, "raw: contains a NUL byte");
}

static void test_field_names(void **state)
{
    (void)state;
    fields_t fs;
    base(&fs); add(&fs, "foo", "x");        expect_bad(&fs, "unknown field 'foo'");
    base(&fs); add(&fs, "From", "x");       expect_bad(&fs, "unknown field 'From'");
    base(&fs); add(&fs, "headers", "x");    expect_bad(&fs, "unknown field 'headers'");
    base(&fs); add(&fs, "", "x");           expect_bad(&fs, "unknown field ''");
    base(&fs); add_n(&fs, "to\x01", "x", 1); expect_bad(&fs, "unknown field 'to\\x01'");
    base(&fs); add(&fs, "subject", "again"); expect_bad(&fs, "subject: duplicate field");
    base(&fs); add(&fs, "to", "c@example.com"); expect_bad(&fs, "to: duplicate field");
    base(&fs); add(&fs, "from", "c@example.com"); expect_bad(&fs, "from: duplicate field");
    base(&fs);
    add(&fs, "header:X-Tag", "a");
    add(&fs, "header:x-tag", "b");
    expect_bad(&fs, "header:x-tag: duplicate field");

    /* A name is compared with its length: "to" followed by garbage is not "to". */
    base(&fs);
    fs.f[1].name = "tox";
    fs.f[1].name_len = 2;
    pmx_job_t j;
    expect_ok(&fs, BIG, &j);
    pmx_job_free(&j);
}

static void test_addresses(void **state)
{
    (void)state;
    fields_t fs;
    base(&fs); fs.f[0].value = "bob"; fs.f[0].value_len = 3;
    expect_bad(&fs, "from: missing '@' in 'bob'");
    base(&fs); fs.f[0].value = "a@x.example, b@x.example"; fs.f[0].value_len = 24;
    expect_bad(&fs, "from: more than one address");
    base(&fs); fs.f[1].value = "b@example.com,,c@example.com"; fs.f[1].value_len = 28;
    expect_bad(&fs, "to: empty element in address list");
    base(&fs); fs.f[1].value = ""; fs.f[1].value_len = 0;
    expect_bad(&fs, "to: empty address list");
    base(&fs); add(&fs, "cc", "carol");
    expect_bad(&fs, "cc: missing '@' in 'carol'");
    base(&fs); add(&fs, "bcc", "x@example.com\r\nRCPT TO:<y@example.com>");
    expect_bad(&fs, "bcc: control character (CR)");
    base(&fs); add(&fs, "reply_to", "a@example.com, b@example.com");
    expect_bad(&fs, "reply_to: more than one address");
    base(&fs); add(&fs, "reply_to", "\"unterminated <a@example.com>");
    expect_bad(&fs, "reply_to: unbalanced quote");
    base(&fs); fs.f[0].value = "\xff <a@acme.example>"; fs.f[0].value_len = 18;
    expect_bad(&fs, "from: invalid UTF-8");
    /* An unquoted space rejects the whole job, naming the field and the address. */
    base(&fs); add(&fs, "cc", "ok@dest.test, a b@dest.test");
    expect_bad(&fs, "cc: unexpected space in local part in 'a b@dest.test'");

    /* A quoted local part is one recipient, kept in the form the relay client
     * sends (docs/queue.md, "Addresses"), next to its siblings. */
    base(&fs); fs.f[1].value = "\"a b\"@Dest.test, \"ok\"@dest.test";
    fs.f[1].value_len = strlen(fs.f[1].value);
    pmx_job_t job;
    expect_ok(&fs, BIG, &job);
    assert_int_equal(job.to.n, 2);
    assert_string_equal(job.to.v[0].addr, "\"a b\"@dest.test");
    assert_string_equal(job.to.v[1].addr, "ok@dest.test");
    for (size_t i = 0; i < job.to.n; i++) assert_true(pmx_addr_envelope_ok(job.to.v[i].addr));
    pmx_job_free(&job);
}

static char *address_list(size_t n)
{
    char *s = malloc(n * 24 + 1);
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += (size_t)sprintf(s + len, "%su%zu@example.com", i ? "," : "", i);
    return s;
}

static void test_recipient_limit(void **state)
{
    (void)state;
    fields_t fs;
    pmx_job_t j;
    char *l1000 = address_list(1000), *l1001 = address_list(1001);
    char *l500 = address_list(500), *l499 = address_list(499);

    base(&fs); fs.f[1].value = l1000; fs.f[1].value_len = strlen(l1000);
    expect_ok(&fs, BIG, &j);
    assert_int_equal(pmx_job_recipient_count(&j), 1000);
    pmx_job_free(&j);

    base(&fs); fs.f[1].value = l1001; fs.f[1].value_len = strlen(l1001);
    expect_bad(&fs, "to: more than 1000 recipients");

    base(&fs); add(&fs, "bcc", l1001);
    expect_bad(&fs, "bcc: more than 1000 recipients");

    /* 500 + 499 + 1 = 1000 is fine, 500 + 500 + 1 is not. */
    base(&fs); add(&fs, "cc", l500); add(&fs, "bcc", l499);
    fs.f[1].value = "z@example.com"; fs.f[1].value_len = 13;
    expect_ok(&fs, BIG, &j);
    assert_int_equal(pmx_job_recipient_count(&j), 1000);
    pmx_job_free(&j);
    base(&fs); add(&fs, "cc", l500); add(&fs, "bcc", l500);
    expect_bad(&fs, "to: more than 1000 recipients (to, cc and bcc together)");

    /* A list value is bounded in bytes before it is parsed. */
    char *huge = malloc(PMX_JOB_MAX_LIST_BYTES + 2);
    memset(huge, ' ', PMX_JOB_MAX_LIST_BYTES + 1);
    memcpy(huge, "a@example.com", 13);
    base(&fs); add_n(&fs, "cc", huge, PMX_JOB_MAX_LIST_BYTES);
    expect_ok(&fs, BIG, &j);
    pmx_job_free(&j);
    base(&fs); add_n(&fs, "cc", huge, PMX_JOB_MAX_LIST_BYTES + 1);
    expect_bad(&fs, "cc: longer than 1048576 bytes");
    free(huge);

    free(l1000); free(l1001); free(l500); free(l499);
}

static void test_subject_and_bodies(void **state)
{
    (void)state;
    fields_t fs;
    base(&fs); fs.f[2].value = "Hi\r\nBcc: x@y.example"; fs.f[2].value_len = 20;
    expect_bad(&fs, "subject: contains CR or LF");
    base(&fs); fs.f[2].value = "Hi\nthere"; fs.f[2].value_len = 8;
    expect_bad(&fs, "subject: contains CR or LF");
    base(&fs); fs.f[2].value = "Hi\x07"; fs.f[2].value_len = 3;
    expect_bad(&fs, "subject: contains a control character");
    base(&fs); fs.f[2].value = "Hi\0x"; fs.f[2].value_len = 4;
    expect_bad(&fs, "subject: contains a NUL byte");
    base(&fs); fs.f[2].value = "caf\xe9"; fs.f[2].value_len = 4;
    expect_bad(&fs, "subject: not valid UTF-8");
    base(&fs); fs.f[3].value = "caf\xc3"; fs.f[3].value_len = 4;
    expect_bad(&fs, "text: not valid UTF-8");
    base(&fs); fs.f[3].value = "a\0b"; fs.f[3].value_len = 3;
    expect_bad(&fs, "text: contains a NUL byte");
    base(&fs); add_n(&fs, "html", "<p>\xed\xa0\x80</p>", 10);
    expect_bad(&fs, "html: not valid UTF-8");
}

static void test_headers(void **state)
{
    (void)state;
    fields_t fs;
    static const char *const reserved[] = {
        "header:From", "header:to", "header:CC", "header:Bcc", "header:Subject",
        "header:Date", "header:Message-ID", "header:message-id", "header:MIME-Version",
        "header:Content-Type", "header:Content-Transfer-Encoding", "header:Reply-To",
        "header:DKIM-Signature", "header:Return-Path", "header:X-Original-To",
    };
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++) {
        base(&fs);
        add(&fs, reserved[i], "x");
        char want[128];
        snprintf(want, sizeof want, "%s: header not allowed (", reserved[i]);
        expect_bad(&fs, want);
    }
    static const char *const bad_names[] = {
        "header:", "header:X Tag", "header:X:Tag", "header:X-T\xc3\xa4g", "header:X\tTag",
    };
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        base(&fs);
        add(&fs, bad_names[i], "x");
        expect_bad(&fs, "header:");
        char err[256];
        pmx_job_t j;
        assert_int_equal(pmx_job_decode(fs.f, fs.n, BIG, &j, err, sizeof err), -1);
        if (!strstr(err, ": not a valid header name")) fail_msg("'%s'", err);
    }
    base(&fs); add(&fs, "header:X-Tag", "a\r\nBcc: victim@example.com");
    expect_bad(&fs, "header:X-Tag: contains CR or LF");
    base(&fs); add(&fs, "header:X-Tag", "a\nb");
    expect_bad(&fs, "header:X-Tag: contains CR or LF");
    base(&fs); add(&fs, "header:X-Tag", "a\rb");
    expect_bad(&fs, "header:X-Tag: contains CR or LF");
    base(&fs); add_n(&fs, "header:X-Tag", "a\0b", 3);
    expect_bad(&fs, "header:X-Tag: contains a NUL byte");
    base(&fs); add(&fs, "header:X-Tag", "\x1b[31m");
    expect_bad(&fs, "header:X-Tag: contains a control character");
    base(&fs); add(&fs, "header:X-Tag", "\xc3\x28");
    expect_bad(&fs, "header:X-Tag: not valid UTF-8");

    /* Name + ": " + value must fit a 998-octet line. */
    char v[1000];
    memset(v, 'v', sizeof v);
    base(&fs); add_n(&fs, "header:X-Tag", v, 998 - 5 - 2);
    pmx_job_t j;
    expect_ok(&fs, BIG, &j);
    assert_int_equal(j.nheaders, 1);
    pmx_job_free(&j);
    base(&fs); add_n(&fs, "header:X-Tag", v, 998 - 5 - 1);
    expect_bad(&fs, "header:X-Tag: header line longer than 998 octets");

    /* UTF-8 values, TAB and empty values are fine; the name keeps its case. */
    base(&fs);
    add(&fs, "header:X-Name", "Z\xc3\xbcrich\tCH");
    add(&fs, "header:X-Empty", "");
    expect_ok(&fs, BIG, &j);
    assert_string_equal(j.headers[0].name, "X-Name");
    assert_string_equal(j.headers[1].value, "");
    pmx_job_free(&j);

    /* At most PMX_JOB_MAX_HEADERS header:* fields. */
    static char names[PMX_JOB_MAX_HEADERS + 1][24];
    base(&fs);
    for (int i = 0; i <= PMX_JOB_MAX_HEADERS; i++) {
        snprintf(names[i], sizeof names[i], "header:X-H%d", i);
        add(&fs, names[i], "x");
    }
    char want[64];
    snprintf(want, sizeof want, "header:X-H%d: more than %d header: fields",
             PMX_JOB_MAX_HEADERS, PMX_JOB_MAX_HEADERS);
    expect_bad(&fs, want);
    fs.n--;
    expect_ok(&fs, BIG, &j);
    assert_int_equal(j.nheaders, PMX_JOB_MAX_HEADERS);
    pmx_job_free(&j);
}

static void test_category(void **state)
{
    (void)state;
    fields_t fs;
    pmx_job_t j;
    char v[70];
    memset(v, 'c', sizeof v);
    base(&fs); add(&fs, "category", "news.weekly_2-b");
    expect_ok(&fs, BIG, &j);
    assert_string_equal(j.category, "news.weekly_2-b");
    pmx_job_free(&j);
    base(&fs); add_n(&fs, "category", v, 64);
    expect_ok(&fs, BIG, &j);
    assert_int_equal(strlen(j.category), 64);
    pmx_job_free(&j);
    base(&fs);
    expect_ok(&fs, BIG, &j);
    assert_null(j.category);
    pmx_job_free(&j);
    base(&fs); add_n(&fs, "category", v, 65);
    expect_bad(&fs, "category: must be 1 to 64 characters");
    base(&fs); add(&fs, "category", "");
    expect_bad(&fs, "category: must be 1 to 64 characters");
    base(&fs); add(&fs, "category", "News");
    expect_bad(&fs, "category: only a-z, 0-9, '_', '.' and '-' are allowed");
    base(&fs); add(&fs, "category", "a b");
    expect_bad(&fs, "category: only a-z, 0-9, '_', '.' and '-' are allowed");
}

/* unsubscribe: yes|no; with yes the List-Unsubscribe headers are postmux's;
 * X-Postmux-Ref is never the job's. */
static void test_unsubscribe(void **state)
{
    (void)state;
    fields_t fs;
    pmx_job_t j;
    base(&fs); add(&fs, "unsubscribe", "yes");
    expect_ok(&fs, BIG, &j);
    assert_true(j.unsubscribe);
    pmx_job_free(&j);
    base(&fs); add(&fs, "unsubscribe", "no");
    expect_ok(&fs, BIG, &j);
    assert_false(j.unsubscribe);
    pmx_job_free(&j);
    base(&fs);
    expect_ok(&fs, BIG, &j);
    assert_false(j.unsubscribe);
    pmx_job_free(&j);
    base(&fs); add(&fs, "unsubscribe", "YES");
    expect_bad(&fs, "unsubscribe: must be yes or no");
    base(&fs); add(&fs, "unsubscribe", "");
    expect_bad(&fs, "unsubscribe: must be yes or no");
    base(&fs); add(&fs, "unsubscribe", "true");
    expect_bad(&fs, "unsubscribe: must be yes or no");
    base(&fs); add(&fs, "unsubscribe", "yes"); add(&fs, "header:list-unsubscribe", "<x>");
    expect_bad(&fs, "header:list-unsubscribe: header not allowed with unsubscribe = yes "
                    "(postmux writes it for each recipient)");
    base(&fs); add(&fs, "unsubscribe", "yes"); add(&fs, "header:List-Unsubscribe-Post", "x");
    expect_bad(&fs, "header:List-Unsubscribe-Post: header not allowed with unsubscribe = yes "
                    "(postmux writes it for each recipient)");
    /* Without unsubscribe the job may write its own. */
    base(&fs); add(&fs, "header:List-Unsubscribe", "<mailto:x@example.com>");
    expect_ok(&fs, BIG, &j);
    pmx_job_free(&j);
    base(&fs); add(&fs, "header:X-Postmux-Ref", "forged");
    expect_bad(&fs, "header:X-Postmux-Ref: header not allowed (postmux writes it on every message)");
}

static void test_id_and_metadata(void **state)
{
    (void)state;
    fields_t fs;
    pmx_job_t j;
    char v[5000];
    memset(v, 'm', sizeof v);

    base(&fs); add_n(&fs, "id", v, 200);
    expect_ok(&fs, BIG, &j);
    assert_int_equal(strlen(j.client_id), 200);
    pmx_job_free(&j);
    base(&fs); add_n(&fs, "id", v, 201);
    expect_bad(&fs, "id: longer than 200 characters");
    base(&fs); add(&fs, "id", "");
    expect_bad(&fs, "id: empty");
    base(&fs); add(&fs, "id", "a\tb");
    expect_bad(&fs, "id: only printable ASCII is allowed");
    base(&fs); add(&fs, "id", "caf\xc3\xa9");
    expect_bad(&fs, "id: only printable ASCII is allowed");

    base(&fs); add_n(&fs, "metadata", v, 4096);
    expect_ok(&fs, BIG, &j);
    assert_int_equal(strlen(j.metadata), 4096);
    pmx_job_free(&j);
    base(&fs); add_n(&fs, "metadata", v, 4097);
    expect_bad(&fs, "metadata: longer than 4096 bytes");
    base(&fs); add_n(&fs, "metadata", "a\0b", 3);
    expect_bad(&fs, "metadata: contains a NUL byte");
    base(&fs); add(&fs, "metadata", "\xfe");
    expect_bad(&fs, "metadata: not valid UTF-8");
    base(&fs); add(&fs, "metadata", "multi\nline\tok");
    expect_ok(&fs, BIG, &j);
    pmx_job_free(&j);
}

static void test_size(void **state)
{
    (void)state;
    fields_t fs;
    pmx_job_t j;
    /* Composed: subject + text + html + headers count. subject 5 + text 6 = 11. */
    base(&fs);
    expect_ok(&fs, 11, &j);
    pmx_job_free(&j);
    expect_bad_max(&fs, 10, "text: message parts total 11 bytes, over max_message_size (10)");
    add(&fs, "html", "<p>Hi Bob, long</p>");
    expect_bad_max(&fs, 20, "html: message parts total 30 bytes");
    base(&fs); add(&fs, "header:X-A", "12345");          /* X-A: 12345 = 10 */
    expect_ok(&fs, 21, &j);
    pmx_job_free(&j);
    expect_bad_max(&fs, 20, "text: message parts total 21 bytes");

    /* Raw: its length. */
    fs.n = 0;
    add(&fs, "from", "a@acme.example");
    add(&fs, "to", "b@example.com");
    add(&fs, "raw", "Subject: x\r\n\r\nbody\r\n");     /* 20 bytes */
    expect_ok(&fs, 20, &j);
    pmx_job_free(&j);
    expect_bad_max(&fs, 19, "raw: message of 20 bytes is over max_message_size (19)");
}

/* Refusals at every stage free what was built so far (checked under ASan/LSan). */
static void test_late_errors_free(void **state)
{
    (void)state;
    fields_t fs;
    base(&fs);
    add(&fs, "cc", "c@example.com");
    add(&fs, "bcc", "d@example.com");
    add(&fs, "reply_to", "r@example.com");
    add(&fs, "html", "<p>x</p>");
    add(&fs, "header:X-A", "a");
    add(&fs, "metadata", "\xff");
    expect_bad(&fs, "metadata: not valid UTF-8");
    fs.f[fs.n - 1].value = "ok";
    fs.f[fs.n - 1].value_len = 2;
    add(&fs, "id", "");
    expect_bad(&fs, "id: empty");
    fs.n--;
    add(&fs, "header:X-B", "a\nb");
    expect_bad(&fs, "header:X-B: contains CR or LF");
    fs.n--;
    expect_bad_max(&fs, 3, "html: message parts total");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_composed_ok),
        cmocka_unit_test(test_raw_ok),
        cmocka_unit_test(test_required),
        cmocka_unit_test(test_raw_exclusions),
        cmocka_unit_test(test_field_names),
        cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_recipient_limit),
        cmocka_unit_test(test_subject_and_bodies),
        cmocka_unit_test(test_headers),
        cmocka_unit_test(test_id_and_metadata),
        cmocka_unit_test(test_category),
        cmocka_unit_test(test_unsubscribe),
        cmocka_unit_test(test_size),
        cmocka_unit_test(test_late_errors_free),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
