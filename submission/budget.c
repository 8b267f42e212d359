/* The submission memory budget; see budget.h. */
#include "submission/budget.h"

void pmx_submission_budget_init(pmx_submission_budget_t *b, uint64_t limit)
{
    b->limit = limit;
    b->used = b->peak = b->refusals = 0;
}

bool pmx_submission_budget_room(const pmx_submission_budget_t *b, uint64_t held, uint64_t n)
{
    if (n <= held) return true;
    uint64_t ceiling = n <= PMX_SUBMISSION_BUDGET_SMALL ? b->limit : b->limit - b->limit / 8;
    uint64_t others = b->used - held;
    return others <= ceiling && n <= ceiling - others;
}

bool pmx_submission_budget_hold(pmx_submission_budget_t *b, uint64_t *held, uint64_t n)
{
    if (!pmx_submission_budget_room(b, *held, n)) {
        b->refusals++;
        return false;
    }
    b->used = b->used - *held + n;
    if (b->used > b->peak) b->peak = b->used;
    *held = n;
    return true;
}
