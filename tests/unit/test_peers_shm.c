/*
 * submission/peers_shm.c and submission/peerlimit.c: failed AUTH counted per
 * address, per process without the shared table and across processes with
 * it (forked children stand for workers), the block after
 * PMX_PEERLIMIT_MAX_FAILURES, expiry, a full probe window, and a process
 * killed while it holds the table's lock; AUTH attempts reserved while in flight;
 * sessions counted per address over worker slots, with the reserve and a
 * dead worker's slot cleared.
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

/* AUTH attempts reserved when they start: in flight ones count, so parallel
 * attempts cannot get past the block; a success is refused once blocked. */
static void test_attempts_reserved(void **state)
{
    (void)state;
    pmx_peers_shm_t *t = pmx_peers_shm_create();
    assert_non_null(t);
    pmx_peers_shm_attach(t);
    pmx_worker_peerlimit_t *p = pmx_worker_peerlimit_new();
    const char *k = "203.0.113.9";
    bool res[PMX_PEERLIMIT_MAX_FAILURES + 1];
    for (int i = 0; i < PMX_PEERLIMIT_MAX_FAILURES; i++)
        assert_int_equal(pmx_worker_peerlimit_auth_begin(p, k, 0, &res[i]), 0);
    /* The budget is taken by attempts still in flight. */
    bool r;
    assert_int_equal(pmx_worker_peerlimit_auth_begin(p, k, 0, &r), -1);
    assert_false(r);
    /* One ends without a verdict: its reservation comes back. */
    assert_int_equal(pmx_worker_peerlimit_auth_end(p, k, 0, res[0], PMX_PEERLIMIT_AUTH_NONE), 0);
    assert_int_equal(pmx_worker_peerlimit_auth_begin(p, k, 0, &res[0]), 0);
    /* Nine fail, the tenth failure blocks... */
    for (int i = 1; i < PMX_PEERLIMIT_MAX_FAILURES; i++)
        assert_true(pmx_worker_peerlimit_auth_end(p, k, 0, res[i], PMX_PEERLIMIT_AUTH_FAILED) >= 0);
    assert_false(pmx_worker_peerlimit_blocked(p, k, 0));
    /* ... and a success judged while blocked is refused. */
    bool last;
    assert_int_equal(pmx_worker_peerlimit_auth_begin(p, k, 0, &last), -1);
    assert_int_equal(pmx_worker_peerlimit_auth_end(p, k, 0, res[0], PMX_PEERLIMIT_AUTH_FAILED), -1);
    assert_true(pmx_worker_peerlimit_blocked(p, k, 0));
    /* A success from an address that is not blocked settles its reservation. */
    assert_int_equal(pmx_worker_peerlimit_auth_begin(p, "203.0.113.10", 0, &r), 0);
    assert_true(r);
    assert_int_equal(pmx_worker_peerlimit_auth_end(p, "203.0.113.10", 0, r, PMX_PEERLIMIT_AUTH_OK), 0);
    pmx_worker_peerlimit_free(p);
    pmx_peers_shm_destroy(t);
}

/* Sessions counted over every worker slot; a dead worker's slot is cleared. */
static void test_sessions_per_address_and_slot(void **state)
{
    (void)state;
    pmx_peers_shm_t *t = pmx_peers_shm_create();
    assert_non_null(t);
    pmx_peers_limits_t lim = { .max_total = 10, .max_per_address = 3, .high_water = 6 };
    bool tr[16];
    /* Three sessions of one address on two workers; a fourth is refused. */
    assert_int_equal(pmx_peers_shm_session_open(t, "192.0.2.1", 0, &lim, &tr[0]), PMX_PEERS_ADMIT_OK);
    assert_int_equal(pmx_peers_shm_session_open(t, "192.0.2.1", 1, &lim, &tr[1]), PMX_PEERS_ADMIT_OK);
    assert_int_equal(pmx_peers_shm_session_open(t, "192.0.2.1", 1, &lim, &tr[2]), PMX_PEERS_ADMIT_OK);
    assert_true(tr[0] && tr[1] && tr[2]);
    assert_int_equal(pmx_peers_shm_session_open(t, "192.0.2.1", 0, &lim, &tr[3]),
                     PMX_PEERS_ADMIT_ADDRESS);
    assert_int_equal(pmx_peers_shm_sessions(t, "192.0.2.1"), 3);
    /* Up to the high-water mark (6), then only addresses with no session. */
    assert_int_equal(pmx_peers_shm_session_open(t, "192.0.2.2", 0, &lim, &tr[4]), PMX_PEERS_ADMIT_OK);
    assert_int_equal(pmx_peers_shm_session_open(t, "192.0.2.2", 0, &lim, &tr[5]), PMX_PEERS_ADMIT_OK);
    assert_int_equal(pmx_peers_shm_session_open(t, "192.0.2.2", 0, &lim, &tr[6]), PMX_PEERS_ADMIT_OK);
    assert_int_equal(pmx_peers_shm_sessions(t, NULL), 6);
    assert_int_equal(pmx_peers_shm_session_open(t, "192.0.2.2", 1, &lim, &tr[7]),
                     PMX_PEERS_ADMIT_ADDRESS);
    assert_int_equal(pmx_peers_shm_session_open(t, "192.0.2.3", 0, &lim, &tr[7]), PMX_PEERS_ADMIT_OK);
    assert_int_equal(pmx_peers_shm_session_open(t, "192.0.2.3", 0, &lim, &tr[8]),
                     PMX_PEERS_ADMIT_BUSY);
    for (int i = 4; i < 7; i++) {
        char key[32];
        snprintf(key, sizeof key, "192.0.2.%d", i);
        assert_int_equal(pmx_peers_shm_session_open(t, key, 1, &lim, &tr[8]), PMX_PEERS_ADMIT_OK);
    }
    assert_int_equal(pmx_peers_shm_sessions(t, NULL), 10);
    assert_int_equal(pmx_peers_shm_session_open(t, "192.0.2.99", 0, &lim, &tr[9]), PMX_PEERS_ADMIT_FULL);
    /* A close gives one back; the worker in slot 1 dies: its 5 are gone. */
    pmx_peers_shm_session_close(t, "192.0.2.2", 0, tr[4]);
    assert_int_equal(pmx_peers_shm_sessions(t, "192.0.2.2"), 2);
    pmx_peers_shm_slot_reset(t, 1);
    assert_int_equal(pmx_peers_shm_sessions(t, NULL), 4);
    assert_int_equal(pmx_peers_shm_sessions(t, "192.0.2.1"), 1);
    assert_int_equal(pmx_peers_shm_sessions(t, "192.0.2.5"), 0);
    /* A close after the reset does not go below zero. */
    pmx_peers_shm_session_close(t, "192.0.2.5", 1, true);
    assert_int_equal(pmx_peers_shm_sessions(t, NULL), 4);
    assert_int_equal(pmx_peers_shm_sessions(t, "192.0.2.1"), 1);
    pmx_peers_shm_destroy(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attempts_reserved),
        cmocka_unit_test(test_sessions_per_address_and_slot),
        cmocka_unit_test(test_per_process_without_the_table),
        cmocka_unit_test(test_counted_across_processes),
        cmocka_unit_test(test_full_windows_evict_the_least_failed),
        cmocka_unit_test(test_lock_survives_a_dead_holder),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
