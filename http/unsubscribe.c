/*
 * One-click unsubscribe, GET and POST /u/<token>; see unsubscribe.h and
 * docs/http.md ("One-click unsubscribe").
 */
#include "http/unsubscribe.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "http/unsub_form.h"
#include "lib/buf.h"
#include "lib/encode.h"
#include "lib/log.h"
#include "lib/mem.h"
#include "lib/reftoken.h"
#include "sql/q_unsubscribe.h"

#define PREFIX      "/u/"
#define LIMIT_SLOTS 256

/* The page's only style, allowed by its hash in the Content-Security-Policy. */
static const char STYLE[] =
    "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;background:#f4f4f5;"
    "color:#18181b;margin:0;padding:2rem 1rem}"
    "main{max-width:28rem;margin:0 auto;background:#fff;border-radius:8px;padding:1.5rem 2rem;"
    "box-shadow:0 1px 3px rgba(0,0,0,.12)}"
    "h1{font-size:1.3rem;margin:0 0 1rem}"
    "p{line-height:1.5}"
    "button{font:inherit;font-size:1rem;padding:.6rem 1.4rem;border:0;border-radius:6px;"
    "background:#b91c1c;color:#fff;cursor:pointer}"
    "button:hover{background:#991b1b}"
    ".done{color:#166534}";

typedef struct uop uop_t;

typedef struct {
    char     client[48];
    uint64_t minute;
    unsigned bad;
} limit_slot_t;

struct pmx_http_unsub {
    pmx_worker_t *w;
    void        (*idle)(void *arg);
    void         *idle_arg;
    uop_t        *ops;       /* waiting for Postgres, doubly linked */
    size_t        waiting;
    char          csp[256];
    uint64_t      seed;
    limit_slot_t  slots[LIMIT_SLOTS];
};

struct uop {
    pmx_http_unsub_t   *u;
    uop_t              *prev, *next;
    pmx_http_req_t     *req;     /* NULL once aborted */
    pmx_db_async_req_t *q;       /* NULL once answered */
    bool                post;
    bool                html;
    char                msg_id[PMX_REF_MSG_ID_LEN + 1];
    unsigned            idx;
    char                client[48];
};

/* ---- answers ---------------------------------------------------------------------- */

static void security_headers(pmx_http_unsub_t *u, pmx_http_req_t *req, bool html)
{
    pmx_http_req_add_header(req, "Cache-Control", "no-store");
    pmx_http_req_add_header(req, "Referrer-Policy", "no-referrer");   /* the token is in the URL */
    pmx_http_req_add_header(req, "X-Content-Type-Options", "nosniff");
    if (html) {
        pmx_http_req_add_header(req, "Content-Security-Policy", u->csp);
        pmx_http_req_add_header(req, "X-Frame-Options", "DENY");
    }
}

static void page_head(pmx_buf_t *b, const char *title)
{
    pmx_buf_append_str(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                          "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                          "<meta name=\"robots\" content=\"noindex, nofollow\"><title>");
    pmx_html_escape(b, title);
    pmx_buf_appendf(b, "</title><style>%s</style></head>\n<body><main>\n<h1>", STYLE);
    pmx_html_escape(b, title);
    pmx_buf_append_str(b, "</h1>\n");
}

static void page_tail(pmx_buf_t *b)
{
    pmx_buf_append_str(b, "</main></body></html>\n");
}

/* A short answer: an HTML page with one paragraph, or the text as text/plain. */
static void answer(pmx_http_unsub_t *u, pmx_http_req_t *req, bool html, int status,
                   const char *title, const char *text)
{
    security_headers(u, req, html);
    pmx_buf_t b = PMX_BUF_INIT;
    if (html) {
        page_head(&b, title);
        pmx_buf_append_str(&b, "<p>");
        pmx_html_escape(&b, text);
        pmx_buf_append_str(&b, "</p>\n");
        page_tail(&b);
        pmx_http_respond(req, status, "text/html; charset=utf-8", b.data, b.len);
    } else {
        pmx_buf_appendf(&b, "%s\n", text);
        pmx_http_respond(req, status, "text/plain; charset=utf-8", b.data, b.len);
    }
    pmx_buf_free(&b);
}

