#!/usr/bin/env bash
# tests/build/cross.sh — the device agent cross-built for ARM and run under qemu-user
# (ctest: build_cross; docs/cross.md).
#
# Needs the sysroots of `deploy/install-deps.sh --cross` (tests/run.sh installs them); without
# them it says so and exits 0. With them:
#   - aarch64 with OpenBLAS and armhf without: the toolchain file alone configures the agent-only
#     build (warnings as errors), which builds ARM binaries of the agent and the library's unit
#     tests; ctest runs those tests through qemu (the emulator is in each test's command) and
#     they all pass;
#   - the emulated agent's one-shot `update` on the model and data of a native run, with the same
#     seed: without OpenBLAS (reference kernels on both sides) the armhf model is bit-identical
#     to a native one; with OpenBLAS, whose kernels sum in an order of their own per CPU, the
#     aarch64 model is within 1e-6 of the native one on every parameter (the update itself moves
#     them by about 1e-2), and the frozen layers are equal;
#   - the emulated aarch64 agent's daemon (`run`) against the real x86-64 coordinator: one round
#     of a federation, its update accepted and the version published.
# shellcheck source=SCRIPTDIR/../integration/lib/common.bash
source "$(dirname "$0")/../integration/lib/common.bash"
IT_NAME=build_cross
SYSROOTS=${UD_SYSROOT_BASE:-/opt/updraft-sysroot}
for arch in arm64 armhf; do
    if [ ! -f "$SYSROOTS/$arch/.updraft-sysroot" ]; then
        echo "build_cross: SKIPPED: no $arch sysroot in $SYSROOTS (deploy/install-deps.sh --cross installs it)"
        exit 77 # ctest: not run (SKIP_RETURN_CODE), never a pass
    fi
done
# shellcheck source=SCRIPTDIR/../integration/lib/coord.bash
source "$IT_LIB/coord.bash"
AGENT=$UD_BIN_DIR/updraft-agent
DIFF=$UD_BIN_DIR/../tests/udm_diff
it_require_bins "$WORKER" "$AGENT" "$UPDRAFT" "$DIFF"
IT_TIMEOUT=300 # builds and emulated runs; each step is bounded all the same
AGENT_PID=""
# shellcheck disable=SC2317 # run by the EXIT trap
cross_cleanup()
{
    [ -z "$AGENT_PID" ] || kill -KILL "$AGENT_PID" 2>/dev/null || true
    coord_cleanup
}
trap cross_cleanup EXIT

# cross ARCH TOOLCHAIN OPENBLAS MACHINE QEMU [SKIP]: configures and builds build-ARCH; checks the
# ELF machine and that the unit tests run, through qemu, and pass (all but the regex SKIP).
cross()
{
    local arch=$1 tc=$UD_SOURCE_DIR/cmake/toolchains/$2.cmake blas=$3 machine=$4 qemu=$5 skip=${6:-^$}
    it_run "configure_$arch" cmake -S "$UD_SOURCE_DIR" -B "build-$arch" -DCMAKE_TOOLCHAIN_FILE="$tc" \
        -DCMAKE_BUILD_TYPE=Release -DUD_WERROR=ON -DUD_WITH_OPENBLAS="$blas" \
        -DUD_BUILD_WORKER=OFF -DUD_BUILD_COORDINATOR=OFF -DUD_BUILD_CLI=OFF
    it_expect_rc "$arch: the toolchain file alone configures the agent-only build" 0
    it_expect_grep "$arch: OpenBLAS $blas in the configure summary" "$OUT" "OpenBLAS        $blas"
    it_run "build_$arch" cmake --build "build-$arch" -j"$(nproc)"
    it_expect_rc "$arch: the agent and the unit tests build (-Werror)" 0
    it_expect_eq "$arch: updraft-agent is an ELF for $machine" "$machine" \
        "$(readelf -h "build-$arch/bin/updraft-agent" 2>/dev/null | sed -n 's/^ *Machine: *//p')"
    it_expect_eq "$arch: ctest runs the tests through $qemu -L <sysroot>" true "$(
        cd "build-$arch" && ctest -N --show-only=json-v1 | python3 -c '
import json, os, sys
t = [x for x in json.load(sys.stdin)["tests"] if x["name"].startswith("test_")]
print(str(len(t) >= 13 and all(os.path.basename(x["command"][0]) == sys.argv[1]
      and x["command"][1:3] == ["-L", sys.argv[2]] for x in t)).lower())' "$qemu" "$SYSROOTS/$arch"
    )"
    it_run "ctest_$arch" bash -c "cd build-$arch && ctest -R '^test_' -E '$skip' --output-on-failure -j$(nproc)"
    it_expect_rc "$arch: the library's unit tests pass under $qemu${6:+ (all but $6)}" 0
    it_expect_grep "$arch: ... all of them" "$OUT" "100% tests passed"
}
t0=$SECONDS
cross arm64 aarch64-linux-gnu ON AArch64 qemu-aarch64
# test_model's gradient checks take half a minute under qemu-arm; on armhf the model maths is
# covered by the bit-identical update below instead.
cross armhf arm-linux-gnueabihf OFF ARM qemu-arm '^test_model$'
echo "     (two cross builds with their unit tests under qemu: $((SECONDS - t0)) s)"

