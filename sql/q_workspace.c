/* Workspace settings: checks, the UPDATE and the JSON form; see q_workspace.h. */
#include "sql/q_workspace.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/config.h"
#include "lib/utf8.h"
#include "sql/q_admin.h"

int pmx_ws_check_text(const char *label, const char *s, size_t max_chars, char *err, size_t n)
{
    size_t len = strlen(s), chars = 0;
    if (len == 0) {
        snprintf(err, n, "%s is empty", label);
        return -1;
    }
    for (size_t i = 0; i < len; chars++) {
        unsigned cp;
        size_t k = pmx_utf8_seq(s + i, len - i, &cp);
        if (k == 0) {
            snprintf(err, n, "%s is not valid UTF-8", label);
            return -1;
        }
        if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0)) {
            snprintf(err, n, "%s contains a control character", label);
            return -1;
        }
        i += k;
    }
    if (chars > max_chars) {
        snprintf(err, n, "%s is longer than %zu characters", label, max_chars);
        return -1;
    }
    return 0;
}

bool pmx_ws_looks_like_id(const char *s)
{
    if (strncmp(s, "ws_", 3) != 0 || strlen(s) != 19) return false;
    for (const char *p = s + 3; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '2' && *p <= '7'))) return false;
    return true;
}

int pmx_ws_check_name(const char *s, char *err, size_t n)
{
    if (pmx_ws_check_text("workspace name", s, PMX_WS_NAME_MAX_CHARS, err, n) < 0) return -1;
    size_t len = strlen(s);
    if (s[0] == ' ' || s[len - 1] == ' ') {
        snprintf(err, n, "workspace name has leading or trailing spaces: '%.200s'", s);
        return -1;
    }
    /* WS arguments take an id or a name: a name shaped like an id would be ambiguous. */
    if (pmx_ws_looks_like_id(s)) {
        snprintf(err, n, "workspace name cannot look like a workspace id: %s", s);
        return -1;
    }
    return 0;
}

/* http(s)://HOST..., no spaces, at most PMX_WS_WEBSITE_MAX_CHARS. */
int pmx_ws_check_website(const char *label, const char *s, char *err, size_t n)
{
    if (pmx_ws_check_text(label, s, PMX_WS_WEBSITE_MAX_CHARS, err, n) < 0) return -1;
    size_t skip = strncasecmp(s, "http://", 7) == 0    ? 7
                  : strncasecmp(s, "https://", 8) == 0 ? 8
                                                       : 0;
    const char *host = s + skip;
    if (skip == 0 || *host == '\0' || strchr("/?#", *host) || strpbrk(s, " \t")) {
        snprintf(err, n, "%s must be an http:// or https:// URL: %.200s", label, s);
        return -1;
    }
    return 0;
}

/* A whole decimal number 1..max, digits only. */
static int parse_count(const char *label, const char *s, uint64_t max, char *err, size_t n)
{
    uint64_t v = 0;
    const char *p = s;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (UINT64_MAX - 9) / 10) break;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    if (p == s || *p != '\0' || v < 1 || v > max || p - s > 20) {
        snprintf(err, n, "%s must be a whole number from 1 to %llu: %.40s", label,
                 (unsigned long long)max, s);
        return -1;
    }
    return 0;
}

static void add_field(pmx_ws_changes_t *ch, const char *f)
{
    size_t l = strlen(ch->fields);
    snprintf(ch->fields + l, sizeof ch->fields - l, "%s%s", l ? "," : "", f);
}

int pmx_ws_set_name(pmx_ws_changes_t *ch, const char *s, char *err, size_t n)
{
    if (pmx_ws_check_name(s, err, n) < 0) return -1;
    ch->name = s;
    add_field(ch, "name");
    return 0;
}

int pmx_ws_set_rate(pmx_ws_changes_t *ch, const char *label, const char *s, char *err, size_t n)
{
    if (pmx_rate_spec_parse_ex(s, &ch->rate) < 0) {
        snprintf(err, n, "bad %s '%.40s': expected N/s, N/m, N/h (N > 0, up to %d decimals,"
                 " at most %.0f per second) or unlimited",
                 label, s, PMX_RATE_MAX_DECIMALS, PMX_RATE_MAX_PER_SECOND);
        return -1;
    }
    ch->rate_set = true;
    snprintf(ch->unit, sizeof ch->unit, "%u", ch->rate.unit_seconds);
    add_field(ch, "rate");
    return 0;
}

