/*
 * The [inbound] listener; see listener.h (and reports.c: applying what is
 * stored, and the upkeep). Accepting, the connection limits, the session
 * list, the stream, the inactivity timer, drain and stop are smtp/listener.h's;
 * here is what an inbound session adds: no AUTH (smtp/server.h), a lifetime
 * timer, the recipients it accepts and storing what it receives. A stored
 * message becomes a
 * `delivery_t` that outlives its session: the session pointer is cleared when
 * the session closes (the answer is then only logged).
 *
 * Memory: a message is held once in the session's DATA buffer (counted in
 * the worker's budget through smtp/server.h's hold/room). When it is stored,
 * the buffer is freed as soon as the INSERT is queued, and the copies the
 * Postgres request and libpq hold (twice its size) stay counted until
 * Postgres answers.
 */
#include "inbound/listener_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "inbound/classify.h"
#include "inbound/report.h"
#include "inbound/report_json.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/mem.h"
#include "lib/reftoken.h"
#include "smtp/listener.h"
#include "smtp/server.h"
#include "sql/q_inbound.h"
#include "submission/budget.h"
#include "submission/peerlimit.h"
#include "workers/metrics.h"

typedef struct pmx_inbound_session session_t;
typedef struct delivery delivery_t;

struct pmx_inbound_session {
    pmx_smtp_session_t s;                 /* first: the listener's part (smtp/listener.h) */
    pmx_inbound_t     *in;
    uv_timer_t         deadline;          /* PMX_INBOUND_SESSION_MS */
    bool               life_over;
    uint64_t           held;              /* of in->mem: the DATA buffer */
    delivery_t        *dl;                /* a message being stored */
};

/* One message being stored. */
struct delivery {
    pmx_inbound_t  *in;
    session_t      *ss;              /* NULL once the session is gone */
    uint64_t        session_id;
    char            client[PMX_PEERLIMIT_KEY_MAX];
    uint64_t        held;            /* of in->mem, until Postgres answers */
    pmx_fb_report_t rep;
    size_t          nr;
    rcpt_ref_t     *refs;
    char          **rcpts;
};

/* ---- free bookkeeping -------------------------------------------------------------- */

void pmx_inbound__maybe_free(pmx_inbound_t *in)
{
    if (!in->stopping || (in->l && !pmx_smtp_listener_idle(in->l)) || in->upkeep_open ||
        in->npending > 0 || in->rp_loading)
        return;
    pmx_smtp_listener_free(in->l);
    pmx_inbound__rp_free(in);
    pmx_fb_rules_free(in->rules);
    free(in);
}

static void released(void *arg)
{
    pmx_inbound__maybe_free(arg);
}

static void upkeep_closed(uv_handle_t *h)
{
    pmx_inbound_t *in = h->data;
    in->upkeep_open = false;
    pmx_inbound__maybe_free(in);
}

static void stop_upkeep(pmx_inbound_t *in)
{
    if (in->upkeep_open && !uv_is_closing((uv_handle_t *)&in->upkeep))
        uv_close((uv_handle_t *)&in->upkeep, upkeep_closed);
}

/* ---- session lifetime (the rest is smtp/listener.c's) -------------------------------- */

static void session_created(pmx_smtp_session_t *s)
{
    session_t *ss = (session_t *)s;
    ss->in = pmx_smtp_listener_arg(s->l);
    pmx_metrics_sessions_add(PMX_METRICS_INBOUND, 1);
    pmx_smtp_session_add_timer(s, &ss->deadline);
}

static void session_closing(pmx_smtp_session_t *s)
{
    session_t *ss = (session_t *)s;
    if (ss->dl) ss->dl->ss = NULL;
    ss->dl = NULL;
}

static void session_freed(pmx_smtp_session_t *s)
{
    session_t *ss = (session_t *)s;
    pmx_submission_budget_hold(&ss->in->mem, &ss->held, 0);
    pmx_metrics_sessions_add(PMX_METRICS_INBOUND, -1);
}

/* The session's lifetime: the transaction in progress may finish, then "421
 * 4.4.2"; PMX_INBOUND_IDLE_MS later it is closed whatever it is doing. */
