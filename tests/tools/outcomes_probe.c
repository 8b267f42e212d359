/*
 * outcomes_probe: drives the outcome writer (sql/outcomes.h) on a libuv loop
 * against a real Postgres, for the integration tests and as a quick
 * measurement of the writer.
 *
 *   outcomes_probe --conninfo CI [--app-name NAME] [--max-batch N] [--flush-ms MS]
 *                  [--hold-ms MS] [--timeout-ms MS]
 *                  (--input FILE | --generate N --workspace WS --job-prefix P
 *                   [--rcpts R] [--rate ITEMS_PER_S] [--resubmit-failed]
 *                   [--failed-out FILE])
 *
 * --input: JSON lines, each one of
 *   {"id":"msg_..","ws":"ws_..","job":"1-0","update":false,"client":..,"from":..,
 *    "header_from":..,"subject":..,"metadata":..,"source":"redis",
 *    "rcpts":[{"address":..,"status":..,"attempts":1,"response":..,"next_ms":0}],
 *    "events":[{"type":..,"recipient":..,"detail":..}]}
 *   {"lookup":{"ws":"ws_..","job":"1-0"}}
 *   {"wait":true}        (wait for every earlier callback before going on)
 * and prints, per line, once its callback ran:
 *   item N status=ok message_id=ID
 *   item N status=error code=C err="..."
 *   lookup N message_id=ID|- rcpts=ADDR:STATUS:ATTEMPTS,...|-
 * --generate: N items (job P-i, R recipients rcptK@example.net sent, one
 *   message.sent event each), all at once or --rate per second; prints
 *   "progress submitted=.. done=.." every 100 ms. --resubmit-failed: after the
 *   run, items that failed are submitted again under NEW message ids (as a
 *   redelivered job would be) until every one committed; the callback's
 *   message id then says whether it attached to a row of the first attempt.
 *
 * Last line: summary submitted=.. ok=.. failed=.. resubmitted=.. attached=..
 *   statements=.. splits=.. batches_failed=.. lookup_queries=.. elapsed_ms=..
 * Exit 0 when every callback ran (failures included), 1 on timeout/setup error.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <uv.h>

#include "lib/buf.h"
#include "lib/encode.h"
#include "lib/log.h"
#include "lib/mem.h"
#include "sql/db_async.h"
#include "sql/outcomes.h"

typedef struct probe probe_t;

typedef struct {
    probe_t *p;
    size_t   n;           /* input line / generated index */
    char     msg_id[32];  /* the id it was submitted under */
} ctx_t;

struct probe {
    uv_loop_t       loop;
    pmx_db_async_t *db;
    pmx_outcomes_t *out;
    uv_timer_t      tick, timeout;
    bool            started, finished, timed_out;
    uint64_t        t0;

    /* input mode */
    json_t        **lines;
    size_t          nlines, next_line;

    /* generate mode */
    size_t          gen_n, gen_next, rcpts;
    const char     *ws, *job_prefix;
    double          rate;
    bool            resubmit;
    const char     *failed_out;
    bool           *failed;       /* per generated item, after the first pass */
    size_t          round;
    unsigned        ticks;

    size_t          submitted, outstanding, ok, nfailed, resubmitted, attached;
};

static void usage(void)
{
    fprintf(stderr,
            "usage: outcomes_probe --conninfo CI [--app-name N] [--max-batch N] [--flush-ms MS]\n"
            "       [--hold-ms MS] [--timeout-ms MS] (--input FILE | --generate N --workspace WS\n"
            "       --job-prefix P [--rcpts R] [--rate N] [--resubmit-failed] [--failed-out F])\n");
    exit(2);
}

static void advance(probe_t *p);

static void print_summary(probe_t *p)
{
    pmx_outcomes_stats_t s;
    pmx_outcomes_stats(p->out, &s);
    printf("summary submitted=%zu ok=%zu failed=%zu resubmitted=%zu attached=%zu statements=%" PRIu64
           " splits=%" PRIu64 " batches_failed=%" PRIu64 " lookup_queries=%" PRIu64
           " elapsed_ms=%" PRIu64 "%s\n",
           p->submitted, p->ok, p->nfailed, p->resubmitted, p->attached, s.statements, s.splits,
           s.batches_failed, s.lookup_queries, uv_now(&p->loop) - p->t0,
           p->timed_out ? " TIMEOUT" : "");
}

