/* JSON email object -> job fields, checked by the job validator; see email.h. */
#include "http/email.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/mem.h"

#define HEADER_PREFIX     "header:"
#define HEADER_PREFIX_LEN 7

json_t *pmx_http_json_parse(const char *body, size_t len, char *err, size_t errlen)
{
    json_error_t je;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!j) snprintf(err, errlen, "the body is not valid JSON: %s (at byte %d)", je.text, je.position);
    return j;
}

static void add(pmx_http_email_t *e, const char *name, size_t name_len, const char *value,
                size_t value_len)
{
    if (e->n == e->cap) {
        e->cap = e->cap ? e->cap * 2 : 16;
        e->f = pmx_xrealloc(e->f, e->cap * sizeof *e->f);
    }
    char *n = pmx_xstrndup(name, name_len);
    char *v = pmx_xmalloc(value_len + 1);
    memcpy(v, value, value_len);
    v[value_len] = '\0';
    e->f[e->n++] = (pmx_job_field_t){ n, name_len, v, value_len };
}

void pmx_http_email_free(pmx_http_email_t *e)
{
    for (size_t i = 0; i < e->n; i++) {
        free((char *)e->f[i].name);
        free((char *)e->f[i].value);
    }
    free(e->f);
    memset(e, 0, sizeof *e);
}

/* Writes "field" (printable ASCII, cut) and the reason; returns -1. */
static int fail(char *err, size_t errlen, char field[PMX_HTTP_EMAIL_FIELD_MAX], const char *prefix,
                const char *name, size_t name_len, const char *reason)
{
    pmx_buf_t b = PMX_BUF_INIT;
    pmx_buf_append_str(&b, prefix);
    for (size_t i = 0; i < name_len && b.len < PMX_HTTP_EMAIL_FIELD_MAX - 8; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c > 0x20 && c < 0x7f) pmx_buf_append_char(&b, (char)c);
        else pmx_buf_appendf(&b, "\\x%02x", c);
    }
    snprintf(field, PMX_HTTP_EMAIL_FIELD_MAX, "%s", pmx_buf_cstr(&b));
    snprintf(err, errlen, "%s: %s", pmx_buf_cstr(&b), reason);
    pmx_buf_free(&b);
    return -1;
}

static bool is_list_field(const char *k)
{
    return strcmp(k, "to") == 0 || strcmp(k, "cc") == 0 || strcmp(k, "bcc") == 0;
}

/* One member of the email object. */
static int convert_member(pmx_http_email_t *e, const char *k, size_t klen, const json_t *v,
                          char *err, size_t errlen, char field[PMX_HTTP_EMAIL_FIELD_MAX])
{
    if (strlen(k) != klen) return fail(err, errlen, field, "", k, klen, "unknown field");
    if (strcmp(k, "id") == 0)
        return fail(err, errlen, field, "", k, klen,
                    "send the idempotency key in the Idempotency-Key header");
    if (klen == 0 || k[0] == '_' || memchr(k, ':', klen))
        return fail(err, errlen, field, "", k, klen, "unknown field");

    if (strcmp(k, "headers") == 0) {
        if (!json_is_object(v)) return fail(err, errlen, field, "", k, klen, "must be an object");
        const char *hn;
        json_t *hv;
        json_object_foreach((json_t *)v, hn, hv) {
            size_t hnlen = strlen(hn);
            if (!json_is_string(hv))
                return fail(err, errlen, field, "headers.", hn, hnlen, "must be a string");
            pmx_buf_t name = PMX_BUF_INIT;
            pmx_buf_append_str(&name, HEADER_PREFIX);
            pmx_buf_append(&name, hn, hnlen);
            add(e, name.data, name.len, json_string_value(hv), json_string_length(hv));
            pmx_buf_free(&name);
        }
        return 0;
    }
    if (json_is_string(v)) {
        add(e, k, klen, json_string_value(v), json_string_length(v));
        return 0;
    }
    if (json_is_boolean(v)) {
        add(e, k, klen, json_is_true(v) ? "yes" : "no", json_is_true(v) ? 3 : 2);
        return 0;
    }
    if (json_is_array(v) && is_list_field(k)) {
        size_t n = json_array_size(v);
        if (n > PMX_JOB_MAX_RECIPIENTS)
            return fail(err, errlen, field, "", k, klen, "more than 1000 recipients");
        pmx_buf_t list = PMX_BUF_INIT;
        for (size_t i = 0; i < n; i++) {
            const json_t *a = json_array_get(v, i);
            if (!json_is_string(a) || json_string_length(a) == 0) {
                pmx_buf_free(&list);
                return fail(err, errlen, field, "", k, klen,
                            "every element must be a non-empty string");
            }
            if (i) pmx_buf_append_str(&list, ", ");
            pmx_buf_append(&list, json_string_value(a), json_string_length(a));
        }
        if (n) add(e, k, klen, list.data, list.len);
        pmx_buf_free(&list);
        return 0;
    }
    return fail(err, errlen, field, "", k, klen,
                is_list_field(k) ? "must be a string or an array of strings" : "must be a string");
}

