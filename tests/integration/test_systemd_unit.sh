#!/usr/bin/env bash
# systemd/postmux.service, .sysusers and .tmpfiles (README, Install): the unit passes
# `systemd-analyze verify`, `systemd-analyze security --offline=true` rates it
# OK or better, it carries the settings the process model relies on, and the
# sysusers/tmpfiles snippets create the user and directories they promise
# (applied to a scratch root with --root, never to this machine).
if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "ok - systemd unit checks # skip systemd-analyze is not installed"
    exit 0
fi
source "$(dirname "$0")/lib.sh"

UNIT_SRC=$PMX_ROOT/systemd/postmux.service
PMXD_ABS=$(readlink -f "$PMXD")

# The unit as installed names /usr/local/sbin/postmuxd; verify wants the binary
# to exist, so check a copy pointing at the one just built.
UNIT=$T_DIR/unit/postmux.service
mkdir -p "$T_DIR/unit"
sed "s#/usr/local/sbin/postmuxd#$PMXD_ABS#g" "$UNIT_SRC" >"$UNIT"

# "→ Overall exposure level for postmux.service: 1.2 OK 🙂" -> "1.2 OK"
rating() {
    systemd-analyze security --offline=true "$1" 2>&1 |
        sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\) \([A-Z]*\).*/\1 \2/p'
}

t_case "systemd-analyze verify passes"
t_run systemd-analyze verify "$UNIT"
t_expect_rc 0
t_expect_eq "$T_ERR" "" "verify's complaints"

t_case "systemd-analyze security --offline=true rates the unit OK or better"
for u in "$UNIT_SRC" "$UNIT"; do
    r=$(rating "$u")
    t_expect_match "$r" '^[0-9.]+ (OK|SAFE|PERFECT)$' "rating of $u"
    awk -v x="${r%% *}" 'BEGIN { exit !(x != "" && x + 0 < 5.0) }' ||
        t_fail "exposure of $u is '${r%% *}', want < 5.0"
done

t_case "the unit has the settings the supervisor relies on"
unit_text=$(<"$UNIT_SRC")
for want in '^Type=notify$' '^NotifyAccess=main$' '^ExecStart=/usr/local/sbin/postmuxd$' \
            '^ExecReload=/bin/kill -HUP \$MAINPID$' '^KillMode=mixed$' '^Restart=on-failure$' \
            '^WatchdogSec=30s$' '^User=postmux$' '^Group=postmux$' '^LimitNOFILE=65536$' \
            '^CapabilityBoundingSet=$' '^NoNewPrivileges=yes$' '^ProtectSystem=strict$' \
            '^RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6$' \
            '^SystemCallFilter=@system-service$' '^MemoryDenyWriteExecute=yes$' '^UMask=0077$'; do
    t_expect_match "$unit_text" "$want" "postmux.service"
done
# systemd must stop waiting longer than postmuxd drains by default (30 s).
stop=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s$/\1/p' <<<"$unit_text")
[[ -n $stop ]] && ((stop > 30)) || t_fail "TimeoutStopSec must exceed the default shutdown_timeout (30s)"

ROOT=$T_DIR/root
t_case "sysusers creates the postmux user and group"
if ! command -v systemd-sysusers >/dev/null 2>&1; then
    t_fail "systemd-sysusers is missing (package systemd)"
else
    mkdir -p "$ROOT/etc" "$ROOT/usr/lib/sysusers.d" "$ROOT/usr/lib/tmpfiles.d"
    cp "$PMX_ROOT/systemd/postmux.sysusers" "$ROOT/usr/lib/sysusers.d/postmux.conf"
    t_run systemd-sysusers --root="$ROOT"
    t_expect_rc 0
    t_expect_match "$(cat "$ROOT/etc/passwd" 2>/dev/null)" \
        '^postmux:x:[0-9]+:[0-9]+:postmux mail engine:/var/lib/postmux:/usr/sbin/nologin$' "passwd"
    t_expect_match "$(cat "$ROOT/etc/group" 2>/dev/null)" '^postmux:x:[0-9]+:' "group"
fi

t_case "tmpfiles creates /etc/postmux and /var/lib/postmux with the documented modes"
if ! command -v systemd-tmpfiles >/dev/null 2>&1; then
    t_fail "systemd-tmpfiles is missing (package systemd)"
else
    cp "$PMX_ROOT/systemd/postmux.tmpfiles" "$ROOT/usr/lib/tmpfiles.d/postmux.conf"
    mkdir -p "$ROOT/etc/postmux"
    : >"$ROOT/etc/postmux/master.key"
    chmod 0666 "$ROOT/etc/postmux/master.key"
    t_run systemd-tmpfiles --create --root="$ROOT"
    t_expect_rc 0
    uid=$(awk -F: '$1 == "postmux" { print $3 }' "$ROOT/etc/passwd" 2>/dev/null)
    gid=$(awk -F: '$1 == "postmux" { print $3 }' "$ROOT/etc/group" 2>/dev/null)
    t_expect_eq "$(stat -c '%a %u %g' "$ROOT/etc/postmux" 2>&1)" "750 0 $gid" "/etc/postmux"
    t_expect_eq "$(stat -c '%a %u %g' "$ROOT/var/lib/postmux" 2>&1)" "750 $uid $gid" "/var/lib/postmux"
    t_expect_eq "$(stat -c '%a %u %g' "$ROOT/etc/postmux/master.key" 2>&1)" "640 0 $gid" "master.key"
fi

t_done
