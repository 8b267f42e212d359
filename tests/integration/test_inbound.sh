#!/usr/bin/env bash
# The [inbound] listener (docs/feedback.md "Inbound SMTP"): reports delivered by a
# real SMTP client (python3 smtplib, tests/tools/smtp_send.py) to a real postmuxd.
# Tokens come from tests/tools/reftoken.py (an implementation of the documented
# format apart from lib/reftoken.c) under the test's master key. Covered: an async
# bounce of a recipient really sent through postmuxd (status bounced, event, hard
# suppression, the next job suppressed), a soft async bounce, a delay, an ARF
# complaint to fbl@ matched through X-Postmux-Ref, a mailto unsubscribe to u-, STARTTLS,
# auto-replies counted only, forged tokens and strangers refused with 550 and
# nothing stored, bare LF, oversize, too many connections from one address,
# inbound_reports rows kept whole, a report applied once, and the metric.
source "$(dirname "$0")/lib.sh"
t_setup

t_conf_set daemon workers 1
t_conf_set daemon log_level debug
IPORT=$(pmx_svc_free_port)
MPORT=$(pmx_svc_free_port)
t_conf_set daemon metrics_listen "127.0.0.1:$MPORT"
t_conf_set inbound listen "127.0.0.1:$IPORT"
t_conf_set inbound hostname mx.postmux.test
t_conf_set inbound max_message_size 64K
source "$(dirname "$0")/relay_lib.sh"
make_certs || t__setup_fail "openssl could not make the test certificates"
t_conf_set inbound tls_cert "$CERTS/localhost.crt"
t_conf_set inbound tls_key "$CERTS/localhost.key"
WS=$($PMX workspace create Acme)
$PMX domain add Acme acme.test --algorithm ed25519 >/dev/null
$PMX domain verify acme.test --skip-dns >/dev/null
# A second domain whose return-path domain was chosen (domains.return_path).
$PMX domain add Acme acme2.test --algorithm ed25519 >/dev/null
$PMX domain verify acme2.test --skip-dns >/dev/null
t_psql "update domains set return_path = 'rp.acme2.test' where domain = 'acme2.test'"

