/*
 * The recipient plan of one job; see plan.h.
 */
#include "workers/plan.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/mem.h"

bool pmx_plan_status_final(const char *status)
{
    return strcmp(status, "sent") == 0 || strcmp(status, "bounced") == 0 ||
           strcmp(status, "rejected") == 0 || strcmp(status, "suppressed") == 0;
}

/* The known row of addr (known's recipients are sorted by address), or NULL. */
static const pmx_outcome_known_rcpt_t *known_find(const pmx_outcome_lookup_t *known,
                                                  const char *addr)
{
    if (!known) return NULL;
    size_t lo = 0, hi = known->nrcpts;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(known->rcpts[mid].address, addr);
        if (c == 0) return &known->rcpts[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Testers are stored lowercase; an address matches whatever its case. */
static bool is_tester(const pmx_plan_policy_t *pol, const char *addr)
{
    if (!pol->ntesters) return false;
    size_t n = strlen(addr);
    char *low = pmx_xmalloc(n + 1);
    for (size_t i = 0; i <= n; i++) {
        char c = addr[i];
        low[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    const char *key = low;
    bool found = bsearch(&key, pol->testers, pol->ntesters, sizeof *pol->testers, cmp_str) != NULL;
    free(low);
    return found;
}

/* Whether addr is already among r[0..n). Addresses come with the domain
 * lowercased (lib/addr), so one address written twice compares equal; local
 * parts are compared as written, as a relay would. */
static bool seen(const pmx_plan_rcpt_t *r, size_t n, const char *addr)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(r[i].addr, addr) == 0) return true;
    return false;
}

void pmx_plan_make(const pmx_job_t *job, const pmx_plan_policy_t *pol,
                   const pmx_outcome_lookup_t *known, pmx_plan_t *out)
{
    memset(out, 0, sizeof *out);
    const pmx_addr_list_t *lists[3] = { &job->to, &job->cc, &job->bcc };
    size_t total = job->to.n + job->cc.n + job->bcc.n;
    out->r = pmx_xcalloc(total ? total : 1, sizeof *out->r);
    out->d[0].rcpts = pmx_xcalloc(total ? total : 1, sizeof *out->d[0].rcpts);
    out->original_to = pmx_xcalloc(total ? total : 1, sizeof *out->original_to);
    bool redirect_any = false;
    /* The catch-all's verdict, asked once: every redirect goes to it. */
    const char *catch_all_why = NULL;
    bool catch_all_asked = false;

    for (size_t l = 0; l < 3; l++) {
        for (size_t i = 0; i < lists[l]->n; i++) {
            const char *addr = lists[l]->v[i].addr;
            if (seen(out->r, out->nr, addr)) continue;
            pmx_plan_rcpt_t *r = &out->r[out->nr++];
            r->addr = addr;
            r->delivery = -1;
            const pmx_outcome_known_rcpt_t *k = known_find(known, addr);
            if (k) r->attempts = k->attempts;
            if (k && pmx_plan_status_final(k->status)) {
                r->action = PMX_PLAN_SKIP;
            } else if (!pol->test_mode || is_tester(pol, addr)) {
                if (pol->suppressed && (r->suppressed = pol->suppressed(addr, pol->suppressed_arg))) {
                    r->action = PMX_PLAN_SUPPRESS;
                    continue;
                }
                r->action = PMX_PLAN_RELAY;
                r->delivery = 0;
                r->slot = out->d[0].n;
                out->d[0].rcpts[out->d[0].n++] = addr;
            } else if (pol->catch_all && *pol->catch_all) {
                if (!catch_all_asked && pol->suppressed)
                    catch_all_why = pol->suppressed(pol->catch_all, pol->suppressed_arg);
                catch_all_asked = true;
                if (catch_all_why) {
                    r->action = PMX_PLAN_SUPPRESS;
                    r->suppressed = catch_all_why;
                    continue;
                }
                r->action = PMX_PLAN_REDIRECT;
                r->delivery = 1;
                r->slot = 0;
                out->original_to[out->noriginal_to++] = addr;
                redirect_any = true;
            } else {
                r->action = PMX_PLAN_SUPPRESS;
            }
        }
    }
    if (redirect_any) {
        out->d[1].rcpts = pmx_xcalloc(1, sizeof *out->d[1].rcpts);
        out->d[1].rcpts[0] = pol->catch_all;
        out->d[1].n = 1;
    }
}

void pmx_plan_free(pmx_plan_t *plan)
{
    free(plan->r);
    free(plan->d[0].rcpts);
    free(plan->d[1].rcpts);
    free(plan->original_to);
    memset(plan, 0, sizeof *plan);
}
