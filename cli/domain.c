/*
 * `postmux domain add|list|show|verify|remove` (postmux(1)): a workspace's
 * sending domains and their DKIM keys.
 *
 * add     generates (or imports) the keys, seals each private key under the
 *         master key (dkim/keycrypt.h), writes the domain and its keys in one
 *         transaction and prints exactly the TXT records to publish.
 * verify  looks the records up in DNS (cli/dns.h) and marks the domain
 *         verified only when the token and every key's p= are published;
 *         --skip-dns is the administrator's override, written to events.
 * show    --check-keys decrypts every key and checks it against its public
 *         key: the way to prove a master key file is the right one.
 *
 * Selector rule: a key uses --selector S (default "pmx"); with --algorithm
 * both, the RSA key uses S and the Ed25519 key "S-ed25519". Adding a domain
 * the workspace already has adds keys under new selectors (key rotation);
 * while the domain is verified those keys stay inactive until the next
 * successful `domain verify` finds them in DNS, so mail is never signed with
 * a key nobody can look up.
 *
 * One file per verb group (cli.h), so the five subcommands live together; the
 * parts with a job of their own are elsewhere: DNS lookups in cli/dns.c, keys
 * and sealing in dkim/keygen.c and dkim/keycrypt.c.
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "cli/cli.h"
#include "cli/dns.h"
#include "dkim/dnscheck.h"
#include "dkim/keycrypt.h"
#include "dkim/keygen.h"
#include "dkim/newkey.h"
#include "lib/buf.h"
#include "lib/encode.h"
#include "lib/mem.h"
#include "lib/verp.h"
#include "sql/q_domain.h"

#define DEFAULT_SELECTOR   "pmx"
#define ED25519_SUFFIX     PMX_DKIM_ED25519_SUFFIX
#define DOMAIN_MAX         PMX_DOMAIN_MAX
#define LABEL_MAX          63
#define KEY_FILE_MAX       (1024 * 1024)
#define TXT_CHUNK          255           /* longest DNS character-string */

static const char usage_text[] =
    "usage: postmux domain add WS DOMAIN [--selector S] [--algorithm rsa|ed25519|both]\n"
    "                          [--bits 2048..4096] [--private-key FILE] [--return-path NAME]\n"
    "       postmux domain verify DOMAIN [--nameserver IP[:PORT]] [--skip-dns]\n"
    "       postmux domain list [WS] [--json]\n"
    "       postmux domain show DOMAIN [--json] [--check-keys]\n"
    "       postmux domain remove DOMAIN\n"
    "WS is a workspace id (ws_...) or name. The default selector is pmx; with\n"
    "--algorithm both the Ed25519 key uses SELECTOR-ed25519. --return-path names the\n"
    "return-path domain (a subdomain of DOMAIN; default bounces.DOMAIN).\n";

/* ---- input checks ---- */

/* The name check is shared with API v1 (sql/q_domain.h). */
static int normalize_domain(const char *in, char *out, char *why, size_t whylen)
{
    return pmx_domain_normalize(in, out, why, whylen);
}

/* The domain argument of verify/show/remove: normalised, or an error printed. */
static int domain_arg(const char *in, char *out)
{
    char why[128];
    if (normalize_domain(in, out, why, sizeof why) < 0) {
        pmx_cli_error("invalid domain '%s': %s", in, why);
        return -1;
    }
    return 0;
}

/*
 * A selector (one DNS label, lowercased): letters, digits and inner '-',
 * 1..max characters, as the dkim_keys CHECK allows.
 */
static int normalize_selector(const char *in, char *out, size_t max)
{
    size_t n = strlen(in);
    if (n == 0 || n > max) return -1;
    for (size_t i = 0; i < n; i++) {
        char ch = in[i];
        if (ch >= 'A' && ch <= 'Z') ch = (char)(ch - 'A' + 'a');
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-')) return -1;
        out[i] = ch;
    }
    out[n] = '\0';
    return out[0] == '-' || out[n - 1] == '-' ? -1 : 0;
}

/* Reads a small file whole (a PEM key); the caller wipes and frees it. */
static int read_key_file(const char *path, pmx_buf_t *out)
{
    FILE *f = fopen(path, "rb");
    if (!f) return pmx_cli_error("cannot open %s: %s", path, strerror(errno));
    char chunk[4096];
    size_t got;
    int rc = 0;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
        pmx_buf_append(out, chunk, got);
        if (out->len > KEY_FILE_MAX) {
            rc = pmx_cli_error("%s: too large for a private key", path);
            break;
        }
    }
    if (!rc && ferror(f)) rc = pmx_cli_error("cannot read %s: %s", path, strerror(errno));
    pmx_wipe(chunk, sizeof chunk);
    fclose(f);
    return rc;
}

/* Loads the config's master key; prints why not and returns -1. */
static int load_master(pmx_cli_t *c, uint8_t key[PMX_DKIM_MASTER_KEY_LEN])
{
    if (pmx_cli_config(c) < 0) return -1;
    char err[600];
    if (pmx_dkim_master_key_load(c->cfg.master_key_file, key, err, sizeof err) < 0) {
        pmx_cli_error("%s", err);
        return -1;
    }
    return 0;
}

/* ---- output ---- */

