/*
 * DKIM key generation and import with OpenSSL 3 (EVP), the p= value of a key,
 * and the DKIM key record parser; see keygen.h.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/buffer.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "dkim/keygen.h"
#include "lib/encode.h"
#include "lib/mem.h"

#define ED25519_PUB_LEN 32

const char *pmx_dkim_alg_name(pmx_dkim_alg_t alg)
{
    return alg == PMX_DKIM_ALG_ED25519 ? "ed25519-sha256" : "rsa-sha256";
}

const char *pmx_dkim_alg_k(pmx_dkim_alg_t alg)
{
    return alg == PMX_DKIM_ALG_ED25519 ? "ed25519" : "rsa";
}

int pmx_dkim_alg_parse(const char *s, pmx_dkim_alg_t *out)
{
    if (strcmp(s, "rsa-sha256") == 0 || strcmp(s, "rsa") == 0) *out = PMX_DKIM_ALG_RSA;
    else if (strcmp(s, "ed25519-sha256") == 0 || strcmp(s, "ed25519") == 0) *out = PMX_DKIM_ALG_ED25519;
    else return -1;
    return 0;
}

void pmx_dkim_keypair_init(pmx_dkim_keypair_t *kp)
{
    memset(kp, 0, sizeof *kp);
}

void pmx_dkim_keypair_free(pmx_dkim_keypair_t *kp)
{
    pmx_buf_free_secret(&kp->pem);
    pmx_buf_free(&kp->pub);
    kp->warning[0] = '\0';
}

/* Writes "WHAT: <last OpenSSL error>" into err and empties the error queue. */
static void ossl_err(char *err, size_t errlen, const char *what)
{
    char reason[256];
    unsigned long e = ERR_peek_last_error();
    if (e == 0) snprintf(reason, sizeof reason, "unknown OpenSSL error");
    else ERR_error_string_n(e, reason, sizeof reason);
    ERR_clear_error();
    snprintf(err, errlen, "%s: %s", what, reason);
}

/* Fills out->alg, bits, pem (PKCS#8) and pub from a private key; 0 or -1. */
static int fill_keypair(EVP_PKEY *pkey, pmx_dkim_keypair_t *out, char *err, size_t errlen)
{
    int id = EVP_PKEY_get_base_id(pkey);
    pmx_dkim_alg_t alg;
    if (id == EVP_PKEY_RSA) alg = PMX_DKIM_ALG_RSA;
    else if (id == EVP_PKEY_ED25519) alg = PMX_DKIM_ALG_ED25519;
    else {
        const char *name = OBJ_nid2sn(id);
        snprintf(err, errlen, "unsupported key type %s: DKIM keys are RSA or Ed25519",
                 name && id != NID_undef ? name : "(unknown)");
        return -1;
    }

    pmx_buf_t pem = PMX_BUF_INIT, pub = PMX_BUF_INIT;
    BIO *bio = BIO_new(BIO_s_mem());
    unsigned char *der = NULL;
    int rc = -1;
    if (!bio) goto ossl;

    /* PKCS#8, unencrypted: the sealing under the master key is the protection. */
    if (PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL) != 1) goto ossl;
    BUF_MEM *mem = NULL;
    BIO_get_mem_ptr(bio, &mem);
    if (!mem || mem->length == 0) goto ossl;
    pmx_buf_append(&pem, mem->data, mem->length);

    if (alg == PMX_DKIM_ALG_RSA) {
        int len = i2d_PUBKEY(pkey, &der);
        if (len <= 0) goto ossl;
        pmx_base64_encode(&pub, der, (size_t)len);
    } else {
        uint8_t raw[ED25519_PUB_LEN];
        size_t rawlen = sizeof raw;
        if (EVP_PKEY_get_raw_public_key(pkey, raw, &rawlen) != 1 || rawlen != sizeof raw)
            goto ossl;
        pmx_base64_encode(&pub, raw, rawlen);
    }

    out->alg = alg;
    out->bits = EVP_PKEY_get_bits(pkey);
    pmx_buf_free_secret(&out->pem);
    pmx_buf_free(&out->pub);
    out->pem = pem;
    out->pub = pub;
    pem = (pmx_buf_t)PMX_BUF_INIT;
    pub = (pmx_buf_t)PMX_BUF_INIT;
    rc = 0;
    goto done;
ossl:
    ossl_err(err, errlen, "cannot encode the key");
