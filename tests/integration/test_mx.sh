#!/usr/bin/env bash
# Direct delivery ([delivery] route = mx; docs/delivery.md "Direct delivery"): dnsmasq
# serves MX/A records for test domains, tests/tools/mx_server.py plays their MX hosts on
# several loopback addresses on one port ([mx] port) and logs every session (source
# address, EHLO name, sessions open at once, messages per connection).
#   a.test -> 127.0.0.2, b.test -> 127.0.0.3, c.test (no MX: its A) -> 127.0.0.5
#   down.test: MX 10 -> 127.0.0.9 (nothing listens), MX 20 -> 127.0.0.3
#   far.test: MX 10-50 -> 127.0.0.20-24 (nothing listens), MX 60 -> 127.0.0.3
#   greet.test: MX 10 -> 127.0.0.7 (421 greeting), MX 20 -> 127.0.0.2
#   tls.test -> 127.0.0.8 (offers STARTTLS, then breaks the handshake)
#   tlsok.test -> 127.0.0.4 (STARTTLS with a self-signed certificate)
#   busy.test -> 127.0.0.6 (slow end of data), for the per-site session limit
#   nullmx.test (RFC 7505), nx.test (NXDOMAIN), private.test -> 10.1.2.3 (refused range),
#   servfail.test (dnsmasq forwards it to a dead port: SERVFAIL or a timeout)
#   v6.test: MX 10 -> mx.v6.test, which has only an AAAA record, ::1 (mx_server.py
#   listens there too; [mx] allow_networks lets ::1/128 through)
source "$(dirname "$0")/lib.sh"
t_setup

ZONE=$T_DIR/zone.conf
cat >"$ZONE" <<'EOF'
local=/test/
mx-host=a.test,mx.a.test,10
host-record=mx.a.test,127.0.0.2
mx-host=b.test,mx.b.test,10
host-record=mx.b.test,127.0.0.3
host-record=c.test,127.0.0.5
mx-host=down.test,mx1.down.test,10
mx-host=down.test,mx2.down.test,20
host-record=mx1.down.test,127.0.0.9
host-record=mx2.down.test,127.0.0.3
mx-host=far.test,mx1.far.test,10
mx-host=far.test,mx2.far.test,20
mx-host=far.test,mx3.far.test,30
mx-host=far.test,mx4.far.test,40
mx-host=far.test,mx5.far.test,50
mx-host=far.test,mx6.far.test,60
host-record=mx1.far.test,127.0.0.20
host-record=mx2.far.test,127.0.0.21
host-record=mx3.far.test,127.0.0.22
host-record=mx4.far.test,127.0.0.23
host-record=mx5.far.test,127.0.0.24
host-record=mx6.far.test,127.0.0.3
mx-host=greet.test,mx1.greet.test,10
mx-host=greet.test,mx2.greet.test,20
host-record=mx1.greet.test,127.0.0.7
host-record=mx2.greet.test,127.0.0.2
mx-host=tls.test,mx.tls.test,10
host-record=mx.tls.test,127.0.0.8
mx-host=tlsok.test,mx.tlsok.test,10
host-record=mx.tlsok.test,127.0.0.4
mx-host=busy.test,mx.busy.test,10
host-record=mx.busy.test,127.0.0.6
dns-rr=nullmx.test,15,000000
mx-host=private.test,mx.private.test,10
host-record=mx.private.test,10.1.2.3
address=/nx.test/
server=/servfail.test/127.0.0.1#1
mx-host=v6.test,mx.v6.test,10
host-record=mx.v6.test,::1
EOF
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=mx.tlsok.test" -keyout "$T_DIR/mx.key" -out "$T_DIR/mx.crt" 2>/dev/null ||
    t__setup_fail "openssl could not make a certificate"
