/*
 * The worker's settings cache; see settings.h.
 *
 * One statement (sql/q_settings.h) returns every row the cache needs, tagged
 * by kind (w = workspace, t = tester, d = domain, k = active key), so the
 * whole state comes from one snapshot in one round trip. A new pmx_settings_snap_t is
 * built from it aside and replaces the current one only when complete.
 * Snapshots are immutable and reference-counted (the pipeline may hold one
 * across an asynchronous step); decrypted keys live in a cache (settings_keys.c) keyed by key
 * id and are reference-counted too, so a key is decrypted once per worker
 * and shared by every snapshot that has it. The cached keys' ids go to the
 * query as parameters and come back without their blob, so unchanged keys
 * are neither sent nor decrypted again.
 *
 * Whether a load changed anything is decided by an order-independent digest
 * of its rows (key blobs excluded: they are identified by id and created_at).
 */
#include "workers/settings.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/encode.h"
#include "lib/log.h"
#include "lib/mem.h"
#include "lib/verp.h"
#include "sql/db.h"
#include "sql/q_settings.h"
#include "workers/settings_keys.h"

/* Short names of the settings statement's columns (sql/q_settings.h). */
enum {
    C_KIND = PMX_DB_SETTINGS_KIND,
    C1 = PMX_DB_SETTINGS_C1, C2 = PMX_DB_SETTINGS_C2, C3 = PMX_DB_SETTINGS_C3,
    C4 = PMX_DB_SETTINGS_C4, C5 = PMX_DB_SETTINGS_C5, C6 = PMX_DB_SETTINGS_C6,
    C7 = PMX_DB_SETTINGS_C7, C8 = PMX_DB_SETTINGS_C8, C9 = PMX_DB_SETTINGS_C9,
    C10 = PMX_DB_SETTINGS_C10,
    NCOLS = PMX_DB_SETTINGS_NCOLS
};

/* ---- snapshots ---------------------------------------------------------- */

typedef struct {
    const char            *name;
    pmx_settings_ws_t     *ws;
    pmx_settings_domain_t *dom;
} dix_t;

struct pmx_settings_snap {
    int                refs;
    uint64_t           digest;
    pmx_settings_ws_t *ws;        /* sorted by id */
    size_t             nws;
    dix_t             *dix;       /* every domain of every workspace, sorted by name */
    size_t             ndix;
    pmx__skey_t         **keys;      /* the key references this snapshot holds */
    size_t             nkeys;
    size_t             nkeys_unusable;
};

static void snap_free(pmx_settings_snap_t *sn)
{
    for (size_t i = 0; i < sn->nws; i++) {
        pmx_settings_ws_t *w = &sn->ws[i];
        free((char *)w->id);
        free((char *)w->name);
        free((char *)w->catch_all);
        for (size_t t = 0; t < w->ntesters; t++) free((char *)w->testers[t]);
        free((char **)w->testers);
        for (size_t d = 0; d < w->ndomains; d++) {
            free((char *)w->domains[d].name);
            free((char *)w->domains[d].return_path);
            free((pmx_dkim_key_t *)w->domains[d].keys);   /* shallow copies */
        }
        free((pmx_settings_domain_t *)w->domains);
        free((char *)w->pool);
        free((pmx_wsroute_t *)w->route);
        free((char *)w->route_error);
        if (w->route_password) {
            pmx_wipe((char *)w->route_password, strlen(w->route_password));
            free((char *)w->route_password);
        }
    }
    free(sn->ws);
    free(sn->dix);
    for (size_t k = 0; k < sn->nkeys; k++) pmx__skey_unref(sn->keys[k]);
    free(sn->keys);
    free(sn);
}

static void snap_unref(pmx_settings_snap_t *sn)
{
    if (sn && --sn->refs == 0) snap_free(sn);
}

void pmx_settings_ws_ref(const pmx_settings_ws_t *ws)
{
    if (ws) ws->snap->refs++;
}

void pmx_settings_ws_unref(const pmx_settings_ws_t *ws)
{
    if (ws) snap_unref(ws->snap);
}

/* ---- the cache object --------------------------------------------------- */

struct pmx_settings {
    uv_loop_t              *loop;
    pmx_db_async_t         *db;
    pmx_settings_snap_t    *cur;
    pmx__skeys_t            keys;        /* decrypted keys, shared by the snapshots */
    uint64_t                load_seq;

