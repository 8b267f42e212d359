#!/usr/bin/env bash
# tests/bench/ratelimit.sh — the rate limiter's benchmark (issue 5): 100 workspaces,
# each with its own rate limit, ask for more than they are allowed, from 2 processes
# at once (each workspace has 2 asking loops per process), against a throwaway
# redis-server, through tests/tools/ratelimit_probe (queue/ratelimit.h on a libuv
# loop). Prints the achieved rate of every workspace against its limit, the largest
# error, the total, and what the limiter cost (script calls, latency, CPU of the
# probes and of Redis).
#
#   bash tests/bench/ratelimit.sh            (after `make`; uses build/release)
#   RL_BENCH_WS=100 RL_BENCH_SECONDS=10 RL_BENCH_PROCS=2 RL_BENCH_BUILD=build/release
#
# Workspace i (0-based) is limited to 5·(i+1) recipients/s (5 … 500/s, 25,250/s in
# all), burst max(1, rate/10), and asks for (i mod 5) + 1 recipients at a time.
# Achieved rate = (recipients allowed − burst) / (last grant − first grant), both on
# Redis's clock. Exits 1 if a workspace is more than 5 % off its limit.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
nws=${RL_BENCH_WS:-100}
secs=${RL_BENCH_SECONDS:-10}
procs=${RL_BENCH_PROCS:-2}
build=${RL_BENCH_BUILD:-build/release}
[[ $build == /* ]] || build=$root/$build
probe=$build/tools/ratelimit_probe
if [[ ! -x $probe ]]; then
    echo "ratelimit bench: no $probe (run make first)" >&2
    exit 1
fi

# shellcheck source=../../scripts/services.sh
source "$root/scripts/services.sh"
pmx_svc_redis_start >/dev/null || { echo "ratelimit bench: cannot start redis-server" >&2; exit 1; }
dir=$PMX_SVC_DIR
rcli() { /usr/bin/redis-cli -s "$PMX_REDIS_SOCK" "$@"; }

limits=$dir/limits
for ((i = 0; i < nws; i++)); do
    rate=$((5 * (i + 1)))
    burst=$((rate / 10 > 1 ? rate / 10 : 1))
    printf 'ws_bench%03d %d %d 0 %d\n' "$i" "$rate" "$burst" $((i % 5 + 1))
done >"$limits"

# Redis's own CPU (s) and the script's call count, before and after.
redis_cpu() {
    rcli INFO cpu | tr -d '\r' |
        awk -F: '/^used_cpu_(user|sys):/ { s += $2 } END { printf "%.3f\n", s }'
}
rcli CONFIG RESETSTAT >/dev/null
cpu0=$(redis_cpu)

echo "# ratelimit bench: $nws workspaces, $procs processes x 2 loops each, ${secs} s"
pids=()
for ((p = 0; p < procs; p++)); do
    "$probe" --redis "unix:$PMX_REDIS_SOCK" --hammer "$limits" --run $((secs * 1000)) \
        --conc 2 >"$dir/p$p.out" 2>"$dir/p$p.err" &
    pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
cpu1=$(redis_cpu)
if ((rc)); then
    echo "ratelimit bench: a probe failed:" >&2
    cat "$dir"/p*.err >&2
    exit 1
fi
stats=$(rcli INFO commandstats | tr -d '\r' | grep -E '^cmdstat_evalsha?:')

cat "$dir"/p*.out | awk -v secs="$secs" -v procs="$procs" -v rcpu0="$cpu0" -v rcpu1="$cpu1" \
    -v stats="$stats" '
    function v(k,   i, a) {
        for (i = 1; i <= NF; i++) if (index($i, k "=") == 1) return substr($i, length(k) + 2)
        return ""
    }
    /^ws / {
        w = v("ws")
        if (!(w in rate)) { order[++nw] = w; first[w] = 0; last[w] = 0 }
        rate[w] = v("rate"); burst[w] = v("burst"); n[w] = v("n")
        rcpt[w] += v("rcpt"); grants[w] += v("grants")
        refused[w] += v("refused_rate"); errors += v("errors")
        f = v("first_us") + 0; l = v("last_us") + 0
        if (f && (!first[w] || f < first[w])) first[w] = f
        if (l > last[w]) last[w] = l
    }
    /^summary / {
        req += v("requests"); cpu += v("cpu_ms"); lat += v("lat_mean_us") * v("requests")
        if (v("lat_max_us") + 0 > latmax) latmax = v("lat_max_us") + 0
    }
    END {
        printf "%-12s %8s %6s %3s %10s %8s %9s %9s\n", "workspace", "limit/s", "burst", "n",
               "achieved/s", "error%", "grants", "refused"
        maxerr = 0; sumerr = 0
        for (i = 1; i <= nw; i++) {
            w = order[i]
            span = (last[w] - first[w]) / 1e6
            ach = span > 0 ? (rcpt[w] - burst[w]) / span : 0
            err = (ach - rate[w]) / rate[w] * 100
            e = err < 0 ? -err : err
            if (e > maxerr) { maxerr = e; worst = w }
            sumerr += e
            tl += rate[w]; ta += ach
            printf "%-12s %8.1f %6d %3d %10.2f %+8.2f %9d %9d\n", w, rate[w], burst[w], n[w],
                   ach, err, grants[w], refused[w]
        }
        split(stats, lines, "\n")
        calls = 0; usec = 0
        for (j in lines) {
            if (match(lines[j], /calls=[0-9]+/)) c = substr(lines[j], RSTART + 6, RLENGTH - 6)
            if (match(lines[j], /usec=[0-9]+/)) u = substr(lines[j], RSTART + 5, RLENGTH - 5)
            calls += c; usec += u
        }
        printf "\n"
        printf "total: limit %.0f recipients/s, achieved %.0f/s (%+.2f%%)\n", tl, ta, (ta - tl) / tl * 100
        printf "error per workspace: max %.2f%% (%s), mean %.2f%%\n", maxerr, worst, sumerr / nw
        printf "limiter: %d requests (%.0f/s), %d errors, latency mean %.0f us max %d us\n",
               req, req / secs, errors, req ? lat / req : 0, latmax
        printf "cost: script %.1f us/call in Redis; Redis CPU %.1f%% of a core; probes CPU %.1f%% of a core (%d processes)\n",
               calls ? usec / calls : 0, (rcpu1 - rcpu0) / secs * 100, cpu / 10 / secs, procs
        printf "ratelimit_bench workspaces=%d seconds=%d limit_total=%.0f achieved_total=%.0f max_err_pct=%.2f mean_err_pct=%.2f requests_per_s=%.0f redis_cpu_pct=%.1f\n",
               nw, secs, tl, ta, maxerr, sumerr / nw, req / secs, (rcpu1 - rcpu0) / secs * 100
        exit maxerr > 5 || errors > 0
    }'
