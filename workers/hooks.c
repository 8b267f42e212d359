/*
 * The hooks postmuxd gives every worker (workers/worker.h): the parts of the
 * worker that run on its loop, started, fed and stopped in one place. Today:
 * the settings cache (workers/settings.h) and SMTP submission
 * (submission/session.h), the public HTTP API (http/api.h), the delivery pipeline
 * (workers/pipeline.h), the [inbound] listener (inbound/listener.h), and the webhook sender (webhooks/sender.h) with its own
 * Postgres connection, the suppression list (inbound/suppress.h) the pipeline
 * checks, and the reputation guard (inbound/guard.h).
 *
 * Drain: every part that drains is asked at once; the worker's done is called
 * when the last one has finished.
 */
#include "workers/hooks.h"

#include <stdlib.h>

#include "dkim/keycrypt.h"
#include "inbound/guard.h"
#include "inbound/listener.h"
#include "inbound/suppress.h"
#include "lib/log.h"
#include "lib/mem.h"
#include "workers/metrics.h"
#include "workers/pipeline.h"
#include "workers/settings.h"
#include "submission/session.h"
#include "http/api.h"
#include "webhooks/sender.h"

typedef struct {
    pmx_worker_t            *w;
    pmx_settings_t          *settings;
    pmx_supp_cache_t        *suppress;
    pmx_guard_t             *guard;
    pmx_worker_submission_t *submission;
    pmx_http_api_t          *http;
    pmx_inbound_t           *inbound;
    pmx_pipeline_t          *pipeline;
    pmx_webhooks_t          *webhooks;
    pmx_worker_done_fn       done;
    int                      draining;   /* parts still draining */
} hooks_state_t;

static hooks_state_t *state_of(pmx_worker_t *w)
{
    return pmx_worker_data(w);
}

static int hooks_start(pmx_worker_t *w)
{
    const pmx_config_t *cfg = pmx_worker_config(w);
    uint8_t master[PMX_DKIM_MASTER_KEY_LEN];
    char err[512];
    if (pmx_dkim_master_key_load(cfg->master_key_file, master, err, sizeof err) < 0) {
        pmx_log_error("%s", err);
        return -1;
    }
    hooks_state_t *st = pmx_xcalloc(1, sizeof *st);
    st->w = w;
    st->settings = pmx_settings_new(pmx_worker_loop(w), pmx_worker_db(w), master);
    st->suppress = pmx_supp_cache_new(pmx_worker_loop(w), pmx_worker_db(w));
    st->webhooks = pmx_webhooks_start(pmx_worker_loop(w), cfg, master);
    pmx_worker_set_ref_key(w, master, sizeof master);
    pmx_wipe(master, sizeof master);
    pmx_worker_set_data(w, st);
    if (!st->webhooks || pmx_settings_start(st->settings) < 0
        || pmx_supp_cache_start(st->suppress) < 0
        || !(st->pipeline = pmx_pipeline_start(w, st->settings, st->suppress))
        || pmx_worker_submission_start(w, st->settings, &st->submission) < 0
        || pmx_http_api_start(w, st->settings, &st->http) < 0
        || pmx_inbound_start(w, st->settings, &st->inbound) < 0) {
        /* stop is not called when start fails: undo here. */
        pmx_http_api_stop(st->http);
        pmx_worker_submission_stop(st->submission);
        pmx_pipeline_free(st->pipeline);
        pmx_webhooks_free(st->webhooks);
        pmx_supp_cache_free(st->suppress);
        pmx_settings_free(st->settings);
        pmx_worker_set_data(w, NULL);
        free(st);
        return -1;
    }
    pmx_metrics_set_settings(w, st->settings);   /* the queue-depth gauge's workspace list */
    st->guard = pmx_guard_start(pmx_worker_loop(w), pmx_worker_db(w), cfg);
    return 0;
}

static void hooks_conn_changed(pmx_worker_t *w, bool redis_up, bool pg_up)
{
    hooks_state_t *st = state_of(w);
    if (!st) return;
    pmx_settings_on_db_state(st->settings, pg_up);
    pmx_supp_cache_on_db_state(st->suppress, pg_up);
    pmx_pipeline_redis_changed(st->pipeline, redis_up);
}

static void hooks_notify(pmx_worker_t *w, const char *channel, const char *payload)
{
    hooks_state_t *st = state_of(w);
    if (!st) return;
    pmx_settings_on_notify(st->settings, channel, payload);
    pmx_supp_cache_on_notify(st->suppress, channel, payload);
}

static void part_drained(void *arg)
{
    hooks_state_t *st = arg;
    if (--st->draining == 0 && st->done) st->done(st->w);
}

static void hooks_drain(pmx_worker_t *w, pmx_worker_done_fn done)
{
    hooks_state_t *st = state_of(w);
    st->done = done;
    st->draining = 5;
    pmx_http_api_drain(st->http, part_drained, st);
    pmx_inbound_drain(st->inbound, part_drained, st);
    pmx_worker_submission_drain(st->submission, part_drained, st);
    pmx_pipeline_drain(st->pipeline, part_drained, st);
    pmx_webhooks_drain(st->webhooks, part_drained, st);
}

static void hooks_stop(pmx_worker_t *w)
{
    hooks_state_t *st = state_of(w);
    if (!st) return;
    pmx_http_api_stop(st->http);
    pmx_inbound_stop(st->inbound);
    pmx_worker_submission_stop(st->submission);
    pmx_pipeline_free(st->pipeline);
    pmx_webhooks_free(st->webhooks);
    pmx_metrics_set_settings(w, NULL);
    pmx_guard_free(st->guard);
    pmx_supp_cache_free(st->suppress);
    pmx_settings_free(st->settings);
    pmx_worker_set_data(w, NULL);
    free(st);
}

static const pmx_worker_hooks_t hooks = {
    .start = hooks_start,
    .conn_changed = hooks_conn_changed,
    .notify = hooks_notify,
    .drain = hooks_drain,
    .stop = hooks_stop,
    .metrics = pmx_metrics_render,
};

const pmx_worker_hooks_t *pmx_worker_hooks(void)
{
    return &hooks;
}
