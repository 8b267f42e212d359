/* New DKIM keys and verification tokens for `domain add` and the API; see newkey.h. */
#include "dkim/newkey.h"

#include <stdio.h>

#include "lib/encode.h"

#define TOKEN_BYTES 15   /* 24 base32 characters */

int pmx_dkim_newkey_generate(pmx_dkim_newkey_t *k, pmx_dkim_alg_t alg, int bits,
                             char *err, size_t errlen)
{
    return alg == PMX_DKIM_ALG_RSA ? pmx_dkim_keygen_rsa(bits, &k->kp, err, errlen)
                                   : pmx_dkim_keygen_ed25519(&k->kp, err, errlen);
}

int pmx_dkim_newkey_seal(pmx_dkim_newkey_t *k, const uint8_t master[PMX_DKIM_MASTER_KEY_LEN],
                         const char *domain, char *err, size_t errlen)
{
    pmx_buf_t aad = PMX_BUF_INIT, blob = PMX_BUF_INIT;
    pmx_dkim_key_aad(&aad, domain, k->selector);
    int s = pmx_dkim_key_seal(master, aad.data, (const uint8_t *)k->kp.pem.data, k->kp.pem.len,
                              &blob);
    if (s == 0) {
        pmx_buf_reset(&k->blob_hex);
        pmx_bytea_hex_encode(&k->blob_hex, (const uint8_t *)blob.data, blob.len);
    } else {
        snprintf(err, errlen, "cannot encrypt the DKIM key for %s/%s", domain, k->selector);
    }
    pmx_buf_free(&aad);
    pmx_buf_free(&blob);
    return s == 0 ? 0 : -1;
}

void pmx_dkim_newkey_free(pmx_dkim_newkey_t *k)
{
    pmx_dkim_keypair_free(&k->kp);
    pmx_buf_free(&k->blob_hex);
}

int pmx_dkim_verify_token_make(pmx_buf_t *out)
{
    uint8_t r[TOKEN_BYTES];
    if (pmx_random_bytes(r, sizeof r) < 0) return -1;
    pmx_base32_encode(out, r, sizeof r);
    return 0;
}

void pmx_dkim_token_record(pmx_buf_t *name, pmx_buf_t *value, const char *domain,
                           const char *token)
{
    pmx_buf_appendf(name, PMX_DKIM_VERIFY_LABEL ".%s", domain);
    pmx_buf_appendf(value, PMX_DKIM_TOKEN_PREFIX "%s", token);
}

void pmx_dkim_spf_value(pmx_buf_t *out, const char *hostname)
{
    pmx_buf_appendf(out, "v=spf1 a:%s ~all", hostname);
}
