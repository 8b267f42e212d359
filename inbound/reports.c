/*
 * Stored inbound reports (docs/feedback.md "Inbound SMTP"): applying one to
 * the recipient its token names (sql/q_inbound.h: once, in one transaction),
 * and the listener's upkeep — the return-path domains, pruning reports older
 * than PMX_INBOUND_KEEP_DAYS, and applying rows that were stored but not
 * applied (Postgres went away between the two statements).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "inbound/listener_int.h"
#include "lib/log.h"
#include "lib/mem.h"
#include "sql/q_inbound.h"
#include "sql/q_unsubscribe.h"
#include "workers/metrics.h"

#define RECOVER_BATCH 50      /* unapplied rows applied per upkeep */

/* One report being applied. */
typedef struct {
    pmx_inbound_t *in;
    char           id[24];
    char           act[16];
    char           cls[24];
} apply_t;

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

/* The recipient of the report that says what happened: the first that failed
 * (a bounce) or was delayed (a delay); else the first. */
static const pmx_fb_rcpt_t *report_rcpt(const pmx_fb_report_t *r, const char *action)
{
    for (size_t i = 0; i < r->nrcpts; i++)
        if (r->rcpts[i].action && strcmp(r->rcpts[i].action, action) == 0) return &r->rcpts[i];
    return r->nrcpts ? &r->rcpts[0] : NULL;
}

static void apply_done(pmx_db_async_t *db, const PGresult *res, void *arg)
{
    (void)db;
    apply_t *a = arg;
    pmx_inbound_t *in = a->in;
    in->npending--;
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        pmx_log_warn("inbound report not applied report=%s reason=\"%s\" (retried later)", a->id,
                     res ? PQresultErrorMessage(res) : "postgres connection lost");
    } else if (strcmp(PQgetvalue(res, 0, 0), "1") == 0) {
        const char *ws = PQgetisnull(res, 0, 1) ? NULL : PQgetvalue(res, 0, 1);
        bool bounced = strcmp(PQgetvalue(res, 0, 2), "1") == 0;
        if (bounced && ws) {
            pmx_metrics_count_recipients(ws, "bounced", 1);
            pmx_metrics_count_bounce(ws, a->cls);
        }
        pmx_log_info("inbound report applied report=%s act=%s ws=%s%s", a->id, a->act,
                     ws ? ws : "-", bounced ? " bounced=async" : "");
    }
    free(a);
    pmx_inbound__maybe_free(in);
}

static apply_t *apply_new(pmx_inbound_t *in, const char *id, const char *act, const char *cls)
{
    apply_t *a = pmx_xcalloc(1, sizeof *a);
    a->in = in;
    snprintf(a->id, sizeof a->id, "%s", id);
    snprintf(a->act, sizeof a->act, "%s", act);
    snprintf(a->cls, sizeof a->cls, "%s", cls ? cls : "");
    return a;
}

static void mark_done(pmx_db_async_t *db, const PGresult *res, void *arg);

/* The unsubscribe was written (or there was nobody to unsubscribe): mark the
 * report applied. */
static void unsub_applied(pmx_db_async_t *db, const PGresult *res, void *arg)
{
    apply_t *a = arg;
    pmx_inbound_t *in = a->in;
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
        pmx_log_warn("inbound unsubscribe failed report=%s reason=\"%s\" (retried later)", a->id,
                     res ? PQresultErrorMessage(res) : "postgres connection lost");
        in->npending--;
        free(a);
        pmx_inbound__maybe_free(in);
        return;
    }
    if (PQntuples(res) == 1)
        pmx_log_info("inbound unsubscribe report=%s ws=%s scope=%s added=%s", a->id,
                     PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 2), PQgetvalue(res, 0, 3));
    if (!pmx_db_inbound_mark(db, a->id, mark_done, a)) {
        in->npending--;
        free(a);
        pmx_inbound__maybe_free(in);
    }
}

/* The mark's result: logged like an apply (command results carry no rows). */
static void mark_done(pmx_db_async_t *db, const PGresult *res, void *arg)
{
    apply_t *a = arg;
    (void)db;
    a->in->npending--;
    if (!res || PQresultStatus(res) != PGRES_COMMAND_OK)
        pmx_log_warn("inbound report not applied report=%s reason=\"%s\" (retried later)", a->id,
                     res ? PQresultErrorMessage(res) : "postgres connection lost");
    else
        pmx_log_info("inbound report applied report=%s act=unsubscribe", a->id);
    pmx_inbound_t *in = a->in;
    free(a);
    pmx_inbound__maybe_free(in);
}

