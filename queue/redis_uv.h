/*
 * hiredis's async context on a libuv loop, with the writes of one loop turn
 * made as one (docs/queue.md, "The Redis connection").
 *
 * hiredis's own libuv adapter calls uv_poll_start for every command and after
 * every write, and libuv makes each of those an EPOLL_CTL_DEL now and an
 * EPOLL_CTL_ADD at the next poll: four epoll_ctl calls and a loop turn per
 * command batch. Here the socket is watched for reading all the time, and a
 * command only marks the context as having output: a uv_idle handle, which
 * runs before the loop next waits for events (and keeps it from blocking),
 * writes everything the turn queued in one write(2). Only output the socket
 * does not take at once (or a connect still in progress) is left to a watch
 * for writability.
 *
 *   redisAsyncContext *ac = redisAsyncConnect(host, port);
 *   if (pmx_redis_uv_attach(ac, loop) != 0) { redisAsyncFree(ac); ... }
 */
#ifndef PMX_QUEUE_REDIS_UV_H
#define PMX_QUEUE_REDIS_UV_H

#include <hiredis/async.h>
#include <uv.h>

/* 0, or -1 (nothing attached: the caller still owns and frees ac). */
int pmx_redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop);

#endif
