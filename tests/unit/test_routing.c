/*
 * routing/wsroute.c and routing/egress.c, and the [pool NAME] sections of
 * config/pools.c: the route grammar (what is accepted, its canonical form,
 * what is refused), the pool checks against a config, the password sealed
 * for one workspace and route only, the egress round-robin per address
 * family, and the session keys.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config/config.h"
#include "lib/buf.h"
#include "routing/egress.h"
#include "routing/wsroute.h"

static const char base_conf[] =
    "[keys]\nmaster_key_file = /nonexistent\n"
    "[pool blue]\naddresses = 192.0.2.10, 2001:db8::1 , 192.0.2.11\nhelo_name = mta1.example.com\n"
    "[pool green]\naddresses = 127.0.0.3\n";

static void load(pmx_config_t *c, const char *text)
{
    char err[512] = "";
    int rc = pmx_config_load_string("t.conf", text, c, err, sizeof err);
    if (rc != 0) fprintf(stderr, "config: %s\n", err);
    assert_int_equal(rc, 0);
}

static void expect_refused(const char *text, const char *want)
{
    pmx_config_t c;
    char err[512] = "";
    assert_int_equal(pmx_config_load_string("t.conf", text, &c, err, sizeof err), -1);
    if (!strstr(err, want)) fprintf(stderr, "got: %s\nwant: %s\n", err, want);
    assert_non_null(strstr(err, want));
}

static void test_config_pools(void **state)
{
    (void)state;
    pmx_config_t c;
    load(&c, base_conf);
    assert_int_equal(c.npools, 2);
    const pmx_config_pool_t *b = pmx_config_pool(&c, "blue");
    assert_non_null(b);
    assert_int_equal(b->naddresses, 3);
    assert_string_equal(b->addresses[1], "2001:db8::1");
    assert_string_equal(b->helo_name, "mta1.example.com");
    assert_int_equal(b->line, 3);
    assert_string_equal(pmx_config_pool(&c, "green")->helo_name, "");
    assert_null(pmx_config_pool(&c, "Blue"));           /* case-sensitive */
    pmx_config_free(&c);

    expect_refused("[pool a]\naddresses = 10.0.0.1\n[pool a]\naddresses = 10.0.0.2\n",
                   "t.conf:3: [pool a] given twice (first on line 1)");
    expect_refused("[pool a]\nhelo_name = x.test\n", "t.conf:1: [pool a] has no addresses");
    expect_refused("[pool a]\naddresses = 10.0.0.1, host.test\n", "t.conf:2: [pool] addresses: 'host.test'");
    expect_refused("[pool a]\naddresses = 10.0.0.1,\n", "t.conf:2: [pool] addresses: expected");
    expect_refused("[pool a]\naddresses = 10.0.0.1\naddresses = 10.0.0.2\n",
                   "t.conf:3: [pool] addresses given twice (first on line 2)");
    expect_refused("[pool a b]\naddresses = 10.0.0.1\n", "t.conf:1: [pool NAME]: NAME must be");
    expect_refused("[pool default]\naddresses = 10.0.0.1\n", "not \"default\"");
    expect_refused("[pool]\naddresses = 10.0.0.1\n", "t.conf:1: unknown section [pool]");
    expect_refused("[pool a]\naddresses = 10.0.0.1\nhelo_name = a b\n", "t.conf:3: [pool] helo_name:");
    expect_refused("[pool a]\naddresses = 10.0.0.1\nport = 2\n", "t.conf:3: [pool] unknown key 'port'");
    /* Each pool may set each key once. */
    load(&c, "[keys]\nmaster_key_file = /x\n[pool a]\naddresses = 10.0.0.1\n[pool b]\naddresses = 10.0.0.2\n");
    assert_int_equal(c.npools, 2);
    pmx_config_free(&c);
}

static void route_ok(const char *in, pmx_wsroute_kind_t kind, const char *canon)
{
    pmx_wsroute_t r;
    char err[300] = "";
    int rc = pmx_wsroute_parse(in, &r, err, sizeof err);
    if (rc) fprintf(stderr, "%s: %s\n", in, err);
    assert_int_equal(rc, 0);
    assert_int_equal(r.kind, kind);
    assert_string_equal(r.canonical, canon);
    /* The canonical form parses to itself. */
    pmx_wsroute_t again;
    assert_int_equal(pmx_wsroute_parse(r.canonical, &again, err, sizeof err), 0);
    assert_string_equal(again.canonical, canon);
    assert_string_equal(again.user, r.user);
}

