/*
 * libFuzzer target for inbound/report.c and inbound/classify.c: any bytes are a
 * report from a stranger. Whatever comes out must keep the parser's promises
 * (inbound/report.h): a known kind, at most PMX_FB_RCPTS_MAX recipients, every
 * string one line of valid UTF-8 (no control characters, no leading or trailing
 * space), a diagnostic within PMX_FB_DIAG_MAX, addresses lower-case with an
 * '@', a class only for failed or delayed recipients and "hard" only with a
 * hard class. The same input also goes through the classifier as an SMTP reply
 * text, and through the rules compiler (which must either refuse it or give a
 * rule set that classifies without crashing).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "inbound/report.h"
#include "lib/utf8.h"

static pmx_fb_rules_t *rules;

static void check_str(const char *s, size_t max)
{
    if (!s) return;
    size_t n = strlen(s);
    if (n == 0 || n > max) abort();
    if (!pmx_utf8_valid(s, n)) abort();
    if (s[0] == ' ' || s[n - 1] == ' ') abort();
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) abort();
        if (c == ' ' && s[i + 1] == ' ') abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!rules && !(rules = pmx_fb_rules_builtin())) abort();
    const char *in = (const char *)data;
    pmx_fb_report_t r;
    pmx_fb_report_parse(rules, in, size, &r);
    if (r.kind > PMX_FB_KIND_AUTO_REPLY || r.nrcpts > PMX_FB_RCPTS_MAX) abort();
    if (strcmp(pmx_fb_kind_name(r.kind), "unknown") == 0 && r.kind != PMX_FB_KIND_UNKNOWN) abort();
    for (size_t i = 0; i < r.nrcpts; i++) {
        const pmx_fb_rcpt_t *rc = &r.rcpts[i];
        check_str(rc->address, 254);
        if (rc->address) {
            if (!strchr(rc->address, '@')) abort();
            for (const char *p = rc->address; *p; p++)
                if (*p >= 'A' && *p <= 'Z') abort();
        }
        check_str(rc->action, 32);
        check_str(rc->status, 11);
        check_str(rc->diagnostic, PMX_FB_DIAG_MAX);
        bool failing = rc->action && (!strcmp(rc->action, "failed") || !strcmp(rc->action, "delayed"));
        if ((rc->cls != PMX_FB_CLASS_NONE) != failing) abort();
        if (rc->cls >= PMX_FB_CLASS_COUNT) abort();
        if (rc->hard && (!pmx_fb_class_is_hard(rc->cls) || strcmp(rc->action, "failed") != 0)) abort();
    }
    check_str(r.feedback_type, 32);
    check_str(r.message_id, 998);
    check_str(r.ref, 64);
    check_str(r.return_path, 254);
    pmx_fb_report_free(&r);

    /* The same bytes as an SMTP reply's text, with and without a status. */
    pmx_fb_class_t c = pmx_fb_classify(rules, 550, NULL, in, size);
    if (c == PMX_FB_CLASS_NONE || c >= PMX_FB_CLASS_COUNT) abort();
    c = pmx_fb_classify(rules, 0, size > 5 ? "5.1.1" : "", in, size);
    if (c == PMX_FB_CLASS_NONE || c >= PMX_FB_CLASS_COUNT) abort();

    /* And as a rules file. */
    pmx_fb_rules_t *custom = NULL;
    char err[256];
    if (pmx_fb_rules_compile(in, size, &custom, err, sizeof err) == 0) {
        c = pmx_fb_classify(custom, 451, "4.2.2", in, size);
        if (c == PMX_FB_CLASS_NONE || c >= PMX_FB_CLASS_COUNT) abort();
        pmx_fb_rules_free(custom);
    } else if (custom || strncmp(err, "line ", 5) != 0) {
        abort();
    }
    return 0;
}