int pmx_ws_set_burst(pmx_ws_changes_t *ch, const char *label, const char *s, char *err, size_t n)
{
    if (parse_count(label, s, PMX_WS_BURST_MAX, err, n) < 0) return -1;
    snprintf(ch->burst, sizeof ch->burst, "%s", s);
    add_field(ch, "burst");
    return 0;
}

int pmx_ws_set_quota(pmx_ws_changes_t *ch, const char *label, const char *s, char *err, size_t n)
{
    ch->quota_set = true;
    ch->quota[0] = '\0';
    add_field(ch, "daily_quota");
    if (strcmp(s, "none") == 0) return 0;
    if (parse_count(label, s, INT64_MAX, err, n) < 0) return -1;
    snprintf(ch->quota, sizeof ch->quota, "%s", s);
    return 0;
}

int pmx_ws_set_test_mode(pmx_ws_changes_t *ch, const char *label, const char *s, char *err,
                         size_t n)
{
    if (strcmp(s, "on") == 0) ch->test_mode = "true";
    else if (strcmp(s, "off") == 0) ch->test_mode = "false";
    else {
        snprintf(err, n, "%s must be on or off: %.40s", label, s);
        return -1;
    }
    add_field(ch, "test_mode");
    return 0;
}

int pmx_ws_set_catch_all(pmx_ws_changes_t *ch, const char *label, const char *s, char *err,
                         size_t n)
{
    ch->catch_all_set = true;
    add_field(ch, "catch_all");
    if (strcmp(s, "none") == 0) return 0;
    char why[256];
    if (pmx_addr_parse(s, strlen(s), &ch->catch_all, why, sizeof why) < 0) {
        snprintf(err, n, "bad %s address: %s", label, why);
        return -1;
    }
    return 0;
}

void pmx_ws_set_suspended(pmx_ws_changes_t *ch, bool suspended)
{
    ch->suspended = suspended ? "true" : "false";
    add_field(ch, "suspended");
}

void pmx_ws_set_routing(pmx_ws_changes_t *ch, bool pool_set, const char *pool, bool route_set,
                        const char *route, bool password_set, const char *password_hex,
                        const char *guard_route)
{
    ch->pool_set = pool_set;
    ch->pool = pool;
    ch->route_set = route_set;
    ch->route = route;
    ch->password_set = password_set;
    ch->password_hex = password_hex;
    ch->guard_route = guard_route;
    if (pool_set) add_field(ch, "pool");
    if (route_set) add_field(ch, "route");
    if (password_set) add_field(ch, "route_password");
}

int pmx_ws_set_limit(pmx_ws_changes_t *ch, bool bounce, const char *label, const char *s,
                     char *err, size_t n)
{
    char *out = bounce ? ch->mb : ch->mc;
    const char **res = bounce ? &ch->max_bounce : &ch->max_complaint;
    add_field(ch, bounce ? "max_bounce_rate" : "max_complaint_rate");
    double x;
    if (strcmp(s, "default") == 0) {
        *res = "";
        return 0;
    }
    if (pmx_config_parse_percent(s, &x) < 0) {
        snprintf(err, n, "bad %s '%.40s': expected a percentage such as 10%% or 0.5%%, none or "
                 "default", label, s);
        return -1;
    }
    if (x < 0) snprintf(out, 24, "Infinity");
    else snprintf(out, 24, "%.6g", x);
    *res = out;
    return 0;
}

bool pmx_ws_changes_empty(const pmx_ws_changes_t *ch)
{
    return ch->fields[0] == '\0';
}

void pmx_ws_changes_free(pmx_ws_changes_t *ch)
{
    pmx_addr_free(&ch->catch_all);
}

/* Appends ", col = <expr>" with its parameters to the SET list being built. */
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

