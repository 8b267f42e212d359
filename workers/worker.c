/*
 * The worker process skeleton: its loop, heartbeat, signals, connections,
 * health endpoint and drain; see worker.h. The delivery pipeline runs on this
 * loop through the hooks.
 */
#include "workers/worker.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/reftoken.h"
#include "http/server.h"

struct pmx_worker {
    uv_loop_t                 loop;
    pmx_worker_opts_t         opts;
    const pmx_worker_hooks_t *hooks;
    pmx_slot_t               *slot;

    uv_timer_t                heartbeat;
    uv_timer_t                finish_timer;
    uv_signal_t               sigterm;
    uv_signal_t               sigint;

    pmx_redis_conn_t         *redis;
    pmx_db_async_t           *db;
    pmx_http_server_t        *http;

    bool                      started;     /* hooks->start succeeded */
    bool                      draining;
    bool                      finishing;
    int                       exit_code;
    void                     *data;
    uint8_t                   ref_key[PMX_REF_KEY_LEN];
};

uv_loop_t *pmx_worker_loop(pmx_worker_t *w) { return &w->loop; }
const pmx_config_t *pmx_worker_config(const pmx_worker_t *w) { return w->opts.cfg; }
pmx_redis_conn_t *pmx_worker_redis(pmx_worker_t *w) { return w->redis; }
pmx_db_async_t *pmx_worker_db(pmx_worker_t *w) { return w->db; }
int pmx_worker_submission_fd(const pmx_worker_t *w) { return w->opts.submission_fd; }
int pmx_worker_http_fd(const pmx_worker_t *w) { return w->opts.http_fd; }
int pmx_worker_inbound_fd(const pmx_worker_t *w) { return w->opts.inbound_fd; }
const pmx_shm_t *pmx_worker_shm(const pmx_worker_t *w) { return w->opts.shm; }
bool pmx_worker_is_draining(const pmx_worker_t *w) { return w->draining; }
void *pmx_worker_data(const pmx_worker_t *w) { return w->data; }

const char *pmx_worker_redis_password(const pmx_worker_t *w, size_t *len)
{
    *len = w->opts.redis_pwlen;
    return w->opts.redis_password;
}
void pmx_worker_set_data(pmx_worker_t *w, void *data) { w->data = data; }
const uint8_t *pmx_worker_ref_key(const pmx_worker_t *w) { return w->ref_key; }
void pmx_worker_set_ref_key(pmx_worker_t *w, const uint8_t *master, size_t len)
{
    pmx_ref_key_derive(master, len, w->ref_key);
}

bool pmx_worker_is_connected(const pmx_worker_t *w)
{
    return w->redis && w->db && pmx_redis_conn_is_up(w->redis) && pmx_db_async_is_up(w->db);
}

void pmx_worker_count_sent(pmx_worker_t *w, uint64_t n)
{
    pmx_shm_slot_add_sent(w->slot, n);
}

static void heartbeat_cb(uv_timer_t *t)
{
    pmx_worker_t *w = t->data;
    pmx_shm_slot_beat(w->slot, pmx_shm_now_ms());
}

/* ---- connections ------------------------------------------------------ */

static void conn_changed(pmx_worker_t *w)
{
    bool r = w->redis && pmx_redis_conn_is_up(w->redis);
    bool p = w->db && pmx_db_async_is_up(w->db);
    pmx_shm_slot_set_conn(w->slot, PMX_SLOT_REDIS_UP, r);
    pmx_shm_slot_set_conn(w->slot, PMX_SLOT_PG_UP, p);
    if (w->hooks && w->hooks->conn_changed && !w->finishing) w->hooks->conn_changed(w, r, p);
}

static void redis_state_cb(pmx_redis_conn_t *rc, bool up, void *arg)
{
    (void)rc;
    (void)up;
    conn_changed(arg);
}

static void db_state_cb(pmx_db_async_t *db, bool up, void *arg)
{
    (void)db;
    (void)up;
    conn_changed(arg);
}

