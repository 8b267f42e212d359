/*
 * ratelimit_probe: drives queue/ratelimit.h on a libuv loop against the
 * Redis given on the command line, for tests/integration/test_ratelimit.sh
 * and tests/bench/ratelimit.sh. Two modes:
 *
 * Steps, run in order (a LIMITS is WS:RATE:BURST:QUOTA:N, RATE 0 = unlimited,
 * QUOTA 0 = none):
 *   take:LIMITS     one request; prints
 *                   "take ws= n= status= allowed= wait_ms= reason= never= used= now_us="
 *   wait:LIMITS     asks, sleeps wait_ms when refused, asks again until allowed
 *                   (gives up after --max-wait ms); prints the last answer as
 *                   "wait ... tries= waited_ms=" (waited_ms: client clock)
 *   sleep:MS
 *   ymd:FROM:TO:STEP  runs the script's date function (pmx__ratelimit_lua_ymd)
 *                   in Redis for days FROM..TO since the epoch and compares
 *                   each with gmtime(); prints "ymd checked= bad= first_bad="
 *   cancel:LIMITS   asks, cancels at once, waits 300 ms; prints
 *                   "cancel cancelled= called= pending="
 *   free:LIMITS     asks, frees the limiter at once (a new one is made for the
 *                   steps after), waits 300 ms; prints "free called="
 *
 * Hammer (--hammer FILE, lines "WS RATE BURST QUOTA N"): for --run ms, --conc
 * loops per workspace each ask for N recipients, ask again at once when
 * allowed, and sleep wait_ms when refused (so nothing spins). Then it stops
 * asking, waits for the answers in flight, and prints one line per
 * workspace "ws ws= rate= burst= quota= n= rcpt= grants= refused_rate=
 * refused_quota= errors= first_us= last_us=" and "summary requests= grants=
 * errors= elapsed_ms= cpu_ms= lat_mean_us= lat_max_us=". --grants also
 * prints "grant ws= n= now_us=" for every allowed request (Redis's clock).
 *
 * Exits 0 when done, 1 when Redis never came up, 2 on bad usage.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <uv.h>

#include "lib/log.h"
#include "lib/mem.h"
#include "queue/ratelimit.h"
#include "queue/redis_conn.h"

typedef struct {
    char     ws[130];
    double   rate;
    int      burst;
    int64_t  quota;
    unsigned n;
} limits_t;

typedef struct probe probe_t;

/* One workspace of a hammer run. */
typedef struct {
    limits_t l;
    uint64_t rcpt, grants, refused_rate, refused_quota, errors;
    int64_t  first_us, last_us;
} hws_t;

/* One asking loop of a hammer run. */
typedef struct {
    probe_t   *p;
    hws_t     *w;
    uv_timer_t timer;
    uint64_t   sent_ns;
    bool       busy;
} hloop_t;

struct probe {
    uv_loop_t        *loop;
    pmx_redis_conn_t *rc;
    pmx_ratelimit_t  *rl;
    const char       *prefix;
    uv_timer_t        timer;       /* steps: sleeps; hammer: the run's end */
    uv_timer_t        up_timer;    /* gives up when Redis does not come up */
    bool              started;
    int               rc_exit;
    /* steps */
    char            **steps;
    int               nsteps, step;
    limits_t          cur;
    unsigned          tries;
    uint64_t          step_t0;
    uint64_t          max_wait_ms;
    int               called;
    long long         ymd_from, ymd_step;
    /* hammer */
    hws_t            *ws;
    size_t            nws;
    hloop_t          *loops;
    size_t            nloops;
    unsigned          conc;
    uint64_t          run_ms;
    bool              stopping;
    bool              print_grants;
    uint64_t          requests, lat_sum_ns, lat_max_ns;
    uint64_t          t0_ms;
};

static int usage(void)
{
    fprintf(stderr,
            "usage: ratelimit_probe --redis ADDR [--prefix P] [--max-wait MS] STEP...\n"
            "       ratelimit_probe --redis ADDR --hammer FILE --run MS [--conc N] [--grants]\n");
    return 2;
}

