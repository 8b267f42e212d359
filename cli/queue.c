/*
 * `postmux queue [--workspace WS] [--json]` (postmux(1)): what waits in Redis,
 * per workspace, read with synchronous hiredis (one pipelined round trip for
 * all workspaces):
 *   stream    XLEN {prefix}:{ws}:jobs
 *   pending   XPENDING of group postmux on it (read by a worker, not yet done)
 *   backlog   stream - pending: not read yet (workers XDEL what they finish,
 *             so everything left in the stream is either pending or waiting)
 *   deferred  ZCARD {prefix}:{ws}:retry (waiting for their retry time)
 *   dead      XLEN {prefix}:{ws}:dead (poison jobs, kept for inspection)
 * A stream or group that does not exist yet counts 0. Workspaces come from
 * Postgres: every workspace, or the one named; a total row without --workspace.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/cli.h"
#include "lib/mem.h"
#include "queue/keys.h"

static const char usage_text[] =
    "usage: postmux queue [--workspace WS] [--json]\n"
    "Per workspace: stream length, backlog (not read yet), pending (being worked on),\n"
    "deferred (waiting to retry) and dead (poison) jobs.\n";

enum { Q_STREAM, Q_PENDING, Q_DEFERRED, Q_DEAD, Q_BACKLOG, Q_N };
static const char *const q_names[Q_N] = { "stream", "pending", "deferred", "dead", "backlog" };
#define N_CMDS 4   /* Q_BACKLOG is derived */

/* An integer from a reply: XLEN/ZCARD give one, XPENDING's summary an array
 * whose first element is the count; NOGROUP (no stream or no group) is 0. */
static int reply_count(const redisReply *rep, int64_t *out)
{
    *out = 0;
    if (rep->type == REDIS_REPLY_INTEGER) {
        *out = rep->integer;
        return 0;
    }
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1 &&
        rep->element[0]->type == REDIS_REPLY_INTEGER) {
        *out = rep->element[0]->integer;
        return 0;
    }
    if (rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOGROUP", 7) == 0) return 0;
    return -1;
}

/* Fills counts[ws][Q_*] for the n workspaces; prints why not and returns -1. */
static int read_counts(pmx_cli_t *c, const PGresult *ws, int64_t (*counts)[Q_N])
{
    redisContext *r = pmx_cli_redis(c);
    if (!r) return -1;
    int n = PQntuples(ws);
    const char *prefix = c->cfg.redis_prefix;
    for (int i = 0; i < n; i++) {
        const char *id = PQgetvalue(ws, i, 0);
        char *jobs = pmx_queue_key_new(PMX_QUEUE_KEY_JOBS, prefix, id);
        char *retry = pmx_queue_key_new(PMX_QUEUE_KEY_RETRY, prefix, id);
        char *dead = pmx_queue_key_new(PMX_QUEUE_KEY_DEAD, prefix, id);
        const char *xlen[] = { "XLEN", jobs }, *xpending[] = { "XPENDING", jobs, PMX_QUEUE_GROUP };
        const char *zcard[] = { "ZCARD", retry }, *xlen_dead[] = { "XLEN", dead };
        int a = redisAppendCommandArgv(r, 2, xlen, NULL);
        a |= redisAppendCommandArgv(r, 3, xpending, NULL);
        a |= redisAppendCommandArgv(r, 2, zcard, NULL);
        a |= redisAppendCommandArgv(r, 2, xlen_dead, NULL);
        free(jobs);
        free(retry);
        free(dead);
        if (a != REDIS_OK) {
            pmx_cli_error("Redis: %s", r->errstr[0] ? r->errstr : "cannot queue a command");
            return -1;
        }
    }
    int rc = 0;
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < N_CMDS; k++) {
            void *v = NULL;
            if (redisGetReply(r, &v) != REDIS_OK || !v) {
                pmx_cli_error("Redis: %s", r->errstr[0] ? r->errstr : "no reply");
                return -1;   /* the connection is unusable now; nothing more to read */
            }
            redisReply *rep = v;
            if (rc == 0 && reply_count(rep, &counts[i][k]) < 0) {
                if (rep->type == REDIS_REPLY_ERROR)
                    pmx_cli_error("Redis %s for %s: %s", k == 1 ? "XPENDING" : k == 2 ? "ZCARD" : "XLEN",
                                  PQgetvalue(ws, i, 0), rep->str);
                else
                    pmx_cli_error("Redis: unexpected reply type %d for %s", rep->type,
                                  PQgetvalue(ws, i, 0));
                rc = -1;     /* keep reading: every reply must be consumed */
            }
            freeReplyObject(rep);
        }
        int64_t b = counts[i][Q_STREAM] - counts[i][Q_PENDING];
        counts[i][Q_BACKLOG] = b > 0 ? b : 0;
    }
    return rc;
}