    pmx_db_async_req_t     *req;         /* the load (or the schema check) in flight */
    bool                    schema_ok;   /* the schema was found new enough */
    bool                    schema_logged;
    bool                    want_reload; /* one more load queued */
    uint64_t                load_started;
    uint64_t                refresh_ms;
    uv_timer_t              refresh;
    uv_timer_t              retry;
    int                     handles_open;

    pmx_settings_changed_fn changed_fn;
    void                   *changed_arg;
    pmx_settings_stats_t    stats;

    int                     depth;       /* inside one of our callbacks */
    bool                    closing;
    bool                    free_requested;
};

static void load_start(pmx_settings_t *s);

static void timer_closed(uv_handle_t *h)
{
    pmx_settings_t *s = h->data;
    if (--s->handles_open == 0) free(s);
}

static void refresh_cb(uv_timer_t *t)
{
    load_start(t->data);
}

static void retry_cb(uv_timer_t *t)
{
    load_start(t->data);
}

pmx_settings_t *pmx_settings_new(uv_loop_t *loop, pmx_db_async_t *db,
                                 const uint8_t master[PMX_DKIM_MASTER_KEY_LEN])
{
    pmx_settings_t *s = pmx_xcalloc(1, sizeof *s);
    s->loop = loop;
    s->db = db;
    pmx__skeys_init(&s->keys, master);
    s->refresh_ms = PMX_SETTINGS_REFRESH_MS;
    uv_timer_init(loop, &s->refresh);
    uv_timer_init(loop, &s->retry);
    s->refresh.data = s->retry.data = s;
    s->handles_open = 2;
    return s;
}

void pmx_settings_set_changed_cb(pmx_settings_t *s, pmx_settings_changed_fn fn, void *arg)
{
    s->changed_fn = fn;
    s->changed_arg = arg;
}

void pmx_settings_set_refresh_ms(pmx_settings_t *s, uint64_t ms)
{
    s->refresh_ms = ms ? ms : PMX_SETTINGS_REFRESH_MS;
}

bool pmx_settings_ready(const pmx_settings_t *s) { return s->cur != NULL; }

uint64_t pmx_settings_generation(const pmx_settings_t *s) { return s->stats.swaps; }

void pmx_settings_stats(const pmx_settings_t *s, pmx_settings_stats_t *out)
{
    *out = s->stats;
    out->keys_opened = s->keys.opened;
    out->keys_failed = s->keys.failed;
}

static void teardown(pmx_settings_t *s)
{
    if (s->req) pmx_db_async_cancel(s->req);
    s->req = NULL;
    snap_unref(s->cur);
    s->cur = NULL;
    pmx__skeys_clear(&s->keys);
    uv_close((uv_handle_t *)&s->refresh, timer_closed);
    uv_close((uv_handle_t *)&s->retry, timer_closed);
}

void pmx_settings_free(pmx_settings_t *s)
{
    if (!s || s->closing) return;
    s->closing = true;
    if (s->depth > 0)
        s->free_requested = true;
    else
        teardown(s);
}

static void leave(pmx_settings_t *s)
{
    if (--s->depth == 0 && s->free_requested) {
        s->free_requested = false;
        teardown(s);
    }
}

/* ---- helpers ------------------------------------------------------------ */

static uint64_t fnv1a(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* Sum of per-row hashes: the same rows in any order give the same digest. */
static uint64_t rows_digest(const PGresult *res)
{
    uint64_t sum = 0;
    int n = PQntuples(res);
    for (int r = 0; r < n; r++) {
        bool key = strcmp(PQgetvalue(res, r, C_KIND), "k") == 0;
        bool ws = strcmp(PQgetvalue(res, r, C_KIND), "w") == 0;
        uint64_t h = 0xcbf29ce484222325ULL;
        for (int c = 0; c < NCOLS; c++) {
            if (key && c == C7) continue;   /* the blob: identified by id + created_at */
            /* How long it has been suspended grows with every load; whether it
             * is suspended (C3) is what changes the state. */
            if (ws && c == C9) {
                char tag = PQgetisnull(res, r, c) ? 'N' : 'V';
                h = fnv1a(h, &tag, 1);
                continue;
            }
            char tag = PQgetisnull(res, r, c) ? 'N' : 'V';
            h = fnv1a(h, &tag, 1);
            h = fnv1a(h, PQgetvalue(res, r, c), (size_t)PQgetlength(res, r, c));
            h = fnv1a(h, "\x1f", 1);
        }
        sum += mix64(h);
    }
    return sum;
}

static const char *cell(const PGresult *res, int r, int c)
{
    return PQgetisnull(res, r, c) ? NULL : PQgetvalue(res, r, c);
}

static int parse_bool(const char *v, bool *out)
{
    if (!v) return -1;
    if (strcmp(v, "true") == 0 || strcmp(v, "t") == 0) *out = true;
    else if (strcmp(v, "false") == 0 || strcmp(v, "f") == 0) *out = false;
    else return -1;
    return 0;
}

static int parse_i64(const char *v, int64_t *out)
{
    if (!v || !*v) return -1;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || *end) return -1;
    *out = x;
    return 0;
}

