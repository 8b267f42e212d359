/*
 * The delivery pipeline of one worker (docs/delivery.md, "The way of one job";
 * README, "One message's way"): every job the queue consumer hands over goes
 *
 *   decode (lib/job) -> policy (workers/settings: workspace known, not
 *   suspended, From domain verified, test mode and the suppression list
 *   (inbound/suppress.h) via workers/plan) ->
 *   build (lib/mime) -> sign (dkim/signer) -> relay (smtp/pool) ->
 *   record (sql/outcomes) -> ack, or defer to the retry schedule (queue/)
 *
 * and nothing leaves the stream before its outcome is committed. Retried
 * and redelivered jobs first ask Postgres which recipients are already final
 * and relay only the others.
 *
 * Runs on the worker's loop; the worker's hooks (workers/hooks.c) make it,
 * forward connection changes, drain and free it.
 */
#ifndef PMX_WORKERS_PIPELINE_H
#define PMX_WORKERS_PIPELINE_H
#include <stdbool.h>
#include <stdint.h>

#include "inbound/suppress.h"
#include "workers/settings.h"
#include "workers/worker.h"

typedef struct pmx_pipeline pmx_pipeline_t;

/* Makes and starts the pipeline (consumer, outcome writer, relay pool,
 * signer). settings and suppress must outlive it; no job is read before both
 * have completed their first load. NULL with a reason logged on failure. */
pmx_pipeline_t *pmx_pipeline_start(pmx_worker_t *w, pmx_settings_t *settings,
                                   pmx_supp_cache_t *suppress);
/* The settings cache swapped in new state: new workspace list, new limits. */
void pmx_pipeline_settings_changed(pmx_pipeline_t *p);
/* Redis went up or down. */
void pmx_pipeline_redis_changed(pmx_pipeline_t *p, bool up);
/* No new jobs; finish those in flight, record them, close the relay
 * sessions; then done(arg) once, from the loop. */
void pmx_pipeline_drain(pmx_pipeline_t *p, void (*done)(void *arg), void *arg);
/* Releases everything (after the worker closed its connections). Jobs still
 * in flight stay pending in Redis and are redelivered. */
void pmx_pipeline_free(pmx_pipeline_t *p);

typedef struct {
    uint64_t jobs;         /* jobs handed over */
    uint64_t sent;         /* recipients sent */
    uint64_t deferred;
    uint64_t bounced;
    uint64_t rejected;
    uint64_t suppressed;
    unsigned in_flight;
} pmx_pipeline_stats_t;

void pmx_pipeline_stats(const pmx_pipeline_t *p, pmx_pipeline_stats_t *out);

#endif
