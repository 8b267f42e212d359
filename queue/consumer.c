/*
 * The stream consumer: reading and handing jobs over; see consumer.h for
 * the contract. Finishing jobs (acks, defers, poison) is in ack.c, periodic
 * work (reclaim, refresh, retry mover, discovery) in upkeep.c.
 *
 * Jobs move through four lists: check (waiting for the `id` duplicate
 * check) -> ready (read, waiting for room) -> inflight (held by the
 * pipeline) -> done (finished, ack/defer not yet sent). "Held" is check +
 * ready + inflight; no read is issued while held >= capacity. XREADGROUP's
 * COUNT is per stream, so a read over K streams can return up to K x COUNT
 * entries: COUNT = room / (streams that had data last time), and the ready
 * list absorbs the rare overshoot when idle streams wake up together.
 *
 * One uv timer ("wake") drives everything that is not a Redis reply: it is
 * armed for the earliest deadline (a pause ending, a retry due, the next
 * reclaim...) or for "now" when the pipeline finished a job, so callbacks
 * into the pipeline always come from the loop, never from inside its own
 * calls. Idle, the consumer costs one XREADGROUP per block_ms plus the
 * periodic upkeep.
 *
 * Where the consumer is in its life (new, running, draining, giving back,
 * drained, closed, freeing) is one phase, c->phase, changed only through
 * pmx__queue_phase_set() along the table in queue/consumer_int.h; the rest of
 * its state (a read out, Redis up, requests outstanding) are facts that hold in
 * any phase.
 */
#include "queue/consumer.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/mem.h"
#include "queue/consumer_int.h"
#include "queue/keys.h"
#include "queue/script.h"


/*
 * KEYS: idem key. ARGV: entry id, ttl s. Returns 1 when this entry owns the
 * id (first time, or the same entry delivered again), else the entry id that
 * owns it.
 */
static pmx_queue_script_t idem_script = PMX_QUEUE_SCRIPT("idem_check",
    "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 1 end\n"
    "local cur = redis.call('GET', KEYS[1])\n"
    "if cur == ARGV[1] then return 1 end\n"
    "if not cur then\n"
    "  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])\n"
    "  return 1\n"
    "end\n"
    "return cur\n");

typedef struct {
    pmx__queue_c_t   *c;
    pmx__queue_ws_t  *ws;
} ws_req_t;


static void wake_cb(uv_timer_t *t);

/* ---------------------------------------------------------------- basics */

void pmx_queue_consumer_opts_init(pmx_queue_consumer_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->prefix = "pmx";
    o->group = PMX_QUEUE_GROUP;
    o->capacity = 64;
    o->max_held_bytes = 8u << 20;
    o->block_ms = 1000;
    o->reclaim_idle_ms = 30000;
    o->reclaim_interval_ms = 5000;
    o->reclaim_batch = 100;
    o->max_deliveries = 5;
    o->refresh_after_ms = 10000;
    o->retry_poll_ms = 1000;
    o->retry_idle_poll_ms = 5000;
    o->retry_batch = 100;
    o->discover_interval_ms = 30000;
    o->idem_ttl_s = 7 * 24 * 3600;
    o->limits.max_bytes = 64u << 20;
    o->limits.max_items = 4096;
}

uint64_t pmx__queue_now(const pmx__queue_c_t *c)
{
    return uv_now(c->loop);
}

uint64_t pmx__queue_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void pmx__queue_cmd_begin(pmx__queue_c_t *c)
{
    c->outstanding++;
}

void pmx__queue_cmd_end(pmx__queue_c_t *c)
{
    c->outstanding--;
    pmx__queue_finalize_maybe(c);
}

unsigned pmx__queue_held(const pmx__queue_c_t *c)
{
    return (unsigned)(c->check.n + c->ready.n + c->inflight.n) + c->claiming;
}

size_t pmx__queue_held_bytes(const pmx__queue_c_t *c)
{
    return c->check.bytes + c->ready.bytes + c->inflight.bytes;
}

void pmx__queue_count_error(pmx__queue_c_t *c, const redisReply *r, const char *what,
                            const char *ws)
{
    c->st.redis_errors++;
    int n = r && r->str ? (int)(r->len > 200 ? 200 : r->len) : 0;
    pmx_log_warn("redis refused %s ws=%s err=\"%.*s\"", what, ws ? ws : "-", n,
                 r && r->str ? r->str : "");
}

void pmx__queue_jl_push(pmx__queue_jlist_t *l, int which, pmx_queue_job_t *j)
{
    j->p.prev = l->tail;
    j->p.next = NULL;
    if (l->tail) l->tail->p.next = j;
    else l->head = j;
    l->tail = j;
    l->n++;
    l->bytes += j->bytes;
    j->p.list = which;
}

void pmx__queue_jl_remove(pmx__queue_jlist_t *l, pmx_queue_job_t *j)
{
    if (j->p.prev) j->p.prev->p.next = j->p.next;
    else l->head = j->p.next;
    if (j->p.next) j->p.next->p.prev = j->p.prev;
    else l->tail = j->p.prev;
    j->p.prev = j->p.next = NULL;
    j->p.list = PMX__L_NONE;
    l->n--;
    l->bytes -= j->bytes;
}

void pmx__queue_job_drop(pmx_queue_job_t *job)
{
    pmx__queue_ws_t *ws = job->p.ws;
    pmx_queue_job_free(job);
    if (ws) pmx__queue_ws_unref(ws);
}

