/*
 * DKIM private keys at rest: the master key ([keys] master_key_file, 32 random
 * bytes) and AES-256-GCM sealing of each key's PEM before it goes into
 * dkim_keys.private_key_enc.
 *
 * Blob layout (version 1):
 *   0x01 | nonce (12 random bytes) | ciphertext | tag (16 bytes)
 * The GCM additional data is the version byte followed by the row binding
 * "postmux-dkim-v1:<domain>:<selector>" (pmx_dkim_key_aad), so a blob copied
 * onto another domain or selector does not open. Opening checks the tag before
 * anything is released: a wrong master key, a flipped bit or a blob moved to
 * another row all fail the same way, with no plaintext returned.
 *
 * Used by the CLI (domain add / show --check-keys) and by the workers' key
 * cache. Nothing here logs; callers say what failed, with the domain/selector.
 */
#ifndef PMX_DKIM_KEYCRYPT_H
#define PMX_DKIM_KEYCRYPT_H
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

#define PMX_DKIM_MASTER_KEY_LEN 32
#define PMX_DKIM_BLOB_VERSION   0x01
#define PMX_DKIM_NONCE_LEN      12
#define PMX_DKIM_TAG_LEN        16
/* Smallest possible blob: version + nonce + tag (empty plaintext). */
#define PMX_DKIM_BLOB_OVERHEAD  (1 + PMX_DKIM_NONCE_LEN + PMX_DKIM_TAG_LEN)

/*
 * Loads the master key file: 44 characters of base64 (a trailing newline is
 * fine) decoding to 32 bytes, or exactly 32 raw bytes. On failure returns -1
 * and writes one line into err, e.g.
 *   "master key file /x: cannot open: No such file or directory"
 *   "master key file /x: must hold 32 bytes (base64), got 16"
 * The key is written into out only on success; the caller wipes it (pmx_wipe).
 */
int pmx_dkim_master_key_load(const char *path, uint8_t out[PMX_DKIM_MASTER_KEY_LEN],
                             char *err, size_t errlen);

/* Same, from the bytes of the file (tests, and the loader above). */
int pmx_dkim_master_key_parse(const char *path, const uint8_t *data, size_t n,
                              uint8_t out[PMX_DKIM_MASTER_KEY_LEN], char *err, size_t errlen);

/* Appends the row binding "postmux-dkim-v1:<domain>:<selector>" to out. */
void pmx_dkim_key_aad(pmx_buf_t *out, const char *domain, const char *selector);

/*
 * Seals plaintext (a PEM private key) under master with a fresh random nonce,
 * appending the blob to blob_out. Returns 0, or -EIO if OpenSSL failed.
 */
int pmx_dkim_key_seal(const uint8_t master[PMX_DKIM_MASTER_KEY_LEN], const char *aad,
                      const uint8_t *plain, size_t n, pmx_buf_t *blob_out);

/*
 * Opens a blob made by pmx_dkim_key_seal with the same master and aad,
 * appending the plaintext to pem_out (a secret: free it with
 * pmx_buf_free_secret). Returns 0; -EINVAL for a blob that is too short or of
 * an unknown version; -EBADMSG when authentication fails (wrong master key,
 * wrong aad, tampered data) — pem_out is then left unchanged; -EIO if OpenSSL
 * failed otherwise.
 */
int pmx_dkim_key_open(const uint8_t master[PMX_DKIM_MASTER_KEY_LEN], const char *aad,
                      const uint8_t *blob, size_t n, pmx_buf_t *pem_out);

#endif
