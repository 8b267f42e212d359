#!/usr/bin/env bash
# `postmux webhook add|list|remove`: the secret is printed once and stored only
# sealed under the master key (the documented v1 format opens with the master
# key and the row's id, and with nothing else); URLs and event names are
# checked and a refused add writes nothing; listings never show the secret;
# remove refuses unknown ids.
source "$(dirname "$0")/lib.sh"
t_setup

t_run $PMX workspace create Acme
ACME=$T_OUT
t_run $PMX workspace create Globex
GLOBEX=$T_OUT
nhooks() { t_psql "select count(*) from webhooks"; }
json_get() { printf '%s' "$1" | /usr/bin/python3 -c "import json,sys; j=json.load(sys.stdin); print($2)"; }

# Opens webhooks.secret of webhook $1 as the sender would (cli/webhook.c's
# format): "v1:" + base64(0x01 | nonce 12 | ciphertext | tag 16), AES-256-GCM
# with additional data 0x01 + "postmux-webhook-v1:" + id. $2 = the id to bind.
open_secret() {
    local stored
    stored=$(t_psql "select secret from webhooks where id = '$1'")
    STORED="$stored" KEYFILE="$T_MASTER_KEY" BIND="$2" /usr/bin/python3 - <<'EOF'
import base64, os, sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
s = os.environ["STORED"]
assert s.startswith("v1:"), s[:10]
blob = base64.b64decode(s[3:], validate=True)
assert blob[0] == 1
key = base64.b64decode(open(os.environ["KEYFILE"]).read().strip())
aad = b"\x01" + b"postmux-webhook-v1:" + os.environ["BIND"].encode()
try:
    print(AESGCM(key).decrypt(blob[1:13], blob[13:], aad).decode())
except Exception as e:
    print("cannot open: %s" % type(e).__name__)
    sys.exit(1)
EOF
}

t_case "webhook add: the secret alone on stdout, the id on stderr, the row stored"
t_run $PMX webhook add --workspace Acme --url https://hooks.example.com/postmux --events message.sent,message.bounced
t_expect_rc 0
t_expect_match "$T_OUT" '^whsec_[A-Za-z0-9_-]{43}$' "secret"
t_expect_eq "$(printf '%s\n' "$T_OUT" | wc -l)" 1 "stdout lines"
S1=$T_OUT
t_expect_match "$T_ERR" "^wh_[a-z2-7]{16}: $ACME webhook created" "id on stderr"
ID1=$(grep -oE 'wh_[a-z2-7]{16}' <<<"$T_ERR" | head -n1)
t_expect_eq "$(t_psql "select workspace_id || '|' || url || '|' || array_to_string(events, ',') from webhooks where id = '$ID1'")" \
    "$ACME|https://hooks.example.com/postmux|message.sent,message.bounced" "stored row"

t_case "webhook add: the secret is stored sealed, and opens with the master key and the id"
t_expect_match "$(t_psql "select secret from webhooks where id = '$ID1'")" '^v1:[A-Za-z0-9+/]+=*$' "stored form"
t_expect_eq "$(t_psql "select count(*) from webhooks where secret like '%' || '${S1#whsec_}' || '%'")" 0 \
    "the secret text is not in the row"
t_expect_eq "$(open_secret "$ID1" "$ID1")" "$S1" "decrypted secret = the printed one"
other=$(open_secret "$ID1" "wh_aaaaaaaaaaaaaaaa")
t_expect_eq "$other" "cannot open: InvalidTag" "bound to its row"

t_case "webhook add: organization-wide, all events by default; HTTP scheme in capitals"
t_run $PMX webhook add --url HTTP://127.0.0.1:8080/hook?x=1
t_expect_rc 0
S2=$T_OUT
ID2=$(grep -oE 'wh_[a-z2-7]{16}' <<<"$T_ERR" | head -n1)
t_expect_match "$T_ERR" 'organization-wide webhook created' "stderr"
t_expect_eq "$(t_psql "select coalesce(workspace_id, 'NULL') || '|' || url || '|' || cardinality(events) from webhooks where id = '$ID2'")" \
    "NULL|http://127.0.0.1:8080/hook?x=1|0" "org row, scheme lowered, no event filter"
