/*
 * The consumer's periodic work (see consumer.h), run from its wake timer:
 *
 * - reclaim: per workspace, XPENDING IDLE reclaim_idle - + batch, then
 *   XCLAIM (min idle again, so two consumers racing for an entry cannot both
 *   get it) the entries we have room for and do not hold ourselves. The
 *   delivery count XPENDING reported decides: >= max_deliveries -> POISON.
 * - refresh: a job held longer than refresh_after has its idle time reset by
 *   a script that XCLAIMs it JUSTID (no delivery-count bump) only if it is
 *   still ours; an id that is not any more is reported back and the job is
 *   flagged LOST (someone reclaimed it while we were stuck or cut off).
 * - retry movers: queue/retry.h's script for each workspace when due: every
 *   retry_poll while its schedule has members (sooner when the earliest is
 *   due sooner), every retry_idle_poll when it looked empty (other workers
 *   defer too, and may die).
 * - sweep: entries pending on this consumer that it does not hold — a read
 *   or a duplicate check whose answer was lost with a connection (and, at
 *   the end of a drain, jobs the pipeline released). Run after Redis or the
 *   read connection came back, after an entry was left pending, and once at
 *   the end of a drain (the GIVING_BACK phase, queue/consumer_int.h); never
 *   while a read is out (its entries would look unheld), and no read goes
 *   out while one runs (queue/consumer.c).
 *   XPENDING <from> + COUNT <ours> page by page, then one script that, for
 *   each id still pending on us (another consumer may have reclaimed it
 *   since), normally XCLAIMs it back (delivery count + 1) to be handed over
 *   as REDELIVERED at once instead of after reclaim_idle, and while
 *   draining gives it back to the group (XCLAIM ... IDLE 1 day JUSTID), so
 *   whoever reclaims next takes it at once. Jobs the pipeline releases
 *   while running are left to reclaim (a Postgres that refuses should not
 *   spin them into poison within a second).
 * - discovery: SCAN MATCH <prefix>:{*}:jobs TYPE stream every
 *   discover_interval; streams of workspaces not given are read as unknown.
 *   An unknown stream that stayed empty for a whole interval is deleted (an
 *   atomic "DEL if XLEN is 0"), so dead workspaces do not stay in every read.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "lib/mem.h"
#include "queue/consumer_int.h"
#include "queue/retry.h"
#include "queue/script.h"

#define REFRESH_MAX_IDS 500
#define SCAN_COUNT      "1000"
#define SWEEP_COUNT     1000           /* XPENDING page */

static void lower(uint64_t *next, uint64_t t)
{
    if (t < *next) *next = t;
}

/* KEYS: stream. ARGV: group, consumer, ids... Returns the ids that are not ours. */
static pmx_queue_script_t refresh_script = PMX_QUEUE_SCRIPT("refresh_idle",
    "local lost = {}\n"
    "for i = 3, #ARGV do\n"
    "  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])\n"
    "  if p[1] then\n"
    "    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')\n"
    "  else\n"
    "    lost[#lost + 1] = ARGV[i]\n"
    "  end\n"
    "end\n"
    "return lost\n");

/*
 * KEYS: stream. ARGV: group, consumer, "take" | "give", ids... Only ids still
 * pending on the consumer are touched. take: XCLAIM them (min idle 0, count +
 * 1) and return the entries as XCLAIM does (an entry deleted meanwhile is
 * acked and left out). give: set their idle time to 1 day (past any
 * reclaim_idle) without a count bump, and return their ids.
 */
static pmx_queue_script_t sweep_script = PMX_QUEUE_SCRIPT("sweep_own",
    "local out = {}\n"
    "for i = 4, #ARGV do\n"
    "  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])\n"
    "  if p[1] then\n"
    "    if ARGV[3] == 'give' then\n"
    "      redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'IDLE', 86400000, 'JUSTID')\n"
    "      out[#out + 1] = ARGV[i]\n"
    "    else\n"
    "      local e = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i])\n"
    "      if e[1] then out[#out + 1] = e[1]\n"
    "      else redis.call('XACK', KEYS[1], ARGV[1], ARGV[i]) end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return out\n");

