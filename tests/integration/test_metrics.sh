#!/usr/bin/env bash
# GET /metrics (docs/webhooks.md, issue 7) against the real postmuxd with two workers:
# scraped with curl, checked with Prometheus's own promtool, summed over the
# workers (inbound sessions held open on both), the restarts counter after a
# kill -9 of a worker, recipients counters equal to the recipients rows after a
# delivery run, and queue depth equal to XLEN while a black-hole relay holds the
# jobs in the stream.
# Parts that need the pipeline's calls (workers/pipeline.c ->
# pmx_metrics_count_recipients, workers/hooks.c -> pmx_metrics_set_settings)
# run once those calls are in the source, and say "# skip" until then.
source "$(dirname "$0")/lib.sh"
t_setup
PY=/usr/bin/python3

MPORT=$(pmx_svc_free_port)
SPORT=$(pmx_svc_free_port)
t_conf_set daemon workers 2
t_conf_set daemon shutdown_timeout 3s
t_conf_set daemon metrics_listen "127.0.0.1:$MPORT"
t_conf_set submission listen "127.0.0.1:$SPORT"

ACME=$($PMX workspace create Acme)
BETA=$($PMX workspace create Beta)
$PMX domain add Acme acme.test --algorithm ed25519 >/dev/null
$PMX domain verify acme.test --skip-dns >/dev/null

src_calls() {   # does any source file outside the metrics module call $1?
    grep -rlF --include='*.c' -e "$1" "$PMX_ROOT/workers" "$PMX_ROOT/sql" "$PMX_ROOT/queue" \
        "$PMX_ROOT/smtp" "$PMX_ROOT/dkim" 2>/dev/null | grep -v '/workers/metrics\.c$' | grep -q .
}
skip() { echo "# skip - $1"; }

scrape() { curl -s -m 5 "http://127.0.0.1:$MPORT/metrics"; }
# value NAME{LABELS}: its sample in a fresh scrape ("" when absent).
value() { scrape | awk -v k="$1" '$1 == k { print $2 }'; }
rcpt() { value "postmux_recipients_total{workspace=\"$1\",status=\"$2\"}"; }

DLOG=$T_DIR/postmuxd.log
start_daemon() {
    "$PMXD" -c "$T_CONF" >>"$DLOG" 2>&1 &
    DPID=$!
    t_wait_for 20 "[[ \$(curl -s -m 2 -o /dev/null -w '%{http_code}' http://127.0.0.1:$MPORT/healthz) == 200 ]]"
}
stop_daemon() {
    kill -TERM "$DPID" 2>/dev/null
    wait "$DPID" 2>/dev/null
}
workers() { ps -o pid= -o stat= --ppid "$DPID" | awk '$2 !~ /^Z/ { print $1 }' | sort -n; }

# Holds N submission connections open (banner read) until STOPFILE exists.
HOLD=$T_DIR/hold.py
cat >"$HOLD" <<'EOF'
import os, socket, sys, time
port, n, stop = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
socks = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.recv(512)
    socks.append(s)
print("ready", flush=True)
while not os.path.exists(stop):
    time.sleep(0.05)
EOF
hold_start() {   # hold_start N NAME: sets HOLD_PID
    rm -f "$T_DIR/$2.stop"
    "$PY" "$HOLD" "$SPORT" "$1" "$T_DIR/$2.stop" >"$T_DIR/$2.out" 2>&1 &
    HOLD_PID=$!
    t_wait_for 10 "grep -q ready '$T_DIR/$2.out'"
}
hold_stop() { touch "$T_DIR/$1.stop"; wait "$HOLD_PID" 2>/dev/null; }

start_daemon

# ---- format ---------------------------------------------------------------------------

t_case "GET /metrics: 200, Prometheus text 0.0.4, every family of docs/webhooks.md"
t_run curl -s -m 5 -D "$T_DIR/headers" -o "$T_DIR/m1.txt" "http://127.0.0.1:$MPORT/metrics"
t_expect_rc 0
t_expect_match "$(head -n 1 "$T_DIR/headers")" '^HTTP/1\.1 200' "status"
t_expect_match "$(cat "$T_DIR/headers")" '^Content-Type: text/plain; version=0\.0\.4' "content type"
M=$(cat "$T_DIR/m1.txt")
t_expect_match "$M" '^# TYPE postmux_recipients_total counter$' "recipients family"
t_expect_match "$M" '^# TYPE postmux_queue_depth gauge$' "queue depth family"
t_expect_match "$M" '^# TYPE postmux_smtp_sessions gauge$' "sessions family"
t_expect_match "$M" '^# TYPE postmux_dkim_sign_seconds histogram$' "dkim family"
t_expect_match "$M" '^# TYPE postmux_worker_restarts_total counter$' "restarts family"
t_expect_match "$M" '^postmux_smtp_sessions\{direction="outbound"\} [0-9]+$' "outbound sessions"
t_expect_match "$M" '^postmux_smtp_sessions\{direction="inbound"\} 0$' "inbound sessions"
t_expect_match "$M" '^postmux_dkim_sign_seconds_bucket\{le="\+Inf"\} [0-9]+$' "+Inf bucket"
t_expect_match "$M" '^postmux_dkim_sign_seconds_count [0-9]+$' "histogram count"
t_expect_match "$M" '^postmux_worker_restarts_total 0$' "no restarts yet"
t_expect_eq "$(curl -s -m 5 -o /dev/null -w '%{http_code}' -I "http://127.0.0.1:$MPORT/metrics")" 200 "HEAD"

