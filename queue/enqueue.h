/*
 * Adding one job to a workspace's stream, exactly as any Redis client would
 * (README "Queue (Redis)"; postmux(1) `send`):
 *
 *   XADD {prefix}:{ws}:jobs * name value name value ...
 *
 * The fields go out in the order given, binary-safe (explicit lengths), so a
 * value may hold any byte. Two forms share that one encoding: an asynchronous
 * one for the daemon (SMTP submission, on a worker's pmx_redis_conn_t) and a
 * blocking one for the CLI (`postmux send`, on a hiredis redisContext). Neither
 * checks the fields: callers run pmx_job_decode (lib/job.h) first, the code the
 * worker runs on the job.
 */
#ifndef PMX_QUEUE_ENQUEUE_H
#define PMX_QUEUE_ENQUEUE_H
#include <stddef.h>

#include <hiredis/hiredis.h>

#include "lib/buf.h"
#include "lib/job.h"
#include "queue/redis_conn.h"

/*
 * Sends the XADD on rc. Ownership as queue/redis_conn.h: cb is called exactly
 * once, with the reply (a string, the entry id, on success; an error reply
 * otherwise) or with NULL when the connection went away first; hiredis frees
 * the reply after cb returns; privdata must stay valid until then (an owner
 * that goes first leaves a zombie: see submission/session.c). Key and fields
 * are copied before this returns. Returns 0, or -1 when rc is NULL or not up
 * (cb is then never called).
 */
int pmx_queue_enqueue(pmx_redis_conn_t *rc, const char *prefix, const char *ws,
                      const pmx_job_field_t *fields, size_t nfields,
                      redisCallbackFn *cb, void *privdata);

/*
 * The same, for a job whose last field's value is big (a submitted message)
 * and sits in the caller's buffer at last->data + off to its end, with free
 * octets before it: the XADD's other arguments are written into those octets
 * and hiredis copies the whole command once (pmx_redis_conn_command_last).
 * The last field is named last_name. *last is freed either way. Returns 0 or
 * -1 (not up; cb never called).
 */
int pmx_queue_enqueue_last(pmx_redis_conn_t *rc, const char *prefix, const char *ws,
                           const pmx_job_field_t *fields, size_t nfields, const char *last_name,
                           pmx_buf_t *last, size_t off, redisCallbackFn *cb, void *privdata);

/*
 * Blocking XADD on r (the CLI). Returns 0 with the entry id appended to id, or
 * -1 with a one-line reason in err ("Redis: ..." when there was no reply,
 * "Redis XADD <key>: ..." when Redis refused).
 */
int pmx_queue_enqueue_sync(redisContext *r, const char *prefix, const char *ws,
                           const pmx_job_field_t *fields, size_t nfields, pmx_buf_t *id,
                           char *err, size_t errlen);

#endif
