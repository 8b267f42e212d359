/*
 * A self-healing non-blocking Postgres connection on a libuv loop; see
 * db_async.h.
 *
 * States: DOWN (retry timer armed) -> CONNECTING (PQconnectPoll driven by a
 * uv_poll_t, bounded by a timeout) -> UP. Any failure goes back to DOWN:
 * every queued request is failed (callback with NULL), and the retry timer
 * is armed with backoff.
 *
 * Reentrancy: user callbacks may query, cancel or close. Every entry from
 * libuv holds a depth count; a close requested inside a callback only sets
 * a flag, and the teardown happens when the outermost entry returns. Errors
 * found inside a public call (a failed send) are handed to the loop through
 * a zero timer, so no public call ever runs a user callback itself, except
 * pmx_db_async_close(), whose contract says so.
 *
 * While connecting the uv_poll_t is recreated at every step: libpq may close
 * its socket and open another one under the same fd number (next host,
 * SSL/GSS fallback), which an existing epoll registration would not notice.
 */
#include "sql/db_async.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "lib/mem.h"

typedef enum { DB_DOWN, DB_CONNECTING, DB_UP } db_phase_t;
typedef enum { TM_NONE, TM_RETRY, TM_CONNECT_TIMEOUT, TM_FAIL_SOON } timer_mode_t;
/* SENT: its PREPARE is queued ahead; FAILED: sent as plain queries instead. */
typedef enum { PREP_SENT, PREP_READY, PREP_FAILED } prep_state_t;

struct pmx_db_async_req {
    pmx_db_async_req_t    *next;
    char                  *sql;
    bool                   extended;    /* PQsendQueryParams */
    char                  *stmt;        /* prepared statement name, or NULL */
    bool                   is_prepare;  /* PQsendPrepare of stmt (internal) */
    int                    nparams;
    char                 **values;
    int                   *lengths;     /* binary parameters (NULL = all text) */
    int                   *formats;
    pmx_db_async_result_fn cb;          /* NULL = cancelled (zombie) */
    void                  *arg;
};

struct pmx_db_async {
    uv_loop_t          *loop;
    char               *conninfo;
    char               *label;          /* host/port/dbname for logs, never the password */

    PGconn             *conn;
    db_phase_t          phase;
    uv_poll_t          *poll;
    int                 poll_events;
    uv_timer_t          timer;
    timer_mode_t        timer_mode;
    char                fail_reason[256];

    pmx_db_async_req_t *head, *tail;    /* FIFO; head is in flight when inflight */
    bool                inflight;
    PGresult           *result;         /* result of the in-flight query so far */
    int                 npending;

    char              **channels;
    int                 nchannels;

    /* Statements prepared on this connection (reset with it). */
    struct { char *name; prep_state_t state; } prep[PMX_DB_PREPARED_MAX];
    int                 nprep;

    pmx_db_async_state_fn  state_fn;
    void                  *state_arg;
    pmx_db_async_notify_fn notify_fn;
    void                  *notify_arg;

    uint64_t            backoff_ms;
    unsigned int        rand_state;
    bool                ever_up;
    bool                failure_logged;

    int                 depth;
    bool                closing;
    bool                torn_down;
    int                 handles_open;
};

static void schedule_retry(pmx_db_async_t *db, const char *why);
static void on_poll(uv_poll_t *h, int status, int events);
static void send_next(pmx_db_async_t *db);
static void teardown(pmx_db_async_t *db);

/* libpq's messages end in a newline and may run over several lines: keep the first. */
static void first_line(char *dst, size_t dstlen, const char *msg)
{
    if (!msg || !*msg) msg = "unknown error";
    size_t n = strcspn(msg, "\r\n");
    if (n >= dstlen) n = dstlen - 1;
    memcpy(dst, msg, n);
    dst[n] = '\0';
}

static char *make_label(const char *conninfo)
{
    pmx_buf_t b = PMX_BUF_INIT;
    char *errmsg = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &errmsg);
    if (errmsg) PQfreemem(errmsg);
    if (opts) {
        for (PQconninfoOption *o = opts; o->keyword; o++) {
            if (!o->val || !*o->val) continue;
            if (strcmp(o->keyword, "host") && strcmp(o->keyword, "hostaddr") &&
                strcmp(o->keyword, "port") && strcmp(o->keyword, "dbname"))
                continue;
            pmx_buf_appendf(&b, "%s%s=%s", b.len ? " " : "", o->keyword, o->val);
        }
        PQconninfoFree(opts);
    }
    if (b.len == 0) pmx_buf_append_str(&b, "default");
    return pmx_buf_detach(&b);
}

