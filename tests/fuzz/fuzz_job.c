/*
 * libFuzzer target for lib/job.c. The input is split on NUL bytes into
 * alternating field names and values (so "from\0a@b\0to\0c@d\0..."); a '\x01'
 * byte inside a value stands for a NUL, so values can still carry one. An
 * accepted job must obey docs/queue.md: no CR/LF in the subject or header values,
 * at most 1000 recipients, metadata within 4 KiB, raw exclusive.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/job.h"

#define MAX_FIELDS 256

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    memcpy(buf, data, size);
    buf[size] = '\0';

    pmx_job_field_t f[MAX_FIELDS];
    size_t nf = 0, start = 0;
    const char *name = NULL;
    size_t name_len = 0;
    for (size_t i = 0; i <= size && nf < MAX_FIELDS; i++) {
        if (i < size && buf[i] != '\0') continue;
        if (!name) {
            name = buf + start;
            name_len = i - start;
        } else {
            for (size_t k = start; k < i; k++)
                if (buf[k] == '\x01') buf[k] = '\0';
            f[nf].name = name;
            f[nf].name_len = name_len;
            f[nf].value = buf + start;
            f[nf].value_len = i - start;
            nf++;
            name = NULL;
        }
        start = i + 1;
    }

    pmx_job_t j;
    char err[512];
    if (pmx_job_decode(f, nf, 4096, &j, err, sizeof err) == 0) {
        if (!j.from.addr || j.to.n == 0) abort();
        if (pmx_job_recipient_count(&j) > PMX_JOB_MAX_RECIPIENTS) abort();
        if (j.raw && (j.subject || j.text || j.html || j.nheaders)) abort();
        if (!j.raw && (!j.subject || (!j.text && !j.html))) abort();
        if (j.subject && strpbrk(j.subject, "\r\n")) abort();
        for (size_t i = 0; i < j.nheaders; i++)
            if (strpbrk(j.headers[i].value, "\r\n") || strchr(j.headers[i].name, ':')) abort();
        if (j.metadata && strlen(j.metadata) > PMX_JOB_MAX_METADATA) abort();
        if (j.client_id && strlen(j.client_id) > 200) abort();
        pmx_job_free(&j);
    } else if (strpbrk(err, "\r\n")) {
        abort();
    }
    free(buf);
    return 0;
}
