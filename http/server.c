/*
 * A strict, tiny HTTP/1.x server on an inherited listening socket; see
 * http.h. Each connection: read until the head is complete (or too long, or
 * malformed, or too slow), call the handler, write the answer, shut the write
 * side down, close.
 */
#include "http/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/log.h"
#include "lib/mem.h"

typedef struct http_conn http_conn_t;

struct pmx_worker_http {
    uv_loop_t                 *loop;
    uv_tcp_t                   listener;
    bool                       listening;
    pmx_worker_http_handler_fn handler;
    void                      *arg;
    http_conn_t               *conns;      /* doubly linked */
    int                        nconns;
    int                        nlive;      /* of which not closing */
    bool                       closing;
    int                        handles_open;
};

struct http_conn {
    pmx_worker_http_t *srv;
    http_conn_t       *prev, *next;
    uv_tcp_t           tcp;
    uv_timer_t         timer;
    uv_write_t         write_req;
    uv_shutdown_t      shutdown_req;
    pmx_buf_t          in;
    pmx_buf_t          out;
    char               readbuf[2048];
    char               peer[INET6_ADDRSTRLEN];   /* "" = unknown */
    bool               answered;
    bool               closing;
    bool               live;        /* counted in nlive */
    int                handles_open;
};

/* ---- parsing ---------------------------------------------------------- */

static bool is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* The request line: METHOD SP TARGET SP HTTP/1.x (without CRLF). */
static int parse_request_line(const char *p, size_t n, pmx_worker_http_req_t *req)
{
    size_t i = 0;
    while (i < n && p[i] >= 'A' && p[i] <= 'Z') i++;
    if (i == 0 || i > 16 || i >= n || p[i] != ' ') return 400;
    size_t mlen = i;
    bool get = mlen == 3 && memcmp(p, "GET", 3) == 0;
    bool head = mlen == 4 && memcmp(p, "HEAD", 4) == 0;

    size_t t0 = ++i;
    while (i < n && (unsigned char)p[i] > 0x20 && (unsigned char)p[i] < 0x7f) i++;
    size_t tlen = i - t0;
    if (tlen == 0 || i >= n || p[i] != ' ' || p[t0] != '/') return 400;
    if (tlen > PMX_HTTP_MAX_TARGET) return 414;

    const char *v = p + i + 1;
    size_t vlen = n - i - 1;
    if (vlen != 8 || memcmp(v, "HTTP/", 5) != 0 || v[6] != '.' ||
        v[5] < '0' || v[5] > '9' || v[7] < '0' || v[7] > '9')
        return 400;
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1')) return 505;
    if (!get && !head) return 405;

    memcpy(req->method, p, mlen);
    req->method[mlen] = '\0';
    size_t plen = strcspn(p + t0, "? ");
    if (plen > tlen) plen = tlen;
    memcpy(req->path, p + t0, plen);
    req->path[plen] = '\0';
    return 1;
}

/* One header field line (without CRLF). Bodies are refused: we never read one. */
static int parse_header_line(const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)p[i])) i++;
    if (i == 0 || i >= n || p[i] != ':') return 400;   /* also rejects obs-fold */
    size_t namelen = i;
    for (size_t j = i + 1; j < n; j++) {
        unsigned char c = (unsigned char)p[j];
        if ((c < 0x20 && c != '\t') || c == 0x7f) return 400;
    }
    const char *val = p + i + 1;
    size_t vlen = n - i - 1;
    while (vlen && (*val == ' ' || *val == '\t')) val++, vlen--;
    while (vlen && (val[vlen - 1] == ' ' || val[vlen - 1] == '\t')) vlen--;
    if (namelen == 17 && strncasecmp(p, "Transfer-Encoding", 17) == 0) return 400;
    if (namelen == 14 && strncasecmp(p, "Content-Length", 14) == 0 &&
        !(vlen == 1 && val[0] == '0'))
        return 400;
    return 0;
}

