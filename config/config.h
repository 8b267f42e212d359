/*
 * The configuration of postmux.conf(5), shared by postmuxd and postmux: one INI parser
 * (inih), strict about what it accepts. An unknown section or key, a bad value,
 * or a missing required value fails the whole load with "FILE:LINE: reason";
 * nothing is half-applied (the caller keeps its old config on failure).
 */
#ifndef PMX_CONFIG_CONFIG_H
#define PMX_CONFIG_CONFIG_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/log.h"
#include "smtp/tls.h"           /* pmx_tls_mode_t */


enum { PMX_ROUTE_RELAY = 0, PMX_ROUTE_MX = 1 };

/*
 * One [pool NAME] section (docs/delivery.md "Egress pools"): the source
 * addresses a workspace's sessions bind, and the EHLO name they use.
 */
typedef struct {
    char  *name;                        /* [A-Za-z0-9._-], 1-63, not "default" */
    char **addresses;                   /* IPv4 / IPv6 literals as written, distinct */
    size_t naddresses;                  /* at least 1 */
    char  *helo_name;                   /* "" = the helo_name of the route ([relay] ...) */
    int    line;                        /* where the section starts, for messages */
} pmx_config_pool_t;

#define PMX_CONFIG_POOL_NAME_MAX      63
#define PMX_CONFIG_POOL_ADDRESSES_MAX 64

typedef struct {
    /* [daemon] */
    int             workers;            /* resolved: "auto" = online CPUs */
    uint64_t        shutdown_timeout_ms;
    char           *metrics_listen;     /* "" = off; "HOST:PORT" */
    pmx_log_level_t log_level;

    /* [postgres] */
    char *pg_conninfo;

    /* [redis] */
    char *redis_address;                /* "HOST:PORT" or "unix:/path" */
    char *redis_password_file;          /* "" = none */
    char *redis_prefix;                 /* default "pmx" */

    /* [relay] */
    char          *relay_host;
    int            relay_port;
    pmx_tls_mode_t relay_tls;
    bool           relay_tls_verify;
    char          *relay_ca_file;       /* "" = system store only */
    char          *relay_auth_user;     /* "" = no AUTH */
    char          *relay_auth_password_file;
    int            relay_connections_per_worker;
    char          *relay_helo_name;     /* resolved: default the host name */

    /* [submission] */
    char    *submission_listen;         /* "" = off */
    char    *submission_tls_cert;
    char    *submission_tls_key;
    bool     submission_auth_requires_tls;
    uint64_t submission_max_message_size;   /* bytes */
    uint64_t submission_memory_budget;      /* bytes per worker (submission/budget.h) */
    /* Session limits (docs/submission.md): all workers together. */
    int      submission_max_connections;            /* sessions open at once */
    int      submission_max_connections_per_address;
    int      submission_connection_reserve;         /* % of max_connections kept for new addresses */
    int      submission_junk_command_limit;         /* commands before AUTH */
    uint64_t submission_auth_timeout_ms;            /* from connect to 235 */
    uint64_t submission_max_session_time_ms;        /* a session's whole life */

    /* [http] (docs/http.md) */
    char    *http_listen;               /* "" = off */
    char    *http_public_url;           /* required when http_listen is set */
    char    *http_tls_cert;             /* "" = plain HTTP (behind a TLS proxy) */
    char    *http_tls_key;
    uint64_t http_max_body_size;        /* bytes */
    int      http_max_connections;      /* per worker */
    int      http_max_connections_per_address;   /* per worker; 0 = no limit */
    uint64_t http_idle_timeout_ms;

    /* [inbound] (docs/feedback.md): SMTP for what comes back */
    char    *inbound_listen;            /* "" = off */
    char    *inbound_hostname;          /* "" = no VERP return path; MAIL FROM is the From address */
    char    *inbound_tls_cert;          /* "" = no STARTTLS */
    char    *inbound_tls_key;
    uint64_t inbound_max_message_size;  /* bytes */

    /* [delivery] */
    uint64_t retry_base_ms;
    uint64_t retry_max_interval_ms;
    uint64_t max_queue_lifetime_ms;
    uint64_t reclaim_idle_ms;           /* a job pending this long on a dead worker is taken over */
    uint64_t suspend_hold_ms;           /* a suspended workspace's jobs wait this long, then are rejected */
    int      delivery_route;            /* PMX_ROUTE_RELAY | PMX_ROUTE_MX */

    /* [mx] (docs/delivery.md "Direct delivery") */
    int            mx_port;
    char          *mx_allow_networks;   /* "" = none; checked by routing/mx.h */
    char          *mx_resolver;         /* "" = /etc/resolv.conf; HOST[:PORT] */
    int            mx_connections_per_site;
    int            mx_messages_per_connection;
    uint64_t       mx_connect_timeout_ms;
    pmx_tls_mode_t mx_tls;              /* OPPORTUNISTIC | STARTTLS (required) | NONE */
    char          *mx_helo_name;        /* resolved: default [relay] helo_name */
    char          *mx_shaping_file;     /* "" = no per-site rules (routing/shaping.h) */

    /* [feedback] */
    int      soft_bounce_limit;         /* soft bounces in a row that suppress an address; 0 = never */
    uint64_t soft_bounce_suppress_for_ms;
    double   max_bounce_rate;           /* percent; < 0 = none (the guard ignores it) */
    double   max_complaint_rate;        /* percent; < 0 = none */
    uint64_t guard_window_ms;
    int      guard_min_sent;            /* windows with fewer attempts are not judged */

    /* [keys] */
    char *master_key_file;

    /* [pool NAME] sections, in file order */
    pmx_config_pool_t *pools;
    size_t             npools;

    char *path;                         /* the file this came from */
} pmx_config_t;

/* The default path: $POSTMUX_CONFIG, else /etc/postmux/postmux.conf. */
const char *pmx_config_default_path(void);

/*
 * Loads FILE into *out (which the caller then owns; free with pmx_config_free).
 * On failure returns -1 and writes "FILE:LINE: reason" (or "FILE: reason")
 * into err; *out is untouched.
 */
int  pmx_config_load(const char *path, pmx_config_t *out, char *err, size_t errlen);
/* Same, from a string (tests); name is used in error messages. */
int  pmx_config_load_string(const char *name, const char *text, pmx_config_t *out,
                            char *err, size_t errlen);
void pmx_config_free(pmx_config_t *cfg);

/* Value parsers, also used by the CLI. Each returns 0 or -1 (bad input). */
/* "30s", "5m", "1h", "5d", "250ms", a bare number = seconds. */
int pmx_config_parse_duration(const char *s, uint64_t *ms);
/* "10%", "0.5%" (0 to 100) -> 10, 0.5; "none" -> -1. */
int pmx_config_parse_percent(const char *s, double *out);
/* "25M", "512K", "1G", a bare number = bytes (binary multiples). */
int pmx_config_parse_size(const char *s, uint64_t *bytes);
/* yes|no|true|false|on|off|1|0 */
int pmx_config_parse_bool(const char *s, bool *out);

/* The [pool NAME] section called name (case-sensitive), or NULL. */
const pmx_config_pool_t *pmx_config_pool(const pmx_config_t *cfg, const char *name);
/* Whether name has the shape of a pool name (not whether such a section exists). */
bool pmx_config_pool_name_ok(const char *name);

/*
 * Reads a secret file (password_file, master key) whole, trimming one trailing
 * newline. Returns 0 or -1 with a reason in err. The caller wipes and frees *out.
 */
int pmx_config_read_secret(const char *path, char **out, size_t *outlen, char *err, size_t errlen);

#endif
