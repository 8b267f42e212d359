/* Return-path domains, VERP senders and List-Unsubscribe values; see verp.h. */
#include "lib/verp.h"

#include <stdio.h>
#include <string.h>

void pmx_verp_return_domain(pmx_buf_t *out, const char *domain, const char *return_path)
{
    if (return_path && *return_path) {
        pmx_buf_append_str(out, return_path);
        return;
    }
    pmx_buf_append_str(out, PMX_VERP_DEFAULT_LABEL ".");
    pmx_buf_append_str(out, domain);
}

/* Whether s[0..n) is one DNS label of the LDH rule, lower-case. */
static bool label_ok(const char *s, size_t n)
{
    if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-') return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
    }
    return true;
}

int pmx_verp_return_path_check(const char *domain, const char *name, char *err, size_t errlen)
{
    size_t n = strlen(name), dn = strlen(domain);
    if (n == 0 || n > PMX_VERP_DOMAIN_MAX) {
        snprintf(err, errlen, "--return-path: expected a domain name of 1 to %d characters",
                 PMX_VERP_DOMAIN_MAX);
        return -1;
    }
    for (const char *p = name; p < name + n;) {
        const char *dot = memchr(p, '.', (size_t)(name + n - p));
        size_t len = dot ? (size_t)(dot - p) : (size_t)(name + n - p);
        if (!label_ok(p, len)) {
            snprintf(err, errlen, "--return-path: '%.*s' is not a lower-case DNS name", (int)n, name);
            return -1;
        }
        p += len + (dot ? 1 : 0);
        if (dot && p == name + n) {
            snprintf(err, errlen, "--return-path: '%.*s' ends with a dot", (int)n, name);
            return -1;
        }
    }
    if (n <= dn + 1 || name[n - dn - 1] != '.' || memcmp(name + n - dn, domain, dn) != 0) {
        snprintf(err, errlen, "--return-path: '%.*s' is not a subdomain of %s (e.g. %s.%s)",
                 (int)n, name, domain, PMX_VERP_DEFAULT_LABEL, domain);
        return -1;
    }
    return 0;
}

bool pmx_verp_list_unsubscribe(pmx_buf_t *out, const char *public_url, const char *mailto_domain,
                               const char *token)
{
    bool https = public_url && *public_url;
    if (https) {
        size_t n = strlen(public_url);
        if (n && public_url[n - 1] == '/') n--;
        pmx_buf_append_char(out, '<');
        pmx_buf_append(out, public_url, n);
        pmx_buf_appendf(out, "/u/%s>", token);
    }
    if (mailto_domain && *mailto_domain)
        pmx_buf_appendf(out, "%s<mailto:u-%s@%s>", https ? ", " : "", token, mailto_domain);
    return https;
}

const char *pmx_verp_unsubscribe_unavailable(const char *public_url, const char *inbound_listen)
{
    if ((public_url && *public_url) || (inbound_listen && *inbound_listen)) return NULL;
    return "unsubscribe: this postmux has no unsubscribe link to offer: set [http] public_url "
           "(one-click link) or [inbound] listen (mailto link) in postmux.conf";
}
