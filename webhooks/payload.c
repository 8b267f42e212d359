/*
 * The webhook body (jansson, keys in docs/webhooks.md's order), its signature
 * (HMAC-SHA256, OpenSSL) and the stored secret's opening (dkim/keycrypt.h);
 * see webhooks_payload.h.
 */
#include "webhooks/payload.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>

#include "dkim/keycrypt.h"
#include "lib/encode.h"
#include "lib/utf8.h"

/* A JSON string of s, with every byte that is not part of well-formed UTF-8
 * replaced by U+FFFD; null for NULL. */
static json_t *str_or_null(const char *s)
{
    if (!s) return json_null();
    size_t n = strlen(s);
    if (pmx_utf8_valid(s, n)) return json_stringn(s, n);
    pmx_buf_t b = PMX_BUF_INIT;
    for (size_t i = 0; i < n;) {
        size_t k = pmx_utf8_seq(s + i, n - i, NULL);
        if (k == 0) {
            pmx_buf_append_str(&b, "\xEF\xBF\xBD");
            i++;
        } else {
            pmx_buf_append(&b, s + i, k);
            i += k;
        }
    }
    json_t *j = json_stringn(pmx_buf_cstr(&b), b.len);
    pmx_buf_free(&b);
    return j;
}

int pmx_webhooks_body(const pmx_webhooks_event_t *ev, pmx_buf_t *out)
{
    char id[32];
    snprintf(id, sizeof id, "evt_%" PRId64, ev->event_id);
    json_t *data = json_object();
    json_t *o = json_object();
    if (!data || !o) {
        json_decref(data);
        json_decref(o);
        return -1;
    }
    json_object_set_new(data, "message_id", str_or_null(ev->message_id));
    json_object_set_new(data, "job_id", str_or_null(ev->job_id));
    json_object_set_new(data, "client_id", str_or_null(ev->client_id));
    json_object_set_new(data, "recipient", str_or_null(ev->recipient));
    json_object_set_new(data, "response", str_or_null(ev->response));
    json_object_set_new(data, "attempt", json_integer(ev->attempt));
    json_object_set_new(data, "metadata", str_or_null(ev->metadata));

    json_object_set_new(o, "id", json_string(id));
    json_object_set_new(o, "event", str_or_null(ev->type));
    json_object_set_new(o, "created_at", str_or_null(ev->created_at));
    json_object_set_new(o, "workspace_id", str_or_null(ev->workspace_id));
    json_object_set_new(o, "workspace_name", str_or_null(ev->workspace_name));
    json_object_set_new(o, "data", data);

    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!s) return -1;
    pmx_buf_append_str(out, s);
    free(s);
    return 0;
}

int pmx_webhooks_sign(const char *secret, size_t secret_len, int64_t t,
                      const char *body, size_t body_len, pmx_buf_t *out)
{
    char ts[24];
    int tn = snprintf(ts, sizeof ts, "%" PRId64, t);
    uint8_t mac[EVP_MAX_MD_SIZE];
    /* Re-fetched per call: a few microseconds, and no global state. */
    EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = m ? EVP_MAC_CTX_new(m) : NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    int rc = -1;
    size_t outl = 0;
    if (!ctx) goto done;
    if (EVP_MAC_init(ctx, (const unsigned char *)secret, secret_len, params) != 1) goto done;
    if (EVP_MAC_update(ctx, (const unsigned char *)ts, (size_t)tn) != 1) goto done;
    if (EVP_MAC_update(ctx, (const unsigned char *)".", 1) != 1) goto done;
    if (body_len && EVP_MAC_update(ctx, (const unsigned char *)body, body_len) != 1) goto done;
    if (EVP_MAC_final(ctx, mac, &outl, sizeof mac) != 1) goto done;
    pmx_buf_appendf(out, "t=%s,v1=", ts);
    pmx_hex_encode(out, mac, outl);
    rc = 0;
done:
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(m);
    return rc;
}

#define SECRET_PREFIX "v1:"
#define SECRET_AAD    "postmux-webhook-v1:"

int pmx_webhooks_secret_open(const uint8_t master[32], const char *webhook_id,
                             const char *stored, pmx_buf_t *out)
{
    size_t pl = strlen(SECRET_PREFIX);
    if (!stored || strncmp(stored, SECRET_PREFIX, pl) != 0) return -EINVAL;
    pmx_buf_t blob = PMX_BUF_INIT, aad = PMX_BUF_INIT;
    int rc = -EINVAL;
    if (pmx_base64_decode(&blob, stored + pl, strlen(stored + pl)) == 0) {
        pmx_buf_appendf(&aad, SECRET_AAD "%s", webhook_id);
        rc = pmx_dkim_key_open(master, pmx_buf_cstr(&aad), (const uint8_t *)blob.data, blob.len,
                               out);
    }
    pmx_buf_free(&blob);
    pmx_buf_free(&aad);
    return rc;
}
