/*
 * API v1's read and manage endpoints: routing, scopes, the workspace a call
 * acts on, and Postgres statements on the worker's loop; see api_call.h.
 */
#include "http/api_call.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/api_input.h"
#include "lib/log.h"
#include "lib/mem.h"
#include "workers/worker.h"


/* Which workspace a route acts on. */
typedef enum {
    WS_REQUIRED,   /* a workspace: the key's, or an organization key's X-Workspace-Id */
    WS_OPTIONAL,   /* as WS_REQUIRED, but an organization key without the header acts on
                      the organization (organization keys, organization webhooks) */
    WS_NONE,       /* /v1/workspaces: the route looks at the key itself */
} ws_mode_t;

typedef struct {
    const char      *method;
    const char      *pattern;     /* "{}" stands for one non-empty segment */
    const char      *scope;
    ws_mode_t        ws;
    pmx_api_route_fn fn;
} route_t;

static const route_t routes[] = {
    { "GET",    "/v1/messages/{}",     "read",   WS_REQUIRED, pmx_api_get_message },
    { "GET",    "/v1/events",          "read",   WS_REQUIRED, pmx_api_get_events },
    { "GET",    "/v1/stats",           "read",   WS_REQUIRED, pmx_api_get_stats },
    { "GET",    "/v1/testers",         "read",   WS_REQUIRED, pmx_api_list_testers },
    { "POST",   "/v1/testers",         "manage", WS_REQUIRED, pmx_api_add_tester },
    { "DELETE", "/v1/testers/{}",      "manage", WS_REQUIRED, pmx_api_remove_tester },
    { "GET",    "/v1/suppressions",    "read",   WS_REQUIRED, pmx_api_list_suppressions },
    { "POST",   "/v1/suppressions",    "manage", WS_REQUIRED, pmx_api_add_suppression },
    { "DELETE", "/v1/suppressions/{}", "manage", WS_REQUIRED, pmx_api_remove_suppression },
    { "GET",    "/v1/api-keys",        "read",   WS_OPTIONAL, pmx_api_list_keys },
    { "POST",   "/v1/api-keys",        "manage", WS_OPTIONAL, pmx_api_create_key },
    { "DELETE", "/v1/api-keys/{}",     "manage", WS_OPTIONAL, pmx_api_revoke_key },
    { "GET",    "/v1/webhooks",        "read",   WS_OPTIONAL, pmx_api_list_webhooks },
    { "POST",   "/v1/webhooks",        "manage", WS_OPTIONAL, pmx_api_add_webhook },
    { "DELETE", "/v1/webhooks/{}",     "manage", WS_OPTIONAL, pmx_api_remove_webhook },
    { "GET",    "/v1/domains",         "read",   WS_REQUIRED, pmx_api_list_domains },
    { "POST",   "/v1/domains",         "manage", WS_REQUIRED, pmx_api_add_domain },
    { "DELETE", "/v1/domains/{}",      "manage", WS_REQUIRED, pmx_api_remove_domain },
    { "POST",   "/v1/domains/{}/verify", "manage", WS_REQUIRED, pmx_api_verify_domain },
    { "GET",    "/v1/workspaces",      "read",   WS_NONE,     pmx_api_list_workspaces },
    { "POST",   "/v1/workspaces",      "manage", WS_NONE,     pmx_api_create_workspace },
    { "GET",    "/v1/workspaces/{}",   "read",   WS_NONE,     pmx_api_get_workspace },
    { "PATCH",  "/v1/workspaces/{}",   "manage", WS_NONE,     pmx_api_patch_workspace },
};
#define N_ROUTES (sizeof routes / sizeof routes[0])

/* Does path match pattern? The {} segment is copied into param. */
static bool path_match(const char *pattern, const char *path, char *param, size_t plen)
{
    while (*pattern) {
        if (pattern[0] == '{' && pattern[1] == '}') {
            size_t n = strcspn(path, "/");
            if (n == 0 || n >= plen) return false;
            memcpy(param, path, n);
            param[n] = '\0';
            path += n;
            pattern += 2;
            continue;
        }
        if (*pattern++ != *path++) return false;
    }
    return *path == '\0';
}

