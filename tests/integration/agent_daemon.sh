#!/usr/bin/env bash
# agent_daemon.sh — `updraft-agent run` against tests/tools/fake_coordinator.py (a stand-in for
# the coordinator's device endpoints; the real coordinator's end-to-end test is the lead's):
# one round from task to accepted update, a round already done not redone, a refused token,
# retries after 503 with the same Idempotency-Key and body, a checksum mismatch refused and the
# model fetched again, a download cut short and resumed with Range/If-Range, kill -9 in the middle
# of a download (resumed on restart) and in the middle of an upload (re-sent on restart with the
# same key), 409 and 422 given up and recorded, a corrupt state.json survived.
# shellcheck source=SCRIPTDIR/lib/common.bash
source "$(dirname "$0")/lib/common.bash"
AGENT=$UD_BIN_DIR/updraft-agent
FAKE=$UD_SOURCE_DIR/tests/tools/fake_coordinator.py
it_require_bins "$WORKER" "$AGENT"

fixture imgset imgs 40
it_run base "$WORKER" --data imgs --arch mlp --input 1,28,28 --epochs 1 --threads 1 --quiet --out m.udm
it_expect_rc "worker makes the round's model (reference mlp, 2 MB)" 0
SHA=$(sha256sum m.udm | cut -d' ' -f1)
SIZE=$(stat -c %s m.udm)
TOKEN=dev7.00ff12ab
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# config DIR [JSON-OVERRIDES]: the fake coordinator's config, a task for round 42 by default.
config()
{
    python3 - "$1" "${2:-{\}}" "$SHA" "$SIZE" "$UD_TEST_SCRATCH/m.udm" "$TOKEN" <<'PY'
import json, sys, time
d, over, sha, size, model, token = sys.argv[1:7]
cfg = {"token": token, "model_file": model,
       "task": {"federation": 1, "round": 42, "number": 3,
                "model": {"name": "fmnist", "version": 4, "sha256": sha, "size": int(size),
                          "url": "/v1/models/fmnist/versions/4/file"},
                "epochs": 1, "batch": 32, "lr": 0.05, "max_norm": 50.0,
                "deadline": time.time() + 600, "upload": "/v1/rounds/42/updates"}}
over = json.loads(over)
for k, v in over.pop("task_over", {}).items():  # fields of the task to change
    cfg["task"][k] = v if k != "deadline" else time.time() + v
cfg.update(over)
with open(d + "/config.json.tmp", "w") as f:
    json.dump(cfg, f)
import os
os.rename(d + "/config.json.tmp", d + "/config.json")
PY
}

# server DIR [JSON]: starts a fake coordinator on DIR; URL in $URL.
server()
{
    mkdir -p "$1"
    config "$1" "${2:-{\}}"
    python3 "$FAKE" "$1" >"$1/server.log" 2>&1 &
    PIDS+=($!)
    local i
    for i in $(seq 100); do [ -s "$1/port" ] && break; sleep 0.1; done
    URL=http://127.0.0.1:$(cat "$1/port")
}

# wait_for SECONDS CMD...: until CMD succeeds; returns 1 on timeout.
wait_for()
{
    local t=$1 i
    shift
    for i in $(seq $((t * 10))); do "$@" && return 0; sleep 0.1; done
    return 1
}

# reqs DIR EXPR: EXPR over `r`, the server's request log (list of dicts), printed as JSON.
reqs()
{
    python3 - "$1/requests.jsonl" "$2" <<'PY'
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])] if __import__("os").path.exists(sys.argv[1]) else []
print(json.dumps(eval(sys.argv[2])))
PY
}

run_agent() # LABEL STATE [ARGS...]
{
    local label=$1 state=$2
    shift 2
    it_run "$label" "$AGENT" run --coordinator "$URL" --allow-unsigned --token "$TOKEN" --data imgs --state "$state" \
        --poll 0.2 "$@"
}

