/*
 * The reputation guard's timer; see guard.h.
 */
#include "inbound/guard.h"

#include <stdlib.h>

#include <libpq-fe.h>

#include "lib/log.h"
#include "lib/mem.h"
#include "sql/q_guard.h"

struct pmx_guard {
    uv_timer_t          timer;
    pmx_db_async_t     *db;
    const pmx_config_t *cfg;
    pmx_db_async_req_t *req;
};

static void judged(pmx_db_async_t *db, const PGresult *res, void *arg)
{
    (void)db;
    pmx_guard_t *g = arg;
    g->req = NULL;
    if (!res) return;   /* the connection went away: the next tick tries again */
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        pmx_log_error("reputation guard: %s", PQresultErrorMessage(res));
        return;
    }
    for (int r = 0; r < PQntuples(res); r++)
        pmx_log_warn("workspace paused ws=%s reason=\"%s\"", PQgetvalue(res, r, 0),
                     PQgetvalue(res, r, 1));
}

static void tick(uv_timer_t *t)
{
    pmx_guard_t *g = t->data;
    if (g->req || !pmx_db_async_is_up(g->db)) return;
    const pmx_config_t *c = g->cfg;
    /* Defaults of "none" still judge the workspaces with limits of their own. */
    g->req = pmx_db_guard_run(g->db, c->guard_window_ms / 1000, c->max_bounce_rate,
                              c->max_complaint_rate, c->guard_min_sent, judged, g);
}

pmx_guard_t *pmx_guard_start(uv_loop_t *loop, pmx_db_async_t *db, const pmx_config_t *cfg)
{
    pmx_guard_t *g = pmx_xcalloc(1, sizeof *g);
    g->db = db;
    g->cfg = cfg;
    uv_timer_init(loop, &g->timer);
    g->timer.data = g;
    uv_unref((uv_handle_t *)&g->timer);   /* never what keeps a finishing worker alive */
    uv_timer_start(&g->timer, tick, PMX_GUARD_INTERVAL_MS, PMX_GUARD_INTERVAL_MS);
    return g;
}

static void closed(uv_handle_t *h)
{
    free(h->data);
}

void pmx_guard_free(pmx_guard_t *g)
{
    if (!g) return;
    if (g->req) pmx_db_async_cancel(g->req);
    g->req = NULL;
    uv_close((uv_handle_t *)&g->timer, closed);
}