/* ---- ending a call ------------------------------------------------------------------ */

static void call_free(pmx_api_call_t *c)
{
    json_decref(c->body);
    json_decref(c->out);
    if (c->held) PQclear(c->held);
    free(c);
}

/* The request is answered or gone: forget it; free unless a lookup is returning. */
static void call_end(pmx_api_call_t *c)
{
    c->req = NULL;
    c->done = true;
    pmx__http_api_unhold(c->api);
    if (!c->checking && !c->working) call_free(c);
}

void pmx_api_call_json(pmx_api_call_t *c, int status, json_t *doc)
{
    char *s = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    pmx_http_respond(c->req, status, "application/json", s, strlen(s));
    free(s);
    call_end(c);
}

void pmx_api_call_secret_created(pmx_api_call_t *c, const PGresult *res, const char *name)
{
    json_t *doc = json_incref(json_object_get(c->body, "_answer"));
    json_object_set_new(doc, name, json_string(c->text));
    json_object_set_new(doc, "created_at", json_string(PQgetvalue(res, 0, 0)));
    pmx_wipe(c->text, sizeof c->text);
    pmx_api_call_json(c, 201, doc);
}

void pmx_api_call_problem(pmx_api_call_t *c, int status, const char *detail, const char *field)
{
    if (status == 401) pmx_http_req_add_header(c->req, "WWW-Authenticate", "Bearer");
    pmx_http_problem(c->req, status, detail, field);
    call_end(c);
}

void pmx_api_call_refused(pmx_api_call_t *c, const pmx_api_bad_t *bad)
{
    pmx_api_call_problem(c, bad->status, bad->detail, bad->field);
}

static void call_aborted(void *arg)
{
    pmx_api_call_t *c = arg;
    pmx_worker_apikeys_cancel(c->auth);
    c->auth = NULL;
    if (c->db) pmx_db_async_cancel(c->db);
    c->db = NULL;
    call_end(c);
}

/* ---- statements ---------------------------------------------------------------------- */

static void query_done(pmx_db_async_t *db, const PGresult *res, void *arg)
{
    (void)db;
    pmx_api_call_t *c = arg;
    c->db = NULL;
    if (!res) {
        pmx_api_call_problem(c, 503, "the database connection was lost; try again", NULL);
        return;
    }
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
        pmx_api_cont_fn cont = c->cont;
        c->cont = NULL;
        cont(c, res);
        return;
    }
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (state && strcmp(state, "23505") == 0) {
        pmx_api_call_problem(c, 409, "it exists already", NULL);
    } else if (state && (strcmp(state, "23503") == 0 || strcmp(state, "23514") == 0 ||
                         strcmp(state, "22P02") == 0 || strcmp(state, "22001") == 0)) {
        pmx_api_call_problem(c, 422, "the database refused the value", NULL);
    } else {
        pmx_log_error("http api statement failed key=%s ws=%s error=\"%s\"", c->key_id, c->ws,
                      PQresultErrorMessage(res));
        pmx_api_call_problem(c, 500, "the statement failed; the error is logged", NULL);
    }
}

void pmx_api_call_query(pmx_api_call_t *c, const char *sql, int n, const char *const *vals,
                        pmx_api_cont_fn cont)
{
    c->cont = cont;
    c->db = pmx_db_async_query_params(pmx__http_api_db(c->api), sql, n, vals, query_done, c);
    if (!c->db) pmx_api_call_problem(c, 503, "the database is unavailable; try again later", NULL);
}

void pmx_api_call_hold_query(pmx_api_call_t *c, const PGresult *res, const char *sql,
                             const char *val, pmx_api_cont_fn cont)
{
    if (c->held) PQclear(c->held);
    c->held = PQcopyResult(res, PG_COPYRES_ATTRS | PG_COPYRES_TUPLES);
    if (!c->held) {
        pmx_api_call_problem(c, 500, "out of memory", NULL);
        return;
    }
    const char *vals[1] = { val };
    pmx_api_call_query(c, sql, 1, vals, cont);
}

/* ---- work off the loop --------------------------------------------------------------- */

