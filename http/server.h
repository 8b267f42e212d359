/*
 * The worker's tiny HTTP/1.x server for the metrics listener (GET /healthz,
 * GET /metrics). Deliberately small and strict: one request per connection
 * (always "Connection: close"), the request head is capped at
 * PMX_HTTP_MAX_HEAD bytes and must arrive within PMX_HTTP_TIMEOUT_MS, only
 * GET and HEAD, CRLF line endings only, no request bodies, at most
 * PMX_HTTP_MAX_CONNS connections per worker, of which at most
 * PMX_HTTP_MAX_CONNS_PER_ADDR from one client address (more are closed at
 * once, without an answer). The deadline covers the whole connection: it is
 * closed PMX_HTTP_TIMEOUT_MS after it was accepted, answered or not (408 when
 * the head had not arrived). Memory per connection is bounded by the head
 * cap plus one read buffer, and the answer. The answer is produced
 * synchronously by one handler; routing lives in the worker.
 */
#ifndef PMX_HTTP_SERVER_H
#define PMX_HTTP_SERVER_H
#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#include "lib/buf.h"

#define PMX_HTTP_MAX_HEAD   8192
#define PMX_HTTP_MAX_TARGET 1024
#define PMX_HTTP_TIMEOUT_MS 5000
#define PMX_HTTP_MAX_CONNS  64
#define PMX_HTTP_MAX_CONNS_PER_ADDR 8

typedef struct {
    char method[8];                        /* "GET" or "HEAD" */
    char path[PMX_HTTP_MAX_TARGET + 1];    /* target without the query string */
} pmx_worker_http_req_t;

typedef struct {
    int         status;          /* 200 unless the handler says otherwise */
    const char *content_type;    /* default "text/plain; charset=utf-8" */
    pmx_buf_t   body;
} pmx_worker_http_resp_t;

typedef void (*pmx_worker_http_handler_fn)(void *arg, const pmx_worker_http_req_t *req,
                                           pmx_worker_http_resp_t *resp);

typedef struct pmx_worker_http pmx_worker_http_t;

/*
 * Parses a request head in buf[0..len). Returns 1 when a whole, valid head
 * (ending in CRLF CRLF) is there and fills req; 0 when more bytes are needed;
 * otherwise the HTTP status to answer with: 400 (malformed), 405 (method),
 * 414 (target too long), 431 (head too long), 505 (version).
 */
int pmx_worker_http_parse(const char *buf, size_t len, pmx_worker_http_req_t *req);

/* Serves the listening socket fd (inherited, already listening) on loop. */
pmx_worker_http_t *pmx_worker_http_new(uv_loop_t *loop, int fd,
                                       pmx_worker_http_handler_fn handler, void *arg,
                                       char *err, size_t errlen);
/* Stops accepting; connections in progress finish. */
void pmx_worker_http_stop_accepting(pmx_worker_http_t *h);
/* Closes the listener and every connection; frees h once the handles closed. */
void pmx_worker_http_close(pmx_worker_http_t *h);

#endif
