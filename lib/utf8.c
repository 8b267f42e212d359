/* UTF-8 validation; see utf8.h. Strict RFC 3629: no overlongs, no surrogates. */
#include "lib/swar.h"
#include "lib/utf8.h"

size_t pmx_utf8_seq(const char *s, size_t n, unsigned *cp)
{
    if (n == 0) return 0;
    const unsigned char *p = (const unsigned char *)s;
    unsigned c = p[0], v;
    size_t len;
    unsigned min;
    if (c < 0x80) { if (cp) *cp = c; return 1; }
    if (c >= 0xc2 && c <= 0xdf)      { len = 2; v = c & 0x1f; min = 0x80; }
    else if (c >= 0xe0 && c <= 0xef) { len = 3; v = c & 0x0f; min = 0x800; }
    else if (c >= 0xf0 && c <= 0xf4) { len = 4; v = c & 0x07; min = 0x10000; }
    else return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) return 0;
        v = (v << 6) | (p[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
    if (cp) *cp = v;
    return len;
}

bool pmx_utf8_valid(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        /* ASCII eight octets at a time (lib/swar.h) */
        while (i + 8 <= n && !pmx_swar_high(pmx_swar_load(s + i))) i += 8;
        if (i >= n) break;
        if ((unsigned char)s[i] < 0x80) { i++; continue; }
        size_t k = pmx_utf8_seq(s + i, n - i, NULL);
        if (k == 0) return false;
        i += k;
    }
    return true;
}
