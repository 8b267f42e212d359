/*
 * libFuzzer target for postmux's own DKIM engine (dkim/dkimsig.c) and the
 * dot-stuffing pieces (lib/text.c); the input is a message as a raw job or an
 * SMTP submission would give it (docs/delivery.md, "DKIM" and "SMTP DATA").
 *
 *   pmx__dkim_body_hash  any input: no crash; on the CRLF-normalised input it
 *                        equals SHA-256 of the relaxed body as a plain
 *                        reference writes it (RFC 6376 3.4.4).
 *   pmx__dkim_own_sign   on the CRLF-normalised input, with a fixed Ed25519
 *                        key: must not crash; a signature is one field, CRLF
 *                        only, no line over 78 octets; a refusal says why.
 *   pmx_text_dot_next    the pieces put together are pmx_text_dot_stuff's output.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "dkim/dkimsig.h"
#include "lib/text.h"
#include "tests/common/dkim_ref.h"

static pmx_dkim_key_t *fuzz_key(void)
{
    static pmx_dkim_key_t k;
    static bool made;
    if (made) return &k;
    EVP_PKEY *g = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    BIO *b = BIO_new(BIO_s_mem());
    char *pem = NULL, err[256];
    long len = 0;
    if (!g || !b || PEM_write_bio_PrivateKey(b, g, NULL, NULL, 0, NULL, NULL) != 1 ||
        (len = BIO_get_mem_data(b, &pem)) <= 0 ||
        pmx_dkim_key_init(&k, "fuzz.example", "f1", PMX_DKIM_ALG_ED25519, pem, (size_t)len, err,
                          sizeof err) != 0)
        abort();
    BIO_free(b);
    EVP_PKEY_free(g);
    made = true;
    return &k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;

    /* The body hash: any input must not crash it; on CRLF text (what the signer
     * lets through) it equals the reference. */
    uint8_t want[32], got[32];
    if (pmx__dkim_body_hash(in, size, got) != 0) abort();
    pmx_buf_t m = PMX_BUF_INIT, canon = PMX_BUF_INIT;
    pmx_text_crlf(&m, in, size);
    pmx_test_ref_relaxed_body(&canon, m.data ? m.data : "", m.len);
    unsigned int wl = 0;
    if (EVP_Digest(canon.data ? canon.data : "", canon.len, want, &wl, EVP_sha256(), NULL) != 1)
        abort();
    if (pmx__dkim_body_hash(m.data ? m.data : "", m.len, got) != 0 || memcmp(want, got, 32) != 0)
        abort();
    pmx_buf_free(&canon);

    /* A signature of the CRLF-normalised input. */
    static const char *const fields[] = { "From", "Subject", "To", "Cc", NULL };
    static const char *const over[] = { "From", NULL };
    pmx_buf_t sig = PMX_BUF_INIT;
    char err[256] = "";
    if (pmx__dkim_own_sign(fuzz_key(), m.data ? m.data : "", m.len, fields, over, 1700000000,
                           &sig, err, sizeof err) == 0) {
        if (sig.len < 18 || strncmp(sig.data, "DKIM-Signature: ", 16) != 0) abort();
        if (!pmx_text_is_crlf(sig.data, sig.len)) abort();
        if (memcmp(sig.data + sig.len - 2, "\r\n", 2) != 0) abort();
        for (const char *p = sig.data, *e; (e = strstr(p, "\r\n")); p = e + 2) {
            if (e - p > 78) abort();
            if (p != sig.data && *p != ' ' && *p != '\t' && p != sig.data + sig.len) abort();
        }
    } else if (!err[0] || sig.len != 0) {
        abort();
    }
    pmx_buf_free(&sig);
    pmx_buf_free(&m);

    /* Dot-stuffing: the pieces are the copy. */
    pmx_buf_t whole = PMX_BUF_INIT, pieces = PMX_BUF_INIT;
    pmx_text_dot_stuff(&whole, in, size);
    pmx_text_dot_t d;
    pmx_text_dot_init(&d, in, size);
    const char *p;
    size_t len;
    while (pmx_text_dot_next(&d, &p, &len)) {
        if (len == 0) abort();
        pmx_buf_append(&pieces, p, len);
    }
    if (whole.len != pieces.len || memcmp(whole.data, pieces.data, whole.len) != 0) abort();
    pmx_buf_free(&whole);
    pmx_buf_free(&pieces);
    return 0;
}
