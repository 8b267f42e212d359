#!/usr/bin/env bash
# `postmux workspace create|list|show|set`: ids, validation before any write,
# one all-or-nothing UPDATE per `set`, exact numeric rates, exit codes 0/1/2,
# and --json that parses.
source "$(dirname "$0")/lib.sh"
t_setup

# Every column of every workspace, to prove a refused command wrote nothing.
snapshot() { t_psql "select w::text from workspaces w order by id"; }
json_ok() { printf '%s' "$1" | /usr/bin/python3 -m json.tool >/dev/null 2>&1 && echo yes || echo no; }
# json_get JSON PYTHON-EXPR: evaluates EXPR with the parsed document as j.
json_get() { printf '%s' "$1" | /usr/bin/python3 -c "import json,sys; j=json.load(sys.stdin); print($2)"; }
# The value of "key:" in `workspace show` output.
show_field() { printf '%s\n' "$1" | sed -n "s/^$2: *//p"; }

t_case "workspace create prints a new id"
t_run $PMX workspace create Acme --industry Retail --website https://acme.example/shop
t_expect_rc 0
t_expect_match "$T_OUT" '^ws_[a-z2-7]{16}$' "id"
ACME=$T_OUT
t_expect_eq "$(t_psql "select name || '|' || industry || '|' || website || '|' || test_mode || '|' || suspended || '|' || (rate_per_second is null) from workspaces where id = '$ACME'")" \
    "Acme|Retail|https://acme.example/shop|false|false|true" "stored row"

t_case "workspace create: a duplicate name is refused and nothing is written"
before=$(snapshot)
t_run $PMX workspace create Acme --website http://other.example
t_expect_rc 1
t_expect_eq "$T_ERR" "postmux: workspace name already exists: Acme" "error"
t_expect_eq "$T_OUT" "" "stdout"
t_expect_eq "$(snapshot)" "$before" "workspaces unchanged"

t_case "workspace create: bad names and websites are refused with nothing written"
before=$(snapshot)
long201=$(printf 'x%.0s' $(seq 201))
for args in "''" "'$long201'" "\$'tab\\there'" "\$'new\\nline'" "\$'del\\x7f'" "' Acme2'" \
            "ws_abcdefghijklmnop" "\$'bad\\xff-utf8'" \
            "Good --website ftp://x.example" "Good --website https://" \
            "Good --website 'https://a b.example'" "Good --website acme.example" \
            "Good --industry ''" "Good --industry \$'a\\rb'"; do
    eval "t_run \$PMX workspace create $args"
    t_expect_rc 1
    t_expect_match "$T_ERR" '^postmux: ' "error for $args"
done
t_expect_eq "$(snapshot)" "$before" "workspaces unchanged"

t_case "workspace create: 200 characters (UTF-8) is the longest name"
name200=$(printf 'é%.0s' $(seq 200))
t_run $PMX workspace create "$name200"
t_expect_rc 0
t_expect_eq "$(t_psql "select length(name) from workspaces where id = '$T_OUT'")" 200 "length"

t_case "workspace create: usage errors exit 2"
t_run $PMX workspace create
t_expect_rc 2
t_run $PMX workspace create A B
t_expect_rc 2
t_run $PMX workspace create A --colour blue
t_expect_rc 2
t_run $PMX workspace
t_expect_rc 2
t_run $PMX workspace frobnicate
t_expect_rc 2

t_run $PMX workspace create "Beta Co"
BETA=$T_OUT

t_case "workspace list shows a table of every workspace"
t_run $PMX workspace list
t_expect_rc 0
t_expect_match "$(printf '%s\n' "$T_OUT" | head -n1)" '^ID +NAME +TEST_MODE +RATE +BURST +DAILY_QUOTA +SUSPENDED$' "header"
t_expect_eq "$(printf '%s\n' "$T_OUT" | grep -c '^ws_' || true)" 3 "rows"
t_expect_match "$(printf '%s\n' "$T_OUT" | grep "^$ACME" || true)" "^$ACME +Acme +off +unlimited +10 +none +no$" "Acme row"

