/*
 * Direct delivery: domains -> routes -> site pools; see mxroute.h.
 *
 * A message becomes one group per recipient domain. A group waits for its
 * route (routing/mx.h), then is either decided at once (BOUNCE, DEFER) or
 * sent through its site's pool. Outcomes are kept per envelope recipient in
 * the message; the message is finished from a uv_idle handle once its last
 * group is done, so the caller's callback never runs inside a send.
 */
#include "routing/mxroute.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/addr.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/mem.h"
#include "queue/ratelimit.h"
#include "routing/mx.h"
#include "routing/resolver.h"
#include "routing/shaping.h"
#include "routing/sites.h"

/* The sweep: retires unused site pools, and gives idle sessions back to a site that
 * another worker waits for; every 250 ms, the pool's own admission retry period. */
#define SWEEP_MS      250u
/* Addresses a session tries, in MX order, before it gives up: every address of every
 * MX host up to this many. 16 is more than the big providers publish (Gmail's five MX
 * hosts have ten, an IPv4 and an IPv6 each), so their last MX is reached; the bound
 * keeps a site whose hosts black-hole connections to 16 connect timeouts (Postfix
 * stops at 5, smtp_mx_address_limit; docs/delivery.md "Sites and their limits"). */
#define SITE_ADDRS    16
/* The site's limiter did not answer (Redis): what its waiting deliveries are deferred with. */
#define RATE_DOWN_REPLY "451 4.3.0 site_rate: the rate limiter of site %.100s is unavailable " \
                        "(Redis), not sent over its rate"
/* A drain: what a delivery whose turn at its site's rate has not come is deferred with. */
#define RATE_DRAIN_REPLY "451 4.3.0 site_rate: postmuxd is stopping before this delivery's " \
                         "turn at the rate of site %.100s"
/* An idle session to a site is QUIT after this long (Postfix's
 * smtp_connection_cache_time_limit, 2 s), not the relay's 30 s: an idle session holds
 * one of the site's connections_per_site slots, which another worker with mail for
 * the site may be waiting for (docs/delivery.md "Sites and their limits"). */
#define SITE_IDLE_MS  2000u

typedef struct site site_t;
typedef struct msg msg_t;
typedef struct group group_t;

struct site {
    site_t          *next;
    pmx_mxroute_t   *r;
    char            *name;
    char            *key;           /* the site table's key: the site, + " pool=NAME" */
    pmx_egress_t    *egress;        /* the egress pool its sessions bind, or NULL */
    pmx_smtp_pool_t *pool;
    uint64_t         used_ms;
    size_t           inflight;      /* groups handed to the pool, not called back yet */
    bool             closing;
    const pmx_shaping_rule_t *rule; /* its shaping rule, or NULL */
    int              limit;         /* sessions per host, all workers */
    bool             suspend_due;   /* a reply suspended it: fail its queue on the next turn */
    /* A rule with a rate: deliveries wait here, in order, for a token of the
     * rule's limiter before they go to the pool (see "Rate" below). */
    group_t         *wait_head, *wait_tail;
    size_t           nwait;
    bool             asking;        /* a limiter request is out */
    uint64_t         rate_at;       /* loop ms: ask again then (0 = now) */
};

struct group {
    msg_t           *m;
    group_t         *wait_next;     /* in its site's rate queue */
    char            *domain;
    size_t          *idx;           /* envelope positions of its recipients */
    const char     **rcpts;
    size_t           n;
    pmx_mx_waiter_t *waiter;
    site_t          *site;
    bool             done;
};

typedef struct {
    pmx_smtp_status_t status;
    int               code;
    char              enh[16];
    char             *response;
    const char       *after;
} out_t;

struct msg {
    pmx_mxroute_t      *r;
    msg_t              *prev, *next;    /* in flight, or on the ready list */
    pmx_smtp_envelope_t env;
    const char         *data;
    size_t              len;
    pmx_smtp_send_cb    cb;
    void               *arg;
    pmx_egress_t       *egress;         /* the workspace's egress pool, or NULL */
    group_t            *g;
    size_t              ng, pending;
    out_t              *out;
};