/* KEYS: stream. Deletes it when it has no entries; 1 if deleted. */
static pmx_queue_script_t drop_script = PMX_QUEUE_SCRIPT("drop_empty_stream",
    "if redis.call('TYPE', KEYS[1]).ok ~= 'stream' then return 0 end\n"
    "if redis.call('XLEN', KEYS[1]) > 0 then return 0 end\n"
    "redis.call('DEL', KEYS[1])\n"
    "return 1\n");

typedef struct {
    pmx__queue_c_t  *c;
    pmx__queue_ws_t *ws;
    bool             sweep;    /* a sweep of our own entries (else a reclaim) */
    size_t           n;        /* ids asked for */
    char           (*ids)[PMX_QUEUE_ENTRY_ID_MAX];
    uint32_t        *counts;   /* delivery counts from XPENDING */
} claim_req_t;

static void ws_req_end(pmx__queue_c_t *c, pmx__queue_ws_t *ws)
{
    pmx__queue_ws_unref(ws);
    pmx__queue_cmd_end(c);
}

/* ------------------------------------------------------------- reclaim */

static void claim_req_free(claim_req_t *q)
{
    free(q->ids);
    free(q->counts);
    free(q);
}

static void xack_deleted(pmx__queue_c_t *c, pmx__queue_ws_t *ws, const char *id)
{
    const char *argv[] = { "XACK", ws->stream, c->group, id };
    pmx_redis_conn_command_argv(c->rc, NULL, NULL, 4, argv, NULL);
}

static void sweep_end(claim_req_t *q);

/* The XCLAIM of a reclaim, or the "take" of a sweep: hands the entries over. */
static void xclaim_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    claim_req_t *q = priv;
    pmx__queue_c_t *c = q->c;
    pmx__queue_ws_t *ws = q->ws;
    redisReply *r = reply;
    c->claiming -= (unsigned)q->n;
    if (pmx__queue_closed(c)) goto out;
    if (!r) {
        if (q->sweep) ws->sweep_due = true;   /* claimed or not: look again when back */
        goto out;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        pmx__queue_count_error(c, r, "XCLAIM", ws->id);
        goto out;
    }
    if (r->type != REDIS_REPLY_ARRAY) goto out;
    uint64_t wall = pmx__queue_wall_ms();
    for (size_t i = 0; i < r->elements; i++) {
        pmx_queue_job_t *job;
        char err[160];
        int rc = pmx_queue_job_from_entry(r->element[i], ws->id, ws->stream, &c->o.limits,
                                          wall, &job, err, sizeof err);
        if (rc < 0) continue;   /* nil: an entry deleted meanwhile (old Redis) */
        if (rc == 1) {          /* pending but deleted: nothing to deliver */
            xack_deleted(c, ws, job->entry_id);
            pmx_queue_job_free(job);
            continue;
        }
        uint32_t count = 0;
        for (size_t k = 0; k < q->n; k++)
            if (strcmp(q->ids[k], job->entry_id) == 0) count = q->counts[k];
        job->deliveries = count + 1;
        job->flags |= PMX_QUEUE_JOB_REDELIVERED;
        job->batch = 0;
        if (count >= c->o.max_deliveries) {
            job->kind = PMX_QUEUE_JOB_POISON;
            snprintf(job->reason, sizeof job->reason,
                     "poison: delivered %u times without an outcome", count);
            pmx_log_warn("queue: poison job ws=%s entry=%s deliveries=%u", ws->id,
                         job->entry_id, count);
        }
        job->p.ws = ws;
        pmx__queue_ws_ref(ws);
        pmx__queue_admit(c, job);
    }
    if (q->sweep)
        pmx_log_info("queue: took back %zu entries pending on this consumer that it did not "
                     "hold ws=%s", r->elements, ws->id);
out:
    if (q->sweep) {
        sweep_end(q);
        return;
    }
    ws->reclaim_busy = false;
    if (!pmx__queue_closed(c)) pmx__queue_pump(c);   /* a drain may be done */
    claim_req_free(q);
    ws_req_end(c, ws);
}

/* XPENDING row: [id, consumer, idle ms, delivery count]. */
static bool pending_row_ok(const redisReply *e)
{
    return e && e->type == REDIS_REPLY_ARRAY && e->elements == 4 && e->element[0] &&
           e->element[0]->type == REDIS_REPLY_STRING && e->element[3] &&
           e->element[3]->type == REDIS_REPLY_INTEGER && e->element[3]->integer >= 0 &&
           pmx_queue_entry_id_valid(e->element[0]->str, e->element[0]->len);
}

