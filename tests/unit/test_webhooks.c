/*
 * webhooks/payload.c and webhooks/curl.c: the exact body a
 * receiver gets (keys, order, nulls, escaping, bad UTF-8), the signature
 * against vectors computed with Python's hmac, the stored secret's opening
 * (made as cli/webhook.c makes it), and libcurl on a libuv loop against a
 * small server on loopback: an answer, a refused connection, a timeout, and
 * a free with a POST in flight (no callback, nothing leaked under ASan).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "dkim/keycrypt.h"
#include "lib/buf.h"
#include "lib/encode.h"
#include "webhooks/curl.h"
#include "webhooks/payload.h"

/* ---- body ------------------------------------------------------------- */

static void test_body_full(void **state)
{
    (void)state;
    pmx_webhooks_event_t ev = {
        .event_id = 42,
        .type = "message.sent",
        .created_at = "2026-11-23T02:25:18.958Z",
        .workspace_id = "ws_aaaaaaaaaaaaaaaa",
        .workspace_name = "Acme Corp",
        .message_id = "msg_bbbbbbbbbbbbbbbb",
        .job_id = "1700000000000-0",
        .client_id = "order-7",
        .recipient = "ann@example.net",
        .response = "250 2.0.0 Ok: queued as \"X\"",
        .attempt = 1,
        .metadata = "{\"k\":\"v\"}\n\xc3\xbc",
    };
    pmx_buf_t b = PMX_BUF_INIT;
    assert_int_equal(pmx_webhooks_body(&ev, &b), 0);
    assert_string_equal(b.data,
        "{\"id\":\"evt_42\",\"event\":\"message.sent\",\"created_at\":\"2026-11-23T02:25:18.958Z\","
        "\"workspace_id\":\"ws_aaaaaaaaaaaaaaaa\",\"workspace_name\":\"Acme Corp\","
        "\"data\":{\"message_id\":\"msg_bbbbbbbbbbbbbbbb\",\"job_id\":\"1700000000000-0\","
        "\"client_id\":\"order-7\",\"recipient\":\"ann@example.net\","
        "\"response\":\"250 2.0.0 Ok: queued as \\\"X\\\"\",\"attempt\":1,"
        "\"metadata\":\"{\\\"k\\\":\\\"v\\\"}\\n\xc3\xbc\"}}");
    pmx_buf_free(&b);
}

static void test_body_nulls(void **state)
{
    (void)state;
    pmx_webhooks_event_t ev = {
        .event_id = 7,
        .type = "message.rejected",
        .created_at = "2026-01-01T00:00:00.000Z",
        .workspace_id = "ws_cccccccccccccccc",
    };
    pmx_buf_t b = PMX_BUF_INIT;
    assert_int_equal(pmx_webhooks_body(&ev, &b), 0);
    assert_string_equal(b.data,
        "{\"id\":\"evt_7\",\"event\":\"message.rejected\",\"created_at\":\"2026-01-01T00:00:00.000Z\","
        "\"workspace_id\":\"ws_cccccccccccccccc\",\"workspace_name\":null,"
        "\"data\":{\"message_id\":null,\"job_id\":null,\"client_id\":null,\"recipient\":null,"
        "\"response\":null,\"attempt\":0,\"metadata\":null}}");
    pmx_buf_free(&b);
}

/* Bytes that are not UTF-8 become U+FFFD instead of failing the body. */
static void test_body_bad_utf8(void **state)
{
    (void)state;
    pmx_webhooks_event_t ev = {
        .event_id = 1, .type = "message.bounced", .created_at = "x", .workspace_id = "ws",
        .response = "550 caf\xe9 \xff ok \xe2\x82\xac",
    };
    pmx_buf_t b = PMX_BUF_INIT;
    assert_int_equal(pmx_webhooks_body(&ev, &b), 0);
    assert_non_null(strstr(b.data, "\"response\":\"550 caf\xef\xbf\xbd \xef\xbf\xbd ok \xe2\x82\xac\""));
    pmx_buf_free(&b);
}

/* ---- signature -------------------------------------------------------- */

/* Expected values: python3 -c 'import hmac,hashlib;
 *   print(hmac.new(b"whsec_test", b"1700000000.{\"a\":1}", hashlib.sha256).hexdigest())' */
