/*
 * The DKIM signer (see signer.h). Two engines make the same signatures: our
 * own (dkim/dkimsig.c, the default: canonicalisation and hashing without a
 * call per octet, docs/bench.md "Where the time goes") and libopendkim, kept
 * as the reference the tests compare against and as a fallback
 * (pmx_dkim_signer_set_engine). Both sign the fields of sign_fields below and
 * oversign From. What follows is about the libopendkim engine: we give it its
 * options once per worker and one signing handle per key and message.
 *
 * Library options (set once on the DKIM_LIB):
 *   DKIM_OPTS_SIGNHDRS      the fields of docs/delivery.md (only those present are signed);
 *   DKIM_OPTS_OVERSIGNHDRS  "From": h= names From once more than it occurs;
 *   no DKIM_LIBFLAGS_FIXCRLF: messages are CRLF-normalised before signing
 *   (lib/mime), so the octets signed are the octets sent; a message with a
 *   bare CR or LF is refused here rather than signed in a form that differs
 *   from what goes on the wire.
 *   Both list options take the array itself with len = sizeof(char **)
 *   (any other len is refused with DKIM_STAT_INVALID).
 *
 * Key reuse. libopendkim parses the PEM it is given for every signature;
 * dkim/pem_override.c answers that parse with the key pmx_dkim_key_init()
 * parsed once (its top comment says why and how, and what would break it).
 * sign_one() arms it around dkim_eom(), the call that loads the key. The
 * stats count the reuses, so a libopendkim that stops taking the parsed key
 * is noticed (pmx_dkim_signer_new() logs it, test_signer checks it), and
 * pmx_dkim_signer_set_key_reuse(s, false) turns it off.
 *
 * Leaks in libopendkim. 2.11.0 (Debian 2.11.0~beta2) does not release, in
 * dkim_free(), the signature buffer and the key of an ed25519-sha256 handle
 * (RSA handles are fine): ~64 octets plus a key reference per message. So:
 * every allocation libopendkim makes for a handle goes through a tracked
 * allocator (the handle's memory closure is the signer's list of live
 * blocks), and what is still live after dkim_free() is freed; and whether
 * libopendkim drops its key reference is measured once per algorithm in
 * pmx_dkim_signer_new() (a probe key whose final free is observed through
 * OpenSSL ex_data), and when it does not, pmx_dkim_sign() drops it instead.
 * A fixed libopendkim is detected by the same probe and left alone.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <opendkim/dkim.h>

#include "dkim/signer.h"
#include "dkim/dkimsig.h"
#include "dkim/pem_override.h"
#include "lib/log.h"
#include "lib/mem.h"
#include "lib/text.h"

#define RSA_MIN_BITS 1024
#define DNS_NAME_MAX 253

/* A block libopendkim allocated for the current handle (see "Leaks" above). */
typedef union block {
    struct { union block *prev, *next; } l;
    max_align_t align;   /* keeps the memory after the header aligned */
} block_t;

struct pmx_dkim_signer {
    DKIM_LIB               *lib;
    block_t                 live;              /* list head: blocks of the current handle */
    bool                    reuse;
    bool                    own;               /* dkim/dkimsig.c signs (default) */
    time_t                  fixed_time;        /* t= for tests; 0 = now */
    bool                    keeps_ref[3];      /* by pmx_dkim_alg_t: libopendkim leaks its key ref */
    pmx_dkim_signer_stats_t stats;
};

static const char *sign_fields[] = {
    "From", "Subject", "To", "Cc", "Date", "Message-ID", "Reply-To", "MIME-Version",
    "Content-Type", "Content-Transfer-Encoding", "List-Unsubscribe", "List-Unsubscribe-Post", NULL,
};
static const char *oversign_fields[] = { "From", NULL };

/* libopendkim's allocator: a NULL closure is library-wide memory, else a handle's. */
static void *block_alloc(void *closure, size_t n)
{
    if (!closure) return pmx_xmalloc(n);
    block_t *head = closure, *b = pmx_xmalloc(sizeof *b + n);
    b->l.prev = head;
    b->l.next = head->l.next;
    head->l.next->l.prev = b;
    head->l.next = b;
    return b + 1;
}

static void block_free(void *closure, void *p)
{
    if (!p) return;
    if (!closure) {
        free(p);
        return;
    }
    block_t *b = (block_t *)p - 1;
    b->l.prev->l.next = b->l.next;
    b->l.next->l.prev = b->l.prev;
    free(b);
}

/* Frees the blocks libopendkim did not free with the handle; returns how many. */
static unsigned long free_leftovers(pmx_dkim_signer_t *s)
{
    unsigned long n = 0;
    while (s->live.l.next != &s->live) {
        block_free(&s->live, s->live.l.next + 1);
        n++;
    }
    return n;
}

