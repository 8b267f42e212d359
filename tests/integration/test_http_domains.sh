#!/usr/bin/env bash
# API v1's POST /v1/domains and POST /v1/domains/{domain}/verify (docs/http.md)
# against the real postmuxd: the records returned are those `postmux domain show`
# prints and the DB holds, the private keys are stored sealed and never answered,
# 409 for a domain taken (here or by another workspace), 422 for bad members,
# 403 without the manage scope, audit rows; verify against a real DNS server
# (dnsmasq, through [mx] resolver): 200 and verified when every record is
# published, 422 naming what is missing, 404 for another workspace's domain.
# Every answer is checked against http/openapi.json (tests/tools/api_check.py).
source "$(dirname "$0")/lib.sh"
t_setup
source "$PMX_ROOT/tests/integration/api_lib.sh"
api_listener_conf
t_conf_set inbound hostname mx.postmux.test

ACME=$($PMX workspace create Acme)
BETA=$($PMX workspace create Beta)
$PMX domain add Beta beta.test --algorithm ed25519 >/dev/null
K_READ=$($PMX apikey create --workspace Acme --name read --scopes read 2>/dev/null)
K_ALL=$($PMX apikey create --workspace Acme --name all --scopes read,manage 2>"$T_DIR/all.err")
ALL_ID=$(grep -oE 'key_[a-z2-7]{16}' "$T_DIR/all.err" | head -n 1)

audit_rows() { t_psql "select count(*) from audit_log where $1"; }
# `domain show`'s records as "TYPE NAME VALUE" lines (TXT strings joined).
show_records() {
    $PMX domain show "$1" | sed -n '/^records:/,$p' | tail -n +2 | "$PY" -c '
import re, sys
for line in sys.stdin:
    name, typ, rest = line.rstrip("\n").split(" ", 2)
    if typ == "TXT":
        rest = "".join(s.replace("\\\"", "\"") for s in re.findall(r"\"((?:[^\"\\\\]|\\\\.)*)\"", rest))
    else:
        rest = rest.rstrip(".")
    print(typ, name.rstrip("."), rest)'
}
api_records() { jget '"\n".join("%s %s %s" % (r["type"], r["name"], r["value"]) for r in d["dns_records"])'; }

start_daemon() {
    "$PMXD" -c "$T_CONF" >>"$T_DIR/postmuxd$1.log" 2>&1 &
    DPID=$!
    t_wait_for 20 "[[ \$(curl -s -m 2 -o /dev/null -w '%{http_code}' http://127.0.0.1:$MPORT/healthz) == 200 ]]"
}
start_daemon 1

t_case "POST /v1/domains (default RSA): 201, the records domain show prints, key sealed"
api POST /v1/domains "key=$K_ALL" 'body={"domain":"Acme.TEST"}'
expect_api 201
t_expect_eq "$(jget 'd["domain"], d["workspace_id"], d["verified"], [(k["selector"], k["algorithm"], k["active"]) for k in d["keys"]]')" \
    "('acme.test', '$ACME', False, [('pmx', 'rsa-sha256', True)])" "domain"
t_expect_eq "$(api_records)" "$(show_records acme.test)" "records = domain show"
t_expect_match "$(api_records)" '^MX bounces\.acme\.test 10 mx\.postmux\.test$' "return-path MX"
t_expect_eq "$(jget 'd["dns_records"][0]["value"]')" \
    "postmux-verify=$(t_psql "select verify_token from domains where domain = 'acme.test'")" "token"
t_expect_eq "$(jget 'd["keys"][0]["public_key"]')" \
    "$(t_psql "select public_key from dkim_keys k join domains d on d.id = k.domain_id where d.domain = 'acme.test'")" "public key"
t_expect_nomatch "$T_OUT" 'PRIVATE|private_key' "no private key answered"
t_expect_eq "$(t_psql "select get_byte(private_key_enc, 0), length(private_key_enc) > 1000,
                              position('PRIVATE'::bytea in private_key_enc) from dkim_keys k
                       join domains d on d.id = k.domain_id where d.domain = 'acme.test'")" "1|t|0" "sealed"
t_run $PMX domain show acme.test --check-keys
t_expect_rc 0
t_expect_eq "$T_OUT" "pmx._domainkey.acme.test: OK (rsa-sha256)" "opens with the master key"
t_expect_eq "$(audit_rows "action = 'domain.add' and target = 'acme.test' and api_key_id = '$ALL_ID' and workspace_id = '$ACME'")" 1 "audit"

t_case "POST /v1/domains both + return_path: two keys, the return path's records"
api POST /v1/domains "key=$K_ALL" 'body={"domain":"two.test","algorithm":"both","return_path":"rp.two.test"}'
expect_api 201
t_expect_eq "$(jget '[k["selector"] for k in d["keys"]], d["return_path"]')" \
    "(['pmx', 'pmx-ed25519'], 'rp.two.test')" "keys"
t_expect_eq "$(api_records)" "$(show_records two.test)" "records = domain show"
t_expect_eq "$(jget 'len(d["dns_records"])')" 5 "token, two keys, MX, SPF"
t_run $PMX domain show two.test --check-keys
t_expect_rc 0

