/*
 * The rate-limit/quota script and its asynchronous caller; see ratelimit.h.
 *
 * Times inside the script are microseconds on Redis's clock, as Lua numbers
 * (doubles: exact up to 2^53 us, far beyond any date we meet). The stored
 * arrival time is rounded up, and a request is allowed up to 1 us early, so
 * rounding never lets more than rate*T + burst through (beyond a 1 us
 * slack) nor refuses one that fits. A changed rate rescales the stored
 * state and writes it back even when the request is then refused: that
 * converts what is owed to the new rate, it consumes nothing.
 *
 * Requests live in one of two lists: `sent` (the script is in flight) and
 * `ready` (answered without Redis, waiting for the loop's next turn so no
 * callback runs inside pmx_ratelimit_take()). A cancelled request in flight
 * becomes a zombie (rl = NULL), freed when hiredis calls back.
 */
#include "queue/ratelimit.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "lib/mem.h"
#include "queue/keys.h"
#include "queue/script.h"

#define PREFIX_MAX 200
/* How long a hold outlives the time its request was told to come back. */
#define HOLD_GRACE_US "500000"
#define WS_MAX     128

/* Days since 1970-01-01 -> "YYYYMMDD" (proleptic Gregorian, H. Hinnant's civil_from_days). */
#define LUA_YMD \
    "local function ymd(days)\n" \
    "  local z = days + 719468\n" \
    "  local era = math.floor(z / 146097)\n" \
    "  local doe = z - era * 146097\n" \
    "  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)\n" \
    "                          - math.floor(doe / 146096)) / 365)\n" \
    "  local y = yoe + era * 400\n" \
    "  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))\n" \
    "  local mp = math.floor((5 * doy + 2) / 153)\n" \
    "  local d = doy - math.floor((153 * mp + 2) / 5) + 1\n" \
    "  local m = mp < 10 and mp + 3 or mp - 9\n" \
    "  if m <= 2 then y = y + 1 end\n" \
    "  return string.format('%04d%02d%02d', y, m, d)\n" \
    "end\n"

const char pmx__ratelimit_lua_ymd[] = LUA_YMD;

/*
 * KEYS: rate hash, quota key prefix. The quota key is that prefix + the UTC
 * date of Redis's clock, so it is named inside the script; it carries the
 * same {ws} hash tag, so on a Redis Cluster it lives in the same slot.
 * ARGV: n, interval us (0 = no rate), burst, quota (0 = none), quota ttl days.
 * Reply: {allowed 0|1, wait ms, reason (0 ok, 1 rate, 2 quota, 3 quota never),
 *         quota used (-1 = no quota), now us}.
 */
static pmx_queue_script_t take_script = PMX_QUEUE_SCRIPT("ratelimit_take",
    LUA_YMD
    "local t = redis.call('TIME')\n"
    "local sec = tonumber(t[1])\n"
    "local now = sec * 1000000 + tonumber(t[2])\n"
    "local n = tonumber(ARGV[1])\n"
    "local iv = tonumber(ARGV[2])\n"
    "local burst = tonumber(ARGV[3])\n"
    "local quota = tonumber(ARGV[4])\n"
    "local day = math.floor(sec / 86400)\n"
    "local qkey, used = nil, -1\n"
    "if quota > 0 then\n"
    "  qkey = KEYS[2] .. ymd(day)\n"
    "  used = tonumber(redis.call('GET', qkey) or '0') or 0\n"
    "  if used + n > quota then\n"
    "    local wait = math.ceil(((day + 1) * 86400000000 - now) / 1000)\n"
    "    if wait < 1 then wait = 1 end\n"
    "    local why = 2\n"
    "    if n > quota then why = 3 end\n"
    "    return {0, wait, why, used, now}\n"
    "  end\n"
    "end\n"
    "if iv > 0 then\n"
    "  local st = redis.call('HMGET', KEYS[1], 't', 'i', 'w', 'h', 'b')\n"
    "  local tat, oiv = tonumber(st[1]), tonumber(st[2])\n"
    "  local w, h, b = tonumber(st[3]) or 0, tonumber(st[4]) or 0, st[5]\n"
    "  if h <= now then w = 0 end\n"
    "  if tat == nil or tat < now then\n"
    "    tat = now\n"
    "  elseif oiv and oiv > 0 and oiv ~= iv then\n"
    "    tat = math.ceil(now + (tat - now) * iv / oiv)\n"
    "    redis.call('HSET', KEYS[1], 't', string.format('%.0f', tat), 'i', ARGV[2])\n"
    "    redis.call('PEXPIRE', KEYS[1], math.ceil((math.max(tat, h) - now) / 1000) + 1000)\n"
    "  end\n"
    "  local cost = n\n"
    "  if cost > burst then cost = burst end\n"
    "  local need = cost\n"
    "  if w > cost then need = w + cost end\n"
    "  local over = tat + need * iv - burst * iv - now\n"
    "  if over > 1 then\n"
    "    if cost > 1 and cost >= w and not b then\n"
    "      local nh = now + over + " HOLD_GRACE_US "\n"
    "      if nh < h then nh = h end\n"
    "      redis.call('HSET', KEYS[1], 'w', cost, 'h', string.format('%.0f', nh))\n"
    "      redis.call('PEXPIRE', KEYS[1], math.ceil((math.max(tat, nh) - now) / 1000) + 1000)\n"
    "    end\n"
    "    return {0, math.ceil(over / 1000), 1, used, now}\n"
    "  end\n"
    "  local nt = math.ceil(tat + n * iv)\n"
    "  local keep = nt\n"
    "  redis.call('HSET', KEYS[1], 't', string.format('%.0f', nt), 'i', ARGV[2])\n"
    "  if w > 0 and cost >= w then\n"
    "    redis.call('HDEL', KEYS[1], 'w', 'h')\n"
    "    redis.call('HSET', KEYS[1], 'b', '1')\n"
    "  else\n"
    "    if b then redis.call('HDEL', KEYS[1], 'b') end\n"
    "    if w > 0 and h > keep then keep = h end\n"
    "  end\n"
    "  redis.call('PEXPIRE', KEYS[1], math.ceil((keep - now) / 1000) + 1000)\n"
    "end\n"
    "if quota > 0 then\n"
    "  used = redis.call('INCRBY', qkey, n)\n"
    "  redis.call('EXPIREAT', qkey, (day + tonumber(ARGV[5])) * 86400)\n"
    "end\n"
    "return {1, 0, 0, used, now}\n");

