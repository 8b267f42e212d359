/*
 * The bounce classifier; see classify.h for the interface and the precedence,
 * inbound/bounce-rules.conf for the rules and their sources.
 *
 * Speed: a report is classified once per recipient and the parser must keep
 * up with 20,000 reports a second on one core, so the text rules are compiled
 * to one multi-pattern matcher. Each pattern is lower-cased and its white
 * space collapsed once, at compile time; each text once per call. Patterns are
 * indexed by their first two bytes (a 64 Ki table of list heads), so one pass
 * over the text visits only the rules that can start at each position, in the
 * order they were written — the first match found at the smallest rule index
 * is the answer, and the scan stops early once no better rule can follow.
 */
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inbound/classify.h"
#include "lib/buf.h"
#include "lib/mem.h"

#define RULES_MAX       8192    /* text rules in one set (index fits int16_t) */
#define RULES_FILE_MAX  (1024 * 1024)
#define TEXT_MAX        4096    /* octets of a text the matcher reads */
#define SEGS_MAX        8       /* '*'-separated segments in one pattern */

static const char *const class_names[PMX_FB_CLASS_COUNT] = {
    [PMX_FB_CLASS_NONE]             = "",
    [PMX_FB_CLASS_USER_UNKNOWN]     = "user_unknown",
    [PMX_FB_CLASS_DOMAIN_UNKNOWN]   = "domain_unknown",
    [PMX_FB_CLASS_HAS_MOVED]        = "has_moved",
    [PMX_FB_CLASS_MAILBOX_FULL]     = "mailbox_full",
    [PMX_FB_CLASS_MESSAGE_TOO_BIG]  = "message_too_big",
    [PMX_FB_CLASS_CONTENT_REJECTED] = "content_rejected",
    [PMX_FB_CLASS_POLICY]           = "policy",
    [PMX_FB_CLASS_RATE_LIMITED]     = "rate_limited",
    [PMX_FB_CLASS_NETWORK]          = "network",
    [PMX_FB_CLASS_EXPIRED]          = "expired",
    [PMX_FB_CLASS_SYSTEM]           = "system",
    [PMX_FB_CLASS_OTHER]            = "other",
};

const char *pmx_fb_class_name(pmx_fb_class_t c)
{
    return (unsigned)c < PMX_FB_CLASS_COUNT ? class_names[c] : "";
}

pmx_fb_class_t pmx_fb_class_parse(const char *s, size_t n)
{
    for (int c = 1; c < PMX_FB_CLASS_COUNT; c++)
        if (strlen(class_names[c]) == n && memcmp(class_names[c], s, n) == 0)
            return (pmx_fb_class_t)c;
    return PMX_FB_CLASS_NONE;
}

bool pmx_fb_class_is_hard(pmx_fb_class_t c)
{
    return c == PMX_FB_CLASS_USER_UNKNOWN || c == PMX_FB_CLASS_DOMAIN_UNKNOWN
        || c == PMX_FB_CLASS_HAS_MOVED;
}

/* ---- the compiled rule set ---------------------------------------------------- */

typedef struct {
    char     cls_digit;     /* '2', '4', '5', or 'X' for any */
    int      subject;       /* -1 = any */
    int      detail;        /* -1 = any */
    pmx_fb_class_t cls;
} status_rule_t;

typedef struct {
    char    *pat;                   /* normalised pattern, '*' removed, NUL between segments */
    uint16_t seg_off[SEGS_MAX];
    uint16_t seg_len[SEGS_MAX];
    int      nsegs;
    pmx_fb_class_t cls;
} text_rule_t;

struct pmx_fb_rules {
    status_rule_t *status;
    size_t         nstatus;
    int            code_cls[600];   /* reply code -> class, 0 = none */
    size_t         ncode;
    text_rule_t   *text;
    size_t         ntext;
    int16_t       *head;            /* 65536 heads, by the pattern's first two bytes */
    int16_t       *next;            /* per rule: the next rule of its bucket (ascending) */
};

