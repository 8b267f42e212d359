/*
 * The reputation guard of one worker (docs/feedback.md, "Reputation guard"):
 * every PMX_GUARD_INTERVAL_MS it runs the guard statement (sql/q_guard.h) on
 * the worker's Postgres connection. Every worker of every host does; the
 * statement's advisory lock lets one at a time judge, so a workspace is paused
 * once. A pause is a workspaces row change: the settings NOTIFY brings it to
 * every worker, whose gate then holds the workspace's jobs (never rejects
 * them) until `workspace set --resume`.
 *
 * Ownership: one query at a time; pmx_guard_free cancels it. Single-threaded,
 * on the worker's loop.
 */
#ifndef PMX_INBOUND_GUARD_H
#define PMX_INBOUND_GUARD_H

#include <uv.h>

#include "config/config.h"
#include "sql/db_async.h"

#define PMX_GUARD_INTERVAL_MS 10000u

typedef struct pmx_guard pmx_guard_t;

/* Starts the timer; the first judgement comes one interval after start. */
pmx_guard_t *pmx_guard_start(uv_loop_t *loop, pmx_db_async_t *db, const pmx_config_t *cfg);
/* Cancels what is in flight; the memory goes once the timer has closed. */
void pmx_guard_free(pmx_guard_t *g);

#endif
