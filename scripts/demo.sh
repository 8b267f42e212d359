#!/usr/bin/env bash
# scripts/demo.sh — `make demo`: postmux end to end on throwaway services, in one go.
#
# Installs missing Debian packages (scripts/deps.sh) and builds the release binaries
# when needed, starts a private PostgreSQL, Redis and a relay (tests/tools/tls_relay.py
# on Debian's python3-aiosmtpd: it stores every message it receives in a file, and
# refuses recipients whose local part starts with "perm" as unknown). The CLI does only
# what the API cannot: it migrates and makes one organization API key (scopes
# manage,read). postmuxd runs in the background with its public listener ([http] listen,
# public_url on loopback), and everything else goes through the API with curl, as a
# platform would (docs/http.md): POST /v1/workspaces (the workspace "Demo"), POST
# /v1/domains (demo.example, RSA-2048 + Ed25519; the DNS records to publish), then
# dnsmasq — the DNS stand-in, the config's [mx] resolver — serves exactly those records
# and POST /v1/domains/demo.example/verify checks them; POST /v1/api-keys makes the
# app's send key, which sends a receipt and a newsletter with one-click unsubscribe
# (POST /v1/emails), polled with GET /v1/messages/{id} until sent. Jobs are also
# enqueued with `redis-cli XADD` exactly as an application would; every outcome is
# printed from Postgres, and each delivered message shown with its DKIM signatures
# checked by python3-dkim against the keys found in DNS. Then the loop back
# (docs/feedback.md): the relay refused one recipient as unknown (a hard bounce,
# suppressed at once), and a bounce report for another, delivered recipient arrives at
# the [inbound] SMTP listener, which suppresses that address too; the next job to both
# is suppressed (GET /v1/suppressions). Last, the newsletter's List-Unsubscribe link is
# followed: GET shows the page and writes nothing, the RFC 8058 one-click POST
# suppresses the address in the category "newsletter" (GET /v1/suppressions, GET
# /v1/events: message.unsubscribed); the next newsletter to it is suppressed, a receipt
# still goes. Then everything stops.
#
#   make demo                  (or: bash scripts/demo.sh)
#   DEMO_KEEP=1 make demo      keep everything running (logs follow) until Ctrl-C
#   DEMO_BIN_DIR=DIR           use the postmux/postmuxd in DIR (no deps.sh, no build)
#   DEMO_RESPONSES=DIR         also save every API answer in DIR (N.req: method, path,
#                              status, content type; N.body), for tests/integration/test_demo.sh
#                              to check them against the OpenAPI document
#
# Every service lives in one temp dir (scripts/services.sh) and is stopped on exit,
# Ctrl-C or kill; no port is fixed.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=services.sh
source "$root/scripts/services.sh"

PY=/usr/bin/python3
DOMAIN=demo.example
WORKERS=2

if [[ -t 1 ]]; then B=$'\e[1m' D=$'\e[2m' N=$'\e[0m'; else B="" D="" N=""; fi
step() { printf '\n%s==> %s%s\n' "$B" "$*" "$N"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }
# Shows a command as a user would type it, then runs exactly that text.
shown() { printf '%s$ %s%s\n' "$D" "$1" "$N"; eval "$1"; }

# --- binaries -------------------------------------------------------------------
if [[ -n ${DEMO_BIN_DIR-} ]]; then
    bin=$(cd "$DEMO_BIN_DIR" 2>/dev/null && pwd) || bin=$DEMO_BIN_DIR
else
    step "packages (scripts/deps.sh) and the build (make -j2 bins)"
    bash "$root/scripts/deps.sh" || die "scripts/deps.sh failed"
    make -s -C "$root" -j2 bins || die "the build failed"
    bin=$root/build/release/bin
fi
PMX=$bin/postmux
PMXD=$bin/postmuxd
[[ -x $PMX && -x $PMXD ]] || die "no postmux/postmuxd in $bin"

# --- services -------------------------------------------------------------------
step "starting throwaway PostgreSQL, Redis and a relay"
pmx_svc_init || die "cannot create a temp dir"
dir=$PMX_SVC_DIR
pmx_svc_pg_start || die "PostgreSQL did not start"
pmx_svc_redis_start >/dev/null || die "redis-server did not start"
sink=$dir/sink
# pmx_svc_postmux_conf writes the relay of the last smtp-sink started; the demo's
# relay is the aiosmtpd one below, which can refuse a chosen recipient.
pmx_svc_sink_start - >/dev/null || die "smtp-sink did not start"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj /CN=localhost -keyout "$dir/relay.key" -out "$dir/relay.crt" 2>/dev/null ||
    die "openssl could not make the relay's certificate"
pmx_svc_run relay "$PY" "$root/tests/tools/tls_relay.py" --port-file "$dir/relay.port" \
    --cert "$dir/relay.crt" --key "$dir/relay.key" --dir "$sink" --log "$dir/relay.log" \
    --mode absent --pipelining || die "the relay did not start"
