#!/usr/bin/env bash
# Webhook delivery (docs/webhooks.md; issue 7): real HTTP receivers on loopback
# (tests/tools/webhook_receiver.py, Python's http.server) and the real postmuxd.
# Events are mostly made by inserting rows into events with psql — the outbox
# trigger does the rest, so these cases do not depend on the pipeline — plus one
# end-to-end run through redis-cli XADD. Signatures are recomputed by Python's
# hmac, not by our code.
source "$(dirname "$0")/lib.sh"
t_setup
PY=/usr/bin/python3
RECV=$PMX_ROOT/tests/tools/webhook_receiver.py

t_conf_set daemon workers 2
t_conf_set delivery retry_base 1s     # webhook retries: min(10 s, retry_base) = 1 s

# ---- helpers -----------------------------------------------------------------------------
# recv_start NAME [receiver options]: a receiver logging to $T_DIR/NAME.log, answering
# per $T_DIR/NAME.ctl when that file exists; sets PORT_<NAME>.
recv_start() {
    local name=$1
    shift
    rm -f "$T_DIR/$name.port"
    "$PY" "$RECV" --port-file "$T_DIR/$name.port" --log "$T_DIR/$name.log" \
        --control "$T_DIR/$name.ctl" "$@" >>"$T_DIR/$name.out" 2>&1 &
    t_wait_for 10 "[[ -s $T_DIR/$name.port ]]" || return 1
    printf -v "PORT_$name" '%s' "$(<"$T_DIR/$name.port")"
    touch "$T_DIR/$name.log"
}
ctl() { if [[ $2 == none ]]; then rm -f "$T_DIR/$1.ctl"; else echo "$2" >"$T_DIR/$1.ctl"; fi; }
nlog() { wc -l <"$T_DIR/$1.log"; }

# hook_add NAME URL [add options]: prints nothing; sets SECRET_<NAME> and WH_<NAME>.
hook_add() {
    local name=$1 url=$2
    shift 2
    t_run "$PMX" webhook add --url "$url" "$@"
    t_expect_rc 0 || return 1
    printf -v "SECRET_$name" '%s' "$T_OUT"
    printf -v "WH_$name" '%s' "$(grep -oE 'wh_[a-z2-7]{16}' <<<"$T_ERR" | head -n 1)"
}

start_daemon() { "$PMXD" -c "$T_CONF" >>"$T_DIR/postmuxd.log" 2>&1 & DPID=$!; }
stop_daemon() { kill -TERM "$DPID" 2>/dev/null; wait "$DPID" 2>/dev/null; }

# The checks, in Python: reads a receiver log.
cat >"$T_DIR/check.py" <<'EOF'
import hashlib, hmac, json, sys

def load(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(l) for l in f if l.strip()]

def cmd_verify(path, secret):
    """Every request: JSON content type, the exact keys in order, a signature
    Python's hmac agrees with. Prints 'ok N' or the first problem."""
    keys = ["id", "event", "created_at", "workspace_id", "workspace_name", "data"]
    dkeys = ["message_id", "job_id", "client_id", "recipient", "response", "attempt", "metadata"]
    reqs = load(path)
    for r in reqs:
        h = r["headers"]
        if h.get("content-type") != "application/json":
            return print("bad content-type %r" % h.get("content-type"))
        sig = h.get("postmux-signature", "")
        parts = dict(p.split("=", 1) for p in sig.split(",") if "=" in p)
        if set(parts) != {"t", "v1"} or not parts["t"].isdigit():
            return print("bad signature header %r" % sig)
        want = hmac.new(secret.encode(), (parts["t"] + "." + r["body"]).encode(),
                        hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, parts["v1"]):
            return print("signature mismatch on %s" % r["body"][:80])
        j = json.loads(r["body"])
        if list(j) != keys or list(j["data"]) != dkeys:
            return print("keys %s / %s" % (list(j), list(j["data"])))
        if abs(int(parts["t"]) - r["t"]) > 30:
            return print("t=%s is far from the time it arrived" % parts["t"])
    print("ok %d" % len(reqs))

