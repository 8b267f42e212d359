#!/usr/bin/env bash
# The queue room (queue/consumer.h) against a real redis-server, driven through
# tests/tools/queue_probe (a consumer on a libuv loop that acks, defers, crashes or
# hangs on each job as told and prints what it saw): exactly-once under normal
# flow, reclaim after a crash, poison after 5 deliveries, the retry schedule,
# duplicate ids, fairness across workspaces, ~0 CPU when idle, unknown-workspace
# discovery, hostile entries, and a Redis restart in the middle of a run. Every
# probe run that ends normally must exit 0: under the ASan build a leak or a
# sanitizer report makes it fail.
source "$(dirname "$0")/lib.sh"
t_setup

PROBE=$T_TOOLS/queue_probe
[[ -x $PROBE ]] || t__setup_fail "no $PROBE: build first (make tools)"
RA=unix:$T_REDIS_SOCK
# Short reclaim timings for tests (the defaults are 30 s idle, 5 s interval).
FAST=(--reclaim-idle 600 --reclaim-interval 100 --refresh 200)

# add_jobs WS N [FIELD VALUE]...: N jobs (field n = 1..N) into WS's stream, in one script.
add_jobs() {
    local ws=$1 n=$2
    shift 2
    t_redis EVAL "for i = 1, tonumber(ARGV[1]) do
                    redis.call('XADD', KEYS[1], '*', 'from', 'a@example.com',
                               'to', 'b@example.com', 'n', i, unpack(ARGV, 2))
                  end return 1" 1 "pmx:{$ws}:jobs" "$n" "$@" >/dev/null
}

pending() { t_redis XPENDING "pmx:{$1}:jobs" postmux | head -n1; }
xlen() { t_redis XLEN "pmx:{$1}:jobs"; }
# The value of KEY=VALUE in a line.
val() { grep -oE "(^| )$1=[^ ]*" <<<"$2" | head -n1 | cut -d= -f2-; }
no_sanitizer() {
    t_expect_nomatch "$T_ERR" 'Sanitizer|runtime error' "sanitizer output"
}

t_case "1,000 jobs over 5 workspaces: each handed over once and acked, nothing pending"
t_redis FLUSHALL >/dev/null
for w in 1 2 3 4 5; do add_jobs ws_flow$w 200; done
t_run "$PROBE" --redis "$RA" --ws ws_flow1,ws_flow2,ws_flow3,ws_flow4,ws_flow5 --until 1000
t_expect_rc 0
no_sanitizer
t_expect_eq "$(grep -c '^job ' <<<"$T_OUT")" 1000 "jobs handed over"
t_expect_eq "$(grep '^job ' <<<"$T_OUT" | awk '{print $3, $4}' | sort -u | wc -l)" 1000 "distinct entries"
t_expect_eq "$(grep -c '^job .* kind=ok deliveries=1 ' <<<"$T_OUT")" 1000 "first deliveries of kind ok"
t_expect_eq "$(grep -c '^settled .*how=ack status=0' <<<"$T_OUT")" 1000 "acks confirmed"
for w in 1 2 3 4 5; do
    t_expect_eq "$(grep -c "^job .* ws=ws_flow$w " <<<"$T_OUT")" 200 "jobs of ws_flow$w"
    t_expect_eq "$(pending ws_flow$w)" 0 "pending entries of ws_flow$w"
    t_expect_eq "$(xlen ws_flow$w)" 0 "entries left in ws_flow$w (acked entries are deleted)"
done

t_case "a consumer that dies without acking: a second one reclaims its jobs after the idle time"
t_redis FLUSHALL >/dev/null
add_jobs ws_crash 20
t_run "$PROBE" --redis "$RA" --ws ws_crash --name c1 --mode crash --capacity 20 \
    --reclaim-idle 1500 --reclaim-interval 100 --refresh 500
t_expect_rc 42
t_expect_eq "$(pending ws_crash)" 20 "entries pending after the crash"
t_expect_eq "$(t_redis XPENDING 'pmx:{ws_crash}:jobs' postmux - + 100 c1 | grep -c -- '-')" 20 \
    "pending entries owned by c1"
