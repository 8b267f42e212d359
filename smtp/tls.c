/*
 * A libuv TCP stream with optional TLS over OpenSSL memory BIOs; see tls.h.
 *
 * Data path: libuv reads ciphertext into rbuf, which is written into the
 * SSL's read BIO; SSL_do_handshake / SSL_read turn it into clear text
 * (decrypted into the same rbuf, which is free again by then). Outgoing clear
 * text goes through SSL_write into the write BIO, and whatever the write BIO
 * holds is moved into the pending output buffer. Output is double-buffered:
 * one buffer is in flight in a single uv_write while the other collects the
 * next bytes, so any number of small writes in one loop turn cost one syscall.
 */
#include "smtp/tls.h"
#include "lib/buf.h"
#include "lib/mem.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

struct pmx_smtp_tls_ctx {
    SSL_CTX *ssl_ctx;
    bool     server;
};

typedef enum { TLS_OFF = 0, TLS_HANDSHAKE, TLS_ON, TLS_FAILED } tls_state_t;

struct pmx_smtp_stream {
    uv_tcp_t              tcp;           /* tcp.data == the stream */
    uv_connect_t          connect_req;
    uv_write_t            write_req;
    pmx_smtp_stream_cbs_t cbs;
    void                 *arg;

    pmx_buf_t             out[2];        /* out[cur] collects; out[!cur] is in flight */
    bool                  out_secret[2]; /* wipe that buffer once written */
    int                   cur;
    bool                  writing;

    tls_state_t           tls;
    bool                  server;
    SSL                  *ssl;
    BIO                  *rbio, *wbio;   /* owned by ssl */
    pmx_buf_t             hs_pending;    /* clear text written during the handshake */
    pmx_buf_t             stage;         /* small pieces joined into one TLS record */
    bool                  hs_secret;

    bool                  closing;
    bool                  failed;        /* a write or TLS error happened: no more writes */
    char                  reason[256];
    char                  desc[96];
    char                  rbuf[16384];
};

/* The first queued OpenSSL error as text, or fallback. Clears the queue. */
static void openssl_reason(char *out, size_t outlen, const char *what, const char *fallback)
{
    unsigned long e = ERR_get_error();
    char buf[200];
    if (e) ERR_error_string_n(e, buf, sizeof buf);
    else snprintf(buf, sizeof buf, "%s", fallback);
    ERR_clear_error();
    snprintf(out, outlen, "%s: %s", what, buf);
}

int pmx_smtp_tls_ctx_new_client(pmx_smtp_tls_ctx_t **out, bool verify, const char *ca_file,
                                char *err, size_t errlen)
{
    ERR_clear_error();
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    if (!c) {
        openssl_reason(err, errlen, "TLS client context", "SSL_CTX_new failed");
        return -1;
    }
    SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
    SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
    if (verify) {
        SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
        if (SSL_CTX_set_default_verify_paths(c) != 1) {
            openssl_reason(err, errlen, "TLS system CA store", "cannot load");
            SSL_CTX_free(c);
            return -1;
        }
    } else {
        SSL_CTX_set_verify(c, SSL_VERIFY_NONE, NULL);
    }
    if (ca_file && *ca_file && SSL_CTX_load_verify_locations(c, ca_file, NULL) != 1) {
        char what[300];
        snprintf(what, sizeof what, "ca_file %s", ca_file);
        openssl_reason(err, errlen, what, "cannot load");
        SSL_CTX_free(c);
        return -1;
    }
    pmx_smtp_tls_ctx_t *ctx = pmx_xcalloc(1, sizeof *ctx);
    ctx->ssl_ctx = c;
    *out = ctx;
    return 0;
}

