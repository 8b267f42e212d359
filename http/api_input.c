/*
 * API v1's request input before any statement: see api_input.h. The checks
 * are the CLI's (lib/addr.h, lib/job.h, inbound/suppress.h, lib/apikey.h,
 * webhooks/hookadmin.h, sql/q_workspace.h, sql/q_domain.h); this file turns
 * JSON members and query arguments into their text forms and names the field
 * a refusal is about.
 */
#include "http/api_input.h"

#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "http/email.h"
#include "inbound/suppress.h"
#include "lib/addr.h"
#include "lib/apikey.h"
#include "lib/job.h"
#include "lib/verp.h"
#include "webhooks/hookadmin.h"

#define EVENTS_LIMIT_DEFAULT 100
#define EVENTS_LIMIT_MAX     1000
#define SINCE_MAX_MS         (36500ULL * 24 * 3600 * 1000)   /* 100 years */
#define DETAIL_MAX           1000    /* as `postmux suppression add --detail` */

__attribute__((format(printf, 4, 5)))
static int refuse(pmx_api_bad_t *bad, int status, const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(bad->detail, sizeof bad->detail, fmt, ap);
    va_end(ap);
    bad->status = status;
    bad->field = field;
    return -1;
}

json_t *pmx_api_body_object(const char *body, size_t len, pmx_api_bad_t *bad)
{
    char err[300];
    json_t *doc = pmx_http_json_parse(body, len, err, sizeof err);
    if (!doc) {
        refuse(bad, 400, NULL, "%s", err);
        return NULL;
    }
    if (!json_is_object(doc)) {
        json_decref(doc);
        refuse(bad, 400, NULL, "the body must be a JSON object");
        return NULL;
    }
    return doc;
}

int pmx_api_body_str(json_t *body, const char *name, bool required, const char **out,
                     pmx_api_bad_t *bad)
{
    json_t *v = json_object_get(body, name);
    *out = NULL;
    if (!v && !required) return 0;
    if (!json_is_string(v)) return refuse(bad, 422, name, "%s must be a string", name);
    *out = json_string_value(v);
    return 0;
}

int pmx_api_address(const char *s, const char *field, char *out, size_t n, pmx_api_bad_t *bad)
{
    pmx_addr_t a;
    char err[256];
    if (pmx_addr_parse(s, strlen(s), &a, err, sizeof err) < 0)
        return refuse(bad, 422, field, "%s: %s", field, err);
    snprintf(out, n, "%s", a.addr);
    pmx_addr_free(&a);
    return 0;
}

/* ---- query arguments of the read endpoints ---- */

int pmx_api_since(const char *s, const char *dflt, char out[24], pmx_api_bad_t *bad)
{
    if (!s) s = dflt;
    out[0] = '\0';
    if (!s || strcmp(s, "all") == 0) return 0;
    uint64_t ms;
    if (pmx_config_parse_duration(s, &ms) < 0 || ms == 0 || ms > SINCE_MAX_MS)
        return refuse(bad, 400, "since", "since must be a duration such as 30m, 24h or 7d, or all");
    snprintf(out, 24, "%" PRIu64, ms);
    return 0;
}

/* A whole decimal number in [lo, hi]. */
static bool parse_num(const char *s, long long lo, long long hi, long long *out)
{
    if (!s || !*s || strlen(s) > 19) return false;
    long long v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') return false;
        int d = *p - '0';
        if (v > (LLONG_MAX - d) / 10) return false;   /* 19 digits may not fit */
        v = v * 10 + d;
    }
    if (v < lo || v > hi) return false;
    *out = v;
    return true;
}

int pmx_api_events_query(const char *type, const char *since, const char *limit,
                         const char *after, pmx_api_events_q_t *q, pmx_api_bad_t *bad)
{
    q->type = type;
    q->limit = EVENTS_LIMIT_DEFAULT;
    q->after = 0;
    if (type) {
        size_t n = strlen(type), dot = strcspn(type, ".");
        bool ok = n > 0 && n <= 64 && dot > 0 && dot < n - 1;
        for (size_t i = 0; ok && i < n; i++)
            ok = (type[i] >= 'a' && type[i] <= 'z') || type[i] == '_' || (type[i] == '.' && i == dot);
        if (!ok) return refuse(bad, 400, "type", "type must be an event type such as message.sent");
    }
    if (pmx_api_since(since, NULL, q->since, bad) < 0) return -1;
    if (limit && !parse_num(limit, 1, EVENTS_LIMIT_MAX, &q->limit))
        return refuse(bad, 400, "limit", "limit must be a whole number from 1 to 1000");
    if (after && !parse_num(strncmp(after, "evt_", 4) == 0 ? after + 4 : after, 0, INT64_MAX,
                            &q->after))
        return refuse(bad, 400, "after",
                      "after must be the next cursor of a previous page (evt_...)");
    return 0;
}

