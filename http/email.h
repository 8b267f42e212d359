/*
 * POST /v1/emails bodies (docs/http.md): one JSON email object becomes
 * the string fields of a send job (docs/queue.md), which lib/job.h's
 * pmx_job_decode then checks exactly as it checks a job XADDed to Redis. No
 * I/O: the API (http/api.c) and the fuzz target tests/fuzz/fuzz_http_email.c
 * share it.
 *
 * Conversion: a string value is the field as is; `to`/`cc`/`bcc` may also be
 * an array of strings (joined with ", "; an empty array is the field left
 * out); `headers` is an object of strings, each one a `header:<Name>` field; a
 * boolean is "yes"/"no" (flags such as `unsubscribe`); the Idempotency-Key
 * header is the `id` field. Refused with 422: any other JSON type, an `id`
 * member (the header carries it), names with ':' or starting with '_' (the
 * internal fields of a stream entry are not for clients), and whatever the job
 * validator refuses. Field names in errors are the JSON ones: `headers.X-Foo`
 * for `header:X-Foo`, `Idempotency-Key` for `id`.
 *
 * Everything in pmx_http_email_t is owned by it; fields stay valid until
 * pmx_http_email_free.
 */
#ifndef PMX_HTTP_EMAIL_H
#define PMX_HTTP_EMAIL_H
#include <stddef.h>

#include <jansson.h>

#include "lib/job.h"

#define PMX_HTTP_EMAIL_FIELD_MAX 128   /* a field name in an error, with its prefix */

typedef struct {
    pmx_job_field_t *f;
    size_t           n, cap;
} pmx_http_email_t;

/*
 * Parses a request body as JSON (UTF-8, no duplicate members, no NUL in
 * strings). NULL with a reason in err when it is not; the caller answers 400.
 */
json_t *pmx_http_json_parse(const char *body, size_t len, char *err, size_t errlen);

/*
 * Converts one email object and checks it with pmx_job_decode (bounded by
 * max_message_size). idem is the Idempotency-Key (NULL = none). Returns 0 with
 * out filled (and *job decoded when job is not NULL; free it with
 * pmx_job_free), or -1 with a reason in err and the JSON field it concerns in
 * field ("" when the item as a whole is wrong); out is then empty.
 */
int  pmx_http_email_convert(const json_t *obj, const char *idem, size_t max_message_size,
                            pmx_http_email_t *out, pmx_job_t *job, char *err, size_t errlen,
                            char field[PMX_HTTP_EMAIL_FIELD_MAX]);
void pmx_http_email_free(pmx_http_email_t *e);

#endif
