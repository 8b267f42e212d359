/*
 * The webhook sender of one worker; see webhooks.h.
 *
 * One loop of work: claim (one query at a time) -> for each row build the
 * body, open the secret, sign, POST -> collect answers -> record them (one
 * statement per batch, at most one in flight). Claims happen on a NOTIFY,
 * on the poll timer, when Postgres comes up, and again at once after a claim
 * that filled every free slot (there is more). Everything runs on the
 * webhook connection, so nothing here touches the delivery path's queue.
 */
#include "webhooks/sender.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "lib/mem.h"
#include "sql/db_async.h"
#include "sql/pgarray.h"
#include "sql/q_webhooks.h"
#include "webhooks/curl.h"
#include "webhooks/payload.h"

#define CLEAN_EVERY_MS  60000
#define ERROR_MAX       300     /* bytes of last_error */

/* One claimed row while its POST is in flight. */
typedef struct item item_t;
struct item {
    item_t         *prev, *next;
    pmx_webhooks_t *wh;
    int64_t         id;
    int64_t         event_id;
    char           *webhook_id;
    char           *ws;
};

/* One answer waiting to be recorded. */
typedef struct {
    int64_t id;
    bool    ok;
    bool    gone;
    char   *err;      /* NULL on success */
} result_t;

struct pmx_webhooks {
    uv_loop_t           *loop;
    pmx_db_async_t      *db;
    pmx_webhooks_http_t *http;
    uint8_t              master[32];
    uint64_t             retry_base_ms;
    uint64_t             retry_max_ms;

    uv_timer_t           timer;        /* the poll; then the drained notice */
    uint64_t             last_clean;   /* uv_now of the last clean-up */

    pmx_db_async_req_t  *claim_req;
    bool                 claim_again;  /* asked while a claim was in flight */
    bool                 more;         /* the last claim filled every slot */
    unsigned             claim_want;   /* rows the claim in flight asked for */
    pmx_db_async_req_t  *result_req;
    pmx_db_async_req_t  *clean_req;

    result_t            *results;      /* waiting to be recorded */
    size_t               nresults, capresults;

    item_t              *items;        /* POSTs in flight */
    unsigned             in_flight;

    bool                 draining;
    void               (*drain_done)(void *arg);
    void                *drain_arg;
    bool                 freeing;

    pmx_webhooks_stats_t stats;
};

static void claim(pmx_webhooks_t *wh);
static void claim_more(pmx_webhooks_t *wh);
static void flush_results(pmx_webhooks_t *wh);
static void check_drained(pmx_webhooks_t *wh);

static const char *val(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

/* One line, at most ERROR_MAX bytes, for last_error and the log. */
static char *one_line(const char *prefix, const char *s)
{
    pmx_buf_t b = PMX_BUF_INIT;
    pmx_buf_append_str(&b, prefix);
    for (const char *p = s ? s : ""; *p && b.len < ERROR_MAX; p++)
        pmx_buf_append_char(&b, (*p == '\r' || *p == '\n' || *p == '\t') ? ' ' : *p);
    while (b.len && b.data[b.len - 1] == ' ') b.data[--b.len] = '\0';
    return pmx_buf_detach(&b);
}

/* ---- recording answers ------------------------------------------------ */

static void add_result(pmx_webhooks_t *wh, int64_t id, bool ok, bool gone, char *err)
{
    if (wh->nresults == wh->capresults) {
        wh->capresults = wh->capresults ? wh->capresults * 2 : 16;
        wh->results = pmx_xrealloc(wh->results, wh->capresults * sizeof *wh->results);
    }
    wh->results[wh->nresults++] = (result_t){ .id = id, .ok = ok, .gone = gone, .err = err };
}

static void drop_results(pmx_webhooks_t *wh)
{
    for (size_t i = 0; i < wh->nresults; i++) free(wh->results[i].err);
    wh->nresults = 0;
}

static void result_done(pmx_db_async_t *db, const PGresult *res, void *arg)
{
    (void)db;
    pmx_webhooks_t *wh = arg;
    wh->result_req = NULL;
    if (!res) {
        pmx_log_warn("webhook results not recorded: postgres connection lost "
                     "(the rows are sent again after their lease)");
    } else if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        char *why = one_line("", PQresultErrorMessage(res));
        pmx_log_error("webhook results not recorded err=\"%s\"", why);
        free(why);
    } else {
        for (int i = 0; i < PQntuples(res); i++) {
            wh->stats.given_up++;
            pmx_log_error("webhook given up wh=%s event=evt_%s attempts=%s delivery=%s",
                          PQgetvalue(res, i, PMX_DB_WH_GAVE_UP_HOOK),
                          PQgetvalue(res, i, PMX_DB_WH_GAVE_UP_EVT),
                          PQgetvalue(res, i, PMX_DB_WH_GAVE_UP_ATTEMPTS),
                          PQgetvalue(res, i, PMX_DB_WH_GAVE_UP_ID));
        }
    }
    flush_results(wh);
    claim_more(wh);
    check_drained(wh);
}