static void finish(probe_t *p)
{
    if (p->finished) return;
    p->finished = true;
    print_summary(p);
    pmx_outcomes_free(p->out);
    pmx_db_async_close(p->db);
    uv_close((uv_handle_t *)&p->tick, NULL);
    uv_close((uv_handle_t *)&p->timeout, NULL);
}

/* ---- input mode --------------------------------------------------------- */

static const char *jstr(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static void input_done(const pmx_outcome_result_t *r, void *arg)
{
    ctx_t *c = arg;
    probe_t *p = c->p;
    if (r->status == 0) {
        p->ok++;
        printf("item %zu status=ok message_id=%s\n", c->n, r->message_id);
    } else {
        p->nfailed++;
        printf("item %zu status=error code=%d err=\"%s\"\n", c->n, r->status, r->error);
    }
    free(c);
    p->outstanding--;
    advance(p);
}

static void lookup_done(const pmx_outcome_lookup_t *r, void *arg)
{
    ctx_t *c = arg;
    probe_t *p = c->p;
    if (r->status < 0) {
        printf("lookup %zu error code=%d err=\"%s\"\n", c->n, r->status, r->error);
    } else {
        printf("lookup %zu message_id=%s rcpts=", c->n, r->message_id ? r->message_id : "-");
        for (size_t i = 0; i < r->nrcpts; i++)
            printf("%s%s:%s:%d", i ? "," : "", r->rcpts[i].address, r->rcpts[i].status,
                   r->rcpts[i].attempts);
        printf("%s\n", r->nrcpts ? "" : "-");
    }
    free(c);
    p->outstanding--;
    advance(p);
}

static void submit_line(probe_t *p, size_t n, json_t *o)
{
    ctx_t *c = pmx_xcalloc(1, sizeof *c);
    c->p = p;
    c->n = n;
    json_t *lk = json_object_get(o, "lookup");
    if (lk) {
        p->outstanding++;
        if (!pmx_outcomes_lookup(p->out, jstr(lk, "ws"), jstr(lk, "job"), lookup_done, c)) {
            printf("lookup %zu refused\n", n);
            p->outstanding--;
            free(c);
        }
        return;
    }
    json_t *ra = json_object_get(o, "rcpts"), *ea = json_object_get(o, "events");
    size_t nr = json_array_size(ra), ne = json_array_size(ea);
    pmx_outcome_rcpt_t *rc = pmx_xcalloc(nr ? nr : 1, sizeof *rc);
    pmx_outcome_event_t *ev = pmx_xcalloc(ne ? ne : 1, sizeof *ev);
    for (size_t i = 0; i < nr; i++) {
        json_t *x = json_array_get(ra, i);
        rc[i] = (pmx_outcome_rcpt_t){
            .address = jstr(x, "address"), .status = jstr(x, "status"),
            .attempts = (int)json_integer_value(json_object_get(x, "attempts")),
            .last_response = jstr(x, "response"),
            .next_attempt_ms = json_integer_value(json_object_get(x, "next_ms")) };
    }
    for (size_t i = 0; i < ne; i++) {
        json_t *x = json_array_get(ea, i);
        ev[i] = (pmx_outcome_event_t){ .type = jstr(x, "type"), .recipient = jstr(x, "recipient"),
                                       .detail = jstr(x, "detail") };
    }
    pmx_outcome_t it = {
        .update_only = json_is_true(json_object_get(o, "update")),
        .message_id = jstr(o, "id"), .workspace_id = jstr(o, "ws"), .job_id = jstr(o, "job"),
        .client_id = jstr(o, "client"), .mail_from = jstr(o, "from"),
        .header_from = jstr(o, "header_from"), .subject = jstr(o, "subject"),
        .metadata = jstr(o, "metadata"), .source = jstr(o, "source"),
        .rcpts = rc, .nrcpts = nr, .events = ev, .nevents = ne,
    };
    p->outstanding++;
    p->submitted++;
    if (!pmx_outcomes_submit(p->out, &it, input_done, c)) {
        printf("item %zu refused\n", n);
        p->outstanding--;
        free(c);
    }
    free(rc);
    free(ev);
}

/* ---- generate mode ------------------------------------------------------ */

static void gen_done(const pmx_outcome_result_t *r, void *arg);

static void gen_submit(probe_t *p, size_t i)
{
    ctx_t *c = pmx_xcalloc(1, sizeof *c);
    c->p = p;
    c->n = i;
    pmx_random_id("msg_", c->msg_id, sizeof c->msg_id);
    char job[128], subj[64];
    snprintf(job, sizeof job, "%s-%zu", p->job_prefix, i);
    snprintf(subj, sizeof subj, "probe message %zu", i);
    size_t nr = p->rcpts;
    pmx_outcome_rcpt_t *rc = pmx_xcalloc(nr ? nr : 1, sizeof *rc);
    pmx_outcome_event_t *ev = pmx_xcalloc(nr ? nr : 1, sizeof *ev);
    char (*addr)[64] = pmx_xcalloc(nr ? nr : 1, sizeof *addr);
    for (size_t k = 0; k < nr; k++) {
        snprintf(addr[k], sizeof addr[k], "rcpt%zu@example.net", k);
        rc[k] = (pmx_outcome_rcpt_t){ .address = addr[k], .status = "sent", .attempts = 1,
                                      .last_response = "250 2.0.0 Ok: queued as ABC" };
        ev[k] = (pmx_outcome_event_t){ .type = "message.sent", .recipient = addr[k],
                                       .detail = "250 2.0.0 Ok: queued as ABC" };
    }
    pmx_outcome_t it = { .message_id = c->msg_id, .workspace_id = p->ws, .job_id = job,
                         .mail_from = "sender@probe.test", .header_from = "Probe <sender@probe.test>",
                         .subject = subj, .source = "redis",
                         .rcpts = rc, .nrcpts = nr, .events = ev, .nevents = nr };
    p->outstanding++;
    p->submitted++;
    if (!pmx_outcomes_submit(p->out, &it, gen_done, c)) {
        fprintf(stderr, "outcomes_probe: item %zu refused\n", i);
        p->outstanding--;
        free(c);
    }
    free(rc);
    free(ev);
    free(addr);
}

static void gen_done(const pmx_outcome_result_t *r, void *arg)
{
    ctx_t *c = arg;
    probe_t *p = c->p;
    if (r->status == 0) {
        p->ok++;
        if (p->round > 0) {
            p->failed[c->n] = false;
            if (strcmp(r->message_id, c->msg_id) != 0) p->attached++;
        }
    } else {
        p->nfailed++;
        p->failed[c->n] = true;
    }
    free(c);
    p->outstanding--;
    advance(p);
}

static void write_failed(probe_t *p)
{
    FILE *f = fopen(p->failed_out, "w");
    if (!f) return;
    for (size_t i = 0; i < p->gen_n; i++)
        if (p->failed[i]) fprintf(f, "%s-%zu\n", p->job_prefix, i);
    fclose(f);
}

/* Next resubmission round once Postgres is up again; true when one started. */
static bool resubmit_round(probe_t *p)
{
    if (!pmx_db_async_is_up(p->db)) return true;   /* wait: the tick comes back */
    size_t n = 0;
    p->round++;
    for (size_t i = 0; i < p->gen_n; i++)
        if (p->failed[i]) {
            gen_submit(p, i);
            n++;
        }
    p->resubmitted += n;
    return n > 0;
}

/* ---- driving ------------------------------------------------------------ */

static void advance(probe_t *p)
{
    if (!p->started || p->finished) return;
    if (p->lines) {
        while (p->next_line < p->nlines) {
            json_t *o = p->lines[p->next_line];
            if (json_is_true(json_object_get(o, "wait"))) {
                if (p->outstanding) return;
                p->next_line++;
                continue;
            }
            submit_line(p, ++p->next_line, o);
        }
        if (p->outstanding == 0) finish(p);
        return;
    }
    if (p->rate <= 0) {
        while (p->gen_next < p->gen_n) gen_submit(p, p->gen_next++);
    } else {
        uint64_t elapsed = uv_now(&p->loop) - p->t0;
        size_t due = (size_t)(p->rate * (double)elapsed / 1000.0) + 1;
        while (p->gen_next < p->gen_n && p->gen_next < due) gen_submit(p, p->gen_next++);
    }
    if (p->gen_next < p->gen_n || p->outstanding) return;
    if (p->round == 0 && p->failed_out) write_failed(p);
    if (p->resubmit) {
        bool any = false;
        for (size_t i = 0; i < p->gen_n && !any; i++) any = p->failed[i];
        if (any && p->round < 50) {
            if (resubmit_round(p)) return;
        }
    }
    finish(p);
}

static void tick_cb(uv_timer_t *t)
{
    probe_t *p = t->data;
    if (!p->started) return;
    if (!p->lines && ++p->ticks % 10 == 0)
        printf("progress submitted=%zu done=%zu\n", p->submitted, p->ok + p->nfailed);
    advance(p);
}

static void timeout_cb(uv_timer_t *t)
{
    probe_t *p = t->data;
    p->timed_out = true;
    finish(p);
}

static void on_db_state(pmx_db_async_t *db, bool up, void *arg)
{
    (void)db;
    probe_t *p = arg;
    printf("db %s\n", up ? "up" : "down");
    if (up && !p->started) {
        p->started = true;
        p->t0 = uv_now(&p->loop);
        advance(p);
    }
}

static void load_input(probe_t *p, const char *path)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (!f) {
        perror(path);
        exit(1);
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) >= 0) {
        if (len <= 1) continue;
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        if (!json_is_object(o)) {
            fprintf(stderr, "outcomes_probe: %s line %zu: %s\n", path, p->nlines + 1, je.text);
            exit(1);
        }
        p->lines = pmx_xrealloc(p->lines, (p->nlines + 1) * sizeof *p->lines);
        p->lines[p->nlines++] = o;
    }
    free(line);
    if (f != stdin) fclose(f);
}

