/*
 * The statements the daemon runs on the suppressions table (sql/005_suppressions.sql).
 * The worker's cache (inbound/suppress.h) loads the list in pages with
 * pmx_sql_suppressions_page: keyset paging on the id column, so each page is
 * an index range scan however large the list, and a page never holds more
 * than PMX_SQL_SUPPRESSIONS_PAGE_ROWS rows in memory.
 */
#ifndef PMX_SQL_SUPPRESSIONS_H
#define PMX_SQL_SUPPRESSIONS_H

#define PMX_SQL_SUPPRESSIONS_PAGE_ROWS 20000

/* $1: the last id of the previous page (0 to start).
 * Columns: workspace_id, scope, reason, expires (Unix seconds, 0 = never), address, id. */
extern const char pmx_sql_suppressions_page[];

#endif
