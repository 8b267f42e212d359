# shellcheck shell=bash disable=SC2154  # dir, PMX, PY, WS... are run.sh's
# tests/bench/http.sh — the `http` scenario of `make bench` (sourced by tests/bench/run.sh,
# which starts the services and postmuxd; see docs/bench.md "The HTTP API").
#
# BENCH_HTTP_REQUESTS (20,000) `POST /v1/emails` from BENCH_HTTP_CLIENTS (8) concurrent
# keep-alive clients — ApacheBench (`ab -k`, Debian apache2-utils) — against postmuxd's
# public listener ([http] listen on loopback, set up by run.sh's setup()), with delivery
# running: every accepted email is signed (RSA-2048) and relayed to the bench's smtp-sink
# by the same workers while the load runs. One workspace key with scope `send`
# (`postmux apikey create`); the API checks it through the worker's key cache
# (docs/http.md "API v1: sending"), so the load should cause no api_keys lookups in
# Postgres beyond the first per worker and the batched last_used_at writes: the table's
# index + sequential scans during the load are printed to show it.
#
# Prints requests/s, latency p50/p99/max (ab's, request sent → answer read), CPU µs per
# request of postmuxd, Redis, PostgreSQL and smtp-sink during the load and until the
# last accepted email was sent, every worker's peak RSS, the load average, and that
# every 202 became a `sent` recipient (202s counted as Redis XADDs; fails otherwise).

HTTP_N=${BENCH_HTTP_REQUESTS:-20000}
HTTP_C=${BENCH_HTTP_CLIENTS:-8}
# rsa: the From domain is b0.bench.example (RSA-2048); ed25519: e0.bench.example (run.sh's
# setup then creates the Ed25519-only workspaces too), to see the cost outside an RSA
# signature.
HTTP_ALG=${BENCH_HTTP_ALG:-rsa}

# Established connections on the public listener per worker pid, sampled once: "pid:n ...".
http_conns_per_worker() {
    ss -tnpH state established "( sport = :$HPORT )" 2>/dev/null |
        grep -oE 'pid=[0-9]+' | sort | uniq -c | awk '{ sub("pid=", "", $2); printf "%s:%s ", $2, $1 }'
}

# "seq_scan idx_scan" of api_keys, summed.
http_key_scans() {
    q "select coalesce(seq_scan, 0) + coalesce(idx_scan, 0) from pg_stat_user_tables where relname = 'api_keys'"
}

bench_http() {
    [[ -n ${HPORT-} ]] || { echo "bench: the public listener was not configured" >&2; return 1; }
    command -v ab >/dev/null || { echo "bench: ab (apache2-utils) is missing: scripts/deps.sh" >&2; return 1; }
    say "scenario http: $HTTP_N x POST /v1/emails, $HTTP_C keep-alive clients (ab -k), delivery running"
    local ws dom
    case $HTTP_ALG in
        rsa) ws=${WS[0]} dom=b0 ;;
        ed25519) ws=${WS_ED[0]-} dom=e0 ;;
        *) echo "bench: BENCH_HTTP_ALG must be rsa or ed25519" >&2; return 1 ;;
    esac
    [[ -n $ws ]] || { echo "bench: no Ed25519 workspace" >&2; return 1; }
    reset_tables
    local key body=$dir/email.json out=$dir/ab.out csv=$dir/ab.csv
    key=$("$PMX" apikey create --workspace "$ws" --name bench-http --scopes send 2>/dev/null) ||
        { echo "bench: apikey create failed" >&2; return 1; }
    [[ -n $key ]] || { echo "bench: apikey create printed no key" >&2; return 1; }
    # A ~1.9 KB text email, like the delivery scenario's jobs.
    "$PY" - "$body" "$dom" <<'EOF' || return 1
import json, sys
text = "Hello,\n\n" + ("This is a postmux HTTP bench message, line of some length. " * 30) + "\n"
json.dump({"from": "Bench <news@%s.bench.example>" % sys.argv[2], "to": "user@example.net",
           "subject": "Bench HTTP message", "text": text}, open(sys.argv[1], "w"))
