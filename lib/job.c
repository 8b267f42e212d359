/*
 * Job decoding (docs/queue.md, see job.h): the string fields of one stream entry
 * become a pmx_job_t, or the job is refused with one reason that starts with
 * the offending field's name. The same function serves `postmux send` (before
 * XADD) and the worker (before building the message), so both agree on what
 * a valid job is.
 *
 * Checks, in order: every field name is known (or header:<Name>) and given
 * once; required fields and the raw/composed exclusions; the message size
 * (before anything is copied); then each value (addresses through lib/addr's
 * RFC 5322 mailbox grammar, whose canonical addresses are the RFC 5321
 * Mailboxes the relay client sends, so a job accepted here never has a
 * recipient refused later as "not an address"; a bad address rejects the
 * whole job, naming the field — docs/queue.md, "Addresses"),
 * text as UTF-8 without the bytes that would break a header or a Postgres
 * text column) and the recipient limit. Every bound is checked before the
 * work it bounds, so a hostile entry costs time and memory linear in its
 * size. Nothing is written to *out unless the whole job is valid.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/buf.h"
#include "lib/job.h"
#include "lib/mem.h"
#include "lib/utf8.h"

#define ID_MAX       200
#define LINE_MAX_OCT 998
#define HEADER_PREFIX "header:"
#define HEADER_PREFIX_LEN 7

enum { F_FROM, F_TO, F_CC, F_BCC, F_SUBJECT, F_TEXT, F_HTML, F_REPLY_TO, F_RAW, F_ID,
       F_METADATA, F_CATEGORY, F_UNSUBSCRIBE, F_COUNT };

static const char *const field_names[F_COUNT] = {
    "from", "to", "cc", "bcc", "subject", "text", "html", "reply_to", "raw", "id", "metadata",
    "category", "unsubscribe",
};

/* Headers a job may not set: postmux writes them, or they would break the message. */
static const struct { const char *name, *why; } reserved_headers[] = {
    { "From",                      "use the from field" },
    { "To",                        "use the to field" },
    { "Cc",                        "use the cc field" },
    { "Bcc",                       "use the bcc field" },
    { "Subject",                   "use the subject field" },
    { "Reply-To",                  "use the reply_to field" },
    { "Date",                      "postmux writes it" },
    { "Message-ID",                "postmux writes it" },
    { "MIME-Version",              "postmux writes it" },
    { "Content-Type",              "postmux builds the MIME structure" },
    { "Content-Transfer-Encoding", "postmux builds the MIME structure" },
    { "DKIM-Signature",            "postmux signs the message" },
    { "Return-Path",               "the receiving server writes it" },
    { "X-Original-To",             "postmux writes it in test mode" },
    { "X-Postmux-Ref",             "postmux writes it on every message" },
};

/* Headers postmux writes for a job with unsubscribe = yes (docs/queue.md). */
static const char *const unsubscribe_headers[] = { "List-Unsubscribe", "List-Unsubscribe-Post" };

/* Appends a field name for a message: printable ASCII kept, the rest \xNN, truncated. */
static void put_name(pmx_buf_t *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (i == 64) { pmx_buf_append_str(b, "..."); return; }
        unsigned char c = (unsigned char)s[i];
        if (c > 0x20 && c < 0x7f && c != '\\' && c != '\'') pmx_buf_append_char(b, (char)c);
        else pmx_buf_appendf(b, "\\x%02x", c);
    }
}