typedef struct {
    uv_work_t        req;
    pmx_api_call_t  *c;
    void            *arg;
    pmx_api_work_fn  work;
    pmx_api_after_fn after;
    pmx_api_drop_fn  drop;
} work_job_t;

static void work_run(uv_work_t *req)
{
    work_job_t *j = req->data;
    j->work(j->arg);
}

static void work_after(uv_work_t *req, int status)
{
    (void)status;
    work_job_t *j = req->data;
    pmx_api_call_t *c = j->c;
    c->working = false;
    if (c->done) {
        j->drop(j->arg);
        call_free(c);
    } else {
        j->after(c, j->arg);
    }
    free(j);
}

int pmx_api_call_work(pmx_api_call_t *c, void *arg, pmx_api_work_fn work,
                      pmx_api_after_fn after, pmx_api_drop_fn drop)
{
    work_job_t *j = calloc(1, sizeof *j);
    if (!j) {
        drop(arg);
        return -1;
    }
    *j = (work_job_t){ .c = c, .arg = arg, .work = work, .after = after, .drop = drop };
    j->req.data = j;
    if (uv_queue_work(pmx_worker_loop(pmx__http_api_worker(c->api)), &j->req, work_run,
                      work_after) != 0) {
        free(j);
        drop(arg);
        return -1;
    }
    /* call_end leaves the call to work_after while this is set. */
    c->working = true;
    return 0;
}

const char *pmx_api_call_arg(pmx_api_call_t *c, const char *name)
{
    return pmx_http_req_arg(c->req, name);
}

const char *pmx_api_call_actor(const pmx_api_call_t *c)
{
    return c->key_id;
}

json_t *pmx_api_split_list(const char *s)
{
    json_t *a = json_array();
    while (*s) {
        size_t len = strcspn(s, ",");
        json_array_append_new(a, json_stringn(s, len));
        s += len + (s[len] == ',');
    }
    return a;
}

json_t *pmx_api_text_or_null(const PGresult *res, int r, int k)
{
    return PQgetisnull(res, r, k) ? json_null() : json_string(PQgetvalue(res, r, k));
}

/* ---- after authentication ------------------------------------------------------------ */

static void run_route(pmx_api_call_t *c)
{
    const route_t *r = c->route;
    const char *m = pmx_http_req_method(c->req);
    if (strcmp(m, "POST") == 0 || strcmp(m, "PATCH") == 0) {
        size_t len;
        const char *body = pmx_http_req_body(c->req, &len);
        /* What is answered if json_object() itself fails (out of memory). */
        pmx_api_bad_t bad = { .status = 500, .detail = "out of memory", .field = NULL };
        /* A verify takes no body: an empty one is {}. */
        c->body = len == 0 && r->fn == pmx_api_verify_domain
                      ? json_object()
                      : pmx_api_body_object(body, len, &bad);
        if (!c->body) {
            pmx_api_call_refused(c, &bad);
            return;
        }
    }
    r->fn(c);
}

static void ws_checked(pmx_api_call_t *c, const PGresult *res)
{
    if (PQntuples(res) == 0) {
        char detail[80];
        snprintf(detail, sizeof detail, "no workspace %s", c->ws);
        pmx_api_call_problem(c, 404, detail, "X-Workspace-Id");
        return;
    }
    run_route(c);
}

/* The workspace the call acts on; an organization key's is looked up first. */
static void pick_workspace(pmx_api_call_t *c)
{
    const route_t *r = c->route;
    const char *hdr = pmx_http_req_header(c->req, "X-Workspace-Id");
    if (r->ws == WS_NONE) {
        run_route(c);
        return;
    }
    if (c->key_ws[0]) {
        if (hdr && strcmp(hdr, c->key_ws) != 0) {
            pmx_api_call_problem(c, 403, "X-Workspace-Id names another workspace than the API "
                                 "key's", "X-Workspace-Id");
            return;
        }
        snprintf(c->ws, sizeof c->ws, "%s", c->key_ws);
        run_route(c);
        return;
    }
    if (!hdr) {
        if (r->ws == WS_OPTIONAL) {
            run_route(c);             /* the organization itself */
            return;
        }
        pmx_api_call_problem(c, 400, "an organization API key must name the workspace in the "
                             "X-Workspace-Id header", "X-Workspace-Id");
        return;
    }
    if (!pmx__http_ws_id_valid(hdr)) {
        pmx_api_call_problem(c, 400, "X-Workspace-Id is not a workspace id (ws_ and 16 "
                             "characters a-z, 2-7)", "X-Workspace-Id");
        return;
    }
    snprintf(c->ws, sizeof c->ws, "%s", hdr);
    const char *vals[1] = { c->ws };
    pmx_api_call_query(c, "SELECT 1 FROM workspaces WHERE id = $1", 1, vals, ws_checked);
}

