#!/usr/bin/env bash
# slurm_stubs.sh — the coordinator's Slurm launcher against stand-in sbatch, squeue and scancel
# (shell scripts whose answers a mode file sets), for what a real Slurm will not do on demand:
# sbatch failing, answering garbage or hanging, squeue hanging, a Slurm job that ends before
# any worker registers, squeue forgetting the job. Needs neither root nor Slurm.
# (it_slurm runs the real thing.)
# shellcheck source=SCRIPTDIR/lib/common.bash
source "$(dirname "$0")/lib/common.bash"
it_require_bins "$WORKER" "$UD_BIN_DIR/updraft-coordinator"
source "$IT_LIB/coord.bash"

STATE=$UD_TEST_SCRATCH/state
STUB=$UD_TEST_SCRATCH/stub
mkdir -p "$STUB"
# sbatch: by $STUB/sbatch-mode; squeue: prints $STUB/squeue-mode, or hangs / forgets the job
cat >"$STUB/sbatch" <<EOF
#!/bin/sh
echo "\$*" >>"$STUB/sbatch.args"
case \$(cat "$STUB/sbatch-mode") in
ok) echo "42;cluster" ;;
garbage) echo "Submitted batch job soon" ;;
fail) echo "sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified" >&2; exit 1 ;;
hang) exec sleep 60 ;;
esac
EOF
cat >"$STUB/squeue" <<EOF
#!/bin/sh
echo "\$*" >>"$STUB/squeue.args"
case \$(cat "$STUB/squeue-mode") in
hang) exec sleep 60 ;;
gone) echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1 ;;
*) cat "$STUB/squeue-mode" ;;
esac
EOF
cat >"$STUB/scancel" <<EOF
#!/bin/sh
echo "\$*" >>"$STUB/scancel.args"
EOF
chmod +x "$STUB/sbatch" "$STUB/squeue" "$STUB/scancel"
echo PENDING >"$STUB/squeue-mode"

coord_start "$STATE" --sbatch "$STUB/sbatch" --squeue "$STUB/squeue" --scancel "$STUB/scancel" \
    --cancel-grace 2 || { it_fail "coordinator starts" "no /healthz"; it_finish; }

spec='{"name": "m", "data": "'$FASHION'/train-images-idx3-ubyte.gz", "arch": "mlp", "max_samples": 100,
 "launch": {"scheduler": "slurm", "np": 2, "partition": "debug", "time": "0:30", "account": "a"}}'
submit()
{
    api POST /v1/jobs "$spec"
    jq_ "$API_BODY" 'j["id"]'
}
message() { api GET "/v1/jobs/$1"; jq_ "$API_BODY" 'j["message"]'; }

# ---- sbatch's failures end the job naming them
echo fail >"$STUB/sbatch-mode"
A=$(submit)
if wait_job "$A" FAILED 10; then it_pass "sbatch exits 1: FAILED"; else it_fail "sbatch exits 1: FAILED" "state $JOB_STATE"; fi
it_expect_grep "... with sbatch's message" <(message "$A") "cannot submit to Slurm: sbatch exited with status 1: sbatch: error: Batch job submission failed: Invalid account"
it_expect_grep "sbatch got --parsable, the job directory, worker.log and the script" "$STUB/sbatch.args" "--parsable --chdir=$STATE/jobs/$A --output=$STATE/jobs/$A/worker.log --open-mode=append $STATE/jobs/$A/slurm.sh"
it_expect_grep "the script carries the launch keys" <(grep SBATCH "$STATE/jobs/$A/slurm.sh" | tr '\n' ' ') "--job-name=updraft-$A #SBATCH --ntasks=2 #SBATCH --partition=debug #SBATCH --time=0:30 #SBATCH --account=a"
it_expect_grep "... and runs the workers under mpirun" "$STATE/jobs/$A/slurm.sh" "-np 2 '$WORKER' --coordinator '$ZMQ' --job $A"

echo garbage >"$STUB/sbatch-mode"
B=$(submit)
if wait_job "$B" FAILED 10; then it_pass "sbatch answers no job id: FAILED"; else it_fail "sbatch answers no job id: FAILED" "state $JOB_STATE"; fi
it_expect_grep "... saying what it answered" <(message "$B") "sbatch answered 'Submitted batch job soon', not a job id"

chmod -x "$STUB/sbatch"
B2=$(submit)
if wait_job "$B2" FAILED 10; then it_pass "no executable sbatch: FAILED"; else it_fail "no executable sbatch: FAILED" "state $JOB_STATE"; fi
it_expect_grep "... naming it and the option" <(message "$B2") "sbatch '$STUB/sbatch' not found or not executable (--sbatch)"
chmod +x "$STUB/sbatch"

