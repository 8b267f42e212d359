/*
 * inbound/report.c, one hand-made message per format: RFC 3464 DSNs (several
 * recipients, failed and delayed, CRLF, folded fields, base64 and
 * quoted-printable report parts, nested multiparts, no blank line between
 * recipients), RFC 5965 ARF, Outlook.com JMRP, RFC 3834 auto-replies (fields
 * and encoded subjects), the plain-text bounces of qmail, Exim, Postfix,
 * Sendmail, Exchange, Gmail and Yahoo; Amazon SES JSON notifications; the
 * returned original's Message-ID,
 * X-Postmux-Ref and Return-Path (and the VERP token); the precedence rule
 * inside a report; and the limits: depth, recipients, invalid UTF-8, garbage.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "inbound/report.h"
#include "lib/buf.h"
#include "lib/encode.h"
#include "lib/utf8.h"

static pmx_fb_rules_t *R;

static int setup(void **state)
{
    (void)state;
    R = pmx_fb_rules_builtin();
    return R ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    pmx_fb_rules_free(R);
    return 0;
}

static void parse(const char *msg, pmx_fb_report_t *r)
{
    pmx_fb_report_parse(R, msg, strlen(msg), r);
}

#define S_EQ(got, want) do { \
        const char *g_ = (got), *w_ = (want); \
        if (!w_) { if (g_) fail_msg("got '%s', want NULL", g_); } \
        else if (!g_ || strcmp(g_, w_) != 0) fail_msg("got '%s', want '%s'", g_ ? g_ : "NULL", w_); \
    } while (0)

static const char *DSN =
    "Return-Path: <>\r\n"
    "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\n"
    "Subject: Undelivered Mail Returned to Sender\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/report; report-type=delivery-status;\r\n"
    "\tboundary=\"B1/mx.example.net\"\r\n"
    "\r\n"
    "This is a MIME-encapsulated message.\r\n"
    "\r\n"
    "--B1/mx.example.net\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "I'm sorry to have to inform you that your message could not be delivered.\r\n"
    "\r\n"
    "--B1/mx.example.net\r\n"
    "Content-Type: message/delivery-status\r\n"
    "\r\n"
    "Reporting-MTA: dns; mx.example.net\r\n"
    "X-Postfix-Sender: rfc822; b-abcdefgh234567@bounces.example.com\r\n"
    "\r\n"
    "Final-Recipient: rfc822; Alice@Example.ORG\r\n"
    "Original-Recipient: rfc822;alice@example.org\r\n"
    "Action: failed\r\n"
    "Status: 5.1.1\r\n"
    "Diagnostic-Code: smtp; 550 5.1.1 <alice@example.org>: Recipient address\r\n"
    "    rejected: User unknown in local recipient table\r\n"
    "\r\n"
    "Final-Recipient: rfc822; bob@example.org\r\n"
    "Action: failed\r\n"
    "Status: 5.0.0\r\n"
    "Diagnostic-Code: smtp; 552 sorry, mailbox full\r\n"
    "\r\n"
    "Final-Recipient: rfc822; carol@example.org\r\n"
    "Action: delayed\r\n"
    "Status: 4.4.1\r\n"
    "Diagnostic-Code: X-Postfix; connect to mx.example.org[192.0.2.1]:25: Connection refused\r\n"
    "\r\n"
    "--B1/mx.example.net\r\n"
    "Content-Type: text/rfc822-headers\r\n"
    "\r\n"
    "Return-Path: <b-abcdefgh234567@bounces.example.com>\r\n"
    "Message-ID:\r\n"
    " <msg_0001@example.com>\r\n"
    "X-Postmux-Ref: abcdefgh234567\r\n"
    "Subject: hello\r\n"
    "\r\n"
    "--B1/mx.example.net--\r\n";

static void test_dsn(void **state)
{
    (void)state;
    pmx_fb_report_t r;
    parse(DSN, &r);
    assert_int_equal(r.kind, PMX_FB_KIND_BOUNCE);
    assert_int_equal(r.nrcpts, 3);
    S_EQ(r.rcpts[0].address, "alice@example.org");
    S_EQ(r.rcpts[0].action, "failed");
    S_EQ(r.rcpts[0].status, "5.1.1");
    S_EQ(r.rcpts[0].diagnostic,
         "550 5.1.1 <alice@example.org>: Recipient address rejected: User unknown in local recipient table");
    assert_int_equal(r.rcpts[0].cls, PMX_FB_CLASS_USER_UNKNOWN);
    assert_true(r.rcpts[0].hard);
    /* Status 5.0.0 says nothing; the text names the reason. */
    S_EQ(r.rcpts[1].address, "bob@example.org");
    assert_int_equal(r.rcpts[1].cls, PMX_FB_CLASS_MAILBOX_FULL);
    assert_false(r.rcpts[1].hard);
    S_EQ(r.rcpts[2].action, "delayed");
    assert_int_equal(r.rcpts[2].cls, PMX_FB_CLASS_NETWORK);
    assert_false(r.rcpts[2].hard);
    S_EQ(r.feedback_type, NULL);
    S_EQ(r.message_id, "msg_0001@example.com");
    S_EQ(r.ref, "abcdefgh234567");
    S_EQ(r.return_path, "b-abcdefgh234567@bounces.example.com");
    pmx_fb_report_free(&r);
}