/* q->ids / q->counts: the ids (at most max) of the XPENDING rows in r that this
 * consumer does not hold, with their delivery counts. */
static void collect_unheld(claim_req_t *q, const redisReply *r, size_t max)
{
    q->ids = pmx_xcalloc(r->elements, sizeof *q->ids);
    q->counts = pmx_xcalloc(r->elements, sizeof *q->counts);
    for (size_t i = 0; i < r->elements && q->n < max; i++) {
        const redisReply *e = r->element[i];
        if (!pending_row_ok(e)) continue;
        const redisReply *id = e->element[0];
        if (pmx__queue_held_find(q->c, q->ws, id->str, id->len)) continue;   /* in hand */
        memcpy(q->ids[q->n], id->str, id->len);
        q->ids[q->n][id->len] = '\0';
        long long cnt = e->element[3]->integer;
        q->counts[q->n] = cnt > (long long)UINT32_MAX - 1 ? UINT32_MAX - 1 : (uint32_t)cnt;
        q->n++;
    }
}

static void xpending_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    claim_req_t *q = priv;
    pmx__queue_c_t *c = q->c;
    pmx__queue_ws_t *ws = q->ws;
    redisReply *r = reply;
    if (pmx__queue_closed(c) || !r || pmx__queue_draining(c)) goto done;
    if (r->type == REDIS_REPLY_ERROR) {
        /* NOGROUP: the stream went away; the read path re-creates groups. */
        if (r->len >= 7 && memcmp(r->str, "NOGROUP", 7) == 0) ws->group_ready = false;
        else pmx__queue_count_error(c, r, "XPENDING", ws->id);
        goto done;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) goto done;

    unsigned held = pmx__queue_held(c);
    size_t room = held < c->o.capacity ? c->o.capacity - held : 0;
    if (room == 0) goto done;
    collect_unheld(q, r, room);
    if (q->n == 0) goto done;

    char idle[16];
    snprintf(idle, sizeof idle, "%u", c->o.reclaim_idle_ms);
    const char **argv = pmx_xcalloc(q->n + 5, sizeof *argv);
    argv[0] = "XCLAIM";
    argv[1] = ws->stream;
    argv[2] = c->group;
    argv[3] = c->name;
    argv[4] = idle;
    for (size_t i = 0; i < q->n; i++) argv[5 + i] = q->ids[i];
    int rc = pmx_redis_conn_command_argv(c->rc, xclaim_cb, q, (int)q->n + 5, argv, NULL);
    free(argv);
    if (rc == 0) {
        /* The request (and our ws reference) moves on to the XCLAIM. */
        c->claiming += (unsigned)q->n;
        pmx__queue_cmd_begin(c);
        pmx__queue_cmd_end(c);
        return;
    }
done:
    ws->reclaim_busy = false;
    claim_req_free(q);
    if (!pmx__queue_closed(c)) pmx__queue_pump(c);   /* a drain may be complete now */
    ws_req_end(c, ws);
}

void pmx__queue_upkeep_reclaim(pmx__queue_c_t *c, uint64_t now, uint64_t *next)
{
    if (now < c->next_reclaim_at) {
        lower(next, c->next_reclaim_at);
        return;
    }
    c->next_reclaim_at = now + c->o.reclaim_interval_ms;
    lower(next, c->next_reclaim_at);
    if (pmx__queue_held(c) >= c->o.capacity) return;
    char idle[16], batch[16];
    snprintf(idle, sizeof idle, "%u", c->o.reclaim_idle_ms);
    snprintf(batch, sizeof batch, "%u", c->o.reclaim_batch);
    for (size_t i = 0; i < c->nws; i++) {
        pmx__queue_ws_t *ws = c->wsv[i];
        if (!ws->group_ready || ws->reclaim_busy || ws->sweep_busy) continue;
        claim_req_t *q = pmx_xcalloc(1, sizeof *q);
        q->c = c;
        q->ws = ws;
        const char *argv[] = { "XPENDING", ws->stream, c->group, "IDLE", idle, "-", "+", batch };
        if (pmx_redis_conn_command_argv(c->rc, xpending_cb, q, 8, argv, NULL) < 0) {
            free(q);
            return;
        }
        ws->reclaim_busy = true;
        pmx__queue_ws_ref(ws);
        pmx__queue_cmd_begin(c);
    }
}

