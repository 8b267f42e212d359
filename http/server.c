/*
 * libmicrohttpd on a libuv loop; see server.h.
 *
 * How it sits on the loop: the daemon runs in libmicrohttpd's external-event
 * mode with MHD_USE_EPOLL, so all of its sockets (the inherited listener, the
 * connections, the inter-thread channel that MHD_resume_connection writes to)
 * sit in one epoll set of its own. That one epoll fd is watched by a
 * uv_poll_t for readability; when it fires, or when the uv timer armed from
 * MHD_get_timeout() expires, MHD_run() does the work without blocking (it
 * polls its own set with a zero timeout) and the timer is re-armed. This is
 * cheaper and simpler than MHD_get_fdset(), which would mean rebuilding
 * fd_sets and re-registering every socket with libuv on each turn, and it has
 * no FD_SETSIZE limit.
 *
 * Answers that wait for Redis or Postgres suspend their connection
 * (MHD_suspend_connection) and resume it once pmx_http_respond is called; the
 * access handler is then called again and queues the stored answer.
 *
 * The request deadline (server.h): a 1 s sweep shuts down the socket of a
 * connection whose request has not arrived whole within idle_timeout_s;
 * libmicrohttpd then sees the end of the stream and closes it itself (the fd
 * stays owned by it).
 */
#include "http/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "lib/mem.h"
#include "lib/utf8.h"

#define SWEEP_MS 1000

typedef struct conn conn_t;

struct pmx_http_server {
    uv_loop_t             *loop;
    struct MHD_Daemon     *mhd;
    char                   name[16];
    pmx_http_server_opts_t o;
    pmx_http_handler_fn    handler;
    void                  *arg;
    uv_poll_t              poll;
    uv_timer_t             timer;      /* MHD_get_timeout */
    uv_timer_t             sweep;      /* request deadlines */
    int                    handles;    /* not closed yet */
    bool                   accepting;
    bool                   closing;
    conn_t                *conns;
    pmx_http_req_t        *pending;    /* handed to the handler, not answered */
    size_t                 npending;
};

struct conn {
    conn_t                *prev, *next;
    struct MHD_Connection *mc;
    int                    fd;
    uint64_t               since;      /* connection start or last answer (loop ms) */
    bool                   in_request; /* the request arrived whole */
    bool                   cut;
};

struct pmx_http_req {
    pmx_http_server_t     *srv;
    struct MHD_Connection *mc;
    conn_t                *conn;
    pmx_http_req_t        *prev, *next;   /* srv->pending while listed */
    bool                   listed;
    char                   method[16];
    char                  *path;
    char                   client[INET6_ADDRSTRLEN];
    pmx_buf_t              body;
    bool                   too_large;
    bool                   dispatched;
    bool                   in_handler;
    bool                   suspended;
    bool                   answered;
    bool                   aborted;
    int                    status;
    char                  *ctype;
    pmx_buf_t              resp;
    pmx_buf_t              headers;       /* "name\0value\0" ... */
    void                 (*abort_fn)(void *arg);
    void                  *abort_arg;
};

/* ---- helpers ---------------------------------------------------------------------- */

const char *pmx_http_status_title(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default:  return "Error";
    }
}

/* s as a JSON string. A detail may quote input cut at a byte count (mid-character)
 * or a path's %XX bytes: what is not UTF-8 becomes U+FFFD, so the document is JSON. */
static void json_str(pmx_buf_t *b, const char *s)
{
    pmx_buf_append_char(b, '"');
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        size_t k;
        if (c == '"' || c == '\\') {
            pmx_buf_appendf(b, "\\%c", c);
        } else if (c < 0x20 || c == 0x7f) {
            pmx_buf_appendf(b, "\\u%04x", c);
        } else if (c < 0x80) {
            pmx_buf_append_char(b, (char)c);
        } else if ((k = pmx_utf8_seq(s + i, n - i, NULL)) > 0) {
            pmx_buf_append(b, s + i, k);
            i += k - 1;
        } else {
            pmx_buf_append_str(b, "\\ufffd");
        }
    }
    pmx_buf_append_char(b, '"');
}

