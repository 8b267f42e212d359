#!/usr/bin/env bash
# The feedback loop on the relay's own replies (docs/feedback.md): every failure gets
# a bounce class (recipients.bounce_class) from the classifier's rules; a hard bounce
# (user unknown) suppresses the address at once, in the same transaction as the
# outcome; soft bounces (a 5xx with a soft class) suppress it for
# soft_bounce_suppress_for after soft_bounce_limit in a row, and a sent resets the
# count; deferrals do not count. The relay is tls_relay.py (aiosmtpd), which refuses
# perm* with "550 5.1.1 no such user here", full* with "552 5.2.2 mailbox full" and
# temp* with "450 4.2.0".
source "$(dirname "$0")/lib.sh"
t_setup
source "$(dirname "$0")/relay_lib.sh"

t_conf_set daemon workers 2
t_conf_set daemon log_level debug
t_conf_set feedback soft_bounce_limit 3
t_conf_set feedback soft_bounce_suppress_for 2h
t_conf_set delivery retry_base 1s
MPORT=$(pmx_svc_free_port)
t_conf_set daemon metrics_listen "127.0.0.1:$MPORT"
WS=$($PMX workspace create Acme)
$PMX domain add Acme acme.test --algorithm ed25519 >/dev/null
$PMX domain verify acme.test --skip-dns >/dev/null

make_certs || t__setup_fail "openssl could not make the test CA"
start_relay bounces localhost
t_conf_set relay host localhost
t_conf_set relay port "$RELAY_PORT"
t_conf_set relay tls starttls
t_conf_set relay ca_file "$CERTS/ca.crt"

