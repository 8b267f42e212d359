/*
 * lib/rate.c: the --rate syntax and its display form.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "lib/rate.h"

static void expect_rate(const char *s, double want)
{
    double ps = -1;
    bool unl = true;
    if (pmx_rate_spec_parse(s, &ps, &unl) != 0) fail_msg("'%s' was refused", s);
    assert_false(unl);
    if (fabs(ps - want) > 1e-12 * want) fail_msg("'%s' -> %.17g, want %.17g", s, ps, want);
}

static void expect_bad(const char *s)
{
    double ps = 123;
    bool unl = true;
    if (pmx_rate_spec_parse(s, &ps, &unl) != -1) fail_msg("'%s' was accepted", s ? s : "(null)");
    /* Outputs untouched on failure. */
    assert_true(ps == 123);
    assert_true(unl);
}

static void test_units(void **state)
{
    (void)state;
    expect_rate("50/s", 50);
    expect_rate("3000/m", 50);
    expect_rate("100000/h", 100000.0 / 3600);
    expect_rate("1/h", 1.0 / 3600);
    expect_rate("1/s", 1);
    expect_rate("1000000/s", 1000000);
}

static void test_decimals(void **state)
{
    (void)state;
    expect_rate("0.5/s", 0.5);
    expect_rate("2.25/m", 2.25 / 60);
    expect_rate("1.5/h", 1.5 / 3600);
    expect_rate("007/s", 7);
    expect_rate("0.000001/s", 0.000001);
    expect_rate("123456789.123456/h", 123456789.123456 / 3600);
}

static void test_unlimited(void **state)
{
    (void)state;
    double ps = 42;
    bool unl = false;
    assert_int_equal(pmx_rate_spec_parse("unlimited", &ps, &unl), 0);
    assert_true(unl);
    assert_true(ps == 42);   /* not written for unlimited */
}

static void test_refused(void **state)
{
    (void)state;
    const char *bad[] = {
        "5/fortnight", "5/d", "5/S", "5/M", "5/sec", "5/ss", "5", "/s", "5/", "",
        "0/s", "0.0/h", "0.000000/s", "-1/s", "+1/s", "1e3/s", "1E3/s", " 5/s", "5/s ",
        "5 /s", "5/ s", ".5/s", "5./s", "1.2.3/s", "0x10/s", "inf/s", "nan/s",
        "1.0000001/s",            /* 7 decimals */
        "1000001/s",              /* over the maximum */
        "60000001/m",
        "1234567890123456/h",     /* 16 digits */
        "Unlimited", "unlimited ", "unlimitedx", "none", "5/s/s",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) expect_bad(bad[i]);
    expect_bad(NULL);
}

static void test_parse_ex_keeps_count(void **state)
{
    (void)state;
    pmx_rate_spec_t r;
    assert_int_equal(pmx_rate_spec_parse_ex("100000/h", &r), 0);
    assert_false(r.unlimited);
    assert_string_equal(r.count, "100000");
    assert_int_equal(r.unit_seconds, 3600);

    assert_int_equal(pmx_rate_spec_parse_ex("2.50/m", &r), 0);
    assert_string_equal(r.count, "2.50");
    assert_int_equal(r.unit_seconds, 60);

    assert_int_equal(pmx_rate_spec_parse_ex("unlimited", &r), 0);
    assert_true(r.unlimited);
    assert_int_equal(r.unit_seconds, 0);
    assert_string_equal(r.count, "");

    memset(&r, 0x5a, sizeof r);
    assert_int_equal(pmx_rate_spec_parse_ex("5/fortnight", &r), -1);
    assert_int_equal(r.unit_seconds, 0x5a5a5a5a);   /* untouched */
}

static void expect_format(double ps, bool unl, const char *want)
{
    char out[64];
    pmx_rate_spec_format(ps, unl, out, sizeof out);
    if (strcmp(out, want) != 0) fail_msg("%.17g -> '%s', want '%s'", ps, out, want);
}

static void test_format(void **state)
{
    (void)state;
    expect_format(0, true, "unlimited");
    expect_format(50, false, "50/s");
    expect_format(3000.0 / 60, false, "50/s");
    expect_format(100000.0 / 3600, false, "100000/h");
    /* What Postgres numeric stores for 100000/3600, read back with strtod. */
    expect_format(27.7777777777777778, false, "100000/h");
    expect_format(0.00027777777777777778, false, "1/h");
    expect_format(0.5, false, "30/m");
    expect_format(1.5 / 3600, false, "1.5/h");
    expect_format(2.25, false, "135/m");
    expect_format(0.1, false, "6/m");
    expect_format(1000000, false, "1000000/s");
    /* Not whole in any unit: the unit needing the fewest decimals. */
    expect_format(27.777778, false, "100000.0008/h");
    expect_format(0.123457, false, "444.4452/h");
    /* Nothing short: fall back to %g per second. */
    expect_format(1.0 / 7, false, "0.142857/s");
}

static void test_format_roundtrip(void **state)
{
    (void)state;
    const char *in[] = { "50/s", "3000/m", "100000/h", "1/h", "0.5/s", "7/m", "1.25/h",
                         "999999/s", "13/h", "59/m" };
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) {
        double ps, back;
        bool unl;
        char out[64];
        assert_int_equal(pmx_rate_spec_parse(in[i], &ps, &unl), 0);
        pmx_rate_spec_format(ps, unl, out, sizeof out);
        assert_int_equal(pmx_rate_spec_parse(out, &back, &unl), 0);
        if (fabs(back - ps) > 1e-12 * ps) fail_msg("%s -> %s changed the rate", in[i], out);
    }
}

static void test_format_small_buffer(void **state)
{
    (void)state;
    char out[4];
    pmx_rate_spec_format(100000.0 / 3600, false, out, sizeof out);
    assert_string_equal(out, "100");        /* truncated, still terminated */
    pmx_rate_spec_format(1, false, out, 0); /* no write at all */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_units),
        cmocka_unit_test(test_decimals),
        cmocka_unit_test(test_unlimited),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_parse_ex_keeps_count),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_format_roundtrip),
        cmocka_unit_test(test_format_small_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
