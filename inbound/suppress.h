/*
 * The suppression list in memory (docs/feedback.md): for every workspace, the
 * addresses it may no longer mail, each in a scope ('*' = everything, or one
 * job category), with the reason and an optional expiry.
 *
 * Two layers:
 * - pmx_supp_table_t: a pure hash set, no I/O, unit-tested on its own.
 *   Each entry is the 64-bit SipHash (lib/siphash.h, a random key per table)
 *   of "workspace \0 scope \0 address" plus 32 bits of value (the reason and
 *   the expiry in minutes), 12 bytes a slot in open addressing: a list of
 *   1,000,000 addresses takes 24 MiB per worker, and a check is two hashes
 *   and a few probes, so the delivery path pays nothing measurable for it
 *   (make bench, scenario suppression). Strings are not kept: two different
 *   entries hash alike with a probability of about n / 2^64 per check
 *   (5e-14 for a million entries), and the random key stops anyone from
 *   aiming at it.
 * - pmx_supp_cache_t: one worker's copy of the suppressions table, loaded in
 *   pages over the worker's Postgres connection (sql/suppressions.h), kept
 *   current by NOTIFY postmux_suppressions (one row per notification, or '*'
 *   for a reload), reloaded after every reconnect. A reload builds a new table
 *   aside and swaps it in whole; notifications that arrive meanwhile go to
 *   the current table at once and are replayed onto the new one at the swap,
 *   so nothing said during a load is lost. Until the first load completes the
 *   cache is not ready and the pipeline reads no jobs.
 *
 * Addresses are compared case-insensitively: the table lower-cases ASCII, and
 * rows are stored lower-cased by Postgres (lower()). A non-ASCII upper-case
 * letter in an address is compared as written.
 * Single-threaded: everything runs on the worker's loop.
 */
#ifndef PMX_INBOUND_SUPPRESS_H
#define PMX_INBOUND_SUPPRESS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "sql/db_async.h"

#define PMX_SUPP_CHANNEL "postmux_suppressions"

typedef enum {
    PMX_SUPP_NONE = 0,
    PMX_SUPP_HARD_BOUNCE,
    PMX_SUPP_SOFT_BOUNCE,
    PMX_SUPP_COMPLAINT,
    PMX_SUPP_UNSUBSCRIBE,
    PMX_SUPP_MANUAL,
} pmx_supp_reason_t;

/* "hard_bounce", … ; NULL for PMX_SUPP_NONE or an unknown value. */
const char *pmx_supp_reason_name(pmx_supp_reason_t r);
/* The reason named s, or PMX_SUPP_NONE. */
pmx_supp_reason_t pmx_supp_reason_parse(const char *s);

/* ---- the table ---------------------------------------------------------------------------- */

typedef struct pmx_supp_table pmx_supp_table_t;

/* A new empty table; its hash key is random. */
pmx_supp_table_t *pmx_supp_table_new(void);
void pmx_supp_table_free(pmx_supp_table_t *t);
/*
 * Adds or replaces (ws, scope, addr). expires is a Unix time, 0 = never; an
 * entry already expired is not added (and removes an older one). Returns 0, or
 * -1 when an argument is empty, too long, or reason is not a reason.
 */
int pmx_supp_table_put(pmx_supp_table_t *t, const char *ws, const char *scope, const char *addr,
                       pmx_supp_reason_t reason, int64_t expires);
/* Removes (ws, scope, addr) if present. */
void pmx_supp_table_del(pmx_supp_table_t *t, const char *ws, const char *scope, const char *addr);
/* The reason (ws, scope, addr) is suppressed at Unix time now, or PMX_SUPP_NONE. */
pmx_supp_reason_t pmx_supp_table_get(const pmx_supp_table_t *t, const char *ws, const char *scope,
                                     const char *addr, int64_t now);
/* Entries held (expired ones included until they are removed or replaced). */
size_t pmx_supp_table_count(const pmx_supp_table_t *t);

/*
 * Applies one notification payload of the postmux_suppressions channel:
 * "+ WS SCOPE REASON EXPIRES ADDRESS" or "- WS SCOPE ADDRESS". Returns 1 for
 * '*' (the caller reloads), 0 when applied, -1 for a payload it cannot read.
 */
int pmx_supp_table_apply(pmx_supp_table_t *t, const char *payload);

/* ---- one worker's cache ------------------------------------------------------------------- */

typedef struct pmx_supp_cache pmx_supp_cache_t;
typedef void (*pmx_supp_ready_fn)(void *arg);

/* db may be NULL (unit tests). */
pmx_supp_cache_t *pmx_supp_cache_new(uv_loop_t *loop, pmx_db_async_t *db);
/* Called once, when the first load completes. */
void pmx_supp_cache_set_ready_cb(pmx_supp_cache_t *c, pmx_supp_ready_fn fn, void *arg);
/* LISTENs and loads now if the connection is up (else on the next up). 0 or -1. */
int  pmx_supp_cache_start(pmx_supp_cache_t *c);
/* Forwarded connection changes: up -> reload (notifications may have been missed). */
void pmx_supp_cache_on_db_state(pmx_supp_cache_t *c, bool up);
/* Forwarded notifications; other channels are ignored. */
void pmx_supp_cache_on_notify(pmx_supp_cache_t *c, const char *channel, const char *payload);
bool pmx_supp_cache_ready(const pmx_supp_cache_t *c);
/*
 * Why ws may not mail addr in a job of category (NULL = none): scope '*'
 * first, then the category. PMX_SUPP_NONE when it may.
 */
pmx_supp_reason_t pmx_supp_cache_check(const pmx_supp_cache_t *c, const char *ws,
                                       const char *category, const char *addr);
size_t pmx_supp_cache_count(const pmx_supp_cache_t *c);
/* Cancels what is in flight; the memory goes once the timer has closed. */
void pmx_supp_cache_free(pmx_supp_cache_t *c);

#endif
