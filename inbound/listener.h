/*
 * The [inbound] SMTP listener in a worker (docs/feedback.md "Inbound SMTP",
 * postmuxd(8)): what comes back after the hand-off — bounces (DSNs and the
 * plain-text kind), delay notices, complaints (ARF feedback loops), auto-replies
 * and mailto unsubscribes — arrives here. Every worker accepts on the socket
 * the supervisor opened (smtp/listener.h); each connection runs one
 * smtp/server.h session with no AUTH that never relays.
 *
 * RCPT TO accepts only (anything else "550 5.1.1"):
 * - b-<token>@<any domain>: a recipient token (lib/reftoken.h) whose tag is
 *   good for purpose 'b' — checked here, so a forged or mistyped token is
 *   refused without a Postgres lookup;
 * - u-<token>@<any domain>: the same with purpose 'u' (mailto unsubscribe);
 * - fbl@<a return-path domain>: domains.return_path of a verified domain, else
 *   bounces.<verified domain> (feedback-loop reports).
 *
 * A message (after DATA) is parsed once (inbound/report.h), stored whole in
 * inbound_reports, one row per accepted recipient, and only then answered
 * "250" (Postgres down or failing: "451 4.3.0", nothing kept, the sender
 * retries). Then each row is applied (sql/q_inbound.h): the recipient its
 * token names (b-/u- RCPT, or for fbl@ the report's X-Postmux-Ref / return
 * path token) gets its async bounce, delay or complaint, or is unsubscribed.
 * A row stored but not applied (Postgres went away between the two) is
 * applied by the upkeep a minute later; applying is exactly-once.
 *
 * Limits (strangers' input; constants below, per worker): sessions in all and
 * per client address (IPv4 address or IPv6 /64), recipients per message, an
 * idle deadline and a session lifetime, [inbound] max_message_size ("552"),
 * smtp/server.h's line rules (bare LF, 998-octet lines, 512-octet commands),
 * and a memory budget for messages in flight ("452 4.3.1").
 *
 * Upkeep (every PMX_INBOUND_UPKEEP_MS): deletes reports older than
 * PMX_INBOUND_KEEP_DAYS, applies rows left unapplied, refreshes the
 * return-path domains.
 */
#ifndef PMX_INBOUND_LISTENER_H
#define PMX_INBOUND_LISTENER_H
#include <stddef.h>

#include "workers/settings.h"
#include "workers/worker.h"

#define PMX_INBOUND_MAX_SESSIONS     100                 /* per worker */
#define PMX_INBOUND_MAX_PER_ADDRESS  10                  /* per worker and client address */
#define PMX_INBOUND_MAX_RCPTS        100                 /* per message */
#define PMX_INBOUND_IDLE_MS          (5 * 60 * 1000)     /* RFC 5321 §4.5.3.2.7 */
#define PMX_INBOUND_SESSION_MS       (10 * 60 * 1000)    /* a session's whole life */
#define PMX_INBOUND_MEMORY_MIN       (64ull * 1024 * 1024)   /* or 4 x max_message_size */
#define PMX_INBOUND_KEEP_DAYS        30
#define PMX_INBOUND_UPKEEP_MS        60000u
#define PMX_INBOUND_RETRY_AFTER_S    60                  /* an unapplied row is retried after */

typedef struct pmx_inbound pmx_inbound_t;

/*
 * Starts accepting when the worker has an inbound socket; *out is NULL (and
 * 0 returned) when [inbound] listen is empty. settings: the worker's cache
 * (verified domains), not owned. -1 (logged) when the TLS certificate or key
 * cannot be loaded or the socket cannot be served.
 */
int  pmx_inbound_start(pmx_worker_t *w, pmx_settings_t *settings, pmx_inbound_t **out);
/* Graceful stop: no new connections; sessions finish the transaction they
 * are in; done(arg) once, from a loop callback. NULL in calls done at once. */
void pmx_inbound_drain(pmx_inbound_t *in, void (*done)(void *arg), void *arg);
/* Closes what is left; frees in once its handles have closed and every
 * request was answered (the loop must run). */
void pmx_inbound_stop(pmx_inbound_t *in);

#endif
