/*
 * An SMTP listener; see listener.h. The session list is a doubly linked list
 * of every session allocated and not freed (closing ones too); the limits
 * count the admitted ones.
 */
#include "smtp/listener.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "lib/mem.h"

struct pmx_smtp_listener {
    uv_loop_t               *loop;
    pmx_smtp_listener_opts_t opts;
    pmx_smtp_listener_cbs_t  cbs;
    pmx_smtp_server_cbs_t    server_cbs;   /* the kind's, with ours for write/starttls/close */
    void                    *arg;
    uv_tcp_t                 tcp;
    bool                     tcp_open;     /* until its close callback */
    pmx_smtp_session_t      *sessions;
    size_t                   nsessions;    /* until each is freed */
    uint64_t                 next_id;
    bool                     draining, stopping;
    void                   (*drain_done)(void *arg);
    void                    *drain_arg;
};

static void released(pmx_smtp_listener_t *l)
{
    if (l->cbs.released) l->cbs.released(l->arg);
}

/* ---- drain bookkeeping ------------------------------------------------------------- */

static void maybe_drained(pmx_smtp_listener_t *l)
{
    if (!l->draining || !l->drain_done || l->nsessions > 0) return;
    void (*fn)(void *) = l->drain_done;
    l->drain_done = NULL;
    pmx_log_info("%s drained", l->opts.name);
    fn(l->drain_arg);
}

static void tcp_closed(uv_handle_t *h)
{
    pmx_smtp_listener_t *l = h->data;
    l->tcp_open = false;
    released(l);
}

static void stop_listening(pmx_smtp_listener_t *l)
{
    /* Closes this process's copy of the socket only: the supervisor and the
     * other workers keep theirs, so the kernel keeps accepting for them. */
    if (l->tcp_open && !uv_is_closing((uv_handle_t *)&l->tcp))
        uv_close((uv_handle_t *)&l->tcp, tcp_closed);
}

/* ---- session lifetime -------------------------------------------------------------- */

static void session_handle_closed(pmx_smtp_session_t *s)
{
    if (--s->handles > 0) return;
    pmx_smtp_listener_t *l = s->l;
    if (s->prev) s->prev->next = s->next;
    else l->sessions = s->next;
    if (s->next) s->next->prev = s->prev;
    if (l->cbs.freed) l->cbs.freed(s);
    pmx_smtp_server_free(s->smtp);
    free(s);
    l->nsessions--;
    maybe_drained(l);
    released(l);
}

static void timer_closed(uv_handle_t *h)
{
    session_handle_closed(h->data);
}

/* The stream and every timer; the session is freed when all have closed. */
static void close_handles(pmx_smtp_session_t *s)
{
    uv_close((uv_handle_t *)&s->idle, timer_closed);
    for (int i = 0; i < s->ntimers; i++) uv_close((uv_handle_t *)s->timers[i], timer_closed);
    pmx_smtp_stream_close(s->stream);
}

void pmx_smtp_session_close(pmx_smtp_session_t *s)
{
    if (s->closing) return;
    s->closing = true;
    if (s->l->cbs.closing) s->l->cbs.closing(s);
    s->counted = false;
    close_handles(s);
    pmx_log_debug("%s session closed session=%llu client=%s", s->l->opts.name,
                  (unsigned long long)s->id, s->client);
}

void pmx_smtp_session_add_timer(pmx_smtp_session_t *s, uv_timer_t *t)
{
    if (s->ntimers >= PMX_SMTP_LISTENER_TIMERS) abort();   /* a kind's bug, not input */
    uv_timer_init(s->l->loop, t);
    t->data = s;
    s->timers[s->ntimers++] = t;
    s->handles++;
}

static void idle_cb(uv_timer_t *t)
{
    pmx_smtp_session_t *s = t->data;
    if (s->closing) return;
    if (s->timed_out) {            /* the client does not even read the 421 */
        pmx_smtp_session_close(s);
        return;
    }
    s->timed_out = true;
    pmx_log_info("%s timeout session=%llu client=%s", s->l->opts.name, (unsigned long long)s->id,
                 s->client);
    uv_timer_start(&s->idle, idle_cb, PMX_SMTP_LISTENER_CLOSE_GRACE_MS, 0);
    pmx_smtp_server_timeout(s->smtp);
}

/* Restarts the inactivity timer when the client completed a line. */
static void bump_idle(pmx_smtp_session_t *s)
{
    uint64_t p = pmx_smtp_server_progress(s->smtp);
    if (p == s->progress || s->closing || s->timed_out) return;
    s->progress = p;
    uv_timer_start(&s->idle, idle_cb, s->l->opts.idle_ms, 0);
}

