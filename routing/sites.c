/*
 * The per-site session table shared by the workers; see sites.h.
 */
#include "routing/sites.h"

#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/shm.h"
#include "lib/mem.h"

typedef struct {
    char     name[PMX_SITES_NAME_MAX + 1];    /* "" = free */
    int32_t  total;
    uint16_t per_slot[PMX_SHM_SLOTS];
    uint64_t sent;
    uint64_t used_ms;                         /* last acquire, for reuse of idle cells */
    uint64_t suspended_until_ms;
    uint64_t want_ms;                         /* when want_slot was last refused for the limit */
    int16_t  want_slot;                       /* -1: nobody */
} cell_t;

/* A refusal counts as a worker waiting for this long (its pool asks again every
 * 250 ms while it has mail for the site, smtp/pool.c). */
#define WANT_MS 1000u

struct pmx_sites_shm {
    pthread_mutex_t lock;
    cell_t          cells[PMX_SITES_SLOTS];
};

static pmx_sites_shm_t *attached;
static int my_slot = -1;

pmx_sites_shm_t *pmx_sites_shm_create(void)
{
    /* Zero-filled: every cell free. */
    return pmx_shm_table_map(sizeof(pmx_sites_shm_t), offsetof(pmx_sites_shm_t, lock));
}

void pmx_sites_shm_destroy(pmx_sites_shm_t *t)
{
    if (!t) return;
    if (attached == t) attached = NULL;
    pmx_shm_table_unmap(t, sizeof *t);
}

void pmx_sites_shm_attach(pmx_sites_shm_t *t)
{
    attached = t;
}

pmx_sites_shm_t *pmx_sites_shm_get(void)
{
    return attached;
}

void pmx_sites_shm_set_slot(int slot)
{
    my_slot = slot >= 0 && slot < PMX_SHM_SLOTS ? slot : -1;
}

static bool lock(pmx_sites_shm_t *t)
{
    return pmx_shm_table_lock(&t->lock);
}

static uint32_t hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) h = (h ^ *p) * 0x100000001b3ULL;
    h ^= h >> 33;
    return (uint32_t)h;
}

/* The cell of site (claimed if new and claim), or NULL; under the lock. */
static cell_t *find(pmx_sites_shm_t *t, const char *site, bool claim)
{
    char key[PMX_SITES_NAME_MAX + 1];
    size_t n = strlen(site);
    if (n > PMX_SITES_NAME_MAX) n = PMX_SITES_NAME_MAX;
    memcpy(key, site, n);
    key[n] = '\0';
    uint32_t h = hash(key);
    cell_t *free_cell = NULL, *idle = NULL;
    for (unsigned i = 0; i < PMX_SITES_PROBE; i++) {
        cell_t *c = &t->cells[(h + i) % PMX_SITES_SLOTS];
        if (!c->name[0]) {
            if (!free_cell) free_cell = c;
            continue;
        }
        if (strcmp(c->name, key) == 0) return c;
        if (c->total == 0 && c->suspended_until_ms <= pmx_shm_now_ms()
            && (!idle || c->used_ms < idle->used_ms))
            idle = c;
    }
    if (!claim) return NULL;
    cell_t *c = free_cell ? free_cell : idle;
    if (!c) return NULL;
    memset(c, 0, sizeof *c);
    memcpy(c->name, key, n + 1);
    c->want_slot = -1;
    return c;
}

void pmx_sites_shm_slot_reset(pmx_sites_shm_t *t, int slot)
{
    if (!t || slot < 0 || slot >= PMX_SHM_SLOTS || !lock(t)) return;
    for (size_t i = 0; i < PMX_SITES_SLOTS; i++) {
        cell_t *c = &t->cells[i];
        c->total -= c->per_slot[slot];
        if (c->total < 0) c->total = 0;
        c->per_slot[slot] = 0;
    }
    pthread_mutex_unlock(&t->lock);
}

/* While another worker waits for the site (refused for the limit within WANT_MS),
 * this one may hold at most its share: the limit over the workers holding sessions
 * there, the waiting one included, rounded up. Without it, a worker that took every
 * session first would take each freed one back before the waiting worker's next ask,
 * and the other's mail for the site would wait until the first ran dry (seen in
 * `make bench`, docs/bench.md "Direct delivery"). Under the lock. */
