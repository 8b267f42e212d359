/*
 * The outcome writer: what happened to each job goes into messages,
 * recipients and events, batched, on the worker's async Postgres connection
 * (sql/db_async.h). The pipeline acknowledges a job in Redis only after its
 * item's callback reported 0 (docs/queue.md: a job leaves the stream only after
 * its outcome is recorded).
 *
 * Batching: items accumulate and go out as ONE statement (data-modifying
 * CTEs over unnest() of array parameters: one round trip, atomic) when
 * max_batch items are waiting or the oldest one has waited the flush window,
 * whichever comes first; at most one batch is in flight, the rest accumulate
 * meanwhile. When it returns, what waits goes out at once only if it is ripe
 * by the same rule; else when its oldest item is: under a steady load a batch
 * then carries a window of outcomes instead of one round trip's worth, and a
 * batch costs Postgres about as much as a dozen rows (docs/data.md). The
 * window is flush_ms, twice that under load (the last batch's items arrived
 * at 16 or more per flush_ms). Lookups wait flush_ms at most, and go at once
 * when the lookup in flight returns.
 *
 * Idempotent re-recording (a redelivered job):
 * - messages: ON CONFLICT (workspace_id, job_id) keeps the existing row, and
 *   the item's recipients and events attach to the EXISTING message id (the
 *   callback says which id the rows are under). pmx_outcomes_lookup tells the
 *   pipeline, before it relays a redelivered job, which message id and which
 *   recipients (already sent) Postgres holds for it.
 * - recipients: ON CONFLICT (message_id, address) DO UPDATE, except that a
 *   recipient already 'sent' is never changed. An address given twice for
 *   one message in a batch counts once (the last one wins).
 * - events are appended as given.
 *
 * Failures: a statement that Postgres refuses (a constraint, a bad value) is
 * retried split in halves until the bad item is alone; only that item fails
 * (-EINVAL, with Postgres's message), the others commit. A batch whose
 * connection is lost fails all its items with -EIO: they may or may not have
 * committed, which is safe because re-recording is idempotent. Items waiting
 * while the connection is down are held up to hold_ms for it to return, then
 * fail with -EAGAIN. A failed item's job stays pending in Redis and is
 * redelivered; every failure is logged once per batch.
 *
 * Ownership: submit copies everything it is given (text that is not valid
 * UTF-8 has the offending bytes replaced by '?', so free text such as an SMTP
 * reply can never make a whole batch fail). Each callback is called exactly
 * once, from the loop, unless cancelled — also by pmx_outcomes_free (status
 * -ECANCELED) — and what it is given is valid only during the call.
 */
#ifndef PMX_SQL_OUTCOMES_H
#define PMX_SQL_OUTCOMES_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "lib/buf.h"
#include "sql/db_async.h"

#define PMX_OUTCOMES_MAX_BATCH  200
#define PMX_OUTCOMES_FLUSH_MS   5
#define PMX_OUTCOMES_HOLD_MS    3000

typedef struct pmx_outcomes     pmx_outcomes_t;
typedef struct pmx_outcomes_req pmx_outcomes_req_t;

typedef struct {
    const char *address;         /* required */
    const char *status;          /* queued|sent|deferred|bounced|rejected|suppressed */
    int         attempts;
    const char *last_response;   /* NULL = none; the full SMTP reply */
    int64_t     next_attempt_ms; /* ms since the epoch; 0 = none */
    const char *bounce_class;    /* the failure's class (inbound/classify.h); NULL = none.
                                  * A bounced recipient with a hard class is suppressed
                                  * in the same transaction (docs/feedback.md). */
    int         idx;             /* its position in the job, 0-based, the same on every
                                  * attempt (what a recipient token names); < 0 = NULL */
} pmx_outcome_rcpt_t;

typedef struct {
    const char *type;            /* message.sent, ... (required) */
    const char *recipient;       /* NULL = about the whole message */
    const char *detail;          /* NULL = none */
} pmx_outcome_event_t;

typedef struct {
    /* false: insert the message row (kept if the job is already recorded);
     * true: the row exists (a retried message): recipients + events only. */
    bool        update_only;
    const char *message_id;      /* msg_...: new, or the job's existing id (required) */
    const char *workspace_id;    /* required */
    /* The message row; read only when !update_only. */
    const char *job_id;          /* required then */
    const char *client_id;
    const char *mail_from;       /* required then ("" for a null sender) */
    const char *header_from;
    const char *subject;
    const char *metadata;
    const char *source;          /* "redis" | "smtp"; NULL = "redis" */
    const char *category;        /* the job's category; NULL = none */
    const pmx_outcome_rcpt_t  *rcpts;
    size_t                     nrcpts;
    const pmx_outcome_event_t *events;
    size_t                     nevents;
} pmx_outcome_t;

