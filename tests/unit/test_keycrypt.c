/*
 * dkim/keycrypt.c: the master key file and AES-256-GCM sealing of DKIM keys.
 * A blob must open only with the same master key and the same row binding,
 * and any changed byte (version, nonce, ciphertext, tag) must fail the open
 * without releasing any plaintext.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "dkim/keycrypt.h"
#include "lib/encode.h"

static const char pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIHc1cF3HgN3u7Pq0r9wq8n2m2yXnH3g1kWv9k0yL9x1Q\n"
    "-----END PRIVATE KEY-----\n";

static void master_key(uint8_t k[PMX_DKIM_MASTER_KEY_LEN], uint8_t seed)
{
    for (int i = 0; i < PMX_DKIM_MASTER_KEY_LEN; i++) k[i] = (uint8_t)(seed + i * 7);
}

static void seal_one(const uint8_t *master, const char *aad, pmx_buf_t *blob)
{
    assert_int_equal(pmx_dkim_key_seal(master, aad, (const uint8_t *)pem, strlen(pem), blob), 0);
}

static void test_round_trip(void **state)
{
    (void)state;
    uint8_t m[32];
    master_key(m, 1);
    pmx_buf_t aad = PMX_BUF_INIT, blob = PMX_BUF_INIT, out = PMX_BUF_INIT;
    pmx_dkim_key_aad(&aad, "example.com", "pmx");
    assert_string_equal(aad.data, "postmux-dkim-v1:example.com:pmx");

    seal_one(m, aad.data, &blob);
    assert_int_equal(blob.len, strlen(pem) + PMX_DKIM_BLOB_OVERHEAD);
    assert_int_equal((uint8_t)blob.data[0], PMX_DKIM_BLOB_VERSION);
    /* The plaintext does not appear in the blob. */
    assert_null(memmem(blob.data, blob.len, "BEGIN PRIVATE KEY", 17));

    assert_int_equal(pmx_dkim_key_open(m, aad.data, (const uint8_t *)blob.data, blob.len, &out), 0);
    assert_int_equal(out.len, strlen(pem));
    assert_memory_equal(out.data, pem, out.len);

    /* Two seals of the same key differ (fresh nonce) and both open. */
    pmx_buf_t blob2 = PMX_BUF_INIT, out2 = PMX_BUF_INIT;
    seal_one(m, aad.data, &blob2);
    assert_int_equal(blob2.len, blob.len);
    assert_memory_not_equal(blob.data + 1, blob2.data + 1, PMX_DKIM_NONCE_LEN);
    assert_int_equal(pmx_dkim_key_open(m, aad.data, (const uint8_t *)blob2.data, blob2.len, &out2), 0);
    assert_string_equal(out2.data, pem);

    pmx_buf_free(&aad);
    pmx_buf_free(&blob);
    pmx_buf_free(&blob2);
    pmx_buf_free_secret(&out);
    pmx_buf_free_secret(&out2);
}

static void test_empty_plaintext(void **state)
{
    (void)state;
    uint8_t m[32];
    master_key(m, 2);
    pmx_buf_t blob = PMX_BUF_INIT, out = PMX_BUF_INIT;
    assert_int_equal(pmx_dkim_key_seal(m, "a", (const uint8_t *)"", 0, &blob), 0);
    assert_int_equal(blob.len, PMX_DKIM_BLOB_OVERHEAD);
    assert_int_equal(pmx_dkim_key_open(m, "a", (const uint8_t *)blob.data, blob.len, &out), 0);
    assert_int_equal(out.len, 0);
    assert_int_equal(pmx_dkim_key_open(m, "b", (const uint8_t *)blob.data, blob.len, &out), -EBADMSG);
    pmx_buf_free(&blob);
    pmx_buf_free(&out);
}

