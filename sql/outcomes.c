/*
 * The batched outcome writer; see outcomes.h.
 *
 * A batch becomes 23 array parameters (Postgres text-array literals): one
 * row per item (its ordinal, whether to insert the message row, the row's
 * columns), one per recipient and one per event, each pointing at its item
 * by ordinal. One statement of data-modifying CTEs inserts the messages
 * (returning the existing row on a redelivered job), resolves every item's
 * message id, upserts the recipients and appends the events, and answers
 * (ordinal, message id) per item. Sub-statements of one statement commit or
 * fail together. A retried job's item names its message by id: the message
 * must exist in the item's workspace, else the item gets no rows and no
 * message id (it fails alone, -EINVAL); recipients have no foreign key to
 * messages (migration 014: its check per row cost more than the row), so
 * this is what keeps every recipient under an existing message. The
 * statements are prepared once per connection (pmx_db_async_query_prepared):
 * no parse per batch.
 *
 * Queues: waiting items (FIFO), "chunks" (items of a refused batch, split in
 * halves and retried before anything else until the bad item stands alone),
 * and the one batch in flight. Lookups have their own FIFO and in-flight
 * slot. One timer does the flush window, and polls while Postgres is down.
 */
#include "sql/outcomes.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "lib/mem.h"
#include "lib/utf8.h"
#include "sql/pgarray.h"

#define DOWN_POLL_MS 50

/* Under load the flush window is twice as long: a statement costs the
 * backend about as much as a dozen rows (docs/data.md), and a burst's
 * outcomes wait in the queue anyway. Load: the last batch's items arrived at
 * BUSY_BATCH or more per flush_ms (3,200/s per worker at 5 ms), counted over
 * the time its oldest item waited, so a longer window or a slow round trip
 * does not make a trickle look busy. */
#define BUSY_BATCH 16

/* What pump() sends whether it is ripe or not. */
enum { FORCE_WRITES = 1, FORCE_LOOKUPS = 2 };

/* The statement is three parts: the rows, the feedback loop, the answer.
 *
 * The rows. `stats_counts` (sql/002_stats.sql) is kept by statement triggers
 * on events and recipients for every other writer. This statement, the one
 * on the delivery path, writes the deltas of what it INSERTS itself (st):
 * events per (workspace, hour, type), new recipients per (workspace, hour of
 * the message's created_at, status) - rows whose xmax is 0, i.e. not updated
 * by ON CONFLICT. It tells the two insert triggers so with a
 * transaction-local setting (migration 014), because plpgsql triggers per
 * batch cost more than the rows themselves. `it` sets it before any row is
 * written: every sub-statement that writes an event or a recipient reads its
 * rows through res, i.e. through it, and a trigger's WHEN is looked at when
 * its sub-statement ends. Updated recipients (retries, redeliveries) are
 * still counted by the update trigger: only it sees the version of the row
 * the update replaced when another transaction changed it meanwhile (an
 * inbound bounce, a second worker), which this statement's snapshot does
 * not. A LATERAL that looks up one row by key has LIMIT 1: without it the
 * planner may flatten it into a hash join over all of messages. */
#define WRITE_ROWS_SQL \
    "WITH it AS (" \
    "  SELECT t.*, set_config('postmux.stats', 'inline', true) AS stats" \
    "    FROM unnest($1::int[], $2::bool[], $3::text[], $4::text[], $5::text[]," \
    "                $6::text[], $7::text[], $8::text[], $9::text[], $10::text[]," \
    "                $11::text[], $25::text[])" \
    "    AS t(i, ins, id, ws, job, client_id, mail_from, header_from, subject, metadata, source," \
    "         category)" \
    "), ins AS (" \
    "  INSERT INTO messages AS m (id, workspace_id, job_id, client_id, mail_from, header_from," \
    "                             subject, metadata, source, category)" \
    "  SELECT DISTINCT ON (ws, job) id, ws, job, client_id, mail_from, header_from, subject," \
    "         metadata, source, category" \
    "    FROM it WHERE ins ORDER BY ws, job, i" \
    "  ON CONFLICT (workspace_id, job_id) DO UPDATE SET job_id = EXCLUDED.job_id" \
    "  RETURNING m.id, m.workspace_id, m.job_id, m.created_at" \
    "), res AS (" \
    "  SELECT it.i, it.ws," \
    "         CASE WHEN it.ins THEN COALESCE(ins.id, it.id)" \
    "              WHEN ex.workspace_id = it.ws THEN ex.id END AS mid," \
    "         COALESCE(ins.created_at, ex.created_at) AS created_at," \
    "         it.stats" \
    "    FROM it LEFT JOIN ins ON it.ins AND ins.workspace_id = it.ws AND ins.job_id = it.job" \
    "    LEFT JOIN LATERAL (SELECT id, workspace_id, created_at FROM messages" \
    "                        WHERE NOT it.ins AND id = it.id LIMIT 1) ex ON true" \
    "), mh AS (" \
    "  SELECT DISTINCT ON (mid) mid, ws," \
    "         date_trunc('hour', COALESCE(created_at, now()), 'UTC') AS hour" \
    "    FROM res WHERE mid IS NOT NULL" \
    "   ORDER BY mid, created_at NULLS LAST" \
    "), rc AS (" \
    "  INSERT INTO recipients AS r (message_id, address, status, attempts, last_response," \
    "                               next_attempt_at, updated_at, bounce_class, idx)" \
    "  SELECT DISTINCT ON (res.mid, x.address) res.mid, x.address, x.status, x.attempts," \
    "         x.resp, to_timestamp(x.next_ms / 1000.0), now(), x.cls, x.idx" \
    "    FROM unnest($12::int[], $13::text[], $14::text[], $15::int[], $16::text[]," \
    "                $17::bigint[], $22::text[], $26::int[])" \
    "         WITH ORDINALITY AS x(i, address, status, attempts, resp, next_ms, cls, idx, o)" \
    "    JOIN res ON res.i = x.i AND res.mid IS NOT NULL" \
    "   ORDER BY res.mid, x.address, x.o DESC" \
    "  ON CONFLICT (message_id, address) DO UPDATE" \
    "     SET status = EXCLUDED.status," \
    "         attempts = GREATEST(r.attempts, EXCLUDED.attempts)," \
    "         last_response = EXCLUDED.last_response," \
    "         next_attempt_at = EXCLUDED.next_attempt_at," \
    "         updated_at = EXCLUDED.updated_at," \
    "         bounce_class = COALESCE(EXCLUDED.bounce_class, r.bounce_class)," \
    "         idx = COALESCE(EXCLUDED.idx, r.idx)" \
    "   WHERE r.status <> 'sent'" \
    "  RETURNING r.message_id, r.status, (r.xmax = 0) AS inserted" \
    "), ev AS (" \
    "  INSERT INTO events (workspace_id, message_id, recipient, type, detail)" \
    "  SELECT res.ws, res.mid, e.recipient, e.type, e.detail" \
    "    FROM unnest($18::int[], $19::text[], $20::text[], $21::text[])" \
    "         WITH ORDINALITY AS e(i, type, recipient, detail, o)" \
    "    JOIN res ON res.i = e.i AND res.mid IS NOT NULL" \
    "   ORDER BY e.o" \
    "  RETURNING workspace_id, type, created_at" \
    "), st AS (" \
    "  INSERT INTO stats_counts (workspace_id, hour, kind, name, n)" \
    "  SELECT ws, hour, kind, name, sum(n) FROM (" \
    "      SELECT ev.workspace_id AS ws, date_trunc('hour', ev.created_at, 'UTC') AS hour," \
    "             'event' AS kind, ev.type AS name, 1 AS n FROM ev" \
    "      UNION ALL" \
    "      SELECT mh.ws, mh.hour, 'status', rc.status, 1" \
    "        FROM rc JOIN mh ON mh.mid = rc.message_id WHERE rc.inserted) d" \
    "   GROUP BY ws, hour, kind, name HAVING sum(n) <> 0" \
    ")"