int main(int argc, char **argv)
{
    const char *conninfo = NULL, *app = "pmx_outcomes_probe", *input = NULL;
    pmx_outcomes_opts_t oo = { .hold_ms = -1 };
    uint64_t timeout_ms = 120000;
    probe_t p = { .rcpts = 2 };
    static const struct option opts[] = {
        { "conninfo", required_argument, NULL, 'c' },   { "app-name", required_argument, NULL, 'a' },
        { "max-batch", required_argument, NULL, 'b' },  { "flush-ms", required_argument, NULL, 'f' },
        { "hold-ms", required_argument, NULL, 'h' },    { "timeout-ms", required_argument, NULL, 'T' },
        { "input", required_argument, NULL, 'i' },      { "generate", required_argument, NULL, 'g' },
        { "workspace", required_argument, NULL, 'w' },  { "job-prefix", required_argument, NULL, 'j' },
        { "rcpts", required_argument, NULL, 'r' },      { "rate", required_argument, NULL, 'R' },
        { "resubmit-failed", no_argument, NULL, 'S' },  { "failed-out", required_argument, NULL, 'F' },
        { NULL, 0, NULL, 0 }
    };
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'c': conninfo = optarg; break;
        case 'a': app = optarg; break;
        case 'b': oo.max_batch = strtoul(optarg, NULL, 10); break;
        case 'f': oo.flush_ms = strtoull(optarg, NULL, 10); break;
        case 'h': oo.hold_ms = strtoll(optarg, NULL, 10); break;
        case 'T': timeout_ms = strtoull(optarg, NULL, 10); break;
        case 'i': input = optarg; break;
        case 'g': p.gen_n = strtoul(optarg, NULL, 10); break;
        case 'w': p.ws = optarg; break;
        case 'j': p.job_prefix = optarg; break;
        case 'r': p.rcpts = strtoul(optarg, NULL, 10); break;
        case 'R': p.rate = strtod(optarg, NULL); break;
        case 'S': p.resubmit = true; break;
        case 'F': p.failed_out = optarg; break;
        default: usage();
        }
    }
    if (!conninfo || optind != argc || (!input && (!p.gen_n || !p.ws || !p.job_prefix)))
        usage();
    setvbuf(stdout, NULL, _IOLBF, 0);
    pmx_log_set_tag("outcomes_probe");
    if (input) load_input(&p, input);
    if (p.gen_n) p.failed = pmx_xcalloc(p.gen_n, sizeof *p.failed);

    uv_loop_init(&p.loop);
    pmx_buf_t ci = PMX_BUF_INIT;
    pmx_buf_appendf(&ci, "%s application_name=%s", conninfo, app);
    p.db = pmx_db_async_new(&p.loop, pmx_buf_cstr(&ci));
    pmx_buf_free(&ci);
    pmx_db_async_set_state_cb(p.db, on_db_state, &p);
    p.out = pmx_outcomes_new(&p.loop, p.db, &oo);
    uv_timer_init(&p.loop, &p.tick);
    uv_timer_init(&p.loop, &p.timeout);
    p.tick.data = p.timeout.data = &p;
    uv_timer_start(&p.tick, tick_cb, 10, 10);
    uv_timer_start(&p.timeout, timeout_cb, timeout_ms, 0);
    pmx_db_async_start(p.db);
    uv_run(&p.loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&p.loop);
    for (size_t i = 0; i < p.nlines; i++) json_decref(p.lines[i]);
    free(p.lines);
    free(p.failed);
    return rc == 0 && !p.timed_out ? 0 : 1;
}
