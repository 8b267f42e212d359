#!/usr/bin/env bash
# `postmux stats`: after a mixed run (sent, deferred, bounced, rejected,
# suppressed, queued; messages now, 3 days and 40 days old; a workspace that
# does not exist), the counts in text and in --json equal counts taken from
# messages/recipients/events directly, for several windows and per workspace;
# status changes written the way the outcome writer writes them (ON CONFLICT
# DO UPDATE) move the counts; folding the rollup changes no answer; migrating
# a database that already holds history fills the rollup; bad --since values
# are refused with one line.
source "$(dirname "$0")/lib.sh"
t_setup

t_run $PMX workspace create Acme
ACME=$T_OUT
t_run $PMX workspace create Globex
GLOBEX=$T_OUT
t_run $PMX workspace create Idle
IDLE=$T_OUT
GHOST=ws_ghostghostghost2

# mixed WS TAG AGE 'status n, ...': one message per recipient status item
# (every even one gets a second recipient, sent), created AGE ago; events: one
# message.<status> per recipient, a message.queued before each sent one, and a
# second message.deferred for each deferred one.
mixed() {
    t_psql "
    with spec(status, n) as (values $4),
    x as (select status, g, '$2' || status || g as k from spec, generate_series(1, n) g),
    m as (insert into messages (id, workspace_id, job_id, mail_from, source, created_at)
          select 'msg_' || k, '$1', k, 'a@x.example', 'redis', now() - interval '$3' from x),
    r as (insert into recipients (message_id, address, status)
          select 'msg_' || k, 'to' || g || '@y.example', status from x
          union all
          select 'msg_' || k, 'cc' || g || '@y.example', 'sent' from x where g % 2 = 0),
    e as (insert into events (workspace_id, message_id, recipient, type, created_at)
          select '$1', 'msg_' || k, 'to' || g || '@y.example', 'message.' || status,
                 now() - interval '$3' from x
          union all
          select '$1', 'msg_' || k, 'to' || g || '@y.example', 'message.queued',
                 now() - interval '$3' from x where status = 'sent'
          union all
          select '$1', 'msg_' || k, 'to' || g || '@y.example', 'message.deferred',
                 now() - interval '$3' from x where status = 'deferred'
          union all
          select '$1', 'msg_' || k, 'cc' || g || '@y.example', 'message.sent',
                 now() - interval '$3' from x where g % 2 = 0)
    select count(*) from x" >/dev/null
}
mixed "$ACME" a0 '1 minute' "('sent', 5), ('deferred', 3), ('bounced', 2), ('rejected', 2), ('suppressed', 1), ('queued', 1)"
mixed "$ACME" a3 '3 days' "('sent', 4), ('bounced', 1)"
mixed "$ACME" a40 '40 days' "('sent', 7), ('rejected', 3)"
mixed "$GLOBEX" g0 '2 minutes' "('sent', 2), ('bounced', 3), ('suppressed', 2)"
mixed "$GLOBEX" g3 '3 days' "('deferred', 2)"
mixed "$GHOST" h0 '1 minute' "('rejected', 2)"
t_psql "insert into events (workspace_id, type, detail) values ('$ACME', 'domain.verified', 'x.example')" >/dev/null

