/*
 * Message text: line endings, quoted-printable, base64 lines, header folding
 * and RFC 2047 encoded-words, SMTP dot-stuffing. See text.h for the rules;
 * each routine here is the only one in postmux for its syntax.
 */
#include <stdint.h>
#include <string.h>

#include "lib/addr.h"
#include "lib/encode.h"
#include "lib/swar.h"
#include "lib/text.h"
#include "lib/utf8.h"

static const char hexdigits[] = "0123456789ABCDEF";

static bool is_wsp(unsigned char c) { return c == ' ' || c == '\t'; }

/* ---- line endings ---- */

/*
 * The routines over whole bodies below find line ends with memchr and copy
 * whole lines; none appends an octet at a time (docs/bench.md, "Where the
 * time goes": on 100 KB newsletters the per-octet appends were a quarter of
 * the worker's CPU).
 */
void pmx_text_crlf(pmx_buf_t *out, const char *s, size_t n)
{
    pmx_buf_reserve(out, n + n / 16 + 2);
    size_t i = 0;
    while (i < n) {
        const char *lf = memchr(s + i, '\n', n - i);
        size_t e = lf ? (size_t)(lf - s) : n;
        /* a CR before e: a bare CR (a line end of its own) unless it is e's CRLF */
        const char *cr = memchr(s + i, '\r', e - i);
        if (cr && !(lf && cr == lf - 1)) {
            size_t c = (size_t)(cr - s);
            pmx_buf_append(out, s + i, c - i);
            pmx_buf_append(out, "\r\n", 2);
            i = c + 1;
            continue;
        }
        if (!lf) {
            pmx_buf_append(out, s + i, n - i);
            break;
        }
        size_t body = cr ? e - 1 : e;   /* without the CR of a CRLF */
        pmx_buf_reserve(out, body - i + 2);
        memcpy(out->data + out->len, s + i, body - i);
        out->len += body - i;
        out->data[out->len++] = '\r';
        out->data[out->len++] = '\n';
        out->data[out->len] = '\0';
        i = e + 1;
    }
}

bool pmx_text_is_crlf(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        const char *lf = memchr(s + i, '\n', n - i);
        size_t e = lf ? (size_t)(lf - s) : n;
        /* Between i and e the only CR may be the one right before e. */
        const char *cr = memchr(s + i, '\r', e - i);
        if (lf) {
            if (e == i || s[e - 1] != '\r') return false;
            if (cr && cr != lf - 1) return false;
        } else if (cr) {
            return false;
        }
        i = e + 1;
    }
    return true;
}

size_t pmx_text_longest_line(const char *s, size_t n)
{
    size_t longest = 0, start = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n') {
            if (i - start > longest) longest = i - start;
            start = i + 2;
            i++;
        }
    }
    if (n - start > longest) longest = n - start;
    return longest;
}

/* ---- body transfer encodings ---- */

/* Octets quoted-printable writes literally (SP/HTAB aside, see below). */
static bool qp_literal(unsigned char c)
{
    return c >= 33 && c <= 126 && c != '=';
}

/* Per octet: 1 = not 7bit text (8-bit, NUL, a CR or LF outside CRLF), 2 = escaped in QP. */
static uint8_t octet_class[256];

static void octet_class_init(void)
{
    if (octet_class['='] & 2) return;
    for (unsigned c = 0; c < 256; c++) {
        uint8_t k = 0;
        if (c >= 0x80 || c == 0 || c == '\r' || c == '\n') k |= 1;
        if (!qp_literal((unsigned char)c) && !is_wsp((unsigned char)c)) k |= 2;
        octet_class[c] = k;
    }
}

/* The octets among the eight at p that QP does not write as they are when
 * they stand inside a line: all but 33..126 without '=', and SP. (A space is
 * escaped only at the end of a line, which the octet path sees.) */
