/*
 * Rate-limit gates; see throttle.h.
 */
#include "workers/gate.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "lib/mem.h"

#define RETRY_ERROR_MS 1000   /* Redis did not answer: ask again after this */

typedef struct item {
    struct item *next;
    void        *item;
    unsigned     n;
} item_t;

typedef struct gate {
    struct gate    *next;
    pmx_gate_t *t;
    char           *ws;
    item_t         *head, *tail;
    size_t          count;
    bool            asking;     /* a limiter request is out */
    uint64_t        retry_at;   /* loop ms: ask again then (0 = now) */
} gate_t;

struct pmx_gate {
    uv_loop_t          *loop;
    pmx_ratelimit_t    *rl;
    pmx_gate_cbs_t  cbs;
    gate_t             *gates;
    uv_timer_t          timer;
    bool                flushing;
};

static void arm(pmx_gate_t *t);

static gate_t *gate_find(pmx_gate_t *t, const char *ws)
{
    for (gate_t *g = t->gates; g; g = g->next)
        if (strcmp(g->ws, ws) == 0) return g;
    return NULL;
}

static void gate_remove(pmx_gate_t *t, gate_t *g)
{
    for (gate_t **pp = &t->gates; *pp; pp = &(*pp)->next) {
        if (*pp == g) {
            *pp = g->next;
            break;
        }
    }
    t->cbs.pause(g->ws, false, t->cbs.arg);
    free(g->ws);
    free(g);
}

/* Takes the head item off g and hands it back with v; drops g when empty. */
static void pop(gate_t *g, pmx_gate_verdict_t v)
{
    pmx_gate_t *t = g->t;
    item_t *it = g->head;
    g->head = it->next;
    if (!g->head) g->tail = NULL;
    g->count--;
    void *item = it->item;
    free(it);
    bool empty = g->head == NULL;
    if (empty) gate_remove(t, g);
    t->cbs.verdict(item, v, t->cbs.arg);
}

static void ask(gate_t *g);

/* Every item of g gets v (the last pop frees g). */
static void pop_all(gate_t *g, pmx_gate_verdict_t v)
{
    for (size_t k = g->count; k > 0; k--) pop(g, v);
}

static void on_limit(const pmx_ratelimit_result_t *r, void *arg)
{
    gate_t *g = arg;
    pmx_gate_t *t = g->t;
    g->asking = false;
    pmx_gate_limits_t lim;
    if (r->status < 0) {
        g->retry_at = uv_now(t->loop) + RETRY_ERROR_MS;
    } else if (r->allowed && t->cbs.limits(g->ws, &lim, t->cbs.arg) && lim.suspended) {
        /* Suspended while we asked: counted now, so it waits only for the gate. */
        g->head->n = 0;
        g->retry_at = 0;
    } else if (r->allowed) {
        pop(g, PMX_THROTTLE_GO);   /* may free g */
        g = NULL;
    } else if (r->never) {
        pop(g, PMX_THROTTLE_NEVER);
        g = NULL;
    } else {
        g->retry_at = uv_now(t->loop) + (r->wait_ms ? r->wait_ms : 1);
    }
    /* The next head (or this one after its wait) asks from the timer, so a
     * verdict never recurses into the next request. */
    arm(t);
}

static void ask(gate_t *g)
{
    pmx_gate_t *t = g->t;
    pmx_gate_limits_t lim;
    if (!t->cbs.limits(g->ws, &lim, t->cbs.arg)) {
        pop_all(g, PMX_THROTTLE_GONE);   /* the workspace was deleted: nothing of it may go */
        return;
    }
    if (lim.suspended) {
        if (lim.hold_ms > 0) {
            /* Shut: wait out the hold; a resume comes sooner by pmx_gate_wake. */
            g->retry_at = uv_now(t->loop) + lim.hold_ms;
            return;
        }
        pop_all(g, PMX_THROTTLE_SUSPENDED);
        return;
    }
    if (lim.rate_per_second <= 0 && lim.daily_quota <= 0) {
        pop_all(g, PMX_THROTTLE_GO);   /* no limit any more: everything waiting goes */
        return;
    }
    /* Items with nothing to count (held only while the gate was shut) go. */
    while (g->head && g->head->n == 0) {
        bool last = g->count == 1;
        pop(g, PMX_THROTTLE_GO);
        if (last) return;   /* g is gone */
    }
    /* Postgres rows are outside input: bring them into the limiter's ranges
     * (a rate below its minimum is the minimum, never "no limit"). */
    unsigned n = g->head->n;
    if (n > PMX_RATELIMIT_N_MAX) n = PMX_RATELIMIT_N_MAX;
    int burst = lim.burst < 1 ? 1 : lim.burst > PMX_RATELIMIT_BURST_MAX ? PMX_RATELIMIT_BURST_MAX : lim.burst;
    double rate = lim.rate_per_second;
    if (rate > 0 && rate < PMX_RATELIMIT_RATE_MIN) rate = PMX_RATELIMIT_RATE_MIN;
    if (rate > PMX_RATELIMIT_RATE_MAX) rate = 0;                 /* effectively unlimited */
    int64_t quota = lim.daily_quota > PMX_RATELIMIT_QUOTA_MAX ? 0 : lim.daily_quota;
    if (rate <= 0 && quota <= 0) {
        pop_all(g, PMX_THROTTLE_GO);
        return;
    }
    g->asking = true;
    if (pmx_ratelimit_take(t->rl, g->ws, rate, burst, quota, n, on_limit, g) < 0) {
        /* Cannot happen after the clamping above; hold rather than send unlimited. */
        g->asking = false;
        g->retry_at = uv_now(t->loop) + 60000;
        pmx_log_error("rate limiter refused the limits of ws=%s; holding its jobs", g->ws);
    }
}

