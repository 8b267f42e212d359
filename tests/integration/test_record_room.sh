#!/usr/bin/env bash
# The record room (docs/delivery.md, "The way of one job"): a job whose relaying is over
# and that only waits for its outcome to commit gives its place at the relay to a new
# job, for twice as many such jobs as the worker's capacity; no more. Postgres is held
# up by a lock on `events` (every outcome batch writes there) while a burst is queued:
# one worker of capacity 4 (connections_per_worker = 1) relays exactly 12 jobs, then
# waits.
# Once the lock goes, every job is recorded and delivered exactly once.
source "$(dirname "$0")/lib.sh"
t_setup

t_conf_set daemon workers 1
t_conf_set relay connections_per_worker 1

WS=$($PMX workspace create Acme)
$PMX domain add Acme acme.test --algorithm ed25519 >/dev/null
$PMX domain verify acme.test --skip-dns >/dev/null
STREAM="pmx:{$WS}:jobs"

xadd() { t_redis XADD "$STREAM" '*' from news@acme.test subject s text t to "$1" >/dev/null; }
sent() { t_psql "select count(*) from recipients where status = 'sent' and address like '$1%'"; }
relayed() { cat "$T_SINK_DIR"/* 2>/dev/null | grep -c "^X-Rcpt-Args: <$1"; }

"$PMXD" -c "$T_CONF" >>"$T_DIR/postmuxd.log" 2>&1 &
DPID=$!

t_case "a first job goes through (the worker is up, its statements prepared)"
xadd warm@example.net
t_wait_for 30 "[[ \$(sent warm) == 1 ]]"
t_expect_eq "$(sent warm)" 1 "recorded"

t_case "outcomes held up by a lock: capacity 4 at the relay and 8 in the record room, no more"
t_psql "begin; lock table events in access exclusive mode; select pg_sleep(60); commit;" \
    >/dev/null 2>&1 &
LOCKER=$!
t_wait_for 10 "[[ \$(t_psql \"select count(*) from pg_locks l join pg_class c on c.oid = l.relation
                              where c.relname = 'events' and l.mode = 'AccessExclusiveLock' and l.granted\") == 1 ]]"
for i in $(seq 1 20); do xadd "room$i@example.net"; done
t_wait_for 6 "(( \$(relayed room) >= 12 ))"
sleep 1.5
t_expect_eq "$(relayed room)" 12 "jobs relayed while no outcome could commit"
t_expect_eq "$(sent room)" 0 "none recorded yet"

t_case "the lock gone: every job recorded and delivered exactly once"
t_psql "select pg_cancel_backend(pid) from pg_stat_activity
         where datname = current_database() and query like '%pg_sleep(60)%'
           and pid <> pg_backend_pid()" >/dev/null
wait "$LOCKER"
t_wait_for 60 "[[ \$(sent room) == 20 ]]"
t_expect_eq "$(sent room)" 20 "recorded"
t_expect_eq "$(relayed room)" 20 "each delivered once"
t_expect_eq "$(t_psql "select count(*) from messages")" 21 "one message row per job"

t_stop_postmuxd "$DPID"
t_done