static inline __attribute__((always_inline)) uint64_t qp_special8(const char *p)
{
    uint64_t x = pmx_swar_load(p);
    return pmx_swar_lt(x, 32) | pmx_swar_gt(x, 126) | pmx_swar_eq(x, '=');
}

pmx_text_cte_t pmx_text_cte_choose(const char *s, size_t n)
{
    octet_class_init();
    size_t escapes = 0, line = 0, i = 0;
    bool seven = true;
    while (i < n) {
        /* Eight plain octets at a time; the plain ones before a word's first
         * special octet (HTML has a '=' every few) in one step too, not one
         * by one; the special one goes to the octet path. */
        while (i + 8 <= n) {
            uint64_t m = qp_special8(s + i);
            if (!m) {
                line += 8;
                i += 8;
                continue;
            }
            size_t run = pmx_swar_first(m);
            line += run;
            i += run;
            break;
        }
        if (i >= n) break;
        unsigned char c = (unsigned char)s[i];
        if (c == '\r' && i + 1 < n && s[i + 1] == '\n') {
            if (line > PMX_TEXT_LINE_MAX) seven = false;
            line = 0;
            i += 2;
            continue;
        }
        uint8_t k = octet_class[c];
        if (k & 1) seven = false;
        escapes += k >> 1;
        line++;
        i++;
    }
    if (line > PMX_TEXT_LINE_MAX) seven = false;
    if (seven) return PMX_TEXT_7BIT;
    return escapes * 6 <= n ? PMX_TEXT_QP : PMX_TEXT_BASE64;
}

const char *pmx_text_cte_name(pmx_text_cte_t cte)
{
    switch (cte) {
    case PMX_TEXT_7BIT:   return "7bit";
    case PMX_TEXT_QP:     return "quoted-printable";
    case PMX_TEXT_BASE64: return "base64";
    }
    return "7bit";
}

void pmx_text_qp_encode(pmx_buf_t *out, const char *s, size_t n)
{
    /* Worst case: every octet escaped (3), plus a soft break per 25 of them. */
    pmx_buf_reserve(out, n * 3 + (n / 25 + 1) * 3 + 8);
    char *w = out->data + out->len;
    size_t col = 0;
    for (size_t i = 0; i < n; i++) {
        /* Eight plain octets that fit on the line at a time, and the plain
         * ones before a word's first special octet in one step (eight are
         * copied, k kept: the reservation above has room); the special one
         * goes to the octet path. A space last in a run goes there too: it is
         * escaped if the line ends after it. */
        while (i + 8 <= n) {
            uint64_t m = qp_special8(s + i);
            if (!m && s[i + 7] != ' ' && col + 8 <= 75) {
                memcpy(w, s + i, 8);
                w += 8;
                col += 8;
                i += 8;
                continue;
            }
            size_t k = m ? pmx_swar_first(m) : 8;
            if (k && s[i + k - 1] == ' ') k--;
            if (k > 75 - col) k = 75 - col;
            memcpy(w, s + i, 8);
            w += k;
            col += k;
            i += k;
            break;
        }
        if (i >= n) break;
        unsigned char c = (unsigned char)s[i];
        if (c == '\r' && i + 1 < n && s[i + 1] == '\n') {
            *w++ = '\r';
            *w++ = '\n';
            col = 0;
            i++;
            continue;
        }
        bool literal = qp_literal(c);
        if (!literal && is_wsp(c))
            literal = !(i + 1 == n || (s[i + 1] == '\r' && i + 2 < n && s[i + 2] == '\n'));
        size_t len = literal ? 1 : 3;
        /* 75 octets + the '=' of a soft break = 76 per line. */
        if (col + len > 75) {
            *w++ = '=';
            *w++ = '\r';
            *w++ = '\n';
            col = 0;
        }
        if (literal) {
            *w++ = (char)c;
        } else {
            *w++ = '=';
            *w++ = hexdigits[c >> 4];
            *w++ = hexdigits[c & 15];
        }
        col += len;
    }
    out->len = (size_t)(w - out->data);
    out->data[out->len] = '\0';
}

