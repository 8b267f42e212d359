/*
 * MX lookups and their per-worker cache; see mx.h.
 *
 * One lookup per domain at a time: callers asking for a domain already being
 * looked up wait on the same lookup. A lookup asks MX, then A and AAAA of
 * every host at once, and composes the route when the last answer is in.
 * Cached routes live in a small chained hash table keyed by domain.
 */
#include "routing/mx.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/log.h"
#include "lib/mem.h"

#define BUCKETS 4096
#define NAME_MAX_LEN 255

struct pmx_mx_waiter {
    struct lookup        *lk;
    pmx_mx_waiter_t      *next;
    pmx_mx_cb             cb;
    void                 *arg;
};

typedef struct lookup lookup_t;

/* One host's address queries. */
typedef struct {
    lookup_t        *lk;
    size_t           idx;
    int              type;
    pmx_dns_query_t *q;
} addr_q_t;

struct lookup {
    pmx_mx_t        *m;
    lookup_t        *next;        /* the list of lookups in flight */
    char            *domain;
    pmx_mx_waiter_t *waiters;
    pmx_dns_query_t *mxq;
    pmx_mx_route_t  *route;       /* being built */
    addr_q_t        *aq;          /* 2 per host */
    size_t           pending;
    uint32_t         ttl;
};

typedef struct entry {
    struct entry   *next;
    pmx_mx_route_t *route;
} entry_t;

struct pmx_mx {
    uv_loop_t      *loop;
    pmx_resolver_t *res;
    int             port;
    pmx_mx_net_t   *nets;
    size_t          nnets;
    lookup_t       *lookups;
    entry_t        *buckets[BUCKETS];
    size_t          cached;
    uint64_t      (*now)(void *arg);   /* the cache's clock; NULL = uv_now(loop) */
    void           *now_arg;
};

/* The cache's clock, in ms: the loop's time, unless a test set another. */
static uint64_t now_ms(pmx_mx_t *m)
{
    return m->now ? m->now(m->now_arg) : uv_now(m->loop);
}

/* ---- networks ---- */

int pmx_mx_parse_networks(const char *s, pmx_mx_net_t **out, size_t *n, char *err, size_t errlen)
{
    *out = NULL;
    *n = 0;
    const char *p = s ? s : "";
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        if (!*p) break;
        const char *e = p;
        while (*e && *e != ',' && *e != ' ' && *e != '\t') e++;
        char item[64];
        size_t len = (size_t)(e - p);
        if (len >= sizeof item) goto bad_len;
        memcpy(item, p, len);
        item[len] = '\0';
        pmx_mx_net_t net = { 0 };
        char *slash = strchr(item, '/');
        if (slash) *slash = '\0';
        if (inet_pton(AF_INET, item, net.addr) == 1) {
            net.family = AF_INET;
            net.bits = 32;
        } else if (inet_pton(AF_INET6, item, net.addr) == 1) {
            net.family = AF_INET6;
            net.bits = 128;
        } else {
            snprintf(err, errlen, "'%.*s' is not an IP address or network", (int)len, p);
            goto fail;
        }
        if (slash) {
            char *end;
            errno = 0;
            long b = strtol(slash + 1, &end, 10);
            if (errno || end == slash + 1 || *end || b < 0 || b > net.bits) {
                snprintf(err, errlen, "'%.*s': bad prefix length", (int)len, p);
                goto fail;
            }
            net.bits = (int)b;
        }
        *out = pmx_xrealloc(*out, (*n + 1) * sizeof **out);
        (*out)[(*n)++] = net;
        p = e;
    }
    return 0;
bad_len:
    snprintf(err, errlen, "'%.20s...' is too long for a network", p);
fail:
    free(*out);
    *out = NULL;
    *n = 0;
    return -1;
}

