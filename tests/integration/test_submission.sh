#!/usr/bin/env bash
# SMTP submission (docs/submission.md, issue 6) against the real postmuxd, driven by clients
# the project did not write: swaks and Python's smtplib (raw sockets where a
# well-behaved client cannot misbehave: smuggling, STARTTLS injection). Checks what
# lands in the workspace streams, not delivery (that is the pipeline's test).
source "$(dirname "$0")/lib.sh"
t_setup

command -v swaks >/dev/null || { t_case "swaks is installed"; t_fail "no swaks"; t_done; }
PY=/usr/bin/python3

# ---- certificate, config, fixtures ---------------------------------------------------
CERT=$T_DIR/cert.pem
KEY=$T_DIR/key.pem
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$KEY" -out "$CERT" -days 2 \
    -subj /CN=localhost -addext 'subjectAltName=DNS:localhost,IP:127.0.0.1' >/dev/null 2>&1 ||
    { t_case "a test certificate"; t_fail "openssl req failed"; t_done; }
PORT=$(pmx_svc_free_port)
t_conf_set daemon workers 2
t_conf_set submission listen "127.0.0.1:$PORT"
t_conf_set submission tls_cert "$CERT"
t_conf_set submission tls_key "$KEY"
t_conf_set submission auth_requires_tls yes
t_conf_set submission max_message_size 64K

ACME=$($PMX workspace create Acme)
BETA=$($PMX workspace create Beta)
$PMX domain add Acme acme.test --algorithm ed25519 >/dev/null
$PMX domain add Acme unverified.test --algorithm ed25519 >/dev/null
$PMX domain add Beta beta.test --algorithm ed25519 >/dev/null
$PMX domain verify acme.test --skip-dns >/dev/null
$PMX domain verify beta.test --skip-dns >/dev/null
K_ACME=$($PMX apikey create --workspace Acme --name smtp 2>/dev/null)
K_ORG=$($PMX apikey create --org --name org 2>/dev/null)
K_READ=$($PMX apikey create --workspace Acme --name readonly --scopes read 2>/dev/null)
K_REV=$($PMX apikey create --workspace Acme --name old 2>"$T_DIR/rev.err")
REV_ID=$(grep -oE 'key_[a-z2-7]{16}' "$T_DIR/rev.err" | head -n 1)
$PMX apikey revoke "$REV_ID" >/dev/null