static void flush_results(pmx_webhooks_t *wh)
{
    if (wh->freeing || wh->result_req || wh->nresults == 0) return;
    if (!pmx_db_async_is_up(wh->db)) {
        pmx_log_warn("webhook results not recorded: postgres is down count=%zu "
                     "(the rows are sent again after their lease)", wh->nresults);
        drop_results(wh);
        return;
    }
    pmx_buf_t ids = PMX_BUF_INIT, oks = PMX_BUF_INIT, errs = PMX_BUF_INIT, gone = PMX_BUF_INIT;
    pmx_buf_append_char(&ids, '{');
    pmx_buf_append_char(&oks, '{');
    pmx_buf_append_char(&errs, '{');
    pmx_buf_append_char(&gone, '{');
    for (size_t i = 0; i < wh->nresults; i++) {
        const result_t *r = &wh->results[i];
        pmx_pgarray_int(&ids, r->id);
        pmx_pgarray_bool(&oks, r->ok);
        pmx_pgarray_bool(&gone, r->gone);
        pmx_pgarray_text(&errs, r->err);
    }
    pmx_buf_append_char(&ids, '}');
    pmx_buf_append_char(&oks, '}');
    pmx_buf_append_char(&errs, '}');
    pmx_buf_append_char(&gone, '}');
    wh->result_req = pmx_db_webhooks_record(wh->db, pmx_buf_cstr(&ids), pmx_buf_cstr(&oks),
                                            pmx_buf_cstr(&errs), pmx_buf_cstr(&gone),
                                            wh->retry_base_ms, wh->retry_max_ms, result_done, wh);
    if (!wh->result_req)
        pmx_log_warn("webhook results not recorded: postgres is down count=%zu", wh->nresults);
    drop_results(wh);   /* the query copied its parameters */
    pmx_buf_free(&ids);
    pmx_buf_free(&oks);
    pmx_buf_free(&errs);
    pmx_buf_free(&gone);
}

/* ---- sending ---------------------------------------------------------- */

static void item_unlink(pmx_webhooks_t *wh, item_t *it)
{
    if (it->prev) it->prev->next = it->next;
    else wh->items = it->next;
    if (it->next) it->next->prev = it->prev;
    wh->in_flight--;
}

static void item_free(item_t *it)
{
    free(it->webhook_id);
    free(it->ws);
    free(it);
}

static void post_done(const pmx_webhooks_http_result_t *r, void *arg)
{
    item_t *it = arg;
    pmx_webhooks_t *wh = it->wh;
    item_unlink(wh, it);
    bool ok = !r->error && r->status >= 200 && r->status <= 299;
    if (ok) {
        wh->stats.delivered++;
        pmx_log_debug("webhook delivered wh=%s ws=%s event=evt_%" PRId64 " status=%ld ms=%" PRIu64,
                      it->webhook_id, it->ws, it->event_id, r->status, r->ms);
        add_result(wh, it->id, true, false, NULL);
    } else {
        wh->stats.failed++;
        char *err;
        if (r->error) {
            err = one_line("", r->error);
        } else {
            char pre[32];
            snprintf(pre, sizeof pre, "HTTP %ld%s", r->status, r->body[0] ? ": " : "");
            err = one_line(pre, r->body);
        }
        pmx_log_warn("webhook failed wh=%s ws=%s event=evt_%" PRId64 " ms=%" PRIu64 " err=\"%s\"",
                     it->webhook_id, it->ws, it->event_id, r->ms, err);
        add_result(wh, it->id, false, false, err);
    }
    item_free(it);
    flush_results(wh);
    claim_more(wh);
    check_drained(wh);
}

/* Builds, signs and POSTs one claimed row; on a local failure records it as
 * a failed attempt (retried like any other). */
