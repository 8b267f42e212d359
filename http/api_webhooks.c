/*
 * API v1's /v1/webhooks (docs/http.md, docs/webhooks.md): a workspace's
 * webhooks, or with an organization key and no X-Workspace-Id the
 * organization-wide ones. Checked (through http/api_input.h), sealed and
 * written by the same code as `postmux webhook add|list|remove`
 * (webhooks/hookadmin.h), each change with its audit_log row. The secret is
 * in the answer to POST once, never again.
 */
#include <stdio.h>
#include <string.h>

#include "http/api_call.h"
#include "http/api_input.h"
#include "lib/mem.h"
#include "webhooks/hookadmin.h"

static void hook_rows(pmx_api_call_t *c, const PGresult *res)
{
    json_t *a = json_array();
    for (int r = 0; r < PQntuples(res); r++)
        json_array_append_new(a, json_pack("{s:s,s:o,s:s,s:o,s:s}",
            "id", PQgetvalue(res, r, 0), "workspace_id", pmx_api_text_or_null(res, r, 1),
            "url", PQgetvalue(res, r, 2), "events", pmx_api_split_list(PQgetvalue(res, r, 3)),
            "created_at", PQgetvalue(res, r, 4)));
    pmx_api_call_json(c, 200, json_pack("{s:o}", "webhooks", a));
}

void pmx_api_list_webhooks(pmx_api_call_t *c)
{
    const char *vals[1] = { c->ws };    /* "" = organization-wide */
    pmx_api_call_query(c, pmx_sql_hook_list, 1, vals, hook_rows);
}

static void hook_added(pmx_api_call_t *c, const PGresult *res)
{
    if (PQntuples(res) != 1) {
        pmx_wipe(c->text, sizeof c->text);
        pmx_api_call_problem(c, 409, "a webhook for that URL exists already here", "url");
        return;
    }
    pmx_api_call_secret_created(c, res, "secret");
}

void pmx_api_add_webhook(pmx_api_call_t *c)
{
    pmx_buf_t norm = PMX_BUF_INIT, events = PMX_BUF_INIT;
    pmx_api_bad_t bad;
    if (pmx_api_webhook_body(c->body, &norm, &events, &bad) < 0) {
        pmx_buf_free(&norm);
        pmx_buf_free(&events);
        pmx_api_call_refused(c, &bad);
        return;
    }
    json_t *ev = json_object_get(c->body, "events");
    size_t i;
    json_t *v;
    char id[24];
    pmx_buf_t secret = PMX_BUF_INIT, stored = PMX_BUF_INIT;
    if (pmx_hook_make_secret(pmx__http_api_master(c->api), id, &secret, &stored) < 0) {
        pmx_buf_free(&norm);
        pmx_buf_free(&events);
        pmx_buf_free_secret(&secret);
        pmx_buf_free(&stored);
        pmx_api_call_problem(c, 500, "cannot make or encrypt the webhook secret (OpenSSL)", NULL);
        return;
    }
    json_t *evs = json_array();
    if (ev) json_array_foreach(ev, i, v) json_array_append(evs, v);
    json_object_set_new(c->body, "_answer",
                        json_pack("{s:s,s:o,s:s,s:o}", "id", id,
                                  "workspace_id", c->ws[0] ? json_string(c->ws) : json_null(),
                                  "url", pmx_buf_cstr(&norm), "events", evs));
    /* The secret waits in c->text for the row, is shown once and wiped. */
    snprintf(c->text, sizeof c->text, "%s", pmx_buf_cstr(&secret));
    const char *vals[6] = { pmx_api_call_actor(c), id, c->ws[0] ? c->ws : NULL,
                            pmx_buf_cstr(&norm), pmx_buf_cstr(&events), pmx_buf_cstr(&stored) };
    pmx_api_call_query(c, pmx_sql_hook_add, 6, vals, hook_added);
    pmx_buf_free(&norm);
    pmx_buf_free(&events);
    pmx_buf_free_secret(&secret);
    pmx_buf_free(&stored);
}

static void hook_removed(pmx_api_call_t *c, const PGresult *res)
{
    if (PQntuples(res) != 1) {
        pmx_api_call_problem(c, 404, "no such webhook here", NULL);
        return;
    }
    pmx_api_call_json(c, 200, json_pack("{s:s,s:b}", "id", PQgetvalue(res, 0, 0), "removed", 1));
}

void pmx_api_remove_webhook(pmx_api_call_t *c)
{
    const char *vals[3] = { pmx_api_call_actor(c), c->param, c->ws };
    pmx_api_call_query(c, pmx_sql_hook_remove, 3, vals, hook_removed);
}