for ((i = 0; i < 100; i++)); do
    [[ -s $dir/relay.port ]] && break
    sleep 0.1
done
rport=$(cat "$dir/relay.port" 2>/dev/null) || rport=""
[[ -n $rport ]] || die "the relay did not start: $(head -c 300 "$PMX_RUN_LOG" 2>/dev/null)"
psqlc=("$PMX_PG_BIN/psql" -X -v ON_ERROR_STOP=1 -h "$PMX_PG_HOST" -p "$PMX_PG_PORT" -U "$PMX_PG_USER")
"${psqlc[@]}" -q -d postgres -c 'CREATE DATABASE postmux' || die "cannot create the database"
q() { "${psqlc[@]}" -Atq -d postmux -c "$1"; }
echo "  postgres  $PMX_PG_HOST (port $PMX_PG_PORT), database postmux"
echo "  redis     $PMX_REDIS_SOCK"
echo "  relay     tls_relay.py (aiosmtpd) on 127.0.0.1:$rport, storing into $sink"

export POSTMUX_CONFIG=$dir/postmux.conf
pmx_svc_postmux_conf "$POSTMUX_CONFIG" postmux || die "cannot write the config"
pmx_svc_conf_set "$POSTMUX_CONFIG" daemon workers "$WORKERS"
pmx_svc_conf_set "$POSTMUX_CONFIG" relay port "$rport"
iport=$(pmx_svc_free_port) || die "no free port for the inbound listener"
pmx_svc_conf_set "$POSTMUX_CONFIG" inbound listen "127.0.0.1:$iport"
pmx_svc_conf_set "$POSTMUX_CONFIG" inbound hostname "mx.$DOMAIN"
# The public listener: the API and the one-click unsubscribe links (docs/http.md);
# plain http:// is accepted for public_url on a loopback address only.
hport=$(pmx_svc_free_port) || die "no free port for the HTTP listener"
pmx_svc_conf_set "$POSTMUX_CONFIG" http listen "127.0.0.1:$hport"
pmx_svc_conf_set "$POSTMUX_CONFIG" http public_url "http://127.0.0.1:$hport"
# The DNS stand-in (dnsmasq) starts once the API has said which records to publish;
# its port is chosen now so that [mx] resolver (what POST /v1/domains/{d}/verify asks)
# can name it from the start.
dport=$(pmx_svc_free_port) || die "no free port for the DNS stand-in"
pmx_svc_conf_set "$POSTMUX_CONFIG" mx resolver "127.0.0.1:$dport"
step "config ($POSTMUX_CONFIG)"
sed 's/^/    /' "$POSTMUX_CONFIG"

cd "$dir" || die "cannot cd to $dir"
step "bootstrap with the CLI: the schema, and one organization API key (what the API cannot make itself)"
PATH=$bin:$PATH
shown "postmux migrate" || die "migrate failed"
printf '%s$ %s%s\n' "$D" 'ORG_KEY=$(postmux apikey create --org --name demo-admin --scopes manage,read)' "$N"
ORG_KEY=$(postmux apikey create --org --name demo-admin --scopes manage,read 2>key.err) ||
    die "apikey create --org failed: $(cat key.err)"
cat key.err   # the key's id and a reminder, which postmux writes to stderr
echo "  (ORG_KEY=${ORG_KEY:0:12}…: shown once; postmux stores only its SHA-256)"

# --- postmuxd -------------------------------------------------------------------
step "starting postmuxd ($WORKERS workers) in the background; its log:"
pmx_svc_run postmuxd "$PMXD" -c "$POSTMUX_CONFIG" || die "postmuxd did not start"
dpid=$PMX_RUN_PID
dst=$PMX_SVC__ST
dlog=$PMX_RUN_LOG
logpos=0
# Prints the log lines written since the last call.
show_log() {
    local n
    n=$(wc -l <"$dlog")
    ((n > logpos)) && sed -n "$((logpos + 1)),${n}p" "$dlog" | sed "s/^/  ${D}postmuxd |${N} /"
    logpos=$n
}
stop_daemon() {
    local i
    pmx_svc__alive "$dpid" "$dst" || return 0
    kill -TERM "$dpid" 2>/dev/null
    for ((i = 0; i < 150; i++)); do
        pmx_svc__alive "$dpid" "$dst" || break
        sleep 0.1
    done
    show_log
}
pmx_svc_atexit stop_daemon
API=http://127.0.0.1:$hport
for ((i = 0; i < 150; i++)); do
    (($(grep -c 'pipeline started' "$dlog") >= WORKERS)) &&
        [[ $(curl -s -m 2 -o /dev/null -w '%{http_code}' "$API/v1/openapi.json") == 200 ]] && break
    pmx_svc__alive "$dpid" "$dst" || { show_log; die "postmuxd exited"; }
    sleep 0.1
