/*
 * The suppression list's hash set; see suppress.h.
 *
 * Open addressing with linear probing over two parallel arrays (keys, values),
 * a power-of-two capacity kept at most 3/4 full. Key 0 marks an empty slot (a
 * hash that comes out 0 is stored as 1). Removal shifts the following entries
 * of the run back (no tombstones), so a long-lived table does not fill up
 * with dead slots however often addresses come and go.
 *
 * A value is the reason in its top 3 bits and the expiry in its low 29: minutes
 * since 2020-01-01 UTC, rounded up, 0 = never (29 bits of minutes reach the
 * year 3000).
 */
#include "inbound/suppress.h"

#include <stdlib.h>
#include <string.h>

#include "lib/encode.h"
#include "lib/mem.h"
#include "lib/siphash.h"

#define INITIAL_CAP  1024u
#define EPOCH_2020   1577836800LL
#define EXP_BITS     29
#define EXP_MASK     ((1u << EXP_BITS) - 1)
#define MAX_WS       64
#define MAX_SCOPE    64
#define MAX_ADDR     320

struct pmx_supp_table {
    uint64_t *keys;
    uint32_t *vals;
    size_t    cap;       /* a power of two */
    size_t    n;
    uint8_t   hkey[PMX_SIPHASH_KEY_LEN];
};

static const char *const reason_names[] = {
    [PMX_SUPP_HARD_BOUNCE] = "hard_bounce",
    [PMX_SUPP_SOFT_BOUNCE] = "soft_bounce",
    [PMX_SUPP_COMPLAINT]   = "complaint",
    [PMX_SUPP_UNSUBSCRIBE] = "unsubscribe",
    [PMX_SUPP_MANUAL]      = "manual",
};
#define NREASONS (sizeof reason_names / sizeof reason_names[0])

const char *pmx_supp_reason_name(pmx_supp_reason_t r)
{
    return (r > PMX_SUPP_NONE && (size_t)r < NREASONS) ? reason_names[r] : NULL;
}

pmx_supp_reason_t pmx_supp_reason_parse(const char *s)
{
    for (size_t i = 1; i < NREASONS; i++)
        if (s && strcmp(s, reason_names[i]) == 0) return (pmx_supp_reason_t)i;
    return PMX_SUPP_NONE;
}

pmx_supp_table_t *pmx_supp_table_new(void)
{
    pmx_supp_table_t *t = pmx_xcalloc(1, sizeof *t);
    t->cap = INITIAL_CAP;
    t->keys = pmx_xcalloc(t->cap, sizeof *t->keys);
    t->vals = pmx_xcalloc(t->cap, sizeof *t->vals);
    if (pmx_random_bytes(t->hkey, sizeof t->hkey) < 0) {
        /* Without a random key the table still works; only crowding gets easier. */
        uint64_t a = (uint64_t)(uintptr_t)t ^ (uint64_t)rand();
        memcpy(t->hkey, &a, sizeof a);
    }
    return t;
}

void pmx_supp_table_free(pmx_supp_table_t *t)
{
    if (!t) return;
    free(t->keys);
    free(t->vals);
    pmx_wipe(t->hkey, sizeof t->hkey);
    free(t);
}

size_t pmx_supp_table_count(const pmx_supp_table_t *t)
{
    return t->n;
}

