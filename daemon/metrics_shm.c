/* The metrics region shared by postmuxd and its workers; see metrics_shm.h. */
#include "daemon/metrics_shm.h"

#include <math.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "lib/mem.h"

_Static_assert(sizeof(pmx_metrics_cell_t) == 48, "cells stay small and 8-aligned");

/* How long a writer waits for another process to publish a cell it claimed
 * (a few stores) before it takes the claimer for dead. */
#define CLAIM_SPINS 2000

static pmx_metrics_shm_t *current;
static int current_slot = -1;

static const char *const status_names[PMX_METRICS_NSTATUS] = {
    "queued", "sent", "deferred", "bounced", "rejected", "suppressed",
};

pmx_metrics_shm_t *pmx_metrics_shm_create(void)
{
    void *p = mmap(NULL, sizeof(pmx_metrics_shm_t), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;   /* zero-filled: every cell EMPTY */
}

void pmx_metrics_shm_destroy(pmx_metrics_shm_t *m)
{
    if (!m) return;
    if (current == m) pmx_metrics_shm_attach(NULL, -1);
    munmap(m, sizeof *m);
}

void pmx_metrics_shm_attach(pmx_metrics_shm_t *m, int slot)
{
    current = m;
    current_slot = m && slot >= 0 && slot < PMX_SHM_SLOTS ? slot : -1;
}

pmx_metrics_shm_t *pmx_metrics_shm_current(void) { return current; }
int pmx_metrics_shm_current_slot(void) { return current_slot; }

int pmx_metrics_status_parse(const char *s)
{
    if (!s) return -1;
    for (int i = 0; i < PMX_METRICS_NSTATUS; i++)
        if (strcmp(s, status_names[i]) == 0) return i;
    return -1;
}

const char *pmx_metrics_status_name(pmx_metrics_status_t st)
{
    return (unsigned)st < PMX_METRICS_NSTATUS ? status_names[st] : "unknown";
}

const char *pmx_metrics_dir_name(pmx_metrics_dir_t d)
{
    return d == PMX_METRICS_OUTBOUND ? "outbound" : d == PMX_METRICS_INBOUND ? "inbound" : "unknown";
}

bool pmx_metrics_ws_valid(const char *ws)
{
    if (!ws || !*ws) return false;
    size_t n = 0;
    for (const char *p = ws; *p; p++, n++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-';
        if (!ok || n + 1 >= PMX_METRICS_WS_MAX) return false;
    }
    return strcmp(ws, PMX_METRICS_OTHER) != 0;
}

/* FNV-1a over the id and the status. */
static uint64_t key_hash(const char *ws, uint32_t status)
{
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)ws; *p; p++) {
        h ^= *p;
        h *= 1099511628211ull;
    }
    h ^= status + 1u;
    h *= 1099511628211ull;
    return h ^ (h >> 29);
}

static bool key_equal(const pmx_metrics_cell_t *c, const char *ws, uint32_t status)
{
    return c->status == status && strcmp(c->ws, ws) == 0;
}

/* Waits for a CLAIMING cell to be published; marks it ABANDONED when its
 * claimer seems gone. Returns the state seen last. */
static uint32_t wait_published(pmx_metrics_cell_t *c)
{
    uint32_t st = atomic_load_explicit(&c->state, memory_order_acquire);
    for (int i = 0; st == PMX_METRICS_CELL_CLAIMING && i < CLAIM_SPINS; i++) {
        sched_yield();
        st = atomic_load_explicit(&c->state, memory_order_acquire);
    }
    if (st == PMX_METRICS_CELL_CLAIMING) {
        uint32_t expect = PMX_METRICS_CELL_CLAIMING;
        if (atomic_compare_exchange_strong_explicit(&c->state, &expect, PMX_METRICS_CELL_ABANDONED,
                                                    memory_order_acq_rel, memory_order_acquire))
            return PMX_METRICS_CELL_ABANDONED;
        return expect;
    }
    return st;
}

