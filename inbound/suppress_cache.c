/*
 * One worker's copy of the suppression list; see suppress.h.
 *
 * A load walks the table in keyset pages into a new pmx_supp_table_t. While it
 * runs, every notification is applied to the current table (so a new bounce
 * counts at once) and kept in a replay list; when the last page is in, the
 * new table replaces the current one and the list is replayed onto it, in
 * order. A '*' during a load, or a reconnect, asks for another load after it
 * (coalesced). A load that fails keeps the current table and is retried
 * after PMX_SUPP_RETRY_MS.
 */
#include "inbound/suppress.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "lib/log.h"
#include "lib/mem.h"
#include "sql/suppressions.h"

#define PMX_SUPP_RETRY_MS 5000u

typedef struct replay {
    struct replay *next;
    char           payload[];
} replay_t;

struct pmx_supp_cache {
    uv_loop_t          *loop;
    pmx_db_async_t     *db;
    pmx_supp_table_t   *cur;          /* NULL until the first load completes */
    pmx_supp_table_t   *next;         /* being loaded */
    pmx_db_async_req_t *req;          /* the page in flight */
    char               *last;         /* the last id of the previous page */
    replay_t           *replay, **replay_tail;
    bool                want_reload, closing;
    uv_timer_t          retry;
    pmx_supp_ready_fn   ready_fn;
    void               *ready_arg;
    uint64_t            load_started;
};

static void load_start(pmx_supp_cache_t *c);

static void replay_clear(pmx_supp_cache_t *c)
{
    while (c->replay) {
        replay_t *r = c->replay;
        c->replay = r->next;
        free(r);
    }
    c->replay_tail = &c->replay;
}

static void last_clear(pmx_supp_cache_t *c)
{
    free(c->last);
    c->last = NULL;
}

/* Drops a load in progress (its table and cursor); the current table stays. */
static void load_abort(pmx_supp_cache_t *c)
{
    pmx_supp_table_free(c->next);
    c->next = NULL;
    last_clear(c);
    replay_clear(c);
}

pmx_supp_cache_t *pmx_supp_cache_new(uv_loop_t *loop, pmx_db_async_t *db)
{
    pmx_supp_cache_t *c = pmx_xcalloc(1, sizeof *c);
    c->loop = loop;
    c->db = db;
    c->replay_tail = &c->replay;
    uv_timer_init(loop, &c->retry);
    c->retry.data = c;
    uv_unref((uv_handle_t *)&c->retry);
    return c;
}

void pmx_supp_cache_set_ready_cb(pmx_supp_cache_t *c, pmx_supp_ready_fn fn, void *arg)
{
    c->ready_fn = fn;
    c->ready_arg = arg;
}

bool pmx_supp_cache_ready(const pmx_supp_cache_t *c)
{
    return c->cur != NULL;
}

size_t pmx_supp_cache_count(const pmx_supp_cache_t *c)
{
    return c->cur ? pmx_supp_table_count(c->cur) : 0;
}

static void retry_cb(uv_timer_t *t)
{
    load_start(t->data);
}

/* The last page is in: swap, replay what was said meanwhile, tell the pipeline once. */
static void load_finish(pmx_supp_cache_t *c)
{
    bool first = c->cur == NULL;
    pmx_supp_table_free(c->cur);
    c->cur = c->next;
    c->next = NULL;
    for (replay_t *r = c->replay; r; r = r->next) pmx_supp_table_apply(c->cur, r->payload);
    replay_clear(c);
    last_clear(c);
    pmx_log_info("suppressions loaded entries=%zu ms=%llu", pmx_supp_table_count(c->cur),
                 (unsigned long long)(uv_now(c->loop) - c->load_started));
    if (first && c->ready_fn) c->ready_fn(c->ready_arg);
}

/* Reads one page into c->next; 1 when it was the last, 0 for more, -1 on bad rows. */
static int take_page(pmx_supp_cache_t *c, const PGresult *res)
{
    int n = PQntuples(res);
    if (PQnfields(res) != 6) return -1;
    for (int r = 0; r < n; r++) {
        const char *ws = PQgetvalue(res, r, 0), *scope = PQgetvalue(res, r, 1);
        const char *reason = PQgetvalue(res, r, 2), *addr = PQgetvalue(res, r, 4);
        long long exp = strtoll(PQgetvalue(res, r, 3), NULL, 10);
        if (pmx_supp_table_put(c->next, ws, scope, addr, pmx_supp_reason_parse(reason),
                               (int64_t)exp) < 0)
            /* The table's CHECKs make this rare: one bad row costs only itself. */
            pmx_log_warn("suppressions: row skipped ws=%s scope=%s reason=%s", ws, scope, reason);
    }
    if (n < PMX_SQL_SUPPRESSIONS_PAGE_ROWS) return 1;
    last_clear(c);
    c->last = pmx_xstrdup(PQgetvalue(res, n - 1, 5));
    return 0;
}