/* One zone-file line: NAME. TXT "..." "..." (strings of at most 255 bytes). */
static void print_txt(FILE *f, const char *name, const char *value)
{
    fprintf(f, "%s. TXT", name);
    size_t n = strlen(value);
    for (size_t i = 0; i < n || i == 0; i += TXT_CHUNK) {
        size_t end = i + TXT_CHUNK < n ? i + TXT_CHUNK : n;
        fputs(" \"", f);
        for (size_t k = i; k < end; k++) {
            if (value[k] == '"' || value[k] == '\\') fputc('\\', f);
            fputc(value[k], f);
        }
        fputc('"', f);
        if (n == 0) break;
    }
    fputc('\n', f);
}

/* The records are shared with API v1's POST /v1/domains (dkim/newkey.h). */
static void token_record(pmx_buf_t *name, pmx_buf_t *value, const char *domain, const char *token)
{
    pmx_dkim_token_record(name, value, domain, token);
}

static void key_record(pmx_buf_t *name, pmx_buf_t *value, const char *domain,
                       const char *selector, pmx_dkim_alg_t alg, const char *pub)
{
    pmx_buf_appendf(name, "%s._domainkey.%s", selector, domain);
    pmx_dkim_dns_value(value, alg, pub);
}

/*
 * The return-path records (docs/feedback.md "Return path (VERP)"), printed when
 * [inbound] hostname is set: the MX that brings bounces to postmux's inbound
 * listener, and an SPF record for the envelope sender's domain. SPF names the
 * host itself (a:), on the assumption that postmux sends from the host that
 * receives; ~all (softfail), so a sending address not yet listed (a relay
 * provider's: add its include:) is not refused outright; alignment for DMARC
 * comes from the DKIM signature of DOMAIN anyway.
 */
static void return_path_records(FILE *f, const char *rp, const char *hostname)
{
    fprintf(f, "%s. MX 10 %s.\n", rp, hostname);
    pmx_buf_t spf = PMX_BUF_INIT;
    pmx_dkim_spf_value(&spf, hostname);
    print_txt(f, rp, spf.data);
    pmx_buf_free(&spf);
}

static const char *col(const PGresult *res, int r, int c) { return PQgetvalue(res, r, c); }
static bool col_null(const PGresult *res, int r, int c) { return PQgetisnull(res, r, c); }
static bool col_bool(const PGresult *res, int r, int c) { return col(res, r, c)[0] == 't'; }

/* ---- domain add ---- */

/* Generation and sealing are shared with API v1 (dkim/newkey.h). */
typedef pmx_dkim_newkey_t new_key_t;

/* Parses --bits: a whole number (range checked by the generator). */
static int parse_bits(const char *s, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0 || v > 1000000) return -1;
    *out = (int)v;
    return 0;
}

/*
 * Finds the domain row (locked when inside a transaction). Returns 1 and
 * fills id/ws/token/verified when it exists, 0 when not, -1 on error.
 */
static int find_domain(pmx_cli_t *c, const char *domain, bool lock, char *id, size_t idlen,
                       char *ws, size_t wslen, pmx_buf_t *token, bool *verified)
{
    const char *params[1] = { domain };
    PGresult *res = pmx_cli_query(c, lock
        ? "SELECT id, workspace_id, verify_token, verified_at IS NOT NULL FROM domains"
          " WHERE domain = $1 FOR UPDATE"
        : "SELECT id, workspace_id, verify_token, verified_at IS NOT NULL FROM domains"
          " WHERE domain = $1", 1, params);
    if (!res) return -1;
    int found = PQntuples(res) == 1;
    if (found) {
        snprintf(id, idlen, "%s", col(res, 0, 0));
        snprintf(ws, wslen, "%s", col(res, 0, 1));
        if (token) {
            pmx_buf_reset(token);
            pmx_buf_append_str(token, col(res, 0, 2));
        }
        if (verified) *verified = col_bool(res, 0, 3);
    }
    PQclear(res);
    return found;
}

/* 1 when the domain already has a key under selector, 0 if not, -1 on error. */
static int selector_taken(pmx_cli_t *c, const char *domain_id, const char *selector)
{
    const char *params[2] = { domain_id, selector };
    PGresult *res = pmx_cli_query(c,
        "SELECT 1 FROM dkim_keys WHERE domain_id = $1 AND selector = $2", 2, params);
    if (!res) return -1;
    int taken = PQntuples(res) > 0;
    PQclear(res);
    return taken;
}

/* Checks ownership and free selectors; prints the reason and returns -1 if not. */
static int check_existing(pmx_cli_t *c, const char *domain, const char *ws, bool lock,
                          new_key_t *keys, int nkeys, char *domain_id, size_t idlen,
                          pmx_buf_t *token, bool *exists, bool *verified)
{
    char owner[64];
    int f = find_domain(c, domain, lock, domain_id, idlen, owner, sizeof owner, token, verified);
    if (f < 0) return -1;
    *exists = f == 1;
    if (!*exists) return 0;
    if (strcmp(owner, ws) != 0) {
        pmx_cli_error("domain %s belongs to another workspace", domain);
        return -1;
    }
    for (int i = 0; i < nkeys; i++) {
        int t = selector_taken(c, domain_id, keys[i].selector);
        if (t < 0) return -1;
        if (t) {
            pmx_cli_error("selector %s already exists for %s (choose another with --selector)",
                          keys[i].selector, domain);
            return -1;
        }
    }
    return 0;
}

