#!/usr/bin/env bash
# API v1 read and manage endpoints (docs/http.md) against the real postmuxd:
# scopes (401, 403), another workspace's objects (404), bad input (400/422 with
# `field`), messages, events with cursor paging, stats, testers, suppressions,
# API keys, and the audit_log row each change writes (also the CLI's, as
# "cli"). Every answer is checked against http/openapi.json by
# tests/tools/api_check.py (documented status and content type, body valid).
source "$(dirname "$0")/lib.sh"
t_setup
source "$PMX_ROOT/tests/integration/api_lib.sh"
api_listener_conf
t_conf_set "pool blue" addresses 127.0.0.2

ACME=$($PMX workspace create Acme)
BETA=$($PMX workspace create Beta)
$PMX domain add Acme acme.test --algorithm ed25519 >/dev/null
$PMX domain verify acme.test --skip-dns >/dev/null
K_SEND=$($PMX apikey create --workspace Acme --name send 2>/dev/null)
K_READ=$($PMX apikey create --workspace Acme --name read --scopes read 2>/dev/null)
K_ALL=$($PMX apikey create --workspace Acme --name all --scopes send,read,manage 2>"$T_DIR/all.err")
ALL_ID=$(grep -oE 'key_[a-z2-7]{16}' "$T_DIR/all.err" | head -n 1)
K_BETA=$($PMX apikey create --workspace Beta --name beta --scopes read,manage 2>/dev/null)
K_ORG=$($PMX apikey create --org --name org --scopes read,manage 2>"$T_DIR/org.err")
ORG_ID=$(grep -oE 'key_[a-z2-7]{16}' "$T_DIR/org.err" | head -n 1)

audit_rows() { t_psql "select count(*) from audit_log where $1"; }

t_case "postmux apikey create --scopes: manage is known, an unknown scope is refused"
t_expect_match "$K_ALL" '^pmx_' "key with send,read,manage"
t_expect_eq "$(t_psql "select array_to_string(scopes, ',') from api_keys where id = '$ALL_ID'")" \
    send,read,manage "stored scopes"
t_run "$PMX" apikey create --workspace Acme --name x --scopes send,admin
t_expect_rc 1
t_expect_match "$T_ERR" "unknown scope 'admin'" "message"

DLOG=$T_DIR/postmuxd.log
"$PMXD" -c "$T_CONF" >>"$DLOG" 2>&1 &
DPID=$!
t_wait_for 20 "[[ \$(curl -s -m 2 -o /dev/null -w '%{http_code}' http://127.0.0.1:$MPORT/healthz) == 200 ]]"

# ---- authentication and scopes -------------------------------------------------------------
t_case "no key or a bad key: 401 on read and manage endpoints"
api GET /v1/testers
expect_api 401
api GET /v1/events key=pmx_nosuchkey
expect_api 401
api POST /v1/testers key=pmx_nosuchkey 'body={"address":"t@example.net"}'
expect_api 401

t_case "missing scope: 403 (send-only key reads, read key changes)"
api GET /v1/stats "key=$K_SEND"
expect_api 403
t_expect_match "$(jget 'd["detail"]')" 'read scope' "names the scope"
api POST /v1/testers "key=$K_READ" 'body={"address":"t@example.net"}'
expect_api 403
api DELETE /v1/api-keys/key_aaaaaaaaaaaaaaaa "key=$K_READ"
expect_api 403
t_expect_eq "$(audit_rows "api_key_id like 'key_%'")" 0 "nothing written"

t_case "unknown path 404, wrong method 405 with Allow"
t_run curl -s -m 5 -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $K_ALL" \
    "http://127.0.0.1:$HPORT/v1/nothing"
t_expect_eq "$T_OUT" 404 "unknown path"
t_run curl -s -m 5 -D "$T_DIR/h405" -o /dev/null -X PUT -H "Authorization: Bearer $K_ALL" \
    "http://127.0.0.1:$HPORT/v1/testers"
t_expect_match "$(head -n 1 "$T_DIR/h405")" ' 405' "405"
t_expect_match "$(cat "$T_DIR/h405")" 'Allow: GET, POST' "Allow header"

t_case "organization key: X-Workspace-Id required (400 naming it), unknown workspace 404"
api GET /v1/testers "key=$K_ORG"
expect_api 400
t_expect_eq "$(jget 'd["field"]')" X-Workspace-Id "field"
api GET /v1/testers "key=$K_ORG" ws=ws_aaaaaaaaaaaaaaaa
expect_api 404
api GET /v1/testers "key=$K_ORG" ws=nope
expect_api 400
api GET /v1/testers "key=$K_ALL" "ws=$BETA"
expect_api 403

