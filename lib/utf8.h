/*
 * UTF-8 validation (RFC 3629), shared by the address parser and job decoding:
 * one definition of "valid UTF-8" for every field that reaches a header,
 * Postgres text column or log line.
 */
#ifndef PMX_LIB_UTF8_H
#define PMX_LIB_UTF8_H
#include <stdbool.h>
#include <stddef.h>

/*
 * Length (1-4) of the well-formed UTF-8 sequence at s[0..n), or 0 when it is
 * not one: truncated, overlong, a surrogate (U+D800-DFFF) or above U+10FFFF.
 * If cp is not NULL it receives the code point.
 */
size_t pmx_utf8_seq(const char *s, size_t n, unsigned *cp);
/* True when s[0..n) is entirely well-formed UTF-8 (NUL bytes count as valid). */
bool   pmx_utf8_valid(const char *s, size_t n);

#endif
