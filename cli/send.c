/*
 * `postmux send` (postmux(1)): enqueues one job on a workspace's stream exactly
 * as any Redis client would — XADD {prefix}:{ws_id}:jobs * field value ... —
 * after checking it with pmx_job_decode, the code the worker runs on it. A job
 * the worker would refuse is refused here with the same reason, and nothing
 * is added to the stream.
 *
 * Options map one to one onto job fields; --to/--cc/--bcc may repeat (joined
 * into one comma-separated list), --header 'Name: value' may repeat (one
 * header:Name field each), --raw FILE reads the message from FILE ("-" for
 * stdin). On success the stream entry id is printed.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>

#include "cli/cli.h"
#include "lib/buf.h"
#include "lib/job.h"
#include "lib/mem.h"
#include "lib/verp.h"
#include "queue/enqueue.h"

static const char usage_text[] =
    "usage: postmux send --workspace WS --from A --to B [--cc C] [--bcc D]\n"
    "                    [--subject S] [--text T] [--html H] [--raw FILE|-]\n"
    "                    [--reply-to A] [--header 'Name: value']... [--id ID]\n"
    "                    [--metadata M] [--category C] [--unsubscribe]\n";

enum { O_WS = 'w', O_FROM = 'f', O_TO = 't', O_CC = 256, O_BCC, O_SUBJECT, O_TEXT, O_HTML,
       O_RAW, O_REPLY_TO, O_HEADER, O_ID, O_METADATA, O_CATEGORY, O_UNSUBSCRIBE, O_HELP };

typedef struct {
    const char *ws, *from, *subject, *text, *html, *raw_path, *reply_to, *id, *metadata, *category;
    pmx_buf_t   to, cc, bcc;                  /* joined with ", " when repeated */
    pmx_buf_t   header_names;                 /* "header:Name\0header:Name\0..." */
    const char **header_values;
    size_t      nheaders;
    char       *raw;
    size_t      raw_len;
    bool        unsubscribe;                  /* the job field unsubscribe = yes */
} send_opts_t;

static void free_opts(send_opts_t *o)
{
    pmx_buf_free(&o->to);
    pmx_buf_free(&o->cc);
    pmx_buf_free(&o->bcc);
    pmx_buf_free(&o->header_names);
    free(o->header_values);
    free(o->raw);
}

static int set_once(const char **slot, const char *opt, const char *v)
{
    if (*slot) return pmx_cli_usage("--%s given twice", opt);
    *slot = v;
    return 0;
}

static void join(pmx_buf_t *b, const char *v)
{
    if (b->len) pmx_buf_append_str(b, ", ");
    pmx_buf_append_str(b, v);
}

/* --header 'Name: value': the name is everything before the first ':'. */
static int add_header(send_opts_t *o, const char *arg)
{
    const char *colon = strchr(arg, ':');
    if (!colon) return pmx_cli_usage("--header needs 'Name: value': %s", arg);
    const char *v = colon + 1;
    while (*v == ' ' || *v == '\t') v++;
    pmx_buf_append_str(&o->header_names, "header:");
    pmx_buf_append(&o->header_names, arg, (size_t)(colon - arg));
    pmx_buf_append_char(&o->header_names, '\0');
    o->header_values = pmx_xrealloc(o->header_values, (o->nheaders + 1) * sizeof *o->header_values);
    o->header_values[o->nheaders++] = v;
    return 0;
}

static int read_raw(send_opts_t *o)
{
    FILE *f = strcmp(o->raw_path, "-") == 0 ? stdin : fopen(o->raw_path, "rb");
    if (!f) return pmx_cli_error("--raw %s: %s", o->raw_path, strerror(errno));
    pmx_buf_t b = PMX_BUF_INIT;
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) pmx_buf_append(&b, chunk, n);
    int bad = ferror(f);
    if (f != stdin) fclose(f);
    if (bad) {
        pmx_buf_free(&b);
        return pmx_cli_error("--raw %s: read error", o->raw_path);
    }
    o->raw_len = b.len;
    o->raw = b.data ? pmx_buf_detach(&b) : pmx_xstrdup("");
    return 0;
}

static void put(pmx_job_field_t *f, size_t *n, const char *name, const char *v, size_t vlen)
{
    f[*n].name = name;
    f[*n].name_len = strlen(name);
    f[*n].value = v;
    f[*n].value_len = vlen;
    (*n)++;
}