done
show_log

# --- the API --------------------------------------------------------------------
# req KEYVAR METHOD PATH [JSON]: one API request with curl, shown as one would type it
# (KEYVAR names the variable holding the key: ORG_KEY or APP_KEY). With WSH=1 it sends
# X-Workspace-Id: $WS (an organization key names its workspace), with IDEM=K an
# Idempotency-Key. The status goes to $code, the body to resp.json (and, with
# DEMO_RESPONSES set, both to that directory).
req() {
    local kv=$1 m=$2 p=$3 body=${4-} show args
    show="curl"
    [[ $m != GET ]] && show+=" -X $m"
    show+=" \"\$API$p\" -H \"Authorization: Bearer \$$kv\""
    args=(-sS -m 30 -o "$dir/resp.json" -w '%{http_code} %{content_type}' -X "$m" "$API$p"
          -H "Authorization: Bearer ${!kv}")
    if [[ ${WSH-} == 1 ]]; then
        show+=" -H \"X-Workspace-Id: \$WS\""
        args+=(-H "X-Workspace-Id: $WS")
    fi
    if [[ -n ${IDEM-} ]]; then
        show+=" -H 'Idempotency-Key: $IDEM'"
        args+=(-H "Idempotency-Key: $IDEM")
    fi
    [[ -n $body ]] && { show+=" --json '$body'"; args+=(--json "$body"); }
    printf '%s$ %s%s\n' "$D" "$show" "$N"
    local out
    out=$(curl "${args[@]}") || die "curl: $m $p failed"
    code=${out%% *}
    if [[ -n ${DEMO_RESPONSES-} ]]; then
        printf '%s %s %s %s\n' "$m" "$p" "$code" "${out#* }" >"$DEMO_RESPONSES/$nsaved.req"
        cp "$dir/resp.json" "$DEMO_RESPONSES/$nsaved.body"
        nsaved=$((nsaved + 1))
    fi
}
# jget EXPR: a Python expression over the last answer's JSON body `d`, printed.
jget() { "$PY" -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' \
        "$dir/resp.json" "$1"; }
# expect STATUS [SHOW]: the answer must have STATUS; prints "-> STATUS" and SHOW (a
# Python expression over `d` giving the lines worth seeing), else the whole body.
expect() {
    printf '  -> %s\n' "$code"
    if [[ $code != "$1" ]]; then
        sed 's/^/     /' "$dir/resp.json"
        echo
        die "expected $1"
    fi
    [[ -n ${2-} ]] && jget "$2" | sed 's/^/     /'
    return 0
}
# wait_msg ID STATUS: polls GET /v1/messages/ID (quietly, up to 15 s) until every
# recipient has STATUS, then shows that request and its answer.
wait_msg() {
    local i c st=""
    for ((i = 0; i < 150; i++)); do
        c=$(curl -s -m 5 -o "$dir/resp.json" -w '%{http_code}' -H "Authorization: Bearer $ORG_KEY" \
                 -H "X-Workspace-Id: $WS" "$API/v1/messages/$1")
        [[ $c == 200 ]] && st=$(jget '",".join(sorted({r["status"] for r in d["recipients"]}))')
        [[ $st == "$2" ]] && break
        sleep 0.1
    done
    WSH=1 req ORG_KEY GET "/v1/messages/$1"
    expect 200 '"%s %s  %s\n%s" % (d["id"], d["client_id"], d["subject"], "\n".join("  %s: %s (%s)" % (
        r["address"], r["status"], r["last_response"]) for r in d["recipients"]))'
    [[ $(jget '",".join(sorted({r["status"] for r in d["recipients"]}))') == "$2" ]] ||
        die "message $1 is not $2 after 15 s"
}
WSH=0 IDEM="" nsaved=0
# The lines of a GET /v1/suppressions answer.
SUPP='"\n".join("%-22s scope %-11s %-12s %s" % (s["address"], s["scope"], s["reason"], s["detail"])
                for s in d["suppressions"]) or "(none)"'

step "the API (curl, the organization key): the workspace, its domain, DNS and a key for the app"
echo "  (API=$API, the config's [http] public_url)"
req ORG_KEY POST /v1/workspaces '{"name": "Demo", "website": "https://demo.example"}'
expect 201 '"id: %s\nname: %s" % (d["id"], d["name"])'
WS=$(jget 'd["id"]')
[[ $WS =~ ^ws_[a-z2-7]{16}$ ]] || die "no workspace id in the answer"
WSH=1
req ORG_KEY POST /v1/domains "{\"domain\": \"$DOMAIN\", \"algorithm\": \"both\"}"
expect 201 '"domain: %s, verified: %s, keys: %s\ndns_records (publish these):\n%s" % (d["domain"],
    d["verified"], ", ".join("%s (%s)" % (k["selector"], k["algorithm"]) for k in d["keys"]),
    "\n".join("  %-4s %-36s %s" % (r["type"], r["name"],
              r["value"] if len(r["value"]) <= 60 else r["value"][:57] + "...")
              for r in d["dns_records"]))'

