/*
 * One SMTP client session to the relay; see client.h.
 *
 * Shape: every event (stream data, stream events, the timer) ends up either in
 * on_reply(), the one switch over the session's state that holds the whole
 * protocol, or in session_fail(). A session has one timer, re-armed for each
 * step: connect/handshake, each reply, the body and its final reply, and the
 * idle period while ready. Replies are parsed by smtp/reply.c; the body is
 * dot-stuffed by lib/text.c; TLS and socket I/O are smtp/tls.c's.
 *
 * With PIPELINING, [RSET] MAIL FROM, every RCPT TO and DATA go out in one write
 * and the replies are read in order (RFC 2920), and the next message's group
 * goes out right behind the current one's final ".", in the same write when
 * the owner has it ready then (can_take_next), its replies read after the
 * reply to the "."; without it, one command per reply. Any reply to the
 * final "." ends a transaction (RFC 5321 4.1.1.4), so the next one starts
 * with MAIL FROM; one that ended any other way (MAIL FROM
 * or every RCPT TO refused, DATA refused) may leave the relay holding its
 * sender, so the next one starts with RSET (pipelined with the rest when it
 * can be) and nothing of it leaks into the next. Without PIPELINING an RSET
 * per message would cost a round trip each.
 *
 * One recipient never fails its siblings: a recipient this client cannot
 * send (not an RFC 5321 Mailbox by lib/addr's grammar, or a non-ASCII address
 * for a relay without SMTPUTF8 while the message itself does not need it) gets
 * its own permanent outcome and no RCPT TO; the others go on as usual. Only
 * what the whole message shares (the sender, SIZE, a header that needs
 * SMTPUTF8) fails the whole message.
 *
 * A session is freed only after its timer and stream handles are closed, and
 * tells its owner with on_closed; every message it took gets its callback
 * (or is handed back, see client.h) before that.
 *
 * Why one file of this size: the session's fields, its states and every
 * transition belong together so the protocol reads top to bottom; whatever has
 * a job of its own lives elsewhere (reply parsing, TLS, dot-stuffing, pooling).
 */
#include "smtp/client.h"
#include "lib/addr.h"
#include "lib/buf.h"
#include "lib/encode.h"
#include "lib/log.h"
#include "lib/mem.h"
#include "lib/text.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum {
    S_RESOLVING,        /* uv_getaddrinfo of the relay host */
    S_CONNECTING,       /* TCP connect */
    S_TLS_IMPLICIT,     /* tls = tls: handshake before the greeting */
    S_GREETING,         /* waiting for 220 */
    S_EHLO,
    S_HELO,             /* EHLO got 5xx (tls = none, no AUTH only) */
    S_STARTTLS,         /* waiting for 220 to STARTTLS */
    S_TLS_STARTTLS,     /* handshake after STARTTLS */
    S_AUTH_PLAIN,       /* waiting for 235 */
    S_AUTH_LOGIN_USER,  /* waiting for 334 to the user name */
    S_AUTH_LOGIN_PASS,  /* waiting for 235 to the password */
    S_READY,            /* idle, can take a message */
    S_RSET,
    S_MAIL,
    S_RCPT,             /* rcpt_replied replies of nsend so far */
    S_DATA,             /* waiting for 354 */
    S_BODY,             /* writing the message as the socket drains */
    S_DOT,              /* waiting for the reply to the final "." */
    S_QUIT,
    S_CLOSING,          /* handles closing; on_closed follows */
} state_t;

/* The command a state waits on, for outcomes and timeouts. */
static const char *const state_after[] = {
    [S_RESOLVING] = "resolve",       [S_CONNECTING] = "connect",
    [S_TLS_IMPLICIT] = "TLS handshake", [S_GREETING] = "greeting",
    [S_EHLO] = "EHLO",               [S_HELO] = "HELO",
    [S_STARTTLS] = "STARTTLS",       [S_TLS_STARTTLS] = "TLS handshake",
    [S_AUTH_PLAIN] = "AUTH",         [S_AUTH_LOGIN_USER] = "AUTH",
    [S_AUTH_LOGIN_PASS] = "AUTH",    [S_READY] = "idle",
    [S_RSET] = "RSET",               [S_MAIL] = "MAIL FROM",
    [S_RCPT] = "RCPT TO",            [S_DATA] = "DATA",
    [S_BODY] = "message body",       [S_DOT] = "end of data",
    [S_QUIT] = "QUIT",               [S_CLOSING] = "close",
};

#define MAX_ADDRS        16
#define BODY_CHUNK       (64 * 1024)     /* bytes handed to the stream at a time */
#define BODY_HIGH_WATER  (256 * 1024)    /* stop writing while this much is queued */
#define BODY_PIECES      64              /* buffers per writev */

typedef struct {
    bool      set;
    int       code;
    char      enh[16];
    pmx_buf_t text;
} saved_reply_t;

/* What of a message goes out: the k-th RCPT TO is for envelope recipient
 * sendidx[k]; an envelope recipient not sent has its local outcome in
 * local[i]; BODY=8BITMIME and SMTPUTF8 on MAIL FROM. */
typedef struct {
    size_t                     nsend, cap;
    size_t                    *sendidx;
    const pmx_smtp_outcome_t **local;     /* one per envelope recipient; NULL = sent */
    bool                       body8, utf8;
} plan_t;

/* Outlives the session if the lookup is still running when the session closes. */
typedef struct {
    uv_getaddrinfo_t    req;
    pmx_smtp_session_t *s;            /* NULL once the session is gone */
} resolve_req_t;

struct pmx_smtp_session {
    pmx_smtp_session_env_t  env;
    const pmx_smtp_relay_t *cfg;
    state_t                 state;
    uv_timer_t              timer;
    pmx_smtp_stream_t      *stream;
    int                     open_handles;   /* the timer + streams not yet CLOSED */
    resolve_req_t          *resolve;
    struct sockaddr_storage addrs[MAX_ADDRS];
    int                     naddrs, addr_i;
    char                    last_connect_error[160];

    pmx_buf_t               in;             /* received, not yet parsed */
    pmx_smtp_reply_t        reply;
    pmx_buf_t               cmd;
    pmx_smtp_ehlo_t         ehlo;
    bool                    tls_up, ever_ready, quit_after, drop_input;
    unsigned long           ntxn;           /* transactions started on this connection */
    bool                    txn_open;       /* an earlier MAIL FROM may still hold: RSET first */

