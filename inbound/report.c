/*
 * The report parser; see report.h for the interface and its limits.
 *
 * Why a hand-written MIME walker and not GMime (docs/feedback.md,
 * "Dependency"): a report needs only header fields and the bodies of three
 * or four parts; walking the MIME tree over the input bytes without copying
 * (decoding only base64 / quoted-printable parts into the report's arena) is
 * several times faster than building GMime's object tree, and keeps GLib out
 * of the workers.
 *
 * The walk collects what each part offers: the per-recipient groups of a
 * message/delivery-status part, the fields of a message/feedback-report part,
 * the header of the returned original, the first text parts. A decision then
 * picks the kind in this order: a DSN with recipients; an ARF report; an
 * Outlook.com JMRP complaint; an Amazon SES JSON notification; a
 * plain-text bounce from a mailer daemon (or with X-Failed-Recipients); an
 * auto-reply (RFC 3834 fields or an out-of-office subject); a plain-text
 * bounce recognised by its wording; else unknown. Plain-text bounces are read
 * by one generic reader (lines that start with an address open a recipient's
 * block; the quoted original starts at the first of the markers MTAs write),
 * not one routine per MTA.
 *
 * One file of about 1,300 lines, on purpose: the walk, the decisions and the
 * plain-text reader share one context and one set of small helpers (spans,
 * the arena, the field reader, the address reader); splitting them would turn
 * those into a second, internal interface for no reader's benefit. The file
 * reads top to bottom: arena, text helpers, header fields, Content-Type,
 * decodings, addresses, the walk, the decisions, the original's fields.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "inbound/report.h"
#include "lib/mem.h"
#include "lib/utf8.h"

#define TEXTS_MAX       4           /* text parts kept for the plain-text reader */
#define SCAN_MAX        (256 * 1024)/* octets of a text part the plain-text reader reads */
#define ADDR_MAX        254
#define FIELD_MAX       998         /* octets kept of a Message-ID, return path, ... */
#define ARF_RCPTS_MAX   16

typedef struct {
    const char *p;
    size_t      n;
} span_t;

/* ---- arena ------------------------------------------------------------------------ */

typedef struct chunk {
    struct chunk *next;
    size_t        used, cap;
    char          data[];
} chunk_t;

static char *arena_alloc(pmx_fb_report_t *r, size_t n)
{
    chunk_t *c = r->arena;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > 16384 ? n : 16384;
        chunk_t *nc = pmx_xmalloc(sizeof *nc + cap);
        nc->cap = cap;
        nc->used = 0;
        nc->next = c;
        r->arena = c = nc;
    }
    char *p = c->data + c->used;
    c->used += n;
    return p;
}

void pmx_fb_report_free(pmx_fb_report_t *r)
{
    chunk_t *c = r->arena;
    while (c) {
        chunk_t *next = c->next;
        free(c);
        c = next;
    }
    r->arena = NULL;
}

const char *pmx_fb_kind_name(pmx_fb_kind_t k)
{
    switch (k) {
    case PMX_FB_KIND_BOUNCE:     return "bounce";
    case PMX_FB_KIND_DELAY:      return "delay";
    case PMX_FB_KIND_COMPLAINT:  return "complaint";
    case PMX_FB_KIND_AUTO_REPLY: return "auto_reply";
    case PMX_FB_KIND_UNKNOWN:    break;
    }
    return "unknown";
}

/*
 * Copies s[0..n) into the arena as a clean one-line string: white space and
 * control runs become one space, ends trimmed, invalid UTF-8 becomes U+FFFD,
 * at most max octets (cut on a character boundary). NULL when nothing is left.
 */
static const char *clean(pmx_fb_report_t *r, const char *s, size_t n, size_t max)
{
    if (!s) return NULL;
    char *out = arena_alloc(r, (n < max ? n : max) * 3 + 4);
    size_t o = 0;
    bool space = true;
    for (size_t i = 0; i < n && o < max;) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || c == ' ') {
            if (!space) out[o++] = ' ';
            space = true;
            i++;
            continue;
        }
        size_t len = c < 0x80 ? 1 : pmx_utf8_seq(s + i, n - i, NULL);
        if (len == 0) {
            if (o + 3 > max) break;
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        } else {
            if (o + len > max) break;
            memcpy(out + o, s + i, len);
            o += len;
            i += len;
        }
        space = false;
    }
    while (o && out[o - 1] == ' ') o--;
    out[o] = '\0';
    return o ? out : NULL;
}

/* ---- small text helpers ------------------------------------------------------ */

static bool ieq(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && strncasecmp(s, lit, n) == 0;
}

static bool istarts(const char *s, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    return n >= l && strncasecmp(s, lit, l) == 0;
}

static span_t trim(span_t s)
{
    while (s.n && isspace((unsigned char)s.p[0])) s.p++, s.n--;
    while (s.n && isspace((unsigned char)s.p[s.n - 1])) s.n--;
    return s;
}

/* Lower-cases s[0..n) (ASCII) into the arena, NUL-terminated. */
static char *lower_copy(pmx_fb_report_t *r, const char *s, size_t n)
{
    char *out = arena_alloc(r, n + 1);
    for (size_t i = 0; i < n; i++) out[i] = (char)tolower((unsigned char)s[i]);
    out[n] = '\0';
    return out;
}

/* memmem for a NUL-terminated needle. */
static const char *find(const char *h, size_t n, const char *needle)
{
    return memmem(h, n, needle, strlen(needle));
}

/* ---- header fields -------------------------------------------------------------- */

typedef struct {
    span_t name;
    span_t value;   /* raw: may hold folded line breaks */
} field_t;

enum { F_END = 0, F_FIELD = 1, F_BLANK = 2 };

/* End of the line starting at p: points at its '\n' or at end. */
static const char *eol(const char *p, const char *end)
{
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    return nl ? nl : end;
}

static bool blank_line(const char *p, const char *e)
{
    return e == p || (e - p == 1 && *p == '\r');
}

/*
 * Reads the next header field at *pp. Returns F_FIELD with *f (continuation
 * lines included), F_BLANK after a blank line, F_END at the end. A line that
 * is not a field (no name, a name with spaces, an orphan continuation) is
 * skipped.
 */
static int next_field(const char **pp, const char *end, field_t *f)
{
    const char *p = *pp;
    while (p < end) {
        const char *e = eol(p, end);
        const char *next = e < end ? e + 1 : end;
        if (blank_line(p, e)) {
            *pp = next;
            return F_BLANK;
        }
        if (*p == ' ' || *p == '\t') {
            p = next;
            continue;
        }
        const char *colon = memchr(p, ':', (size_t)(e - p));
        size_t nl = colon ? (size_t)(colon - p) : 0;
        while (nl && (p[nl - 1] == ' ' || p[nl - 1] == '\t')) nl--;
        bool ok = nl > 0;
        for (size_t i = 0; ok && i < nl; i++)
            if ((unsigned char)p[i] <= 32 || (unsigned char)p[i] >= 127) ok = false;
        if (!ok) {
            p = next;
            continue;
        }
        f->name.p = p;
        f->name.n = nl;
        f->value.p = colon + 1;
        const char *vend = e;
        while (next < end && (*next == ' ' || *next == '\t')) {
            const char *e2 = eol(next, end);
            if (blank_line(next, e2)) break;   /* white space only: not a fold we read */
            vend = e2;
            next = e2 < end ? e2 + 1 : end;
        }
        f->value.n = (size_t)(vend - f->value.p);
        if (f->value.n && f->value.p[f->value.n - 1] == '\r') f->value.n--;
        *pp = next;
        return F_FIELD;
    }
    *pp = end;
    return F_END;
}

