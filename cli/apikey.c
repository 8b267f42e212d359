/*
 * `postmux apikey create|list|revoke` (postmux(1)): the keys upstream apps use as
 * the SMTP AUTH password (docs/submission.md).
 *
 * A key is "pmx_" + base64url of 32 random bytes (256 bits; 47 characters).
 * Only SHA-256 of the whole key text (including "pmx_") is stored, in
 * api_keys.hash, with the 8 characters after "pmx_" as `prefix` so a person
 * can tell keys apart in listings. The key itself is printed once by create
 * and exists nowhere else: a lost key is revoked and replaced, never shown.
 *
 * create prints the key alone on stdout (so KEY=$(postmux apikey create ...)
 * captures exactly the key) and its id on stderr. Scopes: send (SMTP
 * submission), read (reserved for read-only API access); default send.
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "cli/cli.h"
#include "lib/buf.h"
#include "lib/encode.h"
#include "lib/mem.h"
#include "lib/utf8.h"

#define KEY_RANDOM_BYTES 32
#define KEY_PREFIX_CHARS 8
#define NAME_MAX_CHARS   200

static const char *const known_scopes[] = { "send", "read" };

static const char usage_text[] =
    "usage: postmux apikey create (--workspace WS | --org) --name N [--scopes send,read]\n"
    "       postmux apikey list [WS] [--json]\n"
    "       postmux apikey revoke ID\n";

/* A key's name: 1..200 characters of UTF-8 without control characters. */
static int check_name(const char *s)
{
    size_t n = strlen(s), chars = 0;
    if (n == 0) return pmx_cli_error("--name is empty");
    for (size_t i = 0; i < n; chars++) {
        unsigned cp;
        size_t k = pmx_utf8_seq(s + i, n - i, &cp);
        if (k == 0) return pmx_cli_error("--name is not valid UTF-8");
        if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0))
            return pmx_cli_error("--name contains a control character");
        i += k;
    }
    if (chars > NAME_MAX_CHARS)
        return pmx_cli_error("--name is longer than %d characters", NAME_MAX_CHARS);
    return 0;
}

/* "send,read" -> the Postgres array literal "{send,read}"; each scope known, once. */
static int parse_scopes(const char *s, pmx_buf_t *array)
{
    size_t nknown = sizeof known_scopes / sizeof known_scopes[0];
    bool seen[sizeof known_scopes / sizeof known_scopes[0]] = { false };
    pmx_buf_append_char(array, '{');
    const char *p = s;
    for (;;) {
        size_t len = strcspn(p, ",");
        size_t k = 0;
        while (k < nknown && !(strlen(known_scopes[k]) == len &&
                               strncmp(known_scopes[k], p, len) == 0))
            k++;
        if (len == 0) return pmx_cli_error("--scopes has an empty scope: '%s'", s);
        if (k == nknown)
            return pmx_cli_error("unknown scope '%.*s' (known: send, read)", (int)len, p);
        if (seen[k]) return pmx_cli_error("scope '%s' given twice", known_scopes[k]);
        seen[k] = true;
        if (array->len > 1) pmx_buf_append_char(array, ',');
        pmx_buf_append_str(array, known_scopes[k]);
        if (p[len] == '\0') break;
        p += len + 1;
    }
    pmx_buf_append_char(array, '}');
    return 0;
}

static int sha256_hex(const char *s, size_t n, pmx_buf_t *hex)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_Digest(s, n, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32) return -1;
    pmx_hex_encode(hex, md, mdlen);
    return 0;
}

