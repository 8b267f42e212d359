/*
 * settings_probe: runs the worker's settings cache (workers/settings.h) on a
 * libuv loop against a real Postgres and prints what it holds, so the
 * integration tests can watch loads, NOTIFY-driven reloads and reconnects.
 *
 *   settings_probe --conninfo CI --master-key FILE [--app-name NAME]
 *                  [--refresh-ms MS] [--from WS:DOMAIN]... [--tester WS:ADDR]...
 *                  [--sign-dir DIR] [--run-ms MS]
 *
 * Output (stdout, one line per event):
 *   db up | db down
 *   stats loads=.. failures=.. swaps=.. keys_opened=.. keys_failed=.. notifies=..
 *                                  (whenever a counter changed; polled every 50 ms)
 *   gen N workspaces=K             then, for that snapshot:
 *   ws ID name=.. suspended=0|1 test_mode=0|1 catch_all=ADDR|- rate=R burst=B quota=Q testers=a,b|-
 *   domain ws=ID name=D verified=0|1 keys=N failed=F [key=SEL/ALG/BITS]...
 *   from ws=ID domain=X match=ok|no_key|unverified|none d=NAME|- keys=N
 *   tester ws=ID addr=X is=0|1
 *   sign ws=ID domain=X sigs=N file=PATH | sign ws=ID domain=X error="..."
 *                                  (--sign-dir: a small message From X, signed with
 *                                   the matched domain's keys, written to PATH)
 *   ids active=a,b all=a,b,c
 *   end gen N
 * SIGTERM/SIGINT (or --run-ms) stop it cleanly: everything is freed, exit 0.
 */
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "dkim/keycrypt.h"
#include "dkim/signer.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/mem.h"
#include "sql/db_async.h"
#include "workers/settings.h"

typedef struct {
    char *ws, *val;
} pair_t;

typedef struct {
    uv_loop_t            loop;
    pmx_db_async_t      *db;
    pmx_settings_t      *st;
    pmx_dkim_signer_t   *signer;
    uv_timer_t           poll, runtimer;
    uv_signal_t          sigterm, sigint;
    pmx_settings_stats_t last;
    pair_t              *froms, *testers;
    size_t               nfroms, ntesters;
    const char          *sign_dir;
    bool                 stopping;
} probe_t;

static void usage(void)
{
    fprintf(stderr, "usage: settings_probe --conninfo CI --master-key FILE [--app-name NAME]\n"
                    "       [--refresh-ms MS] [--from WS:DOMAIN]... [--tester WS:ADDR]...\n"
                    "       [--sign-dir DIR] [--run-ms MS]\n");
    exit(2);
}

static pair_t parse_pair(const char *arg)
{
    const char *c = strchr(arg, ':');
    if (!c) usage();
    return (pair_t){ pmx_xstrndup(arg, (size_t)(c - arg)), pmx_xstrdup(c + 1) };
}

static void print_stats(probe_t *p, bool force)
{
    pmx_settings_stats_t s;
    pmx_settings_stats(p->st, &s);
    if (!force && memcmp(&s, &p->last, sizeof s) == 0) return;
    p->last = s;
    printf("stats loads=%" PRIu64 " failures=%" PRIu64 " swaps=%" PRIu64 " keys_opened=%" PRIu64
           " keys_failed=%" PRIu64 " notifies=%" PRIu64 "\n",
           s.loads, s.load_failures, s.swaps, s.keys_opened, s.keys_failed, s.notifies);
}

/* Signs a small message From: probe@<from_domain> and writes it to a file. */
static void sign_one(probe_t *p, const pmx_settings_ws_t *w, const char *from_domain,
                     const pmx_settings_domain_t *d, uint64_t gen)
{
    pmx_buf_t msg = PMX_BUF_INIT, sig = PMX_BUF_INIT, path = PMX_BUF_INIT;
    char err[300];
    pmx_buf_appendf(&msg,
                    "From: Probe <probe@%s>\r\nTo: someone@example.net\r\n"
                    "Subject: settings probe\r\nDate: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
                    "Message-ID: <probe.%" PRIu64 "@%s>\r\nMIME-Version: 1.0\r\n"
                    "Content-Type: text/plain; charset=utf-8\r\n\r\nHello from %s.\r\n",
                    from_domain, gen, from_domain, w->id);
    if (!p->signer) {
        printf("sign ws=%s domain=%s error=\"no signer\"\n", w->id, from_domain);
    } else if (pmx_dkim_sign(p->signer, d->keys, d->nkeys, msg.data, msg.len, &sig, err,
                             sizeof err) < 0) {
        printf("sign ws=%s domain=%s error=\"%s\"\n", w->id, from_domain, err);
    } else {
        pmx_buf_appendf(&path, "%s/gen%" PRIu64 "-%s-%s.eml", p->sign_dir, gen, w->id, from_domain);
        FILE *f = fopen(pmx_buf_cstr(&path), "wb");
        if (!f || fwrite(sig.data, 1, sig.len, f) != sig.len ||
            fwrite(msg.data, 1, msg.len, f) != msg.len) {
            printf("sign ws=%s domain=%s error=\"cannot write %s\"\n", w->id, from_domain,
                   pmx_buf_cstr(&path));
        } else {
            printf("sign ws=%s domain=%s sigs=%zu file=%s\n", w->id, from_domain, d->nkeys,
                   pmx_buf_cstr(&path));
        }
        if (f) fclose(f);
    }
    pmx_buf_free(&msg);
    pmx_buf_free(&sig);
    pmx_buf_free(&path);
}

