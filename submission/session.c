/*
 * SMTP submission glue; see session.h. Accepting, the session list, the
 * stream, the inactivity timer, STARTTLS, drain and stop are smtp/listener.h's;
 * a submission session adds a timer for slowed AUTH answers and one for its
 * deadlines. Everything else the state machine asks for is answered here: the
 * connection limits over every worker (peerlimit.h), API key checks, message
 * checks and the XADD.
 *
 * A session is freed only when its stream and every timer have closed. An
 * XADD in flight outlives its session: the request holds the session pointer,
 * which is cleared when the session closes (the reply is then only logged).
 *
 * Memory (docs/submission.md "Memory"): a message is held once. DATA goes
 * into the session's buffer (smtp/server.h), which the message callback
 * takes; X-Workspace-Id is cut out in place, the checks read it where it
 * is, the XADD's RESP head is written into the headroom before it, and
 * hiredis copies the whole command into its output buffer, after which the
 * buffer is freed. Every octet held — DATA buffers and XADDs until Redis
 * answers — is counted in the worker's budget (submission/budget.h).
 */
#include "submission/session.h"

#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "lib/buf.h"
#include "lib/job.h"
#include "lib/log.h"
#include "lib/mem.h"
#include "lib/mime.h"
#include "lib/verp.h"
#include "queue/enqueue.h"
#include "smtp/listener.h"
#include "smtp/server.h"
#include "submission/apikeys.h"
#include "submission/budget.h"
#include "workers/metrics.h"
#include "submission/peerlimit.h"

#define WS_ID_LEN      19      /* "ws_" + 16 base32 */
#define XADD_HEADROOM  4096    /* in front of a message: the XADD's RESP head */
/* Allocations from this size are mmapped, so a freed message goes back to the kernel. */
#define MMAP_THRESHOLD (256 * 1024)

typedef struct session session_t;
typedef struct enqueue enqueue_t;

struct pmx_worker_submission {
    pmx_worker_t           *w;
    uv_loop_t              *loop;
    const pmx_config_t     *cfg;
    pmx_settings_t         *settings;
    pmx_worker_apikeys_t   *keys;
    pmx_worker_peerlimit_t *peers;
    pmx_smtp_listener_t    *l;               /* accepting, the sessions (smtp/listener.h) */
    pmx_submission_budget_t mem;             /* [submission] memory_budget */
    size_t                  npending;        /* XADDs not yet answered */
    bool                    stopping;
};

struct session {
    pmx_smtp_session_t        s;             /* first: the listener's part (smtp/listener.h) */
    pmx_worker_submission_t  *sub;
    uv_timer_t                delay;
    uv_timer_t                deadline;      /* auth_timeout, then max_session_time */
    bool                      tracked;       /* pmx_worker_peerlimit_open gave the address a cell */
    bool                      auth_reserved; /* an AUTH attempt reserved (peerlimit.h) */
    bool                      auth_open;     /* ... not settled yet */
    bool                      life_over;     /* max_session_time reached */
    uint8_t                   digest[PMX_APIKEYS_DIGEST_LEN];  /* of the key; wiped at close */
    uint64_t                  key_gen;       /* the key was last found good in this generation */
    pmx_worker_apikeys_req_t *recheck_req;   /* the key checked again for MAIL */
    pmx_worker_apikeys_req_t *auth_req;
    pmx_apikey_t              key;           /* status OK once authenticated */
    char                      delayed[160];  /* the 535 text answered by the delay timer */
    enqueue_t                *enq;
    uint64_t                  held;          /* of sub->mem: the DATA buffer */
};

struct enqueue {
    pmx_worker_submission_t *sub;
    uint64_t   held;          /* of sub->mem, until Redis answers */
    session_t *ss;            /* NULL once the session is gone */
    uint64_t   session_id;
    char       ws[32];
    char       client[PMX_PEERLIMIT_KEY_MAX];
    size_t     nrcpts, size;
};

/* ---- free bookkeeping ------------------------------------------------------------- */

static void maybe_free(pmx_worker_submission_t *sub)
{
    if (!sub->stopping || !pmx_smtp_listener_idle(sub->l) || sub->npending > 0) return;
    pmx_smtp_listener_free(sub->l);
    pmx_worker_peerlimit_free(sub->peers);
    free(sub);
}

static void released(void *arg)
{
    maybe_free(arg);
}

/* ---- session lifetime (the rest is smtp/listener.c's) -------------------------------- */

static void session_close(session_t *ss)
{
    pmx_smtp_session_close(&ss->s);
}

static void session_created(pmx_smtp_session_t *s)
{
    session_t *ss = (session_t *)s;
    ss->sub = pmx_smtp_listener_arg(s->l);
    pmx_metrics_sessions_add(PMX_METRICS_INBOUND, 1);
    pmx_smtp_session_add_timer(s, &ss->delay);
    pmx_smtp_session_add_timer(s, &ss->deadline);
}

static void auth_settle(session_t *ss, pmx_peerlimit_outcome_t outcome, int64_t *out);