void pmx_fb_rules_free(pmx_fb_rules_t *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->ntext; i++) free(r->text[i].pat);
    free(r->text);
    free(r->status);
    free(r->head);
    free(r->next);
    free(r);
}

void pmx_fb_rules_count(const pmx_fb_rules_t *r, size_t *nstatus, size_t *ncode, size_t *ntext)
{
    *nstatus = r->nstatus;
    *ncode = r->ncode;
    *ntext = r->ntext;
}

/*
 * Writes s[0..n) into out lower-cased (ASCII), every run of white space made
 * one space and white space at the start dropped; at most cap octets. Returns
 * the length. The same routine shapes patterns and texts, so they compare alike.
 */
static size_t normalise(char *out, size_t cap, const char *s, size_t n)
{
    size_t o = 0;
    bool space = true;      /* as if after a space: leading white space dropped */
    for (size_t i = 0; i < n && o < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v') {
            if (!space) out[o++] = ' ';
            space = true;
        } else {
            out[o++] = (char)((c >= 'A' && c <= 'Z') ? c + 32 : c);
            space = false;
        }
    }
    return o;
}

static int fail(char *err, size_t errlen, int line, const char *why)
{
    snprintf(err, errlen, "line %d: %s", line, why);
    return -1;
}

static bool parse_uint(const char *s, size_t n, int max, int *out)
{
    if (n == 0 || n > 3) return false;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i])) return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v > max) return false;
    *out = v;
    return true;
}

/* "X.Y.Z", "X.Y.*", "X.*" with X one of 2 4 5 X. */
static bool parse_status_key(const char *k, size_t n, status_rule_t *sr)
{
    if (n < 3 || k[1] != '.') return false;
    char c = k[0] == 'x' ? 'X' : k[0];
    if (c != '2' && c != '4' && c != '5' && c != 'X') return false;
    sr->cls_digit = c;
    sr->subject = sr->detail = -1;
    const char *p = k + 2, *end = k + n;
    if (end - p == 1 && *p == '*') return true;
    const char *dot = memchr(p, '.', (size_t)(end - p));
    if (!dot || !parse_uint(p, (size_t)(dot - p), 999, &sr->subject)) return false;
    p = dot + 1;
    if (end - p == 1 && *p == '*') return true;
    return parse_uint(p, (size_t)(end - p), 999, &sr->detail);
}

static int add_text_rule(pmx_fb_rules_t *r, size_t *cap, pmx_fb_class_t cls, const char *v,
                         size_t vn, int line, char *err, size_t errlen)
{
    if (r->ntext >= RULES_MAX) return fail(err, errlen, line, "too many text rules");
    char buf[1024];
    if (vn > sizeof buf) return fail(err, errlen, line, "pattern longer than 1024 octets");
    size_t n = normalise(buf, sizeof buf, v, vn);
    while (n && buf[n - 1] == ' ') n--;
    text_rule_t t;
    memset(&t, 0, sizeof t);
    t.cls = cls;
    t.pat = pmx_xmalloc(n + SEGS_MAX + 1);
    size_t o = 0, start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && buf[i] != '*') continue;
        /* White space next to a '*' is not part of the words around it. */
        size_t a = start, b = i;
        if (a > 0 && buf[a] == ' ') a++;
        if (b < n && b > a && buf[b - 1] == ' ') b--;
        if (b > a) {
            if (t.nsegs == SEGS_MAX) {
                free(t.pat);
                return fail(err, errlen, line, "more than 8 '*'-separated parts");
            }
            t.seg_off[t.nsegs] = (uint16_t)o;
            t.seg_len[t.nsegs] = (uint16_t)(b - a);
            memcpy(t.pat + o, buf + a, b - a);
            o += b - a;
            t.pat[o++] = '\0';
            t.nsegs++;
        } else if (i == 0) {
            free(t.pat);
            return fail(err, errlen, line, "a pattern cannot start with '*'");
        }
        start = i + 1;
    }
    if (t.nsegs == 0 || t.seg_len[0] < 3) {
        free(t.pat);
        return fail(err, errlen, line, "a pattern needs at least 3 characters before any '*'");
    }
    if (r->ntext == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        r->text = pmx_xrealloc(r->text, *cap * sizeof *r->text);
    }
    r->text[r->ntext++] = t;
    return 0;
}