/* Writes "NAME: REASON" into err and returns -1. */
static int failf(char *err, size_t errlen, const char *name, size_t name_len,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int failf(char *err, size_t errlen, const char *name, size_t name_len,
                 const char *fmt, ...)
{
    pmx_buf_t b = PMX_BUF_INIT;
    put_name(&b, name, name_len);
    pmx_buf_append_str(&b, ": ");
    va_list ap;
    va_start(ap, fmt);
    pmx_buf_vappendf(&b, fmt, ap);
    va_end(ap);
    if (errlen) snprintf(err, errlen, "%s", pmx_buf_cstr(&b));
    pmx_buf_free(&b);
    return -1;
}

static int fail_field(char *err, size_t errlen, const pmx_job_field_t *f, const char *reason)
{
    return failf(err, errlen, f->name, f->name_len, "%s", reason);
}

enum { TEXT_LINE, TEXT_BODY, TEXT_OPAQUE };

/*
 * Checks a text value. TEXT_LINE (subject, header values): no CR, LF or other
 * control characters but TAB. TEXT_BODY / TEXT_OPAQUE: anything but NUL.
 * All of them must be valid UTF-8.
 */
static int check_text(const pmx_job_field_t *f, int kind, char *err, size_t errlen)
{
    const char *v = f->value;
    /* Bodies: only NUL is refused, found with memchr (no per-octet loop). */
    if (kind != TEXT_LINE && f->value_len && memchr(v, 0, f->value_len))
        return fail_field(err, errlen, f, "contains a NUL byte");
    for (size_t i = 0; kind == TEXT_LINE && i < f->value_len; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c == 0) return fail_field(err, errlen, f, "contains a NUL byte");
        if (c == '\r' || c == '\n') return fail_field(err, errlen, f, "contains CR or LF");
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return fail_field(err, errlen, f, "contains a control character");
    }
    if (!pmx_utf8_valid(v, f->value_len)) return fail_field(err, errlen, f, "not valid UTF-8");
    return 0;
}

/* RFC 5322 field name: printable ASCII without ':' or space. */
static bool header_name_ok(const char *s, size_t n)
{
    if (n == 0) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f || c == ':') return false;
    }
    return true;
}

static bool same_header(const pmx_job_field_t *a, const pmx_job_field_t *b)
{
    return a->name_len == b->name_len &&
           strncasecmp(a->name + HEADER_PREFIX_LEN, b->name + HEADER_PREFIX_LEN,
                       a->name_len - HEADER_PREFIX_LEN) == 0;
}

static int check_header(const pmx_job_field_t *f, bool unsubscribe, char *err, size_t errlen)
{
    const char *hn = f->name + HEADER_PREFIX_LEN;
    size_t hl = f->name_len - HEADER_PREFIX_LEN;
    if (!header_name_ok(hn, hl))
        return fail_field(err, errlen, f, "not a valid header name (printable ASCII, no ':' or space)");
    for (size_t k = 0; unsubscribe && k < 2; k++)
        if (strlen(unsubscribe_headers[k]) == hl && strncasecmp(unsubscribe_headers[k], hn, hl) == 0)
            return fail_field(err, errlen, f, "header not allowed with unsubscribe = yes "
                                              "(postmux writes it for each recipient)");
    for (size_t k = 0; k < sizeof reserved_headers / sizeof reserved_headers[0]; k++) {
        const char *r = reserved_headers[k].name;
        if (strlen(r) == hl && strncasecmp(r, hn, hl) == 0)
            return failf(err, errlen, f->name, f->name_len, "header not allowed (%s)",
                         reserved_headers[k].why);
    }
    if (check_text(f, TEXT_LINE, err, errlen) < 0) return -1;
    if (hl + 2 + f->value_len > LINE_MAX_OCT)
        return failf(err, errlen, f->name, f->name_len, "header line longer than %d octets",
                     LINE_MAX_OCT);
    return 0;
}

static int parse_one(const pmx_job_field_t *f, pmx_addr_t *out, char *err, size_t errlen)
{
    char why[300];
    if (pmx_addr_parse(f->value, f->value_len, out, why, sizeof why) < 0)
        return fail_field(err, errlen, f, why);
    return 0;
}

static int parse_list(const pmx_job_field_t *f, pmx_addr_list_t *out, char *err, size_t errlen)
{
    char why[300];
    /* Bounded before parsing: parsing allocates per element. */
    if (f->value_len > PMX_JOB_MAX_LIST_BYTES)
        return failf(err, errlen, f->name, f->name_len, "longer than %d bytes",
                     PMX_JOB_MAX_LIST_BYTES);
    if (pmx_addr_list_parse(f->value, f->value_len, out, why, sizeof why) < 0)
        return fail_field(err, errlen, f, why);
    if (out->n > PMX_JOB_MAX_RECIPIENTS)
        return failf(err, errlen, f->name, f->name_len, "more than %d recipients",
                     PMX_JOB_MAX_RECIPIENTS);
    return 0;
}