void pmx__queue_wake_at(pmx__queue_c_t *c, uint64_t at)
{
    if (pmx__queue_closed(c)) return;
    uint64_t now = pmx__queue_now(c);
    if (at < now) at = now;
    if (c->wake_armed && c->wake_at <= at) return;
    c->wake_armed = true;
    c->wake_at = at;
    uv_timer_start(&c->wake, wake_cb, at - now, 0);
}

static void wake_soon(pmx__queue_c_t *c)
{
    pmx__queue_wake_at(c, pmx__queue_now(c));
}

/*
 * A read is outstanding: if a stream became readable since it went out (a
 * pause ended or was lifted, a group was just made), end that read now
 * (CLIENT UNBLOCK: it returns empty, as on its timeout) so the next one
 * includes the stream. Otherwise a workspace whose rate-limit gate empties
 * waits up to block_ms behind a read over streams that are all idle or
 * paused, and a limited workspace gets one read's worth of jobs per
 * block_ms. Only with a read connection of our own.
 */
typedef struct {
    pmx__queue_c_t *c;
    uint64_t        seq;   /* the read it was meant to end */
} unblock_req_t;

static void unblock_cb(redisAsyncContext *ac, void *reply, void *priv);

static void unblock_stale_read(pmx__queue_c_t *c, uint64_t now)
{
    if (c->unblock_sent || c->no_unblock || !c->own_rd || c->rd_id <= 0 || pmx__queue_closed(c))
        return;
    bool stale = false;
    for (size_t i = 0; i < c->nws && !stale; i++) {
        const pmx__queue_ws_t *ws = c->wsv[i];
        stale = !ws->in_read && ws->group_ready && ws->paused_until <= now;
    }
    if (!stale) return;
    char id[32];
    snprintf(id, sizeof id, "%lld", c->rd_id);
    const char *argv[] = { "CLIENT", "UNBLOCK", id };
    unblock_req_t *q = pmx_xcalloc(1, sizeof *q);
    q->c = c;
    q->seq = c->read_seq;
    if (pmx_redis_conn_command_argv(c->rc, unblock_cb, q, 3, argv, NULL) == 0) {
        c->unblock_sent = true;
        pmx__queue_cmd_begin(c);
    } else {
        free(q);
    }
}

/* 1: the read ended early. 0: it was not blocking yet (the UNBLOCK overtook it on
 * the other connection), or had just returned: try again shortly if it is still
 * the same read. An error (an ACL without CLIENT UNBLOCK): said once, not tried
 * again; reads then wait out block_ms as before. */
static void unblock_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    unblock_req_t *q = priv;
    pmx__queue_c_t *c = q->c;
    redisReply *r = reply;
    if (!pmx__queue_closed(c) && r) {
        if (r->type == REDIS_REPLY_INTEGER && r->integer == 1) {
            c->st.unblocks++;
        } else if (r->type == REDIS_REPLY_INTEGER) {
            if (c->read_busy && c->read_seq == q->seq) {
                c->unblock_sent = false;
                pmx__queue_wake_at(c, pmx__queue_now(c) + 5);
            }
        } else {
            c->no_unblock = true;
            pmx__queue_count_error(c, r, "CLIENT UNBLOCK (a stream that became readable now "
                                   "waits for the read in progress to time out)", NULL);
        }
    }
    free(q);
    pmx__queue_cmd_end(c);
}

/* ----------------------------------------------------------- workspaces */

bool pmx__queue_ws_id_valid(const char *s, size_t n)
{
    if (n == 0 || n > PMX__QUEUE_WS_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= 0x20 || ch >= 0x7f || ch == '{' || ch == '}') return false;
    }
    return true;
}

int pmx__queue_ws_of_key(const pmx__queue_c_t *c, const char *key, size_t len,
                         char *out, size_t outlen)
{
    size_t n;
    const char *id = pmx_queue_key_jobs_ws(c->prefix, key, len, &n);
    if (!id || !pmx__queue_ws_id_valid(id, n) || n + 1 > outlen) return -1;
    memcpy(out, id, n);
    out[n] = '\0';
    return 0;
}

pmx__queue_ws_t *pmx__queue_ws_find(pmx__queue_c_t *c, const char *id)
{
    for (size_t i = 0; i < c->nws; i++)
        if (strcmp(c->wsv[i]->id, id) == 0) return c->wsv[i];
    return NULL;
}

static pmx__queue_ws_t *ws_new(pmx__queue_c_t *c, const char *id, bool known)
{
    pmx__queue_ws_t *ws = pmx_xcalloc(1, sizeof *ws);
    ws->id = pmx_xstrdup(id);
    ws->stream = pmx_queue_key_new(PMX_QUEUE_KEY_JOBS, c->prefix, id);
    ws->retry = pmx_queue_key_new(PMX_QUEUE_KEY_RETRY, c->prefix, id);
    ws->dead = pmx_queue_key_new(PMX_QUEUE_KEY_DEAD, c->prefix, id);
    ws->known = known;
    ws->retry_at = pmx__queue_now(c);
    return ws;
}

static void ws_free(pmx__queue_ws_t *ws)
{
    free(ws->id);
    free(ws->stream);
    free(ws->retry);
    free(ws->dead);
    free(ws);
}