# ---- testers -------------------------------------------------------------------------------------
t_case "testers: add (201, then 200 added=false), list, remove, audit rows"
api POST /v1/testers "key=$K_ALL" 'body={"address":"QA <Tester@Example.NET>"}'
expect_api 201
t_expect_eq "$(jget 'd["address"]')" tester@example.net "stored lowercased"
api POST /v1/testers "key=$K_ALL" 'body={"address":"tester@example.net"}'
expect_api 200
t_expect_eq "$(jget 'd["added"]')" False "added false"
api GET /v1/testers "key=$K_READ"
expect_api 200
t_expect_eq "$(jget '[t["address"] for t in d["testers"]]')" "['tester@example.net']" "list"
t_expect_eq "$(t_psql "select api_key_id || ' ' || workspace_id || ' ' || action || ' ' || target from audit_log where action = 'tester.add'")" \
    "$ALL_ID $ACME tester.add tester@example.net" "one audit row for the one change"
api DELETE /v1/testers/tester@example.net "key=$K_ALL"
expect_api 200
api DELETE /v1/testers/tester@example.net "key=$K_ALL"
expect_api 404
t_expect_eq "$(audit_rows "action = 'tester.remove'")" 1 "one remove row"

t_case "testers: bad input 422 naming the field; header injection refused"
api POST /v1/testers "key=$K_ALL" 'body={"address":"not an address"}'
expect_api 422
t_expect_eq "$(jget 'd["field"]')" address "field"
api POST /v1/testers "key=$K_ALL" 'body={"address":"a@example.net\r\nBcc: evil@example.net"}'
expect_api 422
t_expect_eq "$(jget 'd["field"]')" address "CR LF: field"
api POST /v1/testers "key=$K_ALL" 'body={"address":7}'
expect_api 422
api POST /v1/testers "key=$K_ALL" 'body=["x"]'
expect_api 400
api POST /v1/testers "key=$K_ALL" 'body={"address":'
expect_api 400
t_expect_eq "$(t_psql "select count(*) from workspace_testers")" 0 "nothing added"

t_case "another workspace's objects: 404, untouched"
$PMX tester add Beta b@example.net >/dev/null
api DELETE /v1/testers/b@example.net "key=$K_ALL"
expect_api 404
t_expect_eq "$(t_psql "select count(*) from workspace_testers where workspace_id = '$BETA'")" 1 "kept"
api GET /v1/testers "key=$K_ORG" "ws=$BETA"
expect_api 200
t_expect_eq "$(jget 'len(d["testers"])')" 1 "org key sees Beta's with X-Workspace-Id"

# ---- suppressions ----------------------------------------------------------------------------------
t_case "suppressions: add, list, remove with scope; bad reason and scope 422"
api POST /v1/suppressions "key=$K_ALL" 'body={"address":"S@example.net","scope":"news","detail":"asked"}'
expect_api 201
t_expect_eq "$(jget 'd["reason"]')" manual "default reason"
api GET /v1/suppressions?reason=manual "key=$K_READ"
expect_api 200
t_expect_eq "$(jget '[(s["address"], s["scope"]) for s in d["suppressions"]]')" \
    "[('s@example.net', 'news')]" "listed"
api POST /v1/suppressions "key=$K_ALL" 'body={"address":"x@example.net","reason":"bogus"}'
expect_api 422
t_expect_eq "$(jget 'd["field"]')" reason "field"
api POST /v1/suppressions "key=$K_ALL" 'body={"address":"x@example.net","scope":"Bad Scope"}'
expect_api 422
t_expect_eq "$(jget 'd["field"]')" scope "field"
api POST /v1/suppressions "key=$K_ALL" 'body={"address":"x@example.net","detail":"a\nb"}'
expect_api 422
t_expect_eq "$(jget 'd["field"]')" detail "field"
api DELETE /v1/suppressions/s@example.net "key=$K_ALL"
expect_api 404
api 'DELETE' '/v1/suppressions/s@example.net?scope=news' "key=$K_ALL"
expect_api 200
t_expect_eq "$(audit_rows "action like 'suppression.%' and target = 's@example.net news'")" 2 "add and remove rows"

