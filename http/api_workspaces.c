/*
 * API v1's /v1/workspaces (docs/http.md): list and create (organization key;
 * a workspace key lists only its own and cannot create), show and change one
 * (a workspace key only its own: another is 404). PATCH takes the settings of
 * `postmux workspace set` as JSON members and checks and writes them with the
 * same code (sql/q_workspace.h): all of them or none, with one audit_log row.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/api_call.h"
#include "lib/encode.h"
#include "lib/mem.h"
#include "sql/q_workspace.h"

static void ws_rows(pmx_api_call_t *c, const PGresult *res)
{
    json_t *a = json_array();
    for (int r = 0; r < PQntuples(res); r++) json_array_append_new(a, pmx_ws_json(res, r, false));
    pmx_api_call_json(c, 200, json_pack("{s:o}", "workspaces", a));
}

void pmx_api_list_workspaces(pmx_api_call_t *c)
{
    pmx_buf_t sql = PMX_BUF_INIT;
    pmx_buf_appendf(&sql, "%s WHERE $1::text IS NULL OR w.id = $1 ORDER BY w.name",
                    pmx_sql_ws_select);
    const char *vals[1] = { c->key_ws[0] ? c->key_ws : NULL };
    pmx_api_call_query(c, pmx_buf_cstr(&sql), 1, vals, ws_rows);
    pmx_buf_free(&sql);
}

static void ws_one(pmx_api_call_t *c, const PGresult *res)
{
    if (PQntuples(res) != 1) {
        pmx_api_call_problem(c, 404, "no such workspace", NULL);
        return;
    }
    /* c->text[0] = 'C': just created. */
    pmx_api_call_json(c, c->text[0] == 'C' ? 201 : 200, pmx_ws_json(res, 0, true));
}

static void show(pmx_api_call_t *c, const char *id)
{
    pmx_buf_t sql = PMX_BUF_INIT;
    pmx_buf_appendf(&sql, "%s WHERE w.id = $1", pmx_sql_ws_select);
    const char *vals[1] = { id };
    pmx_api_call_query(c, pmx_buf_cstr(&sql), 1, vals, ws_one);
    pmx_buf_free(&sql);
}

/* A workspace key sees only its own workspace; another's is "not found". */
static bool visible(pmx_api_call_t *c)
{
    if (!pmx_ws_looks_like_id(c->param) || (c->key_ws[0] && strcmp(c->key_ws, c->param) != 0)) {
        pmx_api_call_problem(c, 404, "no such workspace", NULL);
        return false;
    }
    return true;
}

void pmx_api_get_workspace(pmx_api_call_t *c)
{
    if (visible(c)) show(c, c->param);
}

static void ws_created(pmx_api_call_t *c, const PGresult *res)
{
    if (PQntuples(res) != 1) {
        pmx_api_call_problem(c, 409, "a workspace with that name exists already", "name");
        return;
    }
    snprintf(c->param, sizeof c->param, "%s", PQgetvalue(res, 0, 0));
    c->text[0] = 'C';
    show(c, c->param);
}

void pmx_api_create_workspace(pmx_api_call_t *c)
{
    if (c->key_ws[0]) {
        pmx_api_call_problem(c, 403, "creating a workspace needs an organization key", NULL);
        return;
    }
    bool bad;
    const char *name = pmx_api_call_str(c, "name", true, &bad);
    if (bad) return;
    const char *industry = pmx_api_call_str(c, "industry", false, &bad);
    if (bad) return;
    const char *website = pmx_api_call_str(c, "website", false, &bad);
    if (bad) return;
    const char *k;
    json_t *v;
    json_object_foreach(c->body, k, v) {
        if (strcmp(k, "name") && strcmp(k, "industry") && strcmp(k, "website")) {
            pmx_api_call_problem(c, 422, "unknown member (known: name, industry, website)", k);
            return;
        }
    }
    char err[400];
    if (pmx_ws_check_name(name, err, sizeof err) < 0) {
        pmx_api_call_problem(c, 422, err, "name");
        return;
    }
    if (industry && pmx_ws_check_text("industry", industry, PMX_WS_INDUSTRY_MAX_CHARS, err,
                                      sizeof err) < 0) {
        pmx_api_call_problem(c, 422, err, "industry");
        return;
    }
    if (website && pmx_ws_check_website("website", website, err, sizeof err) < 0) {
        pmx_api_call_problem(c, 422, err, "website");
        return;
    }
    char id[32];
    if (pmx_random_id("ws_", id, sizeof id) < 0) {
        pmx_api_call_problem(c, 500, "no random bytes from OpenSSL", NULL);
        return;
    }
    const char *vals[5] = { pmx_api_call_actor(c), id, name, industry, website };
    pmx_api_call_query(c, pmx_sql_ws_create, 5, vals, ws_created);
}

