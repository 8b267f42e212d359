#!/usr/bin/env bash
# `postmux apikey create|list|revoke`: the key is printed once and only its
# SHA-256 is stored (a pg_dump of the whole database never contains it);
# scopes are checked; listings never show the secret or the hash; revoke
# refuses unknown and already revoked keys.
source "$(dirname "$0")/lib.sh"
t_setup

t_run $PMX workspace create Acme
ACME=$T_OUT
t_run $PMX workspace create Globex
GLOBEX=$T_OUT
nkeys() { t_psql "select count(*) from api_keys"; }
sha256() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
json_get() { printf '%s' "$1" | /usr/bin/python3 -c "import json,sys; j=json.load(sys.stdin); print($2)"; }

t_case "apikey create: the key alone on stdout, its id on stderr"
t_run $PMX apikey create --workspace Acme --name 'Main app'
t_expect_rc 0
t_expect_match "$T_OUT" '^pmx_[A-Za-z0-9_-]{43}$' "key"
t_expect_eq "$(printf '%s\n' "$T_OUT" | wc -l)" 1 "stdout lines"
K1=$T_OUT
t_expect_match "$T_ERR" '^key_[a-z2-7]{16}: ' "id on stderr"
ID1=$(grep -oE 'key_[a-z2-7]{16}' <<<"$T_ERR" | head -n1)
t_expect_eq "$(t_psql "select workspace_id || '|' || name || '|' || prefix || '|' || array_to_string(scopes, ',') || '|' || (revoked_at is null) from api_keys where id = '$ID1'")" \
    "$ACME|Main app|${K1:4:8}|send|true" "stored row"
t_expect_eq "$(t_psql "select encode(hash, 'hex') from api_keys where id = '$ID1'")" "$(sha256 "$K1")" \
    "hash = SHA-256 of the key"

t_case "apikey create: --org and --scopes"
t_run $PMX apikey create --org --name Ops --scopes read,send
t_expect_rc 0
K2=$T_OUT
ID2=$(grep -oE 'key_[a-z2-7]{16}' <<<"$T_ERR" | head -n1)
t_expect_eq "$(t_psql "select coalesce(workspace_id, 'NULL') || '|' || array_to_string(scopes, ',') from api_keys where id = '$ID2'")" \
    "NULL|read,send" "org key row"
[[ $K1 != "$K2" ]] || t_fail "two keys are equal"
t_run $PMX apikey create --workspace "$GLOBEX" --name 'Globex key' --scopes send
t_expect_rc 0
K3=$T_OUT
ID3=$(grep -oE 'key_[a-z2-7]{16}' <<<"$T_ERR" | head -n1)

t_case "apikey: the database never holds a key (pg_dump)"
"$PMX_PG_BIN/pg_dump" -h "$PMX_PG_HOST" -p "$PMX_PG_PORT" -U "$PMX_PG_USER" "$T_DB" >"$T_DIR/dump.sql" ||
    t_fail "pg_dump failed"
grep -q "$ID1" "$T_DIR/dump.sql" || t_fail "the dump does not even hold the key ids"
for k in "$K1" "$K2" "$K3" "${K1#pmx_}" "${K1:0:30}"; do
    grep -qF -- "$k" "$T_DIR/dump.sql" && t_fail "the dump contains key text '${k:0:12}...'"
done
t_expect_eq "$(t_psql "select count(*) from api_keys where name like '%pmx_%' or prefix like 'pmx_%'")" 0 "no key text in columns"

t_case "apikey create: bad input is refused and nothing is written"
before=$(nkeys)
for args in "--workspace Acme --name x --scopes send,admin" "--workspace Acme --name x --scopes send,send" \
            "--workspace Acme --name x --scopes ''" "--workspace Acme --name x --scopes send," \
            "--workspace Nope --name x" "--workspace Acme --name ''" \
            "--workspace Acme --name \$'a\\nb'" "--workspace Acme --name \"\$(printf 'n%.0s' \$(seq 201))\""; do
    eval "t_run \$PMX apikey create $args"
    t_expect_rc 1
    t_expect_eq "$T_OUT" "" "stdout of $args"
done
t_run $PMX apikey create --workspace Acme --name x --scopes admin
t_expect_eq "$T_ERR" "postmux: unknown scope 'admin' (known: send, read, manage)" "scope error"
t_expect_eq "$(nkeys)" "$before" "api_keys unchanged"

