/*
 * smtp_probe: sends K messages through the relay client pool (smtp/pool.h)
 * to a relay given on the command line and prints every recipient's outcome.
 * The integration tests drive the real client with it, and it doubles as the
 * client's micro-benchmark (the summary line has msgs_per_s).
 *
 *   smtp_probe --port 2525 [--host 127.0.0.1] [--tls none|starttls|tls] | --config FILE
 *              [--no-verify] [--ca-file F] [--user U --password-file F]
 *              [--helo NAME] [--sessions N] [--count K] [--window W]
 *              [--from ADDR] [--to ADDR]... [--size BYTES] [--file PATH]...
 *              [--timeout-ms MS] [--data-timeout-ms MS] [--idle-timeout-ms MS]
 *              [--abort-after-ms MS] [--stagger-ms MS] [--quiet] [--verbose]
 *
 * --config takes [relay] from a postmux config file instead (through
 * pmx_smtp_relay_from_config, as the worker does); --sessions and the
 * timeouts still apply.
 *
 * Messages are generated (headers, then lines including ones that start with
 * '.' and a line of just ".", padded to --size) or read from --file (used in
 * turn; LF line endings become CRLF). At most W messages are in the pool at a
 * time, as the worker's pipeline would do; with --stagger-ms, one message is
 * handed over every MS milliseconds instead (sessions go idle in between). Output, one line per recipient:
 *   msg=N rcpt=ADDR status=sent|deferred|bounced code=C enhanced=E after="..." response="..."
 * and a last line:
 *   summary messages=K sent=.. deferred=.. bounced=.. connections=.. elapsed_ms=.. msgs_per_s=..
 * Exit 0 when every message got an outcome, 1 on a set-up error, 2 on usage.
 */
#include "config/config.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/mem.h"
#include "lib/text.h"
#include "smtp/pool.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

typedef struct {
    uv_loop_t       *loop;
    pmx_smtp_pool_t *pool;
    const char      *from;
    const char     **to;
    size_t           nto;
    size_t           size;
    pmx_buf_t       *files;
    size_t           nfiles;
    unsigned         count, window, submitted, done, inflight;
    unsigned         sent, deferred, bounced;   /* per message (its overall status) */
    bool             quiet, close_requested;
    uint64_t         t_start, t_end;
    uv_timer_t       abort_timer;
    uv_timer_t       stagger_timer;
    uint64_t         stagger_ms;
    pmx_smtp_pool_stats_t st;
} probe_t;

typedef struct {
    probe_t            *pr;
    unsigned            n;
    pmx_buf_t           data;
    pmx_smtp_envelope_t env;
} probe_msg_t;

static const char *status_name(pmx_smtp_status_t st)
{
    return st == PMX_SMTP_SENT ? "sent" : st == PMX_SMTP_TEMPFAIL ? "deferred" : "bounced";
}

/* Prints s with '\n' as "\n" and '"' / '\\' escaped, so one outcome stays one line. */
static void print_quoted(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '\n') fputs("\\n", stdout);
        else if (*s == '"' || *s == '\\') printf("\\%c", *s);
        else putchar(*s);
    }
    putchar('"');
}

/* The pool's last call: keep its counters and stop the abort timer. */
static void on_pool_closed(void *arg)
{
    probe_t *pr = arg;
    pmx_smtp_pool_stats(pr->pool, &pr->st);
    pr->pool = NULL;
    uv_timer_stop(&pr->abort_timer);
}

static void submit_more(probe_t *pr);

static void on_done(void *arg, const pmx_smtp_result_t *res)
{
    probe_msg_t *pm = arg;
    probe_t *pr = pm->pr;
    if (!pr->quiet) {
        for (size_t i = 0; i < res->nrcpts; i++) {
            const pmx_smtp_outcome_t *o = &res->rcpts[i];
            printf("msg=%u rcpt=%s status=%s code=%d enhanced=%s after=", pm->n, pm->env.rcpts[i],
                   status_name(o->status), o->code, o->enhanced[0] ? o->enhanced : "-");
            print_quoted(o->after);
            fputs(" response=", stdout);
            print_quoted(o->response);
            putchar('\n');
        }
    }
    if (res->status == PMX_SMTP_SENT) pr->sent++;
    else if (res->status == PMX_SMTP_TEMPFAIL) pr->deferred++;
    else pr->bounced++;
    pmx_buf_free(&pm->data);
    free(pm);
    pr->done++;
    pr->inflight--;
    pr->t_end = uv_hrtime();
    submit_more(pr);
}