/*
 * Applies stored report id: ref says which recipient (message id, idx) it
 * names and how it came (RCPT type); r is the parsed report. Nothing happens
 * when Postgres is down: the upkeep retries.
 */
void pmx_inbound__apply(pmx_inbound_t *in, const char *id, const rcpt_ref_t *ref,
                        const pmx_fb_report_t *r)
{
    pmx_db_async_t *db = pmx_worker_db(in->w);
    if (ref->type == RCPT_UNSUB) {
        apply_t *a = apply_new(in, id, "unsubscribe", NULL);
        in->npending++;
        if (!pmx_db_unsub_apply(db, ref->msg_id, ref->idx, "mailto", unsub_applied, a)) {
            in->npending--;
            free(a);
        }
        return;
    }
    pmx_db_inbound_act_t act = {
        .act = "none",
        .soft_limit = (unsigned)in->cfg->soft_bounce_limit,
        .soft_for_s = in->cfg->soft_bounce_suppress_for_ms / 1000,
    };
    json_t *detail = NULL;
    const pmx_fb_rcpt_t *rc = NULL;
    switch (r->kind) {
    case PMX_FB_KIND_BOUNCE:
    case PMX_FB_KIND_DELAY: {
        bool bounce = r->kind == PMX_FB_KIND_BOUNCE;
        act.act = bounce ? "bounce" : "delay";
        rc = report_rcpt(r, bounce ? "failed" : "delayed");
        if (rc) {
            act.status = rc->status;
            act.cls = rc->cls == PMX_FB_CLASS_NONE ? NULL : pmx_fb_class_name(rc->cls);
            act.hard = bounce && rc->hard;
            act.diagnostic = rc->diagnostic;
        }
        if (bounce && !act.cls) act.cls = "other";
        detail = json_pack("{s:o, s:o, s:o}", "status", str_or_null(act.status),
                           "class", str_or_null(act.cls), "diagnostic", str_or_null(act.diagnostic));
        if (bounce) json_object_set_new(detail, "async", json_true());
        break;
    }
    case PMX_FB_KIND_COMPLAINT:
        act.act = "complaint";
        act.feedback_type = r->feedback_type;
        detail = json_pack("{s:o}", "feedback_type", str_or_null(r->feedback_type));
        break;
    case PMX_FB_KIND_AUTO_REPLY:
    case PMX_FB_KIND_UNKNOWN:
        break;
    }
    char *dtext = detail ? json_dumps(detail, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(detail);
    act.detail = dtext;
    apply_t *a = apply_new(in, id, act.act, act.cls);
    in->npending++;
    if (!pmx_db_inbound_apply(db, id, &act, apply_done, a)) {
        in->npending--;
        free(a);
    }
    free(dtext);
}

/* ---- upkeep ---------------------------------------------------------------------------- */

void pmx_inbound__rp_free(pmx_inbound_t *in)
{
    for (size_t i = 0; i < in->nrp; i++) {
        free(in->rp[i].domain);
        free(in->rp[i].ws);
        free(in->rp[i].base);
    }
    free(in->rp);
    in->rp = NULL;
    in->nrp = 0;
}

static void domains_done(pmx_db_async_t *db, const PGresult *res, void *arg)
{
    (void)db;
    pmx_inbound_t *in = arg;
    in->rp_loading = false;
    if (res && PQresultStatus(res) == PGRES_TUPLES_OK && !in->stopping) {
        pmx_inbound__rp_free(in);
        in->nrp = (size_t)PQntuples(res);
        in->rp = pmx_xcalloc(in->nrp + 1, sizeof *in->rp);
        for (size_t i = 0; i < in->nrp; i++) {
            in->rp[i].domain = pmx_xstrdup(PQgetvalue(res, (int)i, 0));
            in->rp[i].ws = pmx_xstrdup(PQgetvalue(res, (int)i, 1));
            in->rp[i].base = pmx_xstrdup(PQgetvalue(res, (int)i, 2));
        }
        in->rp_loaded_ms = uv_now(in->loop);
    } else if (!in->stopping) {
        in->rp_gen = 0;         /* try again on the next tick */
    }
    pmx_inbound__maybe_free(in);
}

static void prune_done(pmx_db_async_t *db, const PGresult *res, void *arg)
{
    (void)db;
    pmx_inbound_t *in = arg;
    in->npending--;
    if (res && PQresultStatus(res) == PGRES_COMMAND_OK && strcmp(PQcmdTuples((PGresult *)res), "0"))
        pmx_log_info("inbound reports pruned rows=%s older_than_days=%d",
                     PQcmdTuples((PGresult *)res), PMX_INBOUND_KEEP_DAYS);
    pmx_inbound__maybe_free(in);
}

/* Rows stored but not applied (Postgres went away in between): parsed again
 * from raw and applied (exactly once: sql/q_inbound.h). */
static void unapplied_done(pmx_db_async_t *db, const PGresult *res, void *arg)
{
    (void)db;
    pmx_inbound_t *in = arg;
    in->npending--;
    in->recovering = false;
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || in->stopping) {
        pmx_inbound__maybe_free(in);
        return;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        rcpt_ref_t ref;
        memset(&ref, 0, sizeof ref);
        const char *rcpt = PQgetvalue(res, i, 1);
        ref.type = (rcpt[0] == 'u' || rcpt[0] == 'U') && rcpt[1] == '-' ? RCPT_UNSUB : RCPT_BOUNCE;
        if (!PQgetisnull(res, i, 2) && !PQgetisnull(res, i, 3)) {
            snprintf(ref.msg_id, sizeof ref.msg_id, "%s", PQgetvalue(res, i, 2));
            ref.idx = (unsigned)strtoul(PQgetvalue(res, i, 3), NULL, 10);
        }
        size_t n = 0;
        unsigned char *raw = PQunescapeBytea((const unsigned char *)PQgetvalue(res, i, 4), &n);
        pmx_fb_report_t rep;
        pmx_fb_report_parse(in->rules, raw ? (const char *)raw : "", raw ? n : 0, &rep);
        PQfreemem(raw);
        pmx_log_info("inbound report retried report=%s rcpt=%s", PQgetvalue(res, i, 0), rcpt);
        if (ref.type == RCPT_UNSUB && !ref.msg_id[0]) {
            apply_t *a = apply_new(in, PQgetvalue(res, i, 0), "unsubscribe", NULL);
            in->npending++;
            if (!pmx_db_inbound_mark(pmx_worker_db(in->w), a->id, mark_done, a)) {
                in->npending--;
                free(a);
            }
        } else {
            pmx_inbound__apply(in, PQgetvalue(res, i, 0), &ref, &rep);
        }
        pmx_fb_report_free(&rep);
    }
    pmx_inbound__maybe_free(in);
}

