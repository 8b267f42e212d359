/*
 * The message builder (see mime.h): composed jobs become a MIME message,
 * raw messages get their line endings normalised and postmux's fields added,
 * and the header From of a message is found for the domain check.
 *
 * Header fields of raw input are read by one scanner (next_field) that
 * accepts CRLF, LF and CR line endings and unfolds continuation lines; the
 * From lookup, the raw preparation and the fuzz target all go through it.
 * Text encodings (folding, RFC 2047, QP, base64) live in lib/text.c.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/addr.h"
#include "lib/encode.h"
#include "lib/mem.h"
#include "lib/mime.h"
#include "lib/text.h"

#define MSGID_MAX      200
#define FIELD_NAME_MAX 200
#define BOUNDARY_TRIES 16

/* Writes the reason into err, puts out (if any) back to base and returns -1. */
static int fail(pmx_buf_t *out, size_t base, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int fail(pmx_buf_t *out, size_t base, char *err, size_t errlen, const char *fmt, ...)
{
    if (out && out->len > base) {
        out->len = base;
        out->data[base] = '\0';
    }
    if (errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static bool is_wsp(char c) { return c == ' ' || c == '\t'; }

/* A Message-ID's id-left (RFC 5322 §3.6.4: dot-atom-text, the one grammar of
 * lib/addr), bounded. */
static bool msgid_ok(const char *s)
{
    size_t n = strlen(s);
    return n <= MSGID_MAX && pmx_addr_is_dot_atom(s, n);
}

/* Field name: printable ASCII without ':' (RFC 5322 ftext), bounded. */
static bool field_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > FIELD_NAME_MAX) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f || s[i] == ':') return false;
    return true;
}

/* Why a field value cannot be written, or NULL when it can. */
static const char *field_value_problem(const char *v)
{
    for (const char *p = v; *p; p++)
        if (*p == '\r' || *p == '\n') return "contains CR or LF";
    return NULL;
}

void pmx_mime_date(pmx_buf_t *out, time_t t)
{
    static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
    static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    struct tm tm;
    if (!gmtime_r(&t, &tm)) {
        t = 0;
        gmtime_r(&t, &tm);
    }
    pmx_buf_appendf(out, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday], tm.tm_mday,
                    months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static void put_date(pmx_buf_t *out, time_t t)
{
    pmx_buf_append_str(out, "Date: ");
    pmx_mime_date(out, t);
    pmx_buf_append(out, "\r\n", 2);
}

static void put_msgid(pmx_buf_t *out, const char *local, const char *domain)
{
    pmx_buf_appendf(out, "Message-ID: <%s@%s>\r\n", local, domain);
}

/* Checks and writes postmux's own fields (opts->fields). */
static int put_opts_fields(const pmx_mime_opts_t *opts, pmx_buf_t *out, size_t base, char *err,
                           size_t errlen)
{
    for (size_t i = 0; i < opts->nfields; i++) {
        const pmx_mime_field_t *f = &opts->fields[i];
        if (!f->name || !field_name_ok(f->name))
            return fail(out, base, err, errlen, "added field %zu: not a valid field name", i);
        const char *why = f->value ? field_value_problem(f->value) : "has no value";
        if (why) return fail(out, base, err, errlen, "added field %s: %s", f->name, why);
        pmx_text_hdr_unstructured(out, f->name, f->value, strlen(f->value));
    }
    return 0;
}

/* ---- composed jobs ---- */

/* One mailbox as a header word: Name <addr> or addr, with a trailing comma when asked. */
static void put_mailbox(pmx_text_hdr_t *h, const pmx_addr_t *a, bool comma)
{
    pmx_buf_t w = PMX_BUF_INIT;
    if (a->display && a->display[0]) {
        pmx_text_hdr_phrase(h, a->display, strlen(a->display));
        pmx_buf_appendf(&w, "<%s>", a->addr);
    } else {
        pmx_buf_append_str(&w, a->addr);
    }
    if (comma) pmx_buf_append_char(&w, ',');
    pmx_text_hdr_word(h, w.data, w.len);
    pmx_buf_free(&w);
}

static void put_addr_field(pmx_buf_t *out, const char *name, const pmx_addr_t *v, size_t n)
{
    if (n == 0) return;
    pmx_text_hdr_t h;
    pmx_text_hdr_begin(&h, out, name);
    for (size_t i = 0; i < n; i++) put_mailbox(&h, &v[i], i + 1 < n);
    pmx_text_hdr_end(&h);
}

/* True when no address of v[0..n) has a control octet (CR, LF, ...) that could end the field. */
static bool addrs_clean(const pmx_addr_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!v[i].addr) return false;
        for (const char *p = v[i].addr; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f) return false;
    }
    return true;
}