/* A NUL-terminated copy (an empty value may come with a NULL pointer). */
static char *dup_value(const pmx_job_field_t *f)
{
    return f->value_len ? pmx_xstrndup(f->value, f->value_len) : pmx_xstrdup("");
}

/* Finds each known field (once) and checks the header:* names; the first problem wins. */
static int index_fields(const pmx_job_field_t *fields, size_t nfields,
                        const pmx_job_field_t **known, size_t *nheaders,
                        char *err, size_t errlen)
{
    *nheaders = 0;
    for (size_t i = 0; i < nfields; i++) {
        const pmx_job_field_t *f = &fields[i];
        if (f->name_len >= HEADER_PREFIX_LEN &&
            memcmp(f->name, HEADER_PREFIX, HEADER_PREFIX_LEN) == 0) {
            /* Bounded before the quadratic duplicate check below. */
            if (*nheaders == PMX_JOB_MAX_HEADERS)
                return failf(err, errlen, f->name, f->name_len, "more than %d header: fields",
                             PMX_JOB_MAX_HEADERS);
            for (size_t k = 0; k < i; k++)
                if (fields[k].name_len >= HEADER_PREFIX_LEN &&
                    memcmp(fields[k].name, HEADER_PREFIX, HEADER_PREFIX_LEN) == 0 &&
                    same_header(&fields[k], f))
                    return fail_field(err, errlen, f, "duplicate field");
            (*nheaders)++;
            continue;
        }
        int which = -1;
        for (int k = 0; k < F_COUNT; k++)
            if (strlen(field_names[k]) == f->name_len &&
                memcmp(field_names[k], f->name, f->name_len) == 0)
                which = k;
        if (which < 0) {
            pmx_buf_t b = PMX_BUF_INIT;
            put_name(&b, f->name, f->name_len);
            if (errlen) snprintf(err, errlen, "unknown field '%s'", pmx_buf_cstr(&b));
            pmx_buf_free(&b);
            return -1;
        }
        if (known[which]) return fail_field(err, errlen, f, "duplicate field");
        known[which] = f;
    }
    return 0;
}

/* Presence rules of docs/queue.md: required fields, and raw against composed fields. */
static int check_presence(const pmx_job_field_t **known, size_t nheaders,
                          const pmx_job_field_t *fields, size_t nfields,
                          char *err, size_t errlen)
{
    if (!known[F_FROM]) return failf(err, errlen, "from", 4, "missing");
    if (!known[F_TO]) return failf(err, errlen, "to", 2, "missing");
    if (known[F_RAW]) {
        static const int composed[] = { F_SUBJECT, F_TEXT, F_HTML };
        for (size_t k = 0; k < 3; k++)
            if (known[composed[k]])
                return fail_field(err, errlen, known[composed[k]], "not allowed with raw");
        if (nheaders)
            for (size_t i = 0; i < nfields; i++)
                if (fields[i].name_len >= HEADER_PREFIX_LEN &&
                    memcmp(fields[i].name, HEADER_PREFIX, HEADER_PREFIX_LEN) == 0)
                    return fail_field(err, errlen, &fields[i], "not allowed with raw");
        return 0;
    }
    if (!known[F_SUBJECT]) return failf(err, errlen, "subject", 7, "missing");
    if (!known[F_TEXT] && !known[F_HTML])
        return failf(err, errlen, "text", 4, "missing (a job needs text, html or raw)");
    return 0;
}

/*
 * The message size limit, checked before anything is copied: raw's length,
 * or subject + text + html + the header lines. A composed job's reason names
 * the larger body part.
 */
