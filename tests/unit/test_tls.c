/*
 * smtp/tls.c: both ends of a pmx_smtp_stream_t on one libuv loop over
 * loopback TCP — a server side (accept, server context) and a client side
 * (connect, verifying context) that talk in clear text, switch to TLS the
 * STARTTLS way, and then exchange a large payload both ways. Also: a
 * certificate for another name fails the handshake with a named reason, and
 * bad context files are refused with one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <uv.h>

#include "lib/buf.h"
#include "smtp/tls.h"

#define BIG (3u * 1024 * 1024)      /* more than one write and one TLS record */

static char cert_path[64], key_path[64];

/* A self-signed CA:TRUE certificate for "localhost" (and 127.0.0.1) with its P-256 key. */
static void make_cert(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    assert_non_null(k);
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, k);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0);
    X509_set_issuer_name(x, n);
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    e = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints, "critical,CA:TRUE");
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    assert_true(X509_sign(x, k, EVP_sha256()) > 0);

    snprintf(cert_path, sizeof cert_path, "/tmp/pmx-test-tls-%ld.crt", (long)getpid());
    snprintf(key_path, sizeof key_path, "/tmp/pmx-test-tls-%ld.key", (long)getpid());
    FILE *f = fopen(cert_path, "w");
    assert_non_null(f);
    PEM_write_X509(f, x);
    fclose(f);
    f = fopen(key_path, "w");
    assert_non_null(f);
    PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(k);
}

/* One end: what it received, what happened, and what it does next. */
typedef struct end {
    const char         *name;
    pmx_smtp_stream_t  *s;
    pmx_smtp_tls_ctx_t *ctx;
    const char         *peer_name;     /* client: the name to verify */
    bool                server;
    pmx_buf_t           in;
    int                 handshake;     /* 0 not yet, 1 ok, -1 failed */
    char                reason[256];
    bool                sent_big, closed, eof;
    int                 drained;
    struct end         *other;
} end_t;

static pmx_buf_t big;

static void close_both(end_t *e)
{
    if (e->s) { pmx_smtp_stream_close(e->s); e->s = NULL; }
    if (e->other->s) { pmx_smtp_stream_close(e->other->s); e->other->s = NULL; }
}

static void on_data(void *arg, const char *p, size_t n)
{
    end_t *e = arg;
    pmx_buf_append(&e->in, p, n);
    if (e->server) {
        /* Clear text: "STARTTLS\r\n" → "220 go\r\n" and TLS; under TLS: echo the payload. */
        if (!pmx_smtp_stream_is_tls(e->s) && e->handshake == 0 && strstr(e->in.data, "STARTTLS\r\n")) {
            assert_int_equal(pmx_smtp_stream_write(e->s, "220 go\r\n", 8), 0);
            pmx_buf_reset(&e->in);
            assert_int_equal(pmx_smtp_stream_start_tls(e->s, e->ctx, NULL), 0);
        } else if (pmx_smtp_stream_is_tls(e->s) && e->in.len == BIG && !e->sent_big) {
            e->sent_big = true;
            assert_int_equal(pmx_smtp_stream_write(e->s, e->in.data, e->in.len), 0);
        }
        return;
    }
    if (!pmx_smtp_stream_is_tls(e->s) && e->handshake == 0 && strstr(e->in.data, "220 go\r\n")) {
        pmx_buf_reset(&e->in);
        if (pmx_smtp_stream_start_tls(e->s, e->ctx, e->peer_name) < 0) {
            snprintf(e->reason, sizeof e->reason, "%s", pmx_smtp_stream_reason(e->s));
            e->handshake = -1;
            close_both(e);
        }
    } else if (e->in.len == BIG) {
        close_both(e);                  /* the echo is complete */
    }
}

