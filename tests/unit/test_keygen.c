/*
 * dkim/keygen.c: generated and imported keys, their DNS p= values, and the
 * DKIM key record parser. A p= value is checked the way a receiver uses it:
 * a signature made with the private key must verify with a public key
 * rebuilt from p= alone (DER SubjectPublicKeyInfo for RSA, the raw 32 bytes
 * for Ed25519, RFC 8463).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/bio.h>
#include <openssl/buffer.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "dkim/keygen.h"
#include "lib/encode.h"

/* ---- helpers ---- */

static EVP_PKEY *pkey_from_pem(const pmx_buf_t *pem)
{
    BIO *bio = BIO_new_mem_buf(pem->data, (int)pem->len);
    EVP_PKEY *k = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    assert_non_null(k);
    return k;
}

/* The public key a receiver rebuilds from p= and k=. */
static EVP_PKEY *pkey_from_p(pmx_dkim_alg_t alg, const char *p)
{
    pmx_buf_t der = PMX_BUF_INIT;
    assert_int_equal(pmx_base64_decode(&der, p, strlen(p)), 0);
    EVP_PKEY *k;
    if (alg == PMX_DKIM_ALG_RSA) {
        const unsigned char *q = (const unsigned char *)der.data;
        k = d2i_PUBKEY(NULL, &q, (long)der.len);
        assert_true(q == (const unsigned char *)der.data + der.len);   /* nothing left over */
    } else {
        assert_int_equal(der.len, 32);
        k = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, (const unsigned char *)der.data, der.len);
    }
    pmx_buf_free(&der);
    assert_non_null(k);
    return k;
}

/* Signs with the PEM private key and verifies with the key rebuilt from p=. */
static void assert_p_matches(const pmx_dkim_keypair_t *kp)
{
    EVP_PKEY *priv = pkey_from_pem(&kp->pem);
    EVP_PKEY *pub = pkey_from_p(kp->alg, kp->pub.data);
    const EVP_MD *md = kp->alg == PMX_DKIM_ALG_RSA ? EVP_sha256() : NULL;
    const unsigned char msg[] = "DKIM-Signature test body";
    unsigned char sig[1024];
    size_t siglen = sizeof sig;

    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestSignInit(ctx, NULL, md, NULL, priv), 1);
    assert_int_equal(EVP_DigestSign(ctx, sig, &siglen, msg, sizeof msg), 1);
    EVP_MD_CTX_free(ctx);

    ctx = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestVerifyInit(ctx, NULL, md, NULL, pub), 1);
    assert_int_equal(EVP_DigestVerify(ctx, sig, siglen, msg, sizeof msg), 1);
    EVP_MD_CTX_free(ctx);

    /* And a different key does not verify it. */
    EVP_PKEY *other = kp->alg == PMX_DKIM_ALG_RSA ? EVP_RSA_gen(2048)
                                                  : EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    ctx = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestVerifyInit(ctx, NULL, md, NULL, other), 1);
    assert_int_not_equal(EVP_DigestVerify(ctx, sig, siglen, msg, sizeof msg), 1);
    EVP_MD_CTX_free(ctx);

    EVP_PKEY_free(other);
    EVP_PKEY_free(priv);
    EVP_PKEY_free(pub);
}

/* PEM text of a key, PKCS#8 or traditional, optionally encrypted. */
static void pem_of(EVP_PKEY *k, int traditional, int encrypted, pmx_buf_t *out)
{
    BIO *bio = BIO_new(BIO_s_mem());
    int ok;
    if (encrypted)
        ok = PEM_write_bio_PrivateKey(bio, k, EVP_aes_256_cbc(), (unsigned char *)"secret", 6, NULL, NULL);
    else if (traditional)
        ok = PEM_write_bio_PrivateKey_traditional(bio, k, NULL, NULL, 0, NULL, NULL);
    else
        ok = PEM_write_bio_PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL);
    assert_int_equal(ok, 1);
    BUF_MEM *mem;
    BIO_get_mem_ptr(bio, &mem);
    pmx_buf_append(out, mem->data, mem->length);
    BIO_free(bio);
}

/* ---- generation ---- */

