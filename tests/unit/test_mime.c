/*
 * lib/mime.c: composed messages (headers, RFC 2047 subjects, display names,
 * single parts and multipart/alternative, transfer encodings, no Bcc), raw
 * message preparation (line endings, added fields, refusals) and the header
 * From lookup. Jobs are built directly, as the worker would get them from
 * pmx_job_decode.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "lib/buf.h"
#include "lib/encode.h"
#include "lib/mem.h"
#include "lib/mime.h"
#include "lib/text.h"

#define T0 1700000000   /* Tue, 14 Nov 2023 22:13:20 +0000 */

/* ---- helpers ---- */

static pmx_addr_t mk_addr(const char *display, const char *addr)
{
    pmx_addr_t a = { display ? pmx_xstrdup(display) : NULL, pmx_xstrdup(addr) };
    return a;
}

static void set_list(pmx_addr_list_t *l, size_t n, ...)
{
    va_list ap;
    va_start(ap, n);
    l->v = pmx_xcalloc(n ? n : 1, sizeof *l->v);
    l->n = n;
    for (size_t i = 0; i < n; i++) {
        const char *d = va_arg(ap, const char *);
        const char *a = va_arg(ap, const char *);
        l->v[i] = mk_addr(d, a);
    }
    va_end(ap);
}

/* A composed job: from, one To, the given subject and parts. */
static pmx_job_t mk_job(const char *subject, const char *text, const char *html)
{
    pmx_job_t j;
    memset(&j, 0, sizeof j);
    j.from = mk_addr("Acme Billing", "billing@acme.example");
    set_list(&j.to, 1, "Jane Doe", "jane@example.org");
    set_list(&j.cc, 0);
    set_list(&j.bcc, 0);
    j.subject = pmx_xstrdup(subject);
    if (text) { j.text = pmx_xstrdup(text); j.text_len = strlen(text); }
    if (html) { j.html = pmx_xstrdup(html); j.html_len = strlen(html); }
    return j;
}

static pmx_mime_opts_t mk_opts(void)
{
    pmx_mime_opts_t o;
    memset(&o, 0, sizeof o);
    o.msgid = "msg_abc123";
    o.date = T0;
    o.boundary_seed = 1;
    return o;
}

/* CRLF only, no line over 998; header and body split at the first empty line. */
static void assert_wellformed(const pmx_buf_t *m)
{
    assert_true(m->len > 0);
    assert_true(pmx_text_is_crlf(m->data, m->len));
    assert_true(pmx_text_longest_line(m->data, m->len) <= 998);
    assert_non_null(strstr(m->data, "\r\n\r\n"));
    assert_true(m->len >= 2 && m->data[m->len - 2] == '\r' && m->data[m->len - 1] == '\n');
    assert_null(memchr(m->data, '\0', m->len));
}

/* The header section (up to the empty line), NUL-terminated, for searching. */
static char *header_of(const pmx_buf_t *m)
{
    const char *e = strstr(m->data, "\r\n\r\n");
    assert_non_null(e);
    return pmx_xstrndup(m->data, (size_t)(e - m->data) + 2);
}

/* The body (after the empty line). */
static const char *body_of(const pmx_buf_t *m)
{
    return strstr(m->data, "\r\n\r\n") + 4;
}

/* Every header line is at most max octets. */
static void assert_header_lines_max(const char *hdr, size_t max)
{
    size_t l = pmx_text_longest_line(hdr, strlen(hdr));
    if (l > max) fail_msg("header line of %zu octets:\n%s", l, hdr);
}

/* Count of fields named name (case-insensitive) in a header section. */
static int count_fields(const char *hdr, const char *name)
{
    int n = 0;
    size_t nl = strlen(name);
    for (const char *p = hdr; p && *p; ) {
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') n++;
        p = strstr(p, "\r\n");
        if (p) p += 2;
    }
    return n;
}

static int hexval(char c)
{
    return c >= 'A' ? c - 'A' + 10 : c - '0';
}

