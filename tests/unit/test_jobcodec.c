/*
 * queue/jobcodec.c: the retry-member encoding round trip (any byte in names
 * and values, internal fields), refusal of hostile members (bad lengths,
 * truncation, odd item counts, overflow), the split of internal fields, and
 * stream entries as Redis replies — including shapes a real Redis never
 * sends (odd item counts, non-string items, NULL elements) — becoming jobs
 * of kind MALFORMED instead of crashes. Mutated members are decoded in a
 * loop so the sanitizers see every truncation and byte flip.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/buf.h"
#include "queue/jobcodec.h"

#define F(n, v) { n, sizeof(n) - 1, v, sizeof(v) - 1 }

static const pmx_queue_entry_limits_t LIM = { 1 << 20, 64 };

/* ---- building fake replies ---- */

static redisReply *r_str(const char *s, size_t n)
{
    redisReply *r = calloc(1, sizeof *r);
    r->type = REDIS_REPLY_STRING;
    r->str = malloc(n + 1);
    memcpy(r->str, s, n);
    r->str[n] = '\0';
    r->len = n;
    return r;
}

static redisReply *r_cstr(const char *s)
{
    return r_str(s, strlen(s));
}

static redisReply *r_int(long long v)
{
    redisReply *r = calloc(1, sizeof *r);
    r->type = REDIS_REPLY_INTEGER;
    r->integer = v;
    return r;
}

static redisReply *r_nil(void)
{
    redisReply *r = calloc(1, sizeof *r);
    r->type = REDIS_REPLY_NIL;
    return r;
}

/* An array of n elements given as arguments (NULL allowed). */
static redisReply *r_arr(size_t n, ...)
{
    redisReply *r = calloc(1, sizeof *r);
    r->type = REDIS_REPLY_ARRAY;
    r->elements = n;
    r->element = n ? calloc(n, sizeof *r->element) : NULL;
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++) r->element[i] = va_arg(ap, redisReply *);
    va_end(ap);
    return r;
}

/* Fields from "name", "value", ... strings. */
static redisReply *r_fields(size_t n, const char *const *items)
{
    redisReply *r = r_arr(0);
    r->elements = n;
    r->element = calloc(n ? n : 1, sizeof *r->element);
    for (size_t i = 0; i < n; i++) r->element[i] = r_cstr(items[i]);
    return r;
}

static void r_free(redisReply *r)
{
    if (!r) return;
    if (r->type == REDIS_REPLY_ARRAY && r->element)
        for (size_t i = 0; i < r->elements; i++) r_free(r->element[i]);
    free(r->element);
    free(r->str);
    free(r);
}

static pmx_queue_job_t *job_of(redisReply *entry, int want_rc)
{
    pmx_queue_job_t *job = NULL;
    char err[200] = "";
    int rc = pmx_queue_job_from_entry(entry, "ws_test", "pmx:{ws_test}:jobs", &LIM,
                                      UINT64_C(1800000000000), &job, err, sizeof err);
    assert_int_equal(rc, want_rc);
    if (rc < 0) {
        assert_null(job);
        assert_true(err[0] != '\0');
    }
    r_free(entry);
    return job;
}

/* ---- member encoding ---- */