/* The feedback loop (docs/feedback.md), in the same transaction as the
 * outcome: a hard bounce suppresses the address; soft bounces (a 5xx with a
 * soft class, or expiry) are counted per address and suppress it for $24
 * seconds at $23 in a row; a sent resets the count. */
#define WRITE_FEEDBACK_SQL \
    ", rx AS (" \
    "  SELECT res.ws, res.mid, lower(x.address) AS a, x.status, x.cls, x.resp" \
    "    FROM unnest($12::int[], $13::text[], $14::text[], $16::text[], $22::text[])" \
    "         AS x(i, address, status, resp, cls)" \
    "    JOIN res ON res.i = x.i AND res.mid IS NOT NULL" \
    "   WHERE x.status IN ('sent', 'bounced')" \
    "), hard AS (" \
    "  INSERT INTO suppressions (workspace_id, address, scope, reason, detail, message_id)" \
    "  SELECT DISTINCT ON (ws, a) ws, a, '*', 'hard_bounce', left(resp, 1000), mid FROM rx" \
    "   WHERE status = 'bounced' AND cls IN ('user_unknown', 'domain_unknown', 'has_moved')" \
    "  ON CONFLICT (workspace_id, address, scope) DO NOTHING" \
    "), soft AS (" \
    "  INSERT INTO bounce_counts AS b (workspace_id, address, soft_bounces, updated_at)" \
    "  SELECT ws, a, count(*), now() FROM rx" \
    "   WHERE status = 'bounced' AND $23::int > 0" \
    "     AND cls NOT IN ('user_unknown', 'domain_unknown', 'has_moved')" \
    "   GROUP BY ws, a" \
    "  ON CONFLICT (workspace_id, address) DO UPDATE" \
    "     SET soft_bounces = b.soft_bounces + EXCLUDED.soft_bounces, updated_at = now()" \
    "  RETURNING b.workspace_id, b.address, b.soft_bounces" \
    "), soft_supp AS (" \
    "  INSERT INTO suppressions (workspace_id, address, scope, reason, detail, expires_at)" \
    "  SELECT workspace_id, address, '*', 'soft_bounce'," \
    "         soft_bounces || ' soft bounces in a row', now() + make_interval(secs => $24::bigint)" \
    "    FROM soft WHERE soft_bounces >= $23::int" \
    "  ON CONFLICT (workspace_id, address, scope) DO NOTHING" \
    "), reset AS (" \
    /* Skipped at once while nobody has a count (the usual case). */ \
    "  DELETE FROM bounce_counts b USING rx" \
    "   WHERE rx.status = 'sent' AND b.workspace_id = rx.ws AND b.address = rx.a" \
    "     AND EXISTS (SELECT 1 FROM bounce_counts)" \
    "     AND NOT EXISTS (SELECT 1 FROM rx r2 WHERE r2.status = 'bounced'" \
    "                        AND r2.ws = rx.ws AND r2.a = rx.a)" \
    ")"

/* A batch without a bounce (nearly every one) needs only the reset of the
 * feedback loop; the rest of it costs each batch ~100 us of executor set-up
 * for nothing. `params` only gives $23 and $24 their types: a WITH query
 * nothing reads is never run. */
