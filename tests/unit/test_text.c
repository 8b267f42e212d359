/*
 * lib/text.c: line endings, quoted-printable, base64 lines, header folding and
 * RFC 2047 encoded-words, SMTP dot-stuffing. Encodings are checked by decoding
 * them again with small independent decoders written here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/buf.h"
#include "lib/encode.h"
#include "lib/swar.h"
#include "lib/text.h"

/* ---- helpers ---- */

static void assert_buf_eq(const pmx_buf_t *b, const char *want)
{
    if (b->len != strlen(want) || memcmp(b->data, want, b->len) != 0)
        fail_msg("got  [%s]\nwant [%s]", pmx_buf_cstr(b), want);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Every line (CRLF-separated) of s is at most max octets. */
static void assert_lines_max(const char *s, size_t n, size_t max)
{
    assert_true(pmx_text_is_crlf(s, n));
    size_t longest = pmx_text_longest_line(s, n);
    if (longest > max) fail_msg("a line of %zu octets (max %zu) in [%.*s]", longest, max, (int)n, s);
}

/* Quoted-printable decoder (RFC 2045 §6.7), strict about what we emit. */
static void qp_decode(pmx_buf_t *out, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '=') {
            if (i + 2 < n && s[i + 1] == '\r' && s[i + 2] == '\n') { i += 2; continue; }
            assert_true(i + 2 < n);
            int h = hexval(s[i + 1]), l = hexval(s[i + 2]);
            assert_true(h >= 0 && l >= 0);
            pmx_buf_append_char(out, (char)(h * 16 + l));
            i += 2;
        } else {
            pmx_buf_append_char(out, s[i]);
        }
    }
}

/*
 * Decodes a header value made only of RFC 2047 encoded-words (after "Name:"),
 * checking each word's length and charset on the way.
 */
