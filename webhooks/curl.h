/*
 * HTTP POSTs on the worker's libuv loop: libcurl's multi interface driven
 * by curl_multi_socket_action, with one uv_poll_t per socket curl asks us to
 * watch and one uv_timer_t for curl's timeout (the "multi-uv" pattern of
 * libcurl's examples). Nothing here blocks the loop: name resolution runs in
 * curl's resolver thread, connections and TLS are non-blocking.
 *
 * Every POST: http:// or https:// only, TLS peer and host name verified
 * against the system store, no redirects followed, no proxy from the
 * environment, one overall timeout (connect + TLS + request + answer).
 * Connections are kept and reused between POSTs to the same host.
 *
 * Ownership: post() copies url, headers and body. The callback is called
 * exactly once per accepted POST, from a loop callback (never from inside
 * post()), unless pmx_webhooks_http_free() comes first: then it is not
 * called at all. What the callback is given lives only during the call.
 * free() may be called from inside a callback.
 */
#ifndef PMX_WEBHOOKS_CURL_H
#define PMX_WEBHOOKS_CURL_H
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

typedef struct pmx_webhooks_http pmx_webhooks_http_t;

typedef struct {
    long        status;      /* the HTTP status; 0 when no answer came */
    const char *error;       /* NULL when an answer came; else why not (one line) */
    const char *body;        /* the answer's first bytes (at most 256), "" if none */
    uint64_t    ms;          /* how long it took */
} pmx_webhooks_http_result_t;

typedef void (*pmx_webhooks_http_fn)(const pmx_webhooks_http_result_t *r, void *arg);

/* NULL (logged) if libcurl cannot be set up. */
pmx_webhooks_http_t *pmx_webhooks_http_new(uv_loop_t *loop);

/*
 * Starts one POST of body with the given header lines ("Name: value").
 * Returns 0, or -1 (logged) when curl cannot set it up; the callback is then
 * not called. A URL curl cannot use (another scheme, no host) fails when the
 * transfer starts: through the callback, like any other error.
 */
int pmx_webhooks_http_post(pmx_webhooks_http_t *h, const char *url,
                           const char *const *headers, size_t nheaders,
                           const char *body, size_t body_len, uint64_t timeout_ms,
                           pmx_webhooks_http_fn cb, void *arg);

/* POSTs started and not yet called back. */
size_t pmx_webhooks_http_active(const pmx_webhooks_http_t *h);

/* Aborts every POST (no callbacks) and releases everything once the loop
 * has closed the handles. */
void pmx_webhooks_http_free(pmx_webhooks_http_t *h);

#endif
