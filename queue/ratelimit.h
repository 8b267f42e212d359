/*
 * Per-workspace rate limit and daily quota (docs/delivery.md "Rate limits"), and the
 * per-site rate of direct delivery (pmx_ratelimit_take_site; "Shaping"), shared by
 * every worker and every host on the same Redis: one Lua script decides, on
 * Redis's own clock (TIME), so workers with skewed clocks agree and two
 * workers never both take the last token.
 *
 * Counted in recipients. A request asks for n recipients of one workspace:
 * - Rate (GCRA, emission interval I = 1/rate, tolerance burst x I): state is
 *   {prefix}:{ws}:rate, a hash {t = theoretical arrival time (us, Redis
 *   clock), i = the interval it was computed with}. n <= burst is allowed
 *   when max(t, now) + n*I - now <= burst*I; then t = max(t, now) + n*I. So
 *   over any window of T seconds at most rate*T + burst recipients pass, and
 *   a full bucket lets `burst` go at once.
 * - n > burst ("oversize", e.g. a 1000-recipient job with burst 10) could
 *   never fit; it is allowed as soon as the bucket is full (t <= now, i.e.
 *   it is checked as if it cost `burst`) and is charged all n, so the
 *   workspace then waits n/rate before its next recipient: the long-run rate
 *   holds, and only that one message exceeds the burst, by n - burst.
 * - Mixed sizes under contention: a greedy limiter would let 1-recipient
 *   requests take every token as it frees and starve a 3-recipient one
 *   forever. So a refused request for more than 1 recipient leaves a
 *   "hold" (fields w = its checked cost, h = when it was told to come back
 *   + 0.5 s): while it lasts, smaller requests pass only if there is room
 *   for them AND the held cost, so the bigger one gets the tokens first.
 *   The grant that ends a hold marks the hash (b) so the next hold waits
 *   until some other request has passed: big and small requests alternate,
 *   neither starves. A hold whose owner never returns costs at most until
 *   h. Holds never change what is counted: the rate*T + burst bound holds.
 * - Changed limits apply on the next request: a new burst at once; a new
 *   rate rescales what is still owed (t - now) by new I / old I, so raising
 *   the rate also shortens the current wait.
 * - Daily quota: {prefix}:{ws}:quota:YYYYMMDD (UTC date of Redis's clock)
 *   counts the recipients allowed that day (INCRBY, expires at the end of
 *   the next day). used + n > quota is refused until the next UTC midnight.
 *   n > quota can never pass under that quota: `never` is set (the caller
 *   should reject the job, or wait for the limits to change).
 * - Quota and rate are checked together, atomically: a refusal consumes
 *   neither. When both would refuse, the quota (the longer wait) is reported.
 *
 * Unlimited rate (rate_per_second == 0) with no quota (daily_quota == 0):
 * there is nothing to check and the caller should not call at all; if it
 * does, the request is allowed without asking Redis (still from the loop).
 *
 * Callbacks: exactly once per successful pmx_ratelimit_take() unless
 * cancelled or the limiter is freed first; always from the loop, never from
 * inside pmx_ratelimit_take() itself. A cancelled request whose script was
 * already sent may still have consumed its recipients in Redis (the script
 * is atomic: all or nothing) - cancel only when the job will not be sent.
 *
 * Errors (result.status < 0): -EAGAIN Redis not up (nothing was asked),
 * -ECONNRESET the connection went away before the answer (the script may or
 * may not have run), -EPROTO an error or unexpected reply (logged). The
 * caller should wait a little (e.g. a second) and ask again.
 */
#ifndef PMX_QUEUE_RATELIMIT_H
#define PMX_QUEUE_RATELIMIT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>
#include <uv.h>

#include "queue/redis_conn.h"

#define PMX_RATELIMIT_RATE_MAX   1e9        /* recipients per second */
#define PMX_RATELIMIT_RATE_MIN   (1.0 / 86400.0)
#define PMX_RATELIMIT_BURST_MAX  1000000    /* as sql/001_init.sql */
#define PMX_RATELIMIT_N_MAX      1000000u   /* recipients in one request */
#define PMX_RATELIMIT_QUOTA_MAX  INT64_C(1000000000000000)
#define PMX_RATELIMIT_QUOTA_TTL_DAYS 2      /* a day's counter lives until the end of the next */