static void test_sign_vectors(void **state)
{
    (void)state;
    pmx_buf_t b = PMX_BUF_INIT;
    const char *body = "{\"a\":1}";
    assert_int_equal(pmx_webhooks_sign("whsec_test", 10, 1700000000, body, strlen(body), &b), 0);
    assert_string_equal(b.data, "t=1700000000,v1="
                        "38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789");
    pmx_buf_reset(&b);
    assert_int_equal(pmx_webhooks_sign("key", 3, 1, "", 0, &b), 0);
    assert_string_equal(b.data, "t=1,v1="
                        "53123bc365c2fe4bee48bc5cc6cd6c19699147d43513154ed34277c7c063e80f");
    pmx_buf_free(&b);
}

/* ---- stored secret ---------------------------------------------------- */

/* Seals like cli/webhook.c: "v1:" + base64(seal(master, "postmux-webhook-v1:<id>", secret)). */
static void seal_stored(const uint8_t *master, const char *id, const char *secret, pmx_buf_t *out)
{
    pmx_buf_t aad = PMX_BUF_INIT, blob = PMX_BUF_INIT;
    pmx_buf_appendf(&aad, "postmux-webhook-v1:%s", id);
    assert_int_equal(pmx_dkim_key_seal(master, aad.data, (const uint8_t *)secret, strlen(secret),
                                       &blob), 0);
    pmx_buf_append_str(out, "v1:");
    pmx_base64_encode(out, (const uint8_t *)blob.data, blob.len);
    pmx_buf_free(&aad);
    pmx_buf_free(&blob);
}

static void test_secret_open(void **state)
{
    (void)state;
    uint8_t m[32], other[32];
    for (int i = 0; i < 32; i++) {
        m[i] = (uint8_t)(i * 3 + 1);
        other[i] = (uint8_t)(i * 5 + 2);
    }
    const char *secret = "whsec_Zm9vYmFyYmF6cXV4eHl6enk";
    pmx_buf_t stored = PMX_BUF_INIT, out = PMX_BUF_INIT;
    seal_stored(m, "wh_aaaaaaaaaaaaaaaa", secret, &stored);

    assert_int_equal(pmx_webhooks_secret_open(m, "wh_aaaaaaaaaaaaaaaa", stored.data, &out), 0);
    assert_string_equal(out.data, secret);
    pmx_buf_free_secret(&out);

    /* Another row, another master key, tampering, other formats. */
    assert_int_equal(pmx_webhooks_secret_open(m, "wh_bbbbbbbbbbbbbbbb", stored.data, &out), -EBADMSG);
    assert_int_equal(pmx_webhooks_secret_open(other, "wh_aaaaaaaaaaaaaaaa", stored.data, &out),
                     -EBADMSG);
    assert_int_equal(out.len, 0);
    char *t = strdup(stored.data);
    t[10] = t[10] == 'A' ? 'B' : 'A';
    assert_int_equal(pmx_webhooks_secret_open(m, "wh_aaaaaaaaaaaaaaaa", t, &out), -EBADMSG);
    free(t);
    assert_int_equal(pmx_webhooks_secret_open(m, "wh_aaaaaaaaaaaaaaaa", secret, &out), -EINVAL);
    assert_int_equal(pmx_webhooks_secret_open(m, "wh_aaaaaaaaaaaaaaaa", "v1:***", &out), -EINVAL);
    assert_int_equal(pmx_webhooks_secret_open(m, "wh_aaaaaaaaaaaaaaaa", "v1:AAAA", &out), -EINVAL);
    assert_int_equal(out.len, 0);
    pmx_buf_free(&stored);
}

/* ---- HTTP on the loop ------------------------------------------------- */

/* A one-connection-at-a-time HTTP server: answers 201 once it has seen the
 * request's body (ending in "}"), or never (hang). */
typedef struct {
    uv_tcp_t  listener;
    bool      hang;
    pmx_buf_t seen;
    int       requests;
} server_t;

typedef struct {
    uv_tcp_t  tcp;
    server_t *srv;
    pmx_buf_t in;
} conn_t;

