#!/usr/bin/env bash
# `make demo` (scripts/demo.sh, issue 4 item 7, issue 15) runs to the end
# non-interactively with the binaries under test: throwaway services; the CLI only
# migrates and makes one organization API key; the workspace, its domain (verified
# against dnsmasq serving the records the API answered), the app's send key and two
# messages are made through the API with curl; jobs XADDed with redis-cli, outcomes in
# Postgres, DKIM checked by python3-dkim, the loop back (a recipient the relay refuses
# as unknown, a bounce taken back by the [inbound] listener for another: both
# suppressed, the next job to them suppressed); the newsletter's List-Unsubscribe link
# followed (GET writes nothing, the one-click POST suppresses in its category, the
# event is listed) — and it stops everything it started.
source "$(dirname "$0")/lib.sh"

[[ -x $PMX && -x $PMXD ]] || t__setup_fail "no postmux/postmuxd in $PMX_BIN_DIR: build first (make)"

# block TEXT N: the answer lines ("  -> STATUS" and the indented ones after it) of the
# Nth request line ("$ ...") of the demo's output that contains TEXT.
block() {
    awk -v s="$1" -v n="${2:-1}" '
        on { if ($0 ~ /^(  -> |     )/) { print; next } else exit }
        index($0, "$ ") == 1 && index($0, s) && ++k == n { on = 1 }' <<<"$demo_out"
}

t_case "the demo runs end to end and exits 0"
mkdir -p "$T_DIR/answers"
T_RUN_TIMEOUT=120 t_run env -u DEMO_KEEP DEMO_BIN_DIR="$PMX_BIN_DIR" DEMO_RESPONSES="$T_DIR/answers" \
    bash "$PMX_ROOT/scripts/demo.sh"
t_expect_rc 0
demo_out=$T_OUT
t_expect_match "$T_OUT" 'postmuxd \| postmuxd\[[0-9]+\] info: stopped exit=0' "postmuxd stopped cleanly"

t_case "every API answer the demo got is what the OpenAPI document says"
t_run /usr/bin/python3 "$PMX_ROOT/tests/tools/api_check.py" --saved "$PMX_ROOT/http/openapi.json" "$T_DIR/answers"
t_expect_rc 0
t_expect_match "$T_OUT" '^[0-9]+ answers valid$' "checked"
t_expect_eq "$(find "$T_DIR/answers" -name '*.req' | wc -l)" "$(grep -c '^\$ curl .*"\$API/v1/' <<<"$demo_out")" \
    "one saved answer per API request shown"

t_case "the CLI only migrates and makes the organization key; the config has [http] and [mx] resolver"
t_expect_eq "$(grep -E '^\$ (.*\$\()?postmux ' <<<"$demo_out")" \
    '$ postmux migrate
$ ORG_KEY=$(postmux apikey create --org --name demo-admin --scopes manage,read)' "the CLI commands run"
t_expect_match "$demo_out" '^schema up to date \(version [0-9]+\)$' "migrated"
org=$(sed -nE 's/^(key_[a-z2-7]{16}): organization key created; .*/\1/p' <<<"$demo_out")
t_expect_match "$org" '^key_[a-z2-7]{16}$' "the organization key's id"
hport=$(sed -nE 's|^    public_url = http://127\.0\.0\.1:([0-9]+)$|\1|p' <<<"$demo_out")
t_expect_match "$hport" '^[0-9]+$' "[http] public_url on loopback"
t_expect_match "$demo_out" "^    listen = 127\.0\.0\.1:$hport\$" "[http] listen"
dport=$(sed -nE 's|^    resolver = 127\.0\.0\.1:([0-9]+)$|\1|p' <<<"$demo_out")
t_expect_match "$dport" '^[0-9]+$' "[mx] resolver"

