#!/usr/bin/env bash
# scripts/demo.sh — `make demo`: postmux end to end on throwaway services, in one go.
#
# Installs missing Debian packages (scripts/deps.sh) and builds the release binaries
# when needed, starts a private PostgreSQL, Redis, a relay (tests/tools/tls_relay.py on
# Debian's python3-aiosmtpd: it stores every message it receives in a file, and refuses
# recipients whose local part starts with "perm" as unknown) and dnsmasq (the DNS stand-in that publishes the DKIM
# records `postmux domain add` printed), migrates, creates the workspace "Demo" with
# the domain demo.example (RSA-2048 + Ed25519 keys, verified with --skip-dns), runs
# postmuxd in the background, enqueues jobs with `redis-cli XADD` exactly as an
# application would, waits for their outcomes, prints them from Postgres, and shows
# each delivered message with its DKIM signatures checked by python3-dkim against the
# keys found in DNS. Then the loop back (docs/feedback.md): the relay refused one
# recipient as unknown (a hard bounce, suppressed at once), and a bounce report for
# another, delivered recipient arrives at the [inbound] SMTP listener, which suppresses
# that address too; the next job to both is suppressed. Then everything stops.
#
#   make demo                  (or: bash scripts/demo.sh)
#   DEMO_KEEP=1 make demo      keep everything running (logs follow) until Ctrl-C
#   DEMO_BIN_DIR=DIR           use the postmux/postmuxd in DIR (no deps.sh, no build)
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
    bin=$DEMO_BIN_DIR
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
step "config ($POSTMUX_CONFIG)"
sed 's/^/    /' "$POSTMUX_CONFIG"

cd "$dir" || die "cannot cd to $dir"
step "schema and a workspace"
PATH=$bin:$PATH
shown "postmux migrate" || die "migrate failed"
printf '%s$ %s%s\n' "$D" 'ws=$(postmux workspace create Demo)' "$N"
ws=$(postmux workspace create Demo) || die "workspace create failed"
echo "$ws"
shown "postmux domain add Demo $DOMAIN --algorithm both | tee records.txt" || die "domain add failed"
shown "postmux domain verify $DOMAIN --skip-dns" || die "domain verify failed"
shown "postmux domain list" || die "domain list failed"

# The DNS stand-in: the records exactly as printed above, served by dnsmasq.
awk '$2 == "TXT" {
        name = $1; sub(/\.$/, "", name)
        rest = $0; sub(/^[^ ]+ TXT /, "", rest)
        gsub(/" "/, "\",\"", rest)
        print "txt-record=" name "," rest
     }' records.txt >dns.conf
echo 'txt-record=ready.pmx.invalid,"ok"' >>dns.conf
pmx_svc_dns_start dns.conf >/dev/null || die "dnsmasq did not start"
echo "  (DNS stand-in: dnsmasq on 127.0.0.1:$PMX_DNS_PORT serves those records)"

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
for ((i = 0; i < 150; i++)); do
    (($(grep -c 'pipeline started' "$dlog") >= WORKERS)) && break
    pmx_svc__alive "$dpid" "$dst" || { show_log; die "postmuxd exited"; }
    sleep 0.1
done
show_log

# --- jobs -----------------------------------------------------------------------
step "enqueueing jobs with redis-cli, as an application would"
rc="redis-cli -s $PMX_REDIS_SOCK"
key="pmx:{$ws}:jobs"
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
want=8   # recipients: 1 + 4 (to, to, cc, bcc) + 1 + 1 (bounced) + 1 (rejected)

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
[[ $sent == 6 && $rejected == 1 && $bounced == 1 ]] ||
    die "expected 6 sent, 1 bounced and 1 rejected, got $sent, $bounced and $rejected"
pending=$(/usr/bin/redis-cli -s "$PMX_REDIS_SOCK" XPENDING "$key" postmux | head -n 1)
echo "  pending entries left in $key: $pending"

# --- what the relay received ----------------------------------------------------
for ((i = 0; i < 50; i++)); do
    (($(find "$sink" -type f -name 'msg.*[0-9]' | wc -l) >= 6)) && break
    sleep 0.1
done
step "what the relay received, with DKIM checked by python3-dkim (keys from the DNS stand-in)"
"$PY" - "$sink" "$PMX_DNS_PORT" <<'PYEOF' || die "a DKIM signature did not verify"
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
shown "postmux suppression list Demo" || die "suppression list failed"
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

if [[ -n ${DEMO_KEEP-} && ${DEMO_KEEP} != 0 ]]; then
    step "DEMO_KEEP=1: everything keeps running; Ctrl-C stops it all"
    cat <<EOF
  Try, in another terminal:
    export POSTMUX_CONFIG=$POSTMUX_CONFIG PATH=$bin:\$PATH
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