static bool in_net(const uint8_t *a, const uint8_t *net, int bits)
{
    int full = bits / 8, rest = bits % 8;
    if (memcmp(a, net, (size_t)full) != 0) return false;
    if (rest == 0) return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[full] & mask) == (net[full] & mask);
}

/* Loopback, private, link-local, unspecified, shared, multicast, broadcast. */
static bool v4_special(const uint8_t *a)
{
    static const struct { uint8_t net[4]; int bits; } r[] = {
        { { 0, 0, 0, 0 }, 8 },      { { 10, 0, 0, 0 }, 8 },    { { 127, 0, 0, 0 }, 8 },
        { { 169, 254, 0, 0 }, 16 }, { { 172, 16, 0, 0 }, 12 }, { { 192, 168, 0, 0 }, 16 },
        { { 100, 64, 0, 0 }, 10 },  { { 224, 0, 0, 0 }, 4 },   { { 240, 0, 0, 0 }, 4 },
    };
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++)
        if (in_net(a, r[i].net, r[i].bits)) return true;
    return false;
}

static bool v6_special(const uint8_t *a)
{
    static const uint8_t zero[16] = { 0 };
    static const uint8_t one[16] = { [15] = 1 };
    static const uint8_t ll[16] = { 0xfe, 0x80 }, ula[16] = { 0xfc }, mc[16] = { 0xff };
    return memcmp(a, zero, 16) == 0 || memcmp(a, one, 16) == 0 || in_net(a, ll, 10)
           || in_net(a, ula, 7) || in_net(a, mc, 8);
}

bool pmx_mx_address_refused(const struct sockaddr *sa, const pmx_mx_net_t *nets, size_t n)
{
    uint8_t a[16];
    int fam = sa->sa_family;
    if (fam == AF_INET) {
        memcpy(a, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (fam == AF_INET6) {
        memcpy(a, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        static const uint8_t mapped[12] = { [10] = 0xff, [11] = 0xff };
        if (memcmp(a, mapped, 12) == 0) {           /* ::ffff:a.b.c.d is an IPv4 address */
            memmove(a, a + 12, 4);
            fam = AF_INET;
        }
    } else {
        return true;
    }
    for (size_t i = 0; i < n; i++)
        if (nets[i].family == fam && in_net(a, nets[i].addr, nets[i].bits)) return false;
    return fam == AF_INET ? v4_special(a) : v6_special(a);
}

void pmx_mx_addr_str(const struct sockaddr_storage *sa, char *out, size_t outlen)
{
    if (sa->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)outlen);
    else if (sa->ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)outlen);
    else
        snprintf(out, outlen, "?");
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

char *pmx_mx_site_name(const char *const *hosts, size_t n)
{
    char **v = pmx_xcalloc(n ? n : 1, sizeof *v);
    for (size_t i = 0; i < n; i++) {
        v[i] = pmx_xstrdup(hosts[i]);
        for (char *c = v[i]; *c; c++) *c = (char)tolower((unsigned char)*c);
    }
    qsort(v, n, sizeof *v, cmp_str);
    size_t len = 1;
    for (size_t i = 0; i < n; i++) len += strlen(v[i]) + 1;
    char *s = pmx_xmalloc(len);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && strcmp(v[i], v[i - 1]) == 0) continue;
        if (k) s[k++] = ',';
        size_t l = strlen(v[i]);
        memcpy(s + k, v[i], l);
        k += l;
    }
    s[k] = '\0';
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
    return s;
}

/* ---- routes ---- */

void pmx_mx_route_ref(pmx_mx_route_t *r)
{
    r->refs++;
}

void pmx_mx_route_unref(pmx_mx_route_t *r)
{
    if (!r || --r->refs > 0) return;
    for (size_t i = 0; i < r->nhosts; i++) {
        free(r->hosts[i].name);
        free(r->hosts[i].addrs);
    }
    free(r->hosts);
    free(r->domain);
    free(r->reply);
    free(r->site);
    free(r);
}

