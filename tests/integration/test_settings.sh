#!/usr/bin/env bash
# The worker's settings cache (workers/settings.c), run by tests/tools/settings_probe
# against a real Postgres: 3 workspaces (RSA, Ed25519, both), an unverified domain, a
# key sealed under another master key; From matching (exact, subdomain, unverified,
# another workspace's); signatures made with the cached keys checked by python3-dkim;
# CLI changes arriving by NOTIFY within 5 s; keys not decrypted again; bursts of
# notifications coalesced; the periodic refresh; a killed connection reconnecting and
# reloading; a clean exit without leaks (ASan build).
source "$(dirname "$0")/lib.sh"
t_setup

PROBE=$T_TOOLS/settings_probe
[[ -x $PROBE ]] || { t_case "settings_probe is built"; t_fail "no $PROBE: run make tools"; t_done; }

OUT=$T_DIR/probe.out
ERR=$T_DIR/probe.err
SIG=$T_DIR/sig
mkdir -p "$SIG"

# The lines of snapshot N ("gen N" .. "end gen N") in FILE.
gen_block() { awk -v n="$2" '$0 == "gen " n || index($0, "gen " n " ") == 1 { on = 1 } on { print } $0 == "end gen " n { on = 0 }' "$1"; }
last_gen() { grep -E '^end gen [0-9]+$' "$1" | tail -n 1 | awk '{ print $3 }'; }
# Field K=V of the last "stats" line in FILE.
stat_of() { grep '^stats ' "$1" | tail -n 1 | tr ' ' '\n' | sed -n "s/^$2=//p"; }
line_of() { grep -E "$2" <<<"$1" | head -n 1; }
field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p" | head -n 1; }
psql_admin() {
    "$PMX_PG_BIN/psql" -XAtq -v ON_ERROR_STOP=1 -h "$PMX_PG_HOST" -p "$PMX_PG_PORT" \
        -U "$PMX_PG_USER" -d postgres -c "$1"
}

# ---- fixtures: three workspaces and their domains -----------------------------
RSA=$($PMX workspace create Rsa)
ED=$($PMX workspace create Ed)
BOTH=$($PMX workspace create Both)
$PMX domain add Rsa rsa.test --algorithm rsa >/dev/null
$PMX domain add Ed ed.test --algorithm ed25519 >/dev/null
$PMX domain add Both both.test --algorithm both >/dev/null
$PMX domain add Both unv.test --algorithm ed25519 >/dev/null
for d in rsa.test ed.test both.test; do $PMX domain verify $d --skip-dns >/dev/null; done
$PMX tester add Rsa Boss@Rsa.TEST >/dev/null
# A key sealed under another master key (a worker with the wrong key file).
head -c 32 /dev/urandom | base64 >"$T_DIR/other.key"
sed "s|^master_key_file = .*|master_key_file = $T_DIR/other.key|" "$T_CONF" >"$T_DIR/other.conf"
$PMX -c "$T_DIR/other.conf" domain add Ed bad.test --algorithm rsa >/dev/null
$PMX domain verify bad.test --skip-dns >/dev/null
BLOB_HEX=$(t_psql "select encode(private_key_enc, 'hex') from dkim_keys k join domains d on d.id = k.domain_id where d.domain = 'bad.test'")

FROMS=(--from "$RSA:rsa.test" --from "$RSA:news.mail.rsa.test" --from "$ED:ed.test"
       --from "$BOTH:both.test" --from "$BOTH:Sub.Both.Test" --from "$BOTH:unv.test"
       --from "$BOTH:x.unv.test" --from "$RSA:ed.test" --from "$RSA:x.ed.test"
       --from "$ED:bad.test" --from "$RSA:nowhere.test" --from "$RSA:test")
"$PROBE" --conninfo "$T_DB_CONNINFO" --master-key "$T_MASTER_KEY" --refresh-ms 600000 \
    "${FROMS[@]}" --tester "$RSA:BOSS@rsa.test" --tester "$RSA:boss@rsa.tes" \
    --tester "$ED:boss@rsa.test" --sign-dir "$SIG" >"$OUT" 2>"$ERR" &
