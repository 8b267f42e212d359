/*
 * API v1's /v1/domains (docs/http.md): a workspace's sending domains with
 * their DKIM keys (the form of `postmux domain list --json`), and removing
 * one with its keys. Shared with the CLI: sql/q_domain.h (name check,
 * statements, JSON), with an audit_log row for the removal. Adding and
 * verifying domains through the API is not built (use `postmux domain`).
 */
#include <stdio.h>
#include <string.h>

#include "http/api_call.h"
#include "sql/q_domain.h"

static void key_rows(pmx_api_call_t *c, const PGresult *keys)
{
    json_t *a = json_array();
    for (int r = 0; r < PQntuples(c->held); r++)
        json_array_append_new(a, pmx_domain_json(c->held, r, keys));
    pmx_api_call_json(c, 200, json_pack("{s:o}", "domains", a));
}

static void domain_rows(pmx_api_call_t *c, const PGresult *res)
{
    pmx_api_call_hold_query(c, res, pmx_sql_domain_list_keys, c->ws, key_rows);
}

void pmx_api_list_domains(pmx_api_call_t *c)
{
    const char *vals[1] = { c->ws };
    pmx_api_call_query(c, pmx_sql_domain_list, 1, vals, domain_rows);
}

static void domain_removed(pmx_api_call_t *c, const PGresult *res)
{
    if (PQntuples(res) != 1) {
        pmx_api_call_problem(c, 404, "no such domain in this workspace", NULL);
        return;
    }
    pmx_api_call_json(c, 200, json_pack("{s:s,s:b}", "domain", c->text, "removed", 1));
}

void pmx_api_remove_domain(pmx_api_call_t *c)
{
    char why[128], detail[200];
    if (pmx_domain_normalize(c->param, c->text, why, sizeof why) < 0) {
        snprintf(detail, sizeof detail, "domain: %s", why);
        pmx_api_call_problem(c, 400, detail, "domain");
        return;
    }
    const char *vals[3] = { pmx_api_call_actor(c), c->text, c->ws };
    pmx_api_call_query(c, pmx_sql_domain_remove, 3, vals, domain_removed);
}
