/*
 * Message text, one careful routine per syntax (README.md, "Dependencies"): line endings,
 * body transfer encodings, header fields (RFC 2047 encoded-words, folding,
 * display-name phrases) and SMTP DATA dot-stuffing. lib/mime.c builds
 * messages from these; smtp/ uses the dot-stuffing; nothing here logs.
 *
 * Every routine appends to a pmx_buf_t and writes CRLF line endings only.
 * Limits are RFC 5322's: header lines are folded to 78 octets where the text
 * allows it and never longer than 998; encoded-words are at most 75 octets
 * on lines of at most 76 (RFC 2047 §2).
 *
 * The one choice rule, used for bodies and for encoded-words alike: count the
 * octets quoted-printable (or Q) would have to escape; when that is at most
 * one in six, QP/Q output is no longer than base64/B, so QP/Q is used, else
 * base64/B. A body that is 7-bit with lines of at most 998 octets is sent as
 * is ("7bit").
 */
#ifndef PMX_LIB_TEXT_H
#define PMX_LIB_TEXT_H
#include <stdbool.h>
#include <stddef.h>

#include "lib/buf.h"

#define PMX_TEXT_LINE_MAX   998  /* octets per line, CRLF excluded (RFC 5322 §2.1.1) */
#define PMX_TEXT_FOLD_AT    78   /* preferred header line length */

/* ---- line endings ---- */

/* Appends s[0..n) with every bare CR and bare LF turned into CRLF (CRLF stays). */
void   pmx_text_crlf(pmx_buf_t *out, const char *s, size_t n);
/* True when s[0..n) has no bare CR and no bare LF. */
bool   pmx_text_is_crlf(const char *s, size_t n);
/* Length in octets of the longest line of CRLF text (the CRLF not counted). */
size_t pmx_text_longest_line(const char *s, size_t n);

/* ---- body transfer encodings (input: CRLF text) ---- */

typedef enum { PMX_TEXT_7BIT, PMX_TEXT_QP, PMX_TEXT_BASE64 } pmx_text_cte_t;

/* Picks the Content-Transfer-Encoding for s[0..n) by the rule at the top. */
pmx_text_cte_t pmx_text_cte_choose(const char *s, size_t n);
/* "7bit", "quoted-printable" or "base64". */
const char    *pmx_text_cte_name(pmx_text_cte_t cte);
/*
 * Quoted-printable (RFC 2045 §6.7): CRLF pairs are hard line breaks, every
 * other octet outside 33..126 (and '=') is escaped, SP/HTAB at the end of a
 * line too; soft breaks keep lines at most 76 octets.
 */
void pmx_text_qp_encode(pmx_buf_t *out, const char *s, size_t n);
/* Base64 in lines of 76 characters, each ending with CRLF. */
void pmx_text_base64_lines(pmx_buf_t *out, const void *p, size_t n);

/* ---- header fields ---- */

/*
 * A header field being written: "Name:" then words, folded before a word
 * that would take the line past 78 octets. Begin, add words, end (CRLF).
 */
typedef struct {
    pmx_buf_t *out;
    size_t     col;        /* octets on the current output line */
    size_t     line_words; /* words written on the current line */
} pmx_text_hdr_t;

void pmx_text_hdr_begin(pmx_text_hdr_t *h, pmx_buf_t *out, const char *name);
/* Appends " " + s[0..n) (an unbreakable word), folding before it when needed. */
void pmx_text_hdr_word(pmx_text_hdr_t *h, const char *s, size_t n);
/* Appends s[0..n) right after the previous word (e.g. the "," of a list). */
void pmx_text_hdr_glue(pmx_text_hdr_t *h, const char *s, size_t n);
/*
 * Appends a display name (RFC 5322 phrase): plain atoms when it is ASCII
 * atext and spaces, a quoted-string when it has specials, RFC 2047
 * encoded-words when it has non-ASCII or control octets.
 */
void pmx_text_hdr_phrase(pmx_text_hdr_t *h, const char *s, size_t n);
/*
 * Appends s[0..n) as RFC 2047 encoded-words (utf-8, Q or B by the rule at
 * the top), split on character boundaries so each word is at most 75 octets
 * and each line at most 76.
 */
void pmx_text_hdr_encoded(pmx_text_hdr_t *h, const char *s, size_t n);
void pmx_text_hdr_end(pmx_text_hdr_t *h);

/*
 * Writes a whole unstructured field "Name: value" + CRLF (Subject, extra
 * headers). Leading and trailing white space of the value is dropped. ASCII
 * text is folded at its own white space (unfolding gives the value back);
 * the value becomes encoded-words when it has non-ASCII or control octets
 * (CR and LF included, so nothing in a value can start a new field), contains
 * "=?", or has a word too long to fit in 998 octets.
 */
void pmx_text_hdr_unstructured(pmx_buf_t *out, const char *name, const char *value, size_t n);

/* ---- SMTP DATA ---- */

/*
 * Appends msg[0..n) as the body of an SMTP DATA command (RFC 5321 §4.5.2):
 * a '.' is doubled at the start of every line, the message is made to end
 * with CRLF, and the terminator ".\r\n" follows. The input should already be
 * CRLF text (it is what was signed); a bare CR or LF is still written as
 * CRLF, so no input can produce a line of "." before the terminator or a
 * line ending a server might read differently.
 */
void pmx_text_dot_stuff(pmx_buf_t *out, const char *msg, size_t n);

/*
 * The same output in pieces, without copying (for scatter/gather writes):
 * each piece is either a run of msg itself or a short constant ("." before a
 * line's leading dot, CRLF for a bare CR or LF, the terminator). Concatenated,
 * the pieces are exactly what pmx_text_dot_stuff appends.
 *   pmx_text_dot_t d; pmx_text_dot_init(&d, msg, n);
 *   while (pmx_text_dot_next(&d, &p, &len)) write(p, len);
 * msg must stay valid while pieces are used.
 */
typedef struct {
    const char *msg;
    size_t      n, i;
    bool        bol, dotted, done;
} pmx_text_dot_t;
void pmx_text_dot_init(pmx_text_dot_t *d, const char *msg, size_t n);
bool pmx_text_dot_next(pmx_text_dot_t *d, const char **p, size_t *len);
/*
 * The reverse: data[0..n) must be CRLF lines ending with the line "."; the
 * message without the terminator and without the stuffed dots is appended.
 * Returns 0, or -1 (out unchanged) when there is no terminator, something
 * follows it, or a bare CR / LF appears.
 */
int  pmx_text_dot_unstuff(pmx_buf_t *out, const char *data, size_t n);

#endif