/* --------------------------------------------------------------- sweep */

/* A sweep of q->ws is over: reads may go out again (pumped), a drain may end. */
static void sweep_end(claim_req_t *q)
{
    pmx__queue_c_t *c = q->c;
    pmx__queue_ws_t *ws = q->ws;
    ws->sweep_busy = false;
    c->sweeping--;
    claim_req_free(q);
    if (!pmx__queue_closed(c)) pmx__queue_pump(c);
    ws_req_end(c, ws);
}

static void give_back_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    claim_req_t *q = priv;
    redisReply *r = reply;
    if (!pmx__queue_closed(q->c) && r && r->type == REDIS_REPLY_ERROR)
        pmx__queue_count_error(q->c, r, "the sweep (give back)", q->ws->id);
    else if (!pmx__queue_closed(q->c) && r && r->type == REDIS_REPLY_ARRAY && r->elements)
        pmx_log_info("queue: gave %zu pending entries back to the group on stopping ws=%s "
                     "(whoever reclaims next takes them at once)", r->elements, q->ws->id);
    sweep_end(q);
}

static void sweep_pending_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    claim_req_t *q = priv;
    pmx__queue_c_t *c = q->c;
    pmx__queue_ws_t *ws = q->ws;
    redisReply *r = reply;
    if (pmx__queue_closed(c)) goto done;
    if (!r) {
        ws->sweep_due = true;
        goto done;
    }
    ws->sweep_from[0] = '\0';   /* from the start next time, unless this page is full */
    if (r->type == REDIS_REPLY_ERROR) {
        if (r->len >= 7 && memcmp(r->str, "NOGROUP", 7) == 0) {
            ws->group_ready = false;   /* the read path re-creates it; sweep then */
            ws->sweep_due = !pmx__queue_draining(c);   /* draining: no group, nothing pending */
        } else {
            pmx__queue_count_error(c, r, "XPENDING (sweep)", ws->id);
        }
        goto done;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) goto done;
    /* A full page: the next sweep goes on after its last id. */
    if (r->elements >= SWEEP_COUNT) {
        const redisReply *last = r->element[r->elements - 1];
        if (pending_row_ok(last)) {
            snprintf(ws->sweep_from, sizeof ws->sweep_from, "(%.*s", (int)last->element[0]->len,
                     last->element[0]->str);
            ws->sweep_due = true;
        }
    }
    collect_unheld(q, r, r->elements);
    if (q->n == 0) goto done;

    bool give_back = pmx__queue_draining(c);
    const char **args = pmx_xcalloc(q->n + 4, sizeof *args);
    args[0] = ws->stream;
    args[1] = c->group;
    args[2] = c->name;
    args[3] = give_back ? "give" : "take";
    for (size_t i = 0; i < q->n; i++) args[4 + i] = q->ids[i];
    int rc = pmx_queue_script_run(c->rc, &sweep_script, 1, (int)q->n + 4, args, NULL,
                                  give_back ? give_back_cb : xclaim_cb, q);
    free(args);
    if (rc == 0) {
        /* The request (and our ws reference) moves on to the script. */
        if (!give_back) c->claiming += (unsigned)q->n;
        pmx__queue_cmd_begin(c);
        pmx__queue_cmd_end(c);
        return;
    }
    ws->sweep_due = true;
done:
    sweep_end(q);
}

void pmx__queue_sweep_mark(pmx__queue_c_t *c, pmx__queue_ws_t *ws)
{
    if (ws) {
        ws->sweep_due = true;
        return;
    }
    for (size_t i = 0; i < c->nws; i++) c->wsv[i]->sweep_due = true;
}

