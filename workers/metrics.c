/*
 * Prometheus metrics: the counting calls, the queue-depth job and the
 * /metrics rendering; see metrics.h. The numbers themselves live in the
 * shared region of daemon/metrics_shm.h.
 */
#include "workers/metrics.h"
#include "routing/sites.h"

#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "lib/log.h"
#include "lib/mem.h"
#include "queue/keys.h"

/* ---- counting ----------------------------------------------------------- */

void pmx_metrics_count_recipients(const char *ws_id, const char *status, uint64_t n)
{
    pmx_metrics_shm_t *m = pmx_metrics_shm_current();
    if (!m) return;
    int st = pmx_metrics_status_parse(status);
    if (st < 0) {
        pmx_log_warn("metrics: unknown recipient status=%s ws=%s: not counted",
                     status ? status : "(null)", ws_id ? ws_id : "(null)");
        return;
    }
    pmx_metrics_shm_add_recipients(m, ws_id, (pmx_metrics_status_t)st, n);
}

/* The columns of the feedback families, in their shared-table order. */
static const char *const suppressed_cols[] = {
    "hard_bounce", "soft_bounce", "complaint", "unsubscribe", "manual", "test_mode",
};
static const char *const bounce_cols[] = {
    "user_unknown", "domain_unknown", "has_moved", "mailbox_full", "message_too_big",
    "content_rejected", "policy", "rate_limited", "network", "expired", "system", "other",
};
static const char *const feedback_cols[] = {
    "bounce", "delay", "complaint", "auto_reply", "unknown", "unsubscribe",
};
#define NCOLS(a) (sizeof a / sizeof a[0])
_Static_assert(NCOLS(bounce_cols) <= PMX_METRICS_COLS, "too many bounce classes");

static void count_col(const char *ws, pmx_metrics_family_t fam, const char *const *cols,
                      size_t ncols, const char *name)
{
    pmx_metrics_shm_t *m = pmx_metrics_shm_current();
    if (!m || !name) return;
    for (size_t i = 0; i < ncols; i++)
        if (strcmp(cols[i], name) == 0) {
            pmx_metrics_shm_add(m, ws, fam, (unsigned)i, 1);
            return;
        }
}

void pmx_metrics_count_suppressed(const char *ws_id, const char *reason)
{
    count_col(ws_id, PMX_METRICS_FAM_SUPPRESSED, suppressed_cols, NCOLS(suppressed_cols), reason);
}

void pmx_metrics_count_bounce(const char *ws_id, const char *cls)
{
    count_col(ws_id, PMX_METRICS_FAM_BOUNCES, bounce_cols, NCOLS(bounce_cols), cls);
}

void pmx_metrics_count_feedback(const char *ws_id, const char *kind)
{
    count_col(ws_id ? ws_id : PMX_METRICS_OTHER, PMX_METRICS_FAM_FEEDBACK, feedback_cols,
              NCOLS(feedback_cols), kind);
}

void pmx_metrics_observe_dkim(double seconds)
{
    pmx_metrics_shm_observe_dkim(pmx_metrics_shm_current(), seconds);
}

void pmx_metrics_sessions_add(pmx_metrics_dir_t dir, int64_t delta)
{
    pmx_metrics_shm_sessions_add(pmx_metrics_shm_current(), pmx_metrics_shm_current_slot(), dir,
                                 delta);
}

void pmx_metrics_sessions_set(pmx_metrics_dir_t dir, int64_t n)
{
    pmx_metrics_shm_sessions_set(pmx_metrics_shm_current(), pmx_metrics_shm_current_slot(), dir, n);
}

void pmx_metrics_submission_memory_refused(void)
{
    pmx_metrics_shm_count_memory_refusal(pmx_metrics_shm_current());
}