static int check_size(const pmx_job_field_t **known, const pmx_job_field_t *fields,
                      size_t nfields, size_t max, char *err, size_t errlen)
{
    if (known[F_RAW]) {
        if (known[F_RAW]->value_len > max)
            return failf(err, errlen, "raw", 3, "message of %zu bytes is over max_message_size (%zu)",
                         known[F_RAW]->value_len, max);
        return 0;
    }
    size_t size = 0, text = 0, html = 0;
    if (known[F_SUBJECT]) size += known[F_SUBJECT]->value_len;
    if (known[F_TEXT]) size += text = known[F_TEXT]->value_len;
    if (known[F_HTML]) size += html = known[F_HTML]->value_len;
    for (size_t i = 0; i < nfields; i++)
        if (fields[i].name_len >= HEADER_PREFIX_LEN &&
            memcmp(fields[i].name, HEADER_PREFIX, HEADER_PREFIX_LEN) == 0)
            size += fields[i].name_len - HEADER_PREFIX_LEN + 2 + fields[i].value_len;
    if (size > max)
        return failf(err, errlen, html > text ? "html" : "text", 4,
                     "message parts total %zu bytes, over max_message_size (%zu)", size, max);
    return 0;
}

/* pmx_job_decode; keep_raw = false checks raw without copying it (pmx_job_check). */
static int decode(const pmx_job_field_t *fields, size_t nfields, size_t max_message_size,
                  pmx_job_t *out, bool keep_raw, char *err, size_t errlen)
{
    const pmx_job_field_t *known[F_COUNT] = { 0 };
    size_t nheaders;
    if (index_fields(fields, nfields, known, &nheaders, err, errlen) < 0) return -1;
    if (check_presence(known, nheaders, fields, nfields, err, errlen) < 0) return -1;
    if (check_size(known, fields, nfields, max_message_size, err, errlen) < 0) return -1;

    pmx_job_t j;
    memset(&j, 0, sizeof j);
    const pmx_job_field_t *f;

    if (parse_one(known[F_FROM], &j.from, err, errlen) < 0) goto fail;
    if (parse_list(known[F_TO], &j.to, err, errlen) < 0) goto fail;
    if ((f = known[F_CC]) && parse_list(f, &j.cc, err, errlen) < 0) goto fail;
    if ((f = known[F_BCC]) && parse_list(f, &j.bcc, err, errlen) < 0) goto fail;
    if (pmx_job_recipient_count(&j) > PMX_JOB_MAX_RECIPIENTS) {
        failf(err, errlen, "to", 2, "more than %d recipients (to, cc and bcc together)",
              PMX_JOB_MAX_RECIPIENTS);
        goto fail;
    }
    if ((f = known[F_REPLY_TO])) {
        j.reply_to = pmx_xcalloc(1, sizeof *j.reply_to);
        if (parse_one(f, j.reply_to, err, errlen) < 0) goto fail;
    }

    if ((f = known[F_UNSUBSCRIBE])) {
        /* List-Unsubscribe per recipient (docs/queue.md, docs/http.md). */
        if (f->value_len == 3 && memcmp(f->value, "yes", 3) == 0) {
            j.unsubscribe = true;
        } else if (!(f->value_len == 2 && memcmp(f->value, "no", 2) == 0)) {
            fail_field(err, errlen, f, "must be yes or no");
            goto fail;
        }
    }
    if ((f = known[F_SUBJECT])) {
        if (check_text(f, TEXT_LINE, err, errlen) < 0) goto fail;
        j.subject = dup_value(f);
    }
    if ((f = known[F_TEXT])) {
        if (check_text(f, TEXT_BODY, err, errlen) < 0) goto fail;
        j.text = dup_value(f);
        j.text_len = f->value_len;
    }
    if ((f = known[F_HTML])) {
        if (check_text(f, TEXT_BODY, err, errlen) < 0) goto fail;
        j.html = dup_value(f);
        j.html_len = f->value_len;
    }
    if (nheaders) {
        j.headers = pmx_xcalloc(nheaders, sizeof *j.headers);
        for (size_t i = 0; i < nfields; i++) {
            f = &fields[i];
            if (f->name_len < HEADER_PREFIX_LEN ||
                memcmp(f->name, HEADER_PREFIX, HEADER_PREFIX_LEN) != 0)
                continue;
            if (check_header(f, j.unsubscribe, err, errlen) < 0) goto fail;
            pmx_header_t *h = &j.headers[j.nheaders++];
            h->name = pmx_xstrndup(f->name + HEADER_PREFIX_LEN, f->name_len - HEADER_PREFIX_LEN);
            h->value = dup_value(f);
        }
    }
    if ((f = known[F_RAW])) {
        if (f->value_len == 0) { fail_field(err, errlen, f, "empty"); goto fail; }
        if (memchr(f->value, '\0', f->value_len)) {
            fail_field(err, errlen, f, "contains a NUL byte");
            goto fail;
        }
        if (keep_raw) {
            j.raw = dup_value(f);
            j.raw_len = f->value_len;
        }
    }
    if ((f = known[F_ID])) {
        if (f->value_len == 0) { fail_field(err, errlen, f, "empty"); goto fail; }
        if (f->value_len > ID_MAX) {
            failf(err, errlen, "id", 2, "longer than %d characters", ID_MAX);
            goto fail;
        }
        for (size_t i = 0; i < f->value_len; i++) {
            unsigned char c = (unsigned char)f->value[i];
            if (c < 0x20 || c >= 0x7f) {
                fail_field(err, errlen, f, "only printable ASCII is allowed");
                goto fail;
            }
        }
        j.client_id = dup_value(f);
    }
    if ((f = known[F_METADATA])) {
        if (f->value_len > PMX_JOB_MAX_METADATA) {
            failf(err, errlen, "metadata", 8, "longer than %d bytes", PMX_JOB_MAX_METADATA);
            goto fail;
        }
        if (check_text(f, TEXT_OPAQUE, err, errlen) < 0) goto fail;
        j.metadata = dup_value(f);
    }
    if ((f = known[F_CATEGORY])) {
        /* The scope of a suppression made through this message (docs/feedback.md). */
        if (f->value_len == 0 || f->value_len > PMX_JOB_MAX_CATEGORY) {
            failf(err, errlen, "category", 8, "must be 1 to %d characters", PMX_JOB_MAX_CATEGORY);
            goto fail;
        }
        if (!pmx_job_category_valid(f->value, f->value_len)) {
            fail_field(err, errlen, f, "only a-z, 0-9, '_', '.' and '-' are allowed");
            goto fail;
        }
        j.category = dup_value(f);
    }
    *out = j;
    return 0;
fail:
    pmx_job_free(&j);
    return -1;
}

