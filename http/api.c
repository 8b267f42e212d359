/*
 * API v1 on the public listener; see api.h. One handler routes; a request
 * that needs the API key cache or Redis becomes an op_t that lives until its
 * last asynchronous answer, whether or not the client is still there.
 */
#include "http/api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "config/config.h"
#include "dkim/keycrypt.h"
#include "http/api_call.h"
#include "http/email.h"
#include "http/openapi.h"
#include "http/server.h"
#include "http/unsubscribe.h"
#include "lib/log.h"
#include "queue/enqueue.h"
#include "lib/mem.h"
#include "submission/apikeys.h"

#define WS_ID_LEN    19     /* "ws_" + 16 base32 */
#define MAX_KEY_LEN  512    /* longer bearer tokens are not API keys */
#define PROBLEM_JSON "application/problem+json"

typedef struct op op_t;

struct pmx_http_api {
    pmx_worker_t         *w;
    const pmx_config_t   *cfg;
    pmx_settings_t       *settings;
    pmx_worker_apikeys_t *keys;
    pmx_http_server_t    *srv;
    pmx_http_unsub_t     *unsub;         /* /u/<token> (http/unsubscribe.h) */
    char                 *cert_pem;
    pmx_buf_t             key_pem;
    uint8_t               master[PMX_DKIM_MASTER_KEY_LEN];  /* seals webhook secrets, DKIM keys */
    op_t                 *ops;           /* alive, doubly linked */
    size_t                waiting;       /* ops whose request still waits for its answer */
    bool                  draining;
    void                (*drain_done)(void *arg);
    void                 *drain_arg;
};

typedef enum { OP_EMAIL, OP_BATCH } op_kind_t;

struct op {
    pmx_http_api_t           *api;       /* NULL once the API stopped */
    op_t                     *prev, *next;
    pmx_http_req_t           *req;       /* NULL once answered or aborted */
    op_kind_t                 kind;
    pmx_worker_apikeys_req_t *auth;
    char                      key_id[32];
    char                      ws[32];
    size_t                    xadds;     /* replies still to come */
    json_t                   *results;   /* batch: one object per item */
    char                      client[64];
    bool                      checking;  /* inside pmx_worker_apikeys_check */
};

/* ---- operations ---------------------------------------------------------------------- */

static void maybe_drained(pmx_http_api_t *api);
static void unsub_idle(void *arg) { maybe_drained(arg); }

static void maybe_drained(pmx_http_api_t *api)
{
    if (!api || !api->draining || !api->drain_done || api->waiting > 0 ||
        pmx_http_unsub_waiting(api->unsub) > 0)
        return;
    void (*fn)(void *) = api->drain_done;
    api->drain_done = NULL;
    pmx_log_info("http drained");
    fn(api->drain_arg);
}

static void op_release(op_t *op)
{
    if (op->req || op->auth || op->xadds || op->checking) return;
    if (op->api) {
        if (op->prev) op->prev->next = op->next;
        else op->api->ops = op->next;
        if (op->next) op->next->prev = op->prev;
    }
    json_decref(op->results);
    free(op);
}

/* The request is answered or gone. */
static void op_detach_req(op_t *op)
{
    if (!op->req) return;
    op->req = NULL;
    if (op->api) {
        op->api->waiting--;
        maybe_drained(op->api);
    }
}

static void op_problem(op_t *op, int status, const char *detail, const char *field)
{
    if (!op->req) return;
    if (status == 401) pmx_http_req_add_header(op->req, "WWW-Authenticate", "Bearer");
    pmx_http_problem(op->req, status, detail, field);
    op_detach_req(op);
}

static void op_json(op_t *op, int status, json_t *doc)
{
    if (!op->req) return;
    char *s = json_dumps(doc, JSON_COMPACT);
    pmx_http_respond(op->req, status, "application/json", s, strlen(s));
    free(s);
    op_detach_req(op);
}

static void op_aborted(void *arg)
{
    op_t *op = arg;
    op_detach_req(op);
    pmx_worker_apikeys_cancel(op->auth);
    op->auth = NULL;
    op_release(op);
}

