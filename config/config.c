/*
 * The postmux.conf(5) configuration file; see config.h.
 *
 * inih only splits the text into [section] and key = value; everything else is
 * ours: a table with one typed setter per key, the documented defaults (postmux.conf(5)), strict
 * validation, and "FILE:LINE: reason" errors. A load fills a fresh
 * pmx_config_t and hands it to the caller only when every key and every rule
 * between keys passed, so a bad file (or a bad SIGHUP reload) changes nothing.
 *
 * inih is driven through ini_parse_stream with our own line reader, which
 *  - counts lines, so the handler can name the line it is refusing;
 *  - refuses a line longer than inih's fixed line buffer, which inih would
 *    otherwise cut in two and parse as two lines;
 *  - checks [section] headers, which inih never reports to the handler (an
 *    unknown empty section would otherwise pass unnoticed).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <ini.h>
#include <libpq-fe.h>
#include <microhttpd.h>

#include "config/config.h"
#include "config/config_int.h"
#include "lib/addr.h"
#include "lib/mem.h"
#include "queue/endpoint.h"
#include "routing/mx.h"
#include "routing/resolver.h"
#include "routing/shaping.h"

#define CFG_MAX_FILE    (1024 * 1024)   /* a config file is a few KiB */
#define CFG_MAX_SECRET  (64 * 1024)     /* a password or a base64 key */

#define MS_SECOND  UINT64_C(1000)
#define MS_MINUTE  (60 * MS_SECOND)
#define MS_HOUR    (60 * MS_MINUTE)
#define MS_DAY     (24 * MS_HOUR)
#define KIB        UINT64_C(1024)

struct cfg_key;
/* Parses value into the field k->off of c; on failure writes why and returns -1. */
typedef int (*cfg_setter_fn)(const struct cfg_key *k, const char *value, pmx_config_t *c,
                             char *why, size_t whylen);

struct cfg_key {
    const char   *section;
    const char   *name;
    cfg_setter_fn set;
    size_t        off;      /* offsetof the field in pmx_config_t */
    uint64_t      lo, hi;   /* accepted range, for numbers, durations, sizes */
};

/* One load in progress: the text, where the reader is, the config being built. */
typedef struct {
    const char  *name;          /* file name, for messages */
    const char  *text;
    size_t       len;
    size_t       pos;
    int          lineno;        /* line last handed to inih */
    int          fail_line;     /* 0 = error not tied to a line */
    bool         failed;
    char        *err;
    size_t       errlen;
    pmx_config_t cfg;
    int          seen_line[128]; /* per key of cfg_keys: line it was set on, 0 = not yet */
} cfg_load_t;

static const char *const cfg_sections[] = {
    "daemon", "postgres", "redis", "relay", "submission", "http", "inbound", "delivery", "mx", "feedback",
    "keys",
};
/* Sections that carry a name, "[pool NAME]"; their keys go to config/pools.c. */
static const char *const cfg_named_sections[] = { "pool" };

/* ---- small helpers ---------------------------------------------------------- */

/* Copies s for an error message: printable ASCII only, cut after 64 bytes. */
static const char *cfg_show(const char *s, char *buf, size_t n)
{
    size_t i = 0, j = 0;
    for (; s[i] && j + 4 < n && i < 64; i++)
        buf[j++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    if (s[i] && j + 4 <= n) {
        memcpy(buf + j, "...", 3);
        j += 3;
    }
    buf[j] = '\0';
    return buf;
}

/* Records the first error: "NAME:LINE: reason" (line > 0) or "NAME: reason". Returns 0. */
__attribute__((format(printf, 3, 4)))
static int cfg_fail(cfg_load_t *l, int line, const char *fmt, ...)
{
    if (l->failed) return 0;
    l->failed = true;
    l->fail_line = line;
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    if (l->err && l->errlen) {
        if (line > 0)
            snprintf(l->err, l->errlen, "%s:%d: %s", l->name, line, reason);
        else
            snprintf(l->err, l->errlen, "%s: %s", l->name, reason);
    }
    return 0;
}

/* Digits only (no sign, no space), at least one, no overflow; advances *p. */
static int cfg_parse_digits(const char **p, uint64_t *out)
{
    const char *s = *p;
    uint64_t n = 0;
    if (!isdigit((unsigned char)*s)) return -1;
    for (; isdigit((unsigned char)*s); s++) {
        unsigned d = (unsigned)(*s - '0');
        if (n > (UINT64_MAX - d) / 10) return -1;
        n = n * 10 + d;
    }
    *p = s;
    *out = n;
    return 0;
}

/* A host name (letters, digits, '-', '_', dot-separated labels) or an IP address. */
static bool cfg_valid_host(const char *s)
{
    unsigned char in6[16];
    if (strchr(s, ':')) return inet_pton(AF_INET6, s, in6) == 1;
    size_t n = strlen(s);
    return n <= 253 && pmx_host_labels_ok(s, n);
}

static char **cfg_str_field(pmx_config_t *c, size_t off) { return (char **)((char *)c + off); }

static void cfg_replace_str(pmx_config_t *c, size_t off, const char *value)
{
    char **f = cfg_str_field(c, off);
    free(*f);
    *f = pmx_xstrdup(value);
}

static int cfg_online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) return 1;
    return n > 256 ? 256 : (int)n;
}

/* ---- value parsers (public) ------------------------------------------------- */

int pmx_config_parse_duration(const char *s, uint64_t *ms)
{
    static const struct { const char *unit; uint64_t ms; } units[] = {
        { "", MS_SECOND }, { "ms", 1 }, { "s", MS_SECOND }, { "m", MS_MINUTE },
        { "h", MS_HOUR }, { "d", MS_DAY },
    };
    uint64_t n;
    if (!s || cfg_parse_digits(&s, &n) < 0) return -1;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(s, units[i].unit) != 0) continue;
        if (n > UINT64_MAX / units[i].ms) return -1;
        *ms = n * units[i].ms;
        return 0;
    }
    return -1;
}

int pmx_config_parse_size(const char *s, uint64_t *bytes)
{
    static const struct { const char *unit; uint64_t mult; } units[] = {
        { "", 1 }, { "b", 1 },
        { "k", KIB }, { "kb", KIB }, { "kib", KIB },
        { "m", KIB * KIB }, { "mb", KIB * KIB }, { "mib", KIB * KIB },
        { "g", KIB * KIB * KIB }, { "gb", KIB * KIB * KIB }, { "gib", KIB * KIB * KIB },
        { "t", KIB * KIB * KIB * KIB }, { "tb", KIB * KIB * KIB * KIB },
        { "tib", KIB * KIB * KIB * KIB },
    };
    uint64_t n;
    if (!s || cfg_parse_digits(&s, &n) < 0) return -1;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcasecmp(s, units[i].unit) != 0) continue;
        if (n > UINT64_MAX / units[i].mult) return -1;
        *bytes = n * units[i].mult;
        return 0;
    }
    return -1;
}