static unsigned hash_of(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h % BUCKETS;
}

static void cache_remove(pmx_mx_t *m, entry_t **pp)
{
    entry_t *e = *pp;
    *pp = e->next;
    pmx_mx_route_unref(e->route);
    free(e);
    m->cached--;
}

static void cache_put(pmx_mx_t *m, pmx_mx_route_t *r)
{
    if (r->expires_ms == 0) return;
    if (m->cached >= PMX_MX_CACHE_MAX) {
        entry_t **best = NULL;
        for (unsigned b = 0; b < BUCKETS; b++)
            for (entry_t **pp = &m->buckets[b]; *pp; pp = &(*pp)->next)
                if (!best || (*pp)->route->expires_ms < (*best)->route->expires_ms) best = pp;
        if (best) cache_remove(m, best);
    }
    entry_t *e = pmx_xcalloc(1, sizeof *e);
    unsigned h = hash_of(r->domain);
    e->route = r;
    pmx_mx_route_ref(r);
    e->next = m->buckets[h];
    m->buckets[h] = e;
    m->cached++;
}

static pmx_mx_route_t *cache_get(pmx_mx_t *m, const char *domain)
{
    uint64_t now = now_ms(m);
    for (entry_t **pp = &m->buckets[hash_of(domain)]; *pp;) {
        pmx_mx_route_t *r = (*pp)->route;
        if (r->expires_ms <= now) {
            cache_remove(m, pp);
            continue;
        }
        if (strcmp(r->domain, domain) == 0) return r;
        pp = &(*pp)->next;
    }
    return NULL;
}

/* ---- the lookup ---- */

static void lookup_finish(lookup_t *lk)
{
    pmx_mx_t *m = lk->m;
    for (lookup_t **pp = &m->lookups; *pp; pp = &(*pp)->next)
        if (*pp == lk) {
            *pp = lk->next;
            break;
        }
    pmx_mx_route_t *r = lk->route;
    uint32_t ttl = lk->ttl > PMX_MX_TTL_MAX_S ? PMX_MX_TTL_MAX_S : lk->ttl;
    r->expires_ms = r->status == PMX_MX_DEFER || ttl == 0 ? 0 : now_ms(m) + ttl * 1000ull;
    cache_put(m, r);
    pmx_mx_waiter_t *w = lk->waiters;
    lk->waiters = NULL;
    while (w) {
        pmx_mx_waiter_t *next = w->next;
        w->cb(w->arg, r);
        free(w);
        w = next;
    }
    pmx_mx_route_unref(r);
    free(lk->aq);
    free(lk->domain);
    free(lk);
}

static void set_reply(pmx_mx_route_t *r, pmx_mx_status_t st, const char *fmt, const char *a,
                      const char *b)
{
    char buf[600];
    snprintf(buf, sizeof buf, fmt, a, b ? b : "");
    r->status = st;
    free(r->reply);
    r->reply = pmx_xstrdup(buf);
}

static void take_ttl(lookup_t *lk, uint32_t ttl)
{
    if (ttl < lk->ttl) lk->ttl = ttl;
}

/* Every host's addresses are in: decide. */
static void compose(lookup_t *lk)
{
    pmx_mx_route_t *r = lk->route;
    size_t usable = 0, refused = 0, temp = 0;
    for (size_t i = 0; i < r->nhosts; i++) {
        usable += r->hosts[i].naddrs > 0;
        refused += r->hosts[i].naddrs == 0 && r->hosts[i].refused > 0;
        temp += r->hosts[i].naddrs == 0 && r->hosts[i].tempfail;
    }
    if (usable) {
        const char **names = pmx_xcalloc(r->nhosts, sizeof *names);
        for (size_t i = 0; i < r->nhosts; i++) names[i] = r->hosts[i].name;
        r->site = pmx_mx_site_name(names, r->nhosts);
        free(names);
        r->status = PMX_MX_OK;
    } else if (temp) {
        set_reply(r, PMX_MX_DEFER, "451 4.4.3 cannot resolve the MX hosts of %s%s", r->domain,
                  ": DNS lookup failed for now");
    } else if (refused) {
        set_reply(r, PMX_MX_DEFER,
                  "451 4.4.1 no reachable MX host for %s: every address is in a refused range "
                  "(loopback, private, link-local; [mx] allow_networks)%s", r->domain, NULL);
    } else {
        set_reply(r, PMX_MX_BOUNCE, "550 5.1.2 no address for any MX host of %s%s", r->domain,
                  " (host or domain name not found)");
    }
    lookup_finish(lk);
}

