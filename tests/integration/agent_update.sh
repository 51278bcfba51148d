#!/usr/bin/env bash
# agent_update.sh — `updraft-agent update`: one on-device update of a .udm on a folder of
# labeled images. Events (text and JSON lines), the output model and the delta file, layers not
# marked updatable left bit for bit, overrides outside the model's ranges refused with the key,
# value and range, bad data and unknown classes refused naming them, SIGINT cancels with nothing
# written, peak RSS of the reference mlp on 600 samples within 32 MB, and no MPI or ZeroMQ in
# the binary.
# shellcheck source=SCRIPTDIR/lib/common.bash
source "$(dirname "$0")/lib/common.bash"
AGENT=$UD_BIN_DIR/updraft-agent
it_require_bins "$WORKER" "$AGENT" "$UPDRAFT"

# 3 classes x (198 grey 12x12 + 2 RGB 20x16) = 600 images, resized to 28x28 for the mlp.
fixture imgset imgs 198
cat >frozen.spec <<'SPEC'
input 1 28 28
flatten
dense 512 frozen
relu
dense 256
relu
dense 3
softmax
SPEC
it_run base_mlp "$WORKER" --data imgs --arch mlp --input 1,28,28 --epochs 1 --threads 1 --quiet --out mlp.udm
it_expect_rc "worker makes the reference mlp" 0
it_run base_frozen "$WORKER" --data imgs --arch frozen.spec --epochs 1 --threads 1 --quiet --out frozen.udm
it_expect_rc "worker makes an mlp whose first dense layer is frozen" 0

# Float32 parameter blobs of two .udm files (bin32 of params*4 bytes), and the delta file.
blobs()
{
    python3 - "$@" <<'PY'
import struct, sys
def params(path, n):
    b = open(path, "rb").read()
    tag = b"\xc6" + struct.pack(">I", n * 4)
    i = b.find(tag)
    assert i >= 0, "no parameter blob in " + path
    return b[i + 5:i + 5 + n * 4]
n, frozen = int(sys.argv[1]), int(sys.argv[2])
base, out, delta = params(sys.argv[3], n), params(sys.argv[4], n), open(sys.argv[5], "rb").read()
same_frozen = base[:frozen * 4] == out[:frozen * 4]
changed = base[frozen * 4:] != out[frozen * 4:]
u = struct.unpack("<%df" % (n - frozen), out[frozen * 4:])
b = struct.unpack("<%df" % (n - frozen), base[frozen * 4:])
want = b"".join(struct.pack("<f", x - y) for x, y in zip(u, b))
print(same_frozen, changed, len(delta) == (n - frozen) * 4, delta == want)
PY
}

# ---- JSON events, output model, delta ------------------------------------------------------
it_run update_json "$AGENT" update --model frozen.udm --data imgs --epochs 2 --lr 0.05 --batch 32 \
    --seed 3 --out frozen2.udm --delta frozen.delta --json
it_expect_rc "update --json exits 0" 0
it_expect_rc "every stdout line is JSON" "$(fixture jsonlines "$OUT" >/dev/null 2>&1; echo $?)"
it_expect_eq "events: training_begin, epoch_end x2, completed" \
    '["training_begin", "epoch_end", "epoch_end", "completed"]' "$(it_json "$OUT" '[l["event"] for l in lines]')"
it_expect_eq "training_begin: samples, epochs, batch, lr and seed as overridden" '[600, 2, 32, 0.05, 3]' \
    "$(it_json "$OUT" '[lines[0][k] for k in ("samples", "epochs", "batch", "lr", "seed")]')"
it_expect_eq "epoch_end: epochs numbered from 1, with loss and accuracy" '[1, 2]' \
    "$(it_json "$OUT" '[l["epoch"] for l in lines if l["event"] == "epoch_end" and l["loss"] > 0 and 0 <= l["accuracy"] <= 1]')"
it_expect_eq "completed: samples, final loss and accuracy = last epoch's, seconds, peak_rss_mb" true \
    "$(it_json "$OUT" 'last["samples"] == 600 and last["loss"] == lines[2]["loss"] and last["accuracy"] == lines[2]["accuracy"] and last["seconds"] > 0 and last["peak_rss_mb"] > 0')"
params=$("$UPDRAFT" info frozen.udm --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["params"])')
it_expect_eq "the frozen model has 534019 parameters" 534019 "$params"
it_expect_eq "delta_floats = updatable parameters (all but the frozen 784x512+512)" $((534019 - 401920)) \
    "$(it_json "$OUT" 'last["delta_floats"]')"
it_expect_eq "frozen layer bit-identical, updatable ones changed, delta = out - base (float32 LE)" \
    "True True True True" "$(blobs 534019 401920 frozen.udm frozen2.udm frozen.delta)"
