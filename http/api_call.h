/*
 * API v1 beyond sending (docs/http.md): the read and manage endpoints. One
 * request is one pmx_api_call_t: api.c hands every /v1/ path other than
 * /v1/emails* and /v1/openapi.json to pmx_api_call_start, which finds the
 * route (404, 405), checks the key through the worker's API key cache with
 * the route's scope (401, 403), settles the workspace the call acts on (an
 * organization key's X-Workspace-Id: 400 malformed, 404 unknown) and runs the
 * route's function (http/api_read.c, http/api_manage.c).
 *
 * A route function checks its input (http/api_input.h: pure, fuzzed), then
 * answers at once or runs Postgres statements on the worker's asynchronous
 * connection (pmx_api_call_query) and answers from their continuation; the
 * connection is suspended meanwhile. Every answer
 * (pmx_api_call_json, pmx_api_call_problem) ends the call and frees it: a
 * route function must not touch c after answering.
 *
 * Ownership: a call lives until it answered, or until its request is aborted
 * (the client went away, the server closes): then its key lookup and its
 * statement in flight are cancelled (the statement still runs, its result is
 * dropped) and the call is freed at once.
 */
#ifndef PMX_HTTP_API_CALL_H
#define PMX_HTTP_API_CALL_H
#include <stdbool.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "http/api.h"
#include "http/api_input.h"
#include "http/server.h"
#include "sql/db_async.h"
#include "submission/apikeys.h"

typedef struct pmx_api_call pmx_api_call_t;
typedef void (*pmx_api_route_fn)(pmx_api_call_t *c);
/* A statement's successful result (PGRES_TUPLES_OK or COMMAND_OK). */
typedef void (*pmx_api_cont_fn)(pmx_api_call_t *c, const PGresult *res);

struct pmx_api_call {
    pmx_http_api_t           *api;
    pmx_http_req_t           *req;         /* NULL once answered or aborted */
    pmx_worker_apikeys_req_t *auth;
    pmx_db_async_req_t       *db;
    pmx_api_cont_fn           cont;
    const void               *route;
    bool                      checking;    /* inside pmx_worker_apikeys_check */
    bool                      done;        /* answered or aborted */
    bool                      working;     /* a pmx_api_call_work job is queued or running */
    char                      key_id[32];  /* the caller's key: the audit_log actor */
    char                      key_ws[32];  /* the key's workspace; "" = organization key */
    char                      ws[32];      /* the workspace acted on; "" = the organization */
    char                      param[512];  /* the path's {…} segment */
    json_t                   *body;        /* parsed JSON body of POST/PATCH, else NULL */
    PGresult                 *held;        /* a route's copy of a result (PQcopyResult),
                                              cleared with the call */
    char                      text[600];   /* a route's scratch between statements */
    json_t                   *out;         /* a route's JSON kept between statements,
                                              released with the call */
};

/* ---- api.c exports these to the call module ---- */
pmx_worker_apikeys_t *pmx__http_api_keys(pmx_http_api_t *api);
pmx_db_async_t       *pmx__http_api_db(pmx_http_api_t *api);
const pmx_config_t   *pmx__http_api_config(pmx_http_api_t *api);
pmx_worker_t         *pmx__http_api_worker(pmx_http_api_t *api);
/* The master key (dkim/keycrypt.h), loaded when the API started. */
const uint8_t        *pmx__http_api_master(pmx_http_api_t *api);
/* The token of "Authorization: Bearer <token>" (NULL: none, or too long). */
const char           *pmx__http_bearer(const char *header, size_t *len);
/* "ws_" + 16 of a-z 2-7. */
bool                  pmx__http_ws_id_valid(const char *s);
/* A request waits for an answer / was answered (drain waits for none). */
void pmx__http_api_hold(pmx_http_api_t *api);
void pmx__http_api_unhold(pmx_http_api_t *api);

/* ---- the call module ---- */
/* Serves req (a /v1/ path api.c does not serve itself). */
void pmx_api_call_start(pmx_http_api_t *api, pmx_http_req_t *req);

/* Answers with doc (reference stolen) and ends the call. */
void pmx_api_call_json(pmx_api_call_t *c, int status, json_t *doc);
/* Answers 201 with the document kept in c->body's "_answer", plus the secret in
 * c->text under name (shown this once, then wiped) and created_at from column 0
 * of res's first row; ends the call. For API keys and webhook secrets. */
