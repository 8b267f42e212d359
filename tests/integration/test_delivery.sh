#!/usr/bin/env bash
# The delivery pipeline end to end (docs/queue.md, docs/delivery.md; issue 4): jobs XADDed with
# redis-cli as a user would, the real postmuxd, smtp-sink as the relay, python3-dkim
# (an implementation we did not write) verifying every signature, and the outcome
# rows in Postgres.
source "$(dirname "$0")/lib.sh"
t_setup
PY=/usr/bin/python3

t_conf_set daemon workers 2
t_conf_set delivery retry_base 1s
t_conf_set submission max_message_size 64K
t_conf_set delivery suspend_hold 0s     # suspended: rejected at once (test_policy.sh holds)

RSA=$($PMX workspace create RsaCo)
ED=$($PMX workspace create EdCo)
BOTH=$($PMX workspace create BothCo)
$PMX domain add RsaCo rsa.test --algorithm rsa >/dev/null
$PMX domain add EdCo ed.test --algorithm ed25519 >/dev/null
$PMX domain add BothCo both.test --algorithm both >/dev/null
$PMX domain add BothCo unverified.test --algorithm ed25519 >/dev/null
for d in rsa.test ed.test both.test; do $PMX domain verify $d --skip-dns >/dev/null; done

source "$(dirname "$0")/dkim_lib.sh"
KEYS=$T_DIR/keys.json
dkim_keys_json "$KEYS"
verify_dir() { dkim_verify_dir "$KEYS" "$1"; }

