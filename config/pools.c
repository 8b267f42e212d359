/*
 * [pool NAME] sections of postmux.conf(5) (docs/delivery.md "Egress pools"):
 * named egress pools, each a list of source addresses and an EHLO name. The
 * loader in config.c finds the headers and hands the keys here
 * (config_int.h); the workers turn a pool into bindable socket addresses
 * (routing/egress.h).
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_int.h"
#include "lib/mem.h"

bool pmx_config_pool_name_ok(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > PMX_CONFIG_POOL_NAME_MAX || strcmp(name, "default") == 0) return false;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

const pmx_config_pool_t *pmx_config_pool(const pmx_config_t *cfg, const char *name)
{
    for (size_t i = 0; cfg && name && i < cfg->npools; i++)
        if (strcmp(cfg->pools[i].name, name) == 0) return &cfg->pools[i];
    return NULL;
}

int pmx__config_pool_open(pmx_config_t *c, const char *name, int line, char *why, size_t n)
{
    if (!pmx_config_pool_name_ok(name)) {
        snprintf(why, n, "[pool NAME]: NAME must be 1-%d of A-Z a-z 0-9 . _ - and not "
                 "\"default\"", PMX_CONFIG_POOL_NAME_MAX);
        return -1;
    }
    const pmx_config_pool_t *old = pmx_config_pool(c, name);
    if (old) {
        snprintf(why, n, "[pool %s] given twice (first on line %d)", name, old->line);
        return -1;
    }
    c->pools = pmx_xrealloc(c->pools, (c->npools + 1) * sizeof *c->pools);
    pmx_config_pool_t *p = &c->pools[c->npools++];
    memset(p, 0, sizeof *p);
    p->name = pmx_xstrdup(name);
    p->helo_name = pmx_xstrdup("");
    p->line = line;
    return 0;
}

/* "192.0.2.10, 2001:db8::1": IPv4 / IPv6 literals, distinct, at least one. */
static int set_addresses(pmx_config_pool_t *p, const char *v, char *why, size_t n)
{
    char **list = NULL;
    size_t cnt = 0;
    const char *s = v;
    for (;;) {
        while (*s == ' ' || *s == '\t') s++;
        size_t len = strcspn(s, ",");
        size_t end = len;
        while (end && (s[end - 1] == ' ' || s[end - 1] == '\t')) end--;
        char a[INET6_ADDRSTRLEN + 8];
        unsigned char bin[16];
        if (end == 0 || end >= sizeof a) {
            snprintf(why, n, "expected a comma-separated list of IPv4 or IPv6 addresses");
            goto fail;
        }
        memcpy(a, s, end);
        a[end] = '\0';
        if (inet_pton(AF_INET, a, bin) != 1 && inet_pton(AF_INET6, a, bin) != 1) {
            snprintf(why, n, "'%s' is not an IPv4 or IPv6 address", a);
            goto fail;
        }
        for (size_t i = 0; i < cnt; i++)
            if (strcmp(list[i], a) == 0) {
                snprintf(why, n, "%s is listed twice", a);
                goto fail;
            }
        if (cnt == PMX_CONFIG_POOL_ADDRESSES_MAX) {
            snprintf(why, n, "more than %d addresses", PMX_CONFIG_POOL_ADDRESSES_MAX);
            goto fail;
        }
        list = pmx_xrealloc(list, (cnt + 1) * sizeof *list);
        list[cnt++] = pmx_xstrdup(a);
        if (!s[len]) break;
        s += len + 1;
    }
    p->addresses = list;
    p->naddresses = cnt;
    return 0;
fail:
    for (size_t i = 0; i < cnt; i++) free(list[i]);
    free(list);
    return -1;
}

int pmx__config_pool_set(pmx_config_t *c, const char *key, const char *value, char *why, size_t n)
{
    if (c->npools == 0) {    /* cannot happen: the loader opens the pool at its header */
        snprintf(why, n, "no [pool NAME] section open");
        return -1;
    }
    pmx_config_pool_t *p = &c->pools[c->npools - 1];
    if (strcmp(key, "addresses") == 0) return set_addresses(p, value, why, n);
    if (strcmp(key, "helo_name") == 0) {
        if (value[0] && !pmx__config_helo_ok(value)) {
            snprintf(why, n, "expected a domain name or an address literal such as "
                     "[192.0.2.1], got '%.64s'", value);
            return -1;
        }
        free(p->helo_name);
        p->helo_name = pmx_xstrdup(value);
        return 0;
    }
    snprintf(why, n, "unknown key");
    return -1;
}

int pmx__config_pools_check(const pmx_config_t *c, int *line, char *why, size_t n)
{
    for (size_t i = 0; i < c->npools; i++) {
        if (c->pools[i].naddresses == 0) {
            *line = c->pools[i].line;
            snprintf(why, n, "[pool %s] has no addresses (addresses = 192.0.2.10, ...)",
                     c->pools[i].name);
            return -1;
        }
    }
    return 0;
}

void pmx__config_pools_free(pmx_config_t *c)
{
    for (size_t i = 0; i < c->npools; i++) {
        pmx_config_pool_t *p = &c->pools[i];
        for (size_t k = 0; k < p->naddresses; k++) free(p->addresses[k]);
        free(p->addresses);
        free(p->name);
        free(p->helo_name);
    }
    free(c->pools);
    c->pools = NULL;
    c->npools = 0;
}
