/*
 * Postgres array literals built as text ("{...}"), for passing a whole batch
 * as one array parameter ($1::text[], $2::bigint[], ...) in a single
 * statement. The caller appends '{', then elements, then '}'; each appender
 * puts the comma in front of every element but the first.
 */
#ifndef PMX_SQL_PGARRAY_H
#define PMX_SQL_PGARRAY_H
#include <stdbool.h>
#include <stdint.h>

#include "lib/buf.h"

/* s as a quoted element (" and \ escaped); NULL as SQL NULL. */
void pmx_pgarray_text(pmx_buf_t *arr, const char *s);
void pmx_pgarray_int(pmx_buf_t *arr, int64_t v);
void pmx_pgarray_bool(pmx_buf_t *arr, bool v);

#endif
