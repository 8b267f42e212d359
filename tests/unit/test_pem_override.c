/*
 * dkim/pem_override.c: our PEM_read_bio_PrivateKey(). Armed, for exactly the
 * armed PEM in a memory BIO, it returns a new reference to the armed key;
 * every other call (not armed, another PEM, extra bytes, a file BIO, x or a
 * password callback given, reuse off, another thread, after disarming) is a
 * real OpenSSL parse. Reference counts are checked by watching when a key is
 * finally freed (OpenSSL ex_data free callback) and, under ASan/LSan, by the
 * absence of leaks and double frees. The last case signs through libopendkim
 * itself, which must bind to this definition (the point of the module).
 */
#include <dlfcn.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <opendkim/dkim.h>

#include "dkim/pem_override.h"
#include "lib/mem.h"

static struct {
    int       ex_index;
    EVP_PKEY *a, *b;          /* Ed25519: the armed key, another one */
    char     *pem_a, *pem_b;  /* their PKCS#8 PEM */
    int       a_freed;        /* set when a's last reference goes */
} T;

/* ---- helpers ---- */

static void on_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
    if (ptr) *(int *)ptr = 1;
}

static char *pem_of(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    assert_non_null(b);
    assert_int_equal(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL), 1);
    char *data = NULL;
    long n = BIO_get_mem_data(b, &data);
    assert_true(n > 0);
    char *s = pmx_xstrndup(data, (size_t)n);
    BIO_free(b);
    return s;
}

static BIO *mem_bio(const char *text)
{
    BIO *b = BIO_new_mem_buf(text, (int)strlen(text));
    assert_non_null(b);
    return b;
}

/* A key parsed by OpenSSL: another object than k, with k's key. */
static void assert_fresh_copy_of(EVP_PKEY *p, EVP_PKEY *k)
{
    assert_non_null(p);
    assert_ptr_not_equal(p, k);
    assert_int_equal(EVP_PKEY_eq(p, k), 1);
}

static int setup(void **state)
{
    (void)state;
    T.ex_index = EVP_PKEY_get_ex_new_index(0, NULL, NULL, NULL, on_free);
    if (T.ex_index < 0) return -1;
    T.a = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    T.b = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (!T.a || !T.b) return -1;
    if (EVP_PKEY_set_ex_data(T.a, T.ex_index, &T.a_freed) != 1) return -1;
    T.pem_a = pem_of(T.a);
    T.pem_b = pem_of(T.b);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    pmx__dkim_pem_disarm();
    EVP_PKEY_free(T.a);
    EVP_PKEY_free(T.b);
    free(T.pem_a);
    free(T.pem_b);
    return 0;
}

/* ---- cases ---- */

static void test_armed_returns_our_key_with_a_new_reference(void **state)
{
    (void)state;
    pmx__dkim_pem_arm_t arm = { .pem = T.pem_a, .pkey = T.a, .reuse = true };
    BIO *b = mem_bio(T.pem_a);
    pmx__dkim_pem_arm(&arm);
    EVP_PKEY *p = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    pmx__dkim_pem_disarm();
    assert_ptr_equal(p, T.a);
    assert_int_equal(arm.matched, 1);
    assert_int_equal(arm.reused, 1);
    assert_ptr_equal(arm.given, T.a);
    /* The BIO is read to its end, as a parse of the PEM would leave it. */
    assert_int_equal(BIO_pending(b), 0);
    BIO_free(b);
    /* Dropping the reference we were given leaves ours: the key lives on. */
    EVP_PKEY_free(p);
    assert_int_equal(T.a_freed, 0);
    /* And that reference was the only extra one: ours is usable and the key
     * still signs (a freed key would trip ASan here). */
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char sig[64];
    size_t siglen = sizeof sig;
    assert_int_equal(EVP_DigestSignInit(ctx, NULL, NULL, NULL, T.a), 1);
    assert_int_equal(EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)"x", 1), 1);
    EVP_MD_CTX_free(ctx);
}

static void test_not_armed_parses(void **state)
{
    (void)state;
    BIO *b = mem_bio(T.pem_a);
    EVP_PKEY *p = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    assert_fresh_copy_of(p, T.a);
    EVP_PKEY_free(p);
    assert_int_equal(T.a_freed, 0);
}

