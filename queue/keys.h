/*
 * Every Redis key name postmux uses, in one place. Nothing else in the tree
 * formats a key: the daemon's rooms and the CLI build them here from
 * [redis] prefix (postmux.conf(5), default "pmx") and a workspace id:
 *
 *   {prefix}:{ws}:jobs         stream: the jobs (consumer group PMX_QUEUE_GROUP)
 *   {prefix}:{ws}:retry        sorted set: deferred jobs (queue/retry.h)
 *   {prefix}:{ws}:dead         stream: poison jobs kept for inspection
 *   {prefix}:{ws}:idem:<id>    string: the duplicate check of a job's `id` field
 *   {prefix}:{ws}:rate         hash: the rate limiter (queue/ratelimit.h)
 *   {prefix}:{ws}:quota:       + YYYYMMDD, appended by the quota script
 *   {prefix}:site:{site}:rate  hash: a shaping rule's rate (routing/shaping.h), same limiter
 *
 * The braces around the workspace id are a Redis Cluster hash tag: every key
 * of one workspace lives on one shard, so the scripts that touch several of
 * them run there. Nothing here validates: callers check prefix and id before
 * (queue/consumer.c, queue/ratelimit.c, config/config.c for the prefix).
 * Keys are appended to a pmx_buf_t the caller owns and frees.
 */
#ifndef PMX_QUEUE_KEYS_H
#define PMX_QUEUE_KEYS_H
#include <stddef.h>

#include "lib/buf.h"

/* The consumer group every worker reads the job streams with. */
#define PMX_QUEUE_GROUP "postmux"

typedef enum {
    PMX_QUEUE_KEY_JOBS,
    PMX_QUEUE_KEY_RETRY,
    PMX_QUEUE_KEY_DEAD,
    PMX_QUEUE_KEY_RATE,
    PMX_QUEUE_KEY_QUOTA,   /* a prefix: the script appends the UTC date */
} pmx_queue_key_t;

/* Appends {prefix}:{ws}:<which> to out. */
void pmx_queue_key(pmx_buf_t *out, pmx_queue_key_t which, const char *prefix, const char *ws);
/* The same as a string the caller frees. */
char *pmx_queue_key_new(pmx_queue_key_t which, const char *prefix, const char *ws);
/* Appends {prefix}:site:{site}:rate to out (site: a shaping rule's name). */
void pmx_queue_key_site_rate(pmx_buf_t *out, const char *prefix, const char *site);
/* Appends {prefix}:{ws}:idem:<id> to out. */
void pmx_queue_key_idem(pmx_buf_t *out, const char *prefix, const char *ws, const char *id);
/* Appends the SCAN MATCH pattern of every job stream, {prefix}:{*}:jobs, with
 * the glob characters of prefix escaped. */
void pmx_queue_key_jobs_pattern(pmx_buf_t *out, const char *prefix);
/*
 * The workspace id inside a job stream key of this prefix ({prefix}:{id}:jobs,
 * len bytes): a pointer into key and its length in *n, or NULL when key is not
 * one. The id itself is not checked.
 */
const char *pmx_queue_key_jobs_ws(const char *prefix, const char *key, size_t len, size_t *n);

#endif