static void on_addr(void *arg, const pmx_dns_answer_t *a)
{
    addr_q_t *aq = arg;
    lookup_t *lk = aq->lk;
    aq->q = NULL;
    pmx_mx_host_t *h = &lk->route->hosts[aq->idx];
    if (a->status == PMX_DNS_TEMPFAIL) {
        h->tempfail = true;
    } else {
        take_ttl(lk, a->ttl);
        size_t want = aq->type == PMX_DNS_TYPE_A ? 4 : 16;
        size_t kept = 0;
        for (size_t i = 0; i < a->n && kept < PMX_MX_ADDRS_MAX; i++) {
            if ((size_t)a->rdlen[i] != want) continue;
            struct sockaddr_storage ss;
            memset(&ss, 0, sizeof ss);
            if (want == 4) {
                struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
                v4->sin_family = AF_INET;
                v4->sin_port = htons((uint16_t)lk->m->port);
                memcpy(&v4->sin_addr, a->rdata[i], 4);
            } else {
                struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
                v6->sin6_family = AF_INET6;
                v6->sin6_port = htons((uint16_t)lk->m->port);
                memcpy(&v6->sin6_addr, a->rdata[i], 16);
            }
            if (pmx_mx_address_refused((struct sockaddr *)&ss, lk->m->nets, lk->m->nnets)) {
                h->refused++;
                continue;
            }
            h->addrs = pmx_xrealloc(h->addrs, (h->naddrs + 1) * sizeof *h->addrs);
            h->addrs[h->naddrs++] = ss;
            kept++;
        }
    }
    if (--lk->pending == 0) compose(lk);
}

/* Reads one wire-format name from rdata (uncompressed, as libunbound gives it). */
static int wire_name(const unsigned char *p, size_t len, char *out, size_t outlen)
{
    size_t i = 0, k = 0;
    while (i < len) {
        size_t l = p[i++];
        if (l == 0) {
            out[k] = '\0';
            return 0;
        }
        if (l > 63 || l > len - i || k + l + 2 > outlen || k + l + 1 > NAME_MAX_LEN) return -1;
        if (k) out[k++] = '.';
        for (size_t j = 0; j < l; j++) {
            unsigned char c = p[i + j];
            if (c <= ' ' || c >= 0x7f || c == ',' || c == '/' || c == '\\') return -1;
            out[k++] = (char)tolower(c);
        }
        i += l;
    }
    return -1;
}

int pmx__mx_rdata(const unsigned char *p, size_t len, int *pref, char *name, size_t namelen)
{
    if (len < 3 || wire_name(p + 2, len - 2, name, namelen) < 0) return -1;
    *pref = (p[0] << 8) | p[1];
    return 0;
}

static int cmp_pref(const void *a, const void *b)
{
    const pmx_mx_host_t *x = a, *y = b;
    return (x->pref > y->pref) - (x->pref < y->pref);
}