/* The same report with LF endings, its status part in base64, inside a
 * multipart/mixed (a forwarded report), recipients with no blank line between. */
static void test_dsn_encoded_nested(void **state)
{
    (void)state;
    const char *status =
        "Reporting-MTA: dns; mx.example.net\n\n"
        "Final-Recipient: rfc822; a@example.org\nAction: failed\nStatus: 5.2.2\n"
        "Final-Recipient: rfc822; b@example.org\nAction: delayed\nStatus: 4.2.2\n";
    pmx_buf_t b64 = PMX_BUF_INIT, msg = PMX_BUF_INIT;
    pmx_base64_encode(&b64, (const uint8_t *)status, strlen(status));
    pmx_buf_appendf(&msg,
        "From: postmaster@example.net\nContent-Type: multipart/mixed; boundary=outer\n\n"
        "--outer\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"in ner\"\n\n"
        "--in ner\nContent-Type: message/delivery-status\nContent-Transfer-Encoding: base64\n\n"
        "%s\n--in ner--\n--outer--\n", b64.data);
    pmx_fb_report_t r;
    parse(msg.data, &r);
    assert_int_equal(r.kind, PMX_FB_KIND_BOUNCE);
    assert_int_equal(r.nrcpts, 2);
    S_EQ(r.rcpts[0].address, "a@example.org");
    assert_int_equal(r.rcpts[0].cls, PMX_FB_CLASS_MAILBOX_FULL);
    S_EQ(r.rcpts[1].address, "b@example.org");
    S_EQ(r.rcpts[1].action, "delayed");
    pmx_fb_report_free(&r);
    pmx_buf_free(&b64);
    pmx_buf_free(&msg);
}

/* Only delays: kind delay; quoted-printable status part; no Action (status says). */
static void test_delay_qp(void **state)
{
    (void)state;
    const char *m =
        "From: MAILER-DAEMON@example.net\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n"
        "--b\nContent-Type: message/delivery-status\nContent-Transfer-Encoding: quoted-printable\n\n"
        "Final-Recipient: rfc822; d=40example.org\nStatus: 4.4.7\nDiagnostic-Code: smtp; long =\n"
        "wait\n--b--\n";
    pmx_fb_report_t r;
    parse(m, &r);
    assert_int_equal(r.kind, PMX_FB_KIND_DELAY);
    assert_int_equal(r.nrcpts, 1);
    S_EQ(r.rcpts[0].address, "d@example.org");
    S_EQ(r.rcpts[0].action, "delayed");
    S_EQ(r.rcpts[0].diagnostic, "long wait");
    assert_int_equal(r.rcpts[0].cls, PMX_FB_CLASS_EXPIRED);
    pmx_fb_report_free(&r);
}

