/*
 * libcurl multi on libuv; see webhooks_http.h.
 *
 * curl tells us, per socket, what to wait for (CURLMOPT_SOCKETFUNCTION) and
 * when to call it back regardless (CURLMOPT_TIMERFUNCTION); we turn those
 * into a uv_poll_t per socket and one uv_timer_t, and hand every event back
 * with curl_multi_socket_action. Finished transfers are collected with
 * curl_multi_info_read after each call.
 *
 * curl must not be re-entered from its own callbacks, so the timer callback
 * only arms the uv timer (a 0 ms timeout runs on the next loop turn), and
 * user callbacks run only after curl_multi_socket_action has returned.
 * free() from inside a user callback is deferred to the end of that entry
 * (a depth count), so curl's state is never torn down under its feet.
 */
#include "webhooks/curl.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "lib/mem.h"

#define BODY_KEEP 256

typedef struct xfer xfer_t;
struct xfer {
    xfer_t               *prev, *next;
    pmx_webhooks_http_t  *h;
    CURL                 *easy;
    struct curl_slist    *hdrs;
    pmx_buf_t             resp;      /* the first BODY_KEEP bytes of the answer */
    uint64_t              t0;
    pmx_webhooks_http_fn  cb;
    void                 *arg;
    char                  errbuf[CURL_ERROR_SIZE];
};

/* One socket curl wants watched. Freed in its close callback. */
typedef struct {
    uv_poll_t            poll;
    curl_socket_t        fd;
    pmx_webhooks_http_t *h;
} sock_t;

struct pmx_webhooks_http {
    uv_loop_t *loop;
    CURLM     *multi;
    uv_timer_t timer;
    xfer_t    *xfers;
    size_t     nxfers;
    int        depth;
    bool       closing;
    bool       torn_down;
};

static int curl_users;   /* curl_global_init/cleanup pairs in this process */

static void on_poll(uv_poll_t *p, int status, int events);

static void sock_closed(uv_handle_t *hd)
{
    free(hd->data);
}

/* CURLMOPT_SOCKETFUNCTION: watch (or stop watching) one socket. */
static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    pmx_webhooks_http_t *h = userp;
    sock_t *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            uv_poll_stop(&s->poll);
            uv_close((uv_handle_t *)&s->poll, sock_closed);
            curl_multi_assign(h->multi, fd, NULL);
        }
        return 0;
    }
    if (!s) {
        s = pmx_xcalloc(1, sizeof *s);
        s->fd = fd;
        s->h = h;
        int r = uv_poll_init_socket(h->loop, &s->poll, fd);
        if (r != 0) {
            pmx_log_error("webhook http cannot watch a socket err=\"%s\"", uv_strerror(r));
            free(s);
            return -1;   /* curl fails the transfer */
        }
        s->poll.data = s;
        curl_multi_assign(h->multi, fd, s);
    }
    int ev = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) ev |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) ev |= UV_WRITABLE;
    uv_poll_start(&s->poll, ev, on_poll);
    return 0;
}

static void on_timer(uv_timer_t *t);

/* CURLMOPT_TIMERFUNCTION: one timer for the whole multi handle. */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    pmx_webhooks_http_t *h = userp;
    if (timeout_ms < 0)
        uv_timer_stop(&h->timer);
    else
        uv_timer_start(&h->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    xfer_t *x = userdata;
    size_t n = size * nmemb;
    if (x->resp.len < BODY_KEEP) {
        size_t take = BODY_KEEP - x->resp.len;
        pmx_buf_append(&x->resp, ptr, n < take ? n : take);
    }
    return n;
}

static void xfer_unlink(pmx_webhooks_http_t *h, xfer_t *x)
{
    if (x->prev) x->prev->next = x->next;
    else h->xfers = x->next;
    if (x->next) x->next->prev = x->prev;
    h->nxfers--;
}

static void xfer_free(pmx_webhooks_http_t *h, xfer_t *x)
{
    curl_multi_remove_handle(h->multi, x->easy);
    curl_easy_cleanup(x->easy);
    curl_slist_free_all(x->hdrs);
    pmx_buf_free(&x->resp);
    free(x);
}

/* Error text: curl's own buffer when it wrote one, else the code's name. */
static void finish_xfer(pmx_webhooks_http_t *h, xfer_t *x, CURLcode code)
{
    pmx_webhooks_http_result_t r = { 0 };
    r.ms = (uv_hrtime() - x->t0) / 1000000u;
    r.body = pmx_buf_cstr(&x->resp);
    if (code == CURLE_OK) {
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &r.status);
    } else {
        r.error = x->errbuf[0] ? x->errbuf : curl_easy_strerror(code);
        size_t n = strcspn(x->errbuf, "\r\n");
        x->errbuf[n] = '\0';
    }
    xfer_unlink(h, x);
    if (!h->closing) x->cb(&r, x->arg);
    xfer_free(h, x);
}

static void teardown(pmx_webhooks_http_t *h);

