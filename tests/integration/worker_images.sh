#!/usr/bin/env bash
# worker_images.sh — a folder of class folders of PNGs (12x12 grey, plus 20x16 RGB ones that
# must be converted and resized) trains a tiny CNN from a spec file; `updraft eval` scores it,
# `updraft predict` labels single images, and a missing or corrupt file among them fails alone.
# shellcheck source=SCRIPTDIR/lib/common.bash
source "$(dirname "$0")/lib/common.bash"
it_require_bins "$WORKER" "$UPDRAFT"

# 3 classes x (40 grey 12x12 + 2 RGB 20x16): checker, hstripes, vstripes.
fixture imgset imgs 40
cp "$IT_LIB/tiny12.spec" tiny.spec
CLASSES='["checker", "hstripes", "vstripes"]'

# ---- training ---------------------------------------------------------------------------------
it_run train "$WORKER" --data imgs --arch tiny.spec --epochs 15 --batch 16 --lr 0.05 --seed 1 \
    --threads 1 --out img.udm --json
it_expect_rc "worker trains tiny.spec on the image folder" 0
# 126 images, automatic split: 10 % (50..199 samples) for validation.
it_expect_eq "summary: params of tiny.spec (40 conv + 435 dense)" 475 "$(it_json "$OUT" 'last["params"]')"
it_run info "$UPDRAFT" info img.udm --json
it_expect_eq "info: labels are the class folder names, sorted" "$CLASSES" "$(it_json "$OUT" 'last["labels"]')"
it_expect_eq "info: input and layers follow the spec file" \
    '[[1, 12, 12], "image", ["conv2d", "relu", "maxpool", "flatten", "dense", "softmax"], [4, 12, 12]]' \
    "$(it_json "$OUT" '[last["input"]["shape"], last["input"]["kind"], [l["kind"] for l in last["layers"]], last["layers"][0]["output"]]')"
it_expect_eq "info: training_samples = 126 - 10 % validation" 113 \
    "$(it_json "$OUT" 'last["metrics"]["training_samples"]')"

it_run eval "$UPDRAFT" eval img.udm --data imgs --json
it_expect_rc "updraft eval on the training folder exits 0" 0
it_expect_eq "eval: all 126 images read (RGB 20x16 ones converted, resized)" '[126, 0]' \
    "$(it_json "$OUT" '[last["samples"], last["skipped"]]')"
it_expect_py "eval: accuracy > 0.9 on its training data" 'v[0] > 0.9' "$(it_json "$OUT" 'last["accuracy"]')"

# ---- predict ----------------------------------------------------------------------------------
good=(imgs/checker/003.png imgs/hstripes/017.png imgs/vstripes/029.png
      imgs/checker/rgb1.png imgs/hstripes/rgb0.png imgs/vstripes/rgb1.png)
want="checker hstripes vstripes checker hstripes vstripes"
it_run predict "$UPDRAFT" predict img.udm "${good[@]}"
it_expect_rc "predict: 6 good files exit 0" 0
it_expect_eq "predict: one line per file, in order, with the file's path" "${good[*]}" "$(cut -f1 "$OUT" | tr '\n' ' ' | sed 's/ $//')"
it_expect_eq "predict: the right labels (grey 12x12 and RGB 20x16)" "$want" "$(cut -f2 "$OUT" | tr '\n' ' ' | sed 's/ $//')"
mapfile -t conf < <(cut -f3 "$OUT")
it_expect_py "predict: confidences in (1/3, 1]" 'len(v) == 6 and all(1/3 < c <= 1 for c in v)' "${conf[@]}"

it_run predict_json "$UPDRAFT" predict img.udm "${good[@]:0:3}" --json
it_expect_rc "predict --json exits 0" 0
it_expect_eq "predict --json: path and label per line" \
    '[["imgs/checker/003.png", "checker"], ["imgs/hstripes/017.png", "hstripes"], ["imgs/vstripes/029.png", "vstripes"]]' \
    "$(it_json "$OUT" '[[l["path"], l["label"]] for l in lines]')"
