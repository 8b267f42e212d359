/*
 * postmux's own DKIM signing core; see dkimsig.h (and docs/delivery.md "DKIM").
 *
 * Relaxed canonicalisation (RFC 6376 section 3.4.2 and 3.4.4):
 *   header: the name lowercased, white space around the colon removed, folding
 *           undone, runs of white space made one space, trailing white space
 *           removed; each field ends with CRLF, the DKIM-Signature field
 *           itself (b= empty) comes last, without CRLF.
 *   body:   trailing white space of each line removed, runs made one space,
 *           empty lines at the end ignored, a last line without CRLF given one.
 * White space is SP and HTAB (WSP). The h= list names the signed fields in
 * message order; a name listed k times takes its fields from the bottom up,
 * and a name listed more often than it occurs (oversigning) adds nothing to
 * the hash for the extra ones, so a field of that name added later breaks the
 * signature.
 *
 * ed25519-sha256 (RFC 8463) signs the SHA-256 of the canonical header data
 * with PureEdDSA; rsa-sha256 signs the same digest with RSASSA-PKCS1-v1_5.
 */
#include "dkim/dkimsig.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "lib/encode.h"
#include "lib/mem.h"
#include "lib/swar.h"

#define FOLD_AT 76   /* fold the field before a line would pass this many octets */

static bool is_wsp(char c) { return c == ' ' || c == '\t'; }

/* SHA-256 fetched once per process: EVP_sha256() is fetched again on every
 * init with OpenSSL 3 (a lock and a lookup per digest). Kept for the life of
 * the process; EVP_sha256() if the fetch fails. */
static const EVP_MD *sha256(void)
{
    static EVP_MD *md;
    if (!md) md = EVP_MD_fetch(NULL, "SHA256", NULL);
    return md ? md : EVP_sha256();
}

/* ---- body ------------------------------------------------------------------------ */

/* Appends line[0..n) relaxed (no trailing white space, runs made one SP) + CRLF. */
static void canon_body_line(pmx_buf_t *out, const char *line, size_t n)
{
    pmx_buf_reserve(out, n + 2);
    char *w = out->data + out->len;
    bool pending = false;
    for (size_t i = 0; i < n; i++) {
        char c = line[i];
        if (is_wsp(c)) {
            pending = true;
            continue;
        }
        if (pending) *w++ = ' ';
        pending = false;
        *w++ = c;
    }
    *w++ = '\r';
    *w++ = '\n';
    out->len = (size_t)(w - out->data);
    out->data[out->len] = '\0';
}

/*
 * Feeds the relaxed body to the digest. Lines already canonical are hashed
 * where they lie, many at once (a "run"); an empty line (or one of white space
 * only) ends the run and is only counted, since it may belong to the ignored
 * tail; a line that changes is copied, changed, and hashed on its own.
 */
static int body_digest(EVP_MD_CTX *md, const char *b, size_t n)
{
    size_t run = 0, blanks = 0, i = 0;
    pmx_buf_t line = PMX_BUF_INIT;
    int ok = 1;
    while (i < n && ok) {
        const char *nl = memchr(b + i, '\n', n - i);
        size_t next = nl ? (size_t)(nl - b) + 1 : n;
        size_t end = nl ? next - 1 : n;
        bool crlf = nl != NULL;
        if (crlf && end > i && b[end - 1] == '\r') end--;
        bool blank = true, change = !crlf;
        char prev = 'x';
        size_t p = i;
        /* Eight octets at a time: a tab, two white space octets in a row, or
         * anything but white space (lib/swar.h). */
        for (; p + 8 <= end; p += 8) {
            uint64_t x = pmx_swar_load(b + p);
            uint64_t sp = pmx_swar_eq(x, ' '), tab = pmx_swar_eq(x, '\t');
            if (tab || (sp & (sp << 8)) || (sp & (sp >> 8)) || (is_wsp(prev) && is_wsp(b[p])))
                change = true;
            if (~(sp | tab) & PMX_SWAR_HIGH) blank = false;
            prev = b[p + 7];
        }
        for (; p < end; p++) {
            char c = b[p];
            if (c == ' ') {
                if (prev == ' ' || prev == '\t') change = true;
            } else if (c == '\t') {
                change = true;
            } else {
                blank = false;
            }
            prev = c;
        }
        if (end > i && is_wsp(b[end - 1])) change = true;
        if (blank) {
            if (i > run) ok = EVP_DigestUpdate(md, b + run, i - run);
            blanks++;
            run = next;
        } else {
            if (blanks && i > run) ok = ok && EVP_DigestUpdate(md, b + run, i - run);
            if (blanks) run = i;
            for (; blanks && ok; blanks--) ok = EVP_DigestUpdate(md, "\r\n", 2);
            blanks = 0;
            if (change) {
                if (i > run) ok = ok && EVP_DigestUpdate(md, b + run, i - run);
                pmx_buf_reset(&line);
                canon_body_line(&line, b + i, end - i);
                ok = ok && EVP_DigestUpdate(md, line.data, line.len);
                run = next;
            }
        }
        i = next;
    }
    if (ok && n > run) ok = EVP_DigestUpdate(md, b + run, n - run);
    pmx_buf_free(&line);
    return ok ? 0 : -1;
}