static void session_closing(pmx_smtp_session_t *s)
{
    session_t *ss = (session_t *)s;
    pmx_worker_apikeys_cancel(ss->auth_req);
    ss->auth_req = NULL;
    auth_settle(ss, PMX_PEERLIMIT_AUTH_NONE, NULL);
    pmx_worker_apikeys_cancel(ss->recheck_req);
    ss->recheck_req = NULL;
    pmx_wipe(ss->digest, sizeof ss->digest);
    if (ss->enq) ss->enq->ss = NULL;
    ss->enq = NULL;
    if (ss->s.counted)
        pmx_worker_peerlimit_close(ss->sub->peers, ss->s.client, uv_now(ss->sub->loop), ss->tracked);
}

static void session_freed(pmx_smtp_session_t *s)
{
    session_t *ss = (session_t *)s;
    pmx_submission_budget_hold(&ss->sub->mem, &ss->held, 0);   /* the DATA buffer goes below */
    pmx_metrics_sessions_add(PMX_METRICS_INBOUND, -1);
}

/*
 * The session's deadlines ([submission] auth_timeout, max_session_time):
 * not authenticated auth_timeout after connect -> "421 4.7.0" and close;
 * max_session_time after connect -> the transaction in progress may finish,
 * then "421 4.4.2" and close (and PMX_SUBMISSION_IDLE_MS later it is closed
 * whatever it is doing).
 */
static void deadline_cb(uv_timer_t *t)
{
    session_t *ss = t->data;
    if (ss->s.closing) return;
    const pmx_config_t *cfg = ss->sub->cfg;
    uint64_t age = uv_now(ss->sub->loop) - ss->s.started;
    if (!pmx_smtp_server_is_authed(ss->s.smtp) && age >= cfg->submission_auth_timeout_ms &&
        !ss->life_over) {
        pmx_log_info("submission auth timeout session=%llu client=%s after_ms=%llu",
                     (unsigned long long)ss->s.id, ss->s.client, (unsigned long long)age);
        pmx_smtp_server_refuse(ss->s.smtp, 421, "4.7.0",
                               "Error: authentication required in time; closing connection");
        return;
    }
    if (ss->life_over) {          /* the grace after the 421 is over too */
        session_close(ss);
        return;
    }
    if (age >= cfg->submission_max_session_time_ms) {
        ss->life_over = true;
        pmx_log_info("submission session time limit session=%llu client=%s after_ms=%llu",
                     (unsigned long long)ss->s.id, ss->s.client, (unsigned long long)age);
        pmx_smtp_server_expire(ss->s.smtp, "4.4.2",
                               "Error: session time limit reached; closing connection");
        if (!ss->s.closing) uv_timer_start(&ss->deadline, deadline_cb, PMX_SUBMISSION_IDLE_MS, 0);
        return;
    }
    uv_timer_start(&ss->deadline, deadline_cb, cfg->submission_max_session_time_ms - age, 0);
}

/* ---- AUTH ---------------------------------------------------------------------------------- */

static void delay_cb(uv_timer_t *t)
{
    session_t *ss = t->data;
    if (ss->s.closing) return;
    pmx_smtp_server_auth_done(ss->s.smtp, 535, "5.7.8", ss->delayed);
}

static const char *auth_failure_text(pmx_apikey_status_t st)
{
    switch (st) {
    case PMX_APIKEY_REVOKED:  return "Authentication credentials invalid: the API key is revoked";
    case PMX_APIKEY_NO_SCOPE:
        return "Authentication credentials invalid: the API key lacks the send scope";
    default:                  return "Authentication credentials invalid";
    }
}

static const char *auth_failure_reason(pmx_apikey_status_t st)
{
    switch (st) {
    case PMX_APIKEY_REVOKED:  return "revoked";
    case PMX_APIKEY_NO_SCOPE: return "no_send_scope";
    default:                  return "unknown_key";
    }
}

/*
 * Settles the AUTH attempt reserved by srv_auth (once; later calls do
 * nothing); *out (may be NULL) gets pmx_worker_peerlimit_auth_end's answer.
 */
static void auth_settle(session_t *ss, pmx_peerlimit_outcome_t outcome, int64_t *out)
{
    if (out) *out = 0;
    if (!ss->auth_open) return;
    ss->auth_open = false;
    int64_t r = pmx_worker_peerlimit_auth_end(ss->sub->peers, ss->s.client, uv_now(ss->sub->loop),
                                              ss->auth_reserved, outcome);
    if (out) *out = r;
}

static void auth_blocked(session_t *ss)
{
    pmx_smtp_server_auth_done(ss->s.smtp, 421, "4.7.0",
                              "Too many failed authentications from your address; try again later");
}

/* The key answered OK: true, unless the address was blocked while it was
 * looked up (then answered 421 here). */
static bool auth_ok(session_t *ss, const pmx_apikey_t *key)
{
    int64_t r;
    auth_settle(ss, PMX_PEERLIMIT_AUTH_OK, &r);
    if (r < 0) {
        pmx_log_info("submission auth refused session=%llu client=%s key=%s "
                     "reason=\"address blocked while the key was checked\"",
                     (unsigned long long)ss->s.id, ss->s.client, key->id);
        pmx_wipe(ss->digest, sizeof ss->digest);
        auth_blocked(ss);
        return false;
    }
    ss->key_gen = key->gen;
    return true;
}

