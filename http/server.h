/*
 * postmux's one HTTP server (docs/http.md): libmicrohttpd driven by a
 * worker's libuv loop, on a listening socket the supervisor opened and every
 * worker inherited. The private metrics listener (GET /metrics, /healthz) and
 * the public API (http/api.h) are two instances of it.
 *
 * Requests reach the handler once whole (head and body); the handler answers
 * with pmx_http_respond exactly once, at once or later from any loop callback
 * (the connection is suspended meanwhile, other connections go on).
 *
 * Limits, enforced before the handler runs:
 * - idle_timeout_s: a connection silent that long is closed (libmicrohttpd's
 *   connection timeout), and a request must arrive whole (head and body)
 *   within that time from the connection's start or the previous answer, so
 *   a client that trickles bytes is cut too (the socket is shut down);
 * - max_connections per server (i.e. per worker), max_per_address per client
 *   address per worker: more are accepted and closed at once;
 * - memory_limit bytes of request head per connection (431 above it);
 * - max_body bytes of body (413, from Content-Length before reading, or once
 *   the body grows past it); 0 = requests with a body are answered 413.
 *
 * Ownership: req belongs to the server. It stays valid until the handler has
 * responded, or until the abort callback (pmx_http_req_on_abort) ran, which
 * happens when the server closes while the answer is pending; after abort
 * the handler must not respond.
 */
#ifndef PMX_HTTP_SERVER_H
#define PMX_HTTP_SERVER_H
#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#include "lib/buf.h"

typedef struct pmx_http_server pmx_http_server_t;
typedef struct pmx_http_req    pmx_http_req_t;

typedef void (*pmx_http_handler_fn)(void *arg, pmx_http_req_t *req);

typedef struct {
    const char *name;              /* in logs: "metrics", "http" */
    unsigned    idle_timeout_s;    /* >= 1 */
    unsigned    max_connections;
    unsigned    max_per_address;   /* 0 = no per-address limit */
    size_t      memory_limit;      /* per connection, bytes */
    size_t      max_body;          /* bytes; 0 = no bodies */
    bool        problem_json;      /* errors the server answers itself: RFC 9457 JSON */
    const char *tls_cert_pem;      /* NULL = plain HTTP; else with tls_key_pem */
    const char *tls_key_pem;
} pmx_http_server_opts_t;

/* Serves fd (inherited, listening, non-blocking). NULL + err on failure. */
pmx_http_server_t *pmx_http_server_new(uv_loop_t *loop, int fd, const pmx_http_server_opts_t *o,
                                       pmx_http_handler_fn handler, void *arg,
                                       char *err, size_t errlen);
/* Stops accepting (this process's copy of the socket is closed); requests in
 * progress finish. */
void pmx_http_server_stop_accepting(pmx_http_server_t *s);
/* Answers pending: requests handed to the handler and not answered yet. */
size_t pmx_http_server_pending(const pmx_http_server_t *s);
/* Aborts pending requests (their abort callbacks run), closes every
 * connection and frees s once its handles have closed. */
void pmx_http_server_close(pmx_http_server_t *s);

/* ---- one request ---------------------------------------------------------------- */
const char *pmx_http_req_method(const pmx_http_req_t *req);
const char *pmx_http_req_path(const pmx_http_req_t *req);     /* without the query */
/* A request header (case-insensitive name), NULL when absent. */
const char *pmx_http_req_header(const pmx_http_req_t *req, const char *name);
/* A query-string argument (percent-decoded), NULL when absent. */
const char *pmx_http_req_arg(const pmx_http_req_t *req, const char *name);
const char *pmx_http_req_body(const pmx_http_req_t *req, size_t *len);
const char *pmx_http_req_client(const pmx_http_req_t *req);   /* "1.2.3.4" for logs */
/* fn(arg) is called if the server closes before the answer; see above. */
void pmx_http_req_on_abort(pmx_http_req_t *req, void (*fn)(void *arg), void *arg);
/* An extra response header for the coming pmx_http_respond (copied). */
void pmx_http_req_add_header(pmx_http_req_t *req, const char *name, const char *value);
/* Answers: status, content type, body (copied). HEAD gets the head only. */
void pmx_http_respond(pmx_http_req_t *req, int status, const char *content_type,
                      const char *body, size_t len);

/* An RFC 9457 problem document: {"type","title","status","detail"[,"field"]}. */
void pmx_http_problem(pmx_http_req_t *req, int status, const char *detail, const char *field);
/* The document pmx_http_problem answers, appended to b: JSON whatever detail and
 * field hold (bytes that are not UTF-8 become U+FFFD). */
void pmx_http_problem_json(pmx_buf_t *b, int status, const char *detail, const char *field);
const char *pmx_http_status_title(int status);

#endif