/* ---- enqueueing ------------------------------------------------------------------------ */

typedef struct {
    op_t  *op;
    size_t index;
} xadd_t;

static json_t *problem_obj(int status, const char *detail, const char *field)
{
    json_t *o = json_pack("{s:s,s:s,s:i,s:s}", "type", "about:blank", "title",
                          pmx_http_status_title(status), "status", status, "detail", detail);
    if (field) json_object_set_new(o, "field", json_string(field));
    return o;
}

static void batch_done(op_t *op)
{
    json_t *doc = json_pack("{s:O}", "results", op->results);
    op_json(op, 200, doc);
    json_decref(doc);
}

static void xadd_done(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    xadd_t *x = privdata;
    op_t *op = x->op;
    redisReply *rep = reply;
    const char *entry = rep && rep->type == REDIS_REPLY_STRING ? rep->str : NULL;
    if (!entry)
        pmx_log_warn("http enqueue failed ws=%s reason=\"%s\"", op->ws,
                     !rep ? "redis connection lost"
                          : rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply type");
    else
        pmx_log_info("http queued client=%s key=%s ws=%s entry=%s%s", op->client, op->key_id, op->ws,
                     entry, op->req ? "" : " (client gone before the reply)");
    op->xadds--;
    if (op->kind == OP_EMAIL) {
        if (entry) {
            /* A stream entry id is digits and one '-' (docs/queue.md): the answer is what
             * jansson's compact dump of {"id": entry} gives, without building it. */
            char ans[64];
            size_t n = strlen(entry);
            if (n + 10 < sizeof ans && strspn(entry, "0123456789-") == n) {
                memcpy(ans, "{\"id\":\"", 7);
                memcpy(ans + 7, entry, n);
                memcpy(ans + 7 + n, "\"}", 2);
                if (op->req) pmx_http_respond(op->req, 202, "application/json", ans, n + 9);
                op_detach_req(op);
            } else {
                json_t *doc = json_pack("{s:s}", "id", entry);
                op_json(op, 202, doc);
                json_decref(doc);
            }
        } else {
            op_problem(op, 503, "the queue is unavailable; nothing was queued, try again later", NULL);
        }
    } else {
        json_array_set_new(op->results, x->index,
                           entry ? json_pack("{s:i,s:s}", "status", 202, "id", entry)
                                 : problem_obj(503, "the queue is unavailable; this email was not "
                                               "queued, try again later", NULL));
        if (op->xadds == 0) batch_done(op);
    }
    free(x);
    op_release(op);
}

/* XADD of one checked email to the workspace's stream. -1 when Redis is down. */
static int enqueue(op_t *op, const pmx_http_email_t *e, size_t index)
{
    pmx_http_api_t *api = op->api;
    pmx_redis_conn_t *rc = pmx_worker_redis(api->w);
    if (!rc || !pmx_redis_conn_is_up(rc)) return -1;
    xadd_t *x = pmx_xcalloc(1, sizeof *x);
    x->op = op;
    x->index = index;
    /* The one XADD encoding and key name of queue/ (docs/queue.md). */
    int r = pmx_queue_enqueue(rc, api->cfg->redis_prefix, op->ws, e->f, e->n, xadd_done, x);
    if (r < 0) free(x);
    else op->xadds++;
    return r < 0 ? -1 : 0;
}

/* ---- checking one email ------------------------------------------------------------- */

/* docs/queue.md: the From domain must be a verified domain of the workspace (or under one). */
static int check_from(const pmx_settings_ws_t *ws, const pmx_job_t *job, int *status, char *err,
                      size_t errlen)
{
    const char *domain = pmx_addr_domain(&job->from);
    switch (pmx_settings_domain_for(ws, domain, NULL)) {
    case PMX_SETTINGS_DOMAIN_OK:
        return 0;
    case PMX_SETTINGS_DOMAIN_NO_KEY:
        *status = 503;
        snprintf(err, errlen, "from: domain %s has no usable DKIM key yet; try again later", domain);
        return -1;
    case PMX_SETTINGS_DOMAIN_UNVERIFIED:
        *status = 422;
        snprintf(err, errlen, "from: domain %s is not verified yet", domain);
        return -1;
    case PMX_SETTINGS_DOMAIN_NONE:
        break;
    }
    *status = 422;
    snprintf(err, errlen, "from: domain %s is not a verified domain of workspace %s", domain, ws->id);
    return -1;
}

/*
 * Converts and checks one email; on success e holds its fields. Otherwise
 * *status (422, or 503 for a passing condition) and a reason; field is the
 * JSON field it concerns ("" for none).
 */
static int check_email(op_t *op, const pmx_settings_ws_t *ws, const json_t *item, const char *idem,
                       pmx_http_email_t *e, int *status, char *err, size_t errlen,
                       char field[PMX_HTTP_EMAIL_FIELD_MAX])
{
    pmx_job_t job;
    size_t max = (size_t)op->api->cfg->submission_max_message_size;
    if (pmx_http_email_convert(item, idem, max, e, &job, err, errlen, field) < 0) {
        *status = 422;
        return -1;
    }
    int r = check_from(ws, &job, status, err, errlen);
    pmx_job_free(&job);
    if (r < 0) {
        snprintf(field, PMX_HTTP_EMAIL_FIELD_MAX, "from");
        pmx_http_email_free(e);
    }
    return r;
}

/* ---- after authentication ------------------------------------------------------------ */

bool pmx__http_ws_id_valid(const char *s)
{
    if (strlen(s) != WS_ID_LEN || strncmp(s, "ws_", 3) != 0) return false;
    for (size_t i = 3; i < WS_ID_LEN; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '2' && s[i] <= '7'))) return false;
    return true;
}