void pmx_text_base64_lines(pmx_buf_t *out, const void *p, size_t n)
{
    const uint8_t *in = p;
    pmx_buf_reserve(out, (n + 2) / 3 * 4 + (n / 57 + 1) * 2);
    for (size_t off = 0; off < n; off += 57) {
        size_t k = n - off < 57 ? n - off : 57;   /* 57 octets -> 76 characters */
        pmx_base64_encode(out, in + off, k);
        pmx_buf_append(out, "\r\n", 2);
    }
}

/* ---- header fields ---- */

void pmx_text_hdr_begin(pmx_text_hdr_t *h, pmx_buf_t *out, const char *name)
{
    h->out = out;
    pmx_buf_append_str(out, name);
    pmx_buf_append_char(out, ':');
    h->col = strlen(name) + 1;
    h->line_words = 0;
}

/* Appends ws + word, folding (CRLF before ws) when the line would pass 78. */
static void put_word(pmx_text_hdr_t *h, const char *ws, size_t wsn, const char *s, size_t n)
{
    if (wsn == 0) {
        ws = " ";
        wsn = 1;
    }
    if (h->line_words > 0 && h->col + wsn + n > PMX_TEXT_FOLD_AT) {
        pmx_buf_append(h->out, "\r\n", 2);
        h->col = 0;
        h->line_words = 0;
    }
    pmx_buf_append(h->out, ws, wsn);
    pmx_buf_append(h->out, s, n);
    h->col += wsn + n;
    h->line_words++;
}

void pmx_text_hdr_word(pmx_text_hdr_t *h, const char *s, size_t n)
{
    put_word(h, " ", 1, s, n);
}

void pmx_text_hdr_glue(pmx_text_hdr_t *h, const char *s, size_t n)
{
    pmx_buf_append(h->out, s, n);
    h->col += n;
}

void pmx_text_hdr_end(pmx_text_hdr_t *h)
{
    pmx_buf_append(h->out, "\r\n", 2);
    h->col = 0;
    h->line_words = 0;
}

/* Octets RFC 2047 Q writes as themselves (the phrase-safe set, §5 (3)). */
static bool q_literal(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '!' || c == '*' || c == '+' || c == '-' || c == '/';
}

/* Octets of the next character: a whole UTF-8 sequence, or one stray octet. */
static size_t char_len(const char *s, size_t n)
{
    size_t k = pmx_utf8_seq(s, n, NULL);
    return k ? k : 1;
}

#define EW_PREFIX     "=?utf-8?"
#define EW_OVERHEAD   12   /* "=?utf-8?Q?" + "?=" */
#define EW_MAX        75   /* octets per encoded-word */
#define EW_LINE_MAX   76   /* octets per line holding encoded-words */