static void deadline_cb(uv_timer_t *t)
{
    session_t *ss = t->data;
    if (ss->s.closing) return;
    if (ss->life_over) {
        pmx_smtp_session_close(&ss->s);
        return;
    }
    ss->life_over = true;
    pmx_log_info("inbound session time limit session=%llu client=%s", (unsigned long long)ss->s.id,
                 ss->s.client);
    pmx_smtp_server_expire(ss->s.smtp, "4.4.2", "Error: session time limit reached; closing connection");
    if (!ss->s.closing) uv_timer_start(&ss->deadline, deadline_cb, PMX_INBOUND_IDLE_MS, 0);
}

static void session_accepted(pmx_smtp_session_t *s)
{
    session_t *ss = (session_t *)s;
    uv_timer_start(&ss->deadline, deadline_cb, PMX_INBOUND_SESSION_MS, 0);
}

/* ---- server callbacks --------------------------------------------------------------- */

static void srv_auth(void *arg, const char *password, size_t n)
{
    (void)password;
    (void)n;
    session_t *ss = arg;     /* never called: no_auth refuses AUTH itself */
    pmx_smtp_server_auth_done(ss->s.smtp, 502, "5.5.1", "AUTH not offered");
}

static bool srv_hold(void *arg, uint64_t n)
{
    session_t *ss = arg;
    if (ss->s.closing && n > ss->held) return false;
    if (pmx_submission_budget_hold(&ss->in->mem, &ss->held, n)) return true;
    pmx_log_warn("inbound memory budget refused session=%llu client=%s want=%llu used=%llu "
                 "budget=%llu", (unsigned long long)ss->s.id, ss->s.client, (unsigned long long)n,
                 (unsigned long long)ss->in->mem.used, (unsigned long long)ss->in->mem.limit);
    return false;
}

static bool srv_room(void *arg, uint64_t n)
{
    session_t *ss = arg;
    return pmx_submission_budget_room(&ss->in->mem, ss->held, n);
}

/* ---- recipients ---------------------------------------------------------------------- */

/* The workspace whose verified domain has return-path domain d, or NULL:
 * domains.return_path, else bounces.<verified domain>, as the upkeep loaded
 * them; a domain verified since that load (in the settings cache, not in the
 * list) counts with bounces.<domain> at once. */
static const char *rp_workspace(const pmx_inbound_t *in, const char *d)
{
    for (size_t i = 0; i < in->nrp; i++)
        if (strcasecmp(in->rp[i].domain, d) == 0) return in->rp[i].ws;
    if (strncasecmp(d, "bounces.", 8) != 0) return NULL;
    for (size_t i = 0; i < in->nrp; i++)
        if (strcasecmp(in->rp[i].base, d + 8) == 0) return NULL;   /* it has another one */
    size_t n = pmx_settings_count(in->settings);
    for (size_t i = 0; i < n; i++) {
        const pmx_settings_ws_t *ws = pmx_settings_at(in->settings, i);
        for (size_t k = 0; k < ws->ndomains; k++)
            if (ws->domains[k].verified && strcasecmp(ws->domains[k].name, d + 8) == 0)
                return ws->id;
    }
    return NULL;
}

/* A token (any case) checked for purpose; out gets what it names. */
bool pmx_inbound__token_ok(const pmx_inbound_t *in, pmx_ref_purpose_t purpose, const char *tok,
                           size_t n, rcpt_ref_t *out)
{
    char low[PMX_REF_TOKEN_LEN + 1];
    if (n != PMX_REF_TOKEN_LEN) return false;
    for (size_t i = 0; i < n; i++)
        low[i] = (tok[i] >= 'A' && tok[i] <= 'Z') ? (char)(tok[i] - 'A' + 'a') : tok[i];
    low[n] = '\0';
    return pmx_ref_token_check(pmx_worker_ref_key(in->w), purpose, low, n, out->msg_id,
                               &out->idx) == 0;
}

