#!/usr/bin/env bash
# deploy/demo.sh — the README's main job on its embedded default: train the reference CNN on
# Fashion-MNIST (Debian's dataset-fashion-mnist) and print the test accuracy and the confusion
# matrix. Installs what is missing and builds into build/ first.
#
#   deploy/demo.sh [extra updraft-worker options, e.g. --epochs 10 --arch mlp]
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
data=/usr/share/datasets/fashion-mnist
mkdir -p out
exec build/bin/updraft-worker \
    --data "$data/train-images-idx3-ubyte.gz" --test "$data/t10k-images-idx3-ubyte.gz" \
    --arch cnn --epochs 3 --batch 128 --lr 0.05 --momentum 0.9 --schedule cosine \
    --out out/fashion-cnn.udm "$@"