# The DNS stand-in: exactly the records the API answered, served by dnsmasq on the
# port [mx] resolver names (TXT values in strings of at most 255 bytes, RFC 1035).
jget '"\n".join(
    ("txt-record=%s,%s" % (r["name"].rstrip("."), ",".join("\"%s\"" % r["value"][i:i + 255]
        for i in range(0, len(r["value"]), 255))) if r["type"] == "TXT" else
     "mx-host=%s,%s,%s" % (r["name"].rstrip("."), r["value"].split()[1].rstrip("."),
                           r["value"].split()[0]) if r["type"] == "MX" else
     "# not served: %s %s" % (r["type"], r["name"]))
    for r in d["dns_records"])' >dns.conf || die "cannot write dns.conf"
grep -q '["\\]' <(jget '"".join(r["value"] for r in d["dns_records"])') &&
    die "a record holds a quote or a backslash"
echo 'txt-record=ready.pmx.invalid,"ok"' >>dns.conf
if ((EUID == 0)); then
    as=(--user=nobody "--group=$(id -gn nobody)")
else
    as=("--user=$(id -un)" "--group=$(id -gn)")
fi
pmx_svc_run dnsmasq /usr/sbin/dnsmasq --keep-in-foreground --no-resolv --no-hosts --no-poll \
    --conf-file="$dir/dns.conf" --port="$dport" --listen-address=127.0.0.1 --bind-interfaces \
    "${as[@]}" --log-facility=- || die "dnsmasq did not start"
for ((i = 0; i < 50; i++)); do
    [[ $(pmx_svc_dns_txt "$dport" ready.pmx.invalid 2>/dev/null) == ok ]] && break
    sleep 0.1
done
[[ $(pmx_svc_dns_txt "$dport" ready.pmx.invalid 2>/dev/null) == ok ]] ||
    die "dnsmasq does not answer on 127.0.0.1:$dport: $(tail -n 3 "$PMX_RUN_LOG")"
echo "  (DNS stand-in: dnsmasq on 127.0.0.1:$dport, the config's [mx] resolver, now serves those records)"
req ORG_KEY POST /v1/domains/$DOMAIN/verify
expect 200 '"verified: %s\n%s" % (d["verified"], "\n".join("  %s %s: %s" % (r["type"], r["name"],
    "ok" if r["ok"] else "MISSING") for r in d["records"]))'
req ORG_KEY POST /v1/api-keys '{"name": "demo-app", "scopes": ["send"]}'
expect 201 '"id: %s, workspace: %s, scopes: %s\nkey: %s   (shown this once)" % (d["id"],
    d["workspace_id"], ",".join(d["scopes"]), d["key"])'
APP_KEY=$(jget 'd["key"]')
[[ $APP_KEY == pmx_* ]] || die "no key in the answer"
echo "  (the audit log: who made each change — the CLI made the organization key, that key the rest)"
"${psqlc[@]}" -d postmux -P pager=off -c "
    select api_key_id as by, coalesce(workspace_id, '-') as workspace, action, left(target, 40) as target
      from audit_log order by id" || die "psql failed"

step "sending through the API (curl, the app's send key)"
WSH=0 IDEM=receipt-1
req APP_KEY POST /v1/emails "{\"from\": \"Demo <hello@$DOMAIN>\", \"to\": \"heidi@example.net\", \"subject\": \"Your receipt\", \"text\": \"Thank you, Heidi: order 1042 is paid.\"}"
expect 202 '"id: " + d["id"]'
id_receipt=$(jget 'd["id"]')
echo "  (a newsletter: one-click unsubscribe links in the category \"newsletter\", docs/http.md)"
IDEM=newsletter-1
req APP_KEY POST /v1/emails "{\"from\": \"Demo News <news@$DOMAIN>\", \"to\": \"grace@example.net\", \"subject\": \"Demo newsletter #1\", \"text\": \"This month at Demo: ...\", \"unsubscribe\": true, \"category\": \"newsletter\"}"
expect 202 '"id: " + d["id"]'
id_news=$(jget 'd["id"]')
IDEM=""
echo "  (polling GET /v1/messages/{id} with the organization key, which may read, until both are sent:)"
wait_msg "$id_receipt" sent
wait_msg "$id_news" sent
show_log

