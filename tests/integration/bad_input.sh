#!/usr/bin/env bash
# bad_input.sh — bad data, bad models and bad arguments: every case must end in an error exit
# (1 or 2; never a signal, never a hang: each run is under `timeout 60`) with a message on stderr
# that starts with the program's name and names the file (and line, for CSV and spec files).
# shellcheck source=SCRIPTDIR/lib/common.bash
source "$(dirname "$0")/lib/common.bash"
it_require_bins "$WORKER" "$UPDRAFT"

# expect_failure NAME CODE TEXT... — after it_run: exit CODE ("1|2" for either), stderr begins
# with the program's prefix, and contains every TEXT (case-insensitive).
expect_failure()
{
    local name=$1 code=$2 t prog
    shift 2
    if [ "$code" = "1|2" ]; then it_expect_error "$name: error exit"; else it_expect_rc "$name: exit $code" "$code"; fi
    prog=$(basename "${IT_LAST_CMD%% *}")
    local first
    first=$(head -n1 "$ERR")
    if [[ $first == "$prog: "* ]]; then
        for t in "$@"; do
            if ! grep -qiF -- "$t" "$ERR"; then
                it_fail "$name: message" "expected stderr to mention '$t', got: $(head -c 300 "$ERR" | tr '\n' '|')"
                return
            fi
        done
        it_pass "$name: message names $(printf "'%s' " "$@")"
    else
        it_fail "$name: message" "expected stderr to start with '$prog: ', got: '$first'"
    fi
}

# --- fixtures: a small image folder, a CSV, a spec file, small IDX sets, two models
fixture imgset imgs 8
cp "$IT_LIB/tiny12.spec" tiny.spec
printf 'input 2 1 1\ndense 16\nrelu\ndense 3\nsoftmax\n' >tab.spec
fixture csv c.csv 300 1
img_args=(--arch tiny.spec --epochs 1 --batch 8 --threads 1 --seed 1)
csv_args=(--arch tab.spec --epochs 1 --batch 16 --threads 1 --seed 1)
it_run mk_img_model "$WORKER" --data imgs "${img_args[@]}" --out img.udm --quiet
it_run mk_csv_model "$WORKER" --data c.csv "${csv_args[@]}" --out csv.udm --quiet
if [ -s img.udm ] && [ -s csv.udm ]; then it_pass "fixture models trained"; else
    it_fail "fixture models trained" "img.udm or csv.udm missing"; fi

# ================================================================ updraft-worker: data sources
it_run no_data "$WORKER" --data does/not/exist "${img_args[@]}" --out x.udm
expect_failure "missing --data path" 1 "does/not/exist" "no such file"
if [ -e x.udm ]; then it_fail "missing --data path: no model written" "x.udm exists"; else
    it_pass "missing --data path: no model written"; fi

# A corrupt PNG (truncated after 60 bytes) in a class folder.
cp -r imgs corrupt
head -c 60 imgs/checker/000.png >corrupt/hstripes/bad.png
it_run corrupt_png "$WORKER" --data corrupt "${img_args[@]}" --out x.udm
expect_failure "corrupt PNG in a class folder" 1 "corrupt/hstripes/bad.png"
it_run corrupt_skip "$WORKER" --data corrupt "${img_args[@]}" --out skip.udm --skip-bad --json
it_expect_rc "corrupt PNG with --skip-bad: trains (exit 0)" 0
it_expect_grep "corrupt PNG with --skip-bad: a warning names it" "$ERR" "warning: corrupt/hstripes/bad.png"
it_run corrupt_skip_info "$UPDRAFT" info skip.udm --json
# 30 good images (3 x (8 + 2)), 30 < 50: the automatic split keeps none for validation.
it_expect_eq "corrupt PNG with --skip-bad: the 30 good images trained" 30 \
    "$(it_json "$OUT" 'last["metrics"]["training_samples"]')"

cp -r imgs withempty
mkdir withempty/nothing
it_run empty_class "$WORKER" --data withempty "${img_args[@]}" --out x.udm
expect_failure "empty class folder" 1 "withempty/nothing" "empty"

mkdir noclasses
it_run no_classes "$WORKER" --data noclasses "${img_args[@]}" --out x.udm
expect_failure "folder without class folders" 1 "noclasses"

# IDX: 20 images of 4x4, 19 labels.
fixture idx mism 20 4 4 19 3
it_run idx_count "$WORKER" --data mism-images-idx3-ubyte --arch mlp --epochs 1 --threads 1 --out x.udm
expect_failure "IDX labels count != images count" 1 "mism-images-idx3-ubyte" "mism-labels-idx1-ubyte" "20" "19"

