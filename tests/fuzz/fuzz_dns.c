/*
 * libFuzzer target for what postmux reads out of DNS answers itself (the
 * messages are parsed by libunbound): the TXT record RDATA of `postmux domain
 * verify` (cli/dns.c, static, so the file is included whole) and the MX
 * record RDATA of direct delivery (routing/mx.h pmx__mx_rdata). Checked on
 * every run:
 * - the TXT reader returns 0 or -1; its strings are no longer than the input;
 * - an MX name read is a NUL-terminated lowercase host name shorter than 256
 *   octets, with a preference of 0-65535;
 * - nothing is read past the input (ASan) and nothing leaks (LSan).
 */
#include "cli/dns.c"

#include <ctype.h>
#include <stdint.h>

#include "routing/mx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65535) return 0;
    unsigned char *rd = malloc(size ? size : 1);
    if (!rd) return 0;
    if (size) memcpy(rd, data, size);

    pmx_cli_txt_list_t out;
    memset(&out, 0, sizeof out);
    int rc = parse_txt(rd, size, &out);
    if (rc != 0 && rc != -1) abort();
    for (size_t i = 0; i < out.n; i++)
        if (out.txt[i].len > size) abort();
    pmx_cli_dns_txt_free(&out);

    char name[258];
    int pref = -1;
    if (pmx__mx_rdata(rd, size, &pref, name, sizeof name) == 0) {
        if (pref < 0 || pref > 65535 || strlen(name) > 255) abort();
        for (const char *c = name; *c; c++)
            if (isupper((unsigned char)*c) || (unsigned char)*c <= ' ') abort();
    }
    free(rd);
    return 0;
}