/* A JSON array of names joined with ',' in out, for the CLI's parsers of a
 * comma list (scopes, event types): false when an item is not a non-empty
 * string without ','. */
static bool join_names(json_t *a, pmx_buf_t *out)
{
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v) {
        const char *s = json_string_value(v);
        if (!s || !*s || strchr(s, ',')) return false;
        if (i) pmx_buf_append_char(out, ',');
        pmx_buf_append_str(out, s);
    }
    return true;
}

/* ---- testers, suppressions, API keys ---- */

int pmx_api_tester_body(json_t *body, char *addr, size_t n, pmx_api_bad_t *bad)
{
    const char *s;
    if (pmx_api_body_str(body, "address", true, &s, bad) < 0) return -1;
    return pmx_api_address(s, "address", addr, n, bad);
}

bool pmx_api_supp_scope_valid(const char *s)
{
    return strcmp(s, "*") == 0 || pmx_job_category_valid(s, strlen(s));
}

int pmx_api_suppression_body(json_t *body, char *addr, size_t n, pmx_api_supp_t *s,
                             pmx_api_bad_t *bad)
{
    const char *a;
    if (pmx_api_body_str(body, "address", true, &a, bad) < 0 ||
        pmx_api_body_str(body, "scope", false, &s->scope, bad) < 0 ||
        pmx_api_body_str(body, "reason", false, &s->reason, bad) < 0 ||
        pmx_api_body_str(body, "detail", false, &s->detail, bad) < 0)
        return -1;
    /* The defaults of `postmux suppression add`, echoed in the answer. */
    if (!s->scope) json_object_set_new(body, "scope", json_string(s->scope = "*"));
    if (!s->reason) json_object_set_new(body, "reason", json_string(s->reason = "manual"));
    if (!s->detail) json_object_set_new(body, "detail", json_null());
    if (!pmx_api_supp_scope_valid(s->scope))
        return refuse(bad, 422, "scope", "scope must be * or a category (1 to 64 of a-z 0-9 _ . -)");
    if (pmx_supp_reason_parse(s->reason) == PMX_SUPP_NONE)
        return refuse(bad, 422, "reason", "reason must be hard_bounce, soft_bounce, complaint, "
                      "unsubscribe or manual");
    if (s->detail && (strlen(s->detail) > DETAIL_MAX || strpbrk(s->detail, "\r\n")))
        return refuse(bad, 422, "detail", "detail must be one line of at most 1000 bytes");
    return pmx_api_address(a, "address", addr, n, bad);
}

int pmx_api_key_body(json_t *body, const char **name, pmx_buf_t *scopes, pmx_api_bad_t *bad)
{
    if (pmx_api_body_str(body, "name", true, name, bad) < 0) return -1;
    char err[200];
    if (pmx_apikey_name_check(*name, err, sizeof err) < 0)
        return refuse(bad, 422, "name", "name %s", err);
    /* scopes: an array of scope names, joined for the one parser. */
    json_t *sc = json_object_get(body, "scopes");
    pmx_buf_t joined = PMX_BUF_INIT;
    if (!sc)
        pmx_buf_append_str(&joined, "send");
    else if (!json_is_array(sc) || json_array_size(sc) == 0 || !join_names(sc, &joined)) {
        pmx_buf_free(&joined);
        return refuse(bad, 422, "scopes", "scopes must be a non-empty array of send, read, manage");
    }
    int r = pmx_apikey_scopes_parse("scopes", pmx_buf_cstr(&joined), scopes, err, sizeof err);
    pmx_buf_free(&joined);
    if (r < 0) return refuse(bad, 422, "scopes", "%s", err);
    return 0;
}

/* ---- webhooks ---- */

