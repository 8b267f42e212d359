/*
 * What every verb prints with: JSON documents (--json) and the cells of plain
 * text tables. One place so that every listing indents, terminates and fails the
 * same way.
 */
#include <getopt.h>
#include <stdio.h>

#include "cli/cli.h"

int pmx_cli_print_json(json_t *j)
{
    int rc = json_dumpf(j, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(15));
    json_decref(j);
    if (rc < 0) return pmx_cli_error("cannot write JSON output");
    fputc('\n', stdout);
    return PMX_EXIT_OK;
}

json_t *pmx_cli_json_text_or_null(const PGresult *res, int r, int c)
{
    return PQgetisnull(res, r, c) ? json_null() : json_string(PQgetvalue(res, r, c));
}

int pmx_cli_text_width(const char *s)
{
    int n = 0;
    for (; *s; s++) n += ((*s & 0xc0) != 0x80);
    return n;
}

void pmx_cli_print_cell(const char *s, int width, bool right)
{
    int pad = width - pmx_cli_text_width(s);
    if (pad < 0) pad = 0;
    if (right) printf("%*s%s", pad, "", s);
    else printf("%s%*s", s, pad, "");
}

int pmx_cli_list_args(pmx_cli_t *c, int argc, char **argv, const char *verb,
                      const char *help, bool *json, char *ws_id)
{
    static const struct option opts[] = {
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int ch;
    *json = false;
    ws_id[0] = '\0';
    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'j': *json = true; break;
        case 'h': fputs(help, stdout); return PMX_EXIT_OK;
        default: return pmx_cli_usage("%s list: unknown option %s", verb, argv[optind - 1]);
        }
    }
    if (argc - optind > 1) return pmx_cli_usage("usage: %s list [WS] [--json]", verb);
    if (argc - optind == 1 && pmx_cli_workspace_id(c, argv[optind], ws_id) < 0)
        return PMX_EXIT_USER;
    return -1;
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
