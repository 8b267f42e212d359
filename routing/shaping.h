/*
 * Per-site rules of direct delivery: [mx] shaping_file of postmux.conf(5)
 * (docs/delivery.md, "Shaping"). An INI file of sections
 *
 *   [site NAME]
 *   match = *.google.com, *.googlemail.com    ; MX host patterns (fnmatch, any case)
 *   connections = 10                           ; sessions per host, all workers
 *   messages_per_connection = 50
 *   on_reply = TSS04 => suspend 1h             ; POSIX extended regex, any case; repeatable
 *
 * A route's site takes the first rule (in file order) one of whose patterns
 * matches one of its MX host names; a site without one keeps [mx]'s
 * connections_per_site and messages_per_connection. A failed reply (4xx/5xx)
 * matching an on_reply regex suspends the site for that long: no new session
 * is opened, its queued and new deliveries are deferred with "site_suspended".
 *
 * Loading refuses the whole file on any error with "FILE:LINE: reason" (an
 * unknown key, a bad number or duration, a regex that does not compile, a
 * section that is not [site NAME], a rule without match); nothing is
 * half-applied. Rules are read-only once loaded.
 */
#ifndef PMX_ROUTING_SHAPING_H
#define PMX_ROUTING_SHAPING_H
#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    regex_t  re;
    char    *text;
    uint64_t suspend_ms;
} pmx_shaping_reply_t;

typedef struct {
    char                *name;
    char               **match;
    size_t               nmatch;
    int                  connections;              /* 0 = [mx] connections_per_site */
    int                  messages_per_connection;  /* 0 = [mx] messages_per_connection */
    pmx_shaping_reply_t *on_reply;
    size_t               non_reply;
} pmx_shaping_rule_t;

typedef struct {
    pmx_shaping_rule_t *rules;
    size_t              n;
} pmx_shaping_t;

/* Loads path into *out (empty path: no rules). 0, or -1 with err. */
int  pmx_shaping_load(const char *path, pmx_shaping_t *out, char *err, size_t errlen);
void pmx_shaping_free(pmx_shaping_t *s);
/* The rule for a site of these MX hosts, or NULL. */
const pmx_shaping_rule_t *pmx_shaping_match(const pmx_shaping_t *s, const char *const *hosts,
                                            size_t n);
/* How long a reply suspends its site under rule (0 = it does not). */
uint64_t pmx_shaping_on_reply(const pmx_shaping_rule_t *rule, const char *reply);

#endif