/* The workspace the request acts on, checked against the settings cache. */
static const pmx_settings_ws_t *pick_workspace(op_t *op, const pmx_apikey_t *key)
{
    pmx_http_api_t *api = op->api;
    const char *hdr = pmx_http_req_header(op->req, "X-Workspace-Id");
    char detail[200];
    if (!key->ws[0]) {
        if (!hdr) {
            op_problem(op, 400, "an organization API key must name the workspace in the "
                       "X-Workspace-Id header", "X-Workspace-Id");
            return NULL;
        }
        if (!pmx__http_ws_id_valid(hdr)) {
            op_problem(op, 400, "X-Workspace-Id is not a workspace id (ws_ and 16 characters "
                       "a-z, 2-7)", "X-Workspace-Id");
            return NULL;
        }
        snprintf(op->ws, sizeof op->ws, "%s", hdr);
    } else {
        if (hdr && strcmp(hdr, key->ws) != 0) {
            op_problem(op, 403, "X-Workspace-Id names another workspace than the API key's",
                       "X-Workspace-Id");
            return NULL;
        }
        snprintf(op->ws, sizeof op->ws, "%s", key->ws);
    }
    if (!pmx_settings_ready(api->settings)) {
        op_problem(op, 503, "workspace settings are not loaded yet; try again later", NULL);
        return NULL;
    }
    const pmx_settings_ws_t *ws = pmx_settings_lookup(api->settings, op->ws);
    if (!ws && key->ws[0]) {
        snprintf(detail, sizeof detail, "workspace %s is not loaded yet; try again later", op->ws);
        op_problem(op, 503, detail, NULL);
        return NULL;
    }
    if (!ws) {
        snprintf(detail, sizeof detail, "no workspace %s", op->ws);
        op_problem(op, 404, detail, "X-Workspace-Id");
        return NULL;
    }
    if (ws->suspended) {
        snprintf(detail, sizeof detail, "workspace %s is suspended", op->ws);
        op_problem(op, 403, detail, NULL);
        return NULL;
    }
    return ws;
}

static void send_one(op_t *op, const pmx_settings_ws_t *ws, const json_t *body, const char *idem)
{
    pmx_http_email_t e;
    char err[600], field[PMX_HTTP_EMAIL_FIELD_MAX];
    int status;
    if (check_email(op, ws, body, idem, &e, &status, err, sizeof err, field) < 0) {
        pmx_log_info("http refused client=%s key=%s ws=%s status=%d reason=\"%s\"", op->client,
                     op->key_id, op->ws, status, err);
        op_problem(op, status, err, field[0] ? field : NULL);
        return;
    }
    if (enqueue(op, &e, 0) < 0) {
        pmx_log_warn("http enqueue failed ws=%s reason=\"redis is down\"", op->ws);
        op_problem(op, 503, "the queue is unavailable; nothing was queued, try again later", NULL);
    }
    pmx_http_email_free(&e);
}

