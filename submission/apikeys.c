/*
 * The worker's API key cache; see apikeys.h. A small chained hash table keyed
 * by the SHA-256 digest (already uniformly spread, so its first bytes are the
 * bucket). An entry is either pending (one query in flight, lookups wait on
 * it) or answered (found or not) until it expires.
 */
#include "submission/apikeys.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>

#include <openssl/evp.h>

#include "lib/buf.h"
#include "lib/encode.h"
#include "lib/log.h"
#include "lib/mem.h"
#include "sql/q_apikeys.h"

#define NBUCKETS 1024u
#define DIGEST_LEN 32

typedef struct entry entry_t;

struct pmx_worker_apikeys_req {
    pmx_worker_apikeys_req_t *prev, *next;   /* the entry's waiters */
    entry_t                  *e;
    char                      scope[32];
    pmx_worker_apikeys_fn     fn;
    void                     *arg;
};

struct entry {
    entry_t                  *next;          /* bucket chain */
    pmx_worker_apikeys_t     *a;
    uint8_t                   digest[DIGEST_LEN];
    bool                      pending;
    pmx_db_async_req_t       *q;
    pmx_worker_apikeys_req_t *waiters;
    uint64_t                  expires;       /* uv_now() ms */
    uint64_t                  gen;           /* the generation its query started in */
    bool                      found, revoked;
    char                      id[32], ws[32];
    char                     *scopes;        /* "send,read" */
};

struct pmx_worker_apikeys {
    uv_loop_t      *loop;
    pmx_db_async_t *db;
    entry_t        *buckets[NBUCKETS];
    size_t          count;
    uv_timer_t      timer;
    uint64_t        gen;          /* pmx_worker_apikeys_set_generation */
    char          **touched;
    size_t          ntouched, touch_cap;
};

static unsigned bucket_of(const uint8_t *d)
{
    return ((unsigned)d[0] << 8 | d[1]) % NBUCKETS;
}

static void entry_free(entry_t *e)
{
    free(e->scopes);
    free(e);
}

/* Unlinks e from its bucket (it must be there). */
static void entry_remove(pmx_worker_apikeys_t *a, entry_t *e)
{
    entry_t **pp = &a->buckets[bucket_of(e->digest)];
    while (*pp && *pp != e) pp = &(*pp)->next;
    if (*pp) *pp = e->next;
    a->count--;
}

/* Drops expired answered entries (when the table is full). */
static void sweep(pmx_worker_apikeys_t *a, uint64_t now)
{
    for (unsigned b = 0; b < NBUCKETS; b++) {
        entry_t **pp = &a->buckets[b];
        while (*pp) {
            entry_t *e = *pp;
            if (!e->pending && (e->expires <= now || e->gen != a->gen)) {
                *pp = e->next;
                a->count--;
                entry_free(e);
            } else {
                pp = &e->next;
            }
        }
    }
}

static bool has_scope(const char *scopes, const char *scope)
{
    size_t n = strlen(scope);
    for (const char *p = scopes; p && *p;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (len == n && strncmp(p, scope, n) == 0) return true;
        p = c ? c + 1 : NULL;
    }
    return false;
}

/* The answer of an answered entry for one scope. */
static void answer_of(const entry_t *e, const char *scope, pmx_apikey_t *out)
{
    memset(out, 0, sizeof *out);
    out->gen = e->gen;
    if (!e->found) {
        out->status = PMX_APIKEY_UNKNOWN;
        return;
    }
    out->gen = e->gen;
    snprintf(out->id, sizeof out->id, "%s", e->id);
    snprintf(out->ws, sizeof out->ws, "%s", e->ws);
    if (e->revoked) out->status = PMX_APIKEY_REVOKED;
    else if (!has_scope(e->scopes, scope)) out->status = PMX_APIKEY_NO_SCOPE;
    else out->status = PMX_APIKEY_OK;
}