static void route_bad(const char *in, const char *want)
{
    pmx_wsroute_t r;
    char err[300] = "";
    assert_int_equal(pmx_wsroute_parse(in, &r, err, sizeof err), -1);
    if (!strstr(err, want)) fprintf(stderr, "%s: got '%s', want '%s'\n", in, err, want);
    assert_non_null(strstr(err, want));
}

static void test_route_grammar(void **state)
{
    (void)state;
    route_ok("default", PMX_WSROUTE_DEFAULT, "default");
    route_ok("mx", PMX_WSROUTE_MX, "mx");
    route_ok("smtp://mail.example.com", PMX_WSROUTE_SMTP, "smtp://mail.example.com:587");
    route_ok("SMTP://Mail.Example.COM:25", PMX_WSROUTE_SMTP, "smtp://mail.example.com:25");
    route_ok("smtps://smtp.example.com", PMX_WSROUTE_SMTP, "smtps://smtp.example.com:465");
    route_ok("smtp://apikey@smtp.example.com:2525?tls=none", PMX_WSROUTE_SMTP,
             "smtp://apikey@smtp.example.com:2525?tls=none");
    route_ok("smtp://h.test:25?tls=starttls", PMX_WSROUTE_SMTP, "smtp://h.test:25");
    route_ok("smtp://me%40corp.test@h.test:25", PMX_WSROUTE_SMTP, "smtp://me%40corp.test@h.test:25");
    route_ok("smtp://me@corp.test@h.test:25", PMX_WSROUTE_SMTP, "smtp://me%40corp.test@h.test:25");
    route_ok("smtp://[2001:DB8::1]:25", PMX_WSROUTE_SMTP, "smtp://[2001:db8::1]:25");
    route_ok("smtp://127.0.0.1:2525", PMX_WSROUTE_SMTP, "smtp://127.0.0.1:2525");

    pmx_wsroute_t r;
    char err[300];
    assert_int_equal(pmx_wsroute_parse("smtp://me%40corp.test@h.test:25?tls=none", &r, err, sizeof err), 0);
    assert_string_equal(r.user, "me@corp.test");
    assert_string_equal(r.host, "h.test");
    assert_int_equal(r.port, 25);
    assert_int_equal(r.tls, PMX_TLS_NONE);
    assert_int_equal(pmx_wsroute_parse("smtps://[::1]", &r, err, sizeof err), 0);
    assert_string_equal(r.host, "::1");
    assert_int_equal(r.tls, PMX_TLS_IMPLICIT);
    assert_int_equal(r.port, 465);

    route_bad("", "empty");
    route_bad("relay", "expected default, mx");
    route_bad("http://h.test:25", "expected default, mx");
    route_bad("smtp://", "host name or IP address");
    route_bad("smtp://:25", "host name or IP address");
    route_bad("smtp://h.test:", "port");
    route_bad("smtp://h.test:0", "port");
    route_bad("smtp://h.test:65536", "port");
    route_bad("smtp://h.test:25x", "port");
    route_bad("smtp://u:p@h.test:25", "no password in the URL");
    route_bad("smtp://@h.test:25", "empty user");
    route_bad("smtp://u%4@h.test:25", "two hex digits");
    route_bad("smtp://u%0a@h.test:25", "printable ASCII");
    route_bad("smtp://h.test:25/x", "no path");
    route_bad("smtp://h.test:25#x", "no path");
    route_bad("smtp://h.test:25?tls=maybe", "the only option");
    route_bad("smtps://h.test:465?tls=none", "the only option");
    route_bad("smtp://h test:25", "spaces");
    route_bad("smtp://h.test\r\n:25", "spaces");
    route_bad("smtp://[zz::1]:25", "not an IPv6");
    route_bad("smtp://[::1]x", "after the [IPv6] host");
    route_bad("smtp://a..b:25", "host name");
    char long_user[400];
    memset(long_user, 'u', 300);
    snprintf(long_user + 300, sizeof long_user - 300, "@h.test");
    char url[500];
    snprintf(url, sizeof url, "smtp://%s", long_user);
    route_bad(url, "longer than");
}

