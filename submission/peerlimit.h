/*
 * Per-client-address limits of SMTP submission: how many sessions an address
 * has open (all workers together), and how many AUTH attempts from it failed
 * recently (docs/submission.md: "repeated failures from one address are slowed and then
 * refused"). An address is an IPv4 address, or the /64 prefix of an IPv6
 * address (one host usually owns a whole /64).
 *
 * Failed AUTH within PMX_PEERLIMIT_WINDOW_MS of the previous failure count up
 * (a quiet window forgets them):
 *   failures 1..PMX_PEERLIMIT_FREE_FAILURES   answered at once;
 *   the following ones                        answered after 0.5 s, 1 s, 1.5 s
 *                                             ... (capped at PMX_PEERLIMIT_DELAY_MAX_MS);
 *   failure PMX_PEERLIMIT_MAX_FAILURES        "421" and the address is blocked for
 *                                             PMX_PEERLIMIT_BLOCK_MS: its new sessions and
 *                                             AUTH attempts get "421" at once.
 * In postmuxd the failures and blocks are counted in one table shared by
 * every worker (submission/peers_shm.h), so a client whose connections land on
 * several workers gets no more attempts than one that stays on one; without
 * that table (unit tests) each process counts its own. With the shared table
 * the time is read under its lock (now_ms is ignored for failures). Sessions
 * are counted over every worker too (see pmx_worker_peerlimit_set_limits).
 * A successful AUTH does not reset the count.
 *
 * The per-worker table is bounded (PMX_PEERLIMIT_MAX_ENTRIES); when it is
 * full of addresses with live sessions (or, without the shared table, recent
 * failures), new addresses are not tracked (their sessions are still limited
 * by the per-worker session cap). The shared table has its own bound and
 * reuses the least-failed cell (submission/peers_shm.h).
 */
#ifndef PMX_SUBMISSION_PEERLIMIT_H
#define PMX_SUBMISSION_PEERLIMIT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>

#include "submission/peers_shm.h"

#define PMX_PEERLIMIT_DEFAULT_TOTAL       1000  /* [submission] max_connections */
#define PMX_PEERLIMIT_DEFAULT_PER_ADDRESS 100   /* [submission] max_connections_per_address */
#define PMX_PEERLIMIT_DEFAULT_RESERVE     20    /* [submission] connection_reserve, percent */
#define PMX_PEERLIMIT_FREE_FAILURES 3
#define PMX_PEERLIMIT_MAX_FAILURES  10
#define PMX_PEERLIMIT_DELAY_STEP_MS 500
#define PMX_PEERLIMIT_DELAY_MAX_MS  3000
#define PMX_PEERLIMIT_WINDOW_MS     (10 * 60 * 1000)
#define PMX_PEERLIMIT_BLOCK_MS      (10 * 60 * 1000)
#define PMX_PEERLIMIT_MAX_ENTRIES   16384
#define PMX_PEERLIMIT_KEY_MAX       64

typedef struct pmx_worker_peerlimit pmx_worker_peerlimit_t;

pmx_worker_peerlimit_t *pmx_worker_peerlimit_new(void);
void pmx_worker_peerlimit_free(pmx_worker_peerlimit_t *p);

/* The address key of a peer ("192.0.2.1", "2001:db8:1:2::/64", "local"). */
void pmx_worker_peerlimit_key(const struct sockaddr *sa, char out[PMX_PEERLIMIT_KEY_MAX]);

/*
 * The session limits ([submission] max_connections, max_connections_per_address,
 * connection_reserve): at most max_total sessions, at most max_per_address
 * from one address, and once the total reaches max_total minus
 * reserve_percent of it, only addresses with no session open get one (the
 * reserve keeps room for everybody else when one crowd arrives). With the
 * shared table these count every worker's sessions; without it, this
 * process's.
 */
void pmx_worker_peerlimit_set_limits(pmx_worker_peerlimit_t *p, int max_total, int max_per_address,
                                     int reserve_percent);
const pmx_peers_limits_t *pmx_worker_peerlimit_limits(const pmx_worker_peerlimit_t *p);
/* A session from key starts: PMX_PEERS_ADMIT_OK (counted; keep *tracked for
 * the close), or why it is refused (nothing counted). */
pmx_peers_admit_t pmx_worker_peerlimit_open(pmx_worker_peerlimit_t *p, const char *key,
                                            uint64_t now_ms, bool *tracked);
/* A session counted by pmx_worker_peerlimit_open ends. */
void pmx_worker_peerlimit_close(pmx_worker_peerlimit_t *p, const char *key, uint64_t now_ms,
                                bool tracked);
/* key is blocked (too many failed AUTH). */
bool pmx_worker_peerlimit_blocked(pmx_worker_peerlimit_t *p, const char *key, uint64_t now_ms);
/*
 * Counts a failed AUTH from key. Returns the delay in ms before the failure
 * is answered (0 = at once), or -1 when key is now blocked (answer 421).
 */
int64_t pmx_worker_peerlimit_auth_failed(pmx_worker_peerlimit_t *p, const char *key,
                                         uint64_t now_ms);

/*
 * AUTH attempts are counted when they START, so parallel sessions cannot
 * all slip past the block while their key lookups are in flight:
 * auth_begin reserves one attempt (-1 = refuse with 421: the address is
 * blocked, or its failures plus the attempts in flight already reach
 * PMX_PEERLIMIT_MAX_FAILURES); the answer settles it with auth_end, also when
 * the lookup was cancelled or failed (AUTH_NONE). auth_end returns what
 * auth_failed returns for a failure; for a success 0, or -1 when the address
 * was blocked meanwhile (refuse the success with 421). So at most
 * PMX_PEERLIMIT_MAX_FAILURES attempts per address are ever judged before
 * the block, whatever the number of sessions and workers they use.
 * *reserved says whether a reservation was taken (not when the address is
 * not tracked); pass it to auth_end.
 */
typedef enum {
    PMX_PEERLIMIT_AUTH_NONE = 0,   /* no verdict (lookup cancelled, Postgres down) */
    PMX_PEERLIMIT_AUTH_OK,
    PMX_PEERLIMIT_AUTH_FAILED,
} pmx_peerlimit_outcome_t;

int     pmx_worker_peerlimit_auth_begin(pmx_worker_peerlimit_t *p, const char *key, uint64_t now_ms,
                                        bool *reserved);
int64_t pmx_worker_peerlimit_auth_end(pmx_worker_peerlimit_t *p, const char *key, uint64_t now_ms,
                                      bool reserved, pmx_peerlimit_outcome_t outcome);

#endif
