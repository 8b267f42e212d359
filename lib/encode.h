/*
 * Byte encodings used across rooms: base32 (RFC 4648 alphabet, lowercase, no
 * padding — ids and API keys), base64 (standard with padding — DKIM p= and
 * keys; url-safe without padding — tokens), hex. And random ids.
 */
#ifndef PMX_LIB_ENCODE_H
#define PMX_LIB_ENCODE_H
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

/* Appends base32 of in[0..n) (lowercase a-z2-7, no '=' padding). */
void pmx_base32_encode(pmx_buf_t *out, const uint8_t *in, size_t n);
/* Decodes (case-insensitive, no padding); returns 0 or -1 on a bad character or length. */
int  pmx_base32_decode(pmx_buf_t *out, const char *in, size_t n);

/* Standard base64 with '=' padding, or the url-safe alphabet without padding. */
void pmx_base64_encode(pmx_buf_t *out, const uint8_t *in, size_t n);
void pmx_base64url_encode(pmx_buf_t *out, const uint8_t *in, size_t n);
/* Decodes standard base64 (padding optional; whitespace skipped); 0 or -1. */
int  pmx_base64_decode(pmx_buf_t *out, const char *in, size_t n);

/* Lowercase hex. */
void pmx_hex_encode(pmx_buf_t *out, const uint8_t *in, size_t n);
/* Postgres bytea input in hex form: "\\x" and lowercase hex (a sealed key's column). */
void pmx_bytea_hex_encode(pmx_buf_t *out, const uint8_t *in, size_t n);
/* Appends the bytes of hex s[0..n) (either case) to out; -1 for an odd length or a non-hex digit. */
int  pmx_hex_decode(pmx_buf_t *out, const char *s, size_t n);

/* Fills buf with cryptographically random bytes (OpenSSL RAND_bytes); 0 or -1. */
int  pmx_random_bytes(uint8_t *buf, size_t n);
/*
 * Writes PREFIX + 16 lowercase base32 characters (80 random bits) into out,
 * e.g. pmx_random_id("ws_", out, sizeof out) -> "ws_k3v7...". out needs
 * strlen(prefix) + 17 bytes. Returns 0 or -1. The bits come from RAND_bytes
 * in batches of 32 ids per thread; a forked child starts with none of its
 * parent's.
 */
int  pmx_random_id(const char *prefix, char *out, size_t outlen);

#endif
