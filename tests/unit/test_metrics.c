/*
 * daemon/metrics_shm.c and workers/metrics.c: the shared counter table
 * (forked processes racing on the same new keys must add up exactly), the
 * "_other" overflow, a claimer that died mid-insert, queue-depth
 * generations, session gauges, and the Prometheus text /metrics renders.
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

#include "daemon/metrics_shm.h"
#include "daemon/shm.h"
#include "lib/buf.h"
#include "workers/metrics.h"

static uint64_t rcpt_value(const pmx_metrics_shm_t *m, const char *ws, pmx_metrics_status_t st)
{
    pmx_metrics_row_t *rows;
    size_t n = pmx_metrics_shm_recipients(m, &rows);
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(rows[i].ws, ws) == 0) v = rows[i].value[st];
    free(rows);
    return v;
}

static void test_insert_and_read(void **state)
{
    (void)state;
    pmx_metrics_shm_t *m = pmx_metrics_shm_create();
    assert_non_null(m);
    pmx_metrics_shm_add_recipients(m, "ws_bbbbbbbbbbbbbbbb", PMX_METRICS_SENT, 2);
    pmx_metrics_shm_add_recipients(m, "ws_aaaaaaaaaaaaaaaa", PMX_METRICS_SENT, 3);
    pmx_metrics_shm_add_recipients(m, "ws_aaaaaaaaaaaaaaaa", PMX_METRICS_BOUNCED, 1);
    pmx_metrics_shm_add_recipients(m, "ws_aaaaaaaaaaaaaaaa", PMX_METRICS_SENT, 4);
    pmx_metrics_shm_add_recipients(m, "ws_aaaaaaaaaaaaaaaa", PMX_METRICS_NSTATUS, 9);  /* ignored */

    pmx_metrics_row_t *rows;
    size_t n = pmx_metrics_shm_recipients(m, &rows);
    assert_int_equal(n, 2);
    assert_string_equal(rows[0].ws, "ws_aaaaaaaaaaaaaaaa");   /* sorted */
    assert_int_equal(rows[0].value[PMX_METRICS_SENT], 7);
    assert_int_equal(rows[0].value[PMX_METRICS_BOUNCED], 1);
    assert_int_equal(rows[0].value[PMX_METRICS_QUEUED], 0);
    assert_string_equal(rows[1].ws, "ws_bbbbbbbbbbbbbbbb");
    assert_int_equal(rows[1].value[PMX_METRICS_SENT], 2);
    free(rows);

    /* The same key always finds the same cell. */
    pmx_metrics_cell_t *a = pmx_metrics_shm_cell(m->rcpt, PMX_METRICS_RCPT_SLOTS,
                                                 "ws_aaaaaaaaaaaaaaaa", PMX_METRICS_SENT);
    pmx_metrics_cell_t *b = pmx_metrics_shm_cell(m->rcpt, PMX_METRICS_RCPT_SLOTS,
                                                 "ws_aaaaaaaaaaaaaaaa", PMX_METRICS_SENT);
    assert_ptr_equal(a, b);
    assert_int_equal(atomic_load(&a->value), 7);
    pmx_metrics_shm_destroy(m);
}

static void test_status_names(void **state)
{
    (void)state;
    static const char *names[] = { "queued", "sent", "deferred", "bounced", "rejected", "suppressed" };
    for (int i = 0; i < PMX_METRICS_NSTATUS; i++) {
        assert_int_equal(pmx_metrics_status_parse(names[i]), i);
        assert_string_equal(pmx_metrics_status_name((pmx_metrics_status_t)i), names[i]);
    }
    assert_int_equal(pmx_metrics_status_parse("Sent"), -1);
    assert_int_equal(pmx_metrics_status_parse(""), -1);
    assert_int_equal(pmx_metrics_status_parse(NULL), -1);
    assert_true(pmx_metrics_ws_valid("ws_abcdefghijklmnop"));
    assert_false(pmx_metrics_ws_valid(""));
    assert_false(pmx_metrics_ws_valid(NULL));
    assert_false(pmx_metrics_ws_valid("_other"));
    assert_false(pmx_metrics_ws_valid("ws\"x"));
    assert_false(pmx_metrics_ws_valid("ws x"));
    assert_false(pmx_metrics_ws_valid("ws_aaaaaaaaaaaaaaaaaaaaa"));   /* 24 bytes: no room */
    assert_true(pmx_metrics_ws_valid("ws_aaaaaaaaaaaaaaaaaaaa"));     /* 23 bytes */
}

