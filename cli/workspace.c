/*
 * `postmux workspace create|list|show|set` (postmux(1)): the client workspaces and
 * their sending policy (rate, burst, daily quota, test mode, suspension).
 *
 * Every value is checked before anything is written, and `set` writes all its
 * changes in one UPDATE, so a bad option leaves the workspace exactly as it was.
 * Workers cache these settings and refresh on the postmux_settings NOTIFY that
 * a trigger sends for each change (sql/001_init.sql).
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
#include "lib/utf8.h"

#define NAME_MAX_CHARS     200
#define INDUSTRY_MAX_CHARS 200
#define WEBSITE_MAX_CHARS  2000
#define BURST_MAX          1000000

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

/* ---- input checks: each prints its own one-line error and returns -1 ---- */

/*
 * Text a person typed for a name-like field: well-formed UTF-8, no control
 * characters (C0, DEL, C1), 1..max characters.
 */
static int check_text(const char *what, const char *s, size_t max_chars)
{
    size_t n = strlen(s), chars = 0;
    if (n == 0) {
        pmx_cli_error("%s is empty", what);
        return -1;
    }
    for (size_t i = 0; i < n; chars++) {
        unsigned cp;
        size_t len = pmx_utf8_seq(s + i, n - i, &cp);
        if (len == 0) {
            pmx_cli_error("%s is not valid UTF-8", what);
            return -1;
        }
        if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0)) {
            pmx_cli_error("%s contains a control character", what);
            return -1;
        }
        i += len;
    }
    if (chars > max_chars) {
        pmx_cli_error("%s is longer than %zu characters", what, max_chars);
        return -1;
    }
    return 0;
}

static bool looks_like_id(const char *s)
{
    if (strncmp(s, "ws_", 3) != 0 || strlen(s) != 19) return false;
    for (const char *p = s + 3; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '2' && *p <= '7'))) return false;
    return true;
}

static int check_name(const char *s)
{
    if (check_text("workspace name", s, NAME_MAX_CHARS) < 0) return -1;
    size_t n = strlen(s);
    if (s[0] == ' ' || s[n - 1] == ' ') {
        pmx_cli_error("workspace name has leading or trailing spaces: '%s'", s);
        return -1;
    }
    /* WS arguments take an id or a name: a name shaped like an id would be ambiguous. */
    if (looks_like_id(s)) {
        pmx_cli_error("workspace name cannot look like a workspace id: %s", s);
        return -1;
    }
    return 0;
}

/* http(s)://HOST..., no spaces, at most WEBSITE_MAX_CHARS. */
static int check_website(const char *s)
{
    if (check_text("--website", s, WEBSITE_MAX_CHARS) < 0) return -1;
    size_t skip = strncasecmp(s, "http://", 7) == 0    ? 7
                  : strncasecmp(s, "https://", 8) == 0 ? 8
                                                       : 0;
    const char *host = s + skip;
    if (skip == 0 || *host == '\0' || strchr("/?#", *host) || strpbrk(s, " \t")) {
        pmx_cli_error("--website must be an http:// or https:// URL: %s", s);
        return -1;
    }
    return 0;
}

