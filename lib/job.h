/*
 * A send job (docs/queue.md): decoding and validation of the string fields of one
 * stream entry (or of `postmux send`'s options) into a pmx_job_t. One function
 * decides what a valid job is, for every room: the CLI checks with it before
 * XADD, the worker decodes with it before building the message.
 */
#ifndef PMX_LIB_JOB_H
#define PMX_LIB_JOB_H
#include <stdbool.h>
#include <stddef.h>

#include "lib/addr.h"

#define PMX_JOB_MAX_RECIPIENTS 1000
#define PMX_JOB_MAX_METADATA   4096
#define PMX_JOB_MAX_CATEGORY   64
#define PMX_JOB_MAX_HEADERS    100   /* header:<Name> fields per job */
#define PMX_JOB_MAX_LIST_BYTES (1024 * 1024)  /* one to/cc/bcc value */

typedef struct {
    const char *name;  size_t name_len;
    const char *value; size_t value_len;
} pmx_job_field_t;

typedef struct {
    char *name;        /* as given after "header:" */
    char *value;
} pmx_header_t;

typedef struct {
    pmx_addr_t      from;
    pmx_addr_list_t to, cc, bcc;     /* cc/bcc may be empty (n == 0) */
    pmx_addr_t     *reply_to;        /* NULL when absent */
    char           *subject;         /* UTF-8; NULL for raw jobs */
    char           *text;  size_t text_len;   /* NULL when absent */
    char           *html;  size_t html_len;
    pmx_header_t   *headers; size_t nheaders; /* header:<Name> fields, in order */
    char           *raw;   size_t raw_len;    /* NULL unless a raw job */
    char           *client_id;       /* the "id" field, or NULL */
    char           *metadata;        /* or NULL */
    char           *category;        /* [a-z0-9_.-]{1,64}, or NULL: the scope of an unsubscribe */
    bool            unsubscribe;     /* "unsubscribe" = yes: List-Unsubscribe per recipient */
} pmx_job_t;

/*
 * Decodes and validates the fields of one job. max_message_size bounds the
 * message (raw, or the sum of the parts). On a bad job returns -1 and writes a
 * reason that starts with the field's name, e.g. "from: missing",
 * "header:X-Foo: contains CR or LF", "to: more than 1000 recipients".
 */
int  pmx_job_decode(const pmx_job_field_t *fields, size_t nfields, size_t max_message_size,
                    pmx_job_t *out, char *err, size_t errlen);
/*
 * Checks the fields exactly as pmx_job_decode does, keeping nothing: a big
 * raw value is not copied (SMTP submission checks a message it already
 * holds). Returns 0, or -1 with the same reasons.
 */
int  pmx_job_check(const pmx_job_field_t *fields, size_t nfields, size_t max_message_size,
                   char *err, size_t errlen);
/* A job category, or a suppression scope other than '*': 1 to
 * PMX_JOB_MAX_CATEGORY of a-z, 0-9, '_', '.', '-' (docs/feedback.md). */
bool pmx_job_category_valid(const char *s, size_t n);

/* Number of envelope recipients (to + cc + bcc). */
size_t pmx_job_recipient_count(const pmx_job_t *job);
void pmx_job_free(pmx_job_t *job);

#endif
