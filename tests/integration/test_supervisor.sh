#!/usr/bin/env bash
# postmuxd's process model (postmuxd(8)) against the real binary: the prefork
# supervisor, worker replacement and throttling, graceful stop, reload without
# refusing connections, hung-worker detection, dying with the supervisor,
# sd_notify (a fake NOTIFY_SOCKET read by a python datagram reader) and Redis /
# Postgres reconnection. Sanitizer reports anywhere in postmuxd's log fail it.
source "$(dirname "$0")/lib.sh"
t_setup

METRICS_PORT=$(pmx_svc_free_port)
NOTIFY_SOCK=$T_DIR/notify.sock
NOTIFY_OUT=$T_DIR/notify.out
LATE_DB=${T_DB}_late
REDIS_DIR=$(dirname "$T_REDIS_SOCK")

t_conf_set daemon workers 3
t_conf_set daemon shutdown_timeout 5s
t_conf_set daemon metrics_listen "127.0.0.1:$METRICS_PORT"
# A database that does not exist yet: Postgres "comes up" when the test creates it.
t_conf_set postgres conninfo "host=$PMX_PG_HOST port=$PMX_PG_PORT user=$PMX_PG_USER dbname=$LATE_DB"
pmx_svc_atexit '"$PMX_PG_BIN/psql" -XAtq -h "$PMX_PG_HOST" -p "$PMX_PG_PORT" -U "$PMX_PG_USER" -d postgres -c "DROP DATABASE IF EXISTS \"$LATE_DB\" WITH (FORCE)" >/dev/null 2>&1'

# ---- helpers ----------------------------------------------------------------

# Live (non-zombie) children of PID, sorted.
kids() {
    ps -o pid= -o stat= --ppid "$1" 2>/dev/null | awk '$2 !~ /^Z/ { print $1 }' | sort -n
}
nkids() { kids "$1" | wc -l; }
alive() {
    local s
    s=$(pmx_svc__stat "$1" 2>/dev/null) || return 1
    [[ ${s%% *} != [ZX] ]]
}
healthz() {
    curl -s -m 3 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$METRICS_PORT/healthz"
}
nlines() { grep -c -- "$1" "$2" 2>/dev/null || true; }

# Our own redis-server on the harness's socket path, so the test can stop and
# restart it (same path) whenever it likes.
MY_REDIS=""
redis_stop() {
    if [[ -n $MY_REDIS ]]; then
        kill "$MY_REDIS" 2>/dev/null
        wait "$MY_REDIS" 2>/dev/null
        MY_REDIS=""
    else
        t_redis shutdown nosave >/dev/null 2>&1
    fi
    t_wait_for 10 '! /usr/bin/redis-cli -s "$T_REDIS_SOCK" ping'
    rm -f "$T_REDIS_SOCK"
}
redis_start() {
    /usr/bin/redis-server --port 0 --unixsocket "$T_REDIS_SOCK" --unixsocketperm 777 \
        --save "" --appendonly no --dir "$REDIS_DIR" >>"$T_DIR/my-redis.log" 2>&1 &
    MY_REDIS=$!
    t_wait_for 10 '[[ $(/usr/bin/redis-cli -s "$T_REDIS_SOCK" ping) == PONG ]]'
}

# A client that connects to the metrics port over and over until STOPFILE exists;
# writes "OK REFUSED" counts to OUTFILE.
connect_loop() {
    local ok=0 refused=0
    while [[ ! -e $2 ]]; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$METRICS_PORT") 2>/dev/null; then
            ok=$((ok + 1))
        else
            refused=$((refused + 1))
        fi
    done
    echo "$ok $refused" >"$1"
}

DLOG=$T_DIR/postmuxd.log
# Starts postmuxd in the background (extra env as NAME=VALUE args); sets D.
start_daemon() {
    env "$@" "$PMXD" -c "$T_CONF" >>"$DLOG" 2>&1 &
    D=$!
}

# ---- config check -----------------------------------------------------------

t_case "--check-config accepts the test config"
t_run "$PMXD" -c "$T_CONF" --check-config
t_expect_rc 0

