#!/usr/bin/env bash
# slurm.sh — jobs launched through a real single-node Slurm (slurmctld, slurmd and munge from
# Debian, started here without systemd: lib/slurm.bash), with the coordinator submitting them.
#   1. Specs: Slurm keys without "scheduler": "slurm", a bad time limit: 400 naming the key;
#      an unknown partition: the job FAILED with sbatch's error.
#   2. A 2-rank job with "scheduler": "slurm" runs to SUCCEEDED inside the allocation; the job's
#      events record the Slurm job PENDING, RUNNING, COMPLETED.
#   3. A job whose Slurm job waits for resources is cancelled over REST: the Slurm job is
#      scancelled (its state CANCELLED is recorded).
#   4. scancel of a running Slurm job from outside: the job goes RESTARTING, is submitted again
#      (launch.max_restarts 1) and, scancelled again, ends FAILED naming CANCELLED.
#   6. deploy/slurm/workers.sbatch, submitted by hand, joins a job that waits for workers.
#   7. A running job cancelled over REST: CANCELLED, and its Slurm job ends.
#   5. "time": "0:10" (Slurm rounds it up to a minute; slurmctld checks limits every 30 s): the
#      Slurm job ends TIMEOUT and the job FAILED naming it. It runs beside 3 and 4.
# Needs root and Slurm (deploy/install-deps.sh installs slurm-wlm and munge); exits 77 (skipped)
# without them.
# shellcheck source=SCRIPTDIR/lib/common.bash
source "$(dirname "$0")/lib/common.bash"
it_require_bins "$WORKER" "$UD_BIN_DIR/updraft-coordinator"
source "$IT_LIB/coord.bash"
source "$IT_LIB/slurm.bash"
if ! slurm_available; then
    echo "$IT_NAME: skipped: needs root and slurmctld, slurmd, munged (deploy/install-deps.sh)"
    exit 77
fi
# A watchdog below ctest's timeout, so that the EXIT trap always stops the daemons.
(
    sleep 240 >/dev/null 2>&1 & # not holding ctest's pipe open once this subshell is killed
    wait $!
    echo "$IT_NAME: still running after 240 s: stopping"
    kill -TERM $$
) &
WATCHDOG=$!
trap 'exit 1' TERM
trap 'kill "$WATCHDOG" 2>/dev/null || true; coord_cleanup; slurm_down' EXIT

TRAIN=$FASHION/train-images-idx3-ubyte.gz
STATE=$UD_TEST_SCRATCH/state
T0=$SECONDS

if slurm_up; then it_pass "single-node Slurm up (sinfo: idle)"; else it_fail "Slurm starts" "see above"; it_finish; fi
coord_start "$STATE" --heartbeat-timeout 10 --restart-timeout 60 --cancel-grace 5 || { it_fail "coordinator starts" "no /healthz"; it_finish; }

# spec NAME EPOCHS LAUNCH-KEYS: a small Fashion-MNIST MLP job launched through Slurm
spec()
{
    cat <<EOF
{"name": "$1", "data": "$TRAIN", "arch": "mlp", "epochs": $2, "batch": 64, "lr": 0.05,
 "max_samples": 1200, "validation": "none", "threads": 1, "report_every": 5,
 "launch": {"scheduler": "slurm", $3}}
EOF
}
submit()
{
    api POST /v1/jobs "$1"
    [ "$API_STATUS" = 201 ] || { echo "submit: HTTP $API_STATUS: $(cat "$API_BODY")" >&2; return 1; }
    jq_ "$API_BODY" 'j["id"]'
}
sql() { sqlite3 -cmd '.timeout 5000' "$STATE/updraft.db" "$1"; }
slurm_id() { sql "SELECT slurm_id FROM slurm_jobs WHERE job = '$1'"; }
# the job's events of kind slurm, one message a line
slurm_events()
{
    api GET "/v1/jobs/$1"
    jq_ "$API_BODY" '"\n".join(e["message"] for e in j["events"] if e["kind"] == "slurm")'
}
# wait_slurm JOB TEXT SECS: until a slurm event of JOB contains TEXT
wait_slurm()
{
    local i
    for ((i = 0; i < $3 * 5; i++)); do
        slurm_events "$1" | grep -qF -- "$2" && return 0
        sleep 0.2
    done
    return 1
}
message() { api GET "/v1/jobs/$1"; jq_ "$API_BODY" 'j["message"]'; }

