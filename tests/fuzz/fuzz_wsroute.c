/*
 * libFuzzer target for a workspace's route as a user (CLI, HTTP API) or the
 * database gives it (routing/wsroute.c, docs/delivery.md "Per-workspace
 * routes"). Checked on every run:
 * - 0 or -1, and -1 always comes with a reason;
 * - an accepted SMTP route has a host, a port in 1-65535, a user of printable
 *   ASCII, and a canonical form with no control character, that parses again
 *   to the same route (the stored form is stable);
 * - nothing is read past the input (ASan).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "routing/wsroute.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096) return 0;
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    pmx_wsroute_t r, again;
    char err[300] = "";
    int rc = pmx_wsroute_parse(text, &r, err, sizeof err);
    if (rc != 0 && rc != -1) abort();
    if (rc == -1 && err[0] == '\0') abort();
    if (rc == 0) {
        for (const char *p = r.canonical; *p; p++)
            if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) abort();
        if (r.kind == PMX_WSROUTE_SMTP) {
            if (!r.host[0] || r.port < 1 || r.port > 65535) abort();
            for (const char *p = r.user; *p; p++)
                if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) abort();
        }
        if (pmx_wsroute_parse(r.canonical, &again, err, sizeof err) != 0) abort();
        if (strcmp(again.canonical, r.canonical) || strcmp(again.user, r.user) ||
            strcmp(again.host, r.host) || again.port != r.port || again.tls != r.tls ||
            again.kind != r.kind)
            abort();
    }
    free(text);
    return 0;
}