int pmx_ws_update_sql(const pmx_ws_changes_t *ch, const char *actor, const char *id,
                      pmx_buf_t *sql, const char **params)
{
    int np = 0;
    params[np++] = actor;
    params[np++] = id;
    params[np++] = ch->fields;
    pmx_buf_t set = PMX_BUF_INIT;
    if (ch->name) add_set(&set, params, &np, "name", "$%d", ch->name, NULL);
    if (ch->rate_set) {
        /* numeric division keeps the digits a double would lose (100000/h). */
        add_set(&set, params, &np, "rate_per_second", "trim_scale($%d::numeric / $%d::numeric)",
                ch->rate.unlimited ? NULL : ch->rate.count, ch->rate.unlimited ? NULL : ch->unit);
    }
    if (ch->burst[0]) add_set(&set, params, &np, "burst", "$%d::integer", ch->burst, NULL);
    if (ch->quota_set)
        add_set(&set, params, &np, "daily_quota", "$%d::bigint", ch->quota[0] ? ch->quota : NULL,
                NULL);
    if (ch->test_mode) add_set(&set, params, &np, "test_mode", "$%d::boolean", ch->test_mode, NULL);
    if (ch->catch_all_set) add_set(&set, params, &np, "catch_all", "$%d", ch->catch_all.addr, NULL);
    if (ch->suspended) add_set(&set, params, &np, "suspended", "$%d::boolean", ch->suspended, NULL);
    if (ch->max_bounce)
        add_set(&set, params, &np, "max_bounce_rate", "$%d::numeric",
                *ch->max_bounce ? ch->max_bounce : NULL, NULL);
    if (ch->max_complaint)
        add_set(&set, params, &np, "max_complaint_rate", "$%d::numeric",
                *ch->max_complaint ? ch->max_complaint : NULL, NULL);
    if (ch->pool_set) add_set(&set, params, &np, "pool", "$%d", ch->pool, NULL);
    if (ch->route_set) add_set(&set, params, &np, "route", "$%d", ch->route, NULL);
    if (ch->password_set)
        add_set(&set, params, &np, "route_password_enc", "$%d::bytea", ch->password_hex, NULL);
    /* A resume lifts a pause of the reputation guard too, and its window
     * starts afresh; changing a limit alone does not lift a pause. */
    if (ch->suspended && strcmp(ch->suspended, "false") == 0)
        pmx_buf_append_str(&set, ", paused_at = NULL, pause_reason = NULL, guard_since = now()");
    pmx_buf_append_str(&set, set.len ? ", updated_at = now()" : "updated_at = now()");
    pmx_buf_appendf(sql,
                    "WITH u AS (UPDATE workspaces SET %s WHERE id = $2", pmx_buf_cstr(&set));
    if (ch->guard_route) {
        params[np++] = ch->guard_route;
        pmx_buf_appendf(sql, " AND route = $%d", np);
    }
    pmx_buf_append_str(sql, " RETURNING id),"
                            " l AS (INSERT INTO audit_log (api_key_id, workspace_id, action, target)"
                            "       SELECT $1, id, 'workspace.set', $3 FROM u)"
                            " SELECT id FROM u");
    pmx_buf_free(&set);
    return np;
}

const char pmx_sql_ws_create[] =
    "WITH w AS (INSERT INTO workspaces (id, name, industry, website) VALUES ($2, $3, $4, $5)"
    "           ON CONFLICT (name) DO NOTHING RETURNING id, name),"
    " l AS (INSERT INTO audit_log (api_key_id, workspace_id, action, target)"
    "       SELECT $1, id, 'workspace.create', name FROM w)"
    " SELECT id FROM w";

const char pmx_sql_ws_select[] =
    "SELECT w.id, w.name, w.industry, w.website, w.test_mode, w.catch_all,"
    " w.rate_per_second, w.burst, w.daily_quota, w.suspended, "
    PMX_SQL_ISO_UTC("w.created_at") ", " PMX_SQL_ISO_UTC("w.updated_at") ","
    " (SELECT count(*) FROM workspace_testers t WHERE t.workspace_id = w.id),"
    " (SELECT count(*) FROM domains d WHERE d.workspace_id = w.id),"
    " (SELECT count(*) FROM domains d WHERE d.workspace_id = w.id"
    "   AND d.verified_at IS NOT NULL), "
    PMX_SQL_ISO_UTC("w.suspended_at") ", " PMX_SQL_ISO_UTC("w.paused_at") ", w.pause_reason,"
    " trim_scale(w.max_bounce_rate), trim_scale(w.max_complaint_rate),"
    " COALESCE(w.pool, 'default'), COALESCE(w.route, 'default'),"
    " w.route_password_enc IS NOT NULL"
    " FROM workspaces w";

static bool col_null(const PGresult *res, int r, int c) { return PQgetisnull(res, r, c); }
static const char *col(const PGresult *res, int r, int c) { return PQgetvalue(res, r, c); }
static bool col_bool(const PGresult *res, int r, int c) { return col(res, r, c)[0] == 't'; }

