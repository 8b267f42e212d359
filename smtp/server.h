/*
 * One SMTP submission session as a state machine (docs/submission.md, RFC 5321, RFC 3207
 * STARTTLS, RFC 4954 AUTH, RFC 2920 PIPELINING): bytes from the client go in
 * with pmx_smtp_server_input, replies come out through the write callback.
 * It owns no socket, timer or lookup: whatever needs the outside world (TLS,
 * checking an API key, queueing a message, closing) is asked of the owner
 * through callbacks, and the owner answers with the *_done functions, at once
 * or later. That keeps the protocol readable top to bottom (one enum of
 * states, one switch) and lets tests/fuzz/fuzz_smtp_server.c drive it without
 * sockets.
 *
 * What it enforces on its own:
 * - command lines end with CRLF and are at most 512 octets (AUTH lines 12288,
 *   RFC 4954), printable ASCII only; otherwise "500 5.5.2";
 * - the command order (EHLO/HELO, then AUTH, then MAIL, RCPT..., DATA); MAIL
 *   without AUTH is "530 5.7.0"; AUTH before STARTTLS when auth_requires_tls
 *   is "530 5.7.0" and EHLO does not offer it (opts.no_auth: no AUTH at all);
 * - RCPT: what the rcpt callback refuses is "550 5.1.1" (or "451 4.3.0");
 * - DATA: the only end is CRLF "." CRLF after a CRLF; a bare CR or LF
 *   anywhere, or a NUL byte, makes the message "550 5.6.0" (read to the real
 *   end, never queued: no SMTP smuggling); over max_message_size is
 *   "552 5.3.4"; a line over 998 octets (RFC 5322 §2.1.1) is "500 5.5.2";
 *   a message is no longer kept once it cannot be accepted;
 * - message memory, when the owner gives the hold/room callbacks: the buffer
 *   grows only by what the owner grants, in PMX_SMTP_SERVER_HOLD_STEP steps;
 *   a refused step drops the buffer, the rest of the data is read and
 *   discarded, and the message is answered "452 4.3.1" at its end (unless a
 *   permanent reason above applies); MAIL with a SIZE= that room() refuses,
 *   and DATA when room() refuses the declared size (or the first step), are
 *   answered "452 4.3.1" at once;
 * - at most max_recipients RCPT ("452 4.5.3" after that);
 * - STARTTLS drops every byte the client sent after the command (RFC 3207 §4.2:
 *   nothing pipelined in clear text survives into TLS) and forgets EHLO and
 *   AUTH once TLS is up;
 * - 20 protocol errors (500-504 replies) in one session end it with "421";
 * - more than opts.junk_limit commands before AUTH end it with "421 4.7.0".
 *
 * Ownership and re-entrancy: callbacks are called from inside the functions
 * below; a callback may call the *_done functions at once (the session queues
 * the work and continues when the outer call returns). The session is freed
 * only by pmx_smtp_server_free, which the owner calls after the connection is
 * gone, never from inside a callback.
 */
#ifndef PMX_SMTP_SERVER_H
#define PMX_SMTP_SERVER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

#define PMX_SMTP_SERVER_MAX_RCPT    1000  /* docs/queue.md */
#define PMX_SMTP_SERVER_MAX_ERRORS  20    /* protocol errors before "421" */
/* Input the client may send ahead while a lookup or the queue is busy. */
#define PMX_SMTP_SERVER_MAX_PENDING (256 * 1024)
/* The message buffer's hold grows in steps of this many octets. */
#define PMX_SMTP_SERVER_HOLD_STEP   (64 * 1024)

typedef struct pmx_smtp_server pmx_smtp_server_t;

typedef struct {
    const char *hostname;           /* greeting and EHLO; copied */
    bool        starttls;           /* offer STARTTLS (a certificate is configured) */
    bool        auth_requires_tls;  /* AUTH only after STARTTLS */
    uint64_t    max_message_size;   /* octets of the message (dots unstuffed, CRLF) */
    size_t      max_recipients;     /* 0 = PMX_SMTP_SERVER_MAX_RCPT */
    /* Octets kept free in front of the message in its buffer, for the owner
     * to write what precedes it there (pmx_smtp_server_take_message). */
    size_t      msg_headroom;
    unsigned    junk_limit;         /* commands before AUTH, then "421 4.7.0"; 0 = no limit */
    /* Receiving for postmux itself (the [inbound] listener, docs/feedback.md):
     * AUTH is neither offered nor accepted ("502 5.5.1"), MAIL needs none,
     * and the null sender <> (bounces are sent from it) is accepted. */
    bool        no_auth;
} pmx_smtp_server_opts_t;

/* One accepted message, handed to the owner after DATA. */
typedef struct {
    const char        *mail_from;   /* the reverse-path, canonical (lib/addr) */
    const char *const *rcpts;       /* canonical forward-paths, duplicates removed */
    size_t             nrcpts;
    const char        *msg;         /* CRLF lines, dots unstuffed, no terminator */
    size_t             len;
} pmx_smtp_envelope_t;

