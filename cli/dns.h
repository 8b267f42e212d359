/*
 * TXT and MX lookups for `postmux domain verify`, through the name servers of
 * /etc/resolv.conf or one name server given on the command line
 * (--nameserver IP[:PORT], IPv4 or IPv6), with libunbound set up as the
 * workers' MX lookups are (routing/resolver.h). Blocking, each query bounded
 * by PMX_RESOLVER_TIMEOUT_MS: this is CLI code, never used on a worker's loop.
 *
 * The answer is outside input: libunbound returns only IN TXT records of the
 * name asked for (following its CNAME chain), every character-string length
 * is checked against its record here, and a malformed record is an error.
 */
#ifndef PMX_CLI_DNS_H
#define PMX_CLI_DNS_H
#include <stdbool.h>
#include <stddef.h>
#include <netinet/in.h>

#include "lib/buf.h"

typedef struct {
    bool                set;          /* false: use /etc/resolv.conf */
    int                 family;       /* AF_INET or AF_INET6 */
    struct sockaddr_in  v4;
    struct sockaddr_in6 v6;
} pmx_cli_nameserver_t;

/*
 * Parses "IP", "IP:PORT", "IPV6", "[IPV6]" or "[IPV6]:PORT" (port default
 * 53). Returns 0, or -1 with a reason in err.
 */
int pmx_cli_dns_parse_nameserver(const char *s, pmx_cli_nameserver_t *out, char *err, size_t errlen);

/* TXT records of one name; each record's character-strings are joined. */
typedef struct {
    pmx_buf_t *txt;
    size_t     n;
} pmx_cli_txt_list_t;

/*
 * Looks up the TXT records of name (a fully qualified name without the final
 * dot). Returns 0 with *out filled — out->n is 0 when the name or its TXT
 * records do not exist — or -1 with a reason in err (timeout, server failure,
 * refused, malformed answer). Free with pmx_cli_dns_txt_free.
 */
int  pmx_cli_dns_txt(const pmx_cli_nameserver_t *ns, const char *name, pmx_cli_txt_list_t *out,
                     char *err, size_t errlen);
void pmx_cli_dns_txt_free(pmx_cli_txt_list_t *list);

/*
 * Looks up the MX records of name (for `domain verify`'s return-path report,
 * docs/feedback.md "Return path (VERP)"): *out holds the exchange host names
 * (lower-case, no final dot; out->n is 0 when the name or its MX records do
 * not exist), or -1 with a reason in err. Free with pmx_cli_dns_txt_free.
 */
int  pmx_cli_dns_mx(const pmx_cli_nameserver_t *ns, const char *name, pmx_cli_txt_list_t *out,
                    char *err, size_t errlen);

#endif