int pmx_config_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = { "yes", "true", "on", "1" };
    static const char *const no[] = { "no", "false", "off", "0" };
    if (!s) return -1;
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) { *out = true; return 0; }
        if (strcasecmp(s, no[i]) == 0) { *out = false; return 0; }
    }
    return -1;
}

/* ---- setters, one per kind of value ------------------------------------------ */

static int set_required_str(const struct cfg_key *k, const char *v, pmx_config_t *c,
                            char *why, size_t n)
{
    if (!*v) { snprintf(why, n, "must not be empty"); return -1; }
    cfg_replace_str(c, k->off, v);
    return 0;
}

static int set_optional_str(const struct cfg_key *k, const char *v, pmx_config_t *c,
                            char *why, size_t n)
{
    (void)why; (void)n;
    cfg_replace_str(c, k->off, v);
    return 0;
}

static int set_int(const struct cfg_key *k, const char *v, pmx_config_t *c, char *why, size_t n)
{
    char shown[80];
    uint64_t x;
    const char *p = v;
    if (cfg_parse_digits(&p, &x) < 0 || *p || x < k->lo || x > k->hi) {
        snprintf(why, n, "expected a number from %llu to %llu, got '%s'",
                 (unsigned long long)k->lo, (unsigned long long)k->hi,
                 cfg_show(v, shown, sizeof shown));
        return -1;
    }
    *(int *)((char *)c + k->off) = (int)x;
    return 0;
}

/* A percentage: "20%" or "20". */
static int set_percent(const struct cfg_key *k, const char *v, pmx_config_t *c, char *why,
                       size_t n)
{
    char buf[32];
    size_t len = strlen(v);
    if (len && len < sizeof buf && v[len - 1] == '%') {
        memcpy(buf, v, len - 1);
        buf[len - 1] = '\0';
        v = buf;
    }
    if (set_int(k, v, c, why, n) == 0) return 0;
    snprintf(why, n, "expected a percentage from %llu%% to %llu%%", (unsigned long long)k->lo,
             (unsigned long long)k->hi);
    return -1;
}

static int set_workers(const struct cfg_key *k, const char *v, pmx_config_t *c,
                       char *why, size_t n)
{
    if (strcmp(v, "auto") == 0) {
        c->workers = cfg_online_cpus();
        return 0;
    }
    if (set_int(k, v, c, why, n) == 0) return 0;
    char shown[80];
    snprintf(why, n, "expected auto or a number from %llu to %llu, got '%s'",
             (unsigned long long)k->lo, (unsigned long long)k->hi, cfg_show(v, shown, sizeof shown));
    return -1;
}

/* Writes a duration the way a user would have: "90s", "5m", "250ms". */
static const char *cfg_fmt_duration(uint64_t ms, char *buf, size_t n)
{
    if (ms && ms % MS_DAY == 0) snprintf(buf, n, "%llud", (unsigned long long)(ms / MS_DAY));
    else if (ms && ms % MS_HOUR == 0) snprintf(buf, n, "%lluh", (unsigned long long)(ms / MS_HOUR));
    else if (ms && ms % MS_MINUTE == 0) snprintf(buf, n, "%llum", (unsigned long long)(ms / MS_MINUTE));
    else if (ms % MS_SECOND == 0) snprintf(buf, n, "%llus", (unsigned long long)(ms / MS_SECOND));
    else snprintf(buf, n, "%llums", (unsigned long long)ms);
    return buf;
}

static const char *cfg_fmt_size(uint64_t b, char *buf, size_t n)
{
    if (b && b % (KIB * KIB * KIB) == 0) snprintf(buf, n, "%lluG", (unsigned long long)(b / (KIB * KIB * KIB)));
    else if (b && b % (KIB * KIB) == 0) snprintf(buf, n, "%lluM", (unsigned long long)(b / (KIB * KIB)));
    else if (b && b % KIB == 0) snprintf(buf, n, "%lluK", (unsigned long long)(b / KIB));
    else snprintf(buf, n, "%llu", (unsigned long long)b);
    return buf;
}

static int set_duration(const struct cfg_key *k, const char *v, pmx_config_t *c,
                        char *why, size_t n)
{
    char shown[80], lo[32], hi[32];
    uint64_t ms;
    if (pmx_config_parse_duration(v, &ms) < 0) {
        snprintf(why, n, "expected a duration such as 250ms, 30s, 5m, 1h or 5d, got '%s'",
                 cfg_show(v, shown, sizeof shown));
        return -1;
    }
    if (ms < k->lo || ms > k->hi) {
        snprintf(why, n, "must be from %s to %s, got '%s'", cfg_fmt_duration(k->lo, lo, sizeof lo),
                 cfg_fmt_duration(k->hi, hi, sizeof hi), cfg_show(v, shown, sizeof shown));
        return -1;
    }
    *(uint64_t *)((char *)c + k->off) = ms;
    return 0;
}

int pmx_config_parse_percent(const char *s, double *out)
{
    if (!s) return -1;
    if (strcmp(s, "none") == 0) {
        *out = -1;
        return 0;
    }
    /* Digits, at most one '.', then '%': "10%", "0.5%", "100%". */
    size_t n = strlen(s), digits = 0, dots = 0;
    if (n < 2 || n > 12 || s[n - 1] != '%') return -1;
    for (size_t i = 0; i + 1 < n; i++) {
        if (s[i] >= '0' && s[i] <= '9') digits++;
        else if (s[i] == '.' && dots++ == 0 && i > 0 && i + 2 < n) continue;
        else return -1;
    }
    if (!digits) return -1;
    double v = strtod(s, NULL);
    if (!(v >= 0 && v <= 100)) return -1;
    *out = v;
    return 0;
}

static int set_rate_percent(const struct cfg_key *k, const char *v, pmx_config_t *c, char *why,
                       size_t n)
{
    char shown[80];
    double x;
    if (pmx_config_parse_percent(v, &x) < 0) {
        snprintf(why, n, "expected a percentage from 0%% to 100%% such as 10%% or 0.5%%, or none, "
                 "got '%s'", cfg_show(v, shown, sizeof shown));
        return -1;
    }
    *(double *)((char *)c + k->off) = x;
    return 0;
}