#define WRITE_RESET_SQL \
    ", reset AS (" \
    "  DELETE FROM bounce_counts b" \
    "   USING (SELECT res.ws, lower(x.address) AS a" \
    "            FROM unnest($12::int[], $13::text[], $14::text[]) AS x(i, address, status)" \
    "            JOIN res ON res.i = x.i AND res.mid IS NOT NULL WHERE x.status = 'sent') s" \
    "   WHERE EXISTS (SELECT 1 FROM bounce_counts) AND b.workspace_id = s.ws AND b.address = s.a" \
    "), params AS (SELECT $23::int AS soft_limit, $24::bigint AS soft_for)"

#define WRITE_ANSWER_SQL " SELECT i, mid FROM res ORDER BY i"

static const char WRITE_SQL[] = WRITE_ROWS_SQL WRITE_FEEDBACK_SQL WRITE_ANSWER_SQL;
static const char WRITE_SENT_SQL[] = WRITE_ROWS_SQL WRITE_RESET_SQL WRITE_ANSWER_SQL;

/* The deltas the statements write are folded (pmx_stats_fold) once every
 * this many batches, as the triggers do about once every 64 statements. */
#define FOLD_EVERY 64

enum { P_I, P_INS, P_ID, P_WS, P_JOB, P_CLIENT, P_FROM, P_HFROM, P_SUBJ, P_META, P_SRC,
       P_R_I, P_R_ADDR, P_R_STATUS, P_R_ATT, P_R_RESP, P_R_NEXT,
       P_E_I, P_E_TYPE, P_E_RCPT, P_E_DETAIL, P_R_CLASS,
       NARRAYS, P_SOFT_LIMIT = NARRAYS, P_SOFT_FOR,
       /* arrays again: the message's category, the recipient's position in its job */
       P_CAT, P_R_IDX, NPARAMS };

static bool is_array(int k) { return k < NARRAYS || k >= P_CAT; }

/* Each request names its message by (ws, job id) or by (ws, message id); the
 * two index lookups of the LATERAL are exclusive (one of job/msg is NULL).
 * The workspace is part of both: a message id of another workspace is not
 * found, so a forged _msg cannot reach another workspace's rows. */
static const char LOOKUP_SQL[] =
    "SELECT q.i, m.id, r.address, r.status, r.attempts"
    "  FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS q(ws, job, msg, i)"
    "  JOIN LATERAL ("
    "    SELECT id FROM messages WHERE workspace_id = q.ws AND job_id = q.job"
    "    UNION ALL"
    "    SELECT id FROM messages WHERE id = q.msg AND workspace_id = q.ws) m ON true"
    "  LEFT JOIN recipients r ON r.message_id = m.id"
    " ORDER BY q.i, r.address";

typedef struct {
    char   *address, *status, *resp, *cls;
    int     attempts, idx;
    int64_t next_ms;
} rcpt_t;

typedef struct {
    char *type, *recipient, *detail;
} event_t;

struct pmx_outcomes_req {
    pmx_outcomes_req_t   *next;
    uint64_t              t_submit;
    bool                  is_lookup;
    bool                  cancelled;
    void                 *arg;
    pmx_outcome_done_fn   cb;
    pmx_outcome_lookup_fn lcb;
    /* an item */
    bool                  update_only;
    char                 *id, *ws, *job, *client, *mail_from, *header_from, *subject,
                         *metadata, *source, *category;
    rcpt_t               *rcpts;
    size_t                nrcpts;
    event_t              *events;
    size_t                nevents;
};

typedef struct {
    pmx_outcomes_req_t **v;
    size_t               n;
} reqvec_t;

typedef struct chunk {
    struct chunk *next;
    reqvec_t      items;
} chunk_t;

typedef struct {
    pmx_outcomes_req_t *head, *tail;
    size_t              n;
} fifo_t;

struct pmx_outcomes {
    uv_loop_t            *loop;
    pmx_db_async_t       *db;
    size_t                max_batch;
    uint64_t              flush_ms;
    bool                  busy;        /* the last write batch says: under load (BUSY_BATCH) */
    int64_t               hold_ms;
    unsigned              soft_bounce_limit;       /* 0 = soft bounces never suppress */
    uint64_t              soft_bounce_suppress_s;

    fifo_t                wq;          /* items waiting */
    chunk_t              *chunks;      /* split batches, retried first */
    pmx_db_async_req_t   *w_req;       /* the write batch in flight */
    reqvec_t              w_items;
    bool                  w_is_chunk;

    fifo_t                lq;          /* lookups waiting */
    pmx_db_async_req_t   *l_req;
    reqvec_t              l_items;

    pmx_db_async_req_t   *f_req;       /* a pmx_stats_fold() in flight */
    unsigned              since_fold;  /* write batches committed since the last one */

    uv_timer_t            timer;
    pmx_outcomes_stats_t  stats;
    bool                  down_logged;
    int                   depth;
    bool                  closing;
    bool                  free_requested;
};

/* Sends what is ripe (max_batch waiting, or the oldest waited its window) and
 * what force says; arms the timer for the next deadline. in_loop: called from
 * a loop callback, where failing held items may call back. */
static void pump(pmx_outcomes_t *o, int force, bool in_loop);

/* ---- small helpers ------------------------------------------------------ */

/* A copy that is valid UTF-8: bytes that do not form a sequence become '?'. */
static char *copy_text(const char *s)
{
    if (!s) return NULL;
    size_t n = strlen(s);
    if (pmx_utf8_valid(s, n)) return pmx_xstrndup(s, n);
    char *out = pmx_xmalloc(n + 1), *w = out;
    for (size_t i = 0; i < n;) {
        size_t len = pmx_utf8_seq(s + i, n - i, NULL);
        if (len == 0) {
            *w++ = '?';
            i++;
        } else {
            memcpy(w, s + i, len);
            w += len;
            i += len;
        }
    }
    *w = '\0';
    return out;
}

