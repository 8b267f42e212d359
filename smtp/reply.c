/*
 * SMTP reply parsing and formatting; see reply.h. The parser is written for
 * hostile input: it works on (pointer, length), never on C strings, checks
 * every line against RFC 5321's reply syntax before keeping anything, and
 * bounds what it accepts, so a caller can feed it a growing read buffer.
 */
#include "smtp/reply.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

void pmx_smtp_reply_init(pmx_smtp_reply_t *r)
{
    memset(r, 0, sizeof *r);
    pmx_buf_init(&r->text);
}

void pmx_smtp_reply_free(pmx_smtp_reply_t *r)
{
    pmx_buf_free(&r->text);
    r->code = 0;
    r->nlines = 0;
    r->enhanced[0] = '\0';
}

const char *pmx_smtp_reply_strerror(int err)
{
    switch (err) {
    case PMX_SMTP_REPLY_EBADCODE:  return "reply line without a valid 3-digit code";
    case PMX_SMTP_REPLY_EBADSEP:   return "reply code not followed by space, '-' or end of line";
    case PMX_SMTP_REPLY_EMISMATCH: return "multi-line reply with different codes";
    case PMX_SMTP_REPLY_ETOOLONG:  return "reply line too long";
    case PMX_SMTP_REPLY_ETOOMANY:  return "reply with too many lines";
    default:                       return "bad reply";
    }
}

/*
 * Checks the first min(n, 4) bytes of a line: a code whose digits are in
 * range, then ' ', '-' or nothing. Works on incomplete lines too, so garbage
 * is refused as soon as its first bytes arrive.
 */
static int check_line_start(const unsigned char *p, size_t n)
{
    if (n > 0 && (p[0] < '2' || p[0] > '5')) return PMX_SMTP_REPLY_EBADCODE;
    if (n > 1 && (p[1] < '0' || p[1] > '5')) return PMX_SMTP_REPLY_EBADCODE;
    if (n > 2 && (p[2] < '0' || p[2] > '9')) return PMX_SMTP_REPLY_EBADCODE;
    if (n > 3 && p[3] != ' ' && p[3] != '-') return PMX_SMTP_REPLY_EBADSEP;
    return 0;
}

/* Length of the valid UTF-8 sequence at p[0..n) (2-4 bytes), or 0. */
static size_t utf8_seq_len(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    size_t len;
    unsigned min;
    unsigned cp;
    if (c >= 0xc2 && c <= 0xdf) { len = 2; cp = c & 0x1f; min = 0x80; }
    else if (c >= 0xe0 && c <= 0xef) { len = 3; cp = c & 0x0f; min = 0x800; }
    else if (c >= 0xf0 && c <= 0xf4) { len = 4; cp = c & 0x07; min = 0x10000; }
    else return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return len;
}

/* Appends p[0..n) with tabs as spaces and other control bytes / bad UTF-8 as '?'. */
static void append_sanitised(pmx_buf_t *out, const unsigned char *p, size_t n)
{
    pmx_buf_reserve(out, n);
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        if (c >= 0x20 && c < 0x7f) {
            size_t j = i + 1;
            while (j < n && p[j] >= 0x20 && p[j] < 0x7f) j++;
            pmx_buf_append(out, p + i, j - i);
            i = j;
        } else if (c == '\t') {
            pmx_buf_append_char(out, ' ');
            i++;
        } else if (c >= 0x80) {
            size_t len = utf8_seq_len(p + i, n - i);
            if (len) {
                pmx_buf_append(out, p + i, len);
                i += len;
            } else {
                pmx_buf_append_char(out, '?');
                i++;
            }
        } else {
            pmx_buf_append_char(out, '?');
            i++;
        }
    }
}

/* "D.D{1,3}.D{1,3}" at the start of p[0..n), followed by space or end; class must be cls. */
static size_t parse_enhanced(const char *p, size_t n, char cls)
{
    size_t i = 0;
    if (n < 5 || p[0] != cls || p[1] != '.') return 0;
    i = 2;
    for (int part = 0; part < 2; part++) {
        size_t start = i;
        while (i < n && i - start < 4 && p[i] >= '0' && p[i] <= '9') i++;
        if (i == start || i - start > 3) return 0;
        if (part == 0) {
            if (i >= n || p[i] != '.') return 0;
            i++;
        }
    }
    if (i < n && p[i] != ' ') return 0;
    return i;
}

