#!/usr/bin/env bash
# The public HTTP listener, API v1 sending (docs/http.md), against the real
# postmuxd: driven with Python's urllib and raw sockets (and curl for the body size).
# Every API response the test sees is checked against http/openapi.json: its status
# is documented for the operation and its body validates against the documented
# schema (python3-jsonschema). Then: limits (413, per-address connections, a client
# that trickles its request), key revocation, Redis down -> 503.
source "$(dirname "$0")/lib.sh"
t_setup
source "$PMX_ROOT/tests/integration/api_lib.sh"
api_listener_conf
t_conf_set http max_body_size 64K
t_conf_set http max_connections_per_address 4
t_conf_set http idle_timeout 3s

ACME=$($PMX workspace create Acme)
BETA=$($PMX workspace create Beta)
$PMX domain add Acme acme.test --algorithm ed25519 >/dev/null
$PMX domain add Acme unverified.test --algorithm ed25519 >/dev/null
$PMX domain verify acme.test --skip-dns >/dev/null
K_ACME=$($PMX apikey create --workspace Acme --name api 2>/dev/null)
K_ORG=$($PMX apikey create --org --name org 2>/dev/null)
K_READ=$($PMX apikey create --workspace Acme --name readonly --scopes read 2>/dev/null)
K_LATE=$($PMX apikey create --workspace Acme --name late 2>"$T_DIR/late.err")
LATE_ID=$(grep -oE 'key_[a-z2-7]{16}' "$T_DIR/late.err" | head -n 1)

# ---- the client: one request, checked against the OpenAPI document -------------------
EMAIL='{"from":"News <news@acme.test>","to":["a@example.net","b@example.net"],"subject":"api one","text":"hello"}'

DLOG=$T_DIR/postmuxd.log
"$PMXD" -c "$T_CONF" >>"$DLOG" 2>&1 &
DPID=$!
t_wait_for 20 "[[ \$(curl -s -m 2 -o /dev/null -w '%{http_code}' http://127.0.0.1:$MPORT/healthz) == 200 ]]"

# ---- the document --------------------------------------------------------------------------
t_case "GET /v1/openapi.json: the repository's OpenAPI 3.1 document, no key needed"
t_run curl -s -m 5 -D "$T_DIR/oh" -o "$T_DIR/openapi.got" "http://127.0.0.1:$HPORT/v1/openapi.json"
t_expect_rc 0
t_expect_match "$(head -n 1 "$T_DIR/oh")" '^HTTP/1\.1 200' "status"
t_expect_match "$(cat "$T_DIR/oh")" '^Content-Type: application/json' "content type"
t_expect_eq "$(cmp "$T_DIR/openapi.got" "$SPEC" && echo same)" same "served = http/openapi.json"
t_run "$PY" -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["openapi"].startswith("3.1."), d["openapi"]
def walk(x):
    if isinstance(x, dict):
        for k, v in x.items():
            if k == "$ref":
                node = d
                for part in v.lstrip("#/").split("/"): node = node[part]
            walk(v)
    elif isinstance(x, list):
        for v in x: walk(v)
walk(d)
for p, ops in d["paths"].items():
    for m, op in ops.items():
        assert op["responses"], (p, m)
print("ok")' "$SPEC"
t_expect_eq "$T_OUT" ok "openapi 3.1.x, every \$ref resolves, every operation has responses"

# ---- authentication ---------------------------------------------------------------------------
t_case "no key, a bad key, a malformed header: 401 problem documents"
api POST /v1/emails "body=$EMAIL"
expect_api 401
t_expect_eq "$(jget 'd["status"]')" 401 "problem status"
api POST /v1/emails key=pmx_nosuchkey "body=$EMAIL"
expect_api 401
api POST /v1/emails "header=Authorization:Basic eDp5" "body=$EMAIL"
expect_api 401

t_case "a key without the send scope: 403"
api POST /v1/emails "key=$K_READ" "body=$EMAIL"
expect_api 403