    /* The current transaction. */
    pmx_smtp_msg_t         *msg;
    plan_t                  plan;
    bool                    pipelined, got_reply;
    size_t                  rcpt_replied, accepted;
    saved_reply_t           mail_r, final_r;
    const char             *final_after;
    saved_reply_t          *rr;             /* one per RCPT TO sent */
    size_t                  rr_cap;
    pmx_smtp_outcome_t     *outs;
    size_t                  outs_cap;
    /* The body goes out dot-stuffed in pieces of the message itself
     * (pmx_text_dot_next), written with writev: no stuffed copy. */
    pmx_text_dot_t          dot;
    const char             *piece;          /* the rest of the current piece */
    size_t                  piece_len;

    char                   *close_reason;
    const char             *close_where;    /* state_after[] of the state it closed in */
    pmx_smtp_msg_t         *unsent;

    /* The next transaction, whose MAIL FROM, RCPT TO and DATA went out right
     * after the current one's final "." (RFC 2920 3.1), before its reply. */
    pmx_smtp_msg_t         *next;
    plan_t                  next_plan;
    /* While write_body asks the owner for the next message, its group waits in
     * cmd and goes out in the same writev as the end of data (held). */
    bool                    hold_group, group_held;
};

static void on_reply(pmx_smtp_session_t *s, const pmx_smtp_reply_t *r);
static void session_fail(pmx_smtp_session_t *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void close_session(pmx_smtp_session_t *s, const char *reason);

/* ---- small helpers ---- */

static pmx_smtp_status_t status_of(int code)
{
    if (code >= 200 && code < 300) return PMX_SMTP_SENT;
    if (code >= 500 && code < 600) return PMX_SMTP_PERMFAIL;
    return PMX_SMTP_TEMPFAIL;
}

static void save_reply(saved_reply_t *dst, const pmx_smtp_reply_t *r)
{
    dst->set = true;
    dst->code = r->code;
    memcpy(dst->enh, r->enhanced, sizeof dst->enh);
    pmx_buf_reset(&dst->text);
    pmx_buf_append(&dst->text, r->text.data, r->text.len);
}

static pmx_smtp_outcome_t outcome_of(const saved_reply_t *r, const char *after)
{
    return (pmx_smtp_outcome_t){ status_of(r->code), r->code, r->enh, pmx_buf_cstr(&r->text), after };
}

static void arm(pmx_smtp_session_t *s, uint64_t ms);

static int send_buf(pmx_smtp_session_t *s, const pmx_buf_t *b)
{
    int rc = pmx_smtp_stream_write(s->stream, b->data, b->len);
    if (rc < 0) session_fail(s, "write to relay failed: %s", pmx_smtp_stream_reason(s->stream));
    return rc;
}

/* Writes a one-line command and waits for its reply in state next. */
static void send_cmd(pmx_smtp_session_t *s, state_t next, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void send_cmd(pmx_smtp_session_t *s, state_t next, const char *fmt, ...)
{
    va_list ap;
    pmx_buf_reset(&s->cmd);
    va_start(ap, fmt);
    pmx_buf_vappendf(&s->cmd, fmt, ap);
    va_end(ap);
    pmx_buf_append(&s->cmd, "\r\n", 2);
    s->state = next;
    if (send_buf(s, &s->cmd) == 0) arm(s, s->cfg->command_timeout_ms);
}

static bool is_ascii(const char *p)
{
    for (; *p; p++)
        if ((unsigned char)*p >= 0x80) return false;
    return true;
}

static bool has_8bit(const char *p, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w & 0x8080808080808080ull) return true;
    }
    for (; i < n; i++)
        if ((unsigned char)p[i] >= 0x80) return true;
    return false;
}

/* ---- ending a message ---- */

/* Outcomes for a message that never reached the relay: the same for everyone. */
void pmx__smtp_msg_fail(pmx_smtp_msg_t *msg, pmx_smtp_status_t status, const char *after,
                        const char *reason)
{
    size_t n = msg->env.nrcpts;
    pmx_smtp_outcome_t one = { status, 0, "", reason, after };
    pmx_smtp_outcome_t *outs = pmx_xcalloc(n ? n : 1, sizeof *outs);
    for (size_t i = 0; i < n; i++) outs[i] = one;
    pmx_smtp_result_t res = { status, one, outs, n };
    msg->cb(msg->arg, &res);
    free(outs);
    free(msg);
}

/* Local outcomes of a recipient given no RCPT TO (see the top of this file). */
static const pmx_smtp_outcome_t rcpt_not_mailbox = {
    PMX_SMTP_PERMFAIL, 0, "5.1.3",
    "553 5.1.3 not sent by postmux: the recipient is not an RFC 5321 mailbox", "RCPT TO",
};
static const pmx_smtp_outcome_t rcpt_needs_smtputf8 = {
    PMX_SMTP_PERMFAIL, 0, "5.6.7",
    "553 5.6.7 not sent by postmux: the recipient address is not ASCII and the relay "
    "does not offer SMTPUTF8", "RCPT TO",
};

/* Ends msg before any command: every recipient has a local outcome in local. */
static void msg_fail_local(pmx_smtp_msg_t *msg, const pmx_smtp_outcome_t *const *local)
{
    size_t n = msg->env.nrcpts;
    pmx_smtp_outcome_t *outs = pmx_xcalloc(n ? n : 1, sizeof *outs);
    for (size_t i = 0; i < n; i++) outs[i] = *local[i];
    pmx_smtp_result_t res = { PMX_SMTP_PERMFAIL, outs[0], outs, n };
    msg->cb(msg->arg, &res);
    free(outs);
    free(msg);
}

/*
 * Ends the current message. Each recipient's outcome is the most specific
 * reply that decided it: a failed MAIL FROM decides everyone, a failed RCPT TO
 * decides its recipient, the reply to DATA or to "." decides the accepted
 * ones; rest (a local reason or a 421) decides whoever is left.
 */
