/*
 * `postmux webhook add|list|remove` (docs/webhooks.md, postmux(1)): the HTTP endpoints that are
 * told about every event of a workspace (or, with no --workspace, of every
 * workspace: an organization-wide webhook).
 *
 * add checks the URL (http or https, a host, an optional port, no spaces,
 * control or non-ASCII characters, no user:password@) and the event names
 * (docs/data.md's message.* types; none given = every event), makes a secret
 * "whsec_" + base64url of 32 random bytes, and prints it alone on stdout, once
 * (the id goes to stderr), like `apikey create`.
 *
 * The secret cannot be stored as a hash: the webhook sender needs it to
 * compute Postmux-Signature (HMAC-SHA256 keyed with the secret text exactly as
 * printed). So it is sealed under the master key with dkim/keycrypt.h's
 * AES-256-GCM, bound to the webhook's id. Stored format of webhooks.secret
 * (text), version 1:
 *
 *     "v1:" + standard base64 (with padding) of the blob
 *     blob = pmx_dkim_key_seal(master, aad, secret, strlen(secret))
 *          = 0x01 | nonce (12) | ciphertext | GCM tag (16)
 *     aad  = "postmux-webhook-v1:" + webhooks.id       (e.g. "...:wh_abc...")
 *
 * To get the key back: strip "v1:", pmx_base64_decode, then
 * pmx_dkim_key_open(master, aad, blob, n, &out) — out is the secret text
 * (a secret: pmx_buf_free_secret). A blob copied onto another webhook row
 * does not open. The secret never appears in a listing or a log.
 *
 * One webhook per URL per scope (sql/002_stats.sql's unique index), so an
 * endpoint never gets one event twice by mistake. The checks, the secret and
 * the statements are shared with API v1 (webhooks/hookadmin.h); every change
 * writes audit_log as "cli".
 */
#include <ctype.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "cli/cli.h"
#include "dkim/keycrypt.h"
#include "lib/buf.h"
#include "lib/encode.h"
#include "lib/mem.h"
#include "webhooks/hookadmin.h"

static const char usage_text[] =
    "usage: postmux webhook add [--workspace WS] --url URL [--events message.sent,...]\n"
    "       postmux webhook list [WS] [--json]\n"
    "       postmux webhook remove ID\n"
    "Without --workspace the webhook is organization-wide (every workspace's events).\n"
    "Events: message.queued, message.sent, message.deferred, message.bounced,\n"
    "        message.rejected, message.suppressed, message.delayed, message.complained,\n"
    "        message.unsubscribed, workspace.paused (default: all).\n";

/* ---- add ---- */

static int hook_add(pmx_cli_t *c, int argc, char **argv)
{
    static const struct option opts[] = {
        { "workspace", required_argument, NULL, 'w' },
        { "url",       required_argument, NULL, 'u' },
        { "events",    required_argument, NULL, 'e' },
        { "help",      no_argument,       NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *ws = NULL, *url = NULL, *events = NULL;
    int ch;
    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "w:u:e:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'w': ws = optarg; break;
        case 'u': url = optarg; break;
        case 'e': events = optarg; break;
        case 'h': fputs(usage_text, stdout); return PMX_EXIT_OK;
        default: return pmx_cli_usage("webhook add: unknown option or missing value: %s",
                                      argv[optind - 1]);
        }
    }
    if (optind < argc) return pmx_cli_usage("webhook add: unexpected argument '%s'", argv[optind]);
    if (!url) return pmx_cli_usage("webhook add needs --url");

    pmx_buf_t norm = PMX_BUF_INIT, array = PMX_BUF_INIT, secret = PMX_BUF_INIT,
              stored = PMX_BUF_INIT;
    uint8_t master[PMX_DKIM_MASTER_KEY_LEN];
    char ws_id[20], id[24], err[600];
    int rc = PMX_EXIT_USER;
    bool have_master = false;
    if (pmx_hook_check_url("--url", url, &norm, err, sizeof err) < 0 ||
        (events && pmx_hook_parse_events("--events", events, &array, err, sizeof err) < 0)) {
        pmx_cli_error("%s", err);
        goto done;
    }
    if (!events) pmx_buf_append_str(&array, "{}");
    if (ws && pmx_cli_workspace_id(c, ws, ws_id) < 0) goto done;
    if (pmx_cli_config(c) < 0) goto done;
    if (pmx_dkim_master_key_load(c->cfg.master_key_file, master, err, sizeof err) < 0) {
        pmx_cli_error("%s", err);
        goto done;
    }
    have_master = true;
    if (pmx_hook_make_secret(master, id, &secret, &stored) < 0) {
        pmx_cli_error("cannot make or encrypt the webhook secret (OpenSSL)");
        goto done;
    }

    const char *params[6] = { "cli", id, ws ? ws_id : NULL, pmx_buf_cstr(&norm),
                              pmx_buf_cstr(&array), pmx_buf_cstr(&stored) };
    PGresult *res = pmx_cli_query(c, pmx_sql_hook_add, 6, params);
    if (!res) goto done;
    bool added = PQntuples(res) == 1;
    PQclear(res);
    if (!added) {
        if (ws) pmx_cli_error("workspace %s already has a webhook for %s", ws_id, norm.data);
        else pmx_cli_error("an organization-wide webhook for %s already exists", norm.data);
        goto done;
    }

    printf("%s\n", secret.data);
    fflush(stdout);
    fprintf(stderr, "%s: %s webhook created; store the secret now, it is not shown again\n", id,
            ws ? ws_id : "organization-wide");
    rc = PMX_EXIT_OK;
done:
    if (have_master) pmx_wipe(master, sizeof master);
    pmx_buf_free_secret(&secret);
    pmx_buf_free(&stored);
    pmx_buf_free(&norm);
    pmx_buf_free(&array);
    return rc;
}