static void first_line(char *dst, size_t cap, const char *msg)
{
    if (!msg || !*msg) msg = "unknown error";
    size_t n = strcspn(msg, "\r\n");
    if (n >= cap) n = cap - 1;
    memcpy(dst, msg, n);
    dst[n] = '\0';
}

static void req_free(pmx_outcomes_req_t *r)
{
    char *strs[] = { r->id, r->ws, r->job, r->client, r->mail_from, r->header_from,
                     r->subject, r->metadata, r->source, r->category };
    for (size_t i = 0; i < sizeof strs / sizeof *strs; i++) free(strs[i]);
    for (size_t i = 0; i < r->nrcpts; i++) {
        free(r->rcpts[i].address);
        free(r->rcpts[i].status);
        free(r->rcpts[i].resp);
        free(r->rcpts[i].cls);
    }
    free(r->rcpts);
    for (size_t i = 0; i < r->nevents; i++) {
        free(r->events[i].type);
        free(r->events[i].recipient);
        free(r->events[i].detail);
    }
    free(r->events);
    free(r);
}

static void fifo_push(fifo_t *q, pmx_outcomes_req_t *r)
{
    r->next = NULL;
    if (q->tail) q->tail->next = r;
    else q->head = r;
    q->tail = r;
    q->n++;
}

static pmx_outcomes_req_t *fifo_pop(fifo_t *q)
{
    pmx_outcomes_req_t *r = q->head;
    if (!r) return NULL;
    q->head = r->next;
    if (!q->head) q->tail = NULL;
    q->n--;
    r->next = NULL;
    return r;
}

/* Moves up to max requests from q into a new vector. */
static reqvec_t fifo_take(fifo_t *q, size_t max)
{
    reqvec_t v = { pmx_xcalloc(max ? max : 1, sizeof *v.v), 0 };
    while (v.n < max && q->head) v.v[v.n++] = fifo_pop(q);
    return v;
}

/* Calls back (unless cancelled) and frees one request. */
static void finish_item(pmx_outcomes_t *o, pmx_outcomes_req_t *r, int status, const char *mid,
                        const char *err)
{
    if (status == 0) o->stats.items_ok++;
    else o->stats.items_failed++;
    if (!r->cancelled && r->cb) {
        pmx_outcome_result_t res = { .status = status, .message_id = mid,
                                     .error = status ? err : NULL };
        r->cb(&res, r->arg);
    }
    req_free(r);
}

static void finish_lookup(pmx_outcomes_t *o, pmx_outcomes_req_t *r,
                          const pmx_outcome_lookup_t *res)
{
    o->stats.lookups++;
    if (!r->cancelled && r->lcb) r->lcb(res, r->arg);
    req_free(r);
}

static void fail_lookup(pmx_outcomes_t *o, pmx_outcomes_req_t *r, int status, const char *err)
{
    pmx_outcome_lookup_t res = { .status = status, .error = err };
    finish_lookup(o, r, &res);
}

static void fail_vec(pmx_outcomes_t *o, reqvec_t *v, int status, const char *err)
{
    for (size_t i = 0; i < v->n; i++) {
        if (v->v[i]->is_lookup) fail_lookup(o, v->v[i], status, err);
        else finish_item(o, v->v[i], status, NULL, err);
    }
    free(v->v);
    v->v = NULL;
    v->n = 0;
}

static void leave(pmx_outcomes_t *o);

/* ---- public: create, submit, lookup ------------------------------------- */

pmx_outcomes_t *pmx_outcomes_new(uv_loop_t *loop, pmx_db_async_t *db,
                                 const pmx_outcomes_opts_t *opts)
{
    pmx_outcomes_t *o = pmx_xcalloc(1, sizeof *o);
    o->loop = loop;
    o->db = db;
    o->max_batch = opts && opts->max_batch ? opts->max_batch : PMX_OUTCOMES_MAX_BATCH;
    o->flush_ms = opts && opts->flush_ms ? opts->flush_ms : PMX_OUTCOMES_FLUSH_MS;
    o->hold_ms = opts && opts->hold_ms >= 0 ? opts->hold_ms : PMX_OUTCOMES_HOLD_MS;
    o->soft_bounce_limit = opts ? opts->soft_bounce_limit : 0;
    o->soft_bounce_suppress_s = opts ? opts->soft_bounce_suppress_s : 0;
    uv_timer_init(loop, &o->timer);
    o->timer.data = o;
    return o;
}

