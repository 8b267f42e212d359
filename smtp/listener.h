/*
 * An SMTP listener in a worker, for both kinds postmuxd runs: SMTP submission
 * (submission/session.h, docs/submission.md) and the [inbound] listener
 * (inbound/listener.h, docs/feedback.md "Inbound SMTP"). What the two share
 * is here, once; what they do with a session is the kind's.
 *
 * The listener accepts on the listening socket the supervisor opened (every
 * worker accepts on the same socket; a connection another worker took is
 * EAGAIN here and dropped quietly) and runs one session per connection: a
 * TLS-capable stream (smtp/tls.h), the protocol state machine
 * (smtp/server.h), an inactivity timer, and the timers the kind adds. It
 * writes the replies, switches to TLS on STARTTLS, closes on the state
 * machine's word, and ends a session that completes no line for idle_ms
 * ("421 4.4.2", closed PMX_SMTP_LISTENER_CLOSE_GRACE_MS later whatever it
 * does). It enforces the per-worker connection limits it is given (admitted
 * sessions in all, and per client address: "421 4.7.0"), then asks the kind's
 * admit callback for the kind's own. It keeps the session list, drains
 * (stop accepting; sessions finish the transaction they are in) and stops
 * (close everything).
 *
 * Log lines start with opts.name ("inbound", "submission"): "NAME accept
 * failed", "NAME session", "NAME session closed", "NAME timeout", "NAME TLS
 * handshake failed", "NAME STARTTLS failed", "NAME refused a connection",
 * "NAME draining", "NAME drained".
 *
 * A kind's session is a struct whose first member is pmx_smtp_session_t; the
 * listener allocates opts.session_size zeroed octets for it. Every server
 * callback of the kind gets that session as arg.
 *
 * Ownership: a session is freed by the listener once its stream and every
 * timer have closed (the freed callback runs just before). The listener is
 * freed only by pmx_smtp_listener_free, once pmx_smtp_listener_idle says
 * nothing of it is open; the released callback says when that may have
 * become true. Callbacks run from the loop, never from inside a
 * pmx_smtp_listener_* call, except drain's done (at once when no session is
 * open) and the closing callback (from pmx_smtp_session_close and stop).
 */
#ifndef PMX_SMTP_LISTENER_H
#define PMX_SMTP_LISTENER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>
#include <uv.h>

#include "smtp/server.h"
#include "smtp/tls.h"

#define PMX_SMTP_LISTENER_CLIENT_MAX     64      /* a client address key, NUL included */
#define PMX_SMTP_LISTENER_CLOSE_GRACE_MS 10000   /* after "421 timeout", to let the reply out */
#define PMX_SMTP_LISTENER_TIMERS         2       /* timers a kind may add to a session */

typedef struct pmx_smtp_listener pmx_smtp_listener_t;
typedef struct pmx_smtp_session pmx_smtp_session_t;

struct pmx_smtp_session {
    /* For the kind to read. */
    pmx_smtp_listener_t *l;
    uint64_t             id;          /* 1, 2, ... per listener */
    pmx_smtp_stream_t   *stream;
    pmx_smtp_server_t   *smtp;
    char                 client[PMX_SMTP_LISTENER_CLIENT_MAX];   /* address key, or "-" */
    uint64_t             started;     /* uv_now() at accept */
    bool                 counted;     /* admitted: counts toward the limits, until closing */
    bool                 closing;
    /* The listener's own. */
    pmx_smtp_session_t  *prev, *next;
    uv_timer_t           idle;
    uv_timer_t          *timers[PMX_SMTP_LISTENER_TIMERS];
    int                  ntimers;
    int                  handles;     /* stream + timers not yet closed */
    bool                 close_when_drained;
    bool                 timed_out;
    uint64_t             progress;
};

typedef struct {
    const char            *name;          /* the first word of every log line */
    size_t                 session_size;  /* the kind's session (pmx_smtp_session_t first) */
    pmx_smtp_server_opts_t server;        /* every session's (.starttls: tls != NULL) */
    pmx_smtp_tls_ctx_t    *tls;           /* STARTTLS; owned by the listener; NULL = none */
    uint64_t               idle_ms;       /* without a complete line: "421 4.4.2" */
    int                    max_sessions;     /* admitted sessions; 0 = not checked here */
    int                    max_per_address;  /* ... from one client address; 0 = same */
    /* The client address key of a peer (limits, logs); out has
     * PMX_SMTP_LISTENER_CLIENT_MAX octets. */
    void                 (*client_key)(const struct sockaddr *sa, char *out);
} pmx_smtp_listener_opts_t;

typedef struct {
    /* The kind's server callbacks; write, starttls and close are the
     * listener's (whatever is given there is ignored). */
    pmx_smtp_server_cbs_t server;
    /* Optional. A session was allocated (before accept): add timers. */
    void (*created)(pmx_smtp_session_t *s);
    /* Optional. Accepted, client and started known, idle timer running. */
    void (*accepted)(pmx_smtp_session_t *s);
    /* Optional. After the listener's limits: true = admitted, false = the
     * kind refused it (pmx_smtp_server_refuse). */
    bool (*admit)(pmx_smtp_session_t *s);
    /* Optional. The session closes (once; s->counted still as it was). */
    void (*closing)(pmx_smtp_session_t *s);
    /* Optional. Every handle closed: s and its server are freed after this. */
    void (*freed)(pmx_smtp_session_t *s);
    /* Optional. The listening handle or a session closed: the owner may
     * check pmx_smtp_listener_idle (and free). The listener's last word. */
    void (*released)(void *arg);
} pmx_smtp_listener_cbs_t;

/* opts (strings borrowed; opts->tls owned from here on) and cbs are copied. */
pmx_smtp_listener_t *pmx_smtp_listener_new(uv_loop_t *loop, const pmx_smtp_listener_opts_t *opts,
                                           const pmx_smtp_listener_cbs_t *cbs, void *arg);
/* Starts accepting on fd: 0, or a libuv error (then stop it). */
int  pmx_smtp_listener_listen(pmx_smtp_listener_t *l, int fd);
/*
 * Stops accepting (this process's copy of the socket only: the others keep
 * accepting), lets every session finish the transaction it is in (new
 * commands get "421 4.3.2"), then calls done(arg) once.
 */
void pmx_smtp_listener_drain(pmx_smtp_listener_t *l, void (*done)(void *arg), void *arg);
/* Closes the socket and every session, frees the TLS context; no drain
 * callback after this. */
void pmx_smtp_listener_stop(pmx_smtp_listener_t *l);
/* Stopped and nothing open: may be freed. */
bool pmx_smtp_listener_idle(const pmx_smtp_listener_t *l);
void pmx_smtp_listener_free(pmx_smtp_listener_t *l);
/* Sessions allocated and not freed yet (admitted or not). */
size_t pmx_smtp_listener_sessions(const pmx_smtp_listener_t *l);
void  *pmx_smtp_listener_arg(const pmx_smtp_listener_t *l);
pmx_smtp_tls_ctx_t *pmx_smtp_listener_tls(const pmx_smtp_listener_t *l);

/* From the created callback: t is the session's, closed with it; its
 * data is s. */
void pmx_smtp_session_add_timer(pmx_smtp_session_t *s, uv_timer_t *t);
/* Closes the session now (once): the closing callback, then the stream and
 * timers; freed when they have closed. */
void pmx_smtp_session_close(pmx_smtp_session_t *s);

#endif
