/*
 * The report parser against the bounce corpus (tests/corpus/bounces/, samples
 * and expectations from the sisimai project, see its README):
 *
 *   fb_corpus check DIR [--min NAME=PERCENT ...] [-v]
 *       parses every sample named in DIR/expected.tsv and prints how many it
 *       read right: kind, recipient count, addresses, hard/soft, class,
 *       feedback type. Exits 1 when a rate is below its --min (the regression
 *       gate of tests/integration/test_feedback_parse.sh); -v lists each miss.
 *   fb_corpus bench DIR SECONDS
 *       parses the samples round-robin for SECONDS on this thread and prints
 *       "reports/s N" (the `make bench` scenario "feedback").
 *
 * sisimai calls a delay notice "expired" (it reads it as the message lost); a
 * kind "delay" counts as right for those and for 4.x.x statuses.
 *
 * sisimai names a reason per recipient; the table below says which postmux
 * classes count as right for it. Reasons with no postmux counterpart
 * (filtered, suspend, onhold, undefined, ...) are not scored for class.
 */
#include <dirent.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "inbound/report.h"
#include "lib/buf.h"

typedef struct {
    char file[128];
    int  n;
    char dsn[16], reason[32], ftype[32];
    int  hard;
} exp_t;

static const struct {
    const char *reason;
    const char *classes;    /* space-separated, each bracketed by spaces */
} reason_map[] = {
    { "userunknown",     " user_unknown " },
    { "hostunknown",     " domain_unknown " },
    { "hasmoved",        " has_moved " },
    { "notaccept",       " domain_unknown policy " },
    { "mailboxfull",     " mailbox_full " },
    { "mesgtoobig",      " message_too_big " },
    { "exceedlimit",     " message_too_big " },
    { "spamdetected",    " content_rejected policy " },
    { "virusdetected",   " content_rejected " },
    { "contenterror",    " content_rejected " },
    { "notcompliantrfc", " content_rejected policy " },
    { "blocked",         " policy " },
    { "policyviolation", " policy content_rejected " },
    { "rejected",        " policy " },
    { "securityerror",   " policy " },
    { "authfailure",     " policy " },
    { "requireptr",      " policy " },
    { "badreputation",   " policy " },
    { "norelaying",      " policy " },
    { "speeding",        " rate_limited " },
    { "toomanyconn",     " rate_limited " },
    { "networkerror",    " network " },
    { "expired",         " expired " },
    { "systemerror",     " system " },
    { "systemfull",      " system " },
    { "mailererror",     " system " },
    { "syntaxerror",     " system other " },
};

static const char *classes_for(const char *reason)
{
    for (size_t i = 0; i < sizeof reason_map / sizeof reason_map[0]; i++)
        if (strcmp(reason_map[i].reason, reason) == 0) return reason_map[i].classes;
    return NULL;
}

static int read_file(const char *path, pmx_buf_t *out)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) pmx_buf_append(out, chunk, got);
    fclose(f);
    return 0;
}

static exp_t *load_expected(const char *dir, size_t *count)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/expected.tsv", dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "fb_corpus: cannot open %s\n", path);
        exit(2);
    }
    size_t cap = 256, n = 0;
    exp_t *e = malloc(cap * sizeof *e);
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#') continue;
        if (n == cap) e = realloc(e, (cap *= 2) * sizeof *e);
        exp_t *x = &e[n];
        char replycode[16];
        if (sscanf(line, "%127s %d %15s %15s %31s %d %31s", x->file, &x->n, x->dsn, replycode,
                   x->reason, &x->hard, x->ftype) == 7)
            n++;
    }
    fclose(f);
    *count = n;
    return e;
}

typedef struct {
    int right, total;
} rate_t;

static double pct(rate_t r) { return r.total ? 100.0 * r.right / r.total : 100.0; }

static void tally(rate_t *r, bool ok) { r->total++; r->right += ok; }

