#!/usr/bin/env bash
# tests/bench/dp.sh — data-parallel scaling on this machine, side by side with PyTorch DDP.
#
# For the reference mlp on all of Fashion-MNIST, global batch 256, one thread per rank:
#   updraft   -np 1 and -np 2 (mpirun), samples/s of the best epoch
#   PyTorch   DDP (gloo) world 1 and 2 (../shared/peers/torch_ddp_peer.py)
# interleaved ROUNDS times (best of each), then the scaling ratios, then the gradient allreduce
# next to a raw MPI_Allreduce of the same size (bench_allreduce), and how long each step waited
# for its gradients in the -np 2 runs.
# Needs the peers: deploy/install-deps.sh --peers (PyTorch, NumPy).
#
#   tests/bench/dp.sh [--rounds N] [--epochs E]
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=tests/bench/lib.bash
source tests/bench/lib.bash
rounds=3 epochs=3
while [ $# -gt 0 ]; do
    case "$1" in
    --rounds) rounds=$2; shift ;;
    --epochs) epochs=$2; shift ;;
    *) echo "usage: $0 [--rounds N] [--epochs E]" >&2; exit 2 ;;
    esac
    shift
done
bench_build

export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,vader,tcp OMPI_MCA_btl_base_warn_component_unused=0
train=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
peer=$(bench_peer torch_ddp_peer.py)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

jfield() { sed -n -E "s/.*\"$1\":([0-9.eE+-]+).*/\1/p" | tail -1; }
ours() { # ours NP -> summary line
    mpirun --oversubscribe -np "$1" build/bin/updraft-worker --data "$train" --arch mlp \
        --batch 256 --epochs "$epochs" --lr 0.05 --momentum 0.9 --threads 1 --validation none \
        --json --out "$out/m.udm" | tail -1
}
theirs() { $PY "$peer" "$1" "$epochs" 256 | grep '^RESULT'; }

u1=0 u2=0 p1=0 p2=0 wait2=1e9
for ((r = 1; r <= rounds; r++)); do
    s=$(ours 1); v=$(jfield samples_per_sec <<<"$s"); u1=$(max "$u1" "$v"); echo "round $r updraft -np 1: $v"
    s=$(ours 2); v=$(jfield samples_per_sec <<<"$s"); u2=$(max "$u2" "$v")
    w=$(awk -v a="$(jfield grad_sync_seconds <<<"$s")" -v b="$(jfield seconds <<<"$s")" 'BEGIN { printf "%.3f", a / b }')
    wait2=$(awk -v a="$wait2" -v b="$w" 'BEGIN { print (b < a ? b : a) }')
    echo "round $r updraft -np 2: $v (share of the run in grad_sync: $w)"
    v=$(theirs 1 | sed -E 's/.*samples_per_s=([0-9.]+).*/\1/'); p1=$(max "$p1" "$v"); echo "round $r pytorch DDP world 1: $v"
    v=$(theirs 2 | sed -E 's/.*samples_per_s=([0-9.]+).*/\1/'); p2=$(max "$p2" "$v"); echo "round $r pytorch DDP world 2: $v"
done
echo
printf '%-34s %12s %12s\n' "mlp, global batch 256, samples/s" "updraft" "pytorch DDP"
printf '%-34s %12.0f %12.0f\n' "1 process" "$u1" "$p1"
printf '%-34s %12.0f %12.0f\n' "2 processes" "$u2" "$p2"
printf '%-34s %12s %12s   (goal: updraft >= 1.8)\n' "scaling (2 / 1)" "$(ratio "$u2" "$u1")" "$(ratio "$p2" "$p1")"
printf '%-34s %12s\n' "updraft 2 vs pytorch 2" "$(ratio "$u2" "$p2")"
echo
echo "gradient allreduce (2 ranks): updraft's ring next to MPI_Allreduce"
mpirun --oversubscribe -np 2 build/bin/bench_allreduce
