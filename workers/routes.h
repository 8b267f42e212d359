/*
 * Where a worker's messages leave from (docs/delivery.md "Egress pools" and
 * "Per-workspace routes"): a table of relay-client pools (smtp/pool.h), one
 * per session key (routing/egress.h) — the [relay] without a pool, the
 * [relay] from each egress pool in use, and each workspace's own route from
 * its pool. A message goes to the sessions of its workspace's key, so
 * sessions are never shared between pools or between routes.
 *
 * Session pools are made on first use and retired (QUIT after their
 * in-flight messages, see pmx_smtp_pool_close) when a settings change leaves
 * no workspace using their key, or when a route's password changed; so a
 * `workspace set --pool/--route` takes effect without a restart.
 *
 * Contract, as smtp/pool.h: pmx_routes_send borrows env, its strings and
 * data until cb ran; cb runs exactly once per accepted message, from the
 * loop. pmx_routes_close lets queued and in-flight messages finish, then
 * calls closed(arg) once and frees the table after it returns;
 * pmx_routes_abort (after close) ends everything at once with TEMPFAIL.
 * Single-threaded (the worker's loop).
 */
#ifndef PMX_WORKERS_ROUTES_H
#define PMX_WORKERS_ROUTES_H
#include <stddef.h>

#include <uv.h>

#include "config/config.h"
#include "routing/egress.h"
#include "smtp/pool.h"
#include "workers/settings.h"

typedef struct pmx_routes pmx_routes_t;

/* Makes the table and the [relay] session pool; cfg must outlive it. NULL
 * with a reason in err ([relay] unusable, unreadable password file). */
pmx_routes_t *pmx_routes_new(uv_loop_t *loop, const pmx_config_t *cfg, char *err, size_t errlen);

/*
 * Queues one message of workspace ws on the sessions of its route and pool.
 * Returns 0 (cb will run); UV_EINVAL or UV_ESHUTDOWN as pmx_smtp_pool_send;
 * or UV_EAGAIN when the workspace cannot send from this worker now — its
 * pool is not in this daemon's config, its route or route password is
 * unusable, or its route is mx (not built into this postmuxd) — with an
 * SMTP-style temporary reply in why ("451 4.3.5 ..."), logged: defer it.
 */
int pmx_routes_send(pmx_routes_t *r, const pmx_settings_ws_t *ws, const pmx_smtp_envelope_t *env,
                    const char *data, size_t len, pmx_smtp_send_cb cb, void *arg, char *why,
                    size_t whylen);

/*
 * For a workspace sent by direct delivery (its route is mx, or [delivery]
 * route = mx and it has none of its own): its egress pool in *egress (NULL =
 * none). 0; or -1 with a "451 ..." reply in why (logged once per settings
 * load) when its route is unusable or its pool is not in this daemon's config.
 */
int pmx_routes_mx_egress(pmx_routes_t *r, const pmx_settings_ws_t *ws, pmx_egress_t **egress,
                         char *why, size_t whylen);

/* The settings swapped: retire the session pools no workspace uses any more. */
void pmx_routes_settings_changed(pmx_routes_t *r, const pmx_settings_t *s);

void pmx_routes_close(pmx_routes_t *r, void (*closed)(void *arg), void *arg);
void pmx_routes_abort(pmx_routes_t *r);

/* Sessions open now and messages queued, summed over every session pool. */
void pmx_routes_stats(const pmx_routes_t *r, unsigned *sessions, size_t *queued);

#endif