t_case "the CLI's changes write audit rows as cli; postmux audit shows them"
$PMX tester add Acme cli@example.net >/dev/null
t_expect_eq "$(t_psql "select api_key_id from audit_log where action = 'tester.add' and target = 'cli@example.net'")" cli "actor"
t_run "$PMX" audit --workspace Acme --json
t_expect_rc 0
t_expect_match "$T_OUT" '"action": "tester.add"' "json"
t_expect_match "$T_OUT" '"api_key_id": "cli"' "cli actor"
t_run "$PMX" audit --since 1h
t_expect_rc 0
t_expect_match "$T_OUT" "^AT +BY +WORKSPACE +ACTION +TARGET" "table head"
t_expect_match "$T_OUT" "$ALL_ID +$ACME +suppression.remove +s@example.net news" "api row"
t_run "$PMX" audit --since yesterday
t_expect_rc 1

# ---- API keys --------------------------------------------------------------------------------------
t_case "API keys: create shows the key once (only its hash stored), list, revoke, scopes"
api POST /v1/api-keys "key=$K_ALL" 'body={"name":"made by api","scopes":["read"]}'
expect_api 201
NEWKEY=$(jget 'd["key"]')
NEWID=$(jget 'd["id"]')
t_expect_eq "$(t_psql "select encode(hash, 'hex') = encode(sha256(convert_to('$NEWKEY', 'UTF8')), 'hex') and workspace_id = '$ACME' from api_keys where id = '$NEWID'")" t "hash stored"
t_expect_nomatch "$(cat "$DLOG")" "$NEWKEY" "key never logged"
api GET /v1/stats "key=$NEWKEY"
expect_api 200
api GET /v1/api-keys "key=$K_READ"
expect_api 200
t_expect_match "$(jget '[k["id"] for k in d["api_keys"]]')" "$NEWID" "listed"
t_expect_nomatch "$T_OUT" "$NEWKEY" "list never shows keys"
api POST /v1/api-keys "key=$K_ALL" 'body={"name":"x","scopes":["admin"]}'
expect_api 422
t_expect_eq "$(jget 'd["field"]')" scopes "field"
api POST /v1/api-keys "key=$K_ALL" 'body={"name":""}'
expect_api 422
t_expect_eq "$(jget 'd["field"]')" name "field"
api DELETE "/v1/api-keys/$ORG_ID" "key=$K_ALL"
expect_api 404
api DELETE "/v1/api-keys/$NEWID" "key=$K_BETA"
expect_api 404
api DELETE "/v1/api-keys/$NEWID" "key=$K_ALL"
expect_api 200
t_expect_eq "$(jget 'd["revoked"]')" True "revoked"
t_wait_for 15 "[[ \$($PY $PMX_ROOT/tests/tools/api_check.py $HPORT $SPEC GET /v1/stats key=$NEWKEY | head -n 1) == 401 ]]"
t_expect_eq "$(audit_rows "action in ('apikey.create', 'apikey.revoke') and target = '$NEWID'")" 2 "audit"

t_case "an organization key without X-Workspace-Id manages organization keys"
api POST /v1/api-keys "key=$K_ORG" 'body={"name":"org2","scopes":["read","manage"]}'
expect_api 201
t_expect_eq "$(jget 'd["workspace_id"]')" None "organization key"
api GET /v1/api-keys "key=$K_ORG"
expect_api 200
t_expect_eq "$(jget 'sorted(set(str(k["workspace_id"]) for k in d["api_keys"]))')" "['None']" "only org keys"
t_expect_eq "$(t_psql "select count(*) from audit_log where action = 'apikey.create' and workspace_id is null and api_key_id = '$ORG_ID'")" 1 "audit: organization"

# ---- messages, events, stats ---------------------------------------------------------------------
t_case "GET /v1/messages/{id}: per-recipient status of a message sent through the API"
api POST /v1/emails "key=$K_ALL" 'body={"from":"n@acme.test","to":["a@example.net","b@example.net"],"subject":"read me","text":"x"}'
expect_api 202
ENTRY=$(jget 'd["id"]')
t_wait_for 20 "[[ \$(t_psql \"select count(*) from recipients r join messages m on m.id = r.message_id where m.job_id = '$ENTRY' and r.status = 'sent'\") == 2 ]]"
api GET "/v1/messages/$ENTRY" "key=$K_READ"
expect_api 200
t_expect_eq "$(jget '[(r["address"], r["status"], r["attempts"]) for r in d["recipients"]]')" \
    "[('a@example.net', 'sent', 1), ('b@example.net', 'sent', 1)]" "recipients"
t_expect_eq "$(jget 'd["subject"]')" "read me" "subject"
MSGID=$(jget 'd["message_id"]')
api GET "/v1/messages/$MSGID" "key=$K_READ"
expect_api 200
api GET "/v1/messages/$ENTRY" "key=$K_BETA"
expect_api 404
api GET "/v1/messages/1-1" "key=$K_READ"
expect_api 404