static void unavailable(pmx_http_unsub_t *u, pmx_http_req_t *req, bool html)
{
    pmx_http_req_add_header(req, "Retry-After", "30");
    answer(u, req, html, 503, "Try again later",
           "The unsubscribe service is unavailable right now; nothing was changed. "
           "Please try again in a minute.");
}

static void not_found(pmx_http_unsub_t *u, pmx_http_req_t *req, bool html)
{
    answer(u, req, html, 404, "Link not valid",
           "This unsubscribe link is not valid. Use the link from the message itself.");
}

static void masked(pmx_buf_t *b, const char *addr)
{
    pmx_buf_t m = PMX_BUF_INIT;
    pmx_unsub_mask_address(&m, addr);
    pmx_buf_append_str(b, "<strong id=\"address\">");
    pmx_html_escape(b, pmx_buf_cstr(&m));
    pmx_buf_append_str(b, "</strong>");
    pmx_buf_free(&m);
}

/* "mail from <b>Acme</b>" [" in the category <b>news</b>"] */
static void mail_from(pmx_buf_t *b, const char *ws_name, const char *scope)
{
    pmx_buf_append_str(b, "mail from <strong>");
    pmx_html_escape(b, ws_name);
    pmx_buf_append_str(b, "</strong>");
    if (strcmp(scope, "*") != 0) {
        pmx_buf_append_str(b, " in the category <strong>");
        pmx_html_escape(b, scope);
        pmx_buf_append_str(b, "</strong>");
    }
}

/* The done state: "<b>j***@example.com</b> will no longer receive mail from …." */
static void done_par(pmx_buf_t *b, const char *ws_name, const char *addr, const char *scope)
{
    pmx_buf_append_str(b, "<p class=\"done\" id=\"state\" data-state=\"unsubscribed\">");
    masked(b, addr);
    pmx_buf_append_str(b, " is unsubscribed and will no longer receive ");
    mail_from(b, ws_name, scope);
    pmx_buf_append_str(b, ".</p>\n");
}

/* GET: the page (lookup rows: name, address, scope, already). */
static void answer_page(pmx_http_unsub_t *u, pmx_http_req_t *req, const PGresult *res)
{
    const char *name = PQgetvalue(res, 0, 0), *addr = PQgetvalue(res, 0, 1),
               *scope = PQgetvalue(res, 0, 2);
    bool already = strcmp(PQgetvalue(res, 0, 3), "t") == 0;
    security_headers(u, req, true);
    pmx_buf_t b = PMX_BUF_INIT;
    page_head(&b, "Unsubscribe");
    if (already) {
        done_par(&b, name, addr, scope);
    } else {
        pmx_buf_append_str(&b, "<p id=\"state\" data-state=\"subscribed\">Stop sending ");
        mail_from(&b, name, scope);
        pmx_buf_append_str(&b, " to ");
        masked(&b, addr);
        pmx_buf_append_str(&b, "?</p>\n"
                               /* No action: the form posts back to this very URL, behind
                                * any reverse proxy. The body is RFC 8058's. */
                               "<form method=\"post\">"
                               "<input type=\"hidden\" name=\"" PMX_UNSUB_FORM_NAME
                               "\" value=\"" PMX_UNSUB_FORM_VALUE "\">"
                               "<button type=\"submit\" id=\"unsubscribe\">Unsubscribe</button>"
                               "</form>\n");
    }
    page_tail(&b);
    pmx_http_respond(req, 200, "text/html; charset=utf-8", b.data, b.len);
    pmx_buf_free(&b);
}

/* POST: done (apply rows: workspace id, address, scope, added, name). */
static void answer_done(pmx_http_unsub_t *u, pmx_http_req_t *req, bool html, const PGresult *res)
{
    const char *addr = PQgetvalue(res, 0, 1), *scope = PQgetvalue(res, 0, 2);
    security_headers(u, req, html);
    pmx_buf_t b = PMX_BUF_INIT;
    if (html) {
        page_head(&b, "Unsubscribed");
        done_par(&b, PQgetvalue(res, 0, 4), addr, scope);
        page_tail(&b);
        pmx_http_respond(req, 200, "text/html; charset=utf-8", b.data, b.len);
    } else {
        pmx_buf_append_str(&b, "unsubscribed\n");
        pmx_http_respond(req, 200, "text/plain; charset=utf-8", b.data, b.len);
    }
    pmx_buf_free(&b);
}