/* What addr (a canonical forward-path) names; RCPT_NONE = not ours. */
static rcpt_type_t rcpt_classify(const pmx_inbound_t *in, const char *addr, rcpt_ref_t *out)
{
    memset(out, 0, sizeof *out);
    const char *at = strrchr(addr, '@');
    if (!at) return RCPT_NONE;
    size_t local = (size_t)(at - addr);
    if (local > 2 && addr[1] == '-' && (addr[0] == 'b' || addr[0] == 'B') &&
        pmx_inbound__token_ok(in, PMX_REF_BOUNCE, addr + 2, local - 2, out))
        return out->type = RCPT_BOUNCE;
    if (local > 2 && addr[1] == '-' && (addr[0] == 'u' || addr[0] == 'U') &&
        pmx_inbound__token_ok(in, PMX_REF_UNSUBSCRIBE, addr + 2, local - 2, out))
        return out->type = RCPT_UNSUB;
    if (local == 3 && strncasecmp(addr, "fbl", 3) == 0 && (out->ws = rp_workspace(in, at + 1))) {
        out->msg_id[0] = '\0';
        return out->type = RCPT_FBL;
    }
    memset(out, 0, sizeof *out);
    return RCPT_NONE;
}

static int srv_rcpt(void *arg, const char *addr)
{
    session_t *ss = arg;
    rcpt_ref_t r;
    if (rcpt_classify(ss->in, addr, &r) != RCPT_NONE) return 250;
    /* fbl@ before the verified domains are known: not now, rather than never. */
    const char *at = strrchr(addr, '@');
    if (at && at - addr == 3 && strncasecmp(addr, "fbl", 3) == 0 &&
        !pmx_settings_ready(ss->in->settings)) {
        pmx_log_info("inbound recipient deferred session=%llu client=%s rcpt=\"%s\" "
                     "reason=\"settings not loaded yet\"", (unsigned long long)ss->s.id, ss->s.client,
                     addr);
        return 451;
    }
    pmx_log_info("inbound recipient refused session=%llu client=%s rcpt=\"%s\"",
                 (unsigned long long)ss->s.id, ss->s.client, addr);
    return 550;
}

/* For an fbl@ report: the recipient its returned original names by token. */
static void fbl_ref(const pmx_inbound_t *in, const pmx_fb_report_t *r, rcpt_ref_t *ref)
{
    ref->msg_id[0] = '\0';
    const char *tok = r->ref;
    if (tok && !pmx_inbound__token_ok(in, PMX_REF_BOUNCE, tok, strlen(tok), ref)) ref->msg_id[0] = '\0';
}

/* ---- storing a message ------------------------------------------------------------- */

static const char *stored_kind(const rcpt_ref_t *ref, const pmx_fb_report_t *r)
{
    return ref->type == RCPT_UNSUB ? "unsubscribe" : pmx_fb_kind_name(r->kind);
}

static void delivery_free(delivery_t *d)
{
    pmx_submission_budget_hold(&d->in->mem, &d->held, 0);
    pmx_fb_report_free(&d->rep);
    for (size_t i = 0; i < d->nr; i++) free(d->rcpts[i]);
    free(d->rcpts);
    free(d->refs);
    free(d);
}

static void store_done(pmx_db_async_t *db, const PGresult *res, void *arg)
{
    (void)db;
    delivery_t *d = arg;
    pmx_inbound_t *in = d->in;
    session_t *ss = d->ss;
    in->npending--;
    bool ok = res && PQresultStatus(res) == PGRES_TUPLES_OK && (size_t)PQntuples(res) == d->nr;
    char text[128] = "";
    if (!ok) {
        pmx_log_warn("inbound store failed session=%llu client=%s reason=\"%s\"",
                     (unsigned long long)d->session_id, d->client,
                     res ? PQresultErrorMessage(res) : "postgres connection lost");
    } else {
        for (int i = 0; i < PQntuples(res); i++) {
            const char *id = PQgetvalue(res, i, 0);
            const char *ws = PQgetisnull(res, i, 1) ? NULL : PQgetvalue(res, i, 1);
            const char *rcpt = PQgetvalue(res, i, 2);
            size_t k = 0;
            while (k < d->nr && strcmp(d->rcpts[k], rcpt) != 0) k++;
            if (k == d->nr) continue;
            const char *kind = stored_kind(&d->refs[k], &d->rep);
            pmx_metrics_count_feedback(ws, kind);
            pmx_log_info("inbound report stored session=%llu client=%s report=%s rcpt=%s kind=%s "
                         "ws=%s msg=%s", (unsigned long long)d->session_id, d->client, id, rcpt,
                         kind, ws ? ws : "-", d->refs[k].msg_id[0] ? d->refs[k].msg_id : "-");
            if (i == 0) snprintf(text, sizeof text, "Ok: stored as report %s", id);
            pmx_inbound__apply(in, id, &d->refs[k], &d->rep);
        }
    }
    if (ss) {
        ss->dl = NULL;
        if (ok) pmx_smtp_server_message_done(ss->s.smtp, 250, "2.0.0", text);
        else pmx_smtp_server_message_done(ss->s.smtp, 451, "4.3.0",
                                          "Cannot store the message now; try again later");
    }
    delivery_free(d);
    pmx_inbound__maybe_free(in);
}