t_case "an organization key without X-Workspace-Id: 400 naming the header"
api POST /v1/emails "key=$K_ORG" "body=$EMAIL"
expect_api 400
t_expect_eq "$(jget 'd["field"]')" X-Workspace-Id "field"

# ---- sending ------------------------------------------------------------------------------------
t_case "202 with the stream entry id; the email reaches the sink"
api POST /v1/emails "key=$K_ACME" "body=$EMAIL" idem=one-1
expect_api 202
ID1=$(jget 'd["id"]')
t_expect_match "$ID1" '^[0-9]+-[0-9]+$' "entry id"
t_wait_for 20 "grep -l '^Subject: api one' $T_SINK_DIR/* >/dev/null 2>&1"
t_wait_for 10 "[[ \$(t_psql \"select string_agg(r.status, ',' order by r.address) from recipients r
               join messages m on m.id = r.message_id where m.job_id = '$ID1'\") == sent,sent ]]"
t_expect_eq "$(t_psql "select workspace_id || ' ' || client_id from messages where job_id = '$ID1'")" \
    "$ACME one-1" "message row: workspace and Idempotency-Key"

t_case "the same Idempotency-Key again: accepted, then rejected as duplicate like a Redis job"
api POST /v1/emails "key=$K_ACME" "body=$EMAIL" idem=one-1
expect_api 202
ID2=$(jget 'd["id"]')
t_wait_for 20 "[[ \$(t_psql \"select string_agg(r.status, ',') from recipients r
               join messages m on m.id = r.message_id where m.job_id = '$ID2'\") == rejected,rejected ]]"
t_expect_eq "$(t_psql "select string_agg(distinct e.detail, ' ') from events e join messages m on m.id = e.message_id
                       where m.job_id = '$ID2' and e.type = 'message.rejected'")" duplicate "reason"

t_case "an organization key with X-Workspace-Id; headers object and cc array"
api POST /v1/emails "key=$K_ORG" "ws=$ACME" \
    'body={"from":"news@acme.test","to":"c@example.net","cc":["d@example.net"],"subject":"api org","html":"<p>hi</p>","headers":{"X-Campaign":"spring"},"metadata":"m1"}'
