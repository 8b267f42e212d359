/* Sending domains: the name check, listing and removal; see q_domain.h. */
#include "sql/q_domain.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/verp.h"

#define LABEL_MAX 63

int pmx_domain_normalize(const char *in, char *out, char *why, size_t whylen)
{
    size_t n = strlen(in);
    if (n > 0 && in[n - 1] == '.') n--;
    if (n == 0) {
        snprintf(why, whylen, "empty");
        return -1;
    }
    if (n > PMX_DOMAIN_MAX) {
        snprintf(why, whylen, "longer than %d characters", PMX_DOMAIN_MAX);
        return -1;
    }
    size_t label = 0, dots = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = in[i];
        if (ch >= 'A' && ch <= 'Z') ch = (char)(ch - 'A' + 'a');
        out[i] = ch;
        if (ch == '.') {
            if (label == 0) {
                snprintf(why, whylen, "empty label");
                return -1;
            }
            if (out[i - 1] == '-') {
                snprintf(why, whylen, "a label ends with '-'");
                return -1;
            }
            label = 0;
            dots++;
            continue;
        }
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-')) {
            snprintf(why, whylen, "only letters, digits, '-' and '.' are allowed");
            return -1;
        }
        if (ch == '-' && label == 0) {
            snprintf(why, whylen, "a label starts with '-'");
            return -1;
        }
        if (++label > LABEL_MAX) {
            snprintf(why, whylen, "a label is longer than %d characters", LABEL_MAX);
            return -1;
        }
    }
    out[n] = '\0';
    if (label == 0) {   /* "example.com..": one trailing dot was dropped, not two */
        snprintf(why, whylen, "empty label");
        return -1;
    }
    if (out[n - 1] == '-') {
        snprintf(why, whylen, "a label ends with '-'");
        return -1;
    }
    if (dots == 0) {
        snprintf(why, whylen, "needs at least one dot");
        return -1;
    }
    return 0;
}

const char pmx_sql_domain_list[] =
    PMX_SQL_DOMAIN_SELECT " WHERE $1::text IS NULL OR d.workspace_id = $1 ORDER BY d.domain";
const char pmx_sql_domain_list_keys[] =
    PMX_SQL_DOMAIN_KEY_SELECT " WHERE $1::text IS NULL OR d.workspace_id = $1"
    " ORDER BY k.domain_id, k.selector";

const char pmx_sql_domain_remove[] =
    "WITH d AS (DELETE FROM domains WHERE domain = $2"
    "           AND ($3::text IS NULL OR workspace_id = $3)"
    "           RETURNING id, workspace_id, domain),"
    " l AS (INSERT INTO audit_log (api_key_id, workspace_id, action, target)"
    "       SELECT $1, workspace_id, 'domain.remove', domain FROM d)"
    " SELECT id FROM d";

static const char *col(const PGresult *res, int r, int c) { return PQgetvalue(res, r, c); }

static json_t *key_json(const PGresult *keys, int r, const char *domain)
{
    json_t *o = json_object();
    json_object_set_new(o, "selector", json_string(col(keys, r, PMX_K_SELECTOR)));
    json_object_set_new(o, "algorithm", json_string(col(keys, r, PMX_K_ALG)));
    json_object_set_new(o, "active", json_boolean(col(keys, r, PMX_K_ACTIVE)[0] == 't'));
    json_object_set_new(o, "public_key", json_string(col(keys, r, PMX_K_PUB)));
    pmx_buf_t name = PMX_BUF_INIT;
    pmx_buf_appendf(&name, "%s._domainkey.%s", col(keys, r, PMX_K_SELECTOR), domain);
    json_object_set_new(o, "dns_name", json_string(pmx_buf_cstr(&name)));
    pmx_buf_free(&name);
    return o;
}

void pmx_domain_return_path(pmx_buf_t *out, const PGresult *d, int r)
{
    pmx_verp_return_domain(out, col(d, r, PMX_D_DOMAIN),
                           PQgetisnull(d, r, PMX_D_RETURN_PATH) ? NULL
                                                                : col(d, r, PMX_D_RETURN_PATH));
}

json_t *pmx_domain_json(const PGresult *d, int r, const PGresult *keys)
{
    json_t *o = json_object();
    const char *domain = col(d, r, PMX_D_DOMAIN);
    bool verified = !PQgetisnull(d, r, PMX_D_VERIFIED_AT);
    json_object_set_new(o, "domain", json_string(domain));
    json_object_set_new(o, "workspace_id", json_string(col(d, r, PMX_D_WS)));
    json_object_set_new(o, "workspace_name", json_string(col(d, r, PMX_D_WS_NAME)));
    json_object_set_new(o, "verified", json_boolean(verified));
    json_object_set_new(o, "verified_at",
                        verified ? json_string(col(d, r, PMX_D_VERIFIED_AT)) : json_null());
    json_object_set_new(o, "verify_token", json_string(col(d, r, PMX_D_TOKEN)));
    json_object_set_new(o, "created_at", json_string(col(d, r, PMX_D_CREATED)));
    pmx_buf_t rp = PMX_BUF_INIT;
    pmx_domain_return_path(&rp, d, r);
    json_object_set_new(o, "return_path", json_string(rp.data));
    pmx_buf_free(&rp);
    json_t *a = json_array();
    for (int k = 0; keys && k < PQntuples(keys); k++)
        if (strcmp(col(keys, k, PMX_K_DOMAIN_ID), col(d, r, PMX_D_ID)) == 0)
            json_array_append_new(a, key_json(keys, k, domain));
    json_object_set_new(o, "keys", a);
    return o;
}