/* The key of (ws, scope, addr): 0 when an argument is empty or too long. */
static uint64_t key_of(const pmx_supp_table_t *t, const char *ws, const char *scope,
                       const char *addr)
{
    size_t lw = ws ? strlen(ws) : 0, ls = scope ? strlen(scope) : 0;
    size_t la = addr ? strlen(addr) : 0;
    if (!lw || !ls || !la || lw > MAX_WS || ls > MAX_SCOPE || la > MAX_ADDR) return 0;
    char buf[MAX_WS + MAX_SCOPE + MAX_ADDR + 2];
    memcpy(buf, ws, lw);
    buf[lw] = '\0';
    memcpy(buf + lw + 1, scope, ls);
    buf[lw + 1 + ls] = '\0';
    char *a = buf + lw + ls + 2;
    for (size_t i = 0; i < la; i++) {
        char c = addr[i];
        a[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    uint64_t h = pmx_siphash(t->hkey, buf, lw + ls + la + 2);
    return h ? h : 1;
}

/* The slot holding key, or the empty slot where it would go. */
static size_t find(const pmx_supp_table_t *t, uint64_t key)
{
    size_t mask = t->cap - 1, i = (size_t)key & mask;
    while (t->keys[i] && t->keys[i] != key) i = (i + 1) & mask;
    return i;
}

static void grow(pmx_supp_table_t *t)
{
    uint64_t *ok = t->keys;
    uint32_t *ov = t->vals;
    size_t ocap = t->cap;
    t->cap *= 2;
    t->keys = pmx_xcalloc(t->cap, sizeof *t->keys);
    t->vals = pmx_xcalloc(t->cap, sizeof *t->vals);
    for (size_t i = 0; i < ocap; i++) {
        if (!ok[i]) continue;
        size_t j = find(t, ok[i]);
        t->keys[j] = ok[i];
        t->vals[j] = ov[i];
    }
    free(ok);
    free(ov);
}

/* Removes the entry in slot i and shifts the rest of its run back. */
static void remove_at(pmx_supp_table_t *t, size_t i)
{
    size_t mask = t->cap - 1, j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (!t->keys[j]) break;
        size_t home = (size_t)t->keys[j] & mask;
        /* j's entry may move to i only if its home is not in (i, j]. */
        bool between = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
        if (between) continue;
        t->keys[i] = t->keys[j];
        t->vals[i] = t->vals[j];
        i = j;
    }
    t->keys[i] = 0;
    t->vals[i] = 0;
    t->n--;
}

/* Minutes since 2020 of Unix time s, rounded up; 0 for "never" is reserved. */
static uint32_t expiry_value(int64_t s)
{
    int64_t m = (s - EPOCH_2020 + 59) / 60;
    if (m < 1) m = 1;
    if (m > (int64_t)EXP_MASK) m = EXP_MASK;
    return (uint32_t)m;
}

int pmx_supp_table_put(pmx_supp_table_t *t, const char *ws, const char *scope, const char *addr,
                       pmx_supp_reason_t reason, int64_t expires)
{
    if (!pmx_supp_reason_name(reason)) return -1;
    uint64_t key = key_of(t, ws, scope, addr);
    if (!key) return -1;
    if (expires < 0) return -1;
    if (expires > 0 && expires <= EPOCH_2020) {
        /* Already past: what it would have replaced is gone too. */
        pmx_supp_table_del(t, ws, scope, addr);
        return 0;
    }
    if ((t->n + 1) * 4 > t->cap * 3) grow(t);
    size_t i = find(t, key);
    if (!t->keys[i]) t->n++;
    t->keys[i] = key;
    t->vals[i] = ((uint32_t)reason << EXP_BITS) | (expires ? expiry_value(expires) : 0);
    return 0;
}

void pmx_supp_table_del(pmx_supp_table_t *t, const char *ws, const char *scope, const char *addr)
{
    uint64_t key = key_of(t, ws, scope, addr);
    if (!key) return;
    size_t i = find(t, key);
    if (t->keys[i]) remove_at(t, i);
}

pmx_supp_reason_t pmx_supp_table_get(const pmx_supp_table_t *t, const char *ws, const char *scope,
                                     const char *addr, int64_t now)
{
    if (t->n == 0) return PMX_SUPP_NONE;
    uint64_t key = key_of(t, ws, scope, addr);
    if (!key) return PMX_SUPP_NONE;
    size_t i = find(t, key);
    if (!t->keys[i]) return PMX_SUPP_NONE;
    uint32_t v = t->vals[i], exp = v & EXP_MASK;
    /* Expired at the minute: an entry lives until its minute has begun. */
    if (exp && now >= EPOCH_2020 + (int64_t)exp * 60) return PMX_SUPP_NONE;
    return (pmx_supp_reason_t)(v >> EXP_BITS);
}

/* Copies the next space-separated word of *p into out (NUL-terminated); 0 or -1. */
static int word(const char **p, char *out, size_t cap)
{
    const char *s = *p, *e = strchr(s, ' ');
    if (!e) return -1;
    size_t n = (size_t)(e - s);
    if (n == 0 || n >= cap) return -1;
    memcpy(out, s, n);
    out[n] = '\0';
    *p = e + 1;
    return 0;
}

int pmx_supp_table_apply(pmx_supp_table_t *t, const char *payload)
{
    if (!payload) return -1;
    if (strcmp(payload, "*") == 0) return 1;
    char op = payload[0];
    if ((op != '+' && op != '-') || payload[1] != ' ') return -1;
    const char *p = payload + 2;
    char ws[MAX_WS + 1], scope[MAX_SCOPE + 1], reason[32], exp[24];
    if (word(&p, ws, sizeof ws) < 0 || word(&p, scope, sizeof scope) < 0) return -1;
    if (op == '-') {
        if (!*p) return -1;
        pmx_supp_table_del(t, ws, scope, p);
        return 0;
    }
    if (word(&p, reason, sizeof reason) < 0 || word(&p, exp, sizeof exp) < 0 || !*p) return -1;
    char *end;
    long long e = strtoll(exp, &end, 10);
    if (*end || e < 0) return -1;
    return pmx_supp_table_put(t, ws, scope, p, pmx_supp_reason_parse(reason), (int64_t)e);
}
