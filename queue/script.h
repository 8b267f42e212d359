/*
 * Lua scripts on Redis: EVALSHA first, EVAL when Redis answers NOSCRIPT (a
 * restarted Redis, SCRIPT FLUSH, a failover), so a script's text crosses the
 * wire only when Redis does not have it cached. The scripts themselves live
 * as C strings beside the code that uses them (queue/retry.c,
 * queue/consumer.c, queue/reclaim.c).
 *
 * Ownership: the arguments are copied, so the caller's buffers may go away
 * at once. cb is called exactly once when pmx_queue_script_run() returned 0:
 * with the script's reply (freed by hiredis after cb returns), or with
 * reply == NULL when the connection went away before it came (including
 * during the EVAL resend). When run() returns -1 (Redis not up) cb is never
 * called.
 */
#ifndef PMX_QUEUE_SCRIPT_H
#define PMX_QUEUE_SCRIPT_H
#include <stddef.h>

#include <hiredis/async.h>

#include "queue/redis_conn.h"

typedef struct {
    const char *name;   /* for logs */
    const char *text;   /* the Lua source */
    char        sha[41];/* SHA-1 hex of text, computed on first use */
} pmx_queue_script_t;

#define PMX_QUEUE_SCRIPT(name, text) { (name), (text), { 0 } }

/*
 * Runs script s with nkeys KEYS followed by the other ARGV: args[0..nargs)
 * (the first nkeys are the keys). lens may be NULL for NUL-terminated args.
 */
int pmx_queue_script_run(pmx_redis_conn_t *rc, pmx_queue_script_t *s, int nkeys,
                         int nargs, const char *const *args, const size_t *lens,
                         redisCallbackFn *cb, void *privdata);

/* The SHA-1 hex of s's text (computes it once). */
const char *pmx_queue_script_sha(pmx_queue_script_t *s);

#endif
