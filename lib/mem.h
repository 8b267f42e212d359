/*
 * Allocation that never returns NULL (like Postfix's mymalloc): running out of
 * memory is not a condition any caller can handle better than by stopping.
 */
#ifndef PMX_LIB_MEM_H
#define PMX_LIB_MEM_H
#include <stddef.h>

void *pmx_xmalloc(size_t n);
void *pmx_xcalloc(size_t count, size_t n);
void *pmx_xrealloc(void *p, size_t n);
char *pmx_xstrdup(const char *s);
char *pmx_xstrndup(const char *s, size_t n);
/* Wipes a secret (key, password) before its memory is released. */
void  pmx_wipe(void *p, size_t n);

#endif
