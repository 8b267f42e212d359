/*
 * TXT lookups with libresolv for `domain verify`; see dns.h. The resolver
 * state is per call (res_ninit/res_nclose), so --nameserver never leaks into
 * anything else in the process.
 */
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <resolv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/dns.h"
#include "lib/mem.h"

#define ANSWER_MAX   65535     /* largest DNS message (TCP) */
#define CHAIN_MAX    8         /* CNAMEs followed inside one answer */

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

/* Points the resolver at exactly one server (after res_ninit). */
static int use_nameserver(res_state st, const pmx_cli_nameserver_t *ns)
{
    for (int i = 0; i < MAXNS; i++) memset(&st->nsaddr_list[i], 0, sizeof st->nsaddr_list[i]);
    st->nscount = 1;
    if (ns->family == AF_INET) {
        st->nsaddr_list[0] = ns->v4;
        return 0;
    }
    /*
     * glibc reads an IPv6 server from _u._ext.nsaddrs[i] when nsaddr_list[i]
     * has family 0; res_nclose frees those slots, so the slot must be heap.
     */
    struct sockaddr_in6 *sa6 = st->_u._ext.nsaddrs[0];
    if (!sa6) {
        sa6 = malloc(sizeof *sa6);
        if (!sa6) return -1;
        st->_u._ext.nsaddrs[0] = sa6;
    }
    *sa6 = ns->v6;
    return 0;
}

static bool name_eq(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la && a[la - 1] == '.') la--;
    if (lb && b[lb - 1] == '.') lb--;
    return la == lb && strncasecmp(a, b, la) == 0;
}

static void list_add(pmx_cli_txt_list_t *l, const pmx_buf_t *txt)
{
    l->txt = pmx_xrealloc(l->txt, (l->n + 1) * sizeof *l->txt);
    pmx_buf_init(&l->txt[l->n]);
    pmx_buf_append(&l->txt[l->n], txt->data ? txt->data : "", txt->len);
    l->n++;
}

/*
 * Collects the TXT records of qname (and of the CNAME chain the answer gives
 * for it) from a DNS message; 0, or -1 when the message is malformed.
 */
static int parse_answer(const unsigned char *ans, int len, const char *qname,
                        pmx_cli_txt_list_t *out, char *err, size_t errlen)
{
    ns_msg msg;
    if (ns_initparse(ans, len, &msg) < 0) {
        snprintf(err, errlen, "malformed DNS answer for %s", qname);
        return -1;
    }
    char chain[CHAIN_MAX + 1][NS_MAXDNAME];
    int nchain = 1;
    snprintf(chain[0], sizeof chain[0], "%s", qname);

    int count = ns_msg_count(msg, ns_s_an);
    for (int i = 0; i < count; i++) {
        ns_rr rr;
        if (ns_parserr(&msg, ns_s_an, i, &rr) < 0) {
            snprintf(err, errlen, "malformed record in the DNS answer for %s", qname);
            return -1;
        }
        if (ns_rr_class(rr) != ns_c_in) continue;

        bool ours = false;
        for (int k = 0; k < nchain; k++)
            if (name_eq(ns_rr_name(rr), chain[k])) ours = true;
        if (!ours) continue;

        const unsigned char *rd = ns_rr_rdata(rr);
        size_t rdlen = ns_rr_rdlen(rr);

        if (ns_rr_type(rr) == ns_t_cname) {
            if (nchain > CHAIN_MAX) continue;
            if (ns_name_uncompress(ns_msg_base(msg), ns_msg_end(msg), rd,
                                   chain[nchain], sizeof chain[nchain]) < 0) {
                snprintf(err, errlen, "malformed CNAME in the DNS answer for %s", qname);
                return -1;
            }
            nchain++;
            continue;
        }
        if (ns_rr_type(rr) != ns_t_txt) continue;

        /* RDATA: one or more <length byte><bytes> character-strings. */
        pmx_buf_t txt = PMX_BUF_INIT;
        size_t p = 0;
        while (p < rdlen) {
            size_t l = rd[p++];
            if (l > rdlen - p) {
                pmx_buf_free(&txt);
                snprintf(err, errlen, "malformed TXT record in the DNS answer for %s", qname);
                return -1;
            }
            pmx_buf_append(&txt, rd + p, l);
            p += l;
        }
        list_add(out, &txt);
        pmx_buf_free(&txt);
    }
    return 0;
}

int pmx_cli_dns_txt(const pmx_cli_nameserver_t *ns, const char *name, pmx_cli_txt_list_t *out,
                    char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);

    struct __res_state st;
    memset(&st, 0, sizeof st);
    if (res_ninit(&st) < 0) {
        snprintf(err, errlen, "cannot initialise the DNS resolver");
        return -1;
    }
    st.retrans = 2;                      /* seconds per try */
    st.retry = 2;
    st.options |= RES_USE_EDNS0;
    st.options &= ~(unsigned long)(RES_DNSRCH | RES_DEFNAMES);
    if (ns && ns->set && use_nameserver(&st, ns) < 0) {
        res_nclose(&st);
        snprintf(err, errlen, "out of memory");
        return -1;
    }

    unsigned char *ans = pmx_xmalloc(ANSWER_MAX);
    int rc = -1;
    int len = res_nquery(&st, name, ns_c_in, ns_t_txt, ans, ANSWER_MAX);
    if (len < 0) {
        switch (st.res_h_errno) {
        case HOST_NOT_FOUND:              /* NXDOMAIN */
        case NO_DATA:                     /* the name exists, no TXT */
            rc = 0;
            break;
        case TRY_AGAIN:
            snprintf(err, errlen, "DNS lookup of %s failed: timed out or server failure", name);
            break;
        default:
            snprintf(err, errlen, "DNS lookup of %s failed: %s", name, hstrerror(st.res_h_errno));
            break;
        }
    } else {
        if (len > ANSWER_MAX) len = ANSWER_MAX;      /* a truncated copy: parse what we have */
        rc = parse_answer(ans, len, name, out, err, errlen);
        if (rc < 0) pmx_cli_dns_txt_free(out);
    }
    free(ans);
    res_nclose(&st);
    return rc;
}

void pmx_cli_dns_txt_free(pmx_cli_txt_list_t *list)
{
    for (size_t i = 0; i < list->n; i++) pmx_buf_free(&list->txt[i]);
    free(list->txt);
    list->txt = NULL;
    list->n = 0;
}