static void test_arf(void **state)
{
    (void)state;
    const char *m =
        "From: <fbl@isp.example>\n"
        "Subject: FW: hello\n"
        "MIME-Version: 1.0\n"
        "Content-Type: multipart/report; report-type=feedback-report; boundary=\"arf\"\n\n"
        "--arf\nContent-Type: text/plain\n\nThis is an email abuse report.\n\n"
        "--arf\nContent-Type: message/feedback-report\n\n"
        "Feedback-Type: Abuse\nUser-Agent: SomeGenerator/1.0\nVersion: 1\n"
        "Original-Mail-From: <b-zzzz2222@bounces.example.com>\n"
        "Original-Rcpt-To: <Dave@Example.ORG>\n\n"
        "--arf\nContent-Type: message/rfc822\n\n"
        "From: news@example.com\nTo: dave@example.org\nMessage-ID: <m2@example.com>\n"
        "X-Postmux-Ref: zzzz2222\n\nbody\n--arf--\n";
    pmx_fb_report_t r;
    parse(m, &r);
    assert_int_equal(r.kind, PMX_FB_KIND_COMPLAINT);
    S_EQ(r.feedback_type, "abuse");
    assert_int_equal(r.nrcpts, 1);
    S_EQ(r.rcpts[0].address, "dave@example.org");
    S_EQ(r.rcpts[0].action, NULL);
    assert_int_equal(r.rcpts[0].cls, PMX_FB_CLASS_NONE);
    assert_false(r.rcpts[0].hard);
    S_EQ(r.message_id, "m2@example.com");
    S_EQ(r.ref, "zzzz2222");
    /* No Return-Path in the original: the ARF's Original-Mail-From. */
    S_EQ(r.return_path, "b-zzzz2222@bounces.example.com");
    pmx_fb_report_free(&r);
}

/* opt-out, no Original-Rcpt-To: the To of the returned headers. */
static void test_arf_optout(void **state)
{
    (void)state;
    const char *m =
        "Content-Type: multipart/report; report-type=feedback-report; boundary=x\n\n"
        "--x\nContent-Type: message/feedback-report\n\nFeedback-Type: opt-out\n\n"
        "--x\nContent-Type: text/rfc822-headers\n\nTo: Eve <eve@example.org>\n"
        "Return-Path: <b-q2q2@bounces.example.com>\n\n--x--\n";
    pmx_fb_report_t r;
    parse(m, &r);
    assert_int_equal(r.kind, PMX_FB_KIND_COMPLAINT);
    S_EQ(r.feedback_type, "opt-out");
    assert_int_equal(r.nrcpts, 1);
    S_EQ(r.rcpts[0].address, "eve@example.org");
    S_EQ(r.return_path, "b-q2q2@bounces.example.com");
    /* The VERP token from the return path when there is no X-Postmux-Ref. */
    S_EQ(r.ref, "q2q2");
    pmx_fb_report_free(&r);
}

static void test_jmrp(void **state)
{
    (void)state;
    const char *m =
        "From: staff@hotmail.com\nSubject: complaint about message from 192.0.2.1\n"
        "Content-Type: multipart/mixed; boundary=\"j\"\n\n"
        "--j\nContent-Type: message/rfc822\n\n"
        "X-HmXmrOriginalRecipient: frank@hotmail.example\nMessage-ID: <m3@example.com>\n\nhi\n--j--\n";
    pmx_fb_report_t r;
    parse(m, &r);
    assert_int_equal(r.kind, PMX_FB_KIND_COMPLAINT);
    S_EQ(r.feedback_type, "abuse");
    S_EQ(r.rcpts[0].address, "frank@hotmail.example");
    S_EQ(r.message_id, "m3@example.com");
    pmx_fb_report_free(&r);
}