pmx_db_async_t *pmx_db_async_new(uv_loop_t *loop, const char *conninfo)
{
    pmx_db_async_t *db = pmx_xcalloc(1, sizeof *db);
    db->loop = loop;
    db->conninfo = pmx_xstrdup(conninfo);
    db->label = make_label(conninfo);
    db->phase = DB_DOWN;
    db->backoff_ms = PMX_DB_BACKOFF_MIN_MS;
    db->rand_state = (unsigned int)getpid() * 2654435761u ^ (unsigned int)uv_hrtime();
    uv_timer_init(loop, &db->timer);
    db->timer.data = db;
    db->handles_open = 1;
    return db;
}

void pmx_db_async_set_state_cb(pmx_db_async_t *db, pmx_db_async_state_fn fn, void *arg)
{
    db->state_fn = fn;
    db->state_arg = arg;
}

void pmx_db_async_set_notify_cb(pmx_db_async_t *db, pmx_db_async_notify_fn fn, void *arg)
{
    db->notify_fn = fn;
    db->notify_arg = arg;
}

bool pmx_db_async_is_up(const pmx_db_async_t *db)
{
    return db->phase == DB_UP && !db->closing;
}

int pmx_db_async_pending(const pmx_db_async_t *db)
{
    return db->npending;
}

/* ---- libuv handles ---------------------------------------------------- */

static void free_db(pmx_db_async_t *db)
{
    for (int i = 0; i < db->nchannels; i++) free(db->channels[i]);
    free(db->channels);
    pmx_wipe(db->conninfo, strlen(db->conninfo));
    free(db->conninfo);
    free(db->label);
    free(db);
}

static void handle_closed(pmx_db_async_t *db)
{
    if (--db->handles_open == 0 && db->torn_down) free_db(db);
}

static void poll_closed(uv_handle_t *h)
{
    pmx_db_async_t *db = h->data;
    free(h);
    handle_closed(db);
}

static void timer_closed(uv_handle_t *h)
{
    handle_closed(h->data);
}

static void poll_drop(pmx_db_async_t *db)
{
    if (!db->poll) return;
    uv_close((uv_handle_t *)db->poll, poll_closed);
    db->poll = NULL;
    db->poll_events = 0;
}

/* Watches libpq's current socket for events; fresh = make a new poll handle. */
static int poll_want(pmx_db_async_t *db, int events, bool fresh)
{
    int fd = PQsocket(db->conn);
    if (fd < 0) return -1;
    if (fresh) poll_drop(db);
    if (!db->poll) {
        uv_poll_t *p = pmx_xmalloc(sizeof *p);
        if (uv_poll_init(db->loop, p, fd) != 0) {
            free(p);
            return -1;
        }
        p->data = db;
        db->poll = p;
        db->poll_events = 0;
        db->handles_open++;
    }
    if (events != db->poll_events) {
        if (uv_poll_start(db->poll, events, on_poll) != 0) return -1;
        db->poll_events = events;
    }
    return 0;
}

static void timer_arm(pmx_db_async_t *db, timer_mode_t mode, uint64_t ms);

static void leave(pmx_db_async_t *db)
{
    if (--db->depth == 0 && db->closing && !db->torn_down) teardown(db);
}

/* ---- requests --------------------------------------------------------- */

static void req_free(pmx_db_async_req_t *r)
{
    for (int i = 0; i < r->nparams; i++) free(r->values[i]);
    free(r->values);
    free(r->lengths);
    free(r->formats);
    free(r->sql);
    free(r->stmt);
    free(r);
}

static pmx_db_async_req_t *pop_head(pmx_db_async_t *db)
{
    pmx_db_async_req_t *r = db->head;
    if (!r) return NULL;
    db->head = r->next;
    if (!db->head) db->tail = NULL;
    db->npending--;
    return r;
}

/* Every queued request gets a NULL result (connection gone or closing). */
static void fail_all(pmx_db_async_t *db)
{
    pmx_db_async_req_t *r = db->head;
    db->head = db->tail = NULL;
    db->npending = 0;
    db->inflight = false;
    while (r) {
        pmx_db_async_req_t *next = r->next;
        if (r->cb) r->cb(db, NULL, r->arg);
        req_free(r);
        r = next;
    }
}