int pmx_smtp_tls_ctx_new_server(pmx_smtp_tls_ctx_t **out, const char *cert_file,
                                const char *key_file, char *err, size_t errlen)
{
    char what[300];
    ERR_clear_error();
    SSL_CTX *c = SSL_CTX_new(TLS_server_method());
    if (!c) {
        openssl_reason(err, errlen, "TLS server context", "SSL_CTX_new failed");
        return -1;
    }
    SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
    SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_use_certificate_chain_file(c, cert_file) != 1) {
        snprintf(what, sizeof what, "tls_cert %s", cert_file);
        openssl_reason(err, errlen, what, "cannot load");
        SSL_CTX_free(c);
        return -1;
    }
    if (SSL_CTX_use_PrivateKey_file(c, key_file, SSL_FILETYPE_PEM) != 1
        || SSL_CTX_check_private_key(c) != 1) {
        snprintf(what, sizeof what, "tls_key %s", key_file);
        openssl_reason(err, errlen, what, "cannot load or does not match tls_cert");
        SSL_CTX_free(c);
        return -1;
    }
    pmx_smtp_tls_ctx_t *ctx = pmx_xcalloc(1, sizeof *ctx);
    ctx->ssl_ctx = c;
    ctx->server = true;
    *out = ctx;
    return 0;
}

void pmx_smtp_tls_ctx_free(pmx_smtp_tls_ctx_t *ctx)
{
    if (!ctx) return;
    SSL_CTX_free(ctx->ssl_ctx);
    free(ctx);
}

static void emit(pmx_smtp_stream_t *s, pmx_smtp_stream_event_t ev, int status, const char *reason)
{
    if (s->closing && ev != PMX_SMTP_STREAM_CLOSED) return;
    s->cbs.on_event(s->arg, ev, status, reason);
}

/* Marks the stream failed and reports it once. */
static void fail(pmx_smtp_stream_t *s, int status, const char *reason)
{
    if (s->failed) return;
    s->failed = true;
    if (reason != s->reason) snprintf(s->reason, sizeof s->reason, "%s", reason);
    uv_read_stop((uv_stream_t *)&s->tcp);
    emit(s, PMX_SMTP_STREAM_ERROR, status, s->reason);
}

static void on_write(uv_write_t *req, int status);

/*
 * Starts a uv_write of the collecting buffer when none is in flight. Returns 0
 * or a uv error (reason set); callers in callbacks report it with fail(),
 * callers in API calls return it, so no callback runs on a caller's stack.
 */
static int flush(pmx_smtp_stream_t *s)
{
    if (s->writing || s->closing || s->failed || s->out[s->cur].len == 0) return 0;
    int w = s->cur;
    /* Most writes fit in the socket buffer at once: try that first, which
       saves libuv's write request (an epoll_ctl and a callback) per write. */
    uv_buf_t b = uv_buf_init(s->out[w].data, (unsigned)s->out[w].len);
    int n = uv_try_write((uv_stream_t *)&s->tcp, &b, 1);
    if (n > 0) {
        if (s->out_secret[w]) pmx_wipe(s->out[w].data, (size_t)n);
        pmx_buf_consume(&s->out[w], (size_t)n);
        if (s->out[w].len == 0) {
            s->out_secret[w] = false;
            return 0;
        }
        b = uv_buf_init(s->out[w].data, (unsigned)s->out[w].len);
    } else if (n < 0 && n != UV_EAGAIN) {
        snprintf(s->reason, sizeof s->reason, "write: %s", uv_strerror(n));
        return n;
    }
    int rc = uv_write(&s->write_req, (uv_stream_t *)&s->tcp, &b, 1, on_write);
    if (rc < 0) {
        snprintf(s->reason, sizeof s->reason, "write: %s", uv_strerror(rc));
        return rc;
    }
    s->writing = true;
    s->cur = !w;
    return 0;
}

/* flush() from a libuv callback: a failure is reported as an ERROR event. */
static void flush_cb(pmx_smtp_stream_t *s)
{
    int rc = flush(s);
    if (rc < 0) fail(s, rc, s->reason);
}

static void on_write(uv_write_t *req, int status)
{
    pmx_smtp_stream_t *s = req->handle->data;
    int done = !s->cur;
    if (s->out_secret[done]) pmx_wipe(s->out[done].data, s->out[done].len);
    s->out_secret[done] = false;
    pmx_buf_reset(&s->out[done]);
    s->writing = false;
    if (s->closing) return;
    if (status < 0) {
        char r[128];
        snprintf(r, sizeof r, "write: %s", uv_strerror(status));
        fail(s, status, r);
        return;
    }
    flush_cb(s);
    if (!s->writing && !s->failed) emit(s, PMX_SMTP_STREAM_DRAINED, 0, NULL);
}

