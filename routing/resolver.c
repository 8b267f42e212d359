/*
 * libunbound on the worker's libuv loop; see resolver.h.
 *
 * Each query is a small struct with its own timer (the deadline) in a list
 * of the resolver, so pmx_resolver_free can cancel them all; a query is freed
 * when its timer handle has closed, whichever way it ended.
 */
#include "routing/resolver.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unbound.h>

#include "lib/log.h"
#include "lib/mem.h"

struct pmx_dns_query {
    pmx_resolver_t  *r;
    pmx_dns_query_t *prev, *next;
    uv_timer_t       timer;
    int              async_id;
    bool             pending;       /* libunbound still owes an answer */
    pmx_dns_cb       cb;
    void            *arg;
};

struct pmx_resolver {
    uv_loop_t       *loop;
    struct ub_ctx   *ctx;
    uv_poll_t        poll;
    pmx_dns_query_t *head;
};

/* ---- configuration, shared with the CLI ---- */

int pmx_resolver_parse_spec(const char *spec, char *fwd, size_t fwdlen, char *err, size_t errlen)
{
    fwd[0] = '\0';
    if (!spec || !*spec) return 0;
    char host[INET6_ADDRSTRLEN + 1];
    const char *port = NULL;
    if (spec[0] == '[') {
        const char *close = strchr(spec, ']');
        if (!close || (size_t)(close - spec - 1) >= sizeof host) goto bad;
        memcpy(host, spec + 1, (size_t)(close - spec - 1));
        host[close - spec - 1] = '\0';
        if (close[1] == ':') port = close + 2;
        else if (close[1]) goto bad;
    } else {
        const char *colon = strchr(spec, ':');
        if (colon && strchr(colon + 1, ':')) colon = NULL;      /* a bare IPv6 address */
        size_t n = colon ? (size_t)(colon - spec) : strlen(spec);
        if (n == 0 || n >= sizeof host) goto bad;
        memcpy(host, spec, n);
        host[n] = '\0';
        if (colon) port = colon + 1;
    }
    unsigned char buf[16];
    if (inet_pton(AF_INET, host, buf) != 1 && inet_pton(AF_INET6, host, buf) != 1) goto bad;
    long p = 53;
    if (port) {
        char *end;
        errno = 0;
        p = strtol(port, &end, 10);
        if (errno || end == port || *end || p < 1 || p > 65535) goto bad;
    }
    snprintf(fwd, fwdlen, "%s@%ld", host, p);
    return 0;
bad:
    snprintf(err, errlen, "resolver '%s': expected an IP address, IP:PORT or [IPV6]:PORT", spec);
    return -1;
}

static struct ub_ctx *make_ctx(const char *spec, bool async, char *err, size_t errlen)
{
    char fwd[INET6_ADDRSTRLEN + 16];
    if (pmx_resolver_parse_spec(spec, fwd, sizeof fwd, err, errlen) < 0) return NULL;
    struct ub_ctx *ctx = ub_ctx_create();
    if (!ctx) {
        snprintf(err, errlen, "cannot create the DNS resolver (libunbound)");
        return NULL;
    }
    int rc;
    const char *what = "";
    /* A resolver on this host (127.0.0.53, dnsmasq, tests) must be usable. */
    if ((rc = ub_ctx_set_option(ctx, "do-not-query-localhost:", "no"))) what = "option";
    else if (async && (rc = ub_ctx_async(ctx, 1))) what = "threads";
    else if (fwd[0] && (rc = ub_ctx_set_fwd(ctx, fwd))) what = "resolver";
    else if (!fwd[0] && (rc = ub_ctx_resolvconf(ctx, NULL))) what = "/etc/resolv.conf";
    else if ((rc = ub_ctx_zone_remove(ctx, "test.")) && rc != UB_NOERROR) what = "zones";
    if (rc && strcmp(what, "zones") != 0) {
        snprintf(err, errlen, "DNS resolver: %s: %s", what, rc == UB_READFILE ? strerror(errno)
                                                                          : ub_strerror(rc));
        ub_ctx_delete(ctx);
        return NULL;
    }
    return ctx;
}

/* Fills a from libunbound's result. */
static void answer_of(const struct ub_result *res, int err, pmx_dns_answer_t *a)
{
    memset(a, 0, sizeof *a);
    if (err) {
        a->status = PMX_DNS_TEMPFAIL;
        a->why = ub_strerror(err);
        return;
    }
    if (res->nxdomain) {
        a->status = PMX_DNS_NXDOMAIN;
    } else if (res->rcode != 0 || res->bogus) {
        a->status = PMX_DNS_TEMPFAIL;
        a->why = res->bogus ? "DNSSEC validation failed"
               : res->rcode == 2 ? "SERVFAIL" : res->rcode == 5 ? "REFUSED" : "DNS error";
        return;
    } else {
        a->status = PMX_DNS_OK;
        size_t n = 0;
        while (res->havedata && res->data && res->data[n]) n++;
        a->rdata = (const char *const *)res->data;
        a->rdlen = res->len;
        a->n = n;
    }
    a->ttl = res->ttl > 0 ? (uint32_t)res->ttl : 0;
    a->secure = res->secure != 0;
}

/* ---- the asynchronous resolver ---- */

static void query_closed(uv_handle_t *h)
{
    free(h->data);
}

/* Ends q (no callback here): out of the list, its timer closed, then freed. */
static void query_end(pmx_dns_query_t *q)
{
    pmx_resolver_t *r = q->r;
    if (q->prev) q->prev->next = q->next;
    else r->head = q->next;
    if (q->next) q->next->prev = q->prev;
    if (q->pending) ub_cancel(r->ctx, q->async_id);
    q->pending = false;
    uv_timer_stop(&q->timer);
    uv_close((uv_handle_t *)&q->timer, query_closed);
}