it_expect_eq "predict --json: confidence in (0, 1]" true "$(it_json "$OUT" 'all(0 < l["confidence"] <= 1 for l in lines)')"

# A missing file, a truncated PNG and a file that is not an image, between good ones.
head -c 60 imgs/hstripes/000.png >truncated.png
printf 'this is not an image\n' >notimage.png
it_run predict_bad "$UPDRAFT" predict img.udm imgs/checker/000.png missing.png truncated.png \
    imgs/vstripes/000.png notimage.png
it_expect_rc "predict with bad files exits 1" 1
it_expect_grep "predict: the error names the missing file" "$ERR" "missing.png"
it_expect_grep "predict: the error names the truncated PNG" "$ERR" "truncated.png"
it_expect_grep "predict: the error names the non-image" "$ERR" "notimage.png"
it_expect_eq "predict: the good files are still predicted" \
    "$(printf 'imgs/checker/000.png\tchecker\nimgs/vstripes/000.png\tvstripes')" "$(cut -f1,2 "$OUT")"
it_expect_nogrep "predict: nothing printed for the bad files" "$OUT" "missing.png"

# ---- preset with --input: grey images replicated to 3 channels -------------------------------
it_run train_rgb "$WORKER" --data imgs --arch mlp --input 3,12,12 --epochs 10 --batch 16 --lr 0.02 \
    --seed 1 --threads 1 --out rgb.udm --quiet
it_expect_rc "mlp --input 3,12,12 on the image folder" 0
it_run info_rgb "$UPDRAFT" info rgb.udm --json
it_expect_eq "info: input (3, 12, 12), first layer 432*512+512 params" '[[3, 12, 12], 221696]' \
    "$(it_json "$OUT" '[last["input"]["shape"], last["layers"][0]["params"]]')"
it_run eval_rgb "$UPDRAFT" eval rgb.udm --data imgs --json
it_expect_py "eval (3-channel mlp): accuracy > 0.9" 'v[0] > 0.9' "$(it_json "$OUT" 'last["accuracy"]')"
it_run predict_rgb "$UPDRAFT" predict rgb.udm imgs/vstripes/rgb0.png imgs/checker/010.png
it_expect_eq "predict (3-channel mlp): RGB and grey inputs" "vstripes checker" "$(cut -f2 "$OUT" | tr '\n' ' ' | sed 's/ $//')"

# ---- eval --skip-bad --------------------------------------------------------------------------
cp -r imgs imgs_bad
cp truncated.png imgs_bad/hstripes/zz-truncated.png
it_run eval_bad "$UPDRAFT" eval img.udm --data imgs_bad --json
it_expect_error "eval on a folder with a corrupt PNG fails"
it_expect_grep "eval: the error names the corrupt PNG" "$ERR" "imgs_bad/hstripes/zz-truncated.png"
it_run eval_skip "$UPDRAFT" eval img.udm --data imgs_bad --json --skip-bad
it_expect_rc "eval --skip-bad exits 0" 0
it_expect_eq "eval --skip-bad: 126 scored, 1 skipped" '[126, 1]' "$(it_json "$OUT" '[last["samples"], last["skipped"]]')"
it_expect_grep "eval --skip-bad: a warning names the file" "$ERR" "zz-truncated.png"

# ---- --max-samples on a class folder ----------------------------------------------------------
# 45 of 126 images, no validation: a subset should still hold every class, so the model learns
# all three. The loader keeps the first N files in class order (40 + 2 checker, 3 hstripes).
it_run train_max "$WORKER" --data imgs --arch tiny.spec --max-samples 45 --validation none \
    --epochs 30 --batch 8 --lr 0.05 --seed 1 --threads 1 --out max.udm --quiet
it_expect_rc "--max-samples 45 on the image folder trains" 0
it_run eval_max "$UPDRAFT" eval max.udm --data imgs --json
it_expect_py "--max-samples 45: the model still tells all 3 classes apart (accuracy > 0.8)" 'v[0] > 0.8' \
    "$(it_json "$OUT" 'last["accuracy"]')"

it_finish
