#!/usr/bin/env bash
# multihost_mpi.sh — updraft-worker under mpirun across two and three "hosts" (network
# namespaces joined through a bridge, lib/netns.bash), launched with a hostfile and no ssh
# (lib/netns-launch as OpenMPI's plm_rsh_agent), TCP over the veth links only: the same
# per-epoch loss and the same model, bit for bit, as 2 ranks on one host (and 3 ranks on 3 hosts
# as 3 on one); a host's rank killed, or its link cut, ends the job within the peer timeout
# with a message naming the rank and its host. Needs root.
# shellcheck source=SCRIPTDIR/lib/common.bash
source "$(dirname "$0")/lib/common.bash"
it_require_bins "$WORKER" "$UPDRAFT"
source "$IT_LIB/mpi.bash"
source "$IT_LIB/netns.bash"

netns_up ud-mh- 10.231.14 3
netns_mpi_env
netns_hostfile hosts3 1
head -2 hosts3 >hosts # hosts 0 and 1
H1=${NETNS_HOSTS[1]}
A1=$(netns_addr 1)
PT=10 # --peer-timeout

TRAIN=$FASHION/train-images-idx3-ubyte.gz
base=(--data "$TRAIN" --arch mlp --batch 64 --lr 0.05 --max-samples 2000 --validation none
      --threads 1 --json)
