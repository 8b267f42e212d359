/*
 * Egress pools and session keys; see egress.h.
 */
#include "routing/egress.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/encode.h"
#include "lib/log.h"
#include "lib/mem.h"

void pmx_egress_set_init(pmx_egress_set_t *set, const pmx_config_t *cfg)
{
    set->n = cfg->npools;
    set->v = pmx_xcalloc(set->n ? set->n : 1, sizeof *set->v);
    for (size_t i = 0; i < set->n; i++) {
        const pmx_config_pool_t *cp = &cfg->pools[i];
        pmx_egress_t *e = &set->v[i];
        e->name = pmx_xstrdup(cp->name);
        e->helo_name = pmx_xstrdup(cp->helo_name);
        e->addrs = pmx_xcalloc(cp->naddresses ? cp->naddresses : 1, sizeof *e->addrs);
        e->shown = pmx_xcalloc(cp->naddresses ? cp->naddresses : 1, sizeof *e->shown);
        for (size_t k = 0; k < cp->naddresses; k++) {
            struct sockaddr_in *v4 = (struct sockaddr_in *)&e->addrs[e->n];
            struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&e->addrs[e->n];
            if (inet_pton(AF_INET, cp->addresses[k], &v4->sin_addr) == 1) {
                v4->sin_family = AF_INET;
            } else if (inet_pton(AF_INET6, cp->addresses[k], &v6->sin6_addr) == 1) {
                v6->sin6_family = AF_INET6;
            } else {
                continue;    /* config.c refuses such a file */
            }
            e->shown[e->n++] = pmx_xstrdup(cp->addresses[k]);
        }
        /* Each worker (and host) starts the round at its own place, so the
         * first sessions of many workers do not all leave from one address. */
        uint32_t start = 0;
        if (e->n > 1 && pmx_random_bytes((uint8_t *)&start, sizeof start) == 0) e->next = start % e->n;
    }
}

void pmx_egress_set_free(pmx_egress_set_t *set)
{
    for (size_t i = 0; i < set->n; i++) {
        pmx_egress_t *e = &set->v[i];
        for (size_t k = 0; k < e->n; k++) free(e->shown[k]);
        free(e->shown);
        free(e->addrs);
        free(e->name);
        free(e->helo_name);
    }
    free(set->v);
    set->v = NULL;
    set->n = 0;
}

pmx_egress_t *pmx_egress_find(const pmx_egress_set_t *set, const char *name)
{
    for (size_t i = 0; name && i < set->n; i++)
        if (strcmp(set->v[i].name, name) == 0) return &set->v[i];
    return NULL;
}

int pmx_egress_source(void *arg, int family, struct sockaddr_storage *out, char *why,
                      size_t whylen)
{
    pmx_egress_t *e = arg;
    for (size_t t = 0; t < e->n; t++) {
        size_t i = (e->next + t) % e->n;
        if (e->addrs[i].ss_family != family) continue;
        e->next = i + 1;
        *out = e->addrs[i];
        return 0;
    }
    snprintf(why, whylen, "pool %s has no %s source address", e->name,
             family == AF_INET6 ? "IPv6" : "IPv4");
    return -1;
}

int pmx_egress_bind_check(const pmx_egress_t *e, size_t k, char *why, size_t whylen)
{
    int fam = e->addrs[k].ss_family;
    int fd = socket(fam, SOCK_STREAM | SOCK_CLOEXEC, 0);
    socklen_t len = fam == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    int rc = fd < 0 ? -1 : bind(fd, (const struct sockaddr *)&e->addrs[k], len);
    int err = errno;
    if (fd >= 0) close(fd);
    if (rc == 0) return 0;
    snprintf(why, whylen, "%s cannot be bound: %s", e->shown[k], strerror(err));
    return -1;
}

size_t pmx_egress_probe(const pmx_egress_set_t *set)
{
    size_t bad = 0;
    char why[300];
    for (size_t i = 0; i < set->n; i++) {
        const pmx_egress_t *e = &set->v[i];
        for (size_t k = 0; k < e->n; k++) {
            if (pmx_egress_bind_check(e, k, why, sizeof why) == 0) continue;
            bad++;
            pmx_log_warn("egress pool %s: source address %s (its sessions will fail and their "
                         "mail is deferred)", e->name, why);
        }
    }
    return bad;
}

void pmx_session_key_format(const pmx_session_key_t *k, pmx_buf_t *out)
{
    const char *pool = k->pool ? k->pool : "-";
    switch (k->kind) {
    case PMX_SESSION_RELAY:
        pmx_buf_appendf(out, "relay pool=%s", pool);
        break;
    case PMX_SESSION_SMTP:
        pmx_buf_appendf(out, "smtp ws=%s dest=%s pool=%s", k->owner ? k->owner : "-",
                        k->dest ? k->dest : "-", pool);
        break;
    case PMX_SESSION_MX:
        pmx_buf_appendf(out, "mx site=%s pool=%s", k->dest ? k->dest : "-", pool);
        break;
    }
}
