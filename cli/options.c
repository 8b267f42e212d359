/*
 * Option parsing shared by the verbs: sub-verb dispatch, getopt_long with our own
 * messages, and the "VERB list [WS] [--json]" form several verbs have.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

int pmx_cli_dispatch(pmx_cli_t *c, int argc, char **argv, const char *usage,
                     const pmx_cli_sub_t *subs, size_t n)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return PMX_EXIT_USAGE;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0) {
        fputs(usage, stdout);
        return PMX_EXIT_OK;
    }
    for (size_t i = 0; i < n; i++)
        if (strcmp(sub, subs[i].name) == 0) return subs[i].run(c, argc - 1, argv + 1);
    char known[256] = "";
    for (size_t i = 0; i < n; i++)
        snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "",
                 subs[i].name);
    return pmx_cli_usage("unknown %s subcommand '%s' (%s)", argv[0], sub, known);
}

void pmx_cli_opts_start(void)
{
    optind = 1;
    opterr = 0;
}

int pmx_cli_next_opt(const char *verb, int argc, char **argv, const struct option *longopts,
                     int *rc)
{
    int ch = getopt_long(argc, argv, ":h", longopts, NULL);
    if (ch == '?') {
        *rc = pmx_cli_usage("%s %s: unknown option %s", verb, argv[0], argv[optind - 1]);
    } else if (ch == ':') {
        *rc = pmx_cli_usage("%s %s: %s needs a value", verb, argv[0], argv[optind - 1]);
        ch = '?';
    }
    return ch;
}

int pmx_cli_list_args(pmx_cli_t *c, int argc, char **argv, const char *verb,
                      const char *help, bool *json, char *ws_id)
{
    static const struct option opts[] = {
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int ch, rc = PMX_EXIT_USAGE;
    *json = false;
    ws_id[0] = '\0';
    pmx_cli_opts_start();
    while ((ch = pmx_cli_next_opt(verb, argc, argv, opts, &rc)) != -1) {
        switch (ch) {
        case 'j': *json = true; break;
        case 'h': fputs(help, stdout); return PMX_EXIT_OK;
        default: return rc;
        }
    }
    if (argc - optind > 1) return pmx_cli_usage("usage: %s list [WS] [--json]", verb);
    if (argc - optind == 1 && pmx_cli_workspace_id(c, argv[optind], ws_id) < 0)
        return PMX_EXIT_USER;
    return -1;
}