t_case "POST /v1/domains refused: taken (409), bad members (422), read key (403); nothing written"
before=$(t_psql "select count(*) from domains")/$(t_psql "select count(*) from dkim_keys")
api POST /v1/domains "key=$K_ALL" 'body={"domain":"beta.test"}'
expect_api 409
t_expect_match "$(jget 'd["detail"]')" 'another workspace' "detail"
api POST /v1/domains "key=$K_ALL" 'body={"domain":"acme.test","algorithm":"ed25519"}'
expect_api 409
api POST /v1/domains "key=$K_ALL" 'body={"domain":"bad..test"}'
expect_api 422
t_expect_eq "$(jget 'd["field"]')" domain "field"
api POST /v1/domains "key=$K_ALL" 'body={"domain":"x.test","algorithm":"dsa"}'
expect_api 422
t_expect_eq "$(jget 'd["field"]')" algorithm "field"
api POST /v1/domains "key=$K_ALL" 'body={"domain":"x.test","return_path":"elsewhere.test"}'
expect_api 422
t_expect_eq "$(jget 'd["field"]')" return_path "field"
api POST /v1/domains "key=$K_ALL" 'body={"algorithm":"rsa"}'
expect_api 422
api POST /v1/domains "key=$K_READ" 'body={"domain":"x.test"}'
expect_api 403
t_expect_eq "$(t_psql "select count(*) from domains")/$(t_psql "select count(*) from dkim_keys")" "$before" "unchanged"
t_expect_eq "$(audit_rows "action = 'domain.add' and api_key_id = '$ALL_ID'")" 2 "two audit rows"

t_case "a client that goes away while keys are made: no harm, the daemon carries on"
curl -s -m 0.01 -o /dev/null -X POST -H "Authorization: Bearer $K_ALL" \
    -H 'Content-Type: application/json' -d '{"domain":"gone.test","algorithm":"both"}' \
    "http://127.0.0.1:$HPORT/v1/domains" || true
api GET /v1/domains "key=$K_READ"
expect_api 200

# ---- verify against dnsmasq ----
kill -TERM "$DPID"
wait "$DPID"
ZONE=$T_DIR/zone.conf
{
    $PMX domain show acme.test | sed -nE 's/^([^ ]+)\. TXT (".*")$/txt-record=\1,\2/p' | sed 's/" "/","/g'
    # two.test: the token only, not the keys.
    $PMX domain show two.test | grep '^_postmux' | sed -nE 's/^([^ ]+)\. TXT (".*")$/txt-record=\1,\2/p'
    echo 'local=/test/'
} >"$ZONE"
DNS_PORT=$(t_dns_start "$ZONE")
t_conf_set mx resolver "127.0.0.1:$DNS_PORT"
start_daemon 2

t_case "verify: every record published -> 200, verified, keys active, audit row"
api POST /v1/domains/acme.test/verify "key=$K_ALL"
expect_api 200
t_expect_eq "$(jget 'd["verified"], [(r["name"], r["ok"]) for r in d["records"]]')" \
    "(True, [('_postmux.acme.test', True), ('pmx._domainkey.acme.test', True)])" "records"
t_expect_eq "$(t_psql "select verified_at is not null from domains where domain = 'acme.test'")" t "verified_at"
t_expect_eq "$(audit_rows "action = 'domain.verify' and target = 'acme.test' and api_key_id = '$ALL_ID'")" 1 "audit"

t_case "verify: keys not published -> 422 naming them, nothing marked"
api POST /v1/domains/two.test/verify "key=$K_ALL" 'body={}'
expect_api 422
t_expect_match "$(jget 'd["detail"]')" 'pmx\._domainkey\.two\.test: no TXT record; pmx-ed25519\._domainkey\.two\.test: no TXT record' "detail"
t_expect_nomatch "$(jget 'd["detail"]')" '_postmux' "the token is fine"
t_expect_eq "$(t_psql "select verified_at is null from domains where domain = 'two.test'")" t "not verified"
t_expect_eq "$(audit_rows "action = 'domain.verify' and target = 'two.test'")" 0 "no audit row"

t_case "the CLI's domain add and verify write their audit rows too (as cli)"
$PMX domain add Beta cli.test --algorithm ed25519 >/dev/null
t_run $PMX domain verify cli.test --skip-dns
t_expect_rc 0
t_expect_eq "$(t_psql "select action from audit_log where api_key_id = 'cli' and target = 'cli.test' and workspace_id = '$BETA' order by id")" \
    "$(printf 'domain.add\ndomain.verify')" "audit rows"

t_case "verify: another workspace's domain 404, unknown 404, malformed 400, read key 403"
api POST /v1/domains/beta.test/verify "key=$K_ALL"
expect_api 404
api POST /v1/domains/none.test/verify "key=$K_ALL"
expect_api 404
api POST /v1/domains/bad..test/verify "key=$K_ALL"
expect_api 400
api POST /v1/domains/acme.test/verify "key=$K_READ"
expect_api 403
t_expect_eq "$(t_psql "select verified_at is null from domains where domain = 'beta.test'")" t "Beta's untouched"

t_stop_postmuxd "$DPID"
t_done
