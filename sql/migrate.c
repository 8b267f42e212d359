/*
 * The schema migration runner (sql/db.h): applies the compiled-in
 * sql/NNN_name.sql files that schema_migrations does not list yet, each in its
 * own transaction with its schema_migrations row, under one advisory lock so
 * that several hosts can run `postmux migrate` at the same moment.
 *
 * Synchronous libpq: this runs from the CLI (or before a daemon starts work),
 * never on a worker's event loop.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/mem.h"
#include "sql/db.h"

/* Postgres's primary message of a failed result, on one line. */
static void pg_reason(PGconn *pg, const PGresult *res, char *out, size_t outlen)
{
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (!msg || !*msg) msg = PQerrorMessage(pg);
    if (!msg || !*msg) msg = "unknown error";
    snprintf(out, outlen, "%s", msg);
    out[strcspn(out, "\r\n")] = '\0';
}

/*
 * Runs sql (parameters optional); returns the result when it succeeded (the
 * caller clears it), or NULL with "what: reason" in err.
 */
static PGresult *run(PGconn *pg, const char *what, const char *sql, int nparams,
                     const char *const *params, char *err, size_t errlen)
{
    PGresult *res = nparams > 0 ? PQexecParams(pg, sql, nparams, NULL, params, NULL, NULL, 0)
                                : PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return res;
    char reason[1024];
    pg_reason(pg, res, reason, sizeof reason);
    snprintf(err, errlen, "%s: %s", what, reason);
    PQclear(res);
    return NULL;
}

static int run_ok(PGconn *pg, const char *what, const char *sql, int nparams,
                  const char *const *params, char *err, size_t errlen)
{
    PGresult *res = run(pg, what, sql, nparams, params, err, errlen);
    if (!res) return -1;
    PQclear(res);
    return 0;
}

/* The compiled-in list must be strictly ascending (the Makefile sorts by name). */
static int check_compiled(char *err, size_t errlen)
{
    for (size_t i = 0; i < pmx_migrations_count; i++) {
        if (pmx_migrations[i].version <= 0 ||
            (i > 0 && pmx_migrations[i].version <= pmx_migrations[i - 1].version)) {
            snprintf(err, errlen, "compiled-in migrations out of order at %s",
                     pmx_migrations[i].name);
            return -1;
        }
    }
    return 0;
}

static const pmx_migration_t *find_compiled(int version)
{
    for (size_t i = 0; i < pmx_migrations_count; i++)
        if (pmx_migrations[i].version == version) return &pmx_migrations[i];
    return NULL;
}

int pmx_db_schema_latest(void)
{
    return pmx_migrations_count ? pmx_migrations[pmx_migrations_count - 1].version : 0;
}

/*
 * Reads schema_migrations and refuses a database this binary does not
 * understand: a version newer than its newest migration, a version it does not
 * carry, or a name that differs from its own for that version. Sets done[i]
 * for each compiled-in migration already applied.
 */
static int read_applied(PGconn *pg, bool *done, char *err, size_t errlen)
{
    PGresult *res = run(pg, "reading schema_migrations",
                        "SELECT version, name FROM schema_migrations ORDER BY version",
                        0, NULL, err, errlen);
    if (!res) return -1;
    int latest = pmx_db_schema_latest();
    int rc = 0;
    for (int r = 0; r < PQntuples(res) && rc == 0; r++) {
        int v = atoi(PQgetvalue(res, r, 0));
        const char *name = PQgetvalue(res, r, 1);
        const pmx_migration_t *m = find_compiled(v);
        if (v > latest) {
            int newest = atoi(PQgetvalue(res, PQntuples(res) - 1, 0));
            snprintf(err, errlen,
                     "the database schema is at version %d, newer than this postmux knows "
                     "(%d): upgrade postmux before running it against this database",
                     newest, latest);
            rc = -1;
        } else if (!m) {
            snprintf(err, errlen,
                     "schema_migrations lists version %d (%s), which this postmux does not carry",
                     v, name);
            rc = -1;
        } else if (strcmp(m->name, name) != 0) {
            snprintf(err, errlen,
                     "schema_migrations version %d is named '%s', but this postmux's is '%s'",
                     v, name, m->name);
            rc = -1;
        } else {
            done[m - pmx_migrations] = true;
        }
    }
    PQclear(res);
    return rc;
}