static void send_batch(op_t *op, const pmx_settings_ws_t *ws, const json_t *body, const char *idem)
{
    if (!json_is_array(body)) {
        op_problem(op, 400, "the body must be a JSON array of emails", NULL);
        return;
    }
    size_t n = json_array_size(body);
    if (n == 0 || n > PMX_HTTP_API_MAX_BATCH) {
        op_problem(op, 422, "a batch holds 1 to 500 emails", NULL);
        return;
    }
    pmx_redis_conn_t *rc = pmx_worker_redis(op->api->w);
    if (!rc || !pmx_redis_conn_is_up(rc)) {
        op_problem(op, 503, "the queue is unavailable; nothing was queued, try again later", NULL);
        return;
    }
    op->results = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(op->results, json_null());
    for (size_t i = 0; i < n; i++) {
        pmx_http_email_t e;
        char err[600], field[PMX_HTTP_EMAIL_FIELD_MAX], id[300];
        int status;
        /* One key for the batch: each item's job id is "<key>:<index>". */
        if (idem) snprintf(id, sizeof id, "%s:%zu", idem, i);
        if (check_email(op, ws, json_array_get(body, i), idem ? id : NULL, &e, &status, err,
                        sizeof err, field) < 0) {
            json_array_set_new(op->results, i, problem_obj(status, err, field[0] ? field : NULL));
            continue;
        }
        if (enqueue(op, &e, i) < 0)
            json_array_set_new(op->results, i,
                               problem_obj(503, "the queue is unavailable; this email was not "
                                           "queued, try again later", NULL));
        pmx_http_email_free(&e);
    }
    if (op->xadds == 0) batch_done(op);
}

static void auth_checked(op_t *op, const pmx_apikey_t *key);

static void auth_done(void *arg, const pmx_apikey_t *key)
{
    op_t *op = arg;
    op->auth = NULL;
    if (op->req && op->api) auth_checked(op, key);
    op_release(op);
}

static void auth_checked(op_t *op, const pmx_apikey_t *key)
{
    switch (key->status) {
    case PMX_APIKEY_OK:
        break;
    case PMX_APIKEY_UNKNOWN:
        op_problem(op, 401, "the API key is not valid", NULL);
        return;
    case PMX_APIKEY_REVOKED:
        op_problem(op, 401, "the API key is revoked", NULL);
        return;
    case PMX_APIKEY_NO_SCOPE:
        op_problem(op, 403, "the API key lacks the send scope", NULL);
        return;
    case PMX_APIKEY_TEMPFAIL:
        op_problem(op, 503, "API keys cannot be checked right now; try again later", NULL);
        return;
    }
    snprintf(op->key_id, sizeof op->key_id, "%s", key->id);
    pmx_worker_apikeys_touch(op->api->keys, key->id);
    const pmx_settings_ws_t *ws = pick_workspace(op, key);
    if (!ws) return;

    size_t len;
    const char *body = pmx_http_req_body(op->req, &len);
    char err[300];
    json_t *doc = pmx_http_json_parse(body, len, err, sizeof err);
    if (!doc) {
        op_problem(op, 400, err, NULL);
        return;
    }
    const char *idem = pmx_http_req_header(op->req, "Idempotency-Key");
    if (op->kind == OP_EMAIL) send_one(op, ws, doc, idem);
    else send_batch(op, ws, doc, idem);
    json_decref(doc);
}

/* ---- routing -------------------------------------------------------------------------- */

/* "Bearer <token>" (scheme in any case, RFC 6750). */
const char *pmx__http_bearer(const char *h, size_t *len)
{
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return NULL;
    const char *t = h + 7;
    while (*t == ' ') t++;
    size_t n = strlen(t);
    while (n && t[n - 1] == ' ') n--;
    if (n == 0 || n > MAX_KEY_LEN) return NULL;
    *len = n;
    return t;
}