static void auth_result(void *arg, const pmx_apikey_t *key)
{
    session_t *ss = arg;
    pmx_worker_submission_t *sub = ss->sub;
    ss->auth_req = NULL;
    if (ss->s.closing) return;
    switch (key->status) {
    case PMX_APIKEY_OK:
        if (!auth_ok(ss, key)) return;
        ss->key = *key;
        pmx_worker_apikeys_touch(sub->keys, key->id);
        pmx_log_info("submission auth ok session=%llu client=%s key=%s ws=%s",
                     (unsigned long long)ss->s.id, ss->s.client, key->id, key->ws[0] ? key->ws : "(org)");
        pmx_smtp_server_auth_done(ss->s.smtp, 235, "2.7.0", "Authentication successful");
        return;
    case PMX_APIKEY_TEMPFAIL:
        auth_settle(ss, PMX_PEERLIMIT_AUTH_NONE, NULL);
        pmx_log_warn("submission auth tempfail session=%llu client=%s (postgres unavailable)",
                     (unsigned long long)ss->s.id, ss->s.client);
        pmx_smtp_server_auth_done(ss->s.smtp, 454, "4.7.0",
                                  "Temporary authentication failure; try again later");
        return;
    case PMX_APIKEY_UNKNOWN:
    case PMX_APIKEY_REVOKED:
    case PMX_APIKEY_NO_SCOPE:
        break;
    }
    pmx_wipe(ss->digest, sizeof ss->digest);
    int64_t delay;
    auth_settle(ss, PMX_PEERLIMIT_AUTH_FAILED, &delay);
    pmx_log_info("submission auth failed session=%llu client=%s reason=%s%s%s",
                 (unsigned long long)ss->s.id, ss->s.client, auth_failure_reason(key->status),
                 key->id[0] ? " key=" : "", key->id);
    if (delay < 0) {
        pmx_log_warn("submission client blocked client=%s failures=%d for_s=%d", ss->s.client,
                     PMX_PEERLIMIT_MAX_FAILURES, PMX_PEERLIMIT_BLOCK_MS / 1000);
        pmx_smtp_server_auth_done(ss->s.smtp, 421, "4.7.0",
                                  "Too many failed authentications from your address; try again later");
    } else if (delay == 0) {
        pmx_smtp_server_auth_done(ss->s.smtp, 535, "5.7.8", auth_failure_text(key->status));
    } else {
        snprintf(ss->delayed, sizeof ss->delayed, "%s", auth_failure_text(key->status));
        uv_timer_start(&ss->delay, delay_cb, (uint64_t)delay, 0);
    }
}

/* The key cache follows the settings' generation (see apikeys.h). */
static void keys_sync(pmx_worker_submission_t *sub)
{
    pmx_worker_apikeys_set_generation(sub->keys, pmx_settings_generation(sub->settings));
}

static void srv_auth(void *arg, const char *password, size_t n)
{
    session_t *ss = arg;
    pmx_worker_submission_t *sub = ss->sub;
    if (ss->s.closing) return;           /* a failed write closed it: nobody to answer */
    /* Counted when it starts: parallel sessions cannot all slip past the block
     * while their lookups are in flight (peerlimit.h). */
    if (pmx_worker_peerlimit_auth_begin(sub->peers, ss->s.client, uv_now(sub->loop),
                                        &ss->auth_reserved) < 0) {
        pmx_log_info("submission auth refused session=%llu client=%s "
                     "reason=\"too many failed or pending attempts from this address\"",
                     (unsigned long long)ss->s.id, ss->s.client);
        auth_blocked(ss);
        return;
    }
    ss->auth_open = true;
    if (pmx_worker_apikeys_digest(password, n, ss->digest) < 0) {
        auth_settle(ss, PMX_PEERLIMIT_AUTH_NONE, NULL);
        pmx_smtp_server_auth_done(ss->s.smtp, 454, "4.7.0",
                                  "Temporary authentication failure; try again later");
        return;
    }
    keys_sync(sub);
    pmx_worker_apikeys_req_t *r = pmx_worker_apikeys_check_digest(sub->keys, ss->digest, "send",
                                                                  auth_result, ss);
    if (r) ss->auth_req = r;
}

/* ---- MAIL: the key is still good --------------------------------------------------------------- */

static void recheck_result(void *arg, const pmx_apikey_t *key)
{
    session_t *ss = arg;
    ss->recheck_req = NULL;
    if (ss->s.closing) return;
    if (key->status == PMX_APIKEY_OK && strcmp(key->id, ss->key.id) == 0) {
        ss->key_gen = key->gen;
        pmx_smtp_server_mail_done(ss->s.smtp, 250, "2.1.0", "Ok");
        return;
    }
    if (key->status == PMX_APIKEY_TEMPFAIL) {
        pmx_log_warn("submission key recheck tempfail session=%llu client=%s (postgres unavailable)",
                     (unsigned long long)ss->s.id, ss->s.client);
        pmx_smtp_server_mail_done(ss->s.smtp, 451, "4.3.0",
                                  "Temporary authentication failure; try again later");
        return;
    }
    pmx_log_info("submission key no longer valid session=%llu client=%s key=%s reason=%s",
                 (unsigned long long)ss->s.id, ss->s.client, ss->key.id, auth_failure_reason(key->status));
    pmx_wipe(ss->digest, sizeof ss->digest);
    memset(&ss->key, 0, sizeof ss->key);
    ss->key.status = PMX_APIKEY_UNKNOWN;
    pmx_smtp_server_mail_done(ss->s.smtp, 535, "5.7.8", auth_failure_text(key->status));
}