void pmx_text_hdr_encoded(pmx_text_hdr_t *h, const char *s, size_t n)
{
    size_t escapes = 0;
    for (size_t i = 0; i < n; i++)
        if (!q_literal((unsigned char)s[i]) && s[i] != ' ') escapes++;
    bool b = escapes * 6 > n;
    pmx_buf_t word = PMX_BUF_INIT;

    size_t i = 0;
    while (i < n) {
        /* Room for " " + the word on this line; fold first when a 4-octet character would not fit. */
        size_t cap = h->col + 1 < EW_LINE_MAX ? EW_LINE_MAX - h->col - 1 : 0;
        if (cap > EW_MAX) cap = EW_MAX;
        if (cap < EW_OVERHEAD + 12) {
            pmx_buf_append(h->out, "\r\n", 2);
            h->col = 0;
            h->line_words = 0;
            cap = EW_MAX;
        }
        size_t budget = cap - EW_OVERHEAD, take = 0;
        if (b) {
            size_t raw_max = budget / 4 * 3;
            while (i + take < n) {
                size_t k = char_len(s + i + take, n - i - take);
                if (take + k > raw_max) break;
                take += k;
            }
        } else {
            size_t enc = 0;
            while (i + take < n) {
                size_t k = char_len(s + i + take, n - i - take), cost = 0;
                for (size_t j = 0; j < k; j++) {
                    unsigned char c = (unsigned char)s[i + take + j];
                    cost += (q_literal(c) || c == ' ') ? 1 : 3;
                }
                if (enc + cost > budget) break;
                enc += cost;
                take += k;
            }
        }
        pmx_buf_reset(&word);
        pmx_buf_append_str(&word, b ? EW_PREFIX "B?" : EW_PREFIX "Q?");
        if (b) {
            pmx_base64_encode(&word, (const uint8_t *)s + i, take);
        } else {
            for (size_t j = i; j < i + take; j++) {
                unsigned char c = (unsigned char)s[j];
                if (c == ' ') {
                    pmx_buf_append_char(&word, '_');
                } else if (q_literal(c)) {
                    pmx_buf_append_char(&word, (char)c);
                } else {
                    char esc[3] = { '=', hexdigits[c >> 4], hexdigits[c & 15] };
                    pmx_buf_append(&word, esc, 3);
                }
            }
        }
        pmx_buf_append(&word, "?=", 2);
        pmx_buf_append_char(h->out, ' ');
        pmx_buf_append(h->out, word.data, word.len);
        h->col += 1 + word.len;
        h->line_words++;
        i += take;
    }
    pmx_buf_free(&word);
}

/*
 * True when s[0..n) must become encoded-words rather than stay as text: a
 * non-ASCII or control octet, "=?", or a token (a white space run and the
 * word after it, what folding keeps on one line) longer than max_token.
 */
static bool needs_encoding(const char *s, size_t n, size_t max_token)
{
    size_t token = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80 || (c < 0x20 && c != '\t') || c == 0x7f) return true;
        if (c == '=' && i + 1 < n && s[i + 1] == '?') return true;
        if (is_wsp(c) && i > 0 && !is_wsp((unsigned char)s[i - 1])) token = 0;
        if (++token > max_token) return true;
    }
    return false;
}

static void trim_wsp(const char **s, size_t *n)
{
    while (*n > 0 && is_wsp((unsigned char)(*s)[0])) { (*s)++; (*n)--; }
    while (*n > 0 && is_wsp((unsigned char)(*s)[*n - 1])) (*n)--;
}

/* Display names longer than this become encoded-words, which can be folded. */
#define PHRASE_PLAIN_MAX 200

void pmx_text_hdr_phrase(pmx_text_hdr_t *h, const char *s, size_t n)
{
    trim_wsp(&s, &n);
    if (n == 0) return;
    if (n > PHRASE_PLAIN_MAX || needs_encoding(s, n, PHRASE_PLAIN_MAX)) {
        pmx_text_hdr_encoded(h, s, n);
        return;
    }
    bool atoms = true;
    for (size_t i = 0; i < n && atoms; i++)
        atoms = pmx_addr_is_atext((unsigned char)s[i]) || is_wsp((unsigned char)s[i]);
    if (atoms) {
        size_t i = 0;
        while (i < n) {
            size_t ws = i;
            while (i < n && is_wsp((unsigned char)s[i])) i++;
            size_t w = i;
            while (i < n && !is_wsp((unsigned char)s[i])) i++;
            put_word(h, s + ws, w - ws, s + w, i - w);
        }
        return;
    }
    pmx_buf_t q = PMX_BUF_INIT;
    pmx_buf_append_char(&q, '"');
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\') pmx_buf_append_char(&q, '\\');
        pmx_buf_append_char(&q, s[i]);
    }
    pmx_buf_append_char(&q, '"');
    pmx_text_hdr_word(h, q.data, q.len);
    pmx_buf_free(&q);
}