static void on_event(void *arg, pmx_smtp_stream_event_t ev, int status, const char *reason)
{
    end_t *e = arg;
    switch (ev) {
    case PMX_SMTP_STREAM_CONNECTED:
        assert_int_equal(status, 0);
        assert_int_equal(pmx_smtp_stream_write(e->s, "STARTTLS\r\n", 10), 0);
        break;
    case PMX_SMTP_STREAM_HANDSHAKE:
        e->handshake = status == 0 ? 1 : -1;
        if (reason) snprintf(e->reason, sizeof e->reason, "%s", reason);
        if (status < 0) {
            close_both(e);
        } else if (!e->server) {
            assert_true(pmx_smtp_stream_is_tls(e->s));
            assert_non_null(strstr(pmx_smtp_stream_tls_desc(e->s), "TLSv1."));
            assert_int_equal(pmx_smtp_stream_write(e->s, big.data, big.len), 0);
        }
        break;
    case PMX_SMTP_STREAM_DRAINED:
        e->drained++;
        assert_int_equal(pmx_smtp_stream_pending(e->s), 0);
        break;
    case PMX_SMTP_STREAM_EOF:
        e->eof = true;
        close_both(e);
        break;
    case PMX_SMTP_STREAM_ERROR:
        snprintf(e->reason, sizeof e->reason, "%s", reason ? reason : "?");
        close_both(e);
        break;
    case PMX_SMTP_STREAM_CLOSED:
        e->closed = true;
        break;
    }
}

static const pmx_smtp_stream_cbs_t cbs = { on_data, on_event };

typedef struct {
    uv_tcp_t listener;
    end_t   *server;
    uv_loop_t *loop;
} listen_t;

static void on_connection(uv_stream_t *l, int status)
{
    listen_t *ls = l->data;
    assert_int_equal(status, 0);
    ls->server->s = pmx_smtp_stream_new(ls->loop, &cbs, ls->server);
    assert_int_equal(pmx_smtp_stream_accept(ls->server->s, l), 0);
    uv_close((uv_handle_t *)&ls->listener, NULL);   /* one connection is all we need */
}