/* Where the body starts: after the blank line that ends the header (or at end). */
static const char *body_start(const char *p, const char *end)
{
    field_t f;
    int k;
    while ((k = next_field(&p, end, &f)) == F_FIELD) {}
    return p;
}

/* ---- Content-Type --------------------------------------------------------------- */

typedef struct {
    char   type[64];        /* "multipart/report", lower-case; "" when none */
    char   report_type[40];
    char   boundary[201];
} ctype_t;

/* Copies token or quoted-string at *pp into out (cut to cap-1), moves *pp past it. */
static void param_value(const char **pp, const char *end, char *out, size_t cap, bool lower)
{
    const char *p = *pp;
    size_t o = 0;
    if (p < end && *p == '"') {
        p++;
        while (p < end && *p != '"') {
            if (*p == '\\' && p + 1 < end) p++;
            if (o + 1 < cap && *p != '\r' && *p != '\n') out[o++] = lower ? (char)tolower((unsigned char)*p) : *p;
            p++;
        }
        if (p < end) p++;
    } else {
        while (p < end && *p != ';' && !isspace((unsigned char)*p)) {
            if (o + 1 < cap) out[o++] = lower ? (char)tolower((unsigned char)*p) : *p;
            p++;
        }
    }
    out[o] = '\0';
    *pp = p;
}

static void parse_ctype(span_t v, ctype_t *ct)
{
    ct->type[0] = ct->report_type[0] = ct->boundary[0] = '\0';
    if (!v.p) return;   /* no Content-Type field */
    const char *p = v.p, *end = v.p + v.n;
    while (p < end && isspace((unsigned char)*p)) p++;
    size_t o = 0;
    while (p < end && *p != ';' && !isspace((unsigned char)*p)) {
        if (o + 1 < sizeof ct->type) ct->type[o++] = (char)tolower((unsigned char)*p);
        p++;
    }
    ct->type[o] = '\0';
    while (p < end) {
        while (p < end && (*p == ';' || isspace((unsigned char)*p))) p++;
        const char *name = p;
        while (p < end && *p != '=' && *p != ';' && !isspace((unsigned char)*p)) p++;
        size_t nn = (size_t)(p - name);
        while (p < end && isspace((unsigned char)*p)) p++;
        if (p >= end || *p != '=') continue;
        p++;
        while (p < end && isspace((unsigned char)*p)) p++;
        char junk[2];
        if (ieq(name, nn, "boundary"))
            param_value(&p, end, ct->boundary, sizeof ct->boundary, false);
        else if (ieq(name, nn, "report-type"))
            param_value(&p, end, ct->report_type, sizeof ct->report_type, true);
        else
            param_value(&p, end, junk, sizeof junk, false);
    }
}

/* ---- transfer decodings (lenient: strangers' input) -------------------------------- */

static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

static span_t decode_base64(pmx_fb_report_t *r, span_t in)
{
    char *out = arena_alloc(r, in.n / 4 * 3 + 4);
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < in.n; i++) {
        unsigned char c = (unsigned char)in.p[i];
        if (c == '=') break;
        int v = b64val(c);
        if (v < 0) continue;
        acc = (acc << 6 | (unsigned)v) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)(acc >> bits & 0xff);
        }
    }
    return (span_t){ out, o };
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static span_t decode_qp(pmx_fb_report_t *r, span_t in, bool underscore_space)
{
    char *out = arena_alloc(r, in.n + 1);
    size_t o = 0;
    for (size_t i = 0; i < in.n; i++) {
        char c = in.p[i];
        if (c == '=' && i + 2 < in.n + 0 && hexval((unsigned char)in.p[i + 1]) >= 0
            && hexval((unsigned char)in.p[i + 2]) >= 0) {
            out[o++] = (char)(hexval((unsigned char)in.p[i + 1]) << 4 | hexval((unsigned char)in.p[i + 2]));
            i += 2;
        } else if (c == '=' && i + 1 < in.n && (in.p[i + 1] == '\n' || in.p[i + 1] == '\r')) {
            i++;
            if (in.p[i] == '\r' && i + 1 < in.n && in.p[i + 1] == '\n') i++;
        } else if (c == '_' && underscore_space) {
            out[o++] = ' ';
        } else {
            out[o++] = c;
        }
    }
    return (span_t){ out, o };
}

/* The body of a part as its Content-Transfer-Encoding says. */
static span_t decode_body(pmx_fb_report_t *r, span_t cte, span_t body)
{
    cte = trim(cte);
    if (ieq(cte.p, cte.n, "base64")) return decode_base64(r, body);
    if (ieq(cte.p, cte.n, "quoted-printable")) return decode_qp(r, body, false);
    return body;
}

/*
 * Decodes RFC 2047 encoded-words of a header value (charset ignored: only the
 * ASCII words of a Subject are looked at), for the out-of-office test.
 */
static span_t decode_words(pmx_fb_report_t *r, span_t v)
{
    if (!find(v.p, v.n, "=?")) return v;
    char *out = arena_alloc(r, v.n + 1);
    size_t o = 0;
    for (size_t i = 0; i < v.n;) {
        if (v.p[i] == '=' && i + 1 < v.n && v.p[i + 1] == '?') {
            const char *p = v.p + i + 2, *end = v.p + v.n;
            const char *q1 = memchr(p, '?', (size_t)(end - p));
            const char *q2 = q1 && q1 + 2 < end && q1[2] == '?' ? q1 + 2 : NULL;
            const char *fin = q2 ? find(q2 + 1, (size_t)(end - q2 - 1), "?=") : NULL;
            if (fin) {
                span_t text = { q2 + 1, (size_t)(fin - q2 - 1) };
                char enc = (char)tolower((unsigned char)q1[1]);
                span_t d = enc == 'b' ? decode_base64(r, text) : decode_qp(r, text, true);
                memcpy(out + o, d.p, d.n < v.n - o ? d.n : v.n - o);
                o += d.n < v.n - o ? d.n : v.n - o;
                i = (size_t)(fin + 2 - v.p);
                continue;
            }
        }
        out[o++] = v.p[i++];
    }
    return (span_t){ out, o };
}

/* ---- addresses ------------------------------------------------------------------- */

static bool atext(unsigned char c)
{
    return isalnum(c) || c >= 0x80 || strchr("!#$%&'*+-/=?^_`{|}~.", c);
}

/*
 * Reads an address at s[0..n): "<local@domain>" or local@domain (ends at white
 * space or one of :;,<>()[]"). Returns its length in s (0 = none) and the bare
 * address in *a. The domain needs a dot (or is an [address literal]).
 */