static int cmp_ws(const void *a, const void *b)
{
    return strcmp(((const pmx_settings_ws_t *)a)->id, ((const pmx_settings_ws_t *)b)->id);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_dom(const void *a, const void *b)
{
    return strcmp(((const pmx_settings_domain_t *)a)->name,
                  ((const pmx_settings_domain_t *)b)->name);
}

static int cmp_dix(const void *a, const void *b)
{
    return strcmp(((const dix_t *)a)->name, ((const dix_t *)b)->name);
}

static int cmp_keyent_sel(const void *a, const void *b)
{
    const pmx__skey_t *x = *(pmx__skey_t *const *)a, *y = *(pmx__skey_t *const *)b;
    return strcmp(x->selector, y->selector);
}

static pmx_settings_ws_t *find_ws(pmx_settings_ws_t *v, size_t n, const char *id)
{
    pmx_settings_ws_t key = { .id = id };
    return id ? bsearch(&key, v, n, sizeof *v, cmp_ws) : NULL;
}

/* ---- building a snapshot ------------------------------------------------ */

/*
 * A workspace's pool and route (an 'r' row): the route parsed, its password
 * opened with the master key. What cannot be used becomes route_error (the
 * workspace's mail is deferred with it) and is logged here, without secrets.
 */
static void apply_routing(pmx_settings_t *s, pmx_settings_ws_t *w, const char *pool,
                          const char *route, const char *hex)
{
    char why[300];
    w->pool = pool ? pmx_xstrdup(pool) : NULL;
    if (!route) return;
    pmx_wsroute_t *rt = pmx_xcalloc(1, sizeof *rt);
    if (pmx_wsroute_parse(route, rt, why, sizeof why) < 0) {
        free(rt);
        char e[400];
        snprintf(e, sizeof e, "stored route is unusable (%s)", why);
        w->route_error = pmx_xstrdup(e);
        pmx_log_error("workspace route unusable ws=%s err=\"%s\"", w->id, why);
        return;
    }
    w->route = rt;
    if (!hex) {
        if (rt->kind == PMX_WSROUTE_SMTP && rt->user[0]) {
            w->route_error = pmx_xstrdup("route names a user but has no password");
            pmx_log_error("workspace route unusable ws=%s err=\"a user but no password\"", w->id);
        }
        return;
    }
    pmx_buf_t blob = PMX_BUF_INIT, pw = PMX_BUF_INIT;
    int rc = pmx_hex_decode(&blob, hex, strlen(hex));
    if (rc == 0)
        rc = pmx_wsroute_open(s->keys.master, w->id, rt, (const uint8_t *)blob.data, blob.len, &pw);
    if (rc == 0 && (memchr(pw.data, '\0', pw.len) || pw.len == 0)) rc = -EINVAL;
    if (rc == 0) {
        w->route_password = pmx_xstrdup(pmx_buf_cstr(&pw));
    } else {
        w->route_error = pmx_xstrdup("route password cannot be decrypted (wrong master key or "
                                     "changed data)");
        pmx_log_error("workspace route password cannot be decrypted ws=%s route=%s", w->id,
                      rt->canonical);
    }
    pmx_buf_free(&blob);
    pmx_buf_free_secret(&pw);
}

typedef struct {
    int64_t                id;
    pmx_settings_ws_t     *ws;
    pmx_settings_domain_t *dom;
    size_t                 nkeys;   /* keys found for it (usable or not) */
    pmx__skey_t             **keys;
    size_t                 filled;
} domref_t;

static int cmp_domref(const void *a, const void *b)
{
    int64_t x = ((const domref_t *)a)->id, y = ((const domref_t *)b)->id;
    return x < y ? -1 : x > y;
}

static domref_t *find_domref(domref_t *v, size_t n, int64_t id)
{
    domref_t key = { .id = id };
    return bsearch(&key, v, n, sizeof *v, cmp_domref);
}

/*
 * Builds a snapshot from the loader's rows. On a malformed row returns NULL
 * with why set; *reload is set when a cached key turned out stale (the cache
 * entry is dropped, and the next load fetches its blob).
 */
static pmx_settings_snap_t *build(pmx_settings_t *s, const PGresult *res, uint64_t seq,
                                  char *why, size_t whylen, bool *reload)
{
    int nrows = PQntuples(res);
    pmx_settings_snap_t *sn = pmx_xcalloc(1, sizeof *sn);
    sn->refs = 1;
    size_t nw = 0, nd = 0, nk = 0;
    for (int r = 0; r < nrows; r++) {
        const char *k = PQgetvalue(res, r, C_KIND);
        if (strcmp(k, "w") == 0) nw++;
        else if (strcmp(k, "d") == 0) nd++;
        else if (strcmp(k, "k") == 0) nk++;
        else if (strcmp(k, "t") != 0 && strcmp(k, "a") != 0 && strcmp(k, "r") != 0) {
            /* 'a': the digest only; 'r': routing, after the workspaces */
            snprintf(why, whylen, "row %d: unknown kind '%s'", r, k);
            free(sn);
            return NULL;
        }
    }
    domref_t *drefs = pmx_xcalloc(nd ? nd : 1, sizeof *drefs);
    size_t ndrefs = 0;
    pmx__skey_t **found = pmx_xcalloc(nk ? nk : 1, sizeof *found);   /* per 'k' row, in order */
    domref_t **found_dom = pmx_xcalloc(nk ? nk : 1, sizeof *found_dom);
    size_t nfound = 0;
    sn->ws = pmx_xcalloc(nw ? nw : 1, sizeof *sn->ws);

    /* Workspaces. */
    for (int r = 0; r < nrows; r++) {
        if (strcmp(PQgetvalue(res, r, C_KIND), "w") != 0) continue;
        const char *id = cell(res, r, C1), *name = cell(res, r, C2);
        bool susp, tm;
        int64_t burst = 0, quota = 0, susp_for = 0;
        const char *rate = cell(res, r, C6), *quota_s = cell(res, r, C8);
        const char *susp_for_s = cell(res, r, C9);
        if (!id || !name || parse_bool(cell(res, r, C3), &susp) < 0 ||
            parse_bool(cell(res, r, C4), &tm) < 0 || parse_i64(cell(res, r, C7), &burst) < 0 ||
            (quota_s && parse_i64(quota_s, &quota) < 0) ||
            (susp_for_s && parse_i64(susp_for_s, &susp_for) < 0)) {
            snprintf(why, whylen, "workspace row %d is malformed", r);
            goto fail;
        }
        pmx_settings_ws_t *w = &sn->ws[sn->nws++];
        w->snap = sn;
        w->id = pmx_xstrdup(id);
        w->name = pmx_xstrdup(name);
        w->suspended = susp;
        w->suspended_known = susp && susp_for_s;
        w->suspended_for_ms = w->suspended_known && susp_for > 0 ? susp_for : 0;
        /* Paused by the reputation guard (NULL from older rows: not paused). */
        w->paused = cell(res, r, C10) && strcmp(cell(res, r, C10), "true") == 0;
        w->loaded_ms = s->loop ? uv_now(s->loop) : 0;
        w->test_mode = tm;
        w->catch_all = cell(res, r, C5) ? pmx_xstrdup(cell(res, r, C5)) : NULL;
        w->rate_per_second = rate ? strtod(rate, NULL) : 0.0;
        if (!(w->rate_per_second > 0)) w->rate_per_second = 0.0;
        w->burst = (int)burst;
        w->daily_quota = quota > 0 ? quota : 0;
    }
    qsort(sn->ws, sn->nws, sizeof *sn->ws, cmp_ws);
    for (size_t i = 1; i < sn->nws; i++)
        if (strcmp(sn->ws[i - 1].id, sn->ws[i].id) == 0) {
            snprintf(why, whylen, "workspace %s listed twice", sn->ws[i].id);
            goto fail;
        }

    /* Pools and routes. */
    for (int r = 0; r < nrows; r++) {
        if (strcmp(PQgetvalue(res, r, C_KIND), "r") != 0) continue;
        pmx_settings_ws_t *w = find_ws(sn->ws, sn->nws, cell(res, r, C1));
        if (w) apply_routing(s, w, cell(res, r, C2), cell(res, r, C3), cell(res, r, C4));
    }

    /* Testers and domains: count per workspace, then fill. */
    for (int pass = 0; pass < 2; pass++) {
        for (int r = 0; r < nrows; r++) {
            const char *k = PQgetvalue(res, r, C_KIND);
            bool tester = strcmp(k, "t") == 0, domain = strcmp(k, "d") == 0;
            if (!tester && !domain) continue;
            pmx_settings_ws_t *w = find_ws(sn->ws, sn->nws, cell(res, r, C1));
            const char *v = cell(res, r, C2);
            if (!w || !v) continue;   /* its workspace was deleted in between: cannot happen
                                         within one statement, but never trust a row */
            if (pass == 0) {
                if (tester) w->ntesters++;
                else w->ndomains++;
                continue;
            }
            if (tester) {
                char *a = pmx_xstrdup(v);
                for (char *p = a; *p; p++) *p = (char)tolower((unsigned char)*p);
                ((char **)w->testers)[w->ntesters++] = a;
            } else {
                bool verified;
                int64_t did;
                if (parse_bool(cell(res, r, C3), &verified) < 0 ||
                    parse_i64(cell(res, r, C4), &did) < 0) {
                    snprintf(why, whylen, "domain row %d is malformed", r);
                    goto fail;
                }
                pmx_settings_domain_t *d = (pmx_settings_domain_t *)&w->domains[w->ndomains++];
                d->name = pmx_xstrdup(v);
                d->verified = verified;
                pmx_buf_t rp = PMX_BUF_INIT;
                pmx_verp_return_domain(&rp, v, cell(res, r, C5));
                d->return_path = pmx_buf_detach(&rp);
                drefs[ndrefs++] = (domref_t){ .id = did, .ws = w, .dom = d };
            }
        }
        if (pass == 0) {
            for (size_t i = 0; i < sn->nws; i++) {
                pmx_settings_ws_t *w = &sn->ws[i];
                w->testers = pmx_xcalloc(w->ntesters ? w->ntesters : 1, sizeof(char *));
                w->domains = pmx_xcalloc(w->ndomains ? w->ndomains : 1, sizeof *w->domains);
                w->ntesters = w->ndomains = 0;
            }
        }
    }
    qsort(drefs, ndrefs, sizeof *drefs, cmp_domref);

    /* Keys of verified domains: from the cache, else decrypted now. */
    for (int r = 0; r < nrows; r++) {
        if (strcmp(PQgetvalue(res, r, C_KIND), "k") != 0) continue;
        int64_t did, kid, cus;
        const char *ws = cell(res, r, C1), *sel = cell(res, r, C3), *alg_s = cell(res, r, C4);
        const char *hex = cell(res, r, C7);
        pmx_dkim_alg_t alg;
        if (parse_i64(cell(res, r, C2), &did) < 0 || parse_i64(cell(res, r, C5), &kid) < 0 ||
            parse_i64(cell(res, r, C6), &cus) < 0 || !sel || !alg_s ||
            pmx_dkim_alg_parse(alg_s, &alg) < 0) {
            snprintf(why, whylen, "key row %d is malformed", r);
            goto fail;
        }
        domref_t *dr = find_domref(drefs, ndrefs, did);
        if (!dr || !dr->dom->verified) continue;   /* unverified: never signs, not decrypted */
        pmx__skey_t *e = pmx__skeys_get(&s->keys, kid, cus, dr->dom->name, sel, alg);
        if (!e) {
            if (!hex) {
                snprintf(why, whylen, "key %" PRId64 " came without its blob but is not cached", kid);
                *reload = true;
                goto fail;
            }
            e = pmx__skeys_open(&s->keys, ws ? ws : "?", kid, cus, dr->dom->name, sel, alg, hex);
        }
        e->seen = seq;
        found[nfound] = e;
        found_dom[nfound++] = dr;
        dr->nkeys++;
    }
    for (size_t i = 0; i < ndrefs; i++) {
        drefs[i].keys = pmx_xcalloc(drefs[i].nkeys ? drefs[i].nkeys : 1, sizeof(pmx__skey_t *));
    }
    sn->keys = pmx_xcalloc(nfound ? nfound : 1, sizeof *sn->keys);
    for (size_t i = 0; i < nfound; i++) {
        domref_t *dr = found_dom[i];
        dr->keys[dr->filled++] = found[i];
        found[i]->refs++;
        sn->keys[sn->nkeys++] = found[i];
    }
    for (size_t i = 0; i < ndrefs; i++) {
        domref_t *dr = &drefs[i];
        qsort(dr->keys, dr->nkeys, sizeof *dr->keys, cmp_keyent_sel);
        pmx_dkim_key_t *arr = pmx_xcalloc(dr->nkeys ? dr->nkeys : 1, sizeof *arr);
        size_t nu = 0;
        for (size_t k = 0; k < dr->nkeys; k++) {
            if (dr->keys[k]->usable)
                arr[nu++] = dr->keys[k]->key;   /* shallow: the cache entry owns it */
            else
                dr->dom->nkeys_failed++;
        }
        dr->dom->keys = arr;
        dr->dom->nkeys = nu;
        sn->nkeys_unusable += dr->dom->nkeys_failed;
        free(dr->keys);
        dr->keys = NULL;
    }

    /* Sort what lookups bsearch, and index every domain by name. */
    sn->dix = pmx_xcalloc(ndrefs ? ndrefs : 1, sizeof *sn->dix);
    for (size_t i = 0; i < sn->nws; i++) {
        pmx_settings_ws_t *w = &sn->ws[i];
        qsort((char **)w->testers, w->ntesters, sizeof(char *), cmp_str);
        qsort((pmx_settings_domain_t *)w->domains, w->ndomains, sizeof *w->domains, cmp_dom);
        for (size_t d = 0; d < w->ndomains; d++)
            sn->dix[sn->ndix++] = (dix_t){ .name = w->domains[d].name, .ws = w,
                                           .dom = (pmx_settings_domain_t *)&w->domains[d] };
    }
    qsort(sn->dix, sn->ndix, sizeof *sn->dix, cmp_dix);

    free(drefs);
    free(found);
    free(found_dom);
    return sn;

fail:
    for (size_t i = 0; i < ndrefs; i++) free(drefs[i].keys);
    free(drefs);
    free(found);
    free(found_dom);
    snap_free(sn);   /* holds no key references yet */
    return NULL;
}

static void log_swap(const pmx_settings_t *s, const pmx_settings_snap_t *sn)
{
    size_t nd = 0, nv = 0;
    for (size_t i = 0; i < sn->nws; i++) {
        nd += sn->ws[i].ndomains;
        for (size_t d = 0; d < sn->ws[i].ndomains; d++) nv += sn->ws[i].domains[d].verified;
    }
    pmx_log_info("settings loaded gen=%" PRIu64 " workspaces=%zu domains=%zu verified=%zu "
                 "keys=%zu keys_unusable=%zu ms=%" PRIu64,
                 s->stats.swaps, sn->nws, nd, nv, sn->nkeys - sn->nkeys_unusable,
                 sn->nkeys_unusable, s->load_started ? uv_now(s->loop) - s->load_started : 0);
}

int pmx__settings_apply(pmx_settings_t *s, const PGresult *res)
{
    char why[256] = "";
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        const char *m = PQresultErrorMessage(res);
        snprintf(why, sizeof why, "%s", m && *m ? m : PQresStatus(PQresultStatus(res)));
        why[strcspn(why, "\r\n")] = '\0';
        if (!why[0]) snprintf(why, sizeof why, "query failed");
    } else if (PQnfields(res) != NCOLS) {
        snprintf(why, sizeof why, "expected %d columns, got %d", NCOLS, PQnfields(res));
    }
    if (why[0]) {
        s->stats.load_failures++;
        pmx_log_error("settings load failed err=\"%s\" (keeping the previous settings)", why);
        return -1;
    }
    uint64_t digest = rows_digest(res);
    uint64_t seq = ++s->load_seq;
    if (s->cur && s->cur->digest == digest) {
        /* Nothing changed: keep the snapshot, keep its keys cached. */
        for (size_t k = 0; k < s->cur->nkeys; k++) s->cur->keys[k]->seen = seq;
        pmx__skeys_sweep(&s->keys, seq);
        s->stats.loads++;
        pmx_log_debug("settings unchanged workspaces=%zu", s->cur->nws);
        return 0;
    }
    bool reload = false;
    s->depth++;
    pmx_settings_snap_t *sn = build(s, res, seq, why, sizeof why, &reload);
    if (!sn) {
        s->stats.load_failures++;
        pmx_log_error("settings load failed err=\"%s\" (keeping the previous settings)", why);
        if (reload) s->want_reload = true;
        leave(s);
        return -1;
    }
    sn->digest = digest;
    pmx__skeys_sweep(&s->keys, seq);
    snap_unref(s->cur);
    s->cur = sn;
    s->stats.loads++;
    s->stats.swaps++;
    log_swap(s, sn);
    if (s->changed_fn && !s->closing) s->changed_fn(s, s->changed_arg);
    leave(s);
    return 0;
}