# IDX gz cut in the middle of the compressed pixels.
fixture idx whole 20 4 4 20 3 gz
head -c 200 whole-images-idx3-ubyte.gz >cut-images-idx3-ubyte.gz
cp whole-labels-idx1-ubyte.gz cut-labels-idx1-ubyte.gz
it_run idx_trunc "$WORKER" --data cut-images-idx3-ubyte.gz --arch mlp --epochs 1 --threads 1 --out x.udm
expect_failure "truncated IDX .gz" 1 "cut-images-idx3-ubyte.gz"
it_expect_py "truncated IDX .gz: says it ends early / is truncated" \
    '"ends early" in v[0] or "truncated" in v[0]' "$(cat "$ERR")"

# IDX whose header claims 50000 images but holds 20 (uncompressed).
python3 - <<'EOF'
import struct
d = open("whole-images-idx3-ubyte.gz", "rb").read()
import gzip
raw = bytearray(gzip.decompress(d))
raw[4:8] = struct.pack(">I", 50000)
open("liar-images-idx3-ubyte", "wb").write(raw)
lab = bytearray(gzip.decompress(open("whole-labels-idx1-ubyte.gz", "rb").read()))
lab[4:8] = struct.pack(">I", 50000)
open("liar-labels-idx1-ubyte", "wb").write(lab)
EOF
it_run idx_liar "$WORKER" --data liar-images-idx3-ubyte --arch mlp --epochs 1 --threads 1 --out x.udm
expect_failure "IDX header claims more images than the file holds" 1 "liar-images-idx3-ubyte" "truncated"

# CSV: line 6 has 4 fields; line 9 has "abc" as x; line 12 an unterminated quote.
sed '6s/$/,7/' c.csv >fields.csv
it_run csv_fields "$WORKER" --data fields.csv "${csv_args[@]}" --out x.udm
expect_failure "CSV row with the wrong number of fields" 1 "fields.csv:6" "expected 3 fields" "got 4"
sed '9s/^[^,]*/abc/' c.csv >nan.csv
it_run csv_nan "$WORKER" --data nan.csv "${csv_args[@]}" --out x.udm
expect_failure "CSV non-numeric value" 1 "nan.csv:9" '"x"' "abc"
sed '12s/^/"/' c.csv >quote.csv
it_run csv_quote "$WORKER" --data quote.csv "${csv_args[@]}" --out x.udm
expect_failure "CSV unterminated quote" 1 "quote.csv:12" "quote"
sed -e '6s/$/,7/' -e '9s/^[^,]*/abc/' c.csv >two_bad.csv
it_run csv_skip "$WORKER" --data two_bad.csv "${csv_args[@]}" --validation none --out skip_csv.udm --skip-bad
it_expect_rc "CSV --skip-bad: trains (exit 0)" 0
it_expect_grep "CSV --skip-bad: warning names line 6" "$ERR" "two_bad.csv:6"
it_expect_grep "CSV --skip-bad: warning names line 9" "$ERR" "two_bad.csv:9"
it_run csv_skip_info "$UPDRAFT" info skip_csv.udm --json
it_expect_eq "CSV --skip-bad: 298 of 300 rows trained" 298 "$(it_json "$OUT" 'last["metrics"]["training_samples"]')"

# ================================================================ updraft-worker: arguments
it_run arch_preset "$WORKER" --data c.csv --arch resnet --out x.udm
expect_failure "unknown --arch preset" "1|2" "resnet" "preset"
printf 'input 2 1 1\ndense 16\nrelu\ndense 3 4 5\nsoftmax\n' >syntax.spec
it_run arch_syntax "$WORKER" --data c.csv --arch syntax.spec --out x.udm
expect_failure "spec file with a syntax error" "1|2" "syntax.spec" "line 4"
it_run arch_shape "$WORKER" --data c.csv "${img_args[@]}" --out x.udm
expect_failure "spec input shape that does not fit the data" "1|2" "tiny.spec" "c.csv" "(1, 12, 12)" "(2, 1, 1)"
it_run opt_unknown "$WORKER" --data c.csv --arch tab.spec --out x.udm --frobnicate
expect_failure "unknown option" 2 "--frobnicate"
it_run opt_lr "$WORKER" --data c.csv --arch tab.spec --out x.udm --lr fast
expect_failure "--lr not a number" 2 "--lr" "fast"
it_run opt_lr_missing "$WORKER" --data c.csv --arch tab.spec --out x.udm --lr
expect_failure "--lr without a value" 2 "--lr" "value"
it_run opt_epochs0 "$WORKER" --data c.csv --arch tab.spec --out x.udm --epochs 0
expect_failure "--epochs 0" 2 "--epochs" "'0'"
it_run opt_no_out "$WORKER" --data c.csv --arch tab.spec
expect_failure "no --out" 2 "--out"
it_run opt_val "$WORKER" --data c.csv --arch tab.spec --out x.udm --validation 1.5
expect_failure "--validation 1.5" 2 "--validation" "1.5"
if [ -e x.udm ]; then it_fail "no failed run wrote x.udm" "x.udm exists"; else
    it_pass "no failed run wrote x.udm"; fi

