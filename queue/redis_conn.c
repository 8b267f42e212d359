/*
 * A self-healing async Redis connection on a libuv loop; see redis_conn.h.
 *
 * States: DOWN (waiting for the retry timer) -> CONNECTING (TCP/unix connect
 * in progress, bounded by a timeout) -> HANDSHAKE (AUTH if configured, then
 * PING) -> UP. Any failure goes back to DOWN and arms the retry timer.
 *
 * hiredis rules this file follows: a context that failed in onConnect, or
 * that hiredis is disconnecting, is freed by hiredis itself after the
 * callback returns, so we only forget our pointer; a context we drop
 * ourselves is freed with redisAsyncFree(), which hiredis defers when we are
 * inside one of its reply callbacks.
 */
#include "queue/redis_conn.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/mem.h"
#include "queue/endpoint.h"
#include "queue/redis_uv.h"

typedef enum { RC_DOWN, RC_CONNECTING, RC_HANDSHAKE, RC_UP } rc_phase_t;

struct pmx_redis_conn {
    uv_loop_t         *loop;
    pmx_queue_endpoint_t   addr;
    char              *address;
    char              *password;     /* NULL = no AUTH */
    size_t             pwlen;

    redisAsyncContext *ac;           /* NULL while DOWN */
    rc_phase_t         phase;
    uv_timer_t         timer;        /* retry delay, or connect timeout */
    uv_timer_t         ping_timer;
    bool               ping_outstanding;
    bool               ping_overdue;  /* seen past the timeout by one tick already */
    uint64_t           ping_sent_ms;

    uint64_t           backoff_ms;
    unsigned int       rand_state;
    bool               ever_up;
    bool               failure_logged; /* this run of failures was logged */
    char               drop_reason[256];

    pmx_redis_conn_state_fn state_fn;
    void              *state_arg;

    bool               closing;
    int                handles_open;
};

static void schedule_retry(pmx_redis_conn_t *rc, const char *why);
static void on_connect(const redisAsyncContext *ac, int status);
static void on_disconnect(const redisAsyncContext *ac, int status);

pmx_redis_conn_t *pmx_redis_conn_new(uv_loop_t *loop, const char *address,
                                     const char *password, size_t pwlen,
                                     char *err, size_t errlen)
{
    pmx_queue_endpoint_t addr;
    if (pmx_queue_parse_endpoint(address, &addr, err, errlen) < 0) return NULL;

    pmx_redis_conn_t *rc = pmx_xcalloc(1, sizeof *rc);
    rc->loop = loop;
    rc->addr = addr;
    rc->address = pmx_xstrdup(address);
    if (password && pwlen > 0) {
        rc->password = pmx_xmalloc(pwlen + 1);
        memcpy(rc->password, password, pwlen);
        rc->password[pwlen] = '\0';
        rc->pwlen = pwlen;
    }
    rc->phase = RC_DOWN;
    rc->backoff_ms = PMX_REDIS_BACKOFF_MIN_MS;
    rc->rand_state = (unsigned int)getpid() ^ (unsigned int)uv_hrtime();
    uv_timer_init(loop, &rc->timer);
    uv_timer_init(loop, &rc->ping_timer);
    rc->timer.data = rc;
    rc->ping_timer.data = rc;
    rc->handles_open = 2;
    return rc;
}

void pmx_redis_conn_set_state_cb(pmx_redis_conn_t *rc, pmx_redis_conn_state_fn fn, void *arg)
{
    rc->state_fn = fn;
    rc->state_arg = arg;
}

bool pmx_redis_conn_is_up(const pmx_redis_conn_t *rc)
{
    return rc->phase == RC_UP;
}

const char *pmx_redis_conn_address(const pmx_redis_conn_t *rc)
{
    return rc->address;
}

pmx_redis_conn_t *pmx_redis_conn_of(const redisAsyncContext *ac)
{
    return ac->data;
}

static void set_up(pmx_redis_conn_t *rc, bool up)
{
    if (rc->state_fn) rc->state_fn(rc, up, rc->state_arg);
}

/*
 * Forgets the context (hiredis or redisAsyncFree releases it). Its data
 * pointer keeps pointing at rc so callers' callbacks still find their conn;
 * our own callbacks compare rc->ac with the context they got.
 */
static void forget_context(pmx_redis_conn_t *rc)
{
    rc->ac = NULL;
    rc->ping_outstanding = rc->ping_overdue = false;
    uv_timer_stop(&rc->ping_timer);
}

/* Drops a context we own from outside hiredis's connect/disconnect callbacks. */
static void drop_context(pmx_redis_conn_t *rc, const char *why)
{
    redisAsyncContext *ac = rc->ac;
    bool was_up = rc->phase == RC_UP;
    snprintf(rc->drop_reason, sizeof rc->drop_reason, "%s", why);
    forget_context(rc);
    rc->phase = RC_DOWN;
    /* Our pointer is gone, so on_disconnect (if hiredis calls it) is a no-op. */
    if (ac) redisAsyncFree(ac);
    if (rc->closing) return;
    if (was_up) {
        pmx_log_warn("redis connection lost addr=%s err=\"%s\"", rc->address, why);
        rc->failure_logged = true;
        set_up(rc, false);
        if (rc->closing) return;
    }
    schedule_retry(rc, why);
}

