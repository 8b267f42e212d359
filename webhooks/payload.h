/*
 * What a webhook POST carries (docs/webhooks.md): the JSON body of one event and the
 * Postmux-Signature header over it. Pure functions (no loop, no network), so
 * the unit tests pin the format receivers verify against:
 *
 *   {"id":"evt_42","event":"message.sent","created_at":"2026-11-23T02:25:18.958Z",
 *    "workspace_id":"ws_...","workspace_name":"Acme Corp",
 *    "data":{"message_id":"msg_...","job_id":"...","client_id":"...",
 *            "recipient":"...","response":"250 ok","attempt":1,"metadata":"..."}}
 *
 *   Postmux-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
 *
 * Keys always appear, in this order; a value the event does not have is
 * null (attempt is 0). The body is compact JSON, UTF-8 (text that is not
 * valid UTF-8 has the bad bytes replaced by U+FFFD so a body can always be
 * made). The signature covers the exact bytes sent.
 *
 * Also the one reader of the stored webhook secret.
 */
#ifndef PMX_WEBHOOKS_PAYLOAD_H
#define PMX_WEBHOOKS_PAYLOAD_H
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

/* One event as the outbox query returns it; NULL = absent. */
typedef struct {
    int64_t     event_id;        /* events.id: "evt_<id>" */
    const char *type;            /* message.sent, ... */
    const char *created_at;      /* RFC 3339 UTC, e.g. 2026-11-23T02:25:18.958Z */
    const char *workspace_id;
    const char *workspace_name;  /* NULL when the workspace does not exist */
    const char *message_id;
    const char *job_id;
    const char *client_id;
    const char *recipient;
    const char *response;        /* events.detail, else the recipient's SMTP reply */
    int         attempt;         /* the recipient's attempts when the event was recorded */
    const char *metadata;
} pmx_webhooks_event_t;

/* Appends the JSON body to out. Returns 0, or -1 (jansson failed: out of memory). */
int pmx_webhooks_body(const pmx_webhooks_event_t *ev, pmx_buf_t *out);

/*
 * Appends the header value "t=<t>,v1=<64 hex>" signing body with secret
 * (the bytes exactly as `postmux webhook add` printed them). Returns 0, or
 * -1 if OpenSSL failed.
 */
int pmx_webhooks_sign(const char *secret, size_t secret_len, int64_t t,
                      const char *body, size_t body_len, pmx_buf_t *out);

/*
 * Opens webhooks.secret as `postmux webhook add` stored it (cli/webhook.c):
 * "v1:" + base64 of a dkim/keycrypt.h blob sealed under the master key with
 * the additional data "postmux-webhook-v1:<webhook id>". Appends the secret
 * text to out (wipe it: pmx_buf_free_secret). Returns 0; -EINVAL for a value
 * that is not in that form; -EBADMSG when it does not open (another master
 * key, a value copied from another webhook row, tampering); -EIO (OpenSSL).
 */
int pmx_webhooks_secret_open(const uint8_t master[32], const char *webhook_id,
                             const char *stored, pmx_buf_t *out);

#endif