/* Fields the builder writes itself; a header:* field may not repeat them. */
static const char *const own_fields[] = {
    "From", "To", "Cc", "Bcc", "Reply-To", "Subject", "Date", "Message-ID", "MIME-Version",
    "Content-Type", "Content-Transfer-Encoding", "DKIM-Signature",
};

static int check_job_headers(const pmx_job_t *job, pmx_buf_t *out, size_t base, char *err,
                             size_t errlen)
{
    for (size_t i = 0; i < job->nheaders; i++) {
        const pmx_header_t *f = &job->headers[i];
        if (!f->name || !field_name_ok(f->name))
            return fail(out, base, err, errlen, "header:%.64s: not a valid field name",
                        f->name ? f->name : "");
        for (size_t k = 0; k < sizeof own_fields / sizeof own_fields[0]; k++)
            if (strcasecmp(f->name, own_fields[k]) == 0)
                return fail(out, base, err, errlen, "header:%s: postmux writes this field", f->name);
        const char *why = f->value ? field_value_problem(f->value) : "has no value";
        if (why) return fail(out, base, err, errlen, "header:%s: %s", f->name, why);
    }
    return 0;
}

/* A body part's content: CRLF text ending with CRLF, transfer-encoded only
 * when written into the message (no encoded copy of its own). */
typedef struct {
    const char    *type;   /* "text/plain" or "text/html" */
    pmx_text_cte_t cte;
    pmx_buf_t      text;   /* CRLF text */
} part_t;

static void part_prepare(part_t *p, const char *type, const char *s, size_t n)
{
    pmx_buf_init(&p->text);
    pmx_text_crlf(&p->text, s, n);
    if (p->text.len < 2 || p->text.data[p->text.len - 2] != '\r' ||
        p->text.data[p->text.len - 1] != '\n')
        pmx_buf_append(&p->text, "\r\n", 2);
    p->type = type;
    p->cte = pmx_text_cte_choose(p->text.data, p->text.len);
}

/* Appends the part's content, transfer-encoded. */
static void put_part_body(pmx_buf_t *out, const part_t *p)
{
    switch (p->cte) {
    case PMX_TEXT_7BIT:
        pmx_buf_append(out, p->text.data, p->text.len);
        break;
    case PMX_TEXT_QP:
        pmx_text_qp_encode(out, p->text.data, p->text.len);
        break;
    case PMX_TEXT_BASE64:
        pmx_text_base64_lines(out, p->text.data, p->text.len);
        break;
    }
}

static void put_part_headers(pmx_buf_t *out, const part_t *p)
{
    pmx_buf_appendf(out, "Content-Type: %s; charset=utf-8\r\nContent-Transfer-Encoding: %s\r\n",
                    p->type, pmx_text_cte_name(p->cte));
}

/*
 * A boundary that occurs in no part: "=_pmx_" + random base32, or derived
 * from the seed. "=_" cannot occur in quoted-printable or base64 text (QP
 * writes '=' only before two hex digits or a line break), so only 7bit parts
 * are searched.
 */