static void ew_decode(pmx_buf_t *out, const char *field, size_t n)
{
    const char *colon = memchr(field, ':', n);
    assert_non_null(colon);
    pmx_buf_t unfolded = PMX_BUF_INIT;
    for (const char *p = colon + 1; p < field + n; p++)
        if (*p != '\r' && *p != '\n') pmx_buf_append_char(&unfolded, *p);
    char *save = NULL;
    for (char *w = strtok_r(unfolded.data, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
        size_t wl = strlen(w);
        if (wl > 75) fail_msg("encoded-word of %zu octets: %s", wl, w);
        assert_true(strncmp(w, "=?utf-8?", 8) == 0);
        assert_true(wl >= 12 && w[wl - 2] == '?' && w[wl - 1] == '=');
        char kind = w[8];
        assert_true(w[9] == '?');
        const char *t = w + 10;
        size_t tl = wl - 12;
        if (kind == 'B') {
            assert_int_equal(pmx_base64_decode(out, t, tl), 0);
        } else {
            assert_int_equal(kind, 'Q');
            for (size_t i = 0; i < tl; i++) {
                if (t[i] == '_') pmx_buf_append_char(out, ' ');
                else if (t[i] == '=') {
                    pmx_buf_append_char(out, (char)(hexval(t[i + 1]) * 16 + hexval(t[i + 2])));
                    i += 2;
                } else {
                    assert_true(strchr("!*+-/", t[i]) || (t[i] >= '0' && t[i] <= '9') ||
                                (t[i] >= 'a' && t[i] <= 'z') || (t[i] >= 'A' && t[i] <= 'Z'));
                    pmx_buf_append_char(out, t[i]);
                }
            }
        }
    }
    pmx_buf_free(&unfolded);
}

/* Unfolds a header field: value after "Name: " with CRLF removed. */
static void unfold_value(pmx_buf_t *out, const pmx_buf_t *field)
{
    const char *colon = memchr(field->data, ':', field->len);
    assert_non_null(colon);
    const char *p = colon + 1, *end = field->data + field->len - 2;   /* final CRLF */
    assert_true(end[0] == '\r' && end[1] == '\n');
    if (p < end && *p == ' ') p++;
    for (; p < end; p++)
        if (*p != '\r' && *p != '\n') pmx_buf_append_char(out, *p);
}

/* ---- line endings ---- */

static void test_crlf(void **state)
{
    (void)state;
    pmx_buf_t b = PMX_BUF_INIT;
    const char in[] = "a\nb\rc\r\nd\r\r\ne\n\n";
    pmx_text_crlf(&b, in, sizeof in - 1);
    assert_buf_eq(&b, "a\r\nb\r\nc\r\nd\r\n\r\ne\r\n\r\n");
    assert_true(pmx_text_is_crlf(b.data, b.len));
    assert_false(pmx_text_is_crlf(in, sizeof in - 1));
    assert_false(pmx_text_is_crlf("a\r", 2));
    assert_false(pmx_text_is_crlf("a\n", 2));
    assert_true(pmx_text_is_crlf("", 0));
    pmx_buf_reset(&b);
    pmx_text_crlf(&b, "\r", 1);
    assert_buf_eq(&b, "\r\n");
    pmx_buf_reset(&b);
    pmx_text_crlf(&b, "no break", 8);
    assert_buf_eq(&b, "no break");
    pmx_buf_free(&b);

    assert_int_equal(pmx_text_longest_line("ab\r\nabcd\r\nabc", 13), 4);
    assert_int_equal(pmx_text_longest_line("ab\r\nabcdef", 10), 6);
    assert_int_equal(pmx_text_longest_line("", 0), 0);
}

/* ---- body encodings ---- */

static void test_cte_choose(void **state)
{
    (void)state;
    const char *ascii = "Hello,\r\nthis is plain text.\r\n";
    assert_int_equal(pmx_text_cte_choose(ascii, strlen(ascii)), PMX_TEXT_7BIT);

    char longline[1200];
    memset(longline, 'x', 999);
    memcpy(longline + 999, "\r\n", 3);
    assert_int_equal(pmx_text_cte_choose(longline, 1001), PMX_TEXT_QP);
    memcpy(longline + 998, "\r\n", 3);
    assert_int_equal(pmx_text_cte_choose(longline, 1000), PMX_TEXT_7BIT);

    const char *latin = "Grüße aus dem schönen Köln, wo es heute regnet und windig ist.\r\n";
    assert_int_equal(pmx_text_cte_choose(latin, strlen(latin)), PMX_TEXT_QP);
    const char *cjk = "日本語のテキストはほとんどASCIIではありません。\r\n";
    assert_int_equal(pmx_text_cte_choose(cjk, strlen(cjk)), PMX_TEXT_BASE64);
    assert_int_equal(pmx_text_cte_choose("a\0b and some more text\r\n", 25), PMX_TEXT_QP);
    assert_int_equal(pmx_text_cte_choose("\0\0\0\r\n", 5), PMX_TEXT_BASE64);
    assert_int_equal(pmx_text_cte_choose("bare\nlf", 7), PMX_TEXT_QP);

    assert_string_equal(pmx_text_cte_name(PMX_TEXT_7BIT), "7bit");
    assert_string_equal(pmx_text_cte_name(PMX_TEXT_QP), "quoted-printable");
    assert_string_equal(pmx_text_cte_name(PMX_TEXT_BASE64), "base64");
}

static void qp_roundtrip(const char *s, size_t n)
{
    pmx_buf_t enc = PMX_BUF_INIT, dec = PMX_BUF_INIT;
    pmx_text_qp_encode(&enc, s, n);
    assert_lines_max(enc.data ? enc.data : "", enc.len, 76);
    for (size_t i = 0; i < enc.len; i++) {
        unsigned char c = (unsigned char)enc.data[i];
        assert_true(c == '\r' || c == '\n' || c == ' ' || c == '\t' || (c >= 33 && c <= 126));
        /* No white space right before a line break. */
        if (c == '\r') assert_true(i == 0 || (enc.data[i - 1] != ' ' && enc.data[i - 1] != '\t'));
    }
    qp_decode(&dec, enc.data ? enc.data : "", enc.len);
    if (dec.len != n || memcmp(dec.data ? dec.data : "", s, n) != 0)
        fail_msg("QP round trip changed [%.*s]", (int)n, s);
    pmx_buf_free(&enc);
    pmx_buf_free(&dec);
}

static void test_qp(void **state)
{
    (void)state;
    pmx_buf_t b = PMX_BUF_INIT;
    pmx_text_qp_encode(&b, "a=b é\r\ntrailing \r\ntab\t\r\n", 25);
    assert_buf_eq(&b, "a=3Db =C3=A9\r\ntrailing=20\r\ntab=09\r\n");
    pmx_buf_reset(&b);
    pmx_text_qp_encode(&b, "end ", 4);
    assert_buf_eq(&b, "end=20");
    pmx_buf_free(&b);

    char line[400];
    memset(line, 'x', 300);
    memcpy(line + 300, "\r\n", 2);
    qp_roundtrip(line, 302);
    for (int i = 0; i < 300; i++) line[i] = (i % 7 == 0) ? '=' : (i % 5 == 0 ? ' ' : 'y');
    qp_roundtrip(line, 302);
    const char *mixed = "Zürich – 100 % naïve café.\r\n.leading dot\r\n\r\nstray\rcr and\nlf \r\n";
    qp_roundtrip(mixed, strlen(mixed));
    /* Every octet value survives. */
    char all[256 * 2];
    for (int i = 0; i < 256; i++) { all[2 * i] = (char)i; all[2 * i + 1] = 'a'; }
    qp_roundtrip(all, sizeof all);
}

static void test_base64_lines(void **state)
{
    (void)state;
    uint8_t data[1000];
    for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)(i * 37 + 11);
    size_t sizes[] = { 0, 1, 56, 57, 58, 114, 1000 };
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        pmx_buf_t enc = PMX_BUF_INIT, dec = PMX_BUF_INIT;
        pmx_text_base64_lines(&enc, data, sizes[k]);
        assert_lines_max(enc.data ? enc.data : "", enc.len, 76);
        if (sizes[k]) {
            assert_true(enc.len >= 2 && enc.data[enc.len - 1] == '\n');
            assert_int_equal(pmx_text_longest_line(enc.data, enc.len), sizes[k] >= 57 ? 76 : (sizes[k] + 2) / 3 * 4);
        } else {
            assert_int_equal(enc.len, 0);
        }
        assert_int_equal(pmx_base64_decode(&dec, enc.data ? enc.data : "", enc.len), 0);
        assert_int_equal(dec.len, sizes[k]);
        if (sizes[k]) assert_memory_equal(dec.data, data, sizes[k]);
        pmx_buf_free(&enc);
        pmx_buf_free(&dec);
    }
}

