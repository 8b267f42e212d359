/*
 * The settings statement of the workers' cache (workers/settings.h): every
 * row the cache needs in one snapshot and one round trip, read from the
 * workspaces, workspace_testers, domains and dkim_keys tables. Their triggers
 * (sql/001_init.sql) NOTIFY PMX_DB_SETTINGS_CHANNEL on every change.
 *
 * Parameters: the keys the caller already holds decrypted, as two Postgres
 * array literals of the same length (key ids, and their created_at in us since
 * the epoch), so those rows come back without their blob.
 *
 * Result: PMX_DB_SETTINGS_NCOLS text columns; the first is the row's kind, the
 * others depend on it (NULL where the kind has nothing):
 *
 *   'w'  C1 workspace id, C2 name, C3 suspended, C4 test_mode, C5 catch_all,
 *        C6 rate_per_second, C7 burst, C8 daily_quota, C9 ms since suspended_at
 *   'r'  C1 workspace id, C2 pool (NULL = default), C3 route (NULL = default),
 *        C4 route password blob in hex (NULL = none); only for workspaces with
 *        a pool or a route
 *   't'  C1 workspace id, C2 tester address
 *   'd'  C1 workspace id, C2 domain, C3 verified, C4 domain id, C5 return_path (NULL:
 *        bounces.<domain>)
 *   'k'  C1 workspace id, C2 domain id, C3 selector, C4 algorithm, C5 key id,
 *        C6 created_at (us), C7 private key blob in hex, NULL when the caller
 *        holds that key (id and created_at both in the parameters)
 *
 * Booleans come as "true"/"false"; C9 of a workspace is NULL when it is not
 * suspended.
 * Ownership as sql/db_async.h: cb runs exactly once unless the request is
 * cancelled (pmx_db_async_cancel), with res NULL when the connection went
 * away first; the PGresult is freed after cb returns.
 */
#ifndef PMX_SQL_Q_SETTINGS_H
#define PMX_SQL_Q_SETTINGS_H

#include "sql/db_async.h"

#define PMX_DB_SETTINGS_CHANNEL "postmux_settings"

enum {
    PMX_DB_SETTINGS_KIND,
    PMX_DB_SETTINGS_C1, PMX_DB_SETTINGS_C2, PMX_DB_SETTINGS_C3,
    PMX_DB_SETTINGS_C4, PMX_DB_SETTINGS_C5, PMX_DB_SETTINGS_C6,
    PMX_DB_SETTINGS_C7, PMX_DB_SETTINGS_C8, PMX_DB_SETTINGS_C9,
    PMX_DB_SETTINGS_C10,
    PMX_DB_SETTINGS_NCOLS
};

/* Queues the statement; NULL (cb never called) when Postgres is not up. */
pmx_db_async_req_t *pmx_db_settings_load(pmx_db_async_t *db, const char *key_ids,
                                         const char *key_created_us,
                                         pmx_db_async_result_fn cb, void *arg);
/* The statement's text (for tests). */
const char *pmx_db_settings_load_sql(void);

#endif
