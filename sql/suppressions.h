/*
 * The statements the daemon runs on the suppressions table (sql/005_suppressions.sql).
 * The worker's cache (inbound/suppress.h) loads the list in pages with
 * PMX_SQL_SUPPRESSIONS_PAGE: keyset paging on the primary key, so each page
 * is an index range scan however large the list, and a page never holds more
 * than PMX_SQL_SUPPRESSIONS_PAGE_ROWS rows in memory.
 */
#ifndef PMX_SQL_SUPPRESSIONS_H
#define PMX_SQL_SUPPRESSIONS_H

#define PMX_SQL_SUPPRESSIONS_PAGE_ROWS 20000

/* $1..$3: the last (workspace_id, address, scope) of the previous page ('' to start).
 * Columns: workspace_id, scope, reason, expires (Unix seconds, 0 = never), address. */
extern const char pmx_sql_suppressions_page[];

#endif
