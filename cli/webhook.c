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
 * endpoint never gets one event twice by mistake.
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

#define SECRET_RANDOM_BYTES 32
#define URL_MAX_LEN         2000
#define SECRET_AAD_PREFIX   "postmux-webhook-v1:"
#define SECRET_STORED_V1    "v1:"

static const char *const known_events[] = {
    "message.queued", "message.sent", "message.deferred",
    "message.bounced", "message.rejected", "message.suppressed", "message.delayed",
    "message.complained", "message.unsubscribed", "workspace.paused",
};
#define N_EVENTS (sizeof known_events / sizeof known_events[0])

static const char usage_text[] =
    "usage: postmux webhook add [--workspace WS] --url URL [--events message.sent,...]\n"
    "       postmux webhook list [WS] [--json]\n"
    "       postmux webhook remove ID\n"
    "Without --workspace the webhook is organization-wide (every workspace's events).\n"
    "Events: message.queued, message.sent, message.deferred, message.bounced,\n"
    "        message.rejected, message.suppressed, message.delayed, message.complained,\n"
    "        message.unsubscribed, workspace.paused (default: all).\n";

/* ---- checks ---- */

static bool is_alnum(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
}

/* ":PORT" with PORT 1..65535, or nothing. */
static bool port_ok(const char *p, size_t n)
{
    if (n == 0) return true;
    if (p[0] != ':' || n < 2 || n > 6) return false;
    unsigned v = 0;
    for (size_t i = 1; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return false;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    return v >= 1 && v <= 65535;
}

/*
 * The URL a webhook posts to; on success writes it into out with the scheme
 * in lower case and returns 0. Prints why not and returns non-zero.
 */
static int check_url(const char *url, pmx_buf_t *out)
{
    size_t n = strlen(url);
    if (n == 0) return pmx_cli_error("--url is empty");
    if (n > URL_MAX_LEN) return pmx_cli_error("--url is longer than %d characters", URL_MAX_LEN);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)url[i];
        if (ch == ' ') return pmx_cli_error("--url contains a space");
        if (ch < 0x20 || ch == 0x7f) return pmx_cli_error("--url contains a control character");
        if (ch > 0x7f)
            return pmx_cli_error("--url contains a non-ASCII character (percent-encode it, "
                                 "or use the punycode host name)");
    }
    size_t skip;
    const char *scheme;
    if (strncasecmp(url, "https://", 8) == 0) {
        scheme = "https://";
        skip = 8;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        scheme = "http://";
        skip = 7;
    } else {
        return pmx_cli_error("--url must start with http:// or https://: %s", url);
    }
    const char *auth = url + skip;
    size_t alen = strcspn(auth, "/?#");
    if (memchr(auth, '@', alen))
        return pmx_cli_error("--url must not contain user:password@ (the signature "
                             "authenticates postmux to the endpoint)");
    if (alen == 0) return pmx_cli_error("--url has no host: %s", url);

    size_t hlen;
    if (auth[0] == '[') {
        /* IPv6 literal. */
        const char *close = memchr(auth, ']', alen);
        if (!close || close == auth + 1) return pmx_cli_error("--url has a bad IPv6 host: %s", url);
        for (const char *p = auth + 1; p < close; p++)
            if (!(isxdigit((unsigned char)*p) || *p == ':' || *p == '.'))
                return pmx_cli_error("--url has a bad IPv6 host: %s", url);
        hlen = (size_t)(close - auth) + 1;
    } else {
        hlen = strcspn(auth, ":/?#");
        if (hlen == 0) return pmx_cli_error("--url has no host: %s", url);
        for (size_t i = 0; i < hlen; i++) {
            char ch = auth[i];
            if (!(is_alnum(ch) || ch == '.' || ch == '-' || ch == '_'))
                return pmx_cli_error("--url has a bad character '%c' in its host: %s", ch, url);
        }
        bool bad = auth[0] == '.' || auth[0] == '-';
        for (size_t i = 1; i < hlen; i++) bad |= auth[i] == '.' && auth[i - 1] == '.';
        if (bad) return pmx_cli_error("--url has a bad host name: %s", url);
    }
    if (!port_ok(auth + hlen, alen - hlen)) return pmx_cli_error("--url has a bad port: %s", url);

    pmx_buf_append_str(out, scheme);
    pmx_buf_append_str(out, url + skip);
    return 0;
}