/* Moves everything OpenSSL wrote into the write BIO to the pending output. */
static void move_tls_output(pmx_smtp_stream_t *s)
{
    size_t pending;
    while ((pending = BIO_ctrl_pending(s->wbio)) > 0) {
        pmx_buf_t *o = &s->out[s->cur];
        pmx_buf_reserve(o, pending);
        int n = BIO_read(s->wbio, o->data + o->len, (int)(pending > 1u << 30 ? 1u << 30 : pending));
        if (n <= 0) break;
        o->len += (size_t)n;
        o->data[o->len] = '\0';
    }
}

/* Encrypts clear text into the pending output. 0 or -1 (reason set). */
static int tls_write(pmx_smtp_stream_t *s, const char *p, size_t n)
{
    while (n > 0) {
        int chunk = n > (1u << 20) ? 1 << 20 : (int)n;
        ERR_clear_error();
        int w = SSL_write(s->ssl, p, chunk);
        if (w <= 0) {
            openssl_reason(s->reason, sizeof s->reason, "TLS write", "SSL_write failed");
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    move_tls_output(s);
    return 0;
}

#define TLS_RECORD (16 * 1024)   /* the largest TLS record's clear text */

/* A failed write: no more writes, no more reads. Returns rc. */
static int write_failed(pmx_smtp_stream_t *s, int rc)
{
    s->failed = true;
    uv_read_stop((uv_stream_t *)&s->tcp);
    return rc;
}

/*
 * Clear text without TLS, not secret: straight from the caller's buffers
 * with one writev when nothing is queued (no copy); only what the kernel did
 * not take is copied into the pending output.
 */
static int plain_writev(pmx_smtp_stream_t *s, const uv_buf_t *v, size_t nv)
{
    size_t i = 0, off = 0;
    if (!s->writing && s->out[s->cur].len == 0) {
        int n = uv_try_write((uv_stream_t *)&s->tcp, v, (unsigned)nv);
        if (n < 0 && n != UV_EAGAIN) {
            snprintf(s->reason, sizeof s->reason, "write: %s", uv_strerror(n));
            return n;
        }
        size_t done = n > 0 ? (size_t)n : 0;
        while (i < nv && done >= v[i].len) done -= v[i++].len;
        off = done;
    }
    for (; i < nv; i++, off = 0) pmx_buf_append(&s->out[s->cur], v[i].base + off, v[i].len - off);
    return 0;
}

/*
 * Through TLS: pieces under a record's size are joined (a "." or a CRLF of
 * dot-stuffing never becomes a record of its own); a piece of a record or
 * more goes to SSL_write as it is.
 */
static int tls_writev(pmx_smtp_stream_t *s, const uv_buf_t *v, size_t nv)
{
    for (size_t i = 0; i < nv; i++) {
        if (v[i].len >= TLS_RECORD) {
            if (s->stage.len && tls_write(s, s->stage.data, s->stage.len) < 0) return -1;
            pmx_buf_reset(&s->stage);
            if (tls_write(s, v[i].base, v[i].len) < 0) return -1;
            continue;
        }
        pmx_buf_append(&s->stage, v[i].base, v[i].len);
        if (s->stage.len >= TLS_RECORD) {
            if (tls_write(s, s->stage.data, s->stage.len) < 0) return -1;
            pmx_buf_reset(&s->stage);
        }
    }
    if (s->stage.len && tls_write(s, s->stage.data, s->stage.len) < 0) return -1;
    pmx_buf_reset(&s->stage);
    return 0;
}

static int writev_common(pmx_smtp_stream_t *s, const uv_buf_t *v, size_t nv, bool secret)
{
    if (s->closing) return UV_ECANCELED;
    if (s->failed || s->tls == TLS_FAILED) return UV_EPIPE;
    size_t total = 0;
    for (size_t i = 0; i < nv; i++) total += v[i].len;
    if (total == 0) return 0;
    switch (s->tls) {
    case TLS_HANDSHAKE:
        for (size_t i = 0; i < nv; i++) pmx_buf_append(&s->hs_pending, v[i].base, v[i].len);
        s->hs_secret |= secret;
        return 0;
    case TLS_ON:
        if (tls_writev(s, v, nv) < 0) return write_failed(s, UV_EPROTO);
        break;
    default:
        if (secret) {
            for (size_t i = 0; i < nv; i++) pmx_buf_append(&s->out[s->cur], v[i].base, v[i].len);
            s->out_secret[s->cur] = true;
        } else {
            int rc = plain_writev(s, v, nv);
            if (rc < 0) return write_failed(s, rc);
        }
        break;
    }
    int rc = flush(s);
    return rc < 0 ? write_failed(s, rc) : 0;
}

static int write_common(pmx_smtp_stream_t *s, const void *data, size_t n, bool secret)
{
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)n);
    return writev_common(s, &b, 1, secret);
}