static json_t *counts_json(const int64_t *v)
{
    json_t *o = json_object();
    static const int order[Q_N] = { Q_STREAM, Q_BACKLOG, Q_PENDING, Q_DEFERRED, Q_DEAD };
    for (int k = 0; k < Q_N; k++) json_object_set_new(o, q_names[order[k]], json_integer(v[order[k]]));
    return o;
}

static void print_text(const PGresult *ws, int64_t (*counts)[Q_N], const int64_t *total,
                       bool with_total)
{
    static const int order[Q_N] = { Q_STREAM, Q_BACKLOG, Q_PENDING, Q_DEFERRED, Q_DEAD };
    static const char *const head[Q_N] = { "STREAM", "BACKLOG", "PENDING", "DEFERRED", "DEAD" };
    int n = PQntuples(ws);
    int wid = (int)strlen("WORKSPACE"), wname = (int)strlen("NAME"), wnum[Q_N];
    for (int i = 0; i < n; i++) {
        if (pmx_cli_text_width(PQgetvalue(ws, i, 0)) > wid) wid = pmx_cli_text_width(PQgetvalue(ws, i, 0));
        if (pmx_cli_text_width(PQgetvalue(ws, i, 1)) > wname) wname = pmx_cli_text_width(PQgetvalue(ws, i, 1));
    }
    char b[32];
    for (int k = 0; k < Q_N; k++) {
        wnum[k] = (int)strlen(head[k]);
        int len = snprintf(b, sizeof b, "%" PRId64, total[order[k]]);
        if (len > wnum[k]) wnum[k] = len;
    }
    pmx_cli_print_cell("WORKSPACE", wid, false);
    fputs("  ", stdout);
    pmx_cli_print_cell("NAME", wname, false);
    for (int k = 0; k < Q_N; k++) {
        fputs("  ", stdout);
        pmx_cli_print_cell(head[k], wnum[k], true);
    }
    putchar('\n');
    for (int i = 0; i <= n; i++) {
        if (i == n && !with_total) break;
        const int64_t *v = i < n ? counts[i] : total;
        pmx_cli_print_cell(i < n ? PQgetvalue(ws, i, 0) : "total", wid, false);
        fputs("  ", stdout);
        pmx_cli_print_cell(i < n ? PQgetvalue(ws, i, 1) : "", wname, false);
        for (int k = 0; k < Q_N; k++) {
            snprintf(b, sizeof b, "%" PRId64, v[order[k]]);
            fputs("  ", stdout);
            pmx_cli_print_cell(b, wnum[k], true);
        }
        putchar('\n');
    }
}

int pmx_cli_queue(pmx_cli_t *c, int argc, char **argv)
{
    static const struct option opts[] = {
        { "workspace", required_argument, NULL, 'w' },
        { "json",      no_argument,       NULL, 'j' },
        { "help",      no_argument,       NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *ws = NULL;
    bool json = false;
    int ch;
    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "w:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'w': ws = optarg; break;
        case 'j': json = true; break;
        case 'h': fputs(usage_text, stdout); return PMX_EXIT_OK;
        default: return pmx_cli_usage("queue: unknown option or missing value: %s", argv[optind - 1]);
        }
    }
    if (optind < argc) return pmx_cli_usage("queue: unexpected argument '%s'", argv[optind]);

    char ws_id[20];
    if (ws && pmx_cli_workspace_id(c, ws, ws_id) < 0) return PMX_EXIT_USER;
    const char *params[1] = { ws ? ws_id : NULL };
    PGresult *res = pmx_cli_query(c,
        "SELECT id, name FROM workspaces WHERE $1::text IS NULL OR id = $1 ORDER BY name, id",
        1, params);
    if (!res) return PMX_EXIT_USER;

    int n = PQntuples(res);
    int64_t (*counts)[Q_N] = pmx_xcalloc((size_t)n + 1, sizeof *counts);
    int64_t total[Q_N] = { 0 };
    int rc = PMX_EXIT_USER;
    if (read_counts(c, res, counts) < 0) goto done;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < Q_N; k++) total[k] += counts[i][k];

    if (json) {
        json_t *root = json_object(), *a = json_array();
        for (int i = 0; i < n; i++) {
            json_t *o = counts_json(counts[i]);
            json_object_set_new(o, "workspace_id", json_string(PQgetvalue(res, i, 0)));
            json_object_set_new(o, "name", json_string(PQgetvalue(res, i, 1)));
            json_array_append_new(a, o);
        }
        json_object_set_new(root, "workspaces", a);
        json_object_set_new(root, "total", counts_json(total));
        rc = pmx_cli_print_json(root);
    } else {
        print_text(res, counts, total, !ws);
        rc = PMX_EXIT_OK;
    }
done:
    free(counts);
    PQclear(res);
    return rc;
}