static void connect_timeout_cb(uv_timer_t *t)
{
    pmx_redis_conn_t *rc = t->data;
    if (rc->phase == RC_CONNECTING || rc->phase == RC_HANDSHAKE)
        drop_context(rc, "connect timed out");
}

static void start_connect(pmx_redis_conn_t *rc)
{
    redisAsyncContext *ac = rc->addr.unix_socket
        ? redisAsyncConnectUnix(rc->addr.host)
        : redisAsyncConnect(rc->addr.host, rc->addr.port);
    if (!ac) {
        schedule_retry(rc, "cannot allocate a hiredis context");
        return;
    }
    if (ac->err) {
        char why[256];
        snprintf(why, sizeof why, "%s", ac->errstr);
        redisAsyncFree(ac);
        schedule_retry(rc, why);
        return;
    }
    if (pmx_redis_uv_attach(ac, rc->loop) != 0) {
        redisAsyncFree(ac);
        schedule_retry(rc, "cannot attach to the event loop");
        return;
    }
    ac->data = rc;
    rc->ac = ac;
    rc->phase = RC_CONNECTING;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    uv_timer_start(&rc->timer, connect_timeout_cb, PMX_REDIS_CONNECT_TIMEOUT_MS, 0);
}

static void retry_cb(uv_timer_t *t)
{
    pmx_redis_conn_t *rc = t->data;
    if (!rc->closing && rc->phase == RC_DOWN) start_connect(rc);
}

static void schedule_retry(pmx_redis_conn_t *rc, const char *why)
{
    rc->phase = RC_DOWN;
    if (!rc->failure_logged) {
        pmx_log_warn("redis unreachable addr=%s err=\"%s\" (retrying with backoff)",
                     rc->address, why);
        rc->failure_logged = true;
    } else {
        pmx_log_debug("redis still unreachable addr=%s err=\"%s\" retry_ms=%llu",
                      rc->address, why, (unsigned long long)rc->backoff_ms);
    }
    /* Up to 25 % jitter so a fleet of workers does not retry in step. */
    uint64_t delay = rc->backoff_ms;
    delay += (uint64_t)rand_r(&rc->rand_state) % (delay / 4 + 1);
    uv_timer_start(&rc->timer, retry_cb, delay, 0);
    rc->backoff_ms *= 2;
    if (rc->backoff_ms > PMX_REDIS_BACKOFF_MAX_MS) rc->backoff_ms = PMX_REDIS_BACKOFF_MAX_MS;
}

static void ping_timer_cb(uv_timer_t *t);

static void health_ping_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)reply;
    (void)priv;
    pmx_redis_conn_t *rc = ac->data;
    if (rc->ac == ac) rc->ping_outstanding = rc->ping_overdue = false;
}

static void ping_timer_cb(uv_timer_t *t)
{
    pmx_redis_conn_t *rc = t->data;
    if (rc->phase != RC_UP) return;
    if (rc->ping_outstanding) {
        /* Timers run before the loop reads its sockets: after a stall of the loop
         * itself the answer may be waiting unread. Drop only when a second tick,
         * with a round of I/O in between, still finds it missing. */
        if (uv_now(rc->loop) - rc->ping_sent_ms >= PMX_REDIS_PING_TIMEOUT_MS) {
            if (rc->ping_overdue) drop_context(rc, "no answer to PING");
            else rc->ping_overdue = true;
        }
        return;
    }
    if (redisAsyncCommand(rc->ac, health_ping_cb, NULL, "PING") == REDIS_OK) {
        rc->ping_outstanding = true;
        rc->ping_sent_ms = uv_now(rc->loop);
    }
}

/* Handshake replies: AUTH (if any), then PING; UP when PING answers. */
static void handshake_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    pmx_redis_conn_t *rc = ac->data;
    redisReply *r = reply;
    bool is_ping = priv != NULL;
    if (!r || rc->ac != ac || rc->phase != RC_HANDSHAKE) return;   /* lost meanwhile */

    if (r->type == REDIS_REPLY_ERROR) {
        char why[300];
        snprintf(why, sizeof why, "%s refused: %s", is_ping ? "PING" : "AUTH", r->str);
        drop_context(rc, why);   /* redisAsyncFree is deferred: we are in a callback */
        return;
    }
    if (!is_ping) return;

    uv_timer_stop(&rc->timer);
    rc->phase = RC_UP;
    rc->backoff_ms = PMX_REDIS_BACKOFF_MIN_MS;
    pmx_log_info("redis %s addr=%s", rc->ever_up ? "reconnected" : "connected", rc->address);
    rc->ever_up = true;
    rc->failure_logged = false;
    uv_timer_start(&rc->ping_timer, ping_timer_cb, PMX_REDIS_PING_INTERVAL_MS,
                   PMX_REDIS_PING_INTERVAL_MS);
    set_up(rc, true);
}

