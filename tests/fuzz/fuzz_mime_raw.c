/*
 * libFuzzer target for the raw-message side of lib/mime.c and lib/text.c:
 * the input is a raw message as a job (or SMTP submission) would give it.
 *
 *   pmx_mime_header_from   must not crash; an accepted From has an address.
 *   pmx_mime_prepare_raw   when it accepts: CRLF only, no line over 998, no
 *                          NUL, ends with CRLF, added fields first, exactly
 *                          one From (the same one), and preparing the output
 *                          again changes nothing but nothing is added twice.
 *   pmx_text_dot_stuff     on the prepared message: the line "." occurs only
 *                          as the terminator, and un-stuffing gives it back.
 *   pmx_text_crlf          on the raw input: CRLF only, and idempotent.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/mime.h"
#include "lib/text.h"

static void check_dot_stuff(const pmx_buf_t *m)
{
    pmx_buf_t d = PMX_BUF_INIT, u = PMX_BUF_INIT;
    pmx_text_dot_stuff(&d, m->data, m->len);
    if (!pmx_text_is_crlf(d.data, d.len)) abort();
    /* The only "\r\n.\r\n" (or a leading ".\r\n") is the terminator. */
    if (d.len < 3 || memcmp(d.data + d.len - 3, ".\r\n", 3) != 0) abort();
    if (d.len > 3 && memcmp(d.data, ".\r\n", 3) == 0) abort();
    const char *hit = memmem(d.data, d.len, "\r\n.\r\n", 5);
    if (d.len > 3 && hit != d.data + d.len - 5) abort();
    if (pmx_text_dot_unstuff(&u, d.data, d.len) != 0) abort();
    if (u.len != m->len || (m->len && memcmp(u.data, m->data, m->len) != 0)) abort();
    pmx_buf_free(&d);
    pmx_buf_free(&u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *raw = (const char *)data;
    char err[256];

    pmx_addr_t from;
    if (pmx_mime_header_from(raw, size, &from, err, sizeof err) == 0) {
        if (!from.addr || !strchr(from.addr, '@')) abort();
        pmx_addr_free(&from);
    }

    pmx_buf_t c = PMX_BUF_INIT, c2 = PMX_BUF_INIT;
    pmx_text_crlf(&c, raw, size);
    if (!pmx_text_is_crlf(c.data, c.len)) abort();
    pmx_text_crlf(&c2, c.data, c.len);
    if (c2.len != c.len || (c.len && memcmp(c.data, c2.data, c.len) != 0)) abort();
    pmx_buf_free(&c);
    pmx_buf_free(&c2);

    static const pmx_mime_field_t added[] = { { "X-Original-To", "tester@example.org" } };
    static const char *const drop[] = { "X-Workspace-Id" };
    pmx_mime_opts_t o;
    memset(&o, 0, sizeof o);
    o.msgid = "msg_fuzz";
    o.date = 1700000000;
    o.fields = added;
    o.nfields = 1;
    o.drop = drop;
    o.ndrop = 1;
    pmx_buf_t m = PMX_BUF_INIT;
    if (pmx_mime_prepare_raw(raw, size, &o, &m, err, sizeof err) == 0) {
        if (!pmx_text_is_crlf(m.data, m.len)) abort();
        if (pmx_text_longest_line(m.data, m.len) > PMX_TEXT_LINE_MAX) abort();
        if (memchr(m.data, '\0', m.len)) abort();
        if (m.len < 2 || memcmp(m.data + m.len - 2, "\r\n", 2) != 0) abort();
        if (strncmp(m.data, "X-Original-To: tester@example.org\r\n", 35) != 0) abort();
        pmx_addr_t a, b;
        if (pmx_mime_header_from(m.data, m.len, &a, err, sizeof err) != 0) abort();
        if (pmx_mime_header_from(raw, size, &b, err, sizeof err) != 0) abort();
        if (strcmp(a.addr, b.addr) != 0) abort();
        pmx_addr_free(&a);
        pmx_addr_free(&b);
        /* Prepared again (no added fields): Date and Message-ID are there now. */
        pmx_mime_opts_t o2 = o;
        o2.nfields = 0;
        pmx_buf_t m2 = PMX_BUF_INIT;
        if (pmx_mime_prepare_raw(m.data, m.len, &o2, &m2, err, sizeof err) != 0) abort();
        if (m2.len != m.len || memcmp(m2.data, m.data, m.len) != 0) abort();
        pmx_buf_free(&m2);
        check_dot_stuff(&m);
    }
    pmx_buf_free(&m);
    return 0;
}