/* A whole decimal number 1..max, digits only. */
static int parse_count(const char *opt, const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    const char *p = s;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (UINT64_MAX - 9) / 10) break;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    if (p == s || *p != '\0' || v < 1 || v > max) {
        pmx_cli_error("%s must be a whole number from 1 to %llu: %s", opt,
                      (unsigned long long)max, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* ---- reading and printing workspaces ---- */

/* Columns of WS_SELECT, in order. */
enum {
    COL_ID, COL_NAME, COL_INDUSTRY, COL_WEBSITE, COL_TEST_MODE, COL_CATCH_ALL, COL_RATE,
    COL_BURST, COL_QUOTA, COL_SUSPENDED, COL_CREATED, COL_UPDATED,
    COL_TESTERS, COL_DOMAINS, COL_VERIFIED, COL_SUSPENDED_AT,
    COL_PAUSED_AT, COL_PAUSE_REASON, COL_MAX_BOUNCE, COL_MAX_COMPLAINT,
    COL_POOL, COL_ROUTE, COL_ROUTE_PASSWORD
};

#define ISO_UTC(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
#define WS_SELECT                                                                          \
    "SELECT w.id, w.name, w.industry, w.website, w.test_mode, w.catch_all,"                \
    " w.rate_per_second, w.burst, w.daily_quota, w.suspended, "                            \
    ISO_UTC("w.created_at") ", " ISO_UTC("w.updated_at") ","                              \
    " (SELECT count(*) FROM workspace_testers t WHERE t.workspace_id = w.id),"             \
    " (SELECT count(*) FROM domains d WHERE d.workspace_id = w.id),"                       \
    " (SELECT count(*) FROM domains d WHERE d.workspace_id = w.id"                         \
    "   AND d.verified_at IS NOT NULL), "                                                  \
    ISO_UTC("w.suspended_at") ", " ISO_UTC("w.paused_at") ", w.pause_reason,"             \
    " trim_scale(w.max_bounce_rate), trim_scale(w.max_complaint_rate),"                   \
    " COALESCE(w.pool, 'default'), COALESCE(w.route, 'default'),"                         \
    " w.route_password_enc IS NOT NULL"                                                    \
    " FROM workspaces w"

static bool col_null(const PGresult *res, int r, int col) { return PQgetisnull(res, r, col); }
static const char *col(const PGresult *res, int r, int c) { return PQgetvalue(res, r, c); }
static bool col_bool(const PGresult *res, int r, int c) { return col(res, r, c)[0] == 't'; }

static void rate_text(const PGresult *res, int r, char *out, size_t outlen)
{
    bool unlimited = col_null(res, r, COL_RATE);
    pmx_rate_spec_format(unlimited ? 0 : strtod(col(res, r, COL_RATE), NULL), unlimited, out,
                         outlen);
}

static json_t *json_text_or_null(const PGresult *res, int r, int c)
{
    return col_null(res, r, c) ? json_null() : json_string(col(res, r, c));
}

/* A workspace's guard limit as written: "10%", "none", or "default" (NULL). */
static const char *limit_text(const PGresult *res, int r, int c, char *buf, size_t n)
{
    if (col_null(res, r, c)) return "default";
    if (strcmp(col(res, r, c), "Infinity") == 0) return "none";
    snprintf(buf, n, "%s%%", col(res, r, c));
    return buf;
}

static json_t *ws_json(const PGresult *res, int r, bool counts)
{
    char rate[64];
    rate_text(res, r, rate, sizeof rate);
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(col(res, r, COL_ID)));
    json_object_set_new(o, "name", json_string(col(res, r, COL_NAME)));
    json_object_set_new(o, "industry", json_text_or_null(res, r, COL_INDUSTRY));
    json_object_set_new(o, "website", json_text_or_null(res, r, COL_WEBSITE));
    json_object_set_new(o, "test_mode", json_boolean(col_bool(res, r, COL_TEST_MODE)));
    json_object_set_new(o, "catch_all", json_text_or_null(res, r, COL_CATCH_ALL));
    json_object_set_new(o, "rate_per_second",
                        col_null(res, r, COL_RATE)
                            ? json_null()
                            : json_real(strtod(col(res, r, COL_RATE), NULL)));
    json_object_set_new(o, "rate", json_string(rate));
    json_object_set_new(o, "burst", json_integer(strtoll(col(res, r, COL_BURST), NULL, 10)));
    json_object_set_new(o, "daily_quota",
                        col_null(res, r, COL_QUOTA)
                            ? json_null()
                            : json_integer(strtoll(col(res, r, COL_QUOTA), NULL, 10)));
    json_object_set_new(o, "suspended", json_boolean(col_bool(res, r, COL_SUSPENDED)));
    json_object_set_new(o, "suspended_at", json_text_or_null(res, r, COL_SUSPENDED_AT));
    char lb[32], lc[32];
    json_object_set_new(o, "paused", json_boolean(!col_null(res, r, COL_PAUSED_AT)));
    json_object_set_new(o, "paused_at", json_text_or_null(res, r, COL_PAUSED_AT));
    json_object_set_new(o, "pause_reason", json_text_or_null(res, r, COL_PAUSE_REASON));
    json_object_set_new(o, "max_bounce_rate",
                        json_string(limit_text(res, r, COL_MAX_BOUNCE, lb, sizeof lb)));
    json_object_set_new(o, "max_complaint_rate",
                        json_string(limit_text(res, r, COL_MAX_COMPLAINT, lc, sizeof lc)));
    json_object_set_new(o, "pool", json_string(col(res, r, COL_POOL)));
    json_object_set_new(o, "route", json_string(col(res, r, COL_ROUTE)));
    json_object_set_new(o, "route_password", json_boolean(col_bool(res, r, COL_ROUTE_PASSWORD)));
    json_object_set_new(o, "created_at", json_string(col(res, r, COL_CREATED)));
    json_object_set_new(o, "updated_at", json_string(col(res, r, COL_UPDATED)));
    if (counts) {
        json_object_set_new(o, "tester_count",
                            json_integer(strtoll(col(res, r, COL_TESTERS), NULL, 10)));
        json_object_set_new(o, "domain_count",
                            json_integer(strtoll(col(res, r, COL_DOMAINS), NULL, 10)));
        json_object_set_new(o, "verified_domain_count",
                            json_integer(strtoll(col(res, r, COL_VERIFIED), NULL, 10)));
    }
    return o;
}

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
    PGresult *res = pmx_cli_query(c, WS_SELECT " WHERE w.id = $1", 1, params);
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

    if (check_name(name) < 0) return PMX_EXIT_USER;
    if (industry && check_text("--industry", industry, INDUSTRY_MAX_CHARS) < 0)
        return PMX_EXIT_USER;
    if (website && check_website(website) < 0) return PMX_EXIT_USER;

    char id[32];
    if (pmx_random_id("ws_", id, sizeof id) < 0) return pmx_cli_error("no randomness for an id");
    const char *params[4] = { id, name, industry, website };
    PGresult *res = pmx_cli_query(c,
        "INSERT INTO workspaces (id, name, industry, website) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (name) DO NOTHING RETURNING id",
        4, params);
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

    PGresult *res = pmx_cli_query(c, WS_SELECT " ORDER BY w.name", 0, NULL);
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

/* What `workspace set` was asked to change; NULL/false = leave as is. */
typedef struct {
    const char     *name;
    bool            rate_set;
    pmx_rate_spec_t rate;
    const char     *burst;        /* validated digits */
    bool            quota_set;
    const char     *quota;        /* validated digits, or NULL = none */
    const char     *test_mode;    /* "true" / "false" */
    bool            catch_all_set;
    pmx_addr_t      catch_all;    /* .addr NULL = none */
    const char     *suspended;    /* "true" / "false" */
    const char     *max_bounce;   /* "10", "Infinity" (none), "" = default (NULL) */
    const char     *max_complaint;
    char            mb[24], mc[24];
} ws_changes_t;

/* --max-bounce-rate / --max-complaint-rate: PCT, none or default. */
static int limit_arg(const char *opt, const char *v, char *out, size_t n, const char **res)
{
    double x;
    if (strcmp(v, "default") == 0) {
        *res = "";
        return 0;
    }
    if (pmx_config_parse_percent(v, &x) < 0) {
        pmx_cli_error("bad %s '%s': expected a percentage such as 10%% or 0.5%%, none or default",
                      opt, v);
        return -1;
    }
    if (x < 0) snprintf(out, n, "Infinity");
    else snprintf(out, n, "%.6g", x);
    *res = out;
    return 0;
}

/* Checks every option's value; prints the first problem. 0 or -1. */
static int check_changes(ws_changes_t *ch, const char *rate, const char *burst,
                         const char *quota, const char *test_mode, const char *catch_all)
{
    uint64_t v;
    if (ch->name && check_name(ch->name) < 0) return -1;
    if (rate) {
        if (pmx_rate_spec_parse_ex(rate, &ch->rate) < 0) {
            pmx_cli_error("bad --rate '%s': expected N/s, N/m, N/h (N > 0, up to %d decimals,"
                          " at most %.0f per second) or unlimited",
                          rate, PMX_RATE_MAX_DECIMALS, PMX_RATE_MAX_PER_SECOND);
            return -1;
        }
        ch->rate_set = true;
    }
    if (burst) {
        if (parse_count("--burst", burst, BURST_MAX, &v) < 0) return -1;
        ch->burst = burst;
    }
    if (quota) {
        ch->quota_set = true;
        if (strcmp(quota, "none") != 0) {
            if (parse_count("--daily-quota", quota, INT64_MAX, &v) < 0) return -1;
            ch->quota = quota;
        }
    }
    if (test_mode) {
        if (strcmp(test_mode, "on") == 0) {
            ch->test_mode = "true";
        } else if (strcmp(test_mode, "off") == 0) {
            ch->test_mode = "false";
        } else {
            pmx_cli_error("--test-mode must be on or off: %s", test_mode);
            return -1;
        }
    }
    if (catch_all) {
        ch->catch_all_set = true;
        if (strcmp(catch_all, "none") != 0) {
            char err[256];
            if (pmx_addr_parse(catch_all, strlen(catch_all), &ch->catch_all, err, sizeof err) < 0) {
                pmx_cli_error("bad --catch-all address: %s", err);
                return -1;
            }
        }
    }
    return 0;
}

/* Appends ", col = <expr>" with its parameters to the UPDATE being built. */
static void add_set(pmx_buf_t *sql, const char **params, int *np, const char *column,
                    const char *expr_fmt, const char *p1, const char *p2)
{
    if (sql->len) pmx_buf_append_str(sql, ", ");
    pmx_buf_appendf(sql, "%s = ", column);
    if (!p1) {
        pmx_buf_append_str(sql, "NULL");
        return;
    }
    params[(*np)++] = p1;
    int a = *np, b = 0;
    if (p2) {
        params[(*np)++] = p2;
        b = *np;
    }
    pmx_buf_appendf(sql, expr_fmt, a, b);
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
    ws_changes_t chg;
    memset(&chg, 0, sizeof chg);
    const char *rate = NULL, *burst = NULL, *quota = NULL, *test_mode = NULL, *catch_all = NULL;
    bool suspend = false, resume = false;
    const char *max_bounce = NULL, *max_complaint = NULL;
    const char *pool = NULL, *route = NULL, *route_pw = NULL;
    int ch, rc = PMX_EXIT_USAGE;
    pmx_cli_opts_start();
    while ((ch = pmx_cli_next_opt("workspace", argc, argv, longopts, &rc)) != -1) {
        switch (ch) {
        case 'n': chg.name = optarg; break;
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
    if (!chg.name && !rate && !burst && !quota && !test_mode && !catch_all && !suspend && !resume
        && !max_bounce && !max_complaint && !pool && !route && !route_pw)
        return pmx_cli_usage("workspace set: nothing to change");
    if ((max_bounce && limit_arg("--max-bounce-rate", max_bounce, chg.mb, sizeof chg.mb,
                                 &chg.max_bounce) < 0) ||
        (max_complaint && limit_arg("--max-complaint-rate", max_complaint, chg.mc, sizeof chg.mc,
                                    &chg.max_complaint) < 0))
        return PMX_EXIT_USER;
    if (suspend) chg.suspended = "true";
    if (resume) chg.suspended = "false";

    if (check_changes(&chg, rate, burst, quota, test_mode, catch_all) < 0) {
        pmx_addr_free(&chg.catch_all);
        return PMX_EXIT_USER;
    }

    char id[32];
    pmx_cli_ws_route_t rt;
    memset(&rt, 0, sizeof rt);
    if (pmx_cli_workspace_id(c, argv[optind], id) < 0 ||
        pmx_cli_ws_route_prepare(c, id, pool, route, route_pw, &rt) < 0) {
        pmx_cli_ws_route_free(&rt);
        pmx_addr_free(&chg.catch_all);
        return PMX_EXIT_USER;
    }

    /* One UPDATE with every change: all of them or none. */
    char unit[16];
    const char *params[24];
    int np = 0;
    pmx_buf_t set = PMX_BUF_INIT;
    if (chg.name) add_set(&set, params, &np, "name", "$%d", chg.name, NULL);
    if (chg.rate_set) {
        /* numeric division keeps the digits a double would lose (100000/h). */
        snprintf(unit, sizeof unit, "%u", chg.rate.unit_seconds);
        add_set(&set, params, &np, "rate_per_second", "trim_scale($%d::numeric / $%d::numeric)",
                chg.rate.unlimited ? NULL : chg.rate.count, chg.rate.unlimited ? NULL : unit);
    }
    if (chg.burst) add_set(&set, params, &np, "burst", "$%d::integer", chg.burst, NULL);
    if (chg.quota_set) add_set(&set, params, &np, "daily_quota", "$%d::bigint", chg.quota, NULL);
    if (chg.test_mode) add_set(&set, params, &np, "test_mode", "$%d::boolean", chg.test_mode, NULL);
    if (chg.catch_all_set)
        add_set(&set, params, &np, "catch_all", "$%d", chg.catch_all.addr, NULL);
    if (chg.suspended) add_set(&set, params, &np, "suspended", "$%d::boolean", chg.suspended, NULL);
    if (chg.max_bounce)
        add_set(&set, params, &np, "max_bounce_rate", "$%d::numeric",
                *chg.max_bounce ? chg.max_bounce : NULL, NULL);
    if (chg.max_complaint)
        add_set(&set, params, &np, "max_complaint_rate", "$%d::numeric",
                *chg.max_complaint ? chg.max_complaint : NULL, NULL);
    if (rt.pool_set) add_set(&set, params, &np, "pool", "$%d", rt.pool, NULL);
    if (rt.route_set) add_set(&set, params, &np, "route", "$%d", rt.route, NULL);
    if (rt.password_set)
        add_set(&set, params, &np, "route_password_enc", "$%d::bytea", rt.password_hex, NULL);
    /* --resume lifts a pause of the reputation guard too, and its window starts
     * afresh; changing a limit alone does not lift a pause. */
    if (resume) pmx_buf_append_str(&set, ", paused_at = NULL, pause_reason = NULL, guard_since = now()");
    pmx_buf_append_str(&set, ", updated_at = now()");
    params[np++] = id;

    pmx_buf_t sql = PMX_BUF_INIT;
    pmx_buf_appendf(&sql, "UPDATE workspaces SET %s WHERE id = $%d", pmx_buf_cstr(&set), np);
    if (rt.guard_route) {
        /* Only the password changes: it was sealed for this route. */
        params[np++] = rt.current_route;
        pmx_buf_appendf(&sql, " AND route = $%d", np);
    }
    pmx_buf_append_str(&sql, " RETURNING id");
    pmx_buf_free(&set);

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
    pmx_addr_free(&chg.catch_all);
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
