#!/usr/bin/env bash
# The PostgreSQL server restarted under a running postmuxd (DESIGN: "nothing is lost"):
# a fast shutdown cuts every connection, nothing listens for 3 s, then the same server
# comes back on the same port. Jobs in flight keep their outcomes and are recorded
# once it is back; none is relayed twice; settings changes made after the restart
# reach the workers (LISTEN is made again). This file runs its own Postgres (the
# shared one of tests/run.sh cannot be restarted under the other files).
unset PMX_PG_HOST PMX_PG_PORT PMX_PG_USER
source "$(dirname "$0")/lib.sh"
t_setup

t_conf_set daemon workers 2
WS=$($PMX workspace create Acme)
$PMX domain add Acme acme.test --algorithm ed25519 >/dev/null
$PMX domain verify acme.test --skip-dns >/dev/null
STREAM="pmx:{$WS}:jobs"
N=3000
sent() { t_psql "select count(*) from recipients where status = 'sent' and address like '$1%'" 2>/dev/null; }

"$PMXD" -c "$T_CONF" >>"$T_DIR/postmuxd.log" 2>&1 &
D=$!
t_wait_for 20 "grep -q 'settings loaded' '$T_DIR/postmuxd.log'"

t_case "Postgres restarted while $N jobs flow: every job recorded once, none relayed twice"
for ((i = 0; i < N; i++)); do
    printf 'XADD %s * from news@acme.test to p%d@example.net subject s text t id p%d\n' "$STREAM" "$i" "$i"
done | t_redis >/dev/null
t_wait_for 60 "(( \$(sent p) >= 300 ))"
BEFORE=$(sent p)
pmx_svc_pg_restart 3 || t_fail "Postgres did not come back"
echo "# Postgres restarted after $BEFORE of $N were recorded" >&2
t_expect_eq "$((BEFORE < N))" 1 "the restart came while jobs were still flowing ($BEFORE of $N)"
t_wait_for 180 "[[ \$(sent p) == $N ]]"
t_expect_eq "$(sent p)" "$N" "recipients sent"
t_expect_eq "$(t_psql "select count(*) from messages where client_id like 'p%'")" "$N" "one message per job"
t_wait_for 30 "[[ \$(t_redis XPENDING '$STREAM' postmux | head -n 1) == 0 ]]"
t_expect_eq "$(t_redis XPENDING "$STREAM" postmux | head -n 1)" 0 "pending entries"
t_expect_eq "$(t_redis XLEN "$STREAM")" 0 "entries left"
DUPS=$(grep -h '^X-Rcpt-Args: <p' "$T_SINK_DIR"/* 2>/dev/null | sort | uniq -d | wc -l)
t_expect_eq "$(grep -h '^X-Rcpt-Args: <p' "$T_SINK_DIR"/* 2>/dev/null | wc -l)" "$N" "deliveries at the sink"
t_expect_eq "$DUPS" 0 "recipients relayed twice"
t_expect_match "$(cat "$T_DIR/postmuxd.log")" 'postgres connection lost' "the outage was logged"
t_expect_match "$(cat "$T_DIR/postmuxd.log")" 'postgres reconnected' "so was the way back"

t_case "after the restart, a settings change reaches the workers (LISTEN made again)"
# By NOTIFY within a few seconds, not by the 60 s safety-net reload: both workers log
# a load with the second workspace right after it is made.
L0=$(wc -l <"$T_DIR/postmuxd.log")
LATE=$($PMX workspace create Late)
t_wait_for 4 "(( \$(tail -n +$((L0 + 1)) '$T_DIR/postmuxd.log' | grep -c 'settings loaded .*workspaces=2 ') >= 2 ))"
t_expect_eq "$(tail -n +$((L0 + 1)) "$T_DIR/postmuxd.log" | grep -c 'settings loaded .*workspaces=2 ')" 2 \
    "workers that loaded the new workspace by NOTIFY"
t_settings_change "$D" -- $PMX domain add Late late.test --algorithm ed25519
t_settings_change "$D" -- $PMX domain verify late.test --skip-dns
t_redis XADD "pmx:{$LATE}:jobs" '*' from news@late.test to late@example.net subject s text t >/dev/null
t_wait_for 15 "[[ \$(sent late) == 1 ]]"
t_expect_eq "$(sent late)" 1 "a new workspace's job sent"

t_stop_postmuxd "$D"
t_done
