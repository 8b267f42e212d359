#!/usr/bin/env bash
# The delivery pipeline when things go wrong (docs/queue.md, docs/delivery.md; issue 4): a relay that
# answers 4xx, 5xx or is not there, queue lifetime, poison jobs, a worker killed
# mid-run, Redis restarted and Postgres connections cut. Nothing may be lost.
source "$(dirname "$0")/lib.sh"
t_setup

t_conf_set daemon workers 2
t_conf_set delivery retry_base 1s
t_conf_set delivery retry_max_interval 2s
t_conf_set delivery reclaim_idle 3s

WS=$($PMX workspace create Acme)
$PMX domain add Acme acme.test --algorithm ed25519 >/dev/null
$PMX domain verify acme.test --skip-dns >/dev/null
STREAM="pmx:{$WS}:jobs"

xadd() { t_redis XADD "$STREAM" '*' from news@acme.test subject s text t "$@"; }
rcpt() { t_psql "select r.status || ':' || r.attempts from recipients r join messages m
                 on m.id = r.message_id where m.client_id = '$1'"; }
start_daemon() { "$PMXD" -c "$T_CONF" >>"$T_DIR/postmuxd.log" 2>&1 & DPID=$!; }
stop_daemon() { kill -TERM "$DPID" 2>/dev/null; wait "$DPID" 2>/dev/null; }
relay_port() { t_conf_set relay port "$1"; }

t_case "4xx to RCPT: deferred with the reply and a retry scheduled; sent once the relay takes it"
SINK_4XX=$(t_sink_start -r RCPT)
relay_port "$SINK_4XX"
start_daemon
xadd to a@example.net id d1 >/dev/null
t_wait_for 40 "[[ \$(rcpt d1) == deferred:* ]]"
t_expect_match "$(t_psql "select last_response from recipients")" '^4[0-9][0-9]' "last_response"
t_expect_match "$(t_psql "select next_attempt_at > now() - interval '1 minute' from recipients")" t "next_attempt_at"
t_expect_match "$(t_psql "select count(*) from events where type = 'message.deferred'")" '^[1-9]' "deferred events"
stop_daemon
# With retry_base 1s the job may already be due and moved back to the stream when the
# daemon stops: it must be held exactly once, in the schedule or in the stream.
held=$(( $(t_redis ZCARD "pmx:{$WS}:retry") + $(t_redis XLEN "$STREAM") ))
t_expect_eq "$held" 1 "the job is held once (retry schedule or stream)"
relay_port "$T_SINK_PORT"
start_daemon
t_wait_for 40 "[[ \$(rcpt d1) == sent:* ]]"
t_expect_match "$(rcpt d1)" '^sent:([2-9]|[1-9][0-9]+)$' "sent after more than one attempt"
t_expect_eq "$(t_psql "select count(*) from messages where client_id = 'd1'")" 1 "one message row"
t_expect_eq "$(grep -l 'X-Rcpt-Args: <a@example.net>' "$T_SINK_DIR"/* 2>/dev/null | wc -l)" 1 "delivered once"
stop_daemon

t_case "5xx to RCPT: bounced with the reply, not retried"
SINK_5XX=$(t_sink_start -f RCPT)
relay_port "$SINK_5XX"
start_daemon
xadd to b@example.net id b1 >/dev/null
t_wait_for 40 "[[ \$(rcpt b1) == bounced:1 ]]"
sleep 2
t_expect_eq "$(rcpt b1)" bounced:1 "still one attempt"
t_expect_eq "$(t_redis ZCARD "pmx:{$WS}:retry")" 0 "no retry scheduled"
t_expect_match "$(t_psql "select r.last_response from recipients r join messages m on m.id = r.message_id
                          where m.client_id = 'b1'")" '^5[0-9][0-9]' "last_response"
stop_daemon

t_case "nothing listening: deferred; max_queue_lifetime passed: bounced expired"
DEAD=$(pmx_svc_free_port)
relay_port "$DEAD"
t_conf_set delivery max_queue_lifetime 3s
start_daemon
xadd to c@example.net id e1 >/dev/null
t_wait_for 30 "[[ \$(rcpt e1) == deferred:* ]]"
t_wait_for 40 "[[ \$(rcpt e1) == bounced:* ]]"
t_expect_eq "$(t_psql "select e.detail from events e join messages m on m.id = e.message_id
                       where m.client_id = 'e1' and e.type = 'message.bounced'")" expired "event detail"
t_expect_eq "$(t_redis ZCARD "pmx:{$WS}:retry")" 0 "nothing left scheduled"
stop_daemon
t_conf_set delivery max_queue_lifetime 5d
relay_port "$T_SINK_PORT"

t_case "relay through STARTTLS + AUTH to aiosmtpd: verified certificate sent, unknown CA deferred"
source "$(dirname "$0")/relay_lib.sh"
make_certs || t_fail "openssl could not make the test CA"
printf 's3cret pw\n' >"$T_DIR/pw"
start_relay tls localhost --user alice --password 's3cret pw'
t_conf_set relay host localhost
relay_port "$RELAY_PORT"
t_conf_set relay tls starttls
t_conf_set relay auth_user alice
t_conf_set relay auth_password_file "$T_DIR/pw"
t_conf_set relay ca_file "$CERTS/ca.crt"
start_daemon
xadd to tls@example.net id tls1 >/dev/null
t_wait_for 40 "[[ \$(rcpt tls1) == sent:1 ]]"
t_expect_eq "$(relay_events '^AUTH PLAIN user=alice ok tls=yes$')" 1 "AUTH under TLS"
t_expect_eq "$(relay_events '^MAIL .* tls=no')" 0 "nothing in clear"
stop_daemon
t_conf_set relay ca_file ""
: >"$RELAY_LOG"
start_daemon
xadd to tls2@example.net id tls2 >/dev/null
t_wait_for 40 "[[ \$(rcpt tls2) == deferred:* ]]"
t_expect_match "$(t_psql "select r.last_response from recipients r join messages m on m.id = r.message_id
                          where m.client_id = 'tls2'")" 'certificate|verify' "reason"
t_expect_eq "$(relay_events '^(MAIL|RCPT|DATA)')" 0 "nothing sent"
stop_daemon

t_case "one recipient sent, one deferred: the retries relay only the deferred one"
t_conf_set relay ca_file "$CERTS/ca.crt"
: >"$RELAY_LOG"
start_daemon
xadd to "okp@example.net, temp9@example.net" id part1 >/dev/null
r_of() { t_psql "select r.status || ':' || r.attempts from recipients r join messages m
                 on m.id = r.message_id where m.client_id = 'part1' and r.address = '$1'"; }
t_wait_for 60 "[[ \$(r_of temp9@example.net) == deferred:[3-9] ]]"
t_expect_eq "$(r_of okp@example.net)" sent:1 "the accepted recipient"
t_expect_eq "$(relay_events '^RCPT <okp@example.net>')" 1 "RCPTs for the sent recipient"
t_expect_eq "$(( $(relay_events '^RCPT <temp9@example.net>') >= 3 ))" 1 "RCPTs for the deferred one"
stop_daemon

t_case "the relay refuses one recipient (5xx): it bounces alone, a quoted local part and the rest are sent"
: >"$RELAY_LOG"
start_daemon
xadd to 'okb@example.net, perm7@example.net, "q b"@example.net' id part2 >/dev/null
r2_of() { t_psql "select r.status || ':' || r.attempts from recipients r join messages m
                  on m.id = r.message_id where m.client_id = 'part2' and r.address = '$1'"; }
t_wait_for 40 "[[ \$(r2_of perm7@example.net) == bounced:1 && \$(r2_of okb@example.net) == sent:1 ]]"
t_expect_eq "$(r2_of okb@example.net)" sent:1 "the sibling"
t_expect_eq "$(r2_of '"q b"@example.net')" sent:1 "the quoted local part"
t_expect_match "$(t_psql "select r.last_response from recipients r join messages m on m.id = r.message_id
                          where m.client_id = 'part2' and r.address = 'perm7@example.net'")" \
    '^550 5\.1\.1 ' "the relay's reply"
t_expect_eq "$(relay_events '^RCPT <"q b"@example.net> tls=yes$')" 1 "RCPT TO with the quoted local part"
t_expect_eq "$(relay_events '^DATA ')" 1 "one message for all three"
stop_daemon
stop_relay

t_case "a relay without SMTPUTF8: a non-ASCII recipient fails alone, its siblings are sent"
start_relay noutf8 localhost --user alice --password 's3cret pw' --no-smtputf8
relay_port "$RELAY_PORT"
start_daemon
xadd to 'oku2@example.net' bcc "$(printf 'j\xc3\xbcrgen@example.net')" id utf2 >/dev/null
u_of() { t_psql "select string_agg(r.status || '=' || r.last_response, ' | ' order by r.address)
                 from recipients r join messages m on m.id = r.message_id where m.client_id = '$1'"; }
t_wait_for 40 "[[ \$(u_of utf2) == *bounced* && \$(u_of utf2) == *sent* ]]"
t_expect_match "$(u_of utf2)" '^bounced=553 5\.6\.7 .*SMTPUTF8 \| sent=250 ' "the non-ASCII recipient bounced alone, its sibling sent"
t_expect_eq "$(relay_events '^RCPT <oku2@example.net> tls=yes$')" 1 "the sibling's RCPT TO"
t_expect_eq "$(relay_events '^RCPT <j')" 0 "no RCPT TO for the non-ASCII one"
stop_daemon
stop_relay
t_conf_set relay host 127.0.0.1
t_conf_set relay tls none
t_conf_set relay auth_user ""
t_conf_set relay auth_password_file ""
relay_port "$T_SINK_PORT"

t_case "a job delivered 5 times without an outcome moves to the dead stream, rejected poison"
t_redis XGROUP CREATE "$STREAM" postmux 0 MKSTREAM >/dev/null 2>&1
PID_ID=$(xadd to p@example.net id poison1)
t_redis XREADGROUP GROUP postmux ghost COUNT 1 STREAMS "$STREAM" '>' >/dev/null
for i in 1 2 3 4; do t_redis XCLAIM "$STREAM" postmux ghost 0 "$PID_ID" >/dev/null; done
xadd to ok@example.net id after-poison >/dev/null
start_daemon
t_wait_for 40 "[[ \$(rcpt poison1) == rejected:* ]]"
t_expect_eq "$(t_psql "select e.detail from events e join messages m on m.id = e.message_id
                       where m.client_id = 'poison1'")" poison "reason"
t_expect_eq "$(t_redis XLEN "pmx:{$WS}:dead")" 1 "dead stream"
t_expect_match "$(t_redis XRANGE "pmx:{$WS}:dead" - +)" 'poison1' "the job is kept there"
t_wait_for 30 "[[ \$(rcpt after-poison) == sent:1 ]]"
t_expect_eq "$(grep -l 'X-Rcpt-Args: <p@example.net>' "$T_SINK_DIR"/* 2>/dev/null | wc -l)" 0 "never relayed"

t_case "kill -9 of a worker while 5,000 jobs flow: every job delivered and recorded"
N=5000
for ((i = 0; i < N; i++)); do
    printf 'XADD %s * from news@acme.test to k%d@example.net subject s text t id k%d\n' "$STREAM" "$i" "$i"
done | t_redis >/dev/null
sleep 1
WPID=$(pgrep -P "$DPID" | head -n 1)
kill -9 "$WPID"
t_wait_for 180 "[[ \$(t_psql \"select count(*) from recipients where status = 'sent' and address like 'k%'\") == $N ]]"
t_expect_eq "$(t_psql "select count(*) from recipients where address like 'k%'")" $N "one row per recipient"
t_expect_eq "$(t_psql "select count(*) from messages where client_id like 'k%'")" $N "one message per job"
t_wait_for 30 "[[ \$(t_redis XPENDING '$STREAM' postmux | head -n 1) == 0 ]]"
t_expect_eq "$(t_redis XPENDING "$STREAM" postmux | head -n 1)" 0 "no pending entries"
DELIVERED=$(cat "$T_SINK_DIR"/* | grep -c '^X-Rcpt-Args: <k')
t_expect_eq "$((DELIVERED >= N))" 1 "every job reached the relay ($DELIVERED deliveries)"
echo "# kill -9 run: $N jobs, $DELIVERED deliveries, $((DELIVERED - N)) duplicates" >&2
# The duplicate window (docs/delivery.md): only what the killed worker had relayed and not
# recorded, at most 4 x connections_per_worker (16 by default) jobs at the relay and twice
# as many in the record room.
t_expect_eq "$((DELIVERED - N <= 12 * 16))" 1 "duplicates within the window ($((DELIVERED - N)))"

t_case "Redis restarted and Postgres connections cut mid-run: nothing lost"
N2=1000
for ((i = 0; i < N2; i++)); do
    printf 'XADD %s * from news@acme.test to m%d@example.net subject s text t id m%d\n' "$STREAM" "$i" "$i"
done | t_redis >/dev/null
t_redis CONFIG SET appendonly yes >/dev/null
t_wait_for 10 "[[ \$(t_redis INFO persistence | grep -c 'aof_rewrite_in_progress:0') == 1 && \$(t_redis INFO persistence | grep -c 'aof_enabled:1') == 1 ]]"
sleep 0.3
t_redis CONFIG SET appendfsync always >/dev/null
# Restart: DEBUG RESTART is not allowed everywhere; shut down with a final write
# and start the same server again on the same socket through the harness.
REDIS_CONF_DIR=$(dirname "$T_REDIS_SOCK")
t_redis SHUTDOWN SAVE >/dev/null 2>&1
sleep 1
/usr/bin/redis-server --port 0 --unixsocket "$T_REDIS_SOCK" --unixsocketperm 777 \
    --appendonly yes --dir "$REDIS_CONF_DIR" >>"$T_DIR/redis2.log" 2>&1 &
R2=$!
t_wait_for 10 "[[ \$(t_redis ping) == PONG ]]"
sleep 1
t_psql "select pg_terminate_backend(pid) from pg_stat_activity
        where datname = current_database() and pid <> pg_backend_pid()" >/dev/null
t_wait_for 90 "[[ \$(t_psql \"select count(*) from recipients where status = 'sent' and address like 'm%'\") == $N2 ]]"
t_expect_eq "$(t_psql "select count(*) from messages where client_id like 'm%'")" $N2 "one message per job"
t_wait_for 30 "[[ \$(t_redis XPENDING '$STREAM' postmux | head -n 1) == 0 ]]"
t_expect_eq "$(t_redis XPENDING "$STREAM" postmux | head -n 1)" 0 "no pending entries"

t_case "SIGTERM while jobs flow: exit 0 in time; after a restart every job delivered exactly once"
N3=1000
for ((i = 0; i < N3; i++)); do
    printf 'XADD %s * from news@acme.test to drain%d@example.net subject s text t id drain%d\n' "$STREAM" "$i" "$i"
done | t_redis >/dev/null
dsent() { t_psql "select count(*) from recipients where status = 'sent' and address like 'drain%'"; }
t_wait_for 60 "[[ \$(dsent) -ge 100 ]]"
T1=$EPOCHREALTIME
LOG0=$(cat "$T_DIR"/postmuxd*.log | wc -l)
kill -TERM "$DPID"
wait "$DPID"
RC=$?
ELAPSED=$(awk -v a="$T1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%d", b - a }')
t_expect_eq "$RC" 0 "exit status"
t_expect_eq "$((ELAPSED < 30))" 1 "stopped within shutdown_timeout (${ELAPSED}s)"
DONE=$(dsent)
LEFT=$(t_redis XLEN "$STREAM")
PEND=$(t_redis XPENDING "$STREAM" postmux | head -n 1)
echo "# SIGTERM mid-run: $DONE of $N3 sent, $LEFT left in the stream, $PEND pending" >&2
# Jobs in flight finish. An entry still pending on a worker when its drain ends (read
# with an answer that was lost, released) is given back to the group with an idle time
# of a day, so the next daemon takes it at once (docs/queue.md "The sweep"). Usually none is
# left. What must hold below: nothing lost, nothing delivered twice.
GIVEN=$(($(t_redis XPENDING "$STREAM" postmux IDLE 3600000 - + 10000 | wc -l) / 4))
# Only a Redis that stayed away through the drain's wait for it (5 s) may keep them
# from being given back; they are then reclaimed after reclaim_idle instead.
if [[ $GIVEN != "$PEND" ]] && cat "$T_DIR"/postmuxd*.log | tail -n +$((LOG0 + 1)) | grep -q 'redis connection lost'; then
    echo "# $((PEND - GIVEN)) pending entries not given back: Redis was away during the drain" >&2
else
    t_expect_eq "$GIVEN" "$PEND" "entries left pending were given back to the group"
fi
if [[ $PEND != 0 ]]; then
    echo "# pending by consumer: $(t_redis XPENDING "$STREAM" postmux | tail -n +4 | paste -sd' ')" >&2
    grep -E 'drain|stopp|claim|lost|releas|warn|error' "$T_DIR"/postmuxd*.log | grep -v 'delivery ws=' | tail -n 25 >&2
fi
t_expect_eq "$((DONE + LEFT))" "$N3" "sent + still queued = all jobs"
t_expect_eq "$(t_psql "select count(*) from recipients where address like 'drain%' and status <> 'sent'")" 0 \
    "no recipient left half-done"
HALF=$(t_psql "select r.address || ' ' || r.status || ' attempts=' || r.attempts || ' next=' ||
                      coalesce(r.next_attempt_at::text, '-') || ' resp=' || coalesce(r.last_response, '-')
                 from recipients r where r.address like 'drain%' and r.status <> 'sent'")
if [[ -n $HALF ]]; then
    echo "# not sent after SIGTERM: $HALF; retry schedule: $(t_redis ZRANGE "pmx:{$WS}:retry" 0 -1 WITHSCORES | paste -sd' ')" >&2
    grep -F "rcpt=${HALF%% *}" "$T_DIR"/postmuxd*.log | tail -n 5 >&2
fi
start_daemon
t_wait_for 120 "[[ \$(dsent) == $N3 ]]"
t_expect_eq "$(dsent)" "$N3" "the rest delivered after a restart"
DDELIV=$(cat "$T_SINK_DIR"/* | grep -c '^X-Rcpt-Args: <drain')
t_expect_eq "$DDELIV" "$N3" "each delivered once"

stop_daemon
t_redis SHUTDOWN NOSAVE >/dev/null 2>&1
wait "$R2" 2>/dev/null
t_case "no sanitizer report in postmuxd's log"
t_expect_nomatch "$(cat "$T_DIR"/postmuxd*.log 2>/dev/null)" 'Sanitizer|runtime error:|LeakSanitizer' "postmuxd log"
t_done
