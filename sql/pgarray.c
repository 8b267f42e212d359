/* Postgres array literals as text; see pgarray.h. */
#include "sql/pgarray.h"

#include <inttypes.h>

/* Every element after the opening '{' is preceded by a comma. */
static void separate(pmx_buf_t *arr)
{
    if (arr->len > 1) pmx_buf_append_char(arr, ',');
}

void pmx_pgarray_text(pmx_buf_t *arr, const char *s)
{
    separate(arr);
    if (!s) {
        pmx_buf_append_str(arr, "NULL");
        return;
    }
    pmx_buf_append_char(arr, '"');
    for (const char *p = s; *p; p++) {
        if (*p == '"' || *p == '\\') pmx_buf_append_char(arr, '\\');
        pmx_buf_append_char(arr, *p);
    }
    pmx_buf_append_char(arr, '"');
}

void pmx_pgarray_int(pmx_buf_t *arr, int64_t v)
{
    separate(arr);
    pmx_buf_appendf(arr, "%" PRId64, v);
}

void pmx_pgarray_bool(pmx_buf_t *arr, bool v)
{
    separate(arr);
    pmx_buf_append_char(arr, v ? 't' : 'f');
}
