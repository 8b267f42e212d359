#!/usr/bin/env bash
# The per-workspace rate limit and daily quota (queue/ratelimit.h, docs/delivery.md) against a
# real redis-server, driven through tests/tools/ratelimit_probe (the limiter on a libuv
# loop; steps `take:`/`wait:`/`cancel:`/`free:` print each answer, `--hammer` asks as
# fast as it is allowed and prints every grant with Redis's clock). Checked: two
# processes hammering one workspace never pass more than rate·T + burst in any window
# and reach ≥ 95 % of the rate; the quota passes exactly its count, then waits for the
# next UTC midnight; a refusal consumes neither rate nor quota; more recipients than
# the burst pass once the bucket is full; changed limits apply on the next request;
# cancel/free; NOSCRIPT fallback. Every probe must exit 0: under the ASan build a leak
# or a sanitizer report fails it.
source "$(dirname "$0")/lib.sh"
t_setup

PROBE=$T_TOOLS/ratelimit_probe
[[ -x $PROBE ]] || t__setup_fail "no $PROBE: build first (make tools)"
RA=unix:$T_REDIS_SOCK

# The value of KEY=VALUE in a line.
val() { grep -oE "(^| )$1=[^ ]*" <<<"$2" | head -n1 | cut -d= -f2-; }
# The line of $T_OUT starting with WORD (the Nth one, default 1).
line() { grep -E "^$1 " <<<"$T_OUT" | sed -n "${2:-1}p"; }
no_sanitizer() { t_expect_nomatch "$T_ERR" 'Sanitizer|runtime error|leak' "sanitizer output"; }
# Redis's clock, in seconds.
rtime() { t_redis TIME | head -n1; }
# ms from Redis's now until the next UTC midnight.
ms_to_midnight() {
    local t
    mapfile -t t < <(t_redis TIME)
    echo $(( (86400 - t[0] % 86400) * 1000 - t[1] / 1000 ))
}
today() { date -u -d "@$(rtime)" +%Y%m%d; }

# window_check RATE BURST FILE...: every "grant ... n= now_us=" line of FILEs merged:
# prints "count=C rcpt=R span_us=S worst=W" where W is the largest
# sum(n in [t_i, t_j]) - (RATE·(t_j - t_i) + BURST) over every pair (must be ≤ 0).
window_check() {
    local rate=$1 burst=$2
    shift 2
    grep -h '^grant ' "$@" | sed -E 's/.* n=([0-9]+) now_us=([0-9]+).*/\2 \1/' | sort -n |
        awk -v rate="$rate" -v burst="$burst" '
            { t[NR] = $1; n[NR] = $2; r += $2 }
            END {
                worst = -1e18
                for (i = 1; i <= NR; i++) {
                    s = 0
                    for (j = i; j <= NR; j++) {
                        s += n[j]
                        ex = s - (rate * (t[j] - t[i]) / 1e6 + burst)
                        if (ex > worst) worst = ex
                    }
                }
                printf "count=%d rcpt=%d span_us=%d worst=%.6f\n", NR, r, t[NR] - t[1], worst
            }'
}

# ---------------------------------------------------------------- rate
t_case "rate 20/s burst 5, two processes hammering 3 s: ≤ 20·T+5 in every window, ≥ 95 % of 20·t"
t_redis FLUSHALL >/dev/null
echo "ws_rate 20 5 0 1" >"$T_DIR/h1"
echo "ws_rate 20 5 0 3" >"$T_DIR/h2"     # the second asks for 3 recipients at a time
"$PROBE" --redis "$RA" --hammer "$T_DIR/h1" --run 3000 --conc 2 --grants \
    >"$T_DIR/a1.out" 2>"$T_DIR/a1.err" &
p1=$!
"$PROBE" --redis "$RA" --hammer "$T_DIR/h2" --run 3000 --conc 2 --grants \
    >"$T_DIR/a2.out" 2>"$T_DIR/a2.err" &
