/*
 * The postmuxd supervisor (postmuxd(8)), shaped after nginx's master process and
 * Postfix's master: it loads the config, opens the listening sockets, maps
 * the scoreboard and forks the workers; then it sleeps in sigsuspend() and
 * acts on flags its signal handlers set:
 *   SIGCHLD  reap, replace dead workers (throttled when they die young; more
 *            than 10 deaths in 60 s ends postmuxd with status 1)
 *   SIGTERM/SIGINT  graceful drain, SIGKILL after shutdown_timeout, exit 0
 *   SIGHUP   re-read the config; keep the old one if it is invalid, else
 *            start new workers one at a time and stop an old one each time
 *            a new one is ready, so the listeners never stop being served
 *   SIGALRM  the 1 s tick: hung-worker detection by heartbeat, kill
 *            deadlines, sd_notify READY/STATUS/WATCHDOG
 * It never touches mail, Redis or Postgres itself.
 */
#ifndef PMX_DAEMON_SUPERVISOR_H
#define PMX_DAEMON_SUPERVISOR_H
#include <stddef.h>

#include "workers/worker.h"

/* A worker whose heartbeat is older than this is hung: SIGKILL, replace. */
#define PMX_DAEMON_HUNG_MS      10000u
/* WATCHDOG=1 is only sent while every heartbeat is younger than this. */
#define PMX_DAEMON_FRESH_MS     3000u
#define PMX_DAEMON_TICK_MS      1000u

/*
 * Loads and checks the config the way startup does (values, listen
 * addresses, the Redis password file) without binding or forking.
 * Returns 0, or -1 with "FILE:LINE: reason" (or "FILE: reason") in err.
 */
int pmx_daemon_check_config(const char *path, char *err, size_t errlen);

/*
 * Runs postmuxd with the config at path until it is stopped; returns the
 * process exit status. hooks (may be NULL) are handed to every worker.
 */
int pmx_daemon_run(const char *path, const pmx_worker_hooks_t *hooks);

#endif
