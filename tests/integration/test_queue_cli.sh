#!/usr/bin/env bash
# `postmux queue`: per workspace, the stream length, backlog, pending (XPENDING
# of group postmux), deferred (the retry set) and dead (poison stream) agree
# with Redis, in text and --json; a stream or group that does not exist counts
# 0; [redis] prefix is honoured; --workspace filters; Redis down is one line.
source "$(dirname "$0")/lib.sh"
t_setup

t_run $PMX workspace create Acme
ACME=$T_OUT
t_run $PMX workspace create Globex
GLOBEX=$T_OUT
t_run $PMX workspace create Idle
IDLE=$T_OUT
json_get() { printf '%s' "$1" | /usr/bin/python3 -c "import json,sys; j=json.load(sys.stdin); print($2)"; }

# fill PREFIX WS JOBS READ DEFERRED DEAD [nogroup]: JOBS entries in the stream,
# READ of them read by a consumer of group postmux (pending), DEFERRED retry
# members, DEAD poison entries.
fill() {
    local p=$1 ws=$2 i
    for ((i = 0; i < $3; i++)); do t_redis XADD "$p:{$ws}:jobs" '*' from a@x.example to b@y.example >/dev/null; done
    if [[ ${7-} != nogroup ]]; then
        t_redis XGROUP CREATE "$p:{$ws}:jobs" postmux 0 MKSTREAM >/dev/null
        (($4)) && t_redis XREADGROUP GROUP postmux c1 COUNT "$4" STREAMS "$p:{$ws}:jobs" '>' >/dev/null
    fi
    for ((i = 0; i < $5; i++)); do t_redis ZADD "$p:{$ws}:retry" $((1000 + i)) "member$i" >/dev/null; done
    for ((i = 0; i < $6; i++)); do t_redis XADD "$p:{$ws}:dead" '*' from a@x.example >/dev/null; done
}
# What Redis says, as "ws stream backlog pending deferred dead" lines.
truth() {
    local p=$1 ws s pend
    for ws in "${@:2}"; do
        s=$(t_redis XLEN "$p:{$ws}:jobs")
        pend=$(t_redis XPENDING "$p:{$ws}:jobs" postmux 2>/dev/null | head -n1)
        [[ $pend =~ ^[0-9]+$ ]] || pend=0
        echo "$ws $s $((s - pend)) $pend $(t_redis ZCARD "$p:{$ws}:retry") $(t_redis XLEN "$p:{$ws}:dead")"
    done
}
from_json() {
    printf '%s' "$1" | /usr/bin/python3 -c '
import json, sys
j = json.load(sys.stdin)
for w in j["workspaces"]:
    print(w["workspace_id"], *[w[k] for k in ("stream", "backlog", "pending", "deferred", "dead")])
t = j["total"]
print("total", *[t[k] for k in ("stream", "backlog", "pending", "deferred", "dead")])'
}
from_text() { awk 'NR > 1 { print $1, $(NF-4), $(NF-3), $(NF-2), $(NF-1), $NF }' <<<"$1"; }
# The sum line of truth lines on stdin.
total_of() { awk '{ for (i = 2; i <= 6; i++) s[i] += $i } END { print "total", s[2]+0, s[3]+0, s[4]+0, s[5]+0, s[6]+0 }'; }

fill pmx "$ACME" 7 3 4 2
fill pmx "$GLOBEX" 2 0 0 0 nogroup
# noise that must not be counted: another prefix, another stream of Acme
fill other "$ACME" 5 5 5 5
t_redis XADD "pmx:{$ACME}:jobs2" '*' x y >/dev/null
# sorted like the listing: by name
want=$(truth pmx "$ACME" "$GLOBEX" "$IDLE")

