/*
 * Recipient reference tokens (docs/feedback.md "Return path"): the <token> of a
 * VERP return path b-<token>@bounces.D, of X-Postmux-Ref, of a one-click
 * unsubscribe URL {public_url}/u/<token> and of mailto:u-<token>@bounces.D.
 *
 * A token names one recipient row, (message id, position of the recipient in
 * its job), and carries an 80-bit HMAC-SHA256 tag, so a forged bounce or
 * unsubscribe is refused without a Postgres lookup. Bytes:
 *   10  the 80 random bits of the message id "msg_" + 16 base32 characters
 *    2  the recipient's position in the job (big-endian)
 *   10  HMAC-SHA256(key, purpose || the 12 bytes above), truncated
 * written as RFC 4648 base32, lower-case, no padding: 36 characters, so
 * "b-<token>" is 38 octets, well under the 64 of an SMTP local part.
 *
 * The purpose ('b' bounce, 'u' unsubscribe) is inside the tag: a token read off
 * a bounce address does not unsubscribe anyone, and the other way round.
 * The key is derived from the master key ([keys] master_key_file), so every
 * process of an installation agrees on it and nothing else has to be kept.
 */
#ifndef PMX_LIB_REFTOKEN_H
#define PMX_LIB_REFTOKEN_H
#include <stddef.h>
#include <stdint.h>

#define PMX_REF_KEY_LEN    32
#define PMX_REF_TOKEN_LEN  36   /* characters, without the terminating NUL */
#define PMX_REF_MSG_ID_LEN 20   /* "msg_" + 16 base32 characters */
#define PMX_REF_MAX_INDEX  65535u

typedef enum {
    PMX_REF_BOUNCE = 'b',       /* return path, X-Postmux-Ref */
    PMX_REF_UNSUBSCRIBE = 'u',  /* /u/<token>, mailto:u-<token>@… */
} pmx_ref_purpose_t;

/* key = HMAC-SHA256(master, "postmux ref token v1"). */
void pmx_ref_key_derive(const uint8_t *master, size_t master_len, uint8_t key[PMX_REF_KEY_LEN]);

/*
 * Writes the token of recipient index idx of message msg_id into out (NUL
 * terminated). Returns 0, or -1 when msg_id is not "msg_" + 16 base32
 * characters or idx is over PMX_REF_MAX_INDEX.
 */
int pmx_ref_token_make(const uint8_t key[PMX_REF_KEY_LEN], pmx_ref_purpose_t purpose,
                       const char *msg_id, unsigned idx, char out[PMX_REF_TOKEN_LEN + 1]);

/*
 * Checks the token tok[0..n) (case-insensitive) for purpose: its length, its
 * alphabet and its tag, in constant time over the tag. On success writes the
 * message id (NUL terminated) and the recipient index and returns 0; else -1
 * and writes nothing.
 */
int pmx_ref_token_check(const uint8_t key[PMX_REF_KEY_LEN], pmx_ref_purpose_t purpose,
                        const char *tok, size_t n, char msg_id[PMX_REF_MSG_ID_LEN + 1],
                        unsigned *idx);

#endif