p2=$!
wait "$p1"; rc1=$?
wait "$p2"; rc2=$?
t_expect_eq "$rc1/$rc2" "0/0" "both probes' exit codes"
T_ERR=$(cat "$T_DIR/a1.err" "$T_DIR/a2.err")
no_sanitizer
w=$(window_check 20 5 "$T_DIR/a1.out" "$T_DIR/a2.out")
T_OUT="$w"$'\n'$(grep -hE '^(ws|summary) ' "$T_DIR/a1.out" "$T_DIR/a2.out")
rcpt=$(val rcpt "$w")
worst=$(val worst "$w")
awk -v w="$worst" 'BEGIN { exit !(w <= 0.000001) }' ||
    t_fail "a window passed more than 20·T+5: excess $worst recipients"
# 95 % of 20 recipients/s over the 3 s the run lasted.
((rcpt >= 57)) || t_fail "only $rcpt recipients passed in 3 s (want ≥ 57)"
for f in a1 a2; do
    l=$(grep '^ws ' "$T_DIR/$f.out")
    (($(val grants "$l") > 0)) || t_fail "$f got nothing"
    (($(val refused_rate "$l") > 0)) || t_fail "$f was never refused: it did not ask for more"
    t_expect_eq "$(val errors "$l")" 0 "$f errors"
done
# Nobody spins: refusals are at most a few per grant (each one waits wait_ms).
s1=$(grep '^summary ' "$T_DIR/a1.out"); s2=$(grep '^summary ' "$T_DIR/a2.out")
reqs=$(($(val requests "$s1") + $(val requests "$s2")))
((reqs < 400)) || t_fail "$reqs requests for $rcpt recipients: the callers spin"

t_case "8 recipients (> burst 5) vs 1-recipient requests, two processes 3 s: both pass, ≤ 20·T+8"
t_redis FLUSHALL >/dev/null
echo "ws_big 20 5 0 8" >"$T_DIR/h3"
echo "ws_big 20 5 0 1" >"$T_DIR/h3b"
"$PROBE" --redis "$RA" --hammer "$T_DIR/h3" --run 3000 --conc 2 --grants \
    >"$T_DIR/b1.out" 2>"$T_DIR/b1.err" &
p1=$!
"$PROBE" --redis "$RA" --hammer "$T_DIR/h3b" --run 3000 --conc 2 --grants \
    >"$T_DIR/b2.out" 2>"$T_DIR/b2.err" &
p2=$!
wait "$p1"; rc1=$?
wait "$p2"; rc2=$?
t_expect_eq "$rc1/$rc2" "0/0" "both probes' exit codes"
T_ERR=$(cat "$T_DIR/b1.err" "$T_DIR/b2.err")
no_sanitizer
w=$(window_check 20 8 "$T_DIR/b1.out" "$T_DIR/b2.out")
T_OUT="$w"$'\n'$(grep -hE '^(ws|summary) ' "$T_DIR/b1.out" "$T_DIR/b2.out")
rcpt=$(val rcpt "$w")
awk -v w="$(val worst "$w")" 'BEGIN { exit !(w <= 0.000001) }' ||
    t_fail "more than 20·T+8 passed in a window: $w"
((rcpt >= 56)) || t_fail "only $rcpt recipients passed in 3 s: $w"
big=$(val grants "$(grep '^ws ' "$T_DIR/b1.out")")
small=$(val grants "$(grep '^ws ' "$T_DIR/b2.out")")
((big >= 2)) || t_fail "the 8-recipient requests passed $big times in 3 s: starved"
((small >= 10)) || t_fail "the 1-recipient requests passed $small times in 3 s: starved"

t_case "n > burst: allowed at once on a full bucket and charged in full; waits for a full bucket otherwise"
t_redis FLUSHALL >/dev/null
t_run "$PROBE" --redis "$RA" take:ws_n:10:5:0:20 take:ws_n:10:5:0:1 wait:ws_n:10:5:0:20 \
    take:ws_n2:10:5:0:3 take:ws_n2:10:5:0:20