static int set_size(const struct cfg_key *k, const char *v, pmx_config_t *c, char *why, size_t n)
{
    char shown[80], lo[32], hi[32];
    uint64_t bytes;
    if (pmx_config_parse_size(v, &bytes) < 0) {
        snprintf(why, n, "expected a size such as 512K, 25M or 1G, got '%s'",
                 cfg_show(v, shown, sizeof shown));
        return -1;
    }
    if (bytes < k->lo || bytes > k->hi) {
        snprintf(why, n, "must be from %s to %s, got '%s'", cfg_fmt_size(k->lo, lo, sizeof lo),
                 cfg_fmt_size(k->hi, hi, sizeof hi), cfg_show(v, shown, sizeof shown));
        return -1;
    }
    *(uint64_t *)((char *)c + k->off) = bytes;
    return 0;
}

static int set_bool(const struct cfg_key *k, const char *v, pmx_config_t *c, char *why, size_t n)
{
    char shown[80];
    if (pmx_config_parse_bool(v, (bool *)((char *)c + k->off)) < 0) {
        snprintf(why, n, "expected yes or no (or true/false, on/off, 1/0), got '%s'",
                 cfg_show(v, shown, sizeof shown));
        return -1;
    }
    return 0;
}

static int set_log_level(const struct cfg_key *k, const char *v, pmx_config_t *c,
                         char *why, size_t n)
{
    (void)k;
    char shown[80];
    if (pmx_log_parse_level(v, &c->log_level) < 0) {
        snprintf(why, n, "expected debug, info, warn or error, got '%s'",
                 cfg_show(v, shown, sizeof shown));
        return -1;
    }
    return 0;
}

static int set_tls_mode(const struct cfg_key *k, const char *v, pmx_config_t *c,
                        char *why, size_t n)
{
    (void)k;
    char shown[80];
    if (strcmp(v, "none") == 0) c->relay_tls = PMX_TLS_NONE;
    else if (strcmp(v, "starttls") == 0) c->relay_tls = PMX_TLS_STARTTLS;
    else if (strcmp(v, "tls") == 0) c->relay_tls = PMX_TLS_IMPLICIT;
    else {
        snprintf(why, n, "expected none, starttls or tls, got '%s'", cfg_show(v, shown, sizeof shown));
        return -1;
    }
    return 0;
}

/* [delivery] route: relay | mx. */
static int set_route(const struct cfg_key *k, const char *v, pmx_config_t *c, char *why, size_t n)
{
    (void)k;
    char shown[80];
    if (strcmp(v, "relay") == 0) c->delivery_route = PMX_ROUTE_RELAY;
    else if (strcmp(v, "mx") == 0) c->delivery_route = PMX_ROUTE_MX;
    else {
        snprintf(why, n, "expected relay or mx, got '%s'", cfg_show(v, shown, sizeof shown));
        return -1;
    }
    return 0;
}

/* [mx] tls: opportunistic | required | none. */
static int set_mx_tls(const struct cfg_key *k, const char *v, pmx_config_t *c, char *why, size_t n)
{
    (void)k;
    char shown[80];
    if (strcmp(v, "opportunistic") == 0) c->mx_tls = PMX_TLS_OPPORTUNISTIC;
    else if (strcmp(v, "required") == 0) c->mx_tls = PMX_TLS_STARTTLS;
    else if (strcmp(v, "none") == 0) c->mx_tls = PMX_TLS_NONE;
    else {
        snprintf(why, n, "expected opportunistic, required or none, got '%s'",
                 cfg_show(v, shown, sizeof shown));
        return -1;
    }
    return 0;
}

/* [mx] allow_networks: a list of IP networks (routing/mx.h). */
static int set_networks(const struct cfg_key *k, const char *v, pmx_config_t *c, char *why,
                        size_t n)
{
    pmx_mx_net_t *nets;
    size_t nn;
    if (pmx_mx_parse_networks(v, &nets, &nn, why, n) < 0) return -1;
    free(nets);
    cfg_replace_str(c, k->off, v);
    return 0;
}

/* [mx] resolver: "" or HOST[:PORT] (routing/resolver.h). */
static int set_resolver(const struct cfg_key *k, const char *v, pmx_config_t *c, char *why,
                        size_t n)
{
    char fwd[80];
    if (pmx_resolver_parse_spec(v, fwd, sizeof fwd, why, n) < 0) return -1;
    cfg_replace_str(c, k->off, v);
    return 0;
}

/* [mx] shaping_file: "" or a rules file that loads (routing/shaping.h). */
static int set_shaping_file(const struct cfg_key *k, const char *v, pmx_config_t *c, char *why,
                            size_t n)
{
    pmx_shaping_t s;
    if (pmx_shaping_load(v, &s, why, n) < 0) return -1;
    pmx_shaping_free(&s);
    cfg_replace_str(c, k->off, v);
    return 0;
}

/* A listening address: "" (off) or HOST:PORT / [IPv6]:PORT, in the [redis] address syntax. */
static int set_listen(const struct cfg_key *k, const char *v, pmx_config_t *c,
                      char *why, size_t n)
{
    char shown[80], reason[300];
    pmx_queue_endpoint_t a;
    if (*v) {
        bool ok = pmx_queue_parse_endpoint(v, &a, reason, sizeof reason) == 0 && !a.unix_socket &&
                  cfg_valid_host(a.host) && !(strchr(a.host, ':') && v[0] != '[');
        if (!ok) {
            snprintf(why, n, "expected HOST:PORT or [IPv6]:PORT (empty = off), got '%s'",
                     cfg_show(v, shown, sizeof shown));
            return -1;
        }
    }
    cfg_replace_str(c, k->off, v);
    return 0;
}

static int set_redis_address(const struct cfg_key *k, const char *v, pmx_config_t *c,
                             char *why, size_t n)
{
    pmx_queue_endpoint_t a;
    if (pmx_queue_parse_endpoint(v, &a, why, n) < 0) return -1;
    if (!a.unix_socket && !cfg_valid_host(a.host)) {
        char shown[80];
        snprintf(why, n, "'%s': not a valid host name or IP address", cfg_show(a.host, shown, sizeof shown));
        return -1;
    }
    cfg_replace_str(c, k->off, v);
    return 0;
}