t_case "workspace list --json is an array that parses"
t_run $PMX workspace list --json
t_expect_rc 0
t_expect_eq "$(json_ok "$T_OUT")" yes "json.tool"
t_expect_eq "$(json_get "$T_OUT" "len(j)")" 3 "length"
t_expect_eq "$(json_get "$T_OUT" "[w for w in j if w['name']=='Acme'][0]['id']")" "$ACME" "Acme id"
t_expect_eq "$(json_get "$T_OUT" "[w for w in j if w['name']=='Acme'][0]['rate_per_second']")" None "unlimited is null"

t_case "workspace show by name and by id, with tester and domain counts"
t_psql "insert into workspace_testers (workspace_id, address) values ('$ACME', 'qa@acme.example')" >/dev/null
t_psql "insert into domains (workspace_id, domain, verify_token) values ('$ACME', 'acme.example', 't1'), ('$ACME', 'mail.acme.example', 't2')" >/dev/null
t_psql "update domains set verified_at = now() where domain = 'acme.example'" >/dev/null
t_run $PMX workspace show Acme
t_expect_rc 0
t_expect_eq "$(show_field "$T_OUT" id)" "$ACME" "id"
t_expect_eq "$(show_field "$T_OUT" website)" "https://acme.example/shop" "website"
t_expect_eq "$(show_field "$T_OUT" testers)" 1 "testers"
t_expect_eq "$(show_field "$T_OUT" domains)" "2 (1 verified)" "domains"
by_name=$T_OUT
t_run $PMX workspace show "$ACME"
t_expect_rc 0
t_expect_eq "$T_OUT" "$by_name" "same by id"

t_case "workspace show --json parses and has the counts"
t_run $PMX workspace show "$ACME" --json
t_expect_rc 0
t_expect_eq "$(json_ok "$T_OUT")" yes "json.tool"
t_expect_eq "$(json_get "$T_OUT" "(j['id'], j['tester_count'], j['domain_count'], j['verified_domain_count'], j['test_mode'], j['daily_quota'])")" \
    "('$ACME', 1, 2, 1, False, None)" "fields"

t_case "workspace show: unknown workspace is exit 1, missing WS is exit 2"
t_run $PMX workspace show Nope
t_expect_rc 1
t_expect_eq "$T_ERR" "postmux: unknown workspace: Nope" "error"
t_run $PMX workspace show
t_expect_rc 2

t_case "workspace set changes everything at once and prints the result"
t_run $PMX workspace set Acme --rate 100000/h --burst 500 --daily-quota 20000 --test-mode on \
    --catch-all 'QA Team <QA@Acme.EXAMPLE>' --suspend
t_expect_rc 0
t_expect_eq "$(t_psql "select rate_per_second || '|' || burst || '|' || daily_quota || '|' || test_mode || '|' || catch_all || '|' || suspended from workspaces where id = '$ACME'")" \
    "27.7777777777777778|500|20000|true|QA@acme.example|true" "stored"
t_expect_eq "$(show_field "$T_OUT" rate)" "100000/h" "printed rate"
t_expect_eq "$(show_field "$T_OUT" burst)" 500 "printed burst"
t_expect_eq "$(show_field "$T_OUT" test_mode)" on "printed test_mode"
t_expect_eq "$(show_field "$T_OUT" catch_all)" "QA@acme.example" "printed catch_all"
t_expect_eq "$(show_field "$T_OUT" suspended)" yes "printed suspended"
SUSP_AT=$(show_field "$T_OUT" suspended_at)
t_expect_match "$SUSP_AT" '^20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z$' "printed suspended_at"

t_case "suspended_at is kept while the workspace stays suspended, also by a plain UPDATE"
sleep 1.1   # suspended_at has one-second resolution: a new one would now differ
t_run $PMX workspace set Acme --suspend --burst 499
t_expect_rc 0
t_expect_eq "$(show_field "$T_OUT" suspended_at)" "$SUSP_AT" "a second --suspend keeps it"
t_psql "update workspaces set suspended = true, suspended_at = null where id = '$ACME'" >/dev/null
t_expect_eq "$(t_psql "select suspended_at is not null from workspaces where id = '$ACME'")" t "never null while suspended"
t_psql "update workspaces set suspended = true where id = '$BETA'" >/dev/null
t_expect_eq "$(t_psql "select suspended_at is not null from workspaces where id = '$BETA'")" t "set by a plain UPDATE"
t_psql "update workspaces set suspended = false where id = '$BETA'" >/dev/null
t_expect_eq "$(t_psql "select suspended_at is null from workspaces where id = '$BETA'")" t "cleared on resume"
t_run $PMX workspace show Acme --json
t_expect_match "$(json_get "$T_OUT" "j['suspended_at']")" '^20[0-9]{2}-' "--json suspended_at"