static void complete_msg(pmx_smtp_session_t *s, const pmx_smtp_outcome_t *rest)
{
    pmx_smtp_msg_t *msg = s->msg;
    size_t n = msg->env.nrcpts;
    bool mail_failed = s->mail_r.set && s->mail_r.code / 100 != 2;
    static const pmx_smtp_outcome_t no_reply = { PMX_SMTP_TEMPFAIL, 0, "", "no reply from relay", "" };

    if (s->outs_cap < n) {
        s->outs = pmx_xrealloc(s->outs, n * sizeof *s->outs);
        s->outs_cap = n;
    }
    bool any_sent = false, any_temp = false;
    /* Recipients given no RCPT TO keep their local outcome. */
    for (size_t i = 0; i < n; i++)
        if (s->plan.local[i]) s->outs[i] = *s->plan.local[i];
    for (size_t k = 0; k < s->plan.nsend; k++) {
        pmx_smtp_outcome_t o;
        if (mail_failed) o = outcome_of(&s->mail_r, "MAIL FROM");
        else if (k < s->rcpt_replied && s->rr[k].code / 100 != 2) o = outcome_of(&s->rr[k], "RCPT TO");
        else if (s->final_r.set) o = outcome_of(&s->final_r, s->final_after);
        else o = rest ? *rest : no_reply;
        s->outs[s->plan.sendidx[k]] = o;
    }
    for (size_t i = 0; i < n; i++) {
        any_sent |= s->outs[i].status == PMX_SMTP_SENT;
        any_temp |= s->outs[i].status == PMX_SMTP_TEMPFAIL;
    }
    pmx_smtp_result_t res;
    res.status = any_sent ? PMX_SMTP_SENT : any_temp ? PMX_SMTP_TEMPFAIL : PMX_SMTP_PERMFAIL;
    if (rest) res.message = *rest;
    else if (s->final_r.set) res.message = outcome_of(&s->final_r, s->final_after);
    else if (mail_failed) res.message = outcome_of(&s->mail_r, "MAIL FROM");
    else if (s->rcpt_replied) res.message = s->outs[s->plan.sendidx[s->rcpt_replied - 1]];
    else res.message = no_reply;
    res.rcpts = s->outs;
    res.nrcpts = n;

    s->msg = NULL;
    msg->cb(msg->arg, &res);
    free(msg);
}

/* The transaction is over: become ready again, or leave. */
static void txn_done(pmx_smtp_session_t *s)
{
    if (s->state == S_CLOSING) return;
    if (s->quit_after) {
        send_cmd(s, S_QUIT, "QUIT");
        return;
    }
    s->state = S_READY;
    arm(s, s->cfg->idle_timeout_ms);
    s->env.on_ready(s->env.owner, s);
}

/* ---- closing ---- */

static void session_free(pmx_smtp_session_t *s)
{
    pmx_buf_free(&s->in);
    pmx_buf_free(&s->cmd);
    pmx_smtp_reply_free(&s->reply);
    pmx_buf_free(&s->mail_r.text);
    pmx_buf_free(&s->final_r.text);
    for (size_t i = 0; i < s->rr_cap; i++) pmx_buf_free(&s->rr[i].text);
    free(s->rr);
    free(s->plan.sendidx);
    free(s->plan.local);
    free(s->next_plan.sendidx);
    free(s->next_plan.local);
    free(s->outs);
    free(s->close_reason);
    free(s);
}

static void handle_closed(pmx_smtp_session_t *s)
{
    if (--s->open_handles > 0) return;
    s->env.on_closed(s->env.owner, s, s->ever_ready, s->close_reason, s->close_where, s->unsent);
    session_free(s);
}

static void on_timer_closed(uv_handle_t *h)
{
    handle_closed(h->data);
}

static void drop_next(pmx_smtp_session_t *s, pmx_smtp_msg_t *m, const char *reason);

static void close_session(pmx_smtp_session_t *s, const char *reason)
{
    if (s->state == S_CLOSING) return;
    pmx_smtp_msg_t *next = s->next;
    s->next = NULL;
    s->close_where = state_after[s->state];
    s->state = S_CLOSING;
    if (reason) s->close_reason = pmx_xstrdup(reason);
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, on_timer_closed);
    if (s->stream) {
        pmx_smtp_stream_close(s->stream);
        s->stream = NULL;
    }
    if (s->resolve) {
        s->resolve->s = NULL;
        uv_cancel((uv_req_t *)&s->resolve->req);
        s->resolve = NULL;
    }
    /* Last: its callback may run, and must find the session closing. */
    drop_next(s, next, reason);
}

/*
 * The current message got no reply at all on a reused connection (the relay
 * had dropped the idle connection, or closed right after the previous
 * transaction's reply): it is handed back untouched through on_closed's
 * unsent, once; a message handed back before is not. True if it was.
 */
static bool hand_back_unanswered(pmx_smtp_session_t *s)
{
    if (s->got_reply || s->ntxn <= 1 || s->msg->retried) return false;
    s->unsent = s->msg;
    s->msg = NULL;
    return true;
}

/*
 * The session cannot go on: the current message, if any, ends with a
 * temporary failure (recipients already decided keep their replies) — or is
 * handed back when the relay never answered anything of it on a reused
 * connection — and the session closes.
 */
static void session_fail(pmx_smtp_session_t *s, const char *fmt, ...)
{
    if (s->state == S_CLOSING) return;
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    const char *after = state_after[s->state];
    pmx_log_warn("relay session failed relay=%s:%d state=%s reason=\"%s\"",
                 s->cfg->host, s->cfg->port, after, reason);
    if (s->msg && !hand_back_unanswered(s)) {
        pmx_smtp_outcome_t rest = { PMX_SMTP_TEMPFAIL, 0, "", reason, after };
        complete_msg(s, &rest);
    }
    close_session(s, reason);
}

/*
 * Closing with a next transaction whose group went out but whose replies are
 * not in: the relay never had its body, so it is handed back like an unsent
 * message (once; a message handed back before fails instead).
 */
static void drop_next(pmx_smtp_session_t *s, pmx_smtp_msg_t *m, const char *reason)
{
    if (!m) return;
    if (!s->unsent && !m->retried) s->unsent = m;
    else pmx__smtp_msg_fail(m, PMX_SMTP_TEMPFAIL, "MAIL FROM", reason ? reason : "relay session closed");
}

/* A reply that ends the session (greeting refused, STARTTLS refused, ...). */
static void fail_with_reply(pmx_smtp_session_t *s, const char *what, const pmx_smtp_reply_t *r)
{
    session_fail(s, "%s: %s", what, pmx_buf_cstr(&r->text));
}

/* ---- timer ---- */

static void connect_next(pmx_smtp_session_t *s);

/*
 * Gives up on the address being tried (no greeting, a refused greeting, a
 * connect that timed out) and moves to the next one. Returns false, changing
 * nothing, when there is none left or the session may not (a refused
 * greeting only moves on with next_on_greeting: direct delivery).
 */
static bool try_next_address(pmx_smtp_session_t *s, bool in_reply, const char *where,
                             const char *why)
{
    if (s->addr_i >= s->naddrs || s->msg) return false;
    if (s->state == S_GREETING && !s->cfg->next_on_greeting) return false;
    char addr[64] = "?";
    const struct sockaddr_storage *sa = &s->addrs[s->addr_i - 1];
    if (sa->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, addr, sizeof addr);
    else if (sa->ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, addr, sizeof addr);
    snprintf(s->last_connect_error, sizeof s->last_connect_error, "%s: %s: %s", addr, where, why);
    pmx_log_info("smtp session: trying the next address host=%s after=\"%s\"", s->cfg->host,
                 s->last_connect_error);
    pmx_smtp_stream_close(s->stream);
    s->stream = NULL;
    /* Whatever the old connection sent is not for the new one. */
    if (in_reply) s->drop_input = true;     /* process_input drops the rest after this reply */
    else pmx_buf_reset(&s->in);
    connect_next(s);
    return true;
}