t_case "GET /v1/events: type filter, cursor paging to the end, bad arguments 400 naming them"
api GET "/v1/events?type=message.sent&limit=1" "key=$K_READ"
expect_api 200
t_expect_eq "$(jget 'len(d["events"])')" 1 "one per page"
NEXT=$(jget 'd["next"]')
FIRST=$(jget 'd["events"][0]["id"]')
t_expect_match "$NEXT" '^evt_[0-9]+$' "next cursor"
api GET "/v1/events?type=message.sent&limit=1&after=$NEXT" "key=$K_READ"
expect_api 200
SECOND=$(jget 'd["events"][0]["id"]')
t_expect_eq "$([[ $SECOND != "$FIRST" ]] && echo differ)" differ "page 2 is another event"
t_expect_eq "$(jget 'd["events"][0]["recipient"]')" b@example.net "in id order"
api GET "/v1/events?type=message.sent&limit=1&after=$(jget 'd["next"]')" "key=$K_READ"
expect_api 200
t_expect_eq "$(jget 'len(d["events"]), d["next"]')" "(0, None)" "the end"
api GET "/v1/events?limit=1000" "key=$K_BETA"
expect_api 200
t_expect_eq "$(jget 'len(d["events"])')" 0 "Beta sees none of Acme's"
api GET "/v1/events?limit=0" "key=$K_READ"
expect_api 400
t_expect_eq "$(jget 'd["field"]')" limit "field"
api GET "/v1/events?after=x" "key=$K_READ"
expect_api 400
t_expect_eq "$(jget 'd["field"]')" after "field"
api GET "/v1/events?since=soon" "key=$K_READ"
expect_api 400
t_expect_eq "$(jget 'd["field"]')" since "field"

t_case "GET /v1/stats: the counts postmux stats shows for the workspace"
api GET "/v1/stats?since=24h" "key=$K_READ"
expect_api 200
t_expect_eq "$(jget 'd["recipients"]["sent"]')" 2 "sent recipients"
t_expect_eq "$(jget 'd["events"]["message.sent"]')" 2 "sent events"
t_run "$PMX" stats --workspace Acme --json
t_expect_match "$T_OUT" '"sent": 2' "the CLI agrees"
api GET "/v1/stats?since=all" "key=$K_READ"
expect_api 200
t_expect_eq "$(jget 'd["since"]')" None "all time"
api GET "/v1/stats" "key=$K_BETA"
expect_api 200
t_expect_eq "$(jget 'd["recipients"]["sent"]')" 0 "Beta's own counts"

# ---- workspaces -------------------------------------------------------------------------------------
t_case "workspaces: an organization key lists and creates; a workspace key sees only its own"
api GET /v1/workspaces "key=$K_ORG"
expect_api 200
t_expect_eq "$(jget 'sorted(w["name"] for w in d["workspaces"])')" "['Acme', 'Beta']" "all"
api GET /v1/workspaces "key=$K_READ"
expect_api 200
t_expect_eq "$(jget '[w["id"] for w in d["workspaces"]]')" "['$ACME']" "own only"
api POST /v1/workspaces "key=$K_ALL" 'body={"name":"Gamma"}'
expect_api 403
api POST /v1/workspaces "key=$K_ORG" 'body={"name":"Gamma","website":"https://gamma.example"}'
expect_api 201
GAMMA=$(jget 'd["id"]')
t_expect_eq "$(t_psql "select name || ' ' || website from workspaces where id = '$GAMMA'")" \
    "Gamma https://gamma.example" "row"
t_expect_eq "$(t_psql "select api_key_id || ' ' || action || ' ' || target from audit_log where workspace_id = '$GAMMA'")" \
    "$ORG_ID workspace.create Gamma" "audit"
api POST /v1/workspaces "key=$K_ORG" 'body={"name":"Gamma"}'
expect_api 409
api POST /v1/workspaces "key=$K_ORG" 'body={"name":"ws_aaaaaaaaaaaaaaaa"}'
expect_api 422
t_expect_eq "$(jget 'd["field"]')" name "id-shaped name: field"
api POST /v1/workspaces "key=$K_ORG" 'body={"name":"Delta","website":"ftp://x"}'
expect_api 422
t_expect_eq "$(jget 'd["field"]')" website "field"
api POST /v1/workspaces "key=$K_ORG" 'body={"name":"Delta\r\nX-Evil: 1"}'
expect_api 422
t_expect_eq "$(jget 'd["field"]')" name "control characters: field"