static size_t read_addr(const char *s, size_t n, span_t *a)
{
    size_t i = 0;
    bool angle = n && s[0] == '<';
    if (angle) i++;
    size_t start = i;
    while (i < n && atext((unsigned char)s[i])) i++;
    if (i == start || i >= n || s[i] != '@') return 0;
    size_t at = i++;
    size_t dstart = i;
    bool dot = false;
    if (i < n && s[i] == '[') {
        const char *rb = memchr(s + i, ']', n - i);
        if (!rb) return 0;
        i = (size_t)(rb - s) + 1;
        dot = true;
    } else {
        while (i < n && (isalnum((unsigned char)s[i]) || s[i] == '-' || s[i] == '.'
                         || (unsigned char)s[i] >= 0x80)) {
            if (s[i] == '.') dot = true;
            i++;
        }
        while (i > dstart && s[i - 1] == '.') i--;
        dot = memchr(s + dstart, '.', i - dstart) != NULL;
    }
    if (!dot || i == dstart || at == start || i - start > ADDR_MAX) return 0;
    if (s[start] == '.' || s[at - 1] == '.') return 0;
    /* Non-ASCII only as well-formed UTF-8 (RFC 6531): never mended in an address. */
    if (!pmx_utf8_valid(s + start, i - start)) return 0;
    a->p = s + start;
    a->n = i - start;
    if (angle) {
        if (i < n && s[i] == '>') i++;
        else return 0;
    }
    return i;
}

/* The address of an address-type field value ("rfc822; a@b", "<a@b>", "Name <a@b>"). */
static bool field_addr(span_t v, span_t *a)
{
    v = trim(v);
    const char *semi = memchr(v.p, ';', v.n);
    if (semi) {
        v.n -= (size_t)(semi + 1 - v.p);
        v.p = semi + 1;
        v = trim(v);
    }
    const char *lt = memchr(v.p, '<', v.n);
    if (lt) return read_addr(lt, (size_t)(v.p + v.n - lt), a) > 0;
    /* A bare address, possibly followed by a comment. */
    return read_addr(v.p, v.n, a) > 0;
}

static const char *store_addr(pmx_fb_report_t *r, span_t a)
{
    char *s = lower_copy(r, a.p, a.n);
    return clean(r, s, a.n, ADDR_MAX);
}

/* ---- the walk ------------------------------------------------------------------ */

typedef struct {
    span_t final, orig, action, status, diag;
} dsn_rcpt_t;

typedef struct {
    pmx_fb_report_t      *r;
    const pmx_fb_rules_t *rules;
    int                   parts;
    /* top-level header */
    span_t from, to, subject, auto_submitted, precedence;
    bool   x_autoreply;
    span_t failed_rcpts[8];
    int    nfailed;
    /* what the parts gave */
    dsn_rcpt_t drc[PMX_FB_RCPTS_MAX];
    int        ndrc;
    bool       in_rcpt;       /* the last DSN group opened a recipient */
    span_t     dsn_sender, dsn_msgid;
    bool       has_arf;
    span_t     feedback_type, arf_mail_from;
    span_t     arf_rcpts[ARF_RCPTS_MAX];
    int        narf;
    span_t     orig_hdr;
    bool       have_orig;
    span_t     texts[TEXTS_MAX];
    int        ntexts;
    size_t     cut;           /* where texts[0] quotes the original; SIZE_MAX = not yet known */
    const char *lc;           /* texts[0] lower-cased, once known */
} ctx_t;

static dsn_rcpt_t *dsn_new(ctx_t *c)
{
    if (c->ndrc >= PMX_FB_RCPTS_MAX) return NULL;
    dsn_rcpt_t *d = &c->drc[c->ndrc++];
    memset(d, 0, sizeof *d);
    c->in_rcpt = true;
    return d;
}

/* A message/delivery-status body: per-message fields, then one group per recipient. */
static void parse_dsn(ctx_t *c, span_t body)
{
    const char *p = body.p, *end = body.p + body.n;
    field_t f;
    int k;
    dsn_rcpt_t *cur = NULL;
    c->in_rcpt = false;
    while ((k = next_field(&p, end, &f)) != F_END) {
        if (k == F_BLANK) {
            cur = NULL;
            continue;
        }
        span_t *slot = NULL;
        bool opens = false;
        if (ieq(f.name.p, f.name.n, "final-recipient")) slot = cur ? &cur->final : NULL, opens = true;
        else if (ieq(f.name.p, f.name.n, "original-recipient")) slot = cur ? &cur->orig : NULL, opens = true;
        else if (ieq(f.name.p, f.name.n, "action")) slot = cur ? &cur->action : NULL;
        else if (ieq(f.name.p, f.name.n, "status")) slot = cur ? &cur->status : NULL;
        else if (ieq(f.name.p, f.name.n, "diagnostic-code")) slot = cur ? &cur->diag : NULL;
        else if (ieq(f.name.p, f.name.n, "x-postfix-sender")) { c->dsn_sender = f.value; continue; }
        else if (ieq(f.name.p, f.name.n, "x-original-message-id")) { c->dsn_msgid = f.value; continue; }
        else continue;
        /* A recipient field opens a group when none is open or its slot is taken
         * (reports that leave out the blank line between recipients). */
        if (opens && (!cur || slot->p)) {
            cur = dsn_new(c);
            if (!cur) return;
            slot = ieq(f.name.p, f.name.n, "final-recipient") ? &cur->final : &cur->orig;
        } else if (!cur) {
            continue;     /* a per-recipient field before any recipient */
        }
        if (!slot->p) *slot = f.value;
    }
}

static void parse_arf(ctx_t *c, span_t body)
{
    const char *p = body.p, *end = body.p + body.n;
    field_t f;
    int k;
    c->has_arf = true;
    while ((k = next_field(&p, end, &f)) != F_END) {
        if (k != F_FIELD) continue;
        if (ieq(f.name.p, f.name.n, "feedback-type") && !c->feedback_type.p) c->feedback_type = f.value;
        else if (ieq(f.name.p, f.name.n, "original-mail-from") && !c->arf_mail_from.p) c->arf_mail_from = f.value;
        else if ((ieq(f.name.p, f.name.n, "original-rcpt-to") || ieq(f.name.p, f.name.n, "removal-recipient"))
                 && c->narf < ARF_RCPTS_MAX)
            c->arf_rcpts[c->narf++] = f.value;
    }
}

static void walk(ctx_t *c, span_t part, int depth, bool top);