static void conn_closed(uv_handle_t *h)
{
    conn_t *c = h->data;
    pmx_buf_free(&c->in);
    free(c);
}

static void alloc_cb(uv_handle_t *h, size_t n, uv_buf_t *buf)
{
    (void)h;
    buf->base = malloc(n);
    buf->len = n;
}

static void write_done(uv_write_t *w, int status)
{
    (void)status;
    free(w);
}

static void conn_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    conn_t *c = s->data;
    if (n > 0) pmx_buf_append(&c->in, buf->base, (size_t)n);
    free(buf->base);
    if (n < 0) {
        uv_close((uv_handle_t *)s, conn_closed);
        return;
    }
    const char *end = c->in.data ? strstr(c->in.data, "\r\n\r\n") : NULL;
    if (!end || c->in.data[c->in.len - 1] != '}') return;
    c->srv->requests++;
    pmx_buf_append(&c->srv->seen, c->in.data, c->in.len);
    pmx_buf_reset(&c->in);
    if (c->srv->hang) return;
    static char answer[] = "HTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\nthank";
    uv_write_t *w = malloc(sizeof *w);
    uv_buf_t b = uv_buf_init(answer, sizeof answer - 1);
    uv_write(w, s, &b, 1, write_done);
}

static void on_conn(uv_stream_t *l, int status)
{
    assert_int_equal(status, 0);
    server_t *srv = l->data;
    conn_t *c = calloc(1, sizeof *c);
    c->srv = srv;
    uv_tcp_init(l->loop, &c->tcp);
    c->tcp.data = c;
    assert_int_equal(uv_accept(l, (uv_stream_t *)&c->tcp), 0);
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, conn_read);
}

static int server_start(uv_loop_t *loop, server_t *srv)
{
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_tcp_init(loop, &srv->listener);
    srv->listener.data = srv;
    assert_int_equal(uv_tcp_bind(&srv->listener, (const struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&srv->listener, 16, on_conn), 0);
    struct sockaddr_in got;
    int len = sizeof got;
    uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&got, &len);
    return ntohs(got.sin_port);
}

/* At the end: the listener and any connection still open. */
static void close_any(uv_handle_t *h, void *arg)
{
    server_t *srv = arg;
    if (uv_is_closing(h)) return;
    uv_close(h, h == (uv_handle_t *)&srv->listener ? NULL : conn_closed);
}

typedef struct {
    int                 calls;
    long                status;
    char                error[256];
    char                body[64];
    pmx_webhooks_http_t *free_me;   /* freed from inside the callback */
    uv_loop_t          *loop;
} got_t;

static void got_cb(const pmx_webhooks_http_result_t *r, void *arg)
{
    got_t *g = arg;
    g->calls++;
    g->status = r->status;
    snprintf(g->error, sizeof g->error, "%s", r->error ? r->error : "");
    snprintf(g->body, sizeof g->body, "%s", r->body);
    if (g->free_me) pmx_webhooks_http_free(g->free_me);
    uv_stop(g->loop);
}

static void stop_cb(uv_timer_t *t)
{
    uv_stop(t->loop);
}

/* Runs the loop until a callback stops it or ms have passed. */
static void run_for(uv_loop_t *loop, uint64_t ms)
{
    uv_timer_t t;
    uv_timer_init(loop, &t);
    uv_timer_start(&t, stop_cb, ms, 0);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
}

static void loop_finish(uv_loop_t *loop, server_t *srv)
{
    uv_walk(loop, close_any, srv);
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(loop), 0);
    pmx_buf_free(&srv->seen);
}

static const char *hdrs[] = { "Content-Type: application/json", "Postmux-Signature: t=1,v1=ab" };

