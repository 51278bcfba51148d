#!/usr/bin/env bash
# deploy/demo.sh — the README's main job on its embedded default: updraft's whole loop on one
# machine, on Fashion-MNIST (Debian's dataset-fashion-mnist).
#   1. The coordinator starts (SQLite state and model store in out/demo-state).
#   2. A job trains the reference CNN on the first --cluster-samples training images with
#      --np data-parallel ranks that the coordinator launches (mpirun); the model is registered
#      as version 1 and scored on the 10,000 test images.
#   3. The remaining training images are split among --devices simulated devices (a Dirichlet
#      label split: each holds its own mix of classes), one updraft-agent daemon per device.
#   4. A federation improves version 1 on the devices for --rounds rounds (--per-round devices
#      each, 1 local epoch): each round's FedAvg aggregate is published as the next version and
#      scored; the accuracy of each published version is printed as it lands.
# Installs what is missing and builds into build/ first.
#
#   deploy/demo.sh [--epochs N] [--arch mlp|cnn] [--np N] [--cluster-samples N] [--devices K]
#                  [--per-round N] [--rounds R]
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=2 arch=cnn np=2 cluster=12000 devices=8 per=4 rounds=5
while [ $# -gt 0 ]; do
    case "$1" in
    --epochs) epochs=$2; shift 2 ;;
    --arch) arch=$2; shift 2 ;;
    --np) np=$2; shift 2 ;;
    --cluster-samples) cluster=$2; shift 2 ;;
    --devices) devices=$2; shift 2 ;;
    --per-round) per=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "demo.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
    esac
done
deploy/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null

data=/usr/share/datasets/fashion-mnist
state=$PWD/out/demo-state
rm -rf "$state" out/demo-devices
mkdir -p out
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http=127.0.0.1:$(port)
zmq=tcp://127.0.0.1:$(port)
export UPDRAFT_URL=http://$http
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader,tcp
export OMPI_MCA_btl_base_warn_component_unused=0 OPENBLAS_NUM_THREADS=1
U=build/bin/updraft

build/bin/updraft-coordinator --state "$state" --http "$http" --zmq "$zmq" 2>out/demo-coordinator.log &
coord=$!
cleanup()
{
    pkill -f "updraft-agent run --coordinator $UPDRAFT_URL" 2>/dev/null || true
    kill -TERM "$coord" 2>/dev/null
    wait 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 100); do curl -sf "$UPDRAFT_URL/healthz" >/dev/null && break; sleep 0.1; done
export UPDRAFT_TOKEN_FILE=$state/admin.token
echo "coordinator: $UPDRAFT_URL (state in $state, log out/demo-coordinator.log)"

# ---- 2. the cluster job
spec=$(cat <<EOF
{"name": "fashion-$arch", "data": "$data/train-images-idx3-ubyte.gz",
 "test": "$data/t10k-images-idx3-ubyte.gz", "arch": "$arch", "epochs": $epochs, "batch": 128,
 "lr": 0.05, "momentum": 0.9, "schedule": "cosine", "max_samples": $cluster,
 "report_every": 50, "launch": {"np": $np}}
EOF
)
job=$($U job submit /dev/stdin <<<"$spec" | grep -o 'job-[0-9]*' | head -1)
echo "submitted $job: $arch on the first $cluster Fashion-MNIST training images, $epochs epochs, $np ranks"
$U job wait "$job"
$U model pull "fashion-$arch@latest" --out "out/fashion-$arch-v1.udm" >/dev/null
acc=$($U eval "out/fashion-$arch-v1.udm" --data "$data/t10k-images-idx3-ubyte.gz" --json |
    python3 -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["accuracy"])')
echo "version 1 (cluster, $cluster images): test accuracy $acc"

# ---- 3. the devices: the rest of the training images, one agent each
$U dataset partition --data "$data/train-images-idx3-ubyte.gz" --skip "$cluster" \
    --clients "$devices" --scheme dirichlet:1 --seed 1 --out out/demo-devices >/dev/null
$U devices add --count "$devices" --name phone --out out/demo-devices/tokens >/dev/null
echo "$devices devices enrolled, holding the other $((60000 - cluster)) images (Dirichlet(1) label split)"
echo "every version is signed by the coordinator ($($U keys show "$state/signing.pub" | sed 's/, public key.*//; s/^.*: //')); each agent verifies it before training"
i=0
while read -r _id tok; do
    build/bin/updraft-agent run --coordinator "$UPDRAFT_URL" --token "$tok" \
        --model-pubkey "$state/signing.pub" \
        --data "$(printf 'out/demo-devices/client-%03d' "$i")" --state "out/demo-devices/agent-$i" \
        --poll 0.5 --quiet 2>"out/demo-devices/agent-$i.log" &
    i=$((i + 1))
done <out/demo-devices/tokens

# ---- 4. the federation
fed=$($U fed start - <<EOF | grep -o '^[0-9]*'
{"name": "fashion-$arch-devices", "model": "fashion-$arch", "rounds": $rounds,
 "clients_per_round": $per, "min_clients": $per, "round_deadline": 600, "epochs": 1,
 "batch": 32, "lr": 0.01, "eval": "$data/t10k-images-idx3-ubyte.gz"}
EOF
)
echo "federation $fed: $rounds rounds of $per devices, 1 local epoch each"
$U fed wait "$fed" --progress
$U fed show "$fed"