/* Splits a multipart body at its delimiter lines and walks each part. */
static void walk_multipart(ctx_t *c, span_t body, const char *boundary, int depth)
{
    char delim[204];
    size_t dn = (size_t)snprintf(delim, sizeof delim, "--%s", boundary);
    const char *p = body.p, *end = body.p + body.n, *part = NULL;
    while (p < end) {
        const char *hit = memmem(p, (size_t)(end - p), delim, dn);
        if (!hit) break;
        if (hit != body.p && hit[-1] != '\n') {
            p = hit + 1;
            continue;
        }
        const char *after = hit + dn;
        bool closing = end - after >= 2 && after[0] == '-' && after[1] == '-';
        if (part) {
            /* The line break before the delimiter belongs to the delimiter. */
            const char *pe = hit;
            if (pe > part && pe[-1] == '\n') pe--;
            if (pe > part && pe[-1] == '\r') pe--;
            walk(c, (span_t){ part, (size_t)(pe - part) }, depth + 1, false);
            if (c->parts > PMX_FB_PARTS_MAX) return;
        }
        if (closing) return;
        const char *e = eol(after, end);
        part = e < end ? e + 1 : end;
        p = part;
    }
    if (part && part < end) walk(c, (span_t){ part, (size_t)(end - part) }, depth + 1, false);
}

static void top_field(ctx_t *c, const field_t *f)
{
    const span_t *n = &f->name;
    if (ieq(n->p, n->n, "from")) { if (!c->from.p) c->from = f->value; }
    else if (ieq(n->p, n->n, "to")) { if (!c->to.p) c->to = f->value; }
    else if (ieq(n->p, n->n, "subject")) { if (!c->subject.p) c->subject = f->value; }
    else if (ieq(n->p, n->n, "auto-submitted")) { if (!c->auto_submitted.p) c->auto_submitted = f->value; }
    else if (ieq(n->p, n->n, "precedence")) { if (!c->precedence.p) c->precedence = f->value; }
    else if (ieq(n->p, n->n, "x-autoreply") || ieq(n->p, n->n, "x-autorespond")
             || ieq(n->p, n->n, "x-autoresponder") || ieq(n->p, n->n, "x-vacation")) {
        span_t v = trim(f->value);
        if (!ieq(v.p, v.n, "no") && !ieq(v.p, v.n, "false")) c->x_autoreply = true;
    } else if (ieq(n->p, n->n, "x-failed-recipients")) {
        if (c->nfailed < (int)(sizeof c->failed_rcpts / sizeof c->failed_rcpts[0]))
            c->failed_rcpts[c->nfailed++] = f->value;
    }
}

static void walk(ctx_t *c, span_t part, int depth, bool top)
{
    if (++c->parts > PMX_FB_PARTS_MAX || depth > PMX_FB_DEPTH_MAX) return;
    const char *p = part.p, *end = part.p + part.n;
    span_t ctv = { NULL, 0 }, cte = { NULL, 0 };
    field_t f;
    int k;
    while ((k = next_field(&p, end, &f)) == F_FIELD) {
        if (ieq(f.name.p, f.name.n, "content-type")) { if (!ctv.p) ctv = f.value; }
        else if (ieq(f.name.p, f.name.n, "content-transfer-encoding")) { if (!cte.p) cte = f.value; }
        else if (top) top_field(c, &f);
    }
    span_t body = { p, (size_t)(end - p) };
    ctype_t ct;
    parse_ctype(ctv, &ct);

    if (strncmp(ct.type, "multipart/", 10) == 0) {
        if (ct.boundary[0]) {
            char d[204];
            int dn = snprintf(d, sizeof d, "--%s", ct.boundary);
            if (!memmem(body.p, body.n, d, (size_t)dn)) ct.boundary[0] = '\0';
        }
        if (!ct.boundary[0]) {
            /* A boundary parameter lost to bad folding, or one the body never uses:
             * the first "--" line is the delimiter. */
            const char *q = body.p, *qe = body.p + body.n;
            while (q < qe) {
                const char *e = eol(q, qe);
                if (e - q > 2 && q[0] == '-' && q[1] == '-') {
                    size_t bn = (size_t)(e - q) - 2;
                    while (bn && isspace((unsigned char)q[2 + bn - 1])) bn--;
                    if (bn && bn < sizeof ct.boundary) {
                        memcpy(ct.boundary, q + 2, bn);
                        ct.boundary[bn] = '\0';
                    }
                    break;
                }
                q = e < qe ? e + 1 : qe;
            }
        }
        if (ct.boundary[0]) {
            walk_multipart(c, body, ct.boundary, depth);
            return;
        }
    }
    if (strcmp(ct.type, "message/rfc822") == 0 || strcmp(ct.type, "message/global") == 0
        || strcmp(ct.type, "message/partial") == 0) {
        if (c->have_orig) return;
        span_t m = decode_body(c->r, cte, body);
        const char *bs = body_start(m.p, m.p + m.n);
        c->orig_hdr = (span_t){ m.p, (size_t)(bs - m.p) };
        c->have_orig = true;
        return;
    }
    if (strstr(ct.type, "rfc822-header")) {
        if (c->have_orig) return;
        c->orig_hdr = decode_body(c->r, cte, body);
        c->have_orig = true;
        return;
    }
    if (strstr(ct.type, "delivery-status")) {
        parse_dsn(c, decode_body(c->r, cte, body));
        return;
    }
    if (strcmp(ct.type, "message/feedback-report") == 0) {
        parse_arf(c, decode_body(c->r, cte, body));
        return;
    }
    if (ct.type[0] == '\0' || strncmp(ct.type, "text/plain", 10) == 0
        || (strncmp(ct.type, "text/", 5) == 0 && strcmp(ct.type, "text/html") != 0)) {
        if (c->ntexts < TEXTS_MAX) c->texts[c->ntexts++] = decode_body(c->r, cte, body);
    }
}

/* ---- deciding -------------------------------------------------------------------- */

/* A DSN's first word of a field value, lower-cased ("failed"). */
static const char *token(pmx_fb_report_t *r, span_t v)
{
    v = trim(v);
    size_t n = 0;
    while (n < v.n && n < 32 && !isspace((unsigned char)v.p[n]) && v.p[n] != '(' && v.p[n] != ';') n++;
    if (n == 0) return NULL;
    return clean(r, lower_copy(r, v.p, n), n, 32);
}

/* "smtp; 550 5.1.1 ..." -> "550 5.1.1 ...": drops a leading diagnostic-type. */
static span_t strip_type(span_t v)
{
    v = trim(v);
    const char *semi = memchr(v.p, ';', v.n < 24 ? v.n : 24);
    if (semi) {
        bool word = true;
        for (const char *q = v.p; q < semi; q++)
            if (!isalnum((unsigned char)*q) && *q != '-' && *q != '_') word = false;
        if (word && semi > v.p) {
            v.n -= (size_t)(semi + 1 - v.p);
            v.p = semi + 1;
        }
    }
    return trim(v);
}

/* Sets class and hard of a failed or delayed recipient from its status and text. */
static void classify_rcpt(ctx_t *c, pmx_fb_rcpt_t *rc)
{
    bool failed = rc->action && strcmp(rc->action, "failed") == 0;
    bool delayed = rc->action && strcmp(rc->action, "delayed") == 0;
    if (!failed && !delayed) {
        rc->cls = PMX_FB_CLASS_NONE;
        rc->hard = false;
        return;
    }
    const char *d = rc->diagnostic;
    rc->cls = pmx_fb_classify(c->rules, 0, rc->status, d, d ? strlen(d) : 0);
    /* Given up on after temporary failures: the queue lifetime ran out. */
    if (failed && rc->status && rc->status[0] == '4'
        && (rc->cls == PMX_FB_CLASS_NETWORK || rc->cls == PMX_FB_CLASS_SYSTEM
            || rc->cls == PMX_FB_CLASS_OTHER))
        rc->cls = PMX_FB_CLASS_EXPIRED;
    /* A queue that gave up on "450 4.1.1 user unknown" still names a dead address. */
    rc->hard = failed && pmx_fb_class_is_hard(rc->cls);
}

