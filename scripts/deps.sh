#!/usr/bin/env bash
# Installs the Debian 12 packages postmux needs to build and test — only the missing
# ones, with apt-get, without leaving any installed service (PostgreSQL, Redis,
# Postfix) running. Run by `make test` (tests/run.sh) first; safe to run any time.
#
# As root it installs directly; otherwise through sudo when there is one; with
# neither it prints what is missing and fails.
set -euo pipefail

PKGS=(
    build-essential pkg-config clang libclang-rt-14-dev
    libuv1-dev libpq-dev libssl-dev libopendkim-dev opendkim-tools libhiredis-dev
    libsystemd-dev libcmocka-dev libjansson-dev libcurl4-openssl-dev libinih-dev libmicrohttpd-dev libunbound-dev
    libevent-dev  # only for pkg-config: libunbound.pc requires libevent.pc
    postgresql redis-server postfix
    python3 python3-dkim python3-aiosmtpd python3-jsonschema swaks libnet-ssleay-perl dnsmasq-base valgrind
    chromium
    prometheus man-db groff-base
    apache2-utils  # ab: the HTTP scenario of make bench (tests/bench/http.sh)
    systemd openssl ca-certificates procps iproute2 util-linux
    curl  # the API requests of make demo and the HTTP tests
)

# The programs the harness calls by path; a package "installed" without them is broken.
FILES=(
    /usr/lib/postgresql/15/bin/initdb /usr/lib/postgresql/15/bin/postgres
    /usr/lib/postgresql/15/bin/pg_isready /usr/lib/postgresql/15/bin/psql
    /usr/bin/redis-server /usr/bin/redis-cli /usr/sbin/smtp-sink /usr/sbin/dnsmasq
    /usr/bin/swaks /usr/bin/python3 /usr/bin/setpriv /usr/bin/ss /usr/bin/timeout
    /usr/bin/man /usr/bin/groff /usr/bin/chromium /usr/bin/ab /usr/bin/curl
)

say() { printf 'deps: %s\n' "$*" >&2; }
die() { printf 'deps: error: %s\n' "$*" >&2; exit 1; }

missing=()
for p in "${PKGS[@]}"; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ $st == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]})); then
    SUDO=()
    if ((EUID != 0)); then
        if command -v sudo >/dev/null 2>&1; then
            # No terminal to ask a password on (CI, pipes): fail instead of hanging.
            if [[ -t 0 ]]; then SUDO=(sudo); else SUDO=(sudo -n); fi
        else
            die "missing packages: ${missing[*]}
  not root and no sudo: install them as root with
  apt-get install ${missing[*]}"
        fi
    fi
    say "installing: ${missing[*]}"

    # Keep maintainer scripts from starting services: invoke-rc.d and
    # deb-systemd-invoke both ask policy-rc.d, and 101 means "action forbidden".
    policy=/usr/sbin/policy-rc.d
    saved=""
    restore_policy() {
        if [[ -n $saved ]]; then
            "${SUDO[@]}" mv -f "$saved" "$policy" || true
        else
            "${SUDO[@]}" rm -f "$policy" || true
        fi
    }
    if [[ -e $policy ]]; then
        saved="$policy.pmx-saved.$$"
        "${SUDO[@]}" mv -f "$policy" "$saved"
    fi
    trap restore_policy EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
    "${SUDO[@]}" chmod 755 "$policy"

    echo "postfix postfix/main_mailer_type select No configuration" |
        "${SUDO[@]}" debconf-set-selections

    apt=("${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -y
         -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef
         -o Dpkg::Options::=--force-confold)
    # Mirrors hiccup: a few tries before giving up.
    for try in 1 2 3; do
        "${apt[@]}" update && break
        ((try < 3)) || die "apt-get update failed"
        say "apt-get update failed, retrying"; sleep 5
    done
    for try in 1 2 3; do
        "${apt[@]}" install --no-install-recommends "${missing[@]}" && break
        ((try < 3)) || die "apt-get install failed: ${missing[*]}"
        say "apt-get install failed, retrying"; sleep 5
    done

    restore_policy
    trap - EXIT INT TERM

    still=()
    for p in "${missing[@]}"; do
        st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
        [[ $st == "install ok installed" ]] || still+=("$p")
    done
    ((${#still[@]} == 0)) || die "still not installed after apt-get: ${still[*]}"
fi

for f in "${FILES[@]}"; do
    [[ -x $f ]] || die "$f is missing although its package is installed"
done

# Debian's Python modules live in the system interpreter only; a python3 earlier on
# PATH (pyenv, venv) may not see them. The tests call /usr/bin/python3.
/usr/bin/python3 -c 'import dkim, aiosmtpd' 2>/dev/null ||
    die "/usr/bin/python3 cannot import dkim and aiosmtpd (python3-dkim, python3-aiosmtpd)"
# swaks only recommends Net::SSLeay (we install with --no-install-recommends); without
# it `swaks --tls` exits "TLS not available".
perl -MNet::SSLeay -e 1 2>/dev/null || die "perl cannot load Net::SSLeay (libnet-ssleay-perl), swaks --tls needs it"

if ((${#missing[@]})); then
    say "installed ${#missing[@]} package(s)"
else
    say "all ${#PKGS[@]} packages present"
fi