t_expect_rc 0
no_sanitizer
l=$(line take 1)
t_expect_eq "$(val allowed "$l")" 1 "20 recipients on a full bucket"
l=$(line take 2)
t_expect_eq "$(val reason "$l")" rate "then one more recipient"
wm=$(val wait_ms "$l")
((wm >= 1550 && wm <= 1600)) || t_fail "wait after 20 at 10/s burst 5: $wm ms (want ~1600)"
l=$(line wait)
t_expect_eq "$(val allowed "$l")" 1 "20 more, waited for"
wd=$(val waited_ms "$l")
((wd >= 1900 && wd <= 2600)) || t_fail "20 more waited $wd ms (want ~2000: a full bucket)"
t_expect_eq "$(val allowed "$(line take 3)")" 1 "3 on a fresh bucket"
l=$(line take 4)
t_expect_eq "$(val reason "$l")" rate "20 after 3"
wm=$(val wait_ms "$l")
((wm >= 250 && wm <= 300)) || t_fail "20 after 3 at 10/s: wait $wm ms (want ~300)"

# --------------------------------------------------------------- quota
t_case "quota 100, two processes hammering: exactly 100 recipients pass, then wait until next UTC midnight"
t_redis FLUSHALL >/dev/null
echo "ws_quota 0 0 100 1" >"$T_DIR/h4"
"$PROBE" --redis "$RA" --hammer "$T_DIR/h4" --run 1500 --conc 4 >"$T_DIR/q1.out" 2>"$T_DIR/q1.err" &
p1=$!
"$PROBE" --redis "$RA" --hammer "$T_DIR/h4" --run 1500 --conc 4 >"$T_DIR/q2.out" 2>"$T_DIR/q2.err" &
p2=$!
wait "$p1"; rc1=$?
wait "$p2"; rc2=$?
t_expect_eq "$rc1/$rc2" "0/0" "both probes' exit codes"
T_ERR=$(cat "$T_DIR/q1.err" "$T_DIR/q2.err")
no_sanitizer
T_OUT=$(grep -h '^ws ' "$T_DIR/q1.out" "$T_DIR/q2.out")
a=$(val rcpt "$(grep '^ws ' "$T_DIR/q1.out")")
b=$(val rcpt "$(grep '^ws ' "$T_DIR/q2.out")")
t_expect_eq "$((a + b))" 100 "recipients allowed by both"
day=$(today)
t_expect_eq "$(t_redis GET "pmx:{ws_quota}:quota:$day")" 100 "today's counter"
ttl=$(t_redis TTL "pmx:{ws_quota}:quota:$day")
((ttl > 86400 && ttl <= 172800)) || t_fail "counter TTL $ttl s (want: until the end of tomorrow)"
t_run "$PROBE" --redis "$RA" take:ws_quota:0:0:100:1
t_expect_rc 0
l=$(line take)
want=$(ms_to_midnight)
t_expect_eq "$(val allowed "$l")/$(val reason "$l")/$(val never "$l")/$(val used "$l")" \
    "0/quota/0/100" "the 101st"
wm=$(val wait_ms "$l")
((wm >= want - 2000 && wm <= want + 2000)) || t_fail "wait $wm ms, want ~$want (next UTC midnight)"
t_expect_eq "$(t_redis GET "pmx:{ws_quota}:quota:$day")" 100 "counter after the refusal"

t_case "quota counts recipients: 7 + 7 > 10 refused, 7 + 3 passes; n > quota is never"
t_redis FLUSHALL >/dev/null
t_run "$PROBE" --redis "$RA" take:ws_q7:0:0:10:7 take:ws_q7:0:0:10:7 take:ws_q7:0:0:10:3 \
    take:ws_q7:0:0:10:1 take:ws_q11:0:0:10:11
t_expect_rc 0
t_expect_eq "$(val allowed "$(line take 1)")/$(val used "$(line take 1)")" "1/7" "7 of 10"
t_expect_eq "$(val allowed "$(line take 2)")/$(val reason "$(line take 2)")/$(val used "$(line take 2)")" \
    "0/quota/7" "7 more"