static void waiter_unlink(pmx_worker_apikeys_req_t *r)
{
    if (r->prev) r->prev->next = r->next;
    else r->e->waiters = r->next;
    if (r->next) r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

/* Calls every waiter of e (each one unlinked before its callback). */
static void wake(entry_t *e, bool tempfail)
{
    while (e->waiters) {
        pmx_worker_apikeys_req_t *r = e->waiters;
        waiter_unlink(r);
        pmx_apikey_t k;
        if (tempfail) {
            memset(&k, 0, sizeof k);
            k.status = PMX_APIKEY_TEMPFAIL;
        } else {
            answer_of(e, r->scope, &k);
        }
        r->fn(r->arg, &k);
        free(r);
    }
}

/* The primary message of a failed result, for the log. */
static const char *pg_error(const PGresult *res)
{
    const char *m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    return m ? m : PQresStatus(PQresultStatus(res));
}

static void lookup_done(pmx_db_async_t *db, const PGresult *res, void *arg)
{
    (void)db;
    entry_t *e = arg;
    pmx_worker_apikeys_t *a = e->a;
    e->q = NULL;
    e->pending = false;
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || PQnfields(res) != PMX_DB_APIKEY_NCOLS) {
        if (res) pmx_log_error("api key lookup failed err=\"%s\"", pg_error(res));
        entry_remove(a, e);
        wake(e, true);
        entry_free(e);
        return;
    }
    e->found = PQntuples(res) == 1;
    if (e->found) {
        snprintf(e->id, sizeof e->id, "%s", PQgetvalue(res, 0, PMX_DB_APIKEY_ID));
        snprintf(e->ws, sizeof e->ws, "%s", PQgetvalue(res, 0, PMX_DB_APIKEY_WS));
        e->revoked = strcmp(PQgetvalue(res, 0, PMX_DB_APIKEY_REVOKED), "t") == 0;
        e->scopes = pmx_xstrdup(PQgetvalue(res, 0, PMX_DB_APIKEY_SCOPES));
    }
    e->expires = uv_now(a->loop) + PMX_APIKEYS_TTL_MS;
    wake(e, false);
}

/* Starts the query of a pending entry; -1 when Postgres is not up. */
static int entry_query(pmx_worker_apikeys_t *a, entry_t *e)
{
    pmx_buf_t hex = PMX_BUF_INIT;
    pmx_hex_encode(&hex, e->digest, DIGEST_LEN);
    e->q = pmx_db_apikeys_lookup(a->db, hex.data, lookup_done, e);
    pmx_buf_free(&hex);
    return e->q ? 0 : -1;
}

static void tempfail_now(pmx_worker_apikeys_fn fn, void *arg)
{
    pmx_apikey_t k;
    memset(&k, 0, sizeof k);
    k.status = PMX_APIKEY_TEMPFAIL;
    fn(arg, &k);
}

/* SHA-256 fetched once per process: EVP_sha256() makes OpenSSL 3 look the
 * algorithm up again on every call, most of the cost of a 50-byte digest
 * (docs/bench.md "The HTTP API"). Never freed: it lives as long as the process. */
static EVP_MD        *sha256;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
    sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

int pmx_worker_apikeys_digest(const char *key, size_t n, uint8_t out[PMX_APIKEYS_DIGEST_LEN])
{
    unsigned int dlen = 0;
    pthread_once(&sha256_once, sha256_fetch);
    const EVP_MD *md = sha256 ? sha256 : EVP_sha256();
    if (EVP_Digest(key, n, out, &dlen, md, NULL) != 1 || dlen != DIGEST_LEN) return -1;
    return 0;
}

void pmx_worker_apikeys_set_generation(pmx_worker_apikeys_t *a, uint64_t gen)
{
    if (gen == a->gen) return;
    /* Answered entries of an older generation are stale from now on (see
     * check_digest); pending ones were stamped when their query started. */
    pmx_log_debug("api key cache generation=%llu (was %llu)", (unsigned long long)gen,
                  (unsigned long long)a->gen);
    a->gen = gen;
}

uint64_t pmx_worker_apikeys_generation(const pmx_worker_apikeys_t *a)
{
    return a->gen;
}

pmx_worker_apikeys_req_t *pmx_worker_apikeys_check(pmx_worker_apikeys_t *a, const char *key,
                                                   size_t n, const char *scope,
                                                   pmx_worker_apikeys_fn fn, void *arg)
{
    uint8_t d[DIGEST_LEN];
    if (pmx_worker_apikeys_digest(key, n, d) < 0) {
        tempfail_now(fn, arg);
        return NULL;
    }
    pmx_worker_apikeys_req_t *r = pmx_worker_apikeys_check_digest(a, d, scope, fn, arg);
    pmx_wipe((char *)d, sizeof d);
    return r;
}

