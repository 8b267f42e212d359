/*
 * TXT lookups for `domain verify`; see dns.h. The same libunbound set-up as
 * the workers' MX lookups (routing/resolver.h), one context per call, so
 * --nameserver never leaks into anything else in the process.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/dns.h"
#include "lib/mem.h"
#include "routing/mx.h"
#include "routing/resolver.h"


static int parse_port(const char *s, in_port_t *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 1 || v > 65535) return -1;
    *out = htons((uint16_t)v);
    return 0;
}

int pmx_cli_dns_parse_nameserver(const char *s, pmx_cli_nameserver_t *out, char *err, size_t errlen)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *port = NULL;
    in_port_t nport = htons(53);

    memset(out, 0, sizeof *out);
    if (s[0] == '[') {                                   /* [v6] or [v6]:port */
        const char *close = strchr(s, ']');
        if (!close || (size_t)(close - s - 1) >= sizeof host) goto bad;
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = '\0';
        if (close[1] == ':') port = close + 2;
        else if (close[1] != '\0') goto bad;
    } else {
        const char *colon = strchr(s, ':');
        if (colon && strchr(colon + 1, ':')) colon = NULL;   /* bare IPv6: no port */
        size_t hlen = colon ? (size_t)(colon - s) : strlen(s);
        if (hlen == 0 || hlen >= sizeof host) goto bad;
        memcpy(host, s, hlen);
        host[hlen] = '\0';
        if (colon) port = colon + 1;
    }
    if (port && parse_port(port, &nport) < 0) {
        snprintf(err, errlen, "bad port in name server '%s' (1-65535)", s);
        return -1;
    }
    if (inet_pton(AF_INET, host, &out->v4.sin_addr) == 1) {
        out->family = AF_INET;
        out->v4.sin_family = AF_INET;
        out->v4.sin_port = nport;
    } else if (inet_pton(AF_INET6, host, &out->v6.sin6_addr) == 1) {
        out->family = AF_INET6;
        out->v6.sin6_family = AF_INET6;
        out->v6.sin6_port = nport;
    } else {
        goto bad;
    }
    out->set = true;
    return 0;
bad:
    snprintf(err, errlen, "bad name server '%s': expected IP, IP:PORT or [IPV6]:PORT", s);
    return -1;
}

/* The [mx] resolver form of ns ("" = /etc/resolv.conf). */
static void spec_of(const pmx_cli_nameserver_t *ns, char *out, size_t outlen)
{
    char host[INET6_ADDRSTRLEN];
    out[0] = '\0';
    if (!ns || !ns->set) return;
    if (ns->family == AF_INET) {
        inet_ntop(AF_INET, &ns->v4.sin_addr, host, sizeof host);
        snprintf(out, outlen, "%s:%u", host, ntohs(ns->v4.sin_port));
    } else {
        inet_ntop(AF_INET6, &ns->v6.sin6_addr, host, sizeof host);
        snprintf(out, outlen, "[%s]:%u", host, ntohs(ns->v6.sin6_port));
    }
}

static void list_add(pmx_cli_txt_list_t *l, const pmx_buf_t *txt)
{
    l->txt = pmx_xrealloc(l->txt, (l->n + 1) * sizeof *l->txt);
    pmx_buf_init(&l->txt[l->n]);
    pmx_buf_append(&l->txt[l->n], txt->data ? txt->data : "", txt->len);
    l->n++;
}

/* RDATA of one TXT record: one or more <length byte><bytes> character-strings. */
static int parse_txt(const unsigned char *rd, size_t rdlen, pmx_cli_txt_list_t *out)
{
    pmx_buf_t txt = PMX_BUF_INIT;
    size_t p = 0;
    while (p < rdlen) {
        size_t l = rd[p++];
        if (l > rdlen - p) {
            pmx_buf_free(&txt);
            return -1;
        }
        pmx_buf_append(&txt, rd + p, l);
        p += l;
    }
    list_add(out, &txt);
    pmx_buf_free(&txt);
    return 0;
}

/* RDATA of one MX record: the exchange host name (lower-case, no final dot). */
static int parse_mx(const unsigned char *rd, size_t rdlen, pmx_cli_txt_list_t *out)
{
    int pref;
    char host[256];
    if (pmx__mx_rdata(rd, rdlen, &pref, host, sizeof host) < 0) return -1;
    pmx_buf_t b = PMX_BUF_INIT;
    pmx_buf_append_str(&b, host);
    list_add(out, &b);
    pmx_buf_free(&b);
    return 0;
}

/* One blocking query of type for name; each record's RDATA goes through parse. */
static int lookup(const pmx_cli_nameserver_t *ns, const char *name, int type, const char *what,
                  int (*parse)(const unsigned char *, size_t, pmx_cli_txt_list_t *),
                  pmx_cli_txt_list_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    char spec[INET6_ADDRSTRLEN + 16];
    spec_of(ns, spec, sizeof spec);
    char why[300];
    void *ctx = pmx_resolver_sync_new(spec, why, sizeof why);
    if (!ctx) {
        snprintf(err, errlen, "cannot initialise the DNS resolver: %s", why);
        return -1;
    }
    pmx_dns_answer_t a;
    void *keep = NULL;
    pmx_resolver_sync_query(ctx, name, type, &a, &keep);
    int rc = 0;
    if (a.status == PMX_DNS_TEMPFAIL) {
        snprintf(err, errlen, "DNS lookup of %s failed: timed out or server failure (%s)", name,
                 a.why ? a.why : "");
        rc = -1;
    } else {
        /* libunbound follows CNAMEs itself: the records are the final name's. */
        for (size_t i = 0; i < a.n && rc == 0; i++)
            if (parse((const unsigned char *)a.rdata[i], (size_t)a.rdlen[i], out) < 0) {
                snprintf(err, errlen, "malformed %s record in the DNS answer for %s", what, name);
                pmx_cli_dns_txt_free(out);
                rc = -1;
            }
    }
    pmx_resolver_sync_free_answer(keep);
    pmx_resolver_sync_free(ctx);
    return rc;
}

int pmx_cli_dns_txt(const pmx_cli_nameserver_t *ns, const char *name, pmx_cli_txt_list_t *out,
                    char *err, size_t errlen)
{
    return lookup(ns, name, PMX_DNS_TYPE_TXT, "TXT", parse_txt, out, err, errlen);
}

int pmx_cli_dns_mx(const pmx_cli_nameserver_t *ns, const char *name, pmx_cli_txt_list_t *out,
                   char *err, size_t errlen)
{
    return lookup(ns, name, PMX_DNS_TYPE_MX, "MX", parse_mx, out, err, errlen);
}

void pmx_cli_dns_txt_free(pmx_cli_txt_list_t *list)
{
    for (size_t i = 0; i < list->n; i++) pmx_buf_free(&list->txt[i]);
    free(list->txt);
    list->txt = NULL;
    list->n = 0;
}
