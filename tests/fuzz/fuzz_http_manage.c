/*
 * libFuzzer target for http/api_input.c: what API v1's read and manage
 * endpoints (docs/http.md) read from a request before any statement runs. The
 * first input byte picks the input, the rest is it:
 *   t  POST /v1/testers body          s  POST /v1/suppressions body
 *   k  POST /v1/api-keys body         h  POST /v1/webhooks body
 *   w  POST /v1/workspaces body       p  PATCH /v1/workspaces/{id} body
 *   d  POST /v1/domains body
 *   e  GET /v1/events query string (type=&since=&limit=&after=)
 *   S  GET /v1/stats query string (since=)
 *   P  a path segment, as DELETE /v1/testers/{address} and /v1/domains/{domain}
 *      read it, with the query string after '?' (DELETE /v1/suppressions' scope)
 * (any other byte picks one of these by its value). A query string is decoded
 * as libmicrohttpd decodes one ('+' and %XX; the first of a repeated name; a
 * name without '=' is absent).
 * Checks: a refusal is 400 or 422 with a non-empty detail, names no field or
 * a printable one (or a member of the body), and its problem document
 * (pmx_http_problem_json) is JSON whatever the detail quotes; an accepted
 * input gives what the statements expect: canonical addresses and domains
 * that the same check gives back unchanged, Postgres array literals, an
 * events page size of 1..1000, a since in milliseconds, a workspace change
 * set that builds its UPDATE; a refused PATCH names a member that is refused
 * alone too.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/api_input.h"
#include "http/server.h"
#include "inbound/suppress.h"
#include "lib/addr.h"
#include "lib/apikey.h"
#include "lib/utf8.h"
#include "routing/wsroute.h"
#include "sql/q_domain.h"
#include "sql/q_workspace.h"
#include "webhooks/hookadmin.h"

static const char kinds[] = "tskhwpdeSP";

/* The refusal's promises (api_input.h), and the problem document answering it
 * (http/server.h) is JSON with the same status and a non-empty detail. */
static void check_bad(const pmx_api_bad_t *bad, json_t *body)
{
    if (bad->status != 400 && bad->status != 422) abort();
    if (!bad->detail[0]) abort();
    if (bad->field) {
        bool printable = bad->field[0] != '\0';
        for (const char *p = bad->field; *p; p++)
            if (*p < 0x21 || *p > 0x7e) printable = false;
        if (!printable && !(body && json_object_get(body, bad->field))) abort();
    }
    pmx_buf_t b = PMX_BUF_INIT;
    pmx_http_problem_json(&b, bad->status, bad->detail, bad->field);
    json_error_t e;
    json_t *doc = json_loadb(b.data, b.len, 0, &e);
    if (!doc || json_integer_value(json_object_get(doc, "status")) != bad->status) abort();
    const char *d = json_string_value(json_object_get(doc, "detail"));
    if (!d || !d[0] || (json_object_get(doc, "field") != NULL) != (bad->field != NULL)) abort();
    json_decref(doc);
    pmx_buf_free(&b);
}

/* An address accepted is canonical: parsed again it is the same. */
static void check_addr(const char *addr)
{
    pmx_addr_t a;
    char err[256];
    if (!addr[0] || pmx_addr_parse(addr, strlen(addr), &a, err, sizeof err) < 0) abort();
    if (strcmp(a.addr, addr) != 0) abort();
    pmx_addr_free(&a);
}

static void check_domain(const char *d)
{
    char again[PMX_DOMAIN_MAX + 1], why[300];
    memset(again, 0, sizeof again);
    if (strlen(d) > PMX_DOMAIN_MAX || pmx_domain_normalize(d, again, why, sizeof why) < 0) abort();
    if (strncmp(again, d, strlen(d)) != 0) abort();
}

/* "{...}": a Postgres array literal. */
static void check_array(const pmx_buf_t *b)
{
    const char *s = pmx_buf_cstr(b);
    size_t n = strlen(s);
    if (n < 2 || s[0] != '{' || s[n - 1] != '}' || n != b->len) abort();
}

static bool digits(const char *s)
{
    if (!*s) return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9') return false;
    return true;
}

