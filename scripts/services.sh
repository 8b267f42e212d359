# shellcheck shell=bash
# scripts/services.sh — throwaway PostgreSQL 15, Redis 7, smtp-sink and dnsmasq for
# tests and demos. A bash library: `source scripts/services.sh`, then call
#
#   pmx_svc_init                   temp dir (mktemp -d, under $PMX_SVC_PARENT or
#                                  $TMPDIR) + traps; the other functions call it.
#                                  The services live as long as the shell that ran
#                                  it: call it (or a *_start) before any $(...) start.
#   pmx_svc_pg_start               exports PMX_PG_HOST (socket dir) PMX_PG_PORT PMX_PG_USER
#   pmx_svc_pg_restart [DOWN_S]    stops that Postgres (fast shutdown), waits DOWN_S
#                                  seconds, starts it again on the same port
#   pmx_svc_redis_start            exports PMX_REDIS_SOCK PMX_REDIS_PORT, prints "SOCK PORT"
#   pmx_svc_sink_start DIR [OPT..] smtp-sink dumping one file per transaction into DIR
#                                  (DIR "-": no dumps);
#                                  OPTs go to smtp-sink (-r RCPT, -f DATA, ...);
#                                  exports PMX_SINK_PORT, prints the port
#   pmx_svc_dns_start CONF         dnsmasq serving CONF (txt-record=NAME,"TEXT" lines) on
#                                  127.0.0.1 UDP+TCP; exports PMX_DNS_PORT, prints the port
#   pmx_svc_dns_txt PORT NAME      prints NAME's TXT records (strings joined), one a line
#   pmx_svc_free_port              prints a loopback port free for both TCP and UDP
#   pmx_svc_run KIND CMD...        runs CMD (e.g. postmuxd) in the background like a
#                                  service: own session, stopped with the others (also
#                                  by the watchdog); exports PMX_RUN_PID, PMX_RUN_LOG
#   pmx_svc_postmux_conf FILE DB   writes a postmux.conf for these services (database
#                                  DB, this Redis, the last sink as relay without TLS,
#                                  no metrics, no submission) and a new master key in
#                                  FILE's directory (master.key)
#   pmx_svc_postgres_conf FILE DB  the same for tools that need only this Postgres
#                                  (`postmux migrate`, the CLI): Redis is a socket
#                                  that is not there
#   pmx_svc_conf_set FILE SEC KEY VALUE  sets KEY in [SEC] of an INI file
#   pmx_svc_atexit CMD             runs CMD (eval) before the services stop
#   pmx_svc_stop_all               stops everything; also runs on EXIT, INT, TERM, HUP
#
# Why it is built this way:
# - Every service runs in its own session (setsid), so a Ctrl-C on the terminal does
#   not reach it half-way and the stop is orderly, and is no child of the calling
#   shell (a bare `wait` in a test returns); each one registers "PID STARTTIME
#   KIND" in $PMX_SVC_DIR/pids itself, before exec, so a service started inside a
#   $(...) subshell is still found and stopped, and a reused PID is never signalled.
# - A watchdog (own session) waits for the shell that called pmx_svc_init and stops
#   everything if that shell dies without running its traps (kill -9): no orphans.
# - Ports come from the kernel (bind to port 0) and may be taken again before the
#   service binds, so a start that fails with "in use" is retried on a new port; a
#   service counts as up only when `ss` shows that very PID listening on the port and
#   it answers its protocol, so two runs side by side never mistake each other's.
# - Postgres refuses to run as root: as root it runs as `postgres` (else `nobody`)
#   through setpriv, which execs (no extra process between us and the postmaster).
# - A directory given in $PMX_SVC_PARENT nests this run's dir inside another run's, so
#   the outer run can sweep whatever an inner one left behind.