/* ---- header fields ---- */

static void unstructured_roundtrip(const char *name, const char *value, bool expect_encoded)
{
    pmx_buf_t f = PMX_BUF_INIT, v = PMX_BUF_INIT;
    pmx_text_hdr_unstructured(&f, name, value, strlen(value));
    assert_true(strncmp(f.data, name, strlen(name)) == 0 && f.data[strlen(name)] == ':');
    assert_lines_max(f.data, f.len, expect_encoded ? 76 : 998);
    /* Exactly one field: every line break but the last is followed by white space. */
    for (size_t i = 0; i + 2 < f.len; i++)
        if (f.data[i] == '\n') assert_true(f.data[i + 1] == ' ' || f.data[i + 1] == '\t');
    bool encoded = strstr(f.data, "=?utf-8?") != NULL;
    assert_int_equal(encoded, expect_encoded);
    if (encoded) ew_decode(&v, f.data, f.len - 2);
    else unfold_value(&v, &f);
    /* The value comes back, without its leading and trailing white space. */
    const char *s = value;
    size_t n = strlen(s);
    while (n && (*s == ' ' || *s == '\t')) { s++; n--; }
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
    if (v.len != n || memcmp(v.data ? v.data : "", s, n) != 0)
        fail_msg("round trip of [%s] gave [%s] via [%s]", value, pmx_buf_cstr(&v), f.data);
    pmx_buf_free(&f);
    pmx_buf_free(&v);
}

