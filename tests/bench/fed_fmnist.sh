#!/usr/bin/env bash
# tests/bench/fed_fmnist.sh — federated accuracy on Fashion-MNIST, the federated issue's goal:
# the reference mlp from scratch, 20 devices, 10 sampled per round, 1 local epoch, batch 32,
# lr 0.05 (momentum 0.9, the model's default): test accuracy after 30 rounds >= 0.84 with a
# Dirichlet(0.5) label split; the 2-shards-per-device split (McMahan et al.) is reported too.
#
# Everything is the real system on loopback: updraft dataset partition writes one labeled
# directory per device, updraft init makes the untrained model, updraft-coordinator runs the
# federation (scoring each published version on the 10,000 test images), and one
# updraft-agent daemon per device polls, downloads, updates and uploads. The peer is FedAvg
# simulated in one PyTorch process on exactly the same client data (fedavg_torch_peer.py),
# when python3-torch is installed (deploy/install-deps.sh --peers); the two are run one after
# the other and compared per round.
#
#   tests/bench/fed_fmnist.sh [--rounds R] [--devices K] [--per-round N] [--schemes "S1 S2"]
#                             [--no-peer]
# Exit status: 0 when the Dirichlet(0.5) run met the goal, 1 when not, 2 on a setup error.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=tests/bench/lib.bash
source tests/bench/lib.bash
rounds=30 devices=20 per=10 schemes="dirichlet:0.5 shards:2" peer=1 lr=0.05 batch=32 epochs=1
while [ $# -gt 0 ]; do
    case "$1" in
    --rounds) rounds=$2; shift ;;
    --devices) devices=$2; shift ;;
    --per-round) per=$2; shift ;;
    --schemes) schemes=$2; shift ;;
    --no-peer) peer=0 ;;
    *) echo "usage: $0 [--rounds R] [--devices K] [--per-round N] [--schemes \"S1 S2\"] [--no-peer]" >&2
       exit 2 ;;
    esac
    shift
done
GOAL=0.84
bench_require_bins "$bin" updraft updraft-coordinator updraft-agent
F=/usr/share/datasets/fashion-mnist
[ -f "$F/train-images-idx3-ubyte.gz" ] || { echo "fed_fmnist.sh: needs $F (dataset-fashion-mnist)" >&2; exit 2; }
if [ "$peer" = 1 ] && ! $PY -c 'import torch' 2>/dev/null; then
    echo "fed_fmnist.sh: python3-torch is not installed: the peer is skipped" \
         "(deploy/install-deps.sh --peers)" >&2
    peer=0
fi
export OPENBLAS_NUM_THREADS=1

work=$(mktemp -d /tmp/updraft-fed-fmnist.XXXXXX)
coord_pid=""
stop_all()
{
    pkill -f "updraft-agent run --coordinator $url" 2>/dev/null || true
    [ -n "$coord_pid" ] && kill "$coord_pid" 2>/dev/null
    wait 2>/dev/null || true
    coord_pid=""
}
trap 'stop_all; rm -rf "$work"' EXIT
port=$(free_port)
zport=$(free_port)
url=http://127.0.0.1:$port
export UPDRAFT_URL=$url

"$bin/updraft" init --arch mlp --data "$F/train-images-idx3-ubyte.gz" --seed 1 --out "$work/base.udm" >/dev/null
status=0
for scheme in $schemes; do
    tag=${scheme//[:.]/_}
    parts=$work/parts-$tag
    "$bin/updraft" dataset partition --data "$F/train-images-idx3-ubyte.gz" --clients "$devices" \
        --scheme "$scheme" --seed 1 --out "$parts" >/dev/null
    rm -rf "$work/state"
    "$bin/updraft-coordinator" --state "$work/state" --http "127.0.0.1:$port" \
        --zmq "tcp://127.0.0.1:$zport" --quiet >"$work/coord-$tag.log" 2>&1 &
    coord_pid=$!
    for _ in $(seq 100); do curl -sf "$url/healthz" >/dev/null && break; sleep 0.1; done
    export UPDRAFT_TOKEN_FILE=$work/state/admin.token
    "$bin/updraft" model push "$work/base.udm" --name fmnist-mlp >/dev/null
    "$bin/updraft" devices add --count "$devices" --name sim --out "$work/tokens" >/dev/null
    "$bin/updraft" fed start - >/dev/null <<SPEC
{"name": "fmnist-$tag", "model": "fmnist-mlp", "rounds": $rounds, "clients_per_round": $per,
 "min_clients": $per, "round_deadline": 600, "epochs": $epochs, "batch": $batch, "lr": $lr,
 "max_norm": 1000, "seed": 1, "eval": "$F/t10k-images-idx3-ubyte.gz"}
SPEC
    i=0
    t0=$(date +%s.%N)
    while read -r _id tok; do
        "$bin/updraft-agent" run --coordinator "$url" --token "$tok" \
            --model-pubkey "$work/state/signing.pub" \
            --data "$(printf '%s/client-%03d' "$parts" "$i")" --state "$work/agent-$tag-$i" \
            --poll 0.5 --quiet >"$work/agent-$tag-$i.log" 2>&1 &
        i=$((i + 1))
    done <"$work/tokens"
    "$bin/updraft" fed wait 1 --timeout 3600 >/dev/null || true
    t1=$(date +%s.%N)
    "$bin/updraft" --json fed show 1 >"$work/fed-$tag.json"
    stop_all
    if [ "$peer" = 1 ]; then
        $PY "$root/tests/bench/fedavg_torch_peer.py" "$parts" "$rounds" "$per" "$lr" "$batch" \
            "$epochs" 1 >"$work/peer-$tag.txt"
    fi
    $PY - "$work/fed-$tag.json" "$work/peer-$tag.txt" "$scheme" "$t0" "$t1" "$GOAL" "$rounds" <<'PYEOF' || status=1
import json, os, sys
fed = json.load(open(sys.argv[1]))
scheme, goal, rounds = sys.argv[3], float(sys.argv[6]), int(sys.argv[7])
secs = float(sys.argv[5]) - float(sys.argv[4])
peer = {}
if os.path.exists(sys.argv[2]):
    for line in open(sys.argv[2]):
        p = line.split()
        if p and p[0] == "round":
            peer[int(p[1])] = (float(p[3]), float(p[5]))
print("\n%s: %s, %d rounds, %s per round; updraft %.0f s wall%s"
      % (scheme, fed["state"], rounds, fed["spec"]["clients_per_round"], secs,
         "" if not peer else "; peer %.0f s (one process, no network)" % max(v[1] for v in peer.values())))
print("round  state      updates  version  updraft acc  peer acc")
last = None
for r in fed["rounds_detail"]:
    acc = r["eval_accuracy"]
    pa = peer.get(r["number"], (None, None))[0]
    print("%5d  %-9s  %7d  %7s  %11s  %8s" % (r["number"], r["state"], r["accepted"],
          r["published_version"] or "-", "%.4f" % acc if acc is not None else "-",
          "%.4f" % pa if pa is not None else "-"))
    if acc is not None:
        last = acc
pl = peer.get(rounds, (None,))[0]
line = "final test accuracy: updraft %.4f" % (last or 0)
if pl is not None:
    line += ", peer %.4f, ratio %.3f" % (pl, (last or 0) / pl)
print(line)
if scheme == "dirichlet:0.5":
    met = last is not None and last >= goal and fed["state"] == "SUCCEEDED"
    print("goal (>= %.2f after %d rounds): %s" % (goal, rounds, "met" if met else "NOT met"))
    sys.exit(0 if met else 1)
PYEOF
done
exit $status
