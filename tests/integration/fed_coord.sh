#!/usr/bin/env bash
# fed_coord.sh — the coordinator's side of federated rounds, driven with crafted device
# updates (tests/tools/fed_upload.py) so that every answer can be checked exactly:
#   - an accepted update, a re-sent one (duplicate), another key from the same device
#     (conflict), a stale base version, NaN, a norm over the bound, a wrong shape, an
#     oversized body, garbage, a mismatched round, a bad token, a device not sampled, another
#     device's upload replayed under its own token, a round-1 upload replayed into round 2: each gets
#     its answer and its rejection count;
#   - kill -9 of the coordinator mid-round: the acknowledged update is still counted, once;
#   - the published version is exactly base + the sample-weighted mean of the accepted deltas
#     (nothing refused leaked into it), with its lineage;
#   - a round below min_clients at its deadline fails, and a late update is refused.
source "$(dirname "$0")/lib/common.bash"
source "$IT_LIB/coord.bash"

PY=/usr/bin/python3 # Debian's, with python3-msgpack (deploy/install-deps.sh)
UPLOAD=("$PY" "$UD_SOURCE_DIR/tests/tools/fed_upload.py")
DIFF=$UD_BIN_DIR/../tests/udm_diff

# A tiny tabular model: 2 -> 16 -> 3, 99 updatable floats.
fixture csv c.csv 300 1
printf 'input 2 1 1\ndense 16\nrelu\ndense 3\nsoftmax\n' >tab.spec
it_run mk_model "$WORKER" --data c.csv --arch tab.spec --epochs 1 --batch 16 --threads 1 --seed 1 \
    --out base.udm --quiet
it_expect_rc "base model trained" 0
N=99

coord_start "$PWD/state" --heartbeat-timeout 30 || exit 1
push()
{
    curl -s -o out/push.json -w '%{http_code}' -X POST -H "Authorization: Bearer $TOKEN" \
        --data-binary @"$1" "$URL/v1/models/$2/versions"
}
it_expect_eq "model pushed" 201 "$(push base.udm tab)"
it_expect_eq "pushed as version 1" 1 "$(jq_ out/push.json 'j["version"]')"
echo "not a model" >junk.udm
it_expect_eq "a non-.udm push is 422" 422 "$(push junk.udm tab)"

api POST /v1/devices '{"count": 4, "name": "sim"}'
it_expect_eq "4 devices enrolled" 201 "$API_STATUS"
cp "$API_BODY" devices.json
tok() { jq_ devices.json "j['devices'][$1]['token']"; }
T1=$(tok 0) T2=$(tok 1) T3=$(tok 2) T4=$(tok 3)
api GET /v1/devices
it_expect_py "tokens are not listed" '"token" not in v[0]' "$(cat "$API_BODY")"

api POST /v1/federations '{"model": "tab", "rounds": 1, "clients_per_round": 4, "min_clients": 2,
  "round_deadline": 120, "max_norm": 5, "batch": 8}'
it_expect_eq "federation created" 201 "$API_STATUS"
api POST /v1/federations '{"model": "tab", "lr": 7}'
it_expect_eq "lr outside the model's range is 422" 422 "$API_STATUS"
it_expect_grep "... and says which range" "$API_BODY" "learningRate"
api POST /v1/federations '{"model": "tab", "rounds": 2, "colour": "blue"}'
it_expect_eq "an unknown key is 400" 400 "$API_STATUS"
it_expect_grep "... naming it" "$API_BODY" "colour"
api POST /v1/federations '{"model": "tab", "rounds": 1, "eval": "/nonexistent/eval.csv"}'
it_expect_eq "an eval dataset the coordinator cannot read is 400" 400 "$API_STATUS"
it_expect_grep "... naming the key and the path" "$API_BODY" "'eval': /nonexistent/eval.csv cannot be read"
# A model whose update defaults say 20000 epochs (a .udm allows it, a federation spec does not):
# a spec leaving epochs to the model is refused, not stored unreadable (found by fuzz_rest_json).
"$PY" - base.udm e20k.udm <<'PYEOF'
import hashlib, msgpack, sys
magic, version, body, _ = msgpack.unpackb(open(sys.argv[1], "rb").read())
b = msgpack.unpackb(body)
b["update_defaults"]["epochs"]["value"] = 20000
head = b"\x94" + msgpack.packb(magic) + msgpack.packb(version) + msgpack.packb(msgpack.packb(b))
open(sys.argv[2], "wb").write(head + msgpack.packb(hashlib.sha256(head).digest()))
PYEOF
it_expect_eq "a model with 20000 default epochs is pushed" 201 "$(push e20k.udm e20k)"
api POST /v1/federations '{"model": "e20k", "rounds": 1}'
it_expect_eq "a federation that would take its 20000 epochs is 422" 422 "$API_STATUS"
it_expect_grep "... naming epochs" "$API_BODY" "epochs"