int pmx__dkim_body_hash(const char *body, size_t n, uint8_t md[32])
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    unsigned int len = 0;
    int rc = c && EVP_DigestInit_ex(c, sha256(), NULL) && body_digest(c, body, n) == 0 &&
                     EVP_DigestFinal_ex(c, md, &len) && len == 32
                 ? 0 : -1;
    EVP_MD_CTX_free(c);
    return rc;
}

/* ---- header ---------------------------------------------------------------------- */

typedef struct {
    size_t start, end;   /* the field, final CRLF excluded */
    size_t name_len;     /* without white space before ':' */
    bool   used;
} hfield_t;

/* Appends the relaxed form of one field (name: value, no CRLF). */
static void canon_header(pmx_buf_t *out, const char *f, size_t n, size_t name_len)
{
    pmx_buf_reserve(out, n + 1);
    char *w = out->data + out->len;
    for (size_t i = 0; i < name_len; i++) {
        char c = f[i];
        *w++ = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    *w++ = ':';
    const char *colon = memchr(f, ':', n);
    bool pending = false, any = false;
    for (size_t i = colon ? (size_t)(colon - f) + 1 : n; i < n; i++) {
        char c = f[i];
        if (is_wsp(c) || c == '\r' || c == '\n') {
            pending = any;
            continue;
        }
        if (pending) *w++ = ' ';
        pending = false;
        any = true;
        *w++ = c;
    }
    out->len = (size_t)(w - out->data);
    out->data[out->len] = '\0';
}

/*
 * Splits the header of msg into fields; *body is where the body starts (n
 * when there is no empty line). 0, or -1 with err.
 */
static int split_header(const char *msg, size_t n, hfield_t **out, size_t *nout, size_t *body,
                        char *err, size_t errlen)
{
    size_t cap = 16, nf = 0, i = 0, line = 0;
    hfield_t *v = pmx_xmalloc(cap * sizeof *v);
    *body = n;
    while (i < n) {
        const char *nl = memchr(msg + i, '\n', n - i);
        size_t next = nl ? (size_t)(nl - msg) + 1 : n;
        size_t end = nl ? next - 1 : n;
        if (nl && end > i && msg[end - 1] == '\r') end--;
        line++;
        if (end == i) {
            *body = next;
            break;
        }
        if (is_wsp(msg[i])) {
            if (nf == 0) goto bad;
            v[nf - 1].end = end;   /* a continuation line */
        } else {
            const char *colon = memchr(msg + i, ':', end - i);
            if (!colon || colon == msg + i) goto bad;
            size_t nl_len = (size_t)(colon - (msg + i));
            while (nl_len > 0 && is_wsp(msg[i + nl_len - 1])) nl_len--;
            if (nl_len == 0) goto bad;
            if (nf == cap) v = pmx_xrealloc(v, (cap *= 2) * sizeof *v);
            v[nf++] = (hfield_t){ .start = i, .end = end, .name_len = nl_len };
        }
        i = next;
    }
    *out = v;
    *nout = nf;
    return 0;
bad:
    free(v);
    if (errlen) snprintf(err, errlen, "header line %zu is not a field", line);
    return -1;
}

static bool name_is(const char *msg, const hfield_t *f, const char *name)
{
    return strlen(name) == f->name_len && strncasecmp(msg + f->start, name, f->name_len) == 0;
}

static bool listed(const char *msg, const hfield_t *f, const char *const *names)
{
    for (size_t k = 0; names && names[k]; k++)
        if (name_is(msg, f, names[k])) return true;
    return false;
}

/* ---- the field ------------------------------------------------------------------- */

/* Appends s[0..n) to the field being written; folds first when the line would get long. */
static void put_folded(pmx_buf_t *out, size_t *col, const char *s, size_t n, const char *fold)
{
    if (*col + n > FOLD_AT && *col > 1) {
        pmx_buf_append_str(out, fold);
        *col = strlen(fold) - 2;
        if (n > 0 && s[0] == ' ') {   /* the fold is the white space */
            s++;
            n--;
        }
    }
    pmx_buf_append(out, s, n);
    *col += n;
}

static int ssl_fail(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[160] = "";
    if (e) ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    if (errlen) snprintf(err, errlen, "%s%s%s", what, *buf ? ": " : "", buf);
    return -1;
}

/* The signature of digest md[0..32) with k into sig (up to *len octets). */
static int sign_digest(const pmx_dkim_key_t *k, const uint8_t md[32], uint8_t *sig, size_t *len,
                       char *err, size_t errlen)
{
    EVP_PKEY *pkey = k->pkey;
    int ok;
    if (k->alg == PMX_DKIM_ALG_ED25519) {
        EVP_MD_CTX *c = EVP_MD_CTX_new();
        ok = c && EVP_DigestSignInit_ex(c, NULL, NULL, NULL, NULL, pkey, NULL) == 1 &&
             EVP_DigestSign(c, sig, len, md, 32) == 1;
        EVP_MD_CTX_free(c);
    } else {
        EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
        ok = c && EVP_PKEY_sign_init(c) == 1 &&
             EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING) == 1 &&
             EVP_PKEY_CTX_set_signature_md(c, sha256()) == 1 &&
             EVP_PKEY_sign(c, sig, len, md, 32) == 1;
        EVP_PKEY_CTX_free(c);
    }
    return ok ? 0 : ssl_fail(err, errlen, "signing failed");
}