static int choose_boundary(uint64_t seed, const part_t *parts, size_t nparts, pmx_buf_t *b)
{
    for (unsigned attempt = 0; attempt < BOUNDARY_TRIES; attempt++) {
        pmx_buf_reset(b);
        pmx_buf_append_str(b, "=_pmx_");
        if (seed) {
            pmx_buf_appendf(b, "%016llx_%u", (unsigned long long)seed, attempt);
        } else {
            uint8_t rnd[15];
            if (pmx_random_bytes(rnd, sizeof rnd) != 0) return -1;
            pmx_base32_encode(b, rnd, sizeof rnd);
        }
        bool clash = false;
        for (size_t i = 0; i < nparts && !clash; i++)
            clash = parts[i].cte == PMX_TEXT_7BIT && parts[i].text.len &&
                    memmem(parts[i].text.data, parts[i].text.len, b->data, b->len);
        if (!clash) return 0;
    }
    return -1;
}

int pmx_mime_build(const pmx_job_t *job, const pmx_mime_opts_t *opts, pmx_buf_t *out,
                   char *err, size_t errlen)
{
    size_t base = out->len;
    if (job->raw) return fail(out, base, err, errlen, "raw: use pmx_mime_prepare_raw");
    if (!job->from.addr) return fail(out, base, err, errlen, "from: missing");
    if (!job->subject) return fail(out, base, err, errlen, "subject: missing");
    if (field_value_problem(job->subject))
        return fail(out, base, err, errlen, "subject: %s", field_value_problem(job->subject));
    if (!job->text && !job->html) return fail(out, base, err, errlen, "text/html: both missing");
    if (!opts->msgid || !msgid_ok(opts->msgid))
        return fail(out, base, err, errlen, "message id: not dot-atom text");
    if (!addrs_clean(&job->from, 1)) return fail(out, base, err, errlen, "from: control character in address");
    if (!addrs_clean(job->to.v, job->to.n)) return fail(out, base, err, errlen, "to: control character in address");
    if (!addrs_clean(job->cc.v, job->cc.n)) return fail(out, base, err, errlen, "cc: control character in address");
    if (job->reply_to && !addrs_clean(job->reply_to, 1))
        return fail(out, base, err, errlen, "reply_to: control character in address");
    if (check_job_headers(job, out, base, err, errlen) != 0) return -1;
    const char *domain = opts->msgid_domain ? opts->msgid_domain : pmx_addr_domain(&job->from);
    if (put_opts_fields(opts, out, base, err, errlen) != 0) return -1;

    put_date(out, opts->date);
    put_addr_field(out, "From", &job->from, 1);
    if (job->reply_to) put_addr_field(out, "Reply-To", job->reply_to, 1);
    put_addr_field(out, "To", job->to.v, job->to.n);
    put_addr_field(out, "Cc", job->cc.v, job->cc.n);
    pmx_text_hdr_unstructured(out, "Subject", job->subject, strlen(job->subject));
    put_msgid(out, opts->msgid, domain);
    for (size_t i = 0; i < job->nheaders; i++)
        pmx_text_hdr_unstructured(out, job->headers[i].name, job->headers[i].value,
                                  strlen(job->headers[i].value));
    pmx_buf_append_str(out, "MIME-Version: 1.0\r\n");

    part_t parts[2];
    size_t nparts = 0;
    if (job->text) part_prepare(&parts[nparts++], "text/plain", job->text, job->text_len);
    if (job->html) part_prepare(&parts[nparts++], "text/html", job->html, job->html_len);

    int rc = 0;
    if (nparts == 1) {
        put_part_headers(out, &parts[0]);
        pmx_buf_append(out, "\r\n", 2);
        put_part_body(out, &parts[0]);
    } else {
        pmx_buf_t b = PMX_BUF_INIT;
        if (choose_boundary(opts->boundary_seed, parts, nparts, &b) != 0) {
            rc = fail(out, base, err, errlen, "internal: no multipart boundary could be chosen");
        } else {
            pmx_buf_appendf(out, "Content-Type: multipart/alternative;\r\n boundary=\"%s\"\r\n\r\n",
                            b.data);
            for (size_t i = 0; i < nparts; i++) {
                pmx_buf_appendf(out, "--%s\r\n", b.data);
                put_part_headers(out, &parts[i]);
                pmx_buf_append(out, "\r\n", 2);
                put_part_body(out, &parts[i]);
            }
            pmx_buf_appendf(out, "--%s--\r\n", b.data);
        }
        pmx_buf_free(&b);
    }
    for (size_t i = 0; i < nparts; i++) pmx_buf_free(&parts[i].text);
    return rc;
}

