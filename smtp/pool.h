/*
 * The relay client a worker uses (docs/delivery.md Relay): up to max_sessions SMTP
 * sessions to [relay] on the worker's libuv loop, each reused for message
 * after message (RSET between them), with messages queued while every session
 * is busy. A lost session is replaced on demand; an unused one is QUIT after
 * idle_timeout_ms.
 *
 * Contract for callers:
 * - pmx_smtp_pool_send borrows everything it is given — the envelope's
 *   strings and rcpts array, and data — until the message's callback has run;
 *   keep them in the message's arena. The envelope struct itself is copied.
 * - data is the complete message as signed: CRLF line endings, NOT
 *   dot-stuffed. The client dot-stuffs it and adds the final "." while writing
 *   (lib/text.h pmx_text_dot_stuff).
 * - The callback runs exactly once per accepted message, always from the loop
 *   and never from inside pmx_smtp_pool_send. Its result (and every string in
 *   it) is valid only during the call. It may call pmx_smtp_pool_send,
 *   pmx_smtp_pool_close and pmx_smtp_pool_abort.
 * - Outcomes: SENT (2xx to the end of data), TEMPFAIL (4xx, timeout, lost
 *   connection, unreachable relay, TLS or AUTH failure: defer and retry) or
 *   PERMFAIL (5xx, or a message this relay can never take: larger than its
 *   SIZE, or needing SMTPUTF8 it does not offer), per recipient, with the full
 *   reply text for last_response. When no session can be set up (relay down,
 *   certificate refused, AUTH refused), every queued message gets TEMPFAIL
 *   with that reason at once; the next send tries to connect again.
 * - Shutdown: pmx_smtp_pool_close stops new sends, lets queued and in-flight
 *   messages finish normally (their callbacks run as usual), QUITs every
 *   session and then calls closed(arg) once; the pool is freed after closed
 *   returns. pmx_smtp_pool_abort (e.g. when shutdown_timeout hits) ends every
 *   queued and in-flight message at once with TEMPFAIL "relay client shut
 *   down" and closes every connection without QUIT. The closed callback is
 *   the last call the pool makes.
 */
#ifndef PMX_SMTP_POOL_H
#define PMX_SMTP_POOL_H
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "smtp/client.h"
#include "config/config.h"

typedef struct pmx_smtp_pool pmx_smtp_pool_t;

/*
 * Fills *out from [relay] of cfg (strings borrowed from cfg, timeouts left at
 * their defaults) and, when auth_user is set, reads auth_password_file into
 * *password (the caller wipes and frees it; pmx_smtp_pool_new keeps its own
 * copy, so right after it is fine). Returns 0, or -1 with a reason in err.
 */
int  pmx_smtp_relay_from_config(const pmx_config_t *cfg, pmx_smtp_relay_t *out, char **password,
                                char *err, size_t errlen);

/*
 * Creates a pool on loop; cfg and its strings are copied (the password is
 * wiped when the pool is freed). Opens no connection yet. Returns 0, or -1
 * with a reason in err (bad host/port/helo_name, unreadable ca_file).
 */
int  pmx_smtp_pool_new(uv_loop_t *loop, const pmx_smtp_relay_t *cfg, pmx_smtp_pool_t **out,
                       char *err, size_t errlen);

/*
 * Queues one message for the relay. Returns 0 (cb will run), UV_EINVAL for a
 * bad envelope (no recipient, or a sender that is neither "" nor an RFC 5321
 * Mailbox by lib/addr.h; the reason is logged), or UV_ESHUTDOWN after
 * pmx_smtp_pool_close. On error cb never runs. Recipients are not checked
 * here: one the session cannot send (lib/addr.h's pmx_addr_envelope_ok, or
 * SMTPUTF8) gets its own PERMFAIL outcome, and the others are still sent.
 */
int  pmx_smtp_pool_send(pmx_smtp_pool_t *p, const pmx_smtp_envelope_t *env,
                        const char *data, size_t len, pmx_smtp_send_cb cb, void *arg);

/* Graceful shutdown; see the top of this file. Call once. closed may be NULL. */
void pmx_smtp_pool_close(pmx_smtp_pool_t *p, void (*closed)(void *arg), void *arg);
/* Immediate shutdown of whatever is left; call after pmx_smtp_pool_close. */
void pmx_smtp_pool_abort(pmx_smtp_pool_t *p);

/*
 * Direct delivery (routing/mxroute.h): replaces the addresses sessions
 * connect to (copied; sessions already started keep theirs).
 */
void pmx_smtp_pool_set_addrs(pmx_smtp_pool_t *p, const struct sockaddr_storage *addrs, size_t n);
/*
 * Admission: before each new session the pool asks admit(arg); a "no" leaves
 * the messages queued and asks again PMX_SMTP_POOL_ADMIT_RETRY_MS later (or
 * when one of its sessions ends), so a full site costs a timer, not a spin.
 * Every admitted session calls release(arg) once when it is gone.
 */
#define PMX_SMTP_POOL_ADMIT_RETRY_MS 250
void pmx_smtp_pool_set_admission(pmx_smtp_pool_t *p, bool (*admit)(void *arg),
                                 void (*release)(void *arg), void *arg);

/* Ends every message waiting for a session with status and reason (their
 * callbacks run from here); messages in a transaction go on. Not from inside
 * one of this pool's callbacks. */
void pmx_smtp_pool_fail_queued(pmx_smtp_pool_t *p, pmx_smtp_status_t status, const char *after,
                               const char *reason);

/* QUITs the sessions that wait for a message, when none is queued; the pool stays
 * open and makes new sessions for later messages (a site another worker waits for,
 * routing/mxroute.c). */
void pmx_smtp_pool_quit_idle(pmx_smtp_pool_t *p);

typedef struct {
    uint64_t connections;    /* sessions started since the pool was made */
    uint64_t sent;           /* messages whose result was SENT */
    uint64_t tempfail;       /* ... TEMPFAIL */
    uint64_t permfail;       /* ... PERMFAIL */
    unsigned sessions;       /* sessions open now (any state) */
    unsigned busy;           /* of which with a message */
    size_t   queued;         /* messages waiting for a session */
} pmx_smtp_pool_stats_t;

void pmx_smtp_pool_stats(const pmx_smtp_pool_t *p, pmx_smtp_pool_stats_t *out);

#endif
