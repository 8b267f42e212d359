/*
 * submission/peers_shm.c and submission/peerlimit.c: failed AUTH counted per
 * address, per process without the shared table and across processes with
 * it (forked children stand for workers), the block after
 * PMX_PEERLIMIT_MAX_FAILURES, expiry, a full probe window, and a process
 * killed while it holds the table's lock.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "submission/peers_shm.h"
#include "submission/peerlimit.h"

static int run_child_failures(const char *key, int n, uint64_t now)
{
    pid_t pid = fork();
    if (pid == 0) {
        pmx_worker_peerlimit_t *p = pmx_worker_peerlimit_new();
        for (int i = 0; i < n; i++) pmx_worker_peerlimit_auth_failed(p, key, now);
        pmx_worker_peerlimit_free(p);
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_per_process_without_the_table(void **state)
{
    (void)state;
    pmx_peers_shm_attach(NULL);
    pmx_worker_peerlimit_t *p = pmx_worker_peerlimit_new();
    uint64_t now = 1000000;
    for (int i = 1; i < PMX_PEERLIMIT_MAX_FAILURES; i++) {
        int64_t d = pmx_worker_peerlimit_auth_failed(p, "192.0.2.1", now);
        assert_true(d >= 0);
        if (i <= PMX_PEERLIMIT_FREE_FAILURES) assert_int_equal(d, 0);
        else assert_true(d > 0 && d <= PMX_PEERLIMIT_DELAY_MAX_MS);
    }
    assert_false(pmx_worker_peerlimit_blocked(p, "192.0.2.1", now));
    assert_int_equal(pmx_worker_peerlimit_auth_failed(p, "192.0.2.1", now), -1);
    assert_true(pmx_worker_peerlimit_blocked(p, "192.0.2.1", now));
    assert_false(pmx_worker_peerlimit_blocked(p, "192.0.2.2", now));
    /* The block ends, and the count with it. */
    assert_false(pmx_worker_peerlimit_blocked(p, "192.0.2.1", now + PMX_PEERLIMIT_BLOCK_MS));
    assert_int_equal(pmx_worker_peerlimit_auth_failed(p, "192.0.2.1", now + PMX_PEERLIMIT_BLOCK_MS), 0);
    /* Another process counts on its own. */
    assert_int_equal(run_child_failures("192.0.2.9", PMX_PEERLIMIT_MAX_FAILURES, now), 0);
    assert_false(pmx_worker_peerlimit_blocked(p, "192.0.2.9", now));
    pmx_worker_peerlimit_free(p);
}