bool pmx__queue_upkeep_sweep(pmx__queue_c_t *c)
{
    if (c->read_busy || !c->up || pmx__queue_closed(c)) return c->sweeping > 0;
    char count[16];
    snprintf(count, sizeof count, "%u", SWEEP_COUNT);
    for (size_t i = 0; i < c->nws; i++) {
        pmx__queue_ws_t *ws = c->wsv[i];
        /* After a reclaim in flight: its XCLAIM could hand over what we list.
         * Draining, a group not yet made again after a reconnect is no reason to
         * wait: XPENDING answers NOGROUP if it is really gone. */
        if (!ws->sweep_due || (!ws->group_ready && !pmx__queue_draining(c)) ||
            ws->sweep_busy || ws->reclaim_busy)
            continue;
        claim_req_t *q = pmx_xcalloc(1, sizeof *q);
        q->c = c;
        q->ws = ws;
        q->sweep = true;
        const char *from = ws->sweep_from[0] ? ws->sweep_from : "-";
        const char *argv[] = { "XPENDING", ws->stream, c->group, from, "+", count, c->name };
        if (pmx_redis_conn_command_argv(c->rc, sweep_pending_cb, q, 7, argv, NULL) < 0) {
            free(q);
            break;
        }
        ws->sweep_due = false;
        ws->sweep_busy = true;
        c->sweeping++;
        pmx__queue_ws_ref(ws);
        pmx__queue_cmd_begin(c);
    }
    return c->sweeping > 0;
}

/* ------------------------------------------------------------- refresh */

typedef struct {
    pmx__queue_c_t  *c;
    pmx__queue_ws_t *ws;
} ws_req_t;

static void refresh_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    ws_req_t *q = priv;
    pmx__queue_c_t *c = q->c;
    pmx__queue_ws_t *ws = q->ws;
    redisReply *r = reply;
    ws->refresh_busy = false;
    if (!pmx__queue_closed(c) && r) {
        if (r->type == REDIS_REPLY_ERROR) {
            pmx__queue_count_error(c, r, "the idle refresh", ws->id);
        } else if (r->type == REDIS_REPLY_ARRAY) {
            for (size_t i = 0; i < r->elements; i++) {
                const redisReply *e = r->element[i];
                if (!e || e->type != REDIS_REPLY_STRING) continue;
                pmx_queue_job_t *job = pmx__queue_held_find(c, ws, e->str, e->len);
                if (!job || (job->flags & PMX_QUEUE_JOB_LOST)) continue;
                job->flags |= PMX_QUEUE_JOB_LOST;
                c->st.lost++;
                pmx_log_warn("queue: a job in flight was taken over by another consumer "
                             "ws=%s entry=%s", ws->id, job->entry_id);
            }
        }
    }
    free(q);
    ws_req_end(c, ws);
}

/* Sends one refresh for the due jobs of ws (at most REFRESH_MAX_IDS). */
static void refresh_ws(pmx__queue_c_t *c, pmx__queue_ws_t *ws, uint64_t now)
{
    const char **args = pmx_xcalloc(REFRESH_MAX_IDS + 3, sizeof *args);
    size_t n = 3;
    pmx__queue_jlist_t *lists[] = { &c->check, &c->ready, &c->inflight };
    for (size_t l = 0; l < 3; l++)
        for (pmx_queue_job_t *j = lists[l]->head; j && n < REFRESH_MAX_IDS + 3; j = j->p.next)
            if (j->p.ws == ws && now - j->p.touched >= c->o.refresh_after_ms &&
                !(j->flags & PMX_QUEUE_JOB_LOST)) {
                args[n++] = j->entry_id;
                j->p.touched = now;
            }
    if (n > 3) {
        args[0] = ws->stream;
        args[1] = c->group;
        args[2] = c->name;
        ws_req_t *q = pmx_xcalloc(1, sizeof *q);
        q->c = c;
        q->ws = ws;
        if (pmx_queue_script_run(c->rc, &refresh_script, 1, (int)n, args, NULL,
                                 refresh_cb, q) == 0) {
            ws->refresh_busy = true;
            pmx__queue_ws_ref(ws);
            pmx__queue_cmd_begin(c);
        } else {
            free(q);
        }
    }
    free(args);
}

void pmx__queue_upkeep_refresh(pmx__queue_c_t *c, uint64_t now, uint64_t *next)
{
    unsigned step = c->o.refresh_after_ms / 4 ? c->o.refresh_after_ms / 4 : 1;
    if (now < c->next_refresh_at) {
        lower(next, c->next_refresh_at);
        return;
    }
    c->next_refresh_at = now + step;
    lower(next, c->next_refresh_at);
    /* Each job's workspace once: walk the jobs, refresh a ws when first met. */
    pmx__queue_jlist_t *lists[] = { &c->check, &c->ready, &c->inflight };
    for (size_t l = 0; l < 3; l++)
        for (pmx_queue_job_t *j = lists[l]->head; j; j = j->p.next)
            if (now - j->p.touched >= c->o.refresh_after_ms && !j->p.ws->refresh_busy &&
                !(j->flags & PMX_QUEUE_JOB_LOST))
                refresh_ws(c, j->p.ws, now);
}

