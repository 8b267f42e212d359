/*
 * postmux's own DKIM signing core (docs/delivery.md "DKIM", docs/bench.md "Where
 * the time goes"): c=relaxed/relaxed canonicalisation, the body hash, the header
 * hash and the signature (rsa-sha256 or ed25519-sha256, RFC 6376 and RFC 8463),
 * with OpenSSL only. dkim/signer.c uses it by default; libopendkim stays as the
 * other engine (pmx_dkim_signer_set_engine), and test_signer checks that both
 * produce the same bh= and b= for the same message and time.
 *
 * Why not libopendkim: its relaxed body canonicalisation appends every octet of
 * the body with a function call (dkim_dstring_cat1) and hashes through a 4 KB
 * buffer; for a 100 KB newsletter that was most of the CPU a message cost
 * outside the RSA operation. Here lines that are already canonical (no tab, no
 * run of spaces, no trailing space: nearly all generated lines) are hashed in
 * place, in runs of many lines per digest update; only lines that change are
 * copied.
 *
 * Input: a complete message with CRLF line endings only (the caller checks),
 * not dot-stuffed. The header ends at the first empty line; a message without
 * one is all header and has an empty body.
 */
#ifndef PMX_DKIM_DKIMSIG_H
#define PMX_DKIM_DKIMSIG_H
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "dkim/signer.h"
#include "lib/buf.h"

/*
 * Signs msg[0..n) with k, signing the fields named in sign_fields (NULL-ended;
 * each present one, every occurrence) and naming each of oversign_fields once
 * more in h= than it occurs. t= is `now`. Appends one folded, CRLF-terminated
 * "DKIM-Signature: ..." field to out. Returns 0, or -1 with a reason in err
 * (out unchanged): "no From header field", "header line N is not a field",
 * or OpenSSL's reason for a failed signature.
 */
int pmx__dkim_own_sign(const pmx_dkim_key_t *k, const char *msg, size_t n,
                       const char *const *sign_fields, const char *const *oversign_fields,
                       time_t now, pmx_buf_t *out, char *err, size_t errlen);

/* The relaxed body hash (SHA-256) of body[0..n) into md; 0 or -1 (OpenSSL failed). */
int pmx__dkim_body_hash(const char *body, size_t n, uint8_t md[32]);

#endif