static void dump(probe_t *p)
{
    pmx_settings_stats_t s;
    pmx_settings_stats(p->st, &s);
    uint64_t gen = s.swaps;
    size_t n = pmx_settings_count(p->st);
    printf("gen %" PRIu64 " workspaces=%zu\n", gen, n);
    for (size_t i = 0; i < n; i++) {
        const pmx_settings_ws_t *w = pmx_settings_at(p->st, i);
        printf("ws %s name=%s suspended=%d test_mode=%d catch_all=%s rate=%g burst=%d quota=%" PRId64
               " testers=",
               w->id, w->name, w->suspended, w->test_mode, w->catch_all ? w->catch_all : "-",
               w->rate_per_second, w->burst, w->daily_quota);
        for (size_t t = 0; t < w->ntesters; t++) printf("%s%s", t ? "," : "", w->testers[t]);
        printf("%s\n", w->ntesters ? "" : "-");
        for (size_t d = 0; d < w->ndomains; d++) {
            const pmx_settings_domain_t *dm = &w->domains[d];
            printf("domain ws=%s name=%s verified=%d keys=%zu failed=%zu", w->id, dm->name,
                   dm->verified, dm->nkeys, dm->nkeys_failed);
            for (size_t k = 0; k < dm->nkeys; k++)
                printf(" key=%s/%s/%d", dm->keys[k].selector, pmx_dkim_alg_name(dm->keys[k].alg),
                       dm->keys[k].bits);
            printf("\n");
        }
    }
    for (size_t i = 0; i < p->nfroms; i++) {
        const pmx_settings_ws_t *w = pmx_settings_lookup(p->st, p->froms[i].ws);
        const pmx_settings_domain_t *d = NULL;
        pmx_settings_match_t m = pmx_settings_domain_for(w, p->froms[i].val, &d);
        printf("from ws=%s domain=%s match=%s d=%s keys=%zu\n", p->froms[i].ws, p->froms[i].val,
               pmx_settings_match_name(m), d ? d->name : "-", d ? d->nkeys : 0);
        if (m == PMX_SETTINGS_DOMAIN_OK && p->sign_dir) sign_one(p, w, p->froms[i].val, d, gen);
    }
    for (size_t i = 0; i < p->ntesters; i++) {
        const pmx_settings_ws_t *w = pmx_settings_lookup(p->st, p->testers[i].ws);
        printf("tester ws=%s addr=%s is=%d\n", p->testers[i].ws, p->testers[i].val,
               pmx_settings_is_tester(w, p->testers[i].val));
    }
    const char **ids = pmx_xcalloc(n ? n : 1, sizeof *ids);
    size_t na = pmx_settings_ids(p->st, false, ids, n);
    printf("ids active=");
    for (size_t i = 0; i < na; i++) printf("%s%s", i ? "," : "", ids[i]);
    size_t nall = pmx_settings_ids(p->st, true, ids, n);
    printf("%s all=", na ? "" : "-");
    for (size_t i = 0; i < nall; i++) printf("%s%s", i ? "," : "", ids[i]);
    printf("%s\n", nall ? "" : "-");
    free(ids);
    printf("end gen %" PRIu64 "\n", gen);
    print_stats(p, true);
}

static void on_changed(pmx_settings_t *s, void *arg)
{
    (void)s;
    dump(arg);
}

static void on_db_state(pmx_db_async_t *db, bool up, void *arg)
{
    (void)db;
    probe_t *p = arg;
    printf("db %s\n", up ? "up" : "down");
    pmx_settings_on_db_state(p->st, up);
}

static void on_notify(pmx_db_async_t *db, const char *channel, const char *payload, void *arg)
{
    (void)db;
    probe_t *p = arg;
    pmx_settings_on_notify(p->st, channel, payload);
}

static void poll_cb(uv_timer_t *t)
{
    print_stats(t->data, false);
}