int pmx_fb_rules_compile(const char *text, size_t n, pmx_fb_rules_t **out, char *err,
                         size_t errlen)
{
    pmx_fb_rules_t *r = pmx_xcalloc(1, sizeof *r);
    size_t status_cap = 0, text_cap = 0;
    enum { SEC_NONE, SEC_STATUS, SEC_CODE, SEC_TEXT } sec = SEC_NONE;
    int line = 0;
    size_t pos = 0;
    while (pos < n) {
        const char *s = text + pos;
        const char *nl = memchr(s, '\n', n - pos);
        size_t len = nl ? (size_t)(nl - s) : n - pos;
        pos += len + (nl ? 1 : 0);
        line++;
        /* Trim; cut a comment: '#' at the start or after white space. */
        for (size_t i = 0; i < len; i++)
            if (s[i] == '#' && (i == 0 || s[i - 1] == ' ' || s[i - 1] == '\t')) len = i;
        while (len && isspace((unsigned char)*s)) s++, len--;
        while (len && isspace((unsigned char)s[len - 1])) len--;
        if (len == 0) continue;
        if (memchr(s, '\0', len)) { fail(err, errlen, line, "NUL byte"); goto bad; }
        if (s[0] == '[') {
            if (len == 8 && memcmp(s, "[status]", 8) == 0) sec = SEC_STATUS;
            else if (len == 6 && memcmp(s, "[code]", 6) == 0) sec = SEC_CODE;
            else if (len == 6 && memcmp(s, "[text]", 6) == 0) sec = SEC_TEXT;
            else { fail(err, errlen, line, "unknown section (want [status], [code] or [text])"); goto bad; }
            continue;
        }
        const char *eq = memchr(s, '=', len);
        if (!eq) { fail(err, errlen, line, "expected KEY = VALUE"); goto bad; }
        size_t kn = (size_t)(eq - s), vn = len - kn - 1;
        const char *k = s, *v = eq + 1;
        while (kn && isspace((unsigned char)k[kn - 1])) kn--;
        while (vn && isspace((unsigned char)*v)) v++, vn--;
        if (sec == SEC_NONE) { fail(err, errlen, line, "rule outside a section"); goto bad; }
        if (sec == SEC_TEXT) {
            pmx_fb_class_t c = pmx_fb_class_parse(k, kn);
            if (c == PMX_FB_CLASS_NONE) { fail(err, errlen, line, "unknown class"); goto bad; }
            if (add_text_rule(r, &text_cap, c, v, vn, line, err, errlen) < 0) goto bad;
            continue;
        }
        pmx_fb_class_t c = pmx_fb_class_parse(v, vn);
        if (c == PMX_FB_CLASS_NONE) { fail(err, errlen, line, "unknown class"); goto bad; }
        if (sec == SEC_CODE) {
            int code;
            if (!parse_uint(k, kn, 599, &code) || kn != 3 || code < 200) {
                fail(err, errlen, line, "a reply code is three digits, 200-599");
                goto bad;
            }
            if (!r->code_cls[code]) r->ncode++;
            r->code_cls[code] = (int)c;
            continue;
        }
        status_rule_t sr;
        if (!parse_status_key(k, kn, &sr)) {
            fail(err, errlen, line, "a status is X.Y.Z, X.Y.* or X.* (X one of 2 4 5 X)");
            goto bad;
        }
        sr.cls = c;
        if (r->nstatus == status_cap) {
            status_cap = status_cap ? status_cap * 2 : 32;
            r->status = pmx_xrealloc(r->status, status_cap * sizeof *r->status);
        }
        r->status[r->nstatus++] = sr;
    }
    r->head = pmx_xmalloc(65536 * sizeof *r->head);
    r->next = pmx_xmalloc((r->ntext ? r->ntext : 1) * sizeof *r->next);
    for (size_t i = 0; i < 65536; i++) r->head[i] = -1;
    /* Insert from the last rule down so each bucket lists rules in ascending order. */
    for (size_t i = r->ntext; i-- > 0;) {
        const unsigned char *p = (const unsigned char *)r->text[i].pat;
        unsigned key = (unsigned)p[0] << 8 | p[1];
        r->next[i] = r->head[key];
        r->head[key] = (int16_t)i;
    }
    *out = r;
    return 0;
bad:
    pmx_fb_rules_free(r);
    return -1;
}

