#!/usr/bin/env bash
# tests/bench/run.sh — updraft against PyTorch on the same machine, in the same run.
#
# Prints, for each figure the foundation issue names, our number, the peer's and the ratio:
#   throughput  mlp batch 128, mlp batch 32, cnn batch 128 (one BLAS thread each, side by side,
#               interleaved ROUNDS times, best of each), as samples/s of a training epoch
#   peak        fraction of the single-thread sgemm peak our mlp step reaches (bench_step)
#   memory      peak RSS training mlp on all of Fashion-MNIST
#   accuracy    test accuracy after 10 epochs, mlp and cnn (ours; --with-peer-accuracy also
#               trains the peer 10 epochs)
# Needs the peers: deploy/install-deps.sh --peers (PyTorch, NumPy).
#
#   tests/bench/run.sh [--quick] [--rounds N] [--skip-accuracy] [--with-peer-accuracy]
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=tests/bench/lib.bash
source tests/bench/lib.bash
rounds=2 quick=0 accuracy=1 peer_acc=0
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) quick=1 rounds=1 ;;
    --rounds) rounds=$2; shift ;;
    --skip-accuracy) accuracy=0 ;;
    --with-peer-accuracy) peer_acc=1 ;;
    *) echo "usage: $0 [--quick] [--rounds N] [--skip-accuracy] [--with-peer-accuracy]" >&2; exit 2 ;;
    esac
    shift
done
bench_build

export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
data=/usr/share/datasets/fashion-mnist
train=$data/train-images-idx3-ubyte.gz test=$data/t10k-images-idx3-ubyte.gz
peer=$(bench_peer torch_peer.py)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

field() { # field NAME < line  -> value of NAME=... or "NAME":...
    sed -n -E "s/.*[\"]?$1[\"]?[=:]([0-9.eE+-]+).*/\1/p" | tail -1
}
ours() { # ours ARCH BATCH EPOCHS [extra...] -> the summary line
    local arch=$1 batch=$2 epochs=$3
    shift 3
    build/bin/updraft-worker --data "$train" --test "$test" --arch "$arch" --batch "$batch" \
        --epochs "$epochs" --lr 0.05 --momentum 0.9 --threads 1 --validation none --json \
        --out "$out/m.udm" "$@" | tail -1
}
theirs() { # theirs ARCH BATCH EPOCHS -> the RESULT line
    $PY "$peer" "$1" "$3" "$2" 1 | grep '^RESULT'
}

printf '%-26s %12s %12s %8s %s\n' "figure" "updraft" "pytorch" "ratio" "goal"
throughput() { # throughput ARCH BATCH EPOCHS GOAL; leaves the best rates in best_u, best_p
    local u p
    best_u=0 best_p=0
    for _ in $(seq "$rounds"); do
        u=$(ours "$1" "$2" "$3" | field samples_per_sec)
        p=$(theirs "$1" "$2" "$3" | field samples_per_s)
        best_u=$(max "$best_u" "$u")
        best_p=$(max "$best_p" "$p")
    done
    printf '%-26s %12.0f %12.0f %8s %s\n' "$1 b$2 samples/s" "$best_u" "$best_p" \
        "$(ratio "$best_u" "$best_p")" ">= $4"
}
e=2
[ $quick -eq 1 ] && e=1
throughput mlp 128 $e 1.2
mlp_u=$best_u mlp_p=$best_p
throughput mlp 32 $e 1.5
throughput cnn 128 1 1.5

# The fraction of the single-thread sgemm peak each side's mlp b128 epoch reaches: the GEMM
# FLOPs a training sample needs (bench_step's count, the same for both) times samples/s.
step=$(UD_THREADS=1 build/bin/bench_step mlp 128 3)
peak=$(echo "$step" | field sgemm_peak_gflops)
fps=$(echo "$step" | awk '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
    END { print v["step_gflops"] * 1e9 / v["samples_per_s"] }')
frac() { awk -v r="$1" -v f="$fps" -v p="$peak" 'BEGIN { printf "%.3f", r * f / 1e9 / p }'; }
printf '%-26s %12s %12s %8s %s\n' "mlp b128 fraction of peak" "$(frac "$mlp_u")" \
    "$(frac "$mlp_p")" "" ">= 0.85 (sgemm peak $peak GFLOP/s, $(awk -v f="$fps" 'BEGIN { printf "%.2f", f / 1e6 }') MFLOP/sample)"

u=$(ours mlp 128 1 | field peak_rss_mb)
p=$(theirs mlp 128 1 | field peak_rss_mb)
printf '%-26s %12.0f %12.0f %8s %s\n' "mlp peak RSS MB" "$u" "$p" "$(ratio "$u" "$p")" "<= 150 MB"

if [ $accuracy -eq 1 ]; then
    ae=10
    [ $quick -eq 1 ] && ae=2
    for arch in mlp cnn; do
        goal=0.885
        [ $arch = cnn ] && goal=0.910
        u=$(ours $arch 128 $ae --schedule cosine | field test_accuracy)
        p="-"
        [ $peer_acc -eq 1 ] && p=$(theirs $arch 128 $ae | field test_acc)
        printf '%-26s %12s %12s %8s %s\n' "$arch test acc ($ae epochs)" "$u" "$p" "" ">= $goal"
    done
fi
