#!/usr/bin/env bash
# scripts/services.sh keeps its promises (issue 2): two runs side by side get
# their own ports and dirs and do not collide, and whatever a run started is stopped
# when it ends — normally, by a failure, by Ctrl-C (SIGINT), by SIGTERM, and even by
# kill -9 of the shell that started it (the watchdog).
source "$(dirname "$0")/lib.sh"
t_setup

# child OUT MODE: a shell that starts Redis and smtp-sink, writes
# "DIR REDIS_PORT SINK_PORT PIDS..." to OUT, then ends as MODE says:
# "exit0", "fail" (a command fails under set -e), or "wait" (sleeps until signalled).
child() {
    local out=$1 mode=$2
    # (env --default-signal: a background job of a script starts with SIGINT ignored,
    # and a shell cannot trap what it inherited as ignored; a terminal's Ctrl-C would
    # reach a foreground run with SIGINT intact.)
    env --default-signal=INT bash -c '
        set -e
        source "$1/scripts/services.sh"
        pmx_svc_init
        read -r _ rport < <(pmx_svc_redis_start)
        sport=$(pmx_svc_sink_start -)
        pids=$(awk "{ print \$1 }" "$PMX_SVC_DIR/pids" | paste -sd" ")
        echo "$PMX_SVC_DIR $rport $sport $pids" >"$2.tmp" && mv "$2.tmp" "$2"
        case $3 in
            exit0) exit 0 ;;
            fail) false ;;
            wait) while :; do sleep 0.2; done ;;
        esac
    ' child "$PMX_ROOT" "$out" "$mode" >>"$T_DIR/child.log" 2>&1 &
    CHILD=$!
    t_wait_for 30 "[[ -s $out ]]"
}
# gone FILE: the dir and every process named in FILE are gone (waits up to 15 s).
gone() {
    local dir pids p
    read -r dir _ _ pids <"$1"
    t_wait_for 15 "[[ ! -e $dir ]]"
    for p in $pids; do
        t_wait_for 15 "! kill -0 $p 2>/dev/null" || t_fail "pid $p of $dir still runs"
    done
}

t_case "two runs side by side: their own dirs and ports, both answer"
child "$T_DIR/a" wait
A=$CHILD
child "$T_DIR/b" wait
B=$CHILD
read -r da ra sa _ <"$T_DIR/a"
read -r db rb sb _ <"$T_DIR/b"
t_expect_eq "$([[ $da != "$db" && $ra != "$rb" && $sa != "$sb" ]] && echo distinct)" distinct \
    "dirs, Redis ports, sink ports ($da $ra $sa / $db $rb $sb)"
t_expect_eq "$(/usr/bin/redis-cli -p "$ra" ping) $(/usr/bin/redis-cli -p "$rb" ping)" "PONG PONG" "both Redis"

t_case "SIGINT (Ctrl-C) stops what the run started"
kill -INT "$A"
wait "$A" 2>/dev/null
gone "$T_DIR/a"
t_expect_eq "$(/usr/bin/redis-cli -p "$rb" ping)" PONG "the other run is untouched"

t_case "kill -9 of the run's shell: the watchdog stops its services"
kill -9 "$B"
wait "$B" 2>/dev/null
gone "$T_DIR/b"

t_case "SIGTERM stops what the run started"
child "$T_DIR/c" wait
kill -TERM "$CHILD"
wait "$CHILD" 2>/dev/null
gone "$T_DIR/c"

t_case "a failing command (set -e) stops what the run started"
child "$T_DIR/d" fail
wait "$CHILD"
t_expect_eq "$?" 1 "exit status of the failed run"
gone "$T_DIR/d"

t_case "a normal end stops what the run started"
child "$T_DIR/e" exit0
wait "$CHILD"
t_expect_eq "$?" 0 "exit status"
gone "$T_DIR/e"

t_done