static void db_notify_cb(pmx_db_async_t *db, const char *channel, const char *payload, void *arg)
{
    (void)db;
    pmx_worker_t *w = arg;
    pmx_log_debug("postgres notify channel=%s", channel);
    if (w->hooks && w->hooks->notify && !w->finishing) w->hooks->notify(w, channel, payload);
}

/* ---- GET /healthz, GET /metrics --------------------------------------- */

/* The private metrics listener's limits (postmux.conf(5): metrics_listen). */
#define METRICS_IDLE_S       5
#define METRICS_MAX_CONNS    64
#define METRICS_MAX_PER_ADDR 8   /* one client holding connections cannot lock Prometheus out */
#define METRICS_MEMORY_LIMIT (16 * 1024)

static void http_handler(void *arg, pmx_http_req_t *req)
{
    pmx_worker_t *w = arg;
    const char *m = pmx_http_req_method(req), *path = pmx_http_req_path(req);
    pmx_buf_t body = PMX_BUF_INIT;
    int status = 200;
    const char *ctype = NULL;
    if (strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0) {
        status = 405;
        pmx_http_req_add_header(req, "Allow", "GET, HEAD");
        pmx_buf_append_str(&body, "Method Not Allowed\n");
    } else if (strcmp(path, "/healthz") == 0) {
        bool r = pmx_redis_conn_is_up(w->redis), p = pmx_db_async_is_up(w->db);
        if (r && p && !w->draining) {
            pmx_buf_append_str(&body, "ok\n");
        } else {
            status = 503;
            pmx_buf_appendf(&body, "unavailable redis=%s postgres=%s%s\n",
                            r ? "up" : "down", p ? "up" : "down",
                            w->draining ? " draining=yes" : "");
        }
    } else if (strcmp(path, "/metrics") == 0 && w->hooks && w->hooks->metrics) {
        if (w->hooks->metrics(w, &body) < 0) {
            status = 500;
            pmx_buf_reset(&body);
            pmx_buf_append_str(&body, "metrics unavailable\n");
        } else {
            ctype = "text/plain; version=0.0.4; charset=utf-8";
        }
    } else {
        status = 404;
        pmx_buf_append_str(&body, "not found\n");
    }
    pmx_http_respond(req, status, ctype, body.data ? body.data : "", body.len);
    pmx_buf_free(&body);
}

/* ---- stopping --------------------------------------------------------- */

static void handle_closed(uv_handle_t *h)
{
    (void)h;
}

/* Closes every handle; uv_run returns once they are all closed. */
static void finish(pmx_worker_t *w)
{
    if (w->finishing) return;
    w->finishing = true;
    if (w->http) pmx_http_server_close(w->http);
    w->http = NULL;
    /* Closed before stop(): requests still pending call back (with NULL)
     * while the pipeline's state they point at is alive. */
    if (w->redis) pmx_redis_conn_close(w->redis);
    if (w->db) pmx_db_async_close(w->db);
    w->redis = NULL;
    w->db = NULL;
    if (w->started && w->hooks && w->hooks->stop) w->hooks->stop(w);
    uv_close((uv_handle_t *)&w->heartbeat, handle_closed);
    uv_close((uv_handle_t *)&w->finish_timer, handle_closed);
    uv_close((uv_handle_t *)&w->sigterm, handle_closed);
    uv_close((uv_handle_t *)&w->sigint, handle_closed);
}

static void finish_cb(uv_timer_t *t)
{
    finish(t->data);
}

/* The pipeline's drain is over (or there was none): stop on the next loop turn,
 * outside whatever Redis/Postgres callback called us. */
static void drain_done(pmx_worker_t *w)
{
    if (w->finishing || uv_is_active((uv_handle_t *)&w->finish_timer)) return;
    pmx_log_info("drained; exiting");
    uv_timer_start(&w->finish_timer, finish_cb, 0, 0);
}

