#!/usr/bin/env bash
# worker_csv.sh — tabular data: a CSV of 2 features and 3 string labels (three separable
# clusters) trains a small dense network from a spec file; the labels are the CSV's strings,
# a held-out CSV scores the same through --test and `updraft eval`, and the CSV dialect
# (label column anywhere or last, quotes, CRLF, BOM) does not change what is learned.
# shellcheck source=SCRIPTDIR/lib/common.bash
source "$(dirname "$0")/lib/common.bash"
it_require_bins "$WORKER" "$UPDRAFT"

fixture csv train.csv 300 1 # header x,label,y: the label column is in the middle
fixture csv test.csv 150 2
cat >tab.spec <<'EOF'
input 2 1 1
dense 16
relu
dense 3
softmax
EOF
LABELS='["east", "north", "south-west"]'
args=(--arch tab.spec --epochs 30 --batch 16 --lr 0.05 --seed 3 --threads 1)

it_run train "$WORKER" --data train.csv --test test.csv "${args[@]}" --out csv.udm --json
it_expect_rc "worker trains on the CSV" 0
acc=$(it_json "$OUT" 'last["test_accuracy"]')
it_expect_py "summary: test_accuracy > 0.9 on the held-out CSV" 'v[0] > 0.9' "$acc"
it_expect_py "summary: train_loss finite, < 0.5" 'math.isfinite(v[0]) and v[0] < 0.5' "$(it_json "$OUT" 'last["train_loss"]')"
it_expect_eq "evaluation line: 150 test rows, the CSV's label strings" "[150, $LABELS]" \
    "$(it_json "$OUT" '[[l["samples"], l["labels"]] for l in lines if l["event"] == "evaluation"][0]')"

it_run info "$UPDRAFT" info csv.udm --json
it_expect_eq "info: labels are the CSV's label strings, sorted" "$LABELS" "$(it_json "$OUT" 'last["labels"]')"
it_expect_eq "info: tabular input (2, 1, 1), 99 params" '[[2, 1, 1], "tabular", 99]' \
    "$(it_json "$OUT" '[last["input"]["shape"], last["input"]["kind"], last["params"]]')"
it_expect_eq "info: 285 training rows (300 - 5 % validation)" 285 "$(it_json "$OUT" 'last["metrics"]["training_samples"]')"
sha=$(it_json "$OUT" 'last["params_sha256"]')

it_run eval_train "$UPDRAFT" eval csv.udm --data train.csv --json
it_expect_py "eval: accuracy > 0.9 on the training CSV" 'v[0] > 0.9' "$(it_json "$OUT" 'last["accuracy"]')"
it_expect_eq "eval: 300 rows, per-class labels" "[300, $LABELS]" \
    "$(it_json "$OUT" '[last["samples"], [c["label"] for c in last["classes"]]]')"
it_run eval_test "$UPDRAFT" eval csv.udm --data test.csv --json
it_expect_py "eval on test.csv == the summary's test_accuracy" 'abs(v[0] - v[1]) <= 1e-6' \
    "$(it_json "$OUT" 'last["accuracy"]')" "$acc"

# A test set with two of the three classes, in another order: scored against the model's labels.
{ head -n1 test.csv; grep -v -e ',east,' -e '^x,' test.csv | sort -r; } >subset.csv
it_run eval_subset "$UPDRAFT" eval csv.udm --data subset.csv --json
it_expect_rc "eval on a 2-class subset exits 0" 0
it_expect_eq "eval on a subset: 100 rows, none true 'east'" '[100, 0]' \
    "$(it_json "$OUT" '[last["samples"], sum(c["count"] for c in last["confusion"] if c["true"] == "east")]')"
it_expect_py "eval on a subset: accuracy > 0.9" 'v[0] > 0.9' "$(it_json "$OUT" 'last["accuracy"]')"

# A label the model does not know.
sed '6s/,north,/,upward,/' test.csv >unknown.csv
it_run eval_unknown "$UPDRAFT" eval csv.udm --data unknown.csv
it_expect_error "eval with an unknown label: error exit"
it_expect_grep "eval with an unknown label: names it" "$ERR" '"upward"'

# The same data in another dialect: label column last under another name, quoted labels,
# CRLF line ends, a UTF-8 BOM. Same rows, same seed: the very same parameters.
python3 - <<'EOF'
import csv
rows = list(csv.reader(open("train.csv")))
with open("dialect.csv", "w", newline="") as f:
    f.write("\ufeff")
    f.write("x,y,class\r\n")
    for x, lab, y in rows[1:]:
        f.write('%s, %s,"%s"\r\n' % (x, y, lab))
EOF
it_run train_dialect "$WORKER" --data dialect.csv "${args[@]}" --out dialect.udm --quiet
it_expect_rc "worker trains on the CRLF/BOM/quoted CSV" 0
it_run info_dialect "$UPDRAFT" info dialect.udm --json
it_expect_eq "dialect: same labels (last column when there is no 'label')" "$LABELS" "$(it_json "$OUT" 'last["labels"]')"
it_expect_eq "dialect: same rows and seed give the same params_sha256" "$sha" "$(it_json "$OUT" 'last["params_sha256"]')"

# Adam with a cosine schedule learns it too, and the model records the choice.
it_run train_adam "$WORKER" --data train.csv --arch tab.spec --epochs 20 --batch 32 --optimizer adam \
    --lr 0.01 --schedule cosine --seed 3 --threads 1 --out adam.udm --json
it_expect_rc "adam + cosine: exit 0" 0
it_expect_py "adam + cosine: the learning rate decays over the epochs" 'v[0] > v[1]' \
    "$(it_json "$OUT" '[l["learning_rate"] for l in lines if l["event"] == "epoch_end"][0]')" \
    "$(it_json "$OUT" '[l["learning_rate"] for l in lines if l["event"] == "epoch_end"][-1]')"
it_run eval_adam "$UPDRAFT" eval adam.udm --data test.csv --json
it_expect_py "adam + cosine: accuracy > 0.9 on test.csv" 'v[0] > 0.9' "$(it_json "$OUT" 'last["accuracy"]')"
it_run info_adam "$UPDRAFT" info adam.udm --json
it_expect_eq "adam: update defaults record optimizer and lr" '["adam", 0.01]' \
    "$(it_json "$OUT" '[last["update_defaults"]["optimizer"], last["update_defaults"]["learningRate"]["value"]]')"

it_finish