static void timer_cb(uv_timer_t *h)
{
    pmx_gate_t *t = h->data;
    if (t->flushing) {
        t->flushing = false;
        gate_t *g;
        while ((g = t->gates)) {
            if (g->asking) pmx_ratelimit_cancel(t->rl, g);
            g->asking = false;
            pop_all(g, PMX_THROTTLE_DROP);
        }
        return;
    }
    uint64_t now = uv_now(t->loop);
    for (gate_t *g = t->gates, *next; g; g = next) {
        next = g->next;
        if (!g->asking && g->retry_at <= now) ask(g);   /* may remove g */
    }
    arm(t);
}

/* Sets the timer for the earliest gate that is due to ask. */
static void arm(pmx_gate_t *t)
{
    uint64_t now = uv_now(t->loop), due = UINT64_MAX;
    for (gate_t *g = t->gates; g; g = g->next)
        if (!g->asking && g->retry_at < due) due = g->retry_at;
    if (t->flushing) due = now;
    if (due == UINT64_MAX) {
        uv_timer_stop(&t->timer);
        return;
    }
    uv_timer_start(&t->timer, timer_cb, due > now ? due - now : 0, 0);
}

pmx_gate_t *pmx_gate_new(uv_loop_t *loop, pmx_ratelimit_t *rl, const pmx_gate_cbs_t *cbs)
{
    pmx_gate_t *t = pmx_xcalloc(1, sizeof *t);
    t->loop = loop;
    t->rl = rl;
    t->cbs = *cbs;
    uv_timer_init(loop, &t->timer);
    t->timer.data = t;
    return t;
}

void pmx_gate_submit(pmx_gate_t *t, const char *ws, unsigned n, void *item)
{
    gate_t *g = gate_find(t, ws);
    if (!g) {
        g = pmx_xcalloc(1, sizeof *g);
        g->t = t;
        g->ws = pmx_xstrdup(ws);
        g->next = t->gates;
        t->gates = g;
        t->cbs.pause(ws, true, t->cbs.arg);
    }
    item_t *it = pmx_xcalloc(1, sizeof *it);
    it->item = item;
    it->n = n;
    if (g->tail) g->tail->next = it;
    else g->head = it;
    g->tail = it;
    g->count++;
    arm(t);
}

void pmx_gate_wake(pmx_gate_t *t)
{
    for (gate_t *g = t->gates; g; g = g->next) g->retry_at = 0;
    arm(t);
}

void pmx_gate_flush(pmx_gate_t *t)
{
    t->flushing = true;
    arm(t);
}

size_t pmx_gate_waiting(const pmx_gate_t *t)
{
    size_t n = 0;
    for (const gate_t *g = t->gates; g; g = g->next) n += g->count;
    return n;
}

static void closed(uv_handle_t *h)
{
    free(h->data);
}

void pmx_gate_free(pmx_gate_t *t)
{
    if (!t) return;
    gate_t *g;
    while ((g = t->gates)) {
        t->gates = g->next;
        if (g->asking) pmx_ratelimit_cancel(t->rl, g);
        while (g->head) {
            item_t *it = g->head;
            g->head = it->next;
            free(it);
        }
        free(g->ws);
        free(g);
    }
    uv_close((uv_handle_t *)&t->timer, closed);
}
