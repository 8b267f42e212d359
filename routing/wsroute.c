/*
 * A workspace's route and pool settings; see wsroute.h. The route grammar
 * is a small URL subset parsed by hand, strictly: anything not in
 * wsroute.h's grammar is refused with the reason, never guessed at.
 */
#include "routing/wsroute.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "lib/addr.h"
#include "lib/encode.h"

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decodes s[0..n) into out; printable ASCII (no space) only. */
static int decode_user(const char *s, size_t n, char *out, size_t cap, char *err, size_t errlen)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            int a = i + 2 < n ? hexval((unsigned char)s[i + 1]) : -1;
            int b = i + 2 < n ? hexval((unsigned char)s[i + 2]) : -1;
            if (a < 0 || b < 0) {
                snprintf(err, errlen, "route: a '%%' in the user must be followed by two hex digits");
                return -1;
            }
            c = a * 16 + b;
            i += 2;
        } else if (c == ':') {
            snprintf(err, errlen, "route: no password in the URL (user:password); give it with "
                     "--route-password-file");
            return -1;
        }
        if (c <= 0x20 || c >= 0x7f) {
            snprintf(err, errlen, "route: the user may hold printable ASCII only (no spaces)");
            return -1;
        }
        if (k + 1 >= cap) {
            snprintf(err, errlen, "route: the user is longer than %d characters", PMX_WSROUTE_USER_MAX);
            return -1;
        }
        out[k++] = (char)c;
    }
    out[k] = '\0';
    if (k == 0) {
        snprintf(err, errlen, "route: empty user before '@'");
        return -1;
    }
    return 0;
}

/* A host name (letters, digits, '-', '_', dot-separated labels of 1-63), lowercased. */
static bool host_name_ok(const char *s, size_t n)
{
    return n <= PMX_WSROUTE_HOST_MAX && n > 0 && s[n - 1] != '.' && pmx_host_labels_ok(s, n);
}

/* The user as written into the canonical URL: unreserved characters as they are. */
static void encode_user(const char *u, char *out, size_t cap)
{
    size_t k = 0;
    for (; *u && k + 4 < cap; u++) {
        unsigned char c = (unsigned char)*u;
        if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '!' ||
            c == '$' || c == '&' || c == '\'' || c == '(' || c == ')' || c == '*' || c == ',' ||
            c == ';' || c == '=')
            out[k++] = (char)c;
        else
            k += (size_t)snprintf(out + k, cap - k, "%%%02X", c);
    }
    out[k] = '\0';
}