/* Runs a client (verifying peer_name) against a server until both ends are closed. */
static void run_pair(end_t *client, end_t *server)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    listen_t ls = { .server = server, .loop = &loop };
    uv_tcp_init(&loop, &ls.listener);
    ls.listener.data = &ls;
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    assert_int_equal(uv_tcp_bind(&ls.listener, (const struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&ls.listener, 8, on_connection), 0);
    int len = sizeof sa;
    uv_tcp_getsockname(&ls.listener, (struct sockaddr *)&sa, &len);

    client->other = server;
    server->other = client;
    client->s = pmx_smtp_stream_new(&loop, &cbs, client);
    assert_int_equal(pmx_smtp_stream_connect(client->s, (const struct sockaddr *)&sa), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(client->closed);
    assert_true(server->closed);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static int setup(void **state)
{
    (void)state;
    make_cert();
    pmx_buf_init(&big);
    for (unsigned i = 0; big.len < BIG; i++) pmx_buf_appendf(&big, "%08x", i * 2654435761u);
    big.len = BIG;
    big.data[BIG] = '\0';
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(cert_path);
    unlink(key_path);
    pmx_buf_free(&big);
    return 0;
}

static void test_starttls_verified_echo(void **state)
{
    (void)state;
    char err[256];
    pmx_smtp_tls_ctx_t *cctx, *sctx;
    assert_int_equal(pmx_smtp_tls_ctx_new_client(&cctx, true, cert_path, err, sizeof err), 0);
    assert_int_equal(pmx_smtp_tls_ctx_new_server(&sctx, cert_path, key_path, err, sizeof err), 0);
    end_t client = { .name = "client", .ctx = cctx, .peer_name = "localhost" };
    end_t server = { .name = "server", .ctx = sctx, .server = true };
    run_pair(&client, &server);
    assert_int_equal(client.handshake, 1);
    assert_int_equal(server.handshake, 1);
    /* The payload went through TLS and came back unchanged. */
    assert_int_equal(server.in.len, BIG);
    assert_int_equal(client.in.len, BIG);
    assert_memory_equal(client.in.data, big.data, BIG);
    pmx_buf_free(&client.in);
    pmx_buf_free(&server.in);
    pmx_smtp_tls_ctx_free(cctx);
    pmx_smtp_tls_ctx_free(sctx);
}

static void test_ip_name_verified(void **state)
{
    (void)state;
    char err[256];
    pmx_smtp_tls_ctx_t *cctx, *sctx;
    assert_int_equal(pmx_smtp_tls_ctx_new_client(&cctx, true, cert_path, err, sizeof err), 0);
    assert_int_equal(pmx_smtp_tls_ctx_new_server(&sctx, cert_path, key_path, err, sizeof err), 0);
    end_t client = { .name = "client", .ctx = cctx, .peer_name = "127.0.0.1" };
    end_t server = { .name = "server", .ctx = sctx, .server = true };
    run_pair(&client, &server);
    assert_int_equal(client.handshake, 1);
    assert_int_equal(client.in.len, BIG);
    pmx_buf_free(&client.in);
    pmx_buf_free(&server.in);
    pmx_smtp_tls_ctx_free(cctx);
    pmx_smtp_tls_ctx_free(sctx);
}

static void test_wrong_name_fails(void **state)
{
    (void)state;
    char err[256];
    pmx_smtp_tls_ctx_t *cctx, *sctx;
    assert_int_equal(pmx_smtp_tls_ctx_new_client(&cctx, true, cert_path, err, sizeof err), 0);
    assert_int_equal(pmx_smtp_tls_ctx_new_server(&sctx, cert_path, key_path, err, sizeof err), 0);
    end_t client = { .name = "client", .ctx = cctx, .peer_name = "mx.example.com" };
    end_t server = { .name = "server", .ctx = sctx, .server = true };
    run_pair(&client, &server);
    assert_int_equal(client.handshake, -1);
    assert_string_equal(client.reason, "TLS handshake failed: certificate verify failed: hostname mismatch");
    assert_int_equal(client.in.len, 0);      /* no application data either way */
    assert_int_equal(server.in.len, 0);
    pmx_buf_free(&client.in);
    pmx_buf_free(&server.in);
    pmx_smtp_tls_ctx_free(cctx);
    pmx_smtp_tls_ctx_free(sctx);
}

static void test_untrusted_fails_unless_not_verifying(void **state)
{
    (void)state;
    char err[256];
    pmx_smtp_tls_ctx_t *cctx, *sctx;
    assert_int_equal(pmx_smtp_tls_ctx_new_server(&sctx, cert_path, key_path, err, sizeof err), 0);
    /* System store only: the self-signed certificate is unknown. */
    assert_int_equal(pmx_smtp_tls_ctx_new_client(&cctx, true, NULL, err, sizeof err), 0);
    end_t client = { .name = "client", .ctx = cctx, .peer_name = "localhost" };
    end_t server = { .name = "server", .ctx = sctx, .server = true };
    run_pair(&client, &server);
    assert_int_equal(client.handshake, -1);
    assert_non_null(strstr(client.reason, "certificate verify failed: self-signed certificate"));
    pmx_buf_free(&client.in);
    pmx_buf_free(&server.in);
    pmx_smtp_tls_ctx_free(cctx);

    /* tls_verify = no: the same certificate is accepted. */
    assert_int_equal(pmx_smtp_tls_ctx_new_client(&cctx, false, NULL, err, sizeof err), 0);
    end_t c2 = { .name = "client", .ctx = cctx, .peer_name = "localhost" };
    end_t s2 = { .name = "server", .ctx = sctx, .server = true };
    run_pair(&c2, &s2);
    assert_int_equal(c2.handshake, 1);
    assert_int_equal(c2.in.len, BIG);
    pmx_buf_free(&c2.in);
    pmx_buf_free(&s2.in);
    pmx_smtp_tls_ctx_free(cctx);
    pmx_smtp_tls_ctx_free(sctx);
}

static void test_bad_files(void **state)
{
    (void)state;
    char err[512];
    pmx_smtp_tls_ctx_t *ctx = NULL;
    assert_int_equal(pmx_smtp_tls_ctx_new_client(&ctx, true, "/nonexistent/ca.pem", err, sizeof err), -1);
    assert_non_null(strstr(err, "ca_file /nonexistent/ca.pem: "));
    assert_int_equal(pmx_smtp_tls_ctx_new_server(&ctx, "/nonexistent/c.pem", key_path, err, sizeof err), -1);
    assert_non_null(strstr(err, "tls_cert /nonexistent/c.pem: "));
    /* A key that does not match the certificate. */
    EVP_PKEY *k = EVP_EC_gen("P-256");
    char other[80];
    snprintf(other, sizeof other, "%s.other", key_path);
    FILE *f = fopen(other, "w");
    PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    EVP_PKEY_free(k);
    assert_int_equal(pmx_smtp_tls_ctx_new_server(&ctx, cert_path, other, err, sizeof err), -1);
    assert_non_null(strstr(err, "tls_key "));
    unlink(other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_starttls_verified_echo),
        cmocka_unit_test(test_ip_name_verified),
        cmocka_unit_test(test_wrong_name_fails),
        cmocka_unit_test(test_untrusted_fails_unless_not_verifying),
        cmocka_unit_test(test_bad_files),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
