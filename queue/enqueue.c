/*
 * XADD of one job; see enqueue.h. xadd_argv() is the one encoding both forms
 * send.
 */
#include "queue/enqueue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/mem.h"
#include "queue/keys.h"

typedef struct {
    pmx_buf_t    key;
    int          argc;
    const char **argv;
    size_t      *lens;
} xadd_t;

/* XADD <key> * then name value per field; the strings stay the caller's. */
static void xadd_argv(xadd_t *x, const char *prefix, const char *ws,
                      const pmx_job_field_t *f, size_t nf)
{
    pmx_buf_init(&x->key);
    pmx_queue_key(&x->key, PMX_QUEUE_KEY_JOBS, prefix, ws);
    size_t argc = 3 + 2 * nf;
    x->argc = (int)argc;
    x->argv = pmx_xcalloc(argc, sizeof *x->argv);
    x->lens = pmx_xcalloc(argc, sizeof *x->lens);
    x->argv[0] = "XADD"; x->lens[0] = 4;
    x->argv[1] = x->key.data; x->lens[1] = x->key.len;
    x->argv[2] = "*"; x->lens[2] = 1;
    for (size_t i = 0; i < nf; i++) {
        x->argv[3 + 2 * i] = f[i].name;
        x->lens[3 + 2 * i] = f[i].name_len;
        x->argv[4 + 2 * i] = f[i].value;
        x->lens[4 + 2 * i] = f[i].value_len;
    }
}

static void xadd_free(xadd_t *x)
{
    free(x->argv);
    free(x->lens);
    pmx_buf_free(&x->key);
}

int pmx_queue_enqueue(pmx_redis_conn_t *rc, const char *prefix, const char *ws,
                      const pmx_job_field_t *fields, size_t nfields,
                      redisCallbackFn *cb, void *privdata)
{
    if (!rc) return -1;
    xadd_t x;
    xadd_argv(&x, prefix, ws, fields, nfields);
    int r = pmx_redis_conn_command_argv(rc, cb, privdata, x.argc, x.argv, x.lens);
    xadd_free(&x);
    return r < 0 ? -1 : 0;
}

int pmx_queue_enqueue_last(pmx_redis_conn_t *rc, const char *prefix, const char *ws,
                           const pmx_job_field_t *fields, size_t nfields, const char *last_name,
                           pmx_buf_t *last, size_t off, redisCallbackFn *cb, void *privdata)
{
    if (!rc) {
        pmx_buf_free(last);
        return -1;
    }
    /* The fields, then the last field's name; its value is *last. */
    pmx_job_field_t *f = pmx_xcalloc(nfields + 1, sizeof *f);
    for (size_t i = 0; i < nfields; i++) f[i] = fields[i];
    xadd_t x;
    xadd_argv(&x, prefix, ws, f, nfields + 1);
    x.argv[x.argc - 2] = last_name;
    x.lens[x.argc - 2] = strlen(last_name);
    int r = pmx_redis_conn_command_last(rc, cb, privdata, x.argc - 1, x.argv, x.lens, last, off);
    xadd_free(&x);
    free(f);
    return r < 0 ? -1 : 0;
}

int pmx_queue_enqueue_sync(redisContext *r, const char *prefix, const char *ws,
                           const pmx_job_field_t *fields, size_t nfields, pmx_buf_t *id,
                           char *err, size_t errlen)
{
    xadd_t x;
    xadd_argv(&x, prefix, ws, fields, nfields);
    redisReply *rep = redisCommandArgv(r, x.argc, x.argv, x.lens);
    int rc = -1;
    if (!rep)
        snprintf(err, errlen, "Redis: %s", r->errstr[0] ? r->errstr : "no reply");
    else if (rep->type == REDIS_REPLY_ERROR)
        snprintf(err, errlen, "Redis XADD %s: %s", x.key.data, rep->str);
    else if (rep->type != REDIS_REPLY_STRING)
        snprintf(err, errlen, "Redis XADD %s: unexpected reply type %d", x.key.data, rep->type);
    else {
        pmx_buf_append(id, rep->str, rep->len);
        rc = 0;
    }
    if (rep) freeReplyObject(rep);
    xadd_free(&x);
    return rc;
}
