#!/usr/bin/env bash
# deploy/demo.sh — the README's main job on its embedded default: the coordinator (SQLite state
# and model store in out/demo-state) trains the reference CNN on Fashion-MNIST (Debian's
# dataset-fashion-mnist) with two data-parallel ranks it launches itself, registers the model,
# and the model is pulled back and scored: test accuracy and confusion matrix.
# Installs what is missing and builds into build/ first.
#
#   deploy/demo.sh [--epochs N] [--arch mlp|cnn] [--np N]
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=3 arch=cnn np=2
while [ $# -gt 0 ]; do
    case "$1" in
    --epochs) epochs=$2; shift 2 ;;
    --arch) arch=$2; shift 2 ;;
    --np) np=$2; shift 2 ;;
    -h | --help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "demo.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
    esac
done
deploy/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null

data=/usr/share/datasets/fashion-mnist
state=$PWD/out/demo-state
mkdir -p out
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http=127.0.0.1:$(port)
zmq=tcp://127.0.0.1:$(port)
export UPDRAFT_URL=http://$http
# mpirun as root needs these; more ranks than cores need --oversubscribe (the coordinator adds it).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader,tcp
export OMPI_MCA_btl_base_warn_component_unused=0

build/bin/updraft-coordinator --state "$state" --http "$http" --zmq "$zmq" 2>out/demo-coordinator.log &
coord=$!
trap 'kill -TERM $coord 2>/dev/null; wait $coord 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "$UPDRAFT_URL/healthz" >/dev/null && break; sleep 0.1; done
export UPDRAFT_TOKEN_FILE=$state/admin.token
echo "coordinator: $UPDRAFT_URL (state in $state, log out/demo-coordinator.log)"

spec=$(cat <<EOF
{"name": "fashion-$arch", "data": "$data/train-images-idx3-ubyte.gz",
 "test": "$data/t10k-images-idx3-ubyte.gz", "arch": "$arch", "epochs": $epochs, "batch": 128,
 "lr": 0.05, "momentum": 0.9, "schedule": "cosine", "report_every": 50,
 "launch": {"np": $np}}
EOF
)
job=$(build/bin/updraft --token-file "$UPDRAFT_TOKEN_FILE" job submit /dev/stdin <<<"$spec" | grep -o 'job-[0-9]*' | head -1)
echo "submitted $job: $arch on Fashion-MNIST, $epochs epochs, $np ranks"
build/bin/updraft job wait "$job"
build/bin/updraft model pull "fashion-$arch@latest" --out "out/fashion-$arch.udm"
build/bin/updraft eval "out/fashion-$arch.udm" --data "$data/t10k-images-idx3-ubyte.gz"
