/*
 * A new DKIM key for a domain, as `postmux domain add` (postmux(1)) and API
 * v1's POST /v1/domains (docs/http.md) make it: generated (or imported by the
 * CLI), then sealed under the master key (dkim/keycrypt.h) into the bytea
 * literal that goes into dkim_keys.private_key_enc; and the verification
 * token both print as the _postmux TXT record. Generation is slow for RSA
 * (tens of ms): the API runs it off the worker's loop (uv_queue_work).
 */
#ifndef PMX_DKIM_NEWKEY_H
#define PMX_DKIM_NEWKEY_H
#include <stddef.h>
#include <stdint.h>

#include "dkim/keycrypt.h"
#include "dkim/keygen.h"
#include "lib/buf.h"

#define PMX_DKIM_SELECTOR_MAX   63
#define PMX_DKIM_ED25519_SUFFIX "-ed25519"
#define PMX_DKIM_TOKEN_PREFIX   "postmux-verify="
#define PMX_DKIM_VERIFY_LABEL   "_postmux"

typedef struct {
    char               selector[PMX_DKIM_SELECTOR_MAX + sizeof PMX_DKIM_ED25519_SUFFIX];
    pmx_dkim_keypair_t kp;
    pmx_buf_t          blob_hex;     /* "\x..." bytea literal of the sealed key */
} pmx_dkim_newkey_t;

/* Generates kp: RSA of bits (PMX_DKIM_RSA_MIN_BITS..MAX) or Ed25519; 0 or -1 with err. */
int pmx_dkim_newkey_generate(pmx_dkim_newkey_t *k, pmx_dkim_alg_t alg, int bits,
                             char *err, size_t errlen);
/* Seals k->kp.pem for domain/k->selector into k->blob_hex; 0 or -1 with err. */
int pmx_dkim_newkey_seal(pmx_dkim_newkey_t *k, const uint8_t master[PMX_DKIM_MASTER_KEY_LEN],
                         const char *domain, char *err, size_t errlen);
/* Wipes the private key and frees the buffers (the struct may be reused after init). */
void pmx_dkim_newkey_free(pmx_dkim_newkey_t *k);

/* A fresh verification token (24 base32 characters) appended to out; 0 or -1. */
int pmx_dkim_verify_token_make(pmx_buf_t *out);
/* The _postmux.DOMAIN TXT record: its name and value appended. */
void pmx_dkim_token_record(pmx_buf_t *name, pmx_buf_t *value, const char *domain,
                           const char *token);
/* The return path's SPF value, "v=spf1 a:HOST ~all" (docs/feedback.md
 * "Return path (VERP)"), appended to out. */
void pmx_dkim_spf_value(pmx_buf_t *out, const char *hostname);

#endif