#define NCHILD   8
#define NROUNDS  3000
#define NSHARED  50

/* Forked processes start together and race to create and bump the same new
 * keys; every increment must be there, each key in one row. */
static void test_forked_writers_add_up_exactly(void **state)
{
    (void)state;
    pmx_metrics_shm_t *m = pmx_metrics_shm_create();
    int gate[2];
    assert_int_equal(pipe(gate), 0);
    pid_t kids[NCHILD];
    for (int c = 0; c < NCHILD; c++) {
        kids[c] = fork();
        assert_true(kids[c] >= 0);
        if (kids[c] == 0) {
            close(gate[1]);
            char x;
            if (read(gate[0], &x, 1) < 0) _exit(3);   /* EOF = go */
            char ws[32], own[32];
            snprintf(own, sizeof own, "ws_child%02d", c);
            for (int j = 0; j < NROUNDS; j++) {
                snprintf(ws, sizeof ws, "ws_shared%03d", (j * 7 + c) % NSHARED);
                pmx_metrics_shm_add_recipients(m, ws, (pmx_metrics_status_t)(j % PMX_METRICS_NSTATUS),
                                               1);
                pmx_metrics_shm_add_recipients(m, own, PMX_METRICS_SENT, 2);
                pmx_metrics_shm_observe_dkim(m, 0.002);
                pmx_metrics_shm_sessions_add(m, c, PMX_METRICS_OUTBOUND, 1);
            }
            _exit(0);
        }
    }
    close(gate[0]);
    close(gate[1]);
    for (int c = 0; c < NCHILD; c++) {
        int st;
        assert_int_equal(waitpid(kids[c], &st, 0), kids[c]);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }

    /* What the children did, counted here. */
    static uint64_t expect[NSHARED][PMX_METRICS_NSTATUS];
    memset(expect, 0, sizeof expect);
    for (int c = 0; c < NCHILD; c++)
        for (int j = 0; j < NROUNDS; j++) expect[(j * 7 + c) % NSHARED][j % PMX_METRICS_NSTATUS]++;

    pmx_metrics_row_t *rows;
    size_t n = pmx_metrics_shm_recipients(m, &rows);
    assert_int_equal(n, NSHARED + NCHILD);   /* one row per workspace, no "_other" */
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        int k;
        if (sscanf(rows[i].ws, "ws_shared%d", &k) == 1) {
            for (int s = 0; s < PMX_METRICS_NSTATUS; s++) {
                assert_int_equal(rows[i].value[s], expect[k][s]);
                total += rows[i].value[s];
            }
        } else {
            assert_int_equal(rows[i].value[PMX_METRICS_SENT], 2 * NROUNDS);
        }
    }
    free(rows);
    assert_int_equal(total, (uint64_t)NCHILD * NROUNDS);

    /* Every key lives in exactly one READY cell. */
    size_t ready = 0;
    for (size_t i = 0; i < PMX_METRICS_RCPT_SLOTS; i++)
        if (atomic_load(&m->rcpt[i].state) == PMX_METRICS_CELL_READY) ready++;
    size_t keys = 0;
    for (int k = 0; k < NSHARED; k++)
        for (int s = 0; s < PMX_METRICS_NSTATUS; s++) keys += expect[k][s] ? 1 : 0;
    assert_int_equal(ready, keys + NCHILD);

    uint64_t buckets[PMX_METRICS_DKIM_NBOUNDS + 1], sum_ns, count = 0;
    pmx_metrics_shm_dkim(m, buckets, &sum_ns);
    for (int b = 0; b <= PMX_METRICS_DKIM_NBOUNDS; b++) count += buckets[b];
    assert_int_equal(count, (uint64_t)NCHILD * NROUNDS);
    assert_int_equal(buckets[4], (uint64_t)NCHILD * NROUNDS);   /* 0.002 <= 0.0025 */
    assert_int_equal(sum_ns, (uint64_t)NCHILD * NROUNDS * 2000000u);
    assert_int_equal(pmx_metrics_shm_sessions(m, PMX_METRICS_OUTBOUND), (uint64_t)NCHILD * NROUNDS);
    pmx_metrics_shm_destroy(m);
}

