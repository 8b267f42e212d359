/*
 * MX lookups for `postmux domain verify`'s return-path report
 * (docs/feedback.md "Return path (VERP)"): which hosts a return-path domain's
 * MX records name. Same resolver setup as cli/dns.h (system resolver, or the
 * --nameserver given), blocking with short timeouts, CLI only. Kept beside
 * cli/dns.c rather than in it while that client moves onto another resolver
 * library; it belongs there afterwards.
 */
#ifndef PMX_CLI_DNS_MX_H
#define PMX_CLI_DNS_MX_H
#include <stddef.h>

#include "cli/dns.h"

/*
 * Looks up the MX records of name (no final dot). Returns 0 with *out the
 * exchange host names (lower-case, no final dot; out->n is 0 when the name or
 * its MX records do not exist), or -1 with a reason in err. The list type is
 * cli/dns.h's; free with pmx_cli_dns_mx_free.
 */
int  pmx_cli_dns_mx(const pmx_cli_nameserver_t *ns, const char *name, pmx_cli_txt_list_t *out,
                    char *err, size_t errlen);
void pmx_cli_dns_mx_free(pmx_cli_txt_list_t *list);

#endif