static void handler(void *arg, pmx_http_req_t *req)
{
    pmx_http_api_t *api = arg;
    const char *m = pmx_http_req_method(req), *path = pmx_http_req_path(req);
    bool get = strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0, post = strcmp(m, "POST") == 0;

    if (pmx_http_unsub_route(api->unsub, req)) return;
    if (strcmp(path, "/v1/openapi.json") == 0) {
        if (!get) {
            pmx_http_req_add_header(req, "Allow", "GET, HEAD");
            pmx_http_problem(req, 405, "use GET", NULL);
            return;
        }
        pmx_http_respond(req, 200, "application/json", pmx_http_openapi_json,
                         pmx_http_openapi_json_len);
        return;
    }
    op_kind_t kind;
    if (strcmp(path, "/v1/emails") == 0) kind = OP_EMAIL;
    else if (strcmp(path, "/v1/emails/batch") == 0) kind = OP_BATCH;
    else if (strncmp(path, "/v1/", 4) == 0 && !api->draining) {
        pmx_api_call_start(api, req);      /* read and manage endpoints: http/api_call.h */
        return;
    } else if (api->draining) {
        pmx_http_problem(req, 503, "this worker is stopping; try again", NULL);
        return;
    } else {
        pmx_http_problem(req, 404, "no such endpoint", NULL);
        return;
    }
    if (!post) {
        pmx_http_req_add_header(req, "Allow", "POST");
        pmx_http_problem(req, 405, "use POST", NULL);
        return;
    }
    if (api->draining) {
        pmx_http_problem(req, 503, "this worker is stopping; try again", NULL);
        return;
    }

    op_t *op = pmx_xcalloc(1, sizeof *op);
    op->api = api;
    op->req = req;
    op->kind = kind;
    snprintf(op->client, sizeof op->client, "%s", pmx_http_req_client(req));
    op->next = api->ops;
    if (op->next) op->next->prev = op;
    api->ops = op;
    api->waiting++;
    pmx_http_req_on_abort(req, op_aborted, op);

    size_t klen;
    const char *key = pmx__http_bearer(pmx_http_req_header(req, "Authorization"), &klen);
    if (!key) {
        op_problem(op, 401, "send an API key as Authorization: Bearer <key>", NULL);
        op_release(op);
        return;
    }
    /* The callback may run before this returns (a cached answer): op stays. */
    op->checking = true;
    pmx_worker_apikeys_req_t *r = pmx_worker_apikeys_check(pmx__http_api_keys(api), key, klen,
                                                           "send", auth_done, op);
    op->checking = false;
    op->auth = r;
    op_release(op);
}

/* ---- for the call module (http/api_call.h) ------------------------------------------ */

/* The key cache follows the settings' generation, as submission's does
 * (submission/apikeys.h): a revoked key's NOTIFY swaps the settings, and the
 * next check asks Postgres again instead of waiting out the 5 s entry. */
pmx_worker_apikeys_t *pmx__http_api_keys(pmx_http_api_t *api)
{
    pmx_worker_apikeys_set_generation(api->keys, pmx_settings_generation(api->settings));
    return api->keys;
}
pmx_db_async_t *pmx__http_api_db(pmx_http_api_t *api) { return pmx_worker_db(api->w); }
const pmx_config_t *pmx__http_api_config(pmx_http_api_t *api) { return api->cfg; }
pmx_worker_t *pmx__http_api_worker(pmx_http_api_t *api) { return api->w; }
const uint8_t *pmx__http_api_master(pmx_http_api_t *api) { return api->master; }
void pmx__http_api_hold(pmx_http_api_t *api) { api->waiting++; }

void pmx__http_api_unhold(pmx_http_api_t *api)
{
    api->waiting--;
    maybe_drained(api);
}

/* ---- start, drain, stop --------------------------------------------------------------- */

#define PEM_MAX (1024 * 1024)

