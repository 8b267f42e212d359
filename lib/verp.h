/*
 * What a message carries so that what comes back finds its recipient
 * (docs/feedback.md "Return path (VERP)", docs/http.md "One-click unsubscribe"):
 * the return-path domain of a verified domain, the VERP envelope sender
 * b-<token>@<return-path domain>, and the List-Unsubscribe value. Pure string
 * functions; the tokens come from lib/reftoken.h.
 */
#ifndef PMX_LIB_VERP_H
#define PMX_LIB_VERP_H
#include <stdbool.h>
#include <stddef.h>

#include "lib/buf.h"

#define PMX_VERP_DEFAULT_LABEL "bounces"   /* bounces.D unless --return-path chose a name */
#define PMX_VERP_DOMAIN_MAX    253

/* The return-path domain of verified domain `domain`: return_path when set
 * (non-NULL, non-empty), else "bounces." domain. Appended to out. */
void pmx_verp_return_domain(pmx_buf_t *out, const char *domain, const char *return_path);

/*
 * Checks a `domain add --return-path NAME` for verified domain `domain`
 * (both lower-case): NAME must be a DNS name (labels of a-z, 0-9, '-', not
 * starting or ending with '-', at most 63 octets, the whole at most 253)
 * strictly under `domain` (another subdomain of it: the return path is not
 * the domain itself, whose own MX takes its mail). Returns 0, or -1 with a
 * reason in err.
 */
int pmx_verp_return_path_check(const char *domain, const char *name, char *err, size_t errlen);

/*
 * The List-Unsubscribe value for one recipient (RFC 2369, RFC 8058):
 * "<{public_url}/u/{token}>" when public_url is set (a trailing '/' of it is
 * not doubled), then "<mailto:u-{token}@{mailto_domain}>" when mailto_domain
 * is set, joined by ", ". token is the recipient's PMX_REF_UNSUBSCRIBE token.
 * Appended to out. Returns whether the value has the https:// part that a
 * List-Unsubscribe-Post: List-Unsubscribe=One-Click may go with.
 */
bool pmx_verp_list_unsubscribe(pmx_buf_t *out, const char *public_url, const char *mailto_domain,
                               const char *token);

/*
 * Why a job with unsubscribe = yes cannot be served by this configuration,
 * or NULL when it can: it needs [http] public_url (the one-click link) or
 * [inbound] listen (the mailto link). The reason names the field, for the
 * doors that refuse such a job (docs/queue.md "unsubscribe").
 */
const char *pmx_verp_unsubscribe_unavailable(const char *public_url, const char *inbound_listen);

#endif