int pmx_worker_http_parse(const char *buf, size_t len, pmx_worker_http_req_t *req)
{
    size_t pos = 0;
    bool first = true;
    for (;;) {
        /* Find the end of the next line; CR and LF only as a CRLF pair. */
        size_t e = pos;
        while (e < len && buf[e] != '\r' && buf[e] != '\n') {
            if (buf[e] == '\0') return 400;
            e++;
        }
        if (e >= len) break;                        /* line not complete yet */
        if (buf[e] == '\n') return 400;             /* bare LF */
        if (e + 1 >= len) break;                    /* CR seen, LF not yet */
        if (buf[e + 1] != '\n') return 400;         /* bare CR */
        size_t n = e - pos;
        if (first) {
            int r = parse_request_line(buf + pos, n, req);
            if (r != 1) return r;
            first = false;
        } else if (n == 0) {
            return e + 2 > PMX_HTTP_MAX_HEAD ? 431 : 1;   /* end of the head */
        } else {
            int r = parse_header_line(buf + pos, n);
            if (r) return r;
        }
        pos = e + 2;
    }
    if (first) {
        /* Refuse what cannot become a request line (TLS, binary) without waiting. */
        size_t i = 0;
        while (i < len && buf[i] >= 'A' && buf[i] <= 'Z') i++;
        if (i > 16 || (i < len && buf[i] != ' ')) return 400;
        if (len > PMX_HTTP_MAX_TARGET + 32) return 414;
    }
    if (len >= PMX_HTTP_MAX_HEAD) return 431;
    return 0;
}

/* ---- connections ------------------------------------------------------ */

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default:  return "Unknown";
    }
}

static void srv_maybe_free(pmx_worker_http_t *h)
{
    if (h->closing && h->handles_open == 0 && h->nconns == 0) free(h);
}

static void conn_handle_closed(uv_handle_t *handle)
{
    http_conn_t *c = handle->data;
    if (--c->handles_open > 0) return;
    pmx_worker_http_t *h = c->srv;
    if (c->prev) c->prev->next = c->next; else h->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    h->nconns--;
    pmx_buf_free(&c->in);
    pmx_buf_free(&c->out);
    free(c);
    srv_maybe_free(h);
}

static void conn_close(http_conn_t *c)
{
    if (c->closing) return;
    c->closing = true;
    if (c->live) c->srv->nlive--;
    c->live = false;
    uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    conn_close(req->data);
}

static void on_written(uv_write_t *req, int status)
{
    http_conn_t *c = req->data;
    if (status < 0 || c->closing) {
        conn_close(c);
        return;
    }
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) != 0) conn_close(c);
}

static void conn_answer(http_conn_t *c, int status, const char *ctype, const pmx_buf_t *body,
                        bool head_only)
{
    c->answered = true;
    uv_read_stop((uv_stream_t *)&c->tcp);
    size_t blen = body ? body->len : 0;
    pmx_buf_appendf(&c->out,
                    "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                    "%sConnection: close\r\n\r\n",
                    status, reason_phrase(status), ctype ? ctype : "text/plain; charset=utf-8",
                    blen, status == 405 ? "Allow: GET, HEAD\r\n" : "");
    if (body && !head_only) pmx_buf_append(&c->out, body->data, body->len);
    uv_buf_t b = uv_buf_init(c->out.data, (unsigned int)c->out.len);
    c->write_req.data = c;
    if (uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) conn_close(c);
}

static void conn_error(http_conn_t *c, int status)
{
    pmx_buf_t body = PMX_BUF_INIT;
    pmx_buf_appendf(&body, "%s\n", reason_phrase(status));
    conn_answer(c, status, NULL, &body, false);
    pmx_buf_free(&body);
}

static void conn_timeout(uv_timer_t *t)
{
    http_conn_t *c = t->data;
    if (!c->answered && !c->closing) {
        conn_error(c, 408);
        /* A client that does not read the 408 either is closed next time. */
        if (!c->closing) uv_timer_start(&c->timer, conn_timeout, PMX_HTTP_TIMEOUT_MS, 0);
    } else {
        conn_close(c);
    }
}

static void alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    http_conn_t *c = handle->data;
    *buf = uv_buf_init(c->readbuf, sizeof c->readbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    http_conn_t *c = s->data;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    if (nread == 0 || c->answered || c->closing) return;
    pmx_buf_append(&c->in, buf->base, (size_t)nread);

    pmx_worker_http_req_t req;
    int r = pmx_worker_http_parse(c->in.data, c->in.len, &req);
    if (r == 0) return;
    if (r != 1) {
        conn_error(c, r);
        return;
    }
    pmx_worker_http_resp_t resp = { .status = 200, .content_type = NULL, .body = PMX_BUF_INIT };
    c->srv->handler(c->srv->arg, &req, &resp);
    conn_answer(c, resp.status, resp.content_type, &resp.body, strcmp(req.method, "HEAD") == 0);
    pmx_buf_free(&resp.body);
}

