#!/usr/bin/env bash
# tests/bench/run.sh — `make bench` (issue 4): the delivery pipeline's throughput on
# this machine, with the machine's own signing speed next to it for scale.
#
# Release build, throwaway PostgreSQL / Redis / smtp-sink (scripts/services.sh; the
# sink on loopback with a high connection limit and no dumps), BENCH_WORKSPACES
# workspaces each with a verified RSA-2048 domain, postmuxd with `workers = auto`.
# Scenarios, one function each, run in the order of BENCH_SCENARIOS:
#
#   delivery    BENCH_MESSAGES composed jobs of about 2 KB, round-robin over the
#               workspaces, enqueued at once with `redis-cli --pipe` (generated RESP).
#               Measures messages/s end to end (first XADD — the smallest stream entry
#               id, Redis's clock — to the last outcome committed, max(updated_at) of
#               the `sent` recipients), latency per message (entry id → updated_at;
#               p50/p99 with percentile_cont, queueing behind the burst included), CPU
#               µs per message of postmuxd (supervisor + workers, utime+stime from
#               /proc/PID/stat) and of Redis, PostgreSQL and smtp-sink, peak RSS
#               (VmHWM) of every worker, Redis commands and Postgres commits per message.
#   latency     BENCH_LATENCY_MESSAGES jobs paced at BENCH_LATENCY_RATE/s (no backlog):
#               p50/p99/max latency of a lightly loaded system.
#   openssl     `openssl speed -seconds 3 -multi $(nproc) rsa2048 ed25519` (after the
#               delivery run, never alongside it): sign/s, and messages/s ÷ RSA sign/s.
#   fairness    BENCH_FAIR_BACKLOG (100,000) jobs queued for one workspace, then 10 for
#               another: how long those 10 take, and how much backlog is still queued
#   profile     (only with BENCH_PROFILE=1) a second delivery run of
#               BENCH_PROFILE_MESSAGES under `perf record -a -g`: where the CPU goes,
#               by process and by function.
#   limits      BENCH_LIMIT_WORKSPACES (100) more workspaces, each rate-limited (2 … 20
#               recipients/s, 1,100/s in all), each with a backlog of 1.5 × what its
#               limit lets through in BENCH_LIMIT_SECONDS (20): postmuxd sends for that
#               long; prints every workspace's achieved rate against its limit (from
#               the `sent` rows: (count − burst) ÷ (last − first outcome)), the largest
#               error, the total, and CPU per message next to the unlimited run's, to
#               show what the limiter costs end to end. Runs after the others (its
#               leftover backlog is trimmed, but jobs at the gates still trickle out).
#   suppression the delivery burst twice, side by side: with an empty suppression list,
#               then with BENCH_SUPPRESSIONS (1,000,000) addresses on the workspaces'
#               lists (none of them a recipient of the burst, so every check is a miss,
#               the common case). Prints messages/s and CPU µs per message of both runs
#               and their ratio, how long the workers took to load the list, and the
#               workers' peak RSS with it (docs/feedback.md: the check must not cost the
#               hot path; the goal is within 5 %).
#   ratelimit   tests/bench/ratelimit.sh, when it exists (the rate limiter's own bench).
#   submission  tests/bench/submission.sh, when it exists.
#   feedback    tests/bench/feedback.sh: the report parser over the bounce corpus on
#               one core, reports per second (needs no services).
#   submission_memory  tests/bench/submission_memory.sh, when it exists: 8 sessions
#               streaming 24 MB of DATA each (unterminated, then terminated) against 2
#               workers; each worker's peak RSS and whether other clients were served.
#
#   make bench                         (50,000 messages, 10 workspaces)
#   BENCH_MESSAGES=5000 make bench     a quick run
#   BENCH_SCENARIOS="delivery openssl" BENCH_PROFILE=1 bash tests/bench/run.sh
#
# Prints a summary block at the end. Exits 1 if a scenario failed (a message not
# `sent`, a timeout, a service that did not start).
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
N=${BENCH_MESSAGES:-50000}
NWS=${BENCH_WORKSPACES:-10}
LAT_N=${BENCH_LATENCY_MESSAGES:-1000}
LAT_RATE=${BENCH_LATENCY_RATE:-200}
PROF_N=${BENCH_PROFILE_MESSAGES:-20000}
FAIR_N=${BENCH_FAIR_BACKLOG:-100000}
TIMEOUT=${BENCH_TIMEOUT:-900}
LIM_NWS=${BENCH_LIMIT_WORKSPACES:-100}
LIM_SECS=${BENCH_LIMIT_SECONDS:-20}
SUPP_N=${BENCH_SUPPRESSIONS:-1000000}
ED_N=${BENCH_ED25519_MESSAGES:-$N}
NEWS_N=${BENCH_NEWSLETTER_MESSAGES:-5000}
SCENARIOS=${BENCH_SCENARIOS:-delivery ed25519 newsletter latency fairness openssl profile limits suppression ratelimit submission submission_memory feedback}
PY=/usr/bin/python3
build=$root/build/release

# shellcheck source=../../scripts/services.sh
source "$root/scripts/services.sh"

declare -A R=()        # results for the summary
WS=() WS_ED=()         # the RSA and the Ed25519-only workspaces
declare -a ORDER=()    # summary lines in order: "label|key|unit"
failed=0

say() { printf '# %s\n' "$*"; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }
put() { R[$2]=$3; ORDER+=("$1|$2|${4-}"); }
now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }
q() { "$PMX_PG_BIN/psql" -XAtq -v ON_ERROR_STOP=1 -h "$PMX_PG_HOST" -p "$PMX_PG_PORT" \
        -U "$PMX_PG_USER" -d postmux -c "$1"; }
rcli() { /usr/bin/redis-cli -s "$PMX_REDIS_SOCK" "$@"; }