typedef struct {
    /* 0 committed; -EINVAL Postgres refused this item; -EIO the connection
     * was lost with the batch in flight (it may have committed); -EAGAIN
     * Postgres was down for longer than hold_ms; -ECANCELED writer freed. */
    int         status;
    const char *message_id;      /* status 0: the id its rows are under */
    const char *error;           /* status < 0: one line */
} pmx_outcome_result_t;

typedef void (*pmx_outcome_done_fn)(const pmx_outcome_result_t *r, void *arg);

/* What Postgres already holds for a job (pmx_outcomes_lookup). */
typedef struct {
    const char *address;
    const char *status;
    int         attempts;
} pmx_outcome_known_rcpt_t;

typedef struct {
    int                             status;      /* 0, or -EIO/-EAGAIN/-EINVAL/-ECANCELED */
    const char                     *message_id;  /* NULL: the job is not recorded */
    const pmx_outcome_known_rcpt_t *rcpts;       /* sorted by address */
    size_t                          nrcpts;
    const char                     *error;       /* status < 0 */
} pmx_outcome_lookup_t;

typedef void (*pmx_outcome_lookup_fn)(const pmx_outcome_lookup_t *r, void *arg);

typedef struct {
    size_t   max_batch;   /* 0 = PMX_OUTCOMES_MAX_BATCH */
    uint64_t flush_ms;    /* 0 = PMX_OUTCOMES_FLUSH_MS */
    int64_t  hold_ms;     /* < 0 = PMX_OUTCOMES_HOLD_MS; 0 = fail at once while down */
    unsigned soft_bounce_limit;       /* soft bounces in a row that suppress; 0 = never */
    uint64_t soft_bounce_suppress_s;  /* for how long (seconds) */
} pmx_outcomes_opts_t;

typedef struct {
    uint64_t statements;      /* write statements sent (round trips) */
    uint64_t items_ok;
    uint64_t items_failed;
    uint64_t batches_failed;  /* statements refused or lost */
    uint64_t splits;          /* failed batches split to isolate a bad item */
    uint64_t lookups;         /* lookup requests answered */
    uint64_t lookup_queries;  /* lookup statements sent */
} pmx_outcomes_stats_t;

/* opts may be NULL. */
pmx_outcomes_t *pmx_outcomes_new(uv_loop_t *loop, pmx_db_async_t *db,
                                 const pmx_outcomes_opts_t *opts);
/*
 * Queues one item. Returns a handle for pmx_outcomes_cancel, or NULL when
 * the item lacks a required field or the writer is closing (logged; no
 * callback).
 */
pmx_outcomes_req_t *pmx_outcomes_submit(pmx_outcomes_t *o, const pmx_outcome_t *item,
                                        pmx_outcome_done_fn cb, void *arg);
/*
 * Asks what Postgres holds for (ws, job_id): the message id and its
 * recipients. Lookups are batched like items (one statement for all that
 * are waiting). They see committed rows only: an item of this writer still
 * waiting is not seen. NULL on a missing argument or while closing.
 */
pmx_outcomes_req_t *pmx_outcomes_lookup(pmx_outcomes_t *o, const char *ws, const char *job_id,
                                        pmx_outcome_lookup_fn cb, void *arg);
/* As pmx_outcomes_lookup, by message id (a retried job's _msg): found only
 * when that message belongs to ws. */
pmx_outcomes_req_t *pmx_outcomes_lookup_message(pmx_outcomes_t *o, const char *ws,
                                                const char *message_id,
                                                pmx_outcome_lookup_fn cb, void *arg);
/* The callback will not be called (the owner of arg went away). Never after
 * the callback ran. */
void pmx_outcomes_cancel(pmx_outcomes_req_t *req);
/* Sends what waits now, ripe or not (draining): the next batch of writes and
 * of lookups; what waits behind a batch in flight goes when it is ripe. */
void pmx_outcomes_flush(pmx_outcomes_t *o);
/* Items and lookups whose callbacks have not run yet. */
size_t pmx_outcomes_pending(const pmx_outcomes_t *o);
void pmx_outcomes_stats(const pmx_outcomes_t *o, pmx_outcomes_stats_t *out);
/* Calls every pending callback with -ECANCELED (an in-flight batch may still
 * commit); memory is released once the timer has closed (run the loop). */
void pmx_outcomes_free(pmx_outcomes_t *o);

#endif