/* ------------------------------------------------------- retry movers */

static void move_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    ws_req_t *q = priv;
    pmx__queue_c_t *c = q->c;
    pmx__queue_ws_t *ws = q->ws;
    ws->mover_busy = false;
    if (!pmx__queue_closed(c) && reply) {
        uint64_t now = pmx__queue_now(c);
        pmx_queue_retry_moved_t m;
        char err[220];
        if (pmx_queue_retry_parse_move(reply, &m, err, sizeof err) < 0) {
            c->st.redis_errors++;
            pmx_log_warn("queue: retry mover failed ws=%s err=\"%s\"", ws->id, err);
            ws->retry_at = now + c->o.retry_idle_poll_ms;
        } else {
            c->st.retries_moved += (uint64_t)m.moved;
            if (m.bad > 0)
                pmx_log_warn("queue: malformed retry members moved to the dead stream ws=%s n=%lld",
                             ws->id, m.bad);
            if (m.moved + m.bad >= (long long)c->o.retry_batch) {
                ws->retry_at = now;
            } else if (m.left > 0) {
                long long wait = m.next_due - m.now;
                if (wait < 1) wait = 1;
                if (wait > (long long)c->o.retry_poll_ms) wait = c->o.retry_poll_ms;
                ws->retry_at = now + (uint64_t)wait;
            } else {
                ws->retry_at = now + c->o.retry_idle_poll_ms;
            }
        }
        pmx__queue_wake_at(c, ws->retry_at);
    }
    free(q);
    ws_req_end(c, ws);
}

void pmx__queue_upkeep_movers(pmx__queue_c_t *c, uint64_t now, uint64_t *next)
{
    for (size_t i = 0; i < c->nws; i++) {
        pmx__queue_ws_t *ws = c->wsv[i];
        if (ws->mover_busy) continue;
        if (ws->retry_at > now) {
            lower(next, ws->retry_at);
            continue;
        }
        ws_req_t *q = pmx_xcalloc(1, sizeof *q);
        q->c = c;
        q->ws = ws;
        if (pmx_queue_retry_move(c->rc, ws->retry, ws->stream, ws->dead, c->o.retry_batch,
                                 move_cb, q) < 0) {
            free(q);
            return;
        }
        ws->mover_busy = true;
        pmx__queue_ws_ref(ws);
        pmx__queue_cmd_begin(c);
    }
}

/* ------------------------------------------------------------ discovery */

void pmx__queue_upkeep_scan_reset(pmx__queue_c_t *c)
{
    for (size_t i = 0; i < c->nscan; i++) free(c->scan_ids[i]);
    free(c->scan_ids);
    c->scan_ids = NULL;
    c->nscan = c->capscan = 0;
}

static void drop_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    ws_req_t *q = priv;
    pmx__queue_c_t *c = q->c;
    pmx__queue_ws_t *ws = q->ws;
    redisReply *r = reply;
    ws->drop_busy = false;
    if (!pmx__queue_closed(c) && r && r->type == REDIS_REPLY_INTEGER && r->integer == 1 &&
        ws->listed && !ws->known) {
        pmx_log_info("queue: deleted the empty stream of unknown workspace ws=%s", ws->id);
        pmx__queue_ws_unlist(c, ws);
    }
    free(q);
    ws_req_end(c, ws);
}

static void scan_add(pmx__queue_c_t *c, const char *id)
{
    for (size_t i = 0; i < c->nscan; i++)
        if (strcmp(c->scan_ids[i], id) == 0) return;
    if (c->nscan == c->capscan) {
        c->capscan = c->capscan ? c->capscan * 2 : 16;
        c->scan_ids = pmx_xrealloc(c->scan_ids, c->capscan * sizeof *c->scan_ids);
    }
    c->scan_ids[c->nscan++] = pmx_xstrdup(id);
}

