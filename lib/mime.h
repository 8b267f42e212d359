/*
 * The message builder (docs/delivery.md "Message build"): turns a decoded job into the
 * RFC 5322 / MIME message that is signed and relayed, and prepares `raw`
 * messages for the same path. The pipeline calls, per message:
 *
 *   composed job:  pmx_mime_build(job, &opts, &msg, err, sizeof err)
 *   raw job:       pmx_mime_prepare_raw(job->raw, job->raw_len, &opts, &msg, ...)
 *                  pmx_mime_header_from(msg.data, msg.len, &from, ...)  -> domain check
 *   then:          pmx_dkim_sign(..., msg) and pmx_text_dot_stuff(..., msg)
 *
 * Output is CRLF-only with every line at most 998 octets, so what is signed
 * is exactly what is sent. Every function appends to `out` and, on failure,
 * leaves it as it was and writes a one-line reason into err (for raw
 * messages it starts with "raw: ", matching the job field).
 *
 * Composed messages, header order: postmux's fields (opts->fields), Date,
 * From, Reply-To, To, Cc, Subject, Message-ID, the job's header:* fields,
 * MIME-Version, Content-Type, Content-Transfer-Encoding. Bcc never appears.
 * Body: text only -> text/plain, html only -> text/html, both ->
 * multipart/alternative (text first) with a boundary that occurs in neither
 * part; each part utf-8, 7bit / quoted-printable / base64 by the rule in
 * lib/text.h.
 */
#ifndef PMX_LIB_MIME_H
#define PMX_LIB_MIME_H
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "lib/addr.h"
#include "lib/buf.h"
#include "lib/job.h"

typedef struct {
    const char *name;    /* e.g. "X-Original-To" */
    const char *value;   /* unstructured text; non-ASCII is RFC 2047 encoded */
} pmx_mime_field_t;

typedef struct {
    /* Local part of the Message-ID, e.g. "msg_k3v7..." (dot-atom text, required
     * for composed jobs; for raw messages used only when they have none). */
    const char *msgid;
    /* Domain of the Message-ID; NULL = the From domain. */
    const char *msgid_domain;
    /* The Date written (composed jobs; raw messages that have none). */
    time_t      date;
    /* Fields postmux adds (test mode's X-Original-To, ...), written first, in order. */
    const pmx_mime_field_t *fields;
    size_t      nfields;
    /* Raw messages only: names of fields to drop (case-insensitive), e.g.
     * "X-Workspace-Id" from SMTP submission. Everything else stays as given. */
    const char *const *drop;
    size_t      ndrop;
    /* 0: a random multipart boundary; else a boundary derived from this (tests). */
    uint64_t    boundary_seed;
} pmx_mime_opts_t;

/*
 * Builds the message of a composed job (job->raw == NULL). Returns 0, or -1
 * with a reason naming the job field, e.g. "subject: contains CR or LF",
 * "header:From: postmux writes this field", "text/html: both missing".
 */
int pmx_mime_build(const pmx_job_t *job, const pmx_mime_opts_t *opts, pmx_buf_t *out,
                   char *err, size_t errlen);

/*
 * Prepares a raw RFC 5322 message: bare CR / bare LF become CRLF, the message
 * ends with CRLF, opts->fields are prepended, then Date and Message-ID when
 * the message has none; fields named in opts->drop are removed; the rest is
 * left as given (Bcc included: drop it with opts->drop if wanted).
 * Refused, with a reason:
 *   "raw: contains a NUL byte"
 *   "raw: line N is longer than 998 octets"             (relays refuse these)
 *   "raw: line N is not a header field"                  (nor a continuation)
 *   "raw: no empty line between header and body"
 *   "raw: no From header" / "raw: multiple From headers" / "raw: From: <why>"
 */
int pmx_mime_prepare_raw(const char *raw, size_t n, const pmx_mime_opts_t *opts,
                         pmx_buf_t *out, char *err, size_t errlen);

/*
 * The refusals of pmx_mime_prepare_raw (same reasons, same order), without
 * building anything: nothing is copied, so a big message costs no memory.
 * Returns 0 or -1 with the reason in err.
 */
int pmx_mime_check_raw(const char *raw, size_t n, char *err, size_t errlen);

/*
 * Finds the one From field of msg[0..n) (CRLF, LF or CR line endings; folded
 * fields are unfolded; "From :" counts as From) and parses its mailbox with
 * lib/addr into *out (the caller frees it with pmx_addr_free). Errors: "no
 * From header", "multiple From headers", "From: <parser's reason>" (one
 * mailbox only: comments, groups and lists are refused), "line N is not a
 * header field". Encoded-words in the display name are kept as written.
 */
int pmx_mime_header_from(const char *msg, size_t n, pmx_addr_t *out, char *err, size_t errlen);

/*
 * Counts the fields named name (case-insensitive) in the header of msg[0..n)
 * (any line endings); when value is not NULL, the first one's value, unfolded
 * and trimmed of surrounding white space, is appended to it. Returns the
 * count, or -1 with "line N is not a header field" in err. (SMTP submission's
 * X-Workspace-Id.)
 */
int pmx_mime_header_get(const char *msg, size_t n, const char *name, pmx_buf_t *value,
                        char *err, size_t errlen);
/*
 * Appends msg[0..n) to out without the header fields named name
 * (case-insensitive); every other byte is copied as it is. Returns the number
 * of fields removed, or -1 with a reason in err (out unchanged).
 */
int pmx_mime_header_remove(const char *msg, size_t n, const char *name, pmx_buf_t *out,
                           char *err, size_t errlen);

/*
 * The same in place, for a message too big to copy: the header fields named
 * name are removed from msg[0..n) by moving the header octets before each
 * one forward over it, so the message then starts at msg + *skip (n - *skip
 * octets); the body is not moved. Returns the number of fields removed, or -1
 * with a reason in err (msg unchanged, *skip 0).
 */
int pmx_mime_header_cut(char *msg, size_t n, const char *name, size_t *skip, char *err,
                        size_t errlen);

/* Appends an RFC 5322 date in UTC, e.g. "Tue, 02 Jan 2024 15:04:05 +0000". */
void pmx_mime_date(pmx_buf_t *out, time_t t);

#endif
