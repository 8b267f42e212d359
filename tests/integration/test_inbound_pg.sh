#!/usr/bin/env bash
# The [inbound] listener when Postgres is away (docs/feedback.md "Inbound SMTP":
# nothing accepted is lost): with Postgres stopped a report gets "451 4.3.0" and is
# not kept, the sender's retry after Postgres is back is stored and applied; a row
# stored but never applied (Postgres went away between the two) is applied by the
# upkeep, once. This file runs its own Postgres (the shared one cannot be stopped
# under the other files).
unset PMX_PG_HOST PMX_PG_PORT PMX_PG_USER
source "$(dirname "$0")/lib.sh"
t_setup

t_conf_set daemon workers 1
IPORT=$(pmx_svc_free_port)
t_conf_set inbound listen "127.0.0.1:$IPORT"
WS=$($PMX workspace create Acme)
$PMX domain add Acme acme.test --algorithm ed25519 >/dev/null
$PMX domain verify acme.test --skip-dns >/dev/null

PY=/usr/bin/python3
SEND=$PMX_ROOT/tests/tools/smtp_send.py
tok() { "$PY" "$PMX_ROOT/tests/tools/reftoken.py" make "$T_MASTER_KEY" "$1" "$2" "$3"; }
status() { t_psql "select r.status from recipients r join messages m on m.id = r.message_id
                   where m.client_id = '$1'" 2>/dev/null; }
msg_of() { t_psql "select id from messages where client_id = '$1'"; }
send_one() {
    t_redis XADD "pmx:{$WS}:jobs" '*' from news@acme.test to "$2" subject s text t id "$1" >/dev/null
    t_wait_for 40 "[[ \$(status $1) == sent ]]" >/dev/null
    t_psql "update recipients set idx = 0 where message_id = '$(msg_of "$1")' and idx is null" >/dev/null
    msg_of "$1"
}
R=$T_DIR/report.eml
dsn() {
    printf 'From: MAILER-DAEMON@mx.cust.test\r\nTo: b@bounces.acme.test\r\nSubject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="BB"\r\n\r\n--BB\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.cust.test\r\n\r\nFinal-Recipient: rfc822; %s\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\r\n--BB--\r\n' "$1" >"$R"
}

LOG=$T_DIR/postmuxd.log
"$PMXD" -c "$T_CONF" >>"$LOG" 2>&1 &
DPID=$!
t_wait_for 60 "grep -q 'inbound listening' '$LOG' && grep -q 'settings loaded' '$LOG'"

t_case "Postgres stopped: 451 4.3.0 and nothing kept; the retry once it is back is stored and applied"
M1=$(send_one h1 gone@cust.test)
T1=$(tok b "$M1" 0)
dsn gone@cust.test
pmx_svc_pg_restart 10 &
RPID=$!
t_wait_for 30 "! '$PMX_PG_BIN/pg_isready' -q -h '$PMX_PG_HOST' -p '$PMX_PG_PORT' -t 1"
t_run "$PY" "$SEND" "$IPORT" "" "b-$T1@bounces.acme.test" "$R"
t_expect_match "$T_OUT" "RCPT <b-$T1@bounces.acme.test> 250" "the token needs no Postgres"
t_expect_match "$T_OUT" 'DATA 451 4\.3\.0' "451 while Postgres is down"
wait "$RPID"
t_expect_eq "$?" 0 "Postgres came back"
t_expect_eq "$(t_psql "select count(*) from inbound_reports")" 0 "nothing kept from the refused try"
t_wait_for 40 "grep -q 'postgres reconnected' '$LOG'"
t_wait_for 40 "[[ \$('$PY' '$SEND' '$IPORT' '' 'b-$T1@bounces.acme.test' '$R') == *'DATA 250'* ]]"
t_wait_for 20 "[[ \$(status h1) == bounced ]]"
t_expect_eq "$(status h1)" bounced "applied"
t_expect_eq "$(t_psql "select count(*) from inbound_reports where applied_at is not null")" 1 "one row, applied"

t_case "a row stored but not applied is applied by the upkeep, once"
M2=$(send_one h2 lost@cust.test)
dsn lost@cust.test
t_psql "insert into inbound_reports (workspace_id, message_id, rcpt_idx, rcpt, mail_from, kind, parsed, raw, created_at)
        values ('$WS', '$M2', 0, 'b-$(tok b "$M2" 0)@bounces.acme.test', '', 'bounce', '{}',
                decode('$(base64 -w0 "$R")', 'base64'), now() - interval '2 minutes')" >/dev/null
t_wait_for 150 "[[ \$(status h2) == bounced ]]"
t_expect_eq "$(status h2)" bounced "applied by the upkeep"
t_expect_eq "$(t_psql "select count(*) from events where message_id = '$M2' and type = 'message.bounced'")" 1 "one event"
t_expect_eq "$(t_psql "select count(*) from inbound_reports where applied_at is null")" 0 "nothing left unapplied"
t_expect_match "$(cat "$LOG")" 'inbound report retried report=' "logged"

t_stop_postmuxd "$DPID"
t_done
