/*
 * A job as the queue room hands it to the pipeline, and the two encodings of
 * a job the queue owns:
 *
 * - A stream entry, as XREADGROUP / XCLAIM return it: [id, [field, value,
 *   ...]]. That is outside input: every reply type and count is checked, and
 *   an entry that is not a well-formed list of string pairs (odd item count,
 *   a non-string item, too many items, too many bytes) becomes a job of kind
 *   PMX_QUEUE_JOB_MALFORMED with a reason naming what is wrong, so the
 *   pipeline rejects and acknowledges it and the stream moves on.
 *
 * - The retry-set member (pmx:{ws}:retry): the user fields plus the internal
 *   fields _msg, _attempt, _first, written as "PMXJ1\n" followed by one
 *   netstring "<len>:<bytes>," per item (name, value, name, value, ...).
 *   Length-prefixed, so any byte (NUL, CR, LF, ':') survives, and simple
 *   enough that queue/retry.c's Lua mover parses it to XADD the fields back
 *   into the stream, where they arrive as ordinary fields.
 *
 * Internal fields start with "_". They are read only from entries that carry
 * `_msg` (entries the retry mover wrote), validated (a bad one makes the job
 * MALFORMED, naming the field) and stripped from job->fields; unknown `_x`
 * fields of such entries are dropped. In any other entry a "_x" field stays
 * a user field, which the job decoder (lib/job.h) rejects as unknown — except
 * `_source` ("redis" or "smtp"), which SMTP submission writes on its first
 * XADD: it is accepted on every entry, stripped, and kept through retries.
 * It only labels messages.source, so a client that forges it gains nothing.
 * Note: whoever can XADD to a stream can write `_msg`; the pipeline must
 * check that a message id it is given belongs to the job's workspace.
 */
#ifndef PMX_QUEUE_JOBCODEC_H
#define PMX_QUEUE_JOBCODEC_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "lib/buf.h"
#include "lib/job.h"

typedef enum {
    PMX_QUEUE_JOB_OK = 0,       /* a job to process */
    PMX_QUEUE_JOB_MALFORMED,    /* reject: the entry is not a job (reason says why) */
    PMX_QUEUE_JOB_DUPLICATE,    /* reject: its `id` belongs to another entry (7 days) */
    PMX_QUEUE_JOB_POISON,       /* reject: delivered max_deliveries times, no outcome */
    PMX_QUEUE_JOB_UNKNOWN_WS,   /* reject: stream of a workspace not in the set */
} pmx_queue_job_kind_t;

/* job->flags */
#define PMX_QUEUE_JOB_RETRIED     0x01u  /* came back from the retry set (_msg...) */
#define PMX_QUEUE_JOB_REDELIVERED 0x02u  /* reclaimed: delivered before, no outcome */
#define PMX_QUEUE_JOB_LOST        0x04u  /* another consumer took it while in flight */

#define PMX_QUEUE_MSG_ID_LEN     20      /* "msg_" + 16 base32 */
#define PMX_QUEUE_REASON_MAX     192
#define PMX_QUEUE_ENTRY_ID_MAX   48
#define PMX_QUEUE_CLIENT_ID_MAX  200     /* as lib/job.c: printable ASCII */
#define PMX_QUEUE_MAX_ATTEMPT    1000000u

typedef struct pmx_queue_job pmx_queue_job_t;
struct pmx_queue_consumer;
struct pmx__queue_ws;

/* Internal state of a job carried through the retry set. */
typedef struct {
    bool     present;                          /* the entry had _msg */
    char     msg_id[PMX_QUEUE_MSG_ID_LEN + 1];
    uint32_t attempt;                          /* _attempt, >= 2 */
    uint64_t first_ms;                         /* _first */
    bool     smtp;                             /* _source = smtp (any entry) */
} pmx_queue_jobmeta_t;

/* Bounds on one stream entry (outside input). */
typedef struct {
    size_t max_bytes;   /* sum of field name and value lengths */
    size_t max_items;   /* field names + values */
} pmx_queue_entry_limits_t;

