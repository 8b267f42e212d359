/*
 * routing/mx.c's lookups against a scripted resolver: the order of MX hosts
 * (by preference, equal preferences shuffled) and the per-worker route cache
 * (kept until the smallest TTL of its answers, at most PMX_MX_TTL_MAX_S;
 * deferrals never kept), on a clock the test moves (pmx__mx_set_clock).
 *
 * The resolver is this file's: it defines pmx_resolver_query and
 * pmx_resolver_cancel, the only resolver functions mx.o calls, so the linker
 * takes them from here and never pulls routing/resolver.o out of libpmx.a (if
 * a change makes it do so, the link fails with duplicate symbols rather than
 * testing the wrong thing). A query is answered only when the test says so,
 * as the loop would, never from inside pmx_mx_lookup.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "routing/mx.h"
#include "routing/resolver.h"

/* ---- the scripted resolver ---- */

struct pmx_dns_query {
    char       name[256];
    int        type;
    pmx_dns_cb cb;
    void      *arg;
    bool       live;
};

#define QMAX 64
static struct pmx_dns_query queries[QMAX];
static size_t nqueries;     /* asked since the last reset */

pmx_dns_query_t *pmx_resolver_query(pmx_resolver_t *r, const char *name, int type, pmx_dns_cb cb,
                                    void *arg)
{
    (void)r;
    assert_true(nqueries < QMAX);
    pmx_dns_query_t *q = &queries[nqueries++];
    snprintf(q->name, sizeof q->name, "%s", name);
    q->type = type;
    q->cb = cb;
    q->arg = arg;
    q->live = true;
    return q;
}

void pmx_resolver_cancel(pmx_resolver_t *r, pmx_dns_query_t *q)
{
    (void)r;
    q->live = false;
}

static void reset_queries(void)
{
    for (size_t i = 0; i < nqueries; i++) assert_false(queries[i].live);
    nqueries = 0;
}

static size_t live_queries(void)
{
    size_t n = 0;
    for (size_t i = 0; i < nqueries; i++) n += queries[i].live;
    return n;
}

/* Answers the open query for (name, type) with n records. */
static void answer(const char *name, int type, pmx_dns_status_t st, const char *const *rdata,
                   const int *rdlen, size_t n, uint32_t ttl)
{
    for (size_t i = 0; i < nqueries; i++) {
        pmx_dns_query_t *q = &queries[i];
        if (!q->live || q->type != type || strcmp(q->name, name) != 0) continue;
        q->live = false;
        pmx_dns_answer_t a = { .status = st, .why = st == PMX_DNS_TEMPFAIL ? "SERVFAIL" : NULL,
                               .rdata = rdata, .rdlen = rdlen, .n = n, .ttl = ttl };
        q->cb(q->arg, &a);
        return;
    }
    fail_msg("no open query for %s type %d", name, type);
}

typedef struct {
    int         pref;
    const char *host;
} mx_rr_t;

/* An MX answer: each record's RDATA in wire form (preference, uncompressed name). */
static void answer_mx(const char *domain, const mx_rr_t *rr, size_t n, uint32_t ttl)
{
    char buf[16][300];
    const char *rdata[16];
    int rdlen[16];
    assert_true(n <= 16);
    for (size_t i = 0; i < n; i++) {
        unsigned char *p = (unsigned char *)buf[i];
        size_t k = 0;
        p[k++] = (unsigned char)(rr[i].pref >> 8);
        p[k++] = (unsigned char)rr[i].pref;
        const char *s = rr[i].host;
        while (*s) {
            const char *dot = strchr(s, '.');
            size_t l = dot ? (size_t)(dot - s) : strlen(s);
            p[k++] = (unsigned char)l;
            memcpy(p + k, s, l);
            k += l;
            s += l + (dot != NULL);
        }
        p[k++] = 0;
        rdata[i] = buf[i];
        rdlen[i] = (int)k;
    }
    answer(domain, PMX_DNS_TYPE_MX, PMX_DNS_OK, rdata, rdlen, n, ttl);
}

/* host's A is 192.0.2.N (a documentation address, not in a refused range); no AAAA. */
static void answer_host(const char *host, unsigned char n, uint32_t a_ttl, uint32_t aaaa_ttl)
{
    const char v4[4] = { (char)192, 0, 2, (char)n };
    const char *rdata[1] = { v4 };
    const int rdlen[1] = { 4 };
    answer(host, PMX_DNS_TYPE_A, PMX_DNS_OK, rdata, rdlen, 1, a_ttl);
    answer(host, PMX_DNS_TYPE_AAAA, PMX_DNS_OK, NULL, NULL, 0, aaaa_ttl);
}

