#!/usr/bin/env bash
# tests/bench/outcome_cost.sh — what the outcome statement (sql/outcomes.c) costs the
# Postgres backend per message, by batch size, without the rest of the stack.
#
#   bash tests/bench/outcome_cost.sh              (after `make tools`; uses build/release)
#   OUTCOME_COST_BATCHES="8 24 100" OUTCOME_COST_ROUNDS=5 OUTCOME_COST_ITEMS=6000
#   OUTCOME_COST_BUILD=build/release
#
# In a throwaway Postgres (scripts/services.sh: fsync off, synchronous_commit off) and
# database, after `postmux migrate` and one workspace: for each batch size B,
# OUTCOME_COST_ROUNDS rounds of two runs of tests/tools/outcomes_probe, one of 10
# batches and one of 10 batches plus OUTCOME_COST_ITEMS items (B items per batch, one
# `sent` recipient and one `message.sent` event per item, all submitted at once so that
# every statement is full).
# A run's backend exits with the probe, so its CPU shows in the postmaster's
# cutime + cstime (/proc/PID/stat); the difference between the long and the short runs
# leaves out the connection's start and end. Prints per batch size the backend's CPU per
# message (µs, the rounds' median and range) and, from the smallest and largest sizes,
# the split into a cost per statement and a cost per message (least squares over
# cost(B) = per_message + per_statement / B).
#
# The rounds differ by ±10 % on a 2-vCPU VM with nothing else running; compare
# variants alternately, in one invocation each, several times.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
batches=${OUTCOME_COST_BATCHES:-8 24 100}
rounds=${OUTCOME_COST_ROUNDS:-5}
items=${OUTCOME_COST_ITEMS:-20000}
build=${OUTCOME_COST_BUILD:-build/release}
[[ $build == /* ]] || build=$root/$build
pmx=$build/bin/postmux probe=$build/tools/outcomes_probe
for b in "$pmx" "$probe"; do
    [[ -x $b ]] || { echo "outcome cost: no $b (run make && make tools first)" >&2; exit 1; }
done
[[ $rounds =~ ^[1-9][0-9]{0,2}$ && $items =~ ^[1-9][0-9]{2,5}$ ]] ||
    { echo "outcome cost: OUTCOME_COST_ROUNDS 1-999, OUTCOME_COST_ITEMS 100-999999" >&2; exit 1; }
for b in $batches; do
    [[ $b =~ ^[1-9][0-9]{0,2}$ && $b -le 200 ]] ||
        { echo "outcome cost: batch size $b: 1-200 (the writer's max_batch)" >&2; exit 1; }
done

# shellcheck source=../../scripts/services.sh
source "$root/scripts/services.sh"
pmx_svc_pg_start >/dev/null || { echo "outcome cost: cannot start PostgreSQL" >&2; exit 1; }
dir=$PMX_SVC_DIR
db=outcome_cost
"$PMX_PG_BIN/psql" -XAtq -v ON_ERROR_STOP=1 -h "$PMX_PG_HOST" -p "$PMX_PG_PORT" \
    -U "$PMX_PG_USER" -d postgres -c "CREATE DATABASE $db" >/dev/null || exit 1
conninfo="host=$PMX_PG_HOST port=$PMX_PG_PORT user=$PMX_PG_USER dbname=$db"

pmx_svc_postgres_conf "$dir/postmux.conf" "$db" || exit 1
export POSTMUX_CONFIG=$dir/postmux.conf
"$pmx" migrate >/dev/null || { echo "outcome cost: migrate failed" >&2; exit 1; }
ws=$("$pmx" workspace create "Outcome cost") || { echo "outcome cost: workspace create failed" >&2; exit 1; }

pm=$PMX_SVC__PG_PID
[[ -r /proc/$pm/stat ]] || { echo "outcome cost: no /proc/$pm/stat for the postmaster" >&2; exit 1; }
hz=$(getconf CLK_TCK)
# The children's CPU of the postmaster, in clock ticks (fields 16 and 17; the command
# name, field 2, has no spaces here).
children_ticks() { awk '{ print $16 + $17 }' "/proc/$pm/stat"; }

seq_=0
# run B NBATCHES: one probe run, prints the ticks its backend used
run() {
    local before after
    seq_=$((seq_ + 1))
    before=$(children_ticks)
    "$probe" --conninfo "$conninfo" --max-batch "$1" --flush-ms 1000 --generate $(($1 * $2)) \
        --workspace "$ws" --job-prefix "r$seq_" --rcpts 1 >"$dir/probe.out" 2>"$dir/probe.err" ||
        { echo "outcome cost: outcomes_probe failed:" >&2; tail -n 5 "$dir/probe.err" >&2; exit 1; }
    grep -q ' failed=0 ' "$dir/probe.out" ||
        { echo "outcome cost: items failed: $(tail -n 1 "$dir/probe.out")" >&2; exit 1; }
    # the postmaster reaps the backend after the probe has gone
    sleep 0.2
    after=$(children_ticks)
    echo $((after - before))
}

echo "# outcome cost: PostgreSQL $("$PMX_PG_BIN/postgres" --version | awk '{print $3}'), $(nproc) CPUs, $rounds rounds of 10 batches and of 10 batches + $items messages per size"
run 24 20 >/dev/null   # warm the catalog caches and the tables' first pages
declare -A med
for b in $batches; do
    vals=()
    for ((r = 0; r < rounds; r++)); do
        nb=$(((items + b - 1) / b))   # the long run's batches beyond the short run's 10
        short=$(run "$b" 10)
        long=$(run "$b" $((10 + nb)))
        vals+=("$(awk -v d=$((long - short)) -v hz="$hz" -v n=$((nb * b)) \
                    'BEGIN { printf "%.1f", d / hz * 1e6 / n }')")
    done
    line=$(printf '%s\n' "${vals[@]}" | sort -n | awk '{ a[NR] = $1 }
        END { printf "%.1f %.1f %.1f", a[int((NR + 1) / 2)], a[1], a[NR] }')
    read -r m lo hi <<<"$line"
    med[$b]=$m
    printf 'batch %3d: %6.1f µs of the backend per message (rounds %s–%s)\n' "$b" "$m" "$lo" "$hi"
done
# The fit needs two different sizes at least.
if (($(printf '%s\n' $batches | sort -u | wc -l) >= 2)); then
    awk -v pairs="$(for b in $batches; do printf '%s:%s ' "$b" "${med[$b]}"; done)" 'BEGIN {
        n = split(pairs, p, " ")
        for (i = 1; i <= n; i++) { split(p[i], kv, ":"); x = 1 / kv[1]; y = kv[2]
            sx += x; sy += y; sxx += x * x; sxy += x * y }
        slope = (n * sxy - sx * sy) / (n * sxx - sx * sx); icpt = (sy - slope * sx) / n
        printf "fit: %.0f µs per statement + %.1f µs per message\n", slope, icpt }'
fi