PROBE_PID=$!

t_case "first load: the 3 workspaces with their settings and domains"
t_wait_for 10 "grep -qx 'end gen 1' '$OUT'"
G1=$(gen_block "$OUT" 1)
t_expect_match "$G1" '^gen 1 workspaces=3$' "workspace count"
t_expect_match "$G1" "^ws $RSA name=Rsa suspended=0 test_mode=0 catch_all=- rate=0 burst=10 quota=0 testers=boss@rsa.test$" "Rsa"
t_expect_match "$G1" "^ws $ED name=Ed suspended=0 test_mode=0 catch_all=- rate=0 burst=10 quota=0 testers=-$" "Ed"
t_expect_match "$G1" "^ids active=.*$RSA" "ids"
t_expect_eq "$(grep -c '^db up$' "$OUT")" 1 "connected once"

t_case "keys: RSA, Ed25519 and both are decrypted and parsed once per key"
t_expect_match "$G1" "^domain ws=$RSA name=rsa.test verified=1 keys=1 failed=0 key=pmx/rsa-sha256/2048$" "rsa"
t_expect_match "$G1" "^domain ws=$ED name=ed.test verified=1 keys=1 failed=0 key=pmx/ed25519-sha256/256$" "ed25519"
t_expect_match "$G1" "^domain ws=$BOTH name=both.test verified=1 keys=2 failed=0 key=pmx/rsa-sha256/2048 key=pmx-ed25519/ed25519-sha256/256$" "both"
t_expect_match "$G1" "^domain ws=$BOTH name=unv.test verified=0 keys=0 failed=0$" "unverified: no key loaded"
t_expect_eq "$(stat_of "$OUT" keys_opened)" 4 "keys decrypted"

t_case "From matching: exact, subdomain (d= the verified parent), unverified, other workspace's"
t_expect_match "$G1" "^from ws=$RSA domain=rsa.test match=ok d=rsa.test keys=1$" "exact"
t_expect_match "$G1" "^from ws=$RSA domain=news.mail.rsa.test match=ok d=rsa.test keys=1$" "subdomain"
t_expect_match "$G1" "^from ws=$BOTH domain=Sub.Both.Test match=ok d=both.test keys=2$" "case"
t_expect_match "$G1" "^from ws=$ED domain=ed.test match=ok d=ed.test keys=1$" "ed"
t_expect_match "$G1" "^from ws=$BOTH domain=unv.test match=unverified d=unv.test keys=0$" "unverified"
t_expect_match "$G1" "^from ws=$BOTH domain=x.unv.test match=unverified d=unv.test keys=0$" "under unverified"
t_expect_match "$G1" "^from ws=$RSA domain=ed.test match=none d=- keys=0$" "another workspace's"
t_expect_match "$G1" "^from ws=$RSA domain=x.ed.test match=none d=- keys=0$" "under another workspace's"
t_expect_match "$G1" "^from ws=$RSA domain=nowhere.test match=none d=- keys=0$" "unknown"
t_expect_match "$G1" "^from ws=$RSA domain=test match=none d=- keys=0$" "a parent is not a match"

t_case "signatures made with the cached keys verify with python3-dkim"
# The "DNS" for dkim_verify.py: every key's TXT value from the dkim_keys rows.
t_psql "select k.selector || '._domainkey.' || d.domain, case k.algorithm when 'rsa-sha256' then 'rsa' else 'ed25519' end, k.public_key from dkim_keys k join domains d on d.id = k.domain_id" |
    /usr/bin/python3 -c '
import json, sys
keys = {}
for line in sys.stdin.read().splitlines():
    name, k, p = line.split("|")
    keys[name] = "v=DKIM1; k=%s; p=%s" % (k, p)
