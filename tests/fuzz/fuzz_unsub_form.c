/*
 * libFuzzer target for http/unsub_form.c, the POST /u/<token> body postmux
 * parses itself (docs/http.md, "One-click unsubscribe"; HTTP itself is
 * libmicrohttpd's). The input's first line is the Content-Type header ("-" for
 * none), the rest the body. Checks: a refusal always gives a one-line printable
 * reason; an accepted body is at least as long as the name and the value
 * (each decoded byte takes an input byte), and a URL-encoded one is refused
 * once a second field is appended; the page helpers (escaping, masking) on
 * the body as text produce no markup characters and no control bytes.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/unsub_form.h"
#include "lib/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    const char *nl = memchr(in, '\n', size);
    size_t clen = nl ? (size_t)(nl - in) : size;
    char ctype[512];
    if (clen >= sizeof ctype) clen = sizeof ctype - 1;
    memcpy(ctype, in, clen);
    ctype[clen] = '\0';
    const char *body = nl ? nl + 1 : in + size;
    size_t len = size - (size_t)(body - in);
    bool has_ctype = strcmp(ctype, "-") != 0 && strlen(ctype) == clen;

    char err[200];
    memset(err, 0, sizeof err);
    pmx_unsub_form_result_t r = pmx_unsub_form_check(has_ctype ? ctype : NULL, body, len, err,
                                                     sizeof err);
    if (r == PMX_UNSUB_FORM_OK) {
        if (!has_ctype) abort();
        /* Every decoded byte of the name and the value takes at least one input byte. */
        if (len < strlen(PMX_UNSUB_FORM_NAME) + strlen(PMX_UNSUB_FORM_VALUE) + 1) abort();
        /* Exactly one field: one more makes the same body a refusal. */
        if (strncasecmp(ctype, "application/x-www-form-urlencoded", 33) == 0) {
            char *more = malloc(len + 4);
            memcpy(more, body, len);
            memcpy(more + len, "&x=y", 4);
            char e2[200];
            if (pmx_unsub_form_check(ctype, more, len + 4, e2, sizeof e2) != PMX_UNSUB_FORM_BAD)
                abort();
            free(more);
        }
    } else {
        if (r != PMX_UNSUB_FORM_BAD && r != PMX_UNSUB_FORM_MEDIA) abort();
        if (!err[0]) abort();
        for (const char *p = err; *p; p++)
            if (*p < 0x20 || *p > 0x7e) abort();
    }

    /* The page helpers on the body as a C string. */
    char *s = malloc(len + 1);
    memcpy(s, body, len);
    s[len] = '\0';
    pmx_buf_t b = PMX_BUF_INIT;
    pmx_html_escape(&b, s);
    for (size_t i = 0; i < b.len; i++) {
        unsigned char c = (unsigned char)b.data[i];
        if (c == '<' || c == '>' || c == '"' || c == '\'' || c < 0x20 || c == 0x7f) abort();
    }
    pmx_buf_reset(&b);
    pmx_unsub_mask_address(&b, s);
    if (b.len > strlen(s) + 3) abort();
    if (!memmem(b.data, b.len, "***", 3)) abort();
    pmx_buf_free(&b);
    free(s);
    return 0;
}
