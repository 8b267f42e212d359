/*
 * API v1's /v1/workspaces (docs/http.md): list and create (organization key;
 * a workspace key lists only its own and cannot create), show and change one
 * (a workspace key only its own: another is 404). PATCH takes the settings of
 * `postmux workspace set` as JSON members and checks (http/api_input.h) and
 * writes them with the same code (sql/q_workspace.h): all of them or none,
 * with one audit_log row.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/api_call.h"
#include "http/api_input.h"
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
    pmx_api_ws_new_t w;
    pmx_api_bad_t bad;
    if (pmx_api_ws_create_body(c->body, &w, &bad) < 0) {
        pmx_api_call_problem(c, bad.status, bad.detail, bad.field);
        return;
    }
    char id[32];
    if (pmx_random_id("ws_", id, sizeof id) < 0) {
        pmx_api_call_problem(c, 500, "no random bytes from OpenSSL", NULL);
        return;
    }
    const char *vals[5] = { pmx_api_call_actor(c), id, w.name, w.industry, w.website };
    pmx_api_call_query(c, pmx_sql_ws_create, 5, vals, ws_created);
}

/* ---- PATCH ---- */

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
    pmx_api_bad_t bad;
    if (pmx_api_ws_patch_body(c->body, &ch, &bad) < 0) {
        pmx_api_call_problem(c, bad.status, bad.detail, bad.field);
        return;
    }
    const char *params[PMX_WS_MAX_PARAMS];
    pmx_buf_t sql = PMX_BUF_INIT;
    int np = pmx_ws_update_sql(&ch, pmx_api_call_actor(c), c->param, &sql, params);
    pmx_api_call_query(c, pmx_buf_cstr(&sql), np, params, ws_patched);
    pmx_buf_free(&sql);
    pmx_ws_changes_free(&ch);
}
