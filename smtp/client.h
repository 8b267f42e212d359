/*
 * One SMTP client session to the relay (docs/delivery.md Relay): connect, EHLO (HELO
 * fallback), STARTTLS or implicit TLS, AUTH PLAIN/LOGIN, then any number of
 * transactions (RSET between them), each pipelined when the relay offers
 * PIPELINING, and QUIT. The protocol is one explicit state machine: an enum of
 * states and one switch over them in client.c (pmx_smtp_session_on_reply), the
 * way OpenSMTPD's mta_session.c reads.
 *
 * This header also defines what a caller hands in and gets back (relay
 * settings, envelope, result). Most callers want smtp/pool.h, which keeps a
 * pool of these sessions; the session functions are for the pool.
 */
#ifndef PMX_SMTP_CLIENT_H
#define PMX_SMTP_CLIENT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>
#include <uv.h>

#include "smtp/reply.h"
#include "smtp/tls.h"

/* Defaults used for a 0 in the matching pmx_smtp_relay_t field. */
#define PMX_SMTP_DEFAULT_SESSIONS           16
#define PMX_SMTP_DEFAULT_CONNECT_TIMEOUT_MS 30000ull    /* TCP connect, TLS handshake */
#define PMX_SMTP_DEFAULT_COMMAND_TIMEOUT_MS 30000ull    /* each reply but the one below */
#define PMX_SMTP_DEFAULT_DATA_TIMEOUT_MS    300000ull   /* sending the body + reply to "." */
#define PMX_SMTP_DEFAULT_IDLE_TIMEOUT_MS    30000ull    /* an unused session is QUIT */

/* The relay and how to talk to it ([relay] of postmux.conf(5), plus timeouts for tests). */
typedef struct {
    const char    *host;              /* name or IP literal; also the TLS name checked and SNI */
    int            port;
    pmx_tls_mode_t tls;               /* PMX_TLS_NONE | PMX_TLS_STARTTLS | PMX_TLS_IMPLICIT */
    bool           tls_verify;        /* verify the chain and the host name */
    const char    *ca_file;           /* NULL or "": system store only */
    const char    *auth_user;         /* NULL or "": no AUTH */
    const char    *auth_password;
    const char    *helo_name;         /* NULL or "": this machine's host name */
    int            max_sessions;      /* connections_per_worker; 0 = 16 */
    /* An egress pool (docs/delivery.md "Egress pools"): when set, each connection
     * first binds the source address this gives for the family of the address
     * it connects to; -1 (reason in why) skips that address. NULL: the kernel
     * picks. source_arg must outlive every session. */
    int          (*source)(void *arg, int family, struct sockaddr_storage *out, char *why,
                           size_t whylen);
    void          *source_arg;
    uint64_t       connect_timeout_ms;
    uint64_t       command_timeout_ms;
    uint64_t       data_timeout_ms;
    uint64_t       idle_timeout_ms;
    /* Direct delivery (routing/mxroute.h): the addresses to try, in order
     * (naddrs 0 = resolve host); a greeting other than 220, or no greeting
     * in time, moves on to the next one as a failed connect does; and at most
     * messages_per_connection transactions per session (0 = no limit). host
     * is then only a name for SNI and logs. */
    const struct sockaddr_storage *addrs;
    int            naddrs;
    bool           next_on_greeting;
    int            messages_per_connection;
} pmx_smtp_relay_t;

/* Envelope flags: force an extension the client would otherwise detect itself. */
#define PMX_SMTP_ENV_8BITMIME  (1u << 0)  /* BODY=8BITMIME (also set when data has 8-bit bytes) */
#define PMX_SMTP_ENV_SMTPUTF8  (1u << 1)  /* SMTPUTF8 (also set for a non-ASCII address);
                                             set it when headers carry raw UTF-8 (RFC 6532) */

typedef struct {
    const char        *mail_from;     /* "local@domain", or "" for the null sender <> */
    const char *const *rcpts;         /* nrcpts addresses "local@domain", no brackets; each
                                         RFC 5321 Mailbox (lib/addr.h) — one that is not,
                                         or is non-ASCII for a relay without SMTPUTF8,
                                         fails alone (PERMFAIL, no RCPT TO), see below */
    size_t             nrcpts;        /* at least 1 */
    unsigned           flags;         /* PMX_SMTP_ENV_* */
    /* Header lines written before data, as they are (CRLF-terminated, ASCII, no line
     * starting with '.'): what differs per transaction while data is shared, e.g.
     * X-Postmux-Ref (docs/delivery.md). NULL/0 = none. Borrowed like data. */
    const char        *head;
    size_t             head_len;
} pmx_smtp_envelope_t;

typedef enum {
    PMX_SMTP_SENT = 0,     /* 2xx: the relay took responsibility */
    PMX_SMTP_TEMPFAIL,     /* 4xx, timeout, connection lost, TLS or AUTH failure: defer */
    PMX_SMTP_PERMFAIL,     /* 5xx, or a local permanent reason (SIZE, SMTPUTF8): bounce */
} pmx_smtp_status_t;

typedef struct {
    pmx_smtp_status_t status;
    int         code;          /* the relay's reply code; 0 when the reason is local */
    const char *enhanced;      /* "5.1.1" or "" */
    const char *response;      /* the full reply text (lines joined by '\n'), or the local
                                  reason, e.g. "timeout after 30000 ms waiting for the
                                  reply to RCPT TO" — what goes into last_response */
    const char *after;         /* what it answered: "MAIL FROM", "RCPT TO", "DATA",
                                  "end of data", "RSET", "connect", "STARTTLS", ... */
} pmx_smtp_outcome_t;

