#!/usr/bin/env bash
# Per-workspace routes (docs/delivery.md "Per-workspace routes"; postmux(1) workspace set
# --route, --route-password-file): a workspace's mail goes to its own provider over
# sessions of its own, with AUTH from a password stored encrypted; STARTTLS is required
# for smtp:// unless ?tls=none; workspaces on the default route still use [relay]
# (smtp-sink here). The providers are tls_relay.py (aiosmtpd).
source "$(dirname "$0")/lib.sh"
t_setup
source "$(dirname "$0")/relay_lib.sh"
make_certs || t_fail "cannot make test certificates"

# Provider 1: STARTTLS required, AUTH as alice. Provider 2: no STARTTLS at all.
start_relay own localhost --mode starttls --user alice --password 'pw-Secr3t-route' --log-sessions
OWN_PORT=$RELAY_PORT OWN_PID=$RELAY_PID OWN_LOG=$RELAY_LOG OWN_DIR=$RELAY_DIR
start_relay clear localhost --mode absent --log-sessions
CLEAR_PORT=$RELAY_PORT CLEAR_PID=$RELAY_PID CLEAR_LOG=$RELAY_LOG
t_conf_set relay ca_file "$CERTS/ca.crt"     # what routes verify against, as [relay] does

printf 'pw-Secr3t-route\n' >"$T_DIR/pw"
printf 'wrong-password\n' >"$T_DIR/pw-wrong"
OWN=$($PMX workspace create OwnCo)
DEF=$($PMX workspace create DefCo)
CLR=$($PMX workspace create ClearCo)
COPY=$($PMX workspace create CopyCo)
for w in own def clear copy; do
    $PMX domain add "${w^}Co" "$w.test" --algorithm ed25519 >/dev/null
    $PMX domain verify "$w.test" --skip-dns >/dev/null
done

