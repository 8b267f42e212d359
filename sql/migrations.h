/*
 * The schema migrations compiled into the binaries (generated from sql/NNN_*.sql
 * by scripts/embed-sql.sh), in ascending version order.
 */
#ifndef PMX_SQL_MIGRATIONS_H
#define PMX_SQL_MIGRATIONS_H
#include <stddef.h>

typedef struct {
    int         version;
    const char *name;
    const char *sql;
} pmx_migration_t;

extern const pmx_migration_t pmx_migrations[];
extern const size_t          pmx_migrations_count;

#endif
