#!/usr/bin/env bash
# SMTP submission under a memory attack (docs/submission.md "Memory"): one worker with
# a small [submission] memory_budget, several sessions streaming big DATA at once. The
# budget bites ("452 4.3.1" for some, with a log line and the metric), the others are
# queued, the worker's peak RSS stays bounded (budget + one message in hand-off +
# slack, far below what the sessions sent), and a normal client is served while the
# big messages are held, its message relayed. No timing is asserted.
source "$(dirname "$0")/lib.sh"
t_setup
PY=/usr/bin/python3

MIB=$((1024 * 1024))
NSESS=8                     # sessions streaming at once
MSG=$((3 * MIB + MIB / 2))  # octets each one sends (under max_message_size)
PORT=$(pmx_svc_free_port)
MPORT=$(pmx_svc_free_port)
t_conf_set daemon workers 1
t_conf_set daemon metrics_listen "127.0.0.1:$MPORT"
t_conf_set submission listen "127.0.0.1:$PORT"
t_conf_set submission auth_requires_tls no
t_conf_set submission max_message_size 4M
t_conf_set submission memory_budget 8M

ACME=$($PMX workspace create Acme)
$PMX domain add Acme acme.test --algorithm ed25519 >/dev/null
$PMX domain verify acme.test --skip-dns >/dev/null
KEY=$($PMX apikey create --workspace Acme --name smtp 2>/dev/null)

TOOL=$T_DIR/flood.py
cat >"$TOOL" <<'EOF'
import base64, os, smtplib, socket, sys, time
port, key, cmd = int(sys.argv[1]), sys.argv[2], sys.argv[3]
args = sys.argv[4:]

def login():
    s = smtplib.SMTP("127.0.0.1", port, timeout=120)
    s.ehlo("client.test")
    s.login("apikey", key)
    return s

if cmd == "flood":            # flood N OCTETS GO-FILE: N DATA at once, ended after GO-FILE exists
    n, size, go = int(args[0]), int(args[1]), args[2]
    ss = []
    for i in range(n):
        s = login()
        s.mail("big@acme.test")
        s.rcpt("r%d@example.com" % i)
        code, _ = s.docmd("DATA")
        assert code == 354, code
        s.send(b"From: big@acme.test\r\nTo: r@example.com\r\nSubject: big %d\r\n\r\n" % i)
        ss.append(s)
    line = b"x" * 998 + b"\r\n"
    chunk = line * 64
    sent = 0
    while sent < size:              # round robin: every session grows at once
        for s in ss:
            s.send(chunk)
        sent += len(chunk)
    print("STREAMED", flush=True)
    while not os.path.exists(go):
        time.sleep(0.05)
    for i, s in enumerate(ss):
        s.send(b".\r\n")
        code, text = s.getreply()
        print("END", i, code, text.decode().split(" ")[0] if code != 250 else "", flush=True)
        s.quit()
elif cmd == "many":           # many SUBJECT N WS: N recipients (an XADD head over the headroom)
    n, ws = int(args[1]), args[2]
    rcpts = ["recipient-number-%04d@example.com" % i for i in range(n)]
    s = login()
    s.sendmail("a@acme.test", rcpts,
               b"From: a@acme.test\r\nX-Workspace-Id: " + ws.encode() + b"\r\nTo: list@example.com\r\n"
               b"Subject: " + args[0].encode() + b"\r\n\r\nmany\r\n")
    print("250")
    s.quit()
elif cmd == "send":           # send SUBJECT: one small message
    s = login()
    try:
        s.sendmail("a@acme.test", ["r@example.com"],
                   b"From: a@acme.test\r\nTo: r@example.com\r\nSubject: " + args[0].encode() +
                   b"\r\n\r\nhello\r\n")
        print("250")
    except smtplib.SMTPResponseException as e:
        print(e.smtp_code, e.smtp_error.decode())
    s.quit()
EOF
tool() { "$PY" "$TOOL" "$PORT" "$KEY" "$@"; }

# The worker's peak RSS in KiB (VmHWM), and its reset (clear_refs 5, Linux >= 4.0).
worker_pid() { pgrep -P "$D" | head -n 1; }
hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

