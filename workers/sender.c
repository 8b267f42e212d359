/*
 * The worker's sender: relay routes (workers/routes.h) and direct delivery
 * (routing/mxroute.h) side by side; see sender.h.
 */
#include "workers/sender.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "lib/mem.h"
#include "routing/mxroute.h"
#include "routing/wsroute.h"
#include "workers/routes.h"

struct pmx_sender {
    uv_loop_t          *loop;
    const pmx_config_t *cfg;
    pmx_routes_t       *routes;     /* the [relay] and workspaces' own providers */
    pmx_redis_conn_t   *redis;      /* borrowed: direct delivery's site rate limiter */
    pmx_mxroute_t      *mx;         /* direct delivery: made at start with route = mx,
                                       else on the first workspace whose route is mx */
    char               *mx_error;   /* it could not be made (logged once): tried again
                                       after the next settings load */
    int                 open;       /* parts not closed yet (+1 while close asks them) */
    bool                closing, routes_done, mx_done, in_abort, draining;
    void              (*closed)(void *arg);
    void               *closed_arg;
};

int pmx_sender_new(uv_loop_t *loop, const pmx_config_t *cfg, pmx_redis_conn_t *redis,
                   pmx_sender_t **out, char *err, size_t errlen)
{
    pmx_sender_t *s = pmx_xcalloc(1, sizeof *s);
    s->loop = loop;
    s->cfg = cfg;
    s->redis = redis;
    if (!(s->routes = pmx_routes_new(loop, cfg, err, errlen))) {
        free(s);
        return -1;
    }
    if (cfg->delivery_route == PMX_ROUTE_MX
        && pmx_mxroute_new(loop, cfg, redis, &s->mx, err, errlen) < 0) {
        pmx_routes_close(s->routes, NULL, NULL);
        pmx_routes_abort(s->routes);
        free(s);
        return -1;
    }
    *out = s;
    return 0;
}

/* Whether ws goes by direct delivery. */
static bool by_mx(const pmx_sender_t *s, const pmx_settings_ws_t *ws)
{
    const pmx_wsroute_t *rt = ws ? ws->route : NULL;
    if (rt && rt->kind == PMX_WSROUTE_MX) return true;
    if (rt && rt->kind == PMX_WSROUTE_SMTP) return false;
    return s->cfg->delivery_route == PMX_ROUTE_MX;
}

int pmx_sender_send(pmx_sender_t *s, const pmx_settings_ws_t *ws, const pmx_smtp_envelope_t *env,
                    const char *data, size_t len, pmx_smtp_send_cb cb, void *arg, char *why,
                    size_t whylen)
{
    if (s->closing) return UV_ESHUTDOWN;
    if (!by_mx(s, ws)) return pmx_routes_send(s->routes, ws, env, data, len, cb, arg, why, whylen);
    pmx_egress_t *egress;
    if (pmx_routes_mx_egress(s->routes, ws, &egress, why, whylen) < 0) return UV_EAGAIN;
    if (!s->mx) {
        /* Made lazily (a workspace with --route mx under [delivery] route = relay).
         * If it cannot start, every message defers with the reason, which is
         * logged once per settings load (as workers/routes.c does), not per
         * message; the next load tries again. */
        if (!s->mx_error) {
            char err[400];
            if (pmx_mxroute_new(s->loop, s->cfg, s->redis, &s->mx, err, sizeof err) < 0) {
                s->mx_error = pmx_xstrdup(err);
                pmx_log_error("mx: direct delivery cannot start, deferring the mail of workspaces "
                              "with route mx: %s", err);
            } else if (s->draining) {
                pmx_mxroute_drain(s->mx);
            }
        }
        if (s->mx_error) {
            snprintf(why, whylen, "451 4.3.5 direct delivery cannot start: %s", s->mx_error);
            return UV_EAGAIN;
        }
    }
    return pmx_mxroute_send(s->mx, egress, env, data, len, cb, arg);
}

void pmx_sender_settings_changed(pmx_sender_t *s, const pmx_settings_t *settings)
{
    if (s->closing) return;
    pmx_routes_settings_changed(s->routes, settings);
    free(s->mx_error);
    s->mx_error = NULL;
}

void pmx_sender_drain(pmx_sender_t *s)
{
    s->draining = true;
    if (s->mx && !s->closing) pmx_mxroute_drain(s->mx);
}

static void finish(pmx_sender_t *s)
{
    void (*closed)(void *) = s->closed;
    void *carg = s->closed_arg;
    free(s->mx_error);
    free(s);
    if (closed) closed(carg);
}

static void part_closed(pmx_sender_t *s)
{
    if (--s->open == 0 && !s->in_abort) finish(s);
}

static void routes_closed(void *arg)
{
    pmx_sender_t *s = arg;
    s->routes_done = true;
    part_closed(s);
}

static void mx_closed(void *arg)
{
    pmx_sender_t *s = arg;
    s->mx_done = true;
    part_closed(s);
}

void pmx_sender_close(pmx_sender_t *s, void (*closed)(void *arg), void *arg)
{
    if (s->closing) return;
    s->closing = true;
    s->closed = closed;
    s->closed_arg = arg;
    s->open = 1 + (s->mx ? 1 : 0) + 1;   /* +1: held while both are asked */
    s->mx_done = !s->mx;
    pmx_routes_close(s->routes, routes_closed, s);
    if (s->mx) pmx_mxroute_close(s->mx, mx_closed, s);
    part_closed(s);
}

void pmx_sender_abort(pmx_sender_t *s)
{
    /* A part may call back inside its abort: the sender is freed only after. */
    s->in_abort = true;
    if (!s->mx_done) pmx_mxroute_abort(s->mx);
    if (!s->routes_done) pmx_routes_abort(s->routes);
    s->in_abort = false;
    if (s->open == 0) finish(s);
}

void pmx_sender_stats(const pmx_sender_t *s, pmx_smtp_pool_stats_t *out)
{
    memset(out, 0, sizeof *out);
    /* While closing, a part that has called back is freed already; the other may
     * still be closing, and the pipeline's timer still asks. */
    if (s->mx && !s->mx_done) pmx_mxroute_stats(s->mx, out);
    if (s->routes_done) return;
    unsigned sessions;
    size_t queued;
    pmx_routes_stats(s->routes, &sessions, &queued);
    out->sessions += sessions;
    out->queued += queued;
}

size_t pmx_sender_parked(const pmx_sender_t *s, size_t cap)
{
    if (!s->mx || s->mx_done) return 0;
    size_t n = pmx_mxroute_queued(s->mx);
    return n < cap ? n : cap;
}