/*
 * Every transaction starts with the key checked again when the settings
 * moved on since it was last found good (a revocation bumps them; see
 * apikeys.h): a revoked key stops sending in open sessions too.
 */
static void srv_mail(void *arg, const char *mail_from)
{
    session_t *ss = arg;
    pmx_worker_submission_t *sub = ss->sub;
    (void)mail_from;
    if (ss->s.closing) return;
    keys_sync(sub);
    if (ss->key.status == PMX_APIKEY_OK && ss->key_gen == pmx_worker_apikeys_generation(sub->keys)) {
        pmx_smtp_server_mail_done(ss->s.smtp, 250, "2.1.0", "Ok");
        return;
    }
    pmx_worker_apikeys_req_t *r = pmx_worker_apikeys_check_digest(sub->keys, ss->digest, "send",
                                                                  recheck_result, ss);
    if (r) ss->recheck_req = r;
}

/* ---- a message ------------------------------------------------------------------------------ */

typedef struct {
    int       code;
    const char *enh;
    pmx_buf_t text;
} refusal_t;

static int refuse(refusal_t *r, int code, const char *enh, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int refuse(refusal_t *r, int code, const char *enh, const char *fmt, ...)
{
    r->code = code;
    r->enh = enh;
    va_list ap;
    va_start(ap, fmt);
    pmx_buf_vappendf(&r->text, fmt, ap);
    va_end(ap);
    return -1;
}

static bool ws_id_valid(const char *s, size_t n)
{
    if (n != WS_ID_LEN || strncmp(s, "ws_", 3) != 0) return false;
    for (size_t i = 3; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '2' && s[i] <= '7'))) return false;
    return true;
}

/* The reason without lib/job's and lib/mime's "raw: " prefix (SMTP has no fields). */
static const char *strip_raw(const char *why)
{
    return strncmp(why, "raw: ", 5) == 0 ? why + 5 : why;
}

/* docs/queue.md: the domain must be a verified domain of ws, or a subdomain of one. */
static int check_domain(const pmx_settings_ws_t *ws, const char *what, const char *domain,
                        refusal_t *r)
{
    switch (pmx_settings_domain_for(ws, domain, NULL)) {
    case PMX_SETTINGS_DOMAIN_OK:
        return 0;
    case PMX_SETTINGS_DOMAIN_NO_KEY:
        return refuse(r, 451, "4.3.0", "%s domain %s has no usable DKIM key; try again later",
                      what, domain);
    case PMX_SETTINGS_DOMAIN_UNVERIFIED:
        return refuse(r, 550, "5.7.1", "%s domain %s is not verified yet for workspace %s",
                      what, domain, ws->id);
    case PMX_SETTINGS_DOMAIN_NONE:
        break;
    }
    return refuse(r, 550, "5.7.1", "%s domain %s is not a verified domain of workspace %s",
                  what, domain, ws->id);
}

/*
 * The workspace a message goes to: the key's, or X-Workspace-Id's for an
 * organization key. ws gets the id.
 */
static int pick_workspace(const session_t *ss, const pmx_smtp_envelope_t *env, char ws[32],
                          refusal_t *r)
{
    pmx_buf_t v = PMX_BUF_INIT;
    char why[200];
    int n = pmx_mime_header_get(env->msg, env->len, "X-Workspace-Id", &v, why, sizeof why);
    int rc = 0;
    if (n < 0) {
        rc = refuse(r, 550, "5.6.0", "Message refused: %s", why);
    } else if (ss->key.ws[0] == '\0') {
        if (n == 0)
            rc = refuse(r, 550, "5.7.1", "An organization API key must name the workspace in an "
                        "X-Workspace-Id header");
        else if (n > 1)
            rc = refuse(r, 550, "5.7.1", "More than one X-Workspace-Id header");
        else if (!ws_id_valid(pmx_buf_cstr(&v), v.len))
            rc = refuse(r, 550, "5.7.1", "X-Workspace-Id is not a workspace id (ws_ and 16 "
                        "characters a-z, 2-7)");
        else
            snprintf(ws, 32, "%s", v.data);
    } else {
        if (n > 1 || (n == 1 && strcmp(pmx_buf_cstr(&v), ss->key.ws) != 0))
            rc = refuse(r, 550, "5.7.1", "X-Workspace-Id does not name the API key's workspace (%s)",
                        ss->key.ws);
        else
            snprintf(ws, 32, "%s", ss->key.ws);
    }
    pmx_buf_free(&v);
    return rc;
}

/* The sender's side of a message: its workspace, the workspace's state, the
 * From and MAIL FROM domains. ws gets the workspace id. */
