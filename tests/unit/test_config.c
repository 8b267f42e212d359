/*
 * config/config.c: the postmux.conf(5) config file — defaults, every key, the value
 * syntaxes, FILE:LINE errors, atomic loads, and secret files.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config/config.h"

#define MIN_CONF \
    "[postgres]\nconninfo = host=/tmp/x dbname=postmux\n" \
    "[redis]\naddress = unix:/tmp/x/redis.sock\n" \
    "[keys]\nmaster_key_file = /tmp/x/master.key\n"

static char tmpdir[] = "/tmp/pmx-test-config-XXXXXX";

static int setup_dir(void **state)
{
    (void)state;
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_dir(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Writes n bytes of data to tmpdir/name; returns the path (static). */
static const char *write_file(const char *name, const void *data, size_t n)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
    return path;
}

static void load_ok(const char *text, pmx_config_t *cfg)
{
    char err[512] = "";
    if (pmx_config_load_string("test.conf", text, cfg, err, sizeof err) != 0)
        fail_msg("refused: %s\n--- config ---\n%s", err, text);
}

/* Loads text and expects exactly the error want. */
static void load_err(const char *text, const char *want)
{
    pmx_config_t cfg, before;
    memset(&cfg, 0x5a, sizeof cfg);
    before = cfg;
    char err[512] = "";
    if (pmx_config_load_string("test.conf", text, &cfg, err, sizeof err) != -1)
        fail_msg("accepted:\n%s", text);
    if (strcmp(err, want) != 0) fail_msg("error\n  got:  %s\n  want: %s", err, want);
    assert_memory_equal(&cfg, &before, sizeof cfg);
}

static void test_defaults(void **state)
{
    (void)state;
    pmx_config_t c;
    load_ok("", &c);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    assert_int_equal(c.workers, cpus < 1 ? 1 : cpus > 256 ? 256 : cpus);
    assert_true(c.shutdown_timeout_ms == 30000);
    assert_string_equal(c.metrics_listen, "127.0.0.1:9464");
    assert_int_equal(c.log_level, PMX_LOG_INFO);
    assert_string_equal(c.pg_conninfo, "host=/var/run/postgresql dbname=postmux");
    assert_string_equal(c.redis_address, "127.0.0.1:6379");
    assert_string_equal(c.redis_password_file, "");
    assert_string_equal(c.redis_prefix, "pmx");
    assert_string_equal(c.relay_host, "127.0.0.1");
    assert_int_equal(c.relay_port, 25);
    assert_int_equal(c.relay_tls, PMX_TLS_STARTTLS);
    assert_true(c.relay_tls_verify);
    assert_string_equal(c.relay_ca_file, "");
    assert_string_equal(c.relay_auth_user, "");
    assert_string_equal(c.relay_auth_password_file, "");
    assert_int_equal(c.relay_connections_per_worker, 16);
    char host[256] = "";
    assert_int_equal(gethostname(host, sizeof host), 0);
    assert_string_equal(c.relay_helo_name, host);
    assert_string_equal(c.submission_listen, "127.0.0.1:2525");
    assert_string_equal(c.submission_tls_cert, "");
    assert_string_equal(c.submission_tls_key, "");
    assert_true(c.submission_auth_requires_tls);
    assert_true(c.submission_max_message_size == 25u * 1024 * 1024);
    assert_true(c.submission_memory_budget == 64u * 1024 * 1024);
    assert_true(c.retry_base_ms == 60000);
    assert_true(c.retry_max_interval_ms == 3600000);
    assert_true(c.max_queue_lifetime_ms == 5ull * 86400000);
    assert_true(c.suspend_hold_ms == 45000);
    assert_int_equal(c.soft_bounce_limit, 5);
    assert_true(c.soft_bounce_suppress_for_ms == 7ull * 86400000);
    assert_string_equal(c.master_key_file, "/etc/postmux/master.key");
    assert_string_equal(c.path, "test.conf");
    pmx_config_free(&c);
    assert_null(c.path);
    pmx_config_free(&c);   /* a second free is harmless */

    /* The brief's minimal config. */
    load_ok(MIN_CONF, &c);
    assert_string_equal(c.pg_conninfo, "host=/tmp/x dbname=postmux");
    assert_string_equal(c.redis_address, "unix:/tmp/x/redis.sock");
    assert_string_equal(c.master_key_file, "/tmp/x/master.key");
    pmx_config_free(&c);
}

