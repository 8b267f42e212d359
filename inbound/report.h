/*
 * The report parser (docs/feedback.md "Reading reports"): one message
 * that came back — a bounce, a delay notice, a complaint, an auto-reply — in,
 * one pmx_fb_report_t out. Pure: bytes in, struct out, no I/O and no logging,
 * so the inbound listener, `postmux feedback parse` and the fuzzer all run the
 * same code.
 *
 * It reads RFC 3464 delivery status notifications (multipart/report;
 * report-type=delivery-status), RFC 5965 ARF complaints (report-type=
 * feedback-report), RFC 3834 auto-replies, and the plain-text bounces of the
 * common MTAs and providers (qmail, Exim, Postfix, Sendmail, Exchange / Office
 * 365, Gmail, Yahoo, ...) and Amazon SES's JSON notifications sent by email.
 * From the returned original (message/rfc822,
 * text/rfc822-headers, or the copy a plain-text bounce quotes) it takes
 * Message-ID, X-Postmux-Ref and Return-Path.
 *
 * Input from strangers: any bytes are accepted. The MIME walk goes at most
 * PMX_FB_DEPTH_MAX multiparts deep and visits at most PMX_FB_PARTS_MAX parts;
 * at most PMX_FB_RCPTS_MAX recipients are kept; a diagnostic is cut to
 * PMX_FB_DIAG_MAX octets. Every string in the result is one line of valid
 * UTF-8: invalid octets become U+FFFD, control characters and runs of white
 * space one space.
 *
 * Ownership: every string points into memory owned by the report, released by
 * pmx_fb_report_free(); the input buffer is not referenced afterwards. The
 * rules are only read (a shared pmx_fb_rules_t is fine).
 */
#ifndef PMX_INBOUND_REPORT_H
#define PMX_INBOUND_REPORT_H
#include <stdbool.h>
#include <stddef.h>

#include "inbound/classify.h"

#define PMX_FB_DEPTH_MAX    8
#define PMX_FB_PARTS_MAX    256
#define PMX_FB_RCPTS_MAX    100
#define PMX_FB_DIAG_MAX     1000

typedef enum {
    PMX_FB_KIND_UNKNOWN = 0,
    PMX_FB_KIND_BOUNCE,         /* a recipient failed */
    PMX_FB_KIND_DELAY,          /* only delays: the sender's MTA keeps trying */
    PMX_FB_KIND_COMPLAINT,      /* an ARF feedback report */
    PMX_FB_KIND_AUTO_REPLY,     /* out of office and other RFC 3834 responses */
} pmx_fb_kind_t;

typedef struct {
    const char    *address;     /* lower-cased; NULL when the report names none */
    const char    *action;      /* "failed", "delayed", "delivered", ... or NULL */
    const char    *status;      /* enhanced status "5.1.1", or NULL */
    const char    *diagnostic;  /* the remote reply / reason text, or NULL */
    pmx_fb_class_t cls;         /* PMX_FB_CLASS_NONE when nothing failed */
    bool           hard;        /* a permanent failure of a hard class */
} pmx_fb_rcpt_t;

typedef struct {
    pmx_fb_kind_t  kind;
    pmx_fb_rcpt_t  rcpts[PMX_FB_RCPTS_MAX];
    size_t         nrcpts;
    const char    *feedback_type;   /* ARF Feedback-Type, lower-cased, or NULL */
    /* The returned original message (NULL when not found). */
    const char    *message_id;      /* without the angle brackets */
    const char    *ref;             /* X-Postmux-Ref, else the b-<token> of the return path */
    const char    *return_path;     /* the address, without angle brackets */
    void          *arena;           /* owns every string above */
} pmx_fb_report_t;

/* "bounce", "delay", "complaint", "auto_reply", "unknown". */
const char *pmx_fb_kind_name(pmx_fb_kind_t k);

/*
 * Parses msg[0..n) into *out (which needs no initialisation). Never fails on
 * bad input — what cannot be read is kind "unknown" — and so returns nothing;
 * the caller releases *out with pmx_fb_report_free.
 */
void pmx_fb_report_parse(const pmx_fb_rules_t *rules, const char *msg, size_t n,
                         pmx_fb_report_t *out);
void pmx_fb_report_free(pmx_fb_report_t *r);

#endif
