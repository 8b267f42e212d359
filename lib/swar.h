/*
 * Eight octets at a time in a 64-bit word ("SIMD within a register"), for the
 * scans over whole message bodies (lib/text.c, lib/utf8.c, dkim/dkimsig.c;
 * docs/bench.md "Where the time goes"). Every mask here is exact: bit 7 of
 * byte k is set when byte k matches, and no other bit is ever set. Words are
 * loaded with memcpy (no alignment needed) and read little- or big-endian
 * alike: callers ask "any?", count, or which byte comes first (pmx_swar_first,
 * which knows the byte order).
 */
#ifndef PMX_LIB_SWAR_H
#define PMX_LIB_SWAR_H
#include <stdint.h>
#include <string.h>

#define PMX_SWAR_ONES 0x0101010101010101ull
#define PMX_SWAR_HIGH 0x8080808080808080ull
#define PMX_SWAR_LOW7 0x7f7f7f7f7f7f7f7full

static inline uint64_t pmx_swar_load(const void *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

/* Bytes equal to 0. */
static inline uint64_t pmx_swar_zero(uint64_t x)
{
    return ~(((x & PMX_SWAR_LOW7) + PMX_SWAR_LOW7) | x | PMX_SWAR_LOW7);
}

/* Bytes equal to c. */
static inline uint64_t pmx_swar_eq(uint64_t x, unsigned char c)
{
    return pmx_swar_zero(x ^ (PMX_SWAR_ONES * c));
}

/* Bytes below c (c <= 128). */
static inline uint64_t pmx_swar_lt(uint64_t x, unsigned char c)
{
    /* 0x80 - c added to the low seven bits sets bit 7 exactly for >= c; bytes with
     * bit 7 already set are never below c. */
    uint64_t ge = (x & PMX_SWAR_LOW7) + PMX_SWAR_ONES * (unsigned char)(0x80 - c);
    return ~(ge | x) & PMX_SWAR_HIGH;
}

/* Bytes above c (c < 128). */
static inline uint64_t pmx_swar_gt(uint64_t x, unsigned char c)
{
    uint64_t gt = (x & PMX_SWAR_LOW7) + PMX_SWAR_ONES * (unsigned char)(0x7f - c);
    return (gt | x) & PMX_SWAR_HIGH;
}

/* The index (0-7, in memory order) of the first byte a non-zero mask marks.
 * Masks are exact (one bit per marked byte), so counting from the end that
 * holds the lowest address gives it: the low end when little-endian. */
static inline unsigned pmx_swar_first(uint64_t mask)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return (unsigned)__builtin_clzll(mask) >> 3;
#else
    return (unsigned)__builtin_ctzll(mask) >> 3;
#endif
}

/* Bytes with bit 7 set (8-bit octets). */
static inline uint64_t pmx_swar_high(uint64_t x)
{
    return x & PMX_SWAR_HIGH;
}

#endif