static void on_timer(uv_timer_t *t)
{
    pmx_smtp_session_t *s = t->data;
    switch (s->state) {
    case S_READY:
        send_cmd(s, S_QUIT, "QUIT");
        break;
    case S_QUIT:
        close_session(s, NULL);
        break;
    case S_CONNECTING: case S_GREETING:
        if (s->state == S_CONNECTING || s->cfg->next_on_greeting) {
            char why[80];
            snprintf(why, sizeof why, "timeout after %llu ms",
                     (unsigned long long)(s->state == S_CONNECTING ? s->cfg->connect_timeout_ms
                                                                   : s->cfg->command_timeout_ms));
            if (try_next_address(s, false, state_after[s->state], why)) break;
        }
        if (s->state == S_GREETING) {
            session_fail(s, "timeout after %llu ms waiting for the reply to %s",
                         (unsigned long long)s->cfg->command_timeout_ms, state_after[s->state]);
            break;
        }
        /* fall through */
    case S_RESOLVING: case S_TLS_IMPLICIT: case S_TLS_STARTTLS:
        session_fail(s, "timeout after %llu ms in %s with %s:%d",
                     (unsigned long long)s->cfg->connect_timeout_ms, state_after[s->state],
                     s->cfg->host, s->cfg->port);
        break;
    case S_BODY: case S_DOT:
        session_fail(s, "timeout after %llu ms waiting for the reply to %s",
                     (unsigned long long)s->cfg->data_timeout_ms, state_after[S_DOT]);
        break;
    default:
        session_fail(s, "timeout after %llu ms waiting for the reply to %s",
                     (unsigned long long)s->cfg->command_timeout_ms, state_after[s->state]);
        break;
    }
}

static void arm(pmx_smtp_session_t *s, uint64_t ms)
{
    if (s->state != S_CLOSING) uv_timer_start(&s->timer, on_timer, ms, 0);
}

/* ---- session set-up steps ---- */

static void send_ehlo(pmx_smtp_session_t *s)
{
    memset(&s->ehlo, 0, sizeof s->ehlo);
    send_cmd(s, S_EHLO, "EHLO %s", s->cfg->helo_name);
}

static void become_ready(pmx_smtp_session_t *s)
{
    if (!s->ever_ready)
        pmx_log_debug("relay session ready relay=%s:%d tls=\"%s\" pipelining=%s",
                      s->cfg->host, s->cfg->port,
                      s->stream ? pmx_smtp_stream_tls_desc(s->stream) : "",
                      (s->ehlo.ext & PMX_SMTP_EXT_PIPELINING) ? "yes" : "no");
    s->ever_ready = true;
    s->state = S_READY;
    arm(s, s->cfg->idle_timeout_ms);
    s->env.on_ready(s->env.owner, s);
}

static void start_auth(pmx_smtp_session_t *s)
{
    const char *user = s->cfg->auth_user, *pass = s->cfg->auth_password ? s->cfg->auth_password : "";
    if (!(s->ehlo.ext & PMX_SMTP_EXT_AUTH)) {
        session_fail(s, "relay does not offer AUTH (auth_user is set)");
        return;
    }
    pmx_buf_t clear = PMX_BUF_INIT, line = PMX_BUF_INIT;
    state_t next;
    if (s->ehlo.auth & PMX_SMTP_AUTH_PLAIN) {
        pmx_buf_append_char(&clear, '\0');
        pmx_buf_append_str(&clear, user);
        pmx_buf_append_char(&clear, '\0');
        pmx_buf_append_str(&clear, pass);
        pmx_buf_append_str(&line, "AUTH PLAIN ");
        pmx_base64_encode(&line, (const uint8_t *)clear.data, clear.len);
        next = S_AUTH_PLAIN;
    } else if (s->ehlo.auth & PMX_SMTP_AUTH_LOGIN) {
        pmx_buf_append_str(&line, "AUTH LOGIN ");
        pmx_base64_encode(&line, (const uint8_t *)user, strlen(user));
        next = S_AUTH_LOGIN_USER;
    } else {
        session_fail(s, "relay offers neither AUTH PLAIN nor AUTH LOGIN");
        return;
    }
    pmx_buf_append(&line, "\r\n", 2);
    s->state = next;
    int rc = pmx_smtp_stream_write_secret(s->stream, line.data, line.len);
    pmx_buf_free_secret(&clear);
    pmx_buf_free_secret(&line);
    if (rc < 0) session_fail(s, "write to relay failed: %s", pmx_smtp_stream_reason(s->stream));
    else arm(s, s->cfg->command_timeout_ms);
}

static void send_login_password(pmx_smtp_session_t *s)
{
    const char *pass = s->cfg->auth_password ? s->cfg->auth_password : "";
    pmx_buf_t line = PMX_BUF_INIT;
    pmx_base64_encode(&line, (const uint8_t *)pass, strlen(pass));
    pmx_buf_append(&line, "\r\n", 2);
    s->state = S_AUTH_LOGIN_PASS;
    int rc = pmx_smtp_stream_write_secret(s->stream, line.data, line.len);
    pmx_buf_free_secret(&line);
    if (rc < 0) session_fail(s, "write to relay failed: %s", pmx_smtp_stream_reason(s->stream));
    else arm(s, s->cfg->command_timeout_ms);
}

/* After a successful EHLO/HELO: STARTTLS, AUTH, or ready. */
static void after_hello(pmx_smtp_session_t *s)
{
    /* Opportunistic: STARTTLS whenever offered; a handshake that then fails
     * ends the session (deferred), never a quiet fall-back to clear text. */
    if (s->cfg->tls == PMX_TLS_OPPORTUNISTIC && !s->tls_up
        && (s->ehlo.ext & PMX_SMTP_EXT_STARTTLS)) {
        send_cmd(s, S_STARTTLS, "STARTTLS");
        return;
    }
    if (s->cfg->tls == PMX_TLS_STARTTLS && !s->tls_up) {
        if (!(s->ehlo.ext & PMX_SMTP_EXT_STARTTLS)) {
            session_fail(s, "relay does not offer STARTTLS (tls = starttls); not sending in clear text");
            return;
        }
        send_cmd(s, S_STARTTLS, "STARTTLS");
        return;
    }
    if (s->cfg->auth_user && *s->cfg->auth_user) {
        if (!s->tls_up && s->cfg->tls != PMX_TLS_NONE) {   /* cannot happen; never AUTH in clear */
            session_fail(s, "refusing AUTH without TLS");
            return;
        }
        start_auth(s);
        return;
    }
    become_ready(s);
}

