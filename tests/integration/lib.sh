# shellcheck shell=bash
# tests/integration/lib.sh — the helpers every tests/integration/test_*.sh sources.
#
# A test file: `source "$(dirname "$0")/lib.sh"`, `t_setup`, then cases (`t_case NAME`
# followed by t_run / t_expect_* / t_fail), then `t_done`. Each case prints
# "ok - NAME" or "not ok - NAME: why" when the next case starts (or at t_done);
# tests/run.sh counts those lines. t_done exits 1 if any case failed.
#
# t_setup gives the file its own database (in the shared cluster tests/run.sh started,
# or in a Postgres of its own when run alone), Redis, smtp-sink, master key and config
# ($T_CONF, exported as POSTMUX_CONFIG), migrated with `postmux migrate`. Everything
# the file starts — services and any background process it forgets — is stopped when
# it exits, however it exits (scripts/services.sh keeps the traps and a watchdog).
# Failures are kept in a file, so t_fail works inside $(...) too.
# Do not replace the EXIT/INT/TERM traps; to add clean-up use `pmx_svc_atexit CMD`.

if [[ -z ${T__LIB_LOADED-} ]]; then
T__LIB_LOADED=1

PMX_ROOT=${PMX_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
export PMX_ROOT
# shellcheck source=../../scripts/services.sh
source "$PMX_ROOT/scripts/services.sh"

T_NAME=$(basename "$0" .sh)
T_PASS=0
T_FAIL=0
T_CASE=""
T_RC=""
T_OUT=""
T_ERR=""
T__CMD=""
T__DONE=0
T__DB_MADE=0
T_RUN_TIMEOUT=${T_RUN_TIMEOUT:-120}

# The binaries under test: $PMX_BIN_DIR (tests/run.sh sets the ASan build), else the
# newer of build/asan and build/release.
if [[ -z ${PMX_BIN_DIR-} ]]; then
    PMX_BIN_DIR=$PMX_ROOT/build/release/bin
    if [[ -x $PMX_ROOT/build/asan/bin/postmux &&
          ( ! -x $PMX_BIN_DIR/postmux || $PMX_ROOT/build/asan/bin/postmux -nt $PMX_BIN_DIR/postmux ) ]]; then
        PMX_BIN_DIR=$PMX_ROOT/build/asan/bin
    fi
fi
export PMX_BIN_DIR
PMX=$PMX_BIN_DIR/postmux
PMXD=$PMX_BIN_DIR/postmuxd
T_TOOLS=$(dirname "$PMX_BIN_DIR")/tools
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export PMX PMXD T_TOOLS

if ! pmx_svc_init; then
    echo "not ok - $T_NAME setup: cannot create a temp dir"
    exit 1
fi
T_DIR=$PMX_SVC_DIR
T__FAILS=$T_DIR/.case-fails
: >"$T__FAILS"
export T_DIR

# One line of text, at most 400 characters, for a "not ok" reason.
t__oneline() {
    local s=${1//$'\n'/ | }
    s=${s//$'\r'/}
    ((${#s} > 400)) && s="${s:0:400}..."
    printf '%s' "$s"
}

# Prints "not ok" for setup and stops the file (its exit trap cleans up).
t__setup_fail() {
    T__DONE=1
    echo "not ok - $T_NAME setup: $(t__oneline "$1")"
    [[ -n ${2-} ]] && printf '%s\n' "$2" | tail -n 30 | sed 's/^/#   /'
    exit 1
}

t_fail() {
    printf '%s\n' "$(t__oneline "${1:-failed}")" >>"$T__FAILS"
    return 0
}

# Ends the current case: prints ok / not ok (with the last command's output on
# "#" lines when it failed).
t__finish_case() {
    [[ -n $T_CASE || -s $T__FAILS ]] || return 0
    local name=${T_CASE:-$T_NAME (outside any case)} why
    if [[ -s $T__FAILS ]]; then
        why=$(paste -sd ';' "$T__FAILS")
        why=${why//;/; }
        echo "not ok - $name: $why"
        if [[ -n $T__CMD ]]; then
            echo "#   last command: $T__CMD (exit ${T_RC:-?})"
            [[ -n $T_OUT ]] && printf '%s\n' "$T_OUT" | tail -n 20 | sed 's/^/#   out: /'
            [[ -n $T_ERR ]] && printf '%s\n' "$T_ERR" | tail -n 20 | sed 's/^/#   err: /'
        fi
        T_FAIL=$((T_FAIL + 1))
    else
        echo "ok - $name"
        T_PASS=$((T_PASS + 1))
    fi
    : >"$T__FAILS"
    T_CASE=""
    T__CMD=""
}

t_case() {
    t__finish_case
    T_CASE=${1:?t_case NAME}
    T__CMD=""
    T_RC="" T_OUT="" T_ERR=""
}

# t_run CMD...: runs it (a program gets T_RUN_TIMEOUT seconds); sets T_RC, T_OUT,
# T_ERR (trailing newlines cut). Always returns 0: check with t_expect_rc.
t_run() {
    T__CMD=$(printf '%q ' "$@")
    T__CMD=${T__CMD% }
    local o=$T_DIR/.run-out e=$T_DIR/.run-err
    if [[ $(type -t "$1") == file ]]; then
        timeout --foreground -k 5 "$T_RUN_TIMEOUT" "$@" >"$o" 2>"$e"
    else
        "$@" >"$o" 2>"$e"
    fi
    T_RC=$?
    ((T_RC == 124)) && [[ $(type -t "$1") == file ]] &&
        printf '(t_run: killed after %ss)\n' "$T_RUN_TIMEOUT" >>"$e"
    T_OUT=$(<"$o")
    T_ERR=$(<"$e")
    return 0
}

t_expect_rc() {
    local want=${1:?t_expect_rc N}
    if [[ $T_RC != "$want" ]]; then
        local first=${T_ERR%%$'\n'*}
        t_fail "\`$T__CMD\` exited ${T_RC:-(nothing run)}, expected $want${first:+ (stderr: $first)}"
        return 1
    fi
    return 0
}

t_expect_eq() {
    if [[ $1 != "$2" ]]; then
        t_fail "${3:-value}: got '$1', expected '$2'"
        return 1
    fi
    return 0
}

# ERE matched line by line, like grep -E: some line of TEXT must match.
t_expect_match() {
    local rc
    grep -qE -- "$2" <<<"$1"
    rc=$?
    ((rc == 0)) && return 0
    if ((rc == 1)); then t_fail "${3:-text}: no line matches /$2/ in '$1'"
    else t_fail "${3:-text}: bad regex /$2/"; fi
    return 1
}

# No line of TEXT may match the ERE.
t_expect_nomatch() {
    local rc
    grep -qE -- "$2" <<<"$1"
    rc=$?
    ((rc == 1)) && return 0
    if ((rc == 0)); then t_fail "${3:-text}: /$2/ matches '$(grep -E -m1 -- "$2" <<<"$1")'"
    else t_fail "${3:-text}: bad regex /$2/"; fi
    return 1
}

# t_wait_for SECONDS 'shell condition': re-evaluates the condition every 0.1 s.
# On timeout it fails the current case and returns 1.
t_wait_for() {
    local secs=${1:?t_wait_for SECONDS COND} cond=${2:?t_wait_for SECONDS COND} now end
    end=$(awk -v s="$secs" 'BEGIN { printf "%d", s * 1000000 }')
    now=${EPOCHREALTIME/./}
    end=$((now + end))
    while :; do
        (eval "$cond") >/dev/null 2>&1 && return 0
        now=${EPOCHREALTIME/./}
        ((now < end)) || break
        sleep 0.1
    done
    t_fail "timed out after ${secs}s waiting for: $cond"
    return 1
}

# ---- settings reaching the running workers ----------------------------------------------
# A worker logs "worker[PID] info: settings loaded gen=N ..." (workers/settings.c) each
# time a reload changed what it holds (workspaces, testers, domains, DKIM keys): its
# first load, then loads on NOTIFY postmux_settings (sent by every change to those
# tables), on the 60 s refresh and after a reconnect. A load that finds nothing changed
# logs nothing at info level. So, instead of sleeping after a change:
#   t_settings_mark "$DPID"     # just before the change
#   $PMX workspace set Acme --suspend >/dev/null
#   t_settings_wait "$DPID"     # every worker of that postmuxd has reloaded since
# For the wait to be exact:
# - one change per mark: a command that commits once (its notifications arrive after the
#   commit, so the load they start sees all of it). Give two changes in a row a mark and
#   a wait each, or the load the first one started may still run, without the second,
#   when the mark is taken, and its line would end the wait.
# - the change must change what the workers hold, or no line comes (the wait fails);
#   and postmuxd must log at info level or below (the default).
# t_settings_mark first waits until every worker of each postmuxd (as many as its last
# "starting workers=N" / "config reloaded ... workers=N" line says) has logged a first
# load, so no first load (which may predate the change) is still running.
# Workers are postmuxd's child processes (it forks nothing else); their lines are looked
# for in $T_DIR/postmuxd*.log, where these tests send postmuxd's output. Both wait up to
# T_SETTINGS_WAIT seconds (30), fail the current case and return 1 on timeout.
# t_settings_wait sets T_SETTINGS_MS: how long the workers took, for a "#" line.
declare -gA T__SETTINGS_MARK=()

# The worker PIDs of postmuxd PID... (not zombies).
t__workers_of() {
    local p
    for p in "$@"; do
        ps -o pid= -o stat= --ppid "$p" 2>/dev/null | awk '$2 !~ /^Z/ { print $1 }'
    done
}

# PIDs of the workers with a "settings loaded" line in the postmuxd logs: anywhere
# ("all"), or after the last t_settings_mark ("new").
t__settings_loaded_pids() {
    local f off
    for f in "$T_DIR"/postmuxd*.log; do
        [[ -f $f ]] || continue
        off=0
        [[ $1 == new ]] && off=${T__SETTINGS_MARK[$f]:-0}
        tail -c "+$((off + 1))" "$f"
    done | sed -nE 's/^worker\[([0-9]+)\] info: settings loaded gen=.*/\1/p' | sort -u
}

# How many workers postmuxd PID runs by its own last word on it ("" before it said).
t__workers_wanted() {
    cat "$T_DIR"/postmuxd*.log 2>/dev/null |
        sed -nE "s/^postmuxd\\[$1\\] info: (starting|config reloaded gen=[0-9]+) workers=([0-9]+).*/\\2/p" |
        tail -n 1
}

t_settings_mark() {
    (($#)) || { t_fail "t_settings_mark: which postmuxd (PID)?"; return 1; }
    local secs=${T_SETTINGS_WAIT:-30} t0=${EPOCHREALTIME/./} p pid want n ok why f
    local -A seen=()
    while :; do
        ok=1 why=""
        seen=()
        for pid in $(t__settings_loaded_pids all); do seen[$pid]=1; done
        for p in "$@"; do
            want=$(t__workers_wanted "$p")
            n=0
            for pid in $(t__workers_of "$p"); do
                n=$((n + 1))
                [[ -n ${seen[$pid]-} ]] || { ok=0; why+=" worker $pid has not loaded its settings yet;"; }
            done
            if [[ -z $want ]] || ((n != want)); then
                ok=0
                why+=" postmuxd $p runs $n of ${want:-?} workers;"
            fi
        done
        ((ok)) && break
        if ((${EPOCHREALTIME/./} - t0 >= secs * 1000000)); then
            t_fail "t_settings_mark: after ${secs}s:${why%;}"
            break
        fi
        sleep 0.1
    done
    T__SETTINGS_MARK=()
    for f in "$T_DIR"/postmuxd*.log; do
        [[ -f $f ]] && T__SETTINGS_MARK[$f]=$(stat -c %s "$f")
    done
    ((ok)) && return 0
    return 1
}

t_settings_wait() {
    (($#)) || { t_fail "t_settings_wait: which postmuxd (PID)?"; return 1; }
    local secs=${T_SETTINGS_WAIT:-30} t0=${EPOCHREALTIME/./} pid workers missing
    local -A fresh=()
    while :; do
        fresh=()
        for pid in $(t__settings_loaded_pids new); do fresh[$pid]=1; done
        workers=$(t__workers_of "$@")
        missing=""
        for pid in $workers; do [[ -n ${fresh[$pid]-} ]] || missing+=" $pid"; done
        if [[ -n $workers && -z $missing ]]; then
            T_SETTINGS_MS=$(((${EPOCHREALTIME/./} - t0) / 1000))
            return 0
        fi
        if ((${EPOCHREALTIME/./} - t0 >= secs * 1000000)); then
            t_fail "t_settings_wait: after ${secs}s no new 'settings loaded' line from worker(s)${missing:- (none running)} of postmuxd $*"
            return 1
        fi
        sleep 0.1
    done
}

# t_settings_change PID... -- CMD...: t_settings_mark PID..., CMD (its stdout dropped; a
# failure fails the case), t_settings_wait PID... . CMD runs even when the mark timed out.
t_settings_change() {
    local pids=() rc=0
    while (($#)) && [[ $1 != -- ]]; do pids+=("$1"); shift; done
    (($# > 1 && ${#pids[@]})) || { t_fail "usage: t_settings_change PID... -- CMD..."; return 1; }
    shift
    t_settings_mark "${pids[@]}" || rc=1
    if ! "$@" >/dev/null; then
        t_fail "\`$*\` failed"
        rc=1
    fi
    t_settings_wait "${pids[@]}" || rc=1
    return "$rc"
}

t_psql() {
    "$PMX_PG_BIN/psql" -XAtq -v ON_ERROR_STOP=1 -h "$PMX_PG_HOST" -p "$PMX_PG_PORT" \
        -U "$PMX_PG_USER" -d "${T_DB:?t_setup first}" -c "$1" "${@:2}"
}

t_redis() {
    /usr/bin/redis-cli -s "${T_REDIS_SOCK:?t_setup first}" "$@"
}

# t_conf_set SECTION KEY VALUE: sets KEY in [SECTION] of $T_CONF (replaced in place,
# else added at the end of the section, else a new section at the end).
t_conf_set() {
    pmx_svc_conf_set "$T_CONF" "$@"
}

# t_stop_postmuxd PID: the last two cases of a file that ran postmuxd in the
# background with its log in $T_DIR/postmuxd*.log: SIGTERM drains it and it exits 0,
# and no sanitizer report is in its log.
t_stop_postmuxd() {
    local pid=${1:?t_stop_postmuxd PID}
    t_case "postmuxd drains and exits 0"
    kill -TERM "$pid"
    wait "$pid"
    t_expect_eq "$?" 0 "exit status"
    t_case "no sanitizer report in postmuxd's log"
    t_expect_nomatch "$(cat "$T_DIR"/postmuxd*.log 2>/dev/null)" 'Sanitizer|runtime error:|LeakSanitizer' "postmuxd log"
}

# t_sink_start [smtp-sink options]: another smtp-sink dumping into $T_DIR/sinkN/
# (N = 1, 2, ... in call order); prints its port.
t_sink_start() {
    local n=1
    while ! mkdir "$T_DIR/sink$n" 2>/dev/null; do n=$((n + 1)); done
    if ! pmx_svc_sink_start "$T_DIR/sink$n" "$@" >/dev/null; then
        t_fail "could not start smtp-sink $*"
        return 1
    fi
    printf '%s\n' "$PMX_SINK_PORT"
}

# t_dns_start ZONEFILE: dnsmasq serving ZONEFILE's txt-record=NAME,"TEXT" lines on
# 127.0.0.1 (UDP and TCP); prints the port.
t_dns_start() {
    if ! pmx_svc_dns_start "${1:?t_dns_start ZONEFILE}" >/dev/null; then
        t_fail "could not start dnsmasq with $1"
        return 1
    fi
    printf '%s\n' "$PMX_DNS_PORT"
}

# t_mx_start ZONEFILE [mx_server.py options...]: dnsmasq serving ZONEFILE and
# tests/tools/mx_server.py (--listen ADDR ... among the options: the MX hosts on one
# port) logging every session to $MXLOG; sets DNS_PORT, MX_PORT, MX_PID and MXLOG and
# points the config at them: [delivery] route = mx, [mx] port, resolver and
# allow_networks = 127.0.0.0/8 (docs/delivery.md "Direct delivery", its Tests). Kill
# $MX_PID when done.
t_mx_start() {
    local zone=${1:?t_mx_start ZONEFILE [OPTIONS]} i
    shift
    DNS_PORT=$(t_dns_start "$zone") || t__setup_fail "dnsmasq did not start"
    MXLOG=$T_DIR/mx.log
    "$PMX_SVC_PYTHON" "$PMX_ROOT/tests/tools/mx_server.py" --port-file "$T_DIR/mx.port" \
        --log "$MXLOG" "$@" 2>"$T_DIR/mx.err" &
    MX_PID=$!
    for ((i = 0; i < 100; i++)); do [[ -s $T_DIR/mx.port ]] && break; sleep 0.1; done
    MX_PORT=$(<"$T_DIR/mx.port") ||
        t__setup_fail "mx_server.py did not start: $(head -c 300 "$T_DIR/mx.err")"
    t_conf_set delivery route mx
    t_conf_set mx port "$MX_PORT"
    t_conf_set mx resolver "127.0.0.1:$DNS_PORT"
    t_conf_set mx allow_networks 127.0.0.0/8
}

# Stops what the file started besides the services (a forgotten `postmuxd &`),
# drops its database and reports a file that ended without t_done.
t__cleanup() {
    local pid ppid
    local -A kids=() skip=()
    while read -r pid _ _; do skip[$pid]=1; done <"$T_DIR/pids"
    [[ -s $T_DIR/watchdog.pid ]] && skip[$(<"$T_DIR/watchdog.pid")]=1
    skip[$BASHPID]=1
    while read -r pid ppid; do kids[$ppid]+=" $pid"; done < <(ps -e -o pid= -o ppid=)
    local todo=("$PMX_SVC_OWNER") strays=() p
    while ((${#todo[@]})); do
        p=${todo[0]}
        todo=("${todo[@]:1}")
        for pid in ${kids[$p]-}; do
            [[ -n ${skip[$pid]-} ]] && continue
            strays+=("$pid")
            todo+=("$pid")
        done
    done
    # Only those still running (the `ps` above is gone by now).
    local -A st=()
    local live=()
    for p in "${strays[@]}"; do
        st[$p]=$(pmx_svc__stat "$p" 2>/dev/null) && pmx_svc__alive "$p" "${st[$p]#* }" && live+=("$p")
    done
    strays=("${live[@]}")
    if ((${#strays[@]})); then
        kill -TERM "${strays[@]}" 2>/dev/null
        local i left
        for ((i = 0; i < 50; i++)); do
            left=()
            for p in "${strays[@]}"; do
                pmx_svc__alive "$p" "${st[$p]#* }" && left+=("$p")
            done
            ((${#left[@]})) || break
            sleep 0.1
        done
        ((${#left[@]})) && kill -KILL "${left[@]}" 2>/dev/null
    fi
    if ((T__DB_MADE)); then
        "$PMX_PG_BIN/psql" -XAtq -h "$PMX_PG_HOST" -p "$PMX_PG_PORT" -U "$PMX_PG_USER" \
            -d postgres -c "DROP DATABASE IF EXISTS \"$T_DB\" WITH (FORCE)" >/dev/null 2>&1
    fi
    if ((!T__DONE)); then
        [[ -n $T_CASE ]] && t_fail "the file stopped inside this case"
        t__finish_case
        if [[ $PMX_SVC_EXIT_SIG == EXIT ]]; then
            echo "not ok - $T_NAME: ended before t_done (exit status $PMX_SVC_EXIT_RC)"
        else
            echo "not ok - $T_NAME: interrupted by SIG$PMX_SVC_EXIT_SIG"
        fi
        ((PMX_SVC_EXIT_RC)) || PMX_SVC_EXIT_RC=1
    fi
}
pmx_svc_atexit t__cleanup

t_setup() {
    [[ -x $PMX && -x $PMXD ]] ||
        t__setup_fail "no postmux/postmuxd in $PMX_BIN_DIR: build first (make)"
    if [[ -z ${PMX_PG_HOST-} ]]; then
        pmx_svc_pg_start || t__setup_fail "could not start PostgreSQL (see above)"
    fi
    : "${PMX_PG_USER:=postmux}"
    local slug=${T_NAME//[^a-zA-Z0-9]/_}
    T_DB=$(printf 'pmx_%s_%s' "${slug:0:40}" "$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')")
    T_DB=${T_DB,,}
    local err
    err=$("$PMX_PG_BIN/psql" -XAtq -v ON_ERROR_STOP=1 -h "$PMX_PG_HOST" -p "$PMX_PG_PORT" \
            -U "$PMX_PG_USER" -d postgres -c "CREATE DATABASE \"$T_DB\"" 2>&1) ||
        t__setup_fail "cannot create database $T_DB" "$err"
    T__DB_MADE=1
    T_DB_CONNINFO="host=$PMX_PG_HOST port=$PMX_PG_PORT user=$PMX_PG_USER dbname=$T_DB"

    pmx_svc_redis_start >/dev/null || t__setup_fail "could not start redis-server (see above)"
    T_REDIS_SOCK=$PMX_REDIS_SOCK
    T_REDIS_PORT=$PMX_REDIS_PORT

    T_SINK_DIR=$T_DIR/sink0
    pmx_svc_sink_start "$T_SINK_DIR" >/dev/null || t__setup_fail "could not start smtp-sink (see above)"
    T_SINK_PORT=$PMX_SINK_PORT

    T_CONF=$T_DIR/postmux.conf
    T_MASTER_KEY=$T_DIR/master.key
    pmx_svc_postmux_conf "$T_CONF" "$T_DB" || t__setup_fail "cannot write $T_CONF"
    t_conf_set daemon workers 2
    t_conf_set delivery retry_base 1s
    export POSTMUX_CONFIG=$T_CONF
    export T_DB T_DB_CONNINFO T_REDIS_SOCK T_REDIS_PORT T_SINK_DIR T_SINK_PORT T_MASTER_KEY T_CONF

    t_run "$PMX" migrate
    ((T_RC == 0)) || t__setup_fail "postmux migrate failed (exit $T_RC)" "$T_OUT
$T_ERR"
    T__CMD=""
    T_RC="" T_OUT="" T_ERR=""
}

t_done() {
    t__finish_case
    if ((T_PASS + T_FAIL == 0)); then
        echo "not ok - $T_NAME: no test case ran"
        T_FAIL=1
    fi
    T__DONE=1
    echo "# $T_NAME: $T_PASS passed, $T_FAIL failed"
    ((T_FAIL == 0)) && exit 0
    exit 1
}

fi
