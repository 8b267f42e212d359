/*
 * API v1's POST /v1/domains/{domain}/verify (docs/http.md): the DNS check of
 * `postmux domain verify` (postmux(1)) — the _postmux token and every DKIM key
 * as postmux holds it (dkim/dnscheck.h) — through [mx] resolver (or
 * /etc/resolv.conf). The lookups block (libunbound, synchronous): they run
 * off the worker's loop (pmx_api_call_work). All records right: the domain is
 * marked verified and its keys active in one statement with its audit_log row
 * (domain.verify), and the answer is 200 with the domain and each record's
 * result; a record missing or wrong: 422 naming each; a lookup that failed
 * (timeout, server failure): 503.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/dns.h"
#include "dkim/dnscheck.h"
#include "http/api_call.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/mem.h"
#include "sql/q_domain.h"
#include "sql/q_domain_add.h"

typedef struct {
    char  selector[64];
    char  algorithm[32];
    char *pub;
} vkey_t;

typedef struct {
    pmx_cli_nameserver_t ns;
    char                 domain[PMX_DOMAIN_MAX + 1];
    char                *token;
    vkey_t              *keys;
    int                  nkeys;
    /* Results, filled by the work. */
    json_t              *records;     /* [{"type","name","value","ok","problem"?}] */
    pmx_buf_t            missing;     /* "NAME: why; ..." of records not right */
    pmx_buf_t            failed;      /* lookups that failed */
} verify_job_t;

static void job_free(void *arg)
{
    verify_job_t *j = arg;
    for (int i = 0; i < j->nkeys; i++) free(j->keys[i].pub);
    free(j->keys);
    free(j->token);
    json_decref(j->records);
    pmx_buf_free(&j->missing);
    pmx_buf_free(&j->failed);
    free(j);
}

static void note(verify_job_t *j, pmx_dns_check_t *r, int rc)
{
    json_t *o = json_pack("{s:s,s:s,s:s,s:b}", "type", "TXT", "name", r->name.data, "value",
                          pmx_buf_cstr(&r->want), "ok", rc == 0);
    if (rc < 0) {
        json_object_set_new(o, "problem", json_string(pmx_buf_cstr(&r->why)));
        pmx_buf_t *into = r->bare ? &j->failed : &j->missing;
        if (into->len) pmx_buf_append_str(into, "; ");
        if (r->bare) pmx_buf_append_str(into, pmx_buf_cstr(&r->why));
        else pmx_buf_appendf(into, "%s: %s", r->name.data, pmx_buf_cstr(&r->why));
    }
    json_array_append_new(j->records, o);
    pmx_dns_check_free(r);
}

/* On the thread pool: every record, so one answer names all that is wrong. */
static void job_run(void *arg)
{
    verify_job_t *j = arg;
    pmx_dns_check_t r;
    note(j, &r, pmx_dns_check_token(&j->ns, j->domain, j->token, &r));
    for (int i = 0; i < j->nkeys; i++)
        note(j, &r, pmx_dns_check_key(&j->ns, j->domain, j->keys[i].selector,
                                      j->keys[i].algorithm, j->keys[i].pub, &r));
}

/* $1 actor, $2 domain, $3 workspace: verified, keys active, audited; a row (id). */
static const char sql_mark[] =
    "WITH d AS (UPDATE domains SET verified_at = COALESCE(verified_at, now())"
    "           WHERE domain = $2 AND workspace_id = $3 RETURNING id, workspace_id, domain),"
    " k AS (UPDATE dkim_keys SET active = true WHERE domain_id IN (SELECT id FROM d) AND NOT active),"
    " l AS (INSERT INTO audit_log (api_key_id, workspace_id, action, target)"
    "       SELECT $1, workspace_id, 'domain.verify', domain FROM d)"
    " SELECT id FROM d";

static void got_keys(pmx_api_call_t *c, const PGresult *keys)
{
    json_t *o = pmx_domain_json(c->held, 0, keys);
    json_object_set(o, "records", c->out);
    pmx_api_call_json(c, 200, o);
}

static void got_domain(pmx_api_call_t *c, const PGresult *res)
{
    if (PQntuples(res) != 1) {
        pmx_api_call_problem(c, 404, "no such domain in this workspace", NULL);
        return;
    }
    pmx_api_call_hold_query(c, res, pmx_sql_domain_get_keys, c->text, got_keys);
}

