#!/usr/bin/env bash
# tests/bench/submission.sh — the SMTP submission benchmark (issue 6): SUB_CLIENTS
# concurrent clients, each on one session authenticated over STARTTLS with a workspace
# API key, submit SUB_MESSAGES messages of SUB_SIZE octets in all to a release
# postmuxd; prints accepted messages/s and the time from DATA to `250` (p50/p90/p99),
# then waits (up to SUB_DELIVERY_WAIT s) for the pipeline to deliver them to an
# smtp-sink and prints how many were (recipients rows with status `sent`).
# The load generator is tests/bench/submission_load.py (Python's smtplib, threads).
#
#   bash tests/bench/submission.sh       (after `make`; `make bench` runs it)
#   SUB_CLIENTS=8 SUB_MESSAGES=2000 SUB_SIZE=2048 SUB_WORKERS=auto \
#   SUB_DELIVERY_WAIT=60 SUB_BUILD=build/release bash tests/bench/submission.sh
#
# Services. By default everything is throwaway, started here through
# scripts/services.sh and stopped at exit: PostgreSQL 15, Redis, smtp-sink (the relay
# every message goes to), postmuxd. An environment that already runs is used instead
# when these are set (as scripts/services.sh exports them):
#   PMX_PG_HOST PMX_PG_PORT [PMX_PG_USER]  a Postgres cluster (superuser, trust auth):
#                                          a database pmx_bench_sub_<random> is created
#                                          in it and dropped at exit
#   PMX_REDIS_SOCK                         a Redis (unix socket); the bench only adds
#                                          keys of its own fresh workspace
#   PMX_SINK_PORT                          an SMTP sink on 127.0.0.1 that accepts all
# Each one given must answer, or the bench stops (no silent fallback). postmuxd is
# always this script's own: [submission] listen on a free 127.0.0.1 port, a
# self-signed certificate (openssl req), auth_requires_tls = yes, [relay] the sink
# without TLS, [daemon] workers = SUB_WORKERS. Its config and log are in the run's
# temp dir (PMX_KEEP_TMP=1 keeps it).
#
# Fixtures: workspace "Bench", domain bench.test (`postmux domain add`, default RSA
# key, `postmux domain verify --skip-dns`), a workspace key (`postmux apikey create
# --workspace Bench --name bench`). Every message is From bench@bench.test to its own
# recipient r<N>@example.com, so delivery signs and relays each one.
#
# Last line: "submission_bench clients=… messages=… accepted=… msgs_per_s=… p50_ms=…
# p99_ms=… delivered=… delivery_s=…". Exits 1 if a message was not accepted or not
# delivered in time, 2 on a setup failure.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
clients=${SUB_CLIENTS:-8}
messages=${SUB_MESSAGES:-2000}
size=${SUB_SIZE:-2048}
workers=${SUB_WORKERS:-auto}
dwait=${SUB_DELIVERY_WAIT:-60}
build=${SUB_BUILD:-build/release}
[[ $build == /* ]] || build=$root/$build
PMX=$build/bin/postmux
PMXD=$build/bin/postmuxd
PY=/usr/bin/python3
LOAD=$root/tests/bench/submission_load.py

die() { echo "submission bench: $*" >&2; exit 2; }
posint() { [[ $2 =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive integer (got '$2')"; }
posint SUB_CLIENTS "$clients"
posint SUB_MESSAGES "$messages"
posint SUB_SIZE "$size"
posint SUB_DELIVERY_WAIT "$dwait"
((size >= 512)) || die "SUB_SIZE must be at least 512 (the headers take about 300 octets)"
[[ $workers == auto || $workers =~ ^[1-9][0-9]*$ ]] || die "SUB_WORKERS must be auto or a number"
[[ -x $PMX && -x $PMXD ]] || die "no postmux/postmuxd in $build/bin (run make first)"
[[ -x $PY ]] || die "no $PY"
command -v openssl >/dev/null || die "no openssl"

# shellcheck source=../../scripts/services.sh
source "$root/scripts/services.sh"
pmx_svc_init || die "cannot create a temp dir"
dir=$PMX_SVC_DIR

# ---- services: given ones must answer; missing ones are started here ------------------
if [[ -n ${PMX_PG_HOST-} ]]; then
    : "${PMX_PG_PORT:?PMX_PG_HOST is set, PMX_PG_PORT is not}" "${PMX_PG_USER:=postmux}"
    "$PMX_PG_BIN/pg_isready" -q -h "$PMX_PG_HOST" -p "$PMX_PG_PORT" -U "$PMX_PG_USER" -d postgres -t 5 ||
        die "PMX_PG_HOST=$PMX_PG_HOST PMX_PG_PORT=$PMX_PG_PORT does not answer"
    pg_from="given"
else
    pmx_svc_pg_start || die "could not start PostgreSQL (see above)"
    pg_from="started"
fi
if [[ -n ${PMX_REDIS_SOCK-} ]]; then
    pmx_svc__redis_ping "$PMX_REDIS_SOCK" || die "PMX_REDIS_SOCK=$PMX_REDIS_SOCK does not answer PING"
    redis_from="given"
else
    pmx_svc_redis_start >/dev/null || die "could not start redis-server (see above)"
    redis_from="started"
fi
if [[ -n ${PMX_SINK_PORT-} ]]; then
    pmx_svc__tcp_open "$PMX_SINK_PORT" || die "nothing listens on 127.0.0.1:$PMX_SINK_PORT (PMX_SINK_PORT)"
    sink_from="given"
else
    pmx_svc_sink_start "$dir/sink" >/dev/null || die "could not start smtp-sink (see above)"
    sink_from="started"
fi

db=pmx_bench_sub_$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
psql_admin() {
    "$PMX_PG_BIN/psql" -XAtq -v ON_ERROR_STOP=1 -h "$PMX_PG_HOST" -p "$PMX_PG_PORT" \
        -U "$PMX_PG_USER" -d "$1" -c "$2"
}
psql_admin postgres "CREATE DATABASE \"$db\"" >/dev/null || die "cannot create database $db"
pmx_svc_atexit "psql_admin postgres 'DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)' >/dev/null 2>&1"
q() { psql_admin "$db" "$1"; }

# ---- certificate, key, config, fixtures ---------------------------------------------------
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
pmx_svc_conf_set "$conf" delivery retry_base 1s
export POSTMUX_CONFIG=$conf

fixture() {   # fixture WHAT CMD...: runs a postmux verb, stops the bench if it fails
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
[[ -s $dir/apikey ]] || die "apikey create printed no key"

# ---- postmuxd ----------------------------------------------------------------------------
pmx_svc_run postmuxd "$PMXD" -c "$conf" || die "could not start postmuxd"
dpid=$PMX_RUN_PID
dlog=$PMX_RUN_LOG
# Stopped before the database is dropped (atexit runs last-registered first).
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

greeting() {
    "$PY" - "$port" <<'EOF'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
sys.exit(0 if s.recv(512).startswith(b"220 ") else 1)
EOF
}
nworkers=""
for ((i = 0; i < 300; i++)); do
    kill -0 "$dpid" 2>/dev/null || { tail -n 20 "$dlog" >&2; die "postmuxd exited during start-up"; }
    [[ -z $nworkers ]] && nworkers=$(grep -oE 'starting workers=[0-9]+' "$dlog" | head -n 1 | cut -d= -f2)
    if [[ -n $nworkers ]] && grep -q 'ready workers=' "$dlog" &&
       (($(grep -c 'settings loaded' "$dlog") >= nworkers)) && greeting 2>/dev/null; then
        break
    fi
    sleep 0.1
done
((i < 300)) || { tail -n 20 "$dlog" >&2; die "postmuxd was not ready after 30 s"; }

# CPU seconds (user + system) of postmuxd and its workers.
daemon_cpu() {
    local p s f tot=0 tck
    tck=$(getconf CLK_TCK)
    for p in "$dpid" $(pgrep -P "$dpid"); do
        { s=$(<"/proc/$p/stat"); } 2>/dev/null || continue
        read -ra f <<<"${s##*) }"
        tot=$((tot + f[11] + f[12]))
    done
    awk -v t="$tot" -v k="$tck" 'BEGIN { printf "%.2f", t / k }'
}

# ---- the load --------------------------------------------------------------------------
echo "# submission bench: $clients clients x STARTTLS + AUTH PLAIN, $messages messages of $size octets," \
     "postmuxd $(basename "$build") with $nworkers workers on $(nproc) CPUs"
echo "# services: postgres $pg_from, redis $redis_from, smtp-sink $sink_from; postmuxd 127.0.0.1:$port"
# Busy and total jiffies of the whole machine (every CPU), from /proc/stat.
machine_cpu() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }
cpu0=$(daemon_cpu)
mach0=$(machine_cpu)
"$PY" "$LOAD" --port "$port" --cert "$cert" --key-file "$dir/apikey" --clients "$clients" \
    --messages "$messages" --size "$size" --from bench@bench.test --to-domain example.com \
    | tee "$dir/load.out"
load_rc=${PIPESTATUS[0]}
mach1=$(machine_cpu)
awk -v a="$mach0" -v b="$mach1" -v n="$(nproc)" 'BEGIN { split(a, x, " "); split(b, y, " ")
    if (y[2] > x[2]) printf "machine CPU busy during the load: %.0f%% of %d CPUs (everything, not only postmuxd)\n",
                            (y[1] - x[1]) / (y[2] - x[2]) * 100, n }'
line=$(grep '^submission_load ' "$dir/load.out")
[[ -n $line ]] || { tail -n 20 "$dlog" >&2; die "the load generator printed no summary (exit $load_rc)"; }
field() { grep -oE "(^| )$1=[^ ]+" <<<"$line" | cut -d= -f2; }
accepted=$(field accepted)
start_epoch=$(field start_epoch)
end_epoch=$(field end_epoch)

# ---- delivery ------------------------------------------------------------------------------
sent_q="select count(*) from recipients r join messages m on m.id = r.message_id
        where m.workspace_id = '$ws' and m.source = 'smtp' and r.status = 'sent'"
delivered=0
deadline=$((SECONDS + dwait))
while :; do
    delivered=$(q "$sent_q" 2>/dev/null || echo 0)
    ((delivered >= accepted)) && break
    ((SECONDS < deadline)) || break
    sleep 0.5
done
done_epoch=$(q "select coalesce(extract(epoch from max(r.updated_at)), 0)
                from recipients r join messages m on m.id = r.message_id
                where m.workspace_id = '$ws' and r.status = 'sent'")
others=$(q "select string_agg(status || '=' || n, ' ' order by status) from
            (select r.status, count(*) n from recipients r join messages m on m.id = r.message_id
             where m.workspace_id = '$ws' and r.status <> 'sent' group by r.status) s")
delivery_s=$(awk -v a="$start_epoch" -v b="$done_epoch" 'BEGIN { printf "%.2f", ((b > a && a > 0) ? b - a : 0) }')
lag_s=$(awk -v a="$end_epoch" -v b="$done_epoch" 'BEGIN { d = b - a; printf "%.2f", (d > 0 ? d : 0) }')
echo "delivered: $delivered of $accepted accepted messages relayed to the sink (status sent)" \
     "within ${delivery_s} s of the first DATA, last one ${lag_s} s after the last 250${others:+; others: $others}"
cpu2=$(daemon_cpu)
awk -v c0="$cpu0" -v c1="$cpu2" -v n="$accepted" 'BEGIN { if (n > 0)
    printf "postmuxd CPU: %.2f s in all, %.2f ms per message (TLS sessions, submission and delivery)\n",
           c1 - c0, (c1 - c0) / n * 1000 }'
if [[ $sink_from == started ]]; then
    echo "sink: $(find "$dir/sink" -type f -name 'm.*' | wc -l) messages received by smtp-sink"
fi
awk -v d="$delivered" -v s="$delivery_s" 'BEGIN { if (s > 0) printf "delivery: %.1f messages/s end to end\n", d / s }'

rate=$(field msgs_per_s)
echo "submission_bench clients=$clients messages=$messages size=$size workers=$nworkers" \
     "accepted=$accepted msgs_per_s=$rate p50_ms=$(field p50_ms) p90_ms=$(field p90_ms)" \
     "p99_ms=$(field p99_ms) delivered=$delivered delivery_s=$delivery_s"
if ((load_rc != 0 || accepted != messages)); then
    echo "submission bench: $((messages - accepted)) messages were not accepted; postmuxd log: $dlog" >&2
    tail -n 10 "$dlog" >&2
    exit 1
fi
if ((delivered < accepted)); then
    echo "submission bench: only $delivered of $accepted messages delivered within ${dwait}s" >&2
    exit 1
fi
exit 0