static void test_every_key(void **state)
{
    (void)state;
    static const char text[] =
        "; a full config, every key away from its default\n"
        "# hash comments too\n"
        "[daemon]\n"
        "workers = 7                  ; inline comment\n"
        "shutdown_timeout = 2m\n"
        "metrics_listen = [::1]:9100\n"
        "log_level = debug\n"
        "[postgres]\n"
        "conninfo = postgresql://pmx@db.example:5433/mail?sslmode=require\n"
        "[redis]\n"
        "address = 10.0.0.5:6380\n"
        "password_file = /run/secrets/redis\n"
        "prefix = Mail_Q-2\n"
        "[relay]\n"
        "host = smtp.example.net\n"
        "port = 465\n"
        "tls = tls\n"
        "tls_verify = no\n"
        "ca_file = /etc/ssl/relay.pem\n"
        "auth_user = postmux@example.net\n"
        "auth_password_file = /run/secrets/relay\n"
        "connections_per_worker = 1000\n"
        "helo_name = mx1.example.net\n"
        "[submission]\n"
        "listen = 0.0.0.0:587\n"
        "tls_cert = /etc/postmux/cert.pem\n"
        "tls_key = /etc/postmux/key.pem\n"
        "auth_requires_tls = off\n"
        "max_message_size = 512K\n"
        "memory_budget = 3M\n"
        "[delivery]\n"
        "retry_base = 250ms\n"
        "retry_max_interval = 2h\n"
        "max_queue_lifetime = 3d\n"
        "suspend_hold = 0s\n"
        "[feedback]\n"
        "soft_bounce_limit = 0\n"
        "soft_bounce_suppress_for = 36h\n"
        "[keys]\n"
        "master_key_file = /var/lib/postmux/key\n";
    pmx_config_t c;
    load_ok(text, &c);
    assert_int_equal(c.workers, 7);
    assert_true(c.shutdown_timeout_ms == 120000);
    assert_string_equal(c.metrics_listen, "[::1]:9100");
    assert_int_equal(c.log_level, PMX_LOG_DEBUG);
    assert_string_equal(c.pg_conninfo, "postgresql://pmx@db.example:5433/mail?sslmode=require");
    assert_string_equal(c.redis_address, "10.0.0.5:6380");
    assert_string_equal(c.redis_password_file, "/run/secrets/redis");
    assert_string_equal(c.redis_prefix, "Mail_Q-2");
    assert_string_equal(c.relay_host, "smtp.example.net");
    assert_int_equal(c.relay_port, 465);
    assert_int_equal(c.relay_tls, PMX_TLS_IMPLICIT);
    assert_false(c.relay_tls_verify);
    assert_string_equal(c.relay_ca_file, "/etc/ssl/relay.pem");
    assert_string_equal(c.relay_auth_user, "postmux@example.net");
    assert_string_equal(c.relay_auth_password_file, "/run/secrets/relay");
    assert_int_equal(c.relay_connections_per_worker, 1000);
    assert_string_equal(c.relay_helo_name, "mx1.example.net");
    assert_string_equal(c.submission_listen, "0.0.0.0:587");
    assert_string_equal(c.submission_tls_cert, "/etc/postmux/cert.pem");
    assert_string_equal(c.submission_tls_key, "/etc/postmux/key.pem");
    assert_false(c.submission_auth_requires_tls);
    assert_true(c.submission_max_message_size == 512 * 1024);
    assert_true(c.submission_memory_budget == 3 * 1024 * 1024);
    assert_true(c.retry_base_ms == 250);
    assert_true(c.retry_max_interval_ms == 7200000);
    assert_true(c.max_queue_lifetime_ms == 3ull * 86400000);
    assert_true(c.suspend_hold_ms == 0);
    assert_int_equal(c.soft_bounce_limit, 0);
    assert_true(c.soft_bounce_suppress_for_ms == 36ull * 3600000);
    assert_string_equal(c.master_key_file, "/var/lib/postmux/key");
    pmx_config_free(&c);
}

