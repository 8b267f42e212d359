/*
 * SMTP replies (RFC 5321 §4.2, RFC 3463, RFC 2034): the one parser for what an
 * SMTP server says, and the one formatter for what postmux's own server says.
 * The relay client parses every reply with pmx_smtp_reply_parse and the EHLO
 * reply with pmx_smtp_ehlo_parse; the submission server writes its replies with
 * pmx_smtp_reply_format, so the syntax lives in one place.
 *
 * A reply comes from the network and is hostile: the parser never reads past
 * the input it is given, caps line length and line count, insists that every
 * line of a multi-line reply carries the same code, and sanitises the text it
 * keeps (control bytes and invalid UTF-8 become '?') so the text can go into a
 * log line or a Postgres text column as it is.
 */
#ifndef PMX_SMTP_REPLY_H
#define PMX_SMTP_REPLY_H
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

/* RFC 5321 allows 512 octets per reply line; real servers exceed it a little. */
#define PMX_SMTP_REPLY_LINE_MAX  4096   /* octets per line, CRLF included */
#define PMX_SMTP_REPLY_LINES_MAX 128    /* lines per reply */

/* Errors of pmx_smtp_reply_parse (negative; the session cannot continue). */
#define PMX_SMTP_REPLY_EBADCODE  (-1)   /* a line does not start with a valid 3-digit code */
#define PMX_SMTP_REPLY_EBADSEP   (-2)   /* the code is followed by neither ' ', '-' nor CRLF */
#define PMX_SMTP_REPLY_EMISMATCH (-3)   /* a continuation line carries another code */
#define PMX_SMTP_REPLY_ETOOLONG  (-4)   /* a line longer than PMX_SMTP_REPLY_LINE_MAX */
#define PMX_SMTP_REPLY_ETOOMANY  (-5)   /* more than PMX_SMTP_REPLY_LINES_MAX lines */

typedef struct {
    int       code;          /* 200..599 (first digit 2-5, second 0-5) */
    char      enhanced[16];  /* "5.1.1" when the first line carries an RFC 3463
                                code whose class matches the reply, else "" */
    pmx_buf_t text;          /* every line as sent (code included) without its
                                line ending, joined by '\n', sanitised */
    size_t    nlines;
} pmx_smtp_reply_t;

/* The reply keeps its text buffer across parses: init once, free once. */
void pmx_smtp_reply_init(pmx_smtp_reply_t *r);
void pmx_smtp_reply_free(pmx_smtp_reply_t *r);

/*
 * Parses one reply at the start of in[0..n). A line ends at LF; a CR just
 * before it is dropped (so "250 ok\n" is accepted too). Returns
 *   1  a whole reply is in *r and *used is the number of bytes it spans,
 *   0  the input holds only part of a reply (*r is garbage; *used is 0),
 *  <0  a PMX_SMTP_REPLY_E* error: the input can never become a valid reply.
 * Lines longer than PMX_SMTP_REPLY_LINE_MAX are an error even when they are
 * still incomplete, so a caller that buffers input stays bounded.
 */
int  pmx_smtp_reply_parse(pmx_smtp_reply_t *r, const char *in, size_t n, size_t *used);
/* A short English description of a PMX_SMTP_REPLY_E* code. */
const char *pmx_smtp_reply_strerror(int err);

/*
 * Appends a reply to out: one line per '\n'-separated line of text, "CODE-"
 * on all but the last and "CODE " on the last, each followed by the enhanced
 * code when one is given (NULL or "" for none), CRLF-terminated. CR bytes in
 * text are dropped, so text can never end the reply early.
 */
void pmx_smtp_reply_format(pmx_buf_t *out, int code, const char *enhanced, const char *text);

/* ESMTP extensions an EHLO reply may announce. */
#define PMX_SMTP_EXT_PIPELINING   (1u << 0)
#define PMX_SMTP_EXT_SIZE         (1u << 1)
#define PMX_SMTP_EXT_8BITMIME     (1u << 2)
#define PMX_SMTP_EXT_SMTPUTF8     (1u << 3)
#define PMX_SMTP_EXT_STARTTLS     (1u << 4)
#define PMX_SMTP_EXT_AUTH         (1u << 5)
#define PMX_SMTP_EXT_ENHANCED     (1u << 6)   /* ENHANCEDSTATUSCODES */
#define PMX_SMTP_EXT_DSN          (1u << 7)
#define PMX_SMTP_EXT_CHUNKING     (1u << 8)

/* SASL mechanisms postmux can use. */
#define PMX_SMTP_AUTH_PLAIN       (1u << 0)
#define PMX_SMTP_AUTH_LOGIN       (1u << 1)

typedef struct {
    unsigned ext;        /* PMX_SMTP_EXT_* */
    unsigned auth;       /* PMX_SMTP_AUTH_* among the AUTH mechanisms offered */
    uint64_t size_max;   /* SIZE's limit in octets; 0 = none announced (or "SIZE 0") */
} pmx_smtp_ehlo_t;

/*
 * Reads the keywords of a 250 reply to EHLO (every line after the first),
 * case-insensitively; unknown keywords are ignored, as are malformed SIZE
 * values. "AUTH=PLAIN" (the pre-standard form) counts as AUTH too.
 */
void pmx_smtp_ehlo_parse(const pmx_smtp_reply_t *r, pmx_smtp_ehlo_t *out);

#endif