/* The value of name in a query string, decoded; NULL when absent. */
static char *query_arg(const char *q, size_t len, const char *name)
{
    size_t nl = strlen(name);
    const char *end = q + len;
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(stop - q));
        if (eq && (size_t)(eq - q) == nl && memcmp(q, name, nl) == 0) {
            char *v = malloc((size_t)(stop - eq));
            size_t o = 0;
            for (const char *p = eq + 1; p < stop; p++) {
                static const char hex[] = "0123456789abcdef0123456789ABCDEF";
                const char *h1, *h2;
                if (*p == '+') {
                    v[o++] = ' ';
                } else if (*p == '%' && stop - p > 2 && p[1] && p[2] &&
                           (h1 = strchr(hex, p[1])) && (h2 = strchr(hex, p[2]))) {
                    v[o++] = (char)(((h1 - hex) % 16) * 16 + (h2 - hex) % 16);
                    p += 2;
                } else {
                    v[o++] = *p;
                }
            }
            v[o] = '\0';   /* a decoded NUL ends the value, as in libmicrohttpd */
            return v;
        }
        q = stop + 1;
    }
    return NULL;
}

static void body_input(char kind, const char *in, size_t len)
{
    pmx_api_bad_t bad;
    memset(&bad, 0, sizeof bad);
    json_t *body = pmx_api_body_object(in, len, &bad);
    if (!body) {
        if (bad.status != 400) abort();
        check_bad(&bad, NULL);
        return;
    }
    if (!json_is_object(body)) abort();
    char addr[600];
    int r = 0;
    switch (kind) {
    case 't':
        if ((r = pmx_api_tester_body(body, addr, sizeof addr, &bad)) == 0) check_addr(addr);
        break;
    case 's': {
        pmx_api_supp_t s;
        if ((r = pmx_api_suppression_body(body, addr, sizeof addr, &s, &bad)) == 0) {
            check_addr(addr);
            if (!pmx_api_supp_scope_valid(s.scope)) abort();
            if (pmx_supp_reason_parse(s.reason) == PMX_SUPP_NONE) abort();
            if (s.detail && (strlen(s.detail) > 1000 || strpbrk(s.detail, "\r\n"))) abort();
            /* The answer echoes the three. */
            if (!json_is_string(json_object_get(body, "scope")) ||
                !json_is_string(json_object_get(body, "reason")) ||
                !json_object_get(body, "detail"))
                abort();
        }
        break;
    }
    case 'k': {
        const char *name;
        pmx_buf_t scopes = PMX_BUF_INIT;
        char err[200];
        if ((r = pmx_api_key_body(body, &name, &scopes, &bad)) == 0) {
            if (pmx_apikey_name_check(name, err, sizeof err) < 0) abort();
            check_array(&scopes);
        }
        pmx_buf_free(&scopes);
        break;
    }
    case 'h': {
        pmx_buf_t url = PMX_BUF_INIT, events = PMX_BUF_INIT, again = PMX_BUF_INIT;
        char err[600];
        if ((r = pmx_api_webhook_body(body, &url, &events, &bad)) == 0) {
            check_array(&events);
            /* The stored URL is accepted again as it is. */
            if (pmx_hook_check_url("url", pmx_buf_cstr(&url), &again, err, sizeof err) < 0 ||
                strcmp(pmx_buf_cstr(&again), pmx_buf_cstr(&url)) != 0)
                abort();
        }
        pmx_buf_free(&url);
        pmx_buf_free(&events);
        pmx_buf_free(&again);
        break;
    }
    case 'w': {
        pmx_api_ws_new_t w;
        char err[400];
        if ((r = pmx_api_ws_create_body(body, &w, &bad)) == 0 &&
            pmx_ws_check_name(w.name, err, sizeof err) < 0)
            abort();
        break;
    }
    case 'p': {
        pmx_ws_changes_t ch;
        pmx_api_ws_routing_t rt;
        if ((r = pmx_api_ws_patch_body(body, &ch, &rt, &bad)) == 0) {
            bool routing = rt.pool || rt.route || rt.password;
            if (pmx_ws_changes_empty(&ch) && !routing) abort();
            if (rt.route && json_is_string(rt.route)) {
                /* What http/api_workspaces.c does next with it, short of sealing. */
                pmx_wsroute_t parsed;
                char err[400];
                if (pmx_wsroute_parse(json_string_value(rt.route), &parsed, err, sizeof err) == 0)
                    (void)pmx_wsroute_password_check(&parsed, rt.password != NULL, err, sizeof err);
            }
            if (pmx_ws_changes_empty(&ch)) {
                pmx_ws_changes_free(&ch);
                break;
            }
            const char *params[PMX_WS_MAX_PARAMS + 8];
            pmx_buf_t sql = PMX_BUF_INIT;
            int np = pmx_ws_update_sql(&ch, "key_fuzz", "ws_aaaaaaaaaaaaaaaa", &sql, params);
            if (np < 3 || np > PMX_WS_MAX_PARAMS || !strstr(pmx_buf_cstr(&sql), "UPDATE")) abort();
            pmx_buf_free(&sql);
            pmx_ws_changes_free(&ch);
        } else if (bad.field) {
            /* The member named is refused alone too: it is the bad one. */
            json_t *one = json_object();
            json_object_set(one, bad.field, json_object_get(body, bad.field));
            pmx_api_bad_t b2;
            if (pmx_api_ws_patch_body(one, &ch, &rt, &b2) == 0) abort();
            json_decref(one);
        }
        break;
    }
    case 'd': {
        pmx_api_domain_new_t d;
        if ((r = pmx_api_domain_body(body, &d, &bad)) == 0) {
            check_domain(d.domain);
            if (d.rp[0]) check_domain(d.rp);
            if (!d.want_rsa && !d.want_ed) abort();
        }
        break;
    }
    }
    if (r < 0) {
        if (bad.status != 422) abort();
        check_bad(&bad, body);
    }
    json_decref(body);
}

