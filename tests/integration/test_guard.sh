#!/usr/bin/env bash
# The reputation guard (docs/feedback.md): a workspace whose hard-bounce rate over the
# window passes its limit is paused — workspaces.paused_at and pause_reason set, event
# workspace.paused (and so its webhooks' deliveries), nothing more sent, its jobs held
# queued and never rejected — until `workspace set --resume`, which lets them go and
# starts the window afresh. Per-workspace limits with --max-bounce-rate.
source "$(dirname "$0")/lib.sh"
t_setup
source "$(dirname "$0")/relay_lib.sh"

t_conf_set daemon workers 2
t_conf_set feedback guard_min_sent 10
t_conf_set feedback max_bounce_rate 20%
WS=$($PMX workspace create Acme)
$PMX domain add Acme acme.test --algorithm ed25519 >/dev/null
$PMX domain verify acme.test --skip-dns >/dev/null
$PMX webhook add --workspace Acme --url http://127.0.0.1:9/hook --events workspace.paused >/dev/null

make_certs || t__setup_fail "openssl could not make the test CA"
start_relay guard localhost
t_conf_set relay host localhost
t_conf_set relay port "$RELAY_PORT"
t_conf_set relay tls starttls
t_conf_set relay ca_file "$CERTS/ca.crt"

xadd() { t_redis XADD "pmx:{$WS}:jobs" '*' "$@"; }
count() { t_psql "select count(*) from recipients r join messages m on m.id = r.message_id
                  where m.client_id like '$1' and r.status = '$2'"; }
paused_at() { t_psql "select coalesce(paused_at::text, '') from workspaces where id = '$WS'"; }

t_case "workspace set --max-bounce-rate / --max-complaint-rate: PCT, none, default; bad values refused"
t_run $PMX workspace set Acme --max-bounce-rate 5%
t_expect_rc 0
t_expect_match "$T_OUT" 'max_bounce_rate: 5%' "5%"
t_run $PMX workspace set Acme --max-complaint-rate none
t_expect_match "$T_OUT" 'max_complaint_rate: none' "none"
t_run $PMX workspace show Acme --json
t_expect_match "$T_OUT" '"max_complaint_rate": "none"' "json"
t_run $PMX workspace set Acme --max-bounce-rate 101%
t_expect_rc 1
t_run $PMX workspace set Acme --max-bounce-rate ten
t_expect_rc 1
t_run $PMX workspace set Acme --max-bounce-rate default --max-complaint-rate default
t_expect_rc 0
t_expect_match "$T_OUT" 'max_bounce_rate: default' "back to the default"
t_expect_match "$T_OUT" 'paused:      no' "not paused"

LOG=$T_DIR/postmuxd.log
"$PMXD" -c "$T_CONF" >>"$LOG" 2>&1 &
DPID=$!

t_case "30 % hard bounces over 10 attempted (limit 20 %): paused, reason and event recorded"
t_settings_mark "$DPID"
for i in $(seq 1 7); do xadd from news@acme.test to ok$i@cust.test subject s text t id g$i >/dev/null; done
for i in 1 2 3; do xadd from news@acme.test to perm$i@cust.test subject s text t id b$i >/dev/null; done
t_wait_for 60 "[[ \$(count 'g%' sent) == 7 && \$(count 'b%' bounced) == 3 ]]"
t_wait_for 60 "[[ -n \$(paused_at) ]]"
t_expect_match "$(t_psql "select pause_reason from workspaces where id = '$WS'")" \
    '^hard-bounce rate 30\.00% is over 20\.?0*% \(3 of 10 attempted since ' "pause_reason"
t_expect_eq "$(t_psql "select count(*) from events where workspace_id = '$WS' and type = 'workspace.paused'")" 1 "event"
t_expect_eq "$(t_psql "select count(*) from webhook_deliveries d join events e on e.id = d.event_id
                       where e.type = 'workspace.paused'")" 1 "a webhook delivery for it"
t_expect_match "$(grep 'workspace paused' "$LOG")" "ws=$WS reason=\"hard-bounce rate" "logged"
t_run $PMX workspace show Acme
t_expect_match "$T_OUT" 'paused:      yes' "show"
t_settings_wait "$DPID"

t_case "while paused: jobs stay queued, nothing is sent or rejected"
for i in 1 2 3 4 5; do xadd from news@acme.test to later$i@cust.test subject s text t id p$i >/dev/null; done
sleep 5   # a window in which nothing may happen
t_expect_eq "$(t_psql "select count(*) from messages where client_id like 'p%'")" 0 "nothing recorded"
t_expect_eq "$(grep -c 'RCPT <later' "$RELAY_LOG")" 0 "nothing relayed"
t_expect_eq "$(t_redis XLEN "pmx:{$WS}:jobs")" 5 "the jobs are still in the stream"

t_case "changing a limit alone does not lift the pause"
t_run $PMX workspace set Acme --max-bounce-rate 50%
t_expect_match "$T_OUT" 'paused:      yes' "still paused"

t_case "--resume: the held jobs go out, the window starts afresh, an imported list does not count"
t_run $PMX workspace set Acme --resume --max-bounce-rate default
t_expect_rc 0
t_expect_match "$T_OUT" 'paused:      no' "resumed"
t_wait_for 60 "[[ \$(count 'p%' sent) == 5 ]]"
t_expect_eq "$(t_psql "select guard_since > now() - interval '1 minute' from workspaces where id = '$WS'")" t "guard_since"
# Hard-bounce suppressions made by hand or imported name no message: they are not
# this workspace's failures and must not count (20 of them against 15 attempted
# would be far over 20 %).
t_psql "insert into suppressions (workspace_id, address, reason)
        select '$WS', 'imported' || g || '@old.test', 'hard_bounce' from generate_series(1, 20) g" >/dev/null
sleep 12  # more than one guard interval (10 s): neither the old bounces nor the import may pause it
t_expect_eq "$(paused_at)" "" "not paused again"

t_stop_postmuxd "$DPID"
stop_relay
t_done