/* ---- stream callbacks -------------------------------------------------------------- */

static void stream_data(void *arg, const char *data, size_t n)
{
    pmx_smtp_session_t *s = arg;
    if (s->closing) return;
    pmx_smtp_server_input(s->smtp, data, n);
    bump_idle(s);
}

static void stream_event(void *arg, pmx_smtp_stream_event_t ev, int status, const char *reason)
{
    pmx_smtp_session_t *s = arg;
    const char *name = s->l->opts.name;
    switch (ev) {
    case PMX_SMTP_STREAM_CONNECTED:
        break;
    case PMX_SMTP_STREAM_HANDSHAKE:
        if (status == 0) {
            pmx_log_debug("%s tls session=%llu client=%s tls=\"%s\"", name,
                          (unsigned long long)s->id, s->client, pmx_smtp_stream_tls_desc(s->stream));
        } else {
            pmx_log_info("%s TLS handshake failed session=%llu client=%s reason=\"%s\"", name,
                         (unsigned long long)s->id, s->client, reason ? reason : "");
        }
        pmx_smtp_server_tls_done(s->smtp, status == 0);
        break;
    case PMX_SMTP_STREAM_DRAINED:
        if (s->close_when_drained) pmx_smtp_session_close(s);
        break;
    case PMX_SMTP_STREAM_EOF:
        pmx_log_debug("%s client closed session=%llu client=%s", name, (unsigned long long)s->id,
                      s->client);
        pmx_smtp_session_close(s);
        break;
    case PMX_SMTP_STREAM_ERROR:
        pmx_log_debug("%s connection error session=%llu client=%s reason=\"%s\"", name,
                      (unsigned long long)s->id, s->client, reason ? reason : "");
        pmx_smtp_session_close(s);
        break;
    case PMX_SMTP_STREAM_CLOSED:
        session_handle_closed(s);
        break;
    }
}

/* ---- server callbacks: write, STARTTLS, close --------------------------------------- */

static void srv_write(void *arg, const char *data, size_t n)
{
    pmx_smtp_session_t *s = arg;
    if (s->closing) return;
    if (pmx_smtp_stream_write(s->stream, data, n) < 0) pmx_smtp_session_close(s);
}

static int srv_starttls(void *arg)
{
    pmx_smtp_session_t *s = arg;
    pmx_smtp_listener_t *l = s->l;
    if (!l->opts.tls || s->closing) return -1;
    if (pmx_smtp_stream_start_tls(s->stream, l->opts.tls, NULL) < 0) {
        pmx_log_info("%s STARTTLS failed session=%llu client=%s reason=\"%s\"", l->opts.name,
                     (unsigned long long)s->id, s->client, pmx_smtp_stream_reason(s->stream));
        return -1;
    }
    return 0;
}

static void srv_close(void *arg)
{
    pmx_smtp_session_t *s = arg;
    if (s->closing) return;
    if (pmx_smtp_stream_pending(s->stream) == 0) pmx_smtp_session_close(s);
    else s->close_when_drained = true;
}

/* ---- accepting --------------------------------------------------------------------- */

static const pmx_smtp_stream_cbs_t stream_cbs = { stream_data, stream_event };

/* Admitted sessions, from client (NULL: all). */
static size_t counted(const pmx_smtp_listener_t *l, const char *client)
{
    size_t n = 0;
    for (const pmx_smtp_session_t *s = l->sessions; s; s = s->next)
        if (s->counted && (!client || strcmp(s->client, client) == 0)) n++;
    return n;
}

/* The listener's limits, then the kind's; a refused session gets "421 4.7.0". */
static void admit(pmx_smtp_session_t *s)
{
    pmx_smtp_listener_t *l = s->l;
    const pmx_smtp_listener_opts_t *o = &l->opts;
    if (o->max_sessions > 0 && counted(l, NULL) >= (size_t)o->max_sessions) {
        pmx_log_warn("%s refused a connection client=%s reason=\"%d sessions open\"", o->name,
                     s->client, o->max_sessions);
        pmx_smtp_server_refuse(s->smtp, 421, "4.7.0", "Too many connections; try again later");
        return;
    }
    if (o->max_per_address > 0 && counted(l, s->client) >= (size_t)o->max_per_address) {
        pmx_log_warn("%s refused a connection client=%s reason=\"%d sessions from this address\"",
                     o->name, s->client, o->max_per_address);
        pmx_smtp_server_refuse(s->smtp, 421, "4.7.0",
                               "Too many connections from your address; try again later");
        return;
    }
    if (l->cbs.admit && !l->cbs.admit(s)) return;
    s->counted = true;
    pmx_smtp_server_start(s->smtp);
}