static void test_another_pem_parses(void **state)
{
    (void)state;
    pmx__dkim_pem_arm_t arm = { .pem = T.pem_a, .pkey = T.a, .reuse = true };
    BIO *b = mem_bio(T.pem_b);
    pmx__dkim_pem_arm(&arm);
    EVP_PKEY *p = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    pmx__dkim_pem_disarm();
    BIO_free(b);
    assert_fresh_copy_of(p, T.b);
    assert_int_equal(arm.matched, 0);
    assert_int_equal(arm.reused, 0);
    assert_null(arm.given);
    EVP_PKEY_free(p);
}

/* The same PEM with one more line, or one octet short: not exactly ours. */
static void test_near_misses_parse(void **state)
{
    (void)state;
    size_t n = strlen(T.pem_a);
    char *longer = pmx_xmalloc(n + 32), *shorter = pmx_xstrndup(T.pem_a, n - 1);
    snprintf(longer, n + 32, "%s# trailing line\n", T.pem_a);
    const char *texts[] = { longer, shorter };
    for (size_t i = 0; i < 2; i++) {
        pmx__dkim_pem_arm_t arm = { .pem = T.pem_a, .pkey = T.a, .reuse = true };
        BIO *b = mem_bio(texts[i]);
        pmx__dkim_pem_arm(&arm);
        EVP_PKEY *p = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
        pmx__dkim_pem_disarm();
        BIO_free(b);
        assert_int_equal(arm.matched, 0);
        assert_null(arm.given);
        if (p) assert_fresh_copy_of(p, T.a);   /* OpenSSL may or may not accept these */
        EVP_PKEY_free(p);
    }
    free(longer);
    free(shorter);
}

static int never_asked(char *buf, int size, int rwflag, void *u)
{
    (void)buf; (void)size; (void)rwflag;
    (*(int *)u)++;
    return -1;
}

static void test_x_or_callback_parse(void **state)
{
    (void)state;
    pmx__dkim_pem_arm_t arm = { .pem = T.pem_a, .pkey = T.a, .reuse = true };
    pmx__dkim_pem_arm(&arm);

    BIO *b = mem_bio(T.pem_a);
    EVP_PKEY *x = NULL;
    EVP_PKEY *p = PEM_read_bio_PrivateKey(b, &x, NULL, NULL);
    BIO_free(b);
    assert_fresh_copy_of(p, T.a);
    assert_ptr_equal(x, p);
    EVP_PKEY_free(p);

    b = mem_bio(T.pem_a);
    int asked = 0;
    p = PEM_read_bio_PrivateKey(b, NULL, never_asked, &asked);
    BIO_free(b);
    assert_fresh_copy_of(p, T.a);
    assert_int_equal(asked, 0);   /* an unencrypted key needs no pass phrase */
    EVP_PKEY_free(p);

    pmx__dkim_pem_disarm();
    assert_int_equal(arm.matched, 0);
    assert_null(arm.given);
}

static void test_file_bio_parses(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    assert_non_null(f);
    assert_int_equal(fputs(T.pem_a, f) >= 0, 1);
    rewind(f);
    BIO *b = BIO_new_fp(f, BIO_CLOSE);
    assert_non_null(b);
    pmx__dkim_pem_arm_t arm = { .pem = T.pem_a, .pkey = T.a, .reuse = true };
    pmx__dkim_pem_arm(&arm);
    EVP_PKEY *p = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    pmx__dkim_pem_disarm();
    BIO_free(b);
    assert_fresh_copy_of(p, T.a);
    assert_int_equal(arm.matched, 0);
    EVP_PKEY_free(p);
}

/* reuse off: parsed, but the match and what it returned are recorded. */
static void test_reuse_off_parses_and_records(void **state)
{
    (void)state;
    pmx__dkim_pem_arm_t arm = { .pem = T.pem_a, .pkey = T.a, .reuse = false };
    BIO *b = mem_bio(T.pem_a);
    pmx__dkim_pem_arm(&arm);
    EVP_PKEY *p = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    pmx__dkim_pem_disarm();
    BIO_free(b);
    assert_fresh_copy_of(p, T.a);
    assert_int_equal(arm.matched, 1);
    assert_int_equal(arm.reused, 0);
    assert_ptr_equal(arm.given, p);
    EVP_PKEY_free(p);
}

static void test_not_a_key(void **state)
{
    (void)state;
    pmx__dkim_pem_arm_t arm = { .pem = T.pem_a, .pkey = T.a, .reuse = true };
    BIO *b = mem_bio("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n");
    pmx__dkim_pem_arm(&arm);
    EVP_PKEY *p = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    pmx__dkim_pem_disarm();
    BIO_free(b);
    assert_null(p);
    assert_int_equal(arm.matched, 0);
    assert_null(arm.given);
}

