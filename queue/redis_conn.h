/*
 * One worker's Redis connection: hiredis's async API on the worker's libuv
 * loop (hiredis 0.14, attached by queue/redis_uv.h), kept up by itself. It connects,
 * sends AUTH when a password is configured, counts itself "up" only once
 * Redis answered PING, pings every few seconds while idle to notice a Redis
 * that stopped answering, and reconnects with a growing, jittered delay
 * (250 ms doubling to 5 s) after any failure. Each change between up and
 * down is logged once; repeated failed attempts are logged at debug level.
 *
 * Ownership, as hiredis defines it:
 * - A command's callback is always called exactly once: with the reply, or
 *   with reply == NULL when the connection is lost or closed before the reply
 *   came. hiredis frees the reply after the callback returns, so copy what
 *   you keep. privdata must stay valid until then: an owner that goes away
 *   first must leave a "zombie" (a flag its callback checks) rather than
 *   free what privdata points to.
 * - Commands are refused (return -1, callback never called) while the
 *   connection is not up; callers decide whether to retry.
 * - pmx_redis_conn_close() may be called from any callback; the struct is
 *   freed once its libuv handles have closed (the loop must keep running).
 * hiredis writes with write(2): the process must ignore SIGPIPE (postmuxd and
 * its workers do), or a Redis that goes away mid-write kills it.
 */
#ifndef PMX_QUEUE_REDIS_CONN_H
#define PMX_QUEUE_REDIS_CONN_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/async.h>
#include <uv.h>

#include "lib/buf.h"

typedef struct pmx_redis_conn pmx_redis_conn_t;

/* Called when the connection becomes usable (up) or stops being so. */
typedef void (*pmx_redis_conn_state_fn)(pmx_redis_conn_t *rc, bool up, void *arg);

#define PMX_REDIS_BACKOFF_MIN_MS   250u
#define PMX_REDIS_BACKOFF_MAX_MS   5000u
#define PMX_REDIS_CONNECT_TIMEOUT_MS 5000u
#define PMX_REDIS_PING_INTERVAL_MS 2000u
#define PMX_REDIS_PING_TIMEOUT_MS  6000u

/*
 * address: the [redis] address ("HOST:PORT", "[v6]:PORT", "unix:/path").
 * password: NULL or the AUTH password (copied, wiped on free).
 * Returns NULL with a reason in err if the address does not parse.
 * Nothing happens until pmx_redis_conn_start().
 */
pmx_redis_conn_t *pmx_redis_conn_new(uv_loop_t *loop, const char *address,
                                     const char *password, size_t pwlen,
                                     char *err, size_t errlen);
void pmx_redis_conn_set_state_cb(pmx_redis_conn_t *rc, pmx_redis_conn_state_fn fn, void *arg);
/* Starts the first connection attempt. */
void pmx_redis_conn_start(pmx_redis_conn_t *rc);
bool pmx_redis_conn_is_up(const pmx_redis_conn_t *rc);
/* The address as configured (for logs). */
const char *pmx_redis_conn_address(const pmx_redis_conn_t *rc);

/* Like redisAsyncCommand / redisAsyncCommandArgv; -1 when not up. */
int pmx_redis_conn_command(pmx_redis_conn_t *rc, redisCallbackFn *fn, void *privdata,
                           const char *fmt, ...);
int pmx_redis_conn_command_argv(pmx_redis_conn_t *rc, redisCallbackFn *fn, void *privdata,
                                int argc, const char **argv, const size_t *argvlen);
/*
 * Like pmx_redis_conn_command_argv for a command whose last argument is big
 * (a message) and already sits in the caller's buffer, at last->data + off to
 * the buffer's end, with free octets before it. argc/argv/argvlen are the
 * arguments before it. The RESP of those
 * arguments is written into those octets (the argument moves only when they
 * are too few) and hiredis copies the command once into its output buffer
 * (redisAsyncCommandArgv would copy it twice). *last is freed either way.
 * -1 when not up.
 */
int pmx_redis_conn_command_last(pmx_redis_conn_t *rc, redisCallbackFn *fn, void *privdata,
                                int argc, const char *const *argv, const size_t *argvlen,
                                pmx_buf_t *last, size_t off);
/*
 * Appends the RESP of a command of argc arguments up to its last one's
 * octets: "*argc", every argument but the last, then "$last_len\r\n". The
 * caller follows it with the last argument (last_len octets) and "\r\n";
 * a big last argument (a message) is then never copied to format it.
 */
void pmx_redis_format_head(pmx_buf_t *out, int argc, const char *const *argv,
                           const size_t *argvlen, size_t last_len);
/* The conn a command callback's context belongs to. */
pmx_redis_conn_t *pmx_redis_conn_of(const redisAsyncContext *ac);

/*
 * Disconnects (pending callbacks get NULL, the state callback is not called)
 * and frees rc once its handles are closed.
 */
void pmx_redis_conn_close(pmx_redis_conn_t *rc);

#endif