/* ---- loading ------------------------------------------------------------ */

static void load_done(pmx_db_async_t *db, const PGresult *res, void *arg)
{
    (void)db;
    pmx_settings_t *s = arg;
    s->req = NULL;
    s->depth++;
    if (!res) {
        /* The connection went away; its return triggers a reload. */
        s->stats.load_failures++;
        pmx_log_info("settings load interrupted: postgres connection lost (reloading on reconnect)");
    } else if (pmx__settings_apply(s, res) < 0 && !s->closing) {
        uv_timer_start(&s->retry, retry_cb, PMX_SETTINGS_RETRY_MS, 0);
    }
    s->load_started = 0;
    if (s->want_reload && !s->closing) load_start(s);
    leave(s);
}

/* Before the first load: the database's schema must be this postmuxd's (README,
 * "Upgrading": `postmux migrate` before a newer postmuxd). Against an older one the
 * worker would write rows the schema does not expect, or (migration 014) count
 * stats twice; it loads no settings, so it reads no jobs, and asks again. */
static void schema_done(pmx_db_async_t *db, const PGresult *res, void *arg)
{
    (void)db;
    pmx_settings_t *s = arg;
    s->req = NULL;
    s->depth++;
    int latest = pmx_db_schema_latest();
    if (!res) {
        pmx_log_info("settings: schema check interrupted: postgres connection lost");
    } else if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        s->stats.load_failures++;
        char why[200];
        snprintf(why, sizeof why, "%s", PQresultErrorMessage(res));
        why[strcspn(why, "\r\n")] = '\0';
        pmx_log_error("settings: cannot read schema_migrations err=\"%s\" (run postmux migrate; "
                      "no jobs are read until then)", why);
        if (!s->closing) uv_timer_start(&s->retry, retry_cb, PMX_SETTINGS_RETRY_MS, 0);
    } else if (atoi(PQgetvalue(res, 0, 0)) < latest) {
        s->stats.load_failures++;
        if (!s->schema_logged)
            pmx_log_error("settings: the database schema is at version %s, this postmuxd needs %d: "
                          "run postmux migrate (no jobs are read until then; asking again every "
                          "%u s)", PQgetvalue(res, 0, 0), latest, PMX_SETTINGS_RETRY_MS / 1000);
        s->schema_logged = true;
        if (!s->closing) uv_timer_start(&s->retry, retry_cb, PMX_SETTINGS_RETRY_MS, 0);
    } else {
        if (s->schema_logged) pmx_log_info("settings: the database schema is at version %d now", latest);
        s->schema_ok = true;
        s->want_reload = false;
        load_start(s);
    }
    leave(s);
}