static int key_create(pmx_cli_t *c, int argc, char **argv)
{
    static const struct option opts[] = {
        { "workspace", required_argument, NULL, 'w' },
        { "org",       no_argument,       NULL, 'o' },
        { "name",      required_argument, NULL, 'n' },
        { "scopes",    required_argument, NULL, 's' },
        { "help",      no_argument,       NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *ws = NULL, *name = NULL, *scopes = NULL;
    bool org = false;
    int ch;
    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "w:n:s:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'w': ws = optarg; break;
        case 'o': org = true; break;
        case 'n': name = optarg; break;
        case 's': scopes = optarg; break;
        case 'h': fputs(usage_text, stdout); return PMX_EXIT_OK;
        default: return pmx_cli_usage("apikey create: unknown option or missing value: %s",
                                      argv[optind - 1]);
        }
    }
    if (optind < argc) return pmx_cli_usage("apikey create: unexpected argument '%s'", argv[optind]);
    if (!ws == !org) return pmx_cli_usage("apikey create needs exactly one of --workspace WS or --org");
    if (!name) return pmx_cli_usage("apikey create needs --name");
    if (check_name(name)) return PMX_EXIT_USER;
    pmx_buf_t array = PMX_BUF_INIT;
    if (parse_scopes(scopes ? scopes : "send", &array)) {
        pmx_buf_free(&array);
        return PMX_EXIT_USER;
    }

    char ws_id[20], key_id[24];
    if (ws && pmx_cli_workspace_id(c, ws, ws_id) < 0) {
        pmx_buf_free(&array);
        return PMX_EXIT_USER;
    }

    uint8_t rnd[KEY_RANDOM_BYTES];
    pmx_buf_t secret = PMX_BUF_INIT, hash = PMX_BUF_INIT;
    int rc = PMX_EXIT_USER;
    if (pmx_random_bytes(rnd, sizeof rnd) < 0 || pmx_random_id("key_", key_id, sizeof key_id) < 0) {
        pmx_cli_error("no random bytes from OpenSSL");
        goto done;
    }
    pmx_buf_append_str(&secret, "pmx_");
    pmx_base64url_encode(&secret, rnd, sizeof rnd);
    if (sha256_hex(secret.data, secret.len, &hash) < 0) {
        pmx_cli_error("SHA-256 failed (OpenSSL)");
        goto done;
    }
    char prefix[KEY_PREFIX_CHARS + 1];
    memcpy(prefix, secret.data + 4, KEY_PREFIX_CHARS);
    prefix[KEY_PREFIX_CHARS] = '\0';

    const char *params[6] = { key_id, ws ? ws_id : NULL, name, prefix, hash.data, array.data };
    PGresult *res = pmx_cli_query(c,
        "INSERT INTO api_keys (id, workspace_id, name, prefix, hash, scopes)"
        " VALUES ($1, $2, $3, $4, decode($5, 'hex'), $6::text[])", 6, params);
    if (!res) goto done;
    PQclear(res);

    printf("%s\n", secret.data);
    fflush(stdout);
    fprintf(stderr, "%s: %s key created; store it now, it is not shown again\n", key_id,
            ws ? ws_id : "organization");
    rc = PMX_EXIT_OK;
done:
    pmx_wipe(rnd, sizeof rnd);
    pmx_buf_free_secret(&secret);
    pmx_buf_free(&hash);
    pmx_buf_free(&array);
    return rc;
}

enum { K_ID, K_WS, K_NAME, K_PREFIX, K_SCOPES, K_CREATED, K_REVOKED, K_USED, K_NCOL };

#define ISO_UTC(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

static json_t *key_json(const PGresult *res, int r)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(PQgetvalue(res, r, K_ID)));
    json_object_set_new(o, "workspace_id", pmx_cli_json_text_or_null(res, r, K_WS));
    json_object_set_new(o, "name", json_string(PQgetvalue(res, r, K_NAME)));
    json_object_set_new(o, "prefix", json_string(PQgetvalue(res, r, K_PREFIX)));
    json_t *scopes = json_array();
    const char *s = PQgetvalue(res, r, K_SCOPES);
    while (*s) {
        size_t len = strcspn(s, ",");
        json_array_append_new(scopes, json_stringn(s, len));
        s += len + (s[len] == ',');
    }
    json_object_set_new(o, "scopes", scopes);
    json_object_set_new(o, "created_at", json_string(PQgetvalue(res, r, K_CREATED)));
    json_object_set_new(o, "revoked_at", pmx_cli_json_text_or_null(res, r, K_REVOKED));
    json_object_set_new(o, "last_used_at", pmx_cli_json_text_or_null(res, r, K_USED));
    return o;
}

