#!/usr/bin/env bash
# Egress pools (docs/delivery.md "Egress pools"; postmux.conf(5) [pool NAME]; postmux(1)
# workspace set --pool): the real postmuxd sends each workspace's mail from a source
# address of its pool with the pool's helo_name, over sessions of its own. The relay
# is tls_relay.py (aiosmtpd) with --log-sessions: one line per message naming the
# connection's source address and EHLO name. Pools bind 127.0.0.2 / 127.0.0.3 ...,
# loopback aliases Linux answers without any set-up.
source "$(dirname "$0")/lib.sh"
t_setup
source "$(dirname "$0")/relay_lib.sh"
make_certs || t_fail "cannot make test certificates"

start_relay pools localhost --mode absent --pipelining --log-sessions
t_conf_set relay port "$RELAY_PORT"
t_conf_set relay tls none
t_conf_set relay helo_name default.test
t_conf_set relay connections_per_worker 4
t_conf_set "pool blue" addresses 127.0.0.2
t_conf_set "pool blue" helo_name blue.test
t_conf_set "pool green" addresses "127.0.0.3"
t_conf_set "pool green" helo_name green.test
t_conf_set "pool rr" addresses "127.0.0.4, 127.0.0.5"

BLUE=$($PMX workspace create BlueCo)
GREEN=$($PMX workspace create GreenCo)
PLAIN=$($PMX workspace create PlainCo)
for w in blue green plain; do
    $PMX domain add "${w^}Co" "$w.test" --algorithm ed25519 >/dev/null
    $PMX domain verify "$w.test" --skip-dns >/dev/null
done