# Before the idle time nobody takes them.
t_run "$PROBE" --redis "$RA" --ws ws_crash --name c2 --run 300 \
    --reclaim-idle 1500 --reclaim-interval 100 --refresh 500
t_expect_rc 0
no_sanitizer
t_expect_eq "$(grep -c '^job ' <<<"$T_OUT")" 0 "jobs taken before the idle time"
t_run "$PROBE" --redis "$RA" --ws ws_crash --name c2 --until 20 \
    --reclaim-idle 1500 --reclaim-interval 100 --refresh 500
t_expect_rc 0
no_sanitizer
t_expect_eq "$(grep -c '^job .* kind=ok deliveries=2 .*flags=redelivered' <<<"$T_OUT")" 20 \
    "jobs reclaimed as redeliveries"
t_expect_eq "$(pending ws_crash)" 0 "pending entries at the end"

t_case "a job that kills its consumer every time: dead-lettered as poison after 5 deliveries"
t_redis FLUSHALL >/dev/null
add_jobs ws_poison 1 probe crash
add_jobs ws_poison 1
# Each run crashes on the job, or (the poison run) ends after 2 s.
runs=() out_all=""
for i in 1 2 3 4 5 6 7 8; do
    t_run "$PROBE" --redis "$RA" --ws ws_poison --capacity 1 --run 2000 \
        --reclaim-idle 300 --reclaim-interval 50 --refresh 100
    runs+=("$T_RC")
    out_all+=$T_OUT$'\n'
    ((T_RC != 42)) && break
done
t_expect_eq "${runs[*]}" "42 42 42 42 42 0" "probe exit codes, run by run"
no_sanitizer
t_expect_match "$T_OUT" '^job .* kind=poison deliveries=6 .*fields=from=a@example.com&to=b@example.com&n=1&probe=crash reason="poison: delivered 5 times' \
    "the poison report"
t_expect_eq "$(grep -c '^job .*&n=1&probe=crash$' <<<"$out_all")" 5 "deliveries before the poison verdict"
t_expect_eq "$(grep -c '^settled .*how=ack status=0' <<<"$out_all")" 2 \
    "acks (the other job once, the poison job once)"
dead=$(t_redis XRANGE 'pmx:{ws_poison}:dead' - + | paste -sd ' ')
t_expect_match "$dead" ' from a@example.com to b@example.com n 1 probe crash _reason poison _entry [0-9]+-[0-9]+ _deliveries 5$' \
    "the dead stream entry"
t_expect_eq "$(t_redis XLEN 'pmx:{ws_poison}:dead')" 1 "dead entries"
t_expect_eq "$(pending ws_poison)" 0 "pending entries"
t_expect_eq "$(xlen ws_poison)" 0 "entries left"

t_case "defer 500 ms: the job comes back after ~0.5 s, attempt + 1, fields and internal state kept"
t_redis FLUSHALL >/dev/null
t_redis XADD 'pmx:{ws_retry}:jobs' '*' from 'Zoë <z@example.com>' to 'b@example.com, c@example.com' \
    subject 'Grüße, 1:2,' text $'line 1\r\n.dot\n5:x,\x01' header:X-Campaign 'c:1' \
    metadata '{"k":"v"}' probe defer:500 >/dev/null
t_run "$PROBE" --redis "$RA" --ws ws_retry --until 1
t_expect_rc 0
no_sanitizer
j1=$(grep '^job ' <<<"$T_OUT" | sed -n 1p)
j2=$(grep '^job ' <<<"$T_OUT" | sed -n 2p)
d=$(grep '^settled .*how=defer status=0' <<<"$T_OUT")
t_expect_eq "$(val attempt "$j1") $(val msg "$j1") $(val flags "$j1")" "1 - -" "first try"
t_expect_eq "$(val attempt "$j2") $(val flags "$j2")" "2 retried," "second try"
t_expect_match "$(val msg "$j2")" '^msg_[a-z2-7]{16}$' "message id carried in _msg"
t_expect_eq "$(val first "$j2")" "$(val first "$j1")" "first-seen time carried in _first"
t_expect_eq "$(val fields "$j2")" "$(val fields "$j1")" "user fields (internal ones stripped)"
t_expect_match "$(val fields "$j1")" 'text=line%201%0D%0A.dot%0A5:x,%01&' "odd bytes survived"
back=$(( $(val t "$j2") - $(val t "$d") ))
((back >= 450 && back <= 1200)) || t_fail "came back after ${back} ms, expected about 500"
t_expect_eq "$(t_redis ZCARD 'pmx:{ws_retry}:retry')" 0 "retry schedule empty"
t_expect_eq "$(pending ws_retry)" 0 "pending entries"
t_expect_eq "$(xlen ws_retry)" 0 "entries left"