# The truth, from the base tables: "ws|r|status|n" and "ws|e|type|n" lines
# (non-zero only) for the window starting at $1 (an ISO time; '' = all time),
# optionally of one workspace ($2).
truth() {
    local since=${1:--infinity} ws=${2:-}
    local wf="true" wfm="true"
    [[ -n $ws ]] && wf="workspace_id = '$ws'" wfm="m.workspace_id = '$ws'"
    t_psql "
    select m.workspace_id || '|r|' || r.status || '|' || count(*)
      from recipients r join messages m on m.id = r.message_id
     where m.created_at >= '$since'::timestamptz and $wfm
     group by m.workspace_id, r.status
    union all
    select workspace_id || '|e|' || type || '|' || count(*) from events
     where created_at >= '$since'::timestamptz and type like 'message.%' and $wf
     group by workspace_id, type" | LC_ALL=C sort
}
# The same lines from `stats --json` output ($1).
from_json() {
    printf '%s' "$1" | /usr/bin/python3 -c '
import json, sys
j = json.load(sys.stdin)
for w in j["workspaces"]:
    for kind, key in (("r", "recipients"), ("e", "events")):
        for name, n in w[key].items():
            if name != "total" and n:
                print("%s|%s|%s|%d" % (w["workspace_id"], kind, name, n))
' | LC_ALL=C sort
}
# The same lines from the text tables ($1).
from_text() {
    printf '%s\n' "$1" | /usr/bin/python3 -c '
import sys
names = ["queued", "sent", "deferred", "bounced", "rejected", "suppressed"]
kind = None
for line in sys.stdin:
    f = line.split()
    if line.startswith("Recipients by status"): kind = "r"; continue
    if line.startswith("Events by type"): kind = "e"; continue
    if line.startswith("Rates"): kind = None; continue
    if not f or kind is None or f[0] in ("WORKSPACE", "total"): continue
    nums = [int(x) for x in f[-7:]]
    assert sum(nums[:6]) == nums[6], line
    for name, n in zip(names, nums[:6]):
        if n:
            print("%s|%s|%s|%d" % (f[0], kind, name if kind == "r" else "message." + name, n))
' | LC_ALL=C sort
}
json_get() { printf '%s' "$1" | /usr/bin/python3 -c "import json,sys; j=json.load(sys.stdin); print($2)"; }

# check_window ARGS...: stats ARGS --json and text agree with the truth.
check_window() {
    t_run $PMX stats "$@" --json
    t_expect_rc 0
    local js=$T_OUT since ws=""
    since=$(json_get "$js" "j['since'] or ''")
    [[ $* == *--workspace* ]] && ws=$(json_get "$js" "j['workspaces'][0]['workspace_id']")
    local want
    want=$(truth "$since" "$ws")
    [[ -n $want ]] || t_fail "no counts at all for: $*"
    t_expect_eq "$(from_json "$js")" "$want" "JSON = SQL for: $*"
    t_expect_eq "$(json_get "$js" "[j['total'][k]['total'] for k in ('recipients', 'events')]")" \
        "$(json_get "$js" "[sum(w[k]['total'] for w in j['workspaces']) for k in ('recipients', 'events')]")" \
        "totals = sum of rows for: $*"
    t_run $PMX stats "$@"
    t_expect_rc 0
    t_expect_eq "$(from_text "$T_OUT")" "$want" "text = SQL for: $*"
    if [[ -n $since ]]; then
        t_expect_match "$(head -n1 <<<"$T_OUT")" "^since $since \\(whole UTC hour\\) until " "window line"
    else
        t_expect_match "$(head -n1 <<<"$T_OUT")" "^all time until " "window line"
    fi
}

t_case "stats: default window (24h) = SQL, text and JSON"
check_window
t_run $PMX stats --json
t_expect_eq "$(json_get "$T_OUT" "j['workspaces'][[w['workspace_id'] for w in j['workspaces']].index('$ACME')]['recipients']")" \
    "{'queued': 1, 'sent': 10, 'deferred': 3, 'bounced': 2, 'rejected': 2, 'suppressed': 1, 'total': 19}" \
    "Acme recipients, by hand"
t_expect_eq "$(json_get "$T_OUT" "j['workspaces'][[w['workspace_id'] for w in j['workspaces']].index('$ACME')]['events']")" \
    "{'message.queued': 6, 'message.sent': 10, 'message.deferred': 6, 'message.bounced': 2, 'message.rejected': 2, 'message.suppressed': 1, 'total': 27}" \
    "Acme events, by hand (domain.verified not counted)"
since=$(json_get "$T_OUT" "j['since']")
t_expect_match "$since" '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:00:00Z$' "since is a whole hour"
t_expect_eq "$(t_psql "select date_trunc('hour', now() - interval '24 hours', 'UTC') = '$since'::timestamptz")" t \
    "since = the hour 24h ago"