sha() { "$UPDRAFT" info "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["params_sha256"])'; }
losses() { it_json "$1" '[l["loss"] for l in lines if l["event"] == "epoch_end"]'; }
rx() { ip -n "$H1" -s -j link show ud0 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["stats64"]["rx"]["bytes"])'; }

# ---- 1. two ranks on one host (shared memory), then two ranks on two hosts ---------------------
it_run onehost "$NETNS_LAUNCH" --exec "${NETNS_HOSTS[0]}" "$MPI" 2 "$WORKER" "${base[@]}" --epochs 3 --out one.udm
it_expect_rc "2 ranks on one host exit 0" 0
cp "$OUT" out/one.json
RX0=$(rx)
it_run twohosts "$NETNS_LAUNCH" --exec "${NETNS_HOSTS[0]}" \
    mpirun -np 2 --hostfile hosts "$WORKER" "${base[@]}" --epochs 3 --out two.udm
it_expect_rc "2 ranks on 2 hosts (mpirun --hostfile, no ssh) exit 0" 0
cp "$OUT" out/two.json
it_expect_eq "the 2-host run reports world 2" 2 "$(it_json out/two.json 'last["world"]')"
it_expect_py "the gradients crossed the veth link: $H1 received >= 96 steps x the gradient's bytes" \
    'v[1] - v[0] >= 96 * v[2]' "$RX0" "$(rx)" "$(it_json out/two.json 'last["grad_bytes_per_step"]')"
it_expect_eq "3 epochs each" 3 "$(it_json out/two.json 'len([l for l in lines if l["event"] == "epoch_end"])')"
it_expect_eq "the per-epoch train loss is the one-host run's, exactly" "$(losses out/one.json)" "$(losses out/two.json)"
same_model() { it_expect_py "$1" 'len(v[0]) == 64 and v[0] == v[1]' "$(sha "$2")" "$(sha "$3")"; }
same_model "and so is the model, bit for bit" one.udm two.udm

# The same with 3 ranks, on 3 hosts and on one (a global batch of 63, 21 per rank).
base3=("${base[@]}" --batch 63 --epochs 2)
it_run onehost3 "$NETNS_LAUNCH" --exec "${NETNS_HOSTS[0]}" "$MPI" 3 "$WORKER" "${base3[@]}" --out one3.udm
it_expect_rc "3 ranks on one host exit 0" 0
cp "$OUT" out/one3.json
it_run threehosts "$NETNS_LAUNCH" --exec "${NETNS_HOSTS[0]}" \
    mpirun -np 3 --hostfile hosts3 "$WORKER" "${base3[@]}" --out three.udm
it_expect_rc "3 ranks on 3 hosts exit 0" 0
it_expect_eq "... with the per-epoch loss of 3 ranks on one host (2 epochs)" "$(losses out/one3.json)" \
    "$(it_json "$OUT" 'len([l for l in lines if l["event"] == "epoch_end"]) == 2 and [l["loss"] for l in lines if l["event"] == "epoch_end"]')"
same_model "... and its model, bit for bit" one3.udm three.udm

# ---- 2. a host's rank killed; a host's link cut ------------------------------------------------
# Starts a long 2-host run in the background (output in out/$1.{out,err}) and waits until it
# has finished an epoch, so that both ranks are in the training loop.
launch()
{
    OUT=$UD_TEST_SCRATCH/out/$1.out
    ERR=$UD_TEST_SCRATCH/out/$1.err
    IT_LAST_CMD="mpirun -np 2 --hostfile hosts updraft-worker --peer-timeout $PT ($1)"
    timeout 60 "$NETNS_LAUNCH" --exec "${NETNS_HOSTS[0]}" mpirun -np 2 --hostfile hosts \
        "$WORKER" "${base[@]}" --epochs 500 --peer-timeout "$PT" --out "$1.udm" >"$OUT" 2>"$ERR" &
    MPI_PID=$!
    local i
    for ((i = 0; i < 300; i++)); do
        grep -q '"event":"epoch_end"' "$OUT" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}
# Waits for the background run; RC its exit code, ELAPSED the seconds since $1.
reap()
{
    RC=0
    wait "$MPI_PID" || RC=$?
    ELAPSED=$(python3 -c "import time; print(round(time.time() - $1, 1))")
}

if launch lostrank; then
    pid=$(netns_pids 1 updraft-worker)
    it_expect_eq "the one worker in $H1 is rank 1" 1 \
        "$(tr '\0' '\n' <"/proc/$pid/environ" | sed -n 's/^OMPI_COMM_WORLD_RANK=//p')"
    # What $H1 connects to on host 0: mpirun's fixed port and rank 0's, as a firewall would allow.
    ports=$(ip netns exec "$H1" ss -tnH state established dst "$(netns_addr 0)" |
        awk '{print $NF}' | sed 's/.*://' | sort -n | tr '\n' ' ')
    it_expect_py "$H1 reaches host 0 on the fixed ports only ($NETNS_OOB_PORT, $NETNS_BTL_PORT+; got: $ports)" \
        'len(v[2].split()) >= 2 and all(p == v[0] or v[1] <= p < v[1] + 100 for p in map(int, v[2].split()))' \
        "$NETNS_OOB_PORT" "$NETNS_BTL_PORT" "$ports"
    T0=$(date +%s.%N)
    kill -KILL "$pid"
    reap "$T0"
    it_expect_py "rank 1 killed in $H1: the job ends non-zero within the peer timeout ($PT s; took ${ELAPSED} s)" \
        'v[0] not in (0, 124) and v[1] < v[2]' "$RC" "$ELAPSED" "$PT"
    it_expect_grep "mpirun names the rank, its pid and its host" "$ERR" "rank 1 with PID $pid on node $A1"
else
    it_fail "the run to kill reached an epoch's end" "$(tail -3 "$ERR" | tr '\n' '|')"
    kill "$MPI_PID" 2>/dev/null || true
    wait "$MPI_PID" || true
fi

if launch lostlink; then
    pid=$(netns_pids 1 updraft-worker)
    T0=$(date +%s.%N)
    netns_link 1 down
    TM=""
    for ((i = 0; i < 300; i++)); do
        if grep -q "missing: rank 1" "$ERR"; then
            TM=$(python3 -c "import time; print(round(time.time() - $T0, 1))")
            break
        fi
        kill -0 "$MPI_PID" 2>/dev/null || break
        sleep 0.1
    done
    reap "$T0"
    netns_link 1 up
    it_expect_py "link of $H1 cut: rank 0 gives up after the peer timeout ($PT s; said so after ${TM:-never} s)" \
        'v[0] != "" and v[0] < v[1] + 3' "$TM" "$PT"
    it_expect_grep "it names the rank, its pid and its host" "$ERR" "missing: rank 1 (pid $pid on $H1: no answer over the network"
    it_expect_py "and the job ends non-zero soon after (exit $RC after ${ELAPSED} s; TCP gives up in ~3 s)" \
        'v[0] not in (0, 124) and v[1] < v[2] + 15' "$RC" "$ELAPSED" "$PT"
else
    it_fail "the run to cut off reached an epoch's end" "$(tail -3 "$ERR" | tr '\n' '|')"
    kill "$MPI_PID" 2>/dev/null || true
    wait "$MPI_PID" || true
fi

it_finish