t_case "the retry mover: a due member written by hand comes back; a garbled one is dead-lettered"
t_redis FLUSHALL >/dev/null
member=$'PMXJ1\n4:from,13:a@example.com,2:to,13:b@example.com,4:_msg,20:msg_abcdefghijklmnop,8:_attempt,1:3,6:_first,3:777,'
t_redis ZADD 'pmx:{ws_mover}:retry' 0 "$member" >/dev/null
t_redis ZADD 'pmx:{ws_mover}:retry' 0 $'PMXJ1\n4:from,99:short,' >/dev/null
t_redis ZADD 'pmx:{ws_mover}:retry' 99999999999999 "$member-later" >/dev/null
t_run "$PROBE" --redis "$RA" --ws ws_mover --until 1
t_expect_rc 0
no_sanitizer
t_expect_match "$T_OUT" '^job .* kind=ok deliveries=1 attempt=3 msg=msg_abcdefghijklmnop first=777 .*flags=retried, fields=from=a@example.com&to=b@example.com$' \
    "the moved job"
t_expect_match "$(t_redis XRANGE 'pmx:{ws_mover}:dead' - + | paste -sd ' ')" '_reason retry_member_malformed' \
    "the garbled member in the dead stream"
t_expect_eq "$(t_redis ZCARD 'pmx:{ws_mover}:retry')" 1 "members left (the one due in the future)"

t_case "duplicate id: a second entry with the same id is reported; the same entry redelivered is not"
t_redis FLUSHALL >/dev/null
e1=$(t_redis XADD 'pmx:{ws_dup}:jobs' '*' from a@example.com to b@example.com id order-1 probe crash:1)
t_run "$PROBE" --redis "$RA" --ws ws_dup "${FAST[@]}"
t_expect_rc 42
e2=$(t_redis XADD 'pmx:{ws_dup}:jobs' '*' from a@example.com to b@example.com id order-1)
e3=$(t_redis XADD 'pmx:{ws_dup}:jobs' '*' from a@example.com to b@example.com id order-2)
t_run "$PROBE" --redis "$RA" --ws ws_dup --until 3 "${FAST[@]}"
t_expect_rc 0
no_sanitizer
t_expect_match "$T_OUT" "^job .* entry=$e1 kind=ok deliveries=2 " "the first entry, redelivered, not a duplicate"
t_expect_match "$T_OUT" "^job .* entry=$e2 kind=duplicate .*reason=\"duplicate: id already used by entry $e1 " \
    "the second entry with the same id"
t_expect_match "$T_OUT" "^job .* entry=$e3 kind=ok " "another id"
t_expect_eq "$(t_redis GET 'pmx:{ws_dup}:idem:order-1')" "$e1" "the id belongs to the first entry"
ttl=$(t_redis TTL 'pmx:{ws_dup}:idem:order-1')
((ttl > 604000 && ttl <= 604800)) || t_fail "idem key TTL $ttl, expected about 7 days"
t_expect_eq "$(pending ws_dup)" 0 "pending entries"

t_case "a slow job keeps its idle time fresh, so nobody reclaims it; closed while held, it stays pending"
t_redis FLUSHALL >/dev/null
add_jobs ws_slow 1
# --no-drain: the consumer is closed with the job still held (released after the close).
"$PROBE" --redis "$RA" --ws ws_slow --name holder --mode hang --run 2500 --no-drain \
    --reclaim-idle 600 --reclaim-interval 100 --refresh 200 >"$T_DIR/holder.out" 2>"$T_DIR/holder.err" &
