/*
 * workers/settings.c without Postgres: loader results are built with libpq's
 * PQmakeEmptyPGresult/PQsetvalue and applied with pmx__settings_apply. Checks
 * the lookups (workspace fields, testers, From matching incl. subdomains and
 * other workspaces' subtrees), the key cache (decrypted once, a blob-less
 * row reuses it, a key sealed under another master key is unusable), that
 * an unchanged load swaps nothing, that a failed load keeps the old state,
 * and that a referenced snapshot outlives a swap.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libpq-fe.h>
#include <uv.h>

#include "dkim/keycrypt.h"
#include "dkim/keygen.h"
#include "lib/buf.h"
#include "lib/encode.h"
#include "sql/q_settings.h"
#include "workers/settings.h"

#define NCOLS 11

typedef struct {
    const char *v[NCOLS];   /* NULL = SQL NULL */
} row_t;

static PGresult *make_result(const row_t *rows, size_t n)
{
    PGresult *r = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    PGresAttDesc attrs[NCOLS];
    memset(attrs, 0, sizeof attrs);
    static char names[NCOLS][16];
    for (int c = 0; c < NCOLS; c++) {
        snprintf(names[c], sizeof names[c], "c%d", c);
        attrs[c].name = names[c];
        attrs[c].typid = 25;   /* text */
        attrs[c].typlen = -1;
        attrs[c].atttypmod = -1;
    }
    assert_true(PQsetResultAttrs(r, NCOLS, attrs));
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < NCOLS; c++) {
            const char *v = rows[i].v[c];
            assert_true(PQsetvalue(r, (int)i, c, (char *)v, v ? (int)strlen(v) : -1));
        }
    return r;
}

static void master_key(uint8_t k[PMX_DKIM_MASTER_KEY_LEN], uint8_t seed)
{
    for (int i = 0; i < PMX_DKIM_MASTER_KEY_LEN; i++) k[i] = (uint8_t)(seed + i * 11);
}

/* A fresh Ed25519 key sealed for domain/selector, as hex (what encode(..,'hex') gives). */
static char *sealed_key_hex(const uint8_t *master, const char *domain, const char *selector)
{
    pmx_dkim_keypair_t kp;
    char err[200];
    pmx_dkim_keypair_init(&kp);
    assert_int_equal(pmx_dkim_keygen_ed25519(&kp, err, sizeof err), 0);
    pmx_buf_t aad = PMX_BUF_INIT, blob = PMX_BUF_INIT, hex = PMX_BUF_INIT;
    pmx_dkim_key_aad(&aad, domain, selector);
    assert_int_equal(pmx_dkim_key_seal(master, aad.data, (const uint8_t *)kp.pem.data, kp.pem.len,
                                       &blob), 0);
    pmx_hex_encode(&hex, (const uint8_t *)blob.data, blob.len);
    pmx_buf_free(&aad);
    pmx_buf_free(&blob);
    pmx_dkim_keypair_free(&kp);
    return pmx_buf_detach(&hex);
}

#define WS_A "ws_aaaaaaaaaaaaaaaa"
#define WS_B "ws_bbbbbbbbbbbbbbbb"

typedef struct {
    uv_loop_t       loop;
    pmx_settings_t *s;
    uint8_t         master[PMX_DKIM_MASTER_KEY_LEN];
    char           *key_a, *key_bad, *key_b;
    int             changed;
} fx_t;

static void on_changed(pmx_settings_t *s, void *arg)
{
    (void)s;
    ((fx_t *)arg)->changed++;
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    uv_loop_init(&f->loop);
    master_key(f->master, 1);
    uint8_t other[PMX_DKIM_MASTER_KEY_LEN];
    master_key(other, 99);
    f->key_a = sealed_key_hex(f->master, "a.test", "s1");
    f->key_bad = sealed_key_hex(other, "a.test", "s2");
    f->key_b = sealed_key_hex(f->master, "sub.a.test", "k1");
    f->s = pmx_settings_new(&f->loop, NULL, f->master);
    pmx_settings_set_changed_cb(f->s, on_changed, f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    pmx_settings_free(f->s);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f->key_a);
    free(f->key_bad);
    free(f->key_b);
    free(f);
    return 0;
}