static int parse_opts(send_opts_t *o, int argc, char **argv)
{
    static const struct option opts[] = {
        { "workspace", required_argument, NULL, O_WS },
        { "from",      required_argument, NULL, O_FROM },
        { "to",        required_argument, NULL, O_TO },
        { "cc",        required_argument, NULL, O_CC },
        { "bcc",       required_argument, NULL, O_BCC },
        { "subject",   required_argument, NULL, O_SUBJECT },
        { "text",      required_argument, NULL, O_TEXT },
        { "html",      required_argument, NULL, O_HTML },
        { "raw",       required_argument, NULL, O_RAW },
        { "reply-to",  required_argument, NULL, O_REPLY_TO },
        { "header",    required_argument, NULL, O_HEADER },
        { "id",        required_argument, NULL, O_ID },
        { "metadata",  required_argument, NULL, O_METADATA },
        { "category",  required_argument, NULL, O_CATEGORY },
        { "unsubscribe", no_argument,     NULL, O_UNSUBSCRIBE },
        { "help",      no_argument,       NULL, O_HELP },
        { NULL, 0, NULL, 0 },
    };
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "w:f:t:h", opts, NULL)) != -1) {
        int rc = 0;
        switch (ch) {
        case O_WS:       rc = set_once(&o->ws, "workspace", optarg); break;
        case O_FROM:     rc = set_once(&o->from, "from", optarg); break;
        case O_TO:       join(&o->to, optarg); break;
        case O_CC:       join(&o->cc, optarg); break;
        case O_BCC:      join(&o->bcc, optarg); break;
        case O_SUBJECT:  rc = set_once(&o->subject, "subject", optarg); break;
        case O_TEXT:     rc = set_once(&o->text, "text", optarg); break;
        case O_HTML:     rc = set_once(&o->html, "html", optarg); break;
        case O_RAW:      rc = set_once(&o->raw_path, "raw", optarg); break;
        case O_REPLY_TO: rc = set_once(&o->reply_to, "reply-to", optarg); break;
        case O_ID:       rc = set_once(&o->id, "id", optarg); break;
        case O_METADATA: rc = set_once(&o->metadata, "metadata", optarg); break;
        case O_CATEGORY: rc = set_once(&o->category, "category", optarg); break;
        case O_UNSUBSCRIBE: o->unsubscribe = true; break;
        case O_HEADER:   rc = add_header(o, optarg); break;
        case O_HELP:     fputs(usage_text, stdout); return -1;
        default:
            return pmx_cli_usage("send: unknown option or missing value: %s", argv[optind - 1]);
        }
        if (rc) return rc;
    }
    if (optind < argc) return pmx_cli_usage("send: unexpected argument '%s'", argv[optind]);
    if (!o->ws) return pmx_cli_usage("send needs --workspace");
    if (!o->from) return pmx_cli_usage("send needs --from");
    if (!o->to.len) return pmx_cli_usage("send needs --to");
    return 0;
}

/* XADD through queue/enqueue.h; prints the entry id. */
static int xadd(pmx_cli_t *c, const char *ws_id, const pmx_job_field_t *f, size_t nf)
{
    redisContext *r = pmx_cli_redis(c);
    if (!r) return PMX_EXIT_USER;
    pmx_buf_t id = PMX_BUF_INIT;
    char err[512];
    int rc;
    if (pmx_queue_enqueue_sync(r, c->cfg.redis_prefix, ws_id, f, nf, &id, err, sizeof err) < 0) {
        rc = pmx_cli_error("%s", err);
    } else {
        printf("%s\n", pmx_buf_cstr(&id));
        rc = PMX_EXIT_OK;
    }
    pmx_buf_free(&id);
    return rc;
}

int pmx_cli_send(pmx_cli_t *c, int argc, char **argv)
{
    send_opts_t o;
    memset(&o, 0, sizeof o);
    int rc = parse_opts(&o, argc, argv);
    if (rc) {
        free_opts(&o);
        return rc < 0 ? PMX_EXIT_OK : rc;
    }
    if (o.raw_path && (rc = read_raw(&o)) != 0) {
        free_opts(&o);
        return rc;
    }
    if (pmx_cli_config(c) < 0) {
        free_opts(&o);
        return PMX_EXIT_USER;
    }

    /* The fields, in the order a client would write them. */
    pmx_job_field_t *f = pmx_xcalloc(14 + o.nheaders, sizeof *f);
    size_t nf = 0;
    put(f, &nf, "from", o.from, strlen(o.from));
    put(f, &nf, "to", o.to.data, o.to.len);
    if (o.cc.len) put(f, &nf, "cc", o.cc.data, o.cc.len);
    if (o.bcc.len) put(f, &nf, "bcc", o.bcc.data, o.bcc.len);
    if (o.reply_to) put(f, &nf, "reply_to", o.reply_to, strlen(o.reply_to));
    if (o.subject) put(f, &nf, "subject", o.subject, strlen(o.subject));
    if (o.text) put(f, &nf, "text", o.text, strlen(o.text));
    if (o.html) put(f, &nf, "html", o.html, strlen(o.html));
    const char *hn = o.header_names.data;
    for (size_t i = 0; i < o.nheaders; i++, hn += strlen(hn) + 1)
        put(f, &nf, hn, o.header_values[i], strlen(o.header_values[i]));
    if (o.raw) put(f, &nf, "raw", o.raw, o.raw_len);
    if (o.id) put(f, &nf, "id", o.id, strlen(o.id));
    if (o.metadata) put(f, &nf, "metadata", o.metadata, strlen(o.metadata));
    if (o.category) put(f, &nf, "category", o.category, strlen(o.category));
    if (o.unsubscribe) put(f, &nf, "unsubscribe", "yes", 3);

    char err[512];
    pmx_job_t job;
    if (pmx_job_decode(f, nf, (size_t)c->cfg.submission_max_message_size, &job, err,
                       sizeof err) < 0) {
        rc = pmx_cli_error("%s", err);
        goto done;
    }
    pmx_job_free(&job);
    /* Refused here, not rejected later: no link could be offered (docs/queue.md). */
    const char *off = o.unsubscribe ? pmx_verp_unsubscribe_unavailable(c->cfg.http_public_url,
                                                                       c->cfg.inbound_listen)
                                    : NULL;
    if (off) {
        rc = pmx_cli_error("%s", off);
        goto done;
    }

    char ws_id[20];
    if (pmx_cli_workspace_id(c, o.ws, ws_id) < 0) {
        rc = PMX_EXIT_USER;
        goto done;
    }
    rc = xadd(c, ws_id, f, nf);
done:
    free(f);
    free_opts(&o);
    return rc;
}