/* Decodes the encoded-words of an unfolded value (what a mail reader does). */
static void decode_words(pmx_buf_t *out, const char *v)
{
    char *copy = pmx_xstrdup(v), *save = NULL;
    for (char *w = strtok_r(copy, " \t\r\n", &save); w; w = strtok_r(NULL, " \t\r\n", &save)) {
        size_t wl = strlen(w);
        assert_true(wl <= 75 && strncmp(w, "=?utf-8?", 8) == 0);
        const char *t = w + 10;
        size_t tl = wl - 12;
        if (w[8] == 'B') {
            assert_int_equal(pmx_base64_decode(out, t, tl), 0);
        } else {
            for (size_t i = 0; i < tl; i++) {
                if (t[i] == '_') pmx_buf_append_char(out, ' ');
                else if (t[i] == '=') { pmx_buf_append_char(out, (char)(hexval(t[i + 1]) * 16 + hexval(t[i + 2]))); i += 2; }
                else pmx_buf_append_char(out, t[i]);
            }
        }
    }
    free(copy);
}

/* The value of the first field called name, unfolded, or NULL. */
static char *field_value(const char *hdr, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = hdr; p && *p; ) {
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            pmx_buf_t v = PMX_BUF_INIT;
            const char *q = p + nl + 1;
            if (*q == ' ') q++;
            for (;;) {
                const char *e = strstr(q, "\r\n");
                pmx_buf_append(&v, q, (size_t)(e - q));
                if (e[2] != ' ' && e[2] != '\t') break;
                q = e + 2;
            }
            return pmx_buf_detach(&v);
        }
        p = strstr(p, "\r\n");
        if (p) p += 2;
    }
    return NULL;
}

static void qp_decode(pmx_buf_t *out, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '=' && i + 2 < n && s[i + 1] == '\r') { i += 2; continue; }
        if (s[i] == '=') { pmx_buf_append_char(out, (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]))); i += 2; }
        else pmx_buf_append_char(out, s[i]);
    }
}

static int build(const pmx_job_t *j, const pmx_mime_opts_t *o, pmx_buf_t *m, char *err)
{
    return pmx_mime_build(j, o, m, err, 256);
}

/* ---- composed ---- */

static void test_ascii_text(void **state)
{
    (void)state;
    pmx_job_t j = mk_job("Your invoice", "Hello Jane,\r\nyour invoice is attached.\r\n", NULL);
    pmx_mime_opts_t o = mk_opts();
    pmx_buf_t m = PMX_BUF_INIT;
    char err[256] = "";
    assert_int_equal(build(&j, &o, &m, err), 0);
    assert_wellformed(&m);
    const char *want =
        "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
        "From: Acme Billing <billing@acme.example>\r\n"
        "To: Jane Doe <jane@example.org>\r\n"
        "Subject: Your invoice\r\n"
        "Message-ID: <msg_abc123@acme.example>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 7bit\r\n"
        "\r\n"
        "Hello Jane,\r\nyour invoice is attached.\r\n";
    assert_string_equal(m.data, want);
    pmx_buf_free(&m);
    pmx_job_free(&j);
}

static void test_utf8_subject_and_names(void **state)
{
    (void)state;
    const char *subject = "Grüße aus München — Ihre Rechnung für November ist da, bitte prüfen "
                          "Sie die Beträge sorgfältig 🎉";
    pmx_job_t j = mk_job(subject, "Hallo\n", NULL);
    free(j.from.display);
    j.from.display = pmx_xstrdup("Bäckerei Müller");
    pmx_addr_list_free(&j.to);
    set_list(&j.to, 2, "Doe, Jane", "jane@example.org", NULL, "bob@example.net");
    pmx_mime_opts_t o = mk_opts();
    pmx_buf_t m = PMX_BUF_INIT;
    char err[256] = "";
    assert_int_equal(build(&j, &o, &m, err), 0);
    assert_wellformed(&m);
    char *hdr = header_of(&m);
    assert_header_lines_max(hdr, 78);
    /* 8-bit never reaches the header. */
    for (const char *p = hdr; *p; p++) assert_true((unsigned char)*p < 0x80);

    char *sv = field_value(hdr, "Subject");
    pmx_buf_t dec = PMX_BUF_INIT;
    decode_words(&dec, sv);
    assert_string_equal(pmx_buf_cstr(&dec), subject);
    pmx_buf_free(&dec);

    char *fv = field_value(hdr, "From");
    assert_non_null(strstr(fv, "<billing@acme.example>"));
    *strstr(fv, " <billing") = '\0';
    decode_words(&dec, fv);
    assert_string_equal(pmx_buf_cstr(&dec), "Bäckerei Müller");
    pmx_buf_free(&dec);

    char *tv = field_value(hdr, "To");
    assert_string_equal(tv, "\"Doe, Jane\" <jane@example.org>, bob@example.net");
    /* The body "Hallo\n" became CRLF text. */
    assert_string_equal(body_of(&m), "Hallo\r\n");
    free(sv); free(fv); free(tv); free(hdr);
    pmx_buf_free(&m);
    pmx_job_free(&j);
}