static int check(const char *dir, int argc, char **argv)
{
    bool verbose = false;
    double min_kind = 0, min_count = 0, min_addr = 0, min_hard = 0, min_class = 0, min_ftype = 0;
    for (int i = 0; i < argc; i++) {
        double v;
        if (strcmp(argv[i], "-v") == 0) verbose = true;
        else if (strcmp(argv[i], "--min") == 0 && i + 1 < argc) {
            char name[32];
            if (sscanf(argv[++i], "%31[a-z_]=%lf", name, &v) != 2) return 2;
            if (!strcmp(name, "kind")) min_kind = v;
            else if (!strcmp(name, "count")) min_count = v;
            else if (!strcmp(name, "address")) min_addr = v;
            else if (!strcmp(name, "hard")) min_hard = v;
            else if (!strcmp(name, "class")) min_class = v;
            else if (!strcmp(name, "feedback_type")) min_ftype = v;
            else return 2;
        } else {
            return 2;
        }
    }
    pmx_fb_rules_t *rules = pmx_fb_rules_builtin();
    size_t ne;
    exp_t *e = load_expected(dir, &ne);
    rate_t kind = { 0, 0 }, count = { 0, 0 }, addr = { 0, 0 }, hard = { 0, 0 }, cls = { 0, 0 },
           ftype = { 0, 0 };
    int samples = 0;
    for (size_t i = 0; i < ne;) {
        size_t j = i;
        while (j < ne && strcmp(e[j].file, e[i].file) == 0) j++;
        char path[4096];
        snprintf(path, sizeof path, "%s/samples/%s", dir, e[i].file);
        pmx_buf_t msg = PMX_BUF_INIT;
        if (read_file(path, &msg) < 0) {
            fprintf(stderr, "fb_corpus: cannot read %s\n", path);
            return 2;
        }
        pmx_fb_report_t r;
        pmx_fb_report_parse(rules, msg.data, msg.len, &r);
        samples++;

        const char *want_kind = "bounce";
        if (strncmp(e[i].file, "arf-", 4) == 0) want_kind = "complaint";
        else if (strncmp(e[i].file, "rfc3834-", 8) == 0) want_kind = "auto_reply";
        else if (strcmp(e[i].reason, "delivered") == 0) want_kind = "unknown";
        else if (strcmp(e[i].reason, "feedback") == 0) want_kind = "complaint";
        const char *got_kind = pmx_fb_kind_name(r.kind);
        bool kind_ok = strcmp(got_kind, want_kind) == 0
                    || (r.kind == PMX_FB_KIND_DELAY
                        && (e[i].dsn[0] == '4' || strcmp(e[i].reason, "expired") == 0));
        tally(&kind, kind_ok);
        if (!kind_ok && verbose) printf("MISS kind  %s: want %s, got %s\n", e[i].file, want_kind, got_kind);

        bool bounce_like = strcmp(want_kind, "bounce") == 0;
        if (bounce_like) {
            size_t want_n = j - i;
            bool count_ok = r.nrcpts == want_n;
            tally(&count, count_ok);
            if (!count_ok && verbose)
                printf("MISS count %s: want %zu, got %zu\n", e[i].file, want_n, r.nrcpts);
            for (size_t k = i; k < j; k++) {
                size_t at = k - i;
                const pmx_fb_rcpt_t *rc = at < r.nrcpts ? &r.rcpts[at] : NULL;
                tally(&addr, rc && rc->address);
                tally(&hard, rc && rc->hard == (e[k].hard != 0));
                if (verbose && !(rc && rc->hard == (e[k].hard != 0)))
                    printf("MISS hard  %s[%zu]: want %d (%s), got %s\n", e[i].file, at, e[k].hard,
                           e[k].reason, rc ? (rc->hard ? "1" : "0") : "none");
                const char *want = classes_for(e[k].reason);
                if (!want) continue;
                char key[40];
                snprintf(key, sizeof key, " %s ", rc ? pmx_fb_class_name(rc->cls) : "none");
                bool ok = rc && strstr(want, key);
                tally(&cls, ok);
                if (!ok && verbose)
                    printf("MISS class %s[%zu]: want%s(%s %s), got %s | %s\n", e[i].file, at, want,
                           e[k].reason, e[k].dsn, rc ? pmx_fb_class_name(rc->cls) : "none",
                           rc && rc->diagnostic ? rc->diagnostic : "");
            }
        }
        if (strcmp(e[i].ftype, "-") != 0) {
            bool ok = r.feedback_type && strcmp(r.feedback_type, e[i].ftype) == 0;
            tally(&ftype, ok);
            if (!ok && verbose) printf("MISS ftype %s: want %s, got %s\n", e[i].file, e[i].ftype,
                                       r.feedback_type ? r.feedback_type : "null");
        }
        pmx_fb_report_free(&r);
        pmx_buf_free(&msg);
        i = j;
    }
    printf("samples %d\n", samples);
    printf("kind %.1f%% (%d/%d)\n", pct(kind), kind.right, kind.total);
    printf("count %.1f%% (%d/%d)\n", pct(count), count.right, count.total);
    printf("address %.1f%% (%d/%d)\n", pct(addr), addr.right, addr.total);
    printf("hard %.1f%% (%d/%d)\n", pct(hard), hard.right, hard.total);
    printf("class %.1f%% (%d/%d)\n", pct(cls), cls.right, cls.total);
    printf("feedback_type %.1f%% (%d/%d)\n", pct(ftype), ftype.right, ftype.total);
    int rc = 0;
    struct { const char *name; double got, min; } gates[] = {
        { "kind", pct(kind), min_kind }, { "count", pct(count), min_count },
        { "address", pct(addr), min_addr }, { "hard", pct(hard), min_hard },
        { "class", pct(cls), min_class }, { "feedback_type", pct(ftype), min_ftype },
    };
    for (size_t g = 0; g < sizeof gates / sizeof gates[0]; g++) {
        /* Compared as printed (one decimal), so a gate can be written as measured. */
        if (floor(gates[g].got * 10 + 0.5) / 10 + 1e-9 < gates[g].min) {
            printf("BELOW GATE %s: %.1f%% < %.1f%%\n", gates[g].name, gates[g].got, gates[g].min);
            rc = 1;
        }
    }
    free(e);
    pmx_fb_rules_free(rules);
    return rc;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int bench(const char *dir, double seconds)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/samples", dir);
    struct dirent **names;
    int n = scandir(path, &names, NULL, alphasort);
    if (n < 0) {
        fprintf(stderr, "fb_corpus: cannot list %s\n", path);
        return 2;
    }
    pmx_buf_t *msgs = calloc((size_t)n, sizeof *msgs);
    int m = 0;
    size_t bytes = 0;
    for (int i = 0; i < n; i++) {
        if (names[i]->d_name[0] != '.') {
            char f[4352];
            snprintf(f, sizeof f, "%s/%s", path, names[i]->d_name);
            if (read_file(f, &msgs[m]) == 0) bytes += msgs[m++].len;
        }
        free(names[i]);
    }
    free(names);
    pmx_fb_rules_t *rules = pmx_fb_rules_builtin();
    long done = 0;
    double t0 = now(), c0 = cpu(), t;
    do {
        for (int i = 0; i < m; i++) {
            pmx_fb_report_t r;
            pmx_fb_report_parse(rules, msgs[i].data, msgs[i].len, &r);
            pmx_fb_report_free(&r);
        }
        done += m;
    } while ((t = now() - t0) < seconds);
    double c = cpu() - c0;
    printf("samples %d (avg %zu bytes)\n", m, m ? bytes / (size_t)m : 0);
    printf("reports %ld in %.2f s wall, %.2f s cpu\n", done, t, c);
    printf("reports/s %.0f (per cpu second)\n", done / c);
    for (int i = 0; i < m; i++) pmx_buf_free(&msgs[i]);
    free(msgs);
    pmx_fb_rules_free(rules);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "check") == 0) return check(argv[2], argc - 3, argv + 3);
    if (argc == 4 && strcmp(argv[1], "bench") == 0) return bench(argv[2], atof(argv[3]));
    fprintf(stderr, "usage: fb_corpus check DIR [--min NAME=PCT ...] [-v] | bench DIR SECONDS\n");
    return 2;
}
