#!/usr/bin/env bash
# SMTP submission under attack (docs/submission.md: session limits, AUTH throttling,
# live revocation) against the real postmuxd with two workers, driven by Python's
# smtplib and raw sockets bound to several loopback source addresses:
# - a key revoked while a session is open stops working at that session's next MAIL;
# - parallel AUTH guessing from one address is judged at most 10 times, and a good
#   key is refused once the budget is spent (lookups held back by a table lock);
# - junk commands before AUTH, the AUTH deadline and the session time limit end a
#   session; per-address limits and the reserve hold over both workers; a killed
#   worker's sessions are given back.
# Limits are configured small so the cases stay short; nothing asserts a duration.
source "$(dirname "$0")/lib.sh"
t_setup

PY=/usr/bin/python3
PORT=$(pmx_svc_free_port)
t_conf_set daemon workers 2
t_conf_set submission listen "127.0.0.1:$PORT"
t_conf_set submission auth_requires_tls no

ACME=$($PMX workspace create Acme)
$PMX domain add Acme acme.test --algorithm ed25519 >/dev/null
$PMX domain verify acme.test --skip-dns >/dev/null
K_GOOD=$($PMX apikey create --workspace Acme --name good 2>/dev/null)
K_LIVE=$($PMX apikey create --workspace Acme --name live 2>"$T_DIR/live.err")
LIVE_ID=$(grep -oE 'key_[a-z2-7]{16}' "$T_DIR/live.err" | head -n 1)
STREAM_A="pmx:{$ACME}:jobs"
slen() { t_redis XINFO STREAM "$1" 2>/dev/null | awk 'p { print; exit } /^entries-added$/ { p = 1 }' | grep . || echo 0; }

TOOL=$T_DIR/limits_tool.py
cat >"$TOOL" <<'EOF'
import base64, os, smtplib, socket, sys, threading, time
port, cmd, args = int(sys.argv[1]), sys.argv[2], sys.argv[3:]

def plain(key):
    return base64.b64encode(b"\0apikey\0" + key.encode()).decode()

MSG = b"From: a@acme.test\r\nTo: r@example.com\r\nSubject: %s\r\n\r\nbody\r\n"

def send_one(s, subject):
    try:
        s.sendmail("a@acme.test", ["r@example.com"], MSG % subject.encode())
        return "250"
    except smtplib.SMTPSenderRefused as e:
        return "MAIL %d %s" % (e.smtp_code, e.smtp_error.decode())
    except smtplib.SMTPResponseException as e:
        return "%d %s" % (e.smtp_code, e.smtp_error.decode())

def connect(src="127.0.0.1", timeout=30):
    return smtplib.SMTP("127.0.0.1", port, timeout=timeout, source_address=(src, 0))

def read_until_closed(sock, wait):
    """Everything the server sends until it closes (or wait seconds pass)."""
    sock.settimeout(wait)
    data = b""
    end = time.monotonic() + wait
    while time.monotonic() < end:
        try:
            d = sock.recv(65536)
        except socket.timeout:
            return data, "open"
        except OSError:
            return data, "closed"
        if not d:
            return data, "closed"
        data += d
    return data, "open"

if cmd == "revoke":                       # revoke KEY GO-FILE
    s = connect()
    s.ehlo("client.test")
    s.login("apikey", args[0])
    print("FIRST", send_one(s, "before revoke"), flush=True)
    while not os.path.exists(args[1]):
        time.sleep(0.05)
    print("SECOND", send_one(s, "after revoke"), flush=True)
    code, text = s.docmd("MAIL", "FROM:<a@acme.test>")
    print("AGAIN", code, text.decode())
    s.close()
elif cmd == "guess":                      # guess SRC N GOOD-INDEX GOOD-KEY LOCKED-FILE GO-FILE
    src, n, good, key, locked, go = args[0], int(args[1]), int(args[2]), args[3], args[4], args[5]
    ss = []
    for i in range(n):
        s = connect(src, timeout=120)
        s.ehlo("client.test")
        ss.append(s)
    while not os.path.exists(locked):
        time.sleep(0.05)
    res = [None] * n
    def auth(i):
        k = key if i == good else "pmx_wrong_%d_%s" % (i, os.urandom(6).hex())
        try:
            res[i] = ss[i].docmd("AUTH", "PLAIN " + plain(k))[0]
        except (smtplib.SMTPServerDisconnected, OSError):
            res[i] = "closed"
    # The wrong keys before the good one, all at once; then (once those that can
    # be answered at once are) the good one; then the rest.
    first = [threading.Thread(target=auth, args=(i,)) for i in range(good)]
    for t in first: t.start()
    end = time.monotonic() + 15
    while time.monotonic() < end and sum(1 for r in res[:good] if r is not None) < good - 10:
        time.sleep(0.05)
    tg = threading.Thread(target=auth, args=(good,))
    tg.start()
    time.sleep(0.5)
    rest = [threading.Thread(target=auth, args=(i,)) for i in range(good + 1, n)]
    for t in rest: t.start()
    open(go, "w").close()                  # the caller releases the lock
    for t in first + [tg] + rest: t.join()
    print("GOOD", res[good])
    tally = {}
    for r in res: tally[r] = tally.get(r, 0) + 1
    for k in sorted(tally, key=str): print("CODE", k, tally[k])
