/*
 * What every verb shares: error printing with the CLI's exit codes, and the
 * lazily opened config, Postgres and Redis connections of pmx_cli_t.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "lib/mem.h"
#include "queue/endpoint.h"

static void vprint(const char *fmt, va_list ap)
{
    char line[2048];
    vsnprintf(line, sizeof line, fmt, ap);
    /* One line: strip what Postgres appends after the first newline. */
    line[strcspn(line, "\r\n")] = '\0';
    fprintf(stderr, "postmux: %s\n", line);
}

int pmx_cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprint(fmt, ap);
    va_end(ap);
    return PMX_EXIT_USER;
}

int pmx_cli_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprint(fmt, ap);
    va_end(ap);
    fprintf(stderr, "(see postmux --help)\n");
    return PMX_EXIT_USAGE;
}

int pmx_cli_config(pmx_cli_t *c)
{
    if (c->cfg_loaded) return 0;
    char err[512];
    if (pmx_config_load(c->config_path, &c->cfg, err, sizeof err) < 0) {
        pmx_cli_error("%s", err);
        return -1;
    }
    c->cfg_loaded = true;
    pmx_log_set_level(c->cfg.log_level);
    return 0;
}

PGconn *pmx_cli_db(pmx_cli_t *c)
{
    if (c->pg) return c->pg;
    if (pmx_cli_config(c) < 0) return NULL;
    PGconn *pg = PQconnectdb(c->cfg.pg_conninfo);
    if (PQstatus(pg) != CONNECTION_OK) {
        pmx_cli_error("cannot connect to Postgres: %s", PQerrorMessage(pg));
        PQfinish(pg);
        return NULL;
    }
    /* Quiet NOTICEs (e.g. "relation already exists, skipping"). */
    PQclear(PQexec(pg, "SET client_min_messages = warning"));
    c->pg = pg;
    return pg;
}

redisContext *pmx_cli_redis(pmx_cli_t *c)
{
    if (c->redis) return c->redis;
    if (pmx_cli_config(c) < 0) return NULL;

    char err[300];
    pmx_queue_endpoint_t a;
    if (pmx_queue_parse_endpoint(c->cfg.redis_address, &a, err, sizeof err) < 0) {
        pmx_cli_error("[redis] address %s", err);
        return NULL;
    }
    struct timeval tv = { 5, 0 };
    redisContext *r = a.unix_socket ? redisConnectUnixWithTimeout(a.host, tv)
                                    : redisConnectWithTimeout(a.host, a.port, tv);
    if (!r || r->err) {
        pmx_cli_error("cannot connect to Redis at %s: %s", c->cfg.redis_address,
                      r ? r->errstr : "out of memory");
        if (r) redisFree(r);
        return NULL;
    }
    redisSetTimeout(r, tv);

    if (c->cfg.redis_password_file[0]) {
        char *pw = NULL;
        size_t pwlen = 0;
        if (pmx_config_read_secret(c->cfg.redis_password_file, &pw, &pwlen, err, sizeof err) < 0) {
            pmx_cli_error("[redis] password_file: %s", err);
            redisFree(r);
            return NULL;
        }
        redisReply *rep = redisCommand(r, "AUTH %b", pw, pwlen);
        pmx_wipe(pw, pwlen);
        free(pw);
        if (!rep || rep->type == REDIS_REPLY_ERROR) {
            pmx_cli_error("Redis AUTH failed: %s", rep ? rep->str : r->errstr);
            if (rep) freeReplyObject(rep);
            redisFree(r);
            return NULL;
        }
        freeReplyObject(rep);
    }
    c->redis = r;
    return r;
}

PGresult *pmx_cli_query(pmx_cli_t *c, const char *sql, int nparams, const char *const *params)
{
    PGconn *pg = pmx_cli_db(c);
    if (!pg) return NULL;
    PGresult *res = PQexecParams(pg, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        pmx_cli_error("Postgres: %s", PQresultErrorMessage(res));
        PQclear(res);
        return NULL;
    }
    return res;
}

static int exec_simple(pmx_cli_t *c, const char *sql)
{
    PGresult *res = pmx_cli_query(c, sql, 0, NULL);
    if (!res) return -1;
    PQclear(res);
    return 0;
}

int pmx_cli_begin(pmx_cli_t *c) { return exec_simple(c, "BEGIN"); }
int pmx_cli_commit(pmx_cli_t *c) { return exec_simple(c, "COMMIT"); }

void pmx_cli_rollback(pmx_cli_t *c)
{
    if (c->pg) PQclear(PQexec(c->pg, "ROLLBACK"));
}

int pmx_cli_workspace_id(pmx_cli_t *c, const char *id_or_name, char *id_out)
{
    const char *params[1] = { id_or_name };
    PGresult *res = pmx_cli_query(c,
        "SELECT id FROM workspaces WHERE id = $1 OR name = $1 ORDER BY (id = $1) DESC LIMIT 1",
        1, params);
    if (!res) return -1;
    if (PQntuples(res) != 1) {
        PQclear(res);
        pmx_cli_error("unknown workspace: %s", id_or_name);
        return -1;
    }
    snprintf(id_out, 20, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    return 0;
}

#define SINCE_MAX_MS (36500ULL * 24 * 3600 * 1000)   /* 100 years */

int pmx_cli_since_ms(const char *since, char *ms_out)
{
    ms_out[0] = '\0';
    if (strcmp(since, "all") == 0) return 0;
    uint64_t ms;
    if (pmx_config_parse_duration(since, &ms) < 0) {
        pmx_cli_error("--since: expected a duration such as 30m, 24h or 7d, or all; got '%.40s'",
                      since);
        return -1;
    }
    if (ms == 0) {
        pmx_cli_error("--since must be longer than 0 (or all)");
        return -1;
    }
    if (ms > SINCE_MAX_MS) {
        pmx_cli_error("--since is longer than 100 years; use --since all");
        return -1;
    }
    snprintf(ms_out, 32, "%" PRIu64, ms);
    return 0;
}

int pmx_cli_window_opts(pmx_cli_t *c, const char *verb, int argc, char **argv,
                        const char *usage_text, const char *since_default, pmx_cli_window_t *out)
{
    static const struct option opts[] = {
        { "workspace", required_argument, NULL, 'w' },
        { "since",     required_argument, NULL, 's' },
        { "json",      no_argument,       NULL, 'j' },
        { "help",      no_argument,       NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    memset(out, 0, sizeof *out);
    const char *ws = NULL, *since = since_default;
    int ch;
    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "w:s:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'w': ws = optarg; break;
        case 's': since = optarg; break;
        case 'j': out->json = true; break;
        case 'h': fputs(usage_text, stdout); return PMX_EXIT_OK;
        default:
            return pmx_cli_usage("%s: unknown option or missing value: %s", verb, argv[optind - 1]);
        }
    }
    if (optind < argc) return pmx_cli_usage("%s: unexpected argument '%s'", verb, argv[optind]);
    if (pmx_cli_since_ms(since, out->since_ms) < 0) return PMX_EXIT_USER;
    out->has_ws = ws != NULL;
    if (ws && pmx_cli_workspace_id(c, ws, out->ws_id) < 0) return PMX_EXIT_USER;
    return -1;
}