/* ---- the mx side ---- */

static uint64_t clock_ms;
static uint64_t test_clock(void *arg)
{
    (void)arg;
    return clock_ms;
}

typedef struct {
    int             calls;
    pmx_mx_route_t *route;   /* a reference of ours */
} got_t;

static void on_route(void *arg, pmx_mx_route_t *route)
{
    got_t *g = arg;
    g->calls++;
    pmx_mx_route_ref(route);
    g->route = route;
}

typedef struct {
    uv_loop_t  loop;
    pmx_mx_t  *mx;
} fix_t;

static int setup(void **state)
{
    fix_t *f = calloc(1, sizeof *f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->mx = pmx_mx_new(&f->loop, NULL, 25, NULL, 0);
    pmx__mx_set_clock(f->mx, test_clock, NULL);
    clock_ms = 5000000;
    nqueries = 0;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fix_t *f = *state;
    pmx_mx_free(f->mx);
    assert_int_equal(live_queries(), 0);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f);
    return 0;
}

/* Looks domain up; it must not be cached: returns the route of the callback
 * after answer_fn answered the queries (a reference for the caller). */
static pmx_mx_route_t *resolve(pmx_mx_t *mx, const char *domain, void (*answer_fn)(void))
{
    got_t g = { 0 };
    pmx_mx_waiter_t *w;
    pmx_mx_route_t *hit = pmx_mx_lookup(mx, domain, on_route, &g, &w);
    assert_null(hit);
    assert_non_null(w);
    assert_int_equal(g.calls, 0);               /* never from inside pmx_mx_lookup */
    answer_fn();
    assert_int_equal(g.calls, 1);
    assert_int_equal(live_queries(), 0);
    reset_queries();
    return g.route;
}

/* eq.test: MX 20 low, 10 one, 10 two, 10 three, 5 first (answered out of order). */
static void answer_eq(void)
{
    static const mx_rr_t rr[] = { { 20, "low.eq.test" }, { 10, "one.eq.test" },
                                  { 10, "two.eq.test" }, { 5, "first.eq.test" },
                                  { 10, "three.eq.test" } };
    answer_mx("eq.test", rr, 5, 0);   /* TTL 0: never cached, each lookup resolves anew */
    answer_host("low.eq.test", 1, 300, 300);
    answer_host("one.eq.test", 2, 300, 300);
    answer_host("two.eq.test", 3, 300, 300);
    answer_host("first.eq.test", 4, 300, 300);
    answer_host("three.eq.test", 5, 300, 300);
}

/* Equal preferences come in every order over many resolutions of the same
 * answer; a lower preference always comes first. */
static void test_mx_order(void **state)
{
    fix_t *f = *state;
    static const char *const eq[] = { "one.eq.test", "two.eq.test", "three.eq.test" };
    int seen[3][3] = { { 0 } };   /* seen[position][host] */
    int perms[27] = { 0 };
    const int rounds = 600;
    for (int i = 0; i < rounds; i++) {
        pmx_mx_route_t *r = resolve(f->mx, "eq.test", answer_eq);
        assert_int_equal(r->status, PMX_MX_OK);
        assert_int_equal(r->nhosts, 5);
        assert_string_equal(r->hosts[0].name, "first.eq.test");
        assert_string_equal(r->hosts[4].name, "low.eq.test");
        for (size_t k = 1; k < r->nhosts; k++) assert_true(r->hosts[k - 1].pref <= r->hosts[k].pref);
        int code = 0;
        for (int pos = 0; pos < 3; pos++) {
            assert_int_equal(r->hosts[1 + pos].pref, 10);
            int h = -1;
            for (int k = 0; k < 3; k++)
                if (strcmp(r->hosts[1 + pos].name, eq[k]) == 0) h = k;
            assert_true(h >= 0);
            seen[pos][h]++;
            code = code * 3 + h;
        }
        perms[code]++;
        assert_int_equal(r->hosts[0].naddrs, 1);
        assert_int_equal(r->expires_ms, 0);      /* TTL 0: not cached */
        pmx_mx_route_unref(r);
    }
    /* Every one of the 6 orders of the three equal hosts appears (each has
     * probability 1/6 per resolution; missing one in 600 is below 1e-40). */
    int orders = 0;
    for (int c = 0; c < 27; c++) orders += perms[c] > 0;
    if (orders != 6) fail_msg("%d of the 6 orders of equal preferences seen in %d lookups", orders, rounds);
    for (int pos = 0; pos < 3; pos++)
        for (int h = 0; h < 3; h++)
            if (seen[pos][h] < rounds / 6)
                fail_msg("%s at position %d only %d times in %d", eq[h], pos + 1, seen[pos][h], rounds);
}

