#!/usr/bin/env bash
# `postmux migrate`: idempotent, one line per applied migration, safe when four
# hosts run it at once, refuses a database newer than the binary, and a failed
# migration leaves neither its tables nor its schema_migrations row.
source "$(dirname "$0")/lib.sh"
t_setup

# The migrations the binary carries, from the source tree it was built from.
mapfile -t MIGRATIONS < <(cd "$PMX_ROOT/sql" && ls [0-9]*_*.sql | sed 's/\.sql$//' | sort)
N_MIG=${#MIGRATIONS[@]}
LATEST=$((10#$(printf '%s\n' "${MIGRATIONS[@]}" | tail -n1 | sed 's/_.*//')))

# Extra databases on the shared cluster, named after this test's own database.
BASE_DB=$(t_psql "select current_database()")
FRESH_DBS=()
drop_fresh_dbs() {
    local db
    for db in "${FRESH_DBS[@]}"; do
        t_psql "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1
    done
    return 0
}
pmx_svc_atexit drop_fresh_dbs
# fresh_db SUFFIX: creates an empty database and sets $conf to a config file for it
# (not called in $(...): FRESH_DBS must grow in this shell).
fresh_db() {
    local db="${BASE_DB}_$1"
    conf="$T_DIR/$1.conf"
    t_psql "create database $db" >/dev/null
    FRESH_DBS+=("$db")
    sed "s|^conninfo *=.*|conninfo = $T_DB_CONNINFO dbname=$db|" "$T_CONF" > "$conf"
}
psql_db() {    # psql_db SUFFIX SQL
    "${PMX_PG_BIN:-/usr/bin}/psql" -XAtq -h "$PMX_PG_HOST" -p "$PMX_PG_PORT" -U "$PMX_PG_USER" -d "${BASE_DB}_$1" -c "$2"
}

t_case "migrate on an up-to-date database applies nothing"
before=$(t_psql "select version || ':' || name || ':' || applied_at from schema_migrations order by 1")
t_run $PMX migrate
t_expect_rc 0
t_expect_eq "$T_OUT" "schema up to date (version $LATEST)" "output"
t_expect_eq "$(t_psql "select version || ':' || name || ':' || applied_at from schema_migrations order by 1")" \
    "$before" "schema_migrations unchanged"

t_case "migrate on a fresh database applies each migration and says so"
fresh_db fresh
t_run $PMX -c "$conf" migrate
t_expect_rc 0
want=$( (for m in "${MIGRATIONS[@]}"; do echo "applied $m"; done; echo "schema up to date (version $LATEST)") )
t_expect_eq "$T_OUT" "$want" "output"
t_expect_eq "$(psql_db fresh "select string_agg(name, ',' order by version) from schema_migrations")" \
    "$(IFS=,; echo "${MIGRATIONS[*]}")" "schema_migrations rows"
t_expect_eq "$(psql_db fresh "select count(*) from schema_migrations where applied_at is null")" 0 "applied_at set"
t_expect_eq "$(psql_db fresh "select to_regclass('workspaces') is not null")" t "workspaces exists"

t_case "migrate twice on the fresh database: the second run is a no-op"
t_run $PMX -c "$conf" migrate
t_expect_rc 0
t_expect_eq "$T_OUT" "schema up to date (version $LATEST)" "output"
t_expect_eq "$(psql_db fresh "select count(*) from schema_migrations")" "$N_MIG" "rows"

t_case "four concurrent migrate runs on a fresh database all succeed, each migration once"
fresh_db conc
pids=()
for i in 1 2 3 4; do
    ( $PMX -c "$conf" migrate >"$T_DIR/conc$i.out" 2>"$T_DIR/conc$i.err"; echo $? >"$T_DIR/conc$i.rc" ) &
    pids+=($!)
done
wait "${pids[@]}"    # not a bare wait: the harness's services are children too
for i in 1 2 3 4; do
    t_expect_eq "$(cat "$T_DIR/conc$i.rc")" 0 "run $i exit code ($(cat "$T_DIR/conc$i.err"))"
    t_expect_eq "$(tail -n1 "$T_DIR/conc$i.out")" "schema up to date (version $LATEST)" "run $i last line"
done
t_expect_eq "$(cat "$T_DIR"/conc?.out | grep -c '^applied ' || true)" "$N_MIG" "applied lines over all runs"
t_expect_eq "$(psql_db conc "select count(*) || '/' || count(distinct version) from schema_migrations")" \
    "$N_MIG/$N_MIG" "one row per migration"
t_expect_eq "$(psql_db conc "select count(*) from pg_locks l join pg_database d on d.oid = l.database
                                   where l.locktype = 'advisory' and d.datname = current_database()")" 0 "no lock left"

t_case "a database newer than the binary is refused and left alone"
t_psql "insert into schema_migrations (version, name) values (99999, '99999_future')" >/dev/null
before=$(t_psql "select string_agg(version || name, ',' order by version) from schema_migrations")
t_run $PMX migrate
t_expect_rc 1
t_expect_match "$T_ERR" "^postmux: .*version 99999, newer than this postmux knows \\($LATEST\\)" "error"
t_expect_eq "$T_OUT" "" "stdout"
t_expect_eq "$(t_psql "select string_agg(version || name, ',' order by version) from schema_migrations")" \
    "$before" "schema_migrations unchanged"
t_psql "delete from schema_migrations where version = 99999" >/dev/null

t_case "a recorded migration whose name differs from the binary's is refused"
t_psql "update schema_migrations set name = '001_renamed' where version = 1" >/dev/null
t_run $PMX migrate
t_expect_rc 1
t_expect_match "$T_ERR" "version 1 is named '001_renamed'" "error"
t_psql "update schema_migrations set name = '${MIGRATIONS[0]}' where version = 1" >/dev/null

t_case "a failing migration rolls back whole, its row included"
fresh_db broken
psql_db broken "create table domains (x int)"    # 001 will collide with this
t_run $PMX -c "$conf" migrate
t_expect_rc 1
t_expect_match "$T_ERR" "^postmux: migration ${MIGRATIONS[0]}: relation \"domains\" already exists" "error"
t_expect_eq "$(psql_db broken "select count(*) from schema_migrations")" 0 "no schema_migrations row"
t_expect_eq "$(psql_db broken "select to_regclass('workspaces') is null")" t "workspaces rolled back"
psql_db broken "drop table domains"
t_run $PMX -c "$conf" migrate
t_expect_rc 0
t_expect_eq "$(psql_db broken "select count(*) from schema_migrations")" "$N_MIG" "applied after the fix"

t_case "migrate takes no arguments"
t_run $PMX migrate now
t_expect_rc 2

t_case "migrate without a reachable database is a user error"
sed "s|^conninfo *=.*|conninfo = $T_DB_CONNINFO dbname=${BASE_DB}_does_not_exist|" "$T_CONF" > "$T_DIR/nodb.conf"
t_run $PMX -c "$T_DIR/nodb.conf" migrate
t_expect_rc 1
t_expect_match "$T_ERR" "^postmux: cannot connect to Postgres" "error"

t_done
