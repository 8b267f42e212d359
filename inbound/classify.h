/*
 * The bounce classifier (docs/feedback.md, "Classes"): one function for
 * the relay's own 4xx/5xx replies (reply code, enhanced status code, text — the
 * delivery pipeline, synchronously) and for the Status / Diagnostic-Code of a
 * returned report (inbound/report.h, asynchronously). Both must name the same
 * class for the same words, so both go through pmx_fb_classify().
 *
 * The rules are data, not code: inbound/bounce-rules.conf (its own header
 * documents the syntax) is compiled into the binary and installed under
 * $(PREFIX)/share/postmux/; a copy can replace it. A rule set is compiled once
 * (patterns lower-cased, white space normalised, indexed by their first two
 * bytes) and is then read-only: any number of threads or calls may share it.
 *
 * Precedence: a text rule that matches wins (the first written, if several);
 * else the enhanced status code — the one given, or, when that is missing or
 * says nothing (X.0.0), one written in the text — by its most specific
 * [status] line; else the reply code by its [code] line; else "other".
 *
 * Errors: functions that can fail return 0 or -1 with a one-line reason in err
 * ("LINE N: ..." for a rules text). Nothing here logs or does I/O except
 * pmx_fb_rules_load_file, which reads one file.
 */
#ifndef PMX_INBOUND_CLASSIFY_H
#define PMX_INBOUND_CLASSIFY_H
#include <stdbool.h>
#include <stddef.h>

typedef enum {
    PMX_FB_CLASS_NONE = 0,          /* no failure to classify (e.g. delivered) */
    PMX_FB_CLASS_USER_UNKNOWN,      /* hard */
    PMX_FB_CLASS_DOMAIN_UNKNOWN,    /* hard */
    PMX_FB_CLASS_HAS_MOVED,         /* hard */
    PMX_FB_CLASS_MAILBOX_FULL,
    PMX_FB_CLASS_MESSAGE_TOO_BIG,
    PMX_FB_CLASS_CONTENT_REJECTED,
    PMX_FB_CLASS_POLICY,
    PMX_FB_CLASS_RATE_LIMITED,
    PMX_FB_CLASS_NETWORK,
    PMX_FB_CLASS_EXPIRED,
    PMX_FB_CLASS_SYSTEM,
    PMX_FB_CLASS_OTHER,
    PMX_FB_CLASS_COUNT
} pmx_fb_class_t;

/* "user_unknown", ...; "" for PMX_FB_CLASS_NONE. */
const char *pmx_fb_class_name(pmx_fb_class_t c);
/* The class named s[0..n), or PMX_FB_CLASS_NONE when s names none. */
pmx_fb_class_t pmx_fb_class_parse(const char *s, size_t n);
/* True for the three classes where resending can never succeed. */
bool pmx_fb_class_is_hard(pmx_fb_class_t c);

/* A compiled rule set; opaque, read-only once built. */
typedef struct pmx_fb_rules pmx_fb_rules_t;

/* The rules text compiled into the binary (inbound/bounce-rules.conf). */
extern const char   pmx_fb_rules_builtin_text[];
extern const size_t pmx_fb_rules_builtin_len;

/* Compiles a rules text; *out is freed with pmx_fb_rules_free. */
int pmx_fb_rules_compile(const char *text, size_t n, pmx_fb_rules_t **out, char *err,
                         size_t errlen);
/* Compiles the built-in rules (cannot fail: the build checks them). */
pmx_fb_rules_t *pmx_fb_rules_builtin(void);
/* postmuxd's rules: PMX_SHAREDIR/bounce-rules.conf when readable and valid (an
 * invalid one is logged), else the compiled-in ones (inbound/rules_installed.c). */
pmx_fb_rules_t *pmx_fb_rules_installed(void);
/* Reads and compiles PATH (at most 1 MiB); err says "PATH: ..." on failure. */
int pmx_fb_rules_load_file(const char *path, pmx_fb_rules_t **out, char *err, size_t errlen);
void pmx_fb_rules_free(pmx_fb_rules_t *r);
/* Number of rules of each kind, for tests and `--rules` diagnostics. */
void pmx_fb_rules_count(const pmx_fb_rules_t *r, size_t *nstatus, size_t *ncode, size_t *ntext);

/*
 * Classifies one failure. code: the three-digit reply code, or 0 when unknown.
 * status: an enhanced status code "C.S.D" (RFC 3463), or NULL / "" when none.
 * text[0..textlen): the reply text or diagnostic (any bytes; may be NULL with
 * textlen 0). Never fails: with nothing known the answer is PMX_FB_CLASS_OTHER.
 */
pmx_fb_class_t pmx_fb_classify(const pmx_fb_rules_t *r, int code, const char *status,
                               const char *text, size_t textlen);

/*
 * Finds the first enhanced status code ("5.1.1", "4.7.26") written in
 * text[0..n) as a word of its own and copies it into out (at least 12 bytes).
 * Returns true when one was found.
 */
bool pmx_fb_find_status(const char *text, size_t n, char out[12]);

#endif