int pmx_smtp_stream_writev(pmx_smtp_stream_t *s, const uv_buf_t *v, size_t nv)
{
    return writev_common(s, v, nv, false);
}

int pmx_smtp_stream_write(pmx_smtp_stream_t *s, const void *data, size_t n)
{
    return write_common(s, data, n, false);
}

int pmx_smtp_stream_write_secret(pmx_smtp_stream_t *s, const void *data, size_t n)
{
    return write_common(s, data, n, true);
}

size_t pmx_smtp_stream_pending(const pmx_smtp_stream_t *s)
{
    return s->out[0].len + s->out[1].len + s->hs_pending.len;
}

const char *pmx_smtp_stream_reason(const pmx_smtp_stream_t *s)
{
    return s->reason;
}

bool pmx_smtp_stream_is_tls(const pmx_smtp_stream_t *s)
{
    return s->tls == TLS_ON;
}

const char *pmx_smtp_stream_tls_desc(pmx_smtp_stream_t *s)
{
    if (s->tls != TLS_ON) return "";
    if (!s->desc[0])
        snprintf(s->desc, sizeof s->desc, "%s %s", SSL_get_version(s->ssl),
                 SSL_CIPHER_get_name(SSL_get_current_cipher(s->ssl)));
    return s->desc;
}

/* Why the handshake failed, naming certificate problems. */
static void handshake_reason(pmx_smtp_stream_t *s, int ssl_err)
{
    long vr = SSL_get_verify_result(s->ssl);
    if (!s->server && vr != X509_V_OK) {
        snprintf(s->reason, sizeof s->reason, "TLS handshake failed: certificate verify failed: %s",
                 X509_verify_cert_error_string(vr));
        ERR_clear_error();
    } else if (ssl_err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
        snprintf(s->reason, sizeof s->reason, "TLS handshake failed: connection closed by peer");
    } else {
        openssl_reason(s->reason, sizeof s->reason, "TLS handshake failed", "protocol error");
    }
}

static void handshake_failed(pmx_smtp_stream_t *s, int ssl_err)
{
    handshake_reason(s, ssl_err);
    s->tls = TLS_FAILED;
    move_tls_output(s);              /* the alert, if OpenSSL wrote one */
    (void)flush(s);
    uv_read_stop((uv_stream_t *)&s->tcp);
    pmx_wipe(s->hs_pending.data, s->hs_pending.len);
    pmx_buf_free(&s->hs_pending);
    emit(s, PMX_SMTP_STREAM_HANDSHAKE, -1, s->reason);
}

