/*
 * The queue consumer's lifecycle: the table of legal phase changes written
 * at the top of queue/consumer_int.h, and the one function that changes a
 * consumer's phase. Kept apart from consumer.c so that the table can be read
 * (and unit-tested, tests/unit/test_queue_phase.c) on its own.
 *
 * A change the table does not allow is a bug in the consumer, never an input
 * error: it is logged, and the ASan build (PMX_DEBUG, which the tests run)
 * aborts so the test that got there fails; a release build keeps the old
 * phase and goes on. pmx__queue_broken() does the same for the other
 * invariants the consumer checks (no read out while a sweep is).
 */
#include <stdio.h>
#include <stdlib.h>

#include "lib/log.h"
#include "queue/consumer_int.h"

#define TO(p) (1u << (p))

/* legal[from]: the phases `from` may change to. */
static const unsigned legal[PMX__Q_NPHASES] = {
    [PMX__Q_NEW]         = TO(PMX__Q_RUNNING) | TO(PMX__Q_DRAINING) | TO(PMX__Q_CLOSED),
    [PMX__Q_RUNNING]     = TO(PMX__Q_DRAINING) | TO(PMX__Q_CLOSED),
    [PMX__Q_DRAINING]    = TO(PMX__Q_GIVING_BACK) | TO(PMX__Q_CLOSED),
    [PMX__Q_GIVING_BACK] = TO(PMX__Q_DRAINED) | TO(PMX__Q_CLOSED),
    [PMX__Q_DRAINED]     = TO(PMX__Q_CLOSED),
    [PMX__Q_CLOSED]      = TO(PMX__Q_FREEING),
    [PMX__Q_FREEING]     = 0,
};

static const char *const names[PMX__Q_NPHASES] = {
    [PMX__Q_NEW]         = "new",
    [PMX__Q_RUNNING]     = "running",
    [PMX__Q_DRAINING]    = "draining",
    [PMX__Q_GIVING_BACK] = "giving_back",
    [PMX__Q_DRAINED]     = "drained",
    [PMX__Q_CLOSED]      = "closed",
    [PMX__Q_FREEING]     = "freeing",
};

static bool valid(pmx__queue_phase_t p)
{
    return (unsigned)p < PMX__Q_NPHASES;
}

bool pmx__queue_phase_legal(pmx__queue_phase_t from, pmx__queue_phase_t to)
{
    return valid(from) && valid(to) && (legal[from] & TO(to)) != 0;
}

const char *pmx__queue_phase_name(pmx__queue_phase_t p)
{
    return valid(p) ? names[p] : "?";
}

void pmx__queue_broken(const pmx__queue_c_t *c, const char *what)
{
    pmx_log_error("queue: consumer invariant broken consumer=%s phase=%s: %s (a bug)",
                  c->name ? c->name : "-", pmx__queue_phase_name(c->phase), what);
#ifdef PMX_DEBUG
    abort();
#endif
}

bool pmx__queue_phase_set(pmx__queue_c_t *c, pmx__queue_phase_t to)
{
    pmx__queue_phase_t from = c->phase;
    if (!pmx__queue_phase_legal(from, to)) {
        char what[96];
        snprintf(what, sizeof what, "phase change to %s not allowed, the phase stays",
                 pmx__queue_phase_name(to));
        pmx__queue_broken(c, what);
        return false;
    }
    pmx_log_debug("queue: consumer phase consumer=%s from=%s to=%s", c->name ? c->name : "-",
                  pmx__queue_phase_name(from), pmx__queue_phase_name(to));
    c->phase = to;
    return true;
}
