/*
 * Sending domains as `postmux domain list|show|remove` (postmux(1)) and API
 * v1's GET /v1/domains and DELETE /v1/domains/{domain} (docs/http.md) read and
 * remove them: the domain name check, the SELECTs, the JSON form and the
 * DELETE with its audit_log row ($1 = the actor, "cli" or an API key id).
 */
#ifndef PMX_SQL_Q_DOMAIN_H
#define PMX_SQL_Q_DOMAIN_H
#include <stddef.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "lib/buf.h"

#define PMX_DOMAIN_MAX 253

/*
 * A domain name as stored: lowercased, one trailing dot dropped, LDH labels
 * of 1..63 characters (no leading or trailing hyphen), at least two labels,
 * at most 253 characters. out holds PMX_DOMAIN_MAX + 1 bytes. 0, or -1 with
 * the reason ("empty label", ...) in why.
 */
int pmx_domain_normalize(const char *in, char *out, char *why, size_t whylen);

/* Domains with their workspace; append " WHERE ..." and an ORDER BY. */
#define PMX_SQL_DOMAIN_SELECT                                                       \
    "SELECT d.id, d.domain, d.workspace_id, w.name, d.verify_token,"                \
    " to_char(d.verified_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"  \
    " to_char(d.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"  \
    " d.return_path"                                                                \
    " FROM domains d JOIN workspaces w ON w.id = d.workspace_id"
enum { PMX_D_ID, PMX_D_DOMAIN, PMX_D_WS, PMX_D_WS_NAME, PMX_D_TOKEN, PMX_D_VERIFIED_AT,
       PMX_D_CREATED, PMX_D_RETURN_PATH };
/* DKIM keys with their domain (d); append " WHERE ..." and an ORDER BY. */
#define PMX_SQL_DOMAIN_KEY_SELECT                                                            \
    "SELECT k.domain_id, k.selector, k.algorithm, k.public_key, k.active, k.private_key_enc" \
    " FROM dkim_keys k JOIN domains d ON d.id = k.domain_id"
enum { PMX_K_DOMAIN_ID, PMX_K_SELECTOR, PMX_K_ALG, PMX_K_PUB, PMX_K_ACTIVE, PMX_K_BLOB };

/* $1 workspace id or NULL (all): the domains, by name; the keys of those domains. */
extern const char pmx_sql_domain_list[];
extern const char pmx_sql_domain_list_keys[];

/* Row r of a PMX_SQL_DOMAIN_SELECT result with its keys (rows of keys whose
 * domain id matches), as `domain list --json` prints it. */
json_t *pmx_domain_json(const PGresult *d, int r, const PGresult *keys);

/* The return-path domain of row r: its return_path, else bounces.DOMAIN
 * (docs/feedback.md "Return path (VERP)"); appended to out. */
void pmx_domain_return_path(pmx_buf_t *out, const PGresult *d, int r);

/* $1 actor, $2 domain, $3 workspace id or NULL (any). A row (id) when removed
 * (its keys go with it). */
extern const char pmx_sql_domain_remove[];

#endif
