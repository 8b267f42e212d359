#!/usr/bin/env bash
# Issue 7's views after a real mixed run: the real postmuxd relays to aiosmtpd
# (tests/tools/tls_relay.py: local parts "temp…" get 4xx, "perm…" 5xx), so the
# database holds every outcome — sent, deferred, bounced, rejected, suppressed (a
# workspace in test mode without a catch-all). Then /metrics, `postmux stats` (text and
# JSON) and `postmux queue` (text and JSON) must agree with Postgres and Redis.
source "$(dirname "$0")/lib.sh"
t_setup
PY=/usr/bin/python3
source "$(dirname "$0")/relay_lib.sh"

MPORT=$(pmx_svc_free_port)
t_conf_set daemon workers 2
t_conf_set daemon metrics_listen "127.0.0.1:$MPORT"
t_conf_set delivery retry_base 1h          # deferred recipients stay deferred
make_certs || t__setup_fail "openssl could not make the test CA"
start_relay views localhost
t_conf_set relay host localhost
t_conf_set relay port "$RELAY_PORT"
t_conf_set relay tls starttls
t_conf_set relay ca_file "$CERTS/ca.crt"

ACME=$($PMX workspace create Acme)
TESTY=$($PMX workspace create Testy)
$PMX domain add Acme acme.test --algorithm ed25519 >/dev/null
$PMX domain add Testy testy.test --algorithm ed25519 >/dev/null
for d in acme.test testy.test; do $PMX domain verify $d --skip-dns >/dev/null; done
$PMX workspace set Testy --test-mode on >/dev/null
$PMX tester add Testy tester@example.net >/dev/null

xadd() { local ws=$1; shift; t_redis XADD "pmx:{$ws}:jobs" '*' "$@" >/dev/null; }
"$PMXD" -c "$T_CONF" >>"$T_DIR/postmuxd.log" 2>&1 &
DPID=$!
t_wait_for 30 "curl -fs -m 2 http://127.0.0.1:$MPORT/healthz >/dev/null"

for i in 1 2 3 4 5; do xadd "$ACME" from news@acme.test to "ok$i@example.net" subject s text t; done
xadd "$ACME" from news@acme.test to "temp1@example.net, ok6@example.net" subject s text t
xadd "$ACME" from news@acme.test to temp2@example.net subject s text t
xadd "$ACME" from news@acme.test to perm1@example.net subject s text t
xadd "$ACME" from news@acme.test to perm2@example.net cc ok7@example.net subject s text t
xadd "$ACME" to nofrom@example.net subject s text t
xadd "$ACME" from news@unverified.test to unver@example.net subject s text t
xadd "$TESTY" from news@testy.test to "tester@example.net, cust1@example.net, cust2@example.net" subject s text t

status_counts() {   # "workspace status count" lines, as Postgres holds them
    t_psql "select m.workspace_id, r.status, count(*) from recipients r
              join messages m on m.id = r.message_id group by 1, 2" | tr '|' ' ' | sort
}
WANT="$ACME bounced 2
$ACME deferred 2
$ACME rejected 2
$ACME sent 7
$TESTY sent 1
$TESTY suppressed 2"
WANT=$(sort <<<"$WANT")

t_case "the mixed run ends with every outcome in Postgres"
t_wait_for 60 "[[ \"\$(status_counts)\" == \"\$WANT\" && \$(t_redis XLEN 'pmx:{$ACME}:jobs') == 0 ]]"
t_expect_eq "$(status_counts)" "$WANT" "recipients by workspace and status"
sleep 1   # let the workers' counters settle after the last commit

t_case "/metrics: postmux_recipients_total equals the rows, per workspace and status"
metrics_rows() {
    curl -s -m 5 "http://127.0.0.1:$MPORT/metrics" |
        sed -nE 's/^postmux_recipients_total\{workspace="([^"]+)",status="([^"]+)"\} ([0-9]+)$/\1 \2 \3/p' |
        awk '$3 != 0' | sort
}
t_wait_for 10 "[[ \"\$(metrics_rows)\" == \"\$WANT\" ]]"
t_expect_eq "$(metrics_rows)" "$WANT" "counters"

t_case "postmux stats --json agrees with Postgres (recipients and events, per workspace and total)"
t_run "$PMX" stats --since all --json
t_expect_rc 0
STATS_JSON=$T_OUT
events_pg() {   # "workspace type count"
    t_psql "select workspace_id, type, count(*) from events
             where type like 'message.%' group by 1, 2" | tr '|' ' ' | sort
}
t_expect_eq "$("$PY" -c '
import json, sys
d = json.loads(sys.stdin.read())
for w in d["workspaces"]:
    for k, v in w["recipients"].items():
        if k != "total" and v: print(w["workspace_id"], k, v)
' <<<"$STATS_JSON" | sort)" "$WANT" "recipients by status"
t_expect_eq "$("$PY" -c '
import json, sys
d = json.loads(sys.stdin.read())
for w in d["workspaces"]:
    for k, v in w["events"].items():
        if k != "total" and v: print(w["workspace_id"], k, v)
' <<<"$STATS_JSON" | sort)" "$(events_pg)" "events by type"
t_expect_eq "$("$PY" -c '
import json, sys
d = json.loads(sys.stdin.read())
print(d["total"]["recipients"]["total"], d["total"]["recipients"]["deferred"], d["total"]["events"]["total"])
' <<<"$STATS_JSON")" \
    "$(t_psql "select count(*) from recipients") 2 $(t_psql "select count(*) from events where type like 'message.%'")" \
    "totals"

t_case "postmux stats (text) shows the same numbers"
t_run "$PMX" stats --since all
t_expect_rc 0
# Recipients table: WORKSPACE NAME QUEUED SENT DEFERRED BOUNCED REJECTED SUPPRESSED TOTAL
t_expect_match "$T_OUT" "^$ACME +Acme +0 +7 +2 +2 +2 +0 +13\$" "Acme's recipients row"
t_expect_match "$T_OUT" "^$TESTY +Testy +0 +1 +0 +0 +0 +2 +3\$" "Testy's recipients row"
t_expect_match "$T_OUT" "^total +0 +8 +2 +2 +2 +2 +16\$" "total row"

t_case "postmux queue --json and text agree with Redis"
t_run "$PMX" queue --json
t_expect_rc 0
QJ=$T_OUT
want_q="$(t_redis XLEN "pmx:{$ACME}:jobs") $(t_redis ZCARD "pmx:{$ACME}:retry") $(t_redis XLEN "pmx:{$ACME}:dead")"
t_expect_eq "$("$PY" -c '
import json, sys
d = json.loads(sys.stdin.read())
w = [w for w in d["workspaces"] if w["workspace_id"] == sys.argv[1]][0]
print(w["stream"], w["deferred"], w["dead"])
' "$ACME" <<<"$QJ")" "$want_q" "Acme: stream, deferred, dead"
t_expect_eq "${want_q#* }" "2 0" "Acme has its two deferred jobs scheduled"
t_run "$PMX" queue
t_expect_match "$T_OUT" "^$ACME +Acme +0 +0 +0 +2 +0\$" "Acme's row"
t_expect_match "$T_OUT" "^total +0 +0 +0 +2 +0\$" "total row"

t_stop_postmuxd "$DPID"
stop_relay

t_done
