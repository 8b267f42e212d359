#!/usr/bin/env bash
# Direct delivery, what test_mx.sh, test_mx_pools.sh, test_mx_rate.sh and test_routes.sh
# leave out (docs/delivery.md "Direct delivery", "Per-workspace routes"; postmux.conf(5)
# [mx] tls):
#   - [mx] tls = required: an MX without STARTTLS gets nothing and the mail defers; one
#     with STARTTLS gets it inside TLS. tls = none: clear text even when STARTTLS is
#     offered (and what required deferred goes out on its retry).
#   - opportunistic: an MX that offers STARTTLS and then refuses it (454) gets nothing in
#     clear text; the mail defers (test_mx.sh covers a handshake that breaks).
#   - a site that accepts connections and never answers holds up neither another site
#     nor another workspace, and no worker spins while its queue waits.
#     Under route = mx, and again for a workspace with --route mx under route = relay.
#   - an smtps:// route: TLS from the first byte, with AUTH inside it; under [delivery]
#     route = relay, a workspace with --route mx delivers to the MX while a default one
#     still goes to [relay].
# tests/tools/mx_server.py plays the MX hosts; a second one of it the two odd ones: one
# that never answers (--silent), one that refuses STARTTLS (--starttls-refused).
#   plain.test -> 127.0.0.2 (no STARTTLS)    other.test  -> 127.0.0.3 (no STARTTLS)
#   tlsok.test -> 127.0.0.4 (STARTTLS, self-signed)
#   hang.test  -> 127.0.0.6 (accepts, never says a word)
#   refuse.test -> 127.0.0.9 (offers STARTTLS, answers it 454)
source "$(dirname "$0")/lib.sh"
t_setup
source "$(dirname "$0")/relay_lib.sh"
make_certs || t__setup_fail "cannot make test certificates"

ZONE=$T_DIR/zone.conf
cat >"$ZONE" <<'EOF'
local=/test/
mx-host=plain.test,mx.plain.test,10
host-record=mx.plain.test,127.0.0.2
mx-host=other.test,mx.other.test,10
host-record=mx.other.test,127.0.0.3
mx-host=tlsok.test,mx.tlsok.test,10
host-record=mx.tlsok.test,127.0.0.4
mx-host=hang.test,mx.hang.test,10
host-record=mx.hang.test,127.0.0.6
mx-host=refuse.test,mx.refuse.test,10
host-record=mx.refuse.test,127.0.0.9
EOF
t_mx_start "$ZONE" --listen 127.0.0.2 --listen 127.0.0.3 --listen 127.0.0.4 \
    --starttls 127.0.0.4 --cert "$CERTS/other.crt" --key "$CERTS/other.key"

# A second mx_server.py on the same port plays the two odd MX hosts, so that the silent
# one can go away without the others: 127.0.0.6 accepts and never says a word, 127.0.0.9
# offers STARTTLS and answers it 454.
ODD_LOG=$T_DIR/odd.log
start_odd() {
    rm -f "$T_DIR/odd.port"
    "$PMX_SVC_PYTHON" "$PMX_ROOT/tests/tools/mx_server.py" --port "$MX_PORT" \
        --port-file "$T_DIR/odd.port" --log "$ODD_LOG" --listen 127.0.0.6 --listen 127.0.0.9 \
        --silent 127.0.0.6 --starttls-refused 127.0.0.9 2>"$T_DIR/odd.err" &
    ODD_PID=$!
    for ((i = 0; i < 100; i++)); do [[ -s $T_DIR/odd.port ]] && break; sleep 0.1; done
    [[ -s $T_DIR/odd.port ]] || t__setup_fail "the odd mx_server.py did not start: $(head -c 300 "$T_DIR/odd.err")"
}
start_odd

t_conf_set mx connections_per_site 2
t_conf_set mx connect_timeout 5s
t_conf_set mx helo_name mta.postmux.test
t_conf_set mx tls required
# Retries come back within a few seconds, so mail deferred in one part is retried in the next.
t_conf_set delivery retry_max_interval 3s

