/*
 * The metrics region: a second anonymous shared mapping that postmuxd makes
 * beside the scoreboard (daemon/shm.h) before it forks, so every worker
 * writes the same counters and whichever worker answers GET /metrics can sum
 * them without asking the others (docs/webhooks.md "summed over all workers").
 *
 * What it holds, every value a lock-free C11 atomic:
 * - recipients: an open-addressing table of PMX_METRICS_RCPT_SLOTS cells,
 *   key (workspace id, status) -> counter. A cell is claimed once with a CAS
 *   on its state (EMPTY -> CLAIMING), its key written, then published
 *   (READY, release); cells are never removed, so a probe stops at the first
 *   EMPTY cell. When the table is full, or a workspace id is not a plain id
 *   (longer than PMX_METRICS_WS_MAX - 1 bytes or not [A-Za-z0-9_-]), the
 *   count goes to the per-status "_other" counters: totals stay exact, only
 *   the workspace label is lost.
 *   A worker SIGKILLed between the CAS and the publish leaves a cell
 *   CLAIMING forever; the next writer that waits on it too long marks it
 *   ABANDONED and probes on. A claimer that was only slow still publishes, so
 *   one key may then live in two cells: readers merge equal keys.
 *   The same table also counts the feedback families: a cell's key is
 *   (workspace id, family × 256 + column), family 0 being the recipients
 *   above, 1 suppressed recipients by reason, 2 bounces by class, 3 inbound
 *   reports by kind; each family
 *   has its own "_other" counters.
 * - queue depth: a second table of PMX_METRICS_DEPTH_SLOTS cells, workspace
 *   id -> the last XLEN seen, each stamped with the refresh generation that
 *   wrote it. A refresh writes every known workspace, then publishes its
 *   generation; readers show cells stamped with the newest published
 *   generation or later, so workspaces that were deleted drop out.
 * - sessions: per worker slot (indexed like the scoreboard), one gauge per
 *   direction. The supervisor zeroes a slot's gauges when it reaps the
 *   worker, so a killed worker's sessions do not linger in the sum.
 * - submission memory refusals: one counter (submission/budget.h).
 * - DKIM signing time: a histogram with fixed buckets (non-cumulative atomic
 *   counts) and the sum in nanoseconds.
 * Worker restarts are counted by the supervisor in the scoreboard
 * (pmx_shm_count_restart), not here.
 *
 * The counting API (workers/metrics.h) takes no context, so the process
 * remembers its region and slot once (pmx_metrics_shm_attach: the supervisor
 * after mapping it, each worker right after fork). Until then counting is a
 * no-op, which keeps the CLI and unit tests of other modules unaffected.
 */
#ifndef PMX_DAEMON_METRICS_SHM_H
#define PMX_DAEMON_METRICS_SHM_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/shm.h"

#define PMX_METRICS_RCPT_SLOTS  4096
#define PMX_METRICS_DEPTH_SLOTS 1024
/* Room for a workspace id and its NUL (ids are "ws_" + 16 characters). */
#define PMX_METRICS_WS_MAX      24
/* The workspace label of what did not fit. */
#define PMX_METRICS_OTHER       "_other"

typedef enum {
    PMX_METRICS_QUEUED = 0,
    PMX_METRICS_SENT,
    PMX_METRICS_DEFERRED,
    PMX_METRICS_BOUNCED,
    PMX_METRICS_REJECTED,
    PMX_METRICS_SUPPRESSED,
    PMX_METRICS_NSTATUS
} pmx_metrics_status_t;

/* Counter families sharing the recipients table (see above). */
typedef enum {
    PMX_METRICS_FAM_RECIPIENTS = 0,   /* postmux_recipients_total{workspace,status} */
    PMX_METRICS_FAM_SUPPRESSED,       /* postmux_suppressed_total{workspace,reason} */
    PMX_METRICS_FAM_BOUNCES,          /* postmux_bounces_total{workspace,class} */
    PMX_METRICS_FAM_FEEDBACK,         /* postmux_feedback_total{workspace,kind} */
    PMX_METRICS_NFAM
} pmx_metrics_family_t;
/* Columns (labels) a family may have; a row holds one value per column. */
#define PMX_METRICS_COLS 16

typedef enum {
    PMX_METRICS_OUTBOUND = 0,   /* relay sessions (smtp/pool) */
    PMX_METRICS_INBOUND,        /* submission sessions (submission/session) */
    PMX_METRICS_NDIR
} pmx_metrics_dir_t;

/* Upper bounds (seconds) of the DKIM histogram; one more bucket is +Inf. */
#define PMX_METRICS_DKIM_BOUNDS \
    { 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0 }
#define PMX_METRICS_DKIM_NBOUNDS 13

typedef enum {
    PMX_METRICS_CELL_EMPTY = 0,
    PMX_METRICS_CELL_CLAIMING,
    PMX_METRICS_CELL_READY,
    PMX_METRICS_CELL_ABANDONED,
} pmx_metrics_cell_state_t;

typedef struct {
    _Atomic uint32_t state;            /* pmx_metrics_cell_state_t */
    uint32_t         status;           /* key: family * 256 + column (0 for depth) */
    char             ws[PMX_METRICS_WS_MAX];   /* key: NUL-terminated */
    _Atomic uint64_t value;            /* counter, or depth */
    _Atomic uint64_t stamp;            /* depth: refresh generation of value */
} pmx_metrics_cell_t;