t_case "the API with the organization key: workspace, domain and its records, verify, an app key"
b=$(block '-X POST "$API/v1/workspaces" -H "Authorization: Bearer $ORG_KEY" --json')
t_expect_match "$b" '^  -> 201$' "POST /v1/workspaces: 201"
t_expect_match "$b" '^     id: ws_[a-z2-7]{16}$' "... the workspace id"
ws=$(sed -nE 's/^     id: (ws_[a-z2-7]{16})$/\1/p' <<<"$b")
t_expect_match "$b" '^     name: Demo$' "... the name"
b=$(block '-X POST "$API/v1/domains" -H "Authorization: Bearer $ORG_KEY" -H "X-Workspace-Id: $WS" --json')
t_expect_match "$b" '^  -> 201$' "POST /v1/domains: 201"
t_expect_match "$b" '^     domain: demo\.example, verified: False, keys: pmx \(rsa-sha256\), pmx-ed25519 \(ed25519-sha256\)$' "... the domain, not verified yet"
t_expect_match "$b" '^       TXT +_postmux\.demo\.example +postmux-verify=[a-z2-7]+$' "... the token record"
t_expect_match "$b" '^       TXT +pmx\._domainkey\.demo\.example +v=DKIM1; k=rsa; p=MII' "... the RSA key's record"
t_expect_match "$b" '^       TXT +pmx-ed25519\._domainkey\.demo\.example +v=DKIM1; k=ed25519; p=' "... the Ed25519 key's record"
t_expect_match "$b" '^       MX +bounces\.demo\.example +10 mx\.demo\.example$' "... the return path's MX"
t_expect_match "$demo_out" "dnsmasq on 127\.0\.0\.1:$dport, the config's \[mx\] resolver, now serves those records" "dnsmasq on the resolver's port"
b=$(block '-X POST "$API/v1/domains/demo.example/verify"')
t_expect_match "$b" '^  -> 200$' "POST /v1/domains/demo.example/verify: 200"
t_expect_match "$b" '^     verified: True$' "... verified"
t_expect_eq "$(grep -c ': ok$' <<<"$b")" 3 "... the token and both keys found in DNS"
t_expect_nomatch "$b" 'MISSING' "... nothing missing"
b=$(block '-X POST "$API/v1/api-keys" -H "Authorization: Bearer $ORG_KEY" -H "X-Workspace-Id: $WS"')
t_expect_match "$b" '^  -> 201$' "POST /v1/api-keys: 201"
t_expect_match "$b" "^     id: key_[a-z2-7]{16}, workspace: $ws, scopes: send\$" "... a send key of the workspace"
t_expect_match "$b" '^     key: pmx_[A-Za-z0-9_-]{43}   \(shown this once\)$' "... the key, shown once"
app=$(sed -nE 's/^     id: (key_[a-z2-7]{16}), .*/\1/p' <<<"$b")
t_expect_match "$demo_out" "^ cli +\| - +\| apikey\.create +\| $org *\$" "audit: the CLI made the organization key"
t_expect_match "$demo_out" "^ $org \| $ws \| workspace\.create +\| Demo *\$" "audit: the org key made the workspace"
t_expect_match "$demo_out" "^ $org \| $ws \| domain\.add +\| demo\.example *\$" "audit: ... the domain"
t_expect_match "$demo_out" "^ $org \| $ws \| domain\.verify +\| demo\.example *\$" "audit: ... verified it"
t_expect_match "$demo_out" "^ $org \| $ws \| apikey\.create +\| $app *\$" "audit: ... and the app key"

t_case "two messages sent through the API with the app key, polled until sent"
for n in 1 2; do
    b=$(block '-X POST "$API/v1/emails" -H "Authorization: Bearer $APP_KEY"' "$n")
    t_expect_match "$b" '^  -> 202$' "POST /v1/emails #$n: 202"
    t_expect_match "$b" '^     id: [0-9]+-[0-9]+$' "... the stream entry id"
done
t_expect_match "$demo_out" "\\\$ curl -X POST \"\\\$API/v1/emails\" .*'Idempotency-Key: newsletter-1' --json '.*\"unsubscribe\": true, \"category\": \"newsletter\"}'\$" \
    "the newsletter asks for unsubscribe in a category"