t_expect_eq "$(open_secret "$ID2" "$ID2")" "$S2" "org secret opens"
[[ $S1 != "$S2" ]] || t_fail "two secrets are equal"

t_case "webhook add: IPv6 host, every event named, another workspace may use the same URL"
t_run $PMX webhook add --workspace "$GLOBEX" --url 'https://[::1]:8443/x' \
    --events message.queued,message.sent,message.deferred,message.bounced,message.rejected,message.suppressed
t_expect_rc 0
t_run $PMX webhook add --workspace "$GLOBEX" --url https://hooks.example.com/postmux
t_expect_rc 0
ID4=$(grep -oE 'wh_[a-z2-7]{16}' <<<"$T_ERR" | head -n1)
t_expect_eq "$(nhooks)" 4 "rows"

t_case "webhook add: the same URL twice in one scope is refused"
t_run $PMX webhook add --workspace "$ACME" --url https://hooks.example.com/postmux
t_expect_rc 1
t_expect_eq "$T_ERR" "postmux: workspace $ACME already has a webhook for https://hooks.example.com/postmux" "error"
t_expect_eq "$T_OUT" "" "no secret printed"
t_run $PMX webhook add --url http://127.0.0.1:8080/hook?x=1
t_expect_rc 1
t_expect_match "$T_ERR" '^postmux: an organization-wide webhook for .* already exists$' "org duplicate"
t_expect_eq "$(nhooks)" 4 "rows"

t_case "webhook add: bad URLs and events are refused with one line, nothing written"
bad() {
    local want=$1
    shift
    t_run $PMX webhook add "$@"
    t_expect_rc 1
    t_expect_eq "$(printf '%s\n' "$T_ERR" | wc -l)" 1 "one line for: $*"
    t_expect_match "$T_ERR" "^postmux: $want" "message for: $*"
    t_expect_eq "$T_OUT" "" "no secret for: $*"
}
bad '--url must start with http:// or https://' --url ftp://example.com/x
bad '--url must start with http:// or https://' --url example.com/x
bad '--url has no host' --url http://
bad '--url has no host' --url https:///path
bad '--url has no host' --url https://:443/path
bad '--url contains a space' --url 'https://exa mple.com/'
bad '--url contains a space' --url 'https://example.com/a b'
bad '--url contains a control character' --url "$(printf 'https://example.com/\tx')"
bad '--url contains a control character' --url "$(printf 'https://example.com/\r\nX-Evil: 1')"
bad '--url contains a non-ASCII character' --url 'https://exämple.com/'
bad '--url must not contain user:password@' --url https://user:pw@example.com/
bad '--url has a bad port' --url https://example.com:99999/
bad '--url has a bad port' --url https://example.com:0/
bad '--url has a bad port' --url https://example.com:x/
bad "--url has a bad character '!' in its host" --url 'https://exa!mple.com/'
bad '--url has a bad host name' --url https://a..b/
bad '--url has a bad IPv6 host' --url 'https://[zz::1]/'
bad '--url is empty' --url ''
bad "unknown event 'message.opened'" --url https://x.example/ --events message.sent,message.opened
bad "unknown event 'sent'" --url https://x.example/ --events sent
bad "event 'message.sent' given twice" --url https://x.example/ --events message.sent,message.sent
bad '--events has an empty name' --url https://x.example/ --events message.sent,
bad 'unknown workspace: Nope' --workspace Nope --url https://x.example/
t_expect_eq "$(nhooks)" 4 "rows after refusals"

t_case "webhook add: usage errors exit 2"
t_run $PMX webhook add --workspace "$ACME"
t_expect_rc 2
t_expect_match "$T_ERR" '^postmux: webhook add needs --url' "no --url"
t_run $PMX webhook add --url https://x.example/ extra
t_expect_rc 2
t_run $PMX webhook frobnicate
t_expect_rc 2
t_run $PMX webhook
t_expect_rc 2
t_expect_eq "$(nhooks)" 4 "rows"

