#!/usr/bin/env bash
# tests/bench/stats_bench.sh — how fast `postmux stats` is on 10 million event rows
# (issue 7), and what its rollup (sql/002_stats.sql) costs on the write path.
#
#   bash tests/bench/stats_bench.sh            (after `make`; uses build/release)
#   STATS_BENCH_EVENTS=10000000 STATS_BENCH_WS=20 STATS_BENCH_DAYS=90 STATS_BENCH_RUNS=5
#   STATS_BENCH_BUILD=build/release
#
# In a throwaway Postgres (scripts/services.sh: fsync off, shared_buffers 64MB) and
# database, after `postmux migrate`: STATS_BENCH_WS workspaces; EVENTS/4 messages
# spread evenly over STATS_BENCH_DAYS days, inserted in time order; 1.6 recipients per message (70 % sent,
# 10 % bounced, 5 % each deferred/rejected/suppressed/queued); EVENTS events, each
# for one of those messages at its time, inserted 1,000,000 per statement (so the
# rollup triggers run on big statements as well as, below, on small ones).
# Then prints:
#   1. the fill time, the table sizes, the rollup's rows and the time to fold the
#      fill's deltas (done once here, so that what follows sees the steady state);
#   2. `postmux stats` wall time (median of RUNS runs, the whole process: connect,
#      query, print) for --since 1h/24h/7d/all, all workspaces and one, and the same
#      counts taken from the base tables (what stats would cost without the rollup);
#   3. the write path: 2,000 INSERT statements of 200 events (the outcome writer's
#      batch size) and 2,000 upserts of 200 recipients, with the triggers and
#      without them (ALTER TABLE ... DISABLE TRIGGER).
# Exits 1 if a stats run fails or its JSON total differs from the base tables.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
nev=${STATS_BENCH_EVENTS:-10000000}
nws=${STATS_BENCH_WS:-20}
days=${STATS_BENCH_DAYS:-90}
runs=${STATS_BENCH_RUNS:-5}
build=${STATS_BENCH_BUILD:-build/release}
[[ $build == /* ]] || build=$root/$build
pmx=$build/bin/postmux
if [[ ! -x $pmx ]]; then
    echo "stats bench: no $pmx (run make first)" >&2
    exit 1
fi

# shellcheck source=../../scripts/services.sh
source "$root/scripts/services.sh"
pmx_svc_pg_start >/dev/null || { echo "stats bench: cannot start PostgreSQL" >&2; exit 1; }
dir=$PMX_SVC_DIR
db=stats_bench
psql_() { "$PMX_PG_BIN/psql" -XAtq -v ON_ERROR_STOP=1 -h "$PMX_PG_HOST" -p "$PMX_PG_PORT" -U "$PMX_PG_USER" "$@"; }
q() { psql_ -d "$db" -c "$1"; }
psql_ -d postgres -c "CREATE DATABASE $db" || exit 1

pmx_svc_postgres_conf "$dir/postmux.conf" "$db" || exit 1
export POSTMUX_CONFIG=$dir/postmux.conf
"$pmx" migrate >/dev/null || { echo "stats bench: migrate failed" >&2; exit 1; }

now_ms() { date +%s%3N; }
# ms WHAT CMD...: runs CMD, prints its wall time in ms to stdout (output to a file)
ms() {
    local t0 t1
    t0=$(now_ms)
    "$@" >"$dir/last.out" 2>"$dir/last.err" || { echo "stats bench: failed: $*" >&2; cat "$dir/last.err" >&2; exit 1; }
    t1=$(now_ms)
    echo $((t1 - t0))
}
# median of RUNS timings of CMD...
median() {
    local i t=()
    for ((i = 0; i < runs; i++)); do t+=("$(ms "$@")"); done
    printf '%s\n' "${t[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'
}

nmsg=$((nev / 4))
span=$((days * 86400))
echo "# stats bench: $nev events, $nmsg messages, $nws workspaces, $days days; $(nproc) CPUs; PostgreSQL $(q 'show server_version')"

t0=$(now_ms)
q "INSERT INTO workspaces (id, name)
   SELECT 'ws_bench' || translate(lpad(i::text, 11, '0'), '0123456789', 'abcdefghij'), 'bench' || i
     FROM generate_series(0, $nws - 1) i" || exit 1
# message g: workspace g % nws, created (nmsg - g) * span / nmsg seconds ago: in time
# order, as the outcome writer appends them (recent messages sit together at the end)
q "CREATE FUNCTION pg_temp.ws(g bigint) RETURNS text IMMUTABLE LANGUAGE sql AS
   \$\$ SELECT 'ws_bench' || translate(lpad((g % $nws)::text, 11, '0'), '0123456789', 'abcdefghij') \$\$;
   INSERT INTO messages (id, workspace_id, job_id, mail_from, source, created_at)
   SELECT 'msg_' || g, pg_temp.ws(g), g::text, 'a@x.example', 'redis',
          now() - ((($nmsg - g)::bigint * $span) / $nmsg) * interval '1 second'
     FROM generate_series(1, $nmsg) g" || exit 1
q "INSERT INTO recipients (message_id, address, status)
   SELECT 'msg_' || g, 'to' || k || '@y.example',
          (ARRAY['sent','sent','sent','sent','sent','sent','sent','bounced','deferred','rejected',
                 'sent','sent','sent','sent','sent','sent','sent','bounced','suppressed','queued'])
          [1 + (g * 3 + k) % 20]
     FROM generate_series(1, $nmsg) g, generate_series(1, 2) k
    WHERE k = 1 OR g % 5 < 3" || exit 1
t1=$(now_ms)
chunk=1000000
for ((lo = 1; lo <= nev; lo += chunk)); do
    hi=$((lo + chunk - 1 < nev ? lo + chunk - 1 : nev))
    q "CREATE FUNCTION pg_temp.ws(g bigint) RETURNS text IMMUTABLE LANGUAGE sql AS
       \$\$ SELECT 'ws_bench' || translate(lpad((g % $nws)::text, 11, '0'), '0123456789', 'abcdefghij') \$\$;
       INSERT INTO events (workspace_id, message_id, recipient, type, created_at)
       SELECT pg_temp.ws(m), 'msg_' || m, 'to1@y.example',
              (ARRAY['message.queued','message.sent','message.sent','message.deferred','message.bounced',
                     'message.queued','message.sent','message.rejected','message.sent','message.suppressed'])
              [1 + e % 10],
              now() - ((($nmsg - m)::bigint * $span) / $nmsg) * interval '1 second' + (e % 7) * interval '1 second'
         FROM (SELECT e, 1 + e % $nmsg AS m FROM generate_series($lo, $hi) e) s" || exit 1
done
t2=$(now_ms)
q "VACUUM ANALYZE" || exit 1
t3=$(now_ms)
echo "fill: messages+recipients $(((t1 - t0) / 1000)) s, events $(((t2 - t1) / 1000)) s ($(( (t2 - t1) * 1000 / nev )) us/row incl. triggers), vacuum analyze $(((t3 - t2) / 1000)) s"
echo "rollup before folding: $(q 'select count(*) from stats_counts') rows ($(q 'select count(*) from stats_counts where not folded') unfolded)"
t0=$(now_ms)
q "SELECT pmx_stats_fold()" >/dev/null || exit 1
q "VACUUM ANALYZE stats_counts" || exit 1
echo "fold of the bulk fill's deltas (the triggers do this every ~64 statements): $(($(now_ms) - t0)) ms"
echo "rows: messages $(q 'select count(*) from messages'), recipients $(q 'select count(*) from recipients'), events $(q 'select count(*) from events'), stats_counts $(q 'select count(*) from stats_counts') ($(q 'select count(*) from stats_counts where not folded') unfolded); events table $(q "select pg_size_pretty(pg_total_relation_size('events'))"), stats_counts $(q "select pg_size_pretty(pg_total_relation_size('stats_counts'))")"

# The truth for a window, from the base tables: "recipients events" totals.
truth() {
    local since=$1 wsf=${2:-true}
    q "SELECT (SELECT count(*) FROM recipients r JOIN messages m ON m.id = r.message_id
                WHERE m.created_at >= $since AND $wsf)
           || ' ' ||
           (SELECT count(*) FROM events m WHERE m.created_at >= $since AND type LIKE 'message.%' AND $wsf)"
}
json_totals() {
    /usr/bin/python3 -c "import json,sys; j=json.load(sys.stdin); print(j['total']['recipients']['total'], j['total']['events']['total'])" <"$dir/last.out"
}

ws1=$(q "select id from workspaces order by name limit 1")
printf '\n%-46s %10s %14s %16s\n' "postmux stats" "median ms" "rows counted" "base tables ms"
rc=0
for args in "--since 1h" "--since 24h" "--since 7d" "--since all" "--workspace $ws1 --since 24h" "--workspace $ws1 --since all"; do
    # shellcheck disable=SC2086
    t=$(median "$pmx" stats $args --json)
    got=$(json_totals)
    since=$(/usr/bin/python3 -c "import json; s=json.load(open('$dir/last.out'))['since']; print(repr(s) if s else \"'-infinity'\")" | tr '"' "'")
    wsf=true
    [[ $args == *--workspace* ]] && wsf="m.workspace_id = '$ws1'"
    t0=$(now_ms)
    want=$(truth "${since}::timestamptz" "$wsf")
    tb=$(($(now_ms) - t0))
    [[ $got == "$want" ]] || { echo "stats bench: stats $args says '$got', base tables say '$want'" >&2; rc=1; }
    printf '%-46s %10s %14s %16s\n' "stats $args --json" "$t" "$(awk '{print $1 + $2}' <<<"$got")" "$tb"
done
t=$(median "$pmx" stats --since 24h)
printf '%-46s %10s\n' "stats --since 24h (text)" "$t"

# The write path: statement-level triggers on small autocommit statements, as
# the outcome writer makes them (one statement per batch of up to 200 items),
# driven by pgbench; with and without the triggers, alternately, 3 rounds each
# (the median round is shown: other work on the machine makes single runs noisy).
cat >"$dir/ev.sql" <<EOF
\set b random(0, $nmsg)
INSERT INTO events (workspace_id, message_id, recipient, type)
SELECT 'ws_bench' || translate(lpad((i % $nws)::text, 11, '0'), '0123456789', 'abcdefghij'),
       'msg_' || (1 + (:b + i) % $nmsg), 'to1@y.example', 'message.sent'
  FROM generate_series(1, 200) i;
EOF
cat >"$dir/rc.sql" <<EOF
\set b random(0, $nmsg)
INSERT INTO recipients AS r (message_id, address, status)
SELECT 'msg_' || (1 + (:b + i * 12347) % $nmsg), 'to1@y.example',
       (ARRAY['sent', 'bounced', 'deferred'])[1 + (:b + i) % 3]
  FROM generate_series(1, 200) i
ON CONFLICT (message_id, address) DO UPDATE SET status = EXCLUDED.status;
EOF
# "any age": 200 messages scattered over the whole period (12347 apart), each of
# another hour: the worst case. "last 24h": 200 consecutive messages of the last
# day, as retries are (max_queue_lifetime), whose rows are recent and share a few
# hours.
q "CREATE TABLE bench_recent AS
     SELECT row_number() OVER (ORDER BY id) AS i, id FROM messages
      WHERE created_at > now() - interval '24 hours';
   CREATE INDEX ON bench_recent (i); ANALYZE bench_recent" || exit 1
nrecent=$(q "select count(*) from bench_recent")
cat >"$dir/rc_recent.sql" <<EOF
\set b random(1, $((nrecent > 400 ? nrecent - 200 : 1)))
INSERT INTO recipients AS r (message_id, address, status)
SELECT id, 'to1@y.example', (ARRAY['sent', 'bounced', 'deferred'])[1 + (:b + i) % 3]
  FROM bench_recent WHERE i BETWEEN :b AND :b + 199
ON CONFLICT (message_id, address) DO UPDATE SET status = EXCLUDED.status;
EOF
# lat SCRIPT: pgbench's average statement latency (ms) over 1,000 statements
lat() {
    "$PMX_PG_BIN/pgbench" -n -h "$PMX_PG_HOST" -p "$PMX_PG_PORT" -U "$PMX_PG_USER" -f "$1" -t 1000 "$db" 2>&1 |
        awk '/latency average/ { print $4 }'
}
med3() { printf '%s\n' "$@" | sort -g | sed -n 2p; }
# wpath LABEL TABLE SCRIPT TRIGGER...: prints the median latency with and without the triggers
wpath() {
    local label=$1 table=$2 script=$3 on=() off=() i tr a b
    shift 3
    for ((i = 0; i < 3; i++)); do
        on+=("$(lat "$script")")
        for tr in "$@"; do q "ALTER TABLE $table DISABLE TRIGGER $tr" || exit 1; done
        off+=("$(lat "$script")")
        for tr in "$@"; do q "ALTER TABLE $table ENABLE TRIGGER $tr" || exit 1; done
    done
    a=$(med3 "${on[@]}")
    b=$(med3 "${off[@]}")
    [[ -n $a && -n $b ]] || { echo "stats bench: pgbench failed" >&2; exit 1; }
    printf '  %-30s %7.3f ms with the rollup trigger(s), %7.3f ms without (%+.3f ms)\n' \
        "$label:" "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN { print a - b }')"
}
echo
echo "write path, mean latency of one autocommit statement (pgbench, 1,000 statements, median of 3 rounds):"
wpath "events INSERT" events "$dir/ev.sql" events_stats
wpath "recipients upsert, any age" recipients "$dir/rc.sql" recipients_stats_insert recipients_stats_update
wpath "recipients upsert, last 24h" recipients "$dir/rc_recent.sql" recipients_stats_insert recipients_stats_update
echo "stats_counts after the write path: $(q 'select count(*) from stats_counts') rows ($(q 'select count(*) from stats_counts where not folded') unfolded)"
exit $rc