t_case "apikey create: usage errors exit 2"
before=$(nkeys)
for args in "--name x" "--workspace Acme --org --name x" "--workspace Acme" "--org --name x extra" \
            "--org --name x --bogus"; do
    # shellcheck disable=SC2086
    t_run $PMX apikey create $args
    t_expect_rc 2
done
t_run $PMX apikey frobnicate
t_expect_rc 2
t_expect_eq "$(nkeys)" "$before" "api_keys unchanged"

t_case "apikey list: every key, never the secret or hash"
t_run $PMX apikey list
t_expect_rc 0
t_expect_match "$T_OUT" '^ID +WORKSPACE +NAME +PREFIX +SCOPES +CREATED +REVOKED +LAST_USED$' "header"
t_expect_match "$T_OUT" "^$ID1 +$ACME +Main app +pmx_${K1:4:8}\\.\\.\\. +send +[0-9T:Z-]+ +- +-\$" "workspace key row"
t_expect_match "$T_OUT" "^$ID2 +\\(org\\) +Ops +" "org key row"
t_expect_eq "$(printf '%s\n' "$T_OUT" | wc -l)" 4 "lines"
hash1=$(sha256 "$K1")
for k in "$K1" "$K2" "$K3" "$hash1"; do
    [[ $T_OUT == *"$k"* ]] && t_fail "list shows a secret or hash"
done

t_case "apikey list WS: only that workspace's keys"
t_run $PMX apikey list Globex
t_expect_rc 0
t_expect_match "$T_OUT" "^$ID3 " "Globex key"
t_expect_nomatch "$T_OUT" "$ID1|$ID2" "other keys"
t_run $PMX apikey list Nope
t_expect_rc 1
t_expect_eq "$T_ERR" "postmux: unknown workspace: Nope" "error"

t_case "apikey list --json"
t_run $PMX apikey list --json
t_expect_rc 0
t_expect_eq "$(json_get "$T_OUT" "len(j)")" 3 "count"
t_expect_eq "$(json_get "$T_OUT" "sorted(j[0].keys())")" \
    "['created_at', 'id', 'last_used_at', 'name', 'prefix', 'revoked_at', 'scopes', 'workspace_id']" "keys"
t_expect_eq "$(json_get "$T_OUT" "[(k['id'], k['workspace_id'], k['scopes'], k['prefix']) for k in j if k['id'] == '$ID2'][0]")" \
    "('$ID2', None, ['read', 'send'], '${K2:4:8}')" "org key"
for k in "$K1" "$K2" "$K3" "$hash1"; do
    [[ $T_OUT == *"$k"* ]] && t_fail "JSON shows a secret or hash"
done
t_run $PMX apikey list Acme --json
t_expect_eq "$(json_get "$T_OUT" "[k['id'] for k in j]")" "['$ID1']" "Acme only"

t_case "apikey revoke: sets revoked_at once"
t_run $PMX apikey revoke "$ID1"
t_expect_rc 0
t_expect_eq "$(t_psql "select revoked_at is not null from api_keys where id = '$ID1'")" t "revoked"
at=$(t_psql "select revoked_at from api_keys where id = '$ID1'")
t_run $PMX apikey revoke "$ID1"
t_expect_rc 1
t_expect_eq "$T_ERR" "postmux: API key $ID1 is already revoked" "error"
t_expect_eq "$(t_psql "select revoked_at from api_keys where id = '$ID1'")" "$at" "revoked_at unchanged"
t_run $PMX apikey list --json
t_expect_eq "$(json_get "$T_OUT" "[k['revoked_at'] is not None for k in j]")" "[True, False, False]" "revoked_at in list"

t_case "apikey revoke: unknown id, usage"
t_run $PMX apikey revoke key_aaaaaaaaaaaaaaaa
t_expect_rc 1
t_expect_eq "$T_ERR" "postmux: unknown API key: key_aaaaaaaaaaaaaaaa" "error"
t_run $PMX apikey revoke
t_expect_rc 2
t_run $PMX apikey revoke a b
t_expect_rc 2
t_expect_eq "$(t_psql "select count(*) from api_keys where revoked_at is not null")" 1 "only one revoked"

t_done