static void query_input(char kind, const char *in, size_t len)
{
    pmx_api_bad_t bad;
    memset(&bad, 0, sizeof bad);
    int r;
    if (kind == 'e') {
        char *type = query_arg(in, len, "type"), *since = query_arg(in, len, "since");
        char *limit = query_arg(in, len, "limit"), *after = query_arg(in, len, "after");
        pmx_api_events_q_t q;
        r = pmx_api_events_query(type, since, limit, after, &q, &bad);
        if (r == 0) {
            if (q.limit < 1 || q.limit > 1000 || q.after < 0) abort();
            if (q.type != type || (type && !strchr(type, '.'))) abort();
            if (q.since[0] && !digits(q.since)) abort();
        }
        free(type);
        free(since);
        free(limit);
        free(after);
    } else {
        char *since = query_arg(in, len, "since"), out[24];
        r = pmx_api_since(since, "24h", out, &bad);
        if (r == 0 && (since && strcmp(since, "all") == 0 ? out[0] != '\0' : !digits(out)))
            abort();
        free(since);
    }
    if (r < 0) {
        if (bad.status != 400) abort();
        check_bad(&bad, NULL);
    }
}

/* DELETE /v1/testers/{address}, /v1/domains/{domain}, /v1/suppressions/{address}?scope= */
static void path_input(const char *in, size_t len)
{
    const char *qm = memchr(in, '?', len);
    size_t plen = qm ? (size_t)(qm - in) : len;
    char param[512];   /* as api_call.c copies the segment */
    if (plen == 0 || plen >= sizeof param || memchr(in, '/', plen) || memchr(in, '\0', plen))
        return;
    memcpy(param, in, plen);
    param[plen] = '\0';
    pmx_api_bad_t bad;
    char addr[600];
    if (pmx_api_address(param, "address", addr, sizeof addr, &bad) == 0) check_addr(addr);
    else check_bad(&bad, NULL);
    char domain[PMX_DOMAIN_MAX + 1], why[128] = "";
    if (pmx_domain_normalize(param, domain, why, sizeof why) == 0) check_domain(domain);
    else if (!why[0] || !pmx_utf8_valid(why, strlen(why))) abort();
    if (qm) {
        char *scope = query_arg(qm + 1, len - plen - 1, "scope");
        if (scope && pmx_api_supp_scope_valid(scope) && strcmp(scope, "*") != 0)
            for (const char *p = scope; *p; p++)
                if (*p <= 0x20 || *p >= 0x7f || *p == ',') abort();
        free(scope);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    char kind = (char)data[0];
    if (!strchr(kinds, kind) || kind == '\0') kind = kinds[data[0] % (sizeof kinds - 1)];
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    switch (kind) {
    case 'e':
    case 'S':
        query_input(kind, in, len);
        break;
    case 'P':
        path_input(in, len);
        break;
    default:
        body_input(kind, in, len);
        break;
    }
    return 0;
}