/* The client's address (IPv6 as its /64: one host usually owns a whole /64). */
static void peer_key(uv_tcp_t *tcp, char out[INET6_ADDRSTRLEN])
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    out[0] = '\0';
    if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) != 0) return;
    if (ss.ss_family == AF_INET) {
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, out, INET6_ADDRSTRLEN);
    } else if (ss.ss_family == AF_INET6) {
        struct in6_addr a = ((struct sockaddr_in6 *)&ss)->sin6_addr;
        if (!IN6_IS_ADDR_V4MAPPED(&a)) memset(&a.s6_addr[8], 0, 8);
        inet_ntop(AF_INET6, &a, out, INET6_ADDRSTRLEN);
    }
}

/* Connections of this worker from the same address as c (c not counted). */
static int same_peer(const pmx_worker_http_t *h, const http_conn_t *c)
{
    int n = 0;
    for (const http_conn_t *o = h->conns; o; o = o->next)
        if (o != c && !o->closing && o->peer[0] && strcmp(o->peer, c->peer) == 0) n++;
    return n;
}

static void on_connection(uv_stream_t *server, int status)
{
    pmx_worker_http_t *h = server->data;
    if (status < 0 || h->closing) return;

    http_conn_t *c = pmx_xcalloc(1, sizeof *c);
    c->srv = h;
    uv_tcp_init(h->loop, &c->tcp);
    uv_timer_init(h->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->handles_open = 2;
    c->next = h->conns;
    if (h->conns) h->conns->prev = c;
    h->conns = c;
    h->nconns++;

    /* Another worker may have taken it (shared listener): EAGAIN is normal. */
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    c->live = true;
    h->nlive++;
    if (h->nlive > PMX_HTTP_MAX_CONNS) {
        pmx_log_debug("http: too many connections, closing one");
        conn_close(c);
        return;
    }
    /* One client cannot take every slot from the monitoring. */
    peer_key(&c->tcp, c->peer);
    if (c->peer[0] && same_peer(h, c) >= PMX_HTTP_MAX_CONNS_PER_ADDR) {
        pmx_log_debug("http: too many connections from client=%s, closing one", c->peer);
        conn_close(c);
        return;
    }
    uv_timer_start(&c->timer, conn_timeout, PMX_HTTP_TIMEOUT_MS, 0);
    if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read) != 0) conn_close(c);
}

pmx_worker_http_t *pmx_worker_http_new(uv_loop_t *loop, int fd,
                                       pmx_worker_http_handler_fn handler, void *arg,
                                       char *err, size_t errlen)
{
    pmx_worker_http_t *h = pmx_xcalloc(1, sizeof *h);
    h->loop = loop;
    h->handler = handler;
    h->arg = arg;
    uv_tcp_init(loop, &h->listener);
    h->listener.data = h;
    h->handles_open = 1;
    int r = uv_tcp_open(&h->listener, fd);
    if (r == 0) r = uv_listen((uv_stream_t *)&h->listener, 511, on_connection);
    if (r != 0) {
        snprintf(err, errlen, "cannot serve the metrics listener: %s", uv_strerror(r));
        pmx_worker_http_close(h);   /* freed once the handle has closed */
        return NULL;
    }
    h->listening = true;
    return h;
}

static void listener_closed(uv_handle_t *handle)
{
    pmx_worker_http_t *h = handle->data;
    h->handles_open--;
    srv_maybe_free(h);
}

void pmx_worker_http_stop_accepting(pmx_worker_http_t *h)
{
    if (!h->listening) return;
    h->listening = false;
    /* Closes this process's copy of the fd only: other workers and the
     * supervisor keep theirs, so the socket keeps accepting. */
    uv_close((uv_handle_t *)&h->listener, listener_closed);
}

void pmx_worker_http_close(pmx_worker_http_t *h)
{
    if (h->closing) return;
    if (h->listening) {
        pmx_worker_http_stop_accepting(h);
    } else if (!uv_is_closing((uv_handle_t *)&h->listener)) {
        uv_close((uv_handle_t *)&h->listener, listener_closed);
    }
    h->closing = true;
    for (http_conn_t *c = h->conns; c; c = c->next) conn_close(c);
    srv_maybe_free(h);
}