/* The JSON name of the field a job validator reason starts with ("NAME: ..."). */
static void field_of(const char *reason, char field[PMX_HTTP_EMAIL_FIELD_MAX])
{
    static const char unknown[] = "unknown field '";
    if (strncmp(reason, unknown, sizeof unknown - 1) == 0) {
        const char *name = reason + sizeof unknown - 1, *end = strchr(name, '\'');
        snprintf(field, PMX_HTTP_EMAIL_FIELD_MAX, "%.*s", (int)(end ? end - name : 0), name);
        return;
    }
    const char *sep = strstr(reason, ": ");
    size_t n = sep ? (size_t)(sep - reason) : 0;
    if (n >= HEADER_PREFIX_LEN && strncmp(reason, HEADER_PREFIX, HEADER_PREFIX_LEN) == 0)
        snprintf(field, PMX_HTTP_EMAIL_FIELD_MAX, "headers.%.*s", (int)(n - HEADER_PREFIX_LEN),
                 reason + HEADER_PREFIX_LEN);
    else if (n == 2 && strncmp(reason, "id", 2) == 0)
        snprintf(field, PMX_HTTP_EMAIL_FIELD_MAX, "Idempotency-Key");
    else
        snprintf(field, PMX_HTTP_EMAIL_FIELD_MAX, "%.*s", (int)n, reason);
}

int pmx_http_email_convert(const json_t *obj, const char *idem, size_t max_message_size,
                           pmx_http_email_t *out, pmx_job_t *job, char *err, size_t errlen,
                           char field[PMX_HTTP_EMAIL_FIELD_MAX])
{
    memset(out, 0, sizeof *out);
    field[0] = '\0';
    if (!json_is_object(obj)) {
        snprintf(err, errlen, "an email must be a JSON object");
        return -1;
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v) {
        if (convert_member(out, k, strlen(k), v, err, errlen, field) < 0) {
            pmx_http_email_free(out);
            return -1;
        }
    }
    if (idem) add(out, "id", 2, idem, strlen(idem));

    pmx_job_t j;
    char why[512];
    if (pmx_job_decode(out->f, out->n, max_message_size, &j, why, sizeof why) < 0) {
        field_of(why, field);
        /* The validator's reason with the JSON field name in front. */
        const char *sep = strstr(why, ": ");
        if (strncmp(why, "unknown field", 13) == 0) snprintf(err, errlen, "%s", why);
        else snprintf(err, errlen, "%s: %s", field[0] ? field : "email", sep ? sep + 2 : why);
        pmx_http_email_free(out);
        return -1;
    }
    if (job) *job = j;
    else pmx_job_free(&j);
    return 0;
}