typedef struct {
    pmx_metrics_cell_t rcpt[PMX_METRICS_RCPT_SLOTS];
    _Atomic uint64_t   rcpt_other[PMX_METRICS_NFAM][PMX_METRICS_COLS];

    pmx_metrics_cell_t depth[PMX_METRICS_DEPTH_SLOTS];
    _Atomic uint64_t   depth_other;          /* workspaces that found no cell */
    _Atomic uint64_t   depth_other_stamp;
    _Atomic uint64_t   depth_gen_next;       /* generations handed out */
    _Atomic uint64_t   depth_gen_done;       /* newest completely written */
    _Atomic uint64_t   depth_due_ms;         /* pmx_shm_now_ms() of the next refresh */

    _Atomic uint64_t   dkim_buckets[PMX_METRICS_DKIM_NBOUNDS + 1];
    _Atomic uint64_t   dkim_sum_ns;

    _Atomic int64_t    sessions[PMX_SHM_SLOTS][PMX_METRICS_NDIR];

    _Atomic uint64_t   submission_memory_refusals;   /* submission/budget.h said no */
} pmx_metrics_shm_t;

/* Maps a zeroed region; NULL with errno on failure. */
pmx_metrics_shm_t *pmx_metrics_shm_create(void);
void pmx_metrics_shm_destroy(pmx_metrics_shm_t *m);

/* This process counts into m; slot = its scoreboard slot, -1 = not a worker
 * (its session gauges are ignored). m = NULL detaches. */
void pmx_metrics_shm_attach(pmx_metrics_shm_t *m, int slot);
pmx_metrics_shm_t *pmx_metrics_shm_current(void);
int pmx_metrics_shm_current_slot(void);

/* "sent" -> PMX_METRICS_SENT; -1 for anything else. */
int pmx_metrics_status_parse(const char *s);
const char *pmx_metrics_status_name(pmx_metrics_status_t st);
const char *pmx_metrics_dir_name(pmx_metrics_dir_t d);

/* Whether ws can be a label of its own (see the top of this file). */
bool pmx_metrics_ws_valid(const char *ws);

/*
 * The cell of (ws, status) in cells[0..nslots), claiming one when the key is
 * new; NULL when ws is not valid or the table is full.
 */
pmx_metrics_cell_t *pmx_metrics_shm_cell(pmx_metrics_cell_t *cells, size_t nslots,
                                         const char *ws, uint32_t status);

/* Counting (any process) */
void pmx_metrics_shm_add_recipients(pmx_metrics_shm_t *m, const char *ws,
                                    pmx_metrics_status_t st, uint64_t n);
/* n more in column col (< PMX_METRICS_COLS) of family fam for ws. */
void pmx_metrics_shm_add(pmx_metrics_shm_t *m, const char *ws, pmx_metrics_family_t fam,
                         unsigned col, uint64_t n);
void pmx_metrics_shm_observe_dkim(pmx_metrics_shm_t *m, double seconds);
void pmx_metrics_shm_sessions_add(pmx_metrics_shm_t *m, int slot, pmx_metrics_dir_t d,
                                  int64_t delta);
void pmx_metrics_shm_sessions_set(pmx_metrics_shm_t *m, int slot, pmx_metrics_dir_t d,
                                  int64_t n);
/* A submission message refused for the worker's memory budget. */
void pmx_metrics_shm_count_memory_refusal(pmx_metrics_shm_t *m);
/* Supervisor: the worker of slot is gone (or new): its gauges are zero. */
void pmx_metrics_shm_slot_reset(pmx_metrics_shm_t *m, int slot);

/*
 * Queue depth: writes one refresh (depths[i] of ids[i]) under a new
 * generation and publishes it. Workspaces that find no cell are summed into
 * "_other".
 */
void pmx_metrics_shm_store_depths(pmx_metrics_shm_t *m, const char *const *ids,
                                  const uint64_t *depths, size_t n);
/* Claims the next refresh: true for exactly one caller once now_ms reaches
 * the due time, which moves interval_ms on. */
bool pmx_metrics_shm_claim_refresh(pmx_metrics_shm_t *m, uint64_t now_ms, uint64_t interval_ms);

/* Reading */
typedef struct {
    char     ws[PMX_METRICS_WS_MAX];
    uint64_t value[PMX_METRICS_COLS];      /* one per column; depth: value[0] */
} pmx_metrics_row_t;

/*
 * The recipients counters, one row per workspace (equal keys merged), sorted
 * by workspace id, "_other" last when it is not zero. Returns the number of
 * rows; *rows is malloc'ed (free it).
 */
size_t pmx_metrics_shm_recipients(const pmx_metrics_shm_t *m, pmx_metrics_row_t **rows);
/* The same for any family (value[col]). */
size_t pmx_metrics_shm_rows(const pmx_metrics_shm_t *m, pmx_metrics_family_t fam,
                            pmx_metrics_row_t **rows);
/* The current queue depths, same shape (value[0]); 0 rows before the first
 * refresh. */
size_t pmx_metrics_shm_depths(const pmx_metrics_shm_t *m, pmx_metrics_row_t **rows);
/* Sum over every worker slot, never below 0. */
uint64_t pmx_metrics_shm_sessions(const pmx_metrics_shm_t *m, pmx_metrics_dir_t d);
/* Submission memory refusals, all workers. */
uint64_t pmx_metrics_shm_memory_refusals(const pmx_metrics_shm_t *m);
/* Non-cumulative bucket counts (PMX_METRICS_DKIM_NBOUNDS + 1) and the sum. */
void pmx_metrics_shm_dkim(const pmx_metrics_shm_t *m, uint64_t *buckets, uint64_t *sum_ns);

#endif