typedef struct req req_t;

struct req {
    pmx_ratelimit_t *rl;        /* NULL: a zombie (cancelled or limiter freed) */
    req_t           *prev, *next;
    pmx_ratelimit_cb cb;
    void            *arg;
    uint64_t         seq;       /* ready list: delivery turn */
    char             ws[WS_MAX + 1];   /* the workspace, or the site */
    bool             site;
    pmx_ratelimit_result_t res;
};

typedef struct {
    req_t *head, *tail;
} req_list_t;

struct pmx_ratelimit {
    uv_loop_t        *loop;
    pmx_redis_conn_t *rc;
    char             *prefix;
    uv_timer_t        timer;    /* delivers `ready` on the loop's next turn */
    req_list_t        sent;
    req_list_t        ready;
    uint64_t          seq;
    size_t            npending;
    bool              closing;
};

static void list_push(req_list_t *l, req_t *q)
{
    q->next = NULL;
    q->prev = l->tail;
    if (l->tail) l->tail->next = q;
    else l->head = q;
    l->tail = q;
}

static void list_remove(req_list_t *l, req_t *q)
{
    if (q->prev) q->prev->next = q->next;
    else l->head = q->next;
    if (q->next) q->next->prev = q->prev;
    else l->tail = q->prev;
    q->prev = q->next = NULL;
}

const char *pmx_ratelimit_reason_name(pmx_ratelimit_reason_t r)
{
    switch (r) {
    case PMX_RATELIMIT_RATE:  return "rate";
    case PMX_RATELIMIT_QUOTA: return "quota";
    default:                  return "";
    }
}

static bool name_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= 0x20 || ch >= 0x7f || ch == '{' || ch == '}') return false;
    }
    return true;
}

pmx_ratelimit_t *pmx_ratelimit_new(uv_loop_t *loop, pmx_redis_conn_t *rc, const char *prefix,
                                   char *err, size_t errlen)
{
    if (!loop || !rc) {
        snprintf(err, errlen, "rate limiter: no loop or Redis connection");
        return NULL;
    }
    if (!prefix || !name_ok(prefix, PREFIX_MAX)) {
        snprintf(err, errlen,
                 "rate limiter: prefix must be 1-200 printable characters without braces");
        return NULL;
    }
    pmx_ratelimit_t *rl = pmx_xcalloc(1, sizeof *rl);
    rl->loop = loop;
    rl->rc = rc;
    rl->prefix = pmx_xstrdup(prefix);
    uv_timer_init(loop, &rl->timer);
    rl->timer.data = rl;
    return rl;
}