/* [submission] session limits: defaults, every key, percent, the rule between them. */
static void test_submission_limits(void **state)
{
    (void)state;
    pmx_config_t c;
    load_ok("[keys]\nmaster_key_file = /k\n", &c);
    assert_int_equal(c.submission_max_connections, 1000);
    assert_int_equal(c.submission_max_connections_per_address, 100);
    assert_int_equal(c.submission_connection_reserve, 20);
    assert_int_equal(c.submission_junk_command_limit, 100);
    assert_true(c.submission_auth_timeout_ms == 60000);
    assert_true(c.submission_max_session_time_ms == 3600000);
    pmx_config_free(&c);
    load_ok("[submission]\nmax_connections = 50\nmax_connections_per_address = 5\n"
            "connection_reserve = 30%\njunk_command_limit = 7\nauth_timeout = 10s\n"
            "max_session_time = 2m\n", &c);
    assert_int_equal(c.submission_max_connections, 50);
    assert_int_equal(c.submission_max_connections_per_address, 5);
    assert_int_equal(c.submission_connection_reserve, 30);
    assert_int_equal(c.submission_junk_command_limit, 7);
    assert_true(c.submission_auth_timeout_ms == 10000);
    assert_true(c.submission_max_session_time_ms == 120000);
    pmx_config_free(&c);
    load_ok("[submission]\nconnection_reserve = 0\n", &c);
    assert_int_equal(c.submission_connection_reserve, 0);
    pmx_config_free(&c);
    static const char *const bad[][2] = {
        { "[submission]\nconnection_reserve = 95%\n", "expected a percentage from 0% to 90%" },
        { "[submission]\nconnection_reserve = 2x%\n", "expected a percentage" },
        { "[submission]\nmax_connections = 0\n", "expected a number from 1" },
        { "[submission]\nauth_timeout = 10ms\n", "must be from 1s to 1h" },
        { "[submission]\nmax_connections = 10\nmax_connections_per_address = 11\n",
          "max_connections_per_address (11) must not be more than max_connections (10)" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        pmx_config_t x;
        char err[512] = "";
        assert_int_equal(pmx_config_load_string("test.conf", bad[i][0], &x, err, sizeof err), -1);
        if (!strstr(err, bad[i][1])) fail_msg("error\n  got:  %s\n  want: ...%s...", err, bad[i][1]);
    }
}

static void test_optional_and_special_values(void **state)
{
    (void)state;
    pmx_config_t c;
    /* Empty = off / none; auto workers; other enum values; CRLF line endings; a BOM. */
    load_ok("\xEF\xBB\xBF[daemon]\r\nworkers = auto\r\nmetrics_listen =\r\nlog_level = error\r\n"
            "[relay]\r\ntls = none\r\nhelo_name = [192.0.2.7]\r\nhost = ::1\r\n"
            "[submission]\r\nlisten =    ; off\r\n"
            "[daemon]\r\nshutdown_timeout = 0\r\n", &c);
    assert_true(c.workers >= 1 && c.workers <= 256);
    assert_string_equal(c.metrics_listen, "");
    assert_int_equal(c.log_level, PMX_LOG_ERROR);
    assert_int_equal(c.relay_tls, PMX_TLS_NONE);
    assert_string_equal(c.relay_helo_name, "[192.0.2.7]");
    assert_string_equal(c.relay_host, "::1");
    assert_string_equal(c.submission_listen, "");
    assert_true(c.shutdown_timeout_ms == 0);
    pmx_config_free(&c);

    load_ok("[relay]\nhelo_name = [IPv6:2001:db8::1]\ntls = starttls\n"
            "[daemon]\nlog_level = warn\nworkers = 256\n", &c);
    assert_string_equal(c.relay_helo_name, "[IPv6:2001:db8::1]");
    assert_int_equal(c.log_level, PMX_LOG_WARN);
    assert_int_equal(c.workers, 256);
    pmx_config_free(&c);

    /* [http]: https:// anywhere, http:// only on a loopback host; off by default. */
    load_ok("[relay]\nport = 2525\n", &c);
    assert_string_equal(c.http_listen, "");
    assert_true(c.http_max_body_size == 10u * 1024 * 1024);
    assert_int_equal(c.http_max_connections_per_address, 64);
    assert_true(c.http_idle_timeout_ms == 30000);
    pmx_config_free(&c);
    const char *urls[] = { "https://mail.example.com", "https://mail.example.com:8443/base",
                           "http://127.0.0.1:8025", "http://localhost", "http://[::1]:80/" };
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        char text[200];
        snprintf(text, sizeof text, "[http]\nlisten = 127.0.0.1:8025\npublic_url = %s\n"
                 "max_connections_per_address = 0\nidle_timeout = 5s\n", urls[i]);
        load_ok(text, &c);
        assert_string_equal(c.http_public_url, urls[i]);
        assert_int_equal(c.http_max_connections_per_address, 0);
        pmx_config_free(&c);
    }

    /* A section may come back; its other keys are fine (a repeated key is not). */
    load_ok("[relay]\nport = 2525\n[daemon]\nworkers = 1\n[relay]\nhost = localhost\n", &c);
    assert_int_equal(c.relay_port, 2525);
    assert_string_equal(c.relay_host, "localhost");
    pmx_config_free(&c);
}

static void test_durations(void **state)
{
    (void)state;
    static const struct { const char *s; uint64_t ms; } good[] = {
        { "0", 0 }, { "30", 30000 }, { "30s", 30000 }, { "250ms", 250 }, { "5m", 300000 },
        { "1h", 3600000 }, { "5d", 432000000 }, { "007s", 7000 }, { "0ms", 0 },
        { "18446744073709551615ms", UINT64_MAX }, { "213503982334d", 213503982334ull * 86400000 },
    };
    static const char *const bad[] = {
        "", "s", "ms", "-1", "-5s", "+5s", " 5s", "5s ", "5 s", "1.5h", "5x", "5S", "5sec",
        "1h30m", "0x10", "18446744073709551616ms", "18446744073709552s", "213503982335d",
        "99999999999999999999999", "5mss", "abc",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        uint64_t ms = 1;
        if (pmx_config_parse_duration(good[i].s, &ms) != 0) fail_msg("'%s' refused", good[i].s);
        if (ms != good[i].ms) fail_msg("'%s' -> %llu", good[i].s, (unsigned long long)ms);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t ms = 12345;
        if (pmx_config_parse_duration(bad[i], &ms) != -1) fail_msg("'%s' accepted", bad[i]);
        assert_true(ms == 12345);
    }
    uint64_t ms = 1;
    assert_int_equal(pmx_config_parse_duration(NULL, &ms), -1);
}

/* Unset, memory_budget follows a large max_message_size (twice it). */
static void test_memory_budget_default(void **state)
{
    (void)state;
    pmx_config_t c;
    load_ok("[submission]\nmax_message_size = 40M\n", &c);
    assert_true(c.submission_memory_budget == 80u * 1024 * 1024);
    pmx_config_free(&c);
    load_ok("[submission]\nmax_message_size = 32M\nmemory_budget = 64M\n", &c);
    assert_true(c.submission_memory_budget == 64u * 1024 * 1024);
    pmx_config_free(&c);
}