static void srv_message(void *arg, const pmx_smtp_envelope_t *env)
{
    session_t *ss = arg;
    pmx_inbound_t *in = ss->in;
    if (ss->s.closing) return;
    pmx_buf_t buf;
    size_t off;
    pmx_smtp_server_take_message(ss->s.smtp, &buf, &off);
    uint64_t held = ss->held;       /* the buffer's hold is ours now */
    ss->held = 0;
    const char *msg = buf.data ? buf.data + off : env->msg;

    delivery_t *d = pmx_xcalloc(1, sizeof *d);
    d->in = in;
    d->session_id = ss->s.id;
    snprintf(d->client, sizeof d->client, "%s", ss->s.client);
    d->held = held;
    d->nr = env->nrcpts;
    d->refs = pmx_xcalloc(env->nrcpts, sizeof *d->refs);
    d->rcpts = pmx_xcalloc(env->nrcpts, sizeof *d->rcpts);
    pmx_fb_report_parse(in->rules, msg, env->len, &d->rep);

    pmx_db_inbound_rcpt_t *rows = pmx_xcalloc(env->nrcpts, sizeof *rows);
    for (size_t i = 0; i < env->nrcpts; i++) {
        d->rcpts[i] = pmx_xstrdup(env->rcpts[i]);
        rcpt_ref_t *ref = &d->refs[i];
        rcpt_classify(in, env->rcpts[i], ref);      /* accepted at RCPT: never NONE */
        if (ref->type == RCPT_FBL) {
            const char *ws = ref->ws;
            fbl_ref(in, &d->rep, ref);
            ref->ws = ws;
        }
        rows[i] = (pmx_db_inbound_rcpt_t){
            .rcpt = env->rcpts[i],
            .message_id = ref->msg_id[0] ? ref->msg_id : NULL,
            .idx = ref->msg_id[0] ? (int)ref->idx : -1,
            .kind = stored_kind(ref, &d->rep),
            .ws = ref->type == RCPT_FBL ? ref->ws : NULL,
        };
    }
    json_t *j = pmx_fb_report_json(&d->rep);
    char *parsed = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);

    /* The request's copy and libpq's: twice the message until Postgres answers. */
    pmx_db_async_req_t *q = NULL;
    if (parsed && pmx_submission_budget_hold(&in->mem, &d->held, 2 * (uint64_t)env->len + 4096))
        q = pmx_db_inbound_store(pmx_worker_db(in->w), rows, env->nrcpts, env->mail_from, parsed,
                                 msg, env->len, store_done, d);
    free(parsed);
    free(rows);
    pmx_buf_free(&buf);
    if (!q) {
        pmx_log_warn("inbound store failed session=%llu client=%s reason=\"%s\"",
                     (unsigned long long)ss->s.id, ss->s.client,
                     pmx_db_async_is_up(pmx_worker_db(in->w)) ? "no memory for the message"
                                                              : "postgres is down");
        delivery_free(d);
        pmx_smtp_server_message_done(ss->s.smtp, 451, "4.3.0",
                                     "Cannot store the message now; try again later");
        return;
    }
    in->npending++;
    d->ss = ss;
    ss->dl = d;
}

