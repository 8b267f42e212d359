/*
 * lib/apikey.c and sql/pgarray.c's list parser: a made key has the documented
 * form and its hash is SHA-256 of the key text; scope lists become array
 * literals, and empty, unknown and repeated names are refused with the label
 * the caller gave (an option of the CLI, a member of the API).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "lib/apikey.h"
#include "lib/encode.h"
#include "sql/pgarray.h"

static void test_make(void **state)
{
    (void)state;
    pmx_apikey_new_t a, b;
    assert_int_equal(pmx_apikey_make(&a), 0);
    assert_int_equal(pmx_apikey_make(&b), 0);
    const char *key = pmx_buf_cstr(&a.secret);
    assert_int_equal(strlen(key), 47);
    assert_memory_equal(key, "pmx_", 4);
    assert_memory_equal(a.prefix, key + 4, PMX_APIKEY_PREFIX_LEN);
    assert_int_equal(strlen(a.id), 20);
    assert_memory_equal(a.id, "key_", 4);
    assert_string_not_equal(key, pmx_buf_cstr(&b.secret));
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    assert_int_equal(EVP_Digest(key, strlen(key), md, &n, EVP_sha256(), NULL), 1);
    pmx_buf_t hex = PMX_BUF_INIT;
    pmx_hex_encode(&hex, md, n);
    assert_string_equal(pmx_buf_cstr(&hex), pmx_buf_cstr(&a.hash_hex));
    pmx_buf_free(&hex);
    pmx_apikey_free(&a);
    pmx_apikey_free(&b);
}

static void test_scopes(void **state)
{
    (void)state;
    char err[200];
    pmx_buf_t arr = PMX_BUF_INIT;
    assert_int_equal(pmx_apikey_scopes_parse("scopes", "manage,send", &arr, err, sizeof err), 0);
    assert_string_equal(pmx_buf_cstr(&arr), "{manage,send}");
    pmx_buf_free(&arr);

    static const struct { const char *in, *msg; } bad[] = {
        { "send,", "scopes has an empty name: 'send,'" },
        { "", "scopes has an empty name: ''" },
        { "admin", "unknown scope 'admin' (known: send, read, manage)" },
        { "read,read", "scope 'read' given twice" },
        { "Send", "unknown scope 'Send' (known: send, read, manage)" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        pmx_buf_t a = PMX_BUF_INIT;
        assert_int_equal(pmx_apikey_scopes_parse("scopes", bad[i].in, &a, err, sizeof err), -1);
        assert_string_equal(err, bad[i].msg);
        pmx_buf_free(&a);
    }
}

static void test_name(void **state)
{
    (void)state;
    char err[200], long_name[300];
    assert_int_equal(pmx_apikey_name_check("Zürich mailer", err, sizeof err), 0);
    assert_int_equal(pmx_apikey_name_check("", err, sizeof err), -1);
    assert_int_equal(pmx_apikey_name_check("a\r\nb", err, sizeof err), -1);
    assert_string_equal(err, "contains a control character");
    assert_int_equal(pmx_apikey_name_check("\xff", err, sizeof err), -1);
    memset(long_name, 'x', 201);
    long_name[201] = '\0';
    assert_int_equal(pmx_apikey_name_check(long_name, err, sizeof err), -1);
    long_name[200] = '\0';
    assert_int_equal(pmx_apikey_name_check(long_name, err, sizeof err), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_make),
        cmocka_unit_test(test_scopes),
        cmocka_unit_test(test_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
