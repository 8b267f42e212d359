/*
 * `postmux workspace create|list|show|set` (postmux(1)): the client workspaces and
 * their sending policy (rate, burst, daily quota, test mode, suspension).
 *
 * Every value is checked before anything is written, and `set` writes all its
 * changes in one UPDATE, so a bad option leaves the workspace exactly as it was.
 * Workers cache these settings and refresh on the postmux_settings NOTIFY that
 * a trigger sends for each change (sql/001_init.sql). The checks, the UPDATE
 * and the JSON form are shared with API v1 (sql/q_workspace.h); every change
 * writes audit_log as "cli".
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "cli/cli.h"
#include "cli/ws_route.h"
#include "lib/addr.h"
#include "lib/buf.h"
#include "lib/encode.h"
#include "lib/mem.h"
#include "lib/rate.h"
#include "sql/q_workspace.h"

static const char usage_text[] =
    "usage: postmux workspace create NAME [--industry I] [--website URL]\n"
    "       postmux workspace list [--json]\n"
    "       postmux workspace show WS [--json]\n"
    "       postmux workspace set WS [--name N] [--rate 50/s|3000/m|100000/h|unlimited]\n"
    "                         [--burst N] [--daily-quota N|none] [--test-mode on|off]\n"
    "                         [--catch-all ADDR|none] [--suspend|--resume]\n"
    "                         [--max-bounce-rate PCT|none|default]\n"
    "                         [--max-complaint-rate PCT|none|default]\n"
    "                         [--pool NAME|default]\n"
    "                         [--route default|mx|smtp://[USER@]HOST:PORT[?tls=none]|\n"
    "                                  smtps://[USER@]HOST:PORT] [--route-password-file F]\n"
    "WS is a workspace id (ws_...) or name. --resume also lifts a pause of the\n"
    "reputation guard and starts its window afresh.\n";

/* Shortcuts to the shared columns (sql/q_workspace.h). */
enum {
    COL_ID = PMX_WS_COL_ID, COL_NAME = PMX_WS_COL_NAME, COL_INDUSTRY = PMX_WS_COL_INDUSTRY,
    COL_WEBSITE = PMX_WS_COL_WEBSITE, COL_TEST_MODE = PMX_WS_COL_TEST_MODE,
    COL_CATCH_ALL = PMX_WS_COL_CATCH_ALL, COL_BURST = PMX_WS_COL_BURST,
    COL_QUOTA = PMX_WS_COL_QUOTA, COL_SUSPENDED = PMX_WS_COL_SUSPENDED,
    COL_CREATED = PMX_WS_COL_CREATED, COL_UPDATED = PMX_WS_COL_UPDATED,
    COL_TESTERS = PMX_WS_COL_TESTERS, COL_DOMAINS = PMX_WS_COL_DOMAINS,
    COL_VERIFIED = PMX_WS_COL_VERIFIED, COL_SUSPENDED_AT = PMX_WS_COL_SUSPENDED_AT,
    COL_PAUSED_AT = PMX_WS_COL_PAUSED_AT, COL_PAUSE_REASON = PMX_WS_COL_PAUSE_REASON,
    COL_MAX_BOUNCE = PMX_WS_COL_MAX_BOUNCE, COL_MAX_COMPLAINT = PMX_WS_COL_MAX_COMPLAINT,
    COL_POOL = PMX_WS_COL_POOL, COL_ROUTE = PMX_WS_COL_ROUTE,
    COL_ROUTE_PASSWORD = PMX_WS_COL_ROUTE_PASSWORD,
};

static bool col_null(const PGresult *res, int r, int col) { return PQgetisnull(res, r, col); }
static const char *col(const PGresult *res, int r, int c) { return PQgetvalue(res, r, c); }
static bool col_bool(const PGresult *res, int r, int c) { return col(res, r, c)[0] == 't'; }
#define rate_text  pmx_ws_rate_text
#define limit_text pmx_ws_limit_text
#define ws_json    pmx_ws_json