t_expect_eq "$(val allowed "$(line take 3)")/$(val used "$(line take 3)")" "1/10" "3 more"
t_expect_eq "$(val reason "$(line take 4)")" quota "the 11th"
t_expect_eq "$(val allowed "$(line take 5)")/$(val never "$(line take 5)")" "0/1" "11 on a quota of 10"
t_expect_eq "$(t_redis EXISTS "pmx:{ws_q11}:quota:$(today)")" 0 "no counter for the refused 11"

t_case "rate and quota together: a rate refusal consumes no quota, a quota refusal no rate"
t_redis FLUSHALL >/dev/null
echo "ws_both 2 1 100 1" >"$T_DIR/h5"
t_run "$PROBE" --redis "$RA" --hammer "$T_DIR/h5" --run 2000 --conc 3
t_expect_rc 0
no_sanitizer
l=$(line ws)
((($(val refused_rate "$l")) > 5)) || t_fail "the rate did not refuse"
t_expect_eq "$(t_redis GET "pmx:{ws_both}:quota:$(today)")" "$(val rcpt "$l")" \
    "quota counter = recipients allowed"
# A quota refusal leaves the rate state alone.
t_redis FLUSHALL >/dev/null
t_run "$PROBE" --redis "$RA" take:ws_qr:1:10:5:5
t_expect_eq "$(val allowed "$(line take)")" 1 "5 of quota 5"
tat=$(t_redis HGET "pmx:{ws_qr}:rate" t)
t_run "$PROBE" --redis "$RA" take:ws_qr:1:10:5:1 take:ws_qr:1:10:6:1
t_expect_rc 0
t_expect_eq "$(val reason "$(line take 1)")" quota "the 6th on quota 5"
t_expect_eq "$(val allowed "$(line take 2)")" 1 "the 6th on quota 6 (the rate still had room)"
tat2=$(t_redis HGET "pmx:{ws_qr}:rate" t)
# The one allowed recipient moved the arrival time by 1 s (rate 1/s), the refused one by nothing.
t_expect_eq "$((tat2 - tat))" 1000000 "arrival time moved by the allowed recipient only"

# ------------------------------------------------------------- changes
t_case "changed limits apply on the next request (rate up, rate down, burst, quota, unlimited)"
t_redis FLUSHALL >/dev/null
t_run "$PROBE" --redis "$RA" take:ws_c:1:1:0:1 take:ws_c:1:1:0:1 wait:ws_c:100:1:0:1
t_expect_rc 0
t_expect_eq "$(val allowed "$(line take 1)")" 1 "first at 1/s"
wm=$(val wait_ms "$(line take 2)")
((wm >= 900 && wm <= 1000)) || t_fail "second at 1/s waits $wm ms (want ~1000)"
wd=$(val waited_ms "$(line wait)")
t_expect_eq "$(val allowed "$(line wait)")" 1 "at 100/s"
((wd <= 200)) || t_fail "after raising the rate to 100/s it still waited $wd ms"
# Rate down: 10 at 10/s burst 10 (1 s owed), then 1/s: what is owed is rescaled to
# 10 s, so one more waits ~1 s (without the rescale it would pass at once).
t_run "$PROBE" --redis "$RA" take:ws_d:10:10:0:10 take:ws_d:1:10:0:1
t_expect_eq "$(val allowed "$(line take 1)")" 1 "10 at 10/s"
l=$(line take 2)
wm=$(val wait_ms "$l")
t_expect_eq "$(val reason "$l")" rate "one more at 1/s"
((wm >= 500 && wm <= 1000)) || t_fail "one more at 1/s burst 10 waits $wm ms (want ~1000)"
# Burst up: 1/s burst 1 used, then burst 10 lets 5 more through at once.
t_run "$PROBE" --redis "$RA" take:ws_b:1:1:0:1 take:ws_b:1:1:0:1 take:ws_b:1:10:0:5
t_expect_eq "$(val allowed "$(line take 2)")/$(val allowed "$(line take 3)")" "0/1" \
    "refused at burst 1, allowed at burst 10"
