/*
 * libFuzzer target for smtp/server.c: bytes from a client go into the session
 * state machine (no sockets), split into chunks at points the input chooses,
 * with the owner's answers (AUTH results, queueing results, TLS outcome, a
 * drain or a timeout) also chosen by the input and given either at once from
 * inside the callback or later, between chunks. Checked on every run:
 * - everything written is a sequence of complete, well-formed SMTP replies
 *   (smtp/reply.h parses it back), and nothing is written after close;
 * - a message handed to the owner has a sender, 1..max recipients, and is
 *   CRLF text without NUL, bare CR/LF or lines over 998 octets, within the
 *   size limit (so nothing a client smuggles can reach the queue);
 * - callbacks are consistent: no AUTH, MAIL or message callback while another
 *   one is outstanding, close is called at most once;
 * - message memory (hold/room, answered yes or no by the input): a hold only
 *   grows, in whole steps, or is given back (0) when one is held; a message
 *   handed over lies within what was granted; a taken buffer holds it, with
 *   the headroom before it and a NUL after it.
 * The first input byte holds the owner's choices; the rest is the client.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "smtp/reply.h"
#include "smtp/server.h"

#define MAX_SIZE 4096u
#define MAX_RCPT 5u

typedef struct {
    pmx_smtp_server_t *s;
    uint8_t  flags;
    uint32_t rng;
    bool     closed;
    bool     tls_pending;
    bool     auth_pending;
    bool     msg_pending;
    size_t   headroom;
    uint64_t held;
    bool     mail_pending;
    pmx_buf_t out;
} harness_t;

static uint32_t next(harness_t *h)
{
    h->rng = h->rng * 1103515245u + 12345u;
    return h->rng >> 16;
}

static void check_replies(harness_t *h)
{
    pmx_smtp_reply_t r;
    pmx_smtp_reply_init(&r);
    size_t off = 0;
    while (off < h->out.len) {
        size_t used = 0;
        int rc = pmx_smtp_reply_parse(&r, h->out.data + off, h->out.len - off, &used);
        if (rc != 1) abort();             /* writes are whole replies */
        off += used;
    }
    pmx_smtp_reply_free(&r);
    pmx_buf_reset(&h->out);
}

static void cb_write(void *arg, const char *data, size_t n)
{
    harness_t *h = arg;
    if (h->closed || n == 0) abort();
    pmx_buf_append(&h->out, data, n);
    check_replies(h);
}

static int cb_starttls(void *arg)
{
    harness_t *h = arg;
    if (h->tls_pending) abort();
    if ((h->flags & 0x30) == 0x30) return -1;
    if (h->flags & 0x01) {
        pmx_smtp_server_tls_done(h->s, (h->flags & 0x20) == 0);
    } else {
        h->tls_pending = true;
    }
    return 0;
}

static const int auth_codes[] = { 235, 535, 454, 421 };

static void cb_auth(void *arg, const char *pw, size_t n)
{
    harness_t *h = arg;
    (void)pw;
    (void)n;
    if (h->auth_pending || h->msg_pending || h->mail_pending) abort();
    if (h->flags & 0x01) {
        int code = auth_codes[next(h) % ((h->flags & 0x40) ? 4 : 3)];
        pmx_smtp_server_auth_done(h->s, code, code == 235 ? "2.7.0" : "5.7.8", "answer");
    } else {
        h->auth_pending = true;
    }
}

static void check_message(const pmx_smtp_envelope_t *env)
{
    if (!env->mail_from || !env->mail_from[0]) abort();
    if (env->nrcpts == 0 || env->nrcpts > MAX_RCPT) abort();
    for (size_t i = 0; i < env->nrcpts; i++)
        if (!env->rcpts[i] || !strchr(env->rcpts[i], '@')) abort();
    if (env->len > MAX_SIZE) abort();
    size_t line = 0;
    for (size_t i = 0; i < env->len; i++) {
        char c = env->msg[i];
        if (c == '\0') abort();
        if (c == '\r') {
            if (i + 1 >= env->len || env->msg[i + 1] != '\n') abort();
            i++;
            line = 0;
            continue;
        }
        if (c == '\n') abort();           /* a bare LF */
        if (++line > 998) abort();
    }
    if (env->len && (env->len < 2 || env->msg[env->len - 1] != '\n')) abort();
}

static void cb_message(void *arg, const pmx_smtp_envelope_t *env)
{
    harness_t *h = arg;
    if (h->auth_pending || h->msg_pending || h->mail_pending) abort();
    check_message(env);
    if (env->len + h->headroom > h->held) abort();       /* stored beyond the hold */
    if (next(h) & 1) {
        pmx_buf_t b;
        size_t off;
        pmx_smtp_server_take_message(h->s, &b, &off);
        if (!b.data || off != h->headroom || b.data + off != env->msg) abort();
        if (b.data[off + env->len] != '\0') abort();
        pmx_buf_free(&b);
        h->held = 0;                                      /* the owner's, given back */
    }
    if (h->flags & 0x02) {
        static const int codes[] = { 250, 451, 550, 421 };
        int code = codes[next(h) % 4];
        const char *enh = code == 250 ? "2.0.0" : code == 550 ? "5.7.1" : "4.3.0";
        pmx_smtp_server_message_done(h->s, code, enh, "queued");
    } else {
        h->msg_pending = true;
    }
}

