/*
 * Internals shared by queue/consumer.c (reading, handing over),
 * queue/ack.c (finishing), queue/upkeep.c (reclaim, poison, refresh,
 * retry mover, discovery, sweep) and queue/consumer_phase.c (the lifecycle).
 * Nothing outside queue/ includes this (but tests/unit/test_queue_phase.c).
 *
 * ---- The consumer's lifecycle: one phase, changed only by
 *      pmx__queue_phase_set() (queue/consumer_phase.c), which refuses and logs
 *      any change not in this table (and aborts in the ASan build, PMX_DEBUG).
 *
 *   from         to           when (where)
 *   NEW          RUNNING      pmx_queue_consumer_start()
 *   NEW          DRAINING     pmx_queue_consumer_drain() before start (no read ever goes out)
 *   RUNNING      DRAINING     pmx_queue_consumer_drain()
 *   DRAINING     GIVING_BACK  quiet (see below), and Redis is up or was awaited
 *                             PMX__QUEUE_DRAIN_REDIS_WAIT_MS: the give-back sweep of
 *                             every listed workspace is started (check_drained)
 *   GIVING_BACK  DRAINED      quiet again (that sweep answered, or could not be sent):
 *                             the drain callback is called, once (check_drained)
 *   any of the 5 above
 *                CLOSED       pmx_queue_consumer_close()
 *   CLOSED       FREEING      nothing points at the zombie any more: no command
 *                             outstanding, no job held or done; uv_close of the wake
 *                             timer, whose close callback frees it (finalize_maybe)
 *
 *   What each phase does:
 *   NEW          made; no read goes out.
 *   RUNNING      reads, reclaims, discovers; a sweep takes entries back.
 *   DRAINING     no new read, reclaim or discovery (a reclaim's XPENDING answered now
 *   GIVING_BACK  claims nothing); what a read, XCLAIM or sweep "take" already sent
 *   DRAINED      returns is still handed over; acks, defers, refresh, retry movers and
 *                group creation go on; a sweep gives entries back instead of taking.
 *   CLOSED       a zombie: no callback any more; acks already made are sent; waits for
 *                the jobs the pipeline still holds and for Redis's replies.
 *   FREEING      the wake timer is closing; then the struct is freed.
 *
 *   "Quiet" (drain_quiet in consumer.c): no read, claim, reclaim, sweep, duplicate
 *   check or ack/defer outstanding and no job held (check, ready, in flight, done).
 *   Once a draining consumer is quiet no job can come to it again (reads and reclaims
 *   are off, sweeps only give back); a sweep started by a reconnect only delays the
 *   next step until it has answered.
 *
 * Everything else in the struct is an independent fact (a request outstanding, the
 * Redis connection up) that holds in any phase; see the groups below.
 */
#ifndef PMX_QUEUE_CONSUMER_INT_H
#define PMX_QUEUE_CONSUMER_INT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/async.h>
#include <uv.h>

#include "queue/consumer.h"

#define PMX__QUEUE_WS_MAX 128
/* At the end of a drain, how long to wait for a lost Redis connection to come
 * back so that entries left pending can be given back to the group. */
#define PMX__QUEUE_DRAIN_REDIS_WAIT_MS 5000

/* One workspace's streams and their per-consumer state. These are independent
 * facts of the workspace, in any phase of the consumer; each *_busy flag is one
 * request of that kind outstanding for it (so never two at once). */
typedef struct pmx__queue_ws {
    char    *id;
    char    *stream, *retry, *dead;
    bool     listed;          /* in c->wsv (given or discovered) */
    bool     known;           /* given by the pipeline (else discovered) */
    bool     group_ready;     /* the group exists (created or BUSYGROUP) */
    bool     group_busy;      /* XGROUP CREATE outstanding */
    uint64_t group_retry_at;  /* after a failed create */
    bool     group_warned;
    uint64_t paused_until;
    bool     in_read;         /* its stream is in the read outstanding (or the last one) */
    uint64_t retry_at;        /* next retry-mover run (loop ms) */
    bool     mover_busy;
    bool     reclaim_busy;
    bool     refresh_busy;
    bool     drop_busy;
    bool     sweep_due;       /* look for entries pending on us that we do not hold */
    bool     sweep_busy;      /* ... XPENDING / the sweep script outstanding */
    char     sweep_from[PMX_QUEUE_ENTRY_ID_MAX + 2]; /* "(<id>": next page; "" = from the start */
    bool     seen;            /* found by the scan in progress */
    unsigned unknown_scans;   /* scans in a row that found it, while unknown */
    uint64_t last_data_at;    /* a read last returned entries of it */
    unsigned refs;            /* jobs and requests pointing at it */
} pmx__queue_ws_t;