static void test_auto_reply(void **state)
{
    (void)state;
    pmx_fb_report_t r;
    parse("From: Grace <grace@example.org>\nAuto-Submitted: auto-replied (vacation)\n"
          "Subject: Re: hello\n\nI am away.\n", &r);
    assert_int_equal(r.kind, PMX_FB_KIND_AUTO_REPLY);
    assert_int_equal(r.nrcpts, 1);
    S_EQ(r.rcpts[0].address, "grace@example.org");
    pmx_fb_report_free(&r);
    /* An encoded "Out of Office" subject, no RFC 3834 field. */
    parse("From: heidi@example.org\nSubject: =?UTF-8?Q?Out_of_Office=3A_back_Monday?=\n\nbye\n", &r);
    assert_int_equal(r.kind, PMX_FB_KIND_AUTO_REPLY);
    pmx_fb_report_free(&r);
    parse("From: ivan@example.org\nSubject: =?utf-8?B?QXV0b21hdGljIHJlcGx5OiBoaQ==?=\n\nx\n", &r);
    assert_int_equal(r.kind, PMX_FB_KIND_AUTO_REPLY);
    pmx_fb_report_free(&r);
    parse("From: judy@example.org\nX-Autoreply: yes\nSubject: hi\n\nx\n", &r);
    assert_int_equal(r.kind, PMX_FB_KIND_AUTO_REPLY);
    pmx_fb_report_free(&r);
    /* A bounce from a mailer daemon is a bounce, though it says auto-replied. */
    parse("From: MAILER-DAEMON@example.net\nAuto-Submitted: auto-replied\nSubject: failure notice\n\n"
          "<kate@example.org>:\n550 5.1.1 no such user\n", &r);
    assert_int_equal(r.kind, PMX_FB_KIND_BOUNCE);
    S_EQ(r.rcpts[0].address, "kate@example.org");
    pmx_fb_report_free(&r);
    /* An ordinary message is nothing we know. */
    parse("From: leo@example.org\nSubject: lunch?\n\nAt noon?\n", &r);
    assert_int_equal(r.kind, PMX_FB_KIND_UNKNOWN);
    assert_int_equal(r.nrcpts, 0);
    pmx_fb_report_free(&r);
}

