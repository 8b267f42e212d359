/*
 * The master key and AES-256-GCM sealing of DKIM private keys; see keycrypt.h
 * for the blob layout and why the additional data names the row.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/evp.h>

#include "config/config.h"
#include "dkim/keycrypt.h"
#include "lib/encode.h"
#include "lib/mem.h"

#define AAD_PREFIX "postmux-dkim-v1:"

int pmx_dkim_master_key_parse(const char *path, const uint8_t *data, size_t n,
                              uint8_t out[PMX_DKIM_MASTER_KEY_LEN], char *err, size_t errlen)
{
    pmx_buf_t dec = PMX_BUF_INIT;
    size_t got = n;
    int rc = -1;

    /* Base64 first: 32 raw bytes cannot be base64 of 32 bytes (that needs 43+). */
    if (pmx_base64_decode(&dec, (const char *)data, n) == 0) {
        got = dec.len;
        if (dec.len == PMX_DKIM_MASTER_KEY_LEN) {
            memcpy(out, dec.data, PMX_DKIM_MASTER_KEY_LEN);
            rc = 0;
        }
    }
    if (rc < 0 && n == PMX_DKIM_MASTER_KEY_LEN) {
        memcpy(out, data, PMX_DKIM_MASTER_KEY_LEN);
        rc = 0;
    }
    if (rc < 0)
        snprintf(err, errlen, "master key file %s: must hold %d bytes (base64), got %zu",
                 path, PMX_DKIM_MASTER_KEY_LEN, got);
    pmx_buf_free_secret(&dec);
    return rc;
}

int pmx_dkim_master_key_load(const char *path, uint8_t out[PMX_DKIM_MASTER_KEY_LEN],
                             char *err, size_t errlen)
{
    char *data = NULL;
    size_t n = 0;
    char why[512];

    if (pmx_config_read_secret(path, &data, &n, why, sizeof why) < 0) {
        /* The reader may name the file itself; say it once. */
        const char *reason = why;
        size_t plen = strlen(path);
        if (strncmp(reason, path, plen) == 0 && strncmp(reason + plen, ": ", 2) == 0)
            reason += plen + 2;
        snprintf(err, errlen, "master key file %s: %s", path, reason);
        return -1;
    }

    /*
     * The reader trims a trailing "\n" or "\r\n", which for a raw key can be
     * the key's own last bytes: a 32-byte file is always a raw key (base64 of
     * 32 bytes is 44 characters), so put those bytes back.
     */
    struct stat st;
    if ((n == PMX_DKIM_MASTER_KEY_LEN - 1 || n == PMX_DKIM_MASTER_KEY_LEN - 2) &&
        stat(path, &st) == 0 && st.st_size == PMX_DKIM_MASTER_KEY_LEN) {
        char *grown = pmx_xmalloc(PMX_DKIM_MASTER_KEY_LEN + 1);
        memcpy(grown, data, n);
        pmx_wipe(data, n);
        free(data);
        if (n == PMX_DKIM_MASTER_KEY_LEN - 2) grown[n++] = '\r';
        grown[n++] = '\n';
        grown[n] = '\0';
        data = grown;
    }

    int rc = pmx_dkim_master_key_parse(path, (const uint8_t *)data, n, out, err, errlen);
    pmx_wipe(data, n);
    free(data);
    return rc;
}

void pmx_dkim_key_aad(pmx_buf_t *out, const char *domain, const char *selector)
{
    pmx_buf_appendf(out, AAD_PREFIX "%s:%s", domain, selector);
}

/* The GCM additional data: the version byte, then the caller's row binding. */
static int add_aad(EVP_CIPHER_CTX *ctx, const char *aad)
{
    unsigned char ver = PMX_DKIM_BLOB_VERSION;
    int outl;
    if (EVP_CipherUpdate(ctx, NULL, &outl, &ver, 1) != 1) return -1;
    size_t n = strlen(aad);
    if (n > 0 && EVP_CipherUpdate(ctx, NULL, &outl, (const unsigned char *)aad, (int)n) != 1)
        return -1;
    return 0;
}