static void check_done(pmx_webhooks_http_t *h)
{
    CURLMsg *m;
    int left;
    while (!h->closing && (m = curl_multi_info_read(h->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE) continue;
        xfer_t *x = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        CURLcode code = m->data.result;   /* m is invalid after remove_handle */
        if (x) finish_xfer(h, x, code);
    }
}

static void leave(pmx_webhooks_http_t *h)
{
    if (--h->depth == 0 && h->closing && !h->torn_down) teardown(h);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    sock_t *s = p->data;
    pmx_webhooks_http_t *h = s->h;
    if (h->closing) return;
    int flags = 0;
    if (status < 0) {
        flags = CURL_CSELECT_ERR;
    } else {
        if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
    }
    int running;
    h->depth++;
    curl_multi_socket_action(h->multi, s->fd, flags, &running);   /* may close s */
    check_done(h);
    leave(h);
}

static void on_timer(uv_timer_t *t)
{
    pmx_webhooks_http_t *h = t->data;
    if (h->closing) return;
    int running;
    h->depth++;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(h);
    leave(h);
}

pmx_webhooks_http_t *pmx_webhooks_http_new(uv_loop_t *loop)
{
    if (curl_users == 0 && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        pmx_log_error("webhook http: curl_global_init failed");
        return NULL;
    }
    curl_users++;
    pmx_webhooks_http_t *h = pmx_xcalloc(1, sizeof *h);
    h->loop = loop;
    h->multi = curl_multi_init();
    if (!h->multi) {
        pmx_log_error("webhook http: curl_multi_init failed");
        free(h);
        if (--curl_users == 0) curl_global_cleanup();
        return NULL;
    }
    uv_timer_init(loop, &h->timer);
    h->timer.data = h;
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    return h;
}

int pmx_webhooks_http_post(pmx_webhooks_http_t *h, const char *url,
                           const char *const *headers, size_t nheaders,
                           const char *body, size_t body_len, uint64_t timeout_ms,
                           pmx_webhooks_http_fn cb, void *arg)
{
    if (h->closing) return -1;
    xfer_t *x = pmx_xcalloc(1, sizeof *x);
    x->h = h;
    x->cb = cb;
    x->arg = arg;
    x->t0 = uv_hrtime();
    x->easy = curl_easy_init();
    if (!x->easy) {
        pmx_log_error("webhook http: curl_easy_init failed");
        free(x);
        return -1;
    }
    for (size_t i = 0; i < nheaders; i++) {
        struct curl_slist *l = curl_slist_append(x->hdrs, headers[i]);
        if (!l) goto fail;
        x->hdrs = l;
    }
    /* No "Expect: 100-continue" round trip before the body. */
    struct curl_slist *l = curl_slist_append(x->hdrs, "Expect:");
    if (!l) goto fail;
    x->hdrs = l;

    CURL *e = x->easy;
    CURLcode c = CURLE_OK;
#define SET(opt, val) do { if (c == CURLE_OK) c = curl_easy_setopt(e, opt, val); } while (0)
    SET(CURLOPT_URL, url);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_PROXY, "");
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    SET(CURLOPT_USERAGENT, "postmux-webhooks/1");
    SET(CURLOPT_HTTPHEADER, x->hdrs);
    SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    SET(CURLOPT_COPYPOSTFIELDS, body);
    SET(CURLOPT_WRITEFUNCTION, write_cb);
    SET(CURLOPT_WRITEDATA, x);
    SET(CURLOPT_ERRORBUFFER, x->errbuf);
    SET(CURLOPT_PRIVATE, x);
#undef SET
    if (c != CURLE_OK) {
        pmx_log_error("webhook http: cannot set up a POST err=\"%s\"", curl_easy_strerror(c));
        goto fail;
    }
    CURLMcode mc = curl_multi_add_handle(h->multi, e);
    if (mc != CURLM_OK) {
        pmx_log_error("webhook http: cannot start a POST err=\"%s\"", curl_multi_strerror(mc));
        goto fail;
    }
    x->next = h->xfers;
    if (h->xfers) h->xfers->prev = x;
    h->xfers = x;
    h->nxfers++;
    return 0;
fail:
    curl_easy_cleanup(x->easy);
    curl_slist_free_all(x->hdrs);
    free(x);
    return -1;
}

size_t pmx_webhooks_http_active(const pmx_webhooks_http_t *h)
{
    return h->nxfers;
}

static void timer_closed(uv_handle_t *hd)
{
    free(hd->data);
    if (--curl_users == 0) curl_global_cleanup();
}

static void teardown(pmx_webhooks_http_t *h)
{
    h->torn_down = true;
    while (h->xfers) {
        xfer_t *x = h->xfers;
        xfer_unlink(h, x);
        xfer_free(h, x);   /* curl closes its sockets: CURL_POLL_REMOVE for each */
    }
    curl_multi_cleanup(h->multi);
    h->multi = NULL;
    uv_timer_stop(&h->timer);
    uv_close((uv_handle_t *)&h->timer, timer_closed);
}

void pmx_webhooks_http_free(pmx_webhooks_http_t *h)
{
    if (!h || h->closing) return;
    h->closing = true;
    if (h->depth == 0) teardown(h);
}
