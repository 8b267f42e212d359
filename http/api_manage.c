/*
 * API v1's manage endpoints (docs/http.md): testers, suppressions and API
 * keys of the call's workspace (API keys also of the organization, with an
 * organization key and no X-Workspace-Id). Lists need scope `read`, changes
 * `manage`. Input is checked by the same code as the CLI's (through
 * http/api_input.h: lib/addr.h, lib/job.h, inbound/suppress.h, lib/apikey.h)
 * and written by the same statements (sql/q_admin.h), each with its
 * audit_log row naming the key.
 * Bad input: 422 with `field`; another workspace's object or a missing one:
 * 404.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/api_call.h"
#include "http/api_input.h"
#include "inbound/suppress.h"
#include "lib/apikey.h"
#include "lib/log.h"
#include "lib/mem.h"
#include "sql/q_admin.h"

/* ---- testers ---- */

static void tester_rows(pmx_api_call_t *c, const PGresult *res)
{
    json_t *a = json_array();
    for (int r = 0; r < PQntuples(res); r++)
        json_array_append_new(a, json_pack("{s:s,s:s}", "address", PQgetvalue(res, r, 0),
                                           "created_at", PQgetvalue(res, r, 1)));
    pmx_api_call_json(c, 200, json_pack("{s:o}", "testers", a));
}

void pmx_api_list_testers(pmx_api_call_t *c)
{
    const char *vals[1] = { c->ws };
    pmx_api_call_query(c, pmx_sql_tester_list, 1, vals, tester_rows);
}

static void tester_added(pmx_api_call_t *c, const PGresult *res)
{
    bool changed = strcmp(PQgetvalue(res, 0, 1), "1") == 0;
    pmx_api_call_json(c, changed ? 201 : 200,
                      json_pack("{s:s,s:b}", "address", PQgetvalue(res, 0, 0), "added", changed));
}

void pmx_api_add_tester(pmx_api_call_t *c)
{
    pmx_api_bad_t bad;
    if (pmx_api_tester_body(c->body, c->text, sizeof c->text, &bad) < 0) {
        pmx_api_call_refused(c, &bad);
        return;
    }
    const char *vals[3] = { pmx_api_call_actor(c), c->ws, c->text };
    pmx_api_call_query(c, pmx_sql_tester_add, 3, vals, tester_added);
}

static void tester_removed(pmx_api_call_t *c, const PGresult *res)
{
    if (strcmp(PQgetvalue(res, 0, 1), "1") != 0) {
        pmx_api_call_problem(c, 404, "not a tester of this workspace", NULL);
        return;
    }
    pmx_api_call_json(c, 200, json_pack("{s:s,s:b}", "address", PQgetvalue(res, 0, 0),
                                        "removed", 1));
}

void pmx_api_remove_tester(pmx_api_call_t *c)
{
    pmx_api_bad_t bad;
    if (pmx_api_address(c->param, "address", c->text, sizeof c->text, &bad) < 0) {
        pmx_api_call_refused(c, &bad);
        return;
    }
    const char *vals[3] = { pmx_api_call_actor(c), c->ws, c->text };
    pmx_api_call_query(c, pmx_sql_tester_remove, 3, vals, tester_removed);
}

/* ---- suppressions ---- */

static void suppression_rows(pmx_api_call_t *c, const PGresult *res)
{
    json_t *a = json_array();
    for (int r = 0; r < PQntuples(res); r++)
        json_array_append_new(a, json_pack("{s:s,s:s,s:s,s:o,s:o,s:s,s:o}",
            "address", PQgetvalue(res, r, 0), "scope", PQgetvalue(res, r, 1),
            "reason", PQgetvalue(res, r, 2), "detail", pmx_api_text_or_null(res, r, 3),
            "message_id", pmx_api_text_or_null(res, r, 4), "created_at", PQgetvalue(res, r, 5),
            "expires_at", pmx_api_text_or_null(res, r, 6)));
    pmx_api_call_json(c, 200, json_pack("{s:o}", "suppressions", a));
}

void pmx_api_list_suppressions(pmx_api_call_t *c)
{
    const char *reason = pmx_api_call_arg(c, "reason");
    if (reason && pmx_supp_reason_parse(reason) == PMX_SUPP_NONE) {
        pmx_api_call_problem(c, 400, "reason must be hard_bounce, soft_bounce, complaint, "
                             "unsubscribe or manual", "reason");
        return;
    }
    const char *vals[2] = { c->ws, reason };
    pmx_api_call_query(c, pmx_sql_suppression_list, 2, vals, suppression_rows);
}

static void suppression_added(pmx_api_call_t *c, const PGresult *res)
{
    json_t *doc = json_pack("{s:s,s:O,s:O,s:O}", "address", PQgetvalue(res, 0, 0),
                            "scope", json_object_get(c->body, "scope"),
                            "reason", json_object_get(c->body, "reason"),
                            "detail", json_object_get(c->body, "detail"));
    pmx_api_call_json(c, 201, doc);
}

