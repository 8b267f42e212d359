/*
 * The delivery pipeline: one job from the stream to its recorded outcome;
 * see pipeline.h. One job_t per job in flight walks these steps, each a
 * callback on the worker's loop:
 *
 *   on_job        decode; a job the queue already marked bad is rejected
 *   lookup        retried (_msg) / redelivered jobs: what Postgres holds
 *   policy        workspace known and not suspended past its hold, From domain verified;
 *                 a rate limit or a suspension waits at the gate (workers/gate)
 *   relay         plan (workers/plan), build, sign, hand to the pool
 *   on_sent       per-recipient results of each delivery
 *   record        outcome rows (one batched statement for many jobs)
 *   on_recorded   ack, or defer to the retry schedule
 *
 * Postgres or Redis going away never loses a job: a job whose lookup or
 * outcome could not be written is held (the consumer keeps its idle time
 * fresh, so nobody reclaims it) and tried again every second; only a job
 * Postgres refuses outright is released to be redelivered, and after
 * max_deliveries it comes back as poison and is rejected.
 */
#include "workers/pipeline.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dkim/signer.h"
#include "inbound/classify.h"
#include "lib/encode.h"
#include "lib/job.h"
#include "lib/verp.h"
#include "lib/log.h"
#include "lib/mem.h"
#include "lib/mime.h"
#include "queue/consumer.h"
#include "smtp/pool.h"
#include "workers/sender.h"
#include "sql/outcomes.h"
#include "workers/metrics.h"
#include "workers/plan.h"
#include "workers/txn.h"
#include "workers/gate.h"

#define RESUBMIT_MS      1000
#define PAUSE_RECHECK_MS 60000  /* a paused workspace's gate asks again this often */
#define JOBS_PER_SESSION 4      /* consumer capacity = this × connections_per_worker
                                   (the consumer also bounds their bytes, docs/queue.md) */
#define RECORD_ROOM      2      /* jobs only waiting for their outcome: this × capacity */
#define DETAIL_MAX       512

typedef struct job job_t;

struct pmx_pipeline {
    pmx_worker_t         *w;
    uv_loop_t            *loop;
    const pmx_config_t   *cfg;
    pmx_settings_t       *settings;
    pmx_supp_cache_t     *suppress;
    pmx_fb_rules_t       *rules;        /* bounce classes of the relay's failures */
    pmx_queue_consumer_t *consumer;
    pmx_outcomes_t       *outcomes;
    pmx_sender_t         *pool;        /* the relay, or direct delivery (workers/sender.h) */
    pmx_dkim_signer_t    *signer;
    pmx_ratelimit_t      *rl;
    pmx_gate_t       *throttle;     /* jobs waiting for their workspace's rate limit */
    unsigned              capacity;     /* jobs in flight at most, besides those waiting */
    unsigned              recording;    /* jobs in stage ST_RECORD (the record room) */
    uv_timer_t            resubmit;    /* retries lookups/outcomes Postgres did not take */
    job_t                *head;        /* jobs in flight */
    bool                  draining, freeing, pool_closed, pool_closing;
    int                   refs;        /* the timer and the pool: freed when both closed */
    void                (*done)(void *arg);
    void                 *done_arg;
    pmx_pipeline_stats_t  stats;
};

/* What will be recorded for one original recipient. */
typedef struct {
    const char *status;
    const char *cls;         /* the failure's class (static), or NULL */
    char       *response;
    char       *detail;
    int64_t     next_ms;
    int         attempts;
} result_t;

typedef enum { ST_LOOKUP, ST_THROTTLE, ST_RELAY, ST_RECORD } stage_t;

struct job {
    pmx_pipeline_t          *p;
    pmx_queue_job_t         *qj;
    job_t                   *prev, *next;
    stage_t                  stage;
    bool                     waiting;       /* for the resubmit timer */
    pmx_outcomes_req_t      *req;

    pmx_job_t                dj;
    bool                     decoded;
    bool                     partial;       /* dj holds only the recipient lists */
    const pmx_settings_ws_t *ws;            /* referenced while held */
    char                     msg_id[PMX_QUEUE_MSG_ID_LEN + 1];
    bool                     known;         /* Postgres holds the message row */
    char                    *header_from;
    char                    *subject;
    char                    *reject;        /* the rejection reason, when rejected */

    pmx_plan_t               plan;
    bool                     planned;
    pmx_buf_t                data;          /* what every transaction sends after its head */
    pmx_txns_t               tx;            /* the SMTP transactions (workers/txn.h) */
    int                      sends;         /* transactions still at the relay */
    result_t                *res;           /* per plan recipient */
    uint64_t                 defer_ms;      /* > 0: some recipient is deferred */
};

static const char *const suppressed_detail = "test mode: not a tester and no catch-all";

/* ---- small helpers ------------------------------------------------------------------------ */

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A field's value as a C string, or NULL (for rows of jobs that did not decode). */
static const char *field(const pmx_queue_job_t *qj, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < qj->nfields; i++)
        if (qj->fields[i].name_len == n && memcmp(qj->fields[i].name, name, n) == 0)
            return qj->fields[i].value;
    return NULL;
}

/* SMTP replies are multi-line: one line for the log. */
static const char *one_line(const char *s, char *buf, size_t cap)
{
    size_t k = 0;
    for (; s && *s && k + 4 < cap; s++) {
        if (*s == '\n') { buf[k++] = ' '; buf[k++] = '|'; buf[k++] = ' '; }
        else if (*s == '"') buf[k++] = '\'';
        else if ((unsigned char)*s < 0x20) buf[k++] = ' ';
        else buf[k++] = *s;
    }
    buf[k] = '\0';
    return buf;
}

/* retry_base × 2^(attempt-1), capped at retry_max_interval. */
static uint64_t retry_delay(const pmx_config_t *cfg, uint32_t attempt)
{
    uint64_t d = cfg->retry_base_ms;
    for (uint32_t i = 1; i < attempt && d < cfg->retry_max_interval_ms; i++) d *= 2;
    return d < cfg->retry_max_interval_ms ? d : cfg->retry_max_interval_ms;
}

