#!/usr/bin/env bash
# The outcome writer (sql/outcomes.c), driven by tests/tools/outcomes_probe against a
# real Postgres: 10,000 items in ~50 statements with every row present; a small
# batch flushed by the timer; a steady stream batched by the window; a redelivered
# job attaching to its existing message (and the lookup the pipeline asks first); a
# 'sent' recipient never downgraded; a bad item isolated while the rest of its batch
# commits; the Postgres connection killed (and refused for a while) mid-run: failed
# items reported, none lost, and re-recorded idempotently; a short outage absorbed by
# the hold; no leaks (ASan).
source "$(dirname "$0")/lib.sh"
t_setup

PROBE=$T_TOOLS/outcomes_probe
[[ -x $PROBE ]] || { t_case "outcomes_probe is built"; t_fail "no $PROBE: run make tools"; t_done; }

WS=$($PMX workspace create Acme)
summary() { grep '^summary ' <<<"$1" | tail -n 1; }
field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p" | head -n 1; }
probe() { t_run "$PROBE" --conninfo "$T_DB_CONNINFO" "$@"; }
no_sanitizer() { t_expect_nomatch "$T_ERR" 'Sanitizer|runtime error' "sanitizers"; }
py() { /usr/bin/python3 -c "$@"; }

t_case "10,000 items: every row recorded, one statement per 200 items"
probe --generate 10000 --workspace "$WS" --job-prefix big --rcpts 2
t_expect_rc 0
S=$(summary "$T_OUT")
echo "# $S"
t_expect_eq "$(field "$S" ok)" 10000 "ok"
t_expect_eq "$(field "$S" failed)" 0 "failed"
ST=$(field "$S" statements)
((ST >= 50 && ST <= 55)) || t_fail "statements=$ST for 10000 items (batch 200): expected about 50"
t_expect_eq "$(t_psql "select count(*) from messages where workspace_id = '$WS' and job_id like 'big-%'")" 10000 "messages"
t_expect_eq "$(t_psql "select count(*) from recipients r join messages m on m.id = r.message_id where m.job_id like 'big-%' and r.status = 'sent' and r.attempts = 1")" 20000 "recipients"
t_expect_eq "$(t_psql "select count(*) from events e join messages m on m.id = e.message_id where m.job_id like 'big-%' and e.type = 'message.sent' and e.workspace_id = '$WS'")" 20000 "events"
t_expect_eq "$(t_psql "select count(distinct job_id) from messages where job_id like 'big-%'")" 10000 "distinct jobs"
no_sanitizer

t_case "a few items are flushed by the timer in one statement"
cat >"$T_DIR/small.jsonl" <<EOF
{"id":"msg_small0000000001","ws":"$WS","job":"small-1","from":"a@acme.test","subject":"Grüße","metadata":"m1","rcpts":[{"address":"x@example.net","status":"sent","attempts":1,"response":"250 ok"}],"events":[{"type":"message.sent","recipient":"x@example.net","detail":"250 ok"}]}
{"id":"msg_small0000000002","ws":"$WS","job":"small-2","client":"c-2","from":"a@acme.test","source":"smtp","rcpts":[{"address":"y@example.net","status":"deferred","attempts":1,"response":"451 try later","next_ms":4102444800000}],"events":[{"type":"message.deferred","recipient":"y@example.net","detail":"451 \"quoted\" \\\\ back, {braces}"}]}
{"id":"msg_small0000000003","ws":"$WS","job":"small-3","from":"","rcpts":[],"events":[{"type":"message.rejected","detail":"from: missing"}]}
EOF
probe --input "$T_DIR/small.jsonl"
t_expect_rc 0
t_expect_eq "$(grep -c 'status=ok' <<<"$T_OUT")" 3 "ok"
t_expect_eq "$(field "$(summary "$T_OUT")" statements)" 1 "statements"
t_expect_eq "$(t_psql "select subject, metadata, source from messages where job_id = 'small-1'")" "Grüße|m1|redis" "row 1"
t_expect_eq "$(t_psql "select client_id, source, r.status, r.next_attempt_at = '2100-01-01T00:00:00Z' from messages m join recipients r on r.message_id = m.id where job_id = 'small-2'")" "c-2|smtp|deferred|t" "row 2"
t_expect_eq "$(t_psql "select detail from events where message_id = 'msg_small0000000002'")" '451 "quoted" \ back, {braces}' "quoting survives"
t_expect_eq "$(t_psql "select type, recipient is null, detail from events where message_id = 'msg_small0000000003'")" "message.rejected|t|from: missing" "message-level event"

