/*
 * The address parser (see addr.h): a careful, strict subset of RFC 5322
 * mailboxes and address lists, and RFC 5321 envelope Mailboxes, with
 * RFC 5321 / RFC 6531 (SMTPUTF8) limits. Both go through one addr-spec
 * parser (parse_addr_spec), so they can never disagree on what an address is.
 *
 * Accepted:  local@domain, Name <local@domain>, "Quoted, Name" <local@domain>,
 *            <local@domain>; display names may mix atoms (with '.') and quoted
 *            strings with quoted-pairs; UTF-8 anywhere except ASCII specials.
 * Rejected:  comments "(...)" (refused rather than skipped, so what we relay is
 *            what the user wrote), group syntax "name: a, b;", address literals
 *            "[1.2.3.4]", obsolete routes, CR/LF/NUL/other control characters
 *            (TAB is whitespace between words), invalid UTF-8, empty list
 *            elements, unbalanced quotes or angle brackets.
 * Limits:    local part <= 64 octets, domain <= 253, label <= 63, address <= 254.
 *
 * The addr-spec (both grammars): Local-part is a Dot-string (atext runs,
 *            UTF-8 allowed, single dots) or a Quoted-string whose content is
 *            RFC 5321 qtextSMTP / quoted-pairSMTP (printable ASCII and space,
 *            UTF-8; a backslash before a printable ASCII character) — TAB, which
 *            RFC 5322 allows there and RFC 5321 does not, is refused, as is
 *            the empty local part ""; Domain is letter-digit-hyphen labels
 *            (UTF-8 labels allowed), no address literal.
 * RFC 5321 paths (pmx_addr_parse_envelope) take the addr-spec alone: no
 * white space around it, no display name.
 *
 * The address is returned canonical: domain ASCII-lowercased, a quoted local
 * part unquoted when it is a plain dot-atom, otherwise re-quoted minimally
 * (only '"' and backslash escaped). The canonical form is an RFC 5321 Mailbox, which
 * is what the relay client sends between '<' and '>'.
 * Parsing goes in two steps: one scan that splits the list at top-level commas
 * while checking quotes and brackets, then one mailbox at a time.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/addr.h"
#include "lib/buf.h"
#include "lib/mem.h"
#include "lib/utf8.h"

#define LOCAL_MAX  64
#define DOMAIN_MAX 253
#define LABEL_MAX  63
#define ADDR_MAX   254
#define SNIPPET_MAX 80

static bool is_wsp(char c) { return c == ' ' || c == '\t'; }

bool pmx_addr_is_atext(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* atext of an address: RFC 5322 atext plus every non-ASCII byte (RFC 6531
 * §3.3 / RFC 6532 §3.2; the input was already checked to be UTF-8). */
static bool is_atext_u8(unsigned char c)
{
    return c >= 0x80 || pmx_addr_is_atext(c);
}

/* dot-atom-text over s[0..n), with atext decided by is_at. */
static bool dot_atom(const char *s, size_t n, bool (*is_at)(unsigned char))
{
    if (n == 0 || s[0] == '.' || s[n - 1] == '.') return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '.') {
            if (s[i + 1] == '.') return false;
        } else if (!is_at((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}

bool pmx_host_labels_ok(const char *s, size_t n)
{
    size_t label = 0;
    if (n == 0) return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '.') {
            if (label == 0) return false;     /* empty label: leading dot or ".." */
            label = 0;
        } else if (isalnum((unsigned char)ch) || ch == '-' || ch == '_') {
            if (++label > 63) return false;
        } else {
            return false;
        }
    }
    return true;
}

bool pmx_addr_is_dot_atom(const char *s, size_t n)
{
    return s && dot_atom(s, n, pmx_addr_is_atext);
}

/* Appends s[0..n) quoted for an error message: printable, escaped, truncated. */
static void snippet(pmx_buf_t *b, const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (i >= SNIPPET_MAX) { pmx_buf_append_str(b, "..."); return; }
        unsigned char c = (unsigned char)s[i];
        unsigned cp;
        size_t k = c < 0x80 ? 1 : pmx_utf8_seq(s + i, n - i, &cp);
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            pmx_buf_append_char(b, (char)c);
        } else if (c >= 0x80 && k > 0 && !(cp >= 0x80 && cp <= 0x9f)) {
            pmx_buf_append(b, s + i, k);
            i += k;
            continue;
        } else if (c == '\\') {
            pmx_buf_append(b, "\\\\", 2);
        } else {
            pmx_buf_appendf(b, "\\x%02x", c);
        }
        i++;
    }
}