/* One migration and its schema_migrations row, in one transaction. */
static int apply_one(PGconn *pg, const pmx_migration_t *m, char *err, size_t errlen)
{
    char what[256], ver[16];
    snprintf(what, sizeof what, "migration %s", m->name);
    snprintf(ver, sizeof ver, "%d", m->version);
    const char *params[2] = { ver, m->name };

    if (run_ok(pg, what, "BEGIN", 0, NULL, err, errlen) < 0) return -1;
    if (run_ok(pg, what, m->sql, 0, NULL, err, errlen) < 0 ||
        run_ok(pg, what, "INSERT INTO schema_migrations (version, name) VALUES ($1::integer, $2)",
               2, params, err, errlen) < 0 ||
        run_ok(pg, what, "COMMIT", 0, NULL, err, errlen) < 0) {
        PQclear(PQexec(pg, "ROLLBACK"));
        return -1;
    }
    return 0;
}

static int migrate_locked(PGconn *pg, pmx_db_migrate_cb on_applied, void *arg, int *applied,
                          char *err, size_t errlen)
{
    if (run_ok(pg, "creating schema_migrations",
               "CREATE TABLE IF NOT EXISTS schema_migrations ("
               " version    integer PRIMARY KEY,"
               " name       text NOT NULL,"
               " applied_at timestamptz NOT NULL DEFAULT now())",
               0, NULL, err, errlen) < 0)
        return -1;

    bool *done = pmx_xcalloc(pmx_migrations_count ? pmx_migrations_count : 1, sizeof *done);
    int rc = read_applied(pg, done, err, errlen);
    for (size_t i = 0; rc == 0 && i < pmx_migrations_count; i++) {
        if (done[i]) continue;
        rc = apply_one(pg, &pmx_migrations[i], err, errlen);
        if (rc == 0) {
            (*applied)++;
            if (on_applied) on_applied(&pmx_migrations[i], arg);
        }
    }
    free(done);
    return rc;
}

int pmx_db_migrate_run(PGconn *pg, pmx_db_migrate_cb on_applied, void *arg, int *applied,
                       char *err, size_t errlen)
{
    *applied = 0;
    if (PQstatus(pg) != CONNECTION_OK || PQtransactionStatus(pg) != PQTRANS_IDLE) {
        snprintf(err, errlen, "migrate needs an idle Postgres connection");
        return -1;
    }
    if (check_compiled(err, errlen) < 0) return -1;

    char lock_sql[96], unlock_sql[96];
    snprintf(lock_sql, sizeof lock_sql, "SELECT pg_advisory_lock(%lld)", PMX_DB_MIGRATE_LOCK);
    snprintf(unlock_sql, sizeof unlock_sql, "SELECT pg_advisory_unlock(%lld)",
             PMX_DB_MIGRATE_LOCK);
    if (run_ok(pg, "taking the migration lock", lock_sql, 0, NULL, err, errlen) < 0) return -1;

    int rc = migrate_locked(pg, on_applied, arg, applied, err, errlen);

    /* Session locks outlive a rolled-back transaction: always let go. */
    if (PQtransactionStatus(pg) != PQTRANS_IDLE) PQclear(PQexec(pg, "ROLLBACK"));
    char unlock_err[256];
    if (run_ok(pg, "releasing the migration lock", unlock_sql, 0, NULL,
               unlock_err, sizeof unlock_err) < 0 && rc == 0) {
        snprintf(err, errlen, "%s", unlock_err);
        rc = -1;
    }
    return rc;
}

int pmx_db_migrate(PGconn *pg, int *applied, char *err, size_t errlen)
{
    return pmx_db_migrate_run(pg, NULL, NULL, applied, err, errlen);
}

int pmx_db_schema_version(PGconn *pg, int *version, char *err, size_t errlen)
{
    bool exists;
    return pmx_db_schema_state(pg, &exists, version, err, errlen);
}

int pmx_db_schema_state(PGconn *pg, bool *exists, int *version, char *err, size_t errlen)
{
    /* Two steps: a query naming a missing table fails when parsed. */
    PGresult *res = run(pg, "reading schema_migrations",
                        "SELECT to_regclass('schema_migrations') IS NOT NULL",
                        0, NULL, err, errlen);
    if (!res) return -1;
    *exists = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (!*exists) {
        *version = 0;
        return 0;
    }
    res = run(pg, "reading schema_migrations",
              "SELECT coalesce(max(version), 0) FROM schema_migrations", 0, NULL, err, errlen);
    if (!res) return -1;
    *version = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    return 0;
}
