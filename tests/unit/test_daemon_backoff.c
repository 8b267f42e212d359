/*
 * daemon/backoff.c: respawn backoff for workers that die before they are
 * ready, and the "more than 10 deaths in 60 s" limit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "daemon/backoff.h"

static void test_ready_deaths_respawn_at_once(void **state)
{
    (void)state;
    pmx_daemon_backoff_t t;
    pmx_daemon_backoff_init(&t);
    for (int i = 0; i < 5; i++) {
        assert_false(pmx_daemon_backoff_death(&t, 1000u + (uint64_t)i * 100, false));
        assert_int_equal(pmx_daemon_backoff_delay_ms(&t), 0);
    }
}

static void test_early_deaths_back_off(void **state)
{
    (void)state;
    pmx_daemon_backoff_t t;
    pmx_daemon_backoff_init(&t);
    uint64_t now = 0;
    const uint64_t want[] = { 0, 1000, 2000, 4000, 8000, 16000, 30000, 30000 };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        now += 20000;   /* spread out: never hits the death limit */
        assert_false(pmx_daemon_backoff_death(&t, now, true));
        assert_int_equal(pmx_daemon_backoff_delay_ms(&t), want[i]);
    }
    /* A worker that became ready ends the streak. */
    pmx_daemon_backoff_ready(&t);
    assert_int_equal(pmx_daemon_backoff_delay_ms(&t), 0);
    /* So does a death after ready. */
    now += 20000;
    pmx_daemon_backoff_death(&t, now, true);
    now += 20000;
    pmx_daemon_backoff_death(&t, now, true);
    assert_int_equal(pmx_daemon_backoff_delay_ms(&t), 1000);
    now += 20000;
    pmx_daemon_backoff_death(&t, now, false);
    assert_int_equal(pmx_daemon_backoff_delay_ms(&t), 0);
}

static void test_eleven_deaths_in_a_minute_give_up(void **state)
{
    (void)state;
    pmx_daemon_backoff_t t;
    pmx_daemon_backoff_init(&t);
    uint64_t now = 5000000;
    for (int i = 0; i < PMX_THROTTLE_MAX_DEATHS; i++)
        assert_false(pmx_daemon_backoff_death(&t, now + (uint64_t)i * 5000, false));
    /* The 11th, 50 s after the first: over the limit. */
    assert_true(pmx_daemon_backoff_death(&t, now + 50000, false));
}

static void test_deaths_spread_over_more_than_a_minute_are_fine(void **state)
{
    (void)state;
    pmx_daemon_backoff_t t;
    pmx_daemon_backoff_init(&t);
    uint64_t now = 0;
    /* One death every 6.1 s, forever: 11 never fit into 60 s. */
    for (int i = 0; i < 100; i++) {
        now += 6100;
        assert_false(pmx_daemon_backoff_death(&t, now, false));
    }
    /* Then a burst: the 11th within 60 s trips. */
    int tripped_at = -1;
    for (int i = 0; i < 20 && tripped_at < 0; i++) {
        now += 100;
        if (pmx_daemon_backoff_death(&t, now, false)) tripped_at = i;
    }
    /* The last ~9 slow deaths are inside the window too, so it trips early. */
    assert_true(tripped_at >= 0 && tripped_at < PMX_THROTTLE_MAX_DEATHS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ready_deaths_respawn_at_once),
        cmocka_unit_test(test_early_deaths_back_off),
        cmocka_unit_test(test_eleven_deaths_in_a_minute_give_up),
        cmocka_unit_test(test_deaths_spread_over_more_than_a_minute_are_fine),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