pmx_metrics_cell_t *pmx_metrics_shm_cell(pmx_metrics_cell_t *cells, size_t nslots,
                                         const char *ws, uint32_t status)
{
    if (!pmx_metrics_ws_valid(ws) || nslots == 0) return NULL;
    size_t start = (size_t)(key_hash(ws, status) % nslots);
    for (size_t i = 0; i < nslots; i++) {
        pmx_metrics_cell_t *c = &cells[(start + i) % nslots];
        uint32_t st = atomic_load_explicit(&c->state, memory_order_acquire);
        if (st == PMX_METRICS_CELL_EMPTY) {
            uint32_t expect = PMX_METRICS_CELL_EMPTY;
            if (atomic_compare_exchange_strong_explicit(&c->state, &expect,
                                                        PMX_METRICS_CELL_CLAIMING,
                                                        memory_order_acq_rel,
                                                        memory_order_acquire)) {
                c->status = status;
                memset(c->ws, 0, sizeof c->ws);
                memcpy(c->ws, ws, strlen(ws));
                atomic_store_explicit(&c->state, PMX_METRICS_CELL_READY, memory_order_release);
                return c;
            }
            st = expect;   /* someone else claimed it first */
        }
        if (st == PMX_METRICS_CELL_CLAIMING) st = wait_published(c);
        if (st == PMX_METRICS_CELL_READY && key_equal(c, ws, status)) return c;
        /* READY with another key, or ABANDONED: probe on. */
    }
    return NULL;
}

void pmx_metrics_shm_add(pmx_metrics_shm_t *m, const char *ws, pmx_metrics_family_t fam,
                         unsigned col, uint64_t n)
{
    if (!m || (unsigned)fam >= PMX_METRICS_NFAM || col >= PMX_METRICS_COLS || n == 0) return;
    uint32_t key = (uint32_t)fam * 256u + col;
    pmx_metrics_cell_t *c = pmx_metrics_shm_cell(m->rcpt, PMX_METRICS_RCPT_SLOTS, ws, key);
    if (c)
        atomic_fetch_add_explicit(&c->value, n, memory_order_relaxed);
    else
        atomic_fetch_add_explicit(&m->rcpt_other[fam][col], n, memory_order_relaxed);
}

void pmx_metrics_shm_add_recipients(pmx_metrics_shm_t *m, const char *ws,
                                    pmx_metrics_status_t st, uint64_t n)
{
    if ((unsigned)st >= PMX_METRICS_NSTATUS) return;
    pmx_metrics_shm_add(m, ws, PMX_METRICS_FAM_RECIPIENTS, (unsigned)st, n);
}

void pmx_metrics_shm_observe_dkim(pmx_metrics_shm_t *m, double seconds)
{
    static const double bounds[PMX_METRICS_DKIM_NBOUNDS] = PMX_METRICS_DKIM_BOUNDS;
    if (!m) return;
    if (!(seconds >= 0)) seconds = 0;   /* NaN and negatives */
    int b = 0;
    while (b < PMX_METRICS_DKIM_NBOUNDS && seconds > bounds[b]) b++;
    atomic_fetch_add_explicit(&m->dkim_buckets[b], 1, memory_order_relaxed);
    double ns = seconds * 1e9;
    uint64_t add = ns >= 1.8e19 ? UINT64_C(18000000000000000000) : (uint64_t)llround(ns);
    atomic_fetch_add_explicit(&m->dkim_sum_ns, add, memory_order_relaxed);
}

void pmx_metrics_shm_sessions_add(pmx_metrics_shm_t *m, int slot, pmx_metrics_dir_t d,
                                  int64_t delta)
{
    if (!m || slot < 0 || slot >= PMX_SHM_SLOTS || (unsigned)d >= PMX_METRICS_NDIR) return;
    atomic_fetch_add_explicit(&m->sessions[slot][d], delta, memory_order_relaxed);
}

void pmx_metrics_shm_sessions_set(pmx_metrics_shm_t *m, int slot, pmx_metrics_dir_t d, int64_t n)
{
    if (!m || slot < 0 || slot >= PMX_SHM_SLOTS || (unsigned)d >= PMX_METRICS_NDIR) return;
    atomic_store_explicit(&m->sessions[slot][d], n, memory_order_relaxed);
}

