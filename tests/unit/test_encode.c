/*
 * lib/encode.c: base32 (lowercase, unpadded) and base64 (standard, padded)
 * against the RFC 4648 §10 test vectors, round trips over every length and
 * byte value, refusal of bad input, hex, and random ids (their pool per
 * thread, and a forked child that must not repeat its parent's).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/encode.h"

/* RFC 4648 §10: "", "f", "fo", "foo", "foob", "fooba", "foobar". */
static const char *const plain[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
static const char *const b64_rfc[] = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy" };
static const char *const b32_rfc[] = { "", "MY======", "MZXQ====", "MZXW6===", "MZXW6YQ=",
                                       "MZXW6YTB", "MZXW6YTBOI======" };
/* Our base32 form of the same: lowercase, padding dropped. */
static const char *const b32_ours[] = { "", "my", "mzxq", "mzxw6", "mzxw6yq", "mzxw6ytb", "mzxw6ytboi" };

static void test_base64_rfc_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < 7; i++) {
        pmx_buf_t e = PMX_BUF_INIT, d = PMX_BUF_INIT;
        pmx_base64_encode(&e, (const uint8_t *)plain[i], strlen(plain[i]));
        assert_string_equal(pmx_buf_cstr(&e), b64_rfc[i]);
        assert_int_equal(pmx_base64_decode(&d, b64_rfc[i], strlen(b64_rfc[i])), 0);
        assert_int_equal(d.len, strlen(plain[i]));
        assert_memory_equal(pmx_buf_cstr(&d), plain[i], d.len);
        pmx_buf_free(&e);
        pmx_buf_free(&d);
    }
}

static void test_base32_rfc_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < 7; i++) {
        pmx_buf_t e = PMX_BUF_INIT, d = PMX_BUF_INIT;
        pmx_base32_encode(&e, (const uint8_t *)plain[i], strlen(plain[i]));
        assert_string_equal(pmx_buf_cstr(&e), b32_ours[i]);

        /* The RFC's uppercase form, its padding dropped, decodes too. */
        char up[32];
        size_t n = strcspn(b32_rfc[i], "=");
        memcpy(up, b32_rfc[i], n);
        up[n] = '\0';
        assert_int_equal(pmx_base32_decode(&d, up, n), 0);
        assert_int_equal(d.len, strlen(plain[i]));
        assert_memory_equal(pmx_buf_cstr(&d), plain[i], d.len);
        pmx_buf_reset(&d);
        assert_int_equal(pmx_base32_decode(&d, b32_ours[i], strlen(b32_ours[i])), 0);
        assert_memory_equal(pmx_buf_cstr(&d), plain[i], d.len);
        pmx_buf_free(&e);
        pmx_buf_free(&d);
    }
}

/* Every length 0..64 over bytes covering 0x00..0xff. */
static void test_round_trips(void **state)
{
    (void)state;
    uint8_t in[64];
    for (size_t n = 0; n <= sizeof in; n++) {
        for (size_t i = 0; i < n; i++) in[i] = (uint8_t)(i * 37 + n * 11);
        pmx_buf_t e = PMX_BUF_INIT, d = PMX_BUF_INIT, u = PMX_BUF_INIT;

        pmx_base64_encode(&e, in, n);
        assert_int_equal(e.len, (n + 2) / 3 * 4);
        assert_int_equal(pmx_base64_decode(&d, pmx_buf_cstr(&e), e.len), 0);
        assert_int_equal(d.len, n);
        if (n) assert_memory_equal(d.data, in, n);

        pmx_base64url_encode(&u, in, n);
        assert_null(strpbrk(pmx_buf_cstr(&u), "+/="));
        assert_int_equal(u.len, (n * 4 + 2) / 3);
        pmx_buf_reset(&e);
        pmx_buf_reset(&d);

        pmx_base32_encode(&e, in, n);
        assert_int_equal(e.len, (n * 8 + 4) / 5);
        assert_int_equal(strspn(pmx_buf_cstr(&e), "abcdefghijklmnopqrstuvwxyz234567"), e.len);
        assert_int_equal(pmx_base32_decode(&d, pmx_buf_cstr(&e), e.len), 0);
        assert_int_equal(d.len, n);
        if (n) assert_memory_equal(d.data, in, n);

        pmx_buf_free(&e);
        pmx_buf_free(&d);
        pmx_buf_free(&u);
    }
    /* All 256 byte values through base64 at once. */
    uint8_t all[256];
    for (int i = 0; i < 256; i++) all[i] = (uint8_t)i;
    pmx_buf_t e = PMX_BUF_INIT, d = PMX_BUF_INIT;
    pmx_base64_encode(&e, all, sizeof all);
    assert_int_equal(pmx_base64_decode(&d, e.data, e.len), 0);
    assert_int_equal(d.len, 256);
    assert_memory_equal(d.data, all, 256);
    pmx_buf_free(&e);
    pmx_buf_free(&d);
}