/* ---- transactions ---- */

static void append_path(pmx_buf_t *b, const char *verb, const char *addr)
{
    pmx_buf_append_str(b, verb);
    pmx_buf_append_char(b, '<');
    pmx_buf_append_str(b, addr);
    pmx_buf_append_char(b, '>');
}

static void append_mail(const pmx_smtp_session_t *s, const pmx_smtp_msg_t *m, const plan_t *pl,
                        pmx_buf_t *b)
{
    append_path(b, "MAIL FROM:", m->env.mail_from);
    if (s->ehlo.ext & PMX_SMTP_EXT_SIZE)
        pmx_buf_appendf(b, " SIZE=%zu", m->env.head_len + m->len);
    if (pl->body8 && (s->ehlo.ext & PMX_SMTP_EXT_8BITMIME)) pmx_buf_append_str(b, " BODY=8BITMIME");
    if (pl->utf8) pmx_buf_append_str(b, " SMTPUTF8");
    pmx_buf_append(b, "\r\n", 2);
}

/* The k-th RCPT TO of the transaction. */
static void append_rcpt(const pmx_smtp_msg_t *m, const plan_t *pl, pmx_buf_t *b, size_t k)
{
    append_path(b, "RCPT TO:", m->env.rcpts[pl->sendidx[k]]);
    pmx_buf_append(b, "\r\n", 2);
}

/* MAIL FROM, every RCPT TO and DATA: one pipelined group. */
static void append_group(const pmx_smtp_session_t *s, const pmx_smtp_msg_t *m, const plan_t *pl,
                         pmx_buf_t *b)
{
    append_mail(s, m, pl, b);
    for (size_t k = 0; k < pl->nsend; k++) append_rcpt(m, pl, b, k);
    pmx_buf_append_str(b, "DATA\r\n");
}

static void send_rcpt(pmx_smtp_session_t *s, size_t k)
{
    pmx_buf_reset(&s->cmd);
    append_rcpt(s->msg, &s->plan, &s->cmd, k);
    s->state = S_RCPT;
    if (send_buf(s, &s->cmd) == 0) arm(s, s->cfg->command_timeout_ms);
}

static void send_mail(pmx_smtp_session_t *s)
{
    pmx_buf_reset(&s->cmd);
    append_mail(s, s->msg, &s->plan, &s->cmd);
    s->state = S_MAIL;
    if (send_buf(s, &s->cmd) == 0) arm(s, s->cfg->command_timeout_ms);
}

/*
 * Decides what of msg goes out on this session, into pl. -1: nothing can (its
 * callback ran): what the whole message shares (its size, SMTPUTF8 when the
 * sender or a header needs it, RFC 6531) decides for every recipient, and a
 * recipient that cannot be sent fails alone.
 */
static int plan_msg(pmx_smtp_session_t *s, pmx_smtp_msg_t *msg, plan_t *pl)
{
    const pmx_smtp_envelope_t *env = &msg->env;
    bool relay_utf8 = (s->ehlo.ext & PMX_SMTP_EXT_SMTPUTF8) != 0;
    bool utf8 = (env->flags & PMX_SMTP_ENV_SMTPUTF8) || !is_ascii(env->mail_from);
    if (s->ehlo.size_max && msg->env.head_len + msg->len > s->ehlo.size_max) {
        char why[160];
        snprintf(why, sizeof why, "message of %zu octets exceeds the relay's SIZE limit of %llu",
                 msg->env.head_len + msg->len, (unsigned long long)s->ehlo.size_max);
        pmx__smtp_msg_fail(msg, PMX_SMTP_PERMFAIL, "MAIL FROM", why);
        return -1;
    }
    if (utf8 && !relay_utf8) {
        pmx__smtp_msg_fail(msg, PMX_SMTP_PERMFAIL, "MAIL FROM",
                           "the envelope needs SMTPUTF8 (non-ASCII sender or header) "
                           "and the relay does not offer it");
        return -1;
    }
    if (pl->cap < env->nrcpts) {
        pl->sendidx = pmx_xrealloc(pl->sendidx, env->nrcpts * sizeof *pl->sendidx);
        pl->local = pmx_xrealloc(pl->local, env->nrcpts * sizeof *pl->local);
        pl->cap = env->nrcpts;
    }
    size_t nsend = 0;
    for (size_t i = 0; i < env->nrcpts; i++) {
        const char *r = env->rcpts[i];
        bool ascii = r && is_ascii(r);
        pl->local[i] = !pmx_addr_envelope_ok(r) ? &rcpt_not_mailbox
                     : !ascii && !relay_utf8    ? &rcpt_needs_smtputf8
                     : NULL;
        if (pl->local[i]) {
            pmx_log_warn("relay recipient not sent rcpt=#%zu of %zu reason=\"%s\"", i + 1,
                         env->nrcpts, pl->local[i]->response);
            continue;
        }
        pl->sendidx[nsend++] = i;
        utf8 |= !ascii;
    }
    if (nsend == 0) {
        msg_fail_local(msg, pl->local);
        return -1;
    }
    pl->nsend = nsend;
    pl->utf8 = utf8;
    pl->body8 = utf8 || (env->flags & PMX_SMTP_ENV_8BITMIME) || has_8bit(msg->data, msg->len);
    return 0;
}

/* The transaction's per-recipient reply slots. */
static void reserve_replies(pmx_smtp_session_t *s, size_t n)
{
    if (s->rr_cap >= n) return;
    s->rr = pmx_xrealloc(s->rr, n * sizeof *s->rr);
    for (size_t i = s->rr_cap; i < n; i++) {
        pmx_buf_init(&s->rr[i].text);
        s->rr[i].set = false;
    }
    s->rr_cap = n;
}

/* Counts a transaction; the one that reaches messages_per_connection is the last. */
static void count_txn(pmx_smtp_session_t *s)
{
    s->ntxn++;
    if (s->cfg->messages_per_connection > 0 && s->ntxn >= (unsigned long)s->cfg->messages_per_connection)
        s->quit_after = true;          /* QUIT after this one: a fresh session takes the next */
}

/* The current transaction begins: its replies are awaited from MAIL FROM on,
 * and the relay holds its sender until it answers the final ".". */