/* A generated message: ASCII headers, dot lines to exercise stuffing, filler to size. */
static void generate(probe_t *pr, unsigned n, pmx_buf_t *b)
{
    pmx_buf_appendf(b, "From: <%s>\r\nTo: ", pr->from);
    for (size_t i = 0; i < pr->nto; i++) pmx_buf_appendf(b, "%s<%s>", i ? ", " : "", pr->to[i]);
    pmx_buf_appendf(b, "\r\nSubject: smtp_probe message %u\r\n"
                       "Message-ID: <probe.%u.%ld@smtp-probe.invalid>\r\n"
                       "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
                       "probe message %u\r\n.leading dot\r\n..two dots\r\n.\r\nafter the dot line\r\n",
                    n, n, (long)getpid(), n);
    unsigned line = 0;
    while (b->len + 2 < pr->size) {
        size_t want = pr->size - b->len - 2;
        if (want > 76) want = 76;
        char tmp[96];
        int k = snprintf(tmp, sizeof tmp, "%05u the quick brown fox jumps over the lazy dog "
                         "0123456789abcdefghijklmnop", line++);
        pmx_buf_append(b, tmp, (size_t)k < want ? (size_t)k : want);
        pmx_buf_append(b, "\r\n", 2);
    }
}

static void submit_one(probe_t *pr);
static void close_when_all_submitted(probe_t *pr);

static void submit_more(probe_t *pr)
{
    if (pr->stagger_ms) {                 /* the timer hands over the rest */
        if (pr->submitted == 0 && pr->count) submit_one(pr);
        else if (!pr->count) close_when_all_submitted(pr);
        return;
    }
    while (pr->submitted < pr->count && pr->inflight < pr->window) submit_one(pr);
    close_when_all_submitted(pr);
}

static void on_stagger(uv_timer_t *t)
{
    probe_t *pr = t->data;
    submit_one(pr);
}

/* Hands one message to the pool; with --stagger-ms, schedules the next. */
static void submit_one(probe_t *pr)
{
    probe_msg_t *pm = pmx_xcalloc(1, sizeof *pm);
    pm->pr = pr;
    pm->n = ++pr->submitted;
    pmx_buf_init(&pm->data);
    if (pr->nfiles) {
        const pmx_buf_t *f = &pr->files[(pm->n - 1) % pr->nfiles];
        pmx_buf_append(&pm->data, f->data, f->len);
    } else {
        generate(pr, pm->n, &pm->data);
    }
    pm->env.mail_from = pr->from;
    pm->env.rcpts = pr->to;
    pm->env.nrcpts = pr->nto;
    if (!pr->t_start) pr->t_start = uv_hrtime();
    int rc = pmx_smtp_pool_send(pr->pool, &pm->env, pm->data.data, pm->data.len, on_done, pm);
    if (rc < 0) {
        fprintf(stderr, "smtp_probe: send #%u refused: %s\n", pm->n, uv_strerror(rc));
        pmx_buf_free(&pm->data);
        free(pm);
        pr->done++;
    } else {
        pr->inflight++;
    }
    if (pr->stagger_ms) {
        if (pr->submitted < pr->count) uv_timer_start(&pr->stagger_timer, on_stagger, pr->stagger_ms, 0);
        else close_when_all_submitted(pr);
    }
}

/* Everything handed over: let the pool finish and QUIT. */
static void close_when_all_submitted(probe_t *pr)
{
    if (pr->submitted == pr->count && !pr->close_requested) {
        pr->close_requested = true;
        pmx_smtp_pool_close(pr->pool, on_pool_closed, pr);
    }
}

static void on_abort_timer(uv_timer_t *t)
{
    probe_t *pr = t->data;
    pmx_smtp_pool_abort(pr->pool);
}

static int usage(const char *why)
{
    fprintf(stderr, "smtp_probe: %s\nusage: smtp_probe --port P [--host H] [--tls none|starttls|tls] "
                    "[--no-verify] [--ca-file F] [--user U --password-file F] [--helo N] "
                    "[--sessions N] [--count K] [--window W] [--from A] [--to A]... [--size B] "
                    "[--file F]... [--timeout-ms MS] [--data-timeout-ms MS] [--idle-timeout-ms MS] "
                    "[--abort-after-ms MS] [--stagger-ms MS] [--config FILE] [--quiet] [--verbose]\n", why);
    return 2;
}

static int read_file(const char *path, pmx_buf_t *out)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    pmx_buf_t raw = PMX_BUF_INIT;
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) pmx_buf_append(&raw, tmp, n);
    int bad = ferror(f);
    fclose(f);
    if (!bad) pmx_text_crlf(out, pmx_buf_cstr(&raw), raw.len);
    pmx_buf_free(&raw);
    return bad ? -1 : 0;
}