/* Writes "REASON in 'SNIPPET'" into err; returns -1. */
static int fail(char *err, size_t errlen, const char *reason, const char *s, size_t n)
{
    pmx_buf_t b = PMX_BUF_INIT;
    pmx_buf_append_str(&b, reason);
    pmx_buf_append_str(&b, " in '");
    snippet(&b, s, n);
    pmx_buf_append_char(&b, '\'');
    if (errlen) snprintf(err, errlen, "%s", pmx_buf_cstr(&b));
    pmx_buf_free(&b);
    return -1;
}

/* Rejects control characters (except TAB), DEL, C1 controls and bad UTF-8. */
static int check_chars(const char *s, size_t n, char *err, size_t errlen)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) {
            if (c == '\t' || (c >= 0x20 && c != 0x7f)) { i++; continue; }
            char why[48];
            const char *name = c == '\r' ? "CR" : c == '\n' ? "LF" : c == 0 ? "NUL" : NULL;
            if (name) snprintf(why, sizeof why, "control character (%s)", name);
            else snprintf(why, sizeof why, "control character (0x%02x)", c);
            return fail(err, errlen, why, s, n);
        }
        unsigned cp;
        size_t k = pmx_utf8_seq(s + i, n - i, &cp);
        if (k == 0) return fail(err, errlen, "invalid UTF-8", s, n);
        if (cp <= 0x9f) return fail(err, errlen, "control character (C1)", s, n);
        i += k;
    }
    return 0;
}

static void trim(const char **s, size_t *n)
{
    while (*n && is_wsp(**s)) { (*s)++; (*n)--; }
    while (*n && is_wsp((*s)[*n - 1])) (*n)--;
}

/*
 * Finds the end of the list element starting at s[start]: the next comma
 * outside quotes and angle brackets, or n. Checks quoting and brackets and
 * refuses comments and group syntax on the way.
 */
static int scan_element(const char *s, size_t n, size_t start, size_t *end,
                        char *err, size_t errlen)
{
    bool quoted = false, angle = false;
    const char *e = s + start;
    size_t en = n - start;
    for (size_t i = start; i < n; i++) {
        char c = s[i];
        if (quoted) {
            if (c == '\\') {
                if (i + 1 >= n) return fail(err, errlen, "unbalanced quote", e, en);
                i++;
            } else if (c == '"') {
                quoted = false;
            }
            continue;
        }
        switch (c) {
        case '"': quoted = true; break;
        case '<':
            if (angle) return fail(err, errlen, "unexpected '<'", e, en);
            angle = true;
            break;
        case '>':
            if (!angle) return fail(err, errlen, "'>' without '<'", e, en);
            angle = false;
            break;
        case '(': case ')':
            return fail(err, errlen, "comments in parentheses are not supported", e, en);
        case ':': case ';':
            if (!angle) return fail(err, errlen, "group syntax is not supported", e, en);
            break;
        case ',':
            if (!angle) { *end = i; return 0; }
            break;
        default: break;
        }
    }
    if (quoted) return fail(err, errlen, "unbalanced quote", e, en);
    if (angle) return fail(err, errlen, "missing '>'", e, en);
    *end = n;
    return 0;
}

/* True when s[0..n) is a dot-atom of an address local part (UTF-8 allowed). */
static bool is_dot_atom(const char *s, size_t n)
{
    return dot_atom(s, n, is_atext_u8);
}

static int bad_char(char *err, size_t errlen, const char *where, char c,
                    const char *s, size_t n)
{
    char why[80];
    if (c == ' ' || c == '\t') snprintf(why, sizeof why, "unexpected space in %s", where);
    else snprintf(why, sizeof why, "invalid character '%c' in %s", c, where);
    return fail(err, errlen, why, s, n);
}