static uint32_t mx_ttl, a_ttl, aaaa_ttl;
static void answer_ttl(void)
{
    static const mx_rr_t rr[] = { { 10, "mx.ttl.test" } };
    answer_mx("ttl.test", rr, 1, mx_ttl);
    answer_host("mx.ttl.test", 9, a_ttl, aaaa_ttl);
}

/* A cached route: a reference, no query, no callback. */
static void expect_cached(pmx_mx_t *mx, const char *domain, pmx_mx_route_t *want)
{
    got_t g = { 0 };
    pmx_mx_waiter_t *w;
    pmx_mx_route_t *hit = pmx_mx_lookup(mx, domain, on_route, &g, &w);
    if (!hit) fail_msg("%s at %llu ms: not cached", domain, (unsigned long long)clock_ms);
    assert_ptr_equal(hit, want);
    assert_null(w);
    assert_int_equal(nqueries, 0);
    assert_int_equal(g.calls, 0);
    pmx_mx_route_unref(hit);
}

/* The route is reused until the smallest TTL of its answers runs out, and
 * resolved again from then on. */
static void test_cache_ttl(void **state)
{
    fix_t *f = *state;
    mx_ttl = 300;
    a_ttl = 60;
    aaaa_ttl = 120;
    uint64_t t0 = clock_ms;
    pmx_mx_route_t *r = resolve(f->mx, "ttl.test", answer_ttl);
    assert_int_equal(r->status, PMX_MX_OK);
    assert_true(r->expires_ms == t0 + 60000);
    expect_cached(f->mx, "ttl.test", r);
    clock_ms = t0 + 59999;
    expect_cached(f->mx, "ttl.test", r);
    clock_ms = t0 + 60000;                      /* the A record's TTL is out */
    a_ttl = aaaa_ttl = 600;
    pmx_mx_route_t *r2 = resolve(f->mx, "ttl.test", answer_ttl);
    assert_ptr_not_equal(r2, r);
    assert_true(r2->expires_ms == clock_ms + 300000);   /* now the MX's TTL is the smallest */
    pmx_mx_route_unref(r);
    clock_ms += 299999;
    expect_cached(f->mx, "ttl.test", r2);
    clock_ms += 1;
    pmx_mx_route_unref(resolve(f->mx, "ttl.test", answer_ttl));
    pmx_mx_route_unref(r2);
}

/* Long TTLs are kept at most PMX_MX_TTL_MAX_S. */
static void test_cache_ttl_max(void **state)
{
    fix_t *f = *state;
    mx_ttl = a_ttl = aaaa_ttl = 86400;
    uint64_t t0 = clock_ms;
    pmx_mx_route_t *r = resolve(f->mx, "ttl.test", answer_ttl);
    assert_true(r->expires_ms == t0 + PMX_MX_TTL_MAX_S * 1000ull);
    clock_ms = t0 + PMX_MX_TTL_MAX_S * 1000ull - 1;
    expect_cached(f->mx, "ttl.test", r);
    clock_ms += 1;
    pmx_mx_route_unref(resolve(f->mx, "ttl.test", answer_ttl));
    pmx_mx_route_unref(r);
}

static void answer_servfail(void)
{
    answer("sf.test", PMX_DNS_TYPE_MX, PMX_DNS_TEMPFAIL, NULL, NULL, 0, 300);
}

static void answer_nx(void)
{
    answer("nx.test", PMX_DNS_TYPE_MX, PMX_DNS_NXDOMAIN, NULL, NULL, 0, 30);
}

/* A deferral is never kept; a bounce (NXDOMAIN) is, for its TTL. */
static void test_cache_defer_bounce(void **state)
{
    fix_t *f = *state;
    pmx_mx_route_t *r = resolve(f->mx, "sf.test", answer_servfail);
    assert_int_equal(r->status, PMX_MX_DEFER);
    assert_int_equal(r->expires_ms, 0);
    pmx_mx_route_unref(r);
    r = resolve(f->mx, "sf.test", answer_servfail);     /* asked again at once */
    pmx_mx_route_unref(r);

    uint64_t t0 = clock_ms;
    r = resolve(f->mx, "nx.test", answer_nx);
    assert_int_equal(r->status, PMX_MX_BOUNCE);
    clock_ms = t0 + 29999;
    expect_cached(f->mx, "nx.test", r);
    clock_ms = t0 + 30000;
    pmx_mx_route_unref(resolve(f->mx, "nx.test", answer_nx));
    pmx_mx_route_unref(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_mx_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_ttl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_ttl_max, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_defer_bounce, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