/* ---- job lifetime ------------------------------------------------------------------------- */

static void update_capacity(pmx_pipeline_t *p);

static void job_free(job_t *j)
{
    pmx_pipeline_t *p = j->p;
    if (j->prev) j->prev->next = j->next;
    else p->head = j->next;
    if (j->next) j->next->prev = j->prev;
    p->stats.in_flight--;
    if (j->stage == ST_RECORD) {   /* the last stage: entered once, left only here */
        p->recording--;
        if (!p->draining && !p->freeing) update_capacity(p);
    }
    if (j->decoded || j->partial) pmx_job_free(&j->dj);
    if (j->ws) pmx_settings_ws_unref(j->ws);
    pmx_buf_free(&j->data);
    pmx_txns_free(&j->tx);
    if (j->res) {
        for (size_t i = 0; i < j->plan.nr; i++) {
            free(j->res[i].response);
            free(j->res[i].detail);
        }
        free(j->res);
    }
    if (j->planned) pmx_plan_free(&j->plan);
    free(j->header_from);
    free(j->subject);
    free(j->reject);
    free(j);
}

/* Gives the job back to Redis without an outcome (redelivered later). */
static void job_release(job_t *j)
{
    pmx_queue_job_release(j->qj);
    job_free(j);
}

static void record(job_t *j);
static void lookup(job_t *j);

/* Postgres did not answer: hold the job and try again on the next tick. */
static void job_wait(job_t *j)
{
    j->waiting = true;
}

static void resubmit_cb(uv_timer_t *t)
{
    pmx_pipeline_t *p = t->data;
    if (p->pool) {
        pmx_smtp_pool_stats_t ps;
        pmx_sender_stats(p->pool, &ps);
        pmx_metrics_sessions_set(PMX_METRICS_OUTBOUND, ps.sessions);
        /* Every route: direct delivery also serves workspaces with `--route mx`
         * under a relay default (workers/sender.h). */
        if (!p->draining) update_capacity(p);
    }
    for (job_t *j = p->head, *next; j; j = next) {
        next = j->next;
        if (!j->waiting) continue;
        j->waiting = false;
        if (j->stage == ST_LOOKUP) lookup(j);
        else if (j->stage == ST_RECORD) record(j);
    }
}

/* ---- rejection ---------------------------------------------------------------------------- */

/* A job that did not decode still gets its recipients rows when its to, cc
 * and bcc fields parse: whoever looks a recipient up sees why it was not sent. */
static void parse_recipients(job_t *j)
{
    static const char *const names[3] = { "to", "cc", "bcc" };
    pmx_addr_list_t *lists[3] = { &j->dj.to, &j->dj.cc, &j->dj.bcc };
    char err[256];
    memset(&j->dj, 0, sizeof j->dj);
    size_t total = 0;
    for (int i = 0; i < 3; i++) {
        const char *v = field(j->qj, names[i]);
        if (!v) continue;
        if (pmx_addr_list_parse(v, strlen(v), lists[i], err, sizeof err) < 0) goto none;
        total += lists[i]->n;
    }
    if (total == 0 || total > PMX_JOB_MAX_RECIPIENTS) goto none;
    j->partial = true;
    return;
none:
    for (int i = 0; i < 3; i++) pmx_addr_list_free(lists[i]);
    memset(&j->dj, 0, sizeof j->dj);
}

/* Every envelope recipient is rejected with reason (docs/data.md: never attempted). */
static void reject(job_t *j, const char *reason)
{
    pmx_pipeline_t *p = j->p;
    j->reject = pmx_xstrdup(reason);
    pmx_log_info("job rejected ws=%s entry=%s reason=\"%s\"", j->qj->ws, j->qj->entry_id, reason);
    if (!j->decoded && !j->planned) parse_recipients(j);
    if ((j->decoded || j->partial) && !j->planned) {
        pmx_plan_policy_t none = { 0 };
        pmx_plan_make(&j->dj, &none, NULL, &j->plan);
        j->planned = true;
    }
    size_t n = j->planned ? j->plan.nr : 0;
    if (j->res) {
        for (size_t i = 0; i < n; i++) {
            free(j->res[i].response);
            free(j->res[i].detail);
        }
        free(j->res);
    }
    j->res = pmx_xcalloc(n ? n : 1, sizeof *j->res);
    for (size_t i = 0; i < n; i++) {
        j->res[i].status = "rejected";
        j->res[i].detail = pmx_xstrdup(reason);
        j->res[i].attempts = j->plan.r[i].attempts;
    }
    p->stats.rejected += n ? n : 1;
    record(j);
}

/* ---- recording ---------------------------------------------------------------------------- */

/* The metrics follow the recipients rows: counted once committed. */
static void count_recorded(const job_t *j)
{
    size_t n = j->planned ? j->plan.nr : 0;
    for (size_t i = 0; i < n; i++) {
        const result_t *r = &j->res[i];
        if (!r->status) continue;
        pmx_metrics_count_recipients(j->qj->ws, r->status, 1);
        if (strcmp(r->status, "suppressed") == 0)
            pmx_metrics_count_suppressed(j->qj->ws, j->plan.r[i].suppressed
                                                        ? j->plan.r[i].suppressed : "test_mode");
        else if (strcmp(r->status, "bounced") == 0)
            pmx_metrics_count_bounce(j->qj->ws, r->cls);
    }
}

static void on_recorded(const pmx_outcome_result_t *r, void *arg)
{
    job_t *j = arg;
    pmx_pipeline_t *p = j->p;
    j->req = NULL;
    if (r->status == -ECANCELED || p->freeing) {
        job_release(j);
        return;
    }
    if (r->status == -EINVAL) {
        /* Postgres refuses this outcome: redelivered, and in the end rejected as poison. */
        pmx_log_error("outcome refused ws=%s entry=%s err=\"%s\"", j->qj->ws, j->qj->entry_id,
                      r->error ? r->error : "");
        job_release(j);
        return;
    }
    if (r->status < 0) {
        job_wait(j);
        return;
    }
    count_recorded(j);
    if (j->defer_ms && j->qj->kind == PMX_QUEUE_JOB_OK &&
        pmx_queue_job_defer(j->qj, j->defer_ms, r->message_id) == 0) {
        job_free(j);
        return;
    }
    pmx_queue_job_ack(j->qj);
    job_free(j);
}