/* Prune and retry run on their own, slower timer period (every
 * PMX_INBOUND_UPKEEP_MS); the domains are checked every 5 s. */
static void upkeep_slow(pmx_inbound_t *in)
{
    pmx_db_async_t *db = pmx_worker_db(in->w);
    if (in->stopping || !db || !pmx_db_async_is_up(db)) return;
    in->npending++;
    if (!pmx_db_inbound_prune(db, PMX_INBOUND_KEEP_DAYS, prune_done, in)) in->npending--;
    if (!in->recovering) {
        in->npending++;
        if (pmx_db_inbound_unapplied(db, PMX_INBOUND_RETRY_AFTER_S, RECOVER_BATCH, unapplied_done,
                                     in))
            in->recovering = true;
        else
            in->npending--;
    }
}

void pmx_inbound__upkeep(uv_timer_t *t)
{
    pmx_inbound_t *in = t->data;
    pmx_db_async_t *db = pmx_worker_db(in->w);
    if (in->stopping || !db || !pmx_db_async_is_up(db)) return;
    uint64_t now = uv_now(in->loop);
    uint64_t gen = pmx_settings_generation(in->settings);
    if (!in->rp_loading && (gen != in->rp_gen || now - in->rp_loaded_ms >= PMX_INBOUND_UPKEEP_MS)) {
        in->rp_gen = gen;
        if (pmx_db_inbound_domains(db, domains_done, in)) in->rp_loading = true;
        else in->rp_gen = 0;
    }
    if (in->ticks++ % (PMX_INBOUND_UPKEEP_MS / PMX_INBOUND_TICK_MS) == 0) upkeep_slow(in);
}