# ---- one round ------------------------------------------------------------------------------
server s1
run_agent round1 st1 --max-rounds 1 --json
it_expect_rc "one round: exit 0 after --max-rounds 1" 0
it_expect_rc "every stdout line is JSON" "$(fixture jsonlines "$OUT" >/dev/null 2>&1; echo $?)"
it_expect_eq "events in order" \
    '["warning", "started", "task", "download", "model_ready", "training_begin", "epoch_end", "delta", "upload", "round_done"]' \
    "$(it_json "$OUT" '[l["event"] for l in lines]')"
it_expect_eq "the task's epochs, batch and lr drive the update" '[1, 32, 0.05, 126]' \
    "$(it_json "$OUT" '[[l["epochs"], l["batch"], l["lr"], l["samples"]] for l in lines if l["event"] == "training_begin"][0]')"
it_expect_eq "round_done: accepted" '[42, "accepted", 1]' \
    "$(it_json "$OUT" '[last["round"], last["result"], last["contributed"]]')"
it_expect_eq "every request carries the bearer token" true "$(reqs s1 'all(x["auth"] == "Bearer '$TOKEN'" for x in r)')"
it_expect_eq "requests: task, model, upload" '[["GET", "/v1/devices/dev7/task"], ["GET", "/v1/models/fmnist/versions/4/file"], ["POST", "/v1/rounds/42/updates"]]' \
    "$(reqs s1 '[[x["method"], x["path"]] for x in r]')"
it_expect_eq "upload: application/msgpack with a key <device>-<round>-<16 hex>" true \
    "$(reqs s1 '__import__("re").fullmatch(r"dev7-42-[0-9a-f]{16}", r[2]["idempotency_key"]) is not None and r[2]["content_type"] == "application/msgpack"')"
it_expect_eq "the body is the update message: a map of 8 with the delta (534019 floats)" true \
    "$(python3 -c 'import sys; b = open("s1/uploads/1.bin", "rb").read(); print(str(b[0] == 0x88 and b"delta" in b and len(b) > 534019 * 4).lower())')"
it_expect_eq "state.json: round 42 done, accepted, nothing in progress" '[42, "accepted", null]' \
    "$(python3 -c 'import json; s = json.load(open("st1/state.json")); print(json.dumps([s["last_round"], s["last_result"], s["current"]]))')"
it_expect_eq "state dir: the verified model only (no part, no download.json, no upload file)" \
    "model-$SHA.udm state.json" "$(ls st1 | tr '\n' ' ' | sed 's/ $//')"

# The same task again: the round is done, nothing is sent.
IT_TIMEOUT=3 run_agent again st1
it_expect_grep "a done round is not redone" "$ERR" "round 42 is already done"
it_expect_eq "no second upload" 1 "$(reqs s1 'len([x for x in r if x["method"] == "POST"])')"
IT_TIMEOUT=60

# ---- refused token --------------------------------------------------------------------------
it_run badtoken "$AGENT" run --coordinator "$URL" --allow-unsigned --token dev7.0bad --data imgs --state st_bad --poll 0.2
it_expect_rc "a refused token exits 2" 2
it_expect_grep "it says so" "$ERR" "token refused"
it_run malformed "$AGENT" run --coordinator "$URL" --allow-unsigned --token nodot --data imgs --state st_bad
it_expect_rc "a token without a device id exits 2" 2

# ---- 503, 503, then 200: retried with backoff, same key, same body --------------------------
server s2 '{"upload_script": [503, 503]}'
run_agent retry st2 --max-rounds 1 --json
it_expect_rc "after two 503s the update is accepted: exit 0" 0
it_expect_eq "three POSTs with one key and identical bodies" '[3, 1, true]' \
    "$(reqs s2 '[len([x for x in r if x["method"] == "POST"]), len({x["idempotency_key"] for x in r if x["method"] == "POST"}), open("s2/uploads/1.bin","rb").read() == open("s2/uploads/3.bin","rb").read()]')"
