/*
 * `postmux audit [--workspace WS] [--since 24h] [--json]` (postmux(1),
 * docs/http.md "Audit log"): the changes made through API v1 and the CLI,
 * oldest first: when, who (an API key id or "cli"), the workspace ("-" for the
 * organization), the action and its target. --since takes the config's
 * durations (30m, 24h, 7d) or "all"; default 24h.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "sql/q_admin.h"

static const char usage_text[] =
    "usage: postmux audit [--workspace WS] [--since 24h|7d|all] [--json]\n"
    "Changes made through API v1 and the CLI, oldest first.\n";

static const char *const cols[] = { "at", "api_key_id", "workspace_id", "action", "target" };
#define N_COLS 5

int pmx_cli_audit(pmx_cli_t *c, int argc, char **argv)
{
    pmx_cli_window_t win;
    int done = pmx_cli_window_opts(c, "audit", argc, argv, usage_text, "24h", &win);
    if (done >= 0) return done;

    const char *params[2] = { win.has_ws ? win.ws_id : NULL, win.since_ms[0] ? win.since_ms : NULL };
    PGresult *res = pmx_cli_query(c, pmx_sql_audit_list, 2, params);
    if (!res) return PMX_EXIT_USER;
    int n = PQntuples(res);
    if (win.json) {
        json_t *a = json_array();
        for (int r = 0; r < n; r++) {
            json_t *o = json_object();
            for (int k = 0; k < N_COLS; k++)
                json_object_set_new(o, cols[k], pmx_cli_json_text_or_null(res, r, k));
            json_array_append_new(a, o);
        }
        PQclear(res);
        return pmx_cli_print_json(a);
    }
    static const char *const head[N_COLS] = { "AT", "BY", "WORKSPACE", "ACTION", "TARGET" };
    int w[N_COLS];
    for (int k = 0; k < N_COLS; k++) w[k] = (int)strlen(head[k]);
    for (int r = 0; r < n; r++)
        for (int k = 0; k < N_COLS - 1; k++) {
            int cw = PQgetisnull(res, r, k) ? 1 : pmx_cli_text_width(PQgetvalue(res, r, k));
            if (cw > w[k]) w[k] = cw;
        }
    for (int k = 0; k < N_COLS; k++) {
        if (k < N_COLS - 1) {
            pmx_cli_print_cell(head[k], w[k], false);
            fputs("  ", stdout);
        } else {
            puts(head[k]);
        }
    }
    for (int r = 0; r < n; r++)
        for (int k = 0; k < N_COLS; k++) {
            const char *cell = PQgetisnull(res, r, k) ? "-" : PQgetvalue(res, r, k);
            if (k < N_COLS - 1) {
                pmx_cli_print_cell(cell, w[k], false);
                fputs("  ", stdout);
            } else {
                puts(cell);
            }
        }
    PQclear(res);
    return PMX_EXIT_OK;
}