pmx__queue_ws_t *pmx__queue_ws_add(pmx__queue_c_t *c, const char *id, bool known)
{
    pmx__queue_ws_t *ws = ws_new(c, id, known);
    if (c->nws == c->capws) {
        c->capws = c->capws ? c->capws * 2 : 16;
        c->wsv = pmx_xrealloc(c->wsv, c->capws * sizeof *c->wsv);
    }
    c->wsv[c->nws++] = ws;
    ws->listed = true;
    return ws;
}

void pmx__queue_ws_unlist(pmx__queue_c_t *c, pmx__queue_ws_t *ws)
{
    for (size_t i = 0; i < c->nws; i++) {
        if (c->wsv[i] != ws) continue;
        memmove(&c->wsv[i], &c->wsv[i + 1], (c->nws - i - 1) * sizeof *c->wsv);
        c->nws--;
        break;
    }
    ws->listed = false;
    if (ws->refs == 0) ws_free(ws);
}

void pmx__queue_ws_ref(pmx__queue_ws_t *ws)
{
    ws->refs++;
}

void pmx__queue_ws_unref(pmx__queue_ws_t *ws)
{
    if (--ws->refs == 0 && !ws->listed) ws_free(ws);
}

static void group_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    ws_req_t *q = priv;
    pmx__queue_c_t *c = q->c;
    pmx__queue_ws_t *ws = q->ws;
    redisReply *r = reply;
    ws->group_busy = false;
    if (r && !pmx__queue_closed(c)) {
        bool busy = r->type == REDIS_REPLY_ERROR && r->str && r->len >= 9 &&
                    memcmp(r->str, "BUSYGROUP", 9) == 0;
        if (r->type == REDIS_REPLY_STATUS || busy) {
            ws->group_ready = true;
            ws->group_warned = false;
            pmx__queue_pump(c);   /* a read blocking without it is ended */
        } else {
            if (!ws->group_warned)
                pmx__queue_count_error(c, r, "XGROUP CREATE", ws->id);
            else
                c->st.redis_errors++;
            ws->group_warned = true;
            ws->group_retry_at = pmx__queue_now(c) + 5000;
            pmx__queue_wake_at(c, ws->group_retry_at);
        }
    }
    pmx__queue_ws_unref(ws);
    free(q);
    pmx__queue_cmd_end(c);
}

/* Creates the group of every listed workspace that lacks it; lowers *next. */
static void ensure_groups(pmx__queue_c_t *c, uint64_t now, uint64_t *next)
{
    for (size_t i = 0; i < c->nws && c->up; i++) {
        pmx__queue_ws_t *ws = c->wsv[i];
        if (ws->group_ready || ws->group_busy) continue;
        if (ws->group_retry_at > now) {
            if (ws->group_retry_at < *next) *next = ws->group_retry_at;
            continue;
        }
        ws_req_t *q = pmx_xcalloc(1, sizeof *q);
        q->c = c;
        q->ws = ws;
        const char *argv[] = { "XGROUP", "CREATE", ws->stream, c->group, "0", "MKSTREAM" };
        if (pmx_redis_conn_command_argv(c->rc, group_cb, q, 6, argv, NULL) < 0) {
            free(q);
            return;
        }
        pmx__queue_ws_ref(ws);
        pmx__queue_cmd_begin(c);
        ws->group_busy = true;
    }
}

/* Redis (maybe a new, empty one) is reachable again: start over. */
static void on_up(pmx__queue_c_t *c)
{
    uint64_t now = pmx__queue_now(c);
    c->up = true;
    for (size_t i = 0; i < c->nws; i++) {
        c->wsv[i]->group_ready = false;
        c->wsv[i]->group_retry_at = 0;
        c->wsv[i]->retry_at = now;
    }
    c->read_retry_at = 0;
    pmx__queue_sweep_mark(c, NULL);   /* replies lost with the old connection */
    /* The command connection came back, maybe to another server (a failover)
     * while the read connection still hangs on to the old one: never UNBLOCK an
     * id that server gave before; ask again over the read connection. */
    pmx__queue_ask_rd_id(c);
    c->next_reclaim_at = now;
    c->next_discover_at = now;
    c->active_est = 0;
}

int pmx_queue_consumer_set_workspaces(pmx_queue_consumer_t *c, const char *const *ids, size_t n)
{
    if (pmx__queue_closed(c)) return 0;
    int skipped = 0;
    bool *keep = pmx_xcalloc(c->nws + n + 1, sizeof *keep);
    size_t before = c->nws;
    for (size_t i = 0; i < n; i++) {
        if (!ids[i] || !pmx__queue_ws_id_valid(ids[i], strlen(ids[i]))) {
            pmx_log_warn("queue: workspace id skipped (not 1-128 printable ASCII without braces)");
            skipped++;
            continue;
        }
        pmx__queue_ws_t *ws = pmx__queue_ws_find(c, ids[i]);
        if (!ws) ws = pmx__queue_ws_add(c, ids[i], true);
        ws->known = true;
        ws->unknown_scans = 0;
        for (size_t k = 0; k < c->nws; k++)
            if (c->wsv[k] == ws) keep[k] = true;
    }
    /* Given before, not now: stop reading (a scan finds it again if it has jobs). */
    pmx__queue_ws_t **gone = pmx_xcalloc(before + 1, sizeof *gone);
    size_t ngone = 0;
    for (size_t k = 0; k < before; k++)
        if (!keep[k] && c->wsv[k]->known) gone[ngone++] = c->wsv[k];
    for (size_t k = 0; k < ngone; k++) {
        gone[k]->known = false;
        pmx__queue_ws_unlist(c, gone[k]);
    }
    free(gone);
    free(keep);
    if (!c->ws_given) {
        c->ws_given = true;
        c->next_discover_at = pmx__queue_now(c);
    }
    wake_soon(c);
    return skipped;
}

