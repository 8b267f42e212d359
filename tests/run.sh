#!/usr/bin/env bash
# tests/run.sh — what `make test` (and so CI) runs:
#   1. scripts/deps.sh             install missing Debian packages
#   2. make -j2, make SAN=1 -j2    release and ASan+UBSan builds
#   3. build/{release,asan}/tests/test_*   cmocka unit tests, under the sanitizers;
#      then each fuzz target replays its seed corpus (build/*/fuzz-replay/)
#   4. one throwaway Postgres, then every tests/integration/test_*.sh against the
#      ASan binaries (each file starts its own Redis, smtp-sink, dnsmasq)
# Prints ok / not ok lines, every failure again at the end, and last the line
# "N passed, N failed". Exits non-zero if anything failed or nothing ran.
#
#   TESTS="workspace domain" make test   only unit binaries / integration files whose
#                                        name contains one of the words
#   PMX_TEST_TIMEOUT=600                 seconds per integration file (unit: 300)
#   PMX_KEEP_TMP=1                       keep the services' temp dirs
# Full logs: build/test-logs/. Everything started is stopped on exit and on Ctrl-C.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 1
export PMX_ROOT=$root
# shellcheck source=../scripts/services.sh
source "$root/scripts/services.sh"

logs=$root/build/test-logs
passed=0
failed=0
failures=()
cur=""           # the job running now (its pid = its process group)
tests_filter=${TESTS-}
read -ra filter <<<"${tests_filter//,/ }"
test_timeout=${PMX_TEST_TIMEOUT:-600}

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export CMOCKA_MESSAGE_OUTPUT=stdout

fail() { failures+=("$1"); failed=$((failed + 1)); }

# Quotes a log for the terminal: its last LINES lines, indented.
show() { tail -n "${2:-80}" "$1" | sed 's/^/  | /'; }

