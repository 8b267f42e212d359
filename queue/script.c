/*
 * EVALSHA with a fallback to EVAL on NOSCRIPT; see script.h.
 *
 * Each run keeps a copy of its arguments (one block: lengths + bytes) so the
 * EVAL resend can be built after the EVALSHA reply came back.
 */
#include "queue/script.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "lib/log.h"
#include "lib/mem.h"

typedef struct {
    pmx_queue_script_t *s;
    redisCallbackFn    *cb;
    void               *privdata;
    int                 nkeys;
    int                 nargs;
    const char        **argv;     /* [0] verb, [1] sha/text, [2] nkeys, [3..] args */
    size_t             *argvlen;
    char                nkeys_str[16];
    char               *copy;     /* the copied arguments */
} script_req_t;

const char *pmx_queue_script_sha(pmx_queue_script_t *s)
{
    if (s->sha[0] == '\0') {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        if (EVP_Digest(s->text, strlen(s->text), md, &mdlen, EVP_sha1(), NULL) != 1 ||
            mdlen != 20)
            pmx_fatal("cannot compute SHA-1 of script %s", s->name);
        static const char hex[] = "0123456789abcdef";
        for (unsigned i = 0; i < 20; i++) {
            s->sha[2 * i] = hex[md[i] >> 4];
            s->sha[2 * i + 1] = hex[md[i] & 15];
        }
        s->sha[40] = '\0';
    }
    return s->sha;
}

static void req_free(script_req_t *r)
{
    free(r->argv);
    free(r->argvlen);
    free(r->copy);
    free(r);
}

static int send_req(pmx_redis_conn_t *rc, script_req_t *r, bool with_text);

static bool is_noscript(const redisReply *reply)
{
    return reply && reply->type == REDIS_REPLY_ERROR && reply->str &&
           reply->len >= 8 && memcmp(reply->str, "NOSCRIPT", 8) == 0;
}

static void script_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    script_req_t *r = privdata;
    if (is_noscript(reply)) {
        pmx_log_debug("redis script not cached, sending it script=%s", r->s->name);
        if (send_req(pmx_redis_conn_of(ac), r, true) == 0) return;
        reply = NULL;   /* the connection is not up any more */
    }
    r->cb(ac, reply, r->privdata);
    req_free(r);
}

static int send_req(pmx_redis_conn_t *rc, script_req_t *r, bool with_text)
{
    r->argv[0] = with_text ? "EVAL" : "EVALSHA";
    r->argvlen[0] = strlen(r->argv[0]);
    r->argv[1] = with_text ? r->s->text : pmx_queue_script_sha(r->s);
    r->argvlen[1] = strlen(r->argv[1]);
    return pmx_redis_conn_command_argv(rc, script_cb, r, r->nargs + 3, r->argv, r->argvlen);
}

int pmx_queue_script_run(pmx_redis_conn_t *rc, pmx_queue_script_t *s, int nkeys,
                         int nargs, const char *const *args, const size_t *lens,
                         redisCallbackFn *cb, void *privdata)
{
    if (!pmx_redis_conn_is_up(rc)) return -1;
    script_req_t *r = pmx_xcalloc(1, sizeof *r);
    r->s = s;
    r->cb = cb;
    r->privdata = privdata;
    r->nkeys = nkeys;
    r->nargs = nargs;
    r->argv = pmx_xcalloc((size_t)nargs + 3, sizeof *r->argv);
    r->argvlen = pmx_xcalloc((size_t)nargs + 3, sizeof *r->argvlen);
    snprintf(r->nkeys_str, sizeof r->nkeys_str, "%d", nkeys);
    r->argv[2] = r->nkeys_str;
    r->argvlen[2] = strlen(r->nkeys_str);

    size_t total = 0;
    for (int i = 0; i < nargs; i++) {
        r->argvlen[i + 3] = lens ? lens[i] : strlen(args[i]);
        total += r->argvlen[i + 3];
    }
    r->copy = pmx_xmalloc(total + 1);
    size_t off = 0;
    for (int i = 0; i < nargs; i++) {
        memcpy(r->copy + off, args[i], r->argvlen[i + 3]);
        r->argv[i + 3] = r->copy + off;
        off += r->argvlen[i + 3];
    }
    if (send_req(rc, r, false) < 0) {
        req_free(r);
        return -1;
    }
    return 0;
}
