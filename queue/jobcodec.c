/*
 * Stream entry -> job, and the retry-member encoding; see jobcodec.h.
 *
 * One job is three allocations: the struct, the field array and one blob
 * holding every string (workspace, stream key, names, values), each copied
 * with a trailing NUL so the pipeline can use them as C strings when they
 * hold text.
 */
#include "queue/jobcodec.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/mem.h"

#define MEMBER_MAGIC     "PMXJ1\n"
#define MEMBER_MAGIC_LEN 6
#define MAX_LEN_DIGITS   10

const char *pmx_queue_job_kind_name(pmx_queue_job_kind_t kind)
{
    switch (kind) {
    case PMX_QUEUE_JOB_OK:         return "ok";
    case PMX_QUEUE_JOB_MALFORMED:  return "malformed";
    case PMX_QUEUE_JOB_DUPLICATE:  return "duplicate";
    case PMX_QUEUE_JOB_POISON:     return "poison";
    case PMX_QUEUE_JOB_UNKNOWN_WS: return "unknown_workspace";
    }
    return "?";
}

static bool all_digits(const char *s, size_t n, size_t max)
{
    if (n == 0 || n > max) return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return false;
    return true;
}

/* Parses 1-max decimal digits into *out; false on anything else or overflow. */
static bool parse_u64(const char *s, size_t n, size_t max, uint64_t *out)
{
    if (!all_digits(s, n, max)) return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

bool pmx_queue_entry_id_valid(const char *s, size_t n)
{
    if (!s || n == 0 || n >= PMX_QUEUE_ENTRY_ID_MAX) return false;
    const char *dash = memchr(s, '-', n);
    if (!dash) return false;
    size_t a = (size_t)(dash - s);
    return all_digits(s, a, 20) && all_digits(dash + 1, n - a - 1, 20);
}

bool pmx_queue_msg_id_valid(const char *s, size_t n)
{
    if (!s || n != PMX_QUEUE_MSG_ID_LEN || memcmp(s, "msg_", 4) != 0) return false;
    for (size_t i = 4; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '2' && c <= '7'))) return false;
    }
    return true;
}

static bool name_is(const pmx_job_field_t *f, const char *name)
{
    size_t n = strlen(name);
    return f->name_len == n && memcmp(f->name, name, n) == 0;
}

int pmx_queue_jobcodec_split(const pmx_job_field_t *in, size_t n, pmx_job_field_t *user,
                             size_t *nuser, pmx_queue_jobmeta_t *meta, char *err, size_t errlen)
{
    memset(meta, 0, sizeof *meta);
    const pmx_job_field_t *msg = NULL, *attempt = NULL, *first = NULL, *source = NULL;
    for (size_t i = 0; i < n; i++) {
        const pmx_job_field_t *f = &in[i];
        const pmx_job_field_t **slot = name_is(f, "_msg") ? &msg
                                     : name_is(f, "_attempt") ? &attempt
                                     : name_is(f, "_first") ? &first
                                     : name_is(f, "_source") ? &source : NULL;
        if (!slot) continue;
        if (*slot) {
            snprintf(err, errlen, "%.*s: given more than once", (int)f->name_len, f->name);
            return -1;
        }
        *slot = f;
    }
    if (source) {
        bool smtp = source->value_len == 4 && memcmp(source->value, "smtp", 4) == 0;
        bool redis = source->value_len == 5 && memcmp(source->value, "redis", 5) == 0;
        if (!smtp && !redis) {
            snprintf(err, errlen, "_source: not redis or smtp");
            return -1;
        }
        meta->smtp = smtp;
    }
    if (!msg) {
        /* A first try: every field but _source is the user's (a copy when
         * user != in; writing never overtakes reading). */
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (&in[i] != source) user[k++] = in[i];
        *nuser = k;
        return 0;
    }
    if (!pmx_queue_msg_id_valid(msg->value, msg->value_len)) {
        snprintf(err, errlen, "_msg: not a message id (msg_ + 16 base32 characters)");
        return -1;
    }
    uint64_t v;
    if (!attempt) { snprintf(err, errlen, "_attempt: missing"); return -1; }
    if (!parse_u64(attempt->value, attempt->value_len, 10, &v) || v < 2 ||
        v > PMX_QUEUE_MAX_ATTEMPT) {
        snprintf(err, errlen, "_attempt: not a number from 2 to %u", PMX_QUEUE_MAX_ATTEMPT);
        return -1;
    }
    meta->attempt = (uint32_t)v;
    if (!first) { snprintf(err, errlen, "_first: missing"); return -1; }
    if (!parse_u64(first->value, first->value_len, 16, &v) || v > (UINT64_C(1) << 53)) {
        snprintf(err, errlen, "_first: not a time in milliseconds");
        return -1;
    }
    meta->first_ms = v;
    memcpy(meta->msg_id, msg->value, PMX_QUEUE_MSG_ID_LEN);
    meta->msg_id[PMX_QUEUE_MSG_ID_LEN] = '\0';
    meta->present = true;

    /* Compact in order; writing never overtakes reading, so user may be in. */
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!(in[i].name_len > 0 && in[i].name[0] == '_')) user[k++] = in[i];
    *nuser = k;
    return 0;
}