/* One plain-text bounce per common MTA: kind, address, class. */
static void test_plain_text_bounces(void **state)
{
    (void)state;
    struct {
        const char *name, *msg, *addr;
        pmx_fb_class_t cls;
    } t[] = {
        { "qmail",
          "From: MAILER-DAEMON@mail.example.net\nSubject: failure notice\n\n"
          "Hi. This is the qmail-send program at mail.example.net.\n"
          "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
          "This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
          "<mallory@example.org>:\n192.0.2.1 does not like recipient.\n"
          "Remote host said: 550 5.1.1 <mallory@example.org>... User Unknown\n"
          "Giving up on 192.0.2.1.\n\n"
          "--- Below this line is a copy of the message.\n\n"
          "Return-Path: <b-aaaa@bounces.example.com>\nMessage-ID: <q1@example.com>\nTo: x@example.org\n\nhi\n",
          "mallory@example.org", PMX_FB_CLASS_USER_UNKNOWN },
        { "exim",
          "From: Mail Delivery System <Mailer-Daemon@mx.example.net>\n"
          "Subject: Mail delivery failed: returning message to sender\n"
          "X-Failed-Recipients: niaj@example.org\n\n"
          "This message was created automatically by mail delivery software.\n\n"
          "A message that you sent could not be delivered to one or more of its\n"
          "recipients. This is a permanent error. The following address(es) failed:\n\n"
          "  niaj@example.org\n    SMTP error from remote mail server after RCPT TO:<niaj@example.org>:\n"
          "    host mx.example.org [192.0.2.2]: 552 5.2.2 Mailbox quota exceeded\n\n"
          "------ This is a copy of the message, including all the headers. ------\n\n"
          "Message-Id: <e1@example.com>\n\nhi\n",
          "niaj@example.org", PMX_FB_CLASS_MAILBOX_FULL },
        { "postfix (not a DSN)",
          "From: MAILER-DAEMON (Mail Delivery System)\nSubject: Undelivered Mail Returned to Sender\n\n"
          "This is the mail system at host mx.example.net.\n\n"
          "<olivia@example.org>: host mx.example.org[192.0.2.3] said: 554 5.7.1\n"
          "    Service unavailable; Client host [192.0.2.9] blocked using zen.spamhaus.org\n"
          "    (in reply to RCPT TO command)\n",
          "olivia@example.org", PMX_FB_CLASS_POLICY },
        { "sendmail transcript",
          "From: Mail Delivery Subsystem <MAILER-DAEMON@example.net>\nSubject: Returned mail: see transcript for details\n\n"
          "   ----- The following addresses had permanent fatal errors -----\n<peggy@example.org>\n"
          "    (reason: 552 5.3.4 Message size exceeds fixed maximum message size)\n\n"
          "   ----- Transcript of session follows -----\n"
          "... while talking to mx.example.org.:\n>>> DATA\n"
          "<<< 552 5.3.4 Message size exceeds fixed maximum message size\n"
          "554 5.0.0 Service unavailable\n",
          "peggy@example.org", PMX_FB_CLASS_MESSAGE_TOO_BIG },
        { "exchange",
          "From: postmaster@corp.example\nSubject: Undeliverable: hello\n\n"
          "Delivery has failed to these recipients or groups:\n\n"
          "rupert@corp.example\nThe e-mail address you entered couldn't be found.\n\n"
          "Diagnostic information for administrators:\n"
          "Remote Server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup'\n\n"
          "Original message headers:\n\nMessage-ID: <x1@example.com>\n",
          "rupert@corp.example", PMX_FB_CLASS_USER_UNKNOWN },
        { "gmail",
          "From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\n"
          "Subject: Delivery Status Notification (Failure)\n\n"
          "Delivery to the following recipient failed permanently:\n\n     sybil@example.org\n\n"
          "Technical details of permanent failure:\nThe email account that you tried to reach does not exist.\n\n"
          "----- Original message -----\n\nMessage-ID: <g1@example.com>\n",
          "sybil@example.org", PMX_FB_CLASS_USER_UNKNOWN },
        { "yahoo",
          "From: MAILER-DAEMON@yahoo.com\nSubject: Failure Notice\n\n"
          "Sorry, we were unable to deliver your message to the following address.\n\n"
          "<trent@yahoo.example>:\nRemote host said: 554 delivery error: dd This user doesn't have a yahoo.com account (trent@yahoo.example) [0] - mta1.mail.example [RCPT_TO]\n\n"
          "--- Below this line is a copy of the message.\n",
          "trent@yahoo.example", PMX_FB_CLASS_USER_UNKNOWN },
        { "delay notice",
          "From: MAILER-DAEMON@example.net\nSubject: Warning: could not send message for past 4 hours\n\n"
          "    **********************************************\n"
          "    **      THIS IS A WARNING MESSAGE ONLY      **\n"
          "    **  YOU DO NOT NEED TO RESEND YOUR MESSAGE  **\n\n"
          "<victor@example.org>... Deferred: Connection timed out with example.org.\n",
          "victor@example.org", PMX_FB_CLASS_NETWORK },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        pmx_fb_report_t r;
        parse(t[i].msg, &r);
        bool delay = strcmp(t[i].name, "delay notice") == 0;
        if (r.kind != (delay ? PMX_FB_KIND_DELAY : PMX_FB_KIND_BOUNCE))
            fail_msg("%s: kind %s", t[i].name, pmx_fb_kind_name(r.kind));
        if (r.nrcpts != 1) fail_msg("%s: %zu recipients", t[i].name, r.nrcpts);
        if (!r.rcpts[0].address || strcmp(r.rcpts[0].address, t[i].addr) != 0)
            fail_msg("%s: address %s", t[i].name, r.rcpts[0].address ? r.rcpts[0].address : "NULL");
        if (r.rcpts[0].cls != t[i].cls)
            fail_msg("%s: class %s (diagnostic: %s)", t[i].name, pmx_fb_class_name(r.rcpts[0].cls),
                     r.rcpts[0].diagnostic ? r.rcpts[0].diagnostic : "NULL");
        if (r.rcpts[0].hard != (pmx_fb_class_is_hard(t[i].cls) && !delay))
            fail_msg("%s: hard %d", t[i].name, r.rcpts[0].hard);
        pmx_fb_report_free(&r);
    }
    /* The quoted copy's fields are the original's. */
    pmx_fb_report_t r;
    parse(t[0].msg, &r);
    S_EQ(r.message_id, "q1@example.com");
    S_EQ(r.return_path, "b-aaaa@bounces.example.com");
    S_EQ(r.ref, "aaaa");
    pmx_fb_report_free(&r);
}