int pmx_api_webhook_body(json_t *body, pmx_buf_t *url, pmx_buf_t *events, pmx_api_bad_t *bad)
{
    const char *s;
    if (pmx_api_body_str(body, "url", true, &s, bad) < 0) return -1;
    char err[600];
    if (pmx_hook_check_url("url", s, url, err, sizeof err) < 0)
        return refuse(bad, 422, "url", "%s", err);
    /* events: an array of event types (none or empty = every event). */
    json_t *ev = json_object_get(body, "events");
    pmx_buf_t joined = PMX_BUF_INIT;
    bool ok = !ev || (json_is_array(ev) && join_names(ev, &joined));
    if (ok && joined.len &&
        pmx_hook_parse_events("events", pmx_buf_cstr(&joined), events, err, sizeof err) < 0) {
        ok = false;
    } else if (!ok) {
        snprintf(err, sizeof err, "events must be an array of event types");
    }
    pmx_buf_free(&joined);
    if (!ok) return refuse(bad, 422, "events", "%s", err);
    if (!events->len) pmx_buf_append_str(events, "{}");
    return 0;
}

/* ---- workspaces ---- */

int pmx_api_ws_create_body(json_t *body, pmx_api_ws_new_t *w, pmx_api_bad_t *bad)
{
    if (pmx_api_body_str(body, "name", true, &w->name, bad) < 0 ||
        pmx_api_body_str(body, "industry", false, &w->industry, bad) < 0 ||
        pmx_api_body_str(body, "website", false, &w->website, bad) < 0)
        return -1;
    const char *k;
    json_t *v;
    json_object_foreach(body, k, v) {
        if (strcmp(k, "name") && strcmp(k, "industry") && strcmp(k, "website"))
            return refuse(bad, 422, k, "unknown member (known: name, industry, website)");
    }
    char err[400];
    if (pmx_ws_check_name(w->name, err, sizeof err) < 0) return refuse(bad, 422, "name", "%s", err);
    if (w->industry && pmx_ws_check_text("industry", w->industry, PMX_WS_INDUSTRY_MAX_CHARS, err,
                                         sizeof err) < 0)
        return refuse(bad, 422, "industry", "%s", err);
    if (w->website && pmx_ws_check_website("website", w->website, err, sizeof err) < 0)
        return refuse(bad, 422, "website", "%s", err);
    return 0;
}

/* One member of the PATCH body, turned into the CLI's text form and checked. */
static int patch_member(pmx_ws_changes_t *ch, pmx_api_ws_routing_t *rt, const char *k, json_t *v,
                        char *tmp, size_t tmplen, char *err, size_t n)
{
    if (strcmp(k, "name") == 0) {
        if (!json_is_string(v)) goto type_string;
        return pmx_ws_set_name(ch, json_string_value(v), err, n);
    }
    if (strcmp(k, "rate") == 0) {
        if (json_is_null(v)) return pmx_ws_set_rate(ch, k, "unlimited", err, n);
        if (!json_is_string(v)) goto type_string;
        return pmx_ws_set_rate(ch, k, json_string_value(v), err, n);
    }
    if (strcmp(k, "burst") == 0 || strcmp(k, "daily_quota") == 0) {
        bool quota = k[0] == 'd';
        if (quota && json_is_null(v)) return pmx_ws_set_quota(ch, k, "none", err, n);
        if (!json_is_integer(v)) {
            snprintf(err, n, "%s must be a whole number%s", k, quota ? " or null" : "");
            return -1;
        }
        snprintf(tmp, tmplen, "%lld", (long long)json_integer_value(v));
        return quota ? pmx_ws_set_quota(ch, k, tmp, err, n) : pmx_ws_set_burst(ch, k, tmp, err, n);
    }
    if (strcmp(k, "test_mode") == 0 || strcmp(k, "suspended") == 0) {
        if (!json_is_boolean(v)) {
            snprintf(err, n, "%s must be true or false", k);
            return -1;
        }
        if (k[0] == 's') {
            pmx_ws_set_suspended(ch, json_is_true(v));
            return 0;
        }
        return pmx_ws_set_test_mode(ch, k, json_is_true(v) ? "on" : "off", err, n);
    }
    if (strcmp(k, "catch_all") == 0) {
        if (json_is_null(v)) return pmx_ws_set_catch_all(ch, k, "none", err, n);
        if (!json_is_string(v) || strcmp(json_string_value(v), "none") == 0) goto type_string;
        return pmx_ws_set_catch_all(ch, k, json_string_value(v), err, n);
    }
    if (strcmp(k, "max_bounce_rate") == 0 || strcmp(k, "max_complaint_rate") == 0) {
        bool bounce = k[4] == 'b';
        if (json_is_null(v)) return pmx_ws_set_limit(ch, bounce, k, "default", err, n);
        if (json_is_number(v)) {
            double x = json_number_value(v);
            if (!isfinite(x) || x < 0 || x > 100) {
                snprintf(err, n, "%s must be a percentage from 0 to 100", k);
                return -1;
            }
            snprintf(tmp, tmplen, "%.6g%%", x);
            return pmx_ws_set_limit(ch, bounce, k, tmp, err, n);
        }
        if (!json_is_string(v)) goto type_string;
        return pmx_ws_set_limit(ch, bounce, k, json_string_value(v), err, n);
    }
    if (strcmp(k, "pool") == 0 || strcmp(k, "route") == 0) {
        if (!json_is_null(v) && !json_is_string(v)) goto type_string;
        *(k[0] == 'p' ? &rt->pool : &rt->route) = v;
        return 0;
    }
    if (strcmp(k, "route_password") == 0) {
        if (!json_is_string(v)) {
            snprintf(err, n, "route_password must be a string");
            return -1;
        }
        rt->password = v;
        return 0;
    }
    snprintf(err, n, "unknown member (known: name, rate, burst, daily_quota, test_mode, "
             "catch_all, suspended, max_bounce_rate, max_complaint_rate, pool, route, "
             "route_password)");
    return -1;
type_string:
    snprintf(err, n, "%s must be a string%s", k,
             strcmp(k, "name") == 0 ? "" : " or null");
    return -1;
}