static int parse_limits(const char *s, limits_t *l)
{
    char ws[130];
    double rate;
    int burst;
    long long quota;
    unsigned n;
    if (sscanf(s, "%129[^:]:%lf:%d:%lld:%u", ws, &rate, &burst, &quota, &n) != 5) return -1;
    snprintf(l->ws, sizeof l->ws, "%s", ws);
    l->rate = rate;
    l->burst = burst;
    l->quota = quota;
    l->n = n;
    return 0;
}

static void print_res(const char *what, const limits_t *l, const pmx_ratelimit_result_t *r)
{
    printf("%s ws=%s n=%u status=%d allowed=%d wait_ms=%" PRIu64 " reason=%s never=%d"
           " used=%" PRId64 " now_us=%" PRId64, what, l->ws, l->n, r->status, r->allowed,
           r->wait_ms, r->reason == PMX_RATELIMIT_OK ? "none" : pmx_ratelimit_reason_name(r->reason),
           r->never, r->quota_used, r->now_us);
}

static void shutdown_all(probe_t *p)
{
    uv_close((uv_handle_t *)&p->timer, NULL);
    uv_close((uv_handle_t *)&p->up_timer, NULL);
    for (size_t i = 0; i < p->nloops; i++) uv_close((uv_handle_t *)&p->loops[i].timer, NULL);
    if (p->rl) pmx_ratelimit_free(p->rl);
    p->rl = NULL;
    pmx_redis_conn_close(p->rc);
}

/* ------------------------------------------------------------------ steps */

static void next_step(probe_t *p);

static int take_cur(probe_t *p, pmx_ratelimit_cb cb)
{
    int rc = pmx_ratelimit_take(p->rl, p->cur.ws, p->cur.rate, p->cur.burst, p->cur.quota,
                                p->cur.n, cb, p);
    if (rc < 0) {
        printf("error ws=%s take=%d\n", p->cur.ws, rc);
        p->rc_exit = 2;
        shutdown_all(p);
    }
    return rc;
}

static void step_sleep_done(uv_timer_t *t)
{
    next_step(t->data);
}

static void take_cb(const pmx_ratelimit_result_t *r, void *arg)
{
    probe_t *p = arg;
    print_res("take", &p->cur, r);
    printf("\n");
    next_step(p);
}

static void wait_retry(uv_timer_t *t);

static void wait_cb(const pmx_ratelimit_result_t *r, void *arg)
{
    probe_t *p = arg;
    uint64_t waited = uv_now(p->loop) - p->step_t0;
    p->tries++;
    if (r->allowed || waited > p->max_wait_ms) {
        print_res("wait", &p->cur, r);
        printf(" tries=%u waited_ms=%" PRIu64 "\n", p->tries, waited);
        next_step(p);
        return;
    }
    uint64_t ms = r->status < 0 ? 100 : r->wait_ms;
    uv_timer_start(&p->timer, wait_retry, ms, 0);
}

static void wait_retry(uv_timer_t *t)
{
    take_cur(t->data, wait_cb);
}

static void counted_cb(const pmx_ratelimit_result_t *r, void *arg)
{
    (void)r;
    probe_t *p = arg;
    p->called++;
}

static void cancel_done(uv_timer_t *t)
{
    probe_t *p = t->data;
    printf("cancel called=%d pending=%zu\n", p->called, pmx_ratelimit_pending(p->rl));
    next_step(p);
}

static void free_done(uv_timer_t *t)
{
    probe_t *p = t->data;
    printf("free called=%d\n", p->called);
    char err[256];
    p->rl = pmx_ratelimit_new(p->loop, p->rc, p->prefix, err, sizeof err);
    next_step(p);
}

static void ymd_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    probe_t *p = priv;
    redisReply *r = reply;
    long long day = p->ymd_from, checked = 0, bad = 0, first_bad = 0;
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        printf("ymd error=%s\n", r && r->type == REDIS_REPLY_ERROR ? r->str : "no reply");
        p->rc_exit = 1;
        next_step(p);
        return;
    }
    for (size_t i = 0; i < r->elements; i++, day += p->ymd_step) {
        time_t t = (time_t)(day * 86400);
        struct tm tm;
        char want[16];
        gmtime_r(&t, &tm);
        strftime(want, sizeof want, "%Y%m%d", &tm);
        const redisReply *e = r->element[i];
        checked++;
        if (e->type != REDIS_REPLY_STRING || strcmp(e->str, want) != 0) {
            if (!bad) first_bad = day;
            bad++;
        }
    }
    printf("ymd checked=%lld bad=%lld first_bad=%lld\n", checked, bad, first_bad);
    next_step(p);
}