static void test_disarmed_parses(void **state)
{
    (void)state;
    pmx__dkim_pem_arm_t arm = { .pem = T.pem_a, .pkey = T.a, .reuse = true };
    pmx__dkim_pem_arm(&arm);
    pmx__dkim_pem_disarm();
    BIO *b = mem_bio(T.pem_a);
    EVP_PKEY *p = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    assert_fresh_copy_of(p, T.a);
    assert_int_equal(arm.matched, 0);
    EVP_PKEY_free(p);
}

static void *read_on_thread(void *arg)
{
    (void)arg;
    BIO *b = BIO_new_mem_buf(T.pem_a, -1);
    EVP_PKEY *p = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    return p;
}

/* Armed here, called on another thread: that thread gets OpenSSL's parse. */
static void test_other_thread_parses(void **state)
{
    (void)state;
    pmx__dkim_pem_arm_t arm = { .pem = T.pem_a, .pkey = T.a, .reuse = true };
    pmx__dkim_pem_arm(&arm);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, read_on_thread, NULL), 0);
    void *ret = NULL;
    assert_int_equal(pthread_join(th, &ret), 0);
    pmx__dkim_pem_disarm();
    EVP_PKEY *p = ret;
    assert_fresh_copy_of(p, T.a);
    assert_int_equal(arm.matched, 0);
    EVP_PKEY_free(p);
}

/*
 * libopendkim binds to this definition: the executable exports it and the
 * dynamic linker finds it before libcrypto's; a signature made while armed
 * used our key, and once the handle is freed our key holds only our own
 * reference again (RSA: libopendkim 2.11 releases RSA keys).
 */
static void test_libopendkim_gets_our_key(void **state)
{
    (void)state;
    assert_ptr_equal(dlsym(RTLD_DEFAULT, "PEM_read_bio_PrivateKey"), (void *)PEM_read_bio_PrivateKey);

    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    assert_non_null(rsa);
    int rsa_freed = 0;
    assert_int_equal(EVP_PKEY_set_ex_data(rsa, T.ex_index, &rsa_freed), 1);
    char *pem = pem_of(rsa);

    DKIM_LIB *lib = dkim_init(NULL, NULL);
    assert_non_null(lib);
    static const char msg[] = "From: a@example.test\r\nSubject: s\r\n\r\nbody\r\n";
    DKIM_STAT st = DKIM_STAT_OK;
    DKIM *d = dkim_sign(lib, (const unsigned char *)"t", NULL, (dkim_sigkey_t)pem,
                        (const unsigned char *)"s1", (const unsigned char *)"example.test",
                        DKIM_CANON_RELAXED, DKIM_CANON_RELAXED, DKIM_SIGN_RSASHA256, -1, &st);
    assert_non_null(d);
    assert_int_equal(dkim_chunk(d, (unsigned char *)msg, sizeof msg - 1), DKIM_STAT_OK);
    assert_int_equal(dkim_chunk(d, NULL, 0), DKIM_STAT_OK);
    pmx__dkim_pem_arm_t arm = { .pem = pem, .pkey = rsa, .reuse = true };
    pmx__dkim_pem_arm(&arm);
    st = dkim_eom(d, NULL);
    pmx__dkim_pem_disarm();
    assert_int_equal(st, DKIM_STAT_OK);
    assert_int_equal(arm.matched, 1);
    assert_int_equal(arm.reused, 1);
    assert_ptr_equal(arm.given, rsa);
    unsigned char *hdr = NULL;
    size_t len = 0;
    assert_int_equal(dkim_getsighdr_d(d, 16, &hdr, &len), DKIM_STAT_OK);
    assert_non_null(memmem(hdr, len, "a=rsa-sha256", 12));
    dkim_free(d);
    dkim_close(lib);

    assert_int_equal(rsa_freed, 0);
    EVP_PKEY_free(rsa);   /* our reference was the last one */
    assert_int_equal(rsa_freed, 1);
    pmx_wipe(pem, strlen(pem));
    free(pem);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_armed_returns_our_key_with_a_new_reference),
        cmocka_unit_test(test_not_armed_parses),
        cmocka_unit_test(test_another_pem_parses),
        cmocka_unit_test(test_near_misses_parse),
        cmocka_unit_test(test_x_or_callback_parse),
        cmocka_unit_test(test_file_bio_parses),
        cmocka_unit_test(test_reuse_off_parses_and_records),
        cmocka_unit_test(test_not_a_key),
        cmocka_unit_test(test_disarmed_parses),
        cmocka_unit_test(test_other_thread_parses),
        cmocka_unit_test(test_libopendkim_gets_our_key),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