t_case "workspaces: GET and PATCH one; another workspace's is 404"
api GET "/v1/workspaces/$ACME" "key=$K_READ"
expect_api 200
t_expect_eq "$(jget 'd["rate"], d["test_mode"]')" "('unlimited', False)" "defaults"
api GET "/v1/workspaces/$BETA" "key=$K_READ"
expect_api 404
api PATCH "/v1/workspaces/$BETA" "key=$K_ALL" 'body={"burst":5}'
expect_api 404
api PATCH "/v1/workspaces/$ACME" "key=$K_ORG" 'body={"rate":"3000/m","burst":20,"daily_quota":1000,"test_mode":true,"catch_all":"sink@example.net","max_bounce_rate":"5%"}'
expect_api 200
t_expect_eq "$(jget 'd["rate"], d["burst"], d["daily_quota"], d["test_mode"], d["catch_all"], d["max_bounce_rate"]')" \
    "('50/s', 20, 1000, True, 'sink@example.net', '5%')" "applied"
t_run "$PMX" workspace show Acme
t_expect_match "$T_OUT" 'rate: +50/s' "the CLI sees it"
t_expect_eq "$(t_psql "select target from audit_log where action = 'workspace.set' and api_key_id = '$ORG_ID'")" \
    "rate,burst,daily_quota,test_mode,catch_all,max_bounce_rate" "audit names the settings"
BEFORE=$(t_psql "select rate_per_second || ' ' || burst from workspaces where id = '$ACME'")
api PATCH "/v1/workspaces/$ACME" "key=$K_ORG" 'body={"burst":7,"rate":"5/fortnight"}'
expect_api 422
t_expect_eq "$(jget 'd["field"]')" rate "field"
api PATCH "/v1/workspaces/$ACME" "key=$K_ORG" 'body={"burst":7,"color":"red"}'
expect_api 422
t_expect_eq "$(jget 'd["field"]')" color "unknown member"
api PATCH "/v1/workspaces/$ACME" "key=$K_ORG" 'body={"burst":0}'
expect_api 422
api PATCH "/v1/workspaces/$ACME" "key=$K_ORG" 'body={"test_mode":"on"}'
expect_api 422
api PATCH "/v1/workspaces/$ACME" "key=$K_ORG" 'body={"catch_all":"a@example.net\r\nBcc: evil@example.net"}'
expect_api 422
t_expect_eq "$(jget 'd["field"]')" catch_all "header injection: field"
api PATCH "/v1/workspaces/$ACME" "key=$K_ORG" 'body={}'
expect_api 422
t_expect_eq "$(t_psql "select rate_per_second || ' ' || burst from workspaces where id = '$ACME'")" \
    "$BEFORE" "nothing half-applied"
api PATCH "/v1/workspaces/$ACME" "key=$K_ORG" 'body={"rate":null,"daily_quota":null,"test_mode":false,"catch_all":null,"max_bounce_rate":null}'
expect_api 200
t_expect_eq "$(jget 'd["rate"], d["daily_quota"], d["catch_all"], d["max_bounce_rate"]')" \
    "('unlimited', None, None, 'default')" "null clears"
api PATCH "/v1/workspaces/$ACME" "key=$K_ORG" 'body={"name":"Acme","rate":null,"burst":20,"daily_quota":null,"test_mode":false,"catch_all":null,"suspended":false,"max_bounce_rate":null,"max_complaint_rate":null}'
expect_api 200
t_expect_eq "$(jget 'd["name"], d["burst"], d["max_complaint_rate"]')" "('Acme', 20, 'default')" \
    "all nine members in one PATCH"
api PATCH "/v1/workspaces/$ACME" "key=$K_READ" 'body={"burst":3}'
expect_api 403

t_case "workspaces: a workspace key may PATCH its name, test mode and catch-all; the limits, pool and route are the organization's (403)"
api PATCH "/v1/workspaces/$ACME" "key=$K_ALL" 'body={"name":"Acme","test_mode":true,"catch_all":"dev@example.net"}'
expect_api 200
t_expect_eq "$(jget 'd["test_mode"], d["catch_all"]')" "(True, 'dev@example.net')" "applied"
BEFORE=$(t_psql "select rate_per_second || ' ' || burst || ' ' || coalesce(daily_quota, -1) || ' ' || (suspended_at is null) || ' ' || coalesce(pool, '-') || coalesce(route, '-') from workspaces where id = '$ACME'")
for m in '"rate":"1000/s"' '"burst":999' '"daily_quota":null' '"suspended":false' '"max_bounce_rate":"none"' \
         '"max_complaint_rate":null' '"pool":"blue"' '"route":"smtp://127.0.0.1:25?tls=none"' '"route_password":"x"'; do
    api PATCH "/v1/workspaces/$ACME" "key=$K_ALL" "body={\"test_mode\":false,$m}"
    expect_api 403
    t_expect_eq "$(jget 'd["field"]')" "$(sed -E 's/^"([a-z_]+)".*/\1/' <<<"$m")" "$m: field"