/* The `show` form of one workspace, also printed after `set`. */
static void ws_print(const PGresult *res, int r)
{
    char rate[64];
    rate_text(res, r, rate, sizeof rate);
    const char *dash = "-";
    printf("id:          %s\n", col(res, r, COL_ID));
    printf("name:        %s\n", col(res, r, COL_NAME));
    printf("industry:    %s\n", col_null(res, r, COL_INDUSTRY) ? dash : col(res, r, COL_INDUSTRY));
    printf("website:     %s\n", col_null(res, r, COL_WEBSITE) ? dash : col(res, r, COL_WEBSITE));
    printf("test_mode:   %s\n", col_bool(res, r, COL_TEST_MODE) ? "on" : "off");
    printf("catch_all:   %s\n",
           col_null(res, r, COL_CATCH_ALL) ? "none" : col(res, r, COL_CATCH_ALL));
    printf("rate:        %s\n", rate);
    printf("burst:       %s\n", col(res, r, COL_BURST));
    printf("daily_quota: %s\n", col_null(res, r, COL_QUOTA) ? "none" : col(res, r, COL_QUOTA));
    printf("suspended:   %s\n", col_bool(res, r, COL_SUSPENDED) ? "yes" : "no");
    printf("suspended_at: %s\n",
           col_null(res, r, COL_SUSPENDED_AT) ? dash : col(res, r, COL_SUSPENDED_AT));
    char lb[32], lc[32];
    printf("paused:      %s\n", col_null(res, r, COL_PAUSED_AT) ? "no" : "yes");
    printf("paused_at:   %s\n", col_null(res, r, COL_PAUSED_AT) ? dash : col(res, r, COL_PAUSED_AT));
    printf("pause_reason: %s\n",
           col_null(res, r, COL_PAUSE_REASON) ? dash : col(res, r, COL_PAUSE_REASON));
    printf("max_bounce_rate: %s\n", limit_text(res, r, COL_MAX_BOUNCE, lb, sizeof lb));
    printf("max_complaint_rate: %s\n", limit_text(res, r, COL_MAX_COMPLAINT, lc, sizeof lc));
    printf("pool:        %s\n", col(res, r, COL_POOL));
    printf("route:       %s\n", col(res, r, COL_ROUTE));
    printf("route_password: %s\n", col_bool(res, r, COL_ROUTE_PASSWORD) ? "set" : "-");
    printf("testers:     %s\n", col(res, r, COL_TESTERS));
    printf("domains:     %s (%s verified)\n", col(res, r, COL_DOMAINS),
           col(res, r, COL_VERIFIED));
    printf("created_at:  %s\n", col(res, r, COL_CREATED));
    printf("updated_at:  %s\n", col(res, r, COL_UPDATED));
}

/* Reads one workspace by id and prints it (text or JSON). */
static int ws_show_id(pmx_cli_t *c, const char *id, bool json)
{
    const char *params[1] = { id };
    pmx_buf_t sql = PMX_BUF_INIT;
    pmx_buf_appendf(&sql, "%s WHERE w.id = $1", pmx_sql_ws_select);
    PGresult *res = pmx_cli_query(c, pmx_buf_cstr(&sql), 1, params);
    pmx_buf_free(&sql);
    if (!res) return PMX_EXIT_USER;
    if (PQntuples(res) != 1) {
        PQclear(res);
        return pmx_cli_error("unknown workspace: %s", id);
    }
    int rc = PMX_EXIT_OK;
    if (json)
        rc = pmx_cli_print_json(ws_json(res, 0, true));
    else
        ws_print(res, 0);
    PQclear(res);
    return rc;
}

/* ---- subcommands ---- */