void pmx_metrics_shm_count_memory_refusal(pmx_metrics_shm_t *m)
{
    if (m) atomic_fetch_add_explicit(&m->submission_memory_refusals, 1, memory_order_relaxed);
}

void pmx_metrics_shm_slot_reset(pmx_metrics_shm_t *m, int slot)
{
    if (!m || slot < 0 || slot >= PMX_SHM_SLOTS) return;
    for (int d = 0; d < PMX_METRICS_NDIR; d++) atomic_store(&m->sessions[slot][d], 0);
}

void pmx_metrics_shm_store_depths(pmx_metrics_shm_t *m, const char *const *ids,
                                  const uint64_t *depths, size_t n)
{
    if (!m) return;
    uint64_t gen = atomic_fetch_add(&m->depth_gen_next, 1) + 1;
    uint64_t other = 0;
    bool any_other = false;
    for (size_t i = 0; i < n; i++) {
        pmx_metrics_cell_t *c = pmx_metrics_shm_cell(m->depth, PMX_METRICS_DEPTH_SLOTS, ids[i], 0);
        if (!c) {
            other += depths[i];
            any_other = true;
            continue;
        }
        atomic_store_explicit(&c->value, depths[i], memory_order_relaxed);
        atomic_store_explicit(&c->stamp, gen, memory_order_release);
    }
    atomic_store(&m->depth_other, any_other ? other : 0);
    atomic_store(&m->depth_other_stamp, any_other ? gen : 0);
    /* Publish: only ever forward. */
    uint64_t done = atomic_load(&m->depth_gen_done);
    while (done < gen && !atomic_compare_exchange_weak(&m->depth_gen_done, &done, gen)) {
    }
}

bool pmx_metrics_shm_claim_refresh(pmx_metrics_shm_t *m, uint64_t now_ms, uint64_t interval_ms)
{
    if (!m) return false;
    uint64_t due = atomic_load(&m->depth_due_ms);
    if (now_ms < due) return false;
    return atomic_compare_exchange_strong(&m->depth_due_ms, &due, now_ms + interval_ms);
}

/* ---- reading ----------------------------------------------------------- */

static int row_cmp(const void *a, const void *b)
{
    return strcmp(((const pmx_metrics_row_t *)a)->ws, ((const pmx_metrics_row_t *)b)->ws);
}

/* Adds value to row (ws)'s column col in rows[0..*n), appending a row when
 * ws is new. Sorted at the end; a linear search keeps it simple and the
 * tables are small (a few thousand cells at most). */
typedef struct {
    pmx_metrics_row_t *rows;
    size_t             n, cap;
} row_set_t;

static pmx_metrics_row_t *row_get(row_set_t *set, const char *ws)
{
    for (size_t i = 0; i < set->n; i++)
        if (strcmp(set->rows[i].ws, ws) == 0) return &set->rows[i];
    if (set->n == set->cap) {
        set->cap = set->cap ? set->cap * 2 : 64;
        set->rows = pmx_xrealloc(set->rows, set->cap * sizeof *set->rows);
    }
    pmx_metrics_row_t *r = &set->rows[set->n++];
    memset(r, 0, sizeof *r);
    memcpy(r->ws, ws, strnlen(ws, PMX_METRICS_WS_MAX - 1));
    return r;
}

static size_t row_finish(row_set_t *set, pmx_metrics_row_t *other, pmx_metrics_row_t **rows)
{
    if (set->n > 1) qsort(set->rows, set->n, sizeof *set->rows, row_cmp);
    if (other) *row_get(set, PMX_METRICS_OTHER) = *other;
    *rows = set->rows;
    return set->n;
}

