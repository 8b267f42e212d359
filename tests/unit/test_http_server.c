/*
 * http/server.c: the strict request-head parser of the metrics listener.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http/server.h"

static int parse(const char *s, pmx_worker_http_req_t *req)
{
    return pmx_worker_http_parse(s, strlen(s), req);
}

static void test_complete_requests(void **state)
{
    (void)state;
    pmx_worker_http_req_t req;
    assert_int_equal(parse("GET /healthz HTTP/1.1\r\nHost: x\r\nUser-Agent: curl/7\r\n\r\n", &req), 1);
    assert_string_equal(req.method, "GET");
    assert_string_equal(req.path, "/healthz");
    assert_int_equal(parse("HEAD /metrics?x=1 HTTP/1.0\r\n\r\n", &req), 1);
    assert_string_equal(req.method, "HEAD");
    assert_string_equal(req.path, "/metrics");
    assert_int_equal(parse("GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &req), 1);
    assert_string_equal(req.path, "/");
}

static void test_incomplete_requests(void **state)
{
    (void)state;
    pmx_worker_http_req_t req;
    const char *full = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    /* Every proper prefix needs more bytes, whatever the split. */
    for (size_t n = 0; n < strlen(full); n++)
        if (pmx_worker_http_parse(full, n, &req) != 0) fail_msg("prefix of %zu bytes", n);
    assert_int_equal(pmx_worker_http_parse(full, strlen(full), &req), 1);
}

static void test_bad_requests(void **state)
{
    (void)state;
    pmx_worker_http_req_t req;
    assert_int_equal(parse("GET /healthz HTTP/1.1\n\n", &req), 400);          /* bare LF */
    assert_int_equal(parse("GET /healthz HTTP/1.1\r\nHost: x\n", &req), 400);
    assert_int_equal(parse("GET /healthz HTTP/1.1\rX", &req), 400);           /* bare CR */
    assert_int_equal(parse("get /healthz HTTP/1.1\r\n\r\n", &req), 400);
    assert_int_equal(parse("GET healthz HTTP/1.1\r\n\r\n", &req), 400);
    assert_int_equal(parse("GET  /healthz HTTP/1.1\r\n\r\n", &req), 400);
    assert_int_equal(parse("GET /a b HTTP/1.1\r\n\r\n", &req), 400);
    assert_int_equal(parse("GET /healthz\r\n\r\n", &req), 400);
    assert_int_equal(parse("GET /healthz HTTP/1.1 \r\n\r\n", &req), 400);
    assert_int_equal(parse("GET /healthz FTP/1.1\r\n\r\n", &req), 400);
    assert_int_equal(parse("GET /healthz HTTP/2.0\r\n\r\n", &req), 505);
    assert_int_equal(parse("GET /healthz HTTP/1.2\r\n\r\n", &req), 505);
    assert_int_equal(parse("POST /healthz HTTP/1.1\r\n\r\n", &req), 405);
    assert_int_equal(parse("DELETE /healthz HTTP/1.1\r\n\r\n", &req), 405);
    assert_int_equal(parse("GET / HTTP/1.1\r\nNoColon\r\n\r\n", &req), 400);
    assert_int_equal(parse("GET / HTTP/1.1\r\n Folded: x\r\n\r\n", &req), 400);
    assert_int_equal(parse("GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", &req), 400);
    assert_int_equal(parse("GET / HTTP/1.1\r\nX: a\x01z\r\n\r\n", &req), 400);
    assert_int_equal(parse("GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n", &req), 400);
    assert_int_equal(parse("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", &req), 400);
    assert_int_equal(pmx_worker_http_parse("GET /\0 HTTP/1.1\r\n\r\n", 19, &req), 400);
    /* Garbage is refused at once, before any line end arrives. */
    assert_int_equal(parse("\x16\x03\x01\x02\x05", &req), 400);
    assert_int_equal(parse("GETx", &req), 400);
    assert_int_equal(parse("GETX", &req), 0);   /* could still be a method (405) */
    assert_int_equal(parse("ABCDEFGHIJKLMNOPQ", &req), 400);
    assert_int_equal(parse("GE", &req), 0);
    assert_int_equal(parse("GET /x", &req), 0);
}

static void test_limits(void **state)
{
    (void)state;
    pmx_worker_http_req_t req;
    /* Target of exactly the limit: fine; one more: 414. */
    char *line = malloc(PMX_HTTP_MAX_TARGET + 64);
    strcpy(line, "GET /");
    memset(line + 5, 'a', PMX_HTTP_MAX_TARGET - 1);
    strcpy(line + 4 + PMX_HTTP_MAX_TARGET, " HTTP/1.1\r\n\r\n");
    assert_int_equal(parse(line, &req), 1);
    assert_int_equal(strlen(req.path), PMX_HTTP_MAX_TARGET);
    strcpy(line, "GET /");
    memset(line + 5, 'a', PMX_HTTP_MAX_TARGET);
    strcpy(line + 5 + PMX_HTTP_MAX_TARGET, " HTTP/1.1\r\n\r\n");
    assert_int_equal(parse(line, &req), 414);
    /* A request line that never ends: 414 before the head cap. */
    memset(line, 'a', PMX_HTTP_MAX_TARGET + 63);
    memcpy(line, "GET /", 5);
    line[PMX_HTTP_MAX_TARGET + 63] = '\0';
    assert_int_equal(parse(line, &req), 414);
    free(line);

    /* Headers past the head cap: 431, complete or not. */
    size_t n = PMX_HTTP_MAX_HEAD + 100;
    char *head = malloc(n + 1);
    size_t pos = (size_t)sprintf(head, "GET / HTTP/1.1\r\n");
    while (pos + 20 < n) pos += (size_t)sprintf(head + pos, "X-Pad: 0123456789\r\n");
    head[pos] = '\0';
    assert_int_equal(parse(head, &req), 431);
    strcpy(head + pos, "\r\n");
    assert_int_equal(parse(head, &req), 431);
    free(head);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_complete_requests),
        cmocka_unit_test(test_incomplete_requests),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