static int64_t int_at(const redisReply *r, size_t i, bool *ok)
{
    if (!r->element[i] || r->element[i]->type != REDIS_REPLY_INTEGER) {
        *ok = false;
        return 0;
    }
    return (int64_t)r->element[i]->integer;
}

void pmx__ratelimit_parse_reply(const redisReply *r, pmx_ratelimit_result_t *res)
{
    memset(res, 0, sizeof *res);
    res->quota_used = -1;
    if (!r) {
        res->status = -ECONNRESET;
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 5) {
        res->status = -EPROTO;
        return;
    }
    bool ok = true;
    int64_t allowed = int_at(r, 0, &ok), wait = int_at(r, 1, &ok), why = int_at(r, 2, &ok);
    int64_t used = int_at(r, 3, &ok), now = int_at(r, 4, &ok);
    if (!ok || allowed < 0 || allowed > 1 || why < 0 || why > 3 || wait < 0 || used < -1 ||
        (allowed == 1 && why != 0) || (allowed == 0 && why == 0)) {
        res->status = -EPROTO;
        return;
    }
    res->allowed = allowed == 1;
    res->quota_used = used;
    res->now_us = now;
    if (!res->allowed) {
        res->reason = why == 1 ? PMX_RATELIMIT_RATE : PMX_RATELIMIT_QUOTA;
        res->never = why == 3;
        res->wait_ms = wait > 0 ? (uint64_t)wait : 1;
    }
}

static void reply_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    req_t *q = priv;
    pmx_ratelimit_t *rl = q->rl;
    if (!rl) {   /* cancelled, or the limiter is gone */
        free(q);
        return;
    }
    list_remove(&rl->sent, q);
    rl->npending--;
    const redisReply *r = reply;
    pmx__ratelimit_parse_reply(r, &q->res);
    if (q->res.status == -EPROTO) {
        if (r->type == REDIS_REPLY_ERROR)
            pmx_log_warn("ratelimit: redis refused the script %s=%s error=\"%.*s\"",
                         q->site ? "site" : "ws", q->ws,
                         (int)(r->len > 200 ? 200 : r->len), r->str ? r->str : "");
        else
            pmx_log_warn("ratelimit: unexpected reply to the script %s=%s type=%d",
                         q->site ? "site" : "ws", q->ws,
                         r->type);
    }
    q->cb(&q->res, q->arg);
    free(q);
}

static void timer_cb(uv_timer_t *t)
{
    pmx_ratelimit_t *rl = t->data;
    uint64_t last = rl->seq;   /* what is queued now; later ones wait a turn */
    while (!rl->closing && rl->ready.head && rl->ready.head->seq <= last) {
        req_t *q = rl->ready.head;
        list_remove(&rl->ready, q);
        rl->npending--;
        q->cb(&q->res, q->arg);
        free(q);
    }
    if (!rl->closing && rl->ready.head) uv_timer_start(&rl->timer, timer_cb, 0, 0);
}

/* Answers q on the loop's next turn, without Redis. */
static void deliver_soon(pmx_ratelimit_t *rl, req_t *q)
{
    q->seq = ++rl->seq;
    list_push(&rl->ready, q);
    rl->npending++;
    if (!uv_is_active((uv_handle_t *)&rl->timer)) uv_timer_start(&rl->timer, timer_cb, 0, 0);
}

