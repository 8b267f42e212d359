/*
 * Where a recipient domain's mail goes (docs/delivery.md, "Direct delivery"):
 * its MX hosts per RFC 5321 §5 and RFC 7505, each with its addresses, and
 * the site they make; answers kept per worker for their TTL.
 *
 *   MX records      by preference, equal preferences shuffled; "." alone
 *                   (null MX) -> BOUNCE 556 5.1.10
 *   no MX record    the domain itself (implicit MX, its A/AAAA)
 *   NXDOMAIN        -> BOUNCE 550 5.1.2 (class domain_unknown)
 *   SERVFAIL, timeout of the MX query, or of every host's addresses -> DEFER 451 4.4.3
 *   hosts whose addresses are all in a refused range (loopback, private,
 *   link-local, unspecified, multicast; unless in [mx] allow_networks) are
 *   unreachable; when no host is left -> DEFER 451 4.4.1
 *   no address for any host (and nothing temporary) -> BOUNCE 550 5.1.2
 *
 * A site is the sorted, de-duplicated list of the MX host names, lowercase,
 * joined by "," (an implicit MX: the domain). Every Google-hosted domain has
 * the same site.
 *
 * Ownership: a route is reference-counted (pmx_mx_route_unref); a callback's
 * route is borrowed for the call (take a reference to keep it). The cache
 * holds at most PMX_MX_CACHE_MAX routes, evicting the one expiring first.
 * Callbacks run once, from the loop, never inside pmx_mx_lookup; a waiter
 * cancelled with pmx_mx_cancel gets none. Errors: 0 / -1 with err.
 */
#ifndef PMX_ROUTING_MX_H
#define PMX_ROUTING_MX_H
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <uv.h>

#include "routing/resolver.h"

#define PMX_MX_HOSTS_MAX   16     /* MX hosts looked up per domain */
#define PMX_MX_ADDRS_MAX   8      /* addresses kept per host and family */
#define PMX_MX_CACHE_MAX   10000
#define PMX_MX_TTL_MAX_S   3600

typedef enum { PMX_MX_OK = 0, PMX_MX_BOUNCE, PMX_MX_DEFER } pmx_mx_status_t;

typedef struct {
    char                    *name;
    int                      pref;
    struct sockaddr_storage *addrs;      /* usable addresses, [mx] port set, v6 after v4 */
    size_t                   naddrs;
    size_t                   refused;    /* addresses left out (refused ranges) */
    bool                     tempfail;   /* its address lookup failed for now */
} pmx_mx_host_t;

typedef struct {
    int              refs;
    pmx_mx_status_t  status;
    char            *domain;
    char            *reply;      /* BOUNCE/DEFER: "550 5.1.2 ..." for every recipient */
    bool             implicit;   /* no MX record: the domain's own addresses */
    pmx_mx_host_t   *hosts;
    size_t           nhosts;
    char            *site;       /* OK: the site's name */
    uint64_t         expires_ms; /* loop time; 0 = not cached */
} pmx_mx_route_t;

/* A network of [mx] allow_networks. */
typedef struct {
    int     family;             /* AF_INET / AF_INET6 */
    uint8_t addr[16];
    int     bits;
} pmx_mx_net_t;

/* Parses "127.0.0.0/8, ::1/128, 10.1.2.3" into *out (malloc'ed). */
int  pmx_mx_parse_networks(const char *s, pmx_mx_net_t **out, size_t *n, char *err, size_t errlen);
/* Whether sa is in a refused range and not in nets. */
bool pmx_mx_address_refused(const struct sockaddr *sa, const pmx_mx_net_t *nets, size_t n);
/* The site name of a list of host names (sorted, lowercase, unique, ","). */
char *pmx_mx_site_name(const char *const *hosts, size_t n);

typedef struct pmx_mx pmx_mx_t;
typedef struct pmx_mx_waiter pmx_mx_waiter_t;
typedef void (*pmx_mx_cb)(void *arg, pmx_mx_route_t *route);

/* nets is copied; port = [mx] port. The resolver is borrowed. */
pmx_mx_t *pmx_mx_new(uv_loop_t *loop, pmx_resolver_t *res, int port, const pmx_mx_net_t *nets,
                     size_t nnets);
/*
 * The route of domain (lowercase ASCII). A cached one is returned at once
 * (a reference for the caller, cb never runs); else NULL and cb(arg, route)
 * follows, with *waiter set for pmx_mx_cancel.
 */
pmx_mx_route_t *pmx_mx_lookup(pmx_mx_t *m, const char *domain, pmx_mx_cb cb, void *arg,
                              pmx_mx_waiter_t **waiter);
void pmx_mx_cancel(pmx_mx_t *m, pmx_mx_waiter_t *w);
void pmx_mx_route_ref(pmx_mx_route_t *r);
void pmx_mx_route_unref(pmx_mx_route_t *r);
/* Cancels every lookup (no callbacks) and drops the cache. */
void pmx_mx_free(pmx_mx_t *m);

/* Reads one MX record's RDATA (preference, uncompressed name, lowercased;
 * "" for "."): 0, or -1 when malformed. For the fuzz target. */
int pmx__mx_rdata(const unsigned char *p, size_t len, int *pref, char *name, size_t namelen);

/* For tests: the clock of the cache (ms, like uv_now), instead of the loop's time.
 * now = NULL goes back to the loop's. */
void pmx__mx_set_clock(pmx_mx_t *m, uint64_t (*now)(void *arg), void *arg);

/* Formats an address without the port ("192.0.2.1", "2001:db8::1"). */
void pmx_mx_addr_str(const struct sockaddr_storage *sa, char *out, size_t outlen);

#endif