# Quota up, and the rate set to unlimited while a debt is owed.
t_run "$PROBE" --redis "$RA" take:ws_e:1:1:5:5 take:ws_e:1:1:5:1 take:ws_e:0:0:6:1 \
    take:ws_e:0:0:6:1
t_expect_eq "$(val allowed "$(line take 1)")" 1 "5 at 1/s burst 1 (n > burst, full bucket)"
t_expect_eq "$(val reason "$(line take 2)")" quota "6th on quota 5"
t_expect_eq "$(val allowed "$(line take 3)")" 1 "unlimited rate, quota 6"
t_expect_eq "$(val reason "$(line take 4)")" quota "7th on quota 6"

# ---------------------------------------------------------------- misc
t_case "cancel and free with the script in flight: no callback, nothing leaks"
t_redis FLUSHALL >/dev/null
t_run "$PROBE" --redis "$RA" cancel:ws_x:10:5:0:1 free:ws_x:10:5:0:1 take:ws_x:10:5:0:1
t_expect_rc 0
no_sanitizer
t_expect_eq "$(val cancelled "$(line cancel 1)")" 1 "cancelled"
t_expect_eq "$(val called "$(line cancel 2)")/$(val pending "$(line cancel 2)")" "0/0" \
    "after cancel"
t_expect_eq "$(val called "$(line free)")" 0 "after free"
t_expect_eq "$(val allowed "$(line take)")/$(val status "$(line take)")" "1/0" \
    "a new limiter works"

t_case "unlimited with no quota: allowed without touching Redis"
t_redis FLUSHALL >/dev/null
t_redis CONFIG RESETSTAT >/dev/null
t_run "$PROBE" --redis "$RA" take:ws_u:0:0:0:1000
t_expect_rc 0
t_expect_eq "$(val allowed "$(line take)")/$(val now_us "$(line take)")" "1/0" "answer"
t_expect_eq "$(t_redis INFO commandstats | grep -c 'cmdstat_eval')" 0 "scripts run"

t_case "the script is sent once, then EVALSHA; after SCRIPT FLUSH it is sent again"
t_redis FLUSHALL >/dev/null
t_redis SCRIPT FLUSH >/dev/null
t_redis CONFIG RESETSTAT >/dev/null
t_run "$PROBE" --redis "$RA" take:ws_s:100:10:0:1 take:ws_s:100:10:0:1 take:ws_s:100:10:0:1
t_expect_rc 0
st=$(t_redis INFO commandstats | tr -d '\r')
t_expect_match "$st" 'cmdstat_evalsha:calls=3,' "EVALSHA calls"
t_expect_match "$st" 'cmdstat_eval:calls=1,' "EVAL calls"
t_expect_eq "$(grep -c 'allowed=1' <<<"$T_OUT")" 3 "all allowed"

t_case "the script's UTC date (the quota key's day) matches gmtime(), 1900-9999"
# Every 37th day from 1900-01-01 to 9999-12-31, and every day of 1970-2099.
t_run "$PROBE" --redis "$RA" ymd:-25567:2932896:37 ymd:0:47481:1
t_expect_rc 0
t_expect_eq "$(val bad "$(line ymd 1)")/$(val bad "$(line ymd 2)")" "0/0" "days that differ"
t_expect_eq "$(val checked "$(line ymd 1)")/$(val checked "$(line ymd 2)")" "79959/47482" \
    "days checked"

t_case "keys: under the prefix with the hash tag, the rate state expires when idle"
t_redis FLUSHALL >/dev/null
t_run "$PROBE" --redis "$RA" --prefix acme take:ws_k:10:5:20:5
t_expect_rc 0
keys=$(t_redis --scan | sort | paste -sd' ')
t_expect_eq "$keys" "acme:{ws_k}:quota:$(today) acme:{ws_k}:rate" "keys"
pttl=$(t_redis PTTL "acme:{ws_k}:rate")
((pttl > 0 && pttl <= 1500)) || t_fail "rate key PTTL $pttl ms (want ≤ owed 500 ms + 1 s)"

t_done