t_case "a steady stream: a batch goes when its oldest item has waited the window"
# stream N RATE PREFIX: N items at RATE/s with a 50 ms window, all recorded; sets ST
# (statements) and EL (elapsed ms).
stream() {
    probe --generate "$1" --workspace "$WS" --job-prefix "$3" --rcpts 1 --rate "$2" --flush-ms 50
    t_expect_rc 0
    S=$(summary "$T_OUT")
    echo "# $S"
    t_expect_eq "$(field "$S" ok)" "$1" "ok"
    ST=$(field "$S" statements) EL=$(field "$S" elapsed_ms)
    no_sanitizer
}
# 200 items/s: ~10 items per statement, one statement per window. Sending what waits
# as soon as the batch in flight returns would make one small statement per round trip.
stream 200 200 trickle
((ST >= EL / 50 - 5 && ST <= EL / 50 + 3)) ||
    t_fail "statements=$ST in ${EL} ms: expected one per 50 ms window"
# Under load (items arriving at 16 or more per window, here 320/s) the window is twice
# as long: 1,500 items/s make batches of ~150, one per 100 ms.
stream 1500 1500 steady
((ST >= 2 && ST <= EL / 100 + 5)) ||
    t_fail "statements=$ST in ${EL} ms: expected one per 100 ms window under load"

t_case "a redelivered job: lookup finds it, and new records attach to the existing message"
ORIG=$(t_psql "select id from messages where job_id = 'big-7'")
cat >"$T_DIR/redeliver.jsonl" <<EOF
{"lookup":{"ws":"$WS","job":"big-7"}}
{"lookup":{"ws":"$WS","job":"big-999999"}}
{"lookup":{"ws":"$WS","job":"small-3"}}
{"wait":true}
{"id":"msg_newid0000000007","ws":"$WS","job":"big-7","from":"a@acme.test","rcpts":[{"address":"rcpt0@example.net","status":"deferred","attempts":2,"response":"451 late"},{"address":"late@example.net","status":"sent","attempts":1,"response":"250 late ok"}],"events":[{"type":"message.sent","recipient":"late@example.net","detail":"250 late ok"}]}
{"wait":true}
{"lookup":{"ws":"$WS","job":"big-7"}}
EOF
probe --input "$T_DIR/redeliver.jsonl"
t_expect_rc 0
t_expect_match "$T_OUT" "^lookup 1 message_id=$ORIG rcpts=rcpt0@example.net:sent:1,rcpt1@example.net:sent:1$" "lookup of a recorded job"
t_expect_match "$T_OUT" "^lookup 2 message_id=- rcpts=-$" "lookup of an unknown job"
t_expect_match "$T_OUT" "^lookup 3 message_id=msg_small0000000003 rcpts=-$" "lookup of a job without recipients"
t_expect_match "$T_OUT" "^item 5 status=ok message_id=$ORIG$" "callback names the existing id"
t_expect_match "$T_OUT" "^lookup 7 message_id=$ORIG rcpts=late@example.net:sent:1,rcpt0@example.net:sent:1,rcpt1@example.net:sent:1$" "after"
t_expect_eq "$(t_psql "select count(*) from messages where id = 'msg_newid0000000007'")" 0 "no second message row"
t_expect_eq "$(t_psql "select count(*) from messages where job_id = 'big-7'")" 1 "one row for the job"
t_expect_eq "$(t_psql "select count(*) from events where message_id = '$ORIG' and recipient = 'late@example.net'")" 1 "event attached"

t_case "two writers recording the same jobs at once: one message per job, no failure"
for n in 1 2; do
    "$PROBE" --conninfo "$T_DB_CONNINFO" --generate 2000 --workspace "$WS" --job-prefix race \
        --rcpts 1 >"$T_DIR/race$n.out" 2>"$T_DIR/race$n.err" &
    eval "RP$n=\$!"
done
wait "$RP1"; R1=$?
wait "$RP2"; R2=$?
t_expect_eq "$R1$R2" 00 "exit statuses"
for n in 1 2; do
    S=$(summary "$(<"$T_DIR/race$n.out")")
    t_expect_eq "$(field "$S" ok)/$(field "$S" failed)" 2000/0 "writer $n ok/failed"
done
t_expect_eq "$(t_psql "select count(*), count(distinct job_id) from messages where job_id like 'race-%'")" "2000|2000" "messages"
t_expect_eq "$(t_psql "select count(*) from recipients r join messages m on m.id = r.message_id where m.job_id like 'race-%'")" 2000 "recipients attached to the one message"
t_expect_eq "$(t_psql "select count(*) from events e join messages m on m.id = e.message_id where m.job_id like 'race-%'")" 4000 "both writers' events"