/* ---- waiting for Postgres ------------------------------------------------------------- */

static void uop_free(uop_t *op)
{
    pmx_http_unsub_t *u = op->u;
    if (op->prev) op->prev->next = op->next;
    else u->ops = op->next;
    if (op->next) op->next->prev = op->prev;
    free(op);
    u->waiting--;
    if (u->waiting == 0 && u->idle) u->idle(u->idle_arg);
}

static void uop_aborted(void *arg)
{
    uop_t *op = arg;
    op->req = NULL;
    if (op->q) pmx_db_async_cancel(op->q);
    op->q = NULL;
    uop_free(op);
}

static void query_done(pmx_db_async_t *db, const PGresult *res, void *arg)
{
    (void)db;
    uop_t *op = arg;
    pmx_http_unsub_t *u = op->u;
    op->q = NULL;
    pmx_http_req_t *req = op->req;
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
        char why[200];
        snprintf(why, sizeof why, "%s", res ? PQresultErrorMessage(res) : "connection lost");
        why[strcspn(why, "\r\n")] = '\0';
        pmx_log_warn("unsubscribe %s failed msg=%s idx=%u reason=\"%s\"",
                     op->post ? "apply" : "lookup", op->msg_id, op->idx, why);
        unavailable(u, req, op->html);
    } else if (PQntuples(res) != 1) {
        pmx_log_info("unsubscribe client=%s msg=%s idx=%u: no such recipient", op->client,
                     op->msg_id, op->idx);
        not_found(u, req, op->html);
    } else if (!op->post) {
        answer_page(u, req, res);
    } else {
        bool added = strcmp(PQgetvalue(res, 0, 3), "1") == 0;
        pmx_log_info("unsubscribe client=%s ws=%s msg=%s idx=%u scope=%s via=one-click %s",
                     op->client, PQgetvalue(res, 0, 0), op->msg_id, op->idx,
                     PQgetvalue(res, 0, 2), added ? "added" : "already");
        answer_done(u, req, op->html, res);
    }
    uop_free(op);
}

/* ---- bad-token limit per client address --------------------------------------------- */