int pmx_job_decode(const pmx_job_field_t *fields, size_t nfields, size_t max_message_size,
                   pmx_job_t *out, char *err, size_t errlen)
{
    return decode(fields, nfields, max_message_size, out, true, err, errlen);
}

int pmx_job_check(const pmx_job_field_t *fields, size_t nfields, size_t max_message_size,
                  char *err, size_t errlen)
{
    pmx_job_t j;
    if (decode(fields, nfields, max_message_size, &j, false, err, errlen) < 0) return -1;
    pmx_job_free(&j);
    return 0;
}

bool pmx_job_category_valid(const char *s, size_t n)
{
    if (n == 0 || n > PMX_JOB_MAX_CATEGORY) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

size_t pmx_job_recipient_count(const pmx_job_t *job)
{
    return job->to.n + job->cc.n + job->bcc.n;
}

void pmx_job_free(pmx_job_t *job)
{
    if (!job) return;
    pmx_addr_free(&job->from);
    pmx_addr_list_free(&job->to);
    pmx_addr_list_free(&job->cc);
    pmx_addr_list_free(&job->bcc);
    if (job->reply_to) {
        pmx_addr_free(job->reply_to);
        free(job->reply_to);
    }
    free(job->subject);
    free(job->text);
    free(job->html);
    for (size_t i = 0; i < job->nheaders; i++) {
        free(job->headers[i].name);
        free(job->headers[i].value);
    }
    free(job->headers);
    free(job->raw);
    free(job->client_id);
    free(job->metadata);
    free(job->category);
    memset(job, 0, sizeof *job);
}
