/*
 * The sql room: PostgreSQL. This header holds the schema migration runner
 * (synchronous libpq; used by `postmux migrate`, and by anything that wants to
 * know the schema version before it starts work).
 *
 * Migrations are the sql/NNN_name.sql files compiled in (sql/migrations.h).
 * pmx_db_migrate holds a session-level pg_advisory_lock(PMX_DB_MIGRATE_LOCK)
 * for the whole run, so any number of hosts may migrate at once: one applies,
 * the others wait and then find nothing to do. Each migration runs in its own
 * transaction together with its schema_migrations row, so a migration is
 * either applied and recorded, or neither. A migration therefore must not use
 * statements that refuse to run in a transaction (CREATE INDEX CONCURRENTLY,
 * ALTER TYPE ... ADD VALUE before PG 12, VACUUM).
 */
#ifndef PMX_SQL_DB_H
#define PMX_SQL_DB_H
#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

#include "sql/migrations.h"

/* The advisory lock key of a migration run ("pmx_mig" in ASCII). */
#define PMX_DB_MIGRATE_LOCK 0x706d785f6d6967LL

/* Called after each migration commits, e.g. to print "applied 001_init". */
typedef void (*pmx_db_migrate_cb)(const pmx_migration_t *m, void *arg);

/*
 * Brings the schema up to the newest compiled-in migration. *applied gets the
 * number of migrations this call applied (also on failure: those committed
 * before it). Returns 0, or -1 with a one-line reason in err: Postgres's
 * message (naming the migration that failed), or a database whose schema is
 * newer than this binary knows. pg must be idle (not inside a transaction);
 * it is left idle and without the lock.
 */
int pmx_db_migrate(PGconn *pg, int *applied, char *err, size_t errlen);
/* Same, calling on_applied (may be NULL) after each migration commits. */
int pmx_db_migrate_run(PGconn *pg, pmx_db_migrate_cb on_applied, void *arg, int *applied,
                       char *err, size_t errlen);

/*
 * The highest version recorded in schema_migrations (0 when the table does not
 * exist yet). 0, or -1 with the reason in err.
 */
int pmx_db_schema_version(PGconn *pg, int *version, char *err, size_t errlen);
/* The same, and whether schema_migrations exists at all (`postmux doctor` tells
 * "not migrated" from "behind"). */
int pmx_db_schema_state(PGconn *pg, bool *exists, int *version, char *err, size_t errlen);
/* The newest migration this binary carries. */
int pmx_db_schema_latest(void);

#endif