static void test_generate_rsa(void **state)
{
    (void)state;
    pmx_dkim_keypair_t kp;
    pmx_dkim_keypair_init(&kp);
    char err[256];
    assert_int_equal(pmx_dkim_keygen_rsa(2048, &kp, err, sizeof err), 0);
    assert_int_equal(kp.alg, PMX_DKIM_ALG_RSA);
    assert_int_equal(kp.bits, 2048);
    assert_string_equal(kp.warning, "");
    assert_non_null(strstr(kp.pem.data, "-----BEGIN PRIVATE KEY-----"));     /* PKCS#8 */
    /* 294 bytes of DER SPKI for RSA-2048 -> 392 base64 characters */
    assert_int_equal(kp.pub.len, 392);
    assert_p_matches(&kp);

    pmx_buf_t v = PMX_BUF_INIT;
    pmx_dkim_dns_value(&v, kp.alg, kp.pub.data);
    assert_int_equal(strncmp(v.data, "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA", 61), 0);
    pmx_buf_free(&v);

    /* Reloading the stored PEM gives the same p=. */
    pmx_dkim_keypair_t again;
    pmx_dkim_keypair_init(&again);
    assert_int_equal(pmx_dkim_key_load_pem(kp.pem.data, kp.pem.len, &again, err, sizeof err), 0);
    assert_string_equal(again.pub.data, kp.pub.data);
    assert_int_equal(again.alg, PMX_DKIM_ALG_RSA);
    pmx_dkim_keypair_free(&again);
    pmx_dkim_keypair_free(&kp);
}

static void test_generate_rsa_sizes(void **state)
{
    (void)state;
    pmx_dkim_keypair_t kp;
    pmx_dkim_keypair_init(&kp);
    char err[256];
    assert_int_equal(pmx_dkim_keygen_rsa(3072, &kp, err, sizeof err), 0);
    assert_int_equal(kp.bits, 3072);
    assert_p_matches(&kp);
    pmx_dkim_keypair_free(&kp);

    const int bad[] = { 0, 512, 1024, 2047, 4097, 8192, -1 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(pmx_dkim_keygen_rsa(bad[i], &kp, err, sizeof err), -1);
        assert_non_null(strstr(err, "2048 to 4096 bits"));
        assert_null(kp.pem.data);
    }
}

static void test_generate_ed25519(void **state)
{
    (void)state;
    pmx_dkim_keypair_t kp;
    pmx_dkim_keypair_init(&kp);
    char err[256];
    assert_int_equal(pmx_dkim_keygen_ed25519(&kp, err, sizeof err), 0);
    assert_int_equal(kp.alg, PMX_DKIM_ALG_ED25519);
    assert_non_null(strstr(kp.pem.data, "-----BEGIN PRIVATE KEY-----"));
    assert_int_equal(kp.pub.len, 44);                   /* 32 raw bytes, not SPKI */
    assert_p_matches(&kp);

    pmx_buf_t v = PMX_BUF_INIT;
    pmx_dkim_dns_value(&v, kp.alg, kp.pub.data);
    char want[128];
    snprintf(want, sizeof want, "v=DKIM1; k=ed25519; p=%s", kp.pub.data);
    assert_string_equal(v.data, want);
    pmx_buf_free(&v);
    pmx_dkim_keypair_free(&kp);
}

/* ---- import ---- */

static void test_import_rsa_traditional_1024_warns(void **state)
{
    (void)state;
    EVP_PKEY *k = EVP_RSA_gen(1024);
    assert_non_null(k);
    pmx_buf_t pem = PMX_BUF_INIT;
    pem_of(k, 1, 0, &pem);
    assert_non_null(strstr(pem.data, "BEGIN RSA PRIVATE KEY"));

    pmx_dkim_keypair_t kp;
    pmx_dkim_keypair_init(&kp);
    char err[256];
    assert_int_equal(pmx_dkim_key_import_pem(pem.data, pem.len, &kp, err, sizeof err), 0);
    assert_int_equal(kp.alg, PMX_DKIM_ALG_RSA);
    assert_int_equal(kp.bits, 1024);
    assert_non_null(strstr(kp.warning, "1024 bits is weak"));
    /* Stored as PKCS#8 whatever the input form. */
    assert_non_null(strstr(kp.pem.data, "-----BEGIN PRIVATE KEY-----"));
    assert_p_matches(&kp);

    /* p= is this key's own public key. */
    unsigned char *der = NULL;
    int len = i2d_PUBKEY(k, &der);
    pmx_buf_t want = PMX_BUF_INIT;
    pmx_base64_encode(&want, der, (size_t)len);
    assert_string_equal(kp.pub.data, want.data);
    OPENSSL_free(der);
    pmx_buf_free(&want);

    pmx_dkim_keypair_free(&kp);
    pmx_buf_free(&pem);
    EVP_PKEY_free(k);
}

