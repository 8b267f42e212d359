/*
 * queue/redis_conn.c against a fake Redis on a unix socket served by the same
 * libuv loop: the handshake (AUTH, PING) before "up", commands and replies,
 * NULL replies for commands in flight when the connection drops, reconnection
 * by itself, a server that appears late, a refused password, close with
 * commands pending, and many or big commands in one loop turn. Run under ASan, it also checks that none of these paths
 * leaks.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "queue/redis_conn.h"

/* ---- a fake Redis --------------------------------------------------------- */

typedef struct fake_client fake_client_t;

typedef struct {
    uv_loop_t     *loop;
    uv_pipe_t      listener;
    bool           listening;
    char           path[256];
    const char    *password;     /* NULL = AUTH not expected */
    bool           hold_block;   /* never answer BLOCK */
    int            connections;
    int            pings;
    fake_client_t *clients;
} fake_t;

struct fake_client {
    fake_t        *srv;
    fake_client_t *next;
    uv_pipe_t      pipe;
    pmx_buf_t      in;
    bool           closing;
};

static void fake_client_closed(uv_handle_t *h)
{
    fake_client_t *c = h->data;
    fake_t *f = c->srv;
    for (fake_client_t **pp = &f->clients; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    pmx_buf_free(&c->in);
    free(c);
}

static void fake_client_close(fake_client_t *c)
{
    if (c->closing) return;
    c->closing = true;
    uv_close((uv_handle_t *)&c->pipe, fake_client_closed);
}

static void write_done(uv_write_t *w, int status)
{
    (void)status;
    free(w->data);
    free(w);
}

static void fake_send(fake_client_t *c, const char *s)
{
    if (c->closing) return;
    uv_write_t *w = malloc(sizeof *w);
    char *copy = strdup(s);
    w->data = copy;
    uv_buf_t b = uv_buf_init(copy, (unsigned int)strlen(copy));
    uv_write(w, (uv_stream_t *)&c->pipe, &b, 1, write_done);
}

/* Parses one RESP array of bulk strings; returns bytes used, 0 if incomplete. */
static size_t parse_command(const char *p, size_t n, char argv[4][64], int *argc)
{
    const char *end = p + n, *q = p;
    if (q >= end || *q != '*') return 0;
    char *e;
    long cnt = strtol(q + 1, &e, 10);
    if (e + 2 > end) return 0;
    q = e + 2;
    *argc = 0;
    for (long i = 0; i < cnt; i++) {
        if (q >= end || *q != '$') return 0;
        long len = strtol(q + 1, &e, 10);
        if (e + 2 > end) return 0;
        q = e + 2;
        if (q + len + 2 > end) return 0;
        if (i < 4) {
            size_t l = (size_t)len < 63 ? (size_t)len : 63;
            memcpy(argv[i], q, l);
            argv[i][l] = '\0';
            (*argc)++;
        }
        q += len + 2;
    }
    return (size_t)(q - p);
}

static void fake_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
    (void)h;
    *b = uv_buf_init(malloc(sz), (unsigned int)sz);
}

static void fake_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    fake_client_t *c = s->data;
    if (n < 0) {
        free(b->base);
        fake_client_close(c);
        return;
    }
    pmx_buf_append(&c->in, b->base, (size_t)n);
    free(b->base);
    char argv[4][64];
    int argc;
    size_t used;
    while (c->in.len && (used = parse_command(c->in.data, c->in.len, argv, &argc)) > 0) {
        pmx_buf_consume(&c->in, used);
        if (strcmp(argv[0], "PING") == 0) {
            c->srv->pings++;
            fake_send(c, "+PONG\r\n");
        } else if (strcmp(argv[0], "AUTH") == 0) {
            bool ok = c->srv->password && argc == 2 && strcmp(argv[1], c->srv->password) == 0;
            fake_send(c, ok ? "+OK\r\n" : "-WRONGPASS invalid password\r\n");
        } else if (strcmp(argv[0], "ECHO") == 0 && argc == 2) {
            char out[128];
            snprintf(out, sizeof out, "$%zu\r\n%s\r\n", strlen(argv[1]), argv[1]);
            fake_send(c, out);
        } else if (strcmp(argv[0], "BLOCK") == 0 && c->srv->hold_block) {
            /* never answered */
        } else {
            fake_send(c, "-ERR unknown command\r\n");
        }
    }
}

