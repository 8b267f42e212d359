/* The per-address table shared by the workers (failed AUTH, sessions); see peers_shm.h. */
#include "submission/peers_shm.h"

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <string.h>

#include "daemon/shm.h"
#include "lib/encode.h"

typedef struct {
    char                key[PMX_PEERS_KEY_MAX];   /* "" = never used */
    pmx_peer_failures_t f;
    int32_t             sessions;                 /* the sum of per_slot */
    uint16_t            per_slot[PMX_SHM_SLOTS];  /* sessions per worker slot */
} cell_t;

struct pmx_peers_shm {
    pthread_mutex_t lock;
    uint64_t        seed;   /* random: where a key probes cannot be worked out offline */
    int32_t         total;                       /* sessions of every worker */
    int32_t         slot_total[PMX_SHM_SLOTS];   /* ... per worker slot */
    cell_t          cells[PMX_PEERS_SLOTS];
};

static pmx_peers_shm_t *attached;
static int attached_slot = -1;

pmx_peers_shm_t *pmx_peers_shm_create(void)
{
    pmx_peers_shm_t *t = pmx_shm_table_map(sizeof(pmx_peers_shm_t),
                                           offsetof(pmx_peers_shm_t, lock));
    if (!t) return NULL;      /* zero-filled: every cell free */
    if (pmx_random_bytes((uint8_t *)&t->seed, sizeof t->seed) < 0) {
        pmx_shm_table_unmap(t, sizeof *t);
        errno = EIO;
        return NULL;
    }
    return t;
}

void pmx_peers_shm_destroy(pmx_peers_shm_t *t)
{
    if (!t) return;
    if (attached == t) attached = NULL;
    pmx_shm_table_unmap(t, sizeof *t);
}

void pmx_peers_shm_attach(pmx_peers_shm_t *t)
{
    attached = t;
}

pmx_peers_shm_t *pmx_peers_shm_get(void)
{
    return attached;
}

/* FNV-1a from a random seed, then a 64-bit finalizer (murmur3's fmix64): keys
 * come from the network, and without the seed nobody can pick keys that crowd
 * one probe window. */
static uint32_t hash(const pmx_peers_shm_t *t, const char *key)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ t->seed;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) h = (h ^ *p) * 0x100000001b3ULL;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return (uint32_t)h;
}

static bool lock(pmx_peers_shm_t *t)
{
    return pmx_shm_table_lock(&t->lock);
}

/* A cell in use: it has sessions, or failures / attempts not yet forgotten. */
static bool live(const cell_t *c, uint64_t now)
{
    return c->key[0] && (c->sessions > 0 || c->f.expires_ms > now);
}

/* Which live cell a new key may take when its window is full: not a blocked
 * one, none with sessions or attempts in flight, and of the others the one with the fewest failures (the oldest among
 * equals), so an address that keeps failing is never pushed out by many that
 * fail once. */
static bool better_victim(const cell_t *c, const cell_t *than, uint64_t now)
{
    if (c->f.blocked_until_ms > now || c->sessions > 0 || c->f.pending > 0) return false;
    if (!than) return true;
    if (c->f.failures != than->f.failures) return c->f.failures < than->f.failures;
    return c->f.last_failure_ms < than->f.last_failure_ms;
}

/* key's cell, or (create) a free or evicted one made its own; NULL when the
 * key is not there and (create) every cell of its window is blocked. */
static cell_t *find(pmx_peers_shm_t *t, const char *key, bool create, uint64_t now)
{
    uint32_t h = hash(t, key);
    cell_t *free_cell = NULL, *victim = NULL;
    for (unsigned i = 0; i < PMX_PEERS_PROBE; i++) {
        cell_t *c = &t->cells[(h + i) % PMX_PEERS_SLOTS];
        if (c->key[0] && strcmp(c->key, key) == 0) {
            /* A quiet window forgets (attempts in flight too: their worker may be gone). */
            if (c->f.expires_ms <= now) memset(&c->f, 0, sizeof c->f);
            return c;
        }
        bool in_use = live(c, now);
        if (!in_use && !free_cell) free_cell = c;
        if (in_use && better_victim(c, victim, now)) victim = c;
    }
    if (!create) return NULL;
    cell_t *c = free_cell ? free_cell : victim;
    if (!c) return NULL;
    memset(c, 0, sizeof *c);
    memcpy(c->key, key, strlen(key) + 1);
    return c;
}

