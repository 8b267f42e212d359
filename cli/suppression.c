/*
 * `postmux suppression list|add|remove|check` (postmux(1), docs/feedback.md):
 * a workspace's suppression list, the addresses it never mails again in a
 * scope ('*' = everything, or one job category). Workers follow every change
 * within a second (NOTIFY postmux_suppressions), so no restart is needed.
 *
 * Addresses go through the one address parser (lib/addr.h) and are stored
 * lower-cased by Postgres's lower(), the function the table's CHECK uses.
 * `add` of an existing (address, scope) replaces its reason and detail and
 * clears its expiry: an operator's word is the newest. `remove` of an address
 * that is not on the list is an error (most likely a typo). `check` answers
 * with its exit code, for scripts: 0 suppressed, 3 not. The statements are
 * shared with API v1 (sql/q_admin.h); a change writes audit_log as "cli".
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/cli.h"
#include "inbound/suppress.h"
#include "lib/addr.h"
#include "lib/job.h"
#include "lib/mem.h"
#include "sql/q_admin.h"

#define EXIT_NOT_SUPPRESSED 3
#define DETAIL_MAX          1000

static const char usage_text[] =
    "usage: postmux suppression list WS [--reason R] [--json]\n"
    "       postmux suppression add WS ADDR [--scope C] [--reason R] [--detail TEXT]\n"
    "       postmux suppression remove WS ADDR [--scope C]\n"
    "       postmux suppression check WS ADDR [--category C]\n"
    "WS is a workspace id (ws_...) or name. A scope is '*' (every message, the\n"
    "default) or a job category ([a-z0-9_.-], 1 to 64). Reasons: hard_bounce,\n"
    "soft_bounce, complaint, unsubscribe, manual (the default for add).\n"
    "check exits 0 when the address is suppressed, 3 when it is not.\n";

/* The parsed address (display name dropped), or NULL after an error. */
static char *address_arg(const char *s)
{
    pmx_addr_t a;
    char err[256];
    if (pmx_addr_parse(s, strlen(s), &a, err, sizeof err) < 0) {
        pmx_cli_error("bad address: %s", err);
        return NULL;
    }
    char *addr = a.addr;
    a.addr = NULL;
    pmx_addr_free(&a);
    return addr;
}

/* A scope or category: '*' (only when star_ok) or [a-z0-9_.-]{1,64}. */
static int scope_arg(const char *s, bool star_ok)
{
    if (star_ok && strcmp(s, "*") == 0) return 0;
    return pmx_job_category_valid(s, strlen(s)) ? 0 : -1;
}

static int usage_error(void)
{
    fputs(usage_text, stderr);
    return PMX_EXIT_USAGE;
}

/* ---- add / remove ---- */

