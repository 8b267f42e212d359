/*
 * Workspaces as `postmux workspace create|list|show|set` (postmux(1)) and
 * API v1's /v1/workspaces (docs/http.md) read and change them: the checks of
 * every setting, the one UPDATE that applies a set of changes (all of them or
 * none), the SELECT and its JSON form. Both callers give values in the CLI's
 * text forms ("50/s", "none", "on"); `label` names the input in messages
 * ("--rate" for the CLI, "rate" for the API).
 *
 * Every change writes its audit_log row in the same statement (actor "cli" or
 * an API key id; sql/012_audit_log.sql).
 */
#ifndef PMX_SQL_Q_WORKSPACE_H
#define PMX_SQL_Q_WORKSPACE_H
#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "lib/addr.h"
#include "lib/buf.h"
#include "lib/rate.h"

#define PMX_WS_NAME_MAX_CHARS     200
#define PMX_WS_INDUSTRY_MAX_CHARS 200
#define PMX_WS_WEBSITE_MAX_CHARS  2000
#define PMX_WS_BURST_MAX          1000000
#define PMX_WS_MAX_PARAMS         24

/* What a `set` changes; zeroed = nothing. Filled by the pmx_ws_set_* checks. */
typedef struct {
    const char     *name;
    bool            rate_set;
    pmx_rate_spec_t rate;
    char            burst[24];        /* "" = leave */
    bool            quota_set;
    char            quota[24];        /* "" = none (with quota_set) */
    const char     *test_mode;        /* "true" / "false" / NULL */
    bool            catch_all_set;
    pmx_addr_t      catch_all;        /* .addr NULL = none */
    const char     *suspended;        /* "true" / "false" / NULL */
    const char     *max_bounce;       /* "10", "Infinity" (none), "" = default (NULL) */
    const char     *max_complaint;
    char            mb[24], mc[24], unit[16];
    /* Egress pool and own route (docs/delivery.md), checked by the caller
     * (routing/wsroute.h; the CLI: cli/ws_route.h). */
    bool            pool_set;
    const char     *pool;             /* NULL = default */
    bool            route_set;
    const char     *route;            /* canonical; NULL = default */
    bool            password_set;
    const char     *password_hex;     /* sealed, "\\x..." bytea input; NULL = none */
    const char     *guard_route;      /* only the password changes: the row must still have
                                         this route (it was sealed for it); NULL = no guard */
    char            fields[200];      /* "name,rate,..." for the audit row */
} pmx_ws_changes_t;

/* Each check: 0, or -1 with a one-line reason in err (which names label). */
int pmx_ws_check_text(const char *label, const char *s, size_t max_chars, char *err, size_t n);
int pmx_ws_check_name(const char *s, char *err, size_t n);
int pmx_ws_check_website(const char *label, const char *s, char *err, size_t n);
/* Whether s has the shape of a workspace id (ws_ + 16 of a-z 2-7). */
bool pmx_ws_looks_like_id(const char *s);

int pmx_ws_set_name(pmx_ws_changes_t *ch, const char *s, char *err, size_t n);
int pmx_ws_set_rate(pmx_ws_changes_t *ch, const char *label, const char *s, char *err, size_t n);
int pmx_ws_set_burst(pmx_ws_changes_t *ch, const char *label, const char *s, char *err, size_t n);
int pmx_ws_set_quota(pmx_ws_changes_t *ch, const char *label, const char *s, char *err, size_t n);
/* "on" / "off". */
int pmx_ws_set_test_mode(pmx_ws_changes_t *ch, const char *label, const char *s, char *err,
                         size_t n);
/* An address or "none". */
int pmx_ws_set_catch_all(pmx_ws_changes_t *ch, const char *label, const char *s, char *err,
                         size_t n);
void pmx_ws_set_suspended(pmx_ws_changes_t *ch, bool suspended);
/* Pool, route and sealed route password, as checked and prepared by the caller. */
void pmx_ws_set_routing(pmx_ws_changes_t *ch, bool pool_set, const char *pool, bool route_set,
                        const char *route, bool password_set, const char *password_hex,
                        const char *guard_route);
/* A percentage ("10%", "0.5"), "none" or "default"; bounce: max_bounce_rate,
 * else max_complaint_rate. */
int pmx_ws_set_limit(pmx_ws_changes_t *ch, bool bounce, const char *label, const char *s,
                     char *err, size_t n);
bool pmx_ws_changes_empty(const pmx_ws_changes_t *ch);
void pmx_ws_changes_free(pmx_ws_changes_t *ch);
/*
 * The UPDATE of workspace id with every change and its audit row, into sql
 * and params (at most PMX_WS_MAX_PARAMS; they point into ch, actor and id).
 * Returns the number of parameters. One row (the id) when the workspace
 * exists; SQLSTATE 23505 when the new name is taken.
 */
int pmx_ws_update_sql(const pmx_ws_changes_t *ch, const char *actor, const char *id,
                      pmx_buf_t *sql, const char **params);

/* $1 actor, $2 new id, $3 name, $4 industry, $5 website. A row (the id)
 * when created; none when the name is taken. */
extern const char pmx_sql_ws_create[];
/* SELECT of workspaces w with the columns below; append " WHERE ..." / " ORDER BY ...". */
extern const char pmx_sql_ws_select[];
enum {
    PMX_WS_COL_ID, PMX_WS_COL_NAME, PMX_WS_COL_INDUSTRY, PMX_WS_COL_WEBSITE,
    PMX_WS_COL_TEST_MODE, PMX_WS_COL_CATCH_ALL, PMX_WS_COL_RATE, PMX_WS_COL_BURST,
    PMX_WS_COL_QUOTA, PMX_WS_COL_SUSPENDED, PMX_WS_COL_CREATED, PMX_WS_COL_UPDATED,
    PMX_WS_COL_TESTERS, PMX_WS_COL_DOMAINS, PMX_WS_COL_VERIFIED, PMX_WS_COL_SUSPENDED_AT,
    PMX_WS_COL_PAUSED_AT, PMX_WS_COL_PAUSE_REASON, PMX_WS_COL_MAX_BOUNCE,
    PMX_WS_COL_MAX_COMPLAINT, PMX_WS_COL_POOL, PMX_WS_COL_ROUTE, PMX_WS_COL_ROUTE_PASSWORD
};
/* Row r as `workspace show --json` prints it (counts: with the tester and domain counts). */
json_t *pmx_ws_json(const PGresult *res, int r, bool counts);
/* The rate of row r as written: "50/s", "unlimited". */
void pmx_ws_rate_text(const PGresult *res, int r, char *out, size_t outlen);
/* A guard limit of row r as written: "10%", "none", or "default". */
const char *pmx_ws_limit_text(const PGresult *res, int r, int col, char *buf, size_t n);

#endif
