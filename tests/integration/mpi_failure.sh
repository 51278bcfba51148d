#!/usr/bin/env bash
# mpi_failure.sh — killing ranks. SIGKILL any rank at any moment, relaunch with --resume, and the
# final parameters are bitwise those of an uninterrupted run; when a rank dies or stops answering,
# the others stop within a bounded time and name it and the checkpoint to resume from.
# shellcheck source=SCRIPTDIR/lib/common.bash
source "$(dirname "$0")/lib/common.bash"
it_require_bins "$WORKER" "$UPDRAFT"
source "$IT_LIB/mpi.bash"

TRAIN=$FASHION/train-images-idx3-ubyte.gz
run=(--data "$TRAIN" --arch mlp --epochs 6 --batch 128 --lr 0.05 --max-samples 12000
     --validation 0.1 --threads 1 --json --checkpoint-every 9 --keep-checkpoints 2)
sha() { "$UPDRAFT" info "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["params_sha256"])'; }
ckpts() { local c; c=$(grep -c '"event":"checkpoint"' "$1" 2>/dev/null) || true; echo "${c:-0}"; }

# Launches mpirun -np 2 in the background on session $1, output in out/$2.{out,err}.
launch()
{
    OUT=$UD_TEST_SCRATCH/out/$2.out
    ERR=$UD_TEST_SCRATCH/out/$2.err
    IT_LAST_CMD="mpirun -np 2 updraft-worker --session $1 ${*:3}"
    "$MPI" 2 "$WORKER" "${run[@]}" --session "$1" --out "$1.udm" "${@:3}" >"$OUT" 2>"$ERR" &
    MPI_PID=$!
}
# Waits (at most $2 s) for the background mpirun; RC its exit code, 124 if it had to be killed.
reap()
{
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        if ! kill -0 "$MPI_PID" 2>/dev/null; then
            RC=0
            wait "$MPI_PID" || RC=$?
            return
        fi
        sleep 0.1
    done
    kill -KILL "$MPI_PID" 2>/dev/null || true
    pkill -KILL -f "updraft-worker.*$1" || true
    wait "$MPI_PID" || true
    RC=124
}
# Waits until the run has printed $2 checkpoint events (at most 60 s).
wait_ckpts()
{
    local i
    for ((i = 0; i < 600; i++)); do
        [ "$(ckpts "$OUT")" -ge "$2" ] && return 0
        kill -0 "$MPI_PID" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# ---- 1. the uninterrupted run ------------------------------------------------------------------
it_run straight "$MPI" 2 "$WORKER" "${run[@]}" --session ref --out ref.udm
it_expect_rc "uninterrupted 2-rank run" 0
REF=$(sha ref.udm)

# ---- 2. the same run, killed three times -------------------------------------------------------
# Kill rank 1 right after a checkpoint, rank 0 at an arbitrary moment, rank 1 again mid-epoch.
kills=("1 2 0.0" "0 1 0.37" "1 1 0.13")
n=0
for k in "${kills[@]}"; do
    read -r victim after delay <<<"$k"
    n=$((n + 1))
    extra=()
    [ $n -gt 1 ] && extra=(--resume)
    launch killed "kill$n" "${extra[@]}"
    if ! wait_ckpts killed "$after"; then
        it_fail "kill $n: run reached $after checkpoints" "$(tail -3 "$ERR" | tr '\n' '|')"
        reap killed 5
        continue
    fi
    sleep "$delay"
    pid=$(rank_pid killed "$victim" || true)
    if [ -z "$pid" ]; then
        it_fail "kill $n: found rank $victim" "no process"
        reap killed 5
        continue
    fi
    kill -KILL "$pid"
    T0=$(date +%s.%N)
    reap killed 20
    T1=$(date +%s.%N)
    it_expect_py "kill $n (SIGKILL rank $victim): the job stops non-zero, in under 20 s" \
        'v[0] not in (0, 124) and v[2] - v[1] < 20' "$RC" "$T0" "$T1"
    it_expect_grep "kill $n: the survivor names the lost rank" "$ERR" "rank $victim (pid $pid)"
    it_expect_grep "kill $n: and the checkpoint to resume from" "$ERR" "resume from $UD_TEST_SCRATCH/killed/checkpoints/ckpt-"
done
launch killed final --resume
reap killed 120
it_expect_rc "the last resume runs to the end" 0
it_expect_grep "it resumed from a checkpoint" "$ERR" "resuming from"
it_expect_eq "killed three times and resumed: bitwise the uninterrupted run" "$REF" "$(sha killed.udm)"
it_run list "$UPDRAFT" checkpoints killed
it_expect_nogrep "no incomplete checkpoint is left behind" "$OUT" "incomplete"

# ---- 3. a rank that stops answering (SIGSTOP): the others time out and name it -----------------
launch stopped stop --peer-timeout 3
if wait_ckpts stopped 1; then
    pid=$(rank_pid stopped 1 || true)
    kill -STOP "$pid"
    T0=$(date +%s.%N)
    reap stopped 30
    T1=$(date +%s.%N)
    kill -KILL "$pid" 2>/dev/null || true
    it_expect_py "SIGSTOP rank 1: rank 0 gives up after --peer-timeout 3 (exit non-zero, < 15 s)" \
        'v[0] not in (0, 124) and v[2] - v[1] < 15' "$RC" "$T0" "$T1"
    it_expect_grep "it names the rank that stopped answering" "$ERR" "missing: rank 1 (pid $pid"
    it_expect_grep "and says it is alive but silent" "$ERR" "not responding"
    it_expect_grep "and where to resume" "$ERR" "resume from $UD_TEST_SCRATCH/stopped/checkpoints/ckpt-"
else
    it_fail "SIGSTOP run reached a checkpoint" "$(tail -3 "$ERR" | tr '\n' '|')"
    reap stopped 5
fi

# ---- 4. without a session the message says there is nothing to resume from --------------------
OUT=$UD_TEST_SCRATCH/out/nosess.out
ERR=$UD_TEST_SCRATCH/out/nosess.err
IT_LAST_CMD="mpirun -np 2 updraft-worker ... --out nosess.udm"
"$MPI" 2 "$WORKER" --data "$TRAIN" --arch mlp --epochs 5 --batch 128 --max-samples 12000 \
    --threads 1 --json --report-every 20 --out nosess.udm >"$OUT" 2>"$ERR" &
MPI_PID=$!
for ((i = 0; i < 300; i++)); do
    grep -q '"event":"progress"' "$OUT" 2>/dev/null && break
    sleep 0.1
done
pid=$(rank_pid nosess.udm 0 || true)
if [ -n "$pid" ]; then
    kill -KILL "$pid"
    reap nosess.udm 20
    it_expect_py "SIGKILL rank 0 without a session: stops non-zero" 'v[0] not in (0, 124)' "$RC"
    it_expect_grep "rank 1 names rank 0" "$ERR" "rank 0 (pid $pid)"
    it_expect_grep "and says there is nothing to resume from" "$ERR" "nothing to resume from"
else
    it_fail "found rank 0 of the run without a session" "no process"
    reap nosess.udm 5
fi

it_finish