static pmx_db_async_req_t *enqueue(pmx_db_async_t *db, const char *sql, bool extended,
                                   int nparams, const char *const *values,
                                   pmx_db_async_result_fn cb, void *arg)
{
    pmx_db_async_req_t *r = pmx_xcalloc(1, sizeof *r);
    r->sql = pmx_xstrdup(sql);
    r->extended = extended;
    r->cb = cb;
    r->arg = arg;
    if (nparams > 0) {
        r->nparams = nparams;
        r->values = pmx_xcalloc((size_t)nparams, sizeof *r->values);
        for (int i = 0; i < nparams; i++)
            r->values[i] = values[i] ? pmx_xstrdup(values[i]) : NULL;
    }
    if (db->tail)
        db->tail->next = r;
    else
        db->head = r;
    db->tail = r;
    db->npending++;
    return r;
}

/* An error found inside a public call: handled on the next loop turn. */
static void fail_soon(pmx_db_async_t *db, const char *why)
{
    first_line(db->fail_reason, sizeof db->fail_reason, why);
    timer_arm(db, TM_FAIL_SOON, 0);
}

static bool prep_ready(const pmx_db_async_t *db, const char *name);

static void flush_out(pmx_db_async_t *db)
{
    int r = PQflush(db->conn);
    if (r < 0) {
        fail_soon(db, PQerrorMessage(db->conn));
        return;
    }
    if (poll_want(db, r == 1 ? UV_READABLE | UV_WRITABLE : UV_READABLE, false) < 0)
        fail_soon(db, "cannot watch the socket");
}

static void send_next(pmx_db_async_t *db)
{
    while (db->phase == DB_UP && !db->closing && !db->inflight && db->head) {
        pmx_db_async_req_t *r = db->head;
        if (!r->cb) {   /* cancelled before it was sent */
            req_free(pop_head(db));
            continue;
        }
        const char *const *values = (const char *const *)r->values;
        int ok;
        if (r->is_prepare)
            ok = PQsendPrepare(db->conn, r->stmt, r->sql, r->nparams, NULL);
        else if (r->stmt && prep_ready(db, r->stmt))
            ok = PQsendQueryPrepared(db->conn, r->stmt, r->nparams, values, NULL, NULL, 0);
        else if (r->extended)
            ok = PQsendQueryParams(db->conn, r->sql, r->nparams, NULL, values, r->lengths,
                                   r->formats, 0);
        else
            ok = PQsendQuery(db->conn, r->sql);
        if (!ok) {
            fail_soon(db, PQerrorMessage(db->conn));
            return;
        }
        db->inflight = true;
        flush_out(db);
    }
}

pmx_db_async_req_t *pmx_db_async_query(pmx_db_async_t *db, const char *sql,
                                       pmx_db_async_result_fn cb, void *arg)
{
    if (!pmx_db_async_is_up(db)) return NULL;
    pmx_db_async_req_t *r = enqueue(db, sql, false, 0, NULL, cb, arg);
    send_next(db);
    return r;
}

pmx_db_async_req_t *pmx_db_async_query_params(pmx_db_async_t *db, const char *sql,
                                              int nparams, const char *const *values,
                                              pmx_db_async_result_fn cb, void *arg)
{
    if (!pmx_db_async_is_up(db) || nparams < 0) return NULL;
    pmx_db_async_req_t *r = enqueue(db, sql, true, nparams, values, cb, arg);
    send_next(db);
    return r;
}

pmx_db_async_req_t *pmx_db_async_query_binary(pmx_db_async_t *db, const char *sql, int nparams,
                                              const char *const *values, const int *lengths,
                                              pmx_db_async_result_fn cb, void *arg)
{
    if (!pmx_db_async_is_up(db) || nparams <= 0) return NULL;
    pmx_db_async_req_t *r = enqueue(db, sql, true, 0, NULL, cb, arg);
    r->nparams = nparams;
    r->values = pmx_xcalloc((size_t)nparams, sizeof *r->values);
    r->lengths = pmx_xcalloc((size_t)nparams, sizeof *r->lengths);
    r->formats = pmx_xcalloc((size_t)nparams, sizeof *r->formats);
    for (int i = 0; i < nparams; i++) {
        if (!values[i]) continue;
        if (lengths[i] < 0) {
            r->values[i] = pmx_xstrdup(values[i]);
            continue;
        }
        r->values[i] = pmx_xmalloc((size_t)lengths[i] + 1);
        memcpy(r->values[i], values[i], (size_t)lengths[i]);
        r->lengths[i] = lengths[i];
        r->formats[i] = 1;
    }
    send_next(db);
    return r;
}

