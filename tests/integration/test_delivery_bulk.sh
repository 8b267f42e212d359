#!/usr/bin/env bash
# Issue 4's delivery test at scale: 3 workspaces (RSA, Ed25519, both), 1,000 jobs
# enqueued with `redis-cli --pipe` as an application would — composed (plain,
# multipart, non-ASCII subjects, several recipients, cc and bcc, bodies with lines
# of ".", leading dots, bare LF and bare CR) and raw — relayed over verified STARTTLS to
# aiosmtpd (tests/tools/tls_relay.py, an SMTP server we did not write, which keeps
# the bytes it received). Every message must arrive once per job, CRLF-only, with the
# text the job asked for, bcc only in the envelope, and every DKIM signature
# verifying with python3-dkim; every recipient row `sent`; no pending entry left.
source "$(dirname "$0")/lib.sh"
t_setup
PY=/usr/bin/python3
source "$(dirname "$0")/relay_lib.sh"
source "$(dirname "$0")/dkim_lib.sh"

N=${BULK_JOBS:-1000}
t_conf_set daemon workers 2

RSA=$($PMX workspace create RsaCo)
ED=$($PMX workspace create EdCo)
BOTH=$($PMX workspace create BothCo)
$PMX domain add RsaCo rsa.test --algorithm rsa >/dev/null
$PMX domain add EdCo ed.test --algorithm ed25519 >/dev/null
$PMX domain add BothCo both.test --algorithm both >/dev/null
for d in rsa.test ed.test both.test; do $PMX domain verify $d --skip-dns >/dev/null; done
KEYS=$T_DIR/keys.json
dkim_keys_json "$KEYS"

make_certs || t__setup_fail "openssl could not make the test CA"
start_relay bulk localhost
t_conf_set relay host localhost
t_conf_set relay port "$RELAY_PORT"
t_conf_set relay tls starttls
t_conf_set relay ca_file "$CERTS/ca.crt"

# The jobs, as RESP for redis-cli --pipe, and what each one must turn into.
"$PY" - "$N" "$T_DIR/jobs.resp" "$T_DIR/manifest.json" "$RSA" "$ED" "$BOTH" <<'EOF'
import json, sys
n, resp, manifest = int(sys.argv[1]), sys.argv[2], sys.argv[3]
wss = [(sys.argv[4], "rsa.test"), (sys.argv[5], "ed.test"), (sys.argv[6], "both.test")]
subjects = ["Grüße aus Köln", "東京からこんにちは", "plain ascii subject", "Ünïcödé — ✉ %d"]
def cmd(*a):
    b = [x.encode() for x in a]
    return b"*%d\r\n" % len(b) + b"".join(b"$%d\r\n%s\r\n" % (len(x), x) for x in b)
jobs = []
with open(resp, "wb") as f:
    for k in range(n):
        ws, dom = wss[k % 3]
        kind = ("plain", "multipart", "raw", "dots")[k % 4]
        to = ["j%da@example.net" % k, "j%db@example.org" % k] if k % 2 else ["j%da@example.net" % k]
        cc = ["j%dc@example.net" % k] if kind == "multipart" else []
        bcc = ["j%dhidden@example.net" % k] if kind in ("multipart", "dots") else []
        subject = subjects[k % len(subjects)].replace("%d", str(k))
        frm = "news@%s" % dom
        fields = ["from", "News %d <%s>" % (k, frm), "to", ", ".join(to), "id", "bulk-%d" % k]
        if cc: fields += ["cc", ", ".join(cc)]
        if bcc: fields += ["bcc", ", ".join(bcc)]
        job = {"id": "bulk-%d" % k, "kind": kind, "rcpts": sorted(to + cc + bcc), "bcc": bcc,
               "subject": subject}
        if kind == "raw":
            body = ".leading dot\n.\n..two dots\rbare cr line\nlast line %d\n" % k
            raw = ("From: News <%s>\nTo: %s\nBcc: raw%dbcc@example.net\nSubject: raw %d\n\n" %
                   (frm, ", ".join(to), k, k)) + body
            fields = ["from", frm, "to", ", ".join(to), "id", "bulk-%d" % k, "raw", raw]
            job.update(subject="raw %d" % k, text=body, bcc=["raw%dbcc@example.net" % k])
        elif kind == "multipart":
            text = "Hello %d,\nthis is the text part.\n" % k
            fields += ["subject", subject, "text", text, "html", "<p>Hello %d</p>" % k]
            job["text"] = text
        elif kind == "dots":
            text = ".\n.leading\n..double\nbare lf\nbare cr\rend of %d\r\n.\n" % k
            fields += ["subject", subject, "text", text, "header:X-Campaign", "bulk"]
            job["text"] = text
        else:
            text = ("A long line of plain text that is longer than seventy-eight characters " * 3 +
                    "\nand job %d\n" % k)
            fields += ["subject", subject, "text", text, "reply_to", "reply@%s" % dom]
            job["text"] = text
        f.write(cmd("XADD", "pmx:{%s}:jobs" % ws, "*", *fields))
        jobs.append(job)
json.dump(jobs, open(manifest, "w"))
EOF

EXPECT_RCPTS=$("$PY" -c 'import json,sys; print(sum(len(j["rcpts"]) for j in json.load(open(sys.argv[1]))))' "$T_DIR/manifest.json")
sent() { t_psql "select count(*) from recipients where status = 'sent'"; }

