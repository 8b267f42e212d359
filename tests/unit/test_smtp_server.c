/*
 * smtp/command.c and smtp/server.c without sockets: command and path parsing,
 * SASL decoding, then whole sessions through the state machine — the order of
 * commands, AUTH PLAIN/LOGIN, pipelining while the owner is busy, DATA read
 * byte by byte (dot-unstuffing, the terminator split across chunks), every
 * smuggling variant refused, size and line limits, STARTTLS dropping what was
 * pipelined after it, drain and timeout.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/buf.h"
#include "smtp/command.h"
#include "smtp/server.h"

/* ---- command.c ---------------------------------------------------------------- */

static void test_cmd_parse(void **state)
{
    (void)state;
    pmx_smtp_cmd_t c;
    assert_int_equal(pmx_smtp_cmd_parse("mail FROM:<a@b.c>  ", 19, &c), 0);
    assert_int_equal(c.verb, PMX_SMTP_CMD_MAIL);
    assert_int_equal(c.arg_len, 12);
    assert_memory_equal(c.arg, "FROM:<a@b.c>", 12);
    assert_int_equal(pmx_smtp_cmd_parse("StartTLS", 8, &c), 0);
    assert_int_equal(c.verb, PMX_SMTP_CMD_STARTTLS);
    assert_int_equal(c.arg_len, 0);
    assert_int_equal(pmx_smtp_cmd_parse("MAILX", 5, &c), 0);
    assert_int_equal(c.verb, PMX_SMTP_CMD_UNKNOWN);
    assert_int_equal(pmx_smtp_cmd_parse("NO\rOP", 5, &c), -1);
    assert_int_equal(pmx_smtp_cmd_parse("NOOP \xc3\xa9", 7, &c), -1);
    assert_int_equal(pmx_smtp_cmd_parse("", 0, &c), -1);
    assert_int_equal(pmx_smtp_cmd_parse(" NOOP", 5, &c), -1);
}