xadd() { local ws=$1; shift; t_redis XADD "pmx:{$ws}:jobs" '*' "$@"; }
rcpt_status() { t_psql "select string_agg(r.status, ',' order by r.address) from recipients r
                        join messages m on m.id = r.message_id where m.client_id = '$1'"; }

start_daemon() {
    "$PMXD" -c "$T_CONF" >>"$T_DIR/postmuxd.log" 2>&1 &
    DPID=$!
}
stop_daemon() {
    kill -TERM "$DPID" 2>/dev/null
    wait "$DPID" 2>/dev/null
}

t_case "composed jobs of three workspaces are delivered, signed and recorded sent"
start_daemon
xadd "$RSA" from 'Rsa Co <news@rsa.test>' to 'a@example.net, B <b@example.net>' cc c@example.net \
    bcc hidden@example.net subject 'Hello' text 'plain body' id c1 >/dev/null
xadd "$ED" from news@ed.test to d@example.net subject 'Grüße aus Köln' text 'Grüße' \
    html '<p>Grüße</p>' id c2 >/dev/null
xadd "$BOTH" from news@mail.both.test to e@example.net subject 'sub-domain' html '<b>x</b>' id c3 >/dev/null
t_wait_for 40 "[[ \$(t_psql \"select count(*) from recipients where status = 'sent'\") == 6 ]]"
t_expect_eq "$(rcpt_status c1)" "sent,sent,sent,sent" "c1 recipients"
t_expect_eq "$(rcpt_status c2)" "sent" "c2 recipients"
t_expect_eq "$(rcpt_status c3)" "sent" "c3 recipients"
t_expect_eq "$(t_psql "select count(*) from events where type = 'message.sent'")" 6 "sent events"
t_wait_for 10 "(( \$(ls $T_SINK_DIR | wc -l) == 3 ))"
t_expect_eq "$(verify_dir "$T_SINK_DIR")" "ok 3" "DKIM verification"
t_expect_eq "$(grep -l 'hidden@example.net' "$T_SINK_DIR"/* | wc -l)" 1 "bcc only in the envelope dump"
t_expect_nomatch "$(grep -h -i '^bcc:' "$T_SINK_DIR"/*)" . "Bcc header"
f=$(grep -l 'X-Rcpt-Args: <d@example.net>' "$T_SINK_DIR"/*)
t_expect_eq "$(grep -c '^DKIM-Signature:' "$f")" 1 "one signature (ed25519)"
f=$(grep -l 'X-Rcpt-Args: <e@example.net>' "$T_SINK_DIR"/*)
t_expect_eq "$(grep -c '^DKIM-Signature:' "$f")" 2 "two signatures (rsa + ed25519)"
t_expect_match "$(cat "$f")" 'multipart|text/html' "content type"
t_expect_eq "$(t_redis XPENDING "pmx:{$RSA}:jobs" postmux | head -n 1)" 0 "no pending entries"


t_case "one log line per delivery attempt (workspace, message id, recipient, status, reply); no secret"
MSG_C2=$(t_psql "select id from messages where client_id = 'c2'")
t_expect_match "$(cat "$T_DIR/postmuxd.log")" \
    "info: delivery ws=$ED msg=$MSG_C2 rcpt=d@example.net status=sent attempt=1 reply=\"250 " "c2's attempt"
t_expect_eq "$(grep -c "info: delivery ws=$RSA msg=" "$T_DIR/postmuxd.log")" 4 "c1: one line per recipient"
t_expect_eq "$(grep -cF -- "$(tr -d '\n' <"$T_MASTER_KEY")" "$T_DIR/postmuxd.log")" 0 "the master key"
for k in $(t_psql "select encode(private_key_enc, 'hex') from dkim_keys"); do
    grep -qiF -- "${k:0:32}" "$T_DIR/postmuxd.log" && t_fail "a sealed DKIM key is in the log"
done
t_expect_nomatch "$(cat "$T_DIR/postmuxd.log")" 'BEGIN .*PRIVATE KEY' "a PEM private key"

t_case "a From: prepended to a delivered message breaks its signature (From is oversigned)"
f=$(grep -l 'X-Rcpt-Args: <d@example.net>' "$T_SINK_DIR"/*)
mkdir -p "$T_DIR/forged"
{ printf 'From: evil@attacker.example\r\n'; sed -n '/^DKIM-Signature:/,$p' "$f"; } >"$T_DIR/forged/m"
t_expect_match "$(verify_dir "$T_DIR/forged")" 'signature 0 fails' "verification"

t_case "raw jobs: dots, bare LF and bare CR arrive as written, signed; Bcc is dropped"
RAW=$(printf 'From: Rsa Co <news@rsa.test>\nTo: x@example.net\nBcc: secret@example.net\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\n\n.leading dot\n.\n..two\rbare cr line\nlast\n')
xadd "$RSA" from news@rsa.test to x@example.net raw "$RAW" id r1 >/dev/null
t_wait_for 40 "[[ \$(rcpt_status r1) == sent ]]"
t_wait_for 10 "grep -l 'X-Rcpt-Args: <x@example.net>' $T_SINK_DIR/* >/dev/null"
f=$(grep -l 'X-Rcpt-Args: <x@example.net>' "$T_SINK_DIR"/*)
mkdir -p "$T_DIR/raw" && cp "$f" "$T_DIR/raw/"
t_expect_eq "$(verify_dir "$T_DIR/raw")" "ok 1" "DKIM verification"
t_expect_match "$(cat "$f")" $'^\\.leading dot\r?$' "leading dot line"
t_expect_match "$(cat "$f")" $'^\\.\r?$' "a line of one dot"
t_expect_match "$(cat "$f")" $'^bare cr line\r?$' "bare CR became a line end"
t_expect_nomatch "$(cat "$f")" '^Bcc:' "Bcc header"
t_expect_match "$(cat "$f")" '^Message-ID: <msg_[a-z2-7]{16}@rsa\.test>' "Message-ID added"
t_expect_eq "$(t_psql "select source from messages where client_id = 'r1'")" redis "source"

# ---- bad jobs: rejected with the field named, the stream goes on -------------------------
t_case "every kind of bad job is rejected with its reason; good jobs around them go out"
t_redis XGROUP CREATE "pmx:{ws_aaaaaaaaaaaaaaaa}:jobs" postmux 0 MKSTREAM >/dev/null
xadd ws_aaaaaaaaaaaaaaaa from a@rsa.test to y@example.net subject s text t id b-unknown >/dev/null
MANY=$(seq -f 'r%g@example.net' 1 1001 | paste -sd, -)
BIG=$(head -c 70000 /dev/zero | tr '\0' x)
xadd "$RSA" from news@rsa.test to g1@example.net subject ok text ok id good1 >/dev/null
xadd "$RSA" to y@example.net subject s text t id b-nofrom >/dev/null
xadd "$RSA" from news@rsa.test to y@example.net subject s text t header:X-Foo "$(printf 'a\r\nBcc: z@example.net')" id b-crlf >/dev/null
xadd "$RSA" from news@rsa.test to y@example.net subject s raw "$RAW" id b-rawsubj >/dev/null
xadd "$RSA" from news@rsa.test to "$MANY" subject s text t id b-many >/dev/null
xadd "$RSA" from news@rsa.test to y@example.net subject s text "$BIG" id b-big >/dev/null
xadd "$BOTH" from news@unverified.test to y@example.net subject s text t id b-unverified >/dev/null
xadd "$ED" from news@rsa.test to y@example.net subject s text t id b-foreign >/dev/null
xadd "$RSA" from news@rsa.test to y@example.net subject s text t id good1 >/dev/null
xadd "$RSA" from news@rsa.test to g2@example.net subject ok text ok id good2 >/dev/null
detail() { t_psql "select string_agg(distinct e.detail, ' ') from events e join messages m on m.id = e.message_id
                   where m.client_id = '$1' and e.type = 'message.rejected'"; }
t_wait_for 40 "[[ \$(rcpt_status good2) == sent && -n \$(detail b-foreign) ]]"
t_expect_eq "$(rcpt_status good1)" sent,rejected "good1 sent, its duplicate rejected"
t_expect_match "$(detail b-nofrom)" '^from: ' "missing from"
t_expect_match "$(detail b-crlf)" '^header:X-Foo: ' "CR/LF in a header"
t_expect_match "$(detail b-rawsubj)" 'subject' "raw with subject"
t_expect_match "$(detail b-many)" '^to: .*1000' "1,001 recipients"
t_expect_match "$(detail b-big)" 'max_message_size|too large|larger' "too large"
t_expect_eq "$(detail b-unverified)" "domain_not_verified: unverified.test" "unverified domain"
t_expect_eq "$(detail b-foreign)" "domain_not_verified: rsa.test" "another workspace's domain"
t_expect_eq "$(detail good1)" "duplicate" "duplicate id"
t_expect_eq "$(t_psql "select count(*) from recipients r join messages m on m.id = r.message_id
                       where m.client_id = 'b-crlf' and r.status = 'rejected'")" 1 "rejected recipient row"
t_expect_eq "$(t_redis XLEN "pmx:{$RSA}:jobs")" 0 "the stream is empty"
t_expect_eq "$(grep -l 'z@example.net' "$T_SINK_DIR"/* 2>/dev/null | wc -l)" 0 "nothing injected"

t_case "a quoted local part is one recipient, relayed as written with its sibling; an unquoted space rejects the job naming the field"
xadd "$ED" from news@ed.test to '"a b"@dest.test, ok@dest.test' subject quoted text t id q1 >/dev/null
xadd "$ED" from news@ed.test to 'a b@dest.test, ok2@dest.test' subject quoted text t id q2 >/dev/null
t_wait_for 40 "[[ \$(rcpt_status q1) == sent,sent && -n \$(detail q2) ]]"
t_expect_eq "$(rcpt_status q1)" sent,sent "both recipients of q1"
t_expect_eq "$(t_psql "select string_agg(r.address, ' ' order by r.address) from recipients r
                       join messages m on m.id = r.message_id where m.client_id = 'q1'")" \
    '"a b"@dest.test ok@dest.test' "recorded addresses"
t_wait_for 10 "grep -lF 'X-Rcpt-Args: <\"a b\"@dest.test>' $T_SINK_DIR/* >/dev/null"
f=$(grep -lF 'X-Rcpt-Args: <"a b"@dest.test>' "$T_SINK_DIR"/* | head -n 1)
t_expect_eq "$(grep -c '^X-Rcpt-Args: <ok@dest.test>' "$f")" 1 "one transaction for both"
t_expect_eq "$(detail q2)" "to: unexpected space in local part in 'a b@dest.test'" "q2's reason"
t_expect_eq "$(grep -l 'ok2@dest.test' "$T_SINK_DIR"/* 2>/dev/null | wc -l)" 0 "nothing of q2 relayed"

t_case "suspend_hold = 0: a suspended workspace's jobs are rejected workspace_suspended at once"
t_settings_change "$DPID" -- $PMX workspace set EdCo --suspend
xadd "$ED" from news@ed.test to y@example.net subject s text t id b-susp >/dev/null
t_wait_for 40 "[[ -n \$(detail b-susp) ]]"
t_expect_eq "$(detail b-susp)" "workspace_suspended" "reason"
$PMX workspace set EdCo --resume >/dev/null

t_case "the stream of an unknown workspace: rejected unknown_workspace within 60 s"
t_wait_for 60 "[[ -n \$(detail b-unknown) ]]"
t_expect_eq "$(detail b-unknown)" "unknown_workspace" "reason"
t_expect_eq "$(t_psql "select workspace_id from messages where client_id = 'b-unknown'")" ws_aaaaaaaaaaaaaaaa "workspace"

stop_daemon

t_case "log_level = warn: no info lines, deliveries still happen"
t_conf_set daemon log_level warn
"$PMXD" -c "$T_CONF" >"$T_DIR/postmuxd-warn.log" 2>&1 &
DPID=$!
xadd "$RSA" from news@rsa.test to quiet@example.net subject s text t id quiet >/dev/null
t_wait_for 40 "[[ \$(rcpt_status quiet) == sent ]]"
stop_daemon
t_expect_nomatch "$(cat "$T_DIR/postmuxd-warn.log")" ' (info|debug): ' "info or debug lines"
t_conf_set daemon log_level info

t_case "no sanitizer report in postmuxd's log"
t_expect_nomatch "$(cat "$T_DIR"/postmuxd*.log 2>/dev/null)" 'Sanitizer|runtime error:|LeakSanitizer' "postmuxd log"
t_done
