/*
 * SMTP submission in a worker (docs/submission.md): accepts connections on the listening
 * socket the supervisor opened (every worker accepts on the same socket),
 * runs one smtp/server.h session per connection over smtp/tls.h, and does
 * what the sessions ask:
 * - AUTH: the password is an API key, checked through submission/apikeys.h
 *   (scope `send`); failures are throttled per client address
 *   (submission/peerlimit.h);
 * - a message: the workspace (the key's, or X-Workspace-Id for an
 *   organization key — the header is removed), the workspace's state and the
 *   From and MAIL FROM domains (workers/settings.h), the job as the pipeline
 *   will decode it (lib/job.h, lib/mime.h); then XADD on the workspace's
 *   stream as a `raw` job, and only then "250 2.0.0 Ok: queued as <entry id>".
 *
 * The stream entry: from = MAIL FROM, to = the RCPT addresses joined with
 * ", ", the internal field _source = smtp (the message's `source` column;
 * internal fields start with "_"), and last raw = the message as received
 * (CRLF, dots unstuffed) without X-Workspace-Id.
 *
 * Memory (docs/submission.md "Memory"): a message is held once, in the
 * session's DATA buffer, which becomes the XADD command (hiredis then makes
 * its one copy). What a worker holds for messages in flight — DATA buffers
 * and XADDs until Redis answers — stays within [submission] memory_budget
 * (submission/budget.h); over it the client gets "452 4.3.1" at MAIL (SIZE=),
 * at DATA, or at the end of a DATA whose growth was refused.
 *
 * Limits (docs/submission.md, [submission] in postmux.conf(5)): max_connections
 * sessions of all workers together, max_connections_per_address per client
 * address, and over the high-water mark (connection_reserve) only addresses
 * with no session get one; more are answered "421 4.7.0" and closed. A
 * session must authenticate within auth_timeout ("421 4.7.0"), may send at
 * most junk_command_limit commands before AUTH ("421 4.7.0"), and lives at
 * most max_session_time ("421 4.4.2" after the transaction in progress).
 * PMX_SUBMISSION_IDLE_MS without a complete command or message line ends a
 * session ("421 4.4.2"). Every MAIL checks the session's API key again when
 * the settings moved on since it was last found good (a revocation moves
 * them): a revoked key gets "535 5.7.8" and must AUTH again.
 */
#ifndef PMX_SUBMISSION_SESSION_H
#define PMX_SUBMISSION_SESSION_H
#include <stddef.h>

#include "workers/settings.h"
#include "workers/worker.h"

#define PMX_SUBMISSION_IDLE_MS      (5 * 60 * 1000)   /* RFC 5321 §4.5.3.2.7 */
#define PMX_SUBMISSION_SOURCE_FIELD "_source"
#define PMX_SUBMISSION_SOURCE_VALUE "smtp"

typedef struct pmx_worker_submission pmx_worker_submission_t;

/*
 * Starts accepting when the worker has a submission socket; *out is NULL
 * (and 0 returned) when submission is off. settings is the worker's settings
 * cache (shared with the pipeline; not owned). Returns -1 (logged) when the
 * TLS certificate or key cannot be loaded or the socket cannot be served.
 */
int  pmx_worker_submission_start(pmx_worker_t *w, pmx_settings_t *settings,
                                 pmx_worker_submission_t **out);
/*
 * Graceful stop: stops accepting (other workers and the supervisor keep the
 * socket), lets every session finish the transaction it is in (new commands
 * get "421 4.3.2"), then calls done(arg) once, from a loop callback. NULL sub
 * calls done at once.
 */
void pmx_worker_submission_drain(pmx_worker_submission_t *sub, void (*done)(void *arg), void *arg);
/* Closes whatever is left and frees sub once its handles have closed and
 * every XADD in flight was answered (the loop must run). Call before the
 * worker closes its Redis (which answers those with NULL) and Postgres. */
void pmx_worker_submission_stop(pmx_worker_submission_t *sub);
/* Sessions open now (for postmux_smtp_sessions{direction="in"}). */
size_t pmx_worker_submission_sessions(const pmx_worker_submission_t *sub);

#endif