/* Refuses to prompt for a pass phrase: encrypted keys simply fail to load. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf; (void)size; (void)rwflag; (void)u;
    return -1;
}

/* A DNS name of letters, digits, '-', '_' and dots, lowercased into a copy. */
static char *dns_name(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > DNS_NAME_MAX || s[0] == '.' || s[n - 1] == '.') return NULL;
    char *out = pmx_xstrdup(s);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '-' && c != '_' && c != '.') {
            free(out);
            return NULL;
        }
        if (c == '.' && s[i + 1] == '.') {
            free(out);
            return NULL;
        }
        out[i] = (char)tolower(c);
    }
    return out;
}

static int key_fail(pmx_dkim_key_t *k, char *err, size_t errlen, const char *what)
{
    if (errlen) snprintf(err, errlen, "%s", what);
    pmx_dkim_key_free(k);
    return -1;
}

int pmx_dkim_key_init(pmx_dkim_key_t *k, const char *domain, const char *selector,
                      pmx_dkim_alg_t alg, const char *pem, size_t pem_len,
                      char *err, size_t errlen)
{
    memset(k, 0, sizeof *k);
    k->alg = alg;
    if (!(k->domain = dns_name(domain))) return key_fail(k, err, errlen, "domain: not a DNS name");
    if (!(k->selector = dns_name(selector)))
        return key_fail(k, err, errlen, "selector: not a DNS name");
    if (alg != PMX_DKIM_ALG_RSA && alg != PMX_DKIM_ALG_ED25519)
        return key_fail(k, err, errlen, "unknown algorithm");
    if (pem_len > (size_t)INT32_MAX) return key_fail(k, err, errlen, "private key: too large");

    BIO *in = BIO_new_mem_buf(pem, (int)pem_len);
    EVP_PKEY *pkey = in ? PEM_read_bio_PrivateKey_ex(in, NULL, no_password, NULL, NULL, NULL) : NULL;
    BIO_free(in);
    if (!pkey) return key_fail(k, err, errlen, "private key: not a readable, unencrypted PEM key");
    k->pkey = pkey;
    if (alg == PMX_DKIM_ALG_RSA) {
        if (!EVP_PKEY_is_a(pkey, "RSA"))
            return key_fail(k, err, errlen, "private key: not an RSA key (algorithm rsa-sha256)");
        k->bits = EVP_PKEY_get_bits(pkey);
        if (k->bits < RSA_MIN_BITS)
            return key_fail(k, err, errlen, "private key: RSA under 1024 bits");
    } else {
        if (!EVP_PKEY_is_a(pkey, "ED25519"))
            return key_fail(k, err, errlen,
                            "private key: not an Ed25519 key (algorithm ed25519-sha256)");
        k->bits = 256;
    }

    /* libopendkim gets one canonical form: PKCS#8 PEM, which it reads for both types. */
    BIO *out = BIO_new(BIO_s_mem());
    char *data = NULL;
    long len = 0;
    if (!out || PEM_write_bio_PrivateKey(out, pkey, NULL, NULL, 0, NULL, NULL) != 1 ||
        (len = BIO_get_mem_data(out, &data)) <= 0) {
        BIO_free(out);
        return key_fail(k, err, errlen, "private key: cannot be written as PKCS#8");
    }
    k->pem = pmx_xstrndup(data, (size_t)len);
    BIO_free(out);   /* a memory BIO clears its buffer when freed */
    return 0;
}

void pmx_dkim_key_free(pmx_dkim_key_t *k)
{
    if (k->pem) {
        pmx_wipe(k->pem, strlen(k->pem));
        free(k->pem);
    }
    EVP_PKEY_free(k->pkey);
    free(k->domain);
    free(k->selector);
    memset(k, 0, sizeof *k);
}