pmx_worker_apikeys_req_t *pmx_worker_apikeys_check_digest(pmx_worker_apikeys_t *a,
                                                          const uint8_t d[PMX_APIKEYS_DIGEST_LEN],
                                                          const char *scope,
                                                          pmx_worker_apikeys_fn fn, void *arg)
{
    uint64_t now = uv_now(a->loop);
    entry_t *e = a->buckets[bucket_of(d)];
    while (e && memcmp(e->digest, d, DIGEST_LEN) != 0) e = e->next;
    if (e && !e->pending && (e->expires <= now || e->gen != a->gen)) {
        entry_remove(a, e);               /* stale: ask again */
        entry_free(e);
        e = NULL;
    }
    if (e && !e->pending) {
        pmx_apikey_t k;
        answer_of(e, scope, &k);
        fn(arg, &k);
        return NULL;
    }
    if (!e) {
        if (a->count >= PMX_APIKEYS_MAX_CACHED) sweep(a, now);
        if (!pmx_db_async_is_up(a->db)) {
            tempfail_now(fn, arg);
            return NULL;
        }
        e = pmx_xcalloc(1, sizeof *e);
        e->a = a;
        memcpy(e->digest, d, DIGEST_LEN);
        e->pending = true;
        e->gen = a->gen;
        if (entry_query(a, e) < 0) {
            entry_free(e);
            tempfail_now(fn, arg);
            return NULL;
        }
        /* Over the cap the entry still serves its waiters, and is then
         * dropped by the next sweep once it expires. */
        unsigned b = bucket_of(d);
        e->next = a->buckets[b];
        a->buckets[b] = e;
        a->count++;
    }
    pmx_worker_apikeys_req_t *r = pmx_xcalloc(1, sizeof *r);
    r->e = e;
    snprintf(r->scope, sizeof r->scope, "%s", scope);
    r->fn = fn;
    r->arg = arg;
    r->next = e->waiters;
    if (r->next) r->next->prev = r;
    e->waiters = r;
    return r;
}

void pmx_worker_apikeys_cancel(pmx_worker_apikeys_req_t *req)
{
    if (!req) return;
    waiter_unlink(req);
    free(req);
}

void pmx_worker_apikeys_touch(pmx_worker_apikeys_t *a, const char *id)
{
    for (size_t i = 0; i < a->ntouched; i++)
        if (strcmp(a->touched[i], id) == 0) return;
    if (a->ntouched == a->touch_cap) {
        a->touch_cap = a->touch_cap ? a->touch_cap * 2 : 8;
        a->touched = pmx_xrealloc(a->touched, a->touch_cap * sizeof *a->touched);
    }
    a->touched[a->ntouched++] = pmx_xstrdup(id);
}

static void touch_done(pmx_db_async_t *db, const PGresult *res, void *arg)
{
    (void)db;
    (void)arg;
    if (res && PQresultStatus(res) != PGRES_COMMAND_OK)
        pmx_log_warn("api key last_used_at update failed err=\"%s\"", pg_error(res));
}

void pmx_worker_apikeys_flush(pmx_worker_apikeys_t *a)
{
    if (a->ntouched == 0 || !pmx_db_async_is_up(a->db)) return;
    /* Key ids are "key_" + base32 (a CHECK constraint): safe in an array literal. */
    pmx_buf_t arr = PMX_BUF_INIT;
    pmx_buf_append_char(&arr, '{');
    for (size_t i = 0; i < a->ntouched; i++) {
        if (i) pmx_buf_append_char(&arr, ',');
        pmx_buf_appendf(&arr, "\"%s\"", a->touched[i]);
    }
    pmx_buf_append_char(&arr, '}');
    if (pmx_db_apikeys_touch(a->db, arr.data, touch_done, NULL)) {
        for (size_t i = 0; i < a->ntouched; i++) free(a->touched[i]);
        a->ntouched = 0;
    }
    pmx_buf_free(&arr);
}

static void timer_cb(uv_timer_t *t)
{
    pmx_worker_apikeys_flush(t->data);
}

pmx_worker_apikeys_t *pmx_worker_apikeys_new(uv_loop_t *loop, pmx_db_async_t *db)
{
    pmx_worker_apikeys_t *a = pmx_xcalloc(1, sizeof *a);
    a->loop = loop;
    a->db = db;
    uv_timer_init(loop, &a->timer);
    a->timer.data = a;
    uv_timer_start(&a->timer, timer_cb, PMX_APIKEYS_TOUCH_MS, PMX_APIKEYS_TOUCH_MS);
    return a;
}

static void timer_closed(uv_handle_t *h)
{
    free(h->data);
}

void pmx_worker_apikeys_free(pmx_worker_apikeys_t *a)
{
    if (!a) return;
    pmx_worker_apikeys_flush(a);
    for (size_t i = 0; i < a->ntouched; i++) free(a->touched[i]);
    free(a->touched);
    a->touched = NULL;
    a->ntouched = 0;
    for (unsigned b = 0; b < NBUCKETS; b++) {
        while (a->buckets[b]) {
            entry_t *e = a->buckets[b];
            a->buckets[b] = e->next;
            if (e->q) pmx_db_async_cancel(e->q);
            while (e->waiters) {
                pmx_worker_apikeys_req_t *r = e->waiters;
                waiter_unlink(r);
                free(r);
            }
            entry_free(e);
        }
    }
    a->count = 0;
    uv_close((uv_handle_t *)&a->timer, timer_closed);
}