static void test_unstructured(void **state)
{
    (void)state;
    pmx_buf_t f = PMX_BUF_INIT;
    pmx_text_hdr_unstructured(&f, "Subject", "Hello world", 11);
    assert_buf_eq(&f, "Subject: Hello world\r\n");
    pmx_buf_reset(&f);
    pmx_text_hdr_unstructured(&f, "Subject", "", 0);
    assert_buf_eq(&f, "Subject:\r\n");
    pmx_buf_reset(&f);
    /* Folding keeps lines within 78 and the white space as it was. */
    pmx_text_hdr_unstructured(&f, "Subject",
        "The quick brown fox jumps over the lazy dog, and then  twice   more over the lazy dog again",
        91);
    assert_lines_max(f.data, f.len, 78);
    assert_non_null(strstr(f.data, "\r\n "));
    pmx_buf_free(&f);

    unstructured_roundtrip("Subject", "Hello world", false);
    unstructured_roundtrip("Subject", "  padded value\t ", false);
    unstructured_roundtrip("Subject",
        "a rather long subject line that keeps going and going, well past the seventy-eight "
        "octet mark, so that it has to be folded more than once to stay readable", false);
    unstructured_roundtrip("Subject", "Grüße aus München", true);
    unstructured_roundtrip("Subject", "日本語の件名です。とても長い件名を書いて、何度も折り返されることを確かめます。"
                                      "日本語の件名です。とても長い件名を書いて、何度も折り返されることを確かめます。", true);
    unstructured_roundtrip("Subject", "Emoji 🎉🎉🎉 party 🎉 with some ASCII around it to make it long enough to wrap", true);
    unstructured_roundtrip("X-Note", "looks like =?utf-8?Q?an_encoded_word?= but is not", true);
    unstructured_roundtrip("X-Note", "control\x01char", true);
    unstructured_roundtrip("X-Note", "bell\x07 and CR\r LF\n inside", true);
    unstructured_roundtrip("A-Very-Long-Header-Name-That-Takes-Up-Most-Of-The-First-Line-Xxxxxx",
                           "über", true);

    /* A word too long for one line (998) becomes encoded-words that fold. */
    char word[2100];
    memset(word, 'w', 2000);
    word[2000] = '\0';
    unstructured_roundtrip("Subject", word, true);
    memset(word, 'w', 990);
    word[990] = '\0';
    unstructured_roundtrip("X", word, false);
    /* A white space run too long for one line, likewise. */
    memset(word, ' ', 1500);
    memcpy(word, "a", 1);
    memcpy(word + 1500, "b", 2);
    unstructured_roundtrip("Subject", word, true);
}

static void phrase(const char *display, const char *want)
{
    pmx_buf_t b = PMX_BUF_INIT;
    pmx_text_hdr_t h;
    pmx_text_hdr_begin(&h, &b, "To");
    pmx_text_hdr_phrase(&h, display, strlen(display));
    pmx_text_hdr_word(&h, "<a@example.com>", 15);
    pmx_text_hdr_end(&h);
    assert_buf_eq(&b, want);
    pmx_buf_free(&b);
}

static void test_phrase(void **state)
{
    (void)state;
    phrase("John Smith", "To: John Smith <a@example.com>\r\n");
    phrase("Smith, John", "To: \"Smith, John\" <a@example.com>\r\n");
    phrase("J. \"Jo\" Sm\\ith", "To: \"J. \\\"Jo\\\" Sm\\\\ith\" <a@example.com>\r\n");
    /* Q or B, whichever is shorter (lib/text.h). */
    phrase("Jörg", "To: =?utf-8?B?SsO2cmc=?= <a@example.com>\r\n");
    phrase("The Zürich office team", "To: =?utf-8?Q?The_Z=C3=BCrich_office_team?= <a@example.com>\r\n");
    phrase("  ", "To: <a@example.com>\r\n");

    /* An address list folds between mailboxes, within 78 octets. */
    pmx_buf_t b = PMX_BUF_INIT;
    pmx_text_hdr_t h;
    pmx_text_hdr_begin(&h, &b, "To");
    for (int i = 0; i < 20; i++) {
        char w[64];
        int n = snprintf(w, sizeof w, "<user%02d@example.com>,", i);
        pmx_text_hdr_phrase(&h, "Some Name", 9);
        pmx_text_hdr_word(&h, w, (size_t)n);
    }
    pmx_text_hdr_end(&h);
    assert_lines_max(b.data, b.len, 78);
    pmx_buf_free(&b);
}

/* ---- SMTP DATA ---- */

