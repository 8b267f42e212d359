#!/usr/bin/env bash
# One-click unsubscribe on the public listener (docs/http.md, "One-click
# unsubscribe"; RFC 8058): GET /u/<token> shows a page and writes nothing; POST with
# List-Unsubscribe=One-Click (form-urlencoded or multipart) suppresses the address in
# the message's category (else '*') and writes message.unsubscribed once; bad tokens
# are 404 and write nothing; the next job of that category is suppressed, another
# category's is not; Postgres down is 503 and the retry works; bad-token attempts
# per address are limited. Once through headless Chromium: a screenshot of the page
# and a real click on its button over the DevTools protocol.
# Message and recipient rows are inserted with psql; tokens come from
# tests/tools/reftoken.py (written apart from lib/reftoken.c). This file runs its own
# Postgres: it stops it for the 503 case.
unset PMX_PG_HOST PMX_PG_PORT PMX_PG_USER
source "$(dirname "$0")/lib.sh"
t_setup
PY=/usr/bin/python3
REFTOKEN=$PMX_ROOT/tests/tools/reftoken.py
CHROMIUM=/usr/bin/chromium

HPORT=$(pmx_svc_free_port)
MPORT=$(pmx_svc_free_port)
t_conf_set daemon workers 1            # one worker: the per-address limit is per worker
t_conf_set daemon log_level debug      # "suppressions notify" lines
t_conf_set daemon shutdown_timeout 5s
t_conf_set daemon metrics_listen "127.0.0.1:$MPORT"
t_conf_set http listen "127.0.0.1:$HPORT"
t_conf_set http public_url "http://127.0.0.1:$HPORT"
t_conf_set http max_body_size 64K

WS=$($PMX workspace create Acme)
BETA=$($PMX workspace create 'Beta <b>&</b> "Co"')
$PMX domain add Acme acme.test --algorithm ed25519 >/dev/null
$PMX domain verify acme.test --skip-dns >/dev/null

# Messages as postmuxd records them: M_NEWS (category news) to alice (idx 0) and
# bob (idx 1); M_PLAIN (no category) to carol; M_DOWN to dave; M_BETA in Beta.
M_NEWS=msg_newsaaaaaaaaaaaa M_PLAIN=msg_plainaaaaaaaaaaa M_DOWN=msg_downaaaaaaaaaaaa
M_BETA=msg_betaaaaaaaaaaaaa M_BROWSER=msg_browseraaaaaaaaa
t_psql "
insert into messages (id, workspace_id, job_id, mail_from, source, category) values
  ('$M_NEWS', '$WS', 'j-news', 'news@acme.test', 'redis', 'news'),
  ('$M_PLAIN', '$WS', 'j-plain', 'news@acme.test', 'redis', null),
  ('$M_DOWN', '$WS', 'j-down', 'news@acme.test', 'redis', 'news'),
  ('$M_BROWSER', '$WS', 'j-browser', 'news@acme.test', 'redis', 'digest'),
  ('$M_BETA', '$BETA', 'j-beta', 'x@beta.test', 'redis', null);
insert into recipients (message_id, address, status, idx) values
  ('$M_NEWS', 'Alice@Example.NET', 'sent', 0), ('$M_NEWS', 'bob@example.net', 'sent', 1),
  ('$M_PLAIN', 'carol@example.net', 'sent', 0), ('$M_DOWN', 'dave@example.net', 'sent', 0),
  ('$M_BROWSER', 'erin@example.net', 'sent', 0), ('$M_BETA', 'frank@example.org', 'sent', 0);" >/dev/null

tok() { "$PY" "$REFTOKEN" make "$T_MASTER_KEY" "${3:-u}" "$1" "$2"; }
T_ALICE=$(tok "$M_NEWS" 0)
T_CAROL=$(tok "$M_PLAIN" 0)
T_DAVE=$(tok "$M_DOWN" 0)
T_ERIN=$(tok "$M_BROWSER" 0)
T_FRANK=$(tok "$M_BETA" 0)
T_NOROW=$(tok "$M_NEWS" 7)               # a good tag, but no recipient idx 7
T_BOUNCE=$(tok "$M_NEWS" 1 b)            # bob's bounce token: another purpose
T_BOB=$(tok "$M_NEWS" 1)
# The last character changed: the tag no longer matches.
T_FORGED=${T_BOB%?}$([[ ${T_BOB: -1} == a ]] && echo b || echo a)