t_case "--check-config prints FILE:LINE: reason for a bad config and exits 1"
BAD=$T_DIR/bad.conf
{ cat "$T_CONF"; echo "[daemon]"; echo "workers = many"; } >"$BAD"
t_run "$PMXD" -c "$BAD" --check-config
t_expect_rc 1
t_expect_match "$T_ERR" "^$BAD:[0-9]+: .*workers" "error line"

t_case "postmuxd refuses to start on a bad config"
t_run "$PMXD" -c "$BAD"
t_expect_rc 1
t_expect_match "$T_ERR" "$BAD:[0-9]+: " "error line"

# ---- the workers' Postgres connection, alone ------------------------------------

t_case "db_async: queries, parameters, errors, LISTEN/NOTIFY, cancel, reconnect, close"
t_run "$T_TOOLS/db_async_probe" "$T_DB_CONNINFO"
t_expect_rc 0
# (the order of "q9" and "down" depends on how the server's goodbye arrives)
t_expect_eq "$(grep -vE '^(q9 |down$)' <<<"$T_OUT" | paste -sd ' ')" \
    "up 1 q1 2 q2 42 q3 t q4 error 42703 q5 2 q5b error 42703 notify pmx_probe hello q6 3 q7 ordered 20 p1 42 84 prepared 1 p2 error 42703 / error 42703 refused-while-down yes up 2 notify pmx_probe again p3 10 prepared 1 q10 null null closed clean" \
    "probe script"
t_expect_eq "$(grep -c '^down$' <<<"$T_OUT")" 1 "down reported once"
t_expect_match "$T_OUT" '^q9 (null|error 57P01)$' "query in flight when the backend was killed"
t_expect_nomatch "$T_ERR" 'Sanitizer|runtime error:' "probe stderr"

# ---- start-up and sd_notify -------------------------------------------------

redis_stop
/usr/bin/python3 - "$NOTIFY_SOCK" "$NOTIFY_OUT" <<'EOF' &
import os, socket, sys
path, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
with open(out, "a", buffering=1) as f:
    while True:
        for line in s.recv(65536).decode(errors="replace").split("\n"):
            if line:
                f.write(line + "\n")
EOF
NOTIFY_PID=$!
t_wait_for 5 '[[ -S $NOTIFY_SOCK ]]'
: >"$NOTIFY_OUT"

t_case "no READY=1 while Redis and Postgres are down"
start_daemon NOTIFY_SOCKET="$NOTIFY_SOCK" WATCHDOG_USEC=2000000
t_wait_for 10 '[[ $(nkids $D) == 3 ]]'
sleep 3
t_expect_nomatch "$(cat "$NOTIFY_OUT")" '^READY=1' "notify messages"
t_expect_eq "$(healthz)" 503 "GET /healthz"

t_case "still no READY=1 with only Postgres up"
"$PMX_PG_BIN/psql" -XAtq -h "$PMX_PG_HOST" -p "$PMX_PG_PORT" -U "$PMX_PG_USER" -d postgres \
    -c "CREATE DATABASE \"$LATE_DB\"" >/dev/null || t_fail "cannot create $LATE_DB"
t_wait_for 20 'grep -q "postgres connected" "$DLOG"'
sleep 2
t_expect_nomatch "$(cat "$NOTIFY_OUT")" '^READY=1' "notify messages"

t_case "READY=1 once Redis answers too"
redis_start
t_wait_for 15 'grep -q "^READY=1" "$NOTIFY_OUT"'
t_expect_eq "$(healthz)" 200 "GET /healthz"
t_expect_match "$(grep -c 'redis connected' "$DLOG")" '^[3-9]$' "workers logging 'redis connected'"

t_case "STATUS= reports workers and messages/s"
t_wait_for 5 'grep -qE "^STATUS=3 workers, [0-9]+ sent, [0-9.]+ msg/s" "$NOTIFY_OUT"'

t_case "WATCHDOG=1 pings arrive about every second with WATCHDOG_USEC=2s"
w0=$(nlines '^WATCHDOG=1$' "$NOTIFY_OUT")
sleep 4
w1=$(nlines '^WATCHDOG=1$' "$NOTIFY_OUT")
((w1 - w0 >= 3 && w1 - w0 <= 6)) || t_fail "expected 3-6 pings in 4 s, got $((w1 - w0))"

