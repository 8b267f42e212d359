/*
 * The DNS checks of `postmux domain verify` (postmux(1)) and API v1's POST
 * /v1/domains/{domain}/verify (docs/http.md): is the _postmux.DOMAIN token
 * published, is each DKIM key published as postmux holds it. Blocking
 * lookups (cli/dns.h): the API runs them off the worker's loop.
 */
#ifndef PMX_DKIM_DNSCHECK_H
#define PMX_DKIM_DNSCHECK_H
#include <stdbool.h>
#include <stddef.h>

#include "cli/dns.h"
#include "lib/buf.h"

typedef struct {
    pmx_buf_t name;      /* the record's name */
    pmx_buf_t want;      /* the TXT value to publish */
    bool      ok;
    bool      bare;      /* why stands alone (lookup failed, bad stored key): no
                            "NAME: " prefix, and publishing would not help */
    pmx_buf_t why;       /* set when !ok */
    size_t    ntxt;      /* TXT records found at name */
} pmx_dns_check_t;

/* Each returns 0 when the record is right, -1 with out->why set; free out after. */
int  pmx_dns_check_token(const pmx_cli_nameserver_t *ns, const char *domain, const char *token,
                         pmx_dns_check_t *out);
int  pmx_dns_check_key(const pmx_cli_nameserver_t *ns, const char *domain, const char *selector,
                       const char *algorithm, const char *pub, pmx_dns_check_t *out);
void pmx_dns_check_free(pmx_dns_check_t *c);

#endif