static int set_prefix(const struct cfg_key *k, const char *v, pmx_config_t *c,
                      char *why, size_t n)
{
    size_t len = strlen(v);
    bool ok = len >= 1 && len <= 32;
    for (size_t i = 0; ok && i < len; i++)
        ok = isalnum((unsigned char)v[i]) || v[i] == '_' || v[i] == '-';
    if (!ok) {
        char shown[80];
        snprintf(why, n, "expected 1 to 32 of A-Z a-z 0-9 _ -, got '%s'", cfg_show(v, shown, sizeof shown));
        return -1;
    }
    cfg_replace_str(c, k->off, v);
    return 0;
}

static int set_host(const struct cfg_key *k, const char *v, pmx_config_t *c, char *why, size_t n)
{
    if (!cfg_valid_host(v)) {
        char shown[80];
        snprintf(why, n, "expected a host name or IP address, got '%s'", cfg_show(v, shown, sizeof shown));
        return -1;
    }
    cfg_replace_str(c, k->off, v);
    return 0;
}

/* The EHLO name: "" (the host name, resolved at the end), a domain, or [address literal]. */
/* A host name (no address literal), or empty. */
static int set_optional_host(const struct cfg_key *k, const char *v, pmx_config_t *c,
                             char *why, size_t n)
{
    if (v[0] && (strchr(v, ':') || !cfg_valid_host(v))) {
        char shown[80];
        snprintf(why, n, "expected a host name such as mx.example.com, got '%s'",
                 cfg_show(v, shown, sizeof shown));
        return -1;
    }
    cfg_replace_str(c, k->off, v);
    return 0;
}

bool pmx__config_helo_ok(const char *v)
{
    bool ok = true;
    size_t len = strlen(v);
    if (len && v[0] == '[') {
        char lit[64];
        unsigned char addr[16];
        ok = len >= 3 && len - 2 < sizeof lit && v[len - 1] == ']';
        if (ok) {
            memcpy(lit, v + 1, len - 2);
            lit[len - 2] = '\0';
            ok = inet_pton(AF_INET, lit, addr) == 1 ||
                 (strncasecmp(lit, "IPv6:", 5) == 0 && inet_pton(AF_INET6, lit + 5, addr) == 1);
        }
    } else if (len) {
        ok = !strchr(v, ':') && cfg_valid_host(v);
    }
    return ok;
}

static int set_helo_name(const struct cfg_key *k, const char *v, pmx_config_t *c,
                         char *why, size_t n)
{
    if (!pmx__config_helo_ok(v)) {
        char shown[80];
        snprintf(why, n, "expected a domain name or an address literal such as [192.0.2.1], got '%s'",
                 cfg_show(v, shown, sizeof shown));
        return -1;
    }
    cfg_replace_str(c, k->off, v);
    return 0;
}

/* Checked with libpq's own parser, so a typo shows up at load, not at the first connect. */
static int set_conninfo(const struct cfg_key *k, const char *v, pmx_config_t *c,
                        char *why, size_t n)
{
    if (!*v) { snprintf(why, n, "must not be empty"); return -1; }
    char *errmsg = NULL;
    PQconninfoOption *opts = PQconninfoParse(v, &errmsg);
    if (!opts) {
        const char *m = errmsg ? errmsg : "out of memory";
        size_t mlen = strlen(m);
        while (mlen && (m[mlen - 1] == '\n' || m[mlen - 1] == ' ')) mlen--;
        snprintf(why, n, "%.*s", (int)(mlen > 300 ? 300 : mlen), m);
        if (errmsg) PQfreemem(errmsg);
        return -1;
    }
    PQconninfoFree(opts);
    cfg_replace_str(c, k->off, v);
    return 0;
}

/* A key of a [pool NAME] section: config/pools.c, on the pool opened last. */
static int set_pool_key(const struct cfg_key *k, const char *v, pmx_config_t *c, char *why,
                        size_t n)
{
    return pmx__config_pool_set(c, k->name, v, why, n);
}

