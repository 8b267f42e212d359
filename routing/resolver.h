/*
 * The asynchronous DNS resolver of direct delivery (docs/delivery.md, "Direct
 * delivery"): libunbound on the worker's libuv loop. One context per worker;
 * libunbound resolves in its own thread (ub_ctx_async) and signals answers on
 * a pipe (ub_fd), which a uv_poll_t watches and drains with ub_process, so
 * the loop never blocks. libunbound keeps its own cache, which honours every
 * record's TTL; routing/mx.c keeps the composed answer per domain on top.
 *
 * Why libunbound (README, dependencies): it validates DNSSEC (which DANE
 * needs), caches by TTL, reads /etc/resolv.conf or forwards to one resolver.
 *
 * Where it asks: [mx] resolver of postmux.conf(5): "" = the name servers of
 * /etc/resolv.conf; "HOST" or "HOST:PORT" (IPv6 as "[ADDR]:PORT") = that
 * recursive resolver only. RFC 6761's "test." zone, which libunbound answers
 * itself with NXDOMAIN by default, is left to the resolver (so a resolver can
 * serve test domains).
 *
 * Contract:
 * - pmx_resolver_query's callback runs exactly once, from the loop, never
 *   from inside pmx_resolver_query, unless the query is cancelled first
 *   (pmx_resolver_cancel: then never). The answer and its strings are valid
 *   during the call only.
 * - Each query has its own deadline (PMX_RESOLVER_TIMEOUT_MS): past it the
 *   answer is PMX_DNS_TEMPFAIL "timeout", and libunbound's late answer is
 *   dropped.
 * - pmx_resolver_free cancels every query (no callbacks) and closes the poll
 *   handle on the loop; the structure is freed when the handle is closed.
 * Errors: 0 / -1 with a reason in err.
 */
#ifndef PMX_ROUTING_RESOLVER_H
#define PMX_ROUTING_RESOLVER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#define PMX_RESOLVER_TIMEOUT_MS 15000u
#define PMX_DNS_TYPE_A     1
#define PMX_DNS_TYPE_MX    15
#define PMX_DNS_TYPE_TXT   16
#define PMX_DNS_TYPE_AAAA  28

typedef enum {
    PMX_DNS_OK = 0,       /* records in rdata (may be 0: NODATA, the name exists) */
    PMX_DNS_NXDOMAIN,     /* the name does not exist */
    PMX_DNS_TEMPFAIL,     /* SERVFAIL, REFUSED, timeout, network: ask again later */
} pmx_dns_status_t;

typedef struct {
    pmx_dns_status_t     status;
    const char          *why;        /* TEMPFAIL: a short reason */
    const char *const   *rdata;      /* n records' RDATA in wire form */
    const int           *rdlen;
    size_t               n;
    uint32_t             ttl;        /* seconds the answer may be kept */
    bool                 secure;     /* DNSSEC-validated (needs a trust anchor) */
} pmx_dns_answer_t;

typedef void (*pmx_dns_cb)(void *arg, const pmx_dns_answer_t *a);

typedef struct pmx_resolver pmx_resolver_t;
typedef struct pmx_dns_query pmx_dns_query_t;

/* Creates the context: spec is [mx] resolver ("" or HOST[:PORT]). */
int  pmx_resolver_new(uv_loop_t *loop, const char *spec, pmx_resolver_t **out, char *err,
                      size_t errlen);
/* Asks for (name, type) in class IN. Returns the query (for cancel), or NULL
 * with the reason logged when libunbound refused it at once (then cb never runs). */
pmx_dns_query_t *pmx_resolver_query(pmx_resolver_t *r, const char *name, int type, pmx_dns_cb cb,
                                    void *arg);
void pmx_resolver_cancel(pmx_resolver_t *r, pmx_dns_query_t *q);
void pmx_resolver_free(pmx_resolver_t *r);

/*
 * For the CLI (blocking): a libunbound context configured like the worker's
 * (spec as above), as void * so callers need not include unbound.h; free with
 * pmx_resolver_sync_free. pmx_resolver_sync_query answers like the callback.
 * free_answer releases what the answer points to.
 */
void *pmx_resolver_sync_new(const char *spec, char *err, size_t errlen);
int   pmx_resolver_sync_query(void *ctx, const char *name, int type, pmx_dns_answer_t *out,
                              void **to_free);
void  pmx_resolver_sync_free_answer(void *to_free);
void  pmx_resolver_sync_free(void *ctx);

/* Parses [mx] resolver: "" ok; HOST, HOST:PORT, [V6]:PORT as unbound's "ADDR@PORT". */
int  pmx_resolver_parse_spec(const char *spec, char *fwd, size_t fwdlen, char *err, size_t errlen);

#endif