static void fake_accept(uv_stream_t *l, int status)
{
    fake_t *f = l->data;
    if (status < 0) return;
    fake_client_t *c = calloc(1, sizeof *c);
    c->srv = f;
    uv_pipe_init(f->loop, &c->pipe, 0);
    c->pipe.data = c;
    c->next = f->clients;
    f->clients = c;
    if (uv_accept(l, (uv_stream_t *)&c->pipe) != 0) {
        fake_client_close(c);
        return;
    }
    f->connections++;
    uv_read_start((uv_stream_t *)&c->pipe, fake_alloc, fake_read);
}

static void fake_listen(fake_t *f)
{
    unlink(f->path);
    uv_pipe_init(f->loop, &f->listener, 0);
    f->listener.data = f;
    assert_int_equal(uv_pipe_bind(&f->listener, f->path), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&f->listener, 16, fake_accept), 0);
    f->listening = true;
}

static void fake_stop_listening(fake_t *f)
{
    if (!f->listening) return;
    f->listening = false;
    uv_close((uv_handle_t *)&f->listener, NULL);
    unlink(f->path);
}

static void fake_drop_clients(fake_t *f)
{
    for (fake_client_t *c = f->clients; c; c = c->next) fake_client_close(c);
}

/* ---- the test loop -------------------------------------------------------- */

typedef struct {
    uv_loop_t  loop;
    uv_timer_t tick;
    fake_t     fake;
    char       dir[64];
    int        ups, downs;
    bool       up;
} ctx_t;

static void tick_cb(uv_timer_t *t) { (void)t; }

static void state_cb(pmx_redis_conn_t *rc, bool up, void *arg)
{
    (void)rc;
    ctx_t *c = arg;
    c->up = up;
    if (up) c->ups++; else c->downs++;
}

/* Runs the loop until *flag reaches want (or ms pass); returns whether it did. */
static bool run_until(ctx_t *c, const int *flag, int want, uint64_t ms)
{
    uint64_t end = uv_now(&c->loop) + ms;
    while (*flag < want && uv_now(&c->loop) < end) uv_run(&c->loop, UV_RUN_ONCE);
    return *flag >= want;
}

static void run_for(ctx_t *c, uint64_t ms)
{
    int never = 0;
    run_until(c, &never, 1, ms);
}

static int setup(void **state)
{
    ctx_t *c = calloc(1, sizeof *c);
    uv_loop_init(&c->loop);
    uv_timer_init(&c->loop, &c->tick);
    uv_timer_start(&c->tick, tick_cb, 10, 10);
    snprintf(c->dir, sizeof c->dir, "/tmp/pmx-redis-test.XXXXXX");
    assert_non_null(mkdtemp(c->dir));
    c->fake.loop = &c->loop;
    snprintf(c->fake.path, sizeof c->fake.path, "%s/redis.sock", c->dir);
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    ctx_t *c = *state;
    fake_drop_clients(&c->fake);
    fake_stop_listening(&c->fake);
    uv_close((uv_handle_t *)&c->tick, NULL);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&c->loop), 0);
    rmdir(c->dir);
    free(c);
    return 0;
}

static pmx_redis_conn_t *make_conn(ctx_t *c, const char *password)
{
    char addr[300], err[256];
    snprintf(addr, sizeof addr, "unix:%s", c->fake.path);
    pmx_redis_conn_t *rc = pmx_redis_conn_new(&c->loop, addr, password,
                                              password ? strlen(password) : 0, err, sizeof err);
    if (!rc) fail_msg("%s", err);
    pmx_redis_conn_set_state_cb(rc, state_cb, c);
    return rc;
}

typedef struct {
    int  calls;
    int  nulls;
    char last[64];
} reply_t;