pmx_outcomes_req_t *pmx_outcomes_submit(pmx_outcomes_t *o, const pmx_outcome_t *it,
                                        pmx_outcome_done_fn cb, void *arg)
{
    const char *missing = NULL;
    if (!it->message_id) missing = "message_id";
    else if (!it->workspace_id) missing = "workspace_id";
    else if (!it->update_only && !it->job_id) missing = "job_id";
    else if (!it->update_only && !it->mail_from) missing = "mail_from";
    else if (it->nrcpts && !it->rcpts) missing = "rcpts";
    else if (it->nevents && !it->events) missing = "events";
    for (size_t i = 0; !missing && i < it->nrcpts; i++)
        if (!it->rcpts[i].address || !it->rcpts[i].status) missing = "recipient address/status";
    for (size_t i = 0; !missing && i < it->nevents; i++)
        if (!it->events[i].type) missing = "event type";
    if (missing || o->closing) {
        pmx_log_error("outcome not queued msg=%s err=\"%s\"", it->message_id ? it->message_id : "-",
                      missing ? missing : "writer is closing");
        return NULL;
    }

    pmx_outcomes_req_t *r = pmx_xcalloc(1, sizeof *r);
    r->t_submit = uv_now(o->loop);
    r->cb = cb;
    r->arg = arg;
    r->update_only = it->update_only;
    r->id = copy_text(it->message_id);
    r->ws = copy_text(it->workspace_id);
    if (!it->update_only) {
        r->job = copy_text(it->job_id);
        r->client = copy_text(it->client_id);
        r->mail_from = copy_text(it->mail_from);
        r->header_from = copy_text(it->header_from);
        r->subject = copy_text(it->subject);
        r->metadata = copy_text(it->metadata);
        r->source = copy_text(it->source ? it->source : "redis");
        r->category = copy_text(it->category);
    }
    r->nrcpts = it->nrcpts;
    r->rcpts = pmx_xcalloc(it->nrcpts ? it->nrcpts : 1, sizeof *r->rcpts);
    for (size_t i = 0; i < it->nrcpts; i++) {
        const pmx_outcome_rcpt_t *s = &it->rcpts[i];
        r->rcpts[i] = (rcpt_t){ .address = copy_text(s->address), .status = copy_text(s->status),
                                .resp = copy_text(s->last_response), .attempts = s->attempts,
                                .cls = copy_text(s->bounce_class), .idx = s->idx,
                                .next_ms = s->next_attempt_ms };
    }
    r->nevents = it->nevents;
    r->events = pmx_xcalloc(it->nevents ? it->nevents : 1, sizeof *r->events);
    for (size_t i = 0; i < it->nevents; i++) {
        const pmx_outcome_event_t *s = &it->events[i];
        r->events[i] = (event_t){ .type = copy_text(s->type), .recipient = copy_text(s->recipient),
                                  .detail = copy_text(s->detail) };
    }
    fifo_push(&o->wq, r);
    o->depth++;
    pump(o, 0, false);
    leave(o);
    return r;
}

static pmx_outcomes_req_t *lookup(pmx_outcomes_t *o, const char *ws, const char *job_id,
                                  const char *msg_id, pmx_outcome_lookup_fn cb, void *arg)
{
    if (!ws || !(job_id || msg_id) || o->closing) return NULL;
    pmx_outcomes_req_t *r = pmx_xcalloc(1, sizeof *r);
    r->is_lookup = true;
    r->t_submit = uv_now(o->loop);
    r->lcb = cb;
    r->arg = arg;
    r->ws = copy_text(ws);
    r->job = job_id ? copy_text(job_id) : NULL;
    r->id = msg_id ? copy_text(msg_id) : NULL;
    fifo_push(&o->lq, r);
    o->depth++;
    pump(o, 0, false);
    leave(o);
    return r;
}

pmx_outcomes_req_t *pmx_outcomes_lookup(pmx_outcomes_t *o, const char *ws, const char *job_id,
                                        pmx_outcome_lookup_fn cb, void *arg)
{
    return job_id ? lookup(o, ws, job_id, NULL, cb, arg) : NULL;
}

pmx_outcomes_req_t *pmx_outcomes_lookup_message(pmx_outcomes_t *o, const char *ws,
                                                const char *message_id,
                                                pmx_outcome_lookup_fn cb, void *arg)
{
    return message_id ? lookup(o, ws, NULL, message_id, cb, arg) : NULL;
}

void pmx_outcomes_cancel(pmx_outcomes_req_t *req)
{
    if (req) req->cancelled = true;
}

void pmx_outcomes_stats(const pmx_outcomes_t *o, pmx_outcomes_stats_t *out) { *out = o->stats; }

size_t pmx_outcomes_pending(const pmx_outcomes_t *o)
{
    size_t n = o->wq.n + o->lq.n + o->w_items.n + o->l_items.n;
    for (const chunk_t *c = o->chunks; c; c = c->next) n += c->items.n;
    return n;
}

/* ---- writing ------------------------------------------------------------ */

static void build_params(const pmx_outcomes_t *o, const reqvec_t *v, pmx_buf_t p[NPARAMS])
{
    for (int k = 0; k < NPARAMS; k++)
        if (is_array(k)) pmx_buf_append_char(&p[k], '{');
    for (size_t i = 0; i < v->n; i++) {
        const pmx_outcomes_req_t *r = v->v[i];
        int64_t ord = (int64_t)i + 1;
        pmx_pgarray_int(&p[P_I], ord);
        pmx_pgarray_bool(&p[P_INS], !r->update_only);
        pmx_pgarray_text(&p[P_ID], r->id);
        pmx_pgarray_text(&p[P_WS], r->ws);
        pmx_pgarray_text(&p[P_JOB], r->job);
        pmx_pgarray_text(&p[P_CLIENT], r->client);
        pmx_pgarray_text(&p[P_FROM], r->mail_from);
        pmx_pgarray_text(&p[P_HFROM], r->header_from);
        pmx_pgarray_text(&p[P_SUBJ], r->subject);
        pmx_pgarray_text(&p[P_META], r->metadata);
        pmx_pgarray_text(&p[P_SRC], r->source);
        pmx_pgarray_text(&p[P_CAT], r->category);
        for (size_t k = 0; k < r->nrcpts; k++) {
            const rcpt_t *x = &r->rcpts[k];
            pmx_pgarray_int(&p[P_R_I], ord);
            pmx_pgarray_text(&p[P_R_ADDR], x->address);
            pmx_pgarray_text(&p[P_R_STATUS], x->status);
            pmx_pgarray_int(&p[P_R_ATT], x->attempts);
            pmx_pgarray_text(&p[P_R_RESP], x->resp);
            if (x->next_ms > 0) pmx_pgarray_int(&p[P_R_NEXT], x->next_ms);
            else pmx_pgarray_text(&p[P_R_NEXT], NULL);
            pmx_pgarray_text(&p[P_R_CLASS], x->cls);
            if (x->idx >= 0) pmx_pgarray_int(&p[P_R_IDX], x->idx);
            else pmx_pgarray_text(&p[P_R_IDX], NULL);
        }
        for (size_t k = 0; k < r->nevents; k++) {
            const event_t *e = &r->events[k];
            pmx_pgarray_int(&p[P_E_I], ord);
            pmx_pgarray_text(&p[P_E_TYPE], e->type);
            pmx_pgarray_text(&p[P_E_RCPT], e->recipient);
            pmx_pgarray_text(&p[P_E_DETAIL], e->detail);
        }
    }
    for (int k = 0; k < NPARAMS; k++)
        if (is_array(k)) pmx_buf_append_char(&p[k], '}');
    pmx_buf_appendf(&p[P_SOFT_LIMIT], "%u", o->soft_bounce_limit);
    pmx_buf_appendf(&p[P_SOFT_FOR], "%" PRIu64, o->soft_bounce_suppress_s);
}