xadd() { local ws=$1; shift; t_redis XADD "pmx:{$ws}:jobs" '*' "$@" >/dev/null; }
rcpt_status() { t_psql "select string_agg(r.status, ',' order by r.address) from recipients r
                        join messages m on m.id = r.message_id where m.client_id = '$1'"; }
# The SESSION lines of the messages whose envelope sender is $1: "IP ehlo" per line, sorted, unique.
sessions_of() {
    grep -E "^SESSION .* mail=<$1>" "$RELAY_LOG" 2>/dev/null |
        sed -E 's/^SESSION peer=([^ ]*):[0-9]+ ehlo=([^ ]*) .*/\1 \2/' | sort -u
}
# The connections (IP:PORT) the messages of sender $1 came on.
conns_of() { grep -E "^SESSION .* mail=<$1>" "$RELAY_LOG" 2>/dev/null | sed -E 's/^SESSION peer=([^ ]*) .*/\1/' | sort -u; }

t_case "the config: [pool NAME] sections load; a bad one is refused with its line"
t_run "$PMXD" --check-config -c "$T_CONF"
t_expect_rc 0
bad() {   # bad NAME TEXT-TO-APPEND EXPECTED-ERROR-ERE
    cp "$T_CONF" "$T_DIR/bad.conf"
    printf '%s\n' "$2" >>"$T_DIR/bad.conf"
    t_run "$PMXD" --check-config -c "$T_DIR/bad.conf"
    t_expect_rc 1
    t_expect_match "$T_ERR$T_OUT" "$3" "$1"
}
bad "not an address" $'[pool x]\naddresses = 127.0.0.2, mail.example.com' 'bad\.conf:[0-9]+: \[pool\] addresses: .mail\.example\.com. is not an IPv4 or IPv6 address'
bad "twice" $'[pool blue]\naddresses = 127.0.0.9' 'bad\.conf:[0-9]+: \[pool blue\] given twice \(first on line [0-9]+\)'
bad "no addresses" $'[pool empty]\nhelo_name = e.test' 'bad\.conf:[0-9]+: \[pool empty\] has no addresses'
bad "the name default" $'[pool default]\naddresses = 127.0.0.2' 'NAME must be .* not "default"'
bad "an unknown key" $'[pool y]\naddresses = 127.0.0.2\nsource = 1' '\[pool\] unknown key .source.'
bad "an address twice" $'[pool z]\naddresses = 127.0.0.2, 127.0.0.2' '127\.0\.0\.2 is listed twice'
bad "a bad helo_name" $'[pool w]\naddresses = ::1\nhelo_name = a b' '\[pool\] helo_name: expected a domain name'

t_case "workspace set --pool: a name the config lacks is refused, nothing written"
t_run "$PMX" workspace set BlueCo --pool nosuch
t_expect_rc 1
t_expect_match "$T_ERR" "no \[pool nosuch\] section in $T_CONF" "error"
t_run "$PMX" workspace set BlueCo --pool 'bad name'
t_expect_rc 1
t_expect_match "$T_ERR" 'expected default or a pool name' "error for a bad shape"
t_expect_eq "$(t_psql "select count(*) from workspaces where pool is not null")" 0 "pools stored"

t_case "workspace set --pool NAME and show: stored and shown; --pool default clears it"
t_run "$PMX" workspace set BlueCo --pool blue
t_expect_rc 0
t_expect_match "$T_OUT" '^pool: +blue$' "set prints the workspace"
$PMX workspace set GreenCo --pool green >/dev/null
$PMX workspace set PlainCo --pool rr >/dev/null
t_run "$PMX" workspace show PlainCo --json
t_expect_match "$T_OUT" '"pool": "rr"' "show --json"
t_expect_match "$T_OUT" '"route": "default"' "route in show --json"
$PMX workspace set PlainCo --pool default >/dev/null
t_run "$PMX" workspace show PlainCo
t_expect_match "$T_OUT" '^pool: +default$' "default again"
t_expect_eq "$(t_psql "select pool from workspaces where id = '$PLAIN'")" "" "stored as NULL"

t_case "postmux doctor: one line per pool; an address not on this host is a FAIL"
t_run "$PMX" doctor
t_expect_rc 0
t_expect_match "$T_OUT" '^OK   pool blue: 127\.0\.0\.2 bindable, helo blue\.test$' "pool blue"
t_expect_match "$T_OUT" '^OK   pool rr: 127\.0\.0\.4, 127\.0\.0\.5 bindable, helo of the route$' "pool rr"
cp "$T_CONF" "$T_DIR/far.conf"
pmx_svc_conf_set "$T_DIR/far.conf" "pool far" addresses "127.0.0.7, 192.0.2.10"
t_run env POSTMUX_CONFIG="$T_DIR/far.conf" "$PMX" doctor
t_expect_rc 1
t_expect_match "$T_OUT" '^FAIL pool far: 192\.0\.2\.10 cannot be bound: ' "pool far"

"$PMXD" -c "$T_CONF" >>"$T_DIR/postmuxd.log" 2>&1 &
DPID=$!

t_case "each workspace's mail leaves from its pool's address with its helo_name"
for i in 1 2 3 4 5 6; do
    xadd "$BLUE" from a@blue.test to "b$i@example.net" subject s text t id "b$i"
    xadd "$GREEN" from a@green.test to "g$i@example.net" subject s text t id "g$i"
    xadd "$PLAIN" from a@plain.test to "p$i@example.net" subject s text t id "p$i"
done
t_wait_for 60 "[[ \$(t_psql \"select count(*) from recipients where status = 'sent'\") == 18 ]]"
t_wait_for 10 "(( \$(grep -c '^SESSION' $RELAY_LOG) >= 18 ))"
t_expect_eq "$(sessions_of a@blue.test)" "127.0.0.2 blue.test" "blue's sessions"
t_expect_eq "$(sessions_of a@green.test)" "127.0.0.3 green.test" "green's sessions"
t_expect_eq "$(sessions_of a@plain.test)" "127.0.0.1 default.test" "the default workspace's sessions"

t_case "sessions are never shared between pools"
both=$(LC_ALL=C comm -12 <(conns_of a@blue.test) <(conns_of a@green.test))
t_expect_eq "$both" "" "connections that carried mail of both pools"
both=$(LC_ALL=C comm -12 <(conns_of a@blue.test) <(conns_of a@plain.test))
t_expect_eq "$both" "" "connections that carried mail of blue and of the default"
t_expect_match "$(cat "$T_DIR/postmuxd.log")" 'route sessions made key="relay pool=blue"' "the log names the session key"

t_case "a pool with two addresses: every session binds one of them"
t_settings_change "$DPID" -- "$PMX" workspace set PlainCo --pool rr
for i in $(seq 1 12); do xadd "$PLAIN" from rr@plain.test to "r$i@example.net" subject s text t id "r$i"; done
t_wait_for 60 "[[ \$(t_psql \"select count(*) from recipients where status = 'sent'\") == 30 ]]"
t_wait_for 10 "(( \$(grep -c '^SESSION.*mail=<rr@plain.test>' $RELAY_LOG) >= 12 ))"
t_expect_match "$(sessions_of rr@plain.test | cut -d' ' -f1 | sort -u | paste -sd' ')" \
    '^127\.0\.0\.[45]( 127\.0\.0\.5)?$' "source addresses of pool rr"
t_expect_eq "$(sessions_of rr@plain.test | cut -d' ' -f2 | sort -u)" "default.test" \
    "no helo_name in the pool: the relay's"

t_case "a settings change is picked up live: back to default, then into another pool"
t_settings_change "$DPID" -- "$PMX" workspace set PlainCo --pool default
xadd "$PLAIN" from live1@plain.test to l1@example.net subject s text t id l1
t_wait_for 30 "[[ \$(rcpt_status l1) == sent ]]"
t_settings_change "$DPID" -- "$PMX" workspace set PlainCo --pool green
xadd "$PLAIN" from live2@plain.test to l2@example.net subject s text t id l2
t_wait_for 30 "[[ \$(rcpt_status l2) == sent ]]"
t_wait_for 10 "grep -q 'mail=<live2@plain.test>' $RELAY_LOG"
t_expect_eq "$(sessions_of live1@plain.test)" "127.0.0.1 default.test" "after --pool default"
t_expect_eq "$(sessions_of live2@plain.test)" "127.0.0.3 green.test" "after --pool green"
t_expect_match "$(cat "$T_DIR/postmuxd.log")" 'route sessions retired key="relay pool=rr"' \
    "the pool no workspace uses any more is retired"

t_case "a pool the daemon's config lacks: the workspace's mail is deferred with a clear log line"
# The CLI reads another config that has [pool gone]; the running daemon's has not.
cp "$T_CONF" "$T_DIR/cli.conf"
pmx_svc_conf_set "$T_DIR/cli.conf" "pool gone" addresses 127.0.0.6
t_settings_change "$DPID" -- env POSTMUX_CONFIG="$T_DIR/cli.conf" "$PMX" workspace set BlueCo --pool gone
xadd "$BLUE" from gone@blue.test to x@example.net subject s text t id gone1
t_wait_for 30 "[[ \$(rcpt_status gone1) == deferred ]]"
t_expect_match "$(t_psql "select r.last_response from recipients r join messages m on m.id = r.message_id
                          where m.client_id = 'gone1'")" \
    "^451 4\.3\.5 egress pool gone is not in this postmuxd's configuration \($T_CONF\)$" "last_response"
t_expect_match "$(cat "$T_DIR/postmuxd.log")" \
    "warn: workspace cannot send, deferring its mail ws=$BLUE reason=\"451 4.3.5 egress pool gone" "log line"
t_expect_eq "$(grep -c 'mail=<gone@blue.test>' "$RELAY_LOG")" 0 "nothing reached the relay"
t_settings_change "$DPID" -- "$PMX" workspace set BlueCo --pool blue
t_wait_for 30 "[[ \$(rcpt_status gone1) == sent ]]"
t_expect_eq "$(sessions_of gone@blue.test)" "127.0.0.2 blue.test" "the retry left from pool blue"

t_stop_postmuxd "$DPID"
stop_relay
t_done