static void send_row(pmx_webhooks_t *wh, const PGresult *res, int i)
{
    int64_t id = strtoll(PQgetvalue(res, i, PMX_DB_WH_ID), NULL, 10);
    const char *whid = PQgetvalue(res, i, PMX_DB_WH_HOOK);
    if (PQgetisnull(res, i, PMX_DB_WH_EVT)) {
        pmx_log_error("webhook event gone wh=%s delivery=%" PRId64 " (giving up)", whid, id);
        add_result(wh, id, false, true, pmx_xstrdup("the event no longer exists"));
        return;
    }
    pmx_webhooks_event_t ev = {
        .event_id = strtoll(PQgetvalue(res, i, PMX_DB_WH_EVT), NULL, 10),
        .type = val(res, i, PMX_DB_WH_TYPE),
        .created_at = val(res, i, PMX_DB_WH_CREATED),
        .workspace_id = val(res, i, PMX_DB_WH_WS),
        .workspace_name = val(res, i, PMX_DB_WH_WSNAME),
        .message_id = val(res, i, PMX_DB_WH_MSG),
        .job_id = val(res, i, PMX_DB_WH_JOB),
        .client_id = val(res, i, PMX_DB_WH_CLIENT),
        .recipient = val(res, i, PMX_DB_WH_RCPT),
        .response = val(res, i, PMX_DB_WH_RESP),
        .attempt = atoi(PQgetvalue(res, i, PMX_DB_WH_ATTEMPT)),
        .metadata = val(res, i, PMX_DB_WH_META),
    };
    pmx_buf_t body = PMX_BUF_INIT, secret = PMX_BUF_INIT, sig = PMX_BUF_INIT;
    const char *fail = NULL;
    int rc = pmx_webhooks_secret_open(wh->master, whid, PQgetvalue(res, i, PMX_DB_WH_SECRET),
                                      &secret);
    if (rc == -EINVAL || rc == -EBADMSG)
        fail = "the webhook secret does not open with this master key";
    else if (rc < 0)
        fail = "cannot open the webhook secret (OpenSSL)";
    else if (pmx_webhooks_body(&ev, &body) < 0)
        fail = "cannot build the JSON body";
    else if (pmx_webhooks_sign(secret.data, secret.len, (int64_t)time(NULL), body.data, body.len,
                               &sig) < 0)
        fail = "cannot sign the body (OpenSSL)";
    pmx_buf_free_secret(&secret);
    if (!fail) {
        pmx_buf_t h = PMX_BUF_INIT;
        pmx_buf_appendf(&h, "Postmux-Signature: %s", pmx_buf_cstr(&sig));
        const char *headers[] = { "Content-Type: application/json", pmx_buf_cstr(&h) };
        item_t *it = pmx_xcalloc(1, sizeof *it);
        it->wh = wh;
        it->id = id;
        it->event_id = ev.event_id;
        it->webhook_id = pmx_xstrdup(whid);
        it->ws = pmx_xstrdup(ev.workspace_id ? ev.workspace_id : "-");
        if (!wh->http) {   /* a claim that came back after the drain's grace */
            item_free(it);
            fail = "interrupted: the worker stopped";
        } else if (pmx_webhooks_http_post(wh->http, PQgetvalue(res, i, PMX_DB_WH_URL), headers, 2,
                                          body.data, body.len, PMX_WEBHOOKS_TIMEOUT_MS,
                                          post_done, it) == 0) {
            it->next = wh->items;
            if (wh->items) wh->items->prev = it;
            wh->items = it;
            wh->in_flight++;
        } else {
            item_free(it);
            fail = "the URL cannot be requested";
        }
        pmx_buf_free(&h);
    }
    pmx_buf_free(&body);
    pmx_buf_free(&sig);
    if (fail) {
        wh->stats.failed++;
        pmx_log_error("webhook not sent wh=%s event=evt_%" PRId64 " err=\"%s\"", whid, ev.event_id,
                      fail);
        add_result(wh, id, false, false, pmx_xstrdup(fail));
    }
}