xadd() { t_redis XADD "pmx:{$WS}:jobs" '*' "$@"; }
row() { t_psql "select r.status || ' ' || coalesce(r.bounce_class, '-')
                from recipients r join messages m on m.id = r.message_id
                where m.client_id = '$1' and r.address = '$2'"; }
supp() { t_psql "select reason || ' ' || (case when expires_at is null then 'never' else 'expires' end) from suppressions
                 where workspace_id = '$WS' and address = '$1'"; }
count() { t_psql "select coalesce((select soft_bounces from bounce_counts
                  where workspace_id = '$WS' and address = '$1'), 0)"; }
relayed() { grep -c -- "RCPT <$1>" "$RELAY_LOG" 2>/dev/null; }

LOG=$T_DIR/postmuxd.log
"$PMXD" -c "$T_CONF" >>"$LOG" 2>&1 &
DPID=$!
t_wait_for 60 "[[ \$(grep -c 'suppressions loaded' '$LOG') -ge 2 ]]"

t_case "a hard bounce: bounced user_unknown, suppressed hard_bounce at once, the next job suppressed"
xadd from news@acme.test to 'perm1@cust.test, ok1@cust.test' subject s text t id h1 >/dev/null
t_wait_for 40 "[[ \$(row h1 perm1@cust.test) == bounced* && \$(row h1 ok1@cust.test) == sent* ]]"
t_expect_eq "$(row h1 perm1@cust.test)" "bounced user_unknown" "perm1"
t_expect_eq "$(row h1 ok1@cust.test)" "sent -" "ok1"
t_expect_eq "$(supp perm1@cust.test)" "hard_bounce never" "suppression"
t_expect_match "$(t_psql "select detail from suppressions where address = 'perm1@cust.test'")" \
    '^550 5\.1\.1 no such user here' "detail is the reply"
t_expect_eq "$(t_psql "select message_id = (select id from messages where client_id = 'h1')
                       from suppressions where address = 'perm1@cust.test'")" t "message_id"
t_wait_for 30 "[[ \$(grep -cF 'suppressions notify \"+ $WS * hard_bounce 0 perm1@cust.test' '$LOG') -ge 2 ]]"
xadd from news@acme.test to PERM1@cust.test subject s text t id h2 >/dev/null
t_wait_for 40 "[[ -n \$(row h2 PERM1@cust.test) ]]"
t_expect_eq "$(row h2 PERM1@cust.test)" "suppressed -" "the next job"
t_expect_eq "$(relayed PERM1@cust.test)" 0 "not relayed again"

t_case "deferrals get a class but do not count as soft bounces"
xadd from news@acme.test to temp1@cust.test subject s text t id d1 >/dev/null
t_wait_for 40 "[[ \$(row d1 temp1@cust.test) == deferred* ]]"
t_expect_match "$(row d1 temp1@cust.test)" '^deferred (mailbox_full|system|other)$' "class of the 450"
t_expect_eq "$(count temp1@cust.test)" 0 "no soft count"
t_expect_eq "$(supp temp1@cust.test)" "" "not suppressed"

t_case "soft bounces in a row suppress for soft_bounce_suppress_for; a sent in between resets"
for i in 1 2; do
    xadd from news@acme.test to full1@cust.test subject s text t id s$i >/dev/null
    t_wait_for 40 "[[ -n \$(row s$i full1@cust.test) ]]"
    t_expect_eq "$(row s$i full1@cust.test)" "bounced mailbox_full" "soft bounce $i"
done
t_expect_eq "$(count full1@cust.test)" 2 "count after two"
t_expect_eq "$(supp full1@cust.test)" "" "not yet suppressed"
xadd from news@acme.test to full1@cust.test subject s text t id s3 >/dev/null
t_wait_for 40 "[[ -n \$(row s3 full1@cust.test) ]]"
t_expect_eq "$(supp full1@cust.test)" "soft_bounce expires" "suppressed after three in a row"
t_expect_eq "$(t_psql "select expires_at between now() + interval '119 minutes' and now() + interval '121 minutes'
                       from suppressions where address = 'full1@cust.test'")" t "for 2h"
# Another address: two soft bounces, then a sent (the address is one the relay
# accepts, but the count is per address, so use the count table directly).
t_psql "insert into bounce_counts (workspace_id, address, soft_bounces) values ('$WS', 'ok2@cust.test', 2)" >/dev/null
xadd from news@acme.test to ok2@cust.test subject s text t id r1 >/dev/null
t_wait_for 40 "[[ \$(row r1 ok2@cust.test) == sent* ]]"
t_expect_eq "$(count ok2@cust.test)" 0 "a sent resets the count"

t_case "workspaces are apart: another workspace still mails a suppressed address"
OTHER=$($PMX workspace create Other)
$PMX domain add Other other.test --algorithm ed25519 >/dev/null
$PMX domain verify other.test --skip-dns >/dev/null
t_wait_for 30 "[[ \$(grep -c 'settings loaded.*workspaces=2' '$LOG') -ge 2 ]]"
t_redis XADD "pmx:{$OTHER}:jobs" '*' from a@other.test to perm1@cust.test subject s text t id o1 >/dev/null
t_wait_for 40 "[[ -n \$(row o1 perm1@cust.test) ]]"
t_expect_eq "$(row o1 perm1@cust.test)" "bounced user_unknown" "tried (and bounced) for Other"

t_case "metrics: bounces by class and suppressed recipients by reason"
m=$(curl -s -m 5 "http://127.0.0.1:$MPORT/metrics")
t_expect_match "$m" "postmux_bounces_total\\{workspace=\"$WS\",class=\"user_unknown\"\\} 1" "user_unknown"
t_expect_match "$m" "postmux_bounces_total\\{workspace=\"$WS\",class=\"mailbox_full\"\\} 3" "mailbox_full"
t_expect_match "$m" "postmux_suppressed_total\\{workspace=\"$WS\",reason=\"hard_bounce\"\\} 1" "suppressed"
t_expect_match "$m" "# TYPE postmux_bounces_total counter" "type line"

t_stop_postmuxd "$DPID"
stop_relay
t_done