static void test_sizes(void **state)
{
    (void)state;
    static const struct { const char *s; uint64_t b; } good[] = {
        { "0", 0 }, { "1024", 1024 }, { "100B", 100 }, { "512K", 512 * 1024 },
        { "512k", 512 * 1024 }, { "512KB", 512 * 1024 }, { "512kB", 512 * 1024 },
        { "512KiB", 512 * 1024 }, { "25M", 25u << 20 }, { "25MB", 25u << 20 },
        { "25MiB", 25u << 20 }, { "25m", 25u << 20 }, { "1G", 1ull << 30 },
        { "1gb", 1ull << 30 }, { "2T", 2ull << 40 }, { "16777215T", 16777215ull << 40 },
        { "18446744073709551615", UINT64_MAX },
    };
    static const char *const bad[] = {
        "", "M", "-1", "-1M", "+1M", " 1M", "1M ", "1 M", "1.5M", "1X", "1KK", "1MBs",
        "18446744073709551616", "16777216T", "17179869184G", "0x10",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        uint64_t b = 1;
        if (pmx_config_parse_size(good[i].s, &b) != 0) fail_msg("'%s' refused", good[i].s);
        if (b != good[i].b) fail_msg("'%s' -> %llu", good[i].s, (unsigned long long)b);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t b = 12345;
        if (pmx_config_parse_size(bad[i], &b) != -1) fail_msg("'%s' accepted", bad[i]);
        assert_true(b == 12345);
    }
}

static void test_bools(void **state)
{
    (void)state;
    static const char *const yes[] = { "yes", "true", "on", "1", "YES", "True" };
    static const char *const no[] = { "no", "false", "off", "0", "No", "OFF" };
    static const char *const bad[] = { "", "y", "n", "2", "enabled", "yes ", "nope" };
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        bool b = false;
        assert_int_equal(pmx_config_parse_bool(yes[i], &b), 0);
        assert_true(b);
    }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        bool b = true;
        assert_int_equal(pmx_config_parse_bool(no[i], &b), 0);
        assert_false(b);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bool b = true;
        if (pmx_config_parse_bool(bad[i], &b) != -1) fail_msg("'%s' accepted", bad[i]);
        assert_true(b);
    }
}

static void test_structure_errors(void **state)
{
    (void)state;
    load_err("[daemon]\nworkers = 2\n\n[relya]\nhost = x\n",
             "test.conf:4: unknown section [relya] (expected daemon, postgres, redis, relay, "
             "submission, http, inbound, delivery, mx, feedback or keys)");
    /* An unknown section is refused even with no keys under it. */
    load_err("[daemon]\n[Relay]\n",
             "test.conf:2: unknown section [Relay] (expected daemon, postgres, redis, relay, "
             "submission, http, inbound, delivery, mx, feedback or keys)");
    load_err("; c\n[relay]\nhost = a\nhots = b\n", "test.conf:4: [relay] unknown key 'hots'");
    load_err("[daemon]\nhost = a\n", "test.conf:2: [daemon] unknown key 'host'");
    load_err("workers = 2\n[daemon]\n",
             "test.conf:1: 'workers' is outside any section (put it under [daemon], [relay], ...)");
    load_err("[relay]\nport = 26\nhost = a\n\n  port = 27\n",
             "test.conf:5: [relay] port given twice (first on line 2)");
    load_err("[relay]\nport = 26\n[daemon]\nworkers=1\n[relay]\nport = 27\n",
             "test.conf:6: [relay] port given twice (first on line 2)");
    load_err("[relay]\nhost = a\njust words\n",
             "test.conf:3: syntax error: expected [section], KEY = VALUE or a ; comment");
    /* A continuation line is not glued to the previous value. */
    load_err("[postgres]\nconninfo = host=/tmp\n  dbname=other\n",
             "test.conf:3: [postgres] unknown key 'dbname'");
    load_err("[postgres]\nconninfo = host=/tmp\n    sslmode require\n",
             "test.conf:3: syntax error: expected [section], KEY = VALUE or a ; comment");
    load_err("[relay\nhost = a\n", "test.conf:1: expected ']' after the section name");
    load_err("[relay] host = a\n", "test.conf:1: unexpected text after [relay]");
    load_err("[relay]\nhost: a\n", "test.conf:2: expected KEY = VALUE, not KEY: VALUE");
    load_err("[relay]\nhost = a\x01\n", "test.conf:2: [relay] host: contains a control character");

    /* inih's line buffer holds 198 characters; longer lines are refused, not split. */
    char line[400];
    memset(line, 'a', sizeof line);
    char text[600];
    snprintf(text, sizeof text, "[keys]\nmaster_key_file = /%.*s\n", 198 - 19, line);
    pmx_config_t c;
    load_ok(text, &c);
    assert_int_equal(strlen(c.master_key_file), 198 - 18);
    pmx_config_free(&c);
    snprintf(text, sizeof text, "[keys]\n\nmaster_key_file = /%.*s\n", 199 - 19, line);
    load_err(text, "test.conf:3: line longer than 198 characters");
}