static int change(pmx_cli_t *c, int argc, char **argv, bool add)
{
    static const struct option longopts[] = {
        { "scope", required_argument, NULL, 's' },
        { "reason", required_argument, NULL, 'r' },
        { "detail", required_argument, NULL, 'd' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *scope = "*", *reason = "manual", *detail = NULL;
    int ch, rc = PMX_EXIT_USAGE;
    pmx_cli_opts_start();
    while ((ch = pmx_cli_next_opt("suppression", argc, argv, longopts, &rc)) != -1) {
        switch (ch) {
        case 's': scope = optarg; break;
        case 'r':
            if (!add) return pmx_cli_usage("suppression remove: --reason is for add");
            reason = optarg;
            break;
        case 'd':
            if (!add) return pmx_cli_usage("suppression remove: --detail is for add");
            detail = optarg;
            break;
        case 'h': fputs(usage_text, stdout); return PMX_EXIT_OK;
        default: return rc;
        }
    }
    if (argc - optind != 2) return usage_error();
    if (scope_arg(scope, true) < 0)
        return pmx_cli_usage("suppression %s: bad --scope '%s' ('*' or 1-64 of a-z 0-9 _ . -)",
                             argv[0], scope);
    if (pmx_supp_reason_parse(reason) == PMX_SUPP_NONE)
        return pmx_cli_usage("suppression add: unknown --reason '%s' (hard_bounce, soft_bounce, "
                             "complaint, unsubscribe, manual)", reason);
    if (detail && (strlen(detail) > DETAIL_MAX || strpbrk(detail, "\r\n")))
        return pmx_cli_usage("suppression add: --detail must be one line of at most %d bytes",
                             DETAIL_MAX);

    char *addr = address_arg(argv[optind + 1]);
    if (!addr) return PMX_EXIT_USER;
    char id[32];
    if (pmx_cli_workspace_id(c, argv[optind], id) < 0) {
        free(addr);
        return PMX_EXIT_USER;
    }
    PGresult *res;
    if (add) {
        const char *params[6] = { "cli", id, addr, scope, reason, detail };
        res = pmx_cli_query(c, pmx_sql_suppression_add, 6, params);
    } else {
        const char *params[4] = { "cli", id, addr, scope };
        res = pmx_cli_query(c, pmx_sql_suppression_remove, 4, params);
    }
    if (!res) {
        free(addr);
        return PMX_EXIT_USER;
    }
    rc = PMX_EXIT_OK;
    if (add)
        printf("suppressed %s in %s (scope %s, reason %s)\n", PQgetvalue(res, 0, 0), id, scope,
               reason);
    else if (PQntuples(res) == 1)
        printf("removed %s from the suppression list of %s (scope %s)\n", PQgetvalue(res, 0, 0),
               id, scope);
    else
        rc = pmx_cli_error("not suppressed in %s (scope %s): %s", id, scope, addr);
    PQclear(res);
    free(addr);
    return rc;
}

/* ---- list ---- */

static int list(pmx_cli_t *c, int argc, char **argv)
{
    static const struct option longopts[] = {
        { "reason", required_argument, NULL, 'r' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *reason = NULL;
    bool json = false;
    int ch, rc = PMX_EXIT_USAGE;
    pmx_cli_opts_start();
    while ((ch = pmx_cli_next_opt("suppression", argc, argv, longopts, &rc)) != -1) {
        switch (ch) {
        case 'r': reason = optarg; break;
        case 'j': json = true; break;
        case 'h': fputs(usage_text, stdout); return PMX_EXIT_OK;
        default: return rc;
        }
    }
    if (argc - optind != 1) return usage_error();
    if (reason && pmx_supp_reason_parse(reason) == PMX_SUPP_NONE)
        return pmx_cli_usage("suppression list: unknown --reason '%s'", reason);
    char id[32];
    if (pmx_cli_workspace_id(c, argv[optind], id) < 0) return PMX_EXIT_USER;

    const char *params[2] = { id, reason };
    PGresult *res = pmx_cli_query(c, pmx_sql_suppression_list, 2, params);
    if (!res) return PMX_EXIT_USER;
    int n = PQntuples(res);
    if (json) {
        static const char *const keys[] = { "address", "scope", "reason", "detail", "message_id",
                                            "created_at", "expires_at" };
        json_t *a = json_array();
        for (int r = 0; r < n; r++) {
            json_t *o = json_object();
            for (int k = 0; k < 7; k++)
                json_object_set_new(o, keys[k], pmx_cli_json_text_or_null(res, r, k));
            json_array_append_new(a, o);
        }
        PQclear(res);
        return pmx_cli_print_json(a);
    }
    int w = (int)strlen("ADDRESS"), ws = (int)strlen("SCOPE");
    for (int r = 0; r < n; r++) {
        int la = pmx_cli_text_width(PQgetvalue(res, r, 0));
        int ls = (int)strlen(PQgetvalue(res, r, 1));
        if (la > w) w = la;
        if (ls > ws) ws = ls;
    }
    pmx_cli_print_cell("ADDRESS", w, false);
    printf("  %-*s  %-11s  %-20s  %-20s  %s\n", ws, "SCOPE", "REASON", "ADDED", "EXPIRES",
           "DETAIL");
    for (int r = 0; r < n; r++) {
        pmx_cli_print_cell(PQgetvalue(res, r, 0), w, false);
        printf("  %-*s  %-11s  %-20s  %-20s  %s\n", ws, PQgetvalue(res, r, 1),
               PQgetvalue(res, r, 2), PQgetvalue(res, r, 5),
               PQgetisnull(res, r, 6) ? "never" : PQgetvalue(res, r, 6), PQgetvalue(res, r, 3));
    }
    PQclear(res);
    return PMX_EXIT_OK;
}

/* ---- check ---- */

static int check(pmx_cli_t *c, int argc, char **argv)
{
    static const struct option longopts[] = {
        { "category", required_argument, NULL, 'c' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *category = NULL;
    int ch, rc = PMX_EXIT_USAGE;
    pmx_cli_opts_start();
    while ((ch = pmx_cli_next_opt("suppression", argc, argv, longopts, &rc)) != -1) {
        switch (ch) {
        case 'c': category = optarg; break;
        case 'h': fputs(usage_text, stdout); return PMX_EXIT_OK;
        default: return rc;
        }
    }
    if (argc - optind != 2) return usage_error();
    if (category && scope_arg(category, false) < 0)
        return pmx_cli_usage("suppression check: bad --category '%s' (1-64 of a-z 0-9 _ . -)",
                             category);
    char *addr = address_arg(argv[optind + 1]);
    if (!addr) return PMX_EXIT_USER;
    char id[32];
    if (pmx_cli_workspace_id(c, argv[optind], id) < 0) {
        free(addr);
        return PMX_EXIT_USER;
    }
    /* The same rule as the workers: scope '*' first, then the category. */
    const char *params[3] = { id, addr, category };
    PGresult *res = pmx_cli_query(c,
        "SELECT address, scope, reason, COALESCE(detail, '') FROM suppressions"
        " WHERE workspace_id = $1 AND address = lower($2)"
        "   AND (scope = '*' OR scope = $3)"
        "   AND (expires_at IS NULL OR expires_at > now())"
        " ORDER BY scope = '*' DESC LIMIT 1",
        3, params);
    free(addr);
    if (!res) return PMX_EXIT_USER;
    if (PQntuples(res) == 1) {
        printf("suppressed: %s (scope %s, reason %s%s%s)\n", PQgetvalue(res, 0, 0),
               PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2), *PQgetvalue(res, 0, 3) ? ": " : "",
               PQgetvalue(res, 0, 3));
        rc = PMX_EXIT_OK;
    } else {
        printf("not suppressed\n");
        rc = EXIT_NOT_SUPPRESSED;
    }
    PQclear(res);
    return rc;
}

static int add(pmx_cli_t *c, int argc, char **argv)
{
    return change(c, argc, argv, true);
}

static int remove_(pmx_cli_t *c, int argc, char **argv)
{
    return change(c, argc, argv, false);
}

int pmx_cli_suppression(pmx_cli_t *c, int argc, char **argv)
{
    static const pmx_cli_sub_t subs[] = {
        { "list", list }, { "add", add }, { "remove", remove_ }, { "check", check },
    };
    return pmx_cli_dispatch(c, argc, argv, usage_text, subs, sizeof subs / sizeof subs[0]);
}
