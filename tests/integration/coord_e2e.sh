#!/usr/bin/env bash
# coord_e2e.sh — the coordinator end to end, with real workers under mpirun.
#   1. A job submitted over REST with a local launch of 2 ranks trains on Fashion-MNIST; the
#      coordinator is killed with SIGKILL mid-job and restarted: the job, its metrics history
#      and its checkpoints are still there, and the job completes (SUCCEEDED).
#   2. Its model version is registered; the file downloads (ETag, Range) byte for byte, and
#      `updraft eval` scores it exactly as the job reported.
#   3. A job run by workers the user launches (mpirun ... --coordinator --job ID): the workers
#      are killed, the job goes RESTARTING naming the checkpoint; the workers relaunched with
#      --resume finish it. A cancelled job stops after a checkpoint.
#   4. Another kill -9 once models are registered: versions, files and metrics all survive.
#   Roles: /healthz is open, every other GET needs a token; the reader token (STATE/reader.token,
#   0600, named in the log) reads through the CLI and changes nothing.
# shellcheck source=SCRIPTDIR/lib/common.bash
source "$(dirname "$0")/lib/common.bash"
it_require_bins "$WORKER" "$UPDRAFT" "$UD_BIN_DIR/updraft-coordinator"
source "$IT_LIB/mpi.bash"
source "$IT_LIB/coord.bash"

TRAIN=$FASHION/train-images-idx3-ubyte.gz
TEST=$FASHION/t10k-images-idx3-ubyte.gz
STATE=$UD_TEST_SCRATCH/state
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader,tcp
export OMPI_MCA_btl_base_warn_component_unused=0

coord_start "$STATE" --heartbeat-timeout 4 --restart-timeout 120 || { it_fail "coordinator starts" "no /healthz"; it_finish; }
it_pass "coordinator starts and answers /healthz"
it_expect_eq "admin token created (64 hex digits)" 64 "${#TOKEN}"
it_expect_eq "reader token created (64 hex digits, mode 600)" "64 600" "${#READER} $(stat -c %a "$STATE/reader.token")"
if grep -q "reader) token in $STATE/reader.token" "$COORD_LOG"; then it_pass "... and the log says where"; else it_fail "log names the reader token" "$(grep token "$COORD_LOG")"; fi
it_expect_eq "GET /v1/status with no token → 401, /healthz → 200" "401 200" \
    "$(curl -s -o /dev/null -w '%{http_code}' "$URL/v1/status") $(curl -s -o /dev/null -w '%{http_code}' "$URL/healthz")"
it_run reader_status "$UPDRAFT" --token "$READER" status
it_expect_rc "updraft status with the reader token" 0
it_run reader_cancel "$UPDRAFT" --token "$READER" job cancel job-000001
if [ "$RC" = 1 ] && grep -q "403" "$ERR"; then it_pass "... which cannot cancel (403)"; else it_fail "reader cancel refused" "exit $RC: $(cat "$ERR")"; fi

# ---- 1. local launch, kill -9 of the coordinator mid-job
spec=$(cat <<EOF
{"name": "fashion-mlp", "data": "$TRAIN", "test": "$TEST", "arch": "mlp", "epochs": 10,
 "batch": 128, "lr": 0.05, "max_samples": 12000, "validation": 0.1, "threads": 1,
 "report_every": 5, "checkpoint_every": 20, "launch": {"np": 2}}
EOF
)
api POST /v1/jobs "$spec"
it_expect_eq "POST /v1/jobs → 201" 201 "$API_STATUS"
JOB=$(jq_ "$API_BODY" 'j["id"]')
it_expect_eq "the new job is PENDING" PENDING "$(jq_ "$API_BODY" 'j["state"]')"

if wait_iteration "$JOB" 25 60; then it_pass "job $JOB runs and reports progress"; else it_fail "job runs" "state $(jq_ "$API_BODY" 'j.get("state")'), iteration $(jq_ "$API_BODY" 'j.get("iteration")')"; fi
for _ in $(seq 50); do
    api GET "/v1/jobs/$JOB"
    [ "$(jq_ "$API_BODY" 'len(j["ranks"])')" = 2 ] && break
    sleep 0.1
done
it_expect_eq "job is RUNNING with both ranks heartbeating" "RUNNING 2" "$(jq_ "$API_BODY" 'j["state"] + " " + str(len(j["ranks"]))')"
api GET "/v1/jobs/$JOB/metrics?key=loss"
before=$(jq_ "$API_BODY" 'len(j["metrics"])')
it_expect_py "loss history before the crash has points" 'v[0] >= 3' "$before"
api GET "/v1/jobs/$JOB"
ckpt_before=$(jq_ "$API_BODY" 'len(j["checkpoints"])')

