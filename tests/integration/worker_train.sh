#!/usr/bin/env bash
# worker_train.sh — updraft-worker trains the mlp preset on 3000 Fashion-MNIST samples and
# scores the full t10k set; its JSON lines, the model it writes (`updraft info`), `updraft eval`
# of that model, determinism by seed, and the text-mode report all have to agree.
# shellcheck source=SCRIPTDIR/lib/common.bash
source "$(dirname "$0")/lib/common.bash"
it_require_bins "$WORKER" "$UPDRAFT"

TRAIN=$FASHION/train-images-idx3-ubyte.gz
TEST=$FASHION/t10k-images-idx3-ubyte.gz
if [ ! -r "$TRAIN" ] || [ ! -r "$TEST" ]; then
    echo "$IT_NAME: Fashion-MNIST is not at $FASHION (set UD_FASHION_DIR)"
    exit 1
fi
FASHION_LABELS='["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]'
# --threads is fixed: the parameters depend on how the work is split (see determinism below).
train=(--data "$TRAIN" --test "$TEST" --arch mlp --epochs 2 --batch 64 --lr 0.05
       --max-samples 3000 --threads 2)

# ---- 1. JSON lines ----------------------------------------------------------------------------
it_run train "$WORKER" "${train[@]}" --seed 1 --out m1.udm --json
it_expect_rc "worker --json exits 0" 0
J=$OUT
if fixture jsonlines "$J" >out/jsonlines.msg; then
    it_pass "every stdout line is JSON"
else
    it_fail "every stdout line is JSON" "$(cat out/jsonlines.msg)"
fi
it_expect_eq "first line is training_begin" '"training_begin"' "$(it_json "$J" 'lines[0]["event"]')"
it_expect_eq "training_begin: params" 535818 "$(it_json "$J" 'lines[0]["params"]')"
it_expect_eq "epoch_end lines == --epochs, numbered from 0" '[0, 1]' \
    "$(it_json "$J" '[l["epoch"] for l in lines if l["event"] == "epoch_end"]')"
it_expect_eq "epoch_end: loss finite, accuracy in [0, 1], samples_per_sec > 0" true \
    "$(it_json "$J" 'all(l["loss"] is not None and math.isfinite(l["loss"]) and 0 <= l["accuracy"] <= 1 and l["samples_per_sec"] > 0 for l in lines if l["event"] == "epoch_end")')"
# --max-samples limits the training data only: the test set is scored whole.
it_expect_eq "evaluation: whole t10k (10000) scored despite --max-samples" 10000 \
    "$(it_json "$J" '[l for l in lines if l["event"] == "evaluation"][0]["samples"]')"

S=$(it_json "$J" 'last["event"]')
it_expect_eq "last line is the summary" '"summary"' "$S"
it_expect_eq "summary has the required keys" '[]' \
    "$(it_json "$J" '[k for k in ("samples_per_sec", "train_loss", "train_accuracy", "test_accuracy", "test_loss", "peak_rss_mb", "seconds", "epochs", "params", "out") if k not in last]')"
sps=$(it_json "$J" 'last["samples_per_sec"]')
loss=$(it_json "$J" 'last["train_loss"]')
acc=$(it_json "$J" 'last["test_accuracy"]')
rss=$(it_json "$J" 'last["peak_rss_mb"]')
secs=$(it_json "$J" 'last["seconds"]')
it_expect_py "summary: samples_per_sec > 0" 'v[0] > 0' "$sps"
it_expect_py "summary: train_loss finite and > 0" 'math.isfinite(v[0]) and v[0] > 0' "$loss"
it_expect_py "summary: test_accuracy > 0.6 (and <= 1)" '0.6 < v[0] <= 1' "$acc"
it_expect_py "summary: peak_rss_mb > 0" 'v[0] > 0' "$rss"
it_expect_py "summary: seconds > 0" 'v[0] > 0' "$secs"
it_expect_eq "summary: epochs, params" '[2, 535818]' "$(it_json "$J" '[last["epochs"], last["params"]]')"
it_expect_py "summary test_accuracy == the evaluation line's" 'abs(v[0] - v[1]) < 1e-9' "$acc" \
    "$(it_json "$J" '[l for l in lines if l["event"] == "evaluation"][0]["accuracy"]')"
if [ -s m1.udm ]; then it_pass "model file written"; else it_fail "model file written" "m1.udm missing or empty"; fi

# ---- 2. updraft info --------------------------------------------------------------------------
it_run info "$UPDRAFT" info m1.udm --json
it_expect_rc "updraft info --json exits 0" 0
I=$OUT
it_expect_eq "info: params" 535818 "$(it_json "$I" 'last["params"]')"
it_expect_eq "info: the 10 Fashion-MNIST labels, in order" "$FASHION_LABELS" "$(it_json "$I" 'last["labels"]')"
sha1=$(it_json "$I" 'last["params_sha256"]' | tr -d '"')
if [[ $sha1 =~ ^[0-9a-f]{64}$ ]]; then it_pass "info: params_sha256 is 64 hex digits"; else
    it_fail "info: params_sha256 is 64 hex digits" "got '$sha1'"; fi
it_expect_py "info: metrics.test_accuracy == summary's (±1e-6)" 'abs(v[0] - v[1]) <= 1e-6' \
    "$(it_json "$I" 'last["metrics"]["test_accuracy"]')" "$acc"
it_expect_py "info: metrics.train_loss == summary's (±1e-6)" 'abs(v[0] - v[1]) <= 1e-6' \
    "$(it_json "$I" 'last["metrics"]["train_loss"]')" "$loss"
