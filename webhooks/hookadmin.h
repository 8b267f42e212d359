/*
 * Webhooks as `postmux webhook add|list|remove` (postmux(1)) and API v1's
 * /v1/webhooks (docs/http.md, docs/webhooks.md) make, list and remove them:
 * the URL and event checks, the secret ("whsec_" + base64url of 32 random
 * bytes, shown once) sealed under the master key as webhooks/payload.h opens
 * it, and the statements, each change with its audit_log row ($1 = the actor,
 * "cli" or an API key id).
 */
#ifndef PMX_WEBHOOKS_HOOKADMIN_H
#define PMX_WEBHOOKS_HOOKADMIN_H
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

#define PMX_HOOK_URL_MAX_LEN 2000

/* The URL a webhook posts to: http(s), a host, an optional port, no spaces,
 * control or non-ASCII characters, no user:password@. Appends it to out with
 * the scheme in lower case: 0, or -1 with the reason in err (naming label). */
int pmx_hook_check_url(const char *label, const char *url, pmx_buf_t *out, char *err, size_t n);
/* "message.sent,message.bounced" -> "{message.sent,message.bounced}" appended
 * to array; each a known event type, once. 0, or -1 with the reason. */
int pmx_hook_parse_events(const char *label, const char *s, pmx_buf_t *array, char *err,
                          size_t n);
/* A fresh webhook id (id: 24 bytes) and secret text, and the secret sealed
 * for that id under master into stored ("v1:" + base64). 0, or -1 (OpenSSL). */
int pmx_hook_make_secret(const uint8_t master[32], char *id, pmx_buf_t *secret,
                         pmx_buf_t *stored);

/* $1 actor, $2 id, $3 workspace id or NULL (organization-wide), $4 url,
 * $5 events (array literal), $6 stored secret. A row (created_at) when added,
 * none when that scope has a webhook for the URL already. */
extern const char pmx_sql_hook_add[];
/* $1 whose: NULL every webhook, "" organization-wide ones, else a workspace's.
 * Rows: id, workspace_id, url, events (comma-separated), created_at. */
extern const char pmx_sql_hook_list[];
/* $1 actor, $2 id, $3 whose (as for list). A row when removed. */
extern const char pmx_sql_hook_remove[];

#endif
