/*
 * lib/verp.c and workers/txn.c: return-path domains and their --return-path
 * check, List-Unsubscribe values, and the transactions of a job — one per
 * plan delivery without VERP, one per recipient with it or with unsubscribe,
 * each carrying the right sender, X-Postmux-Ref (outside every signature)
 * and, with unsubscribe, its own signatures covering List-Unsubscribe and
 * List-Unsubscribe-Post.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "dkim/keygen.h"
#include "dkim/signer.h"
#include "lib/job.h"
#include "lib/reftoken.h"
#include "lib/verp.h"
#include "workers/plan.h"
#include "workers/txn.h"

static const char msg_id[] = "msg_k3v7abcdefgh2345";

static void test_return_domain(void **state)
{
    (void)state;
    pmx_buf_t b = PMX_BUF_INIT;
    pmx_verp_return_domain(&b, "acme.example", NULL);
    assert_string_equal(pmx_buf_cstr(&b), "bounces.acme.example");
    pmx_buf_reset(&b);
    pmx_verp_return_domain(&b, "acme.example", "");
    assert_string_equal(pmx_buf_cstr(&b), "bounces.acme.example");
    pmx_buf_reset(&b);
    pmx_verp_return_domain(&b, "acme.example", "rp.acme.example");
    assert_string_equal(pmx_buf_cstr(&b), "rp.acme.example");
    pmx_buf_free(&b);
}

static void test_return_path_check(void **state)
{
    (void)state;
    char err[300];
    assert_int_equal(pmx_verp_return_path_check("acme.example", "rp.acme.example", err, sizeof err), 0);
    assert_int_equal(pmx_verp_return_path_check("acme.example", "a.b-c.acme.example", err, sizeof err), 0);
    const char *bad[] = { "acme.example", "acme.example.org", "xacme.example", ".acme.example",
                          "-a.acme.example", "a-.acme.example", "a..acme.example", "A.acme.example",
                          "a_b.acme.example", "example", "", "a.acme.example." };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(pmx_verp_return_path_check("acme.example", bad[i], err, sizeof err), -1);
        assert_non_null(strstr(err, "--return-path"));
    }
    char longname[300];
    memset(longname, 'a', 250);
    snprintf(longname + 240, sizeof longname - 240, ".acme.example");
    assert_int_equal(pmx_verp_return_path_check("acme.example", longname, err, sizeof err), -1);
}

static void test_list_unsubscribe(void **state)
{
    (void)state;
    pmx_buf_t b = PMX_BUF_INIT;
    assert_true(pmx_verp_list_unsubscribe(&b, "https://mail.example.com", "bounces.acme.example", "tok"));
    assert_string_equal(pmx_buf_cstr(&b),
                        "<https://mail.example.com/u/tok>, <mailto:u-tok@bounces.acme.example>");
    pmx_buf_reset(&b);
    assert_true(pmx_verp_list_unsubscribe(&b, "https://mail.example.com/pm/", NULL, "tok"));
    assert_string_equal(pmx_buf_cstr(&b), "<https://mail.example.com/pm/u/tok>");
    pmx_buf_reset(&b);
    assert_false(pmx_verp_list_unsubscribe(&b, "", "rp.acme.example", "tok"));
    assert_string_equal(pmx_buf_cstr(&b), "<mailto:u-tok@rp.acme.example>");
    pmx_buf_free(&b);

    assert_null(pmx_verp_unsubscribe_unavailable("https://x.example", ""));
    assert_null(pmx_verp_unsubscribe_unavailable("", "0.0.0.0:25"));
    const char *why = pmx_verp_unsubscribe_unavailable("", "");
    assert_non_null(why);
    assert_non_null(strstr(why, "unsubscribe: "));
    assert_non_null(strstr(why, "public_url"));
}

/* ---- transactions ---- */

typedef struct {
    pmx_job_t          job;
    pmx_plan_t         plan;
    pmx_dkim_signer_t *signer;
    pmx_dkim_key_t     key;
    uint8_t            ref_key[PMX_REF_KEY_LEN];
} fixture_t;

