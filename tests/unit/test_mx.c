/*
 * routing/mx.c and routing/resolver.c without DNS: [mx] allow_networks parsing,
 * the refused address ranges and what allow_networks lets through, site names,
 * MX RDATA, and the [mx] resolver syntax; routing/sites.c: the session limit per
 * site, a dead worker's sessions taken off, and the site metrics; the shaping parser and the
 * shipped routing/shaping.ini. (Lookups against a real DNS server are
 * tests/integration/test_mx.sh.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <cmocka.h>

#include "daemon/metrics_shm.h"
#include "lib/buf.h"
#include "routing/mx.h"
#include "routing/resolver.h"
#include "routing/shaping.h"
#include "routing/sites.h"
#include "workers/metrics.h"

static bool refused(const char *ip, const pmx_mx_net_t *nets, size_t n)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
        v6->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, ip, &v6->sin6_addr), 1);
    } else {
        struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
        v4->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, ip, &v4->sin_addr), 1);
    }
    return pmx_mx_address_refused((struct sockaddr *)&ss, nets, n);
}

static void test_ranges(void **state)
{
    (void)state;
    const char *bad[] = { "127.0.0.1", "127.9.9.9", "10.1.2.3", "172.16.0.1", "172.31.255.255",
                          "192.168.1.1", "169.254.0.1", "0.0.0.0", "100.64.0.1", "224.0.0.1",
                          "255.255.255.255", "::", "::1", "fe80::1", "fd00::1", "ff02::1",
                          "::ffff:127.0.0.1", "::ffff:10.0.0.1" };
    const char *good[] = { "192.0.2.1", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2001:db8::1",
                           "2a00:1450::1", "::ffff:8.8.8.8" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (!refused(bad[i], NULL, 0)) fail_msg("%s should be refused", bad[i]);
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (refused(good[i], NULL, 0)) fail_msg("%s should be allowed", good[i]);
}

static void test_allow_networks(void **state)
{
    (void)state;
    pmx_mx_net_t *nets;
    size_t n;
    char err[200];
    assert_int_equal(pmx_mx_parse_networks("127.0.0.0/8, ::1/128,10.1.2.3", &nets, &n, err,
                                           sizeof err), 0);
    assert_int_equal(n, 3);
    assert_false(refused("127.0.0.2", nets, n));
    assert_false(refused("::1", nets, n));
    assert_false(refused("10.1.2.3", nets, n));
    assert_true(refused("10.1.2.4", nets, n));
    assert_true(refused("192.168.0.1", nets, n));
    free(nets);
    assert_int_equal(pmx_mx_parse_networks("", &nets, &n, err, sizeof err), 0);
    assert_int_equal(n, 0);
    free(nets);
    assert_int_equal(pmx_mx_parse_networks("127.0.0.0/33", &nets, &n, err, sizeof err), -1);
    assert_non_null(strstr(err, "prefix length"));
    assert_int_equal(pmx_mx_parse_networks("localhost", &nets, &n, err, sizeof err), -1);
    assert_non_null(strstr(err, "not an IP address"));
    assert_int_equal(pmx_mx_parse_networks("10.0.0.0/8, ::1/200", &nets, &n, err, sizeof err), -1);
    assert_null(nets);
}

static void test_site_name(void **state)
{
    (void)state;
    const char *h[] = { "ALT1.aspmx.l.google.com", "aspmx.l.google.com", "alt1.aspmx.l.google.com" };
    char *s = pmx_mx_site_name(h, 3);
    assert_string_equal(s, "alt1.aspmx.l.google.com,aspmx.l.google.com");
    free(s);
    const char *one[] = { "example.com" };
    s = pmx_mx_site_name(one, 1);
    assert_string_equal(s, "example.com");
    free(s);
}

static void test_rdata(void **state)
{
    (void)state;
    char name[300];
    int pref;
    const unsigned char mx[] = "\x00\x0a\x03MX1\x07" "example\x03" "com";   /* + the final 0 */
    assert_int_equal(pmx__mx_rdata(mx, sizeof mx, &pref, name, sizeof name), 0);
    assert_int_equal(pref, 10);
    assert_string_equal(name, "mx1.example.com");
    const unsigned char null_mx[] = { 0, 0, 0 };
    assert_int_equal(pmx__mx_rdata(null_mx, 3, &pref, name, sizeof name), 0);
    assert_string_equal(name, "");
    const unsigned char cut[] = { 0, 5, 9, 'a', 'b' };
    assert_int_equal(pmx__mx_rdata(cut, sizeof cut, &pref, name, sizeof name), -1);
    const unsigned char comma[] = { 0, 5, 3, 'a', ',', 'b', 0 };
    assert_int_equal(pmx__mx_rdata(comma, sizeof comma, &pref, name, sizeof name), -1);
    assert_int_equal(pmx__mx_rdata(null_mx, 2, &pref, name, sizeof name), -1);
}

