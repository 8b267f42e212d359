/* Allocation wrappers: abort with a message instead of returning NULL. */
#include "lib/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void oom(size_t n)
{
    fprintf(stderr, "postmux: out of memory allocating %zu bytes\n", n);
    abort();
}

void *pmx_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) oom(n);
    return p;
}

void *pmx_xcalloc(size_t count, size_t n)
{
    void *p = calloc(count ? count : 1, n ? n : 1);
    if (!p) oom(count * n);
    return p;
}

void *pmx_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) oom(n);
    return q;
}

char *pmx_xstrndup(const char *s, size_t n)
{
    char *p = pmx_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *pmx_xstrdup(const char *s)
{
    return pmx_xstrndup(s, strlen(s));
}

void pmx_wipe(void *p, size_t n)
{
    if (p && n) explicit_bzero(p, n);
}
