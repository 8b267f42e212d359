/*
 * The stream consumer of one worker: everything between Redis and the
 * pipeline (docs/queue.md, "The guarantee" and "Keys and the consumer").
 *
 * It reads the streams pmx:{ws}:jobs of the workspaces it is given with one
 * outstanding `XREADGROUP GROUP postmux <name> COUNT n BLOCK 1000 STREAMS
 * k1..kN > ..>` at a time (the starting stream rotates each read), never
 * while the pipeline is at capacity, and hands every entry to the pipeline
 * as a pmx_queue_job_t. Around that it:
 * - creates the group (XGROUP CREATE key postmux 0 MKSTREAM, BUSYGROUP is
 *   fine) for every workspace it is given or discovers;
 * - reclaims entries other consumers left pending (XPENDING IDLE, XCLAIM)
 *   and hands them over as REDELIVERED; an entry already delivered
 *   max_deliveries times comes as kind POISON, and acking it moves it to
 *   pmx:{ws}:dead;
 * - keeps the idle time of jobs it holds fresh (XCLAIM JUSTID, no delivery
 *   count bump) so nobody reclaims a job that is only slow;
 * - checks the `id` field (SET pmx:{ws}:idem:<id> <entry id> NX EX 7 days):
 *   a job whose id belongs to another entry comes as kind DUPLICATE; the
 *   same entry delivered again is not a duplicate;
 * - acknowledges (XACK + XDEL, batched per stream) or defers (one Lua
 *   script: XACK + ZADD to pmx:{ws}:retry + XDEL) what the pipeline
 *   finished, and moves due retries back into the streams (queue/retry.h);
 * - every discover_interval SCANs for streams pmx:{*}:jobs of workspaces it
 *   was not given and reads them too: their jobs come as kind UNKNOWN_WS.
 *
 * ---- Ownership and callbacks ----
 * - A job given to opts.job belongs to the pipeline until it calls exactly
 *   one of pmx_queue_job_ack / _defer / _release; from then on the queue
 *   owns it (and frees it) and the pipeline must not touch it. Its strings
 *   stay valid until then.
 * - Every job must be finished, also rejected ones (kind != OK): record the
 *   outcome, then ack. Ack only after the outcome is committed.
 * - opts.settled (optional) reports whether an ack/defer reached Redis:
 *   status 0 = done there (or already done by another consumer), < 0 = not
 *   confirmed (Redis went away or refused): the entry stays pending; when
 *   the connection was lost, the sweep after the reconnect takes it back
 *   at once, else it is redelivered after reclaim_idle_ms. The job is valid
 *   during the call only.
 * - Callbacks (job, settled, drain) are only called from the loop (Redis
 *   replies, timers), never from inside a call into the consumer, so the
 *   pipeline may call anything here from its own callbacks without
 *   re-entering itself.
 * - Redis going away: commands in flight get their callbacks with no reply;
 *   jobs the pipeline holds stay valid and stay pending in Redis (nothing is
 *   lost); their ack/defer report status < 0. Jobs already read are still
 *   handed over; a job whose duplicate check got no answer is dropped
 *   locally (still pending in Redis). When Redis is back
 *   (pmx_queue_consumer_redis_changed, or noticed by polling
 *   pmx_redis_conn_is_up every second) groups are re-created, a sweep of
 *   this consumer's own pending list takes back what it does not hold (such
 *   jobs, a read whose answer was lost), and reading restarts.
 * - pmx_queue_consumer_close(): no callback is called any more. Acks and
 *   defers already made are still sent (confirmed only if the connection
 *   stays open until Redis answers them; drain first to be sure); jobs still
 *   held by the pipeline stay valid (the consumer lingers as a zombie until
 *   every one is finished and every Redis reply of its commands came back);
 *   finishing such a job after
 *   close only frees it (its entry stays pending and is reclaimed). The
 *   Redis connection must stay open until close() was called; closing the
 *   connection afterwards is what ends the zombie's outstanding commands.
 * - Connections: a BLOCK read holds its connection until it returns, so
 *   the reads go over a connection of the consumer's own (opts.read_address,
 *   made, started and closed by the consumer); everything else (acks,
 *   scripts, XPENDING...) goes over rc, the worker's connection, and is
 *   never queued behind a read. With read_address NULL the reads share rc
 *   and every other command may wait up to block_ms behind one (tests only).
 * - A worker that stops gracefully: pmx_queue_consumer_drain() (no new
 *   reads or reclaims; what the read in progress returns is still handed
 *   over), finish every job as usual; the drain callback comes once nothing
 *   more will be handed over, every job is finished and every ack/defer was
 *   answered (or failed), and whatever is still pending on this consumer
 *   (released jobs) was given back to the group for others to take at once;
 *   then close the consumer, then the connection.
 *
 * Defaults are docs/queue.md's (30 s reclaim idle, 5 s reclaim interval, 5
 * deliveries, 10 s refresh, 1 s retry mover, 30 s discovery, 7-day
 * duplicate window); tests shorten them through the options.
 */