/* ---- list ---- */

enum { H_ID, H_WS, H_URL, H_EVENTS, H_CREATED, H_NCOL };

static json_t *hook_json(const PGresult *res, int r)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(PQgetvalue(res, r, H_ID)));
    json_object_set_new(o, "workspace_id", PQgetisnull(res, r, H_WS)
                                               ? json_null()
                                               : json_string(PQgetvalue(res, r, H_WS)));
    json_object_set_new(o, "url", json_string(PQgetvalue(res, r, H_URL)));
    json_t *ev = json_array();
    const char *s = PQgetvalue(res, r, H_EVENTS);
    while (*s) {
        size_t len = strcspn(s, ",");
        json_array_append_new(ev, json_stringn(s, len));
        s += len + (s[len] == ',');
    }
    json_object_set_new(o, "events", ev);
    json_object_set_new(o, "created_at", json_string(PQgetvalue(res, r, H_CREATED)));
    return o;
}

static const char *cell(const PGresult *res, int r, int k)
{
    if (k == H_WS && PQgetisnull(res, r, k)) return "(org)";
    if (k == H_EVENTS && !PQgetvalue(res, r, k)[0]) return "all";
    return PQgetvalue(res, r, k);
}

static void print_table(const PGresult *res)
{
    static const char *const head[H_NCOL] = { "ID", "WORKSPACE", "URL", "EVENTS", "CREATED" };
    int n = PQntuples(res), w[H_NCOL];
    for (int k = 0; k < H_NCOL; k++) {
        w[k] = (int)strlen(head[k]);
        for (int r = 0; r < n; r++)
            if ((int)strlen(cell(res, r, k)) > w[k]) w[k] = (int)strlen(cell(res, r, k));
    }
    for (int r = -1; r < n; r++)
        for (int k = 0; k < H_NCOL; k++) {
            const char *v = r < 0 ? head[k] : cell(res, r, k);
            if (k < H_NCOL - 1) printf("%-*s  ", w[k], v);
            else printf("%s\n", v);
        }
}

static int hook_list(pmx_cli_t *c, int argc, char **argv)
{
    bool json;
    char ws_id[20];
    int early = pmx_cli_list_args(c, argc, argv, "webhook", usage_text, &json, ws_id);
    if (early >= 0) return early;
    const char *params[1] = { ws_id[0] ? ws_id : NULL };
    PGresult *res = pmx_cli_query(c, pmx_sql_hook_list, 1, params);
    if (!res) return PMX_EXIT_USER;

    int rc = PMX_EXIT_OK;
    if (json) {
        json_t *a = json_array();
        for (int r = 0; r < PQntuples(res); r++) json_array_append_new(a, hook_json(res, r));
        rc = pmx_cli_print_json(a);
    } else {
        print_table(res);
    }
    PQclear(res);
    return rc;
}

/* ---- remove ---- */

static int hook_remove(pmx_cli_t *c, int argc, char **argv)
{
    if (argc != 2) return pmx_cli_usage("usage: webhook remove ID");
    const char *params[3] = { "cli", argv[1], NULL };
    PGresult *res = pmx_cli_query(c, pmx_sql_hook_remove, 3, params);
    if (!res) return PMX_EXIT_USER;
    bool removed = PQntuples(res) == 1;
    PQclear(res);
    if (!removed) return pmx_cli_error("unknown webhook: %s", argv[1]);
    return PMX_EXIT_OK;
}

int pmx_cli_webhook(pmx_cli_t *c, int argc, char **argv)
{
    static const pmx_cli_sub_t subs[] = {
        { "add", hook_add }, { "list", hook_list }, { "remove", hook_remove },
    };
    return pmx_cli_dispatch(c, argc, argv, usage_text, subs, sizeof subs / sizeof subs[0]);
}