b=$(block '$ curl "$API/v1/messages/' 1)
t_expect_match "$b" '^  -> 200$' "GET /v1/messages/{id}: 200"
t_expect_match "$b" '^       heidi@example\.net: sent \(250 ' "... the receipt sent"
b=$(block '$ curl "$API/v1/messages/' 2)
t_expect_match "$b" '^     [0-9]+-[0-9]+ newsletter-1  Demo newsletter #1$' "... the newsletter"
t_expect_match "$b" '^       grace@example\.net: sent \(250 ' "... sent"

t_case "the jobs XADDed with redis-cli and the API's messages: outcomes, DKIM"
t_expect_match "$demo_out" '^ receipt-1 +\| heidi@example\.net +\| sent +\| +1 \| 250 ' "API message sent"
t_expect_match "$demo_out" '^ newsletter-1 +\| grace@example\.net +\| sent +\| +1 \| 250 ' "API newsletter sent"
t_expect_match "$demo_out" '^ welcome-1 +\| alice@example\.net +\| sent +\| +1 \| 250 ' "composed job sent"
t_expect_eq "$(grep -cE '^ news-1 +\| [a-z]+@example\.net +\| sent ' <<<"$demo_out")" 4 "multipart job: to, to, cc, bcc sent"
t_expect_match "$demo_out" '^ invoice-1 +\| erin@example\.net +\| sent ' "raw job sent"
t_expect_match "$demo_out" '^ spoof-1 +\| frank@example\.net +\| rejected +\| +0 \| domain_not_verified: other\.example' "unverified From rejected"
t_expect_match "$demo_out" 'pending entries left in .*: 0$' "nothing pending"
t_expect_match "$demo_out" '\(decodes to: Grüße aus Köln — 東京 ✉\)' "RFC 2047 subject round trip"
t_expect_eq "$(grep -cE 'DKIM signature [01]: a=(rsa|ed25519)-sha256 d=demo\.example .* -> pass ' <<<"$demo_out")" 16 \
    "rsa + ed25519 signatures pass on 8 messages (VERP: one per recipient of the multipart job)"
t_expect_nomatch "$demo_out" 'FAIL|WRONG' "a failed verification"
t_expect_match "$demo_out" 'Subject changed\): DKIM signature 0 -> fail, as it must' "tampered copy fails"
t_expect_match "$demo_out" '^  8 messages, every DKIM signature verifies$' "summary"

t_case "the loop back: a hard bounce and an async DSN suppress; GET /v1/suppressions lists both"
t_expect_match "$demo_out" '<- 250 2\.0\.0 Ok: stored as report [0-9]+$' "the bounce stored by the inbound listener"
t_expect_match "$demo_out" '^ alice@example\.net \| bounced +\| user_unknown +\| message\.bounced \| \{"async":true' \
    "alice bounced async"
t_expect_match "$demo_out" '^ perm-gone@example\.net \| bounced +\| user_unknown +\| 550 5\.1\.1' \
    "the recipient the relay refused bounced, class user_unknown"
b=$(block '$ curl "$API/v1/suppressions" -H')
t_expect_match "$b" '^  -> 200$' "GET /v1/suppressions: 200"
t_expect_match "$b" '^     alice@example\.net +scope \* +hard_bounce +550 5\.1\.1 ' "alice suppressed"
t_expect_match "$b" '^     perm-gone@example\.net +scope \* +hard_bounce +550 5\.1\.1 ' "perm-gone suppressed"
t_expect_match "$demo_out" '^ welcome-2 +\| alice@example\.net +\| suppressed +\| suppressed: hard_bounce' \
    "the next job to alice suppressed"
t_expect_match "$demo_out" '^ welcome-2 +\| perm-gone@example\.net +\| suppressed +\| suppressed: hard_bounce' \
    "... and to perm-gone"

