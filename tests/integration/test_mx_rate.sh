#!/usr/bin/env bash
# A shaping rule's `rate` (docs/delivery.md "Shaping"; routing/shaping.h): a GCRA in
# Redis keyed by the rule's name, shared by every worker, that paces the SMTP
# transactions to the rule's sites. dnsmasq serves the MX records and
# tests/tools/mx_server.py plays the MX hosts, logging each MAIL FROM with its time:
#   rated.test -> 127.0.0.2 (rule "rated": rate = 2/s, burst = 1)
#   free.test  -> 127.0.0.3 (no rule)
# Timing is only checked where slowness cannot break it: the rated site's last
# transaction comes no earlier than the GCRA allows after the first job was queued
# (a lower bound), and no window of the MX log holds more transactions than
# rate x T + burst (+1 per worker: a delivery holding a token may start its
# transaction just after the next token of another worker; see routing/mxroute.c).
source "$(dirname "$0")/lib.sh"
t_setup

ZONE=$T_DIR/zone.conf
cat >"$ZONE" <<'EOF'
local=/test/
mx-host=rated.test,mx.rated.test,10
host-record=mx.rated.test,127.0.0.2
mx-host=free.test,mx.free.test,10
host-record=mx.free.test,127.0.0.3
EOF
t_mx_start "$ZONE" --listen 127.0.0.2 --listen 127.0.0.3

RATE=2 BURST=1 WORKERS=2
t_conf_set daemon workers "$WORKERS"
t_conf_set mx connections_per_site 4
t_conf_set mx helo_name mta.postmux.test
t_conf_set daemon log_level debug
SHAPING=$T_DIR/shaping.ini
cat >"$SHAPING" <<EOF
[site rated]
match = mx.rated.test
rate = $RATE/s
burst = $BURST
EOF
t_conf_set mx shaping_file "$SHAPING"
WS=$($PMX workspace create Acme)
$PMX domain add Acme acme.test --algorithm ed25519 >/dev/null
$PMX domain verify acme.test --skip-dns >/dev/null

