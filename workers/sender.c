/*
 * The worker's sender: the relay pool or direct delivery; see sender.h.
 */
#include "workers/sender.h"

#include <stdlib.h>
#include <string.h>

#include "lib/mem.h"
#include "routing/mxroute.h"

struct pmx_sender {
    pmx_smtp_pool_t *pool;      /* route = relay */
    pmx_mxroute_t   *mx;        /* route = mx */
    void           (*closed)(void *arg);
    void            *closed_arg;
};

int pmx_sender_new(uv_loop_t *loop, const pmx_config_t *cfg, pmx_sender_t **out, char *err,
                   size_t errlen)
{
    pmx_sender_t *s = pmx_xcalloc(1, sizeof *s);
    if (cfg->delivery_route == PMX_ROUTE_MX) {
        if (pmx_mxroute_new(loop, cfg, &s->mx, err, errlen) < 0) {
            free(s);
            return -1;
        }
        *out = s;
        return 0;
    }
    pmx_smtp_relay_t relay;
    char *password = NULL;
    if (pmx_smtp_relay_from_config(cfg, &relay, &password, err, errlen) < 0) {
        free(s);
        return -1;
    }
    int rc = pmx_smtp_pool_new(loop, &relay, &s->pool, err, errlen);
    if (password) {
        pmx_wipe(password, strlen(password));
        free(password);
    }
    if (rc < 0) {
        free(s);
        return -1;
    }
    *out = s;
    return 0;
}

int pmx_sender_send(pmx_sender_t *s, const char *ws_id, const pmx_smtp_envelope_t *env,
                    const char *data, size_t len, pmx_smtp_send_cb cb, void *arg)
{
    (void)ws_id;
    return s->mx ? pmx_mxroute_send(s->mx, env, data, len, cb, arg)
                 : pmx_smtp_pool_send(s->pool, env, data, len, cb, arg);
}

static void on_closed(void *arg)
{
    pmx_sender_t *s = arg;
    void (*closed)(void *) = s->closed;
    void *carg = s->closed_arg;
    free(s);
    if (closed) closed(carg);
}

void pmx_sender_close(pmx_sender_t *s, void (*closed)(void *arg), void *arg)
{
    s->closed = closed;
    s->closed_arg = arg;
    if (s->mx) pmx_mxroute_close(s->mx, on_closed, s);
    else pmx_smtp_pool_close(s->pool, on_closed, s);
}

void pmx_sender_abort(pmx_sender_t *s)
{
    if (s->mx) pmx_mxroute_abort(s->mx);
    else pmx_smtp_pool_abort(s->pool);
}

void pmx_sender_stats(const pmx_sender_t *s, pmx_smtp_pool_stats_t *out)
{
    if (s->mx) pmx_mxroute_stats(s->mx, out);
    else pmx_smtp_pool_stats(s->pool, out);
}

size_t pmx_sender_parked(const pmx_sender_t *s, size_t cap)
{
    if (!s->mx) return 0;
    size_t n = pmx_mxroute_queued(s->mx);
    return n < cap ? n : cap;
}