static void test_base64_lenient_forms(void **state)
{
    (void)state;
    /* Padding is optional and whitespace (as in DKIM p= values) is skipped. */
    const char *ok[] = { "Zm9vYg", "Zm9v\r\n Yg==", " Zm 9v Yg = = ", "Zm9vYg=" };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        pmx_buf_t d = PMX_BUF_INIT;
        if (pmx_base64_decode(&d, ok[i], strlen(ok[i])) != 0) fail_msg("'%s' refused", ok[i]);
        assert_string_equal(pmx_buf_cstr(&d), "foob");
        pmx_buf_free(&d);
    }
}

static void test_base64_bad_input(void **state)
{
    (void)state;
    const char *bad[] = {
        "Zm9v!",          /* not in the alphabet */
        "Zm9v-_",         /* url-safe letters are not standard base64 */
        "Zg==Zg==",       /* data after padding */
        "Zg=a",
        "Zg===",          /* three pad characters */
        "Z",              /* 6 bits cannot make a byte */
        "Zm9vY",
        "Zm9v\x01",       /* control byte */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        pmx_buf_t d = PMX_BUF_INIT;
        if (pmx_base64_decode(&d, bad[i], strlen(bad[i])) != -1) fail_msg("'%s' accepted", bad[i]);
        pmx_buf_free(&d);
    }
    /* An embedded NUL inside the given length is refused, not taken as the end. */
    pmx_buf_t d = PMX_BUF_INIT;
    assert_int_equal(pmx_base64_decode(&d, "Zm\0v", 4), -1);
    pmx_buf_free(&d);
}

static void test_base32_bad_input(void **state)
{
    (void)state;
    const char *bad[] = {
        "my======",       /* padding is not part of our form */
        "m1",             /* 0, 1, 8, 9 are not base32 */
        "m8",
        "mz0q",
        "m",              /* impossible lengths: 1, 3, 6 characters */
        "mzx",
        "mzxw6y",
        "mz",             /* 'f' then non-zero leftover bits */
        "my-",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        pmx_buf_t d = PMX_BUF_INIT;
        if (pmx_base32_decode(&d, bad[i], strlen(bad[i])) != -1) fail_msg("'%s' accepted", bad[i]);
        pmx_buf_free(&d);
    }
}

static void test_hex(void **state)
{
    (void)state;
    pmx_buf_t h = PMX_BUF_INIT;
    const uint8_t in[] = { 0x00, 0x01, 0x7f, 0x80, 0xab, 0xff };
    pmx_hex_encode(&h, in, sizeof in);
    assert_string_equal(h.data, "00017f80abff");
    pmx_buf_free(&h);
}

static void test_random_id(void **state)
{
    (void)state;
    char a[32], b[32];
    assert_int_equal(pmx_random_id("ws_", a, sizeof a), 0);
    assert_int_equal(pmx_random_id("ws_", b, sizeof b), 0);
    assert_int_equal(strlen(a), 19);
    assert_int_equal(strncmp(a, "ws_", 3), 0);
    assert_int_equal(strspn(a + 3, "abcdefghijklmnopqrstuvwxyz234567"), 16);
    assert_string_not_equal(a, b);
    /* Too small a buffer is refused rather than overrun. */
    char small[19];
    assert_int_equal(pmx_random_id("ws_", small, sizeof small), -1);
    char exact[20];
    assert_int_equal(pmx_random_id("ws_", exact, sizeof exact), 0);
    assert_int_equal(strlen(exact), 19);
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Ids come from a pool per thread (lib/encode.c): 1,000 in a row (pool refills
 * included) are all different, and a forked child never repeats what its
 * parent hands out next (without emptying the pool in the child it would give
 * exactly that id). */
static void test_random_id_pool(void **state)
{
    (void)state;
    enum { N = 1000 };
    char (*ids)[20] = calloc(N, sizeof *ids);
    assert_non_null(ids);
    for (int i = 0; i < N; i++) assert_int_equal(pmx_random_id("m_", ids[i], sizeof ids[i]), 0);
    qsort(ids, N, sizeof *ids, cmp_id);
    for (int i = 1; i < N; i++) assert_string_not_equal(ids[i - 1], ids[i]);
    free(ids);

    int fd[2];
    assert_int_equal(pipe(fd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char c[20] = "";
        int ok = pmx_random_id("m_", c, sizeof c) == 0 && write(fd[1], c, sizeof c) == sizeof c;
        _exit(ok ? 0 : 1);
    }
    char child[20] = "", parent[20] = "";
    assert_int_equal(read(fd[0], child, sizeof child), sizeof child);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close(fd[0]);
    close(fd[1]);
    assert_int_equal(pmx_random_id("m_", parent, sizeof parent), 0);
    assert_string_not_equal(child, parent);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base64_rfc_vectors),
        cmocka_unit_test(test_base32_rfc_vectors),
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_base64_lenient_forms),
        cmocka_unit_test(test_base64_bad_input),
        cmocka_unit_test(test_base32_bad_input),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_random_id),
        cmocka_unit_test(test_random_id_pool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
