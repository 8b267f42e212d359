/*
 * dkim/signer.c: messages built by lib/mime are signed with RSA-2048 and
 * Ed25519 keys generated here (OpenSSL EVP), then verified by an independent
 * implementation, python3-dkim, through tests/tools/dkim_verify.py with the
 * public keys given as a JSON "DNS". Checks: every signature verifies; a
 * prepended second From breaks it (From is oversigned); h= lists exactly the
 * fields of docs/delivery.md that are present; no l=; dot-stuffing and un-stuffing
 * keep it valid; bad keys and non-CRLF messages are refused. The two engines
 * (postmux's own, the default, and libopendkim) agree on t=, bh= and h= for
 * awkward messages (tabs, runs of white space, trailing blanks, folded and
 * repeated fields, no final CRLF, no body) and both verify. Prints the sign
 * time per message (a measurement, not an assertion).
 *
 * The verifier runs as /usr/bin/python3 $PMX_ROOT/tests/tools/dkim_verify.py
 * (PMX_ROOT defaults to the current directory: tests/run.sh runs from the
 * repository root).
 */
#include <errno.h>
#include <setjmp.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "dkim/dkimsig.h"
#include "dkim/signer.h"
#include "lib/buf.h"
#include "lib/encode.h"
#include "lib/mem.h"
#include "lib/mime.h"
#include "lib/text.h"
#include "tests/common/dkim_ref.h"

extern char **environ;

/* Shared by all tests (key generation is the slow part). */
static struct {
    char               dir[64];
    char               keys_json[128];
    char               script[4096];
    pmx_dkim_signer_t *signer;
    pmx_dkim_key_t     rsa, ed, rsa_b;   /* acme.example s=rsa1 / s=ed1 / s=rsa2 */
    EVP_PKEY          *rsa_pkey, *ed_pkey, *rsa_b_pkey;
} T;

/* ---- helpers ---- */

static char *pem_of(EVP_PKEY *k, bool traditional)
{
    BIO *b = BIO_new(BIO_s_mem());
    int ok = traditional ? PEM_write_bio_PrivateKey_traditional(b, k, NULL, NULL, 0, NULL, NULL)
                         : PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
    assert_int_equal(ok, 1);
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *s = pmx_xstrndup(data, (size_t)n);
    BIO_free(b);
    return s;
}

/* The DNS TXT value for a key: p= is the SubjectPublicKeyInfo (RSA) or the raw key (Ed25519). */
static void txt_of(pmx_buf_t *out, EVP_PKEY *k, bool ed)
{
    uint8_t der[1024];
    size_t n = sizeof der;
    if (ed) {
        assert_int_equal(EVP_PKEY_get_raw_public_key(k, der, &n), 1);
        pmx_buf_append_str(out, "v=DKIM1; k=ed25519; p=");
    } else {
        unsigned char *p = der;
        int len = i2d_PUBKEY(k, &p);
        assert_true(len > 0 && (size_t)len <= sizeof der);
        n = (size_t)len;
        pmx_buf_append_str(out, "v=DKIM1; k=rsa; p=");
    }
    pmx_base64_encode(out, der, n);
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* Runs the verifier on path with extra flags; returns its exit status. */
static int verify_file(const char *path, const char *flag1, const char *flag2)
{
    const char *argv[10];
    int i = 0;
    argv[i++] = "/usr/bin/python3";
    argv[i++] = T.script;
    argv[i++] = "--keys";
    argv[i++] = T.keys_json;
    if (flag1) argv[i++] = flag1;
    if (flag2) argv[i++] = flag2;
    argv[i++] = path;
    argv[i] = NULL;
    fflush(stdout);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], NULL, NULL, (char *const *)argv, environ);
    if (rc != 0) fail_msg("cannot run %s: %s", argv[0], strerror(rc));
    int st;
    while (waitpid(pid, &st, 0) < 0) assert_int_equal(errno, EINTR);
    assert_true(WIFEXITED(st));
    return WEXITSTATUS(st);
}

/* Writes sig + msg to a file and verifies it (--require-crlf, --expect nsig). */
static int verify_signed(const char *name, const pmx_buf_t *sig, const pmx_buf_t *msg, int nsig)
{
    char path[256], expect[16];
    snprintf(path, sizeof path, "%s/%s", T.dir, name);
    pmx_buf_t all = PMX_BUF_INIT;
    pmx_buf_append(&all, sig->data, sig->len);
    pmx_buf_append(&all, msg->data, msg->len);
    write_file(path, all.data, all.len);
    pmx_buf_free(&all);
    snprintf(expect, sizeof expect, "%d", nsig);
    char flag[32];
    snprintf(flag, sizeof flag, "--expect=%s", expect);
    return verify_file(path, "--require-crlf", flag);
}