# ---- processes ------------------------------------------------------------------
# utime+stime (clock ticks) of PID.
ticks() {
    local s f
    { s=$(<"/proc/$1/stat"); } 2>/dev/null || { echo 0; return; }
    read -ra f <<<"${s##*) }"
    echo $((f[11] + f[12]))
}
# PID and all its descendants.
tree() {
    local todo=("$1") p c
    while ((${#todo[@]})); do
        p=${todo[0]}
        todo=("${todo[@]:1}")
        echo "$p"
        for c in $(cat "/proc/$p/task/"*/children 2>/dev/null); do todo+=("$c"); done
    done
}
tree_ticks() {
    local p t=0
    for p in $(tree "$1"); do t=$((t + $(ticks "$p"))); done
    echo "$t"
}
# PID of the registered service KIND (pg, redis, smtp-sink, postmuxd).
svc_pid() { awk -v k="$1" '$3 == k { p = $1 } END { print p }' "$PMX_SVC_DIR/pids"; }
workers() { cat "/proc/$DPID/task/"*/children 2>/dev/null; }
# "postmuxd redis postgres sink machine" CPU ticks (machine: every CPU's busy time,
# from /proc/stat, to show what else ran during a measurement).
cpu_snapshot() {
    echo "$(tree_ticks "$DPID") $(ticks "$(svc_pid redis)") $(tree_ticks "$(svc_pid pg)")" \
        "$(tree_ticks "$(svc_pid smtp-sink)") $(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat)"
}

# cpu_us SNAP0 SNAP1 N [I]: µs of CPU per message between two cpu_snapshot lines, of
# process I (1 postmuxd, 2 redis, 3 postgres, 4 smtp-sink) or of all four.
cpu_us() {
    awk -v hz="$(getconf CLK_TCK)" -v a="$1" -v b="$2" -v n="$3" -v i="${4-}" 'BEGIN {
        split(a, x, " "); split(b, y, " "); s = 0
        for (k = 1; k <= 4; k++) if (i == "" || k == i) s += y[k] - x[k]
        printf "%.0f", n ? s * 1e6 / hz / n : 0 }'
}
# Redis's calls per command since the last CONFIG RESETSTAT: "xadd=N xack=N ...".
redis_calls() {
    rcli INFO commandstats | tr -d '\r' |
        awk -F'[:=,]' '/^cmdstat_/ { sub("cmdstat_", "", $1); printf "%s=%s ", $1, $3 }'
}

# ---- setup ----------------------------------------------------------------------
setup() {
    say "packages (scripts/deps.sh) and the build (make -j2 bins, release)"
    bash "$root/scripts/deps.sh" || die "scripts/deps.sh failed"
    make -s -C "$root" -j2 bins || die "the build failed"
    PMX=$build/bin/postmux
    PMXD=$build/bin/postmuxd
    pmx_svc_init || die "cannot create a temp dir"
    dir=$PMX_SVC_DIR
    pmx_svc_pg_start || die "PostgreSQL did not start"
    pmx_svc_redis_start >/dev/null || die "redis-server did not start"
    pmx_svc_sink_start - -m 2048 >/dev/null || die "smtp-sink did not start"
    "$PMX_PG_BIN/psql" -XAtq -h "$PMX_PG_HOST" -p "$PMX_PG_PORT" -U "$PMX_PG_USER" -d postgres \
        -c 'CREATE DATABASE postmux' || die "cannot create the database"
    export POSTMUX_CONFIG=$dir/postmux.conf
    MPORT=$(pmx_svc_free_port) || die "no free port"
    pmx_svc_postmux_conf "$POSTMUX_CONFIG" postmux || die "cannot write the config"
    pmx_svc_conf_set "$POSTMUX_CONFIG" daemon workers auto
    pmx_svc_conf_set "$POSTMUX_CONFIG" daemon metrics_listen "127.0.0.1:$MPORT"
    pmx_svc_conf_set "$POSTMUX_CONFIG" daemon log_level warn
    "$PMX" migrate >/dev/null || die "postmux migrate failed"
    WS=()
    local i ws
    say "setup: $NWS workspaces, each with a verified RSA-2048 domain"
    for ((i = 0; i < NWS; i++)); do
        ws=$("$PMX" workspace create "Bench $i") || die "workspace create failed"
        "$PMX" domain add "$ws" "b$i.bench.example" --algorithm rsa --bits 2048 >/dev/null ||
            die "domain add failed"
        "$PMX" domain verify "b$i.bench.example" --skip-dns >/dev/null || die "domain verify failed"
        WS+=("$ws")
    done
    WS_ED=()
    if [[ " $SCENARIOS " == *" ed25519 "* || ${BENCH_PROFILE:-0} == 1 ]]; then
        say "setup: $NWS more workspaces, each with a verified Ed25519-only domain"
        for ((i = 0; i < NWS; i++)); do
            ws=$("$PMX" workspace create "Bench Ed25519 $i") || die "workspace create failed"
            "$PMX" domain add "$ws" "e$i.bench.example" --algorithm ed25519 >/dev/null ||
                die "domain add failed"
            "$PMX" domain verify "e$i.bench.example" --skip-dns >/dev/null || die "domain verify failed"
            WS_ED+=("$ws")
        done
    fi
    pmx_svc_run postmuxd "$PMXD" -c "$POSTMUX_CONFIG" || die "postmuxd did not start"
    DPID=$PMX_RUN_PID
    DLOG=$PMX_RUN_LOG
    NWORKERS=$(getconf _NPROCESSORS_ONLN)
    # Ready when every worker waits in XREADGROUP (it reads all known streams in one
    # call, once its settings are loaded) and every stream has its group.
    local deadline=$((SECONDS + 30)) ok c
    while :; do
        ok=1
        c=$(rcli CLIENT LIST | grep -c 'cmd=xreadgroup')
        ((c >= NWORKERS)) || ok=0
        for ws in "${WS[@]}" "${WS_ED[@]}"; do
            ((ok)) || break
            rcli XINFO GROUPS "pmx:{$ws}:jobs" 2>/dev/null | grep -qx postmux || ok=0
        done
        ((ok)) && break
        kill -0 "$DPID" 2>/dev/null || { tail -n 20 "$DLOG" >&2; die "postmuxd exited"; }
        ((SECONDS < deadline)) || { tail -n 20 "$DLOG" >&2; die "workers not reading the streams after 30 s"; }
        sleep 0.2
    done
    say "postmuxd pid $DPID, workers: $(workers | paste -sd' ')"
}

# ---- enqueue --------------------------------------------------------------------
# gen_resp COUNT FILE [KIND DOMPREFIX WS...]: COUNT XADD commands, round-robin over the
# workspaces (default: WS, domains b<i>.bench.example), as RESP for `redis-cli --pipe`.
# KIND small: a ~2 KB composed text job; news: a ~100 KB newsletter, html (~85 KB of
# table layout with inline styles, tracking links, a few non-ASCII characters, so
# quoted-printable) + text (~15 KB): multipart/alternative, each one personalised.
gen_resp() {
    local n=$1 out=$2 kind=${3:-small} dom=${4:-b}
    shift 4 2>/dev/null || shift $#
    (($#)) || set -- "${WS[@]}"
    "$PY" "$root/tests/bench/gen_jobs.py" "$n" "$out" "$kind" "$dom" "$@"
}

# "count sum_seconds" of postmux_dkim_sign_seconds (every signature, all workers).
dkim_metrics() {
    curl -s --max-time 5 "http://127.0.0.1:$MPORT/metrics" |
        awk '/^postmux_dkim_sign_seconds_count/ { c = $2 } /^postmux_dkim_sign_seconds_sum/ { s = $2 }
             END { printf "%d %.6f\n", c, s }'
}

reset_tables() { q "TRUNCATE events, recipients, messages" >/dev/null; }

# wait_sent COUNT: until COUNT recipients are sent; fails on any other outcome.
wait_sent() {
    local want=$1 deadline=$((SECONDS + TIMEOUT)) row sent other last=-1 still=0
    while :; do
        row=$(q "select count(*) filter (where status = 'sent'),
                        count(*) filter (where status not in ('sent', 'queued')) from recipients")
        sent=${row%%|*} other=${row##*|}
        ((other > 0)) && { echo "bench: $other recipients not sent:" >&2
            q "select status, left(coalesce(last_response, ''), 80), count(*) from recipients
               where status <> 'sent' group by 1, 2" >&2; return 1; }
        ((sent >= want)) && return 0
        ((SECONDS < deadline)) || { echo "bench: only $sent of $want sent after ${TIMEOUT}s" >&2; return 1; }
        # No progress for 60 s: stuck.
        if ((sent == last)); then ((still++ > 60)) && { echo "bench: stuck at $sent of $want" >&2; return 1; }
        else still=0; last=$sent; fi
        # Once a second: each poll is a psql process, a backend and a count over the
        # table, CPU taken from the stack under test. The end time comes from the rows
        # (max(updated_at)), not from when this loop notices.
        sleep 1
    done
}

# Per-message numbers over the sent recipients, on the database's rows:
# "count first_xadd_ms last_outcome_ms p50_ms p99_ms max_ms".
latency_row() {
    q "with t as (
         select split_part(m.job_id, '-', 1)::bigint as xadd_ms,
                extract(epoch from r.updated_at) * 1000 as done_ms
           from recipients r join messages m on m.id = r.message_id
          where r.status = 'sent')
       select count(*), min(xadd_ms), round(max(done_ms)),
              round(percentile_cont(0.5) within group (order by done_ms - xadd_ms)::numeric, 1),
              round(percentile_cont(0.99) within group (order by done_ms - xadd_ms)::numeric, 1),
              round(max(done_ms - xadd_ms)::numeric, 1)
         from t" | tr '|' ' '
}

# ---- scenarios ------------------------------------------------------------------
# run_burst COUNT [KIND DOMPREFIX WS...]: enqueue COUNT jobs (gen_resp) at once, wait for
# all, print nothing; sets BURST_* (enqueue seconds, CPU ticks before/after, redis/pg
# counters). Every worker's peak RSS is reset first (clear_refs 5), so VmHWM afterwards
# is this burst's.
run_burst() {
    local n=$1 resp=$dir/jobs.resp w
    shift
    reset_tables
    say "generating $n jobs (${1:-small}) as RESP"
    gen_resp "$n" "$resp" "$@" || return 1
    BURST_BYTES=$(stat -c %s "$resp")
    for w in $(workers); do echo 5 >"/proc/$w/clear_refs" 2>/dev/null; done
    rcli CONFIG RESETSTAT >/dev/null
    local xact0
    xact0=$(q "select xact_commit from pg_stat_database where datname = 'postmux'")
    BURST_DKIM0=$(dkim_metrics)
    BURST_CPU0=$(cpu_snapshot)
    BURST_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
    local t0 t1
    say "enqueueing with redis-cli --pipe, postmuxd running"
    t0=$(now_ms)
    rcli --pipe <"$resp" >"$dir/pipe.out" 2>&1 && grep -q "errors: 0, replies: $n" "$dir/pipe.out" ||
        { echo "bench: redis-cli --pipe:" >&2; cat "$dir/pipe.out" >&2; return 1; }
    t1=$(now_ms)
    BURST_ENQ_MS=$((t1 - t0))
    wait_sent "$n" || return 1
    BURST_CPU1=$(cpu_snapshot)
    BURST_MS=$(($(now_ms) - t0))
    BURST_DKIM1=$(dkim_metrics)
    BURST_XACT=$(($(q "select xact_commit from pg_stat_database where datname = 'postmux'") - xact0))
    BURST_CMDS=$(redis_calls)
    rm -f "$resp"
}

# report_burst P TITLE: the summary lines of the last run_burst, keys prefixed P_ (d:
# delivery, e: ed25519, n: newsletter), plus one row of the side-by-side table (SIDE).
declare -a SIDE=()
report_burst() {
    local P=$1 title=$2
    local cnt first last p50 p99 max
    read -r cnt first last p50 p99 max <<<"$(latency_row)"
    local span=$((last - first))
    ((span > 0)) || span=1
    local hz
    hz=$(getconf CLK_TCK)
    local names=(postmuxd redis postgres smtp-sink) i w hwm rss=() rssmax=0
    put "[$title] messages" "${P}_n" "$cnt" ""
    put "[$title] enqueue (redis-cli --pipe)" "${P}_enq" "$(awk -v n="$cnt" -v ms="$BURST_ENQ_MS" -v b="$BURST_BYTES" \
        'BEGIN { printf "%.2f s, %.0f jobs/s, %.1f MB of RESP", ms / 1000, n * 1000 / (ms ? ms : 1), b / 1e6 }')"
    put "[$title] end to end (first XADD -> last outcome)" "${P}_span" "$(awk -v s="$span" 'BEGIN { printf "%.2f s", s / 1000 }')"
    put "[$title] throughput" "${P}_rate" "$(awk -v n="$cnt" -v s="$span" 'BEGIN { printf "%.0f", n * 1000 / s }')" "messages/s"
    put "[$title] latency p50 / p99 / max (burst, queueing)" "${P}_lat" "$p50 / $p99 / $max ms"
    for i in 0 1 2 3; do
        put "[$title] CPU per message: ${names[i]}" "${P}_cpu_${names[i]}" \
            "$(cpu_us "$BURST_CPU0" "$BURST_CPU1" "$cnt" $((i + 1)))" "µs"
    done
    put "[$title] CPU per message: all four" "${P}_cpu_all" "$(cpu_us "$BURST_CPU0" "$BURST_CPU1" "$cnt")" "µs"
    # The whole machine's busy time over the burst, against the four above: what else
    # ran (the bench's own polling, other work on the machine) skews the numbers.
    put "[$title] machine CPU busy during the burst" "${P}_busy" "$(awk -v hz="$hz" -v a="$BURST_CPU0" -v b="$BURST_CPU1" \
        -v ms="$BURST_MS" -v np="$(getconf _NPROCESSORS_ONLN)" -v la="$BURST_LOAD" 'BEGIN {
        split(a, x, " "); split(b, y, " "); s = 0; for (i = 1; i <= 4; i++) s += y[i] - x[i]
        all = (y[5] - x[5]) / hz; ours = s / hz; wall = ms / 1000
        printf "%.0f%% of %d CPUs (postmux stack %.0f%%, anything else %.0f%%; load before: %s)",
            100 * all / wall / np, np, 100 * ours / wall / np, 100 * (all - ours) / wall / np, la }')"
    put "[$title] DKIM signing (postmux_dkim_sign_seconds)" "${P}_dkim" "$(awk -v a="$BURST_DKIM0" -v b="$BURST_DKIM1" \
        'BEGIN { split(a, x, " "); split(b, y, " ")
        c = y[1] - x[1]; s = y[2] - x[2]
        if (c <= 0) { print "no samples"; exit }
        printf "%d signatures, %.0f µs each (mean, wall time on the loop)", c, s * 1e6 / c }')"
    for w in $(workers); do
        hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$w/status" 2>/dev/null)
        hwm=$((${hwm:-0} / 1024))
        ((hwm > rssmax)) && rssmax=$hwm
        rss+=("$w:$hwm MB")
    done
    put "[$title] peak RSS per worker (VmHWM)" "${P}_rss" "${rss[*]}"
    put "[$title] Postgres commits per 1000 messages" "${P}_xact" "$(awk -v x="$BURST_XACT" -v n="$cnt" 'BEGIN { printf "%.1f", x * 1000 / n }')"
    put "[$title] Redis commands (calls)" "${P}_cmds" "$BURST_CMDS"
    local pend=0 ws p
    for ws in "${WS[@]}" "${WS_ED[@]}"; do
        p=$(rcli XPENDING "pmx:{$ws}:jobs" postmux | head -n 1)
        pend=$((pend + ${p:-0}))
    done
    put "[$title] pending entries left" "${P}_pending" "$pend"
    local errs
    errs=$(grep -cE ' (warn|error):' "$DLOG")
    put "[$title] postmuxd warnings/errors logged (whole run)" "${P}_log" "$errs"
    SIDE+=("$title|${R[${P}_rate]}|$p50|$p99|${R[${P}_cpu_postmuxd]}|${R[${P}_cpu_postgres]}|${R[${P}_cpu_redis]}|${R[${P}_cpu_smtp-sink]}|${R[${P}_cpu_all]}|$rssmax|${P}")
    ((pend == 0))
}

# 2 KB text, RSA-2048 (the original `make bench`).
bench_delivery() {
    say "scenario delivery: $N messages (2 KB, RSA-2048) over $NWS workspaces, workers = auto ($NWORKERS)"
    run_burst "$N" small b "${WS[@]}" || return 1
    report_burst d "2 KB RSA"
}

# 2 KB text, Ed25519 only (workspaces whose one domain has only an Ed25519 key).
bench_ed25519() {
    say "scenario ed25519: $ED_N messages (2 KB, Ed25519 only) over $NWS workspaces"
    run_burst "$ED_N" small e "${WS_ED[@]}" || return 1
    report_burst e "2 KB Ed25519"
}

# ~100 KB multipart/alternative newsletters (HTML + text), RSA-2048.
bench_newsletter() {
    say "scenario newsletter: $NEWS_N messages (~100 KB HTML + text, RSA-2048) over $NWS workspaces"
    run_burst "$NEWS_N" news b "${WS[@]}" || return 1
    report_burst n "100 KB RSA"
}

bench_latency() {
    say "scenario latency: $LAT_N jobs paced at $LAT_RATE/s"
    reset_tables
    "$PY" - "$PMX_REDIS_SOCK" "$LAT_N" "$LAT_RATE" "${WS[@]}" <<'EOF' || return 1
import socket, sys, time
sock, n, rate, wss = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
s = socket.socket(socket.AF_UNIX); s.connect(sock); f = s.makefile("rb")
def cmd(*a):
    b = [x.encode() for x in a]
    return b"*%d\r\n" % len(b) + b"".join(b"$%d\r\n%s\r\n" % (len(x), x) for x in b)
body = ("latency probe line of text\n" * 70)
start = time.monotonic()
for k in range(n):
    w = k % len(wss)
    s.sendall(cmd("XADD", "pmx:{%s}:jobs" % wss[w], "*", "from", "news@b%d.bench.example" % w,
                  "to", "lat%d@example.net" % k, "subject", "Latency %d" % k, "text", body))
    head = f.readline()
    if not head.startswith(b"$"):
        sys.exit("XADD failed: %r" % head)
    f.readline()
    delay = start + (k + 1) / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
EOF
    wait_sent "$LAT_N" || return 1
    local cnt first last p50 p99 max
    read -r cnt first last p50 p99 max <<<"$(latency_row)"
    put "latency p50 / p99 / max at $LAT_RATE msg/s (no backlog)" l_lat "$p50 / $p99 / $max ms"
}

# Issue 5's fairness goal, measured: workspace A has BENCH_FAIR_BACKLOG (100,000) jobs
# queued and being sent; one second later workspace B XADDs 10. Prints how long B's
# jobs took from XADD to their committed outcome, and how much of A's backlog was
# still queued when B's last one was recorded. Then waits for A's backlog to drain.
bench_fairness() {
    local a=${WS[0]} b=${WS[1]} resp=$dir/fair.resp n=$FAIR_N
    say "scenario fairness: $n jobs queued for one workspace, then 10 for another"
    reset_tables
    local WS=("$a")   # gen_resp round-robins over WS: here only A
    gen_resp "$n" "$resp" || return 1
    rcli --pipe <"$resp" >"$dir/pipe.out" 2>&1 && grep -q "errors: 0, replies: $n" "$dir/pipe.out" ||
        { echo "bench: redis-cli --pipe:" >&2; cat "$dir/pipe.out" >&2; return 1; }
    rm -f "$resp"
    sleep 1
    local k
    for ((k = 0; k < 10; k++)); do
        rcli XADD "pmx:{$b}:jobs" '*' from "news@b1.bench.example" to "fair$k@example.net" \
            subject "Fairness $k" text "small workspace, message $k" >/dev/null || return 1
    done
    local deadline=$((SECONDS + 60)) got=0 backlog
    while ((SECONDS < deadline)); do
        got=$(q "select count(*) from recipients where address like 'fair%' and status = 'sent'")
        ((got >= 10)) && break
        sleep 0.2
    done
    backlog=$(rcli XLEN "pmx:{$a}:jobs")
    ((got >= 10)) || { echo "bench: fairness: only $got of 10 sent after 60 s" >&2; return 1; }
    local row
    row=$(q "select round(max(extract(epoch from r.updated_at) * 1000
                             - split_part(m.job_id, '-', 1)::bigint)::numeric, 1),
                    round(percentile_cont(0.5) within group (order by
                             extract(epoch from r.updated_at) * 1000
                             - split_part(m.job_id, '-', 1)::bigint)::numeric, 1)
               from recipients r join messages m on m.id = r.message_id
              where r.address like 'fair%'" | tr '|' ' ')
    local worst med
    read -r worst med <<<"$row"
    put "fairness: B's 10 jobs behind A's $n, XADD -> sent" f_lat \
        "p50 $med / max $worst ms (goal: all within 2000 ms)"
    put "fairness: A's jobs still in its stream by then" f_left "$backlog of $n"
    say "fairness: waiting for the backlog to drain"
    wait_sent $((n + 10)) || return 1
}

bench_openssl() {
    local np out rsa ed
    np=$(getconf _NPROCESSORS_ONLN)
    say "scenario openssl: openssl speed -seconds 3 -multi $np rsa2048 ed25519"
    out=$(openssl speed -seconds 3 -multi "$np" rsa2048 ed25519 2>/dev/null) || return 1
    rsa=$(awk '/^rsa 2048 bits/ { print $(NF - 1) }' <<<"$out")
    ed=$(awk '/EdDSA \(Ed25519\)/ { print $(NF - 1) }' <<<"$out")
    [[ -n $rsa && -n $ed ]] || { echo "bench: cannot parse openssl speed output" >&2; return 1; }
    put "openssl RSA-2048 sign/s ($np processes)" o_rsa "$rsa"
    put "openssl Ed25519 sign/s ($np processes)" o_ed "$ed"
    # One signature's CPU, from a single-process run: openssl speed reports the
    # operations and the CPU time they took ("... 2048 bits private RSA's in
    # 1.98s"), so other work on the machine does not inflate it the way it lowers
    # the sign/s above.
    local one
    one=$(openssl speed -seconds 2 rsa2048 ed25519 2>&1)
    O_RSA_US=$(awk '/private RSA.s in/ { for (i = 1; i <= NF; i++) if ($i == "in") { t = $(i + 1); sub("s", "", t) }
                    split($0, a, ": "); split(a[2], b, " "); printf "%.0f", t * 1e6 / b[1]; exit }' <<<"$one")
    O_ED_US=$(awk '/Ed25519.s signs in|Ed25519 signs in/ { for (i = 1; i <= NF; i++) if ($i == "in") { t = $(i + 1); sub("s", "", t) }
                    split($0, a, ": "); split(a[2], b, " "); printf "%.0f", t * 1e6 / b[1]; exit }' <<<"$one")
    put "openssl CPU per signature (1 process): RSA-2048 / Ed25519" o_us "${O_RSA_US:-?} / ${O_ED_US:-?} µs"
    if [[ -n ${R[d_rate]-} ]]; then
        put "ratio: messages/s over RSA-2048 sign/s" o_ratio "$(awk -v m="${R[d_rate]}" -v r="$rsa" 'BEGIN { printf "%.2f", m / r }')"
        put "goal 2 KB RSA: half the RSA ceiling" o_goal "$(awk -v m="${R[d_rate]}" -v r="$rsa" \
            'BEGIN { printf "%.0f of %.0f messages/s (%s)", m, r / 2, (m >= r / 2 ? "reached" : "not reached") }')"
    fi
}

# profile_one LABEL COUNT KIND DOMPREFIX WS...: a burst under perf record (only the
# stack's processes); writes $dir/profile-LABEL.txt and prints it.
profile_one() {
    local label=$1 n=$2
    shift 2
    say "profile $label: $n messages under perf record -g (the postmux stack's processes)"
    local data=$dir/perf-$label.data pids
    # Only our processes (the machine may run other work): postmuxd and its workers,
    # redis-server, the postmaster and its backends, smtp-sink.
    pids=$( { tree "$DPID"; svc_pid redis; tree "$(svc_pid pg)"; tree "$(svc_pid smtp-sink)"; } | paste -sd, -)
    perf record -q -F 1999 -g -p "$pids" -o "$data" >"$dir/perf.log" 2>&1 &
    local ppid=$!
    sleep 1
    run_burst "$n" "$@" || { kill -INT "$ppid"; wait "$ppid"; return 1; }
    kill -INT "$ppid"
    wait "$ppid"
    local rep=(perf report -i "$data" --no-children -g none --stdio)
    local out=$dir/profile-$label.txt
    {
        echo "## [$label] CPU samples by process"
        "${rep[@]}" --sort comm 2>/dev/null | grep -E '^ +[0-9]' | head -n 8
        "${rep[@]}" --comm postmuxd --percentage relative --sort dso,sym 2>/dev/null |
            grep -E '^ +[0-9]' >"$dir/prof-pmxd.txt"
        echo "## [$label] postmuxd by shared object (% of postmuxd)"
        awk '{ sub("%", "", $1); t[$2] += $1 } END { for (d in t) printf "%8.2f%%  %s\n", t[d], d }' \
            "$dir/prof-pmxd.txt" | sort -rn | head -n 12
        echo "## [$label] postmuxd by function, top 30 (% of postmuxd; libcrypto has no symbols here:"
        echo "##   its unsymbolised addresses are RSA's bignum arithmetic and the hashes)"
        awk '{ sub("%", "", $1); k = $2 " " $4; if ($4 ~ /^0x/) k = $2 " (unsymbolised)"; t[k] += $1 }
             END { for (k in t) printf "%8.2f%%  %s\n", t[k], k }' "$dir/prof-pmxd.txt" | sort -rn | head -n 30
        echo "## [$label] postgres by function, top 15 (% of postgres)"
        "${rep[@]}" --comm postgres --percentage relative --sort dso,sym 2>/dev/null |
            grep -E '^ +[0-9]' | head -n 15
    } >"$out"
    cat "$out"
    [[ -n ${BENCH_PROFILE_KEEP-} ]] && cp "$data" "$BENCH_PROFILE_KEEP.$label"
    rm -f "$data"
}

# BENCH_PROFILE=1: one profiled burst per kind of BENCH_PROFILE_KINDS (rsa, ed25519,
# newsletter; newsletters are BENCH_PROFILE_MESSAGES / 5).
bench_profile() {
    [[ ${BENCH_PROFILE:-0} == 1 ]] || return 0
    command -v perf >/dev/null || { say "profile: no perf, skipped"; return 0; }
    local k done=()
    for k in ${BENCH_PROFILE_KINDS:-rsa ed25519 newsletter}; do
        case $k in
        rsa) profile_one rsa "$PROF_N" small b "${WS[@]}" || return 1 ;;
        ed25519) ((${#WS_ED[@]})) || continue
            profile_one ed25519 "$PROF_N" small e "${WS_ED[@]}" || return 1 ;;
        newsletter) profile_one newsletter $((PROF_N / 5)) news b "${WS[@]}" || return 1 ;;
        *) echo "bench: unknown profile kind $k" >&2; return 1 ;;
        esac
        done+=("$k")
    done
    put "profile" p_file "printed above (perf record -F 1999 -g; ${done[*]})"
}

# Workspace i of the limits scenario: "rate burst" (recipients/s).
limit_of() { local r=$((2 + ($1 % 10) * 2)); echo "$r $((r / 5 > 1 ? r / 5 : 1))"; }

bench_limits() {
    ((LIM_NWS > 0 && LIM_SECS > 0)) || { echo "bench: BENCH_LIMIT_WORKSPACES and BENCH_LIMIT_SECONDS must be > 0" >&2; return 1; }
    say "scenario limits: $LIM_NWS rate-limited workspaces, each with a backlog, ${LIM_SECS} s of sending"
    local i ws r b lws=() lim=$dir/limits.txt
    : >"$lim"
    for ((i = 0; i < LIM_NWS; i++)); do
        read -r r b <<<"$(limit_of "$i")"
        ws=$("$PMX" workspace create "Limited $i") || return 1
        "$PMX" domain add "$ws" "l$i.bench.example" --algorithm rsa --bits 2048 >/dev/null || return 1
        "$PMX" domain verify "l$i.bench.example" --skip-dns >/dev/null || return 1
        "$PMX" workspace set "$ws" --rate "$r/s" --burst "$b" >/dev/null || return 1
        lws+=("$ws")
        echo "$ws $r $b" >>"$lim"
    done
    # Settings reach the workers by NOTIFY; wait until every stream has its group.
    local deadline=$((SECONDS + 60)) ok
    while :; do
        ok=1
        for ws in "${lws[@]}"; do
            rcli XINFO GROUPS "pmx:{$ws}:jobs" 2>/dev/null | grep -qx postmux || { ok=0; break; }
        done
        ((ok)) && break
        ((SECONDS < deadline)) || { echo "bench: limited workspaces not read after 60 s" >&2; return 1; }
        sleep 0.5
    done
    reset_tables
    local resp=$dir/limits.resp
    "$PY" - "$lim" "$LIM_SECS" "$resp" <<'EOF' || return 1
import sys
lim, secs, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = [l.split() for l in open(lim)]
want = [int(int(r) * secs * 1.5) + int(b) for _, r, b in rows]
def cmd(*a):
    b = [x.encode() for x in a]
    return b"*%d\r\n" % len(b) + b"".join(b"$%d\r\n%s\r\n" % (len(x), x) for x in b)
with open(out, "wb") as f:
    for k in range(max(want)):            # interleaved: every backlog is there from the start
        for i, (ws, r, b) in enumerate(rows):
            if k < want[i]:
                f.write(cmd("XADD", "pmx:{%s}:jobs" % ws, "*", "from", "news@l%d.bench.example" % i,
                            "to", "u%d@example.net" % k, "subject", "limited %d" % k,
                            "text", "Hello,\nthis is limited message %d.\n" % k))
EOF
    local cpu0 cpu1 t0 t1 hz
    hz=$(getconf CLK_TCK)
    rcli CONFIG RESETSTAT >/dev/null
    cpu0=$(cpu_snapshot)
    t0=$(now_ms)
    rcli --pipe <"$resp" >"$dir/pipe.out" 2>&1 || { cat "$dir/pipe.out" >&2; return 1; }
    sleep "$LIM_SECS"
    cpu1=$(cpu_snapshot)
    t1=$(now_ms)
    local cmds
    cmds=$(redis_calls)
    # Counted now, before the backlog is trimmed: the rows of the measured window.
    q "select m.workspace_id, count(*), extract(epoch from min(r.updated_at)),
              extract(epoch from max(r.updated_at))
         from recipients r join messages m on m.id = r.message_id
        where r.status = 'sent' group by 1" | tr '|' ' ' >"$dir/limits.sent"
    rm -f "$resp"
    for ws in "${lws[@]}"; do rcli XTRIM "pmx:{$ws}:jobs" MAXLEN 0 >/dev/null; done
    local out
    out=$("$PY" - "$lim" "$dir/limits.sent" <<'EOF'
import sys
lim = {l.split()[0]: (int(l.split()[1]), int(l.split()[2])) for l in open(sys.argv[1])}
sent = {l.split()[0]: (int(l.split()[1]), float(l.split()[2]), float(l.split()[3]))
        for l in open(sys.argv[2]) if l.strip()}
errs, tot_rate, tot_lim, lines = [], 0.0, 0, []
for i, (ws, (r, b)) in enumerate(lim.items()):
    n, a, z = sent.get(ws, (0, 0.0, 0.0))
    got = (n - b) / (z - a) if n > b and z > a else 0.0
    err = (got - r) / r * 100
    errs.append((abs(err), ws, r, got))
    tot_rate += got
    tot_lim += r
    lines.append("%3d %s limit %3d/s burst %2d: %7.2f/s (%+.1f %%) %d sent" % (i, ws, r, b, got, err, n))
print("\n".join(lines))
worst = max(errs)
print("SUMMARY %.2f %s %d %.2f %.2f %d %.1f" % (worst[0], worst[1], worst[2], worst[3],
      sum(e[0] for e in errs) / len(errs), tot_lim, tot_rate))
EOF
) || return 1
    grep -v '^SUMMARY' <<<"$out" | sed 's/^/#   /'
    local maxerr wws wlim wgot meanerr totlim totrate
    read -r _ maxerr wws wlim wgot meanerr totlim totrate <<<"$(grep '^SUMMARY' <<<"$out")"
    put "limits: workspaces / seconds" l_n "$LIM_NWS / $LIM_SECS (backlog 1.5 × each limit)"
    put "limits: largest error against the limit" l_max "$maxerr % ($wws: $wgot/s for $wlim/s); mean $meanerr %"
    put "limits: total achieved / total of the limits" l_tot "$totrate / $totlim recipients/s"
    local n
    n=$(awk '{ s += $2 } END { print s + 0 }' "$dir/limits.sent")
    put "limits: CPU per message, all four (unlimited run: ${R[d_cpu_all]:-n/a} µs)" l_cpu \
        "$(cpu_us "$cpu0" "$cpu1" "$n")" "µs"
    put "limits: ... postmuxd / redis / postgres / smtp-sink" l_cpu4 \
        "$(cpu_us "$cpu0" "$cpu1" "$n" 1) / $(cpu_us "$cpu0" "$cpu1" "$n" 2) / $(cpu_us "$cpu0" "$cpu1" "$n" 3) / $(cpu_us "$cpu0" "$cpu1" "$n" 4)" "µs"
    put "limits: Redis commands while limited (calls)" l_cmds "$cmds"
    put "limits: machine CPU busy while limited" l_busy "$(awk -v hz="$hz" -v a="$cpu0" -v b="$cpu1" \
        -v ms="$((t1 - t0))" -v np="$(getconf _NPROCESSORS_ONLN)" 'BEGIN {
        split(a, x, " "); split(b, y, " "); printf "%.0f%% of %d CPUs", 100 * (y[5] - x[5]) / hz / (ms / 1000) / np, np }')"
    awk -v m="$maxerr" 'BEGIN { exit !(m <= 5) }' || { echo "bench: a workspace is more than 5 % off its limit" >&2; return 1; }
}

# One burst's messages/s and postmuxd CPU µs per message: "rate cpu".
burst_numbers() {
    local cnt first last p50 p99 max
    read -r cnt first last p50 p99 max <<<"$(latency_row)"
    local span=$((last - first))
    ((span > 0)) || span=1
    echo "$(awk -v n="$cnt" -v s="$span" 'BEGIN { printf "%.0f", n * 1000 / s }')" \
         "$(cpu_us "$BURST_CPU0" "$BURST_CPU1" "$cnt" 1)"
}

# New workers, and wait until every one of them reads the streams (SIGHUP replaces
# them one by one). A worker reads no job before its suppression list is loaded, so
# after this every check meets the whole list. (postmuxd runs at log_level warn here,
# so there is no "suppressions loaded" line to wait for.)
new_workers() {
    local old w gone c deadline=$((SECONDS + 300))
    old=$(workers)
    kill -HUP "$DPID"
    while :; do
        gone=1
        for w in $old; do kill -0 "$w" 2>/dev/null && gone=0; done
        c=$(rcli CLIENT LIST | grep -c 'cmd=xreadgroup')
        ((gone && $(workers | wc -w) >= NWORKERS && c >= NWORKERS)) && return 0
        ((SECONDS < deadline)) || { echo "bench: the new workers did not start reading" \
            "(old gone: $gone, workers: $(workers | paste -sd' '), xreadgroup clients: $c)" >&2
            tail -n 20 "$DLOG" >&2; return 1; }
        sleep 0.2
    done
}

bench_suppression() {
    say "scenario suppression: $N messages without, then with $SUPP_N suppressed addresses"
    # Both bursts run on freshly started workers, so they compare like with like.
    q "TRUNCATE suppressions" >/dev/null
    new_workers || return 1
    run_burst "$N" || return 1
    local without with t0
    without=$(burst_numbers)
    q "insert into suppressions (workspace_id, address, reason)
       select (array[$(printf "'%s'," "${WS[@]}" | sed 's/,$//')])[1 + g % $NWS],
              'listed' || g || '@list.test', 'manual'
         from generate_series(1, $SUPP_N) g" >/dev/null || return 1
    t0=$(now_ms)
    new_workers || return 1
    put "suppression: SIGHUP to new workers reading, list of $SUPP_N loaded" s_load "$(($(now_ms) - t0)) ms"
    run_burst "$N" || return 1
    with=$(burst_numbers)
    local r0 c0 r1 c1
    read -r r0 c0 <<<"$without"
    read -r r1 c1 <<<"$with"
    put "suppression: throughput without / with the list" s_rate "$r0 / $r1 messages/s"
    put "suppression: postmuxd CPU per message without / with" s_cpu "$c0 / $c1 µs"
    put "suppression: throughput with the list, of without" s_ratio \
        "$(awk -v a="$r0" -v b="$r1" 'BEGIN { printf "%.1f%%", 100 * b / (a ? a : 1) }')"
    local w hwm rss=()
    for w in $(workers); do
        hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$w/status" 2>/dev/null)
        rss+=("$w:$((hwm / 1024)) MB")
    done
    put "suppression: peak RSS per worker with the list" s_rss "${rss[*]}"
    q "TRUNCATE suppressions" >/dev/null
}

# The other benches start services of their own: not this run's (they would use
# them when these variables are set).
other_bench() {
    [[ -f $root/tests/bench/$1 ]] || return 0
    say "scenario ${1%.sh}: tests/bench/$1"
    env -u PMX_PG_HOST -u PMX_PG_PORT -u PMX_PG_USER -u PMX_REDIS_SOCK -u PMX_REDIS_PORT \
        -u PMX_SINK_PORT -u PMX_DNS_PORT -u POSTMUX_CONFIG bash "$root/tests/bench/$1"
}
bench_ratelimit() { other_bench ratelimit.sh; }
bench_submission() { other_bench submission.sh; }
bench_feedback() { other_bench feedback.sh; }
bench_submission_memory() { other_bench submission_memory.sh; }

summary() {
    local l label key unit
    echo
    echo "==================== postmux bench summary ===================="
    printf '%-52s %s\n' "machine" "$(getconf _NPROCESSORS_ONLN) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(uname -r)"
    printf '%-52s %s\n' "workspaces / workers" "$NWS / $NWORKERS (workers = auto), relay smtp-sink on loopback, no dumps"
    for l in "${ORDER[@]}"; do
        IFS='|' read -r label key unit <<<"$l"
        printf '%-52s %s%s\n' "$label" "${R[$key]}" "${unit:+ $unit}"
    done
    if ((${#SIDE[@]})); then
        # Side by side. "outside sig": all four minus one signature's CPU as openssl
        # speed measured it in this run (RSA-2048 or Ed25519), when it ran.
        echo
        printf '%-13s %7s %9s %9s | %8s %8s %6s %6s %6s %11s | %7s\n' scenario msgs/s "p50 ms" "p99 ms" \
            postmuxd postgres redis sink "all 4" "outside sig" "RSS MB"
        local row t rate p50 p99 c1 c2 c3 c4 call rss P sig out
        for row in "${SIDE[@]}"; do
            IFS='|' read -r t rate p50 p99 c1 c2 c3 c4 call rss P <<<"$row"
            sig=${O_RSA_US-}
            [[ $P == e ]] && sig=${O_ED_US-}
            out=n/a
            [[ -n $sig ]] && out=$((call - sig))
            printf '%-13s %7s %9s %9s | %8s %8s %6s %6s %6s %11s | %7s\n' "$t" "$rate" "$p50" "$p99" \
                "$c1" "$c2" "$c3" "$c4" "$call" "$out" "$rss"
        done
        echo "(CPU in µs per message; p50/p99 from XADD to the committed outcome, queueing included)"
    fi
    echo "================================================================"
}

# ---- main -----------------------------------------------------------------------
# Scenarios with benches of their own run after the summary and print their own.
own=" ratelimit submission submission_memory feedback "
needs_services=0
for s in $SCENARIOS; do
    [[ $own == *" $s "* ]] || needs_services=1
done
if ((needs_services)); then
    setup
    for s in $SCENARIOS; do
        [[ $own == *" $s "* ]] && continue
        if ! "bench_$s"; then
            echo "bench: scenario $s failed" >&2
            failed=1
        fi
    done
    summary
    pmx_svc_stop_all
fi
for s in $SCENARIOS; do
    if [[ $own == *" $s "* ]]; then
        "bench_$s" || { echo "bench: scenario $s failed" >&2; failed=1; }
    fi
done
exit "$failed"