/* A full table counts into "_other": totals stay exact. */
static void test_full_table_goes_to_other(void **state)
{
    (void)state;
    pmx_metrics_shm_t *m = pmx_metrics_shm_create();
    char ws[32];
    for (int i = 0; i < PMX_METRICS_RCPT_SLOTS; i++) {
        snprintf(ws, sizeof ws, "ws_%05d", i);
        pmx_metrics_shm_add_recipients(m, ws, PMX_METRICS_SENT, 1);
    }
    assert_int_equal(atomic_load(&m->rcpt_other[PMX_METRICS_FAM_RECIPIENTS][PMX_METRICS_SENT]), 0);
    pmx_metrics_shm_add_recipients(m, "ws_new", PMX_METRICS_SENT, 5);
    pmx_metrics_shm_add_recipients(m, "ws_00007", PMX_METRICS_SENT, 1);   /* known: still its own */
    pmx_metrics_shm_add_recipients(m, "ws_00007", PMX_METRICS_DEFERRED, 2); /* new key: no room */
    /* Ids that cannot be labels go there too, table full or not. */
    pmx_metrics_shm_add_recipients(m, "not an id", PMX_METRICS_BOUNCED, 1);
    pmx_metrics_shm_add_recipients(m, NULL, PMX_METRICS_BOUNCED, 1);

    pmx_metrics_row_t *rows;
    size_t n = pmx_metrics_shm_recipients(m, &rows);
    assert_int_equal(n, PMX_METRICS_RCPT_SLOTS + 1);
    assert_string_equal(rows[n - 1].ws, "_other");   /* last */
    assert_int_equal(rows[n - 1].value[PMX_METRICS_SENT], 5);
    assert_int_equal(rows[n - 1].value[PMX_METRICS_DEFERRED], 2);
    assert_int_equal(rows[n - 1].value[PMX_METRICS_BOUNCED], 2);
    uint64_t sent = 0;
    for (size_t i = 0; i < n; i++) sent += rows[i].value[PMX_METRICS_SENT];
    assert_int_equal(sent, PMX_METRICS_RCPT_SLOTS + 5 + 1);
    free(rows);
    assert_int_equal(rcpt_value(m, "ws_00007", PMX_METRICS_SENT), 2);
    pmx_metrics_shm_destroy(m);
}

/* A claimer killed between its CAS and its publish: the next writer gives up
 * on that cell and uses another; if the claimer was only slow and publishes
 * after all, readers merge the two cells. */