static void test_round_trip_any_bytes(void **state)
{
    (void)state;
    static const char weird[] = "a,b:c\n12:x,\r\n\0end";
    pmx_job_field_t in[] = {
        F("from", "Zo\xc3\xab <z@example.com>"),
        F("to", "b@example.com, c@example.com"),
        F("subject", "5:hello,"),
        { "text", 4, weird, sizeof weird - 1 },
        F("empty", ""),
        F("header:X-Campaign", "c:1"),
        F("_ignored", "internal fields of the input are not copied"),
    };
    pmx_buf_t m = PMX_BUF_INIT;
    assert_int_equal(pmx_queue_jobcodec_encode(in, 7, "msg_abcdefghijklmnop", 3,
                                               UINT64_C(1700000000123), NULL, &m), 0);
    assert_memory_equal(m.data, "PMXJ1\n4:from,", 13);

    pmx_job_field_t out[16], user[16];
    size_t n = 0, nuser = 0;
    char err[200];
    assert_int_equal(pmx_queue_jobcodec_decode(m.data, m.len, out, 16, &n, err, sizeof err), 0);
    assert_int_equal(n, 6 + 3);
    pmx_queue_jobmeta_t meta;
    assert_int_equal(pmx_queue_jobcodec_split(out, n, user, &nuser, &meta, err, sizeof err), 0);
    assert_true(meta.present);
    assert_string_equal(meta.msg_id, "msg_abcdefghijklmnop");
    assert_int_equal(meta.attempt, 3);
    assert_true(meta.first_ms == UINT64_C(1700000000123));
    assert_int_equal(nuser, 6);
    for (size_t i = 0; i < 6; i++) {
        assert_int_equal(user[i].name_len, in[i].name_len);
        assert_memory_equal(user[i].name, in[i].name, in[i].name_len);
        assert_int_equal(user[i].value_len, in[i].value_len);
        if (in[i].value_len) assert_memory_equal(user[i].value, in[i].value, in[i].value_len);
    }
    pmx_buf_free(&m);
}

static void test_encode_refuses_bad_state(void **state)
{
    (void)state;
    pmx_job_field_t in[] = { F("from", "a@example.com") };
    pmx_buf_t m = PMX_BUF_INIT;
    assert_int_equal(pmx_queue_jobcodec_encode(in, 1, NULL, 2, 1, NULL, &m), -1);
    assert_int_equal(pmx_queue_jobcodec_encode(in, 1, "msg_short", 2, 1, NULL, &m), -1);
    assert_int_equal(pmx_queue_jobcodec_encode(in, 1, "msg_ABCDEFGHIJKLMNOP", 2, 1, NULL, &m), -1);
    assert_int_equal(pmx_queue_jobcodec_encode(in, 1, "msg_abcdefghijklmno1", 2, 1, NULL, &m), -1);
    assert_int_equal(pmx_queue_jobcodec_encode(in, 1, "msg_abcdefghijklmnop", 0, 1, NULL, &m), -1);
    assert_int_equal(pmx_queue_jobcodec_encode(in, 1, "msg_abcdefghijklmnop",
                                               PMX_QUEUE_MAX_ATTEMPT + 1, 1, NULL, &m), -1);
    assert_int_equal(m.len, 0);
    pmx_buf_free(&m);
}

static void expect_decode_fails(const char *m, size_t len, const char *why)
{
    pmx_job_field_t out[4];
    size_t n = 99;
    char err[200] = "";
    assert_int_equal(pmx_queue_jobcodec_decode(m, len, out, 4, &n, err, sizeof err), -1);
    if (!strstr(err, why)) fail_msg("decode of %zu bytes: '%s' lacks '%s'", len, err, why);
}

#define BAD(lit, why) expect_decode_fails(lit, sizeof(lit) - 1, why)

