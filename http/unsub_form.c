/* The one-click unsubscribe body and page helpers; see unsub_form.h. */
#include "http/unsub_form.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define BOUNDARY_MAX 70   /* RFC 2046 §5.1.1 */
#define FIELD_MAX    256  /* longer names or values cannot be the one-click pair */

typedef struct {
    size_t fields;        /* form fields seen */
    bool   one_click;     /* the only one so far is List-Unsubscribe=One-Click */
} tally_t;

static void tally_add(tally_t *t, const char *name, size_t nlen, const char *val, size_t vlen)
{
    t->fields++;
    t->one_click = t->fields == 1 && nlen == strlen(PMX_UNSUB_FORM_NAME) &&
                   memcmp(name, PMX_UNSUB_FORM_NAME, nlen) == 0 &&
                   vlen == strlen(PMX_UNSUB_FORM_VALUE) &&
                   memcmp(val, PMX_UNSUB_FORM_VALUE, vlen) == 0;
}

static pmx_unsub_form_result_t tally_result(const tally_t *t, char *err, size_t errlen)
{
    if (t->fields == 0) {
        snprintf(err, errlen, "the form is empty; send List-Unsubscribe=One-Click");
        return PMX_UNSUB_FORM_BAD;
    }
    if (t->fields > 1) {
        snprintf(err, errlen, "the form has %zu fields; send only List-Unsubscribe=One-Click",
                 t->fields);
        return PMX_UNSUB_FORM_BAD;
    }
    if (!t->one_click) {
        snprintf(err, errlen, "the form field is not List-Unsubscribe=One-Click");
        return PMX_UNSUB_FORM_BAD;
    }
    return PMX_UNSUB_FORM_OK;
}

/* ---- application/x-www-form-urlencoded ------------------------------------------ */

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes s[0..n) into out (at most FIELD_MAX bytes kept; *olen is the whole
 * decoded length). -1 on a bad %-escape. */
static int form_decode(const char *s, size_t n, char out[FIELD_MAX], size_t *olen)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            int hi = i + 1 < n ? hexval(s[i + 1]) : -1;
            int lo = i + 2 < n ? hexval(s[i + 2]) : -1;
            if (hi < 0 || lo < 0) return -1;
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if (o < FIELD_MAX) out[o] = c;
        o++;
    }
    *olen = o;
    return 0;
}

static pmx_unsub_form_result_t urlencoded(const char *body, size_t len, char *err, size_t errlen)
{
    tally_t t = { 0, false };
    size_t i = 0;
    while (i <= len) {
        const char *amp = memchr(body + i, '&', len - i);
        size_t end = amp ? (size_t)(amp - body) : len;
        if (end > i) {
            const char *pair = body + i;
            size_t plen = end - i;
            const char *eq = memchr(pair, '=', plen);
            size_t nl = eq ? (size_t)(eq - pair) : plen;
            char name[FIELD_MAX], val[FIELD_MAX];
            size_t dn, dv = 0;
            if (form_decode(pair, nl, name, &dn) < 0 ||
                (eq && form_decode(eq + 1, plen - nl - 1, val, &dv) < 0)) {
                snprintf(err, errlen, "bad %%-escape in the form body");
                return PMX_UNSUB_FORM_BAD;
            }
            tally_add(&t, name, dn > FIELD_MAX ? FIELD_MAX + 1 : dn, val,
                      dv > FIELD_MAX ? FIELD_MAX + 1 : dv);
        }
        if (!amp) break;
        i = end + 1;
    }
    return tally_result(&t, err, errlen);
}

/* ---- media types and parameters --------------------------------------------------- */

static bool is_ws(char c) { return c == ' ' || c == '\t'; }

/* Does the header value start with media type mt (then ';', whitespace or end)? */
static bool media_is(const char *v, const char *mt)
{
    while (is_ws(*v)) v++;
    size_t n = strlen(mt);
    if (strncasecmp(v, mt, n) != 0) return false;
    v += n;
    while (is_ws(*v)) v++;
    return *v == '\0' || *v == ';';
}

/* Finds parameter pname among the ";name=value" parameters of a header value
 * (token or quoted-string without escapes). 1 found (value in out), 0 not
 * there, -1 malformed or too long. */
