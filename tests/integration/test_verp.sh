#!/usr/bin/env bash
# What lets reports and unsubscribes find their recipient (docs/feedback.md "Return
# path (VERP)", docs/delivery.md "Transactions", docs/http.md "One-click unsubscribe"):
# recipients.idx and messages.category; one SMTP transaction per recipient with
# envelope sender b-<token>@<return-path domain> when [inbound] hostname is set, one
# for all without it; X-Postmux-Ref outside every signature; List-Unsubscribe and
# List-Unsubscribe-Post per recipient, inside both signatures; the three doors of
# unsubscribe (a job field, X-Postmux-Unsubscribe on submission, the API's boolean);
# domain add --return-path and the MX/SPF records; domain verify's MX report.
# Tokens are checked with tests/tools/reftoken.py (written apart from lib/reftoken.c),
# signatures with python3-dkim, envelopes as tls_relay.py (aiosmtpd) recorded them.
source "$(dirname "$0")/lib.sh"
t_setup
source "$(dirname "$0")/relay_lib.sh"
source "$(dirname "$0")/dkim_lib.sh"
REFTOKEN="$PY $PMX_ROOT/tests/tools/reftoken.py"

t_conf_set daemon workers 2
t_conf_set delivery retry_base 1s
t_conf_set submission listen ""

ACME=$($PMX workspace create Acme)
TEST=$($PMX workspace create Tester)
$PMX domain add Acme acme.test --algorithm both >/dev/null
$PMX domain add Acme other.test --algorithm ed25519 --return-path rp.other.test >/dev/null
$PMX domain add Tester tm.test --algorithm ed25519 >/dev/null
for d in acme.test other.test tm.test; do $PMX domain verify $d --skip-dns >/dev/null; done
$PMX workspace set Tester --test-mode on --catch-all catch@sink.test >/dev/null
$PMX tester add Tester real@cust.test >/dev/null
KEYS=$T_DIR/keys.json
dkim_keys_json "$KEYS"

make_certs || t__setup_fail "openssl could not make the test CA"
start_relay verp localhost --pipelining
t_conf_set relay host localhost
t_conf_set relay port "$RELAY_PORT"
t_conf_set relay tls starttls
t_conf_set relay ca_file "$CERTS/ca.crt"

