/*
 * Internal to workers/settings.c: the worker's cache of decrypted DKIM keys,
 * keyed by dkim_keys.id and checked against created_at, domain, selector and
 * algorithm. Each entry is decrypted with the master key and parsed once;
 * entries are reference-counted (the cache holds one reference, each
 * settings snapshot that uses the key one more), so a key dropped from the
 * cache lives on while an older snapshot still signs with it. An entry that
 * could not be decrypted or parsed is cached too (unusable), so it is
 * neither retried nor logged again on every reload.
 */
#ifndef PMX_WORKERS_SETTINGS_KEYS_H
#define PMX_WORKERS_SETTINGS_KEYS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dkim/keycrypt.h"
#include "dkim/keygen.h"
#include "dkim/signer.h"
#include "lib/buf.h"

typedef struct {
    int64_t        id;
    int64_t        created_us;
    char          *domain;
    char          *selector;
    pmx_dkim_alg_t alg;
    bool           usable;
    pmx_dkim_key_t key;        /* zeroed unless usable */
    int            refs;       /* the cache's own + one per snapshot */
    uint64_t       seen;       /* load sequence that last saw it */
} pmx__skey_t;

typedef struct {
    pmx__skey_t **v;           /* sorted by id */
    size_t        n, cap;
    uint8_t       master[PMX_DKIM_MASTER_KEY_LEN];
    uint64_t      opened;      /* decrypted and parsed */
    uint64_t      failed;      /* unusable (each logged once) */
} pmx__skeys_t;

void pmx__skeys_init(pmx__skeys_t *c, const uint8_t master[PMX_DKIM_MASTER_KEY_LEN]);
/* Drops the cache's references and wipes the master key. */
void pmx__skeys_clear(pmx__skeys_t *c);
void pmx__skey_unref(pmx__skey_t *e);

/*
 * The cached entry for this key row, or NULL. An entry with the same id but
 * another created_at/domain/selector/algorithm is stale: it is dropped (its
 * row must then be fetched with its blob).
 */
pmx__skey_t *pmx__skeys_get(pmx__skeys_t *c, int64_t id, int64_t created_us, const char *domain,
                            const char *selector, pmx_dkim_alg_t alg);
/*
 * Decrypts a key row's blob (hex of dkim_keys.private_key_enc) into a new
 * cached entry, usable or not; a failure is logged here, without any key
 * material. ws is for the log line only.
 */
pmx__skey_t *pmx__skeys_open(pmx__skeys_t *c, const char *ws, int64_t id, int64_t created_us,
                             const char *domain, const char *selector, pmx_dkim_alg_t alg,
                             const char *hex);
/* Drops the entries whose seen != seq (keys gone from the database). */
void pmx__skeys_sweep(pmx__skeys_t *c, uint64_t seq);
/* Appends the Postgres array literals of the cached ids and created_at values. */
void pmx__skeys_params(const pmx__skeys_t *c, pmx_buf_t *ids, pmx_buf_t *us);

#endif
