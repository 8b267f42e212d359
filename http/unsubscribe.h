/*
 * One-click unsubscribe on the public listener (docs/http.md, "One-click
 * unsubscribe"; RFC 8058, RFC 2369): the routes under /u/ that http/api.c hands
 * over.
 *
 * - GET|HEAD /u/<token>: a small self-contained HTML page (the workspace name,
 *   the masked address, whether it is unsubscribed already, and a button
 *   whose form POSTs List-Unsubscribe=One-Click back to the same URL).
 *   Nothing is written: link scanners follow GETs.
 * - POST /u/<token> with exactly List-Unsubscribe=One-Click
 *   (http/unsub_form.h): pmx_db_unsub_apply (sql/q_unsubscribe.h) adds the
 *   suppression (reason unsubscribe, scope the message's category else '*')
 *   and the event message.unsubscribed, once; repeating changes nothing.
 *   200, as HTML when the client accepts text/html (the page's button), plain
 *   text otherwise (mail providers).
 *
 * A token that fails lib/reftoken.h's check for purpose 'u' is 404 before
 * anything is looked up; so is a token whose recipient row does not exist.
 * Postgres down: 503 with Retry-After (nothing was written; the client
 * retries). Per worker: at most PMX_UNSUB_INFLIGHT requests wait for Postgres
 * (more: 503), and a client address that sent PMX_UNSUB_BAD_PER_MIN bad tokens
 * within a minute gets 429 on /u/ for the rest of that minute.
 *
 * Ownership: a request waiting for Postgres is held by a record that the
 * server's abort callback or the query's answer frees; pmx_http_unsub_free
 * expects the server closed first (its abort callbacks have run).
 */
#ifndef PMX_HTTP_UNSUBSCRIBE_H
#define PMX_HTTP_UNSUBSCRIBE_H
#include <stdbool.h>
#include <stddef.h>

#include "http/server.h"
#include "workers/worker.h"

#define PMX_UNSUB_INFLIGHT     64
#define PMX_UNSUB_BAD_PER_MIN  30
#define PMX_UNSUB_MAX_BODY     8192

typedef struct pmx_http_unsub pmx_http_unsub_t;

/* idle(arg) runs whenever the last request waiting for Postgres is answered
 * (for the API's drain). */
pmx_http_unsub_t *pmx_http_unsub_new(pmx_worker_t *w, void (*idle)(void *arg), void *arg);
/* true when req's path is under /u/: it is answered (now or later). false:
 * not ours, req untouched. */
bool   pmx_http_unsub_route(pmx_http_unsub_t *u, pmx_http_req_t *req);
/* Requests waiting for Postgres. */
size_t pmx_http_unsub_waiting(const pmx_http_unsub_t *u);
void   pmx_http_unsub_free(pmx_http_unsub_t *u);

#endif
