/*
 * DKIM signing with libopendkim (docs/delivery.md "DKIM"): every message is signed
 * once per active key of its From domain, rsa-sha256 and/or ed25519-sha256,
 * c=relaxed/relaxed, no l=, and h= listing those of From, Subject, To, Cc,
 * Date, Message-ID, Reply-To, MIME-Version, Content-Type,
 * Content-Transfer-Encoding, List-Unsubscribe and List-Unsubscribe-Post (RFC 8058
 * wants both signed) that are present, with From listed once more
 * than it occurs (oversigned: a From added later breaks the signature).
 *
 * One pmx_dkim_signer_t per worker process (it holds the DKIM_LIB), created
 * once; one pmx_dkim_key_t per key, made once from the decrypted PEM and kept
 * in the worker's key cache: the key is parsed when it is made, not per
 * message (see dkim/pem_override.c for how libopendkim is handed the parsed key).
 * Neither is thread-safe; a worker signs on its loop thread.
 *
 * Usage:
 *   pmx_dkim_key_t k;
 *   pmx_dkim_key_init(&k, "example.com", "s1", PMX_DKIM_ALG_RSA, pem, pem_len, err, sizeof err);
 *   pmx_buf_t sig = PMX_BUF_INIT;
 *   pmx_dkim_sign(signer, &k, 1, msg.data, msg.len, &sig, err, sizeof err);
 *   // send sig (the DKIM-Signature fields, CRLF-terminated) followed by msg
 */
#ifndef PMX_DKIM_SIGNER_H
#define PMX_DKIM_SIGNER_H
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "dkim/keygen.h"   /* pmx_dkim_alg_t */
#include "lib/buf.h"

/* A private key ready for signing. Fields are read-only for callers. */
typedef struct {
    char          *domain;    /* d= (lowercase) */
    char          *selector;  /* s= */
    pmx_dkim_alg_t alg;
    int            bits;      /* RSA modulus size; 256 for Ed25519 */
    char          *pem;       /* PKCS#8 PEM as handed to libopendkim: a secret */
    void          *pkey;      /* the parsed key (EVP_PKEY *) */
} pmx_dkim_key_t;

typedef struct pmx_dkim_signer pmx_dkim_signer_t;

/*
 * Parses a PEM private key (PKCS#8 or traditional RSA) once for signing as
 * d=domain s=selector. Refused with a reason: a key that does not parse, is
 * encrypted, is not of type alg, RSA under 1024 bits; a domain or selector
 * that is empty or not a plain DNS name. On failure *k is left zeroed.
 */
int  pmx_dkim_key_init(pmx_dkim_key_t *k, const char *domain, const char *selector,
                       pmx_dkim_alg_t alg, const char *pem, size_t pem_len,
                       char *err, size_t errlen);
/* Wipes the PEM and frees the key (a zeroed key is fine). */
void pmx_dkim_key_free(pmx_dkim_key_t *k);

/*
 * The worker's signer; NULL (logged) if libopendkim cannot be initialised.
 * Makes two throwaway keys (RSA-1024, Ed25519) and signs with each once to
 * learn how libopendkim releases keys: a few milliseconds, once per worker.
 */
pmx_dkim_signer_t *pmx_dkim_signer_new(void);
void pmx_dkim_signer_free(pmx_dkim_signer_t *s);

/*
 * Signs msg[0..n) (a complete message, CRLF line endings only — what
 * pmx_mime_build / pmx_mime_prepare_raw produce, not dot-stuffed) with each of
 * keys[0..nkeys), appending one folded, CRLF-terminated "DKIM-Signature:"
 * field per key, in key order, to sig_headers; the caller writes them before
 * the message. Returns 0, or -1 with a reason (sig_headers unchanged), e.g.
 * "message is not CRLF-normalised", "d=example.com s=s1: <libopendkim error>".
 */
int  pmx_dkim_sign(pmx_dkim_signer_t *s, const pmx_dkim_key_t *keys, size_t nkeys,
                   const char *msg, size_t n, pmx_buf_t *sig_headers, char *err, size_t errlen);

/*
 * Whether libopendkim is handed the already-parsed key (default: yes). Off
 * makes libopendkim parse the PEM for every signature, as it does on its
 * own; kept for measurements and as a fallback switch.
 */
void pmx_dkim_signer_set_key_reuse(pmx_dkim_signer_t *s, bool on);

/*
 * Which code signs: postmux's own (dkim/dkimsig.c, the default) or
 * libopendkim. Both make c=relaxed/relaxed signatures of the same fields; for
 * the same message, key and time, bh= and b= are the same (test_signer).
 */
typedef enum { PMX_DKIM_ENGINE_OWN, PMX_DKIM_ENGINE_LIBOPENDKIM } pmx_dkim_engine_t;
void pmx_dkim_signer_set_engine(pmx_dkim_signer_t *s, pmx_dkim_engine_t e);

/* t= of every later signature, both engines (tests); 0 or -1 (libopendkim refused). */
int  pmx_dkim_signer_set_time(pmx_dkim_signer_t *s, time_t t);

typedef struct {
    unsigned long long signatures;     /* DKIM-Signature fields produced */
    unsigned long long key_reused;     /* of which libopendkim got the parsed key */
    unsigned long long leaked_blocks;  /* blocks libopendkim left after dkim_free, freed by us */
} pmx_dkim_signer_stats_t;

void pmx_dkim_signer_stats(const pmx_dkim_signer_t *s, pmx_dkim_signer_stats_t *out);

/*
 * True when pmx_dkim_signer_new() found that libopendkim keeps (leaks) the
 * key reference of an alg handle, so the signer drops it itself (2.11.0 does
 * for ed25519-sha256; see signer.c).
 */
bool pmx_dkim_signer_lib_keeps_key(const pmx_dkim_signer_t *s, pmx_dkim_alg_t alg);

#endif