expect_api 202
t_wait_for 20 "grep -l '^Subject: api org' $T_SINK_DIR/* >/dev/null 2>&1"
F=$(grep -l '^Subject: api org' "$T_SINK_DIR"/* | head -n 1)
t_expect_match "$(cat "$F")" '^X-Campaign: spring' "extra header"
t_expect_match "$(cat "$F")" '^Cc: d@example.net' "cc"

t_case "another workspace's id with a workspace key: 403"
api POST /v1/emails "key=$K_ACME" "ws=$BETA" "body=$EMAIL"
expect_api 403

# ---- refusals -------------------------------------------------------------------------------------
t_case "a bad from: 422 naming the field"
api POST /v1/emails "key=$K_ACME" 'body={"from":"not an address","to":"a@example.net","subject":"s","text":"t"}'
expect_api 422
t_expect_eq "$(jget 'd["field"]')" from "field"
api POST /v1/emails "key=$K_ACME" 'body={"from":"x@unverified.test","to":"a@example.net","subject":"s","text":"t"}'
expect_api 422
t_expect_eq "$(jget 'd["field"]')" from "unverified domain: field"
api POST /v1/emails "key=$K_ACME" 'body={"to":"a@example.net","subject":"s","text":"t"}'
expect_api 422
t_expect_eq "$(jget 'd["field"]')" from "missing from: field"

t_case "header injection (CR/LF) is refused as the job validator does"
api POST /v1/emails "key=$K_ACME" 'body={"from":"a@acme.test","to":"a@example.net","subject":"s","text":"t","headers":{"X-Foo":"a\r\nBcc: evil@example.net"}}'
expect_api 422
t_expect_eq "$(jget 'd["field"]')" headers.X-Foo "field"
api POST /v1/emails "key=$K_ACME" 'body={"from":"a@acme.test","to":"a@example.net","subject":"s\nBcc: evil@example.net","text":"t"}'
expect_api 422
t_expect_eq "$(jget 'd["field"]')" subject "subject field"

t_case "unknown, internal and mistyped members: 422 naming them"
api POST /v1/emails "key=$K_ACME" 'body={"from":"a@acme.test","to":"a@example.net","subject":"s","text":"t","_source":"smtp"}'
expect_api 422
t_expect_eq "$(jget 'd["field"]')" _source "internal field"
api POST /v1/emails "key=$K_ACME" 'body={"from":"a@acme.test","to":"a@example.net","subject":"s","text":"t","header:X":"y"}'
expect_api 422
api POST /v1/emails "key=$K_ACME" 'body={"from":"a@acme.test","to":"a@example.net","subject":5,"text":"t"}'
expect_api 422
t_expect_eq "$(jget 'd["field"]')" subject "number"

t_case "bad JSON and bad UTF-8: 400"
api POST /v1/emails "key=$K_ACME" 'body={"from":'
expect_api 400
printf '{"from":"a@acme.test","to":"a@example.net","subject":"\xff\xfe","text":"t"}' >"$T_DIR/badutf8.json"
api POST /v1/emails "key=$K_ACME" "bodyfile=$T_DIR/badutf8.json"
expect_api 400
api POST /v1/emails "key=$K_ACME" 'body={"from":"a@acme.test","from":"b@acme.test"}'
expect_api 400

t_case "a body over max_body_size: 413"
"$PY" -c 'import json; print(json.dumps({"from":"a@acme.test","to":"a@example.net","subject":"s","text":"x"*100000}))' >"$T_DIR/big.json"
api POST /v1/emails "key=$K_ACME" "bodyfile=$T_DIR/big.json"
expect_api 413

t_case "wrong method 405, unknown path 404: problem documents"
# Not operations of the document, so api_check.py cannot look them up: their bodies are
# checked against its Problem schema here.
problem_check() {
    "$PY" - "$SPEC" "$T_DIR/h.head" "$T_DIR/h.body" <<'PYEOF'
import json, sys, jsonschema
from jsonschema import RefResolver
doc = json.load(open(sys.argv[1]))
head = open(sys.argv[2]).read().lower()
assert "content-type: application/problem+json" in head, head
jsonschema.Draft202012Validator(doc["components"]["schemas"]["Problem"],
                                resolver=RefResolver.from_schema(doc)).validate(json.load(open(sys.argv[3])))
print("ok")
PYEOF
}
t_run curl -s -m 5 -D "$T_DIR/h.head" -o "$T_DIR/h.body" -w '%{http_code}' "http://127.0.0.1:$HPORT/v1/emails"
t_expect_eq "$T_OUT" 405 "GET /v1/emails"
t_expect_eq "$(problem_check 2>&1)" ok "... a problem document"
t_run curl -s -m 5 -D "$T_DIR/h.head" -o "$T_DIR/h.body" -w '%{http_code}' "http://127.0.0.1:$HPORT/v1/nothing"
t_expect_eq "$T_OUT" 404 "unknown path"
t_expect_eq "$(problem_check 2>&1)" ok "... a problem document"

# ---- batch --------------------------------------------------------------------------------------------
t_case "batch: one result per item, in order"
api POST /v1/emails/batch "key=$K_ACME" idem=b \
    'body=[{"from":"a@acme.test","to":"x1@example.net","subject":"batch 0","text":"t"},{"from":"bad","to":"x2@example.net","subject":"s","text":"t"},{"from":"a@acme.test","to":"x3@example.net","subject":"batch 2","text":"t"}]'
expect_api 200
t_expect_eq "$(jget '[r["status"] for r in d["results"]]')" "[202, 422, 202]" "statuses"
t_expect_eq "$(jget 'd["results"][1]["field"]')" from "the bad item's field"
B2=$(jget 'd["results"][2]["id"]')
t_wait_for 20 "[[ \$(t_psql \"select client_id from messages where job_id = '$B2'\") == b:2 ]]"
api POST /v1/emails/batch "key=$K_ACME" 'body=[]'
expect_api 422
api POST /v1/emails/batch "key=$K_ACME" "body=$EMAIL"
expect_api 400

t_case "batch of 501: 422 and nothing queued; exactly 500: 200 with 500 results, all queued"
# The stream's length is no measure (the workers XDEL what they delivered); XINFO's
# entries-added counts every XADD ever made to it.
added() { t_redis XINFO STREAM "pmx:{$ACME}:jobs" | awk 'prev == "entries-added" { print; exit } { prev = $0 }'; }
"$PY" -c '
import json, sys
for n in (500, 501):
    items = [{"from": "a@acme.test", "to": "big%d@example.net" % i, "subject": "big %d" % i,
              "text": "t"} for i in range(n)]
    open("%s/batch%d.json" % (sys.argv[1], n), "w").write(json.dumps(items))' "$T_DIR"
BEFORE=$(added)
t_expect_match "$BEFORE" '^[0-9]+$' "entries-added read"
api POST /v1/emails/batch "key=$K_ACME" idem=over "bodyfile=$T_DIR/batch501.json"
expect_api 422
t_expect_match "$(jget 'd["detail"]')" '1 to 500' "detail"
t_expect_eq "$(added)" "$BEFORE" "nothing queued"
api POST /v1/emails/batch "key=$K_ACME" idem=big "bodyfile=$T_DIR/batch500.json"
expect_api 200
t_expect_eq "$(jget 'len(d["results"]), sorted(set(r["status"] for r in d["results"]))')" \
    "(500, [202])" "500 results, each 202"
t_expect_eq "$(added)" "$((BEFORE + 500))" "500 queued"
# Delivered before the cases that stop Redis and postmuxd.
t_wait_for 180 "[[ \$(t_psql \"select count(*) from messages m join recipients r on r.message_id = m.id
                                 where m.client_id like 'big:%' and r.status = 'sent'\") == 500 ]]"
t_expect_eq "$(t_psql "select count(*) from messages where client_id like 'over:%'")" 0 "no message of the refused batch"

# ---- connection limits -----------------------------------------------------------------------------------
t_case "max_connections_per_address: the 5th connection from one address is closed unanswered"
t_run "$PY" -c '
import socket, sys, time
port = int(sys.argv[1])
held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(4)]
time.sleep(0.5)
s = socket.create_connection(("127.0.0.1", port), timeout=5)
try:
    s.sendall(b"GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
    got = s.recv(100)
except OSError:
    got = b""
print("fifth:", "refused" if got == b"" else got[:12].decode("latin-1"))
for h in held: h.close()
time.sleep(0.5)
s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.sendall(b"GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
print("after:", s.recv(12).decode("latin-1"))' "$HPORT"
t_expect_eq "$T_OUT" "fifth: refused
after: HTTP/1.1 200" "limit, then room again"

t_case "a client that sends its request one byte a second is cut by the idle deadline (3s)"
t_run "$PY" -c '
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
req = b"POST /v1/emails HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Pad: " + b"a" * 40
t0 = time.time()
sent = 0
try:
    for b in req:
        s.sendall(bytes([b]))
        sent += 1
        time.sleep(1)
        s.setblocking(False)
        try:
            if s.recv(100) == b"":
                break
        except BlockingIOError:
            pass
        s.setblocking(True)
except OSError:
    pass
print("cut" if sent < len(req) else "not cut", file=sys.stdout)
print("after %d of %d bytes, %.0fs" % (sent, len(req), time.time() - t0), file=sys.stderr)' "$HPORT"
t_expect_eq "$T_OUT" cut "the server closed the connection before the request was whole"

# ---- revocation -----------------------------------------------------------------------------------------
t_case "a revoked key is refused (401) within 5 s of its revocation (+1 s slack, no more)"
# The one deadline this test asserts: docs/http.md promises a revoked key refused within
# 5 s (the key cache's PMX_APIKEYS_TTL_MS, submission/apikeys.h). Measured from the end of
# `apikey revoke` (the row is committed) to the first 401; 1 s of slack for a loaded
# machine and the probes' own latency, and no longer wait: a cache keeping keys past the
# promise must fail here. Probes with curl (lighter than api_check.py, so the first 401 is
# seen within ~0.1 s of happening); the 401 is checked against the document after.
api POST /v1/emails "key=$K_LATE" 'body={"from":"a@acme.test","to":"r@example.net","subject":"before revoke","text":"t"}'
expect_api 202
$PMX apikey revoke "$LATE_ID" >/dev/null
T0=$(date +%s%N)
REVOKED_MS=""
while :; do
    code=$(curl -s -m 2 -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $K_LATE" \
        -H 'Content-Type: application/json' -d '{}' "http://127.0.0.1:$HPORT/v1/emails")
    ms=$((($(date +%s%N) - T0) / 1000000))
    if [[ $code == 401 ]]; then
        REVOKED_MS=$ms
        break
    fi
    ((ms > 6000)) && break
    if [[ $code != 422 ]]; then
        t_fail "a probe got $code (expected 422 while the key is cached, then 401)"
        break
    fi
    sleep 0.1
done
echo "# first 401 ${REVOKED_MS:-never} ms after the revocation (last probe at $ms ms)" >&2
if [[ -z $REVOKED_MS && $code == 422 ]]; then
    t_fail "the revoked key was still accepted ${ms} ms after the revocation (promised: 5 s)"
elif [[ -n $REVOKED_MS ]]; then
    t_expect_eq "$((REVOKED_MS <= 6000))" 1 "refused within 6000 ms (took $REVOKED_MS ms)"
fi
api POST /v1/emails "key=$K_LATE" 'body={}'
expect_api 401

# ---- Redis down -------------------------------------------------------------------------------------------
t_case "Redis stopped: 503, never 202"
t_redis SHUTDOWN NOSAVE >/dev/null 2>&1
t_wait_for 10 "[[ \$(curl -s -m 2 -o /dev/null -w '%{http_code}' http://127.0.0.1:$MPORT/healthz) == 503 ]]"
api POST /v1/emails "key=$K_ACME" "body=$EMAIL"
expect_api 503
api POST /v1/emails/batch "key=$K_ACME" "body=[$EMAIL]"
expect_api 503

t_stop_postmuxd "$DPID"

# ---- HTTPS served by postmuxd itself ----------------------------------------------------------
t_case "tls_cert: the listener speaks HTTPS (libmicrohttpd + GnuTLS), not plain HTTP"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T_DIR/key.pem" -out "$T_DIR/cert.pem" -days 2 \
    -subj /CN=localhost -addext 'subjectAltName=DNS:localhost,IP:127.0.0.1' >/dev/null 2>&1 ||
    t_fail "openssl req failed"
t_conf_set http tls_cert "$T_DIR/cert.pem"
t_conf_set http tls_key "$T_DIR/key.pem"
t_conf_set http public_url "https://127.0.0.1:$HPORT"
"$PMXD" -c "$T_CONF" >>"$T_DIR/postmuxd-tls.log" 2>&1 &
DPID=$!
t_wait_for 20 "[[ \$(curl -s -m 2 --cacert '$T_DIR/cert.pem' -o /dev/null -w '%{http_code}' https://127.0.0.1:$HPORT/v1/openapi.json) == 200 ]]"
t_run curl -s -m 5 --cacert "$T_DIR/cert.pem" -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $K_ACME" \
    -d '{' "https://127.0.0.1:$HPORT/v1/emails"
t_expect_eq "$T_OUT" 400 "a request over TLS reaches the API"
t_run curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HPORT/v1/openapi.json"
t_expect_match "$T_OUT" '^(000|400)$' "plain HTTP is not served"

t_stop_postmuxd "$DPID"
t_done
