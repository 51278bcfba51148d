#!/usr/bin/env bash
# tests/bench/fuzz.sh — every libFuzzer target a million executions (issue 6, "Trust": each target
# >= 1,000,000 executions with no finding), with the rate each reaches.
#
#   tests/bench/fuzz.sh [--runs N] [target...]
#
# Builds build-fuzz/ (clang, ASan + UBSan + LSan; tests/fuzz/run.sh) and prints one line per
# target: executions, executions/s, coverage (libFuzzer's cov: edges), corpus size at the end
# and findings (0, or 1 with the input named on stderr). Takes about 10 minutes on one core.
# Exit status: 0 when no target found anything, 1 otherwise, 2 on a setup error.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=1000000
args=()
while [ $# -gt 0 ]; do
    case "$1" in
    --runs) runs=$2; shift ;;
    -h | --help) sed -n '2,10p' "$0"; exit 0 ;;
    -*) echo "usage: $0 [--runs N] [target...]" >&2; exit 2 ;;
    *) args+=("$1") ;;
    esac
    shift
done
export TMPDIR=${TMPDIR:-/tmp}
start=$(date +%s)
rc=0
out=$(tests/fuzz/run.sh --runs "$runs" ${args[@]+"${args[@]}"}) || rc=$?
[ $rc -eq 2 ] && exit 2
printf '%-12s %10s %9s %6s %7s %8s\n' target execs exec/s cov corpus findings
echo "$out" | awk 'NR > 1 {
    f = ($7 == "ok") ? 0 : 1
    printf "%-12s %10s %9s %6s %7s %8d\n", $1, $2, $3, $4, $6, f
}'
echo "($(($(date +%s) - start)) s; $runs executions a target, tests/fuzz/run.sh --runs $runs)"
exit $rc