static int check_message(session_t *ss, const pmx_smtp_envelope_t *env, char ws[32], refusal_t *r)
{
    pmx_worker_submission_t *sub = ss->sub;
    if (pick_workspace(ss, env, ws, r) < 0) return -1;
    if (!pmx_settings_ready(sub->settings))
        return refuse(r, 451, "4.3.0", "Workspace settings are not loaded yet; try again later");
    const pmx_settings_ws_t *wsp = pmx_settings_lookup(sub->settings, ws);
    if (!wsp && ss->key.ws[0])
        return refuse(r, 451, "4.3.0", "Workspace %s is not loaded yet; try again later", ws);
    if (!wsp) return refuse(r, 550, "5.7.1", "Unknown workspace %s", ws);
    if (wsp->suspended) return refuse(r, 550, "5.7.1", "Workspace %s is suspended", ws);

    char why[256];
    pmx_addr_t from;
    if (pmx_mime_header_from(env->msg, env->len, &from, why, sizeof why) < 0)
        return refuse(r, 550, "5.6.0", "Message refused: %s", why);
    int rc = check_domain(wsp, "From", pmx_addr_domain(&from), r);
    pmx_addr_free(&from);
    if (rc < 0) return -1;
    const char *at = strrchr(env->mail_from, '@');
    return check_domain(wsp, "MAIL FROM", at ? at + 1 : "", r);
}

/* ---- the message's memory ------------------------------------------------------------- */

/* A message taken from its session: buf->data + off, len octets, and its hold. */
typedef struct {
    pmx_buf_t buf;
    size_t    off, len;
    uint64_t  held;
    pmx_buf_t category;   /* X-Postmux-Category's value, or empty */
    const char *unsubscribe;  /* X-Postmux-Unsubscribe as the job field: "yes", "no" or NULL */
} message_t;

/* When the budget bites: a warning for a message cut short (its data was sent
 * for nothing), a plain line for a MAIL or DATA answered 452 at once. */
static void log_budget_refusal(const session_t *ss, const char *when, uint64_t n)
{
    const pmx_submission_budget_t *b = &ss->sub->mem;
    pmx_log(strcmp(when, "data") == 0 ? PMX_LOG_WARN : PMX_LOG_INFO,
            "submission memory budget refused session=%llu client=%s at=%s want=%llu held=%llu "
            "used=%llu budget=%llu", (unsigned long long)ss->s.id, ss->s.client, when,
            (unsigned long long)n, (unsigned long long)ss->held, (unsigned long long)b->used,
            (unsigned long long)b->limit);
    pmx_metrics_submission_memory_refused();
}

/* smtp/server.h's hold: the DATA buffer grows only within the budget. */
static bool srv_hold(void *arg, uint64_t n)
{
    session_t *ss = arg;
    if (ss->s.closing && n > ss->held) return false;
    if (pmx_submission_budget_hold(&ss->sub->mem, &ss->held, n)) return true;
    log_budget_refusal(ss, "data", n);
    return false;
}

/* smtp/server.h's room: MAIL SIZE= and DATA are answered 452 when it is short. */
static bool srv_room(void *arg, uint64_t n)
{
    session_t *ss = arg;
    if (pmx_submission_budget_room(&ss->sub->mem, ss->held, n)) return true;
    log_budget_refusal(ss, "mail/data", n);
    return false;
}

/* Takes the message's buffer (and its hold) from the session. */
static void message_take(session_t *ss, const pmx_smtp_envelope_t *env, message_t *m)
{
    pmx_smtp_server_take_message(ss->s.smtp, &m->buf, &m->off);
    m->len = m->buf.data ? env->len : 0;
    m->held = ss->held;
    ss->held = 0;
    pmx_buf_init(&m->category);
    m->unsubscribe = NULL;
}

static void message_free(pmx_worker_submission_t *sub, message_t *m)
{
    pmx_buf_free(&m->buf);
    pmx_buf_free(&m->category);
    pmx_submission_budget_hold(&sub->mem, &m->held, 0);
}

/*
 * X-Postmux-Unsubscribe: yes|no (docs/submission.md), cut out like
 * X-Postmux-Category; its value becomes the job's unsubscribe field. Refused
 * when the value is neither, or when yes asks for what this configuration
 * cannot offer (no [http] public_url and no [inbound] listen).
 */
static int take_unsubscribe(session_t *ss, message_t *m, refusal_t *r)
{
    char why[256];
    size_t skip;
    pmx_buf_t v = PMX_BUF_INIT;
    int n = pmx_mime_header_get(m->buf.data + m->off, m->len, "X-Postmux-Unsubscribe", &v, why,
                                sizeof why);
    const char *val = pmx_buf_cstr(&v);
    bool yes = strcasecmp(val, "yes") == 0, no = strcasecmp(val, "no") == 0;
    pmx_buf_free(&v);
    if (n < 0) return refuse(r, 550, "5.6.0", "Message refused: %s", why);
    if (n == 0) return 0;
    if (n > 1) return refuse(r, 550, "5.6.0", "More than one X-Postmux-Unsubscribe header");
    if (!yes && !no) return refuse(r, 550, "5.6.0", "X-Postmux-Unsubscribe must be yes or no");
    const pmx_config_t *cfg = ss->sub->cfg;
    const char *off = yes ? pmx_verp_unsubscribe_unavailable(cfg->http_public_url,
                                                             cfg->inbound_listen)
                          : NULL;
    if (off) return refuse(r, 550, "5.6.0", "Message refused: %s", off);
    if (pmx_mime_header_cut(m->buf.data + m->off, m->len, "X-Postmux-Unsubscribe", &skip, why,
                            sizeof why) < 0)
        return refuse(r, 550, "5.6.0", "Message refused: %s", why);
    m->off += skip;
    m->len -= skip;
    m->unsubscribe = yes ? "yes" : "no";
    return 0;
}