# ---- 1. specs
api POST /v1/jobs '{"name": "x", "data": "'"$TRAIN"'", "arch": "mlp", "launch": {"np": 1, "partition": "debug"}}'
it_expect_eq "launch.partition without scheduler slurm: 400" 400 "$API_STATUS"
it_expect_grep "... naming the key" "$API_BODY" "launch.partition"
api POST /v1/jobs "$(spec badtime 1 '"np": 1, "time": "1:2:3:4"')"
it_expect_eq "launch.time \"1:2:3:4\": 400" 400 "$API_STATUS"
it_expect_grep "... naming the key" "$API_BODY" "launch.time"
api POST /v1/jobs "$(spec badsched 1 '"np": 1, "scheduler": "pbs"')"
it_expect_eq "launch.scheduler \"pbs\": 400" 400 "$API_STATUS"
P=$(submit "$(spec nopart 1 '"np": 1, "partition": "nosuchpart"')")
if wait_job "$P" FAILED 15; then it_pass "unknown partition: FAILED"; else it_fail "unknown partition: FAILED" "state $JOB_STATE"; fi
it_expect_grep "... with sbatch's error" <(message "$P") "invalid partition"

# ---- 2. a 2-rank job runs to SUCCEEDED
S=$(submit "$(spec slurm-ok 40 '"np": 2, "time": 5, "partition": "debug"')")
if wait_job "$S" SUCCEEDED 60; then it_pass "2-rank job through Slurm: SUCCEEDED"; else it_fail "2-rank job through Slurm: SUCCEEDED" "state $JOB_STATE: $(message "$S")"; fi
it_expect_grep "... the batch script asks for 2 tasks" "$STATE/jobs/$S/slurm.sh" "#SBATCH --ntasks=2"
it_expect_grep "... in the partition, with the time limit" <(grep SBATCH "$STATE/jobs/$S/slurm.sh" | tr '\n' ' ') "--partition=debug #SBATCH --time=5"
it_expect_grep "... mpirun starts the workers in the allocation" "$STATE/jobs/$S/worker.log" "=== Slurm job $(slurm_id "$S"): 2 tasks on $SLURM_HOST"
if wait_slurm "$S" "-> COMPLETED" 15; then it_pass "... its Slurm job COMPLETED"; else it_fail "... its Slurm job COMPLETED" "$(slurm_events "$S" | tr '\n' '|')"; fi
slurm_events "$S" >out/s-events.txt
it_expect_grep "... recorded: submitted PENDING" out/s-events.txt "Slurm job $(slurm_id "$S") submitted: PENDING"
it_expect_grep "... PENDING -> RUNNING" out/s-events.txt "PENDING -> RUNNING"
it_expect_grep "... RUNNING -> ... COMPLETED" out/s-events.txt "-> COMPLETED"
api GET "/v1/jobs/$S"
it_expect_eq "... GET /v1/jobs/ID shows the Slurm job" "$(slurm_id "$S") COMPLETED" "$(jq_ "$API_BODY" 'j["slurm"]["id"] + " " + j["slurm"]["state"]')"
api GET "/v1/models/slurm-ok/versions"
it_expect_eq "... and its model is registered" 200 "$API_STATUS"

# ---- 5 (started now, checked at the end). Slurm's time limit checks run every 30 s.
T=$(submit "$(spec slurm-timeout 100000 '"np": 1, "time": "0:10", "max_restarts": 0')")
if wait_job "$T" RUNNING 30; then it_pass "time-limited job RUNNING"; else it_fail "time-limited job RUNNING" "state $JOB_STATE: $(message "$T")"; fi

# ---- 4. scancel from outside (with a restart), and 3. a cancel while Slurm holds the job
K=$(submit "$(spec slurm-killed 100000 '"np": 1, "max_restarts": 1')")
if wait_job "$K" RUNNING 30; then it_pass "second job RUNNING"; else it_fail "second job RUNNING" "state $JOB_STATE: $(message "$K")"; fi

C=$(submit "$(spec slurm-cancel 1 '"np": 2')")
if wait_slurm "$C" "submitted: PENDING" 10; then it_pass "2-rank job submitted while both cores are taken"; else it_fail "2-rank job submitted" "$(slurm_events "$C")"; fi
sleep 1.5
it_expect_eq "... its Slurm job is PENDING (Resources)" PENDING "$(squeue -h -j "$(slurm_id "$C")" -o %T 2>&1)"
api POST "/v1/jobs/$C/cancel"
it_expect_eq "cancel over REST: 202" 202 "$API_STATUS"
if wait_slurm "$C" "-> CANCELLED" 10; then it_pass "... the Slurm job is scancelled (CANCELLED)"; else it_fail "... the Slurm job is scancelled" "$(slurm_events "$C" | tr '\n' '|')"; fi
it_expect_grep "... the scancel is recorded" <(slurm_events "$C") "scancel of Slurm job $(slurm_id "$C"): the job is CANCELLED"
it_expect_eq "... the job is CANCELLED" CANCELLED "$(jq_ "$API_BODY" 'j["state"]')"

