#!/usr/bin/env bash
# `postmux doctor`: one OK/WARN/FAIL line per check against the test's own
# services; WARN for a Redis without AOF (exit 0), FAIL (exit 1) for a Redis
# that is down, a relay that does not answer, a schema behind the binary, a
# missing master key or config.
source "$(dirname "$0")/lib.sh"
t_setup

# status CHECK: the status word of the line for CHECK in $T_OUT.
status() { printf '%s\n' "$T_OUT" | sed -n "s/^\([A-Z]*\) *$1: .*/\1/p"; }
conf_copy() { cp "$T_CONF" "$T_DIR/$1.conf"; }

t_case "doctor: all services up, Redis without AOF -> OK lines and WARN, exit 0"
t_run $PMX doctor
t_expect_rc 0
t_expect_eq "$(status config)" OK "config"
t_expect_eq "$(status postgres)" OK "postgres"
t_expect_eq "$(status schema)" OK "schema"
t_expect_match "$T_OUT" '^OK +schema: version [0-9]+ \(current\)$' "schema line"
t_expect_eq "$(status redis)" OK "redis"
t_expect_eq "$(status 'redis appendonly')" WARN "appendonly"
t_expect_eq "$(status 'redis appendfsync')" WARN "appendfsync"
t_expect_eq "$(status 'master key')" OK "master key"
t_expect_eq "$(status relay)" OK "relay"
t_expect_match "$T_OUT" "^OK +relay: 127\\.0\\.0\\.1:$T_SINK_PORT answered 220 " "relay greeting"
t_expect_eq "$(printf '%s\n' "$T_OUT" | grep -cvE '^(OK|WARN|FAIL) +[a-z ]+: ')" 0 "every line is STATUS check: detail"
t_expect_eq "$(status 'redis client unblock')" OK "client unblock"
t_expect_eq "$(printf '%s\n' "$T_OUT" | wc -l)" 9 "nine checks"

t_case "doctor: Redis with appendonly yes / appendfsync always -> OK"
t_redis config set appendonly yes >/dev/null
t_redis config set appendfsync always >/dev/null
t_run $PMX doctor
t_expect_rc 0
t_expect_match "$T_OUT" '^OK +redis appendonly: yes$' "appendonly"
t_expect_match "$T_OUT" '^OK +redis appendfsync: always$' "appendfsync"
t_expect_nomatch "$T_OUT" '^(WARN|FAIL)' "no WARN or FAIL"
t_redis config set appendonly no >/dev/null

t_case "doctor: an ACL without CLIENT UNBLOCK -> WARN, exit 0"
t_redis ACL SETUSER default -client\|unblock >/dev/null
t_run $PMX doctor
t_expect_rc 0
t_expect_match "$T_OUT" '^WARN +redis client unblock: refused \(NOPERM' "client unblock line"
t_redis ACL SETUSER default +client\|unblock >/dev/null

t_case "doctor: relay not listening -> FAIL, exit 1"
conf_copy norelay
port=$(pmx_svc_free_port)
T_CONF=$T_DIR/norelay.conf t_conf_set relay port "$port"
t_run $PMX -c "$T_DIR/norelay.conf" doctor
t_expect_rc 1
t_expect_match "$T_OUT" "^FAIL +relay: cannot connect to 127\\.0\\.0\\.1:$port: Connection refused" "relay line"
t_expect_eq "$(status redis)" OK "the other checks still run"

t_case "doctor: relay that does not speak SMTP -> FAIL"
conf_copy notsmtp
T_CONF=$T_DIR/notsmtp.conf t_conf_set relay port "$T_REDIS_PORT"
t_run $PMX -c "$T_DIR/notsmtp.conf" doctor
t_expect_rc 1
t_expect_match "$T_OUT" '^FAIL +relay: 127\.0\.0\.1:[0-9]+ did not greet with 220' "relay line"

t_case "doctor: tls = starttls against a relay without STARTTLS -> FAIL"
conf_copy starttls
T_CONF=$T_DIR/starttls.conf t_conf_set relay tls starttls
t_run $PMX -c "$T_DIR/starttls.conf" doctor
t_expect_rc 1
t_expect_match "$T_OUT" '^FAIL +relay: .* does not offer STARTTLS' "relay line"

