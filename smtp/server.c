/*
 * The submission session state machine; see server.h. Input is collected in
 * one buffer and consumed by run(): one switch on the state decides what the
 * next bytes are (a command line, a SASL response, message data) or that they
 * must wait (a lookup in flight) or be dropped (STARTTLS, closed). Replies
 * collect in an output buffer that is handed to the owner once per call, so
 * a pipelined group of commands is answered with one write (RFC 2920 §3.1).
 *
 * DATA is read as a byte stream, not as lines, so a line of any length costs
 * no buffering: each byte is either part of a line (stored while the message
 * is still acceptable), a CR/LF, or the dot at the start of a line. Only
 * CRLF counts as a line end, so "<LF>.<LF>", "<CR><LF>.<LF>" and friends
 * never end the message: they mark it bad, and it is refused at the real end.
 */
#include "smtp/server.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/addr.h"
#include "lib/buf.h"
#include "lib/mem.h"
#include "lib/text.h"
#include "smtp/command.h"
#include "smtp/reply.h"

typedef enum {
    ST_COMMAND,     /* reading command lines */
    ST_AUTH_PLAIN,  /* AUTH PLAIN: reading the response to "334 " */
    ST_AUTH_USER,   /* AUTH LOGIN: reading the user name */
    ST_AUTH_PASS,   /* AUTH LOGIN: reading the password */
    ST_DATA,        /* reading the message */
    ST_WAIT_AUTH,   /* the owner checks the key; input is held */
    ST_WAIT_QUEUE,  /* the owner checks and queues the message; input is held */
    ST_WAIT_MAIL,   /* the owner re-checks the credentials for MAIL; input is held */
    ST_WAIT_TLS,    /* TLS handshake; stray clear text is dropped */
    ST_CLOSED,      /* the session is over; input is ignored */
} state_t;

/* Why a received message cannot be accepted, worst first. */
typedef enum { BAD_NONE = 0, BAD_NO_MEMORY, BAD_LONG_LINE, BAD_TOO_BIG, BAD_NUL, BAD_EOL } bad_t;

struct pmx_smtp_server {
    pmx_smtp_server_opts_t opts;
    pmx_smtp_server_cbs_t  cbs;
    void                  *arg;
    char                  *hostname;
    state_t                state;

    pmx_buf_t in;            /* received, not yet consumed from in_off */
    size_t    in_off;
    bool      discarding;    /* an over-long line: drop bytes up to its LF */
    pmx_buf_t out;           /* replies not yet handed to the owner */
    int       depth;         /* nesting of public calls (callbacks re-enter) */
    bool      close_wanted;
    bool      close_called;

    bool      helo;          /* HELO or EHLO seen (since TLS started) */
    bool      ehlo;
    bool      tls;
    bool      authed;
    bool      draining;
    unsigned  errors;        /* protocol errors (500-504) */
    unsigned  junk;          /* commands before AUTH (opts.junk_limit) */
    char     *pending_from;  /* MAIL FROM waiting for the owner's mail_done */
    char      end_enh[8];    /* the 421 of a drain or an expired session */
    char      end_text[96];
    uint64_t  progress;

    /* The transaction. */
    char     *mail_from;     /* NULL = no MAIL yet */
    uint64_t  declared;      /* MAIL's SIZE=, 0 when not given */
    char    **rcpts;
    size_t    nrcpts, rcap;

    /* DATA reading. */
    pmx_buf_t msg;           /* opts.msg_headroom free octets, then the message */
    uint64_t  held;          /* octets the owner granted through hold() */
    bool      d_bol;         /* at the start of a line (after CRLF) */
    bool      d_dot;         /* a '.' started this line */
    bool      d_cr;          /* the previous byte was CR */
    bool      d_dot_cr;      /* ... and the line so far was "." */
    size_t    d_line;        /* 1-based line number */
    size_t    d_line_len;    /* octets of this line so far (stuffing dot not counted) */
    uint64_t  d_size;        /* octets of the message (CRLF counted) */
    bad_t     d_bad;
    size_t    d_bad_line;
};

/* ---- output ---------------------------------------------------------------- */