static void writes_done(pmx_db_async_t *db, const PGresult *res, void *arg);

static void send_writes(pmx_outcomes_t *o)
{
    reqvec_t v;
    bool is_chunk = o->chunks != NULL;
    if (is_chunk) {
        chunk_t *c = o->chunks;
        o->chunks = c->next;
        v = c->items;
        free(c);
    } else {
        v = fifo_take(&o->wq, o->max_batch);
    }
    pmx_buf_t p[NPARAMS];
    const char *vals[NPARAMS];
    for (int k = 0; k < NPARAMS; k++) pmx_buf_init(&p[k]);
    build_params(o, &v, p);
    for (int k = 0; k < NPARAMS; k++) vals[k] = pmx_buf_cstr(&p[k]);
    bool bounced = false;
    for (size_t i = 0; i < v.n && !bounced; i++)
        for (size_t k = 0; k < v.v[i]->nrcpts && !bounced; k++)
            bounced = strcmp(v.v[i]->rcpts[k].status, "bounced") == 0;
    o->w_req = bounced ? pmx_db_async_query_prepared(o->db, "pmx_outcomes_write", WRITE_SQL,
                                                     NPARAMS, vals, writes_done, o)
                       : pmx_db_async_query_prepared(o->db, "pmx_outcomes_write_sent",
                                                     WRITE_SENT_SQL, NPARAMS, vals, writes_done, o);
    for (int k = 0; k < NPARAMS; k++) pmx_buf_free(&p[k]);
    if (!o->w_req) {
        /* Went down just now: keep the items first in line. */
        chunk_t *c = pmx_xcalloc(1, sizeof *c);
        c->items = v;
        c->next = o->chunks;
        o->chunks = c;
        return;
    }
    o->stats.statements++;
    if (!is_chunk) {
        uint64_t span = uv_now(o->loop) - v.v[0]->t_submit;   /* FIFO: v[0] is the oldest */
        if (span < o->flush_ms) span = o->flush_ms;
        o->busy = v.n * o->flush_ms >= BUSY_BATCH * span;
    }
    o->w_items = v;
    o->w_is_chunk = is_chunk;
}

/* A refused batch of n > 1: retry its halves (first half first) before anything else. */
static void split(pmx_outcomes_t *o, reqvec_t v)
{
    size_t h = v.n / 2;
    chunk_t *a = pmx_xcalloc(1, sizeof *a), *b = pmx_xcalloc(1, sizeof *b);
    a->items.v = pmx_xcalloc(h, sizeof *a->items.v);
    b->items.v = pmx_xcalloc(v.n - h, sizeof *b->items.v);
    memcpy(a->items.v, v.v, h * sizeof *v.v);
    memcpy(b->items.v, v.v + h, (v.n - h) * sizeof *v.v);
    a->items.n = h;
    b->items.n = v.n - h;
    b->next = o->chunks;
    a->next = b;
    o->chunks = a;
    free(v.v);
    o->stats.splits++;
}

static void fold_done(pmx_db_async_t *db, const PGresult *res, void *arg)
{
    (void)db;
    pmx_outcomes_t *o = arg;
    o->f_req = NULL;
    /* Not folding only leaves more delta rows for readers to sum: no answer changes. */
    if (res && PQresultStatus(res) != PGRES_TUPLES_OK) {
        char err[300];
        first_line(err, sizeof err, PQresultErrorMessage(res));
        pmx_log_warn("stats fold failed err=\"%s\"", err);
    }
}

static void fold(pmx_outcomes_t *o)
{
    if (o->f_req) return;
    o->f_req = pmx_db_async_query(o->db, "SELECT pmx_stats_fold()", fold_done, o);
    if (o->f_req) o->since_fold = 0;
}