static void test_import_rsa_512_refused(void **state)
{
    (void)state;
    EVP_PKEY *k = EVP_RSA_gen(512);
    assert_non_null(k);
    pmx_dkim_keypair_t kp;
    pmx_dkim_keypair_init(&kp);
    char err[256];
    for (int trad = 0; trad < 2; trad++) {
        pmx_buf_t pem = PMX_BUF_INIT;
        pem_of(k, trad, 0, &pem);
        err[0] = '\0';
        assert_int_equal(pmx_dkim_key_import_pem(pem.data, pem.len, &kp, err, sizeof err), -1);
        assert_string_equal(err, "RSA key of 512 bits is too weak: at least 1024 bits are needed");
        assert_null(kp.pem.data);
        pmx_buf_free(&pem);
    }
    EVP_PKEY_free(k);
}

static void test_import_pkcs8_rsa_and_ed25519(void **state)
{
    (void)state;
    const char *types[2] = { "RSA", "ED25519" };
    for (int t = 0; t < 2; t++) {
        EVP_PKEY *k = t == 0 ? EVP_RSA_gen(2048) : EVP_PKEY_Q_keygen(NULL, NULL, types[t]);
        assert_non_null(k);
        pmx_buf_t pem = PMX_BUF_INIT;
        pem_of(k, 0, 0, &pem);
        pmx_dkim_keypair_t kp;
        pmx_dkim_keypair_init(&kp);
        char err[256];
        assert_int_equal(pmx_dkim_key_import_pem(pem.data, pem.len, &kp, err, sizeof err), 0);
        assert_int_equal(kp.alg, t == 0 ? PMX_DKIM_ALG_RSA : PMX_DKIM_ALG_ED25519);
        assert_string_equal(kp.warning, "");
        assert_p_matches(&kp);
        pmx_dkim_keypair_free(&kp);
        pmx_buf_free(&pem);
        EVP_PKEY_free(k);
    }
}

static void expect_import_error(const char *pem, size_t n, const char *needle)
{
    pmx_dkim_keypair_t kp;
    pmx_dkim_keypair_init(&kp);
    char err[256] = "";
    assert_int_equal(pmx_dkim_key_import_pem(pem, n, &kp, err, sizeof err), -1);
    if (!strstr(err, needle)) fail_msg("error '%s' does not say '%s'", err, needle);
    assert_null(kp.pem.data);
    assert_null(kp.pub.data);
}

static void test_import_refused(void **state)
{
    (void)state;
    /* Another key type. */
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(ec);
    pmx_buf_t pem = PMX_BUF_INIT;
    pem_of(ec, 0, 0, &pem);
    expect_import_error(pem.data, pem.len, "unsupported key type");
    pmx_buf_reset(&pem);
    EVP_PKEY_free(ec);

    /* An encrypted key is reported, never prompted for. */
    EVP_PKEY *rsa = EVP_RSA_gen(2048);
    pem_of(rsa, 0, 1, &pem);
    assert_non_null(strstr(pem.data, "ENCRYPTED PRIVATE KEY"));
    expect_import_error(pem.data, pem.len, "encrypted");
    pmx_buf_reset(&pem);

    /* A public key alone. */
    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PUBKEY(bio, rsa), 1);
    BUF_MEM *mem;
    BIO_get_mem_ptr(bio, &mem);
    expect_import_error(mem->data, mem->length, "not a PEM private key");
    BIO_free(bio);
    EVP_PKEY_free(rsa);

    /* Garbage, empty, and a PEM armour around nonsense. */
    expect_import_error("hello", 5, "not a PEM private key");
    expect_import_error("", 0, "not a PEM private key");
    const char *junk = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    expect_import_error(junk, strlen(junk), "not a PEM private key");
    pmx_buf_free(&pem);
}

/* ---- the published record ---- */

