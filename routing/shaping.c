/*
 * The shaping file; see shaping.h. inih splits it; every value is checked here.
 */
#include "routing/shaping.h"

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>

#include "config/config.h"
#include "lib/mem.h"
#include "lib/rate.h"
#include "queue/ratelimit.h"

typedef struct {
    pmx_shaping_t *s;
    char           why[300];
    char           section[200];
} load_t;

static char *trim(char *p)
{
    while (isspace((unsigned char)*p)) p++;
    char *e = p + strlen(p);
    while (e > p && isspace((unsigned char)e[-1])) *--e = '\0';
    return p;
}

static int set_count(const char *v, int *out, load_t *l, const char *key)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < 1 || n > 100000) {
        snprintf(l->why, sizeof l->why, "%s: expected a number from 1 to 100000, got '%.40s'", key, v);
        return 0;
    }
    *out = (int)n;
    return 1;
}

/* "N/s", "N/m" or "N/h" (lib/rate.h); the rule's name becomes a Redis key. */
static int set_rate(pmx_shaping_rule_t *r, const char *v, load_t *l)
{
    size_t n = strlen(r->name);
    bool name_ok = n >= 1 && n <= PMX_SHAPING_RATE_NAME_MAX;
    for (size_t i = 0; name_ok && i < n; i++) {
        unsigned char c = (unsigned char)r->name[i];
        name_ok = isalnum(c) || c == '.' || c == '-' || c == '_';
    }
    if (!name_ok) {
        snprintf(l->why, sizeof l->why, "rate: [site %.60s]: a site with a rate is named with "
                 "1-%d letters, digits, '.', '-' or '_' (it names a Redis key)", r->name,
                 PMX_SHAPING_RATE_NAME_MAX);
        return 0;
    }
    pmx_rate_spec_t sp;
    if (pmx_rate_spec_parse_ex(v, &sp) < 0 || sp.unlimited || sp.per_second < PMX_RATELIMIT_RATE_MIN
        || strlen(v) >= sizeof r->rate_text) {
        snprintf(l->why, sizeof l->why, "rate: expected N/s, N/m or N/h (N a positive number, "
                 "at least 1/d), got '%.40s'", v);
        return 0;
    }
    r->rate_per_second = sp.per_second;
    snprintf(r->rate_text, sizeof r->rate_text, "%s", v);
    return 1;
}

/* "REGEX => suspend DURATION" */
static int add_on_reply(pmx_shaping_rule_t *r, const char *v, load_t *l)
{
    const char *arrow = strstr(v, "=>");
    if (!arrow) {
        snprintf(l->why, sizeof l->why, "on_reply: expected 'REGEX => suspend DURATION'");
        return 0;
    }
    char *re = pmx_xstrndup(v, (size_t)(arrow - v));
    char *act = pmx_xstrdup(arrow + 2);
    char *ret = trim(re), *a = trim(act);
    uint64_t ms = 0;
    int ok = 0;
    if (!*ret) {
        snprintf(l->why, sizeof l->why, "on_reply: the regex is empty");
    } else if (strncasecmp(a, "suspend", 7) != 0 || !isspace((unsigned char)a[7])
               || pmx_config_parse_duration(trim(a + 8), &ms) < 0 || ms < 1000
               || ms > 7 * 24 * 3600 * 1000ull) {
        snprintf(l->why, sizeof l->why, "on_reply: expected 'suspend DURATION' (1s..7d) after =>");
    } else {
        pmx_shaping_reply_t x = { .suspend_ms = ms };
        int rc = regcomp(&x.re, ret, REG_EXTENDED | REG_ICASE | REG_NOSUB);
        if (rc != 0) {
            char e[160];
            regerror(rc, &x.re, e, sizeof e);
            snprintf(l->why, sizeof l->why, "on_reply: bad regex '%.60s': %s", ret, e);
        } else {
            x.text = pmx_xstrdup(ret);
            r->on_reply = pmx_xrealloc(r->on_reply, (r->non_reply + 1) * sizeof *r->on_reply);
            r->on_reply[r->non_reply++] = x;
            ok = 1;
        }
    }
    free(re);
    free(act);
    return ok;
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
    load_t *l = user;
    pmx_shaping_t *s = l->s;
    char sec[200];
    snprintf(sec, sizeof sec, "%s", section);
    char *nm = sec;
    if (strncmp(nm, "site", 4) != 0 || !isspace((unsigned char)nm[4]) || !*trim(nm + 4)) {
        snprintf(l->why, sizeof l->why, "[%.60s]: sections are [site NAME]", section);
        return 0;
    }
    nm = trim(nm + 4);
    if (s->n == 0 || strcmp(l->section, section) != 0) {
        for (size_t i = 0; i < s->n; i++)
            if (strcmp(s->rules[i].name, nm) == 0) {
                snprintf(l->why, sizeof l->why, "[site %.60s] is there twice", nm);
                return 0;
            }
        s->rules = pmx_xrealloc(s->rules, (s->n + 1) * sizeof *s->rules);
        memset(&s->rules[s->n], 0, sizeof s->rules[0]);
        s->rules[s->n++].name = pmx_xstrdup(nm);
        snprintf(l->section, sizeof l->section, "%s", section);
    }
    pmx_shaping_rule_t *r = &s->rules[s->n - 1];
    if (strcmp(name, "match") == 0) {
        char *v = pmx_xstrdup(value), *save = NULL;
        for (char *t = strtok_r(v, ", \t", &save); t; t = strtok_r(NULL, ", \t", &save)) {
            r->match = pmx_xrealloc(r->match, (r->nmatch + 1) * sizeof *r->match);
            r->match[r->nmatch++] = pmx_xstrdup(t);
        }
        free(v);
        return 1;
    }
    if (strcmp(name, "connections") == 0) return set_count(value, &r->connections, l, name);
    if (strcmp(name, "messages_per_connection") == 0)
        return set_count(value, &r->messages_per_connection, l, name);
    if (strcmp(name, "on_reply") == 0) return add_on_reply(r, value, l);
    if (strcmp(name, "rate") == 0) return set_rate(r, value, l);
    if (strcmp(name, "burst") == 0) return set_count(value, &r->burst, l, name);
    snprintf(l->why, sizeof l->why, "unknown key '%.40s' (match, connections, "
             "messages_per_connection, on_reply, rate, burst)", name);
    return 0;
}

