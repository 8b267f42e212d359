/*
 * Per-site rules of direct delivery: [mx] shaping_file of postmux.conf(5)
 * (docs/delivery.md, "Shaping"). An INI file of sections
 *
 *   [site NAME]
 *   match = *.google.com, *.googlemail.com    ; MX host patterns (fnmatch, any case)
 *   connections = 10                           ; sessions per host, all workers
 *   messages_per_connection = 50
 *   on_reply = TSS04 => suspend 1h             ; POSIX extended regex, any case; repeatable
 *   rate = 100/m                               ; transactions to the site, all hosts (N/s|N/m|N/h)
 *   burst = 5                                  ; with rate: how many may go at once (default 1)
 *
 * A route's site takes the first rule (in file order) one of whose patterns
 * matches one of its MX host names; a site without one keeps [mx]'s
 * connections_per_site and messages_per_connection. A failed reply (4xx/5xx)
 * matching an on_reply regex suspends the site for that long: no new session
 * is opened, its queued and new deliveries are deferred with "site_suspended".
 * A rule's rate (lib/rate.h syntax, as `workspace set --rate`) is a GCRA in
 * Redis keyed by the rule's NAME ({prefix}:site:{NAME}:rate, queue/keys.h),
 * shared by every worker, pool and host; it counts SMTP transactions (one
 * message to one recipient domain), see routing/mxroute.c. A NAME with a
 * rate is letters, digits, '.', '-' and '_' (1-64), since it names a key.
 *
 * Loading refuses the whole file on any error with "FILE:LINE: reason" (an
 * unknown key, a bad number, rate or duration, a regex that does not compile, a
 * section that is not [site NAME], a rule without match, a burst without a
 * rate); nothing is
 * half-applied. Rules are read-only once loaded.
 */
#ifndef PMX_ROUTING_SHAPING_H
#define PMX_ROUTING_SHAPING_H
#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PMX_SHAPING_RATE_NAME_MAX 64

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
    double               rate_per_second;          /* 0 = no rate */
    char                 rate_text[32];            /* as written ("2/s"), for people */
    int                  burst;                    /* with a rate: 1.. (default 1); 0 = not given */
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