static const char *status_of(ctx_t *c, span_t v, const char *diag)
{
    char st[12];
    v = trim(v);
    if (v.p && pmx_fb_find_status(v.p, v.n, st)) return clean(c->r, st, strlen(st), 12);
    if (diag && pmx_fb_find_status(diag, strlen(diag), st)) return clean(c->r, st, strlen(st), 12);
    return NULL;
}

static void add_rcpt(ctx_t *c, const char *addr, const char *action, const char *status,
                     const char *diag)
{
    pmx_fb_report_t *r = c->r;
    if (r->nrcpts >= PMX_FB_RCPTS_MAX) return;
    pmx_fb_rcpt_t *rc = &r->rcpts[r->nrcpts++];
    memset(rc, 0, sizeof *rc);
    rc->address = addr;
    rc->action = action;
    rc->status = status;
    rc->diagnostic = diag;
    classify_rcpt(c, rc);
}

static const char *block_for(ctx_t *c, const char *addr);

static void decide_dsn(ctx_t *c)
{
    pmx_fb_report_t *r = c->r;
    bool any_failed = false, any_delayed = false;
    for (int i = 0; i < c->ndrc; i++) {
        dsn_rcpt_t *d = &c->drc[i];
        span_t a;
        const char *addr = NULL;
        if (d->orig.p && field_addr(d->orig, &a)) addr = store_addr(r, a);
        else if (d->final.p && field_addr(d->final, &a)) addr = store_addr(r, a);
        const char *diag = d->diag.p ? clean(r, strip_type(d->diag).p, strip_type(d->diag).n, PMX_FB_DIAG_MAX) : NULL;
        if (!diag && addr) diag = block_for(c, addr);   /* the text part says why */
        const char *status = status_of(c, d->status, diag);
        const char *action = d->action.p ? token(r, d->action) : NULL;
        if (!action || (strcmp(action, "failed") && strcmp(action, "delayed")
                        && strcmp(action, "delivered") && strcmp(action, "relayed")
                        && strcmp(action, "expanded"))) {
            /* Missing or misspelt: the status class says what happened. */
            action = status && status[0] == '4' ? "delayed"
                   : status && status[0] == '2' ? "delivered" : "failed";
        }
        add_rcpt(c, addr, action, status, diag);
        any_failed |= strcmp(action, "failed") == 0;
        any_delayed |= strcmp(action, "delayed") == 0;
    }
    r->kind = any_failed ? PMX_FB_KIND_BOUNCE : any_delayed ? PMX_FB_KIND_DELAY : PMX_FB_KIND_UNKNOWN;
}

static void decide_arf(ctx_t *c)
{
    pmx_fb_report_t *r = c->r;
    r->kind = PMX_FB_KIND_COMPLAINT;
    if (c->feedback_type.p) r->feedback_type = token(r, c->feedback_type);
    for (int i = 0; i < c->narf; i++) {
        span_t a;
        if (field_addr(c->arf_rcpts[i], &a)) add_rcpt(c, store_addr(r, a), NULL, NULL, NULL);
    }
    if (r->nrcpts == 0 && c->have_orig) {
        /* No Original-Rcpt-To: the To of the returned message, when it is one address. */
        const char *p = c->orig_hdr.p, *end = p + c->orig_hdr.n;
        field_t f;
        int k;
        while ((k = next_field(&p, end, &f)) == F_FIELD) {
            span_t a;
            if (ieq(f.name.p, f.name.n, "to") && field_addr(f.value, &a)) {
                add_rcpt(c, store_addr(r, a), NULL, NULL, NULL);
                break;
            }
        }
    }
}

/* Lines at which a plain-text bounce starts quoting the original (lower-case). */
static const char *const copy_markers[] = {
    "below this line is a copy of the message",
    "this is a copy of the message",
    "original message follows",
    "----- original message -----",
    "--- original message ---",
    "original message headers:",
    "unsent message follows",
    "the original message was received",
    "the header of the original message is following",
    "the original message headers are included",
    "returned message follows",
    "------ original message header",
    "\nreturn-path:",
    "\nreceived: from",
    "\ncontent-type: message/rfc822",
};

/* Wordings that say a plain-text report is a delay, not a failure (lower-case). */
static const char *const delay_markers[] = {
    "has not yet been delivered", "will continue trying", "will keep trying",
    "this is a warning message only", "delivery delayed", "still trying",
    "will be retried", "delivery attempts will continue", "delayed mail",
    "(delay)", "message delayed", "not been delivered yet", "warning: message",
};

/* Wordings of the bounce texts of common MTAs and providers (lower-case). */
static const char *const bounce_markers[] = {
    "qmail-send program", "mail delivery software", "this is the mail system at host",
    "delivery has failed to these recipients", "failed permanently",
    "unable to deliver your message", "permanent fatal errors", "could not be delivered",
    "couldn't be delivered", "undeliverable", "delivery failure", "returned mail",
    "non-delivery", "was not delivered", "delivery failed", "failed to deliver",
    "mail delivery failed", "message not delivered", "delivery to the following recipient",
    "permanent error", "did not reach the following recipient", "delivery status notification",
    "not be delivered", "undelivered mail", "user unknown", "no such user",
};

static const char *const bounce_subjects[] = {
    "undeliver", "delivery status notification", "failure notice", "mail delivery failed",
    "returned mail", "delivery failure", "non remis", "delivery failed", "not delivered",
    "mail system error", "undelivered", "delivery notification", "nondeliverable",
    "could not send message", "delayed mail", "mail failure", "delivery problem",
    "rejected", "returned to sender", "bounce", "failed delivery", "error sending",
};

static const char *const auto_subjects[] = {
    "out of office", "out of the office", "auto:", "automatic reply", "auto reply",
    "auto-reply", "autoreply", "auto response", "autoresponse", "auto-response",
    "vacation", "abwesenheit", "réponse automatique", "reponse automatique",
    "respuesta automática", "risposta automatica", "i am away", "away from", "on leave",
    "holiday", "afwezig", "automatisch antwoord", "automatische antwort",
};

static bool any_of(const char *h, size_t n, const char *const *list, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (find(h, n, list[i])) return true;
    return false;
}

#define NELEM(a) (sizeof (a) / sizeof (a)[0])

/*
 * A line that starts (after white space and an optional label) with an
 * address opens a recipient's block in a plain-text bounce. Returns the
 * address, and where the rest of the line starts.
 */