int pmx_wsroute_parse(const char *text, pmx_wsroute_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!text || !*text) {
        snprintf(err, errlen, "route: empty (expected default, mx, smtp://HOST:PORT or "
                 "smtps://HOST:PORT)");
        return -1;
    }
    size_t len = strlen(text);
    if (len > PMX_WSROUTE_MAX) {
        snprintf(err, errlen, "route: longer than %d characters", PMX_WSROUTE_MAX);
        return -1;
    }
    if (strcmp(text, "default") == 0 || strcmp(text, "mx") == 0) {
        out->kind = text[0] == 'd' ? PMX_WSROUTE_DEFAULT : PMX_WSROUTE_MX;
        snprintf(out->canonical, sizeof out->canonical, "%s", text);
        return 0;
    }
    bool smtps = strncasecmp(text, "smtps://", 8) == 0;
    if (!smtps && strncasecmp(text, "smtp://", 7) != 0) {
        snprintf(err, errlen, "route: expected default, mx, smtp://[user@]host[:port] or "
                 "smtps://[user@]host[:port]");
        return -1;
    }
    out->kind = PMX_WSROUTE_SMTP;
    out->tls = smtps ? PMX_TLS_IMPLICIT : PMX_TLS_STARTTLS;
    const char *p = text + (smtps ? 8 : 7);
    for (const char *q = p; *q; q++)
        if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f) {
            snprintf(err, errlen, "route: spaces, control or non-ASCII characters");
            return -1;
        }
    size_t alen = strcspn(p, "/?#");
    const char *query = NULL;
    if (p[alen] == '/' || p[alen] == '#') {
        snprintf(err, errlen, "route: no path or fragment after host:port");
        return -1;
    }
    if (p[alen] == '?') query = p + alen + 1;

    /* userinfo: up to the last '@' of the authority. */
    const char *hp = p;
    const char *at = NULL;
    for (const char *q = p; q < p + alen; q++)
        if (*q == '@') at = q;
    if (at) {
        if (decode_user(p, (size_t)(at - p), out->user, sizeof out->user, err, errlen) < 0)
            return -1;
        hp = at + 1;
    }
    size_t hlen = (size_t)(p + alen - hp);
    const char *port_s = NULL;
    size_t port_len = 0;
    if (hlen && hp[0] == '[') {
        const char *close = memchr(hp, ']', hlen);
        char v6[INET6_ADDRSTRLEN + 1];
        unsigned char bin[16];
        size_t vl = close ? (size_t)(close - hp - 1) : 0;
        if (!close || vl == 0 || vl >= sizeof v6) {
            snprintf(err, errlen, "route: bad [IPv6] host");
            return -1;
        }
        memcpy(v6, hp + 1, vl);
        v6[vl] = '\0';
        if (inet_pton(AF_INET6, v6, bin) != 1) {
            snprintf(err, errlen, "route: '%s' is not an IPv6 address", v6);
            return -1;
        }
        for (size_t i = 0; i < vl; i++) out->host[i] = (char)tolower((unsigned char)v6[i]);
        out->host[vl] = '\0';
        const char *rest = close + 1;
        if (rest < hp + hlen) {
            if (*rest != ':') {
                snprintf(err, errlen, "route: expected ':PORT' after the [IPv6] host");
                return -1;
            }
            port_s = rest + 1;
            port_len = (size_t)(hp + hlen - port_s);
        }
    } else {
        const char *colon = memchr(hp, ':', hlen);
        size_t nl = colon ? (size_t)(colon - hp) : hlen;
        if (!host_name_ok(hp, nl)) {
            snprintf(err, errlen, "route: expected a host name or IP address after %s://",
                     smtps ? "smtps" : "smtp");
            return -1;
        }
        for (size_t i = 0; i < nl; i++) out->host[i] = (char)tolower((unsigned char)hp[i]);
        out->host[nl] = '\0';
        if (colon) {
            port_s = colon + 1;
            port_len = (size_t)(hp + hlen - port_s);
        }
    }
    out->port = smtps ? 465 : 587;
    if (port_s) {
        long v = 0;
        if (port_len == 0 || port_len > 5) v = -1;
        for (size_t i = 0; v >= 0 && i < port_len; i++)
            v = isdigit((unsigned char)port_s[i]) ? v * 10 + (port_s[i] - '0') : -1;
        if (v < 1 || v > 65535) {
            snprintf(err, errlen, "route: the port must be a number from 1 to 65535");
            return -1;
        }
        out->port = (int)v;
    }
    if (query) {
        if (!smtps && strcmp(query, "tls=none") == 0) {
            out->tls = PMX_TLS_NONE;
        } else if (!smtps && strcmp(query, "tls=starttls") == 0) {
            out->tls = PMX_TLS_STARTTLS;
        } else {
            snprintf(err, errlen, "route: the only option is ?tls=none (or ?tls=starttls), and "
                     "only for smtp://");
            return -1;
        }
    }
    char ubuf[PMX_WSROUTE_USER_MAX * 3 + 1];
    encode_user(out->user, ubuf, sizeof ubuf);
    bool v6 = strchr(out->host, ':') != NULL;
    int w = snprintf(out->canonical, sizeof out->canonical, "%s://%s%s%s%s%s:%d%s", smtps ? "smtps" : "smtp",
             ubuf, out->user[0] ? "@" : "", v6 ? "[" : "", out->host, v6 ? "]" : "", out->port,
             out->tls == PMX_TLS_NONE ? "?tls=none" : "");
    if (w < 0 || (size_t)w >= sizeof out->canonical) {
        snprintf(err, errlen, "route: longer than %d characters", PMX_WSROUTE_MAX);
        return -1;
    }
    return 0;
}