static void auth_done(void *arg, const pmx_apikey_t *key)
{
    pmx_api_call_t *c = arg;
    c->auth = NULL;
    if (c->done) {
        if (!c->checking) call_free(c);
        return;
    }
    const route_t *r = c->route;
    char detail[120];
    switch (key->status) {
    case PMX_APIKEY_OK:
        break;
    case PMX_APIKEY_UNKNOWN:
        pmx_api_call_problem(c, 401, "the API key is not valid", NULL);
        return;
    case PMX_APIKEY_REVOKED:
        pmx_api_call_problem(c, 401, "the API key is revoked", NULL);
        return;
    case PMX_APIKEY_NO_SCOPE:
        snprintf(detail, sizeof detail, "the API key lacks the %s scope", r->scope);
        pmx_api_call_problem(c, 403, detail, NULL);
        return;
    case PMX_APIKEY_TEMPFAIL:
        pmx_api_call_problem(c, 503, "API keys cannot be checked right now; try again later", NULL);
        return;
    }
    snprintf(c->key_id, sizeof c->key_id, "%s", key->id);
    snprintf(c->key_ws, sizeof c->key_ws, "%s", key->ws);
    pmx_worker_apikeys_touch(pmx__http_api_keys(c->api), key->id);
    pick_workspace(c);
}

void pmx_api_call_start(pmx_http_api_t *api, pmx_http_req_t *req)
{
    const char *m = pmx_http_req_method(req), *path = pmx_http_req_path(req);
    if (strcmp(m, "HEAD") == 0) m = "GET";
    char param[512], allow[64] = "";
    const route_t *route = NULL;
    for (size_t i = 0; i < N_ROUTES; i++) {
        if (!path_match(routes[i].pattern, path, param, sizeof param)) continue;
        if (strcmp(routes[i].method, m) == 0) {
            route = &routes[i];
            break;
        }
        size_t l = strlen(allow);
        snprintf(allow + l, sizeof allow - l, "%s%s", l ? ", " : "", routes[i].method);
    }
    if (!route && allow[0]) {
        pmx_http_req_add_header(req, "Allow", allow);
        pmx_http_problem(req, 405, "this method is not served here", NULL);
        return;
    }
    if (!route) {
        pmx_http_problem(req, 404, "no such endpoint", NULL);
        return;
    }
    pmx_api_call_t *c = pmx_xcalloc(1, sizeof *c);
    c->api = api;
    c->req = req;
    c->route = route;
    snprintf(c->param, sizeof c->param, "%s", strchr(route->pattern, '{') ? param : "");
    pmx__http_api_hold(api);
    pmx_http_req_on_abort(req, call_aborted, c);

    size_t klen;
    const char *key = pmx__http_bearer(pmx_http_req_header(req, "Authorization"), &klen);
    if (!key) {
        pmx_api_call_problem(c, 401, "send an API key as Authorization: Bearer <key>", NULL);
        return;
    }
    /* The callback may run before this returns (a cached answer) and even
     * answer the call: c stays allocated until checking is cleared. */
    c->checking = true;
    pmx_worker_apikeys_req_t *r = pmx_worker_apikeys_check(pmx__http_api_keys(api), key, klen,
                                                           route->scope, auth_done, c);
    c->checking = false;
    if (c->done) {
        if (!c->working) call_free(c);
        return;
    }
    c->auth = r;
}
