/*
 * Internal to config/: the named sections ([pool NAME], config/pools.c) that
 * config.c's loader hands each header and key to. Each returns 0, or -1 with
 * a reason in why (the loader adds "FILE:LINE: ").
 */
#ifndef PMX_CONFIG_CONFIG_INT_H
#define PMX_CONFIG_CONFIG_INT_H
#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"

/* A "[pool NAME]" header on line: a new pool, refused when NAME is bad or taken. */
int  pmx__config_pool_open(pmx_config_t *c, const char *name, int line, char *why, size_t n);
/* A key of the pool opened last. */
int  pmx__config_pool_set(pmx_config_t *c, const char *key, const char *value, char *why,
                          size_t n);
/* After the whole file: what every pool must have. *line gets the pool's header line. */
int  pmx__config_pools_check(const pmx_config_t *c, int *line, char *why, size_t n);
void pmx__config_pools_free(pmx_config_t *c);

/* An EHLO name: a domain or an address literal ([192.0.2.1], [IPv6:...]). */
bool pmx__config_helo_ok(const char *v);

#endif