/* Amazon SES notifications by email: an SNS envelope whose Message is the
 * notification (its long line wrapped by the mail client), and a bare one. */
static void test_ses_json(void **state)
{
    (void)state;
    const char *m =
        "From: AWS Notifications <no-reply@sns.amazonaws.com>\nSubject: AWS Notification Message\n"
        "Content-Type: text/plain; charset=UTF-8\n\n"
        "{\n  \"Type\" : \"Notification\",\n"
        "  \"Message\" : \"{\\\"notificationType\\\":\\\"Bounce\\\",\\\"bounce\\\":{\\\"bounceType\\\":\\\"Permanent\\\","
        "\\\"bouncedRecipients\\\":[{\\\"emailAddress\\\":\\\"Uma@Example.org\\\",\\\"status\\\":\\\"5.1.1\\\","
        "\\\"diagnosticCode\\\":\\\"smtp; 550 5.1.1 user unk\n nown\\\"}]},\\\"mail\\\":{\\\"source\\\":"
        "\\\"b-abcd@bounces.example.com\\\",\\\"headers\\\":[{\\\"name\\\":\\\"Message-ID\\\",\\\"value\\\":"
        "\\\"<s1@example.com>\\\"},{\\\"name\\\":\\\"X-Postmux-Ref\\\",\\\"value\\\":\\\"abcd\\\"}]}}\"\n}\n"
        "--\nIf you wish to stop receiving notifications from this topic, ...\n";
    pmx_fb_report_t r;
    parse(m, &r);
    assert_int_equal(r.kind, PMX_FB_KIND_BOUNCE);
    assert_int_equal(r.nrcpts, 1);
    S_EQ(r.rcpts[0].address, "uma@example.org");
    S_EQ(r.rcpts[0].status, "5.1.1");
    S_EQ(r.rcpts[0].diagnostic, "550 5.1.1 user unknown");
    assert_int_equal(r.rcpts[0].cls, PMX_FB_CLASS_USER_UNKNOWN);
    assert_true(r.rcpts[0].hard);
    S_EQ(r.message_id, "s1@example.com");
    S_EQ(r.ref, "abcd");
    S_EQ(r.return_path, "b-abcd@bounces.example.com");
    pmx_fb_report_free(&r);

    parse("From: no-reply@sns.amazonaws.com\n\n{\"notificationType\":\"Complaint\",\"complaint\":"
          "{\"complainedRecipients\":[{\"emailAddress\":\"vic@example.org\"}],"
          "\"complaintFeedbackType\":\"abuse\"},\"mail\":{}}\n", &r);
    assert_int_equal(r.kind, PMX_FB_KIND_COMPLAINT);
    S_EQ(r.feedback_type, "abuse");
    S_EQ(r.rcpts[0].address, "vic@example.org");
    pmx_fb_report_free(&r);
    /* Not JSON after all: nothing. */
    parse("From: no-reply@sns.amazonaws.com\n\n{\"notificationType\": oops\n", &r);
    assert_int_equal(r.kind, PMX_FB_KIND_UNKNOWN);
    pmx_fb_report_free(&r);
}

