/*
 * The one parser for email addresses (STYLE.md: one careful parser per syntax):
 * a single mailbox ("Name <local@domain>" or "local@domain") and RFC 5322
 * address lists (comma-separated mailboxes; quoted display names may contain
 * commas). Used by job decoding, the CLI, test mode and SMTP submission.
 * Rejects CR, LF, NUL and other control characters anywhere.
 */
#ifndef PMX_LIB_ADDR_H
#define PMX_LIB_ADDR_H
#include <stddef.h>

typedef struct {
    char *display;  /* decoded display name (UTF-8), or NULL */
    char *addr;     /* "local@domain", domain lowercased; ≤ 254 octets */
} pmx_addr_t;

typedef struct {
    pmx_addr_t *v;
    size_t      n;
} pmx_addr_list_t;

/* Parses exactly one mailbox. 0, or -1 with a reason in err (*out untouched). */
int  pmx_addr_parse(const char *s, size_t n, pmx_addr_t *out, char *err, size_t errlen);
/* Parses a non-empty address list. 0, or -1 with a reason in err (*out untouched). */
int  pmx_addr_list_parse(const char *s, size_t n, pmx_addr_list_t *out, char *err, size_t errlen);
/* The part after '@' of a parsed address. */
const char *pmx_addr_domain(const pmx_addr_t *a);
void pmx_addr_free(pmx_addr_t *a);
void pmx_addr_list_free(pmx_addr_list_t *l);

#endif
