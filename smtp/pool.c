/*
 * The pool of relay sessions; see pool.h for the caller's contract.
 *
 * Shape: one FIFO of messages, an array of sessions (at most max_sessions
 * alive), and a dispatcher that runs from a uv_idle handle, so that sends,
 * closes and aborts requested from inside callbacks are acted on one loop
 * turn later and never re-enter a session. A session that becomes ready takes
 * the next queued message at once (on_ready), which keeps busy sessions busy
 * without a loop turn in between; so does a session that has just written a
 * message's end of data while no session is idle: the next message's commands
 * follow it (smtp/client.c).
 *
 * Connecting: while messages wait and fewer sessions are connecting than
 * messages waiting, new sessions are started up to max_sessions. After a
 * session fails before becoming ready ("failing"), only one connection attempt
 * runs at a time until one succeeds; when the last attempt fails and no
 * session is established, every queued message is deferred with that reason
 * rather than waiting for a relay that is not there.
 */
#include "smtp/pool.h"
#include "lib/addr.h"
#include "lib/log.h"
#include "lib/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HOST_MAX 512

typedef struct {
    pmx_smtp_msg_t    m;          /* first: the session frees a pool_msg_t through &m */
    pmx_smtp_pool_t  *pool;
    pmx_smtp_send_cb  cb;
    void             *arg;
} pool_msg_t;

struct pmx_smtp_pool {
    uv_loop_t              *loop;
    pmx_smtp_relay_t        cfg;          /* strings below are the pool's copies */
    char                   *host, *ca_file, *user, *password, *helo;
    pmx_smtp_tls_ctx_t     *tls;
    pmx_smtp_session_env_t  senv;

    pmx_smtp_session_t    **sess;
    unsigned                nsess, cap;
    pmx_smtp_msg_t         *qhead, *qtail;
    size_t                  qlen;

    uv_idle_t               idle;
    bool                    idle_on;
    struct sockaddr_storage *addrs;       /* cfg.addrs: the pool's copy */
    bool                  (*admit)(void *arg);
    void                  (*release)(void *arg);
    void                   *admit_arg;
    uv_timer_t              admit_timer;  /* asks admit again while refused */
    bool                    admit_timer_on;
    bool                    failing;      /* the last set-up failed; none succeeded since */
    bool                    closing, aborting, finished;
    void                  (*closed)(void *);
    void                   *closed_arg;
    pmx_smtp_pool_stats_t   st;
};

static void schedule(pmx_smtp_pool_t *p);

/* ---- the queue ---- */

static void q_push(pmx_smtp_pool_t *p, pmx_smtp_msg_t *m)
{
    m->next = NULL;
    if (p->qtail) p->qtail->next = m;
    else p->qhead = m;
    p->qtail = m;
    p->qlen++;
}

static void q_push_front(pmx_smtp_pool_t *p, pmx_smtp_msg_t *m)
{
    m->next = p->qhead;
    p->qhead = m;
    if (!p->qtail) p->qtail = m;
    p->qlen++;
}

static pmx_smtp_msg_t *q_pop(pmx_smtp_pool_t *p)
{
    pmx_smtp_msg_t *m = p->qhead;
    if (!m) return NULL;
    p->qhead = m->next;
    if (!p->qhead) p->qtail = NULL;
    p->qlen--;
    m->next = NULL;
    return m;
}

/* Every message ends here: count it, then hand the result to the caller. */
static void on_msg_done(void *arg, const pmx_smtp_result_t *res)
{
    pool_msg_t *pm = arg;
    pmx_smtp_pool_t *p = pm->pool;
    if (res->status == PMX_SMTP_SENT) p->st.sent++;
    else if (res->status == PMX_SMTP_TEMPFAIL) p->st.tempfail++;
    else p->st.permfail++;
    pm->cb(pm->arg, res);
}

/* ---- sessions ---- */

/* Gives queued messages to s while it is ready. */
static void feed(pmx_smtp_pool_t *p, pmx_smtp_session_t *s)
{
    while (p->qhead && !p->aborting && pmx_smtp_session_is_ready(s))
        (void)pmx_smtp_session_start(s, q_pop(p));    /* -1: the message ended locally */
}

static bool any_ready(const pmx_smtp_pool_t *p)
{
    for (unsigned i = 0; i < p->nsess; i++)
        if (pmx_smtp_session_is_ready(p->sess[i])) return true;
    return false;
}

static void on_ready(void *owner, pmx_smtp_session_t *s)
{
    pmx_smtp_pool_t *p = owner;
    p->failing = false;
    if (p->aborting) {
        schedule(p);
        return;
    }
    if (!pmx_smtp_session_is_ready(s)) {
        /* s has just written an end of data, and the next message may follow it
         * (smtp/client.c): only what waits while no session is idle goes there;
         * an idle session takes it at once, on the next dispatch. */
        if (p->qhead && pmx_smtp_session_can_take_next(s) && !any_ready(p))
            (void)pmx_smtp_session_start(s, q_pop(p));   /* -1: it ended locally */
        return;
    }
    feed(p, s);
    if (!p->qhead && p->closing && pmx_smtp_session_is_ready(s)) pmx_smtp_session_quit(s);
}