static void marked(pmx_api_call_t *c, const PGresult *res)
{
    if (PQntuples(res) != 1) {   /* removed meanwhile */
        pmx_api_call_problem(c, 404, "no such domain in this workspace", NULL);
        return;
    }
    const char *vals[1] = { c->text };
    pmx_api_call_query(c, pmx_sql_domain_get, 1, vals, got_domain);
}

static void job_done(pmx_api_call_t *c, void *arg)
{
    verify_job_t *j = arg;
    char detail[1200];
    if (j->failed.len) {
        snprintf(detail, sizeof detail, "DNS lookups failed, try again: %s", j->failed.data);
        job_free(j);
        pmx_api_call_problem(c, 503, detail, NULL);
        return;
    }
    if (j->missing.len) {
        snprintf(detail, sizeof detail, "%s is not verified: %s", j->domain, j->missing.data);
        job_free(j);
        pmx_api_call_problem(c, 422, detail, NULL);
        return;
    }
    c->out = j->records;
    j->records = NULL;
    job_free(j);
    const char *vals[3] = { pmx_api_call_actor(c), c->text, c->ws };
    pmx_api_call_query(c, sql_mark, 3, vals, marked);
}

/* The domain's keys: the job to run. */
static void have_keys(pmx_api_call_t *c, const PGresult *keys)
{
    const pmx_config_t *cfg = pmx__http_api_config(c->api);
    verify_job_t *j = pmx_xcalloc(1, sizeof *j);
    char err[256];
    if (cfg->mx_resolver[0] &&
        pmx_cli_dns_parse_nameserver(cfg->mx_resolver, &j->ns, err, sizeof err) < 0) {
        pmx_log_error("http api domain verify: [mx] resolver %s: %s", cfg->mx_resolver, err);
        job_free(j);
        pmx_api_call_problem(c, 503, "no usable DNS resolver; the error is logged", NULL);
        return;
    }
    memcpy(j->domain, c->text, strnlen(c->text, PMX_DOMAIN_MAX));   /* normalised: fits */
    j->token = pmx_xstrdup(PQgetvalue(c->held, 0, PMX_D_TOKEN));
    j->nkeys = PQntuples(keys);
    j->keys = pmx_xcalloc((size_t)j->nkeys + 1, sizeof *j->keys);
    for (int i = 0; i < j->nkeys; i++) {
        snprintf(j->keys[i].selector, sizeof j->keys[i].selector, "%s",
                 PQgetvalue(keys, i, PMX_K_SELECTOR));
        snprintf(j->keys[i].algorithm, sizeof j->keys[i].algorithm, "%s",
                 PQgetvalue(keys, i, PMX_K_ALG));
        j->keys[i].pub = pmx_xstrdup(PQgetvalue(keys, i, PMX_K_PUB));
    }
    j->records = json_array();
    PQclear(c->held);
    c->held = NULL;
    if (pmx_api_call_work(c, j, job_run, job_done, job_free) < 0)
        pmx_api_call_problem(c, 503, "cannot look up DNS right now; try again", NULL);
}

static void have_domain(pmx_api_call_t *c, const PGresult *res)
{
    if (PQntuples(res) != 1 || strcmp(PQgetvalue(res, 0, PMX_D_WS), c->ws) != 0) {
        pmx_api_call_problem(c, 404, "no such domain in this workspace", NULL);
        return;
    }
    pmx_api_call_hold_query(c, res, pmx_sql_domain_get_keys, c->text, have_keys);
}

void pmx_api_verify_domain(pmx_api_call_t *c)
{
    char why[128], detail[200], domain[PMX_DOMAIN_MAX + 1];
    if (pmx_domain_normalize(c->param, domain, why, sizeof why) < 0) {
        snprintf(detail, sizeof detail, "domain: %s", why);
        pmx_api_call_problem(c, 400, detail, "domain");
        return;
    }
    snprintf(c->text, sizeof c->text, "%s", domain);
    const char *vals[1] = { c->text };
    pmx_api_call_query(c, pmx_sql_domain_get, 1, vals, have_domain);
}