int64_t pmx_peers_shm_with(pmx_peers_shm_t *t, const char *key, bool create, pmx_peers_fn fn,
                           void *arg)
{
    if (strlen(key) >= PMX_PEERS_KEY_MAX || !key[0]) return fn(NULL, pmx_shm_now_ms(), arg);
    if (!lock(t)) return fn(NULL, pmx_shm_now_ms(), arg);
    /* Read under the lock: every writer's "now" is then at least the last one
     * stored, whichever process it runs in. */
    uint64_t now = pmx_shm_now_ms();
    cell_t *c = find(t, key, create, now);
    int64_t r = fn(c ? &c->f : NULL, now, arg);
    pthread_mutex_unlock(&t->lock);
    return r;
}

/* ---- sessions ------------------------------------------------------------------ */

void pmx_peers_shm_set_slot(int slot)
{
    attached_slot = slot >= 0 && slot < PMX_SHM_SLOTS ? slot : -1;
}

int pmx_peers_shm_slot(void)
{
    return attached_slot;
}

static int slot_index(int slot)
{
    return slot >= 0 && slot < PMX_SHM_SLOTS ? slot : 0;
}

pmx_peers_admit_t pmx_peers_shm_session_open(pmx_peers_shm_t *t, const char *key, int slot,
                                             const pmx_peers_limits_t *lim, bool *tracked)
{
    *tracked = false;
    slot = slot_index(slot);
    bool keyok = key[0] && strlen(key) < PMX_PEERS_KEY_MAX;
    if (!lock(t)) return PMX_PEERS_ADMIT_OK;   /* cannot count: the per-worker cap still holds */
    uint64_t now = pmx_shm_now_ms();
    cell_t *c = keyok ? find(t, key, true, now) : NULL;
    int mine = c ? c->sessions : 0;
    pmx_peers_admit_t r = PMX_PEERS_ADMIT_OK;
    if (t->total >= lim->max_total) r = PMX_PEERS_ADMIT_FULL;
    else if (mine >= lim->max_per_address) r = PMX_PEERS_ADMIT_ADDRESS;
    else if (mine > 0 && t->total >= lim->high_water) r = PMX_PEERS_ADMIT_BUSY;
    else if (c && c->per_slot[slot] == UINT16_MAX) r = PMX_PEERS_ADMIT_ADDRESS;
    if (r == PMX_PEERS_ADMIT_OK) {
        t->total++;
        t->slot_total[slot]++;
        if (c) {
            c->sessions++;
            c->per_slot[slot]++;
            *tracked = true;
        }
    }
    pthread_mutex_unlock(&t->lock);
    return r;
}

void pmx_peers_shm_session_close(pmx_peers_shm_t *t, const char *key, int slot, bool tracked)
{
    slot = slot_index(slot);
    if (!lock(t)) return;
    /* After a reset of this slot (cannot happen while its worker lives) the
     * counts are already gone: never go below zero. */
    if (t->slot_total[slot] > 0) {
        t->slot_total[slot]--;
        t->total--;
    }
    if (tracked && key[0] && strlen(key) < PMX_PEERS_KEY_MAX) {
        cell_t *c = find(t, key, false, pmx_shm_now_ms());
        if (c && c->per_slot[slot] > 0) {
            c->per_slot[slot]--;
            c->sessions--;
        }
    }
    pthread_mutex_unlock(&t->lock);
}

void pmx_peers_shm_slot_reset(pmx_peers_shm_t *t, int slot)
{
    if (!t || slot < 0 || slot >= PMX_SHM_SLOTS || !lock(t)) return;
    t->total -= t->slot_total[slot];
    t->slot_total[slot] = 0;
    for (size_t i = 0; i < PMX_PEERS_SLOTS; i++) {
        cell_t *c = &t->cells[i];
        c->sessions -= c->per_slot[slot];
        c->per_slot[slot] = 0;
    }
    pthread_mutex_unlock(&t->lock);
}

int pmx_peers_shm_sessions(pmx_peers_shm_t *t, const char *key)
{
    if (!lock(t)) return 0;
    int n = 0;
    if (!key) {
        n = t->total;
    } else if (key[0] && strlen(key) < PMX_PEERS_KEY_MAX) {
        cell_t *c = find(t, key, false, pmx_shm_now_ms());
        n = c ? c->sessions : 0;
    }
    pthread_mutex_unlock(&t->lock);
    return n;
}