def cmd_rows(path, which="answered"):
    """One line per request: id event workspace_id workspace_name recipient status."""
    for r in load(path):
        if which == "ok" and r["status"] != 200:
            continue
        j = json.loads(r["body"])
        print(j["id"], j["event"], j["workspace_id"], (j["workspace_name"] or "-").replace(" ", "_"),
              j["data"]["recipient"] or "-", r["status"])

def cmd_field(path, evt, field):
    """A field of the first request about event evt (data.x for the data object)."""
    for r in load(path):
        j = json.loads(r["body"])
        if j["id"] == evt:
            v = j["data"][field[5:]] if field.startswith("data.") else j[field]
            print(json.dumps(v, ensure_ascii=False))
            return

def cmd_order(path):
    """Per recipient, the event ids in the order they arrived (every attempt)
    must never go down; prints 'ok' or the first recipient out of order."""
    seen = {}
    for r in load(path):
        j = json.loads(r["body"])
        key = (j["data"]["message_id"], j["data"]["recipient"])
        n = int(j["id"][4:])
        if seen.get(key, 0) > n:
            return print("out of order for %s: evt_%d after evt_%d" % (key, n, seen[key]))
        seen[key] = n
    print("ok")

getattr(sys.modules[__name__], "cmd_" + sys.argv[1])(*sys.argv[2:])
EOF
check() { "$PY" "$T_DIR/check.py" "$@"; }

WSA=$($PMX workspace create 'Acme Corp')
WSB=$($PMX workspace create 'Beta Ltd')
$PMX workspace create 'Gamma' >/dev/null

recv_start A
recv_start B
recv_start ORG
hook_add A "http://127.0.0.1:$PORT_A/hooks/a" --workspace 'Acme Corp'
hook_add B "http://127.0.0.1:$PORT_B/hooks/b" --workspace 'Beta Ltd' --events message.sent,message.bounced
hook_add ORG "http://127.0.0.1:$PORT_ORG/hooks/org"

# ev WS MSG RCPT TYPE [DETAIL]: one event row (the message row is made once per MSG).
ev() {
    local ws=$1 msg=$2 rcpt=$3 type=$4 detail=${5-}
    t_psql "INSERT INTO messages (id, workspace_id, job_id, client_id, mail_from, metadata, source)
            VALUES ('$msg', '$ws', 'job-$msg', 'client-$msg', 'a@x.test', 'meta \"$msg\" ü', 'redis')
            ON CONFLICT DO NOTHING;
            INSERT INTO recipients (message_id, address, status, attempts, last_response)
            VALUES ('$msg', '$rcpt', 'deferred', 2, '451 4.7.1 later')
            ON CONFLICT (message_id, address) DO UPDATE SET attempts = recipients.attempts + 1;
            INSERT INTO events (workspace_id, message_id, recipient, type, detail)
            VALUES ('$ws', '$msg', '$rcpt', '$type', NULLIF('$detail', ''))"
}
evt_id() { t_psql "select id from events where message_id = '$1' and recipient = '$2' and type = '$3'"; }

start_daemon