json.dump(keys, open(sys.argv[1], "w"))
' "$T_DIR/keys.json"
for spec in "$RSA news.mail.rsa.test 1" "$ED ed.test 1" "$BOTH Sub.Both.Test 2"; do
    read -r ws dom n <<<"$spec"
    f=$SIG/gen1-$ws-$dom.eml
    t_expect_match "$G1" "^sign ws=$ws domain=$dom sigs=$n file=" "signed $dom"
    t_run /usr/bin/python3 "$PMX_ROOT/tests/tools/dkim_verify.py" --keys "$T_DIR/keys.json" --expect "$n" "$f"
    t_expect_rc 0
    t_expect_nomatch "$T_OUT" ': fail' "$dom verdicts"
done

t_case "a key sealed under another master key: logged once, no secret, domain has no usable key"
t_expect_match "$G1" "^domain ws=$ED name=bad.test verified=1 keys=0 failed=1$" "domain line"
t_expect_match "$G1" "^from ws=$ED domain=bad.test match=no_key d=bad.test keys=0$" "verified but no usable key"
t_expect_eq "$(grep -c 'DKIM key unusable' "$ERR")" 1 "logged once"
t_expect_match "$(grep 'DKIM key unusable' "$ERR")" 'domain=bad.test selector=pmx .*wrong master key' "log line"
t_expect_eq "$(stat_of "$OUT" keys_failed)" 1 "keys_failed"
t_expect_nomatch "$(cat "$ERR" "$OUT")" 'PRIVATE KEY|BEGIN' "no PEM in output"
t_expect_eq "$(grep -c -- "${BLOB_HEX:0:32}" "$ERR")" 0 "no blob in the log"

t_case "testers are matched case-insensitively, per workspace"
t_expect_match "$G1" "^tester ws=$RSA addr=BOSS@rsa.test is=1$" "tester"
t_expect_match "$G1" "^tester ws=$RSA addr=boss@rsa.tes is=0$" "not a tester"
t_expect_match "$G1" "^tester ws=$ED addr=boss@rsa.test is=0$" "other workspace"

t_case "a CLI change reaches the cache within 5 s by NOTIFY (periodic refresh is 10 min)"
OPENED=$(stat_of "$OUT" keys_opened)
t_run $PMX workspace set Rsa --rate 50/s --burst 20 --daily-quota 1000 --test-mode on --catch-all Catch@Rsa.test
t_expect_rc 0
t_wait_for 5 "grep -qx 'end gen 2' '$OUT'"
G2=$(gen_block "$OUT" 2)
t_expect_match "$G2" "^ws $RSA name=Rsa suspended=0 test_mode=1 catch_all=Catch@rsa.test rate=50 burst=20 quota=1000 testers=boss@rsa.test$" "new values"
t_expect_eq "$(stat_of "$OUT" keys_opened)" "$OPENED" "no key decrypted again"
t_expect_eq "$(grep -c 'DKIM key unusable' "$ERR")" 1 "the bad key is not logged again"
t_expect_match "$(stat_of "$OUT" notifies)" '^[1-9]' "came by NOTIFY"

t_case "verifying a domain makes it usable (its key is decrypted then)"
t_run $PMX domain verify unv.test --skip-dns
t_expect_rc 0
t_wait_for 5 "grep -q '^from ws=$BOTH domain=x.unv.test match=ok d=unv.test keys=1$' '$OUT'"
t_expect_eq "$(stat_of "$OUT" keys_opened)" $((OPENED + 1)) "one more key decrypted"

t_case "suspend: the workspace leaves the active ids"
t_run $PMX workspace set Ed --suspend
t_expect_rc 0
t_wait_for 5 "grep -q '^ws $ED .* suspended=1 ' '$OUT'"
G=$(gen_block "$OUT" "$(last_gen "$OUT")")
t_expect_nomatch "$(line_of "$G" '^ids ' | sed 's/ all=.*//')" "$ED" "not active"
t_expect_match "$(line_of "$G" '^ids ')" "all=.*$ED" "still known"