void pmx_http_problem_json(pmx_buf_t *b, int status, const char *detail, const char *field)
{
    pmx_buf_append_str(b, "{\"type\":\"about:blank\",\"title\":");
    json_str(b, pmx_http_status_title(status));
    pmx_buf_appendf(b, ",\"status\":%d,\"detail\":", status);
    json_str(b, detail);
    if (field) {
        pmx_buf_append_str(b, ",\"field\":");
        json_str(b, field);
    }
    pmx_buf_append_str(b, "}\n");
}

void pmx_http_problem(pmx_http_req_t *req, int status, const char *detail, const char *field)
{
    pmx_buf_t b = PMX_BUF_INIT;
    pmx_http_problem_json(&b, status, detail, field);
    pmx_http_respond(req, status, "application/problem+json", b.data, b.len);
    pmx_buf_free(&b);
}

/* An error the server answers itself (before or instead of the handler). */
static void server_error(pmx_http_req_t *req, int status, const char *detail)
{
    if (req->srv->o.problem_json) {
        pmx_http_problem(req, status, detail, NULL);
    } else {
        pmx_buf_t b = PMX_BUF_INIT;
        pmx_buf_appendf(&b, "%s\n", detail);
        pmx_http_respond(req, status, "text/plain; charset=utf-8", b.data, b.len);
        pmx_buf_free(&b);
    }
}

/* ---- driving MHD from the loop ------------------------------------------------------ */

static void run_cb(uv_timer_t *t);

static void arm(pmx_http_server_t *s)
{
    MHD_UNSIGNED_LONG_LONG ms;
    if (s->closing) return;
    if (MHD_get_timeout(s->mhd, &ms) == MHD_YES)
        uv_timer_start(&s->timer, run_cb, (uint64_t)ms, 0);
    else
        uv_timer_stop(&s->timer);
}

static void run(pmx_http_server_t *s)
{
    if (s->closing) return;
    MHD_run(s->mhd);
    arm(s);
}

static void run_cb(uv_timer_t *t)
{
    run(t->data);
}

static void poll_cb(uv_poll_t *p, int status, int events)
{
    (void)events;
    pmx_http_server_t *s = p->data;
    if (status < 0) pmx_log_warn("%s: polling failed: %s", s->name, uv_strerror(status));
    run(s);
}

/* Runs MHD on the next loop turn (after a resume, a cut). */
static void kick(pmx_http_server_t *s)
{
    if (!s->closing) uv_timer_start(&s->timer, run_cb, 0, 0);
}

static void sweep_cb(uv_timer_t *t)
{
    pmx_http_server_t *s = t->data;
    uint64_t now = uv_now(s->loop), limit = (uint64_t)s->o.idle_timeout_s * 1000u;
    bool cut = false;
    for (conn_t *c = s->conns; c; c = c->next) {
        if (c->in_request || c->cut || now - c->since < limit) continue;
        c->cut = true;
        cut = true;
        pmx_log_debug("%s: request not complete within %us; closing the connection", s->name,
                      s->o.idle_timeout_s);
        if (c->fd >= 0) shutdown(c->fd, SHUT_RDWR);
    }
    if (cut) kick(s);
}

/* ---- MHD callbacks ------------------------------------------------------------------ */

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    pmx_http_server_t *s = cls;
    if (pmx_log_get_level() > PMX_LOG_DEBUG) return;
    pmx_buf_t b = PMX_BUF_INIT;
    pmx_buf_vappendf(&b, fmt, ap);
    while (b.len && (b.data[b.len - 1] == '\n' || b.data[b.len - 1] == '\r')) b.data[--b.len] = 0;
    pmx_log_debug("%s: libmicrohttpd: %s", s->name, pmx_buf_cstr(&b));
    pmx_buf_free(&b);
}