# ---- payload, scope, signature -------------------------------------------------------------
t_case "an event reaches its workspace's webhook and the organization-wide one, signed"
ev "$WSA" msg_a1 ann@example.net message.sent '250 2.0.0 Ok: queued as X'
ev "$WSB" msg_b1 bob@example.net message.sent '250 ok'
ev "$WSB" msg_b1 bea@example.net message.deferred '451 try later'
t_wait_for 15 "(( \$(nlog A) >= 1 && \$(nlog B) >= 1 && \$(nlog ORG) >= 3 ))"
sleep 1.5   # anything extra would show up now
E=$(evt_id msg_a1 ann@example.net message.sent)
t_expect_eq "$(check rows "$T_DIR/A.log")" "evt_$E message.sent $WSA Acme_Corp ann@example.net 200" "A got exactly its event"
t_expect_eq "$(check verify "$T_DIR/A.log" "$SECRET_A")" "ok 1" "A's signature"
t_expect_eq "$(check verify "$T_DIR/ORG.log" "$SECRET_ORG")" "ok 3" "ORG's signatures"
t_expect_eq "$(check verify "$T_DIR/B.log" "$SECRET_B")" "ok 1" "B's signature"
t_expect_eq "$(check rows "$T_DIR/ORG.log" | awk '{print $2, $3}' | sort | paste -sd,)" \
    "$(printf '%s\n' "message.deferred $WSB" "message.sent $WSA" "message.sent $WSB" | sort | paste -sd,)" \
    "ORG got all three"
t_expect_eq "$(check rows "$T_DIR/B.log" | awk '{print $2, $5}')" "message.sent bob@example.net" \
    "B's filter: sent only, not deferred"
t_expect_eq "$(check field "$T_DIR/A.log" "evt_$E" workspace_name)" '"Acme Corp"' "workspace_name"
t_expect_eq "$(check field "$T_DIR/A.log" "evt_$E" workspace_id)" "\"$WSA\"" "workspace_id"
t_expect_match "$(check field "$T_DIR/A.log" "evt_$E" created_at)" \
    '^"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z"$' "created_at is RFC 3339 UTC"
t_expect_eq "$(check field "$T_DIR/A.log" "evt_$E" data.message_id)" '"msg_a1"' "message_id"
t_expect_eq "$(check field "$T_DIR/A.log" "evt_$E" data.job_id)" '"job-msg_a1"' "job_id"
t_expect_eq "$(check field "$T_DIR/A.log" "evt_$E" data.client_id)" '"client-msg_a1"' "client_id"
t_expect_eq "$(check field "$T_DIR/A.log" "evt_$E" data.response)" '"250 2.0.0 Ok: queued as X"' "response"
t_expect_eq "$(check field "$T_DIR/A.log" "evt_$E" data.attempt)" 2 "attempt"
t_expect_eq "$(check field "$T_DIR/A.log" "evt_$E" data.metadata)" '"meta \"msg_a1\" ü"' "metadata"
t_expect_eq "$(t_psql "select count(*) from webhook_deliveries where delivered_at is null")" 0 \
    "every row delivered"
t_expect_match "$(check verify "$T_DIR/A.log" "$SECRET_ORG")" '^signature mismatch' \
    "another webhook's secret does not verify"

t_case "an event without a detail carries the recipient's last SMTP reply"
ev "$WSA" msg_a2 amy@example.net message.deferred
E=$(evt_id msg_a2 amy@example.net message.deferred)
t_wait_for 10 "check rows $T_DIR/A.log | grep -q '^evt_$E '"
t_expect_eq "$(check field "$T_DIR/A.log" "evt_$E" data.response)" '"451 4.7.1 later"' "response"
t_expect_eq "$(check field "$T_DIR/A.log" "evt_$E" workspace_name)" '"Acme Corp"' "workspace_name"

t_case "a workspace's webhook never gets another workspace's events; org-wide gets all"
for i in $(seq 1 10); do
    ev "$WSB" "msg_x$i" "x$i@example.net" message.sent
    ev "$(t_psql "select id from workspaces where name = 'Gamma'")" "msg_g$i" "g$i@example.net" message.bounced
done
t_wait_for 20 "(( \$(check rows $T_DIR/ORG.log ok | wc -l) >= 24 ))"
sleep 1.5
t_expect_eq "$(check rows "$T_DIR/A.log" | awk -v a="$WSA" '$3 != a' | wc -l)" 0 "A: only Acme's events"
t_expect_eq "$(check rows "$T_DIR/B.log" | awk -v b="$WSB" '$3 != b' | wc -l)" 0 "B: only Beta's events"
t_expect_eq "$(check rows "$T_DIR/B.log" | wc -l)" 11 "B: its 11 sent events"
t_expect_eq "$(check rows "$T_DIR/ORG.log" ok | wc -l)" 24 "ORG: all 24 events so far"
t_expect_eq "$(check rows "$T_DIR/ORG.log" ok | awk '{print $1}' | sort | uniq -d | wc -l)" 0 "ORG: none twice"