t_case "one-click unsubscribe: the header, GET writes nothing, POST suppresses in the category, the event"
tok=$(sed -nE "s#^  \\| List-Unsubscribe: <http://127\\.0\\.0\\.1:$hport/u/([a-z2-7]+)>, <mailto:u-([a-z2-7]+)@bounces\\.demo\\.example>\$#\\1 \\2#p" <<<"$demo_out" | tail -n 1)
t_expect_match "$tok" '^[a-z2-7]+ [a-z2-7]+$' "List-Unsubscribe: the public_url link and the mailto link"
t_expect_eq "${tok% *}" "${tok#* }" "... the same token in both"
t_expect_match "$demo_out" '^  \| List-Unsubscribe-Post: List-Unsubscribe=One-Click$' "List-Unsubscribe-Post"
b=$(block '$ curl $U')
t_expect_match "$b" '^  -> 200$' "GET the link: 200"
t_expect_match "$b" '^     page: Stop sending mail from Demo in the category newsletter to g\*\*\*@example\.net\?$' "... the page asks"
t_expect_match "$b" '^     page: \[Unsubscribe\]$' "... with a button"
t_expect_match "$b" '^     \(state: subscribed\)$' "... not unsubscribed yet"
b=$(block '$ curl "$API/v1/suppressions?reason=unsubscribe"' 1)
t_expect_eq "$b" '  -> 200
     (none)' "after the GET: no unsubscribe suppression"
b=$(block '$ curl -X POST $U -d List-Unsubscribe=One-Click')
t_expect_eq "$b" '  -> 200 unsubscribed' "the one-click POST"
b=$(block '$ curl "$API/v1/suppressions?reason=unsubscribe"' 2)
t_expect_eq "$b" '  -> 200
     grace@example.net      scope newsletter  unsubscribe  one-click' "after the POST: grace, in the category"
b=$(block '$ curl "$API/v1/events?type=message.unsubscribed"')
t_expect_match "$b" '^  -> 200$' "GET /v1/events: 200"
t_expect_match "$b" '^     evt_[0-9]+ message\.unsubscribed grace@example\.net msg_[a-z2-7]{16} one-click$' "... message.unsubscribed"
t_expect_eq "$(grep -c 'message\.unsubscribed' <<<"$b")" 1 "... once"
b=$(block '$ curl "$API/v1/messages/' 3)
t_expect_match "$b" '^     [0-9]+-[0-9]+ newsletter-2  Demo newsletter #2$' "the next newsletter"
t_expect_match "$b" '^       grace@example\.net: suppressed \(suppressed: unsubscribe\)$' "... suppressed"
b=$(block '$ curl "$API/v1/messages/' 4)
t_expect_match "$b" '^     [0-9]+-[0-9]+ receipt-2  Your receipt$' "a receipt to grace"
t_expect_match "$b" '^       grace@example\.net: sent \(250 ' "... sent"

t_case "the demo leaves nothing behind"
demo_dir=$(sed -n 's/^  postgres  \(.*\)\/pg (port .*/\1/p' <<<"$demo_out")
t_expect_match "$demo_dir" '^/.+/pmx\.[A-Za-z0-9]+$' "the demo's temp dir in its output"
if [[ -n $demo_dir ]]; then
    [[ -e $demo_dir ]] && t_fail "$demo_dir still exists"
    left=""
    for p in /proc/[0-9]*; do
        c=$({ tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null)
        [[ $c == *"$demo_dir"* ]] && left+="${p#/proc/}: ${c:0:80}; "
    done
    t_expect_eq "$left" "" "processes still naming $demo_dir"
fi

t_case "missing binaries: a one-line error and exit 1"
t_run env DEMO_BIN_DIR="$T_DIR/nowhere" bash "$PMX_ROOT/scripts/demo.sh"
t_expect_rc 1
t_expect_match "$T_ERR" "^demo: no postmux/postmuxd in $T_DIR/nowhere$" "error"

t_done