t_case "stats: every workspace one row (idle ones too, unknown ids named), then a total"
t_run $PMX stats
t_expect_rc 0
t_expect_match "$T_OUT" "(^|$(printf '\n'))$IDLE +Idle +0 +0 +0 +0 +0 +0 +0($(printf '\n')|$)" "idle workspace row"
t_expect_match "$T_OUT" "$GHOST +\\(unknown\\) +0 +1 +0 +0 +2 +0 +3" "unknown workspace row"
t_expect_eq "$(grep -c '^total ' <<<"$T_OUT")" 3 "a total row per table (counts, events, rates)"
t_expect_eq "$(grep -cE "^($ACME|$GLOBEX|$IDLE|$GHOST) " <<<"$T_OUT")" 12 "4 rows per table"
t_run $PMX stats --json
t_expect_eq "$(json_get "$T_OUT" "[(w['name'], w['workspace_id']) for w in j['workspaces']]")" \
    "[('Acme', '$ACME'), ('Globex', '$GLOBEX'), ('Idle', '$IDLE'), (None, '$GHOST')]" "JSON rows"

t_case "stats: other windows (7d, 30m, 1h, 1000d, all) = SQL"
check_window --since 7d
check_window --since 30m
check_window --since 1h
check_window --since 1000d
check_window --since all
t_run $PMX stats --since all --json
t_expect_eq "$(json_get "$T_OUT" "j['since']")" "None" "all: since null"

t_case "stats --workspace: one workspace, no total row in text"
check_window --workspace Acme
check_window --workspace "$GLOBEX" --since all
t_run $PMX stats --workspace Acme --json
t_expect_eq "$(json_get "$T_OUT" "(len(j['workspaces']), j['total'] == {k: j['workspaces'][0][k] for k in ('recipients', 'events', 'rates')})")" \
    "(1, True)" "JSON: one row, total = the row"
t_run $PMX stats --workspace Acme
t_expect_eq "$(grep -c '^total ' <<<"$T_OUT")" 0 "no total row"
t_run $PMX stats --workspace Idle --json
t_expect_eq "$(json_get "$T_OUT" "(j['workspaces'][0]['recipients']['total'], j['workspaces'][0]['events']['total'])")" \
    "(0, 0)" "idle workspace"

t_case "stats: status changes as the outcome writer makes them move the counts"
# two deferred recipients of Acme are retried: one sent, one bounced; a sent one
# is never changed (WHERE r.status <> 'sent'), a new recipient is added.
t_psql "
insert into recipients as r (message_id, address, status, attempts)
values ('msg_a0deferred1', 'to1@y.example', 'sent', 2),
       ('msg_a0deferred2', 'to2@y.example', 'bounced', 2),
       ('msg_a0sent1', 'to1@y.example', 'deferred', 2),
       ('msg_a0sent1', 'new@y.example', 'deferred', 1)
on conflict (message_id, address) do update
   set status = excluded.status, attempts = excluded.attempts where r.status <> 'sent'" >/dev/null
t_psql "insert into events (workspace_id, message_id, recipient, type)
        values ('$ACME', 'msg_a0deferred1', 'to1@y.example', 'message.sent'),
               ('$ACME', 'msg_a0deferred2', 'to2@y.example', 'message.bounced')" >/dev/null
t_psql "update recipients set status = 'sent' where message_id = 'msg_a40rejected1'" >/dev/null
check_window --workspace Acme
check_window --since all
t_run $PMX stats --workspace Acme --json
t_expect_eq "$(json_get "$T_OUT" "j['workspaces'][0]['recipients']")" \
    "{'queued': 1, 'sent': 11, 'deferred': 2, 'bounced': 3, 'rejected': 2, 'suppressed': 1, 'total': 20}" \
    "Acme recipients after the retries, by hand"

t_case "stats: folding the rollup changes no answer"
t_run $PMX stats --since all --json
before=$(from_json "$T_OUT")
t_psql "select pmx_stats_fold()" >/dev/null
t_expect_eq "$(t_psql "select count(*) from stats_counts where not folded")" 0 "no deltas left"
t_expect_eq "$(t_psql "select count(*) from (select 1 from stats_counts group by hour, workspace_id, kind, name having count(*) > 1) d")" \
    0 "one row per key"
t_run $PMX stats --since all --json
t_expect_eq "$(from_json "$T_OUT")" "$before" "same counts"
check_window --since all