static void conn_notify(void *cls, struct MHD_Connection *mc, void **socket_context,
                        enum MHD_ConnectionNotificationCode toe)
{
    pmx_http_server_t *s = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        conn_t *c = pmx_xcalloc(1, sizeof *c);
        c->mc = mc;
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
        c->fd = ci ? ci->connect_fd : -1;
        c->since = uv_now(s->loop);
        c->next = s->conns;
        if (c->next) c->next->prev = c;
        s->conns = c;
        *socket_context = c;
        return;
    }
    conn_t *c = *socket_context;
    if (!c) return;
    if (c->prev) c->prev->next = c->next;
    else s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    free(c);
    *socket_context = NULL;
}

static void pending_remove(pmx_http_req_t *r)
{
    if (!r->listed) return;
    pmx_http_server_t *s = r->srv;
    if (r->prev) r->prev->next = r->next;
    else s->pending = r->next;
    if (r->next) r->next->prev = r->prev;
    r->listed = false;
    s->npending--;
}

static void req_free(pmx_http_req_t *r)
{
    pending_remove(r);
    free(r->path);
    free(r->ctype);
    /* A body may carry a secret (PATCH's route_password): not left in freed memory. */
    pmx_buf_free_secret(&r->body);
    pmx_buf_free(&r->resp);
    pmx_buf_free(&r->headers);
    free(r);
}

static void request_completed(void *cls, struct MHD_Connection *mc, void **con_cls,
                              enum MHD_RequestTerminationCode toe)
{
    pmx_http_server_t *s = cls;
    (void)mc;
    (void)toe;
    pmx_http_req_t *r = *con_cls;
    if (!r) return;
    if (r->conn) {
        r->conn->in_request = false;
        r->conn->since = uv_now(s->loop);
    }
    if (r->listed && !r->aborted && r->abort_fn) {
        /* The connection died while the handler was busy with it. */
        r->aborted = true;
        r->abort_fn(r->abort_arg);
    }
    req_free(r);
    *con_cls = NULL;
}

static enum MHD_Result queue_answer(pmx_http_req_t *r)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(r->resp.len, r->resp.data, MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            r->ctype ? r->ctype : "text/plain; charset=utf-8");
    for (size_t i = 0; i < r->headers.len;) {
        const char *n = r->headers.data + i;
        const char *v = n + strlen(n) + 1;
        MHD_add_response_header(resp, n, v);
        i = (size_t)(v + strlen(v) + 1 - r->headers.data);
    }
    if (r->too_large) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ok = MHD_queue_response(r->mc, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return ok;
}

static bool body_expected_too_large(const pmx_http_req_t *r, size_t max)
{
    const char *cl = MHD_lookup_connection_value(r->mc, MHD_HEADER_KIND, "Content-Length");
    if (!cl) return false;
    char *end;
    unsigned long long n = strtoull(cl, &end, 10);
    return *end == '\0' && n > max;
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *mc, const char *url,
                                 const char *method, const char *version,
                                 const char *upload_data, size_t *upload_data_size,
                                 void **con_cls)
{
    pmx_http_server_t *s = cls;
    (void)version;
    pmx_http_req_t *r = *con_cls;

    if (!r) {   /* the head is complete */
        r = pmx_xcalloc(1, sizeof *r);
        r->srv = s;
        r->mc = mc;
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(mc, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        r->conn = ci ? ci->socket_context : NULL;
        snprintf(r->method, sizeof r->method, "%s", method);
        r->path = pmx_xstrdup(url);
        snprintf(r->client, sizeof r->client, "-");
        ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (ci && ci->client_addr) {
            const struct sockaddr *sa = ci->client_addr;
            if (sa->sa_family == AF_INET)
                inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, r->client,
                          sizeof r->client);
            else if (sa->sa_family == AF_INET6)
                inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, r->client,
                          sizeof r->client);
        }
        *con_cls = r;
        if (body_expected_too_large(r, s->o.max_body)) {
            r->too_large = true;
            r->in_handler = true;
            server_error(r, 413, "the request body is larger than this server accepts");
            r->in_handler = false;
            return queue_answer(r);
        }
        return MHD_YES;
    }

    if (*upload_data_size > 0) {   /* a piece of the body */
        if (!r->too_large && r->body.len + *upload_data_size > s->o.max_body) {
            r->too_large = true;
            pmx_buf_free(&r->body);
        }
        if (!r->too_large) pmx_buf_append(&r->body, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }

    if (r->aborted) return MHD_NO;
    if (r->answered) {
        if (r->suspended) r->suspended = false;
        return queue_answer(r);
    }
    if (r->dispatched) return MHD_YES;   /* spurious call while waiting */

    /* The request is whole. */
    r->dispatched = true;
    if (r->conn) r->conn->in_request = true;
    r->in_handler = true;
    if (r->too_large) server_error(r, 413, "the request body is larger than this server accepts");
    else s->handler(s->arg, r);
    r->in_handler = false;
    if (r->answered) return queue_answer(r);
    /* Answered later: wait without polling the client. */
    r->next = s->pending;
    if (r->next) r->next->prev = r;
    r->prev = NULL;
    s->pending = r;
    r->listed = true;
    s->npending++;
    r->suspended = true;
    MHD_suspend_connection(mc);
    return MHD_YES;
}