int pmx_shaping_load(const char *path, pmx_shaping_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!path || !*path) return 0;
    load_t l = { .s = out };
    int rc = ini_parse(path, handler, &l);
    if (rc < 0) {
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
    } else if (rc > 0) {
        snprintf(err, errlen, "%s:%d: %s", path, rc, l.why[0] ? l.why : "syntax error");
    } else {
        for (size_t i = 0; i < out->n && rc == 0; i++) {
            pmx_shaping_rule_t *r = &out->rules[i];
            if (r->nmatch == 0) {
                snprintf(err, errlen, "%s: [site %s] has no match", path, r->name);
                rc = 1;
            } else if (r->burst && !r->rate_per_second) {
                snprintf(err, errlen, "%s: [site %s] has a burst but no rate", path, r->name);
                rc = 1;
            } else if (r->rate_per_second && !r->burst) {
                r->burst = 1;
            }
        }
        if (rc == 0) return 0;
    }
    pmx_shaping_free(out);
    return -1;
}

void pmx_shaping_free(pmx_shaping_t *s)
{
    for (size_t i = 0; i < s->n; i++) {
        pmx_shaping_rule_t *r = &s->rules[i];
        for (size_t k = 0; k < r->nmatch; k++) free(r->match[k]);
        for (size_t k = 0; k < r->non_reply; k++) {
            regfree(&r->on_reply[k].re);
            free(r->on_reply[k].text);
        }
        free(r->match);
        free(r->on_reply);
        free(r->name);
    }
    free(s->rules);
    memset(s, 0, sizeof *s);
}

const pmx_shaping_rule_t *pmx_shaping_match(const pmx_shaping_t *s, const char *const *hosts,
                                            size_t n)
{
    for (size_t i = 0; s && i < s->n; i++)
        for (size_t k = 0; k < s->rules[i].nmatch; k++)
            for (size_t h = 0; h < n; h++)
                if (fnmatch(s->rules[i].match[k], hosts[h], FNM_CASEFOLD) == 0) return &s->rules[i];
    return NULL;
}

uint64_t pmx_shaping_on_reply(const pmx_shaping_rule_t *rule, const char *reply)
{
    for (size_t i = 0; rule && reply && i < rule->non_reply; i++)
        if (regexec(&rule->on_reply[i].re, reply, 0, NULL, 0) == 0) return rule->on_reply[i].suspend_ms;
    return 0;
}
