/*
 * The one address grammar of postmux (docs/queue.md, "Addresses": one careful
 * parser per syntax). Every room that reads or writes an email address goes through
 * here: job decoding (lib/job.c), the CLI, test mode, SMTP submission
 * (smtp/server.c, MAIL FROM / RCPT TO), the relay client (smtp/client.c) and
 * the message builder (lib/mime.c, lib/text.c, for atext and dot-atom).
 *
 * Which grammar applies where (docs/queue.md, "Addresses"):
 *
 * - RFC 5322 §3.4 mailbox and address-list: what a user writes in a job's
 *   from, to, cc, bcc and reply_to fields and in a From: header. A display
 *   name (RFC 5322 phrase: atoms and quoted strings) and an angle-addr, or a
 *   bare addr-spec; white space around the parts is allowed.
 *   pmx_addr_parse, pmx_addr_list_parse.
 *
 * - RFC 5321 §4.1.2 Mailbox: the text between '<' and '>' of MAIL FROM and
 *   RCPT TO (after a source route is dropped), on the submission server and
 *   on the relay client alike. No display name, no white space, no comments.
 *   pmx_addr_parse_envelope, pmx_addr_envelope_ok.
 *
 * Both share one addr-spec: Local-part = Dot-string / Quoted-string of
 * RFC 5321 (each is also an RFC 5322 local-part), Domain = letter-digit-
 * hyphen labels (RFC 5321; U-labels with SMTPUTF8, RFC 6531). So the
 * canonical address every parser here returns is an RFC 5321 Mailbox the
 * relay client can send: pmx_addr_envelope_ok(a.addr) holds for every address
 * pmx_addr_parse returns, and nothing accepted at intake is refused later as
 * "not an address". Rejects CR, LF, NUL and other control characters anywhere.
 */
#ifndef PMX_LIB_ADDR_H
#define PMX_LIB_ADDR_H
#include <stdbool.h>
#include <stddef.h>

typedef struct {
    char *display;  /* decoded display name (UTF-8), or NULL */
    char *addr;     /* "local@domain", domain lowercased; ≤ 254 octets; an RFC 5321 Mailbox */
} pmx_addr_t;

typedef struct {
    pmx_addr_t *v;
    size_t      n;
} pmx_addr_list_t;

/* RFC 5322 §3.2.3 atext (ASCII only): letters, digits and !#$%&'*+-/=?^_`{|}~. */
bool pmx_addr_is_atext(unsigned char c);
/* RFC 5322 §3.2.3 dot-atom-text over s[0..n) (ASCII only): atext runs
 * separated by single dots, no dot first or last. Also RFC 5321 Dot-string. */
bool pmx_addr_is_dot_atom(const char *s, size_t n);
/* Whether s[0..n) is a host name: dot-separated labels of 1-63 letters, digits, '-'
 * or '_' (no empty label; a final dot is allowed). Callers add their own length
 * limit and whether a final dot may stand. */
bool pmx_host_labels_ok(const char *s, size_t n);

/* RFC 5322: parses exactly one mailbox. 0, or -1 with a reason in err (*out untouched). */
int  pmx_addr_parse(const char *s, size_t n, pmx_addr_t *out, char *err, size_t errlen);
/* RFC 5322: parses a non-empty address list. 0, or -1 with a reason in err (*out untouched). */
int  pmx_addr_list_parse(const char *s, size_t n, pmx_addr_list_t *out, char *err, size_t errlen);
/*
 * RFC 5321: parses the Mailbox of an SMTP path, s[0..n) without the angle
 * brackets. *out gets the canonical address (malloc'd; the same form
 * pmx_addr_parse returns). 0, or -1 with a reason in err (*out untouched).
 */
int  pmx_addr_parse_envelope(const char *s, size_t n, char **out, char *err, size_t errlen);
/* True when the C string s is an RFC 5321 Mailbox that postmux sends as is
 * between '<' and '>' (canonical or not). */
bool pmx_addr_envelope_ok(const char *s);
/* The part after '@' of a parsed address. */
const char *pmx_addr_domain(const pmx_addr_t *a);
void pmx_addr_free(pmx_addr_t *a);
void pmx_addr_list_free(pmx_addr_list_t *l);

#endif