/* ---- raw input: the header field scanner ---- */

typedef struct {
    size_t start, end;         /* the whole field, final line break included */
    size_t name_len;           /* name at start, without white space before ':' */
    size_t value, value_end;   /* after ':' .. before the final line break */
    size_t line;               /* 1-based line number of the field */
} field_t;

/* Length of the line break at s[i]: 2 for CRLF, 1 for a bare CR or LF, else 0. */
static size_t eol_len(const char *s, size_t n, size_t i)
{
    if (s[i] == '\r') return (i + 1 < n && s[i + 1] == '\n') ? 2 : 1;
    return s[i] == '\n' ? 1 : 0;
}

enum { SCAN_FIELD, SCAN_BODY, SCAN_EOF, SCAN_ERROR = -1 };

/*
 * Reads the field at *pos. SCAN_FIELD: *f is filled and *pos moves past it
 * (continuation lines included). SCAN_BODY: *pos was at the empty line and
 * moves past it. SCAN_EOF: the input ended before an empty line. SCAN_ERROR:
 * the line at *pos is neither a field nor a continuation ("line N is not a
 * header field"). *line tracks the line number of *pos.
 */
static int next_field(const char *s, size_t n, size_t *pos, size_t *line, field_t *f,
                      char *err, size_t errlen)
{
    size_t i = *pos;
    if (i >= n) return SCAN_EOF;
    size_t e = eol_len(s, n, i);
    if (e) {
        *pos = i + e;
        (*line)++;
        return SCAN_BODY;
    }
    size_t j = i;
    while (j < n && (unsigned char)s[j] > 0x20 && (unsigned char)s[j] < 0x7f && s[j] != ':') j++;
    size_t k = j;
    while (k < n && is_wsp(s[k])) k++;
    if (j == i || k >= n || s[k] != ':') {
        if (errlen) snprintf(err, errlen, "line %zu is not a header field", *line);
        return SCAN_ERROR;
    }
    f->start = i;
    f->name_len = j - i;
    f->value = k + 1;
    f->line = *line;
    size_t p = k + 1;
    for (;;) {
        while (p < n && s[p] != '\r' && s[p] != '\n') p++;
        f->value_end = p;
        if (p >= n) {
            f->end = n;
            break;
        }
        p += eol_len(s, n, p);
        (*line)++;
        if (p < n && is_wsp(s[p])) continue;   /* a continuation line */
        f->end = p;
        break;
    }
    *pos = f->end;
    return SCAN_FIELD;
}

static bool field_is(const char *s, const field_t *f, const char *name)
{
    size_t n = strlen(name);
    return f->name_len == n && strncasecmp(s + f->start, name, n) == 0;
}

int pmx_mime_header_from(const char *msg, size_t n, pmx_addr_t *out, char *err, size_t errlen)
{
    size_t pos = 0, line = 1, count = 0;
    field_t f, from = { 0 };
    int r;
    while ((r = next_field(msg, n, &pos, &line, &f, err, errlen)) == SCAN_FIELD) {
        if (field_is(msg, &f, "From")) {
            from = f;
            count++;
        }
    }
    if (r == SCAN_ERROR) return -1;
    if (count == 0) {
        if (errlen) snprintf(err, errlen, "no From header");
        return -1;
    }
    if (count > 1) {
        if (errlen) snprintf(err, errlen, "multiple From headers");
        return -1;
    }
    /* Unfold: drop the line breaks, keep the white space after them. */
    pmx_buf_t v = PMX_BUF_INIT;
    pmx_buf_reserve(&v, from.value_end - from.value);
    for (size_t i = from.value; i < from.value_end; i++)
        if (msg[i] != '\r' && msg[i] != '\n') pmx_buf_append_char(&v, msg[i]);
    char why[200];
    int rc = pmx_addr_parse(pmx_buf_cstr(&v), v.len, out, why, sizeof why);
    if (rc != 0 && errlen) snprintf(err, errlen, "From: %s", why);
    pmx_buf_free(&v);
    return rc == 0 ? 0 : -1;
}

