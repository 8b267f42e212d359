/*
 * Unsubscribe by recipient token (docs/http.md "One-click unsubscribe",
 * docs/feedback.md "Recipient tokens"): the statements behind GET and POST
 * /u/<token> and mail to u-<token>@<return-path domain>. The token has been
 * checked already (lib/reftoken.h); these name its recipient row by
 * (message id, recipients.idx).
 *
 * pmx_db_unsub_lookup: nothing is written. Rows: zero (no such recipient, or
 * its workspace is gone) or one: workspace name, address, scope (the
 * message's category, else '*'), already ('t' when the address is on the
 * list in that scope or '*').
 *
 * pmx_db_unsub_apply: in one statement, adds (workspace, lower(address),
 * scope) to the suppression list with reason 'unsubscribe', detail `via`
 * ("one-click" or "mailto") and the message id, and writes the event
 * message.unsubscribed — both only when the row is new, so repeating it
 * changes nothing. Rows: zero (no such recipient) or one: workspace id,
 * address, scope, added ('1' new, '0' already there), workspace name.
 */
#ifndef PMX_SQL_Q_UNSUBSCRIBE_H
#define PMX_SQL_Q_UNSUBSCRIBE_H

#include "sql/db_async.h"

pmx_db_async_req_t *pmx_db_unsub_lookup(pmx_db_async_t *db, const char *msg_id, unsigned idx,
                                        pmx_db_async_result_fn cb, void *arg);
pmx_db_async_req_t *pmx_db_unsub_apply(pmx_db_async_t *db, const char *msg_id, unsigned idx,
                                       const char *via, pmx_db_async_result_fn cb, void *arg);

#endif