static void test_decode_refuses_hostile_members(void **state)
{
    (void)state;
    BAD("", "magic");
    BAD("PMXJ0\n1:a,1:b,", "magic");
    BAD("PMXJ1\n", "no fields");
    BAD("PMXJ1\n1:a,", "odd number");
    BAD("PMXJ1\n1:a,1:b,1:c,", "odd number");
    BAD("PMXJ1\n:a,1:b,", "bad length");
    BAD("PMXJ1\nx:a,1:b,", "bad length");
    BAD("PMXJ1\n01:a,1:b,", "bad length");
    BAD("PMXJ1\n1a,1:b,", "bad length");
    BAD("PMXJ1\n12345678901:a,", "bad length");
    BAD("PMXJ1\n99999999999999999999999:a,", "bad length");
    BAD("PMXJ1\n9999999999:a,", "truncated");
    BAD("PMXJ1\n4294967296:a,", "truncated");
    BAD("PMXJ1\n1:ab1:b,", "truncated");
    BAD("PMXJ1\n1:a,1:b", "truncated");
    BAD("PMXJ1\n1:a,1:", "truncated");
    BAD("PMXJ1\n1:a,2:b,", "truncated");
    BAD("PMXJ1\n1:a,1:b,,", "bad length");
    BAD("PMXJ1\n1:a,1:b,1:c,1:d,1:e,1:f,1:g,1:h,1:i,1:j,", "more than 4 fields");
    /* Zero-length items are fine. */
    pmx_job_field_t out[4];
    size_t n;
    char err[200];
    static const char ok[] = "PMXJ1\n0:,0:,";
    assert_int_equal(pmx_queue_jobcodec_decode(ok, sizeof ok - 1, out, 4, &n, err, sizeof err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(out[0].name_len, 0);
    assert_int_equal(out[0].value_len, 0);
}

/* Every truncation and every single-byte change of a valid member either
 * decodes or is refused; the sanitizers check nothing is read out of bounds. */
static void test_decode_mutations(void **state)
{
    (void)state;
    pmx_job_field_t in[] = { F("from", "a@example.com"), F("text", "x,y:1\n"), F("id", "42") };
    pmx_buf_t m = PMX_BUF_INIT;
    assert_int_equal(pmx_queue_jobcodec_encode(in, 3, "msg_abcdefghijklmnop", 2, 5, NULL, &m), 0);
    pmx_job_field_t out[16];
    size_t n;
    char err[200];
    for (size_t len = 0; len < m.len; len++) {
        char *copy = malloc(len ? len : 1);   /* exact size: ASan sees any overread */
        memcpy(copy, m.data, len);
        int rc = pmx_queue_jobcodec_decode(copy, len, out, 16, &n, err, sizeof err);
        assert_true(rc == -1 || rc == 0);
        free(copy);
    }
    static const unsigned char subst[] = { 0, ',', ':', '0', '9', 'x', 0xff, '\n' };
    for (size_t i = 0; i < m.len; i++) {
        for (size_t s = 0; s < sizeof subst; s++) {
            char *copy = malloc(m.len);
            memcpy(copy, m.data, m.len);
            copy[i] = (char)subst[s];
            int rc = pmx_queue_jobcodec_decode(copy, m.len, out, 16, &n, err, sizeof err);
            assert_true(rc == -1 || rc == 0);
            if (rc == 0)
                for (size_t k = 0; k < n; k++) {
                    assert_true(out[k].name >= copy && out[k].name + out[k].name_len <= copy + m.len);
                    assert_true(out[k].value >= copy && out[k].value + out[k].value_len <= copy + m.len);
                }
            free(copy);
        }
    }
    pmx_buf_free(&m);
}

/* ---- internal fields ---- */

static void expect_split_fails(const pmx_job_field_t *in, size_t n, const char *why)
{
    pmx_job_field_t user[16];
    size_t nuser;
    pmx_queue_jobmeta_t meta;
    char err[200] = "";
    assert_int_equal(pmx_queue_jobcodec_split(in, n, user, &nuser, &meta, err, sizeof err), -1);
    if (strncmp(err, why, strlen(why)) != 0) fail_msg("split: '%s' does not start with '%s'", err, why);
}

static void test_split_internal_fields(void **state)
{
    (void)state;
    pmx_job_field_t user[16];
    size_t nuser;
    pmx_queue_jobmeta_t meta;
    char err[200];

    /* Without _msg every field is the user's, "_x" included. */
    pmx_job_field_t plain[] = { F("from", "a@example.com"), F("_attempt", "zz"), F("_x", "1") };
    assert_int_equal(pmx_queue_jobcodec_split(plain, 3, user, &nuser, &meta, err, sizeof err), 0);
    assert_false(meta.present);
    assert_int_equal(nuser, 3);

    /* With _msg: internal fields stripped (unknown "_" ones too), in place. */
    pmx_job_field_t r[] = { F("from", "a@example.com"), F("_msg", "msg_abcdefghijklmnop"),
                            F("to", "b@example.com"), F("_attempt", "7"), F("_new", "x"),
                            F("_first", "9007199254740992") };
    assert_int_equal(pmx_queue_jobcodec_split(r, 6, r, &nuser, &meta, err, sizeof err), 0);
    assert_true(meta.present);
    assert_int_equal(meta.attempt, 7);
    assert_true(meta.first_ms == UINT64_C(9007199254740992));
    assert_int_equal(nuser, 2);
    assert_string_equal(r[0].name, "from");
    assert_string_equal(r[1].name, "to");

    pmx_job_field_t a[] = { F("_msg", "msg_abcdefghijklmnop"), F("_first", "1") };
    expect_split_fails(a, 2, "_attempt: missing");
    pmx_job_field_t b[] = { F("_msg", "msg_abcdefghijklmnop"), F("_attempt", "2") };
    expect_split_fails(b, 2, "_first: missing");
    pmx_job_field_t c[] = { F("_msg", "msg_abcdefghijklmnop"), F("_attempt", "1"), F("_first", "1") };
    expect_split_fails(c, 3, "_attempt: not a number");
    pmx_job_field_t d[] = { F("_msg", "msg_abcdefghijklmnop"), F("_attempt", "2x"), F("_first", "1") };
    expect_split_fails(d, 3, "_attempt: not a number");
    pmx_job_field_t e[] = { F("_msg", "msg_abcdefghijklmnop"), F("_attempt", "99999999999"),
                            F("_first", "1") };
    expect_split_fails(e, 3, "_attempt: not a number");
    pmx_job_field_t f[] = { F("_msg", "msg_abcdefghijklmnop"), F("_attempt", "2"),
                            F("_first", "9007199254740993") };
    expect_split_fails(f, 3, "_first: not a time");
    pmx_job_field_t g[] = { F("_msg", "msg_abcdefghijklmnop"), F("_attempt", "2"), F("_first", "") };
    expect_split_fails(g, 3, "_first: not a time");
    pmx_job_field_t h[] = { F("_msg", "ws_abcdefghijklmnopq"), F("_attempt", "2"), F("_first", "1") };
    expect_split_fails(h, 3, "_msg: not a message id");
    pmx_job_field_t i[] = { F("_msg", "msg_abcdefghijklmnop"), F("_msg", "msg_abcdefghijklmnop"),
                            F("_attempt", "2"), F("_first", "1") };
    expect_split_fails(i, 4, "_msg: given more than once");
    pmx_job_field_t j[] = { F("_attempt", "2"), F("_attempt", "3") };
    expect_split_fails(j, 2, "_attempt: given more than once");
}

static void test_id_syntax(void **state)
{
    (void)state;
    assert_true(pmx_queue_entry_id_valid("0-0", 3));
    assert_true(pmx_queue_entry_id_valid("1700000000000-12", 16));
    assert_true(pmx_queue_entry_id_valid("18446744073709551615-18446744073709551615", 41));
    assert_false(pmx_queue_entry_id_valid("", 0));
    assert_false(pmx_queue_entry_id_valid("123", 3));
    assert_false(pmx_queue_entry_id_valid("-1", 2));
    assert_false(pmx_queue_entry_id_valid("1-", 2));
    assert_false(pmx_queue_entry_id_valid("1-2-3", 5));
    assert_false(pmx_queue_entry_id_valid("1-x", 3));
    assert_false(pmx_queue_entry_id_valid("1 -2", 4));
    assert_false(pmx_queue_entry_id_valid("123456789012345678901-1", 23));
    assert_true(pmx_queue_msg_id_valid("msg_abcdefghijklmnop", 20));
    assert_true(pmx_queue_msg_id_valid("msg_234567abcdefghij", 20));
    assert_false(pmx_queue_msg_id_valid("msg_abcdefghijklmno8", 20));
    assert_false(pmx_queue_msg_id_valid("msg_abcdefghijklmnopq", 21));
    assert_false(pmx_queue_msg_id_valid("MSG_abcdefghijklmnop", 20));
    assert_false(pmx_queue_msg_id_valid(NULL, 0));
}

/* ---- entries as replies ---- */

static void test_entry_shapes_without_id(void **state)
{
    (void)state;
    assert_null(job_of(NULL, -1));
    job_of(r_cstr("1-0"), -1);
    job_of(r_arr(1, r_cstr("1-0")), -1);
    job_of(r_arr(3, r_cstr("1-0"), r_arr(0), r_arr(0)), -1);
    job_of(r_arr(2, r_int(1), r_arr(0)), -1);
    job_of(r_arr(2, r_cstr("not-an-id"), r_arr(0)), -1);
    job_of(r_arr(2, r_str("1-0\0", 4), r_arr(0)), -1);
    job_of(r_arr(2, NULL, r_arr(0)), -1);
    job_of(r_arr(2, r_cstr("1-0"), NULL), -1);
}

static void expect_malformed(redisReply *entry, const char *why)
{
    pmx_queue_job_t *job = job_of(entry, 0);
    assert_int_equal(job->kind, PMX_QUEUE_JOB_MALFORMED);
    if (!strstr(job->reason, why)) fail_msg("reason '%s' lacks '%s'", job->reason, why);
    assert_string_equal(job->ws, "ws_test");
    assert_string_equal(job->stream, "pmx:{ws_test}:jobs");
    assert_string_equal(job->entry_id, "5-1");
    assert_int_equal(job->nfields, 0);
    pmx_queue_job_free(job);
}

static void test_entry_hostile_shapes(void **state)
{
    (void)state;
    static const char *odd[] = { "from", "a@example.com", "to" };
    expect_malformed(r_arr(2, r_cstr("5-1"), r_fields(3, odd)), "odd number of field/value items (3)");
    expect_malformed(r_arr(2, r_cstr("5-1"), r_int(7)), "not an array");
    expect_malformed(r_arr(2, r_cstr("5-1"), r_arr(0)), "no fields");
    expect_malformed(r_arr(2, r_cstr("5-1"), r_arr(2, r_cstr("from"), r_int(3))),
                     "item 2 of 2 is not a string");
    expect_malformed(r_arr(2, r_cstr("5-1"), r_arr(2, r_cstr("from"), r_nil())),
                     "item 2 of 2 is not a string");
    expect_malformed(r_arr(2, r_cstr("5-1"), r_arr(2, r_arr(0), r_cstr("x"))),
                     "item 1 of 2 is not a string");
    expect_malformed(r_arr(2, r_cstr("5-1"), r_arr(2, NULL, r_cstr("x"))),
                     "item 1 of 2 is not a string");
    /* Elements claimed but no vector. */
    redisReply *f = r_arr(0);
    f->elements = 4;
    expect_malformed(r_arr(2, r_cstr("5-1"), f), "not an array");

    const char *many[66];
    for (size_t i = 0; i < 66; i++) many[i] = "x";
    expect_malformed(r_arr(2, r_cstr("5-1"), r_fields(66, many)), "66 field/value items, over the limit of 64");

    char *big = malloc((1 << 20) + 1);
    memset(big, 'a', 1 << 20);
    big[1 << 20] = '\0';
    const char *huge[] = { "raw", big };
    expect_malformed(r_arr(2, r_cstr("5-1"), r_fields(2, huge)), "over the limit of 1048576");
    free(big);

    pmx_queue_job_t *job = job_of(r_arr(2, r_cstr("5-1"), r_nil()), 1);
    assert_string_equal(job->entry_id, "5-1");
    pmx_queue_job_free(job);
}

static void test_entry_good(void **state)
{
    (void)state;
    redisReply *fields = r_arr(8, r_cstr("from"), r_cstr("a@example.com"),
                               r_str("text", 4), r_str("a\0b", 3),
                               r_cstr("id"), r_cstr("order 7"),
                               r_cstr("_x"), r_cstr("stays a user field"));
    pmx_queue_job_t *job = job_of(r_arr(2, r_cstr("1700000000000-3"), fields), 0);
    assert_int_equal(job->kind, PMX_QUEUE_JOB_OK);
    assert_int_equal(job->flags, 0);
    assert_int_equal(job->nfields, 4);
    assert_string_equal(job->fields[0].name, "from");
    assert_string_equal(job->fields[0].value, "a@example.com");
    assert_int_equal(job->fields[1].value_len, 3);
    assert_memory_equal(job->fields[1].value, "a\0b\0", 4);
    assert_string_equal(job->client_id, "order 7");
    assert_string_equal(job->fields[3].name, "_x");
    assert_int_equal(job->attempt, 1);
    assert_int_equal(job->deliveries, 1);
    assert_string_equal(job->msg_id, "");
    assert_true(job->first_ms == UINT64_C(1700000000000));
    assert_int_equal(job->bytes, 4 + 13 + 4 + 3 + 2 + 7 + 2 + 18);
    pmx_queue_job_free(job);

    /* An entry id in the future (XADD with an explicit id): first_ms is now. */
    static const char *one[] = { "from", "a@example.com" };
    job = job_of(r_arr(2, r_cstr("99999999999999-0"), r_fields(2, one)), 0);
    assert_true(job->first_ms == UINT64_C(1800000000000));
    assert_null(job->client_id);
    pmx_queue_job_free(job);

    /* `id` that lib/job.c would refuse, or given twice: no duplicate check. */
    static const char *bad_id[] = { "id", "tab\there" };
    job = job_of(r_arr(2, r_cstr("1-0"), r_fields(2, bad_id)), 0);
    assert_null(job->client_id);
    pmx_queue_job_free(job);
    static const char *two_ids[] = { "id", "a", "id", "b" };
    job = job_of(r_arr(2, r_cstr("1-0"), r_fields(4, two_ids)), 0);
    assert_null(job->client_id);
    pmx_queue_job_free(job);
}

static void test_entry_retried(void **state)
{
    (void)state;
    static const char *f[] = { "from", "a@example.com", "_msg", "msg_abcdefghijklmnop",
                               "id", "k1", "_attempt", "4", "_first", "1600000000000" };
    pmx_queue_job_t *job = job_of(r_arr(2, r_cstr("1700000000000-0"), r_fields(10, f)), 0);
    assert_int_equal(job->kind, PMX_QUEUE_JOB_OK);
    assert_int_equal(job->flags, PMX_QUEUE_JOB_RETRIED);
    assert_string_equal(job->msg_id, "msg_abcdefghijklmnop");
    assert_int_equal(job->attempt, 4);
    assert_true(job->first_ms == UINT64_C(1600000000000));
    assert_int_equal(job->nfields, 2);
    assert_string_equal(job->fields[0].name, "from");
    assert_string_equal(job->fields[1].name, "id");
    assert_string_equal(job->client_id, "k1");

    /* Re-encoding it (a second defer) carries the same state forward. */
    pmx_buf_t m = PMX_BUF_INIT;
    assert_int_equal(pmx_queue_jobcodec_encode(job->fields, job->nfields, job->msg_id,
                                               job->attempt + 1, job->first_ms, NULL, &m), 0);
    static const char want[] = "PMXJ1\n4:from,13:a@example.com,2:id,2:k1,4:_msg,"
                               "20:msg_abcdefghijklmnop,8:_attempt,1:5,6:_first,13:1600000000000,";
    assert_int_equal(m.len, sizeof want - 1);
    assert_memory_equal(m.data, want, m.len);
    pmx_buf_free(&m);
    pmx_queue_job_free(job);

    static const char *bad[] = { "from", "a@example.com", "_msg", "msg_abcdefghijklmnop",
                                 "_attempt", "-1", "_first", "1" };
    job = job_of(r_arr(2, r_cstr("1-0"), r_fields(8, bad)), 0);
    assert_int_equal(job->kind, PMX_QUEUE_JOB_MALFORMED);
    assert_true(strncmp(job->reason, "_attempt: not a number", 22) == 0);
    assert_int_equal(job->flags, 0);
    pmx_queue_job_free(job);
}

static void test_kind_names(void **state)
{
    (void)state;
    assert_string_equal(pmx_queue_job_kind_name(PMX_QUEUE_JOB_OK), "ok");
    assert_string_equal(pmx_queue_job_kind_name(PMX_QUEUE_JOB_MALFORMED), "malformed");
    assert_string_equal(pmx_queue_job_kind_name(PMX_QUEUE_JOB_DUPLICATE), "duplicate");
    assert_string_equal(pmx_queue_job_kind_name(PMX_QUEUE_JOB_POISON), "poison");
    assert_string_equal(pmx_queue_job_kind_name(PMX_QUEUE_JOB_UNKNOWN_WS), "unknown_workspace");
}

/* _source (SMTP submission) is accepted on any entry, stripped, and survives a retry. */
static void test_source_field(void **state)
{
    (void)state;
    pmx_job_field_t user[16];
    size_t nuser;
    pmx_queue_jobmeta_t meta;
    char err[200];
    pmx_job_field_t first[] = { F("from", "a@example.com"), F("_source", "smtp"), F("to", "b@example.com") };
    assert_int_equal(pmx_queue_jobcodec_split(first, 3, user, &nuser, &meta, err, sizeof err), 0);
    assert_true(meta.smtp);
    assert_false(meta.present);
    assert_int_equal(nuser, 2);
    assert_string_equal(user[0].name, "from");
    assert_string_equal(user[1].name, "to");

    pmx_job_field_t bad[] = { F("from", "a@example.com"), F("_source", "carrier-pigeon") };
    expect_split_fails(bad, 2, "_source: not redis or smtp");

    pmx_buf_t m = PMX_BUF_INIT;
    assert_int_equal(pmx_queue_jobcodec_encode(user, nuser, "msg_abcdefghijklmnop", 2, 5, "smtp", &m), 0);
    pmx_job_field_t out[16];
    size_t n;
    assert_int_equal(pmx_queue_jobcodec_decode(m.data, m.len, out, 16, &n, err, sizeof err), 0);
    assert_int_equal(pmx_queue_jobcodec_split(out, n, user, &nuser, &meta, err, sizeof err), 0);
    assert_true(meta.present);
    assert_true(meta.smtp);
    assert_int_equal(nuser, 2);
    pmx_buf_reset(&m);
    assert_int_equal(pmx_queue_jobcodec_encode(user, nuser, "msg_abcdefghijklmnop", 2, 5, "redis", &m), 0);
    assert_null(memmem(m.data, m.len, "_source", 7));
    pmx_buf_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_any_bytes),
        cmocka_unit_test(test_encode_refuses_bad_state),
        cmocka_unit_test(test_decode_refuses_hostile_members),
        cmocka_unit_test(test_decode_mutations),
        cmocka_unit_test(test_split_internal_fields),
        cmocka_unit_test(test_id_syntax),
        cmocka_unit_test(test_entry_shapes_without_id),
        cmocka_unit_test(test_entry_hostile_shapes),
        cmocka_unit_test(test_entry_good),
        cmocka_unit_test(test_entry_retried),
        cmocka_unit_test(test_kind_names),
        cmocka_unit_test(test_source_field),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