/* ---- the queue-depth job ---------------------------------------------------
 *
 * One refresh = one batch: the workspace ids (copied: the settings snapshot
 * may be swapped while the replies are on their way), one XLEN per id, and a
 * timeout timer. hiredis calls each reply callback exactly once (NULL when
 * the connection goes), so the batch is freed when no reply is outstanding
 * and its timer has closed, whoever finishes last; the worker's state may be
 * gone by then (owner == NULL). */

typedef struct depth_batch depth_batch_t;
typedef struct metrics_worker metrics_worker_t;

typedef struct {
    depth_batch_t *b;
    size_t         i;
} depth_req_t;

struct depth_batch {
    metrics_worker_t *owner;       /* NULL once the worker state is gone */
    uv_timer_t        timer;
    bool              timer_open;
    bool              abandoned;   /* timed out or owner gone: write nothing */
    bool              failed;      /* a reply was missing or not an integer */
    unsigned          pending;     /* replies outstanding */
    size_t            n;
    char            **ids;
    uint64_t         *depths;
    depth_req_t      *reqs;
    uint64_t          started_ms;
};

struct metrics_worker {
    pmx_worker_t   *w;
    pmx_settings_t *settings;
    uv_timer_t      tick;
    depth_batch_t  *batch;         /* the refresh in flight, if any */
    bool            warned;        /* a failure was logged since the last success */
};

/* This worker's job; one per process, like the region it writes. */
static metrics_worker_t *depth_job;

static void batch_maybe_free(depth_batch_t *b)
{
    if (b->pending > 0 || b->timer_open) return;
    for (size_t i = 0; i < b->n; i++) free(b->ids[i]);
    free(b->ids);
    free(b->depths);
    free(b->reqs);
    free(b);
}

static void batch_timer_closed(uv_handle_t *h)
{
    depth_batch_t *b = h->data;
    b->timer_open = false;
    batch_maybe_free(b);
}

/* No more interest in b: detach it from its owner and close its timer. */
static void batch_release(depth_batch_t *b)
{
    if (b->owner && b->owner->batch == b) b->owner->batch = NULL;
    b->owner = NULL;
    if (b->timer_open && !uv_is_closing((uv_handle_t *)&b->timer))
        uv_close((uv_handle_t *)&b->timer, batch_timer_closed);
    else
        batch_maybe_free(b);
}

static void batch_complete(depth_batch_t *b)
{
    metrics_worker_t *mw = b->owner;
    if (!b->abandoned && !b->failed) {
        pmx_metrics_shm_store_depths(pmx_metrics_shm_current(), (const char *const *)b->ids,
                                     b->depths, b->n);
        if (mw && mw->warned) {
            pmx_log_info("metrics: queue depth refresh works again workspaces=%zu", b->n);
            mw->warned = false;
        }
    } else if (!b->abandoned && mw && !mw->warned) {
        pmx_log_warn("metrics: queue depth refresh failed (Redis): keeping the last values");
        mw->warned = true;
    }
    batch_release(b);
}

static void depth_reply_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    depth_req_t *req = privdata;
    depth_batch_t *b = req->b;
    const redisReply *r = reply;
    if (r && r->type == REDIS_REPLY_INTEGER && r->integer >= 0)
        b->depths[req->i] = (uint64_t)r->integer;
    else
        b->failed = true;
    if (--b->pending == 0) batch_complete(b);
}

static void batch_timeout_cb(uv_timer_t *t)
{
    depth_batch_t *b = t->data;
    if (b->abandoned) return;
    b->abandoned = true;
    if (b->owner && !b->owner->warned) {
        pmx_log_warn("metrics: queue depth refresh timed out after %u ms workspaces=%zu "
                     "outstanding=%u: keeping the last values",
                     PMX_METRICS_DEPTH_TIMEOUT_MS, b->n, b->pending);
        b->owner->warned = true;
    }
    batch_release(b);   /* replies still due free it when they come */
}

