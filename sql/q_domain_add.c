/* Adding a domain through the API, and a domain's DNS records; see q_domain_add.h. */
#include "sql/q_domain_add.h"

#include <string.h>

#include "dkim/keygen.h"
#include "dkim/newkey.h"
#include "lib/buf.h"
#include "sql/q_domain.h"

const char pmx_sql_domain_add[] =
    "WITH d AS (INSERT INTO domains (workspace_id, domain, verify_token, return_path)"
    "           VALUES ($2, $3, $4, $5) RETURNING id, workspace_id, domain),"
    " k AS (INSERT INTO dkim_keys (domain_id, selector, algorithm, public_key,"
    "                              private_key_enc, active)"
    "       SELECT d.id, s.sel, s.alg, s.pub, s.blob::bytea, true"
    "       FROM d, (VALUES ($6::text, $7::text, $8::text, $9::text),"
    "                       ($10::text, $11::text, $12::text, $13::text)) s(sel, alg, pub, blob)"
    "       WHERE s.sel IS NOT NULL),"
    " l AS (INSERT INTO audit_log (api_key_id, workspace_id, action, target)"
    "       SELECT $1, workspace_id, 'domain.add', domain FROM d)"
    " SELECT id FROM d";

const char pmx_sql_domain_get[] = PMX_SQL_DOMAIN_SELECT " WHERE d.domain = $1";
const char pmx_sql_domain_get_keys[] =
    PMX_SQL_DOMAIN_KEY_SELECT " WHERE d.domain = $1 ORDER BY k.selector";

static void add_record(json_t *a, const char *type, const char *name, const char *value)
{
    json_array_append_new(a, json_pack("{s:s,s:s,s:s}", "type", type, "name", name,
                                       "value", value));
}

json_t *pmx_domain_records_json(const PGresult *d, int r, const PGresult *keys,
                                const char *hostname)
{
    json_t *a = json_array();
    const char *domain = PQgetvalue(d, r, PMX_D_DOMAIN);
    pmx_buf_t name = PMX_BUF_INIT, value = PMX_BUF_INIT;
    pmx_dkim_token_record(&name, &value, domain, PQgetvalue(d, r, PMX_D_TOKEN));
    add_record(a, "TXT", name.data, value.data);
    for (int k = 0; keys && k < PQntuples(keys); k++) {
        pmx_dkim_alg_t alg;
        if (strcmp(PQgetvalue(keys, k, PMX_K_DOMAIN_ID), PQgetvalue(d, r, PMX_D_ID)) != 0 ||
            pmx_dkim_alg_parse(PQgetvalue(keys, k, PMX_K_ALG), &alg) < 0)
            continue;
        pmx_buf_reset(&name);
        pmx_buf_reset(&value);
        pmx_buf_appendf(&name, "%s._domainkey.%s", PQgetvalue(keys, k, PMX_K_SELECTOR), domain);
        pmx_dkim_dns_value(&value, alg, PQgetvalue(keys, k, PMX_K_PUB));
        add_record(a, "TXT", name.data, value.data);
    }
    if (hostname && *hostname) {
        pmx_buf_t rp = PMX_BUF_INIT;
        pmx_domain_return_path(&rp, d, r);
        pmx_buf_reset(&value);
        pmx_buf_appendf(&value, "10 %s", hostname);
        add_record(a, "MX", rp.data, value.data);
        pmx_buf_reset(&value);
        pmx_dkim_spf_value(&value, hostname);
        add_record(a, "TXT", rp.data, value.data);
        pmx_buf_free(&rp);
    }
    pmx_buf_free(&name);
    pmx_buf_free(&value);
    return a;
}