static bool addr_line(const char *l, size_t n, span_t *a, size_t *rest)
{
    size_t i = 0;
    while (i < n && (l[i] == ' ' || l[i] == '\t')) i++;
    static const char *const labels[] = {
        "recipient address:", "recipient:", "original-recipient:", "final-recipient:",
        "failed recipient:", "addressee:", "rcpt to:", "address:",
    };
    /* Sendmail's transcript: "554 <a@b>... reason". */
    if (n - i > 4 && isdigit((unsigned char)l[i]) && isdigit((unsigned char)l[i + 1])
        && isdigit((unsigned char)l[i + 2]) && l[i + 3] == ' ' && l[i + 4] == '<')
        i += 4;
    for (size_t k = 0; k < NELEM(labels); k++) {
        if (istarts(l + i, n - i, labels[k])) {
            i += strlen(labels[k]);
            while (i < n && (l[i] == ' ' || l[i] == '\t')) i++;
            if (istarts(l + i, n - i, "rfc822;")) i += 7;
            while (i < n && (l[i] == ' ' || l[i] == '\t')) i++;
            break;
        }
    }
    if (i < n && l[i] == '"') i++;     /* GMX: "a@b": */
    size_t used = read_addr(l + i, n - i, a);
    if (!used) return false;
    if (i + used < n && l[i + used] == '"') used++;
    /* The address must end the word: "a@b.c", "a@b.c:", "<a@b.c>...", not "a@b.c.d". */
    size_t e = i + used;
    if (e < n && !strchr(" \t\r:;,.<>()[]\"'", l[e])) return false;
    if (istarts(a->p, a->n, "mailer-daemon@")) return false;
    *rest = e;
    return true;
}

/* A line of the section with a reply code or an enhanced status code in it. */
static span_t reason_line(const char *s, size_t n)
{
    const char *p = s, *end = s + n;
    while (p < end) {
        const char *e = eol(p, end);
        char st[12];
        if (pmx_fb_find_status(p, (size_t)(e - p), st) || find(p, (size_t)(e - p), "said:")
            || find(p, (size_t)(e - p), "reason:"))
            return (span_t){ p, (size_t)(e - p) };
        p = e < end ? e + 1 : end;
    }
    return (span_t){ NULL, 0 };
}

/*
 * Where the quoted original starts in the first text part t (t.n when it is not
 * there); computed once per report.
 */
static size_t copy_cut(ctx_t *c, span_t t, const char **lc_out)
{
    if (c->cut != SIZE_MAX) {
        if (lc_out) *lc_out = c->lc;
        return c->cut;
    }
    const char *lc = lower_copy(c->r, t.p, t.n);
    size_t cut = t.n;
    for (size_t i = 0; i < NELEM(copy_markers); i++) {
        const char *m = find(lc, cut, copy_markers[i]);
        if (m) {
            /* Cut at the start of the marker's line. */
            while (m > lc && m[-1] != '\n') m--;
            cut = (size_t)(m - lc);
        }
    }
    c->lc = lc;
    c->cut = cut;
    if (lc_out) *lc_out = lc;
    return cut;
}

/*
 * The block of the first text part that a line starting with addr opens (up
 * to the next such line), for a DSN recipient with no Diagnostic-Code.
 */
static const char *block_for(ctx_t *c, const char *addr)
{
    if (!c->ntexts) return NULL;
    span_t t = c->texts[0];
    if (t.n > SCAN_MAX) t.n = SCAN_MAX;
    size_t cut = copy_cut(c, t, NULL);
    const char *p = t.p, *end = t.p + cut, *blk = NULL;
    size_t alen = strlen(addr);
    while (p < end) {
        const char *e = eol(p, end);
        span_t a;
        size_t rest;
        if (addr_line(p, (size_t)(e - p), &a, &rest)) {
            bool same = a.n == alen && strncasecmp(a.p, addr, alen) == 0;
            if (blk && !same) return clean(c->r, blk, (size_t)(p - blk), PMX_FB_DIAG_MAX);
            if (same && !blk) {
                blk = p + rest;
                while (blk < e && strchr(" \t:;,.>", *blk)) blk++;
            }
        }
        p = e < end ? e + 1 : end;
    }
    return blk ? clean(c->r, blk, (size_t)(end - blk), PMX_FB_DIAG_MAX) : NULL;
}

/* Reads a plain-text bounce from the first text part. */
static void decide_text_bounce(ctx_t *c)
{
    pmx_fb_report_t *r = c->r;
    span_t t = c->ntexts ? c->texts[0] : (span_t){ "", 0 };
    if (t.n > SCAN_MAX) t.n = SCAN_MAX;
    const char *lc;
    size_t cut = copy_cut(c, t, &lc);
    bool delayed = any_of(lc, cut, delay_markers, NELEM(delay_markers));
    if (!delayed && c->subject.p) {
        const char *s = lower_copy(r, c->subject.p, c->subject.n);
        delayed = find(s, c->subject.n, "delay") != NULL;
    }
    const char *action = delayed ? "delayed" : "failed";
    r->kind = delayed ? PMX_FB_KIND_DELAY : PMX_FB_KIND_BOUNCE;

    /* Blocks: an address line and what follows, up to the next address line. */
    const char *p = t.p, *end = t.p + cut;
    span_t cur_addr = { NULL, 0 };
    const char *blk = NULL;
    size_t first = r->nrcpts;
    for (;;) {
        const char *e = p < end ? eol(p, end) : end;
        span_t a;
        size_t rest = 0;
        bool is_addr = p < end && addr_line(p, (size_t)(e - p), &a, &rest);
        /* The address repeated inside its own block ("RCPT TO:\n<a@b>:") goes on with it. */
        if (is_addr && cur_addr.p && a.n == cur_addr.n && strncasecmp(a.p, cur_addr.p, a.n) == 0)
            is_addr = false;
        if ((is_addr || p >= end) && cur_addr.p) {
            const char *addr = store_addr(r, cur_addr);
            const char *diag = clean(r, blk, (size_t)((p < end ? p : end) - blk), PMX_FB_DIAG_MAX);
            size_t j;
            for (j = first; j < r->nrcpts; j++)
                if (r->rcpts[j].address && strcmp(r->rcpts[j].address, addr) == 0) break;
            if (j == r->nrcpts) {
                add_rcpt(c, addr, action, status_of(c, (span_t){ NULL, 0 }, diag), diag);
            } else if (diag && (!r->rcpts[j].diagnostic || strlen(r->rcpts[j].diagnostic) < 8)) {
                r->rcpts[j].diagnostic = diag;
                r->rcpts[j].status = status_of(c, (span_t){ NULL, 0 }, diag);
                classify_rcpt(c, &r->rcpts[j]);
            }
            cur_addr.p = NULL;
        }
        if (p >= end) break;
        if (is_addr) {
            cur_addr = a;
            blk = p + rest;
            /* "<a@b>: reason", "<a@b>... reason": the punctuation is not the reason. */
            while (blk < e && strchr(" \t:;,.>", *blk)) blk++;
        }
        p = e < end ? e + 1 : end;
    }
    /* X-Failed-Recipients (Exim, Gmail) names recipients the text may not. */
    span_t why = reason_line(t.p, cut);
    const char *why_s = why.p ? clean(r, why.p, why.n, PMX_FB_DIAG_MAX) : NULL;
    for (int i = 0; i < c->nfailed; i++) {
        const char *q = c->failed_rcpts[i].p, *qe = q + c->failed_rcpts[i].n;
        while (q < qe) {
            while (q < qe && (isspace((unsigned char)*q) || *q == ',')) q++;
            span_t a;
            size_t used = read_addr(q, (size_t)(qe - q), &a);
            if (!used) {
                while (q < qe && *q != ',') q++;
                continue;
            }
            q += used;
            const char *addr = store_addr(r, a);
            size_t j;
            for (j = first; j < r->nrcpts; j++)
                if (r->rcpts[j].address && strcmp(r->rcpts[j].address, addr) == 0) break;
            if (j == r->nrcpts)
                add_rcpt(c, addr, action, status_of(c, (span_t){ NULL, 0 }, why_s), why_s);
        }
    }
    if (r->nrcpts == first) {
        /* No address opens a line ("... error delivering your mail to <a@b>."):
         * the first address in the text that is not the bounce's own recipient. */
        span_t a, self = { NULL, 0 };
        if (c->to.p) field_addr(c->to, &self);
        const char *q = t.p, *qe = t.p + cut;
        const char *addr = NULL;
        while (!addr && (q = memchr(q, '@', (size_t)(qe - q))) != NULL) {
            const char *b = q;
            while (b > t.p && q - b < 64 && atext((unsigned char)b[-1])) b--;
            size_t used = read_addr(b, (size_t)(qe - b), &a);
            q++;
            if (!used || istarts(a.p, a.n, "mailer-daemon@")
                || (self.p && a.n == self.n && strncasecmp(a.p, self.p, a.n) == 0))
                continue;
            addr = store_addr(r, a);
        }
        const char *diag = why_s;
        if (addr && !diag) diag = clean(r, t.p, cut, PMX_FB_DIAG_MAX);
        add_rcpt(c, addr, action, status_of(c, (span_t){ NULL, 0 }, diag), diag);
    }
}