# --- jobs -----------------------------------------------------------------------
step "enqueueing jobs with redis-cli, as an application would"
rc="redis-cli -s $PMX_REDIS_SOCK"
key="pmx:{$WS}:jobs"
shown "$rc XADD '$key' '*' from 'Demo <hello@$DOMAIN>' to 'alice@example.net' \\
    subject 'Welcome to postmux' text 'Hello Alice, your account is ready.' id welcome-1" ||
    die "XADD failed"
shown "$rc XADD '$key' '*' from 'Démo Team <news@$DOMAIN>' \\
    to 'Bob <bob@example.net>, carol@example.net' cc 'dan@example.net' bcc 'audit@example.net' \\
    subject 'Grüße aus Köln — 東京 ✉' text 'Hallo! Plain text part.' \\
    html '<p>Hallo! <b>HTML</b> part, äöü.</p>' header:X-Campaign spring id news-1 \\
    metadata '{\"campaign\":\"spring\"}'" || die "XADD failed"
cat >invoice.eml <<EOF
From: Billing <billing@$DOMAIN>
To: erin@example.net
Subject: Invoice 2026-11
Content-Type: text/plain; charset=us-ascii

Invoice 2026-11: 3 items, total EUR 42.00.
.a line starting with a dot (the relay sees it dot-stuffed)
EOF
echo "  (invoice.eml, a complete message for a raw job:)"
sed 's/^/    | /' invoice.eml
shown "$rc XADD '$key' '*' from billing@$DOMAIN to erin@example.net raw \"\$(cat invoice.eml)\" id invoice-1" ||
    die "XADD failed"
echo "  (one to an address the recipient's server does not know: the relay refuses it)"
shown "$rc XADD '$key' '*' from 'Demo <hello@$DOMAIN>' to 'perm-gone@example.net' \\
    subject 'Welcome' text 'Hello.' id welcome-gone" || die "XADD failed"
echo "  (and one that must be refused: a From domain the workspace has not verified)"
shown "$rc XADD '$key' '*' from 'spoof@other.example' to frank@example.net subject Hi text Hi id spoof-1" ||
    die "XADD failed"
want=10  # recipients: 2 (the API's) + 1 + 4 (to, to, cc, bcc) + 1 + 1 (bounced) + 1 (rejected)

step "waiting for every recipient's outcome"
for ((i = 0; i < 300; i++)); do
    n=$(q "select count(*) from recipients where status <> 'queued'" 2>/dev/null)
    [[ ${n:-0} -ge $want ]] && break
    sleep 0.1
done
show_log
if [[ ${n:-0} -lt $want ]]; then
    q "select m.client_id, r.address, r.status from messages m left join recipients r on r.message_id = m.id" |
        sed 's/^/  /'
    die "only ${n:-0} of $want recipients have an outcome after 30 s"
fi

step "outcomes (psql: messages ⋈ recipients)"
"${psqlc[@]}" -d postmux -P pager=off -c "
    select m.client_id as id, r.address, r.status, r.attempts,
           coalesce(left(r.last_response, 40), e.detail) as response_or_reason
      from recipients r join messages m on m.id = r.message_id
      left join events e on e.message_id = m.id and e.type = 'message.rejected'
                        and (e.recipient = r.address or e.recipient is null)
     order by m.created_at, m.client_id, r.address" || die "psql failed"
sent=$(q "select count(*) from recipients where status = 'sent'")
rejected=$(q "select count(*) from recipients where status = 'rejected'")
bounced=$(q "select count(*) from recipients where status = 'bounced'")
[[ $sent == 8 && $rejected == 1 && $bounced == 1 ]] ||
    die "expected 8 sent, 1 bounced and 1 rejected, got $sent, $bounced and $rejected"
pending=$(/usr/bin/redis-cli -s "$PMX_REDIS_SOCK" XPENDING "$key" postmux | head -n 1)
echo "  pending entries left in $key: $pending"

# --- what the relay received ----------------------------------------------------
for ((i = 0; i < 50; i++)); do
    (($(find "$sink" -type f -name 'msg.*[0-9]' | wc -l) >= 8)) && break
    sleep 0.1
done
step "what the relay received, with DKIM checked by python3-dkim (keys from the DNS stand-in)"
"$PY" - "$sink" "$dport" <<'PYEOF' || die "a DKIM signature did not verify"
import email.header, os, re, sys
import dkim, dns.resolver

sink, port = sys.argv[1], int(sys.argv[2])
res = dns.resolver.Resolver(configure=False)
res.nameservers, res.port = ["127.0.0.1"], port
looked = {}

def dnsfunc(name, timeout=5):
    name = name.decode() if isinstance(name, bytes) else name
    try:
        txt = b"".join(res.resolve(name, "TXT", lifetime=timeout)[0].strings)
    except Exception as e:
        looked[name] = "no answer (%s)" % e.__class__.__name__
        return None
    looked[name] = txt.decode()
    return txt

bad = 0
msgs = sorted((f for f in os.listdir(sink) if not f.endswith(".tmp")),
              key=lambda f: int(f.rsplit(".", 1)[1]))