/* Writes the job's outcome: the message row (unless Postgres holds it),
 * one recipients row and one event per recipient that has a result. */
static void record(job_t *j)
{
    pmx_pipeline_t *p = j->p;
    pmx_queue_job_t *qj = j->qj;
    if (j->stage != ST_RECORD) {   /* not when Postgres is asked again */
        j->stage = ST_RECORD;
        p->recording++;
        if (!p->draining && !p->freeing) update_capacity(p);
    }
    size_t n = j->planned ? j->plan.nr : 0, nr = 0, ne = 0;
    pmx_outcome_rcpt_t *rc = pmx_xcalloc(n ? n : 1, sizeof *rc);
    pmx_outcome_event_t *ev = pmx_xcalloc(n ? n : 1, sizeof *ev);
    char type[n ? n : 1][24];
    for (size_t i = 0; i < n; i++) {
        result_t *r = &j->res[i];
        if (!r->status) continue;          /* SKIP: already final */
        /* idx: the plan keeps the job's order (to, cc, bcc, each address once) on
         * every attempt, SKIPped recipients included, so i is stable. */
        rc[nr++] = (pmx_outcome_rcpt_t){ .address = j->plan.r[i].addr, .status = r->status,
                                         .attempts = r->attempts, .last_response = r->response,
                                         .next_attempt_ms = r->next_ms, .bounce_class = r->cls,
                                         .idx = (int)i };
        snprintf(type[ne], sizeof type[ne], "message.%s", r->status);
        ev[ne] = (pmx_outcome_event_t){ .type = type[ne], .recipient = j->plan.r[i].addr,
                                        .detail = r->detail ? r->detail : r->response };
        ne++;
    }
    if (n == 0 && j->reject) {
        /* A job that did not decode: one event about the whole message. */
        ev[ne++] = (pmx_outcome_event_t){ .type = "message.rejected", .detail = j->reject };
    }
    if (nr == 0 && ne == 0) {
        /* Nothing new (every recipient was already final): just acknowledge. */
        free(rc);
        free(ev);
        pmx_queue_job_ack(qj);
        job_free(j);
        return;
    }
    if (!j->msg_id[0]) pmx_random_id("msg_", j->msg_id, sizeof j->msg_id);
    const char *from = j->decoded ? j->dj.from.addr : field(qj, "from");
    pmx_outcome_t item = {
        .update_only = j->known && (qj->flags & PMX_QUEUE_JOB_RETRIED),
        .message_id = j->msg_id,
        .workspace_id = qj->ws,
        .job_id = qj->entry_id,
        .client_id = j->decoded ? j->dj.client_id : qj->client_id,
        .mail_from = from ? from : "",
        .header_from = j->header_from ? j->header_from : (j->decoded ? j->dj.from.addr : NULL),
        .subject = j->subject ? j->subject : (j->decoded ? j->dj.subject : NULL),
        .metadata = j->decoded ? j->dj.metadata : NULL,
        .source = qj->source ? qj->source : "redis",
        .category = j->decoded ? j->dj.category : NULL,
        .rcpts = rc, .nrcpts = nr, .events = ev, .nevents = ne,
    };
    j->req = pmx_outcomes_submit(p->outcomes, &item, on_recorded, j);
    free(rc);
    free(ev);
    if (!j->req) {
        /* The writer is closing (or the item is unusable): leave it to redelivery. */
        job_release(j);
    }
}

/* ---- relay results ------------------------------------------------------------------------ */

static void log_attempt(const job_t *j, const char *rcpt, const result_t *r)
{
    char line[600];
    pmx_log_info("delivery ws=%s msg=%s rcpt=%s status=%s attempt=%d reply=\"%s\"", j->qj->ws,
                 j->msg_id, rcpt, r->status, r->attempts,
                 one_line(r->response ? r->response : r->detail, line, sizeof line));
}

/* The class of a failed attempt from the reply as the relay client kept it
 * ("550 5.1.1 ..." or a local reason); the classifier finds an enhanced
 * status code in the text itself. */
static const char *classify(const pmx_pipeline_t *p, const char *response)
{
    const char *t = response ? response : "";
    int code = 0;
    if (t[0] >= '2' && t[0] <= '5' && t[1] >= '0' && t[1] <= '9' && t[2] >= '0' && t[2] <= '9')
        code = (t[0] - '0') * 100 + (t[1] - '0') * 10 + (t[2] - '0');
    return pmx_fb_class_name(pmx_fb_classify(p->rules, code, NULL, t, strlen(t)));
}

