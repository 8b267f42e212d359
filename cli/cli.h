/*
 * The admin CLI (`postmux`, postmux(1)): main.c parses the global options and
 * dispatches to one function per verb group, each in its own file
 * (cli/workspace.c, cli/domain.c, ...). Everything a verb needs from outside —
 * the config, a Postgres connection, a Redis connection — is opened lazily
 * through the pmx_cli_t context, so `postmux --help` needs none of them.
 *
 * Exit codes (postmux(1) and postmuxd(8)): 0 success, 1 user error (one line on stderr),
 * 2 usage error.
 */
#ifndef PMX_CLI_CLI_H
#define PMX_CLI_CLI_H
#include <stdbool.h>

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "config/config.h"

enum { PMX_EXIT_OK = 0, PMX_EXIT_USER = 1, PMX_EXIT_USAGE = 2 };

typedef struct {
    const char   *config_path;
    pmx_config_t  cfg;
    bool          cfg_loaded;
    PGconn       *pg;
    redisContext *redis;
} pmx_cli_t;

/* Prints "postmux: <message>" as one line on stderr; returns PMX_EXIT_USER. */
int pmx_cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints "postmux: <message>" and a hint to --help; returns PMX_EXIT_USAGE. */
int pmx_cli_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Loads the config once; on failure prints the reason and returns -1. */
int pmx_cli_config(pmx_cli_t *c);
/* Connects to Postgres once (after the config); NULL after printing why. */
PGconn *pmx_cli_db(pmx_cli_t *c);
/* Connects to Redis once (sync hiredis, AUTH from password_file); NULL after printing why. */
redisContext *pmx_cli_redis(pmx_cli_t *c);

/*
 * Runs one parameterised statement. Returns the result when it succeeded
 * (PGRES_TUPLES_OK or PGRES_COMMAND_OK; the caller PQclear()s it), or NULL
 * after printing Postgres's message.
 */
PGresult *pmx_cli_query(pmx_cli_t *c, const char *sql, int nparams, const char *const *params);
/* BEGIN / COMMIT / ROLLBACK; 0 or -1 after printing why. */
int pmx_cli_begin(pmx_cli_t *c);
int pmx_cli_commit(pmx_cli_t *c);
void pmx_cli_rollback(pmx_cli_t *c);

/*
 * Looks up a workspace by id (ws_...) or exact name; copies its id into
 * id_out (at least 20 bytes). Returns 0, or prints "unknown workspace: X"
 * and returns -1.
 */
int pmx_cli_workspace_id(pmx_cli_t *c, const char *id_or_name, char *id_out);

/*
 * --since of stats and audit: a duration (30m, 24h, 7d: postmux.conf(5)'s
 * form) up to 100 years, or "all". Writes the milliseconds into ms_out (32
 * bytes; "" for all). 0, or prints why not and returns -1.
 */
int pmx_cli_since_ms(const char *since, char *ms_out);

/* What `stats` and `audit` are asked for: [--workspace WS] [--since D] [--json]. */
typedef struct {
    bool json;
    bool has_ws;
    char ws_id[20];     /* the workspace's id, with has_ws */
    char since_ms[32];  /* pmx_cli_since_ms's form: "" = all */
} pmx_cli_window_t;

/*
 * Reads those options for verb (--since defaults to since_default), checks
 * --since and looks the workspace up. Returns -1 with out filled to go on;
 * else the exit code to return (--help printed usage_text, or a usage or
 * user error was printed).
 */
int pmx_cli_window_opts(pmx_cli_t *c, const char *verb, int argc, char **argv,
                        const char *usage_text, const char *since_default, pmx_cli_window_t *out);

/* ---- output (cli/output.c) ---- */

/* Prints J indented with a final newline and releases it; PMX_EXIT_OK or a user error. */
int pmx_cli_print_json(json_t *j);
/* Column C of row R as a JSON string, or null when SQL NULL. */
json_t *pmx_cli_json_text_or_null(const PGresult *res, int r, int c);
/* Display width of UTF-8 text, in characters. */
int pmx_cli_text_width(const char *s);
/* Prints S padded to WIDTH characters, right-aligned if RIGHT. */
void pmx_cli_print_cell(const char *s, int width, bool right);

/* ---- options (cli/options.c) ---- */

/* One sub-verb of a verb group ("tester add", ...): its function gets argv[0] = the sub-verb. */
typedef struct {
    const char *name;
    int       (*run)(pmx_cli_t *c, int argc, char **argv);
} pmx_cli_sub_t;
/*
 * Runs the sub-verb argv[1] of verb argv[0] from subs[0..n): no sub-verb prints
 * usage on stderr (exit 2), -h/--help prints it on stdout (exit 0), an unknown
 * one is a usage error naming the known ones.
 */
int pmx_cli_dispatch(pmx_cli_t *c, int argc, char **argv, const char *usage,
                     const pmx_cli_sub_t *subs, size_t n);

struct option;
/* Resets getopt for a new subcommand (argv[0] is the subcommand), errors ours. */
void pmx_cli_opts_start(void);
/*
 * getopt_long over argv with "-h". Returns the option, or -1 at the end; on an
 * unknown option or a missing value prints "VERB SUB: ..." into *rc and returns '?'.
 */
int pmx_cli_next_opt(const char *verb, int argc, char **argv, const struct option *longopts,
                     int *rc);
/*
 * Parses "VERB list [WS] [--json] [--help]" (argv[0] is "list"). Sets *json and
 * ws_id (at least 20 bytes; "" when no WS was given). Returns -1 to go on, or the
 * exit code to return at once (help printed, usage error, unknown workspace).
 */
int pmx_cli_list_args(pmx_cli_t *c, int argc, char **argv, const char *verb,
                      const char *help, bool *json, char *ws_id);

/* Verb groups: argv[0] is the verb itself ("workspace", ...). */
int pmx_cli_migrate(pmx_cli_t *c, int argc, char **argv);
int pmx_cli_workspace(pmx_cli_t *c, int argc, char **argv);
int pmx_cli_tester(pmx_cli_t *c, int argc, char **argv);
int pmx_cli_domain(pmx_cli_t *c, int argc, char **argv);
int pmx_cli_apikey(pmx_cli_t *c, int argc, char **argv);
int pmx_cli_send(pmx_cli_t *c, int argc, char **argv);
int pmx_cli_doctor(pmx_cli_t *c, int argc, char **argv);
int pmx_cli_webhook(pmx_cli_t *c, int argc, char **argv);
int pmx_cli_stats(pmx_cli_t *c, int argc, char **argv);
int pmx_cli_audit(pmx_cli_t *c, int argc, char **argv);
int pmx_cli_queue(pmx_cli_t *c, int argc, char **argv);
int pmx_cli_suppression(pmx_cli_t *c, int argc, char **argv);
int pmx_cli_feedback(pmx_cli_t *c, int argc, char **argv);
int pmx_cli_mx(pmx_cli_t *c, int argc, char **argv);

#endif