/* The audit_log row of a change, inside its transaction (docs/http.md "Audit log"). */
static int audit(pmx_cli_t *c, const char *ws, const char *action, const char *domain)
{
    const char *p[3] = { ws, action, domain };
    PGresult *res = pmx_cli_query(c, "INSERT INTO audit_log (api_key_id, workspace_id, action,"
                                     " target) VALUES ('cli', $1, $2, $3)", 3, p);
    if (!res) return -1;
    PQclear(res);
    return 0;
}

/* Writes the domain (when new) and its keys in one transaction; exit code. */
static int add_write(pmx_cli_t *c, const char *ws, const char *domain, new_key_t *keys,
                     int nkeys, pmx_buf_t *token, bool *pending, const char *return_path,
                     pmx_buf_t *rp_out)
{
    if (pmx_cli_begin(c) < 0) return PMX_EXIT_USER;

    char domain_id[32];
    bool exists = false, verified = false;
    const char *p_ins[3] = { ws, domain, pmx_buf_cstr(token) };
    PGresult *res = pmx_cli_query(c,
        "INSERT INTO domains (workspace_id, domain, verify_token) VALUES ($1, $2, $3)"
        " ON CONFLICT (domain) DO NOTHING RETURNING id", 3, p_ins);
    if (!res) goto fail;
    if (PQntuples(res) == 1) {
        snprintf(domain_id, sizeof domain_id, "%s", col(res, 0, 0));
        PQclear(res);
    } else {
        /* Added meanwhile or before: the same checks as outside, now under a row lock. */
        PQclear(res);
        if (check_existing(c, domain, ws, true, keys, nkeys, domain_id, sizeof domain_id,
                           token, &exists, &verified) < 0 || !exists)
            goto fail;
    }

    *pending = exists && verified;
    /* --return-path replaces the stored one; without it the stored one stays. */
    const char *p_rp[2] = { domain_id, return_path };
    res = pmx_cli_query(c, "UPDATE domains SET return_path = COALESCE($2, return_path)"
                           " WHERE id = $1 RETURNING return_path", 2, p_rp);
    if (!res) goto fail;
    pmx_verp_return_domain(rp_out, domain, PQntuples(res) == 1 && !col_null(res, 0, 0)
                                               ? col(res, 0, 0) : NULL);
    PQclear(res);
    for (int i = 0; i < nkeys; i++) {
        const char *p_key[6] = {
            domain_id, keys[i].selector, pmx_dkim_alg_name(keys[i].kp.alg),
            pmx_buf_cstr(&keys[i].kp.pub), pmx_buf_cstr(&keys[i].blob_hex),
            *pending ? "false" : "true",
        };
        res = pmx_cli_query(c,
            "INSERT INTO dkim_keys (domain_id, selector, algorithm, public_key,"
            " private_key_enc, active) VALUES ($1, $2, $3, $4, $5::bytea, $6)", 6, p_key);
        if (!res) goto fail;
        PQclear(res);
    }
    if (audit(c, ws, "domain.add", domain) < 0) goto fail;
    if (pmx_cli_commit(c) < 0) goto fail;
    return PMX_EXIT_OK;
fail:
    pmx_cli_rollback(c);
    return PMX_EXIT_USER;
}