static pmx_addr_t mk_addr(const char *display, const char *addr)
{
    pmx_addr_t a = { display ? pmx_xstrdup(display) : NULL, pmx_xstrdup(addr) };
    return a;
}

/* A composed message of about 2 KB with everything docs/delivery.md signs. */
static void build_composed(pmx_buf_t *msg, bool with_cc)
{
    pmx_job_t j;
    memset(&j, 0, sizeof j);
    j.from = mk_addr("Acme Bäckerei", "news@acme.example");
    j.to.n = 2;
    j.to.v = pmx_xcalloc(2, sizeof *j.to.v);
    j.to.v[0] = mk_addr("Jane Doe", "jane@example.org");
    j.to.v[1] = mk_addr(NULL, "bob@example.net");
    if (with_cc) {
        j.cc.n = 1;
        j.cc.v = pmx_xcalloc(1, sizeof *j.cc.v);
        j.cc.v[0] = mk_addr("Carl", "carl@example.net");
        j.reply_to = pmx_xmalloc(sizeof *j.reply_to);
        *j.reply_to = mk_addr(NULL, "support@acme.example");
    }
    j.bcc.n = 1;
    j.bcc.v = pmx_xcalloc(1, sizeof *j.bcc.v);
    j.bcc.v[0] = mk_addr("Hidden", "hidden@secret.example");
    j.subject = pmx_xstrdup("Ihre Rechnung für November — Grüße 🎉");
    pmx_buf_t text = PMX_BUF_INIT;
    for (int i = 0; i < 12; i++)
        pmx_buf_appendf(&text, "Line %d of the text part, with some words in it. Grüße.\n", i);
    pmx_buf_append_str(&text, ".a line starting with a dot\n.\nlast line\n");
    j.text = pmx_buf_detach(&text);
    j.text_len = strlen(j.text);
    j.html = pmx_xstrdup("<html><body><p>Hello <b>Jane</b>,</p><p>your invoice is ready.</p>\n"
                         "<p>Totals: 100 € — thank you.</p></body></html>\n");
    j.html_len = strlen(j.html);
    j.nheaders = 1;
    j.headers = pmx_xcalloc(1, sizeof *j.headers);
    j.headers[0].name = pmx_xstrdup("X-Campaign");
    j.headers[0].value = pmx_xstrdup("november");
    pmx_mime_field_t added[] = { { "X-Original-To", "someone@example.org" } };
    pmx_mime_opts_t o;
    memset(&o, 0, sizeof o);
    o.msgid = "msg_test";
    o.date = time(NULL);
    o.fields = added;
    o.nfields = 1;
    char err[256];
    if (pmx_mime_build(&j, &o, msg, err, sizeof err) != 0) fail_msg("build: %s", err);
    pmx_job_free(&j);
}

/* The value of tag t= in one DKIM-Signature field, unfolded (white space removed). */
static char *sig_tag(const char *field, const char *tag)
{
    pmx_buf_t u = PMX_BUF_INIT;
    for (const char *p = strchr(field, ':') + 1; *p; p++)
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') pmx_buf_append_char(&u, *p);
    char *s = pmx_buf_detach(&u), *save = NULL, *found = NULL;
    for (char *kv = strtok_r(s, ";", &save); kv; kv = strtok_r(NULL, ";", &save)) {
        char *eq = strchr(kv, '=');
        if (eq && (size_t)(eq - kv) == strlen(tag) && strncmp(kv, tag, strlen(tag)) == 0) {
            found = pmx_xstrdup(eq + 1);
            break;
        }
    }
    free(s);
    return found;
}

/* The i-th "DKIM-Signature:" field (with its folds) of sig, NUL-terminated. */
static char *sig_field(const pmx_buf_t *sig, int i)
{
    const char *p = sig->data;
    for (int k = 0; ; k++) {
        assert_true(strncmp(p, "DKIM-Signature: ", 16) == 0);
        const char *e = p;
        for (;;) {
            e = strstr(e, "\r\n");
            assert_non_null(e);
            e += 2;
            if (*e != ' ' && *e != '\t') break;
        }
        if (k == i) return pmx_xstrndup(p, (size_t)(e - p));
        p = e;
    }
}

