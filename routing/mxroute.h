/*
 * Direct delivery ([delivery] route = mx; docs/delivery.md, "Direct
 * delivery"): the worker's sender that takes the place of the relay pool.
 * It has the pool's contract (smtp/pool.h) — the same send call, callback and
 * result — so the pipeline only chooses which one to call:
 *
 *   a message's recipients are split per domain (one delivery each);
 *   each domain's route comes from routing/mx.h (cached per worker);
 *   BOUNCE / DEFER routes decide their recipients at once (the route's reply);
 *   otherwise the delivery goes to the pool of the route's site: one
 *   smtp/pool.h pool per site, holding the route's addresses in MX order,
 *   with at most [mx] connections_per_site sessions per host (routing/sites.h
 *   admits each new session), [mx] messages_per_connection, [mx] tls, port,
 *   helo_name and connect_timeout; a site whose shaping rule has a rate
 *   holds its deliveries in order until the rule's limiter (in Redis, shared
 *   by every worker and host) gives each one its token;
 *   when every domain has answered, the callback gets one result with every
 *   recipient's outcome in envelope order.
 *
 * A site whose hosts are slow or down only holds its own pool's queue: other
 * sites have their own pools and every other domain is answered as usual.
 * A site pool unused for PMX_MXROUTE_SITE_IDLE_MS is closed.
 *
 * Contract (as smtp/pool.h): the envelope's strings, rcpts and data are
 * borrowed until the callback; the callback runs exactly once per accepted
 * message, from the loop, never inside pmx_mxroute_send; close lets every
 * message finish, then calls closed once; abort ends whatever is left with
 * TEMPFAIL. Errors: 0 / -1 with err; send returns 0, UV_EINVAL, UV_ESHUTDOWN.
 */
#ifndef PMX_ROUTING_MXROUTE_H
#define PMX_ROUTING_MXROUTE_H
#include <stddef.h>

#include <uv.h>

#include "config/config.h"
#include "queue/redis_conn.h"
#include "routing/egress.h"
#include "smtp/pool.h"

#define PMX_MXROUTE_SITE_IDLE_MS 60000u

typedef struct pmx_mxroute pmx_mxroute_t;

/* redis: the worker's connection, for the limiter of shaping rules with a rate
 * (borrowed; NULL: such a site's deliveries are deferred, never sent unpaced). */
int  pmx_mxroute_new(uv_loop_t *loop, const pmx_config_t *cfg, pmx_redis_conn_t *redis,
                     pmx_mxroute_t **out, char *err, size_t errlen);
/* egress: the workspace's egress pool (routing/egress.h), or NULL for none.
 * Site pools are kept per (site, egress pool): two egress pools never share a
 * session, and [mx] connections_per_site counts per site and pool. */
int  pmx_mxroute_send(pmx_mxroute_t *r, pmx_egress_t *egress, const pmx_smtp_envelope_t *env,
                      const char *data, size_t len, pmx_smtp_send_cb cb, void *arg);
/*
 * The worker is draining: deliveries waiting for their turn at a site's rate
 * are deferred now (with "site_rate: postmuxd is stopping ...") rather than
 * held for as long as the rate says; from now on a rated delivery goes only
 * if its token is free at once. Everything else carries on as usual.
 */
void pmx_mxroute_drain(pmx_mxroute_t *r);
void pmx_mxroute_close(pmx_mxroute_t *r, void (*closed)(void *arg), void *arg);
void pmx_mxroute_abort(pmx_mxroute_t *r);
/* Messages waiting in site pools for a session (a full or slow site). */
size_t pmx_mxroute_queued(const pmx_mxroute_t *r);
/* Summed over the site pools (sessions, busy, queued, counters). */
void pmx_mxroute_stats(const pmx_mxroute_t *r, pmx_smtp_pool_stats_t *out);

#endif
