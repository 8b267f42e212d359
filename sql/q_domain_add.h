/*
 * Adding a sending domain through API v1 (POST /v1/domains, docs/http.md) in
 * one statement with its audit_log row, and the DNS records to publish for a
 * domain as `postmux domain add|show` (postmux(1)) print them.
 */
#ifndef PMX_SQL_Q_DOMAIN_ADD_H
#define PMX_SQL_Q_DOMAIN_ADD_H
#include <jansson.h>
#include <libpq-fe.h>

/*
 * $1 actor, $2 workspace id, $3 domain, $4 verify token, $5 return path or
 * NULL; up to two keys as ($6 selector, $7 algorithm, $8 public key, $9 sealed
 * key as a "\x..." bytea literal) and $10..$13 (all NULL for none). A row (id)
 * when added; a domain that exists is a unique violation.
 */
extern const char pmx_sql_domain_add[];
/* $1 domain: the domain (PMX_SQL_DOMAIN_SELECT) / its keys, by selector. */
extern const char pmx_sql_domain_get[];
extern const char pmx_sql_domain_get_keys[];

/*
 * The records to publish for row r of a PMX_SQL_DOMAIN_SELECT result and its
 * keys: [{"type","name","value"}] — the _postmux TXT, one DKIM TXT per key,
 * and, when hostname is non-empty ([inbound] hostname), the return path's MX
 * ("10 HOST") and SPF TXT. Names carry no final dot.
 */
json_t *pmx_domain_records_json(const PGresult *d, int r, const PGresult *keys,
                                const char *hostname);

#endif
