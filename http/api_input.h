/*
 * API v1's request input, read and checked before any statement runs
 * (docs/http.md): the JSON bodies of the manage endpoints and the query
 * arguments of the read endpoints. Pure functions (no Postgres, no request):
 * the route functions of http/api_read.c, api_manage.c, api_webhooks.c,
 * api_workspaces.c and api_domain_add.c call them and answer the refusal, and
 * tests/fuzz/fuzz_http_manage.c fuzzes them alone.
 *
 * Each returns 0, or -1 with the refusal in *bad: the status (400 for a query
 * argument or a body that is not a JSON object, 422 for a bad member), a
 * one-line detail and the field it names (a static name, or a member name of
 * the body: valid while the body is). Values returned through const char **
 * point into the body (or are static defaults).
 */
#ifndef PMX_HTTP_API_INPUT_H
#define PMX_HTTP_API_INPUT_H
#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "lib/buf.h"
#include "sql/q_domain.h"
#include "sql/q_workspace.h"

typedef struct {
    int         status;
    char        detail[640];
    const char *field;         /* NULL: the refusal names no field */
} pmx_api_bad_t;

/* A POST/PATCH body: a JSON object (http/email.h's parser), else 400. */
json_t *pmx_api_body_object(const char *body, size_t len, pmx_api_bad_t *bad);
/* A body member that must be a string: *out NULL when absent and not required. */
int pmx_api_body_str(json_t *body, const char *name, bool required, const char **out,
                     pmx_api_bad_t *bad);
/* An address (body or path), parsed as the CLI parses it: its canonical form in out. */
int pmx_api_address(const char *s, const char *field, char *out, size_t n, pmx_api_bad_t *bad);

/* ?since=: a duration (30m, 24h, 7d) or "all"; dflt when absent. Milliseconds
 * in out ("" = all time). */
int pmx_api_since(const char *s, const char *dflt, char out[24], pmx_api_bad_t *bad);

/* GET /v1/events?type=&since=&limit=&after= (each NULL when absent). */
typedef struct {
    const char *type;          /* NULL = every type */
    char        since[24];     /* "" = no bound */
    long long   limit, after;
} pmx_api_events_q_t;
int pmx_api_events_query(const char *type, const char *since, const char *limit,
                         const char *after, pmx_api_events_q_t *q, pmx_api_bad_t *bad);

/* A suppression scope: "*" or a category. */
bool pmx_api_supp_scope_valid(const char *s);

/* POST /v1/testers: the address, canonical, in addr. */
int pmx_api_tester_body(json_t *body, char *addr, size_t n, pmx_api_bad_t *bad);

/* POST /v1/suppressions: the address in addr; scope, reason and detail with
 * the CLI's defaults, which are also set in body (the answer echoes them). */
typedef struct {
    const char *scope, *reason, *detail;   /* detail NULL = none */
} pmx_api_supp_t;
int pmx_api_suppression_body(json_t *body, char *addr, size_t n, pmx_api_supp_t *s,
                             pmx_api_bad_t *bad);

/* POST /v1/api-keys: the name, and the scopes as a Postgres array in *scopes
 * (the caller frees it, also after -1). */
int pmx_api_key_body(json_t *body, const char **name, pmx_buf_t *scopes, pmx_api_bad_t *bad);

/* POST /v1/webhooks: the URL normalised in *url and the events as a Postgres
 * array in *events ("{}" = every event); the caller frees both, also after -1. */
int pmx_api_webhook_body(json_t *body, pmx_buf_t *url, pmx_buf_t *events, pmx_api_bad_t *bad);

/* POST /v1/workspaces: name, and industry and website (NULL when absent). */
typedef struct {
    const char *name, *industry, *website;
} pmx_api_ws_new_t;
int pmx_api_ws_create_body(json_t *body, pmx_api_ws_new_t *w, pmx_api_bad_t *bad);

/* The routing members of a PATCH body, their types checked but not applied:
 * pool is checked against the worker's config, route and route_password
 * together, the password sealed with the master key (http/api_workspaces.c).
 * NULL = absent; pool and route may be JSON null (= default). */
typedef struct {
    json_t *pool, *route, *password;
} pmx_api_ws_routing_t;

/* PATCH /v1/workspaces/{id}: the changes (sql/q_workspace.h) in *ch, freed
 * after -1, else by the caller (pmx_ws_changes_free), and the routing members
 * in *rt. Any of the twelve members, up to all of them; the refusal names the
 * first bad one. */
int pmx_api_ws_patch_body(json_t *body, pmx_ws_changes_t *ch, pmx_api_ws_routing_t *rt,
                          pmx_api_bad_t *bad);
/* Whether a PATCH member is the organization's to set (the limits, the reputation
 * guard, pool and route); a workspace key sets only name, test_mode and catch_all. */
bool pmx_api_ws_member_org_only(const char *member);

/* POST /v1/domains: the domain and return path ("" = none) normalised, and
 * which keys to make. */
typedef struct {
    char domain[PMX_DOMAIN_MAX + 1];
    char rp[PMX_DOMAIN_MAX + 1];
    bool want_rsa, want_ed;
} pmx_api_domain_new_t;
int pmx_api_domain_body(json_t *body, pmx_api_domain_new_t *d, pmx_api_bad_t *bad);

#endif
