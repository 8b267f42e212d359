/*
 * Egress pools and session keys (docs/delivery.md "Egress pools"): what a
 * worker needs to open outbound SMTP sessions from a workspace's pool, for
 * every route that sends (the [relay], a workspace's own provider, MX).
 *
 * - An egress set is made once per worker from the [pool NAME] sections of
 *   postmux.conf(5): each pool's addresses as bindable socket addresses and
 *   its helo_name. pmx_egress_source is the smtp client's source callback
 *   (smtp/client.h pmx_smtp_relay_t.source): each new connection takes the
 *   pool's next address of the family it connects to, round-robin (from a
 *   random place in each worker), shared by every session pool that uses
 *   the egress pool.
 * - A session key names one set of sessions that may carry each other's
 *   messages. Sessions are shared only between messages with equal keys;
 *   the key carries the egress pool, so two pools never share a session, and
 *   a workspace's own route carries the workspace, so two routes never do.
 *   MX delivery keys its sessions by (site, pool) the same way.
 *
 * Single-threaded (one worker's loop); the set must outlive every session
 * that uses it.
 */
#ifndef PMX_ROUTING_EGRESS_H
#define PMX_ROUTING_EGRESS_H
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "config/config.h"
#include "lib/buf.h"

typedef struct {
    char                    *name;
    char                    *helo_name;   /* "" = the route's own helo_name */
    struct sockaddr_storage *addrs;       /* port 0 */
    char                   **shown;       /* the addresses as text, for messages */
    size_t                   n;
    size_t                   next;        /* round-robin position */
} pmx_egress_t;

typedef struct {
    pmx_egress_t *v;
    size_t        n;
} pmx_egress_set_t;

/* Fills set from cfg's pools (config.c has checked the addresses). */
void pmx_egress_set_init(pmx_egress_set_t *set, const pmx_config_t *cfg);
void pmx_egress_set_free(pmx_egress_set_t *set);
/* The pool called name, or NULL (also for a NULL name). */
pmx_egress_t *pmx_egress_find(const pmx_egress_set_t *set, const char *name);

/*
 * The smtp client's source callback; arg is a pmx_egress_t. Gives the next
 * address of family (AF_INET / AF_INET6). -1 with a reason when the pool has
 * no address of that family.
 */
int pmx_egress_source(void *arg, int family, struct sockaddr_storage *out, char *why,
                      size_t whylen);

/* Tries to bind address k of e (port 0, closed at once): 0, or -1 with the reason. */
int pmx_egress_bind_check(const pmx_egress_t *e, size_t k, char *why, size_t whylen);

/*
 * Tries to bind every address of every pool (port 0, then closed at once).
 * Returns how many cannot be bound; each is logged as a warning naming the
 * pool (an address not on this host: its sessions will fail and defer).
 */
size_t pmx_egress_probe(const pmx_egress_set_t *set);

typedef enum {
    PMX_SESSION_RELAY = 0,   /* [relay] */
    PMX_SESSION_SMTP,        /* a workspace's own provider (routing/wsroute.h) */
    PMX_SESSION_MX,          /* direct delivery: one site */
} pmx_session_kind_t;

typedef struct {
    pmx_session_kind_t kind;
    const char      *owner;   /* SMTP: the workspace whose route it is; else NULL */
    const char      *dest;    /* SMTP: the canonical route; MX: the site; RELAY: NULL */
    const char      *pool;    /* the egress pool; NULL = none (the kernel's source address) */
} pmx_session_key_t;

/*
 * Appends the key's one-line text to out, e.g. "relay pool=-",
 * "smtp ws=ws_... dest=smtp://a@b:587 pool=blue", "mx site=... pool=-".
 * Equal texts = the same sessions; it is also what logs print.
 */
void pmx_session_key_format(const pmx_session_key_t *k, pmx_buf_t *out);

#endif
