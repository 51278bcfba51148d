#!/usr/bin/env bash
# tests/bench/fed_ingest.sh — how fast the coordinator accepts device updates, and whether its
# memory stays flat as a round fills up (the federated issue's goals: >= 100 accepted mlp deltas
# per second with 32 concurrent uploaders on loopback; resident memory flat between 50 and 500
# updates in a round).
#
# Starts updraft-coordinator on loopback with a fresh state directory, registers a reference
# mlp (784-512-256-10: deltas of 535,818 floats, 2.1 MB each), enrols N devices (default 500),
# starts a one-round federation that samples all of them, and has tests/tools/fed_ingest.py
# post one update per device from C concurrent keep-alive connections (default 32). Every
# accepted update is checked, written and fsynced, and its row committed, before it is
# acknowledged. Then the round is aggregated (streaming) and published.
#
#   tests/bench/fed_ingest.sh [--devices N] [--concurrency C] [--http-threads T]
# Exit status: 0 when both goals were met, 1 when not, 2 on a usage or setup error.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=tests/bench/lib.bash
source tests/bench/lib.bash
devices=500 conc=32 threads=4
while [ $# -gt 0 ]; do
    case "$1" in
    --devices) devices=$2; shift ;;
    --concurrency) conc=$2; shift ;;
    --http-threads) threads=$2; shift ;;
    *) echo "usage: $0 [--devices N] [--concurrency C] [--http-threads T]" >&2; exit 2 ;;
    esac
    shift
done
GOAL_PER_SEC=100
bench_require_bins "$bin" updraft-coordinator updraft-worker
$PY -c 'import msgpack' 2>/dev/null || { echo "fed_ingest.sh: needs python3-msgpack" >&2; exit 2; }
train=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
[ -f "$train" ] || { echo "fed_ingest.sh: needs $train (dataset-fashion-mnist)" >&2; exit 2; }
export OPENBLAS_NUM_THREADS=1

work=$(mktemp -d /tmp/updraft-fed-ingest.XXXXXX)
coord_pid=""
cleanup() { [ -n "$coord_pid" ] && kill "$coord_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
port=$(free_port)
zport=$(free_port)
url=http://127.0.0.1:$port

"$bin/updraft-worker" --data "$train" --arch mlp --epochs 1 --max-samples 2000 --threads 1 \
    --quiet --out "$work/base.udm"
"$bin/updraft-coordinator" --state "$work/state" --http "127.0.0.1:$port" \
    --zmq "tcp://127.0.0.1:$zport" --http-threads "$threads" --quiet >"$work/coord.log" 2>&1 &
coord_pid=$!
for _ in $(seq 100); do curl -sf "$url/healthz" >/dev/null && break; sleep 0.1; done
tok=$(cat "$work/state/admin.token")
auth=(-H "Authorization: Bearer $tok")
curl -sf "${auth[@]}" --data-binary @"$work/base.udm" "$url/v1/models/bench/versions" >/dev/null
curl -sf "${auth[@]}" -d "{\"count\": $devices, \"name\": \"bench\"}" "$url/v1/devices" >"$work/devices.json"
$PY -c '
import json, sys
for d in json.load(open(sys.argv[1]))["devices"]:
    print(d["id"], d["token"])' "$work/devices.json" >"$work/tokens"
curl -sf "${auth[@]}" -d "{\"model\": \"bench\", \"rounds\": 1, \"clients_per_round\": $devices,
  \"min_clients\": $devices, \"round_deadline\": 3600, \"max_norm\": 100}" "$url/v1/federations" >/dev/null
# Every device asks for work once, so that all count as available.
while read -r id t; do
    curl -s -o /dev/null -H "Authorization: Bearer $t" "$url/v1/devices/$id/task"
done <"$work/tokens"
for _ in $(seq 100); do
    [ "$(curl -s "${auth[@]}" "$url/v1/rounds/1" | $PY -c 'import json,sys; print(json.load(sys.stdin)["state"])')" = OPEN ] && break
    sleep 0.2
done
rss0=$(awk '/VmRSS/ {print $2/1024}' "/proc/$coord_pid/status")
floats=$(curl -s "${auth[@]}" "$url/v1/rounds/1" | $PY -c 'import json,sys; print(json.load(sys.stdin)["delta_floats"])')

echo "coordinator: $threads REST threads; $devices devices; deltas of $floats floats; $conc uploaders"
$PY "$root/tests/tools/fed_ingest.py" "$url" "$work/tokens" 1 1 "$floats" "$coord_pid" \
    --concurrency "$conc" --marks "50,$devices" >"$work/ingest.json"
t0=$(date +%s.%N)
for _ in $(seq 600); do
    st=$(curl -s "${auth[@]}" "$url/v1/rounds/1" | $PY -c 'import json,sys; print(json.load(sys.stdin)["state"])')
    [ "$st" = PUBLISHED ] || [ "$st" = FAILED ] && break
    sleep 0.1
done
t1=$(date +%s.%N)
rss_end=$(awk '/VmRSS/ {print $2/1024}' "/proc/$coord_pid/status")
$PY - "$work/ingest.json" "$rss0" "$rss_end" "$st" "$t0" "$t1" "$devices" "$GOAL_PER_SEC" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
rss0, rss_end, st = float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
agg = float(sys.argv[6]) - float(sys.argv[5])
n, goal = sys.argv[7], float(sys.argv[8])
at = r["rss_mb_at"]
a50, an = at.get("50", float("nan")), at.get(n, float("nan"))
print("accepted %d of %s in %.2f s: %.1f updates/s (goal >= %.0f: ratio %.2f)  refused %s"
      % (r["accepted"], n, r["seconds"], r["per_sec"], goal, r["per_sec"] / goal, r["refused"] or "none"))
print("coordinator RSS: %.1f MB before, %.1f MB at 50 accepted, %.1f MB at %s (%+.1f MB), peak %.1f MB"
      % (rss0, a50, an, n, an - a50, r["hwm_mb"]))
print("round %s %.2f s after the last upload; RSS %.1f MB after aggregation" % (st, agg, rss_end))
flat = abs(an - a50) <= max(0.1 * a50, 16)
ok = r["per_sec"] >= goal and flat and st == "PUBLISHED"
print("goals: ingest %s, memory flat %s" % ("met" if r["per_sec"] >= goal else "NOT met",
                                             "yes" if flat else "NO"))
sys.exit(0 if ok else 1)
PYEOF
