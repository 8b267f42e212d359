/*
 * The [redis] address syntax: "HOST:PORT", "[v6addr]:PORT" or "unix:/path".
 * Shared by the CLI (sync hiredis) and the workers (async hiredis).
 */
#ifndef PMX_QUEUE_ENDPOINT_H
#define PMX_QUEUE_ENDPOINT_H
#include <stdbool.h>

typedef struct {
    bool unix_socket;
    char host[256];     /* host name / IP, or the socket path */
    int  port;
} pmx_queue_endpoint_t;

/* Returns 0, or -1 with a reason in err. */
int pmx_queue_parse_endpoint(const char *s, pmx_queue_endpoint_t *out, char *err, size_t errlen);

#endif