static int setup(void **state)
{
    static fixture_t f;
    memset(&f, 0, sizeof f);
    pmx_job_field_t fields[] = {
        { "from", 4, "news@acme.example", 17 },
        { "to", 2, "a@x.example, b@x.example", 24 },
        { "cc", 2, "t@x.example", 11 },
        { "subject", 7, "Hi", 2 },
        { "text", 4, "body", 4 },
    };
    char err[300];
    if (pmx_job_decode(fields, 5, 1 << 20, &f.job, err, sizeof err) != 0) return -1;
    /* Test mode: t@ is a tester (relayed), a@ and b@ go to the catch-all. */
    static const char *const testers[] = { "t@x.example" };
    pmx_plan_policy_t pol = { .test_mode = true, .catch_all = "catch@x.example",
                              .testers = testers, .ntesters = 1 };
    pmx_plan_make(&f.job, &pol, NULL, &f.plan);
    f.signer = pmx_dkim_signer_new();
    pmx_dkim_keypair_t kp;
    pmx_dkim_keypair_init(&kp);
    if (!f.signer || pmx_dkim_keygen_ed25519(&kp, err, sizeof err) != 0 ||
        pmx_dkim_key_init(&f.key, "acme.example", "s1", PMX_DKIM_ALG_ED25519, kp.pem.data,
                          kp.pem.len, err, sizeof err) != 0)
        return -1;
    pmx_dkim_keypair_free(&kp);
    uint8_t master[32];
    memset(master, 3, sizeof master);
    pmx_ref_key_derive(master, sizeof master, f.ref_key);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    pmx_plan_free(&f->plan);
    pmx_job_free(&f->job);
    pmx_dkim_key_free(&f->key);
    pmx_dkim_signer_free(f->signer);
    return 0;
}

static const char message[] = "From: news@acme.example\r\nTo: a@x.example\r\nSubject: Hi\r\n"
                              "Message-ID: <m@acme.example>\r\n\r\nbody\r\n";

static pmx_txn_opts_t opts(fixture_t *f, bool verp, bool unsub)
{
    return (pmx_txn_opts_t){ .msg_id = msg_id, .ref_key = f->ref_key, .verp = verp,
                             .return_domain = "bounces.acme.example", .unsubscribe = unsub,
                             .public_url = "https://mail.example.com", .mailto = true,
                             .signer = f->signer, .keys = &f->key, .nkeys = 1 };
}

/* The h= tag of the first DKIM-Signature in s, unfolded, lower-case. */
static void h_tag(const char *s, char *out, size_t cap)
{
    const char *h = s;
    while ((h = strstr(h, "h=")) && h > s && h[-1] != ';' && h[-1] != ' ' && h[-1] != '\t') h++;
    size_t k = 0;
    for (; h && *h && *h != ';' && k + 1 < cap; h++)
        if (*h != ' ' && *h != '\t' && *h != '\r' && *h != '\n')
            out[k++] = (char)((*h >= 'A' && *h <= 'Z') ? *h + 32 : *h);
    out[k] = '\0';
}

/* Whether the h= list tags ("h=a:b:c") names field (lower-case) exactly. */
static bool lists(const char *tags, const char *field)
{
    size_t n = strlen(field);
    for (const char *p = tags + 2; p && *p; p = strchr(p, ':') ? strchr(p, ':') + 1 : NULL)
        if (strncmp(p, field, n) == 0 && (p[n] == ':' || p[n] == '\0')) return true;
    return false;
}