U=http://127.0.0.1:$HPORT/u
# req METHOD URL [curl args...]: T_OUT = status, body in $T_DIR/body, headers in $T_DIR/head.
req() {
    local m=$1 url=$2
    shift 2
    t_run curl -s -m 20 -X "$m" -D "$T_DIR/head" -o "$T_DIR/body" -w '%{http_code}' "$@" "$url"
}
body() { cat "$T_DIR/body"; }
header() { grep -i "^$1:" "$T_DIR/head" | head -n 1 | cut -d: -f2- | tr -d '\r' | sed 's/^ //'; }
ONE_CLICK=(-H 'Content-Type: application/x-www-form-urlencoded' --data-binary 'List-Unsubscribe=One-Click')
written() {   # suppressions and message.unsubscribed events
    t_psql "select (select count(*) from suppressions) || ' ' ||
                   (select count(*) from events where type = 'message.unsubscribed')"
}
LOG=$T_DIR/postmuxd.log

"$PMXD" -c "$T_CONF" >>"$LOG" 2>&1 &
DPID=$!
t_wait_for 20 "[[ \$(curl -s -m 2 -o /dev/null -w '%{http_code}' http://127.0.0.1:$MPORT/healthz) == 200 ]]"

# ---- GET: the page, nothing written ------------------------------------------------------
t_case "GET /u/<token>: a self-contained page with the workspace and the masked address"
req GET "$U/$T_ALICE"
t_expect_eq "$T_OUT" 200 "status"
t_expect_match "$(header Content-Type)" '^text/html; charset=utf-8$' "content type"
CSP=$(header Content-Security-Policy)
t_expect_match "$CSP" "^default-src 'none'; style-src 'sha256-[A-Za-z0-9+/=]+'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'$" "CSP"
t_expect_eq "$(header Referrer-Policy)" no-referrer "Referrer-Policy"
t_expect_eq "$(header Cache-Control)" no-store "Cache-Control"
t_expect_match "$(body)" '<strong>Acme</strong>' "workspace name"
t_expect_match "$(body)" 'a\*\*\*@example\.net' "masked address"
t_expect_nomatch "$(body)" '[Aa]lice' "the address itself is not shown"
t_expect_match "$(body)" 'in the category <strong>news</strong>' "scope"
t_expect_match "$(body)" 'data-state="subscribed"' "state"
t_expect_match "$(body)" '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click"><button type="submit" id="unsubscribe">' "the button's form"
t_expect_nomatch "$(body)" '(src|href|action)=|https?://|<script' "no external resource, no script, no action"
# The style's hash in the CSP is the hash of the page's one <style>.
t_run "$PY" -c '
import base64, hashlib, re, sys
page, csp = open(sys.argv[1]).read(), sys.argv[2]
styles = re.findall(r"<style>(.*?)</style>", page, re.S)
assert len(styles) == 1, styles
h = base64.b64encode(hashlib.sha256(styles[0].encode()).digest()).decode()
print("same" if "sha256-" + h in csp else "differs")' "$T_DIR/body" "$CSP"
t_expect_eq "$T_OUT" same "CSP style hash"
t_expect_eq "$(written)" "0 0" "suppressions, events"

t_case "GET escapes the workspace name; HEAD answers the head only; neither writes"
req GET "$U/$T_FRANK"
t_expect_eq "$T_OUT" 200 "status"
t_expect_match "$(body)" '<strong>Beta &lt;b&gt;&amp;&lt;/b&gt; &quot;Co&quot;</strong>' "escaped name"
t_expect_match "$(body)" 'f\*\*\*@example\.org' "masked address"
t_expect_nomatch "$(body)" 'in the category' "no category: scope '*'"
t_run curl -s -m 10 -I -o "$T_DIR/headonly" -w '%{http_code}' "$U/$T_ALICE"
t_expect_eq "$T_OUT" 200 "HEAD status"
t_expect_eq "$(written)" "0 0" "suppressions, events"