coord_kill9
sleep 1
it_run workers_alive pgrep -f "updraft-worker --coordinator $ZMQ"
it_expect_rc "the workers keep training while the coordinator is down" 0
coord_start "$STATE" --heartbeat-timeout 4 --restart-timeout 120 || it_fail "coordinator restarts" "no /healthz"
it_expect_grep "the restarted coordinator recovers the job" "$COORD_LOG" "$JOB"
api GET "/v1/jobs/$JOB"
it_expect_py "job still there after kill -9 (RUNNING or done)" 'v[0] in ("RUNNING", "SUCCEEDED")' "$(jq_ "$API_BODY" 'j["state"]')"
it_expect_py "checkpoints still listed" 'v[0] >= v[1] >= 1' "$(jq_ "$API_BODY" 'len(j["checkpoints"])')" "$ckpt_before"
api GET "/v1/jobs/$JOB/metrics?key=loss"
it_expect_py "metrics history kept" 'v[0] >= v[1]' "$(jq_ "$API_BODY" 'len(j["metrics"])')" "$before"

if wait_job "$JOB" "SUCCEEDED FAILED CANCELLED" 120; then :; fi
it_expect_eq "job completes after the coordinator restart" SUCCEEDED "$JOB_STATE"
api GET "/v1/jobs/$JOB"
cp "$API_BODY" out/job1.json
VERSION=$(jq_ out/job1.json 'j["model"]["version"]')
it_expect_eq "the job registered version 1 of fashion-mlp" "fashion-mlp 1" "$(jq_ out/job1.json 'j["model"]["name"] + " " + str(j["model"]["version"])')"
api GET "/v1/jobs/$JOB/metrics?key=loss"
it_expect_py "loss history covers the run (points after the restart too)" 'v[0] > v[1]' "$(jq_ "$API_BODY" 'len(j["metrics"])')" "$before"
job_acc=$(jq_ out/job1.json 'j["metrics"]["test_accuracy"]["value"]')
it_expect_py "job reports a test accuracy above 0.75" 'v[0] > 0.75' "$job_acc"

# ---- 2. the registry and the file
api GET "/v1/models/fashion-mlp/versions/$VERSION"
cp "$API_BODY" out/version.json
it_expect_eq "version metadata: lineage names the job" "$JOB" "$(jq_ out/version.json 'j["lineage"]["job"]')"
SHA=$(jq_ out/version.json 'j["sha256"]')
it_run pull "$UPDRAFT" model pull "fashion-mlp@$VERSION" --out model.udm
it_expect_rc "updraft model pull" 0
it_expect_eq "downloaded file has the registered sha256" "$SHA" "$(sha256sum model.udm | cut -d' ' -f1)"
etag=$(curl -sI "${READ_AUTH[@]}" "$URL/v1/models/fashion-mlp/versions/$VERSION/file" | tr -d '\r' | sed -n 's/^[Ee][Tt]ag: //p')
it_expect_eq "ETag is the sha256" "\"$SHA\"" "$etag"
code=$(curl -s "${READ_AUTH[@]}" -o /dev/null -w '%{http_code}' -H "If-None-Match: \"$SHA\"" "$URL/v1/models/fashion-mlp/versions/$VERSION/file")
it_expect_eq "If-None-Match → 304" 304 "$code"
curl -s "${READ_AUTH[@]}" -H 'Range: bytes=100-199' "$URL/v1/models/fashion-mlp/versions/$VERSION/file" -o part.bin
it_expect_eq "Range bytes=100-199 gives those bytes" "$(dd if=model.udm bs=1 skip=100 count=100 2>/dev/null | sha256sum)" "$(sha256sum <part.bin)"
it_run eval "$UPDRAFT" eval model.udm --data "$TEST" --json
it_expect_rc "updraft eval scores the downloaded model" 0
eval_acc=$(it_json "$OUT" 'last["accuracy"]')
it_expect_py "eval accuracy equals the job's test_accuracy" 'abs(v[0] - v[1]) < 1e-9' "$eval_acc" "$job_acc"

