/*
 * libFuzzer target for lib/addr.c: the input is parsed as one mailbox, as an
 * address list (RFC 5322) and as an SMTP path's Mailbox (RFC 5321).
 * Whatever is accepted must obey the parser's promises: canonical addresses
 * within the length limits, no control bytes, a domain that is lowercase, a
 * re-parse of the canonical form that gives it back — and one grammar: every
 * canonical address is a Mailbox the relay client sends (pmx_addr_envelope_ok)
 * that parses back to itself as a path, and a path's address is a valid
 * mailbox for a job field too.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/addr.h"

static void check_addr(const pmx_addr_t *a)
{
    size_t n = strlen(a->addr);
    if (n == 0 || n > 254) abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)a->addr[i] < 0x20 || a->addr[i] == 0x7f) abort();
    const char *d = pmx_addr_domain(a);
    if (strlen(d) == 0 || strlen(d) > 253) abort();
    for (const char *p = d; *p; p++)
        if (*p >= 'A' && *p <= 'Z') abort();
    if (a->display)
        for (const char *p = a->display; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f) abort();

    /* The canonical form parses to itself. */
    pmx_addr_t again;
    char err[256];
    if (pmx_addr_parse(a->addr, n, &again, err, sizeof err) != 0) abort();
    if (strcmp(again.addr, a->addr) != 0 || again.display) abort();
    pmx_addr_free(&again);

    /* One grammar: sendable as is, and the same canonical form as a path. */
    if (!pmx_addr_envelope_ok(a->addr)) abort();
    char *path = NULL;
    if (pmx_addr_parse_envelope(a->addr, n, &path, err, sizeof err) != 0) abort();
    if (strcmp(path, a->addr) != 0) abort();
    free(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    char err[256];

    pmx_addr_t a;
    if (pmx_addr_parse(s, size, &a, err, sizeof err) == 0) {
        check_addr(&a);
        pmx_addr_free(&a);
    } else if (memchr(err, '\n', strlen(err)) || memchr(err, '\r', strlen(err))) {
        abort();                          /* reasons are one printable line */
    }

    pmx_addr_list_t l;
    if (pmx_addr_list_parse(s, size, &l, err, sizeof err) == 0) {
        if (l.n == 0) abort();
        for (size_t i = 0; i < l.n; i++) check_addr(&l.v[i]);
        pmx_addr_list_free(&l);
    }

    char *path = NULL;
    if (pmx_addr_parse_envelope(s, size, &path, err, sizeof err) == 0) {
        /* A path holds nothing a job field would not take, canonically the same. */
        pmx_addr_t b = { NULL, path };
        check_addr(&b);
        if (!pmx_addr_envelope_ok(path)) abort();
        free(path);
    } else if (memchr(err, '\n', strlen(err)) || memchr(err, '\r', strlen(err))) {
        abort();
    }
    return 0;
}
