#!/usr/bin/env bash
# `postmux tester add|remove|list`: lowercased addresses, idempotent add,
# remove of a non-tester is an error, bad input writes nothing, workspaces
# do not see each other's testers, --json parses.
source "$(dirname "$0")/lib.sh"
t_setup

snapshot() { t_psql "select workspace_id || ' ' || address from workspace_testers order by 1"; }
json_ok() { printf '%s' "$1" | /usr/bin/python3 -m json.tool >/dev/null 2>&1 && echo yes || echo no; }
json_get() { printf '%s' "$1" | /usr/bin/python3 -c "import json,sys; j=json.load(sys.stdin); print($2)"; }

t_run $PMX workspace create Acme
ACME=$T_OUT
t_run $PMX workspace create Other
OTHER=$T_OUT

t_case "tester add stores the address lowercased"
t_run $PMX tester add Acme Bob@Example.COM
t_expect_rc 0
t_expect_eq "$T_OUT" "added tester bob@example.com to $ACME" "output"
t_expect_eq "$(snapshot)" "$ACME bob@example.com" "rows"

t_case "tester add of an existing tester is a no-op that says so (exit 0)"
t_run $PMX tester add "$ACME" BOB@example.com
t_expect_rc 0
t_expect_eq "$T_OUT" "bob@example.com is already a tester of $ACME" "output"
t_expect_eq "$(snapshot)" "$ACME bob@example.com" "rows"

t_case "tester add keeps only the address of 'Name <addr>'"
t_run $PMX tester add Acme 'Alice Smith <Alice@QA.example>'
t_expect_rc 0
t_expect_eq "$(t_psql "select count(*) from workspace_testers where address = 'alice@qa.example'")" 1 "row"

t_case "tester add: bad addresses and unknown workspaces are exit 1 and write nothing"
before=$(snapshot)
for bad in "not-an-address" "bob@" "@example.com" "a@b.example, c@d.example" $'bob@example.com\r\nRCPT TO:<x@y>' ""; do
    t_run $PMX tester add Acme "$bad"
    t_expect_rc 1
    t_expect_match "$T_ERR" '^postmux: bad tester address: ' "error for '$bad'"
done
t_run $PMX tester add Nope carol@example.com
t_expect_rc 1
t_expect_eq "$T_ERR" "postmux: unknown workspace: Nope" "unknown workspace"
t_expect_eq "$(snapshot)" "$before" "testers unchanged"

t_case "tester: usage errors exit 2"
t_run $PMX tester add Acme
t_expect_rc 2
t_run $PMX tester add Acme a@b.example c@d.example
t_expect_rc 2
t_run $PMX tester remove Acme
t_expect_rc 2
t_run $PMX tester list
t_expect_rc 2
t_run $PMX tester add Acme a@b.example --json
t_expect_rc 2
t_run $PMX tester
t_expect_rc 2
t_run $PMX tester purge Acme
t_expect_rc 2

t_case "tester list shows a workspace's testers only"
t_run $PMX tester add Other dave@other.example
t_run $PMX tester list Acme
t_expect_rc 0
t_expect_match "$(printf '%s\n' "$T_OUT" | head -n1)" '^ADDRESS +ADDED$' "header"
t_expect_eq "$(printf '%s\n' "$T_OUT" | tail -n +2 | awk '{print $1}' | paste -sd,)" \
    "alice@qa.example,bob@example.com" "addresses"

t_case "tester list --json parses"
t_run $PMX tester list "$ACME" --json
t_expect_rc 0
t_expect_eq "$(json_ok "$T_OUT")" yes "json.tool"
t_expect_eq "$(json_get "$T_OUT" "','.join(t['address'] for t in j)")" "alice@qa.example,bob@example.com" "addresses"
t_run $PMX tester list Other --json
t_expect_eq "$(json_get "$T_OUT" "[t['address'] for t in j]")" "['dave@other.example']" "Other's testers"

t_case "tester remove matches case-insensitively and deletes the row"
t_run $PMX tester remove Acme BOB@EXAMPLE.com
t_expect_rc 0
t_expect_eq "$T_OUT" "removed tester bob@example.com from $ACME" "output"
t_expect_eq "$(t_psql "select count(*) from workspace_testers where workspace_id = '$ACME'")" 1 "one left"

t_case "tester remove of a non-tester is exit 1 and writes nothing"
before=$(snapshot)
t_run $PMX tester remove Acme bob@example.com
t_expect_rc 1
t_expect_eq "$T_ERR" "postmux: not a tester of $ACME: bob@example.com" "error"
t_run $PMX tester remove Acme dave@other.example     # Other's tester, not Acme's
t_expect_rc 1
t_expect_eq "$(snapshot)" "$before" "testers unchanged"

t_case "workspace show counts the testers"
t_run $PMX workspace show Acme --json
t_expect_eq "$(json_get "$T_OUT" "j['tester_count']")" 1 "tester_count"

t_done