static void on_answer(void *arg, int err, struct ub_result *res)
{
    pmx_dns_query_t *q = arg;
    q->pending = false;
    pmx_dns_answer_t a;
    answer_of(res, err, &a);
    pmx_dns_cb cb = q->cb;
    void *cbarg = q->arg;
    query_end(q);
    cb(cbarg, &a);
    if (res) ub_resolve_free(res);
}

static void on_deadline(uv_timer_t *t)
{
    pmx_dns_query_t *q = t->data;
    pmx_dns_answer_t a = { .status = PMX_DNS_TEMPFAIL, .why = "timeout" };
    pmx_dns_cb cb = q->cb;
    void *cbarg = q->arg;
    query_end(q);
    cb(cbarg, &a);
}

static void on_readable(uv_poll_t *h, int status, int events)
{
    (void)events;
    pmx_resolver_t *r = h->data;
    if (status < 0) {
        pmx_log_warn("resolver: poll failed: %s", uv_strerror(status));
        return;
    }
    int rc = ub_process(r->ctx);
    if (rc) pmx_log_warn("resolver: %s", ub_strerror(rc));
}

int pmx_resolver_new(uv_loop_t *loop, const char *spec, pmx_resolver_t **out, char *err,
                     size_t errlen)
{
    struct ub_ctx *ctx = make_ctx(spec, true, err, errlen);
    if (!ctx) return -1;
    pmx_resolver_t *r = pmx_xcalloc(1, sizeof *r);
    r->loop = loop;
    r->ctx = ctx;
    int rc = uv_poll_init(loop, &r->poll, ub_fd(ctx));
    if (rc < 0) {
        snprintf(err, errlen, "resolver: %s", uv_strerror(rc));
        ub_ctx_delete(ctx);
        free(r);
        return -1;
    }
    r->poll.data = r;
    uv_poll_start(&r->poll, UV_READABLE, on_readable);
    uv_unref((uv_handle_t *)&r->poll);
    *out = r;
    return 0;
}

pmx_dns_query_t *pmx_resolver_query(pmx_resolver_t *r, const char *name, int type, pmx_dns_cb cb,
                                    void *arg)
{
    pmx_dns_query_t *q = pmx_xcalloc(1, sizeof *q);
    q->r = r;
    q->cb = cb;
    q->arg = arg;
    int rc = ub_resolve_async(r->ctx, name, type, 1, q, on_answer, &q->async_id);
    if (rc) {
        pmx_log_warn("resolver: cannot ask for %s type %d: %s", name, type, ub_strerror(rc));
        free(q);
        return NULL;
    }
    q->pending = true;
    uv_timer_init(r->loop, &q->timer);
    q->timer.data = q;
    uv_timer_start(&q->timer, on_deadline, PMX_RESOLVER_TIMEOUT_MS, 0);
    q->next = r->head;
    if (r->head) r->head->prev = q;
    r->head = q;
    return q;
}

void pmx_resolver_cancel(pmx_resolver_t *r, pmx_dns_query_t *q)
{
    (void)r;
    if (q) query_end(q);
}

static void poll_closed(uv_handle_t *h)
{
    free(h->data);
}

void pmx_resolver_free(pmx_resolver_t *r)
{
    if (!r) return;
    while (r->head) query_end(r->head);
    uv_poll_stop(&r->poll);
    ub_ctx_delete(r->ctx);
    r->ctx = NULL;
    uv_close((uv_handle_t *)&r->poll, poll_closed);
}

/* ---- blocking, for the CLI ---- */

/* The same context, asked in the background thread; the CLI waits on its
 * pipe with poll(2) so every query has the same deadline as a worker's. */
void *pmx_resolver_sync_new(const char *spec, char *err, size_t errlen)
{
    return make_ctx(spec, true, err, errlen);
}

typedef struct {
    bool              done;
    int               err;
    struct ub_result *res;
} sync_wait_t;

static void on_sync_answer(void *arg, int err, struct ub_result *res)
{
    sync_wait_t *w = arg;
    w->done = true;
    w->err = err;
    w->res = res;
}

int pmx_resolver_sync_query(void *ctx, const char *name, int type, pmx_dns_answer_t *out,
                            void **to_free)
{
    sync_wait_t w = { 0 };
    int id;
    *to_free = NULL;
    int rc = ub_resolve_async(ctx, name, type, 1, &w, on_sync_answer, &id);
    if (rc) {
        answer_of(NULL, rc, out);
        return 0;
    }
    uint64_t deadline = uv_hrtime() / 1000000 + PMX_RESOLVER_TIMEOUT_MS;
    while (!w.done) {
        uint64_t now = uv_hrtime() / 1000000;
        if (now >= deadline) {
            ub_cancel(ctx, id);
            *out = (pmx_dns_answer_t){ .status = PMX_DNS_TEMPFAIL, .why = "timeout" };
            return 0;
        }
        struct pollfd pfd = { .fd = ub_fd(ctx), .events = POLLIN };
        if (poll(&pfd, 1, (int)(deadline - now)) > 0) ub_process(ctx);
    }
    answer_of(w.res, w.err, out);
    *to_free = w.res;
    return 0;
}

void pmx_resolver_sync_free_answer(void *to_free)
{
    if (to_free) ub_resolve_free(to_free);
}

void pmx_resolver_sync_free(void *ctx)
{
    if (ctx) ub_ctx_delete(ctx);
}