static void test_both_parts(void **state)
{
    (void)state;
    const char *html = "<p>Grüße, <b>Jane</b></p>\n<p>Ihre Rechnung über 100 € ist bereit.</p>\n";
    pmx_job_t j = mk_job("Invoice", "Plain text version\r\n.line with a dot\r\n", html);
    pmx_mime_opts_t o = mk_opts();
    pmx_buf_t m = PMX_BUF_INIT;
    char err[256] = "";
    assert_int_equal(build(&j, &o, &m, err), 0);
    assert_wellformed(&m);
    char *hdr = header_of(&m);
    char *ct = field_value(hdr, "Content-Type");
    assert_string_equal(ct, "multipart/alternative; boundary=\"=_pmx_0000000000000001_0\"");
    assert_int_equal(count_fields(hdr, "Content-Transfer-Encoding"), 0);
    const char *body = body_of(&m);
    const char *want_start =
        "--=_pmx_0000000000000001_0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 7bit\r\n"
        "\r\n"
        "Plain text version\r\n.line with a dot\r\n"
        "--=_pmx_0000000000000001_0\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n"
        "\r\n";
    assert_true(strncmp(body, want_start, strlen(want_start)) == 0);
    const char *qp = body + strlen(want_start);
    const char *close = strstr(qp, "--=_pmx_0000000000000001_0--\r\n");
    assert_non_null(close);
    assert_string_equal(close, "--=_pmx_0000000000000001_0--\r\n");   /* last line */
    pmx_buf_t dec = PMX_BUF_INIT;
    qp_decode(&dec, qp, (size_t)(close - qp));
    pmx_buf_t want = PMX_BUF_INIT;
    pmx_text_crlf(&want, html, strlen(html));
    assert_string_equal(pmx_buf_cstr(&dec), pmx_buf_cstr(&want));
    pmx_buf_free(&dec);
    pmx_buf_free(&want);
    free(ct);
    free(hdr);
    pmx_buf_free(&m);

    /* A random boundary: "=_pmx_" and 24 base32 characters, different each time. */
    o.boundary_seed = 0;
    pmx_buf_t m2 = PMX_BUF_INIT, m3 = PMX_BUF_INIT;
    assert_int_equal(build(&j, &o, &m2, err), 0);
    assert_int_equal(build(&j, &o, &m3, err), 0);
    hdr = header_of(&m2);
    ct = field_value(hdr, "Content-Type");
    assert_int_equal(strlen(ct), strlen("multipart/alternative; boundary=\"=_pmx_\"") + 24);
    assert_string_not_equal(m2.data, m3.data);
    free(ct);
    free(hdr);
    pmx_buf_free(&m2);
    pmx_buf_free(&m3);
    pmx_job_free(&j);
}

static void test_boundary_avoids_content(void **state)
{
    (void)state;
    /* The text part contains the first candidate boundary: the next one is used. */
    pmx_job_t j = mk_job("s", "trap: --=_pmx_0000000000000001_0\r\n", "<p>x</p>");
    pmx_mime_opts_t o = mk_opts();
    pmx_buf_t m = PMX_BUF_INIT;
    char err[256];
    assert_int_equal(build(&j, &o, &m, err), 0);
    assert_non_null(strstr(m.data, "boundary=\"=_pmx_0000000000000001_1\""));
    assert_null(strstr(m.data, "\r\n--=_pmx_0000000000000001_0\r\n"));
    pmx_buf_free(&m);
    pmx_job_free(&j);
}