done
t_expect_eq "$(t_psql "select rate_per_second || ' ' || burst || ' ' || coalesce(daily_quota, -1) || ' ' || (suspended_at is null) || ' ' || coalesce(pool, '-') || coalesce(route, '-') from workspaces where id = '$ACME'")" \
    "$BEFORE" "nothing changed by the refused ones"
api GET "/v1/workspaces/$ACME" "key=$K_ALL"
expect_api 200
t_expect_eq "$(jget 'd["test_mode"]')" True "test_mode not half-applied"
api PATCH "/v1/workspaces/$ACME" "key=$K_ORG" 'body={"test_mode":false,"catch_all":null}'
expect_api 200

# Opens workspaces.route_password_enc of workspace $1 as the worker does (routing/wsroute.h):
# 0x01 | nonce 12 | ciphertext | tag 16, AES-256-GCM under the master key with additional
# data 0x01 + "postmux-route-v1:<workspace id>:<route>"; $2 = the route to bind.
open_route_password() {
    local hex
    hex=$(t_psql "select encode(route_password_enc, 'hex') from workspaces where id = '$1'")
    HEX="$hex" KEYFILE="$T_MASTER_KEY" BIND="postmux-route-v1:$1:$2" "$PY" - <<'EOF2'
import base64, os, sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
blob = bytes.fromhex(os.environ["HEX"])
assert blob[0] == 1, blob[:1]
key = base64.b64decode(open(os.environ["KEYFILE"]).read().strip())
try:
    print(AESGCM(key).decrypt(blob[1:13], blob[13:], b"\x01" + os.environ["BIND"].encode()).decode())
except Exception as e:
    print("cannot open: %s" % type(e).__name__)
EOF2
}

t_case "workspaces: PATCH pool, route and route_password (sealed, never answered)"
RPORT=$(pmx_svc_free_port)
ROUTE="smtp://alice@127.0.0.1:$RPORT"
api PATCH "/v1/workspaces/$BETA" "key=$K_ORG" 'body={"pool":"blue"}'
expect_api 200
t_expect_eq "$(jget 'd["pool"]')" blue "answered"
api GET "/v1/workspaces/$BETA" "key=$K_BETA"
expect_api 200
t_expect_eq "$(jget 'd["pool"], d["route"], d["route_password"]')" "('blue', 'default', False)" "GET shows the pool"
t_expect_eq "$(t_psql "select pool from workspaces where id = '$BETA'")" blue "stored"
api PATCH "/v1/workspaces/$BETA" "key=$K_ORG" 'body={"burst":9,"pool":"nosuch"}'
expect_api 422
t_expect_eq "$(jget 'd["field"]')" pool "unknown pool: field"
t_expect_match "$(jget 'd["detail"]')" 'no \[pool nosuch\]' "detail names it"
t_expect_nomatch "$(jget 'd["detail"]')" "$T_CONF" "the config's path is not answered"
api PATCH "/v1/workspaces/$BETA" "key=$K_ORG" 'body={"pool":"bad name"}'
expect_api 422
t_expect_eq "$(jget 'd["field"]')" pool "malformed pool: field"
api PATCH "/v1/workspaces/$BETA" "key=$K_ORG" "body={\"route\":\"$ROUTE\",\"route_password\":\"pw-Secr3t-api\"}"
expect_api 200
t_expect_eq "$(jget 'd["route"], d["route_password"]')" "('$ROUTE', True)" "answered without the password"
t_expect_nomatch "$T_OUT" 'Secr3t' "the password in the PATCH answer"
api GET "/v1/workspaces/$BETA" "key=$K_BETA"
expect_api 200
t_expect_eq "$(jget 'd["pool"], d["route"], d["route_password"]')" "('blue', '$ROUTE', True)" "GET shows the route"
t_expect_nomatch "$T_OUT" 'Secr3t' "the password in the GET answer"
t_run "$PMX" workspace show Beta
t_expect_match "$T_OUT" "^route: +$ROUTE\$" "the CLI sees the route"
t_expect_match "$T_OUT" '^route_password: set$' "... and the password as set"
t_expect_eq "$(t_psql "select position(convert_to('pw-Secr3t-api', 'UTF8') in route_password_enc)
                       from workspaces where id = '$BETA'")" 0 "plaintext in route_password_enc"