static bool over_share(const cell_t *c, int limit, uint64_t now)
{
    if (my_slot < 0 || c->want_slot < 0 || c->want_slot == my_slot || now - c->want_ms > WANT_MS)
        return false;
    int holders = c->per_slot[c->want_slot] == 0;
    for (int i = 0; i < PMX_SHM_SLOTS; i++) holders += c->per_slot[i] > 0;
    if (c->per_slot[my_slot] == 0) holders++;
    int share = (limit + holders - 1) / holders;
    return c->per_slot[my_slot] >= share;
}

bool pmx_sites_acquire(const char *site, int limit)
{
    pmx_sites_shm_t *t = attached;
    if (!t || !lock(t)) return true;
    bool ok = true;
    cell_t *c = find(t, site, true);
    if (c) {
        uint64_t now = pmx_shm_now_ms();
        ok = c->total < limit && c->suspended_until_ms <= now && !over_share(c, limit, now);
        if (ok) {
            c->total++;
            if (my_slot >= 0) c->per_slot[my_slot]++;
            c->used_ms = now;
            if (c->want_slot == my_slot) c->want_slot = -1;
        } else if (c->total >= limit && my_slot >= 0) {
            c->want_slot = (int16_t)my_slot;   /* the last one refused; a fairness refusal is not */
            c->want_ms = now;
        }
    }
    pthread_mutex_unlock(&t->lock);
    return ok;
}

void pmx_sites_release(const char *site)
{
    pmx_sites_shm_t *t = attached;
    if (!t || !lock(t)) return;
    cell_t *c = find(t, site, false);
    if (c && c->total > 0 && (my_slot < 0 || c->per_slot[my_slot] > 0)) {
        c->total--;
        if (my_slot >= 0) c->per_slot[my_slot]--;
    }
    pthread_mutex_unlock(&t->lock);
}

bool pmx_sites_wanted(const char *site)
{
    pmx_sites_shm_t *t = attached;
    if (!t || !lock(t)) return false;
    cell_t *c = find(t, site, false);
    bool w = c && c->want_slot >= 0 && c->want_slot != my_slot
             && pmx_shm_now_ms() - c->want_ms <= WANT_MS;
    pthread_mutex_unlock(&t->lock);
    return w;
}

void pmx_sites_count_sent(const char *site, uint64_t n)
{
    pmx_sites_shm_t *t = attached;
    if (!t || !n || !lock(t)) return;
    cell_t *c = find(t, site, true);
    if (c) c->sent += n;
    pthread_mutex_unlock(&t->lock);
}

static int cmp_row(const void *a, const void *b)
{
    return strcmp(((const pmx_sites_row_t *)a)->name, ((const pmx_sites_row_t *)b)->name);
}

size_t pmx_sites_rows(pmx_sites_row_t **rows)
{
    *rows = NULL;
    pmx_sites_shm_t *t = attached;
    if (!t || !lock(t)) return 0;
    size_t n = 0;
    for (size_t i = 0; i < PMX_SITES_SLOTS; i++) n += t->cells[i].name[0] != '\0';
    pmx_sites_row_t *r = pmx_xcalloc(n ? n : 1, sizeof *r);
    size_t k = 0;
    uint64_t now = pmx_shm_now_ms();
    for (size_t i = 0; i < PMX_SITES_SLOTS && k < n; i++) {
        const cell_t *c = &t->cells[i];
        if (!c->name[0]) continue;
        memcpy(r[k].name, c->name, sizeof r[k].name);
        r[k].sessions = c->total;
        r[k].sent = c->sent;
        r[k].suspended = c->suspended_until_ms > now;
        k++;
    }
    pthread_mutex_unlock(&t->lock);
    qsort(r, k, sizeof *r, cmp_row);
    *rows = r;
    return k;
}

void pmx_sites_suspend(const char *site, uint64_t ms)
{
    pmx_sites_shm_t *t = attached;
    if (!t || !lock(t)) return;
    cell_t *c = find(t, site, true);
    uint64_t until = pmx_shm_now_ms() + ms;
    if (c && c->suspended_until_ms < until) c->suspended_until_ms = until;
    pthread_mutex_unlock(&t->lock);
}

uint64_t pmx_sites_suspended_ms(const char *site)
{
    pmx_sites_shm_t *t = attached;
    if (!t || !lock(t)) return 0;
    cell_t *c = find(t, site, false);
    uint64_t now = pmx_shm_now_ms();
    uint64_t left = c && c->suspended_until_ms > now ? c->suspended_until_ms - now : 0;
    pthread_mutex_unlock(&t->lock);
    return left;
}
