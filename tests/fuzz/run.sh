#!/usr/bin/env bash
# tests/fuzz/run.sh — builds the libFuzzer targets (build-fuzz/, clang, ASan + UBSan + LSan) and
# runs each one on a copy of its seed corpus; replays every reproducer of a fixed finding first.
#
#   tests/fuzz/run.sh [--seconds N | --runs N] [--regen-corpus] [target...]
#
#   --seconds N      run each target N seconds (default 10)
#   --runs N         run each target N executions instead
#   --regen-corpus   rewrite tests/fuzz/corpus/ with gen_corpus (the seeds), then run
#   target           fuzz_udm, udm, ... (default: every target)
#
# The build tree is build-fuzz/ (UD_FUZZ_BUILD overrides it: ctest's fuzz_smoke uses
# build/fuzz-build/); scratch copies and findings go under $TMPDIR.
#
# Prints one line per target: executions, executions/s, coverage (libFuzzer's cov: edges),
# features (ft:) and the corpus size at the end. Exit status 1 names the target and the input
# that crashed, leaked, hung or broke a sanitizer (the input is kept under $TMPDIR); 2 on a
# setup error. The repository's corpus is never written (except by --regen-corpus).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
mode=-max_total_time limit=10 regen=0
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
    --seconds) mode=-max_total_time limit=$2; shift ;;
    --runs) mode=-runs limit=$2; shift ;;
    --regen-corpus) regen=1 ;;
    -h | --help) sed -n '2,19p' "$0"; exit 0 ;;
    -*) echo "usage: $0 [--seconds N | --runs N] [--regen-corpus] [target...]" >&2; exit 2 ;;
    *) targets+=("fuzz_${1#fuzz_}") ;;
    esac
    shift
done
all=(fuzz_udm fuzz_seal fuzz_ckpt fuzz_arch fuzz_proto fuzz_update_msg fuzz_rest_json fuzz_agent_json fuzz_csv
    fuzz_image fuzz_idx)
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

command -v clang >/dev/null || { echo "run.sh: clang is not installed (deploy/install-deps.sh)" >&2; exit 2; }
build=${UD_FUZZ_BUILD:-$root/build-fuzz}
log=$(mktemp "${TMPDIR:-/tmp}/updraft-fuzz-build.XXXXXX")
if ! { CC=clang cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUD_FUZZ=ON &&
    cmake --build "$build" -j"$(nproc)"; } >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "run.sh: the fuzz build failed (log: $log)" >&2
    exit 2
fi
rm -f "$log"
if [ $regen -eq 1 ]; then
    rm -rf tests/fuzz/corpus
    "$build/fuzz/gen_corpus" tests/fuzz/corpus
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/updraft-fuzz.XXXXXX")
export OPENBLAS_NUM_THREADS=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=0
printf '%-18s %12s %10s %8s %8s %8s %s\n' target execs exec/s cov ft corpus result
for t in "${targets[@]}"; do
    bin=$build/fuzz/$t
    name=${t#fuzz_}
    [ -x "$bin" ] || { echo "run.sh: no target $t" >&2; exit 2; }
    corpus=$work/$name/corpus
    mkdir -p "$corpus" "$work/$name/artifacts"
    [ -d "tests/fuzz/corpus/$name" ] && cp tests/fuzz/corpus/"$name"/* "$corpus"/ 2>/dev/null || true
    out=$work/$name/log
    # Every reproducer of a fixed finding must now pass.
    regs=()
    [ -d "tests/fuzz/regressions/$name" ] && regs=(tests/fuzz/regressions/"$name"/*)
    if [ ${#regs[@]} -gt 0 ] && [ -e "${regs[0]}" ]; then
        if ! "$bin" -rss_limit_mb=2048 -timeout=10 "${regs[@]}" >"$out.regress" 2>&1; then
            bad=$(sed -n -E 's/^Running: (.*)$/\1/p' "$out.regress" | tail -1)
            printf '%-18s %12s %10s %8s %8s %8s %s\n' "$name" - - - - - "REGRESSION"
            echo "run.sh: $t fails on the reproducer $bad (log: $out.regress)" >&2
            failed=1
            continue
        fi
    fi
    rc=0
    "$bin" "$mode=$limit" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$work/$name/artifacts/" "$corpus" >"$out" 2>&1 || rc=$?
    execs=$(sed -n -E 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$out" | tail -1 || true)
    rate=$(sed -n -E 's/^stat::average_exec_per_sec: *([0-9]+)/\1/p' "$out" | tail -1 || true)
    last=$(grep -E '^#[0-9]+' "$out" | tail -1 || true)
    cov=$(echo "$last" | sed -n -E 's/.* cov: ([0-9]+).*/\1/p')
    ft=$(echo "$last" | sed -n -E 's/.* ft: ([0-9]+).*/\1/p')
    size=$(find "$corpus" -type f | wc -l)
    crash=$(find "$work/$name/artifacts" -type f | head -1)
    if [ $rc -ne 0 ] || [ -n "$crash" ]; then
        printf '%-18s %12s %10s %8s %8s %8s %s\n' "$name" "${execs:--}" "${rate:--}" "${cov:--}" \
            "${ft:--}" "$size" FINDING
        grep -E 'ERROR: |SUMMARY: |runtime error' "$out" | head -5 >&2 || true
        echo "run.sh: $t found a problem: input ${crash:-?} (log: $out)" >&2
        failed=1
    else
        printf '%-18s %12s %10s %8s %8s %8s %s\n' "$name" "${execs:--}" "${rate:--}" "${cov:--}" \
            "${ft:--}" "$size" ok
    fi
done
if [ $failed -eq 0 ]; then
    rm -rf "$work"
    exit 0
fi
echo "run.sh: inputs and logs kept in $work" >&2
exit 1