static void claim_done(pmx_db_async_t *db, const PGresult *res, void *arg)
{
    (void)db;
    pmx_webhooks_t *wh = arg;
    wh->claim_req = NULL;
    wh->more = false;
    if (!res) {
        /* The connection went; it comes back by itself and claims then. */
    } else if (PQresultStatus(res) != PGRES_TUPLES_OK || PQnfields(res) != PMX_DB_WH_NCOLS) {
        char *why = one_line("", PQresultErrorMessage(res));
        pmx_log_error("webhook claim failed err=\"%s\"", why);
        free(why);
    } else {
        int n = PQntuples(res);
        wh->stats.claimed += (uint64_t)n;
        for (int i = 0; i < n; i++) send_row(wh, res, i);
        /* Every slot asked for was filled: there may be more due now. */
        wh->more = n > 0 && (unsigned)n >= wh->claim_want;
    }
    flush_results(wh);
    if (wh->claim_again) {
        wh->claim_again = false;
        claim(wh);
    }
    check_drained(wh);
}

/* After an answer, while there is a backlog: claim again once a quarter of
 * the slots are free (not one row per answer). */
static void claim_more(pmx_webhooks_t *wh)
{
    if (wh->more && (wh->in_flight == 0 ||
                     PMX_WEBHOOKS_MAX_IN_FLIGHT - wh->in_flight >= PMX_WEBHOOKS_MAX_IN_FLIGHT / 4))
        claim(wh);
}

static void claim(pmx_webhooks_t *wh)
{
    if (wh->freeing || wh->draining) return;
    if (wh->claim_req) {
        wh->claim_again = true;
        return;
    }
    if (!pmx_db_async_is_up(wh->db)) return;
    unsigned free_slots = PMX_WEBHOOKS_MAX_IN_FLIGHT - wh->in_flight;
    if (free_slots == 0) return;
    wh->claim_want = free_slots;
    wh->claim_req = pmx_db_webhooks_claim(wh->db, free_slots, PMX_WEBHOOKS_LEASE_S, claim_done, wh);
}

/* ---- housekeeping, timers, connection --------------------------------- */

static void clean_done(pmx_db_async_t *db, const PGresult *res, void *arg)
{
    (void)db;
    pmx_webhooks_t *wh = arg;
    wh->clean_req = NULL;
    if (res && PQresultStatus(res) != PGRES_COMMAND_OK) {
        char *why = one_line("", PQresultErrorMessage(res));
        pmx_log_warn("webhook clean-up failed err=\"%s\"", why);
        free(why);
    } else if (res && atoi(PQcmdTuples((PGresult *)res)) > 0) {
        pmx_log_debug("webhook clean-up deleted=%s", PQcmdTuples((PGresult *)res));
    }
    check_drained(wh);
}

static void poll_cb(uv_timer_t *t)
{
    pmx_webhooks_t *wh = t->data;
    claim(wh);
    uint64_t now = uv_now(wh->loop);
    if (!wh->clean_req && pmx_db_async_is_up(wh->db) && now - wh->last_clean >= CLEAN_EVERY_MS) {
        wh->last_clean = now;
        wh->clean_req = pmx_db_webhooks_clean(wh->db, PMX_WEBHOOKS_KEEP_H, clean_done, wh);
    }
}

static void on_state(pmx_db_async_t *db, bool up, void *arg)
{
    (void)db;
    pmx_webhooks_t *wh = arg;
    if (up) claim(wh);
}

static void on_notify(pmx_db_async_t *db, const char *channel, const char *payload, void *arg)
{
    (void)db;
    (void)channel;
    (void)payload;
    claim(arg);
}

pmx_webhooks_t *pmx_webhooks_start(uv_loop_t *loop, const pmx_config_t *cfg,
                                   const uint8_t master[32])
{
    pmx_webhooks_http_t *http = pmx_webhooks_http_new(loop);
    if (!http) return NULL;
    pmx_webhooks_t *wh = pmx_xcalloc(1, sizeof *wh);
    wh->loop = loop;
    wh->http = http;
    memcpy(wh->master, master, sizeof wh->master);
    wh->retry_base_ms = PMX_WEBHOOKS_RETRY_BASE_MS;
    if (cfg->retry_base_ms && cfg->retry_base_ms < wh->retry_base_ms)
        wh->retry_base_ms = cfg->retry_base_ms;
    wh->retry_max_ms = PMX_WEBHOOKS_RETRY_MAX_MS;
    if (cfg->retry_max_interval_ms && cfg->retry_max_interval_ms < wh->retry_max_ms)
        wh->retry_max_ms = cfg->retry_max_interval_ms;
    if (wh->retry_max_ms < wh->retry_base_ms) wh->retry_max_ms = wh->retry_base_ms;
    /* Spread the first clean-up of the workers over the first minute. */
    wh->last_clean = uv_now(loop) - (uint64_t)(rand() % CLEAN_EVERY_MS);

    wh->db = pmx_db_async_new(loop, cfg->pg_conninfo);
    pmx_db_async_set_state_cb(wh->db, on_state, wh);
    pmx_db_async_set_notify_cb(wh->db, on_notify, wh);
    pmx_db_async_listen(wh->db, PMX_DB_WEBHOOKS_CHANNEL);
    pmx_db_async_start(wh->db);

    uv_timer_init(loop, &wh->timer);
    wh->timer.data = wh;
    uv_timer_start(&wh->timer, poll_cb, PMX_WEBHOOKS_POLL_MS, PMX_WEBHOOKS_POLL_MS);
    return wh;
}