int pmx_dkim_key_seal(const uint8_t master[PMX_DKIM_MASTER_KEY_LEN], const char *aad,
                      const uint8_t *plain, size_t n, pmx_buf_t *blob_out)
{
    if (n > (size_t)1 << 30) return -EINVAL;     /* a PEM key is a few KiB */

    uint8_t nonce[PMX_DKIM_NONCE_LEN];
    if (pmx_random_bytes(nonce, sizeof nonce) < 0) return -EIO;

    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (!ctx) return -EIO;

    uint8_t *ct = pmx_xmalloc(n + 1);
    uint8_t tag[PMX_DKIM_TAG_LEN];
    int outl = 0, finl = 0, rc = -EIO;

    if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1) goto done;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, PMX_DKIM_NONCE_LEN, NULL) != 1) goto done;
    if (EVP_EncryptInit_ex(ctx, NULL, NULL, master, nonce) != 1) goto done;
    if (add_aad(ctx, aad) < 0) goto done;
    if (n > 0 && EVP_EncryptUpdate(ctx, ct, &outl, plain, (int)n) != 1) goto done;
    if (EVP_EncryptFinal_ex(ctx, ct + outl, &finl) != 1) goto done;
    if ((size_t)(outl + finl) != n) goto done;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, PMX_DKIM_TAG_LEN, tag) != 1) goto done;

    pmx_buf_append_char(blob_out, (char)PMX_DKIM_BLOB_VERSION);
    pmx_buf_append(blob_out, nonce, sizeof nonce);
    pmx_buf_append(blob_out, ct, n);
    pmx_buf_append(blob_out, tag, sizeof tag);
    rc = 0;
done:
    EVP_CIPHER_CTX_free(ctx);
    free(ct);
    return rc;
}

int pmx_dkim_key_open(const uint8_t master[PMX_DKIM_MASTER_KEY_LEN], const char *aad,
                      const uint8_t *blob, size_t n, pmx_buf_t *pem_out)
{
    if (n < PMX_DKIM_BLOB_OVERHEAD || blob[0] != PMX_DKIM_BLOB_VERSION) return -EINVAL;
    if (n > ((size_t)1 << 30)) return -EINVAL;

    const uint8_t *nonce = blob + 1;
    const uint8_t *ct = nonce + PMX_DKIM_NONCE_LEN;
    size_t ctlen = n - PMX_DKIM_BLOB_OVERHEAD;
    uint8_t tag[PMX_DKIM_TAG_LEN];
    memcpy(tag, ct + ctlen, PMX_DKIM_TAG_LEN);

    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (!ctx) return -EIO;

    /* Decrypt into a private buffer: nothing reaches pem_out unless the tag checks. */
    uint8_t *pt = pmx_xmalloc(ctlen + 1);
    int outl = 0, finl = 0, rc = -EIO;

    if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1) goto done;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, PMX_DKIM_NONCE_LEN, NULL) != 1) goto done;
    if (EVP_DecryptInit_ex(ctx, NULL, NULL, master, nonce) != 1) goto done;
    if (add_aad(ctx, aad) < 0) goto done;
    if (ctlen > 0 && EVP_DecryptUpdate(ctx, pt, &outl, ct, (int)ctlen) != 1) goto done;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, PMX_DKIM_TAG_LEN, tag) != 1) goto done;
    if (EVP_DecryptFinal_ex(ctx, pt + outl, &finl) != 1) {
        rc = -EBADMSG;
        goto done;
    }
    if ((size_t)(outl + finl) != ctlen) goto done;
    pmx_buf_append(pem_out, pt, ctlen);
    rc = 0;
done:
    EVP_CIPHER_CTX_free(ctx);
    pmx_wipe(pt, ctlen + 1);
    free(pt);
    return rc;
}