static int ws_create(pmx_cli_t *c, int argc, char **argv)
{
    static const struct option longopts[] = {
        { "industry", required_argument, NULL, 'i' },
        { "website", required_argument, NULL, 'w' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *industry = NULL, *website = NULL;
    int ch, rc = PMX_EXIT_USAGE;
    pmx_cli_opts_start();
    while ((ch = pmx_cli_next_opt("workspace", argc, argv, longopts, &rc)) != -1) {
        switch (ch) {
        case 'i': industry = optarg; break;
        case 'w': website = optarg; break;
        case 'h': fputs(usage_text, stdout); return PMX_EXIT_OK;
        default: return rc;
        }
    }
    if (argc - optind != 1) return pmx_cli_usage("usage: workspace create NAME [--industry I] [--website URL]");
    const char *name = argv[optind];

    char err[400];
    if (pmx_ws_check_name(name, err, sizeof err) < 0 ||
        (industry && pmx_ws_check_text("--industry", industry, PMX_WS_INDUSTRY_MAX_CHARS, err,
                                       sizeof err) < 0) ||
        (website && pmx_ws_check_website("--website", website, err, sizeof err) < 0))
        return pmx_cli_error("%s", err);

    char id[32];
    if (pmx_random_id("ws_", id, sizeof id) < 0) return pmx_cli_error("no randomness for an id");
    const char *params[5] = { "cli", id, name, industry, website };
    PGresult *res = pmx_cli_query(c, pmx_sql_ws_create, 5, params);
    if (!res) return PMX_EXIT_USER;
    int n = PQntuples(res);
    PQclear(res);
    if (n != 1) return pmx_cli_error("workspace name already exists: %s", name);
    printf("%s\n", id);
    return PMX_EXIT_OK;
}

static int ws_list(pmx_cli_t *c, int argc, char **argv)
{
    static const struct option longopts[] = {
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    bool json = false;
    int ch, rc = PMX_EXIT_USAGE;
    pmx_cli_opts_start();
    while ((ch = pmx_cli_next_opt("workspace", argc, argv, longopts, &rc)) != -1) {
        switch (ch) {
        case 'j': json = true; break;
        case 'h': fputs(usage_text, stdout); return PMX_EXIT_OK;
        default: return rc;
        }
    }
    if (optind != argc) return pmx_cli_usage("usage: workspace list [--json]");

    pmx_buf_t sql = PMX_BUF_INIT;
    pmx_buf_appendf(&sql, "%s ORDER BY w.name", pmx_sql_ws_select);
    PGresult *res = pmx_cli_query(c, pmx_buf_cstr(&sql), 0, NULL);
    pmx_buf_free(&sql);
    if (!res) return PMX_EXIT_USER;
    int n = PQntuples(res);

    if (json) {
        json_t *a = json_array();
        for (int r = 0; r < n; r++) json_array_append_new(a, ws_json(res, r, false));
        PQclear(res);
        return pmx_cli_print_json(a);
    }

    /* A table: widths from the widest cell of each column. */
    enum { NCOL = 7 };
    static const char *const head[NCOL] = { "ID", "NAME", "TEST_MODE", "RATE", "BURST",
                                            "DAILY_QUOTA", "SUSPENDED" };
    char (*rates)[64] = pmx_xcalloc((size_t)n + 1, sizeof *rates);
    int w[NCOL];
    for (int k = 0; k < NCOL; k++) w[k] = (int)strlen(head[k]);
    const char *cell[NCOL];
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            for (int k = 0; k < NCOL; k++)
                printf("%-*s%s", k < NCOL - 1 ? w[k] : 0, head[k], k < NCOL - 1 ? "  " : "\n");
        }
        for (int r = 0; r < n; r++) {
            if (pass == 0) rate_text(res, r, rates[r], sizeof rates[r]);
            cell[0] = col(res, r, COL_ID);
            cell[1] = col(res, r, COL_NAME);
            cell[2] = col_bool(res, r, COL_TEST_MODE) ? "on" : "off";
            cell[3] = rates[r];
            cell[4] = col(res, r, COL_BURST);
            cell[5] = col_null(res, r, COL_QUOTA) ? "none" : col(res, r, COL_QUOTA);
            cell[6] = col_bool(res, r, COL_SUSPENDED) ? "yes" : "no";
            for (int k = 0; k < NCOL; k++) {
                if (pass == 0) {
                    /* Width in characters, not bytes, for UTF-8 names. */
                    int chars = 0;
                    for (const char *p = cell[k]; *p; p++) chars += ((*p & 0xc0) != 0x80);
                    if (chars > w[k]) w[k] = chars;
                } else {
                    int pad = w[k];
                    for (const char *p = cell[k]; *p; p++) pad += ((*p & 0xc0) == 0x80);
                    printf("%-*s%s", k < NCOL - 1 ? pad : 0, cell[k], k < NCOL - 1 ? "  " : "\n");
                }
            }
        }
    }
    free(rates);
    PQclear(res);
    return PMX_EXIT_OK;
}

static int ws_show(pmx_cli_t *c, int argc, char **argv)
{
    static const struct option longopts[] = {
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    bool json = false;
    int ch, rc = PMX_EXIT_USAGE;
    pmx_cli_opts_start();
    while ((ch = pmx_cli_next_opt("workspace", argc, argv, longopts, &rc)) != -1) {
        switch (ch) {
        case 'j': json = true; break;
        case 'h': fputs(usage_text, stdout); return PMX_EXIT_OK;
        default: return rc;
        }
    }
    if (argc - optind != 1) return pmx_cli_usage("usage: workspace show WS [--json]");

    char id[32];
    if (pmx_cli_workspace_id(c, argv[optind], id) < 0) return PMX_EXIT_USER;
    return ws_show_id(c, id, json);
}

static int ws_set(pmx_cli_t *c, int argc, char **argv)
{
    static const struct option longopts[] = {
        { "name", required_argument, NULL, 'n' },
        { "rate", required_argument, NULL, 'r' },
        { "burst", required_argument, NULL, 'b' },
        { "daily-quota", required_argument, NULL, 'q' },
        { "test-mode", required_argument, NULL, 't' },
        { "catch-all", required_argument, NULL, 'a' },
        { "suspend", no_argument, NULL, 'S' },
        { "resume", no_argument, NULL, 'R' },
        { "max-bounce-rate", required_argument, NULL, 'B' },
        { "max-complaint-rate", required_argument, NULL, 'C' },
        { "pool", required_argument, NULL, 'P' },
        { "route", required_argument, NULL, 'T' },
        { "route-password-file", required_argument, NULL, 'W' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    pmx_ws_changes_t chg;
    memset(&chg, 0, sizeof chg);
    const char *name = NULL, *rate = NULL, *burst = NULL, *quota = NULL, *test_mode = NULL;
    const char *catch_all = NULL, *max_bounce = NULL, *max_complaint = NULL;
    const char *pool = NULL, *route = NULL, *route_pw = NULL;
    bool suspend = false, resume = false;
    int ch, rc = PMX_EXIT_USAGE;
    pmx_cli_opts_start();
    while ((ch = pmx_cli_next_opt("workspace", argc, argv, longopts, &rc)) != -1) {
        switch (ch) {
        case 'n': name = optarg; break;
        case 'r': rate = optarg; break;
        case 'b': burst = optarg; break;
        case 'q': quota = optarg; break;
        case 't': test_mode = optarg; break;
        case 'a': catch_all = optarg; break;
        case 'S': suspend = true; break;
        case 'R': resume = true; break;
        case 'B': max_bounce = optarg; break;
        case 'C': max_complaint = optarg; break;
        case 'P': pool = optarg; break;
        case 'T': route = optarg; break;
        case 'W': route_pw = optarg; break;
        case 'h': fputs(usage_text, stdout); return PMX_EXIT_OK;
        default: return rc;
        }
    }
    if (argc - optind != 1)
        return pmx_cli_usage("usage: workspace set WS [--name N] [--rate R] [--burst N] "
                             "[--daily-quota N|none] [--test-mode on|off] "
                             "[--catch-all ADDR|none] [--suspend|--resume] "
                             "[--max-bounce-rate PCT|none] [--max-complaint-rate PCT|none] "
                             "[--pool NAME|default] [--route ROUTE] [--route-password-file F]");
    if (suspend && resume) return pmx_cli_usage("workspace set: --suspend and --resume conflict");
    if (!name && !rate && !burst && !quota && !test_mode && !catch_all && !suspend && !resume
        && !max_bounce && !max_complaint && !pool && !route && !route_pw)
        return pmx_cli_usage("workspace set: nothing to change");

    /* Every value checked before anything is written. */
    char err[400];
    if ((max_bounce && pmx_ws_set_limit(&chg, true, "--max-bounce-rate", max_bounce, err,
                                        sizeof err) < 0) ||
        (max_complaint && pmx_ws_set_limit(&chg, false, "--max-complaint-rate", max_complaint,
                                           err, sizeof err) < 0) ||
        (name && pmx_ws_set_name(&chg, name, err, sizeof err) < 0) ||
        (rate && pmx_ws_set_rate(&chg, "--rate", rate, err, sizeof err) < 0) ||
        (burst && pmx_ws_set_burst(&chg, "--burst", burst, err, sizeof err) < 0) ||
        (quota && pmx_ws_set_quota(&chg, "--daily-quota", quota, err, sizeof err) < 0) ||
        (test_mode && pmx_ws_set_test_mode(&chg, "--test-mode", test_mode, err, sizeof err) < 0) ||
        (catch_all && pmx_ws_set_catch_all(&chg, "--catch-all", catch_all, err, sizeof err) < 0)) {
        pmx_ws_changes_free(&chg);
        return pmx_cli_error("%s", err);
    }
    if (suspend || resume) pmx_ws_set_suspended(&chg, suspend);

    char id[32];
    pmx_cli_ws_route_t rt;
    memset(&rt, 0, sizeof rt);
    if (pmx_cli_workspace_id(c, argv[optind], id) < 0 ||
        pmx_cli_ws_route_prepare(c, id, pool, route, route_pw, &rt) < 0) {
        pmx_cli_ws_route_free(&rt);
        pmx_ws_changes_free(&chg);
        return PMX_EXIT_USER;
    }
    pmx_ws_set_routing(&chg, rt.pool_set, rt.pool, rt.route_set, rt.route, rt.password_set,
                       rt.password_hex, rt.guard_route ? rt.current_route : NULL);

    /* One statement with every change and its audit row: all of them or none. */
    const char *params[PMX_WS_MAX_PARAMS];
    pmx_buf_t sql = PMX_BUF_INIT;
    int np = pmx_ws_update_sql(&chg, "cli", id, &sql, params);

    rc = PMX_EXIT_OK;
    PGconn *pg = pmx_cli_db(c);
    PGresult *res = PQexecParams(pg, pmx_buf_cstr(&sql), np, NULL, params, NULL, NULL, 0);
    pmx_buf_free(&sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (state && strcmp(state, "23505") == 0 && chg.name)
            rc = pmx_cli_error("workspace name already exists: %s", chg.name);
        else
            rc = pmx_cli_error("Postgres: %s", PQresultErrorMessage(res));
    } else if (PQntuples(res) != 1) {
        rc = rt.guard_route ? pmx_cli_error("the workspace's route changed meanwhile; nothing "
                                            "was written")
                            : pmx_cli_error("unknown workspace: %s", argv[optind]);
    }
    PQclear(res);
    pmx_cli_ws_route_free(&rt);
    pmx_ws_changes_free(&chg);
    if (rc != PMX_EXIT_OK) return rc;
    return ws_show_id(c, id, false);
}

int pmx_cli_workspace(pmx_cli_t *c, int argc, char **argv)
{
    static const pmx_cli_sub_t subs[] = {
        { "create", ws_create }, { "list", ws_list }, { "show", ws_show }, { "set", ws_set },
    };
    return pmx_cli_dispatch(c, argc, argv, usage_text, subs, sizeof subs / sizeof subs[0]);
}