static void begin_txn(pmx_smtp_session_t *s, pmx_smtp_msg_t *msg)
{
    s->msg = msg;
    s->txn_open = true;
    reserve_replies(s, msg->env.nrcpts);
    s->got_reply = false;
    s->pipelined = (s->ehlo.ext & PMX_SMTP_EXT_PIPELINING) != 0;
    s->rcpt_replied = s->accepted = 0;
    s->mail_r.set = s->final_r.set = false;
    s->final_after = "";
}

/*
 * While the final "." of a pipelined transaction waits for its reply, the next
 * transaction's group may already go out (RFC 2920 3.1: "the RSET/MAIL FROM
 * sequence necessary to initiate a new message transaction can be placed in the
 * same group as the final transfer of the headers and body of the previous
 * message"). Any reply to "." ends a transaction, so it needs no RSET.
 */
static bool can_take_next(const pmx_smtp_session_t *s)
{
    return s->state == S_DOT && s->msg && s->pipelined && !s->next && !s->quit_after;
}

int pmx_smtp_session_start(pmx_smtp_session_t *s, pmx_smtp_msg_t *msg)
{
    bool ahead = can_take_next(s);
    if (s->state != S_READY && !ahead) {  /* a caller bug; the message still gets its one callback */
        pmx__smtp_msg_fail(msg, PMX_SMTP_TEMPFAIL, "connect", "relay session not ready");
        return -1;
    }
    if (plan_msg(s, msg, ahead ? &s->next_plan : &s->plan) < 0) return -1;
    count_txn(s);
    pmx_buf_reset(&s->cmd);
    if (ahead) {
        s->next = msg;
        append_group(s, msg, &s->next_plan, &s->cmd);
        if (s->hold_group) s->group_held = true;   /* write_body sends it */
        else (void)send_buf(s, &s->cmd);  /* a failure closes the session, which hands msg back */
        return 0;
    }
    bool rset = s->txn_open;
    begin_txn(s, msg);
    if (rset) pmx_buf_append_str(&s->cmd, "RSET\r\n");
    if (s->pipelined) append_group(s, msg, &s->plan, &s->cmd);
    else if (!rset) append_mail(s, msg, &s->plan, &s->cmd);
    s->state = rset ? S_RSET : S_MAIL;
    if (send_buf(s, &s->cmd) == 0) arm(s, s->cfg->command_timeout_ms);
    return 0;
}

/* The relay answered the final "." and the next transaction's group is out:
 * its replies follow. */
static void start_next(pmx_smtp_session_t *s)
{
    pmx_smtp_msg_t *msg = s->next;
    plan_t t = s->plan;
    s->plan = s->next_plan;
    s->next_plan = t;
    s->next = NULL;
    begin_txn(s, msg);
    s->state = S_MAIL;
    arm(s, s->cfg->command_timeout_ms);
}

/*
 * The end of data is about to be written: the owner may hand the next message
 * now (can_take_next). Its group is held and returned in *group, to go out in
 * the same write as the final "." (one packet, one read for the relay);
 * false if the session closed meanwhile.
 */
static bool end_of_data(pmx_smtp_session_t *s, uv_buf_t *group)
{
    s->state = S_DOT;
    *group = uv_buf_init(NULL, 0);
    if (!can_take_next(s)) return true;
    s->hold_group = true;
    s->env.on_ready(s->env.owner, s);
    s->hold_group = false;
    if (s->state != S_DOT) return false;
    if (s->group_held) *group = uv_buf_init(s->cmd.data, (unsigned)s->cmd.len);
    s->group_held = false;
    return true;
}

/* Hands the body to the stream while it drains; then waits for the final reply. */
static void write_body(pmx_smtp_session_t *s)
{
    bool more = true;
    while (s->state == S_BODY && more && pmx_smtp_stream_pending(s->stream) < BODY_HIGH_WATER) {
        uv_buf_t v[BODY_PIECES + 1];      /* + the next message's group */
        size_t nv = 0, budget = BODY_CHUNK;
        while (nv < BODY_PIECES && budget > 0) {
            if (s->piece_len == 0 && !pmx_text_dot_next(&s->dot, &s->piece, &s->piece_len)) {
                more = false;
                break;
            }
            size_t take = s->piece_len < budget ? s->piece_len : budget;
            v[nv++] = uv_buf_init((char *)s->piece, (unsigned)take);
            s->piece += take;
            s->piece_len -= take;
            budget -= take;
        }
        if (!more) {
            uv_buf_t group;
            if (!end_of_data(s, &group)) return;
            if (group.len) v[nv++] = group;
        }
        if (nv && pmx_smtp_stream_writev(s->stream, v, nv) < 0) {
            s->state = S_BODY;            /* what failed was the body, "." included */
            session_fail(s, "write to relay failed: %s", pmx_smtp_stream_reason(s->stream));
            return;
        }
        if (!more) arm(s, s->cfg->data_timeout_ms);
    }
}

static void start_body(pmx_smtp_session_t *s, bool empty)
{
    /* 354 with no recipient left: the terminator alone (the stuffing of nothing). */
    if (empty) pmx_text_dot_init(&s->dot, "", 0);
    else pmx_text_dot_init(&s->dot, s->msg->data, s->msg->len);
    /* The per-transaction head goes first, as it is (no line of it starts with '.'). */
    s->piece = empty ? NULL : s->msg->env.head;
    s->piece_len = empty ? 0 : s->msg->env.head_len;
    s->state = S_BODY;
    arm(s, s->cfg->data_timeout_ms);
    write_body(s);
}

/* ---- the protocol: one switch over the state ---- */

