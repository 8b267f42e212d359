#!/usr/bin/env bash
# A postmuxd started against a database its `postmux migrate` has not brought up to
# date (README, "PostgreSQL": migrate before starting a newer postmuxd) reads no jobs:
# each worker checks schema_migrations before its first settings load, logs once what
# to do, and asks again every 5 s; once the schema is current it loads and delivers.
source "$(dirname "$0")/lib.sh"
t_setup

WS=$($PMX workspace create Acme)
$PMX domain add Acme acme.test --algorithm ed25519 >/dev/null
$PMX domain verify acme.test --skip-dns >/dev/null
LATEST=$(t_psql "select max(version) from schema_migrations")
ROW=$(t_psql "select name from schema_migrations where version = $LATEST")
t_psql "delete from schema_migrations where version = $LATEST" >/dev/null
LOG=$T_DIR/postmuxd.log

t_case "a schema older than the binary: an error naming postmux migrate, no job read"
t_conf_set daemon workers 1
"$PMXD" -c "$T_CONF" >>"$LOG" 2>&1 &
DPID=$!
t_wait_for 20 "grep -q 'the database schema is at version $((LATEST - 1)), this postmuxd needs $LATEST: run postmux migrate' '$LOG'"
t_redis XADD "pmx:{$WS}:jobs" '*' from a@acme.test to r@example.net subject s text t id early >/dev/null
sleep 2
t_expect_eq "$(t_psql "select count(*) from messages")" 0 "nothing recorded"
t_expect_eq "$(t_redis XLEN "pmx:{$WS}:jobs")" 1 "the job waits in its stream"
t_expect_nomatch "$(cat "$LOG")" 'settings loaded' "no settings were loaded"
t_expect_eq "$(grep -c 'the database schema is at version' "$LOG")" 1 "logged once, not at every retry"

t_case "once migrated, the worker loads its settings and the job goes out"
t_psql "insert into schema_migrations (version, name) values ($LATEST, '$ROW')" >/dev/null
t_wait_for 30 "[[ \$(t_psql \"select count(*) from recipients where status = 'sent'\") == 1 ]]"
t_expect_match "$(cat "$LOG")" "the database schema is at version $LATEST now" "the recovery is logged"
t_stop_postmuxd "$DPID"

t_done
