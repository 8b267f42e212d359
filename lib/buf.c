/* The growing byte buffer; see buf.h. */
#include "lib/buf.h"
#include "lib/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pmx_buf_init(pmx_buf_t *b)
{
    b->data = NULL;
    b->len = b->cap = 0;
}

void pmx_buf_reserve(pmx_buf_t *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap *= 2;
    b->data = pmx_xrealloc(b->data, cap);
    b->cap = cap;
    b->data[b->len] = '\0';      /* a fresh allocation is a valid "" too */
}

void pmx_buf_append(pmx_buf_t *b, const void *p, size_t n)
{
    pmx_buf_reserve(b, n);
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void pmx_buf_append_str(pmx_buf_t *b, const char *s)
{
    pmx_buf_append(b, s, strlen(s));
}

void pmx_buf_append_char(pmx_buf_t *b, char c)
{
    pmx_buf_append(b, &c, 1);
}

void pmx_buf_vappendf(pmx_buf_t *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) return;
    pmx_buf_reserve(b, (size_t)n);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void pmx_buf_appendf(pmx_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pmx_buf_vappendf(b, fmt, ap);
    va_end(ap);
}

void pmx_buf_consume(pmx_buf_t *b, size_t n)
{
    if (n >= b->len) {
        pmx_buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

void pmx_buf_reset(pmx_buf_t *b)
{
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

const char *pmx_buf_cstr(const pmx_buf_t *b)
{
    return b->data ? b->data : "";
}

char *pmx_buf_detach(pmx_buf_t *b)
{
    char *p = b->data ? b->data : pmx_xstrdup("");
    pmx_buf_init(b);
    return p;
}

void pmx_buf_free(pmx_buf_t *b)
{
    free(b->data);
    pmx_buf_init(b);
}

void pmx_buf_free_secret(pmx_buf_t *b)
{
    pmx_wipe(b->data, b->cap);
    pmx_buf_free(b);
}
