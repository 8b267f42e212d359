#!/usr/bin/env bash
# Many rate-limited workspaces at once (issue 5; `make bench`'s "limits" scenario at
# test size): each one gets its own rate. With 20 workspaces and a worker capacity of
# 8 jobs (connections_per_worker = 2), a read takes one job per stream. A workspace
# whose gate empties must be read again at once: a read that blocks on the other
# streams (the idle workspaces', every limited one being paused) is ended early
# (CLIENT UNBLOCK). Without that, each workspace got one job per worker per read
# block (1 s), about 2/s whatever its limit.
source "$(dirname "$0")/lib.sh"
t_setup

t_conf_set daemon workers 2
t_conf_set relay connections_per_worker 2
NWS=20
RATE=5
SECS=10
WSS=()
for ((i = 0; i < NWS; i++)); do
    ws=$($PMX workspace create "Many $i")
    $PMX domain add "$ws" "m$i.test" --algorithm ed25519 >/dev/null
    $PMX domain verify "m$i.test" --skip-dns >/dev/null
    $PMX workspace set "$ws" --rate "$RATE/s" --burst 1 >/dev/null
    WSS+=("$ws")
done

# Idle workspaces, as every installation has: their empty streams are what a read
# blocks on while the limited ones are paused at their gates.
for ((i = 0; i < 3; i++)); do WSS+=("$($PMX workspace create "Idle $i")"); done

"$PMXD" -c "$T_CONF" >>"$T_DIR/postmuxd.log" 2>&1 &
D=$!
groups_ready() {
    local ws
    for ws in "${WSS[@]}"; do
        t_redis XINFO GROUPS "pmx:{$ws}:jobs" 2>/dev/null | grep -qx postmux || return 1
    done
}
t_wait_for 30 groups_ready

t_case "$NWS workspaces at $RATE/s each, with backlogs: every one gets its rate"
# 80 jobs each (16 s at the limit), interleaved so every backlog is there from the start.
for ((k = 0; k < 80; k++)); do
    for ((i = 0; i < NWS; i++)); do
        printf 'XADD pmx:{%s}:jobs * from news@m%d.test to u%d@example.net subject s text t\n' \
            "${WSS[i]}" "$i" "$k"
    done
done | t_redis >/dev/null
sleep "$SECS"
# Per workspace: (sent - burst) / (last outcome - first outcome), on Postgres's clock.
RATES=$(t_psql "select m.workspace_id, count(*),
                       round(((count(*) - 1) / nullif(extract(epoch from max(r.updated_at) - min(r.updated_at)), 0))::numeric, 2)
                  from recipients r join messages m on m.id = r.message_id
                 where r.status = 'sent' group by 1 order by 3")
echo "$RATES" | awk -F'|' '{ printf "# %s: %s sent, %s/s\n", $1, $2, $3 }' >&2
t_expect_eq "$(wc -l <<<"$RATES")" "$NWS" "workspaces that sent"
slow=$(awk -F'|' -v r="$RATE" '$3 < 0.9 * r' <<<"$RATES" | wc -l)
fast=$(awk -F'|' -v r="$RATE" '$3 > 1.1 * r' <<<"$RATES" | wc -l)
t_expect_eq "$slow" 0 "workspaces below 90 % of $RATE/s"
t_expect_eq "$fast" 0 "workspaces above 110 % of $RATE/s"

t_stop_postmuxd "$D"
t_done
