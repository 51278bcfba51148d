#!/usr/bin/env bash
# fed_agents.sh — the whole federated loop with real processes: updraft dataset partition,
# updraft init, the coordinator, and one updraft-agent daemon per device, on a small tabular
# dataset. Checks:
#   - a 3-round federation of 4 devices publishes 3 versions, each from all 4 devices, scored;
#   - agents killed with -9 at arbitrary moments (task fetched, downloading, updating,
#     uploading) and restarted on the same state directory still get every round counted,
#     once per device (the coordinator's counts and the agents' idempotency keys agree);
#   - a published version changes only the updatable parameters;
#   - an agent with a wrong token exits 2 saying so; one pointed at a dead coordinator keeps
#     retrying without crashing and stops on SIGTERM.
# (Each stage's recovery is checked deterministically against a stand-in server in
# agent_daemon.sh; here the point is that the pieces agree with the real coordinator.)
source "$(dirname "$0")/lib/common.bash"
source "$IT_LIB/coord.bash"

AGENT=$UD_BIN_DIR/updraft-agent
DIFF=$UD_BIN_DIR/../tests/udm_diff
K=4

fixture csv c.csv 800 3
printf 'input 2 1 1\ndense 256\nrelu\ndense 256\nrelu\ndense 3\nsoftmax\n' >tab.spec
it_run init "$UPDRAFT" init --arch tab.spec --data c.csv --seed 1 --out base.udm
it_expect_rc "updraft init makes the base model" 0
it_run part "$UPDRAFT" dataset partition --data c.csv --clients $K --scheme iid --seed 1 --out parts
it_expect_rc "the data is partitioned among $K devices" 0

coord_start "$PWD/state" || exit 1
it_run push "$UPDRAFT" model push base.udm --name tab
it_expect_rc "base model pushed" 0
it_run enrol "$UPDRAFT" devices add --count $K --name sim --out tokens
it_expect_rc "devices enrolled" 0
cat >spec.json <<EOF
{"model": "tab", "rounds": 3, "clients_per_round": $K, "min_clients": $K, "round_deadline": 120,
 "epochs": 400, "batch": 16, "lr": 0.01, "max_norm": 1000, "eval": "$PWD/c.csv"}
EOF
it_run start "$UPDRAFT" fed start spec.json
it_expect_rc "federation started" 0

declare -a PIDS TOKS
start_agent() # INDEX
{
    local i=$1
    "$AGENT" run --coordinator "$URL" --model-pubkey state/signing.pub --token "${TOKS[$i]}" --data "parts/client-00$i" \
        --state "agent-$i" --poll 0.2 --json >>"out/agent-$i.jsonl" 2>>"out/agent-$i.log" &
    PIDS[$i]=$!
}
i=0
while read -r _id tok; do
    TOKS[$i]=$tok
    start_agent $i
    i=$((i + 1))
done <tokens

# Chaos: while the federation runs, kill -9 a random agent every ~0.2 s and restart it (an
# update takes a few tenths of a second: 400 local epochs of a 2-256-256-3 net, so most kills land mid-update).
kills=0
for ((t = 0; t < 1200; t++)); do
    api GET /v1/federations/1
    [ "$(jq_ "$API_BODY" 'j["state"]')" = RUNNING ] || break
    if [ $kills -lt 20 ]; then
        v=$((RANDOM % K))
        kill -KILL "${PIDS[$v]}" 2>/dev/null || true
        wait "${PIDS[$v]}" 2>/dev/null || true
        kills=$((kills + 1))
        start_agent "$v"
    fi
    sleep 0.05
done
echo "     ($kills agents killed with -9 and restarted)"
api GET /v1/federations/1
cp "$API_BODY" fed.json
it_expect_eq "the federation SUCCEEDED with 3 versions published" "SUCCEEDED 4" \
    "$(jq_ fed.json 'j["state"] + " " + str(j["current_version"])')"
it_expect_eq "every round counted each of the 4 devices once" "[4, 4, 4]" \
    "$(jq_ fed.json '[r["accepted"] for r in j["rounds_detail"]]')"
it_expect_eq "... and refused none but duplicates" "[]" \
    "$(jq_ fed.json 'sorted(set(k for r in j["rounds_detail"] for k in r["rejected"]) - {"duplicate"})')"
it_expect_py "every version was scored" 'v[0] == "true"' \
    "$(jq_ fed.json 'all(r["eval_accuracy"] is not None for r in j["rounds_detail"])')"
api GET /v1/devices
it_expect_eq "each device contributed 3 updates" "[3, 3, 3, 3]" \
    "$(jq_ "$API_BODY" '[d["updates"] for d in j["devices"]]')"
curl -s "${READ_AUTH[@]}" -o v4.udm "$URL/v1/models/tab/versions/4/file"
"$DIFF" base.udm v4.udm >diff.json 2>&1 || true
it_expect_eq "version 4 differs from the base only in updatable parameters" true \
    "$(jq_ diff.json 'j["frozen_equal"]')"
