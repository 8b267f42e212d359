/* Parsing listen addresses and opening the inherited listening sockets; see listen.h. */
#include "daemon/listen.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int pmx_daemon_listen_parse(const char *addr, char *host, size_t hostlen, int *port,
                            char *err, size_t errlen)
{
    const char *colon, *h = addr;
    size_t hl;

    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (!close || close[1] != ':') {
            snprintf(err, errlen, "%s: expected [IPV6]:PORT", addr);
            return -1;
        }
        h = addr + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon) {
            snprintf(err, errlen, "%s: expected HOST:PORT", addr);
            return -1;
        }
        if (memchr(addr, ':', (size_t)(colon - addr))) {
            snprintf(err, errlen, "%s: an IPv6 address needs brackets, e.g. [::1]:9464", addr);
            return -1;
        }
        hl = (size_t)(colon - addr);
    }
    if (hl >= hostlen) {
        snprintf(err, errlen, "%s: host name too long", addr);
        return -1;
    }
    const char *p = colon + 1;
    if (*p == '\0' || strlen(p) > 5 || strspn(p, "0123456789") != strlen(p)) {
        snprintf(err, errlen, "%s: port must be a number 1-65535", addr);
        return -1;
    }
    long v = strtol(p, NULL, 10);
    if (v < 1 || v > 65535) {
        snprintf(err, errlen, "%s: port must be a number 1-65535", addr);
        return -1;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    if (strcmp(host, "*") == 0) host[0] = '\0';
    *port = (int)v;
    return 0;
}

static int resolve(const char *addr, struct addrinfo **res, char *err, size_t errlen)
{
    char host[256], service[8];
    int port;

    if (pmx_daemon_listen_parse(addr, host, sizeof host, &port, err, errlen) < 0) return -1;
    snprintf(service, sizeof service, "%d", port);

    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int rc = getaddrinfo(host[0] ? host : NULL, service, &hints, res);
    if (rc != 0) {
        snprintf(err, errlen, "%s: cannot resolve: %s", addr, gai_strerror(rc));
        return -1;
    }
    return 0;
}

int pmx_daemon_listen_check(const char *addr, char *err, size_t errlen)
{
    struct addrinfo *res;
    if (resolve(addr, &res, err, errlen) < 0) return -1;
    freeaddrinfo(res);
    return 0;
}

int pmx_daemon_listen_open(const char *addr, char *err, size_t errlen)
{
    struct addrinfo *res;
    if (resolve(addr, &res, err, errlen) < 0) return -1;

    int fd = -1, last_errno = 0;
    /* The first address that binds wins (a name may resolve to several). */
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0) {
            last_errno = errno;
            continue;
        }
        int one = 1;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
            bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
            listen(fd, PMX_LISTEN_BACKLOG) == 0)
            break;
        last_errno = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot listen: %s", addr,
                 strerror(last_errno ? last_errno : EADDRNOTAVAIL));
        return -1;
    }
    return fd;
}
