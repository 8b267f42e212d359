#!/usr/bin/env bash
# The long-running paths under valgrind (memcheck): the release postmuxd (valgrind
# and ASan do not mix) with one worker, doing a bit of everything a worker does all
# day — composed, multipart and raw jobs signed with RSA and Ed25519, bad jobs,
# submissions over STARTTLS + AUTH, a webhook POSTed with libcurl, /metrics and
# /healthz scraped, a SIGHUP reload that replaces the worker — then SIGTERM. Every
# process (the supervisor and each worker: valgrind follows fork) must end with no
# memory error and nothing definitely or indirectly lost. "Still reachable" blocks
# are libraries' process-wide state (OpenSSL, libcurl) and are not counted.
source "$(dirname "$0")/lib.sh"

VG=$(command -v valgrind) || { t_case "valgrind is installed"; t_fail "no valgrind"; t_done; }
VPMXD=$PMX_ROOT/build/release/bin/postmuxd
[[ -x $VPMXD ]] || t__setup_fail "no release build at $VPMXD: run make first"
t_setup
PY=/usr/bin/python3

CERT=$T_DIR/cert.pem
KEY=$T_DIR/key.pem
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$KEY" -out "$CERT" -days 2 \
    -subj /CN=localhost -addext 'subjectAltName=DNS:localhost,IP:127.0.0.1' >/dev/null 2>&1 ||
    t__setup_fail "openssl req failed"
SPORT=$(pmx_svc_free_port)
MPORT=$(pmx_svc_free_port)
t_conf_set daemon workers 1
t_conf_set daemon metrics_listen "127.0.0.1:$MPORT"
t_conf_set submission listen "127.0.0.1:$SPORT"
t_conf_set submission tls_cert "$CERT"
t_conf_set submission tls_key "$KEY"
t_conf_set delivery retry_base 1s

WS=$($PMX workspace create Acme)
$PMX domain add Acme acme.test --algorithm both >/dev/null
$PMX domain verify acme.test --skip-dns >/dev/null
APIKEY=$($PMX apikey create --workspace Acme --name vg 2>/dev/null)
STREAM="pmx:{$WS}:jobs"

# A webhook endpoint (Python's http.server) that answers 200.
"$PY" "$PMX_ROOT/tests/tools/webhook_receiver.py" --port-file "$T_DIR/hook.port" \
    --log "$T_DIR/hook.log" >>"$T_DIR/hook.out" 2>&1 &
HOOK_PID=$!
t_wait_for 10 "[[ -s $T_DIR/hook.port ]]" || t__setup_fail "webhook receiver did not start"
$PMX webhook add --workspace Acme --url "http://127.0.0.1:$(<"$T_DIR/hook.port")/hook" \
    --events message.sent >/dev/null 2>&1 || t__setup_fail "webhook add failed"

VGLOG=$T_DIR/vg
mkdir -p "$VGLOG"
"$VG" --tool=memcheck --leak-check=full --show-leak-kinds=definite,indirect \
    --errors-for-leak-kinds=definite,indirect --track-origins=no --num-callers=30 \
    --log-file="$VGLOG/%p.log" "$VPMXD" -c "$T_CONF" >>"$T_DIR/postmuxd.log" 2>&1 &
DPID=$!

sent() { t_psql "select count(*) from recipients where status = 'sent'"; }
rows() { t_psql "select count(*) from recipients"; }

t_case "postmuxd runs under valgrind and serves submission"
t_wait_for 120 "grep -q 'submission listening' '$T_DIR/postmuxd.log'"
t_wait_for 60 "curl -fs --max-time 5 http://127.0.0.1:$MPORT/healthz >/dev/null"

t_case "jobs of every kind go out (composed, multipart, raw; bad ones rejected)"
for ((i = 0; i < 40; i++)); do
    t_redis XADD "$STREAM" '*' from "News <news@acme.test>" to "r$i@example.net" \
        subject "Grüße $i" text "hello $i" html "<p>hello $i</p>" >/dev/null
done
for ((i = 0; i < 10; i++)); do
    t_redis XADD "$STREAM" '*' from news@acme.test to "raw$i@example.net" \
        raw "$(printf 'From: news@acme.test\r\nTo: raw%d@example.net\r\nSubject: raw\r\n\r\n.dot line\r\nbody\r\n' "$i")" >/dev/null
done
t_redis XADD "$STREAM" '*' to bad@example.net subject "no from" text t >/dev/null
t_redis XADD "$STREAM" '*' from news@other.test to bad2@example.net subject s text t >/dev/null
t_wait_for 240 "[[ \$(sent) -ge 50 && \$(rows) -ge 52 ]]"
t_expect_eq "$(t_psql "select count(*) from recipients where status = 'rejected'")" 2 "two rejected"

t_case "submissions over STARTTLS + AUTH are queued and delivered"
T_RUN_TIMEOUT=240 t_run "$PY" - "$SPORT" "$CERT" "$APIKEY" <<'EOF'
import smtplib, ssl, sys
port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=cert)
for i in range(5):
    s = smtplib.SMTP("127.0.0.1", port, timeout=120)
    s.starttls(context=ctx)
    s.login("apikey", key)
    msg = ("From: news@acme.test\r\nTo: sub%d@example.net\r\nSubject: submitted %d\r\n\r\nbody\r\n" % (i, i))
    s.sendmail("news@acme.test", ["sub%d@example.net" % i], msg)
    s.quit()
print("submitted 5")
EOF
t_expect_rc 0
t_wait_for 240 "[[ \$(sent) -ge 55 ]]"

t_case "metrics are served and webhooks are posted"
t_expect_match "$(curl -fs --max-time 30 "http://127.0.0.1:$MPORT/metrics")" '^postmux_' "metrics body"
t_wait_for 120 "[[ \$(wc -l <'$T_DIR/hook.log') -ge 55 ]]"

t_case "SIGHUP replaces the worker; the new one delivers too"
kill -HUP "$DPID"
t_wait_for 120 "[[ \$(ls '$VGLOG' | wc -l) -ge 3 ]]"
t_redis XADD "$STREAM" '*' from news@acme.test to after@example.net subject s text t >/dev/null
t_wait_for 240 "[[ \$(sent) -ge 56 ]]"

t_case "SIGTERM: exit 0"
kill -TERM "$DPID"
wait "$DPID"
t_expect_eq "$?" 0 "exit status"
kill -TERM "$HOOK_PID" 2>/dev/null
wait "$HOOK_PID" 2>/dev/null

t_case "valgrind: no memory error and no leak in any process"
nlogs=0
for f in "$VGLOG"/*.log; do
    nlogs=$((nlogs + 1))
    grep -q 'ERROR SUMMARY: 0 errors' "$f" || t_fail "$(basename "$f"): $(grep -m1 'ERROR SUMMARY' "$f")"
    if grep -qE '(definitely|indirectly) lost: [1-9]' "$f"; then
        t_fail "$(basename "$f"): $(grep -E '(definitely|indirectly) lost:' "$f" | sed 's/^==[0-9]*== *//' | paste -sd ';')"
        sed 's/^/  vg| /' "$f" | grep -A30 'are definitely lost\|are indirectly lost' | head -80 >&2
    fi
done
# The supervisor and two workers (the first, and its replacement after SIGHUP).
t_expect_eq "$((nlogs >= 3))" 1 "valgrind logs ($nlogs)"
t_expect_nomatch "$(cat "$VGLOG"/*.log)" 'Invalid (read|write)|uninitialised|Mismatched free' "memory errors"

t_done