#define F(field) offsetof(pmx_config_t, field)
static const struct cfg_key cfg_keys[] = {
    { "daemon", "workers", set_workers, F(workers), 1, 256 },
    { "daemon", "shutdown_timeout", set_duration, F(shutdown_timeout_ms), 0, MS_HOUR },
    { "daemon", "metrics_listen", set_listen, F(metrics_listen), 0, 0 },
    { "daemon", "log_level", set_log_level, F(log_level), 0, 0 },
    { "postgres", "conninfo", set_conninfo, F(pg_conninfo), 0, 0 },
    { "redis", "address", set_redis_address, F(redis_address), 0, 0 },
    { "redis", "password_file", set_optional_str, F(redis_password_file), 0, 0 },
    { "redis", "prefix", set_prefix, F(redis_prefix), 0, 0 },
    { "relay", "host", set_host, F(relay_host), 0, 0 },
    { "relay", "port", set_int, F(relay_port), 1, 65535 },
    { "relay", "tls", set_tls_mode, F(relay_tls), 0, 0 },
    { "relay", "tls_verify", set_bool, F(relay_tls_verify), 0, 0 },
    { "relay", "ca_file", set_optional_str, F(relay_ca_file), 0, 0 },
    { "relay", "auth_user", set_optional_str, F(relay_auth_user), 0, 0 },
    { "relay", "auth_password_file", set_optional_str, F(relay_auth_password_file), 0, 0 },
    { "relay", "connections_per_worker", set_int, F(relay_connections_per_worker), 1, 1000 },
    { "relay", "helo_name", set_helo_name, F(relay_helo_name), 0, 0 },
    { "submission", "listen", set_listen, F(submission_listen), 0, 0 },
    { "submission", "tls_cert", set_optional_str, F(submission_tls_cert), 0, 0 },
    { "submission", "tls_key", set_optional_str, F(submission_tls_key), 0, 0 },
    { "submission", "auth_requires_tls", set_bool, F(submission_auth_requires_tls), 0, 0 },
    { "submission", "max_message_size", set_size, F(submission_max_message_size), KIB,
      KIB * KIB * KIB },
    { "submission", "memory_budget", set_size, F(submission_memory_budget), KIB * KIB,
      64 * KIB * KIB * KIB },
    { "submission", "max_connections", set_int, F(submission_max_connections), 1, 1000000 },
    { "submission", "max_connections_per_address", set_int,
      F(submission_max_connections_per_address), 1, 1000000 },
    { "submission", "connection_reserve", set_percent, F(submission_connection_reserve), 0, 90 },
    { "submission", "junk_command_limit", set_int, F(submission_junk_command_limit), 1, 100000 },
    { "submission", "auth_timeout", set_duration, F(submission_auth_timeout_ms), MS_SECOND, MS_HOUR },
    { "submission", "max_session_time", set_duration, F(submission_max_session_time_ms), MS_SECOND,
      MS_DAY },
    { "http", "listen", set_listen, F(http_listen), 0, 0 },
    { "http", "public_url", set_optional_str, F(http_public_url), 0, 0 },
    { "http", "tls_cert", set_optional_str, F(http_tls_cert), 0, 0 },
    { "http", "tls_key", set_optional_str, F(http_tls_key), 0, 0 },
    { "http", "max_body_size", set_size, F(http_max_body_size), KIB, KIB * KIB * KIB },
    { "http", "max_connections", set_int, F(http_max_connections), 1, 100000 },
    { "http", "max_connections_per_address", set_int, F(http_max_connections_per_address), 0,
      100000 },
    { "http", "idle_timeout", set_duration, F(http_idle_timeout_ms), MS_SECOND, MS_HOUR },
    { "inbound", "listen", set_listen, F(inbound_listen), 0, 0 },
    { "inbound", "hostname", set_optional_host, F(inbound_hostname), 0, 0 },
    { "inbound", "tls_cert", set_optional_str, F(inbound_tls_cert), 0, 0 },
    { "inbound", "tls_key", set_optional_str, F(inbound_tls_key), 0, 0 },
    { "inbound", "max_message_size", set_size, F(inbound_max_message_size), KIB, KIB * KIB * KIB },
    { "delivery", "retry_base", set_duration, F(retry_base_ms), 100, MS_DAY },
    { "delivery", "retry_max_interval", set_duration, F(retry_max_interval_ms), 100, 30 * MS_DAY },
    { "delivery", "max_queue_lifetime", set_duration, F(max_queue_lifetime_ms), 100, 365 * MS_DAY },
    { "delivery", "reclaim_idle", set_duration, F(reclaim_idle_ms), 1000, MS_DAY },
    { "delivery", "suspend_hold", set_duration, F(suspend_hold_ms), 0, MS_DAY },
    { "delivery", "route", set_route, F(delivery_route), 0, 0 },
    { "mx", "port", set_int, F(mx_port), 1, 65535 },
    { "mx", "allow_networks", set_networks, F(mx_allow_networks), 0, 0 },
    { "mx", "resolver", set_resolver, F(mx_resolver), 0, 0 },
    { "mx", "connections_per_site", set_int, F(mx_connections_per_site), 1, 10000 },
    { "mx", "messages_per_connection", set_int, F(mx_messages_per_connection), 1, 100000 },
    { "mx", "connect_timeout", set_duration, F(mx_connect_timeout_ms), MS_SECOND, 10 * MS_MINUTE },
    { "mx", "tls", set_mx_tls, F(mx_tls), 0, 0 },
    { "mx", "helo_name", set_helo_name, F(mx_helo_name), 0, 0 },
    { "mx", "shaping_file", set_shaping_file, F(mx_shaping_file), 0, 0 },
    { "feedback", "soft_bounce_limit", set_int, F(soft_bounce_limit), 0, 1000 },
    { "feedback", "soft_bounce_suppress_for", set_duration, F(soft_bounce_suppress_for_ms),
      MS_SECOND, 3650 * MS_DAY },
    { "feedback", "max_bounce_rate", set_rate_percent, F(max_bounce_rate), 0, 0 },
    { "feedback", "max_complaint_rate", set_rate_percent, F(max_complaint_rate), 0, 0 },
    { "feedback", "guard_window", set_duration, F(guard_window_ms), MS_MINUTE, 90 * MS_DAY },
    { "feedback", "guard_min_sent", set_int, F(guard_min_sent), 1, 1000000000 },
    { "keys", "master_key_file", set_required_str, F(master_key_file), 0, 0 },
    { "pool", "addresses", set_pool_key, 0, 0, 0 },
    { "pool", "helo_name", set_pool_key, 0, 0, 0 },
};
#undef F
#define CFG_NKEYS (sizeof cfg_keys / sizeof cfg_keys[0])
_Static_assert(CFG_NKEYS <= sizeof ((cfg_load_t *)0)->seen_line / sizeof(int),
               "seen_line too small for cfg_keys");

/* ---- defaults and the rules between keys ------------------------------------- */

static void cfg_set_defaults(pmx_config_t *c)
{
    memset(c, 0, sizeof *c);
    c->workers = cfg_online_cpus();
    c->shutdown_timeout_ms = 30 * MS_SECOND;
    c->metrics_listen = pmx_xstrdup("127.0.0.1:9464");
    c->log_level = PMX_LOG_INFO;
    c->pg_conninfo = pmx_xstrdup("host=/var/run/postgresql dbname=postmux");
    c->redis_address = pmx_xstrdup("127.0.0.1:6379");
    c->redis_password_file = pmx_xstrdup("");
    c->redis_prefix = pmx_xstrdup("pmx");
    c->relay_host = pmx_xstrdup("127.0.0.1");
    c->relay_port = 25;
    c->relay_tls = PMX_TLS_STARTTLS;
    c->relay_tls_verify = true;
    c->relay_ca_file = pmx_xstrdup("");
    c->relay_auth_user = pmx_xstrdup("");
    c->relay_auth_password_file = pmx_xstrdup("");
    c->relay_connections_per_worker = 16;
    c->relay_helo_name = pmx_xstrdup("");
    c->submission_listen = pmx_xstrdup("127.0.0.1:2525");
    c->submission_tls_cert = pmx_xstrdup("");
    c->submission_tls_key = pmx_xstrdup("");
    c->submission_auth_requires_tls = true;
    c->submission_max_message_size = 25 * KIB * KIB;
    c->submission_max_connections = 1000;
    c->submission_max_connections_per_address = 100;
    c->submission_connection_reserve = 20;
    c->submission_junk_command_limit = 100;
    c->submission_auth_timeout_ms = 60 * MS_SECOND;
    c->submission_max_session_time_ms = MS_HOUR;
    c->http_listen = pmx_xstrdup("");
    c->http_public_url = pmx_xstrdup("");
    c->http_tls_cert = pmx_xstrdup("");
    c->http_tls_key = pmx_xstrdup("");
    c->http_max_body_size = 10 * KIB * KIB;
    c->http_max_connections = 1024;
    c->http_max_connections_per_address = 64;
    c->http_idle_timeout_ms = 30 * MS_SECOND;
    c->inbound_listen = pmx_xstrdup("");
    c->inbound_hostname = pmx_xstrdup("");
    c->inbound_tls_cert = pmx_xstrdup("");
    c->inbound_tls_key = pmx_xstrdup("");
    c->inbound_max_message_size = 10 * KIB * KIB;
    c->retry_base_ms = 60 * MS_SECOND;
    c->retry_max_interval_ms = MS_HOUR;
    c->max_queue_lifetime_ms = 5 * MS_DAY;
    c->reclaim_idle_ms = 30 * MS_SECOND;
    c->suspend_hold_ms = 45 * MS_SECOND;
    c->delivery_route = PMX_ROUTE_RELAY;
    c->mx_port = 25;
    c->mx_allow_networks = pmx_xstrdup("");
    c->mx_resolver = pmx_xstrdup("");
    c->mx_connections_per_site = 20;
    c->mx_messages_per_connection = 100;
    c->mx_connect_timeout_ms = 30 * MS_SECOND;
    c->mx_tls = PMX_TLS_OPPORTUNISTIC;
    c->mx_helo_name = pmx_xstrdup("");
    c->mx_shaping_file = pmx_xstrdup("");
    c->soft_bounce_limit = 5;
    c->soft_bounce_suppress_for_ms = 7 * MS_DAY;
    c->max_bounce_rate = 10;
    c->max_complaint_rate = 0.5;
    c->guard_window_ms = MS_DAY;
    c->guard_min_sent = 500;
    c->master_key_file = pmx_xstrdup("/etc/postmux/master.key");
}