static void ymd_step(probe_t *p, const char *args)
{
    long long to;
    if (sscanf(args, "%lld:%lld:%lld", &p->ymd_from, &to, &p->ymd_step) != 3 ||
        p->ymd_step <= 0 || to < p->ymd_from) {
        fprintf(stderr, "ratelimit_probe: bad ymd step\n");
        p->rc_exit = 2;
        shutdown_all(p);
        return;
    }
    static const char tail[] =
        "local out = {}\n"
        "for d = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]) do\n"
        "  out[#out + 1] = ymd(d)\n"
        "end\n"
        "return out\n";
    size_t n = strlen(pmx__ratelimit_lua_ymd) + sizeof tail;
    char *script = pmx_xmalloc(n);
    snprintf(script, n, "%s%s", pmx__ratelimit_lua_ymd, tail);
    char a[3][24];
    snprintf(a[0], sizeof a[0], "%lld", p->ymd_from);
    snprintf(a[1], sizeof a[1], "%lld", to);
    snprintf(a[2], sizeof a[2], "%lld", p->ymd_step);
    const char *argv[] = { "EVAL", script, "0", a[0], a[1], a[2] };
    int rc = pmx_redis_conn_command_argv(p->rc, ymd_cb, p, 6, argv, NULL);
    free(script);
    if (rc < 0) {
        printf("ymd error=not_up\n");
        p->rc_exit = 1;
        shutdown_all(p);
    }
}

static void next_step(probe_t *p)
{
    if (p->step >= p->nsteps) {
        shutdown_all(p);
        return;
    }
    const char *s = p->steps[p->step++];
    p->tries = 0;
    p->called = 0;
    p->step_t0 = uv_now(p->loop);
    if (strncmp(s, "sleep:", 6) == 0) {
        uv_timer_start(&p->timer, step_sleep_done, strtoull(s + 6, NULL, 10), 0);
        return;
    }
    if (strncmp(s, "ymd:", 4) == 0) {
        ymd_step(p, s + 4);
        return;
    }
    const char *colon = strchr(s, ':');
    if (!colon || parse_limits(colon + 1, &p->cur) < 0) {
        fprintf(stderr, "ratelimit_probe: bad step %s\n", s);
        p->rc_exit = 2;
        shutdown_all(p);
        return;
    }
    size_t verb = (size_t)(colon - s);
    if (verb == 4 && strncmp(s, "take", 4) == 0) {
        take_cur(p, take_cb);
    } else if (verb == 4 && strncmp(s, "wait", 4) == 0) {
        take_cur(p, wait_cb);
    } else if (verb == 6 && strncmp(s, "cancel", 6) == 0) {
        if (take_cur(p, counted_cb) < 0) return;
        printf("cancel cancelled=%zu\n", pmx_ratelimit_cancel(p->rl, p));
        uv_timer_start(&p->timer, cancel_done, 300, 0);
    } else if (verb == 4 && strncmp(s, "free", 4) == 0) {
        if (take_cur(p, counted_cb) < 0) return;
        pmx_ratelimit_free(p->rl);
        p->rl = NULL;
        uv_timer_start(&p->timer, free_done, 300, 0);
    } else {
        fprintf(stderr, "ratelimit_probe: bad step %s\n", s);
        p->rc_exit = 2;
        shutdown_all(p);
    }
}

/* ----------------------------------------------------------------- hammer */

static void hammer_ask(hloop_t *h);

static void hammer_timer(uv_timer_t *t)
{
    hammer_ask(t->data);
}

