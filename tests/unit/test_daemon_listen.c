/*
 * daemon/listen.c: HOST:PORT parsing and the listening sockets postmuxd opens
 * before it forks (non-blocking, no close-on-exec, actually listening).
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon/listen.h"

static void expect_ok(const char *addr, const char *host, int port)
{
    char h[256], err[256];
    int p = 0;
    if (pmx_daemon_listen_parse(addr, h, sizeof h, &p, err, sizeof err) != 0)
        fail_msg("'%s' refused: %s", addr, err);
    assert_string_equal(h, host);
    assert_int_equal(p, port);
}

static void expect_bad(const char *addr, const char *why)
{
    char h[256], err[256] = "";
    int p = 0;
    if (pmx_daemon_listen_parse(addr, h, sizeof h, &p, err, sizeof err) == 0)
        fail_msg("'%s' accepted", addr);
    if (!strstr(err, why)) fail_msg("'%s': error '%s' does not say '%s'", addr, err, why);
    if (strncmp(err, addr, strlen(addr)) != 0) fail_msg("error '%s' does not name '%s'", err, addr);
}

static void test_parse(void **state)
{
    (void)state;
    expect_ok("127.0.0.1:9464", "127.0.0.1", 9464);
    expect_ok("[::1]:25", "::1", 25);
    expect_ok("localhost:65535", "localhost", 65535);
    expect_ok("*:2525", "", 2525);
    expect_ok(":2525", "", 2525);
    expect_bad("127.0.0.1", "HOST:PORT");
    expect_bad("127.0.0.1:", "port");
    expect_bad("127.0.0.1:0", "port");
    expect_bad("127.0.0.1:65536", "port");
    expect_bad("127.0.0.1:12a", "port");
    expect_bad("127.0.0.1:-1", "port");
    expect_bad("127.0.0.1:000000025", "port");
    expect_bad("::1:25", "brackets");
    expect_bad("[::1]25", "[IPV6]:PORT");
    expect_bad("[::1", "[IPV6]:PORT");
}

static void test_open_listens_nonblocking_inheritable(void **state)
{
    (void)state;
    char err[256];
    int fd = pmx_daemon_listen_open("127.0.0.1:0", err, sizeof err);
    assert_int_equal(fd, -1);   /* port 0 is refused by the parser */

    /* Find a free port, then listen on it. */
    int probe = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    assert_int_equal(bind(probe, (struct sockaddr *)&sin, sizeof sin), 0);
    socklen_t sl = sizeof sin;
    getsockname(probe, (struct sockaddr *)&sin, &sl);
    close(probe);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(sin.sin_port));

    fd = pmx_daemon_listen_open(addr, err, sizeof err);
    if (fd < 0) fail_msg("%s", err);
    assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
    assert_false(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    int acc = 0;
    socklen_t al = sizeof acc;
    assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &al), 0);
    assert_int_equal(acc, 1);

    /* A second listener on the same address fails with the address in the error. */
    int fd2 = pmx_daemon_listen_open(addr, err, sizeof err);
    assert_int_equal(fd2, -1);
    assert_non_null(strstr(err, addr));
    assert_non_null(strstr(err, "cannot listen"));
    close(fd);
}

static void test_check_resolves(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(pmx_daemon_listen_check("127.0.0.1:9464", err, sizeof err), 0);
    assert_int_equal(pmx_daemon_listen_check("no-such-host.invalid:9464", err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot resolve"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_open_listens_nonblocking_inheritable),
        cmocka_unit_test(test_check_resolves),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