typedef struct {
    pmx_queue_job_t *head, *tail;
    size_t           n;
    size_t           bytes;   /* sum of the jobs' entry bytes */
} pmx__queue_jlist_t;

enum { PMX__L_NONE = 0, PMX__L_CHECK, PMX__L_READY, PMX__L_INFLIGHT, PMX__L_DONE };

/* The lifecycle (table at the top). The order is the table's, nothing more: test
 * phases with ==, != or the predicates below. */
typedef enum {
    PMX__Q_NEW = 0,
    PMX__Q_RUNNING,
    PMX__Q_DRAINING,
    PMX__Q_GIVING_BACK,
    PMX__Q_DRAINED,
    PMX__Q_CLOSED,
    PMX__Q_FREEING,
    PMX__Q_NPHASES
} pmx__queue_phase_t;

struct pmx_queue_consumer {
    uv_loop_t        *loop;
    pmx_redis_conn_t *rc;      /* the worker's: every command but the read */
    pmx_redis_conn_t *rd;      /* the read's: our own, or rc */
    bool              own_rd;
    pmx_queue_consumer_opts_t o;
    char             *prefix, *group, *name;
    char             *scan_pattern;

    /* ---- Lifecycle: the table at the top; set by pmx__queue_phase_set only. */
    pmx__queue_phase_t phase;
    pmx_queue_drained_fn drain_cb;  /* given to drain(), called on DRAINED */
    void             *drain_arg;
    uint64_t          drain_redis_wait_until; /* quiet DRAINING waits for Redis until (loop ms) */

    /* ---- Redis (any phase): the command connection answered. Reads and upkeep
     * go out only while up; going up again starts over (groups, sweep, read id). */
    bool              up;

    pmx__queue_ws_t **wsv;     /* listed workspaces, in rotation order */
    size_t            nws, capws;
    size_t            rr;      /* rotation start of the next read */
    bool              ws_given;/* set_workspaces was called at least once */

    /* ---- Jobs held and requests outstanding: all zero = "quiet" (top). */
    pmx__queue_jlist_t check;  /* waiting for the duplicate check */
    pmx__queue_jlist_t ready;  /* read, to hand over when there is room */
    pmx__queue_jlist_t inflight;
    pmx__queue_jlist_t done;   /* finished, ack/defer to send */
    unsigned          claiming;/* ids asked for by outstanding XCLAIMs */
    unsigned          sweeping;/* workspaces with a sweep outstanding: no read goes out */
    unsigned          done_busy;/* ack/defer commands not answered yet */
    /* (and read_busy below, and every listed workspace's reclaim_busy) */

    /* ---- The read: one XREADGROUP at a time on rd, never while a sweep is out. */
    bool              read_busy;    /* the read is outstanding */
    uint64_t          read_seq;     /* reads sent so far: names the one outstanding */
    size_t            active_est;   /* streams that had data in the last read */
    size_t            entry_avg;    /* running mean of an entry's bytes (for COUNT) */
    unsigned          base_capacity;/* the capacity given at creation (the byte budget's) */
    uint64_t          read_retry_at;/* no read before (loop ms), after an error reply */
    long long         rd_id;        /* CLIENT ID of the read connection (0 = unknown) */
    bool              unblock_sent; /* CLIENT UNBLOCK sent for read read_seq */
    bool              no_unblock;   /* Redis refused CLIENT UNBLOCK: do not try again */

    /* ---- Re-entrancy of pmx__queue_pump, and the one timer. */
    bool              pumping, pump_again;
    uv_timer_t        wake;
    bool              wake_armed;
    uint64_t          wake_at;
    int               handles_open;

    /* ---- Periodic upkeep (upkeep.c). */
    uint64_t          next_reclaim_at, next_refresh_at, next_discover_at;
    bool              scan_busy;
    char            **scan_ids;     /* ws ids the scan in progress found */
    size_t            nscan, capscan;

    unsigned          outstanding;  /* Redis commands whose callback is ours (CLOSED waits) */
    pmx_queue_stats_t st;
};

typedef pmx_queue_consumer_t pmx__queue_c_t;

/* consumer_phase.c: the transition table (top), and its one writer. */
bool pmx__queue_phase_legal(pmx__queue_phase_t from, pmx__queue_phase_t to);
const char *pmx__queue_phase_name(pmx__queue_phase_t p);
/* Moves c to `to` if the table allows it (true). Else logs an error, keeps the
 * phase and returns false; in the ASan build (PMX_DEBUG) aborts instead. */
bool pmx__queue_phase_set(pmx__queue_c_t *c, pmx__queue_phase_t to);
/* A bug: logs what broke at error level; aborts in the ASan build (PMX_DEBUG). */
void pmx__queue_broken(const pmx__queue_c_t *c, const char *what);

