/*
 * API v1's POST /v1/domains (docs/http.md): adds a sending domain with new
 * DKIM keys, as `postmux domain add` does (postmux(1)), and answers with the
 * domain and the DNS records to publish. Body {"domain", "algorithm"?:
 * "rsa"|"ed25519"|"both" (default rsa), "return_path"?}; the selector is the
 * CLI's default, pmx (pmx-ed25519 for the Ed25519 key of "both").
 *
 * Key generation and sealing are the CLI's (dkim/newkey.h) and run off the
 * worker's loop (pmx_api_call_work): an RSA key takes tens of milliseconds.
 * The domain, its keys and the audit_log row (domain.add) are one statement
 * (sql/q_domain_add.h). A domain that exists — in this workspace or another —
 * is 409: adding keys to an existing domain (rotation) is the CLI's
 * (`domain add --selector`).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dkim/newkey.h"
#include "http/api_call.h"
#include "http/api_input.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/mem.h"
#include "sql/q_domain.h"
#include "sql/q_domain_add.h"

#define SELECTOR "pmx"

typedef struct {
    char              domain[PMX_DOMAIN_MAX + 1];
    char              rp[PMX_DOMAIN_MAX + 1];   /* "" = none given */
    bool              want_rsa, want_ed;
    uint8_t           master[PMX_DKIM_MASTER_KEY_LEN];
    pmx_dkim_newkey_t keys[2];
    int               nkeys;
    pmx_buf_t         token;
    char              err[300];                 /* set by the work when it failed */
} add_job_t;

static void job_free(void *arg)
{
    add_job_t *j = arg;
    for (int i = 0; i < 2; i++) pmx_dkim_newkey_free(&j->keys[i]);
    pmx_buf_free(&j->token);
    pmx_wipe(j->master, sizeof j->master);
    free(j);
}

/* On the thread pool: the keys, sealed, and the verification token. */
static void job_run(void *arg)
{
    add_job_t *j = arg;
    for (int i = 0; i < j->nkeys; i++) {
        pmx_dkim_alg_t alg = j->want_rsa && i == 0 ? PMX_DKIM_ALG_RSA : PMX_DKIM_ALG_ED25519;
        if (pmx_dkim_newkey_generate(&j->keys[i], alg, PMX_DKIM_RSA_MIN_BITS, j->err,
                                     sizeof j->err) < 0 ||
            pmx_dkim_newkey_seal(&j->keys[i], j->master, j->domain, j->err, sizeof j->err) < 0)
            return;
    }
    if (pmx_dkim_verify_token_make(&j->token) < 0)
        snprintf(j->err, sizeof j->err, "no randomness for a verification token");
}

static void got_keys(pmx_api_call_t *c, const PGresult *keys)
{
    json_t *o = pmx_domain_json(c->held, 0, keys);
    json_object_set_new(o, "dns_records",
                        pmx_domain_records_json(c->held, 0, keys,
                                                pmx__http_api_config(c->api)->inbound_hostname));
    pmx_api_call_json(c, 201, o);
}

static void got_domain(pmx_api_call_t *c, const PGresult *res)
{
    if (PQntuples(res) != 1) {   /* removed between the two statements */
        pmx_api_call_problem(c, 404, "the domain was removed meanwhile", NULL);
        return;
    }
    pmx_api_call_hold_query(c, res, pmx_sql_domain_get_keys, c->text, got_keys);
}

static void added(pmx_api_call_t *c, const PGresult *res)
{
    (void)res;
    const char *vals[1] = { c->text };
    pmx_api_call_query(c, pmx_sql_domain_get, 1, vals, got_domain);
}

/* Back on the loop with the keys: write everything in one statement. */
static void job_done(pmx_api_call_t *c, void *arg)
{
    add_job_t *j = arg;
    if (j->err[0]) {
        pmx_log_error("http api domain add failed key=%s ws=%s domain=%s error=\"%s\"",
                      c->key_id, c->ws, j->domain, j->err);
        job_free(j);
        pmx_api_call_problem(c, 500, "the DKIM key could not be made; the error is logged", NULL);
        return;
    }
    const char *vals[13] = { pmx_api_call_actor(c), c->ws, j->domain, pmx_buf_cstr(&j->token),
                             j->rp[0] ? j->rp : NULL };
    for (int i = 0; i < j->nkeys; i++) {
        vals[5 + 4 * i] = j->keys[i].selector;
        vals[6 + 4 * i] = pmx_dkim_alg_name(j->keys[i].kp.alg);
        vals[7 + 4 * i] = pmx_buf_cstr(&j->keys[i].kp.pub);
        vals[8 + 4 * i] = pmx_buf_cstr(&j->keys[i].blob_hex);
    }
    /* The values are copied: the private keys are wiped now. */
    pmx_api_call_query(c, pmx_sql_domain_add, 13, vals, added);
    job_free(j);
}

/* The job the body asks for; NULL after answering 422 for a bad member. */
static add_job_t *job_from_body(pmx_api_call_t *c)
{
    pmx_api_domain_new_t d;
    pmx_api_bad_t bad;
    if (pmx_api_domain_body(c->body, &d, &bad) < 0) {
        pmx_api_call_refused(c, &bad);
        return NULL;
    }
    add_job_t *j = pmx_xcalloc(1, sizeof *j);
    memcpy(j->domain, d.domain, sizeof j->domain);
    memcpy(j->rp, d.rp, sizeof j->rp);
    j->want_rsa = d.want_rsa;
    j->want_ed = d.want_ed;
    if (j->want_rsa) snprintf(j->keys[j->nkeys++].selector, sizeof j->keys[0].selector, SELECTOR);
    if (j->want_ed)
        snprintf(j->keys[j->nkeys++].selector, sizeof j->keys[0].selector, "%s%s", SELECTOR,
                 j->want_rsa ? PMX_DKIM_ED25519_SUFFIX : "");
    memcpy(j->master, pmx__http_api_master(c->api), sizeof j->master);
    return j;
}

/* The domain is free: make the keys off the loop. */
static void checked(pmx_api_call_t *c, const PGresult *res)
{
    if (PQntuples(res) > 0) {
        pmx_api_call_problem(c, 409, strcmp(PQgetvalue(res, 0, 0), c->ws) == 0
                                         ? "the domain exists in this workspace"
                                         : "the domain belongs to another workspace", "domain");
        return;
    }
    add_job_t *j = job_from_body(c);   /* checked before: cannot fail now */
    if (!j) return;
    if (pmx_api_call_work(c, j, job_run, job_done, job_free) < 0)
        pmx_api_call_problem(c, 503, "cannot make keys right now; try again", NULL);
}

void pmx_api_add_domain(pmx_api_call_t *c)
{
    add_job_t *j = job_from_body(c);
    if (!j) return;
    snprintf(c->text, sizeof c->text, "%s", j->domain);
    const char *vals[1] = { c->text };
    job_free(j);
    pmx_api_call_query(c, "SELECT workspace_id FROM domains WHERE domain = $1", 1, vals, checked);
}
