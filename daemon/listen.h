/*
 * Listening sockets of postmuxd. The supervisor opens them before it forks
 * (like nginx's master) so every worker inherits the same sockets, a worker's
 * death never closes one, and a reload that keeps an address keeps its socket:
 * connections wait in the kernel backlog while workers change.
 */
#ifndef PMX_DAEMON_LISTEN_H
#define PMX_DAEMON_LISTEN_H
#include <stddef.h>

/* The backlog asked of listen(2); the kernel caps it at somaxconn. */
#define PMX_LISTEN_BACKLOG 511

/*
 * Splits "HOST:PORT" ("127.0.0.1:9464", "[::1]:9464", "localhost:25") into
 * host (brackets removed) and port (1..65535). "*" or an empty host means
 * every address. Returns 0 or -1 with a reason in err.
 */
int pmx_daemon_listen_parse(const char *addr, char *host, size_t hostlen, int *port,
                            char *err, size_t errlen);

/*
 * Opens a TCP listening socket on addr: SO_REUSEADDR, non-blocking, without
 * close-on-exec (workers inherit it by fork). Returns the fd, or -1 with
 * "ADDR: reason" in err.
 */
int pmx_daemon_listen_open(const char *addr, char *err, size_t errlen);

/* Checks that addr parses and resolves, without binding (--check-config). */
int pmx_daemon_listen_check(const char *addr, char *err, size_t errlen);

#endif