t_case "a burst of 100 notifications is coalesced into far fewer loads"
LOADS0=$(stat_of "$OUT" loads)
NOTIF0=$(stat_of "$OUT" notifies)
sql=""
for i in $(seq 1 100); do sql+="insert into workspace_testers (workspace_id, address) values ('$BOTH', 't$i@both.test');"; done
# One statement per transaction (psql -c sends them as one multi-statement query,
# which runs as one transaction; -f runs them one by one).
printf '%s\n' "${sql//;/;$'\n'}" >"$T_DIR/burst.sql"
"$PMX_PG_BIN/psql" -XAtq -v ON_ERROR_STOP=1 -h "$PMX_PG_HOST" -p "$PMX_PG_PORT" -U "$PMX_PG_USER" \
    -d "$T_DB" -f "$T_DIR/burst.sql" >/dev/null
t_wait_for 5 "grep -q '^ws $BOTH .*t99@both.test' '$OUT'"
t_wait_for 5 "[[ \$(stat_of '$OUT' notifies) -ge $((NOTIF0 + 100)) ]]"
# Seeing t99 does not mean t100 is in: the last snapshot printed must hold all 100.
both_testers() { line_of "$(gen_block "$OUT" "$(last_gen "$OUT")")" "^ws $BOTH " | sed 's/.*testers=//' | tr ',' '\n' | grep -c '@both.test'; }
t_wait_for 30 "[[ \$(both_testers) == 100 ]]"
t_expect_eq "$(both_testers)" 100 "all testers loaded"
DL=$(($(stat_of "$OUT" loads) - LOADS0))
DN=$(($(stat_of "$OUT" notifies) - NOTIF0))
echo "# burst: notifies=$DN loads=$DL"
((DL >= 1 && DL * 2 <= DN)) || t_fail "loads=$DL for notifies=$DN: not coalesced"

t_case "Postgres connection killed: reconnects, reloads, and catches a change made meanwhile"
LOADS0=$(stat_of "$OUT" loads)
t_psql "select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'pmx_settings_probe' and datname = current_database(); update workspaces set burst = 77 where id = '$RSA'" >/dev/null
t_wait_for 5 "grep -q '^db down$' '$OUT'"
t_wait_for 5 "[[ \$(grep -c '^db up$' '$OUT') -ge 2 ]]"
t_wait_for 5 "grep -q '^ws $RSA .* burst=77 ' '$OUT'"
t_wait_for 5 "[[ \$(stat_of '$OUT' loads) -gt $LOADS0 ]]"
t_expect_match "$(cat "$ERR")" 'postgres connection lost' "loss logged"
t_expect_match "$(cat "$ERR")" 'postgres reconnected' "reconnect logged"
t_expect_eq "$(grep -c 'DKIM key unusable' "$ERR")" 1 "bad key still logged once"

t_case "stops cleanly on SIGTERM (no leaks under ASan)"
kill -TERM "$PROBE_PID"
wait "$PROBE_PID"
t_expect_eq "$?" 0 "exit status"
t_expect_eq "$(tail -n 1 "$OUT")" bye "last line"
t_expect_nomatch "$(cat "$ERR")" 'Sanitizer|runtime error' "sanitizers"

t_case "the periodic refresh catches a change that sent no NOTIFY"
"$PROBE" --conninfo "$T_DB_CONNINFO" --master-key "$T_MASTER_KEY" --refresh-ms 700 \
    --app-name pmx_settings_probe2 --run-ms 6000 >"$OUT.2" 2>"$ERR.2" &
P2=$!
t_wait_for 10 "grep -qx 'end gen 1' '$OUT.2'"
t_psql "begin; alter table workspaces disable trigger workspaces_notify; update workspaces set burst = 55 where id = '$ED'; alter table workspaces enable trigger workspaces_notify; commit" >/dev/null
t_wait_for 5 "grep -q '^ws $ED .* burst=55 ' '$OUT.2'"
t_expect_eq "$(stat_of "$OUT.2" notifies)" 0 "no NOTIFY was involved"
wait "$P2"
t_expect_eq "$?" 0 "exit status"
t_expect_nomatch "$(cat "$ERR.2")" 'Sanitizer|runtime error' "sanitizers"

t_done