static bool cb_hold(void *arg, uint64_t n)
{
    harness_t *h = arg;
    if (n == 0) {
        if (h->held == 0) abort();                        /* nothing to give back */
        h->held = 0;
        return true;
    }
    if (n <= h->held || n % PMX_SMTP_SERVER_HOLD_STEP != 0) abort();
    if ((next(h) & 7) == 0) return false;
    h->held = n;
    return true;
}

static bool cb_room(void *arg, uint64_t n)
{
    harness_t *h = arg;
    (void)n;
    return (next(h) & 7) != 0;
}

/* MAIL re-checked by the owner (submission/session.c: is the key still good). */
static const int mail_codes[] = { 250, 535, 451, 421 };
static void cb_mail(void *arg, const char *from)
{
    harness_t *h = arg;
    if (h->auth_pending || h->msg_pending || h->mail_pending || !from || !from[0]) abort();
    if (next(h) & 1) {
        int code = mail_codes[next(h) % 4];
        pmx_smtp_server_mail_done(h->s, code, code == 250 ? "2.1.0" : "5.7.8", "now");
    } else {
        h->mail_pending = true;
    }
}

static void cb_close(void *arg)
{
    harness_t *h = arg;
    if (h->closed) abort();
    h->closed = true;
}

/* Answers whatever is outstanding (the owner's asynchronous answers). */
static void answer_pending(harness_t *h)
{
    if (h->tls_pending) {
        h->tls_pending = false;
        pmx_smtp_server_tls_done(h->s, (next(h) & 3) != 0);
    }
    if (h->auth_pending) {
        h->auth_pending = false;
        int code = auth_codes[next(h) % 4];
        pmx_smtp_server_auth_done(h->s, code, code == 235 ? "2.7.0" : "5.7.8", "later");
    }
    if (h->mail_pending) {
        h->mail_pending = false;
        int code = mail_codes[next(h) % 4];
        pmx_smtp_server_mail_done(h->s, code, code == 250 ? "2.1.0" : "5.7.8", "later");
    }
    if (h->msg_pending) {
        h->msg_pending = false;
        bool ok = next(h) & 1;
        pmx_smtp_server_message_done(h->s, ok ? 250 : 451, ok ? "2.0.0" : "4.3.0", "later");
    }
}

/* Recipients starting with "x" are refused, "y" not now (the inbound listener checks RCPT). */
static int cb_rcpt(void *arg, const char *rcpt)
{
    (void)arg;
    return rcpt[0] == 'x' ? 550 : rcpt[0] == 'y' ? 451 : 250;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    harness_t h;
    memset(&h, 0, sizeof h);
    h.flags = data[0];
    h.rng = data[0] * 2654435761u;
    pmx_smtp_server_opts_t o = {
        .hostname = "fuzz.test",
        .starttls = (h.flags & 0x04) != 0,
        .auth_requires_tls = (h.flags & 0x08) != 0,
        .max_message_size = MAX_SIZE,
        .max_recipients = MAX_RCPT,
        .msg_headroom = h.headroom = (size_t)(data[0] % 7) * 5,
        .junk_limit = (h.flags & 0x40) ? 10 : 0,
        .no_auth = (h.flags & 0x48) == 0x48,   /* the [inbound] listener's mode */
    };
    static const pmx_smtp_server_cbs_t cbs = { cb_write, cb_starttls, cb_auth, cb_message, cb_close,
                                               cb_hold, cb_room, cb_mail, cb_rcpt };
    h.s = pmx_smtp_server_new(&o, &cbs, &h);
    pmx_smtp_server_start(h.s);

    const char *in = (const char *)data + 1;
    size_t n = size - 1, off = 0, chunks = 0;
    while (off < n && !h.closed) {
        size_t len = 1 + next(&h) % 97;
        if (len > n - off) len = n - off;
        pmx_smtp_server_input(h.s, in + off, len);
        off += len;
        chunks++;
        if (h.closed) break;
        if ((next(&h) & 3) == 0) answer_pending(&h);
        if ((h.flags & 0x80) && chunks == 3) pmx_smtp_server_drain(h.s);
    }
    if (!h.closed) answer_pending(&h);
    if (!h.closed && (h.flags & 0x10)) pmx_smtp_server_timeout(h.s);
    pmx_smtp_server_free(h.s);
    pmx_buf_free(&h.out);
    return 0;
}