t_case "promtool check metrics accepts the output"
if command -v promtool >/dev/null; then
    t_run promtool check metrics <"$T_DIR/m1.txt"
    t_expect_rc 0
else
    skip "promtool is not installed (Debian package prometheus; scripts/deps.sh installs it)"
    T_CASE=""
fi

# ---- sessions summed over workers --------------------------------------------------------

t_case "inbound sessions: open connections are counted, on whichever worker they landed"
hold_start 4 h1
t_wait_for 5 "[[ \$(value 'postmux_smtp_sessions{direction=\"inbound\"}') == 4 ]]"
holders=$(ss -Htnp state established "( sport = :$SPORT )" | grep -oE 'pid=[0-9]+' | sort -u | wc -l)
echo "# the 4 connections are held by $holders worker(s)"
hold_stop h1
t_wait_for 5 "[[ \$(value 'postmux_smtp_sessions{direction=\"inbound\"}') == 0 ]]"

t_case "kill -9 of a worker: restarts_total 1, its sessions leave the gauge, counters stay"
hold_start 1 h2
t_wait_for 5 "[[ \$(value 'postmux_smtp_sessions{direction=\"inbound\"}') == 1 ]]"
victim=$(ss -Htnp state established "( sport = :$SPORT )" | grep -oE 'pid=[0-9]+' | head -n 1)
victim=${victim#pid=}
if [[ -z $victim ]] || ! workers | grep -qx "$victim"; then
    t_fail "could not tell which worker holds the connection (ss said '$victim')"
else
    # Nothing was counted yet: the recipients family holds only the zero rows of the
    # workspaces the queue-depth job has published (workers/metrics.c), which it does
    # on its first refresh, about a second or more after the workers are up. Taken
    # earlier, "before" could lack rows that appear later, whatever the kill does.
    t_wait_for 20 "[[ -n \$(value 'postmux_queue_depth{workspace=\"$ACME\"}') && -n \$(value 'postmux_queue_depth{workspace=\"$BETA\"}') ]]"
    before=$(scrape | grep '^postmux_recipients_total' | sort)
    t_expect_eq "$(grep -c "workspace=\"\($ACME\|$BETA\)\"" <<<"$before")" 12 "zero rows before the kill (2 workspaces x 6 statuses)"
    kill -9 "$victim"
    t_wait_for 10 "[[ \$(value postmux_worker_restarts_total) == 1 ]]"
    t_wait_for 10 "[[ \$(value 'postmux_smtp_sessions{direction=\"inbound\"}') == 0 ]]"
    t_wait_for 20 "(( \$(workers | wc -l) == 2 )) && ! workers | grep -qx $victim"
    t_expect_eq "$(scrape | grep '^postmux_recipients_total' | sort)" "$before" "recipients counters"
fi
hold_stop h2
t_run promtool check metrics < <(scrape)
command -v promtool >/dev/null && t_expect_rc 0

# ---- recipients counters = recipients rows -------------------------------------------------

xadd() { local ws=$1; shift; t_redis XADD "pmx:{$ws}:jobs" '*' "$@" >/dev/null; }
# "ws status count" of the recipients rows / of the counters, sorted, zeros left out.
rows_pg() {
    t_psql "select m.workspace_id, r.status, count(*) from recipients r
            join messages m on m.id = r.message_id group by 1, 2" | tr '|' ' ' | sort
}
rows_metrics() {
    scrape | sed -nE 's/^postmux_recipients_total\{workspace="([^"]+)",status="([^"]+)"\} ([0-9]+)$/\1 \2 \3/p' |
        awk '$3 != 0' | sort
}

