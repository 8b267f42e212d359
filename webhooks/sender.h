/*
 * Webhook delivery (docs/webhooks.md): every worker sends the webhook outbox
 * (sql/003_webhook_outbox.sql) on its own loop.
 *
 * Postgres fills webhook_deliveries in the transaction that records each
 * event; this module claims due rows (FOR UPDATE SKIP LOCKED, so any number
 * of workers on any number of hosts share the work without sending a row
 * twice at once), leases them for PMX_WEBHOOKS_LEASE_S while the POST is in
 * flight, POSTs the signed JSON (webhooks/payload.h) with libcurl on
 * the loop (webhooks/curl.h), and records the answer: a 2xx marks
 * the row delivered; anything else (another status, a timeout, a refused
 * connection, a bad certificate) schedules the next attempt, base doubling
 * up to the cap, until 24 h after the event, when the row is given up and
 * logged. A worker that dies with rows in flight loses nothing: the lease
 * runs out and another worker sends them again (at-least-once).
 *
 * Order per recipient: of the rows of one (webhook, message, recipient)
 * only the oldest pending one can be claimed, so a receiver sees one
 * recipient's events in the order they happened, retries included.
 *
 * It has its OWN Postgres connection (sql/db_async.h), not the worker's:
 * a slow endpoint, a backlog of retries or a slow webhook query never
 * queues in front of the delivery pipeline's writes. New rows are noticed
 * at once through LISTEN postmux_webhooks (the trigger's NOTIFY), and by a
 * poll every PMX_WEBHOOKS_POLL_MS in case a notification was missed (a
 * reconnect) or a retry fell due.
 *
 * Finished rows are deleted after PMX_WEBHOOKS_KEEP_H hours by whichever
 * worker gets to it (a small batch every minute), so the table stays small.
 */
#ifndef PMX_WEBHOOKS_SENDER_H
#define PMX_WEBHOOKS_SENDER_H
#include <stdint.h>

#include <uv.h>

#include "config/config.h"

#define PMX_WEBHOOKS_TIMEOUT_MS      10000   /* one POST, all included */
#define PMX_WEBHOOKS_LEASE_S         60      /* a claimed row is not claimable again before */
#define PMX_WEBHOOKS_POLL_MS         1000
#define PMX_WEBHOOKS_MAX_IN_FLIGHT   64      /* POSTs at once per worker */
#define PMX_WEBHOOKS_RETRY_BASE_MS   10000   /* first retry; doubles */
#define PMX_WEBHOOKS_RETRY_MAX_MS    3600000 /* cap */
#define PMX_WEBHOOKS_GIVE_UP_H       24      /* after the event (sql/003) */
#define PMX_WEBHOOKS_KEEP_H          72      /* finished rows kept this long */
#define PMX_WEBHOOKS_DRAIN_GRACE_MS  2000    /* POSTs in flight at a stop get this long */

typedef struct pmx_webhooks pmx_webhooks_t;

/*
 * Connects and starts sending. The retry base is the smaller of
 * PMX_WEBHOOKS_RETRY_BASE_MS and [delivery] retry_base, the cap the smaller
 * of PMX_WEBHOOKS_RETRY_MAX_MS and retry_max_interval. cfg is read here
 * only; master (the secrets' key) is copied and wiped on free. NULL (logged)
 * if libcurl cannot be set up.
 */
pmx_webhooks_t *pmx_webhooks_start(uv_loop_t *loop, const pmx_config_t *cfg,
                                   const uint8_t master[32]);

/* Claims nothing more; gives the POSTs in flight PMX_WEBHOOKS_DRAIN_GRACE_MS
 * to finish, records the answers, and the rest as failed attempts
 * ("interrupted", retried like any failure); then done(arg) once, from the
 * loop. Rows it could not record are sent again after their lease. */
void pmx_webhooks_drain(pmx_webhooks_t *wh, void (*done)(void *arg), void *arg);

/* Aborts what is in flight (those rows go out again after their lease),
 * closes the connection; memory is released as the loop closes handles. */
void pmx_webhooks_free(pmx_webhooks_t *wh);

typedef struct {
    uint64_t claimed;     /* rows claimed */
    uint64_t delivered;   /* 2xx answers */
    uint64_t failed;      /* other answers and errors (retried) */
    uint64_t given_up;    /* rows given up after 24 h */
    unsigned in_flight;
} pmx_webhooks_stats_t;

void pmx_webhooks_stats(const pmx_webhooks_t *wh, pmx_webhooks_stats_t *out);

#endif