static void stop(probe_t *p)
{
    if (p->stopping) return;
    p->stopping = true;
    print_stats(p, false);
    pmx_settings_free(p->st);
    pmx_db_async_close(p->db);
    uv_close((uv_handle_t *)&p->poll, NULL);
    uv_close((uv_handle_t *)&p->runtimer, NULL);
    uv_close((uv_handle_t *)&p->sigterm, NULL);
    uv_close((uv_handle_t *)&p->sigint, NULL);
}

static void on_signal(uv_signal_t *h, int signum)
{
    (void)signum;
    stop(h->data);
}

static void on_runtimer(uv_timer_t *t)
{
    stop(t->data);
}

int main(int argc, char **argv)
{
    const char *conninfo = NULL, *master_file = NULL, *app = "pmx_settings_probe";
    uint64_t refresh_ms = 0, run_ms = 0;
    probe_t p = { 0 };
    static const struct option opts[] = {
        { "conninfo", required_argument, NULL, 'c' }, { "master-key", required_argument, NULL, 'm' },
        { "app-name", required_argument, NULL, 'a' }, { "refresh-ms", required_argument, NULL, 'r' },
        { "from", required_argument, NULL, 'f' },     { "tester", required_argument, NULL, 't' },
        { "sign-dir", required_argument, NULL, 's' }, { "run-ms", required_argument, NULL, 'R' },
        { NULL, 0, NULL, 0 }
    };
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'c': conninfo = optarg; break;
        case 'm': master_file = optarg; break;
        case 'a': app = optarg; break;
        case 'r': refresh_ms = strtoull(optarg, NULL, 10); break;
        case 'R': run_ms = strtoull(optarg, NULL, 10); break;
        case 's': p.sign_dir = optarg; break;
        case 'f':
            p.froms = pmx_xrealloc(p.froms, (p.nfroms + 1) * sizeof *p.froms);
            p.froms[p.nfroms++] = parse_pair(optarg);
            break;
        case 't':
            p.testers = pmx_xrealloc(p.testers, (p.ntesters + 1) * sizeof *p.testers);
            p.testers[p.ntesters++] = parse_pair(optarg);
            break;
        default: usage();
        }
    }
    if (!conninfo || !master_file || optind != argc) usage();
    setvbuf(stdout, NULL, _IOLBF, 0);
    pmx_log_set_tag("settings_probe");

    uint8_t master[PMX_DKIM_MASTER_KEY_LEN];
    char err[300];
    if (pmx_dkim_master_key_load(master_file, master, err, sizeof err) < 0) {
        fprintf(stderr, "settings_probe: %s\n", err);
        return 1;
    }
    uv_loop_init(&p.loop);
    pmx_buf_t ci = PMX_BUF_INIT;
    pmx_buf_appendf(&ci, "%s application_name=%s", conninfo, app);
    p.db = pmx_db_async_new(&p.loop, pmx_buf_cstr(&ci));
    pmx_buf_free(&ci);
    p.st = pmx_settings_new(&p.loop, p.db, master);
    pmx_wipe(master, sizeof master);
    if (refresh_ms) pmx_settings_set_refresh_ms(p.st, refresh_ms);
    pmx_settings_set_changed_cb(p.st, on_changed, &p);
    pmx_db_async_set_state_cb(p.db, on_db_state, &p);
    pmx_db_async_set_notify_cb(p.db, on_notify, &p);
    if (p.sign_dir) p.signer = pmx_dkim_signer_new();

    uv_timer_init(&p.loop, &p.poll);
    uv_timer_init(&p.loop, &p.runtimer);
    p.poll.data = p.runtimer.data = &p;
    uv_timer_start(&p.poll, poll_cb, 50, 50);
    if (run_ms) uv_timer_start(&p.runtimer, on_runtimer, run_ms, 0);
    uv_signal_init(&p.loop, &p.sigterm);
    uv_signal_init(&p.loop, &p.sigint);
    p.sigterm.data = p.sigint.data = &p;
    uv_signal_start(&p.sigterm, on_signal, SIGTERM);
    uv_signal_start(&p.sigint, on_signal, SIGINT);

    pmx_settings_start(p.st);
    pmx_db_async_start(p.db);
    uv_run(&p.loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&p.loop);
    if (p.signer) pmx_dkim_signer_free(p.signer);
    for (size_t i = 0; i < p.nfroms; i++) free(p.froms[i].ws), free(p.froms[i].val);
    for (size_t i = 0; i < p.ntesters; i++) free(p.testers[i].ws), free(p.testers[i].val);
    free(p.froms);
    free(p.testers);
    printf("bye\n");
    return rc == 0 ? 0 : 1;
}