/* The optional job fields of a message (category, unsubscribe) after the
 * first k of f; returns the new count. */
static size_t optional_fields(const message_t *m, pmx_job_field_t *f, size_t k)
{
    if (m->category.len)
        f[k++] = (pmx_job_field_t){ "category", 8, pmx_buf_cstr(&m->category), m->category.len };
    if (m->unsubscribe)
        f[k++] = (pmx_job_field_t){ "unsubscribe", 11, m->unsubscribe, strlen(m->unsubscribe) };
    return k;
}

/*
 * The message as the pipeline will decode it, after X-Workspace-Id is cut
 * out in place, and X-Postmux-Category too (its value becomes the job's
 * category: docs/feedback.md) and X-Postmux-Unsubscribe; to gets the job's
 * to field. Exactly what the pipeline will run, so a 250 is never followed
 * by a rejection for the message's form.
 */
static int check_job(session_t *ss, const pmx_smtp_envelope_t *env, message_t *m, pmx_buf_t *to,
                     refusal_t *r)
{
    char why[256];
    size_t skip;
    if (pmx_mime_header_cut(m->buf.data + m->off, m->len, "X-Workspace-Id", &skip, why,
                            sizeof why) < 0)
        return refuse(r, 550, "5.6.0", "Message refused: %s", why);
    m->off += skip;
    m->len -= skip;
    int ncat = pmx_mime_header_get(m->buf.data + m->off, m->len, "X-Postmux-Category",
                                   &m->category, why, sizeof why);
    if (ncat < 0) return refuse(r, 550, "5.6.0", "Message refused: %s", why);
    if (ncat > 1) return refuse(r, 550, "5.6.0", "More than one X-Postmux-Category header");
    if (ncat == 1) {
        if (pmx_mime_header_cut(m->buf.data + m->off, m->len, "X-Postmux-Category", &skip, why,
                                sizeof why) < 0)
            return refuse(r, 550, "5.6.0", "Message refused: %s", why);
        m->off += skip;
        m->len -= skip;
    }
    if (take_unsubscribe(ss, m, r) < 0) return -1;
    for (size_t i = 0; i < env->nrcpts; i++) {
        if (i) pmx_buf_append_str(to, ", ");
        pmx_buf_append_str(to, env->rcpts[i]);
    }
    pmx_job_field_t f[5] = {
        { "from", 4, env->mail_from, strlen(env->mail_from) },
        { "to", 2, pmx_buf_cstr(to), to->len },
        { "raw", 3, m->buf.data + m->off, m->len },
    };
    if (pmx_job_check(f, optional_fields(m, f, 3),
                      (size_t)ss->sub->cfg->submission_max_message_size, why, sizeof why) < 0)
        return refuse(r, 550, "5.6.0", "Message refused: %s", strip_raw(why));
    if (pmx_mime_check_raw(m->buf.data + m->off, m->len, why, sizeof why) < 0)
        return refuse(r, 550, "5.6.0", "Message refused: %s", strip_raw(why));
    return 0;
}

