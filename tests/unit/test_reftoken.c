/*
 * lib/reftoken.c: a token made for (message, index, purpose) checks back to the
 * same message and index, and every forgery is refused — another key, another
 * purpose, a flipped character, a wrong length, a stray alphabet.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "lib/reftoken.h"

static const char msg[] = "msg_k3v7abcdefgh2345";

static void keys(uint8_t k1[PMX_REF_KEY_LEN], uint8_t k2[PMX_REF_KEY_LEN])
{
    uint8_t m1[32], m2[32];
    memset(m1, 7, sizeof m1);
    memset(m2, 7, sizeof m2);
    m2[31] = 8;
    pmx_ref_key_derive(m1, sizeof m1, k1);
    pmx_ref_key_derive(m2, sizeof m2, k2);
}

static void test_round_trip(void **state)
{
    (void)state;
    uint8_t k[PMX_REF_KEY_LEN], k2[PMX_REF_KEY_LEN];
    keys(k, k2);
    unsigned idxs[] = { 0, 1, 255, 256, 4999, PMX_REF_MAX_INDEX };
    for (size_t i = 0; i < sizeof idxs / sizeof idxs[0]; i++) {
        char tok[PMX_REF_TOKEN_LEN + 1], id[PMX_REF_MSG_ID_LEN + 1];
        unsigned idx = 12345678;
        assert_int_equal(pmx_ref_token_make(k, PMX_REF_BOUNCE, msg, idxs[i], tok), 0);
        assert_int_equal(strlen(tok), PMX_REF_TOKEN_LEN);
        for (const char *p = tok; *p; p++)
            assert_true((*p >= 'a' && *p <= 'z') || (*p >= '2' && *p <= '7'));
        assert_int_equal(pmx_ref_token_check(k, PMX_REF_BOUNCE, tok, strlen(tok), id, &idx), 0);
        assert_string_equal(id, msg);
        assert_int_equal(idx, idxs[i]);
    }
}

static void test_upper_case_accepted(void **state)
{
    (void)state;
    uint8_t k[PMX_REF_KEY_LEN], k2[PMX_REF_KEY_LEN];
    keys(k, k2);
    char tok[PMX_REF_TOKEN_LEN + 1], id[PMX_REF_MSG_ID_LEN + 1];
    unsigned idx;
    assert_int_equal(pmx_ref_token_make(k, PMX_REF_BOUNCE, msg, 3, tok), 0);
    for (char *p = tok; *p; p++)
        if (*p >= 'a' && *p <= 'z') *p = (char)(*p - 'a' + 'A');
    assert_int_equal(pmx_ref_token_check(k, PMX_REF_BOUNCE, tok, strlen(tok), id, &idx), 0);
    assert_int_equal(idx, 3);
}

static void test_forgeries_refused(void **state)
{
    (void)state;
    uint8_t k[PMX_REF_KEY_LEN], k2[PMX_REF_KEY_LEN];
    keys(k, k2);
    char tok[PMX_REF_TOKEN_LEN + 1], id[PMX_REF_MSG_ID_LEN + 1] = "unchanged";
    unsigned idx = 99;
    assert_int_equal(pmx_ref_token_make(k, PMX_REF_BOUNCE, msg, 7, tok), 0);

    /* another installation's key, another purpose */
    assert_int_equal(pmx_ref_token_check(k2, PMX_REF_BOUNCE, tok, strlen(tok), id, &idx), -1);
    assert_int_equal(pmx_ref_token_check(k, PMX_REF_UNSUBSCRIBE, tok, strlen(tok), id, &idx), -1);
    /* every single-character change (the last one only touches padding bits
     * for some values, which the decoder refuses as well) */
    for (size_t i = 0; i < PMX_REF_TOKEN_LEN; i++) {
        char f[PMX_REF_TOKEN_LEN + 1];
        memcpy(f, tok, sizeof f);
        f[i] = f[i] == 'a' ? 'b' : 'a';
        assert_int_equal(pmx_ref_token_check(k, PMX_REF_BOUNCE, f, strlen(f), id, &idx), -1);
    }
    /* lengths and alphabet */
    assert_int_equal(pmx_ref_token_check(k, PMX_REF_BOUNCE, tok, PMX_REF_TOKEN_LEN - 1, id, &idx), -1);
    assert_int_equal(pmx_ref_token_check(k, PMX_REF_BOUNCE, "", 0, id, &idx), -1);
    char bad[PMX_REF_TOKEN_LEN + 1];
    memcpy(bad, tok, sizeof bad);
    bad[5] = '1';
    assert_int_equal(pmx_ref_token_check(k, PMX_REF_BOUNCE, bad, strlen(bad), id, &idx), -1);
    /* nothing written on failure */
    assert_string_equal(id, "unchanged");
    assert_int_equal(idx, 99);
}

static void test_purposes_differ(void **state)
{
    (void)state;
    uint8_t k[PMX_REF_KEY_LEN], k2[PMX_REF_KEY_LEN];
    keys(k, k2);
    char b[PMX_REF_TOKEN_LEN + 1], u[PMX_REF_TOKEN_LEN + 1], id[PMX_REF_MSG_ID_LEN + 1];
    unsigned idx;
    assert_int_equal(pmx_ref_token_make(k, PMX_REF_BOUNCE, msg, 1, b), 0);
    assert_int_equal(pmx_ref_token_make(k, PMX_REF_UNSUBSCRIBE, msg, 1, u), 0);
    assert_string_not_equal(b, u);
    assert_int_equal(pmx_ref_token_check(k, PMX_REF_UNSUBSCRIBE, u, strlen(u), id, &idx), 0);
    assert_int_equal(idx, 1);
}

static void test_bad_inputs_to_make(void **state)
{
    (void)state;
    uint8_t k[PMX_REF_KEY_LEN], k2[PMX_REF_KEY_LEN];
    keys(k, k2);
    char tok[PMX_REF_TOKEN_LEN + 1];
    assert_int_equal(pmx_ref_token_make(k, PMX_REF_BOUNCE, "msg_short", 0, tok), -1);
    assert_int_equal(pmx_ref_token_make(k, PMX_REF_BOUNCE, "ws__k3v7abcdefgh2345", 0, tok), -1);
    assert_int_equal(pmx_ref_token_make(k, PMX_REF_BOUNCE, "msg_k3v7abcdefgh2341", 0, tok), -1);
    assert_int_equal(pmx_ref_token_make(k, PMX_REF_BOUNCE, msg, PMX_REF_MAX_INDEX + 1, tok), -1);
    assert_int_equal(pmx_ref_token_make(k, PMX_REF_BOUNCE, NULL, 0, tok), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_upper_case_accepted),
        cmocka_unit_test(test_forgeries_refused),
        cmocka_unit_test(test_purposes_differ),
        cmocka_unit_test(test_bad_inputs_to_make),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
