/* DNS checks of a domain's token and DKIM keys; see dnscheck.h. */
#include "dkim/dnscheck.h"

#include <string.h>

#include "dkim/keygen.h"
#include "dkim/newkey.h"

static void trim(const char **s, size_t *n)
{
    while (*n && (**s == ' ' || **s == '\t')) { (*s)++; (*n)--; }
    while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t')) (*n)--;
}

static void init(pmx_dns_check_t *out)
{
    memset(out, 0, sizeof *out);
    pmx_buf_init(&out->name);
    pmx_buf_init(&out->want);
    pmx_buf_init(&out->why);
}

/* The TXT records at out->name into *txt (free with pmx_cli_dns_txt_free), or -1
 * with the lookup's error as out->why. */
static int fetch(const pmx_cli_nameserver_t *ns, pmx_dns_check_t *out, pmx_cli_txt_list_t *txt)
{
    char err[512];
    if (pmx_cli_dns_txt(ns, out->name.data, txt, err, sizeof err) < 0) {
        out->bare = true;
        pmx_buf_append_str(&out->why, err);
        return -1;
    }
    out->ntxt = txt->n;
    return 0;
}

int pmx_dns_check_token(const pmx_cli_nameserver_t *ns, const char *domain, const char *token,
                        pmx_dns_check_t *out)
{
    init(out);
    pmx_dkim_token_record(&out->name, &out->want, domain, token);
    pmx_cli_txt_list_t txt;
    if (fetch(ns, out, &txt) < 0) return -1;
    for (size_t i = 0; i < txt.n && !out->ok; i++) {
        const char *s = txt.txt[i].data ? txt.txt[i].data : "";
        size_t n = txt.txt[i].len;
        trim(&s, &n);
        if (n == out->want.len && memcmp(s, out->want.data, n) == 0) out->ok = true;
    }
    if (!out->ok) {
        if (txt.n == 0) pmx_buf_append_str(&out->why, "no TXT record");
        else pmx_buf_appendf(&out->why, "no TXT record says \"%s\"", out->want.data);
    }
    pmx_cli_dns_txt_free(&txt);
    return out->ok ? 0 : -1;
}

int pmx_dns_check_key(const pmx_cli_nameserver_t *ns, const char *domain, const char *selector,
                      const char *algorithm, const char *pub, pmx_dns_check_t *out)
{
    init(out);
    pmx_buf_appendf(&out->name, "%s._domainkey.%s", selector, domain);
    pmx_dkim_alg_t alg;
    if (pmx_dkim_alg_parse(algorithm, &alg) < 0) {
        out->bare = true;
        pmx_buf_appendf(&out->why, "%s/%s: unknown algorithm %s in the database", domain,
                        selector, algorithm);
        return -1;
    }
    pmx_dkim_dns_value(&out->want, alg, pub);
    pmx_cli_txt_list_t txt;
    if (fetch(ns, out, &txt) < 0) return -1;
    char err[512];
    /* The first record that is the key wins; otherwise report the last reason. */
    for (size_t i = 0; i < txt.n && !out->ok; i++) {
        pmx_dkim_record_t rec;
        const char *s = txt.txt[i].data ? txt.txt[i].data : "";
        pmx_buf_reset(&out->why);
        if (pmx_dkim_record_parse(s, txt.txt[i].len, &rec, err, sizeof err) < 0) {
            pmx_buf_appendf(&out->why, "not a DKIM key record (%s)", err);
            continue;
        }
        if (strcmp(rec.k, pmx_dkim_alg_k(alg)) != 0)
            pmx_buf_appendf(&out->why, "k=%s, but the key is %s", rec.k, pmx_dkim_alg_k(alg));
        else if (rec.p.len == 0)
            pmx_buf_appendf(&out->why, "the key is revoked (empty p=)");
        else if (!pmx_dkim_pub_equal(rec.p.data, rec.p.len, pub, strlen(pub)))
            pmx_buf_appendf(&out->why, "p= is not the key postmux holds for this selector");
        else
            out->ok = true;
        pmx_dkim_record_free(&rec);
    }
    if (out->ok) pmx_buf_reset(&out->why);
    else if (txt.n == 0) pmx_buf_append_str(&out->why, "no TXT record");
    pmx_cli_dns_txt_free(&txt);
    return out->ok ? 0 : -1;
}

void pmx_dns_check_free(pmx_dns_check_t *c)
{
    pmx_buf_free(&c->name);
    pmx_buf_free(&c->want);
    pmx_buf_free(&c->why);
}