static void load_start(pmx_settings_t *s)
{
    if (s->closing || !s->db) return;
    if (s->req) {
        s->want_reload = true;   /* coalesced: one load in flight, one queued */
        return;
    }
    s->want_reload = false;
    if (!pmx_db_async_is_up(s->db)) return;   /* the reconnect reloads */
    if (!s->schema_ok) {
        s->req = pmx_db_async_query(s->db, "SELECT COALESCE(max(version), 0) FROM schema_migrations",
                                    schema_done, s);
        if (s->req) uv_timer_stop(&s->retry);
        return;
    }
    pmx_buf_t ids = PMX_BUF_INIT, us = PMX_BUF_INIT;
    pmx__skeys_params(&s->keys, &ids, &us);
    s->req = pmx_db_settings_load(s->db, pmx_buf_cstr(&ids), pmx_buf_cstr(&us), load_done, s);
    pmx_buf_free(&ids);
    pmx_buf_free(&us);
    if (s->req) {
        uv_timer_stop(&s->retry);
        s->load_started = uv_now(s->loop);
    }
}

void pmx_settings_reload(pmx_settings_t *s)
{
    load_start(s);
}

int pmx_settings_start(pmx_settings_t *s)
{
    if (!s->db) return -1;
    if (pmx_db_async_listen(s->db, PMX_DB_SETTINGS_CHANNEL) < 0) return -1;
    uv_timer_start(&s->refresh, refresh_cb, s->refresh_ms, s->refresh_ms);
    load_start(s);
    return 0;
}