static void test_pool_and_password_checks(void **state)
{
    (void)state;
    pmx_config_t c;
    load(&c, base_conf);
    const char *stored = "x";
    char err[300];
    assert_int_equal(pmx_wsroute_pool_check(&c, "default", &stored, err, sizeof err), 0);
    assert_null(stored);
    assert_int_equal(pmx_wsroute_pool_check(&c, "green", &stored, err, sizeof err), 0);
    assert_string_equal(stored, "green");
    assert_int_equal(pmx_wsroute_pool_check(&c, "nosuch", &stored, err, sizeof err), -1);
    assert_string_equal(err, "pool: no [pool nosuch] section in t.conf");
    assert_int_equal(pmx_wsroute_pool_check(&c, "a/b", &stored, err, sizeof err), -1);
    assert_non_null(strstr(err, "expected default or a pool name"));
    pmx_config_free(&c);

    pmx_wsroute_t r;
    assert_int_equal(pmx_wsroute_parse("smtp://u@h.test:25", &r, err, sizeof err), 0);
    assert_int_equal(pmx_wsroute_password_check(&r, true, err, sizeof err), 0);
    assert_int_equal(pmx_wsroute_password_check(&r, false, err, sizeof err), -1);
    assert_int_equal(pmx_wsroute_parse("smtp://h.test:25", &r, err, sizeof err), 0);
    assert_int_equal(pmx_wsroute_password_check(&r, false, err, sizeof err), 0);
    assert_int_equal(pmx_wsroute_password_check(&r, true, err, sizeof err), -1);
    assert_int_equal(pmx_wsroute_parse("mx", &r, err, sizeof err), 0);
    assert_int_equal(pmx_wsroute_password_check(&r, true, err, sizeof err), -1);
}

static void test_password_seal(void **state)
{
    (void)state;
    uint8_t m[PMX_DKIM_MASTER_KEY_LEN];
    for (int i = 0; i < PMX_DKIM_MASTER_KEY_LEN; i++) m[i] = (uint8_t)(i * 3 + 1);
    pmx_wsroute_t r, other;
    char err[300];
    assert_int_equal(pmx_wsroute_parse("smtp://u@h.test:25", &r, err, sizeof err), 0);
    assert_int_equal(pmx_wsroute_parse("smtp://u@evil.test:25", &other, err, sizeof err), 0);
    pmx_buf_t aad = PMX_BUF_INIT, blob = PMX_BUF_INIT, out = PMX_BUF_INIT;
    pmx_wsroute_aad(&aad, "ws_aaaaaaaaaaaaaaaa", &r);
    assert_string_equal(aad.data, "postmux-route-v1:ws_aaaaaaaaaaaaaaaa:smtp://u@h.test:25");
    pmx_buf_free(&aad);
    assert_int_equal(pmx_wsroute_seal(m, "ws_aaaaaaaaaaaaaaaa", &r, "hunter2", 7, &blob), 0);
    assert_null(memmem(blob.data, blob.len, "hunter2", 7));
    assert_int_equal(pmx_wsroute_open(m, "ws_aaaaaaaaaaaaaaaa", &r, (const uint8_t *)blob.data,
                                      blob.len, &out), 0);
    assert_int_equal(out.len, 7);
    assert_memory_equal(out.data, "hunter2", 7);
    pmx_buf_free_secret(&out);
    /* Another workspace, another route, another master key: no plaintext. */
    assert_int_equal(pmx_wsroute_open(m, "ws_bbbbbbbbbbbbbbbb", &r, (const uint8_t *)blob.data,
                                      blob.len, &out), -EBADMSG);
    assert_int_equal(pmx_wsroute_open(m, "ws_aaaaaaaaaaaaaaaa", &other, (const uint8_t *)blob.data,
                                      blob.len, &out), -EBADMSG);
    m[0] ^= 1;
    assert_int_equal(pmx_wsroute_open(m, "ws_aaaaaaaaaaaaaaaa", &r, (const uint8_t *)blob.data,
                                      blob.len, &out), -EBADMSG);
    assert_int_equal(out.len, 0);
    pmx_buf_free(&blob);
    pmx_buf_free(&out);

    /* The bytea form opens the same; the text check of a password. */
    m[0] ^= 1;
    char *hex = NULL;
    assert_int_equal(pmx_wsroute_seal_bytea(m, "ws_aaaaaaaaaaaaaaaa", &r, "hunter2", 7, &hex), 0);
    assert_int_equal(strncmp(hex, "\\x01", 4), 0);
    size_t hn = strlen(hex + 2) / 2;
    assert_int_equal(hn, 1 + 12 + 7 + 16);
    uint8_t raw[64];
    for (size_t i = 0; i < hn; i++) {
        unsigned v;
        assert_int_equal(sscanf(hex + 2 + 2 * i, "%2x", &v), 1);
        raw[i] = (uint8_t)v;
    }
    free(hex);
    assert_int_equal(pmx_wsroute_open(m, "ws_aaaaaaaaaaaaaaaa", &r, raw, hn, &out), 0);
    assert_memory_equal(out.data, "hunter2", 7);
    pmx_buf_free_secret(&out);
    assert_int_equal(pmx_wsroute_password_text_check("hunter2", 7, err, sizeof err), 0);
    assert_int_equal(pmx_wsroute_password_text_check("p\xc3\xa4ss", 5, err, sizeof err), 0);
    assert_int_equal(pmx_wsroute_password_text_check("", 0, err, sizeof err), -1);
    assert_int_equal(pmx_wsroute_password_text_check("a\nb", 3, err, sizeof err), -1);
    assert_int_equal(pmx_wsroute_password_text_check("a\x7f", 2, err, sizeof err), -1);
    assert_null(strstr(err, "a\x7f"));
    char big[PMX_WSROUTE_PASSWORD_MAX + 1];
    memset(big, 'x', sizeof big);
    assert_int_equal(pmx_wsroute_password_text_check(big, sizeof big - 1, err, sizeof err), 0);
    assert_int_equal(pmx_wsroute_password_text_check(big, sizeof big, err, sizeof err), -1);
}

