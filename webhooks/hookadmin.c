/* Webhook checks, secrets and statements; see hookadmin.h. */
#include "webhooks/hookadmin.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "dkim/keycrypt.h"
#include "lib/encode.h"
#include "lib/mem.h"
#include "sql/pgarray.h"
#include "sql/q_admin.h"

#define SECRET_RANDOM_BYTES 32
#define SECRET_AAD_PREFIX   "postmux-webhook-v1:"     /* as webhooks/payload.c opens it */
#define SECRET_STORED_V1    "v1:"

static const char *const known_events[] = {
    "message.queued", "message.sent", "message.deferred",
    "message.bounced", "message.rejected", "message.suppressed", "message.delayed",
    "message.complained", "message.unsubscribed", "workspace.paused",
};
#define N_EVENTS (sizeof known_events / sizeof known_events[0])

static int fail(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
    return -1;
}

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

int pmx_hook_check_url(const char *label, const char *url, pmx_buf_t *out, char *err, size_t en)
{
    size_t n = strlen(url);
    if (n == 0) return fail(err, en, "%s is empty", label);
    if (n > PMX_HOOK_URL_MAX_LEN)
        return fail(err, en, "%s is longer than %d characters", label, PMX_HOOK_URL_MAX_LEN);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)url[i];
        if (ch == ' ') return fail(err, en, "%s contains a space", label);
        if (ch < 0x20 || ch == 0x7f) return fail(err, en, "%s contains a control character", label);
        if (ch > 0x7f)
            return fail(err, en, "%s contains a non-ASCII character (percent-encode it, or use "
                        "the punycode host name)", label);
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
        return fail(err, en, "%s must start with http:// or https://: %.200s", label, url);
    }
    const char *auth = url + skip;
    size_t alen = strcspn(auth, "/?#");
    if (memchr(auth, '@', alen))
        return fail(err, en, "%s must not contain user:password@ (the signature authenticates "
                    "postmux to the endpoint)", label);
    if (alen == 0) return fail(err, en, "%s has no host: %.200s", label, url);

    size_t hlen;
    if (auth[0] == '[') {
        /* IPv6 literal. */
        const char *close = memchr(auth, ']', alen);
        if (!close || close == auth + 1)
            return fail(err, en, "%s has a bad IPv6 host: %.200s", label, url);
        for (const char *p = auth + 1; p < close; p++)
            if (!(isxdigit((unsigned char)*p) || *p == ':' || *p == '.'))
                return fail(err, en, "%s has a bad IPv6 host: %.200s", label, url);
        hlen = (size_t)(close - auth) + 1;
    } else {
        hlen = strcspn(auth, ":/?#");
        if (hlen == 0) return fail(err, en, "%s has no host: %.200s", label, url);
        for (size_t i = 0; i < hlen; i++) {
            char ch = auth[i];
            if (!(is_alnum(ch) || ch == '.' || ch == '-' || ch == '_'))
                return fail(err, en, "%s has a bad character '%c' in its host: %.200s", label, ch,
                            url);
        }
        bool bad = auth[0] == '.' || auth[0] == '-';
        for (size_t i = 1; i < hlen; i++) bad |= auth[i] == '.' && auth[i - 1] == '.';
        if (bad) return fail(err, en, "%s has a bad host name: %.200s", label, url);
    }
    if (!port_ok(auth + hlen, alen - hlen))
        return fail(err, en, "%s has a bad port: %.200s", label, url);

    pmx_buf_append_str(out, scheme);
    pmx_buf_append_str(out, url + skip);
    pmx_buf_cstr(out);
    return 0;
}

int pmx_hook_parse_events(const char *label, const char *s, pmx_buf_t *array, char *err,
                          size_t en)
{
    return pmx_pgarray_known_list(known_events, N_EVENTS, label, "event", s, array, err, en);
}

int pmx_hook_make_secret(const uint8_t master[32], char *id, pmx_buf_t *secret, pmx_buf_t *stored)
{
    uint8_t rnd[SECRET_RANDOM_BYTES];
    if (pmx_random_bytes(rnd, sizeof rnd) < 0 || pmx_random_id("wh_", id, 24) < 0) return -1;
    pmx_buf_append_str(secret, "whsec_");
    pmx_base64url_encode(secret, rnd, sizeof rnd);
    pmx_buf_cstr(secret);
    pmx_wipe(rnd, sizeof rnd);
    pmx_buf_t aad = PMX_BUF_INIT, blob = PMX_BUF_INIT;
    pmx_buf_appendf(&aad, SECRET_AAD_PREFIX "%s", id);
    int rc = pmx_dkim_key_seal(master, pmx_buf_cstr(&aad), (const uint8_t *)secret->data,
                               secret->len, &blob);
    if (rc == 0) {
        pmx_buf_append_str(stored, SECRET_STORED_V1);
        pmx_base64_encode(stored, (const uint8_t *)blob.data, blob.len);
        pmx_buf_cstr(stored);
    }
    pmx_buf_free(&aad);
    pmx_buf_free(&blob);
    return rc < 0 ? -1 : 0;
}

#define HOOK_OWNER(n) "(" n "::text IS NULL OR COALESCE(workspace_id, '') = " n ")"

const char pmx_sql_hook_add[] =
    "WITH h AS (INSERT INTO webhooks (id, workspace_id, url, events, secret)"
    "           VALUES ($2, $3, $4, $5::text[], $6)"
    "           ON CONFLICT ((COALESCE(workspace_id, '')), url) DO NOTHING"
    "           RETURNING id, workspace_id, url, created_at),"
    " l AS (INSERT INTO audit_log (api_key_id, workspace_id, action, target)"
    "       SELECT $1, workspace_id, 'webhook.add', id || ' ' || url FROM h)"
    " SELECT " PMX_SQL_ISO_UTC("created_at") " FROM h";

const char pmx_sql_hook_list[] =
    "SELECT id, workspace_id, url, array_to_string(events, ','), "
    PMX_SQL_ISO_UTC("created_at")
    " FROM webhooks WHERE " HOOK_OWNER("$1")
    " ORDER BY created_at, id";

const char pmx_sql_hook_remove[] =
    "WITH h AS (DELETE FROM webhooks WHERE id = $2 AND " HOOK_OWNER("$3")
    "           RETURNING id, workspace_id, url),"
    " l AS (INSERT INTO audit_log (api_key_id, workspace_id, action, target)"
    "       SELECT $1, workspace_id, 'webhook.remove', id || ' ' || url FROM h)"
    " SELECT id FROM h";
