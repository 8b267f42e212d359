/*
 * API keys as `postmux apikey create` and POST /v1/api-keys make them
 * (postmux(1), docs/http.md): the one place that knows the key format, the
 * scopes and what a key's name may hold.
 *
 * A key is "pmx_" + base64url of 32 random bytes (256 bits; 47 characters).
 * Only SHA-256 of the whole key text is stored (api_keys.hash) with the 8
 * characters after "pmx_" as a display prefix; the key is shown once.
 * Scopes: send (POST /v1/emails, SMTP submission), read (GET endpoints),
 * manage (every other API change).
 */
#ifndef PMX_LIB_APIKEY_H
#define PMX_LIB_APIKEY_H
#include <stddef.h>

#include "lib/buf.h"

#define PMX_APIKEY_NAME_MAX   200     /* characters */
#define PMX_APIKEY_PREFIX_LEN 8

typedef struct {
    char      id[24];                        /* "key_" + 16 base32 */
    char      prefix[PMX_APIKEY_PREFIX_LEN + 1];
    pmx_buf_t secret;                        /* the key text; wipe with pmx_apikey_free */
    pmx_buf_t hash_hex;                      /* SHA-256 of the key text, 64 hex digits */
} pmx_apikey_new_t;

/* A fresh key and id. 0, or -1 when OpenSSL gave no random bytes or no digest. */
int  pmx_apikey_make(pmx_apikey_new_t *k);
void pmx_apikey_free(pmx_apikey_new_t *k);
/* 1..PMX_APIKEY_NAME_MAX characters of UTF-8 without control characters.
 * 0, or -1 with the reason ("is empty", ...) in err. */
int  pmx_apikey_name_check(const char *s, char *err, size_t errlen);
/* "send,read" -> the Postgres array literal "{send,read}" appended to array;
 * each scope known and given once. 0, or -1 with the reason in err. */
int  pmx_apikey_scopes_parse(const char *label, const char *s, pmx_buf_t *array, char *err,
                             size_t errlen);

#endif