static void test_html_only(void **state)
{
    (void)state;
    pmx_job_t j = mk_job("Hi", NULL, "<html><body><p>Hello</p></body></html>");
    pmx_mime_opts_t o = mk_opts();
    pmx_buf_t m = PMX_BUF_INIT;
    char err[256];
    assert_int_equal(build(&j, &o, &m, err), 0);
    assert_wellformed(&m);
    char *hdr = header_of(&m);
    char *ct = field_value(hdr, "Content-Type");
    assert_string_equal(ct, "text/html; charset=utf-8");
    free(ct);
    ct = field_value(hdr, "Content-Transfer-Encoding");
    assert_string_equal(ct, "7bit");
    assert_string_equal(body_of(&m), "<html><body><p>Hello</p></body></html>\r\n");
    assert_null(strstr(m.data, "multipart"));
    free(ct);
    free(hdr);
    pmx_buf_free(&m);
    pmx_job_free(&j);
}

static void test_encodings_and_long_lines(void **state)
{
    (void)state;
    /* Mostly non-ASCII: base64. */
    const char *cjk = "日本語のメールです。これはテストです。\n二行目です。\n";
    pmx_job_t j = mk_job("s", cjk, NULL);
    pmx_mime_opts_t o = mk_opts();
    pmx_buf_t m = PMX_BUF_INIT;
    char err[256];
    assert_int_equal(build(&j, &o, &m, err), 0);
    assert_wellformed(&m);
    assert_non_null(strstr(m.data, "\r\nContent-Transfer-Encoding: base64\r\n"));
    pmx_buf_t dec = PMX_BUF_INIT, want = PMX_BUF_INIT;
    assert_int_equal(pmx_base64_decode(&dec, body_of(&m), strlen(body_of(&m))), 0);
    pmx_text_crlf(&want, cjk, strlen(cjk));
    assert_string_equal(pmx_buf_cstr(&dec), pmx_buf_cstr(&want));
    pmx_buf_free(&dec);
    pmx_buf_free(&want);
    pmx_buf_free(&m);
    pmx_job_free(&j);

    /* An ASCII line of 3000 octets: quoted-printable with soft breaks, lines <= 76. */
    char *longtext = pmx_xmalloc(3003);
    memset(longtext, 'a', 3000);
    memcpy(longtext + 3000, "\n", 2);
    j = mk_job("s", longtext, NULL);
    assert_int_equal(build(&j, &o, &m, err), 0);
    assert_wellformed(&m);
    assert_non_null(strstr(m.data, "\r\nContent-Transfer-Encoding: quoted-printable\r\n"));
    assert_true(pmx_text_longest_line(body_of(&m), strlen(body_of(&m))) <= 76);
    qp_decode(&dec, body_of(&m), strlen(body_of(&m)));
    assert_int_equal(dec.len, 3002);
    pmx_buf_free(&dec);
    pmx_buf_free(&m);
    pmx_job_free(&j);
    free(longtext);
}

