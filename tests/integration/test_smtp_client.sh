#!/usr/bin/env bash
# The relay client (smtp/reply, tls, client, pool) against SMTP servers postmux did
# not write: postfix's smtp-sink (pipelining, 4xx/5xx on chosen commands, delays,
# dropped connections) and tests/tools/tls_relay.py on Debian's aiosmtpd (STARTTLS,
# implicit TLS, AUTH PLAIN/LOGIN, SIZE, SMTPUTF8, and misbehaving STARTTLS), plus
# tests/tools/raw_smtp.py for replies no real server would send. Every
# run goes through tests/tools/smtp_probe, which uses the pool as the worker does;
# under the ASan build any leak or memory error makes it exit non-zero.
source "$(dirname "$0")/lib.sh"

PROBE=$T_TOOLS/smtp_probe
PY=/usr/bin/python3
RELAY_PY=$PMX_ROOT/tests/tools/tls_relay.py
T_RUN_TIMEOUT=60

if [[ ! -x $PROBE ]]; then
    t_case "smtp_probe is built"
    t_fail "no $PROBE: build first (make tools, make SAN=1 tools)"
    t_done
fi

# ---- helpers ----

# Lines of $T_OUT matching ERE.
n_lines() { grep -cE -- "$1" <<<"$T_OUT"; }

# The summary field NAME of $T_OUT.
summary() { sed -nE "s/^summary .*\\b$1=([^ ]+).*/\\1/p" <<<"$T_OUT"; }

# Files in DIR (0 if it does not exist).
n_files() { find "$1" -maxdepth 1 -type f ! -name '*.tmp' 2>/dev/null | wc -l; }

source "$(dirname "$0")/relay_lib.sh"

printf 's3cret pw\n' >"$T_DIR/pw"
printf 'wrong\n' >"$T_DIR/badpw"
TLS_AUTH=(--user alice --password-file "$T_DIR/pw")
RELAY_AUTH=(--user alice --password 's3cret pw')

# ---- smtp-sink: throughput, pipelining, dot-stuffing ----

t_case "200 messages through 4 sessions to smtp-sink: all 250 and dumped"
SINK=$(t_sink_start)
t_run "$PROBE" --port "$SINK" --count 200 --sessions 4
t_expect_rc 0
t_expect_eq "$(n_lines '^msg=[0-9]+ rcpt=sink@example.net status=sent code=250 enhanced=2\.0\.0 after="end of data"')" 200 "sent outcomes"
t_expect_eq "$(summary connections)" 4 "connections"
t_expect_eq "$(summary sent)" 200 "summary sent"
t_wait_for 10 "(( \$(n_files $T_DIR/sink1) == 200 ))"