static void xadd_done(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    enqueue_t *q = privdata;
    redisReply *rep = reply;
    session_t *ss = q->ss;
    pmx_worker_submission_t *sub = q->sub;
    char text[128];
    int code = 451;
    if (!rep) {
        pmx_log_warn("submission enqueue failed session=%llu ws=%s reason=\"redis connection lost\"",
                     (unsigned long long)q->session_id, q->ws);
    } else if (rep->type != REDIS_REPLY_STRING) {
        pmx_log_error("submission enqueue failed session=%llu ws=%s reason=\"%s\"",
                      (unsigned long long)q->session_id, q->ws,
                      rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply type");
    } else {
        code = 250;
        snprintf(text, sizeof text, "Ok: queued as %s", rep->str);
        pmx_log_info("submission queued session=%llu client=%s ws=%s entry=%s rcpts=%zu size=%zu%s",
                     (unsigned long long)q->session_id, q->client, q->ws, rep->str, q->nrcpts, q->size,
                     ss ? "" : " (client gone before the reply)");
    }
    pmx_submission_budget_hold(&sub->mem, &q->held, 0);
    sub->npending--;
    free(q);
    if (ss) {
        ss->enq = NULL;
        if (code == 250) pmx_smtp_server_message_done(ss->s.smtp, 250, "2.0.0", text);
        else pmx_smtp_server_message_done(ss->s.smtp, 451, "4.3.0", "Queue unavailable; try again later");
    }
    maybe_free(sub);
}

static void srv_message(void *arg, const pmx_smtp_envelope_t *env)
{
    session_t *ss = arg;
    pmx_worker_submission_t *sub = ss->sub;
    refusal_t r = { 0, NULL, PMX_BUF_INIT };
    pmx_buf_t to = PMX_BUF_INIT;
    message_t m;
    char ws[32] = "";

    if (ss->s.closing) return;
    message_take(ss, env, &m);
    if (check_message(ss, env, ws, &r) < 0 || check_job(ss, env, &m, &to, &r) < 0) {
        pmx_log_info("submission refused session=%llu client=%s ws=%s code=%d reason=\"%s\"",
                     (unsigned long long)ss->s.id, ss->s.client, ws[0] ? ws : "-", r.code, r.text.data);
        pmx_smtp_server_message_done(ss->s.smtp, r.code, r.enh, r.text.data);
        goto out;
    }
    pmx_redis_conn_t *rc = pmx_worker_redis(sub->w);
    /* raw is the entry's last field: its value is the message, where it is
     * (see the top of this file). */
    pmx_job_field_t f[5] = {
        { "from", 4, env->mail_from, strlen(env->mail_from) },
        { "to", 2, pmx_buf_cstr(&to), to.len },
        { PMX_SUBMISSION_SOURCE_FIELD, strlen(PMX_SUBMISSION_SOURCE_FIELD),
          PMX_SUBMISSION_SOURCE_VALUE, strlen(PMX_SUBMISSION_SOURCE_VALUE) },
    };
    size_t nf = optional_fields(&m, f, 3);
    enqueue_t *q = pmx_xcalloc(1, sizeof *q);
    q->sub = sub;
    q->ss = ss;
    q->session_id = ss->s.id;
    snprintf(q->ws, sizeof q->ws, "%s", ws);
    snprintf(q->client, sizeof q->client, "%s", ss->s.client);
    q->nrcpts = env->nrcpts;
    q->size = m.len;
    m.buf.len = m.off + m.len;
    if (pmx_queue_enqueue_last(rc, sub->cfg->redis_prefix, ws, f, nf, "raw",
                               &m.buf, m.off,
                               xadd_done, q) < 0) {
        free(q);
        pmx_log_warn("submission enqueue failed session=%llu ws=%s reason=\"redis is down\"",
                     (unsigned long long)ss->s.id, ws);
        pmx_smtp_server_message_done(ss->s.smtp, 451, "4.3.0", "Queue unavailable; try again later");
        goto out;
    }
    q->held = m.held;               /* hiredis's copy, until Redis answers */
    m.held = 0;
    sub->npending++;
    ss->enq = q;
out:
    message_free(sub, &m);
    pmx_buf_free(&r.text);
    pmx_buf_free(&to);
}

/* ---- accepting ---------------------------------------------------------------------------- */

/*
 * Whether a new session may start ([submission] max_connections,
 * max_connections_per_address, connection_reserve over every worker:
 * peerlimit.h), after the listener's own (none: max_sessions 0); a refused
 * one gets "421 4.7.0" and is closed.
 */
static bool admit(pmx_smtp_session_t *s)
{
    session_t *ss = (session_t *)s;
    pmx_worker_submission_t *sub = ss->sub;
    uint64_t now = s->started;
    const pmx_peers_limits_t *lim = pmx_worker_peerlimit_limits(sub->peers);
    if (pmx_smtp_listener_sessions(sub->l) > (size_t)lim->max_total) {   /* this worker alone: the last guard */
        pmx_log_warn("submission refused a connection client=%s reason=\"%d sessions open\"",
                     ss->s.client, lim->max_total);
        pmx_smtp_server_refuse(ss->s.smtp, 421, "4.7.0", "Too many connections; try again later");
        return false;
    }
    if (pmx_worker_peerlimit_blocked(sub->peers, ss->s.client, now)) {
        pmx_smtp_server_refuse(ss->s.smtp, 421, "4.7.0",
                               "Too many failed authentications from your address; try again later");
        return false;
    }
    switch (pmx_worker_peerlimit_open(sub->peers, ss->s.client, now, &ss->tracked)) {
    case PMX_PEERS_ADMIT_OK:
        return true;
    case PMX_PEERS_ADMIT_FULL:
        pmx_log_warn("submission refused a connection client=%s reason=\"max_connections (%d) "
                     "sessions open\"", ss->s.client, lim->max_total);
        pmx_smtp_server_refuse(ss->s.smtp, 421, "4.7.0", "Too many connections; try again later");
        return false;
    case PMX_PEERS_ADMIT_ADDRESS:
        pmx_log_warn("submission refused a connection client=%s "
                     "reason=\"max_connections_per_address (%d) sessions from this address\"",
                     ss->s.client, lim->max_per_address);
        pmx_smtp_server_refuse(ss->s.smtp, 421, "4.7.0",
                               "Too many connections from your address; try again later");
        return false;
    case PMX_PEERS_ADMIT_BUSY:
        pmx_log_info("submission refused a connection client=%s reason=\"over %d sessions open: "
                     "the rest is kept for addresses with none\"", ss->s.client, lim->high_water);
        pmx_smtp_server_refuse(ss->s.smtp, 421, "4.7.0",
                               "Too many connections from your address; try again later");
        return false;
    }
    return false;
}


/* The first of the session's deadlines (deadline_cb does the rest). */
static void session_accepted(pmx_smtp_session_t *s)
{
    session_t *ss = (session_t *)s;
    const pmx_config_t *cfg = ss->sub->cfg;
    uint64_t first = cfg->submission_auth_timeout_ms < cfg->submission_max_session_time_ms
                         ? cfg->submission_auth_timeout_ms : cfg->submission_max_session_time_ms;
    uv_timer_start(&ss->deadline, deadline_cb, first, 0);
}

static const pmx_smtp_listener_cbs_t listener_cbs = {
    .server = { .auth = srv_auth, .message = srv_message, .hold = srv_hold, .room = srv_room,
                .mail = srv_mail },
    .created = session_created, .accepted = session_accepted, .admit = admit,
    .closing = session_closing, .freed = session_freed, .released = released,
};

_Static_assert(PMX_PEERLIMIT_KEY_MAX == PMX_SMTP_LISTENER_CLIENT_MAX, "client keys");

/* ---- public ------------------------------------------------------------------------------------ */

/* The budget, and big buffers that go back to the kernel when freed (a fixed
 * mmap threshold: glibc's sliding one would keep freed messages on the heap). */
static void submission_memory_init(pmx_worker_submission_t *sub)
{
    pmx_submission_budget_init(&sub->mem, sub->cfg->submission_memory_budget);
    pmx_log_info("submission memory_budget=%llu bytes per worker",
                 (unsigned long long)sub->mem.limit);
    if (mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1)
        pmx_log_warn("submission: mallopt(M_MMAP_THRESHOLD) failed; freed messages may stay in RSS");
}

int pmx_worker_submission_start(pmx_worker_t *w, pmx_settings_t *settings,
                                pmx_worker_submission_t **out)
{
    *out = NULL;
    int fd = pmx_worker_submission_fd(w);
    if (fd < 0) return 0;
    const pmx_config_t *cfg = pmx_worker_config(w);
    pmx_worker_submission_t *sub = pmx_xcalloc(1, sizeof *sub);
    sub->w = w;
    sub->loop = pmx_worker_loop(w);
    sub->cfg = cfg;
    sub->settings = settings;
    submission_memory_init(sub);

    pmx_smtp_tls_ctx_t *tls = NULL;
    if (cfg->submission_tls_cert[0]) {
        char err[512];
        if (pmx_smtp_tls_ctx_new_server(&tls, cfg->submission_tls_cert, cfg->submission_tls_key,
                                        err, sizeof err) < 0) {
            pmx_log_error("[submission] %s", err);
            free(sub);
            return -1;
        }
    } else if (cfg->submission_auth_requires_tls) {
        pmx_log_warn("[submission] no tls_cert and auth_requires_tls = yes: AUTH is never offered, "
                     "so no client can submit mail");
    }
    pmx_smtp_listener_opts_t lo = {
        .name = "submission",
        .session_size = sizeof(session_t),
        .server = {
            .hostname = cfg->relay_helo_name,
            .auth_requires_tls = cfg->submission_auth_requires_tls,
            .max_message_size = cfg->submission_max_message_size,
            .max_recipients = PMX_SMTP_SERVER_MAX_RCPT,
            .msg_headroom = XADD_HEADROOM,
            .junk_limit = (unsigned)cfg->submission_junk_command_limit,
        },
        .tls = tls,
        .idle_ms = PMX_SUBMISSION_IDLE_MS,
        .client_key = pmx_worker_peerlimit_key,   /* limits: admit() and peerlimit.h */
    };
    sub->l = pmx_smtp_listener_new(sub->loop, &lo, &listener_cbs, sub);
    int r = pmx_smtp_listener_listen(sub->l, fd);
    if (r != 0) {
        pmx_log_error("cannot serve the submission listener: %s", uv_strerror(r));
        sub->stopping = true;
        pmx_smtp_listener_stop(sub->l);   /* frees sub once the handle has closed */
        return -1;
    }
    sub->keys = pmx_worker_apikeys_new(sub->loop, pmx_worker_db(w));
    sub->peers = pmx_worker_peerlimit_new();
    pmx_worker_peerlimit_set_limits(sub->peers, cfg->submission_max_connections,
                                    cfg->submission_max_connections_per_address,
                                    cfg->submission_connection_reserve);
    pmx_log_info("submission listening address=%s tls=%s auth_requires_tls=%s",
                 cfg->submission_listen, tls ? "starttls" : "none",
                 cfg->submission_auth_requires_tls ? "yes" : "no");
    *out = sub;
    return 0;
}

void pmx_worker_submission_drain(pmx_worker_submission_t *sub, void (*done)(void *arg), void *arg)
{
    if (!sub) {
        done(arg);
        return;
    }
    /* While Postgres is still there: the last last_used_at update. */
    pmx_worker_apikeys_flush(sub->keys);
    pmx_smtp_listener_drain(sub->l, done, arg);
}

void pmx_worker_submission_stop(pmx_worker_submission_t *sub)
{
    if (!sub) return;
    sub->stopping = true;
    pmx_smtp_listener_stop(sub->l);
    pmx_worker_apikeys_free(sub->keys);
    sub->keys = NULL;
    maybe_free(sub);
}

size_t pmx_worker_submission_sessions(const pmx_worker_submission_t *sub)
{
    return sub ? pmx_smtp_listener_sessions(sub->l) : 0;
}