elif cmd == "junk":                       # junk N: N pipelined NOOP/RSET/VRFY/HELP before AUTH
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.recv(4096)
    verbs = [b"NOOP", b"RSET", b"VRFY bob", b"HELP"]
    try:
        sock.sendall(b"".join(verbs[i % 4] + b"\r\n" for i in range(int(args[0]))))
    except OSError:
        pass
    data, state = read_until_closed(sock, 30)
    lines = data.decode(errors="replace").splitlines()
    print("ANSWERED", sum(1 for l in lines if l[:3] in ("250", "252", "214")))
    print("LAST", lines[-1] if lines else "")
    print("STATE", state)
elif cmd == "trickle":                    # trickle: one byte every 0.3 s, never AUTH
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.recv(4096)
    data = b""
    end = time.monotonic() + 60
    state = "open"
    line = b"NOOP\r\n"
    i = 0
    sock.settimeout(0.3)
    while time.monotonic() < end:
        try:
            sock.send(line[i % len(line):i % len(line) + 1])
            i += 1
        except OSError:
            state = "closed"
            break
        try:
            d = sock.recv(4096)
            if not d:
                state = "closed"
                break
            data += d
        except socket.timeout:
            pass
        except OSError:
            state = "closed"
            break
    print("GOT", " | ".join(data.decode(errors="replace").splitlines()))
    print("STATE", state)
elif cmd == "lifetime":                   # lifetime KEY: authenticated, NOOP every 0.3 s
    s = connect()
    s.ehlo("client.test")
    s.login("apikey", args[0])
    end = time.monotonic() + 60
    last = ""
    while time.monotonic() < end:
        try:
            code, text = s.noop()
        except smtplib.SMTPServerDisconnected:
            break
        last = "%d %s" % (code, text.decode())
        if code != 250:
            break
        time.sleep(0.3)
    print("LAST", last)
    try:
        s.noop()
        print("STATE open")
    except (smtplib.SMTPServerDisconnected, OSError):
        print("STATE closed")
elif cmd == "hold":                       # hold SRC N FILE: N sessions from SRC, kept until FILE exists
    src, n, stop = args[0], int(args[1]), args[2]
    socks, codes = [], {}
    for i in range(n):
        s = socket.socket()
        s.bind((src, 0))
        s.settimeout(10)
        try:
            s.connect(("127.0.0.1", port))
            g = s.recv(4096).decode(errors="replace")
            c = g[:3] if g else "closed"
            if g.startswith("421"):
                c = "421-addr" if "from your address" in g else "421-full"
        except OSError:
            c = "error"
        codes[c] = codes.get(c, 0) + 1
        socks.append(s)
    print(" ".join("%s=%d" % (k, codes[k]) for k in sorted(codes)), flush=True)
    while not os.path.exists(stop):
        time.sleep(0.1)
elif cmd == "greet":                      # greet SRC: the greeting a new connection gets
    s = socket.socket()
    s.bind((args[0], 0))
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    print(s.recv(4096).decode(errors="replace").strip())
EOF
tool() { "$PY" "$TOOL" "$PORT" "$@"; }

DLOG=$T_DIR/postmuxd.log
start_postmuxd() {
    local l0
    l0=$(wc -l <"$DLOG" 2>/dev/null || echo 0)
    "$PMXD" -c "$T_CONF" >>"$DLOG" 2>&1 &
    D=$!
    t_wait_for 20 "[[ \$(tail -n +$((l0 + 1)) '$DLOG' | grep -c 'submission listening') -ge 2 ]]"
    t_wait_for 20 "[[ \$(tail -n +$((l0 + 1)) '$DLOG' | grep -c 'settings loaded') -ge 2 ]]"
}
stop_postmuxd() {
    kill -TERM "$D"
    wait "$D"
}
touch "$DLOG"

# ---- 1. revocation inside an open session ----------------------------------------------------
t_case "postmuxd serves submission"
start_postmuxd