# ---- failures, order, at-least-once -------------------------------------------------------
t_case "500s for a while: every event arrives later, none lost, in order per recipient"
ctl A fail
: >"$T_DIR/A.log"
for round in 1 2 3 4 5; do
    for r in 1 2 3 4; do
        ev "$WSA" "msg_o$r" "o$r@example.net" message.deferred "attempt $round"
    done
done
t_wait_for 10 "(( \$(nlog A) >= 4 ))"
sleep 4          # several failed rounds (retry base 1 s)
FAILS=$(grep -c '"status": 500' "$T_DIR/A.log")
ctl A none
t_wait_for 60 "(( \$(check rows $T_DIR/A.log ok | wc -l) >= 20 ))"
sleep 2
t_expect_eq "$(check rows "$T_DIR/A.log" ok | wc -l)" 20 "20 events answered 200, once each"
t_expect_eq "$(check rows "$T_DIR/A.log" ok | awk '{print $1}' | sort -u | wc -l)" 20 "20 distinct events"
t_expect_eq "$(check order "$T_DIR/A.log")" ok "order per recipient (every attempt)"
((FAILS >= 8)) || t_fail "only $FAILS failed attempts were made while the receiver failed"
t_expect_eq "$(check verify "$T_DIR/A.log" "$SECRET_A")" "ok $(nlog A)" "every attempt signed"
t_expect_eq "$(t_psql "select count(*) from webhook_deliveries d join events e on e.id = d.event_id
                       where d.webhook_id = '$WH_A' and e.message_id like 'msg_o%'
                         and d.delivered_at is not null and d.attempts >= 2")" 4 \
    "the first event of each recipient took more than one attempt"
t_expect_match "$(t_psql "select distinct last_error from webhook_deliveries
                          where webhook_id = '$WH_A' and attempts >= 2")" '^$' "last_error cleared on success"

t_case "a row is given up 24 h after its event, and logged"
ctl A fail
ev "$WSA" msg_old old@example.net message.bounced '550 no'
E=$(evt_id msg_old old@example.net message.bounced)
t_wait_for 10 "check rows $T_DIR/A.log | grep -q '^evt_$E '"
t_psql "update webhook_deliveries set expires_at = now() - interval '1 second', next_attempt_at = now()
        where event_id = $E and webhook_id = '$WH_A'"
t_wait_for 10 "[[ \$(t_psql \"select failed_at is not null from webhook_deliveries where event_id = $E and webhook_id = '$WH_A'\") == t ]]"
t_expect_match "$(t_psql "select last_error from webhook_deliveries where event_id = $E and webhook_id = '$WH_A'")" \
    '^HTTP 500' "last_error"
t_expect_match "$(cat "$T_DIR/postmuxd.log")" "webhook given up wh=$WH_A event=evt_$E" "logged"
ctl A none

t_case "https endpoints are verified: a self-signed certificate is refused and retried"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T_DIR/tls.key" -out "$T_DIR/tls.crt" \
    -days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1
cat >"$T_DIR/tls_recv.py" <<'EOF'
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        open(sys.argv[3], "a").write("got\n")
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(sys.argv[1], sys.argv[2])
s.socket = ctx.wrap_socket(s.socket, server_side=True)
open(sys.argv[4], "w").write(str(s.server_address[1]))
s.serve_forever()
EOF
"$PY" "$T_DIR/tls_recv.py" "$T_DIR/tls.crt" "$T_DIR/tls.key" "$T_DIR/tls.hits" "$T_DIR/tls.port" &
t_wait_for 10 "[[ -s $T_DIR/tls.port ]]"
hook_add TLS "https://127.0.0.1:$(<"$T_DIR/tls.port")/x" --workspace Gamma
ev "$(t_psql "select id from workspaces where name = 'Gamma'")" msg_tls t@example.net message.sent
t_wait_for 15 "[[ -n \$(t_psql \"select last_error from webhook_deliveries where webhook_id = '$WH_TLS' and attempts >= 2\") ]]"
t_expect_match "$(t_psql "select last_error from webhook_deliveries where webhook_id = '$WH_TLS'")" \
    'certificate|SSL' "the error names the certificate"
