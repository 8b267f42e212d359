/*
 * A workspace's routing settings (docs/delivery.md "Egress pools" and
 * "Per-workspace routes"; postmux(1) workspace set --pool, --route,
 * --route-password-file): the one place that checks them, for the CLI, the
 * HTTP API and the workers alike.
 *
 *   pool   NULL (default: no pool) or the name of a [pool NAME] section of
 *          postmux.conf(5); stored in workspaces.pool.
 *   route  default | mx | smtp://[user@]host[:port][?tls=none] |
 *          smtps://[user@]host[:port]; stored canonical in workspaces.route
 *          (NULL = default). smtp:// requires STARTTLS unless ?tls=none;
 *          smtps:// is TLS from the first byte. The port defaults to 587
 *          (smtp) or 465 (smtps). The user is percent-decoded (%40 for '@';
 *          the last '@' ends it); a password never appears in the URL.
 *   password  with a user, required; sealed with the master key
 *          (dkim/keycrypt.h, AES-256-GCM) under the additional data
 *          "postmux-route-v1:<workspace id>:<canonical route>", so a blob
 *          moved to another workspace or another route (a host changed in
 *          the database) does not open. Stored in workspaces.route_password_enc.
 *
 * Nothing here logs or does I/O; errors are one line in err.
 */
#ifndef PMX_ROUTING_WSROUTE_H
#define PMX_ROUTING_WSROUTE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "dkim/keycrypt.h"
#include "lib/buf.h"
#include "smtp/tls.h"

#define PMX_WSROUTE_MAX       1024     /* the route text as given */
#define PMX_WSROUTE_USER_MAX  255
#define PMX_WSROUTE_HOST_MAX  253
#define PMX_WSROUTE_PASSWORD_MAX 1024  /* bytes */

typedef enum {
    PMX_WSROUTE_DEFAULT = 0,   /* the daemon's own route ([relay]) */
    PMX_WSROUTE_MX,            /* direct delivery to each domain's MX */
    PMX_WSROUTE_SMTP,          /* the workspace's own provider */
} pmx_wsroute_kind_t;

typedef struct {
    pmx_wsroute_kind_t kind;
    pmx_tls_mode_t     tls;                              /* SMTP: STARTTLS, NONE or IMPLICIT */
    char               host[PMX_WSROUTE_HOST_MAX + 1];   /* lowercase; IPv6 without brackets */
    int                port;
    char               user[PMX_WSROUTE_USER_MAX + 1];   /* decoded; "" = no AUTH */
    char               canonical[PMX_WSROUTE_MAX + 1];   /* "default", "mx" or the URL as stored */
} pmx_wsroute_t;

/* Parses a route as a user wrote it (or as stored). 0, or -1 with a reason in err. */
int pmx_wsroute_parse(const char *text, pmx_wsroute_t *out, char *err, size_t errlen);

/*
 * Checks a --pool value against cfg: "default" gives *stored = NULL; a name
 * gives *stored = name when cfg has its [pool NAME] section. 0, or -1 with a
 * reason in err (bad shape, or no such section in cfg->path).
 */
int pmx_wsroute_pool_check(const pmx_config_t *cfg, const char *name, const char **stored,
                           char *err, size_t errlen);

/*
 * Whether route and a password go together: a route with a user needs one
 * (have_password), any other route takes none. 0, or -1 with a reason.
 */
int pmx_wsroute_password_check(const pmx_wsroute_t *route, bool have_password, char *err,
                               size_t errlen);

/*
 * Whether a password (n bytes; from --route-password-file or the API's
 * route_password) is one line: 1 to PMX_WSROUTE_PASSWORD_MAX bytes without
 * control characters. 0, or -1 with a reason in err (which does not name the
 * input and never holds the password).
 */
int pmx_wsroute_password_text_check(const char *password, size_t n, char *err, size_t errlen);

/* Appends "postmux-route-v1:<ws_id>:<canonical>" to out. */
void pmx_wsroute_aad(pmx_buf_t *out, const char *ws_id, const pmx_wsroute_t *route);

/* Seals password for ws_id's route, appending the blob to blob_out. 0 or -EIO. */
int pmx_wsroute_seal(const uint8_t master[PMX_DKIM_MASTER_KEY_LEN], const char *ws_id,
                     const pmx_wsroute_t *route, const char *password, size_t n,
                     pmx_buf_t *blob_out);
/* As pmx_wsroute_seal, the blob as bytea input text "\\x<hex>" (malloc'd) in
 * *out, for workspaces.route_password_enc. 0 or -EIO (*out NULL). */
int pmx_wsroute_seal_bytea(const uint8_t master[PMX_DKIM_MASTER_KEY_LEN], const char *ws_id,
                           const pmx_wsroute_t *route, const char *password, size_t n,
                           char **out);
/* Opens it (a secret: free with pmx_buf_free_secret); as pmx_dkim_key_open. */
int pmx_wsroute_open(const uint8_t master[PMX_DKIM_MASTER_KEY_LEN], const char *ws_id,
                     const pmx_wsroute_t *route, const uint8_t *blob, size_t n,
                     pmx_buf_t *password_out);

#endif
