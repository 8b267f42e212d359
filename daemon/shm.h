/*
 * The scoreboard shared by postmuxd and its workers: one anonymous shared
 * mapping (mmap MAP_SHARED|MAP_ANONYMOUS) made by the supervisor before it
 * forks, so every worker inherits it. Each worker owns one slot: its pid,
 * its state (starting / ready / draining), whether its Redis and Postgres
 * connections are up, a heartbeat (CLOCK_MONOTONIC ms) its loop refreshes
 * every 500 ms, and counters the metrics and STATUS code sum.
 *
 * Why shared memory and not a pipe: the supervisor only ever needs the
 * latest value of each field, never a stream of messages, and reading a slot
 * can neither block nor fill a buffer. Every field is a lock-free C11 atomic
 * (valid across processes for these sizes on Linux).
 *
 * Writers: the supervisor writes pid/state at spawn and clears the slot when
 * it reaps the worker (folding its counters into the header's "retired"
 * totals, so sums never go backwards for long); the worker writes everything
 * else in its own slot only.
 */
#ifndef PMX_DAEMON_SHM_H
#define PMX_DAEMON_SHM_H
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Slots available; a reload needs room for the old and new set at once. */
#define PMX_SHM_SLOTS 256
/* So the most workers one config may ask for. */
#define PMX_SHM_MAX_WORKERS (PMX_SHM_SLOTS / 2)

typedef enum {
    PMX_SLOT_FREE = 0,
    PMX_SLOT_STARTING,   /* forked, loop not running yet */
    PMX_SLOT_READY,      /* loop running, listeners served */
    PMX_SLOT_DRAINING,   /* told to stop; finishing in-flight work */
} pmx_slot_state_t;

/* Bits of pmx_slot_t.conn */
#define PMX_SLOT_REDIS_UP 0x1u
#define PMX_SLOT_PG_UP    0x2u
#define PMX_SLOT_ALL_UP   (PMX_SLOT_REDIS_UP | PMX_SLOT_PG_UP)

typedef struct {
    _Atomic int32_t  pid;
    _Atomic uint32_t state;          /* pmx_slot_state_t */
    _Atomic uint32_t conn;           /* PMX_SLOT_*_UP bits */
    _Atomic uint64_t heartbeat_ms;   /* pmx_shm_now_ms() of the last loop turn */
    _Atomic uint64_t sent;           /* recipients relayed with 250 */
    char pad[64 - 4 - 4 - 4 - 8 - 8 - 4];
} pmx_slot_t;

typedef struct {
    _Atomic uint64_t retired_sent;      /* "sent" of workers already reaped */
    _Atomic uint64_t worker_restarts;   /* unexpected worker deaths replaced */
    pmx_slot_t slots[PMX_SHM_SLOTS];
} pmx_shm_t;

/* Maps a zeroed region; NULL with errno on failure. */
pmx_shm_t *pmx_shm_create(void);
void pmx_shm_destroy(pmx_shm_t *shm);

/*
 * The other tables shared by the workers (routing/sites.h, submission/peers_shm.h)
 * are made the same way, with one lock each: a zeroed anonymous shared mapping
 * of size octets, with a process-shared *robust* pthread mutex at lock_offset
 * (a worker killed while holding it does not wedge the others: the next
 * locker gets EOWNERDEAD and carries on). NULL with errno on failure.
 * Released with pmx_shm_table_unmap (the mutex is never destroyed: a dying
 * worker may hold it).
 */
void *pmx_shm_table_map(size_t size, size_t lock_offset);
void  pmx_shm_table_unmap(void *table, size_t size);
/* Locks a table's mutex: false when it cannot be had (the caller goes on
 * without the table). What a dead holder left half-written stays so. */
bool  pmx_shm_table_lock(pthread_mutex_t *lock);

/* CLOCK_MONOTONIC in milliseconds: the one clock every heartbeat uses. */
uint64_t pmx_shm_now_ms(void);

/* Supervisor side */
void pmx_shm_slot_claim(pmx_slot_t *slot, int32_t pid, uint64_t now_ms);
void pmx_shm_slot_set_pid(pmx_slot_t *slot, int32_t pid);
/* Clears a reaped worker's slot, folding its counters into the totals. */
void pmx_shm_slot_release(pmx_shm_t *shm, pmx_slot_t *slot);

/* Worker side (each worker touches only its own slot) */
void pmx_shm_slot_beat(pmx_slot_t *slot, uint64_t now_ms);
void pmx_shm_slot_set_state(pmx_slot_t *slot, pmx_slot_state_t state);
void pmx_shm_slot_set_conn(pmx_slot_t *slot, uint32_t bit, bool up);
void pmx_shm_slot_add_sent(pmx_slot_t *slot, uint64_t n);

/* Readers */
pmx_slot_state_t pmx_shm_slot_state(const pmx_slot_t *slot);
bool     pmx_shm_slot_all_up(const pmx_slot_t *slot);
uint64_t pmx_shm_slot_heartbeat(const pmx_slot_t *slot);
/* Every worker's "sent" plus the retired total. */
uint64_t pmx_shm_total_sent(const pmx_shm_t *shm);
uint64_t pmx_shm_worker_restarts(const pmx_shm_t *shm);
void     pmx_shm_count_restart(pmx_shm_t *shm);

#endif