static void on_closed(void *owner, pmx_smtp_session_t *s, bool was_ready, const char *reason,
                      const char *where, pmx_smtp_msg_t *unsent)
{
    pmx_smtp_pool_t *p = owner;
    for (unsigned i = 0; i < p->nsess; i++) {
        if (p->sess[i] == s) {
            p->sess[i] = p->sess[--p->nsess];
            break;
        }
    }
    if (p->release) p->release(p->admit_arg);
    if (unsent) {
        unsent->retried = true;
        q_push_front(p, unsent);
    }
    if (!was_ready && reason && !p->aborting) {
        p->failing = true;
        bool alive = false;
        for (unsigned i = 0; i < p->nsess && !alive; i++)
            alive = pmx_smtp_session_is_established(p->sess[i])
                    || pmx_smtp_session_is_connecting(p->sess[i]);
        if (!alive && p->qhead) {
            char why[600];
            snprintf(why, sizeof why, "%s", reason);
            pmx_smtp_pool_fail_queued(p, PMX_SMTP_TEMPFAIL, where, why);
        }
    }
    schedule(p);
}

static void spawn(pmx_smtp_pool_t *p)
{
    if (p->nsess == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 8;
        p->sess = pmx_xrealloc(p->sess, p->cap * sizeof *p->sess);
    }
    p->st.connections++;
    p->sess[p->nsess++] = pmx_smtp_session_new(&p->senv);
}

/* ---- the dispatcher ---- */

static void on_idle_closed(uv_handle_t *h);

static void on_admit_timer_closed(uv_handle_t *h)
{
    pmx_smtp_pool_t *p = h->data;
    uv_close((uv_handle_t *)&p->idle, on_idle_closed);
}

static void on_admit_timer(uv_timer_t *t)
{
    pmx_smtp_pool_t *p = t->data;
    p->admit_timer_on = false;
    schedule(p);
}

static void on_idle_closed(uv_handle_t *h)
{
    pmx_smtp_pool_t *p = h->data;
    if (p->closed) p->closed(p->closed_arg);
    pmx_smtp_tls_ctx_free(p->tls);
    free(p->sess);
    free(p->host);
    free(p->ca_file);
    free(p->user);
    if (p->password) {
        pmx_wipe(p->password, strlen(p->password));
        free(p->password);
    }
    free(p->helo);
    free(p->addrs);
    free(p);
}

static void dispatch(uv_idle_t *h)
{
    pmx_smtp_pool_t *p = h->data;
    uv_idle_stop(&p->idle);
    p->idle_on = false;

    if (p->aborting) {
        pmx_smtp_pool_fail_queued(p, PMX_SMTP_TEMPFAIL, "shutdown", "relay client shut down");
        for (unsigned i = 0; i < p->nsess; i++)
            pmx_smtp_session_abort(p->sess[i], "relay client shut down");
        /* and what those callbacks sent meanwhile */
        pmx_smtp_pool_fail_queued(p, PMX_SMTP_TEMPFAIL, "shutdown", "relay client shut down");
    }

    for (unsigned i = 0; i < p->nsess && p->qhead; i++) feed(p, p->sess[i]);

    if (!p->aborting && p->qhead) {
        unsigned connecting = 0, live = 0;
        for (unsigned i = 0; i < p->nsess; i++) {
            bool c = pmx_smtp_session_is_connecting(p->sess[i]);
            connecting += c;
            live += c || pmx_smtp_session_is_established(p->sess[i]);
        }
        while (p->qlen > connecting && live < (unsigned)p->cfg.max_sessions
               && (!p->failing || connecting == 0)) {
            if (p->admit && !p->admit(p->admit_arg)) {
                /* The site is full on this host: ask again shortly. */
                if (!p->admit_timer_on) {
                    p->admit_timer_on = true;
                    uv_timer_start(&p->admit_timer, on_admit_timer, PMX_SMTP_POOL_ADMIT_RETRY_MS, 0);
                }
                break;
            }
            spawn(p);
            connecting++;
            live++;
        }
    }

    if (p->closing && !p->qhead) {
        for (unsigned i = 0; i < p->nsess; i++) pmx_smtp_session_quit(p->sess[i]);
        if (p->nsess == 0 && !p->finished) {
            p->finished = true;
            uv_timer_stop(&p->admit_timer);
            uv_close((uv_handle_t *)&p->admit_timer, on_admit_timer_closed);
        }
    }
}