/* close() was called: no callback into the pipeline any more. */
static inline bool pmx__queue_closed(const pmx__queue_c_t *c)
{
    return c->phase == PMX__Q_CLOSED || c->phase == PMX__Q_FREEING;
}

/* drain() was called and close() was not: no new reads, reclaims or
 * discovery; sweeps give entries back instead of taking them. */
static inline bool pmx__queue_draining(const pmx__queue_c_t *c)
{
    return c->phase == PMX__Q_DRAINING || c->phase == PMX__Q_GIVING_BACK ||
           c->phase == PMX__Q_DRAINED;
}

/* consumer.c */
void pmx__queue_ask_rd_id(pmx__queue_c_t *c);
void pmx__queue_cmd_begin(pmx__queue_c_t *c);
/* Ends a command; may start freeing a closed consumer (deferred to the loop). */
void pmx__queue_cmd_end(pmx__queue_c_t *c);
uint64_t pmx__queue_now(const pmx__queue_c_t *c);
uint64_t pmx__queue_wall_ms(void);
unsigned pmx__queue_held(const pmx__queue_c_t *c);
pmx__queue_ws_t *pmx__queue_ws_find(pmx__queue_c_t *c, const char *id);
pmx__queue_ws_t *pmx__queue_ws_add(pmx__queue_c_t *c, const char *id, bool known);
void pmx__queue_ws_unlist(pmx__queue_c_t *c, pmx__queue_ws_t *ws);
void pmx__queue_ws_ref(pmx__queue_ws_t *ws);
void pmx__queue_ws_unref(pmx__queue_ws_t *ws);
/* The workspace id of a stream key "<prefix>:{id}:jobs" (into out), or -1. */
int  pmx__queue_ws_of_key(const pmx__queue_c_t *c, const char *key, size_t len,
                          char *out, size_t outlen);
bool pmx__queue_ws_id_valid(const char *s, size_t n);
/* A job read or claimed: duplicate check if needed, then ready. */
void pmx__queue_admit(pmx__queue_c_t *c, pmx_queue_job_t *job);
/* A held (check/ready/inflight/done) job of ws with this entry id, or NULL. */
pmx_queue_job_t *pmx__queue_held_find(pmx__queue_c_t *c, const pmx__queue_ws_t *ws,
                                      const char *id, size_t idlen);
/* Arms the timer for `at` (loop ms) unless it fires earlier already. */
void pmx__queue_wake_at(pmx__queue_c_t *c, uint64_t at);
void pmx__queue_pump(pmx__queue_c_t *c);
void pmx__queue_count_error(pmx__queue_c_t *c, const redisReply *r, const char *what,
                            const char *ws);

/* Entry bytes of the jobs held (check + ready + inflight). */
size_t pmx__queue_held_bytes(const pmx__queue_c_t *c);
void pmx__queue_jl_push(pmx__queue_jlist_t *l, int which, pmx_queue_job_t *j);
void pmx__queue_jl_remove(pmx__queue_jlist_t *l, pmx_queue_job_t *j);
/* Frees a job and drops its workspace reference. */
void pmx__queue_job_drop(pmx_queue_job_t *job);
/* Frees a closed consumer once nothing points at it (deferred to the loop). */
void pmx__queue_finalize_maybe(pmx__queue_c_t *c);

/* ack.c: sends the ack/defer of every job in c->done. */
void pmx__queue_flush(pmx__queue_c_t *c);

/* upkeep.c: each starts what is due now and lowers *next to its next deadline. */
void pmx__queue_upkeep_reclaim(pmx__queue_c_t *c, uint64_t now, uint64_t *next);
void pmx__queue_upkeep_refresh(pmx__queue_c_t *c, uint64_t now, uint64_t *next);
void pmx__queue_upkeep_movers(pmx__queue_c_t *c, uint64_t now, uint64_t *next);
void pmx__queue_upkeep_discover(pmx__queue_c_t *c, uint64_t now, uint64_t *next);
/*
 * The sweep of this consumer's own pending entries (upkeep.c): marks ws (NULL:
 * every listed one) as due; pmx__queue_upkeep_sweep starts every due sweep it
 * can (never while a read is out) and says whether one is outstanding, in
 * which case no read may go out.
 */
void pmx__queue_sweep_mark(pmx__queue_c_t *c, pmx__queue_ws_t *ws);
bool pmx__queue_upkeep_sweep(pmx__queue_c_t *c);
/* Frees the state of a scan in progress (close). */
void pmx__queue_upkeep_scan_reset(pmx__queue_c_t *c);

#endif
