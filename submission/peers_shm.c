/* The failed-AUTH table shared by the workers; see peers_shm.h. */
#include "submission/peers_shm.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>

#include "daemon/shm.h"
#include "lib/encode.h"

typedef struct {
    char                key[PMX_PEERS_KEY_MAX];   /* "" = never used */
    pmx_peer_failures_t f;
} cell_t;

struct pmx_peers_shm {
    pthread_mutex_t lock;
    uint64_t        seed;   /* random: where a key probes cannot be worked out offline */
    cell_t          cells[PMX_PEERS_SLOTS];
};

static pmx_peers_shm_t *attached;

pmx_peers_shm_t *pmx_peers_shm_create(void)
{
    void *p = mmap(NULL, sizeof(pmx_peers_shm_t), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    pmx_peers_shm_t *t = p;   /* zero-filled: every cell free */
    if (pmx_random_bytes((uint8_t *)&t->seed, sizeof t->seed) < 0) {
        munmap(p, sizeof *t);
        errno = EIO;
        return NULL;
    }
    pthread_mutexattr_t a;
    int rc = pthread_mutexattr_init(&a);
    if (rc == 0) rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (rc == 0) rc = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (rc == 0) rc = pthread_mutex_init(&t->lock, &a);
    pthread_mutexattr_destroy(&a);
    if (rc != 0) {
        munmap(p, sizeof *t);
        errno = rc;
        return NULL;
    }
    return t;
}

void pmx_peers_shm_destroy(pmx_peers_shm_t *t)
{
    if (!t) return;
    if (attached == t) attached = NULL;
    /* No pthread_mutex_destroy: a worker may still hold it while it dies. */
    munmap(t, sizeof *t);
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
    int rc = pthread_mutex_lock(&t->lock);
    if (rc == EOWNERDEAD) rc = pthread_mutex_consistent(&t->lock);
    return rc == 0;
}

/* Which live cell a new key may take when its window is full: not a blocked
 * one, and of the others the one with the fewest failures (the oldest among
 * equals), so an address that keeps failing is never pushed out by many that
 * fail once. */
static bool better_victim(const cell_t *c, const cell_t *than, uint64_t now)
{
    if (c->f.blocked_until_ms > now) return false;
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
        bool expired = !c->key[0] || c->f.expires_ms <= now;
        if (c->key[0] && strcmp(c->key, key) == 0) {
            if (expired) memset(&c->f, 0, sizeof c->f);   /* a quiet window forgets */
            return c;
        }
        if (expired && !free_cell) free_cell = c;
        if (!expired && better_victim(c, victim, now)) victim = c;
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
