/*
 * Finishing jobs: what the pipeline decided goes to Redis (see consumer.h).
 * - ack: XACK + XDEL, batched per stream (one pair of commands for every job
 *   of a stream finished in the same loop turn); deleting acked entries keeps
 *   a stream down to its backlog and its in-flight jobs, so XLEN is the
 *   backlog;
 * - ack of a POISON job: one script that acks it and, only if it was still
 *   pending, copies it to pmx:{ws}:dead with _reason, _entry, _deliveries;
 * - defer: queue/retry.h's script (XACK + ZADD + XDEL, atomically).
 * Each finished job is reported to opts.settled and freed when Redis answers.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "lib/mem.h"
#include "queue/consumer_int.h"
#include "queue/retry.h"
#include "queue/script.h"

#define ACK_BATCH_MAX 1000

/*
 * KEYS: stream, dead. ARGV: group, entry id, reason, deliveries, dead maxlen.
 * Acks a poison entry and, if it was still pending, copies it to the dead
 * stream (fields + _reason, _entry, _deliveries) and deletes it. A dead
 * stream that cannot be written (wrong type) does not keep the job pending:
 * its outcome is already recorded.
 */
static pmx_queue_script_t poison_script = PMX_QUEUE_SCRIPT("poison_ack",
    "local e = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])\n"
    "local n = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])\n"
    "if n == 1 then\n"
    "  local a = {KEYS[2], 'MAXLEN', '~', ARGV[5], '*'}\n"
    "  if e[1] and #e[1][2] <= 4000 then\n"
    "    for _, v in ipairs(e[1][2]) do a[#a + 1] = v end\n"
    "  elseif e[1] then\n"
    "    a[#a + 1] = '_dropped_items'; a[#a + 1] = tostring(#e[1][2])\n"
    "  end\n"
    "  a[#a + 1] = '_reason'; a[#a + 1] = ARGV[3]\n"
    "  a[#a + 1] = '_entry'; a[#a + 1] = ARGV[2]\n"
    "  a[#a + 1] = '_deliveries'; a[#a + 1] = ARGV[4]\n"
    "  redis.pcall('XADD', unpack(a))\n"
    "  redis.call('XDEL', KEYS[1], ARGV[2])\n"
    "end\n"
    "return n\n");

typedef struct {
    pmx__queue_c_t   *c;
    pmx_queue_done_t  how;
    pmx_queue_job_t **jobs;
    size_t            n;
} done_req_t;


static void settle(pmx__queue_c_t *c, pmx_queue_job_t *job, pmx_queue_done_t how, int status)
{
    if (status == 0) {
        if (how == PMX_QUEUE_DONE_DEFER) c->st.deferred++;
        else c->st.acked++;
    } else {
        c->st.not_confirmed++;
    }
    if (!pmx__queue_closed(c) && c->o.settled) c->o.settled(c, job, how, status, c->o.arg);
    pmx__queue_job_drop(job);
}

static void done_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    done_req_t *q = priv;
    pmx__queue_c_t *c = q->c;
    redisReply *r = reply;
    int status = 0;
    if (!r) {
        status = -1;
    } else if (r->type == REDIS_REPLY_ERROR) {
        pmx__queue_count_error(c, r, q->how == PMX_QUEUE_DONE_DEFER ? "a defer" : "an ack",
                               q->n ? q->jobs[0]->ws : NULL);
        status = -1;
    } else if (r->type == REDIS_REPLY_INTEGER && r->integer == 0 && q->n == 1) {
        pmx_log_debug("queue: entry was no longer pending ws=%s entry=%s",
                      q->jobs[0]->ws, q->jobs[0]->entry_id);
    }
    for (size_t i = 0; i < q->n; i++) settle(c, q->jobs[i], q->how, status);
    free(q->jobs);
    free(q);
    c->done_busy--;
    if (!pmx__queue_closed(c)) pmx__queue_pump(c);   /* a drain may be complete now */
    pmx__queue_cmd_end(c);
}

static done_req_t *done_req(pmx__queue_c_t *c, pmx_queue_done_t how, size_t n)
{
    done_req_t *q = pmx_xcalloc(1, sizeof *q);
    q->c = c;
    q->how = how;
    q->jobs = pmx_xcalloc(n, sizeof *q->jobs);
    return q;
}

/* A request that could not be sent: nothing was confirmed. */
static void done_unsent(done_req_t *q)
{
    for (size_t i = 0; i < q->n; i++) settle(q->c, q->jobs[i], q->how, -1);
    free(q->jobs);
    free(q);
}

static void send_poison_ack(pmx__queue_c_t *c, pmx_queue_job_t *job)
{
    done_req_t *q = done_req(c, PMX_QUEUE_DONE_ACK, 1);
    q->jobs[q->n++] = job;
    char deliveries[16], maxlen[16];
    /* Deliveries that ended without an outcome (this hand-over not counted). */
    snprintf(deliveries, sizeof deliveries, "%u", job->deliveries ? job->deliveries - 1 : 0);
    snprintf(maxlen, sizeof maxlen, "%d", PMX_QUEUE_DEAD_MAXLEN);
    const char *args[] = { job->p.ws->stream, job->p.ws->dead, c->group, job->entry_id,
                           "poison", deliveries, maxlen };
    if (pmx_queue_script_run(c->rc, &poison_script, 2, 7, args, NULL, done_cb, q) < 0) {
        done_unsent(q);
        return;
    }
    pmx__queue_cmd_begin(c);
    c->done_busy++;
}