done:
    OPENSSL_free(der);
    BIO_free(bio);             /* a mem BIO clears its buffer when freed */
    pmx_buf_free_secret(&pem);
    pmx_buf_free(&pub);
    return rc;
}

int pmx_dkim_keygen_rsa(int bits, pmx_dkim_keypair_t *out, char *err, size_t errlen)
{
    if (bits < PMX_DKIM_RSA_MIN_BITS || bits > PMX_DKIM_RSA_MAX_BITS) {
        snprintf(err, errlen, "RSA key size must be %d to %d bits, got %d",
                 PMX_DKIM_RSA_MIN_BITS, PMX_DKIM_RSA_MAX_BITS, bits);
        return -1;
    }
    EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
    if (!pkey) {
        ossl_err(err, errlen, "cannot generate an RSA key");
        return -1;
    }
    int rc = fill_keypair(pkey, out, err, errlen);
    EVP_PKEY_free(pkey);
    return rc;
}

int pmx_dkim_keygen_ed25519(pmx_dkim_keypair_t *out, char *err, size_t errlen)
{
    EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (!pkey) {
        ossl_err(err, errlen, "cannot generate an Ed25519 key");
        return -1;
    }
    int rc = fill_keypair(pkey, out, err, errlen);
    EVP_PKEY_free(pkey);
    return rc;
}

/* Refuses to prompt: an encrypted PEM is reported instead of decrypted. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf; (void)size; (void)rwflag;
    *(int *)u = 1;
    return -1;
}

/* Reads the first private key of a PEM text; NULL after writing why into err. */
static EVP_PKEY *read_pem(const char *pem, size_t n, char *err, size_t errlen)
{
    if (n == 0 || n > 1024 * 1024) {
        snprintf(err, errlen, "not a PEM private key (%s)", n ? "file too large" : "empty");
        return NULL;
    }
    BIO *bio = BIO_new_mem_buf(pem, (int)n);
    if (!bio) {
        ossl_err(err, errlen, "cannot read the key");
        return NULL;
    }
    int asked = 0;
    EVP_PKEY *pkey = PEM_read_bio_PrivateKey(bio, NULL, no_password, &asked);
    BIO_free(bio);
    if (!pkey) {
        if (asked)
            snprintf(err, errlen, "the private key is encrypted; decrypt it first "
                                  "(openssl pkey -in FILE -out PLAIN.pem)");
        else
            ossl_err(err, errlen, "not a PEM private key (PKCS#8 or traditional RSA)");
        ERR_clear_error();
        return NULL;
    }
    return pkey;
}

/* Checks that the private and public halves belong together. */
static int check_pair(EVP_PKEY *pkey, char *err, size_t errlen)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    if (!ctx) {
        ossl_err(err, errlen, "cannot check the key");
        return -1;
    }
    int r = EVP_PKEY_pairwise_check(ctx);
    EVP_PKEY_CTX_free(ctx);
    if (r == 1 || r == -2) {          /* -2: the type has no check to run */
        ERR_clear_error();
        return 0;
    }
    ossl_err(err, errlen, "the private key is inconsistent");
    return -1;
}

int pmx_dkim_key_import_pem(const char *pem, size_t n, pmx_dkim_keypair_t *out,
                            char *err, size_t errlen)
{
    EVP_PKEY *pkey = read_pem(pem, n, err, errlen);
    if (!pkey) return -1;

    int rc = -1;
    int id = EVP_PKEY_get_base_id(pkey);
    if (id == EVP_PKEY_RSA) {
        int bits = EVP_PKEY_get_bits(pkey);
        if (bits < PMX_DKIM_RSA_IMPORT_MIN) {
            snprintf(err, errlen, "RSA key of %d bits is too weak: at least %d bits are needed",
                     bits, PMX_DKIM_RSA_IMPORT_MIN);
            goto done;
        }
    }
    if (check_pair(pkey, err, errlen) < 0) goto done;
    if (fill_keypair(pkey, out, err, errlen) < 0) goto done;

    out->warning[0] = '\0';
    if (out->alg == PMX_DKIM_ALG_RSA && out->bits < PMX_DKIM_RSA_MIN_BITS)
        snprintf(out->warning, sizeof out->warning,
                 "RSA key of %d bits is weak: receivers may ignore it, use %d bits or more",
                 out->bits, PMX_DKIM_RSA_MIN_BITS);
    rc = 0;
done:
    EVP_PKEY_free(pkey);
    return rc;
}