static void reply_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    reply_t *r = priv;
    redisReply *rep = reply;
    assert_non_null(pmx_redis_conn_of(ac));
    r->calls++;
    if (!rep) {
        r->nulls++;
        return;
    }
    snprintf(r->last, sizeof r->last, "%s", rep->str ? rep->str : "");
}

/* ---- tests ---------------------------------------------------------------- */

static void test_bad_address(void **state)
{
    ctx_t *c = *state;
    char err[256];
    assert_null(pmx_redis_conn_new(&c->loop, "nonsense", NULL, 0, err, sizeof err));
    assert_non_null(strstr(err, "nonsense"));
}

static void test_up_after_ping_then_commands(void **state)
{
    ctx_t *c = *state;
    fake_listen(&c->fake);
    pmx_redis_conn_t *rc = make_conn(c, NULL);
    reply_t r = { 0 };
    assert_int_equal(pmx_redis_conn_command(rc, reply_cb, &r, "ECHO %s", "early"), -1);
    pmx_redis_conn_start(rc);
    assert_true(run_until(c, &c->ups, 1, 3000));
    assert_true(pmx_redis_conn_is_up(rc));
    assert_true(c->fake.pings >= 1);

    assert_int_equal(pmx_redis_conn_command(rc, reply_cb, &r, "ECHO %s", "hello"), 0);
    assert_true(run_until(c, &r.calls, 1, 3000));
    assert_string_equal(r.last, "hello");
    const char *argv[] = { "ECHO", "bin\001ary" };
    const size_t lens[] = { 4, 7 };
    assert_int_equal(pmx_redis_conn_command_argv(rc, reply_cb, &r, 2, argv, lens), 0);
    assert_true(run_until(c, &r.calls, 2, 3000));
    assert_string_equal(r.last, "bin\001ary");
    assert_int_equal(r.nulls, 0);
    pmx_redis_conn_close(rc);
}

/* Commands are written once per loop turn (queue/redis_uv.c): many issued in
 * one turn all arrive, in order; a command larger than the socket takes at
 * once goes out as the socket drains, and what was issued after it follows. */
static void test_many_and_big_commands(void **state)
{
    ctx_t *c = *state;
    fake_listen(&c->fake);
    pmx_redis_conn_t *rc = make_conn(c, NULL);
    pmx_redis_conn_start(rc);
    assert_true(run_until(c, &c->ups, 1, 3000));

    reply_t r = { 0 };
    for (int i = 0; i < 500; i++)
        assert_int_equal(pmx_redis_conn_command(rc, reply_cb, &r, "ECHO n%d", i), 0);
    assert_true(run_until(c, &r.calls, 500, 3000));
    assert_string_equal(r.last, "n499");

    size_t big = 8u << 20;
    char *arg = malloc(big);
    assert_non_null(arg);
    memset(arg, 'x', big);
    const char *argv[] = { "ECHO", arg };
    const size_t lens[] = { 4, big };
    assert_int_equal(pmx_redis_conn_command_argv(rc, reply_cb, &r, 2, argv, lens), 0);
    free(arg);    /* hiredis formatted its own copy */
    assert_int_equal(pmx_redis_conn_command(rc, reply_cb, &r, "ECHO %s", "after"), 0);
    assert_true(run_until(c, &r.calls, 502, 10000));
    assert_string_equal(r.last, "after");
    assert_int_equal(r.nulls, 0);
    pmx_redis_conn_close(rc);
}

static void test_drop_fails_pending_and_reconnects(void **state)
{
    ctx_t *c = *state;
    c->fake.hold_block = true;
    fake_listen(&c->fake);
    pmx_redis_conn_t *rc = make_conn(c, NULL);
    pmx_redis_conn_start(rc);
    assert_true(run_until(c, &c->ups, 1, 3000));

    reply_t r = { 0 };
    assert_int_equal(pmx_redis_conn_command(rc, reply_cb, &r, "BLOCK"), 0);
    run_for(c, 50);
    assert_int_equal(r.calls, 0);
    fake_drop_clients(&c->fake);
    assert_true(run_until(c, &r.calls, 1, 3000));
    assert_int_equal(r.nulls, 1);                /* in flight: NULL reply */
    assert_int_equal(c->downs, 1);
    assert_false(pmx_redis_conn_is_up(rc));
    assert_int_equal(pmx_redis_conn_command(rc, reply_cb, &r, "ECHO x"), -1);

    assert_true(run_until(c, &c->ups, 2, 3000));  /* back by itself */
    assert_int_equal(c->fake.connections, 2);
    pmx_redis_conn_close(rc);
}