/* The standard rows; blobs given or NULL (as the loader sends for cached keys). */
static PGresult *standard(fx_t *f, bool blobs, const char *burst_a)
{
    row_t rows[] = {
        { { "w", WS_A, "Acme", "false", "true", "Catch@a.test", "12.5", burst_a, "1000" } },
        { { "w", WS_B, "Beta", "true", "false", NULL, NULL, "10", NULL, "1234" } },
        { { "t", WS_A, "boss@a.test" } },
        { { "t", WS_A, "alice@a.test" } },
        { { "d", WS_A, "a.test", "true", "1" } },
        { { "d", WS_A, "pending.a.test", "false", "2" } },
        { { "d", WS_A, "other.test", "false", "4" } },
        { { "d", WS_B, "sub.a.test", "true", "3" } },
        { { "k", WS_A, "1", "s1", "ed25519-sha256", "10", "1700000000000001", blobs ? f->key_a : NULL } },
        { { "k", WS_A, "1", "s2", "ed25519-sha256", "11", "1700000000000002", blobs ? f->key_bad : NULL } },
        { { "k", WS_B, "3", "k1", "ed25519-sha256", "12", "1700000000000003", blobs ? f->key_b : NULL } },
    };
    return make_result(rows, sizeof rows / sizeof *rows);
}

static void test_load_and_lookups(void **state)
{
    fx_t *f = *state;
    assert_false(pmx_settings_ready(f->s));
    assert_null(pmx_settings_lookup(f->s, WS_A));
    PGresult *r = standard(f, true, "10");
    assert_int_equal(pmx__settings_apply(f->s, r), 0);
    PQclear(r);
    assert_true(pmx_settings_ready(f->s));
    assert_int_equal(f->changed, 1);

    const pmx_settings_ws_t *a = pmx_settings_lookup(f->s, WS_A);
    assert_non_null(a);
    assert_string_equal(a->name, "Acme");
    assert_false(a->suspended);
    assert_true(a->test_mode);
    assert_string_equal(a->catch_all, "Catch@a.test");
    assert_true(a->rate_per_second > 12.49 && a->rate_per_second < 12.51);
    assert_int_equal(a->burst, 10);
    assert_int_equal(a->daily_quota, 1000);
    assert_int_equal(a->ntesters, 2);
    assert_string_equal(a->testers[0], "alice@a.test");   /* sorted */
    const pmx_settings_ws_t *b = pmx_settings_lookup(f->s, WS_B);
    assert_true(b->suspended);
    assert_true(b->suspended_known);
    assert_int_equal(b->suspended_for_ms, 1234);
    assert_false(a->suspended_known);
    assert_null(b->catch_all);
    assert_true(b->rate_per_second == 0.0);
    assert_int_equal(b->daily_quota, 0);
    assert_null(pmx_settings_lookup(f->s, "ws_cccccccccccccccc"));

    assert_int_equal(pmx_settings_count(f->s), 2);
    assert_string_equal(pmx_settings_at(f->s, 0)->id, WS_A);
    const char *ids[4];
    assert_int_equal(pmx_settings_ids(f->s, false, ids, 4), 1);
    assert_string_equal(ids[0], WS_A);
    assert_int_equal(pmx_settings_ids(f->s, true, ids, 4), 2);
    assert_int_equal(pmx_settings_ids(f->s, true, ids, 1), 2);   /* count beyond max */

    assert_true(pmx_settings_is_tester(a, "BOSS@A.test"));
    assert_false(pmx_settings_is_tester(a, "boss@a.tes"));
    assert_false(pmx_settings_is_tester(b, "boss@a.test"));

    pmx_settings_stats_t st;
    pmx_settings_stats(f->s, &st);
    assert_int_equal(st.keys_opened, 2);
    assert_int_equal(st.keys_failed, 1);
}