typedef struct pmx_ratelimit pmx_ratelimit_t;

typedef enum {
    PMX_RATELIMIT_OK = 0,     /* allowed (or an error: see status) */
    PMX_RATELIMIT_RATE,       /* over the rate: wait_ms until it fits */
    PMX_RATELIMIT_QUOTA,      /* today's quota is used up: wait_ms until next UTC midnight */
} pmx_ratelimit_reason_t;

typedef struct {
    int                    status;     /* 0, or < 0 (see above; then allowed is false) */
    bool                   allowed;    /* the n recipients were counted: send them */
    uint64_t               wait_ms;    /* !allowed: ask again after this long (>= 1) */
    pmx_ratelimit_reason_t reason;     /* why not allowed */
    bool                   never;      /* QUOTA and n > daily_quota: will never fit */
    int64_t                quota_used; /* today's count after this request, -1 = no quota */
    int64_t                now_us;     /* Redis's clock when it decided, 0 if not asked */
} pmx_ratelimit_result_t;

typedef void (*pmx_ratelimit_cb)(const pmx_ratelimit_result_t *res, void *arg);

/*
 * prefix: the key prefix ([redis] prefix, "pmx"), 1-200 printable characters
 * without braces. rc must outlive the limiter. NULL with a reason in err if
 * the prefix is not valid.
 */
pmx_ratelimit_t *pmx_ratelimit_new(uv_loop_t *loop, pmx_redis_conn_t *rc, const char *prefix,
                                   char *err, size_t errlen);

/*
 * Asks for n recipients of workspace ws under these limits:
 * rate_per_second 0 = unlimited, else PMX_RATELIMIT_RATE_MIN..MAX with burst
 * 1..PMX_RATELIMIT_BURST_MAX; daily_quota 0 = none, else 1..QUOTA_MAX;
 * n 1..PMX_RATELIMIT_N_MAX. ws: 1-128 printable characters without braces.
 * Returns 0 (cb will be called), or -EINVAL for arguments outside these
 * ranges (logged; cb is not called).
 */
int pmx_ratelimit_take(pmx_ratelimit_t *rl, const char *ws, double rate_per_second, int burst,
                       int64_t daily_quota, unsigned n, pmx_ratelimit_cb cb, void *arg);

/*
 * The same rate (no quota) for a shaping rule's site (routing/shaping.h):
 * n units under {prefix}:site:{site}:rate, with the same script, clock and
 * answers. site: 1-128 printable characters without braces. 0, or -EINVAL.
 */
int pmx_ratelimit_take_site(pmx_ratelimit_t *rl, const char *site, double rate_per_second,
                            int burst, unsigned n, pmx_ratelimit_cb cb, void *arg);

/*
 * Forgets every pending request made with this arg: their callbacks will not
 * be called. For a caller that goes away. Returns how many were cancelled.
 */
size_t pmx_ratelimit_cancel(pmx_ratelimit_t *rl, void *arg);

/* Requests not answered yet (not cancelled). */
size_t pmx_ratelimit_pending(const pmx_ratelimit_t *rl);

/* "rate", "quota" or "" (allowed). */
const char *pmx_ratelimit_reason_name(pmx_ratelimit_reason_t r);

/*
 * Cancels everything pending and frees rl once its timer has closed (the
 * loop must keep running). May be called from a callback.
 */
void pmx_ratelimit_free(pmx_ratelimit_t *rl);

/* Internal, for tests: the Lua function ymd(day) -> "YYYYMMDD" (days since the epoch). */
extern const char pmx__ratelimit_lua_ymd[];

/* Internal, for tests: decodes the script's reply into res (status set). */
void pmx__ratelimit_parse_reply(const redisReply *reply, pmx_ratelimit_result_t *res);

#endif
