#!/usr/bin/env bash
# Smoke test of the test harness itself: the services t_setup starts really answer
# (Postgres with the migrated schema, Redis, smtp-sink, dnsmasq), and the t_expect_*
# helpers really fail when they should — a harness that cannot fail proves nothing.
source "$(dirname "$0")/lib.sh"
t_setup

t_case "postgres answers on its socket and on 127.0.0.1"
t_expect_eq "$(t_psql "select current_database()")" "$T_DB" "current database"
t_run "$PMX_PG_BIN/psql" -XAtq -h 127.0.0.1 -p "$PMX_PG_PORT" -U postmux -d "$T_DB" -c "select 40 + 2"
t_expect_rc 0
t_expect_eq "$T_OUT" 42 "select over TCP"

t_case "postmux migrate created the schema"
t_expect_eq "$(t_psql "select count(*) from information_schema.tables
                       where table_schema = 'public'
                         and table_name in ('workspaces', 'schema_migrations')")" 2 \
    "workspaces and schema_migrations tables"
t_expect_match "$(t_psql "select count(*) from schema_migrations")" '^[1-9][0-9]*$' \
    "applied migrations"

t_case "a second migrate changes nothing"
before=$(t_psql "select count(*) from schema_migrations")
t_run "$PMX" migrate
t_expect_rc 0
t_expect_eq "$(t_psql "select count(*) from schema_migrations")" "$before" "migrations after a rerun"

t_case "each file gets a database of its own"
t_expect_match "$T_DB" '^pmx_test_harness_[0-9a-f]{8}$' "database name"
t_expect_match "$(t_psql "select datname from pg_database")" "^$T_DB\$" "listed in pg_database"

t_case "redis answers PING on its unix socket and its port"
t_expect_eq "$(t_redis ping)" PONG "PING over $T_REDIS_SOCK"
t_expect_eq "$(/usr/bin/redis-cli -h 127.0.0.1 -p "$T_REDIS_PORT" ping)" PONG "PING over TCP"
t_redis set pmx:harness 1 >/dev/null
t_expect_eq "$(t_redis get pmx:harness)" 1 "value read back"

t_case "the config file points at this file's services"
t_expect_match "$(cat "$T_CONF")" "^conninfo = $T_DB_CONNINFO\$" "conninfo line"
t_expect_match "$(cat "$T_CONF")" "^address = unix:$T_REDIS_SOCK\$" "redis address"
t_expect_match "$(cat "$T_CONF")" "^port = $T_SINK_PORT\$" "relay port"
t_expect_eq "$POSTMUX_CONFIG" "$T_CONF" "POSTMUX_CONFIG"
t_expect_eq "$(stat -c %a "$T_MASTER_KEY")" 600 "master key mode"
t_expect_eq "$(base64 -d "$T_MASTER_KEY" | wc -c)" 32 "master key bytes"

t_case "t_conf_set replaces, adds to a section, and adds a section"
t_conf_set relay port 2626
t_conf_set relay helo_name harness.test
t_conf_set webhooks timeout 5s
t_conf_set submission listen ""
conf=$(cat "$T_CONF")
t_expect_match "$conf" '^port = 2626$' "replaced key"
t_expect_nomatch "$conf" "^port = $T_SINK_PORT\$" "old value gone"
t_expect_eq "$(sed -n '/^\[relay\]/,/^\[/p' "$T_CONF" | grep -c '^helo_name = harness.test$')" 1 \
    "new key inside [relay]"
t_expect_eq "$(tail -n 2 "$T_CONF" | paste -sd '|')" '[webhooks]|timeout = 5s' "new section at the end"
t_expect_eq "$(grep -c '^listen =$' "$T_CONF")" 1 "empty value"
t_conf_set relay port "$T_SINK_PORT"

t_case "smtp-sink takes a message from swaks and dumps it"
token=harness-$RANDOM$RANDOM
t_run swaks --server "127.0.0.1:$T_SINK_PORT" --from sender@example.test \
    --to rcpt@example.test --header "Subject: $token" --body "body $token"