/* "message.sent,message.bounced" -> "{message.sent,message.bounced}"; each known, once. */
static int parse_events(const char *s, pmx_buf_t *array)
{
    bool seen[N_EVENTS] = { false };
    pmx_buf_append_char(array, '{');
    const char *p = s;
    for (;;) {
        size_t len = strcspn(p, ",");
        size_t k = 0;
        while (k < N_EVENTS && !(strlen(known_events[k]) == len &&
                                 strncmp(known_events[k], p, len) == 0))
            k++;
        if (len == 0) return pmx_cli_error("--events has an empty name: '%s'", s);
        if (k == N_EVENTS)
            return pmx_cli_error("unknown event '%.*s' (known: message.queued, message.sent, "
                                 "message.deferred, message.bounced, message.rejected, "
                                 "message.suppressed)", (int)len, p);
        if (seen[k]) return pmx_cli_error("event '%s' given twice", known_events[k]);
        seen[k] = true;
        if (array->len > 1) pmx_buf_append_char(array, ',');
        pmx_buf_append_str(array, known_events[k]);
        if (p[len] == '\0') break;
        p += len + 1;
    }
    pmx_buf_append_char(array, '}');
    return 0;
}

/* ---- add ---- */

/* Seals secret for webhook id into the stored form (see the top of this file). */
static int seal_secret(pmx_cli_t *c, const char *id, const pmx_buf_t *secret, pmx_buf_t *stored)
{
    uint8_t master[PMX_DKIM_MASTER_KEY_LEN];
    char err[600];
    if (pmx_cli_config(c) < 0) return -1;
    if (pmx_dkim_master_key_load(c->cfg.master_key_file, master, err, sizeof err) < 0) {
        pmx_cli_error("%s", err);
        return -1;
    }
    pmx_buf_t aad = PMX_BUF_INIT, blob = PMX_BUF_INIT;
    pmx_buf_appendf(&aad, SECRET_AAD_PREFIX "%s", id);
    int rc = pmx_dkim_key_seal(master, aad.data, (const uint8_t *)secret->data, secret->len, &blob);
    pmx_wipe(master, sizeof master);
    if (rc == 0) {
        pmx_buf_append_str(stored, SECRET_STORED_V1);
        pmx_base64_encode(stored, (const uint8_t *)blob.data, blob.len);
    } else {
        pmx_cli_error("cannot encrypt the webhook secret (OpenSSL)");
    }
    pmx_buf_free(&aad);
    pmx_buf_free(&blob);
    return rc < 0 ? -1 : 0;
}

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
    uint8_t rnd[SECRET_RANDOM_BYTES];
    char ws_id[20], id[24];
    int rc = PMX_EXIT_USER;
    if (check_url(url, &norm) != 0) goto done;
    if (events) {
        if (parse_events(events, &array) != 0) goto done;
    } else {
        pmx_buf_append_str(&array, "{}");
    }
    if (ws && pmx_cli_workspace_id(c, ws, ws_id) < 0) goto done;

    if (pmx_random_bytes(rnd, sizeof rnd) < 0 || pmx_random_id("wh_", id, sizeof id) < 0) {
        pmx_cli_error("no random bytes from OpenSSL");
        goto done;
    }
    pmx_buf_append_str(&secret, "whsec_");
    pmx_base64url_encode(&secret, rnd, sizeof rnd);
    if (seal_secret(c, id, &secret, &stored) < 0) goto done;

    const char *params[5] = { id, ws ? ws_id : NULL, norm.data, array.data, stored.data };
    PGresult *res = pmx_cli_query(c,
        "INSERT INTO webhooks (id, workspace_id, url, events, secret)"
        " VALUES ($1, $2, $3, $4::text[], $5)"
        " ON CONFLICT ((COALESCE(workspace_id, '')), url) DO NOTHING RETURNING id", 5, params);
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
    pmx_wipe(rnd, sizeof rnd);
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
    PGresult *res = pmx_cli_query(c,
        "SELECT id, workspace_id, url, array_to_string(events, ','),"
        " to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
        " FROM webhooks WHERE $1::text IS NULL OR workspace_id = $1"
        " ORDER BY created_at, id", 1, params);
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
    const char *params[1] = { argv[1] };
    PGresult *res = pmx_cli_query(c, "DELETE FROM webhooks WHERE id = $1 RETURNING id", 1, params);
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