K1=$(slurm_id "$K")
scancel "$K1"
for _ in $(seq 100); do
    [ "$(slurm_id "$K")" != "$K1" ] && break
    sleep 0.2
done
K2=$(slurm_id "$K")
it_expect_py "scancel from outside: the job is submitted again as a new Slurm job" 'v[0] != v[1]' "$K1" "$K2"
it_expect_grep "... the Slurm job's end is recorded" <(slurm_events "$K" | grep -F "Slurm job $K1:") "-> CANCELLED"
it_expect_grep "... the job went RESTARTING" <(sql "SELECT message FROM events WHERE job = '$K' AND kind = 'state'") "RUNNING -> RESTARTING"
if wait_job "$K" RUNNING 30; then it_pass "... and runs again"; else it_fail "... and runs again" "state $JOB_STATE: $(message "$K")"; fi
scancel "$K2"
if wait_job "$K" FAILED 20; then it_pass "... scancelled again: FAILED"; else it_fail "... scancelled again: FAILED" "state $JOB_STATE: $(message "$K")"; fi
it_expect_grep "... gave up after one relaunch" <(message "$K") "gave up after 1 relaunch (launch.max_restarts 1)"
it_expect_grep "... naming the Slurm state" <(message "$K") "Slurm job $K2 ended CANCELLED"

# ---- 6. a batch script the user writes (deploy/slurm/workers.sbatch, docs/slurm.md) for a job
# that waits for its workers
spec_plain=$(spec slurm-user 2 '"np": 1' | python3 -c 'import json,sys; s=json.load(sys.stdin); del s["launch"]; print(json.dumps(s))')
U=$(submit "$spec_plain")
it_run user_sbatch env UPDRAFT_JOB="$U" UPDRAFT_COORDINATOR="$ZMQ" UPDRAFT_WORKER="$WORKER" \
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
    sbatch --parsable --ntasks=1 --output="$UD_TEST_SCRATCH/out/user-%j.log" "$UD_SOURCE_DIR/deploy/slurm/workers.sbatch"
it_expect_rc "sbatch of deploy/slurm/workers.sbatch" 0
if wait_job "$U" SUCCEEDED 60; then it_pass "... its workers join job $U: SUCCEEDED"; else it_fail "... its workers join the job: SUCCEEDED" "state $JOB_STATE: $(message "$U"); $(tail -3 "out/user-$(cat "$OUT").log" 2>&1)"; fi
it_expect_grep "... the script's log names the allocation" "out/user-$(cat "$OUT").log" "Slurm job $(cat "$OUT"), 1 tasks on $SLURM_HOST"

# ---- 7. a REST cancel of a running job: the workers stop, the job is CANCELLED, its Slurm job ends
X=$(submit "$(spec slurm-cancel-run 100000 '"np": 1')")
if wait_job "$X" RUNNING 30; then it_pass "job to cancel RUNNING"; else it_fail "job to cancel RUNNING" "state $JOB_STATE: $(message "$X")"; fi
api POST "/v1/jobs/$X/cancel"
if wait_job "$X" CANCELLED 20; then it_pass "... cancelled over REST: CANCELLED"; else it_fail "... cancelled over REST: CANCELLED" "state $JOB_STATE: $(message "$X")"; fi
for _ in $(seq 50); do
    case $(jq_ "$API_BODY" 'j["slurm"]["state"]') in COMPLETED | CANCELLED) break ;; esac
    sleep 0.2
    api GET "/v1/jobs/$X"
done
it_expect_py "... and its Slurm job ends" 'v[0] in ("COMPLETED", "CANCELLED")' "$(jq_ "$API_BODY" 'j["slurm"]["state"]')"

# ---- 5. the time limit
if wait_job "$T" FAILED 100; then it_pass "time limit expired: FAILED"; else it_fail "time limit expired: FAILED" "state $JOB_STATE: $(message "$T")"; fi
it_expect_grep "... naming TIMEOUT" <(message "$T") "ended TIMEOUT"
it_expect_grep "... recorded: -> TIMEOUT" <(slurm_events "$T") "-> TIMEOUT"
sql "SELECT job, time, message FROM events WHERE kind IN ('slurm', 'state') ORDER BY seq" >out/transitions.txt
echo "it_slurm: $((SECONDS - T0)) s; the transitions are in $UD_TEST_SCRATCH/out/transitions.txt"
it_finish