static void schedule(pmx_smtp_pool_t *p)
{
    if (p->idle_on || p->finished) return;
    p->idle_on = true;
    uv_idle_start(&p->idle, dispatch);
}

/* ---- public ---- */

/* The relay host as configured: no controls, spaces or brackets, bounded. */
static bool host_ok(const char *a)
{
    size_t n = 0;
    for (const unsigned char *u = (const unsigned char *)a; *u; u++, n++)
        if (*u <= ' ' || *u == 0x7f || *u == '<' || *u == '>') return false;
    return n > 0 && n <= HOST_MAX;
}

/* A HELO name: a domain or an address literal, nothing that could end the command. */
static bool helo_ok(const char *h)
{
    size_t n = strlen(h);
    if (n == 0 || n > 255) return false;
    for (size_t i = 0; i < n; i++) {
        char c = h[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
              || c == '-' || c == '.' || c == '[' || c == ']' || c == ':' || c == '_'))
            return false;
    }
    return true;
}

static char *dup_or_null(const char *s)
{
    return s && *s ? pmx_xstrdup(s) : NULL;
}

int pmx_smtp_relay_from_config(const pmx_config_t *cfg, pmx_smtp_relay_t *out, char **password,
                               char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    *password = NULL;
    out->host = cfg->relay_host;
    out->port = cfg->relay_port;
    out->tls = cfg->relay_tls;
    out->tls_verify = cfg->relay_tls_verify;
    out->ca_file = cfg->relay_ca_file;
    out->helo_name = cfg->relay_helo_name;
    out->max_sessions = cfg->relay_connections_per_worker;
    if (cfg->relay_auth_user && *cfg->relay_auth_user) {
        if (!cfg->relay_auth_password_file || !*cfg->relay_auth_password_file) {
            snprintf(err, errlen, "relay auth_user is set but auth_password_file is not");
            return -1;
        }
        size_t len;
        char why[512];
        if (pmx_config_read_secret(cfg->relay_auth_password_file, password, &len, why, sizeof why) < 0) {
            snprintf(err, errlen, "relay auth_password_file: %s", why);
            return -1;
        }
        out->auth_user = cfg->relay_auth_user;
        out->auth_password = *password;
    }
    return 0;
}

int pmx_smtp_pool_new(uv_loop_t *loop, const pmx_smtp_relay_t *cfg, pmx_smtp_pool_t **out,
                      char *err, size_t errlen)
{
    if (!cfg->host || !*cfg->host || !host_ok(cfg->host)) {
        snprintf(err, errlen, "relay host: missing or invalid");
        return -1;
    }
    if (cfg->port < 1 || cfg->port > 65535) {
        snprintf(err, errlen, "relay port: %d is not in 1-65535", cfg->port);
        return -1;
    }
    char host_name[256];
    const char *helo = cfg->helo_name;
    if (!helo || !*helo) {
        if (gethostname(host_name, sizeof host_name) != 0) snprintf(host_name, sizeof host_name, "localhost");
        host_name[sizeof host_name - 1] = '\0';
        helo = host_name;
    }
    if (!helo_ok(helo)) {
        snprintf(err, errlen, "relay helo_name: \"%s\" is not a host name", helo);
        return -1;
    }
    pmx_smtp_tls_ctx_t *tls = NULL;
    if (cfg->tls != PMX_TLS_NONE
        && pmx_smtp_tls_ctx_new_client(&tls, cfg->tls_verify, cfg->ca_file, err, errlen) < 0)
        return -1;
    if (cfg->auth_user && *cfg->auth_user && cfg->tls == PMX_TLS_NONE)
        pmx_log_warn("relay AUTH will be sent in clear text (tls = none) relay=%s:%d",
                     cfg->host, cfg->port);

    pmx_smtp_pool_t *p = pmx_xcalloc(1, sizeof *p);
    p->loop = loop;
    p->tls = tls;
    p->cfg = *cfg;
    p->cfg.host = p->host = pmx_xstrdup(cfg->host);
    p->cfg.ca_file = p->ca_file = dup_or_null(cfg->ca_file);
    p->cfg.auth_user = p->user = dup_or_null(cfg->auth_user);
    p->cfg.auth_password = p->password = dup_or_null(cfg->auth_password);
    p->cfg.helo_name = p->helo = pmx_xstrdup(helo);
    if (p->cfg.max_sessions <= 0) p->cfg.max_sessions = PMX_SMTP_DEFAULT_SESSIONS;
    if (!p->cfg.connect_timeout_ms) p->cfg.connect_timeout_ms = PMX_SMTP_DEFAULT_CONNECT_TIMEOUT_MS;
    if (!p->cfg.command_timeout_ms) p->cfg.command_timeout_ms = PMX_SMTP_DEFAULT_COMMAND_TIMEOUT_MS;
    if (!p->cfg.data_timeout_ms) p->cfg.data_timeout_ms = PMX_SMTP_DEFAULT_DATA_TIMEOUT_MS;
    if (!p->cfg.idle_timeout_ms) p->cfg.idle_timeout_ms = PMX_SMTP_DEFAULT_IDLE_TIMEOUT_MS;

    p->senv = (pmx_smtp_session_env_t){
        .loop = loop, .relay = &p->cfg, .tls_ctx = tls, .owner = p,
        .on_ready = on_ready, .on_closed = on_closed,
    };
    uv_idle_init(loop, &p->idle);
    p->idle.data = p;
    uv_timer_init(loop, &p->admit_timer);
    p->admit_timer.data = p;
    if (cfg->naddrs > 0) pmx_smtp_pool_set_addrs(p, cfg->addrs, (size_t)cfg->naddrs);
    *out = p;
    return 0;
}

