/*
 * `postmux tester add|remove|list` (postmux(1)): a workspace's testers, the
 * recipients that test mode still delivers to (everyone else goes to the
 * catch-all or is suppressed). Addresses are parsed by the one address parser
 * (lib/addr.h) and stored lowercased, as test mode compares them.
 *
 * `add` of an address that is already a tester succeeds and says so (adding
 * is idempotent, so scripts can re-run it); `remove` of an address that is not
 * a tester is an error, since it most likely is a typo. The statements are
 * shared with API v1 (sql/q_admin.h); a change writes audit_log as "cli".
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/cli.h"
#include "lib/addr.h"
#include "lib/mem.h"
#include "sql/q_admin.h"

static const char usage_text[] =
    "usage: postmux tester add WS ADDR\n"
    "       postmux tester remove WS ADDR\n"
    "       postmux tester list WS [--json]\n"
    "WS is a workspace id (ws_...) or name.\n";

/*
 * Parses sub's options: only --json (list) and --help. Leaves the positional
 * arguments at argv[optind..argc). Returns -1 to go on, else an exit code.
 */
static int parse_opts(int argc, char **argv, bool allow_json, bool *json)
{
    static const struct option longopts[] = {
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int ch;
    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if (ch == 'h') {
            fputs(usage_text, stdout);
            return PMX_EXIT_OK;
        }
        if (ch == 'j' && allow_json) {
            *json = true;
            continue;
        }
        return pmx_cli_usage("tester %s: unknown option %s", argv[0], argv[optind - 1]);
    }
    return -1;
}

/*
 * The parsed address of ADDR (display name dropped), or NULL after an error.
 * Lowercasing is left to Postgres's lower(), the same function the table's
 * CHECK uses, so non-ASCII letters agree too.
 */
static char *tester_address(const char *s)
{
    pmx_addr_t a;
    char err[256];
    if (pmx_addr_parse(s, strlen(s), &a, err, sizeof err) < 0) {
        pmx_cli_error("bad tester address: %s", err);
        return NULL;
    }
    char *addr = a.addr;
    a.addr = NULL;
    pmx_addr_free(&a);
    return addr;
}

static int tester_change(pmx_cli_t *c, int argc, char **argv, bool add)
{
    bool json = false;
    int rc = parse_opts(argc, argv, false, &json);
    if (rc >= 0) return rc;
    if (argc - optind != 2) return pmx_cli_usage("usage: tester %s WS ADDR", argv[0]);

    char *addr = tester_address(argv[optind + 1]);
    if (!addr) return PMX_EXIT_USER;
    char id[32];
    if (pmx_cli_workspace_id(c, argv[optind], id) < 0) {
        free(addr);
        return PMX_EXIT_USER;
    }

    /* One row back: the stored (lowercased) form, and whether a row changed. */
    const char *params[3] = { "cli", id, addr };
    PGresult *res = pmx_cli_query(c, add ? pmx_sql_tester_add : pmx_sql_tester_remove, 3, params);
    free(addr);
    if (!res) return PMX_EXIT_USER;
    addr = pmx_xstrdup(PQgetvalue(res, 0, 0));
    bool changed = strcmp(PQgetvalue(res, 0, 1), "1") == 0;
    PQclear(res);

    rc = PMX_EXIT_OK;
    if (add)
        printf(changed ? "added tester %s to %s\n" : "%s is already a tester of %s\n", addr, id);
    else if (changed)
        printf("removed tester %s from %s\n", addr, id);
    else
        rc = pmx_cli_error("not a tester of %s: %s", id, addr);
    free(addr);
    return rc;
}

static int tester_list(pmx_cli_t *c, int argc, char **argv)
{
    bool json = false;
    int rc = parse_opts(argc, argv, true, &json);
    if (rc >= 0) return rc;
    if (argc - optind != 1) return pmx_cli_usage("usage: tester list WS [--json]");

    char id[32];
    if (pmx_cli_workspace_id(c, argv[optind], id) < 0) return PMX_EXIT_USER;
    const char *params[1] = { id };
    PGresult *res = pmx_cli_query(c, pmx_sql_tester_list, 1, params);
    if (!res) return PMX_EXIT_USER;
    int n = PQntuples(res);

    if (json) {
        json_t *a = json_array();
        for (int r = 0; r < n; r++) {
            json_t *o = json_object();
            json_object_set_new(o, "address", json_string(PQgetvalue(res, r, 0)));
            json_object_set_new(o, "created_at", json_string(PQgetvalue(res, r, 1)));
            json_array_append_new(a, o);
        }
        PQclear(res);
        return pmx_cli_print_json(a);
    }

    int w = (int)strlen("ADDRESS");
    for (int r = 0; r < n; r++) {
        int len = (int)strlen(PQgetvalue(res, r, 0));
        if (len > w) w = len;
    }
    printf("%-*s  %s\n", w, "ADDRESS", "ADDED");
    for (int r = 0; r < n; r++) printf("%-*s  %s\n", w, PQgetvalue(res, r, 0), PQgetvalue(res, r, 1));
    PQclear(res);
    return PMX_EXIT_OK;
}

static int tester_add(pmx_cli_t *c, int argc, char **argv)
{
    return tester_change(c, argc, argv, true);
}

static int tester_remove(pmx_cli_t *c, int argc, char **argv)
{
    return tester_change(c, argc, argv, false);
}

int pmx_cli_tester(pmx_cli_t *c, int argc, char **argv)
{
    static const pmx_cli_sub_t subs[] = {
        { "add", tester_add }, { "remove", tester_remove }, { "list", tester_list },
    };
    return pmx_cli_dispatch(c, argc, argv, usage_text, subs, sizeof subs / sizeof subs[0]);
}