it_run info2 "$UPDRAFT" info frozen2.udm --json
it_expect_rc "the output model reads back" 0
it_expect_eq "the output keeps the labels and records the update" '[["checker", "hstripes", "vstripes"], 600]' \
    "$(it_json "$OUT" '[last["labels"], last["metrics"]["update_samples"]]')"

# ---- text lines -----------------------------------------------------------------------------
it_run update_text "$AGENT" update --model mlp.udm --data imgs --out mlp2.udm
it_expect_rc "update (text) exits 0" 0
it_expect_grep "text: training begins" "$ERR" "training begins: 600 samples"
it_expect_grep "text: an epoch line with loss and accuracy" "$ERR" "epoch 1/1  loss"
it_expect_grep "text: the closing line names the output" "$ERR" "wrote mlp2.udm"
it_run update_quiet "$AGENT" update --model mlp.udm --data imgs --out mlp3.udm --quiet
it_expect_eq "--quiet prints nothing" "" "$(cat "$OUT" "$ERR")"

# ---- memory: the reference mlp on 600 samples -----------------------------------------------
it_run rss "$AGENT" update --model mlp.udm --data imgs --epochs 1 --out mlp4.udm --delta mlp4.delta --json
if ldd "$AGENT" | grep -q libasan; then
    # AddressSanitizer's shadow memory and quarantine double the figure: only its presence counts.
    it_expect_py "peak RSS reported (sanitizer build: the 32 MB goal is not checked)" '0 < v[0]' \
        "$(it_json "$OUT" 'last["peak_rss_mb"]')"
else
    it_expect_py "peak RSS of the reference mlp update on 600 samples <= 32 MB" '0 < v[0] <= 32' \
        "$(it_json "$OUT" 'last["peak_rss_mb"]')"
fi

# ---- refusals -------------------------------------------------------------------------------
it_run lr "$AGENT" update --model mlp.udm --data imgs --lr 5 --out bad.udm
it_expect_rc "--lr 5 (model allows [0, 1]) exits 2" 2
it_expect_grep "the refusal names key, value and range" "$ERR" "learningRate 5 is outside the model's allowed range [0, 1]"
it_run batch "$AGENT" update --model mlp.udm --data imgs --batch 100000 --out bad.udm
it_expect_rc "--batch 100000 exits 2" 2
it_expect_grep "the refusal names miniBatchSize and its range" "$ERR" "miniBatchSize 100000 is outside the model's allowed range [1, 65536]"
it_run epochs "$AGENT" update --model mlp.udm --data imgs --epochs 0 --out bad.udm
it_expect_rc "--epochs 0 exits 2" 2
it_run nodata "$AGENT" update --model mlp.udm --data no-such-dir --out bad.udm
it_expect_rc "a missing data directory exits 1" 1
it_expect_grep "the error names it" "$ERR" "no-such-dir"
mkdir empty
it_run emptydata "$AGENT" update --model mlp.udm --data empty --out bad.udm
it_expect_error "an empty data directory is an error"
it_expect_grep "the error names it" "$ERR" "empty"
cp -r imgs imgs_extra
mkdir imgs_extra/zigzag
cp imgs/checker/000.png imgs_extra/zigzag/
it_run unknown "$AGENT" update --model mlp.udm --data imgs_extra --out bad.udm
it_expect_rc "a class the model does not know exits 1" 1
it_expect_grep "the error names the class and the model's labels" "$ERR" "class 'zigzag' is not one of the model's labels (checker, hstripes, vstripes)"
it_run nomodel "$AGENT" update --model missing.udm --data imgs --out bad.udm
it_expect_rc "a missing model exits 1" 1
it_expect_grep "the error names it" "$ERR" "missing.udm"
it_expect_eq "no output was written by any refused run" "" "$(ls bad.udm 2>/dev/null)"

# ---- SIGINT: cancelled, nothing written -----------------------------------------------------
"$AGENT" update --model mlp.udm --data imgs --epochs 100000 --out cancel.udm --delta cancel.delta \
    >out/cancel.out 2>out/cancel.err &
pid=$!
sleep 1.5
it_signal "$pid" INT
ERR=out/cancel.err
it_expect_rc "SIGINT: exit 130" 130
it_expect_grep "SIGINT: says it was cancelled" "$ERR" "cancelled"
it_expect_eq "SIGINT: no model, no delta, no temporary file left" "" "$(ls cancel* .cancel* 2>/dev/null)"

# ---- what the binary links ------------------------------------------------------------------
libs=$(ldd "$AGENT")
it_expect_eq "ldd: no libmpi" "" "$(echo "$libs" | grep -i libmpi || true)"
it_expect_eq "ldd: no libzmq" "" "$(echo "$libs" | grep -i libzmq || true)"
it_expect_eq "ldd: libcurl and jansson are linked (the daemon)" 2 "$(echo "$libs" | grep -c -E "libcurl|libjansson")"

it_finish