t_case "GET /metrics is 200 (tests/integration/test_metrics.sh checks it), other paths 404, bad requests 400"
t_expect_eq "$(curl -s -m 3 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$METRICS_PORT/metrics")" 200 "/metrics"
t_expect_eq "$(curl -s -m 3 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$METRICS_PORT/nope")" 404 "/nope"
t_expect_eq "$(curl -s -m 3 -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$METRICS_PORT/healthz")" 405 "POST"
# libmicrohttpd (http/server.c) parses the requests: a header line without a colon,
# and an HTTP/1.1 request without Host, are 400.
resp=$(/usr/bin/python3 - "$METRICS_PORT" <<'EOF'
import socket, sys
for req in (b"GET /healthz HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", b"GET /healthz HTTP/1.1\r\n\r\n"):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
    s.sendall(req)
    print(s.recv(200).split(b"\r\n")[0].decode())
EOF
)
t_expect_eq "$resp" "HTTP/1.1 400 Bad Request
HTTP/1.1 400 Bad Request" "malformed requests"

# ---- worker lifecycle -------------------------------------------------------

t_case "workers = 3 runs three workers, children of postmuxd"
t_expect_eq "$(nkids $D)" 3 "worker count"
for p in $(kids $D); do
    t_expect_eq "$(ps -o ppid= -p "$p" | tr -d ' ')" "$D" "parent of $p"
done

t_case "a worker killed with SIGKILL is replaced within 1 s, the others untouched"
before=$(kids $D)
victim=$(head -n1 <<<"$before")
others=$(grep -vx "$victim" <<<"$before")
kill -KILL "$victim"
t_wait_for 1 '[[ $(nkids $D) == 3 ]] && ! kids $D | grep -qx '"$victim"
after=$(kids $D)
t_expect_eq "$(grep -vxF "$others" <<<"$after" | wc -l)" 1 "new workers"
for p in $others; do
    grep -qx "$p" <<<"$after" || t_fail "worker $p was replaced too"
done

t_case "a stopped (SIGSTOP) worker is detected as hung and replaced; WATCHDOG=1 is withheld meanwhile"
t_wait_for 5 '[[ $(healthz) == 200 ]]'
victim=$(kids $D | head -n1)
kill -STOP "$victim"
sleep 4.5
w0=$(nlines '^WATCHDOG=1$' "$NOTIFY_OUT")
sleep 3
w1=$(nlines '^WATCHDOG=1$' "$NOTIFY_OUT")
t_expect_eq "$((w1 - w0))" 0 "watchdog pings while a worker is hung"
t_wait_for 8 '! kids $D | grep -qx '"$victim"' && [[ $(nkids $D) == 3 ]]'
t_expect_match "$(cat "$DLOG")" "worker hung pid=$victim " "hung log line"
w0=$(nlines '^WATCHDOG=1$' "$NOTIFY_OUT")
t_wait_for 5 '(( $(nlines "^WATCHDOG=1$" "$NOTIFY_OUT") > w0 ))'

t_case "Redis stopped and started again: workers reconnect by themselves"
t_wait_for 15 '[[ $(healthz) == 200 ]]'
lost0=$(nlines 'redis connection lost' "$DLOG")
redis_stop
t_wait_for 10 '[[ $(healthz) == 503 ]]'
t_wait_for 5 '(( $(nlines "redis connection lost" "$DLOG") >= lost0 + 3 ))'
sleep 2
redis_start
t_wait_for 15 '[[ $(healthz) == 200 ]]'
t_wait_for 10 '(( $(nlines "redis reconnected" "$DLOG") >= 3 ))'
# Once per state change, not once per attempt.
((  $(nlines 'redis unreachable' "$DLOG") <= 12 )) || t_fail "too many 'redis unreachable' lines: retries are logged once"

t_case "SIGHUP with a broken config: the old workers keep running and the error is logged"
before=$(kids $D)
cp "$T_CONF" "$T_DIR/good.conf"
echo "this is not ini" >>"$T_CONF"
kill -HUP "$D"
t_wait_for 5 'grep -q "reload failed, keeping the running config: $T_CONF:[0-9]*:" "$DLOG"'
sleep 1
t_expect_eq "$(kids $D)" "$before" "workers after a failed reload"
cp "$T_DIR/good.conf" "$T_CONF"