static void request_page(pmx_supp_cache_t *c);

static void page_done(pmx_db_async_t *db, const PGresult *res, void *arg)
{
    (void)db;
    pmx_supp_cache_t *c = arg;
    c->req = NULL;
    if (!res) {
        /* The connection went away; its return starts a new load. */
        pmx_log_info("suppressions load interrupted: postgres connection lost");
        load_abort(c);
        c->want_reload = true;
        return;
    }
    int rc = PQresultStatus(res) == PGRES_TUPLES_OK ? take_page(c, res) : -1;
    if (rc < 0) {
        pmx_log_error("suppressions load failed: %s (retrying in %u s)",
                      PQresultStatus(res) == PGRES_TUPLES_OK ? "unexpected columns"
                                                             : PQresultErrorMessage(res),
                      PMX_SUPP_RETRY_MS / 1000);
        load_abort(c);
        uv_timer_start(&c->retry, retry_cb, PMX_SUPP_RETRY_MS, 0);
        return;
    }
    if (rc == 0) {
        request_page(c);
        return;
    }
    load_finish(c);
    if (c->want_reload) load_start(c);
}

static void request_page(pmx_supp_cache_t *c)
{
    const char *vals[1] = { c->last ? c->last : "0" };
    c->req = pmx_db_async_query_params(c->db, pmx_sql_suppressions_page, 1, vals, page_done, c);
    if (!c->req) {
        /* Not up: the reconnect starts a new load. */
        load_abort(c);
        c->want_reload = true;
    }
}

static void load_start(pmx_supp_cache_t *c)
{
    if (c->closing || !c->db) return;
    if (c->next) {
        c->want_reload = true;   /* coalesced: one load at a time, one queued */
        return;
    }
    c->want_reload = false;
    if (!pmx_db_async_is_up(c->db)) {
        c->want_reload = true;
        return;
    }
    uv_timer_stop(&c->retry);
    c->next = pmx_supp_table_new();
    c->load_started = uv_now(c->loop);
    request_page(c);
}

int pmx_supp_cache_start(pmx_supp_cache_t *c)
{
    if (!c->db) return -1;
    if (pmx_db_async_listen(c->db, PMX_SUPP_CHANNEL) < 0) return -1;
    load_start(c);
    return 0;
}

void pmx_supp_cache_on_db_state(pmx_supp_cache_t *c, bool up)
{
    /* A load cut by the loss ended in page_done(NULL), which dropped it: start
     * afresh. A load already running on the new connection is fresh enough. */
    if (up && !c->next) load_start(c);
}

void pmx_supp_cache_on_notify(pmx_supp_cache_t *c, const char *channel, const char *payload)
{
    if (strcmp(channel, PMX_SUPP_CHANNEL) != 0 || c->closing) return;
    pmx_log_debug("suppressions notify \"%s\"", payload ? payload : "");
    int rc = c->cur ? pmx_supp_table_apply(c->cur, payload) : 0;
    if (rc == 0 && c->cur == NULL && payload && strcmp(payload, "*") == 0) rc = 1;
    if (rc < 0) {
        pmx_log_warn("suppressions: unreadable notification ignored (reloading)");
        rc = 1;
    }
    if (rc == 1) {
        load_start(c);
        return;
    }
    if (c->next) {
        /* A load is running: the new table must hear it too, after its pages. */
        size_t n = strlen(payload) + 1;
        replay_t *r = pmx_xmalloc(sizeof *r + n);
        r->next = NULL;
        memcpy(r->payload, payload, n);
        *c->replay_tail = r;
        c->replay_tail = &r->next;
    }
}

pmx_supp_reason_t pmx_supp_cache_check(const pmx_supp_cache_t *c, const char *ws,
                                       const char *category, const char *addr)
{
    if (!c->cur || pmx_supp_table_count(c->cur) == 0) return PMX_SUPP_NONE;
    int64_t now = (int64_t)time(NULL);
    pmx_supp_reason_t r = pmx_supp_table_get(c->cur, ws, "*", addr, now);
    if (r == PMX_SUPP_NONE && category && *category)
        r = pmx_supp_table_get(c->cur, ws, category, addr, now);
    return r;
}

static void timer_closed(uv_handle_t *h)
{
    free(h->data);
}

void pmx_supp_cache_free(pmx_supp_cache_t *c)
{
    if (!c) return;
    c->closing = true;
    if (c->req) pmx_db_async_cancel(c->req);
    c->req = NULL;
    load_abort(c);
    pmx_supp_table_free(c->cur);
    c->cur = NULL;
    uv_close((uv_handle_t *)&c->retry, timer_closed);
}