size_t pmx_metrics_shm_rows(const pmx_metrics_shm_t *cm, pmx_metrics_family_t fam,
                            pmx_metrics_row_t **rows)
{
    pmx_metrics_shm_t *m = (pmx_metrics_shm_t *)cm;
    row_set_t set = { 0 };
    *rows = NULL;
    if ((unsigned)fam >= PMX_METRICS_NFAM) return 0;
    for (size_t i = 0; i < PMX_METRICS_RCPT_SLOTS; i++) {
        pmx_metrics_cell_t *c = &m->rcpt[i];
        if (atomic_load_explicit(&c->state, memory_order_acquire) != PMX_METRICS_CELL_READY)
            continue;
        if (c->status / 256u != (uint32_t)fam || c->status % 256u >= PMX_METRICS_COLS) continue;
        row_get(&set, c->ws)->value[c->status % 256u] +=
            atomic_load_explicit(&c->value, memory_order_relaxed);
    }
    pmx_metrics_row_t other = { .ws = PMX_METRICS_OTHER };
    bool any = false;
    for (int s = 0; s < PMX_METRICS_COLS; s++) {
        other.value[s] = atomic_load(&m->rcpt_other[fam][s]);
        if (other.value[s]) any = true;
    }
    return row_finish(&set, any ? &other : NULL, rows);
}

size_t pmx_metrics_shm_recipients(const pmx_metrics_shm_t *m, pmx_metrics_row_t **rows)
{
    return pmx_metrics_shm_rows(m, PMX_METRICS_FAM_RECIPIENTS, rows);
}

size_t pmx_metrics_shm_depths(const pmx_metrics_shm_t *cm, pmx_metrics_row_t **rows)
{
    pmx_metrics_shm_t *m = (pmx_metrics_shm_t *)cm;
    row_set_t set = { 0 };
    uint64_t gen = atomic_load(&m->depth_gen_done);
    *rows = NULL;
    if (gen == 0) return 0;
    for (size_t i = 0; i < PMX_METRICS_DEPTH_SLOTS; i++) {
        pmx_metrics_cell_t *c = &m->depth[i];
        if (atomic_load_explicit(&c->state, memory_order_acquire) != PMX_METRICS_CELL_READY)
            continue;
        if (atomic_load_explicit(&c->stamp, memory_order_acquire) < gen) continue;
        /* A key in two cells (see the top of metrics_shm.h): a refresh
         * writes the one its probe finds first, so the larger stamp wins;
         * summing would double count. value[1] holds the stamp meanwhile. */
        uint64_t stamp = atomic_load_explicit(&c->stamp, memory_order_acquire);
        pmx_metrics_row_t *r = row_get(&set, c->ws);
        if (stamp >= r->value[1]) {
            r->value[0] = atomic_load_explicit(&c->value, memory_order_relaxed);
            r->value[1] = stamp;
        }
    }
    for (size_t i = 0; i < set.n; i++) set.rows[i].value[1] = 0;
    pmx_metrics_row_t other = { .ws = PMX_METRICS_OTHER };
    bool any = atomic_load(&m->depth_other_stamp) >= gen;
    other.value[0] = any ? atomic_load(&m->depth_other) : 0;
    return row_finish(&set, any && other.value[0] ? &other : NULL, rows);
}

uint64_t pmx_metrics_shm_sessions(const pmx_metrics_shm_t *cm, pmx_metrics_dir_t d)
{
    pmx_metrics_shm_t *m = (pmx_metrics_shm_t *)cm;
    if ((unsigned)d >= PMX_METRICS_NDIR) return 0;
    int64_t sum = 0;
    for (int i = 0; i < PMX_SHM_SLOTS; i++) {
        int64_t v = atomic_load_explicit(&m->sessions[i][d], memory_order_relaxed);
        if (v > 0) sum += v;
    }
    return (uint64_t)sum;
}

uint64_t pmx_metrics_shm_memory_refusals(const pmx_metrics_shm_t *cm)
{
    pmx_metrics_shm_t *m = (pmx_metrics_shm_t *)cm;
    return atomic_load_explicit(&m->submission_memory_refusals, memory_order_relaxed);
}

void pmx_metrics_shm_dkim(const pmx_metrics_shm_t *cm, uint64_t *buckets, uint64_t *sum_ns)
{
    pmx_metrics_shm_t *m = (pmx_metrics_shm_t *)cm;
    for (int b = 0; b <= PMX_METRICS_DKIM_NBOUNDS; b++)
        buckets[b] = atomic_load_explicit(&m->dkim_buckets[b], memory_order_relaxed);
    *sum_ns = atomic_load_explicit(&m->dkim_sum_ns, memory_order_relaxed);
}
