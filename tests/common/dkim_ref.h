/*
 * Test helpers shared by tests/unit and tests/fuzz (header only: each test
 * binary is one source file linked against libpmx.a, see the Makefile).
 *
 * pmx_test_ref_relaxed_body: DKIM's relaxed body canonicalisation written
 * plainly (RFC 6376 3.4.4), the reference postmux's own engine
 * (dkim/dkimsig.c, docs/delivery.md "DKIM") is checked against by
 * tests/unit/test_signer.c and tests/fuzz/fuzz_dkim_sign.c.
 */
#ifndef PMX_TESTS_DKIM_REF_H
#define PMX_TESTS_DKIM_REF_H
#include <stdbool.h>
#include <stddef.h>

#include "lib/buf.h"

/* Appends the relaxed form of body b (n octets, CRLF lines) to out: runs of
 * WSP as one SP, none at a line's end, no empty lines at the end. */
static inline void pmx_test_ref_relaxed_body(pmx_buf_t *out, const char *b, size_t n)
{
    size_t i = 0, blanks = 0;
    pmx_buf_t line = PMX_BUF_INIT;
    while (i < n) {
        size_t e = i;
        while (e < n && !(b[e] == '\r' && e + 1 < n && b[e + 1] == '\n')) e++;
        pmx_buf_reset(&line);
        bool ws = false;
        for (size_t k = i; k < e; k++) {
            if (b[k] == ' ' || b[k] == '\t') { ws = true; continue; }
            if (ws) pmx_buf_append_char(&line, ' ');
            ws = false;
            pmx_buf_append_char(&line, b[k]);
        }
        if (line.len == 0) {
            blanks++;
        } else {
            for (; blanks; blanks--) pmx_buf_append(out, "\r\n", 2);
            pmx_buf_append(out, line.data, line.len);
            pmx_buf_append(out, "\r\n", 2);
        }
        i = e < n ? e + 2 : n;
    }
    pmx_buf_free(&line);
}

#endif