struct pmx_queue_job {
    /* ---- read-only for the pipeline ---- */
    pmx_queue_job_kind_t kind;
    unsigned    flags;                  /* PMX_QUEUE_JOB_* bits */
    const char *ws;                     /* workspace id (from the stream key) */
    const char *stream;                 /* the stream key, e.g. pmx:{ws_x}:jobs */
    char        entry_id[PMX_QUEUE_ENTRY_ID_MAX];  /* "ms-seq" */
    /* User fields, in entry order, internal "_" fields stripped (retried
     * entries only). Names and values are NUL-terminated copies, with their
     * lengths (values may contain NUL bytes). Ready for pmx_job_decode(). */
    const pmx_job_field_t *fields;
    size_t      nfields;
    const char *client_id;              /* the `id` field when it is 1-200 printable
                                           ASCII and given once, else NULL */
    char        msg_id[PMX_QUEUE_MSG_ID_LEN + 1];  /* retried: _msg; else "" */
    uint32_t    attempt;                /* 1 on the first try; _attempt when retried */
    uint64_t    first_ms;               /* first seen, ms since the epoch */
    const char *source;                 /* "smtp" (SMTP submission's _source) or "redis" */
    uint32_t    deliveries;             /* deliveries of this entry (1 = first read) */
    uint64_t    batch;                  /* the read that returned it (0 = reclaimed) */
    size_t      bytes;                  /* field bytes in the entry */
    char        reason[PMX_QUEUE_REASON_MAX];  /* kind != OK: the rejection detail */

    /* ---- private to queue/ ---- */
    struct {
        struct pmx_queue_consumer *c;
        struct pmx__queue_ws      *ws;
        pmx_queue_job_t *prev, *next;
        int       list;        /* which of the consumer's lists holds it */
        uint64_t  touched;     /* loop ms when its idle time in Redis was last reset */
        uint32_t  pending_count;
        int       done;        /* how the pipeline finished it */
        uint64_t  delay_ms;
        pmx_buf_t member;      /* the retry member, for a defer */
        char     *blob;        /* the strings */
        pmx_job_field_t *fieldv;
    } p;
};

/* The short name of a kind: "ok", "malformed", "duplicate", "poison", "unknown_workspace". */
const char *pmx_queue_job_kind_name(pmx_queue_job_kind_t kind);

/*
 * Builds a job from one entry reply (outside input). ws and stream are
 * copied. now_ms (wall clock) bounds first_ms for a first try (first_ms is the
 * entry id's time, never later than now). Returns:
 *   0  *out is a job (kind OK or MALFORMED, with deliveries = 1, batch = 0);
 *   1  the entry was deleted (its fields are nil): *out has only entry_id,
 *      for acknowledging it;
 *  -1  no usable entry id: nothing can be acknowledged; err says why.
 */
int  pmx_queue_job_from_entry(const redisReply *entry, const char *ws, const char *stream,
                              const pmx_queue_entry_limits_t *lim, uint64_t now_ms,
                              pmx_queue_job_t **out, char *err, size_t errlen);
/* Frees a job made by pmx_queue_job_from_entry (queue-internal; the pipeline
 * finishes jobs with pmx_queue_job_ack/defer/release instead). */
void pmx_queue_job_free(pmx_queue_job_t *job);

/* True for "<ms>-<seq>", each 1-20 digits. */
bool pmx_queue_entry_id_valid(const char *s, size_t n);
/* True for "msg_" + 16 lowercase base32 characters. */
bool pmx_queue_msg_id_valid(const char *s, size_t n);

/*
 * Separates internal fields from user fields. Without `_msg` every field is
 * a user field and meta->present is false. user must have room for n fields
 * (they point at the same bytes as in). Returns 0, or -1 with a reason that
 * starts with the offending field ("_attempt: not a number").
 */
int  pmx_queue_jobcodec_split(const pmx_job_field_t *in, size_t n, pmx_job_field_t *user,
                              size_t *nuser, pmx_queue_jobmeta_t *meta, char *err, size_t errlen);

/*
 * Appends the retry member of a job: its user fields (any "_" field skipped)
 * and _msg, _attempt, _first, and _source when source is "smtp". Returns 0, or -1 (out untouched) when msg_id is
 * not a valid message id, attempt is 0 or over PMX_QUEUE_MAX_ATTEMPT.
 */
int  pmx_queue_jobcodec_encode(const pmx_job_field_t *fields, size_t n, const char *msg_id,
                               uint32_t attempt, uint64_t first_ms, const char *source,
                               pmx_buf_t *out);

/*
 * Parses a retry member back into fields (internal ones included; split
 * them with pmx_queue_jobcodec_split). Names and values point into m (not
 * NUL-terminated). fields has room for max; *n gets the count. Returns 0, or
 * -1 with a reason (bad magic, bad length, truncated, odd item count, more
 * than max fields).
 */
int  pmx_queue_jobcodec_decode(const char *m, size_t len, pmx_job_field_t *fields, size_t max,
                               size_t *n, char *err, size_t errlen);

#endif
