/*
 * API key checks for a worker (docs/submission.md: the SMTP AUTH password is an API
 * key). A key is looked up by SHA-256 of its text (api_keys.hash, one index
 * probe) through the worker's async Postgres connection, and the answer —
 * found or not — is cached for PMX_APIKEYS_TTL_MS, so a client that opens
 * many sessions costs one query per key every few seconds, and a revoked key
 * stops working within that time. Concurrent lookups of the same key share
 * one query. Keys that authenticated are remembered and their last_used_at is
 * written in one UPDATE per PMX_APIKEYS_TOUCH_MS (not a write per session or
 * message); the last partial period may be lost when the worker stops.
 *
 * Only digests are kept; the key text is hashed at once and never stored or
 * logged.
 *
 * Ownership: a lookup's callback is called exactly once unless the request is
 * cancelled; when the answer is at hand (cache hit, Postgres down) it is
 * called before pmx_worker_apikeys_check returns, which then returns NULL.
 * Otherwise the returned request may be cancelled with
 * pmx_worker_apikeys_cancel until its callback runs (never after).
 * pmx_worker_apikeys_free cancels everything in flight without calling back.
 */
#ifndef PMX_SUBMISSION_APIKEYS_H
#define PMX_SUBMISSION_APIKEYS_H
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "sql/db_async.h"

#define PMX_APIKEYS_TTL_MS     5000u     /* revocation takes effect within this */
#define PMX_APIKEYS_TOUCH_MS   60000u    /* last_used_at is written this often */
#define PMX_APIKEYS_MAX_CACHED 4096      /* digests cached (found or not) */
#define PMX_APIKEYS_DIGEST_LEN 32        /* SHA-256 */

typedef enum {
    PMX_APIKEY_OK = 0,      /* known, not revoked, has the scope */
    PMX_APIKEY_UNKNOWN,     /* no such key */
    PMX_APIKEY_REVOKED,
    PMX_APIKEY_NO_SCOPE,    /* valid, but without the scope asked for */
    PMX_APIKEY_TEMPFAIL,    /* Postgres unreachable or the query failed */
} pmx_apikey_status_t;

typedef struct {
    pmx_apikey_status_t status;
    char id[32];            /* "key_..." (status OK, REVOKED, NO_SCOPE) */
    char ws[32];            /* "ws_...", or "" for an organization key */
    uint64_t gen;           /* the cache generation this answer belongs to */
} pmx_apikey_t;

typedef struct pmx_worker_apikeys     pmx_worker_apikeys_t;
typedef struct pmx_worker_apikeys_req pmx_worker_apikeys_req_t;
typedef void (*pmx_worker_apikeys_fn)(void *arg, const pmx_apikey_t *key);

pmx_worker_apikeys_t *pmx_worker_apikeys_new(uv_loop_t *loop, pmx_db_async_t *db);
/* Checks key[0..n) for scope (e.g. "send"). See the ownership notes above. */
pmx_worker_apikeys_req_t *pmx_worker_apikeys_check(pmx_worker_apikeys_t *a, const char *key,
                                                   size_t n, const char *scope,
                                                   pmx_worker_apikeys_fn fn, void *arg);
/* The same, for a key already hashed with pmx_worker_apikeys_digest (a
 * session keeps the digest, never the key, to check it again later). */
pmx_worker_apikeys_req_t *pmx_worker_apikeys_check_digest(pmx_worker_apikeys_t *a,
                                                          const uint8_t digest[PMX_APIKEYS_DIGEST_LEN],
                                                          const char *scope,
                                                          pmx_worker_apikeys_fn fn, void *arg);
/* SHA-256 of key[0..n): 0, or -1 (OpenSSL failed). */
int  pmx_worker_apikeys_digest(const char *key, size_t n, uint8_t out[PMX_APIKEYS_DIGEST_LEN]);
void pmx_worker_apikeys_cancel(pmx_worker_apikeys_req_t *req);
/*
 * Revocation within a session: the owner passes a generation that moves
 * whenever the keys may have changed (the settings cache's, which swaps when
 * NOTIFY postmux_settings reports an api_keys change: docs/submission.md).
 * Answers cached in an older generation are asked again, and every answer
 * carries its generation (pmx_apikey_t.gen), so a session can tell that the
 * key it authenticated with must be checked again before its next
 * transaction.
 */
void     pmx_worker_apikeys_set_generation(pmx_worker_apikeys_t *a, uint64_t gen);
uint64_t pmx_worker_apikeys_generation(const pmx_worker_apikeys_t *a);
/* The key id authenticated something: last_used_at is updated soon. */
void pmx_worker_apikeys_touch(pmx_worker_apikeys_t *a, const char *id);
/* Sends the pending last_used_at update now (also done on a timer). */
void pmx_worker_apikeys_flush(pmx_worker_apikeys_t *a);
/* Flushes, cancels lookups in flight, frees once the timer has closed. */
void pmx_worker_apikeys_free(pmx_worker_apikeys_t *a);

#endif