t_case "queue: text and JSON agree with Redis, a total row"
t_run $PMX queue
t_expect_rc 0
t_expect_match "$(head -n1 <<<"$T_OUT")" '^WORKSPACE +NAME +STREAM +BACKLOG +PENDING +DEFERRED +DEAD$' "header"
t_expect_eq "$(from_text "$T_OUT")" "$want
$(total_of <<<"$want")" "text = Redis"
t_expect_eq "$(grep "^$ACME" <<<"$T_OUT" | tr -s ' ')" "$ACME Acme 7 4 3 4 2" "Acme, by hand"
t_expect_eq "$(grep "^$GLOBEX" <<<"$T_OUT" | tr -s ' ')" "$GLOBEX Globex 2 2 0 0 0" "no group: pending 0"
t_expect_eq "$(grep "^$IDLE" <<<"$T_OUT" | tr -s ' ')" "$IDLE Idle 0 0 0 0 0" "no keys: all 0"
t_run $PMX queue --json
t_expect_rc 0
t_expect_eq "$(from_json "$T_OUT")" "$want
$(total_of <<<"$want")" "JSON = Redis"
t_expect_eq "$(json_get "$T_OUT" "[w['name'] for w in j['workspaces']]")" "['Acme', 'Globex', 'Idle']" "JSON names"

t_case "queue: follows the stream as workers take and finish jobs"
# a worker finishes 2 of the 3 pending (XACK + XDEL, as the consumer does) and defers one
ids=$(t_redis XPENDING "pmx:{$ACME}:jobs" postmux - + 10 | grep -E '^[0-9]+-[0-9]+$' | head -n 2)
for id in $ids; do
    t_redis XACK "pmx:{$ACME}:jobs" postmux "$id" >/dev/null
    t_redis XDEL "pmx:{$ACME}:jobs" "$id" >/dev/null
done
t_redis ZADD "pmx:{$ACME}:retry" 5000 deferred-one >/dev/null
t_run $PMX queue --workspace Acme --json
t_expect_eq "$(from_json "$T_OUT")" "$(truth pmx "$ACME")
total 5 4 1 5 2" "after acks"

t_case "queue --workspace: one row, no total in text"
t_run $PMX queue --workspace "$GLOBEX"
t_expect_rc 0
t_expect_eq "$(from_text "$T_OUT")" "$(truth pmx "$GLOBEX")" "Globex only"
t_expect_eq "$(grep -c '^total' <<<"$T_OUT")" 0 "no total row"
t_run $PMX queue --workspace Nope
t_expect_rc 1
t_expect_eq "$T_ERR" "postmux: unknown workspace: Nope" "unknown workspace"
t_run $PMX queue extra
t_expect_rc 2
t_run $PMX queue --bogus
t_expect_rc 2

t_case "queue: [redis] prefix"
t_conf_set redis prefix other
t_run $PMX queue --workspace Acme
t_expect_rc 0
t_expect_eq "$(from_text "$T_OUT")" "$(truth other "$ACME")" "prefix other"
t_expect_eq "$(grep "^$ACME" <<<"$T_OUT" | tr -s ' ')" "$ACME Acme 5 0 5 5 5" "by hand"
t_conf_set redis prefix pmx

t_case "queue: Redis down is one line, exit 1"
t_conf_set redis address "unix:$T_DIR/no-such.sock"
t_run $PMX queue
t_expect_rc 1
t_expect_match "$T_ERR" '^postmux: cannot connect to Redis at unix:.*no-such.sock' "error"
t_expect_eq "$(grep -c '' <<<"$T_ERR")" 1 "one line"
t_expect_eq "$T_OUT" "" "no output"
t_conf_set redis address "unix:$T_REDIS_SOCK"

t_case "queue: a key of the wrong type is an error, not a wrong number"
t_redis DEL "pmx:{$IDLE}:retry" >/dev/null
t_redis SET "pmx:{$IDLE}:retry" oops >/dev/null
t_run $PMX queue
t_expect_rc 1
t_expect_match "$T_ERR" "^postmux: Redis ZCARD for $IDLE: WRONGTYPE" "error"
t_expect_eq "$T_OUT" "" "no table"

t_done