/* ---- requests, public ------------------------------------------------------------ */

const char *pmx_http_req_method(const pmx_http_req_t *r) { return r->method; }
const char *pmx_http_req_path(const pmx_http_req_t *r) { return r->path; }
const char *pmx_http_req_client(const pmx_http_req_t *r) { return r->client; }

const char *pmx_http_req_header(const pmx_http_req_t *r, const char *name)
{
    return MHD_lookup_connection_value(r->mc, MHD_HEADER_KIND, name);
}

const char *pmx_http_req_arg(const pmx_http_req_t *r, const char *name)
{
    return MHD_lookup_connection_value(r->mc, MHD_GET_ARGUMENT_KIND, name);
}

const char *pmx_http_req_body(const pmx_http_req_t *r, size_t *len)
{
    *len = r->body.len;
    return r->body.data ? r->body.data : "";
}

void pmx_http_req_on_abort(pmx_http_req_t *r, void (*fn)(void *arg), void *arg)
{
    r->abort_fn = fn;
    r->abort_arg = arg;
}

void pmx_http_req_add_header(pmx_http_req_t *r, const char *name, const char *value)
{
    pmx_buf_append(&r->headers, name, strlen(name) + 1);
    pmx_buf_append(&r->headers, value, strlen(value) + 1);
}

void pmx_http_respond(pmx_http_req_t *r, int status, const char *content_type, const char *body,
                      size_t len)
{
    if (r->answered || r->aborted) return;
    r->answered = true;
    r->status = status;
    free(r->ctype);
    r->ctype = pmx_xstrdup(content_type ? content_type : "text/plain; charset=utf-8");
    pmx_buf_reset(&r->resp);
    pmx_buf_append(&r->resp, body, len);
    if (r->in_handler) return;   /* access_cb queues it */
    pending_remove(r);
    if (r->suspended) {
        MHD_resume_connection(r->mc);
        kick(r->srv);
    }
}

/* ---- the server -------------------------------------------------------------------- */

static void handle_closed(uv_handle_t *h)
{
    pmx_http_server_t *s = h->data;
    if (--s->handles == 0) free(s);
}