static void test_http_answer(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    server_t srv = { 0 };
    int port = server_start(&loop, &srv);
    pmx_webhooks_http_t *h = pmx_webhooks_http_new(&loop);
    assert_non_null(h);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/hook", port);
    got_t g = { .loop = &loop };
    const char *body = "{\"id\":\"evt_1\"}";
    assert_int_equal(pmx_webhooks_http_post(h, url, hdrs, 2, body, strlen(body), 5000, got_cb, &g), 0);
    assert_int_equal(g.calls, 0);   /* never from inside post() */
    assert_int_equal(pmx_webhooks_http_active(h), 1);
    run_for(&loop, 5000);
    assert_int_equal(g.calls, 1);
    assert_int_equal(g.status, 201);
    assert_string_equal(g.error, "");
    assert_string_equal(g.body, "thank");
    assert_int_equal(pmx_webhooks_http_active(h), 0);
    assert_non_null(strstr(srv.seen.data, "POST /hook HTTP/1.1\r\n"));
    assert_non_null(strstr(srv.seen.data, "\r\nPostmux-Signature: t=1,v1=ab\r\n"));
    assert_non_null(strstr(srv.seen.data, "\r\nContent-Type: application/json\r\n"));
    assert_null(strstr(srv.seen.data, "Expect:"));
    assert_non_null(strstr(srv.seen.data, "\r\n\r\n{\"id\":\"evt_1\"}"));

    /* Again: the kept connection is reused; free from inside the callback. */
    g.free_me = h;
    assert_int_equal(pmx_webhooks_http_post(h, url, hdrs, 2, body, strlen(body), 5000, got_cb, &g), 0);
    run_for(&loop, 5000);
    assert_int_equal(g.calls, 2);
    assert_int_equal(g.status, 201);
    assert_int_equal(srv.requests, 2);
    loop_finish(&loop, &srv);
}

static void test_http_refused_and_scheme(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    server_t srv = { 0 };
    int port = server_start(&loop, &srv);
    uv_close((uv_handle_t *)&srv.listener, NULL);   /* nobody listens there now */
    uv_run(&loop, UV_RUN_NOWAIT);
    pmx_webhooks_http_t *h = pmx_webhooks_http_new(&loop);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
    got_t g = { .loop = &loop };
    assert_int_equal(pmx_webhooks_http_post(h, url, hdrs, 2, "{}", 2, 5000, got_cb, &g), 0);
    run_for(&loop, 5000);
    assert_int_equal(g.calls, 1);
    assert_int_equal(g.status, 0);
    assert_true(strlen(g.error) > 0);

    /* Not http(s): refused when it runs, as an error (curl decides at start). */
    assert_int_equal(pmx_webhooks_http_post(h, "file:///etc/passwd", hdrs, 2, "{}", 2, 5000, got_cb, &g), 0);
    run_for(&loop, 5000);
    assert_int_equal(g.calls, 2);
    assert_int_equal(g.status, 0);
    assert_non_null(strstr(g.error, "file"));
    pmx_webhooks_http_free(h);
    loop_finish(&loop, &srv);
}

static void test_http_timeout_and_free_in_flight(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    server_t srv = { .hang = true };
    int port = server_start(&loop, &srv);
    pmx_webhooks_http_t *h = pmx_webhooks_http_new(&loop);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
    got_t g = { .loop = &loop };
    uint64_t t0 = uv_hrtime();
    assert_int_equal(pmx_webhooks_http_post(h, url, hdrs, 2, "{}", 2, 300, got_cb, &g), 0);
    run_for(&loop, 5000);
    uint64_t ms = (uv_hrtime() - t0) / 1000000u;
    assert_int_equal(g.calls, 1);
    assert_int_equal(g.status, 0);
    assert_non_null(strstr(g.error, "imed out"));
    assert_true(ms >= 250 && ms < 3000);

    /* A POST in flight when freed: no callback, nothing leaks. */
    got_t g2 = { .loop = &loop };
    assert_int_equal(pmx_webhooks_http_post(h, url, hdrs, 2, "{}", 2, 5000, got_cb, &g2), 0);
    run_for(&loop, 200);
    assert_int_equal(srv.requests, 2);
    pmx_webhooks_http_free(h);
    run_for(&loop, 100);
    assert_int_equal(g2.calls, 0);
    loop_finish(&loop, &srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_body_full),
        cmocka_unit_test(test_body_nulls),
        cmocka_unit_test(test_body_bad_utf8),
        cmocka_unit_test(test_sign_vectors),
        cmocka_unit_test(test_secret_open),
        cmocka_unit_test(test_http_answer),
        cmocka_unit_test(test_http_refused_and_scheme),
        cmocka_unit_test(test_http_timeout_and_free_in_flight),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