task() # TOKEN -> HTTP status of GET /v1/devices/{id}/task (body in out/task.json)
{
    curl -s -o out/task.json -w '%{http_code}' -H "Authorization: Bearer $1" \
        "$URL/v1/devices/${1%%.*}/task"
}
it_expect_eq "no round before devices are seen: 204" 204 "$(task "$T1")"
task "$T2" >/dev/null
task "$T3" >/dev/null
task "$T4" >/dev/null
for ((i = 0; i < 50; i++)); do
    [ "$(task "$T1")" = 200 ] && break
    sleep 0.2
done
it_expect_eq "device 1 gets the round-1 task" 200 "$(task "$T1")"
it_expect_eq "task names round 1 on version 1" "1 1" \
    "$(jq_ out/task.json 'str(j["round"]) + " " + str(j["model"]["version"])')"
it_expect_eq "a token of another device is 403" 403 \
    "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $T1" "$URL/v1/devices/2/task")"
it_expect_eq "a made-up token is 401" 401 \
    "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer 1.$(printf '%064d' 0)" \
        "$URL/v1/devices/1/task")"

up() # TOKEN ROUND ARGS... -> "STATUS BODY"
{
    local t=$1 r=$2
    shift 2
    "${UPLOAD[@]}" "$URL" "$t" "$r" --floats $N "$@" 2>&1
}
code() { echo "${1%% *}"; }
rf() { echo "$R" >out/r.txt && echo out/r.txt; }

R=$(up "$T1" 1 --base 1 --value 0.01 --samples 100 --save out/t1-r1.msgpack)
it_expect_eq "device 1's update accepted" 200 "$(code "$R")"
it_expect_grep "... as accepted" "$(rf)" '"status":"accepted"'

# Kill the coordinator with one update acknowledged; the round must go on with it.
coord_kill9
coord_start "$PWD/state" --heartbeat-timeout 30 || exit 1
api GET /v1/rounds/1
it_expect_eq "after kill -9: round 1 still OPEN with 1 update" "OPEN 1" \
    "$(jq_ "$API_BODY" 'j["state"] + " " + str(j["accepted"])')"

