/*
 * The routing options of `workspace set`; see ws_route.h.
 */
#include "cli/ws_route.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dkim/keycrypt.h"
#include "lib/mem.h"
#include "routing/wsroute.h"

/* Reads the password file: one line of printable text (one trailing newline dropped). */
static int read_password(const char *path, char **out, size_t *len)
{
    char err[600];
    if (pmx_config_read_secret(path, out, len, err, sizeof err) < 0) {
        pmx_cli_error("--route-password-file %s", err);
        return -1;
    }
    if (pmx_wsroute_password_text_check(*out, *len, err, sizeof err) < 0) {
        pmx_wipe(*out, *len);
        free(*out);
        *out = NULL;
        pmx_cli_error("--route-password-file %s: %s", path, err);
        return -1;
    }
    return 0;
}

/* Seals password for ws_id's route into out->password_hex. 0 or -1 (printed). */
static int seal(pmx_cli_t *c, const char *ws_id, const pmx_wsroute_t *rt, const char *password,
                size_t len, pmx_cli_ws_route_t *out)
{
    uint8_t master[PMX_DKIM_MASTER_KEY_LEN];
    char err[600];
    if (pmx_dkim_master_key_load(c->cfg.master_key_file, master, err, sizeof err) < 0) {
        pmx_cli_error("%s", err);
        return -1;
    }
    int rc = pmx_wsroute_seal_bytea(master, ws_id, rt, password, len, &out->password_hex);
    pmx_wipe(master, sizeof master);
    if (rc < 0) {
        pmx_cli_error("cannot encrypt the route password");
        return -1;
    }
    out->password_set = true;
    return 0;
}

/* The route stored now, parsed; -1 (printed) when there is none that takes a password. */
static int current_route(pmx_cli_t *c, const char *ws_id, pmx_wsroute_t *rt, pmx_cli_ws_route_t *out)
{
    const char *params[1] = { ws_id };
    PGresult *res = pmx_cli_query(c, "SELECT route FROM workspaces WHERE id = $1", 1, params);
    if (!res) return -1;
    char err[400];
    int rc = -1;
    if (PQntuples(res) != 1) {
        pmx_cli_error("unknown workspace: %s", ws_id);
    } else if (PQgetisnull(res, 0, 0)) {
        pmx_cli_error("--route-password-file: the workspace has the default route; set "
                      "--route smtp://USER@HOST:PORT with it");
    } else if (pmx_wsroute_parse(PQgetvalue(res, 0, 0), rt, err, sizeof err) < 0) {
        pmx_cli_error("the stored %s", err);
    } else if (pmx_wsroute_password_check(rt, true, err, sizeof err) < 0) {
        pmx_cli_error("--route-password-file: the workspace's route %s names no user", rt->canonical);
    } else {
        out->guard_route = true;
        out->current_route = pmx_xstrdup(rt->canonical);
        rc = 0;
    }
    PQclear(res);
    return rc;
}

int pmx_cli_ws_route_prepare(pmx_cli_t *c, const char *ws_id, const char *pool,
                             const char *route, const char *password_file,
                             pmx_cli_ws_route_t *out)
{
    memset(out, 0, sizeof *out);
    char err[600];
    if (!pool && !route && !password_file) return 0;
    if (pmx_cli_config(c) < 0) return -1;
    if (pool) {
        if (pmx_wsroute_pool_check(&c->cfg, pool, &out->pool, err, sizeof err) < 0) {
            pmx_cli_error("--%s", err);
            return -1;
        }
        out->pool_set = true;
    }
    pmx_wsroute_t rt;
    if (route) {
        if (pmx_wsroute_parse(route, &rt, err, sizeof err) < 0 ||
            pmx_wsroute_password_check(&rt, password_file != NULL, err, sizeof err) < 0) {
            pmx_cli_error("--%s", err);
            return -1;
        }
        out->route_set = true;
        out->route = rt.kind == PMX_WSROUTE_DEFAULT ? NULL : pmx_xstrdup(rt.canonical);
        out->password_set = true;       /* a new route never keeps the old password */
    } else if (password_file && current_route(c, ws_id, &rt, out) < 0) {
        return -1;
    }
    if (password_file) {
        char *pw = NULL;
        size_t len = 0;
        if (read_password(password_file, &pw, &len) < 0) return -1;
        int rc = seal(c, ws_id, &rt, pw, len, out);
        pmx_wipe(pw, len);
        free(pw);
        if (rc < 0) return -1;
    }
    return 0;
}

void pmx_cli_ws_route_free(pmx_cli_ws_route_t *r)
{
    free(r->route);
    free(r->password_hex);
    free(r->current_route);
    memset(r, 0, sizeof *r);
}
