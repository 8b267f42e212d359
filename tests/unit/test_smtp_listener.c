/*
 * smtp/listener.c on one libuv loop over loopback TCP: plain libuv clients
 * connect to a listener and read what it says. Checks: the per-address and
 * total limits count admitted sessions only and refuse with "421 4.7.0"; the
 * kind's callbacks run once per session (created, accepted, admit for those
 * past the limits, closing, freed); drain answers idle sessions "421" and
 * calls done once they are gone; an idle session gets "421 4.4.2" after
 * idle_ms; after stop the listener is idle and freed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <uv.h>

#include "lib/buf.h"
#include "smtp/listener.h"

#define NCLIENTS 5

/* The kind's session: the listener's part first. */
typedef struct {
    pmx_smtp_session_t s;
    int                n;     /* 1, 2, ... in accept order */
} kind_session_t;

static struct {
    uv_loop_t            loop;
    pmx_smtp_listener_t *l;
    int                  port;
    int                  created, accepted, admitted, closing, freed, released, drained;
    int                  next_key;
    const char          *keys[NCLIENTS];
} K;

/* One client: what it read, whether the server closed on it. */
typedef struct {
    uv_tcp_t     tcp;
    uv_connect_t conn;
    pmx_buf_t    in;
    bool         eof, closed;
} client_t;

static client_t C[NCLIENTS];

/* ---- the kind ---- */

static void client_key(const struct sockaddr *sa, char *out)
{
    (void)sa;
    snprintf(out, PMX_SMTP_LISTENER_CLIENT_MAX, "%s", K.keys[K.next_key++ % NCLIENTS]);
}

static void k_created(pmx_smtp_session_t *s)
{
    assert_ptr_equal(pmx_smtp_listener_arg(s->l), &K);
    ((kind_session_t *)s)->n = ++K.created;
}

static void k_accepted(pmx_smtp_session_t *s)
{
    assert_true(s->started > 0);
    assert_string_not_equal(s->client, "-");
    K.accepted++;
}

static bool k_admit(pmx_smtp_session_t *s)
{
    assert_false(s->counted);
    K.admitted++;
    return true;
}

static void k_closing(pmx_smtp_session_t *s)
{
    assert_true(s->closing);
    K.closing++;
}

static void k_freed(pmx_smtp_session_t *s)
{
    assert_true(((kind_session_t *)s)->n > 0);
    K.freed++;
}

static void k_released(void *arg)
{
    assert_ptr_equal(arg, &K);
    K.released++;
}

static void k_auth(void *arg, const char *password, size_t n)
{
    (void)arg;
    (void)password;
    (void)n;
}

static void k_message(void *arg, const pmx_smtp_envelope_t *env)
{
    (void)env;
    pmx_smtp_server_message_done(((pmx_smtp_session_t *)arg)->smtp, 451, "4.3.0", "not here");
}

static const pmx_smtp_listener_cbs_t cbs = {
    .server = { .auth = k_auth, .message = k_message },
    .created = k_created, .accepted = k_accepted, .admit = k_admit,
    .closing = k_closing, .freed = k_freed, .released = k_released,
};

static void drained(void *arg)
{
    assert_ptr_equal(arg, &K);
    K.drained++;
}

/* ---- clients ---- */

static void alloc_cb(uv_handle_t *h, size_t want, uv_buf_t *b)
{
    (void)h;
    static char buf[4096];
    (void)want;
    *b = uv_buf_init(buf, sizeof buf);
}

static void client_closed(uv_handle_t *h)
{
    ((client_t *)h->data)->closed = true;
}

static void read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    client_t *c = st->data;
    if (n > 0) {
        pmx_buf_append(&c->in, b->base, (size_t)n);
    } else if (n < 0) {
        c->eof = true;
        uv_close((uv_handle_t *)&c->tcp, client_closed);
    }
}

static void connect_cb(uv_connect_t *req, int status)
{
    client_t *c = req->data;
    assert_int_equal(status, 0);
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
}

static void client_connect(client_t *c)
{
    memset(c, 0, sizeof *c);
    uv_tcp_init(&K.loop, &c->tcp);
    c->tcp.data = c;
    c->conn.data = c;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", K.port, &a);
    assert_int_equal(uv_tcp_connect(&c->conn, &c->tcp, (const struct sockaddr *)&a, connect_cb), 0);
}

/* Runs the loop until c has a complete first line. */
static void run_until_line(client_t *c)
{
    for (int i = 0; i < 100000 && !memchr(c->in.data ? c->in.data : "", '\n', c->in.len) && !c->eof;
         i++)
        uv_run(&K.loop, UV_RUN_ONCE);
    assert_non_null(memchr(c->in.data, '\n', c->in.len));
}

