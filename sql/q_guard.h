/*
 * The reputation guard's statement (docs/feedback.md, "Reputation guard"):
 * pauses every workspace whose hard-bounce or complaint rate over the window
 * is past its limit, and records workspace.paused, in one transaction. Run by
 * every worker on a timer (inbound/guard.h); a transaction-level advisory
 * lock lets only one run at a time, the others find it taken and do nothing.
 *
 * What is counted, per workspace, since max(now - window, guard_since):
 * - attempted: message.sent + message.bounced events, from the hourly rollup
 *   stats_counts (docs/webhooks.md, "Stats"), so the window's start is rounded
 *   down to its hour;
 * - hard bounces and complaints: suppressions rows with reason hard_bounce
 *   resp. complaint created in the window that name the message they came
 *   from (each such failure suppresses its address, and a suppressed address
 *   is never tried again, so one row per failure). Rows added by hand or
 *   imported (no message_id) are not failures of this workspace's sending and
 *   never count.
 * A window with fewer than guard_min_sent attempted is not judged.
 *
 * Parameters: $1 window (seconds), $2 default max bounce rate (percent; NULL =
 * none), $3 default max complaint rate (same), $4 guard_min_sent.
 * Rows: the workspaces paused now: id, pause_reason.
 */
#ifndef PMX_SQL_Q_GUARD_H
#define PMX_SQL_Q_GUARD_H

#include <stdint.h>

#include "sql/db_async.h"

pmx_db_async_req_t *pmx_db_guard_run(pmx_db_async_t *db, uint64_t window_s, double max_bounce,
                                     double max_complaint, int min_sent,
                                     pmx_db_async_result_fn cb, void *arg);

#endif