int pmx_mime_header_get(const char *msg, size_t n, const char *name, pmx_buf_t *value,
                        char *err, size_t errlen)
{
    size_t pos = 0, line = 1;
    int count = 0;
    field_t f;
    int r;
    while ((r = next_field(msg, n, &pos, &line, &f, err, errlen)) == SCAN_FIELD) {
        if (!field_is(msg, &f, name)) continue;
        if (count++ || !value) continue;
        size_t a = f.value, b = f.value_end;
        while (a < b && (is_wsp(msg[a]) || msg[a] == '\r' || msg[a] == '\n')) a++;
        while (b > a && (is_wsp(msg[b - 1]) || msg[b - 1] == '\r' || msg[b - 1] == '\n')) b--;
        for (size_t i = a; i < b; i++)
            if (msg[i] != '\r' && msg[i] != '\n') pmx_buf_append_char(value, msg[i]);
    }
    return r == SCAN_ERROR ? -1 : count;
}

int pmx_mime_header_remove(const char *msg, size_t n, const char *name, pmx_buf_t *out,
                           char *err, size_t errlen)
{
    size_t pos = 0, line = 1, copied = 0, base = out->len;
    int removed = 0;
    field_t f;
    int r;
    while ((r = next_field(msg, n, &pos, &line, &f, err, errlen)) == SCAN_FIELD) {
        if (!field_is(msg, &f, name)) continue;
        pmx_buf_append(out, msg + copied, f.start - copied);
        copied = f.end;
        removed++;
    }
    if (r == SCAN_ERROR) {
        out->len = base;
        if (out->data) out->data[base] = '\0';
        return -1;
    }
    pmx_buf_append(out, msg + copied, n - copied);
    return removed;
}

int pmx_mime_header_cut(char *msg, size_t n, const char *name, size_t *skip, char *err,
                        size_t errlen)
{
    size_t pos = 0, line = 1, nr = 0, cap = 0;
    size_t (*cut)[2] = NULL;       /* the fields removed, in order */
    field_t f;
    int r;
    *skip = 0;
    while ((r = next_field(msg, n, &pos, &line, &f, err, errlen)) == SCAN_FIELD) {
        if (!field_is(msg, &f, name)) continue;
        if (nr == cap) {
            cap = cap ? cap * 2 : 4;
            cut = pmx_xrealloc(cut, cap * sizeof *cut);
        }
        cut[nr][0] = f.start;
        cut[nr][1] = f.end;
        nr++;
    }
    if (r == SCAN_ERROR) {
        free(cut);
        return -1;
    }
    /* From the last removed field back: what lies before each one moves up
     * to close the gap; what follows the last one (the body) stays. */
    size_t dst = nr ? cut[nr - 1][1] : 0;
    for (size_t i = nr; i-- > 0;) {
        size_t from = i ? cut[i - 1][1] : 0, len = cut[i][0] - from;
        dst -= len;
        memmove(msg + dst, msg + from, len);
    }
    *skip = dst;
    free(cut);
    return (int)nr;
}

/* ---- raw jobs ---- */

static bool dropped(const pmx_mime_opts_t *opts, const char *s, const field_t *f)
{
    for (size_t i = 0; i < opts->ndrop; i++)
        if (opts->drop[i] && field_is(s, f, opts->drop[i])) return true;
    return false;
}