/* Reads a PEM file whole (NUL-terminated) into b. */
static int read_pem(const char *path, pmx_buf_t *b, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %m", path);
        return -1;
    }
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0 && b->len <= PEM_MAX)
        pmx_buf_append(b, chunk, n);
    bool bad = ferror(f) || b->len > PEM_MAX || b->len == 0;
    fclose(f);
    pmx_wipe(chunk, sizeof chunk);
    if (bad) {
        snprintf(err, errlen, "%s: cannot read a PEM file of at most 1 MiB", path);
        return -1;
    }
    pmx_buf_cstr(b);
    return 0;
}

int pmx_http_api_start(pmx_worker_t *w, pmx_settings_t *settings, pmx_http_api_t **out)
{
    *out = NULL;
    int fd = pmx_worker_http_fd(w);
    if (fd < 0) return 0;
    const pmx_config_t *cfg = pmx_worker_config(w);
    char err[600];
    pmx_http_api_t *api = pmx_xcalloc(1, sizeof *api);
    api->w = w;
    api->cfg = cfg;
    api->settings = settings;
    if (pmx_dkim_master_key_load(cfg->master_key_file, api->master, err, sizeof err) < 0) {
        pmx_log_error("%s", err);
        free(api);
        return -1;
    }
    pmx_buf_t cert = PMX_BUF_INIT;
    if (cfg->http_tls_cert[0]) {
        if (read_pem(cfg->http_tls_cert, &cert, err, sizeof err) < 0 ||
            read_pem(cfg->http_tls_key, &api->key_pem, err, sizeof err) < 0) {
            pmx_log_error("[http] tls: %s", err);
            pmx_buf_free(&cert);
            pmx_buf_free_secret(&api->key_pem);
            pmx_wipe(api->master, sizeof api->master);
            free(api);
            return -1;
        }
        api->cert_pem = pmx_buf_detach(&cert);
    }
    pmx_http_server_opts_t o = {
        .name = "http",
        .idle_timeout_s = (unsigned)(cfg->http_idle_timeout_ms / 1000),
        .max_connections = (unsigned)cfg->http_max_connections,
        .max_per_address = (unsigned)cfg->http_max_connections_per_address,
        .memory_limit = 64 * 1024,
        .max_body = (size_t)cfg->http_max_body_size,
        .problem_json = true,
        .tls_cert_pem = api->cert_pem,
        .tls_key_pem = api->cert_pem ? pmx_buf_cstr(&api->key_pem) : NULL,
    };
    api->unsub = pmx_http_unsub_new(w, unsub_idle, api);
    api->srv = pmx_http_server_new(pmx_worker_loop(w), fd, &o, handler, api, err, sizeof err);
    if (!api->srv) {
        pmx_log_error("%s", err);
        pmx_http_unsub_free(api->unsub);
        free(api->cert_pem);
        pmx_buf_free_secret(&api->key_pem);
        pmx_wipe(api->master, sizeof api->master);
        free(api);
        return -1;
    }
    api->keys = pmx_worker_apikeys_new(pmx_worker_loop(w), pmx_worker_db(w));
    pmx_log_info("http listening address=%s public_url=%s tls=%s", cfg->http_listen,
                 cfg->http_public_url, api->cert_pem ? "yes" : "no");
    *out = api;
    return 0;
}

void pmx_http_api_drain(pmx_http_api_t *api, void (*done)(void *arg), void *arg)
{
    if (!api) {
        done(arg);
        return;
    }
    api->draining = true;
    api->drain_done = done;
    api->drain_arg = arg;
    pmx_http_server_stop_accepting(api->srv);
    maybe_drained(api);
}

void pmx_http_api_stop(pmx_http_api_t *api)
{
    if (!api) return;
    api->drain_done = NULL;
    /* Aborts requests still waiting: their ops cancel lookups and forget them. */
    pmx_http_server_close(api->srv);
    for (op_t *op = api->ops; op; op = op->next) op->api = NULL;   /* XADD replies still due */
    pmx_http_unsub_free(api->unsub);
    pmx_worker_apikeys_free(api->keys);
    free(api->cert_pem);
    pmx_buf_free_secret(&api->key_pem);
    pmx_wipe(api->master, sizeof api->master);
    free(api);
}