t_expect_eq "$(open_route_password "$BETA" "$ROUTE")" pw-Secr3t-api "sealed as the worker opens it"
t_expect_match "$(open_route_password "$BETA" "smtp://alice@127.0.0.2:$RPORT")" '^cannot open' \
    "bound to the route"
t_expect_eq "$(t_psql "select target from audit_log where action = 'workspace.set' and workspace_id = '$BETA' order by id desc limit 1")" \
    "route,route_password" "audit names the settings, not the password"
t_expect_eq "$(t_psql "select count(*) from audit_log where position('Secr3t' in target) > 0")" \
    0 "the password in audit_log"
t_expect_nomatch "$(cat "$DLOG")" 'Secr3t' "the password in postmuxd's log"
BEFORE=$(t_psql "select route || ' ' || encode(route_password_enc, 'hex') from workspaces where id = '$BETA'")
api PATCH "/v1/workspaces/$BETA" "key=$K_ORG" 'body={"route":"smtp://alice@127.0.0.1:99999","route_password":"x"}'
expect_api 422
t_expect_eq "$(jget 'd["field"]')" route "bad route: field"
api PATCH "/v1/workspaces/$BETA" "key=$K_ORG" 'body={"route":"ftp://relay.example"}'
expect_api 422
t_expect_eq "$(jget 'd["field"]')" route "bad scheme: field"
api PATCH "/v1/workspaces/$BETA" "key=$K_ORG" "body={\"route\":\"$ROUTE\"}"
expect_api 422
t_expect_eq "$(jget 'd["field"]')" route "a user without route_password: field"
api PATCH "/v1/workspaces/$BETA" "key=$K_ORG" 'body={"route_password":"x"}'
expect_api 422
t_expect_eq "$(jget 'd["field"]')" route_password "a password without route: field"
api PATCH "/v1/workspaces/$BETA" "key=$K_ORG" 'body={"route":"mx","route_password":"x"}'
expect_api 422
t_expect_eq "$(jget 'd["field"]')" route_password "a password for a route without a user: field"
api PATCH "/v1/workspaces/$BETA" "key=$K_ORG" "body={\"route\":\"$ROUTE\",\"route_password\":\"a\\nb\"}"
expect_api 422
t_expect_eq "$(jget 'd["field"]')" route_password "a password of two lines: field"
t_expect_eq "$(t_psql "select route || ' ' || encode(route_password_enc, 'hex') from workspaces where id = '$BETA'")" \
    "$BEFORE" "nothing written by the refused ones"
api PATCH "/v1/workspaces/$BETA" "key=$K_ORG" 'body={"route":null,"pool":null}'
expect_api 200
t_expect_eq "$(jget 'd["pool"], d["route"], d["route_password"]')" "('default', 'default', False)" "null: back to default"
t_expect_eq "$(t_psql "select coalesce(pool, '-') || coalesce(route, '-') || (route_password_enc is null) from workspaces where id = '$BETA'")" \
    "--true" "stored as default, the password dropped"

# ---- webhooks -------------------------------------------------------------------------------------
t_case "webhooks: add through the API; the endpoint gets events signed with the secret shown once"
WH_LOG=$T_DIR/wh.log
"$PY" "$PMX_ROOT/tests/tools/webhook_receiver.py" --port-file "$T_DIR/wh.port" --log "$WH_LOG" &
t_wait_for 10 "[[ -s $T_DIR/wh.port ]]"
WH_PORT=$(cat "$T_DIR/wh.port")
api POST /v1/webhooks "key=$K_ALL" "body={\"url\":\"http://127.0.0.1:$WH_PORT/hook\",\"events\":[\"message.sent\"]}"
expect_api 201
WH_ID=$(jget 'd["id"]')
WH_SECRET=$(jget 'd["secret"]')
t_expect_eq "$(t_psql "select workspace_id || ' ' || array_to_string(events, ',') || ' ' || (secret like 'v1:%') from webhooks where id = '$WH_ID'")" \
    "$ACME message.sent true" "row, secret sealed"
