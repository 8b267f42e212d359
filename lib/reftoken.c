/* Recipient reference tokens; the format and its reasons are in reftoken.h. */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "lib/buf.h"
#include "lib/encode.h"
#include "lib/reftoken.h"

#define ID_BYTES  10
#define IDX_BYTES 2
#define TAG_BYTES 10
#define RAW_BYTES (ID_BYTES + IDX_BYTES + TAG_BYTES)

static const char derive_label[] = "postmux ref token v1";

void pmx_ref_key_derive(const uint8_t *master, size_t master_len, uint8_t key[PMX_REF_KEY_LEN])
{
    unsigned int len = PMX_REF_KEY_LEN;
    HMAC(EVP_sha256(), master, (int)master_len, (const unsigned char *)derive_label,
         sizeof derive_label - 1, key, &len);
}

static void tag_of(const uint8_t key[PMX_REF_KEY_LEN], pmx_ref_purpose_t purpose,
                   const uint8_t body[ID_BYTES + IDX_BYTES], uint8_t tag[TAG_BYTES])
{
    uint8_t in[1 + ID_BYTES + IDX_BYTES], mac[EVP_MAX_MD_SIZE];
    unsigned int len = sizeof mac;
    in[0] = (uint8_t)purpose;
    memcpy(in + 1, body, ID_BYTES + IDX_BYTES);
    HMAC(EVP_sha256(), key, PMX_REF_KEY_LEN, in, sizeof in, mac, &len);
    memcpy(tag, mac, TAG_BYTES);
}

int pmx_ref_token_make(const uint8_t key[PMX_REF_KEY_LEN], pmx_ref_purpose_t purpose,
                       const char *msg_id, unsigned idx, char out[PMX_REF_TOKEN_LEN + 1])
{
    if (!msg_id || strlen(msg_id) != PMX_REF_MSG_ID_LEN || memcmp(msg_id, "msg_", 4) != 0 ||
        idx > PMX_REF_MAX_INDEX)
        return -1;
    pmx_buf_t id = { 0 };
    if (pmx_base32_decode(&id, msg_id + 4, PMX_REF_MSG_ID_LEN - 4) < 0 || id.len != ID_BYTES) {
        pmx_buf_free(&id);
        return -1;
    }
    uint8_t raw[RAW_BYTES];
    memcpy(raw, id.data, ID_BYTES);
    pmx_buf_free(&id);
    raw[ID_BYTES] = (uint8_t)(idx >> 8);
    raw[ID_BYTES + 1] = (uint8_t)idx;
    tag_of(key, purpose, raw, raw + ID_BYTES + IDX_BYTES);

    pmx_buf_t t = { 0 };
    pmx_base32_encode(&t, raw, sizeof raw);
    int rc = t.len == PMX_REF_TOKEN_LEN ? 0 : -1;
    if (rc == 0) {
        memcpy(out, t.data, PMX_REF_TOKEN_LEN);
        out[PMX_REF_TOKEN_LEN] = '\0';
    }
    pmx_buf_free(&t);
    return rc;
}

int pmx_ref_token_check(const uint8_t key[PMX_REF_KEY_LEN], pmx_ref_purpose_t purpose,
                        const char *tok, size_t n, char msg_id[PMX_REF_MSG_ID_LEN + 1],
                        unsigned *idx)
{
    if (!tok || n != PMX_REF_TOKEN_LEN) return -1;
    pmx_buf_t raw = { 0 };
    int rc = -1;
    if (pmx_base32_decode(&raw, tok, n) < 0 || raw.len != RAW_BYTES) goto out;
    const uint8_t *r = (const uint8_t *)raw.data;
    uint8_t want[TAG_BYTES];
    tag_of(key, purpose, r, want);
    if (CRYPTO_memcmp(want, r + ID_BYTES + IDX_BYTES, TAG_BYTES) != 0) goto out;

    pmx_buf_t id = { 0 };
    pmx_base32_encode(&id, r, ID_BYTES);
    memcpy(msg_id, "msg_", 4);
    memcpy(msg_id + 4, id.data, id.len);   /* 16 characters: 80 bits */
    msg_id[4 + id.len] = '\0';
    pmx_buf_free(&id);
    *idx = ((unsigned)r[ID_BYTES] << 8) | r[ID_BYTES + 1];
    rc = 0;
out:
    pmx_buf_free(&raw);
    return rc;
}
