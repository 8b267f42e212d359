#!/usr/bin/env bash
# Egress pools over direct delivery (docs/delivery.md "Egress pools", "Direct delivery";
# postmux.conf(5) [pool NAME]; postmux(1) workspace set --pool): with [delivery] route =
# mx, a workspace's sessions to an MX bind its pool's source addresses round-robin and
# say its helo_name; a workspace without a pool uses the host's default; two pools never
# share a session to the same site. tests/tools/mx_server.py plays the MX and logs each
# session's source address ("peer"), EHLO name and MAIL FROM. Pools bind loopback
# aliases 127.0.0.12-14, which Linux answers without any set-up.
# Then, under [delivery] route = relay, a workspace with --route mx whose direct
# delivery cannot start: its mail defers, and the reason is logged once per settings
# load and worker, not once per message.
source "$(dirname "$0")/lib.sh"
t_setup

ZONE=$T_DIR/zone.conf
cat >"$ZONE" <<'EOF'
local=/test/
mx-host=dest.test,mx.dest.test,10
host-record=mx.dest.test,127.0.0.2
EOF
t_mx_start "$ZONE" --listen 127.0.0.2

t_conf_set mx connections_per_site 4
t_conf_set mx messages_per_connection 2
t_conf_set mx helo_name mta.postmux.test
t_conf_set "pool blue" addresses "127.0.0.12, 127.0.0.13"
t_conf_set "pool blue" helo_name blue.test
t_conf_set "pool green" addresses 127.0.0.14
t_conf_set "pool green" helo_name green.test

BLUE=$($PMX workspace create BlueCo)
GREEN=$($PMX workspace create GreenCo)
PLAIN=$($PMX workspace create PlainCo)
for w in blue green plain; do
    $PMX domain add "${w^}Co" "$w.test" --algorithm ed25519 >/dev/null
    $PMX domain verify "$w.test" --skip-dns >/dev/null
done
$PMX workspace set BlueCo --pool blue >/dev/null
$PMX workspace set GreenCo --pool green >/dev/null

xadd() { local ws=$1; shift; t_redis XADD "pmx:{$ws}:jobs" '*' "$@" >/dev/null; }
sent_count() { t_psql "select count(*) from recipients where status = 'sent'"; }
# "PEER EHLO" of every connection that carried a MAIL FROM of sender $1, one per
# connection; or, with "conns", the connection numbers.
sessions_of() { "$PMX_SVC_PYTHON" - "$MXLOG" "$1" "${2-}" <<'EOF'
import json, sys
conn = {}
for e in map(json.loads, open(sys.argv[1])):
    c = conn.setdefault(e.get("conn"), {"from": set()})
    if e["ev"] == "connect": c["peer"] = e["peer"]
    if e["ev"] == "ehlo": c["ehlo"] = e["name"]
    if e["ev"] == "mail": c["from"].add(e["from"])
for k, c in sorted((k, c) for k, c in conn.items() if sys.argv[2] in c["from"]):
    print(k if sys.argv[3] == "conns" else "%s %s" % (c.get("peer"), c.get("ehlo")))
EOF
}

LOG=$T_DIR/postmuxd.log
"$PMXD" -c "$T_CONF" >>"$LOG" 2>&1 &
DPID=$!
t_wait_for 60 "[[ \$(grep -c 'suppressions loaded' '$LOG') -ge 2 ]]"

t_case "each workspace's sessions to the MX bind its pool's addresses with its helo_name"
for i in $(seq 1 8); do
    xadd "$BLUE" from a@blue.test to "b$i@dest.test" subject s text t id "b$i"
    xadd "$GREEN" from a@green.test to "g$i@dest.test" subject s text t id "g$i"
    xadd "$PLAIN" from a@plain.test to "p$i@dest.test" subject s text t id "p$i"
done
t_wait_for 90 "[[ \$(sent_count) == 24 ]]"
t_expect_eq "$(sent_count)" 24 "all sent"
t_expect_eq "$(sessions_of a@blue.test | sort -u | paste -sd,)" \
    "127.0.0.12 blue.test,127.0.0.13 blue.test" "pool blue: both addresses (round-robin), its helo_name"
t_expect_eq "$(sessions_of a@green.test | sort -u)" "127.0.0.14 green.test" "pool green"
t_expect_eq "$(sessions_of a@plain.test | sort -u)" "127.0.0.1 mta.postmux.test" \
    "no pool: the default source address and [mx] helo_name"

t_case "sessions to the same site are never shared between pools"
t_expect_match "$(sessions_of a@blue.test conns | wc -l)" '^[2-8]$' "pool blue used several sessions"
both=$(LC_ALL=C comm -12 <(sessions_of a@blue.test conns | sort) <(sessions_of a@green.test conns | sort))
t_expect_eq "$both" "" "connections that carried mail of both pools"
both=$(LC_ALL=C comm -12 <(sessions_of a@blue.test conns | sort) <(sessions_of a@plain.test conns | sort))
t_expect_eq "$both" "" "connections that carried mail of blue and of the default"

t_stop_postmuxd "$DPID"

t_case "route mx for one workspace under route = relay: a start failure is logged once, mail defers"
SHAPING=$T_DIR/shaping.ini
printf '[site dest]\nmatch = mx.dest.test\n' >"$SHAPING"
t_conf_set delivery route relay
t_conf_set mx shaping_file "$SHAPING"
$PMX workspace set PlainCo --route mx >/dev/null
LOG=$T_DIR/postmuxd2.log
"$PMXD" -c "$T_CONF" >>"$LOG" 2>&1 &
DPID=$!
t_wait_for 60 "[[ \$(grep -c 'suppressions loaded' '$LOG') -ge 2 ]]"
rm -f "$SHAPING"     # direct delivery starts lazily, on the first message: it cannot read it now
for i in $(seq 1 8); do xadd "$PLAIN" from lazy@plain.test to "l$i@dest.test" subject s text t id "lazy$i"; done
t_wait_for 60 "[[ \$(t_psql \"select count(*) from recipients where address like 'l%@dest.test' and status = 'deferred'\") -ge 8 ]]"
t_expect_match "$(t_psql "select distinct r.last_response from recipients r where r.address like 'l%@dest.test'")" \
    '^451 4\.3\.5 direct delivery cannot start: .*shaping\.ini: cannot read' "deferred with the reason"
n=$(grep -c 'mx: direct delivery cannot start' "$LOG")
t_expect_match "$n" '^[12]$' "logged once per worker ($n lines for 8+ deferrals)"
t_expect_eq "$(grep -c '"from": "lazy@plain.test"' "$MXLOG")" 0 "nothing reached the MX"
printf '[site dest]\nmatch = mx.dest.test\n' >"$SHAPING"
t_settings_change "$DPID" -- "$PMX" workspace set PlainCo --burst 20
t_wait_for 90 "[[ \$(t_psql \"select count(*) from recipients where address like 'l%@dest.test' and status = 'sent'\") -eq 8 ]]"
t_expect_eq "$(t_psql "select count(*) from recipients where address like 'l%@dest.test' and status = 'sent'")" 8 \
    "the next settings load tries again: sent on their retries"

t_stop_postmuxd "$DPID"
# A sanitizer report, if any, in full for whoever reads the test log.
grep -h -A60 'ERROR: AddressSanitizer\|ERROR: LeakSanitizer\|runtime error:' "$T_DIR"/postmuxd*.log 2>/dev/null |
    head -80 | sed 's/^/# /'
kill "$MX_PID" 2>/dev/null
wait "$MX_PID" 2>/dev/null
t_done
