/* The supervisor/worker scoreboard in shared memory; see shm.h. */
#include "daemon/shm.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

_Static_assert(sizeof(pmx_slot_t) == 64, "one slot per cache line");

pmx_shm_t *pmx_shm_create(void)
{
    void *p = mmap(NULL, sizeof(pmx_shm_t), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    /* Anonymous mappings are zero-filled: every slot starts FREE. */
    return p;
}

void pmx_shm_destroy(pmx_shm_t *shm)
{
    if (shm) munmap(shm, sizeof *shm);
}

void *pmx_shm_table_map(size_t size, size_t lock_offset)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    pthread_mutexattr_t a;
    int rc = pthread_mutexattr_init(&a);
    if (rc == 0) rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (rc == 0) rc = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (rc == 0) rc = pthread_mutex_init((pthread_mutex_t *)((char *)p + lock_offset), &a);
    pthread_mutexattr_destroy(&a);
    if (rc != 0) {
        munmap(p, size);
        errno = rc;
        return NULL;
    }
    return p;
}

void pmx_shm_table_unmap(void *table, size_t size)
{
    if (table) munmap(table, size);
}

bool pmx_shm_table_lock(pthread_mutex_t *lock)
{
    int rc = pthread_mutex_lock(lock);
    if (rc == EOWNERDEAD) rc = pthread_mutex_consistent(lock);
    return rc == 0;
}

uint64_t pmx_shm_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void pmx_shm_slot_claim(pmx_slot_t *slot, int32_t pid, uint64_t now_ms)
{
    atomic_store(&slot->conn, 0);
    atomic_store(&slot->sent, 0);
    atomic_store(&slot->heartbeat_ms, now_ms);
    atomic_store(&slot->state, PMX_SLOT_STARTING);
    atomic_store(&slot->pid, pid);
}

void pmx_shm_slot_set_pid(pmx_slot_t *slot, int32_t pid)
{
    atomic_store(&slot->pid, pid);
}

void pmx_shm_slot_release(pmx_shm_t *shm, pmx_slot_t *slot)
{
    uint64_t sent = atomic_exchange(&slot->sent, 0);
    atomic_fetch_add(&shm->retired_sent, sent);
    atomic_store(&slot->pid, 0);
    atomic_store(&slot->state, PMX_SLOT_FREE);
    atomic_store(&slot->conn, 0);
    atomic_store(&slot->heartbeat_ms, 0);
}

void pmx_shm_slot_beat(pmx_slot_t *slot, uint64_t now_ms)
{
    atomic_store(&slot->heartbeat_ms, now_ms);
}

void pmx_shm_slot_set_state(pmx_slot_t *slot, pmx_slot_state_t state)
{
    atomic_store(&slot->state, (uint32_t)state);
}

void pmx_shm_slot_set_conn(pmx_slot_t *slot, uint32_t bit, bool up)
{
    if (up)
        atomic_fetch_or(&slot->conn, bit);
    else
        atomic_fetch_and(&slot->conn, ~bit);
}

void pmx_shm_slot_add_sent(pmx_slot_t *slot, uint64_t n)
{
    atomic_fetch_add(&slot->sent, n);
}

pmx_slot_state_t pmx_shm_slot_state(const pmx_slot_t *slot)
{
    return (pmx_slot_state_t)atomic_load(&((pmx_slot_t *)slot)->state);
}

bool pmx_shm_slot_all_up(const pmx_slot_t *slot)
{
    return (atomic_load(&((pmx_slot_t *)slot)->conn) & PMX_SLOT_ALL_UP) == PMX_SLOT_ALL_UP;
}

uint64_t pmx_shm_slot_heartbeat(const pmx_slot_t *slot)
{
    return atomic_load(&((pmx_slot_t *)slot)->heartbeat_ms);
}

uint64_t pmx_shm_total_sent(const pmx_shm_t *shm)
{
    pmx_shm_t *s = (pmx_shm_t *)shm;
    uint64_t total = atomic_load(&s->retired_sent);
    for (int i = 0; i < PMX_SHM_SLOTS; i++)
        total += atomic_load(&s->slots[i].sent);
    return total;
}

uint64_t pmx_shm_worker_restarts(const pmx_shm_t *shm)
{
    return atomic_load(&((pmx_shm_t *)shm)->worker_restarts);
}

void pmx_shm_count_restart(pmx_shm_t *shm)
{
    atomic_fetch_add(&shm->worker_restarts, 1);
}
