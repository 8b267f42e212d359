/*
 * Where a worker's messages go: the one sender the pipeline calls, whatever
 * the route (docs/delivery.md). A workspace's own route decides first
 * (`workspace set --route`): smtp://… and smtps://… go to its provider, mx
 * to direct delivery; a workspace without one follows [delivery] route —
 * relay: the [relay] (workers/routes.h: one session pool per route and
 * egress pool), mx: direct delivery to each recipient domain's MX
 * (routing/mxroute.h, session pools per site and egress pool). All keep
 * smtp/pool.h's contract, which is this file's too: borrowed envelope and
 * data until the callback, one callback per accepted message from the loop
 * (never inside send), graceful close with a last "closed" call, abort for
 * what is left.
 */
#ifndef PMX_WORKERS_SENDER_H
#define PMX_WORKERS_SENDER_H
#include <stddef.h>

#include <uv.h>

#include "config/config.h"
#include "queue/redis_conn.h"
#include "smtp/pool.h"
#include "workers/settings.h"

typedef struct pmx_sender pmx_sender_t;

/* Builds the sender for cfg (the [relay] pool; direct delivery when [delivery]
 * route = mx). redis (borrowed) serves the per-site rates of direct delivery.
 * 0, or -1 with a reason in err. */
int  pmx_sender_new(uv_loop_t *loop, const pmx_config_t *cfg, pmx_redis_conn_t *redis,
                    pmx_sender_t **out, char *err, size_t errlen);
/*
 * Sends one message of workspace ws. As pmx_smtp_pool_send: 0, UV_EINVAL (bad
 * envelope), UV_ESHUTDOWN; or UV_EAGAIN with a "451 ..." reply in why when the
 * workspace cannot send from this worker now (its route or egress pool is
 * unusable here, or direct delivery cannot start): defer it.
 */
int  pmx_sender_send(pmx_sender_t *s, const pmx_settings_ws_t *ws, const pmx_smtp_envelope_t *env,
                     const char *data, size_t len, pmx_smtp_send_cb cb, void *arg, char *why,
                     size_t whylen);
/* The settings swapped: session pools no workspace uses any more are retired. */
void pmx_sender_settings_changed(pmx_sender_t *s, const pmx_settings_t *settings);
/* The worker drains: nothing is held for a site's rate any more (routing/mxroute.h). */
void pmx_sender_drain(pmx_sender_t *s);
/* Graceful close (once; closed may be NULL; the sender is freed after it). */
void pmx_sender_close(pmx_sender_t *s, void (*closed)(void *arg), void *arg);
/* After close: ends what is left at once (TEMPFAIL). */
void pmx_sender_abort(pmx_sender_t *s);
void pmx_sender_stats(const pmx_sender_t *s, pmx_smtp_pool_stats_t *out);
/*
 * Messages parked behind a busy destination that should not hold the
 * worker's job capacity, at most cap: those waiting in a direct-delivery
 * site's queue (a slow site must not starve the others); relay routes count
 * 0 (their in-flight bound is the duplicate window's, docs/delivery.md).
 */
size_t pmx_sender_parked(const pmx_sender_t *s, size_t cap);

#endif
