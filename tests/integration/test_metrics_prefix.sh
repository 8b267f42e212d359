#!/usr/bin/env bash
# postmux_queue_depth under [redis] prefix = acme: the gauge is the XLEN of
# acme:{ws}:jobs, not of pmx:{ws}:jobs (it used to read the pmx stream whatever the
# prefix, so every workspace showed 0). The jobs are enqueued with `postmux send`
# under the same prefix, from a verified domain, and held in the stream by suspending
# the workspace with a long [delivery] suspend_hold, so the depth stays put while it
# is scraped.
source "$(dirname "$0")/lib.sh"
t_setup

MPORT=$(pmx_svc_free_port)
t_conf_set redis prefix acme
t_conf_set daemon metrics_listen "127.0.0.1:$MPORT"
t_conf_set daemon shutdown_timeout 3s
t_conf_set delivery suspend_hold 1h

ACME=$($PMX workspace create Acme)
BETA=$($PMX workspace create Beta)
$PMX domain add Acme acme.test --algorithm ed25519 >/dev/null
$PMX domain verify acme.test --skip-dns >/dev/null
$PMX workspace set Acme --suspend >/dev/null

t_case "postmux send puts the jobs on acme:{ws}:jobs"
for i in 1 2 3; do
    t_run $PMX send --workspace Acme --from news@acme.test --to "r$i@example.net" --subject s --text t
    t_expect_rc 0
done
t_expect_eq "$(t_redis XLEN "acme:{$ACME}:jobs")" 3 "XLEN of the prefixed stream"
t_expect_eq "$(t_redis EXISTS "pmx:{$ACME}:jobs")" 0 "no stream under the default prefix"

scrape() { curl -s -m 5 "http://127.0.0.1:$MPORT/metrics"; }
value() { scrape | awk -v k="$1" '$1 == k { print $2 }'; }

DLOG=$T_DIR/postmuxd.log
"$PMXD" -c "$T_CONF" >>"$DLOG" 2>&1 &
DPID=$!
t_wait_for 20 "[[ \$(curl -s -m 2 -o /dev/null -w '%{http_code}' http://127.0.0.1:$MPORT/healthz) == 200 ]]"

t_case "postmux_queue_depth is the XLEN of the prefixed stream"
t_wait_for 15 "[[ \$(value 'postmux_queue_depth{workspace=\"$BETA\"}') == 0 ]]"
t_wait_for 15 "[[ \$(value 'postmux_queue_depth{workspace=\"$ACME\"}') == 3 ]]"
t_expect_eq "$(value "postmux_queue_depth{workspace=\"$ACME\"}")" "$(t_redis XLEN "acme:{$ACME}:jobs")" \
    "Acme = XLEN acme:{ws}:jobs"
t_expect_match "$(scrape)" '^# HELP postmux_queue_depth .*\{prefix\}:\{ws\}:jobs' "HELP names the prefix"

t_stop_postmuxd "$DPID"
t_done
