/*
 * queue_probe: runs one queue consumer (queue/consumer.h) on a libuv loop
 * against the Redis given on the command line, "processes" each job with a
 * chosen outcome and prints what it saw, one line per event, for
 * tests/integration/test_queue.sh.
 *
 *   queue_probe --redis ADDR --ws ws_a,ws_b [options]
 *
 * Outcome per job: the job's own field `probe` if it has one, else --mode:
 *   ack              ack (after --delay ms)
 *   defer:MS[:N]     defer by MS ms while attempt <= N (default 1), then ack
 *   crash[:N]        exit(42) at once, without ack, while deliveries <= N
 *                    (no N: always)
 *   hang             never finish (released at exit: stays pending)
 *   release[:N]      give it back without an outcome, while deliveries <= N
 *                    (no N: always), then ack
 * Jobs of another kind than ok (poison, duplicate, malformed,
 * unknown_workspace) are always acked, as the pipeline does after recording
 * the rejection.
 *
 * Lines:  job t=MS ws= entry= kind= deliveries= attempt= msg= first= batch=
 *             flags= fields=NAME=VALUE&... [reason="..."]
 *         settled t=MS how=ack|defer status=N ws= entry=
 *         redis up|down t=MS
 *         summary acked_distinct=N ... (at exit)
 * --shared-conn reads over the command connection (no reader of its own).
 * --pause WS:MS leaves WS out of reads for the first MS ms
 * (pmx_queue_consumer_pause_until); --later LIST@MS replaces the set of
 * workspaces with LIST at MS ms.
 * Stopping drains first (pmx_queue_consumer_drain: what the read in progress
 * returns is still processed), then closes; --no-drain closes at once.
 * Exits 0 after --until N distinct entries were acked (confirmed by Redis),
 * after --run MS, or on SIGTERM/SIGINT; 42 on a crash; 2 on bad usage.
 */
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "lib/encode.h"
#include "lib/log.h"
#include "lib/mem.h"
#include "queue/consumer.h"
#include "queue/redis_conn.h"

typedef struct probe probe_t;

/* A job waiting for its --delay before being finished. */
typedef struct pending {
    uv_timer_t       timer;
    probe_t         *p;
    pmx_queue_job_t *job;
    int              action;   /* A_ACK, A_DEFER, A_RELEASE */
    uint64_t         defer_ms;
    struct pending  *prev, *next;
} pending_t;

enum { A_ACK = 1, A_DEFER, A_RELEASE };

/* Distinct "ws entry" strings, for --until. */
typedef struct seen {
    struct seen *next;
    char         key[];
} seen_t;

#define SEEN_BUCKETS 65536

struct probe {
    uv_loop_t            *loop;
    pmx_redis_conn_t     *rc;
    pmx_queue_consumer_t *c;
    uv_timer_t            run_timer;
    uv_timer_t            later_timer;
    char                 *later;        /* --later LIST@MS: the set to switch to */
    uv_signal_t           sigterm, sigint;
    uint64_t              t0;
    const char           *mode;
    unsigned              delay_ms;
    unsigned long         until;
    bool                  quiet;
    size_t                max_held_bytes;  /* the most entry bytes held at a hand-over */
    unsigned              max_held;        /* the most jobs held then */
    bool                  stopping;
    bool                  no_drain;
    pending_t            *pending;
    pmx_queue_job_t     **hung;
    size_t                nhung, caphung;
    seen_t               *seen[SEEN_BUCKETS];
    unsigned long         acked_distinct, acked_total, deferred, jobs;
};

static uint64_t t_ms(probe_t *p)
{
    return uv_now(p->loop) - p->t0;
}

/* Field bytes for a line: [A-Za-z0-9@._:,<> -] as is, the rest %XX. */
static void put_escaped(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            strchr("@._:,<>-", ch))
            putchar(ch);
        else
            printf("%%%02X", ch);
    }
}

static const char *field(const pmx_queue_job_t *job, const char *name)
{
    for (size_t i = 0; i < job->nfields; i++)
        if (strcmp(job->fields[i].name, name) == 0) return job->fields[i].value;
    return NULL;
}