hpid=$!
t_wait_for 10 "grep -q '^job ' '$T_DIR/holder.out'"
t_run "$PROBE" --redis "$RA" --ws ws_slow --name thief --run 1500 \
    --reclaim-idle 600 --reclaim-interval 100 --refresh 200
t_expect_rc 0
no_sanitizer
t_expect_eq "$(grep -c '^job ' <<<"$T_OUT")" 0 "jobs another consumer took while it was held (idle limit 600 ms)"
wait "$hpid"
t_expect_eq "$?" 0 "holder exit status"
t_expect_nomatch "$(cat "$T_DIR/holder.err")" 'Sanitizer|runtime error' "holder sanitizer output"
t_expect_match "$(cat "$T_DIR/holder.out")" '^summary .* lost=0 unblocks=[0-9]+ held=1 ' "held at the close, never lost"
t_expect_eq "$(t_redis XPENDING 'pmx:{ws_slow}:jobs' postmux - + 10 holder | grep -c -- '-')" 1 \
    "still pending for the holder"
t_run "$PROBE" --redis "$RA" --ws ws_slow --name heir --until 1 "${FAST[@]}"
t_expect_rc 0
t_expect_match "$T_OUT" '^job .* kind=ok deliveries=2 .*flags=redelivered,' "taken over once released"
t_expect_eq "$(pending ws_slow)" 0 "pending entries"

t_case "a paused workspace is left out of reads until its time; the others flow"
t_redis FLUSHALL >/dev/null
add_jobs ws_p1 3
add_jobs ws_p2 3
# BLOCK 5 s: when the pause ends, the read blocking on ws_p1 (empty by then) is ended
# (CLIENT UNBLOCK) so the next one includes ws_p2, instead of ws_p2 waiting up to 5 s.
t_run "$PROBE" --redis "$RA" --ws ws_p1,ws_p2 --pause ws_p2:800 --until 6 --block 5000
t_expect_rc 0
no_sanitizer
late=$(grep '^job .* ws=ws_p1 ' <<<"$T_OUT" | grep -oE ' t=[0-9]+' | cut -d= -f2 | sort -n | tail -n1)
early=$(grep '^job .* ws=ws_p2 ' <<<"$T_OUT" | grep -oE ' t=[0-9]+' | cut -d= -f2 | sort -n | head -n1)
((late < 500)) || t_fail "ws_p1's last job at ${late} ms, expected at once"
((early >= 800 && early < 3000)) || t_fail "ws_p2's first job at ${early} ms, expected from 800 ms, well before the 5 s block ends"
t_expect_match "$T_OUT" '^summary .* unblocks=[1-9]' "the blocking read was ended early"

t_case "the set of workspaces changes while running: a new one is read (group created on the fly)"
t_redis FLUSHALL >/dev/null
add_jobs ws_s1 2
add_jobs ws_s2 2
t_run "$PROBE" --redis "$RA" --ws ws_s1 --later ws_s1,ws_s2@700 --discover 0 --until 4
t_expect_rc 0
no_sanitizer
t_expect_eq "$(grep -c '^job .* ws=ws_s2 .*kind=ok ' <<<"$T_OUT")" 2 "jobs of the added workspace"
early=$(grep '^job .* ws=ws_s2 ' <<<"$T_OUT" | grep -oE ' t=[0-9]+' | cut -d= -f2 | sort -n | head -n1)
((early >= 700 && early < 2000)) || t_fail "ws_s2's first job at ${early} ms, expected soon after 700 ms"

t_case "fairness: B's 10 jobs are not stuck behind A's 20,000"
t_redis FLUSHALL >/dev/null
add_jobs ws_big 20000
add_jobs ws_small 10
t_run "$PROBE" --redis "$RA" --ws ws_big,ws_small --capacity 64 --until 200
t_expect_rc 0
no_sanitizer
small=$(grep '^job .* ws=ws_small ' <<<"$T_OUT")
t_expect_eq "$(grep -c . <<<"$small")" 10 "B's jobs handed over"
maxb=$(grep -oE 'batch=[0-9]+' <<<"$small" | cut -d= -f2 | sort -n | tail -n1)
((maxb >= 1 && maxb <= 3)) || t_fail "B's last job came with read $maxb, expected within the first 3"
t_expect_eq "$(pending ws_big)" 0 "A's pending entries after the drain (the rest waits unread)"
t_expect_eq "$(( $(xlen ws_big) + $(grep -c '^settled .*status=0 ws=ws_big ' <<<"$T_OUT") ))" 20000 \
    "A's entries acked + left"