static const char *so_hostname(const pmx_config_t *cfg)
{
    return cfg->inbound_hostname[0] ? cfg->inbound_hostname : cfg->relay_helo_name;
}

/* ---- public ------------------------------------------------------------------------------- */

static const pmx_smtp_listener_cbs_t listener_cbs = {
    .server = { .auth = srv_auth, .message = srv_message, .hold = srv_hold, .room = srv_room,
                .rcpt = srv_rcpt },
    .created = session_created, .accepted = session_accepted, .closing = session_closing,
    .freed = session_freed, .released = released,
};

_Static_assert(PMX_PEERLIMIT_KEY_MAX == PMX_SMTP_LISTENER_CLIENT_MAX, "client keys");

int pmx_inbound_start(pmx_worker_t *w, pmx_settings_t *settings, pmx_inbound_t **out)
{
    *out = NULL;
    int fd = pmx_worker_inbound_fd(w);
    if (fd < 0) return 0;
    const pmx_config_t *cfg = pmx_worker_config(w);
    pmx_inbound_t *in = pmx_xcalloc(1, sizeof *in);
    in->w = w;
    in->loop = pmx_worker_loop(w);
    in->cfg = cfg;
    in->settings = settings;
    uint64_t budget = 4 * cfg->inbound_max_message_size;
    pmx_submission_budget_init(&in->mem, budget > PMX_INBOUND_MEMORY_MIN ? budget
                                                                         : PMX_INBOUND_MEMORY_MIN);
    pmx_smtp_tls_ctx_t *tls = NULL;
    if (cfg->inbound_tls_cert[0]) {
        char err[512];
        if (pmx_smtp_tls_ctx_new_server(&tls, cfg->inbound_tls_cert, cfg->inbound_tls_key, err,
                                        sizeof err) < 0) {
            pmx_log_error("[inbound] %s", err);
            free(in);
            return -1;
        }
    }
    in->rules = pmx_fb_rules_installed();
    pmx_smtp_listener_opts_t lo = {
        .name = "inbound",
        .session_size = sizeof(session_t),
        .server = {
            .hostname = so_hostname(cfg),
            .max_message_size = cfg->inbound_max_message_size,
            .max_recipients = PMX_INBOUND_MAX_RCPTS,
            .no_auth = true,
        },
        .tls = tls,
        .idle_ms = PMX_INBOUND_IDLE_MS,
        .max_sessions = PMX_INBOUND_MAX_SESSIONS,
        .max_per_address = PMX_INBOUND_MAX_PER_ADDRESS,
        .client_key = pmx_worker_peerlimit_key,
    };
    in->l = pmx_smtp_listener_new(in->loop, &lo, &listener_cbs, in);
    uv_timer_init(in->loop, &in->upkeep);
    in->upkeep.data = in;
    in->upkeep_open = true;
    int r = pmx_smtp_listener_listen(in->l, fd);
    if (r != 0) {
        pmx_log_error("cannot serve the inbound listener: %s", uv_strerror(r));
        in->stopping = true;
        pmx_smtp_listener_stop(in->l);   /* frees in once the handles have closed */
        stop_upkeep(in);
        return -1;
    }
    uv_timer_start(&in->upkeep, pmx_inbound__upkeep, 1000, PMX_INBOUND_TICK_MS);
    pmx_log_info("inbound listening address=%s hostname=%s tls=%s memory_budget=%llu",
                 cfg->inbound_listen, so_hostname(cfg), tls ? "starttls" : "none",
                 (unsigned long long)in->mem.limit);
    *out = in;
    return 0;
}

void pmx_inbound_drain(pmx_inbound_t *in, void (*done)(void *arg), void *arg)
{
    if (!in) {
        done(arg);
        return;
    }
    stop_upkeep(in);
    pmx_smtp_listener_drain(in->l, done, arg);
}

void pmx_inbound_stop(pmx_inbound_t *in)
{
    if (!in) return;
    in->stopping = true;
    stop_upkeep(in);
    pmx_smtp_listener_stop(in->l);
    pmx_inbound__maybe_free(in);
}