int pmx__dkim_own_sign(const pmx_dkim_key_t *k, const char *msg, size_t n,
                       const char *const *sign_fields, const char *const *oversign_fields,
                       time_t now, pmx_buf_t *out, char *err, size_t errlen)
{
    if (!k->pkey || !k->domain || !k->selector) {
        if (errlen) snprintf(err, errlen, "key not initialised");
        return -1;
    }
    hfield_t *f = NULL;
    size_t nf = 0, body = 0;
    if (split_header(msg, n, &f, &nf, &body, err, errlen) != 0) return -1;

    /* h=: the signed fields in message order, then each oversigned name once more. */
    const char **h = pmx_xcalloc(nf + 8, sizeof *h);
    size_t *hl = pmx_xcalloc(nf + 8, sizeof *hl);
    size_t nh = 0;
    bool from = false;
    for (size_t i = 0; i < nf; i++) {
        if (name_is(msg, &f[i], "From")) from = true;
        if (!listed(msg, &f[i], sign_fields)) continue;
        h[nh] = msg + f[i].start;
        hl[nh++] = f[i].name_len;
    }
    for (size_t k2 = 0; oversign_fields && oversign_fields[k2] && nh < nf + 8; k2++) {
        h[nh] = oversign_fields[k2];
        hl[nh++] = strlen(oversign_fields[k2]);
    }

    uint8_t bh[32], hh[32];
    int pk_size = EVP_PKEY_get_size(k->pkey);
    size_t siglen = pk_size > 0 ? (size_t)pk_size : 1024;
    uint8_t *sig = pmx_xmalloc(siglen);
    pmx_buf_t field = PMX_BUF_INIT, canon = PMX_BUF_INIT, b64 = PMX_BUF_INIT;
    EVP_MD_CTX *md = NULL;
    int rc = -1;
    if (!from) {
        if (errlen) snprintf(err, errlen, "no From header field");
        goto out;
    }
    if (pmx__dkim_body_hash(msg + body, n - body, bh) != 0) {
        ssl_fail(err, errlen, "body hash failed");
        goto out;
    }

    /* The field with an empty b=, as it will be sent up to there. */
    size_t col;
    pmx_buf_appendf(&field, "DKIM-Signature: v=1; a=%s; c=relaxed/relaxed;",
                    k->alg == PMX_DKIM_ALG_ED25519 ? "ed25519-sha256" : "rsa-sha256");
    col = field.len;
    char tag[512];
    const char *fold = "\r\n\t";
    int tl = snprintf(tag, sizeof tag, " d=%s;", k->domain);
    put_folded(&field, &col, tag, (size_t)tl, fold);
    tl = snprintf(tag, sizeof tag, " s=%s;", k->selector);
    put_folded(&field, &col, tag, (size_t)tl, fold);
    tl = snprintf(tag, sizeof tag, " t=%lld;", (long long)now);
    put_folded(&field, &col, tag, (size_t)tl, fold);
    pmx_base64_encode(&b64, bh, sizeof bh);
    tl = snprintf(tag, sizeof tag, " bh=%s;", b64.data);
    put_folded(&field, &col, tag, (size_t)tl, fold);
    for (size_t i = 0; i < nh; i++) {
        tl = snprintf(tag, sizeof tag, "%s%.*s%s", i == 0 ? " h=" : "",
                      (int)(hl[i] < 200 ? hl[i] : 200), h[i], i + 1 < nh ? ":" : ";");
        put_folded(&field, &col, tag, (size_t)tl, i == 0 ? fold : "\r\n\t ");
    }
    put_folded(&field, &col, " b=", 3, fold);

    /* The header hash: every h= entry's field (bottom up per name), then this field. */
    md = EVP_MD_CTX_new();
    if (!md || !EVP_DigestInit_ex(md, sha256(), NULL)) {
        ssl_fail(err, errlen, "header hash failed");
        goto out;
    }
    for (size_t i = 0; i < nh; i++) {
        hfield_t *pick = NULL;
        for (size_t j = nf; j-- > 0;) {
            if (f[j].used || f[j].name_len != hl[i] ||
                strncasecmp(msg + f[j].start, h[i], hl[i]) != 0)
                continue;
            pick = &f[j];
            break;
        }
        if (!pick) continue;
        pick->used = true;
        pmx_buf_reset(&canon);
        canon_header(&canon, msg + pick->start, pick->end - pick->start, pick->name_len);
        pmx_buf_append(&canon, "\r\n", 2);
        if (!EVP_DigestUpdate(md, canon.data, canon.len)) {
            ssl_fail(err, errlen, "header hash failed");
            goto out;
        }
    }
    pmx_buf_reset(&canon);
    canon_header(&canon, field.data, field.len, strlen("DKIM-Signature"));
    unsigned int hhlen = 0;
    if (!EVP_DigestUpdate(md, canon.data, canon.len) || !EVP_DigestFinal_ex(md, hh, &hhlen)) {
        ssl_fail(err, errlen, "header hash failed");
        goto out;
    }
    if (sign_digest(k, hh, sig, &siglen, err, errlen) != 0) goto out;

    pmx_buf_reset(&b64);
    pmx_base64_encode(&b64, sig, siglen);
    for (size_t i = 0; i < b64.len;) {
        size_t room = col < FOLD_AT ? FOLD_AT - col : 0;
        if (room < 8) {
            pmx_buf_append_str(&field, "\r\n\t ");
            col = 2;
            continue;
        }
        size_t take = b64.len - i < room ? b64.len - i : room;
        pmx_buf_append(&field, b64.data + i, take);
        col += take;
        i += take;
    }
    pmx_buf_append(&field, "\r\n", 2);
    pmx_buf_append(out, field.data, field.len);
    rc = 0;
out:
    EVP_MD_CTX_free(md);
    free(sig);
    pmx_buf_free(&field);
    pmx_buf_free(&canon);
    pmx_buf_free(&b64);
    free(h);
    free(hl);
    free(f);
    return rc;
}
