/*
 * libFuzzer target for http/email.c, the request input postmux parses itself on
 * the public listener (the HTTP protocol is libmicrohttpd's). The input is a
 * POST /v1/emails body; when its first line starts with "idem:", the rest of
 * that line is the Idempotency-Key and the body follows it. Checks: a body
 * that converts gives fields lib/job.h accepts again on their own; an accepted
 * email has no CR or LF in any header:* field or the subject, no field name
 * starting with '_', and its Idempotency-Key as the id field; a refused one
 * names a field that is printable ASCII.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/email.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    size_t len = size;
    char idem[256];
    const char *idp = NULL;
    if (size > 5 && memcmp(data, "idem:", 5) == 0) {
        const char *nl = memchr(data, '\n', size);
        size_t n = nl ? (size_t)(nl - body) - 5 : size - 5;
        if (n >= sizeof idem) n = sizeof idem - 1;
        memcpy(idem, body + 5, n);
        idem[n] = '\0';
        if (strlen(idem) == n) idp = idem;   /* a header value has no NUL */
        body = nl ? nl + 1 : body + size;
        len = size - (size_t)(body - (const char *)data);
    }

    char err[600], field[PMX_HTTP_EMAIL_FIELD_MAX];
    json_t *doc = pmx_http_json_parse(body, len, err, sizeof err);
    if (!doc) return 0;
    const json_t *items[8];
    size_t nitems = 0;
    if (json_is_array(doc)) {
        for (size_t i = 0; i < json_array_size(doc) && nitems < 8; i++)
            items[nitems++] = json_array_get(doc, i);
    } else {
        items[nitems++] = doc;
    }
    for (size_t k = 0; k < nitems; k++) {
        pmx_http_email_t e;
        pmx_job_t job;
        if (pmx_http_email_convert(items[k], idp, 64 * 1024, &e, &job, err, sizeof err, field) < 0) {
            for (const char *p = field; *p; p++)
                if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) abort();
            if (!err[0]) abort();
            continue;
        }
        bool has_id = false;
        for (size_t i = 0; i < e.n; i++) {
            const pmx_job_field_t *f = &e.f[i];
            if (f->name_len == 0 || f->name[0] == '_') abort();
            bool line = strncmp(f->name, "header:", 7) == 0 || strcmp(f->name, "subject") == 0;
            if (line && (memchr(f->value, '\r', f->value_len) || memchr(f->value, '\n', f->value_len)))
                abort();
            if (strcmp(f->name, "id") == 0) {
                has_id = true;
                if (!idp || strcmp(f->value, idp) != 0) abort();
            }
        }
        if (!!idp != has_id) abort();
        if (!job.from.addr || job.to.n == 0) abort();
        /* The fields alone pass the job validator again (what the worker will run). */
        pmx_job_t again;
        if (pmx_job_decode(e.f, e.n, 64 * 1024, &again, err, sizeof err) < 0) abort();
        pmx_job_free(&again);
        pmx_job_free(&job);
        pmx_http_email_free(&e);
    }
    json_decref(doc);
    return 0;
}