static void reply(pmx_smtp_server_t *s, int code, const char *enh, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void reply(pmx_smtp_server_t *s, int code, const char *enh, const char *fmt, ...)
{
    pmx_buf_t text = PMX_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    pmx_buf_vappendf(&text, fmt, ap);
    va_end(ap);
    pmx_smtp_reply_format(&s->out, code, enh, pmx_buf_cstr(&text));
    pmx_buf_free(&text);
}

static void flush(pmx_smtp_server_t *s)
{
    if (s->out.len == 0) return;
    if (!s->close_called) s->cbs.write(s->arg, s->out.data, s->out.len);
    pmx_buf_reset(&s->out);
}

/* Ends the session: replies written so far still go out, then close. */
static void finish(pmx_smtp_server_t *s)
{
    s->state = ST_CLOSED;
    s->close_wanted = true;
    s->in_off = s->in.len;
}

/* A protocol error reply (500-504, and 530 for MAIL without AUTH); too many
 * of them end the session. */
static void proto_error(pmx_smtp_server_t *s, int code, const char *enh, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void proto_error(pmx_smtp_server_t *s, int code, const char *enh, const char *fmt, ...)
{
    pmx_buf_t text = PMX_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    pmx_buf_vappendf(&text, fmt, ap);
    va_end(ap);
    pmx_smtp_reply_format(&s->out, code, enh, pmx_buf_cstr(&text));
    pmx_buf_free(&text);
    if (++s->errors >= PMX_SMTP_SERVER_MAX_ERRORS) {
        reply(s, 421, "4.7.0", "%s Too many errors; closing connection", s->hostname);
        finish(s);
    }
}

/* ---- message memory (see hold and room in server.h) -------------------------- */

/* The hold covering total octets of buffer, asked for in steps. */
static bool msg_hold(pmx_smtp_server_t *s, uint64_t total)
{
    if (!s->cbs.hold || total <= s->held) return true;
    uint64_t want = (total + PMX_SMTP_SERVER_HOLD_STEP - 1) / PMX_SMTP_SERVER_HOLD_STEP *
                    PMX_SMTP_SERVER_HOLD_STEP;
    if (!s->cbs.hold(s->arg, want)) return false;
    s->held = want;
    return true;
}

/* Frees the message buffer and gives its hold back. */
static void msg_drop(pmx_smtp_server_t *s)
{
    pmx_buf_free(&s->msg);
    if (s->held && s->cbs.hold) s->cbs.hold(s->arg, 0);
    s->held = 0;
}

/* Would a message of n octets find memory now? */
static bool msg_room(const pmx_smtp_server_t *s, uint64_t n)
{
    return !s->cbs.room || s->cbs.room(s->arg, n + s->opts.msg_headroom);
}

/* ---- the transaction ------------------------------------------------------------ */

static void transaction_reset(pmx_smtp_server_t *s)
{
    free(s->mail_from);
    s->mail_from = NULL;
    s->declared = 0;
    for (size_t i = 0; i < s->nrcpts; i++) free(s->rcpts[i]);
    s->nrcpts = 0;
    msg_drop(s);
}

/* Between transactions while draining: say goodbye now rather than wait. */
static bool drain_now(pmx_smtp_server_t *s)
{
    if (!s->draining || s->mail_from || s->state == ST_CLOSED) return false;
    if (s->end_text[0]) reply(s, 421, s->end_enh, "%s %s", s->hostname, s->end_text);
    else reply(s, 421, "4.3.2", "%s Service shutting down; closing connection", s->hostname);
    finish(s);
    return true;
}

/* The Mailbox inside a path (RFC 5321 §4.1.2, lib/addr's envelope grammar,
 * the one the relay client sends with); NULL + reason when it is not one. */
static char *path_address(const pmx_smtp_path_t *p, char *why, size_t whylen)
{
    char *addr = NULL;
    if (pmx_addr_parse_envelope(p->addr, p->addr_len, &addr, why, whylen) != 0) return NULL;
    return addr;
}

/* SIZE=n: n must be digits; over the limit is refused before any data. */
static int mail_param(pmx_smtp_server_t *s, const pmx_smtp_param_t *p)
{
    if (pmx_smtp_param_is(p, "SIZE")) {
        uint64_t v = 0;
        if (!p->value || p->value_len > 19) goto bad;
        for (size_t i = 0; i < p->value_len; i++) {
            if (p->value[i] < '0' || p->value[i] > '9') goto bad;
            v = v * 10 + (uint64_t)(p->value[i] - '0');
        }
        if (v > s->opts.max_message_size) {
            reply(s, 552, "5.3.4", "Message size exceeds fixed limit of %llu bytes",
                  (unsigned long long)s->opts.max_message_size);
            return -1;
        }
        if (!msg_room(s, v)) {
            reply(s, 452, "4.3.1", "Insufficient system storage; try again later");
            return -1;
        }
        s->declared = v;
        return 0;
    }
    if (pmx_smtp_param_is(p, "BODY")) {
        if (p->value && p->value_len == 4 && strncasecmp(p->value, "7BIT", 4) == 0) return 0;
        if (p->value && p->value_len == 8 && strncasecmp(p->value, "8BITMIME", 8) == 0) return 0;
        goto bad;
    }
    if (pmx_smtp_param_is(p, "AUTH")) return 0;   /* RFC 4954 §5: accepted, not used */
    reply(s, 555, "5.5.4", "Unsupported option: %.*s", (int)p->key_len, p->key);
    return -1;
bad:
    proto_error(s, 501, "5.5.4", "Bad parameter value");
    return -1;
}

/* A new transaction: the owner may re-check the credentials first
 * (pmx_smtp_server_mail_done answers). */
static void mail_request(pmx_smtp_server_t *s, char *addr)
{
    s->pending_from = addr;
    s->state = ST_WAIT_MAIL;
    s->cbs.mail(s->arg, addr);   /* may answer at once: nothing after this */
}

static void cmd_mail(pmx_smtp_server_t *s, const pmx_smtp_cmd_t *c)
{
    if (!s->helo) return proto_error(s, 503, "5.5.1", "Error: send HELO/EHLO first");
    if (!s->authed && !s->opts.no_auth)
        return proto_error(s, 530, "5.7.0", "Authentication required");
    if (s->mail_from) return proto_error(s, 503, "5.5.1", "Error: nested MAIL command");
    pmx_smtp_path_t p;
    char why[200];
    if (pmx_smtp_path_parse(c->arg, c->arg_len, "FROM", &p, why, sizeof why) < 0)
        return proto_error(s, 501, "5.5.4", "Syntax: MAIL FROM:<address> (%s)", why);
    if (p.addr_len == 0 && !s->opts.no_auth)
        return reply(s, 553, "5.1.7",
                     "A sender address is required (the null sender <> is not accepted)");
    for (size_t i = 0; i < p.nparams; i++)
        if (mail_param(s, &p.params[i]) < 0) {
            s->declared = 0;
            return;
        }
    /* The null sender (opts.no_auth only): what bounces come from. */
    char *addr = p.addr_len == 0 ? pmx_xstrdup("") : path_address(&p, why, sizeof why);
    if (!addr) {
        s->declared = 0;
        return reply(s, 553, "5.1.7", "Bad sender address syntax: %s", why);
    }
    if (s->cbs.mail) return mail_request(s, addr);
    s->mail_from = addr;
    reply(s, 250, "2.1.0", "Ok");
}

static void cmd_rcpt(pmx_smtp_server_t *s, const pmx_smtp_cmd_t *c)
{
    if (!s->mail_from) return proto_error(s, 503, "5.5.1", "Error: need MAIL command");
    pmx_smtp_path_t p;
    char why[200];
    if (pmx_smtp_path_parse(c->arg, c->arg_len, "TO", &p, why, sizeof why) < 0)
        return proto_error(s, 501, "5.5.4", "Syntax: RCPT TO:<address> (%s)", why);
    if (p.nparams)
        return reply(s, 555, "5.5.4", "Unsupported option: %.*s", (int)p.params[0].key_len,
                     p.params[0].key);
    if (p.addr_len == 0) return reply(s, 553, "5.1.3", "A recipient address is required");
    char *addr = path_address(&p, why, sizeof why);
    if (!addr) return reply(s, 553, "5.1.3", "Bad recipient address syntax: %s", why);
    int ok = s->cbs.rcpt ? s->cbs.rcpt(s->arg, addr) : 250;
    if (ok != 250) {
        if (ok == 451)
            reply(s, 451, "4.3.0", "<%s>: Cannot check the recipient now; try again later", addr);
        else
            reply(s, 550, "5.1.1", "<%s>: Recipient address rejected: no such mailbox here", addr);
        free(addr);
        return;
    }
    for (size_t i = 0; i < s->nrcpts; i++) {
        if (strcmp(s->rcpts[i], addr) == 0) {
            free(addr);
            return reply(s, 250, "2.1.5", "Ok");
        }
    }
    if (s->nrcpts >= s->opts.max_recipients) {
        free(addr);
        return reply(s, 452, "4.5.3", "Too many recipients (at most %zu per message)",
                     s->opts.max_recipients);
    }
    if (s->nrcpts == s->rcap) {
        s->rcap = s->rcap ? s->rcap * 2 : 8;
        s->rcpts = pmx_xrealloc(s->rcpts, s->rcap * sizeof *s->rcpts);
    }
    s->rcpts[s->nrcpts++] = addr;
    reply(s, 250, "2.1.5", "Ok");
}

static void cmd_data(pmx_smtp_server_t *s, const pmx_smtp_cmd_t *c)
{
    if (!s->mail_from) return proto_error(s, 503, "5.5.1", "Error: need MAIL command");
    if (s->nrcpts == 0) return reply(s, 554, "5.5.1", "Error: no valid recipients");
    if (c->arg_len) return proto_error(s, 501, "5.5.4", "Syntax: DATA");
    /* Memory for the declared size (or the first step) now, else no 354. */
    msg_drop(s);
    if (!msg_room(s, s->declared) || !msg_hold(s, s->opts.msg_headroom + 1))
        return reply(s, 452, "4.3.1", "Insufficient system storage; try again later");
    reply(s, 354, NULL, "End data with <CR><LF>.<CR><LF>");
    s->state = ST_DATA;
    pmx_buf_reserve(&s->msg, s->opts.msg_headroom);
    memset(s->msg.data, 0, s->opts.msg_headroom + 1);
    s->msg.len = s->opts.msg_headroom;
    s->d_bol = true;
    s->d_dot = s->d_cr = s->d_dot_cr = false;
    s->d_line = 1;
    s->d_line_len = 0;
    s->d_size = 0;
    s->d_bad = BAD_NONE;
    s->d_bad_line = 0;
}

/* ---- EHLO, STARTTLS, AUTH ------------------------------------------------------ */

static bool auth_offered(const pmx_smtp_server_t *s)
{
    return s->tls || !s->opts.auth_requires_tls;
}

static void cmd_ehlo(pmx_smtp_server_t *s, const pmx_smtp_cmd_t *c, bool extended)
{
    if (c->arg_len == 0)
        return proto_error(s, 501, "5.5.4", "Syntax: %s hostname", extended ? "EHLO" : "HELO");
    transaction_reset(s);
    s->helo = true;
    s->ehlo = extended;
    if (!extended) return reply(s, 250, NULL, "%s", s->hostname);
    pmx_buf_t t = PMX_BUF_INIT;
    pmx_buf_appendf(&t, "%s\nPIPELINING\nSIZE %llu\n", s->hostname,
                    (unsigned long long)s->opts.max_message_size);
    if (s->opts.starttls && !s->tls) pmx_buf_append_str(&t, "STARTTLS\n");
    if (auth_offered(s) && !s->opts.no_auth) pmx_buf_append_str(&t, "AUTH PLAIN LOGIN\n");
    pmx_buf_append_str(&t, "8BITMIME\nENHANCEDSTATUSCODES");
    pmx_smtp_reply_format(&s->out, 250, NULL, t.data);
    pmx_buf_free(&t);
}

static void cmd_starttls(pmx_smtp_server_t *s, const pmx_smtp_cmd_t *c)
{
    if (!s->opts.starttls) return proto_error(s, 502, "5.5.1", "STARTTLS not offered");
    if (s->tls) return proto_error(s, 503, "5.5.1", "Error: TLS already active");
    if (c->arg_len) return proto_error(s, 501, "5.5.4", "Syntax: STARTTLS");
    reply(s, 220, "2.0.0", "Ready to start TLS");
    flush(s);
    /* RFC 3207 §4.2: whatever the client sent after STARTTLS in clear text
     * is not a command (the STARTTLS injection attack). */
    s->in_off = s->in.len;
    s->state = ST_WAIT_TLS;
    if (s->cbs.starttls(s->arg) < 0) finish(s);
}

/* Hands a password to the owner; the copy is wiped. */
static void auth_request(pmx_smtp_server_t *s, pmx_buf_t *pw)
{
    s->state = ST_WAIT_AUTH;
    s->cbs.auth(s->arg, pw->data ? pw->data : "", pw->len);
    pmx_buf_free_secret(pw);
}

static void auth_plain(pmx_smtp_server_t *s, const char *b64, size_t n)
{
    pmx_buf_t user = PMX_BUF_INIT, pw = PMX_BUF_INIT;
    if (pmx_smtp_sasl_plain_decode(b64, n, &user, &pw) < 0) {
        s->state = ST_COMMAND;
        proto_error(s, 501, "5.5.2", "Cannot decode the AUTH PLAIN response");
    } else {
        auth_request(s, &pw);
    }
    pmx_buf_free_secret(&user);
    pmx_buf_free_secret(&pw);
}

static void cmd_auth(pmx_smtp_server_t *s, const pmx_smtp_cmd_t *c)
{
    if (s->opts.no_auth) return proto_error(s, 502, "5.5.1", "AUTH not offered");
    if (!s->ehlo) return proto_error(s, 503, "5.5.1", "Error: send EHLO first");
    if (s->authed) return proto_error(s, 503, "5.5.1", "Error: already authenticated");
    if (s->mail_from) return proto_error(s, 503, "5.5.1", "Error: MAIL transaction in progress");
    if (!auth_offered(s)) return reply(s, 530, "5.7.0", "Must issue a STARTTLS command first");
    const char *a = c->arg;
    size_t n = c->arg_len, m = 0;
    while (m < n && a[m] != ' ') m++;
    const char *ir = a + m;
    size_t irn = n - m;
    while (irn && *ir == ' ') ir++, irn--;
    if (m == 0 || memchr(ir, ' ', irn))
        return proto_error(s, 501, "5.5.4", "Syntax: AUTH mechanism [initial-response]");
    if (m == 5 && strncasecmp(a, "PLAIN", 5) == 0) {
        if (irn) return auth_plain(s, ir, irn);
        s->state = ST_AUTH_PLAIN;
        return reply(s, 334, NULL, "%s", "");
    }
    if (m == 5 && strncasecmp(a, "LOGIN", 5) == 0) {
        if (irn) {
            pmx_buf_t user = PMX_BUF_INIT;
            int rc = pmx_smtp_sasl_decode(ir, irn, &user);
            pmx_buf_free_secret(&user);
            if (rc < 0) return proto_error(s, 501, "5.5.2", "Cannot decode the AUTH LOGIN response");
            s->state = ST_AUTH_PASS;
            return reply(s, 334, NULL, "UGFzc3dvcmQ6");      /* "Password:" */
        }
        s->state = ST_AUTH_USER;
        return reply(s, 334, NULL, "VXNlcm5hbWU6");          /* "Username:" */
    }
    reply(s, 504, "5.5.4", "Unrecognized authentication type (offered: PLAIN LOGIN)");
}

/* A line answering a "334" challenge. */
static void sasl_line(pmx_smtp_server_t *s, const char *line, size_t n)
{
    if (n == 1 && line[0] == '*') {
        s->state = ST_COMMAND;
        return reply(s, 501, "5.0.0", "Authentication cancelled");
    }
    switch (s->state) {
    case ST_AUTH_PLAIN:
        auth_plain(s, line, n);
        break;
    case ST_AUTH_USER: {
        pmx_buf_t user = PMX_BUF_INIT;
        int rc = pmx_smtp_sasl_decode(line, n, &user);
        pmx_buf_free_secret(&user);
        if (rc < 0) {
            s->state = ST_COMMAND;
            return proto_error(s, 501, "5.5.2", "Cannot decode the AUTH LOGIN response");
        }
        s->state = ST_AUTH_PASS;
        reply(s, 334, NULL, "UGFzc3dvcmQ6");
        break;
    }
    case ST_AUTH_PASS: {
        pmx_buf_t pw = PMX_BUF_INIT;
        if (pmx_smtp_sasl_decode(line, n, &pw) < 0 || pw.len == 0) {
            pmx_buf_free_secret(&pw);
            s->state = ST_COMMAND;
            return proto_error(s, 501, "5.5.2", "Cannot decode the AUTH LOGIN response");
        }
        auth_request(s, &pw);
        pmx_buf_free_secret(&pw);
        break;
    }
    default:
        break;
    }
}

/* ---- one command ---------------------------------------------------------------- */

/*
 * Before AUTH every command but STARTTLS, AUTH and QUIT counts (NOOP, RSET,
 * VRFY, HELP, EHLO, unknown ones...): past opts.junk_limit the session ends
 * with "421 4.7.0" (what Postfix's smtpd_junk_command_limit does). True when
 * it ended.
 */
static bool junk_command(pmx_smtp_server_t *s, pmx_smtp_verb_t verb)
{
    if (s->authed || !s->opts.junk_limit || verb == PMX_SMTP_CMD_AUTH ||
        verb == PMX_SMTP_CMD_STARTTLS || verb == PMX_SMTP_CMD_QUIT)
        return false;
    if (++s->junk <= s->opts.junk_limit) return false;
    reply(s, 421, "4.7.0", "%s Too many commands before authentication; closing connection",
          s->hostname);
    finish(s);
    return true;
}

static void command(pmx_smtp_server_t *s, const char *line, size_t n)
{
    pmx_smtp_cmd_t c;
    if (pmx_smtp_cmd_parse(line, n, &c) < 0)
        return proto_error(s, 500, "5.5.2", "Error: bad syntax (commands are printable ASCII)");
    if (c.verb != PMX_SMTP_CMD_AUTH && n + 2 > PMX_SMTP_CMD_LINE_MAX)
        return proto_error(s, 500, "5.5.2", "Line too long (at most 512 octets per command)");
    if (s->draining && !s->mail_from && c.verb != PMX_SMTP_CMD_QUIT) {
        drain_now(s);
        return;
    }
    if (junk_command(s, c.verb)) return;
    switch (c.verb) {
    case PMX_SMTP_CMD_EHLO:     return cmd_ehlo(s, &c, true);
    case PMX_SMTP_CMD_HELO:     return cmd_ehlo(s, &c, false);
    case PMX_SMTP_CMD_STARTTLS: return cmd_starttls(s, &c);
    case PMX_SMTP_CMD_AUTH:     return cmd_auth(s, &c);
    case PMX_SMTP_CMD_MAIL:     return cmd_mail(s, &c);
    case PMX_SMTP_CMD_RCPT:     return cmd_rcpt(s, &c);
    case PMX_SMTP_CMD_DATA:     return cmd_data(s, &c);
    case PMX_SMTP_CMD_RSET:
        if (c.arg_len) return proto_error(s, 501, "5.5.4", "Syntax: RSET");
        transaction_reset(s);
        return reply(s, 250, "2.0.0", "Ok");
    case PMX_SMTP_CMD_NOOP:
        return reply(s, 250, "2.0.0", "Ok");
    case PMX_SMTP_CMD_QUIT:
        reply(s, 221, "2.0.0", "Bye");
        return finish(s);
    case PMX_SMTP_CMD_HELP:
        return reply(s, 214, "2.0.0", "Commands: EHLO HELO STARTTLS AUTH MAIL RCPT DATA RSET NOOP "
                                      "QUIT HELP VRFY (postmux submission)");
    case PMX_SMTP_CMD_VRFY:
        if (!c.arg_len) return proto_error(s, 501, "5.5.4", "Syntax: VRFY address");
        return reply(s, 252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery");
    case PMX_SMTP_CMD_EXPN:
        return proto_error(s, 502, "5.5.1", "EXPN not supported");
    case PMX_SMTP_CMD_BDAT:
        return proto_error(s, 502, "5.5.1", "BDAT not supported (CHUNKING is not offered)");
    case PMX_SMTP_CMD_UNKNOWN:
        return proto_error(s, 500, "5.5.2", "Error: command not recognized");
    }
}

/*
 * Takes the next complete line out of the input (without its CRLF), handling
 * over-long lines and bare line ends here. Returns 1 with a line, 0 when more
 * input is needed, -1 when a malformed line was answered (call again).
 */
static int next_line(pmx_smtp_server_t *s, const char **line, size_t *len)
{
    size_t avail = s->in.len - s->in_off;
    if (avail == 0) return 0;
    const char *p = s->in.data + s->in_off;
    const char *lf = memchr(p, '\n', avail);
    if (!lf) {
        if (avail > PMX_SMTP_AUTH_LINE_MAX) {
            s->discarding = true;
            pmx_wipe((char *)p, avail);
            s->in_off = s->in.len;
        }
        return 0;
    }
    size_t n = (size_t)(lf - p);
    s->in_off += n + 1;
    s->progress++;
    if (s->discarding || n + 1 > PMX_SMTP_AUTH_LINE_MAX) {
        s->discarding = false;
        pmx_wipe((char *)p, n);
        proto_error(s, 500, "5.5.2", "Line too long");
        return -1;
    }
    if (n == 0 || p[n - 1] != '\r') {
        proto_error(s, 500, "5.5.2", "Error: bare LF (lines end with CRLF)");
        return -1;
    }
    *line = p;
    *len = n - 1;
    return 1;
}

/* ---- DATA ------------------------------------------------------------------------- */

/* The message cannot be accepted: it is read to its end, but no longer kept. */
static void data_bad(pmx_smtp_server_t *s, bad_t why)
{
    if (why > s->d_bad) {
        s->d_bad = why;
        s->d_bad_line = s->d_line;
    }
    msg_drop(s);
}

static void data_store(pmx_smtp_server_t *s, const char *p, size_t n)
{
    s->d_size += n;
    if (s->d_size > s->opts.max_message_size) data_bad(s, BAD_TOO_BIG);
    if (s->d_bad != BAD_NONE) return;
    if (!msg_hold(s, (uint64_t)s->msg.len + n)) return data_bad(s, BAD_NO_MEMORY);
    pmx_buf_append(&s->msg, p, n);
}

/* Line content (no CR, LF): counted, checked for NUL and length, stored. */
static void data_text(pmx_smtp_server_t *s, const char *p, size_t n)
{
    if (n == 0) return;
    if (memchr(p, '\0', n)) data_bad(s, BAD_NUL);
    s->d_line_len += n;
    if (s->d_line_len > PMX_TEXT_LINE_MAX) data_bad(s, BAD_LONG_LINE);
    data_store(s, p, n);
}

/*
 * Consumes message bytes; returns how many, with *ended set when the
 * terminator CRLF "." CRLF was among them (the rest is not consumed).
 */
static size_t data_feed(pmx_smtp_server_t *s, const char *p, size_t n, bool *ended)
{
    size_t i = 0;
    *ended = false;
    while (i < n) {
        char c = p[i];
        if (s->d_cr) {
            s->d_cr = false;
            if (c == '\n') {
                i++;
                s->progress++;
                if (s->d_dot_cr) {
                    *ended = true;
                    return i;
                }
                data_store(s, "\r\n", 2);
                s->d_line++;
                s->d_line_len = 0;
                s->d_bol = true;
                continue;
            }
            s->d_dot_cr = false;
            data_bad(s, BAD_EOL);      /* a bare CR; c is read normally below */
        }
        if (s->d_bol) {
            s->d_bol = false;
            if (c == '.') {
                s->d_dot = true;       /* stuffing or the terminator: decided next */
                i++;
                continue;
            }
        }
        if (s->d_dot) {
            s->d_dot = false;
            if (c == '\r' && s->d_line_len == 0) {
                s->d_cr = s->d_dot_cr = true;
                i++;
                continue;
            }
        }
        if (c == '\r') {
            s->d_cr = true;
            i++;
            continue;
        }
        if (c == '\n') {
            data_bad(s, BAD_EOL);      /* a bare LF never ends a line: no smuggling */
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && p[j] != '\r' && p[j] != '\n') j++;
        data_text(s, p + i, j - i);
        i = j;
    }
    return i;
}

/* The terminator arrived: refuse the message here or hand it to the owner. */
static void data_end(pmx_smtp_server_t *s)
{
    switch (s->d_bad) {
    case BAD_EOL:
        reply(s, 550, "5.6.0", "Message refused: bare CR or LF in line %zu "
              "(every line must end with CRLF)", s->d_bad_line);
        break;
    case BAD_NUL:
        reply(s, 550, "5.6.0", "Message refused: NUL byte in line %zu", s->d_bad_line);
        break;
    case BAD_TOO_BIG:
        reply(s, 552, "5.3.4", "Message size exceeds fixed limit of %llu bytes",
              (unsigned long long)s->opts.max_message_size);
        break;
    case BAD_LONG_LINE:
        reply(s, 500, "5.5.2", "Line too long: line %zu of the message is over 998 octets "
              "(RFC 5322 2.1.1)", s->d_bad_line);
        break;
    case BAD_NO_MEMORY:
        reply(s, 452, "4.3.1", "Insufficient system storage; try again later");
        break;
    case BAD_NONE: {
        s->state = ST_WAIT_QUEUE;
        pmx_smtp_envelope_t env = {
            .mail_from = s->mail_from,
            .rcpts = (const char *const *)s->rcpts,
            .nrcpts = s->nrcpts,
            .msg = s->msg.data + s->opts.msg_headroom,
            .len = s->msg.len - s->opts.msg_headroom,
        };
        s->cbs.message(s->arg, &env);
        return;
    }
    }
    s->state = ST_COMMAND;
    transaction_reset(s);
}

/* ---- the loop ------------------------------------------------------------------------ */

/* Consumes input for as long as the state allows it. */
static void run(pmx_smtp_server_t *s)
{
    for (;;) {
        if (s->state == ST_COMMAND && drain_now(s)) break;
        const char *line;
        size_t len;
        int r;
        switch (s->state) {
        case ST_COMMAND:
            r = next_line(s, &line, &len);
            if (r == 0) goto out;
            if (r > 0) {
                command(s, line, len);
                /* AUTH lines carry credentials: do not leave them in the buffer. */
                if (len >= 4 && strncasecmp(line, "AUTH", 4) == 0) pmx_wipe((char *)line, len);
            }
            break;
        case ST_AUTH_PLAIN:
        case ST_AUTH_USER:
        case ST_AUTH_PASS:
            r = next_line(s, &line, &len);
            if (r == 0) goto out;
            if (r < 0) {
                s->state = ST_COMMAND;
                break;
            }
            sasl_line(s, line, len);
            pmx_wipe((char *)line, len);
            break;
        case ST_DATA: {
            bool ended;
            if (s->in_off == s->in.len) goto out;
            size_t used = data_feed(s, s->in.data + s->in_off, s->in.len - s->in_off, &ended);
            s->in_off += used;
            if (!ended) goto out;
            data_end(s);
            break;
        }
        case ST_WAIT_AUTH:
        case ST_WAIT_QUEUE:
        case ST_WAIT_MAIL:
            if (s->in.len - s->in_off > PMX_SMTP_SERVER_MAX_PENDING) {
                reply(s, 421, "4.7.0", "%s Too much pipelined input; closing connection", s->hostname);
                finish(s);
            }
            goto out;
        case ST_WAIT_TLS:
        case ST_CLOSED:
            s->in_off = s->in.len;
            goto out;
        }
        if (s->state == ST_CLOSED) break;
    }
out:
    if (s->in_off == s->in.len) {
        pmx_buf_reset(&s->in);
        s->in_off = 0;
    } else if (s->in_off > 65536) {
        pmx_buf_consume(&s->in, s->in_off);
        s->in_off = 0;
    }
}

/* Every public entry point: nested calls (from callbacks) only change state;
 * the outermost one runs the input and hands out replies and the close. */
static void enter(pmx_smtp_server_t *s)
{
    s->depth++;
}

static void leave(pmx_smtp_server_t *s)
{
    if (--s->depth > 0) return;
    s->depth++;
    run(s);
    s->depth--;
    flush(s);
    if (s->close_wanted && !s->close_called) {
        s->close_called = true;
        s->cbs.close(s->arg);
    }
}

/* ---- public -------------------------------------------------------------------------- */

pmx_smtp_server_t *pmx_smtp_server_new(const pmx_smtp_server_opts_t *opts,
                                       const pmx_smtp_server_cbs_t *cbs, void *arg)
{
    pmx_smtp_server_t *s = pmx_xcalloc(1, sizeof *s);
    s->opts = *opts;
    s->hostname = pmx_xstrdup(opts->hostname && *opts->hostname ? opts->hostname : "localhost");
    s->opts.hostname = s->hostname;
    if (s->opts.max_recipients == 0) s->opts.max_recipients = PMX_SMTP_SERVER_MAX_RCPT;
    s->cbs = *cbs;
    s->arg = arg;
    s->state = ST_COMMAND;
    return s;
}

void pmx_smtp_server_start(pmx_smtp_server_t *s)
{
    enter(s);
    reply(s, 220, NULL, "%s ESMTP postmux", s->hostname);
    leave(s);
}

void pmx_smtp_server_refuse(pmx_smtp_server_t *s, int code, const char *enhanced, const char *text)
{
    enter(s);
    /* Mid-handshake a clear-text reply would be garbage to the client. */
    if (s->state != ST_WAIT_TLS) reply(s, code, enhanced, "%s %s", s->hostname, text);
    finish(s);
    leave(s);
}

void pmx_smtp_server_input(pmx_smtp_server_t *s, const char *data, size_t n)
{
    if (s->state == ST_CLOSED || s->state == ST_WAIT_TLS || n == 0) return;
    enter(s);
    pmx_buf_append(&s->in, data, n);
    leave(s);
}

void pmx_smtp_server_auth_done(pmx_smtp_server_t *s, int code, const char *enhanced,
                               const char *text)
{
    if (s->state != ST_WAIT_AUTH) return;
    enter(s);
    s->state = ST_COMMAND;
    reply(s, code, enhanced, "%s", text ? text : "");
    if (code == 235) s->authed = true;
    if (code == 421) finish(s);
    leave(s);
}

void pmx_smtp_server_message_done(pmx_smtp_server_t *s, int code, const char *enhanced,
                                  const char *text)
{
    if (s->state != ST_WAIT_QUEUE) return;
    enter(s);
    s->state = ST_COMMAND;
    transaction_reset(s);
    reply(s, code, enhanced, "%s", text ? text : "");
    if (code == 421) finish(s);
    leave(s);
}

void pmx_smtp_server_mail_done(pmx_smtp_server_t *s, int code, const char *enhanced,
                               const char *text)
{
    if (s->state != ST_WAIT_MAIL) return;
    enter(s);
    s->state = ST_COMMAND;
    if (code == 250) {
        s->mail_from = s->pending_from;
        s->pending_from = NULL;
    } else {
        free(s->pending_from);
        s->pending_from = NULL;
        s->declared = 0;                      /* its SIZE= goes with it */
        if (code == 535) s->authed = false;   /* the credentials are no longer good */
    }
    reply(s, code, enhanced, "%s", text ? text : "");
    if (code == 421) finish(s);
    leave(s);
}

void pmx_smtp_server_expire(pmx_smtp_server_t *s, const char *enhanced, const char *text)
{
    if (s->draining || s->state == ST_CLOSED) return;
    snprintf(s->end_enh, sizeof s->end_enh, "%s", enhanced ? enhanced : "4.4.2");
    snprintf(s->end_text, sizeof s->end_text, "%s", text ? text : "closing connection");
    pmx_smtp_server_drain(s);
}

void pmx_smtp_server_tls_done(pmx_smtp_server_t *s, bool ok)
{
    if (s->state != ST_WAIT_TLS) return;
    enter(s);
    if (ok) {
        /* RFC 3207 §4.2: the session starts over, knowing nothing said before. */
        s->state = ST_COMMAND;
        s->tls = true;
        s->helo = s->ehlo = s->authed = false;
        transaction_reset(s);
        pmx_buf_reset(&s->in);
        s->in_off = 0;
    } else {
        finish(s);
    }
    leave(s);
}

void pmx_smtp_server_timeout(pmx_smtp_server_t *s)
{
    if (s->state == ST_CLOSED) return;
    enter(s);
    /* Mid-handshake a clear-text reply would be garbage to the client. */
    if (s->state != ST_WAIT_TLS)
        reply(s, 421, "4.4.2", "%s Error: timeout exceeded; closing connection", s->hostname);
    finish(s);
    leave(s);
}

void pmx_smtp_server_drain(pmx_smtp_server_t *s)
{
    if (s->draining || s->state == ST_CLOSED) return;
    enter(s);
    s->draining = true;
    switch (s->state) {
    case ST_COMMAND:
    case ST_AUTH_PLAIN:
    case ST_AUTH_USER:
    case ST_AUTH_PASS:
        if (!s->mail_from) {
            s->state = ST_COMMAND;
            drain_now(s);
        }
        break;
    case ST_WAIT_TLS:
        finish(s);
        break;
    case ST_DATA:
    case ST_WAIT_AUTH:
    case ST_WAIT_QUEUE:
    case ST_WAIT_MAIL:
    case ST_CLOSED:
        break;                 /* finishes what it is doing; run() says 421 after */
    }
    leave(s);
}

void pmx_smtp_server_take_message(pmx_smtp_server_t *s, pmx_buf_t *buf, size_t *off)
{
    *buf = s->msg;
    *off = s->opts.msg_headroom;
    if (s->state != ST_WAIT_QUEUE || !s->msg.data) {   /* only inside the message callback */
        pmx_buf_init(buf);
        *off = 0;
        return;
    }
    pmx_buf_init(&s->msg);
    s->held = 0;
}

uint64_t pmx_smtp_server_progress(const pmx_smtp_server_t *s) { return s->progress; }
bool pmx_smtp_server_is_closed(const pmx_smtp_server_t *s) { return s->close_wanted; }
bool pmx_smtp_server_is_tls(const pmx_smtp_server_t *s) { return s->tls; }
bool pmx_smtp_server_is_authed(const pmx_smtp_server_t *s) { return s->authed; }

bool pmx_smtp_server_is_waiting(const pmx_smtp_server_t *s)
{
    return s->state == ST_WAIT_AUTH || s->state == ST_WAIT_QUEUE || s->state == ST_WAIT_MAIL;
}

void pmx_smtp_server_free(pmx_smtp_server_t *s)
{
    if (!s) return;
    s->cbs.hold = NULL;             /* no callback from here: the owner forgets the hold */
    transaction_reset(s);
    free(s->pending_from);
    free(s->rcpts);
    pmx_buf_free_secret(&s->in);
    pmx_buf_free(&s->out);
    free(s->hostname);
    free(s);
}
