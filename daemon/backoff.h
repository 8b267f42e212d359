/*
 * Respawn throttling of postmuxd, after Postfix's master: a worker that dies
 * before it ever became ready is restarted with a growing delay instead of in
 * a tight fork loop, and too many deaths in a short time mean something is
 * wrong that restarting will not fix, so the supervisor gives up (non-zero
 * exit) and lets systemd's Restart= take over. Pure bookkeeping, no clock of
 * its own: the caller passes monotonic milliseconds.
 */
#ifndef PMX_DAEMON_BACKOFF_H
#define PMX_DAEMON_BACKOFF_H
#include <stdbool.h>
#include <stdint.h>

#define PMX_THROTTLE_WINDOW_MS  60000u   /* deaths are counted over this window */
#define PMX_THROTTLE_MAX_DEATHS 10       /* more than this in the window: give up */
#define PMX_THROTTLE_BASE_MS    1000u    /* second early death in a row waits this */
#define PMX_THROTTLE_CAP_MS     30000u

typedef struct {
    uint64_t deaths[PMX_THROTTLE_MAX_DEATHS + 1];   /* ring of recent death times */
    int      ndeaths;                              /* entries used, up to the ring size */
    int      next;                                 /* where the next death is written */
    int      early_streak;                         /* deaths before ready, in a row */
} pmx_daemon_backoff_t;

void pmx_daemon_backoff_init(pmx_daemon_backoff_t *t);
/*
 * Records an unexpected worker death at now_ms; early = it never reported
 * ready. Returns true when more than PMX_THROTTLE_MAX_DEATHS deaths fell within
 * the last PMX_THROTTLE_WINDOW_MS.
 */
bool pmx_daemon_backoff_death(pmx_daemon_backoff_t *t, uint64_t now_ms, bool early);
/* A worker reported ready: the start-up problem, if any, is over. */
void pmx_daemon_backoff_ready(pmx_daemon_backoff_t *t);
/* How long to wait before the next spawn: 0, then 1 s, 2 s, 4 s ... 30 s. */
uint64_t pmx_daemon_backoff_delay_ms(const pmx_daemon_backoff_t *t);

#endif