static void hammer_maybe_done(probe_t *p)
{
    if (!p->stopping || pmx_ratelimit_pending(p->rl) > 0) return;
    uint64_t elapsed = uv_now(p->loop) - p->t0_ms;
    uint64_t grants = 0, errors = 0;
    for (size_t i = 0; i < p->nws; i++) {
        hws_t *w = &p->ws[i];
        printf("ws ws=%s rate=%.6g burst=%d quota=%" PRId64 " n=%u rcpt=%" PRIu64
               " grants=%" PRIu64 " refused_rate=%" PRIu64 " refused_quota=%" PRIu64
               " errors=%" PRIu64 " first_us=%" PRId64 " last_us=%" PRId64 "\n",
               w->l.ws, w->l.rate, w->l.burst, w->l.quota, w->l.n, w->rcpt, w->grants,
               w->refused_rate, w->refused_quota, w->errors, w->first_us, w->last_us);
        grants += w->grants;
        errors += w->errors;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    uint64_t cpu_ms = (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000 +
                      (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000;
    printf("summary requests=%" PRIu64 " grants=%" PRIu64 " errors=%" PRIu64
           " elapsed_ms=%" PRIu64 " cpu_ms=%" PRIu64 " lat_mean_us=%" PRIu64
           " lat_max_us=%" PRIu64 "\n", p->requests, grants, errors, elapsed, cpu_ms,
           p->requests ? p->lat_sum_ns / p->requests / 1000 : 0, p->lat_max_ns / 1000);
    shutdown_all(p);
}

static void hammer_cb(const pmx_ratelimit_result_t *r, void *arg)
{
    hloop_t *h = arg;
    probe_t *p = h->p;
    hws_t *w = h->w;
    h->busy = false;
    uint64_t lat = uv_hrtime() - h->sent_ns;
    p->requests++;
    p->lat_sum_ns += lat;
    if (lat > p->lat_max_ns) p->lat_max_ns = lat;
    uint64_t delay = 0;
    if (r->status < 0) {
        w->errors++;
        delay = 100;
    } else if (r->allowed) {
        w->rcpt += w->l.n;
        w->grants++;
        if (!w->first_us) w->first_us = r->now_us;
        w->last_us = r->now_us;
        if (p->print_grants)
            printf("grant ws=%s n=%u now_us=%" PRId64 "\n", w->l.ws, w->l.n, r->now_us);
    } else {
        if (r->reason == PMX_RATELIMIT_RATE) w->refused_rate++;
        else w->refused_quota++;
        delay = r->wait_ms;
    }
    if (p->stopping) {
        hammer_maybe_done(p);
        return;
    }
    if (delay) uv_timer_start(&h->timer, hammer_timer, delay, 0);
    else hammer_ask(h);
}

static void hammer_ask(hloop_t *h)
{
    probe_t *p = h->p;
    if (p->stopping) return;
    h->sent_ns = uv_hrtime();
    int rc = pmx_ratelimit_take(p->rl, h->w->l.ws, h->w->l.rate, h->w->l.burst, h->w->l.quota,
                                h->w->l.n, hammer_cb, h);
    if (rc < 0) {
        fprintf(stderr, "ratelimit_probe: bad limits for %s\n", h->w->l.ws);
        p->rc_exit = 2;
        p->stopping = true;
        return;
    }
    h->busy = true;
}

static void hammer_stop(uv_timer_t *t)
{
    probe_t *p = t->data;
    p->stopping = true;
    for (size_t i = 0; i < p->nloops; i++) uv_timer_stop(&p->loops[i].timer);
    hammer_maybe_done(p);
}

static int hammer_load(probe_t *p, const char *file)
{
    FILE *f = fopen(file, "r");
    if (!f) return -1;
    char line[512];
    size_t cap = 0;
    while (fgets(line, sizeof line, f)) {
        limits_t l;
        long long quota;
        if (line[0] == '#' || line[0] == '\n') continue;
        if (sscanf(line, "%129s %lf %d %lld %u", l.ws, &l.rate, &l.burst, &quota, &l.n) != 5) {
            fclose(f);
            return -1;
        }
        l.quota = quota;
        if (p->nws == cap) {
            cap = cap ? cap * 2 : 16;
            p->ws = pmx_xrealloc(p->ws, cap * sizeof *p->ws);
        }
        memset(&p->ws[p->nws], 0, sizeof p->ws[p->nws]);
        p->ws[p->nws++].l = l;
    }
    fclose(f);
    return p->nws ? 0 : -1;
}

static void hammer_start(probe_t *p)
{
    p->nloops = p->nws * p->conc;
    p->loops = pmx_xcalloc(p->nloops, sizeof *p->loops);
    p->t0_ms = uv_now(p->loop);
    for (size_t i = 0; i < p->nloops; i++) {
        hloop_t *h = &p->loops[i];
        h->p = p;
        h->w = &p->ws[i / p->conc];
        uv_timer_init(p->loop, &h->timer);
        h->timer.data = h;
    }
    uv_timer_start(&p->timer, hammer_stop, p->run_ms, 0);
    for (size_t i = 0; i < p->nloops; i++) hammer_ask(&p->loops[i]);
}

/* ------------------------------------------------------------------ main */

static void on_redis(pmx_redis_conn_t *rc, bool up, void *arg)
{
    (void)rc;
    probe_t *p = arg;
    if (!up || p->started) return;
    p->started = true;
    uv_timer_stop(&p->up_timer);
    if (p->ws) hammer_start(p);
    else next_step(p);
}

static void up_timeout(uv_timer_t *t)
{
    probe_t *p = t->data;
    fprintf(stderr, "ratelimit_probe: Redis did not come up\n");
    p->rc_exit = 1;
    shutdown_all(p);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "redis", required_argument, NULL, 'r' },
        { "prefix", required_argument, NULL, 'p' },
        { "max-wait", required_argument, NULL, 'm' },
        { "hammer", required_argument, NULL, 'h' },
        { "run", required_argument, NULL, 't' },
        { "conc", required_argument, NULL, 'c' },
        { "grants", no_argument, NULL, 'g' },
        { NULL, 0, NULL, 0 },
    };
    static probe_t probe;
    probe_t *p = &probe;
    const char *addr = NULL, *hammer = NULL;
    p->prefix = "pmx";
    p->max_wait_ms = 30000;
    p->conc = 1;
    pmx_log_set_level(PMX_LOG_WARN);
    int ch;
    while ((ch = getopt_long(argc, argv, "r:p:m:h:t:c:g", longopts, NULL)) != -1) {
        switch (ch) {
        case 'r': addr = optarg; break;
        case 'p': p->prefix = optarg; break;
        case 'm': p->max_wait_ms = strtoull(optarg, NULL, 10); break;
        case 'h': hammer = optarg; break;
        case 't': p->run_ms = strtoull(optarg, NULL, 10); break;
        case 'c': p->conc = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'g': p->print_grants = true; break;
        default: return usage();
        }
    }
    if (!addr) return usage();
    if (hammer) {
        if (optind != argc || !p->run_ms || !p->conc) return usage();
        if (hammer_load(p, hammer) < 0) {
            fprintf(stderr, "ratelimit_probe: cannot read %s\n", hammer);
            return 2;
        }
    } else {
        if (optind == argc) return usage();
        p->steps = argv + optind;
        p->nsteps = argc - optind;
    }
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    pmx_log_set_tag("ratelimit_probe");

    p->loop = uv_default_loop();
    char err[256];
    p->rc = pmx_redis_conn_new(p->loop, addr, NULL, 0, err, sizeof err);
    if (!p->rc) {
        fprintf(stderr, "ratelimit_probe: %s\n", err);
        return 2;
    }
    p->rl = pmx_ratelimit_new(p->loop, p->rc, p->prefix, err, sizeof err);
    if (!p->rl) {
        fprintf(stderr, "ratelimit_probe: %s\n", err);
        pmx_redis_conn_close(p->rc);
        uv_run(p->loop, UV_RUN_DEFAULT);
        return 2;
    }
    uv_timer_init(p->loop, &p->timer);
    uv_timer_init(p->loop, &p->up_timer);
    p->timer.data = p->up_timer.data = p;
    uv_timer_start(&p->up_timer, up_timeout, 10000, 0);
    pmx_redis_conn_set_state_cb(p->rc, on_redis, p);
    pmx_redis_conn_start(p->rc);
    uv_run(p->loop, UV_RUN_DEFAULT);

    free(p->loops);
    free(p->ws);
    int rc = uv_loop_close(p->loop);
    if (rc != 0) {
        fprintf(stderr, "ratelimit_probe: loop not empty at exit: %s\n", uv_strerror(rc));
        return 1;
    }
    return p->rc_exit;
}