bool pmx_api_ws_member_org_only(const char *member)
{
    static const char *const org_only[] = {
        "rate", "burst", "daily_quota", "suspended", "max_bounce_rate", "max_complaint_rate",
        "pool", "route", "route_password",
    };
    for (size_t i = 0; i < sizeof org_only / sizeof org_only[0]; i++)
        if (strcmp(member, org_only[i]) == 0) return true;
    return false;
}

int pmx_api_ws_patch_body(json_t *body, pmx_ws_changes_t *ch, pmx_api_ws_routing_t *rt,
                          pmx_api_bad_t *bad)
{
    memset(ch, 0, sizeof *ch);
    memset(rt, 0, sizeof *rt);
    /* A number as text; the pmx_ws_set_* checks copy what they keep. */
    char tmp[32], err[400];
    const char *k;
    json_t *v;
    json_object_foreach(body, k, v) {
        if (patch_member(ch, rt, k, v, tmp, sizeof tmp, err, sizeof err) < 0) {
            pmx_ws_changes_free(ch);
            return refuse(bad, 422, k, "%s", err);
        }
    }
    if (pmx_ws_changes_empty(ch) && !rt->pool && !rt->route && !rt->password) {
        pmx_ws_changes_free(ch);
        return refuse(bad, 422, NULL, "nothing to change");
    }
    return 0;
}

/* ---- domains ---- */

int pmx_api_domain_body(json_t *body, pmx_api_domain_new_t *d, pmx_api_bad_t *bad)
{
    const char *domain, *alg, *rp;
    if (pmx_api_body_str(body, "domain", true, &domain, bad) < 0 ||
        pmx_api_body_str(body, "algorithm", false, &alg, bad) < 0 ||
        pmx_api_body_str(body, "return_path", false, &rp, bad) < 0)
        return -1;
    memset(d, 0, sizeof *d);
    char why[300];
    d->want_rsa = !alg || strcmp(alg, "rsa") == 0 || strcmp(alg, "both") == 0;
    d->want_ed = alg && (strcmp(alg, "ed25519") == 0 || strcmp(alg, "both") == 0);
    if (pmx_domain_normalize(domain, d->domain, why, sizeof why) < 0)
        return refuse(bad, 422, "domain", "domain: %s", why);
    if (!d->want_rsa && !d->want_ed)
        return refuse(bad, 422, "algorithm", "algorithm must be rsa, ed25519 or both");
    if (rp && (pmx_domain_normalize(rp, d->rp, why, sizeof why) < 0 ||
               pmx_verp_return_path_check(d->domain, d->rp, why, sizeof why) < 0))
        return refuse(bad, 422, "return_path", "return_path: %s", why);
    return 0;
}