t_expect_eq "$(t_psql "select count(*) from webhook_deliveries where webhook_id = '$WH_TLS' and delivered_at is not null")" 0 "never delivered"
[[ -s $T_DIR/tls.hits ]] && t_fail "the receiver answered a request over an unverified connection"

t_case "webhook remove: its pending deliveries go with it, nothing more is sent"
t_run "$PMX" webhook remove "$WH_TLS"
t_expect_rc 0
t_expect_eq "$(t_psql "select count(*) from webhook_deliveries where webhook_id = '$WH_TLS'")" 0 "rows removed"

# ---- end to end, and a hanging endpoint --------------------------------------------------
t_settings_change "$DPID" -- $PMX domain add 'Acme Corp' acme.test --algorithm ed25519
t_settings_change "$DPID" -- $PMX domain verify acme.test --skip-dns
xadd_many() {   # xadd_many PREFIX N: N jobs to Acme; waits until all are sent; prints seconds
    local p=$1 n=$2 i t0
    t0=${EPOCHREALTIME/./}
    for ((i = 1; i <= n; i++)); do
        printf 'XADD pmx:{%s}:jobs * from news@acme.test to %s%d@example.net subject s text t id %s%d metadata m%d\n' \
            "$WSA" "$p" "$i" "$p" "$i" "$i"
    done | t_redis >/dev/null
    t_wait_for 120 "[[ \$(t_psql \"select count(*) from recipients r join messages m on m.id = r.message_id
                                    where m.client_id like '$p%' and r.status = 'sent'\") == $n ]]" || return 1
    echo $(( (${EPOCHREALTIME/./} - t0) / 1000 ))
}

t_case "end to end: a job XADDed with redis-cli comes out as a signed message.sent webhook"
: >"$T_DIR/A.log"
t_redis XADD "pmx:{$WSA}:jobs" '*' from news@acme.test to e2e@example.net subject hi text hi \
    id e2e-1 metadata '{"order":42}' >"$T_DIR/e2e.id"
