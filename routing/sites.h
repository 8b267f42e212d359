/*
 * Sessions per site on this host, summed over its workers (docs/delivery.md,
 * "Direct delivery"; [mx] connections_per_site of postmux.conf(5)): an
 * anonymous shared mapping made by the supervisor before it forks, beside the
 * scoreboard, the metrics region and the failed-AUTH table, so the limit
 * holds however many workers talk to one site.
 *
 * Why shared memory and not a per-worker share (connections_per_site /
 * workers): with a share, a site that one worker is busy with could not use
 * the sessions another worker leaves idle, and 20 sessions over 16 workers
 * would round to 1 each. One table costs a lock per session opened or closed.
 *
 * Per site (its name, routing/mx.h): the sessions open now (total and per
 * worker slot, so the supervisor can take a dead worker's sessions off with
 * pmx_sites_shm_slot_reset), messages sent, and a suspension time (shaping
 * rules; 0 = not suspended). Open addressing over PMX_SITES_SLOTS cells,
 * probed PMX_SITES_PROBE deep; a new site may take the cell of one with no
 * session, the least recently used. When none is free the site is not
 * tracked: its sessions are then bounded per worker only (by the pool's
 * connections_per_site), and it is counted under "_other" in the metrics.
 * A process-shared robust mutex guards the table (as submission/peers_shm.c).
 *
 * Without an attached table (the CLI, unit tests) every call is a no-op and
 * pmx_sites_acquire always says yes.
 */
#ifndef PMX_ROUTING_SITES_H
#define PMX_ROUTING_SITES_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PMX_SITES_SLOTS    4096
#define PMX_SITES_PROBE    64
#define PMX_SITES_NAME_MAX 200     /* longer site names are cut for the table and labels */

typedef struct pmx_sites_shm pmx_sites_shm_t;

pmx_sites_shm_t *pmx_sites_shm_create(void);     /* NULL with errno */
void pmx_sites_shm_destroy(pmx_sites_shm_t *t);
void pmx_sites_shm_attach(pmx_sites_shm_t *t);   /* inherited by every fork */
pmx_sites_shm_t *pmx_sites_shm_get(void);        /* NULL: none attached (CLI, unit tests) */
void pmx_sites_shm_set_slot(int slot);           /* the worker's scoreboard slot */
/* Supervisor: the worker of slot is gone; its sessions are taken off every site. */
void pmx_sites_shm_slot_reset(pmx_sites_shm_t *t, int slot);

/* One more session to site if fewer than limit are open on this host, and, while
 * another worker was refused one within the last second, if this worker holds
 * fewer than its share (limit / workers holding or waiting, rounded up). */
bool pmx_sites_acquire(const char *site, int limit);
void pmx_sites_release(const char *site);
/* True while another worker waits for site: it was refused a session for the limit
 * within the last second and has not had one since. */
bool pmx_sites_wanted(const char *site);
void pmx_sites_count_sent(const char *site, uint64_t n);
/* Stops new sessions to site for ms (routing/shaping.h on_reply); all workers. */
void pmx_sites_suspend(const char *site, uint64_t ms);
/* How much longer site is suspended, in ms (0 = not). */
uint64_t pmx_sites_suspended_ms(const char *site);

typedef struct {
    char     name[PMX_SITES_NAME_MAX + 1];
    int64_t  sessions;
    uint64_t sent;
    bool     suspended;
} pmx_sites_row_t;

/* Every site seen, sorted by name; *rows malloc'ed. 0 without a table. */
size_t pmx_sites_rows(pmx_sites_row_t **rows);

#endif