EOF
    local url=http://127.0.0.1:$HPORT/v1/emails code
    # One request first: the listener answers and the key works (and is now cached).
    code=$(curl -s -o "$dir/first.out" -w '%{http_code}' --max-time 10 -H "Authorization: Bearer $key" \
        -H 'Content-Type: application/json' --data-binary "@$body" "$url")
    [[ $code == 202 ]] || { echo "bench: first POST /v1/emails answered $code: $(head -c 300 "$dir/first.out")" >&2; return 1; }
    wait_sent 1 || return 1
    reset_tables
    local w
    for w in $(workers); do echo 5 >"/proc/$w/clear_refs" 2>/dev/null; done
    rcli CONFIG RESETSTAT >/dev/null
    local cpu0 cpu1 cpu2 load0 load1 scans0 scans1 xact0 xact1 t0 t1
    scans0=$(http_key_scans)
    xact0=$(q "select xact_commit from pg_stat_database where datname = 'postmux'")
    load0=$(cut -d' ' -f1-3 /proc/loadavg)
    cpu0=$(cpu_snapshot)
    t0=$(now_ms)
    # -l: the answers' lengths differ (entry ids), which is not a failure.
    ab -q -k -l -c "$HTTP_C" -n "$HTTP_N" -s 30 -p "$body" -T application/json \
        -H "Authorization: Bearer $key" -e "$csv" "$url" >"$out" 2>&1 &
    local abpid=$! conns
    sleep 1
    conns=$(http_conns_per_worker)
    wait "$abpid" || { echo "bench: ab failed:" >&2; tail -n 20 "$out" >&2; return 1; }
    t1=$(now_ms)
    cpu1=$(cpu_snapshot)
    load1=$(cut -d' ' -f1-3 /proc/loadavg)
    scans1=$(http_key_scans)
    xact1=$(q "select xact_commit from pg_stat_database where datname = 'postmux'")
    local calls accepted complete non2xx failed rps keepalive
    calls=$(redis_calls)
    accepted=$(grep -oE '(^| )xadd=[0-9]+' <<<"$calls" | cut -d= -f2)
    accepted=${accepted:-0}
    complete=$(awk -F: '/^Complete requests/ { gsub(/ /, "", $2); print $2 }' "$out")
    non2xx=$(awk -F: '/^Non-2xx responses/ { gsub(/ /, "", $2); print $2 }' "$out")
    failed=$(awk -F: '/^Failed requests/ { gsub(/ /, "", $2); print $2 }' "$out")
    keepalive=$(awk -F: '/^Keep-Alive requests/ { gsub(/ /, "", $2); print $2 }' "$out")
    rps=$(awk -F: '/^Requests per second/ { split($2, a, " "); print a[1] }' "$out")
    local p50 p99 pmax
    p50=$(awk -F, '$1 == 50 { print $2 }' "$csv")
    p99=$(awk -F, '$1 == 99 { print $2 }' "$csv")
    pmax=$(awk -F, '$1 == 100 { print $2 }' "$csv")
    # Sent during the load, then the rest of the backlog.
    local sent_at_end
    sent_at_end=$(q "select count(*) from recipients where status = 'sent'")
    wait_sent "$accepted" || return 1
    cpu2=$(cpu_snapshot)
    local sent
    sent=$(q "select count(*) from recipients where status = 'sent'")
    local ms=$((t1 - t0)) names=(postmuxd redis postgres smtp-sink) i
    ((ms > 0)) || ms=1
    put "[http] From domain" h_alg "$dom.bench.example ($HTTP_ALG)"
    put "[http] requests (ab -k -c $HTTP_C), complete / non-2xx / failed" h_n "$complete / ${non2xx:-0} / ${failed:-0}"
    put "[http] requests on a kept-alive connection (ab)" h_ka "${keepalive:-0}"
    put "[http] throughput (ab)" h_rate "$rps" "requests/s"
    put "[http] latency p50 / p99 / max (ab, request -> answer)" h_lat "$p50 / $p99 / $pmax ms"
    for i in 0 1 2 3; do
        put "[http] CPU per request during the load: ${names[i]}" "h_cpu_${names[i]}" \
            "$(cpu_us "$cpu0" "$cpu1" "$complete" $((i + 1)))" "µs"
    done
    put "[http] CPU per request during the load: all four" h_cpu_all "$(cpu_us "$cpu0" "$cpu1" "$complete")" "µs"
    put "[http] CPU per request, load + delivery until the last sent" h_cpu_end \
        "postmuxd $(cpu_us "$cpu0" "$cpu2" "$complete" 1), redis $(cpu_us "$cpu0" "$cpu2" "$complete" 2), postgres $(cpu_us "$cpu0" "$cpu2" "$complete" 3), smtp-sink $(cpu_us "$cpu0" "$cpu2" "$complete" 4), all four $(cpu_us "$cpu0" "$cpu2" "$complete") µs"
    put "[http] machine CPU busy during the load" h_busy "$(awk -v hz="$(getconf CLK_TCK)" -v a="$cpu0" -v b="$cpu1" \
        -v ms="$ms" -v np="$(getconf _NPROCESSORS_ONLN)" 'BEGIN {
        split(a, x, " "); split(b, y, " "); s = 0; for (i = 1; i <= 4; i++) s += y[i] - x[i]
        all = (y[5] - x[5]) / hz; ours = s / hz; wall = ms / 1000
        printf "%.0f%% of %d CPUs (postmux stack %.0f%%, anything else %.0f%%)",
            100 * all / wall / np, np, 100 * ours / wall / np, 100 * (all - ours) / wall / np }')"
    put "[http] load average before / after the load" h_load "$load0 / $load1"
    local hwm rss=()
    for w in $(workers); do
        hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$w/status" 2>/dev/null)
        rss+=("$w:$((${hwm:-0} / 1024)) MB")
    done
    put "[http] keep-alive connections per worker (pid:n, 1 s in)" h_conns "${conns:-none seen}"
    put "[http] peak RSS per worker (VmHWM)" h_rss "${rss[*]}"
    put "[http] api_keys scans in Postgres during the load" h_scans "$((scans1 - scans0)) for $complete requests"
    put "[http] Postgres commits during the load" h_xact "$((xact1 - xact0))"
    put "[http] accepted (202 = XADD) / sent during the load / sent at the end" h_sent "$accepted / $sent_at_end / $sent"
    put "[http] Redis commands (calls)" h_cmds "$calls"
    ((accepted > 0 && accepted == complete - ${non2xx:-0} && sent == accepted)) ||
        { echo "bench: http: $accepted accepted (XADD), $complete complete, ${non2xx:-0} non-2xx, $sent sent" >&2
          return 1; }
    (("$(q "select count(*) from recipients where status <> 'sent'")" == 0)) ||
        { echo "bench: http: recipients not sent" >&2; return 1; }
}