/* Validates and lowercases the domain d[0..dn) into out. */
static int parse_domain(const char *d, size_t dn, pmx_buf_t *out,
                        const char *s, size_t n, char *err, size_t errlen)
{
    if (dn == 0) return fail(err, errlen, "missing domain", s, n);
    if (d[0] == '[') return fail(err, errlen, "address literals are not supported", s, n);
    if (dn > DOMAIN_MAX) return fail(err, errlen, "domain longer than 253 octets", s, n);
    size_t label = 0;
    for (size_t i = 0; i <= dn; i++) {
        if (i == dn || d[i] == '.') {
            if (label == 0) return fail(err, errlen, "empty label in domain", s, n);
            if (d[i - 1] == '-' || d[i - label] == '-')
                return fail(err, errlen, "domain label starts or ends with '-'", s, n);
            if (label > LABEL_MAX)
                return fail(err, errlen, "domain label longer than 63 octets", s, n);
            if (i < dn) pmx_buf_append_char(out, '.');
            label = 0;
            continue;
        }
        unsigned char c = (unsigned char)d[i];
        if (c >= 'A' && c <= 'Z') c = (unsigned char)(c - 'A' + 'a');
        else if (!(c >= 0x80 || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return bad_char(err, errlen, "domain", (char)c, s, n);
        pmx_buf_append_char(out, (char)c);
        label++;
    }
    return 0;
}

/* Parses an addr-spec s[0..n) (already trimmed) into canonical "local@domain". */
static int parse_addr_spec(const char *s, size_t n, char **out, char *err, size_t errlen)
{
    if (n == 0) return fail(err, errlen, "empty address", "<>", 2);
    pmx_buf_t local = PMX_BUF_INIT, b = PMX_BUF_INIT;
    size_t at;
    int rc = -1;

    if (s[0] == '"') {
        size_t i = 1;
        for (;; i++) {
            if (i >= n) { fail(err, errlen, "unbalanced quote", s, n); goto done; }
            char c = s[i];
            if (c == '"') break;
            if (c == '\\') {
                if (i + 1 >= n) { fail(err, errlen, "unbalanced quote", s, n); goto done; }
                c = s[++i];
                if ((unsigned char)c < 0x20 || (unsigned char)c >= 0x7f) {
                    fail(err, errlen, "invalid quoted-pair in local part", s, n);
                    goto done;
                }
            } else if (c == '\t') {
                fail(err, errlen, "TAB in quoted local part", s, n);
                goto done;
            }
            pmx_buf_append_char(&local, c);
        }
        at = i + 1;
        if (at >= n || s[at] != '@') {
            fail(err, errlen, at >= n ? "missing '@'" : "expected '@' after quoted local part",
                 s, n);
            goto done;
        }
        if (local.len == 0) { fail(err, errlen, "empty local part", s, n); goto done; }
        if (is_dot_atom(local.data, local.len)) {
            pmx_buf_append(&b, local.data, local.len);
        } else {
            pmx_buf_append_char(&b, '"');
            for (size_t k = 0; k < local.len; k++) {
                if (local.data[k] == '"' || local.data[k] == '\\') pmx_buf_append_char(&b, '\\');
                pmx_buf_append_char(&b, local.data[k]);
            }
            pmx_buf_append_char(&b, '"');
        }
    } else {
        const char *p = memchr(s, '@', n);
        if (!p) { fail(err, errlen, "missing '@'", s, n); goto done; }
        at = (size_t)(p - s);
        if (at == 0) { fail(err, errlen, "empty local part", s, n); goto done; }
        for (size_t i = 0; i < at; i++) {
            if (s[i] != '.' && !is_atext_u8((unsigned char)s[i])) {
                bad_char(err, errlen, "local part", s[i], s, n);
                goto done;
            }
        }
        if (!is_dot_atom(s, at)) {
            fail(err, errlen, "misplaced '.' in local part", s, n);
            goto done;
        }
        pmx_buf_append(&b, s, at);
    }
    if (b.len > LOCAL_MAX) { fail(err, errlen, "local part longer than 64 octets", s, n); goto done; }
    pmx_buf_append_char(&b, '@');
    if (parse_domain(s + at + 1, n - at - 1, &b, s, n, err, errlen) < 0) goto done;
    if (b.len > ADDR_MAX) { fail(err, errlen, "address longer than 254 octets", s, n); goto done; }
    *out = pmx_buf_detach(&b);
    rc = 0;
done:
    pmx_buf_free(&local);
    pmx_buf_free(&b);
    return rc;
}

/*
 * Decodes a display name (phrase): atoms (atext and '.') and quoted strings,
 * runs of whitespace between them become one space. *out is NULL when empty.
 */
static int parse_display(const char *s, size_t n, const char *m, size_t mn, char **out,
                         char *err, size_t errlen)
{
    pmx_buf_t b = PMX_BUF_INIT;
    bool space = false;
    size_t i = 0;
    while (i < n) {
        char c = s[i];
        if (is_wsp(c)) { space = true; i++; continue; }
        if (space && b.len) pmx_buf_append_char(&b, ' ');
        space = false;
        if (c == '"') {
            for (i++; s[i] != '"'; i++) {          /* the scan checked the quote closes */
                if (s[i] == '\\') i++;
                pmx_buf_append_char(&b, s[i] == '\t' ? ' ' : s[i]);
            }
            i++;
        } else if (c == '.' || is_atext_u8((unsigned char)c)) {
            pmx_buf_append_char(&b, c);
            i++;
        } else {
            pmx_buf_free(&b);
            char why[80];
            snprintf(why, sizeof why, "invalid character '%c' in display name (quote the name)", c);
            return fail(err, errlen, why, m, mn);
        }
    }
    *out = b.len ? pmx_buf_detach(&b) : NULL;
    pmx_buf_free(&b);
    return 0;
}

/* Parses one trimmed, non-empty list element (checked by scan_element). */
static int parse_mailbox(const char *s, size_t n, pmx_addr_t *out, char *err, size_t errlen)
{
    size_t lt = n, gt = n;
    bool quoted = false;
    for (size_t i = 0; i < n; i++) {
        if (quoted) {
            if (s[i] == '\\') i++;
            else if (s[i] == '"') quoted = false;
        } else if (s[i] == '"') {
            quoted = true;
        } else if (s[i] == '<' && lt == n) {
            lt = i;
        } else if (s[i] == '>' && lt < n) {
            gt = i;
            break;
        }
    }

    pmx_addr_t a = { NULL, NULL };
    if (lt == n) {
        if (parse_addr_spec(s, n, &a.addr, err, errlen) < 0) return -1;
        *out = a;
        return 0;
    }
    if (gt == n) return fail(err, errlen, "missing '>'", s, n);
    for (size_t i = gt + 1; i < n; i++)
        if (!is_wsp(s[i])) return fail(err, errlen, "unexpected text after '>'", s, n);
    const char *in = s + lt + 1;
    size_t inn = gt - lt - 1;
    trim(&in, &inn);
    if (inn == 0) return fail(err, errlen, "empty address", s, n);
    if (in[0] == '@') return fail(err, errlen, "source routes are not supported", s, n);
    if (parse_addr_spec(in, inn, &a.addr, err, errlen) < 0) return -1;
    if (parse_display(s, lt, s, n, &a.display, err, errlen) < 0) {
        free(a.addr);
        return -1;
    }
    *out = a;
    return 0;
}

int pmx_addr_parse(const char *s, size_t n, pmx_addr_t *out, char *err, size_t errlen)
{
    if (check_chars(s, n, err, errlen) < 0) return -1;
    size_t end;
    if (scan_element(s, n, 0, &end, err, errlen) < 0) return -1;
    if (end < n)
        return fail(err, errlen, "more than one address (quote a display name with a comma)", s, n);
    const char *e = s;
    size_t en = n;
    trim(&e, &en);
    if (en == 0) {
        if (errlen) snprintf(err, errlen, "empty address");
        return -1;
    }
    return parse_mailbox(e, en, out, err, errlen);
}

int pmx_addr_list_parse(const char *s, size_t n, pmx_addr_list_t *out, char *err, size_t errlen)
{
    if (check_chars(s, n, err, errlen) < 0) return -1;
    const char *t = s;
    size_t tn = n;
    trim(&t, &tn);
    if (tn == 0) {
        if (errlen) snprintf(err, errlen, "empty address list");
        return -1;
    }

    pmx_addr_list_t l = { NULL, 0 };
    size_t cap = 0, start = 0;
    for (;;) {
        size_t end;
        if (scan_element(s, n, start, &end, err, errlen) < 0) goto fail;
        const char *e = s + start;
        size_t en = end - start;
        trim(&e, &en);
        if (en == 0) {
            fail(err, errlen, "empty element in address list", s, n);
            goto fail;
        }
        if (l.n == cap) {
            cap = cap ? cap * 2 : 4;
            l.v = pmx_xrealloc(l.v, cap * sizeof *l.v);
        }
        if (parse_mailbox(e, en, &l.v[l.n], err, errlen) < 0) goto fail;
        l.n++;
        if (end == n) break;
        start = end + 1;
    }
    *out = l;
    return 0;
fail:
    pmx_addr_list_free(&l);
    return -1;
}

int pmx_addr_parse_envelope(const char *s, size_t n, char **out, char *err, size_t errlen)
{
    if (check_chars(s, n, err, errlen) < 0) return -1;
    /* No trimming: RFC 5321 §4.1.2 has no white space inside a path, and
     * parse_addr_spec refuses a space outside a quoted local part. */
    return parse_addr_spec(s, n, out, err, errlen);
}

bool pmx_addr_envelope_ok(const char *s)
{
    if (!s) return false;
    size_t n = strnlen(s, ADDR_MAX + 1);
    if (n == 0 || n > ADDR_MAX) return false;
    char *canon = NULL;
    if (pmx_addr_parse_envelope(s, n, &canon, NULL, 0) < 0) return false;
    free(canon);
    return true;
}

const char *pmx_addr_domain(const pmx_addr_t *a)
{
    /* The domain holds no '@'; a quoted local part may, so search from the end. */
    const char *at = strrchr(a->addr, '@');
    return at ? at + 1 : "";
}

void pmx_addr_free(pmx_addr_t *a)
{
    if (!a) return;
    free(a->display);
    free(a->addr);
    a->display = a->addr = NULL;
}

void pmx_addr_list_free(pmx_addr_list_t *l)
{
    if (!l) return;
    for (size_t i = 0; i < l->n; i++) pmx_addr_free(&l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}
