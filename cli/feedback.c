/*
 * `postmux feedback parse [--rules FILE] [FILE|-]`: reads one returned report (a
 * bounce, a delay notice, a complaint, an auto-reply) and prints what postmux
 * reads from it as one JSON object (docs/feedback.md, "Reading
 * reports"). Needs no config, Postgres or Redis: the parser is pure
 * (inbound/report.h), so this verb is how an operator checks what a report
 * will do before it arrives.
 *
 * Rules: --rules FILE, else the installed PMX_SHAREDIR/bounce-rules.conf when
 * it exists, else the copy compiled into the binary.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "inbound/report.h"
#include "inbound/report_json.h"
#include "lib/buf.h"

#ifndef PMX_SHAREDIR
#define PMX_SHAREDIR "/usr/local/share/postmux"
#endif

#define REPORT_MAX (64 * 1024 * 1024)   /* far above [inbound] max_message_size */

static const char *help =
    "usage: postmux feedback parse [--rules FILE] [FILE|-]\n"
    "Reads one report (a DSN, an ARF complaint, an auto-reply or a plain-text bounce)\n"
    "from FILE or standard input and prints what postmux reads from it as JSON.\n"
    "  --rules FILE   bounce classification rules (default: " PMX_SHAREDIR "/bounce-rules.conf\n"
    "                 when installed, else the built-in copy)\n";

static int read_all(const char *path, pmx_buf_t *out)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) return pmx_cli_error("cannot open %s: %s", path, strerror(errno));
    char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (out->len + got > REPORT_MAX) {
            if (f != stdin) fclose(f);
            return pmx_cli_error("%s: larger than 64 MiB", path);
        }
        pmx_buf_append(out, chunk, got);
    }
    int bad = ferror(f);
    if (f != stdin) fclose(f);
    if (bad) return pmx_cli_error("cannot read %s", path);
    return PMX_EXIT_OK;
}

static int parse_cmd(int argc, char **argv)
{
    static const struct option opts[] = {
        { "rules", required_argument, NULL, 'r' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *rules_path = NULL;
    int ch, rc = PMX_EXIT_USAGE;
    pmx_cli_opts_start();
    while ((ch = pmx_cli_next_opt("feedback", argc, argv, opts, &rc)) != -1) {
        switch (ch) {
        case 'r': rules_path = optarg; break;
        case 'h': fputs(help, stdout); return PMX_EXIT_OK;
        default: return rc;
        }
    }
    if (argc - optind > 1) return pmx_cli_usage("usage: feedback parse [--rules FILE] [FILE|-]");
    const char *path = argc - optind == 1 ? argv[optind] : "-";

    pmx_fb_rules_t *rules = NULL;
    char err[512];
    const char *installed = PMX_SHAREDIR "/bounce-rules.conf";
    if (!rules_path && access(installed, R_OK) == 0) rules_path = installed;
    if (rules_path) {
        if (pmx_fb_rules_load_file(rules_path, &rules, err, sizeof err) < 0)
            return pmx_cli_error("bounce rules: %s", err);
    } else if (!(rules = pmx_fb_rules_builtin())) {
        return pmx_cli_error("the built-in bounce rules do not compile");
    }

    pmx_buf_t in = PMX_BUF_INIT;
    rc = read_all(path, &in);
    if (rc == PMX_EXIT_OK) {
        pmx_fb_report_t rep;
        pmx_fb_report_parse(rules, in.data, in.len, &rep);
        json_t *j = pmx_fb_report_json(&rep);
        pmx_fb_report_free(&rep);
        rc = j ? pmx_cli_print_json(j) : pmx_cli_error("cannot build the JSON output");
    }
    pmx_buf_free(&in);
    pmx_fb_rules_free(rules);
    return rc;
}

int pmx_cli_feedback(pmx_cli_t *c, int argc, char **argv)
{
    (void)c;
    if (argc < 2) return pmx_cli_usage("usage: feedback parse [--rules FILE] [FILE|-]");
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        fputs(help, stdout);
        return PMX_EXIT_OK;
    }
    if (strcmp(argv[1], "parse") == 0) return parse_cmd(argc - 1, argv + 1);
    return pmx_cli_usage("feedback: unknown command '%s'", argv[1]);
}
