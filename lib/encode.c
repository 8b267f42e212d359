/* base32 / base64 / hex and random ids; see encode.h. */
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include <openssl/rand.h>

#include "lib/encode.h"

static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";
static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

void pmx_base32_encode(pmx_buf_t *out, const uint8_t *in, size_t n)
{
    uint32_t acc = 0;
    int bits = 0;
    pmx_buf_reserve(out, (n * 8 + 4) / 5);
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 5) {
            pmx_buf_append_char(out, b32[(acc >> (bits - 5)) & 31]);
            bits -= 5;
        }
    }
    if (bits > 0) pmx_buf_append_char(out, b32[(acc << (5 - bits)) & 31]);
}

int pmx_base32_decode(pmx_buf_t *out, const char *in, size_t n)
{
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        int v;
        if (c >= 'a' && c <= 'z') v = c - 'a';
        else if (c >= 'A' && c <= 'Z') v = c - 'A';
        else if (c >= '2' && c <= '7') v = c - '2' + 26;
        else return -1;
        acc = (acc << 5) | (uint32_t)v;
        bits += 5;
        if (bits >= 8) {
            pmx_buf_append_char(out, (char)((acc >> (bits - 8)) & 0xff));
            bits -= 8;
        }
    }
    /* Leftover bits must be padding zeros, and fewer than 5 of them. */
    if (bits >= 5 || (acc & ((1u << bits) - 1)) != 0) return -1;
    return 0;
}

static void b64_encode(pmx_buf_t *out, const uint8_t *in, size_t n, const char *alpha, int pad)
{
    pmx_buf_reserve(out, (n + 2) / 3 * 4);
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8) | in[i + 2];
        char q[4] = { alpha[v >> 18], alpha[(v >> 12) & 63], alpha[(v >> 6) & 63], alpha[v & 63] };
        pmx_buf_append(out, q, 4);
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        pmx_buf_append_char(out, alpha[v >> 18]);
        pmx_buf_append_char(out, alpha[(v >> 12) & 63]);
        if (pad) pmx_buf_append(out, "==", 2);
    } else if (n - i == 2) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8);
        pmx_buf_append_char(out, alpha[v >> 18]);
        pmx_buf_append_char(out, alpha[(v >> 12) & 63]);
        pmx_buf_append_char(out, alpha[(v >> 6) & 63]);
        if (pad) pmx_buf_append_char(out, '=');
    }
}

void pmx_base64_encode(pmx_buf_t *out, const uint8_t *in, size_t n)
{
    b64_encode(out, in, n, b64, 1);
}

void pmx_base64url_encode(pmx_buf_t *out, const uint8_t *in, size_t n)
{
    b64_encode(out, in, n, b64url, 0);
}

int pmx_base64_decode(pmx_buf_t *out, const char *in, size_t n)
{
    uint32_t acc = 0;
    int bits = 0, pad = 0;
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        int v;
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') continue;
        if (c == '=') { pad++; continue; }
        if (pad) return -1;                    /* data after padding */
        const char *p = strchr(b64, c);
        if (!p || !c) return -1;
        v = (int)(p - b64);
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            pmx_buf_append_char(out, (char)((acc >> (bits - 8)) & 0xff));
            bits -= 8;
        }
    }
    if (pad > 2 || bits >= 6) return -1;
    return 0;
}

void pmx_hex_encode(pmx_buf_t *out, const uint8_t *in, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    pmx_buf_reserve(out, n * 2);
    for (size_t i = 0; i < n; i++) {
        pmx_buf_append_char(out, hex[in[i] >> 4]);
        pmx_buf_append_char(out, hex[in[i] & 15]);
    }
}

void pmx_bytea_hex_encode(pmx_buf_t *out, const uint8_t *in, size_t n)
{
    pmx_buf_append_str(out, "\\x");
    pmx_hex_encode(out, in, n);
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

int pmx_hex_decode(pmx_buf_t *out, const char *s, size_t n)
{
    if (n % 2) return -1;
    pmx_buf_reserve(out, n / 2);
    for (size_t i = 0; i < n; i += 2) {
        int hi = hexval(s[i]), lo = hexval(s[i + 1]);
        if (hi < 0 || lo < 0) return -1;
        pmx_buf_append_char(out, (char)(hi << 4 | lo));
    }
    return 0;
}

int pmx_random_bytes(uint8_t *buf, size_t n)
{
    return RAND_bytes(buf, (int)n) == 1 ? 0 : -1;
}

/*
 * Random ids draw from a pool of 32 ids' worth of RAND_bytes per thread: one
 * RAND_bytes call per id cost a getpid(2) each (OpenSSL's fork check), and a
 * worker makes an id per message. A forked child must never hand out its
 * parent's pool (two processes, the same ids): the child empties it.
 */
#define ID_BYTES 10
static _Thread_local uint8_t id_pool[32 * ID_BYTES];
static _Thread_local size_t  id_left;
static pthread_once_t        id_once = PTHREAD_ONCE_INIT;
static bool                  id_pool_safe;   /* the child handler is registered */

static void id_pool_forget(void)
{
    memset(id_pool, 0, sizeof id_pool);
    id_left = 0;
}

static void id_pool_init(void)
{
    id_pool_safe = pthread_atfork(NULL, NULL, id_pool_forget) == 0;
}

static int id_bytes(uint8_t r[ID_BYTES])
{
    pthread_once(&id_once, id_pool_init);
    if (!id_pool_safe) return pmx_random_bytes(r, ID_BYTES);   /* no pool without it */
    if (id_left < ID_BYTES) {
        if (pmx_random_bytes(id_pool, sizeof id_pool) < 0) return -1;
        id_left = sizeof id_pool;
    }
    id_left -= ID_BYTES;
    memcpy(r, id_pool + id_left, ID_BYTES);
    memset(id_pool + id_left, 0, ID_BYTES);   /* handed out once */
    return 0;
}

int pmx_random_id(const char *prefix, char *out, size_t outlen)
{
    uint8_t r[ID_BYTES];
    size_t plen = strlen(prefix);
    if (outlen < plen + 17 || id_bytes(r) < 0) return -1;
    pmx_buf_t b = PMX_BUF_INIT;
    pmx_base32_encode(&b, r, sizeof r);
    memcpy(out, prefix, plen);
    memcpy(out + plen, b.data, 16);
    out[plen + 16] = '\0';
    pmx_buf_free(&b);
    return 0;
}