# ================================================================ updraft info: bad models
size=$(stat -c %s img.udm)
head -c $((size / 2)) img.udm >half.udm
it_run info_trunc "$UPDRAFT" info half.udm
expect_failure "info: truncated .udm" 1 "half.udm" "truncated"
head -c $((size - 1)) img.udm >minus1.udm
it_run info_trunc1 "$UPDRAFT" info minus1.udm
expect_failure "info: .udm one byte short" 1 "minus1.udm" "truncated"
python3 -c '
import sys
d = bytearray(open("img.udm", "rb").read())
d[len(d) // 2] ^= 0x10
open("flipped.udm", "wb").write(d)'
it_run info_flip "$UPDRAFT" info flipped.udm
expect_failure "info: a flipped byte in the middle" 1 "flipped.udm"
it_expect_py "info: a flipped byte: says checksum or corrupt" '"checksum" in v[0] or "corrupt" in v[0]' "$(cat "$ERR")"
: >empty.udm
it_run info_empty "$UPDRAFT" info empty.udm
expect_failure "info: empty file" 1 "empty.udm" "empty"
it_run info_png "$UPDRAFT" info imgs/checker/000.png
expect_failure "info: a PNG" 1 "imgs/checker/000.png" "not an updraft model"
it_run info_csv "$UPDRAFT" info c.csv
expect_failure "info: a CSV" 1 "c.csv" "not an updraft model"
it_run info_missing "$UPDRAFT" info nowhere.udm
expect_failure "info: nonexistent path" 1 "nowhere.udm" "no such file"
it_run info_dir "$UPDRAFT" info imgs
expect_failure "info: a directory" 1 "imgs"
it_run eval_flip "$UPDRAFT" eval flipped.udm --data imgs
expect_failure "eval: a corrupt model" 1 "flipped.udm"
it_run predict_trunc "$UPDRAFT" predict half.udm imgs/checker/000.png
expect_failure "predict: a truncated model" 1 "half.udm"

# ================================================================ updraft eval: wrong data
it_run eval_shape "$UPDRAFT" eval csv.udm --data "$FASHION/t10k-images-idx3-ubyte.gz"
expect_failure "eval: 784-value IDX images on a 2-feature model" 1 "t10k-images-idx3-ubyte.gz" "784" "2"
it_run eval_shape2 "$UPDRAFT" eval img.udm --data c.csv
expect_failure "eval: 2-feature CSV on a 12x12 image model" 1 "c.csv" "144"
it_run eval_classes "$UPDRAFT" eval img.udm --data nan.csv --skip-bad
expect_failure "eval: CSV on an image model, --skip-bad" 1 "nan.csv"
it_run eval_imgs_on_tab "$UPDRAFT" eval csv.udm --data imgs
it_expect_error "eval: image folder on a tabular model: error exit"
it_expect_grep "eval: image folder on a tabular model: message names the folder" "$ERR" "imgs"
it_run predict_on_tab "$UPDRAFT" predict csv.udm imgs/checker/000.png
expect_failure "predict: an image on a tabular model" 1 "imgs/checker/000.png"
it_run predict_none "$UPDRAFT" predict img.udm
expect_failure "predict without files" 2 "predict"
it_run eval_missing "$UPDRAFT" eval img.udm --data gone/
expect_failure "eval: missing data path" 1 "gone/"
it_run eval_usage "$UPDRAFT" eval img.udm
expect_failure "eval without --data" 2 "--data"
it_run cli_unknown "$UPDRAFT" frobnicate
it_expect_rc "updraft: unknown command: exit 2" 2
it_expect_grep "updraft: unknown command: named" "$ERR" "frobnicate"

it_finish