R=$(up "$T1" 1 --base 1 --value 0.01 --samples 100)
it_expect_eq "the same upload re-sent: 200" 200 "$(code "$R")"
it_expect_grep "... counted once (duplicate)" "$(rf)" '"status":"duplicate"'
R=$(up "$T2" 1 --base 1 --replay out/t1-r1.msgpack)
it_expect_eq "device 1's upload replayed byte for byte under device 2's token: 409" 409 "$(code "$R")"
it_expect_grep "... reason replayed" "$(rf)" '"reason":"replayed"'
R=$(up "$T1" 1 --base 1 --value 0.5 --samples 100 --key another)
it_expect_eq "another key from the same device: 409" 409 "$(code "$R")"
it_expect_grep "... reason conflict" "$(rf)" '"reason":"conflict"'
R=$(up "$T2" 1 --base 7 --value 0.5)
it_expect_eq "stale base version: 409" 409 "$(code "$R")"
it_expect_grep "... reason stale" "$(rf)" '"reason":"stale"'
R=$(up "$T2" 1 --base 1 --nan)
it_expect_eq "a NaN: 422" 422 "$(code "$R")"
it_expect_grep "... reason nonfinite" "$(rf)" '"reason":"nonfinite"'
R=$(up "$T2" 1 --base 1 --value 1.0)
it_expect_eq "norm 9.9 over the bound 5: 422" 422 "$(code "$R")"
it_expect_grep "... reason norm" "$(rf)" '"reason":"norm"'
R=$(up "$T2" 1 --base 1 --body-floats 98)
it_expect_eq "98 floats for a 99-float model: 422" 422 "$(code "$R")"
it_expect_grep "... reason shape" "$(rf)" '"reason":"shape"'
R=$(up "$T2" 1 --base 1 --body-floats 200000)
it_expect_eq "an oversized body: 413" 413 "$(code "$R")"
it_expect_grep "... reason too_large" "$(rf)" '"reason":"too_large"'
R=$(up "$T2" 1 --base 1 --garbage)
it_expect_eq "garbage: 422" 422 "$(code "$R")"
it_expect_grep "... reason malformed" "$(rf)" '"reason":"malformed"'
R=$(up "$T2" 1 --base 1 --round-in-body 9)
it_expect_eq "a message for another round: 422" 422 "$(code "$R")"
R=$(up "1.$(printf '%064d' 0)" 1 --base 1)
it_expect_eq "a bad token: 401" 401 "$(code "$R")"
api POST /v1/devices '{"name": "latecomer"}'
T5=$(jq_ "$API_BODY" 'j["token"]')
R=$(up "$T5" 1 --base 1)
it_expect_eq "a device not sampled: 409" 409 "$(code "$R")"
it_expect_grep "... reason not_selected" "$(rf)" '"reason":"not_selected"'
R=$(up "$T2" 99 --base 1)
it_expect_eq "an unknown round: 404" 404 "$(code "$R")"

api GET /v1/rounds/1
it_expect_eq "refusals left the round at 1 update" "OPEN 1 100" \
    "$(jq_ "$API_BODY" 'j["state"] + " " + str(j["accepted"]) + " " + str(j["samples"])')"
it_expect_eq "rejections counted by reason" \
    '{"conflict": 1, "duplicate": 1, "malformed": 2, "nonfinite": 1, "norm": 1, "not_selected": 1, "replayed": 1, "shape": 1, "stale": 1, "too_large": 1}' \
    "$(jq_ "$API_BODY" 'j["rejected"]')"

# The rest of the round: weights 300, 100, 500 -> mean (1 + 9 - 1 + 10) / 1000 = 0.019.
it_expect_eq "device 2 accepted" 200 "$(code "$(up "$T2" 1 --base 1 --value 0.03 --samples 300)")"
it_expect_eq "device 3 accepted" 200 "$(code "$(up "$T3" 1 --base 1 --value -0.01 --samples 100)")"
it_expect_eq "device 4 accepted" 200 "$(code "$(up "$T4" 1 --base 1 --value 0.02 --samples 500)")"
wait_state /v1/rounds/1 PUBLISHED 10 || true
it_expect_eq "round 1 published version 2 (all 4 reported)" "PUBLISHED 2 1000" \
    "$(jq_ "$API_BODY" 'j["state"] + " " + str(j["published_version"]) + " " + str(j["samples"])')"
curl -s "${READ_AUTH[@]}" -o v2.udm "$URL/v1/models/tab/versions/2/file"
"$DIFF" base.udm v2.udm >diff.json 2>&1 || true
it_expect_py "version 2 = base + 0.019 on every updatable float" \
    'abs(v[0]-0.019) < 1e-6 and abs(v[1]-0.019) < 1e-6' \
    "$(jq_ diff.json 'j["min"]')" "$(jq_ diff.json 'j["max"]')"
it_expect_eq "and nothing else changed" true "$(jq_ diff.json 'j["frozen_equal"]')"
api GET /v1/models/tab/versions/2
it_expect_eq "lineage: base 1, federation 1, round 1, participants 1-4" \
    "1 1 1 [1, 2, 3, 4]" \
    "$(jq_ "$API_BODY" '" ".join(str(x) for x in [j["lineage"]["base"]["version"], j["lineage"]["federation"], j["lineage"]["round"], j["lineage"]["participants"]])')"
R=$(up "$T4" 1 --base 1 --value 0.02 --samples 500)
it_expect_grep "device 4 re-sending after the close: still duplicate" "$(rf)" '"status":"duplicate"'