/* The scan is complete: list new unknown workspaces, forget vanished ones. */
static void scan_reconcile(pmx__queue_c_t *c)
{
    uint64_t now = pmx__queue_now(c);
    for (size_t i = 0; i < c->nws; i++) c->wsv[i]->seen = false;
    for (size_t i = 0; i < c->nscan; i++) {
        pmx__queue_ws_t *ws = pmx__queue_ws_find(c, c->scan_ids[i]);
        if (!ws) {
            ws = pmx__queue_ws_add(c, c->scan_ids[i], false);
            ws->last_data_at = now;
            pmx_log_info("queue: reading the stream of an unknown workspace ws=%s "
                         "(its jobs are rejected)", ws->id);
        }
        ws->seen = true;
    }
    pmx__queue_upkeep_scan_reset(c);
    for (size_t i = c->nws; i-- > 0;) {
        pmx__queue_ws_t *ws = c->wsv[i];
        if (ws->known) continue;
        if (!ws->seen) {
            pmx__queue_ws_unlist(c, ws);
            continue;
        }
        ws->unknown_scans++;
        if (ws->unknown_scans < 2 || ws->drop_busy ||
            now - ws->last_data_at < c->o.discover_interval_ms)
            continue;
        ws_req_t *q = pmx_xcalloc(1, sizeof *q);
        q->c = c;
        q->ws = ws;
        const char *args[] = { ws->stream };
        if (pmx_queue_script_run(c->rc, &drop_script, 1, 1, args, NULL, drop_cb, q) < 0) {
            free(q);
            continue;
        }
        ws->drop_busy = true;
        pmx__queue_ws_ref(ws);
        pmx__queue_cmd_begin(c);
    }
}

static int scan_send(pmx__queue_c_t *c, const char *cursor, size_t len);

static void scan_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    pmx__queue_c_t *c = priv;
    redisReply *r = reply;
    bool more = false;
    if (pmx__queue_closed(c) || !r) goto out;
    if (r->type == REDIS_REPLY_ERROR) {
        pmx__queue_count_error(c, r, "SCAN", NULL);
        goto out;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || !r->element[0] ||
        r->element[0]->type != REDIS_REPLY_STRING || !r->element[1] ||
        r->element[1]->type != REDIS_REPLY_ARRAY) {
        pmx_log_warn("queue: unexpected SCAN reply");
        goto out;
    }
    const redisReply *keys = r->element[1];
    for (size_t i = 0; i < keys->elements; i++) {
        const redisReply *k = keys->element[i];
        char id[PMX__QUEUE_WS_MAX + 1];
        if (!k || k->type != REDIS_REPLY_STRING ||
            pmx__queue_ws_of_key(c, k->str, k->len, id, sizeof id) < 0)
            continue;
        scan_add(c, id);
    }
    const redisReply *cur = r->element[0];
    if (cur->len == 1 && cur->str[0] == '0') {
        scan_reconcile(c);
        pmx__queue_wake_at(c, pmx__queue_now(c));   /* create groups, read */
    } else {
        more = scan_send(c, cur->str, cur->len) == 0;
    }
out:
    if (!more) {
        c->scan_busy = false;
        if (pmx__queue_closed(c) || !r) pmx__queue_upkeep_scan_reset(c);
    }
    pmx__queue_cmd_end(c);
}

static int scan_send(pmx__queue_c_t *c, const char *cursor, size_t len)
{
    const char *argv[] = { "SCAN", cursor, "MATCH", c->scan_pattern, "COUNT", SCAN_COUNT,
                           "TYPE", "stream" };
    size_t lens[] = { 4, len, 5, strlen(c->scan_pattern), 5, strlen(SCAN_COUNT), 4, 6 };
    if (pmx_redis_conn_command_argv(c->rc, scan_cb, c, 8, argv, lens) < 0) {
        pmx__queue_upkeep_scan_reset(c);
        return -1;
    }
    pmx__queue_cmd_begin(c);
    return 0;
}

void pmx__queue_upkeep_discover(pmx__queue_c_t *c, uint64_t now, uint64_t *next)
{
    if (!c->o.discover_interval_ms || !c->ws_given || c->scan_busy) return;
    if (now < c->next_discover_at) {
        lower(next, c->next_discover_at);
        return;
    }
    c->next_discover_at = now + c->o.discover_interval_ms;
    lower(next, c->next_discover_at);
    pmx__queue_upkeep_scan_reset(c);
    if (scan_send(c, "0", 1) == 0) c->scan_busy = true;
}
