/*
 * libFuzzer target for the DNS answer reader of `postmux domain verify`
 * (cli/dns.c): the input is a DNS message as a name server would send it,
 * read for the TXT records of a fixed name and its CNAME chain. The parser
 * is static in cli/dns.c, so the file is included whole rather than widening
 * the CLI's interface for a test. Checked on every run:
 * - the answer is 0 or -1, and -1 always comes with a reason;
 * - every TXT string is no longer than the message (it came out of it);
 * - nothing is read past the message (ASan) and nothing leaks (LSan).
 */
#include "cli/dns.c"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65535) return 0;
    unsigned char *msg = malloc(size ? size : 1);
    if (!msg) return 0;
    if (size) memcpy(msg, data, size);

    pmx_cli_txt_list_t out;
    memset(&out, 0, sizeof out);
    char err[256] = "";
    int rc = parse_answer(msg, (int)size, "_postmux.example.com", &out, err, sizeof err);
    if (rc != 0 && rc != -1) abort();
    if (rc == -1 && err[0] == '\0') abort();
    for (size_t i = 0; i < out.n; i++)
        if (out.txt[i].len > size) abort();
    pmx_cli_dns_txt_free(&out);
    free(msg);
    return 0;
}
