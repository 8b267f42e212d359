/*
 * pmx_buf_t: the one growing byte buffer for protocol and message text (like
 * Postfix's VSTRING or Redis's sds). Length-aware, binary-safe, and always kept
 * NUL-terminated so .data can be handed to C string APIs when it holds text.
 */
#ifndef PMX_LIB_BUF_H
#define PMX_LIB_BUF_H
#include <stdarg.h>
#include <stddef.h>

typedef struct {
    char  *data;   /* NULL until the first append; data[len] == '\0' after */
    size_t len;
    size_t cap;
} pmx_buf_t;

#define PMX_BUF_INIT { NULL, 0, 0 }

void  pmx_buf_init(pmx_buf_t *b);
void  pmx_buf_reserve(pmx_buf_t *b, size_t extra);
void  pmx_buf_append(pmx_buf_t *b, const void *p, size_t n);
void  pmx_buf_append_str(pmx_buf_t *b, const char *s);
void  pmx_buf_append_char(pmx_buf_t *b, char c);
void  pmx_buf_appendf(pmx_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void  pmx_buf_vappendf(pmx_buf_t *b, const char *fmt, va_list ap);
/* Removes the first n bytes (consumed input). */
void  pmx_buf_consume(pmx_buf_t *b, size_t n);
void  pmx_buf_reset(pmx_buf_t *b);
/* Returns a NUL-terminated string ("" for an empty buffer); valid until the next change. */
const char *pmx_buf_cstr(const pmx_buf_t *b);
/* Hands the storage to the caller (who frees it) and leaves the buffer empty. */
char *pmx_buf_detach(pmx_buf_t *b);
void  pmx_buf_free(pmx_buf_t *b);
/* Like pmx_buf_free, but wipes the bytes first (secrets). */
void  pmx_buf_free_secret(pmx_buf_t *b);

#endif