static int header_param(const char *v, const char *pname, char *out, size_t outlen)
{
    const char *p = strchr(v, ';');
    int found = 0;
    while (p) {
        p++;
        while (is_ws(*p)) p++;
        const char *ns = p;
        while (*p && *p != '=' && *p != ';' && !is_ws(*p)) p++;
        size_t nlen = (size_t)(p - ns);
        while (is_ws(*p)) p++;
        if (*p != '=') {
            if (nlen == 0 && (*p == '\0' || *p == ';')) {   /* an empty parameter: "a;;b", "a;" */
                p = *p ? p : NULL;
                continue;
            }
            return -1;
        }
        p++;
        while (is_ws(*p)) p++;
        const char *vs;
        size_t vlen;
        if (*p == '"') {
            vs = ++p;
            while (*p && *p != '"' && *p != '\\') p++;
            if (*p != '"') return -1;
            vlen = (size_t)(p - vs);
            p++;
        } else {
            vs = p;
            while (*p && *p != ';' && !is_ws(*p)) p++;
            vlen = (size_t)(p - vs);
        }
        while (is_ws(*p)) p++;
        if (*p && *p != ';') return -1;
        if (nlen == strlen(pname) && strncasecmp(ns, pname, nlen) == 0) {
            if (found) return -1;   /* twice: ambiguous */
            if (vlen >= outlen) return -1;
            memcpy(out, vs, vlen);
            out[vlen] = '\0';
            found = 1;
        }
        p = *p ? p : NULL;
    }
    return found;
}

/* ---- multipart/form-data -------------------------------------------------------------- */

/* One part's head [h, h+n) (lines ending CRLF, the last one too). Sets name
 * (NUL-free, at most FIELD_MAX) and returns 0, or -1 with a reason. */
static int part_head(const char *h, size_t n, char name[FIELD_MAX + 1], char *err, size_t errlen)
{
    bool disposition = false;
    size_t i = 0;
    while (i < n) {
        const char *eol = memmem(h + i, n - i, "\r\n", 2);
        size_t end = eol ? (size_t)(eol - h) : n;
        char line[512];
        size_t llen = end - i;
        if (llen >= sizeof line || memchr(h + i, '\0', llen)) {
            snprintf(err, errlen, "a multipart part header is too long or holds a NUL");
            return -1;
        }
        memcpy(line, h + i, llen);
        line[llen] = '\0';
        i = end + 2;
        char *colon = strchr(line, ':');
        if (!colon || colon == line || is_ws(line[0])) {
            snprintf(err, errlen, "a multipart part header is malformed");
            return -1;
        }
        *colon = '\0';
        const char *val = colon + 1;
        if (strcasecmp(line, "Content-Disposition") == 0) {
            if (disposition || !media_is(val, "form-data")) {
                snprintf(err, errlen, "a multipart part is not one form-data field");
                return -1;
            }
            disposition = true;
            char fn[8];
            if (header_param(val, "filename", fn, sizeof fn) != 0) {
                snprintf(err, errlen, "a multipart part is a file, not a form field");
                return -1;
            }
            if (header_param(val, "name", name, FIELD_MAX + 1) != 1) {
                snprintf(err, errlen, "a multipart part has no usable name");
                return -1;
            }
        } else if (strcasecmp(line, "Content-Type") == 0) {
            if (!media_is(val, "text/plain")) {
                snprintf(err, errlen, "a multipart part is not text/plain");
                return -1;
            }
        }
    }
    if (!disposition) {
        snprintf(err, errlen, "a multipart part has no Content-Disposition");
        return -1;
    }
    return 0;
}

