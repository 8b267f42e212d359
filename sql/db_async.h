/*
 * One worker's PostgreSQL connection, non-blocking on the worker's libuv
 * loop: PQconnectStart/PQconnectPoll driven by a uv_poll_t, queries sent with
 * PQsendQuery/PQsendQueryParams/PQsendQueryPrepared one at a time from a FIFO
 * queue, LISTEN channels re-issued after every reconnect and NOTIFY delivered
 * to a callback, and reconnection with a growing, jittered delay (250 ms doubling
 * to 10 s) after any failure. Each change between up and down is logged
 * once; repeated failed attempts only at debug level. The conninfo is never
 * logged (it may hold a password).
 *
 * Ownership:
 * - A query's callback is called exactly once unless the request is
 *   cancelled: with the query's result (its last PGresult, or the first one
 *   that failed when a multi-statement string fails part-way), or with
 *   res == NULL when the connection was lost or closed before the result came.
 *   The PGresult is freed after the callback returns: copy what you keep.
 * - pmx_db_async_cancel() turns a request into a zombie: it stays queued (or
 *   in flight) and its result is dropped without calling back. Use it when
 *   the owner of arg goes away first. Never cancel after the callback ran.
 * - Queries are refused (NULL, no callback) while the connection is not up;
 *   callers decide whether to retry.
 * - pmx_db_async_close() may be called from any callback of this module; the
 *   struct is freed once its libuv handles have closed.
 *
 * PQconnectStart resolves host names synchronously: give Postgres as a unix
 * socket directory or an IP address (hostaddr=) to keep the loop unblocked.
 */
#ifndef PMX_SQL_DB_ASYNC_H
#define PMX_SQL_DB_ASYNC_H
#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>
#include <uv.h>

typedef struct pmx_db_async     pmx_db_async_t;
typedef struct pmx_db_async_req pmx_db_async_req_t;

typedef void (*pmx_db_async_result_fn)(pmx_db_async_t *db, const PGresult *res, void *arg);
typedef void (*pmx_db_async_state_fn)(pmx_db_async_t *db, bool up, void *arg);
typedef void (*pmx_db_async_notify_fn)(pmx_db_async_t *db, const char *channel,
                                       const char *payload, void *arg);

#define PMX_DB_BACKOFF_MIN_MS      250u
#define PMX_DB_BACKOFF_MAX_MS      10000u
#define PMX_DB_CONNECT_TIMEOUT_MS  10000u

/* Nothing happens until pmx_db_async_start(). conninfo is copied. */
pmx_db_async_t *pmx_db_async_new(uv_loop_t *loop, const char *conninfo);
void pmx_db_async_set_state_cb(pmx_db_async_t *db, pmx_db_async_state_fn fn, void *arg);
void pmx_db_async_set_notify_cb(pmx_db_async_t *db, pmx_db_async_notify_fn fn, void *arg);
/*
 * Subscribes to a NOTIFY channel, now if up and again after every reconnect.
 * Returns 0, or -1 if the name is empty or longer than 63 bytes.
 */
int  pmx_db_async_listen(pmx_db_async_t *db, const char *channel);
void pmx_db_async_start(pmx_db_async_t *db);
bool pmx_db_async_is_up(const pmx_db_async_t *db);
/* Requests queued or in flight. */
int  pmx_db_async_pending(const pmx_db_async_t *db);

pmx_db_async_req_t *pmx_db_async_query(pmx_db_async_t *db, const char *sql,
                                       pmx_db_async_result_fn cb, void *arg);
/* Text parameters $1..$n; a NULL value is SQL NULL. sql and values are copied. */
pmx_db_async_req_t *pmx_db_async_query_params(pmx_db_async_t *db, const char *sql,
                                              int nparams, const char *const *values,
                                              pmx_db_async_result_fn cb, void *arg);
/*
 * Like pmx_db_async_query_params, with binary parameters: lengths[i] >= 0
 * sends values[i] as lengths[i] raw octets (e.g. a bytea), -1 as text.
 * Values are copied.
 */
pmx_db_async_req_t *pmx_db_async_query_binary(pmx_db_async_t *db, const char *sql, int nparams,
                                              const char *const *values, const int *lengths,
                                              pmx_db_async_result_fn cb, void *arg);
/*
 * Like pmx_db_async_query_params, for a statement run again and again: the
 * first call on a connection queues a PREPARE of sql under name ahead of it,
 * later ones send only the name and the values (no parse, and a cached plan).
 * After a reconnect it is prepared again. If the PREPARE fails (logged once
 * per connection) the statement is sent unprepared, so the caller sees the
 * same results either way. sql must be the same text on every call with a
 * name; at most PMX_DB_PREPARED_MAX names per connection (more run unprepared).
 */
#define PMX_DB_PREPARED_MAX 8
pmx_db_async_req_t *pmx_db_async_query_prepared(pmx_db_async_t *db, const char *name,
                                                const char *sql, int nparams,
                                                const char *const *values,
                                                pmx_db_async_result_fn cb, void *arg);
void pmx_db_async_cancel(pmx_db_async_req_t *req);

/* Fails pending requests (callbacks get NULL), disconnects, frees db later. */
void pmx_db_async_close(pmx_db_async_t *db);

#endif