static void test_dead_claimer_is_skipped(void **state)
{
    (void)state;
    const char *ws = "ws_slowslowslowslow";
    pmx_metrics_shm_t *probe = pmx_metrics_shm_create();
    pmx_metrics_cell_t *home = pmx_metrics_shm_cell(probe->rcpt, PMX_METRICS_RCPT_SLOTS, ws,
                                                    PMX_METRICS_SENT);
    size_t idx = (size_t)(home - probe->rcpt);
    pmx_metrics_shm_destroy(probe);

    pmx_metrics_shm_t *m = pmx_metrics_shm_create();
    atomic_store(&m->rcpt[idx].state, PMX_METRICS_CELL_CLAIMING);
    pmx_metrics_shm_add_recipients(m, ws, PMX_METRICS_SENT, 3);
    assert_int_equal(atomic_load(&m->rcpt[idx].state), PMX_METRICS_CELL_ABANDONED);
    pmx_metrics_shm_add_recipients(m, ws, PMX_METRICS_SENT, 1);   /* no wait the second time */
    assert_int_equal(rcpt_value(m, ws, PMX_METRICS_SENT), 4);

    /* The "dead" claimer was only slow: it publishes the same key. */
    m->rcpt[idx].status = PMX_METRICS_SENT;
    strcpy(m->rcpt[idx].ws, ws);
    atomic_store(&m->rcpt[idx].value, 10);
    atomic_store(&m->rcpt[idx].state, PMX_METRICS_CELL_READY);
    pmx_metrics_row_t *rows;
    assert_int_equal(pmx_metrics_shm_recipients(m, &rows), 1);
    assert_int_equal(rows[0].value[PMX_METRICS_SENT], 14);
    free(rows);
    pmx_metrics_shm_destroy(m);
}

static void test_depth_generations(void **state)
{
    (void)state;
    pmx_metrics_shm_t *m = pmx_metrics_shm_create();
    pmx_metrics_row_t *rows;
    assert_int_equal(pmx_metrics_shm_depths(m, &rows), 0);   /* no refresh yet */
    free(rows);

    const char *ids1[] = { "ws_b", "ws_a" };
    uint64_t d1[] = { 5, 3 };
    pmx_metrics_shm_store_depths(m, ids1, d1, 2);
    assert_int_equal(pmx_metrics_shm_depths(m, &rows), 2);
    assert_string_equal(rows[0].ws, "ws_a");
    assert_int_equal(rows[0].value[0], 3);
    assert_int_equal(rows[0].value[1], 0);
    assert_int_equal(rows[1].value[0], 5);
    free(rows);

    /* ws_b was deleted: it drops out; an empty stream shows 0. */
    const char *ids2[] = { "ws_a" };
    uint64_t d2[] = { 0 };
    pmx_metrics_shm_store_depths(m, ids2, d2, 1);
    assert_int_equal(pmx_metrics_shm_depths(m, &rows), 1);
    assert_string_equal(rows[0].ws, "ws_a");
    assert_int_equal(rows[0].value[0], 0);
    free(rows);

    /* No workspaces at all: no rows, still a refresh. */
    pmx_metrics_shm_store_depths(m, NULL, NULL, 0);
    assert_int_equal(pmx_metrics_shm_depths(m, &rows), 0);
    free(rows);

    /* Ids that cannot be labels are summed into _other. */
    const char *ids3[] = { "ws_a", "bad id", "also bad" };
    uint64_t d3[] = { 1, 2, 4 };
    pmx_metrics_shm_store_depths(m, ids3, d3, 3);
    assert_int_equal(pmx_metrics_shm_depths(m, &rows), 2);
    assert_string_equal(rows[1].ws, "_other");
    assert_int_equal(rows[1].value[0], 6);
    free(rows);

    /* One refresh per interval, whoever asks. */
    assert_true(pmx_metrics_shm_claim_refresh(m, 1000, 5000));
    assert_false(pmx_metrics_shm_claim_refresh(m, 1000, 5000));
    assert_false(pmx_metrics_shm_claim_refresh(m, 5999, 5000));
    assert_true(pmx_metrics_shm_claim_refresh(m, 6000, 5000));
    pmx_metrics_shm_destroy(m);
}

