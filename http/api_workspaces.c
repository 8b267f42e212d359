/*
 * API v1's /v1/workspaces (docs/http.md): list and create (organization key;
 * a workspace key lists only its own and cannot create), show and change one
 * (a workspace key only its own: another is 404). PATCH takes the settings of
 * `postmux workspace set` as JSON members and checks (http/api_input.h) and
 * writes them with the same code (sql/q_workspace.h; pool and route:
 * routing/wsroute.h, against the config this worker runs with): all of them or
 * none, with one audit_log row. A route_password is sealed with the master
 * key for the route given with it, as the CLI's --route-password-file is; it
 * is never answered nor logged.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/api_call.h"
#include "http/api_input.h"
#include "lib/encode.h"
#include "lib/mem.h"
#include "routing/wsroute.h"
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
        pmx_api_call_refused(c, &bad);
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

/* The routing members (as given, http/api_input.h) and what their checks
 * make of them: the pool against the config; route and route_password
 * together once the whole body is read (the password is sealed for the route). */
typedef struct {
    pmx_api_ws_routing_t in;
    const char         *pool;         /* in.pool checked; NULL = default */
    char                canonical[PMX_WSROUTE_MAX + 1];
    char               *password_hex; /* sealed, bytea input */
} patch_routing_t;

/* pool (given): a configured [pool NAME], "default" or null. */
static int patch_pool(patch_routing_t *rt, const pmx_config_t *cfg, char *err, size_t n)
{
    if (json_is_null(rt->in.pool)) return 0;   /* default */
    const char *name = json_string_value(rt->in.pool);
    if (pmx_wsroute_pool_check(cfg, name, &rt->pool, err, n) < 0) {
        /* The check names the config file: the server's business, not the caller's. */
        if (pmx_config_pool_name_ok(name))
            snprintf(err, n, "pool: no [pool %s] in the daemon's configuration (expected "
                     "a configured pool or default)", name);
        return -1;
    }
    return 0;
}

/*
 * route and route_password, checked together as `workspace set --route R
 * --route-password-file F` checks them, the password sealed for workspace id's
 * new route. The API takes a password only with its route (the CLI can also
 * re-seal one for the stored route; the API needs no second statement so).
 * 0; -1 with the reason in err and the member in *field (*field NULL: the
 * sealing failed, a 500).
 */
static int patch_route(patch_routing_t *rt, const uint8_t *master, const char *id, char *err,
                       size_t n, const char **field)
{
    *field = "route_password";
    if (!rt->in.route) {
        if (!rt->in.password) return 0;
        snprintf(err, n, "route_password goes with route in the same request (it is sealed "
                 "for that route)");
        return -1;
    }
    *field = "route";
    pmx_wsroute_t parsed;
    const char *text = json_is_null(rt->in.route) ? "default" : json_string_value(rt->in.route);
    if (pmx_wsroute_parse(text, &parsed, err, n) < 0) {
        if (strstr(err, "no password in the URL"))
            snprintf(err, n, "route: no password in the URL (user:password); give it as "
                     "route_password");
        return -1;
    }
    if (pmx_wsroute_password_check(&parsed, rt->in.password != NULL, err, n) < 0) {
        if (rt->in.password) {
            *field = "route_password";
            snprintf(err, n, "route_password goes only with an smtp:// or smtps:// route that "
                     "names a user");
        } else {
            snprintf(err, n, "route: a route with a user needs its password (route_password)");
        }
        return -1;
    }
    if (parsed.kind != PMX_WSROUTE_DEFAULT)
        snprintf(rt->canonical, sizeof rt->canonical, "%s", parsed.canonical);
    if (!rt->in.password) return 0;
    *field = "route_password";
    const char *pw = json_string_value(rt->in.password);
    size_t len = json_string_length(rt->in.password);
    char why[200];
    if (pmx_wsroute_password_text_check(pw, len, why, sizeof why) < 0) {
        snprintf(err, n, "route_password: %s", why);
        return -1;
    }
    int sealed = pmx_wsroute_seal_bytea(master, id, &parsed, pw, len, &rt->password_hex);
    /* The clear text is not needed past here: not left in the freed body (as the CLI
     * wipes its copy). */
    pmx_wipe((char *)pw, len);
    if (sealed < 0) {
        *field = NULL;
        snprintf(err, n, "cannot encrypt the route password");
        return -1;
    }
    return 0;
}

static void ws_patched(pmx_api_call_t *c, const PGresult *res)
{
    if (PQntuples(res) != 1) {
        pmx_api_call_problem(c, 404, "no such workspace", NULL);
        return;
    }
    show(c, c->param);
}

/*
 * A workspace key (the client's) may change its workspace's name and its test
 * mode; the limits, the reputation guard's thresholds and pause, the pool and
 * the route are the organization's (the agency's) to set: a client must not
 * lift its own quota or pause, send from another client's addresses, or point
 * its mail at a host of its choosing (docs/http.md "Managing"). 0, or -1 with
 * the 403 answered.
 */
static int patch_allowed(pmx_api_call_t *c)
{
    if (!c->key_ws[0]) return 0;
    const char *k;
    json_t *v;
    json_object_foreach(c->body, k, v) {
        (void)v;
        if (pmx_api_ws_member_org_only(k)) {   /* an unknown member is the body check's 422 */
            char detail[160];
            snprintf(detail, sizeof detail, "%.40s is the organization's to set: use an "
                     "organization key (a workspace key may set name, test_mode and catch_all)", k);
            pmx_api_call_problem(c, 403, detail, k);
            return -1;
        }
    }
    return 0;
}

void pmx_api_patch_workspace(pmx_api_call_t *c)
{
    if (!visible(c) || patch_allowed(c) < 0) return;
    pmx_ws_changes_t ch;
    patch_routing_t rt;
    memset(&rt, 0, sizeof rt);
    pmx_api_bad_t bad;
    if (pmx_api_ws_patch_body(c->body, &ch, &rt.in, &bad) < 0) {
        pmx_api_call_refused(c, &bad);
        return;
    }
    char err[400];
    /* The routing members are checked after the others (the pool against the
     * config, the password sealed for its route): a bad one is named only when
     * every other member is good. */
    if (rt.in.pool && patch_pool(&rt, pmx__http_api_config(c->api), err, sizeof err) < 0) {
        pmx_ws_changes_free(&ch);
        pmx_api_call_problem(c, 422, err, "pool");
        return;
    }
    const char *field;
    if (patch_route(&rt, pmx__http_api_master(c->api), c->param, err, sizeof err, &field) < 0) {
        pmx_ws_changes_free(&ch);
        free(rt.password_hex);
        pmx_api_call_problem(c, field ? 422 : 500, err, field);
        return;
    }
    if (rt.in.pool || rt.in.route)
        /* A new route never keeps the old password (as the CLI). */
        pmx_ws_set_routing(&ch, rt.in.pool != NULL, rt.pool, rt.in.route != NULL,
                           rt.canonical[0] ? rt.canonical : NULL, rt.in.route != NULL,
                           rt.password_hex, NULL);
    const char *params[PMX_WS_MAX_PARAMS];
    pmx_buf_t sql = PMX_BUF_INIT;
    int np = pmx_ws_update_sql(&ch, pmx_api_call_actor(c), c->param, &sql, params);
    pmx_api_call_query(c, pmx_buf_cstr(&sql), np, params, ws_patched);
    pmx_buf_free(&sql);
    pmx_ws_changes_free(&ch);
    free(rt.password_hex);
}