pmx_fb_rules_t *pmx_fb_rules_builtin(void)
{
    pmx_fb_rules_t *r = NULL;
    char err[256];
    if (pmx_fb_rules_compile(pmx_fb_rules_builtin_text, pmx_fb_rules_builtin_len, &r, err,
                             sizeof err) < 0)
        return NULL;
    return r;
}

int pmx_fb_rules_load_file(const char *path, pmx_fb_rules_t **out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    pmx_buf_t b = PMX_BUF_INIT;
    char chunk[8192];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
        pmx_buf_append(&b, chunk, got);
        if (b.len > RULES_FILE_MAX) break;
    }
    int rd_err = ferror(f);
    fclose(f);
    if (rd_err || b.len > RULES_FILE_MAX) {
        snprintf(err, errlen, "%s: %s", path, rd_err ? "read error" : "larger than 1 MiB");
        pmx_buf_free(&b);
        return -1;
    }
    char why[200];
    int rc = pmx_fb_rules_compile(b.data ? b.data : "", b.len, out, why, sizeof why);
    if (rc < 0) snprintf(err, errlen, "%s: %s", path, why);
    pmx_buf_free(&b);
    return rc;
}

/* ---- classifying ----------------------------------------------------------------- */

typedef struct {
    char cls;
    int  subject, detail;
} status_t;