# ---- 3. workers launched by the user; kill them; resume; cancel
spec2=$(cat <<EOF
{"name": "fashion-mlp", "data": "$TRAIN", "arch": "mlp", "epochs": 4, "batch": 128,
 "max_samples": 12000, "validation": "none", "threads": 1, "report_every": 5,
 "checkpoint_every": 15}
EOF
)
it_run submit "$UPDRAFT" job submit /dev/stdin <<<"$spec2"
it_expect_rc "updraft job submit" 0
JOB2=$(grep -o 'job-[0-9]*' "$OUT" | head -1)
"$MPI" 2 "$WORKER" --coordinator "$ZMQ" --job "$JOB2" >out/user1.out 2>out/user1.err &
upid=$!
if wait_iteration "$JOB2" 35 60; then it_pass "user-launched workers register and train $JOB2"; else it_fail "user-launched workers train" "$(tail -3 out/user1.err)"; fi
pkill -KILL -f "updraft-worker --coordinator $ZMQ --job $JOB2" || true
{ wait "$upid"; } 2>/dev/null || true
if wait_job "$JOB2" "RESTARTING FAILED" 30; then :; fi
it_expect_eq "silent workers → RESTARTING" RESTARTING "$JOB_STATE"
it_expect_grep "RESTARTING names the checkpoint to resume from" "$API_BODY" "ckpt-"
it_run wrong_world "$WORKER" --coordinator "$ZMQ" --job "$JOB2" --resume --coordinator-timeout 5
it_expect_error "one process for a job planned for 2 ranks is refused"
it_expect_grep "the refusal names both worlds" "$ERR" "runs 2 ranks (np 2) but the worker was started with 1"
api GET "/v1/jobs/$JOB2"
it_expect_eq "and the job is still RESTARTING" RESTARTING "$(jq_ "$API_BODY" 'j["state"]')"
it_run spec_opt "$WORKER" --coordinator "$ZMQ" --job "$JOB2" --lr 0.1
it_expect_error "a training option next to --coordinator is refused"
it_expect_grep "it says the job spec sets it" "$ERR" "job spec sets"
it_run resume "$MPI" 2 "$WORKER" --coordinator "$ZMQ" --job "$JOB2" --resume
it_expect_rc "workers relaunched with --resume finish the job" 0
it_expect_grep "they resumed from the checkpoint" "$ERR" "resuming from"
wait_job "$JOB2" "SUCCEEDED FAILED CANCELLED" 10 || true
it_expect_eq "resumed job SUCCEEDED" SUCCEEDED "$JOB_STATE"
it_expect_eq "it registered version 2" 2 "$(jq_ "$API_BODY" 'j["model"]["version"]')"

spec3=$(cat <<EOF
{"name": "fashion-mlp", "data": "$TRAIN", "arch": "mlp", "epochs": 50, "batch": 128,
 "max_samples": 12000, "validation": "none", "threads": 1, "report_every": 5,
 "checkpoint_every": 15, "launch": {"np": 2}}
EOF
)
api POST /v1/jobs "$spec3"
JOB3=$(jq_ "$API_BODY" 'j["id"]')
wait_iteration "$JOB3" 10 60 || it_fail "third job runs" "no progress"
it_run cancel "$UPDRAFT" job cancel "$JOB3"
it_expect_rc "updraft job cancel" 0
wait_job "$JOB3" "CANCELLED FAILED SUCCEEDED" 60 || true
it_expect_eq "cancelled job ends CANCELLED" CANCELLED "$JOB_STATE"
it_expect_py "it stopped after writing a checkpoint" 'v[0] >= 1' "$(jq_ "$API_BODY" 'len(j["checkpoints"])')"

# ---- 4. kill -9 again, now that models are registered: the registry and its files survive
coord_kill9
coord_start "$STATE" --heartbeat-timeout 4 --restart-timeout 120 || it_fail "coordinator restarts again" "no /healthz"
api GET /v1/models
it_expect_eq "after another kill -9: fashion-mlp still has 2 versions" 2 "$(jq_ "$API_BODY" '[m["versions"] for m in j["models"] if m["name"] == "fashion-mlp"][0]')"
curl -s "${READ_AUTH[@]}" "$URL/v1/models/fashion-mlp/versions/1/file" -o again.udm
it_expect_eq "and version 1's file is byte for byte the one registered" "$SHA" "$(sha256sum again.udm | cut -d' ' -f1)"
api GET "/v1/jobs/$JOB/metrics?key=loss"
it_expect_py "job 1's loss history is intact" 'v[0] > v[1]' "$(jq_ "$API_BODY" 'len(j["metrics"])')" "$before"

api GET /v1/status
it_expect_eq "status counts the jobs by state" "2 1 0" "$(jq_ "$API_BODY" '"%d %d %d" % (j["jobs"]["SUCCEEDED"], j["jobs"]["CANCELLED"], j["jobs"]["RUNNING"])')"
it_expect_eq "status counts 2 model versions" 2 "$(jq_ "$API_BODY" 'j["models"]')"
it_finish