static void test_server_appears_late(void **state)
{
    ctx_t *c = *state;
    pmx_redis_conn_t *rc = make_conn(c, NULL);
    pmx_redis_conn_start(rc);
    run_for(c, 700);                              /* a few failed attempts */
    assert_int_equal(c->ups, 0);
    fake_listen(&c->fake);
    assert_true(run_until(c, &c->ups, 1, 3000));
    assert_int_equal(c->fake.connections, 1);
    pmx_redis_conn_close(rc);
}

static void test_auth(void **state)
{
    ctx_t *c = *state;
    c->fake.password = "s3cret";
    fake_listen(&c->fake);

    pmx_redis_conn_t *bad = make_conn(c, "wrong");
    pmx_redis_conn_start(bad);
    run_for(c, 900);
    assert_int_equal(c->ups, 0);                  /* refused AUTH: never up... */
    assert_true(c->fake.connections >= 2);        /* ...and retried */
    pmx_redis_conn_close(bad);

    pmx_redis_conn_t *good = make_conn(c, "s3cret");
    pmx_redis_conn_start(good);
    assert_true(run_until(c, &c->ups, 1, 3000));
    pmx_redis_conn_close(good);
}

static void test_close_with_pending(void **state)
{
    ctx_t *c = *state;
    c->fake.hold_block = true;
    fake_listen(&c->fake);
    pmx_redis_conn_t *rc = make_conn(c, NULL);
    pmx_redis_conn_start(rc);
    assert_true(run_until(c, &c->ups, 1, 3000));
    reply_t r = { 0 };
    assert_int_equal(pmx_redis_conn_command(rc, reply_cb, &r, "BLOCK"), 0);
    assert_int_equal(pmx_redis_conn_command(rc, reply_cb, &r, "BLOCK"), 0);
    run_for(c, 30);
    pmx_redis_conn_close(rc);
    assert_int_equal(r.calls, 2);
    assert_int_equal(r.nulls, 2);
    assert_int_equal(c->downs, 0);                /* close does not report "down" */
}

static void test_close_while_connecting(void **state)
{
    ctx_t *c = *state;
    pmx_redis_conn_t *rc = make_conn(c, NULL);
    pmx_redis_conn_start(rc);
    run_for(c, 20);
    pmx_redis_conn_close(rc);
    run_for(c, 20);
    assert_int_equal(c->ups, 0);
}

/* The head + the last argument + CRLF is what hiredis would format itself. */
static void test_format_head(void **state)
{
    (void)state;
    const char *argv[5] = { "XADD", "pmx:{ws_a}:jobs", "*", "raw", "Subject: x\r\n\r\nbody\0z" };
    size_t lens[5] = { 4, 15, 1, 3, 19 };
    pmx_buf_t b = PMX_BUF_INIT;
    pmx_redis_format_head(&b, 5, argv, lens, lens[4]);
    pmx_buf_append(&b, argv[4], lens[4]);
    pmx_buf_append(&b, "\r\n", 2);
    char *want = NULL;
    int n = redisFormatCommandArgv(&want, 5, argv, lens);
    assert_true(n > 0);
    assert_int_equal(b.len, (size_t)n);
    assert_memory_equal(b.data, want, b.len);
    redisFreeCommand(want);
    pmx_buf_free(&b);
}

int main(void)
{
    pmx_log_set_level(PMX_LOG_ERROR);
    signal(SIGPIPE, SIG_IGN);   /* as in postmuxd: a write to a closed peer is an error, not death */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_head),
        cmocka_unit_test_setup_teardown(test_bad_address, setup, teardown),
        cmocka_unit_test_setup_teardown(test_up_after_ping_then_commands, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_and_big_commands, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drop_fails_pending_and_reconnects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_appears_late, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_with_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_while_connecting, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