t_mx_start "$ZONE" \
    --listen 127.0.0.2 --listen 127.0.0.3 --listen 127.0.0.5 --listen 127.0.0.6 \
    --listen 127.0.0.7 --listen 127.0.0.8 --listen 127.0.0.4 \
    --starttls 127.0.0.4 --cert "$T_DIR/mx.crt" --key "$T_DIR/mx.key" \
    --greet '127.0.0.7=421 4.3.2 too busy, try another MX' --starttls-broken 127.0.0.8 \
    --rcpt-fail 'nouser=550 5.1.1 no such user here' --data-delay 0.2 \
    --rcpt-fail 'tss=421 4.7.0 [TSS04] Messages from 127.0.0.1 temporarily deferred' \
    --listen ::1
t_conf_set mx allow_networks '127.0.0.0/8, ::1/128'
t_conf_set mx connections_per_site 2
t_conf_set mx messages_per_connection 3
t_conf_set mx connect_timeout 5s
t_conf_set mx helo_name mta.postmux.test
t_conf_set daemon log_level debug
SHAPING=$T_DIR/shaping.ini
cat >"$SHAPING" <<'EOF'
; b.test's site: one session at a time, one message per session, Yahoo's TSS04 suspends
[site slowb]
match = MX.B.TEST
connections = 1
messages_per_connection = 1
on_reply = \[TSS04\] => suspend 1h
EOF
t_conf_set mx shaping_file "$SHAPING"
MPORT=$(pmx_svc_free_port)
t_conf_set daemon metrics_listen "127.0.0.1:$MPORT"
WS=$($PMX workspace create Acme)
$PMX domain add Acme acme.test --algorithm ed25519 >/dev/null
$PMX domain verify acme.test --skip-dns >/dev/null