typedef struct {
    /* Bytes for the client (replies). */
    void (*write)(void *arg, const char *data, size_t n);
    /*
     * "220 Ready to start TLS" has just been written: switch the connection
     * to TLS (after that reply is out) and call pmx_smtp_server_tls_done
     * when the handshake is over. Return -1 if TLS cannot start (the session
     * then ends).
     */
    int  (*starttls)(void *arg);
    /*
     * AUTH: check the password (an API key; the user name is ignored by
     * postmux and not passed). The bytes are wiped when this returns: copy
     * or hash them now. Answer with pmx_smtp_server_auth_done.
     */
    void (*auth)(void *arg, const char *password, size_t n);
    /* A complete, well-formed message: check it, queue it, answer with
     * pmx_smtp_server_message_done. env is valid until then. */
    void (*message)(void *arg, const pmx_smtp_envelope_t *env);
    /* The session is over: close the connection once the replies written so
     * far have been sent. No callback follows. */
    void (*close)(void *arg);
    /*
     * Optional (NULL = no limit), both or neither. hold: the message buffer
     * (headroom included) is to cover n octets in all; true = granted, false
     * = refused (the previous hold stays until the session drops the buffer).
     * n = 0: the buffer is gone, the hold is given back (never called from
     * pmx_smtp_server_free, nor for a buffer the owner took). room: would a
     * hold of n octets be granted now? (MAIL SIZE=, DATA; nothing is held.)
     */
    bool (*hold)(void *arg, uint64_t n);
    bool (*room)(void *arg, uint64_t n);
    /*
     * Optional (NULL = every well-formed MAIL is "250 2.1.0 Ok"): a new
     * transaction from an authenticated client, e.g. to check that its
     * credentials are still good. Answer with pmx_smtp_server_mail_done;
     * input is held until then. mail_from is valid until then.
     */
    void (*mail)(void *arg, const char *mail_from);
    /*
     * Optional (NULL = every well-formed RCPT is accepted): may this
     * forward-path (canonical, lib/addr) receive mail? 250 = yes, 451 = not
     * now ("451 4.3.0 ... try again later"), anything else = "550 5.1.1".
     * Synchronous: the answer must not need a lookup.
     */
    int  (*rcpt)(void *arg, const char *rcpt);
} pmx_smtp_server_cbs_t;

/* cbs is copied. Nothing is written until pmx_smtp_server_start. */
pmx_smtp_server_t *pmx_smtp_server_new(const pmx_smtp_server_opts_t *opts,
                                       const pmx_smtp_server_cbs_t *cbs, void *arg);
/* Writes the greeting "220 HOST ESMTP postmux". */
void pmx_smtp_server_start(pmx_smtp_server_t *s);
/*
 * Refuses the session instead: writes "421 4.7.0 HOST <text>" (code 421, or
 * 554 for a permanent refusal) and closes.
 */
void pmx_smtp_server_refuse(pmx_smtp_server_t *s, int code, const char *enhanced, const char *text);
/* Bytes received from the client (clear text, or decrypted once TLS is up). */
void pmx_smtp_server_input(pmx_smtp_server_t *s, const char *data, size_t n);

/*
 * The answer to the auth callback: 235 = authenticated; 421 = the client is
 * cut off (the reply is written and the session closes); anything else
 * (535, 454, ...) is written and the client may try again.
 */
void pmx_smtp_server_auth_done(pmx_smtp_server_t *s, int code, const char *enhanced,
                               const char *text);
/*
 * From inside the message callback: the owner takes the message's buffer
 * instead of copying it. *buf gets the storage (the owner frees it), the
 * message is at buf->data + *off (env->msg, env->len octets, followed by a
 * NUL), and the opts.msg_headroom octets before it are the owner's to use.
 * The hold granted for it becomes the owner's too: the session forgets it
 * without calling hold(0). Anywhere else *buf is empty and *off 0.
 */
void pmx_smtp_server_take_message(pmx_smtp_server_t *s, pmx_buf_t *buf, size_t *off);
/* The answer to the message callback (250 queued, 4xx, 5xx; 421 also closes).
 * The transaction is over either way. */
void pmx_smtp_server_message_done(pmx_smtp_server_t *s, int code, const char *enhanced,
                                  const char *text);
/*
 * The answer to the mail callback: 250 = the transaction starts (give
 * "2.1.0", "Ok"); 535 = the credentials are no longer valid: refused, and
 * the client must AUTH again; 421 = refused and closed; anything else is
 * a refusal the client may retry.
 */
void pmx_smtp_server_mail_done(pmx_smtp_server_t *s, int code, const char *enhanced,
                               const char *text);
/* Like pmx_smtp_server_drain, with "421 <enhanced> HOST <text>" as the goodbye
 * (e.g. the session's time is up). */
void pmx_smtp_server_expire(pmx_smtp_server_t *s, const char *enhanced, const char *text);
/* The TLS handshake finished: ok = TLS is up, else the session ends (no
 * reply can be sent on a failed handshake). */
void pmx_smtp_server_tls_done(pmx_smtp_server_t *s, bool ok);
/* The client was silent too long: "421 4.4.2 ... timeout" and close. */
void pmx_smtp_server_timeout(pmx_smtp_server_t *s);
/*
 * The worker is stopping: a session between transactions gets "421 4.3.2"
 * and closes now; one inside a transaction (MAIL given, or a message being
 * received or queued) finishes it and answers every later command "421 4.3.2".
 */
void pmx_smtp_server_drain(pmx_smtp_server_t *s);

/* Counts lines the client has completed (commands and message lines): the
 * owner restarts its inactivity timer when this moves. */
uint64_t pmx_smtp_server_progress(const pmx_smtp_server_t *s);
/* The owner's asynchronous request is in flight (auth or message). */
bool pmx_smtp_server_is_waiting(const pmx_smtp_server_t *s);
/* The session has ended (close was called). */
bool pmx_smtp_server_is_closed(const pmx_smtp_server_t *s);
/* TLS is up. */
bool pmx_smtp_server_is_tls(const pmx_smtp_server_t *s);
/* AUTH succeeded (and TLS did not start since). */
bool pmx_smtp_server_is_authed(const pmx_smtp_server_t *s);

void pmx_smtp_server_free(pmx_smtp_server_t *s);

#endif