static void test_domain_for(void **state)
{
    fx_t *f = *state;
    PGresult *r = standard(f, true, "10");
    assert_int_equal(pmx__settings_apply(f->s, r), 0);
    PQclear(r);
    const pmx_settings_ws_t *a = pmx_settings_lookup(f->s, WS_A), *b = pmx_settings_lookup(f->s, WS_B);
    const pmx_settings_domain_t *d;

    assert_int_equal(pmx_settings_domain_for(a, "a.test", &d), PMX_SETTINGS_DOMAIN_OK);
    assert_string_equal(d->name, "a.test");
    assert_int_equal(d->nkeys, 1);              /* s2 was sealed under another master key */
    assert_int_equal(d->nkeys_failed, 1);
    assert_string_equal(d->keys[0].selector, "s1");
    assert_string_equal(d->keys[0].domain, "a.test");
    assert_int_equal(pmx_settings_domain_for(a, "News.A.Test", &d), PMX_SETTINGS_DOMAIN_OK);
    assert_string_equal(d->name, "a.test");    /* d= is the verified parent */
    /* An unverified subdomain of a verified one is still under the verified parent. */
    assert_int_equal(pmx_settings_domain_for(a, "pending.a.test", &d), PMX_SETTINGS_DOMAIN_OK);
    assert_string_equal(d->name, "a.test");
    assert_int_equal(pmx_settings_domain_for(a, "other.test", &d), PMX_SETTINGS_DOMAIN_UNVERIFIED);
    assert_string_equal(d->name, "other.test");
    assert_int_equal(pmx_settings_domain_for(a, "x.other.test", &d), PMX_SETTINGS_DOMAIN_UNVERIFIED);
    /* B verified sub.a.test: that subtree is B's, even though A has a.test. */
    assert_int_equal(pmx_settings_domain_for(a, "sub.a.test", &d), PMX_SETTINGS_DOMAIN_NONE);
    assert_null(d);
    assert_int_equal(pmx_settings_domain_for(a, "x.sub.a.test", &d), PMX_SETTINGS_DOMAIN_NONE);
    assert_int_equal(pmx_settings_domain_for(b, "x.sub.a.test", &d), PMX_SETTINGS_DOMAIN_OK);
    assert_string_equal(d->name, "sub.a.test");
    assert_int_equal(pmx_settings_domain_for(b, "a.test", &d), PMX_SETTINGS_DOMAIN_NONE);
    assert_int_equal(pmx_settings_domain_for(a, "test", &d), PMX_SETTINGS_DOMAIN_NONE);
    assert_int_equal(pmx_settings_domain_for(a, "nope.example", NULL), PMX_SETTINGS_DOMAIN_NONE);
    assert_int_equal(pmx_settings_domain_for(a, "", NULL), PMX_SETTINGS_DOMAIN_NONE);
    assert_int_equal(pmx_settings_domain_for(NULL, "a.test", NULL), PMX_SETTINGS_DOMAIN_NONE);
}

static void test_no_usable_key(void **state)
{
    fx_t *f = *state;
    row_t rows[] = {
        { { "w", WS_A, "Acme", "false", "false", NULL, NULL, "10", NULL } },
        { { "d", WS_A, "a.test", "true", "1" } },
        { { "k", WS_A, "1", "s2", "ed25519-sha256", "11", "1700000000000002", f->key_bad } },
    };
    PGresult *r = make_result(rows, 3);
    assert_int_equal(pmx__settings_apply(f->s, r), 0);
    PQclear(r);
    const pmx_settings_domain_t *d;
    assert_int_equal(pmx_settings_domain_for(pmx_settings_lookup(f->s, WS_A), "a.test", &d),
                     PMX_SETTINGS_DOMAIN_NO_KEY);
    assert_int_equal(d->nkeys, 0);
    assert_int_equal(d->nkeys_failed, 1);
}