/* Advances the handshake, then decrypts whatever application data is there. */
static void tls_process(pmx_smtp_stream_t *s)
{
    if (s->tls == TLS_HANDSHAKE) {
        ERR_clear_error();
        int r = SSL_do_handshake(s->ssl);
        move_tls_output(s);
        flush_cb(s);
        if (s->failed) return;
        if (r != 1) {
            int e = SSL_get_error(s->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return;
            handshake_failed(s, e);
            return;
        }
        s->tls = TLS_ON;
        if (s->hs_pending.len) {
            int rc = tls_write(s, s->hs_pending.data, s->hs_pending.len);
            if (s->hs_secret) pmx_wipe(s->hs_pending.data, s->hs_pending.len);
            pmx_buf_free(&s->hs_pending);
            if (rc < 0) {
                fail(s, UV_EPROTO, s->reason);
                return;
            }
            flush_cb(s);
            if (s->failed) return;
        }
        emit(s, PMX_SMTP_STREAM_HANDSHAKE, 0, NULL);
        if (s->closing || s->tls != TLS_ON) return;
    }
    for (;;) {
        ERR_clear_error();
        int n = SSL_read(s->ssl, s->rbuf, (int)sizeof s->rbuf);
        if (n > 0) {
            s->cbs.on_data(s->arg, s->rbuf, (size_t)n);
            if (s->closing || s->failed) return;
            continue;
        }
        int e = SSL_get_error(s->ssl, n);
        move_tls_output(s);          /* key updates, session tickets' replies */
        flush_cb(s);
        if (s->failed) return;
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return;
        if (e == SSL_ERROR_ZERO_RETURN) {
            uv_read_stop((uv_stream_t *)&s->tcp);
            emit(s, PMX_SMTP_STREAM_EOF, 0, NULL);
            return;
        }
        openssl_reason(s->reason, sizeof s->reason, "TLS read", "protocol error");
        fail(s, UV_EPROTO, s->reason);
        return;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    pmx_smtp_stream_t *s = h->data;
    *buf = uv_buf_init(s->rbuf, sizeof s->rbuf);
}

static void on_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    pmx_smtp_stream_t *s = h->data;
    if (s->closing || nread == 0) return;
    if (nread < 0) {
        uv_read_stop(h);
        if (s->tls == TLS_HANDSHAKE) {
            handshake_failed(s, SSL_ERROR_SYSCALL);
        } else if (nread == UV_EOF) {
            emit(s, PMX_SMTP_STREAM_EOF, 0, NULL);
        } else {
            char r[128];
            snprintf(r, sizeof r, "read: %s", uv_strerror((int)nread));
            fail(s, (int)nread, r);
        }
        return;
    }
    if (s->tls == TLS_OFF) {
        s->cbs.on_data(s->arg, s->rbuf, (size_t)nread);
        return;
    }
    if (s->tls == TLS_FAILED) return;
    if (BIO_write(s->rbio, s->rbuf, (int)nread) != (int)nread) {
        fail(s, UV_ENOMEM, "TLS: cannot buffer input");
        return;
    }
    tls_process(s);
}

static void start_reading(pmx_smtp_stream_t *s)
{
    int rc = uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read);
    if (rc < 0) snprintf(s->reason, sizeof s->reason, "read: %s", uv_strerror(rc));
}

pmx_smtp_stream_t *pmx_smtp_stream_new(uv_loop_t *loop, const pmx_smtp_stream_cbs_t *cbs, void *arg)
{
    pmx_smtp_stream_t *s = pmx_xcalloc(1, sizeof *s);
    s->cbs = *cbs;
    s->arg = arg;
    uv_tcp_init(loop, &s->tcp);      /* only fails for a bad loop */
    s->tcp.data = s;
    return s;
}

static void on_connect(uv_connect_t *req, int status)
{
    pmx_smtp_stream_t *s = req->handle->data;
    if (s->closing) return;
    if (status == 0) {
        uv_tcp_nodelay(&s->tcp, 1);
        start_reading(s);
    } else {
        snprintf(s->reason, sizeof s->reason, "connect: %s", uv_strerror(status));
    }
    emit(s, PMX_SMTP_STREAM_CONNECTED, status, status ? s->reason : NULL);
}

int pmx_smtp_stream_bind(pmx_smtp_stream_t *s, const struct sockaddr *addr)
{
    return uv_tcp_bind(&s->tcp, addr, 0);
}

int pmx_smtp_stream_connect(pmx_smtp_stream_t *s, const struct sockaddr *addr)
{
    return uv_tcp_connect(&s->connect_req, &s->tcp, addr, on_connect);
}

int pmx_smtp_stream_accept(pmx_smtp_stream_t *s, uv_stream_t *server)
{
    int rc = uv_accept(server, (uv_stream_t *)&s->tcp);
    if (rc < 0) return rc;
    uv_tcp_nodelay(&s->tcp, 1);
    return uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read);
}

int pmx_smtp_stream_peer(const pmx_smtp_stream_t *s, struct sockaddr_storage *out)
{
    int len = (int)sizeof *out;
    return uv_tcp_getpeername(&s->tcp, (struct sockaddr *)out, &len);
}