static void on_connect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    pmx_redis_conn_t *rc = ac->data;
    if (rc->ac != ac) return;
    if (status != REDIS_OK) {
        /* hiredis frees this context when we return. */
        char why[256];
        snprintf(why, sizeof why, "%s", ac->errstr ? ac->errstr : "connect failed");
        forget_context(rc);
        uv_timer_stop(&rc->timer);
        schedule_retry(rc, why);
        return;
    }
    rc->phase = RC_HANDSHAKE;
    int ok = REDIS_OK;
    if (rc->password)
        ok = redisAsyncCommand(ac, handshake_cb, NULL, "AUTH %b", rc->password, rc->pwlen);
    if (ok == REDIS_OK)
        ok = redisAsyncCommand(ac, handshake_cb, rc, "PING");
    /* On failure the connect timeout drops the context. */
}

static void on_disconnect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    pmx_redis_conn_t *rc = ac->data;
    if (rc->ac != ac) return;   /* a context we dropped ourselves */
    /* hiredis frees this context when we return. */
    char why[256];
    snprintf(why, sizeof why, "%s",
             status == REDIS_OK ? "connection closed" : (ac->errstr ? ac->errstr : "error"));
    bool was_up = rc->phase == RC_UP;
    forget_context(rc);
    uv_timer_stop(&rc->timer);
    rc->phase = RC_DOWN;
    if (rc->closing) return;
    if (was_up) {
        pmx_log_warn("redis connection lost addr=%s err=\"%s\"", rc->address, why);
        rc->failure_logged = true;
        set_up(rc, false);
        if (rc->closing) return;
    }
    schedule_retry(rc, why);
}

void pmx_redis_conn_start(pmx_redis_conn_t *rc)
{
    if (rc->phase == RC_DOWN && !rc->closing) start_connect(rc);
}

int pmx_redis_conn_command(pmx_redis_conn_t *rc, redisCallbackFn *fn, void *privdata,
                           const char *fmt, ...)
{
    if (rc->phase != RC_UP || rc->closing) return -1;
    va_list ap;
    va_start(ap, fmt);
    int r = redisvAsyncCommand(rc->ac, fn, privdata, fmt, ap);
    va_end(ap);
    return r == REDIS_OK ? 0 : -1;
}

int pmx_redis_conn_command_argv(pmx_redis_conn_t *rc, redisCallbackFn *fn, void *privdata,
                                int argc, const char **argv, const size_t *argvlen)
{
    if (rc->phase != RC_UP || rc->closing) return -1;
    return redisAsyncCommandArgv(rc->ac, fn, privdata, argc, argv, argvlen) == REDIS_OK ? 0 : -1;
}

int pmx_redis_conn_command_last(pmx_redis_conn_t *rc, redisCallbackFn *fn, void *privdata,
                                int argc, const char *const *argv, const size_t *argvlen,
                                pmx_buf_t *last, size_t off)
{
    if (rc->phase != RC_UP || rc->closing) {
        pmx_buf_free(last);
        return -1;
    }
    size_t len = last->len - off;
    pmx_buf_t head = PMX_BUF_INIT;
    pmx_redis_format_head(&head, argc + 1, argv, argvlen, len);
    if (head.len > off) {
        size_t more = head.len - off;
        pmx_buf_reserve(last, more);
        memmove(last->data + off + more, last->data + off, len);
        off += more;
        last->len = off + len;
    }
    pmx_buf_append(last, "\r\n", 2);
    size_t start = off - head.len;
    memcpy(last->data + start, head.data, head.len);
    pmx_buf_free(&head);
    int rv = redisAsyncFormattedCommand(rc->ac, fn, privdata, last->data + start,
                                        last->len - start) == REDIS_OK ? 0 : -1;
    pmx_buf_free(last);
    return rv;
}

void pmx_redis_format_head(pmx_buf_t *out, int argc, const char *const *argv,
                           const size_t *argvlen, size_t last_len)
{
    pmx_buf_appendf(out, "*%d\r\n", argc);
    for (int i = 0; i + 1 < argc; i++) {
        pmx_buf_appendf(out, "$%zu\r\n", argvlen[i]);
        pmx_buf_append(out, argv[i], argvlen[i]);
        pmx_buf_append(out, "\r\n", 2);
    }
    pmx_buf_appendf(out, "$%zu\r\n", last_len);
}

static void handle_closed(uv_handle_t *h)
{
    pmx_redis_conn_t *rc = h->data;
    if (--rc->handles_open > 0) return;
    if (rc->password) {
        pmx_wipe(rc->password, rc->pwlen);
        free(rc->password);
    }
    free(rc->address);
    free(rc);
}

void pmx_redis_conn_close(pmx_redis_conn_t *rc)
{
    if (rc->closing) return;
    rc->closing = true;
    redisAsyncContext *ac = rc->ac;
    forget_context(rc);
    rc->phase = RC_DOWN;
    /* Pending callbacks run now with NULL; hiredis defers this inside its callbacks. */
    if (ac) redisAsyncFree(ac);
    uv_close((uv_handle_t *)&rc->timer, handle_closed);
    uv_close((uv_handle_t *)&rc->ping_timer, handle_closed);
}