static bool from_daemon(ctx_t *c)
{
    if (!c->from.p) return false;
    const char *f = lower_copy(c->r, c->from.p, c->from.n);
    static const char *const daemons[] = {
        "mailer-daemon", "mailer_daemon", "mail-daemon", "mailerdaemon", "postmaster@",
        "mail delivery subsystem", "mail delivery system", "mdaemon", "microsoftexchange",
        "mail administrator", "mail.daemon", "mail delivery service", "post_master@",
    };
    return any_of(f, c->from.n, daemons, NELEM(daemons));
}

static bool is_auto_reply(ctx_t *c, const char *subj, size_t sn)
{
    if (c->x_autoreply) return true;
    span_t v = trim(c->auto_submitted);
    if (v.p && istarts(v.p, v.n, "auto-replied")) return true;
    v = trim(c->precedence);
    if (v.p && ieq(v.p, v.n, "auto_reply")) return true;
    return subj && any_of(subj, sn, auto_subjects, NELEM(auto_subjects));
}

/*
 * Outlook.com's complaint reports (JMRP) are not ARF: a multipart/mixed with
 * the complained-of message, which carries X-HmXmrOriginalRecipient.
 */
static bool jmrp(ctx_t *c)
{
    const char *p = c->orig_hdr.p, *end = p + c->orig_hdr.n;
    field_t f;
    int k;
    while ((k = next_field(&p, end, &f)) == F_FIELD) {
        span_t a;
        if (ieq(f.name.p, f.name.n, "x-hmxmroriginalrecipient") && field_addr(f.value, &a)) {
            c->r->kind = PMX_FB_KIND_COMPLAINT;
            c->r->feedback_type = "abuse";
            add_rcpt(c, store_addr(c->r, a), NULL, NULL, NULL);
            return true;
        }
    }
    return false;
}

/* A JSON string member of o, cleaned into the arena, or NULL. */
static const char *json_str(pmx_fb_report_t *r, json_t *o, const char *key, size_t max)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? clean(r, v, strlen(v), max) : NULL;
}

/*
 * Amazon SES notifications sent by email (an SNS envelope whose "Message" is
 * the notification, or the notification itself): "Bounce" with
 * bouncedRecipients, "Complaint" with complainedRecipients; the sent message's
 * headers give the original's fields. Mail clients wrap the long JSON lines
 * ("\n " inside strings), so wrapped lines are joined before parsing.
 */
static bool ses_json(ctx_t *c)
{
    pmx_fb_report_t *r = c->r;
    if (!c->ntexts) return false;
    span_t t = trim(c->texts[0]);
    if (t.n < 2 || t.p[0] != '{' || !find(t.p, t.n < 65536 ? t.n : 65536, "notificationType"))
        return false;
    if (t.n > SCAN_MAX) t.n = SCAN_MAX;
    char *u = arena_alloc(r, t.n + 1);
    size_t o = 0;
    for (size_t i = 0; i < t.n; i++) {
        if (t.p[i] == '\r') continue;
        if (t.p[i] == '\n' && i + 1 < t.n && t.p[i + 1] == ' ') {
            i++;
            continue;
        }
        u[o++] = t.p[i];
    }
    json_error_t e;
    json_t *outer = json_loadb(u, o, JSON_DISABLE_EOF_CHECK, &e);
    if (!json_is_object(outer)) {
        json_decref(outer);
        return false;
    }
    json_t *inner = NULL, *msg = outer;
    const char *text = json_string_value(json_object_get(outer, "Message"));
    if (text && (inner = json_loads(text, 0, &e)) != NULL && json_is_object(inner)) msg = inner;
    const char *type = json_string_value(json_object_get(msg, "notificationType"));
    if (!type) type = json_string_value(json_object_get(msg, "eventType"));
    bool ok = false;
    size_t i;
    json_t *it;
    if (type && strcmp(type, "Bounce") == 0) {
        json_t *b = json_object_get(msg, "bounce");
        json_array_foreach(json_object_get(b, "bouncedRecipients"), i, it) {
            const char *diag = NULL, *d = json_string_value(json_object_get(it, "diagnosticCode"));
            if (d) {
                span_t sd = strip_type((span_t){ d, strlen(d) });
                diag = clean(r, sd.p, sd.n, PMX_FB_DIAG_MAX);
            }
            span_t a;
            const char *addr_s = json_string_value(json_object_get(it, "emailAddress"));
            const char *addr = addr_s && field_addr((span_t){ addr_s, strlen(addr_s) }, &a)
                             ? store_addr(r, a) : NULL;
            const char *st = json_string_value(json_object_get(it, "status"));
            add_rcpt(c, addr, "failed", status_of(c, (span_t){ st, st ? strlen(st) : 0 }, diag), diag);
        }
        r->kind = PMX_FB_KIND_BOUNCE;
        ok = true;
    } else if (type && strcmp(type, "Complaint") == 0) {
        json_t *cm = json_object_get(msg, "complaint");
        json_array_foreach(json_object_get(cm, "complainedRecipients"), i, it) {
            span_t a;
            const char *addr_s = json_string_value(json_object_get(it, "emailAddress"));
            if (addr_s && field_addr((span_t){ addr_s, strlen(addr_s) }, &a))
                add_rcpt(c, store_addr(r, a), NULL, NULL, NULL);
        }
        const char *ft = json_string_value(json_object_get(cm, "complaintFeedbackType"));
        if (ft) r->feedback_type = token(r, (span_t){ ft, strlen(ft) });
        r->kind = PMX_FB_KIND_COMPLAINT;
        ok = true;
    }
    if (ok) {
        json_t *mail = json_object_get(msg, "mail");
        json_array_foreach(json_object_get(mail, "headers"), i, it) {
            const char *name = json_string_value(json_object_get(it, "name"));
            if (!name) continue;
            if (!strcasecmp(name, "message-id") && !r->message_id) {
                const char *v = json_str(r, it, "value", FIELD_MAX);
                if (v) {
                    size_t n = strlen(v);
                    if (n > 2 && v[0] == '<' && v[n - 1] == '>')
                        v = clean(r, v + 1, n - 2, FIELD_MAX);
                    r->message_id = v;
                }
            } else if (!strcasecmp(name, "x-postmux-ref") && !r->ref) {
                r->ref = json_str(r, it, "value", 64);
            } else if (!strcasecmp(name, "return-path") && !r->return_path) {
                const char *v = json_string_value(json_object_get(it, "value"));
                span_t a;
                if (v && field_addr((span_t){ v, strlen(v) }, &a)) r->return_path = store_addr(r, a);
            }
        }
        const char *src = json_string_value(json_object_get(mail, "source"));
        span_t a;
        if (!r->return_path && src && field_addr((span_t){ src, strlen(src) }, &a))
            r->return_path = store_addr(r, a);
    }
    json_decref(inner);
    json_decref(outer);
    return ok;
}