static void test_no_bcc_many_recipients(void **state)
{
    (void)state;
    pmx_job_t j = mk_job("s", "t", NULL);
    pmx_addr_list_free(&j.to);
    j.to.v = pmx_xcalloc(60, sizeof *j.to.v);
    j.to.n = 60;
    for (int i = 0; i < 60; i++) {
        char a[64];
        snprintf(a, sizeof a, "user%02d@example.org", i);
        j.to.v[i] = mk_addr(i % 2 ? "A Person" : NULL, a);
    }
    pmx_addr_list_free(&j.cc);
    set_list(&j.cc, 1, "Carl", "carl@example.net");
    pmx_addr_list_free(&j.bcc);
    set_list(&j.bcc, 2, "Secret Sam", "sam@hidden.example", NULL, "spy@hidden.example");
    j.reply_to = pmx_xmalloc(sizeof *j.reply_to);
    *j.reply_to = mk_addr(NULL, "replies@acme.example");
    pmx_mime_opts_t o = mk_opts();
    pmx_buf_t m = PMX_BUF_INIT;
    char err[256];
    assert_int_equal(build(&j, &o, &m, err), 0);
    assert_wellformed(&m);
    assert_null(strstr(m.data, "hidden.example"));
    assert_null(strcasestr(m.data, "bcc"));
    assert_null(strstr(m.data, "Secret Sam"));
    char *hdr = header_of(&m);
    assert_header_lines_max(hdr, 78);
    assert_int_equal(count_fields(hdr, "To"), 1);
    assert_int_equal(count_fields(hdr, "Cc"), 1);
    char *rt = field_value(hdr, "Reply-To");
    assert_string_equal(rt, "replies@acme.example");
    char *to = field_value(hdr, "To");
    for (int i = 0; i < 60; i++) {
        char a[64];
        snprintf(a, sizeof a, "user%02d@example.org", i);
        assert_non_null(strstr(to, a));
    }
    /* Order: Date From Reply-To To Cc Subject Message-ID. */
    const char *order[] = { "Date:", "From:", "Reply-To:", "To:", "Cc:", "Subject:", "Message-ID:", "MIME-Version:" };
    const char *prev = hdr;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        const char *p = strstr(hdr, order[i]);
        assert_non_null(p);
        assert_true(p >= prev);
        prev = p;
    }
    free(rt);
    free(to);
    free(hdr);
    pmx_buf_free(&m);
    pmx_job_free(&j);
}

static void test_extra_fields(void **state)
{
    (void)state;
    pmx_job_t j = mk_job("s", "t", NULL);
    j.nheaders = 2;
    j.headers = pmx_xcalloc(2, sizeof *j.headers);
    j.headers[0].name = pmx_xstrdup("X-Campaign");
    j.headers[0].value = pmx_xstrdup("spring-2024");
    j.headers[1].name = pmx_xstrdup("X-Note");
    j.headers[1].value = pmx_xstrdup("café");
    pmx_mime_field_t added[] = {
        { "X-Original-To", "alice@example.org" },
        { "X-Original-To", "bob@example.org" },
    };
    pmx_mime_opts_t o = mk_opts();
    o.fields = added;
    o.nfields = 2;
    pmx_buf_t m = PMX_BUF_INIT;
    char err[256];
    assert_int_equal(build(&j, &o, &m, err), 0);
    assert_wellformed(&m);
    assert_true(strncmp(m.data, "X-Original-To: alice@example.org\r\nX-Original-To: bob@example.org\r\nDate: ", 72) == 0);
    assert_non_null(strstr(m.data, "\r\nX-Campaign: spring-2024\r\n"));
    assert_non_null(strstr(m.data, "\r\nX-Note: =?utf-8?B?Y2Fmw6k=?=\r\n"));
    /* header:* fields come after Message-ID and before MIME-Version. */
    assert_true(strstr(m.data, "X-Campaign") > strstr(m.data, "Message-ID"));
    assert_true(strstr(m.data, "X-Campaign") < strstr(m.data, "MIME-Version"));
    pmx_buf_free(&m);
    pmx_job_free(&j);
}

static void expect_build_error(pmx_job_t *j, const pmx_mime_opts_t *o, const char *want)
{
    pmx_buf_t m = PMX_BUF_INIT;
    pmx_buf_append_str(&m, "KEEP");
    char err[256] = "";
    assert_int_equal(build(j, o, &m, err), -1);
    assert_string_equal(err, want);
    assert_string_equal(pmx_buf_cstr(&m), "KEEP");
    pmx_buf_free(&m);
}