static void writes_done(pmx_db_async_t *db, const PGresult *res, void *arg)
{
    (void)db;
    pmx_outcomes_t *o = arg;
    reqvec_t v = o->w_items;
    bool was_chunk = o->w_is_chunk;
    o->w_req = NULL;
    o->w_items = (reqvec_t){ NULL, 0 };
    o->depth++;
    char err[300];
    if (!res) {
        o->stats.batches_failed++;
        pmx_log_warn("outcome batch lost items=%zu err=\"postgres connection lost with the batch "
                     "in flight; it may have committed\" (jobs stay pending)", v.n);
        fail_vec(o, &v, -EIO, "postgres connection lost with the batch in flight");
    } else if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        o->stats.batches_failed++;
        first_line(err, sizeof err, PQresultErrorMessage(res));
        if (v.n == 1) {
            const pmx_outcomes_req_t *r = v.v[0];
            pmx_log_warn("outcome refused ws=%s msg=%s job=%s err=\"%s\" (job stays pending)",
                         r->ws, r->id, r->job ? r->job : "-", err);
            fail_vec(o, &v, -EINVAL, err);
        } else {
            if (!was_chunk)
                pmx_log_warn("outcome batch refused items=%zu err=\"%s\" (retrying in halves to "
                             "isolate the bad item)", v.n, err);
            else
                pmx_log_debug("outcome chunk refused items=%zu err=\"%s\"", v.n, err);
            split(o, v);
        }
    } else {
        if (++o->since_fold >= FOLD_EVERY) fold(o);
        int rows = PQntuples(res);
        for (size_t i = 0; i < v.n; i++) {
            int row = (int)i;
            bool here = row < rows && atol(PQgetvalue(res, row, 0)) == (long)i + 1;
            const char *mid = here && !PQgetisnull(res, row, 1) ? PQgetvalue(res, row, 1) : NULL;
            if (mid) finish_item(o, v.v[i], 0, mid, NULL);
            else if (here)
                finish_item(o, v.v[i], -EINVAL, NULL,
                             "the retried job's message is not in this workspace");
            else finish_item(o, v.v[i], -EIO, NULL, "no result row for the item");
        }
        free(v.v);
    }
    pump(o, 0, true);   /* what waits goes once it is ripe (outcomes.h) */
    leave(o);
}

/* ---- lookups ------------------------------------------------------------ */

static void lookups_done(pmx_db_async_t *db, const PGresult *res, void *arg);

static void send_lookups(pmx_outcomes_t *o)
{
    reqvec_t v = fifo_take(&o->lq, o->max_batch);
    pmx_buf_t ws = PMX_BUF_INIT, job = PMX_BUF_INIT, msg = PMX_BUF_INIT;
    pmx_buf_append_char(&ws, '{');
    pmx_buf_append_char(&job, '{');
    pmx_buf_append_char(&msg, '{');
    for (size_t i = 0; i < v.n; i++) {
        pmx_pgarray_text(&ws, v.v[i]->ws);
        pmx_pgarray_text(&job, v.v[i]->job);
        pmx_pgarray_text(&msg, v.v[i]->id);
    }
    pmx_buf_append_char(&ws, '}');
    pmx_buf_append_char(&job, '}');
    pmx_buf_append_char(&msg, '}');
    const char *vals[3] = { pmx_buf_cstr(&ws), pmx_buf_cstr(&job), pmx_buf_cstr(&msg) };
    o->l_req = pmx_db_async_query_prepared(o->db, "pmx_outcomes_lookup", LOOKUP_SQL, 3, vals,
                                           lookups_done, o);
    pmx_buf_free(&ws);
    pmx_buf_free(&job);
    pmx_buf_free(&msg);
    if (!o->l_req) {
        /* Went down just now: put them back in front, in order. */
        for (size_t i = v.n; i-- > 0;) {
            v.v[i]->next = o->lq.head;
            o->lq.head = v.v[i];
            if (!o->lq.tail) o->lq.tail = v.v[i];
            o->lq.n++;
        }
        free(v.v);
        return;
    }
    o->stats.lookup_queries++;
    o->l_items = v;
}

static void lookups_done(pmx_db_async_t *db, const PGresult *res, void *arg)
{
    (void)db;
    pmx_outcomes_t *o = arg;
    reqvec_t v = o->l_items;
    o->l_req = NULL;
    o->l_items = (reqvec_t){ NULL, 0 };
    o->depth++;
    char err[300];
    if (!res) {
        pmx_log_warn("outcome lookups lost n=%zu err=\"postgres connection lost\"", v.n);
        fail_vec(o, &v, -EIO, "postgres connection lost");
    } else if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        first_line(err, sizeof err, PQresultErrorMessage(res));
        pmx_log_error("outcome lookups failed n=%zu err=\"%s\"", v.n, err);
        fail_vec(o, &v, -EINVAL, err);
    } else {
        int rows = PQntuples(res), row = 0;
        pmx_outcome_known_rcpt_t *kr = NULL;
        size_t cap = 0;
        for (size_t i = 0; i < v.n; i++) {
            long ord = (long)i + 1;
            while (row < rows && atol(PQgetvalue(res, row, 0)) < ord) row++;
            pmx_outcome_lookup_t out = { .status = 0 };
            size_t n = 0;
            for (; row < rows && atol(PQgetvalue(res, row, 0)) == ord; row++) {
                out.message_id = PQgetvalue(res, row, 1);
                if (PQgetisnull(res, row, 2)) continue;   /* a message without recipients */
                if (n == cap) {
                    cap = cap ? cap * 2 : 16;
                    kr = pmx_xrealloc(kr, cap * sizeof *kr);
                }
                kr[n++] = (pmx_outcome_known_rcpt_t){ .address = PQgetvalue(res, row, 2),
                                                      .status = PQgetvalue(res, row, 3),
                                                      .attempts = atoi(PQgetvalue(res, row, 4)) };
            }
            out.rcpts = kr;
            out.nrcpts = n;
            finish_lookup(o, v.v[i], &out);
        }
        free(kr);
        free(v.v);
    }
    pump(o, FORCE_LOOKUPS, true);   /* a redelivered job waits for its lookup to relay */
    leave(o);
}

/* ---- scheduling --------------------------------------------------------- */