/* Every delivery has answered: turn the relay's results into recipient results. */
static void results_ready(job_t *j)
{
    pmx_pipeline_t *p = j->p;
    const pmx_config_t *cfg = p->cfg;
    int64_t now = wall_ms();
    int64_t deadline = (int64_t)j->qj->first_ms + (int64_t)cfg->max_queue_lifetime_ms;
    uint64_t delay = retry_delay(cfg, j->qj->attempt);
    if (now + (int64_t)delay > deadline && deadline > now) delay = (uint64_t)(deadline - now);
    if (delay < 1000) delay = 1000;
    uint64_t sent = 0;

    for (size_t i = 0; i < j->plan.nr; i++) {
        const pmx_plan_rcpt_t *pr = &j->plan.r[i];
        result_t *r = &j->res[i];
        if (pr->action == PMX_PLAN_SKIP) continue;
        if (pr->action == PMX_PLAN_SUPPRESS) {
            r->status = "suppressed";
            if (pr->suppressed) {
                char buf[DETAIL_MAX];
                snprintf(buf, sizeof buf, "suppressed: %s", pr->suppressed);
                r->response = pmx_xstrdup(buf);
            } else {
                r->detail = pmx_xstrdup(suppressed_detail);
            }
            p->stats.suppressed++;
            log_attempt(j, pr->addr, r);
            continue;
        }
        const pmx_txn_t *t = &j->tx.v[j->tx.of[i]];
        size_t slot = j->tx.slot[i];
        pmx_smtp_status_t st = t->status[slot];
        r->response = pmx_xstrdup(t->response[slot] ? t->response[slot] : "");
        r->attempts = pr->attempts + 1;
        if (st == PMX_SMTP_SENT) {
            r->status = "sent";
            sent++;
            p->stats.sent++;
        } else if (st == PMX_SMTP_PERMFAIL) {
            r->status = "bounced";
            r->cls = classify(p, r->response);
            p->stats.bounced++;
        } else if (now >= deadline) {
            r->status = "bounced";
            r->cls = pmx_fb_class_name(PMX_FB_CLASS_EXPIRED);
            r->detail = pmx_xstrdup("expired");
            p->stats.bounced++;
        } else {
            r->status = "deferred";
            r->cls = classify(p, r->response);
            r->next_ms = now + (int64_t)delay;
            j->defer_ms = delay;
            p->stats.deferred++;
        }
        if (pr->action == PMX_PLAN_REDIRECT) {
            char buf[DETAIL_MAX];
            snprintf(buf, sizeof buf, "redirected to %s%s%s", j->plan.d[1].rcpts[0],
                     r->detail ? ": " : "", r->detail ? r->detail : "");
            free(r->detail);
            r->detail = pmx_xstrdup(buf);
        }
        log_attempt(j, pr->addr, r);
    }
    if (sent) pmx_worker_count_sent(p->w, sent);
    record(j);
}

static void on_sent(void *arg, const pmx_smtp_result_t *res)
{
    pmx_txn_t *t = arg;
    job_t *j = t->owner;
    for (size_t k = 0; k < t->n; k++) {
        const pmx_smtp_outcome_t *o = k < res->nrcpts ? &res->rcpts[k] : &res->message;
        t->status[k] = o->status;
        t->response[k] = pmx_xstrdup(o->response ? o->response : "");
    }
    if (--j->sends > 0) return;
    pmx_buf_free(&j->data);   /* every transaction is answered: the signed copy is not needed */
    if (j->p->freeing) {
        job_release(j);
        return;
    }
    results_ready(j);
}

/* Every recipient of transaction t gets status st with response (no relay involved). */
static void txn_fail(pmx_txn_t *t, pmx_smtp_status_t st, const char *response)
{
    for (size_t k = 0; k < t->n; k++) {
        free(t->response[k]);
        t->response[k] = pmx_xstrdup(response);
        t->status[k] = st;
    }
}

static void txns_fail(job_t *j, pmx_smtp_status_t st, const char *response)
{
    for (size_t k = 0; k < j->tx.n; k++) txn_fail(&j->tx.v[k], st, response);
}

/* ---- build, sign, relay ------------------------------------------------------------------- */

/* Whether the header of msg carries raw 8-bit bytes (RFC 6532: needs SMTPUTF8). */
static bool header_8bit(const char *msg, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)msg[i] >= 0x80) return true;
        if (msg[i] == '\n' && i + 2 < n && msg[i + 1] == '\r' && msg[i + 2] == '\n') return false;
    }
    return false;
}

/*
 * Builds the message into m, once for every transaction (what differs per
 * transaction is in its head: workers/txn.h). Returns 0; or -1 with a reason
 * in err (the job is then rejected: the same job would fail the same way
 * every time).
 */
static int build(job_t *j, pmx_buf_t *m, char *err, size_t errlen)
{
    /* Raw messages: Bcc would reveal the blind recipients to everyone (Postfix's
     * cleanup drops it too); X-Workspace-Id only named the workspace for SMTP
     * submission; X-Postmux-Ref and, with unsubscribe, List-Unsubscribe(-Post)
     * are postmux's to write (docs/delivery.md). */
    static const char *const drop[] = { "Bcc", "X-Workspace-Id", "X-Postmux-Ref",
                                        "List-Unsubscribe", "List-Unsubscribe-Post" };
    pmx_mime_opts_t opts = { .msgid = j->msg_id, .date = time(NULL), .drop = drop,
                             .ndrop = j->dj.unsubscribe ? 5 : 3 };
    return j->dj.raw ? pmx_mime_prepare_raw(j->dj.raw, j->dj.raw_len, &opts, m, err, errlen)
                     : pmx_mime_build(&j->dj, &opts, m, err, errlen);
}

/* The domain whose keys sign the message, checked against the workspace. */
static int signing_domain(job_t *j, const char *msg, size_t n,
                          const pmx_settings_domain_t **dom, char *err, size_t errlen)
{
    const char *domain = pmx_addr_domain(&j->dj.from);
    if (j->dj.raw) {
        pmx_addr_t hf;
        char why[256];
        if (pmx_mime_header_from(msg, n, &hf, why, sizeof why) < 0) {
            snprintf(err, errlen, "raw: %s", why);
            return -1;
        }
        free(j->header_from);
        j->header_from = pmx_xstrdup(hf.addr);
        pmx_addr_free(&hf);
        domain = strrchr(j->header_from, '@') + 1;
        pmx_buf_t subj = PMX_BUF_INIT;
        if (!j->subject && pmx_mime_header_get(msg, n, "Subject", &subj, why, sizeof why) > 0)
            j->subject = pmx_buf_detach(&subj);
        pmx_buf_free(&subj);
    }
    pmx_settings_match_t m = pmx_settings_domain_for(j->ws, domain, dom);
    if (m != PMX_SETTINGS_DOMAIN_OK && m != PMX_SETTINGS_DOMAIN_NO_KEY) {
        snprintf(err, errlen, "domain_not_verified: %s", domain);
        return -1;
    }
    return 0;
}