t_case "dot-stuffing: lines starting with '.' and a line of '.' arrive unchanged"
f=$(grep -l '^Subject: smtp_probe message 7$' "$T_DIR"/sink1/* | head -1)
t_expect_match "$(cat "$f" 2>/dev/null)" '^\.leading dot$' "the dump"
t_expect_match "$(cat "$f" 2>/dev/null)" '^\.\.two dots$' "the dump"
t_expect_match "$(cat "$f" 2>/dev/null)" '^\.$' "the dump"
t_expect_match "$(cat "$f" 2>/dev/null)" '^after the dot line$' "the dump"
t_expect_match "$(cat "$f" 2>/dev/null)" '^X-Mail-Args: <probe@example\.org>$' "MAIL FROM"

t_case "files with bare LF and 8-bit text: CRLF on the wire, BODY=8BITMIME"
printf 'From: a@example.org\nSubject: caf\xc3\xa9\n\n.\n..x\nline\n' >"$T_DIR/lf.eml"
t_run "$PROBE" --port "$SINK" --file "$T_DIR/lf.eml" --count 1
t_expect_rc 0
t_expect_eq "$(n_lines 'status=sent code=250')" 1 "sent"
t_wait_for 10 "grep -l '^Subject: caf' $T_DIR/sink1/* >/dev/null"
f=$(grep -l '^Subject: caf' "$T_DIR"/sink1/* | head -1)
t_expect_match "$(cat "$f" 2>/dev/null)" '^X-Mail-Args: <probe@example\.org> BODY=8BITMIME$' "MAIL FROM"
t_expect_match "$(cat "$f" 2>/dev/null)" '^\.\.x$' "the dump"

# The filler lines of a generated message are numbered 00000, 00001, ...: prints
# "ok N" when FILE has them all in order (nothing lost, doubled or cut), else why.
filler_check() {
    awk '/^[0-9]+ the quick brown fox/ { if ($1 + 0 != n) { print "line " NR ": got " $1 ", expected " n; bad = 1; exit }
                                         n++ }
         END { if (!bad) print "ok " n }' "$1"
}

t_case "a 20 MB message is written as the socket drains and arrives whole"
SINK_BIG=$(t_sink_start)
t_run "$PROBE" --port "$SINK_BIG" --size 20000000 --count 2 --sessions 2
t_expect_rc 0
t_expect_eq "$(n_lines 'status=sent code=250')" 2 "sent outcomes"
t_wait_for 10 "(( \$(n_files $T_DIR/sink2) == 2 ))"
for f in "$T_DIR"/sink2/*; do
    t_expect_match "$(filler_check "$f")" '^ok 25[0-9]{4}$' "filler lines of $(basename "$f")"
done

t_case "smtp-sink -r RCPT: every recipient deferred with the 4xx, nothing dumped"
SINK_R=$(t_sink_start -r RCPT)
t_run "$PROBE" --port "$SINK_R" --count 3 --to a@example.net --to b@example.net
t_expect_rc 0
t_expect_eq "$(n_lines 'status=deferred code=4[0-9][0-9] enhanced=4\.[0-9.]+ after="RCPT TO" response="4')" 6 "deferred outcomes"
t_expect_eq "$(summary deferred)" 3 "deferred messages"
sleep 0.3
t_expect_eq "$(n_files "$T_DIR/sink3")" 0 "dumped messages"

t_case "smtp-sink -f RCPT: bounced after RCPT TO"
SINK_F=$(t_sink_start -f RCPT)
t_run "$PROBE" --port "$SINK_F" --count 2
t_expect_rc 0
t_expect_eq "$(n_lines 'status=bounced code=5[0-9][0-9] .*after="RCPT TO"')" 2 "bounced outcomes"

t_case "smtp-sink -f DATA: bounced after DATA"
SINK_FD=$(t_sink_start -f DATA)
t_run "$PROBE" --port "$SINK_FD" --count 2 --to a@example.net --to b@example.net
t_expect_rc 0
t_expect_eq "$(n_lines 'status=bounced code=5[0-9][0-9] .*after="DATA"')" 4 "bounced outcomes"

t_case "smtp-sink -r . (end of data): deferred after end of data"
SINK_RD=$(t_sink_start -r .)
t_run "$PROBE" --port "$SINK_RD" --count 2
t_expect_rc 0
t_expect_eq "$(n_lines 'status=deferred code=4[0-9][0-9] .*after="end of data"')" 2 "deferred outcomes"

t_case "nothing listening: deferred with the connect error"
FREE=$(pmx_svc_free_port)
t_run "$PROBE" --port "$FREE" --count 3
t_expect_rc 0
t_expect_eq "$(n_lines "status=deferred code=0 enhanced=- after=\"connect\" response=\"cannot connect to relay 127\\.0\\.0\\.1:$FREE: connection refused\"")" 3 "deferred outcomes"

t_case "reply to DATA slower than the command timeout: deferred, on time"
SINK_W=$(t_sink_start -p -w 4)
t0=${EPOCHREALTIME/./}
t_run "$PROBE" --port "$SINK_W" --count 1 --timeout-ms 500
t1=${EPOCHREALTIME/./}
t_expect_rc 0
t_expect_match "$T_OUT" 'status=deferred code=0 .*after="DATA" response="timeout after 500 ms waiting for the reply to DATA"' "outcome"
(( (t1 - t0) < 3000000 )) || t_fail "took $(( (t1 - t0) / 1000 )) ms"

t_case "reply to the final dot slower than the data timeout: deferred, on time"
SINK_WD=$(t_sink_start -W .:4)
t0=${EPOCHREALTIME/./}
t_run "$PROBE" --port "$SINK_WD" --count 1 --timeout-ms 10000 --data-timeout-ms 500
t1=${EPOCHREALTIME/./}
t_expect_rc 0
t_expect_match "$T_OUT" 'status=deferred code=0 .*after="end of data" response="timeout after 500 ms waiting for the reply to end of data"' "outcome"
(( (t1 - t0) < 3000000 )) || t_fail "took $(( (t1 - t0) / 1000 )) ms"

t_case "connection lost mid-transaction: deferred, next message on a new session"
SINK_Q=$(t_sink_start -q RCPT)
t_run "$PROBE" --port "$SINK_Q" --count 3 --sessions 1
t_expect_rc 0
t_expect_eq "$(n_lines 'status=deferred code=0 .*response="connection closed by relay during RCPT TO"')" 3 "deferred outcomes"
t_expect_eq "$(summary connections)" 3 "connections"

t_case "421 in the middle of a transaction: deferred with the 421 text"
SINK_421=$(t_sink_start -Q RCPT)
t_run "$PROBE" --port "$SINK_421" --count 2 --sessions 1
t_expect_rc 0
t_expect_eq "$(n_lines 'status=deferred code=421 ')" 2 "deferred outcomes"

t_case "idle session QUIT after idle_timeout; the next message opens a new one"
t_run "$PROBE" --port "$SINK" --count 3 --sessions 1 --stagger-ms 300 --idle-timeout-ms 100
t_expect_rc 0
t_expect_eq "$(n_lines 'status=sent code=250')" 3 "sent outcomes"
t_expect_eq "$(summary connections)" 3 "connections"
t_run "$PROBE" --port "$SINK" --count 3 --sessions 1 --stagger-ms 300
t_expect_eq "$(n_lines 'status=sent code=250')" 3 "sent outcomes"
t_expect_eq "$(summary connections)" 1 "connections (reused within idle_timeout)"

t_case "relay drops an idle session: the next message opens a new one"
SINK_T=$(t_sink_start -t 1)
t_run "$PROBE" --port "$SINK_T" --count 3 --sessions 1 --stagger-ms 1600
t_expect_rc 0
t_expect_eq "$(n_lines 'status=sent code=250')" 3 "sent outcomes"
t_expect_eq "$(summary connections)" 3 "connections"

t_case "EHLO refused with 5xx: HELO, then sent"
SINK_E=$(t_sink_start -f EHLO)
t_run "$PROBE" --port "$SINK_E" --count 2
t_expect_rc 0
t_expect_eq "$(n_lines 'status=sent code=250')" 2 "sent outcomes"

t_case "non-ASCII address and no SMTPUTF8 on the relay: that recipient bounced locally, alone"
t_run "$PROBE" --port "$SINK" --count 1 --to $'j\xc3\xbcrgen@example.net'
t_expect_rc 0
t_expect_match "$T_OUT" 'status=bounced code=0 enhanced=5\.6\.7 after="RCPT TO" response="553 5\.6\.7 .*SMTPUTF8' "outcome"
t_run "$PROBE" --port "$SINK" --count 1 --to $'j\xc3\xbcrgen@example.net' --to ascii@example.net
t_expect_rc 0
t_expect_match "$T_OUT" 'rcpt=j.*status=bounced code=0 enhanced=5\.6\.7 ' "the non-ASCII recipient"
t_expect_match "$T_OUT" 'rcpt=ascii@example\.net status=sent code=250 ' "its sibling"
t_run "$PROBE" --port "$SINK" --count 1 --from $'j\xc3\xbcrgen@example.org' --to ascii@example.net
t_expect_rc 0
t_expect_match "$T_OUT" 'status=bounced code=0 .*response="the envelope needs SMTPUTF8 \(non-ASCII sender' "a non-ASCII sender fails the message"

t_case "abort (shutdown timeout): every message deferred at once, no leak"
SINK_SLOW=$(t_sink_start -w 10)
t0=${EPOCHREALTIME/./}
t_run "$PROBE" --port "$SINK_SLOW" --count 5 --sessions 2 --abort-after-ms 300
t1=${EPOCHREALTIME/./}
t_expect_rc 0
t_expect_eq "$(n_lines 'status=deferred code=0 .*response="relay client shut down"')" 5 "deferred outcomes"
(( (t1 - t0) < 3000000 )) || t_fail "took $(( (t1 - t0) / 1000 )) ms"

# start_raw NAME BYTES: tests/tools/raw_smtp.py sending BYTES (Python escapes) on
# every connection; sets RAW_PORT, RAW_PID and RAW_LOG (what clients sent).
start_raw() {
    local pf=$T_DIR/raw-$1.port
    RAW_LOG=$T_DIR/raw-$1.log
    "$PY" "$PMX_ROOT/tests/tools/raw_smtp.py" --port-file "$pf" --send "$2" --log "$RAW_LOG" \
        2>"$T_DIR/raw-$1.err" &
    RAW_PID=$!
    await_port RAW_PORT "$pf" raw_smtp.py "$T_DIR/raw-$1.err"
}

stop_raw() { kill "$RAW_PID" 2>/dev/null; wait "$RAW_PID" 2>/dev/null; }

t_case "hostile replies: no code, mismatched multi-line codes, an endless line"
start_raw http 'HTTP/1.1 400 Bad Request\r\n\r\n'
t_run "$PROBE" --port "$RAW_PORT" --count 1
t_expect_rc 0
t_expect_match "$T_OUT" 'status=deferred code=0 .*response="bad reply from relay: reply line without a valid 3-digit code"' "no code"
t_expect_eq "$(wc -c <"$RAW_LOG")" 0 "bytes the client sent"
stop_raw
start_raw mismatch '220-mx.example.com\r\n250 hello\r\n'
t_run "$PROBE" --port "$RAW_PORT" --count 1
t_expect_match "$T_OUT" 'status=deferred code=0 .*response="bad reply from relay: multi-line reply with different codes"' "mismatch"
t_expect_eq "$(wc -c <"$RAW_LOG")" 0 "bytes the client sent"
stop_raw
start_raw long "220 $(printf '%05000d' 0)"
t_run "$PROBE" --port "$RAW_PORT" --count 1
t_expect_match "$T_OUT" 'status=deferred code=0 .*response="bad reply from relay: reply line too long"' "long line"
stop_raw

# ---- the next transaction behind the end of data: tests/tools/pipe_relay.py ----

start_pipe() {
    local pf=$T_DIR/pipe-$1.port
    PIPE_LOG=$T_DIR/pipe-$1.log
    shift
    "$PY" "$PMX_ROOT/tests/tools/pipe_relay.py" --port-file "$pf" --log "$PIPE_LOG" "$@" \
        2>"$T_DIR/pipe.err" &
    PIPE_PID=$!
    await_port PIPE_PORT "$pf" pipe_relay.py "$T_DIR/pipe.err"
}
stop_pipe() { kill "$PIPE_PID" 2>/dev/null; wait "$PIPE_PID" 2>/dev/null; }
pipe_events() { grep -cE -- "$1" "$PIPE_LOG"; }

t_case "PIPELINING: the next transaction's MAIL, RCPT and DATA follow the end of data"
start_pipe ahead
t_run "$PROBE" --port "$PIPE_PORT" --tls none --count 5 --sessions 1
t_expect_rc 0
t_expect_eq "$(n_lines 'status=sent code=250 .*after="end of data"')" 5 "sent outcomes"
t_expect_eq "$(summary connections)" 1 "connections"
# Messages 2-5 went out behind the "." of 1-4; nothing followed the last one's.
t_expect_eq "$(pipe_events '^AHEAD 1 MAIL$')" 4 "groups behind an end of data"
t_expect_eq "$(pipe_events '^ALONE 1$')" 1 "ends of data with nothing behind"
t_expect_eq "$(grep -E '^(RSET|MAIL|DATA|DOT) ' "$PIPE_LOG" | cut -d' ' -f1 | paste -sd' ')" \
    "MAIL DATA DOT MAIL DATA DOT MAIL DATA DOT MAIL DATA DOT MAIL DATA DOT" "command order"
stop_pipe

t_case "the connection drops after an end of data with the next group behind it: that one is sent again"
start_pipe drop --first-dot drop
t_run "$PROBE" --port "$PIPE_PORT" --tls none --count 2 --sessions 1
t_expect_rc 0
t_expect_match "$T_OUT" '^msg=1 rcpt=[^ ]+ status=deferred code=0 .*after="end of data"' "the first: deferred (it may have been delivered)"
t_expect_match "$T_OUT" '^msg=2 rcpt=[^ ]+ status=sent code=250 ' "the second: sent on a new connection"
t_expect_eq "$(summary connections)" 2 "connections"
t_expect_eq "$(pipe_events '^DROP 1$')" 1 "dropped"
t_expect_eq "$(pipe_events '^MSG 2 ')" 1 "stored on connection 2"
stop_pipe

t_case "250 to an end of data, then 421 before the next group's replies: the next one is sent again"
start_pipe late421 --first-dot 250-421
t_run "$PROBE" --port "$PIPE_PORT" --tls none --count 2 --sessions 1
t_expect_rc 0
t_expect_match "$T_OUT" '^msg=1 rcpt=[^ ]+ status=sent code=250 ' "the first: sent"
t_expect_match "$T_OUT" '^msg=2 rcpt=[^ ]+ status=sent code=250 ' "the second: sent on a new connection, not deferred with the 421"
t_expect_eq "$(summary connections)" 2 "connections"
t_expect_eq "$(pipe_events '^MSG 2 ')" 1 "stored on connection 2"
stop_pipe

t_case "421 to an end of data with the next group behind it: that one is sent again"
start_pipe close --first-dot 421
t_run "$PROBE" --port "$PIPE_PORT" --tls none --count 2 --sessions 1
t_expect_rc 0
t_expect_match "$T_OUT" '^msg=1 rcpt=[^ ]+ status=deferred code=421 ' "the first: deferred with the 421"
t_expect_match "$T_OUT" '^msg=2 rcpt=[^ ]+ status=sent code=250 ' "the second: sent on a new connection"
t_expect_eq "$(summary connections)" 2 "connections"
t_expect_eq "$(pipe_events '^MSG 2 ')" 1 "stored on connection 2"
stop_pipe

# ---- TLS, AUTH and extensions: tls_relay.py (aiosmtpd) ----

t_case "test certificates"
make_certs || t_fail "openssl could not make the test CA"

t_case "STARTTLS + AUTH PLAIN, certificate and host name verified: sent"
start_relay starttls localhost "${RELAY_AUTH[@]}"
t_run "$PROBE" --host localhost --port "$RELAY_PORT" --tls starttls --ca-file "$CERTS/ca.crt" \
    "${TLS_AUTH[@]}" --count 3 --sessions 1
t_expect_rc 0
t_expect_eq "$(n_lines 'status=sent code=250 enhanced=2\.0\.0 after="end of data" response="250 2\.0\.0 Ok: queued as tls-relay-')" 3 "sent outcomes"
t_expect_eq "$(relay_events '^AUTH PLAIN user=alice ok tls=yes$')" 1 "AUTH under TLS"
t_expect_eq "$(relay_events '^MAIL <probe@example\.org> SIZE=2048 tls=yes$')" 3 "MAIL under TLS"
t_expect_eq "$(relay_events '^RSET')" 0 "RSET (none after a transaction the relay answered)"
t_expect_eq "$(relay_events 'tls=no' )" 1 "clear-text events (the first EHLO only)"
t_expect_eq "$(relay_events '^EHLO .* tls=no$')" 1 "first EHLO in clear"
t_expect_eq "$(n_files "$RELAY_DIR")" 3 "stored messages"
t_expect_match "$(cat "$RELAY_DIR/msg.1" 2>/dev/null)" '^\.leading dot' "stored message"

t_case "[relay] from a postmux config file (auth_password_file, ca_file, connections_per_worker)"
head -c 32 /dev/urandom | base64 >"$T_DIR/mk"
cat >"$T_DIR/relay.conf" <<EOF
[postgres]
conninfo = host=/nonexistent dbname=postmux
[redis]
address = unix:/nonexistent/redis.sock
[keys]
master_key_file = $T_DIR/mk
[relay]
host = localhost
port = $RELAY_PORT
tls = starttls
tls_verify = yes
ca_file = $CERTS/ca.crt
auth_user = alice
auth_password_file = $T_DIR/pw
connections_per_worker = 1
helo_name = probe.example.org
EOF
: >"$RELAY_LOG"
t_run "$PROBE" --config "$T_DIR/relay.conf" --count 2
t_expect_rc 0
t_expect_eq "$(n_lines 'status=sent code=250')" 2 "sent outcomes"
t_expect_eq "$(summary connections)" 1 "connections"
t_expect_eq "$(relay_events '^EHLO probe\.example\.org tls=yes$')" 1 "EHLO with helo_name under TLS"
t_expect_eq "$(relay_events '^AUTH PLAIN user=alice ok tls=yes$')" 1 "AUTH"

t_case "a 20 MB message through STARTTLS arrives whole"
t_run "$PROBE" --host localhost --port "$RELAY_PORT" --tls starttls --ca-file "$CERTS/ca.crt" \
    "${TLS_AUTH[@]}" --count 1 --size 20000000
t_expect_rc 0
t_expect_eq "$(n_lines 'status=sent code=250')" 1 "sent"
n=$(sed -nE 's/.*queued as tls-relay-([0-9]+).*/\1/p' <<<"$T_OUT")
t_expect_match "$(filler_check "$RELAY_DIR/msg.$n")" '^ok 25[0-9]{4}$' "filler lines"
stop_relay

t_case "AUTH LOGIN when PLAIN is not offered"
start_relay login localhost --login-only "${RELAY_AUTH[@]}"
t_run "$PROBE" --host localhost --port "$RELAY_PORT" --tls starttls --ca-file "$CERTS/ca.crt" \
    "${TLS_AUTH[@]}" --count 1
t_expect_rc 0
t_expect_eq "$(n_lines 'status=sent code=250')" 1 "sent"
t_expect_eq "$(relay_events '^AUTH LOGIN user=alice ok tls=yes$')" 1 "AUTH LOGIN"
stop_relay

t_case "implicit TLS (tls = tls) to 127.0.0.1 (IP in the certificate): sent"
start_relay implicit localhost --mode implicit "${RELAY_AUTH[@]}"
t_run "$PROBE" --port "$RELAY_PORT" --tls tls --ca-file "$CERTS/ca.crt" "${TLS_AUTH[@]}" --count 2
t_expect_rc 0
t_expect_eq "$(n_lines 'status=sent code=250')" 2 "sent outcomes"
t_expect_eq "$(relay_events 'tls=no')" 0 "clear-text events"
stop_relay

t_case "unknown CA: deferred with the certificate error, nothing sent in clear"
start_relay unknownca localhost "${RELAY_AUTH[@]}"
t_run "$PROBE" --host localhost --port "$RELAY_PORT" --tls starttls "${TLS_AUTH[@]}" --count 2
t_expect_rc 0
t_expect_eq "$(n_lines 'status=deferred code=0 .*response="TLS handshake failed: certificate verify failed: unable to get local issuer certificate"')" 2 "deferred outcomes"
t_expect_eq "$(relay_events '^(AUTH|MAIL|RCPT|DATA)')" 0 "AUTH/MAIL/RCPT/DATA seen by the relay"
t_expect_eq "$(n_files "$RELAY_DIR")" 0 "stored messages"

t_case "tls_verify = no accepts the unknown CA"
t_run "$PROBE" --host localhost --port "$RELAY_PORT" --tls starttls --no-verify "${TLS_AUTH[@]}" --count 1
t_expect_rc 0
t_expect_eq "$(n_lines 'status=sent code=250')" 1 "sent"
stop_relay

t_case "certificate for another name: deferred (hostname mismatch)"
start_relay mismatch other "${RELAY_AUTH[@]}"
t_run "$PROBE" --host localhost --port "$RELAY_PORT" --tls starttls --ca-file "$CERTS/ca.crt" \
    "${TLS_AUTH[@]}" --count 1
t_expect_rc 0
t_expect_match "$T_OUT" 'status=deferred code=0 .*response="TLS handshake failed: certificate verify failed: [Hh]ostname mismatch"' "outcome"
t_expect_eq "$(relay_events '^(AUTH|MAIL)')" 0 "AUTH/MAIL seen by the relay"
stop_relay

t_case "wrong password: deferred with the 535"
start_relay badauth localhost "${RELAY_AUTH[@]}"
t_run "$PROBE" --host localhost --port "$RELAY_PORT" --tls starttls --ca-file "$CERTS/ca.crt" \
    --user alice --password-file "$T_DIR/badpw" --count 1
t_expect_rc 0
t_expect_match "$T_OUT" 'status=deferred code=0 .*after="AUTH" response="relay refused AUTH: 535 5\.7\.8' "outcome"
t_expect_eq "$(relay_events '^MAIL')" 0 "MAIL seen by the relay"
stop_relay

t_case "relay refuses STARTTLS: deferred, nothing sent in clear"
start_relay refuse localhost --mode refuse "${RELAY_AUTH[@]}"
t_run "$PROBE" --host localhost --port "$RELAY_PORT" --tls starttls --ca-file "$CERTS/ca.crt" \
    "${TLS_AUTH[@]}" --count 2
t_expect_rc 0
t_expect_eq "$(n_lines 'status=deferred code=0 .*after="STARTTLS" response="relay refused STARTTLS; not sending in clear text: 454 4\.7\.0')" 2 "deferred outcomes"
t_expect_eq "$(relay_events '^STARTTLS refused$')" 2 "STARTTLS attempts"
t_expect_eq "$(relay_events '^(AUTH|MAIL|RCPT|DATA)')" 0 "AUTH/MAIL/RCPT/DATA seen by the relay"
stop_relay

t_case "relay does not offer STARTTLS: deferred, nothing sent in clear"
start_relay absent localhost --mode absent "${RELAY_AUTH[@]}"
t_run "$PROBE" --host localhost --port "$RELAY_PORT" --tls starttls --ca-file "$CERTS/ca.crt" \
    "${TLS_AUTH[@]}" --count 1
t_expect_rc 0
t_expect_match "$T_OUT" 'status=deferred code=0 .*response="relay does not offer STARTTLS' "outcome"
t_expect_eq "$(relay_events '^(AUTH|MAIL|RCPT|DATA)')" 0 "AUTH/MAIL/RCPT/DATA seen by the relay"
stop_relay

t_case "bytes sent after the 220 to STARTTLS are discarded"
start_relay inject localhost --mode inject "${RELAY_AUTH[@]}"
t_run "$PROBE" --host localhost --port "$RELAY_PORT" --tls starttls --ca-file "$CERTS/ca.crt" \
    "${TLS_AUTH[@]}" --count 2 --sessions 1
t_expect_rc 0
t_expect_eq "$(n_lines 'status=sent code=250 .*queued as tls-relay-')" 2 "sent outcomes"
t_expect_match "$T_ERR" 'relay sent 29 bytes after its 220 to STARTTLS; discarded' "client log"
t_expect_eq "$(relay_events '^STARTTLS injected$')" 1 "injections"
t_expect_eq "$(relay_events '^MAIL .*tls=yes$')" 2 "MAIL under TLS"
stop_relay

t_case "PIPELINING with mixed recipients: per-recipient outcomes, only the good one stored"
start_relay pipe localhost --mode absent --pipelining
t_run "$PROBE" --port "$RELAY_PORT" --tls none --count 1 \
    --to good@example.net --to temp1@example.net --to perm1@example.net
t_expect_rc 0
t_expect_match "$T_OUT" '^msg=1 rcpt=good@example\.net status=sent code=250 ' "good"
t_expect_match "$T_OUT" '^msg=1 rcpt=temp1@example\.net status=deferred code=450 enhanced=4\.2\.0 after="RCPT TO" response="450 4\.2\.0 mailbox busy, try later"' "temp"
t_expect_match "$T_OUT" '^msg=1 rcpt=perm1@example\.net status=bounced code=550 enhanced=5\.1\.1 after="RCPT TO"' "perm"
t_expect_match "$(cat "$RELAY_DIR/msg.1" 2>/dev/null)" '^X-Rcpt-To: <good@example\.net>' "stored envelope"
t_expect_eq "$(grep -c '^X-Rcpt-To:' "$RELAY_DIR/msg.1" 2>/dev/null)" 1 "stored recipients"

t_case "PIPELINING, every recipient refused: all bounced, nothing stored"
t_run "$PROBE" --port "$RELAY_PORT" --tls none --count 1 --to perm2@example.net --to perm3@example.net
t_expect_rc 0
t_expect_eq "$(n_lines 'status=bounced code=550 enhanced=5\.1\.1 after="RCPT TO"')" 2 "bounced outcomes"
t_expect_eq "$(n_files "$RELAY_DIR")" 1 "stored messages"

t_case "MAIL FROM refused: every recipient gets that reply"
t_run "$PROBE" --port "$RELAY_PORT" --tls none --count 1 --from perm@example.org \
    --to a@example.net --to b@example.net
t_expect_rc 0
t_expect_eq "$(n_lines 'status=bounced code=550 enhanced=5\.7\.1 after="MAIL FROM" response="550 5\.7\.1 sender refused')" 2 "bounced outcomes"
t_expect_eq "$(n_files "$RELAY_DIR")" 1 "stored messages"

t_case "one session reused for 3 messages: no RSET after a transaction the relay answered"
: >"$RELAY_LOG"
t_run "$PROBE" --port "$RELAY_PORT" --tls none --count 3 --sessions 1
t_expect_rc 0
t_expect_eq "$(n_lines 'status=sent code=250')" 3 "sent outcomes"
t_expect_eq "$(summary connections)" 1 "connections"
t_expect_eq "$(relay_events '^EHLO')" 1 "EHLO"
t_expect_eq "$(relay_events '^RSET')" 0 "RSET"
t_expect_eq "$(grep -E '^(RSET|MAIL|RCPT|DATA)' "$RELAY_LOG" | cut -d' ' -f1 | paste -sd' ')" \
    "MAIL RCPT DATA MAIL RCPT DATA MAIL RCPT DATA" "command order"

# The relay may still hold the sender of a transaction that ended before DATA.
t_case "a transaction ended by refusals: the next one on the session starts with RSET"
: >"$RELAY_LOG"
t_run "$PROBE" --port "$RELAY_PORT" --tls none --count 3 --sessions 1 --to perm4@example.net
t_expect_rc 0
t_expect_eq "$(n_lines 'status=bounced code=550 enhanced=5\.1\.1 after="RCPT TO"')" 3 "bounced outcomes"
t_expect_eq "$(summary connections)" 1 "connections"
t_expect_eq "$(grep -E '^(RSET|MAIL|RCPT)' "$RELAY_LOG" | cut -d' ' -f1 | paste -sd' ')" \
    "MAIL RCPT RSET MAIL RCPT RSET MAIL RCPT" "command order"
stop_relay

t_case "SIZE: larger than the relay's limit is bounced locally, smaller goes out with SIZE="
start_relay size localhost --mode absent --size-limit 1000
t_run "$PROBE" --port "$RELAY_PORT" --tls none --count 1 --size 5000
t_expect_rc 0
t_expect_match "$T_OUT" 'status=bounced code=0 .*response="message of 5000 octets exceeds the relay.s SIZE limit of 1000"' "outcome"
t_expect_eq "$(relay_events '^MAIL')" 0 "MAIL seen by the relay"
t_run "$PROBE" --port "$RELAY_PORT" --tls none --count 1 --size 900
t_expect_eq "$(n_lines 'status=sent code=250')" 1 "sent"
t_expect_eq "$(relay_events '^MAIL <probe@example\.org> SIZE=900 tls=no$')" 1 "MAIL with SIZE"
stop_relay

t_case "SMTPUTF8 offered: a non-ASCII recipient goes out with SMTPUTF8"
start_relay utf8 localhost --mode absent
t_run "$PROBE" --port "$RELAY_PORT" --tls none --count 1 --to $'j\xc3\xbcrgen@example.net'
t_expect_rc 0
t_expect_eq "$(n_lines 'status=sent code=250')" 1 "sent"
t_expect_match "$(cat "$RELAY_LOG")" '^MAIL <probe@example\.org> SIZE=[0-9]+ (BODY=8BITMIME )?SMTPUTF8 tls=no$' "MAIL with SMTPUTF8"
stop_relay

t_done