wanted() {
    local name=$1 w
    ((${#filter[@]})) || return 0
    for w in "${filter[@]}"; do [[ $name == *"$w"* ]] && return 0; done
    return 1
}

# job LOG SECONDS CMD...: runs CMD in its own session under `timeout`, output to LOG,
# stdin closed; sets rc. On Ctrl-C the trap below stops it (timeout forwards the
# signal to the whole group, then SIGKILL after 20 s); afterwards anything left in
# its process group is killed.
job() {
    local log=$1 secs=$2
    shift 2
    setsid -w timeout -k 20 "$secs" "$@" </dev/null >"$log" 2>&1 &
    cur=$!
    # (2>/dev/null: not bash's own "Aborted ..." note; the log has the details)
    { wait "$cur"; } 2>/dev/null
    rc=$?
    kill -KILL -- "-$cur" 2>/dev/null
    cur=""
}

stop_job() {
    [[ -n $cur ]] || return 0
    kill -TERM "$cur" 2>/dev/null
    wait "$cur" 2>/dev/null
    kill -KILL -- "-$cur" 2>/dev/null
    cur=""
}

# The last word, also when interrupted: stop everything, print the failures again,
# then the count line. Replaces the traps services.sh set.
finish() {
    local sig=$1 f
    trap '' INT TERM HUP
    trap - EXIT
    PMX_SVC_EXIT_RC=$2
    stop_job
    pmx_svc_stop_all
    if [[ $sig != EXIT ]]; then
        fail "interrupted by SIG$sig"
    fi
    if ((failed)); then
        echo
        echo "FAILED:"
        for f in "${failures[@]}"; do echo "  $f"; done
    fi
    if ((passed + failed == 0)); then
        echo "no test ran"
        PMX_SVC_EXIT_RC=1
    fi
    echo
    echo "$passed passed, $failed failed"
    ((failed == 0 || PMX_SVC_EXIT_RC)) || PMX_SVC_EXIT_RC=1
    exit "$PMX_SVC_EXIT_RC"
}

pmx_svc_init || { echo "cannot create a temp dir"; echo "0 passed, 1 failed"; exit 1; }
trap 'finish EXIT $?' EXIT
trap 'finish INT 130' INT
trap 'finish TERM 143' TERM
trap 'finish HUP 129' HUP
# Inner runs (each test file's services) nest their dirs in ours.
export PMX_SVC_PARENT=$PMX_SVC_DIR

# Not emptied: a second run in the same checkout may be writing there. Each log is
# truncated when its job starts.
mkdir -p "$logs"

# --- 1. packages --------------------------------------------------------------
echo "# deps"
# (without our python3 shim on PATH: before python3 is installed it points nowhere)
if ! PATH=${PATH#"$PMX_SVC_DIR/bin:"} bash "$root/scripts/deps.sh"; then
    fail "deps: scripts/deps.sh failed"
    exit 1
fi

# --- 2. builds ----------------------------------------------------------------
declare -A built=()
for b in release asan; do
    if [[ $b == asan ]]; then args=(SAN=1); else args=(); fi
    echo "# build $b: make ${args[*]}${args[*]:+ }-j2"
    job "$logs/build-$b.log" 3600 make "${args[@]}" -j2
    if ((rc == 0)); then
        built[$b]=1
    else
        show "$logs/build-$b.log" 60
        fail "build $b: make ${args[*]}${args[*]:+ }-j2 exited $rc (build/test-logs/build-$b.log)"
    fi
done

# --- 3. unit tests ------------------------------------------------------------
# cmocka prints "[  PASSED  ] N test(s)." and "[  FAILED  ] N test(s), listed
# below:" then one "[  FAILED  ] name" per failed test. One failure more for a
# binary killed by a signal (a sanitizer report, a leak at exit: abort_on_error),
# one whose output stops inside a group, or one exiting non-zero with no failed test.
for b in release asan; do
    [[ -n ${built[$b]-} ]] || continue
    for t in "$root/build/$b/tests"/test_*; do
        [[ -x $t && -f $t ]] || continue
        name=$(basename "$t")
        # A binary whose source is gone (renamed test, old build dir) is stale.
        [[ -f $root/tests/unit/$name.c ]] || continue
        wanted "$name" || continue
        log=$logs/unit-$b-$name.log
        job "$log" 300 "$t"
        p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test(s)\..*/\1/p' "$log" | awk '{s += $1} END {print s + 0}')
        f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test(s),.*/\1/p' "$log" | awk '{s += $1} END {print s + 0}')
        passed=$((passed + p))
        names=$(grep -E '^\[  FAILED  \] ' "$log" | grep -vE '^\[  FAILED  \] [0-9]+ test\(s\)' |
                sed 's/^\[  FAILED  \] //' | sort -u)
        while IFS= read -r n; do
            [[ -n $n ]] && fail "unit $b $name: $n"
        done <<<"$names"
        # A count without names (or names without a count) still counts.
        nnames=$(grep -c . <<<"$names")
        ((f > nnames)) && for ((i = nnames; i < f; i++)); do fail "unit $b $name: (unnamed failure)"; done
        # Killed by a signal (a sanitizer aborts, a leak report at exit), or a group
        # that started and never printed its end: a crash, whatever was counted.
        started=$(grep -c '^\[==========\] Running ' "$log")
        ended=$(grep -c '^\[==========\] [0-9]* test(s) run\.' "$log")
        extra=""
        if ((rc == 124 || rc == 137)); then
            extra="killed after 300 s"
        elif ((rc > 128 || started > ended)); then
            extra="crashed: exit $rc$( ((rc > 128)) && echo " (signal $((rc - 128)))")"
        elif ((rc != 0 && f == 0 && nnames == 0)); then
            extra="exited $rc"
        elif ((rc == 0 && p == 0 && f == 0)); then
            extra="reported no test"
        fi
        [[ -n $extra ]] && fail "unit $b $name: $extra (build/test-logs/unit-$b-$name.log)"
        if ((f || nnames)) || [[ -n $extra ]]; then
            echo "not ok - unit $b $name: $p passed, $((f > nnames ? f : nnames)) failed${extra:+, $extra}"
            show "$log" 60
        else
            echo "ok - unit $b $name: $p passed"
        fi
    done
done

# --- 3b. fuzz corpora -----------------------------------------------------------
# Every tests/fuzz/fuzz_*.c target, linked with tests/fuzz/replay.c, runs once over
# its seed corpus (tests/fuzz/corpus/NAME): the targets' own checks plus the
# sanitizers, on every build. (Fuzzing itself is `make fuzz`, with clang.)
for b in release asan; do
    [[ -n ${built[$b]-} ]] || continue
    for t in "$root/build/$b/fuzz-replay"/fuzz_*; do
        [[ -x $t && -f $t ]] || continue
        name=$(basename "$t")
        [[ -f $root/tests/fuzz/$name.c ]] || continue
        wanted "$name" || continue
        corpus=$root/tests/fuzz/corpus/${name#fuzz_}
        log=$logs/fuzz-$b-$name.log
        if [[ ! -d $corpus ]]; then
            fail "fuzz $b $name: no corpus $corpus"
            echo "not ok - fuzz $b $name: no corpus"
            continue
        fi
        job "$log" 300 "$t" "$corpus"
        if ((rc == 0)) && grep -q '^replayed [1-9][0-9]* inputs$' "$log"; then
            passed=$((passed + 1))
            echo "ok - fuzz $b $name: corpus $(sed -n 's/^replayed //p' "$log")"
        else
            fail "fuzz $b $name: corpus replay exited $rc (build/test-logs/fuzz-$b-$name.log)"
            echo "not ok - fuzz $b $name: exited $rc"
            show "$log" 40
        fi
    done
done

# --- 4. integration tests -----------------------------------------------------
files=()
for f in "$root"/tests/integration/test_*.sh; do
    [[ -f $f ]] && wanted "$(basename "$f" .sh)" && files+=("$f")
done

if ((${#files[@]})) && [[ -z ${built[asan]-} ]]; then
    fail "integration: skipped, the ASan build failed"
elif ((${#files[@]})); then
    echo "# integration: services in $PMX_SVC_DIR"
    if ! pmx_svc_pg_start; then
        fail "integration: the shared PostgreSQL did not start"
    else
        export PMX_PG_HOST PMX_PG_PORT PMX_PG_USER
        export PMX_BIN_DIR=$root/build/asan/bin
        for f in "${files[@]}"; do
            name=$(basename "$f" .sh)
            log=$logs/$name.log
            echo "# ${f#"$root"/}"
            job "$log" "$test_timeout" bash "$f"
            # Whatever the file left in the services registry (it was killed?) goes now.
            for d in "$PMX_SVC_DIR"/pmx.*/; do
                [[ -d $d ]] && { pmx_svc__kill_dir "$d"; rm -rf "$d"; }
            done
            ok=$(grep -c '^ok - ' "$log")
            bad=$(grep -c '^not ok - ' "$log")
            grep -E '^(not )?ok - ' "$log"
            passed=$((passed + ok))
            while IFS= read -r line; do
                fail "$name: ${line#not ok - }"
            done < <(grep '^not ok - ' "$log")
            why=""
            case $rc in
                0) ((ok + bad)) || why="ran no case" ;;
                124|137) why="killed after ${test_timeout}s" ;;
                *) ((bad)) || why="exited $rc without a failed case" ;;
            esac
            if [[ -n $why ]]; then
                echo "not ok - $name: $why"
                fail "$name: $why"
            fi
            if ((bad)) || [[ -n $why ]]; then
                echo "  output of ${f#"$root"/} (build/test-logs/$name.log):"
                show "$log" 150
            fi
        done
    fi
fi

exit 0