static void test_cache_and_swaps(void **state)
{
    fx_t *f = *state;
    PGresult *r = standard(f, true, "10");
    assert_int_equal(pmx__settings_apply(f->s, r), 0);
    PQclear(r);
    const pmx_settings_ws_t *old = pmx_settings_lookup(f->s, WS_A);
    pmx_settings_ws_ref(old);

    /* Same rows, cached keys without blobs: nothing changes, nobody is called. */
    r = standard(f, false, "10");
    assert_int_equal(pmx__settings_apply(f->s, r), 0);
    PQclear(r);
    pmx_settings_stats_t st;
    pmx_settings_stats(f->s, &st);
    assert_int_equal(st.loads, 2);
    assert_int_equal(st.swaps, 1);
    assert_int_equal(f->changed, 1);
    assert_ptr_equal(pmx_settings_lookup(f->s, WS_A), old);

    /* A change: swapped, keys reused from the cache (not decrypted again). */
    r = standard(f, false, "20");
    assert_int_equal(pmx__settings_apply(f->s, r), 0);
    PQclear(r);
    pmx_settings_stats(f->s, &st);
    assert_int_equal(st.swaps, 2);
    assert_int_equal(st.keys_opened, 2);
    assert_int_equal(st.keys_failed, 1);
    assert_int_equal(f->changed, 2);
    const pmx_settings_ws_t *now = pmx_settings_lookup(f->s, WS_A);
    assert_int_equal(now->burst, 20);
    const pmx_settings_domain_t *d;
    assert_int_equal(pmx_settings_domain_for(now, "a.test", &d), PMX_SETTINGS_DOMAIN_OK);
    assert_int_equal(d->nkeys, 1);
    /* The referenced old snapshot is intact, keys included. */
    assert_int_equal(old->burst, 10);
    assert_string_equal(old->name, "Acme");
    assert_int_equal(pmx_settings_domain_for(old, "a.test", &d), PMX_SETTINGS_DOMAIN_OK);
    assert_non_null(d->keys[0].pkey);
    pmx_settings_ws_unref(old);

    /* A key row without its blob that the cache does not hold (other created_at):
     * the load fails and the current state stays. */
    row_t rows[] = {
        { { "w", WS_A, "Acme", "false", "false", NULL, NULL, "30", NULL } },
        { { "d", WS_A, "a.test", "true", "1" } },
        { { "k", WS_A, "1", "s1", "ed25519-sha256", "10", "1800000000000000", NULL } },
    };
    r = make_result(rows, 3);
    assert_int_equal(pmx__settings_apply(f->s, r), -1);
    PQclear(r);
    assert_int_equal(pmx_settings_lookup(f->s, WS_A)->burst, 20);
    pmx_settings_stats(f->s, &st);
    assert_int_equal(st.load_failures, 1);

    /* A key that is gone from the rows leaves the cache: a later row with its id
     * but no blob is refused, not served stale. */
    row_t nokeys[] = {
        { { "w", WS_A, "Acme", "false", "false", NULL, NULL, "40", NULL } },
        { { "d", WS_A, "a.test", "true", "1" } },
    };
    r = make_result(nokeys, 2);
    assert_int_equal(pmx__settings_apply(f->s, r), 0);
    PQclear(r);
    assert_int_equal(pmx_settings_domain_for(pmx_settings_lookup(f->s, WS_A), "a.test", &d),
                     PMX_SETTINGS_DOMAIN_NO_KEY);
    assert_null(pmx_settings_lookup(f->s, WS_B));
    row_t again[] = {
        { { "w", WS_A, "Acme", "false", "false", NULL, NULL, "40", NULL } },
        { { "d", WS_A, "a.test", "true", "1" } },
        { { "k", WS_A, "1", "s1", "ed25519-sha256", "10", "1700000000000001", NULL } },
    };
    r = make_result(again, 3);
    assert_int_equal(pmx__settings_apply(f->s, r), -1);
    PQclear(r);
}

static void test_bad_results_keep_state(void **state)
{
    fx_t *f = *state;
    PGresult *r = standard(f, true, "10");
    assert_int_equal(pmx__settings_apply(f->s, r), 0);
    PQclear(r);

    PGresult *e = PQmakeEmptyPGresult(NULL, PGRES_FATAL_ERROR);
    assert_int_equal(pmx__settings_apply(f->s, e), -1);
    PQclear(e);

    row_t unknown[] = { { { "x", WS_A } } };
    r = make_result(unknown, 1);
    assert_int_equal(pmx__settings_apply(f->s, r), -1);
    PQclear(r);

    row_t badbool[] = { { { "w", WS_A, "Acme", "maybe", "false", NULL, NULL, "10", NULL } } };
    r = make_result(badbool, 1);
    assert_int_equal(pmx__settings_apply(f->s, r), -1);
    PQclear(r);

    row_t badtime[] = { { { "w", WS_A, "Acme", "true", "false", NULL, NULL, "10", NULL, "soon" } } };
    r = make_result(badtime, 1);
    assert_int_equal(pmx__settings_apply(f->s, r), -1);
    PQclear(r);

    row_t dup[] = {
        { { "w", WS_A, "Acme", "false", "false", NULL, NULL, "10", NULL } },
        { { "w", WS_A, "Acme", "false", "false", NULL, NULL, "10", NULL } },
    };
    r = make_result(dup, 2);
    assert_int_equal(pmx__settings_apply(f->s, r), -1);
    PQclear(r);

    assert_string_equal(pmx_settings_lookup(f->s, WS_A)->name, "Acme");
    assert_int_equal(pmx_settings_count(f->s), 2);
    pmx_settings_stats_t st;
    pmx_settings_stats(f->s, &st);
    assert_int_equal(st.swaps, 1);
    assert_int_equal(st.load_failures, 5);
    assert_int_equal(f->changed, 1);
}

static void test_sql_mentions_every_table(void **state)
{
    (void)state;
    const char *sql = pmx_db_settings_load_sql();
    assert_non_null(strstr(sql, "FROM workspaces"));
    assert_non_null(strstr(sql, "FROM workspace_testers"));
    assert_non_null(strstr(sql, "FROM domains"));
    assert_non_null(strstr(sql, "FROM dkim_keys"));
    assert_non_null(strstr(sql, "WHERE k.active"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_load_and_lookups, setup, teardown),
        cmocka_unit_test_setup_teardown(test_domain_for, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_usable_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_and_swaps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_results_keep_state, setup, teardown),
        cmocka_unit_test(test_sql_mentions_every_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