static void test_layout(void **state)
{
    fixture_t *f = *state;
    /* Plan: a@ (redirect), b@ (redirect), t@ (relay). */
    assert_int_equal(f->plan.nr, 3);
    pmx_txns_t t;
    pmx_txns_layout(&t, &f->plan, false);
    assert_int_equal(t.n, 2);
    assert_int_equal(t.v[0].delivery, 0);
    assert_int_equal(t.v[0].n, 1);
    assert_int_equal(t.v[1].delivery, 1);
    assert_int_equal(t.of[0], 1);
    assert_int_equal(t.of[1], 1);
    assert_int_equal(t.of[2], 0);
    pmx_txns_free(&t);

    pmx_txns_layout(&t, &f->plan, true);
    assert_int_equal(t.n, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(t.of[i], i);
        assert_int_equal(t.slot[i], 0);
        assert_int_equal(t.v[i].rcpt, i);
        assert_int_equal(t.v[i].n, 1);
    }
    assert_string_equal(t.v[0].rcpts[0], "catch@x.example");
    assert_string_equal(t.v[2].rcpts[0], "t@x.example");
    pmx_txns_free(&t);
}

static void test_one_transaction_without_verp(void **state)
{
    fixture_t *f = *state;
    pmx_txns_t t;
    pmx_txn_opts_t o = opts(f, false, false);
    pmx_buf_t shared = PMX_BUF_INIT;
    char err[300];
    pmx_txns_layout(&t, &f->plan, pmx_txn_per_recipient(&o));
    assert_int_equal(pmx_txns_prepare(&t, &f->plan, &o, message, strlen(message), &shared, err,
                                      sizeof err), 0);
    assert_int_equal(t.n, 2);
    assert_null(t.v[0].mail_from);
    assert_int_equal(t.v[0].head.len, 0);
    /* The catch-all copy names both original recipients. */
    assert_string_equal(pmx_buf_cstr(&t.v[1].head),
                        "X-Original-To: a@x.example\r\nX-Original-To: b@x.example\r\n");
    assert_int_equal(strncmp(shared.data, "DKIM-Signature:", 15), 0);
    assert_null(strstr(pmx_buf_cstr(&shared), "X-Postmux-Ref"));
    pmx_txns_free(&t);
    pmx_buf_free(&shared);
}

static void test_verp(void **state)
{
    fixture_t *f = *state;
    pmx_txns_t t;
    pmx_txn_opts_t o = opts(f, true, false);
    pmx_buf_t shared = PMX_BUF_INIT;
    char err[300];
    pmx_txns_layout(&t, &f->plan, pmx_txn_per_recipient(&o));
    assert_int_equal(pmx_txns_prepare(&t, &f->plan, &o, message, strlen(message), &shared, err,
                                      sizeof err), 0);
    assert_int_equal(t.n, 3);
    /* Signed once, shared: the signature is the same for every recipient. */
    assert_int_equal(strncmp(shared.data, "DKIM-Signature:", 15), 0);
    for (size_t i = 0; i < 3; i++) {
        const pmx_txn_t *x = &t.v[i];
        char tok[PMX_REF_TOKEN_LEN + 1], want[128], id[PMX_REF_MSG_ID_LEN + 1];
        assert_int_equal(pmx_ref_token_make(f->ref_key, PMX_REF_BOUNCE, msg_id, (unsigned)i, tok), 0);
        snprintf(want, sizeof want, "b-%s@bounces.acme.example", tok);
        assert_string_equal(x->mail_from, want);
        snprintf(want, sizeof want, "X-Postmux-Ref: %s\r\n", tok);
        assert_int_equal(strncmp(pmx_buf_cstr(&x->head), want, strlen(want)), 0);
        unsigned idx = 99;
        assert_int_equal(pmx_ref_token_check(f->ref_key, PMX_REF_BOUNCE, tok, strlen(tok), id, &idx), 0);
        assert_int_equal(idx, i);
        /* Redirected: the token names the original recipient, X-Original-To says who. */
        if (i < 2) {
            snprintf(want, sizeof want, "X-Original-To: %s\r\n", f->plan.r[i].addr);
            assert_non_null(strstr(pmx_buf_cstr(&x->head), want));
        } else {
            assert_null(strstr(pmx_buf_cstr(&x->head), "X-Original-To"));
        }
        assert_null(strstr(pmx_buf_cstr(&x->head), "List-Unsubscribe"));
    }
    pmx_txns_free(&t);
    pmx_buf_free(&shared);
}