static const char *addr_of(const struct sockaddr_storage *ss, char *buf, size_t n)
{
    if (ss->ss_family == AF_INET)
        return inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, buf, (socklen_t)n);
    return inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, buf, (socklen_t)n);
}

static void test_egress_round_robin(void **state)
{
    (void)state;
    pmx_config_t c;
    load(&c, base_conf);
    pmx_egress_set_t set;
    pmx_egress_set_init(&set, &c);
    pmx_config_free(&c);
    assert_int_equal(set.n, 2);
    pmx_egress_t *b = pmx_egress_find(&set, "blue");
    assert_non_null(b);
    assert_null(pmx_egress_find(&set, "nosuch"));
    assert_null(pmx_egress_find(&set, NULL));
    assert_string_equal(b->helo_name, "mta1.example.com");

    /* IPv4: the two v4 addresses alternate, whatever the random start. */
    struct sockaddr_storage ss;
    char why[200], a[64], first[64];
    assert_int_equal(pmx_egress_source(b, AF_INET, &ss, why, sizeof why), 0);
    snprintf(first, sizeof first, "%s", addr_of(&ss, a, sizeof a));
    assert_true(strcmp(first, "192.0.2.10") == 0 || strcmp(first, "192.0.2.11") == 0);
    for (int i = 1; i < 7; i++) {
        assert_int_equal(pmx_egress_source(b, AF_INET, &ss, why, sizeof why), 0);
        addr_of(&ss, a, sizeof a);
        assert_int_equal(strcmp(a, first) == 0, i % 2 == 0);
        assert_int_equal(((struct sockaddr_in *)&ss)->sin_port, 0);
    }
    assert_int_equal(pmx_egress_source(b, AF_INET6, &ss, why, sizeof why), 0);
    assert_string_equal(addr_of(&ss, a, sizeof a), "2001:db8::1");
    pmx_egress_t *g = pmx_egress_find(&set, "green");
    assert_int_equal(pmx_egress_source(g, AF_INET6, &ss, why, sizeof why), -1);
    assert_string_equal(why, "pool green has no IPv6 source address");
    /* 127.0.0.3 is on every Linux loopback; 192.0.2.x and 2001:db8:: are not ours. */
    assert_int_equal(pmx_egress_probe(&set), 3);
    pmx_egress_set_free(&set);
}

static void test_session_keys(void **state)
{
    (void)state;
    pmx_buf_t b = PMX_BUF_INIT;
    pmx_session_key_t k = { .kind = PMX_SESSION_RELAY };
    pmx_session_key_format(&k, &b);
    assert_string_equal(pmx_buf_cstr(&b), "relay pool=-");
    b.len = 0;
    k = (pmx_session_key_t){ .kind = PMX_SESSION_SMTP, .owner = "ws_x", .dest = "smtp://h:25", .pool = "blue" };
    pmx_session_key_format(&k, &b);
    assert_string_equal(pmx_buf_cstr(&b), "smtp ws=ws_x dest=smtp://h:25 pool=blue");
    b.len = 0;
    k = (pmx_session_key_t){ .kind = PMX_SESSION_MX, .dest = "google.com", .pool = "green" };
    pmx_session_key_format(&k, &b);
    assert_string_equal(pmx_buf_cstr(&b), "mx site=google.com pool=green");
    pmx_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_pools),
        cmocka_unit_test(test_route_grammar),
        cmocka_unit_test(test_pool_and_password_checks),
        cmocka_unit_test(test_password_seal),
        cmocka_unit_test(test_egress_round_robin),
        cmocka_unit_test(test_session_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