struct pmx_mxroute {
    uv_loop_t        *loop;
    int               port, per_site, per_conn;
    uint64_t          connect_timeout_ms;
    pmx_tls_mode_t    tls;
    char             *helo;
    char             *prefix;           /* [redis] prefix, for the limiter */
    pmx_resolver_t   *res;
    pmx_mx_t         *mx;
    pmx_shaping_t     shaping;
    site_t           *sites;
    msg_t            *msgs;             /* waiting for their groups */
    msg_t            *ready;            /* done, callback due on the next idle turn */
    uv_idle_t         idle;
    bool              idle_on;
    uv_timer_t        sweep;
    pmx_redis_conn_t *redis;            /* for the limiter of rules with a rate, or NULL */
    pmx_ratelimit_t  *rl;               /* made on the first site with a rate */
    uv_timer_t        rate_timer;       /* the next site whose limiter said "wait" */
    int               handles;          /* idle + sweep + rate_timer, until closed */
    bool              closing, aborting, finished;
    bool              draining;         /* rated deliveries go only if their token is free now */
    void            (*closed)(void *);
    void             *closed_arg;
    pmx_smtp_pool_stats_t retired;      /* counters of site pools already closed */
};

static void schedule(pmx_mxroute_t *r);
static void maybe_finish(pmx_mxroute_t *r);
static void rate_kick(site_t *s);
static void rate_fail_all(site_t *s, const char *reply, const char *after);

/* ---- outcomes ---- */

/* Sets one recipient's outcome from a reply text "550 5.1.2 ...". */
static void set_out(out_t *o, pmx_smtp_status_t st, const char *reply, const char *after)
{
    o->status = st;
    o->code = 0;
    o->enh[0] = '\0';
    if (reply[0] >= '2' && reply[0] <= '5' && reply[1] >= '0' && reply[1] <= '9' && reply[2] >= '0'
        && reply[2] <= '9' && (reply[3] == ' ' || reply[3] == '\0')) {
        o->code = (reply[0] - '0') * 100 + (reply[1] - '0') * 10 + (reply[2] - '0');
        const char *e = reply + 4;
        size_t k = 0;
        while (reply[3] && k + 1 < sizeof o->enh && (e[k] == '.' || (e[k] >= '0' && e[k] <= '9')))
            k++;
        if (k >= 5) {
            memcpy(o->enh, e, k);
            o->enh[k] = '\0';
        }
    }
    free(o->response);
    o->response = pmx_xstrdup(reply);
    o->after = after;
}

static void group_done(group_t *g)
{
    if (g->done) return;
    g->done = true;
    msg_t *m = g->m;
    if (--m->pending > 0) return;
    pmx_mxroute_t *r = m->r;
    if (m->prev) m->prev->next = m->next;
    else r->msgs = m->next;
    if (m->next) m->next->prev = m->prev;
    m->prev = NULL;
    m->next = r->ready;
    r->ready = m;
    schedule(r);
}

static void group_fail(group_t *g, pmx_smtp_status_t st, const char *reply, const char *after)
{
    for (size_t k = 0; k < g->n; k++) set_out(&g->m->out[g->idx[k]], st, reply, after);
    group_done(g);
}

static void msg_free(msg_t *m)
{
    for (size_t i = 0; i < m->ng; i++) {
        free(m->g[i].domain);
        free(m->g[i].idx);
        free(m->g[i].rcpts);
    }
    for (size_t i = 0; i < m->env.nrcpts; i++) free(m->out[i].response);
    free(m->g);
    free(m->out);
    free(m);
}

/* Calls back every finished message. */
static void finish_ready(pmx_mxroute_t *r)
{
    while (r->ready) {
        msg_t *m = r->ready;
        r->ready = m->next;
        size_t n = m->env.nrcpts;
        pmx_smtp_outcome_t *o = pmx_xcalloc(n, sizeof *o);
        bool any_sent = false, any_temp = false;
        for (size_t i = 0; i < n; i++) {
            o[i] = (pmx_smtp_outcome_t){ m->out[i].status, m->out[i].code, m->out[i].enh,
                                         m->out[i].response ? m->out[i].response : "",
                                         m->out[i].after ? m->out[i].after : "" };
            any_sent |= o[i].status == PMX_SMTP_SENT;
            any_temp |= o[i].status == PMX_SMTP_TEMPFAIL;
        }
        pmx_smtp_result_t res = { any_sent ? PMX_SMTP_SENT : any_temp ? PMX_SMTP_TEMPFAIL
                                                                     : PMX_SMTP_PERMFAIL,
                                  o[0], o, n };
        m->cb(m->arg, &res);
        free(o);
        msg_free(m);
    }
}