WS=$($PMX workspace create AcmeCo)
OTHER=$($PMX workspace create OtherCo)
SEC=$($PMX workspace create SecCo)
for w in acme other sec; do
    $PMX domain add "${w^}Co" "$w.example" --algorithm ed25519 >/dev/null
    $PMX domain verify "$w.example" --skip-dns >/dev/null
done

xadd() { local ws=$1; shift; t_redis XADD "pmx:{$ws}:jobs" '*' "$@" >/dev/null; }
# status of the recipient $2 of the message with client id $1 ("" before an outcome)
row() { t_psql "select r.status from recipients r join messages m on m.id = r.message_id
                where m.client_id = '$1' and r.address = '$2'"; }
resp() { t_psql "select r.last_response from recipients r join messages m on m.id = r.message_id
                 where m.client_id = '$1' and r.address = '$2'"; }
# The MX log's events of kind $1 at address $2 (JSON lines).
mx_events() { grep "\"ev\": \"$1\", \"local\": \"$2\"" "$MXLOG"; }
# The "message" events carrying recipient $1.
mx_message_of() { grep '"ev": "message"' "$MXLOG" | grep -F "\"$1\""; }
in_sink() { grep -l "X-Rcpt-Args: <$1>" "$T_SINK_DIR"/* 2>/dev/null | wc -l; }
start_daemon() {
    LOG=$T_DIR/$1.log
    "$PMXD" -c "$T_CONF" >>"$LOG" 2>&1 &
    DPID=$!
    t_wait_for 60 "[[ \$(grep -c 'suppressions loaded' '$LOG') -ge 2 ]]"
}

# ---- [mx] tls = required ------------------------------------------------------------------
start_daemon postmuxd1

t_case "tls = required: an MX that does not offer STARTTLS gets nothing, the mail is deferred"
xadd "$WS" from news@acme.example to q1@plain.test subject s text t id req_plain
t_wait_for 60 "[[ -n \$(row req_plain q1@plain.test) ]]"
t_expect_eq "$(row req_plain q1@plain.test)" deferred "status"
t_expect_match "$(resp req_plain q1@plain.test)" 'does not offer STARTTLS' "last_response"
t_expect_match "$(mx_events ehlo 127.0.0.2 | wc -l)" '^[1-9]' "the MX was reached (EHLO)"
t_expect_eq "$(mx_events mail 127.0.0.2 | wc -l)" 0 "MAIL FROM at the MX"
t_expect_eq "$(mx_events rcpt 127.0.0.2 | wc -l)" 0 "RCPT TO at the MX"

t_case "tls = required: an MX that offers STARTTLS gets the message inside TLS"
xadd "$WS" from news@acme.example to q2@tlsok.test subject s text t id req_tls
t_wait_for 60 "[[ -n \$(row req_tls q2@tlsok.test) ]]"
t_expect_eq "$(row req_tls q2@tlsok.test)" sent "status"
t_expect_match "$(mx_message_of q2@tlsok.test)" '"tls": "TLSv1\.[23]"' "the message went inside TLS"
t_expect_eq "$(mx_events rcpt 127.0.0.4 | grep -vc '"tls"')" 0 "RCPT TO in clear text"

t_case "tls = required: the retries of the deferred message still send nothing in clear text"
t_wait_for 60 "(( \$(grep -c 'rcpt=q1@plain.test status=deferred' '$LOG') >= 2 ))"
t_expect_eq "$(row req_plain q1@plain.test)" deferred "status"
t_expect_eq "$(mx_events mail 127.0.0.2 | wc -l)" 0 "MAIL FROM at the MX"

t_stop_postmuxd "$DPID"

# ---- [mx] tls = none ----------------------------------------------------------------------
t_conf_set mx tls none
start_daemon postmuxd2

t_case "tls = none: clear text even to an MX that offers STARTTLS"
tls_before=$(grep -c '"ev": "tls"' "$MXLOG")
xadd "$WS" from news@acme.example to q3@tlsok.test subject s text t id none_tls
t_wait_for 60 "[[ -n \$(row none_tls q3@tlsok.test) ]]"
t_expect_eq "$(row none_tls q3@tlsok.test)" sent "status"
t_expect_eq "$(mx_message_of q3@tlsok.test | wc -l)" 1 "one message at the MX"
t_expect_nomatch "$(mx_message_of q3@tlsok.test)" '"tls"' "the message under TLS"
t_expect_eq "$(grep -c '"ev": "tls"' "$MXLOG")" "$tls_before" "TLS handshakes at the MX"

t_case "tls = none: the message deferred under required goes out on its retry"
t_wait_for 60 "[[ \$(row req_plain q1@plain.test) == sent ]]"
t_expect_eq "$(row req_plain q1@plain.test)" sent "status"
t_expect_match "$(mx_message_of q1@plain.test)" '"local": "127.0.0.2"' "at its MX"

t_stop_postmuxd "$DPID"

# ---- opportunistic; a silent site ---------------------------------------------------------
start_relay sec localhost --mode implicit --user alice --password 'pw-smtps-route' --log-sessions
SEC_PORT=$RELAY_PORT SEC_PID=$RELAY_PID SEC_LOG=$RELAY_LOG
t_conf_set relay ca_file "$CERTS/ca.crt"     # routes verify against [relay]'s CA file
t_conf_set mx tls opportunistic
# A worker then holds 4 x 2 = 8 jobs before jobs waiting for a site give their room
# (docs/delivery.md "Direct delivery"): the 24 jobs to the silent site below are more
# than both workers hold.
t_conf_set relay connections_per_worker 2
printf 'pw-smtps-route\n' >"$T_DIR/pw"
$PMX workspace set SecCo --route "smtps://alice@127.0.0.1:$SEC_PORT" --route-password-file "$T_DIR/pw" >/dev/null
start_daemon postmuxd3

t_case "opportunistic: STARTTLS offered then refused (454): deferred, nothing sent in clear text"
xadd "$WS" from news@acme.example to r1@refuse.test subject s text t id refused
t_wait_for 60 "[[ -n \$(row refused r1@refuse.test) ]]"
t_expect_eq "$(row refused r1@refuse.test)" deferred "status"
t_expect_match "$(resp refused r1@refuse.test)" 'STARTTLS' "last_response"
t_expect_match "$(grep -c '"ev": "starttls_refused"' "$ODD_LOG")" '^[1-9]' "STARTTLS was asked for"
t_expect_eq "$(grep -cE '"ev": "(mail|rcpt|message)"' "$ODD_LOG")" 0 "MAIL/RCPT/DATA in clear text"

t_case "a site that never answers holds up neither another site nor another workspace"
# Under [delivery] route = mx; the last part does it again for a workspace with --route mx
# under route = relay.
for i in $(seq 1 24); do
    xadd "$WS" from news@acme.example to "h$i@hang.test" subject "h$i" text t id "hang$i"
done
# Its two sessions ([mx] connections_per_site) are open and waiting for a greeting;
# the other 22 jobs wait in the site's queue.
t_wait_for 30 "(( \$(grep -c '\"ev\": \"connect\", \"local\": \"127.0.0.6\"' '$ODD_LOG') >= 2 ))"
xadd "$WS" from news@acme.example to 'm1@hang.test, m2@plain.test' subject s text t id mixed
xadd "$WS" from news@acme.example to a1@other.test subject s text t id acme_other
xadd "$OTHER" from news@other.example to b1@plain.test subject s text t id other_plain
xadd "$SEC" from news@sec.example to s1@example.net subject s text t id smtps1
# A liveness check, not a timing one: this takes well under a second. The bound is
# below the 30 s a session waits for a greeting (the relay client's command timeout),
# so mail held behind the silent site's jobs would only move once those give up: that
# would fail here.
t_wait_for 25 "[[ \$(row acme_other a1@other.test),\$(row other_plain b1@plain.test),\$(row smtps1 s1@example.net) == sent,sent,sent ]] && mx_message_of m2@plain.test | grep -q ."
t_expect_match "$(mx_message_of m2@plain.test)" '"local": "127.0.0.2"' "the other domain of a message to both, at its MX"
t_expect_eq "$(row acme_other a1@other.test)" sent "another site, same workspace"
t_expect_eq "$(row other_plain b1@plain.test)" sent "another workspace, same route"
t_expect_eq "$(row smtps1 s1@example.net)" sent "a workspace with its own route"
t_expect_match "$(row mixed m1@hang.test)" '^(deferred)?$' "the silent site's recipient of the same message (pending or deferred)"
t_expect_eq "$(t_psql "select count(*) from recipients where address like '%@hang.test' and status <> 'deferred'")" 0 \
    "silent site's recipients with an outcome other than deferred"
t_expect_eq "$(grep -c 'hang.test' "$MXLOG")" 0 "silent site's mail at another MX"

t_case "no worker spins while the silent site's queue waits"
# postmuxd's CPU time (the supervisor and its workers, /proc/PID/stat utime + stime)
# over 3 s of waiting. Waiting costs timers and sockets: a site pool asks for a session
# every 250 ms, a sweep runs each second, the blocked Redis reads wake now and then —
# far below 5% of a core even under ASan. A worker spinning on the site burns a whole
# core for as long as it gets one; a busy machine can only give it less CPU time, never
# give the waiting workers more, so 50% of one core cannot fail a daemon that waits and
# is crossed by one that spins while it gets half a core or more.
cpu_ticks() {
    local p sum=0 f
    for p in "$DPID" $(t__workers_of "$DPID"); do
        f=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        f=${f##*) }
        read -r -a v <<<"$f"
        sum=$((sum + v[11] + v[12]))     # fields 14 and 15 of stat(5): utime, stime
    done
    echo "$sum"
}
hz=$(getconf CLK_TCK)
c0=$(cpu_ticks) w0=${EPOCHREALTIME/./}
sleep 3
c1=$(cpu_ticks) w1=${EPOCHREALTIME/./}
pct=$(( (c1 - c0) * 100 * 1000000 / hz / (w1 - w0) ))
echo "# postmuxd CPU while the silent site's queue waited: $((c1 - c0)) ticks in $(( (w1 - w0) / 1000 )) ms = ${pct}% of one core"
t_expect_eq "$(t_psql "select count(*) from recipients where address like '%@hang.test' and status = 'sent'")" 0 \
    "silent site's recipients sent (it was still silent)"
((pct <= 50)) || t_fail "postmuxd used ${pct}% of one core over 3 s of waiting (at most 50%)"

t_case "an smtps:// route: TLS from the first byte, AUTH inside it"
t_expect_match "$(resp smtps1 s1@example.net)" '^250 2\.0\.0 Ok: queued as tls-relay-' "last_response from the provider"
t_wait_for 10 "grep -q 'mail=<news@sec.example>' '$SEC_LOG'"
t_expect_match "$(cat "$SEC_LOG")" '^AUTH (PLAIN|LOGIN) user=alice ok tls=yes$' "AUTH under TLS"
t_expect_match "$(cat "$SEC_LOG")" '^SESSION .*mail=<news@sec\.example> tls=yes$' "the message under TLS"
t_expect_eq "$(grep -c 'tls=no' "$SEC_LOG")" 0 "events in clear text"
t_expect_eq "$(in_sink s1@example.net)" 0 "at [relay]"
t_expect_eq "$(grep -c 's1@example.net' "$MXLOG")" 0 "at an MX"
t_expect_match "$(cat "$LOG")" \
    "route sessions made key=\"smtp ws=$SEC dest=smtps://alice@127.0.0.1:$SEC_PORT pool=-\"" "the route's own session key"

t_case "the message to both sites: recorded when the silent site's delivery gives up, the sent copy not sent again"
# A message's outcomes are recorded together, once each of its domains' deliveries has
# ended (routing/mxroute.c); the silent site's ends after the greeting timeout.
t_wait_for 90 "[[ -n \$(row mixed m1@hang.test) ]]"
t_expect_eq "$(row mixed m1@hang.test)" deferred "the silent site's recipient"
t_expect_eq "$(row mixed m2@plain.test)" sent "the other recipient"
# The silent site goes away (its connections are refused from now on, and the drain
# below does not wait on its sessions); its retries defer at once.
kill "$ODD_PID" 2>/dev/null
wait "$ODD_PID" 2>/dev/null
t_wait_for 60 "(( \$(grep -c 'rcpt=m1@hang.test status=deferred' '$LOG') >= 2 ))"
t_expect_eq "$(mx_message_of m2@plain.test | wc -l)" 1 "copies of m2@plain.test at its MX"
t_expect_eq "$(row mixed m2@plain.test)" sent "the other recipient, after the retry"

t_stop_postmuxd "$DPID"

# ---- [delivery] route = relay, a workspace with --route mx ---------------------------------
t_conf_set delivery route relay
$PMX workspace set AcmeCo --route mx >/dev/null
ODD_LOG=$T_DIR/odd2.log
start_odd
start_daemon postmuxd4

t_case "--route mx under route = relay: direct delivery to the MX; a default workspace to [relay]; a silent site holds up neither"
# As in the silent-site case above: AcmeCo's 24 jobs to the silent site fill both workers
# past what they hold; the jobs waiting in the site's queue must give their room back
# (workers/pipeline.c, every second, whatever [delivery] route says) or the two messages
# below would wait for the 30 s greeting timeout.
for i in $(seq 1 24); do
    xadd "$WS" from news@acme.example to "g$i@hang.test" subject "g$i" text t id "hang_r$i"
done
t_wait_for 30 "(( \$(grep -c '\"ev\": \"connect\", \"local\": \"127.0.0.6\"' '$ODD_LOG') >= 2 ))"
xadd "$WS" from news@acme.example to x1@plain.test subject s text t id route_mx
xadd "$OTHER" from news@other.example to y1@plain.test subject s text t id route_default
# A liveness check below the 30 s greeting timeout, as above.
t_wait_for 25 "[[ \$(row route_mx x1@plain.test),\$(row route_default y1@plain.test) == sent,sent ]]"
t_expect_eq "$(row route_mx x1@plain.test)" sent "AcmeCo (route mx)"
t_expect_eq "$(row route_default y1@plain.test)" sent "OtherCo (default route)"
t_expect_match "$(mx_message_of x1@plain.test)" '"local": "127.0.0.2"' "AcmeCo's mail at plain.test's MX"
t_expect_eq "$(in_sink x1@plain.test)" 0 "AcmeCo's mail at [relay]"
t_expect_eq "$(in_sink y1@plain.test)" 1 "OtherCo's mail at [relay]"
t_expect_eq "$(mx_message_of y1@plain.test | wc -l)" 0 "OtherCo's mail at the MX"
t_expect_eq "$(mx_events ehlo 127.0.0.2 | grep -vc '"name": "mta.postmux.test"')" 0 "EHLO name is [mx] helo_name"

kill "$ODD_PID" 2>/dev/null
wait "$ODD_PID" 2>/dev/null
t_stop_postmuxd "$DPID"
grep -h -A60 'ERROR: AddressSanitizer\|ERROR: LeakSanitizer\|runtime error:' "$T_DIR"/postmuxd*.log 2>/dev/null |
    head -80 | sed 's/^/# /'
kill "$MX_PID" "$SEC_PID" 2>/dev/null
wait "$MX_PID" "$SEC_PID" 2>/dev/null
t_done