# ---- bad tokens ----------------------------------------------------------------------------
t_case "forged, bounce-purpose, wrong-length and unknown-recipient tokens: 404, nothing written"
for t in "$T_FORGED" "$T_BOUNCE" "${T_BOB:0:35}" "${T_BOB}a" "" "$T_BOB/x" "%2E%2E%2Fetc%2Fpasswd" "$T_NOROW"; do
    req GET "$U/$t"
    t_expect_eq "$T_OUT" 404 "GET /u/$t"
    t_expect_match "$(header Content-Type)" '^text/html' "GET /u/$t: an HTML page"
    req POST "$U/$t" "${ONE_CLICK[@]}"
    t_expect_eq "$T_OUT" 404 "POST /u/$t"
done
t_expect_eq "$(written)" "0 0" "suppressions, events"
t_expect_match "$(cat "$LOG")" "unsubscribe client=127\.0\.0\.1 msg=$M_NEWS idx=7: no such recipient" "the unknown recipient was looked up"

t_case "POST with another body or content type: refused, nothing written"
req POST "$U/$T_ALICE" -H 'Content-Type: application/x-www-form-urlencoded' --data-binary 'List-Unsubscribe=one-click'
t_expect_eq "$T_OUT" 400 "wrong value"
req POST "$U/$T_ALICE" -H 'Content-Type: application/x-www-form-urlencoded' --data-binary 'List-Unsubscribe=One-Click&also=this'
t_expect_eq "$T_OUT" 400 "a second field"
req POST "$U/$T_ALICE"
t_expect_eq "$T_OUT" 415 "no body, no content type"
req POST "$U/$T_ALICE" -H 'Content-Type: text/plain' --data-binary 'List-Unsubscribe=One-Click'
t_expect_eq "$T_OUT" 415 "text/plain"
req PUT "$U/$T_ALICE" "${ONE_CLICK[@]}"
t_expect_eq "$T_OUT" 405 "PUT"
t_expect_eq "$(header Allow)" "GET, HEAD, POST" "Allow"
t_expect_eq "$(written)" "0 0" "suppressions, events"

# ---- POST: unsubscribed, once ---------------------------------------------------------------
t_case "POST List-Unsubscribe=One-Click (RFC 8058): 200, suppressed in the category, one event"
req POST "$U/$T_ALICE" "${ONE_CLICK[@]}"
t_expect_eq "$T_OUT" 200 "status"
t_expect_match "$(header Content-Type)" '^text/plain' "plain text for a mail provider"
t_expect_eq "$(body)" unsubscribed "body"
t_expect_eq "$(t_psql "select workspace_id, address, scope, reason, detail, message_id from suppressions")" \
    "$WS|alice@example.net|news|unsubscribe|one-click|$M_NEWS" "suppression row"
t_expect_eq "$(t_psql "select workspace_id, message_id, recipient, detail from events where type = 'message.unsubscribed'")" \
    "$WS|$M_NEWS|alice@example.net|one-click" "event row"

t_case "the same POST again (and with the token in capitals): 200, nothing new"
req POST "$U/$T_ALICE" "${ONE_CLICK[@]}"
t_expect_eq "$T_OUT" 200 "status"
req POST "$U/${T_ALICE^^}" "${ONE_CLICK[@]}" -H 'Accept: text/html'
t_expect_eq "$T_OUT" 200 "status (capitals)"
t_expect_match "$(header Content-Type)" '^text/html' "HTML for a browser"
t_expect_match "$(body)" 'data-state="unsubscribed"' "done page"
t_expect_match "$(body)" 'mail from <strong>Acme</strong>' "the done page names the workspace"
t_expect_eq "$(written)" "1 1" "suppressions, events"

t_case "GET after: the page says unsubscribed, without a button"
req GET "$U/$T_ALICE"
t_expect_eq "$T_OUT" 200 "status"
t_expect_match "$(body)" 'data-state="unsubscribed"' "state"
t_expect_nomatch "$(body)" '<form' "no form"

t_case "multipart/form-data (curl -F) without a category: scope '*'"
req POST "$U/$T_CAROL" -F 'List-Unsubscribe=One-Click'
t_expect_eq "$T_OUT" 200 "status"
t_expect_eq "$(t_psql "select scope || ' ' || reason from suppressions where address = 'carol@example.net'")" \
    "* unsubscribe" "scope"
t_expect_eq "$(written)" "2 2" "suppressions, events"