void pmx_api_call_secret_created(pmx_api_call_t *c, const PGresult *res, const char *name);
/* Answers with an RFC 9457 problem document and ends the call. */
void pmx_api_call_problem(pmx_api_call_t *c, int status, const char *detail, const char *field);
/* The refusal of an http/api_input.h check, answered (pmx_api_call_problem). */
void pmx_api_call_refused(pmx_api_call_t *c, const pmx_api_bad_t *bad);
/*
 * Runs sql with text parameters; cont gets its result. Postgres down or the
 * connection lost: 503; a unique violation: 409; a foreign key or check
 * violation: 422; any other failure: 500 (logged) — cont is not called then.
 */
void pmx_api_call_query(pmx_api_call_t *c, const char *sql, int n, const char *const *vals,
                        pmx_api_cont_fn cont);
/*
 * Keeps a copy of res in c->held (replacing one held before; cleared with the
 * call), then runs sql with the one text parameter val (copied), as
 * pmx_api_call_query does: for a continuation that needs the rows of two
 * statements. Out of memory: 500, cont is not called.
 */
void pmx_api_call_hold_query(pmx_api_call_t *c, const PGresult *res, const char *sql,
                             const char *val, pmx_api_cont_fn cont);
/*
 * Runs work(arg) on libuv's thread pool (uv_queue_work): for what would block
 * the loop (RSA key generation, DNS lookups). Back on the loop, after(c, arg)
 * runs when the call is still alive; when the request was aborted meanwhile
 * (a running job cannot be cancelled) the call is kept until then, and only
 * drop(arg) runs. after and drop own arg. -1 (and drop(arg) run) when the job
 * could not be queued: the caller answers.
 */
typedef void (*pmx_api_work_fn)(void *arg);
typedef void (*pmx_api_after_fn)(pmx_api_call_t *c, void *arg);
typedef void (*pmx_api_drop_fn)(void *arg);
int pmx_api_call_work(pmx_api_call_t *c, void *arg, pmx_api_work_fn work,
                      pmx_api_after_fn after, pmx_api_drop_fn drop);
/* A query-string argument, NULL when absent. */
const char *pmx_api_call_arg(pmx_api_call_t *c, const char *name);
/* The actor written to audit_log: the key's id. */
const char *pmx_api_call_actor(const pmx_api_call_t *c);

/* "a,b" (array_to_string's form) as a JSON array of strings. */
json_t *pmx_api_split_list(const char *s);
/* Column r,k as JSON: a string, or null when SQL NULL. */
json_t *pmx_api_text_or_null(const PGresult *res, int r, int k);

/* ---- route functions (http/api_read.c, http/api_manage.c) ---- */
void pmx_api_get_message(pmx_api_call_t *c);
void pmx_api_get_events(pmx_api_call_t *c);
void pmx_api_get_stats(pmx_api_call_t *c);
void pmx_api_list_testers(pmx_api_call_t *c);
void pmx_api_add_tester(pmx_api_call_t *c);
void pmx_api_remove_tester(pmx_api_call_t *c);
void pmx_api_list_suppressions(pmx_api_call_t *c);
void pmx_api_add_suppression(pmx_api_call_t *c);
void pmx_api_remove_suppression(pmx_api_call_t *c);
void pmx_api_list_keys(pmx_api_call_t *c);
void pmx_api_create_key(pmx_api_call_t *c);
void pmx_api_revoke_key(pmx_api_call_t *c);
void pmx_api_list_workspaces(pmx_api_call_t *c);
void pmx_api_create_workspace(pmx_api_call_t *c);
void pmx_api_get_workspace(pmx_api_call_t *c);
void pmx_api_patch_workspace(pmx_api_call_t *c);
void pmx_api_list_webhooks(pmx_api_call_t *c);
void pmx_api_add_webhook(pmx_api_call_t *c);
void pmx_api_remove_webhook(pmx_api_call_t *c);
void pmx_api_list_domains(pmx_api_call_t *c);
void pmx_api_remove_domain(pmx_api_call_t *c);
void pmx_api_add_domain(pmx_api_call_t *c);
void pmx_api_verify_domain(pmx_api_call_t *c);

#endif