void pmx_api_add_suppression(pmx_api_call_t *c)
{
    pmx_api_supp_t sp;
    pmx_api_bad_t bad;
    if (pmx_api_suppression_body(c->body, c->text, sizeof c->text, &sp, &bad) < 0) {
        pmx_api_call_refused(c, &bad);
        return;
    }
    const char *vals[6] = { pmx_api_call_actor(c), c->ws, c->text, sp.scope, sp.reason,
                            sp.detail };
    pmx_api_call_query(c, pmx_sql_suppression_add, 6, vals, suppression_added);
}

static void suppression_removed(pmx_api_call_t *c, const PGresult *res)
{
    if (PQntuples(res) == 0) {
        pmx_api_call_problem(c, 404, "not on this workspace's suppression list in that scope",
                             NULL);
        return;
    }
    pmx_api_call_json(c, 200, json_pack("{s:s,s:b}", "address", PQgetvalue(res, 0, 0),
                                        "removed", 1));
}

void pmx_api_remove_suppression(pmx_api_call_t *c)
{
    const char *scope = pmx_api_call_arg(c, "scope");
    if (!scope) scope = "*";
    if (!pmx_api_supp_scope_valid(scope)) {
        pmx_api_call_problem(c, 400, "scope must be * or a category (1 to 64 of a-z 0-9 _ . -)",
                             "scope");
        return;
    }
    pmx_api_bad_t bad;
    if (pmx_api_address(c->param, "address", c->text, sizeof c->text, &bad) < 0) {
        pmx_api_call_refused(c, &bad);
        return;
    }
    const char *vals[4] = { pmx_api_call_actor(c), c->ws, c->text, scope };
    pmx_api_call_query(c, pmx_sql_suppression_remove, 4, vals, suppression_removed);
}

/* ---- API keys ---- */

static void key_rows(pmx_api_call_t *c, const PGresult *res)
{
    json_t *a = json_array();
    for (int r = 0; r < PQntuples(res); r++)
        json_array_append_new(a, json_pack("{s:s,s:o,s:s,s:s,s:o,s:s,s:o,s:o}",
            "id", PQgetvalue(res, r, 0), "workspace_id", pmx_api_text_or_null(res, r, 1),
            "name", PQgetvalue(res, r, 2), "prefix", PQgetvalue(res, r, 3),
            "scopes", pmx_api_split_list(PQgetvalue(res, r, 4)), "created_at", PQgetvalue(res, r, 5),
            "revoked_at", pmx_api_text_or_null(res, r, 6),
            "last_used_at", pmx_api_text_or_null(res, r, 7)));
    pmx_api_call_json(c, 200, json_pack("{s:o}", "api_keys", a));
}

void pmx_api_list_keys(pmx_api_call_t *c)
{
    const char *vals[1] = { c->ws };    /* "" = the organization's keys */
    pmx_api_call_query(c, pmx_sql_apikey_list, 1, vals, key_rows);
}

static void key_created(pmx_api_call_t *c, const PGresult *res)
{
    pmx_api_call_secret_created(c, res, "key");
}

void pmx_api_create_key(pmx_api_call_t *c)
{
    const char *name;
    pmx_buf_t array = PMX_BUF_INIT;
    pmx_api_bad_t bad;
    if (pmx_api_key_body(c->body, &name, &array, &bad) < 0) {
        pmx_buf_free(&array);
        pmx_api_call_refused(c, &bad);
        return;
    }
    json_t *sc = json_object_get(c->body, "scopes");
    pmx_apikey_new_t k;
    if (pmx_apikey_make(&k) < 0) {
        pmx_buf_free(&array);
        pmx_api_call_problem(c, 500, "no random bytes from OpenSSL", NULL);
        return;
    }
    const char *vals[7] = { pmx_api_call_actor(c), k.id, c->ws[0] ? c->ws : NULL, name,
                            k.prefix, pmx_buf_cstr(&k.hash_hex), pmx_buf_cstr(&array) };
    /* The key waits in c->text for the row to be in, then is shown once in
     * the answer (never logged) and wiped. */
    json_t *doc = json_pack("{s:s,s:s,s:o,s:s,s:o}", "id", k.id, "name", name,
                            "workspace_id", c->ws[0] ? json_string(c->ws) : json_null(),
                            "prefix", k.prefix,
                            "scopes", sc ? json_deep_copy(sc) : json_pack("[s]", "send"));
    json_object_set_new(c->body, "_answer", doc);
    snprintf(c->text, sizeof c->text, "%s", pmx_buf_cstr(&k.secret));
    pmx_api_call_query(c, pmx_sql_apikey_create, 7, vals, key_created);
    pmx_apikey_free(&k);
    pmx_buf_free(&array);
}

static void key_revoked(pmx_api_call_t *c, const PGresult *res)
{
    if (strcmp(PQgetvalue(res, 0, 0), "0") == 0) {
        pmx_api_call_problem(c, 404, "no such API key here", NULL);
        return;
    }
    bool now = strcmp(PQgetvalue(res, 0, 1), "0") != 0;
    pmx_api_call_json(c, 200, json_pack("{s:s,s:b}", "id", c->param, "revoked", now));
}

void pmx_api_revoke_key(pmx_api_call_t *c)
{
    const char *vals[3] = { pmx_api_call_actor(c), c->param, c->ws };
    pmx_api_call_query(c, pmx_sql_apikey_revoke, 3, vals, key_revoked);
}