static void ask_addresses(lookup_t *lk)
{
    pmx_mx_route_t *r = lk->route;
    lk->aq = pmx_xcalloc(r->nhosts * 2, sizeof *lk->aq);
    lk->pending = r->nhosts * 2 + 1;                 /* +1: held until every query is out */
    for (size_t i = 0; i < r->nhosts; i++) {
        for (int t = 0; t < 2; t++) {
            addr_q_t *aq = &lk->aq[i * 2 + t];
            aq->lk = lk;
            aq->idx = i;
            aq->type = t == 0 ? PMX_DNS_TYPE_A : PMX_DNS_TYPE_AAAA;
            aq->q = pmx_resolver_query(lk->m->res, r->hosts[i].name, aq->type, on_addr, aq);
            if (!aq->q) {
                r->hosts[i].tempfail = true;
                lk->pending--;
            }
        }
    }
    if (--lk->pending == 0) compose(lk);
}

static void on_mx(void *arg, const pmx_dns_answer_t *a)
{
    lookup_t *lk = arg;
    pmx_mx_route_t *r = lk->route;
    lk->mxq = NULL;
    if (a->status == PMX_DNS_TEMPFAIL) {
        set_reply(r, PMX_MX_DEFER, "451 4.4.3 DNS lookup of the MX of %s failed: %s", r->domain,
                  a->why ? a->why : "temporary failure");
        lookup_finish(lk);
        return;
    }
    take_ttl(lk, a->ttl);
    if (a->status == PMX_DNS_NXDOMAIN) {
        set_reply(r, PMX_MX_BOUNCE, "550 5.1.2 domain %s does not exist (NXDOMAIN)%s", r->domain,
                  NULL);
        lookup_finish(lk);
        return;
    }
    bool null_mx = false;
    for (size_t i = 0; i < a->n; i++) {
        const unsigned char *p = (const unsigned char *)a->rdata[i];
        size_t len = (size_t)a->rdlen[i];
        char name[NAME_MAX_LEN + 2];
        int pref;
        if (pmx__mx_rdata(p, len, &pref, name, sizeof name) < 0) continue;
        if (!name[0]) {                              /* "." : RFC 7505 */
            null_mx = true;
            continue;
        }
        if (r->nhosts == PMX_MX_HOSTS_MAX) continue;
        bool dup = false;
        for (size_t k = 0; k < r->nhosts; k++) dup |= strcmp(r->hosts[k].name, name) == 0;
        if (dup) continue;
        r->hosts = pmx_xrealloc(r->hosts, (r->nhosts + 1) * sizeof *r->hosts);
        r->hosts[r->nhosts++] = (pmx_mx_host_t){ .name = pmx_xstrdup(name),
                                                 .pref = pref };
    }
    if (null_mx && r->nhosts == 0) {
        set_reply(r, PMX_MX_BOUNCE, "556 5.1.10 domain %s accepts no mail (null MX, RFC 7505)%s",
                  r->domain, NULL);
        lookup_finish(lk);
        return;
    }
    if (a->n == 0) {                                 /* no MX: the domain itself (RFC 5321 5.1) */
        r->implicit = true;
        r->hosts = pmx_xcalloc(1, sizeof *r->hosts);
        r->hosts[0].name = pmx_xstrdup(r->domain);
        r->nhosts = 1;
    } else if (r->nhosts == 0) {
        set_reply(r, PMX_MX_DEFER, "451 4.4.3 the MX records of %s could not be read%s",
                  r->domain, NULL);
        lookup_finish(lk);
        return;
    }
    /* By preference; equal preferences in random order (RFC 5321 5.1). */
    for (size_t i = r->nhosts; i > 1; i--) {
        size_t j = (size_t)random() % i;
        pmx_mx_host_t t = r->hosts[i - 1];
        r->hosts[i - 1] = r->hosts[j];
        r->hosts[j] = t;
    }
    /* qsort is not stable, but the order inside a preference is random anyway. */
    qsort(r->hosts, r->nhosts, sizeof *r->hosts, cmp_pref);
    ask_addresses(lk);
}

/* ---- public ---- */

