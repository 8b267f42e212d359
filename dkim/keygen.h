/*
 * DKIM key pairs: generation (RSA 2048..4096 bits, Ed25519), import of an
 * existing PEM private key, the DNS TXT value to publish, and the parser for
 * a published DKIM key record (RFC 6376 §3.6.1) that `domain verify` checks.
 *
 * A key pair is held as its PKCS#8 PEM private key (what gets sealed into
 * dkim_keys.private_key_enc) and its p= value (dkim_keys.public_key):
 *   rsa     -> base64 of the DER SubjectPublicKeyInfo  (RFC 6376 §3.6.1)
 *   ed25519 -> base64 of the raw 32-byte public key    (RFC 8463 §4)
 * Errors are one line in err, ready for the CLI to print.
 */
#ifndef PMX_DKIM_KEYGEN_H
#define PMX_DKIM_KEYGEN_H
#include <stdbool.h>
#include <stddef.h>

#include "lib/buf.h"

typedef enum { PMX_DKIM_ALG_RSA = 1, PMX_DKIM_ALG_ED25519 = 2 } pmx_dkim_alg_t;

#define PMX_DKIM_RSA_MIN_BITS      2048   /* generation range (postmux(1)) */
#define PMX_DKIM_RSA_MAX_BITS      4096
#define PMX_DKIM_RSA_IMPORT_MIN    1024   /* imports below this are refused */

typedef struct {
    pmx_dkim_alg_t alg;
    int            bits;          /* RSA modulus size; 256 for Ed25519 */
    pmx_buf_t      pem;           /* PKCS#8 PEM private key: a secret */
    pmx_buf_t      pub;           /* the p= value (base64) */
    char           warning[160];  /* set by import for a weak key, else "" */
} pmx_dkim_keypair_t;

/* "rsa-sha256" / "ed25519-sha256" (the dkim_keys.algorithm column). */
const char *pmx_dkim_alg_name(pmx_dkim_alg_t alg);
/* "rsa" / "ed25519" (the k= tag). */
const char *pmx_dkim_alg_k(pmx_dkim_alg_t alg);
/* Parses "rsa-sha256"/"ed25519-sha256" (or the k= names); 0 or -1. */
int pmx_dkim_alg_parse(const char *s, pmx_dkim_alg_t *out);

/* Generates an RSA key of bits (PMX_DKIM_RSA_MIN_BITS..MAX_BITS); 0 or -1. */
int pmx_dkim_keygen_rsa(int bits, pmx_dkim_keypair_t *out, char *err, size_t errlen);
/* Generates an Ed25519 key; 0 or -1. */
int pmx_dkim_keygen_ed25519(pmx_dkim_keypair_t *out, char *err, size_t errlen);

/*
 * Imports a PEM private key (PKCS#8 "PRIVATE KEY" or traditional "RSA PRIVATE
 * KEY"); encrypted keys, other key types and RSA under 1024 bits are refused.
 * An RSA key under 2048 bits is accepted with out->warning set.
 */
int pmx_dkim_key_import_pem(const char *pem, size_t n, pmx_dkim_keypair_t *out,
                            char *err, size_t errlen);

/*
 * Reads a stored PEM private key (after pmx_dkim_key_open) and recomputes its
 * algorithm and p= value into *out (out->pem is filled too); 0 or -1. Used to
 * check that a decrypted key still matches its public_key column.
 */
int pmx_dkim_key_load_pem(const char *pem, size_t n, pmx_dkim_keypair_t *out,
                          char *err, size_t errlen);

void pmx_dkim_keypair_init(pmx_dkim_keypair_t *kp);
/* Wipes the private key and frees both buffers. */
void pmx_dkim_keypair_free(pmx_dkim_keypair_t *kp);

/* Appends the TXT value "v=DKIM1; k=<k>; p=<pub>" for one key. */
void pmx_dkim_dns_value(pmx_buf_t *out, pmx_dkim_alg_t alg, const char *pub);

/*
 * A published DKIM key record, parsed as a tag list (RFC 6376 §3.2): v= must
 * be first when present and equal "DKIM1"; k= defaults to rsa; p= has its
 * whitespace removed (empty p= = revoked key). Unknown tags are ignored, a tag
 * given twice is an error.
 */
typedef struct {
    bool      has_k;
    char      k[32];            /* as published, e.g. "rsa" */
    bool      has_p;
    pmx_buf_t p;                /* base64 without whitespace */
} pmx_dkim_record_t;

/* Parses text[0..n); 0, or -1 with a reason in err. Free with pmx_dkim_record_free. */
int  pmx_dkim_record_parse(const char *text, size_t n, pmx_dkim_record_t *out,
                           char *err, size_t errlen);
void pmx_dkim_record_free(pmx_dkim_record_t *rec);

/*
 * True when two p= values hold the same key bytes (compared after base64
 * decoding, so line breaks or padding differences do not matter).
 */
bool pmx_dkim_pub_equal(const char *a, size_t alen, const char *b, size_t blen);

#endif