/* ---- drain and free --------------------------------------------------- */

/* The grace is over: the POSTs still in flight are abandoned and recorded
 * as failed attempts (the receiver may have got them: at-least-once), so a
 * hanging endpoint cannot hold up a stop or a reload. */
static void grace_cb(uv_timer_t *t)
{
    pmx_webhooks_t *wh = t->data;
    if (wh->items)
        pmx_log_info("webhooks abandoning POSTs in flight count=%u (retried later)", wh->in_flight);
    pmx_webhooks_http_free(wh->http);   /* no callbacks from here on */
    wh->http = NULL;
    while (wh->items) {
        item_t *it = wh->items;
        item_unlink(wh, it);
        wh->stats.failed++;
        add_result(wh, it->id, false, false, pmx_xstrdup("interrupted: the worker stopped"));
        item_free(it);
    }
    flush_results(wh);
    check_drained(wh);
}

static void drained_cb(uv_timer_t *t)
{
    pmx_webhooks_t *wh = t->data;
    void (*done)(void *) = wh->drain_done;
    wh->drain_done = NULL;
    if (done) done(wh->drain_arg);
}

/* Drained: nothing in flight, nothing left to record. The notice goes out
 * from the timer, never from inside the caller's call. */
static void check_drained(pmx_webhooks_t *wh)
{
    if (!wh->draining || wh->freeing || !wh->drain_done) return;
    if (wh->in_flight || wh->claim_req || wh->result_req || wh->nresults) return;
    uv_timer_start(&wh->timer, drained_cb, 0, 0);
}

void pmx_webhooks_drain(pmx_webhooks_t *wh, void (*done)(void *arg), void *arg)
{
    wh->draining = true;
    wh->drain_done = done;
    wh->drain_arg = arg;
    uv_timer_stop(&wh->timer);
    if (wh->clean_req) {
        pmx_db_async_cancel(wh->clean_req);
        wh->clean_req = NULL;
    }
    pmx_log_info("webhooks draining in_flight=%u", wh->in_flight);
    uv_timer_start(&wh->timer, grace_cb, PMX_WEBHOOKS_DRAIN_GRACE_MS, 0);
    check_drained(wh);
}

static void timer_closed(uv_handle_t *h)
{
    pmx_webhooks_t *wh = h->data;
    pmx_wipe(wh->master, sizeof wh->master);
    free(wh->results);
    free(wh);
}

void pmx_webhooks_free(pmx_webhooks_t *wh)
{
    if (!wh || wh->freeing) return;
    wh->freeing = true;
    pmx_db_async_cancel(wh->claim_req);
    pmx_db_async_cancel(wh->result_req);
    pmx_db_async_cancel(wh->clean_req);
    wh->claim_req = wh->result_req = wh->clean_req = NULL;
    pmx_db_async_close(wh->db);
    wh->db = NULL;
    pmx_webhooks_http_free(wh->http);   /* no callbacks from here on */
    wh->http = NULL;
    if (wh->in_flight)
        pmx_log_info("webhooks stopped with POSTs in flight count=%u (sent again after their lease)",
                     wh->in_flight);
    while (wh->items) {
        item_t *it = wh->items;
        item_unlink(wh, it);
        item_free(it);
    }
    drop_results(wh);
    uv_timer_stop(&wh->timer);
    uv_close((uv_handle_t *)&wh->timer, timer_closed);
}

void pmx_webhooks_stats(const pmx_webhooks_t *wh, pmx_webhooks_stats_t *out)
{
    *out = wh->stats;
    out->in_flight = wh->in_flight;
}
