#!/usr/bin/env bash
# Shared by the tests that relay through TLS: a throwaway CA with certificates for
# "localhost" (DNS + 127.0.0.1) and "other.test", and tls_relay.py (aiosmtpd) as a
# TLS-capable relay the project did not write. Sourced after lib.sh's t_setup.
PY=${PY:-/usr/bin/python3}
RELAY_PY=${RELAY_PY:-$PMX_ROOT/tests/tools/tls_relay.py}

# A test CA, a server certificate for localhost/127.0.0.1 and one for other.test
# signed by it, and a second CA the client does not know.
make_certs() {
    local d=$T_DIR/certs
    mkdir -p "$d"
    local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    openssl req -x509 "${ec[@]}" -keyout "$d/ca.key" -out "$d/ca.crt" -days 2 \
        -subj "/CN=postmux test CA" -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null || return 1
    local name san
    for name in localhost other; do
        san="DNS:localhost,IP:127.0.0.1"
        [[ $name == other ]] && san="DNS:other.test"
        openssl req "${ec[@]}" -keyout "$d/$name.key" -out "$d/$name.csr" \
            -subj "/CN=$name" 2>/dev/null || return 1
        printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n' \
            "$san" >"$d/$name.ext"
        openssl x509 -req -in "$d/$name.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" \
            -CAcreateserial -out "$d/$name.crt" -days 2 -extfile "$d/$name.ext" 2>/dev/null || return 1
    done
    CERTS=$d
}

# await_port VAR PORT_FILE WHAT ERR_FILE: waits up to 10 s for a test server to
# write its port to PORT_FILE and sets VAR to it; if none comes, VAR is empty and
# the case fails naming WHAT with the start of ERR_FILE.
await_port() {
    local -n port_=$1
    local pf=$2 what=$3 err=$4 i
    for ((i = 0; i < 100; i++)); do
        [[ -s $pf ]] && break
        sleep 0.1
    done
    port_=$(<"$pf") || port_=""
    [[ -n $port_ ]] || t_fail "$what did not start: $(head -c 300 "$err")"
}

# start_relay NAME CERT [tls_relay.py options]: sets RELAY_PORT, RELAY_PID,
# RELAY_LOG (its event log) and RELAY_DIR (stored messages). "${RELAY_AUTH[@]}"
# among the options makes it require AUTH as alice.
start_relay() {
    local name=$1 cert=$2
    shift 2
    RELAY_DIR=$T_DIR/relay-$name
    RELAY_LOG=$T_DIR/relay-$name.log
    local pf=$T_DIR/relay-$name.port
    rm -f "$pf"
    "$PY" "$RELAY_PY" --port-file "$pf" --cert "$CERTS/$cert.crt" --key "$CERTS/$cert.key" \
        --dir "$RELAY_DIR" --log "$RELAY_LOG" "$@" \
        2>"$T_DIR/relay-$name.err" &
    RELAY_PID=$!
    await_port RELAY_PORT "$pf" "tls_relay.py $name" "$T_DIR/relay-$name.err"
}

stop_relay() {
    [[ -n ${RELAY_PID-} ]] || return 0
    kill "$RELAY_PID" 2>/dev/null
    wait "$RELAY_PID" 2>/dev/null
    RELAY_PID=""
}

# Lines of the relay's event log matching ERE (0 when there is no log).
relay_events() { grep -cE -- "$1" "$RELAY_LOG" 2>/dev/null; }
