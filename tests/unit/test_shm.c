/*
 * daemon/shm.c: the scoreboard shared by postmuxd and its workers, including
 * that a forked child's writes are seen by the parent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon/shm.h"

static void test_slot_lifecycle_and_sums(void **state)
{
    (void)state;
    pmx_shm_t *shm = pmx_shm_create();
    assert_non_null(shm);
    for (int i = 0; i < PMX_SHM_SLOTS; i++)
        assert_int_equal(pmx_shm_slot_state(&shm->slots[i]), PMX_SLOT_FREE);

    pmx_slot_t *a = &shm->slots[0], *b = &shm->slots[7];
    pmx_shm_slot_claim(a, 100, 5000);
    pmx_shm_slot_claim(b, 200, 6000);
    assert_int_equal(pmx_shm_slot_state(a), PMX_SLOT_STARTING);
    assert_int_equal(pmx_shm_slot_heartbeat(a), 5000);
    assert_false(pmx_shm_slot_all_up(a));
    pmx_shm_slot_set_conn(a, PMX_SLOT_REDIS_UP, true);
    assert_false(pmx_shm_slot_all_up(a));
    pmx_shm_slot_set_conn(a, PMX_SLOT_PG_UP, true);
    assert_true(pmx_shm_slot_all_up(a));
    pmx_shm_slot_set_conn(a, PMX_SLOT_REDIS_UP, false);
    assert_false(pmx_shm_slot_all_up(a));

    pmx_shm_slot_add_sent(a, 3);
    pmx_shm_slot_add_sent(b, 4);
    assert_int_equal(pmx_shm_total_sent(shm), 7);
    /* A reaped worker's count is kept: totals never go backwards. */
    pmx_shm_slot_release(shm, a);
    assert_int_equal(pmx_shm_slot_state(a), PMX_SLOT_FREE);
    assert_int_equal(pmx_shm_total_sent(shm), 7);
    pmx_shm_slot_claim(a, 300, 7000);
    assert_int_equal(pmx_shm_total_sent(shm), 7);
    pmx_shm_slot_add_sent(a, 1);
    assert_int_equal(pmx_shm_total_sent(shm), 8);

    assert_int_equal(pmx_shm_worker_restarts(shm), 0);
    pmx_shm_count_restart(shm);
    assert_int_equal(pmx_shm_worker_restarts(shm), 1);
    pmx_shm_destroy(shm);
}

static void test_child_writes_are_shared(void **state)
{
    (void)state;
    pmx_shm_t *shm = pmx_shm_create();
    pmx_slot_t *s = &shm->slots[3];
    pmx_shm_slot_claim(s, 0, 1);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        pmx_shm_slot_set_pid(s, (int32_t)getpid());
        pmx_shm_slot_set_state(s, PMX_SLOT_READY);
        pmx_shm_slot_beat(s, 424242);
        pmx_shm_slot_add_sent(s, 5);
        _exit(0);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_int_equal(atomic_load(&s->pid), pid);
    assert_int_equal(pmx_shm_slot_state(s), PMX_SLOT_READY);
    assert_int_equal(pmx_shm_slot_heartbeat(s), 424242);
    assert_int_equal(pmx_shm_total_sent(shm), 5);
    pmx_shm_destroy(shm);
}

static void test_clock_is_monotonic_ms(void **state)
{
    (void)state;
    uint64_t a = pmx_shm_now_ms();
    usleep(20000);
    uint64_t b = pmx_shm_now_ms();
    assert_true(b >= a + 15 && b < a + 2000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slot_lifecycle_and_sums),
        cmocka_unit_test(test_child_writes_are_shared),
        cmocka_unit_test(test_clock_is_monotonic_ms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
