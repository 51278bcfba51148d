#!/usr/bin/env bash
# tests/run.sh — the one command that runs updraft's tests on a fresh Debian machine.
#
# Installs what is missing (deploy/install-deps.sh --cross: with the ARM cross compilers, qemu-user
# and the agent's sysroots, for build_cross), configures build/ with warnings as errors,
# builds everything, and runs every test through ctest (unit tests, integration tests that drive
# the real programs, and the clang-format check). Extra arguments go to ctest (e.g. -R data).
#
#   tests/run.sh              the suite, as CI runs it
#   tests/run.sh --sanitize   the same in build-asan/ with AddressSanitizer + UBSan
set -euo pipefail
cd "$(dirname "$0")/.."

build=build
cmake_args=(-DCMAKE_BUILD_TYPE=Release -DUD_WERROR=ON)
if [ "${1:-}" = "--sanitize" ]; then
    shift
    build=build-asan
    cmake_args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DUD_WERROR=ON -DUD_SANITIZE=ON)
fi

deploy/install-deps.sh --cross
cmake -S . -B "$build" "${cmake_args[@]}" >/dev/null
cmake --build "$build" -j"$(nproc)"
cd "$build"
ctest --output-on-failure -j"$(nproc)" "$@"
