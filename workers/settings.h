/*
 * The worker's settings cache: every workspace (name, suspension, test mode,
 * catch-all, testers, rate, burst, daily quota, egress pool, route and its
 * decrypted password) and its domains, with each
 * verified domain's active DKIM keys decrypted with the master key and parsed
 * once (pmx_dkim_key_t, ready for pmx_dkim_sign). The pipeline asks it, for
 * every job, "which workspace, may it send from this domain, with which keys,
 * is this recipient a tester" without touching Postgres.
 *
 * Loading: one SQL statement (one snapshot, one round trip) through the
 * worker's async connection (sql/db_async.h). The new state is built aside
 * and swapped in whole when complete; a failed load keeps the old state and
 * is logged (and retried after 5 s). A load whose rows equal the current
 * state swaps nothing and calls nobody.
 * Refresh: on NOTIFY postmux_settings (sql/001_init.sql's triggers; payload
 * = a workspace id or '*'; every notification means a full reload), every
 * 60 s as a safety net, and after every (re)connect. Bursts are coalesced:
 * at most one load in flight and one queued.
 * Keys are cached by (key id, created_at): a reload fetches and decrypts only
 * keys it has not seen; a key that cannot be decrypted (wrong master key,
 * tampered blob) or parsed is logged once, without any key material, and
 * its domain simply has one usable key fewer.
 *
 * Wiring: the worker owns the connection's callbacks, so the pipeline
 * forwards them: hooks->notify -> pmx_settings_on_notify, hooks->conn_changed
 * -> pmx_settings_on_db_state. pmx_settings_start() issues the LISTEN.
 *
 * Lifetime of what the lookups return: everything reachable from a
 * pmx_settings_ws_t (its domains, keys, testers, strings) belongs to one
 * immutable snapshot and stays valid until the next swap, which only happens
 * inside a loop callback — so it is safe within one synchronous stretch of
 * code. To keep it across an asynchronous step (a Redis call, a relay),
 * pmx_settings_ws_ref() it and pmx_settings_ws_unref() when done.
 * Single-threaded: everything runs on the worker's loop.
 */
#ifndef PMX_WORKERS_SETTINGS_H
#define PMX_WORKERS_SETTINGS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>
#include <uv.h>

#include "dkim/keycrypt.h"
#include "dkim/signer.h"
#include "routing/wsroute.h"
#include "sql/db_async.h"

#define PMX_SETTINGS_REFRESH_MS  60000u
#define PMX_SETTINGS_RETRY_MS    5000u

typedef struct pmx_settings      pmx_settings_t;
typedef struct pmx_settings_snap pmx_settings_snap_t;

typedef struct {
    const char           *name;          /* the domains row (lowercase): d= when signing */
    bool                  verified;      /* verified_at is set */
    const char           *return_path;   /* its return-path domain: domains.return_path, else
                                            bounces.<name> (docs/feedback.md) */
    const pmx_dkim_key_t *keys;          /* usable active keys, in selector order */
    size_t                nkeys;
    size_t                nkeys_failed;  /* active keys that could not be decrypted/parsed */
} pmx_settings_domain_t;

typedef struct {
    const char                  *id;               /* ws_... */
    const char                  *name;
    bool                         suspended;
    bool                         paused;           /* by the reputation guard: hold, never reject */
    bool                         suspended_known;  /* suspended, and suspended_at was set */
    int64_t                      suspended_for_ms; /* since suspended_at, by Postgres's clock */
    uint64_t                     loaded_ms;        /* ... as of this loop time (uv_now) */
    bool                         test_mode;
    const char                  *catch_all;        /* NULL = none */
    double                       rate_per_second;  /* 0 = unlimited */
    int                          burst;
    int64_t                      daily_quota;      /* 0 = none */
    const char *const           *testers;          /* lowercase, sorted (strcmp) */
    size_t                       ntesters;
    const pmx_settings_domain_t *domains;          /* sorted by name */
    size_t                       ndomains;
    /* Routing (docs/delivery.md "Egress pools", "Per-workspace routes"). */
    const char                  *pool;             /* egress pool name; NULL = default */
    const pmx_wsroute_t         *route;            /* NULL = default */
    const char                  *route_password;   /* decrypted (wiped with the snapshot);
                                                      NULL = none */
    const char                  *route_error;      /* the stored route or its password is
                                                      unusable (logged once per load): its
                                                      mail is deferred with this; NULL = ok */
    pmx_settings_snap_t         *snap;             /* internal: the snapshot it belongs to */
} pmx_settings_ws_t;

/* What pmx_settings_domain_for found for a From domain. */
typedef enum {
    PMX_SETTINGS_DOMAIN_OK = 0,     /* a verified domain of the workspace, with >= 1 usable key */
    PMX_SETTINGS_DOMAIN_NO_KEY,     /* a verified domain of the workspace, but no usable key:
                                       defer/reject, never send unsigned */
    PMX_SETTINGS_DOMAIN_UNVERIFIED, /* only an unverified domain of the workspace matches */
    PMX_SETTINGS_DOMAIN_NONE,       /* no domain of this workspace (or another workspace's
                                       verified domain is the closer match) */
} pmx_settings_match_t;