static void depth_refresh(metrics_worker_t *mw, pmx_redis_conn_t *rc)
{
    size_t n = pmx_settings_ids(mw->settings, true, NULL, 0);
    const char **ids = pmx_xcalloc(n ? n : 1, sizeof *ids);
    n = pmx_settings_ids(mw->settings, true, ids, n);

    depth_batch_t *b = pmx_xcalloc(1, sizeof *b);
    b->owner = mw;
    b->n = n;
    b->ids = pmx_xcalloc(n ? n : 1, sizeof *b->ids);
    b->depths = pmx_xcalloc(n ? n : 1, sizeof *b->depths);
    b->reqs = pmx_xcalloc(n ? n : 1, sizeof *b->reqs);
    for (size_t i = 0; i < n; i++) b->ids[i] = pmx_xstrdup(ids[i]);
    free(ids);
    mw->batch = b;

    /* hiredis writes the commands queued in one loop turn together: one
     * pipelined round trip for every workspace. */
    const char *prefix = pmx_worker_config(mw->w)->redis_prefix;
    pmx_buf_t key = PMX_BUF_INIT;
    for (size_t i = 0; i < n; i++) {
        b->reqs[i] = (depth_req_t){ .b = b, .i = i };
        pmx_buf_reset(&key);
        pmx_queue_key(&key, PMX_QUEUE_KEY_JOBS, prefix, b->ids[i]);
        const char *argv[] = { "XLEN", pmx_buf_cstr(&key) };
        if (pmx_redis_conn_command_argv(rc, depth_reply_cb, &b->reqs[i], 2, argv, NULL) < 0) {
            b->failed = true;
            break;
        }
        b->pending++;
    }
    pmx_buf_free(&key);
    if (b->pending == 0) {
        batch_complete(b);
        return;
    }
    uv_timer_init(pmx_worker_loop(mw->w), &b->timer);
    b->timer.data = b;
    b->timer_open = true;
    uv_unref((uv_handle_t *)&b->timer);
    uv_timer_start(&b->timer, batch_timeout_cb, PMX_METRICS_DEPTH_TIMEOUT_MS, 0);
}

static void depth_tick_cb(uv_timer_t *t)
{
    metrics_worker_t *mw = t->data;
    pmx_metrics_shm_t *m = pmx_metrics_shm_current();
    pmx_redis_conn_t *rc = pmx_worker_redis(mw->w);
    if (!m || mw->batch || pmx_worker_is_draining(mw->w) || !rc || !pmx_redis_conn_is_up(rc) ||
        !pmx_settings_ready(mw->settings))
        return;
    if (!pmx_metrics_shm_claim_refresh(m, pmx_shm_now_ms(), PMX_METRICS_DEPTH_INTERVAL_MS))
        return;
    depth_refresh(mw, rc);
}

static void tick_closed(uv_handle_t *h)
{
    free(h->data);
}

void pmx_metrics_set_settings(pmx_worker_t *w, pmx_settings_t *settings)
{
    metrics_worker_t *mw = depth_job;
    if (mw) {
        depth_job = NULL;
        if (mw->batch) {
            depth_batch_t *b = mw->batch;
            b->abandoned = true;
            batch_release(b);
        }
        uv_close((uv_handle_t *)&mw->tick, tick_closed);
    }
    if (!settings) return;
    mw = pmx_xcalloc(1, sizeof *mw);
    mw->w = w;
    mw->settings = settings;
    uv_timer_init(pmx_worker_loop(w), &mw->tick);
    mw->tick.data = mw;
    /* Never what keeps a finishing worker's loop running. */
    uv_unref((uv_handle_t *)&mw->tick);
    /* The first look soon after start, then every tick. */
    uv_timer_start(&mw->tick, depth_tick_cb, 100, PMX_METRICS_DEPTH_TICK_MS);
    depth_job = mw;
}

/* ---- rendering ------------------------------------------------------------ */

static void family(pmx_buf_t *b, const char *name, const char *type, const char *help)
{
    pmx_buf_appendf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static bool has_row(const pmx_metrics_row_t *rows, size_t n, const char *ws)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(rows[i].ws, ws) == 0) return true;
    return false;
}