/* Sorted, lowercased h= list joined by ':' (to compare as a multiset). */
static char *h_sorted(const char *h)
{
    char *copy = pmx_xstrdup(h), *save = NULL, *names[64];
    int n = 0;
    for (char *t = strtok_r(copy, ":", &save); t && n < 64; t = strtok_r(NULL, ":", &save)) {
        for (char *c = t; *c; c++) *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
        names[n++] = t;
    }
    for (int i = 1; i < n; i++)
        for (int k = i; k > 0 && strcmp(names[k - 1], names[k]) > 0; k--) {
            char *x = names[k]; names[k] = names[k - 1]; names[k - 1] = x;
        }
    pmx_buf_t b = PMX_BUF_INIT;
    for (int i = 0; i < n; i++) pmx_buf_appendf(&b, "%s%s", i ? ":" : "", names[i]);
    free(copy);
    return pmx_buf_detach(&b);
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* ---- setup ---- */

static int setup(void **state)
{
    (void)state;
    const char *root = getenv("PMX_ROOT");
    snprintf(T.script, sizeof T.script, "%s/tests/tools/dkim_verify.py", root && *root ? root : ".");
    if (access(T.script, R_OK) != 0) {
        fprintf(stderr, "test_signer: %s not found (run from the repository root or set PMX_ROOT)\n", T.script);
        return -1;
    }
    if (access("/usr/bin/python3", X_OK) != 0) {
        fprintf(stderr, "test_signer: /usr/bin/python3 is missing (python3-dkim is needed)\n");
        return -1;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(T.dir, sizeof T.dir, "%s/pmx_signer_XXXXXX", tmp && strlen(tmp) < 30 ? tmp : "/tmp");
    if (!mkdtemp(T.dir)) return -1;

    T.rsa_pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    T.rsa_b_pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    T.ed_pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (!T.rsa_pkey || !T.rsa_b_pkey || !T.ed_pkey) return -1;

    char err[256];
    char *pem = pem_of(T.rsa_pkey, false);
    if (pmx_dkim_key_init(&T.rsa, "Acme.Example", "rsa1", PMX_DKIM_ALG_RSA, pem, strlen(pem), err, sizeof err) != 0) {
        fprintf(stderr, "rsa key: %s\n", err);
        return -1;
    }
    free(pem);
    pem = pem_of(T.rsa_b_pkey, true);   /* traditional "RSA PRIVATE KEY" is accepted too */
    if (pmx_dkim_key_init(&T.rsa_b, "acme.example", "rsa2", PMX_DKIM_ALG_RSA, pem, strlen(pem), err, sizeof err) != 0) {
        fprintf(stderr, "rsa key 2: %s\n", err);
        return -1;
    }
    free(pem);
    pem = pem_of(T.ed_pkey, false);
    if (pmx_dkim_key_init(&T.ed, "acme.example", "ed1", PMX_DKIM_ALG_ED25519, pem, strlen(pem), err, sizeof err) != 0) {
        fprintf(stderr, "ed25519 key: %s\n", err);
        return -1;
    }
    free(pem);

    pmx_buf_t j = PMX_BUF_INIT, v = PMX_BUF_INIT;
    pmx_buf_append_str(&j, "{\"rsa1._domainkey.acme.example\": \"");
    txt_of(&j, T.rsa_pkey, false);
    pmx_buf_append_str(&j, "\", \"rsa2._domainkey.acme.example\": \"");
    txt_of(&j, T.rsa_b_pkey, false);
    pmx_buf_append_str(&j, "\", \"ed1._domainkey.acme.example\": \"");
    txt_of(&j, T.ed_pkey, true);
    pmx_buf_append_str(&j, "\"}\n");
    snprintf(T.keys_json, sizeof T.keys_json, "%s/keys.json", T.dir);
    write_file(T.keys_json, j.data, j.len);
    pmx_buf_free(&j);
    pmx_buf_free(&v);

    T.signer = pmx_dkim_signer_new();
    return T.signer ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    pmx_dkim_signer_free(T.signer);
    pmx_dkim_key_free(&T.rsa);
    pmx_dkim_key_free(&T.rsa_b);
    pmx_dkim_key_free(&T.ed);
    EVP_PKEY_free(T.rsa_pkey);
    EVP_PKEY_free(T.rsa_b_pkey);
    EVP_PKEY_free(T.ed_pkey);
    if (T.dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", T.dir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", T.dir);
    }
    return 0;
}

/* ---- tests ---- */

static void test_sign_rsa_and_ed25519_verify(void **state)
{
    (void)state;
    pmx_buf_t msg = PMX_BUF_INIT, sig = PMX_BUF_INIT;
    build_composed(&msg, true);
    pmx_dkim_key_t keys[] = { T.rsa, T.ed };
    char err[256] = "";
    if (pmx_dkim_sign(T.signer, keys, 2, msg.data, msg.len, &sig, err, sizeof err) != 0)
        fail_msg("sign: %s", err);
    assert_true(pmx_text_is_crlf(sig.data, sig.len));
    assert_true(pmx_text_longest_line(sig.data, sig.len) <= 78);

    const char *algs[] = { "rsa-sha256", "ed25519-sha256" };
    const char *sels[] = { "rsa1", "ed1" };
    for (int i = 0; i < 2; i++) {
        char *f = sig_field(&sig, i), *a = sig_tag(f, "a"), *c = sig_tag(f, "c"), *d = sig_tag(f, "d"),
             *s = sig_tag(f, "s"), *h = sig_tag(f, "h"), *l = sig_tag(f, "l");
        assert_string_equal(a, algs[i]);
        assert_string_equal(c, "relaxed/relaxed");
        assert_string_equal(d, "acme.example");
        assert_string_equal(s, sels[i]);
        assert_null(l);
        /* Every docs/delivery.md field present, From twice (oversigned), nothing else. */
        char *hs = h_sorted(h);
        assert_string_equal(hs, "cc:content-type:date:from:from:message-id:mime-version:"
                                "reply-to:subject:to");
        free(hs); free(f); free(a); free(c); free(d); free(s); free(h);
    }
    assert_int_equal(verify_signed("composed.eml", &sig, &msg, 2), 0);
    /* Bcc never appears in what is signed and sent. */
    assert_null(strstr(msg.data, "hidden@secret.example"));
    assert_null(strcasestr(msg.data, "\nbcc:"));
    pmx_buf_free(&sig);
    pmx_buf_free(&msg);
}

static void test_only_present_fields_signed(void **state)
{
    (void)state;
    pmx_buf_t msg = PMX_BUF_INIT, sig = PMX_BUF_INIT;
    build_composed(&msg, false);   /* no Cc, no Reply-To */
    char err[256];
    assert_int_equal(pmx_dkim_sign(T.signer, &T.rsa_b, 1, msg.data, msg.len, &sig, err, sizeof err), 0);
    char *f = sig_field(&sig, 0), *h = sig_tag(f, "h"), *hs = h_sorted(h);
    assert_string_equal(hs, "content-type:date:from:from:message-id:mime-version:subject:to");
    assert_int_equal(verify_signed("nocc.eml", &sig, &msg, 1), 0);
    free(f); free(h); free(hs);
    pmx_buf_free(&sig);
    pmx_buf_free(&msg);

    /* A single part also signs Content-Transfer-Encoding. */
    const char raw[] = "From: a@acme.example\r\nTo: b@example.org\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
                       "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n"
                       "X-Mailer: not signed\r\n\r\nhi\r\n";
    pmx_mime_opts_t o;
    memset(&o, 0, sizeof o);
    o.msgid = "m1";
    o.date = time(NULL);
    assert_int_equal(pmx_mime_prepare_raw(raw, sizeof raw - 1, &o, &msg, err, sizeof err), 0);
    assert_int_equal(pmx_dkim_sign(T.signer, &T.rsa, 1, msg.data, msg.len, &sig, err, sizeof err), 0);
    f = sig_field(&sig, 0);
    h = sig_tag(f, "h");
    hs = h_sorted(h);
    assert_string_equal(hs, "content-transfer-encoding:content-type:date:from:from:message-id:"
                            "mime-version:subject:to");
    assert_int_equal(verify_signed("single.eml", &sig, &msg, 1), 0);
    free(f); free(h); free(hs);
    pmx_buf_free(&sig);
    pmx_buf_free(&msg);
}

static void test_prepended_from_breaks_signature(void **state)
{
    (void)state;
    pmx_buf_t msg = PMX_BUF_INIT, sig = PMX_BUF_INIT, evil = PMX_BUF_INIT;
    build_composed(&msg, true);
    pmx_dkim_key_t keys[] = { T.rsa, T.ed };
    char err[256];
    assert_int_equal(pmx_dkim_sign(T.signer, keys, 2, msg.data, msg.len, &sig, err, sizeof err), 0);
    assert_int_equal(verify_signed("good.eml", &sig, &msg, 2), 0);

    /* A second From on top (where a verifier would find it first). */
    pmx_buf_append_str(&evil, "From: ceo@acme.example\r\n");
    pmx_buf_append(&evil, msg.data, msg.len);
    assert_int_equal(verify_signed("from_top.eml", &sig, &evil, 2), 1);
    /* ... or just before the signed header block. */
    pmx_buf_t sig2 = PMX_BUF_INIT;
    pmx_buf_append(&sig2, sig.data, sig.len);
    pmx_buf_append_str(&sig2, "From: ceo@acme.example\r\n");
    assert_int_equal(verify_signed("from_mid.eml", &sig2, &msg, 2), 1);

    /* The verifier does fail on a changed body too (it can fail). */
    pmx_buf_reset(&evil);
    pmx_buf_append(&evil, msg.data, msg.len);
    char *p = strstr(evil.data, "Line 3");
    p[5] = '4';
    assert_int_equal(verify_signed("body.eml", &sig, &evil, 2), 1);
    pmx_buf_free(&sig2);
    pmx_buf_free(&evil);
    pmx_buf_free(&sig);
    pmx_buf_free(&msg);
}

static void test_raw_dot_stuffed_still_verifies(void **state)
{
    (void)state;
    const char raw[] = "From: Acme <news@acme.example>\nTo: jane@example.org\nSubject: dots\n\n"
                       "first line\n.starts with a dot\n.\n..\nbare cr line\rQUIT\r\n.\r\nend";
    pmx_mime_opts_t o;
    memset(&o, 0, sizeof o);
    o.msgid = "msg_raw";
    o.date = time(NULL);
    pmx_buf_t msg = PMX_BUF_INIT, sig = PMX_BUF_INIT, data = PMX_BUF_INIT, back = PMX_BUF_INIT;
    char err[256];
    assert_int_equal(pmx_mime_prepare_raw(raw, sizeof raw - 1, &o, &msg, err, sizeof err), 0);
    pmx_dkim_key_t keys[] = { T.ed, T.rsa };
    assert_int_equal(pmx_dkim_sign(T.signer, keys, 2, msg.data, msg.len, &sig, err, sizeof err), 0);
    assert_int_equal(verify_signed("raw.eml", &sig, &msg, 2), 0);

    /* As sent in DATA: python un-stuffs it independently and verifies. */
    pmx_buf_t all = PMX_BUF_INIT;
    pmx_buf_append(&all, sig.data, sig.len);
    pmx_buf_append(&all, msg.data, msg.len);
    pmx_text_dot_stuff(&data, all.data, all.len);
    assert_ptr_equal(strstr(data.data, "\r\n.\r\n"), data.data + data.len - 5);
    char path[256];
    snprintf(path, sizeof path, "%s/raw.data", T.dir);
    write_file(path, data.data, data.len);
    assert_int_equal(verify_file(path, "--smtp-data", "--require-crlf"), 0);
    /* And our own un-stuffing gives the signed octets back. */
    assert_int_equal(pmx_text_dot_unstuff(&back, data.data, data.len), 0);
    assert_int_equal(back.len, all.len);
    assert_memory_equal(back.data, all.data, all.len);
    /* DATA that ends early is refused by the verifier (the check can fail). */
    pmx_buf_t early = PMX_BUF_INIT;
    pmx_buf_append_str(&early, "From: x@acme.example\r\n\r\n.\r\nQUIT\r\n.\r\n");
    write_file(path, early.data, early.len);
    assert_int_equal(verify_file(path, "--smtp-data", NULL), 1);
    pmx_buf_free(&early);
    pmx_buf_free(&all);
    pmx_buf_free(&back);
    pmx_buf_free(&data);
    pmx_buf_free(&sig);
    pmx_buf_free(&msg);
}

static void test_body_hash_matches_reference(void **state)
{
    (void)state;
    static const char *const pieces[] = { "\r\n", " ", "\t", "  ", "word", ".", "\r\n\r\n", "x y" };
    uint32_t seed = 7;
    for (int round = 0; round < 3000; round++) {
        pmx_buf_t body = PMX_BUF_INIT, canon = PMX_BUF_INIT;
        int k = round % 60;
        for (int i = 0; i < k; i++) {
            seed = seed * 1103515245u + 12345u;
            pmx_buf_append_str(&body, pieces[(seed >> 16) % (sizeof pieces / sizeof pieces[0])]);
        }
        pmx_test_ref_relaxed_body(&canon, body.data ? body.data : "", body.len);
        uint8_t want[32], got[32];
        unsigned int wl = 0;
        assert_int_equal(EVP_Digest(canon.data ? canon.data : "", canon.len, want, &wl, EVP_sha256(), NULL), 1);
        assert_int_equal(pmx__dkim_body_hash(body.data ? body.data : "", body.len, got), 0);
        if (memcmp(want, got, 32) != 0) fail_msg("body hash differs on [%s]", body.data ? body.data : "");
        pmx_buf_free(&body);
        pmx_buf_free(&canon);
    }
}

/* Both engines on the same messages and time: same t=, bh= and h=, both verify. */
static void test_engines_agree(void **state)
{
    (void)state;
    static const char *const msgs[] = {
        /* tabs, runs of spaces, trailing white space, blank lines inside and at the end */
        "From: Acme <news@acme.example>\r\nTo:  jane@example.org \r\nSubject:\tHello \t world\r\n"
        "\r\nline  one \r\n\tindented\t\tline\r\n\r\n   \r\nafter blanks\r\n\r\n \t\r\n\r\n",
        /* folded fields, a repeated Cc (two h= entries, bottom first), odd name case */
        "FROM: news@acme.example\r\nCc: a@example.org,\r\n\t b@example.org\r\n"
        "Subject: folded\r\n  subject line\r\ncc: c@example.org\r\nX-Other: not signed\r\n"
        "\r\nbody\r\n",
        /* empty body, and no body at all */
        "From: news@acme.example\r\nSubject: empty\r\n\r\n",
        "From: news@acme.example\r\nSubject: header only\r\n",
        /* only blank lines */
        "From: news@acme.example\r\n\r\n\r\n  \r\n\r\n",
    };
    pmx_buf_t big = PMX_BUF_INIT;
    build_composed(&big, true);
    assert_int_equal(pmx_dkim_signer_set_time(T.signer, 1765000000), 0);
    pmx_dkim_key_t keys[] = { T.rsa, T.ed };
    for (size_t m = 0; m <= sizeof msgs / sizeof msgs[0]; m++) {
        pmx_buf_t msg = PMX_BUF_INIT;
        if (m < sizeof msgs / sizeof msgs[0]) pmx_buf_append_str(&msg, msgs[m]);
        else pmx_buf_append(&msg, big.data, big.len);
        pmx_buf_t own = PMX_BUF_INIT, lib = PMX_BUF_INIT;
        char err[256];
        pmx_dkim_signer_set_engine(T.signer, PMX_DKIM_ENGINE_LIBOPENDKIM);
        if (pmx_dkim_sign(T.signer, keys, 2, msg.data, msg.len, &lib, err, sizeof err) != 0)
            fail_msg("libopendkim, message %zu: %s", m, err);
        pmx_dkim_signer_set_engine(T.signer, PMX_DKIM_ENGINE_OWN);
        if (pmx_dkim_sign(T.signer, keys, 2, msg.data, msg.len, &own, err, sizeof err) != 0)
            fail_msg("own, message %zu: %s", m, err);
        for (int i = 0; i < 2; i++) {
            char *fo = sig_field(&own, i), *fl = sig_field(&lib, i);
            static const char *const tags[] = { "v", "a", "c", "d", "s", "t", "bh", "h" };
            for (size_t t = 0; t < sizeof tags / sizeof tags[0]; t++) {
                char *a = sig_tag(fo, tags[t]), *b = sig_tag(fl, tags[t]);
                if (!a || !b || strcmp(a, b) != 0)
                    fail_msg("message %zu, signature %d, %s=: own [%s], libopendkim [%s]", m, i,
                             tags[t], a ? a : "(none)", b ? b : "(none)");
                free(a);
                free(b);
            }
            char *b = sig_tag(fo, "b");
            assert_non_null(b);
            assert_true(strlen(b) > 80);
            free(b);
            /* No line of the field is longer than 78 octets. */
            for (const char *p = fo, *e; (e = strstr(p, "\r\n")); p = e + 2)
                assert_true(e - p <= 78);
            free(fo);
            free(fl);
        }
        char name[32];
        snprintf(name, sizeof name, "own%zu.eml", m);
        assert_int_equal(verify_signed(name, &own, &msg, 2), 0);
        snprintf(name, sizeof name, "lib%zu.eml", m);
        assert_int_equal(verify_signed(name, &lib, &msg, 2), 0);
        pmx_buf_free(&own);
        pmx_buf_free(&lib);
        pmx_buf_free(&msg);
    }
    assert_int_equal(pmx_dkim_signer_set_time(T.signer, 0), 0);

    /* A last line without CRLF: the own engine hashes it with one (RFC 6376
     * 3.4.4), as the SMTP client sends it (dot-stuffing ends the data with
     * CRLF); libopendkim 2.11 hashes it without, so there the two differ on
     * purpose. What goes out in DATA verifies. */
    const char *nocrlf = "From: news@acme.example\r\nSubject: no final crlf\r\n\r\nlast line  ";
    pmx_buf_t m2 = PMX_BUF_INIT, s2 = PMX_BUF_INIT;
    pmx_buf_append_str(&m2, nocrlf);
    char e2[256];
    assert_int_equal(pmx_dkim_sign(T.signer, keys, 2, m2.data, m2.len, &s2, e2, sizeof e2), 0);
    pmx_buf_t all2 = PMX_BUF_INIT, data2 = PMX_BUF_INIT;
    pmx_buf_append(&all2, s2.data, s2.len);
    pmx_buf_append(&all2, m2.data, m2.len);
    pmx_text_dot_stuff(&data2, all2.data, all2.len);
    char p2[256];
    snprintf(p2, sizeof p2, "%s/nocrlf.data", T.dir);
    write_file(p2, data2.data, data2.len);
    assert_int_equal(verify_file(p2, "--smtp-data", "--require-crlf"), 0);
    pmx_buf_free(&all2);
    pmx_buf_free(&data2);
    pmx_buf_free(&m2);
    pmx_buf_free(&s2);

    /* What the own engine refuses: no From, a line that is not a field. */
    pmx_buf_t sig = PMX_BUF_INIT;
    char err[256];
    const char *nofield = "From: a@acme.example\r\nnot a field\r\n\r\nbody\r\n";
    assert_int_equal(pmx_dkim_sign(T.signer, &T.rsa, 1, nofield, strlen(nofield), &sig, err, sizeof err), -1);
    assert_string_equal(err, "d=acme.example s=rsa1: header line 2 is not a field");
    const char *cont = " continued\r\nFrom: a@acme.example\r\n\r\n";
    assert_int_equal(pmx_dkim_sign(T.signer, &T.rsa, 1, cont, strlen(cont), &sig, err, sizeof err), -1);
    assert_string_equal(err, "d=acme.example s=rsa1: header line 1 is not a field");
    assert_int_equal(sig.len, 0);
    pmx_buf_free(&sig);
    pmx_buf_free(&big);
}

static void test_refuses_non_crlf(void **state)
{
    (void)state;
    pmx_buf_t sig = PMX_BUF_INIT;
    pmx_buf_append_str(&sig, "KEEP");
    char err[256] = "";
    const char *bad = "From: a@acme.example\nSubject: s\n\nbody\n";
    assert_int_equal(pmx_dkim_sign(T.signer, &T.rsa, 1, bad, strlen(bad), &sig, err, sizeof err), -1);
    assert_string_equal(err, "message is not CRLF-normalised");
    assert_string_equal(sig.data, "KEEP");
    /* No From at all: libopendkim's reason comes back, nothing appended. */
    const char *nofrom = "Subject: s\r\n\r\nbody\r\n";
    assert_int_equal(pmx_dkim_sign(T.signer, &T.rsa, 1, nofrom, strlen(nofrom), &sig, err, sizeof err), -1);
    assert_true(strncmp(err, "d=acme.example s=rsa1: ", 23) == 0);
    assert_string_equal(sig.data, "KEEP");
    /* No keys: nothing to do. */
    assert_int_equal(pmx_dkim_sign(T.signer, NULL, 0, "a\r\n", 3, &sig, err, sizeof err), 0);
    assert_string_equal(sig.data, "KEEP");
    pmx_buf_free(&sig);
}

static void expect_key_error(const char *domain, const char *sel, pmx_dkim_alg_t alg, const char *pem,
                             const char *want)
{
    pmx_dkim_key_t k;
    char err[256] = "";
    assert_int_equal(pmx_dkim_key_init(&k, domain, sel, alg, pem, strlen(pem), err, sizeof err), -1);
    if (strcmp(err, want) != 0) fail_msg("error [%s], want [%s]", err, want);
    assert_null(k.pem);
    assert_null(k.pkey);
    pmx_dkim_key_free(&k);
}

static void test_key_refusals(void **state)
{
    (void)state;
    char *rsa = pem_of(T.rsa_pkey, false), *ed = pem_of(T.ed_pkey, false);
    expect_key_error("acme.example", "s", PMX_DKIM_ALG_ED25519, rsa,
                     "private key: not an Ed25519 key (algorithm ed25519-sha256)");
    expect_key_error("acme.example", "s", PMX_DKIM_ALG_RSA, ed,
                     "private key: not an RSA key (algorithm rsa-sha256)");
    expect_key_error("acme.example", "s", PMX_DKIM_ALG_RSA, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                     "private key: not a readable, unencrypted PEM key");
    expect_key_error("acme example", "s", PMX_DKIM_ALG_RSA, rsa, "domain: not a DNS name");
    expect_key_error("acme.example", "", PMX_DKIM_ALG_RSA, rsa, "selector: not a DNS name");
    expect_key_error("acme.example", "a;b", PMX_DKIM_ALG_RSA, rsa, "selector: not a DNS name");

    /* An encrypted key fails (and never prompts for a pass phrase). */
    BIO *b = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PrivateKey(b, T.rsa_pkey, EVP_aes_256_cbc(),
                                              (unsigned char *)"secret", 6, NULL, NULL), 1);
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *enc = pmx_xstrndup(data, (size_t)n);
    BIO_free(b);
    expect_key_error("acme.example", "s", PMX_DKIM_ALG_RSA, enc,
                     "private key: not a readable, unencrypted PEM key");

    EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)512);
    assert_non_null(small);
    char *sp = pem_of(small, false);
    expect_key_error("acme.example", "s", PMX_DKIM_ALG_RSA, sp, "private key: RSA under 1024 bits");

    /* The accepted ones report their size and a lowercase domain. */
    assert_int_equal(T.rsa.bits, 2048);
    assert_int_equal(T.ed.bits, 256);
    assert_string_equal(T.rsa.domain, "acme.example");
    assert_true(strncmp(T.rsa_b.pem, "-----BEGIN PRIVATE KEY-----", 27) == 0);   /* PKCS#8 */
    EVP_PKEY_free(small);
    free(sp); free(enc); free(rsa); free(ed);
}

