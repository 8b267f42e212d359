/* The SMTP transactions of one job; see txn.h. */
#include "workers/txn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/mem.h"
#include "lib/reftoken.h"
#include "lib/text.h"
#include "lib/verp.h"

static pmx_txn_t *add(pmx_txns_t *t, const char *const *rcpts, size_t n, int delivery, size_t rcpt)
{
    pmx_txn_t *x = &t->v[t->n++];
    *x = (pmx_txn_t){ .rcpts = rcpts, .n = n, .delivery = delivery, .rcpt = rcpt };
    pmx_buf_init(&x->head);
    x->status = pmx_xcalloc(n ? n : 1, sizeof *x->status);
    x->response = pmx_xcalloc(n ? n : 1, sizeof *x->response);
    return x;
}

void pmx_txns_layout(pmx_txns_t *t, const pmx_plan_t *plan, bool per_recipient)
{
    memset(t, 0, sizeof *t);
    size_t nr = plan->nr ? plan->nr : 1;
    t->v = pmx_xcalloc(per_recipient ? nr : 2, sizeof *t->v);
    t->of = pmx_xmalloc(nr * sizeof *t->of);
    t->slot = pmx_xcalloc(nr, sizeof *t->slot);
    for (size_t i = 0; i < plan->nr; i++) t->of[i] = PMX_TXN_NONE;
    if (!per_recipient) {
        size_t at[2] = { PMX_TXN_NONE, PMX_TXN_NONE };
        for (int d = 0; d < 2; d++) {
            if (plan->d[d].n == 0) continue;
            at[d] = t->n;
            add(t, plan->d[d].rcpts, plan->d[d].n, d, PMX_TXN_NONE);
        }
        for (size_t i = 0; i < plan->nr; i++) {
            const pmx_plan_rcpt_t *r = &plan->r[i];
            if (r->delivery < 0) continue;
            t->of[i] = at[r->delivery];
            t->slot[i] = r->slot;
        }
        return;
    }
    for (size_t i = 0; i < plan->nr; i++) {
        const pmx_plan_rcpt_t *r = &plan->r[i];
        if (r->action != PMX_PLAN_RELAY && r->action != PMX_PLAN_REDIRECT) continue;
        t->of[i] = t->n;
        /* A redirected recipient's copy goes to the catch-all. */
        add(t, r->action == PMX_PLAN_RELAY ? &r->addr : plan->d[1].rcpts, 1, r->delivery, i);
    }
}

/* One recipient's token, or -1 with a reason. */
static int token(const pmx_txn_opts_t *o, pmx_ref_purpose_t purpose, size_t idx,
                 char out[PMX_REF_TOKEN_LEN + 1], char *err, size_t errlen)
{
    if (pmx_ref_token_make(o->ref_key, purpose, o->msg_id, (unsigned)idx, out) == 0) return 0;
    snprintf(err, errlen, "no recipient token for message %s, recipient %zu", o->msg_id, idx);
    return -1;
}

/* The head of a per-recipient transaction: X-Postmux-Ref (VERP), X-Original-To
 * (redirected), then, with unsubscribe, this recipient's signatures over its
 * List-Unsubscribe fields and the message, and those fields. */
static int prepare_one(pmx_txn_t *x, const pmx_plan_t *plan, const pmx_txn_opts_t *o,
                       const char *m, size_t n, pmx_buf_t *tmp, char *err, size_t errlen)
{
    char tok[PMX_REF_TOKEN_LEN + 1];
    const char *addr = plan->r[x->rcpt].addr;
    if (o->verp) {
        if (token(o, PMX_REF_BOUNCE, x->rcpt, tok, err, errlen) < 0) return -1;
        pmx_buf_t from = PMX_BUF_INIT;
        pmx_buf_appendf(&from, "b-%s@%s", tok, o->return_domain);
        x->mail_from = pmx_buf_detach(&from);
        pmx_buf_appendf(&x->head, "X-Postmux-Ref: %s\r\n", tok);
    }
    if (x->delivery == 1) pmx_text_hdr_unstructured(&x->head, "X-Original-To", addr, strlen(addr));
    if (!o->unsubscribe) return 0;

    if (token(o, PMX_REF_UNSUBSCRIBE, x->rcpt, tok, err, errlen) < 0) return -1;
    pmx_buf_reset(tmp);
    pmx_buf_append_str(tmp, "List-Unsubscribe: ");
    bool one_click = pmx_verp_list_unsubscribe(tmp, o->public_url,
                                               o->mailto ? o->return_domain : NULL, tok);
    pmx_buf_append_str(tmp, "\r\n");
    /* RFC 8058: one-click only with an https:// URI to POST to. */
    if (one_click) pmx_buf_append_str(tmp, "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n");
    size_t fields = tmp->len;
    pmx_buf_append(tmp, m, n);
    if (pmx_dkim_sign(o->signer, o->keys, o->nkeys, tmp->data, tmp->len, &x->head, err, errlen) < 0)
        return -1;
    pmx_buf_append(&x->head, tmp->data, fields);
    return 0;
}

int pmx_txns_prepare(pmx_txns_t *t, const pmx_plan_t *plan, const pmx_txn_opts_t *o,
                     const char *m, size_t n, pmx_buf_t *shared, char *err, size_t errlen)
{
    if (!o->unsubscribe &&
        pmx_dkim_sign(o->signer, o->keys, o->nkeys, m, n, shared, err, errlen) < 0)
        return -1;
    pmx_buf_append(shared, m, n);
    pmx_buf_t tmp = PMX_BUF_INIT;
    int rc = 0;
    for (size_t k = 0; k < t->n && rc == 0; k++) {
        pmx_txn_t *x = &t->v[k];
        if (x->rcpt != PMX_TXN_NONE) {
            rc = prepare_one(x, plan, o, m, n, &tmp, err, errlen);
        } else if (x->delivery == 1) {
            for (size_t i = 0; i < plan->noriginal_to; i++)
                pmx_text_hdr_unstructured(&x->head, "X-Original-To", plan->original_to[i],
                                          strlen(plan->original_to[i]));
        }
    }
    pmx_buf_free(&tmp);
    return rc;
}

void pmx_txns_free(pmx_txns_t *t)
{
    for (size_t k = 0; k < t->n; k++) {
        pmx_txn_t *x = &t->v[k];
        for (size_t i = 0; i < x->n; i++) free(x->response[i]);
        free(x->response);
        free(x->status);
        free(x->mail_from);
        pmx_buf_free(&x->head);
    }
    free(t->v);
    free(t->of);
    free(t->slot);
    memset(t, 0, sizeof *t);
}
