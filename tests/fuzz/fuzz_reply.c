/*
 * libFuzzer target for smtp/reply.c: the input is read as a stream of
 * replies, the way the relay client reads its socket. Whatever is accepted must
 * keep the parser's promises: a code in 200-559, sanitised UTF-8 text whose
 * lines each start with that code, a line count within the cap, an enhanced
 * code of the right shape and class, a prefix of a complete reply that is
 * "need more" (never an error), and a formatted copy that parses back the same.
 * The EHLO keyword reader runs on every reply.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/utf8.h"
#include "smtp/reply.h"

static void check_reply(const pmx_smtp_reply_t *r)
{
    if (r->code < 200 || r->code > 559 || r->code % 100 > 59) abort();
    if (r->nlines == 0 || r->nlines > PMX_SMTP_REPLY_LINES_MAX) abort();
    const char *t = r->text.data;
    if (!t || strlen(t) != r->text.len) abort();
    if (!pmx_utf8_valid(t, r->text.len)) abort();
    size_t lines = 1;
    for (size_t i = 0; i < r->text.len; i++) {
        unsigned char c = (unsigned char)t[i];
        if (c == '\n') lines++;
        else if (c < 0x20 || c == 0x7f) abort();
    }
    if (lines != r->nlines) abort();
    char code[4];
    code[0] = (char)('0' + r->code / 100);
    code[1] = (char)('0' + r->code / 10 % 10);
    code[2] = (char)('0' + r->code % 10);
    code[3] = '\0';
    for (const char *line = t; line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        if (strncmp(line, code, 3) != 0) abort();
    size_t e = strlen(r->enhanced);
    if (e) {
        if (e < 5 || r->enhanced[0] != code[0] || r->enhanced[1] != '.') abort();
        if (strncmp(t + 4, r->enhanced, e) != 0) abort();
    }
}

/* Formats the reply's text (as new text) and checks that it parses back. */
static void check_round_trip(const pmx_smtp_reply_t *r)
{
    pmx_buf_t out = PMX_BUF_INIT;
    pmx_smtp_reply_format(&out, r->code, r->enhanced, r->text.data);
    pmx_smtp_reply_t back;
    pmx_smtp_reply_init(&back);
    size_t used = 0;
    int rc = pmx_smtp_reply_parse(&back, out.data, out.len, &used);
    /* Formatting may lengthen lines past the cap (code + enhanced code added). */
    if (rc == 1) {
        if (used != out.len || back.code != r->code || back.nlines != r->nlines) abort();
        if (strcmp(back.enhanced, r->enhanced) != 0) abort();
    } else if (rc != PMX_SMTP_REPLY_ETOOLONG) {
        abort();
    }
    pmx_smtp_reply_free(&back);
    pmx_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    pmx_smtp_reply_t r, again;
    pmx_smtp_reply_init(&r);
    pmx_smtp_reply_init(&again);
    size_t off = 0;
    while (off <= size) {
        size_t used = 12345;
        int rc = pmx_smtp_reply_parse(&r, in + off, size - off, &used);
        if (rc == 0) {
            if (used != 0) abort();
            break;
        }
        if (rc < 0) {
            if (rc < PMX_SMTP_REPLY_ETOOMANY || !pmx_smtp_reply_strerror(rc)[0]) abort();
            break;
        }
        if (rc != 1 || used == 0 || used > size - off) abort();
        check_reply(&r);
        pmx_smtp_ehlo_t ehlo;
        pmx_smtp_ehlo_parse(&r, &ehlo);
        if ((ehlo.auth && !(ehlo.ext & PMX_SMTP_EXT_AUTH))
            || (ehlo.size_max && !(ehlo.ext & PMX_SMTP_EXT_SIZE))) abort();
        /* The reply alone parses the same; a strict prefix of it needs more input. */
        size_t u2;
        if (pmx_smtp_reply_parse(&again, in + off, used, &u2) != 1 || u2 != used
            || strcmp(again.text.data, r.text.data) != 0)
            abort();
        if (pmx_smtp_reply_parse(&again, in + off, used - 1, &u2) != 0) abort();
        if (pmx_smtp_reply_parse(&again, in + off, used / 2, &u2) != 0) abort();
        check_round_trip(&r);
        off += used;
    }
    pmx_smtp_reply_free(&r);
    pmx_smtp_reply_free(&again);
    return 0;
}
