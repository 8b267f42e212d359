/* Parses the [redis] address; see address.h. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/endpoint.h"

int pmx_queue_parse_endpoint(const char *s, pmx_queue_endpoint_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (strncmp(s, "unix:", 5) == 0) {
        const char *path = s + 5;
        if (path[0] != '/' || strlen(path) >= sizeof out->host) {
            snprintf(err, errlen, "'%s': unix: needs an absolute socket path", s);
            return -1;
        }
        out->unix_socket = true;
        snprintf(out->host, sizeof out->host, "%s", path);
        return 0;
    }
    const char *colon;
    const char *host = s;
    size_t hostlen;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':') goto bad;
        host = s + 1;
        hostlen = (size_t)(end - host);
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon) goto bad;
        hostlen = (size_t)(colon - s);
    }
    if (hostlen == 0 || hostlen >= sizeof out->host) goto bad;
    char *endp;
    long port = strtol(colon + 1, &endp, 10);
    if (colon[1] == '\0' || *endp != '\0' || port < 1 || port > 65535) goto bad;
    memcpy(out->host, host, hostlen);
    out->host[hostlen] = '\0';
    out->port = (int)port;
    return 0;
bad:
    snprintf(err, errlen, "'%s': expected HOST:PORT, [IPv6]:PORT or unix:/path", s);
    return -1;
}