static void print_table(const PGresult *res)
{
    static const char *const head[K_NCOL] = { "ID", "WORKSPACE", "NAME", "PREFIX", "SCOPES",
                                              "CREATED", "REVOKED", "LAST_USED" };
    int n = PQntuples(res), w[K_NCOL];
    for (int k = 0; k < K_NCOL; k++) w[k] = (int)strlen(head[k]);
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1)
            for (int k = 0; k < K_NCOL; k++)
                printf("%-*s%s", k < K_NCOL - 1 ? w[k] : 0, head[k], k < K_NCOL - 1 ? "  " : "\n");
        for (int r = 0; r < n; r++) {
            for (int k = 0; k < K_NCOL; k++) {
                const char *cell = PQgetisnull(res, r, k) ? (k == K_WS ? "(org)" : "-")
                                                          : PQgetvalue(res, r, k);
                if (k == K_PREFIX) {
                    static char buf[32];
                    snprintf(buf, sizeof buf, "pmx_%s...", cell);
                    cell = buf;
                }
                int cw = pmx_cli_text_width(cell);
                if (pass == 0) {
                    if (cw > w[k]) w[k] = cw;
                } else {
                    int pad = w[k] + (int)strlen(cell) - cw;
                    printf("%-*s%s", k < K_NCOL - 1 ? pad : 0, cell, k < K_NCOL - 1 ? "  " : "\n");
                }
            }
        }
    }
}

static int key_list(pmx_cli_t *c, int argc, char **argv)
{
    bool json;
    char ws_id[20];
    int early = pmx_cli_list_args(c, argc, argv, "apikey", usage_text, &json, ws_id);
    if (early >= 0) return early;
    const char *params[1] = { ws_id[0] ? ws_id : NULL };
    PGresult *res = pmx_cli_query(c,
        "SELECT id, workspace_id, name, prefix, array_to_string(scopes, ','), "
        ISO_UTC("created_at") ", " ISO_UTC("revoked_at") ", " ISO_UTC("last_used_at")
        " FROM api_keys WHERE $1::text IS NULL OR workspace_id = $1"
        " ORDER BY created_at, id", 1, params);
    if (!res) return PMX_EXIT_USER;

    int rc = PMX_EXIT_OK;
    if (json) {
        json_t *a = json_array();
        for (int r = 0; r < PQntuples(res); r++) json_array_append_new(a, key_json(res, r));
        rc = pmx_cli_print_json(a);
    } else {
        print_table(res);
    }
    PQclear(res);
    return rc;
}

static int key_revoke(pmx_cli_t *c, int argc, char **argv)
{
    if (argc != 2) return pmx_cli_usage("usage: apikey revoke ID");
    const char *params[1] = { argv[1] };
    PGresult *res = pmx_cli_query(c,
        "WITH k AS (SELECT id, revoked_at FROM api_keys WHERE id = $1),"
        " u AS (UPDATE api_keys SET revoked_at = now()"
        "       WHERE id = $1 AND revoked_at IS NULL RETURNING id)"
        " SELECT (SELECT count(*) FROM k), (SELECT count(*) FROM u)", 1, params);
    if (!res) return PMX_EXIT_USER;
    bool exists = strcmp(PQgetvalue(res, 0, 0), "0") != 0;
    bool revoked = strcmp(PQgetvalue(res, 0, 1), "0") != 0;
    PQclear(res);
    if (!exists) return pmx_cli_error("unknown API key: %s", argv[1]);
    if (!revoked) return pmx_cli_error("API key %s is already revoked", argv[1]);
    return PMX_EXIT_OK;
}

int pmx_cli_apikey(pmx_cli_t *c, int argc, char **argv)
{
    static const pmx_cli_sub_t subs[] = {
        { "create", key_create }, { "list", key_list }, { "revoke", key_revoke },
    };
    return pmx_cli_dispatch(c, argc, argv, usage_text, subs, sizeof subs / sizeof subs[0]);
}