static bool parse_uint(const char *s, unsigned long long *out)
{
    char *end;
    if (!*s || *s == '-') return false;
    *out = strtoull(s, &end, 10);
    return *end == '\0';
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "host", required_argument, 0, 'H' },       { "port", required_argument, 0, 'p' },
        { "tls", required_argument, 0, 't' },        { "no-verify", no_argument, 0, 'k' },
        { "ca-file", required_argument, 0, 'c' },    { "user", required_argument, 0, 'u' },
        { "password-file", required_argument, 0, 'P' }, { "helo", required_argument, 0, 'e' },
        { "sessions", required_argument, 0, 's' },   { "count", required_argument, 0, 'n' },
        { "window", required_argument, 0, 'w' },     { "from", required_argument, 0, 'f' },
        { "to", required_argument, 0, 'r' },         { "size", required_argument, 0, 'z' },
        { "file", required_argument, 0, 'F' },       { "timeout-ms", required_argument, 0, 'T' },
        { "data-timeout-ms", required_argument, 0, 'D' }, { "idle-timeout-ms", required_argument, 0, 'I' },
        { "abort-after-ms", required_argument, 0, 'A' }, { "quiet", no_argument, 0, 'q' },
        { "verbose", no_argument, 0, 'v' },          { "stagger-ms", required_argument, 0, 'S' },
        { "config", required_argument, 0, 'C' },          { 0, 0, 0, 0 },
    };
    pmx_smtp_relay_t cfg = { .host = "127.0.0.1", .tls = PMX_TLS_NONE, .tls_verify = true,
                             .max_sessions = 4 };
    probe_t pr = { .from = "probe@example.org", .size = 2048, .count = 1, .window = 1000 };
    const char *pwfile = NULL, *config = NULL;
    bool sessions_given = false;
    pmx_config_t pc;
    bool pc_loaded = false;
    const char **files = NULL;
    size_t nfiles = 0;
    unsigned long long v, abort_ms = 0;
    char *password = NULL;
    size_t password_len = 0;
    int c;

    pmx_log_set_tag("smtp_probe");
    pmx_log_set_level(PMX_LOG_WARN);
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'H': cfg.host = optarg; break;
        case 'p':
            if (!parse_uint(optarg, &v) || v < 1 || v > 65535) return usage("--port: 1-65535");
            cfg.port = (int)v;
            break;
        case 't':
            if (!strcmp(optarg, "none")) cfg.tls = PMX_TLS_NONE;
            else if (!strcmp(optarg, "starttls")) cfg.tls = PMX_TLS_STARTTLS;
            else if (!strcmp(optarg, "tls")) cfg.tls = PMX_TLS_IMPLICIT;
            else return usage("--tls: none, starttls or tls");
            break;
        case 'k': cfg.tls_verify = false; break;
        case 'c': cfg.ca_file = optarg; break;
        case 'u': cfg.auth_user = optarg; break;
        case 'P': pwfile = optarg; break;
        case 'e': cfg.helo_name = optarg; break;
        case 's':
            if (!parse_uint(optarg, &v) || v < 1 || v > 1024) return usage("--sessions: 1-1024");
            cfg.max_sessions = (int)v;
            sessions_given = true;
            break;
        case 'C': config = optarg; break;
        case 'n':
            if (!parse_uint(optarg, &v) || v > 10000000) return usage("--count: 0-10000000");
            pr.count = (unsigned)v;
            break;
        case 'w':
            if (!parse_uint(optarg, &v) || v < 1 || v > 1000000) return usage("--window: 1-1000000");
            pr.window = (unsigned)v;
            break;
        case 'f': pr.from = optarg; break;
        case 'r':
            pr.to = pmx_xrealloc(pr.to, (pr.nto + 1) * sizeof *pr.to);
            pr.to[pr.nto++] = optarg;
            break;
        case 'z':
            if (!parse_uint(optarg, &v) || v > (64ull << 20)) return usage("--size: at most 64 MiB");
            pr.size = (size_t)v;
            break;
        case 'F':
            files = pmx_xrealloc(files, (nfiles + 1) * sizeof *files);
            files[nfiles++] = optarg;
            break;
        case 'T': if (!parse_uint(optarg, &v)) return usage("--timeout-ms: a number");
            cfg.command_timeout_ms = cfg.connect_timeout_ms = v;
            break;
        case 'D': if (!parse_uint(optarg, &v)) return usage("--data-timeout-ms: a number");
            cfg.data_timeout_ms = v;
            break;
        case 'I': if (!parse_uint(optarg, &v)) return usage("--idle-timeout-ms: a number");
            cfg.idle_timeout_ms = v;
            break;
        case 'A': if (!parse_uint(optarg, &v)) return usage("--abort-after-ms: a number");
            abort_ms = v;
            break;
        case 'S': if (!parse_uint(optarg, &v) || v < 1) return usage("--stagger-ms: a positive number");
            pr.stagger_ms = v;
            break;
        case 'q': pr.quiet = true; break;
        case 'v': pmx_log_set_level(PMX_LOG_DEBUG); break;
        default: return usage("unknown option");
        }
    }
    if (optind != argc) return usage("unexpected argument");
    if (!cfg.port && !config) return usage("--port or --config is required");
    static const char *default_to[] = { "sink@example.net" };
    if (!pr.nto) {
        pr.to = pmx_xmalloc(sizeof *pr.to);
        pr.to[0] = default_to[0];
        pr.nto = 1;
    }

    int rc = 1;
    char err[512];
    if (config) {
        if (pmx_config_load(config, &pc, err, sizeof err) < 0) {
            fprintf(stderr, "smtp_probe: %s\n", err);
            goto out;
        }
        pc_loaded = true;
        pmx_smtp_relay_t from;
        if (pmx_smtp_relay_from_config(&pc, &from, &password, err, sizeof err) < 0) {
            fprintf(stderr, "smtp_probe: %s\n", err);
            goto out;
        }
        if (password) password_len = strlen(password);
        if (sessions_given) from.max_sessions = cfg.max_sessions;
        from.connect_timeout_ms = cfg.connect_timeout_ms;
        from.command_timeout_ms = cfg.command_timeout_ms;
        from.data_timeout_ms = cfg.data_timeout_ms;
        from.idle_timeout_ms = cfg.idle_timeout_ms;
        cfg = from;
    } else if (pwfile) {
        if (pmx_config_read_secret(pwfile, &password, &password_len, err, sizeof err) < 0) {
            fprintf(stderr, "smtp_probe: %s\n", err);
            goto out;
        }
        cfg.auth_password = password;
    }
    if (nfiles) {
        pr.files = pmx_xcalloc(nfiles, sizeof *pr.files);
        pr.nfiles = nfiles;
        for (size_t i = 0; i < nfiles; i++) {
            if (read_file(files[i], &pr.files[i]) < 0) {
                fprintf(stderr, "smtp_probe: cannot read %s\n", files[i]);
                goto out;
            }
        }
    }

    uv_loop_t loop;
    uv_loop_init(&loop);
    pr.loop = &loop;
    if (pmx_smtp_pool_new(&loop, &cfg, &pr.pool, err, sizeof err) < 0) {
        fprintf(stderr, "smtp_probe: %s\n", err);
        uv_loop_close(&loop);
        goto out;
    }
    if (password) pmx_wipe(password, password_len);   /* the pool has its own copy */
    uv_timer_init(&loop, &pr.abort_timer);
    pr.abort_timer.data = &pr;
    if (abort_ms) uv_timer_start(&pr.abort_timer, on_abort_timer, abort_ms, 0);
    uv_timer_init(&loop, &pr.stagger_timer);
    pr.stagger_timer.data = &pr;

    submit_more(&pr);
    uv_run(&loop, UV_RUN_DEFAULT);      /* ends once the pool has closed (and the timer is done) */

    double secs = pr.t_end > pr.t_start ? (double)(pr.t_end - pr.t_start) / 1e9 : 0;
    printf("summary messages=%u sent=%u deferred=%u bounced=%u connections=%llu elapsed_ms=%.1f "
           "msgs_per_s=%.0f\n", pr.count, pr.sent, pr.deferred, pr.bounced,
           (unsigned long long)pr.st.connections, secs * 1e3,
           secs > 0 ? (double)pr.done / secs : 0.0);
    uv_close((uv_handle_t *)&pr.abort_timer, NULL);
    uv_close((uv_handle_t *)&pr.stagger_timer, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    rc = uv_loop_close(&loop) == 0 && pr.done == pr.count ? 0 : 1;
    if (rc) fprintf(stderr, "smtp_probe: %u of %u messages ended\n", pr.done, pr.count);

out:
    if (pc_loaded) pmx_config_free(&pc);
    if (password) {
        pmx_wipe(password, password_len);
        free(password);
    }
    for (size_t i = 0; i < pr.nfiles; i++) pmx_buf_free(&pr.files[i]);
    free(pr.files);
    free(files);
    free(pr.to);
    return rc;
}