t_expect_eq "$(t_psql "select count(*) from webhooks where secret like '%$WH_SECRET%'")" 0 "secret not stored in clear"
api POST /v1/webhooks "key=$K_ALL" "body={\"url\":\"http://127.0.0.1:$WH_PORT/hook\"}"
expect_api 409
api POST /v1/webhooks "key=$K_ALL" 'body={"url":"http://user:pw@example.net/"}'
expect_api 422
t_expect_eq "$(jget 'd["field"]')" url "field"
api POST /v1/webhooks "key=$K_ALL" 'body={"url":"https://example.net/","events":["message.nope"]}'
expect_api 422
t_expect_eq "$(jget 'd["field"]')" events "field"
api POST /v1/emails "key=$K_ALL" 'body={"from":"n@acme.test","to":"hooked@example.net","subject":"hooked","text":"x"}'
expect_api 202
t_wait_for 30 "grep -q hooked@example.net $WH_LOG"
t_run "$PY" -c '
import hashlib, hmac, json, sys
secret = sys.argv[2].encode()
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "hooked@example.net" not in r["body"]: continue
    sig = dict(p.split("=", 1) for p in r["headers"]["postmux-signature"].split(","))
    want = hmac.new(secret, (sig["t"] + "." + r["body"]).encode(), hashlib.sha256).hexdigest()
    print("good" if hmac.compare_digest(want, sig["v1"]) else "bad")
    break' "$WH_LOG" "$WH_SECRET"
t_expect_eq "$T_OUT" good "signature made with the API's secret"

t_case "webhooks: list, another workspace's 404, organization-wide with an organization key, remove"
api GET /v1/webhooks "key=$K_READ"
expect_api 200
t_expect_eq "$(jget '[h["id"] for h in d["webhooks"]]')" "['$WH_ID']" "listed"
t_expect_nomatch "$T_OUT" "$WH_SECRET" "no secret in the list"
api DELETE "/v1/webhooks/$WH_ID" "key=$K_BETA"
expect_api 404
api POST /v1/webhooks "key=$K_ORG" 'body={"url":"https://org.example.net/hook"}'
expect_api 201
ORG_WH=$(jget 'd["id"]')
t_expect_eq "$(jget 'd["workspace_id"]')" None "organization-wide"
api DELETE "/v1/webhooks/$ORG_WH" "key=$K_ALL"
expect_api 404
api DELETE "/v1/webhooks/$ORG_WH" "key=$K_ORG"
expect_api 200
api DELETE "/v1/webhooks/$WH_ID" "key=$K_ALL"
expect_api 200
t_expect_eq "$(audit_rows "action in ('webhook.add', 'webhook.remove')")" 4 "audit rows"
$PMX webhook add --workspace Beta --url https://beta.example.net/h >/dev/null 2>&1
t_expect_eq "$(audit_rows "action = 'webhook.add' and api_key_id = 'cli'")" 1 "the CLI's add"

# ---- domains ----------------------------------------------------------------------------------------
t_case "domains: list with keys, another workspace's 404, remove with an audit row"
$PMX domain add Beta beta.test --algorithm ed25519 >/dev/null
$PMX domain add Acme gone.test --algorithm ed25519 >/dev/null
api GET /v1/domains "key=$K_READ"
expect_api 200
t_expect_eq "$(jget '[(x["domain"], x["verified"], [k["algorithm"] for k in x["keys"]]) for x in d["domains"]]')" \
    "[('acme.test', True, ['ed25519-sha256']), ('gone.test', False, ['ed25519-sha256'])]" "Acme's only"
t_expect_eq "$(jget 'd["domains"][0]["keys"][0]["dns_name"]')" "pmx._domainkey.acme.test" "dns name"
api DELETE /v1/domains/beta.test "key=$K_ALL"
expect_api 404
api DELETE /v1/domains/bad..name "key=$K_ALL"
expect_api 400
t_expect_eq "$(jget 'd["field"]')" domain "field"
api DELETE /v1/domains/GONE.test "key=$K_ALL"
expect_api 200
t_expect_eq "$(t_psql "select count(*) from domains where domain in ('gone.test', 'beta.test')")" 1 "removed, Beta's kept"
t_expect_eq "$(audit_rows "action = 'domain.remove' and target = 'gone.test' and api_key_id = '$ALL_ID'")" 1 "audit"

t_case "the daemon logged no error and never a key"
t_expect_nomatch "$(grep -E 'level=error|ERROR' "$DLOG")" . "no error lines"
t_expect_nomatch "$(cat "$DLOG")" "$K_ALL" "keys never logged"

t_case "a client that goes away while its statement runs: the worker stays well"
t_run "$PY" -c '
import socket, sys
for i in range(20):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    s.sendall(("GET /v1/events?limit=1000 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n" % sys.argv[2]).encode())
    s.close()
print("sent")' "$HPORT" "$K_READ"
t_expect_eq "$T_OUT" sent "20 abandoned requests"
api GET /v1/stats "key=$K_READ"
expect_api 200
t_stop_postmuxd "$DPID"
t_done
