/*
 * Our own PEM_read_bio_PrivateKey(): a speed-up for DKIM signing, kept in a
 * file of its own so that nobody meets it by accident. Interface and
 * ownership: pem_override.h.
 *
 * Why it exists. libopendkim 2.11 takes the private key as a PEM string in
 * dkim_sign() and parses it again for every handle: dkim_privkey_load(),
 * called from dkim_eom(), does PEM_read_bio_PrivateKey() on a memory BIO
 * holding that string (then EVP_PKEY_get1_RSA() for RSA). Under OpenSSL 3.0
 * that costs ~0.35 ms per signature, plus ~0.28 ms for the first RSA
 * operation on a fresh key object: an RSA-2048 signature took ~0.9 ms
 * instead of ~0.27 ms (measured on the development machine; test_signer
 * prints the numbers). libopendkim has no call that takes a parsed key, so
 * we answer its parse ourselves with the key parsed once when the worker's
 * settings cache made it (pmx_dkim_key_init).
 *
 * How the symbol gets there (interposition). postmuxd and the unit tests
 * link libpmx.a statically and libopendkim and libcrypto dynamically.
 * - Static link: ld takes an archive member only to satisfy a symbol that
 *   is still undefined when it scans the archive. libopendkim's reference
 *   to PEM_read_bio_PrivateKey plays no part (-lopendkim comes after
 *   libpmx.a on the link line, see the Makefile); signer.o's calls to
 *   pmx__dkim_pem_arm/disarm are what pull this member in. So
 *   the override is in exactly the binaries that sign, and it must stay in
 *   the same file as pmx__dkim_pem_arm: moved elsewhere it silently drops
 *   out of the link.
 * - Dynamic link: because libopendkim.so, which the executable is linked
 *   against, references PEM_read_bio_PrivateKey, ld exports the
 *   executable's definition in its dynamic symbol table. At start-up ld.so
 *   resolves libopendkim's reference by searching the global scope in load
 *   order, the executable first: our definition wins over libcrypto's. The
 *   reference is versioned (PEM_read_bio_PrivateKey@OPENSSL_3.0.0), ours is
 *   not; glibc's ld.so accepts an unversioned definition for a versioned
 *   reference. (Checked on Debian 12: `objdump -T libopendkim.so.11` shows
 *   the versioned reference, `nm -D postmuxd` our exported definition, and
 *   libcrypto has no relocation for the symbol, so its own calls stay
 *   inside it.) The CLI does not sign and carries no override.
 *   The definition is marked visibility("default") so that building with
 *   -fvisibility=hidden cannot keep it out of the dynamic symbol table.
 *
 * When the key is not ours. Unless all of these hold, the call goes to
 * OpenSSL's PEM_read_bio_PrivateKey_ex(bp, x, cb, u, NULL, NULL), which is
 * what OpenSSL 3's own PEM_read_bio_PrivateKey does: the calling thread is
 * armed with a parsed key; x and cb are NULL; bp is a memory BIO whose
 * unread content is exactly the armed PEM. A call that matches while
 * `reuse` is off is parsed as well (and recorded, so signer.c can drop a
 * reference libopendkim leaks). When it answers, it returns a new
 * reference (EVP_PKEY_up_ref) and reads the BIO to its end, as a parse of
 * that PEM would; if the reference cannot be taken it parses instead.
 *
 * Threads and processes. The armed state is _Thread_local and lives only
 * for the dkim_eom() call: another thread, or this thread outside that
 * call, always gets OpenSSL's behaviour. The returned key is shared with
 * the settings cache; OpenSSL's reference counts are atomic, and the one
 * mutation libopendkim causes (EVP_PKEY_get1_RSA caching a legacy RSA in
 * the key) happens under the key's own lock. Workers are separate
 * processes, each with its own keys and its own armed state; nothing forks
 * while armed.
 *
 * What would break it, and how we would notice.
 * - libopendkim stops calling PEM_read_bio_PrivateKey for this (uses the
 *   _ex variant, OSSL_DECODER, d2i, a file BIO, a password callback, or a
 *   BIO with the trailing NUL): nothing matches, signatures stay correct
 *   but every one parses again. pmx_dkim_signer_new() then logs "libopendkim
 *   does not take parsed keys", test_signer's reuse count and
 *   test_pem_override's libopendkim case fail.
 * - libopendkim starts changing the key it is given (EVP_PKEY_assign, set
 *   parameters): the change would reach every later message signed with
 *   that key. Read its dkim_privkey_load() on an upgrade.
 * - libopendkim keeping or dropping its reference differently: signer.c
 *   measures that at start (the probe) and adapts.
 * - OpenSSL changing PEM_read_bio_PrivateKey's meaning (another default
 *   library context or property query): our fall-through would differ from
 *   it. A changed prototype fails to compile (we include <openssl/pem.h>);
 *   OpenSSL 1.1 has no _ex variant and fails to compile too.
 * - Linking libcrypto statically: its pem_pkey.o defines both functions, so
 *   the link fails with a duplicate symbol (loudly). libopendkim linked
 *   statically still binds to ours. Loading libopendkim with
 *   dlopen(RTLD_DEEPBIND), or building postmux as a shared library loaded
 *   after libcrypto, would bypass it silently (then the signer's start-up
 *   warning is the sign).
 */
#include "dkim/pem_override.h"

#include <stddef.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "lib/mem.h"

static _Thread_local pmx__dkim_pem_arm_t *armed;

void pmx__dkim_pem_arm(pmx__dkim_pem_arm_t *a)
{
    armed = a;
}

void pmx__dkim_pem_disarm(void)
{
    armed = NULL;
}

/* Whether bp is a memory BIO whose unread content is exactly pem. */
static bool holds_exactly(BIO *bp, const char *pem)
{
    if (!bp || BIO_method_type(bp) != BIO_TYPE_MEM) return false;
    char *data = NULL;
    long len = BIO_get_mem_data(bp, &data);
    size_t pl = strlen(pem);
    return data && len >= 0 && (size_t)len == pl && memcmp(data, pem, pl) == 0;
}

/* Reads bp to its end, as parsing the single PEM block it holds would. */
static void consume(BIO *bp)
{
    char buf[512];
    while (BIO_read(bp, buf, (int)sizeof buf) > 0) {
    }
    pmx_wipe(buf, sizeof buf);   /* it held key material */
}

/* See the top of this file. */
__attribute__((visibility("default")))
EVP_PKEY *PEM_read_bio_PrivateKey(BIO *bp, EVP_PKEY **x, pem_password_cb *cb, void *u)
{
    pmx__dkim_pem_arm_t *a = armed;
    bool ours = a && a->pem && a->pkey && x == NULL && cb == NULL && holds_exactly(bp, a->pem);
    if (ours) a->matched++;
    if (ours && a->reuse && EVP_PKEY_up_ref((EVP_PKEY *)a->pkey) == 1) {
        consume(bp);
        a->reused++;
        a->given = a->pkey;
        return a->pkey;
    }
    EVP_PKEY *p = PEM_read_bio_PrivateKey_ex(bp, x, cb, u, NULL, NULL);
    if (ours) a->given = p;
    return p;
}