t_case "SIGHUP with workers 3 -> 2: two new workers, the listener never refuses a connection"
before=$(kids $D)
rm -f "$T_DIR/loop.stop" "$T_DIR/loop.out"
connect_loop "$T_DIR/loop.out" "$T_DIR/loop.stop" &
LOOP=$!
sleep 1
t_conf_set daemon workers 2
n_ready=$(nlines '^READY=1$' "$NOTIFY_OUT")
kill -HUP "$D"
t_wait_for 30 'grep -q "reload complete workers=2" "$DLOG"'
t_wait_for 10 '[[ $(nkids $D) == 2 ]]'
sleep 1
touch "$T_DIR/loop.stop"
wait "$LOOP"
read -r ok refused <"$T_DIR/loop.out"
t_expect_eq "$refused" 0 "refused connections (of $((ok + refused)))"
((ok > 20)) || t_fail "the client loop connected only $ok times"
for p in $(kids $D); do
    grep -qx "$p" <<<"$before" && t_fail "old worker $p still runs"
done
t_expect_match "$(cat "$NOTIFY_OUT")" '^RELOADING=1' "RELOADING=1 sent"
(( $(nlines '^READY=1$' "$NOTIFY_OUT") > n_ready )) || t_fail "no READY=1 after the reload"
t_expect_eq "$(healthz)" 200 "GET /healthz after the reload"

t_case "SIGTERM: STOPPING=1, every process gone within shutdown_timeout, exit status 0"
workers=$(kids $D)
kill -TERM "$D"
t_wait_for 6 '! alive $D'
wait "$D"
t_expect_eq "$?" 0 "postmuxd exit status"
for p in $workers; do alive "$p" && t_fail "worker $p outlived postmuxd"; done
t_expect_match "$(cat "$NOTIFY_OUT")" '^STOPPING=1' "STOPPING=1 sent"
t_expect_match "$(cat "$DLOG")" 'stopped exit=0' "final log line"
kill "$NOTIFY_PID" 2>/dev/null

# ---- dying with the supervisor, giving up --------------------------------------

t_case "a worker that does not drain is killed after shutdown_timeout; exit status still 0"
t_conf_set daemon shutdown_timeout 2s
start_daemon
t_wait_for 15 '[[ $(nkids $D) == 2 ]]'
sleep 0.5
stuck=$(kids $D | head -n1)
kill -STOP "$stuck"
t0=${EPOCHREALTIME/./}
kill -TERM "$D"
t_wait_for 6 '! alive $D'
wait "$D"
t_expect_eq "$?" 0 "postmuxd exit status"
elapsed_ms=$(( (${EPOCHREALTIME/./} - t0) / 1000 ))
((elapsed_ms >= 1500 && elapsed_ms <= 4500)) || t_fail "stopped after ${elapsed_ms} ms, want about 2000"
t_expect_match "$(cat "$DLOG")" "worker pid=$stuck did not stop within shutdown_timeout: killing it" "log line"
alive "$stuck" && t_fail "the stuck worker survived"
t_conf_set daemon shutdown_timeout 5s

t_case "SIGKILL of postmuxd: every worker is gone within 1 s"
start_daemon
t_wait_for 15 '[[ $(nkids $D) == 2 ]]'
workers=$(kids $D)
kill -KILL "$D"
wait "$D" 2>/dev/null
t_wait_for 1 'for p in $workers; do alive $p && exit 1; done; exit 0'

t_case "more than 10 worker deaths in 60 s: postmuxd stops and exits 1"
t_conf_set daemon workers 1
start_daemon
for i in $(seq 1 11); do
    t_wait_for 10 '[[ $(nkids $D) == 1 ]]' || break
    victim=$(kids $D)
    sleep 0.3
    kill -KILL "$victim" 2>/dev/null
    t_wait_for 3 '! alive '"$victim"
done
t_wait_for 10 '! alive $D'
wait "$D"
t_expect_eq "$?" 1 "postmuxd exit status"
t_expect_match "$(cat "$DLOG")" 'workers died more than 10 times in 60 s: giving up' "log line"

t_case "no sanitizer report in postmuxd's log"
t_expect_nomatch "$(cat "$DLOG")" 'Sanitizer|runtime error:|LeakSanitizer' "postmuxd log"

t_done