static void test_path_parse(void **state)
{
    (void)state;
    pmx_smtp_path_t p;
    char err[100];
    const char *a = "FROM:<a@b.c> SIZE=100 BODY=8BITMIME AUTH=<>";
    assert_int_equal(pmx_smtp_path_parse(a, strlen(a), "FROM", &p, err, sizeof err), 0);
    assert_int_equal(p.addr_len, 5);
    assert_memory_equal(p.addr, "a@b.c", 5);
    assert_int_equal(p.nparams, 3);
    assert_true(pmx_smtp_param_is(&p.params[0], "size"));
    assert_int_equal(p.params[0].value_len, 3);
    assert_int_equal(p.params[2].value_len, 2);

    a = "from: <\"x> y\"@b.c>";
    assert_int_equal(pmx_smtp_path_parse(a, strlen(a), "FROM", &p, err, sizeof err), 0);
    assert_int_equal(p.addr_len, 10);
    a = "TO:<@r1,@r2:u@d.e>";
    assert_int_equal(pmx_smtp_path_parse(a, strlen(a), "TO", &p, err, sizeof err), 0);
    assert_memory_equal(p.addr, "u@d.e", 5);
    a = "FROM:<>";
    assert_int_equal(pmx_smtp_path_parse(a, strlen(a), "FROM", &p, err, sizeof err), 0);
    assert_int_equal(p.addr_len, 0);

    const char *bad[] = { "FROM:a@b.c", "FROM:<a@b.c", "FROM<a@b.c>", "TO:<a@b.c>",
                          "FROM:<a@b.c>x", "FROM:<a@b.c> =x", "FROM:<a@b.c> K=", "FROM:<a<b>",
                          "FROM:<@r1:>" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(pmx_smtp_path_parse(bad[i], strlen(bad[i]), "FROM", &p, err, sizeof err), -1);
}

static void test_sasl(void **state)
{
    (void)state;
    pmx_buf_t u = PMX_BUF_INIT, pw = PMX_BUF_INIT;
    /* "\0apikey\0pmx_key" */
    assert_int_equal(pmx_smtp_sasl_plain_decode("AGFwaWtleQBwbXhfa2V5", 20, &u, &pw), 0);
    assert_string_equal(u.data, "apikey");
    assert_string_equal(pw.data, "pmx_key");
    pmx_buf_reset(&u);
    pmx_buf_reset(&pw);
    /* "\0\0pw": empty user accepted; "\0user\0": empty password refused */
    assert_int_equal(pmx_smtp_sasl_plain_decode("AABwdw==", 8, &u, &pw), 0);
    assert_string_equal(pw.data, "pw");
    assert_int_equal(pmx_smtp_sasl_plain_decode("AHVzZXIA", 8, &u, &pw), -1);
    assert_int_equal(pmx_smtp_sasl_plain_decode("=", 1, &u, &pw), -1);
    assert_int_equal(pmx_smtp_sasl_plain_decode("AGFw aWtl", 9, &u, &pw), -1);
    pmx_buf_reset(&u);
    assert_int_equal(pmx_smtp_sasl_decode("=", 1, &u), 0);
    assert_int_equal(u.len, 0);
    assert_int_equal(pmx_smtp_sasl_decode("YWJj", 4, &u), 0);
    assert_string_equal(u.data, "abc");
    assert_int_equal(pmx_smtp_sasl_decode("YW=j", 4, &u), -1);
    pmx_buf_free(&u);
    pmx_buf_free(&pw);
}

/* ---- server.c ---------------------------------------------------------------------- */

typedef struct {
    pmx_smtp_server_t *s;
    pmx_buf_t out;          /* everything written */
    int  writes;
    bool closed;
    bool sync;              /* answer AUTH and messages inside the callback */
    int  auth_code;         /* what AUTH answers */
    int  msg_code;
    int  auths, msgs, tls_starts;
    char pw[64];
    pmx_buf_t msg;          /* the last message */
    char from[64];
    char rcpts[256];
    /* message memory (hold/room) */
    uint64_t mem_limit, mem_held, mem_max;
    int  hold_calls, room_calls;
    bool take;              /* the message callback takes the buffer */
    size_t taken_off;
    bool taken_nul;         /* a NUL followed the taken message */
} owner_t;

static void o_write(void *arg, const char *d, size_t n)
{
    owner_t *o = arg;
    assert_false(o->closed);
    pmx_buf_append(&o->out, d, n);
    o->writes++;
}

static int o_starttls(void *arg)
{
    owner_t *o = arg;
    o->tls_starts++;
    return 0;
}

static void o_auth(void *arg, const char *pw, size_t n)
{
    owner_t *o = arg;
    o->auths++;
    snprintf(o->pw, sizeof o->pw, "%.*s", (int)n, pw);
    if (o->sync) pmx_smtp_server_auth_done(o->s, o->auth_code, "2.7.0", "Authentication successful");
}

static void o_message(void *arg, const pmx_smtp_envelope_t *env)
{
    owner_t *o = arg;
    o->msgs++;
    pmx_buf_reset(&o->msg);
    pmx_buf_append(&o->msg, env->msg, env->len);
    snprintf(o->from, sizeof o->from, "%s", env->mail_from);
    o->rcpts[0] = '\0';
    for (size_t i = 0; i < env->nrcpts; i++) {
        strcat(o->rcpts, i ? "," : "");
        strcat(o->rcpts, env->rcpts[i]);
    }
    if (o->take) {
        pmx_buf_t b;
        pmx_smtp_server_take_message(o->s, &b, &o->taken_off);
        assert_non_null(b.data);
        assert_ptr_equal(b.data + o->taken_off, env->msg);
        o->taken_nul = b.data[o->taken_off + env->len] == '\0';
        pmx_buf_free(&b);
        o->mem_held = 0;    /* the owner's now; given back here */
    }
    if (o->sync) pmx_smtp_server_message_done(o->s, o->msg_code, "2.0.0", "Ok: queued as 1-0");
}

static bool o_hold(void *arg, uint64_t n)
{
    owner_t *o = arg;
    o->hold_calls++;
    if (n > o->mem_limit) return false;
    o->mem_held = n;
    if (n > o->mem_max) o->mem_max = n;
    return true;
}

static bool o_room(void *arg, uint64_t n)
{
    owner_t *o = arg;
    o->room_calls++;
    return n <= o->mem_limit;
}

static void o_close(void *arg)
{
    owner_t *o = arg;
    assert_false(o->closed);
    o->closed = true;
}

static void send_str_raw(pmx_smtp_server_t *s, const char *str)
{
    pmx_smtp_server_input(s, str, strlen(str));
}

static const pmx_smtp_server_cbs_t cbs = { o_write, o_starttls, o_auth, o_message, o_close,
                                           NULL, NULL, NULL, NULL };

static const pmx_smtp_server_cbs_t cbs_mem = { o_write, o_starttls, o_auth, o_message, o_close,
                                               o_hold, o_room, NULL, NULL };

/* A session whose message memory is limited to limit octets, logged in. */
static owner_t *owner_mem(uint64_t limit, size_t headroom)
{
    owner_t *o = calloc(1, sizeof *o);
    o->sync = true;
    o->auth_code = 235;
    o->msg_code = 250;
    o->mem_limit = limit;
    pmx_smtp_server_opts_t opts = { .hostname = "mx.test", .max_message_size = 1000000,
                                    .max_recipients = 3, .msg_headroom = headroom };
    o->s = pmx_smtp_server_new(&opts, &cbs_mem, o);
    pmx_smtp_server_start(o->s);
    send_str_raw(o->s, "EHLO c.test\r\nAUTH PLAIN AGFwaWtleQBwbXhfa2V5\r\n");
    pmx_buf_reset(&o->out);
    return o;
}

/* An owner that checks the credentials again at every MAIL (o->mail_code). */
static int mail_code;
static int mails;
static void o_mail(void *arg, const char *from)
{
    owner_t *o = arg;
    (void)from;
    mails++;
    if (mail_code == 250) pmx_smtp_server_mail_done(o->s, 250, "2.1.0", "Ok");
    else if (mail_code) pmx_smtp_server_mail_done(o->s, mail_code, "5.7.8", "revoked");
}
static const pmx_smtp_server_cbs_t cbs_mail = { o_write, o_starttls, o_auth, o_message, o_close,
                                                NULL, NULL, o_mail, NULL };

static owner_t *owner_new(bool starttls, bool requires_tls)
{
    owner_t *o = calloc(1, sizeof *o);
    o->sync = true;
    o->auth_code = 235;
    o->msg_code = 250;
    pmx_smtp_server_opts_t opts = { .hostname = "mx.test", .starttls = starttls,
                                    .auth_requires_tls = requires_tls, .max_message_size = 2000,
                                    .max_recipients = 3 };
    o->s = pmx_smtp_server_new(&opts, &cbs, o);
    pmx_smtp_server_start(o->s);
    return o;
}

static void owner_free(owner_t *o)
{
    pmx_smtp_server_free(o->s);
    pmx_buf_free(&o->out);
    pmx_buf_free(&o->msg);
    free(o);
}

static void send_str(owner_t *o, const char *s)
{
    pmx_smtp_server_input(o->s, s, strlen(s));
}

/* The replies written since the last call, one "CODE text" per line. */
static char *take(owner_t *o)
{
    char *r = strdup(o->out.data ? o->out.data : "");
    pmx_buf_reset(&o->out);
    return r;
}

/* Forgets the replies written so far. */
static void discard_out(owner_t *o)
{
    pmx_buf_reset(&o->out);
}

#define EXPECT(o, text) do { char *t_ = take(o); assert_string_equal(t_, text); free(t_); } while (0)

static const char *AUTH_LINE = "AUTH PLAIN AGFwaWtleQBwbXhfa2V5\r\n";   /* pmx_key */

static void login(owner_t *o)
{
    send_str(o, "EHLO c.test\r\n");
    send_str(o, AUTH_LINE);
    discard_out(o);
}

static void test_greeting_and_ehlo(void **state)
{
    (void)state;
    owner_t *o = owner_new(true, true);
    EXPECT(o, "220 mx.test ESMTP postmux\r\n");
    send_str(o, "EHLO c.test\r\n");
    EXPECT(o, "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 2000\r\n250-STARTTLS\r\n"
              "250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n");
    send_str(o, AUTH_LINE);
    EXPECT(o, "530 5.7.0 Must issue a STARTTLS command first\r\n");
    send_str(o, "MAIL FROM:<a@b.c>\r\n");
    EXPECT(o, "530 5.7.0 Authentication required\r\n");
    assert_int_equal(o->auths, 0);
    owner_free(o);

    o = owner_new(false, false);
    discard_out(o);
    send_str(o, "HELO c.test\r\n");
    EXPECT(o, "250 mx.test\r\n");
    send_str(o, AUTH_LINE);
    EXPECT(o, "503 5.5.1 Error: send EHLO first\r\n");
    send_str(o, "EHLO c.test\r\nSTARTTLS\r\n");
    EXPECT(o, "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 2000\r\n250-AUTH PLAIN LOGIN\r\n"
              "250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n502 5.5.1 STARTTLS not offered\r\n");
    owner_free(o);
}

static void test_auth_mechanisms(void **state)
{
    (void)state;
    owner_t *o = owner_new(false, false);
    send_str(o, "EHLO c\r\nAUTH PLAIN\r\n");
    discard_out(o);
    send_str(o, "AGFwaWtleQBwbXhfa2V5\r\n");
    EXPECT(o, "235 2.7.0 Authentication successful\r\n");
    assert_string_equal(o->pw, "pmx_key");
    send_str(o, AUTH_LINE);
    EXPECT(o, "503 5.5.1 Error: already authenticated\r\n");
    owner_free(o);

    o = owner_new(false, false);
    o->auth_code = 535;
    send_str(o, "EHLO c\r\nAUTH LOGIN\r\n");
    discard_out(o);
    send_str(o, "YXBpa2V5\r\n");
    EXPECT(o, "334 UGFzc3dvcmQ6\r\n");
    send_str(o, "cG14X2tleQ==\r\n");
    EXPECT(o, "535 2.7.0 Authentication successful\r\n");   /* the owner's text, as given */
    send_str(o, "AUTH LOGIN YXBpa2V5\r\n*\r\nAUTH CRAM-MD5\r\nAUTH PLAIN !!\r\n");
    EXPECT(o, "334 UGFzc3dvcmQ6\r\n501 5.0.0 Authentication cancelled\r\n"
              "504 5.5.4 Unrecognized authentication type (offered: PLAIN LOGIN)\r\n"
              "501 5.5.2 Cannot decode the AUTH PLAIN response\r\n");
    send_str(o, "MAIL FROM:<a@b.c>\r\n");
    EXPECT(o, "530 5.7.0 Authentication required\r\n");
    owner_free(o);
}

static void test_transaction(void **state)
{
    (void)state;
    owner_t *o = owner_new(false, false);
    login(o);
    send_str(o, "RCPT TO:<x@y.z>\r\nDATA\r\n");
    EXPECT(o, "503 5.5.1 Error: need MAIL command\r\n503 5.5.1 Error: need MAIL command\r\n");
    send_str(o, "MAIL FROM:<>\r\nMAIL FROM:<a@B.C> SIZE=3000\r\nMAIL FROM:<a@B.C> SMTPUTF8\r\n");
    EXPECT(o, "553 5.1.7 A sender address is required (the null sender <> is not accepted)\r\n"
              "552 5.3.4 Message size exceeds fixed limit of 2000 bytes\r\n"
              "555 5.5.4 Unsupported option: SMTPUTF8\r\n");
    send_str(o, "MAIL FROM:<a@B.C> SIZE=100 BODY=8BITMIME\r\nDATA\r\n");
    EXPECT(o, "250 2.1.0 Ok\r\n554 5.5.1 Error: no valid recipients\r\n");
    send_str(o, "RCPT TO:<r1@x.y>\r\nRCPT TO:<R1@X.Y>\r\nRCPT TO:<r1@x.y>\r\nRCPT TO:<bad>\r\n"
                "RCPT TO:<r2@x.y>\r\nRCPT TO:<r3@x.y>\r\n");
    char *t = take(o);
    assert_non_null(strstr(t, "553 5.1.3 Bad recipient address syntax"));
    assert_non_null(strstr(t, "452 4.5.3 Too many recipients (at most 3 per message)\r\n"));
    free(t);
    /* Dot-stuffing, a terminator split over chunks, the message fed byte by byte. */
    const char *data = "DATA\r\nSubject: x\r\n\r\n..leading dot\r\n..\r\nline\r\n\r\n.\r\nNOOP\r\n";
    for (const char *p = data; *p; p++) pmx_smtp_server_input(o->s, p, 1);
    EXPECT(o, "354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as 1-0\r\n"
              "250 2.0.0 Ok\r\n");
    assert_int_equal(o->msgs, 1);
    assert_string_equal(o->msg.data, "Subject: x\r\n\r\n.leading dot\r\n.\r\nline\r\n\r\n");
    assert_string_equal(o->from, "a@b.c");
    assert_string_equal(o->rcpts, "r1@x.y,R1@x.y,r2@x.y");
    /* The transaction is over: MAIL again works, RSET clears it. */
    send_str(o, "RCPT TO:<r@x.y>\r\nMAIL FROM:<a@b.c>\r\nRSET\r\nRCPT TO:<r@x.y>\r\nQUIT\r\nNOOP\r\n");
    EXPECT(o, "503 5.5.1 Error: need MAIL command\r\n250 2.1.0 Ok\r\n250 2.0.0 Ok\r\n"
              "503 5.5.1 Error: need MAIL command\r\n221 2.0.0 Bye\r\n");
    assert_true(o->closed);
    owner_free(o);
}

/* MAIL FROM / RCPT TO take lib/addr's RFC 5321 Mailbox, the grammar the relay
 * client sends with: a quoted local part is one address; white space outside
 * it, a display name, "" or an address literal are refused at the command. */
static void test_envelope_grammar(void **state)
{
    (void)state;
    owner_t *o = owner_new(false, false);
    login(o);
    send_str(o, "MAIL FROM:< a@b.c>\r\nMAIL FROM:<\"a b\"@B.C>\r\n");
    char *t = take(o);
    assert_non_null(strstr(t, "553 5.1.7 Bad sender address syntax: unexpected space in local part"));
    assert_non_null(strstr(t, "250 2.1.0 Ok\r\n"));
    free(t);
    send_str(o, "RCPT TO:<a b@x.y>\r\n");
    EXPECT(o, "553 5.1.3 Bad recipient address syntax: unexpected space in local part in "
              "'a b@x.y'\r\n");
    send_str(o, "RCPT TO:<r@x.y >\r\n");
    EXPECT(o, "553 5.1.3 Bad recipient address syntax: unexpected space in domain in "
              "'r@x.y '\r\n");
    send_str(o, "RCPT TO:<\"\"@x.y>\r\n");
    EXPECT(o, "553 5.1.3 Bad recipient address syntax: empty local part in '\"\"@x.y'\r\n");
    send_str(o, "RCPT TO:<r@[192.0.2.1]>\r\n");
    EXPECT(o, "553 5.1.3 Bad recipient address syntax: address literals are not supported in "
              "'r@[192.0.2.1]'\r\n");
    send_str(o, "RCPT TO:<Bob <r@x.y>>\r\n");
    t = take(o);
    assert_non_null(strstr(t, "501 5.5.4 Syntax: RCPT TO:<address>"));
    free(t);
    send_str(o, "RCPT TO:<\"a b\"@X.Y>\r\nRCPT TO:<\"a>b\"@x.y>\r\nRCPT TO:<\"ok\"@x.y>\r\n");
    EXPECT(o, "250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n");
    send_str(o, "DATA\r\nSubject: x\r\n\r\nb\r\n.\r\n");
    discard_out(o);
    assert_int_equal(o->msgs, 1);
    /* Canonical: domain lowercased, "ok" unquoted, the others kept quoted. */
    assert_string_equal(o->from, "\"a b\"@b.c");
    assert_string_equal(o->rcpts, "\"a b\"@x.y,\"a>b\"@x.y,ok@x.y");
    owner_free(o);
}

static void start_data(owner_t *o)
{
    login(o);
    send_str(o, "MAIL FROM:<a@b.c>\r\nRCPT TO:<r@x.y>\r\nDATA\r\n");
    discard_out(o);
}

static void test_smuggling(void **state)
{
    (void)state;
    static const char *const seps[] = { "\n.\n", "\r\n.\n", "\n.\r\n", "\r.\r", "\r\n.\r",
                                        "\r.\r\n", "\n", "\r" };
    for (size_t i = 0; i < sizeof seps / sizeof seps[0]; i++) {
        owner_t *o = owner_new(false, false);
        start_data(o);
        pmx_buf_t b = PMX_BUF_INIT;
        pmx_buf_append_str(&b, "Subject: x\r\n\r\nfirst");
        pmx_buf_append_str(&b, seps[i]);
        pmx_buf_append_str(&b, "MAIL FROM:<e@v.il>\r\nRCPT TO:<v@x.y>\r\nDATA\r\n"
                               "hidden\r\n.\r\nNOOP\r\n");
        pmx_smtp_server_input(o->s, b.data, b.len);
        char *t = take(o);
        assert_int_equal(strncmp(t, "550 5.6.0 Message refused: bare CR or LF in line ", 48), 0);
        assert_non_null(strstr(t, "\r\n250 2.0.0 Ok\r\n"));         /* the NOOP, nothing else */
        assert_null(strstr(t, "354"));
        free(t);
        assert_int_equal(o->msgs, 0);
        pmx_buf_free(&b);
        owner_free(o);
    }
}

/* n octets of message body in lines of 100 ("x" * 98 CRLF), after a header. */
static void send_body(owner_t *o, size_t n)
{
    char line[101];
    memset(line, 'x', 98);
    memcpy(line + 98, "\r\n", 3);
    send_str(o, "Subject: big\r\n\r\n");
    for (size_t i = 0; i < n / 100; i++) send_str(o, line);
}

static void test_memory_hold_steps(void **state)
{
    (void)state;
    owner_t *o = owner_mem(1000000, 100);
    send_str(o, "MAIL FROM:<a@b.c>\r\nRCPT TO:<r@x.y>\r\nDATA\r\n");
    EXPECT(o, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n");
    assert_int_equal(o->mem_held, PMX_SMTP_SERVER_HOLD_STEP);   /* the first step at DATA */
    send_body(o, 200000);
    /* 100 of headroom + 16 + 200000: four steps of 64 KiB */
    assert_int_equal(o->mem_held, 4 * PMX_SMTP_SERVER_HOLD_STEP);
    assert_int_equal(o->hold_calls, 4);
    send_str(o, ".\r\n");
    EXPECT(o, "250 2.0.0 Ok: queued as 1-0\r\n");
    assert_int_equal(o->msg.len, 16 + 200000);
    assert_int_equal(o->mem_held, 0);                          /* given back */
    assert_int_equal(o->hold_calls, 5);
    owner_free(o);
}

static void test_memory_refused_while_data(void **state)
{
    (void)state;
    owner_t *o = owner_mem(100000, 0);
    send_str(o, "MAIL FROM:<a@b.c>\r\nRCPT TO:<r@x.y>\r\nDATA\r\n");
    discard_out(o);
    send_body(o, 300000);
    assert_int_equal(o->mem_held, 0);          /* dropped at the refusal, not at the end */
    assert_int_equal(o->mem_max, PMX_SMTP_SERVER_HOLD_STEP);
    int calls = o->hold_calls;
    send_body(o, 100000);                      /* the rest is read, nothing asked */
    assert_int_equal(o->hold_calls, calls);
    assert_int_equal(o->out.len, 0);
    send_str(o, ".\r\n");
    EXPECT(o, "452 4.3.1 Insufficient system storage; try again later\r\n");
    assert_int_equal(o->msgs, 0);
    /* the session goes on: a small message fits */
    send_str(o, "MAIL FROM:<a@b.c>\r\nRCPT TO:<r@x.y>\r\nDATA\r\n");
    send_body(o, 1000);
    send_str(o, ".\r\n");
    char *t = take(o);
    assert_non_null(strstr(t, "354 End data"));
    assert_non_null(strstr(t, "250 2.0.0 Ok: queued as 1-0\r\n"));
    free(t);
    assert_int_equal(o->msgs, 1);
    /* a permanent reason wins over the temporary one */
    send_str(o, "MAIL FROM:<a@b.c>\r\nRCPT TO:<r@x.y>\r\nDATA\r\n");
    send_body(o, 200000);
    pmx_smtp_server_input(o->s, "a\0b\r\n.\r\n", 8);
    t = take(o);
    assert_non_null(strstr(t, "550 5.6.0 Message refused: NUL byte in line "));
    free(t);
    owner_free(o);
}

static void test_memory_mail_size_and_data(void **state)
{
    (void)state;
    owner_t *o = owner_mem(100000, 1000);
    send_str(o, "MAIL FROM:<a@b.c> SIZE=99500\r\n");
    EXPECT(o, "452 4.3.1 Insufficient system storage; try again later\r\n");   /* + headroom */
    send_str(o, "MAIL FROM:<a@b.c> SIZE=2000000\r\n");
    EXPECT(o, "552 5.3.4 Message size exceeds fixed limit of 1000000 bytes\r\n");
    send_str(o, "MAIL FROM:<a@b.c> SIZE=50000\r\nRCPT TO:<r@x.y>\r\n");
    EXPECT(o, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n");
    o->mem_limit = 40000;                       /* memory went to others meanwhile */
    send_str(o, "DATA\r\n");
    EXPECT(o, "452 4.3.1 Insufficient system storage; try again later\r\n");
    assert_int_equal(o->mem_held, 0);
    o->mem_limit = 100000;
    send_str(o, "DATA\r\n");
    EXPECT(o, "354 End data with <CR><LF>.<CR><LF>\r\n");
    send_str(o, "Subject: s\r\n\r\nbody\r\n.\r\n");
    EXPECT(o, "250 2.0.0 Ok: queued as 1-0\r\n");
    /* without SIZE, DATA needs only the first step */
    o->mem_limit = PMX_SMTP_SERVER_HOLD_STEP;
    send_str(o, "MAIL FROM:<a@b.c>\r\nRCPT TO:<r@x.y>\r\nDATA\r\n");
    EXPECT(o, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n");
    /* a session freed in DATA does not call back */
    int calls = o->hold_calls;
    assert_int_equal(o->mem_held, PMX_SMTP_SERVER_HOLD_STEP);
    pmx_smtp_server_free(o->s);
    assert_int_equal(o->hold_calls, calls);
    o->s = NULL;
    owner_free(o);
}

static void test_memory_take_message(void **state)
{
    (void)state;
    owner_t *o = owner_mem(1000000, 64);
    o->take = true;
    send_str(o, "MAIL FROM:<a@b.c>\r\nRCPT TO:<r@x.y>\r\nDATA\r\n");
    send_str(o, "Subject: s\r\n\r\n..dot\r\n.\r\n");
    char *t = take(o);
    assert_non_null(strstr(t, "250 2.0.0 Ok: queued as 1-0\r\n"));
    free(t);
    assert_int_equal(o->taken_off, 64);
    assert_true(o->taken_nul);
    assert_string_equal(o->msg.data, "Subject: s\r\n\r\n.dot\r\n");
    int calls = o->hold_calls;
    assert_int_equal(calls, 1);                 /* the first step; no hold(0) for a taken buffer */
    /* outside the callback there is nothing to take */
    pmx_buf_t b;
    size_t off = 7;
    pmx_smtp_server_take_message(o->s, &b, &off);
    assert_null(b.data);
    assert_int_equal(off, 0);
    owner_free(o);
}

static void test_data_limits(void **state)
{
    (void)state;
    owner_t *o = owner_new(false, false);
    start_data(o);
    for (int i = 0; i < 40; i++)
        send_str(o, "0123456789012345678901234567890123456789012345678901234567890\r\n");
    send_str(o, ".\r\n");
    EXPECT(o, "552 5.3.4 Message size exceeds fixed limit of 2000 bytes\r\n");
    send_str(o, "MAIL FROM:<a@b.c>\r\nRCPT TO:<r@x.y>\r\nDATA\r\nSubject: x\r\n\r\n");
    discard_out(o);
    char line[1001];
    memset(line, 'y', 999);
    memcpy(line + 999, "\r", 2);
    send_str(o, line);
    send_str(o, "\n.\r\n");
    EXPECT(o, "500 5.5.2 Line too long: line 3 of the message is over 998 octets (RFC 5322 2.1.1)\r\n");
    send_str(o, "MAIL FROM:<a@b.c>\r\nRCPT TO:<r@x.y>\r\nDATA\r\nSubject: x\r\n\r\na");
    pmx_smtp_server_input(o->s, "\0b\r\n.\r\n", 7);
    char *t = take(o);
    assert_non_null(strstr(t, "550 5.6.0 Message refused: NUL byte in line 3\r\n"));
    free(t);
    assert_int_equal(o->msgs, 0);

    char big[700];
    memset(big, 'x', sizeof big - 3);
    memcpy(big + sizeof big - 3, "\r\n", 3);
    memcpy(big, "NOOP ", 5);
    send_str(o, big);
    EXPECT(o, "500 5.5.2 Line too long (at most 512 octets per command)\r\n");
    send_str(o, "NOOP\n");
    EXPECT(o, "500 5.5.2 Error: bare LF (lines end with CRLF)\r\n");
    owner_free(o);
}

static void test_pipelining_while_busy(void **state)
{
    (void)state;
    owner_t *o = owner_new(false, false);
    o->sync = false;
    send_str(o, "EHLO c\r\n");
    discard_out(o);
    send_str(o, "AUTH PLAIN AGFwaWtleQBwbXhfa2V5\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<r@x.y>\r\n"
                "DATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n");
    EXPECT(o, "");                                 /* AUTH in flight: the rest waits */
    assert_true(pmx_smtp_server_is_waiting(o->s));
    pmx_smtp_server_auth_done(o->s, 235, "2.7.0", "Authentication successful");
    EXPECT(o, "235 2.7.0 Authentication successful\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
              "354 End data with <CR><LF>.<CR><LF>\r\n");
    assert_int_equal(o->msgs, 1);
    pmx_smtp_server_message_done(o->s, 451, "4.3.0", "Queue unavailable; try again later");
    EXPECT(o, "451 4.3.0 Queue unavailable; try again later\r\n221 2.0.0 Bye\r\n");
    assert_true(o->closed);
    owner_free(o);
}

static void test_starttls_drops_pipelined(void **state)
{
    (void)state;
    owner_t *o = owner_new(true, true);
    discard_out(o);
    send_str(o, "EHLO c\r\nSTARTTLS\r\nRSET\r\nMAIL FROM:<a@b.c>\r\n");
    EXPECT(o, "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 2000\r\n250-STARTTLS\r\n"
              "250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n220 2.0.0 Ready to start TLS\r\n");
    assert_int_equal(o->tls_starts, 1);
    send_str(o, "NOOP\r\n");                       /* during the handshake: dropped */
    pmx_smtp_server_tls_done(o->s, true);
    EXPECT(o, "");
    assert_true(pmx_smtp_server_is_tls(o->s));
    send_str(o, "MAIL FROM:<a@b.c>\r\nEHLO c\r\n");
    EXPECT(o, "503 5.5.1 Error: send HELO/EHLO first\r\n250-mx.test\r\n250-PIPELINING\r\n"
              "250-SIZE 2000\r\n250-AUTH PLAIN LOGIN\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n");
    send_str(o, "STARTTLS\r\n");
    EXPECT(o, "503 5.5.1 Error: TLS already active\r\n");
    owner_free(o);

    o = owner_new(true, true);
    send_str(o, "EHLO c\r\nSTARTTLS\r\n");
    discard_out(o);
    pmx_smtp_server_tls_done(o->s, false);
    assert_true(o->closed);
    EXPECT(o, "");
    owner_free(o);
}

static void test_drain_and_timeout(void **state)
{
    (void)state;
    owner_t *o = owner_new(false, false);
    login(o);
    pmx_smtp_server_drain(o->s);                   /* idle: 421 now */
    EXPECT(o, "421 4.3.2 mx.test Service shutting down; closing connection\r\n");
    assert_true(o->closed);
    owner_free(o);

    o = owner_new(false, false);
    login(o);
    send_str(o, "MAIL FROM:<a@b.c>\r\n");
    discard_out(o);
    pmx_smtp_server_drain(o->s);                   /* in a transaction: it goes on */
    EXPECT(o, "");
    assert_false(o->closed);
    send_str(o, "RCPT TO:<r@x.y>\r\nDATA\r\nSubject: x\r\n\r\nb\r\n.\r\nNOOP\r\n");
    EXPECT(o, "250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as 1-0\r\n"
              "421 4.3.2 mx.test Service shutting down; closing connection\r\n");
    assert_true(o->closed);
    owner_free(o);

    o = owner_new(false, false);
    discard_out(o);
    pmx_smtp_server_timeout(o->s);
    EXPECT(o, "421 4.4.2 mx.test Error: timeout exceeded; closing connection\r\n");
    assert_true(o->closed);
    owner_free(o);
}

/* The inbound listener's mode: no AUTH, the null sender, RCPT checked by the owner. */
static int o_rcpt(void *arg, const char *rcpt)
{
    (void)arg;
    return strncmp(rcpt, "b-", 2) == 0 ? 250 : strncmp(rcpt, "later", 5) == 0 ? 451 : 550;
}
static const pmx_smtp_server_cbs_t cbs_rcpt = { o_write, o_starttls, o_auth, o_message, o_close,
                                                NULL, NULL, NULL, o_rcpt };

static void test_no_auth_and_rcpt(void **state)
{
    (void)state;
    owner_t *o = calloc(1, sizeof *o);
    o->sync = true;
    o->msg_code = 250;
    pmx_smtp_server_opts_t opts = { .hostname = "mx.test", .max_message_size = 2000,
                                    .max_recipients = 3, .no_auth = true };
    o->s = pmx_smtp_server_new(&opts, &cbs_rcpt, o);
    pmx_smtp_server_start(o->s);
    EXPECT(o, "220 mx.test ESMTP postmux\r\n");
    send_str(o, "EHLO c.test\r\n");
    char *r = take(o);
    assert_null(strstr(r, "AUTH"));
    free(r);
    send_str(o, "AUTH PLAIN AGFwaWtleQBwbXhfa2V5\r\n");
    EXPECT(o, "502 5.5.1 AUTH not offered\r\n");
    send_str(o, "MAIL FROM:<>\r\nRCPT TO:<x@bounces.example.com>\r\nRCPT TO:<later@b.example>\r\n"
                "RCPT TO:<b-tok@bounces.example.com>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n");
    EXPECT(o, "250 2.1.0 Ok\r\n"
              "550 5.1.1 <x@bounces.example.com>: Recipient address rejected: no such mailbox here\r\n"
              "451 4.3.0 <later@b.example>: Cannot check the recipient now; try again later\r\n"
              "250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
              "250 2.0.0 Ok: queued as 1-0\r\n");
    assert_int_equal(o->msgs, 1);
    assert_string_equal(o->from, "");
    assert_string_equal(o->rcpts, "b-tok@bounces.example.com");
    owner_free(o);
}

static void test_mail_hook(void **state)
{
    (void)state;
    owner_t *o = calloc(1, sizeof *o);
    o->sync = true;
    o->auth_code = 235;
    o->msg_code = 250;
    pmx_smtp_server_opts_t opts = { .hostname = "mx.test", .max_message_size = 2000,
                                    .max_recipients = 3 };
    o->s = pmx_smtp_server_new(&opts, &cbs_mail, o);
    pmx_smtp_server_start(o->s);
    login(o);
    /* Answered at once. */
    mail_code = 250;
    mails = 0;
    send_str(o, "MAIL FROM:<a@b.c>\r\nRSET\r\n");
    EXPECT(o, "250 2.1.0 Ok\r\n250 2.0.0 Ok\r\n");
    /* Answered later: what was pipelined waits, then a refusal sends the
     * client back to AUTH and nothing of the transaction is taken. */
    mail_code = 0;
    send_str(o, "MAIL FROM:<a@b.c>\r\nRCPT TO:<r@b.c>\r\nDATA\r\n");
    EXPECT(o, "");
    assert_true(pmx_smtp_server_is_waiting(o->s));
    pmx_smtp_server_mail_done(o->s, 535, "5.7.8", "revoked");
    EXPECT(o, "535 5.7.8 revoked\r\n503 5.5.1 Error: need MAIL command\r\n"
              "503 5.5.1 Error: need MAIL command\r\n");
    assert_false(pmx_smtp_server_is_authed(o->s));
    send_str(o, "MAIL FROM:<a@b.c>\r\n");
    EXPECT(o, "530 5.7.0 Authentication required\r\n");
    assert_int_equal(mails, 2);
    assert_int_equal(o->msgs, 0);
    pmx_smtp_server_free(o->s);
    pmx_buf_free(&o->out);
    pmx_buf_free(&o->msg);
    free(o);
}

static void test_junk_limit_and_expire(void **state)
{
    (void)state;
    owner_t *o = calloc(1, sizeof *o);
    o->sync = true;
    o->auth_code = 235;
    o->msg_code = 250;
    pmx_smtp_server_opts_t opts = { .hostname = "mx.test", .max_message_size = 2000,
                                    .max_recipients = 3, .junk_limit = 3 };
    o->s = pmx_smtp_server_new(&opts, &cbs, o);
    pmx_smtp_server_start(o->s);
    discard_out(o);
    send_str(o, "NOOP\r\nRSET\r\nHELP\r\nVRFY x\r\nNOOP\r\n");
    char *t = take(o);
    assert_non_null(strstr(t, "421 4.7.0 mx.test Too many commands before authentication"));
    assert_null(strstr(t, "252 "));
    free(t);
    assert_true(o->closed);
    owner_free(o);

    /* After AUTH the limit no longer applies. */
    o = calloc(1, sizeof *o);
    o->sync = true;
    o->auth_code = 235;
    o->msg_code = 250;
    o->s = pmx_smtp_server_new(&opts, &cbs, o);
    pmx_smtp_server_start(o->s);
    login(o);
    for (int i = 0; i < 10; i++) send_str(o, "NOOP\r\n");
    assert_false(o->closed);
    discard_out(o);
    /* Expire inside a transaction: it finishes, then 421 4.4.2. */
    send_str(o, "MAIL FROM:<a@b.c>\r\n");
    pmx_smtp_server_expire(o->s, "4.4.2", "Error: session time limit reached");
    send_str(o, "RCPT TO:<r@b.c>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nNOOP\r\n");
    t = take(o);
    assert_non_null(strstr(t, "250 2.0.0 Ok: queued as 1-0\r\n"));
    assert_non_null(strstr(t, "421 4.4.2 mx.test Error: session time limit reached\r\n"));
    free(t);
    assert_true(o->closed);
    owner_free(o);
}

static void test_error_limit(void **state)
{
    (void)state;
    owner_t *o = owner_new(false, false);
    discard_out(o);
    for (int i = 0; i < PMX_SMTP_SERVER_MAX_ERRORS - 1; i++) send_str(o, "BOGUS\r\n");
    assert_false(o->closed);
    send_str(o, "BOGUS\r\nNOOP\r\n");
    char *t = take(o);
    assert_non_null(strstr(t, "421 4.7.0 mx.test Too many errors; closing connection\r\n"));
    assert_null(strstr(t, "250"));
    free(t);
    assert_true(o->closed);
    owner_free(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cmd_parse),
        cmocka_unit_test(test_path_parse),
        cmocka_unit_test(test_sasl),
        cmocka_unit_test(test_greeting_and_ehlo),
        cmocka_unit_test(test_auth_mechanisms),
        cmocka_unit_test(test_transaction),
        cmocka_unit_test(test_envelope_grammar),
        cmocka_unit_test(test_smuggling),
        cmocka_unit_test(test_data_limits),
        cmocka_unit_test(test_memory_hold_steps),
        cmocka_unit_test(test_memory_refused_while_data),
        cmocka_unit_test(test_memory_mail_size_and_data),
        cmocka_unit_test(test_memory_take_message),
        cmocka_unit_test(test_pipelining_while_busy),
        cmocka_unit_test(test_starttls_drops_pipelined),
        cmocka_unit_test(test_drain_and_timeout),
        cmocka_unit_test(test_error_limit),
        cmocka_unit_test(test_mail_hook),
        cmocka_unit_test(test_no_auth_and_rcpt),
        cmocka_unit_test(test_junk_limit_and_expire),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
