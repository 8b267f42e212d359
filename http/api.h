/*
 * The public HTTP listener, API v1 (docs/http.md): served by every
 * worker on the `[http] listen` socket the supervisor opened, on
 * http/server.h. What it answers today:
 * - POST /v1/emails: one email (http/email.h), checked as the pipeline will
 *   check it (lib/job.h, the workspace and its From domain through
 *   workers/settings.h), XADDed to the workspace's stream, and only after
 *   Redis acknowledged, 202 {"id": "<stream entry id>"}; Redis down: 503;
 * - POST /v1/emails/batch: a JSON array of 1..PMX_HTTP_API_MAX_BATCH emails,
 *   200 {"results": [...]} with one result per item, in order;
 * - GET /v1/openapi.json: the OpenAPI 3.1 document (http/openapi.json).
 * - GET and POST /u/<token>: one-click unsubscribe, handed to
 *   http/unsubscribe.h (no API key; the token is the credential).
 * Authentication: Authorization: Bearer <API key>, checked through the
 * worker's API key cache (submission/apikeys.h: no Postgres query while the
 * answer is cached, a revoked key refused within PMX_APIKEYS_TTL_MS). Scope
 * `send`. A workspace key sends as its workspace; an organization key names
 * the workspace in X-Workspace-Id. Errors are RFC 9457 problem documents.
 *
 * Ownership: a request waiting for an API key lookup or for XADD replies is
 * held by an operation record; when its connection goes away first (or the
 * server closes) the record forgets the request, cancels the lookup, and is
 * freed once the last XADD reply (or NULL, on disconnect) has arrived.
 */
#ifndef PMX_HTTP_API_H
#define PMX_HTTP_API_H

#include "workers/settings.h"
#include "workers/worker.h"

#define PMX_HTTP_API_MAX_BATCH 500

typedef struct pmx_http_api pmx_http_api_t;

/*
 * Starts serving when the worker has an [http] socket; *out is NULL (and 0
 * returned) when the listener is off. settings: the worker's cache (not
 * owned). -1 (logged) when the TLS files cannot be read or the server cannot
 * start.
 */
int  pmx_http_api_start(pmx_worker_t *w, pmx_settings_t *settings, pmx_http_api_t **out);
/* Stops accepting; calls done(arg) once no request is waiting for an answer
 * (at once when none is, and for a NULL api). */
void pmx_http_api_drain(pmx_http_api_t *api, void (*done)(void *arg), void *arg);
/* Closes the server and frees api (operations still waiting for Redis free
 * themselves when their replies arrive). Call before the worker closes Redis. */
void pmx_http_api_stop(pmx_http_api_t *api);

#endif