xadd() { t_redis XADD "pmx:{$WS}:jobs" '*' "$@"; }
row() { t_psql "select r.status || ' ' || coalesce(r.bounce_class, '-')
                from recipients r join messages m on m.id = r.message_id
                where m.client_id = '$1' and r.address = '$2'"; }
resp() { t_psql "select r.last_response from recipients r join messages m on m.id = r.message_id
                 where m.client_id = '$1' and r.address = '$2'"; }
# Events of the MX log as "local rcpt" lines, e.g. "127.0.0.2 x@a.test".
delivered() { "$PMX_SVC_PYTHON" -c '
import json, sys
for l in open(sys.argv[1]):
    e = json.loads(l)
    if e["ev"] == "message":
        for r in e["rcpts"]: print(e["local"], r)' "$MXLOG"; }

t_case "postmux mx: hosts in preference order, addresses, site and rule"
t_run "$PMX" mx down.test
t_expect_rc 0
t_expect_match "$T_OUT" 'site +mx1\.down\.test,mx2\.down\.test' "site"
t_expect_match "$T_OUT" '10 mx1\.down\.test +127\.0\.0\.9' "first MX"
t_expect_match "$T_OUT" '20 mx2\.down\.test +127\.0\.0\.3' "second MX"
t_expect_match "$T_OUT" 'rule +default \(connections_per_site 2, messages_per_connection 3\)' "rule"
t_run "$PMX" mx NullMX.test --json
t_expect_rc 0
t_expect_eq "$("$PMX_SVC_PYTHON" -c 'import json,sys; d=json.load(sys.stdin); print(d["status"], d["reply"])' <<<"$T_OUT")" \
    "bounce 556 5.1.10 domain nullmx.test accepts no mail (null MX, RFC 7505)" "null MX"
t_run "$PMX" mx c.test --json
t_expect_match "$T_OUT" '"implicit_mx": true' "implicit MX"
t_expect_match "$T_OUT" '"127\.0\.0\.5"' "its A record"
t_run "$PMX" mx private.test
t_expect_match "$T_OUT" 'status +defer: 451 4\.4\.1 .*refused range' "refused range"
t_run "$PMX" mx 'bad domain'
t_expect_rc 1

LOG=$T_DIR/postmuxd.log
"$PMXD" -c "$T_CONF" >>"$LOG" 2>&1 &
DPID=$!
t_wait_for 60 "[[ \$(grep -c 'suppressions loaded' '$LOG') -ge 2 ]]"

t_case "a message to three domains: three deliveries, each recipient's outcome recorded"
xadd from news@acme.test to 'x@a.test, y@b.test, z@c.test, nouser@a.test' subject s text t id three >/dev/null
t_wait_for 60 "[[ \$(row three x@a.test) == sent* && \$(row three y@b.test) == sent* && \$(row three z@c.test) == sent* && -n \$(row three nouser@a.test) ]]"
t_expect_eq "$(row three nouser@a.test)" "bounced user_unknown" "a 5xx to RCPT bounces that recipient"
t_expect_match "$(resp three nouser@a.test)" '^550 5\.1\.1 no such user here' "its reply"
d=$(delivered)
t_expect_match "$d" '127\.0\.0\.2 x@a\.test' "a.test at its MX"
t_expect_match "$d" '127\.0\.0\.3 y@b\.test' "b.test at its MX"
t_expect_match "$d" '127\.0\.0\.5 z@c\.test' "c.test at its A (implicit MX)"
t_expect_eq "$(grep -c '"ev": "message"' "$MXLOG")" 3 "three transactions"
t_expect_eq "$(grep '"ev": "ehlo"' "$MXLOG" | grep -vc '"name": "mta.postmux.test"')" 0 "EHLO name is [mx] helo_name"
t_expect_eq "$(grep '"ev": "connect"' "$MXLOG" | grep -vc '"peer": "127.0.0.1"')" 0 "source address"

t_case "the first MX is down (refused): the second takes it"
xadd from news@acme.test to u@down.test subject s text t id down >/dev/null
t_wait_for 60 "[[ -n \$(row down u@down.test) ]]"
t_expect_eq "$(row down u@down.test)" "sent -" "sent"
t_expect_match "$(delivered)" '127\.0\.0\.3 u@down\.test' "at the second MX"

t_case "five MX hosts down: the sixth, the domain's last, takes it (every address is tried)"
xadd from news@acme.test to w@far.test subject s text t id far >/dev/null
t_wait_for 60 "[[ -n \$(row far w@far.test) ]]"
t_expect_eq "$(row far w@far.test)" "sent -" "sent"
t_expect_match "$(delivered)" '127\.0\.0\.3 w@far\.test' "at the sixth MX"

t_case "a 4xx greeting moves on to the next MX"
xadd from news@acme.test to v@greet.test subject s text t id greet >/dev/null
t_wait_for 60 "[[ -n \$(row greet v@greet.test) ]]"
t_expect_eq "$(row greet v@greet.test)" "sent -" "sent"
t_expect_match "$(grep '"ev": "connect"' "$MXLOG")" '"local": "127.0.0.7"' "the first MX was tried"
t_expect_match "$(delivered)" '127\.0\.0\.2 v@greet\.test' "at the second MX"

t_case "an MX host with only an AAAA record: delivered over IPv6 (::1)"
t_run "$PMX" mx v6.test
t_expect_rc 0
t_expect_match "$T_OUT" '10 mx\.v6\.test +::1' "its one address is the AAAA"
xadd from news@acme.test to s6@v6.test subject s text t id v6 >/dev/null
t_wait_for 60 "[[ -n \$(row v6 s6@v6.test) ]]"
t_expect_eq "$(row v6 s6@v6.test)" "sent -" "sent"
t_expect_match "$(delivered)" '::1 s6@v6\.test' "at ::1"
t_expect_match "$(grep '"ev": "connect"' "$MXLOG" | grep '"local": "::1"')" '"peer": "::1"' "over IPv6"

t_case "null MX and NXDOMAIN bounce at once (domain_unknown); a refused range defers"
xadd from news@acme.test to 'n@nullmx.test, m@nx.test, p@private.test' subject s text t id dns >/dev/null
t_wait_for 60 "[[ -n \$(row dns n@nullmx.test) && -n \$(row dns m@nx.test) && -n \$(row dns p@private.test) ]]"
t_expect_eq "$(row dns n@nullmx.test)" "bounced domain_unknown" "null MX"
t_expect_match "$(resp dns n@nullmx.test)" '^556 5\.1\.10 ' "null MX reply"
t_expect_eq "$(row dns m@nx.test)" "bounced domain_unknown" "NXDOMAIN"
t_expect_match "$(resp dns m@nx.test)" '^550 5\.1\.2 domain nx\.test does not exist' "NXDOMAIN reply"
t_expect_match "$(row dns p@private.test)" '^deferred ' "refused range"
t_expect_match "$(resp dns p@private.test)" '^451 4\.4\.1 ' "unreachable"

t_case "SERVFAIL (or no answer in time) defers"
xadd from news@acme.test to q@servfail.test subject s text t id servfail >/dev/null
t_wait_for 60 "[[ -n \$(row servfail q@servfail.test) ]]"
t_expect_match "$(row servfail q@servfail.test)" '^deferred ' "deferred"
t_expect_match "$(resp servfail q@servfail.test)" '^451 4\.4\.3 DNS lookup of the MX of servfail\.test failed: (SERVFAIL|timeout)' "its reply"

t_case "opportunistic TLS: STARTTLS when offered, whatever the certificate"
xadd from news@acme.test to s@tlsok.test subject s text t id tlsok >/dev/null
t_wait_for 60 "[[ -n \$(row tlsok s@tlsok.test) ]]"
t_expect_eq "$(row tlsok s@tlsok.test)" "sent -" "sent"
t_expect_match "$(grep '"ev": "message"' "$MXLOG" | grep '"local": "127.0.0.4"')" '"tls": "TLSv1\.[23]"' "the message went inside TLS"
t_expect_eq "$(grep '"local": "127.0.0.4"' "$MXLOG" | grep '"ev": "rcpt"' | grep -vc '"tls"')" 0 "no RCPT in clear"
t_expect_eq "$(grep '"ev": "message"' "$MXLOG" | grep -v '"local": "127.0.0.4"' | grep -c '"tls"')" 0 "the others in clear (no STARTTLS offered)"

t_case "STARTTLS offered but the handshake fails: deferred, nothing sent in clear text"
xadd from news@acme.test to w@tls.test subject s text t id tls >/dev/null
t_wait_for 60 "[[ -n \$(row tls w@tls.test) ]]"
t_expect_match "$(row tls w@tls.test)" '^deferred ' "deferred"
t_expect_match "$(grep -c '"ev": "starttls_broken"' "$MXLOG")" '^[1-9]' "STARTTLS was used"
t_expect_eq "$(grep '"local": "127.0.0.8"' "$MXLOG" | grep -c '"ev": "message"\|"ev": "rcpt"')" 0 "no MAIL/RCPT/DATA in clear"

t_case "per site: at most connections_per_site sessions over all workers, messages_per_connection each"
for i in $(seq 1 24); do
    xadd from news@acme.test to "r$i@busy.test" subject "s$i" text t id "busy$i" >/dev/null
done
t_wait_for 120 "[[ \$(grep '\"local\": \"127.0.0.6\"' '$MXLOG' | grep -c '\"ev\": \"message\"') -ge 24 ]]"
maxc=$(grep '"ev": "connect"' "$MXLOG" | grep '"local": "127.0.0.6"' |
       sed 's/.*"conc": \([0-9]*\).*/\1/' | sort -n | tail -1)
t_expect_match "$maxc" '^[12]$' "most sessions open at once (limit 2)"
maxn=$(grep '"ev": "message"' "$MXLOG" | grep '"local": "127.0.0.6"' |
       sed 's/.*"n": \([0-9]*\).*/\1/' | sort -n | tail -1)
t_expect_match "$maxn" '^[123]$' "most messages on one connection (limit 3)"
echo "# busy.test: at most $maxc sessions at once, at most $maxn messages on one connection"
t_expect_eq "$(t_psql "select count(*) from recipients where address like 'r%@busy.test' and status = 'sent'")" 24 "all sent"

t_case "metrics: sessions, sent and suspended per site"
t_wait_for 20 "curl -s -m 5 'http://127.0.0.1:$MPORT/metrics' | grep -q 'postmux_site_sent_total{site=\"mx.busy.test\"} 24'"
m=$(curl -s -m 5 "http://127.0.0.1:$MPORT/metrics")
t_expect_match "$m" 'postmux_site_sent_total\{site="mx\.busy\.test"\} 24' "sent"
t_expect_match "$m" 'postmux_site_sent_total\{site="mx1\.down\.test,mx2\.down\.test"\} 1' "a site of two hosts"
t_expect_match "$m" 'postmux_site_sessions\{site="mx\.busy\.test"\} [0-2]' "sessions"
t_expect_match "$m" 'postmux_site_suspended\{site="mx\.busy\.test"\} 0' "suspended"
t_expect_match "$m" '# TYPE postmux_site_sent_total counter' "type line"

t_case "shaping: the site's rule, and a reply that suspends the site for every worker"
t_run "$PMX" mx b.test
t_expect_match "$T_OUT" 'rule +slowb \(connections_per_site 1, messages_per_connection 1\)' "the rule"
t_expect_match "$T_OUT" 'on_reply \\\[TSS04\\\] => suspend 3600s' "its on_reply"
xadd from news@acme.test to tss@b.test subject s text t id tss >/dev/null
t_wait_for 60 "[[ -n \$(row tss tss@b.test) ]]"
t_expect_match "$(row tss tss@b.test)" '^deferred ' "the 421 [TSS04] defers"
t_wait_for 20 "grep -q 'mx site suspended site=mx.b.test rule=slowb' '$LOG'"
xadd from news@acme.test to after@b.test subject s text t id after >/dev/null
t_wait_for 60 "[[ -n \$(row after after@b.test) ]]"
t_expect_match "$(row after after@b.test)" '^deferred ' "the next one waits"
t_expect_match "$(resp after after@b.test)" '^451 4\.7\.0 site_suspended: ' "site_suspended"
t_expect_eq "$(grep -c 'after@b.test' "$MXLOG")" 0 "no session to the suspended site"
m=$(curl -s -m 5 "http://127.0.0.1:$MPORT/metrics")
t_expect_match "$m" 'postmux_site_suspended\{site="mx\.b\.test"\} 1' "postmux_site_suspended"
t_expect_match "$m" 'postmux_site_suspended\{site="mx\.a\.test"\} 0' "other sites go on"

t_case "the shipped shaping.ini loads; a bad shaping file is refused with its line"
cp "$T_CONF" "$T_DIR/shipped.conf"
pmx_svc_conf_set "$T_DIR/shipped.conf" mx shaping_file "$PMX_ROOT/routing/shaping.ini"
t_run "$PMX" -c "$T_DIR/shipped.conf" mx a.test
t_expect_rc 0
t_expect_match "$T_OUT" 'rule +default' "a.test matches no rule"
printf '[site x]\nmatch = *.x.test\non_reply = ([ => suspend 1h\n' >"$T_DIR/bad.ini"
pmx_svc_conf_set "$T_DIR/shipped.conf" mx shaping_file "$T_DIR/bad.ini"
t_run "$PMXD" -c "$T_DIR/shipped.conf" --check-config
t_expect_rc 1
t_expect_match "$T_ERR" 'bad\.ini:3: on_reply: bad regex' "FILE:LINE of the shaping file"

t_stop_postmuxd "$DPID"
kill "$MX_PID" 2>/dev/null
wait "$MX_PID" 2>/dev/null
t_done
