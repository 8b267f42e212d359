/*
 * The worker's table of session pools by session key; see routes.h.
 *
 * Entries live on one list while usable; a retired entry leaves the list at
 * once (no new message reaches it) and is freed when its pool reports closed.
 * The [relay] entry without a pool is made at start, so a bad [relay] stops
 * the worker as before, and it is never retired (open >= 1 until close), so
 * closed() always comes from a pool's callback, never from inside a call.
 * Lookups are a walk of the list: there is one entry per key in use.
 */
#include "workers/routes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "lib/mem.h"
#include "routing/egress.h"

typedef struct entry {
    struct pmx_routes *r;
    char              *key;
    char              *password;     /* the AUTH password the pool holds (compared, wiped) */
    pmx_smtp_pool_t   *pool;
    bool               relay;        /* the [relay] entry without a pool: never retired */
    bool               seen;         /* used by a workspace of the current settings */
    struct entry      *next;         /* on live or on retired */
} entry_t;

struct pmx_routes {
    uv_loop_t          *loop;
    const pmx_config_t *cfg;
    pmx_smtp_relay_t    relay;       /* [relay], strings borrowed from cfg */
    char               *relay_password;
    pmx_egress_set_t    egress;
    entry_t            *live, *retired;
    unsigned            open;        /* entries whose pool has not reported closed */
    bool                closing, finished;
    void              (*closed)(void *);
    void               *closed_arg;
    char               *warned;      /* "\n"-joined reasons logged since the last swap */
};

/* What one workspace's messages need: the key and the relay settings behind it. */
typedef struct {
    pmx_buf_t        key;
    pmx_smtp_relay_t relay;          /* strings borrowed from r, the egress set or ws */
} spec_t;

static void wipe_free(char *s)
{
    if (!s) return;
    pmx_wipe(s, strlen(s));
    free(s);
}

static void entry_free(entry_t *e)
{
    free(e->key);
    wipe_free(e->password);
    free(e);
}

static void routes_free(pmx_routes_t *r)
{
    pmx_egress_set_free(&r->egress);
    wipe_free(r->relay_password);
    free(r->warned);
    free(r);
}

static void unlink_entry(entry_t **list, entry_t *e)
{
    for (entry_t **pp = list; *pp; pp = &(*pp)->next)
        if (*pp == e) {
            *pp = e->next;
            return;
        }
}

static void on_pool_closed(void *arg)
{
    entry_t *e = arg;
    pmx_routes_t *r = e->r;
    unlink_entry(&r->live, e);
    unlink_entry(&r->retired, e);
    entry_free(e);
    if (--r->open == 0 && r->closing && !r->finished) {
        r->finished = true;
        if (r->closed) r->closed(r->closed_arg);
        routes_free(r);
    }
}

/* No new message reaches e; its queued and in-flight ones finish, then QUIT. */
static void retire(pmx_routes_t *r, entry_t *e)
{
    unlink_entry(&r->live, e);
    e->next = r->retired;
    r->retired = e;
    pmx_log_info("route sessions retired key=\"%s\"", e->key);
    pmx_smtp_pool_close(e->pool, on_pool_closed, e);
}

/* Logs a reason once per settings generation (every message is deferred with it anyway). */
static void warn_once(pmx_routes_t *r, const char *ws, const char *reason)
{
    size_t n = strlen(reason);
    for (const char *p = r->warned; p && *p; p = strchr(p, '\n') + 1)
        if (strncmp(p, reason, n) == 0 && p[n] == '\n') return;
    size_t have = r->warned ? strlen(r->warned) : 0;
    r->warned = pmx_xrealloc(r->warned, have + n + 2);
    memcpy(r->warned + have, reason, n);
    r->warned[have + n] = '\n';
    r->warned[have + n + 1] = '\0';
    pmx_log_warn("workspace cannot send, deferring its mail ws=%s reason=\"%s\"", ws, reason);
}