api GET /v1/federations/1
it_expect_eq "federation 1 SUCCEEDED at version 2" "SUCCEEDED 2" \
    "$(jq_ "$API_BODY" 'j["state"] + " " + str(j["current_version"])')"

# Federation 2 from version 2: one update, min_clients 2 -> its round fails at the deadline,
# and a late update is refused.
api POST /v1/federations '{"model": "tab", "rounds": 1, "clients_per_round": 4, "min_clients": 2,
  "round_deadline": 10, "max_norm": 5, "batch": 8}'
it_expect_eq "federation 2 created on version 2" "201 2" "$API_STATUS $(jq_ "$API_BODY" 'j["base_version"]')"
task "$T1" >/dev/null
task "$T2" >/dev/null
task "$T3" >/dev/null
task "$T4" >/dev/null
wait_state /v1/rounds/2 OPEN 10 || true
it_expect_eq "round 2 open on version 2" "OPEN 2" \
    "$(jq_ "$API_BODY" 'j["state"] + " " + str(j["base_version"])')"
TOKS=("" "$T1" "$T2" "$T3" "$T4" "$T5")
P1=${TOKS[$(jq_ "$API_BODY" 'j["participants"][0]')]}
P2=${TOKS[$(jq_ "$API_BODY" 'j["participants"][1]')]}
R=$(up "$P1" 2 --base 1 --value 0.01)
it_expect_eq "an update against version 1 in round 2: stale" 409 "$(code "$R")"
R=$(up "$P1" 2 --base 2 --replay out/t1-r1.msgpack)
it_expect_eq "device 1's round-1 upload replayed into round 2: 422" 422 "$(code "$R")"
it_expect_grep "... naming the round it was for" "$(rf)" "the message is for round 1, posted to round 2"
it_expect_eq "a sampled device accepted in round 2" 200 "$(code "$(up "$P1" 2 --base 2 --value 0.01)")"
for ((i = 0; i < 120; i++)); do
    api GET /v1/federations/2
    [ "$(jq_ "$API_BODY" 'j["state"]')" != RUNNING ] && break
    sleep 0.25
done
it_expect_eq "its round failed below min_clients" FAILED "$(jq_ "$API_BODY" 'j["rounds_detail"][0]["state"]')"
it_expect_grep "... saying why" "$API_BODY" "1 update by the deadline, 2 needed"
it_expect_eq "federation 2 ends FAILED, the model still at version 2" "FAILED 2" \
    "$(jq_ "$API_BODY" 'j["state"] + " " + str(j["current_version"])')"
R=$(up "$P2" 2 --base 2 --value 0.01)
it_expect_eq "a late update: 409" 409 "$(code "$R")"
it_expect_grep "... reason closed" "$(rf)" '"reason":"closed"'
api GET /v1/models/tab/versions
it_expect_eq "no version 3" 2 "$(jq_ "$API_BODY" 'len(j["versions"]) if isinstance(j, dict) else len(j)')"
api GET /v1/devices
it_expect_eq "updates per device: 4 in round 1, 1 in round 2" "5 [0, 1, 1, 1, 2]" \
    "$(jq_ "$API_BODY" 'str(sum(d["updates"] for d in j["devices"])) + " " + str(sorted(d["updates"] for d in j["devices"]))')"
# Revoking a device: its token stops working at once; what it sent stays counted.
api POST /v1/devices/4/revoke
it_expect_eq "revoke device 4: 200" 200 "$API_STATUS"
it_expect_eq "its token is refused from then on: 401" 401 "$(task "$T4")"
it_expect_eq "another device's token still works" 204 "$(task "$T3")"
api POST /v1/devices/99/revoke
it_expect_eq "revoking an unknown device: 404" 404 "$API_STATUS"
it_expect_eq "revoking without the admin token: 401" 401 \
    "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$URL/v1/devices/3/revoke")"
api GET /v1/devices
it_expect_eq "the list shows it revoked, its updates still counted" "True True" \
    "$(jq_ "$API_BODY" 'str(j["devices"][3]["revoked"]) + " " + str(j["devices"][3]["updates"] >= 1)')"
it_expect_nogrep "the coordinator log has no crash" "$COORD_LOG" "Sanitizer"
it_finish