#ifndef PMX_QUEUE_CONSUMER_H
#define PMX_QUEUE_CONSUMER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "queue/jobcodec.h"
#include "queue/redis_conn.h"

typedef struct pmx_queue_consumer pmx_queue_consumer_t;

typedef enum {
    PMX_QUEUE_DONE_ACK = 1,
    PMX_QUEUE_DONE_DEFER,
} pmx_queue_done_t;

/* A job to process (see ownership above). */
typedef void (*pmx_queue_job_fn)(pmx_queue_consumer_t *c, pmx_queue_job_t *job, void *arg);
/* An ack or defer reached Redis (status 0) or not (status < 0). */
typedef void (*pmx_queue_settled_fn)(pmx_queue_consumer_t *c, const pmx_queue_job_t *job,
                                     pmx_queue_done_t how, int status, void *arg);
typedef void (*pmx_queue_drained_fn)(pmx_queue_consumer_t *c, void *arg);

typedef struct {
    const char *prefix;              /* key prefix, "pmx" */
    const char *group;               /* consumer group, "postmux" */
    const char *name;                /* consumer name; NULL = "<hostname>-<pid>" */
    const char *read_address;        /* [redis] address for the reads' own connection */
    const char *read_password;       /* its AUTH password or NULL (copied, wiped) */
    size_t      read_pwlen;
    unsigned    capacity;            /* jobs held at most (64) */
    size_t      max_held_bytes;      /* no read while the jobs held have this many entry
                                        bytes (8 MiB; scaled by capacity / the capacity
                                        given here when set_capacity raises it); one
                                        read may pass it */
    unsigned    block_ms;            /* XREADGROUP BLOCK (1000) */
    unsigned    reclaim_idle_ms;     /* reclaim entries idle this long (30000) */
    unsigned    reclaim_interval_ms; /* look for them this often (5000) */
    unsigned    reclaim_batch;       /* XPENDING COUNT per workspace (100) */
    unsigned    max_deliveries;      /* then poison (5) */
    unsigned    refresh_after_ms;    /* refresh a held job's idle time after (10000);
                                        must be below reclaim_idle_ms */
    unsigned    retry_poll_ms;       /* mover cadence while a schedule has members (1000) */
    unsigned    retry_idle_poll_ms;  /* ... while it looked empty (5000) */
    unsigned    retry_batch;         /* members moved per script run (100) */
    unsigned    discover_interval_ms;/* SCAN for unknown workspaces (30000); 0 = never */
    unsigned    idem_ttl_s;          /* duplicate window (604800 = 7 days) */
    pmx_queue_entry_limits_t limits; /* per entry: 64 MiB, 4096 items */

    pmx_queue_job_fn     job;        /* required */
    pmx_queue_settled_fn settled;    /* optional */
    void                *arg;
} pmx_queue_consumer_opts_t;

typedef struct {
    uint64_t reads;          /* XREADGROUP replies with entries */
    uint64_t empty_reads;    /* ... that timed out empty */
    uint64_t delivered;      /* jobs handed to the pipeline */
    uint64_t reclaimed;      /* of those, reclaimed from the PEL */
    uint64_t poison;
    uint64_t duplicates;
    uint64_t malformed;
    uint64_t unknown_ws;
    uint64_t acked;          /* acks confirmed by Redis */
    uint64_t deferred;       /* defers confirmed */
    uint64_t not_confirmed;  /* acks/defers Redis did not confirm */
    uint64_t retries_moved;  /* retry members moved back by this consumer */
    uint64_t lost;           /* held jobs another consumer claimed */
    uint64_t unblocks;       /* blocking reads ended early for a stream that became readable */
    uint64_t redis_errors;   /* error replies */
    unsigned held;           /* jobs held now (in flight + about to be handed over) */
    size_t   held_bytes;     /* their entry bytes */
    unsigned in_flight;      /* held by the pipeline */
    unsigned workspaces;     /* streams known (given + discovered) */
} pmx_queue_stats_t;