"$PMXD" -c "$T_CONF" >>"$T_DIR/postmuxd.log" 2>&1 &
DPID=$!

t_case "$N jobs enqueued with redis-cli --pipe are all recorded sent"
t_run /usr/bin/redis-cli -s "$T_REDIS_SOCK" --pipe <"$T_DIR/jobs.resp"
t_expect_match "$T_OUT" "errors: 0, replies: $N" "redis-cli --pipe"
t_wait_for 300 "[[ \$(sent) -ge $EXPECT_RCPTS ]]"
t_expect_eq "$(sent)" "$EXPECT_RCPTS" "recipients sent"
t_expect_eq "$(t_psql "select count(*) from recipients where status <> 'sent'")" 0 "recipients not sent"
t_expect_eq "$(t_psql "select count(*) from messages")" "$N" "message rows"
pend=0
for ws in "$RSA" "$ED" "$BOTH"; do
    p=$(t_redis XPENDING "pmx:{$ws}:jobs" postmux | head -n 1)
    pend=$((pend + ${p:-0}))
done
t_expect_eq "$pend" 0 "pending entries left"

t_case "each job reached the relay once, CRLF-only, with its recipients and its text"
t_wait_for 30 "[[ \$(ls '$RELAY_DIR' | wc -l) -ge $N ]]"
T_RUN_TIMEOUT=240 t_run "$PY" - "$RELAY_DIR" "$T_DIR/manifest.json" <<'EOF'
import email, email.policy, json, os, re, sys
d, jobs = sys.argv[1], {j["id"]: j for j in json.load(open(sys.argv[2]))}
by_rcpts = {tuple(j["rcpts"]): i for i, j in jobs.items()}
bad, seen, crlf_only = [], {}, 0
def norm(t):
    return t.replace("\r\n", "\n").replace("\r", "\n").rstrip("\n")
for name in sorted(os.listdir(d)):
    data = open(os.path.join(d, name), "rb").read()
    # the relay's envelope lines come first: X-Mail-From, X-Rcpt-To...
    lines = data.split(b"\r\n")
    rcpts = sorted(l[len(b"X-Rcpt-To: <"):-1].decode() for l in lines if l.startswith(b"X-Rcpt-To: <"))
    body = data
    while body.startswith(b"X-Mail-From:") or body.startswith(b"X-Rcpt-To:"):
        body = body.split(b"\r\n", 1)[1]
    if b"\n" in body.replace(b"\r\n", b"") or b"\r" in body.replace(b"\r\n", b""):
        bad.append(name + ": a bare CR or LF"); continue
    crlf_only += 1
    m = email.message_from_bytes(body, policy=email.policy.default)
    cid = by_rcpts.get(tuple(rcpts))
    if cid is None:
        bad.append(name + ": recipients match no job: %s" % rcpts); continue
    j = jobs[cid]
    seen[cid] = seen.get(cid, 0) + 1
    if m["Bcc"] is not None: bad.append(name + ": a Bcc header")
    for b in j["bcc"]:
        if b.encode() in body: bad.append(name + ": bcc address in the message")
    if str(m["Subject"]) != j["subject"]: bad.append(name + ": subject %r != %r" % (str(m["Subject"]), j["subject"]))
    if any(ord(c) > 127 for c in j["subject"]) and not re.search(rb"^Subject: =\?", body, re.M):
        bad.append(name + ": non-ASCII subject not RFC 2047-encoded")
    part = m.get_body(("plain",)) if j["kind"] != "raw" else None
    got = part.get_content() if part is not None else body.split(b"\r\n\r\n", 1)[1].decode()
    if norm(got) != norm(j["text"]):
        bad.append(name + ": text %r != %r" % (got[:80], j["text"][:80]))
    if j["kind"] == "multipart" and m.get_content_type() != "multipart/alternative":
        bad.append(name + ": not multipart/alternative")
    if any(len(l) > 998 for l in body.split(b"\r\n")): bad.append(name + ": a line over 998 octets")
missing = [i for i in jobs if i not in seen]
twice = [i for i, c in seen.items() if c > 1]
print("messages %d crlf-only %d jobs-seen %d missing %d twice %d" %
      (len(os.listdir(d)), crlf_only, len(seen), len(missing), len(twice)))
for b in bad[:10]: print("BAD", b)
EOF
t_expect_rc 0
t_expect_eq "$(head -n 1 <<<"$T_OUT")" "messages $N crlf-only $N jobs-seen $N missing 0 twice 0" "summary"
t_expect_nomatch "$T_OUT" '^BAD' "a message that differs from its job"

t_case "every DKIM signature of every message verifies (python3-dkim)"
t_expect_eq "$(dkim_verify_dir "$KEYS" "$RELAY_DIR")" "ok $N" "verification"
nsig=$(cat "$RELAY_DIR"/* | grep -c '^DKIM-Signature:')
# RSA: one signature, Ed25519: one, both: two -> 4 for every 3 jobs.
t_expect_eq "$nsig" "$(( (N / 3) * 4 + (N % 3 >= 1 ? 1 : 0) + (N % 3 >= 2 ? 1 : 0) ))" "signatures"

t_stop_postmuxd "$DPID"
stop_relay

t_done