typedef struct {
    pmx_smtp_status_t         status;   /* SENT if any recipient was sent, else TEMPFAIL if
                                           any was deferred, else PERMFAIL */
    pmx_smtp_outcome_t        message;  /* the reply (or reason) that ended the transaction */
    const pmx_smtp_outcome_t *rcpts;    /* one per envelope recipient, in envelope order */
    size_t                    nrcpts;
} pmx_smtp_result_t;

/*
 * Called exactly once per message. res and every string in it belong to the
 * client and are valid only during the call: copy what you keep.
 */
typedef void (*pmx_smtp_send_cb)(void *arg, const pmx_smtp_result_t *res);

/*
 * A message on its way: the envelope struct is copied; its strings, the rcpts
 * array and data are borrowed from the caller until cb has run.
 */
typedef struct pmx_smtp_msg {
    pmx_smtp_envelope_t  env;
    const char          *data;        /* CRLF line endings, not dot-stuffed */
    size_t               len;
    pmx_smtp_send_cb     cb;
    void                *arg;
    bool                 retried;     /* already handed back once by a stale session */
    struct pmx_smtp_msg *next;        /* the pool's queue */
} pmx_smtp_msg_t;

/* Ends msg with the same local outcome for every recipient, calls its cb, frees it. */
void pmx__smtp_msg_fail(pmx_smtp_msg_t *msg, pmx_smtp_status_t status, const char *after,
                        const char *reason);

typedef struct pmx_smtp_session pmx_smtp_session_t;

/* What a session shares with its owner (the pool); all of it outlives the session. */
typedef struct {
    uv_loop_t              *loop;
    const pmx_smtp_relay_t *relay;    /* defaults filled in, helo_name resolved */
    pmx_smtp_tls_ctx_t     *tls_ctx;  /* NULL when relay->tls is PMX_TLS_NONE */
    void                   *owner;
    /* The session can take a message now (pmx_smtp_session_start): it is idle,
     * or (PIPELINING) its current message's final "." is written and the next
     * one's MAIL FROM, RCPT TO and DATA may follow it before its reply. */
    void (*on_ready)(void *owner, pmx_smtp_session_t *s);
    /*
     * The session is gone: called once, from the loop, after its handles are
     * closed; s is freed when this returns. was_ready: it got as far as being
     * ready at least once. reason: why it ended, NULL for an orderly QUIT or
     * idle close; where: the step it was in ("connect", "TLS handshake",
     * "STARTTLS", "AUTH", "RCPT TO", ...). unsent: a message it had taken but whose transaction never
     * got a single reply on a reused connection (the relay had dropped the
     * idle connection), or a next message whose commands followed an end of
     * data that never got its reply, handed back untouched so the owner can
     * send it on another session; its cb was not called. Otherwise NULL.
     */
    void (*on_closed)(void *owner, pmx_smtp_session_t *s, bool was_ready, const char *reason,
                      const char *where, pmx_smtp_msg_t *unsent);
} pmx_smtp_session_env_t;

/* Starts a session (resolve, connect, greet...); on_ready or on_closed follows. */
pmx_smtp_session_t *pmx_smtp_session_new(const pmx_smtp_session_env_t *env);
/* True while the session waits for a message (state ready). */
bool pmx_smtp_session_is_ready(const pmx_smtp_session_t *s);
/* True while the current message's end of data awaits its reply and the next
 * message may follow it (PIPELINING, none taken yet, no QUIT due). */
bool pmx_smtp_session_can_take_next(const pmx_smtp_session_t *s);
/* True once the session is past connecting/greeting/TLS/AUTH (ready or busy). */
bool pmx_smtp_session_is_established(const pmx_smtp_session_t *s);
/* True while the session is alive and not yet established. */
bool pmx_smtp_session_is_connecting(const pmx_smtp_session_t *s);
/*
 * Starts msg on a ready session, or (pmx_smtp_session_can_take_next) right
 * behind the current transaction's end of data as one pipelined group, its
 * replies read after the current one's. Returns 0 when the transaction started
 * (the session owns msg until its cb ran, or hands it back through on_closed's
 * unsent if the session closes before msg got a reply), or -1 when msg cannot be sent on this
 * relay for a local reason (larger than SIZE, the sender or a header needs
 * SMTPUTF8, or no recipient can be sent): then msg's cb has already been
 * called with PERMFAIL, msg is freed and the session is still ready. (On a
 * session that is not ready: TEMPFAIL the same way.) A recipient that cannot
 * be sent while others can gets its own PERMFAIL outcome (code 0, enhanced
 * "5.1.3" or "5.6.7", after "RCPT TO") and the transaction goes on without it.
 */
int  pmx_smtp_session_start(pmx_smtp_session_t *s, pmx_smtp_msg_t *msg);
/* QUIT now if ready, else once the current message (and a next one already
 * taken behind it) is done. */
void pmx_smtp_session_quit(pmx_smtp_session_t *s);
/* Closes at once: the current message, if any, gets TEMPFAIL with reason; a
 * next one taken behind it is handed back (on_closed's unsent). */
void pmx_smtp_session_abort(pmx_smtp_session_t *s, const char *reason);

#endif
