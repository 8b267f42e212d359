/*
 * libFuzzer target for the MX answer reader of `postmux domain verify`'s
 * return-path report (cli/dns_mx.c): the input is a DNS message as a name
 * server would send it, read for the MX records of a fixed name. The parser
 * is static, so the file is included whole (as fuzz_dns.c does). Checked on
 * every run: the answer is 0 or -1, -1 always with a reason; every host name
 * is shorter than a DNS name can be, lower-case, without a final dot; nothing
 * is read past the message (ASan) and nothing leaks (LSan).
 */
#include "cli/dns_mx.c"

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
    int rc = parse(msg, (int)size, "bounces.example.com", &out, err, sizeof err);
    if (rc != 0 && rc != -1) abort();
    if (rc == -1 && err[0] == '\0') abort();
    for (size_t i = 0; i < out.n; i++) {
        const pmx_buf_t *h = &out.txt[i];
        if (h->len >= NS_MAXDNAME) abort();
        if (h->len && h->data[h->len - 1] == '.') abort();
        for (size_t k = 0; k < h->len; k++)
            if (h->data[k] >= 'A' && h->data[k] <= 'Z') abort();
    }
    pmx_cli_dns_mx_free(&out);
    free(msg);
    return 0;
}