int pmx_dkim_key_load_pem(const char *pem, size_t n, pmx_dkim_keypair_t *out,
                          char *err, size_t errlen)
{
    EVP_PKEY *pkey = read_pem(pem, n, err, errlen);
    if (!pkey) return -1;
    int rc = fill_keypair(pkey, out, err, errlen);
    EVP_PKEY_free(pkey);
    return rc;
}

void pmx_dkim_dns_value(pmx_buf_t *out, pmx_dkim_alg_t alg, const char *pub)
{
    pmx_buf_appendf(out, "v=DKIM1; k=%s; p=%s", pmx_dkim_alg_k(alg), pub);
}

/* Folding white space of a tag list (RFC 6376 §2.8, after unfolding). */
static int is_fws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int is_tag_char(char c, int first)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return 1;
    return !first && ((c >= '0' && c <= '9') || c == '_');
}

void pmx_dkim_record_free(pmx_dkim_record_t *rec)
{
    pmx_buf_free(&rec->p);
}

int pmx_dkim_record_parse(const char *text, size_t n, pmx_dkim_record_t *out,
                          char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    bool seen_v = false;
    int ntags = 0;
    size_t i = 0;

    while (i < n) {
        size_t end = i;
        while (end < n && text[end] != ';') end++;
        /* One tag-spec: text[i..end), trimmed of FWS on both ends. */
        size_t a = i, b = end;
        while (a < b && is_fws(text[a])) a++;
        while (b > a && is_fws(text[b - 1])) b--;
        i = end < n ? end + 1 : end;
        if (a == b) continue;                 /* empty spec, e.g. a trailing ';' */

        size_t t = a;
        while (t < b && is_tag_char(text[t], t == a)) t++;
        size_t name_end = t;
        while (t < b && is_fws(text[t])) t++;
        if (name_end == a || t >= b || text[t] != '=') {
            snprintf(err, errlen, "bad tag list near \"%.*s\"", (int)(b - a > 40 ? 40 : b - a), text + a);
            goto fail;
        }
        size_t v = t + 1;
        while (v < b && is_fws(text[v])) v++;
        const char *name = text + a;
        size_t nlen = name_end - a;
        const char *val = text + v;
        size_t vlen = b - v;
        ntags++;

        if (nlen == 1 && name[0] == 'v') {
            if (seen_v || ntags != 1) {
                snprintf(err, errlen, "v= must be the first tag");
                goto fail;
            }
            seen_v = true;
            if (vlen != 5 || memcmp(val, "DKIM1", 5) != 0) {
                snprintf(err, errlen, "v=%.*s is not DKIM1", (int)(vlen > 20 ? 20 : vlen), val);
                goto fail;
            }
        } else if (nlen == 1 && name[0] == 'k') {
            if (out->has_k) {
                snprintf(err, errlen, "tag k= appears twice");
                goto fail;
            }
            if (vlen == 0 || vlen >= sizeof out->k) {
                snprintf(err, errlen, "bad k= value");
                goto fail;
            }
            memcpy(out->k, val, vlen);
            out->k[vlen] = '\0';
            out->has_k = true;
        } else if (nlen == 1 && name[0] == 'p') {
            if (out->has_p) {
                snprintf(err, errlen, "tag p= appears twice");
                goto fail;
            }
            out->has_p = true;
            pmx_buf_reserve(&out->p, vlen);
            for (size_t k = 0; k < vlen; k++)
                if (!is_fws(val[k])) pmx_buf_append_char(&out->p, val[k]);
            if (out->p.len == 0) pmx_buf_append(&out->p, "", 0);   /* keep data non-NULL */
        }
        /* Other tags (h=, s=, t=, n=, ...) do not affect which key is published. */
    }
    if (!out->has_p) {
        snprintf(err, errlen, "no p= tag");
        goto fail;
    }
    if (!out->has_k) {
        snprintf(out->k, sizeof out->k, "rsa");     /* RFC 6376 §3.6.1 default */
    }
    return 0;
fail:
    pmx_dkim_record_free(out);
    return -1;
}

bool pmx_dkim_pub_equal(const char *a, size_t alen, const char *b, size_t blen)
{
    pmx_buf_t da = PMX_BUF_INIT, db = PMX_BUF_INIT;
    bool eq = false;
    if (pmx_base64_decode(&da, a, alen) == 0 && pmx_base64_decode(&db, b, blen) == 0)
        eq = da.len > 0 && da.len == db.len && memcmp(da.data, db.data, da.len) == 0;
    pmx_buf_free(&da);
    pmx_buf_free(&db);
    return eq;
}