/* The `id` field's value when it is given once and is what lib/job.c accepts. */
static const char *find_client_id(const pmx_job_field_t *f, size_t n)
{
    const pmx_job_field_t *id = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!name_is(&f[i], "id")) continue;
        if (id) return NULL;
        id = &f[i];
    }
    if (!id || id->value_len == 0 || id->value_len > PMX_QUEUE_CLIENT_ID_MAX) return NULL;
    for (size_t i = 0; i < id->value_len; i++) {
        unsigned char c = (unsigned char)id->value[i];
        if (c < 0x20 || c >= 0x7f) return NULL;
    }
    return id->value;
}

static void set_malformed(pmx_queue_job_t *job, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_malformed(pmx_queue_job_t *job, const char *fmt, ...)
{
    job->kind = PMX_QUEUE_JOB_MALFORMED;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(job->reason, sizeof job->reason, fmt, ap);
    va_end(ap);
}

/* Copies the workspace and stream names (and nothing else) into a new blob. */
static void blob_names_only(pmx_queue_job_t *job, const char *ws, const char *stream)
{
    size_t wl = strlen(ws), sl = strlen(stream);
    job->p.blob = pmx_xmalloc(wl + sl + 2);
    memcpy(job->p.blob, ws, wl + 1);
    memcpy(job->p.blob + wl + 1, stream, sl + 1);
    job->ws = job->p.blob;
    job->stream = job->p.blob + wl + 1;
}

int pmx_queue_job_from_entry(const redisReply *e, const char *ws, const char *stream,
                             const pmx_queue_entry_limits_t *lim, uint64_t now_ms,
                             pmx_queue_job_t **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!e || e->type != REDIS_REPLY_ARRAY || e->elements != 2 || !e->element ||
        !e->element[0] || !e->element[1]) {
        snprintf(err, errlen, "entry: not an [id, fields] pair");
        return -1;
    }
    const redisReply *idr = e->element[0], *fr = e->element[1];
    if (idr->type != REDIS_REPLY_STRING || !pmx_queue_entry_id_valid(idr->str, idr->len)) {
        snprintf(err, errlen, "entry: the id is not a stream entry id");
        return -1;
    }

    pmx_queue_job_t *job = pmx_xcalloc(1, sizeof *job);
    memcpy(job->entry_id, idr->str, idr->len);
    job->entry_id[idr->len] = '\0';
    job->deliveries = 1;
    job->attempt = 1;
    /* first_ms: the entry id's time (when it was added), not after now. */
    uint64_t ms = now_ms;
    const char *dash = strchr(job->entry_id, '-');
    if (parse_u64(job->entry_id, (size_t)(dash - job->entry_id), 20, &ms) && ms > now_ms)
        ms = now_ms;
    job->first_ms = ms;
    *out = job;

    if (fr->type == REDIS_REPLY_NIL) {
        blob_names_only(job, ws, stream);
        return 1;
    }
    if (fr->type != REDIS_REPLY_ARRAY || (fr->elements > 0 && !fr->element)) {
        blob_names_only(job, ws, stream);
        set_malformed(job, "entry: the fields are not an array");
        return 0;
    }
    size_t items = fr->elements;
    size_t bytes = 0;
    for (size_t i = 0; i < items; i++) {
        const redisReply *it = fr->element[i];
        if (!it || it->type != REDIS_REPLY_STRING) {
            blob_names_only(job, ws, stream);
            set_malformed(job, "entry: item %zu of %zu is not a string", i + 1, items);
            return 0;
        }
        bytes += it->len;
    }
    job->bytes = bytes;
    if (items > lim->max_items) {
        blob_names_only(job, ws, stream);
        set_malformed(job, "entry: %zu field/value items, over the limit of %zu", items,
                      lim->max_items);
        return 0;
    }
    if (bytes > lim->max_bytes) {
        blob_names_only(job, ws, stream);
        set_malformed(job, "entry: %zu bytes, over the limit of %zu", bytes, lim->max_bytes);
        return 0;
    }
    if (items % 2 != 0) {
        blob_names_only(job, ws, stream);
        set_malformed(job, "entry: odd number of field/value items (%zu)", items);
        return 0;
    }
    if (items == 0) {
        blob_names_only(job, ws, stream);
        set_malformed(job, "entry: no fields");
        return 0;
    }

    /* One blob: ws, stream, then each item with a NUL after it. */
    size_t wl = strlen(ws), sl = strlen(stream);
    char *b = pmx_xmalloc(wl + sl + 2 + bytes + items);
    job->p.blob = b;
    memcpy(b, ws, wl + 1);
    job->ws = b;
    b += wl + 1;
    memcpy(b, stream, sl + 1);
    job->stream = b;
    b += sl + 1;
    size_t nf = items / 2;
    pmx_job_field_t *fv = pmx_xcalloc(nf, sizeof *fv);
    job->p.fieldv = fv;
    for (size_t i = 0; i < nf; i++) {
        const redisReply *nr = fr->element[2 * i], *vr = fr->element[2 * i + 1];
        if (nr->len) memcpy(b, nr->str, nr->len);
        b[nr->len] = '\0';
        fv[i].name = b;
        fv[i].name_len = nr->len;
        b += nr->len + 1;
        if (vr->len) memcpy(b, vr->str, vr->len);
        b[vr->len] = '\0';
        fv[i].value = b;
        fv[i].value_len = vr->len;
        b += vr->len + 1;
    }

    pmx_queue_jobmeta_t meta;
    size_t nuser = nf;
    char why[PMX_QUEUE_REASON_MAX];
    if (pmx_queue_jobcodec_split(fv, nf, fv, &nuser, &meta, why, sizeof why) < 0) {
        job->kind = PMX_QUEUE_JOB_MALFORMED;
        snprintf(job->reason, sizeof job->reason, "%s", why);
    } else if (meta.present) {
        job->flags |= PMX_QUEUE_JOB_RETRIED;
        memcpy(job->msg_id, meta.msg_id, sizeof job->msg_id);
        job->attempt = meta.attempt;
        job->first_ms = meta.first_ms;
    }
    job->source = meta.smtp ? "smtp" : "redis";
    job->fields = fv;
    job->nfields = nuser;
    job->client_id = find_client_id(fv, nuser);
    return 0;
}