t_case "a key revoked while a session is open: the session's next MAIL gets 535 5.7.8, nothing relayed"
N0=$(slen "$STREAM_A")
rm -f "$T_DIR/go1"
tool revoke "$K_LIVE" "$T_DIR/go1" >"$T_DIR/revoke.out" 2>&1 &
RP=$!
t_wait_for 20 "grep -q '^FIRST' '$T_DIR/revoke.out'"
t_expect_match "$(cat "$T_DIR/revoke.out")" '^FIRST 250$' "the message before the revoke"
G0=$(grep -c 'settings loaded gen=' "$DLOG")
$PMX apikey revoke "$LIVE_ID" >/dev/null
# Both workers reload their settings on the NOTIFY the revocation sends.
t_wait_for 20 "[[ \$(grep -c 'settings loaded gen=' '$DLOG') -ge $((G0 + 2)) ]]"
touch "$T_DIR/go1"
wait "$RP"
t_expect_match "$(cat "$T_DIR/revoke.out")" '^SECOND MAIL 535 5\.7\.8 .*revoked' "MAIL after the revoke"
t_expect_match "$(cat "$T_DIR/revoke.out")" '^AGAIN 530 5\.7\.0 ' "and the session must AUTH again"
t_expect_eq "$(slen "$STREAM_A")" "$((N0 + 1))" "jobs added (only the one before the revoke)"
t_expect_match "$(cat "$DLOG")" "submission key no longer valid .*key=$LIVE_ID reason=revoked" "logged"

t_case "a key that stays valid keeps working across settings changes in one session"
rm -f "$T_DIR/go2"
tool revoke "$K_GOOD" "$T_DIR/go2" >"$T_DIR/keep.out" 2>&1 &
RP=$!
t_wait_for 20 "grep -q '^FIRST' '$T_DIR/keep.out'"
G0=$(grep -c 'settings loaded gen=' "$DLOG")
$PMX apikey revoke "$LIVE_ID" >/dev/null 2>&1      # already revoked: no change
t_psql "update api_keys set scopes = '{send,read}' where name = 'live'" >/dev/null
t_wait_for 20 "[[ \$(grep -c 'settings loaded gen=' '$DLOG') -ge $((G0 + 2)) ]]"
touch "$T_DIR/go2"
wait "$RP"
t_expect_match "$(cat "$T_DIR/keep.out")" '^SECOND 250$' "the second message"

# ---- 2. parallel guessing ------------------------------------------------------------------------
t_case "90 parallel sessions guessing from one address: at most 10 attempts judged, the good key refused"
L0=$(wc -l <"$DLOG")
rm -f "$T_DIR/locked" "$T_DIR/go3" "$T_DIR/lock.in"
mkfifo "$T_DIR/lock.in"
# Holds api_keys locked so every key lookup waits: the attempts are all in flight at once.
"$PMX_PG_BIN/psql" -XAtq -h "$PMX_PG_HOST" -p "$PMX_PG_PORT" -U "$PMX_PG_USER" -d "$T_DB" \
    <"$T_DIR/lock.in" >"$T_DIR/lock.out" 2>&1 &
LP=$!
exec {LOCKFD}>"$T_DIR/lock.in"
tool guess 127.0.0.5 90 39 "$K_GOOD" "$T_DIR/locked" "$T_DIR/go3" >"$T_DIR/guess.out" 2>&1 &
GP=$!
printf 'BEGIN;\nLOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE;\n\\echo locked\n' >&"$LOCKFD"
t_wait_for 20 "grep -q locked '$T_DIR/lock.out'"
touch "$T_DIR/locked"
t_wait_for 60 "[[ -e '$T_DIR/go3' ]]"
printf 'COMMIT;\n' >&"$LOCKFD"
exec {LOCKFD}>&-
wait "$LP"
wait "$GP"
cat "$T_DIR/guess.out" >&2
t_expect_nomatch "$(cat "$T_DIR/guess.out")" '^GOOD 235' "the good key after the budget was spent"
t_expect_match "$(cat "$T_DIR/guess.out")" '^GOOD 421' "the good key's answer"
judged=$(tail -n +$((L0 + 1)) "$DLOG" | grep -cE 'submission auth (failed|ok) .*client=127\.0\.0\.5 ')
echo "# attempts judged from 127.0.0.5: $judged" >&2
((judged >= 1 && judged <= 10)) || t_fail "$judged AUTH attempts were judged from one address (at most 10)"
t_expect_eq "$(tail -n +$((L0 + 1)) "$DLOG" | grep -c 'submission auth ok .*client=127\.0\.0\.5 ')" 0 "successes"

# ---- 3. no session may be held without logging in --------------------------------------------------
t_case "5000 pipelined NOOP/RSET/VRFY/HELP before AUTH: the first 100 answered, then 421 4.7.0 and closed"
t_run tool junk 5000
t_expect_rc 0
t_expect_match "$T_OUT" '^ANSWERED 100$' "commands answered"
t_expect_match "$T_OUT" '^LAST 421 4\.7\.0 .*Too many commands before authentication' "last reply"
t_expect_match "$T_OUT" '^STATE closed$' "connection"
stop_postmuxd