static void test_build_refusals(void **state)
{
    (void)state;
    pmx_mime_opts_t o = mk_opts();
    pmx_job_t j = mk_job("s", "t", NULL);
    j.nheaders = 1;
    j.headers = pmx_xcalloc(1, sizeof *j.headers);
    j.headers[0].name = pmx_xstrdup("from");
    j.headers[0].value = pmx_xstrdup("evil@attacker.example");
    expect_build_error(&j, &o, "header:from: postmux writes this field");
    free(j.headers[0].name);
    j.headers[0].name = pmx_xstrdup("X-Ok");
    free(j.headers[0].value);
    j.headers[0].value = pmx_xstrdup("a\r\nBcc: x@y");
    expect_build_error(&j, &o, "header:X-Ok: contains CR or LF");
    free(j.headers[0].name);
    j.headers[0].name = pmx_xstrdup("Bad Name");
    expect_build_error(&j, &o, "header:Bad Name: not a valid field name");
    pmx_job_free(&j);

    j = mk_job("line\nbreak", "t", NULL);
    expect_build_error(&j, &o, "subject: contains CR or LF");
    pmx_job_free(&j);

    j = mk_job("s", "t", NULL);
    free(j.to.v[0].addr);
    j.to.v[0].addr = pmx_xstrdup("a@b.example\r\nBcc: leak@example.org");
    expect_build_error(&j, &o, "to: control character in address");
    pmx_job_free(&j);

    j = mk_job("s", NULL, NULL);
    expect_build_error(&j, &o, "text/html: both missing");
    pmx_job_free(&j);

    j = mk_job("s", "t", NULL);
    o.msgid = "bad id";
    expect_build_error(&j, &o, "message id: not dot-atom text");
    o = mk_opts();
    pmx_mime_field_t bad = { "X-Original-To", "a\nb" };
    o.fields = &bad;
    o.nfields = 1;
    expect_build_error(&j, &o, "added field X-Original-To: contains CR or LF");
    pmx_job_free(&j);
}

/* ---- raw ---- */

static int prep(const char *raw, size_t n, const pmx_mime_opts_t *o, pmx_buf_t *m, char *err)
{
    return pmx_mime_prepare_raw(raw, n, o, m, err, 256);
}

static void test_raw_line_endings_and_added(void **state)
{
    (void)state;
    const char raw[] = "From: Alice <alice@acme.example>\nTo: bob@example.org\nSubject: hi\n"
                       "\n"
                       "line one\n.starts with a dot\n.\n..two dots\r\nbare cr\rend";
    pmx_mime_field_t added[] = { { "X-Original-To", "carol@example.org" } };
    pmx_mime_opts_t o = mk_opts();
    o.fields = added;
    o.nfields = 1;
    pmx_buf_t m = PMX_BUF_INIT;
    char err[256] = "";
    assert_int_equal(prep(raw, sizeof raw - 1, &o, &m, err), 0);
    assert_wellformed(&m);
    const char *want =
        "X-Original-To: carol@example.org\r\n"
        "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
        "Message-ID: <msg_abc123@acme.example>\r\n"
        "From: Alice <alice@acme.example>\r\nTo: bob@example.org\r\nSubject: hi\r\n"
        "\r\n"
        "line one\r\n.starts with a dot\r\n.\r\n..two dots\r\nbare cr\r\nend\r\n";
    assert_string_equal(m.data, want);

    /* Through dot-stuffing and back: nothing ends DATA early. */
    pmx_buf_t d = PMX_BUF_INIT, u = PMX_BUF_INIT;
    pmx_text_dot_stuff(&d, m.data, m.len);
    assert_non_null(strstr(d.data, "\r\n..starts with a dot\r\n..\r\n...two dots\r\n"));
    assert_ptr_equal(strstr(d.data, "\r\n.\r\n"), d.data + d.len - 5);
    assert_int_equal(pmx_text_dot_unstuff(&u, d.data, d.len), 0);
    assert_string_equal(u.data, m.data);
    pmx_buf_free(&d);
    pmx_buf_free(&u);
    pmx_buf_free(&m);

    /* Bare CR endings only. */
    const char cr[] = "From: a@acme.example\rSubject: x\r\rbody\r.\r";
    assert_int_equal(prep(cr, sizeof cr - 1, &o, &m, err), 0);
    assert_wellformed(&m);
    assert_non_null(strstr(m.data, "\r\nFrom: a@acme.example\r\nSubject: x\r\n\r\nbody\r\n.\r\n"));
    pmx_buf_free(&m);
}