void pmx_queue_job_free(pmx_queue_job_t *job)
{
    if (!job) return;
    pmx_buf_free(&job->p.member);
    free(job->p.fieldv);
    free(job->p.blob);
    free(job);
}

static void put_netstring(pmx_buf_t *out, const char *s, size_t n)
{
    pmx_buf_appendf(out, "%zu:", n);
    pmx_buf_append(out, s, n);
    pmx_buf_append_char(out, ',');
}

int pmx_queue_jobcodec_encode(const pmx_job_field_t *fields, size_t n, const char *msg_id,
                              uint32_t attempt, uint64_t first_ms, const char *source,
                              pmx_buf_t *out)
{
    if (!msg_id || !pmx_queue_msg_id_valid(msg_id, strlen(msg_id)) || attempt == 0 ||
        attempt > PMX_QUEUE_MAX_ATTEMPT)
        return -1;
    pmx_buf_append(out, MEMBER_MAGIC, MEMBER_MAGIC_LEN);
    for (size_t i = 0; i < n; i++) {
        if (fields[i].name_len > 0 && fields[i].name[0] == '_') continue;
        put_netstring(out, fields[i].name, fields[i].name_len);
        put_netstring(out, fields[i].value, fields[i].value_len);
    }
    char num[24];
    put_netstring(out, "_msg", 4);
    put_netstring(out, msg_id, strlen(msg_id));
    int k = snprintf(num, sizeof num, "%u", attempt);
    put_netstring(out, "_attempt", 8);
    put_netstring(out, num, (size_t)k);
    k = snprintf(num, sizeof num, "%llu", (unsigned long long)first_ms);
    put_netstring(out, "_first", 6);
    put_netstring(out, num, (size_t)k);
    if (source && strcmp(source, "smtp") == 0) {
        put_netstring(out, "_source", 7);
        put_netstring(out, "smtp", 4);
    }
    return 0;
}

