/*
 * Where a worker's messages go: the one sender the pipeline calls, whatever
 * the route (docs/delivery.md). [delivery] route = relay: the relay pool
 * (smtp/pool.h, [relay]); route = mx: direct delivery to each recipient
 * domain's MX (routing/mxroute.h, [mx]). Both keep smtp/pool.h's contract,
 * which is this file's too: borrowed envelope and data until the callback,
 * one callback per accepted message from the loop (never inside send),
 * graceful close with a last "closed" call, abort for what is left.
 *
 * The workspace is passed along with every message so that per-workspace
 * choices (egress pools, a workspace's own route) can be made here without
 * touching the pipeline.
 */
#ifndef PMX_WORKERS_SENDER_H
#define PMX_WORKERS_SENDER_H
#include <stddef.h>

#include <uv.h>

#include "config/config.h"
#include "smtp/pool.h"

typedef struct pmx_sender pmx_sender_t;

/* Builds the sender of cfg's route. 0, or -1 with a reason in err. */
int  pmx_sender_new(uv_loop_t *loop, const pmx_config_t *cfg, pmx_sender_t **out, char *err,
                    size_t errlen);
/* As pmx_smtp_pool_send: 0, UV_EINVAL (bad envelope), UV_ESHUTDOWN. */
int  pmx_sender_send(pmx_sender_t *s, const char *ws_id, const pmx_smtp_envelope_t *env,
                     const char *data, size_t len, pmx_smtp_send_cb cb, void *arg);
/* Graceful close (once; closed may be NULL; the sender is freed after it). */
void pmx_sender_close(pmx_sender_t *s, void (*closed)(void *arg), void *arg);
/* After close: ends what is left at once (TEMPFAIL). */
void pmx_sender_abort(pmx_sender_t *s);
void pmx_sender_stats(const pmx_sender_t *s, pmx_smtp_pool_stats_t *out);
/*
 * Messages parked behind a busy destination that should not hold the
 * worker's job capacity, at most cap: with route = mx, those waiting in a
 * site's queue (a slow site must not starve the others); with the relay, 0
 * (the relay is the only destination, and its in-flight bound is the
 * duplicate window's, docs/delivery.md).
 */
size_t pmx_sender_parked(const pmx_sender_t *s, size_t cap);

#endif