int pmx_wsroute_pool_check(const pmx_config_t *cfg, const char *name, const char **stored,
                           char *err, size_t errlen)
{
    if (name && strcmp(name, "default") == 0) {
        *stored = NULL;
        return 0;
    }
    if (!pmx_config_pool_name_ok(name)) {
        snprintf(err, errlen, "pool: expected default or a pool name (1-%d of A-Z a-z 0-9 . _ -)",
                 PMX_CONFIG_POOL_NAME_MAX);
        return -1;
    }
    if (!pmx_config_pool(cfg, name)) {
        snprintf(err, errlen, "pool: no [pool %s] section in %s", name,
                 cfg->path ? cfg->path : "the config");
        return -1;
    }
    *stored = name;
    return 0;
}

int pmx_wsroute_password_check(const pmx_wsroute_t *route, bool have_password, char *err,
                               size_t errlen)
{
    bool needs = route->kind == PMX_WSROUTE_SMTP && route->user[0];
    if (needs && !have_password) {
        snprintf(err, errlen, "route: a route with a user needs its password "
                 "(--route-password-file)");
        return -1;
    }
    if (!needs && have_password) {
        snprintf(err, errlen, "route: a password goes only with an smtp:// or smtps:// route "
                 "that names a user");
        return -1;
    }
    return 0;
}

int pmx_wsroute_password_text_check(const char *password, size_t n, char *err, size_t errlen)
{
    bool bad = n == 0 || n > PMX_WSROUTE_PASSWORD_MAX;
    for (size_t i = 0; i < n && !bad; i++)
        bad = (unsigned char)password[i] < 0x20 || password[i] == 0x7f;
    if (bad) {
        snprintf(err, errlen, "the password must be one line of 1 to %d bytes without control "
                 "characters", PMX_WSROUTE_PASSWORD_MAX);
        return -1;
    }
    return 0;
}

void pmx_wsroute_aad(pmx_buf_t *out, const char *ws_id, const pmx_wsroute_t *route)
{
    pmx_buf_appendf(out, "postmux-route-v1:%s:%s", ws_id, route->canonical);
}

int pmx_wsroute_seal(const uint8_t master[PMX_DKIM_MASTER_KEY_LEN], const char *ws_id,
                     const pmx_wsroute_t *route, const char *password, size_t n,
                     pmx_buf_t *blob_out)
{
    pmx_buf_t aad = PMX_BUF_INIT;
    pmx_wsroute_aad(&aad, ws_id, route);
    int rc = pmx_dkim_key_seal(master, pmx_buf_cstr(&aad), (const uint8_t *)password, n, blob_out);
    pmx_buf_free(&aad);
    return rc;
}

int pmx_wsroute_seal_bytea(const uint8_t master[PMX_DKIM_MASTER_KEY_LEN], const char *ws_id,
                           const pmx_wsroute_t *route, const char *password, size_t n,
                           char **out)
{
    *out = NULL;
    pmx_buf_t blob = PMX_BUF_INIT, hex = PMX_BUF_INIT;
    int rc = pmx_wsroute_seal(master, ws_id, route, password, n, &blob);
    if (rc < 0) {
        pmx_buf_free(&blob);
        return rc;
    }
    pmx_bytea_hex_encode(&hex, (const uint8_t *)blob.data, blob.len);
    pmx_buf_free(&blob);
    *out = pmx_buf_detach(&hex);
    return 0;
}

int pmx_wsroute_open(const uint8_t master[PMX_DKIM_MASTER_KEY_LEN], const char *ws_id,
                     const pmx_wsroute_t *route, const uint8_t *blob, size_t n,
                     pmx_buf_t *password_out)
{
    pmx_buf_t aad = PMX_BUF_INIT;
    pmx_wsroute_aad(&aad, ws_id, route);
    int rc = pmx_dkim_key_open(master, pmx_buf_cstr(&aad), blob, n, password_out);
    pmx_buf_free(&aad);
    return rc;
}
