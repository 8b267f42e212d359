/*
 * The statements SMTP submission runs on the api_keys table
 * (submission/apikeys.h): the lookup of a key by the SHA-256 of its secret,
 * and the batched last_used_at update. `postmux apikey` writes the rows
 * (cli/apikey.c).
 *
 * Ownership as sql/db_async.h: cb runs exactly once unless the request is
 * cancelled (pmx_db_async_cancel), with res NULL when the connection went
 * away first; the PGresult is freed after cb returns. Both return NULL (cb
 * never called) when Postgres is not up.
 */
#ifndef PMX_SQL_Q_APIKEYS_H
#define PMX_SQL_Q_APIKEYS_H

#include "sql/db_async.h"

/* Columns of a lookup's row (none when no key has that hash), all text:
 * workspace id is "" for an organization key, revoked "t"/"f", scopes
 * comma-separated. */
enum {
    PMX_DB_APIKEY_ID,
    PMX_DB_APIKEY_WS,
    PMX_DB_APIKEY_REVOKED,
    PMX_DB_APIKEY_SCOPES,
    PMX_DB_APIKEY_NCOLS
};

/* hash_hex: the SHA-256 of the whole key text, 64 hex digits. */
pmx_db_async_req_t *pmx_db_apikeys_lookup(pmx_db_async_t *db, const char *hash_hex,
                                          pmx_db_async_result_fn cb, void *arg);
/* Sets last_used_at = now() of the keys in ids, a Postgres text array literal. */
pmx_db_async_req_t *pmx_db_apikeys_touch(pmx_db_async_t *db, const char *ids,
                                         pmx_db_async_result_fn cb, void *arg);

#endif
