#!/usr/bin/env bash
# tests/bench/multihost_allreduce.sh — the gradient allreduce between two "hosts": updraft's ring
# (worker_dist, as the worker's gradient buckets use it) beside OpenMPI's own MPI_Allreduce,
# one rank in each of two network namespaces joined by veth pairs through a bridge
# (tests/integration/lib/netns.bash), launched by mpirun with a hostfile through the namespace
# launch agent, TCP only (btl self,tcp on the hosts' subnet). Prints bench_allreduce's table
# (time per call, GB/s, ratio MPI time / ours: above 1 means ours is faster), the bytes that
# crossed the link, and the same table for two ranks on one host (shared memory) beside it.
# Needs root and a build (build/bin/bench_allreduce).
#
#   tests/bench/multihost_allreduce.sh [--rate RATE] [FLOATS...]
#     --rate RATE   also shape each host's link to RATE (tc tbf, e.g. 1gbit, 10gbit) and run again
#     FLOATS        sizes to reduce (default bench_allreduce's: the mlp's gradients, 1, 4, 16 MiB)
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=tests/bench/lib.bash
source tests/bench/lib.bash
# shellcheck source=tests/integration/lib/netns.bash
source tests/integration/lib/netns.bash
rate=""
while [ $# -gt 0 ]; do
    case "$1" in
    --rate) rate=$2; shift ;;
    -*) echo "usage: $0 [--rate RATE] [FLOATS...]" >&2; exit 2 ;;
    *) break ;;
    esac
    shift
done
bench_require_bins "$bin" bench_allreduce
export OPENBLAS_NUM_THREADS=1

out=$(mktemp -d)
trap 'netns_down; rm -rf "$out"' EXIT
netns_up ud-bench- 10.231.15 2 # keeps the trap above (it starts with netns_down)
netns_mpi_env
netns_hostfile "$out/hosts" 1
rx() { ip -n "${NETNS_HOSTS[1]}" -s -j link show ud0 | $PY -c 'import json,sys; print(json.load(sys.stdin)[0]["stats64"]["rx"]["bytes"])'; }

across()
{
    local r0 r1
    r0=$(rx)
    netns_exec 0 timeout 600 mpirun -np 2 --hostfile "$out/hosts" "$bin/bench_allreduce" "$@"
    r1=$(rx)
    echo "into ${NETNS_HOSTS[1]} over the link: $(awk -v a="$r0" -v b="$r1" 'BEGIN { printf "%.2f GB", (b - a) / 1e9 }')"
}

echo "== 2 ranks on 2 hosts (netns + veth + bridge, TCP), mpirun --hostfile"
across "$@"
if [ -n "$rate" ]; then
    for i in 0 1; do
        ip netns exec "${NETNS_HOSTS[$i]}" tc qdisc add dev ud0 root tbf rate "$rate" burst 256kb latency 50ms
    done
    echo
    echo "== the same, each host's link shaped to $rate (tc tbf)"
    across "$@"
fi
echo
echo "== 2 ranks on one host (shared memory), for comparison"
netns_exec 0 env OMPI_MCA_btl=self,vader,tcp timeout 600 mpirun --oversubscribe -np 2 \
    "$bin/bench_allreduce" "$@"