t_case "webhook add: no master key, no webhook"
cp "$T_MASTER_KEY" "$T_DIR/master.key.saved"
printf 'short\n' >"$T_MASTER_KEY"
t_run $PMX webhook add --workspace "$ACME" --url https://other.example/
t_expect_rc 1
t_expect_match "$T_ERR" '^postmux: master key file .*: must hold 32 bytes' "error"
t_expect_eq "$T_OUT" "" "no secret printed"
t_expect_eq "$(nhooks)" 4 "rows"
cp "$T_DIR/master.key.saved" "$T_MASTER_KEY"

t_case "webhook list: text and JSON, never the secret"
t_run $PMX webhook list
t_expect_rc 0
t_expect_match "$(head -n1 <<<"$T_OUT")" '^ID +WORKSPACE +URL +EVENTS +CREATED$' "header"
t_expect_eq "$(tail -n +2 <<<"$T_OUT" | wc -l)" 4 "rows"
t_expect_match "$T_OUT" "$ID1 +$ACME +https://hooks.example.com/postmux +message.sent,message.bounced +[0-9-]{10}T" "acme row"
t_expect_match "$T_OUT" "$ID2 +\\(org\\) +http://127.0.0.1:8080/hook\\?x=1 +all " "org row"
t_expect_nomatch "$T_OUT" 'whsec_|v1:' "no secret"
t_run $PMX webhook list --json
t_expect_rc 0
t_expect_nomatch "$T_OUT" 'whsec_|v1:|secret' "no secret in JSON"
t_expect_eq "$(json_get "$T_OUT" "len(j)")" 4 "JSON rows"
t_expect_eq "$(json_get "$T_OUT" "[(h['id'], h['workspace_id'], h['url'], h['events']) for h in j if h['id'] == '$ID1']")" \
    "[('$ID1', '$ACME', 'https://hooks.example.com/postmux', ['message.sent', 'message.bounced'])]" "JSON acme row"
t_expect_eq "$(json_get "$T_OUT" "[(h['workspace_id'], h['events']) for h in j if h['id'] == '$ID2']")" \
    "[(None, [])]" "JSON org row"
t_expect_eq "$(json_get "$T_OUT" "sorted(j[0].keys())")" \
    "['created_at', 'events', 'id', 'url', 'workspace_id']" "JSON fields"

t_case "webhook list WS: only that workspace's webhooks"
t_run $PMX webhook list Globex --json
t_expect_rc 0
t_expect_eq "$(json_get "$T_OUT" "(sorted(set(h['workspace_id'] for h in j)), len(j))")" "(['$GLOBEX'], 2)" "Globex"
t_run $PMX webhook list "$ACME"
t_expect_eq "$(tail -n +2 <<<"$T_OUT" | wc -l)" 1 "Acme rows"
t_run $PMX webhook list Nope
t_expect_rc 1
t_expect_eq "$T_ERR" "postmux: unknown workspace: Nope" "unknown workspace"

t_case "webhook remove: removes one; unknown ids are refused"
t_run $PMX webhook remove "$ID4"
t_expect_rc 0
t_expect_eq "$(t_psql "select count(*) from webhooks where id = '$ID4'")" 0 "gone"
t_expect_eq "$(nhooks)" 3 "others kept"
t_run $PMX webhook remove "$ID4"
t_expect_rc 1
t_expect_eq "$T_ERR" "postmux: unknown webhook: $ID4" "removed twice"
t_run $PMX webhook remove wh_nothinghere
t_expect_rc 1
t_expect_eq "$T_ERR" "postmux: unknown webhook: wh_nothinghere" "unknown"
t_run $PMX webhook remove
t_expect_rc 2
t_expect_eq "$(nhooks)" 3 "rows"

t_case "webhook: a workspace's webhooks go with it"
t_psql "delete from workspaces where id = '$GLOBEX'" >/dev/null
t_expect_eq "$(t_psql "select count(*) from webhooks where workspace_id = '$GLOBEX'")" 0 "cascade"

t_done