/* Fills o with the defaults above (job/settled/arg NULL). */
void pmx_queue_consumer_opts_init(pmx_queue_consumer_opts_t *o);

/*
 * Makes a consumer on loop using rc (not owned; see the close rule above).
 * Options are copied. Returns NULL with a reason in err for bad options.
 * Nothing is sent before pmx_queue_consumer_start().
 */
pmx_queue_consumer_t *pmx_queue_consumer_new(uv_loop_t *loop, pmx_redis_conn_t *rc,
                                             const pmx_queue_consumer_opts_t *o,
                                             char *err, size_t errlen);
void pmx_queue_consumer_start(pmx_queue_consumer_t *c);

/*
 * The workspaces to read (ids as in Postgres, e.g. "ws_..."), replacing the
 * previous set. New ones get their group created; removed ones stop being
 * read (jobs already handed over are unaffected). A read already waiting
 * keeps its streams; the new set applies from the next read (<= block_ms).
 * Discovery of unknown workspaces starts after the first call, so a worker
 * whose settings are not loaded yet never takes every stream for unknown.
 * Ids with bytes other than printable ASCII, or with '{' or '}', or longer
 * than 128 are skipped with a warning. Returns the number skipped.
 */
int  pmx_queue_consumer_set_workspaces(pmx_queue_consumer_t *c, const char *const *ids, size_t n);

/* Leaves ws out of reads until the loop time until_ms (uv_now); 0 resumes.
 * Jobs of ws already read are still handed over. */
void pmx_queue_consumer_pause_until(pmx_queue_consumer_t *c, const char *ws, uint64_t until_ms);

/* Changes how many jobs may be held at once (>= 1). */
void pmx_queue_consumer_set_capacity(pmx_queue_consumer_t *c, unsigned capacity);

/* The Redis connection went up or down (forward redis_conn's state callback). */
void pmx_queue_consumer_redis_changed(pmx_queue_consumer_t *c, bool up);

/* Stops reading and reclaiming. cb (once, from the loop) when no job will be
 * handed over any more (jobs read before still reach opts.job first), all
 * jobs were finished and Redis answered their acks/defers. Only the first call
 * counts; called before pmx_queue_consumer_start(), the consumer never reads
 * (a start() afterwards does nothing). */
void pmx_queue_consumer_drain(pmx_queue_consumer_t *c, pmx_queue_drained_fn cb, void *arg);

/* See the ownership rules above. c must not be used afterwards. */
void pmx_queue_consumer_close(pmx_queue_consumer_t *c);

const char *pmx_queue_consumer_name(const pmx_queue_consumer_t *c);
void pmx_queue_consumer_stats(const pmx_queue_consumer_t *c, pmx_queue_stats_t *out);

/* ---- Finishing a job (exactly one of these per job) ---- */

/* The outcome is recorded: XACK + XDEL (poison: also XADD to pmx:{ws}:dead). */
void pmx_queue_job_ack(pmx_queue_job_t *job);
/*
 * Schedules the job again in delay_ms (on Redis's clock) and acks this
 * entry, atomically. msg_id is the message id the outcome rows use
 * ("msg_" + 16 base32); it comes back as job->msg_id with attempt + 1 and
 * the same first_ms. Returns -1 (and the job stays the caller's) when msg_id
 * is not a message id or the job is not of kind OK.
 */
int  pmx_queue_job_defer(pmx_queue_job_t *job, uint64_t delay_ms, const char *msg_id);
/* Gives the job up without an outcome: it stays pending in Redis and is
 * redelivered (to any consumer) after reclaim_idle_ms, or at once when the
 * drain's give-back or a sweep after a reconnect finds it first. */
void pmx_queue_job_release(pmx_queue_job_t *job);

#endif
