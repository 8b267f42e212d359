/*
 * workers/settings.c's routing rows ('r', sql/q_settings.h) without Postgres:
 * a workspace's pool and route reach the cache; the route password is
 * decrypted with the master key for that workspace and route only; a
 * password sealed for another workspace, a garbled blob, a user without a
 * password or an unparsable stored route become route_error (the worker
 * defers such mail, workers/routes.h) instead of failing the load; a new
 * password is a change (swap).
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

#include "lib/buf.h"
#include "lib/encode.h"
#include "routing/wsroute.h"
#include "sql/q_settings.h"
#include "workers/settings.h"

#define NCOLS PMX_DB_SETTINGS_NCOLS
#define WS_A "ws_aaaaaaaaaaaaaaaa"
#define WS_B "ws_bbbbbbbbbbbbbbbb"
#define WS_C "ws_cccccccccccccccc"

typedef struct {
    const char *v[NCOLS];
} row_t;

static PGresult *result_of(const row_t *rows, size_t n)
{
    PGresult *r = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    PGresAttDesc attrs[NCOLS];
    static char names[NCOLS][16];
    memset(attrs, 0, sizeof attrs);
    for (int c = 0; c < NCOLS; c++) {
        snprintf(names[c], sizeof names[c], "c%d", c);
        attrs[c] = (PGresAttDesc){ .name = names[c], .typid = 25, .typlen = -1, .atttypmod = -1 };
    }
    assert_true(PQsetResultAttrs(r, NCOLS, attrs));
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < NCOLS; c++)
            assert_true(PQsetvalue(r, (int)i, c, (char *)rows[i].v[c],
                                   rows[i].v[c] ? (int)strlen(rows[i].v[c]) : -1));
    return r;
}

/* The password sealed for ws's route, as encode(.., 'hex') gives it. */
static char *sealed(const uint8_t *master, const char *ws, const char *route, const char *pw)
{
    pmx_wsroute_t rt;
    char err[200];
    assert_int_equal(pmx_wsroute_parse(route, &rt, err, sizeof err), 0);
    pmx_buf_t blob = PMX_BUF_INIT, hex = PMX_BUF_INIT;
    assert_int_equal(pmx_wsroute_seal(master, ws, &rt, pw, strlen(pw), &blob), 0);
    pmx_hex_encode(&hex, (const uint8_t *)blob.data, blob.len);
    pmx_buf_free(&blob);
    return pmx_buf_detach(&hex);
}

#define W(id) { { "w", id, id, "false", "false", NULL, NULL, "10", NULL, NULL, "false" } }

static void test_routing_rows(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    uint8_t master[PMX_DKIM_MASTER_KEY_LEN];
    for (int i = 0; i < PMX_DKIM_MASTER_KEY_LEN; i++) master[i] = (uint8_t)(7 + i);
    const char *route = "smtp://alice@mail.example.com:587";
    char *pw_a = sealed(master, WS_A, route, "s3cret");
    char *pw_a2 = sealed(master, WS_A, route, "n3w");
    pmx_settings_t *s = pmx_settings_new(&loop, NULL, master);

    row_t rows[] = {
        W(WS_A), W(WS_B), W(WS_C),
        { { "r", WS_A, "blue", route, pw_a } },
        { { "r", WS_B, NULL, route, pw_a } },             /* A's blob copied to B */
        { { "r", WS_C, "green", "smtp://bob@h.test:25", NULL } },
    };
    PGresult *r = result_of(rows, 6);
    assert_int_equal(pmx__settings_apply(s, r), 0);
    PQclear(r);
    const pmx_settings_ws_t *a = pmx_settings_lookup(s, WS_A);
    assert_string_equal(a->pool, "blue");
    assert_non_null(a->route);
    assert_int_equal(a->route->kind, PMX_WSROUTE_SMTP);
    assert_string_equal(a->route->host, "mail.example.com");
    assert_string_equal(a->route->user, "alice");
    assert_string_equal(a->route_password, "s3cret");
    assert_null(a->route_error);
    const pmx_settings_ws_t *b = pmx_settings_lookup(s, WS_B);
    assert_null(b->pool);
    assert_null(b->route_password);
    assert_non_null(b->route_error);
    assert_non_null(strstr(b->route_error, "cannot be decrypted"));
    const pmx_settings_ws_t *c = pmx_settings_lookup(s, WS_C);
    assert_string_equal(c->pool, "green");
    assert_string_equal(c->route_error, "route names a user but has no password");
    uint64_t gen = pmx_settings_generation(s);

    /* A new password for A is a change; a bad stored route and a garbled blob do not
     * fail the load. A workspace without an 'r' row has the defaults. */
    row_t rows2[] = {
        W(WS_A), W(WS_B), W(WS_C),
        { { "r", WS_A, "blue", route, pw_a2 } },
        { { "r", WS_B, NULL, "smtp://u:p@x.test", NULL } },
        { { "r", WS_C, NULL, route, "zz" } },
    };
    r = result_of(rows2, 6);
    assert_int_equal(pmx__settings_apply(s, r), 0);
    PQclear(r);
    assert_int_equal(pmx_settings_generation(s), gen + 1);
    assert_string_equal(pmx_settings_lookup(s, WS_A)->route_password, "n3w");
    assert_non_null(strstr(pmx_settings_lookup(s, WS_B)->route_error, "stored route is unusable"));
    assert_null(pmx_settings_lookup(s, WS_B)->route);
    assert_non_null(strstr(pmx_settings_lookup(s, WS_C)->route_error, "cannot be decrypted"));

    row_t rows3[] = { W(WS_A), W(WS_B), W(WS_C), { { "r", WS_C, NULL, "mx", NULL } } };
    r = result_of(rows3, 4);
    assert_int_equal(pmx__settings_apply(s, r), 0);
    PQclear(r);
    a = pmx_settings_lookup(s, WS_A);
    assert_null(a->pool);
    assert_null(a->route);
    assert_null(a->route_password);
    assert_int_equal(pmx_settings_lookup(s, WS_C)->route->kind, PMX_WSROUTE_MX);
    assert_null(pmx_settings_lookup(s, WS_C)->route_error);

    pmx_settings_free(s);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    free(pw_a);
    free(pw_a2);
}

static void test_sql_reads_the_columns(void **state)
{
    (void)state;
    const char *sql = pmx_db_settings_load_sql();
    assert_non_null(strstr(sql, "SELECT 'r', w.id, w.pool, w.route, encode(w.route_password_enc, 'hex')"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routing_rows),
        cmocka_unit_test(test_sql_reads_the_columns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