DLOG=$T_DIR/postmuxd.log
# ASan keeps freed blocks in a quarantine (RSS that is no longer the worker's): none here.
ASAN_OPTIONS="$ASAN_OPTIONS:quarantine_size_mb=0:thread_local_quarantine_size_kb=0" \
    "$PMXD" -c "$T_CONF" >>"$DLOG" 2>&1 &
D=$!
t_case "postmuxd serves submission with one worker"
t_wait_for 30 "[[ \$(grep -c 'settings loaded' '$DLOG') -ge 1 ]] && grep -q 'submission listening' '$DLOG'"
t_wait_for 30 "[[ \$(tool send warmup) == 250 ]]"
W=$(worker_pid)
[[ -n $W ]] || t_fail "no worker process under postmuxd $D"

t_case "a message whose XADD head outgrows the 4 KiB headroom (300 recipients) is queued whole"
t_run tool many "many rcpts" 300 "$ACME"
t_expect_eq "$T_OUT" "250" "reply"
t_wait_for 30 "grep -lq -- '^Subject: many rcpts' $T_SINK_DIR/* 2>/dev/null"
F1=$(grep -l -- '^Subject: many rcpts' "$T_SINK_DIR"/* 2>/dev/null | head -n 1)
t_expect_match "$(tr -d '\r' <"$F1")" '^many$' "body"
t_expect_nomatch "$(cat "$F1")" 'X-Workspace-Id' "X-Workspace-Id removed"
t_wait_for 30 "[[ \$(t_psql \"select count(*) from recipients where status = 'sent' and address like 'recipient-number-%'\") -eq 300 ]]"

t_case "8 sessions stream 3.5 MB each into an 8 MiB budget: held data stays bounded"
RSS0=$(rss_kib "$W")
echo 5 >"/proc/$W/clear_refs" 2>/dev/null || true
GO=$T_DIR/go
"$PY" "$TOOL" "$PORT" "$KEY" flood "$NSESS" "$MSG" "$GO" >"$T_DIR/flood.out" 2>"$T_DIR/flood.err" &
F=$!
t_wait_for 120 "grep -q STREAMED '$T_DIR/flood.out'" || cat "$T_DIR/flood.err" >&2

t_case "a normal client is served while the big messages are held, and its message is relayed"
t_run tool send "while held"
t_expect_eq "$T_OUT" "250" "small message"
t_wait_for 30 "grep -lq -- '^Subject: while held' $T_SINK_DIR/* 2>/dev/null"

t_case "the worker's peak RSS grew by less than the budget + slack while the data streamed"
HWM=$(hwm_kib "$W")
GROWTH=$(((HWM - RSS0) / 1024))
SENT=$((NSESS * MSG / MIB))
echo "# worker $W: RSS before $((RSS0 / 1024)) MiB, peak $((HWM / 1024)) MiB (+$GROWTH MiB) while $SENT MiB were sent"
# The 8 MiB budget + read buffers, allocator and ASan slack; without the budget the
# worker holds all 28 MB the sessions sent.
((GROWTH < 16)) || t_fail "peak RSS grew by $GROWTH MiB (budget 8 MiB, $SENT MiB sent)"

t_case "the big sessions end: some 452 4.3.1, the rest queued"
touch "$GO"
wait "$F"
t_expect_eq "$?" 0 "flood client exit ($(tail -n 3 "$T_DIR/flood.err" | tr '\n' ' '))"
N452=$(grep -c '^END [0-9]* 452 4.3.1' "$T_DIR/flood.out")
N250=$(grep -c '^END [0-9]* 250' "$T_DIR/flood.out")
((N452 >= 1)) || t_fail "no session got 452 4.3.1: $(tr '\n' ' ' <"$T_DIR/flood.out")"
((N250 >= 1)) || t_fail "no big message was queued: $(tr '\n' ' ' <"$T_DIR/flood.out")"
t_expect_eq "$((N452 + N250))" "$NSESS" "every session answered 250 or 452"
t_expect_match "$(cat "$DLOG")" 'submission memory budget refused .* budget=8388608' "log line"
t_run curl -s "http://127.0.0.1:$MPORT/metrics"
t_expect_match "$T_OUT" '^postmux_submission_memory_refusals_total [1-9]' "metric"

t_case "the queued big messages were delivered"
t_wait_for 60 "[[ \$(grep -l -- '^Subject: big' $T_SINK_DIR/* 2>/dev/null | wc -l) -ge $N250 ]]"

t_stop_postmuxd "$D"
t_done