/* ---- PATCH ---- */

/* One member of the PATCH body, turned into the CLI's text form and checked. */
static int patch_member(pmx_ws_changes_t *ch, const char *k, json_t *v, char *tmp, size_t tmplen,
                        char *err, size_t n)
{
    if (strcmp(k, "name") == 0) {
        if (!json_is_string(v)) goto type_string;
        return pmx_ws_set_name(ch, json_string_value(v), err, n);
    }
    if (strcmp(k, "rate") == 0) {
        if (json_is_null(v)) return pmx_ws_set_rate(ch, k, "unlimited", err, n);
        if (!json_is_string(v)) goto type_string;
        return pmx_ws_set_rate(ch, k, json_string_value(v), err, n);
    }
    if (strcmp(k, "burst") == 0 || strcmp(k, "daily_quota") == 0) {
        bool quota = k[0] == 'd';
        if (quota && json_is_null(v)) return pmx_ws_set_quota(ch, k, "none", err, n);
        if (!json_is_integer(v)) {
            snprintf(err, n, "%s must be a whole number%s", k, quota ? " or null" : "");
            return -1;
        }
        snprintf(tmp, tmplen, "%lld", (long long)json_integer_value(v));
        return quota ? pmx_ws_set_quota(ch, k, tmp, err, n) : pmx_ws_set_burst(ch, k, tmp, err, n);
    }
    if (strcmp(k, "test_mode") == 0 || strcmp(k, "suspended") == 0) {
        if (!json_is_boolean(v)) {
            snprintf(err, n, "%s must be true or false", k);
            return -1;
        }
        if (k[0] == 's') {
            pmx_ws_set_suspended(ch, json_is_true(v));
            return 0;
        }
        return pmx_ws_set_test_mode(ch, k, json_is_true(v) ? "on" : "off", err, n);
    }
    if (strcmp(k, "catch_all") == 0) {
        if (json_is_null(v)) return pmx_ws_set_catch_all(ch, k, "none", err, n);
        if (!json_is_string(v) || strcmp(json_string_value(v), "none") == 0) goto type_string;
        return pmx_ws_set_catch_all(ch, k, json_string_value(v), err, n);
    }
    if (strcmp(k, "max_bounce_rate") == 0 || strcmp(k, "max_complaint_rate") == 0) {
        bool bounce = k[4] == 'b';
        if (json_is_null(v)) return pmx_ws_set_limit(ch, bounce, k, "default", err, n);
        if (json_is_number(v)) {
            double x = json_number_value(v);
            if (!isfinite(x) || x < 0 || x > 100) {
                snprintf(err, n, "%s must be a percentage from 0 to 100", k);
                return -1;
            }
            snprintf(tmp, tmplen, "%.6g%%", x);
            return pmx_ws_set_limit(ch, bounce, k, tmp, err, n);
        }
        if (!json_is_string(v)) goto type_string;
        return pmx_ws_set_limit(ch, bounce, k, json_string_value(v), err, n);
    }
    snprintf(err, n, "unknown member (known: name, rate, burst, daily_quota, test_mode, "
             "catch_all, suspended, max_bounce_rate, max_complaint_rate)");
    return -1;
type_string:
    snprintf(err, n, "%s must be a string%s", k,
             strcmp(k, "name") == 0 ? "" : " or null");
    return -1;
}

static void ws_patched(pmx_api_call_t *c, const PGresult *res)
{
    if (PQntuples(res) != 1) {
        pmx_api_call_problem(c, 404, "no such workspace", NULL);
        return;
    }
    show(c, c->param);
}

void pmx_api_patch_workspace(pmx_api_call_t *c)
{
    if (!visible(c)) return;
    pmx_ws_changes_t ch;
    memset(&ch, 0, sizeof ch);
    /* Numbers turned into text live here until the statement is sent. */
    char tmp[8][32], err[400];
    int ntmp = 0;
    const char *k;
    json_t *v;
    json_object_foreach(c->body, k, v) {
        if (ntmp == 8 || patch_member(&ch, k, v, tmp[ntmp++], sizeof tmp[0], err, sizeof err) < 0) {
            pmx_ws_changes_free(&ch);
            pmx_api_call_problem(c, 422, ntmp == 8 ? "too many members" : err, k);
            return;
        }
    }
    if (pmx_ws_changes_empty(&ch)) {
        pmx_api_call_problem(c, 422, "nothing to change", NULL);
        return;
    }
    const char *params[PMX_WS_MAX_PARAMS];
    pmx_buf_t sql = PMX_BUF_INIT;
    int np = pmx_ws_update_sql(&ch, pmx_api_call_actor(c), c->param, &sql, params);
    pmx_api_call_query(c, pmx_buf_cstr(&sql), np, params, ws_patched);
    pmx_buf_free(&sql);
    pmx_ws_changes_free(&ch);
}