static bool seen_add(probe_t *p, const char *ws, const char *id)
{
    char key[300];
    snprintf(key, sizeof key, "%s %s", ws, id);
    uint32_t h = 2166136261u;
    for (const char *s = key; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    seen_t **b = &p->seen[h % SEEN_BUCKETS];
    for (seen_t *e = *b; e; e = e->next)
        if (strcmp(e->key, key) == 0) return false;
    seen_t *e = pmx_xmalloc(sizeof *e + strlen(key) + 1);
    strcpy(e->key, key);
    e->next = *b;
    *b = e;
    return true;
}

static void probe_stop(probe_t *p);

static void on_settled(pmx_queue_consumer_t *c, const pmx_queue_job_t *job,
                       pmx_queue_done_t how, int status, void *arg)
{
    (void)c;
    probe_t *p = arg;
    if (!p->quiet || status != 0)
        printf("settled t=%" PRIu64 " how=%s status=%d ws=%s entry=%s\n", t_ms(p),
               how == PMX_QUEUE_DONE_DEFER ? "defer" : "ack", status, job->ws, job->entry_id);
    if (status != 0) return;
    if (how == PMX_QUEUE_DONE_DEFER) {
        p->deferred++;
        return;
    }
    p->acked_total++;
    if (seen_add(p, job->ws, job->entry_id)) p->acked_distinct++;
    if (p->until && p->acked_distinct >= p->until) probe_stop(p);
}

static void pending_unlink(probe_t *p, pending_t *d)
{
    if (d->prev) d->prev->next = d->next;
    else p->pending = d->next;
    if (d->next) d->next->prev = d->prev;
}

static void pending_closed(uv_handle_t *h)
{
    free(h->data);
}

static void finish_job(probe_t *p, pmx_queue_job_t *job, int action, uint64_t defer_ms)
{
    if (action == A_ACK) {
        pmx_queue_job_ack(job);
    } else if (action == A_RELEASE) {
        pmx_queue_job_release(job);
    } else {
        char msg[PMX_QUEUE_MSG_ID_LEN + 1];
        if (job->msg_id[0]) snprintf(msg, sizeof msg, "%s", job->msg_id);
        else if (pmx_random_id("msg_", msg, sizeof msg) < 0) pmx_fatal("no random bytes");
        if (pmx_queue_job_defer(job, defer_ms, msg) < 0) {
            printf("defer-refused entry=%s\n", job->entry_id);
            pmx_queue_job_ack(job);
        }
    }
    (void)p;
}

static void pending_fire(uv_timer_t *t)
{
    pending_t *d = t->data;
    probe_t *p = d->p;
    pending_unlink(p, d);
    finish_job(p, d->job, d->action, d->defer_ms);
    uv_close((uv_handle_t *)&d->timer, pending_closed);
}

static void schedule(probe_t *p, pmx_queue_job_t *job, int action, uint64_t defer_ms)
{
    if (p->delay_ms == 0) {
        finish_job(p, job, action, defer_ms);
        return;
    }
    pending_t *d = pmx_xcalloc(1, sizeof *d);
    d->p = p;
    d->job = job;
    d->action = action;
    d->defer_ms = defer_ms;
    uv_timer_init(p->loop, &d->timer);
    d->timer.data = d;
    d->next = p->pending;
    if (p->pending) p->pending->prev = d;
    p->pending = d;
    uv_timer_start(&d->timer, pending_fire, p->delay_ms, 0);
}

static void print_job(probe_t *p, const pmx_queue_job_t *job)
{
    printf("job t=%" PRIu64 " ws=%s entry=%s kind=%s deliveries=%u attempt=%u msg=%s first=%" PRIu64
           " batch=%" PRIu64 " flags=%s%s%s fields=",
           t_ms(p), job->ws, job->entry_id, pmx_queue_job_kind_name(job->kind), job->deliveries,
           job->attempt, job->msg_id[0] ? job->msg_id : "-", job->first_ms, job->batch,
           job->flags & PMX_QUEUE_JOB_RETRIED ? "retried," : "",
           job->flags & PMX_QUEUE_JOB_REDELIVERED ? "redelivered," : "",
           job->flags ? "" : "-");
    for (size_t i = 0; i < job->nfields; i++) {
        if (i) putchar('&');
        put_escaped(job->fields[i].name, job->fields[i].name_len);
        putchar('=');
        size_t n = job->fields[i].value_len;
        put_escaped(job->fields[i].value, n > 200 ? 200 : n);
    }
    if (job->kind != PMX_QUEUE_JOB_OK) printf(" reason=\"%s\"", job->reason);
    putchar('\n');
}

static void on_job(pmx_queue_consumer_t *c, pmx_queue_job_t *job, void *arg)
{
    probe_t *p = arg;
    p->jobs++;
    pmx_queue_stats_t st;
    pmx_queue_consumer_stats(c, &st);
    if (st.held_bytes > p->max_held_bytes) p->max_held_bytes = st.held_bytes;
    if (st.held > p->max_held) p->max_held = st.held;
    if (!p->quiet || job->kind != PMX_QUEUE_JOB_OK) print_job(p, job);
    if (job->kind != PMX_QUEUE_JOB_OK) {
        schedule(p, job, A_ACK, 0);
        return;
    }
    const char *mode = field(job, "probe");
    if (!mode) mode = p->mode;
    unsigned long a = 0, b = 0;
    if (strcmp(mode, "ack") == 0) {
        schedule(p, job, A_ACK, 0);
    } else if (strncmp(mode, "release", 7) == 0) {
        if (mode[7] == ':') a = strtoul(mode + 8, NULL, 10);
        schedule(p, job, a == 0 || job->deliveries <= a ? A_RELEASE : A_ACK, 0);
    } else if (strcmp(mode, "hang") == 0) {
        if (p->nhung == p->caphung) {
            p->caphung = p->caphung ? 2 * p->caphung : 16;
            p->hung = pmx_xrealloc(p->hung, p->caphung * sizeof *p->hung);
        }
        p->hung[p->nhung++] = job;
    } else if (strncmp(mode, "crash", 5) == 0) {
        if (mode[5] == ':') a = strtoul(mode + 6, NULL, 10);
        if (a == 0 || job->deliveries <= a) {
            printf("crash t=%" PRIu64 " ws=%s entry=%s\n", t_ms(p), job->ws, job->entry_id);
            fflush(stdout);
            _exit(42);
        }
        schedule(p, job, A_ACK, 0);
    } else if (sscanf(mode, "defer:%lu:%lu", &a, &b) >= 1) {
        if (b == 0) b = 1;
        if (job->attempt <= b) schedule(p, job, A_DEFER, a);
        else schedule(p, job, A_ACK, 0);
    } else {
        printf("bad-mode entry=%s mode=%s\n", job->entry_id, mode);
        schedule(p, job, A_ACK, 0);
    }
}

static void on_redis(pmx_redis_conn_t *rc, bool up, void *arg)
{
    (void)rc;
    probe_t *p = arg;
    printf("redis %s t=%" PRIu64 "\n", up ? "up" : "down", t_ms(p));
    if (p->c) pmx_queue_consumer_redis_changed(p->c, up);
}

static void seen_free(probe_t *p)
{
    for (size_t i = 0; i < SEEN_BUCKETS; i++)
        while (p->seen[i]) {
            seen_t *e = p->seen[i];
            p->seen[i] = e->next;
            free(e);
        }
}

/* Ends the run: the consumer is closed while jobs are still held (hung or
 * waiting for their delay), then those are released: the zombie path. */
static void probe_close(probe_t *p)
{
    pmx_queue_stats_t st;
    pmx_queue_consumer_stats(p->c, &st);
    printf("summary acked_distinct=%lu acked_total=%lu deferred=%lu jobs=%lu reads=%" PRIu64
           " empty_reads=%" PRIu64 " delivered=%" PRIu64 " reclaimed=%" PRIu64
           " poison=%" PRIu64 " duplicates=%" PRIu64 " malformed=%" PRIu64
           " unknown_ws=%" PRIu64 " not_confirmed=%" PRIu64 " retries_moved=%" PRIu64
           " lost=%" PRIu64 " unblocks=%" PRIu64 " held=%u workspaces=%u max_held=%u"
           " max_held_bytes=%zu name=%s\n",
           p->acked_distinct, p->acked_total, p->deferred, p->jobs, st.reads, st.empty_reads,
           st.delivered, st.reclaimed, st.poison, st.duplicates, st.malformed, st.unknown_ws,
           st.not_confirmed, st.retries_moved, st.lost, st.unblocks, st.held, st.workspaces,
           p->max_held, p->max_held_bytes, pmx_queue_consumer_name(p->c));
    fflush(stdout);
    pmx_queue_consumer_close(p->c);
    while (p->pending) {
        pending_t *d = p->pending;
        pending_unlink(p, d);
        pmx_queue_job_release(d->job);
        uv_close((uv_handle_t *)&d->timer, pending_closed);
    }
    for (size_t i = 0; i < p->nhung; i++) pmx_queue_job_release(p->hung[i]);
    p->nhung = 0;
    uv_close((uv_handle_t *)&p->run_timer, NULL);
    uv_close((uv_handle_t *)&p->later_timer, NULL);
    uv_close((uv_handle_t *)&p->sigterm, NULL);
    uv_close((uv_handle_t *)&p->sigint, NULL);
    pmx_redis_conn_close(p->rc);
}

static void drained_cb(pmx_queue_consumer_t *c, void *arg)
{
    (void)c;
    probe_close(arg);
}

/* Stops as a worker does: drain (jobs of the read in progress still come and
 * are processed), then close; with --no-drain, closes at once. */
static void probe_stop(probe_t *p)
{
    if (p->stopping) return;
    p->stopping = true;
    uv_timer_stop(&p->run_timer);
    uv_timer_stop(&p->later_timer);
    if (p->no_drain) {
        probe_close(p);
        return;
    }
    /* Hung jobs are never going to finish: give them back first. */
    for (size_t i = 0; i < p->nhung; i++) pmx_queue_job_release(p->hung[i]);
    p->nhung = 0;
    pmx_queue_consumer_drain(p->c, drained_cb, p);
}

/* Replaces the set of workspaces with a comma-separated list. */
static void set_ws_list(probe_t *p, const char *csv)
{
    char *list = pmx_xstrdup(csv);
    const char **ids = pmx_xcalloc(strlen(list) + 1, sizeof *ids);
    size_t n = 0;
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
        ids[n++] = tok;
    int skipped = pmx_queue_consumer_set_workspaces(p->c, ids, n);
    if (skipped) printf("workspaces-skipped n=%d\n", skipped);
    free(ids);
    free(list);
}

static void later_cb(uv_timer_t *t)
{
    probe_t *p = t->data;
    printf("workspaces t=%" PRIu64 " set=%s\n", t_ms(p), p->later);
    set_ws_list(p, p->later);
}

static void run_timer_cb(uv_timer_t *t)
{
    probe_stop(t->data);
}

static void signal_cb(uv_signal_t *s, int sig)
{
    (void)sig;
    probe_stop(s->data);
}

static int usage(void)
{
    fprintf(stderr,
            "usage: queue_probe --redis ADDR [--ws A,B,..] [--mode MODE] [--delay MS]\n"
            "  [--capacity N] [--until N] [--run MS] [--name NAME] [--prefix P]\n"
            "  [--reclaim-idle MS] [--reclaim-interval MS] [--refresh MS] [--max-deliveries N]\n"
            "  [--discover MS] [--block MS] [--retry-poll MS] [--max-entry-bytes N]\n"
            "  [--max-held-bytes N]\n"
            "  [--pause WS:MS] [--later LIST@MS] [--quiet] [--shared-conn] [--no-drain]\n"
            "  [--log LEVEL]\n");
    return 2;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "redis", required_argument, NULL, 'r' },
        { "ws", required_argument, NULL, 'w' },
        { "mode", required_argument, NULL, 'm' },
        { "delay", required_argument, NULL, 'd' },
        { "capacity", required_argument, NULL, 'c' },
        { "until", required_argument, NULL, 'u' },
        { "run", required_argument, NULL, 't' },
        { "name", required_argument, NULL, 'n' },
        { "prefix", required_argument, NULL, 'p' },
        { "reclaim-idle", required_argument, NULL, 1 },
        { "reclaim-interval", required_argument, NULL, 2 },
        { "refresh", required_argument, NULL, 3 },
        { "max-deliveries", required_argument, NULL, 4 },
        { "discover", required_argument, NULL, 5 },
        { "block", required_argument, NULL, 6 },
        { "retry-poll", required_argument, NULL, 7 },
        { "max-entry-bytes", required_argument, NULL, 8 },
        { "max-held-bytes", required_argument, NULL, 13 },
        { "quiet", no_argument, NULL, 'q' },
        { "shared-conn", no_argument, NULL, 9 },
        { "no-drain", no_argument, NULL, 10 },
        { "pause", required_argument, NULL, 11 },
        { "later", required_argument, NULL, 12 },
        { "log", required_argument, NULL, 'l' },
        { NULL, 0, NULL, 0 },
    };
    pmx_queue_consumer_opts_t o;
    pmx_queue_consumer_opts_init(&o);
    const char *addr = NULL, *wslist = "";
    bool shared = false;
    char *pauses[8];
    size_t npause = 0;
    unsigned long run_ms = 0;
    static probe_t probe;
    probe_t *p = &probe;
    p->mode = "ack";
    pmx_log_set_level(PMX_LOG_WARN);
    int ch;
    while ((ch = getopt_long(argc, argv, "r:w:m:d:c:u:t:n:p:ql:", longopts, NULL)) != -1) {
        switch (ch) {
        case 'r': addr = optarg; break;
        case 'w': wslist = optarg; break;
        case 'm': p->mode = optarg; break;
        case 'd': p->delay_ms = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'c': o.capacity = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'u': p->until = strtoul(optarg, NULL, 10); break;
        case 't': run_ms = strtoul(optarg, NULL, 10); break;
        case 'n': o.name = optarg; break;
        case 'p': o.prefix = optarg; break;
        case 1: o.reclaim_idle_ms = (unsigned)strtoul(optarg, NULL, 10); break;
        case 2: o.reclaim_interval_ms = (unsigned)strtoul(optarg, NULL, 10); break;
        case 3: o.refresh_after_ms = (unsigned)strtoul(optarg, NULL, 10); break;
        case 4: o.max_deliveries = (unsigned)strtoul(optarg, NULL, 10); break;
        case 5: o.discover_interval_ms = (unsigned)strtoul(optarg, NULL, 10); break;
        case 6: o.block_ms = (unsigned)strtoul(optarg, NULL, 10); break;
        case 7: o.retry_poll_ms = (unsigned)strtoul(optarg, NULL, 10);
                o.retry_idle_poll_ms = o.retry_poll_ms; break;
        case 8: o.limits.max_bytes = strtoul(optarg, NULL, 10); break;
        case 13: o.max_held_bytes = strtoul(optarg, NULL, 10); break;
        case 'q': p->quiet = true; break;
        case 9: shared = true; break;
        case 10: p->no_drain = true; break;
        case 11:
            if (npause < 8) pauses[npause++] = optarg;
            break;
        case 12: p->later = optarg; break;
        case 'l': {
            pmx_log_level_t lv;
            if (pmx_log_parse_level(optarg, &lv) < 0) return usage();
            pmx_log_set_level(lv);
            break;
        }
        default: return usage();
        }
    }
    if (!addr || optind != argc) return usage();
    setvbuf(stdout, NULL, _IOLBF, 0);
    pmx_log_set_tag("queue_probe");

    p->loop = uv_default_loop();
    p->t0 = uv_now(p->loop);
    char err[256];
    p->rc = pmx_redis_conn_new(p->loop, addr, NULL, 0, err, sizeof err);
    if (!p->rc) {
        fprintf(stderr, "queue_probe: %s\n", err);
        return 2;
    }
    if (!shared) o.read_address = addr;
    o.job = on_job;
    o.settled = on_settled;
    o.arg = p;
    p->c = pmx_queue_consumer_new(p->loop, p->rc, &o, err, sizeof err);
    if (!p->c) {
        fprintf(stderr, "queue_probe: %s\n", err);
        pmx_redis_conn_close(p->rc);
        uv_run(p->loop, UV_RUN_DEFAULT);
        return 2;
    }
    pmx_redis_conn_set_state_cb(p->rc, on_redis, p);

    set_ws_list(p, wslist);
    for (size_t i = 0; i < npause; i++) {
        char *at = strrchr(pauses[i], ':');
        if (!at) return usage();
        *at = '\0';
        pmx_queue_consumer_pause_until(p->c, pauses[i], p->t0 + strtoull(at + 1, NULL, 10));
    }
    uv_timer_init(p->loop, &p->later_timer);
    p->later_timer.data = p;
    if (p->later) {
        char *at = strrchr(p->later, '@');
        if (!at) return usage();
        *at = '\0';
        uv_timer_start(&p->later_timer, later_cb, strtoull(at + 1, NULL, 10), 0);
    }

    uv_timer_init(p->loop, &p->run_timer);
    p->run_timer.data = p;
    if (run_ms) uv_timer_start(&p->run_timer, run_timer_cb, run_ms, 0);
    uv_signal_init(p->loop, &p->sigterm);
    uv_signal_init(p->loop, &p->sigint);
    p->sigterm.data = p->sigint.data = p;
    uv_signal_start(&p->sigterm, signal_cb, SIGTERM);
    uv_signal_start(&p->sigint, signal_cb, SIGINT);

    pmx_redis_conn_start(p->rc);
    pmx_queue_consumer_start(p->c);
    uv_run(p->loop, UV_RUN_DEFAULT);

    free(p->hung);
    seen_free(p);
    int rc = uv_loop_close(p->loop);
    if (rc != 0) {
        fprintf(stderr, "queue_probe: loop not empty at exit: %s\n", uv_strerror(rc));
        return 1;
    }
    return 0;
}