/* Postgres is down: fail what has waited longer than hold_ms. */
static void expire_held(pmx_outcomes_t *o, uint64_t now)
{
    const char *why = "postgres is down";
    bool expired_any = false;
    for (chunk_t **pc = &o->chunks; *pc;) {
        chunk_t *c = *pc;
        size_t j = 0;
        for (size_t i = 0; i < c->items.n; i++) {
            pmx_outcomes_req_t *r = c->items.v[i];
            if ((int64_t)(now - r->t_submit) >= o->hold_ms) {
                finish_item(o, r, -EAGAIN, NULL, why);
                expired_any = true;
            } else {
                c->items.v[j++] = r;
            }
        }
        c->items.n = j;
        if (j == 0) {
            *pc = c->next;
            free(c->items.v);
            free(c);
        } else {
            pc = &c->next;
        }
    }
    fifo_t *queues[2] = { &o->wq, &o->lq };
    for (int q = 0; q < 2; q++) {
        /* FIFO by submit time: the expired ones are at the front. */
        while (queues[q]->head && (int64_t)(now - queues[q]->head->t_submit) >= o->hold_ms) {
            pmx_outcomes_req_t *r = fifo_pop(queues[q]);
            expired_any = true;
            if (r->is_lookup) fail_lookup(o, r, -EAGAIN, why);
            else finish_item(o, r, -EAGAIN, NULL, why);
        }
    }
    if (expired_any && !o->down_logged) {
        pmx_log_warn("outcomes failing: postgres down for over %" PRId64 " ms (jobs stay pending)",
                     o->hold_ms);
        o->down_logged = true;
    }
}

static void timer_cb(uv_timer_t *t)
{
    pmx_outcomes_t *o = t->data;
    o->depth++;
    pump(o, 0, true);
    leave(o);
}

/* ms until the head of a queue, submitted at t, has waited window; a head
 * already ripe that is still here was not sent (Postgres went away just
 * now): poll. */
static uint64_t until_ripe(uint64_t now, uint64_t t, uint64_t window)
{
    return now - t < window ? window - (now - t) : DOWN_POLL_MS;
}

static void pump(pmx_outcomes_t *o, int force, bool in_loop)
{
    if (o->closing) return;
    bool waiting_w = o->chunks || o->wq.n, waiting_l = o->lq.n > 0;
    if (!waiting_w && !waiting_l) return;
    if (!o->db || !pmx_db_async_is_up(o->db)) {
        if (in_loop) expire_held(o, uv_now(o->loop));
        if ((o->chunks || o->wq.n || o->lq.n) && !uv_is_active((uv_handle_t *)&o->timer))
            uv_timer_start(&o->timer, timer_cb, DOWN_POLL_MS, 0);
        return;
    }
    o->down_logged = false;
    uint64_t now = uv_now(o->loop), window = o->busy ? 2 * o->flush_ms : o->flush_ms;
    if (!o->w_req && (o->chunks || (o->wq.n && ((force & FORCE_WRITES) || o->wq.n >= o->max_batch
                                                || now - o->wq.head->t_submit >= window))))
        send_writes(o);
    if (!o->l_req && o->lq.n && ((force & FORCE_LOOKUPS) || o->lq.n >= o->max_batch
                                 || now - o->lq.head->t_submit >= o->flush_ms))
        send_lookups(o);
    /* The timer: the earliest deadline of what waits and is not behind a
     * request in flight (writes and lookups share it, so it is set again
     * every time, not only when idle). */
    uint64_t wait = UINT64_MAX, w;
    if (!o->w_req && o->chunks) wait = DOWN_POLL_MS;   /* their send failed just now */
    if (!o->w_req && o->wq.n && (w = until_ripe(now, o->wq.head->t_submit, window)) < wait)
        wait = w;
    if (!o->l_req && o->lq.n && (w = until_ripe(now, o->lq.head->t_submit, o->flush_ms)) < wait)
        wait = w;
    if (wait != UINT64_MAX) uv_timer_start(&o->timer, timer_cb, wait, 0);
}

void pmx_outcomes_flush(pmx_outcomes_t *o)
{
    o->depth++;
    pump(o, FORCE_WRITES | FORCE_LOOKUPS, false);
    leave(o);
}

/* ---- closing ------------------------------------------------------------ */

static void timer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void teardown(pmx_outcomes_t *o)
{
    o->depth++;   /* callbacks below must not re-enter */
    const char *why = "outcome writer closed";
    if (o->w_req) pmx_db_async_cancel(o->w_req);
    if (o->l_req) pmx_db_async_cancel(o->l_req);
    if (o->f_req) pmx_db_async_cancel(o->f_req);
    o->w_req = o->l_req = o->f_req = NULL;
    fail_vec(o, &o->w_items, -ECANCELED, why);
    fail_vec(o, &o->l_items, -ECANCELED, why);
    while (o->chunks) {
        chunk_t *c = o->chunks;
        o->chunks = c->next;
        fail_vec(o, &c->items, -ECANCELED, why);
        free(c);
    }
    pmx_outcomes_req_t *r;
    while ((r = fifo_pop(&o->wq))) finish_item(o, r, -ECANCELED, NULL, why);
    while ((r = fifo_pop(&o->lq))) fail_lookup(o, r, -ECANCELED, why);
    uv_close((uv_handle_t *)&o->timer, timer_closed);
}

static void leave(pmx_outcomes_t *o)
{
    if (--o->depth == 0 && o->free_requested) {
        o->free_requested = false;
        teardown(o);
    }
}

void pmx_outcomes_free(pmx_outcomes_t *o)
{
    if (!o || o->closing) return;
    o->closing = true;
    if (o->depth > 0) o->free_requested = true;
    else teardown(o);
}