static void on_reply(pmx_smtp_session_t *s, const pmx_smtp_reply_t *r)
{
    int c = r->code;
    switch (s->state) {
    case S_GREETING:
        if (c == 220) send_ehlo(s);
        else if (!try_next_address(s, true, "greeting", pmx_buf_cstr(&r->text)))
            fail_with_reply(s, "relay refused the session", r);
        break;

    case S_EHLO:
        if (c / 100 == 2) {
            pmx_smtp_ehlo_parse(r, &s->ehlo);
            after_hello(s);
        } else if (c / 100 == 5
                   && (s->cfg->tls == PMX_TLS_NONE || s->cfg->tls == PMX_TLS_OPPORTUNISTIC)
                   && !(s->cfg->auth_user && *s->cfg->auth_user)) {
            send_cmd(s, S_HELO, "HELO %s", s->cfg->helo_name);
        } else {
            fail_with_reply(s, "relay refused EHLO", r);
        }
        break;

    case S_HELO:
        if (c / 100 == 2) {
            memset(&s->ehlo, 0, sizeof s->ehlo);
            after_hello(s);
        } else {
            fail_with_reply(s, "relay refused HELO", r);
        }
        break;

    case S_STARTTLS:
        if (c != 220) {
            fail_with_reply(s, "relay refused STARTTLS; not sending in clear text", r);
            break;
        }
        /* Anything the relay sent after this 220 was not protected: drop it. */
        s->drop_input = true;
        s->state = S_TLS_STARTTLS;
        if (pmx_smtp_stream_start_tls(s->stream, s->env.tls_ctx, s->cfg->host) < 0) {
            session_fail(s, "%s", pmx_smtp_stream_reason(s->stream));
            break;
        }
        arm(s, s->cfg->connect_timeout_ms);
        break;

    case S_AUTH_PLAIN:
    case S_AUTH_LOGIN_PASS:
        if (c == 235) become_ready(s);
        else fail_with_reply(s, "relay refused AUTH", r);
        break;

    case S_AUTH_LOGIN_USER:
        if (c == 334) send_login_password(s);
        else fail_with_reply(s, "relay refused AUTH", r);
        break;

    case S_RSET:
        s->got_reply = true;
        if (c / 100 != 2) {
            fail_with_reply(s, "relay refused RSET", r);
        } else if (s->pipelined) {
            s->state = S_MAIL;
        } else {
            send_mail(s);
        }
        break;

    case S_MAIL:
        s->got_reply = true;
        save_reply(&s->mail_r, r);
        if (s->pipelined) {
            s->state = S_RCPT;            /* the RCPT and DATA replies follow regardless */
        } else if (c / 100 == 2) {
            send_rcpt(s, 0);
        } else {
            complete_msg(s, NULL);
            txn_done(s);
        }
        break;

    case S_RCPT: {
        size_t i = s->rcpt_replied++;
        save_reply(&s->rr[i], r);
        if (c / 100 == 2 && s->mail_r.code / 100 == 2) s->accepted++;
        if (s->pipelined) {
            if (s->rcpt_replied == s->plan.nsend) s->state = S_DATA;
        } else if (s->rcpt_replied < s->plan.nsend) {
            send_rcpt(s, s->rcpt_replied);
        } else if (s->accepted == 0) {
            complete_msg(s, NULL);        /* no DATA; the next transaction starts with RSET */
            txn_done(s);
        } else {
            send_cmd(s, S_DATA, "DATA");
        }
        break;
    }

    case S_DATA:
        if (c == 354) {
            start_body(s, s->accepted == 0);
        } else if (c / 100 == 4 || c / 100 == 5) {
            save_reply(&s->final_r, r);
            s->final_after = "DATA";
            complete_msg(s, NULL);
            txn_done(s);
        } else {
            fail_with_reply(s, "unexpected reply to DATA", r);
        }
        break;

    case S_DOT:
        s->txn_open = false;              /* any reply to "." ends the transaction */
        save_reply(&s->final_r, r);
        s->final_after = "end of data";
        if (s->accepted == 0) s->final_r.set = false;   /* the empty message decides nobody */
        complete_msg(s, NULL);
        if (s->next) start_next(s);        /* NULL if a close meanwhile handed it back */
        else txn_done(s);
        break;

    case S_BODY:                          /* the relay answered before the end of data */
        if (c / 100 == 4 || c / 100 == 5) {
            save_reply(&s->final_r, r);
            s->final_after = "message body";
        }
        fail_with_reply(s, "relay replied before the end of data", r);
        break;

    case S_QUIT:
        close_session(s, NULL);
        break;

    case S_READY:
        if (c == 421) close_session(s, NULL);   /* the relay's idle timeout */
        else fail_with_reply(s, "unexpected reply while idle", r);
        break;

    case S_RESOLVING: case S_CONNECTING: case S_TLS_IMPLICIT: case S_TLS_STARTTLS:
    case S_CLOSING:
        fail_with_reply(s, "unexpected reply", r);
        break;
    }
}

/* Parses every complete reply in the input buffer and runs on_reply on each. */
static void process_input(pmx_smtp_session_t *s)
{
    size_t off = 0;
    while (s->state != S_CLOSING) {
        size_t used;
        int rc = pmx_smtp_reply_parse(&s->reply, s->in.data + off, s->in.len - off, &used);
        if (rc == 0) break;
        if (rc < 0) {
            session_fail(s, "bad reply from relay: %s", pmx_smtp_reply_strerror(rc));
            return;
        }
        off += used;
        /* 421 in the middle of a transaction: the relay is closing; replies still due never come. */
        if (s->reply.code == 421 && s->msg && s->state >= S_RSET && s->state <= S_DOT) {
            if (!hand_back_unanswered(s)) {
                s->got_reply = true;
                pmx_smtp_outcome_t rest = { PMX_SMTP_TEMPFAIL, 421, s->reply.enhanced,
                                            pmx_buf_cstr(&s->reply.text), state_after[s->state] };
                complete_msg(s, &rest);
            }
            close_session(s, "relay closed the session (421)");
            return;
        }
        on_reply(s, &s->reply);
        if (s->drop_input) {
            s->drop_input = false;
            if (s->in.len > off)
                pmx_log_warn("relay sent %zu bytes after its 220 to STARTTLS; discarded relay=%s:%d",
                             s->in.len - off, s->cfg->host, s->cfg->port);
            off = s->in.len;
        }
    }
    if (s->state != S_CLOSING) pmx_buf_consume(&s->in, off);
}

/* ---- stream callbacks ---- */

static void on_data(void *arg, const char *data, size_t n)
{
    pmx_smtp_session_t *s = arg;
    if (s->state == S_CLOSING) return;
    pmx_buf_append(&s->in, data, n);
    process_input(s);
}

static void on_event(void *arg, pmx_smtp_stream_event_t ev, int status, const char *reason)
{
    pmx_smtp_session_t *s = arg;
    if (ev == PMX_SMTP_STREAM_CLOSED) {
        handle_closed(s);
        return;
    }
    if (s->state == S_CLOSING) return;
    switch (ev) {
    case PMX_SMTP_STREAM_CONNECTED:
        if (status < 0) {
            snprintf(s->last_connect_error, sizeof s->last_connect_error, "%s", uv_strerror(status));
            pmx_smtp_stream_close(s->stream);
            s->stream = NULL;
            connect_next(s);
        } else if (s->cfg->tls == PMX_TLS_IMPLICIT) {
            s->state = S_TLS_IMPLICIT;
            if (pmx_smtp_stream_start_tls(s->stream, s->env.tls_ctx, s->cfg->host) < 0)
                session_fail(s, "%s", pmx_smtp_stream_reason(s->stream));
            else
                arm(s, s->cfg->connect_timeout_ms);
        } else {
            s->state = S_GREETING;
            arm(s, s->cfg->command_timeout_ms);
        }
        break;
    case PMX_SMTP_STREAM_HANDSHAKE:
        if (status < 0) {
            session_fail(s, "%s", reason);
        } else if (s->state == S_TLS_IMPLICIT) {
            s->tls_up = true;
            s->state = S_GREETING;
            arm(s, s->cfg->command_timeout_ms);
        } else {
            s->tls_up = true;
            send_ehlo(s);
        }
        break;
    case PMX_SMTP_STREAM_DRAINED:
        if (s->state == S_BODY) write_body(s);
        break;
    case PMX_SMTP_STREAM_EOF:
        if (s->state == S_QUIT) close_session(s, NULL);
        else if (s->state == S_READY) close_session(s, NULL);    /* idle connection dropped */
        else session_fail(s, "connection closed by relay during %s", state_after[s->state]);
        break;
    case PMX_SMTP_STREAM_ERROR:
        if (s->state == S_QUIT) close_session(s, NULL);
        else session_fail(s, "%s", reason ? reason : "connection error");
        break;
    case PMX_SMTP_STREAM_CLOSED:
        break;
    }
}