t_case "doctor: master key missing, wrong size, world-readable"
conf_copy nokey
T_CONF=$T_DIR/nokey.conf t_conf_set keys master_key_file "$T_DIR/absent.key"
t_run $PMX -c "$T_DIR/nokey.conf" doctor
t_expect_rc 1
t_expect_eq "$(status 'master key')" FAIL "missing key"
head -c 16 /dev/urandom | base64 >"$T_DIR/short.key"
chmod 600 "$T_DIR/short.key"
T_CONF=$T_DIR/nokey.conf t_conf_set keys master_key_file "$T_DIR/short.key"
t_run $PMX -c "$T_DIR/nokey.conf" doctor
t_expect_rc 1
t_expect_match "$T_OUT" '^FAIL +master key: .*32 bytes' "short key"
cp "$T_MASTER_KEY" "$T_DIR/open.key"
chmod 644 "$T_DIR/open.key"
T_CONF=$T_DIR/nokey.conf t_conf_set keys master_key_file "$T_DIR/open.key"
t_run $PMX -c "$T_DIR/nokey.conf" doctor
t_expect_rc 0
t_expect_match "$T_OUT" '^WARN +master key: .*readable or writable by others' "open key"

t_case "doctor: Postgres unreachable -> FAIL"
conf_copy nopg
T_CONF=$T_DIR/nopg.conf t_conf_set postgres conninfo "host=$T_DIR port=1 dbname=x"
t_run $PMX -c "$T_DIR/nopg.conf" doctor
t_expect_rc 1
t_expect_match "$T_OUT" '^FAIL +postgres: cannot connect: ' "postgres line"
t_expect_eq "$(status relay)" OK "relay still checked"

t_case "doctor: schema missing, behind or ahead of the binary -> FAIL"
latest=$(t_psql "select max(version) from schema_migrations")
SCRATCH=${T_DB}_scratch
t_psql "create database \"$SCRATCH\""
pmx_svc_atexit "\"\$PMX_PG_BIN/psql\" -XAtq -h \"$PMX_PG_HOST\" -p \"$PMX_PG_PORT\" -U \"$PMX_PG_USER\" -d postgres -c 'drop database if exists \"$SCRATCH\" with (force)' >/dev/null 2>&1"
conf_copy scratch
T_CONF=$T_DIR/scratch.conf t_conf_set postgres conninfo "host=$PMX_PG_HOST port=$PMX_PG_PORT user=$PMX_PG_USER dbname=$SCRATCH"
t_run $PMX -c "$T_DIR/scratch.conf" doctor
t_expect_rc 1
t_expect_match "$T_OUT" '^FAIL +schema: not migrated \(no schema_migrations\): run postmux migrate$' "empty database"
scratch_sql() { "$PMX_PG_BIN/psql" -XAtq -v ON_ERROR_STOP=1 -h "$PMX_PG_HOST" -p "$PMX_PG_PORT" -U "$PMX_PG_USER" -d "$SCRATCH" -c "$1"; }
scratch_sql "create table schema_migrations (version integer primary key, name text not null)"
scratch_sql "insert into schema_migrations values ($((latest - 1)), 'older')"
t_run $PMX -c "$T_DIR/scratch.conf" doctor
t_expect_rc 1
t_expect_match "$T_OUT" "^FAIL +schema: version $((latest - 1)), this postmux needs $latest: run postmux migrate\$" "behind"
scratch_sql "insert into schema_migrations values ($((latest + 1)), 'newer')"
t_run $PMX -c "$T_DIR/scratch.conf" doctor
t_expect_rc 1
t_expect_match "$T_OUT" "^FAIL +schema: version $((latest + 1)) is newer than this postmux \($latest\)" "ahead"

t_case "doctor: unreadable config -> FAIL, exit 1"
t_run $PMX -c "$T_DIR/none.conf" doctor
t_expect_rc 1
t_expect_match "$T_OUT" "^FAIL +config: $T_DIR/none.conf" "config line"

t_case "doctor: Redis down -> FAIL, exit 1"
t_redis shutdown nosave >/dev/null 2>&1
t_wait_for 10 "! /usr/bin/redis-cli -s '$T_REDIS_SOCK' ping"
t_run $PMX doctor
t_expect_rc 1
t_expect_match "$T_OUT" '^FAIL +redis: cannot connect to unix:' "redis line"
t_expect_nomatch "$T_OUT" 'appendonly' "no AOF lines without Redis"
t_expect_eq "$(status postgres)" OK "postgres still OK"

t_run $PMX doctor extra
t_expect_rc 2

t_done