/* Direct delivery's sites (routing/sites.h): their names are MX host names
 * (letters, digits, '-', '.', '_', ','), so they need no label escaping. Only
 * in a process with the site table (postmuxd's workers). */
static void render_sites(pmx_buf_t *body)
{
    if (!pmx_sites_shm_get()) return;
    pmx_sites_row_t *rows;
    size_t n = pmx_sites_rows(&rows);
    family(body, "postmux_site_sessions", "gauge",
           "Open SMTP sessions to each MX site, all workers of this host.");
    for (size_t i = 0; i < n; i++)
        pmx_buf_appendf(body, "postmux_site_sessions{site=\"%s\"} %lld\n", rows[i].name,
                        (long long)rows[i].sessions);
    family(body, "postmux_site_sent_total", "counter",
           "Recipients each MX site accepted (direct delivery).");
    for (size_t i = 0; i < n; i++)
        pmx_buf_appendf(body, "postmux_site_sent_total{site=\"%s\"} %llu\n", rows[i].name,
                        (unsigned long long)rows[i].sent);
    family(body, "postmux_site_suspended", "gauge",
           "1 while new sessions to the MX site are suspended.");
    for (size_t i = 0; i < n; i++)
        pmx_buf_appendf(body, "postmux_site_suspended{site=\"%s\"} %d\n", rows[i].name,
                        rows[i].suspended ? 1 : 0);
    free(rows);
}