/* One signature; appends "DKIM-Signature: ..." + CRLF to out, or fills err. */
static int sign_one(pmx_dkim_signer_t *s, const pmx_dkim_key_t *k, const char *msg, size_t n,
                    pmx_buf_t *out, char *err, size_t errlen)
{
    if (!k->pem || !k->pkey) {
        if (errlen) snprintf(err, errlen, "d=%s s=%s: key not initialised",
                             k->domain ? k->domain : "?", k->selector ? k->selector : "?");
        return -1;
    }
    if (s->own) {
        if (pmx__dkim_own_sign(k, msg, n, (const char *const *)sign_fields,
                               (const char *const *)oversign_fields,
                               s->fixed_time ? s->fixed_time : time(NULL), out, err, errlen) != 0) {
            char why[256];
            snprintf(why, sizeof why, "%s", errlen ? err : "");
            if (errlen) snprintf(err, errlen, "d=%s s=%s: %s", k->domain, k->selector, why);
            return -1;
        }
        s->stats.signatures++;
        return 0;
    }
    DKIM_STAT st = DKIM_STAT_OK;
    dkim_alg_t alg = k->alg == PMX_DKIM_ALG_ED25519 ? DKIM_SIGN_ED25519SHA256 : DKIM_SIGN_RSASHA256;
    EVP_PKEY *given = NULL;
    const char *why = NULL;
    DKIM *d = dkim_sign(s->lib, (const unsigned char *)"postmux", &s->live, (dkim_sigkey_t)k->pem,
                        (const unsigned char *)k->selector, (const unsigned char *)k->domain,
                        DKIM_CANON_RELAXED, DKIM_CANON_RELAXED, alg, -1, &st);
    if (d) {
        unsigned char *hdr = NULL;
        size_t len = 0;
        st = dkim_chunk(d, (unsigned char *)msg, n);
        if (st == DKIM_STAT_OK) st = dkim_chunk(d, NULL, 0);
        /* dkim_eom() loads the key: header problems (no From, ...) fail before it holds one. */
        if (st == DKIM_STAT_OK) {
            pmx__dkim_pem_arm_t arm = { .pem = k->pem, .pkey = k->pkey, .reuse = s->reuse };
            pmx__dkim_pem_arm(&arm);
            st = dkim_eom(d, NULL);
            pmx__dkim_pem_disarm();
            given = arm.given;
            s->stats.key_reused += arm.reused;
        }
        if (st == DKIM_STAT_OK) st = dkim_getsighdr_d(d, strlen(DKIM_SIGNHEADER) + 2, &hdr, &len);
        if (st == DKIM_STAT_OK) {
            pmx_buf_append_str(out, DKIM_SIGNHEADER ": ");
            pmx_text_crlf(out, (const char *)hdr, len);
            pmx_buf_append(out, "\r\n", 2);
            s->stats.signatures++;
        } else {
            why = dkim_geterror(d);
            if (errlen) snprintf(err, errlen, "d=%s s=%s: %s", k->domain, k->selector,
                                 why && *why ? why : dkim_getresultstr(st));
        }
        dkim_free(d);
    } else if (errlen) {
        snprintf(err, errlen, "d=%s s=%s: %s", k->domain, k->selector, dkim_getresultstr(st));
    }
    /*
     * What libopendkim 2.11 forgets (see "Leaks" at the top). A failure inside
     * dkim_eom() after the key was loaded (the signing operation itself) may
     * keep a key reference whatever the algorithm: it is logged, and costs at
     * most that key's memory staying allocated.
     */
    s->stats.leaked_blocks += free_leftovers(s);
    if (given && st == DKIM_STAT_OK && s->keeps_ref[k->alg]) EVP_PKEY_free(given);
    if (given && st != DKIM_STAT_OK)
        pmx_log_warn("dkim: signing failed after the key was loaded d=%s s=%s: %s", k->domain,
                     k->selector, why && *why ? why : dkim_getresultstr(st));
    return d && st == DKIM_STAT_OK ? 0 : -1;
}

/* Sets *flag when the EVP_PKEY holding it is finally freed (the probe below). */
static void probe_freed(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
    if (ptr) *(int *)ptr = 1;
}

/* A throwaway key of type alg for the probe below; 0 or -1 (logged). */
static int probe_key(pmx_dkim_alg_t alg, pmx_dkim_key_t *k)
{
    EVP_PKEY *gen = alg == PMX_DKIM_ALG_RSA ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)RSA_MIN_BITS)
                                            : EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    BIO *b = BIO_new(BIO_s_mem());
    char *pem = NULL, err[256] = "OpenSSL could not make or write it";
    long len = 0;
    int rc = -1;
    if (gen && b && PEM_write_bio_PrivateKey(b, gen, NULL, NULL, 0, NULL, NULL) == 1 &&
        (len = BIO_get_mem_data(b, &pem)) > 0)
        rc = pmx_dkim_key_init(k, "probe.invalid", "probe", alg, pem, (size_t)len, err, sizeof err);
    if (rc != 0) pmx_log_error("dkim: probe key %s: %s", pmx_dkim_alg_name(alg), err);
    BIO_free(b);
    EVP_PKEY_free(gen);
    return rc;
}

/*
 * Measures whether libopendkim keeps the key reference it was given for alg:
 * signs once with a throwaway key, drops our own reference and watches
 * whether the key is freed. Returns 0 (s->keeps_ref[alg] set) or -1 (logged).
 */