/* The key and relay settings for ws; -1 with a "451 ..." reply in why when it cannot send. */
static int spec_for(pmx_routes_t *r, const pmx_settings_ws_t *ws, spec_t *sp, char *why,
                    size_t whylen)
{
    sp->relay = r->relay;
    if (ws->route_error) {
        snprintf(why, whylen, "451 4.3.5 workspace route: %s", ws->route_error);
        return -1;
    }
    pmx_egress_t *eg = NULL;
    if (ws->pool && !(eg = pmx_egress_find(&r->egress, ws->pool))) {
        snprintf(why, whylen, "451 4.3.5 egress pool %s is not in this postmuxd's configuration "
                 "(%s)", ws->pool, r->cfg->path ? r->cfg->path : "postmux.conf");
        return -1;
    }
    pmx_session_key_t k = { .kind = PMX_SESSION_RELAY, .pool = ws->pool };
    const pmx_wsroute_t *rt = ws->route;
    /* Direct delivery has its own session pools, keyed by site and egress pool
     * (routing/mxroute.h); workers/sender.c sends such workspaces there. */
    if (rt && rt->kind == PMX_WSROUTE_MX) {
        snprintf(why, whylen, "451 4.3.5 route mx: not a relay route");
        return -1;
    }
    if (rt && rt->kind == PMX_WSROUTE_SMTP) {
        k.kind = PMX_SESSION_SMTP;
        k.owner = ws->id;
        k.dest = rt->canonical;
        sp->relay.host = rt->host;
        sp->relay.port = rt->port;
        sp->relay.tls = rt->tls;
        sp->relay.auth_user = rt->user[0] ? rt->user : NULL;
        sp->relay.auth_password = rt->user[0] ? ws->route_password : NULL;
    }
    if (eg) {
        sp->relay.source = pmx_egress_source;
        sp->relay.source_arg = eg;
        if (eg->helo_name[0]) sp->relay.helo_name = eg->helo_name;
    }
    pmx_session_key_format(&k, &sp->key);
    return 0;
}