if src_calls pmx_metrics_count_recipients; then
    t_case "after a delivery run the recipients counters equal the rows in Postgres"
    for i in 1 2 3 4 5; do
        xadd "$ACME" from news@acme.test to "a$i@example.net, b$i@example.net" subject "s$i" text t id "ok$i"
    done
    xadd "$ACME" from news@unverified.test to x@example.net subject s text t id bad-domain
    xadd "$ACME" to x@example.net subject s text t id bad-nofrom
    xadd "$BETA" from news@beta.test to y@example.net subject s text t id beta1
    xadd "$ACME" from news@acme.test to a1@example.net subject dup text t id ok1
    # Done when the stream is empty and 10 recipients are sent; then the counters.
    t_wait_for 30 "[[ \$(t_redis XLEN 'pmx:{$ACME}:jobs') == 0 && \$(t_redis XLEN 'pmx:{$BETA}:jobs') == 0 &&
                      \$(t_psql \"select count(*) from recipients where status = 'sent'\") == 10 ]]"
    t_wait_for 10 "[[ \"\$(rows_metrics)\" == \"\$(rows_pg)\" ]]"
    t_expect_eq "$(rows_metrics)" "$(rows_pg)" "counters vs rows"
    t_expect_eq "$(rcpt "$ACME" sent)" 10 "Acme sent"
    t_run promtool check metrics < <(scrape)
    command -v promtool >/dev/null && t_expect_rc 0
else
    skip "recipients counters vs Postgres: the pipeline does not call pmx_metrics_count_recipients yet"
fi

if src_calls pmx_metrics_observe_dkim; then
    t_case "the DKIM histogram counted the signatures"
    n=$(value postmux_dkim_sign_seconds_count)
    ((n >= 5)) || t_fail "postmux_dkim_sign_seconds_count is '$n', expected >= 5 (5 messages signed)"
    t_expect_eq "$(value 'postmux_dkim_sign_seconds_bucket{le="+Inf"}')" "$n" "+Inf bucket = count"
    t_expect_match "$(value postmux_dkim_sign_seconds_sum)" '^[0-9]+\.[0-9]{9}$' "sum"
else
    skip "DKIM histogram: the pipeline does not call pmx_metrics_observe_dkim yet"
fi

# ---- queue depth ---------------------------------------------------------------------------------

if src_calls pmx_metrics_set_settings; then
    t_case "queue depth: every workspace, 0 when its stream is empty or absent"
    t_wait_for 10 "[[ \$(value 'postmux_queue_depth{workspace=\"$BETA\"}') == 0 ]]"
    GAMMA=$($PMX workspace create Gamma)
    $PMX workspace set Gamma --suspend >/dev/null
    # NOTIFY -> settings reload -> the next refresh (every 5 s) includes it.
    t_wait_for 15 "[[ \$(value 'postmux_queue_depth{workspace=\"$GAMMA\"}') == 0 ]]"
    t_expect_eq "$(value "postmux_queue_depth{workspace=\"$ACME\"}")" "$(t_redis XLEN "pmx:{$ACME}:jobs")" "Acme = XLEN"
    t_psql "delete from workspaces where id = '$GAMMA'" >/dev/null   # no CLI verb deletes one
    t_wait_for 15 "! scrape | grep -q 'workspace=\"$GAMMA\"'"
    stop_daemon

    t_case "queue depth equals XLEN while a relay that never answers holds the jobs"
    # Accepts connections and says nothing: jobs stay in the stream (pending)
    # until the banner timeout (30 s).
    BH_PORT=$(pmx_svc_free_port)
    "$PY" -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(64)
held = []
while True:
    c, _ = s.accept(); held.append(c)
' "$BH_PORT" >/dev/null 2>&1 &
    BH_PID=$!
    pmx_svc_atexit "kill $BH_PID 2>/dev/null"
    t_conf_set relay port "$BH_PORT"
    t_redis DEL "pmx:{$ACME}:jobs" >/dev/null
    start_daemon
    for i in 1 2 3 4 5 6 7; do
        xadd "$ACME" from news@acme.test to "h$i@example.net" subject s text t id "hold$i"
    done
    t_wait_for 15 "[[ \$(value 'postmux_queue_depth{workspace=\"$ACME\"}') == 7 ]]"
    t_expect_eq "$(t_redis XLEN "pmx:{$ACME}:jobs")" 7 "XLEN"
    if src_calls PMX_METRICS_OUTBOUND; then
        n=$(value 'postmux_smtp_sessions{direction="outbound"}')
        ((n >= 1)) || t_fail "outbound sessions '$n' while the relay holds sessions open"
    else
        skip "outbound sessions: nothing calls pmx_metrics_sessions_* with PMX_METRICS_OUTBOUND yet"
    fi
    t_run promtool check metrics < <(scrape)
    command -v promtool >/dev/null && t_expect_rc 0
    kill "$BH_PID" 2>/dev/null
else
    skip "queue depth: workers/hooks.c does not call pmx_metrics_set_settings yet"
fi
stop_daemon

t_case "no sanitizer report in postmuxd's log; workers stopped with every handle closed"
t_expect_nomatch "$(cat "$DLOG")" 'AddressSanitizer|runtime error|LeakSanitizer' "log"
t_expect_nomatch "$(cat "$DLOG")" 'closed with handles open' "log"
t_expect_match "$(cat "$DLOG")" 'drained; exiting' "a worker drained"
t_done
