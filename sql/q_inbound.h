/*
 * The inbound listener's statements (docs/feedback.md "Inbound SMTP",
 * sql/011_inbound_reports.sql): store what was received, apply what it says,
 * and the upkeep (retry what was stored but not applied, prune after 30 days).
 *
 * Storing and applying are two statements: a report is stored (and answered
 * "250") even when applying it fails; applying flips inbound_reports.applied_at
 * in the same transaction as its writes, guarded by "applied_at IS NULL", so
 * a report is applied exactly once however often it is tried.
 */
#ifndef PMX_SQL_Q_INBOUND_H
#define PMX_SQL_Q_INBOUND_H
#include <stddef.h>
#include <stdint.h>

#include "sql/db_async.h"

/* One accepted envelope recipient of a stored message. */
typedef struct {
    const char *rcpt;        /* the envelope address */
    const char *message_id;  /* the recipient row its token names, or NULL */
    int         idx;         /* recipients.idx, -1 with message_id NULL */
    const char *kind;        /* inbound_reports.kind */
    const char *ws;          /* the workspace when message_id names none (fbl@ domain), or NULL */
} pmx_db_inbound_rcpt_t;

/*
 * Stores one message (raw, n octets, binary) once per recipient, in one
 * statement. Rows: one per recipient: id, workspace_id (may be NULL), rcpt.
 */
pmx_db_async_req_t *pmx_db_inbound_store(pmx_db_async_t *db, const pmx_db_inbound_rcpt_t *r,
                                         size_t nr, const char *mail_from, const char *parsed,
                                         const char *raw, size_t n,
                                         pmx_db_async_result_fn cb, void *arg);

/* What a report does to the recipient it names (docs/feedback.md "Outcomes"). */
typedef struct {
    const char *act;            /* "bounce", "delay", "complaint" or "none" */
    const char *status;         /* enhanced status, or NULL */
    const char *cls;            /* bounce class, or NULL */
    int         hard;           /* 1: a hard class */
    const char *diagnostic;     /* or NULL */
    const char *detail;         /* the event's detail (JSON) */
    const char *feedback_type;  /* complaint: the suppression's detail */
    unsigned    soft_limit;     /* [feedback] soft_bounce_limit */
    uint64_t    soft_for_s;     /* [feedback] soft_bounce_suppress_for */
} pmx_db_inbound_act_t;

/*
 * Applies report id (once: nothing when applied_at is set). One row:
 * applied (1 = applied now, 0 = it was already), workspace_id of the
 * recipient (NULL when none of ours), bounced (1 = its status became bounced).
 */
pmx_db_async_req_t *pmx_db_inbound_apply(pmx_db_async_t *db, const char *id,
                                         const pmx_db_inbound_act_t *a,
                                         pmx_db_async_result_fn cb, void *arg);
/* Marks report id applied (after an unsubscribe, which is idempotent itself). */
pmx_db_async_req_t *pmx_db_inbound_mark(pmx_db_async_t *db, const char *id,
                                        pmx_db_async_result_fn cb, void *arg);
/*
 * Reports stored over older_s seconds ago and not applied yet, at most limit:
 * id, rcpt, message_id, rcpt_idx, raw (bytea, text format), workspace_id.
 */
pmx_db_async_req_t *pmx_db_inbound_unapplied(pmx_db_async_t *db, unsigned older_s, unsigned limit,
                                             pmx_db_async_result_fn cb, void *arg);
/* Deletes reports older than keep_days (at most 10,000 rows a call). */
pmx_db_async_req_t *pmx_db_inbound_prune(pmx_db_async_t *db, unsigned keep_days,
                                         pmx_db_async_result_fn cb, void *arg);
/* The return-path domains of verified domains: return-path domain, workspace_id, domain. */
pmx_db_async_req_t *pmx_db_inbound_domains(pmx_db_async_t *db, pmx_db_async_result_fn cb, void *arg);

#endif