/* ---- prepared statements --------------------------------------------- */

static int prep_find(const pmx_db_async_t *db, const char *name)
{
    for (int i = 0; i < db->nprep; i++)
        if (strcmp(db->prep[i].name, name) == 0) return i;
    return -1;
}

static bool prep_ready(const pmx_db_async_t *db, const char *name)
{
    int i = prep_find(db, name);
    return i >= 0 && db->prep[i].state == PREP_READY;
}

static void prep_reset(pmx_db_async_t *db)
{
    for (int i = 0; i < db->nprep; i++) free(db->prep[i].name);
    db->nprep = 0;
}

/* arg: the statement's index in db->prep. A NULL result means the connection
 * went away, and prep_reset() already forgot the statement. */
static void prepare_done(pmx_db_async_t *db, const PGresult *res, void *arg)
{
    int i = (int)(intptr_t)arg;
    if (!res || i >= db->nprep) return;
    if (PQresultStatus(res) == PGRES_COMMAND_OK) {
        db->prep[i].state = PREP_READY;
        return;
    }
    db->prep[i].state = PREP_FAILED;
    char why[256];
    first_line(why, sizeof why, PQresultErrorMessage(res));
    pmx_log_warn("postgres PREPARE failed %s statement=%s err=\"%s\" (sent unprepared instead)",
                 db->label, db->prep[i].name, why);
}

pmx_db_async_req_t *pmx_db_async_query_prepared(pmx_db_async_t *db, const char *name,
                                                const char *sql, int nparams,
                                                const char *const *values,
                                                pmx_db_async_result_fn cb, void *arg)
{
    if (!pmx_db_async_is_up(db) || nparams < 0 || !name || !name[0]) return NULL;
    if (prep_find(db, name) < 0 && db->nprep < PMX_DB_PREPARED_MAX) {
        int i = db->nprep++;
        db->prep[i].name = pmx_xstrdup(name);
        db->prep[i].state = PREP_SENT;
        pmx_db_async_req_t *p = enqueue(db, sql, true, 0, NULL, prepare_done, (void *)(intptr_t)i);
        p->is_prepare = true;   /* parameter types come from the casts in sql */
        p->stmt = pmx_xstrdup(name);
    }
    pmx_db_async_req_t *r = enqueue(db, sql, true, nparams, values, cb, arg);
    r->stmt = pmx_xstrdup(name);
    send_next(db);
    return r;
}

void pmx_db_async_cancel(pmx_db_async_req_t *req)
{
    if (req) req->cb = NULL;
}

/* ---- LISTEN / NOTIFY -------------------------------------------------- */

static void listen_done(pmx_db_async_t *db, const PGresult *res, void *arg)
{
    const char *channel = arg;
    if (res && PQresultStatus(res) != PGRES_COMMAND_OK) {
        char why[256];
        first_line(why, sizeof why, PQresultErrorMessage(res));
        pmx_log_error("postgres LISTEN failed %s channel=%s err=\"%s\"", db->label, channel, why);
    }
}

static void queue_listen(pmx_db_async_t *db, char *channel)
{
    char *ident = PQescapeIdentifier(db->conn, channel, strlen(channel));
    if (!ident) {
        fail_soon(db, PQerrorMessage(db->conn));
        return;
    }
    pmx_buf_t sql = PMX_BUF_INIT;
    pmx_buf_appendf(&sql, "LISTEN %s", ident);
    PQfreemem(ident);
    /* channel lives as long as db (the channels array only grows). */
    enqueue(db, pmx_buf_cstr(&sql), false, 0, NULL, listen_done, channel);
    pmx_buf_free(&sql);
}

int pmx_db_async_listen(pmx_db_async_t *db, const char *channel)
{
    size_t n = strlen(channel);
    if (n == 0 || n > 63) return -1;
    for (int i = 0; i < db->nchannels; i++)
        if (strcmp(db->channels[i], channel) == 0) return 0;
    db->channels = pmx_xrealloc(db->channels, (size_t)(db->nchannels + 1) * sizeof *db->channels);
    char *copy = pmx_xstrdup(channel);
    db->channels[db->nchannels++] = copy;
    if (pmx_db_async_is_up(db)) {
        queue_listen(db, copy);
        send_next(db);
    }
    return 0;
}