static int domain_add(pmx_cli_t *c, int argc, char **argv)
{
    static const struct option longopts[] = {
        { "selector", required_argument, NULL, 's' },
        { "algorithm", required_argument, NULL, 'a' },
        { "bits", required_argument, NULL, 'b' },
        { "private-key", required_argument, NULL, 'k' },
        { "return-path", required_argument, NULL, 'r' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *selector_opt = DEFAULT_SELECTOR, *algorithm = NULL, *bits_opt = NULL;
    const char *key_file = NULL, *rp_opt = NULL;
    int ch, rc = PMX_EXIT_USAGE;
    pmx_cli_opts_start();
    while ((ch = pmx_cli_next_opt("domain", argc, argv, longopts, &rc)) != -1) {
        switch (ch) {
        case 's': selector_opt = optarg; break;
        case 'a': algorithm = optarg; break;
        case 'b': bits_opt = optarg; break;
        case 'k': key_file = optarg; break;
        case 'r': rp_opt = optarg; break;
        case 'h': fputs(usage_text, stdout); return PMX_EXIT_OK;
        default: return rc;
        }
    }
    if (argc - optind != 2)
        return pmx_cli_usage("usage: domain add WS DOMAIN [--selector S] "
                             "[--algorithm rsa|ed25519|both] [--bits N] [--private-key FILE] "
                             "[--return-path NAME]");

    /* Options first: nothing is generated or written for a bad command line. */
    bool want_rsa = true, want_ed = false;
    if (algorithm) {
        if (strcmp(algorithm, "rsa") == 0) { want_rsa = true; want_ed = false; }
        else if (strcmp(algorithm, "ed25519") == 0) { want_rsa = false; want_ed = true; }
        else if (strcmp(algorithm, "both") == 0) { want_rsa = true; want_ed = true; }
        else return pmx_cli_usage("--algorithm must be rsa, ed25519 or both: %s", algorithm);
    }
    int bits = PMX_DKIM_RSA_MIN_BITS;
    if (bits_opt) {
        if (parse_bits(bits_opt, &bits) < 0)
            return pmx_cli_usage("--bits must be a number: %s", bits_opt);
        if (!want_rsa) return pmx_cli_usage("--bits applies to RSA keys only");
        if (key_file) return pmx_cli_usage("--bits cannot be used with --private-key");
        if (bits < PMX_DKIM_RSA_MIN_BITS || bits > PMX_DKIM_RSA_MAX_BITS)
            return pmx_cli_error("RSA key size must be %d to %d bits, got %d",
                                 PMX_DKIM_RSA_MIN_BITS, PMX_DKIM_RSA_MAX_BITS, bits);
    }
    if (key_file && want_rsa && want_ed)
        return pmx_cli_usage("--private-key imports one key: use --algorithm rsa or ed25519, or leave it out");

    char domain[DOMAIN_MAX + 1], why[128];
    if (normalize_domain(argv[optind + 1], domain, why, sizeof why) < 0)
        return pmx_cli_error("invalid domain '%s': %s", argv[optind + 1], why);
    char rp[DOMAIN_MAX + 1], rp_why[300];
    if (rp_opt) {
        if (normalize_domain(rp_opt, rp, why, sizeof why) < 0)
            return pmx_cli_error("invalid --return-path '%s': %s", rp_opt, why);
        if (pmx_verp_return_path_check(domain, rp, rp_why, sizeof rp_why) < 0)
            return pmx_cli_error("%s", rp_why);
    }

    char sel[LABEL_MAX + 1];
    size_t sel_max = want_rsa && want_ed ? LABEL_MAX - strlen(ED25519_SUFFIX) : LABEL_MAX;
    if (normalize_selector(selector_opt, sel, sel_max) < 0)
        return pmx_cli_error("invalid selector '%s': letters, digits and inner '-', "
                             "1 to %zu characters", selector_opt, sel_max);

    /* The keys to make: RSA and/or Ed25519, or the one imported. */
    new_key_t keys[2];
    int nkeys = 0;
    memset(keys, 0, sizeof keys);
    pmx_buf_t pem_in = PMX_BUF_INIT, token = PMX_BUF_INIT, rp_eff = PMX_BUF_INIT;
    uint8_t master[PMX_DKIM_MASTER_KEY_LEN];
    bool have_master = false;
    rc = PMX_EXIT_USER;

    if (key_file) {
        snprintf(keys[0].selector, sizeof keys[0].selector, "%s", sel);
        nkeys = 1;
    } else {
        if (want_rsa) snprintf(keys[nkeys++].selector, sizeof keys[0].selector, "%s", sel);
        if (want_ed)
            snprintf(keys[nkeys++].selector, sizeof keys[0].selector, "%s%s", sel,
                     want_rsa ? ED25519_SUFFIX : "");
    }

    /* Read the key file and the master key before anything slow or written. */
    char err[600];
    if (key_file) {
        if (read_key_file(key_file, &pem_in) != 0) goto done;
        if (pmx_dkim_key_import_pem(pem_in.data, pem_in.len, &keys[0].kp, err, sizeof err) < 0) {
            pmx_cli_error("%s: %s", key_file, err);
            goto done;
        }
        if (algorithm && ((keys[0].kp.alg == PMX_DKIM_ALG_RSA) != want_rsa)) {
            pmx_cli_error("%s holds an %s key, not %s", key_file,
                          keys[0].kp.alg == PMX_DKIM_ALG_RSA ? "RSA" : "Ed25519", algorithm);
            goto done;
        }
        if (keys[0].kp.warning[0]) fprintf(stderr, "postmux: warning: %s\n", keys[0].kp.warning);
    }
    if (load_master(c, master) < 0) goto done;
    have_master = true;

    char ws[32];
    if (pmx_cli_workspace_id(c, argv[optind], ws) < 0) goto done;

    /* Refuse early (before generating keys) what the transaction would refuse. */
    char domain_id[32];
    bool exists = false, verified = false;
    if (check_existing(c, domain, ws, false, keys, nkeys, domain_id, sizeof domain_id,
                       &token, &exists, &verified) < 0)
        goto done;
    if (!exists) {
        pmx_buf_reset(&token);
        if (pmx_dkim_verify_token_make(&token) < 0) {
            pmx_cli_error("no randomness for a verification token");
            goto done;
        }
    }

    for (int i = 0; i < nkeys && !key_file; i++) {
        bool rsa = want_rsa && i == 0;
        int g = pmx_dkim_newkey_generate(&keys[i], rsa ? PMX_DKIM_ALG_RSA : PMX_DKIM_ALG_ED25519,
                                         bits, err, sizeof err);
        if (g < 0) {
            pmx_cli_error("%s", err);
            goto done;
        }
    }
    for (int i = 0; i < nkeys; i++) {
        if (pmx_dkim_newkey_seal(&keys[i], master, domain, err, sizeof err) < 0) {
            pmx_cli_error("%s", err);
            goto done;
        }
    }

    bool pending = false;
    rc = add_write(c, ws, domain, keys, nkeys, &token, &pending, rp_opt ? rp : NULL, &rp_eff);
    if (rc != PMX_EXIT_OK) goto done;

    pmx_buf_t name = PMX_BUF_INIT, value = PMX_BUF_INIT;
    token_record(&name, &value, domain, pmx_buf_cstr(&token));
    print_txt(stdout, name.data, value.data);
    for (int i = 0; i < nkeys; i++) {
        pmx_buf_reset(&name);
        pmx_buf_reset(&value);
        key_record(&name, &value, domain, keys[i].selector, keys[i].kp.alg, keys[i].kp.pub.data);
        print_txt(stdout, name.data, value.data);
    }
    pmx_buf_free(&name);
    pmx_buf_free(&value);
    if (c->cfg.inbound_hostname[0]) return_path_records(stdout, rp_eff.data, c->cfg.inbound_hostname);
    if (pending)
        fprintf(stderr, "postmux: %s is verified: the new key%s signs once `postmux domain verify %s`"
                        " finds %s in DNS\n", domain, nkeys > 1 ? "s" : "", domain,
                nkeys > 1 ? "them" : "it");
done:
    for (int i = 0; i < 2; i++) pmx_dkim_newkey_free(&keys[i]);
    pmx_buf_free_secret(&pem_in);
    pmx_buf_free(&token);
    pmx_buf_free(&rp_eff);
    if (have_master) pmx_wipe(master, sizeof master);
    return rc;
}

/* ---- domain list / show ---- */

/* The SELECTs and the JSON form are shared with API v1 (sql/q_domain.h). */
enum { D_ID = PMX_D_ID, D_DOMAIN = PMX_D_DOMAIN, D_WS = PMX_D_WS, D_WS_NAME = PMX_D_WS_NAME,
       D_TOKEN = PMX_D_TOKEN, D_VERIFIED_AT = PMX_D_VERIFIED_AT, D_CREATED = PMX_D_CREATED,
       D_RETURN_PATH = PMX_D_RETURN_PATH };
#define DOMAIN_SELECT PMX_SQL_DOMAIN_SELECT
enum { K_DOMAIN_ID = PMX_K_DOMAIN_ID, K_SELECTOR = PMX_K_SELECTOR, K_ALG = PMX_K_ALG,
       K_PUB = PMX_K_PUB, K_ACTIVE = PMX_K_ACTIVE, K_BLOB = PMX_K_BLOB };
#define KEY_SELECT PMX_SQL_DOMAIN_KEY_SELECT
#define domain_json pmx_domain_json
#define return_domain pmx_domain_return_path

/* "pmx (rsa-sha256), pmx-ed25519 (ed25519-sha256, pending)" for one domain. */
static void keys_text(pmx_buf_t *out, const PGresult *keys, const char *domain_id)
{
    for (int k = 0; k < PQntuples(keys); k++) {
        if (strcmp(col(keys, k, K_DOMAIN_ID), domain_id) != 0) continue;
        if (out->len) pmx_buf_append_str(out, ", ");
        pmx_buf_appendf(out, "%s (%s%s)", col(keys, k, K_SELECTOR), col(keys, k, K_ALG),
                        col_bool(keys, k, K_ACTIVE) ? "" : ", pending");
    }
    if (!out->len) pmx_buf_append_str(out, "-");
}

static int domain_list(pmx_cli_t *c, int argc, char **argv)
{
    static const struct option longopts[] = {
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    bool json = false;
    int ch, rc = PMX_EXIT_USAGE;
    pmx_cli_opts_start();
    while ((ch = pmx_cli_next_opt("domain", argc, argv, longopts, &rc)) != -1) {
        switch (ch) {
        case 'j': json = true; break;
        case 'h': fputs(usage_text, stdout); return PMX_EXIT_OK;
        default: return rc;
        }
    }
    if (argc - optind > 1) return pmx_cli_usage("usage: domain list [WS] [--json]");

    char ws[32] = "";
    if (argc - optind == 1 && pmx_cli_workspace_id(c, argv[optind], ws) < 0) return PMX_EXIT_USER;
    const char *params[1] = { ws[0] ? ws : NULL };
    PGresult *d = pmx_cli_query(c, pmx_sql_domain_list, 1, params);
    if (!d) return PMX_EXIT_USER;
    PGresult *keys = pmx_cli_query(c, pmx_sql_domain_list_keys, 1, params);
    if (!keys) {
        PQclear(d);
        return PMX_EXIT_USER;
    }
    int n = PQntuples(d);

    if (json) {
        json_t *a = json_array();
        for (int r = 0; r < n; r++) json_array_append_new(a, domain_json(d, r, keys));
        PQclear(d);
        PQclear(keys);
        return pmx_cli_print_json(a);
    }

    /* A table; widths from the widest cell of each column. */
    enum { NCOL = 4 };
    static const char *const head[NCOL] = { "DOMAIN", "WORKSPACE", "STATUS", "KEYS" };
    pmx_buf_t *ktext = pmx_xcalloc((size_t)n + 1, sizeof *ktext);
    int w[NCOL];
    for (int k = 0; k < NCOL; k++) w[k] = (int)strlen(head[k]);
    for (int r = 0; r < n; r++) {
        keys_text(&ktext[r], keys, col(d, r, D_ID));
        const char *cell[NCOL] = { col(d, r, D_DOMAIN), col(d, r, D_WS),
                                   col_null(d, r, D_VERIFIED_AT) ? "unverified" : "verified", "" };
        for (int k = 0; k < NCOL - 1; k++)
            if ((int)strlen(cell[k]) > w[k]) w[k] = (int)strlen(cell[k]);
    }
    printf("%-*s  %-*s  %-*s  %s\n", w[0], head[0], w[1], head[1], w[2], head[2], head[3]);
    for (int r = 0; r < n; r++)
        printf("%-*s  %-*s  %-*s  %s\n", w[0], col(d, r, D_DOMAIN), w[1], col(d, r, D_WS), w[2],
               col_null(d, r, D_VERIFIED_AT) ? "unverified" : "verified", ktext[r].data);
    for (int r = 0; r < n; r++) pmx_buf_free(&ktext[r]);
    free(ktext);
    PQclear(d);
    PQclear(keys);
    return PMX_EXIT_OK;
}

/* Reads one domain and its keys; prints "unknown domain" when absent. */
static int load_domain(pmx_cli_t *c, const char *domain, PGresult **d, PGresult **keys)
{
    const char *params[1] = { domain };
    *d = pmx_cli_query(c, DOMAIN_SELECT " WHERE d.domain = $1", 1, params);
    if (!*d) return -1;
    if (PQntuples(*d) != 1) {
        PQclear(*d);
        pmx_cli_error("unknown domain: %s", domain);
        return -1;
    }
    *keys = pmx_cli_query(c, KEY_SELECT " WHERE d.domain = $1 ORDER BY k.selector", 1, params);
    if (!*keys) {
        PQclear(*d);
        return -1;
    }
    return 0;
}

/*
 * Decrypts each key with the master key and checks its public half against
 * public_key; prints one "NAME: OK" line per good key. Exit code.
 */
static int check_keys(pmx_cli_t *c, const char *domain, const PGresult *keys)
{
    uint8_t master[PMX_DKIM_MASTER_KEY_LEN];
    if (load_master(c, master) < 0) return PMX_EXIT_USER;
    int rc = PMX_EXIT_OK;
    for (int k = 0; k < PQntuples(keys); k++) {
        const char *sel = col(keys, k, K_SELECTOR);
        size_t blen = 0;
        unsigned char *blob = PQunescapeBytea((const unsigned char *)col(keys, k, K_BLOB), &blen);
        pmx_buf_t aad = PMX_BUF_INIT, pem = PMX_BUF_INIT;
        pmx_dkim_keypair_t kp;
        pmx_dkim_keypair_init(&kp);
        char err[300];
        pmx_dkim_key_aad(&aad, domain, sel);
        if (!blob) {
            rc = pmx_cli_error("cannot read the stored DKIM key for %s/%s", domain, sel);
        } else if (pmx_dkim_key_open(master, aad.data, blob, blen, &pem) < 0) {
            rc = pmx_cli_error("cannot decrypt DKIM key for %s/%s: wrong master key or corrupted data",
                               domain, sel);
        } else if (pmx_dkim_key_load_pem(pem.data, pem.len, &kp, err, sizeof err) < 0) {
            rc = pmx_cli_error("DKIM key for %s/%s decrypts but is not a key: %s", domain, sel, err);
        } else if (strcmp(pmx_dkim_alg_name(kp.alg), col(keys, k, K_ALG)) != 0 ||
                   !pmx_dkim_pub_equal(kp.pub.data, kp.pub.len, col(keys, k, K_PUB),
                                       strlen(col(keys, k, K_PUB)))) {
            rc = pmx_cli_error("DKIM key for %s/%s does not match its public key", domain, sel);
        } else {
            printf("%s._domainkey.%s: OK (%s)\n", sel, domain, col(keys, k, K_ALG));
        }
        if (blob) PQfreemem(blob);
        pmx_buf_free(&aad);
        pmx_buf_free_secret(&pem);
        pmx_dkim_keypair_free(&kp);
    }
    pmx_wipe(master, sizeof master);
    return rc;
}

static void show_text(const PGresult *d, const PGresult *keys, const char *hostname)
{
    const char *domain = col(d, 0, D_DOMAIN);
    printf("domain:       %s\n", domain);
    printf("workspace:    %s (%s)\n", col(d, 0, D_WS), col(d, 0, D_WS_NAME));
    printf("status:       %s\n", col_null(d, 0, D_VERIFIED_AT) ? "unverified" : "verified");
    printf("verified_at:  %s\n", col_null(d, 0, D_VERIFIED_AT) ? "-" : col(d, 0, D_VERIFIED_AT));
    printf("created_at:   %s\n", col(d, 0, D_CREATED));
    pmx_buf_t kt = PMX_BUF_INIT;
    keys_text(&kt, keys, col(d, 0, D_ID));
    printf("keys:         %s\n", kt.data);
    pmx_buf_free(&kt);
    pmx_buf_t rp = PMX_BUF_INIT;
    return_domain(&rp, d, 0);
    printf("return_path:  %s\n", rp.data);
    printf("records:\n");

    pmx_buf_t name = PMX_BUF_INIT, value = PMX_BUF_INIT;
    token_record(&name, &value, domain, col(d, 0, D_TOKEN));
    print_txt(stdout, name.data, value.data);
    for (int k = 0; k < PQntuples(keys); k++) {
        pmx_dkim_alg_t alg;
        if (pmx_dkim_alg_parse(col(keys, k, K_ALG), &alg) < 0) continue;
        pmx_buf_reset(&name);
        pmx_buf_reset(&value);
        key_record(&name, &value, domain, col(keys, k, K_SELECTOR), alg, col(keys, k, K_PUB));
        print_txt(stdout, name.data, value.data);
    }
    if (hostname && *hostname) return_path_records(stdout, rp.data, hostname);
    pmx_buf_free(&rp);
    pmx_buf_free(&name);
    pmx_buf_free(&value);
}

static int domain_show(pmx_cli_t *c, int argc, char **argv)
{
    static const struct option longopts[] = {
        { "json", no_argument, NULL, 'j' },
        { "check-keys", no_argument, NULL, 'c' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    bool json = false, check = false;
    int ch, rc = PMX_EXIT_USAGE;
    pmx_cli_opts_start();
    while ((ch = pmx_cli_next_opt("domain", argc, argv, longopts, &rc)) != -1) {
        switch (ch) {
        case 'j': json = true; break;
        case 'c': check = true; break;
        case 'h': fputs(usage_text, stdout); return PMX_EXIT_OK;
        default: return rc;
        }
    }
    if (argc - optind != 1) return pmx_cli_usage("usage: domain show DOMAIN [--json] [--check-keys]");
    if (json && check) return pmx_cli_usage("domain show: --check-keys has no --json form");

    char domain[DOMAIN_MAX + 1];
    if (domain_arg(argv[optind], domain) < 0) return PMX_EXIT_USER;
    PGresult *d, *keys;
    if (load_domain(c, domain, &d, &keys) < 0) return PMX_EXIT_USER;

    if (check) rc = check_keys(c, domain, keys);
    else if (json) rc = pmx_cli_print_json(domain_json(d, 0, keys));
    else {
        show_text(d, keys, c->cfg.inbound_hostname);
        rc = PMX_EXIT_OK;
    }
    PQclear(d);
    PQclear(keys);
    return rc;
}

/* ---- domain remove ---- */

static int domain_remove(pmx_cli_t *c, int argc, char **argv)
{
    static const struct option longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int ch, rc = PMX_EXIT_USAGE;
    pmx_cli_opts_start();
    while ((ch = pmx_cli_next_opt("domain", argc, argv, longopts, &rc)) != -1) {
        if (ch == 'h') {
            fputs(usage_text, stdout);
            return PMX_EXIT_OK;
        }
        return rc;
    }
    if (argc - optind != 1) return pmx_cli_usage("usage: domain remove DOMAIN");
    char domain[DOMAIN_MAX + 1];
    if (domain_arg(argv[optind], domain) < 0) return PMX_EXIT_USER;

    const char *params[3] = { "cli", domain, NULL };
    /* The keys go with it (ON DELETE CASCADE); audit_log gets its row. */
    PGresult *res = pmx_cli_query(c, pmx_sql_domain_remove, 3, params);
    if (!res) return PMX_EXIT_USER;
    int n = PQntuples(res);
    PQclear(res);
    if (n != 1) return pmx_cli_error("unknown domain: %s", domain);
    printf("removed domain %s\n", domain);
    return PMX_EXIT_OK;
}

/* ---- domain verify ---- */

/* The checks are shared with API v1's domain verify (dkim/dnscheck.h). */

/* Prints why a record is not right and what to publish; -1. */
static int report_check(const pmx_dns_check_t *r)
{
    if (r->bare) return pmx_cli_error("%s", pmx_buf_cstr(&r->why));
    pmx_cli_error("%s: %s", r->name.data, pmx_buf_cstr(&r->why));
    fprintf(stderr, "  publish: ");
    print_txt(stderr, r->name.data, r->want.data);
    return -1;
}

/* Checks _postmux.DOMAIN; prints the problem and returns -1 if it is not right. */
static int verify_token(const pmx_cli_nameserver_t *ns, const char *domain, const char *token)
{
    pmx_dns_check_t r;
    int rc = pmx_dns_check_token(ns, domain, token, &r);
    if (rc < 0) report_check(&r);
    pmx_dns_check_free(&r);
    return rc;
}

/* Checks SELECTOR._domainkey.DOMAIN against one stored key; -1 after printing why not. */
static int verify_key(const pmx_cli_nameserver_t *ns, const char *domain, const char *selector,
                      const char *algorithm, const char *pub)
{
    pmx_dns_check_t r;
    int rc = pmx_dns_check_key(ns, domain, selector, algorithm, pub, &r);
    if (rc < 0) report_check(&r);
    else if (r.ntxt > 1)
        fprintf(stderr, "postmux: warning: %s has %zu TXT records; receivers may pick the wrong one\n",
                r.name.data, r.ntxt);
    pmx_dns_check_free(&r);
    return rc;
}

/*
 * Reports whether the return-path domain's MX names [inbound] hostname
 * (docs/feedback.md "Return path (VERP)"): informational, on stderr, never a
 * reason to refuse verification (the domain signs and sends without it; only
 * bounces would not come back to postmux).
 */
static void report_return_path(const pmx_cli_nameserver_t *ns, const char *rp, const char *hostname)
{
    pmx_cli_txt_list_t mx;
    char err[512];
    int looked = pmx_cli_dns_mx(ns, rp, &mx, err, sizeof err);
    bool found = false;
    for (size_t i = 0; looked == 0 && i < mx.n; i++)
        if (strcasecmp(mx.txt[i].data ? mx.txt[i].data : "", hostname) == 0) found = true;
    if (found) {
        fprintf(stderr, "postmux: return path %s: MX %s is published\n", rp, hostname);
    } else {
        fprintf(stderr, "postmux: note: return path %s: %s; bounces will not reach postmux "
                        "until it is published (verification does not depend on it)\n  publish: ",
                rp, looked < 0 ? err : mx.n ? "its MX does not name [inbound] hostname"
                                             : "no MX record");
        return_path_records(stderr, rp, hostname);
    }
    if (looked == 0) pmx_cli_dns_txt_free(&mx);
}

/* Marks the domain verified and its keys active, in one transaction; exit code. */
static int mark_verified(pmx_cli_t *c, const char *domain, bool skip_dns)
{
    if (pmx_cli_begin(c) < 0) return PMX_EXIT_USER;
    const char *params[1] = { domain };
    PGresult *res = pmx_cli_query(c,
        "UPDATE domains SET verified_at = COALESCE(verified_at, now())"
        " WHERE domain = $1 RETURNING id, workspace_id", 1, params);
    if (!res) goto fail;
    if (PQntuples(res) != 1) {
        PQclear(res);
        pmx_cli_error("unknown domain: %s", domain);      /* removed meanwhile */
        goto fail;
    }
    char id[32], ws[32];
    snprintf(id, sizeof id, "%s", col(res, 0, 0));
    snprintf(ws, sizeof ws, "%s", col(res, 0, 1));
    PQclear(res);

    const char *p_id[1] = { id };
    res = pmx_cli_query(c, "UPDATE dkim_keys SET active = true WHERE domain_id = $1 AND NOT active",
                        1, p_id);
    if (!res) goto fail;
    PQclear(res);

    if (audit(c, ws, "domain.verify", domain) < 0) goto fail;
    if (skip_dns) {
        const char *p_ev[2] = { ws, domain };
        res = pmx_cli_query(c,
            "INSERT INTO events (workspace_id, message_id, type, detail)"
            " VALUES ($1, NULL, 'domain.verified', 'skip_dns domain=' || $2)", 2, p_ev);
        if (!res) goto fail;
        PQclear(res);
    }
    if (pmx_cli_commit(c) < 0) goto fail;
    return PMX_EXIT_OK;
fail:
    pmx_cli_rollback(c);
    return PMX_EXIT_USER;
}

static int domain_verify(pmx_cli_t *c, int argc, char **argv)
{
    static const struct option longopts[] = {
        { "nameserver", required_argument, NULL, 'n' },
        { "skip-dns", no_argument, NULL, 's' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *ns_opt = NULL;
    bool skip = false;
    int ch, rc = PMX_EXIT_USAGE;
    pmx_cli_opts_start();
    while ((ch = pmx_cli_next_opt("domain", argc, argv, longopts, &rc)) != -1) {
        switch (ch) {
        case 'n': ns_opt = optarg; break;
        case 's': skip = true; break;
        case 'h': fputs(usage_text, stdout); return PMX_EXIT_OK;
        default: return rc;
        }
    }
    if (argc - optind != 1)
        return pmx_cli_usage("usage: domain verify DOMAIN [--nameserver IP[:PORT]] [--skip-dns]");
    if (skip && ns_opt) return pmx_cli_usage("domain verify: --skip-dns does no lookup, drop --nameserver");

    pmx_cli_nameserver_t ns;
    memset(&ns, 0, sizeof ns);
    char err[256];
    if (ns_opt && pmx_cli_dns_parse_nameserver(ns_opt, &ns, err, sizeof err) < 0)
        return pmx_cli_usage("--nameserver: %s", err);

    char domain[DOMAIN_MAX + 1];
    if (domain_arg(argv[optind], domain) < 0) return PMX_EXIT_USER;
    PGresult *d, *keys;
    if (load_domain(c, domain, &d, &keys) < 0) return PMX_EXIT_USER;

    rc = PMX_EXIT_OK;
    if (!skip) {
        /* Check everything, so one run names every record that is missing or wrong. */
        int bad = verify_token(&ns, domain, col(d, 0, D_TOKEN)) < 0;
        for (int k = 0; k < PQntuples(keys); k++)
            bad += verify_key(&ns, domain, col(keys, k, K_SELECTOR), col(keys, k, K_ALG),
                              col(keys, k, K_PUB)) < 0;
        if (bad) rc = pmx_cli_error("%s is not verified", domain);
        if (c->cfg.inbound_hostname[0]) {
            pmx_buf_t rp = PMX_BUF_INIT;
            return_domain(&rp, d, 0);
            report_return_path(&ns, rp.data, c->cfg.inbound_hostname);
            pmx_buf_free(&rp);
        }
    }
    PQclear(d);
    PQclear(keys);
    if (rc != PMX_EXIT_OK) return rc;

    rc = mark_verified(c, domain, skip);
    if (rc == PMX_EXIT_OK) printf("verified\n");
    return rc;
}

int pmx_cli_domain(pmx_cli_t *c, int argc, char **argv)
{
    static const pmx_cli_sub_t subs[] = {
        { "add", domain_add }, { "list", domain_list }, { "show", domain_show },
        { "verify", domain_verify }, { "remove", domain_remove },
    };
    return pmx_cli_dispatch(c, argc, argv, usage_text, subs, sizeof subs / sizeof subs[0]);
}
