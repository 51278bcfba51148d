#!/usr/bin/env bash
# tests/bench/agent_arch.sh — updraft-agent's binary size and peak memory on x86-64, aarch64 and
# armhf, each with and without OpenBLAS (docs/cross.md). The ARM agents run under qemu-user.
#
# Builds the agent alone (Release, no tests) per architecture and BLAS choice in
# build-arch/ARCH-BLAS/ (kept: a second run only relinks), then updates the reference mlp on
# 600 Fashion-MNIST images for one epoch, batch 32 (agent_rss.sh's workload), and prints a table:
#   size, stripped   the agent's file size and its size after strip (the ARCH's strip), KiB
#   libs             the shared libraries it loads (the dynamic loader's list, glibc included;
#                    under qemu, from the sysroot), MiB: what a device image must also hold
#   peak RSS         the update's peak RSS as the agent reports it (peak_rss_mb, VmHWM), MB.
#                    Under qemu-user that is the emulator's process: guest memory plus qemu's
#                    own (its code and translation cache), so it overstates a device's figure
#   help MB          peak RSS of `updraft-agent --help` through the same runner (qemu or none):
#                    the fixed part of the above that is not the update's work
#   seconds          the update's wall time (emulated: not a device's speed)
# Needs the sysroots of `deploy/install-deps.sh --cross` (the ARM rows are left out without them)
# and build/ (the updraft tool prepares the data and the model).
#
#   tests/bench/agent_arch.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=tests/bench/lib.bash
source tests/bench/lib.bash
SYSROOTS=${UD_SYSROOT_BASE:-/opt/updraft-sysroot}
work=$(mktemp -d /tmp/updraft-agent-arch.XXXXXX)
trap 'rm -rf "$work"' EXIT
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
bench_agent_workload "$work"

# row ARCH BLAS: builds build-arch/ARCH-BLAS and prints one table row.
row()
{
    local arch=$1 blas=$2 dir=build-arch/$1-$2 tc=() run=() strip=strip sysroot=""
    case "$arch" in
    aarch64)
        tc=(-DCMAKE_TOOLCHAIN_FILE="$root/cmake/toolchains/aarch64-linux-gnu.cmake")
        sysroot=$SYSROOTS/arm64 strip=aarch64-linux-gnu-strip
        run=(qemu-aarch64 -L "$sysroot")
        ;;
    armhf)
        tc=(-DCMAKE_TOOLCHAIN_FILE="$root/cmake/toolchains/arm-linux-gnueabihf.cmake")
        sysroot=$SYSROOTS/armhf strip=arm-linux-gnueabihf-strip
        run=(qemu-arm -L "$sysroot")
        ;;
    esac
    cmake -S . -B "$dir" "${tc[@]}" -DCMAKE_BUILD_TYPE=Release -DUD_WITH_OPENBLAS="$blas" -DUD_BUILD_TESTS=OFF \
        -DUD_BUILD_WORKER=OFF -DUD_BUILD_COORDINATOR=OFF -DUD_BUILD_CLI=OFF >"$work/cfg.log" 2>&1 ||
        { cat "$work/cfg.log" >&2; exit 2; }
    cmake --build "$dir" -j"$(nproc)" --target updraft-agent >"$work/build.log" 2>&1 ||
        { tail -20 "$work/build.log" >&2; exit 2; }
    local agent=$dir/bin/updraft-agent size stripped libs=0 lib base t0 line
    size=$(stat -c %s "$agent")
    "$strip" -o "$work/stripped" "$agent"
    stripped=$(stat -c %s "$work/stripped")
    # The loader lists what it loads; qemu's -E sets the variable for the guest only.
    if [ -n "$sysroot" ]; then
        "${run[0]}" -E LD_TRACE_LOADED_OBJECTS=1 "${run[@]:1}" "$agent" >"$work/libs"
    else
        LD_TRACE_LOADED_OBJECTS=1 "$agent" >"$work/libs"
    fi
    while read -r lib; do
        libs=$((libs + $(stat -L -c %s "$sysroot$lib")))
    done < <(awk '$2 == "=>" && $3 ~ /^\// {print $3}' "$work/libs")
    base=$(/usr/bin/time -f %M "${run[@]}" "$agent" --help 2>&1 >/dev/null | tail -1)
    t0=$(date +%s.%N)
    line=$("${run[@]}" "$agent" update --model "$work/m.udm" --data "$work/dev/client-000" --epochs 1 \
        --batch 32 --seed 1 --out "$work/m2.udm" --json | tail -1)
    $PY - "$arch" "$blas" "$size" "$stripped" "$libs" "$line" "$base" "$t0" "$(date +%s.%N)" <<'PYEOF'
import json, sys
arch, blas, size, stripped, libs, line, base, t0, t1 = sys.argv[1:]
j = json.loads(line)
print("%-8s %-9s %9.0f %9.0f %7.1f %9.1f %9.1f %8.2f" % (arch, "OpenBLAS" if blas == "ON" else "reference",
      int(size) / 1024, int(stripped) / 1024, int(libs) / 2**20, j["peak_rss_mb"], int(base) / 1024,
      float(t1) - float(t0)))
PYEOF
}

printf '%-8s %-9s %9s %9s %7s %9s %9s %8s\n' arch kernels "size KiB" stripped "libs MiB" "peak MB" "help MB" seconds
for blas in ON OFF; do
    row x86-64 "$blas"
done
for pair in aarch64:arm64 armhf:armhf; do
    arch=${pair%%:*} deb=${pair##*:}
    if [ ! -f "$SYSROOTS/$deb/.updraft-sysroot" ]; then
        echo "$arch: no sysroot in $SYSROOTS/$deb (deploy/install-deps.sh --cross)"
        continue
    fi
    for blas in ON OFF; do
        row "$arch" "$blas"
    done
done
echo "(ARM rows run under qemu-user: their peak RSS includes the emulator's own, as 'help MB' shows)"