/* ---- sites ---- */

static bool site_admit(void *arg)
{
    site_t *s = arg;
    return pmx_sites_acquire(s->key, s->limit);
}

static void site_release(void *arg)
{
    site_t *s = arg;
    pmx_sites_release(s->key);
}

static void add_stats(pmx_smtp_pool_stats_t *to, const pmx_smtp_pool_stats_t *st)
{
    to->connections += st->connections;
    to->sent += st->sent;
    to->tempfail += st->tempfail;
    to->permfail += st->permfail;
    to->sessions += st->sessions;
    to->busy += st->busy;
    to->queued += st->queued;
}

static void site_closed(void *arg)
{
    site_t *s = arg;
    pmx_mxroute_t *r = s->r;
    for (site_t **pp = &r->sites; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    free(s->name);
    free(s->key);
    free(s);
    maybe_finish(r);
}

static void site_close(site_t *s)
{
    if (s->closing) return;
    s->closing = true;
    if (s->r->rl && s->asking) pmx_ratelimit_cancel(s->r->rl, s);
    s->asking = false;
    rate_fail_all(s, "451 4.3.0 direct delivery shutting down", "connect");
    pmx_smtp_pool_stats_t st;
    pmx_smtp_pool_stats(s->pool, &st);
    st.sessions = st.busy = 0;
    st.queued = 0;
    add_stats(&s->r->retired, &st);
    pmx_smtp_pool_close(s->pool, site_closed, s);
}

/* The addresses of a route, in MX order, for a site pool. */
static size_t route_addrs(const pmx_mx_route_t *route, struct sockaddr_storage *out)
{
    size_t n = 0;
    for (size_t i = 0; i < route->nhosts; i++)
        for (size_t k = 0; k < route->hosts[i].naddrs && n < SITE_ADDRS; k++)
            out[n++] = route->hosts[i].addrs[k];
    return n;
}

static site_t *site_for(pmx_mxroute_t *r, const pmx_mx_route_t *route, pmx_egress_t *egress,
                        char *err, size_t errlen)
{
    struct sockaddr_storage addrs[SITE_ADDRS];
    size_t naddrs = route_addrs(route, addrs);
    for (site_t *s = r->sites; s; s = s->next)
        if (!s->closing && s->egress == egress && strcmp(s->name, route->site) == 0) {
            pmx_smtp_pool_set_addrs(s->pool, addrs, naddrs);
            return s;
        }
    const char *host = route->hosts[0].name;
    for (size_t i = 0; i < route->nhosts; i++)
        if (route->hosts[i].naddrs) {
            host = route->hosts[i].name;
            break;
        }
    const char **names = pmx_xcalloc(route->nhosts, sizeof *names);
    for (size_t i = 0; i < route->nhosts; i++) names[i] = route->hosts[i].name;
    const pmx_shaping_rule_t *rule = pmx_shaping_match(&r->shaping, names, route->nhosts);
    free(names);
    int limit = rule && rule->connections ? rule->connections : r->per_site;
    pmx_smtp_relay_t cfg = {
        .host = host, .port = r->port, .tls = r->tls, .tls_verify = false,
        .helo_name = egress && egress->helo_name[0] ? egress->helo_name : r->helo,
        .source = egress ? pmx_egress_source : NULL, .source_arg = egress,
        .max_sessions = limit, .connect_timeout_ms = r->connect_timeout_ms,
        .addrs = addrs, .naddrs = (int)naddrs, .next_on_greeting = true,
        .idle_timeout_ms = SITE_IDLE_MS,
        .messages_per_connection = rule && rule->messages_per_connection
                                       ? rule->messages_per_connection : r->per_conn,
    };
    site_t *s = pmx_xcalloc(1, sizeof *s);
    s->rule = rule;
    s->limit = limit;
    if (pmx_smtp_pool_new(r->loop, &cfg, &s->pool, err, errlen) < 0) {
        free(s);
        return NULL;
    }
    s->r = r;
    s->name = pmx_xstrdup(route->site);
    s->egress = egress;
    pmx_buf_t key = PMX_BUF_INIT;
    pmx_buf_appendf(&key, "%s%s%s", route->site, egress ? " pool=" : "", egress ? egress->name : "");
    s->key = pmx_xstrdup(key.data);
    pmx_buf_free(&key);
    pmx_smtp_pool_set_admission(s->pool, site_admit, site_release, s);
    s->next = r->sites;
    r->sites = s;
    pmx_log_debug("mx site opened site=%s addresses=%zu rule=%s", s->name, naddrs,
                  rule ? rule->name : "default");
    return s;
}

static void on_group_sent(void *arg, const pmx_smtp_result_t *res)
{
    group_t *g = arg;
    site_t *s = g->site;
    s->inflight--;
    s->used_ms = uv_now(s->r->loop);
    uint64_t sent = 0;
    for (size_t k = 0; k < g->n; k++) {
        const pmx_smtp_outcome_t *o = k < res->nrcpts ? &res->rcpts[k] : &res->message;
        out_t *out = &g->m->out[g->idx[k]];
        out->status = o->status;
        out->code = o->code;
        snprintf(out->enh, sizeof out->enh, "%s", o->enhanced ? o->enhanced : "");
        free(out->response);
        out->response = pmx_xstrdup(o->response ? o->response : "");
        out->after = o->after;       /* static strings of smtp/client.c */
        sent += o->status == PMX_SMTP_SENT;
        uint64_t ms = o->status != PMX_SMTP_SENT && o->code ? pmx_shaping_on_reply(s->rule, out->response)
                                                            : 0;
        if (ms) {
            pmx_sites_suspend(s->name, ms);
            pmx_log_warn("mx site suspended site=%s rule=%s for_ms=%llu reply=\"%.200s\"", s->name,
                         s->rule->name, (unsigned long long)ms, out->response);
            s->suspend_due = true;
            schedule(s->r);
        }
    }
    pmx_sites_count_sent(s->name, sent);
    group_done(g);
    rate_kick(s);      /* the pool's queue may have room for the next token now */
}

static void group_send(group_t *g, site_t *s);

/* The route of g's domain is known: decide or send. */
static void group_route(group_t *g, pmx_mx_route_t *route)
{
    pmx_mxroute_t *r = g->m->r;
    g->waiter = NULL;
    if (route->status == PMX_MX_BOUNCE) {
        group_fail(g, PMX_SMTP_PERMFAIL, route->reply, "MX lookup");
        return;
    }
    if (route->status == PMX_MX_DEFER) {
        group_fail(g, PMX_SMTP_TEMPFAIL, route->reply, "MX lookup");
        return;
    }
    if (r->closing) {
        group_fail(g, PMX_SMTP_TEMPFAIL, "451 4.3.0 direct delivery shutting down", "connect");
        return;
    }
    uint64_t left = pmx_sites_suspended_ms(route->site);
    if (left) {
        char reply[300];
        snprintf(reply, sizeof reply, "451 4.7.0 site_suspended: new sessions to %.200s wait %llu s "
                 "more (shaping on_reply)", route->site, (unsigned long long)(left + 999) / 1000);
        group_fail(g, PMX_SMTP_TEMPFAIL, reply, "connect");
        return;
    }
    char err[300];
    site_t *s = site_for(r, route, g->m->egress, err, sizeof err);
    if (!s) {
        char reply[400];
        snprintf(reply, sizeof reply, "451 4.3.0 cannot open a session pool for %s: %s",
                 route->site, err);
        group_fail(g, PMX_SMTP_TEMPFAIL, reply, "connect");
        return;
    }
    g->site = s;
    s->used_ms = uv_now(r->loop);
    if (s->rule && s->rule->rate_per_second > 0) {
        g->wait_next = NULL;
        if (s->wait_tail) s->wait_tail->wait_next = g;
        else s->wait_head = g;
        s->wait_tail = g;
        s->nwait++;
        rate_kick(s);
        return;
    }
    group_send(g, s);
}

/* Hands g to its site's pool. */
static void group_send(group_t *g, site_t *s)
{
    pmx_smtp_envelope_t env = g->m->env;
    env.rcpts = g->rcpts;
    env.nrcpts = g->n;
    s->used_ms = uv_now(s->r->loop);
    int rc = pmx_smtp_pool_send(s->pool, &env, g->m->data, g->m->len, on_group_sent, g);
    if (rc == 0) {
        s->inflight++;
        return;
    }
    group_fail(g, rc == UV_EINVAL ? PMX_SMTP_PERMFAIL : PMX_SMTP_TEMPFAIL,
               rc == UV_EINVAL ? "553 5.1.7 envelope refused by postmux"
                               : "451 4.3.0 direct delivery shutting down", "MAIL FROM");
}

static void on_route(void *arg, pmx_mx_route_t *route)
{
    group_route(arg, route);
}

/* ---- rate (a shaping rule's `rate`; docs/delivery.md "Shaping") ----
 *
 * A site whose rule has a rate keeps its deliveries in a FIFO; the head asks
 * the rule's limiter (queue/ratelimit.h, on Redis's clock, shared by every
 * worker and host) for one token, i.e. one SMTP transaction. Allowed: it goes
 * to the pool and the next one asks. "Wait N ms": the site is parked on
 * rate_timer until then; no polling, and nothing else waits for it (other
 * sites have their own queues, every workspace's other mail goes on).
 * A token is asked only while the pool has nothing queued, so a delivery
 * holding a token starts its transaction before the next token is taken:
 * transactions cannot bunch up behind a busy session and then go faster
 * than the rate. When the limiter cannot answer (Redis down, or its answer
 * lost) the site's waiting deliveries are deferred: never sent over the
 * limit, and retried by the queue like any deferral. */

static void rate_arm(pmx_mxroute_t *r);

static void rate_fail_all(site_t *s, const char *reply, const char *after)
{
    while (s->wait_head) {
        group_t *g = s->wait_head;
        s->wait_head = g->wait_next;
        if (!s->wait_head) s->wait_tail = NULL;
        s->nwait--;
        group_fail(g, PMX_SMTP_TEMPFAIL, reply, after);
    }
}

static void on_rate(const pmx_ratelimit_result_t *res, void *arg)
{
    site_t *s = arg;
    pmx_mxroute_t *r = s->r;
    s->asking = false;
    if (s->closing || !s->wait_head) return;
    if (res->status < 0) {
        char reply[300];
        snprintf(reply, sizeof reply, RATE_DOWN_REPLY, s->rule->name);
        pmx_log_warn("mx site rate limiter unavailable, deferring site=%s rule=%s waiting=%zu "
                     "status=%d", s->name, s->rule->name, s->nwait, res->status);
        rate_fail_all(s, reply, "connect");
        return;
    }
    if (!res->allowed) {
        if (r->draining) {
            char reply[300];
            snprintf(reply, sizeof reply, RATE_DRAIN_REPLY, s->rule->name);
            rate_fail_all(s, reply, "connect");
            return;
        }
        s->rate_at = uv_now(r->loop) + (res->wait_ms ? res->wait_ms : 1);
        rate_arm(r);
        return;
    }
    group_t *g = s->wait_head;
    s->wait_head = g->wait_next;
    if (!s->wait_head) s->wait_tail = NULL;
    s->nwait--;
    uint64_t left = pmx_sites_suspended_ms(s->name);
    if (left) {   /* another worker's reply suspended the site while it waited */
        char reply[300];
        snprintf(reply, sizeof reply, "451 4.7.0 site_suspended: new sessions to %.200s wait "
                 "%llu s more (shaping on_reply)", s->name, (unsigned long long)(left + 999) / 1000);
        group_fail(g, PMX_SMTP_TEMPFAIL, reply, "connect");
    } else {
        group_send(g, s);
    }
    rate_kick(s);
}

/* Asks the limiter for the head of s's queue, if it may now. */
static void rate_kick(site_t *s)
{
    pmx_mxroute_t *r = s->r;
    if (!s->wait_head || s->asking || s->closing) return;
    if (s->rate_at > uv_now(r->loop)) return;     /* rate_timer comes back for it */
    s->rate_at = 0;
    pmx_smtp_pool_stats_t st;
    pmx_smtp_pool_stats(s->pool, &st);
    if (st.queued > 0) return;                    /* on_group_sent comes back for it */
    if (!r->rl) {
        char err[300];
        r->rl = r->redis ? pmx_ratelimit_new(r->loop, r->redis, r->prefix, err, sizeof err) : NULL;
        if (!r->rl) {
            char reply[300];
            snprintf(reply, sizeof reply, RATE_DOWN_REPLY, s->rule->name);
            pmx_log_error("mx site rate limiter cannot start site=%s: %s", s->name,
                          r->redis ? err : "no Redis connection");
            rate_fail_all(s, reply, "connect");
            return;
        }
    }
    s->asking = true;
    if (pmx_ratelimit_take_site(r->rl, s->rule->name, s->rule->rate_per_second, s->rule->burst, 1,
                                on_rate, s) < 0) {
        s->asking = false;
        char reply[300];
        snprintf(reply, sizeof reply, RATE_DOWN_REPLY, s->rule->name);
        rate_fail_all(s, reply, "connect");
    }
}

static void on_rate_timer(uv_timer_t *t)
{
    pmx_mxroute_t *r = t->data;
    uint64_t now = uv_now(r->loop);
    for (site_t *s = r->sites; s; s = s->next)
        if (s->rate_at && s->rate_at <= now) {
            s->rate_at = 0;
            rate_kick(s);
        }
    rate_arm(r);
}

/* rate_timer for the earliest site told to wait. */
static void rate_arm(pmx_mxroute_t *r)
{
    if (r->finished) return;
    uint64_t due = 0;
    for (site_t *s = r->sites; s; s = s->next)
        if (s->rate_at && s->wait_head && !s->closing && (!due || s->rate_at < due)) due = s->rate_at;
    if (!due) {
        uv_timer_stop(&r->rate_timer);
        return;
    }
    uint64_t now = uv_now(r->loop);
    uv_timer_start(&r->rate_timer, on_rate_timer, due > now ? due - now : 0, 0);
}

void pmx_mxroute_drain(pmx_mxroute_t *r)
{
    if (r->draining) return;
    r->draining = true;
    char reply[300];
    for (site_t *s = r->sites; s; s = s->next) {
        if (!s->rate_at || !s->wait_head || s->closing) continue;
        s->rate_at = 0;                 /* parked on the timer: its turn is not now */
        snprintf(reply, sizeof reply, RATE_DRAIN_REPLY, s->rule->name);
        rate_fail_all(s, reply, "connect");
    }
    rate_arm(r);
}

/* ---- the dispatcher ---- */

static void on_idle(uv_idle_t *h)
{
    pmx_mxroute_t *r = h->data;
    uv_idle_stop(&r->idle);
    r->idle_on = false;
    for (site_t *s = r->sites; s; s = s->next) {
        if (!s->suspend_due) continue;
        s->suspend_due = false;
        char reply[300];
        snprintf(reply, sizeof reply, "451 4.7.0 site_suspended: new sessions to %.200s suspended "
                 "(shaping on_reply)", s->name);
        pmx_smtp_pool_fail_queued(s->pool, PMX_SMTP_TEMPFAIL, "connect", reply);
        rate_fail_all(s, reply, "connect");
    }
    finish_ready(r);
    maybe_finish(r);
}

static void schedule(pmx_mxroute_t *r)
{
    if (r->idle_on || r->finished) return;
    r->idle_on = true;
    uv_idle_start(&r->idle, on_idle);
}

static void on_sweep(uv_timer_t *t)
{
    pmx_mxroute_t *r = t->data;
    uint64_t now = uv_now(r->loop);
    /* Sessions idle here for a sweep while another worker waits for their site
     * (refused for the limit, routing/sites.h): QUIT them now rather than after
     * SITE_IDLE_MS. Without this the other worker's mail for the site waited for them
     * to idle out (seen in `make bench`, docs/bench.md "Direct delivery"); a site
     * whose mail merely paused between two messages keeps its sessions. */
    for (site_t *s = r->sites; s; s = s->next) {
        if (s->closing || s->inflight || now - s->used_ms < SWEEP_MS) continue;
        pmx_smtp_pool_stats_t st;
        pmx_smtp_pool_stats(s->pool, &st);
        if (st.sessions > st.busy && st.queued == 0 && pmx_sites_wanted(s->key))
            pmx_smtp_pool_quit_idle(s->pool);
    }
    for (site_t *s = r->sites, *next; s; s = next) {
        next = s->next;
        if (s->closing || s->inflight || s->wait_head || s->asking) continue;
        pmx_smtp_pool_stats_t st;
        pmx_smtp_pool_stats(s->pool, &st);
        if (st.sessions == 0 && st.queued == 0 && now - s->used_ms >= PMX_MXROUTE_SITE_IDLE_MS)
            site_close(s);
    }
}

static void handle_closed(uv_handle_t *h)
{
    pmx_mxroute_t *r = h->data;
    if (--r->handles > 0) return;
    void (*closed)(void *) = r->closed;
    void *arg = r->closed_arg;
    pmx_shaping_free(&r->shaping);
    free(r->helo);
    free(r->prefix);
    free(r);
    if (closed) closed(arg);
}

/* After close: once no message and no site is left, the last call. */
static void maybe_finish(pmx_mxroute_t *r)
{
    if (!r->closing || r->finished || r->msgs || r->ready || r->sites) return;
    r->finished = true;
    pmx_mx_free(r->mx);
    pmx_resolver_free(r->res);
    uv_idle_stop(&r->idle);
    uv_timer_stop(&r->sweep);
    uv_timer_stop(&r->rate_timer);
    if (r->rl) pmx_ratelimit_free(r->rl);
    r->rl = NULL;
    uv_close((uv_handle_t *)&r->idle, handle_closed);
    uv_close((uv_handle_t *)&r->sweep, handle_closed);
    uv_close((uv_handle_t *)&r->rate_timer, handle_closed);
}

/* ---- public ---- */

int pmx_mxroute_new(uv_loop_t *loop, const pmx_config_t *cfg, pmx_redis_conn_t *redis,
                    pmx_mxroute_t **out, char *err, size_t errlen)
{
    pmx_mx_net_t *nets;
    size_t nnets;
    char why[300];
    if (pmx_mx_parse_networks(cfg->mx_allow_networks, &nets, &nnets, why, sizeof why) < 0) {
        snprintf(err, errlen, "[mx] allow_networks: %s", why);
        return -1;
    }
    pmx_mxroute_t *r = pmx_xcalloc(1, sizeof *r);
    if (pmx_shaping_load(cfg->mx_shaping_file, &r->shaping, err, errlen) < 0) {
        free(nets);
        free(r);
        return -1;
    }
    if (pmx_resolver_new(loop, cfg->mx_resolver, &r->res, err, errlen) < 0) {
        pmx_shaping_free(&r->shaping);
        free(nets);
        free(r);
        return -1;
    }
    r->loop = loop;
    r->port = cfg->mx_port;
    r->per_site = cfg->mx_connections_per_site;
    r->per_conn = cfg->mx_messages_per_connection;
    r->connect_timeout_ms = cfg->mx_connect_timeout_ms;
    r->tls = cfg->mx_tls;
    r->helo = pmx_xstrdup(cfg->mx_helo_name);
    r->redis = redis;
    r->prefix = pmx_xstrdup(cfg->redis_prefix);
    r->mx = pmx_mx_new(loop, r->res, r->port, nets, nnets);
    free(nets);
    uv_idle_init(loop, &r->idle);
    r->idle.data = r;
    uv_timer_init(loop, &r->sweep);
    r->sweep.data = r;
    uv_timer_start(&r->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    uv_unref((uv_handle_t *)&r->sweep);
    uv_timer_init(loop, &r->rate_timer);
    r->rate_timer.data = r;
    r->handles = 3;
    *out = r;
    return 0;
}

/* The domain of a recipient, lowercase, into out; false when it has none we can route. */
static bool rcpt_domain(const char *rcpt, char *out, size_t outlen)
{
    const char *at = rcpt ? strrchr(rcpt, '@') : NULL;
    if (!at || !at[1] || strlen(at + 1) >= outlen) return false;
    size_t k = 0;
    for (const char *p = at + 1; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
              || c == '-' || c == '.' || c == '_'))
            return false;
        out[k++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    out[k] = '\0';
    return k > 0 && out[0] != '.' && out[k - 1] != '.';
}

int pmx_mxroute_send(pmx_mxroute_t *r, pmx_egress_t *egress, const pmx_smtp_envelope_t *env,
                     const char *data, size_t len, pmx_smtp_send_cb cb, void *arg)
{
    if (r->closing) return UV_ESHUTDOWN;
    if (!env || !cb || !env->mail_from || !env->rcpts || env->nrcpts == 0 || (!data && len)) {
        pmx_log_error("mx send refused: missing envelope, recipients, data or callback");
        return UV_EINVAL;
    }
    if (env->mail_from[0] && !pmx_addr_envelope_ok(env->mail_from)) {
        pmx_log_error("mx send refused: the envelope sender is not an RFC 5321 mailbox");
        return UV_EINVAL;
    }
    msg_t *m = pmx_xcalloc(1, sizeof *m);
    m->r = r;
    m->env = *env;
    m->data = data ? data : "";
    m->len = len;
    m->cb = cb;
    m->arg = arg;
    m->egress = egress;
    size_t n = env->nrcpts;
    m->out = pmx_xcalloc(n, sizeof *m->out);
    m->g = pmx_xcalloc(n, sizeof *m->g);
    /* Groups by domain, in the order domains first appear. */
    size_t *bad = pmx_xcalloc(n, sizeof *bad), nbad = 0;
    for (size_t i = 0; i < n; i++) {
        char d[256];
        if (!rcpt_domain(env->rcpts[i], d, sizeof d)) {
            bad[nbad++] = i;
            continue;
        }
        group_t *g = NULL;
        for (size_t k = 0; k < m->ng && !g; k++)
            if (strcmp(m->g[k].domain, d) == 0) g = &m->g[k];
        if (!g) {
            g = &m->g[m->ng++];
            g->m = m;
            g->domain = pmx_xstrdup(d);
            g->idx = pmx_xcalloc(n, sizeof *g->idx);
            g->rcpts = pmx_xcalloc(n, sizeof *g->rcpts);
        }
        g->idx[g->n] = i;
        g->rcpts[g->n++] = env->rcpts[i];
    }
    for (size_t k = 0; k < nbad; k++)
        set_out(&m->out[bad[k]], PMX_SMTP_PERMFAIL,
                "553 5.1.3 not sent by postmux: the recipient's domain cannot be routed "
                "(not an ASCII domain name)", "RCPT TO");
    free(bad);
    m->pending = m->ng + 1;              /* +1: held while the groups are started */
    m->next = r->msgs;
    if (r->msgs) r->msgs->prev = m;
    r->msgs = m;
    for (size_t k = 0; k < m->ng; k++) {
        group_t *g = &m->g[k];
        pmx_mx_route_t *route = pmx_mx_lookup(r->mx, g->domain, on_route, g, &g->waiter);
        if (route) {
            group_route(g, route);
            pmx_mx_route_unref(route);
        }
    }
    group_t hold = { .m = m };
    group_done(&hold);
    return 0;
}

void pmx_mxroute_close(pmx_mxroute_t *r, void (*closed)(void *arg), void *arg)
{
    if (r->closing) return;
    r->closing = true;
    r->closed = closed;
    r->closed_arg = arg;
    /* Groups still waiting for DNS are deferred now; sent ones finish in their pools. */
    for (msg_t *m = r->msgs, *next; m; m = next) {
        next = m->next;
        for (size_t k = 0; k < m->ng; k++) {
            group_t *g = &m->g[k];
            if (g->waiter) {
                pmx_mx_cancel(r->mx, g->waiter);
                g->waiter = NULL;
                group_fail(g, PMX_SMTP_TEMPFAIL, "451 4.3.0 direct delivery shutting down",
                           "MX lookup");
            }
        }
    }
    for (site_t *s = r->sites, *next; s; s = next) {
        next = s->next;
        site_close(s);
    }
    schedule(r);
}

void pmx_mxroute_abort(pmx_mxroute_t *r)
{
    if (!r->closing) pmx_mxroute_close(r, NULL, NULL);
    r->aborting = true;
    for (site_t *s = r->sites; s; s = s->next) pmx_smtp_pool_abort(s->pool);
}

size_t pmx_mxroute_queued(const pmx_mxroute_t *r)
{
    size_t n = 0;
    for (const site_t *s = r->sites; s; s = s->next) {
        pmx_smtp_pool_stats_t st;
        pmx_smtp_pool_stats(s->pool, &st);
        n += st.queued + s->nwait;
    }
    return n;
}

void pmx_mxroute_stats(const pmx_mxroute_t *r, pmx_smtp_pool_stats_t *out)
{
    *out = r->retired;
    for (const site_t *s = r->sites; s; s = s->next) {
        pmx_smtp_pool_stats_t st;
        pmx_smtp_pool_stats(s->pool, &st);
        if (s->closing) st.connections = st.sent = st.tempfail = st.permfail = 0;
        st.queued += s->nwait;
        add_stats(out, &st);
    }
}