/* Signs `count` copies of msg with one key; returns microseconds per message. */
static double time_signing(const pmx_dkim_key_t *k, const pmx_buf_t *msg, int count, pmx_buf_t *last)
{
    char err[256];
    double t0 = now_us();
    for (int i = 0; i < count; i++) {
        pmx_buf_reset(last);
        if (pmx_dkim_sign(T.signer, k, 1, msg->data, msg->len, last, err, sizeof err) != 0)
            fail_msg("sign: %s", err);
    }
    return (now_us() - t0) / count;
}

static void test_key_reuse_and_sign_time(void **state)
{
    (void)state;
    pmx_buf_t msg = PMX_BUF_INIT, sig = PMX_BUF_INIT;
    build_composed(&msg, true);
    /* The own engine first (the default), then libopendkim's key reuse. */
    double rsa_own = time_signing(&T.rsa, &msg, 200, &sig);
    assert_int_equal(verify_signed("t_rsa_own.eml", &sig, &msg, 1), 0);
    double ed_own = time_signing(&T.ed, &msg, 500, &sig);
    assert_int_equal(verify_signed("t_ed_own.eml", &sig, &msg, 1), 0);
    pmx_dkim_signer_set_engine(T.signer, PMX_DKIM_ENGINE_LIBOPENDKIM);
    pmx_dkim_signer_stats_t s0, s1, s2;
    pmx_dkim_signer_stats(T.signer, &s0);

    double rsa_reuse = time_signing(&T.rsa, &msg, 200, &sig);
    assert_int_equal(verify_signed("t_rsa.eml", &sig, &msg, 1), 0);
    pmx_dkim_signer_stats(T.signer, &s1);
    assert_int_equal(s1.leaked_blocks, s0.leaked_blocks);   /* RSA handles free everything */
    assert_false(pmx_dkim_signer_lib_keeps_key(T.signer, PMX_DKIM_ALG_RSA));
    double ed_reuse = time_signing(&T.ed, &msg, 500, &sig);
    assert_int_equal(verify_signed("t_ed.eml", &sig, &msg, 1), 0);
    pmx_dkim_signer_stats(T.signer, &s1);
    printf("libopendkim left %llu blocks after 500 ed25519 handles (freed by the signer); "
           "it %s its ed25519 key reference\n", s1.leaked_blocks - s0.leaked_blocks,
           pmx_dkim_signer_lib_keeps_key(T.signer, PMX_DKIM_ALG_ED25519) ? "keeps" : "releases");
    /* Every one of these signatures used the key parsed once. */
    assert_int_equal(s1.signatures - s0.signatures, 700);
    assert_int_equal(s1.key_reused - s0.key_reused, 700);

    pmx_dkim_signer_set_key_reuse(T.signer, false);
    double rsa_parse = time_signing(&T.rsa, &msg, 40, &sig);
    assert_int_equal(verify_signed("t_rsa_parse.eml", &sig, &msg, 1), 0);
    double ed_parse = time_signing(&T.ed, &msg, 100, &sig);
    assert_int_equal(verify_signed("t_ed_parse.eml", &sig, &msg, 1), 0);
    pmx_dkim_signer_set_key_reuse(T.signer, true);
    pmx_dkim_signer_set_engine(T.signer, PMX_DKIM_ENGINE_OWN);
    pmx_dkim_signer_stats(T.signer, &s2);
    assert_int_equal(s2.signatures - s1.signatures, 140);
    assert_int_equal(s2.key_reused, s1.key_reused);

    printf("sign time per message (%zu-octet message, one signature, this build):\n"
           "  rsa-sha256 2048  own engine: %7.1f us   libopendkim, key parsed once: %7.1f us"
           "   libopendkim parsing the PEM: %7.1f us\n"
           "  ed25519-sha256   own engine: %7.1f us   libopendkim, key parsed once: %7.1f us"
           "   libopendkim parsing the PEM: %7.1f us\n",
           msg.len, rsa_own, rsa_reuse, rsa_parse, ed_own, ed_reuse, ed_parse);
    pmx_buf_free(&sig);
    pmx_buf_free(&msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_rsa_and_ed25519_verify),
        cmocka_unit_test(test_only_present_fields_signed),
        cmocka_unit_test(test_prepended_from_breaks_signature),
        cmocka_unit_test(test_raw_dot_stuffed_still_verifies),
        cmocka_unit_test(test_engines_agree),
        cmocka_unit_test(test_body_hash_matches_reference),
        cmocka_unit_test(test_refuses_non_crlf),
        cmocka_unit_test(test_key_refusals),
        cmocka_unit_test(test_key_reuse_and_sign_time),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
