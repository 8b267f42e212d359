#!/usr/bin/env bash
# The suppression list (docs/feedback.md): `postmux suppression list|add|remove|check`,
# and the running daemon honouring it — loaded at start, followed live through
# NOTIFY (one row, a removal, a bulk import that reloads), scoped by the job's
# category, checked against the address actually mailed in test mode; a suppressed
# recipient is `suppressed` with `suppressed: <reason>` and nothing goes to it.
source "$(dirname "$0")/lib.sh"
t_setup

t_conf_set daemon workers 2
t_conf_set daemon log_level debug
WS=$($PMX workspace create Acme)
OTHER=$($PMX workspace create Other)
$PMX domain add Acme acme.test --algorithm ed25519 >/dev/null
$PMX domain verify acme.test --skip-dns >/dev/null

xadd() { t_redis XADD "pmx:{$WS}:jobs" '*' "$@"; }
statuses() { t_psql "select string_agg(r.address || '=' || r.status, ',' order by r.address)
                     from recipients r join messages m on m.id = r.message_id where m.client_id = '$1'"; }
response() { t_psql "select r.last_response from recipients r join messages m on m.id = r.message_id
                     where m.client_id = '$1' and r.address = '$2'"; }
sunk() { grep -l -- "X-Rcpt-Args: <$1>" "$T_SINK_DIR"/* 2>/dev/null | wc -l; }
json_get() { printf '%s' "$1" | /usr/bin/python3 -c "import json,sys; j=json.load(sys.stdin); print($2)"; }
LOG=$T_DIR/postmuxd.log
# Every worker (2) has seen notification $1 (a fixed string of its payload).
seen_by_all() { [[ $(grep -cF -- "suppressions notify \"$1" "$LOG") -ge 2 ]]; }

t_case "suppression add: lower-cased, scoped, upserted; bad input is refused and writes nothing"
t_run $PMX suppression add Acme Gone@Cust.TEST --reason hard_bounce --detail 'user unknown'
t_expect_rc 0
t_expect_eq "$T_OUT" "suppressed gone@cust.test in $WS (scope *, reason hard_bounce)" "output"
t_run $PMX suppression add Acme unsub@cust.test --scope news --reason unsubscribe
t_expect_rc 0
t_run $PMX suppression add Acme sink@team.test --reason complaint
t_expect_rc 0
t_run $PMX suppression add Acme gone@cust.test --reason hard_bounce --detail 'user unknown'
t_expect_rc 0
t_expect_eq "$(t_psql "select count(*) from suppressions")" 3 "rows (the second add replaced)"
before=$(t_psql "select count(*) from suppressions")
t_run $PMX suppression add Acme not-an-address
t_expect_rc 1
t_run $PMX suppression add Acme x@cust.test --scope 'News!'
t_expect_rc 2
t_run $PMX suppression add Acme x@cust.test --reason bounced
t_expect_rc 2
t_run $PMX suppression add Acme x@cust.test --detail $'two\nlines'
t_expect_rc 2
t_run $PMX suppression add Nope x@cust.test
t_expect_rc 1
t_expect_eq "$T_ERR" "postmux: unknown workspace: Nope" "unknown workspace"
t_run $PMX suppression add Acme
t_expect_rc 2
t_run $PMX suppression purge Acme
t_expect_rc 2
t_expect_eq "$(t_psql "select count(*) from suppressions")" "$before" "nothing written"

t_case "suppression check: exit 0 suppressed, 3 not; scope '*' covers every category"
t_run $PMX suppression check Acme GONE@cust.test
t_expect_rc 0
t_expect_match "$T_OUT" '^suppressed: gone@cust\.test \(scope \*, reason hard_bounce: user unknown\)$' "output"
t_run $PMX suppression check Acme gone@cust.test --category news
t_expect_rc 0
t_run $PMX suppression check Acme unsub@cust.test
t_expect_rc 3
t_run $PMX suppression check Acme unsub@cust.test --category news
t_expect_rc 0
t_run $PMX suppression check "$OTHER" gone@cust.test
t_expect_rc 3
t_run $PMX suppression check Acme gone@cust.test --category 'Bad Cat'
t_expect_rc 2

t_case "suppression list: a workspace's own rows, --reason filter, --json"
t_run $PMX suppression list Acme
t_expect_rc 0
t_expect_match "$(printf '%s\n' "$T_OUT" | head -n1)" '^ADDRESS +SCOPE +REASON +ADDED +EXPIRES +DETAIL$' "header"
t_expect_eq "$(printf '%s\n' "$T_OUT" | tail -n +2 | awk '{print $1}' | paste -sd,)" \
    "gone@cust.test,sink@team.test,unsub@cust.test" "addresses"
t_run $PMX suppression list Acme --reason unsubscribe --json
t_expect_rc 0
t_expect_eq "$(json_get "$T_OUT" "[(s['address'], s['scope'], s['reason'], s['expires_at']) for s in j]")" \
    "[('unsub@cust.test', 'news', 'unsubscribe', None)]" "json"
t_run $PMX suppression list "$OTHER" --json
t_expect_eq "$T_OUT" "[]" "the other workspace's list is empty"

"$PMXD" -c "$T_CONF" >>"$LOG" 2>&1 &
DPID=$!
t_wait_for 60 "[[ \$(grep -c 'suppressions loaded entries=3' '$LOG') -ge 2 ]]"

t_case "a job to a suppressed address: that recipient suppressed with its reason, the rest sent"
xadd from news@acme.test to 'Gone@cust.test, ok@cust.test' subject s text t id j1 >/dev/null
t_wait_for 40 "[[ \$(statuses j1) == *ok@cust.test=sent* ]]"
t_expect_eq "$(statuses j1)" "Gone@cust.test=suppressed,ok@cust.test=sent" "recipients"
t_expect_eq "$(response j1 Gone@cust.test)" "suppressed: hard_bounce" "last_response"
t_expect_eq "$(t_psql "select count(*) from events e join messages m on m.id = e.message_id
                       where m.client_id = 'j1' and e.type = 'message.suppressed'
                         and e.recipient = 'Gone@cust.test'")" 1 "event"
t_expect_eq "$(sunk Gone@cust.test)" 0 "nothing relayed to it"
t_expect_eq "$(sunk ok@cust.test)" 1 "the other recipient relayed"

t_case "scope: a category's unsubscribe holds for that category only"
xadd from news@acme.test to unsub@cust.test subject s text t category news id j2 >/dev/null
xadd from news@acme.test to unsub@cust.test subject s text t category billing id j3 >/dev/null
xadd from news@acme.test to unsub@cust.test subject s text t id j4 >/dev/null
t_wait_for 40 "[[ -n \$(statuses j2) && \$(statuses j3) == *sent* && \$(statuses j4) == *sent* ]]"
t_expect_eq "$(statuses j2)" "unsub@cust.test=suppressed" "category news"
t_expect_eq "$(response j2 unsub@cust.test)" "suppressed: unsubscribe" "reason"
t_expect_eq "$(statuses j3)" "unsub@cust.test=sent" "category billing"
t_expect_eq "$(statuses j4)" "unsub@cust.test=sent" "no category"

t_case "a bad category rejects the job, naming the field"
xadd from news@acme.test to ok@cust.test subject s text t category 'Not OK' id j5 >/dev/null
t_wait_for 40 "[[ -n \$(statuses j5) ]]"
t_expect_eq "$(statuses j5)" "ok@cust.test=rejected" "rejected"
t_expect_match "$(t_psql "select detail from events e join messages m on m.id = e.message_id
                          where m.client_id = 'j5' and e.type = 'message.rejected'")" '^category' "reason names the field"

t_case "live: an address added while running is suppressed, and mailed again once removed"
$PMX suppression add Acme late@cust.test >/dev/null
t_wait_for 30 "seen_by_all '+ $WS * manual 0 late@cust.test'"
xadd from news@acme.test to late@cust.test subject s text t id j6 >/dev/null
t_wait_for 40 "[[ -n \$(statuses j6) ]]"
t_expect_eq "$(statuses j6)" "late@cust.test=suppressed" "suppressed"
t_expect_eq "$(response j6 late@cust.test)" "suppressed: manual" "reason"
t_run $PMX suppression remove Acme LATE@cust.test
t_expect_rc 0
t_expect_eq "$T_OUT" "removed late@cust.test from the suppression list of $WS (scope *)" "output"
t_run $PMX suppression remove Acme late@cust.test
t_expect_rc 1
t_wait_for 30 "seen_by_all '- $WS * late@cust.test'"
xadd from news@acme.test to late@cust.test subject s text t id j7 >/dev/null
t_wait_for 40 "[[ \$(statuses j7) == late@cust.test=sent ]]"
t_expect_eq "$(sunk late@cust.test)" 1 "relayed once, after the removal"

t_case "an expired entry no longer suppresses"
t_psql "insert into suppressions (workspace_id, address, scope, reason, expires_at)
        values ('$WS', 'soft@cust.test', '*', 'soft_bounce', now() + interval '2 seconds')" >/dev/null
t_wait_for 30 "seen_by_all '+ $WS * soft_bounce'"
xadd from news@acme.test to soft@cust.test subject s text t id j8 >/dev/null
t_wait_for 40 "[[ -n \$(statuses j8) ]]"
t_expect_eq "$(statuses j8)" "soft@cust.test=suppressed" "within its time"
t_wait_for 10 "[[ \$(t_psql \"select count(*) from suppressions where address = 'soft@cust.test' and expires_at < now()\") == 1 ]]"
sleep 61   # the list's expiry has a one-minute grain (docs/feedback.md)
xadd from news@acme.test to soft@cust.test subject s text t id j9 >/dev/null
t_wait_for 40 "[[ \$(statuses j9) == soft@cust.test=sent ]]"
t_run $PMX suppression check Acme soft@cust.test
t_expect_rc 3

t_case "test mode: a suppressed catch-all suppresses the redirected recipients, nothing is sent"
loads=$(grep -c 'settings loaded' "$LOG")
$PMX workspace set Acme --test-mode on --catch-all sink@team.test >/dev/null
t_wait_for 30 "[[ \$(grep -c 'settings loaded' '$LOG') -ge $((loads + 2)) ]]"
xadd from news@acme.test to 'r1@cust.test, r2@cust.test' subject s text t id j10 >/dev/null
t_wait_for 40 "[[ -n \$(statuses j10) && \$(statuses j10) != *queued* ]]"
t_expect_eq "$(statuses j10)" "r1@cust.test=suppressed,r2@cust.test=suppressed" "recipients"
t_expect_eq "$(response j10 r1@cust.test)" "suppressed: complaint" "the catch-all's reason"
t_expect_eq "$(sunk sink@team.test)" 0 "no catch-all copy"
$PMX workspace set Acme --test-mode off --catch-all none >/dev/null

t_case "a bulk import (more than 100 rows in one statement) reloads every worker's list"
t_psql "insert into suppressions (workspace_id, address, reason)
        select '$WS', 'bulk' || g || '@cust.test', 'manual' from generate_series(1, 5000) g" >/dev/null
t_wait_for 60 "[[ \$(grep -c 'suppressions loaded entries=5003' '$LOG') -ge 2 ]]"
xadd from news@acme.test to 'bulk4711@cust.test, fine@cust.test' subject s text t id j11 >/dev/null
t_wait_for 40 "[[ \$(statuses j11) == *fine@cust.test=sent* ]]"
t_expect_eq "$(statuses j11)" "bulk4711@cust.test=suppressed,fine@cust.test=sent" "recipients"

t_case "deleting the workspace's rows in bulk clears the list"
t_psql "delete from suppressions where workspace_id = '$WS'" >/dev/null
t_wait_for 60 "[[ \$(grep -c 'suppressions loaded entries=0' '$LOG') -ge 2 ]]"
xadd from news@acme.test to bulk4711@cust.test subject s text t id j12 >/dev/null
t_wait_for 40 "[[ \$(statuses j12) == bulk4711@cust.test=sent ]]"

t_stop_postmuxd "$DPID"
t_done
