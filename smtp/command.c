/*
 * The SMTP command-line parser; see command.h. Three small syntaxes: the
 * verb and its argument, a MAIL/RCPT path with its ESMTP parameters, and the
 * base64 SASL responses of AUTH PLAIN and AUTH LOGIN.
 */
#include "smtp/command.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "lib/encode.h"
#include "lib/mem.h"

static const struct {
    const char     *name;
    pmx_smtp_verb_t verb;
} verbs[] = {
    { "HELO", PMX_SMTP_CMD_HELO },     { "EHLO", PMX_SMTP_CMD_EHLO },
    { "MAIL", PMX_SMTP_CMD_MAIL },     { "RCPT", PMX_SMTP_CMD_RCPT },
    { "DATA", PMX_SMTP_CMD_DATA },     { "BDAT", PMX_SMTP_CMD_BDAT },
    { "RSET", PMX_SMTP_CMD_RSET },     { "NOOP", PMX_SMTP_CMD_NOOP },
    { "QUIT", PMX_SMTP_CMD_QUIT },     { "HELP", PMX_SMTP_CMD_HELP },
    { "VRFY", PMX_SMTP_CMD_VRFY },     { "EXPN", PMX_SMTP_CMD_EXPN },
    { "STARTTLS", PMX_SMTP_CMD_STARTTLS }, { "AUTH", PMX_SMTP_CMD_AUTH },
};

const char *pmx_smtp_verb_name(pmx_smtp_verb_t verb)
{
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        if (verbs[i].verb == verb) return verbs[i].name;
    return "";
}

int pmx_smtp_cmd_parse(const char *line, size_t n, pmx_smtp_cmd_t *out)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c < 0x20 || c > 0x7e) return -1;
    }
    size_t v = 0;
    while (v < n && line[v] != ' ') v++;
    if (v == 0) return -1;
    out->verb = PMX_SMTP_CMD_UNKNOWN;
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
        if (strlen(verbs[i].name) == v && strncasecmp(line, verbs[i].name, v) == 0) {
            out->verb = verbs[i].verb;
            break;
        }
    }
    size_t a = v;
    while (a < n && line[a] == ' ') a++;
    size_t e = n;
    while (e > a && line[e - 1] == ' ') e--;
    out->arg = line + a;
    out->arg_len = e - a;
    return 0;
}

static int fail(char *err, size_t errlen, const char *why)
{
    if (errlen) snprintf(err, errlen, "%s", why);
    return -1;
}

bool pmx_smtp_param_is(const pmx_smtp_param_t *p, const char *name)
{
    size_t n = strlen(name);
    return p->key_len == n && strncasecmp(p->key, name, n) == 0;
}

static bool is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* One "KEY[=VALUE]" word s[0..n) (no spaces in it). */
static int parse_param(const char *s, size_t n, pmx_smtp_param_t *p)
{
    size_t k = 0;
    while (k < n && s[k] != '=') k++;
    if (k == 0 || !is_alnum(s[0])) return -1;
    for (size_t i = 1; i < k; i++)
        if (!is_alnum(s[i]) && s[i] != '-') return -1;
    p->key = s;
    p->key_len = k;
    p->value = NULL;
    p->value_len = 0;
    if (k == n) return 0;
    /* esmtp-value = 1*(%d33-60 / %d62-126): no '=', no space, no controls. */
    if (k + 1 == n) return -1;
    for (size_t i = k + 1; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 33 || c > 126 || c == '=') return -1;
    }
    p->value = s + k + 1;
    p->value_len = n - k - 1;
    return 0;
}

/*
 * Finds the '>' that closes the path starting after '<' at s[0]: quoted
 * strings may hold '>' (and backslash-escaped quotes). Returns its offset or
 * n when there is none.
 */
static size_t path_end(const char *s, size_t n)
{
    bool quoted = false;
    for (size_t i = 1; i < n; i++) {
        char c = s[i];
        if (quoted) {
            if (c == '\\') i++;
            else if (c == '"') quoted = false;
        } else if (c == '"') {
            quoted = true;
        } else if (c == '>') {
            return i;
        } else if (c == '<') {
            return n;
        }
    }
    return n;
}

