/*
 * The request input of the one-click unsubscribe endpoint (docs/http.md,
 * "One-click unsubscribe") that postmux parses itself, and the escaping of
 * its page. No I/O: http/unsubscribe.c, tests/unit/test_unsub_form.c and the
 * fuzz target tests/fuzz/fuzz_unsub_form.c share it.
 *
 * pmx_unsub_form_check: is a POST body exactly the RFC 8058 one-click value?
 * RFC 8058 §3.1 says mail receivers SHOULD send it as multipart/form-data and
 * MAY send it as application/x-www-form-urlencoded; both are accepted. The body
 * must hold exactly one form field, named List-Unsubscribe, whose value is
 * One-Click (names and values compared exactly, after decoding):
 * - application/x-www-form-urlencoded: "name=value" pairs separated by '&',
 *   '+' and %XX decoded (a bad %-escape refuses the body); empty pairs (a
 *   trailing '&') are ignored;
 * - multipart/form-data; boundary=B (RFC 7578, RFC 2046 §5.1.1): CRLF line
 *   ends; an optional preamble, parts separated by "--B", ended by "--B--";
 *   each part has Content-Disposition: form-data; name="…", no filename, an
 *   optional Content-Type that must be text/plain, and its value.
 * Content-Type parameters such as charset are ignored; the media types are
 * compared case-insensitively. Any other content type, or none, is refused.
 */
#ifndef PMX_HTTP_UNSUB_FORM_H
#define PMX_HTTP_UNSUB_FORM_H
#include <stddef.h>

#include "lib/buf.h"

#define PMX_UNSUB_FORM_NAME  "List-Unsubscribe"
#define PMX_UNSUB_FORM_VALUE "One-Click"

typedef enum {
    PMX_UNSUB_FORM_OK = 0,       /* exactly List-Unsubscribe=One-Click */
    PMX_UNSUB_FORM_BAD = -1,     /* a form, but not exactly the one-click value */
    PMX_UNSUB_FORM_MEDIA = -2,   /* neither of the two content types (415) */
} pmx_unsub_form_result_t;

/* ctype: the Content-Type header (NULL = absent). err gets the reason (one
 * line of printable ASCII) unless OK. */
pmx_unsub_form_result_t pmx_unsub_form_check(const char *ctype, const char *body, size_t len,
                                             char *err, size_t errlen);

/* Appends s with & < > " ' as character references and control bytes
 * (below 0x20, 0x7f) dropped, so the result is safe in HTML text and in a
 * quoted attribute. */
void pmx_html_escape(pmx_buf_t *b, const char *s);

/* The address as the page shows it: the local part's first character (a whole
 * UTF-8 sequence) followed by "***", then "@domain"; "***" alone when there is
 * no '@' or the local part is empty. Appended to b, not escaped. */
void pmx_unsub_mask_address(pmx_buf_t *b, const char *addr);

#endif