static const pmx_smtp_stream_cbs_t stream_cbs = { on_data, on_event };

/* Tries the next resolved address; fails the session when none is left. */
static void connect_next(pmx_smtp_session_t *s)
{
    while (s->addr_i < s->naddrs) {
        const struct sockaddr *sa = (const struct sockaddr *)&s->addrs[s->addr_i++];
        struct sockaddr_storage src;
        if (s->cfg->source &&
            s->cfg->source(s->cfg->source_arg, sa->sa_family, &src, s->last_connect_error,
                           sizeof s->last_connect_error) < 0)
            continue;
        s->stream = pmx_smtp_stream_new(s->env.loop, &stream_cbs, s);
        s->open_handles++;
        int rc = s->cfg->source ? pmx_smtp_stream_bind(s->stream, (const struct sockaddr *)&src) : 0;
        if (rc < 0) {
            char a[INET6_ADDRSTRLEN] = "?";
            if (src.ss_family == AF_INET6)
                uv_ip6_name((const struct sockaddr_in6 *)&src, a, sizeof a);
            else
                uv_ip4_name((const struct sockaddr_in *)&src, a, sizeof a);
            snprintf(s->last_connect_error, sizeof s->last_connect_error,
                     "cannot bind source address %s: %s", a, uv_strerror(rc));
        }
        if (rc == 0) {
            rc = pmx_smtp_stream_connect(s->stream, sa);
            if (rc == 0) {
                s->state = S_CONNECTING;
                arm(s, s->cfg->connect_timeout_ms);
                return;
            }
            snprintf(s->last_connect_error, sizeof s->last_connect_error, "%s", uv_strerror(rc));
        }
        pmx_smtp_stream_close(s->stream);
        s->stream = NULL;
    }
    session_fail(s, "cannot connect to relay %s:%d: %s", s->cfg->host, s->cfg->port,
                 s->last_connect_error[0] ? s->last_connect_error : "no address");
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    resolve_req_t *rr = (resolve_req_t *)req;
    pmx_smtp_session_t *s = rr->s;
    if (!s) {                             /* the session closed meanwhile */
        uv_freeaddrinfo(res);
        free(rr);
        return;
    }
    s->resolve = NULL;
    free(rr);
    if (status < 0) {
        uv_freeaddrinfo(res);
        session_fail(s, "cannot resolve relay host %s: %s", s->cfg->host, uv_strerror(status));
        return;
    }
    for (struct addrinfo *ai = res; ai && s->naddrs < MAX_ADDRS; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof s->addrs[0]) continue;
        memcpy(&s->addrs[s->naddrs++], ai->ai_addr, ai->ai_addrlen);
    }
    uv_freeaddrinfo(res);
    connect_next(s);
}

/* ---- public ---- */

pmx_smtp_session_t *pmx_smtp_session_new(const pmx_smtp_session_env_t *env)
{
    pmx_smtp_session_t *s = pmx_xcalloc(1, sizeof *s);
    s->env = *env;
    s->cfg = env->relay;
    pmx_smtp_reply_init(&s->reply);
    uv_timer_init(env->loop, &s->timer);
    s->timer.data = s;
    s->open_handles = 1;
    s->state = S_RESOLVING;

    const char *host = s->cfg->host;
    if (s->cfg->naddrs > 0) {                /* direct delivery: the route's addresses */
        for (int i = 0; i < s->cfg->naddrs && s->naddrs < MAX_ADDRS; i++)
            s->addrs[s->naddrs++] = s->cfg->addrs[i];
        connect_next(s);
        return s;
    }
    struct sockaddr_in *v4 = (struct sockaddr_in *)&s->addrs[0];
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&s->addrs[0];
    if (uv_ip4_addr(host, s->cfg->port, v4) == 0 || uv_ip6_addr(host, s->cfg->port, v6) == 0) {
        s->naddrs = 1;
        connect_next(s);
        return s;
    }
    char port[16];
    snprintf(port, sizeof port, "%d", s->cfg->port);
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
    resolve_req_t *rr = pmx_xcalloc(1, sizeof *rr);
    rr->s = s;
    int rc = uv_getaddrinfo(env->loop, &rr->req, on_resolved, host, port, &hints);
    if (rc < 0) {
        free(rr);
        session_fail(s, "cannot resolve relay host %s: %s", host, uv_strerror(rc));
        return s;
    }
    s->resolve = rr;
    arm(s, s->cfg->connect_timeout_ms);
    return s;
}

bool pmx_smtp_session_is_ready(const pmx_smtp_session_t *s)
{
    return s->state == S_READY;
}

bool pmx_smtp_session_can_take_next(const pmx_smtp_session_t *s)
{
    return can_take_next(s);
}

bool pmx_smtp_session_is_established(const pmx_smtp_session_t *s)
{
    return s->state >= S_READY && s->state <= S_QUIT;
}

bool pmx_smtp_session_is_connecting(const pmx_smtp_session_t *s)
{
    return s->state < S_READY;
}

void pmx_smtp_session_quit(pmx_smtp_session_t *s)
{
    if (s->state == S_READY) send_cmd(s, S_QUIT, "QUIT");
    else if (s->state < S_READY) close_session(s, NULL);
    else s->quit_after = true;
}

void pmx_smtp_session_abort(pmx_smtp_session_t *s, const char *reason)
{
    if (s->state == S_CLOSING) return;
    if (s->msg) {
        pmx_smtp_outcome_t rest = { PMX_SMTP_TEMPFAIL, 0, "", reason, state_after[s->state] };
        complete_msg(s, &rest);
    }
    close_session(s, reason);
}