/* The number of the first line longer than 998 octets (any line ending), or 0. */
static size_t long_line(const char *s, size_t n)
{
    size_t line = 1, len = 0;
    for (size_t i = 0; i < n; i++) {
        size_t e = eol_len(s, n, i);
        if (e) {
            line++;
            len = 0;
            i += e - 1;
        } else if (++len > PMX_TEXT_LINE_MAX) {
            return line;
        }
    }
    return 0;
}

/* What the checks of a raw message found (raw_scan). */
typedef struct {
    size_t     body;                 /* offset of the body, after the empty line */
    bool       has_date, has_msgid;
    pmx_addr_t from;                 /* the caller frees it */
} raw_info_t;

/* The refusals of pmx_mime_prepare_raw, reading raw only (nothing copied). */
static int raw_scan(const char *raw, size_t n, raw_info_t *ri, char *err, size_t errlen)
{
    char why[256];
    if (memchr(raw, '\0', n)) return fail(NULL, 0, err, errlen, "raw: contains a NUL byte");
    size_t bad = long_line(raw, n);
    if (bad) return fail(NULL, 0, err, errlen, "raw: line %zu is longer than 998 octets", bad);

    size_t pos = 0, line = 1;
    ri->has_date = ri->has_msgid = false;
    field_t f;
    int r;
    while ((r = next_field(raw, n, &pos, &line, &f, why, sizeof why)) == SCAN_FIELD) {
        if (field_is(raw, &f, "Date")) ri->has_date = true;
        if (field_is(raw, &f, "Message-ID")) ri->has_msgid = true;
    }
    if (r == SCAN_ERROR) return fail(NULL, 0, err, errlen, "raw: %s", why);
    if (r == SCAN_EOF)
        return fail(NULL, 0, err, errlen, "raw: no empty line between header and body");
    ri->body = pos;
    if (pmx_mime_header_from(raw, ri->body, &ri->from, why, sizeof why) != 0)
        return fail(NULL, 0, err, errlen, "raw: %s", why);
    return 0;
}

int pmx_mime_check_raw(const char *raw, size_t n, char *err, size_t errlen)
{
    raw_info_t ri;
    if (raw_scan(raw, n, &ri, err, errlen) < 0) return -1;
    pmx_addr_free(&ri.from);
    return 0;
}

int pmx_mime_prepare_raw(const char *raw, size_t n, const pmx_mime_opts_t *opts,
                         pmx_buf_t *out, char *err, size_t errlen)
{
    size_t base = out->len;
    char why[256];
    raw_info_t ri;
    if (raw_scan(raw, n, &ri, err, errlen) < 0) return -1;
    size_t pos, line, body = ri.body;
    bool has_date = ri.has_date, has_msgid = ri.has_msgid;
    pmx_addr_t from = ri.from;
    field_t f;
    int rc = 0;
    if (!has_msgid && (!opts->msgid || !msgid_ok(opts->msgid))) {
        rc = fail(out, base, err, errlen, "message id: not dot-atom text");
        goto done;
    }
    if (put_opts_fields(opts, out, base, err, errlen) != 0) {
        rc = -1;
        goto done;
    }
    if (!has_date) put_date(out, opts->date);
    if (!has_msgid)
        put_msgid(out, opts->msgid, opts->msgid_domain ? opts->msgid_domain : pmx_addr_domain(&from));

    pmx_buf_reserve(out, n + 64);
    pos = 0;
    line = 1;
    while (next_field(raw, body, &pos, &line, &f, why, sizeof why) == SCAN_FIELD)
        if (!dropped(opts, raw, &f)) pmx_text_crlf(out, raw + f.start, f.end - f.start);
    pmx_buf_append(out, "\r\n", 2);
    pmx_text_crlf(out, raw + body, n - body);
    if (n > body && (out->len < 2 || out->data[out->len - 1] != '\n'))
        pmx_buf_append(out, "\r\n", 2);
done:
    pmx_addr_free(&from);
    return rc;
}