static bool same_password(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* The live entry of key, or NULL. */
static entry_t *find(pmx_routes_t *r, const char *key)
{
    for (entry_t *e = r->live; e; e = e->next)
        if (strcmp(e->key, key) == 0) return e;
    return NULL;
}

static entry_t *make_entry(pmx_routes_t *r, const spec_t *sp, bool relay, char *err, size_t errlen)
{
    pmx_smtp_pool_t *pool;
    if (pmx_smtp_pool_new(r->loop, &sp->relay, &pool, err, errlen) < 0) return NULL;
    entry_t *e = pmx_xcalloc(1, sizeof *e);
    e->r = r;
    e->key = pmx_xstrdup(pmx_buf_cstr(&sp->key));
    e->password = sp->relay.auth_password ? pmx_xstrdup(sp->relay.auth_password) : NULL;
    e->pool = pool;
    e->relay = relay;
    e->next = r->live;
    r->live = e;
    r->open++;
    pmx_log_info("route sessions made key=\"%s\" host=%s:%d helo=%s", e->key, sp->relay.host,
                 sp->relay.port, sp->relay.helo_name && *sp->relay.helo_name ? sp->relay.helo_name
                                                                              : "(host name)");
    return e;
}

pmx_routes_t *pmx_routes_new(uv_loop_t *loop, const pmx_config_t *cfg, char *err, size_t errlen)
{
    pmx_routes_t *r = pmx_xcalloc(1, sizeof *r);
    r->loop = loop;
    r->cfg = cfg;
    if (pmx_smtp_relay_from_config(cfg, &r->relay, &r->relay_password, err, errlen) < 0) {
        free(r);
        return NULL;
    }
    pmx_egress_set_init(&r->egress, cfg);
    pmx_egress_probe(&r->egress);
    spec_t sp = { .key = PMX_BUF_INIT, .relay = r->relay };
    pmx_session_key_t k = { .kind = PMX_SESSION_RELAY };
    pmx_session_key_format(&k, &sp.key);
    entry_t *e = make_entry(r, &sp, true, err, errlen);
    pmx_buf_free(&sp.key);
    if (!e) {
        routes_free(r);
        return NULL;
    }
    return r;
}

int pmx_routes_send(pmx_routes_t *r, const pmx_settings_ws_t *ws, const pmx_smtp_envelope_t *env,
                    const char *data, size_t len, pmx_smtp_send_cb cb, void *arg, char *why,
                    size_t whylen)
{
    if (r->closing) return UV_ESHUTDOWN;
    spec_t sp = { .key = PMX_BUF_INIT };
    if (spec_for(r, ws, &sp, why, whylen) < 0) {
        warn_once(r, ws->id, why);
        pmx_buf_free(&sp.key);
        return UV_EAGAIN;
    }
    entry_t *e = find(r, pmx_buf_cstr(&sp.key));
    if (e && !e->relay && !same_password(e->password, sp.relay.auth_password)) {
        retire(r, e);     /* the route's password changed: new sessions log in anew */
        e = NULL;
    }
    if (!e) {
        char err[400];
        e = make_entry(r, &sp, false, err, sizeof err);
        if (!e) {
            snprintf(why, whylen, "451 4.3.5 route unusable: %s", err);
            warn_once(r, ws->id, why);
            pmx_buf_free(&sp.key);
            return UV_EAGAIN;
        }
    }
    pmx_buf_free(&sp.key);
    return pmx_smtp_pool_send(e->pool, env, data, len, cb, arg);
}

int pmx_routes_mx_egress(pmx_routes_t *r, const pmx_settings_ws_t *ws, pmx_egress_t **egress,
                         char *why, size_t whylen)
{
    *egress = NULL;
    if (ws->route_error)
        snprintf(why, whylen, "451 4.3.5 workspace route: %s", ws->route_error);
    else if (ws->pool && !(*egress = pmx_egress_find(&r->egress, ws->pool)))
        snprintf(why, whylen, "451 4.3.5 egress pool %s is not in this postmuxd's configuration "
                 "(%s)", ws->pool, r->cfg->path ? r->cfg->path : "postmux.conf");
    else
        return 0;
    warn_once(r, ws->id, why);
    return -1;
}

void pmx_routes_settings_changed(pmx_routes_t *r, const pmx_settings_t *s)
{
    if (r->closing) return;
    free(r->warned);
    r->warned = NULL;
    for (entry_t *e = r->live; e; e = e->next) e->seen = e->relay;
    size_t n = pmx_settings_count(s);
    char why[400];
    for (size_t i = 0; i < n; i++) {
        spec_t sp = { .key = PMX_BUF_INIT };
        if (spec_for(r, pmx_settings_at(s, i), &sp, why, sizeof why) == 0) {
            entry_t *e = find(r, pmx_buf_cstr(&sp.key));
            if (e && same_password(e->password, sp.relay.auth_password)) e->seen = true;
        }
        pmx_buf_free(&sp.key);
    }
    for (entry_t *e = r->live, *next; e; e = next) {
        next = e->next;
        if (!e->seen) retire(r, e);
    }
}

void pmx_routes_close(pmx_routes_t *r, void (*closed)(void *arg), void *arg)
{
    if (r->closing) return;
    r->closing = true;
    r->closed = closed;
    r->closed_arg = arg;
    for (entry_t *e = r->live, *next; e; e = next) {
        next = e->next;
        unlink_entry(&r->live, e);
        e->next = r->retired;
        r->retired = e;
        pmx_smtp_pool_close(e->pool, on_pool_closed, e);
    }
}

void pmx_routes_abort(pmx_routes_t *r)
{
    for (entry_t *e = r->retired; e; e = e->next) pmx_smtp_pool_abort(e->pool);
}

void pmx_routes_stats(const pmx_routes_t *r, unsigned *sessions, size_t *queued)
{
    *sessions = 0;
    *queued = 0;
    for (int l = 0; l < 2; l++)
        for (const entry_t *e = l ? r->retired : r->live; e; e = e->next) {
            pmx_smtp_pool_stats_t ps;
            pmx_smtp_pool_stats(e->pool, &ps);
            *sessions += ps.sessions;
            *queued += ps.queued;
        }
}