static void test_resolver_spec(void **state)
{
    (void)state;
    char fwd[80], err[200];
    assert_int_equal(pmx_resolver_parse_spec("", fwd, sizeof fwd, err, sizeof err), 0);
    assert_string_equal(fwd, "");
    assert_int_equal(pmx_resolver_parse_spec("127.0.0.1:5353", fwd, sizeof fwd, err, sizeof err), 0);
    assert_string_equal(fwd, "127.0.0.1@5353");
    assert_int_equal(pmx_resolver_parse_spec("192.0.2.53", fwd, sizeof fwd, err, sizeof err), 0);
    assert_string_equal(fwd, "192.0.2.53@53");
    assert_int_equal(pmx_resolver_parse_spec("[::1]:53", fwd, sizeof fwd, err, sizeof err), 0);
    assert_string_equal(fwd, "::1@53");
    assert_int_equal(pmx_resolver_parse_spec("2001:db8::53", fwd, sizeof fwd, err, sizeof err), 0);
    assert_string_equal(fwd, "2001:db8::53@53");
    assert_int_equal(pmx_resolver_parse_spec("dns.example", fwd, sizeof fwd, err, sizeof err), -1);
    assert_int_equal(pmx_resolver_parse_spec("127.0.0.1:0", fwd, sizeof fwd, err, sizeof err), -1);
    assert_int_equal(pmx_resolver_parse_spec("127.0.0.1:x", fwd, sizeof fwd, err, sizeof err), -1);
}

static void test_sites(void **state)
{
    (void)state;
    assert_true(pmx_sites_acquire("mx.example", 1));     /* no table: always yes */
    pmx_sites_shm_t *t = pmx_sites_shm_create();
    assert_non_null(t);
    pmx_sites_shm_attach(t);
    pmx_sites_shm_set_slot(3);
    assert_true(pmx_sites_acquire("mx.example", 2));
    assert_true(pmx_sites_acquire("mx.example", 2));
    assert_false(pmx_sites_acquire("mx.example", 2));   /* the limit */
    assert_true(pmx_sites_acquire("other.example", 2)); /* another site is apart */
    pmx_sites_release("mx.example");
    assert_true(pmx_sites_acquire("mx.example", 2));
    pmx_sites_count_sent("mx.example", 5);

    pmx_sites_row_t *rows;
    size_t n = pmx_sites_rows(&rows);
    assert_int_equal(n, 2);
    assert_string_equal(rows[0].name, "mx.example");
    assert_int_equal(rows[0].sessions, 2);
    assert_int_equal(rows[0].sent, 5);
    assert_false(rows[0].suspended);
    assert_int_equal(rows[1].sessions, 1);
    free(rows);

    pmx_metrics_shm_t *m = pmx_metrics_shm_create();
    pmx_buf_t b = PMX_BUF_INIT;
    pmx_metrics_render_shm(m, NULL, &b);
    const char *out = pmx_buf_cstr(&b);
    assert_non_null(strstr(out, "postmux_site_sessions{site=\"mx.example\"} 2\n"));
    assert_non_null(strstr(out, "postmux_site_sent_total{site=\"mx.example\"} 5\n"));
    assert_non_null(strstr(out, "postmux_site_suspended{site=\"other.example\"} 0\n"));
    assert_non_null(strstr(out, "# TYPE postmux_site_sent_total counter\n"));
    pmx_buf_free(&b);
    pmx_metrics_shm_destroy(m);

    /* The worker of slot 3 died: its sessions are off every site. */
    pmx_sites_shm_slot_reset(t, 3);
    n = pmx_sites_rows(&rows);
    assert_int_equal(rows[0].sessions, 0);
    assert_int_equal(rows[1].sessions, 0);
    assert_int_equal(rows[0].sent, 5);
    free(rows);
    assert_true(pmx_sites_acquire("mx.example", 1));
    pmx_sites_shm_destroy(t);
    assert_null(pmx_sites_shm_get());
}

/* A worker that holds every session of a site gives a freed one to a worker that
 * is waiting, down to its share; with nobody waiting it takes it back. */