void pmx_smtp_pool_set_addrs(pmx_smtp_pool_t *p, const struct sockaddr_storage *addrs, size_t n)
{
    free(p->addrs);
    p->addrs = n ? pmx_xcalloc(n, sizeof *addrs) : NULL;
    if (n) memcpy(p->addrs, addrs, n * sizeof *addrs);
    p->cfg.addrs = p->addrs;
    p->cfg.naddrs = (int)n;
}

void pmx_smtp_pool_fail_queued(pmx_smtp_pool_t *p, pmx_smtp_status_t status, const char *after,
                               const char *reason)
{
    pmx_smtp_msg_t *m = p->qhead;
    p->qhead = p->qtail = NULL;
    p->qlen = 0;
    while (m) {
        pmx_smtp_msg_t *next = m->next;
        pmx__smtp_msg_fail(m, status, after, reason);
        m = next;
    }
}

void pmx_smtp_pool_quit_idle(pmx_smtp_pool_t *p)
{
    if (p->qhead || p->closing) return;
    /* Copied first: a session that fails to send its QUIT may close at once and take
     * itself out of p->sess. */
    pmx_smtp_session_t **idle = pmx_xcalloc(p->nsess ? p->nsess : 1, sizeof *idle);
    unsigned n = 0;
    for (unsigned i = 0; i < p->nsess; i++)
        if (pmx_smtp_session_is_ready(p->sess[i])) idle[n++] = p->sess[i];
    for (unsigned i = 0; i < n; i++) pmx_smtp_session_quit(idle[i]);
    free(idle);
}

void pmx_smtp_pool_set_admission(pmx_smtp_pool_t *p, bool (*admit)(void *arg),
                                 void (*release)(void *arg), void *arg)
{
    p->admit = admit;
    p->release = release;
    p->admit_arg = arg;
}

int pmx_smtp_pool_send(pmx_smtp_pool_t *p, const pmx_smtp_envelope_t *env,
                       const char *data, size_t len, pmx_smtp_send_cb cb, void *arg)
{
    if (p->closing) return UV_ESHUTDOWN;
    if (!env || !cb || !env->mail_from || !env->rcpts || env->nrcpts == 0 || (!data && len)) {
        pmx_log_error("relay send refused: missing envelope, recipients, data or callback");
        return UV_EINVAL;
    }
    /* The sender is shared by every recipient; a recipient is checked on its
     * own by the session (smtp/client.c), so one bad recipient fails alone. */
    if (env->mail_from[0] && !pmx_addr_envelope_ok(env->mail_from)) {
        pmx_log_error("relay send refused: the envelope sender is not an RFC 5321 mailbox");
        return UV_EINVAL;
    }
    pool_msg_t *pm = pmx_xcalloc(1, sizeof *pm);
    pm->m.env = *env;
    pm->m.data = data ? data : "";
    pm->m.len = len;
    pm->m.cb = on_msg_done;
    pm->m.arg = pm;
    pm->pool = p;
    pm->cb = cb;
    pm->arg = arg;
    q_push(p, &pm->m);
    schedule(p);
    return 0;
}

void pmx_smtp_pool_close(pmx_smtp_pool_t *p, void (*closed)(void *arg), void *arg)
{
    if (p->closing && p->closed) return;
    p->closing = true;
    p->closed = closed;
    p->closed_arg = arg;
    schedule(p);
}

void pmx_smtp_pool_abort(pmx_smtp_pool_t *p)
{
    p->closing = true;
    p->aborting = true;
    schedule(p);
}

void pmx_smtp_pool_stats(const pmx_smtp_pool_t *p, pmx_smtp_pool_stats_t *out)
{
    *out = p->st;
    out->sessions = p->nsess;
    out->busy = 0;
    for (unsigned i = 0; i < p->nsess; i++)
        out->busy += pmx_smtp_session_is_established(p->sess[i])
                     && !pmx_smtp_session_is_ready(p->sess[i]);
    out->queued = p->qlen;
}