/* An empty helo_name becomes the host name ("localhost" if it is not a usable one). */
static void cfg_resolve_helo(pmx_config_t *c)
{
    if (c->relay_helo_name[0]) return;
    char host[256] = "";
    if (gethostname(host, sizeof host) < 0) host[0] = '\0';
    host[sizeof host - 1] = '\0';
    if (!cfg_valid_host(host) || strchr(host, ':')) snprintf(host, sizeof host, "localhost");
    free(c->relay_helo_name);
    c->relay_helo_name = pmx_xstrdup(host);
}

/*
 * [submission] memory_budget (postmux.conf(5)): unset (0) is 64M, or twice
 * max_message_size when that is more; set, it must be at least twice
 * max_message_size, so that one message of the largest size always fits in
 * the 7/8 of the budget big messages may use (submission/budget.h).
 */
static int cfg_submission_budget(cfg_load_t *l)
{
    pmx_config_t *c = &l->cfg;
    uint64_t two = 2 * c->submission_max_message_size;
    if (c->submission_memory_budget == 0) {
        c->submission_memory_budget = two > 64 * KIB * KIB ? two : 64 * KIB * KIB;
        return 0;
    }
    char a[32], b[32];
    if (c->submission_memory_budget < two)
        return cfg_fail(l, 0, "[submission] memory_budget (%s) must be at least twice "
                        "max_message_size (%s)",
                        cfg_fmt_size(c->submission_memory_budget, a, sizeof a),
                        cfg_fmt_size(c->submission_max_message_size, b, sizeof b)), -1;
    return 0;
}

/* Whether the host of an http:// URL is a loopback one (tests, a proxy on the same host). */
static bool cfg_loopback_host(const char *h, size_t n)
{
    return (n == 9 && strncasecmp(h, "localhost", 9) == 0) || (n == 5 && memcmp(h, "[::1]", 5) == 0) ||
           (n >= 9 && strncmp(h, "127.", 4) == 0 && strspn(h, "0123456789.") == n);
}

/*
 * [http]: public_url is required with listen, https:// unless its host is a
 * loopback one (RFC 8058 wants HTTPS: postmux.conf(5)); tls_cert and tls_key
 * together, and only if libmicrohttpd was built with TLS.
 */