# 3000 samples, the automatic split keeps 5 % (>= 200 samples) for validation: 2850 train.
it_expect_eq "info: metrics epochs and training_samples (3000 - 5 % validation)" '[2, 2850]' \
    "$(it_json "$I" '[last["metrics"]["epochs"], last["metrics"]["training_samples"]]')"
it_expect_eq "info: input (1, 28, 28), layers dense/relu/dense/relu/dense/softmax" \
    '[[1, 28, 28], ["dense", "relu", "dense", "relu", "dense", "softmax"]]' \
    "$(it_json "$I" '[last["input"]["shape"], [l["kind"] for l in last["layers"]]]')"
it_run info_text "$UPDRAFT" info m1.udm
it_expect_grep "info (text) shows the same params_sha256" "$OUT" "params_sha256  $sha1"

# ---- 3. updraft eval --------------------------------------------------------------------------
it_run eval "$UPDRAFT" eval m1.udm --data "$TEST" --json
it_expect_rc "updraft eval --json exits 0" 0
it_expect_py "eval: accuracy on t10k == summary's test_accuracy (±1e-6)" 'abs(v[0] - v[1]) <= 1e-6' \
    "$(it_json "$OUT" 'last["accuracy"]')" "$acc"
it_expect_eq "eval: 10000 samples, confusion counts sum to 10000" '[10000, 10000]' \
    "$(it_json "$OUT" '[last["samples"], sum(c["count"] for c in last["confusion"])]')"
it_expect_eq "eval: correct counts (confusion diagonal) == accuracy * 10000" \
    "$(it_json "$OUT" 'round(last["accuracy"] * 10000)')" \
    "$(it_json "$OUT" 'sum(c["count"] for c in last["confusion"] if c["true"] == c["predicted"])')"

# ---- 4. determinism ---------------------------------------------------------------------------
it_run train_again "$WORKER" "${train[@]}" --seed 1 --out m2.udm --quiet
it_run info2 "$UPDRAFT" info m2.udm --json
it_expect_eq "same seed, same arguments: same params_sha256" "$sha1" "$(it_json "$OUT" 'last["params_sha256"]' | tr -d '"')"
it_run train_seed2 "$WORKER" "${train[@]}" --seed 2 --out m3.udm --quiet
it_run info3 "$UPDRAFT" info m3.udm --json
sha3=$(it_json "$OUT" 'last["params_sha256"]' | tr -d '"')
if [[ $sha3 =~ ^[0-9a-f]{64}$ && $sha3 != "$sha1" ]]; then it_pass "another seed: another params_sha256"; else
    it_fail "another seed: another params_sha256" "expected a hash other than $sha1, got '$sha3'"; fi

# ---- 5. text mode -----------------------------------------------------------------------------
it_run text "$WORKER" "${train[@]}" --seed 1 --out m4.udm
it_expect_rc "worker (text mode) exits 0" 0
it_expect_grep "text: stdout says 'test accuracy'" "$OUT" "test accuracy"
it_expect_py "text: the printed test accuracy is the JSON run's (same seed)" 'abs(v[0] - v[1]) < 6e-5' \
    "$(sed -n 's/^test accuracy \([0-9.]*\).*/\1/p' "$OUT")" "$acc"
it_expect_grep "text: stdout has a confusion matrix" "$OUT" "confusion matrix"
# Each t10k class has 1000 images: every matrix row (label row) sums to 1000.
rows=$(awk '/^ ?[0-9]+ / { s = 0; for (i = NF - 10; i < NF; i++) s += $i; printf "%s%d", sep, s; sep = "," }' "$OUT")
it_expect_eq "text: 10 confusion rows of 1000 each" "1000,1000,1000,1000,1000,1000,1000,1000,1000,1000" "$rows"
it_expect_grep "text: rows are labelled with the class names" "$OUT" " 9 Ankle boot"
if fixture jsonlines "$OUT" >/dev/null 2>&1 && [ -s "$OUT" ]; then
    it_fail "text: stdout is not JSON" "text mode printed JSON lines"
else
    it_pass "text: stdout is not JSON"
fi

# ---- 6. cancellation --------------------------------------------------------------------------
# SIGTERM mid-training: exit 130 at once, a message, and no model (nor a temporary file) left.
mkdir cancel
"$WORKER" --data "$TRAIN" --arch mlp --epochs 100000 --max-samples 3000 --threads 1 \
    --out cancel/never.udm --json >out/cancel.out 2>out/cancel.err &
pid=$!
for _ in $(seq 100); do # until the first epoch has ended (at most 10 s)
    grep -q epoch_end out/cancel.out 2>/dev/null && break
    sleep 0.1
done
kill -TERM "$pid"
RC=0
t0=$(date +%s)
for _ in $(seq 200); do # a worker that ignores SIGTERM is killed after 20 s
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
kill -KILL "$pid" 2>/dev/null || true
wait "$pid" || RC=$?
ERR=out/cancel.err
IT_LAST_CMD="updraft-worker ... --epochs 100000 (SIGTERM after the first epoch)"
it_expect_rc "SIGTERM: exit 130" 130
it_expect_py "SIGTERM: stops within 10 s" 'v[1] - v[0] <= 10' "$t0" "$(date +%s)"
it_expect_grep "SIGTERM: says no model was written" "$ERR" "no model written"
it_expect_eq "SIGTERM: nothing left in the output folder" "" "$(ls -A cancel)"

it_finish