void pmx_queue_consumer_pause_until(pmx_queue_consumer_t *c, const char *ws, uint64_t until_ms)
{
    pmx__queue_ws_t *w = pmx__queue_ws_find(c, ws);
    if (!w) return;
    w->paused_until = until_ms;
    wake_soon(c);   /* lifted: a read blocking without it is ended */
}

void pmx_queue_consumer_set_capacity(pmx_queue_consumer_t *c, unsigned capacity)
{
    c->o.capacity = capacity ? capacity : 1;
    wake_soon(c);
}

void pmx_queue_consumer_redis_changed(pmx_queue_consumer_t *c, bool up)
{
    if (c->phase == PMX__Q_NEW || pmx__queue_closed(c)) return;
    if (up && !c->up) on_up(c);
    else if (!up) c->up = false;
    wake_soon(c);
}

const char *pmx_queue_consumer_name(const pmx_queue_consumer_t *c)
{
    return c->name;
}

void pmx_queue_consumer_stats(const pmx_queue_consumer_t *c, pmx_queue_stats_t *out)
{
    *out = c->st;
    out->held = pmx__queue_held(c);
    out->held_bytes = pmx__queue_held_bytes(c);
    out->in_flight = (unsigned)c->inflight.n;
    out->workspaces = (unsigned)c->nws;
}

/* -------------------------------------------------- admitting and handing over */

pmx_queue_job_t *pmx__queue_held_find(pmx__queue_c_t *c, const pmx__queue_ws_t *ws,
                                      const char *id, size_t idlen)
{
    pmx__queue_jlist_t *lists[] = { &c->check, &c->ready, &c->inflight, &c->done };
    for (size_t i = 0; i < 4; i++)
        for (pmx_queue_job_t *j = lists[i]->head; j; j = j->p.next)
            /* By id, not pointer: a workspace unlisted and listed again is a new
             * struct while its old jobs are still in flight. */
            if ((j->p.ws == ws || strcmp(j->p.ws->id, ws->id) == 0) &&
                strlen(j->entry_id) == idlen &&
                memcmp(j->entry_id, id, idlen) == 0)
                return j;
    return NULL;
}

/* A job not handed over after all: it stays pending in Redis until a sweep
 * takes it back (marked due here). Said in the log, except when we are
 * closing anyway. */
static void leave_pending(pmx__queue_c_t *c, pmx_queue_job_t *job, const char *why)
{
    if (!pmx__queue_closed(c)) {
        pmx_log_warn("queue: job left pending, %s ws=%s entry=%s (taken back by the next sweep)",
                     why, job->ws, job->entry_id);
        /* The listed workspace (job->p.ws may be an unlisted or transient one). */
        pmx__queue_ws_t *ws = pmx__queue_ws_find(c, job->ws);
        if (ws) pmx__queue_sweep_mark(c, ws);
    }
    pmx__queue_job_drop(job);
}

static void idem_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    pmx_queue_job_t *job = priv;
    pmx__queue_c_t *c = job->p.c;
    redisReply *r = reply;
    pmx__queue_jl_remove(&c->check, job);
    if (pmx__queue_closed(c) || !r) {
        leave_pending(c, job, "no answer to its duplicate check");
    } else {
        if (r->type == REDIS_REPLY_STRING) {
            job->kind = PMX_QUEUE_JOB_DUPLICATE;
            snprintf(job->reason, sizeof job->reason,
                     "duplicate: id already used by entry %.*s within %u s",
                     (int)(r->len > 40 ? 40 : r->len), r->str, c->o.idem_ttl_s);
            c->st.duplicates++;
        } else if (r->type == REDIS_REPLY_ERROR) {
            /* Fail open: a broken idem key must not stop the stream. */
            pmx__queue_count_error(c, r, "the duplicate check", job->ws);
        }
        pmx__queue_jl_push(&c->ready, PMX__L_READY, job);
        pmx__queue_pump(c);
    }
    pmx__queue_cmd_end(c);
}

void pmx__queue_admit(pmx__queue_c_t *c, pmx_queue_job_t *job)
{
    job->p.c = c;
    job->p.touched = pmx__queue_now(c);
    if (!job->p.ws->known && job->kind != PMX_QUEUE_JOB_POISON) {
        job->kind = PMX_QUEUE_JOB_UNKNOWN_WS;
        snprintf(job->reason, sizeof job->reason,
                 "unknown_workspace: no workspace %s", job->ws);
    }
    switch (job->kind) {
    case PMX_QUEUE_JOB_MALFORMED:  c->st.malformed++; break;
    case PMX_QUEUE_JOB_UNKNOWN_WS: c->st.unknown_ws++; break;
    case PMX_QUEUE_JOB_POISON:     c->st.poison++; break;
    default: break;
    }
    if (job->kind == PMX_QUEUE_JOB_OK && !(job->flags & PMX_QUEUE_JOB_RETRIED) &&
        job->client_id) {
        pmx_buf_t key = PMX_BUF_INIT;
        pmx_queue_key_idem(&key, c->prefix, job->ws, job->client_id);
        char ttl[16];
        snprintf(ttl, sizeof ttl, "%u", c->o.idem_ttl_s);
        const char *args[] = { key.data, job->entry_id, ttl };
        int rc = pmx_queue_script_run(c->rc, &idem_script, 1, 3, args, NULL, idem_cb, job);
        pmx_buf_free(&key);
        if (rc < 0) {
            leave_pending(c, job, "duplicate check not sent (Redis is gone)");
            return;
        }
        pmx__queue_cmd_begin(c);
        pmx__queue_jl_push(&c->check, PMX__L_CHECK, job);
        return;
    }
    pmx__queue_jl_push(&c->ready, PMX__L_READY, job);
}