t_case "byte budget: big entries are held by bytes, not by count; a bigger one still passes"
t_redis FLUSHALL >/dev/null
big=$(head -c 10000 /dev/zero | tr '\0' x)
add_jobs ws_bytes 100 body "$big"
t_redis XADD "pmx:{ws_bytes}:jobs" '*' from a@example.com to b@example.com body "$big$big$big$big$big$big" >/dev/null
# 64 jobs may be held, but only ~50 KB of entries: about 5 entries of 10 KB.
t_run "$PROBE" --redis "$RA" --ws ws_bytes --capacity 64 --max-held-bytes 50000 --delay 20 --until 101 --quiet
t_expect_rc 0
S=$(grep '^summary ' <<<"$T_OUT")
echo "# $S"
t_expect_eq "$(val acked_distinct "$S")" 101 "every job handed over and acked, the 60 KB one too"
mh=$(val max_held "$S") mb=$(val max_held_bytes "$S")
((mh >= 2 && mh <= 8)) || t_fail "max_held=$mh: the byte budget should hold ~5 of 10 KB, not up to 64"
# One read may pass the budget: near it, a read asks for one entry, and that
# entry may be the 60 KB one (its size is not known before it is read).
((mb <= 50000 + 6 * 10100 || mh == 1)) || t_fail "max_held_bytes=$mb: over the budget by more than a read's worth"

t_case "idle with 50 workspaces: one blocking read a second, ~0 CPU"
t_redis FLUSHALL >/dev/null
wss=$(printf 'ws_idle%02d,' $(seq 1 50))
# --no-drain: closed with its blocking read outstanding (the abrupt path).
"$PROBE" --redis "$RA" --ws "${wss%,}" --run 8000 --no-drain >"$T_DIR/idle.out" 2>"$T_DIR/idle.err" &
ppid_=$!
sleep 1.5
cpu() { awk '{print $14 + $15}' "/proc/$ppid_/stat"; }
stat_calls() { t_redis INFO commandstats | tr -d '\r' | grep -oE "^cmdstat_$1:calls=[0-9]+" | cut -d= -f2; }
c0=$(cpu) x0=$(stat_calls xreadgroup) n0=$(t_redis INFO stats | tr -d '\r' | grep -oE '^total_commands_processed:[0-9]+' | cut -d: -f2)
sleep 5
c1=$(cpu) x1=$(stat_calls xreadgroup) n1=$(t_redis INFO stats | tr -d '\r' | grep -oE '^total_commands_processed:[0-9]+' | cut -d: -f2)
wait "$ppid_"
rc=$?
t_expect_eq "$rc" 0 "probe exit status"
t_expect_nomatch "$(cat "$T_DIR/idle.err")" 'Sanitizer|runtime error' "sanitizer output"
hz=$(getconf CLK_TCK)
ticks=$((c1 - c0))
# < 5 % of one CPU over 5 s.
((ticks * 100 < 5 * 5 * hz)) || t_fail "idle consumer used $ticks ticks of $hz/s over 5 s"
xr=$((x1 - x0))
((xr >= 3 && xr <= 7)) || t_fail "$xr XREADGROUP calls in 5 s, expected about 5 (BLOCK 1000)"
cmds=$((n1 - n0))
((cmds < 400)) || t_fail "$cmds Redis commands in 5 s while idle"
t_expect_match "$(cat "$T_DIR/idle.out")" '^summary .* workspaces=50 ' "workspaces read"