t_wait_for 30 "check rows $T_DIR/A.log ok | grep -q 'message.sent.*e2e@example.net'"
E=$(t_psql "select e.id from events e join messages m on m.id = e.message_id
            where m.client_id = 'e2e-1' and e.type = 'message.sent'")
t_expect_eq "$(check field "$T_DIR/A.log" "evt_$E" data.job_id)" "\"$(<"$T_DIR/e2e.id")\"" "job_id = the stream entry id"
t_expect_eq "$(check field "$T_DIR/A.log" "evt_$E" data.client_id)" '"e2e-1"' "client_id = the job's id"
t_expect_eq "$(check field "$T_DIR/A.log" "evt_$E" data.metadata)" '"{\"order\":42}"' "metadata echoed"
t_expect_eq "$(check field "$T_DIR/A.log" "evt_$E" data.attempt)" 1 "attempt"
t_expect_match "$(check field "$T_DIR/A.log" "evt_$E" data.response)" '^"2[0-9][0-9] ' "the relay's reply"
t_expect_eq "$(check verify "$T_DIR/A.log" "$SECRET_A")" "ok $(nlog A)" "signatures"
t_expect_eq "$(check order "$T_DIR/A.log")" ok "order"

t_case "a hanging endpoint does not slow delivery"
N=300
BASE=$(xadd_many base "$N") || BASE=""
: >"$T_DIR/A.log"
ctl A hang
HUNG=$(xadd_many hang "$N") || HUNG=""
echo "# $N jobs: ${BASE}ms with a fast endpoint, ${HUNG}ms while it hangs" >&2
if [[ -n $BASE && -n $HUNG ]]; then
    ((HUNG <= 2 * BASE + 3000)) || t_fail "delivery took ${HUNG}ms while the endpoint hung, ${BASE}ms before"
fi
((HUNG_REQS = $(grep -c '"status": null' "$T_DIR/A.log"))) || t_fail "no POST reached the hanging endpoint"

t_case "after the hang every event of both runs is delivered, once the endpoint answers"
ctl A none
t_wait_for 120 "[[ \$(t_psql \"select count(*) from webhook_deliveries where webhook_id = '$WH_A'
                                and delivered_at is null and failed_at is null\") == 0 ]]"
t_expect_eq "$(t_psql "select count(*) from webhook_deliveries d join events e on e.id = d.event_id
                       join messages m on m.id = e.message_id
                       where d.webhook_id = '$WH_A' and m.client_id like 'hang%' and d.delivered_at is not null")" \
    "$N" "message.sent for each of the $N jobs"
t_expect_eq "$(check order "$T_DIR/A.log")" ok "order per recipient"

t_case "kill -9 of the workers with a POST in flight: the row is sent again after its lease"
ctl A hang
ev "$WSA" msg_kill kill@example.net message.sent
E=$(evt_id msg_kill kill@example.net message.sent)
t_wait_for 10 "check rows $T_DIR/A.log | grep -q '^evt_$E '"
kill -9 $(pgrep -P "$DPID") 2>/dev/null
ctl A none
t_expect_eq "$(t_psql "select attempts from webhook_deliveries where event_id = $E and webhook_id = '$WH_A'")" 0 \
    "no answer was recorded"
t_wait_for 90 "[[ \$(t_psql \"select delivered_at is not null from webhook_deliveries where event_id = $E and webhook_id = '$WH_A'\") == t ]]"
t_expect_match "$(t_psql "select extract(epoch from delivered_at - created_at) >= 55 from webhook_deliveries
                          where event_id = $E and webhook_id = '$WH_A'")" t "not before the 60 s lease ran out"
t_expect_eq "$(check rows "$T_DIR/A.log" ok | grep -c "^evt_$E ")" 1 "answered once"

t_case "SIGTERM with a POST hanging: the daemon stops after a short grace, nothing is lost"
ctl A hang
ev "$WSA" msg_term term@example.net message.sent
E=$(evt_id msg_term term@example.net message.sent)
t_wait_for 10 "check rows $T_DIR/A.log | grep -q '^evt_$E '"
T0=${EPOCHREALTIME/./}
stop_daemon
T1=$(( (${EPOCHREALTIME/./} - T0) / 1000 ))
((T1 < 8000)) || t_fail "stopping took ${T1}ms (the POST timeout is 10 s, the drain grace 2 s)"
t_expect_eq "$(t_psql "select delivered_at is null and failed_at is null from webhook_deliveries
                       where event_id = $E and webhook_id = '$WH_A'")" t "still pending"
t_expect_eq "$(t_psql "select last_error from webhook_deliveries where event_id = $E and webhook_id = '$WH_A'")" \
    "interrupted: the worker stopped" "recorded as an interrupted attempt"
ctl A none
t_psql "update webhook_deliveries set next_attempt_at = now() where event_id = $E"   # skip the lease
start_daemon
t_wait_for 20 "[[ \$(t_psql \"select delivered_at is not null from webhook_deliveries where event_id = $E and webhook_id = '$WH_A'\") == t ]]"
stop_daemon

t_case "no sanitizer report in postmuxd's log"
t_expect_nomatch "$(cat "$T_DIR"/postmuxd*.log 2>/dev/null)" 'Sanitizer|runtime error:|LeakSanitizer' "postmuxd log"

t_done
