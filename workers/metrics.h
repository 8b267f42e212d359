/*
 * Prometheus metrics of docs/webhooks.md, summed over all workers: the pipeline counts
 * into the shared metrics region (daemon/metrics_shm.h) through the calls
 * below, and whichever worker accepts GET /metrics renders the whole region
 * (pmx_metrics_render, the `metrics` hook of workers/worker.h).
 *
 *   postmux_recipients_total{workspace,status}  counter
 *   postmux_suppressed_total{workspace,reason}  counter (the list's reasons, and test_mode)
 *   postmux_bounces_total{workspace,class}      counter (bounced recipients by class)
 *   postmux_feedback_total{workspace,kind}      counter (inbound reports by kind)
 *   postmux_queue_depth{workspace}              gauge (XLEN {prefix}:{ws}:jobs)
 *   postmux_smtp_sessions{direction}            gauge (outbound, inbound)
 *   postmux_dkim_sign_seconds                   histogram
 *   postmux_submission_memory_refusals_total    counter (submission/budget.h)
 *   postmux_worker_restarts_total               counter (the supervisor's)
 *   postmux_site_sessions{site}                 gauge   (direct delivery, routing/sites.h:
 *   postmux_site_sent_total{site}               counter  rendered from the site table,
 *   postmux_site_suspended{site}                gauge    only where it is mapped)
 *
 * Queue depth is a gauge kept by a periodic job, not asked of Redis during
 * the scrape: the /metrics hook answers synchronously (http/server.h), and a
 * scrape should cost no Redis round trip per workspace. Every worker given
 * the settings cache (pmx_metrics_set_settings) ticks every second; every
 * PMX_METRICS_DEPTH_INTERVAL_MS exactly one of them (a CAS on the region's
 * due time) pipelines one XLEN per known workspace (suspended ones too) on
 * its own Redis connection, waits at most PMX_METRICS_DEPTH_TIMEOUT_MS, and
 * writes the answers into the region. So a scrape shows depths at most
 * about interval + timeout old; a refresh that times out or loses Redis
 * writes nothing (the previous values stay).
 *
 * All counting calls are cheap (a few atomics; a new (workspace, status) key
 * costs one CAS), never block, may be called from any loop callback, and are
 * no-ops in a process without the region (the CLI, unit tests).
 */
#ifndef PMX_WORKERS_METRICS_H
#define PMX_WORKERS_METRICS_H
#include <stdint.h>

#include "daemon/metrics_shm.h"
#include "daemon/shm.h"
#include "lib/buf.h"
#include "workers/settings.h"
#include "workers/worker.h"

#define PMX_METRICS_DEPTH_INTERVAL_MS 5000u
#define PMX_METRICS_DEPTH_TIMEOUT_MS  2000u
#define PMX_METRICS_DEPTH_TICK_MS     1000u

/*
 * n recipients of workspace ws_id reached status ("queued", "sent",
 * "deferred", "bounced", "rejected", "suppressed"; anything else is logged
 * and ignored). Call it once per recipient and outcome, when the outcome is
 * committed, so the counters follow the recipients rows.
 */
void pmx_metrics_count_recipients(const char *ws_id, const char *status, uint64_t n);
/*
 * A recipient was suppressed (reason: a suppression list reason such as
 * "hard_bounce", or "test_mode"), or bounced with a class (inbound/classify.h
 * names). Counted with the outcome, like the recipients; unknown names are
 * ignored.
 */
void pmx_metrics_count_suppressed(const char *ws_id, const char *reason);
void pmx_metrics_count_bounce(const char *ws_id, const char *cls);
/* The inbound listener stored a report of kind ("bounce", "delay", "complaint",
 * "auto_reply", "unknown", "unsubscribe") for ws_id (NULL: none of ours). */
void pmx_metrics_count_feedback(const char *ws_id, const char *kind);
/* One DKIM signature took seconds. */
void pmx_metrics_observe_dkim(double seconds);
/* This worker's open sessions in a direction: changed by delta, or set. */
void pmx_metrics_sessions_add(pmx_metrics_dir_t dir, int64_t delta);
void pmx_metrics_sessions_set(pmx_metrics_dir_t dir, int64_t n);

/* Submission refused memory to a message (MAIL, DATA or while it arrived). */
void pmx_metrics_submission_memory_refused(void);

/*
 * The queue-depth job (see above) reads the workspace list of settings:
 * call with the worker's settings cache once it is made (hooks start), and
 * with NULL before it is freed (hooks stop; the timers close on the loop).
 */
void pmx_metrics_set_settings(pmx_worker_t *w, pmx_settings_t *settings);

/* The `metrics` hook: the whole region in Prometheus text format (0.0.4).
 * -1 (a 500) when this process has no region. */
int pmx_metrics_render(pmx_worker_t *w, pmx_buf_t *body);
/* The same from a region and a scoreboard (shm may be NULL: restarts 0). */
void pmx_metrics_render_shm(const pmx_metrics_shm_t *m, const pmx_shm_t *shm, pmx_buf_t *body);

#endif
