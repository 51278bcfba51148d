#!/usr/bin/env bash
# tests/bench/agent_rss.sh — the device agent's peak memory, against the federated issue's goal
# (updating the reference mlp on 600 samples within 32 MB) and next to PyTorch doing the same
# update (one epoch, batch 32, SGD with momentum, one thread) in one process.
#
#   tests/bench/agent_rss.sh
# Exit status: 0 when the goal was met, 1 when not, 2 on a setup error.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=tests/bench/lib.bash
source tests/bench/lib.bash
[ -x "$bin/updraft-agent" ] || { echo "agent_rss.sh: build first" >&2; exit 2; }
work=$(mktemp -d /tmp/updraft-agent-rss.XXXXXX)
trap 'rm -rf "$work"' EXIT
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
# 600 test images as one device's labeled folder (PNG files), and an untrained reference mlp.
bench_agent_workload "$work"
ours=$("$bin/updraft-agent" update --model "$work/m.udm" --data "$work/dev/client-000" --epochs 1 \
    --batch 32 --out "$work/m2.udm" --json | tail -1 |
    $PY -c 'import json,sys; print(json.load(sys.stdin)["peak_rss_mb"])')
peer=none
if $PY -c 'import torch' 2>/dev/null; then
    peer=$($PY - <<'PYEOF'
import resource, torch, torch.nn as nn
torch.set_num_threads(1)
x = torch.rand(600, 784); y = torch.randint(0, 10, (600,))
m = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10))
o = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9); l = nn.CrossEntropyLoss()
for i in range(0, 600, 32):
    o.zero_grad(); l(m(x[i:i + 32]), y[i:i + 32]).backward(); o.step()
print("%.1f" % (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
PYEOF
)
fi
$PY - "$ours" "$peer" <<'PYEOF'
import sys
ours, peer = float(sys.argv[1]), sys.argv[2]
line = "peak RSS updating the mlp on 600 samples: updraft-agent %.1f MB" % ours
if peer != "none":
    line += ", PyTorch %.1f MB (tensors already in memory, no image decoding), ratio %.3f" % (float(peer), ours / float(peer))
print(line)
print("goal (<= 32 MB): %s" % ("met" if ours <= 32 else "NOT met"))
sys.exit(0 if ours <= 32 else 1)
PYEOF