void pmx_metrics_render_shm(const pmx_metrics_shm_t *m, const pmx_shm_t *shm, pmx_buf_t *body)
{
    pmx_metrics_row_t *rc = NULL, *dp = NULL;
    size_t nrc = pmx_metrics_shm_recipients(m, &rc);
    size_t ndp = pmx_metrics_shm_depths(m, &dp);

    family(body, "postmux_recipients_total", "counter",
           "Recipients that reached a status, by workspace (_other: did not fit the table).");
    for (size_t i = 0; i < nrc; i++)
        for (int s = 0; s < PMX_METRICS_NSTATUS; s++)
            pmx_buf_appendf(body, "postmux_recipients_total{workspace=\"%s\",status=\"%s\"} %llu\n",
                            rc[i].ws, pmx_metrics_status_name((pmx_metrics_status_t)s),
                            (unsigned long long)rc[i].value[s]);
    /* Known workspaces that have counted nothing yet start at 0. */
    for (size_t i = 0; i < ndp; i++) {
        if (strcmp(dp[i].ws, PMX_METRICS_OTHER) == 0 || has_row(rc, nrc, dp[i].ws)) continue;
        for (int s = 0; s < PMX_METRICS_NSTATUS; s++)
            pmx_buf_appendf(body, "postmux_recipients_total{workspace=\"%s\",status=\"%s\"} 0\n",
                            dp[i].ws, pmx_metrics_status_name((pmx_metrics_status_t)s));
    }

    static const struct {
        pmx_metrics_family_t fam;
        const char *name, *label, *help;
        const char *const *cols;
        size_t ncols;
    } fb[] = {
        { PMX_METRICS_FAM_SUPPRESSED, "postmux_suppressed_total", "reason",
          "Recipients not mailed: on the suppression list (by its reason), or test mode.",
          suppressed_cols, NCOLS(suppressed_cols) },
        { PMX_METRICS_FAM_BOUNCES, "postmux_bounces_total", "class",
          "Recipients bounced, by bounce class.", bounce_cols, NCOLS(bounce_cols) },
        { PMX_METRICS_FAM_FEEDBACK, "postmux_feedback_total", "kind",
          "Messages accepted by the inbound listener, by kind (per envelope recipient).",
          feedback_cols, NCOLS(feedback_cols) },
    };
    for (size_t f = 0; f < NCOLS(fb); f++) {
        pmx_metrics_row_t *rows = NULL;
        size_t n = pmx_metrics_shm_rows(m, fb[f].fam, &rows);
        family(body, fb[f].name, "counter", fb[f].help);
        for (size_t i = 0; i < n; i++)
            for (size_t k = 0; k < fb[f].ncols; k++)
                if (rows[i].value[k])
                    pmx_buf_appendf(body, "%s{workspace=\"%s\",%s=\"%s\"} %llu\n", fb[f].name,
                                    rows[i].ws, fb[f].label, fb[f].cols[k],
                                    (unsigned long long)rows[i].value[k]);
        free(rows);
    }

    family(body, "postmux_queue_depth", "gauge",
           "Jobs in the workspace's stream {prefix}:{ws}:jobs (XLEN), refreshed every 5 s.");
    for (size_t i = 0; i < ndp; i++)
        pmx_buf_appendf(body, "postmux_queue_depth{workspace=\"%s\"} %llu\n", dp[i].ws,
                        (unsigned long long)dp[i].value[0]);

    family(body, "postmux_smtp_sessions", "gauge",
           "Open SMTP sessions: outbound to the relay, inbound on submission and the [inbound] listener.");
    for (int d = 0; d < PMX_METRICS_NDIR; d++)
        pmx_buf_appendf(body, "postmux_smtp_sessions{direction=\"%s\"} %llu\n",
                        pmx_metrics_dir_name((pmx_metrics_dir_t)d),
                        (unsigned long long)pmx_metrics_shm_sessions(m, (pmx_metrics_dir_t)d));

    static const double bounds[PMX_METRICS_DKIM_NBOUNDS] = PMX_METRICS_DKIM_BOUNDS;
    uint64_t buckets[PMX_METRICS_DKIM_NBOUNDS + 1], sum_ns, cum = 0;
    pmx_metrics_shm_dkim(m, buckets, &sum_ns);
    family(body, "postmux_dkim_sign_seconds", "histogram", "Time to DKIM-sign one message.");
    for (int i = 0; i <= PMX_METRICS_DKIM_NBOUNDS; i++) {
        cum += buckets[i];
        if (i < PMX_METRICS_DKIM_NBOUNDS)
            pmx_buf_appendf(body, "postmux_dkim_sign_seconds_bucket{le=\"%g\"} %llu\n", bounds[i],
                            (unsigned long long)cum);
        else
            pmx_buf_appendf(body, "postmux_dkim_sign_seconds_bucket{le=\"+Inf\"} %llu\n",
                            (unsigned long long)cum);
    }
    pmx_buf_appendf(body, "postmux_dkim_sign_seconds_sum %llu.%09llu\n",
                    (unsigned long long)(sum_ns / 1000000000u),
                    (unsigned long long)(sum_ns % 1000000000u));
    pmx_buf_appendf(body, "postmux_dkim_sign_seconds_count %llu\n", (unsigned long long)cum);

    family(body, "postmux_submission_memory_refusals_total", "counter",
           "Submission messages answered 452 4.3.1: a worker's [submission] memory_budget was full.");
    pmx_buf_appendf(body, "postmux_submission_memory_refusals_total %llu\n",
                    (unsigned long long)pmx_metrics_shm_memory_refusals(m));

    family(body, "postmux_worker_restarts_total", "counter",
           "Workers that died unexpectedly and were replaced by postmuxd.");
    pmx_buf_appendf(body, "postmux_worker_restarts_total %llu\n",
                    (unsigned long long)(shm ? pmx_shm_worker_restarts(shm) : 0));
    render_sites(body);
    free(rc);
    free(dp);
}

int pmx_metrics_render(pmx_worker_t *w, pmx_buf_t *body)
{
    const pmx_metrics_shm_t *m = pmx_metrics_shm_current();
    if (!m) {
        pmx_log_error("metrics: this worker has no metrics region");
        return -1;
    }
    pmx_metrics_render_shm(m, pmx_worker_shm(w), body);
    return 0;
}