static int probe_key_release(pmx_dkim_signer_t *s, pmx_dkim_alg_t alg)
{
    static int ex_index = -1;
    if (ex_index < 0) ex_index = EVP_PKEY_get_ex_new_index(0, NULL, NULL, NULL, probe_freed);
    pmx_dkim_key_t k;
    if (ex_index < 0 || probe_key(alg, &k) != 0) return -1;
    int freed = 0;
    EVP_PKEY_set_ex_data(k.pkey, ex_index, &freed);

    static const char msg[] = "From: probe@probe.invalid\r\nSubject: probe\r\n\r\nprobe\r\n";
    pmx_buf_t sig = PMX_BUF_INIT;
    char err[256];
    bool was_reuse = s->reuse, was_own = s->own;
    unsigned long long reused = s->stats.key_reused;
    s->reuse = true;
    s->own = false;   /* the probe is about libopendkim */
    s->keeps_ref[alg] = false;
    int rc = sign_one(s, &k, msg, sizeof msg - 1, &sig, err, sizeof err);
    s->reuse = was_reuse;
    s->own = was_own;
    pmx_buf_free(&sig);
    bool handed = s->stats.key_reused > reused;

    EVP_PKEY *pk = k.pkey;
    k.pkey = NULL;
    EVP_PKEY_free(pk);                            /* our reference */
    s->keeps_ref[alg] = handed && !freed;
    if (s->keeps_ref[alg]) EVP_PKEY_free(pk);     /* the one libopendkim kept */
    pmx_dkim_key_free(&k);
    if (rc != 0) pmx_log_error("dkim: probe signature failed: %s", err);
    else if (!handed) pmx_log_warn("dkim: libopendkim does not take parsed keys; every signature parses its key");
    return rc;
}

pmx_dkim_signer_t *pmx_dkim_signer_new(void)
{
    DKIM_LIB *lib = dkim_init(block_alloc, block_free);
    if (!lib) {
        pmx_log_error("dkim: dkim_init failed");
        return NULL;
    }
    if (dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_SIGNHDRS, sign_fields, sizeof(char **)) !=
            DKIM_STAT_OK ||
        dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_OVERSIGNHDRS, oversign_fields,
                     sizeof(char **)) != DKIM_STAT_OK) {
        pmx_log_error("dkim: cannot set the signed header fields");
        dkim_close(lib);
        return NULL;
    }
    pmx_dkim_signer_t *s = pmx_xcalloc(1, sizeof *s);
    s->lib = lib;
    s->live.l.prev = s->live.l.next = &s->live;
    s->reuse = true;
    s->own = true;
    if (probe_key_release(s, PMX_DKIM_ALG_RSA) != 0 || probe_key_release(s, PMX_DKIM_ALG_ED25519) != 0) {
        pmx_dkim_signer_free(s);
        return NULL;
    }
    memset(&s->stats, 0, sizeof s->stats);
    return s;
}

void pmx_dkim_signer_free(pmx_dkim_signer_t *s)
{
    if (!s) return;
    dkim_close(s->lib);
    free(s);
}

void pmx_dkim_signer_set_key_reuse(pmx_dkim_signer_t *s, bool on)
{
    s->reuse = on;
}

void pmx_dkim_signer_set_engine(pmx_dkim_signer_t *s, pmx_dkim_engine_t e)
{
    s->own = e == PMX_DKIM_ENGINE_OWN;
}

int pmx_dkim_signer_set_time(pmx_dkim_signer_t *s, time_t t)
{
    uint64_t v = (uint64_t)t;
    if (dkim_options(s->lib, DKIM_OP_SETOPT, DKIM_OPTS_FIXEDTIME, &v, sizeof v) != DKIM_STAT_OK)
        return -1;
    s->fixed_time = t;
    return 0;
}

void pmx_dkim_signer_stats(const pmx_dkim_signer_t *s, pmx_dkim_signer_stats_t *out)
{
    *out = s->stats;
}

bool pmx_dkim_signer_lib_keeps_key(const pmx_dkim_signer_t *s, pmx_dkim_alg_t alg)
{
    return (alg == PMX_DKIM_ALG_RSA || alg == PMX_DKIM_ALG_ED25519) && s->keeps_ref[alg];
}

int pmx_dkim_sign(pmx_dkim_signer_t *s, const pmx_dkim_key_t *keys, size_t nkeys,
                  const char *msg, size_t n, pmx_buf_t *sig_headers, char *err, size_t errlen)
{
    size_t base = sig_headers->len;
    if (!pmx_text_is_crlf(msg, n)) {
        if (errlen) snprintf(err, errlen, "message is not CRLF-normalised");
        return -1;
    }
    for (size_t i = 0; i < nkeys; i++) {
        if (sign_one(s, &keys[i], msg, n, sig_headers, err, errlen) != 0) {
            sig_headers->len = base;
            if (sig_headers->data) sig_headers->data[base] = '\0';
            return -1;
        }
    }
    return 0;
}