/* Flips one bit at every offset of the blob: each must fail, output untouched. */
static void test_tamper_every_byte(void **state)
{
    (void)state;
    uint8_t m[32];
    master_key(m, 3);
    pmx_buf_t blob = PMX_BUF_INIT;
    seal_one(m, "postmux-dkim-v1:example.com:pmx", &blob);

    for (size_t i = 0; i < blob.len; i++) {
        for (int bit = 0; bit < 8; bit += 7) {
            uint8_t *b = malloc(blob.len);
            memcpy(b, blob.data, blob.len);
            b[i] ^= (uint8_t)(1u << bit);
            pmx_buf_t out = PMX_BUF_INIT;
            pmx_buf_append_str(&out, "keep");
            int rc = pmx_dkim_key_open(m, "postmux-dkim-v1:example.com:pmx", b, blob.len, &out);
            if (i == 0) assert_int_equal(rc, -EINVAL);          /* version byte */
            else if (rc != -EBADMSG) fail_msg("flip at %zu bit %d: rc %d", i, bit, rc);
            assert_string_equal(out.data, "keep");
            pmx_buf_free(&out);
            free(b);
        }
    }
    pmx_buf_free(&blob);
}

static void test_tamper_regions(void **state)
{
    (void)state;
    uint8_t m[32];
    master_key(m, 4);
    const char *aad = "postmux-dkim-v1:example.com:pmx";
    pmx_buf_t blob = PMX_BUF_INIT, out = PMX_BUF_INIT;
    seal_one(m, aad, &blob);
    size_t at[3] = { 1 + 5,                                   /* nonce */
                     1 + PMX_DKIM_NONCE_LEN + 10,             /* ciphertext */
                     blob.len - 3 };                          /* tag */
    for (int k = 0; k < 3; k++) {
        blob.data[at[k]] ^= 0x10;
        assert_int_equal(pmx_dkim_key_open(m, aad, (uint8_t *)blob.data, blob.len, &out), -EBADMSG);
        blob.data[at[k]] ^= 0x10;
    }
    assert_int_equal(out.len, 0);
    /* Restored: opens again. */
    assert_int_equal(pmx_dkim_key_open(m, aad, (uint8_t *)blob.data, blob.len, &out), 0);
    pmx_buf_free(&blob);
    pmx_buf_free_secret(&out);
}

static void test_wrong_master_or_aad(void **state)
{
    (void)state;
    uint8_t m[32], other[32];
    master_key(m, 5);
    memcpy(other, m, sizeof other);
    other[31] ^= 1;
    pmx_buf_t blob = PMX_BUF_INIT, out = PMX_BUF_INIT;
    seal_one(m, "postmux-dkim-v1:example.com:pmx", &blob);
    const uint8_t *b = (const uint8_t *)blob.data;

    assert_int_equal(pmx_dkim_key_open(other, "postmux-dkim-v1:example.com:pmx", b, blob.len, &out), -EBADMSG);
    /* The same blob copied onto another domain or selector does not open. */
    assert_int_equal(pmx_dkim_key_open(m, "postmux-dkim-v1:example.org:pmx", b, blob.len, &out), -EBADMSG);
    assert_int_equal(pmx_dkim_key_open(m, "postmux-dkim-v1:example.com:pmx2", b, blob.len, &out), -EBADMSG);
    assert_int_equal(pmx_dkim_key_open(m, "", b, blob.len, &out), -EBADMSG);
    assert_int_equal(out.len, 0);
    pmx_buf_free(&blob);
}

static void test_short_or_unknown_blob(void **state)
{
    (void)state;
    uint8_t m[32];
    master_key(m, 6);
    pmx_buf_t blob = PMX_BUF_INIT, out = PMX_BUF_INIT;
    seal_one(m, "x", &blob);
    const uint8_t *b = (const uint8_t *)blob.data;
    assert_int_equal(pmx_dkim_key_open(m, "x", b, 0, &out), -EINVAL);
    assert_int_equal(pmx_dkim_key_open(m, "x", b, PMX_DKIM_BLOB_OVERHEAD - 1, &out), -EINVAL);
    /* Cut short, but still long enough to parse: the tag is then wrong. */
    assert_int_equal(pmx_dkim_key_open(m, "x", b, blob.len - 1, &out), -EBADMSG);
    blob.data[0] = 0x02;
    assert_int_equal(pmx_dkim_key_open(m, "x", b, blob.len, &out), -EINVAL);
    assert_int_equal(out.len, 0);
    pmx_buf_free(&blob);
}

/* ---- the master key file ---- */

static char tmpdir[64];