t_conf_set submission auth_timeout 2s
t_conf_set submission junk_command_limit 20
t_conf_set submission max_session_time 4s
start_postmuxd

t_case "junk_command_limit = 20: the 21st command before AUTH gets 421 4.7.0"
t_run tool junk 100
t_expect_match "$T_OUT" '^ANSWERED 20$' "commands answered"
t_expect_match "$T_OUT" '^STATE closed$' "connection"

t_case "auth_timeout = 2s: a client trickling a byte at a time, never AUTH, gets 421 4.7.0 and is closed"
t_run tool trickle
t_expect_match "$T_OUT" '421 4\.7\.0 .*authentication required in time' "reply"
t_expect_match "$T_OUT" '^STATE closed$' "connection"

t_case "max_session_time = 4s: an authenticated client that keeps talking gets 421 4.4.2 and is closed"
t_run tool lifetime "$K_GOOD"
t_expect_match "$T_OUT" '^LAST 421 4\.4\.2 .*session time limit' "reply"
t_expect_match "$T_OUT" '^STATE closed$' "connection"
stop_postmuxd

# Per-address limits over both workers, and the reserve for new addresses.
t_conf_set submission auth_timeout 60s
t_conf_set submission max_session_time 1h
t_conf_set submission max_connections 100
t_conf_set submission max_connections_per_address 5
t_conf_set submission connection_reserve 40%
start_postmuxd
L0=$(wc -l <"$DLOG")
rm -f "$T_DIR/stop"

t_case "max_connections_per_address = 5 over both workers: 5 sessions from one address, the rest 421"
tool hold 127.0.0.2 10 "$T_DIR/stop" >"$T_DIR/h2.out" 2>&1 &
H2=$!
t_wait_for 30 "grep -q = '$T_DIR/h2.out'"
t_expect_eq "$(cat "$T_DIR/h2.out")" "220=5 421-addr=5" "greetings"
workers_seen=$(tail -n +$((L0 + 1)) "$DLOG" | grep -E 'submission refused a connection client=127\.0\.0\.2 ' |
               grep -oE 'worker\[[0-9]+\]' | sort -u | wc -l)
echo "# 127.0.0.2 was refused by $workers_seen worker(s)" >&2

# max_connections 100, reserve 40%: from 60 sessions on, only addresses with none get one.
t_case "a crowd of 30 addresses x 10 connections stops at the high-water mark; a new address still gets in"
pids=()
for i in $(seq 3 32); do
    tool hold "127.0.0.$i" 10 "$T_DIR/stop" >"$T_DIR/h$i.out" 2>&1 &
    pids+=($!)
done
t_wait_for 90 "[[ \$(cat $T_DIR/h{3..32}.out 2>/dev/null | grep -c =) -ge 30 ]]"
held=$(cat "$T_DIR"/h{2..32}.out | grep -oE '220=[0-9]+' | awk -F= '{ s += $2 } END { print s }')
echo "# sessions held by the crowd: $held" >&2
((held <= 91)) || t_fail "$held sessions open: at most 60 + one per crowd address (31) expected"
t_run tool greet 127.0.0.99
t_expect_match "$T_OUT" '^220 ' "greeting of an address with no session"
t_expect_match "$(tail -n +$((L0 + 1)) "$DLOG")" 'the rest is kept for addresses with none' "the reserve was used"
touch "$T_DIR/stop"
wait "$H2" "${pids[@]}"

t_case "sessions given back: the crowd gone, one address gets its 5 again"
rm -f "$T_DIR/stop"
t_wait_for 20 "[[ \$(tool greet 127.0.0.2 | cut -c1-3) == 220 ]]"
tool hold 127.0.0.2 5 "$T_DIR/stop" >"$T_DIR/h2b.out" 2>&1 &
H2=$!
t_wait_for 30 "grep -q = '$T_DIR/h2b.out'"
t_expect_eq "$(cat "$T_DIR/h2b.out")" "220=5" "greetings"
t_run tool greet 127.0.0.2
t_expect_match "$T_OUT" '^421 4\.7\.0 .*from your address' "a sixth"

t_case "killed workers' sessions are given back to their address (the supervisor clears their counts)"
# All 5 sessions of 127.0.0.2 are open (the holder keeps its sockets); both
# workers die with them, and the new workers must not inherit their counts.
L1=$(wc -l <"$DLOG")
for W in $(pgrep -P "$D"); do kill -KILL "$W"; done
t_wait_for 30 "[[ \$(tail -n +$((L1 + 1)) '$DLOG' | grep -c 'submission listening') -ge 2 ]]"
t_run tool greet 127.0.0.2
t_expect_match "$T_OUT" '^220 ' "a new session of the address after the kill"
touch "$T_DIR/stop"
wait "$H2"

t_stop_postmuxd "$D"
t_done
