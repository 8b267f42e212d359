/*
 * The per-address table shared by every worker of one postmuxd: failed AUTH
 * and AUTH attempts in flight, and open sessions (see the session functions
 * at the end). Failed AUTH first (docs/submission.md:
 * "repeated failures from one address are slowed and then refused"), so a
 * client whose connections land on W workers gets no more attempts than one
 * that always lands on the same worker: what Postfix's anvil does for a host.
 * A third anonymous shared mapping, made by the supervisor before it forks,
 * beside the scoreboard (daemon/shm.h) and the metrics region.
 *
 * What is counted, and what it leads to, is submission/peerlimit.c's business;
 * this only keeps one pmx_peer_failures_t per address key:
 * - open addressing over PMX_PEERS_SLOTS cells; a key lives in one of the
 *   PMX_PEERS_PROBE cells after its hash (seeded at random when the table is
 *   made, so nobody can pick keys that crowd one window). A cell whose
 *   expires_ms has passed is free again (the caller sets expires_ms whenever
 *   it counts). When every cell of the window is live, a new key takes the one
 *   with the fewest failures (never a blocked one): an address that keeps
 *   failing is not pushed out by many that fail once. Only when all of them
 *   are blocked is the key not tracked (the callback gets NULL).
 * - one process-shared robust mutex guards the table: every operation is a
 *   few dozen compares. A worker killed while holding it leaves it to the
 *   next one that locks (EOWNERDEAD, then pthread_mutex_consistent); the cell
 *   it was writing is at worst half-updated, which only changes a count.
 * - times are CLOCK_MONOTONIC milliseconds (pmx_shm_now_ms), read while the
 *   lock is held: the same clock in every process of the host, and never
 *   behind a time another process stored (a loop's cached uv_now() can be).
 *
 * The process remembers its table once (pmx_peers_shm_attach: the supervisor
 * after mapping it, inherited by every fork). Until then pmx_peers_shm_get()
 * is NULL and submission/peerlimit.c counts per process (the CLI, unit tests).
 */
#ifndef PMX_SUBMISSION_PEERS_SHM_H
#define PMX_SUBMISSION_PEERS_SHM_H
#include <stdbool.h>
#include <stdint.h>

#define PMX_PEERS_SLOTS   8192
#define PMX_PEERS_PROBE   32
#define PMX_PEERS_KEY_MAX 64

typedef struct {
    int32_t  failures;
    int32_t  pending;            /* AUTH attempts started and not judged yet */
    uint64_t last_failure_ms;
    uint64_t blocked_until_ms;   /* 0 = not blocked */
    uint64_t expires_ms;         /* the cell may be reused from then on */
} pmx_peer_failures_t;

typedef struct pmx_peers_shm pmx_peers_shm_t;

/* Why pmx_peers_shm_session_open refused a session. */
typedef enum {
    PMX_PEERS_ADMIT_OK = 0,
    PMX_PEERS_ADMIT_FULL,       /* max_total sessions open (all workers) */
    PMX_PEERS_ADMIT_ADDRESS,    /* the address has max_per_address open */
    PMX_PEERS_ADMIT_BUSY,       /* over the high-water mark, and the address has a session */
} pmx_peers_admit_t;

typedef struct {
    int max_total;         /* sessions of all workers together */
    int max_per_address;
    int high_water;        /* from this total on, only addresses with no session */
} pmx_peers_limits_t;

/* Called with key's failures under the lock (NULL: not tracked) and the time. */
typedef int64_t (*pmx_peers_fn)(pmx_peer_failures_t *f, uint64_t now_ms, void *arg);

/* Maps a zeroed table with its mutex; NULL with errno on failure. */
pmx_peers_shm_t *pmx_peers_shm_create(void);
void pmx_peers_shm_destroy(pmx_peers_shm_t *t);

void pmx_peers_shm_attach(pmx_peers_shm_t *t);
pmx_peers_shm_t *pmx_peers_shm_get(void);

/*
 * Runs fn on key's cell under the lock, with the time read under it, and
 * returns what fn returns. With create, a key not in the table gets a zeroed
 * cell; without, fn gets NULL for it. A key longer than PMX_PEERS_KEY_MAX - 1
 * bytes is never tracked.
 */
int64_t pmx_peers_shm_with(pmx_peers_shm_t *t, const char *key, bool create, pmx_peers_fn fn,
                           void *arg);

/*
 * Session counts, summed over every worker (what Postfix's anvil counts for
 * smtpd_client_connection_count_limit). Each cell counts its sessions per
 * worker slot (daemon/shm.h), so the supervisor can take back everything a
 * dead worker held (pmx_peers_shm_slot_reset) and nothing leaks. A cell with
 * sessions is never reused for another key.
 *
 * session_open counts one session of key in slot when the limits allow it;
 * *tracked says whether the key got a cell (when every cell of its window is
 * held, only the totals count it). Pass the same tracked to session_close.
 */
pmx_peers_admit_t pmx_peers_shm_session_open(pmx_peers_shm_t *t, const char *key, int slot,
                                             const pmx_peers_limits_t *lim, bool *tracked);
void pmx_peers_shm_session_close(pmx_peers_shm_t *t, const char *key, int slot, bool tracked);
/* Forgets every session slot held (its worker is gone). Supervisor only. */
void pmx_peers_shm_slot_reset(pmx_peers_shm_t *t, int slot);
/* Sessions open now: of key (NULL = of every address). */
int pmx_peers_shm_sessions(pmx_peers_shm_t *t, const char *key);
/* This process's worker slot (set in the worker after fork; -1 = none, counted as slot 0). */
void pmx_peers_shm_set_slot(int slot);
int  pmx_peers_shm_slot(void);

#endif