xadd() { local ws=$1; shift; t_redis XADD "pmx:{$ws}:jobs" '*' "$@"; }
# "address=idx" of a job's recipients, by idx.
idxs() { t_psql "select string_agg(r.address || '=' || coalesce(r.idx::text, 'null'), ',' order by r.idx, r.address)
                 from recipients r join messages m on m.id = r.message_id where m.client_id = '$1'"; }
status_of() { t_psql "select string_agg(r.status, ',' order by r.address) from recipients r
                      join messages m on m.id = r.message_id where m.client_id = '$1'"; }
# The relay's files for one subject.
files_of() { grep -l -- "^Subject: $1" "$RELAY_DIR"/msg.* 2>/dev/null; }
nfiles() { files_of "$1" | wc -l; }
hdr() { grep -m1 -i "^$2:" "$1" | sed -E "s/^[^:]*: *//; s/\r$//"; }
# One line per DKIM-Signature of FILE: "a=ALG h=field:field:..." (lower-case h).
sigs() {
    "$PY" - "$1" <<'PYEOF'
import email.policy, email.parser, sys
m = email.parser.BytesParser(policy=email.policy.compat32).parse(open(sys.argv[1], "rb"))
for v in m.get_all("DKIM-Signature") or []:
    tags = dict(t.strip().split("=", 1) for t in "".join(v.split()).split(";") if "=" in t)
    print("a=%s h=%s" % (tags.get("a"), tags.get("h", "").lower()))
PYEOF
}
start_daemon() {
    "$PMXD" -c "$T_CONF" >>"$T_DIR/postmuxd.log" 2>&1 &
    DPID=$!
    t_wait_for 60 "[[ \$(grep -c 'suppressions loaded' '$T_DIR/postmuxd.log') -ge $1 ]]"
}
stop_daemon() {
    kill -TERM "$DPID" 2>/dev/null
    wait "$DPID" 2>/dev/null
}

# ---- without [inbound] hostname -------------------------------------------------------
start_daemon 2

t_case "without [inbound] hostname: one transaction for all, MAIL FROM is the From address, no X-Postmux-Ref"
xadd "$ACME" from 'Acme <news@acme.test>' to 'a1@cust.test, b1@cust.test' cc c1@cust.test \
    bcc a1@cust.test subject plain1 text hello category news.weekly id plain1 >/dev/null
t_wait_for 40 "[[ \$(status_of plain1) == sent,sent,sent ]]"
t_wait_for 10 "(( \$(nfiles plain1) == 1 ))"
f=$(files_of plain1)
t_expect_eq "$(hdr "$f" X-Mail-From)" "<news@acme.test>" "MAIL FROM"
t_expect_eq "$(grep -c '^X-Rcpt-To:' "$f")" 3 "three recipients in one transaction"
t_expect_eq "$(grep -ci '^X-Postmux-Ref' "$f")" 0 "X-Postmux-Ref"
t_expect_eq "$(grep -ci '^List-Unsubscribe' "$f")" 0 "List-Unsubscribe"

t_case "recipients.idx is the position in the job (to, cc, bcc, each address once); messages.category is the job's"
t_expect_eq "$(idxs plain1)" "a1@cust.test=0,b1@cust.test=1,c1@cust.test=2" "idx"
t_expect_eq "$(t_psql "select category from messages where client_id = 'plain1'")" news.weekly "category"
xadd "$ACME" from news@acme.test to z1@cust.test subject nocat text hello id nocat >/dev/null
t_wait_for 40 "[[ \$(status_of nocat) == sent ]]"
t_expect_eq "$(t_psql "select coalesce(category, 'NULL') from messages where client_id = 'nocat'")" NULL "no category"
xadd "$ACME" from news@acme.test to 'r1@cust.test, r2@cust.test' subject rej text hello \
    header:X-Postmux-Ref forged id rej >/dev/null
t_wait_for 40 "[[ \$(status_of rej) == rejected,rejected ]]"
t_expect_eq "$(idxs rej)" "r1@cust.test=0,r2@cust.test=1" "a rejected job's rows get their idx too"

t_case "unsubscribe with no link to offer (no [http] public_url, no [inbound] listen): refused at the doors"
t_run $PMX send --workspace Acme --from news@acme.test --to u@cust.test --subject s --text t --unsubscribe
t_expect_rc 1
t_expect_match "$T_ERR" 'unsubscribe: .*public_url.*\[inbound\] listen' "postmux send"
xadd "$ACME" from news@acme.test to u@cust.test subject s text t unsubscribe yes id unsub-off >/dev/null
t_wait_for 40 "[[ \$(status_of unsub-off) == rejected ]]"
t_expect_match "$(t_psql "select e.detail from events e join messages m on m.id = e.message_id
                          where m.client_id = 'unsub-off'")" '^unsubscribe: .*public_url' "a job from Redis"
stop_daemon

# ---- with [inbound] hostname, [inbound] listen and [http] public_url ---------------------
HPORT=$(pmx_svc_free_port)
IPORT=$(pmx_svc_free_port)
SPORT=$(pmx_svc_free_port)
t_conf_set inbound hostname mx.postmux.test
t_conf_set inbound listen "127.0.0.1:$IPORT"
t_conf_set http listen "127.0.0.1:$HPORT"
t_conf_set http public_url "http://127.0.0.1:$HPORT/"
t_conf_set submission listen "127.0.0.1:$SPORT"
t_conf_set submission auth_requires_tls no
K_ACME=$($PMX apikey create --workspace Acme --name verp 2>/dev/null)
start_daemon 4

# check_verp FILE RCPT DOMAIN: MAIL FROM is b-<token>@DOMAIN, X-Postmux-Ref is that token,
# and the token names RCPT's row (its message id and idx); prints nothing, fails the case.
check_verp() {
    local f=$1 rcpt=$2 dom=$3 from tok ref named want
    from=$(hdr "$f" X-Mail-From)
    [[ $from =~ ^\<b-([a-z2-7]{36})@(.*)\>$ ]] || { t_fail "$rcpt: MAIL FROM $from"; return; }
    tok=${BASH_REMATCH[1]}
    t_expect_eq "${BASH_REMATCH[2]}" "$dom" "$rcpt: return-path domain"
    ref=$(hdr "$f" X-Postmux-Ref)
    t_expect_eq "$ref" "$tok" "$rcpt: X-Postmux-Ref"
    named=$($REFTOKEN check "$T_MASTER_KEY" b "$tok")
    want=$(t_psql "select r.message_id || ' ' || r.idx from recipients r where r.address = '$rcpt'
                   and r.message_id = (select max(m.id) from messages m join recipients x on x.message_id = m.id
                                       where x.address = '$rcpt')")
    t_expect_eq "$named" "$want" "$rcpt: the token names its row"
    t_expect_eq "$($REFTOKEN check "$T_MASTER_KEY" u "$tok" 2>/dev/null)" "" "$rcpt: not an unsubscribe token"
}

t_case "[inbound] hostname: one transaction per recipient, MAIL FROM b-<token>@bounces.D, X-Postmux-Ref outside the signatures"
xadd "$ACME" from 'Acme <news@acme.test>' to 'a2@cust.test, b2@cust.test' cc c2@cust.test \
    subject verp1 text hello category news id verp1 >/dev/null
t_wait_for 40 "[[ \$(status_of verp1) == sent,sent,sent ]]"
t_wait_for 10 "(( \$(nfiles verp1) == 3 ))"
for r in a2 b2 c2; do
    f=$(grep -l "^X-Rcpt-To: <$r@cust.test>" $(files_of verp1))
    t_expect_eq "$(grep -c '^X-Rcpt-To:' "$f")" 1 "$r: alone in its transaction"
    check_verp "$f" "$r@cust.test" bounces.acme.test
    t_expect_eq "$(sigs "$f" | grep -c 'x-postmux-ref')" 0 "$r: X-Postmux-Ref in no h="
    t_expect_eq "$(sigs "$f" | wc -l)" 2 "$r: RSA and Ed25519 signatures"
done
t_expect_eq "$(idxs verp1)" "a2@cust.test=0,b2@cust.test=1,c2@cust.test=2" "idx"
mkdir -p "$T_DIR/v1" && cp $(files_of verp1) "$T_DIR/v1/"
t_expect_eq "$(dkim_verify_dir "$KEYS" "$T_DIR/v1")" "ok 3" "DKIM verification"
t_expect_eq "$(grep -c "MAIL <b-" "$RELAY_LOG")" 3 "three MAIL FROM at the relay"

t_case "domain add --return-path: the sender's domain is the chosen one"
xadd "$ACME" from news@mail.other.test to o1@cust.test subject rp1 text hello id rp1 >/dev/null
t_wait_for 40 "[[ \$(status_of rp1) == sent ]]"
t_wait_for 10 "(( \$(nfiles rp1) == 1 ))"
check_verp "$(files_of rp1)" o1@cust.test rp.other.test

t_case "a retried recipient keeps its idx, and so its token"
xadd "$ACME" from news@acme.test to 'ok3@cust.test, temp3@cust.test' subject retry1 text hello id retry1 >/dev/null
t_wait_for 60 "[[ \$(t_psql \"select attempts from recipients where address = 'temp3@cust.test'\") -ge 2 ]]"
t_expect_eq "$(idxs retry1)" "ok3@cust.test=0,temp3@cust.test=1" "idx after the retry"
MSG=$(t_psql "select id from messages where client_id = 'retry1'")
TOK=$($REFTOKEN make "$T_MASTER_KEY" b "$MSG" 1)
t_expect_match "$(grep -c "MAIL <b-$TOK@bounces.acme.test>" "$RELAY_LOG")" '^[2-9]' "every attempt's MAIL FROM"
t_expect_eq "$(grep -c "RCPT <ok3@cust.test>" "$RELAY_LOG")" 1 "the sent one is not relayed again"

t_case "test mode: each redirected recipient is its own copy to the catch-all; its token names the original row"
xadd "$TEST" from news@tm.test to 'x4@cust.test, real@cust.test' cc y4@cust.test subject tm1 text hello id tm1 >/dev/null
t_wait_for 40 "[[ \$(status_of tm1) == sent,sent,sent ]]"
t_wait_for 10 "(( \$(nfiles tm1) == 3 ))"
for r in x4 y4; do
    f=$(grep -l "^X-Original-To: $r@cust.test" $(files_of tm1))
    t_expect_eq "$(grep -c '^X-Original-To:' "$f")" 1 "$r: one X-Original-To"
    t_expect_eq "$(hdr "$f" X-Rcpt-To)" "<catch@sink.test>" "$r: to the catch-all"
    check_verp "$f" "$r@cust.test" bounces.tm.test
done
check_verp "$(grep -l '^X-Rcpt-To: <real@cust.test>' $(files_of tm1))" real@cust.test bounces.tm.test
mkdir -p "$T_DIR/tm" && cp $(files_of tm1) "$T_DIR/tm/"
t_expect_eq "$(dkim_verify_dir "$KEYS" "$T_DIR/tm")" "ok 3" "DKIM verification"

# check_unsub FILE RCPT: List-Unsubscribe names RCPT's row (https link and mailto),
# List-Unsubscribe-Post is one-click, both are in the h= of every signature.
check_unsub() {
    local f=$1 rcpt=$2 lu tok want
    lu=$(grep -i -A1 '^List-Unsubscribe:' "$f" | tr -d '\r\n' | sed -E 's/^[^:]*: *//; s/[ \t]+/ /g')
    [[ $lu =~ ^\<http://127\.0\.0\.1:$HPORT/u/([a-z2-7]{36})\>,\ \<mailto:u-([a-z2-7]{36})@([^>]*)\> ]] ||
        { t_fail "$rcpt: List-Unsubscribe is '$lu'"; return; }
    tok=${BASH_REMATCH[1]}
    t_expect_eq "${BASH_REMATCH[2]}" "$tok" "$rcpt: one token in both links"
    t_expect_eq "${BASH_REMATCH[3]}" bounces.acme.test "$rcpt: mailto domain"
    want=$(t_psql "select r.message_id || ' ' || r.idx from recipients r where r.address = '$rcpt'
                   order by r.updated_at desc limit 1")
    t_expect_eq "$($REFTOKEN check "$T_MASTER_KEY" u "$tok")" "$want" "$rcpt: the token names its row"
    t_expect_eq "$(hdr "$f" List-Unsubscribe-Post)" "List-Unsubscribe=One-Click" "$rcpt: List-Unsubscribe-Post"
    t_expect_eq "$(sigs "$f" | grep -cE 'h=(.*:)?list-unsubscribe(:.*)?$')" 2 "$rcpt: List-Unsubscribe in both h="
    t_expect_eq "$(sigs "$f" | grep -cE 'h=(.*:)?list-unsubscribe-post(:.*)?$')" 2 "$rcpt: List-Unsubscribe-Post in both h="
    t_expect_eq "$(sigs "$f" | grep -c 'x-postmux-ref')" 0 "$rcpt: X-Postmux-Ref in no h="
}

t_case "unsubscribe = yes: List-Unsubscribe per recipient, signed by both keys, the message still VERPed"
xadd "$ACME" from news@acme.test to 'a5@cust.test, b5@cust.test' subject unsub1 text hello \
    unsubscribe yes category promo id unsub1 >/dev/null
t_wait_for 40 "[[ \$(status_of unsub1) == sent,sent ]]"
t_wait_for 10 "(( \$(nfiles unsub1) == 2 ))"
for r in a5 b5; do
    f=$(grep -l "^X-Rcpt-To: <$r@cust.test>" $(files_of unsub1))
    check_unsub "$f" "$r@cust.test"
    check_verp "$f" "$r@cust.test" bounces.acme.test
done
mkdir -p "$T_DIR/u1" && cp $(files_of unsub1) "$T_DIR/u1/"
t_expect_eq "$(dkim_verify_dir "$KEYS" "$T_DIR/u1")" "ok 2" "DKIM verification"
t_case "a List-Unsubscribe changed after signing breaks the signatures"
f=$(files_of unsub1 | head -n 1)
mkdir -p "$T_DIR/u1bad"
sed -E 's#/u/[a-z2-7]{36}>#/u/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa>#' "$f" >"$T_DIR/u1bad/m"
t_expect_match "$(dkim_verify_dir "$KEYS" "$T_DIR/u1bad")" 'signature 0 fails' "verification"

t_case "SMTP submission: X-Postmux-Unsubscribe: yes is removed before signing and acts as the field"
SWAKS=(swaks --server 127.0.0.1 --port "$SPORT" --helo client.test --timeout 30
       --auth PLAIN --auth-user apikey --auth-password "$K_ACME" --from news@acme.test)
t_run "${SWAKS[@]}" --to s6@cust.test --header 'Subject: sub6' --header 'X-Postmux-Unsubscribe: yes'
t_expect_rc 0
t_wait_for 40 "(( \$(nfiles sub6) == 1 ))"
f=$(files_of sub6)
t_expect_eq "$(grep -ci '^X-Postmux-Unsubscribe' "$f")" 0 "the header is not delivered"
check_unsub "$f" s6@cust.test
t_run "${SWAKS[@]}" --to s7@cust.test --header 'Subject: sub7' --header 'X-Postmux-Unsubscribe: maybe'
t_expect_match "$T_OUT" ' 550 5\.6\.0 X-Postmux-Unsubscribe must be yes or no' "a bad value is refused"

t_case "HTTP API: \"unsubscribe\": true"
K_API=$($PMX apikey create --workspace Acme --name api 2>/dev/null)
t_run "$PY" "$PMX_ROOT/tests/tools/api_check.py" "$HPORT" "$PMX_ROOT/http/openapi.json" POST /v1/emails \
    "key=$K_API" 'body={"from": "news@acme.test", "to": ["h8@cust.test"], "subject": "api8", "text": "hello", "unsubscribe": true}'
t_expect_rc 0
T_OUT=$(head -n 1 <<<"$T_OUT")
t_expect_eq "$T_OUT" 202 "accepted"
t_wait_for 40 "(( \$(nfiles api8) == 1 ))"
check_unsub "$(files_of api8)" h8@cust.test
stop_daemon

# ---- the CLI: records and the MX report -------------------------------------------------
t_case "domain add with [inbound] hostname prints the return path's MX and SPF records"
t_run $PMX domain add Acme new.test --algorithm ed25519
t_expect_rc 0
t_expect_match "$T_OUT" '^bounces\.new\.test\. MX 10 mx\.postmux\.test\.$' "MX"
t_expect_match "$T_OUT" '^bounces\.new\.test\. TXT "v=spf1 a:mx\.postmux\.test ~all"$' "SPF"
t_run $PMX domain add Acme new2.test --algorithm ed25519 --return-path Bounce.New2.Test.
t_expect_rc 0
t_expect_match "$T_OUT" '^bounce\.new2\.test\. MX 10 mx\.postmux\.test\.$' "MX of the chosen name"
t_expect_eq "$(t_psql "select return_path from domains where domain = 'new2.test'")" bounce.new2.test "stored"
t_expect_eq "$($PMX domain show new2.test --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["return_path"])')" \
    bounce.new2.test "domain show --json"
for bad in new3.test new3.test.example x.other.test 'a..new3.test' '-x.new3.test'; do
    t_run $PMX domain add Acme new3.test --algorithm ed25519 --return-path "$bad"
    t_expect_rc 1
    t_expect_match "$T_ERR" 'return-path' "--return-path $bad"
done
t_expect_eq "$(t_psql "select count(*) from domains where domain = 'new3.test'")" 0 "nothing written"

t_case "domain verify reports whether the return path's MX is published, and never fails on it"
ZONE=$T_DIR/zone.conf
{
    for d in new.test new2.test; do
        $PMX domain show $d | sed -nE 's/^([^ ]+)\. TXT (".*")$/txt-record=\1,\2/p' | sed 's/" "/","/g'
    done
    echo 'mx-host=bounces.new.test,mx.postmux.test,10'
    echo 'local=/new2.test/'     # NXDOMAIN for the rest of new2.test, not REFUSED
} >"$ZONE"
DNS_PORT=$(t_dns_start "$ZONE")
t_run $PMX domain verify new.test --nameserver "127.0.0.1:$DNS_PORT"
t_expect_rc 0
t_expect_eq "$T_OUT" verified "verified"
t_expect_match "$T_ERR" 'return path bounces\.new\.test: MX mx\.postmux\.test is published' "MX found"
t_run $PMX domain verify new2.test --nameserver "127.0.0.1:$DNS_PORT"
t_expect_rc 0
t_expect_eq "$T_OUT" verified "verified without the MX"
t_expect_match "$T_ERR" 'note: return path bounce\.new2\.test: no MX record' "MX missing"
t_expect_match "$T_ERR" 'publish: bounce\.new2\.test\. MX 10 mx\.postmux\.test\.' "what to publish"

t_case "no sanitizer report in postmuxd's log"
t_expect_nomatch "$(cat "$T_DIR"/postmuxd*.log 2>/dev/null)" 'Sanitizer|runtime error:|LeakSanitizer' "postmuxd log"
stop_relay
t_done
