/*
 * `postmux workspace set --pool / --route / --route-password-file` (postmux(1);
 * docs/delivery.md "Egress pools", "Per-workspace routes"): the checks
 * (routing/wsroute.h, against the config this postmux reads) and the values
 * the UPDATE writes. The password file is read and sealed with the master key
 * here; nothing secret is kept after pmx_cli_ws_route_prepare returns but the
 * sealed blob.
 */
#ifndef PMX_CLI_WS_ROUTE_H
#define PMX_CLI_WS_ROUTE_H
#include <stdbool.h>

#include "cli/cli.h"
#include "lib/buf.h"

typedef struct {
    bool        pool_set;
    const char *pool;          /* NULL = default */
    bool        route_set;
    char       *route;         /* canonical; NULL = default */
    bool        password_set;
    char       *password_hex;  /* "\x..." bytea input; NULL = none */
    bool        guard_route;   /* only the password changes: the UPDATE must find this route */
    char       *current_route; /* ... the route the password was sealed for */
} pmx_cli_ws_route_t;

/*
 * Checks the three options (any may be NULL) for workspace ws_id and fills
 * out. Prints the first problem and returns -1; 0 otherwise.
 */
int  pmx_cli_ws_route_prepare(pmx_cli_t *c, const char *ws_id, const char *pool,
                              const char *route, const char *password_file,
                              pmx_cli_ws_route_t *out);
void pmx_cli_ws_route_free(pmx_cli_ws_route_t *r);

#endif