it_expect_eq "two retry events with waits within the backoff caps (0.5 s, 1 s)" true \
    "$(it_json "$OUT" '[l["wait"] for l in lines if l["event"] == "retry"] and all(0 <= w <= c for w, c in zip([l["wait"] for l in lines if l["event"] == "retry"], [0.5, 1.0])) and len([l for l in lines if l["event"] == "retry"]) == 2')"

# ---- checksum mismatch: refused, deleted, fetched again --------------------------------------
server s3 '{"corrupt": 1}'
run_agent mismatch st3 --max-rounds 1
it_expect_rc "a corrupted first download, a good second one: exit 0" 0
it_expect_grep "the mismatch is reported" "$ERR" "SHA-256 is"
it_expect_eq "the model was fetched twice, from the start each time" '[null, null]' \
    "$(reqs s3 '[x["range"] for x in r if x["path"].endswith("/file")]')"

# ---- a download cut short: resumed in the same run with Range and If-Range -------------------
server s4 '{"cut_after": 700000, "cuts": 1}'
run_agent cut st4 --max-rounds 1 --json
it_expect_rc "a cut download is resumed: exit 0" 0
it_expect_eq "the second GET asks for the rest, If-Range the sha256, and gets 206" \
    "[[\"bytes=700000-\", \"\\\"$SHA\\\"\", 206]]" \
    "$(reqs s4 '[[x["range"], x["if_range"], x["status"]] for x in r if x["path"].endswith("/file") and x["range"]]')"
it_expect_eq "download events: 700000 bytes, then the rest resumed" '[[0, 700000, 0], [700000, '$((SIZE - 700000))', 1]]' \
    "$(it_json "$OUT" '[[l["from"], l["received"], l["resumed"]] for l in lines if l["event"] == "download"]')"

# ---- kill -9 in the middle of a download: resumed on restart ---------------------------------
server s5 '{"throttle": 150000}'
"$AGENT" run --coordinator "$URL" --allow-unsigned --token "$TOKEN" --data imgs --state st5 --poll 0.2 \
    >out/dl_kill.out 2>out/dl_kill.err &
pid=$!
PIDS+=($pid)
part_big() { [ -f st5/model.part ] && [ "$(stat -c %s st5/model.part)" -gt 300000 ]; }
if wait_for 30 part_big; then it_pass "the slow download reaches 300 kB"; else it_fail "the slow download reaches 300 kB" "model.part: $(ls -la st5)"; fi
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
have=$(stat -c %s st5/model.part)
it_expect_eq "after kill -9: download.json names the model" "$SHA" \
    "$(python3 -c 'import json; print(json.load(open("st5/download.json"))["sha256"])')"
config s5 '{}'
run_agent dl_resume st5 --max-rounds 1 --json
it_expect_rc "restarted after kill -9 mid-download: exit 0" 0
it_expect_eq "it resumed from the bytes on disk with If-Range and got 206" "[[\"bytes=$have-\", 206]]" \
    "$(reqs s5 '[[x["range"], x["status"]] for x in r if x["path"].endswith("/file") and x["range"]]')"
it_expect_eq "the resumed model verified and the round accepted" '["download", "accepted"]' \
    "$(it_json "$OUT" '[[l["source"] for l in lines if l["event"] == "model_ready"][0], last["result"]]')"

# ---- kill -9 in the middle of an upload: re-sent on restart with the same key ----------------
server s6 '{"upload_delay": 30}'
"$AGENT" run --coordinator "$URL" --allow-unsigned --token "$TOKEN" --data imgs --state st6 --poll 0.2 \
    >out/up_kill.out 2>out/up_kill.err &
pid=$!
PIDS+=($pid)
posted() { [ "$(reqs s6 'len([x for x in r if x["method"] == "POST"])')" -ge 1 ]; }
if wait_for 30 posted; then it_pass "the upload reaches the server"; else it_fail "the upload reaches the server" "no POST"; fi
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
it_expect_eq "after kill -9: the stored update is there" "upload-42.msgpack" "$(cd st6 && ls upload-*)"
config s6 '{}'
run_agent up_resume st6 --max-rounds 1 --json
it_expect_rc "restarted after kill -9 mid-upload: exit 0" 0
it_expect_eq "it re-sent before asking for a task" '["warning", "started", "resend", "upload", "round_done"]' \
    "$(it_json "$OUT" '[l["event"] for l in lines]')"