/* The line "." occurs once, last; no bare CR/LF; unstuffing gives want. */
static void stuffed_ok(const pmx_buf_t *d, const char *want, size_t want_len)
{
    assert_true(pmx_text_is_crlf(d->data, d->len));
    assert_true(d->len >= 3 && memcmp(d->data + d->len - 3, ".\r\n", 3) == 0);
    assert_true(d->len == 3 || memcmp(d->data + d->len - 5, "\r\n.\r\n", 5) == 0);
    const char *p = d->data;
    for (const char *q = p; (q = memmem(q, (size_t)(d->data + d->len - q), "\r\n.\r\n", 5)) != NULL; q++)
        assert_ptr_equal(q, d->data + d->len - 5);
    if (d->len > 3) assert_false(d->data[0] == '.' && d->data[1] == '\r');
    pmx_buf_t u = PMX_BUF_INIT;
    assert_int_equal(pmx_text_dot_unstuff(&u, d->data, d->len), 0);
    if (u.len != want_len || memcmp(u.data ? u.data : "", want, want_len) != 0)
        fail_msg("unstuffed [%s], want [%s]", pmx_buf_cstr(&u), want);
    pmx_buf_free(&u);
}

static void stuff(const char *in, size_t n, const char *want, const char *unstuffed)
{
    pmx_buf_t d = PMX_BUF_INIT;
    pmx_text_dot_stuff(&d, in, n);
    assert_buf_eq(&d, want);
    stuffed_ok(&d, unstuffed, strlen(unstuffed));
    pmx_buf_free(&d);
}

static void test_dot_stuff(void **state)
{
    (void)state;
    stuff("a\r\n.b\r\n", 7, "a\r\n..b\r\n.\r\n", "a\r\n.b\r\n");
    stuff("a\r\n.\r\nb\r\n", 9, "a\r\n..\r\nb\r\n.\r\n", "a\r\n.\r\nb\r\n");
    stuff(".\r\n", 3, "..\r\n.\r\n", ".\r\n");
    stuff("..\r\n", 4, "...\r\n.\r\n", "..\r\n");
    stuff("abc", 3, "abc\r\n.\r\n", "abc\r\n");
    stuff("abc\r\n.", 6, "abc\r\n..\r\n.\r\n", "abc\r\n.\r\n");
    stuff("", 0, ".\r\n", "");
    stuff("\r\n", 2, "\r\n.\r\n", "\r\n");
    /* Bare LF / CR: written as CRLF, so "\n.\n" cannot end DATA on any server. */
    stuff("a\n.\nb", 5, "a\r\n..\r\nb\r\n.\r\n", "a\r\n.\r\nb\r\n");
    stuff("a\r.\rb\r", 6, "a\r\n..\r\nb\r\n.\r\n", "a\r\n.\r\nb\r\n");
    stuff("x\r\n.\r\n.\r\nQUIT\r\n", 15, "x\r\n..\r\n..\r\nQUIT\r\n.\r\n", "x\r\n.\r\n.\r\nQUIT\r\n");
    stuff("mid.dot\r\n", 9, "mid.dot\r\n.\r\n", "mid.dot\r\n");

    /* Appends to what is there. */
    pmx_buf_t d = PMX_BUF_INIT;
    pmx_buf_append_str(&d, "PRE");
    pmx_text_dot_stuff(&d, "x", 1);
    assert_buf_eq(&d, "PREx\r\n.\r\n");
    pmx_buf_free(&d);
}

static void test_dot_unstuff_refuses(void **state)
{
    (void)state;
    const char *bad[] = {
        "abc\r\n",              /* no terminator */
        "abc\r\n.\r\nmore\r\n", /* data after the terminator */
        "a\n.\r\n",             /* bare LF */
        "a\r\n.",               /* terminator without CRLF */
        "a\r.\r\n",             /* bare CR */
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        pmx_buf_t u = PMX_BUF_INIT;
        pmx_buf_append_str(&u, "keep");
        if (pmx_text_dot_unstuff(&u, bad[i], strlen(bad[i])) != -1) fail_msg("accepted [%s]", bad[i]);
        assert_buf_eq(&u, "keep");
        pmx_buf_free(&u);
    }
}

