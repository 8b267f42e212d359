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
 * submission, POST /v1/emails), read (API GETs), manage (API changes);
 * default send. The key format and the statements are shared with API v1
 * (lib/apikey.h, sql/q_admin.h); every change writes audit_log as "cli".
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/cli.h"
#include "lib/apikey.h"
#include "lib/buf.h"
#include "sql/q_admin.h"

static const char usage_text[] =
    "usage: postmux apikey create (--workspace WS | --org) --name N [--scopes send,read,manage]\n"
    "       postmux apikey list [WS] [--json]\n"
    "       postmux apikey revoke ID\n";

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
    char err[200];
    if (pmx_apikey_name_check(name, err, sizeof err) < 0)
        return pmx_cli_error("--name %s", err);
    pmx_buf_t array = PMX_BUF_INIT;
    if (pmx_apikey_scopes_parse("--scopes", scopes ? scopes : "send", &array, err, sizeof err) < 0) {
        pmx_buf_free(&array);
        return pmx_cli_error("%s", err);
    }

    char ws_id[20];
    if (ws && pmx_cli_workspace_id(c, ws, ws_id) < 0) {
        pmx_buf_free(&array);
        return PMX_EXIT_USER;
    }

    pmx_apikey_new_t k;
    int rc = PMX_EXIT_USER;
    if (pmx_apikey_make(&k) < 0) {
        pmx_buf_free(&array);
        return pmx_cli_error("no random bytes or digest from OpenSSL");
    }
    const char *params[7] = { "cli", k.id, ws ? ws_id : NULL, name, k.prefix,
                              pmx_buf_cstr(&k.hash_hex), pmx_buf_cstr(&array) };
    PGresult *res = pmx_cli_query(c, pmx_sql_apikey_create, 7, params);
    if (res) {
        PQclear(res);
        printf("%s\n", pmx_buf_cstr(&k.secret));
        fflush(stdout);
        fprintf(stderr, "%s: %s key created; store it now, it is not shown again\n", k.id,
                ws ? ws_id : "organization");
        rc = PMX_EXIT_OK;
    }
    pmx_apikey_free(&k);
    pmx_buf_free(&array);
    return rc;
}

enum { K_ID, K_WS, K_NAME, K_PREFIX, K_SCOPES, K_CREATED, K_REVOKED, K_USED, K_NCOL };

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
    PGresult *res = pmx_cli_query(c, pmx_sql_apikey_list, 1, params);
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
    const char *params[3] = { "cli", argv[1], NULL };
    PGresult *res = pmx_cli_query(c, pmx_sql_apikey_revoke, 3, params);
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
