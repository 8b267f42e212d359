/* MX lookups with libresolv; see dns_mx.h. The answer is outside input:
 * parsed with ns_initparse/ns_parserr, names uncompressed with bounds. */
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ctype.h>
#include <netdb.h>
#include <resolv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/dns_mx.h"
#include "lib/mem.h"

#define ANSWER_MAX 65535

/* Points the resolver at exactly one server, as cli/dns.c does (glibc reads
 * an IPv6 server from _u._ext.nsaddrs[0], which res_nclose frees). */
static int one_server(res_state st, const pmx_cli_nameserver_t *ns)
{
    for (int i = 0; i < MAXNS; i++) memset(&st->nsaddr_list[i], 0, sizeof st->nsaddr_list[i]);
    st->nscount = 1;
    if (ns->family == AF_INET) {
        st->nsaddr_list[0] = ns->v4;
        return 0;
    }
    struct sockaddr_in6 *sa6 = st->_u._ext.nsaddrs[0];
    if (!sa6) {
        sa6 = malloc(sizeof *sa6);
        if (!sa6) return -1;
        st->_u._ext.nsaddrs[0] = sa6;
    }
    *sa6 = ns->v6;
    return 0;
}

static bool same_name(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la && a[la - 1] == '.') la--;
    if (lb && b[lb - 1] == '.') lb--;
    return la == lb && strncasecmp(a, b, la) == 0;
}

static int parse(const unsigned char *ans, int len, const char *qname, pmx_cli_txt_list_t *out,
                 char *err, size_t errlen)
{
    ns_msg msg;
    if (ns_initparse(ans, len, &msg) < 0) {
        snprintf(err, errlen, "malformed DNS answer for %s", qname);
        return -1;
    }
    int count = ns_msg_count(msg, ns_s_an);
    for (int i = 0; i < count; i++) {
        ns_rr rr;
        if (ns_parserr(&msg, ns_s_an, i, &rr) < 0) {
            snprintf(err, errlen, "malformed record in the DNS answer for %s", qname);
            return -1;
        }
        if (ns_rr_class(rr) != ns_c_in || ns_rr_type(rr) != ns_t_mx ||
            !same_name(ns_rr_name(rr), qname))
            continue;
        char host[NS_MAXDNAME];
        if (ns_rr_rdlen(rr) < 3 ||
            ns_name_uncompress(ns_msg_base(msg), ns_msg_end(msg), ns_rr_rdata(rr) + 2, host,
                               sizeof host) < 0) {
            snprintf(err, errlen, "malformed MX record in the DNS answer for %s", qname);
            return -1;
        }
        size_t n = strlen(host);
        if (n && host[n - 1] == '.') host[--n] = '\0';
        for (size_t k = 0; k < n; k++) host[k] = (char)tolower((unsigned char)host[k]);
        out->txt = pmx_xrealloc(out->txt, (out->n + 1) * sizeof *out->txt);
        pmx_buf_init(&out->txt[out->n]);
        pmx_buf_append(&out->txt[out->n], host, n);
        out->n++;
    }
    return 0;
}

int pmx_cli_dns_mx(const pmx_cli_nameserver_t *ns, const char *name, pmx_cli_txt_list_t *out,
                   char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    struct __res_state st;
    memset(&st, 0, sizeof st);
    if (res_ninit(&st) < 0) {
        snprintf(err, errlen, "cannot initialise the DNS resolver");
        return -1;
    }
    st.retrans = 2;
    st.retry = 2;
    st.options &= ~(unsigned long)(RES_DNSRCH | RES_DEFNAMES);
    if (ns && ns->set && one_server(&st, ns) < 0) {
        res_nclose(&st);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    unsigned char *ans = pmx_xmalloc(ANSWER_MAX);
    int rc = -1;
    int len = res_nquery(&st, name, ns_c_in, ns_t_mx, ans, ANSWER_MAX);
    if (len < 0) {
        if (st.res_h_errno == HOST_NOT_FOUND || st.res_h_errno == NO_DATA) rc = 0;
        else snprintf(err, errlen, "DNS lookup of %s MX failed: %s", name, hstrerror(st.res_h_errno));
    } else {
        if (len > ANSWER_MAX) len = ANSWER_MAX;
        rc = parse(ans, len, name, out, err, errlen);
        if (rc < 0) pmx_cli_dns_mx_free(out);
    }
    free(ans);
    res_nclose(&st);
    return rc;
}

void pmx_cli_dns_mx_free(pmx_cli_txt_list_t *list)
{
    for (size_t i = 0; i < list->n; i++) pmx_buf_free(&list->txt[i]);
    free(list->txt);
    memset(list, 0, sizeof *list);
}
