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

/*
 * "a,b" -> "{a,b}" appended to arr, each name one of known[0..n) and given
 * once (API key scopes, webhook events). 0, or -1 with the reason in err:
 * "<label> has an empty name: ...", "unknown <what> 'x' (known: ...)",
 * "<what> 'a' given twice".
 */
int pmx_pgarray_known_list(const char *const *known, size_t n, const char *label,
                           const char *what, const char *s, pmx_buf_t *arr, char *err,
                           size_t errlen);

#endif