static void test_counted_across_processes(void **state)
{
    (void)state;
    pmx_peers_shm_t *t = pmx_peers_shm_create();
    assert_non_null(t);
    pmx_peers_shm_attach(t);
    pmx_worker_peerlimit_t *p = pmx_worker_peerlimit_new();
    /* With the shared table the time is read under its lock: now_ms is ignored. */
    uint64_t now = 1;
    /* Two "workers" take 4 failures each; the parent's first two are already slowed. */
    assert_int_equal(run_child_failures("198.51.100.7", 4, now), 0);
    assert_int_equal(run_child_failures("198.51.100.7", 4, now), 0);
    assert_false(pmx_worker_peerlimit_blocked(p, "198.51.100.7", now));
    assert_true(pmx_worker_peerlimit_auth_failed(p, "198.51.100.7", now) > 0);   /* 9th */
    assert_int_equal(pmx_worker_peerlimit_auth_failed(p, "198.51.100.7", now), -1);   /* 10th */
    assert_true(pmx_worker_peerlimit_blocked(p, "198.51.100.7", now));
    /* Seen as blocked from another process too. */
    pid_t pid = fork();
    if (pid == 0) {
        pmx_worker_peerlimit_t *q = pmx_worker_peerlimit_new();
        bool b = pmx_worker_peerlimit_blocked(q, "198.51.100.7", now);
        pmx_worker_peerlimit_free(q);
        _exit(b ? 7 : 0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    assert_int_equal(WEXITSTATUS(st), 7);
    assert_false(pmx_worker_peerlimit_blocked(p, "198.51.100.8", now));
    pmx_worker_peerlimit_free(p);
    pmx_peers_shm_destroy(t);
    assert_null(pmx_peers_shm_get());
}

static int64_t count_cb(pmx_peer_failures_t *f, uint64_t now, void *arg)
{
    (void)arg;
    if (!f) return -1;
    f->failures++;
    f->last_failure_ms = now;
    f->expires_ms = now + 600000;
    return f->failures;
}

static int64_t block_cb(pmx_peer_failures_t *f, uint64_t now, void *arg)
{
    (void)arg;
    if (!f) return -1;
    f->failures = 10;
    f->blocked_until_ms = f->expires_ms = now + 600000;
    return 0;
}

static int64_t read_cb(pmx_peer_failures_t *f, uint64_t now, void *arg)
{
    (void)now;
    (void)arg;
    return f ? f->failures : -1;
}

static void test_full_windows_evict_the_least_failed(void **state)
{
    (void)state;
    pmx_peers_shm_t *t = pmx_peers_shm_create();
    assert_non_null(t);
    for (int i = 0; i < 5; i++) pmx_peers_shm_with(t, "10.9.9.9", true, count_cb, NULL);
    assert_int_equal(pmx_peers_shm_with(t, "10.8.8.8", true, block_cb, NULL), 0);
    /* A flood of addresses failing once, far more than the table holds: each is
     * tracked (a free cell, or the least-failed live one of its window). */
    char key[32];
    int tracked = 0;
    for (int i = 0; i < 3 * PMX_PEERS_SLOTS; i++) {
        snprintf(key, sizeof key, "10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        if (pmx_peers_shm_with(t, key, true, count_cb, NULL) == 1) tracked++;
    }
    assert_int_equal(tracked, 3 * PMX_PEERS_SLOTS);
    /* The address that kept failing and the blocked one were never pushed out. */
    assert_int_equal(pmx_peers_shm_with(t, "10.9.9.9", false, read_cb, NULL), 5);
    assert_int_equal(pmx_peers_shm_with(t, "10.8.8.8", false, read_cb, NULL), 10);
    /* Without create, an unknown key is not made. */
    assert_int_equal(pmx_peers_shm_with(t, "unknown", false, count_cb, NULL), -1);
    char longkey[PMX_PEERS_KEY_MAX + 8];
    memset(longkey, 'a', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = '\0';
    assert_int_equal(pmx_peers_shm_with(t, longkey, true, count_cb, NULL), -1);
    pmx_peers_shm_destroy(t);
}

static int64_t die_cb(pmx_peer_failures_t *f, uint64_t now, void *arg)
{
    (void)f;
    (void)now;
    (void)arg;
    _exit(3);   /* a worker killed while it holds the lock */
}

static void test_lock_survives_a_dead_holder(void **state)
{
    (void)state;
    pmx_peers_shm_t *t = pmx_peers_shm_create();
    assert_non_null(t);
    pid_t pid = fork();
    if (pid == 0) pmx_peers_shm_with(t, "192.0.2.50", true, die_cb, NULL);
    int st = 0;
    waitpid(pid, &st, 0);
    assert_int_equal(WEXITSTATUS(st), 3);
    /* The next locker recovers the mutex and the table works on. */
    assert_int_equal(pmx_peers_shm_with(t, "192.0.2.50", true, count_cb, NULL), 1);
    assert_int_equal(pmx_peers_shm_with(t, "192.0.2.50", true, count_cb, NULL), 2);
    pmx_peers_shm_destroy(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_per_process_without_the_table),
        cmocka_unit_test(test_counted_across_processes),
        cmocka_unit_test(test_full_windows_evict_the_least_failed),
        cmocka_unit_test(test_lock_survives_a_dead_holder),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