void pmx_text_hdr_unstructured(pmx_buf_t *out, const char *name, const char *value, size_t n)
{
    pmx_text_hdr_t h;
    pmx_text_hdr_begin(&h, out, name);
    trim_wsp(&value, &n);
    size_t room = strlen(name) + 2 < PMX_TEXT_LINE_MAX ? PMX_TEXT_LINE_MAX - strlen(name) - 2 : 1;
    if (needs_encoding(value, n, room)) {
        pmx_text_hdr_encoded(&h, value, n);
    } else {
        size_t i = 0;
        while (i < n) {
            size_t ws = i;
            while (i < n && is_wsp((unsigned char)value[i])) i++;
            size_t w = i;
            while (i < n && !is_wsp((unsigned char)value[i])) i++;
            put_word(&h, value + ws, w - ws, value + w, i - w);
        }
    }
    pmx_text_hdr_end(&h);
}

/* ---- SMTP DATA ---- */

/*
 * The longest prefix of msg[0..n) that goes out as it is: it stops at a bare
 * CR or LF (written as CRLF), and right after a CRLF that a '.' follows (the
 * dot gets its double first). A '.' at msg[0] is the caller's business.
 */
static size_t dot_segment(const char *msg, size_t n)
{
    size_t i = 0;
    while (i < n) {
        const char *lf = memchr(msg + i, '\n', n - i);
        size_t e = lf ? (size_t)(lf - msg) : n;
        const char *cr = memchr(msg + i, '\r', e - i);
        if (cr && !(lf && cr == lf - 1)) return (size_t)(cr - msg);   /* a bare CR */
        if (!lf) return n;
        if (!cr) return e;                                            /* a bare LF */
        if (e + 1 < n && msg[e + 1] == '.') return e + 1;
        i = e + 1;
    }
    return n;
}

void pmx_text_dot_init(pmx_text_dot_t *d, const char *msg, size_t n)
{
    *d = (pmx_text_dot_t){ .msg = msg, .n = n, .bol = true };
}

bool pmx_text_dot_next(pmx_text_dot_t *d, const char **p, size_t *len)
{
    if (d->done) return false;
    if (d->i >= d->n) {
        bool bol = d->n == 0 || d->msg[d->n - 1] == '\n' || d->msg[d->n - 1] == '\r';
        *p = bol ? ".\r\n" : "\r\n.\r\n";
        *len = strlen(*p);
        d->done = true;
        return true;
    }
    const char *m = d->msg + d->i;
    if (d->bol && *m == '.' && !d->dotted) {
        *p = ".";
        *len = 1;
        d->dotted = true;
        return true;
    }
    d->dotted = false;
    size_t k = dot_segment(m, d->n - d->i);
    if (k == 0) {   /* a bare CR or LF */
        *p = "\r\n";
        *len = 2;
        d->i++;
        d->bol = true;
        return true;
    }
    *p = m;
    *len = k;
    d->i += k;
    d->bol = m[k - 1] == '\n';
    return true;
}

void pmx_text_dot_stuff(pmx_buf_t *out, const char *msg, size_t n)
{
    pmx_buf_reserve(out, n + n / 64 + 8);
    pmx_text_dot_t d;
    pmx_text_dot_init(&d, msg, n);
    const char *p;
    size_t len;
    while (pmx_text_dot_next(&d, &p, &len)) pmx_buf_append(out, p, len);
}

int pmx_text_dot_unstuff(pmx_buf_t *out, const char *data, size_t n)
{
    size_t base = out->len, i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && data[j] != '\r' && data[j] != '\n') j++;
        if (j + 1 >= n || data[j] != '\r' || data[j + 1] != '\n') break;   /* bare CR/LF or no CRLF */
        if (j - i == 1 && data[i] == '.') {
            if (j + 2 != n) break;   /* something after the terminator */
            return 0;
        }
        size_t skip = data[i] == '.' ? 1 : 0;
        pmx_buf_append(out, data + i + skip, j + 2 - i - skip);
        i = j + 2;
    }
    out->len = base;
    if (out->data) out->data[base] = '\0';
    return -1;
}