static void test_raw_keeps_date_msgid_drops(void **state)
{
    (void)state;
    const char raw[] = "Message-Id: <orig@acme.example>\r\n"
                       "date: Mon, 1 Jan 2024 00:00:00 +0100\r\n"
                       "X-Workspace-Id: ws_aaaaaaaaaaaaaaaa\r\n\tcontinued\r\n"
                       "From: a@acme.example\r\n"
                       "Bcc: kept@example.org\r\n"
                       "\r\n"
                       "body\r\n";
    const char *drop[] = { "x-workspace-id" };
    pmx_mime_opts_t o = mk_opts();
    o.drop = drop;
    o.ndrop = 1;
    pmx_buf_t m = PMX_BUF_INIT;
    char err[256];
    assert_int_equal(prep(raw, sizeof raw - 1, &o, &m, err), 0);
    assert_string_equal(m.data, "Message-Id: <orig@acme.example>\r\n"
                                "date: Mon, 1 Jan 2024 00:00:00 +0100\r\n"
                                "From: a@acme.example\r\n"
                                "Bcc: kept@example.org\r\n"
                                "\r\n"
                                "body\r\n");
    pmx_buf_free(&m);

    /* msgid_domain overrides the From domain; an empty body stays empty. */
    o.drop = NULL;
    o.ndrop = 0;
    o.msgid_domain = "mail.acme.example";
    assert_int_equal(prep("From: a@acme.example\n\n", 22, &o, &m, err), 0);
    assert_string_equal(m.data, "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
                                "Message-ID: <msg_abc123@mail.acme.example>\r\n"
                                "From: a@acme.example\r\n\r\n");
    pmx_buf_free(&m);
}

static void expect_raw_error(const char *raw, size_t n, const char *want)
{
    pmx_mime_opts_t o = mk_opts();
    pmx_buf_t m = PMX_BUF_INIT;
    pmx_buf_append_str(&m, "KEEP");
    char err[256] = "";
    assert_int_equal(prep(raw, n, &o, &m, err), -1);
    /* A want ending in "*" is a prefix (the rest is the address parser's wording). */
    size_t wl = strlen(want);
    bool ok = want[wl - 1] == '*' ? strncmp(err, want, wl - 1) == 0 : strcmp(err, want) == 0;
    if (!ok) fail_msg("error [%s], want [%s]", err, want);
    assert_string_equal(pmx_buf_cstr(&m), "KEEP");
    pmx_buf_free(&m);
    /* pmx_mime_check_raw refuses it the same way, building nothing */
    char err2[256] = "";
    assert_int_equal(pmx_mime_check_raw(raw, n, err2, sizeof err2), -1);
    assert_string_equal(err2, err);
}

static void test_raw_refusals(void **state)
{
    (void)state;
#define RAW_ERR(s, want) expect_raw_error(s, sizeof s - 1, want)
    RAW_ERR("From: a@acme.example\r\nSubject: no body separator\r\n", "raw: no empty line between header and body");
    RAW_ERR("Hello, this is just text\r\n\r\nmore", "raw: line 1 is not a header field");
    RAW_ERR(" leading: continuation\r\n\r\n", "raw: line 1 is not a header field");
    RAW_ERR("From: a@acme.example\r\nbroken line\r\n\r\nx", "raw: line 2 is not a header field");
    RAW_ERR("From a@acme.example Mon Jan  1 00:00:00 2024\nFrom: a@acme.example\n\nx", "raw: line 1 is not a header field");
    RAW_ERR("Subject: x\r\n\r\nbody", "raw: no From header");
    RAW_ERR("From: a@acme.example\r\nFrom: b@evil.example\r\n\r\nx", "raw: multiple From headers");
    RAW_ERR("FROM: a@acme.example\r\nfrom : b@evil.example\r\n\r\nx", "raw: multiple From headers");
    RAW_ERR("From: a@acme.example\r\nSubject: s\r\n\r\nx\0y", "raw: contains a NUL byte");
    RAW_ERR("From: not an address\r\n\r\nx", "raw: From: *");
    RAW_ERR("From: a@acme.example (a comment)\r\n\r\nx", "raw: From: *");
    char big[1200];
    int n = snprintf(big, sizeof big, "From: a@acme.example\r\n\r\nshort\r\n");
    memset(big + n, 'x', 999);
    expect_raw_error(big, (size_t)n + 999, "raw: line 4 is longer than 998 octets");
    memset(big + n, 'x', 998);
    pmx_mime_opts_t o = mk_opts();
    pmx_buf_t m = PMX_BUF_INIT;
    char err[256];
    assert_int_equal(prep(big, (size_t)n + 998, &o, &m, err), 0);   /* exactly 998 is fine */
    assert_int_equal(pmx_mime_check_raw(big, (size_t)n + 998, err, sizeof err), 0);
    pmx_buf_free(&m);
#undef RAW_ERR
}