/* A recipient's diagnostic with invalid UTF-8 and control bytes comes out clean. */
static void test_clean_strings(void **state)
{
    (void)state;
    const char *m =
        "Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n"
        "--b\nContent-Type: message/delivery-status\n\n"
        "Final-Recipient: rfc822; w@example.org\nAction: failed\nStatus: 5.1.1\n"
        "Diagnostic-Code: smtp; bad \xff\xfe bytes \x01\x02 and\ttabs\n--b--\n";
    pmx_fb_report_t r;
    parse(m, &r);
    assert_int_equal(r.nrcpts, 1);
    const char *d = r.rcpts[0].diagnostic;
    assert_non_null(d);
    assert_true(pmx_utf8_valid(d, strlen(d)));
    S_EQ(d, "bad \xef\xbf\xbd\xef\xbf\xbd bytes and tabs");
    pmx_fb_report_free(&r);
}

/* Strangers' input: deep nesting stops at the limit, recipients are capped,
 * garbage and empty input are kind unknown. */
static void test_limits(void **state)
{
    (void)state;
    pmx_buf_t m = PMX_BUF_INIT;
    for (int i = 0; i < 50; i++)
        pmx_buf_appendf(&m, "Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n", i, i);
    pmx_buf_append_str(&m, "Content-Type: message/delivery-status\n\n"
                           "Final-Recipient: rfc822; deep@example.org\nAction: failed\n");
    pmx_fb_report_t r;
    pmx_fb_report_parse(R, m.data, m.len, &r);
    assert_int_equal(r.kind, PMX_FB_KIND_UNKNOWN);   /* too deep to be read */
    pmx_fb_report_free(&r);
    pmx_buf_reset(&m);

    pmx_buf_append_str(&m, "Content-Type: multipart/report; boundary=b\n\n--b\n"
                           "Content-Type: message/delivery-status\n\n");
    for (int i = 0; i < 300; i++)
        pmx_buf_appendf(&m, "Final-Recipient: rfc822; u%d@example.org\nAction: failed\n\n", i);
    pmx_fb_report_parse(R, m.data, m.len, &r);
    assert_int_equal(r.kind, PMX_FB_KIND_BOUNCE);
    assert_int_equal(r.nrcpts, PMX_FB_RCPTS_MAX);
    pmx_fb_report_free(&r);
    pmx_buf_free(&m);

    /* An address with invalid UTF-8 is no address (never mended into another). */
    parse("From: MAILER-DAEMON@example.net\n\n<sh\xff\xfe" "ba@example.org>:\n550 5.1.1 no such user\n", &r);
    assert_int_equal(r.kind, PMX_FB_KIND_BOUNCE);
    assert_int_equal(r.nrcpts, 1);
    assert_null(r.rcpts[0].address);
    assert_int_equal(r.rcpts[0].cls, PMX_FB_CLASS_USER_UNKNOWN);
    pmx_fb_report_free(&r);

    pmx_fb_report_parse(R, NULL, 0, &r);
    assert_int_equal(r.kind, PMX_FB_KIND_UNKNOWN);
    pmx_fb_report_free(&r);
    static const char junk[] = "\0\0\0:::\r\r\n\n--";
    pmx_fb_report_parse(R, junk, sizeof junk - 1, &r);
    assert_int_equal(r.kind, PMX_FB_KIND_UNKNOWN);
    pmx_fb_report_free(&r);
    assert_string_equal(pmx_fb_kind_name(PMX_FB_KIND_AUTO_REPLY), "auto_reply");
    assert_string_equal(pmx_fb_kind_name(PMX_FB_KIND_UNKNOWN), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dsn),
        cmocka_unit_test(test_dsn_encoded_nested),
        cmocka_unit_test(test_delay_qp),
        cmocka_unit_test(test_arf),
        cmocka_unit_test(test_arf_optout),
        cmocka_unit_test(test_jmrp),
        cmocka_unit_test(test_auto_reply),
        cmocka_unit_test(test_plain_text_bounces),
        cmocka_unit_test(test_ses_json),
        cmocka_unit_test(test_clean_strings),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