xadd() { local ws=$1; shift; t_redis XADD "pmx:{$ws}:jobs" '*' "$@" >/dev/null; }
rcpt_status() { t_psql "select string_agg(r.status, ',' order by r.address) from recipients r
                        join messages m on m.id = r.message_id where m.client_id = '$1'"; }
last_response() { t_psql "select r.last_response from recipients r join messages m on m.id = r.message_id
                          where m.client_id = '$1'"; }
in_sink() { grep -l "X-Rcpt-Args: <$1>" "$T_SINK_DIR"/* 2>/dev/null | wc -l; }

t_case "--route checks: bad URLs, a password in the URL, a user without its password file"
for r in 'http://x.test:25' 'smtp://' 'smtp://host:0' 'smtp://host:70000' 'smtp://a:b@host:25' \
         'smtp://host:25/path' 'smtps://host:465?tls=none' 'smtp://host:25?tls=maybe' 'smtp://ho st:25'; do
    t_run "$PMX" workspace set OwnCo --route "$r"
    t_expect_rc 1
    t_expect_match "$T_ERR" '^postmux: --route: ' "error for $r"
done
t_run "$PMX" workspace set OwnCo --route "smtp://alice@127.0.0.1:$OWN_PORT"
t_expect_rc 1
t_expect_match "$T_ERR" 'needs its password \(--route-password-file\)' "user without password"
t_run "$PMX" workspace set OwnCo --route "smtp://127.0.0.1:$OWN_PORT" --route-password-file "$T_DIR/pw"
t_expect_rc 1
t_expect_match "$T_ERR" 'a password goes only with' "password without user"
t_run "$PMX" workspace set OwnCo --route-password-file "$T_DIR/pw"
t_expect_rc 1
t_expect_match "$T_ERR" 'has the default route' "password alone on the default route"
t_expect_eq "$(t_psql "select count(*) from workspaces where route is not null or route_password_enc is not null")" 0 \
    "nothing written"

t_case "--route with a user: stored canonical, the password encrypted (no plaintext in the column)"
t_run "$PMX" workspace set OwnCo --route "SMTP://alice@127.0.0.1:$OWN_PORT" --route-password-file "$T_DIR/pw"
t_expect_rc 0
t_expect_match "$T_OUT" "^route: +smtp://alice@127\.0\.0\.1:$OWN_PORT\$" "route shown"
t_expect_match "$T_OUT" '^route_password: set$' "password shown as set"
t_expect_nomatch "$T_OUT" 'Secr3t' "the password in the output"
t_run "$PMX" workspace show OwnCo --json
t_expect_match "$T_OUT" '"route_password": true' "show --json"
t_expect_nomatch "$T_OUT" 'Secr3t' "the password in show --json"
t_expect_eq "$(t_psql "select position(convert_to('pw-Secr3t-route', 'UTF8') in route_password_enc)
                       from workspaces where id = '$OWN'")" 0 "plaintext in route_password_enc"
t_expect_eq "$(t_psql "select length(route_password_enc) from workspaces where id = '$OWN'")" \
    $((1 + 12 + 15 + 16)) "blob length (version, nonce, ciphertext, tag)"
t_expect_eq "$(t_psql "select get_byte(route_password_enc, 0) from workspaces where id = '$OWN'")" 1 "blob version"

"$PMXD" -c "$T_CONF" >>"$T_DIR/postmuxd.log" 2>&1 &
DPID=$!

t_case "the route's mail goes to its own provider, under STARTTLS, with AUTH; the default's to [relay]"
xadd "$OWN" from a@own.test to o1@example.net subject s text t id o1
xadd "$OWN" from a@own.test to o2@example.net subject s text t id o2
xadd "$DEF" from a@def.test to d1@example.net subject s text t id d1
t_wait_for 60 "[[ \$(rcpt_status o1),\$(rcpt_status o2),\$(rcpt_status d1) == sent,sent,sent ]]"
t_wait_for 10 "(( \$(grep -c '^SESSION .*mail=<a@own.test>' $OWN_LOG) == 2 ))"
t_expect_match "$(cat "$OWN_LOG")" '^AUTH (PLAIN|LOGIN) user=alice ok tls=yes$' "AUTH under TLS"
t_expect_eq "$(grep -c '^SESSION .*mail=<a@own.test> tls=yes$' "$OWN_LOG")" 2 "both messages under TLS"
t_expect_eq "$(grep -c 'mail=<a@def.test>' "$OWN_LOG")" 0 "the default workspace's mail at the provider"
t_expect_eq "$(in_sink d1@example.net)" 1 "the default workspace's mail at [relay]"
t_expect_eq "$(in_sink o1@example.net)" 0 "the route's mail at [relay]"
t_expect_match "$(last_response o1)" '^250 2\.0\.0 Ok: queued as tls-relay-' "last_response from the provider"
t_expect_nomatch "$(cat "$T_DIR/postmuxd.log")" 'Secr3t' "the password in the daemon's log"
t_expect_match "$(cat "$T_DIR/postmuxd.log")" \
    "route sessions made key=\"smtp ws=$OWN dest=smtp://alice@127.0.0.1:$OWN_PORT pool=-\"" "the route's own session key"

t_case "STARTTLS is required: a provider that does not offer it gets nothing, the mail is deferred"
t_settings_change "$DPID" -- "$PMX" workspace set ClearCo --route "smtp://127.0.0.1:$CLEAR_PORT"
xadd "$CLR" from a@clear.test to c1@example.net subject s text t id c1
t_wait_for 30 "[[ \$(rcpt_status c1) == deferred ]]"
t_expect_match "$(last_response c1)" 'does not offer STARTTLS' "last_response"
t_expect_eq "$(grep -c '^MAIL' "$CLEAR_LOG")" 0 "MAIL commands at the provider"

t_case "?tls=none: the deferred mail goes out in clear text on the next try (a live change)"
t_settings_change "$DPID" -- "$PMX" workspace set ClearCo --route "smtp://127.0.0.1:$CLEAR_PORT?tls=none"
t_expect_eq "$(t_psql "select route from workspaces where id = '$CLR'")" \
    "smtp://127.0.0.1:$CLEAR_PORT?tls=none" "stored route"
t_wait_for 40 "[[ \$(rcpt_status c1) == sent ]]"
t_wait_for 10 "grep -q 'mail=<a@clear.test> tls=no' $CLEAR_LOG"
t_expect_eq "$(in_sink c1@example.net)" 0 "at [relay]"

t_case "a wrong password: AUTH refused, deferred; the right one (password alone) sends it"
t_settings_change "$DPID" -- "$PMX" workspace set OwnCo --route-password-file "$T_DIR/pw-wrong"
xadd "$OWN" from b@own.test to o3@example.net subject s text t id o3
t_wait_for 30 "[[ \$(rcpt_status o3) == deferred ]]"
t_expect_match "$(cat "$OWN_LOG")" '^AUTH (PLAIN|LOGIN) user=alice refused' "AUTH refused"
t_settings_change "$DPID" -- "$PMX" workspace set OwnCo --route-password-file "$T_DIR/pw"
t_wait_for 40 "[[ \$(rcpt_status o3) == sent ]]"

t_case "a password blob copied to another workspace does not open there: deferred, logged"
t_psql "update workspaces set route = (select route from workspaces where id = '$OWN'),
               route_password_enc = (select route_password_enc from workspaces where id = '$OWN')
         where id = '$COPY'" >/dev/null
xadd "$COPY" from a@copy.test to y1@example.net subject s text t id y1
t_wait_for 30 "[[ \$(rcpt_status y1) == deferred ]]"
t_expect_match "$(last_response y1)" '^451 4\.3\.5 workspace route: route password cannot be decrypted' "last_response"
t_expect_match "$(cat "$T_DIR/postmuxd.log")" "route password cannot be decrypted ws=$COPY" "log line"
t_expect_eq "$(grep -c 'mail=<a@copy.test>' "$OWN_LOG")" 0 "nothing reached the provider"

t_case "--route mx is stored and shown; --route default goes back to [relay]"
t_run "$PMX" workspace set CopyCo --route mx
t_expect_rc 0
t_expect_match "$T_OUT" '^route: +mx$' "shown"
t_expect_eq "$(t_psql "select route, route_password_enc is null from workspaces where id = '$COPY'")" "mx|t" \
    "stored, the password dropped"
t_settings_change "$DPID" -- "$PMX" workspace set CopyCo --route default
t_wait_for 40 "[[ \$(rcpt_status y1) == sent ]]"
t_wait_for 10 "(( \$(in_sink y1@example.net) == 1 ))"
t_expect_eq "$(t_psql "select route is null and route_password_enc is null from workspaces where id = '$COPY'")" t \
    "stored as NULL"

t_stop_postmuxd "$DPID"
kill "$OWN_PID" "$CLEAR_PID" 2>/dev/null
wait "$OWN_PID" "$CLEAR_PID" 2>/dev/null
t_done
