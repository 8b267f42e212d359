/*
 * The deferred-retry schedule of one workspace: the sorted set
 * pmx:{ws}:retry, score = due time (ms since the epoch, Redis's clock),
 * member = the job encoded by queue/jobcodec.h (user fields + _msg,
 * _attempt, _first).
 *
 * Two Lua scripts, both atomic and both on Redis's own clock (TIME), so
 * workers on hosts with skewed clocks agree:
 * - defer: XACK the entry, and only if it was still pending, ZADD it to the
 *   schedule at now + delay and XDEL it. A job is therefore either pending in
 *   the stream or scheduled, never both and never neither; a second defer or
 *   ack of the same entry (a consumer that lost it to a reclaim) does nothing.
 * - move: ZRANGEBYSCORE -inf now LIMIT 0 limit, XADD each member's fields back
 *   to the stream and ZREM it. A member that does not parse is moved to
 *   pmx:{ws}:dead with `_raw` and `_reason retry_member_malformed` instead.
 *
 * Callbacks follow queue/script.h: called once, reply == NULL when the
 * connection went away (nothing was confirmed; both scripts are atomic, so
 * Redis either ran one completely or not at all), reply freed after the
 * callback. Functions return -1 (callback never called) when Redis is not up.
 */
#ifndef PMX_QUEUE_RETRY_H
#define PMX_QUEUE_RETRY_H
#include <stddef.h>
#include <stdint.h>

#include <hiredis/async.h>

#include "queue/redis_conn.h"

#define PMX_QUEUE_DEAD_MAXLEN 10000   /* poison / bad members kept per workspace (~) */

/* Reply: integer 1 = scheduled, 0 = the entry was no longer pending (nothing done). */
int pmx_queue_retry_defer(pmx_redis_conn_t *rc, const char *stream, const char *retry_key,
                          const char *group, const char *entry_id, uint64_t delay_ms,
                          const char *member, size_t member_len,
                          redisCallbackFn *cb, void *privdata);

int pmx_queue_retry_move(pmx_redis_conn_t *rc, const char *retry_key, const char *stream,
                         const char *dead, unsigned limit, redisCallbackFn *cb, void *privdata);

/* What one move did. */
typedef struct {
    long long moved;      /* members XADDed back to the stream */
    long long bad;        /* members that did not parse (moved to dead) */
    long long left;       /* members still scheduled */
    long long next_due;   /* score of the earliest one left, -1 if none */
    long long now;        /* Redis's clock when it ran (ms) */
} pmx_queue_retry_moved_t;

/* Checks the move script's reply; 0, or -1 with a reason. */
int pmx_queue_retry_parse_move(const redisReply *r, pmx_queue_retry_moved_t *out,
                               char *err, size_t errlen);

#endif