/* Hands transaction t to the relay; a transaction the relay client refuses
 * at once gets its outcome here. */
static void send_txn(job_t *j, pmx_txn_t *t, unsigned flags)
{
    pmx_smtp_envelope_t env = { .mail_from = t->mail_from ? t->mail_from : j->dj.from.addr,
                                .rcpts = t->rcpts, .nrcpts = t->n, .flags = flags,
                                .head = t->head.data, .head_len = t->head.len };
    t->owner = j;
    char why[512];
    int rc = pmx_sender_send(j->p->pool, j->ws, &env, j->data.data, j->data.len, on_sent, t, why,
                             sizeof why);
    if (rc == 0) {
        j->sends++;
        return;
    }
    if (rc == UV_EAGAIN) {
        /* Its pool or route cannot be used from here now (workers/sender.h). */
        txn_fail(t, PMX_SMTP_TEMPFAIL, why);
        return;
    }
    /* UV_EINVAL is about the sender, which every recipient shares (a
     * recipient the relay client cannot send fails alone, in on_sent). */
    txn_fail(t, rc == UV_EINVAL ? PMX_SMTP_PERMFAIL : PMX_SMTP_TEMPFAIL,
             rc == UV_EINVAL ? "553 5.1.7 envelope sender refused by postmux (not an "
                               "RFC 5321 mailbox)"
                             : "451 4.3.0 relay client shutting down");
}

/* Builds and signs the message, lays out its transactions (workers/txn.h) and
 * hands them to the relay. Returns 0; or -1 with the reason the message cannot
 * be built (the job is to be rejected). */
static int send_all(job_t *j, char *err, size_t errlen)
{
    pmx_pipeline_t *p = j->p;
    const pmx_config_t *cfg = p->cfg;
    pmx_buf_t m = PMX_BUF_INIT;
    const pmx_settings_domain_t *dom = NULL;
    if (build(j, &m, err, errlen) < 0 || signing_domain(j, m.data, m.len, &dom, err, errlen) < 0) {
        pmx_buf_free(&m);
        return -1;
    }
    pmx_txn_opts_t o = {
        .msg_id = j->msg_id, .ref_key = pmx_worker_ref_key(p->w),
        .verp = cfg->inbound_hostname[0] != '\0', .return_domain = dom->return_path,
        .unsubscribe = j->dj.unsubscribe, .public_url = cfg->http_public_url,
        .mailto = cfg->inbound_listen[0] != '\0',
        .signer = p->signer, .keys = dom->keys, .nkeys = dom->nkeys,
    };
    pmx_txns_layout(&j->tx, &j->plan, pmx_txn_per_recipient(&o));
    char why[512], resp[600];
    if (dom->nkeys == 0) {
        /* Verified, but no key can sign right now: never send unsigned; retry. */
        snprintf(resp, sizeof resp, "451 4.7.0 no usable DKIM key for %s", dom->name);
        txns_fail(j, PMX_SMTP_TEMPFAIL, resp);
        pmx_buf_free(&m);
        return 0;
    }
    uint64_t t0 = uv_hrtime();
    int ok = pmx_txns_prepare(&j->tx, &j->plan, &o, m.data, m.len, &j->data, why, sizeof why);
    pmx_metrics_observe_dkim((double)(uv_hrtime() - t0) / 1e9);
    if (ok < 0) {
        pmx_log_error("dkim signing failed ws=%s msg=%s err=\"%s\"", j->qj->ws, j->msg_id, why);
        snprintf(resp, sizeof resp, "451 4.7.0 DKIM signing failed: %s", why);
        txns_fail(j, PMX_SMTP_TEMPFAIL, resp);
        pmx_buf_free(&m);
        return 0;
    }
    pmx_buf_free(&m);
    unsigned flags = header_8bit(j->data.data, j->data.len) ? PMX_SMTP_ENV_SMTPUTF8 : 0;
    for (size_t k = 0; k < j->tx.n; k++) send_txn(j, &j->tx.v[k], flags);
    return 0;
}

/* Builds, signs and relays every transaction of the plan. */
static void relay(job_t *j)
{
    if (j->qj->flags & PMX_QUEUE_JOB_LOST) {
        /* Another consumer took it over while it waited here (a stall longer
         * than reclaim_idle): it is theirs now, and sending it too would send
         * it twice. */
        pmx_log_warn("job taken over by another consumer before it was sent, left to it "
                     "ws=%s entry=%s", j->qj->ws, j->qj->entry_id);
        job_release(j);
        return;
    }
    j->stage = ST_RELAY;
    char err[512];
    if (j->plan.d[0].n + j->plan.d[1].n > 0 && send_all(j, err, sizeof err) < 0) {
        /* Nothing went out: the job is rejected, naming the field. */
        reject(j, err);
        return;
    }
    if (j->sends == 0) results_ready(j);
}

/* ---- rate limits (workers/gate.h) ----------------------------------------------------- */

static void update_capacity(pmx_pipeline_t *p)
{
    /* Jobs waiting at a gate do not take the room of other workspaces' jobs;
     * a paused workspace is not read, so at most one read's worth waits. */
    size_t waiting = p->throttle ? pmx_gate_waiting(p->throttle) : 0;
    /* Direct delivery: jobs queued behind a full or slow site give their room
     * to other sites' jobs, up to 4 × capacity (workers/sender.h). */
    if (p->pool) waiting += pmx_sender_parked(p->pool, 4 * (size_t)p->capacity);
    /* A job whose relaying is over holds no session and no signed copy: while
     * its outcome commits, a new job may start, for up to twice the capacity of
     * such jobs (the record room: a burst's outcomes wait a flush window of up to
     * 10 ms and then a statement, docs/delivery.md "The way of one job"). */
    size_t room = RECORD_ROOM * (size_t)p->capacity;
    waiting += p->recording < room ? p->recording : room;
    pmx_queue_consumer_set_capacity(p->consumer, p->capacity + (unsigned)waiting);
}

