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
    entry_t           *buckets[NBUCKETS];
    size_t             count;
    pmx_peers_limits_t lim;
    int                total;    /* sessions open here (without the shared table) */
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
    pmx_worker_peerlimit_t *p = pmx_xcalloc(1, sizeof *p);
    pmx_worker_peerlimit_set_limits(p, PMX_PEERLIMIT_DEFAULT_TOTAL, PMX_PEERLIMIT_DEFAULT_PER_ADDRESS,
                                    PMX_PEERLIMIT_DEFAULT_RESERVE);
    return p;
}

void pmx_worker_peerlimit_set_limits(pmx_worker_peerlimit_t *p, int max_total, int max_per_address,
                                     int reserve_percent)
{
    if (max_total < 1) max_total = 1;
    if (reserve_percent < 0) reserve_percent = 0;
    if (reserve_percent > 90) reserve_percent = 90;
    p->lim.max_total = max_total;
    p->lim.max_per_address = max_per_address < 1 ? 1 : max_per_address;
    /* The reserve is what lies above the high-water mark. */
    p->lim.high_water = max_total - (int)((int64_t)max_total * reserve_percent / 100);
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
    if (e->f.pending && now >= e->f.expires_ms) e->f.pending = 0;   /* see peers_shm.c */
    return e->sessions == 0 && e->f.failures == 0 && e->f.blocked_until_ms == 0 &&
           e->f.pending == 0;
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

pmx_peers_admit_t pmx_worker_peerlimit_open(pmx_worker_peerlimit_t *p, const char *key,
                                            uint64_t now_ms, bool *tracked)
{
    pmx_peers_shm_t *shared = pmx_peers_shm_get();
    if (shared)
        return pmx_peers_shm_session_open(shared, key, pmx_peers_shm_slot(), &p->lim, tracked);
    *tracked = false;
    entry_t *e = get(p, key, now_ms);
    int mine = e ? e->sessions : 0;
    if (p->total >= p->lim.max_total) return PMX_PEERS_ADMIT_FULL;
    if (mine >= p->lim.max_per_address) return PMX_PEERS_ADMIT_ADDRESS;
    if (mine > 0 && p->total >= p->lim.high_water) return PMX_PEERS_ADMIT_BUSY;
    p->total++;
    if (e) {
        e->sessions++;
        *tracked = true;
    }
    return PMX_PEERS_ADMIT_OK;
}

void pmx_worker_peerlimit_close(pmx_worker_peerlimit_t *p, const char *key, uint64_t now_ms,
                                bool tracked)
{
    (void)now_ms;
    pmx_peers_shm_t *shared = pmx_peers_shm_get();
    if (shared) {
        pmx_peers_shm_session_close(shared, key, pmx_peers_shm_slot(), tracked);
        return;
    }
    if (p->total > 0) p->total--;
    entry_t *e = tracked ? find(p, key) : NULL;
    if (e && e->sessions > 0) e->sessions--;
}

const pmx_peers_limits_t *pmx_worker_peerlimit_limits(const pmx_worker_peerlimit_t *p)
{
    return &p->lim;
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

/* ---- AUTH attempts, reserved when they start ------------------------------------ */

/* An attempt may start: not blocked, and the failures so far plus the
 * attempts still in flight leave room under PMX_PEERLIMIT_MAX_FAILURES. */
static int64_t reserve(pmx_peer_failures_t *f, uint64_t now, void *arg)
{
    (void)arg;
    if (!f) return 0;   /* not tracked (table full): nothing to count with */
    expire(f, now);
    if (f->blocked_until_ms) return -1;
    if (f->failures + f->pending >= PMX_PEERLIMIT_MAX_FAILURES) return -1;
    f->pending++;
    /* The window starts with the attempt: a reservation left by a worker that
     * died is forgotten with it. */
    if (f->expires_ms < now + PMX_PEERLIMIT_WINDOW_MS) f->expires_ms = now + PMX_PEERLIMIT_WINDOW_MS;
    return 1;
}

typedef struct {
    pmx_peerlimit_outcome_t outcome;
} judge_arg_t;

/* The answer to a reserved attempt came back: settle the reservation. */
static int64_t judge(pmx_peer_failures_t *f, uint64_t now, void *arg)
{
    const judge_arg_t *j = arg;
    if (!f) return 0;   /* the cell went away (a quiet window): nothing to settle */
    if (f->pending > 0) f->pending--;
    switch (j->outcome) {
    case PMX_PEERLIMIT_AUTH_FAILED:
        return count_failure(f, now, NULL);
    case PMX_PEERLIMIT_AUTH_OK:
        /* Refused when the address got blocked while this one was in flight. */
        return is_blocked(f, now, NULL) ? -1 : 0;
    case PMX_PEERLIMIT_AUTH_NONE:
        break;
    }
    return 0;
}

int pmx_worker_peerlimit_auth_begin(pmx_worker_peerlimit_t *p, const char *key, uint64_t now_ms,
                                    bool *reserved)
{
    pmx_peers_shm_t *shared = pmx_peers_shm_get();
    int64_t r;
    if (shared) {
        r = pmx_peers_shm_with(shared, key, true, reserve, NULL);
    } else {
        entry_t *e = get(p, key, now_ms);
        r = reserve(e ? &e->f : NULL, now_ms, NULL);
    }
    *reserved = r == 1;
    return r < 0 ? -1 : 0;
}

int64_t pmx_worker_peerlimit_auth_end(pmx_worker_peerlimit_t *p, const char *key, uint64_t now_ms,
                                      bool reserved, pmx_peerlimit_outcome_t outcome)
{
    judge_arg_t j = { outcome };
    pmx_peers_shm_t *shared = pmx_peers_shm_get();
    if (!reserved) {
        /* Nothing to settle (untracked); a failure still counts if it can. */
        if (outcome == PMX_PEERLIMIT_AUTH_FAILED)
            return pmx_worker_peerlimit_auth_failed(p, key, now_ms);
        if (outcome == PMX_PEERLIMIT_AUTH_OK)
            return pmx_worker_peerlimit_blocked(p, key, now_ms) ? -1 : 0;
        return 0;
    }
    if (shared) return pmx_peers_shm_with(shared, key, false, judge, &j);
    entry_t *e = find(p, key);
    return judge(e ? &e->f : NULL, now_ms, &j);
}