static void deliver_notifies(pmx_db_async_t *db)
{
    PGnotify *n;
    while (!db->closing && db->phase == DB_UP && (n = PQnotifies(db->conn)) != NULL) {
        if (db->notify_fn) db->notify_fn(db, n->relname, n->extra ? n->extra : "", db->notify_arg);
        PQfreemem(n);
    }
}

/* ---- connection lifecycle --------------------------------------------- */

static void drop_conn(pmx_db_async_t *db)
{
    poll_drop(db);   /* stop watching the fd before libpq closes it */
    if (db->conn) PQfinish(db->conn);
    db->conn = NULL;
    if (db->result) PQclear(db->result);
    db->result = NULL;
    db->inflight = false;
    prep_reset(db);
}

static void lost(pmx_db_async_t *db, const char *msg)
{
    char why[256];
    first_line(why, sizeof why, msg);
    bool was_up = db->phase == DB_UP;
    db->phase = DB_DOWN;
    uv_timer_stop(&db->timer);
    db->timer_mode = TM_NONE;
    drop_conn(db);
    fail_all(db);
    if (db->closing) return;
    if (was_up) {
        pmx_log_warn("postgres connection lost %s err=\"%s\"", db->label, why);
        db->failure_logged = true;
        if (db->state_fn) db->state_fn(db, false, db->state_arg);
        if (db->closing) return;
    }
    schedule_retry(db, why);
}

static void connect_failed(pmx_db_async_t *db, const char *msg)
{
    char why[256];
    first_line(why, sizeof why, msg);
    db->phase = DB_DOWN;
    drop_conn(db);
    schedule_retry(db, why);
}

static void connected(pmx_db_async_t *db)
{
    uv_timer_stop(&db->timer);
    db->timer_mode = TM_NONE;
    if (PQsetnonblocking(db->conn, 1) != 0) {
        connect_failed(db, PQerrorMessage(db->conn));
        return;
    }
    if (poll_want(db, UV_READABLE, true) < 0) {
        connect_failed(db, "cannot watch the socket");
        return;
    }
    db->phase = DB_UP;
    db->backoff_ms = PMX_DB_BACKOFF_MIN_MS;
    pmx_log_info("postgres %s %s", db->ever_up ? "reconnected" : "connected", db->label);
    db->ever_up = true;
    db->failure_logged = false;
    for (int i = 0; i < db->nchannels; i++) queue_listen(db, db->channels[i]);
    if (db->state_fn) db->state_fn(db, true, db->state_arg);
    send_next(db);
}

static void connect_step(pmx_db_async_t *db)
{
    switch (PQconnectPoll(db->conn)) {
    case PGRES_POLLING_READING:
        if (poll_want(db, UV_READABLE, true) < 0) connect_failed(db, "cannot watch the socket");
        break;
    case PGRES_POLLING_WRITING:
        if (poll_want(db, UV_WRITABLE, true) < 0) connect_failed(db, "cannot watch the socket");
        break;
    case PGRES_POLLING_OK:
        connected(db);
        break;
    default:
        connect_failed(db, PQerrorMessage(db->conn));
        break;
    }
}

/* Server notices (and the FATAL sent before a shutdown) go to our log, not raw stderr. */
static void notice_cb(void *arg, const char *message)
{
    pmx_db_async_t *db = arg;
    char line[256];
    first_line(line, sizeof line, message);
    pmx_log_info("postgres notice %s msg=\"%s\"", db->label, line);
}

static void start_connect(pmx_db_async_t *db)
{
    db->conn = PQconnectStart(db->conninfo);
    if (!db->conn) {
        schedule_retry(db, "out of memory");
        return;
    }
    PQsetNoticeProcessor(db->conn, notice_cb, db);
    if (PQstatus(db->conn) == CONNECTION_BAD) {
        connect_failed(db, PQerrorMessage(db->conn));
        return;
    }
    db->phase = DB_CONNECTING;
    /* libpq: behave as if PQconnectPoll had asked for writability first. */
    if (poll_want(db, UV_WRITABLE, true) < 0) {
        connect_failed(db, "cannot watch the socket");
        return;
    }
    timer_arm(db, TM_CONNECT_TIMEOUT, PMX_DB_CONNECT_TIMEOUT_MS);
}