static void on_connection(uv_stream_t *server, int status)
{
    pmx_smtp_listener_t *l = server->data;
    if (status < 0) {
        pmx_log_warn("%s accept failed: %s", l->opts.name, uv_strerror(status));
        return;
    }
    if (l->draining || l->stopping) return;

    pmx_smtp_session_t *s = pmx_xcalloc(1, l->opts.session_size);
    s->l = l;
    s->id = ++l->next_id;
    s->handles = 2;                  /* the stream and the idle timer */
    s->next = l->sessions;
    if (s->next) s->next->prev = s;
    l->sessions = s;
    l->nsessions++;
    uv_timer_init(l->loop, &s->idle);
    s->idle.data = s;
    if (l->cbs.created) l->cbs.created(s);
    s->smtp = pmx_smtp_server_new(&l->opts.server, &l->server_cbs, s);
    s->stream = pmx_smtp_stream_new(l->loop, &stream_cbs, s);
    snprintf(s->client, sizeof s->client, "-");

    int rc = pmx_smtp_stream_accept(s->stream, server);
    if (rc < 0) {
        /* Another worker took it (EAGAIN), or the client left already. */
        if (rc != UV_EAGAIN) pmx_log_debug("%s accept: %s", l->opts.name, uv_strerror(rc));
        s->closing = true;
        close_handles(s);
        return;
    }
    struct sockaddr_storage peer;
    if (pmx_smtp_stream_peer(s->stream, &peer) == 0)
        l->opts.client_key((const struct sockaddr *)&peer, s->client);
    s->started = uv_now(l->loop);
    uv_timer_start(&s->idle, idle_cb, l->opts.idle_ms, 0);
    if (l->cbs.accepted) l->cbs.accepted(s);
    pmx_log_debug("%s session session=%llu client=%s", l->opts.name, (unsigned long long)s->id,
                  s->client);
    admit(s);
}

/* ---- public ------------------------------------------------------------------------ */

pmx_smtp_listener_t *pmx_smtp_listener_new(uv_loop_t *loop, const pmx_smtp_listener_opts_t *opts,
                                           const pmx_smtp_listener_cbs_t *cbs, void *arg)
{
    pmx_smtp_listener_t *l = pmx_xcalloc(1, sizeof *l);
    l->loop = loop;
    l->opts = *opts;
    l->opts.server.starttls = opts->tls != NULL;
    l->cbs = *cbs;
    l->server_cbs = cbs->server;
    l->server_cbs.write = srv_write;
    l->server_cbs.starttls = srv_starttls;
    l->server_cbs.close = srv_close;
    l->arg = arg;
    uv_tcp_init(loop, &l->tcp);
    l->tcp.data = l;
    l->tcp_open = true;
    return l;
}

int pmx_smtp_listener_listen(pmx_smtp_listener_t *l, int fd)
{
    int r = uv_tcp_open(&l->tcp, fd);
    if (r == 0) r = uv_listen((uv_stream_t *)&l->tcp, 511, on_connection);
    return r;
}

void pmx_smtp_listener_drain(pmx_smtp_listener_t *l, void (*done)(void *arg), void *arg)
{
    l->draining = true;
    l->drain_done = done;
    l->drain_arg = arg;
    stop_listening(l);
    for (pmx_smtp_session_t *s = l->sessions; s; s = s->next)
        if (!s->closing) pmx_smtp_server_drain(s->smtp);
    pmx_log_info("%s draining sessions=%zu", l->opts.name, l->nsessions);
    maybe_drained(l);
}

void pmx_smtp_listener_stop(pmx_smtp_listener_t *l)
{
    l->stopping = true;
    l->drain_done = NULL;
    stop_listening(l);
    for (pmx_smtp_session_t *s = l->sessions; s; s = s->next) pmx_smtp_session_close(s);
    pmx_smtp_tls_ctx_free(l->opts.tls);
    l->opts.tls = NULL;
}

bool pmx_smtp_listener_idle(const pmx_smtp_listener_t *l)
{
    return l->stopping && !l->tcp_open && l->nsessions == 0;
}

void pmx_smtp_listener_free(pmx_smtp_listener_t *l)
{
    free(l);
}

size_t pmx_smtp_listener_sessions(const pmx_smtp_listener_t *l)
{
    return l->nsessions;
}

void *pmx_smtp_listener_arg(const pmx_smtp_listener_t *l)
{
    return l->arg;
}

pmx_smtp_tls_ctx_t *pmx_smtp_listener_tls(const pmx_smtp_listener_t *l)
{
    return l->opts.tls;
}