t_case "streams of unknown workspaces are found, their jobs reported, the empty stream dropped"
t_redis FLUSHALL >/dev/null
add_jobs ws_known 2
add_jobs ws_nobody 3
t_run "$PROBE" --redis "$RA" --ws ws_known --discover 300 --run 2500
t_expect_rc 0
no_sanitizer
t_expect_eq "$(grep -c '^job .* ws=ws_nobody .*kind=unknown_workspace ' <<<"$T_OUT")" 3 "unknown-workspace jobs"
t_expect_eq "$(grep -c '^job .* ws=ws_known .*kind=ok ' <<<"$T_OUT")" 2 "jobs of the known workspace"
t_expect_eq "$(grep -c '^settled .*how=ack status=0' <<<"$T_OUT")" 5 "acks"
t_expect_eq "$(t_redis EXISTS 'pmx:{ws_nobody}:jobs')" 0 "the unknown workspace's stream after it stayed empty"
t_expect_eq "$(t_redis EXISTS 'pmx:{ws_known}:jobs')" 1 "the known workspace's stream"

t_case "hostile entries become malformed jobs and never block the stream"
t_redis FLUSHALL >/dev/null
add_jobs ws_bad 1
t_redis XADD 'pmx:{ws_bad}:jobs' '*' from a@example.com _msg msg_abcdefghijklmnop _attempt lots _first 1 >/dev/null
t_redis XADD 'pmx:{ws_bad}:jobs' '*' from a@example.com _msg not-a-message-id _attempt 2 _first 1 >/dev/null
t_redis XADD 'pmx:{ws_bad}:jobs' '*' from a@example.com raw "$(head -c 5000 /dev/zero | tr '\0' x)" >/dev/null
t_redis XADD 'pmx:{ws_bad}:jobs' '*' "$(printf 'na\001me')" "$(printf 'v\001')" >/dev/null
add_jobs ws_bad 1
t_run "$PROBE" --redis "$RA" --ws ws_bad --max-entry-bytes 2000 --until 6
t_expect_rc 0
no_sanitizer
t_expect_match "$T_OUT" '^job .* kind=malformed .*reason="_attempt: not a number' "bad _attempt"
t_expect_match "$T_OUT" '^job .* kind=malformed .*reason="_msg: not a message id' "bad _msg"
t_expect_match "$T_OUT" '^job .* kind=malformed .*reason="entry: [0-9]+ bytes, over the limit of 2000"' "oversized entry"
t_expect_match "$T_OUT" '^job .* kind=ok .*fields=na%01me=v%01$' "odd bytes in a name are just a field"
t_expect_eq "$(grep -c '^job .* kind=ok .*&n=1$' <<<"$T_OUT")" 2 "the good jobs around them"
t_expect_eq "$(pending ws_bad)" 0 "pending entries"
t_expect_eq "$(xlen ws_bad)" 0 "entries left"

t_case "entries pending on a consumer but not held are taken back at once when its connections come back"
# Released jobs stand in for replies lost with a connection: pending on the probe, not
# held by it. reclaim_idle is 60 s, so only the sweep can bring them back in time.
t_redis FLUSHALL >/dev/null
add_jobs ws_sweep 10
"$PROBE" --redis "$RA" --ws ws_sweep --name sweeper --mode release:1 --until 10 \
    --reclaim-idle 60000 --reclaim-interval 100 --refresh 200 >"$T_DIR/sw.out" 2>"$T_DIR/sw.err" &
swpid=$!
t_wait_for 10 "(( \$(grep -c '^job .* deliveries=1 ' '$T_DIR/sw.out') == 10 ))"
sleep 0.3
t_expect_eq "$(t_redis XPENDING 'pmx:{ws_sweep}:jobs' postmux - + 100 sweeper | grep -c -- '-')" 10 \
    "released: still pending on the probe"
t_redis CLIENT KILL TYPE normal >/dev/null    # the probe's connections (not redis-cli's own)
t_wait_for 15 "! kill -0 $swpid 2>/dev/null"
wait "$swpid"
t_expect_eq "$?" 0 "probe exit status"
out=$(cat "$T_DIR/sw.out")
t_expect_nomatch "$(cat "$T_DIR/sw.err")" 'Sanitizer|runtime error' "sanitizer output"
t_expect_eq "$(grep -c '^job .* kind=ok deliveries=2 .*flags=redelivered,' <<<"$out")" 10 "taken back, redelivered"
t_expect_match "$out" '^summary acked_distinct=10 ' "all acked"
t_expect_eq "$(pending ws_sweep)" 0 "pending entries"