t_case "workspace set: rates are stored exactly per second"
for pair in "3000/m:50" "50/s:50" "0.5/s:0.5" "1/h:0.00027777777777777778" "7.5/m:0.125"; do
    t_run $PMX workspace set "$ACME" --rate "${pair%%:*}"
    t_expect_rc 0
    t_expect_eq "$(t_psql "select rate_per_second from workspaces where id = '$ACME'")" "${pair#*:}" "${pair%%:*}"
done
t_run $PMX workspace set "$ACME" --rate unlimited
t_expect_rc 0
t_expect_eq "$(t_psql "select rate_per_second is null from workspaces where id = '$ACME'")" t "unlimited is null"
t_expect_eq "$(show_field "$T_OUT" rate)" unlimited "printed"

t_case "workspace set: every bad value is exit 1 and writes nothing"
t_run $PMX workspace set Acme --rate 3000/m
before=$(snapshot)
for bad in "--rate 5/fortnight" "--rate 0/s" "--rate -1/s" "--rate 1e3/s" "--burst 0" "--burst 1000001" \
           "--burst ten" "--daily-quota 0" "--daily-quota -5" "--daily-quota 1.5" "--test-mode maybe" \
           "--catch-all not-an-address" "--catch-all 'a@b.example, c@d.example'" "--name ''" \
           "--name ws_abcdefghijklmnop" "--name 'Beta Co'"; do
    eval "t_run \$PMX workspace set Acme --burst 7 --test-mode off $bad"
    t_expect_rc 1
    t_expect_match "$T_ERR" '^postmux: ' "error for $bad"
done
t_expect_eq "$(snapshot)" "$before" "workspaces unchanged"

t_case "workspace set: the rate error says what is expected"
t_run $PMX workspace set Acme --rate 5/fortnight
t_expect_rc 1
t_expect_match "$T_ERR" "^postmux: bad --rate '5/fortnight': expected N/s, N/m, N/h" "error"

t_case "workspace set: usage errors exit 2 and write nothing"
before=$(snapshot)
t_run $PMX workspace set
t_expect_rc 2
t_run $PMX workspace set --burst 5
t_expect_rc 2
t_run $PMX workspace set Acme
t_expect_rc 2
t_run $PMX workspace set Acme --suspend --resume
t_expect_rc 2
t_run $PMX workspace set Acme --burst 5 --colour blue
t_expect_rc 2
t_run $PMX workspace set Acme --burst
t_expect_rc 2
t_run $PMX workspace set Acme Beta --burst 5
t_expect_rc 2
t_expect_eq "$(snapshot)" "$before" "workspaces unchanged"

t_case "workspace set: unknown workspace is exit 1"
t_run $PMX workspace set Nope --burst 5
t_expect_rc 1
t_expect_eq "$T_ERR" "postmux: unknown workspace: Nope" "error"

t_case "workspace set: none clears quota and catch-all; --resume and rename"
t_run $PMX workspace set "$ACME" --daily-quota none --catch-all none --resume --name "Acme Corp"
t_expect_rc 0
t_expect_eq "$(t_psql "select name || '|' || coalesce(daily_quota::text, 'null') || '|' || coalesce(catch_all, 'null') || '|' || suspended from workspaces where id = '$ACME'")" \
    "Acme Corp|null|null|false" "stored"
t_expect_eq "$(show_field "$T_OUT" daily_quota)" none "printed quota"
t_expect_eq "$(show_field "$T_OUT" suspended_at)" - "suspended_at cleared by --resume"
t_run $PMX workspace show Acme
t_expect_rc 1

t_case "workspace set on one workspace leaves the others alone"
t_expect_eq "$(t_psql "select burst || '|' || test_mode || '|' || suspended || '|' || (rate_per_second is null) from workspaces where id = '$BETA'")" \
    "10|false|false|true" "Beta untouched"

t_done