static int cfg_check_http(cfg_load_t *l)
{
    pmx_config_t *c = &l->cfg;
    char shown[80];
    const char *u = c->http_public_url;
    if (!c->http_tls_cert[0] != !c->http_tls_key[0])
        return cfg_fail(l, 0, "[http] tls_cert and tls_key must be set together (or neither)"), -1;
    if (c->http_tls_cert[0] && MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
        return cfg_fail(l, 0, "[http] tls_cert: this libmicrohttpd has no TLS support; leave tls_cert "
                        "empty and run the listener behind a TLS reverse proxy"), -1;
    if (c->http_listen[0] && !u[0])
        return cfg_fail(l, 0, "[http] public_url is required when listen is set (e.g. "
                        "https://mail.example.com)"), -1;
    if (!u[0]) return 0;
    bool https = strncasecmp(u, "https://", 8) == 0, http = strncasecmp(u, "http://", 7) == 0;
    const char *host = u + (https ? 8 : 7);
    size_t hl = strcspn(host, "/?#");
    const char *colon = NULL;
    if (host[0] == '[') {
        const char *e = memchr(host, ']', hl);
        if (e && (size_t)(e - host) + 1 < hl && e[1] == ':') colon = e + 1;
    } else {
        colon = memchr(host, ':', hl);
    }
    size_t name_len = colon ? (size_t)(colon - host) : hl;
    bool bad_chars = false;
    for (const char *p = u; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || *p == '"' || *p == '<' ||
            *p == '>' || *p == '\\')
            bad_chars = true;
    if ((!https && !http) || name_len == 0 || bad_chars || strchr(host, '?') || strchr(host, '#'))
        return cfg_fail(l, 0, "[http] public_url: expected an absolute https:// URL such as "
                        "https://mail.example.com, got '%s'", cfg_show(u, shown, sizeof shown)), -1;
    if (http && !cfg_loopback_host(host, name_len))
        return cfg_fail(l, 0, "[http] public_url: must be https:// (one-click unsubscribe needs "
                        "HTTPS); http:// is accepted only for a loopback host, got '%s'",
                        cfg_show(u, shown, sizeof shown)), -1;
    return 0;
}

static int cfg_check_rules(cfg_load_t *l)
{
    pmx_config_t *c = &l->cfg;
    char a[32], b[32];
    if (c->relay_auth_user[0] && !c->relay_auth_password_file[0])
        return cfg_fail(l, 0, "[relay] auth_user is set but auth_password_file is empty"), -1;
    if (!c->relay_auth_user[0] && c->relay_auth_password_file[0])
        return cfg_fail(l, 0, "[relay] auth_password_file is set but auth_user is empty"), -1;
    if (!c->submission_tls_cert[0] != !c->submission_tls_key[0])
        return cfg_fail(l, 0, "[submission] tls_cert and tls_key must be set together (or neither)"), -1;
    if (cfg_submission_budget(l) < 0) return -1;
    if (c->submission_max_connections_per_address > c->submission_max_connections)
        return cfg_fail(l, 0, "[submission] max_connections_per_address (%d) must not be more "
                        "than max_connections (%d)", c->submission_max_connections_per_address,
                        c->submission_max_connections), -1;
    if (cfg_check_http(l) < 0) return -1;
    int pool_line = 0;
    char why[300];
    if (pmx__config_pools_check(c, &pool_line, why, sizeof why) < 0)
        return cfg_fail(l, pool_line, "%s", why), -1;
    if (!c->inbound_tls_cert[0] != !c->inbound_tls_key[0])
        return cfg_fail(l, 0, "[inbound] tls_cert and tls_key must be set together (or neither)"), -1;
    if (c->retry_max_interval_ms < c->retry_base_ms)
        return cfg_fail(l, 0, "[delivery] retry_max_interval (%s) must not be less than retry_base (%s)",
                        cfg_fmt_duration(c->retry_max_interval_ms, a, sizeof a),
                        cfg_fmt_duration(c->retry_base_ms, b, sizeof b)), -1;
    if (c->max_queue_lifetime_ms < c->retry_base_ms)
        return cfg_fail(l, 0, "[delivery] max_queue_lifetime (%s) must not be less than retry_base (%s)",
                        cfg_fmt_duration(c->max_queue_lifetime_ms, a, sizeof a),
                        cfg_fmt_duration(c->retry_base_ms, b, sizeof b)), -1;
    return 0;
}

/* ---- the inih side ---------------------------------------------------------- */

/*
 * A "[KIND NAME]" header: a new named section (only pools so far), whose keys
 * may each be given once again.
 */
static int cfg_open_named(cfg_load_t *l, const char *kind, const char *name, size_t len)
{
    char nm[PMX_CONFIG_POOL_NAME_MAX + 2], why[300], shown[80];
    if (len >= sizeof nm) len = sizeof nm - 1;      /* too long: the name check says so */
    memcpy(nm, name, len);
    nm[len] = '\0';
    for (size_t i = 0; i < CFG_NKEYS; i++)
        if (strcmp(cfg_keys[i].section, kind) == 0) l->seen_line[i] = 0;
    if (pmx__config_pool_open(&l->cfg, nm, l->lineno, why, sizeof why) < 0)
        return cfg_fail(l, l->lineno, "%s (got [%s %s])", why, kind, cfg_show(nm, shown, sizeof shown)), -1;
    return 0;
}

/*
 * Checks what inih would let through: a "[name]" line must name a known section
 * with nothing after it but a comment; a key line must use '='.
 */
static int cfg_check_line(cfg_load_t *l, const char *line)
{
    char shown[80];
    const char *s = line;
    if (l->lineno == 1 && strncmp(s, "\xEF\xBB\xBF", 3) == 0) s += 3;    /* inih skips a BOM */
    while (isspace((unsigned char)*s)) s++;
    if (*s == ';' || *s == '#') return 0;
    if (*s != '[') {
        /* inih also takes "key: value"; we document one form only. */
        size_t sep = strcspn(s, "=:");
        if (s[sep] == ':')
            return cfg_fail(l, l->lineno, "expected KEY = VALUE, not KEY: VALUE"), -1;
        return 0;
    }
    const char *end = strchr(s, ']');
    if (!end) return cfg_fail(l, l->lineno, "expected ']' after the section name"), -1;
    char name[64];
    size_t len = (size_t)(end - s - 1);
    snprintf(name, sizeof name, "%.*s", (int)(len < sizeof name ? len : sizeof name - 1), s + 1);
    const char *after = end + 1;
    while (isspace((unsigned char)*after)) after++;
    if (*after && *after != ';' && *after != '#')
        return cfg_fail(l, l->lineno, "unexpected text after [%s]", cfg_show(name, shown, sizeof shown)), -1;
    size_t nsec = sizeof cfg_sections / sizeof cfg_sections[0];
    for (size_t i = 0; i < nsec; i++)
        if (len == strlen(cfg_sections[i]) && memcmp(s + 1, cfg_sections[i], len) == 0) return 0;
    for (size_t i = 0; i < sizeof cfg_named_sections / sizeof cfg_named_sections[0]; i++) {
        size_t kl = strlen(cfg_named_sections[i]);
        if (len > kl + 1 && memcmp(s + 1, cfg_named_sections[i], kl) == 0 && s[1 + kl] == ' ')
            return cfg_open_named(l, cfg_named_sections[i], s + 2 + kl, len - kl - 1);
    }
    /* "daemon, postgres, ... or keys", from the one list of sections. */
    char known[256] = "";
    for (size_t i = 0; i < nsec; i++)
        snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s",
                 i == 0 ? "" : (i + 1 == nsec ? " or " : ", "), cfg_sections[i]);
    return cfg_fail(l, l->lineno, "unknown section [%s] (expected %s)",
                    cfg_show(name, shown, sizeof shown), known), -1;
    return cfg_fail(l, l->lineno, "unknown section [%s] (expected daemon, postgres, redis, relay, "
                    "submission, http, delivery or keys)", cfg_show(name, shown, sizeof shown)), -1;
}

/* inih's reader: hands over one whole line per call, or stops (NULL) at an error. */
static char *cfg_read_line(char *str, int num, void *stream)
{
    cfg_load_t *l = stream;
    if (l->failed || l->pos >= l->len) return NULL;
    const char *p = l->text + l->pos;
    size_t rest = l->len - l->pos;
    const char *nl = memchr(p, '\n', rest);
    size_t n = nl ? (size_t)(nl - p) : rest;
    l->pos += nl ? n + 1 : n;
    l->lineno++;
    if (n && p[n - 1] == '\r') n--;
    if (memchr(p, '\0', n)) return cfg_fail(l, l->lineno, "contains a NUL byte"), NULL;
    if (num < 2 || n > (size_t)num - 2)
        return cfg_fail(l, l->lineno, "line longer than %d characters", num - 2), NULL;
    memcpy(str, p, n);
    str[n] = '\n';
    str[n + 1] = '\0';
    if (cfg_check_line(l, str) < 0) return NULL;
    return str;
}