static void send_defer(pmx__queue_c_t *c, pmx_queue_job_t *job)
{
    done_req_t *q = done_req(c, PMX_QUEUE_DONE_DEFER, 1);
    q->jobs[q->n++] = job;
    pmx__queue_ws_t *ws = job->p.ws;
    if (pmx_queue_retry_defer(c->rc, ws->stream, ws->retry, c->group, job->entry_id,
                              job->p.delay_ms, job->p.member.data, job->p.member.len,
                              done_cb, q) < 0) {
        done_unsent(q);
        return;
    }
    pmx__queue_cmd_begin(c);
    c->done_busy++;
    /* Run the mover when it is due (a little early is fine: it re-checks). */
    uint64_t due = pmx__queue_now(c) + job->p.delay_ms;
    if (ws->listed && ws->retry_at > due) ws->retry_at = due;
    pmx__queue_wake_at(c, due);
}

/* XACK + XDEL of up to ACK_BATCH_MAX done jobs of one stream. */
static void send_acks(pmx__queue_c_t *c, done_req_t *q)
{
    pmx__queue_ws_t *ws = q->jobs[0]->p.ws;
    const char **argv = pmx_xcalloc(q->n + 3, sizeof *argv);
    argv[0] = "XACK";
    argv[1] = ws->stream;
    argv[2] = c->group;
    for (size_t i = 0; i < q->n; i++) argv[3 + i] = q->jobs[i]->entry_id;
    if (pmx_redis_conn_command_argv(c->rc, done_cb, q, (int)q->n + 3, argv, NULL) < 0) {
        free(argv);
        done_unsent(q);
        return;
    }
    pmx__queue_cmd_begin(c);
    c->done_busy++;
    /* Delete what was acked, so the stream holds only the backlog. */
    argv[0] = "XDEL";
    argv[2] = NULL;
    for (size_t i = 0; i < q->n; i++) argv[2 + i] = q->jobs[i]->entry_id;
    pmx_redis_conn_command_argv(c->rc, NULL, NULL, (int)q->n + 2, argv, NULL);
    free(argv);
}

/* Sends every finished job's ack or defer (acks batched per stream). */
void pmx__queue_flush(pmx__queue_c_t *c)
{
    while (c->done.head) {
        pmx_queue_job_t *first = c->done.head;
        pmx__queue_jl_remove(&c->done, first);
        if (first->p.done == PMX_QUEUE_DONE_DEFER) {
            send_defer(c, first);
            continue;
        }
        if (first->kind == PMX_QUEUE_JOB_POISON) {
            send_poison_ack(c, first);
            continue;
        }
        done_req_t *q = done_req(c, PMX_QUEUE_DONE_ACK, ACK_BATCH_MAX);
        q->jobs[q->n++] = first;
        pmx_queue_job_t *j = c->done.head;
        while (j && q->n < ACK_BATCH_MAX) {
            pmx_queue_job_t *next = j->p.next;
            if (j->p.ws == first->p.ws && j->p.done == PMX_QUEUE_DONE_ACK &&
                j->kind != PMX_QUEUE_JOB_POISON) {
                pmx__queue_jl_remove(&c->done, j);
                q->jobs[q->n++] = j;
            }
            j = next;
        }
        send_acks(c, q);
    }
}

static void finish(pmx_queue_job_t *job, int how)
{
    pmx__queue_c_t *c = job->p.c;
    if (job->p.list != PMX__L_INFLIGHT) {
        pmx_log_error("queue: a job was finished twice, or was not handed over entry=%s",
                      job->entry_id);
        return;
    }
    pmx__queue_jl_remove(&c->inflight, job);
    if (how == 0 || pmx__queue_closed(c)) {   /* release, or too late to send */
        pmx__queue_job_drop(job);
        if (pmx__queue_closed(c)) pmx__queue_finalize_maybe(c);
        else pmx__queue_wake_at(c, pmx__queue_now(c));
        return;
    }
    job->p.done = how;
    pmx__queue_jl_push(&c->done, PMX__L_DONE, job);
    pmx__queue_wake_at(c, pmx__queue_now(c));
}

void pmx_queue_job_ack(pmx_queue_job_t *job)
{
    finish(job, PMX_QUEUE_DONE_ACK);
}

int pmx_queue_job_defer(pmx_queue_job_t *job, uint64_t delay_ms, const char *msg_id)
{
    if (job->kind != PMX_QUEUE_JOB_OK || job->p.list != PMX__L_INFLIGHT) return -1;
    pmx_buf_reset(&job->p.member);
    if (pmx_queue_jobcodec_encode(job->fields, job->nfields, msg_id, job->attempt + 1,
                                  job->first_ms, job->source, &job->p.member) < 0)
        return -1;
    job->p.delay_ms = delay_ms;
    finish(job, PMX_QUEUE_DONE_DEFER);
    return 0;
}

void pmx_queue_job_release(pmx_queue_job_t *job)
{
    finish(job, 0);
}