static void test_session_gauges(void **state)
{
    (void)state;
    pmx_metrics_shm_t *m = pmx_metrics_shm_create();
    pmx_metrics_shm_sessions_add(m, 0, PMX_METRICS_INBOUND, 2);
    pmx_metrics_shm_sessions_add(m, 5, PMX_METRICS_INBOUND, 1);
    pmx_metrics_shm_sessions_set(m, 5, PMX_METRICS_OUTBOUND, 4);
    pmx_metrics_shm_sessions_add(m, -1, PMX_METRICS_INBOUND, 100);            /* not a worker */
    pmx_metrics_shm_sessions_add(m, PMX_SHM_SLOTS, PMX_METRICS_INBOUND, 100); /* out of range */
    assert_int_equal(pmx_metrics_shm_sessions(m, PMX_METRICS_INBOUND), 3);
    assert_int_equal(pmx_metrics_shm_sessions(m, PMX_METRICS_OUTBOUND), 4);
    /* The supervisor reaped worker 5: its sessions are gone. */
    pmx_metrics_shm_slot_reset(m, 5);
    assert_int_equal(pmx_metrics_shm_sessions(m, PMX_METRICS_INBOUND), 2);
    assert_int_equal(pmx_metrics_shm_sessions(m, PMX_METRICS_OUTBOUND), 0);
    /* A worker that decremented once too often does not make the sum negative. */
    pmx_metrics_shm_sessions_add(m, 3, PMX_METRICS_INBOUND, -1);
    assert_int_equal(pmx_metrics_shm_sessions(m, PMX_METRICS_INBOUND), 2);
    pmx_metrics_shm_destroy(m);
}

static void test_api_without_region_is_a_noop(void **state)
{
    (void)state;
    pmx_metrics_shm_attach(NULL, -1);
    pmx_metrics_count_recipients("ws_a", "sent", 1);
    pmx_metrics_observe_dkim(0.1);
    pmx_metrics_sessions_add(PMX_METRICS_INBOUND, 1);

    pmx_metrics_shm_t *m = pmx_metrics_shm_create();
    pmx_metrics_shm_attach(m, 2);
    assert_ptr_equal(pmx_metrics_shm_current(), m);
    assert_int_equal(pmx_metrics_shm_current_slot(), 2);
    pmx_metrics_count_recipients("ws_a", "sent", 2);
    pmx_metrics_count_recipients("ws_a", "rejected", 1);
    pmx_metrics_count_recipients("ws_a", "delivered", 5);   /* not a status: ignored */
    pmx_metrics_sessions_add(PMX_METRICS_INBOUND, 1);
    pmx_metrics_sessions_set(PMX_METRICS_OUTBOUND, 3);
    assert_int_equal(rcpt_value(m, "ws_a", PMX_METRICS_SENT), 2);
    assert_int_equal(rcpt_value(m, "ws_a", PMX_METRICS_REJECTED), 1);
    assert_int_equal(atomic_load(&m->sessions[2][PMX_METRICS_INBOUND]), 1);
    assert_int_equal(atomic_load(&m->sessions[2][PMX_METRICS_OUTBOUND]), 3);
    pmx_metrics_shm_destroy(m);   /* detaches */
    assert_null(pmx_metrics_shm_current());
}