it_expect_py "... and does differ" 'v[0] > 0' "$(jq_ diff.json 'max(abs(j["min"]), abs(j["max"]))')"
# The agents agree: each device recorded every round as contributed, whatever its restarts.
for ((i = 0; i < K; i++)); do kill -TERM "${PIDS[$i]}" 2>/dev/null || true; done
for ((i = 0; i < K; i++)); do wait "${PIDS[$i]}" 2>/dev/null || true; done
it_expect_eq "each agent's log shows 3 rounds contributed" "[3, 3, 3, 3]" "$(python3 - <<'PYEOF'
import json
out = []
for i in range(4):
    rounds = set()
    for line in open("out/agent-%d.jsonl" % i):
        try:
            j = json.loads(line)
        except ValueError:
            continue
        # round_done, or an accepted upload: a kill between the state's save and the
        # round_done line loses the line, not the contribution (the next start counts it)
        if j.get("event") == "round_done" and j.get("contributed"):
            rounds.add(j.get("round"))
        if j.get("event") == "upload" and j.get("result") in ("accepted", "duplicate"):
            rounds.add(j.get("round"))
    out.append(len(rounds))
print(out)
PYEOF
)"
echo "     (after restarts: $(cat out/agent-*.jsonl | grep -c '"event":"resend"' || true) uploads re-sent," \
    "$(cat out/agent-*.jsonl | grep -c '"resumed":1' || true) downloads resumed)"
cat out/agent-*.log >out/agents.log
it_expect_nogrep "no agent crashed" out/agents.log "Sanitizer"

# A device that cannot update (its data does not fit the model) reports it, and the round
# closes as soon as every sampled device has answered, not at its deadline.
mkdir -p broken
printf 'a,b,c,label\n1,2,3,x\n4,5,6,y\n' >broken/data.csv
cat >spec2.json <<EOF
{"model": "tab", "rounds": 1, "clients_per_round": $K, "min_clients": $K, "round_deadline": 300,
 "epochs": 1, "batch": 16, "lr": 0.01, "max_norm": 1000}
EOF
it_run start2 "$UPDRAFT" fed start spec2.json
it_expect_rc "a second federation started" 0
for ((i = 1; i < K; i++)); do start_agent $i; done
"$AGENT" run --coordinator "$URL" --model-pubkey state/signing.pub --token "${TOKS[0]}" --data broken --state agent-0 --poll 0.2 \
    --json >out/broken.jsonl 2>out/broken.log &
PIDS[0]=$!
t0=$SECONDS
for ((t = 0; t < 600; t++)); do
    api GET /v1/federations/2
    [ "$(jq_ "$API_BODY" 'j["state"]')" = RUNNING ] || break
    sleep 0.1
done
it_expect_eq "its round closes well before the 300 s deadline" yes \
    "$([ $((SECONDS - t0)) -lt 60 ] && echo yes || echo "no: $((SECONDS - t0)) s")"
it_expect_eq "... with 3 updates and device 1's failure report: FAILED (4 needed)" "FAILED 3 [1]" \
    "$(jq_ "$API_BODY" 'j["rounds_detail"][0]["state"] + " " + str(j["rounds_detail"][0]["accepted"]) + " " + str(j["rounds_detail"][0]["failed"])')"
it_expect_grep "... saying so" "$API_BODY" "3 updates and 1 failure report"
it_expect_grep "the agent reported the failure" out/broken.jsonl '"event":"failure_report"'
for ((i = 0; i < K; i++)); do kill -TERM "${PIDS[$i]}" 2>/dev/null || true; done
for ((i = 0; i < K; i++)); do wait "${PIDS[$i]}" 2>/dev/null || true; done

# A wrong token: exit 2 with the reason.
it_run badtoken "$AGENT" run --coordinator "$URL" --model-pubkey state/signing.pub --token "1.$(printf '%064d' 0)" \
    --data parts/client-000 --state agent-bad --poll 0.2
it_expect_rc "a refused token exits 2" 2
it_expect_grep "... saying the token was refused" "$ERR" "token refused"

# A dead coordinator: the agent retries quietly and stops cleanly on SIGTERM.
coord_stop
"$AGENT" run --coordinator "$URL" --model-pubkey state/signing.pub --token "${TOKS[0]}" --data parts/client-000 --state agent-0 \
    --poll 0.2 2>out/dead.log &
apid=$!
sleep 2
if kill -0 $apid 2>/dev/null; then it_pass "an agent with its coordinator down keeps running"; else
    it_fail "an agent with its coordinator down keeps running" "it exited: $(tail -2 out/dead.log)"; fi
kill -TERM $apid 2>/dev/null || true
wait $apid 2>/dev/null
RC=$?
it_expect_rc "... and SIGTERM stops it with 0" 0
it_finish