typedef struct {
    uint64_t loads;          /* loads completed (changed or not) */
    uint64_t load_failures;  /* loads that failed (SQL error, connection lost) */
    uint64_t swaps;          /* of which swapped in a new state (= generation) */
    uint64_t keys_opened;    /* keys decrypted and parsed successfully (cache misses) */
    uint64_t keys_failed;    /* keys that could not be used (each logged once) */
    uint64_t notifies;       /* NOTIFY postmux_settings received */
} pmx_settings_stats_t;

typedef void (*pmx_settings_changed_fn)(pmx_settings_t *s, void *arg);

/*
 * db may be NULL (unit tests feed results to pmx__settings_apply). master is
 * copied and wiped by pmx_settings_free.
 */
pmx_settings_t *pmx_settings_new(uv_loop_t *loop, pmx_db_async_t *db,
                                 const uint8_t master[PMX_DKIM_MASTER_KEY_LEN]);
/* Called after every swap (the first load included), e.g. to give the
 * consumer the new workspace list. It may call any lookup. */
void pmx_settings_set_changed_cb(pmx_settings_t *s, pmx_settings_changed_fn fn, void *arg);
/* Safety-net period (default PMX_SETTINGS_REFRESH_MS); for tests. Before start. */
void pmx_settings_set_refresh_ms(pmx_settings_t *s, uint64_t ms);
/* LISTENs, arms the periodic refresh, and loads now if the connection is up
 * (else on the next pmx_settings_on_db_state(up)). 0, or -1 without a db. */
int  pmx_settings_start(pmx_settings_t *s);
/* Forwarded connection changes: up -> reload. */
void pmx_settings_on_db_state(pmx_settings_t *s, bool up);
/* Forwarded notifications; other channels are ignored. */
void pmx_settings_on_notify(pmx_settings_t *s, const char *channel, const char *payload);
/* Asks for a reload (coalesced). */
void pmx_settings_reload(pmx_settings_t *s);
/* Cancels what is in flight, releases the current snapshot (snapshots still
 * referenced live on until unref), wipes the master key. The memory is
 * released once the timers have closed (run the loop). */
void pmx_settings_free(pmx_settings_t *s);

/* Moves on every swap ("settings loaded gen=N" in the log); a swap also
 * follows any change to API keys' revocation or scopes, so submission
 * sessions use it to check their key again (submission/apikeys.h). */
uint64_t pmx_settings_generation(const pmx_settings_t *s);
/* A first load has completed: until then every lookup finds nothing. */
bool pmx_settings_ready(const pmx_settings_t *s);
void pmx_settings_stats(const pmx_settings_t *s, pmx_settings_stats_t *out);

/* The workspace with this id, or NULL. */
const pmx_settings_ws_t *pmx_settings_lookup(const pmx_settings_t *s, const char *ws_id);
/* All workspaces of the current snapshot, sorted by id: i in [0, count). */
size_t pmx_settings_count(const pmx_settings_t *s);
const pmx_settings_ws_t *pmx_settings_at(const pmx_settings_t *s, size_t i);
/*
 * Fills ids[0..max) with the ids of the workspaces that are not suspended
 * (all of them with include_suspended), sorted; returns how many there are
 * (may exceed max). The strings live as long as the snapshot (see above).
 */
size_t pmx_settings_ids(const pmx_settings_t *s, bool include_suspended,
                        const char **ids, size_t max);

/*
 * The domain of ws that may sign mail from from_domain (case-insensitive):
 * the closest verified domain of ws equal to it or a parent of it (docs/queue.md:
 * "or a subdomain of one"; d= is then that verified domain, which is what the
 * keys carry). Walks from_domain's suffixes from the longest: a suffix that is
 * another workspace's verified domain stops the walk (that subtree is
 * theirs). *out (may be NULL) gets the matched domain for OK / NO_KEY, the
 * closest unverified one for UNVERIFIED, NULL for NONE.
 */
pmx_settings_match_t pmx_settings_domain_for(const pmx_settings_ws_t *ws, const char *from_domain,
                                             const pmx_settings_domain_t **out);
/* Whether addr (any case) is on ws's testers list. */
bool pmx_settings_is_tester(const pmx_settings_ws_t *ws, const char *addr);
const char *pmx_settings_match_name(pmx_settings_match_t m);

/* Keep ws (and its whole snapshot) alive across asynchronous steps. */
void pmx_settings_ws_ref(const pmx_settings_ws_t *ws);
void pmx_settings_ws_unref(const pmx_settings_ws_t *ws);

/* Internal, for unit tests: applies a result of the settings statement (a
 * PGresult with the columns of sql/q_settings.h) as if it came from Postgres.
 * Returns 0 (swapped or unchanged) or -1 (kept the old state, logged). */
int pmx__settings_apply(pmx_settings_t *s, const PGresult *res);

#endif
