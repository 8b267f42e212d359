/* hiredis on libuv with one write per loop turn; see redis_uv.h. */
#include "queue/redis_uv.h"

#include <stdbool.h>
#include <stdlib.h>

#include "lib/mem.h"

typedef struct {
    redisAsyncContext *ac;        /* NULL once hiredis let go (cleanup) */
    uv_poll_t          poll;
    uv_idle_t          flush;     /* writes what the turn queued; while active, the loop does not block */
    int                events;    /* what poll watches now */
    bool               queued;    /* output waits for flush */
    bool               flushing;  /* inside flush's redisAsyncHandleWrite */
    int                open;      /* handles not yet closed; freed at 0 */
} redis_uv_t;

static void on_poll(uv_poll_t *h, int status, int events);

static void set_events(redis_uv_t *p, int events)
{
    if (events == p->events || !p->ac) return;
    p->events = events;
    if (events) uv_poll_start(&p->poll, events, on_poll);
    else uv_poll_stop(&p->poll);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    redis_uv_t *p = h->data;
    int watched = p->events;
    if (status < 0) {
        /* An error on the socket; libuv has stopped the watch. hiredis reads
         * (a reply may still come before the error) and finds out; if it does
         * not, the watch is restarted and reports the error again. */
        events = watched;
        p->events = 0;
    }
    if (p->ac && (events & UV_READABLE)) redisAsyncHandleRead(p->ac);
    if (p->ac && (events & UV_WRITABLE)) redisAsyncHandleWrite(p->ac);
    if (status < 0) set_events(p, p->events | watched);
}

/* An active idle handle runs once per loop turn, after the timers and before
 * the loop waits for events, and makes that wait not block: whatever a turn
 * queued (in a callback of any phase, another connection's flush included)
 * goes out before the loop sleeps. */
static void on_flush(uv_idle_t *h)
{
    redis_uv_t *p = h->data;
    uv_idle_stop(h);
    if (!p->queued || !p->ac) return;
    p->queued = false;
    p->flushing = true;
    redisAsyncHandleWrite(p->ac);   /* may end in cleanup: p stays, p->ac goes */
    p->flushing = false;
}

static void add_read(void *arg)
{
    redis_uv_t *p = arg;
    set_events(p, p->events | UV_READABLE);
}

static void del_read(void *arg)
{
    redis_uv_t *p = arg;
    set_events(p, p->events & ~UV_READABLE);
}

/* hiredis has output. While connected and not inside a flush, the flush of
 * this turn writes it; a connect in progress, or output a flush could not
 * write all of, waits for the socket to be writable. */
static void add_write(void *arg)
{
    redis_uv_t *p = arg;
    if (!p->ac) return;
    if ((p->ac->c.flags & REDIS_CONNECTED) && !p->flushing) {
        if (p->events & UV_WRITABLE) return;     /* already waiting for room */
        p->queued = true;
        uv_idle_start(&p->flush, on_flush);
        return;
    }
    set_events(p, p->events | UV_WRITABLE);
}

static void del_write(void *arg)
{
    redis_uv_t *p = arg;
    p->queued = false;
    set_events(p, p->events & ~UV_WRITABLE);
}

static void on_closed(uv_handle_t *h)
{
    redis_uv_t *p = h->data;
    if (--p->open == 0) free(p);
}

static void cleanup(void *arg)
{
    redis_uv_t *p = arg;
    p->ac = NULL;
    uv_close((uv_handle_t *)&p->poll, on_closed);
    uv_close((uv_handle_t *)&p->flush, on_closed);
}

int pmx_redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    if (ac->ev.data) return -1;
    redis_uv_t *p = pmx_xcalloc(1, sizeof *p);
    if (uv_poll_init(loop, &p->poll, ac->c.fd) != 0) {
        free(p);
        return -1;
    }
    p->open = 1;
    p->poll.data = p;
    uv_idle_init(loop, &p->flush);       /* cannot fail */
    p->open = 2;
    p->flush.data = p;
    p->ac = ac;
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = cleanup;
    ac->ev.data = p;
    return 0;
}