PY=/usr/bin/python3
SEND=$PMX_ROOT/tests/tools/smtp_send.py
TOK=$PMX_ROOT/tests/tools/reftoken.py
tok() { "$PY" "$TOK" make "$T_MASTER_KEY" "$1" "$2" "$3"; }
xadd() { t_redis XADD "pmx:{$WS}:jobs" '*' "$@"; }
msg_of() { t_psql "select id from messages where client_id = '$1'"; }
status() { t_psql "select status || ' ' || coalesce(bounce_class, '-') from recipients
                   where message_id = '$1' and address = '$2'"; }
supp() { t_psql "select reason || ' ' || coalesce(message_id, '-') from suppressions
                 where workspace_id = '$WS' and address = '$1' and scope = '*'"; }
reports() { t_psql "select count(*) from inbound_reports"; }
# A job to ADDR sent through postmuxd to the sink; prints its message id. Until
# the return-path branch writes recipients.idx, the one recipient's idx (0) is
# set here when it is missing.
send_one() {
    xadd from news@acme.test to "$2" subject s text t id "$1" >/dev/null
    t_wait_for 40 "[[ \$(t_psql \"select r.status from recipients r join messages m on m.id = r.message_id where m.client_id = '$1'\") == sent ]]" >/dev/null
    local m
    m=$(msg_of "$1")
    t_psql "update recipients set idx = 0 where message_id = '$m' and idx is null" >/dev/null
    printf '%s\n' "$m"
}
# dsn TO-ADDR STATUS DIAG [ACTION]: a Postfix-style RFC 3464 report to FILE $R
dsn() {
    local action=${4:-failed}
    cat >"$R" <<EOF
From: MAILER-DAEMON@mx.cust.test (Mail Delivery System)
To: bounce@bounces.acme.test
Subject: Undelivered Mail Returned to Sender
Date: Mon, 7 Dec 2026 00:00:00 +0000
Message-ID: <dsn-$RANDOM@mx.cust.test>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="BB"

--BB
Content-Type: text/plain

I'm sorry to have to inform you that your message could not be delivered.

--BB
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.cust.test

Final-Recipient: rfc822; $1
Action: $action
Status: $2
Diagnostic-Code: smtp; $3

--BB
Content-Type: text/rfc822-headers

From: news@acme.test
To: $1
Subject: s
Message-ID: <orig@acme.test>

--BB--
EOF
}
R=$T_DIR/report.eml

LOG=$T_DIR/postmuxd.log
"$PMXD" -c "$T_CONF" >>"$LOG" 2>&1 &
DPID=$!
t_wait_for 60 "grep -q 'inbound listening' '$LOG' && grep -q 'suppressions loaded' '$LOG'"

t_case "an async bounce of a recipient really sent: bounced, event, hard suppression, next job suppressed"
M1=$(send_one h1 gone@cust.test)
t_expect_match "$M1" '^msg_[a-z2-7]{16}$' "message id"
T1=$(tok b "$M1" 0)
dsn gone@cust.test 5.1.1 "550 5.1.1 <gone@cust.test>: Recipient address rejected: User unknown"
t_run "$PY" "$SEND" "$IPORT" "" "b-$T1@bounces.acme.test" "$R"
t_expect_match "$T_OUT" '^MAIL 250' "null sender accepted"
t_expect_match "$T_OUT" "RCPT <b-$T1@bounces.acme.test> 250" "the token's address accepted"
t_expect_match "$T_OUT" 'DATA 250 2\.0\.0 Ok: stored as report [0-9]+' "stored before 250"
t_wait_for 20 "[[ \$(status $M1 gone@cust.test) == bounced* ]]"
t_expect_eq "$(status "$M1" gone@cust.test)" "bounced user_unknown" "sent became bounced"
t_expect_eq "$(supp gone@cust.test)" "hard_bounce $M1" "hard suppression with the message id"
DET=$(t_psql "select detail from events where message_id = '$M1' and type = 'message.bounced'")
t_expect_match "$DET" '"async": ?true' "event detail async"
t_expect_match "$DET" '"status": ?"5\.1\.1"' "event detail status"
t_expect_match "$DET" '"class": ?"user_unknown"' "event detail class"
t_expect_match "$DET" '"diagnostic": ?"550 5\.1\.1 <gone@cust\.test>' "event detail diagnostic"
t_expect_eq "$(t_psql "select kind || ' ' || message_id || ' ' || rcpt_idx || ' ' || workspace_id ||
                       ' ' || (applied_at is not null)::text from inbound_reports")" \
    "bounce $M1 0 $WS true" "the inbound_reports row"
t_expect_eq "$(t_psql "select recipient_id from inbound_reports")" "$M1:0" \
    "recipient_id names the recipient row (message id and position)"
t_psql "select encode(raw, 'escape') from inbound_reports where kind = 'bounce'" >"$T_DIR/raw.out"
t_expect_eq "$(tr -d '\r' <"$T_DIR/raw.out")" "$(cat "$R")" "raw kept whole"
t_expect_eq "$(t_psql "select parsed->>'kind' || ' ' || (parsed->'recipients'->0->>'class')
                       from inbound_reports where kind = 'bounce'")" "bounce user_unknown" "parsed"
t_wait_for 30 "grep -q 'suppressions notify .*gone@cust.test' '$LOG'"
xadd from news@acme.test to gone@cust.test subject s text t id h1b >/dev/null
t_wait_for 40 "[[ -n \$(status \$(msg_of h1b) gone@cust.test) ]]"
t_expect_eq "$(status "$(msg_of h1b)" gone@cust.test)" "suppressed -" "the next job is suppressed"

t_case "the same report again is stored again but changes nothing"
t_run "$PY" "$SEND" "$IPORT" "" "b-$T1@bounces.acme.test" "$R"
t_expect_match "$T_OUT" 'DATA 250' "accepted"
t_wait_for 20 "[[ \$(t_psql 'select count(*) from inbound_reports where applied_at is null') == 0 ]]"
t_expect_eq "$(t_psql "select count(*) from events where message_id = '$M1' and type = 'message.bounced'")" 1 \
    "one message.bounced event"
t_expect_eq "$(reports)" 2 "two rows"

t_case "a soft async bounce counts toward soft_bounce_limit; a delay writes message.delayed"
M2=$(send_one h2 full@cust.test)
T2=$(tok b "$M2" 0)
dsn full@cust.test 5.2.2 "552 5.2.2 Mailbox full"
t_run "$PY" "$SEND" "$IPORT" "" "b-$T2@bounces.acme.test" "$R"
t_expect_match "$T_OUT" 'DATA 250' "accepted"
t_wait_for 20 "[[ \$(status $M2 full@cust.test) == bounced* ]]"
t_expect_eq "$(status "$M2" full@cust.test)" "bounced mailbox_full" "soft class"
t_expect_eq "$(supp full@cust.test)" "" "not suppressed"
t_expect_eq "$(t_psql "select soft_bounces from bounce_counts where address = 'full@cust.test'")" 1 "soft count"
M3=$(send_one h3 slow@cust.test)
T3=$(tok b "$M3" 0)
dsn slow@cust.test 4.4.1 "450 4.4.1 Connection timed out" delayed
t_run "$PY" "$SEND" "$IPORT" "" "b-$T3@bounces.acme.test" "$R"
t_expect_match "$T_OUT" 'DATA 250' "accepted"
t_wait_for 20 "[[ \$(t_psql \"select count(*) from events where message_id = '$M3' and type = 'message.delayed'\") == 1 ]]"
t_expect_eq "$(status "$M3" slow@cust.test)" "sent -" "a delay changes no status"
t_expect_eq "$(t_psql "select kind from inbound_reports where message_id = '$M3'")" delay "kind delay"

t_case "an ARF complaint to fbl@ is matched through X-Postmux-Ref, never by To:"
M4=$(send_one h4 angry@cust.test)
T4=$(tok b "$M4" 0)
M5=$(send_one h5 bystander@cust.test)
cat >"$R" <<EOF
From: feedback@fbl.provider.test
To: fbl@bounces.acme.test
Subject: complaint about message
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="FF"

--FF
Content-Type: text/plain

This is an email abuse report.

--FF
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: test-fbl/1.0
Version: 1
Original-Rcpt-To: bystander@cust.test

--FF
Content-Type: message/rfc822

From: news@acme.test
To: bystander@cust.test
Subject: s
X-Postmux-Ref: $T4

t
--FF--
EOF
t_run "$PY" "$SEND" "$IPORT" "feedback@fbl.provider.test" "fbl@bounces.acme.test" "$R"
t_expect_match "$T_OUT" 'RCPT <fbl@bounces.acme.test> 250' "fbl@ a return-path domain"
t_expect_match "$T_OUT" 'DATA 250' "accepted"
t_wait_for 20 "[[ -n \$(supp angry@cust.test) ]]"
t_expect_eq "$(supp angry@cust.test)" "complaint $M4" "the token's recipient suppressed"
t_expect_eq "$(supp bystander@cust.test)" "" "the To: address is not"
t_expect_eq "$(t_psql "select detail from events where message_id = '$M4' and type = 'message.complained'")" \
    '{"feedback_type":"abuse"}' "message.complained"
t_expect_eq "$(t_psql "select kind || ' ' || message_id || ' ' || workspace_id from inbound_reports where rcpt like 'fbl@%'")" \
    "complaint $M4 $WS" "row names the recipient"

t_case "fbl@ a chosen return-path domain (domains.return_path) is accepted, bounces.<that domain> is not"
printf 'From: feedback@fbl.provider.test\r\nTo: fbl@rp.acme2.test\r\nSubject: hello\r\n\r\nnothing known\r\n' >"$R"
t_run "$PY" "$SEND" "$IPORT" "feedback@fbl.provider.test" "fbl@rp.acme2.test" "$R"
t_expect_match "$T_OUT" 'RCPT <fbl@rp.acme2.test> 250' "domains.return_path"
t_expect_match "$T_OUT" 'DATA 250' "stored"
t_expect_eq "$(t_psql "select workspace_id from inbound_reports where rcpt = 'fbl@rp.acme2.test'")" "$WS" \
    "the domain's workspace"
t_run "$PY" "$SEND" "$IPORT" "feedback@fbl.provider.test" "fbl@bounces.acme2.test" "$R"
t_expect_match "$T_OUT" 'RCPT <fbl@bounces.acme2.test> 550 5\.1\.1' "not its return-path domain"

t_case "u-<token> unsubscribes (mailto), a b- token does not"
M6=$(send_one h6 leaving@cust.test)
printf 'From: leaving@cust.test\r\nTo: u@x\r\nSubject: unsubscribe\r\n\r\nunsubscribe\r\n' >"$R"
t_run "$PY" "$SEND" "$IPORT" "leaving@cust.test" "u-$(tok b "$M6" 0)@bounces.acme.test" "$R"
t_expect_match "$T_OUT" 'RCPT <u-[a-z2-7]+@bounces.acme.test> 550 5\.1\.1' "a b token under u- is refused"
t_run "$PY" "$SEND" "$IPORT" "leaving@cust.test" "u-$(tok u "$M6" 0)@bounces.acme.test" "$R"
t_expect_match "$T_OUT" 'DATA 250' "accepted"
t_wait_for 20 "[[ -n \$(t_psql \"select reason from suppressions where address = 'leaving@cust.test'\") ]]"
t_expect_eq "$(t_psql "select reason || ' ' || scope || ' ' || detail from suppressions where address = 'leaving@cust.test'")" \
    "unsubscribe * mailto" "unsubscribed"
t_expect_eq "$(t_psql "select count(*) from events where message_id = '$M6' and type = 'message.unsubscribed'")" 1 "event"
t_wait_for 20 "[[ \$(t_psql \"select applied_at is not null from inbound_reports where kind = 'unsubscribe'\") == t ]]"
t_expect_eq "$(t_psql "select applied_at is not null from inbound_reports where kind = 'unsubscribe'")" t "applied"

t_case "STARTTLS (tls_cert/tls_key): a report over TLS is stored"
N0=$(reports)
t_run "$PY" "$SEND" --starttls "$IPORT" "" "b-$T1@bounces.acme.test" "$R"
t_expect_match "$T_OUT" '^STARTTLS 220' "STARTTLS offered and started"
t_expect_match "$T_OUT" 'DATA 250' "accepted over TLS"
t_expect_eq "$(reports)" "$((N0 + 1))" "stored"

t_case "an auto-reply is stored and counted, nothing acted on"
M7=$(send_one h7 away@cust.test)
printf 'From: away@cust.test\r\nTo: x@y\r\nSubject: Out of Office: s\r\nAuto-Submitted: auto-replied\r\n\r\nI am away.\r\n' >"$R"
t_run "$PY" "$SEND" "$IPORT" "away@cust.test" "b-$(tok b "$M7" 0)@bounces.acme.test" "$R"
t_expect_match "$T_OUT" 'DATA 250' "accepted"
t_wait_for 20 "[[ \$(t_psql \"select applied_at is not null from inbound_reports where kind = 'auto_reply'\") == t ]]"
t_expect_eq "$(status "$M7" away@cust.test)" "sent -" "status unchanged"
t_expect_eq "$(t_psql "select count(*) from events where message_id = '$M7' and type <> 'message.sent' and type <> 'message.queued'")" 0 "no event"

t_case "strangers and forged tokens: 550 5.1.1, nothing stored, no Postgres lookup"
N0=$(reports)
FORGED=$(tok b "$M1" 0 | tr 'a-f' 'b-g')
dsn gone@cust.test 5.1.1 "550 5.1.1 user unknown"
for rc in "b-$FORGED@bounces.acme.test" "postmaster@bounces.acme.test" "someone@acme.test" \
          "fbl@bounces.other.test" "fbl@acme.test" "b-short@bounces.acme.test"; do
    t_run "$PY" "$SEND" "$IPORT" "" "$rc" "$R"
    t_expect_match "$T_OUT" "RCPT <$rc> 550 5\.1\.1" "$rc refused"
    t_expect_nomatch "$T_OUT" 'DATA' "no DATA for $rc"
done
t_expect_eq "$(reports)" "$N0" "nothing stored"
t_expect_match "$(cat "$LOG")" "inbound recipient refused .*rcpt=\"b-$FORGED@bounces.acme.test\"" "logged"
t_run "$PY" "$SEND" "$IPORT" "" "b-$T1@bounces.acme.test,stranger@bounces.acme.test" "$R"
t_expect_match "$T_OUT" 'RCPT <stranger@bounces.acme.test> 550' "one of two refused"
t_expect_match "$T_OUT" 'DATA 250' "the other stored"
t_expect_eq "$(reports)" "$((N0 + 1))" "one row for the accepted recipient"

t_case "hostile input: AUTH not offered, bare LF refused, oversize 552, too many connections 421"
t_run "$PY" -c "
import smtplib; s = smtplib.SMTP('127.0.0.1', $IPORT); s.ehlo('x')
print('AUTH' in s.esmtp_features and 'auth' or 'noauth', s.docmd('AUTH PLAIN AGFiYwBkZWY=')[0])"
t_expect_eq "$T_OUT" "noauth 502" "no AUTH"
N0=$(reports)
printf 'Subject: x\r\n\r\nline one\nline two\r\n' >"$R"
t_run "$PY" "$SEND" --raw "$IPORT" "" "b-$T1@bounces.acme.test" "$R"
t_expect_match "$T_OUT" 'DATA 550 5\.6\.0 Message refused: bare CR or LF' "bare LF"
"$PY" -c "print('Subject: big\r\n\r\n' + ('x' * 900 + '\r\n') * 80, end='')" >"$R"
t_run "$PY" "$SEND" "$IPORT" "" "b-$T1@bounces.acme.test" "$R"
t_expect_match "$T_OUT" 'DATA 552 5\.3\.4' "over max_message_size"
"$PY" -c "print('Subject: long\r\n\r\n' + 'y' * 1200 + '\r\n', end='')" >"$R"
t_run "$PY" "$SEND" "$IPORT" "" "b-$T1@bounces.acme.test" "$R"
t_expect_match "$T_OUT" 'DATA 500 5\.5\.2 Line too long' "a line over 998 octets"
t_expect_eq "$(reports)" "$N0" "nothing stored"
t_run "$PY" "$SEND" --conns 11 "$IPORT"
t_expect_eq "$(grep -c '^220 ' <<<"$T_OUT")" 10 "ten sessions from one address"
t_expect_match "$(tail -n 1 <<<"$T_OUT")" '^421 4\.7\.0 .*Too many connections from your address' "the eleventh refused"

t_case "postmux stats: bounce and complaint rates (over recipients sent or bounced)"
# Sent: h3..h7 (5); bounced: h1 (hard, async) and h2 (soft, async); h1b suppressed.
t_run $PMX stats --json
t_expect_eq "$(printf '%s' "$T_OUT" | "$PY" -c "import json,sys; j=json.load(sys.stdin)
r=[w for w in j['workspaces'] if w['workspace_id']=='$WS'][0]['rates']
print(r['attempted'], r['hard_bounces'], r['complaints'], round(r['bounce_rate'], 4), round(r['complaint_rate'], 4))")" \
    "7 1 1 0.1429 0.1429" "rates in --json"
t_run $PMX stats --workspace Acme
t_expect_match "$T_OUT" '^Rates \(hard bounces and complaints' "a rates table"
t_expect_match "$T_OUT" "^$WS +Acme +7 +1 +14\.29% +1 +14\.29%\$" "the workspace's rates"

t_case "postmux_feedback_total counts reports by workspace and kind"
t_run curl -sf "http://127.0.0.1:$MPORT/metrics"
t_expect_match "$T_OUT" "postmux_feedback_total\{workspace=\"$WS\",kind=\"bounce\"\} [4-9]" "bounces"
t_expect_match "$T_OUT" "postmux_feedback_total\{workspace=\"$WS\",kind=\"complaint\"\} 1" "complaint"
t_expect_match "$T_OUT" "postmux_feedback_total\{workspace=\"$WS\",kind=\"unsubscribe\"\} 1" "unsubscribe"
t_expect_match "$T_OUT" "postmux_feedback_total\{workspace=\"$WS\",kind=\"auto_reply\"\} 1" "auto-reply"

t_stop_postmuxd "$DPID"
t_done