static void test_sites_share(void **state)
{
    (void)state;
    pmx_sites_shm_t *t = pmx_sites_shm_create();
    assert_non_null(t);
    pmx_sites_shm_attach(t);
    pmx_sites_shm_set_slot(3);
    for (int i = 0; i < 4; i++) assert_true(pmx_sites_acquire("mx.share", 4));
    pmx_sites_release("mx.share");
    assert_true(pmx_sites_acquire("mx.share", 4));        /* nobody waits: taken back */
    pmx_sites_shm_set_slot(5);
    assert_false(pmx_sites_acquire("mx.share", 4));       /* full: slot 5 waits */
    assert_false(pmx_sites_wanted("mx.share"));           /* not by itself */
    pmx_sites_shm_set_slot(3);
    assert_true(pmx_sites_wanted("mx.share"));            /* slot 3 should give idle ones back */
    assert_false(pmx_sites_wanted("mx.b"));
    pmx_sites_release("mx.share");
    assert_false(pmx_sites_acquire("mx.share", 4));       /* 3 of 4 held, share 2: for slot 5 */
    pmx_sites_shm_set_slot(5);
    assert_true(pmx_sites_acquire("mx.share", 4));
    pmx_sites_shm_set_slot(3);
    assert_false(pmx_sites_wanted("mx.share"));           /* served */
    pmx_sites_release("mx.share");
    assert_true(pmx_sites_acquire("mx.share", 4));        /* slot 5 was served: nobody waits */

    /* Below its share a worker is not held back by a waiting one. */
    pmx_sites_shm_set_slot(5);
    for (int i = 0; i < 3; i++) assert_true(pmx_sites_acquire("mx.b", 6));
    pmx_sites_shm_set_slot(3);
    for (int i = 0; i < 3; i++) assert_true(pmx_sites_acquire("mx.b", 6));
    assert_false(pmx_sites_acquire("mx.b", 6));           /* full: slot 3 waits */
    pmx_sites_shm_set_slot(5);
    pmx_sites_release("mx.b");
    pmx_sites_release("mx.b");
    assert_true(pmx_sites_acquire("mx.b", 6));            /* 1 of share 3 */
    pmx_sites_shm_set_slot(7);
    assert_true(pmx_sites_acquire("mx.b", 6));            /* a third worker: share 2, holds 0 */

    pmx_sites_row_t *rows;
    size_t n = pmx_sites_rows(&rows);
    assert_int_equal(n, 2);
    assert_int_equal(rows[0].sessions, 6);                /* mx.b: never above the limit */
    assert_int_equal(rows[1].sessions, 4);                /* mx.share */
    free(rows);
    pmx_sites_shm_destroy(t);
    pmx_sites_shm_set_slot(-1);
}