t_case "a sent recipient is never downgraded; the others are updated"
cat >"$T_DIR/retry.jsonl" <<EOF
{"id":"msg_retry0000000001","ws":"$WS","job":"retry-1","from":"a@acme.test","rcpts":[{"address":"a@example.net","status":"sent","attempts":1,"response":"250 a"},{"address":"b@example.net","status":"deferred","attempts":1,"response":"451 b","next_ms":4102444800000}],"events":[]}
{"wait":true}
{"update":true,"id":"msg_retry0000000001","ws":"$WS","rcpts":[{"address":"a@example.net","status":"deferred","attempts":2,"response":"451 stale"},{"address":"b@example.net","status":"sent","attempts":2,"response":"250 b"}],"events":[{"type":"message.sent","recipient":"b@example.net","detail":"250 b"}]}
{"wait":true}
{"update":true,"id":"msg_retry0000000001","ws":"$WS","rcpts":[{"address":"b@example.net","status":"bounced","attempts":3,"response":"550 no"}],"events":[]}
EOF
probe --input "$T_DIR/retry.jsonl"
t_expect_rc 0
t_expect_eq "$(grep -c 'status=ok' <<<"$T_OUT")" 3 "ok"
t_expect_eq "$(t_psql "select address, status, attempts, last_response, next_attempt_at is null from recipients where message_id = 'msg_retry0000000001' order by address")" \
"a@example.net|sent|1|250 a|t
b@example.net|sent|2|250 b|t" "rows"

t_case "a bad item is isolated: only it fails, the rest of its batch commits"
py '
import json, sys
ws = sys.argv[1]
with open(sys.argv[2], "w") as f:
    for i in range(500):
        o = {"id": "msg_bad%012d" % i, "ws": ws, "job": "bad-%d" % i, "from": "a@acme.test",
             "rcpts": [{"address": "r@example.net", "status": "sent", "attempts": 1}],
             "events": [{"type": "message.sent", "recipient": "r@example.net"}]}
        if i == 137: o["metadata"] = "x" * 5000             # CHECK (length(metadata) <= 4096)
        if i == 400: o = {"update": True, "id": "msg_doesnotexist01", "ws": ws,  # no such message
                          "rcpts": [{"address": "r@example.net", "status": "sent", "attempts": 1}]}
        if i == 450: o["rcpts"][0]["status"] = "lost"       # CHECK (status IN ...)
        f.write(json.dumps(o) + "\n")
' "$WS" "$T_DIR/bad.jsonl"
probe --input "$T_DIR/bad.jsonl"
t_expect_rc 0
S=$(summary "$T_OUT")
echo "# $S"
t_expect_eq "$(field "$S" ok)" 497 "ok"
t_expect_eq "$(field "$S" failed)" 3 "failed"
t_expect_match "$T_OUT" '^item 138 status=error code=-22 err=".*messages_metadata_check' "metadata item"
t_expect_match "$T_OUT" "^item 401 status=error code=-22 err=\"the retried job's message is not in this workspace\"" "missing message item"
t_expect_match "$T_OUT" '^item 451 status=error code=-22 err=".*recipients_status_check' "status item"
SP=$(field "$S" splits)
ST=$(field "$S" statements)
((SP > 0 && ST < 60)) || t_fail "splits=$SP statements=$ST: expected a bisection, not one statement per item"
t_expect_eq "$(t_psql "select count(*) from messages where job_id like 'bad-%'")" 497 "messages"
t_expect_eq "$(t_psql "select count(*) from messages where job_id in ('bad-137', 'bad-450')")" 0 "bad items wrote nothing"
t_expect_eq "$(t_psql "select count(*) from recipients r join messages m on m.id = r.message_id where m.job_id like 'bad-%'")" 497 "recipients"
t_expect_match "$T_ERR" 'outcome batch refused items=' "the refusal is logged"
no_sanitizer

t_case "Postgres killed and refused mid-run: failures reported, nothing lost, re-recorded idempotently"
"$PROBE" --conninfo "$T_DB_CONNINFO" --app-name pmx_outcomes_kill --hold-ms 0 \
    --generate 6000 --workspace "$WS" --job-prefix kill --rcpts 2 --rate 3000 \
    --resubmit-failed --failed-out "$T_DIR/failed.txt" >"$T_DIR/kill.out" 2>"$T_DIR/kill.err" &
KP=$!
t_wait_for 10 "grep -qE '^progress submitted=(1[5-9][0-9]{2}|[2-9][0-9]{3}) ' '$T_DIR/kill.out'"
"$PMX_PG_BIN/psql" -XAtq -h "$PMX_PG_HOST" -p "$PMX_PG_PORT" -U "$PMX_PG_USER" -d postgres -c \
    "alter database \"$T_DB\" allow_connections false" -c \
    "select count(pg_terminate_backend(pid)) from pg_stat_activity where application_name = 'pmx_outcomes_kill'" >/dev/null
sleep 1.5
"$PMX_PG_BIN/psql" -XAtq -h "$PMX_PG_HOST" -p "$PMX_PG_PORT" -U "$PMX_PG_USER" -d postgres -c \
    "alter database \"$T_DB\" allow_connections true" >/dev/null