int pmx_smtp_path_parse(const char *arg, size_t n, const char *kw, pmx_smtp_path_t *out,
                        char *err, size_t errlen)
{
    size_t kl = strlen(kw);
    if (n < kl + 1 || strncasecmp(arg, kw, kl) != 0 || arg[kl] != ':')
        return fail(err, errlen, "syntax");
    size_t i = kl + 1;
    while (i < n && arg[i] == ' ') i++;
    if (i >= n || arg[i] != '<') return fail(err, errlen, "the address must be in angle brackets");
    size_t close = path_end(arg + i, n - i);
    if (close >= n - i) return fail(err, errlen, "unbalanced angle brackets or quotes");
    const char *a = arg + i + 1;
    size_t alen = close - 1;
    /* A source route "@a,@b:" ends at the first ':' outside quotes. */
    if (alen && a[0] == '@') {
        size_t c = 0;
        while (c < alen && a[c] != ':' && a[c] != '"') c++;
        if (c >= alen || a[c] != ':') return fail(err, errlen, "bad source route");
        a += c + 1;
        alen -= c + 1;
        if (alen == 0) return fail(err, errlen, "bad source route");
    }
    out->addr = a;
    out->addr_len = alen;
    out->nparams = 0;

    i += close + 1;
    if (i < n && arg[i] != ' ') return fail(err, errlen, "garbage after the address");
    while (i < n) {
        while (i < n && arg[i] == ' ') i++;
        if (i >= n) break;
        size_t s = i;
        while (i < n && arg[i] != ' ') i++;
        if (out->nparams == PMX_SMTP_PARAMS_MAX) return fail(err, errlen, "too many parameters");
        if (parse_param(arg + s, i - s, &out->params[out->nparams]) < 0)
            return fail(err, errlen, "bad parameter syntax");
        out->nparams++;
    }
    return 0;
}

static bool strict_b64(const char *s, size_t n)
{
    if (n == 0 || n % 4 != 0) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = is_alnum(c) || c == '+' || c == '/' || (c == '=' && i + 2 >= n);
        if (!ok) return false;
    }
    /* "=" only as padding at the very end: "x=y=" is refused. */
    if (s[n - 2] == '=' && s[n - 1] != '=') return false;
    return true;
}

int pmx_smtp_sasl_decode(const char *b64, size_t n, pmx_buf_t *out)
{
    if (n == 1 && b64[0] == '=') return 0;
    if (!strict_b64(b64, n)) return -1;
    pmx_buf_t tmp = PMX_BUF_INIT;
    if (pmx_base64_decode(&tmp, b64, n) < 0) {
        pmx_buf_free_secret(&tmp);
        return -1;
    }
    pmx_buf_append(out, tmp.data ? tmp.data : "", tmp.len);
    pmx_buf_free_secret(&tmp);
    return 0;
}

int pmx_smtp_sasl_plain_decode(const char *b64, size_t n, pmx_buf_t *authcid, pmx_buf_t *passwd)
{
    pmx_buf_t raw = PMX_BUF_INIT;
    int rc = -1;
    if (n == 1 && b64[0] == '=') goto done;
    if (pmx_smtp_sasl_decode(b64, n, &raw) < 0 || raw.len == 0) goto done;
    const char *nul1 = memchr(raw.data, '\0', raw.len);
    if (!nul1) goto done;
    size_t rest = raw.len - (size_t)(nul1 + 1 - raw.data);
    const char *user = nul1 + 1;
    const char *nul2 = memchr(user, '\0', rest);
    if (!nul2) goto done;
    size_t ulen = (size_t)(nul2 - user);
    const char *pass = nul2 + 1;
    size_t plen = raw.len - (size_t)(pass - raw.data);
    if (plen == 0 || memchr(pass, '\0', plen)) goto done;
    pmx_buf_append(authcid, user, ulen);
    pmx_buf_append(passwd, pass, plen);
    rc = 0;
done:
    pmx_buf_free_secret(&raw);
    return rc;
}