static void test_render_format(void **state)
{
    (void)state;
    pmx_metrics_shm_t *m = pmx_metrics_shm_create();
    pmx_shm_t *shm = pmx_shm_create();
    pmx_shm_count_restart(shm);
    pmx_shm_count_restart(shm);
    pmx_metrics_shm_add_recipients(m, "ws_b", PMX_METRICS_SENT, 3);
    pmx_metrics_shm_add_recipients(m, "ws_b", PMX_METRICS_SUPPRESSED, 1);
    pmx_metrics_shm_add(m, "ws_b", PMX_METRICS_FAM_SUPPRESSED, 0, 1);   /* hard_bounce */
    pmx_metrics_shm_add(m, "ws_a", PMX_METRICS_FAM_BOUNCES, 3, 2);      /* mailbox_full */
    pmx_metrics_shm_add(m, "ws_a", PMX_METRICS_FAM_FEEDBACK, 2, 1);     /* complaint */
    const char *ids[] = { "ws_a", "ws_b" };
    uint64_t depths[] = { 7, 0 };
    pmx_metrics_shm_store_depths(m, ids, depths, 2);
    pmx_metrics_shm_sessions_add(m, 0, PMX_METRICS_INBOUND, 1);
    pmx_metrics_shm_sessions_set(m, 1, PMX_METRICS_OUTBOUND, 2);
    pmx_metrics_shm_observe_dkim(m, 0.0001);   /* on a bound: counts in that bucket */
    pmx_metrics_shm_observe_dkim(m, 0.003);
    pmx_metrics_shm_observe_dkim(m, 2.5);      /* +Inf only */
    pmx_metrics_shm_count_memory_refusal(m);
    pmx_metrics_shm_count_memory_refusal(m);
    pmx_metrics_shm_count_memory_refusal(NULL);  /* no region: nothing */

    pmx_buf_t b;
    pmx_buf_init(&b);
    pmx_metrics_render_shm(m, shm, &b);
    const char *want =
        "# HELP postmux_recipients_total Recipients that reached a status, by workspace "
        "(_other: did not fit the table).\n"
        "# TYPE postmux_recipients_total counter\n"
        "postmux_recipients_total{workspace=\"ws_b\",status=\"queued\"} 0\n"
        "postmux_recipients_total{workspace=\"ws_b\",status=\"sent\"} 3\n"
        "postmux_recipients_total{workspace=\"ws_b\",status=\"deferred\"} 0\n"
        "postmux_recipients_total{workspace=\"ws_b\",status=\"bounced\"} 0\n"
        "postmux_recipients_total{workspace=\"ws_b\",status=\"rejected\"} 0\n"
        "postmux_recipients_total{workspace=\"ws_b\",status=\"suppressed\"} 1\n"
        "postmux_recipients_total{workspace=\"ws_a\",status=\"queued\"} 0\n"
        "postmux_recipients_total{workspace=\"ws_a\",status=\"sent\"} 0\n"
        "postmux_recipients_total{workspace=\"ws_a\",status=\"deferred\"} 0\n"
        "postmux_recipients_total{workspace=\"ws_a\",status=\"bounced\"} 0\n"
        "postmux_recipients_total{workspace=\"ws_a\",status=\"rejected\"} 0\n"
        "postmux_recipients_total{workspace=\"ws_a\",status=\"suppressed\"} 0\n"
        "# HELP postmux_suppressed_total Recipients not mailed: on the suppression list (by its "
        "reason), or test mode.\n"
        "# TYPE postmux_suppressed_total counter\n"
        "postmux_suppressed_total{workspace=\"ws_b\",reason=\"hard_bounce\"} 1\n"
        "# HELP postmux_bounces_total Recipients bounced, by bounce class.\n"
        "# TYPE postmux_bounces_total counter\n"
        "postmux_bounces_total{workspace=\"ws_a\",class=\"mailbox_full\"} 2\n"
        "# HELP postmux_feedback_total Messages accepted by the inbound listener, by kind (per "
        "envelope recipient).\n"
        "# TYPE postmux_feedback_total counter\n"
        "postmux_feedback_total{workspace=\"ws_a\",kind=\"complaint\"} 1\n"
        "# HELP postmux_queue_depth Jobs in the workspace's stream {prefix}:{ws}:jobs (XLEN), "
        "refreshed every 5 s.\n"
        "# TYPE postmux_queue_depth gauge\n"
        "postmux_queue_depth{workspace=\"ws_a\"} 7\n"
        "postmux_queue_depth{workspace=\"ws_b\"} 0\n"
        "# HELP postmux_smtp_sessions Open SMTP sessions: outbound to the relay, inbound on "
        "submission and the [inbound] listener.\n"
        "# TYPE postmux_smtp_sessions gauge\n"
        "postmux_smtp_sessions{direction=\"outbound\"} 2\n"
        "postmux_smtp_sessions{direction=\"inbound\"} 1\n"
        "# HELP postmux_dkim_sign_seconds Time to DKIM-sign one message.\n"
        "# TYPE postmux_dkim_sign_seconds histogram\n"
        "postmux_dkim_sign_seconds_bucket{le=\"0.0001\"} 1\n"
        "postmux_dkim_sign_seconds_bucket{le=\"0.00025\"} 1\n"
        "postmux_dkim_sign_seconds_bucket{le=\"0.0005\"} 1\n"
        "postmux_dkim_sign_seconds_bucket{le=\"0.001\"} 1\n"
        "postmux_dkim_sign_seconds_bucket{le=\"0.0025\"} 1\n"
        "postmux_dkim_sign_seconds_bucket{le=\"0.005\"} 2\n"
        "postmux_dkim_sign_seconds_bucket{le=\"0.01\"} 2\n"
        "postmux_dkim_sign_seconds_bucket{le=\"0.025\"} 2\n"
        "postmux_dkim_sign_seconds_bucket{le=\"0.05\"} 2\n"
        "postmux_dkim_sign_seconds_bucket{le=\"0.1\"} 2\n"
        "postmux_dkim_sign_seconds_bucket{le=\"0.25\"} 2\n"
        "postmux_dkim_sign_seconds_bucket{le=\"0.5\"} 2\n"
        "postmux_dkim_sign_seconds_bucket{le=\"1\"} 2\n"
        "postmux_dkim_sign_seconds_bucket{le=\"+Inf\"} 3\n"
        "postmux_dkim_sign_seconds_sum 2.503100000\n"
        "postmux_dkim_sign_seconds_count 3\n"
        "# HELP postmux_submission_memory_refusals_total Submission messages answered 452 4.3.1: "
        "a worker's [submission] memory_budget was full.\n"
        "# TYPE postmux_submission_memory_refusals_total counter\n"
        "postmux_submission_memory_refusals_total 2\n"
        "# HELP postmux_worker_restarts_total Workers that died unexpectedly and were replaced "
        "by postmuxd.\n"
        "# TYPE postmux_worker_restarts_total counter\n"
        "postmux_worker_restarts_total 2\n";
    assert_string_equal(pmx_buf_cstr(&b), want);
    pmx_buf_free(&b);

    /* An empty region still renders every family (and the histogram's zeros). */
    pmx_metrics_shm_t *empty = pmx_metrics_shm_create();
    pmx_buf_init(&b);
    pmx_metrics_render_shm(empty, NULL, &b);
    const char *out = pmx_buf_cstr(&b);
    assert_non_null(strstr(out, "# TYPE postmux_recipients_total counter\n# HELP postmux_suppressed_total"));
    assert_non_null(strstr(out, "postmux_dkim_sign_seconds_bucket{le=\"+Inf\"} 0\n"));
    assert_non_null(strstr(out, "postmux_dkim_sign_seconds_sum 0.000000000\n"));
    assert_non_null(strstr(out, "postmux_worker_restarts_total 0\n"));
    pmx_buf_free(&b);
    pmx_metrics_shm_destroy(empty);
    pmx_metrics_shm_destroy(m);
    pmx_shm_destroy(shm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_insert_and_read),
        cmocka_unit_test(test_status_names),
        cmocka_unit_test(test_forked_writers_add_up_exactly),
        cmocka_unit_test(test_full_table_goes_to_other),
        cmocka_unit_test(test_dead_claimer_is_skipped),
        cmocka_unit_test(test_depth_generations),
        cmocka_unit_test(test_session_gauges),
        cmocka_unit_test(test_api_without_region_is_a_noop),
        cmocka_unit_test(test_render_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
