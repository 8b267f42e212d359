/*
 * SMTP command lines (RFC 5321 §4.1, ESMTP parameters of RFC 1869/5321
 * §4.1.2, SASL responses of RFC 4954): the one parser for what an SMTP client
 * says. The submission server (smtp/server.c) reads every command with it;
 * smtp/reply.h is its counterpart for what servers say.
 *
 * Everything here reads hostile input: nothing reads past the bytes it is
 * given, nothing allocates except the SASL decoder (into caller buffers), and
 * the results point into the caller's line (valid as long as the line is).
 */
#ifndef PMX_SMTP_COMMAND_H
#define PMX_SMTP_COMMAND_H
#include <stdbool.h>
#include <stddef.h>

#include "lib/buf.h"

/* RFC 5321 §4.5.3.1.4: a command line is at most 512 octets, CRLF included. */
#define PMX_SMTP_CMD_LINE_MAX   512
/* RFC 4954 §4: AUTH lines and SASL responses may be up to 12288 octets. */
#define PMX_SMTP_AUTH_LINE_MAX  12288
/* ESMTP parameters accepted on one MAIL or RCPT command. */
#define PMX_SMTP_PARAMS_MAX     16

typedef enum {
    PMX_SMTP_CMD_UNKNOWN = 0,
    PMX_SMTP_CMD_HELO,
    PMX_SMTP_CMD_EHLO,
    PMX_SMTP_CMD_MAIL,
    PMX_SMTP_CMD_RCPT,
    PMX_SMTP_CMD_DATA,
    PMX_SMTP_CMD_BDAT,
    PMX_SMTP_CMD_RSET,
    PMX_SMTP_CMD_NOOP,
    PMX_SMTP_CMD_QUIT,
    PMX_SMTP_CMD_HELP,
    PMX_SMTP_CMD_VRFY,
    PMX_SMTP_CMD_EXPN,
    PMX_SMTP_CMD_STARTTLS,
    PMX_SMTP_CMD_AUTH,
} pmx_smtp_verb_t;

typedef struct {
    pmx_smtp_verb_t verb;
    const char     *arg;       /* after the verb and its spaces, trailing spaces cut */
    size_t          arg_len;   /* 0 when there is no argument */
} pmx_smtp_cmd_t;

/*
 * Splits one command line (without its CRLF) into verb and argument; the verb
 * is matched case-insensitively. Returns 0, or -1 when the line holds a byte
 * outside printable ASCII and space (commands carry no 8-bit data: postmux
 * does not offer SMTPUTF8), or is empty.
 */
int  pmx_smtp_cmd_parse(const char *line, size_t n, pmx_smtp_cmd_t *out);
/* The verb in upper case, e.g. "MAIL" ("" for UNKNOWN). */
const char *pmx_smtp_verb_name(pmx_smtp_verb_t verb);

typedef struct {
    const char *key;   size_t key_len;
    const char *value; size_t value_len;  /* value == NULL: "KEY" without "=" */
} pmx_smtp_param_t;

typedef struct {
    const char      *addr;      /* the mailbox between < and >, source route dropped */
    size_t           addr_len;  /* 0 for the null path "<>" */
    pmx_smtp_param_t params[PMX_SMTP_PARAMS_MAX];
    size_t           nparams;
} pmx_smtp_path_t;

/*
 * Parses the argument of MAIL ("FROM:<path> [params]", kw "FROM") or RCPT
 * ("TO:<path> [params]", kw "TO"). The keyword is case-insensitive; spaces
 * after the colon are tolerated (common clients send them), the angle
 * brackets are required. Quoted local parts may hold '>' or spaces. A source
 * route ("<@a,@b:user@d>") is dropped as RFC 5321 §4.1.1.3 says. Parameters
 * are "KEY" or "KEY=VALUE" (RFC 5321 esmtp-keyword / esmtp-value). Returns 0,
 * or -1 with a short reason in err.
 */
int  pmx_smtp_path_parse(const char *arg, size_t n, const char *kw, pmx_smtp_path_t *out,
                         char *err, size_t errlen);
/* Does the parameter's key equal name (case-insensitive)? */
bool pmx_smtp_param_is(const pmx_smtp_param_t *p, const char *name);

/*
 * A SASL PLAIN response (RFC 4616): base64 of "authzid NUL authcid NUL
 * passwd". Appends authcid and passwd to the two buffers (passwd is a secret:
 * the caller frees it with pmx_buf_free_secret). Returns 0, or -1 when the
 * text is not base64 or does not hold exactly two NULs and a non-empty passwd
 * (nothing appended). An empty authcid is accepted: postmux ignores the user
 * name. The decoded copy is wiped.
 */
int  pmx_smtp_sasl_plain_decode(const char *b64, size_t n, pmx_buf_t *authcid, pmx_buf_t *passwd);
/*
 * A base64 SASL response line (AUTH LOGIN's user name or password): strict
 * base64 (no spaces), appended to out. "=" stands for an empty response.
 * Returns 0 or -1 (out unchanged).
 */
int  pmx_smtp_sasl_decode(const char *b64, size_t n, pmx_buf_t *out);

#endif