/* Nothing this consumer started is still going on and it holds no job: the
 * "quiet" of the lifecycle table (queue/consumer_int.h). */
static bool drain_quiet(const pmx__queue_c_t *c)
{
    if (c->check.n || c->ready.n || c->inflight.n || c->done.n) return false;   /* jobs held */
    if (c->read_busy || c->claiming || c->sweeping || c->done_busy) return false;
    for (size_t i = 0; i < c->nws; i++)
        if (c->wsv[i]->reclaim_busy) return false;   /* its XCLAIM could hand jobs over */
    return true;
}

/* DRAINING: a reply lost with the connection is what leaves entries pending, so
 * with Redis away wait a little for it to come back (wake_cb notices) before
 * giving back. True while waiting. */
static bool drain_awaits_redis(pmx__queue_c_t *c)
{
    uint64_t now = pmx__queue_now(c), until = c->drain_redis_wait_until;
    if (c->up || now >= until) return false;
    pmx__queue_wake_at(c, now + 100 < until ? now + 100 : until);
    return true;
}

/* Moves a quiet drain on (table in queue/consumer_int.h): DRAINING gives back
 * whatever is still pending on us (released, or lost with a reply), so the next
 * consumer need not wait reclaim_idle; once that sweep is over (its end pumps:
 * here again), GIVING_BACK calls the drain callback. */
static void check_drained(pmx__queue_c_t *c)
{
    if (c->phase != PMX__Q_DRAINING && c->phase != PMX__Q_GIVING_BACK) return;
    if (!drain_quiet(c)) return;
    if (c->phase == PMX__Q_DRAINING) {
        if (drain_awaits_redis(c) || !pmx__queue_phase_set(c, PMX__Q_GIVING_BACK)) return;
        pmx__queue_sweep_mark(c, NULL);
        if (pmx__queue_upkeep_sweep(c)) return;
    }
    if (!pmx__queue_phase_set(c, PMX__Q_DRAINED)) return;
    if (c->drain_cb) c->drain_cb(c, c->drain_arg);
}

static void read_cb(redisAsyncContext *ac, void *reply, void *priv);

/* Issues the one XREADGROUP if there is room and something to read. */
static void maybe_read(pmx__queue_c_t *c)
{
    if (c->phase != PMX__Q_RUNNING || !c->up || c->nws == 0 || !pmx_redis_conn_is_up(c->rd))
        return;
    if (c->read_busy) {
        unblock_stale_read(c, pmx__queue_now(c));
        return;
    }
    /* Groups being created: wait (one round trip) so the read covers them. */
    for (size_t i = 0; i < c->nws; i++)
        if (c->wsv[i]->group_busy) return;
    unsigned held = pmx__queue_held(c);
    unsigned cap = c->o.capacity;
    if (held >= cap) return;
    unsigned room = cap - held;
    unsigned low = cap / 8 ? cap / 8 : 1;
    if (room < low && held > 0) return;
    /* The byte budget: big entries (newsletters) fill memory long before the
     * count does. No read while the held jobs' entries reach it; otherwise
     * the room is also what the bytes left hold at the mean entry size seen
     * so far (64 KiB until an entry was seen). An entry bigger than the
     * budget still goes through, alone. The budget grows with the capacity
     * beyond the one given at creation: the pipeline raises it for jobs parked
     * behind a gate or a slow site, so that they never stop other mail; the
     * bytes of those jobs must not stop it either. */
    if (c->o.max_held_bytes) {
        size_t budget = c->o.max_held_bytes;
        if (c->base_capacity && cap > c->base_capacity)
            budget = budget / c->base_capacity * cap;
        size_t hb = pmx__queue_held_bytes(c);
        if (held > 0 && hb >= budget) return;
        size_t avg = c->entry_avg ? c->entry_avg : 64u << 10;
        size_t fit = hb < budget ? (budget - hb) / avg : 0;
        if (fit < room) room = fit ? (unsigned)fit : 1;
    }
    uint64_t now = pmx__queue_now(c);
    if (c->read_retry_at > now) {
        pmx__queue_wake_at(c, c->read_retry_at);
        return;
    }

    size_t k = 0;
    uint64_t pause_end = UINT64_MAX;
    const char **argv = pmx_xcalloc(10 + 2 * c->nws, sizeof *argv);
    size_t start = c->rr % c->nws;
    for (size_t i = 0; i < c->nws; i++) {
        pmx__queue_ws_t *ws = c->wsv[(start + i) % c->nws];
        ws->in_read = false;
        if (!ws->group_ready) continue;
        if (ws->paused_until > now) {
            if (ws->paused_until < pause_end) pause_end = ws->paused_until;
            continue;
        }
        ws->in_read = true;
        argv[9 + k++] = ws->stream;
    }
    if (pause_end != UINT64_MAX) pmx__queue_wake_at(c, pause_end);
    if (k == 0) {
        free(argv);
        return;
    }
    size_t m = c->active_est ? c->active_est : k;
    if (m > k) m = k;
    unsigned count = room / (unsigned)m;
    if (count == 0) count = 1;
    char count_s[16], block_s[16];
    snprintf(count_s, sizeof count_s, "%u", count);
    snprintf(block_s, sizeof block_s, "%u", c->o.block_ms);
    argv[0] = "XREADGROUP";
    argv[1] = "GROUP";
    argv[2] = c->group;
    argv[3] = c->name;
    argv[4] = "COUNT";
    argv[5] = count_s;
    argv[6] = "BLOCK";
    argv[7] = block_s;
    argv[8] = "STREAMS";
    for (size_t i = 0; i < k; i++) argv[9 + k + i] = ">";
    int argc = (int)(9 + 2 * k);
    /* The sweep's rule (queue/upkeep.c): its XPENDING would list this read's
     * entries as unheld and take them back, so they would be handed over twice. */
    if (c->sweeping) pmx__queue_broken(c, "a read going out while a sweep is");
    if (pmx_redis_conn_command_argv(c->rd, read_cb, c, argc, argv, NULL) == 0) {
        pmx__queue_cmd_begin(c);
        c->read_busy = true;
        c->unblock_sent = false;
        c->read_seq++;
        c->rr++;
        pmx_log_debug("queue: read seq=%" PRIu64 " streams=%zu count=%u held=%u", c->read_seq,
                      k, count, held);
    }
    free(argv);
}