t_case "a graceful stop gives pending entries back to the group: the next consumer takes them at once"
t_redis FLUSHALL >/dev/null
add_jobs ws_give 10
t_run "$PROBE" --redis "$RA" --ws ws_give --name giver --mode release --run 1500 \
    --reclaim-idle 60000 --reclaim-interval 100 --refresh 200
t_expect_rc 0
no_sanitizer
t_expect_eq "$(grep -c '^job ' <<<"$T_OUT")" 10 "jobs seen, each released"
t_expect_eq "$(t_redis XPENDING 'pmx:{ws_give}:jobs' postmux IDLE 3600000 - + 100 | grep -c -- '-')" 10 \
    "given back: idle past any reclaim_idle"
t_run "$PROBE" --redis "$RA" --ws ws_give --name taker --until 10 --run 15000 \
    --reclaim-idle 60000 --reclaim-interval 100 --refresh 200
t_expect_rc 0
t_expect_match "$T_OUT" '^summary acked_distinct=10 ' "taken over and acked well before reclaim_idle (60 s)"
t_expect_eq "$(pending ws_give)" 0 "pending entries"

t_case "Redis restarted in the middle of a run: the probe reconnects and finishes, no job lost"
# A Redis of our own with an append-only file, so a restart keeps the data.
rdir=$T_DIR/redis-aof
mkdir -p "$rdir"
rsock=$rdir/r.sock
start_redis() {
    /usr/bin/redis-server --port 0 --unixsocket "$rsock" --unixsocketperm 700 --dir "$rdir" \
        --appendonly yes --appendfsync always --save "" --daemonize no >>"$rdir/log" 2>&1 &
    rpid=$!
    t_wait_for 10 "[[ \$(/usr/bin/redis-cli -s '$rsock' ping 2>/dev/null) == PONG ]]"
}
start_redis
for w in a b; do
    /usr/bin/redis-cli -s "$rsock" EVAL "for i = 1, 500 do
        redis.call('XADD', KEYS[1], '*', 'from', 'a@example.com', 'n', i) end return 1" \
        1 "pmx:{ws_rs$w}:jobs" >/dev/null
done
"$PROBE" --redis "unix:$rsock" --ws ws_rsa,ws_rsb --capacity 8 --delay 15 --until 1000 \
    --reclaim-idle 1000 --reclaim-interval 200 --refresh 300 >"$T_DIR/rs.out" 2>"$T_DIR/rs.err" &
ppid_=$!
t_wait_for 30 "(( \$(grep -c '^settled .*status=0' '$T_DIR/rs.out') >= 150 ))"
/usr/bin/redis-cli -s "$rsock" SHUTDOWN >/dev/null 2>&1
wait "$rpid" 2>/dev/null
sleep 1
start_redis
t_wait_for 60 "! kill -0 $ppid_ 2>/dev/null"
wait "$ppid_"
rc=$?
out=$(cat "$T_DIR/rs.out")
t_expect_eq "$rc" 0 "probe exit status"
t_expect_nomatch "$(cat "$T_DIR/rs.err")" 'Sanitizer|runtime error' "sanitizer output"
t_expect_match "$out" '^redis down ' "the probe saw Redis go"
t_expect_eq "$(grep -c '^redis up ' <<<"$out")" 2 "connections made (first + after the restart)"
t_expect_match "$out" '^summary acked_distinct=1000 ' "distinct entries acked"
for w in a b; do
    t_expect_eq "$(/usr/bin/redis-cli -s "$rsock" XPENDING "pmx:{ws_rs$w}:jobs" postmux | head -n1)" 0 \
        "pending entries of ws_rs$w"
    t_expect_eq "$(/usr/bin/redis-cli -s "$rsock" XLEN "pmx:{ws_rs$w}:jobs")" 0 "entries left in ws_rs$w"
done
t_expect_eq "$(grep '^job ' <<<"$out" | awk '{print $3, $4}' | sort -u | wc -l)" 1000 \
    "distinct entries handed over"
/usr/bin/redis-cli -s "$rsock" SHUTDOWN NOSAVE >/dev/null 2>&1

t_done
