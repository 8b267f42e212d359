/*
 * The worker process: one libuv loop that everything in the worker runs on.
 * postmuxd forks workers; each one
 * - keeps a heartbeat in its scoreboard slot (daemon/shm.h) every 500 ms, so
 *   the supervisor can tell a hung loop from a busy one;
 * - keeps one Redis connection (queue/redis_conn.h) and one Postgres
 *   connection (sql/db_async.h) up, reconnecting with backoff, and publishes
 *   in its slot whether both are up (postmuxd's READY=1 waits for that);
 * - serves GET /healthz on the inherited metrics listener (200 when Redis and
 *   Postgres are up, 503 otherwise) and GET /metrics through a hook;
 * - on SIGTERM/SIGINT (turned into loop events) stops accepting, lets the
 *   pipeline drain, closes every handle and exits 0.
 *
 * The delivery pipeline plugs in through pmx_worker_hooks_t; with no hooks
 * the worker is the bare skeleton above. Hooks run on the loop, never in a
 * signal handler.
 */
#ifndef PMX_WORKERS_WORKER_H
#define PMX_WORKERS_WORKER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "config/config.h"
#include "daemon/shm.h"
#include "lib/buf.h"
#include "queue/redis_conn.h"
#include "sql/db_async.h"

#define PMX_WORKER_HEARTBEAT_MS 500

typedef struct pmx_worker pmx_worker_t;
typedef void (*pmx_worker_done_fn)(pmx_worker_t *w);

/* Every member may be NULL. */
typedef struct {
    /* The loop is set up and the connections are starting. <0 = the worker
     * cannot run (it exits 2, which postmuxd throttles). */
    int  (*start)(pmx_worker_t *w);
    /* Redis or Postgres went up or down; both current states are given. */
    void (*conn_changed)(pmx_worker_t *w, bool redis_up, bool pg_up);
    /* A Postgres NOTIFY on a channel the pipeline LISTENs to
     * (pmx_db_async_listen(pmx_worker_db(w), ...)). */
    void (*notify)(pmx_worker_t *w, const char *channel, const char *payload);
    /* Graceful stop: take no new work, finish what is in flight, record the
     * outcomes, then call done(w) exactly once (from any loop callback).
     * Without this hook the drain completes at once. postmuxd kills the
     * worker if done is not called within shutdown_timeout. */
    void (*drain)(pmx_worker_t *w, pmx_worker_done_fn done);
    /* After drain, once the Redis and Postgres connections are closed (their
     * pending callbacks have run, with NULL replies): release what start
     * made. pmx_worker_redis()/pmx_worker_db() are NULL from here on. */
    void (*stop)(pmx_worker_t *w);
    /* Writes the GET /metrics body (Prometheus text). Without it: 404.
     * Returns 0, or -1 for a 500. */
    int  (*metrics)(pmx_worker_t *w, pmx_buf_t *body);
} pmx_worker_hooks_t;

typedef struct {
    const pmx_config_t       *cfg;
    pmx_shm_t                *shm;
    int                       slot;           /* index into shm->slots */
    int                       submission_fd;  /* listening, -1 = off */
    int                       metrics_fd;     /* listening, -1 = off */
    int                       http_fd;        /* [http] listen, -1 = off */
    int                       inbound_fd;     /* [inbound] listen, -1 = off */
    const char               *redis_password; /* NULL = no AUTH */
    size_t                    redis_pwlen;
    const pmx_worker_hooks_t *hooks;          /* NULL = none */
} pmx_worker_opts_t;

/*
 * Runs the worker in this (freshly forked) process until it has drained.
 * Expects SIGTERM/SIGINT/SIGCHLD/SIGHUP/SIGALRM blocked and at their default
 * disposition; unblocks them once its loop handles them. Returns the exit
 * status: 0 after a drain, 2 when it could not start.
 */
int pmx_worker_run(const pmx_worker_opts_t *opts);

uv_loop_t          *pmx_worker_loop(pmx_worker_t *w);
const pmx_config_t *pmx_worker_config(const pmx_worker_t *w);
pmx_redis_conn_t   *pmx_worker_redis(pmx_worker_t *w);
pmx_db_async_t     *pmx_worker_db(pmx_worker_t *w);
/* The submission listening socket (for the SMTP server), -1 when off. */
int                 pmx_worker_submission_fd(const pmx_worker_t *w);
/* The public HTTP listening socket ([http] listen), -1 when off. */
int                 pmx_worker_http_fd(const pmx_worker_t *w);
/* The [inbound] listening socket (inbound/listener.h), -1 when off. */
int                 pmx_worker_inbound_fd(const pmx_worker_t *w);
/* The scoreboard, e.g. for /metrics sums (pmx_shm_total_sent). */
const pmx_shm_t    *pmx_worker_shm(const pmx_worker_t *w);
bool                pmx_worker_is_draining(const pmx_worker_t *w);
/* Both Redis and Postgres are up. */
bool                pmx_worker_is_connected(const pmx_worker_t *w);
/* Counts n recipients relayed with 250 (summed into STATUS and /metrics). */
void                pmx_worker_count_sent(pmx_worker_t *w, uint64_t n);
/* [redis] password_file's secret (NULL = none), for a second connection. */
const char         *pmx_worker_redis_password(const pmx_worker_t *w, size_t *len);
/* The key of recipient tokens (lib/reftoken.h), derived from the master key
 * when the worker starts; all zero before. */
const uint8_t      *pmx_worker_ref_key(const pmx_worker_t *w);
void                pmx_worker_set_ref_key(pmx_worker_t *w, const uint8_t *master, size_t len);
/* One pointer for the pipeline's own state. */
void               *pmx_worker_data(const pmx_worker_t *w);
void                pmx_worker_set_data(pmx_worker_t *w, void *data);

#endif