/* Hands ready jobs over while there is room, then reads if there is more. */
void pmx__queue_pump(pmx__queue_c_t *c)
{
    if (c->pumping) {
        c->pump_again = true;
        return;
    }
    c->pumping = true;
    do {
        c->pump_again = false;
        while (!pmx__queue_closed(c) && c->ready.head && c->inflight.n < c->o.capacity) {
            pmx_queue_job_t *job = c->ready.head;
            pmx__queue_jl_remove(&c->ready, job);
            pmx__queue_jl_push(&c->inflight, PMX__L_INFLIGHT, job);
            c->st.delivered++;
            if (job->flags & PMX_QUEUE_JOB_REDELIVERED) c->st.reclaimed++;
            c->o.job(c, job, c->o.arg);
        }
        /* A sweep of our own pending entries goes before (and blocks) the next read. */
        if (!pmx__queue_closed(c) && !pmx__queue_upkeep_sweep(c)) maybe_read(c);
    } while (c->pump_again && !pmx__queue_closed(c));
    c->pumping = false;
    check_drained(c);
}

static bool is_error(const redisReply *r, const char *code)
{
    size_t n = strlen(code);
    return r->type == REDIS_REPLY_ERROR && r->str && r->len >= n && memcmp(r->str, code, n) == 0;
}

/* One stream of a read reply: [key, [entry...]]. Returns entries taken. */
static size_t take_stream(pmx__queue_c_t *c, const redisReply *s, uint64_t now, uint64_t wall)
{
    if (!s || s->type != REDIS_REPLY_ARRAY || s->elements != 2 || !s->element[0] ||
        !s->element[1] || s->element[0]->type != REDIS_REPLY_STRING ||
        s->element[1]->type != REDIS_REPLY_ARRAY) {
        pmx_log_warn("queue: XREADGROUP reply has a stream that is not [key, entries]; skipped");
        return 0;
    }
    const redisReply *key = s->element[0], *entries = s->element[1];
    char id[PMX__QUEUE_WS_MAX + 1];
    if (pmx__queue_ws_of_key(c, key->str, key->len, id, sizeof id) < 0) {
        pmx_log_warn("queue: XREADGROUP returned a stream that is not ours; skipped");
        return 0;
    }
    pmx__queue_ws_t *ws = pmx__queue_ws_find(c, id);
    bool transient = false;
    if (!ws) {
        /* Unlisted since the read went out: its jobs are unknown now. */
        ws = ws_new(c, id, false);
        transient = true;
    }
    pmx__queue_ws_ref(ws);
    size_t taken = 0;
    for (size_t i = 0; i < entries->elements; i++) {
        pmx_queue_job_t *job;
        char err[160];
        int rc = pmx_queue_job_from_entry(entries->element[i], ws->id, ws->stream,
                                          &c->o.limits, wall, &job, err, sizeof err);
        if (rc < 0) {
            pmx_log_warn("queue: unusable entry skipped ws=%s err=\"%s\"", ws->id, err);
            continue;
        }
        if (rc == 1) {
            pmx_queue_job_free(job);
            continue;
        }
        job->batch = c->read_seq;
        job->p.ws = ws;
        c->entry_avg = c->entry_avg ? (7 * c->entry_avg + job->bytes) / 8 : job->bytes;
        if (c->entry_avg == 0) c->entry_avg = 1;
        pmx__queue_ws_ref(ws);
        pmx__queue_admit(c, job);
        taken++;
    }
    if (taken) ws->last_data_at = now;
    if (transient && ws->refs == 1) {
        ws->refs = 0;
        ws_free(ws);
    } else {
        pmx__queue_ws_unref(ws);
    }
    return taken;
}