xadd() { t_redis XADD "pmx:{$WS}:jobs" '*' "$@" >/dev/null; }
row() { t_psql "select r.status from recipients r join messages m on m.id = r.message_id
                where m.client_id = '$1'"; }
# MAIL FROM times at one MX address, sorted, one per line.
mail_times() { "$PMX_SVC_PYTHON" -c '
import json, sys
ts = sorted(e["t"] for e in map(json.loads, open(sys.argv[1]))
            if e["ev"] == "mail" and e["local"] == sys.argv[2])
print("\n".join("%.6f" % t for t in ts))' "$MXLOG" "$1"; }

t_case "postmux mx shows the rule's rate"
t_run "$PMX" mx rated.test
t_expect_rc 0
t_expect_match "$T_OUT" 'rule +rated ' "the rule"
t_expect_match "$T_OUT" 'rate 2/s, burst 1 \(transactions, all hosts\)' "its rate"
t_run "$PMX" mx rated.test --json
t_expect_match "$T_OUT" '"rate": "2/s"' "rate in --json"
t_run "$PMX" mx free.test --json
t_expect_match "$T_OUT" '"rate": null' "no rate without a rule"

LOG=$T_DIR/postmuxd.log
"$PMXD" -c "$T_CONF" >>"$LOG" 2>&1 &
DPID=$!
t_wait_for 60 "[[ \$(grep -c 'suppressions loaded' '$LOG') -ge $WORKERS ]]"

N=16
t_case "a rated site gets its transactions at the rate, shared by both workers; another site is not held up"
START=$("$PMX_SVC_PYTHON" -c 'import time; print("%.6f" % time.time())')
# Jobs one by one: the two workers' blocked reads take turns, so both get rated jobs.
for i in $(seq 1 $N); do
    xadd from news@acme.test to "r$i@rated.test" subject "r$i" text t id "rated$i"
    sleep 0.1
done
for i in $(seq 1 $N); do
    xadd from news@acme.test to "f$i@free.test" subject "f$i" text t id "free$i"
done
echo "# all jobs queued after $("$PMX_SVC_PYTHON" -c "import time; print('%.3f' % (time.time() - $START))") s"
t_wait_for 120 "[[ \$(t_psql \"select count(*) from recipients where address like 'r%@rated.test' and status = 'sent'\") -eq $N ]]"
t_expect_eq "$(t_psql "select count(*) from recipients where address like 'f%@free.test' and status = 'sent'")" "$N" "every free.test message sent"
rated=$(mail_times 127.0.0.2)
free=$(mail_times 127.0.0.3)
t_expect_eq "$(wc -l <<<"$rated")" "$N" "one transaction per message at the rated site"
verdict=$("$PMX_SVC_PYTHON" - "$START" "$RATE" "$BURST" "$WORKERS" "$N" <<EOF
import sys
start, rate, burst, workers, n = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
ts = [float(x) for x in """$rated""".split()]
free = [float(x) for x in """$free""".split()]
out = []
# The GCRA lets the first token go at once, then one per 1/rate: the n-th no earlier
# than start + (n - burst) / rate. Redis's clock and this one are the same machine's.
low = start + (n - burst) / rate
out.append("lower_bound %s (last %.3f s after the first job, at least %.3f)"
           % ("ok" if ts[-1] >= low - 0.01 else "VIOLATED", ts[-1] - start, low - start))
worst = 0.0
for i in range(len(ts)):
    for j in range(i, len(ts)):
        over = (j - i + 1) - (rate * (ts[j] - ts[i]) + burst + workers)
        worst = max(worst, over)
out.append("windows %s (worst excess %.2f)" % ("ok" if worst <= 1e-6 else "VIOLATED", worst))
out.append("free %s (free.test from %.3f to %.3f s, last rated.test %.3f s)"
           % ("ok" if free and max(free) < ts[-1] else "HELD", min(free) - start, max(free) - start,
              ts[-1] - start))
print("\n".join(out))
EOF
)
echo "$verdict" | sed 's/^/# /'
t_expect_match "$verdict" 'lower_bound ok' "no faster than the rate (lower bound on elapsed time)"
t_expect_match "$verdict" 'windows ok' "no window above rate x T + burst (+1 per worker)"
t_expect_match "$verdict" 'free ok' "free.test was not held up by the rated site"
pids=$(grep -E "^worker\[[0-9]+\] info: delivery .*rcpt=r[0-9]+@rated\.test status=sent" "$LOG" |
       sed -E 's/^worker\[([0-9]+)\].*/\1/' | sort -u | wc -l)
t_expect_eq "$pids" "$WORKERS" "both workers sent to the rated site (one limit between them)"
t_expect_match "$(t_redis HGET 'pmx:site:{rated}:rate' t)" '^[0-9]+$' "the limiter's key is pmx:site:{rated}:rate"

t_case "the limiter cannot answer: the rated site's deliveries defer, nothing is sent past it"
before=$(grep -c '"ev": "mail", "local": "127.0.0.2"' "$MXLOG")
t_redis SET 'pmx:site:{rated}:rate' 'not a hash' >/dev/null    # the script fails (WRONGTYPE)
xadd from news@acme.test to "down@rated.test" subject d text t id down
xadd from news@acme.test to "ok@free.test" subject d text t id downfree
t_wait_for 60 "[[ -n \$(row down) && \$(row downfree) == sent ]]"
t_expect_eq "$(row down)" "deferred" "deferred"
t_expect_match "$(t_psql "select r.last_response from recipients r join messages m on m.id = r.message_id where m.client_id = 'down'")" \
    '^451 4\.3\.0 site_rate: the rate limiter of site rated is unavailable' "its reply"
t_expect_eq "$(grep -c '"ev": "mail", "local": "127.0.0.2"' "$MXLOG")" "$before" "no transaction to the rated site"
t_expect_match "$(grep 'mx site rate limiter unavailable' "$LOG" | head -1)" 'site=mx\.rated\.test rule=rated' "logged"
t_redis DEL 'pmx:site:{rated}:rate' >/dev/null
t_wait_for 90 "[[ \$(row down) == sent ]]"
t_expect_eq "$(row down)" "sent" "sent on a retry once the limiter answers"

t_case "a bad rate is refused with FILE:LINE"
printf '[site x]\nmatch = *.x.test\nrate = 5/fortnight\n' >"$T_DIR/bad.ini"
cp "$T_CONF" "$T_DIR/bad.conf"
pmx_svc_conf_set "$T_DIR/bad.conf" mx shaping_file "$T_DIR/bad.ini"
t_run "$PMXD" -c "$T_DIR/bad.conf" --check-config
t_expect_rc 1
t_expect_match "$T_ERR" 'bad\.ini:3: rate: expected N/s, N/m or N/h' "FILE:LINE"

# A drain does not wait for the rate: what has no token yet is deferred (retried later).
before=$(grep -c '"ev": "mail", "local": "127.0.0.2"' "$MXLOG")
for i in $(seq 1 8); do xadd from news@acme.test to "s$i@rated.test" subject "s$i" text t id "stop$i"; done
t_wait_for 60 "(( \$(grep -c '\"ev\": \"mail\", \"local\": \"127.0.0.2\"' '$MXLOG') > $before ))"
t_stop_postmuxd "$DPID"
t_case "stopping: deliveries still waiting for the site's rate are deferred, not waited for"
st=$(t_psql "select r.status || ' ' || left(coalesce(r.last_response, ''), 60) from recipients r
             where r.address like 's%@rated.test' order by r.address")
echo "$st" | sed 's/^/# /'
t_expect_match "$st" 'deferred 451 4\.3\.0 site_rate: postmuxd is stopping before this deli' "deferred with the reason"
t_expect_eq "$(grep -vcE '^(sent|deferred) ' <<<"$st")" 0 "every one sent or deferred"
t_expect_eq "$(grep -c '"ev": "mail", "local": "127.0.0.2"' "$MXLOG")" \
    "$((before + $(grep -c '^sent ' <<<"$st")))" "the MX saw exactly the sent ones"
kill "$MX_PID" 2>/dev/null
wait "$MX_PID" 2>/dev/null
t_done