for f in msgs:
    data = open(os.path.join(sink, f), "rb").read()
    if b"\r" not in data:
        data = data.replace(b"\n", b"\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("utf-8", "replace").split("\r\n")
    env = [l for l in lines if l.startswith(("X-Mail-From:", "X-Rcpt-To:"))]
    print("\n  --- %s ---" % f)
    print("  envelope: MAIL FROM %s; RCPT TO %s" % (
        env[0].split(":", 1)[1].strip() if env else "?",
        ", ".join(l.split(":", 1)[1].strip() for l in env[1:])))
    for l in lines:
        if l.startswith("X-") and l.split(":")[0] in ("X-Mail-From", "X-Rcpt-To"):
            continue
        short = l if len(l) <= 100 else l[:97] + "..."
        print("  | " + short)
        if l.lower().startswith("subject:") and "=?" in l:
            dec = str(email.header.make_header(email.header.decode_header(l.split(":", 1)[1])))
            print("  |   (decodes to: %s)" % dec)
    blines = body.decode("utf-8", "replace").split("\r\n")
    print("  |")
    for l in blines[:14]:
        print("  | " + l)
    if len(blines) > 14:
        print("  | ... (%d more lines)" % (len(blines) - 14))
    nsig = len(re.findall(rb"(?im)^dkim-signature\s*:", head))
    if nsig == 0:
        print("  DKIM: no signature")
        bad += 1
    d = dkim.DKIM(data)
    for i in range(nsig):
        looked.clear()
        try:
            ok = d.verify(idx=i, dnsfunc=dnsfunc)
        except dkim.DKIMException as e:
            ok = False
        sig = dict(dkim.util.parse_tag_value(re.sub(rb"\s+", b"",
                   [v for k, v in d.headers if k.lower() == b"dkim-signature"][i])))
        who = ", ".join("%s TXT %s" % (n, (t[:40] + "...") if len(t) > 43 else t)
                        for n, t in looked.items())
        print("  DKIM signature %d: a=%s d=%s s=%s -> %s   [DNS: %s]" % (
            i, sig.get(b"a", b"?").decode(), sig.get(b"d", b"?").decode(),
            sig.get(b"s", b"?").decode(), "pass" if ok else "FAIL", who))
        bad += 0 if ok else 1

# The other way round: a copy of a delivered message with its Subject changed must fail.
f = msgs[0]
data = open(os.path.join(sink, f), "rb").read()
if b"\r" not in data:
    data = data.replace(b"\n", b"\r\n")
forged = re.sub(rb"(?m)^Subject: ", b"Subject: [changed] ", data, count=1)
try:
    still = dkim.DKIM(forged).verify(idx=0, dnsfunc=dnsfunc)
except dkim.DKIMException:
    still = False
print("\n  tampered copy of %s (Subject changed): DKIM signature 0 -> %s" % (
    f, "pass (WRONG)" if still else "fail, as it must"))
bad += 1 if still else 0
print()
print("  %d messages, %s" % (len(msgs),
      "every DKIM signature verifies" if bad == 0 else "%d failures" % bad))
sys.exit(1 if bad else 0)
PYEOF

# --- what comes back --------------------------------------------------------------
step "what comes back: perm-gone was refused at once; alice's mailbox is gone, and her provider's bounce reaches the [inbound] listener"
"${psqlc[@]}" -d postmux -P pager=off -c "
    select r.address, r.status, r.bounce_class, left(r.last_response, 50) as last_response
      from recipients r where r.status = 'bounced'" || die "psql failed"
mid=$(q "select id from messages where client_id = 'welcome-1'")
# Alice's message went out with its own return path, b-<token>@bounces.demo.example
# (docs/feedback.md "Return path (VERP)"); the token is also in its X-Postmux-Ref.
token=$("$PY" - "$sink" <<'PYEOF'
import os, re, sys
for f in sorted(os.listdir(sys.argv[1])):
    data = open(os.path.join(sys.argv[1], f), "rb").read()
    if re.search(rb"(?mi)^X-Rcpt-To: <?alice@example\.net>?\r?$", data):
        m = re.search(rb"(?mi)^X-Postmux-Ref: ([a-z2-7]+)\r?$", data)
        if m:
            print(m.group(1).decode())
            break
PYEOF
) || die "cannot read alice's message"
[[ -n $token ]] || die "alice's message carries no X-Postmux-Ref"
echo "  alice's message $mid: X-Postmux-Ref $token, return path b-$token@bounces.$DOMAIN"
cat >bounce.eml <<EOF
From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
To: b-$token@bounces.$DOMAIN
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b1"

--b1
Content-Type: text/plain

Your message to alice@example.net could not be delivered: no such mailbox.

--b1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; alice@example.net
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <alice@example.net>: Recipient address rejected: User unknown

--b1--
EOF
echo "  (bounce.eml, an RFC 3464 report, sent with python's smtplib as a remote MTA would:)"
"$PY" - "$iport" "b-$token@bounces.$DOMAIN" bounce.eml <<'PYEOF' || die "the inbound listener did not take the bounce"
import smtplib, sys
port, rcpt, path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
data = open(path, "rb").read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
s = smtplib.SMTP("127.0.0.1", port)
code, text = s.ehlo("mx.example.net")
print("  -> EHLO mx.example.net\n  <- %d %s" % (code, text.decode().splitlines()[0]))
for cmd, fn in (("MAIL FROM:<>", lambda: s.mail("")), ("RCPT TO:<%s>" % rcpt, lambda: s.rcpt(rcpt)),
                ("DATA (bounce.eml)", lambda: s.data(data))):
    code, text = fn()
    print("  -> %s\n  <- %d %s" % (cmd, code, text.decode()))
s.quit()
sys.exit(0 if code == 250 else 1)
PYEOF
for ((i = 0; i < 100; i++)); do
    [[ $(q "select status from recipients where message_id = '$mid'") == bounced ]] && break
    sleep 0.1
done
show_log
"${psqlc[@]}" -d postmux -P pager=off -c "
    select r.address, r.status, r.bounce_class, e.type as event, e.detail
      from recipients r join events e on e.message_id = r.message_id and e.type = 'message.bounced'
     where r.message_id = '$mid'" || die "psql failed"
[[ $(q "select status from recipients where message_id = '$mid'") == bounced ]] ||
    die "alice's recipient row did not become bounced"
WSH=1
req ORG_KEY GET /v1/suppressions
expect 200 "$SUPP"
WSH=0
echo "  (the next job to alice and perm-gone relays nothing:)"
shown "$rc XADD '$key' '*' from 'Demo <hello@$DOMAIN>' to 'alice@example.net, perm-gone@example.net' \\
    subject 'Are you there?' text 'Hello again.' id welcome-2" || die "XADD failed"
st2() { q "select string_agg(distinct r.status, ',') from recipients r join messages m on m.id = r.message_id where m.client_id = 'welcome-2' having count(*) = 2"; }
for ((i = 0; i < 100; i++)); do
    [[ -n $(st2) ]] && break
    sleep 0.1
done
"${psqlc[@]}" -d postmux -P pager=off -c "
    select m.client_id as id, r.address, r.status, r.last_response
      from recipients r join messages m on m.id = r.message_id
     where m.client_id in ('welcome-1', 'welcome-gone', 'welcome-2')
     order by m.created_at, r.address" || die "psql failed"
[[ $(st2) == suppressed ]] || die "the next job to alice and perm-gone was not suppressed"

# --- one-click unsubscribe --------------------------------------------------------
step "one-click unsubscribe (RFC 8058): grace's newsletter, its link followed as her mail provider would"
# The message the relay received for grace (the API's newsletter-1) and its headers.
"$PY" - "$sink" >unsub.txt <<'PYEOF' || die "no newsletter for grace in the relay's store"
import email, email.policy, os, re, sys
d = sys.argv[1]
for f in sorted(os.listdir(d), key=lambda f: int(f.rsplit(".", 1)[1]) if f[-1].isdigit() else 0):
    data = open(os.path.join(d, f), "rb").read()
    if not re.search(rb"(?mi)^X-Rcpt-To: <?grace@example\.net>?\r?$", data):
        continue
    m = email.message_from_bytes(data, policy=email.policy.compat32)
    lu, lup = m.get("List-Unsubscribe"), m.get("List-Unsubscribe-Post")
    if not lu:
        sys.exit(1)
    lu = re.sub(r"\s+", " ", lu)
    url = re.search(r"<(https?://[^>]+)>", lu)
    print("%s\n%s\n%s\n%s" % (f, lu, lup, url.group(1) if url else ""))
    sys.exit(0)
sys.exit(1)
PYEOF
{ read -r ufile; read -r uhdr; read -r upost; read -r U; } <unsub.txt
echo "  $ufile (to grace@example.net, covered by both DKIM signatures above):"
echo "  | List-Unsubscribe: $uhdr"
echo "  | List-Unsubscribe-Post: $upost"
[[ $U == "$API/u/"* ]] || die "no $API/u/ link in grace's List-Unsubscribe"
echo "  U=$U"
echo "  (GET: what a link scanner, or grace's browser, sees: a page with a button; nothing is written)"
printf '%s$ %s%s\n' "$D" 'curl $U' "$N"
code=$(curl -sS -m 10 -o page.html -w '%{http_code}' "$U") || die "curl GET $U failed"
printf '  -> %s\n' "$code"
[[ $code == 200 ]] || die "GET $U: $code"
"$PY" - page.html <<'PYEOF' || die "the page is not the unsubscribe page"
import html.parser, sys
class P(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(); self.out, self.skip, self.state = [], 0, None
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("style", "title"): self.skip += 1
        if tag == "p" and "data-state" in a: self.state = a["data-state"]
        if tag == "button": self.out.append("[")
    def handle_endtag(self, tag):
        if tag in ("style", "title"): self.skip -= 1
        if tag == "button": self.out.append("]")
        if tag in ("h1", "p", "form"): self.out.append("\n")
    def handle_data(self, t):
        if not self.skip: self.out.append(t)
p = P(); p.feed(open(sys.argv[1], encoding="utf-8").read())
for line in "".join(p.out).splitlines():
    if line.strip(): print("     page: " + line.strip())
print("     (state: %s)" % p.state)
sys.exit(0 if p.state == "subscribed" else 1)
PYEOF
WSH=1
req ORG_KEY GET "/v1/suppressions?reason=unsubscribe"
expect 200 "$SUPP"
[[ $(jget 'len(d["suppressions"])') == 0 ]] || die "the GET wrote a suppression"
WSH=0
echo "  (POST: the one-click request of RFC 8058, as a mail provider sends it)"
printf '%s$ %s%s\n' "$D" 'curl -X POST $U -d List-Unsubscribe=One-Click' "$N"
code=$(curl -sS -m 10 -o done.txt -w '%{http_code}' -X POST "$U" -d List-Unsubscribe=One-Click) ||
    die "curl POST $U failed"
printf '  -> %s %s\n' "$code" "$(head -c 100 done.txt)"
[[ $code == 200 && $(cat done.txt) == unsubscribed ]] || die "POST $U: $code"
WSH=1
req ORG_KEY GET "/v1/suppressions?reason=unsubscribe"
expect 200 "$SUPP"
[[ $(jget '[(s["address"], s["scope"]) for s in d["suppressions"]]') == "[('grace@example.net', 'newsletter')]" ]] ||
    die "grace is not suppressed in the category newsletter"
req ORG_KEY GET "/v1/events?type=message.unsubscribed"
expect 200 '"\n".join("%s %s %s %s %s" % (e["id"], e["type"], e["recipient"], e["message_id"], e["detail"])
                      for e in d["events"]) or "(none)"'
[[ $(jget 'len(d["events"])') == 1 ]] || die "not one message.unsubscribed event"
WSH=0
echo "  (the next newsletter to grace is suppressed; mail outside that category still reaches her:)"
IDEM=newsletter-2
req APP_KEY POST /v1/emails "{\"from\": \"Demo News <news@$DOMAIN>\", \"to\": \"grace@example.net\", \"subject\": \"Demo newsletter #2\", \"text\": \"Next month at Demo: ...\", \"unsubscribe\": true, \"category\": \"newsletter\"}"
expect 202 '"id: " + d["id"]'
id_news2=$(jget 'd["id"]')
IDEM=receipt-2
req APP_KEY POST /v1/emails "{\"from\": \"Demo <hello@$DOMAIN>\", \"to\": \"grace@example.net\", \"subject\": \"Your receipt\", \"text\": \"Thank you, Grace: order 1043 is paid.\"}"
expect 202 '"id: " + d["id"]'
id_receipt2=$(jget 'd["id"]')
IDEM=""
wait_msg "$id_news2" suppressed
wait_msg "$id_receipt2" sent
show_log

if [[ -n ${DEMO_KEEP-} && ${DEMO_KEEP} != 0 ]]; then
    step "DEMO_KEEP=1: everything keeps running; Ctrl-C stops it all"
    cat <<EOF
  Try, in another terminal:
    export POSTMUX_CONFIG=$POSTMUX_CONFIG PATH=$bin:\$PATH API=$API WS=$WS APP_KEY=$APP_KEY ORG_KEY=$ORG_KEY
    curl -X POST "\$API/v1/emails" -H "Authorization: Bearer \$APP_KEY" --json '{"from": "hello@$DOMAIN", "to": "you@example.net", "subject": "Hi", "text": "Hello"}'
    curl "\$API/v1/events" -H "Authorization: Bearer \$ORG_KEY" -H "X-Workspace-Id: \$WS"
    redis-cli -s $PMX_REDIS_SOCK XADD '$key' '*' from hello@$DOMAIN to you@example.net subject Hi text Hello
    $PMX_PG_BIN/psql -h $PMX_PG_HOST -p $PMX_PG_PORT -U $PMX_PG_USER postmux -c 'select * from recipients'
    ls $sink
  postmuxd's log follows:
EOF
    tail -n 0 -f "$dlog" --pid="$dpid" | sed -u "s/^/  postmuxd | /"
fi
step "stopping everything"
stop_daemon
pmx_svc_stop_all
echo "done."
exit 0