static void read_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    pmx__queue_c_t *c = priv;
    redisReply *r = reply;
    c->read_busy = false;
    if (pmx__queue_closed(c) || !r) {
        /* Closed, or Redis went away: whatever the read returned stays pending. */
        if (!pmx__queue_closed(c)) {
            pmx_log_warn("queue: XREADGROUP got no answer (connection lost); entries it "
                         "returned stay pending until the next sweep takes them back");
            pmx__queue_sweep_mark(c, NULL);
        }
        goto out;
    }

    uint64_t now = pmx__queue_now(c);
    if (r->type == REDIS_REPLY_NIL) {
        c->st.empty_reads++;
        c->active_est = 0;
    } else if (r->type == REDIS_REPLY_ARRAY) {
        c->st.reads++;
        size_t active = 0;
        uint64_t wall = pmx__queue_wall_ms();
        for (size_t i = 0; i < r->elements; i++)
            if (take_stream(c, r->element[i], now, wall) > 0) active++;
        c->active_est = active;
    } else if (r->type == REDIS_REPLY_ERROR) {
        /* NOGROUP or UNBLOCKED (a stream deleted, Redis restarted empty), WRONGTYPE...:
         * re-create the groups; a key that cannot have one stays out. */
        bool gone = is_error(r, "NOGROUP") || is_error(r, "UNBLOCKED");
        if (!gone) pmx__queue_count_error(c, r, "XREADGROUP", NULL);
        else c->st.redis_errors++;
        for (size_t i = 0; i < c->nws; i++) c->wsv[i]->group_ready = false;
        c->read_retry_at = now + (gone ? 100 : 1000);
    } else {
        pmx_log_warn("queue: unexpected XREADGROUP reply type=%d", r->type);
        c->read_retry_at = now + 1000;
    }
    if (r->type != REDIS_REPLY_NIL && r->type != REDIS_REPLY_ARRAY)
        wake_soon(c);   /* groups to re-create */
    pmx__queue_pump(c);
out:
    pmx__queue_cmd_end(c);
}

/* ------------------------------------------------------- the wake timer */

static void wake_cb(uv_timer_t *t)
{
    pmx__queue_c_t *c = t->data;
    c->wake_armed = false;
    if (pmx__queue_closed(c)) return;
    uint64_t now = pmx__queue_now(c);
    uint64_t next = UINT64_MAX;

    /* Notice Redis coming and going even if nobody forwards its state. */
    bool up = pmx_redis_conn_is_up(c->rc);
    if (up && !c->up) on_up(c);
    else if (!up && c->up) c->up = false;

    pmx__queue_flush(c);
    if (c->up) {
        ensure_groups(c, now, &next);
        if (!pmx__queue_draining(c)) {
            pmx__queue_upkeep_reclaim(c, now, &next);
            pmx__queue_upkeep_discover(c, now, &next);
        }
        pmx__queue_upkeep_refresh(c, now, &next);
        pmx__queue_upkeep_movers(c, now, &next);
    }
    /* Poll the connection at least every second (and so re-check deadlines). */
    if (now + 1000 < next) next = now + 1000;
    pmx__queue_pump(c);
    if (!pmx__queue_closed(c)) pmx__queue_wake_at(c, next);
}

/* ------------------------------------------------------ life and death */

static bool name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 200) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f) return false;
    return true;
}

static void rd_id_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    pmx__queue_c_t *c = priv;
    redisReply *r = reply;
    if (!pmx__queue_closed(c) && r && r->type == REDIS_REPLY_INTEGER) c->rd_id = r->integer;
    else if (!pmx__queue_closed(c) && r && r->type == REDIS_REPLY_ERROR && !c->no_unblock)
        pmx__queue_count_error(c, r, "CLIENT ID of the read connection", NULL);
    pmx__queue_cmd_end(c);
}

/* The read connection's CLIENT ID, for CLIENT UNBLOCK. Asked on that connection
 * itself, so the answer comes from the server it really talks to, before any
 * read that follows. */
void pmx__queue_ask_rd_id(pmx__queue_c_t *c)
{
    c->rd_id = 0;
    if (!c->own_rd || pmx__queue_closed(c) || !pmx_redis_conn_is_up(c->rd)) return;
    const char *argv[] = { "CLIENT", "ID" };
    if (pmx_redis_conn_command_argv(c->rd, rd_id_cb, c, 2, argv, NULL) == 0)
        pmx__queue_cmd_begin(c);
}

/* Our read connection came up (read now) or went down (its read got NULL). */
static void reader_state_cb(pmx_redis_conn_t *rd, bool up, void *arg)
{
    (void)rd;
    pmx__queue_c_t *c = arg;
    c->rd_id = 0;
    if (up && !pmx__queue_closed(c)) {
        pmx__queue_ask_rd_id(c);
        pmx__queue_sweep_mark(c, NULL);   /* a read answer may have been lost with it */
        wake_soon(c);
    }
}

