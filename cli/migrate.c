/*
 * `postmux migrate`: brings the database schema up to the migrations compiled
 * into this binary (sql/db.h has the runner and its locking). Prints one line
 * per migration it applied, then "schema up to date (version N)". Safe to run
 * again, and from several hosts at once.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "sql/db.h"

static void print_applied(const pmx_migration_t *m, void *arg)
{
    (void)arg;
    printf("applied %s\n", m->name);
    fflush(stdout);
}

int pmx_cli_migrate(pmx_cli_t *c, int argc, char **argv)
{
    if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        printf("usage: postmux migrate\n");
        return PMX_EXIT_OK;
    }
    if (argc > 1) return pmx_cli_usage("migrate takes no arguments");

    PGconn *pg = pmx_cli_db(c);
    if (!pg) return PMX_EXIT_USER;

    char err[1024];
    int applied = 0, version = 0;
    if (pmx_db_migrate_run(pg, print_applied, NULL, &applied, err, sizeof err) < 0)
        return pmx_cli_error("%s", err);
    if (pmx_db_schema_version(pg, &version, err, sizeof err) < 0)
        return pmx_cli_error("%s", err);
    printf("schema up to date (version %d)\n", version);
    return PMX_EXIT_OK;
}
