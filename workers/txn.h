/*
 * The SMTP transactions of one job (docs/delivery.md "Transactions"): how the
 * recipient plan (workers/plan.h) goes to the relay, and what each
 * transaction carries so that what comes back finds its recipient
 * (docs/feedback.md "Return path (VERP)").
 *
 * One transaction per plan delivery (all relayed recipients together, and the
 * test-mode catch-all copy) unless the job is per recipient: with [inbound]
 * hostname set (VERP: each recipient its own envelope sender
 * b-<token>@<return-path domain> and an X-Postmux-Ref: <token> line) or with
 * unsubscribe = yes (List-Unsubscribe names the recipient). Then every relayed
 * or redirected recipient is its own transaction, and a redirected one's
 * token names the original recipient's row, not the catch-all.
 *
 * The message is built once. It is signed once and shared by every
 * transaction unless List-Unsubscribe is in it: that field differs per
 * recipient and every DKIM signature covers it, so each transaction then gets
 * its own signatures. What differs per transaction (X-Postmux-Ref, which is
 * added after signing and never signed; X-Original-To; the per-recipient
 * signatures and List-Unsubscribe fields) is the transaction's head, written
 * by the relay client before the shared message (smtp/client.h).
 */
#ifndef PMX_WORKERS_TXN_H
#define PMX_WORKERS_TXN_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dkim/signer.h"
#include "lib/buf.h"
#include "smtp/client.h"
#include "workers/plan.h"

#define PMX_TXN_NONE ((size_t)-1)

typedef struct {
    const char *const *rcpts;      /* borrowed from the plan */
    size_t             n;
    int                delivery;   /* the plan delivery: 0 as built, 1 the catch-all copy */
    size_t             rcpt;       /* per recipient: its plan index; else PMX_TXN_NONE */
    char              *mail_from;  /* the VERP sender, or NULL = the From address */
    pmx_buf_t          head;       /* written before the shared message */
    pmx_smtp_status_t *status;     /* per envelope recipient, filled by the caller */
    char             **response;
    void              *owner;      /* the caller's (the job) */
} pmx_txn_t;

typedef struct {
    pmx_txn_t *v;
    size_t     n;
    size_t    *of;    /* per plan recipient: its transaction, or PMX_TXN_NONE */
    size_t    *slot;  /* per plan recipient: its envelope position in that transaction */
} pmx_txns_t;

typedef struct {
    const char           *msg_id;         /* the message id the tokens name */
    const uint8_t        *ref_key;        /* pmx_worker_ref_key() */
    bool                  verp;           /* [inbound] hostname is set */
    const char           *return_domain;  /* of the signing domain (workers/settings.h) */
    bool                  unsubscribe;    /* the job's unsubscribe = yes */
    const char           *public_url;     /* [http] public_url; "" = no one-click link */
    bool                  mailto;         /* [inbound] listen is set: a mailto link too */
    pmx_dkim_signer_t    *signer;
    const pmx_dkim_key_t *keys;
    size_t                nkeys;
} pmx_txn_opts_t;

/* Whether a job goes out one transaction per recipient. */
static inline bool pmx_txn_per_recipient(const pmx_txn_opts_t *o)
{
    return o->verp || o->unsubscribe;
}

/* Lays out the transactions of plan (no head, no sender yet); status and
 * response are allocated for every envelope recipient. */
void pmx_txns_layout(pmx_txns_t *t, const pmx_plan_t *plan, bool per_recipient);

/*
 * Signs message m[0..n) (as built, CRLF) and fills every transaction's
 * sender and head. shared gets what all transactions send after their head:
 * the DKIM-Signature fields and m, or m alone when each transaction is signed
 * on its own (unsubscribe). Returns 0, or -1 with a reason in err (a
 * signature or a token could not be made: the caller defers every
 * transaction; nothing is half-filled that matters, free as usual).
 */
int  pmx_txns_prepare(pmx_txns_t *t, const pmx_plan_t *plan, const pmx_txn_opts_t *o,
                      const char *m, size_t n, pmx_buf_t *shared, char *err, size_t errlen);

void pmx_txns_free(pmx_txns_t *t);

#endif