echo hang >"$STUB/sbatch-mode"
t0=$SECONDS
C=$(submit)
if wait_job "$C" FAILED 20; then it_pass "sbatch hangs: FAILED"; else it_fail "sbatch hangs: FAILED" "state $JOB_STATE"; fi
it_expect_grep "... after its deadline" <(message "$C") "sbatch did not answer within 10 s"
it_expect_py "... within about 10 s" 'v[0] <= 14' "$((SECONDS - t0))"

# ---- a submitted job: squeue's states are recorded; one that ends before registration fails
echo ok >"$STUB/sbatch-mode"
D=$(submit)
if wait_state "/v1/jobs/$D" PENDING 5 && sleep 1.5 && grep -q "42" "$STUB/squeue.args" 2>/dev/null; then it_pass "sbatch answers 42;cluster: squeue is asked about 42"; else it_fail "squeue asked" "$(cat "$STUB/squeue.args" 2>&1)"; fi
it_expect_grep "... as --noheader --states=all --jobs 42 --format=%T" "$STUB/squeue.args" "--noheader --states=all --jobs 42 --format=%T"
api GET "/v1/jobs/$D"
it_expect_eq "GET /v1/jobs/ID: slurm id and state" "42 PENDING" "$(jq_ "$API_BODY" 'j["slurm"]["id"] + " " + j["slurm"]["state"]')"
echo RUNNING >"$STUB/squeue-mode"
sleep 2
echo TIMEOUT >"$STUB/squeue-mode"
if wait_job "$D" FAILED 10; then it_pass "Slurm job ends TIMEOUT before rank 0 registered: FAILED"; else it_fail "TIMEOUT before registration: FAILED" "state $JOB_STATE"; fi
it_expect_grep "... naming it" <(message "$D") "Slurm job 42 ended TIMEOUT before rank 0 registered"
api GET "/v1/jobs/$D"
jq_ "$API_BODY" '"\n".join(e["message"] for e in j["events"] if e["kind"] == "slurm")' >out/d-events.txt
it_expect_grep "... events: submitted" out/d-events.txt "Slurm job 42 submitted: PENDING"
it_expect_grep "... PENDING -> RUNNING" out/d-events.txt "Slurm job 42: PENDING -> RUNNING"
it_expect_grep "... RUNNING -> TIMEOUT" out/d-events.txt "Slurm job 42: RUNNING -> TIMEOUT"

# ---- a coordinator restarted (kill -9) goes on following the Slurm job it submitted
echo PENDING >"$STUB/squeue-mode"
F=$(submit)
wait_state "/v1/jobs/$F" PENDING 5 || true
sleep 1.5
coord_kill9
coord_start "$STATE" --sbatch "$STUB/sbatch" --squeue "$STUB/squeue" --scancel "$STUB/scancel" \
    --cancel-grace 2 || it_fail "coordinator restarts" "no /healthz"
echo FAILED >"$STUB/squeue-mode"
if wait_job "$F" FAILED 10; then it_pass "after a kill -9 and restart: the Slurm job's end is seen"; else it_fail "restart: Slurm job followed" "state $JOB_STATE"; fi
it_expect_grep "... naming it" <(message "$F") "Slurm job 42 ended FAILED before rank 0 registered"
it_expect_eq "... submitted once" 1 "$(grep -c "jobs/$F/slurm.sh" "$STUB/sbatch.args")"

# ---- squeue hangs: the loop is held at most the 3 s deadline, then left alone for a while
echo PENDING >"$STUB/squeue-mode"
E=$(submit)
wait_state "/v1/jobs/$E" PENDING 5 || true
sleep 1.5
echo hang >"$STUB/squeue-mode"
: >"$STUB/squeue.args"
sleep 8
it_expect_grep "squeue hangs: a warning after the deadline" "$COORD_LOG" "squeue for Slurm job 42 did not answer within 3 s"
it_expect_py "... and it is not asked again at once (1 call in 8 s)" 'v[0] == 1' "$(wc -l <"$STUB/squeue.args")"
# ---- a cancel scancels the Slurm job; squeue forgetting the id is GONE
echo PENDING >"$STUB/squeue-mode"
api POST "/v1/jobs/$E/cancel"
it_expect_eq "cancel of the waiting job: 202" 202 "$API_STATUS"
for _ in $(seq 100); do
    [ -s "$STUB/scancel.args" ] && break
    sleep 0.2
done
it_expect_eq "... scancel 42 once squeue answers again" 42 "$(cat "$STUB/scancel.args" 2>&1)"
echo gone >"$STUB/squeue-mode"
for _ in $(seq 50); do
    api GET "/v1/jobs/$E"
    [ "$(jq_ "$API_BODY" 'j["slurm"]["state"]')" = GONE ] && break
    sleep 0.2
done
it_expect_eq "squeue no longer knows the id: GONE" GONE "$(jq_ "$API_BODY" 'j["slurm"]["state"]')"
it_finish