/* Message-ID, X-Postmux-Ref and Return-Path of the returned original. */
static void original(ctx_t *c)
{
    pmx_fb_report_t *r = c->r;
    span_t mid = { NULL, 0 }, ref = { NULL, 0 }, rp = { NULL, 0 };
    const char *p = NULL, *end = NULL;
    if (c->have_orig) {
        p = c->orig_hdr.p;
        end = p + c->orig_hdr.n;
    } else if (c->ntexts) {
        /* A plain-text bounce: the quoted copy is somewhere in its text. */
        p = c->texts[0].p;
        end = p + (c->texts[0].n < SCAN_MAX ? c->texts[0].n : SCAN_MAX);
    }
    while (p && p < end) {
        const char *e = eol(p, end);
        size_t n = (size_t)(e - p);
        const char *q = p;
        while (q < e && (*q == ' ' || *q == '\t' || *q == '>')) q++;   /* quoted copies */
        n = (size_t)(e - q);
        span_t *slot = NULL;
        size_t skip = 0;
        if (istarts(q, n, "message-id:")) slot = &mid, skip = 11;
        else if (istarts(q, n, "x-postmux-ref:")) slot = &ref, skip = 14;
        else if (istarts(q, n, "return-path:")) slot = &rp, skip = 12;
        if (slot && !slot->p) {
            slot->p = q + skip;
            slot->n = n - skip;
            /* One continuation line (a folded Message-ID). */
            const char *nx = e < end ? e + 1 : end;
            if (trim(*slot).n == 0 && nx < end && (*nx == ' ' || *nx == '\t')) {
                const char *e2 = eol(nx, end);
                slot->p = nx;
                slot->n = (size_t)(e2 - nx);
            }
        }
        p = e < end ? e + 1 : end;
    }
    if (!mid.p) mid = c->dsn_msgid;
    if (mid.p) {
        span_t v = trim(mid);
        const char *lt = memchr(v.p, '<', v.n);
        if (lt) {
            const char *gt = memchr(lt, '>', (size_t)(v.p + v.n - lt));
            if (gt) v = (span_t){ lt + 1, (size_t)(gt - lt - 1) };
        }
        r->message_id = clean(r, v.p, v.n, FIELD_MAX);
        if (r->message_id && strchr(r->message_id, ' ')) r->message_id = NULL;
    }
    if (ref.p) {
        span_t v = trim(ref);
        bool ok = v.n > 0 && v.n <= 64;
        for (size_t i = 0; ok && i < v.n; i++)
            if (!isalnum((unsigned char)v.p[i]) && v.p[i] != '-' && v.p[i] != '_') ok = false;
        if (ok) r->ref = clean(r, v.p, v.n, 64);
    }
    span_t a;
    if (rp.p && field_addr(rp, &a)) r->return_path = store_addr(r, a);
    else if (c->dsn_sender.p && field_addr(c->dsn_sender, &a)) r->return_path = store_addr(r, a);
    else if (c->arf_mail_from.p && field_addr(c->arf_mail_from, &a)) r->return_path = store_addr(r, a);
    if (!r->ref && r->return_path && strncmp(r->return_path, "b-", 2) == 0) {
        /* The VERP token (docs/feedback.md): b-<base32>@<return-path domain>. */
        const char *at = strchr(r->return_path, '@');
        size_t n = (size_t)(at - r->return_path) - 2;
        bool ok = n > 0 && n <= 62;
        for (size_t i = 0; ok && i < n; i++) {
            char ch = r->return_path[2 + i];
            if (!((ch >= 'a' && ch <= 'z') || (ch >= '2' && ch <= '7'))) ok = false;
        }
        if (ok) r->ref = clean(r, r->return_path + 2, n, 64);
    }
}

void pmx_fb_report_parse(const pmx_fb_rules_t *rules, const char *msg, size_t n,
                         pmx_fb_report_t *out)
{
    memset(out, 0, sizeof *out);
    ctx_t *c = pmx_xcalloc(1, sizeof *c);
    c->r = out;
    c->rules = rules;
    c->cut = SIZE_MAX;
    if (!msg) n = 0;
    walk(c, (span_t){ msg ? msg : "", n }, 0, true);

    const char *subj = NULL;
    size_t sn = 0;
    if (c->subject.p) {
        span_t s = decode_words(out, c->subject);
        subj = lower_copy(out, s.p, s.n);
        sn = s.n;
    }
    if (c->ndrc > 0) {
        decide_dsn(c);
    } else if (c->has_arf) {
        decide_arf(c);
    } else if (c->have_orig && jmrp(c)) {
        /* decided */
    } else if (ses_json(c)) {
        /* decided */
    } else if (from_daemon(c) || c->nfailed > 0) {
        decide_text_bounce(c);
    } else if (is_auto_reply(c, subj, sn)) {
        out->kind = PMX_FB_KIND_AUTO_REPLY;
        span_t a;
        if (c->from.p && field_addr(c->from, &a)) add_rcpt(c, store_addr(out, a), NULL, NULL, NULL);
    } else {
        bool bounce = subj && any_of(subj, sn, bounce_subjects, NELEM(bounce_subjects));
        if (!bounce && c->ntexts) {
            size_t tn = c->texts[0].n < 8192 ? c->texts[0].n : 8192;
            const char *lc = lower_copy(out, c->texts[0].p, tn);
            bounce = any_of(lc, tn, bounce_markers, NELEM(bounce_markers));
        }
        if (bounce) decide_text_bounce(c);
    }
    original(c);
    free(c);
}