pmx_queue_consumer_t *pmx_queue_consumer_new(uv_loop_t *loop, pmx_redis_conn_t *rc,
                                             const pmx_queue_consumer_opts_t *o,
                                             char *err, size_t errlen)
{
    const char *why = NULL;
    if (!o->job) why = "no job callback";
    else if (!o->prefix || !name_valid(o->prefix) || strchr(o->prefix, '{') ||
             strchr(o->prefix, '}'))
        why = "prefix must be 1-200 printable characters without braces";
    else if (!o->group || !name_valid(o->group)) why = "group must be 1-200 printable characters";
    else if (o->name && !name_valid(o->name)) why = "name must be 1-200 printable characters";
    else if (o->capacity == 0) why = "capacity must be at least 1";
    else if (o->block_ms == 0) why = "block_ms must be at least 1 (0 blocks forever)";
    else if (o->reclaim_interval_ms == 0 || o->reclaim_batch == 0 || o->retry_batch == 0 ||
             o->retry_poll_ms == 0 || o->retry_idle_poll_ms == 0)
        why = "intervals and batch sizes must be at least 1";
    else if (o->max_deliveries == 0) why = "max_deliveries must be at least 1";
    else if (o->refresh_after_ms == 0 || o->refresh_after_ms >= o->reclaim_idle_ms)
        why = "refresh_after_ms must be between 1 and reclaim_idle_ms - 1";
    else if (o->idem_ttl_s == 0) why = "idem_ttl_s must be at least 1";
    else if (o->limits.max_items < 2 || o->limits.max_bytes == 0)
        why = "entry limits too small";
    if (why) {
        snprintf(err, errlen, "queue consumer: %s", why);
        return NULL;
    }

    pmx__queue_c_t *c = pmx_xcalloc(1, sizeof *c);
    c->loop = loop;
    c->rc = rc;
    c->o = *o;
    c->base_capacity = o->capacity;
    c->prefix = pmx_xstrdup(o->prefix);
    c->group = pmx_xstrdup(o->group);
    if (o->name) {
        c->name = pmx_xstrdup(o->name);
    } else {
        char host[256] = "localhost";
        if (gethostname(host, sizeof host - 1) < 0) snprintf(host, sizeof host, "localhost");
        host[sizeof host - 1] = '\0';
        for (char *p = host; *p; p++)
            if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) *p = '_';
        pmx_buf_t b = PMX_BUF_INIT;
        pmx_buf_appendf(&b, "%s-%ld", host, (long)getpid());
        c->name = pmx_buf_detach(&b);
    }
    c->o.prefix = c->prefix;
    c->o.group = c->group;
    c->o.name = c->name;
    pmx_buf_t pat = PMX_BUF_INIT;
    pmx_queue_key_jobs_pattern(&pat, c->prefix);
    c->scan_pattern = pmx_buf_detach(&pat);
    c->rd = rc;
    if (o->read_address) {
        c->rd = pmx_redis_conn_new(loop, o->read_address, o->read_password, o->read_pwlen,
                                   err, errlen);
        if (!c->rd) {
            free(c->prefix);
            free(c->group);
            free(c->name);
            free(c->scan_pattern);
            free(c);
            return NULL;
        }
        c->own_rd = true;
        pmx_redis_conn_set_state_cb(c->rd, reader_state_cb, c);
    }
    c->o.read_address = NULL;
    c->o.read_password = NULL;
    c->o.read_pwlen = 0;
    uv_timer_init(loop, &c->wake);
    c->wake.data = c;
    c->handles_open = 1;
    return c;
}

void pmx_queue_consumer_start(pmx_queue_consumer_t *c)
{
    if (c->phase != PMX__Q_NEW || !pmx__queue_phase_set(c, PMX__Q_RUNNING)) return;
    if (c->own_rd) pmx_redis_conn_start(c->rd);
    if (pmx_redis_conn_is_up(c->rc)) on_up(c);
    wake_soon(c);
}

void pmx_queue_consumer_drain(pmx_queue_consumer_t *c, pmx_queue_drained_fn cb, void *arg)
{
    if (c->phase != PMX__Q_NEW && c->phase != PMX__Q_RUNNING) return;   /* once */
    if (!pmx__queue_phase_set(c, PMX__Q_DRAINING)) return;
    c->drain_cb = cb;
    c->drain_arg = arg;
    c->drain_redis_wait_until = pmx__queue_now(c) + PMX__QUEUE_DRAIN_REDIS_WAIT_MS;
    wake_soon(c);
}

static void consumer_free(uv_handle_t *h)
{
    pmx__queue_c_t *c = h->data;
    if (--c->handles_open > 0) return;
    while (c->nws) pmx__queue_ws_unlist(c, c->wsv[c->nws - 1]);
    free(c->wsv);
    free(c->prefix);
    free(c->group);
    free(c->name);
    free(c->scan_pattern);
    free(c);
}

/* A closed consumer goes once nothing points at it any more. */
void pmx__queue_finalize_maybe(pmx__queue_c_t *c)
{
    if (c->phase != PMX__Q_CLOSED || c->outstanding || c->inflight.n || c->check.n || c->done.n)
        return;
    if (!pmx__queue_phase_set(c, PMX__Q_FREEING)) return;
    uv_close((uv_handle_t *)&c->wake, consumer_free);
}

void pmx_queue_consumer_close(pmx_queue_consumer_t *c)
{
    if (pmx__queue_closed(c) || !pmx__queue_phase_set(c, PMX__Q_CLOSED)) return;
    uv_timer_stop(&c->wake);
    c->wake_armed = false;
    /* Acks and defers made before close still go out (no settled callback). */
    if (c->up) pmx__queue_flush(c);
    while (c->done.head) {
        pmx_queue_job_t *j = c->done.head;
        pmx__queue_jl_remove(&c->done, j);
        pmx__queue_job_drop(j);
    }
    while (c->ready.head) {
        pmx_queue_job_t *j = c->ready.head;
        pmx__queue_jl_remove(&c->ready, j);
        pmx__queue_job_drop(j);
    }
    pmx__queue_upkeep_scan_reset(c);
    /* Our read connection: its outstanding read's callback runs now with NULL. */
    if (c->own_rd) {
        c->own_rd = false;
        pmx_redis_conn_close(c->rd);
    }
    c->rd = c->rc;
    pmx__queue_finalize_maybe(c);
}