static int cfg_on_key(void *user, const char *section, const char *name, const char *value)
{
    cfg_load_t *l = user;
    char s1[80], why[400];
    if (l->failed) return 0;
    if (!*section)
        return cfg_fail(l, l->lineno, "'%s' is outside any section (put it under [daemon], [relay], ...)",
                        cfg_show(name, s1, sizeof s1));
    /* A named section "pool NAME" has the keys of "pool". */
    char kind[32];
    snprintf(kind, sizeof kind, "%.*s", (int)strcspn(section, " "), section);
    if (strchr(section, ' ')) section = kind;
    size_t i = 0;
    while (i < CFG_NKEYS && !(strcmp(cfg_keys[i].section, section) == 0 &&
                              strcmp(cfg_keys[i].name, name) == 0))
        i++;
    if (i == CFG_NKEYS)
        return cfg_fail(l, l->lineno, "[%s] unknown key '%s'", section, cfg_show(name, s1, sizeof s1));
    if (l->seen_line[i])
        return cfg_fail(l, l->lineno, "[%s] %s given twice (first on line %d)", section, name,
                        l->seen_line[i]);
    l->seen_line[i] = l->lineno;
    for (const char *v = value; *v; v++)
        if ((unsigned char)*v < 0x20 || *v == 0x7f)
            return cfg_fail(l, l->lineno, "[%s] %s: contains a control character", section, name);
    if (cfg_keys[i].set(&cfg_keys[i], value, &l->cfg, why, sizeof why) < 0)
        return cfg_fail(l, l->lineno, "[%s] %s: %s", section, name, why);
    return 1;
}

/* Parses text into a fresh config; *out only changes on success. */
static int cfg_load_text(const char *name, const char *text, size_t len, pmx_config_t *out,
                         char *err, size_t errlen)
{
    cfg_load_t l;
    memset(&l, 0, sizeof l);
    l.name = name;
    l.text = text;
    l.len = len;
    l.err = err;
    l.errlen = errlen;
    cfg_set_defaults(&l.cfg);

    /* Debian's inih reads these at run time; a line that starts with a blank
     * must not be glued to the previous value. */
    ini_allow_multiline = false;
    ini_allow_no_value = false;
    ini_allow_bom = true;
    ini_allow_inline_comments = true;
    ini_stop_on_first_error = true;

    int rc = ini_parse_stream(cfg_read_line, &l, cfg_on_key, &l);
    if (rc == -2) {
        cfg_fail(&l, 0, "out of memory");
    } else if (rc > 0 && (!l.failed || (l.fail_line > 0 && rc < l.fail_line))) {
        l.failed = false;   /* inih's syntax error came first */
        cfg_fail(&l, rc, "syntax error: expected [section], KEY = VALUE or a ; comment");
    } else if (rc != 0 && !l.failed) {
        cfg_fail(&l, 0, "cannot parse (inih error %d)", rc);
    }
    if (!l.failed) cfg_check_rules(&l);
    if (l.failed) {
        pmx_config_free(&l.cfg);
        return -1;
    }
    cfg_resolve_helo(&l.cfg);
    if (!l.cfg.mx_helo_name[0]) {     /* [mx] helo_name: default the relay's (the host name) */
        free(l.cfg.mx_helo_name);
        l.cfg.mx_helo_name = pmx_xstrdup(l.cfg.relay_helo_name);
    }
    l.cfg.path = pmx_xstrdup(name);
    *out = l.cfg;
    return 0;
}

/* ---- public API -------------------------------------------------------------- */

const char *pmx_config_default_path(void)
{
    const char *e = getenv("POSTMUX_CONFIG");
    return e && *e ? e : "/etc/postmux/postmux.conf";
}

int pmx_config_load_string(const char *name, const char *text, pmx_config_t *out,
                           char *err, size_t errlen)
{
    return cfg_load_text(name ? name : "(string)", text ? text : "", text ? strlen(text) : 0,
                         out, err, errlen);
}

/* Reads fd into buf until EOF or cap bytes; returns the count or -1 (errno set). */
static ssize_t cfg_read_all(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    while (n < cap) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) break;
        n += (size_t)r;
    }
    return (ssize_t)n;
}

int pmx_config_load(const char *path, pmx_config_t *out, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    char *text = pmx_xmalloc(CFG_MAX_FILE + 1);
    ssize_t n = cfg_read_all(fd, text, CFG_MAX_FILE + 1);
    int saved = errno;
    close(fd);
    int rc = -1;
    if (n < 0)
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(saved));
    else if (n > CFG_MAX_FILE)
        snprintf(err, errlen, "%s: larger than %d KiB, not a config file", path, CFG_MAX_FILE / 1024);
    else
        rc = cfg_load_text(path, text, (size_t)n, out, err, errlen);
    free(text);
    return rc;
}

void pmx_config_free(pmx_config_t *cfg)
{
    if (!cfg) return;
    char **fields[] = {
        &cfg->metrics_listen, &cfg->pg_conninfo, &cfg->redis_address, &cfg->redis_password_file,
        &cfg->redis_prefix, &cfg->relay_host, &cfg->relay_ca_file, &cfg->relay_auth_user,
        &cfg->relay_auth_password_file, &cfg->relay_helo_name, &cfg->submission_listen,
        &cfg->submission_tls_cert, &cfg->submission_tls_key, &cfg->master_key_file, &cfg->path,
        &cfg->http_listen, &cfg->http_public_url, &cfg->http_tls_cert, &cfg->http_tls_key,
        &cfg->inbound_listen, &cfg->inbound_hostname, &cfg->inbound_tls_cert, &cfg->inbound_tls_key,
        &cfg->mx_allow_networks, &cfg->mx_resolver, &cfg->mx_helo_name, &cfg->mx_shaping_file,
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) free(*fields[i]);
    pmx__config_pools_free(cfg);
    memset(cfg, 0, sizeof *cfg);
}

/*
 * One read into a buffer of fixed size (no realloc leaving copies behind), then
 * an exact-size copy for the caller; the big buffer is wiped before it is freed.
 */
int pmx_config_read_secret(const char *path, char **out, size_t *outlen, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        close(fd);
        return -1;
    }
    char *buf = pmx_xmalloc(CFG_MAX_SECRET + 1);
    ssize_t got = cfg_read_all(fd, buf, CFG_MAX_SECRET + 1);
    int saved = errno;
    close(fd);
    int rc = -1;
    size_t n = got > 0 ? (size_t)got : 0;
    if (got < 0) {
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(saved));
    } else if (n > CFG_MAX_SECRET) {
        snprintf(err, errlen, "%s: larger than %d KiB, not a secret file", path, CFG_MAX_SECRET / 1024);
    } else {
        size_t len = n;
        if (len && buf[len - 1] == '\n') {
            len--;
            if (len && buf[len - 1] == '\r') len--;
        }
        if (len == 0) {
            snprintf(err, errlen, "%s: is empty", path);
        } else {
            char *s = pmx_xmalloc(len + 1);
            memcpy(s, buf, len);
            s[len] = '\0';
            *out = s;
            *outlen = len;
            rc = 0;
        }
    }
    pmx_wipe(buf, n);
    free(buf);
    return rc;
}
