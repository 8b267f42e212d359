#!/usr/bin/env bash
# The delivery pipeline end to end (SPEC §5, §6; issue 4): jobs XADDed with
# redis-cli as a user would, the real postmuxd, smtp-sink as the relay, python3-dkim
# (an implementation we did not write) verifying every signature, and the outcome
# rows in Postgres.
source "$(dirname "$0")/lib.sh"
t_setup
PY=/usr/bin/python3

t_conf_set daemon workers 2
t_conf_set delivery retry_base 1s

RSA=$($PMX workspace create RsaCo)
ED=$($PMX workspace create EdCo)
BOTH=$($PMX workspace create BothCo)
$PMX domain add RsaCo rsa.test --algorithm rsa >/dev/null
$PMX domain add EdCo ed.test --algorithm ed25519 >/dev/null
$PMX domain add BothCo both.test --algorithm both >/dev/null
$PMX domain add BothCo unverified.test --algorithm ed25519 >/dev/null
for d in rsa.test ed.test both.test; do $PMX domain verify $d --skip-dns >/dev/null; done

# The "DNS" python3-dkim looks keys up in: every key postmux holds.
KEYS=$T_DIR/keys.json
t_psql "select json_object_agg(k.selector || '._domainkey.' || d.domain,
          'v=DKIM1; k=' || split_part(k.algorithm, '-', 1) || '; p=' || k.public_key)
        from dkim_keys k join domains d on d.id = k.domain_id" >"$KEYS"

xadd() { local ws=$1; shift; t_redis XADD "pmx:{$ws}:jobs" '*' "$@"; }
rcpt_status() { t_psql "select string_agg(r.status, ',' order by r.address) from recipients r
                        join messages m on m.id = r.message_id where m.client_id = '$1'"; }

# Verifies every DKIM-Signature of every dumped message in DIR (smtp-sink's envelope
# X- lines are unsigned fields, so they do not matter); prints "ok N" or the failures.
verify_dir() {
    "$PY" - "$KEYS" "$1" <<'PYEOF'
import dkim, json, os, sys
keys = {k.lower(): v.encode() for k, v in json.load(open(sys.argv[1])).items()}
def dns(name, timeout=5):
    return keys.get(name.decode().lower().rstrip("."), b"")
bad, n = [], 0
for f in sorted(os.listdir(sys.argv[2])):
    data = open(os.path.join(sys.argv[2], f), "rb").read()
    if b"\r" not in data: data = data.replace(b"\n", b"\r\n")
    nsig = data.count(b"\r\nDKIM-Signature:") + data.startswith(b"DKIM-Signature:")
    if nsig == 0: bad.append(f + ": unsigned"); continue
    d = dkim.DKIM(data)
    for i in range(nsig):
        if not d.verify(idx=i, dnsfunc=dns): bad.append("%s: signature %d fails" % (f, i))
    n += 1
print("ok %d" % n if not bad else "\n".join(bad[:10]))
PYEOF
}

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
t_wait_for 20 "[[ \$(t_psql \"select count(*) from recipients where status = 'sent'\") == 6 ]]"
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

stop_daemon
t_done