/* lib/swar.h: every byte value at every position, against the plain comparison. */
static void test_swar_exact(void **state)
{
    (void)state;
    static const unsigned char fill[] = { 0, ' ', 'a', 0x80, 0xff, '=', 0x7f, 0x01 };
    static const unsigned char cs[] = { 0, 1, ' ', '\t', '=', 32, 33, 126, 127, 128 };
    for (unsigned v = 0; v < 256; v++)
        for (int pos = 0; pos < 8; pos++)
            for (size_t f = 0; f < sizeof fill; f++) {
                unsigned char b[8];
                memset(b, fill[f], 8);
                b[pos] = (unsigned char)v;
                uint64_t x = pmx_swar_load(b);
                for (size_t k = 0; k < sizeof cs; k++) {
                    unsigned char c = cs[k];
                    uint64_t eq = 0, lt = 0, gt = 0, hi = 0, want_eq = 0, want_lt = 0, want_gt = 0,
                             want_hi = 0;
                    eq = pmx_swar_eq(x, c);
                    if (c <= 128) lt = pmx_swar_lt(x, c);
                    if (c < 128) gt = pmx_swar_gt(x, c);
                    hi = pmx_swar_high(x);
                    for (int i = 0; i < 8; i++) {
                        unsigned char m[8] = { 0 };
                        m[i] = 0x80;
                        uint64_t bit = pmx_swar_load(m);
                        if (b[i] == c) want_eq |= bit;
                        if (c <= 128 && b[i] < c) want_lt |= bit;
                        if (c < 128 && b[i] > c) want_gt |= bit;
                        if (b[i] >= 0x80) want_hi |= bit;
                    }
                    if (eq != want_eq || lt != want_lt || gt != want_gt || hi != want_hi)
                        fail_msg("swar: byte %u at %d (fill %u), c=%u", v, pos, fill[f], c);
                }
            }
    /* pmx_swar_first: the first marked byte in memory order, whatever is marked after it
     * (every one of the 255 non-empty sets of marked bytes). */
    for (unsigned set = 1; set < 256; set++) {
        unsigned char b[8];
        for (int i = 0; i < 8; i++) b[i] = (set >> i) & 1 ? '=' : 'a';
        unsigned want = (unsigned)__builtin_ctz(set);
        unsigned got = pmx_swar_first(pmx_swar_eq(pmx_swar_load(b), '='));
        if (got != want) fail_msg("pmx_swar_first: set %02x gave %u, want %u", set, got, want);
    }
}

/* ---- the earlier, octet-at-a-time versions, as references for the fast ones ---- */

static bool ref_wsp(unsigned char c) { return c == ' ' || c == '\t'; }
static bool ref_qp_literal(unsigned char c) { return c >= 33 && c <= 126 && c != '='; }

static void ref_crlf(pmx_buf_t *out, const char *s, size_t n)
{
    size_t start = 0, i = 0;
    while (i < n) {
        char c = s[i];
        if (c != '\r' && c != '\n') { i++; continue; }
        pmx_buf_append(out, s + start, i - start);
        pmx_buf_append(out, "\r\n", 2);
        i += (c == '\r' && i + 1 < n && s[i + 1] == '\n') ? 2 : 1;
        start = i;
    }
    pmx_buf_append(out, s + start, n - start);
}

static bool ref_is_crlf(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\r') {
            if (i + 1 >= n || s[i + 1] != '\n') return false;
            i++;
        } else if (s[i] == '\n') {
            return false;
        }
    }
    return true;
}

static pmx_text_cte_t ref_cte_choose(const char *s, size_t n)
{
    size_t escapes = 0, line = 0;
    bool seven = true;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\r' && i + 1 < n && s[i + 1] == '\n') { i++; line = 0; continue; }
        if (++line > PMX_TEXT_LINE_MAX) seven = false;
        if (c >= 0x80 || c == 0 || c == '\r' || c == '\n') seven = false;
        if (!ref_qp_literal(c) && !ref_wsp(c)) escapes++;
    }
    if (seven) return PMX_TEXT_7BIT;
    return escapes * 6 <= n ? PMX_TEXT_QP : PMX_TEXT_BASE64;
}

static void ref_qp_encode(pmx_buf_t *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t col = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\r' && i + 1 < n && s[i + 1] == '\n') {
            pmx_buf_append(out, "\r\n", 2); col = 0; i++; continue;
        }
        bool at_eol = i + 1 == n || (s[i + 1] == '\r' && i + 2 < n && s[i + 2] == '\n');
        bool literal = ref_qp_literal(c) || (ref_wsp(c) && !at_eol);
        size_t len = literal ? 1 : 3;
        if (col + len > 75) { pmx_buf_append(out, "=\r\n", 3); col = 0; }
        if (literal) pmx_buf_append_char(out, (char)c);
        else { char e[3] = { '=', hex[c >> 4], hex[c & 15] }; pmx_buf_append(out, e, 3); }
        col += len;
    }
}