static const char *write_tmp(const char *text)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/pmx_shaping_%d.ini", (int)getpid());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_shaping(void **state)
{
    (void)state;
    pmx_shaping_t sh;
    char err[400];
    const char *p = write_tmp("; rules\n[site google]\nmatch = *.google.com, *.GOOGLEMAIL.com\n"
                              "connections = 7\nmessages_per_connection = 9\n"
                              "on_reply = 4\\.7\\.28 => suspend 1h\non_reply = tss0[4] => suspend 90s\n"
                              "[site other]\nmatch = mx.*.test\n");
    assert_int_equal(pmx_shaping_load(p, &sh, err, sizeof err), 0);
    assert_int_equal(sh.n, 2);
    const char *g[] = { "mx.example.net", "Alt1.Aspmx.L.Google.com" };
    const pmx_shaping_rule_t *r = pmx_shaping_match(&sh, g, 2);
    assert_non_null(r);
    assert_string_equal(r->name, "google");
    assert_int_equal(r->connections, 7);
    assert_int_equal(r->messages_per_connection, 9);
    assert_int_equal(pmx_shaping_on_reply(r, "421 4.7.28 unusual rate"), 3600000);
    assert_int_equal(pmx_shaping_on_reply(r, "421 4.7.0 [TSS04] deferred"), 90000);
    assert_int_equal(pmx_shaping_on_reply(r, "550 5.1.1 no such user"), 0);
    const char *o[] = { "mx.a.test" };
    assert_string_equal(pmx_shaping_match(&sh, o, 1)->name, "other");
    const char *none[] = { "mail.example.org" };
    assert_null(pmx_shaping_match(&sh, none, 1));
    assert_true(r->rate_per_second == 0);
    pmx_shaping_free(&sh);

    /* rate: lib/rate.h's syntax; burst defaults to 1 */
    p = write_tmp("[site fast]\nmatch = a\nrate = 2/s\nburst = 4\n[site slow]\nmatch = b\n"
                  "rate = 90/m\n[site hourly.x-1_y]\nmatch = c\nrate = 0.5/h\n");
    assert_int_equal(pmx_shaping_load(p, &sh, err, sizeof err), 0);
    assert_int_equal(sh.n, 3);
    assert_true(sh.rules[0].rate_per_second == 2.0);
    assert_int_equal(sh.rules[0].burst, 4);
    assert_string_equal(sh.rules[0].rate_text, "2/s");
    assert_true(sh.rules[1].rate_per_second == 1.5);
    assert_int_equal(sh.rules[1].burst, 1);
    assert_true(sh.rules[2].rate_per_second > 0.5 / 3600 - 1e-12
                && sh.rules[2].rate_per_second < 0.5 / 3600 + 1e-12);
    pmx_shaping_free(&sh);

    assert_int_equal(pmx_shaping_load("", &sh, err, sizeof err), 0);
    assert_int_equal(sh.n, 0);
    static const struct { const char *text, *want; } bad[] = {
        { "[google]\nmatch = x\n", ":2: [google]: sections are [site NAME]" },
        { "[site a]\nmatch = x\nspeed = 3\n", ":3: unknown key 'speed'" },
        { "[site a]\nmatch = x\nconnections = 0\n", ":3: connections: expected a number" },
        { "[site a]\nmatch = x\non_reply = x => wait 1h\n", ":3: on_reply: expected 'suspend DURATION'" },
        { "[site a]\nmatch = x\non_reply = ([ => suspend 1h\n", ":3: on_reply: bad regex" },
        { "[site a]\nmatch = x\non_reply = just text\n", ":3: on_reply: expected 'REGEX => suspend" },
        { "[site a]\nconnections = 3\n", "[site a] has no match" },
        { "[site a]\nmatch = x\n[site b]\nmatch = y\n[site a]\nmatch = z\n", ":6: [site a] is there twice" },
        { "[site a]\nmatch = x\nrate = 5\n", ":3: rate: expected N/s, N/m or N/h" },
        { "[site a]\nmatch = x\nrate = 0/s\n", ":3: rate: expected N/s" },
        { "[site a]\nmatch = x\nrate = -1/s\n", ":3: rate: expected N/s" },
        { "[site a]\nmatch = x\nrate = 5/d\n", ":3: rate: expected N/s" },
        { "[site a]\nmatch = x\nrate = unlimited\n", ":3: rate: expected N/s" },
        { "[site a]\nmatch = x\nrate = 1e3/s\n", ":3: rate: expected N/s" },
        { "[site a]\nmatch = x\nrate = 0.00001/h\n", ":3: rate: expected N/s" },
        { "[site a]\nmatch = x\nrate = 2/s\nburst = 0\n", ":4: burst: expected a number" },
        { "[site a]\nmatch = x\nburst = 3\n", "[site a] has a burst but no rate" },
        { "[site a b]\nmatch = x\nrate = 2/s\n", ":3: rate: [site a b]: a site with a rate is named" },
        { "[site ok]\nmatch = x\nrate = 1/s\n[site a{b}]\nmatch = y\nrate = 1/s\n", ":6: rate: [site a{b}]" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        p = write_tmp(bad[i].text);
        err[0] = '\0';
        assert_int_equal(pmx_shaping_load(p, &sh, err, sizeof err), -1);
        if (!strstr(err, bad[i].want)) fail_msg("case %zu: got '%s', want '%s'", i, err, bad[i].want);
        assert_int_equal(sh.n, 0);
    }
    assert_int_equal(pmx_shaping_load("/nonexistent/shaping.ini", &sh, err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot read"));
    unlink(p);
}

/* The shipped routing/shaping.ini ($PMX_ROOT or the current directory, as tests/run.sh
 * runs): each provider's MX hosts find its rule, and the replies its postmaster pages
 * publish as "slow down" suspend that site for the time the file gives; ordinary
 * replies suspend nothing. */
static void test_shaping_shipped(void **state)
{
    (void)state;
    const char *root = getenv("PMX_ROOT");
    char path[512], err[400];
    snprintf(path, sizeof path, "%s/routing/shaping.ini", root && *root ? root : ".");
    pmx_shaping_t sh;
    if (pmx_shaping_load(path, &sh, err, sizeof err) != 0) fail_msg("%s", err);

    const char *ms[] = { "hotmail-com.olc.protection.outlook.com" };
    const char *exo[] = { "example-com.mail.protection.outlook.com" };
    const char *yh[] = { "mta5.am0.yahoodns.net", "mta6.am0.yahoodns.net" };
    const char *gg[] = { "aspmx.l.google.com", "alt1.aspmx.l.google.com" };
    const pmx_shaping_rule_t *m = pmx_shaping_match(&sh, ms, 1);
    const pmx_shaping_rule_t *y = pmx_shaping_match(&sh, yh, 2);
    const pmx_shaping_rule_t *g = pmx_shaping_match(&sh, gg, 2);
    assert_non_null(m);
    assert_non_null(y);
    assert_non_null(g);
    assert_string_equal(m->name, "microsoft");
    assert_ptr_equal(pmx_shaping_match(&sh, exo, 1), m);
    assert_string_equal(y->name, "yahoo");
    assert_string_equal(g->name, "google");

    static const struct { char site; const char *reply; uint64_t ms; } c[] = {
        /* Outlook.com's block list, as its MX says it (S3150, S3140, AS3150) */
        { 'm', "550 5.7.1 Unfortunately, messages from [192.0.2.1] weren't sent. Please contact "
               "your Internet service provider since part of their network is on our block list "
               "(S3150). You can also refer your provider to "
               "http://mail.live.com/mail/troubleshooting.aspx#errors. "
               "[DB3EUR04FT007.eop-eur04.prod.protection.outlook.com]", 2 * 3600000ull },
        { 'm', "550 5.7.1 Unfortunately, messages from [192.0.2.1] weren't sent. ... on our block "
               "list (S3140).", 2 * 3600000ull },
        { 'm', "550 5.7.1 Unfortunately, messages from [192.0.2.1] weren't sent. ... on our block "
               "list (AS3150).", 2 * 3600000ull },
        { 'm', "451 4.7.500 Server busy. Please try again later from [192.0.2.1]. (S3150) "
               "[AM6EUR05FT012.eop-eur05.prod.protection.outlook.com]", 2 * 3600000ull },
        { 'm', "451 4.7.500 Server busy. Please try again later from [192.0.2.1]. (S77719) "
               "[FR2DEU01FT008.eop-deu01.prod.protection.outlook.com]", 30 * 60000ull },
        { 'm', "451 4.7.650 The mail server [192.0.2.1] has been temporarily rate limited due to "
               "IP reputation. (S775)", 3600000ull },
        { 'm', "550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302).", 0 },
        { 'm', "550 5.7.1 Unfortunately, messages from [192.0.2.1] weren't sent (S31500).", 0 },
        { 'm', "250 2.6.0 <x@example.com> [InternalId=1] Queued mail for delivery", 0 },
        /* Yahoo */
        { 'y', "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected "
               "volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
          3600000ull },
        { 'y', "421 4.7.0 [TS01] Messages from 192.0.2.1 temporarily deferred due to user "
               "complaints", 2 * 3600000ull },
        { 'y', "554 5.7.9 Message not accepted for policy reasons.", 0 },
        { 'y', "250 ok dirdel", 0 },
        /* Google */
        { 'g', "421-4.7.28 [192.0.2.1 15] Our system has detected an unusual rate of unsolicited "
               "mail originating from your IP address. To protect our users from spam, mail sent "
               "from your IP address has been temporarily rate limited.", 3600000ull },
        { 'g', "421-4.7.0 [192.0.2.1 15] Our system has detected an unusual rate of unsolicited "
               "mail originating from your IP address.", 30 * 60000ull },
        { 'g', "550-5.1.1 The email account that you tried to reach does not exist.", 0 },
        { 'g', "250 2.0.0 OK  1700000000 a1-20020a170902e80100b001b3e0b1b2d5si12345plh.123 - gsmtp",
          0 },
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        const pmx_shaping_rule_t *r = c[i].site == 'm' ? m : c[i].site == 'y' ? y : g;
        uint64_t got = pmx_shaping_on_reply(r, c[i].reply);
        if (got != c[i].ms)
            fail_msg("case %zu ([site %s] \"%.60s...\"): suspends %llu ms, want %llu", i, r->name,
                     c[i].reply, (unsigned long long)got, (unsigned long long)c[i].ms);
    }
    /* A rule applies to its own site only: Yahoo's code says nothing to Microsoft. */
    assert_int_equal(pmx_shaping_on_reply(m, "421 4.7.0 [TSS04] Messages temporarily deferred"), 0);
    pmx_shaping_free(&sh);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ranges),
        cmocka_unit_test(test_allow_networks),
        cmocka_unit_test(test_site_name),
        cmocka_unit_test(test_rdata),
        cmocka_unit_test(test_resolver_spec),
        cmocka_unit_test(test_sites),
        cmocka_unit_test(test_sites_share),
        cmocka_unit_test(test_shaping),
        cmocka_unit_test(test_shaping_shipped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