/*
 * How much longer a suspended workspace's jobs are held (docs/queue.md "Suspension"):
 * [delivery] suspend_hold from suspended_at. How long it had been suspended
 * comes from Postgres's clock at the last load; the time since is the loop's,
 * so no host's wall clock (or its steps) matters. 0 = not held any more (or
 * suspended_at unknown): reject.
 */
static uint64_t suspension_hold_ms(const pmx_pipeline_t *p, const pmx_settings_ws_t *ws)
{
    if (!ws->suspended || !ws->suspended_known) return 0;
    uint64_t now = uv_now(p->loop);
    uint64_t elapsed = (uint64_t)ws->suspended_for_ms + (now > ws->loaded_ms ? now - ws->loaded_ms : 0);
    return p->cfg->suspend_hold_ms > elapsed ? p->cfg->suspend_hold_ms - elapsed : 0;
}

static bool throttle_limits(const char *ws_id, pmx_gate_limits_t *out, void *arg)
{
    pmx_pipeline_t *p = arg;
    const pmx_settings_ws_t *ws = pmx_settings_lookup(p->settings, ws_id);
    if (!ws) return false;
    *out = (pmx_gate_limits_t){ ws->rate_per_second, ws->burst, ws->daily_quota,
                                    ws->suspended, suspension_hold_ms(p, ws) };
    if (ws->paused && !ws->suspended) {
        /* Paused by the reputation guard: shut until --resume (which wakes the
         * gate at once), never rejected; looked at again every PAUSE_RECHECK_MS. */
        out->suspended = true;
        out->hold_ms = PAUSE_RECHECK_MS;
    }
    return true;
}

static void throttle_verdict(void *item, pmx_gate_verdict_t v, void *arg)
{
    job_t *j = item;
    pmx_pipeline_t *p = arg;
    if (v == PMX_THROTTLE_DROP || p->freeing) {
        job_release(j);     /* draining: back to the stream, redelivered later */
    } else if (v == PMX_THROTTLE_SUSPENDED) {
        reject(j, "workspace_suspended");
    } else if (v == PMX_THROTTLE_GONE) {
        reject(j, "unknown_workspace");
    } else if (v == PMX_THROTTLE_NEVER) {
        char why[200];
        snprintf(why, sizeof why, "daily_quota: %zu recipients is more than the daily quota",
                 j->plan.d[0].n + j->plan.d[1].n);
        reject(j, why);
    } else {
        relay(j);
    }
    update_capacity(p);
}

static void throttle_pause(const char *ws, bool paused, void *arg)
{
    pmx_pipeline_t *p = arg;
    /* Until the gate empties, however long that is (a hold, a quota day). */
    pmx_queue_consumer_pause_until(p->consumer, ws, paused ? UINT64_MAX : 0);
}

/* The plan's question to the suppression list: why this job may not go to addr. */
static const char *suppressed(const char *addr, void *arg)
{
    job_t *j = arg;
    return pmx_supp_reason_name(pmx_supp_cache_check(j->p->suppress, j->qj->ws, j->dj.category,
                                                     addr));
}

/* Plans who gets what, then waits for the workspace's rate limit if it has one,
 * for the end of its suspension, or for a --resume when the guard paused it. */
static void plan(job_t *j, const pmx_outcome_lookup_t *known)
{
    pmx_pipeline_t *p = j->p;
    const pmx_settings_ws_t *ws = j->ws;
    pmx_plan_policy_t pol = { .test_mode = ws->test_mode, .catch_all = ws->catch_all,
                              .testers = ws->testers, .ntesters = ws->ntesters,
                              .suppressed = suppressed, .suppressed_arg = j };
    if (j->planned) pmx_plan_free(&j->plan);
    pmx_plan_make(&j->dj, &pol, known, &j->plan);
    j->planned = true;
    j->res = pmx_xcalloc(j->plan.nr ? j->plan.nr : 1, sizeof *j->res);
    if (!j->msg_id[0]) pmx_random_id("msg_", j->msg_id, sizeof j->msg_id);

    /* Counted in envelope recipients actually relayed (a redirected copy is one). */
    size_t n = j->plan.d[0].n + j->plan.d[1].n;
    if (!ws->suspended && !ws->paused &&
        (n == 0 || (ws->rate_per_second <= 0 && ws->daily_quota <= 0))) {
        relay(j);
        return;
    }
    if (p->draining) {
        job_release(j);
        return;
    }
    j->stage = ST_THROTTLE;
    pmx_gate_submit(p->throttle, ws->id, (unsigned)n, j);
    update_capacity(p);
}

/* ---- policy ------------------------------------------------------------------------------- */

static void policy(job_t *j, const pmx_outcome_lookup_t *known)
{
    pmx_pipeline_t *p = j->p;
    const pmx_settings_ws_t *ws = pmx_settings_lookup(p->settings, j->qj->ws);
    if (!ws) {
        reject(j, "unknown_workspace");
        return;
    }
    if (ws->suspended && suspension_hold_ms(p, ws) == 0) {
        reject(j, "workspace_suspended");
        return;
    }
    pmx_settings_ws_ref(ws);
    j->ws = ws;
    char err[300];
    const char *domain = pmx_addr_domain(&j->dj.from);
    pmx_settings_match_t m = pmx_settings_domain_for(ws, domain, NULL);
    if (m != PMX_SETTINGS_DOMAIN_OK && m != PMX_SETTINGS_DOMAIN_NO_KEY) {
        snprintf(err, sizeof err, "domain_not_verified: %s", domain);
        reject(j, err);
        return;
    }
    /* A job from Redis asking for what this configuration cannot offer (the
     * other doors refuse it before it is queued: docs/queue.md). */
    const char *why = j->dj.unsubscribe ? pmx_verp_unsubscribe_unavailable(
                                              p->cfg->http_public_url, p->cfg->inbound_listen)
                                        : NULL;
    if (why) {
        reject(j, why);
        return;
    }
    plan(j, known);
}

/* ---- lookups (retried and redelivered jobs) ----------------------------------------------- */

