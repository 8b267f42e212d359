/*
 * Who gets what, for one job: the recipient plan (test mode: docs/delivery.md,
 * "The way of one job"; the suppression list: docs/feedback.md).
 *
 * From the job's envelope recipients (to, cc, bcc, in that order, each
 * address once), the workspace's test mode and what Postgres already holds
 * for the job (a retried or redelivered job), the plan decides per original
 * recipient:
 *   SKIP      already final in Postgres (sent, bounced, rejected, suppressed):
 *             never relayed again (docs/queue.md: at-least-once, but a recipient
 *             already sent is not relayed twice);
 *   RELAY     goes out in delivery 0 (the message as built) to itself;
 *   REDIRECT  test mode, not a tester, a catch-all is set: goes out in
 *             delivery 1, the copy with one X-Original-To per redirected
 *             recipient, sent once to the catch-all;
 *   SUPPRESS  test mode, not a tester, no catch-all; or the address it would
 *             go to (itself, or the catch-all) is on the workspace's
 *             suppression list: nothing is sent.
 * A pure function of its inputs, so the rules are unit-tested without
 * Redis, Postgres or a relay.
 */
#ifndef PMX_WORKERS_PLAN_H
#define PMX_WORKERS_PLAN_H
#include <stdbool.h>
#include <stddef.h>

#include "lib/job.h"
#include "sql/outcomes.h"

typedef enum {
    PMX_PLAN_SKIP = 0,
    PMX_PLAN_RELAY,
    PMX_PLAN_REDIRECT,
    PMX_PLAN_SUPPRESS,
} pmx_plan_action_t;

typedef struct {
    const char       *addr;       /* borrowed from the job */
    pmx_plan_action_t action;
    int               attempts;   /* attempts Postgres recorded before this one */
    int               delivery;   /* RELAY: 0, REDIRECT: 1, else -1 */
    size_t            slot;       /* index of its envelope recipient in that delivery */
    const char       *suppressed; /* SUPPRESS by the list: its reason; else NULL */
} pmx_plan_rcpt_t;

typedef struct {
    const char **rcpts;           /* envelope recipients (borrowed strings) */
    size_t       n;
} pmx_plan_delivery_t;

typedef struct {
    pmx_plan_rcpt_t     *r;       /* every original recipient, deduplicated */
    size_t               nr;
    pmx_plan_delivery_t  d[2];    /* 0: as built; 1: the catch-all copy */
    const char         **original_to;  /* delivery 1's X-Original-To values */
    size_t               noriginal_to;
} pmx_plan_t;

/* The workspace settings the plan needs (copied out of the settings cache). */
typedef struct {
    bool               test_mode;
    const char        *catch_all;  /* NULL = none */
    const char *const *testers;    /* lowercase, sorted (strcmp) */
    size_t             ntesters;
    /* The suppression list: why an address may not be mailed (a reason name
     * that outlives the plan), or NULL. Asked of the address actually
     * delivered to: the recipient, or the catch-all it is redirected to.
     * NULL = no list. */
    const char *(*suppressed)(const char *addr, void *arg);
    void        *suppressed_arg;
} pmx_plan_policy_t;

/*
 * Makes the plan. known (may be NULL) is what a lookup found for the job;
 * its recipients are sorted by address. Every string in out points into job
 * or policy, never into known, so known may go away afterwards. Free with
 * pmx_plan_free.
 */
void pmx_plan_make(const pmx_job_t *job, const pmx_plan_policy_t *policy,
                   const pmx_outcome_lookup_t *known, pmx_plan_t *out);
void pmx_plan_free(pmx_plan_t *plan);

/* Whether a recipient status is final: such a recipient is never relayed again. */
bool pmx_plan_status_final(const char *status);

#endif
