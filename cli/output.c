/*
 * What every verb prints with: JSON documents (--json) and the cells of plain
 * text tables. One place so that every listing indents, terminates and fails the
 * same way.
 */
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