static limit_slot_t *limit_slot(pmx_http_unsub_t *u, const char *client)
{
    uint64_t h = u->seed ^ 1469598103934665603ull;   /* FNV-1a, keyed */
    for (const unsigned char *p = (const unsigned char *)client; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return &u->slots[h % LIMIT_SLOTS];
}

static bool limited(pmx_http_unsub_t *u, const char *client, uint64_t minute)
{
    const limit_slot_t *s = limit_slot(u, client);
    return s->minute == minute && strcmp(s->client, client) == 0 &&
           s->bad >= PMX_UNSUB_BAD_PER_MIN;
}

static void count_bad(pmx_http_unsub_t *u, const char *client, uint64_t minute)
{
    limit_slot_t *s = limit_slot(u, client);
    if (s->minute != minute || strcmp(s->client, client) != 0) {
        /* A new minute, or another address in this slot: its count starts over. */
        snprintf(s->client, sizeof s->client, "%s", client);
        s->minute = minute;
        s->bad = 0;
    }
    s->bad++;
}

/* ---- routing ---------------------------------------------------------------------------- */

static bool accepts_html(const pmx_http_req_t *req)
{
    const char *a = pmx_http_req_header(req, "Accept");
    return a && (strcasestr(a, "text/html") || strcasestr(a, "application/xhtml+xml"));
}

bool pmx_http_unsub_route(pmx_http_unsub_t *u, pmx_http_req_t *req)
{
    const char *path = pmx_http_req_path(req), *m = pmx_http_req_method(req);
    if (strncmp(path, PREFIX, strlen(PREFIX)) != 0) return false;
    bool get = strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0, post = strcmp(m, "POST") == 0;
    bool html = get || accepts_html(req);
    if (!get && !post) {
        pmx_http_req_add_header(req, "Allow", "GET, HEAD, POST");
        answer(u, req, html, 405, "Method not allowed", "Use GET or POST.");
        return true;
    }
    const char *client = pmx_http_req_client(req);
    uint64_t minute = uv_now(pmx_worker_loop(u->w)) / 60000u;
    if (limited(u, client, minute)) {
        pmx_http_req_add_header(req, "Retry-After", "60");
        answer(u, req, html, 429, "Too many requests",
               "Too many invalid unsubscribe links from your address; try again in a minute.");
        return true;
    }
    const char *tok = path + strlen(PREFIX);
    uop_t tmp = { .post = post, .html = html };
    if (pmx_ref_token_check(pmx_worker_ref_key(u->w), PMX_REF_UNSUBSCRIBE, tok, strlen(tok),
                            tmp.msg_id, &tmp.idx) < 0) {
        count_bad(u, client, minute);
        pmx_log_info("unsubscribe client=%s: not a valid token", client);
        not_found(u, req, html);
        return true;
    }
    if (post) {
        size_t len;
        const char *body = pmx_http_req_body(req, &len);
        char err[200];
        pmx_unsub_form_result_t r = len > PMX_UNSUB_MAX_BODY
            ? (snprintf(err, sizeof err, "the body is larger than a one-click form"), PMX_UNSUB_FORM_BAD)
            : pmx_unsub_form_check(pmx_http_req_header(req, "Content-Type"), body, len, err,
                                   sizeof err);
        if (r != PMX_UNSUB_FORM_OK) {
            pmx_log_info("unsubscribe client=%s msg=%s idx=%u refused: %s", client, tmp.msg_id,
                         tmp.idx, err);
            answer(u, req, html, r == PMX_UNSUB_FORM_MEDIA ? 415 : 400, "Not unsubscribed", err);
            return true;
        }
    }
    pmx_db_async_t *db = pmx_worker_db(u->w);
    if (pmx_worker_is_draining(u->w) || u->waiting >= PMX_UNSUB_INFLIGHT || !db ||
        !pmx_db_async_is_up(db)) {
        unavailable(u, req, html);
        return true;
    }
    uop_t *op = pmx_xmalloc(sizeof *op);
    *op = tmp;
    op->u = u;
    op->req = req;
    snprintf(op->client, sizeof op->client, "%s", client);
    op->q = post ? pmx_db_unsub_apply(db, op->msg_id, op->idx, "one-click", query_done, op)
                 : pmx_db_unsub_lookup(db, op->msg_id, op->idx, query_done, op);
    if (!op->q) {
        free(op);
        unavailable(u, req, html);
        return true;
    }
    op->prev = NULL;
    op->next = u->ops;
    if (op->next) op->next->prev = op;
    u->ops = op;
    u->waiting++;
    pmx_http_req_on_abort(req, uop_aborted, op);
    return true;
}

/* ---- life ---------------------------------------------------------------------------------- */

pmx_http_unsub_t *pmx_http_unsub_new(pmx_worker_t *w, void (*idle)(void *arg), void *arg)
{
    pmx_http_unsub_t *u = pmx_xcalloc(1, sizeof *u);
    u->w = w;
    u->idle = idle;
    u->idle_arg = arg;
    u->seed = uv_hrtime() ^ ((uint64_t)(uintptr_t)u << 16);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    EVP_Digest(STYLE, strlen(STYLE), md, &mdlen, EVP_sha256(), NULL);
    pmx_buf_t h = PMX_BUF_INIT;
    pmx_base64_encode(&h, md, mdlen);
    snprintf(u->csp, sizeof u->csp,
             "default-src 'none'; style-src 'sha256-%s'; form-action 'self'; "
             "frame-ancestors 'none'; base-uri 'none'",
             pmx_buf_cstr(&h));
    pmx_buf_free(&h);
    return u;
}

size_t pmx_http_unsub_waiting(const pmx_http_unsub_t *u)
{
    return u ? u->waiting : 0;
}

void pmx_http_unsub_free(pmx_http_unsub_t *u)
{
    if (!u) return;
    /* The server closed first, so every waiting request was aborted; a record
     * left here would be a bug: drop its query rather than leak. */
    u->idle = NULL;
    while (u->ops) uop_aborted(u->ops);
    free(u);
}
