/*
 * Handing libopendkim a key we already parsed (see pem_override.c for why
 * and how): this module defines OpenSSL's PEM_read_bio_PrivateKey() in the
 * executable, and that definition is the one libopendkim calls. It behaves
 * exactly like OpenSSL's own, except on the one thread that armed it, for
 * one PEM text: there it returns a new reference to the EVP_PKEY parsed
 * from that text once, instead of parsing it again.
 *
 * Internal to the dkim room (hence pmx__): only dkim/signer.c arms it,
 * around dkim_eom() (the call that loads the key), and its unit test.
 * Nothing else in postmux needs to know it exists.
 *
 * Usage (one signature):
 *   pmx__dkim_pem_arm_t arm = { .pem = k->pem, .pkey = k->pkey, .reuse = true };
 *   pmx__dkim_pem_arm(&arm);
 *   st = dkim_eom(d, NULL);          // libopendkim calls PEM_read_bio_PrivateKey
 *   pmx__dkim_pem_disarm();
 *   // arm.reused: how often it got our key; arm.given: the reference it got
 *
 * Ownership: the caller keeps its own reference to pkey throughout; each
 * call answered with pkey takes one more (EVP_PKEY_up_ref), which belongs to
 * whoever called PEM_read_bio_PrivateKey (libopendkim frees it in
 * dkim_free(), or leaks it: see signer.c). Thread-local: arming on one
 * thread changes nothing for the others. Not reentrant: one arm per thread
 * at a time (arming again replaces the previous one).
 */
#ifndef PMX_DKIM_PEM_OVERRIDE_H
#define PMX_DKIM_PEM_OVERRIDE_H
#include <stdbool.h>

typedef struct {
    /* Set by the caller before arming. */
    const char *pem;      /* NUL-terminated PEM text, exactly as handed to libopendkim */
    void       *pkey;     /* EVP_PKEY * parsed from pem; NULL: nothing is matched */
    bool        reuse;    /* false: matching calls are parsed too (and still recorded) */
    /* Filled in while armed. */
    unsigned    matched;  /* calls whose memory BIO held exactly pem */
    unsigned    reused;   /* of which answered with a new reference to pkey */
    void       *given;    /* what the last matching call returned (pkey, a fresh parse, or NULL) */
} pmx__dkim_pem_arm_t;

/*
 * Arms the override on the calling thread until pmx__dkim_pem_disarm(); a is
 * read and updated in place, so it must outlive the armed stretch.
 * A call matches when bp is a memory BIO whose unread content is exactly
 * a->pem, x is NULL and cb is NULL; every other call (other threads, other
 * text, file BIOs, an x to fill, a password callback) is OpenSSL's.
 */
void pmx__dkim_pem_arm(pmx__dkim_pem_arm_t *a);
void pmx__dkim_pem_disarm(void);

#endif
