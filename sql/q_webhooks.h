/*
 * The statements of the webhook outbox (webhooks/sender.h) on the
 * webhook_deliveries table (sql/003_webhook_outbox.sql), joined with
 * webhooks, events, workspaces and messages for the body: claim due rows,
 * record the answers, delete finished rows. A trigger on events inserts the
 * rows and NOTIFYs PMX_DB_WEBHOOKS_CHANNEL; `postmux webhook` manages the
 * webhooks table (cli/webhook.c).
 *
 * Claim and clean-up skip locked rows (SKIP LOCKED), so workers never wait on
 * each other. Ownership as sql/db_async.h: cb runs exactly once unless the
 * request is cancelled (pmx_db_async_cancel), with res NULL when the
 * connection went away first; the PGresult is freed after cb returns. Each
 * returns NULL (cb never called) when Postgres is not up.
 */
#ifndef PMX_SQL_Q_WEBHOOKS_H
#define PMX_SQL_Q_WEBHOOKS_H
#include <stdint.h>

#include "sql/db_async.h"

#define PMX_DB_WEBHOOKS_CHANNEL "postmux_webhooks"

/*
 * Claims at most n due rows and leases them for lease_s seconds (their
 * next_attempt_at moved forward in the same statement, so no other worker
 * claims them while the POST is in flight). Of the pending rows of one
 * (webhook, message, recipient) only the oldest qualifies, so one recipient's
 * events go out in order. One result row per claimed row, oldest first:
 */
enum {
    PMX_DB_WH_ID,          /* webhook_deliveries.id */
    PMX_DB_WH_ATTEMPTS,    /* POSTs made so far */
    PMX_DB_WH_HOOK,        /* webhooks.id */
    PMX_DB_WH_URL,
    PMX_DB_WH_SECRET,      /* sealed, as stored */
    PMX_DB_WH_EVT,         /* events.id; NULL when the event row is gone */
    PMX_DB_WH_TYPE,
    PMX_DB_WH_CREATED,     /* the event's time, RFC 3339 UTC with ms */
    PMX_DB_WH_WS,
    PMX_DB_WH_WSNAME,
    PMX_DB_WH_MSG,
    PMX_DB_WH_JOB,
    PMX_DB_WH_CLIENT,
    PMX_DB_WH_RCPT,
    PMX_DB_WH_RESP,        /* the event's detail, else the row's response */
    PMX_DB_WH_ATTEMPT,     /* the recipient's attempts when the event was recorded, or 0 */
    PMX_DB_WH_META,        /* the message's metadata */
    PMX_DB_WH_NCOLS
};
pmx_db_async_req_t *pmx_db_webhooks_claim(pmx_db_async_t *db, unsigned n, int lease_s,
                                          pmx_db_async_result_fn cb, void *arg);

/*
 * Records a batch of answers, given as four Postgres array literals of one
 * length: row ids, delivered (2xx), error texts, gone (the event row no longer
 * exists: give up now). A failure moves next_attempt_at to now + base_ms *
 * 2^attempts (at most cap_ms), never past the row's expiry, so the last attempt
 * is made at the expiry; a failure at or after it gives the row up. The rows
 * queued behind a failed one (same webhook, message and recipient) move to the
 * same time. Result: the rows given up, by id:
 */
enum { PMX_DB_WH_GAVE_UP_ID, PMX_DB_WH_GAVE_UP_HOOK, PMX_DB_WH_GAVE_UP_EVT,
       PMX_DB_WH_GAVE_UP_ATTEMPTS };
pmx_db_async_req_t *pmx_db_webhooks_record(pmx_db_async_t *db, const char *ids,
                                           const char *delivered, const char *errors,
                                           const char *gone, uint64_t base_ms, uint64_t cap_ms,
                                           pmx_db_async_result_fn cb, void *arg);

/* Deletes a small batch of rows delivered or given up more than keep_h hours
 * ago (PQcmdTuples: how many). */
pmx_db_async_req_t *pmx_db_webhooks_clean(pmx_db_async_t *db, int keep_h,
                                          pmx_db_async_result_fn cb, void *arg);

#endif