t_expect_rc 0
t_wait_for 10 "grep -qs 'body $token' \"\$T_SINK_DIR\"/m.*"
dump=$(grep -ls "body $token" "$T_SINK_DIR"/m.* | head -n 1)
t_expect_match "$(cat "$dump" 2>/dev/null)" '^X-Rcpt-Args: <rcpt@example.test>' "envelope recipient in the dump"

t_case "an extra smtp-sink passes options through (-r RCPT answers 4xx)"
port=$(t_sink_start -r RCPT)
t_expect_match "$port" '^[0-9]+$' "port printed"
t_expect_nomatch "$port" "^$T_SINK_PORT\$" "a port of its own"
t_run swaks --server "127.0.0.1:$port" --from sender@example.test --to rcpt@example.test
t_expect_match "$T_OUT" '^<\*\* +4[0-9][0-9]' "4xx to RCPT"
t_expect_eq "$(find "$T_DIR/sink1" -type f | wc -l)" 0 "nothing delivered"

t_case "dnsmasq answers TXT queries over UDP and TCP"
zone=$T_DIR/zone
long=$(printf 'k%.0s' {1..300})
cat >"$zone" <<EOF
txt-record=_postmux.example.test,"postmux-verify=abc123"
txt-record=sel._domainkey.example.test,"v=DKIM1; k=rsa; p=${long:0:200}","${long:200}"
EOF
dport=$(t_dns_start "$zone")
t_expect_match "$dport" '^[0-9]+$' "port printed"
t_expect_eq "$(pmx_svc_dns_txt "$dport" _postmux.example.test)" "postmux-verify=abc123" "TXT over UDP"
t_expect_eq "$(pmx_svc_dns_txt "$dport" sel._domainkey.example.test tcp)" "v=DKIM1; k=rsa; p=$long" \
    "split TXT over TCP"
t_expect_eq "$(pmx_svc_dns_txt "$dport" missing.example.test 2>/dev/null)" "" "unknown name"

t_case "the expectations fail when they should"
out=$(bash -c '
    source "$1"
    t_case "eq";      t_expect_eq 1 2 "one"
    t_case "match";   t_expect_match "abc" "^b" "text"
    t_case "nomatch"; t_expect_nomatch "abc" "b" "text"
    t_case "rc";      t_run false; t_expect_rc 0
    t_case "wait";    t_wait_for 0.3 "false"
    t_case "sub";     x=$(t_fail "from a subshell")
    t_case "good";    t_run true; t_expect_rc 0; t_expect_eq a a; t_expect_match "x
y" "^y$"
    t_done' harness-selftest "$PMX_ROOT/tests/integration/lib.sh" 2>&1)
t_expect_eq "$?" 1 "exit status of a file with failures"
t_expect_match "$out" "^not ok - eq: one: got '1', expected '2'\$" "t_expect_eq"
t_expect_match "$out" '^not ok - match: text: no line matches' "t_expect_match"
t_expect_match "$out" '^not ok - nomatch: text: /b/ matches' "t_expect_nomatch"
t_expect_match "$out" '^not ok - rc: `false` exited 1, expected 0' "t_expect_rc"
t_expect_match "$out" '^not ok - wait: timed out after 0.3s' "t_wait_for"
t_expect_match "$out" '^not ok - sub: from a subshell$' "t_fail in \$(...)"
t_expect_match "$out" '^ok - good$' "passing case"
t_expect_match "$out" '^# harness-selftest: 1 passed, 6 failed$' "summary"

t_case "a file that stops early is reported"
out=$(bash -c 'source "$1"; t_case "half"; exit 3' early "$PMX_ROOT/tests/integration/lib.sh" 2>&1)
t_expect_eq "$?" 3 "exit status kept"
t_expect_match "$out" '^not ok - half: the file stopped inside this case$' "open case"
t_expect_match "$out" '^not ok - early: ended before t_done \(exit status 3\)$' "missing t_done"

t_done