int pmx_smtp_reply_parse(pmx_smtp_reply_t *r, const char *in, size_t n, size_t *used)
{
    const unsigned char *u = (const unsigned char *)in;
    size_t pos = 0;
    int code = -1;

    *used = 0;
    pmx_buf_reset(&r->text);
    r->nlines = 0;
    r->code = 0;
    r->enhanced[0] = '\0';

    for (;;) {
        size_t avail = n - pos;
        size_t scan = avail < PMX_SMTP_REPLY_LINE_MAX ? avail : PMX_SMTP_REPLY_LINE_MAX;
        const unsigned char *lf = memchr(u + pos, '\n', scan);
        if (!lf) {
            /* "354\r" may still become "354\r\n": the CR is not checked as a separator yet. */
            size_t chk = avail == 4 && u[pos + 3] == '\r' ? 3 : avail;
            int rc = check_line_start(u + pos, chk);
            if (rc < 0) return rc;
            if (avail >= PMX_SMTP_REPLY_LINE_MAX) return PMX_SMTP_REPLY_ETOOLONG;
            return 0;
        }
        size_t linelen = (size_t)(lf - (u + pos)) + 1;     /* with the LF */
        size_t clen = linelen - 1;                          /* without the line ending */
        if (clen > 0 && u[pos + clen - 1] == '\r') clen--;
        if (clen < 3) return PMX_SMTP_REPLY_EBADCODE;
        int rc = check_line_start(u + pos, clen);
        if (rc < 0) return rc;
        int this_code = (u[pos] - '0') * 100 + (u[pos + 1] - '0') * 10 + (u[pos + 2] - '0');
        bool last = clen == 3 || u[pos + 3] == ' ';
        if (code < 0) code = this_code;
        else if (code != this_code) return PMX_SMTP_REPLY_EMISMATCH;
        if (++r->nlines > PMX_SMTP_REPLY_LINES_MAX) return PMX_SMTP_REPLY_ETOOMANY;
        if (r->nlines > 1) pmx_buf_append_char(&r->text, '\n');
        append_sanitised(&r->text, u + pos, clen);
        pos += linelen;
        if (last) break;
    }

    r->code = code;
    /* The enhanced code, if any, follows the first line's "DDD " / "DDD-". */
    const char *t = pmx_buf_cstr(&r->text);
    size_t first = strcspn(t, "\n");
    if (first > 4) {
        size_t elen = parse_enhanced(t + 4, first - 4, (char)('0' + code / 100));
        if (elen && elen < sizeof r->enhanced) {
            memcpy(r->enhanced, t + 4, elen);
            r->enhanced[elen] = '\0';
        }
    }
    *used = pos;
    return 1;
}

void pmx_smtp_reply_format(pmx_buf_t *out, int code, const char *enhanced, const char *text)
{
    if (!text) text = "";
    bool has_enh = enhanced && *enhanced;
    const char *p = text;
    for (;;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        pmx_buf_appendf(out, "%03d%c", code, nl ? '-' : ' ');
        if (has_enh) {
            pmx_buf_append_str(out, enhanced);
            if (len) pmx_buf_append_char(out, ' ');
        }
        for (size_t i = 0; i < len; i++)
            if (p[i] != '\r') pmx_buf_append_char(out, p[i]);
        pmx_buf_append(out, "\r\n", 2);
        if (!nl) break;
        p = nl + 1;
    }
}

/* Does word (length wlen) equal keyword, ignoring case? */
static bool word_is(const char *word, size_t wlen, const char *keyword)
{
    return strlen(keyword) == wlen && strncasecmp(word, keyword, wlen) == 0;
}

/* Reads the AUTH mechanism list p[0..n) (space-separated). */
static unsigned parse_auth_mechs(const char *p, size_t n)
{
    unsigned mechs = 0;
    size_t i = 0;
    while (i < n) {
        while (i < n && p[i] == ' ') i++;
        size_t start = i;
        while (i < n && p[i] != ' ') i++;
        if (word_is(p + start, i - start, "PLAIN")) mechs |= PMX_SMTP_AUTH_PLAIN;
        else if (word_is(p + start, i - start, "LOGIN")) mechs |= PMX_SMTP_AUTH_LOGIN;
    }
    return mechs;
}

/* SIZE's parameter: digits only, no overflow; else 0 (no limit known). */
static uint64_t parse_size(const char *p, size_t n)
{
    while (n && *p == ' ') { p++; n--; }
    uint64_t v = 0;
    size_t i = 0;
    for (; i < n && p[i] >= '0' && p[i] <= '9'; i++) {
        if (v > (UINT64_MAX - 9) / 10) return 0;
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    if (i == 0 || (i < n && p[i] != ' ')) return 0;
    return v;
}

void pmx_smtp_ehlo_parse(const pmx_smtp_reply_t *r, pmx_smtp_ehlo_t *out)
{
    memset(out, 0, sizeof *out);
    const char *t = pmx_buf_cstr(&r->text);
    const char *end = t + r->text.len;
    const char *line = memchr(t, '\n', r->text.len);
    while (line && line < end) {
        line++;                                    /* past '\n' */
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol) eol = end;
        if (eol - line > 4) {
            const char *kw = line + 4;
            size_t kwlen = 0;
            while (kw + kwlen < eol && kw[kwlen] != ' ' && kw[kwlen] != '=') kwlen++;
            const char *param = kw + kwlen;
            size_t plen = (size_t)(eol - param);
            if (plen) { param++; plen--; }          /* the ' ' or '=' */
            if (word_is(kw, kwlen, "PIPELINING")) out->ext |= PMX_SMTP_EXT_PIPELINING;
            else if (word_is(kw, kwlen, "8BITMIME")) out->ext |= PMX_SMTP_EXT_8BITMIME;
            else if (word_is(kw, kwlen, "SMTPUTF8")) out->ext |= PMX_SMTP_EXT_SMTPUTF8;
            else if (word_is(kw, kwlen, "STARTTLS")) out->ext |= PMX_SMTP_EXT_STARTTLS;
            else if (word_is(kw, kwlen, "ENHANCEDSTATUSCODES")) out->ext |= PMX_SMTP_EXT_ENHANCED;
            else if (word_is(kw, kwlen, "DSN")) out->ext |= PMX_SMTP_EXT_DSN;
            else if (word_is(kw, kwlen, "CHUNKING")) out->ext |= PMX_SMTP_EXT_CHUNKING;
            else if (word_is(kw, kwlen, "SIZE")) {
                out->ext |= PMX_SMTP_EXT_SIZE;
                out->size_max = parse_size(param, plen);
            } else if (word_is(kw, kwlen, "AUTH")) {
                out->ext |= PMX_SMTP_EXT_AUTH;
                out->auth |= parse_auth_mechs(param, plen);
            }
        }
        line = eol < end ? eol : NULL;
    }
}