# ---- the emulated agent's update against a native one -------------------------------------
fixture imgset imgs 60
it_run base "$WORKER" --data imgs --arch mlp --input 1,28,28 --epochs 1 --threads 1 --quiet --out m.udm
it_expect_rc "the native worker makes the model (reference mlp, 534019 parameters)" 0
upd() # LABEL RUNNER... : one update of m.udm, seed 7, into LABEL.udm
{
    local label=$1
    shift
    it_run "update_$label" "$@" update --model m.udm --data imgs --epochs 2 --batch 32 --lr 0.05 --seed 7 \
        --out "$label.udm" --json
    it_expect_rc "update on $label exits 0" 0
}
upd native "$AGENT"
upd arm64 qemu-aarch64 -L "$SYSROOTS/arm64" build-arm64/bin/updraft-agent
it_expect_grep "the emulated update reported its end" "$OUT" '"event":"completed"'
"$DIFF" native.udm arm64.udm >diff-arm64.json 2>&1 || true
"$DIFF" m.udm native.udm >diff-update.json 2>&1 || true
it_expect_py "OpenBLAS: aarch64 and x86-64 models within 1e-6 on every parameter" \
    'v[0] <= 1e-6 and v[1] == "true"' \
    "$(jq_ diff-arm64.json 'max(abs(j["min"]), abs(j["max"]))')" "$(jq_ diff-arm64.json 'j["frozen_equal"]')"
it_expect_py "... a bound far below what the update changed (over 1e-3)" 'v[0] > 1e-3' \
    "$(jq_ diff-update.json 'max(abs(j["min"]), abs(j["max"]))')"
echo "     (aarch64 vs x86-64 with OpenBLAS: $(cat diff-arm64.json))"

# Reference kernels on both sides: the same bits on every architecture.
it_run configure_ref cmake -S "$UD_SOURCE_DIR" -B build-ref -DCMAKE_BUILD_TYPE=Release -DUD_WITH_OPENBLAS=OFF \
    -DUD_BUILD_TESTS=OFF -DUD_BUILD_WORKER=OFF -DUD_BUILD_COORDINATOR=OFF -DUD_BUILD_CLI=OFF
it_run build_ref cmake --build build-ref -j"$(nproc)" --target updraft-agent
it_expect_rc "a native agent without OpenBLAS builds" 0
upd ref build-ref/bin/updraft-agent
upd armhf qemu-arm -L "$SYSROOTS/armhf" build-armhf/bin/updraft-agent
it_expect_eq "no OpenBLAS: the armhf model is bit-identical to the x86-64 one" \
    "$(sha256sum <ref.udm)" "$(sha256sum <armhf.udm)"
it_expect_eq "... and the training loss they print agrees" \
    "$(it_json out/update_ref.out 'last["loss"]')" "$(it_json out/update_armhf.out 'last["loss"]')"

# ---- the emulated agent's daemon against the real coordinator ------------------------------
coord_start "$PWD/state" || exit 1
it_run push "$UPDRAFT" model push m.udm --name mlp
it_expect_rc "the model pushed to the x86-64 coordinator" 0
it_run enrol "$UPDRAFT" devices add --count 1 --name arm --out tokens
it_expect_rc "one device enrolled" 0
cat >spec.json <<EOF
{"model": "mlp", "rounds": 1, "clients_per_round": 1, "min_clients": 1, "round_deadline": 120,
 "epochs": 1, "batch": 32, "lr": 0.05, "max_norm": 1000}
EOF
it_run start "$UPDRAFT" fed start spec.json
it_expect_rc "a one-round federation started" 0
read -r _id tok <tokens
timeout 120 qemu-aarch64 -L "$SYSROOTS/arm64" build-arm64/bin/updraft-agent run --coordinator "$URL" \
    --model-pubkey state/signing.pub --token "$tok" --data imgs --state agent --poll 0.2 --max-rounds 1 \
    --json >out/agent.jsonl 2>out/agent.log &
AGENT_PID=$!
wait_state /v1/federations/1 "SUCCEEDED FAILED" 120 || true
it_expect_eq "the federation SUCCEEDED on the emulated device's update" "SUCCEEDED 2 [1]" \
    "$(jq_ "$API_BODY" 'j["state"] + " " + str(j["current_version"]) + " " + str([r["accepted"] for r in j["rounds_detail"]])')"
RC=0
wait "$AGENT_PID" || RC=$?
AGENT_PID=""
it_expect_rc "the emulated agent exits 0 after its one round" 0
it_expect_eq "its log: round 1 accepted" '[1, "accepted"]' "$(it_json out/agent.jsonl '[last["round"], last["result"]]')"
curl -s "${READ_AUTH[@]}" -o v2.udm "$URL/v1/models/mlp/versions/2/file"
"$DIFF" m.udm v2.udm >diff-v2.json 2>&1 || true
it_expect_py "version 2 = the base moved by the aarch64 update" 'v[0] > 0' \
    "$(jq_ diff-v2.json 'max(abs(j["min"]), abs(j["max"]))')"
coord_stop
it_finish