PMX_SVC_LIB=$(readlink -f "${BASH_SOURCE[0]}")
PMX_PG_BIN=${PMX_PG_BIN:-/usr/lib/postgresql/15/bin}
PMX_SVC_TIMEOUT=${PMX_SVC_TIMEOUT:-30}
PMX_SVC_PYTHON=/usr/bin/python3
# Per shell, never inherited: a child script gets its own dir.
PMX_SVC_DIR=""
PMX_SVC_OWNER=""
PMX_SVC_ATEXIT=()
PMX_SVC_EXIT_RC=0
PMX_SVC_EXIT_SIG=""
PMX_SVC__PG_CMD=()
PMX_SVC__PG_PID=""
export -n PMX_SVC_DIR PMX_SVC_OWNER

pmx_svc__err() { printf 'services: %s\n' "$*" >&2; }

# Prints "STATE STARTTIME" of PID (fields 3 and 22 of /proc/PID/stat).
pmx_svc__stat() {
    local s f
    { s=$(<"/proc/$1/stat"); } 2>/dev/null || return 1
    read -ra f <<<"${s##*) }"
    printf '%s %s\n' "${f[0]}" "${f[19]}"
}

# True while the process PID started at STARTTIME runs (a zombie counts as gone).
pmx_svc__alive() {
    local st
    st=$(pmx_svc__stat "$1" 2>/dev/null) || return 1
    [[ ${st#* } == "$2" && ${st%% *} != [ZX] ]]
}

pmx_svc_init() {
    [[ -n $PMX_SVC_DIR ]] && return 0
    local base=${PMX_SVC_PARENT:-${TMPDIR:-/tmp}}
    [[ -d $base && -w $base ]] || base=/tmp
    PMX_SVC_DIR=$(mktemp -d "$base/pmx.XXXXXX") || { pmx_svc__err "mktemp -d in $base failed"; return 1; }
    # 0755: Postgres (another user when we are root) and smtp-sink's `nobody` must
    # reach the sockets and dump dirs inside.
    chmod 755 "$PMX_SVC_DIR"
    PMX_SVC_OWNER=$BASHPID
    : >"$PMX_SVC_DIR/pids"

    # Debian's Python modules (dkim, aiosmtpd) are only in /usr/bin/python3.
    mkdir "$PMX_SVC_DIR/bin"
    ln -s "$PMX_SVC_PYTHON" "$PMX_SVC_DIR/bin/python3"
    export PATH="$PMX_SVC_DIR/bin:$PATH"

    trap 'pmx_svc__trap EXIT $?' EXIT
    trap 'pmx_svc__trap INT 130' INT
    trap 'pmx_svc__trap TERM 143' TERM
    trap 'pmx_svc__trap HUP 129' HUP

    (setsid bash -c 'echo $$ >"$3/watchdog.pid"; source "$1"; pmx_svc__watchdog "$2" "$3"' \
        pmx-watchdog "$PMX_SVC_LIB" "$PMX_SVC_OWNER" "$PMX_SVC_DIR" </dev/null >/dev/null 2>&1 &)
    return 0
}

# The watchdog: sleeps until OWNER exits, then stops what is left in DIR.
pmx_svc__watchdog() {
    trap '' INT HUP
    tail --pid="$1" -f /dev/null
    pmx_svc__kill_dir "$2"
    rm -rf "$2"
}

pmx_svc_atexit() { PMX_SVC_ATEXIT+=("$1"); }

pmx_svc__trap() {
    PMX_SVC_EXIT_SIG=$1
    PMX_SVC_EXIT_RC=$2
    pmx_svc_stop_all
    trap - EXIT
    exit "$PMX_SVC_EXIT_RC"
}

# Every "PID STARTTIME KIND" line registered under DIR (nested runs included).
pmx_svc__entries() {
    find "$1" -name pids -type f -exec cat {} + 2>/dev/null
}

# Stops every service registered under DIR: Postgres gets SIGINT (fast shutdown),
# the others SIGTERM to their process group; what still runs after 10 s gets SIGKILL.
# Re-reads the registry while waiting, so a service that was just forking is caught.
pmx_svc__kill_dir() {
    local dir=$1 pid st kind
    local -A sent=()
    local deadline=$((SECONDS + 10)) left
    while :; do
        left=0
        while read -r pid st kind; do
            [[ -n $pid ]] || continue
            pmx_svc__alive "$pid" "$st" || continue
            left=1
            if [[ -z ${sent[$pid]-} ]]; then
                sent[$pid]=1
                if [[ $kind == pg ]]; then kill -INT "$pid" 2>/dev/null
                else kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null; fi
            elif ((SECONDS >= deadline)); then
                kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
            fi
        done < <(pmx_svc__entries "$dir")
        ((left)) || break
        # Past the deadline SIGKILL went out above; give the kernel a moment.
        ((SECONDS < deadline + 3)) || { pmx_svc__err "could not stop every service in $dir"; return 1; }
        sleep 0.1
    done
    return 0
}

pmx_svc_stop_all() {
    local -
    set +e
    [[ -n $PMX_SVC_DIR && $BASHPID == "$PMX_SVC_OWNER" ]] || return 0
    local dir=$PMX_SVC_DIR i wd
    for ((i = ${#PMX_SVC_ATEXIT[@]} - 1; i >= 0; i--)); do
        eval "${PMX_SVC_ATEXIT[i]}"
    done
    PMX_SVC_ATEXIT=()
    # The watchdog writes its pid as it starts: right after pmx_svc_init, wait for it.
    for ((i = 0; i < 40; i++)); do
        { wd=$(<"$dir/watchdog.pid"); } 2>/dev/null && [[ -n $wd ]] && break
        sleep 0.05
    done
    [[ -n $wd ]] && kill -TERM -- "-$wd" 2>/dev/null
    pmx_svc__kill_dir "$dir"
    if [[ -n ${PMX_KEEP_TMP-} ]]; then
        pmx_svc__err "kept $dir"
    else
        rm -rf "$dir"
    fi
    PMX_SVC_DIR=""
    return 0
}

# Prints a port free on 127.0.0.1 for TCP and UDP alike (dnsmasq wants both).
pmx_svc_free_port() {
    "$PMX_SVC_PYTHON" - <<'EOF'
import socket, sys
for _ in range(100):
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.bind(("127.0.0.1", 0))
    port = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", port))
    except OSError:
        t.close(); u.close()
        continue
    t.close(); u.close()
    print(port)
    sys.exit(0)
sys.exit("no free port found")
EOF
}

# pmx_svc__spawn SDIR KIND CMD...: runs CMD in a new session, cwd SDIR, output to
# SDIR/KIND.log; the child registers itself and writes SDIR/pid before exec.
pmx_svc__spawn() {
    local sdir=$1 kind=$2
    shift 2
    rm -f "$sdir/pid"
    # ( ... & ): the service is not a child of this shell, so a bare `wait` in a
    # test does not wait for it.
    (setsid bash -c '
        s=$(<"/proc/$$/stat"); read -ra f <<<"${s##*) }"
        echo "$$ ${f[19]} $1" >>"$2"
        echo "$$ ${f[19]}" >"$3/pid"
        cd "$3" || exit 1
        shift 3
        exec "$@"' pmx-spawn "$kind" "$PMX_SVC_DIR/pids" "$sdir" "$@" \
        </dev/null >>"$sdir/$kind.log" 2>&1 &)
    local i
    for ((i = 0; i < 100; i++)); do
        [[ -s $sdir/pid ]] && { read -r PMX_SVC__PID PMX_SVC__ST <"$sdir/pid"; return 0; }
        sleep 0.05
    done
    pmx_svc__err "$kind did not start (no pid after 5 s)"
    return 1
}

pmx_svc_run() {
    pmx_svc_init || return 1
    local kind=${1:?pmx_svc_run KIND CMD...} d
    shift
    d=$(mktemp -d "$PMX_SVC_DIR/$kind.XXXXXX") || return 1
    chmod 755 "$d"
    pmx_svc__spawn "$d" "$kind" "$@" || return 1
    export PMX_RUN_PID=$PMX_SVC__PID PMX_RUN_LOG=$d/$kind.log
}

# True when PID listens on 127.0.0.1:PORT (PROTO t or u), as `ss` sees it.
pmx_svc__listens() {
    ss -Hln"$1"p "sport = :$3" 2>/dev/null | grep -q "pid=$2,"
}

# pmx_svc__wait KIND SDIR PORT PROTOS CHECK...: waits until the spawned process
# listens on PORT for every protocol letter in PROTOS and CHECK succeeds.
# Returns 0 up, 2 died (3 when its log says the port was taken), 1 timed out.
pmx_svc__wait() {
    local kind=$1 sdir=$2 port=$3 protos=$4 p ok
    shift 4
    local deadline=$((SECONDS + PMX_SVC_TIMEOUT))
    while :; do
        if ! pmx_svc__alive "$PMX_SVC__PID" "$PMX_SVC__ST"; then
            grep -qiE 'in use|could not bind|could not create .*listen' "$sdir/$kind.log" 2>/dev/null && return 3
            return 2
        fi
        ok=1
        for ((p = 0; p < ${#protos}; p++)); do
            pmx_svc__listens "${protos:p:1}" "$PMX_SVC__PID" "$port" || { ok=0; break; }
        done
        ((ok)) && "$@" >/dev/null 2>&1 && return 0
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

# Prints why KIND did not come up, with its log tail, and stops that process.
pmx_svc__fail() {
    local kind=$1 sdir=$2 why=$3
    pmx_svc__err "$kind $why; last lines of $sdir/$kind.log:"
    tail -n 25 "$sdir/$kind.log" 2>/dev/null | sed 's/^/    /' >&2
    if pmx_svc__alive "$PMX_SVC__PID" "$PMX_SVC__ST"; then
        kill -KILL -- "-$PMX_SVC__PID" 2>/dev/null || kill -KILL "$PMX_SVC__PID" 2>/dev/null
    fi
    return 1
}

# pmx_svc__start KIND SDIR PROTOS CHECK -- CMD...: spawns CMD (with @PORT@ replaced by
# a free port) until it comes up; retries when the port was taken. Sets PMX_SVC__PORT.
pmx_svc__start() {
    local kind=$1 sdir=$2 protos=$3
    shift 3
    local check=() cmd=() a try rc port
    while (($#)) && [[ $1 != -- ]]; do check+=("$1"); shift; done
    shift
    for try in 1 2 3 4 5 6 7 8; do
        port=$(pmx_svc_free_port) || { pmx_svc__err "no free port"; return 1; }
        cmd=()
        for a in "$@"; do cmd+=("${a//@PORT@/$port}"); done
        local c2=()
        for a in "${check[@]}"; do c2+=("${a//@PORT@/$port}"); done
        pmx_svc__spawn "$sdir" "$kind" "${cmd[@]}" || return 1
        pmx_svc__wait "$kind" "$sdir" "$port" "$protos" "${c2[@]}"
        rc=$?
        case $rc in
            0) PMX_SVC__PORT=$port; return 0 ;;
            3) printf '%s: port %s taken, retrying\n' "$kind" "$port" >>"$sdir/$kind.log" ;;
            2) pmx_svc__fail "$kind" "$sdir" "exited during start-up"; return 1 ;;
            *) pmx_svc__fail "$kind" "$sdir" "did not answer within ${PMX_SVC_TIMEOUT}s"; return 1 ;;
        esac
    done
    pmx_svc__fail "$kind" "$sdir" "found no free port after $try tries"
}

# The user an unprivileged service runs as when we are root.
pmx_svc__pg_user() {
    if id -u postgres >/dev/null 2>&1; then echo postgres; else echo nobody; fi
}

pmx_svc_pg_start() {
    pmx_svc_init || return 1
    local d=$PMX_SVC_DIR/pg as=() u g
    mkdir -m 755 "$d" || return 1
    if ((EUID == 0)); then
        u=$(pmx_svc__pg_user)
        g=$(id -gn "$u")
        chown "$u:$g" "$d"
        as=(setpriv --reuid="$u" --regid="$g" --init-groups --)
        if ! "${as[@]}" test -w "$d"; then
            pmx_svc__err "postgres runs as $u, who cannot write $d (a parent dir is not world-searchable?); set TMPDIR=/tmp"
            return 1
        fi
    fi
    if ! (cd "$d" && "${as[@]}" "$PMX_PG_BIN/initdb" -D "$d/data" -U postmux --auth=trust \
            -E UTF8 --locale=C --no-sync --no-instructions) >"$d/initdb.log" 2>&1; then
        pmx_svc__err "initdb failed; last lines of $d/initdb.log:"
        tail -n 25 "$d/initdb.log" | sed 's/^/    /' >&2
        return 1
    fi
    PMX_SVC__PG_CMD=("${as[@]}" "$PMX_PG_BIN/postgres" -D "$d/data" -p @PORT@ -k "$d"
        -c listen_addresses=127.0.0.1 -c unix_socket_permissions=0777
        -c fsync=off -c synchronous_commit=off -c full_page_writes=off
        -c max_connections=300 -c shared_buffers=64MB -c max_wal_size=1GB
        -c checkpoint_timeout=1h -c logging_collector=off -c log_min_messages=warning
        -c 'log_line_prefix=%m [%p] %d ')
    pmx_svc__start pg "$d" t \
        "$PMX_PG_BIN/pg_isready" -q -h "$d" -p @PORT@ -U postmux -d postgres -t 1 -- \
        "${PMX_SVC__PG_CMD[@]}" || return 1
    PMX_SVC__PG_PID=$PMX_SVC__PID PMX_SVC__PG_ST=$PMX_SVC__ST
    export PMX_PG_HOST=$d PMX_PG_PORT=$PMX_SVC__PORT PMX_PG_USER=postmux
}

# pmx_svc_pg_restart [DOWN_SECONDS]: stops the Postgres this shell started (fast
# shutdown: every connection is cut), waits DOWN_SECONDS (default 0) with nothing
# listening, and starts it again on the same port and socket dir.
pmx_svc_pg_restart() {
    local down=${1:-0} d=${PMX_PG_HOST:?pmx_svc_pg_restart: no Postgres started here} i a cmd=()
    [[ -n ${PMX_SVC__PG_PID-} && ${#PMX_SVC__PG_CMD[@]} -gt 0 ]] || {
        pmx_svc__err "pmx_svc_pg_restart: this shell did not start Postgres"
        return 1
    }
    kill -INT "$PMX_SVC__PG_PID" 2>/dev/null
    for ((i = 0; i < 300; i++)); do
        pmx_svc__alive "$PMX_SVC__PG_PID" "$PMX_SVC__PG_ST" || break
        sleep 0.1
    done
    pmx_svc__alive "$PMX_SVC__PG_PID" "$PMX_SVC__PG_ST" && {
        pmx_svc__err "Postgres did not stop within 30 s"
        return 1
    }
    sleep "$down"
    for a in "${PMX_SVC__PG_CMD[@]}"; do cmd+=("${a//@PORT@/$PMX_PG_PORT}"); done
    pmx_svc__spawn "$d" pg "${cmd[@]}" || return 1
    pmx_svc__wait pg "$d" "$PMX_PG_PORT" t \
        "$PMX_PG_BIN/pg_isready" -q -h "$d" -p "$PMX_PG_PORT" -U postmux -d postgres -t 1 ||
        { pmx_svc__fail pg "$d" "did not come back on port $PMX_PG_PORT"; return 1; }
    PMX_SVC__PG_PID=$PMX_SVC__PID PMX_SVC__PG_ST=$PMX_SVC__ST
}

pmx_svc_redis_start() {
    pmx_svc_init || return 1
    local d
    d=$(mktemp -d "$PMX_SVC_DIR/redis.XXXXXX") || return 1
    chmod 755 "$d"
    if ((${#d} > 90)); then
        pmx_svc__err "$d/redis.sock is too long for a unix socket; use a shorter TMPDIR"
        return 1
    fi
    pmx_svc__start redis "$d" t \
        pmx_svc__redis_ping "$d/redis.sock" -- \
        /usr/bin/redis-server --port @PORT@ --bind 127.0.0.1 \
        --unixsocket "$d/redis.sock" --unixsocketperm 777 \
        --save "" --appendonly no --daemonize no --dir "$d" || return 1
    export PMX_REDIS_SOCK=$d/redis.sock PMX_REDIS_PORT=$PMX_SVC__PORT
    printf '%s %s\n' "$PMX_REDIS_SOCK" "$PMX_REDIS_PORT"
}

pmx_svc__tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pmx_svc__redis_ping() { [[ $(/usr/bin/redis-cli -s "$1" ping 2>/dev/null) == PONG ]]; }

pmx_svc_sink_start() {
    pmx_svc_init || return 1
    local dump=${1:?pmx_svc_sink_start DUMPDIR [smtp-sink options]} d as=() dopt=()
    shift
    # DUMPDIR "-": no dumps at all (benchmarks).
    [[ $dump == - ]] || { mkdir -p "$dump" || return 1; dopt=(-d "$dump/m."); }
    d=$(mktemp -d "$PMX_SVC_DIR/sink.XXXXXX") || return 1
    chmod 755 "$d"
    if ((EUID == 0)); then
        # smtp-sink must drop root (-u) after binding; the dumps are written as nobody.
        [[ $dump == - ]] || chown "nobody:$(id -gn nobody)" "$dump"
        as=(-u nobody)
    fi
    pmx_svc__start smtp-sink "$d" t \
        pmx_svc__tcp_open @PORT@ -- \
        /usr/sbin/smtp-sink "${as[@]}" "${dopt[@]}" "$@" 127.0.0.1:@PORT@ 256 || return 1
    export PMX_SINK_PORT=$PMX_SVC__PORT
    printf '%s\n' "$PMX_SINK_PORT"
}

pmx_svc_dns_start() {
    pmx_svc_init || return 1
    local conf=${1:?pmx_svc_dns_start CONFFILE} d as=()
    [[ -r $conf ]] || { pmx_svc__err "dnsmasq: cannot read $conf"; return 1; }
    conf=$(readlink -f "$conf")
    d=$(mktemp -d "$PMX_SVC_DIR/dns.XXXXXX") || return 1
    chmod 755 "$d"
    if ((EUID == 0)); then
        as=(--user=nobody "--group=$(id -gn nobody)")
    else
        as=("--user=$(id -un)" "--group=$(id -gn)")
    fi
    pmx_svc__start dnsmasq "$d" tu \
        pmx_svc_dns_txt @PORT@ ready.pmx.invalid -- \
        /usr/sbin/dnsmasq --keep-in-foreground --no-resolv --no-hosts --no-poll \
        --conf-file="$conf" --port=@PORT@ --listen-address=127.0.0.1 --bind-interfaces \
        "${as[@]}" --pid-file="$d/dnsmasq.pid" --log-facility=- --log-queries || return 1
    export PMX_DNS_PORT=$PMX_SVC__PORT
    printf '%s\n' "$PMX_DNS_PORT"
}

# pmx_svc_dns_txt PORT NAME [tcp]: asks 127.0.0.1:PORT for NAME's TXT records and
# prints each (its strings joined), one a line. Exit 0 on any answer (the rcode, when
# not NOERROR, goes to stderr), 1 when nothing answered within 2 s.
pmx_svc_dns_txt() {
    "$PMX_SVC_PYTHON" - "$@" <<'EOF'
import random, socket, struct, sys
port, name = int(sys.argv[1]), sys.argv[2]
tcp = len(sys.argv) > 3 and sys.argv[3] == "tcp"
qid = random.randrange(65536)
q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
for label in name.rstrip(".").split("."):
    b = label.encode()
    q += bytes([len(b)]) + b
q += b"\0" + struct.pack(">HH", 16, 1)
try:
    if tcp:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        s.sendall(struct.pack(">H", len(q)) + q)
        r = b""
        while len(r) < 2 or len(r) < 2 + struct.unpack(">H", r[:2])[0]:
            chunk = s.recv(65535)
            if not chunk:
                break
            r += chunk
        r = r[2:]
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(2)
        s.sendto(q, ("127.0.0.1", port))
        r = s.recv(65535)
except OSError as e:
    sys.exit("dns: no answer from 127.0.0.1:%d: %s" % (port, e))
rid, flags, qd, an = struct.unpack(">HHHH", r[:8])
if rid != qid:
    sys.exit("dns: answer with the wrong id")
def skip(off):
    while True:
        n = r[off]
        if n == 0:
            return off + 1
        if n & 0xC0 == 0xC0:
            return off + 2
        off += 1 + n
off = 12
for _ in range(qd):
    off = skip(off) + 4
for _ in range(an):
    off = skip(off)
    typ, _cls, _ttl, rdlen = struct.unpack(">HHIH", r[off:off + 10])
    off += 10
    rd = r[off:off + rdlen]
    off += rdlen
    if typ == 16:
        parts, i = [], 0
        while i < len(rd):
            parts.append(rd[i + 1:i + 1 + rd[i]].decode("utf-8", "replace"))
            i += 1 + rd[i]
        print("".join(parts))
if flags & 15:
    print("dns: rcode=%d" % (flags & 15), file=sys.stderr)
EOF
}

# pmx_svc__new_key FILE: a new master key beside FILE (master.key, mode 600); prints
# its path.
pmx_svc__new_key() {
    local key
    key=$(dirname "$1")/master.key
    (umask 077 && head -c 32 /dev/urandom | base64 >"$key") || return 1
    echo "$key"
}

pmx_svc_postgres_conf() {
    local file=${1:?pmx_svc_postgres_conf FILE DB} db=${2:?pmx_svc_postgres_conf FILE DB}
    local key
    [[ -n ${PMX_PG_HOST-} ]] || {
        pmx_svc__err "pmx_svc_postgres_conf: start Postgres first"
        return 1
    }
    key=$(pmx_svc__new_key "$file") || return 1
    cat >"$file" <<EOF
[postgres]
conninfo = host=$PMX_PG_HOST port=$PMX_PG_PORT user=$PMX_PG_USER dbname=$db
[redis]
address = unix:$(dirname "$file")/unused.sock
[keys]
master_key_file = $key
EOF
}

pmx_svc_postmux_conf() {
    local file=${1:?pmx_svc_postmux_conf FILE DB} db=${2:?pmx_svc_postmux_conf FILE DB}
    local key
    [[ -n ${PMX_PG_HOST-} && -n ${PMX_REDIS_SOCK-} && -n ${PMX_SINK_PORT-} ]] || {
        pmx_svc__err "pmx_svc_postmux_conf: start Postgres, Redis and a sink first"
        return 1
    }
    key=$(pmx_svc__new_key "$file") || return 1
    cat >"$file" <<EOF
[daemon]
metrics_listen =

[postgres]
conninfo = host=$PMX_PG_HOST port=$PMX_PG_PORT user=$PMX_PG_USER dbname=$db

[redis]
address = unix:$PMX_REDIS_SOCK

[relay]
host = 127.0.0.1
port = $PMX_SINK_PORT
tls = none

[submission]
listen =

[delivery]

[keys]
master_key_file = $key
EOF
}

# Replaced in place, else added at the end of the section, else a new section at the end.
pmx_svc_conf_set() {
    local file=${1:?pmx_svc_conf_set FILE SECTION KEY VALUE}
    local sec=${2:?pmx_svc_conf_set FILE SECTION KEY VALUE} key=${3:?pmx_svc_conf_set FILE SECTION KEY VALUE}
    PMX__V=${4-} awk -v s="$sec" -v k="$key" '
        function put() { v = ENVIRON["PMX__V"]; print k " =" (v == "" ? "" : " " v); done = 1 }
        /^[ \t]*\[[^]]*\][ \t]*$/ {
            if (insec && !done) put()
            name = $0; gsub(/^[ \t]*\[[ \t]*|[ \t]*\][ \t]*$/, "", name)
            insec = (name == s); print; next
        }
        insec && !/^[ \t]*[;#]/ && index($0, "=") {
            key = $0; sub(/[ \t]*=.*$/, "", key); gsub(/^[ \t]+/, "", key)
            if (key == k) { if (!done) put(); next }
        }
        { print }
        END { if (!done) { if (!insec) print "[" s "]"; put() } }
    ' "$file" >"$file.tmp" && mv "$file.tmp" "$file"
}