static int setup_dir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/pmx-keycrypt-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_dir(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *write_file(const char *name, const void *data, size_t n)
{
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
    return path;
}

static void test_master_base64(void **state)
{
    (void)state;
    uint8_t want[32], got[32];
    master_key(want, 9);
    pmx_buf_t b64 = PMX_BUF_INIT;
    pmx_base64_encode(&b64, want, 32);
    assert_int_equal(b64.len, 44);
    char err[256] = "";

    const char *p = write_file("b64", b64.data, b64.len);        /* no newline */
    assert_int_equal(pmx_dkim_master_key_load(p, got, err, sizeof err), 0);
    assert_memory_equal(got, want, 32);

    pmx_buf_append_char(&b64, '\n');                               /* trailing newline */
    p = write_file("b64nl", b64.data, b64.len);
    memset(got, 0, sizeof got);
    assert_int_equal(pmx_dkim_master_key_load(p, got, err, sizeof err), 0);
    assert_memory_equal(got, want, 32);
    pmx_buf_free(&b64);
}

static void test_master_raw(void **state)
{
    (void)state;
    uint8_t want[32], got[32];
    char err[256] = "";
    master_key(want, 10);
    want[5] = '\n';
    want[20] = 0;
    const char *p = write_file("raw", want, 32);
    assert_int_equal(pmx_dkim_master_key_load(p, got, err, sizeof err), 0);
    assert_memory_equal(got, want, 32);

    /* A raw key whose last bytes look like a line end is still read whole. */
    want[31] = '\n';
    p = write_file("rawnl", want, 32);
    memset(got, 0, sizeof got);
    assert_int_equal(pmx_dkim_master_key_load(p, got, err, sizeof err), 0);
    assert_memory_equal(got, want, 32);
    want[30] = '\r';
    p = write_file("rawcrlf", want, 32);
    memset(got, 0, sizeof got);
    assert_int_equal(pmx_dkim_master_key_load(p, got, err, sizeof err), 0);
    assert_memory_equal(got, want, 32);
}

static void test_master_errors(void **state)
{
    (void)state;
    uint8_t got[32];
    char err[256], want[512];
    memset(got, 0xaa, sizeof got);

    snprintf(want, sizeof want, "%s/missing", tmpdir);
    assert_int_equal(pmx_dkim_master_key_load(want, got, err, sizeof err), -1);
    char msg[600];
    snprintf(msg, sizeof msg, "master key file %s: cannot open: No such file or directory", want);
    assert_string_equal(err, msg);

    /* base64 of 16 bytes */
    const char *p = write_file("short", "AAECAwQFBgcICQoLDA0ODw==\n", 25);
    assert_int_equal(pmx_dkim_master_key_load(p, got, err, sizeof err), -1);
    snprintf(msg, sizeof msg, "master key file %s: must hold 32 bytes (base64), got 16", p);
    assert_string_equal(err, msg);

    /* 31 raw bytes that are not base64 */
    p = write_file("raw31", "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!", 31);
    assert_int_equal(pmx_dkim_master_key_load(p, got, err, sizeof err), -1);
    snprintf(msg, sizeof msg, "master key file %s: must hold 32 bytes (base64), got 31", p);
    assert_string_equal(err, msg);

    /* base64 of 48 bytes (e.g. a hex string by mistake is still "base64") */
    uint8_t big[48] = { 0 };
    pmx_buf_t b = PMX_BUF_INIT;
    pmx_base64_encode(&b, big, sizeof big);
    p = write_file("long", b.data, b.len);
    assert_int_equal(pmx_dkim_master_key_load(p, got, err, sizeof err), -1);
    snprintf(msg, sizeof msg, "master key file %s: must hold 32 bytes (base64), got 48", p);
    assert_string_equal(err, msg);
    pmx_buf_free(&b);

    /* Nothing was written into the output on failure. */
    for (int i = 0; i < 32; i++) assert_int_equal(got[i], 0xaa);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_empty_plaintext),
        cmocka_unit_test(test_tamper_every_byte),
        cmocka_unit_test(test_tamper_regions),
        cmocka_unit_test(test_wrong_master_or_aad),
        cmocka_unit_test(test_short_or_unknown_blob),
        cmocka_unit_test(test_master_base64),
        cmocka_unit_test(test_master_raw),
        cmocka_unit_test(test_master_errors),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
