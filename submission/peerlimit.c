/*
 * Per-address session counts and failed-AUTH throttling; see peerlimit.h.
 * A chained hash table of address keys. An entry lives while it has open
 * sessions, recent failures or a block; idle ones are dropped by a sweep
 * whenever the table is full. In postmuxd the failures live in the table
 * shared by every worker (submission/peers_shm.h) and the entries here only
 * count sessions; without it (tests) they are counted here too.
 */
#include "submission/peerlimit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "submission/peers_shm.h"
#include "lib/mem.h"

#define NBUCKETS 1024u

typedef struct entry entry_t;
struct entry {
    entry_t            *next;
    char                key[PMX_PEERLIMIT_KEY_MAX];
    int                 sessions;
    pmx_peer_failures_t f;   /* unused when the shared table counts them */
};

_Static_assert(PMX_PEERLIMIT_KEY_MAX <= PMX_PEERS_KEY_MAX, "every key fits the shared table");

struct pmx_worker_peerlimit {
    entry_t *buckets[NBUCKETS];
    size_t   count;
};

/* FNV-1a: keys come from the network, but only their bucket depends on them. */
static unsigned bucket_of(const char *key)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) h = (h ^ *p) * 16777619u;
    return h % NBUCKETS;
}

void pmx_worker_peerlimit_key(const struct sockaddr *sa, char out[PMX_PEERLIMIT_KEY_MAX])
{
    char buf[INET6_ADDRSTRLEN];
    if (sa && sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        if (inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf)) {
            snprintf(out, PMX_PEERLIMIT_KEY_MAX, "%s", buf);
            return;
        }
    } else if (sa && sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        struct in6_addr a = in6->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(&a)) {
            if (inet_ntop(AF_INET, &a.s6_addr[12], buf, sizeof buf)) {
                snprintf(out, PMX_PEERLIMIT_KEY_MAX, "%s", buf);
                return;
            }
        }
        memset(&a.s6_addr[8], 0, 8);
        if (inet_ntop(AF_INET6, &a, buf, sizeof buf)) {
            snprintf(out, PMX_PEERLIMIT_KEY_MAX, "%s/64", buf);
            return;
        }
    }
    snprintf(out, PMX_PEERLIMIT_KEY_MAX, "local");
}

pmx_worker_peerlimit_t *pmx_worker_peerlimit_new(void)
{
    return pmx_xcalloc(1, sizeof(pmx_worker_peerlimit_t));
}

void pmx_worker_peerlimit_free(pmx_worker_peerlimit_t *p)
{
    if (!p) return;
    for (unsigned b = 0; b < NBUCKETS; b++) {
        while (p->buckets[b]) {
            entry_t *e = p->buckets[b];
            p->buckets[b] = e->next;
            free(e);
        }
    }
    free(p);
}

/* Forgets failures past the window and blocks that ended. */
static void expire(pmx_peer_failures_t *f, uint64_t now)
{
    if (f->blocked_until_ms && f->blocked_until_ms <= now) {
        f->blocked_until_ms = 0;
        f->failures = 0;
    }
    if (f->failures && !f->blocked_until_ms && now > f->last_failure_ms &&
        now - f->last_failure_ms >= PMX_PEERLIMIT_WINDOW_MS)
        f->failures = 0;
}

static bool idle(entry_t *e, uint64_t now)
{
    expire(&e->f, now);
    return e->sessions == 0 && e->f.failures == 0 && e->f.blocked_until_ms == 0;
}

/* One more failed AUTH: the delay before answering it, or -1 when now blocked. */
static int64_t count_failure(pmx_peer_failures_t *f, uint64_t now, void *arg)
{
    (void)arg;
    if (!f) return 0;   /* not tracked (table full) */
    expire(f, now);
    if (f->blocked_until_ms) return -1;
    f->failures++;
    if (now > f->last_failure_ms) f->last_failure_ms = now;
    f->expires_ms = now + PMX_PEERLIMIT_WINDOW_MS;
    if (f->failures >= PMX_PEERLIMIT_MAX_FAILURES) {
        f->blocked_until_ms = now + PMX_PEERLIMIT_BLOCK_MS;
        if (f->blocked_until_ms > f->expires_ms) f->expires_ms = f->blocked_until_ms;
        return -1;
    }
    if (f->failures <= PMX_PEERLIMIT_FREE_FAILURES) return 0;
    int64_t d = (int64_t)(f->failures - PMX_PEERLIMIT_FREE_FAILURES) * PMX_PEERLIMIT_DELAY_STEP_MS;
    return d > PMX_PEERLIMIT_DELAY_MAX_MS ? PMX_PEERLIMIT_DELAY_MAX_MS : d;
}

static int64_t is_blocked(pmx_peer_failures_t *f, uint64_t now, void *arg)
{
    (void)arg;
    if (!f) return 0;
    expire(f, now);
    return f->blocked_until_ms != 0;
}

static void sweep(pmx_worker_peerlimit_t *p, uint64_t now)
{
    for (unsigned b = 0; b < NBUCKETS; b++) {
        entry_t **pp = &p->buckets[b];
        while (*pp) {
            entry_t *e = *pp;
            if (idle(e, now)) {
                *pp = e->next;
                p->count--;
                free(e);
            } else {
                pp = &e->next;
            }
        }
    }
}

static entry_t *find(pmx_worker_peerlimit_t *p, const char *key)
{
    entry_t *e = p->buckets[bucket_of(key)];
    while (e && strcmp(e->key, key) != 0) e = e->next;
    return e;
}

/* The entry of key, made if needed; NULL when the table is full. */
static entry_t *get(pmx_worker_peerlimit_t *p, const char *key, uint64_t now)
{
    entry_t *e = find(p, key);
    if (e) return e;
    if (p->count >= PMX_PEERLIMIT_MAX_ENTRIES) sweep(p, now);
    if (p->count >= PMX_PEERLIMIT_MAX_ENTRIES) return NULL;
    e = pmx_xcalloc(1, sizeof *e);
    snprintf(e->key, sizeof e->key, "%s", key);
    unsigned b = bucket_of(key);
    e->next = p->buckets[b];
    p->buckets[b] = e;
    p->count++;
    return e;
}

int pmx_worker_peerlimit_open(pmx_worker_peerlimit_t *p, const char *key, uint64_t now_ms)
{
    entry_t *e = get(p, key, now_ms);
    if (!e) return 0;
    if (e->sessions >= PMX_PEERLIMIT_MAX_SESSIONS) return -1;
    e->sessions++;
    return 0;
}

void pmx_worker_peerlimit_close(pmx_worker_peerlimit_t *p, const char *key, uint64_t now_ms)
{
    entry_t *e = find(p, key);
    (void)now_ms;
    if (!e || e->sessions == 0) return;
    e->sessions--;
}

bool pmx_worker_peerlimit_blocked(pmx_worker_peerlimit_t *p, const char *key, uint64_t now_ms)
{
    pmx_peers_shm_t *shared = pmx_peers_shm_get();
    if (shared) return pmx_peers_shm_with(shared, key, false, is_blocked, NULL) != 0;
    entry_t *e = find(p, key);
    return e && is_blocked(&e->f, now_ms, NULL) != 0;
}

int64_t pmx_worker_peerlimit_auth_failed(pmx_worker_peerlimit_t *p, const char *key,
                                         uint64_t now_ms)
{
    pmx_peers_shm_t *shared = pmx_peers_shm_get();
    if (shared) return pmx_peers_shm_with(shared, key, true, count_failure, NULL);
    entry_t *e = get(p, key, now_ms);
    return count_failure(e ? &e->f : NULL, now_ms, NULL);
}