/* Parses "C.S.D" at s[0..n) exactly; false when it is not one. */
static bool parse_status(const char *s, size_t n, status_t *st)
{
    if (n < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.') return false;
    const char *dot = memchr(s + 2, '.', n - 2);
    if (!dot) return false;
    st->cls = s[0];
    return parse_uint(s + 2, (size_t)(dot - (s + 2)), 999, &st->subject)
        && parse_uint(dot + 1, (size_t)(s + n - dot - 1), 999, &st->detail);
}

bool pmx_fb_find_status(const char *text, size_t n, char out[12])
{
    for (size_t i = 0; i + 4 < n; i++) {
        char c = text[i];
        if ((c != '2' && c != '4' && c != '5') || text[i + 1] != '.') continue;
        if (i > 0 && (isalnum((unsigned char)text[i - 1]) || text[i - 1] == '.'
                      || text[i - 1] == '_'))
            continue;
        size_t j = i + 2, d1 = 0, d2 = 0;
        while (j < n && d1 < 4 && isdigit((unsigned char)text[j])) j++, d1++;
        if (d1 == 0 || d1 > 3 || j >= n || text[j] != '.') continue;
        j++;
        while (j < n && d2 < 4 && isdigit((unsigned char)text[j])) j++, d2++;
        if (d2 == 0 || d2 > 3) continue;
        /* Not part of a longer dotted number (an IP address, a version). */
        if (j < n && (isalnum((unsigned char)text[j])
                      || (text[j] == '.' && j + 1 < n && isdigit((unsigned char)text[j + 1]))))
            continue;
        memcpy(out, text + i, j - i);
        out[j - i] = '\0';
        return true;
    }
    return false;
}

/* The first reply code (2xx-5xx as a word) in the first 64 octets of text. */
static int find_code(const char *t, size_t n)
{
    if (n > 64) n = 64;
    for (size_t i = 0; i + 3 <= n; i++) {
        if (i > 0 && (isalnum((unsigned char)t[i - 1]) || t[i - 1] == '.')) continue;
        if (t[i] < '2' || t[i] > '5' || !isdigit((unsigned char)t[i + 1])
            || !isdigit((unsigned char)t[i + 2]))
            continue;
        if (i + 3 < n && (isalnum((unsigned char)t[i + 3]) || t[i + 3] == '.')) continue;
        return (t[i] - '0') * 100 + (t[i + 1] - '0') * 10 + (t[i + 2] - '0');
    }
    return 0;
}

static pmx_fb_class_t by_status(const pmx_fb_rules_t *r, const status_t *st)
{
    int best = -1, best_spec = -1;
    for (size_t i = 0; i < r->nstatus; i++) {
        const status_rule_t *sr = &r->status[i];
        if (sr->cls_digit != 'X' && sr->cls_digit != st->cls) continue;
        if (sr->subject >= 0 && sr->subject != st->subject) continue;
        if (sr->detail >= 0 && sr->detail != st->detail) continue;
        int spec = (sr->subject >= 0) * 4 + (sr->detail >= 0) * 2 + (sr->cls_digit != 'X');
        if (spec > best_spec) best_spec = spec, best = (int)i;
    }
    return best < 0 ? PMX_FB_CLASS_NONE : r->status[best].cls;
}

/* Does rule t match at t->pat's first segment found at text[i]? Checks the rest. */
static bool rest_matches(const text_rule_t *t, const char *text, size_t n, size_t i)
{
    size_t at = i + t->seg_len[0];
    for (int s = 1; s < t->nsegs; s++) {
        const char *hit = memmem(text + at, n - at, t->pat + t->seg_off[s], t->seg_len[s]);
        if (!hit) return false;
        at = (size_t)(hit - text) + t->seg_len[s];
    }
    return true;
}

static pmx_fb_class_t by_text(const pmx_fb_rules_t *r, const char *text, size_t textlen)
{
    if (!r->ntext || textlen < 3) return PMX_FB_CLASS_NONE;
    char buf[TEXT_MAX];
    size_t n = normalise(buf, sizeof buf, text, textlen);
    int best = INT16_MAX;
    for (size_t i = 0; i + 1 < n && best > 0; i++) {
        unsigned key = (unsigned)(unsigned char)buf[i] << 8 | (unsigned char)buf[i + 1];
        for (int k = r->head[key]; k >= 0 && k < best; k = r->next[k]) {
            const text_rule_t *t = &r->text[k];
            if (t->seg_len[0] > n - i || memcmp(buf + i, t->pat, t->seg_len[0]) != 0) continue;
            if (t->nsegs > 1 && !rest_matches(t, buf, n, i)) continue;
            best = k;
            break;
        }
    }
    return best == INT16_MAX ? PMX_FB_CLASS_NONE : r->text[best].cls;
}

pmx_fb_class_t pmx_fb_classify(const pmx_fb_rules_t *r, int code, const char *status,
                               const char *text, size_t textlen)
{
    if (!text) textlen = 0;
    pmx_fb_class_t c = by_text(r, text, textlen);
    if (c != PMX_FB_CLASS_NONE) return c;

    status_t st;
    bool have = status && parse_status(status, strlen(status), &st);
    if (!have || (st.subject == 0 && st.detail == 0)) {
        /* The given code says nothing; one written in the text may say more. */
        char found[12];
        status_t ts;
        if (pmx_fb_find_status(text, textlen, found)
            && parse_status(found, strlen(found), &ts)
            && (!have || ts.subject != 0 || ts.detail != 0)) {
            st = ts;
            have = true;
        }
    }
    if (have && (st.subject != 0 || st.detail != 0)) {
        c = by_status(r, &st);
        if (c != PMX_FB_CLASS_NONE) return c;
    }
    if (code == 0) code = find_code(text, textlen);
    if (code >= 200 && code < 600 && r->code_cls[code]) return (pmx_fb_class_t)r->code_cls[code];
    if (have) {
        c = by_status(r, &st);
        if (c != PMX_FB_CLASS_NONE) return c;
    }
    return PMX_FB_CLASS_OTHER;
}