it_expect_eq "same Idempotency-Key, same body" '[1, true]' \
    "$(reqs s6 '[len({x["idempotency_key"] for x in r if x["method"] == "POST"}), open("s6/uploads/1.bin","rb").read() == open("s6/uploads/2.bin","rb").read()]')"
it_expect_eq "the task was not asked for again" 1 "$(reqs s6 'len([x for x in r if x["path"].endswith("/task")])')"

# ---- 409 stale and 422 norm: given up, recorded, not retried; a corrupt state.json survived --
server s7 '{"upload_script": [409], "upload_reasons": ["stale"]}'
mkdir -p st7
echo '{"current": 17, "done": "no' >st7/state.json
IT_TIMEOUT=6 run_agent stale st7
it_expect_grep "a corrupt state.json is named and the agent starts fresh" "$ERR" "st7/state.json: not valid JSON"
it_expect_grep "409 stale: given up with the reason" "$ERR" "reason stale; giving up this round"
it_expect_eq "409: one POST, round recorded as stale" '[1, "stale"]' \
    "$(python3 -c 'import json,sys; s = json.load(open("st7/state.json")); print(json.dumps(['"$(reqs s7 'len([x for x in r if x["method"] == "POST"])')"', s["last_result"]]))')"
server s8 '{"upload_script": [422], "upload_reasons": ["norm"]}'
IT_TIMEOUT=6 run_agent norm st8
it_expect_eq "422 norm: one POST, round recorded as norm" '[1, "norm"]' \
    "$(python3 -c 'import json,sys; s = json.load(open("st8/state.json")); print(json.dumps(['"$(reqs s8 'len([x for x in r if x["method"] == "POST"])')"', s["last_result"]]))')"
IT_TIMEOUT=60

# ---- a task outside the model's ranges; 503 until the deadline -------------------------------
server s10 '{"task_over": {"lr": 5}}'
IT_TIMEOUT=4 run_agent bad_lr st10
it_expect_grep "lr 5 from the task: refused naming the range" "$ERR" "learningRate 5 is outside the model's allowed range [0, 1]"
it_expect_eq "no upload; the round is recorded as bad_params" '[0, "bad_params"]' \
    "$(python3 -c 'import json,sys; s = json.load(open("st10/state.json")); print(json.dumps(['"$(reqs s10 'len([x for x in r if x["method"] == "POST" and x["path"].endswith("/updates")])')"', s["last_result"]]))')"
it_expect_eq "... and the failure is reported once to the round" 1 \
    "$(reqs s10 'len([x for x in r if x["method"] == "POST" and x["path"].endswith("/failures")])')"
server s11 '{"task_over": {"deadline": 4}, "upload_script": [503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503]}'
IT_TIMEOUT=12 run_agent deadline st11
it_expect_grep "503 until the deadline: given up" "$ERR" "the deadline has passed, giving up"
it_expect_eq "the round is recorded as deadline, after several attempts" true \
    "$(python3 -c 'import json,sys; s = json.load(open("st11/state.json")); print(str(s["last_result"] == "deadline" and '"$(reqs s11 'len([x for x in r if x["method"] == "POST"])')"' >= 2).lower())')"

# ---- nothing to do: 204, then SIGTERM stops it cleanly ---------------------------------------
server s9 '{"task": null}'
"$AGENT" run --coordinator "$URL" --allow-unsigned --token "$TOKEN" --data imgs --state st9 --poll 0.2 \
    >out/idle.out 2>out/idle.err &
pid=$!
sleep 1.5
it_signal "$pid" TERM
it_expect_rc "SIGTERM while idle: exit 0" 0
it_expect_py "204: it kept asking, about every --poll (0.2 s +-20 %)" '4 <= v[0] <= 10' \
    "$(reqs s9 'len(r)')"

it_finish