void pmx_ws_rate_text(const PGresult *res, int r, char *out, size_t outlen)
{
    bool unlimited = col_null(res, r, PMX_WS_COL_RATE);
    pmx_rate_spec_format(unlimited ? 0 : strtod(col(res, r, PMX_WS_COL_RATE), NULL), unlimited,
                         out, outlen);
}

static json_t *text_or_null(const PGresult *res, int r, int c)
{
    return col_null(res, r, c) ? json_null() : json_string(col(res, r, c));
}

const char *pmx_ws_limit_text(const PGresult *res, int r, int c, char *buf, size_t n)
{
    if (col_null(res, r, c)) return "default";
    if (strcmp(col(res, r, c), "Infinity") == 0) return "none";
    snprintf(buf, n, "%s%%", col(res, r, c));
    return buf;
}

json_t *pmx_ws_json(const PGresult *res, int r, bool counts)
{
    char rate[64];
    pmx_ws_rate_text(res, r, rate, sizeof rate);
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(col(res, r, PMX_WS_COL_ID)));
    json_object_set_new(o, "name", json_string(col(res, r, PMX_WS_COL_NAME)));
    json_object_set_new(o, "industry", text_or_null(res, r, PMX_WS_COL_INDUSTRY));
    json_object_set_new(o, "website", text_or_null(res, r, PMX_WS_COL_WEBSITE));
    json_object_set_new(o, "test_mode", json_boolean(col_bool(res, r, PMX_WS_COL_TEST_MODE)));
    json_object_set_new(o, "catch_all", text_or_null(res, r, PMX_WS_COL_CATCH_ALL));
    json_object_set_new(o, "rate_per_second",
                        col_null(res, r, PMX_WS_COL_RATE)
                            ? json_null()
                            : json_real(strtod(col(res, r, PMX_WS_COL_RATE), NULL)));
    json_object_set_new(o, "rate", json_string(rate));
    json_object_set_new(o, "burst", json_integer(strtoll(col(res, r, PMX_WS_COL_BURST), NULL, 10)));
    json_object_set_new(o, "daily_quota",
                        col_null(res, r, PMX_WS_COL_QUOTA)
                            ? json_null()
                            : json_integer(strtoll(col(res, r, PMX_WS_COL_QUOTA), NULL, 10)));
    json_object_set_new(o, "suspended", json_boolean(col_bool(res, r, PMX_WS_COL_SUSPENDED)));
    json_object_set_new(o, "suspended_at", text_or_null(res, r, PMX_WS_COL_SUSPENDED_AT));
    char lb[32], lc[32];
    json_object_set_new(o, "paused", json_boolean(!col_null(res, r, PMX_WS_COL_PAUSED_AT)));
    json_object_set_new(o, "paused_at", text_or_null(res, r, PMX_WS_COL_PAUSED_AT));
    json_object_set_new(o, "pause_reason", text_or_null(res, r, PMX_WS_COL_PAUSE_REASON));
    json_object_set_new(o, "max_bounce_rate",
                        json_string(pmx_ws_limit_text(res, r, PMX_WS_COL_MAX_BOUNCE, lb, sizeof lb)));
    json_object_set_new(o, "max_complaint_rate",
                        json_string(pmx_ws_limit_text(res, r, PMX_WS_COL_MAX_COMPLAINT, lc,
                                                      sizeof lc)));
    json_object_set_new(o, "pool", json_string(col(res, r, PMX_WS_COL_POOL)));
    json_object_set_new(o, "route", json_string(col(res, r, PMX_WS_COL_ROUTE)));
    json_object_set_new(o, "route_password",
                        json_boolean(col(res, r, PMX_WS_COL_ROUTE_PASSWORD)[0] == 't'));
    json_object_set_new(o, "created_at", json_string(col(res, r, PMX_WS_COL_CREATED)));
    json_object_set_new(o, "updated_at", json_string(col(res, r, PMX_WS_COL_UPDATED)));
    if (counts) {
        json_object_set_new(o, "tester_count",
                            json_integer(strtoll(col(res, r, PMX_WS_COL_TESTERS), NULL, 10)));
        json_object_set_new(o, "domain_count",
                            json_integer(strtoll(col(res, r, PMX_WS_COL_DOMAINS), NULL, 10)));
        json_object_set_new(o, "verified_domain_count",
                            json_integer(strtoll(col(res, r, PMX_WS_COL_VERIFIED), NULL, 10)));
    }
    return o;
}