wait "$KP"
t_expect_eq "$?" 0 "probe exit status"
KO=$(<"$T_DIR/kill.out")
S=$(summary "$KO")
echo "# $S"
NF=$(wc -l <"$T_DIR/failed.txt")
((NF > 0)) || t_fail "no item failed during the outage"
t_expect_eq "$(field "$S" submitted)" $((6000 + $(field "$S" resubmitted))) "every submission called back"
t_expect_eq "$(($(field "$S" ok) + $(field "$S" failed)))" "$(field "$S" submitted)" "ok + failed = submitted"
t_expect_eq "$(field "$S" ok)" 6000 "every job recorded in the end"
t_expect_match "$(grep -c '^db up$' <<<"$KO")" '^[2-9]' "reconnected"
t_expect_match "$(cat "$T_DIR/kill.err")" 'outcomes failing: postgres down' "failures logged"
# The jobs that did not fail in the first pass were in Postgres before the resubmission.
t_expect_eq "$(t_psql "select count(*) from messages where job_id like 'kill-%'")" 6000 "messages"
t_expect_eq "$(t_psql "select count(*) from recipients r join messages m on m.id = r.message_id where m.job_id like 'kill-%'")" 12000 "recipients"
ATT=$(field "$S" attached)
echo "# first pass failed=$NF, of which had committed before the connection died: $ATT"
((ATT <= 200)) || t_fail "attached=$ATT: more than one batch was ambiguous"
t_expect_nomatch "$(cat "$T_DIR/kill.err")" 'Sanitizer|runtime error' "sanitizers"

t_case "a short outage is absorbed by the hold: only a batch in flight can fail"
"$PROBE" --conninfo "$T_DB_CONNINFO" --app-name pmx_outcomes_blip \
    --generate 3000 --workspace "$WS" --job-prefix blip --rcpts 1 --rate 3000 \
    --resubmit-failed >"$T_DIR/blip.out" 2>"$T_DIR/blip.err" &
BP=$!
t_wait_for 10 "grep -qE '^progress submitted=(1[0-9]{3}|[2-9][0-9]{3}) ' '$T_DIR/blip.out'"
t_psql "select count(pg_terminate_backend(pid)) from pg_stat_activity where application_name = 'pmx_outcomes_blip'" >/dev/null
wait "$BP"
t_expect_eq "$?" 0 "probe exit status"
S=$(summary "$(<"$T_DIR/blip.out")")
echo "# $S"
t_expect_match "$(<"$T_DIR/blip.out")" '^db down$' "the connection was lost"
R=$(field "$S" resubmitted)
((R <= 200)) || t_fail "resubmitted=$R: items waiting during the outage failed instead of being held"
t_expect_eq "$(t_psql "select count(*) from messages where job_id like 'blip-%'")" 3000 "messages"
t_expect_nomatch "$(cat "$T_DIR/blip.err")" 'Sanitizer|runtime error' "sanitizers"

t_case "a retried job cannot reach another workspace's message"
WS2=$("$PMX" workspace create "Outcomes other") || t_fail "workspace create"
cat >"$T_DIR/other.jsonl" <<EOF
{"update":true,"id":"msg_retry0000000001","ws":"$WS2","rcpts":[{"address":"c@example.net","status":"sent","attempts":2,"response":"250 c"}],"events":[{"type":"message.sent","recipient":"c@example.net"}]}
EOF
probe --input "$T_DIR/other.jsonl"
t_expect_match "$T_OUT" "^item 1 status=error code=-22 err=\"the retried job's message is not in this workspace\"" "refused"
t_expect_eq "$(t_psql "select count(*) from recipients where address = 'c@example.net'")" 0 "no recipient row"
t_expect_eq "$(t_psql "select count(*) from events where workspace_id = '$WS2'")" 0 "no event"

# The outcome statement writes its own stats_counts deltas (migration 014) instead of
# the triggers: after every case above (inserts, updates, a sent kept, bounces,
# redeliveries, batches lost in flight and re-recorded) they must equal a recount.
t_case "stats_counts written with the outcomes equal a recount of events and recipients"
t_psql "select pmx_stats_fold()" >/dev/null
t_expect_eq "$(t_psql "
with s as (select workspace_id, kind, name, sum(n) n from stats_counts group by 1, 2, 3 having sum(n) <> 0),
     r as (select workspace_id, 'event' kind, type as name, count(*) n from events group by 1, 2, 3
           union all
           select m.workspace_id, 'status', r.status, count(*)
             from recipients r join messages m on m.id = r.message_id group by 1, 2, 3)
select count(*) from ((select * from s except select * from r) union all
                      (select * from r except select * from s)) d")" 0 "rows that differ"
t_expect_eq "$(t_psql "select count(*) > 0 from stats_counts where kind = 'status'")" t "status deltas were written"

t_done