void pmx_settings_on_db_state(pmx_settings_t *s, bool up)
{
    if (up) load_start(s);
}

void pmx_settings_on_notify(pmx_settings_t *s, const char *channel, const char *payload)
{
    if (strcmp(channel, PMX_DB_SETTINGS_CHANNEL) != 0) return;
    s->stats.notifies++;
    pmx_log_debug("settings notify ws=%s", payload && *payload ? payload : "*");
    load_start(s);
}

/* ---- lookups ------------------------------------------------------------ */

const pmx_settings_ws_t *pmx_settings_lookup(const pmx_settings_t *s, const char *ws_id)
{
    if (!s->cur || !ws_id) return NULL;
    return find_ws(s->cur->ws, s->cur->nws, ws_id);
}

size_t pmx_settings_count(const pmx_settings_t *s)
{
    return s->cur ? s->cur->nws : 0;
}

const pmx_settings_ws_t *pmx_settings_at(const pmx_settings_t *s, size_t i)
{
    return s->cur && i < s->cur->nws ? &s->cur->ws[i] : NULL;
}

size_t pmx_settings_ids(const pmx_settings_t *s, bool include_suspended, const char **ids,
                        size_t max)
{
    size_t n = 0;
    for (size_t i = 0; s->cur && i < s->cur->nws; i++) {
        if (s->cur->ws[i].suspended && !include_suspended) continue;
        if (n < max) ids[n] = s->cur->ws[i].id;
        n++;
    }
    return n;
}