STREAM_A="pmx:{$ACME}:jobs"
STREAM_B="pmx:{$BETA}:jobs"
# Jobs ever added to a stream (the pipeline consumes and deletes them as it goes).
slen() { t_redis XINFO STREAM "$1" 2>/dev/null | awk 'p { print; exit } /^entries-added$/ { p = 1 }' | grep . || echo 0; }
source "$(dirname "$0")/dkim_lib.sh"
KEYS=$T_DIR/keys.json
dkim_keys_json "$KEYS"
# The sink file holding the message whose Subject is $1 (waits for it).
sink_file() {
    t_wait_for 15 "grep -l -- '^Subject: $1' $T_SINK_DIR/* >/dev/null 2>&1"
    grep -l -- "^Subject: $1" "$T_SINK_DIR"/* 2>/dev/null | head -n 1
}
# The message row of a stream entry, as "workspace|mail_from|source|recipient statuses".
msg_row() {
    t_wait_for 15 "[[ \$(t_psql \"select count(*) from recipients r join messages m on m.id = r.message_id
                                    where m.job_id = '$1' and r.status = 'sent'\") -ge 1 ]]"
    t_psql "select m.workspace_id || '|' || m.mail_from || '|' || m.source || '|' ||
                   string_agg(r.address || '=' || r.status, ',' order by r.address)
            from messages m join recipients r on r.message_id = m.id where m.job_id = '$1'
            group by m.id"
}

# The Python side: smtplib with certificate verification against $CERT, and raw
# sockets for what a correct client would never send.
TOOL=$T_DIR/smtp_tool.py
cat >"$TOOL" <<'EOF'
import base64, os, smtplib, socket, ssl, sys, time
port, cert, cmd = int(sys.argv[1]), sys.argv[2], sys.argv[3]
args = sys.argv[4:]

def ctx():
    return ssl.create_default_context(cafile=cert)

def session(tls=True, key=None):
    s = smtplib.SMTP("127.0.0.1", port, timeout=30)
    s.ehlo("client.test")
    if tls:
        s.starttls(context=ctx())
        s.ehlo("client.test")
    if key:
        s.login("apikey", key)
    return s

def extra(sock, wait=1.0):
    """Whatever the server sends without being asked (must be nothing)."""
    sock.settimeout(wait)
    try:
        return sock.recv(4096)
    except (socket.timeout, ssl.SSLError, OSError):
        return b""

def closed(sock, wait=2.0):
    """'closed' when the server closed the connection, 'open' when it kept quiet."""
    sock.settimeout(wait)
    try:
        return "closed" if sock.recv(4096) == b"" else "data"
    except (socket.timeout, TimeoutError):
        return "open"
    except OSError:
        return "closed"

def plain(key):
    return base64.b64encode(b"\0apikey\0" + key.encode()).decode()

if cmd == "features":                     # features TLS(0|1)
    s = session(tls=args[0] == "1")
    for k in sorted(s.esmtp_features):
        print(k, s.esmtp_features[k].strip())
    s.quit()
elif cmd == "auth_clear":                 # AUTH on the clear-text channel
    s = session(tls=False)
    code, text = s.docmd("AUTH", "PLAIN " + plain(args[0]))
    print(code, text.decode())
elif cmd == "login_method":               # login_method KEY PLAIN|LOGIN
    s = session()
    s.user, s.password = "apikey", args[0]
    meth = s.auth_plain if args[1] == "PLAIN" else s.auth_login
    code, text = s.auth(args[1], meth)
    print(code, text.decode())
    s.quit()
elif cmd == "smuggle":                    # smuggle KEY SEPARATOR(python bytes literal)
    sep = eval(args[1])
    s = session(key=args[0])
    s.mail("a@acme.test")
    s.rcpt("r@example.com")
    code, _ = s.docmd("DATA")
    print("DATA", code)
    body = (b"From: a@acme.test\r\nTo: r@example.com\r\nSubject: first\r\n\r\nfirst" + sep +
            b"MAIL FROM:<evil@acme.test>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\n"
            b"From: evil@acme.test\r\nTo: victim@example.com\r\nSubject: hidden\r\n\r\nhidden")
    s.send(body + b"\r\n.\r\n")
    code, text = s.getreply()
    print("END", code, text.decode())
    print("EXTRA", repr(extra(s.sock)))
    print("NOOP", s.noop()[0])
    s.quit()
elif cmd == "inject":                     # STARTTLS\r\nRSET\r\n in one packet
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    f = sock.makefile("rb")
    def reply():
        lines = []
        while True:
            l = f.readline()
            lines.append(l)
            if len(l) < 4 or l[3:4] != b"-":
                return b"".join(lines)
    reply()
    sock.sendall(b"EHLO client.test\r\n"); reply()
    sock.sendall(b"STARTTLS\r\nRSET\r\n")
    print("STARTTLS", reply().decode().strip())
    tls = ctx().wrap_socket(sock, server_hostname="127.0.0.1")
    print("AFTER-TLS", repr(extra(tls, 1.5)))
    tls.settimeout(10)
    tls.sendall(b"EHLO client.test\r\n")
    print("EHLO", tls.recv(4096).decode().splitlines()[0])
elif cmd == "raw":                        # raw LINE(python bytes literal): one exchange, no TLS
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.recv(4096)
    sock.sendall(eval(args[0]))
    time.sleep(0.3)
    print(sock.recv(65536).decode(errors="replace").strip())
elif cmd == "rcpts":                      # rcpts KEY N: codes of N RCPT
    s = session(key=args[0])
    s.mail("a@acme.test")
    codes = [s.rcpt("r%d@example.com" % i)[0] for i in range(int(args[1]))]
    print("ok", codes.count(250), "last", codes[-1], s.rcpt("r0@example.com")[0])
    s.quit()
elif cmd == "odd_rcpts":                  # odd_rcpts KEY SUBJECT: RCPT replies, then DATA
    s = session(key=args[0])
    s.mail("a@acme.test")
    for a in ['"a b"@dest.test', 'a b@dest.test', ' sp@dest.test', '""@dest.test',
              'lit@[192.0.2.1]', 'ok@dest.test']:
        code, text = s.docmd("RCPT", "TO:<%s>" % a)
        print("RCPT <%s> %d %s" % (a, code, text.decode()))
    code, text = s.data(b"From: a@acme.test\r\nTo: ok@dest.test\r\nSubject: " + args[1].encode() +
                        b"\r\n\r\nbody\r\n")
    print("DATA", code, text.decode())
    s.quit()
elif cmd == "send":                       # send KEY FROM TO MESSAGE-FILE
    s = session(key=args[0])
    try:
        s.sendmail(args[1], [args[2]], open(args[3], "rb").read())
        print("250")
    except smtplib.SMTPDataError as e:
        print(e.smtp_code, e.smtp_error.decode())
    except smtplib.SMTPRecipientsRefused as e:
        print(list(e.recipients.values())[0][0])
    s.quit()
elif cmd == "badauth":                    # badauth N: N wrong keys in one session
    s = session()
    for i in range(int(args[0])):
        t0 = time.monotonic()
        try:
            code, text = s.docmd("AUTH", "PLAIN " + plain("pmx_wrong%d" % i))
        except smtplib.SMTPServerDisconnected:
            print(i + 1, "closed")
            break
        print(i + 1, code, "%.2f" % (time.monotonic() - t0), text.decode())
        if code == 421:
            print("after", closed(s.sock))
            break
elif cmd == "badauth_spread":             # badauth_spread SRC N: N sessions from SRC, one wrong key each
    ss = []
    for i in range(int(args[1])):
        s = smtplib.SMTP("127.0.0.1", port, timeout=30, source_address=(args[0], 0))
        s.ehlo("client.test")
        s.starttls(context=ctx())
        s.ehlo("client.test")
        ss.append(s)
        time.sleep(0.05)
    for i, s in enumerate(ss):
        try:
            code, text = s.docmd("AUTH", "PLAIN " + plain("pmx_wrong%d" % i))
        except smtplib.SMTPServerDisconnected:
            code, text = "closed", b""
        print(i + 1, code, text.decode())
        if code == 421:
            break
elif cmd == "greeting":
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    print(sock.recv(4096).decode().strip())
elif cmd == "hold":                       # hold KEY GO-FILE: MAIL, wait for GO-FILE, finish
    s = session(key=args[0])
    print("MAIL", s.mail("a@acme.test")[0], flush=True)
    while not os.path.exists(args[1]):
        time.sleep(0.05)
    print("RCPT", s.rcpt("r@example.com")[0])
    code, _ = s.data(b"From: a@acme.test\r\nTo: r@example.com\r\nSubject: drain\r\n\r\nbody\r\n")
    print("DATA", code)
    try:
        print("NEXT", s.noop()[0])
    except smtplib.SMTPServerDisconnected:
        print("NEXT closed")
elif cmd == "idle":                       # idle KEY: authenticated, then waits for the server
    s = session(key=args[0])
    print("READY", flush=True)
    s.sock.settimeout(30)
    print("GOT", s.sock.recv(4096).decode().strip())
EOF
tool() { "$PY" "$TOOL" "$PORT" "$CERT" "$@"; }

SWAKS=(swaks --server 127.0.0.1 --port "$PORT" --tls --helo client.test --timeout 30
       --to r1@example.com)
msg_file() {   # msg_file FILE FROM [extra header lines...]
    local f=$1 from=$2
    shift 2
    { printf 'From: %s\r\nTo: r1@example.com\r\nSubject: test\r\n' "$from"
      for h in "$@"; do printf '%s\r\n' "$h"; done
      printf '\r\nhello\r\n'; } >"$f"
}

# For the X-Postmux-Category case; the workers load the list before reading any job.
$PMX suppression add Acme cat@example.com --scope news --reason unsubscribe >/dev/null
DLOG=$T_DIR/postmuxd.log
"$PMXD" -c "$T_CONF" >>"$DLOG" 2>&1 &
D=$!
t_case "postmuxd serves submission"
t_wait_for 15 "tool greeting | grep -q '^220 '"
t_wait_for 15 "[[ \$(grep -c 'submission listening' '$DLOG') -ge 2 ]]"
t_wait_for 15 "[[ \$(grep -c 'settings loaded' '$DLOG') -ge 2 ]]"

# ---- EHLO and AUTH before TLS ---------------------------------------------------------
t_case "EHLO before STARTTLS offers STARTTLS and the extensions, not AUTH"
t_run tool features 0
t_expect_rc 0
for k in starttls pipelining size 8bitmime enhancedstatuscodes; do
    t_expect_match "$T_OUT" "^$k" "EHLO keyword $k"
done
t_expect_match "$T_OUT" '^size 65536$' "SIZE = max_message_size"
t_expect_nomatch "$T_OUT" '^auth' "AUTH before TLS"

t_case "EHLO after STARTTLS offers AUTH PLAIN LOGIN, no longer STARTTLS"
t_run tool features 1
t_expect_rc 0
t_expect_match "$T_OUT" '^auth PLAIN LOGIN$' "AUTH"
t_expect_nomatch "$T_OUT" '^starttls' "STARTTLS after TLS"

t_case "AUTH before STARTTLS is refused (auth_requires_tls = yes)"
t_run tool auth_clear "$K_ACME"
t_expect_match "$T_OUT" '^530 5\.7\.0 ' "reply"

# ---- a good submission ------------------------------------------------------------------
t_case "swaks: STARTTLS + AUTH PLAIN with a workspace key -> 250 queued, delivered DKIM-signed, source smtp"
N0=$(slen "$STREAM_A")
t_run "${SWAKS[@]}" --auth PLAIN --auth-user apikey --auth-password "$K_ACME" \
    --from sender@acme.test --to r1@example.com,r2@example.com --header 'Subject: hello from swaks'
t_expect_rc 0
t_expect_match "$T_OUT" ' 250 2\.0\.0 Ok: queued as [0-9]+-[0-9]+$' "DATA reply"
ENTRY=$(grep -oE 'queued as [0-9]+-[0-9]+' <<<"$T_OUT" | awk '{ print $3 }')
t_expect_eq "$(slen "$STREAM_A")" "$((N0 + 1))" "jobs added to Acme's stream"
t_expect_eq "$(msg_row "$ENTRY")" "$ACME|sender@acme.test|smtp|r1@example.com=sent,r2@example.com=sent" "recorded"
f=$(sink_file 'hello from swaks')
mkdir -p "$T_DIR/v1" && cp "$f" "$T_DIR/v1/" 2>/dev/null
t_expect_eq "$(dkim_verify_dir "$KEYS" "$T_DIR/v1")" "ok 1" "DKIM verification"
t_expect_match "$(grep '^DKIM-Signature:' -A3 "$f" | tr -d '\r\n\t ')" 'd=acme\.test' "signed for acme.test"

t_case "X-Postmux-Category: the job's category (a suppression in that scope holds), removed before signing"
# (cat@example.com was suppressed in scope news before postmuxd started.)
t_run "${SWAKS[@]}" --auth PLAIN --auth-user apikey --auth-password "$K_ACME" \
    --from sender@acme.test --to cat@example.com,dog@example.com \
    --header 'Subject: category news' --header 'X-Postmux-Category: news'
t_expect_rc 0
ENTRY=$(grep -oE 'queued as [0-9]+-[0-9]+' <<<"$T_OUT" | awk '{ print $3 }')
t_wait_for 30 "[[ \$(msg_row "$ENTRY") == *dog@example.com=sent* ]]"
t_expect_eq "$(msg_row "$ENTRY")" "$ACME|sender@acme.test|smtp|cat@example.com=suppressed,dog@example.com=sent" "recorded"
f=$(sink_file 'category news')
t_expect_eq "$(grep -ci '^X-Postmux-Category' "$f")" 0 "the header is not delivered"
t_run "${SWAKS[@]}" --auth PLAIN --auth-user apikey --auth-password "$K_ACME" \
    --from sender@acme.test --header 'Subject: bad category' --header 'X-Postmux-Category: News Letter'
t_expect_match "$T_OUT" ' 550 5\.6\.0 .*category' "a bad category is refused, naming it"
t_run "${SWAKS[@]}" --auth PLAIN --auth-user apikey --auth-password "$K_ACME" \
    --from sender@acme.test --header 'Subject: two categories' --header 'X-Postmux-Category: a' \
    --header 'X-Postmux-Category: b'
t_expect_match "$T_OUT" ' 550 5\.6\.0 More than one X-Postmux-Category header' "two are refused"

t_case "RCPT TO: a quoted local part is accepted and delivered with its sibling; what the relay cannot send -> 553 5.1.3"
t_run tool odd_rcpts "$K_ACME" 'odd recipients'
t_expect_rc 0
t_expect_match "$T_OUT" '^RCPT <"a b"@dest\.test> 250 ' "quoted local part"
t_expect_match "$T_OUT" '^RCPT <a b@dest\.test> 553 5\.1\.3 .*unexpected space in local part' "unquoted space"
t_expect_match "$T_OUT" '^RCPT < sp@dest\.test> 553 5\.1\.3 .*unexpected space' "space inside the brackets"
t_expect_match "$T_OUT" '^RCPT <""@dest\.test> 553 5\.1\.3 .*empty local part' "empty quoted local part"
t_expect_match "$T_OUT" '^RCPT <lit@\[192\.0\.2\.1\]> 553 5\.1\.3 .*address literals' "address literal"
t_expect_match "$T_OUT" '^RCPT <ok@dest\.test> 250 ' "plain address"
t_expect_match "$T_OUT" '^DATA 250 2\.0\.0 Ok: queued as ' "DATA reply"
ENTRY=$(grep -oE 'queued as [0-9]+-[0-9]+' <<<"$T_OUT" | awk '{ print $3 }')
odd_sent() { t_psql "select string_agg(r.address || '=' || r.status, ',' order by r.address)
                     from recipients r join messages m on m.id = r.message_id where m.job_id = '$ENTRY'"; }
t_wait_for 30 "[[ \$(odd_sent) == *ok@dest.test=sent* && \$(odd_sent) != *queued* ]]"
t_expect_eq "$(odd_sent)" '"a b"@dest.test=sent,ok@dest.test=sent' "both recipients sent"
f=$(sink_file 'odd recipients')
t_expect_eq "$(grep -cF 'X-Rcpt-Args: <"a b"@dest.test>' "$f")" 1 "relayed with the quoted local part"

t_case "AUTH LOGIN works too (swaks and smtplib)"
t_run "${SWAKS[@]}" --auth LOGIN --auth-user apikey --auth-password "$K_ACME" --from sender@acme.test
t_expect_match "$T_OUT" ' 235 2\.7\.0 ' "AUTH reply"
t_expect_match "$T_OUT" ' 250 2\.0\.0 Ok: queued as ' "DATA reply"
t_run tool login_method "$K_ACME" LOGIN
t_expect_match "$T_OUT" '^235 2\.7\.0 ' "smtplib AUTH LOGIN"

# ---- refusals ---------------------------------------------------------------------------------
N0=$(slen "$STREAM_A")
t_case "no AUTH -> 530 5.7.0 at MAIL, nothing queued"
t_run "${SWAKS[@]}" --from sender@acme.test
t_expect_match "$T_OUT" ' 530 5\.7\.0 Authentication required' "MAIL reply"
t_expect_eq "$(slen "$STREAM_A")" "$N0" "stream length"

t_case "a wrong key -> 535 5.7.8"
t_run "${SWAKS[@]}" --auth PLAIN --auth-user apikey --auth-password pmx_not_a_real_key --from sender@acme.test
t_expect_match "$T_OUT" ' 535 5\.7\.8 Authentication credentials invalid' "AUTH reply"

t_case "a revoked key -> 535 5.7.8"
t_run "${SWAKS[@]}" --auth PLAIN --auth-user apikey --auth-password "$K_REV" --from sender@acme.test
t_expect_match "$T_OUT" ' 535 5\.7\.8 .*revoked' "AUTH reply"

t_case "a key without the send scope -> 535 5.7.8"
t_run "${SWAKS[@]}" --auth PLAIN --auth-user apikey --auth-password "$K_READ" --from sender@acme.test
t_expect_match "$T_OUT" ' 535 5\.7\.8 .*send scope' "AUTH reply"
t_expect_eq "$(slen "$STREAM_A")" "$N0" "stream length"

t_case "an organization key without X-Workspace-Id -> 550 5.7.1"
t_run "${SWAKS[@]}" --auth PLAIN --auth-user apikey --auth-password "$K_ORG" --from sender@acme.test
t_expect_match "$T_OUT" ' 550 5\.7\.1 .*X-Workspace-Id' "DATA reply"
t_expect_eq "$(slen "$STREAM_A")" "$N0" "stream length"

t_case "an organization key with X-Workspace-Id -> queued in that workspace, header removed"
NB=$(slen "$STREAM_B")
t_run "${SWAKS[@]}" --auth PLAIN --auth-user apikey --auth-password "$K_ORG" --from news@beta.test \
    --header "X-Workspace-Id: $BETA"
t_expect_match "$T_OUT" ' 250 2\.0\.0 Ok: queued as ' "DATA reply"
t_expect_eq "$(slen "$STREAM_B")" "$((NB + 1))" "Beta's stream length"
t_expect_eq "$(slen "$STREAM_A")" "$N0" "Acme's stream length"
ENTRY=$(grep -oE 'queued as [0-9]+-[0-9]+' <<<"$T_OUT" | awk '{ print $3 }')
t_expect_match "$(msg_row "$ENTRY")" "^$BETA\|news@beta\.test\|smtp\|" "recorded for Beta"
f=$(grep -l -- '^From: news@beta\.test' "$T_SINK_DIR"/* 2>/dev/null | head -n 1)
t_expect_match "$(cat "$f" 2>/dev/null)" '^From: news@beta\.test' "delivered"
t_expect_nomatch "$(cat "$f" 2>/dev/null)" '[Xx]-[Ww]orkspace-[Ii]d' "X-Workspace-Id left in the message"
mkdir -p "$T_DIR/v2" && cp "$f" "$T_DIR/v2/" 2>/dev/null
t_expect_eq "$(dkim_verify_dir "$KEYS" "$T_DIR/v2")" "ok 1" "DKIM verification"

t_case "an organization key naming an unknown workspace -> 550 5.7.1"
t_run "${SWAKS[@]}" --auth PLAIN --auth-user apikey --auth-password "$K_ORG" --from news@beta.test \
    --header "X-Workspace-Id: ws_aaaaaaaaaaaaaaaa"
t_expect_match "$T_OUT" ' 550 5\.7\.1 Unknown workspace ws_aaaaaaaaaaaaaaaa' "DATA reply"

t_case "a workspace key with another workspace's X-Workspace-Id -> 550 5.7.1"
t_run "${SWAKS[@]}" --auth PLAIN --auth-user apikey --auth-password "$K_ACME" --from sender@acme.test \
    --header "X-Workspace-Id: $BETA"
t_expect_match "$T_OUT" ' 550 5\.7\.1 X-Workspace-Id does not name' "DATA reply"
t_expect_eq "$(slen "$STREAM_B")" "$((NB + 1))" "Beta's stream length"

t_case "Acme's key sending From Beta's domain -> 550 5.7.1, nothing queued"
t_run "${SWAKS[@]}" --auth PLAIN --auth-user apikey --auth-password "$K_ACME" --from boss@beta.test
t_expect_match "$T_OUT" ' 550 5\.7\.1 From domain beta\.test is not a verified domain of workspace' "DATA reply"
t_expect_eq "$(slen "$STREAM_A")" "$N0" "Acme's stream length"
t_expect_eq "$(slen "$STREAM_B")" "$((NB + 1))" "Beta's stream length"

t_case "an unverified From domain -> 550 5.7.1"
t_run "${SWAKS[@]}" --auth PLAIN --auth-user apikey --auth-password "$K_ACME" --from x@unverified.test
t_expect_match "$T_OUT" ' 550 5\.7\.1 From domain unverified\.test is not verified' "DATA reply"

t_case "a subdomain of a verified domain is accepted"
t_run "${SWAKS[@]}" --auth PLAIN --auth-user apikey --auth-password "$K_ACME" --from x@mail.acme.test
t_expect_match "$T_OUT" ' 250 2\.0\.0 Ok: queued as ' "DATA reply"
N0=$(slen "$STREAM_A")

t_case "header From verified but MAIL FROM in another domain -> 550 5.7.1"
msg_file "$T_DIR/m1" a@acme.test
t_run tool send "$K_ACME" bounce@elsewhere.test r1@example.com "$T_DIR/m1"
t_expect_match "$T_OUT" '^550 5\.7\.1 MAIL FROM domain elsewhere\.test' "DATA reply"

t_case "a message over max_message_size -> 552 5.3.4, nothing queued"
awk 'BEGIN { for (i = 0; i < 1200; i++) printf "%070d\n", i }' >"$T_DIR/big.txt"
t_run "${SWAKS[@]}" --auth PLAIN --auth-user apikey --auth-password "$K_ACME" --from a@acme.test \
    --body @"$T_DIR/big.txt"
t_expect_match "$T_OUT" ' 552 5\.3\.4 Message size exceeds fixed limit of 65536 bytes' "DATA reply"
t_expect_eq "$(slen "$STREAM_A")" "$N0" "stream length"

t_case "a message line over 998 octets -> 500 5.5.2"
{ printf 'From: a@acme.test\r\nTo: r1@example.com\r\nSubject: long\r\n\r\n'
  head -c 1200 /dev/zero | tr '\0' x; printf '\r\n'; } >"$T_DIR/long"
t_run tool send "$K_ACME" a@acme.test r1@example.com "$T_DIR/long"
t_expect_match "$T_OUT" '^500 5\.5\.2 Line too long: line 5' "DATA reply"

t_case "a message without From -> 550 5.6.0"
printf 'To: r1@example.com\r\nSubject: x\r\n\r\nbody\r\n' >"$T_DIR/nofrom"
t_run tool send "$K_ACME" a@acme.test r1@example.com "$T_DIR/nofrom"
t_expect_match "$T_OUT" '^550 5\.6\.0 Message refused: no From header' "DATA reply"
t_expect_eq "$(slen "$STREAM_A")" "$N0" "stream length"

# ---- hardening ---------------------------------------------------------------------------------
for sep in '\n.\n' '\r\n.\n' '\n.\r\n' '\r.\r' '\r\n.\r' '\r.\r\n' '\n' '\r'; do
    t_case "smuggling: DATA with b'$sep' and a second transaction -> 550 5.6.0, nothing queued"
    t_run tool smuggle "$K_ACME" "b'$sep'"
    t_expect_rc 0
    t_expect_match "$T_OUT" '^DATA 354$' "DATA"
    t_expect_match "$T_OUT" '^END 550 5\.6\.0 Message refused: bare CR or LF' "end of data"
    t_expect_match "$T_OUT" "^EXTRA b''$" "no reply to the hidden commands"
    t_expect_match "$T_OUT" '^NOOP 250$' "the session goes on"
    t_expect_eq "$(slen "$STREAM_A")" "$N0" "stream length"
done
sleep 1
t_expect_nomatch "$(cat "$T_SINK_DIR"/* 2>/dev/null)" 'hidden|victim' "the hidden message"

t_case "STARTTLS injection: RSET sent with STARTTLS is never answered inside TLS"
t_run tool inject
t_expect_rc 0
t_expect_match "$T_OUT" '^STARTTLS 220 2\.0\.0 Ready to start TLS$' "STARTTLS reply"
t_expect_match "$T_OUT" "^AFTER-TLS b''$" "nothing before the client speaks"
t_expect_match "$T_OUT" '^EHLO 250-' "EHLO inside TLS"

t_case "a command over 512 octets -> 500 5.5.2"
t_run tool raw "b'NOOP ' + b'x' * 600 + b'\\r\\n'"
t_expect_match "$T_OUT" '^500 5\.5\.2 Line too long' "reply"

t_case "a bare LF command -> 500 5.5.2; a NUL -> 500 5.5.2"
t_run tool raw "b'NOOP\\n'"
t_expect_match "$T_OUT" '^500 5\.5\.2 ' "bare LF"
t_run tool raw "b'NO\\x00OP\\r\\n'"
t_expect_match "$T_OUT" '^500 5\.5\.2 ' "NUL"

t_case "RSET, NOOP, HELP, VRFY, QUIT"
t_run tool raw "b'EHLO x\\r\\nRSET\\r\\nNOOP\\r\\nHELP\\r\\nVRFY bob\\r\\nEXPN list\\r\\nQUIT\\r\\n'"
t_expect_match "$T_OUT" '^250 2\.0\.0 Ok' "RSET/NOOP"
t_expect_match "$T_OUT" '^214 2\.0\.0 ' "HELP"
t_expect_match "$T_OUT" '^252 2\.0\.0 ' "VRFY"
t_expect_match "$T_OUT" '^502 5\.5\.1 ' "EXPN"
t_expect_match "$T_OUT" '^221 2\.0\.0 ' "QUIT"

t_case "1000 recipients per message, the 1001st -> 452 4.5.3"
t_run tool rcpts "$K_ACME" 1001
t_expect_match "$T_OUT" '^ok 1000 last 452 250$' "RCPT replies"

# ---- smtplib, live revocation, secrets --------------------------------------------------------
t_case "smtplib: sendmail over STARTTLS + AUTH -> delivered DKIM-signed"
msg_file "$T_DIR/smtplib.eml" sender@acme.test 'X-Test: smtplib'
sed -i 's/^Subject: test/Subject: from smtplib/' "$T_DIR/smtplib.eml"
t_run tool send "$K_ACME" sender@acme.test r1@example.com "$T_DIR/smtplib.eml"
t_expect_eq "$T_OUT" 250 "sendmail"
f=$(sink_file 'from smtplib')
mkdir -p "$T_DIR/v3" && cp "$f" "$T_DIR/v3/" 2>/dev/null
t_expect_eq "$(dkim_verify_dir "$KEYS" "$T_DIR/v3")" "ok 1" "DKIM verification"

t_case "a key revoked while postmuxd runs is refused within 5 s"
K_LIVE=$($PMX apikey create --workspace Acme --name live 2>"$T_DIR/live.err")
LIVE_ID=$(grep -oE 'key_[a-z2-7]{16}' "$T_DIR/live.err" | head -n 1)
t_run "${SWAKS[@]}" --auth PLAIN --auth-user apikey --auth-password "$K_LIVE" --from sender@acme.test \
    --header 'Subject: before revoke'
t_expect_match "$T_OUT" ' 250 2\.0\.0 Ok: queued as ' "accepted before the revoke"
$PMX apikey revoke "$LIVE_ID" >/dev/null
sleep 5
t_run "${SWAKS[@]}" --auth PLAIN --auth-user apikey --auth-password "$K_LIVE" --from sender@acme.test
t_expect_match "$T_OUT" ' 535 5\.7\.8 .*revoked' "AUTH reply 5 s after the revoke"

t_case "API keys never reach postmuxd's log"
for k in "$K_ACME" "$K_ORG" "$K_LIVE" "$K_REV"; do
    [[ -n $k ]] && grep -qF -- "${k#pmx_}" "$DLOG" && t_fail "a key's secret is in the log"
done
t_expect_match "$(cat "$DLOG")" 'auth' "the log does talk about AUTH"

# ---- Redis down ---------------------------------------------------------------------------------
RDIR=$(dirname "$T_REDIS_SOCK")
LR=$(wc -l <"$DLOG")
t_case "Redis stopped -> 451 4.3.0, never 250; after Redis returns the retry is queued"
N0=$(slen "$STREAM_A")
t_redis SHUTDOWN NOSAVE >/dev/null 2>&1
t_wait_for 10 "! /usr/bin/redis-cli -s '$T_REDIS_SOCK' ping"
t_run "${SWAKS[@]}" --auth PLAIN --auth-user apikey --auth-password "$K_ACME" --from a@acme.test \
    --header 'Subject: while redis was down'
t_expect_match "$T_OUT" ' 451 4\.3\.0 ' "DATA reply"
t_expect_nomatch "$T_OUT" ' 250 2\.0\.0 Ok: queued' "DATA reply"
pmx_svc__spawn "$RDIR" redis /usr/bin/redis-server --port "$T_REDIS_PORT" --bind 127.0.0.1 \
    --unixsocket "$T_REDIS_SOCK" --unixsocketperm 777 --save "" --appendonly no \
    --daemonize no --dir "$RDIR" || t_fail "could not restart redis"
t_wait_for 10 "/usr/bin/redis-cli -s '$T_REDIS_SOCK' ping | grep -q PONG"
ok=0
for i in $(seq 1 40); do
    out=$("${SWAKS[@]}" --auth PLAIN --auth-user apikey --auth-password "$K_ACME" --from a@acme.test \
          --header 'Subject: while redis was down' 2>&1)
    grep -q ' 250 2\.0\.0 Ok: queued as ' <<<"$out" && { ok=1; break; }
    sleep 0.5
done
t_expect_eq "$ok" 1 "a retry after Redis came back is queued"
t_expect_match "$(cat "$(sink_file 'while redis was down')" 2>/dev/null)" '^Subject: while redis was down' "the retried message delivered"
# The retry above needed one worker back; the drain case below may land on
# either, and a worker still in its reconnect backoff answers 451.
t_wait_for 15 "(( \$(tail -n +$((LR + 1)) '$DLOG' | grep -E '^worker\\[[0-9]+\\] info: redis reconnected' |
                sed -E 's/^worker\\[([0-9]+)\\].*/\\1/' | sort -u | wc -l) >= 2 ))"

# ---- last_used_at, drain -------------------------------------------------------------------------
t_case "SIGTERM: an idle session gets 421 4.3.2 at once, one in a transaction finishes it"
rm -f "$T_DIR/go"
tool hold "$K_ACME" "$T_DIR/go" >"$T_DIR/hold.out" 2>&1 &
HOLD=$!
tool idle "$K_ACME" >"$T_DIR/idle.out" 2>&1 &
IDLE=$!
t_wait_for 10 "grep -q '^MAIL 250' '$T_DIR/hold.out' && grep -q READY '$T_DIR/idle.out'"
kill -TERM "$D"
t_wait_for 10 "grep -q '^GOT' '$T_DIR/idle.out'"
touch "$T_DIR/go"
wait "$HOLD"
wait "$IDLE"
t_expect_match "$(cat "$T_DIR/idle.out")" '^GOT 421 4\.3\.2 ' "the idle session"
t_expect_match "$(cat "$T_DIR/hold.out")" '^RCPT 250$' "RCPT while draining"
t_expect_match "$(cat "$T_DIR/hold.out")" '^DATA 250$' "DATA while draining"
t_expect_match "$(cat "$T_DIR/hold.out")" '^NEXT (421|closed)' "after the transaction"
wait "$D"
t_expect_eq "$?" 0 "postmuxd exit status"

t_case "last_used_at is written for the keys that authenticated (lazily, not per message)"
t_expect_eq "$(t_psql "select string_agg(name, ',' order by name) from api_keys where last_used_at is not null")" \
    live,org,smtp "keys with last_used_at"

# ---- AUTH throttling (last: it blocks 127.0.0.1) --------------------------------------------------
# Two workers: failures are counted in a table both share (submission/peers_shm.h).
L0=$(wc -l <"$DLOG")
"$PMXD" -c "$T_CONF" >>"$DLOG" 2>&1 &
D=$!
t_wait_for 15 "tool greeting | grep -q '^220 '"
t_wait_for 15 "tail -n +$((L0 + 1)) '$DLOG' | grep -q 'settings loaded'"

t_case "repeated bad AUTH from one address: slowed, then 421 and closed"
t_run tool badauth 20
t_expect_rc 0
t_expect_eq "$(grep -c ' 535 ' <<<"$T_OUT")" 9 "535 answers before 421"
t_expect_match "$T_OUT" '^10 421 [0-9.]+ 4\.7\.0 Too many failed authentications' "the 10th"
t_expect_match "$T_OUT" "^after closed$" "connection closed after 421"
fast=$(awk '$1 <= 3 && $3 < 0.4' <<<"$T_OUT" | wc -l)
slow=$(awk '$1 >= 4 && $1 <= 9 { s += $3 } END { printf "%d", s }' <<<"$T_OUT")
t_expect_eq "$fast" 3 "the first 3 failures answered at once"
((slow >= 9)) || t_fail "failures 4-9 were answered in ${slow}s in total, expected >= 9 s of delay"

t_case "after the 421 the address stays blocked: a new connection gets 421 too"
t_run tool greeting
t_expect_match "$T_OUT" '^421 4\.7\.0 ' "greeting of a new connection"

t_case "failures on connections spread over both workers are counted together: the 10th gets 421"
t_run tool badauth_spread 127.0.0.2 14
t_expect_rc 0
t_expect_eq "$(grep -c ' 535 ' <<<"$T_OUT")" 9 "535 answers before 421"
t_expect_match "$T_OUT" '^10 421 4\.7\.0 Too many failed authentications' "the 10th, whichever worker took it"
workers_seen=$(tail -n +$((L0 + 1)) "$DLOG" | grep 'submission auth failed .*client=127\.0\.0\.2 ' |
               grep -oE 'worker\[[0-9]+\]' | sort -u | wc -l)
echo "# AUTH failures from 127.0.0.2 were answered by $workers_seen worker(s)" >&2
t_expect_eq "$workers_seen" 2 "workers that counted a failure"

t_case "no sanitizer report in postmuxd's log"
kill -TERM "$D"
wait "$D"
t_expect_nomatch "$(cat "$DLOG")" 'Sanitizer|runtime error:|LeakSanitizer' "postmuxd log"

t_done