static void on_lookup(const pmx_outcome_lookup_t *r, void *arg)
{
    job_t *j = arg;
    j->req = NULL;
    if (r->status == -ECANCELED || j->p->freeing) {
        job_release(j);
        return;
    }
    if (r->status == -EINVAL) {
        pmx_log_error("outcome lookup refused ws=%s entry=%s err=\"%s\"", j->qj->ws,
                      j->qj->entry_id, r->error ? r->error : "");
        job_release(j);
        return;
    }
    if (r->status < 0) {
        job_wait(j);
        return;
    }
    if (!r->message_id) {
        if (j->qj->flags & PMX_QUEUE_JOB_RETRIED) {
            /* A _msg that is not a message of this workspace: forged or foreign. */
            j->msg_id[0] = '\0';
            reject(j, "_msg: not a message of this workspace");
            return;
        }
        policy(j, NULL);     /* a redelivery that never got an outcome */
        return;
    }
    snprintf(j->msg_id, sizeof j->msg_id, "%s", r->message_id);
    j->known = true;
    policy(j, r);
}

static void lookup(job_t *j)
{
    pmx_pipeline_t *p = j->p;
    j->stage = ST_LOOKUP;
    j->req = (j->qj->flags & PMX_QUEUE_JOB_RETRIED)
                 ? pmx_outcomes_lookup_message(p->outcomes, j->qj->ws, j->qj->msg_id, on_lookup, j)
                 : pmx_outcomes_lookup(p->outcomes, j->qj->ws, j->qj->entry_id, on_lookup, j);
    if (!j->req) job_release(j);
}

/* ---- intake ------------------------------------------------------------------------------- */

static const char *kind_reason(const pmx_queue_job_t *qj)
{
    switch (qj->kind) {
    case PMX_QUEUE_JOB_DUPLICATE:  return "duplicate";
    case PMX_QUEUE_JOB_POISON:     return "poison";
    case PMX_QUEUE_JOB_UNKNOWN_WS: return "unknown_workspace";
    default:                       return qj->reason[0] ? qj->reason : "malformed";
    }
}