pmx_http_server_t *pmx_http_server_new(uv_loop_t *loop, int fd, const pmx_http_server_opts_t *o,
                                       pmx_http_handler_fn handler, void *arg,
                                       char *err, size_t errlen)
{
    pmx_http_server_t *s = pmx_xcalloc(1, sizeof *s);
    s->loop = loop;
    s->o = *o;
    s->o.tls_cert_pem = s->o.tls_key_pem = NULL;   /* not kept */
    snprintf(s->name, sizeof s->name, "%s", o->name ? o->name : "http");
    s->handler = handler;
    s->arg = arg;

    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    bool tls = o->tls_cert_pem && o->tls_key_pem;
    if (tls) flags |= MHD_USE_TLS;
    struct MHD_OptionItem opts[16];
    int n = 0;
    opts[n++] = (struct MHD_OptionItem){ MHD_OPTION_LISTEN_SOCKET, fd, NULL };
    opts[n++] = (struct MHD_OptionItem){ MHD_OPTION_CONNECTION_TIMEOUT,
                                         (intptr_t)o->idle_timeout_s, NULL };
    opts[n++] = (struct MHD_OptionItem){ MHD_OPTION_CONNECTION_LIMIT,
                                         (intptr_t)o->max_connections, NULL };
    if (o->max_per_address)
        opts[n++] = (struct MHD_OptionItem){ MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                                             (intptr_t)o->max_per_address, NULL };
    opts[n++] = (struct MHD_OptionItem){ MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                                         (intptr_t)o->memory_limit, NULL };
    opts[n++] = (struct MHD_OptionItem){ MHD_OPTION_STRICT_FOR_CLIENT, 1, NULL };
    if (tls) {
        opts[n++] = (struct MHD_OptionItem){ MHD_OPTION_HTTPS_MEM_CERT, 0,
                                             (void *)o->tls_cert_pem };
        opts[n++] = (struct MHD_OptionItem){ MHD_OPTION_HTTPS_MEM_KEY, 0,
                                             (void *)o->tls_key_pem };
    }
    opts[n++] = (struct MHD_OptionItem){ MHD_OPTION_END, 0, NULL };

    s->mhd = MHD_start_daemon(flags, 0, NULL, NULL, access_cb, s,
                              MHD_OPTION_ARRAY, opts,
                              MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,
                              MHD_OPTION_NOTIFY_COMPLETED, request_completed, s,
                              MHD_OPTION_NOTIFY_CONNECTION, conn_notify, s,
                              MHD_OPTION_END);
    if (!s->mhd) {
        snprintf(err, errlen, "%s: libmicrohttpd could not start on the listening socket%s",
                 s->name, tls ? " (is the TLS certificate and key valid?)" : "");
        free(s);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    int epfd = di ? di->epoll_fd : -1;
    int rc = epfd >= 0 ? uv_poll_init(loop, &s->poll, epfd) : UV_EINVAL;
    if (rc != 0) {
        snprintf(err, errlen, "%s: cannot watch libmicrohttpd's epoll fd: %s", s->name,
                 uv_strerror(rc));
        MHD_stop_daemon(s->mhd);
        free(s);
        return NULL;
    }
    s->poll.data = s;
    uv_timer_init(loop, &s->timer);
    uv_timer_init(loop, &s->sweep);
    s->timer.data = s->sweep.data = s;
    s->handles = 3;
    s->accepting = true;
    uv_poll_start(&s->poll, UV_READABLE, poll_cb);
    uv_timer_start(&s->sweep, sweep_cb, SWEEP_MS, SWEEP_MS);
    kick(s);
    return s;
}

void pmx_http_server_stop_accepting(pmx_http_server_t *s)
{
    if (!s || !s->accepting || s->closing) return;
    s->accepting = false;
    /* Closes this process's copy only: the supervisor and the other workers
     * keep theirs, so the socket keeps accepting. */
    MHD_socket fd = MHD_quiesce_daemon(s->mhd);
    if (fd != MHD_INVALID_SOCKET) close(fd);
    kick(s);
}

size_t pmx_http_server_pending(const pmx_http_server_t *s)
{
    return s ? s->npending : 0;
}

void pmx_http_server_close(pmx_http_server_t *s)
{
    if (!s || s->closing) return;
    /* Pending answers will never come: tell their owners, let MHD close them. */
    while (s->pending) {
        pmx_http_req_t *r = s->pending;
        pending_remove(r);
        r->aborted = true;
        if (r->abort_fn) r->abort_fn(r->abort_arg);
        if (r->suspended) {
            r->suspended = false;
            MHD_resume_connection(r->mc);
        }
    }
    MHD_run(s->mhd);
    s->closing = true;
    uv_poll_stop(&s->poll);   /* before MHD closes the epoll fd */
    uv_close((uv_handle_t *)&s->poll, handle_closed);
    uv_close((uv_handle_t *)&s->timer, handle_closed);
    uv_close((uv_handle_t *)&s->sweep, handle_closed);
    MHD_stop_daemon(s->mhd);
    s->mhd = NULL;
}