/* ---- header From ---- */

static void test_header_from(void **state)
{
    (void)state;
    pmx_addr_t a;
    char err[256] = "";
    const char folded[] = "Subject: x\r\nFrom: \"Doe, John\"\r\n <John@Example.COM>\r\nTo: y@z.example\r\n\r\nFrom: body@not.header\r\n";
    assert_int_equal(pmx_mime_header_from(folded, sizeof folded - 1, &a, err, sizeof err), 0);
    assert_string_equal(a.addr, "John@example.com");
    assert_string_equal(a.display, "Doe, John");
    assert_string_equal(pmx_addr_domain(&a), "example.com");
    pmx_addr_free(&a);

    const char lf[] = "from:\n\tjane@acme.example\nSubject: s\n\n";
    assert_int_equal(pmx_mime_header_from(lf, sizeof lf - 1, &a, err, sizeof err), 0);
    assert_string_equal(a.addr, "jane@acme.example");
    pmx_addr_free(&a);

    /* Encoded-words stay as written in the display name. */
    const char ew[] = "From: =?utf-8?Q?J=C3=B6rg?= <j@acme.example>\r\n\r\n";
    assert_int_equal(pmx_mime_header_from(ew, sizeof ew - 1, &a, err, sizeof err), 0);
    assert_string_equal(a.display, "=?utf-8?Q?J=C3=B6rg?=");
    pmx_addr_free(&a);

    const char two[] = "From: a@acme.example\r\nTo: b@x.example\r\nFrom: c@evil.example\r\n\r\n";
    assert_int_equal(pmx_mime_header_from(two, sizeof two - 1, &a, err, sizeof err), -1);
    assert_string_equal(err, "multiple From headers");
    const char none[] = "To: b@x.example\r\n\r\nFrom: in@body.example\r\n";
    assert_int_equal(pmx_mime_header_from(none, sizeof none - 1, &a, err, sizeof err), -1);
    assert_string_equal(err, "no From header");
    const char list[] = "From: a@acme.example, b@acme.example\r\n\r\n";
    assert_int_equal(pmx_mime_header_from(list, sizeof list - 1, &a, err, sizeof err), -1);
    assert_true(strncmp(err, "From: ", 6) == 0);
}

static void test_date(void **state)
{
    (void)state;
    pmx_buf_t b = PMX_BUF_INIT;
    pmx_mime_date(&b, 0);
    assert_string_equal(b.data, "Thu, 01 Jan 1970 00:00:00 +0000");
    pmx_buf_reset(&b);
    pmx_mime_date(&b, 951782400);   /* leap day 2000 */
    assert_string_equal(b.data, "Tue, 29 Feb 2000 00:00:00 +0000");
    pmx_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ascii_text),
        cmocka_unit_test(test_utf8_subject_and_names),
        cmocka_unit_test(test_both_parts),
        cmocka_unit_test(test_boundary_avoids_content),
        cmocka_unit_test(test_html_only),
        cmocka_unit_test(test_encodings_and_long_lines),
        cmocka_unit_test(test_no_bcc_many_recipients),
        cmocka_unit_test(test_extra_fields),
        cmocka_unit_test(test_build_refusals),
        cmocka_unit_test(test_raw_line_endings_and_added),
        cmocka_unit_test(test_raw_keeps_date_msgid_drops),
        cmocka_unit_test(test_raw_refusals),
        cmocka_unit_test(test_header_from),
        cmocka_unit_test(test_date),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