static void stop_signal_cb(uv_signal_t *s, int signum)
{
    pmx_worker_t *w = s->data;
    if (w->draining) return;
    w->draining = true;
    pmx_shm_slot_set_state(w->slot, PMX_SLOT_DRAINING);
    pmx_log_info("draining signal=%s", signum == SIGTERM ? "TERM" : "INT");
    if (w->http) pmx_http_server_stop_accepting(w->http);
    if (w->started && w->hooks && w->hooks->drain)
        w->hooks->drain(w, drain_done);
    else
        drain_done(w);
}

/* ---- running ---------------------------------------------------------- */

static int setup(pmx_worker_t *w)
{
    const pmx_config_t *cfg = w->opts.cfg;
    char err[512];

    uv_timer_init(&w->loop, &w->heartbeat);
    uv_timer_init(&w->loop, &w->finish_timer);
    uv_signal_init(&w->loop, &w->sigterm);
    uv_signal_init(&w->loop, &w->sigint);
    w->heartbeat.data = w->finish_timer.data = w->sigterm.data = w->sigint.data = w;

    pmx_shm_slot_beat(w->slot, pmx_shm_now_ms());
    uv_timer_start(&w->heartbeat, heartbeat_cb, PMX_WORKER_HEARTBEAT_MS, PMX_WORKER_HEARTBEAT_MS);
    uv_signal_start(&w->sigterm, stop_signal_cb, SIGTERM);
    uv_signal_start(&w->sigint, stop_signal_cb, SIGINT);
    /* The loop handles SIGTERM/SIGINT from here on; a stop asked for while
     * we were starting is pending and arrives now. */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    w->redis = pmx_redis_conn_new(&w->loop, cfg->redis_address, w->opts.redis_password,
                                  w->opts.redis_pwlen, err, sizeof err);
    if (!w->redis) {
        pmx_log_error("redis address: %s", err);
        return -1;
    }
    pmx_redis_conn_set_state_cb(w->redis, redis_state_cb, w);

    w->db = pmx_db_async_new(&w->loop, cfg->pg_conninfo);
    pmx_db_async_set_state_cb(w->db, db_state_cb, w);
    pmx_db_async_set_notify_cb(w->db, db_notify_cb, w);

    if (w->opts.metrics_fd >= 0) {
        pmx_http_server_opts_t ho = {
            .name = "metrics",
            .idle_timeout_s = METRICS_IDLE_S,
            .max_connections = METRICS_MAX_CONNS,
            .max_per_address = METRICS_MAX_PER_ADDR,
            .memory_limit = METRICS_MEMORY_LIMIT,
            .max_body = 0,
        };
        w->http = pmx_http_server_new(&w->loop, w->opts.metrics_fd, &ho, http_handler, w,
                                      err, sizeof err);
        if (!w->http) {
            pmx_log_error("%s", err);
            return -1;
        }
    }
    if (w->hooks && w->hooks->start) {
        if (w->hooks->start(w) < 0) {
            pmx_log_error("the pipeline could not start");
            return -1;
        }
    }
    w->started = true;
    pmx_redis_conn_start(w->redis);
    pmx_db_async_start(w->db);
    return 0;
}

int pmx_worker_run(const pmx_worker_opts_t *opts)
{
    pmx_worker_t *w = &(pmx_worker_t){ 0 };
    w->opts = *opts;
    w->hooks = opts->hooks;
    w->slot = &opts->shm->slots[opts->slot];

    /* Peers that vanish mid-write are errors to handle, not a reason to die. */
    signal(SIGPIPE, SIG_IGN);
    int r = uv_loop_init(&w->loop);
    if (r != 0) {
        pmx_log_error("cannot create the event loop: %s", uv_strerror(r));
        return 2;
    }
    pmx_shm_slot_set_state(w->slot, PMX_SLOT_STARTING);
    if (setup(w) < 0) {
        w->exit_code = 2;
        finish(w);
    } else {
        pmx_shm_slot_set_state(w->slot, PMX_SLOT_READY);
        pmx_log_info("ready slot=%d", opts->slot);
    }
    uv_run(&w->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&w->loop) != 0) pmx_log_warn("event loop closed with handles open");
    return w->exit_code;
}
