#!/usr/bin/env bash
# tests/bench/submission_memory.sh — submission under a memory attack (issue "submission
# under attack", item 5; docs/submission.md "Memory"): SUBMEM_SESSIONS sessions (8) each
# stream SUBMEM_SIZE octets (24 MB) of DATA at once into a release postmuxd with
# SUBMEM_WORKERS workers (2) and the default [submission] memory_budget (or
# SUBMEM_BUDGET), over STARTTLS + AUTH; while they stream, SUBMEM_OTHERS (20) normal
# clients each submit one small message. Two runs:
#   unterminated  the big sessions never send the terminator (they close at the end);
#   terminated    they send it: some are queued (and delivered), some get 452 4.3.1.
# Prints each worker's peak RSS (VmHWM, reset through /proc/PID/clear_refs before each
# run) once every big session has streamed its data (before any terminator: what
# submission holds), and whether the normal clients were served; for the terminated
# run also the peak after the terminators and the delivery of what was accepted (that
# includes the delivery pipeline's memory for 24 MB jobs, not submission's). The load generator is
# tests/bench/submission_memory.py (Python's smtplib).
#
#   bash tests/bench/submission_memory.sh     (after `make`; `make bench` runs it)
#   SUBMEM_SESSIONS=8 SUBMEM_SIZE=24000000 SUBMEM_WORKERS=2 SUBMEM_BUDGET=64M \
#   SUBMEM_LIMIT_MIB=128 bash tests/bench/submission_memory.sh
#
# Services are throwaway (scripts/services.sh): PostgreSQL, Redis, smtp-sink, postmuxd.
# Last lines: "submission_memory_bench run=… peak_rss_streaming_mib=W1,W2 max_mib=…
# others=…/…". Exits 1 when a worker's peak RSS reached SUBMEM_LIMIT_MIB (128) while
# the sessions streamed or a normal client was not served, 2 on a setup failure.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
sessions=${SUBMEM_SESSIONS:-8}
size=${SUBMEM_SIZE:-24000000}
others=${SUBMEM_OTHERS:-20}
workers=${SUBMEM_WORKERS:-2}
budget=${SUBMEM_BUDGET:-}
limit=${SUBMEM_LIMIT_MIB:-128}
dwait=${SUBMEM_DELIVERY_WAIT:-180}
build=${SUBMEM_BUILD:-build/release}
[[ $build == /* ]] || build=$root/$build
PMX=$build/bin/postmux
PMXD=$build/bin/postmuxd
PY=/usr/bin/python3
LOAD=$root/tests/bench/submission_memory.py

die() { echo "submission memory bench: $*" >&2; exit 2; }
for v in sessions size others workers limit dwait; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
[[ -x $PMX && -x $PMXD ]] || die "no postmux/postmuxd in $build/bin (run make first)"
[[ -x $PY ]] || die "no $PY"
command -v openssl >/dev/null || die "no openssl"

# shellcheck source=../../scripts/services.sh
source "$root/scripts/services.sh"
pmx_svc_init || die "cannot create a temp dir"
dir=$PMX_SVC_DIR
pmx_svc_pg_start || die "could not start PostgreSQL (see above)"
pmx_svc_redis_start >/dev/null || die "could not start redis-server (see above)"
pmx_svc_sink_start "$dir/sink" >/dev/null || die "could not start smtp-sink (see above)"
: "${PMX_PG_USER:=postmux}"
db=pmx_bench_submem
"$PMX_PG_BIN/psql" -XAtq -v ON_ERROR_STOP=1 -h "$PMX_PG_HOST" -p "$PMX_PG_PORT" -U "$PMX_PG_USER" \
    -d postgres -c "CREATE DATABASE $db" >/dev/null || die "cannot create database $db"
q() { "$PMX_PG_BIN/psql" -XAtq -v ON_ERROR_STOP=1 -h "$PMX_PG_HOST" -p "$PMX_PG_PORT" \
        -U "$PMX_PG_USER" -d "$db" -c "$1"; }

cert=$dir/cert.pem
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$dir/key.pem" -out "$cert" -days 2 \
    -subj /CN=localhost -addext 'subjectAltName=DNS:localhost,IP:127.0.0.1' >"$dir/openssl.log" 2>&1 ||
    die "openssl req failed: $(tail -n 3 "$dir/openssl.log")"
port=$(pmx_svc_free_port) || die "no free port"
conf=$dir/postmux.conf
pmx_svc_postmux_conf "$conf" "$db" || die "cannot write the config"
pmx_svc_conf_set "$conf" daemon workers "$workers"
pmx_svc_conf_set "$conf" submission listen "127.0.0.1:$port"
pmx_svc_conf_set "$conf" submission tls_cert "$cert"
pmx_svc_conf_set "$conf" submission tls_key "$dir/key.pem"
pmx_svc_conf_set "$conf" submission auth_requires_tls yes
[[ -n $budget ]] && pmx_svc_conf_set "$conf" submission memory_budget "$budget"
pmx_svc_conf_set "$conf" delivery retry_base 1s
export POSTMUX_CONFIG=$conf

fixture() {
    local what=$1 out
    shift
    out=$("$@" 2>"$dir/fixture.err") || die "$what failed: $(tail -n 3 "$dir/fixture.err")"
    printf '%s\n' "$out"
}
fixture "postmux migrate" "$PMX" migrate >/dev/null || exit 2
ws=$(fixture "workspace create" "$PMX" workspace create Bench) || exit 2
fixture "domain add" "$PMX" domain add Bench bench.test >/dev/null || exit 2
fixture "domain verify" "$PMX" domain verify bench.test --skip-dns >/dev/null || exit 2
(umask 077 && fixture "apikey create" "$PMX" apikey create --workspace Bench --name bench >"$dir/apikey") ||
    exit 2

pmx_svc_run postmuxd "$PMXD" -c "$conf" || die "could not start postmuxd"
dpid=$PMX_RUN_PID
dlog=$PMX_RUN_LOG
# shellcheck disable=SC2317  # called by pmx_svc_atexit
stop_daemon() {
    local k
    kill -TERM "$dpid" 2>/dev/null || return 0
    for ((k = 0; k < 100; k++)); do
        kill -0 "$dpid" 2>/dev/null || return 0
        sleep 0.1
    done
}
pmx_svc_atexit stop_daemon
for ((i = 0; i < 300; i++)); do
    kill -0 "$dpid" 2>/dev/null || { tail -n 20 "$dlog" >&2; die "postmuxd exited during start-up"; }
    (($(grep -c 'settings loaded' "$dlog") >= workers)) && grep -q 'submission listening' "$dlog" && break
    sleep 0.1
done
((i < 300)) || { tail -n 20 "$dlog" >&2; die "postmuxd was not ready after 30 s"; }
wpids=$(pgrep -P "$dpid" | tr '\n' ' ')
[[ -n $wpids ]] || die "no worker processes under postmuxd $dpid"
budget_shown=$(grep -oE 'submission memory_budget=[0-9]+' "$dlog" | head -n 1 | cut -d= -f2)

# Peak RSS (MiB) of every worker since the last reset, comma-separated, and the largest.
peaks() {
    local p h out="" max=0
    for p in $wpids; do
        h=$(awk '/^VmHWM:/ { print int($2 / 1024) }' "/proc/$p/status" 2>/dev/null) || h=gone
        out+=${out:+,}$h
        [[ $h =~ ^[0-9]+$ ]] && ((h > max)) && max=$h
    done
    echo "$out $max"
}
reset_peaks() { local p; for p in $wpids; do echo 5 >"/proc/$p/clear_refs" 2>/dev/null; done; }
rss_now() {
    local p out=""
    for p in $wpids; do out+=${out:+,}$(awk '/^VmRSS:/ { print int($2 / 1024) }' "/proc/$p/status"); done
    echo "$out"
}

echo "# submission memory bench: $sessions sessions x $size octets of DATA at once (STARTTLS + AUTH)," \
     "$others normal clients meanwhile; $workers workers, memory_budget ${budget:-default}${budget_shown:+ ($budget_shown bytes)}," \
     "target: every worker under $limit MiB"
echo "# workers $wpids: RSS at rest $(rss_now) MiB"
failed=0
for run in unterminated terminated; do
    end=close
    [[ $run == terminated ]] && end=terminate
    sent0=$(q "select count(*) from recipients where status = 'sent'")
    go=$dir/go.$run
    reset_peaks
    "$PY" "$LOAD" --port "$port" --cert "$cert" --key-file "$dir/apikey" --sessions "$sessions" \
        --size "$size" --others "$others" --end "$end" --go-file "$go" >"$dir/load.$run" 2>&1 &
    lpid=$!
    while kill -0 "$lpid" 2>/dev/null && ! grep -q '^# every big session has streamed all' "$dir/load.$run"; do
        sleep 0.2
    done
    # Every big session has streamed all its data and holds it (or was cut short):
    # the peak so far is submission's alone.
    read -r pk max < <(peaks)
    touch "$go"
    wait "$lpid"
    load_rc=$?
    cat "$dir/load.$run"
    line=$(grep '^submission_memory ' "$dir/load.$run")
    [[ -n $line ]] || { tail -n 20 "$dlog" >&2; die "the load generator printed no summary (exit $load_rc)"; }
    field() { grep -oE "(^| )$1=[^ ]+" <<<"$line" | cut -d= -f2; }
    ok=$(field others_250)
    extra=""
    if [[ $run == terminated ]]; then
        want=$(( $(field big_250) + others ))
        deadline=$((SECONDS + dwait))
        while :; do
            sent=$(( $(q "select count(*) from recipients where status = 'sent'") - sent0 ))
            ((sent >= want || SECONDS >= deadline)) && break
            sleep 1
        done
        read -r pk2 _ < <(peaks)
        extra=" big_250=$(field big_250) big_452=$(field big_452) delivered=$sent/$want"
        extra+=" peak_after_end_and_delivery_mib=$pk2"
        echo "# after the terminators, the hand-off to Redis and the delivery of the accepted big" \
             "messages (the delivery pipeline's memory, outside the submission budget): peak $pk2 MiB"
    fi
    refusals=$(grep -c 'submission memory budget refused' "$dlog")
    echo "submission_memory_bench run=$run sessions=$sessions size=$size workers=$workers" \
         "peak_rss_streaming_mib=$pk max_mib=$max others=$ok/$others budget_refusals_logged=$refusals$extra"
    if ((max >= limit)); then
        echo "submission memory bench: a worker reached $max MiB while the sessions streamed (target: under $limit MiB) in the $run run" >&2
        failed=1
    fi
    if [[ $ok != "$others" ]]; then
        echo "submission memory bench: only $ok of $others normal clients were served in the $run run" >&2
        failed=1
    fi
done
exit "$failed"