/* Lowercases src into dst[0..cap); -1 when it does not fit. */
static int lower_copy(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap) return -1;
    for (size_t i = 0; i < n; i++) dst[i] = (char)tolower((unsigned char)src[i]);
    dst[n] = '\0';
    return 0;
}

pmx_settings_match_t pmx_settings_domain_for(const pmx_settings_ws_t *ws, const char *from_domain,
                                             const pmx_settings_domain_t **out)
{
    char buf[256];
    const pmx_settings_domain_t *unverified = NULL;
    if (out) *out = NULL;
    if (!ws || !from_domain || lower_copy(buf, sizeof buf, from_domain) < 0 || !buf[0])
        return PMX_SETTINGS_DOMAIN_NONE;
    const pmx_settings_snap_t *sn = ws->snap;
    for (const char *p = buf; p && *p; p = strchr(p, '.'), p = p ? p + 1 : NULL) {
        dix_t key = { .name = p };
        const dix_t *hit = bsearch(&key, sn->dix, sn->ndix, sizeof *sn->dix, cmp_dix);
        if (!hit) continue;
        if (hit->ws != ws) {
            if (hit->dom->verified) break;   /* another workspace proved it owns this subtree */
            continue;
        }
        if (hit->dom->verified) {
            if (out) *out = hit->dom;
            return hit->dom->nkeys ? PMX_SETTINGS_DOMAIN_OK : PMX_SETTINGS_DOMAIN_NO_KEY;
        }
        if (!unverified) unverified = hit->dom;
    }
    if (unverified) {
        if (out) *out = unverified;
        return PMX_SETTINGS_DOMAIN_UNVERIFIED;
    }
    return PMX_SETTINGS_DOMAIN_NONE;
}

bool pmx_settings_is_tester(const pmx_settings_ws_t *ws, const char *addr)
{
    char buf[330];
    if (!ws || !addr || !ws->ntesters || lower_copy(buf, sizeof buf, addr) < 0) return false;
    const char *k = buf;
    return bsearch(&k, ws->testers, ws->ntesters, sizeof(char *), cmp_str) != NULL;
}

const char *pmx_settings_match_name(pmx_settings_match_t m)
{
    switch (m) {
    case PMX_SETTINGS_DOMAIN_OK:         return "ok";
    case PMX_SETTINGS_DOMAIN_NO_KEY:     return "no_key";
    case PMX_SETTINGS_DOMAIN_UNVERIFIED: return "unverified";
    case PMX_SETTINGS_DOMAIN_NONE:       return "none";
    }
    return "?";
}