static void schedule_retry(pmx_db_async_t *db, const char *why)
{
    if (!db->failure_logged) {
        pmx_log_warn("postgres unreachable %s err=\"%s\" (retrying with backoff)", db->label, why);
        db->failure_logged = true;
    } else {
        pmx_log_debug("postgres still unreachable %s err=\"%s\" retry_ms=%llu", db->label, why,
                      (unsigned long long)db->backoff_ms);
    }
    uint64_t delay = db->backoff_ms;
    delay += (uint64_t)rand_r(&db->rand_state) % (delay / 4 + 1);
    timer_arm(db, TM_RETRY, delay);
    db->backoff_ms *= 2;
    if (db->backoff_ms > PMX_DB_BACKOFF_MAX_MS) db->backoff_ms = PMX_DB_BACKOFF_MAX_MS;
}

void pmx_db_async_start(pmx_db_async_t *db)
{
    if (db->phase != DB_DOWN || db->closing) return;
    db->depth++;
    start_connect(db);
    leave(db);
}

/* ---- reading results -------------------------------------------------- */

static bool is_error(const PGresult *r)
{
    ExecStatusType s = PQresultStatus(r);
    return s == PGRES_FATAL_ERROR || s == PGRES_BAD_RESPONSE || s == PGRES_NONFATAL_ERROR;
}

static void complete(pmx_db_async_t *db)
{
    pmx_db_async_req_t *r = pop_head(db);
    PGresult *res = db->result;
    db->result = NULL;
    db->inflight = false;
    if (r->cb) r->cb(db, res, r->arg);
    if (res) PQclear(res);
    req_free(r);
}

static void read_input(pmx_db_async_t *db)
{
    if (!PQconsumeInput(db->conn)) {
        lost(db, PQerrorMessage(db->conn));
        return;
    }
    deliver_notifies(db);
    while (!db->closing && db->phase == DB_UP && db->inflight && !PQisBusy(db->conn)) {
        PGresult *res = PQgetResult(db->conn);
        if (!res) {
            complete(db);
            if (db->closing || db->phase != DB_UP) return;
            send_next(db);
            continue;
        }
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
            PQclear(res);
            lost(db, "COPY is not supported on this connection");
            return;
        }
        /* Keep the first error of a multi-statement string, else the last result. */
        if (!db->result) {
            db->result = res;
        } else if (is_error(db->result)) {
            PQclear(res);
        } else {
            PQclear(db->result);
            db->result = res;
        }
    }
    if (db->closing || db->phase != DB_UP) return;
    deliver_notifies(db);
    if (!db->closing && db->phase == DB_UP && PQstatus(db->conn) == CONNECTION_BAD)
        lost(db, PQerrorMessage(db->conn));
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    pmx_db_async_t *db = h->data;
    if (h != db->poll || db->closing) return;
    db->depth++;
    if (status < 0) {
        if (db->phase == DB_CONNECTING)
            connect_failed(db, uv_strerror(status));
        else if (db->phase == DB_UP)
            lost(db, uv_strerror(status));
    } else if (db->phase == DB_CONNECTING) {
        connect_step(db);
    } else if (db->phase == DB_UP) {
        if (events & UV_WRITABLE) flush_out(db);
        if ((events & UV_READABLE) && !db->closing && db->phase == DB_UP) read_input(db);
    }
    leave(db);
}

static void timer_cb(uv_timer_t *t)
{
    pmx_db_async_t *db = t->data;
    timer_mode_t mode = db->timer_mode;
    db->timer_mode = TM_NONE;
    if (db->closing) return;
    db->depth++;
    switch (mode) {
    case TM_RETRY:
        if (db->phase == DB_DOWN) start_connect(db);
        break;
    case TM_CONNECT_TIMEOUT:
        if (db->phase == DB_CONNECTING) connect_failed(db, "connect timed out");
        break;
    case TM_FAIL_SOON:
        if (db->phase == DB_UP) lost(db, db->fail_reason);
        break;
    case TM_NONE:
        break;
    }
    leave(db);
}

static void timer_arm(pmx_db_async_t *db, timer_mode_t mode, uint64_t ms)
{
    db->timer_mode = mode;
    uv_timer_start(&db->timer, timer_cb, ms, 0);
}

/* ---- closing ---------------------------------------------------------- */

static void teardown(pmx_db_async_t *db)
{
    db->torn_down = true;
    db->phase = DB_DOWN;
    uv_timer_stop(&db->timer);
    uv_close((uv_handle_t *)&db->timer, timer_closed);
    drop_conn(db);
    db->depth++;   /* callbacks below must not re-enter teardown */
    fail_all(db);
    db->depth--;
}

void pmx_db_async_close(pmx_db_async_t *db)
{
    if (db->closing) return;
    db->closing = true;
    if (db->depth == 0) teardown(db);
}
