/*
 * The settings cache's store of decrypted DKIM keys; see settings_keys.h.
 * A sorted array searched by id: a worker holds at most a few thousand keys
 * and the array changes only when a reload finds new or deleted keys.
 */
#include "workers/settings_keys.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/encode.h"
#include "lib/log.h"
#include "lib/mem.h"

void pmx__skeys_init(pmx__skeys_t *c, const uint8_t master[PMX_DKIM_MASTER_KEY_LEN])
{
    memset(c, 0, sizeof *c);
    memcpy(c->master, master, PMX_DKIM_MASTER_KEY_LEN);
}

void pmx__skey_unref(pmx__skey_t *e)
{
    if (--e->refs > 0) return;
    pmx_dkim_key_free(&e->key);
    free(e->domain);
    free(e->selector);
    free(e);
}

void pmx__skeys_clear(pmx__skeys_t *c)
{
    for (size_t i = 0; i < c->n; i++) pmx__skey_unref(c->v[i]);
    free(c->v);
    c->v = NULL;
    c->n = c->cap = 0;
    pmx_wipe(c->master, sizeof c->master);
}

static size_t find_pos(const pmx__skeys_t *c, int64_t id, bool *found)
{
    size_t lo = 0, hi = c->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c->v[mid]->id < id) lo = mid + 1;
        else hi = mid;
    }
    *found = lo < c->n && c->v[lo]->id == id;
    return lo;
}

static void remove_at(pmx__skeys_t *c, size_t pos)
{
    pmx__skey_unref(c->v[pos]);
    memmove(c->v + pos, c->v + pos + 1, (c->n - pos - 1) * sizeof *c->v);
    c->n--;
}

pmx__skey_t *pmx__skeys_get(pmx__skeys_t *c, int64_t id, int64_t created_us, const char *domain,
                            const char *selector, pmx_dkim_alg_t alg)
{
    bool hit;
    size_t pos = find_pos(c, id, &hit);
    if (!hit) return NULL;
    pmx__skey_t *e = c->v[pos];
    if (e->created_us == created_us && e->alg == alg && strcmp(e->selector, selector) == 0 &&
        strcmp(e->domain, domain) == 0)
        return e;
    remove_at(c, pos);   /* same id, another key */
    return NULL;
}

pmx__skey_t *pmx__skeys_open(pmx__skeys_t *c, const char *ws, int64_t id, int64_t created_us,
                             const char *domain, const char *selector, pmx_dkim_alg_t alg,
                             const char *hex)
{
    pmx__skey_t *e = pmx_xcalloc(1, sizeof *e);
    e->id = id;
    e->created_us = created_us;
    e->domain = pmx_xstrdup(domain);
    e->selector = pmx_xstrdup(selector);
    e->alg = alg;
    e->refs = 1;

    pmx_buf_t blob = PMX_BUF_INIT, aad = PMX_BUF_INIT, pem = PMX_BUF_INIT;
    char why[200] = "";
    if (pmx_hex_decode(&blob, hex, strlen(hex)) < 0) {
        snprintf(why, sizeof why, "stored blob is not hex");
    } else {
        pmx_dkim_key_aad(&aad, domain, selector);
        int rc = pmx_dkim_key_open(c->master, pmx_buf_cstr(&aad), (const uint8_t *)blob.data,
                                   blob.len, &pem);
        if (rc == -EBADMSG)
            snprintf(why, sizeof why, "cannot decrypt: wrong master key or tampered data");
        else if (rc < 0)
            snprintf(why, sizeof why, "cannot decrypt: malformed blob");
        else if (pmx_dkim_key_init(&e->key, domain, selector, alg, pem.data, pem.len, why,
                                   sizeof why) == 0)
            e->usable = true;
    }
    pmx_buf_free(&blob);
    pmx_buf_free(&aad);
    pmx_buf_free_secret(&pem);
    if (e->usable) {
        c->opened++;
    } else {
        c->failed++;
        pmx_log_error("settings: DKIM key unusable ws=%s domain=%s selector=%s key_id=%" PRId64
                      " err=\"%s\" (mail from this domain cannot be signed with it)",
                      ws, domain, selector, id, why);
    }

    bool hit;
    size_t pos = find_pos(c, id, &hit);
    if (hit) remove_at(c, pos);
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 16;
        c->v = pmx_xrealloc(c->v, c->cap * sizeof *c->v);
    }
    memmove(c->v + pos + 1, c->v + pos, (c->n - pos) * sizeof *c->v);
    c->v[pos] = e;
    c->n++;
    return e;
}

void pmx__skeys_sweep(pmx__skeys_t *c, uint64_t seq)
{
    size_t j = 0;
    for (size_t i = 0; i < c->n; i++) {
        if (c->v[i]->seen == seq)
            c->v[j++] = c->v[i];
        else
            pmx__skey_unref(c->v[i]);
    }
    c->n = j;
}

void pmx__skeys_params(const pmx__skeys_t *c, pmx_buf_t *ids, pmx_buf_t *us)
{
    pmx_buf_append_char(ids, '{');
    pmx_buf_append_char(us, '{');
    for (size_t i = 0; i < c->n; i++) {
        pmx_buf_appendf(ids, "%s%" PRId64, i ? "," : "", c->v[i]->id);
        pmx_buf_appendf(us, "%s%" PRId64, i ? "," : "", c->v[i]->created_us);
    }
    pmx_buf_append_char(ids, '}');
    pmx_buf_append_char(us, '}');
}
