/*
 * Rate-limit gates (docs/delivery.md "Rate limits"): where a worker's jobs wait for
 * their workspace's rate limit or daily quota (queue/ratelimit.h decides, on
 * Redis, across every worker and host).
 *
 * One gate per workspace with waiting jobs, FIFO. Only the job at the head
 * asks the limiter; the others wait behind it, so a throttled workspace costs
 * one Redis script per allowed job or per wait, never a poll per job. While
 * a gate holds jobs its workspace is paused in the consumer (the pause
 * callback), so no more of its jobs are read: it waits in its own stream,
 * and every other workspace goes on. When the gate empties, reading resumes.
 *
 * A suspended workspace's gate is shut: its jobs wait (without asking the
 * limiter) until the workspace is resumed, and then go on through the rate
 * limit as usual, or until its hold is over, and then come back SUSPENDED.
 *
 * Items are the caller's (the pipeline's jobs); the verdict callback gets
 * each one back exactly once: GO (its recipients are counted: send), NEVER
 * (more recipients than the daily quota: can never be sent under it),
 * SUSPENDED (the workspace stayed suspended past its hold: reject it), GONE
 * (the workspace does not exist any more: reject it), or
 * DROP (pmx_gate_flush, e.g. draining: give it back to the queue).
 * Everything runs on the loop; verdicts never come from inside a call into
 * this module.
 */
#ifndef PMX_WORKERS_GATE_H
#define PMX_WORKERS_GATE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "queue/ratelimit.h"

typedef struct pmx_gate pmx_gate_t;

typedef enum {
    PMX_THROTTLE_GO = 0,
    PMX_THROTTLE_NEVER,
    PMX_THROTTLE_SUSPENDED,
    PMX_THROTTLE_GONE,
    PMX_THROTTLE_DROP,
} pmx_gate_verdict_t;

typedef struct {
    double   rate_per_second;  /* 0 = unlimited */
    int      burst;
    int64_t  daily_quota;      /* 0 = none */
    bool     suspended;        /* shut: nothing goes */
    uint64_t hold_ms;          /* suspended: how much longer its jobs wait (0 = reject now) */
} pmx_gate_limits_t;

typedef struct {
    /* The workspace's current limits; false when it does not exist any more
     * (its waiting jobs then come back GONE). Asked before every request and
     * after every grant. */
    bool (*limits)(const char *ws, pmx_gate_limits_t *out, void *arg);
    void (*verdict)(void *item, pmx_gate_verdict_t v, void *arg);
    /* Stop (true) / resume (false) reading the workspace's stream. */
    void (*pause)(const char *ws, bool paused, void *arg);
    void *arg;
} pmx_gate_cbs_t;

pmx_gate_t *pmx_gate_new(uv_loop_t *loop, pmx_ratelimit_t *rl, const pmx_gate_cbs_t *cbs);
/* Queues item behind ws's gate. n recipients are counted when it goes; an
 * item with n = 0 (nothing to relay) waits only while the gate is shut. */
void pmx_gate_submit(pmx_gate_t *t, const char *ws, unsigned n, void *item);
/* Limits may have changed (settings reload): every gate asks again now. */
void pmx_gate_wake(pmx_gate_t *t);
/* Every waiting item gets DROP (from the loop, soon). */
void pmx_gate_flush(pmx_gate_t *t);
/* Items waiting in every gate. */
size_t pmx_gate_waiting(const pmx_gate_t *t);
/* Frees the gates without verdicts (the caller reclaims its items itself)
 * and t once its timer has closed. */
void pmx_gate_free(pmx_gate_t *t);

#endif