static pmx_unsub_form_result_t multipart(const char *ctype, const char *body, size_t len,
                                         char *err, size_t errlen)
{
    char boundary[BOUNDARY_MAX + 1];
    if (header_param(ctype, "boundary", boundary, sizeof boundary) != 1 || !boundary[0]) {
        snprintf(err, errlen, "multipart/form-data without a usable boundary");
        return PMX_UNSUB_FORM_BAD;
    }
    char delim[BOUNDARY_MAX + 5];   /* "\r\n--" boundary */
    int dl = snprintf(delim, sizeof delim, "\r\n--%s", boundary);
    size_t dlen = (size_t)dl;

    /* The first delimiter: at the start (no preamble) or after a preamble's CRLF. */
    size_t p;
    if (len >= dlen - 2 && memcmp(body, delim + 2, dlen - 2) == 0) {
        p = dlen - 2;
    } else {
        const char *d = memmem(body, len, delim, dlen);
        if (!d) {
            snprintf(err, errlen, "the multipart body has no boundary line");
            return PMX_UNSUB_FORM_BAD;
        }
        p = (size_t)(d - body) + dlen;
    }
    tally_t t = { 0, false };
    for (;;) {
        if (len - p >= 2 && memcmp(body + p, "--", 2) == 0)
            return tally_result(&t, err, errlen);   /* the close delimiter; the epilogue is ignored */
        while (p < len && is_ws(body[p])) p++;       /* transport padding */
        if (len - p < 2 || memcmp(body + p, "\r\n", 2) != 0) {
            snprintf(err, errlen, "the multipart body is malformed after a boundary");
            return PMX_UNSUB_FORM_BAD;
        }
        p += 2;
        const char *hend;
        size_t hlen;
        if (len - p >= 2 && memcmp(body + p, "\r\n", 2) == 0) {
            hend = body + p;                          /* no header lines */
            hlen = 0;
        } else {
            hend = memmem(body + p, len - p, "\r\n\r\n", 4);
            if (!hend) {
                snprintf(err, errlen, "a multipart part's header does not end");
                return PMX_UNSUB_FORM_BAD;
            }
            hlen = (size_t)(hend - (body + p)) + 2;   /* with the last line's CRLF */
            hend += 2;
        }
        char name[FIELD_MAX + 1];
        if (part_head(body + p, hlen, name, err, errlen) < 0) return PMX_UNSUB_FORM_BAD;
        size_t vs = (size_t)(hend - body) + 2;
        const char *d = memmem(body + vs, len - vs, delim, dlen);
        if (!d) {
            snprintf(err, errlen, "the multipart body does not end with its boundary");
            return PMX_UNSUB_FORM_BAD;
        }
        tally_add(&t, name, strlen(name), body + vs, (size_t)(d - (body + vs)));
        p = (size_t)(d - body) + dlen;
    }
}

/* ---- public ------------------------------------------------------------------------------ */

pmx_unsub_form_result_t pmx_unsub_form_check(const char *ctype, const char *body, size_t len,
                                             char *err, size_t errlen)
{
    if (ctype && media_is(ctype, "application/x-www-form-urlencoded"))
        return urlencoded(body, len, err, errlen);
    if (ctype && media_is(ctype, "multipart/form-data"))
        return multipart(ctype, body, len, err, errlen);
    snprintf(err, errlen, "send List-Unsubscribe=One-Click as application/x-www-form-urlencoded "
             "or multipart/form-data");
    return PMX_UNSUB_FORM_MEDIA;
}

void pmx_html_escape(pmx_buf_t *b, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '&':  pmx_buf_append_str(b, "&amp;"); break;
        case '<':  pmx_buf_append_str(b, "&lt;"); break;
        case '>':  pmx_buf_append_str(b, "&gt;"); break;
        case '"':  pmx_buf_append_str(b, "&quot;"); break;
        case '\'': pmx_buf_append_str(b, "&#39;"); break;
        default:
            if (*p >= 0x20 && *p != 0x7f) pmx_buf_append_char(b, (char)*p);
        }
    }
}

void pmx_unsub_mask_address(pmx_buf_t *b, const char *addr)
{
    const char *at = strrchr(addr, '@');
    if (!at || at == addr) {
        pmx_buf_append_str(b, "***");
        return;
    }
    size_t first = 1;
    unsigned char c = (unsigned char)addr[0];
    if (c >= 0xc0) {   /* a UTF-8 lead byte: keep the whole sequence */
        size_t want = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
        while (first < want && addr + first < at &&
               ((unsigned char)addr[first] & 0xc0) == 0x80)
            first++;
    }
    pmx_buf_append(b, addr, first);
    pmx_buf_append_str(b, "***");
    pmx_buf_append_str(b, at);
}
