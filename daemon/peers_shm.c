/* The failed-AUTH table shared by the workers; see peers_shm.h. */
#include "daemon/peers_shm.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>

typedef struct {
    char                key[PMX_PEERS_KEY_MAX];   /* "" = never used */
    pmx_peer_failures_t f;
} cell_t;

struct pmx_peers_shm {
    pthread_mutex_t lock;
    cell_t          cells[PMX_PEERS_SLOTS];
};

static pmx_peers_shm_t *attached;

pmx_peers_shm_t *pmx_peers_shm_create(void)
{
    void *p = mmap(NULL, sizeof(pmx_peers_shm_t), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    pmx_peers_shm_t *t = p;   /* zero-filled: every cell free */
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

/* FNV-1a: keys come from the network, but only where they probe depends on them. */
static uint32_t hash(const char *key)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) h = (h ^ *p) * 16777619u;
    return h;
}

static bool lock(pmx_peers_shm_t *t)
{
    int rc = pthread_mutex_lock(&t->lock);
    if (rc == EOWNERDEAD) rc = pthread_mutex_consistent(&t->lock);
    return rc == 0;
}

/* key's cell, or (create) a free one made its own; NULL when neither is there. */
static cell_t *find(pmx_peers_shm_t *t, const char *key, bool create, uint64_t now)
{
    uint32_t h = hash(key);
    cell_t *free_cell = NULL;
    for (unsigned i = 0; i < PMX_PEERS_PROBE; i++) {
        cell_t *c = &t->cells[(h + i) % PMX_PEERS_SLOTS];
        bool expired = !c->key[0] || c->f.expires_ms <= now;
        if (c->key[0] && strcmp(c->key, key) == 0) {
            if (expired) memset(&c->f, 0, sizeof c->f);   /* a quiet window forgets */
            return c;
        }
        if (expired && !free_cell) free_cell = c;
    }
    if (!create || !free_cell) return NULL;
    memset(free_cell, 0, sizeof *free_cell);
    memcpy(free_cell->key, key, strlen(key) + 1);
    return free_cell;
}

int64_t pmx_peers_shm_with(pmx_peers_shm_t *t, const char *key, bool create, uint64_t now_ms,
                           pmx_peers_fn fn, void *arg)
{
    if (strlen(key) >= PMX_PEERS_KEY_MAX || !key[0]) return fn(NULL, now_ms, arg);
    if (!lock(t)) return fn(NULL, now_ms, arg);
    cell_t *c = find(t, key, create, now_ms);
    int64_t r = fn(c ? &c->f : NULL, now_ms, arg);
    pthread_mutex_unlock(&t->lock);
    return r;
}