static void ref_dot_stuff(pmx_buf_t *out, const char *msg, size_t n)
{
    bool bol = true;
    size_t i = 0;
    while (i < n) {
        if (bol && msg[i] == '.') pmx_buf_append_char(out, '.');
        size_t j = i;
        while (j < n && msg[j] != '\r' && msg[j] != '\n') j++;
        pmx_buf_append(out, msg + i, j - i);
        if (j == n) { bol = false; break; }
        pmx_buf_append(out, "\r\n", 2);
        i = (msg[j] == '\r' && j + 1 < n && msg[j + 1] == '\n') ? j + 2 : j + 1;
        bol = true;
    }
    if (!bol) pmx_buf_append(out, "\r\n", 2);
    pmx_buf_append(out, ".\r\n", 3);
}

static void expect_same(const char *what, const pmx_buf_t *a, const pmx_buf_t *b, const char *in, size_t n)
{
    if (a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0)) return;
    pmx_buf_t hex = PMX_BUF_INIT;
    for (size_t i = 0; i < n && i < 64; i++) pmx_buf_appendf(&hex, "%02x", (unsigned char)in[i]);
    fail_msg("%s differs from the reference on %zu octets (%s...)", what, n, hex.data ? hex.data : "");
}

/* Random inputs rich in what the fast paths treat specially: CR, LF, '.', WSP,
 * '=', 8-bit octets, NUL, long lines. Same output as the references, always. */
static void test_fast_paths_match_reference(void **state)
{
    (void)state;
    static const char alphabet[] = "\r\n\r\n.. \t=aZ\x80\xc3\xa9\0xyz";
    uint32_t seed = 12345;
    char in[3000];
    for (int round = 0; round < 4000; round++) {
        size_t n = (size_t)(round % 50 == 0 ? 2500 : round % 300);
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            uint32_t r = seed >> 16;
            /* long runs of letters sometimes, so lines pass 76 and 998 octets */
            in[i] = (round % 7 == 0 && r % 40) ? 'a' : alphabet[r % (sizeof alphabet - 1)];
        }
        pmx_buf_t a = PMX_BUF_INIT, b = PMX_BUF_INIT;
        pmx_text_crlf(&a, in, n);
        ref_crlf(&b, in, n);
        expect_same("pmx_text_crlf", &a, &b, in, n);
        if (pmx_text_is_crlf(in, n) != ref_is_crlf(in, n)) fail_msg("pmx_text_is_crlf differs");
        if (pmx_text_is_crlf(a.data ? a.data : "", a.len) != ref_is_crlf(a.data ? a.data : "", a.len))
            fail_msg("pmx_text_is_crlf differs on CRLF text");
        if (pmx_text_cte_choose(in, n) != ref_cte_choose(in, n)) fail_msg("pmx_text_cte_choose differs");
        pmx_buf_reset(&a); pmx_buf_reset(&b);
        pmx_text_qp_encode(&a, in, n);
        ref_qp_encode(&b, in, n);
        expect_same("pmx_text_qp_encode", &a, &b, in, n);
        pmx_buf_reset(&a); pmx_buf_reset(&b);
        pmx_text_dot_stuff(&a, in, n);
        ref_dot_stuff(&b, in, n);
        expect_same("pmx_text_dot_stuff", &a, &b, in, n);
        /* the pieces: every one either a run of the input or a short constant */
        pmx_text_dot_t d;
        pmx_text_dot_init(&d, in, n);
        const char *p;
        size_t len, total = 0, pieces = 0;
        while (pmx_text_dot_next(&d, &p, &len)) {
            assert_true(len > 0);
            assert_true((p >= in && p + len <= in + n) || len <= 5);
            total += len;
            pieces++;
        }
        assert_int_equal(total, b.len);
        assert_false(pmx_text_dot_next(&d, &p, &len));
        pmx_buf_free(&a);
        pmx_buf_free(&b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crlf),
        cmocka_unit_test(test_cte_choose),
        cmocka_unit_test(test_qp),
        cmocka_unit_test(test_base64_lines),
        cmocka_unit_test(test_unstructured),
        cmocka_unit_test(test_phrase),
        cmocka_unit_test(test_dot_stuff),
        cmocka_unit_test(test_dot_unstuff_refuses),
        cmocka_unit_test(test_fast_paths_match_reference),
        cmocka_unit_test(test_swar_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
