/* Postgres array literals as text; see pgarray.h. */
#include "sql/pgarray.h"

#include <stdio.h>
#include <string.h>

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

int pmx_pgarray_known_list(const char *const *known, size_t n, const char *label,
                           const char *what, const char *s, pmx_buf_t *arr, char *err,
                           size_t errlen)
{
    bool seen[32] = { false };
    if (n > 32) n = 32;
    size_t start = arr->len;
    pmx_buf_append_char(arr, '{');
    const char *p = s;
    for (;;) {
        size_t len = strcspn(p, ",");
        size_t k = 0;
        while (k < n && !(strlen(known[k]) == len && strncmp(known[k], p, len) == 0)) k++;
        if (len == 0) {
            snprintf(err, errlen, "%s has an empty name: '%.200s'", label, s);
            return -1;
        }
        if (k == n) {
            pmx_buf_t names = PMX_BUF_INIT;
            for (size_t i = 0; i < n; i++) pmx_buf_appendf(&names, "%s%s", i ? ", " : "", known[i]);
            snprintf(err, errlen, "unknown %s '%.*s' (known: %s)", what, (int)(len > 64 ? 64 : len),
                     p, pmx_buf_cstr(&names));
            pmx_buf_free(&names);
            return -1;
        }
        if (seen[k]) {
            snprintf(err, errlen, "%s '%s' given twice", what, known[k]);
            return -1;
        }
        seen[k] = true;
        if (arr->len > start + 1) pmx_buf_append_char(arr, ',');
        pmx_buf_append_str(arr, known[k]);
        if (p[len] == '\0') break;
        p += len + 1;
    }
    pmx_buf_append_char(arr, '}');
    pmx_buf_cstr(arr);
    return 0;
}