# ---- the next jobs -------------------------------------------------------------------------------
t_case "the next job of that category is suppressed; another category's and carol's are not / are"
t_wait_for 30 "grep -qF 'suppressions notify \"+ $WS news unsubscribe 0 alice@example.net' '$LOG'"
t_wait_for 30 "grep -qF 'suppressions notify \"+ $WS * unsubscribe 0 carol@example.net' '$LOG'"
xadd() { t_redis XADD "pmx:{$WS}:jobs" '*' "$@" >/dev/null; }
statuses() { t_psql "select string_agg(r.address || '=' || r.status, ',' order by r.address)
                     from recipients r join messages m on m.id = r.message_id where m.client_id = '$1'"; }
xadd from news@acme.test to alice@example.net subject s text t category news id n1
xadd from news@acme.test to alice@example.net subject s text t category billing id n2
xadd from news@acme.test to alice@example.net subject s text t id n3
xadd from news@acme.test to carol@example.net subject s text t category billing id n4
for j in n1 n2 n3 n4; do
    t_wait_for 30 "[[ \$(statuses $j) =~ =(sent|suppressed)$ ]]"
done
t_expect_eq "$(statuses n1)" "alice@example.net=suppressed" "category news"
t_expect_eq "$(statuses n2)" "alice@example.net=sent" "category billing"
t_expect_eq "$(statuses n3)" "alice@example.net=sent" "no category"
t_expect_eq "$(statuses n4)" "carol@example.net=suppressed" "scope '*'"

# ---- headless Chromium: the page, and a real click -----------------------------------------
t_case "headless Chromium: screenshot of the page, a mouse click on its button unsubscribes"
if [[ ! -x $CHROMIUM ]] && ! apt-cache policy chromium 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    echo "# SKIP headless Chromium: $CHROMIUM is missing and no chromium package can be installed here" >&2
else
    SHOTS=$PMX_ROOT/build/test-logs
    mkdir -p "$SHOTS"
    t_run "$PY" "$PMX_ROOT/tests/tools/cdp_click.py" "$CHROMIUM" "$U/$T_ERIN" '#unsubscribe' \
        "$SHOTS/unsubscribe-page.png" "$SHOTS/unsubscribe-done.png"
    t_expect_rc 0 || echo "# $T_ERR" >&2
    echo "# screenshots: $SHOTS/unsubscribe-page.png $SHOTS/unsubscribe-done.png" >&2
    jq_() { printf '%s' "$T_OUT" | "$PY" -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }
    t_expect_eq "$(jq_ 'd["before"]["state"]')" subscribed "state before the click"
    t_expect_match "$(jq_ 'd["before"]["text"]')" 'e\*\*\*@example\.net' "masked address rendered"
    # The inline style ran under the CSP (its hash allowed it): the button is red.
    t_expect_eq "$(jq_ 'd["before"]["button_bg"]')" "rgb(185, 28, 28)" "the style applied"
    t_expect_eq "$(jq_ 'len(d["before"]["csp_violations"]) + len(d["after"]["csp_violations"])')" 0 "CSP violations"
    t_expect_eq "$(jq_ 'd["after"]["state"]')" unsubscribed "state after the click"
    t_expect_eq "$(head -c 4 "$SHOTS/unsubscribe-page.png" | tail -c 3)" PNG "the screenshot is a PNG"
    t_expect_eq "$(t_psql "select scope || ' ' || reason from suppressions where address = 'erin@example.net'")" \
        "digest unsubscribe" "suppression written by the click"
fi

# ---- limits ------------------------------------------------------------------------------------
t_case "bad tokens from one address: 429 once over the limit, for that address only"
# 127.0.0.2 is a loopback address of its own: 127.0.0.1's count is not touched.
got=""
for ((i = 0; i < 70; i++)); do
    code=$(curl -s -m 10 --interface 127.0.0.2 -o /dev/null -w '%{http_code}' "$U/$T_FORGED")
    [[ $code == 429 ]] && { got=$i; break; }
    [[ $code == 404 ]] || { t_fail "bad token $i: $code"; break; }
done
# 30 bad tokens a minute, so the 31st is 429; a minute that turns during the loop
# starts the count again (then up to 60).
t_expect_match "$got" '^(3[0-9]|[45][0-9]|60)$' "429 after 30 404s (got it after ${got:-70+})"
t_run curl -s -m 10 --interface 127.0.0.2 -D "$T_DIR/head" -o /dev/null -w '%{http_code}' "$U/$T_BOB"
t_expect_eq "$T_OUT" 429 "a good token from that address, same minute"
t_expect_eq "$(header Retry-After)" 60 "Retry-After"
req GET "$U/$T_BOB"
t_expect_eq "$T_OUT" 200 "another address"

t_case "a body over max_body_size: 413 before the handler; nothing written"
head -c 70000 /dev/zero | tr '\0' a >"$T_DIR/big"
req POST "$U/$T_BOB" -H 'Content-Type: application/x-www-form-urlencoded' --data-binary "@$T_DIR/big"
t_expect_eq "$T_OUT" 413 "status"
t_expect_eq "$(t_psql "select count(*) from suppressions where address = 'bob@example.net'")" 0 "bob"

# ---- Postgres down -------------------------------------------------------------------------------
t_case "Postgres down: POST is 503 with Retry-After and writes nothing; the retry unsubscribes"
PROBE=$T_DIR/probe.out
(
    # Wait until Postgres is gone, then POST until the answer is not 200-with-Postgres-up.
    for ((i = 0; i < 300; i++)); do
        "$PMX_PG_BIN/pg_isready" -q -h "$PMX_PG_HOST" -p "$PMX_PG_PORT" -t 1 || break
        sleep 0.05
    done
    curl -s -m 10 -D "$T_DIR/probe.head" -o /dev/null -w '%{http_code}' \
        -H 'Content-Type: application/x-www-form-urlencoded' --data-binary 'List-Unsubscribe=One-Click' \
        "$U/$T_DAVE" >"$PROBE"
) &
PROBE_PID=$!
pmx_svc_pg_restart 4 || t_fail "Postgres did not come back"
wait "$PROBE_PID"
t_expect_eq "$(cat "$PROBE")" 503 "status while down"
t_expect_match "$(tr -d '\r' <"$T_DIR/probe.head")" '^Retry-After: 30$' "Retry-After"
t_wait_for 30 "grep -q 'postgres reconnected' '$LOG'"
t_expect_eq "$(t_psql "select count(*) from suppressions where address = 'dave@example.net'")" 0 "nothing written"
t_wait_for 30 "[[ \$(curl -s -m 5 -o /dev/null -w '%{http_code}' ${ONE_CLICK[*]@Q} '$U/$T_DAVE') == 200 ]]"
t_expect_eq "$(t_psql "select scope from suppressions where address = 'dave@example.net'")" news "the retry"
t_expect_eq "$(t_psql "select count(*) from events where type = 'message.unsubscribed' and recipient = 'dave@example.net'")" 1 "one event"

# ---- drain ----------------------------------------------------------------------------------------
t_case "SIGTERM while an unsubscribe waits for Postgres: the drain waits, the client gets 200"
# A transaction holds a lock that the unsubscribe's INSERT waits for, for 3 s.
t_psql "begin; lock table suppressions in share row exclusive mode; select pg_sleep(3); commit" \
    >/dev/null 2>&1 &
t_wait_for 20 "[[ \$(t_psql \"select count(*) from pg_locks l join pg_class c on c.oid = l.relation
               where c.relname = 'suppressions' and l.mode = 'ShareRowExclusiveLock' and l.granted\") == 1 ]]"
curl -s -m 30 -o "$T_DIR/drain.body" -w '%{http_code}' "${ONE_CLICK[@]}" "$U/$T_BOB" >"$T_DIR/drain.code" &
CURL_PID=$!
t_wait_for 20 "[[ \$(t_psql \"select count(*) from pg_stat_activity
               where wait_event_type = 'Lock' and query like '%INSERT INTO suppressions%'\") == 1 ]]"
t_stop_postmuxd "$DPID"
wait "$CURL_PID"
t_case "the unsubscribe answered during the drain was written"
t_expect_eq "$(cat "$T_DIR/drain.code")" 200 "status"
t_expect_eq "$(cat "$T_DIR/drain.body")" unsubscribed "body"
t_expect_eq "$(t_psql "select scope from suppressions where address = 'bob@example.net'")" news "bob's row"
t_expect_match "$(cat "$LOG")" 'http drained' "the API's drain ended"
t_done