static void expect_record(const char *txt, const char *k, const char *p)
{
    pmx_dkim_record_t rec;
    char err[128];
    if (pmx_dkim_record_parse(txt, strlen(txt), &rec, err, sizeof err) != 0)
        fail_msg("'%s' refused: %s", txt, err);
    assert_string_equal(rec.k, k);
    assert_string_equal(rec.p.data, p);
    pmx_dkim_record_free(&rec);
}

static void expect_bad_record(const char *txt, const char *needle)
{
    pmx_dkim_record_t rec;
    char err[128] = "";
    if (pmx_dkim_record_parse(txt, strlen(txt), &rec, err, sizeof err) != -1)
        fail_msg("'%s' accepted", txt);
    if (!strstr(err, needle)) fail_msg("'%s': error '%s' does not say '%s'", txt, err, needle);
}

static void test_record_parse(void **state)
{
    (void)state;
    expect_record("v=DKIM1; k=rsa; p=MIIB", "rsa", "MIIB");
    expect_record("v=DKIM1;k=ed25519;p=abcd;", "ed25519", "abcd");
    expect_record("p=MIIB", "rsa", "MIIB");                                   /* k defaults to rsa */
    expect_record("  v = DKIM1 ;\tk=rsa ; h=sha256; t=s; p = MII B\r\n Ag== ", "rsa", "MIIBAg==");
    expect_record("v=DKIM1; k=rsa; p=", "rsa", "");                            /* revoked */
    expect_record("v=DKIM1; n=notes with = sign; p=QQ==", "rsa", "QQ==");

    expect_bad_record("v=DKIM1; k=rsa", "no p=");
    expect_bad_record("k=rsa; v=DKIM1; p=AA", "v= must be the first tag");
    expect_bad_record("v=DKIM2; p=AA", "is not DKIM1");
    expect_bad_record("v=DKIM1; p=AA; p=BB", "p= appears twice");
    expect_bad_record("v=DKIM1; k=rsa; k=ed25519; p=AA", "k= appears twice");
    expect_bad_record("postmux-verify=abc", "bad tag list");
    expect_bad_record("v=DKIM1; garbage; p=AA", "bad tag list");
    expect_bad_record("", "no p=");
}

static void test_pub_equal(void **state)
{
    (void)state;
    assert_true(pmx_dkim_pub_equal("QUJD", 4, "QUJD", 4));
    assert_true(pmx_dkim_pub_equal("QUJD", 4, "QU JD", 5));        /* whitespace */
    assert_true(pmx_dkim_pub_equal("QUI=", 4, "QUI", 3));           /* padding */
    assert_false(pmx_dkim_pub_equal("QUJD", 4, "QUJE", 4));
    assert_false(pmx_dkim_pub_equal("QUJD", 4, "QUJDRA==", 8));
    assert_false(pmx_dkim_pub_equal("", 0, "", 0));                 /* revoked is no key */
    assert_false(pmx_dkim_pub_equal("QU!D", 4, "QU!D", 4));         /* not base64 */
}

static void test_alg_names(void **state)
{
    (void)state;
    pmx_dkim_alg_t a;
    assert_string_equal(pmx_dkim_alg_name(PMX_DKIM_ALG_RSA), "rsa-sha256");
    assert_string_equal(pmx_dkim_alg_name(PMX_DKIM_ALG_ED25519), "ed25519-sha256");
    assert_string_equal(pmx_dkim_alg_k(PMX_DKIM_ALG_ED25519), "ed25519");
    assert_int_equal(pmx_dkim_alg_parse("ed25519-sha256", &a), 0);
    assert_int_equal(a, PMX_DKIM_ALG_ED25519);
    assert_int_equal(pmx_dkim_alg_parse("rsa", &a), 0);
    assert_int_equal(a, PMX_DKIM_ALG_RSA);
    assert_int_equal(pmx_dkim_alg_parse("dsa", &a), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate_rsa),
        cmocka_unit_test(test_generate_rsa_sizes),
        cmocka_unit_test(test_generate_ed25519),
        cmocka_unit_test(test_import_rsa_traditional_1024_warns),
        cmocka_unit_test(test_import_rsa_512_refused),
        cmocka_unit_test(test_import_pkcs8_rsa_and_ed25519),
        cmocka_unit_test(test_import_refused),
        cmocka_unit_test(test_record_parse),
        cmocka_unit_test(test_pub_equal),
        cmocka_unit_test(test_alg_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