int pmx_queue_jobcodec_decode(const char *m, size_t len, pmx_job_field_t *fields, size_t max,
                              size_t *n, char *err, size_t errlen)
{
    *n = 0;
    if (len < MEMBER_MAGIC_LEN || memcmp(m, MEMBER_MAGIC, MEMBER_MAGIC_LEN) != 0) {
        snprintf(err, errlen, "member: does not start with the PMXJ1 magic");
        return -1;
    }
    size_t pos = MEMBER_MAGIC_LEN, items = 0;
    const char *name = NULL;
    size_t name_len = 0;
    while (pos < len) {
        size_t d = 0;
        while (pos + d < len && d <= MAX_LEN_DIGITS && m[pos + d] >= '0' && m[pos + d] <= '9') d++;
        if (d == 0 || d > MAX_LEN_DIGITS || pos + d >= len || m[pos + d] != ':' ||
            (d > 1 && m[pos] == '0')) {
            snprintf(err, errlen, "member: bad length at offset %zu", pos);
            return -1;
        }
        uint64_t ilen;
        if (!parse_u64(m + pos, d, MAX_LEN_DIGITS, &ilen)) {
            snprintf(err, errlen, "member: bad length at offset %zu", pos);
            return -1;
        }
        size_t start = pos + d + 1;
        if (ilen > len - start || len - start - ilen < 1 || m[start + ilen] != ',') {
            snprintf(err, errlen, "member: item at offset %zu is truncated", pos);
            return -1;
        }
        if (items % 2 == 0) {
            name = m + start;
            name_len = (size_t)ilen;
        } else {
            if (*n >= max) {
                snprintf(err, errlen, "member: more than %zu fields", max);
                return -1;
            }
            fields[*n].name = name;
            fields[*n].name_len = name_len;
            fields[*n].value = m + start;
            fields[*n].value_len = (size_t)ilen;
            (*n)++;
        }
        items++;
        pos = start + (size_t)ilen + 1;
    }
    if (items % 2 != 0) {
        snprintf(err, errlen, "member: odd number of items (%zu)", items);
        return -1;
    }
    if (items == 0) {
        snprintf(err, errlen, "member: no fields");
        return -1;
    }
    return 0;
}