t_case "stats: 4 concurrent writers (upserts, events, folds) neither wait on each other nor drift"
# Each transaction: 20 recipients change status (in key order, as the outcome
# writer's ORDER BY does) and 20 events are appended; the triggers fold now and
# then. A deadlock or a serialization error would be a failed transaction.
t_psql "create table bench_ids as select row_number() over (order by message_id, address) as i,
        message_id, address from recipients" >/dev/null
nids=$(t_psql "select count(*) from bench_ids")
cat >"$T_DIR/conc.sql" <<EOF
\\set k random(1, $((nids - 20)))
INSERT INTO recipients AS r (message_id, address, status)
SELECT message_id, address, (ARRAY['sent', 'deferred', 'bounced', 'queued'])[1 + (i + :k + :client_id) % 4]
  FROM bench_ids WHERE i BETWEEN :k AND :k + 19 ORDER BY message_id, address
ON CONFLICT (message_id, address) DO UPDATE SET status = EXCLUDED.status;
INSERT INTO events (workspace_id, message_id, recipient, type)
SELECT m.workspace_id, b.message_id, b.address, 'message.deferred'
  FROM bench_ids b JOIN messages m ON m.id = b.message_id WHERE b.i BETWEEN :k AND :k + 19;
EOF
"$PMX_PG_BIN/pgbench" -n -h "$PMX_PG_HOST" -p "$PMX_PG_PORT" -U "$PMX_PG_USER" -c 4 -j 2 -T 5 \
    -f "$T_DIR/conc.sql" "$T_DB" >"$T_DIR/conc.out" 2>&1
rc=$?
t_expect_eq "$rc" 0 "pgbench exit status ($(grep -E 'ERROR|aborted|processed' "$T_DIR/conc.out" | head -n 3 | tr '\n' ' '))"
t_expect_match "$(cat "$T_DIR/conc.out")" 'number of transactions actually processed: [1-9][0-9]*' "transactions ran"
# (pgbench counts a deadlock or serialization failure here and still exits 0)
t_expect_match "$(cat "$T_DIR/conc.out")" 'number of failed transactions: 0 ' "no failed transaction"
t_expect_eq "$(t_psql "select count(*) from pg_stat_database where datname = '$T_DB' and deadlocks > 0")" 0 "no deadlocks"
check_window --since all
t_psql "select pmx_stats_fold()" >/dev/null
check_window --since all
check_window --workspace Acme --since all

t_case "stats: bad --since and other mistakes, one line each"
for bad in abc -5h 24x '' 5.5h 1w; do
    t_run $PMX stats --since "$bad"
    t_expect_rc 1
    t_expect_eq "$T_ERR" "postmux: --since: expected a duration such as 30m, 24h or 7d, or all; got '$bad'" "--since '$bad'"
    t_expect_eq "$T_OUT" "" "no output for '$bad'"
done
t_run $PMX stats --since 0
t_expect_rc 1
t_expect_eq "$T_ERR" "postmux: --since must be longer than 0 (or all)" "--since 0"
t_run $PMX stats --since 99999999d
t_expect_rc 1
t_expect_eq "$T_ERR" "postmux: --since is longer than 100 years; use --since all" "--since too long"
t_run $PMX stats --workspace Nope
t_expect_rc 1
t_expect_eq "$T_ERR" "postmux: unknown workspace: Nope" "unknown workspace"
t_run $PMX stats extra
t_expect_rc 2
t_run $PMX stats --since
t_expect_rc 2
t_run $PMX stats --bogus
t_expect_rc 2

t_case "stats: migrating a database that already holds history fills the rollup"
# Take the test database back to version 1 (drop what 002 made), add history,
# migrate again: 002's backfill must count it all.
t_psql "
drop trigger events_stats on events;
drop trigger recipients_stats_insert on recipients;
drop trigger recipients_stats_update on recipients;
drop function pmx_stats_events(), pmx_stats_recipients_insert(), pmx_stats_recipients_update(), pmx_stats_fold();
drop table stats_counts;
drop index webhooks_scope_url_key;
delete from schema_migrations where version = 2" >/dev/null
mixed "$GLOBEX" hist '10 days' "('sent', 6), ('deferred', 1)"
t_run $PMX migrate
t_expect_rc 0
t_expect_match "$T_OUT" 'applied 002_stats' "002 applied again"
check_window --since all
check_window --since 30d

t_done