static void test_unsubscribe(void **state)
{
    fixture_t *f = *state;
    pmx_txns_t t;
    pmx_txn_opts_t o = opts(f, true, true);
    pmx_buf_t shared = PMX_BUF_INIT;
    char err[300];
    pmx_txns_layout(&t, &f->plan, pmx_txn_per_recipient(&o));
    assert_int_equal(pmx_txns_prepare(&t, &f->plan, &o, message, strlen(message), &shared, err,
                                      sizeof err), 0);
    /* Each transaction is signed on its own: the shared part is the bare message. */
    assert_string_equal(pmx_buf_cstr(&shared), message);
    char prev_sig[200] = "";
    for (size_t i = 0; i < 3; i++) {
        const char *h = pmx_buf_cstr(&t.v[i].head);
        char tok[PMX_REF_TOKEN_LEN + 1], want[200];
        assert_int_equal(pmx_ref_token_make(f->ref_key, PMX_REF_UNSUBSCRIBE, msg_id, (unsigned)i, tok), 0);
        snprintf(want, sizeof want, "List-Unsubscribe: <https://mail.example.com/u/%s>,", tok);
        assert_non_null(strstr(h, want));
        snprintf(want, sizeof want, "<mailto:u-%s@bounces.acme.example>", tok);
        assert_non_null(strstr(h, want));
        assert_non_null(strstr(h, "\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"));
        /* X-Postmux-Ref first, outside the signature; the signature lists both new fields. */
        assert_int_equal(strncmp(h, "X-Postmux-Ref: ", 15), 0);
        const char *sig = strstr(h, "DKIM-Signature:");
        assert_non_null(sig);
        assert_true(sig < strstr(h, "List-Unsubscribe:"));
        char tags[400];
        h_tag(sig, tags, sizeof tags);
        assert_int_equal(strncmp(tags, "h=", 2), 0);
        assert_true(lists(tags, "list-unsubscribe"));
        assert_true(lists(tags, "list-unsubscribe-post"));
        assert_true(lists(tags, "from"));
        assert_false(lists(tags, "x-postmux-ref"));
        assert_false(lists(tags, "x-original-to"));
        /* Per recipient: the b= differs from the previous recipient's. */
        const char *bv = sig;
        while ((bv = strstr(bv, "b=")) && bv[-1] != ';' && bv[-1] != ' ' && bv[-1] != '\t') bv++;
        assert_non_null(bv);
        assert_string_not_equal(prev_sig, bv);
        snprintf(prev_sig, sizeof prev_sig, "%.60s", bv);
    }
    pmx_txns_free(&t);
    pmx_buf_free(&shared);

    /* No public_url: a mailto link only, and no one-click Post field. */
    o.public_url = "";
    o.verp = false;
    pmx_txns_layout(&t, &f->plan, pmx_txn_per_recipient(&o));
    assert_int_equal(t.n, 3);
    assert_int_equal(pmx_txns_prepare(&t, &f->plan, &o, message, strlen(message), &shared, err,
                                      sizeof err), 0);
    assert_null(t.v[2].mail_from);
    assert_null(strstr(pmx_buf_cstr(&t.v[2].head), "X-Postmux-Ref"));
    assert_non_null(strstr(pmx_buf_cstr(&t.v[2].head), "List-Unsubscribe: <mailto:u-"));
    assert_null(strstr(pmx_buf_cstr(&t.v[2].head), "List-Unsubscribe-Post"));
    pmx_txns_free(&t);
    pmx_buf_free(&shared);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_return_domain),
        cmocka_unit_test(test_return_path_check),
        cmocka_unit_test(test_list_unsubscribe),
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_one_transaction_without_verp),
        cmocka_unit_test(test_verp),
        cmocka_unit_test(test_unsubscribe),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
