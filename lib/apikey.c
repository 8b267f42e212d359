/* API key making and checking; see apikey.h. */
#include "lib/apikey.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "lib/encode.h"
#include "lib/mem.h"
#include "lib/utf8.h"
#include "sql/pgarray.h"

#define KEY_RANDOM_BYTES 32

static const char *const known_scopes[] = { "send", "read", "manage" };
#define N_SCOPES (sizeof known_scopes / sizeof known_scopes[0])

int pmx_apikey_make(pmx_apikey_new_t *k)
{
    memset(k, 0, sizeof *k);
    uint8_t rnd[KEY_RANDOM_BYTES];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int rc = -1;
    if (pmx_random_bytes(rnd, sizeof rnd) < 0 || pmx_random_id("key_", k->id, sizeof k->id) < 0)
        goto done;
    pmx_buf_append_str(&k->secret, "pmx_");
    pmx_base64url_encode(&k->secret, rnd, sizeof rnd);
    pmx_buf_cstr(&k->secret);
    if (EVP_Digest(k->secret.data, k->secret.len, md, &mdlen, EVP_sha256(), NULL) != 1 ||
        mdlen != 32)
        goto done;
    pmx_hex_encode(&k->hash_hex, md, mdlen);
    pmx_buf_cstr(&k->hash_hex);
    memcpy(k->prefix, k->secret.data + 4, PMX_APIKEY_PREFIX_LEN);
    k->prefix[PMX_APIKEY_PREFIX_LEN] = '\0';
    rc = 0;
done:
    pmx_wipe(rnd, sizeof rnd);
    if (rc < 0) pmx_apikey_free(k);
    return rc;
}

void pmx_apikey_free(pmx_apikey_new_t *k)
{
    pmx_buf_free_secret(&k->secret);
    pmx_buf_free(&k->hash_hex);
}

int pmx_apikey_name_check(const char *s, char *err, size_t errlen)
{
    size_t n = strlen(s), chars = 0;
    if (n == 0) {
        snprintf(err, errlen, "is empty");
        return -1;
    }
    for (size_t i = 0; i < n; chars++) {
        unsigned cp;
        size_t k = pmx_utf8_seq(s + i, n - i, &cp);
        if (k == 0) {
            snprintf(err, errlen, "is not valid UTF-8");
            return -1;
        }
        if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0)) {
            snprintf(err, errlen, "contains a control character");
            return -1;
        }
        i += k;
    }
    if (chars > PMX_APIKEY_NAME_MAX) {
        snprintf(err, errlen, "is longer than %d characters", PMX_APIKEY_NAME_MAX);
        return -1;
    }
    return 0;
}

int pmx_apikey_scopes_parse(const char *label, const char *s, pmx_buf_t *array, char *err,
                            size_t errlen)
{
    return pmx_pgarray_known_list(known_scopes, N_SCOPES, label, "scope", s, array, err, errlen);
}