static bool line_starts(const client_t *c, const char *want)
{
    return c->in.len >= strlen(want) && memcmp(c->in.data, want, strlen(want)) == 0;
}

/* ---- set-up ---- */

static int listen_fd(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 16), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    K.port = ntohs(a.sin_port);
    return fd;
}

static void start(int max_sessions, int max_per_address, uint64_t idle_ms)
{
    memset(&K, 0, sizeof K);
    assert_int_equal(uv_loop_init(&K.loop), 0);
    pmx_smtp_listener_opts_t o = {
        .name = "test",
        .session_size = sizeof(kind_session_t),
        .server = { .hostname = "mx.test", .no_auth = true },
        .idle_ms = idle_ms,
        .max_sessions = max_sessions,
        .max_per_address = max_per_address,
        .client_key = client_key,
    };
    K.l = pmx_smtp_listener_new(&K.loop, &o, &cbs, &K);
    int fd = listen_fd();
    assert_int_equal(pmx_smtp_listener_listen(K.l, fd), 0);
}

/* Stops the listener, runs the loop until it is idle, frees it and the loop. */
static void finish(void)
{
    pmx_smtp_listener_stop(K.l);
    for (int i = 0; i < 100000 && !pmx_smtp_listener_idle(K.l); i++) uv_run(&K.loop, UV_RUN_ONCE);
    assert_true(pmx_smtp_listener_idle(K.l));
    pmx_smtp_listener_free(K.l);
    for (int i = 0; i < NCLIENTS; i++)
        if (C[i].tcp.data && !C[i].closed && !uv_is_closing((uv_handle_t *)&C[i].tcp))
            uv_close((uv_handle_t *)&C[i].tcp, client_closed);
    uv_run(&K.loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&K.loop), 0);
    for (int i = 0; i < NCLIENTS; i++) pmx_buf_free(&C[i].in);
    memset(C, 0, sizeof C);
}

/* ---- tests ---- */

static void test_limits_then_drain(void **state)
{
    (void)state;
    start(3, 2, 60000);
    const char *keys[NCLIENTS] = { "a", "a", "a", "b", "c" };
    memcpy(K.keys, keys, sizeof keys);
    /* One at a time, so the keys go to the connections in order. */
    for (int i = 0; i < NCLIENTS; i++) {
        client_connect(&C[i]);
        run_until_line(&C[i]);
    }
    assert_true(line_starts(&C[0], "220 mx.test "));
    assert_true(line_starts(&C[1], "220 mx.test "));
    assert_true(line_starts(&C[2], "421 4.7.0 mx.test Too many connections from your address"));
    assert_true(line_starts(&C[3], "220 mx.test "));
    assert_true(line_starts(&C[4], "421 4.7.0 mx.test Too many connections; try again later"));
    assert_int_equal(K.created, NCLIENTS);
    assert_int_equal(K.accepted, NCLIENTS);
    assert_int_equal(K.admitted, 3);   /* the kind is asked only past the listener's limits */

    /* Drain: the three idle sessions are told and closed; done once, when none is left. */
    pmx_smtp_listener_drain(K.l, drained, &K);
    for (int i = 0; i < 100000 && K.drained == 0; i++) uv_run(&K.loop, UV_RUN_ONCE);
    assert_int_equal(K.drained, 1);
    assert_int_equal(pmx_smtp_listener_sessions(K.l), 0);
    assert_int_equal(K.closing, NCLIENTS);
    assert_int_equal(K.freed, NCLIENTS);
    assert_false(pmx_smtp_listener_idle(K.l));   /* not stopped yet */
    assert_non_null(strstr(pmx_buf_cstr(&C[0].in), "\r\n421 4.3.2 "));
    finish();
    assert_int_equal(K.drained, 1);
    assert_true(K.released > NCLIENTS);   /* every session, and the socket */
}

static void test_idle_timeout(void **state)
{
    (void)state;
    start(0, 0, 50);
    K.keys[0] = "a";
    client_connect(&C[0]);
    run_until_line(&C[0]);
    assert_true(line_starts(&C[0], "220 mx.test "));
    for (int i = 0; i < 100000 && !C[0].eof && !strstr(pmx_buf_cstr(&C[0].in), "421 4.4.2"); i++)
        uv_run(&K.loop, UV_RUN_ONCE);
    assert_non_null(strstr(pmx_buf_cstr(&C[0].in), "\r\n421 4.4.2 mx.test Error: timeout exceeded"));
    assert_int_equal(K.admitted, 1);
    finish();
    assert_int_equal(K.freed, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limits_then_drain),
        cmocka_unit_test(test_idle_timeout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
