/*
 * Redis key names; see keys.h. One table of suffixes, so the shape
 * {prefix}:{ws}:<suffix> is written once.
 */
#include "queue/keys.h"

#include <string.h>

static const char *const suffix[] = {
    [PMX_QUEUE_KEY_JOBS] = "jobs",
    [PMX_QUEUE_KEY_RETRY] = "retry",
    [PMX_QUEUE_KEY_DEAD] = "dead",
    [PMX_QUEUE_KEY_RATE] = "rate",
    [PMX_QUEUE_KEY_QUOTA] = "quota:",
};

void pmx_queue_key(pmx_buf_t *out, pmx_queue_key_t which, const char *prefix, const char *ws)
{
    pmx_buf_appendf(out, "%s:{%s}:%s", prefix, ws, suffix[which]);
}

char *pmx_queue_key_new(pmx_queue_key_t which, const char *prefix, const char *ws)
{
    pmx_buf_t b = PMX_BUF_INIT;
    pmx_queue_key(&b, which, prefix, ws);
    return pmx_buf_detach(&b);
}

void pmx_queue_key_site_rate(pmx_buf_t *out, const char *prefix, const char *site)
{
    pmx_buf_appendf(out, "%s:site:{%s}:rate", prefix, site);
}

void pmx_queue_key_idem(pmx_buf_t *out, const char *prefix, const char *ws, const char *id)
{
    pmx_buf_appendf(out, "%s:{%s}:idem:%s", prefix, ws, id);
}

void pmx_queue_key_jobs_pattern(pmx_buf_t *out, const char *prefix)
{
    for (const char *s = prefix; *s; s++) {
        if (strchr("*?[]\\", *s)) pmx_buf_append_char(out, '\\');
        pmx_buf_append_char(out, *s);
    }
    pmx_buf_appendf(out, ":{*}:%s", suffix[PMX_QUEUE_KEY_JOBS]);
}

const char *pmx_queue_key_jobs_ws(const char *prefix, const char *key, size_t len, size_t *n)
{
    /* prefix ":{" id "}:" suffix, with an id of at least one byte */
    const char *sfx = suffix[PMX_QUEUE_KEY_JOBS];
    size_t pl = strlen(prefix), sl = strlen(sfx);
    if (len < pl + 2 + 1 + 2 + sl || memcmp(key, prefix, pl) != 0 ||
        memcmp(key + pl, ":{", 2) != 0 || memcmp(key + len - sl - 2, "}:", 2) != 0 ||
        memcmp(key + len - sl, sfx, sl) != 0)
        return NULL;
    *n = len - pl - 2 - 2 - sl;
    return key + pl + 2;
}