static void on_job(pmx_queue_consumer_t *c, pmx_queue_job_t *qj, void *arg)
{
    (void)c;
    pmx_pipeline_t *p = arg;
    job_t *j = pmx_xcalloc(1, sizeof *j);
    j->p = p;
    j->qj = qj;
    j->next = p->head;
    if (p->head) p->head->prev = j;
    p->head = j;
    p->stats.in_flight++;
    p->stats.jobs++;

    char err[512];
    size_t max = p->cfg->submission_max_message_size;
    bool ok = pmx_job_decode(qj->fields, qj->nfields, max, &j->dj, err, sizeof err) == 0;
    j->decoded = ok;
    if (!ok) memset(&j->dj, 0, sizeof j->dj);
    if (qj->flags & PMX_QUEUE_JOB_RETRIED) snprintf(j->msg_id, sizeof j->msg_id, "%s", qj->msg_id);
    if (qj->kind != PMX_QUEUE_JOB_OK) {
        if (qj->kind != PMX_QUEUE_JOB_MALFORMED || !(qj->flags & PMX_QUEUE_JOB_RETRIED))
            j->msg_id[0] = '\0';
        reject(j, kind_reason(qj));
        return;
    }
    if (!ok) {
        j->msg_id[0] = '\0';
        reject(j, err);
        return;
    }
    if (qj->flags & (PMX_QUEUE_JOB_RETRIED | PMX_QUEUE_JOB_REDELIVERED) || qj->deliveries > 1)
        lookup(j);
    else
        policy(j, NULL);
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

void pmx_pipeline_settings_changed(pmx_pipeline_t *p)
{
    /* No job is read before the suppression list is in: one read before it
     * would be relayed unchecked. */
    if (!pmx_settings_ready(p->settings) || !pmx_supp_cache_ready(p->suppress)) return;
    /* Suspended workspaces are read too: their jobs wait at the gate while the
     * suspension's hold lasts, and are rejected after it (docs/queue.md). */
    size_t n = pmx_settings_ids(p->settings, true, NULL, 0);
    const char **ids = pmx_xcalloc(n ? n : 1, sizeof *ids);
    pmx_settings_ids(p->settings, true, ids, n);
    pmx_queue_consumer_set_workspaces(p->consumer, ids, n);
    free(ids);
    /* A change can arrive at the end of a drain, after the relay was closed. */
    if (p->pool) pmx_sender_settings_changed(p->pool, p->settings);
    if (p->throttle) pmx_gate_wake(p->throttle);   /* limits may have changed */
}

static void settings_changed_cb(pmx_settings_t *s, void *arg)
{
    (void)s;
    pmx_pipeline_settings_changed(arg);
}

static void suppress_ready_cb(void *arg)
{
    pmx_pipeline_settings_changed(arg);
}

pmx_pipeline_t *pmx_pipeline_start(pmx_worker_t *w, pmx_settings_t *settings,
                                   pmx_supp_cache_t *suppress)
{
    const pmx_config_t *cfg = pmx_worker_config(w);
    pmx_pipeline_t *p = pmx_xcalloc(1, sizeof *p);
    p->w = w;
    p->loop = pmx_worker_loop(w);
    p->cfg = cfg;
    p->settings = settings;
    p->suppress = suppress;
    char err[512];

    p->signer = pmx_dkim_signer_new();
    if (!p->signer) goto fail;

    if (pmx_sender_new(p->loop, cfg, pmx_worker_redis(w), &p->pool, err, sizeof err) < 0) {
        pmx_log_error("%s: %s", cfg->delivery_route == PMX_ROUTE_MX ? "mx" : "relay", err);
        goto fail;
    }

    p->rules = pmx_fb_rules_installed();
    pmx_outcomes_opts_t oo = {
        .hold_ms = -1,
        .soft_bounce_limit = (unsigned)cfg->soft_bounce_limit,
        .soft_bounce_suppress_s = cfg->soft_bounce_suppress_for_ms / 1000,
    };
    p->outcomes = pmx_outcomes_new(p->loop, pmx_worker_db(w), &oo);

    pmx_queue_consumer_opts_t o;
    pmx_queue_consumer_opts_init(&o);
    o.prefix = cfg->redis_prefix;
    o.read_address = cfg->redis_address;
    o.read_password = pmx_worker_redis_password(w, &o.read_pwlen);
    unsigned sessions = cfg->relay_connections_per_worker > 0
                            ? (unsigned)cfg->relay_connections_per_worker : 16;
    o.capacity = sessions * JOBS_PER_SESSION;
    /* Taking over a dead worker's jobs: after reclaim_idle, looked for a few
     * times per period; held jobs are refreshed well before anyone may take them. */
    o.reclaim_idle_ms = (unsigned)cfg->reclaim_idle_ms;
    o.reclaim_interval_ms = o.reclaim_idle_ms / 6 > 500 ? o.reclaim_idle_ms / 6 : 500;
    o.refresh_after_ms = o.reclaim_idle_ms / 3;
    o.job = on_job;
    o.arg = p;
    p->capacity = o.capacity;
    p->consumer = pmx_queue_consumer_new(p->loop, pmx_worker_redis(w), &o, err, sizeof err);
    if (!p->consumer) {
        pmx_log_error("queue consumer: %s", err);
        goto fail;
    }
    p->rl = pmx_ratelimit_new(p->loop, pmx_worker_redis(w), cfg->redis_prefix, err, sizeof err);
    if (!p->rl) {
        pmx_log_error("rate limiter: %s", err);
        goto fail;
    }
    pmx_gate_cbs_t tcbs = { throttle_limits, throttle_verdict, throttle_pause, p };
    p->throttle = pmx_gate_new(p->loop, p->rl, &tcbs);
    uv_timer_init(p->loop, &p->resubmit);
    p->resubmit.data = p;
    uv_timer_start(&p->resubmit, resubmit_cb, RESUBMIT_MS, RESUBMIT_MS);
    uv_unref((uv_handle_t *)&p->resubmit);

    pmx_settings_set_changed_cb(settings, settings_changed_cb, p);
    pmx_supp_cache_set_ready_cb(suppress, suppress_ready_cb, p);
    pmx_queue_consumer_start(p->consumer);
    pmx_pipeline_settings_changed(p);
    pmx_log_info("pipeline started consumer=%s capacity=%u", pmx_queue_consumer_name(p->consumer),
                 o.capacity);
    return p;

fail:
    if (p->consumer) pmx_queue_consumer_close(p->consumer);
    if (p->outcomes) pmx_outcomes_free(p->outcomes);
    if (p->pool) {
        pmx_sender_close(p->pool, NULL, NULL);
        pmx_sender_abort(p->pool);
    }
    if (p->signer) pmx_dkim_signer_free(p->signer);
    pmx_fb_rules_free(p->rules);
    free(p);
    return NULL;
}

void pmx_pipeline_redis_changed(pmx_pipeline_t *p, bool up)
{
    pmx_queue_consumer_redis_changed(p->consumer, up);
}

static void unref(pmx_pipeline_t *p)
{
    if (--p->refs == 0) free(p);
}

static void pool_closed(void *arg)
{
    pmx_pipeline_t *p = arg;
    p->pool_closed = true;
    p->pool = NULL;   /* freed by the pool after this returns */
    if (p->freeing) {
        unref(p);
        return;
    }
    if (p->done) {
        void (*done)(void *) = p->done;
        p->done = NULL;
        done(p->done_arg);
    }
}

static void consumer_drained(pmx_queue_consumer_t *c, void *arg)
{
    (void)c;
    pmx_pipeline_t *p = arg;
    pmx_outcomes_flush(p->outcomes);
    p->pool_closing = true;
    pmx_sender_close(p->pool, pool_closed, p);
}

void pmx_pipeline_drain(pmx_pipeline_t *p, void (*done)(void *arg), void *arg)
{
    p->draining = true;
    p->done = done;
    p->done_arg = arg;
    /* Jobs waiting for a rate limit could wait for hours: they go back to the
     * stream (pending; given back to the group when the drain ends, so the
     * next reclaim takes them at once). */
    pmx_gate_flush(p->throttle);
    /* Nor do deliveries waiting for a site's rate (direct delivery): deferred. */
    if (p->pool) pmx_sender_drain(p->pool);
    pmx_queue_consumer_drain(p->consumer, consumer_drained, p);
}

static void resubmit_closed(uv_handle_t *h)
{
    unref(h->data);
}

void pmx_pipeline_free(pmx_pipeline_t *p)
{
    if (!p) return;
    p->freeing = true;
    p->done = NULL;
    p->refs = 1 + (p->pool ? 1 : 0);
    pmx_settings_set_changed_cb(p->settings, NULL, NULL);
    pmx_supp_cache_set_ready_cb(p->suppress, NULL, NULL);
    if (p->pool) {
        /* The drain may have closed it already (its closed callback not run yet). */
        if (!p->pool_closing) pmx_sender_close(p->pool, pool_closed, p);
        pmx_sender_abort(p->pool);
    }
    pmx_gate_free(p->throttle);    /* its jobs are released below */
    pmx_ratelimit_free(p->rl);
    /* Jobs waiting for Postgres, or whose lookup/outcome is cancelled below,
     * go back to Redis untouched. */
    for (job_t *j = p->head, *next; j; j = next) {
        next = j->next;
        if (j->waiting) job_release(j);
    }
    pmx_outcomes_free(p->outcomes);    /* cancelled callbacks release their jobs */
    for (job_t *j = p->head, *next; j; j = next) {
        next = j->next;
        job_release(j);
    }
    pmx_queue_consumer_close(p->consumer);
    pmx_dkim_signer_free(p->signer);
    pmx_fb_rules_free(p->rules);
    uv_close((uv_handle_t *)&p->resubmit, resubmit_closed);
}

void pmx_pipeline_stats(const pmx_pipeline_t *p, pmx_pipeline_stats_t *out)
{
    *out = p->stats;
}