static bool is_ip_literal(const char *name)
{
    unsigned char a[16];
    return inet_pton(AF_INET, name, a) == 1 || inet_pton(AF_INET6, name, a) == 1;
}

int pmx_smtp_stream_start_tls(pmx_smtp_stream_t *s, pmx_smtp_tls_ctx_t *ctx, const char *peer_name)
{
    if (s->closing || s->failed || s->tls != TLS_OFF) {
        snprintf(s->reason, sizeof s->reason, "TLS: stream not in clear-text state");
        return -1;
    }
    ERR_clear_error();
    s->ssl = SSL_new(ctx->ssl_ctx);
    s->rbio = BIO_new(BIO_s_mem());
    s->wbio = BIO_new(BIO_s_mem());
    if (!s->ssl || !s->rbio || !s->wbio) {
        openssl_reason(s->reason, sizeof s->reason, "TLS", "cannot allocate");
        BIO_free(s->rbio);
        BIO_free(s->wbio);
        SSL_free(s->ssl);
        s->ssl = NULL;
        s->rbio = s->wbio = NULL;
        return -1;
    }
    /* An empty memory BIO means "no data yet", not end of file. */
    BIO_set_mem_eof_return(s->rbio, -1);
    BIO_set_mem_eof_return(s->wbio, -1);
    SSL_set_bio(s->ssl, s->rbio, s->wbio);
    s->server = ctx->server;
    if (ctx->server) {
        SSL_set_accept_state(s->ssl);
    } else {
        int ok = 1;
        if (peer_name && *peer_name) {
            if (is_ip_literal(peer_name)) {
                ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s->ssl), peer_name);
            } else {
                SSL_set_hostflags(s->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
                ok = SSL_set_tlsext_host_name(s->ssl, peer_name) == 1
                     && SSL_set1_host(s->ssl, peer_name) == 1;
            }
        }
        if (!ok) {
            openssl_reason(s->reason, sizeof s->reason, "TLS: bad peer name", peer_name);
            SSL_free(s->ssl);
            s->ssl = NULL;
            return -1;
        }
        SSL_set_connect_state(s->ssl);
    }
    s->tls = TLS_HANDSHAKE;
    if (!ctx->server) {
        /* Send the ClientHello now; the answer arrives through on_read. */
        ERR_clear_error();
        int r = SSL_do_handshake(s->ssl);
        move_tls_output(s);
        if (r != 1) {
            int e = SSL_get_error(s->ssl, r);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                handshake_reason(s, e);
                s->tls = TLS_FAILED;
                return -1;
            }
        }
        if (flush(s) < 0) {
            s->failed = true;
            return -1;
        }
    }
    return 0;
}

static void on_close(uv_handle_t *h)
{
    pmx_smtp_stream_t *s = h->data;
    s->cbs.on_event(s->arg, PMX_SMTP_STREAM_CLOSED, 0, NULL);
    SSL_free(s->ssl);                /* frees both BIOs */
    for (int i = 0; i < 2; i++) {
        if (s->out_secret[i]) pmx_wipe(s->out[i].data, s->out[i].len);
        pmx_buf_free(&s->out[i]);
    }
    if (s->hs_secret) pmx_wipe(s->hs_pending.data, s->hs_pending.len);
    pmx_buf_free(&s->hs_pending);
    pmx_buf_free(&s->stage);
    free(s);
}

void pmx_smtp_stream_close(pmx_smtp_stream_t *s)
{
    if (s->closing) return;
    if (s->tls == TLS_ON && !s->failed) {
        /* close_notify, best effort: only if nothing else is waiting to go out. */
        ERR_clear_error();
        SSL_shutdown(s->ssl);
        move_tls_output(s);
        pmx_buf_t *o = &s->out[s->cur];
        if (!s->writing && o->len) {
            uv_buf_t b = uv_buf_init(o->data, (unsigned)o->len);
            (void)uv_try_write((uv_stream_t *)&s->tcp, &b, 1);
        }
    }
    s->closing = true;
    uv_read_stop((uv_stream_t *)&s->tcp);
    uv_close((uv_handle_t *)&s->tcp, on_close);
}
