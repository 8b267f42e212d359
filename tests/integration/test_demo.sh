#!/usr/bin/env bash
# `make demo` (scripts/demo.sh, issue 4 item 7) runs to the end non-interactively with
# the binaries under test: throwaway services, a workspace with a verified domain, jobs
# XADDed with redis-cli, outcomes in Postgres, DKIM checked by python3-dkim, the loop
# back (a recipient the relay refuses as unknown, a bounce taken back by the [inbound]
# listener for another: both suppressed, the next job to them suppressed) — and it
# stops everything it started.
source "$(dirname "$0")/lib.sh"

[[ -x $PMX && -x $PMXD ]] || t__setup_fail "no postmux/postmuxd in $PMX_BIN_DIR: build first (make)"

t_case "the demo runs end to end and exits 0"
T_RUN_TIMEOUT=60 t_run env -u DEMO_KEEP DEMO_BIN_DIR="$PMX_BIN_DIR" bash "$PMX_ROOT/scripts/demo.sh"
t_expect_rc 0
t_expect_match "$T_OUT" '^ws_[a-z2-7]{16}$' "workspace id"
t_expect_match "$T_OUT" '^verified$' "domain verify --skip-dns"
t_expect_match "$T_OUT" '^ welcome-1 +\| alice@example\.net +\| sent +\| +1 \| 250 ' "composed job sent"
t_expect_eq "$(grep -cE '^ news-1 +\| [a-z]+@example\.net +\| sent ' <<<"$T_OUT")" 4 "multipart job: to, to, cc, bcc sent"
t_expect_match "$T_OUT" '^ invoice-1 +\| erin@example\.net +\| sent ' "raw job sent"
t_expect_match "$T_OUT" '^ spoof-1 +\| frank@example\.net +\| rejected +\| +0 \| domain_not_verified: other\.example' "unverified From rejected"
t_expect_match "$T_OUT" 'pending entries left in .*: 0$' "nothing pending"
t_expect_match "$T_OUT" '\(decodes to: Grüße aus Köln — 東京 ✉\)' "RFC 2047 subject round trip"
t_expect_eq "$(grep -cE 'DKIM signature [01]: a=(rsa|ed25519)-sha256 d=demo\.example .* -> pass ' <<<"$T_OUT")" 12 \
    "rsa + ed25519 signatures pass on 6 messages (VERP: one per recipient of the multipart job)"
t_expect_nomatch "$T_OUT" 'FAIL|WRONG' "a failed verification"
t_expect_match "$T_OUT" 'Subject changed\): DKIM signature 0 -> fail, as it must' "tampered copy fails"
t_expect_match "$T_OUT" '^  6 messages, every DKIM signature verifies$' "summary"
t_expect_match "$T_OUT" '<- 250 2\.0\.0 Ok: stored as report [0-9]+$' "the bounce stored by the inbound listener"
t_expect_match "$T_OUT" '^ alice@example\.net \| bounced +\| user_unknown +\| message\.bounced \| \{"async":true' \
    "alice bounced async"
t_expect_match "$T_OUT" '^alice@example\.net +\* +hard_bounce ' "alice suppressed"
t_expect_match "$T_OUT" '^ perm-gone@example\.net \| bounced +\| user_unknown +\| 550 5\.1\.1' \
    "the recipient the relay refused bounced, class user_unknown"
t_expect_match "$T_OUT" '^perm-gone@example\.net +\* +hard_bounce ' "perm-gone suppressed"
t_expect_match "$T_OUT" '^ welcome-2 +\| alice@example\.net +\| suppressed +\| suppressed: hard_bounce' \
    "the next job to alice suppressed"
t_expect_match "$T_OUT" '^ welcome-2 +\| perm-gone@example\.net +\| suppressed +\| suppressed: hard_bounce' \
    "... and to perm-gone"
t_expect_match "$T_OUT" 'postmuxd \| postmuxd\[[0-9]+\] info: stopped exit=0' "postmuxd stopped cleanly"

demo_out=$T_OUT

t_case "the demo leaves nothing behind"
demo_dir=$(sed -n 's/^  postgres  \(.*\)\/pg (port .*/\1/p' <<<"$demo_out")
t_expect_match "$demo_dir" '^/.+/pmx\.[A-Za-z0-9]+$' "the demo's temp dir in its output"
if [[ -n $demo_dir ]]; then
    [[ -e $demo_dir ]] && t_fail "$demo_dir still exists"
    left=""
    for p in /proc/[0-9]*; do
        c=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null)
        [[ $c == *"$demo_dir"* ]] && left+="${p#/proc/}: ${c:0:80}; "
    done
    t_expect_eq "$left" "" "processes still naming $demo_dir"
fi

t_case "missing binaries: a one-line error and exit 1"
t_run env DEMO_BIN_DIR="$T_DIR/nowhere" bash "$PMX_ROOT/scripts/demo.sh"
t_expect_rc 1
t_expect_match "$T_ERR" "^demo: no postmux/postmuxd in $T_DIR/nowhere$" "error"

t_done