pmx_mx_t *pmx_mx_new(uv_loop_t *loop, pmx_resolver_t *res, int port, const pmx_mx_net_t *nets,
                     size_t nnets)
{
    pmx_mx_t *m = pmx_xcalloc(1, sizeof *m);
    m->loop = loop;
    m->res = res;
    m->port = port;
    if (nnets) {
        m->nets = pmx_xcalloc(nnets, sizeof *nets);
        memcpy(m->nets, nets, nnets * sizeof *nets);
        m->nnets = nnets;
    }
    return m;
}

pmx_mx_route_t *pmx_mx_lookup(pmx_mx_t *m, const char *domain, pmx_mx_cb cb, void *arg,
                              pmx_mx_waiter_t **waiter)
{
    *waiter = NULL;
    pmx_mx_route_t *hit = cache_get(m, domain);
    if (hit) {
        pmx_mx_route_ref(hit);
        return hit;
    }
    lookup_t *lk = NULL;
    for (lookup_t *l = m->lookups; l && !lk; l = l->next)
        if (strcmp(l->domain, domain) == 0) lk = l;
    pmx_mx_waiter_t *w = pmx_xcalloc(1, sizeof *w);
    w->cb = cb;
    w->arg = arg;
    *waiter = w;
    if (lk) {
        w->lk = lk;
        w->next = lk->waiters;
        lk->waiters = w;
        return NULL;
    }
    lk = pmx_xcalloc(1, sizeof *lk);
    lk->m = m;
    lk->domain = pmx_xstrdup(domain);
    lk->ttl = PMX_MX_TTL_MAX_S;
    lk->route = pmx_xcalloc(1, sizeof *lk->route);
    lk->route->refs = 1;
    lk->route->domain = pmx_xstrdup(domain);
    w->lk = lk;
    lk->waiters = w;
    lk->next = m->lookups;
    m->lookups = lk;
    lk->mxq = pmx_resolver_query(m->res, domain, PMX_DNS_TYPE_MX, on_mx, lk);
    if (!lk->mxq) {
        /* Refused at once: the caller gets the deferral now, as from the cache. */
        pmx_mx_route_t *r = lk->route;
        set_reply(r, PMX_MX_DEFER, "451 4.4.3 DNS lookup of the MX of %s failed: %s", domain,
                  "the resolver refused the query");
        m->lookups = lk->next;
        *waiter = NULL;
        free(w);
        free(lk->domain);
        free(lk);
        return r;
    }
    return NULL;
}

void pmx__mx_set_clock(pmx_mx_t *m, uint64_t (*now)(void *arg), void *arg)
{
    m->now = now;
    m->now_arg = arg;
}

void pmx_mx_cancel(pmx_mx_t *m, pmx_mx_waiter_t *w)
{
    (void)m;
    if (!w) return;
    for (pmx_mx_waiter_t **pp = &w->lk->waiters; *pp; pp = &(*pp)->next)
        if (*pp == w) {
            *pp = w->next;
            free(w);
            return;
        }
}

void pmx_mx_free(pmx_mx_t *m)
{
    if (!m) return;
    while (m->lookups) {
        lookup_t *lk = m->lookups;
        m->lookups = lk->next;
        if (lk->mxq) pmx_resolver_cancel(m->res, lk->mxq);
        for (size_t i = 0; lk->aq && i < lk->route->nhosts * 2; i++)
            if (lk->aq[i].q) pmx_resolver_cancel(m->res, lk->aq[i].q);
        while (lk->waiters) {
            pmx_mx_waiter_t *w = lk->waiters;
            lk->waiters = w->next;
            free(w);
        }
        pmx_mx_route_unref(lk->route);
        free(lk->aq);
        free(lk->domain);
        free(lk);
    }
    for (unsigned b = 0; b < BUCKETS; b++)
        while (m->buckets[b]) cache_remove(m, &m->buckets[b]);
    free(m->nets);
    free(m);
}