static void test_value_errors(void **state)
{
    (void)state;
    static const struct { const char *text, *err; } cases[] = {
        { "[inbound]\nhostname = [192.0.2.1]\n",
          "test.conf:2: [inbound] hostname: expected a host name such as mx.example.com, got "
          "'[192.0.2.1]'" },
        { "[inbound]\nhostname = mx.example.com:25\n",
          "test.conf:2: [inbound] hostname: expected a host name such as mx.example.com, got "
          "'mx.example.com:25'" },
        { "[inbound]\ntls_cert = /c.pem\n",
          "test.conf: [inbound] tls_cert and tls_key must be set together (or neither)" },
        { "[relay]\ntls = startls\n",
          "test.conf:2: [relay] tls: expected none, starttls or tls, got 'startls'" },
        { "[relay]\ntls = STARTTLS\n",
          "test.conf:2: [relay] tls: expected none, starttls or tls, got 'STARTTLS'" },
        { "[daemon]\nlog_level = verbose\n",
          "test.conf:2: [daemon] log_level: expected debug, info, warn or error, got 'verbose'" },
        { "[daemon]\nworkers = 0\n",
          "test.conf:2: [daemon] workers: expected auto or a number from 1 to 256, got '0'" },
        { "[daemon]\nworkers = 257\n",
          "test.conf:2: [daemon] workers: expected auto or a number from 1 to 256, got '257'" },
        { "[daemon]\nworkers = many\n",
          "test.conf:2: [daemon] workers: expected auto or a number from 1 to 256, got 'many'" },
        { "[daemon]\nworkers =\n",
          "test.conf:2: [daemon] workers: expected auto or a number from 1 to 256, got ''" },
        { "[daemon]\nshutdown_timeout = 30 s\n",
          "test.conf:2: [daemon] shutdown_timeout: expected a duration such as 250ms, 30s, 5m, "
          "1h or 5d, got '30 s'" },
        { "[daemon]\nshutdown_timeout = 2h\n",
          "test.conf:2: [daemon] shutdown_timeout: must be from 0s to 1h, got '2h'" },
        { "[daemon]\nmetrics_listen = 9464\n",
          "test.conf:2: [daemon] metrics_listen: expected HOST:PORT or [IPv6]:PORT (empty = off), "
          "got '9464'" },
        { "[daemon]\nmetrics_listen = 127.0.0.1:99999\n",
          "test.conf:2: [daemon] metrics_listen: expected HOST:PORT or [IPv6]:PORT (empty = off), "
          "got '127.0.0.1:99999'" },
        { "[daemon]\nmetrics_listen = unix:/run/m.sock\n",
          "test.conf:2: [daemon] metrics_listen: expected HOST:PORT or [IPv6]:PORT (empty = off), "
          "got 'unix:/run/m.sock'" },
        { "[submission]\nlisten = ::1:2525\n",
          "test.conf:2: [submission] listen: expected HOST:PORT or [IPv6]:PORT (empty = off), "
          "got '::1:2525'" },
        { "[submission]\nlisten = bad host:2525\n",
          "test.conf:2: [submission] listen: expected HOST:PORT or [IPv6]:PORT (empty = off), "
          "got 'bad host:2525'" },
        { "[postgres]\nconninfo =\n", "test.conf:2: [postgres] conninfo: must not be empty" },
        { "[postgres]\nconninfo = host=/tmp nosuchoption=1\n",
          "test.conf:2: [postgres] conninfo: invalid connection option \"nosuchoption\"" },
        { "[redis]\naddress = localhost\n",
          "test.conf:2: [redis] address: 'localhost': expected HOST:PORT, [IPv6]:PORT or unix:/path" },
        { "[redis]\naddress = unix:relative.sock\n",
          "test.conf:2: [redis] address: 'unix:relative.sock': unix: needs an absolute socket path" },
        { "[redis]\naddress = a..b:6379\n",
          "test.conf:2: [redis] address: 'a..b': not a valid host name or IP address" },
        { "[redis]\nprefix =\n",
          "test.conf:2: [redis] prefix: expected 1 to 32 of A-Z a-z 0-9 _ -, got ''" },
        { "[redis]\nprefix = pmx:prod\n",
          "test.conf:2: [redis] prefix: expected 1 to 32 of A-Z a-z 0-9 _ -, got 'pmx:prod'" },
        { "[redis]\nprefix = 123456789012345678901234567890123\n",
          "test.conf:2: [redis] prefix: expected 1 to 32 of A-Z a-z 0-9 _ -, "
          "got '123456789012345678901234567890123'" },
        { "[relay]\nhost =\n", "test.conf:2: [relay] host: expected a host name or IP address, got ''" },
        { "[relay]\nhost = smtp.example.com:25\n",
          "test.conf:2: [relay] host: expected a host name or IP address, got 'smtp.example.com:25'" },
        { "[relay]\nport = 0\n", "test.conf:2: [relay] port: expected a number from 1 to 65535, got '0'" },
        { "[relay]\nport = 65536\n",
          "test.conf:2: [relay] port: expected a number from 1 to 65535, got '65536'" },
        { "[relay]\nport = -25\n",
          "test.conf:2: [relay] port: expected a number from 1 to 65535, got '-25'" },
        { "[relay]\nport = 25x\n",
          "test.conf:2: [relay] port: expected a number from 1 to 65535, got '25x'" },
        { "[relay]\ntls_verify = maybe\n",
          "test.conf:2: [relay] tls_verify: expected yes or no (or true/false, on/off, 1/0), got 'maybe'" },
        { "[relay]\nconnections_per_worker = 1001\n",
          "test.conf:2: [relay] connections_per_worker: expected a number from 1 to 1000, got '1001'" },
        { "[relay]\nhelo_name = bad_name!\n",
          "test.conf:2: [relay] helo_name: expected a domain name or an address literal such as "
          "[192.0.2.1], got 'bad_name!'" },
        { "[relay]\nhelo_name = [300.1.1.1]\n",
          "test.conf:2: [relay] helo_name: expected a domain name or an address literal such as "
          "[192.0.2.1], got '[300.1.1.1]'" },
        { "[submission]\nauth_requires_tls = sometimes\n",
          "test.conf:2: [submission] auth_requires_tls: expected yes or no (or true/false, on/off, "
          "1/0), got 'sometimes'" },
        { "[submission]\nmax_message_size = 2G\n",
          "test.conf:2: [submission] max_message_size: must be from 1K to 1G, got '2G'" },
        { "[submission]\nmax_message_size = 1023\n",
          "test.conf:2: [submission] max_message_size: must be from 1K to 1G, got '1023'" },
        { "[submission]\nmax_message_size = 25Q\n",
          "test.conf:2: [submission] max_message_size: expected a size such as 512K, 25M or 1G, "
          "got '25Q'" },
        { "[delivery]\nretry_base = 50ms\n",
          "test.conf:2: [delivery] retry_base: must be from 100ms to 1d, got '50ms'" },
        { "[delivery]\nretry_base = -60s\n",
          "test.conf:2: [delivery] retry_base: expected a duration such as 250ms, 30s, 5m, 1h or "
          "5d, got '-60s'" },
        { "[delivery]\nmax_queue_lifetime = 99999999999999999999d\n",
          "test.conf:2: [delivery] max_queue_lifetime: expected a duration such as 250ms, 30s, 5m, "
          "1h or 5d, got '99999999999999999999d'" },
        { "[delivery]\nsuspend_hold = 2d\n",
          "test.conf:2: [delivery] suspend_hold: must be from 0s to 1d, got '2d'" },
        { "[feedback]\nsoft_bounce_limit = 1001\n",
          "test.conf:2: [feedback] soft_bounce_limit: expected a number from 0 to 1000, got '1001'" },
        { "[feedback]\nsoft_bounce_suppress_for = 0s\n",
          "test.conf:2: [feedback] soft_bounce_suppress_for: must be from 1s to 3650d, got '0s'" },
        { "[keys]\nmaster_key_file =\n", "test.conf:2: [keys] master_key_file: must not be empty" },
        /* Rules between keys: no line, just the file. */
        { "[relay]\nauth_user = me\n",
          "test.conf: [relay] auth_user is set but auth_password_file is empty" },
        { "[relay]\nauth_password_file = /x\n",
          "test.conf: [relay] auth_password_file is set but auth_user is empty" },
        { "[submission]\ntls_cert = /etc/c.pem\n",
          "test.conf: [submission] tls_cert and tls_key must be set together (or neither)" },
        { "[submission]\ntls_key = /etc/k.pem\n",
          "test.conf: [submission] tls_cert and tls_key must be set together (or neither)" },
        { "[submission]\nmax_message_size = 40M\nmemory_budget = 64M\n",
          "test.conf: [submission] memory_budget (64M) must be at least twice max_message_size (40M)" },
        { "[submission]\nmemory_budget = 512K\n",
          "test.conf:2: [submission] memory_budget: must be from 1M to 64G, got '512K'" },
        { "[http]\ntls_cert = /etc/c.pem\n",
          "test.conf: [http] tls_cert and tls_key must be set together (or neither)" },
        { "[http]\nlisten = 127.0.0.1:8025\n",
          "test.conf: [http] public_url is required when listen is set (e.g. "
          "https://mail.example.com)" },
        { "[http]\nlisten = 127.0.0.1:8025\npublic_url = http://mail.example.com\n",
          "test.conf: [http] public_url: must be https:// (one-click unsubscribe needs HTTPS); "
          "http:// is accepted only for a loopback host, got 'http://mail.example.com'" },
        { "[http]\npublic_url = http://127.0.0.1.example.com/\n",
          "test.conf: [http] public_url: must be https:// (one-click unsubscribe needs HTTPS); "
          "http:// is accepted only for a loopback host, got 'http://127.0.0.1.example.com/'" },
        { "[http]\npublic_url = ftp://mail.example.com\n",
          "test.conf: [http] public_url: expected an absolute https:// URL such as "
          "https://mail.example.com, got 'ftp://mail.example.com'" },
        { "[http]\npublic_url = https://\n",
          "test.conf: [http] public_url: expected an absolute https:// URL such as "
          "https://mail.example.com, got 'https://'" },
        { "[http]\nidle_timeout = 500ms\n",
          "test.conf:2: [http] idle_timeout: must be from 1s to 1h, got '500ms'" },
        { "[delivery]\nretry_base = 10m\nretry_max_interval = 5m\n",
          "test.conf: [delivery] retry_max_interval (5m) must not be less than retry_base (10m)" },
        { "[delivery]\nretry_base = 1h\nmax_queue_lifetime = 90s\n",
          "test.conf: [delivery] max_queue_lifetime (90s) must not be less than retry_base (1h)" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) load_err(cases[i].text, cases[i].err);

    /* The first error wins, even when a later line is also bad. */
    load_err("[relay]\nport = 0\ntls = x\n[nope]\n",
             "test.conf:2: [relay] port: expected a number from 1 to 65535, got '0'");
    /* An echoed bad value is cut short and printable. */
    load_err("[relay]\ntls = aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
             "test.conf:2: [relay] tls: expected none, starttls or tls, got "
             "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...'");
}

/* A failed load leaves *out byte for byte as it was, and frees what it built (LSan). */
/* [delivery] route and [mx] (docs/delivery.md "Direct delivery"). */
static void test_mx_keys(void **state)
{
    (void)state;
    pmx_config_t c;
    char err[512];
    assert_int_equal(pmx_config_load_string("test.conf", "[relay]\nhelo_name = relay.example\n",
                                            &c, err, sizeof err), 0);
    assert_int_equal(c.delivery_route, PMX_ROUTE_RELAY);
    assert_int_equal(c.mx_port, 25);
    assert_string_equal(c.mx_allow_networks, "");
    assert_string_equal(c.mx_resolver, "");
    assert_int_equal(c.mx_connections_per_site, 20);
    assert_int_equal(c.mx_messages_per_connection, 100);
    assert_int_equal(c.mx_connect_timeout_ms, 30000);
    assert_int_equal(c.mx_tls, PMX_TLS_OPPORTUNISTIC);
    assert_string_equal(c.mx_helo_name, "relay.example");     /* defaults to [relay]'s */
    pmx_config_free(&c);
    assert_int_equal(pmx_config_load_string("test.conf",
                                            "[delivery]\nroute = mx\n[mx]\nport = 2525\n"
                                            "allow_networks = 127.0.0.0/8, ::1\n"
                                            "resolver = [::1]:5353\nconnections_per_site = 3\n"
                                            "messages_per_connection = 7\nconnect_timeout = 5s\n"
                                            "tls = required\nhelo_name = mta.example\n",
                                            &c, err, sizeof err), 0);
    assert_int_equal(c.delivery_route, PMX_ROUTE_MX);
    assert_int_equal(c.mx_port, 2525);
    assert_string_equal(c.mx_allow_networks, "127.0.0.0/8, ::1");
    assert_string_equal(c.mx_resolver, "[::1]:5353");
    assert_int_equal(c.mx_connections_per_site, 3);
    assert_int_equal(c.mx_messages_per_connection, 7);
    assert_int_equal(c.mx_connect_timeout_ms, 5000);
    assert_int_equal(c.mx_tls, PMX_TLS_STARTTLS);
    assert_string_equal(c.mx_helo_name, "mta.example");
    pmx_config_free(&c);
    load_err("[delivery]\nroute = smarthost\n",
             "test.conf:2: [delivery] route: expected relay or mx, got 'smarthost'");
    load_err("[mx]\ntls = starttls\n",
             "test.conf:2: [mx] tls: expected opportunistic, required or none, got 'starttls'");
    load_err("[mx]\nallow_networks = 127.0.0.0/40\n",
             "test.conf:2: [mx] allow_networks: '127.0.0.0/40': bad prefix length");
    load_err("[mx]\nresolver = dns.example\n",
             "test.conf:2: [mx] resolver: resolver 'dns.example': expected an IP address, IP:PORT "
             "or [IPV6]:PORT");
    load_err("[mx]\nconnections_per_site = 0\n",
             "test.conf:2: [mx] connections_per_site: expected a number from 1 to 10000, got '0'");
}

static void test_atomic(void **state)
{
    (void)state;
    pmx_config_t old;
    load_ok("[relay]\nhost = old.example\n", &old);
    pmx_config_t keep = old;
    char err[512];
    static const char *const bad[] = {
        /* Fails at the last line, after many strings were already replaced. */
        "[daemon]\nmetrics_listen = 127.0.0.1:1\n[redis]\nprefix = new\naddress = 1.2.3.4:5\n"
        "[relay]\nhost = new.example\nhelo_name = h.example\n[keys]\nmaster_key_file = /k\n[x]\n",
        /* Fails in the rules after the whole file parsed. */
        "[relay]\nhost = new.example\nauth_user = u\n[submission]\nlisten = 1.2.3.4:25\n",
        /* Fails on a syntax error. */
        "[relay]\nhost = new.example\nbroken\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(pmx_config_load_string("test.conf", bad[i], &old, err, sizeof err), -1);
        assert_memory_equal(&old, &keep, sizeof old);
        assert_string_equal(old.relay_host, "old.example");
    }
    assert_int_equal(pmx_config_load("/nonexistent/postmux.conf", &old, err, sizeof err), -1);
    assert_string_equal(err, "/nonexistent/postmux.conf: cannot open: No such file or directory");
    assert_memory_equal(&old, &keep, sizeof old);

    /* A good load replaces it; the caller frees the old one. */
    pmx_config_t fresh;
    load_ok("[relay]\nhost = new.example\n", &fresh);
    pmx_config_free(&old);
    assert_string_equal(fresh.relay_host, "new.example");
    pmx_config_free(&fresh);
}

static void test_load_file(void **state)
{
    (void)state;
    static const char good[] = "[daemon]\nworkers = 3\n";
    static const char text[] = "[daemon]\nworkers = 3\n[relay]\nport = 2525\ntls = startls\n";
    const char *path = write_file("postmux.conf", good, sizeof good - 1);
    pmx_config_t c;
    char err[512];
    assert_int_equal(pmx_config_load(path, &c, err, sizeof err), 0);
    assert_int_equal(c.workers, 3);
    assert_string_equal(c.path, path);
    pmx_config_free(&c);

    path = write_file("bad.conf", text, sizeof text - 1);
    assert_int_equal(pmx_config_load(path, &c, err, sizeof err), -1);
    char want[512];
    snprintf(want, sizeof want, "%s:5: [relay] tls: expected none, starttls or tls, got 'startls'", path);
    assert_string_equal(err, want);

    /* A NUL byte in a file is refused with its line. */
    path = write_file("nul.conf", "[relay]\nhost = a\0b\n", 19);
    assert_int_equal(pmx_config_load(path, &c, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s:2: contains a NUL byte", path);
    assert_string_equal(err, want);

    /* A directory opens but cannot be read. */
    assert_int_equal(pmx_config_load(tmpdir, &c, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s: cannot read: Is a directory", tmpdir);
    assert_string_equal(err, want);

    /* The shipped example (repo root: $PMX_ROOT or the current directory) loads
     * and holds the defaults. */
    pmx_config_t ex, def;
    const char *root = getenv("PMX_ROOT");
    char example[512];
    snprintf(example, sizeof example, "%s/postmux.conf.example", root && *root ? root : ".");
    if (pmx_config_load(example, &ex, err, sizeof err) != 0) fail_msg("%s", err);
    load_ok("", &def);
    assert_int_equal(ex.workers, def.workers);
    assert_true(ex.shutdown_timeout_ms == def.shutdown_timeout_ms);
    assert_string_equal(ex.metrics_listen, def.metrics_listen);
    assert_string_equal(ex.pg_conninfo, def.pg_conninfo);
    assert_string_equal(ex.redis_address, def.redis_address);
    assert_string_equal(ex.relay_helo_name, def.relay_helo_name);
    assert_string_equal(ex.submission_listen, def.submission_listen);
    assert_true(ex.submission_max_message_size == def.submission_max_message_size);
    assert_true(ex.submission_memory_budget == def.submission_memory_budget);
    assert_true(ex.max_queue_lifetime_ms == def.max_queue_lifetime_ms);
    assert_true(ex.suspend_hold_ms == def.suspend_hold_ms);
    assert_int_equal(ex.soft_bounce_limit, def.soft_bounce_limit);
    assert_true(ex.soft_bounce_suppress_for_ms == def.soft_bounce_suppress_for_ms);
    assert_string_equal(ex.master_key_file, def.master_key_file);
    pmx_config_free(&ex);
    pmx_config_free(&def);
}

static void test_default_path(void **state)
{
    (void)state;
    unsetenv("POSTMUX_CONFIG");
    assert_string_equal(pmx_config_default_path(), "/etc/postmux/postmux.conf");
    setenv("POSTMUX_CONFIG", "", 1);
    assert_string_equal(pmx_config_default_path(), "/etc/postmux/postmux.conf");
    setenv("POSTMUX_CONFIG", "/tmp/x.conf", 1);
    assert_string_equal(pmx_config_default_path(), "/tmp/x.conf");
    unsetenv("POSTMUX_CONFIG");
}

static void expect_secret(const char *name, const char *data, size_t n, const char *want, size_t wantlen)
{
    const char *path = write_file(name, data, n);
    char *s = NULL;
    size_t len = 0;
    char err[512] = "";
    if (pmx_config_read_secret(path, &s, &len, err, sizeof err) != 0) fail_msg("%s: %s", name, err);
    assert_int_equal(len, wantlen);
    assert_memory_equal(s, want, wantlen);
    assert_int_equal(s[len], '\0');
    free(s);
}

static void expect_secret_err(const char *path, const char *reason)
{
    char *s = (char *)"untouched";
    size_t len = 77;
    char err[512] = "", want[512];
    assert_int_equal(pmx_config_read_secret(path, &s, &len, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s: %s", path, reason);
    assert_string_equal(err, want);
    assert_string_equal(s, "untouched");
    assert_int_equal(len, 77);
}

static void test_read_secret(void **state)
{
    (void)state;
    expect_secret("s1", "hunter2\n", 8, "hunter2", 7);
    expect_secret("s2", "hunter2\r\n", 9, "hunter2", 7);
    expect_secret("s3", "hunter2", 7, "hunter2", 7);
    expect_secret("s4", "hunter2\n\n", 9, "hunter2\n", 8);      /* only one newline */
    expect_secret("s5", " pass word \n", 12, " pass word ", 11);  /* spaces are kept */
    expect_secret("s6", "a\0b\n", 4, "a\0b", 3);                 /* binary-safe */

    static char big[64 * 1024 + 1];
    memset(big, 'k', sizeof big);
    expect_secret("s7", big, 64 * 1024, big, 64 * 1024);
    const char *path = write_file("s8", big, sizeof big);
    expect_secret_err(path, "larger than 64 KiB, not a secret file");

    expect_secret_err(write_file("e1", "", 0), "is empty");
    expect_secret_err(write_file("e2", "\n", 1), "is empty");
    expect_secret_err(write_file("e3", "\r\n", 2), "is empty");

    char missing[300];
    snprintf(missing, sizeof missing, "%s/no-such-file", tmpdir);
    expect_secret_err(missing, "cannot open: No such file or directory");
    expect_secret_err(tmpdir, "not a regular file");

    if (geteuid() != 0) {   /* root reads anything */
        path = write_file("unreadable", "x\n", 2);
        assert_int_equal(chmod(path, 0), 0);
        expect_secret_err(path, "cannot open: Permission denied");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_every_key),
        cmocka_unit_test(test_submission_limits),
        cmocka_unit_test(test_optional_and_special_values),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_memory_budget_default),
        cmocka_unit_test(test_bools),
        cmocka_unit_test(test_structure_errors),
        cmocka_unit_test(test_value_errors),
        cmocka_unit_test(test_mx_keys),
        cmocka_unit_test(test_atomic),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_default_path),
        cmocka_unit_test(test_read_secret),
    };
    return cmocka_run_group_tests(tests, setup_dir, remove_dir);
}
