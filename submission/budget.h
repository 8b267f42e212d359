/*
 * The submission memory budget of one worker (docs/submission.md "Memory"):
 * the octets held by submission messages in flight — each session's DATA
 * buffer while the message arrives, and each message handed to Redis until
 * Redis answers its XADD — stay within [submission] memory_budget.
 *
 * Holders ask before they grow (pmx_submission_budget_hold, smtp/server.h's
 * hold callback) and give back when done; a refusal is the caller's "452
 * 4.3.1 Insufficient system storage". So that big messages cannot starve
 * ordinary mail, a hold over PMX_SUBMISSION_BUDGET_SMALL is granted only while
 * the total stays within 7/8 of the budget: the last eighth is kept for holds
 * up to PMX_SUBMISSION_BUDGET_SMALL.
 *
 * Pure bookkeeping, no I/O: one per worker, used from its loop only.
 */
#ifndef PMX_SUBMISSION_BUDGET_H
#define PMX_SUBMISSION_BUDGET_H
#include <stdbool.h>
#include <stdint.h>

#define PMX_SUBMISSION_BUDGET_SMALL (1024 * 1024)

typedef struct {
    uint64_t limit;      /* [submission] memory_budget */
    uint64_t used;       /* the sum of every hold */
    uint64_t peak;       /* the largest used seen */
    uint64_t refusals;   /* holds refused */
} pmx_submission_budget_t;

void pmx_submission_budget_init(pmx_submission_budget_t *b, uint64_t limit);
/*
 * Changes a hold from *held to n octets (n = 0 gives it back). Shrinking is
 * always granted; growing is granted when the total stays within the limit
 * (within 7/8 of it for n over PMX_SUBMISSION_BUDGET_SMALL). Returns true and
 * sets *held = n, or false (counted in refusals) and leaves *held.
 */
bool pmx_submission_budget_hold(pmx_submission_budget_t *b, uint64_t *held, uint64_t n);
/* Would changing a hold from held to n be granted now? Nothing changes. */
bool pmx_submission_budget_room(const pmx_submission_budget_t *b, uint64_t held, uint64_t n);

#endif