/* One request: a workspace's (quota_key set) or a site's (rate only). */
static int take(pmx_ratelimit_t *rl, const char *what, const char *name, bool site,
                double rate_per_second, int burst, int64_t daily_quota, unsigned n,
                pmx_ratelimit_cb cb, void *arg)
{
    const char *why = NULL;
    if (rl->closing) why = "limiter is closing";
    else if (!cb) why = "no callback";
    else if (!name || !name_ok(name, WS_MAX)) why = site ? "bad site name" : "bad workspace id";
    else if (!isfinite(rate_per_second) || rate_per_second < 0 ||
             (rate_per_second > 0 && (rate_per_second < PMX_RATELIMIT_RATE_MIN ||
                                      rate_per_second > PMX_RATELIMIT_RATE_MAX)))
        why = "rate out of range";
    else if (rate_per_second > 0 && (burst < 1 || burst > PMX_RATELIMIT_BURST_MAX))
        why = "burst out of range";
    else if (daily_quota < 0 || daily_quota > PMX_RATELIMIT_QUOTA_MAX) why = "quota out of range";
    else if (n < 1 || n > PMX_RATELIMIT_N_MAX) why = "recipient count out of range";
    if (why) {
        pmx_log_error("ratelimit: request refused %s=%s reason=\"%s\"", what,
                      name && name_ok(name, WS_MAX) ? name : "?", why);
        return -EINVAL;
    }

    req_t *q = pmx_xcalloc(1, sizeof *q);
    q->rl = rl;
    q->cb = cb;
    q->arg = arg;
    snprintf(q->ws, sizeof q->ws, "%s", name);
    q->site = site;
    q->res.quota_used = -1;

    if (rate_per_second == 0 && daily_quota == 0) {   /* nothing to check */
        q->res.allowed = true;
        deliver_soon(rl, q);
        return 0;
    }

    /* A site's request has no quota: its second key (never read) is the
     * rate key again, so both keys live in one Redis Cluster slot. */
    pmx_buf_t rate_key = PMX_BUF_INIT, quota_key = PMX_BUF_INIT;
    if (site) {
        pmx_queue_key_site_rate(&rate_key, rl->prefix, name);
        pmx_queue_key_site_rate(&quota_key, rl->prefix, name);
    } else {
        pmx_queue_key(&rate_key, PMX_QUEUE_KEY_RATE, rl->prefix, name);
        pmx_queue_key(&quota_key, PMX_QUEUE_KEY_QUOTA, rl->prefix, name);
    }
    char n_s[16], iv_s[40], burst_s[16], quota_s[24], ttl_s[8];
    snprintf(n_s, sizeof n_s, "%u", n);
    snprintf(iv_s, sizeof iv_s, "%.17g", rate_per_second > 0 ? 1e6 / rate_per_second : 0.0);
    snprintf(burst_s, sizeof burst_s, "%d", rate_per_second > 0 ? burst : 0);
    snprintf(quota_s, sizeof quota_s, "%" PRId64, daily_quota);
    snprintf(ttl_s, sizeof ttl_s, "%d", PMX_RATELIMIT_QUOTA_TTL_DAYS);
    const char *args[] = { pmx_buf_cstr(&rate_key), pmx_buf_cstr(&quota_key), n_s, iv_s,
                           burst_s, quota_s, ttl_s };
    int rc = pmx_queue_script_run(rl->rc, &take_script, 2, 7, args, NULL, reply_cb, q);
    pmx_buf_free(&rate_key);
    pmx_buf_free(&quota_key);
    if (rc < 0) {
        q->res.status = -EAGAIN;
        deliver_soon(rl, q);
        return 0;
    }
    list_push(&rl->sent, q);
    rl->npending++;
    return 0;
}

int pmx_ratelimit_take(pmx_ratelimit_t *rl, const char *ws, double rate_per_second, int burst,
                       int64_t daily_quota, unsigned n, pmx_ratelimit_cb cb, void *arg)
{
    return take(rl, "ws", ws, false, rate_per_second, burst, daily_quota, n, cb, arg);
}

int pmx_ratelimit_take_site(pmx_ratelimit_t *rl, const char *site, double rate_per_second,
                            int burst, unsigned n, pmx_ratelimit_cb cb, void *arg)
{
    if (!(rate_per_second > 0)) {
        pmx_log_error("ratelimit: request refused site=%s reason=\"no rate\"",
                      site && name_ok(site, WS_MAX) ? site : "?");
        return -EINVAL;
    }
    return take(rl, "site", site, true, rate_per_second, burst, 0, n, cb, arg);
}

size_t pmx_ratelimit_cancel(pmx_ratelimit_t *rl, void *arg)
{
    size_t n = 0;
    for (req_t *q = rl->ready.head, *next; q; q = next) {
        next = q->next;
        if (q->arg != arg) continue;
        list_remove(&rl->ready, q);
        free(q);
        n++;
    }
    for (req_t *q = rl->sent.head, *next; q; q = next) {
        next = q->next;
        if (q->arg != arg) continue;
        list_remove(&rl->sent, q);
        q->rl = NULL;   /* freed by reply_cb */
        n++;
    }
    rl->npending -= n;
    return n;
}

size_t pmx_ratelimit_pending(const pmx_ratelimit_t *rl)
{
    return rl->npending;
}

static void closed_cb(uv_handle_t *h)
{
    pmx_ratelimit_t *rl = h->data;
    free(rl->prefix);
    free(rl);
}

void pmx_ratelimit_free(pmx_ratelimit_t *rl)
{
    if (!rl || rl->closing) return;
    rl->closing = true;
    while (rl->ready.head) {
        req_t *q = rl->ready.head;
        list_remove(&rl->ready, q);
        free(q);
    }
    while (rl->sent.head) {
        req_t *q = rl->sent.head;
        list_remove(&rl->sent, q);
        q->rl = NULL;
    }
    rl->npending = 0;
    uv_close((uv_handle_t *)&rl->timer, closed_cb);
}
