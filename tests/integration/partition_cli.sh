#!/usr/bin/env bash
# partition_cli.sh — `updraft dataset partition` and `updraft init`, the tools that set up a
# federated simulation: an IDX file, image folders (grey and RGB) and a CSV are split into
# client directories whose partition.json adds up, which the loaders read back (updraft eval,
# updraft-worker) with the source's pixels unchanged (checked with an independent PNG decoder)
# and the source's class names (Fashion-MNIST's "T-shirt/top" included); the same seed gives the
# same partition; bad arguments and foreign output directories are refused with messages;
# `updraft init` is deterministic per seed and its labels are the data's classes. With
# Fashion-MNIST present, 60,000 samples into 20 clients is timed.
# shellcheck source=SCRIPTDIR/lib/common.bash
source "$(dirname "$0")/lib/common.bash"
it_require_bins "$WORKER" "$UPDRAFT"
PART=("$UPDRAFT" dataset partition)

# Checks DIR/partition.json against itself: sizes and counts add up to n, each client's
# counts to its size; prints "ok" or what is wrong.
part_sums()
{
    python3 - "$1" "$2" <<'EOF'
import json, sys
p = json.load(open(sys.argv[1] + "/partition.json"))
n = int(sys.argv[2])
bad = []
if sum(p["sizes"]) != n: bad.append("sizes sum to %d, not %d" % (sum(p["sizes"]), n))
if sum(map(sum, p["counts"])) != n: bad.append("counts sum to %d" % sum(map(sum, p["counts"])))
if len(p["sizes"]) != p["clients"] or len(p["counts"]) != p["clients"]: bad.append("client count")
for k, (row, s) in enumerate(zip(p["counts"], p["sizes"])):
    if sum(row) != s or len(row) != len(p["classes"]): bad.append("client %d" % k)
print("ok" if not bad else "; ".join(bad[:3]))
EOF
}

# ---- IDX (a small one made here): pixels, sums, determinism
fixture idx small 300 6 5 300 4
# --skip: the samples a cluster job took with max_samples stay out.
it_run part_skip "${PART[@]}" --data small-images-idx3-ubyte --clients 4 --scheme iid --seed 1 \
    --skip 100 --out skip4
it_expect_rc "partition --skip 100 exits 0" 0
it_expect_eq "--skip: 200 files, all from position 100 on" "200 100" \
    "$(find skip4 -name '*.png' | wc -l) $(find skip4 -name '*.png' -exec basename {} .png \; | sort -n | head -1 | sed 's/^0*//')"
it_expect_eq "--skip: partition.json records it" "100 200" "$(python3 -c 'import json; j=json.load(open("skip4/partition.json")); print(j["skip"], j["samples"])')"
it_run part_skip_all "${PART[@]}" --data small-images-idx3-ubyte --clients 4 --scheme iid --seed 1 \
    --skip 300 --out skip5
it_expect_error "--skip of every sample is refused"
it_expect_grep "... saying how many there are" "$ERR" "only 300 samples"
it_run part_idx "${PART[@]}" --data small-images-idx3-ubyte --clients 7 --scheme dirichlet:1 \
    --seed 5 --min-size 5 --out idx7
it_expect_rc "partition of an IDX file exits 0" 0
it_expect_grep "summary names the scheme" "$OUT" "dirichlet:1"
it_expect_eq "idx: partition.json adds up" ok "$(part_sums idx7 300)"
it_expect_eq "idx: 7 client directories" 7 "$(find idx7 -maxdepth 1 -name 'client-*' -type d | wc -l)"
it_expect_eq "idx: 300 PNG files in all" 300 "$(find idx7 -name '*.png' | wc -l)"
it_expect_eq "idx: no temporaries left" 0 "$(find idx7 -name '.tmp-*' | wc -l)"
# The file name is the source index: the PNG holds exactly the source's bytes.
same=$(IT_LIB="$IT_LIB" python3 - <<'EOF'
import glob, os, sys
sys.path.insert(0, os.environ["IT_LIB"])
import fixtures
raw = open("small-images-idx3-ubyte", "rb").read()[16:]
files = sorted(glob.glob("idx7/client-*/*/*.png"))
bad = 0
for f in files:
    i = int(os.path.basename(f)[:-4])
    w, h, c, px = fixtures.read_png(f)
    bad += (w, h, c) != (5, 6, 1) or px != raw[i * 30:(i + 1) * 30]
print("%d of %d differ" % (bad, len(files)))
EOF
)
it_expect_eq "idx: every client PNG has the source sample's pixels" "0 of 300 differ" "$same"
it_run part_idx_again "${PART[@]}" --data small-images-idx3-ubyte --clients 7 --scheme dirichlet:1 \
    --seed 5 --min-size 5 --out idx7b --json
it_expect_eq "same seed: the same partition" "$(it_json idx7/partition.json 'last["counts"]')" \
    "$(it_json idx7b/partition.json 'last["counts"]')"
it_expect_eq "--json prints partition.json" "$(cat idx7b/partition.json)" "$(cat "$OUT")"
it_run part_idx_seed "${PART[@]}" --data small-images-idx3-ubyte --clients 7 --scheme dirichlet:1 \
    --seed 6 --min-size 5 --out idx7c
it_expect_py "another seed: another partition" 'v[0] != v[1]' \
    "$(it_json idx7/partition.json 'last["counts"]')" "$(it_json idx7c/partition.json 'last["counts"]')"

# ---- updraft init: deterministic, labels of the data, loads the client dirs
it_run init_a "$UPDRAFT" init --arch mlp --data small-images-idx3-ubyte --seed 9 --out a.udm
it_expect_rc "init exits 0" 0
it_run init_b "$UPDRAFT" init --arch mlp --data small-images-idx3-ubyte --seed 9 --name fed --out b.udm
it_run init_c "$UPDRAFT" init --arch mlp --data small-images-idx3-ubyte --seed 10 --out c.udm
it_run info_a "$UPDRAFT" info a.udm --json
sha_a=$(it_json "$OUT" 'last["params_sha256"]')
it_expect_eq "init: labels are the data's classes" '["0", "1", "2", "3"]' "$(it_json "$OUT" 'last["labels"]')"
it_expect_eq "init: the worker's update defaults (lr 0.05, batch 128, 10 epochs)" '[0.05, 128, 10]' \
    "$(it_json "$OUT" '[last["update_defaults"][k]["value"] for k in ("learningRate", "miniBatchSize", "epochs")]')"
it_run info_b "$UPDRAFT" info b.udm --json
it_expect_eq "init: same seed, same parameters" "$sha_a" "$(it_json "$OUT" 'last["params_sha256"]')"
it_expect_eq "init: --name kept in the metadata" '"fed"' "$(it_json "$OUT" 'last["metadata"]["additional"]["name"]')"
it_run info_c "$UPDRAFT" info c.udm --json
it_expect_py "init: another seed, other parameters" 'v[0] != v[1]' "$sha_a" "$(it_json "$OUT" 'last["params_sha256"]')"
it_run info_text "$UPDRAFT" info a.udm
it_expect_grep "info shows the labels" "$OUT" "labels (4):   0, 1, 2, 3"
it_run init_last "$UPDRAFT" init --arch mlp --data small-images-idx3-ubyte --updatable last --out last.udm
it_run info_last "$UPDRAFT" info last.udm --json
it_expect_eq "init --updatable last: only the last dense layer" '[false, false, true]' \
    "$(it_json "$OUT" '[l["updatable"] for l in last["layers"] if "updatable" in l]')"
it_run eval_client "$UPDRAFT" eval a.udm --data idx7/client-003 --json
it_expect_rc "updraft eval reads a client directory" 0
it_expect_eq "eval: the client's sample count" "$(it_json idx7/partition.json 'last["sizes"][3]')" \
    "$(it_json "$OUT" 'last["samples"]')"
it_run worker_client "$WORKER" --data idx7/client-000 --arch mlp --epochs 1 --batch 16 --threads 1 \
    --quiet --out w.udm
it_expect_rc "updraft-worker trains on a client directory" 0
it_run init_bad "$UPDRAFT" init --arch nosuch --data small-images-idx3-ubyte --out x.udm
it_expect_error "init with an unknown arch: error exit"
it_expect_grep "init with an unknown arch: says so" "$ERR" "neither a preset"
it_run init_noout "$UPDRAFT" init --arch mlp --data small-images-idx3-ubyte
it_expect_rc "init without --out: usage error" 2

# ---- Image folders: grey, and RGB kept RGB
fixture imgset imgs 10
it_run part_img "${PART[@]}" --data imgs --clients 3 --scheme shards:2 --seed 1 --min-size 1 --out img3
it_expect_rc "partition of image folders exits 0" 0
it_expect_eq "images: partition.json adds up" ok "$(part_sums img3 36)"
it_expect_eq "images: the classes" '["checker", "hstripes", "vstripes"]' "$(it_json img3/partition.json 'last["classes"]')"
# Source index 3 is checker/003.png (12x12 grey, read unchanged).
f=$(find img3 -name 03.png)
it_expect_eq "images: a grey PNG keeps its pixels" "$(fixture pngpixels imgs/checker/003.png)" \
    "$(fixture pngpixels "$f")"
mkdir -p rgb/red rgb/blue
for i in 0 1 2 3 4 5; do
    fixture png rgb/red/r$i.png 8 6 3 hstripes $i
    fixture png rgb/blue/b$i.png 8 6 3 vstripes $((i + 10))
done
it_run part_rgb "${PART[@]}" --data rgb --clients 2 --scheme iid --seed 1 --min-size 1 --out rgb2
it_expect_rc "partition of RGB folders exits 0" 0
it_expect_eq "rgb: source index 8 (red/r2.png) keeps its RGB pixels" \
    "$(fixture pngpixels rgb/red/r2.png)" "$(fixture pngpixels "$(find rgb2 -name 08.png)")"

# ---- CSV: --format csv, rows kept
fixture csv tab.csv 120 1
it_run part_csv "${PART[@]}" --data tab.csv --clients 4 --scheme iid --seed 2 --format csv --out csv4
it_expect_rc "partition of a CSV exits 0" 0
it_expect_eq "csv: partition.json adds up" ok "$(part_sums csv4 120)"
rows=$(python3 - <<'EOF'
import csv, glob, struct
f32 = lambda s: struct.unpack("f", struct.pack("f", float(s)))[0]  # the loader keeps float32
src = sorted((f32(r["x"]), f32(r["y"]), r["label"]) for r in csv.DictReader(open("tab.csv")))
out = sorted((f32(r["f0"]), f32(r["f1"]), r["label"]) for f in glob.glob("csv4/client-*/data.csv")
             for r in csv.DictReader(open(f)))
print("same" if src == out else "differ: %d vs %d rows" % (len(src), len(out)))
EOF
)
it_expect_eq "csv: the clients' rows are the source's rows" same "$rows"
cp "$IT_LIB/tab8.spec" tab.spec
it_run init_csv "$UPDRAFT" init --arch tab.spec --data tab.csv --out tab.udm
it_run eval_csv "$UPDRAFT" eval tab.udm --data csv4/client-001/data.csv --json
it_expect_rc "updraft eval reads a client's data.csv" 0
it_expect_eq "csv eval: 30 rows" 30 "$(it_json "$OUT" 'last["samples"]')"
it_run part_csv_png "${PART[@]}" --data tab.csv --clients 4 --scheme iid --seed 2 --format png --out csvpng
it_expect_error "CSV source with --format png: refused"
it_expect_grep "CSV source with --format png: says why" "$ERR" "not images"

# ---- Refusals
mkdir -p busy && echo keep >busy/notes.txt
it_run busy "${PART[@]}" --data small-images-idx3-ubyte --clients 2 --scheme iid --seed 1 --out busy
it_expect_error "a non-empty --out without partition.json: refused"
it_expect_grep "refusal says it is not empty and not a partition" "$ERR" "not empty"
it_expect_eq "the foreign directory is untouched" "keep" "$(cat busy/notes.txt)"
it_run replace "${PART[@]}" --data small-images-idx3-ubyte --clients 3 --scheme iid --seed 1 --out idx7
it_expect_rc "an earlier partition is replaced" 0
it_expect_grep "replacing is said" "$OUT" "replacing the earlier partition"
it_expect_eq "replaced: 3 client directories left" 3 "$(find idx7 -maxdepth 1 -name 'client-*' | wc -l)"
it_expect_eq "replaced: partition.json adds up" ok "$(part_sums idx7 300)"
it_run k_big "${PART[@]}" --data small-images-idx3-ubyte --clients 301 --scheme iid --seed 1 --out e1
it_expect_error "more clients than samples: refused"
it_expect_grep "more clients than samples: says so" "$ERR" "only 300 samples"
it_run k_zero "${PART[@]}" --data small-images-idx3-ubyte --clients 0 --scheme iid --seed 1 --out e2
it_expect_rc "--clients 0: usage error" 2
it_run k_huge "${PART[@]}" --data small-images-idx3-ubyte --clients 100001 --scheme iid --seed 1 --out e3
it_expect_grep "--clients 100001: names the range" "$ERR" "between 1 and 100000"
it_run alpha "${PART[@]}" --data small-images-idx3-ubyte --clients 3 --scheme dirichlet:0 --seed 1 --out e4
it_expect_rc "alpha 0: usage error" 2
it_expect_grep "alpha 0: says what ALPHA must be" "$ERR" "ALPHA must be a number > 0"
it_run shards "${PART[@]}" --data small-images-idx3-ubyte --clients 100 --scheme shards:4 --seed 1 --min-size 0 --out e5
it_expect_error "S*K > n: refused"
it_expect_grep "S*K > n: says so" "$ERR" "only 300 samples"
it_run scheme "${PART[@]}" --data small-images-idx3-ubyte --clients 3 --scheme random --seed 1 --out e6
it_expect_grep "unknown scheme: says so" "$ERR" "unknown scheme 'random'"
it_run minsize "${PART[@]}" --data small-images-idx3-ubyte --clients 30 --scheme iid --seed 1 --out e7
it_expect_rc "30 clients of at least 10 from 300 samples: fine" 0
it_run minsize2 "${PART[@]}" --data small-images-idx3-ubyte --clients 31 --scheme iid --seed 1 --out e8
it_expect_grep "min-size impossible: says so" "$ERR" "at least 10 samples"
it_expect_eq "refused runs leave no output directory" "" "$(ls -d e1 e2 e3 e4 e5 e6 e8 2>/dev/null)"

# ---- Fashion-MNIST: 60,000 samples into 20 clients, timed; its class names survive
if [ -f "$FASHION/train-images-idx3-ubyte.gz" ]; then
    t0=$(date +%s.%N)
    it_run fashion "${PART[@]}" --data "$FASHION/train-images-idx3-ubyte.gz" --clients 20 \
        --scheme dirichlet:0.5 --seed 1 --out fm20
    t1=$(date +%s.%N)
    it_expect_rc "Fashion-MNIST into 20 clients exits 0" 0
    secs=$(python3 -c "print('%.2f' % ($t1 - $t0))")
    echo "     Fashion-MNIST 60000 samples -> 20 clients (dirichlet:0.5): ${secs} s"
    it_expect_py "Fashion-MNIST partition within 30 s on a busy test machine" 'v[0] < 30' "$secs"
    it_expect_eq "fashion: partition.json adds up" ok "$(part_sums fm20 60000)"
    it_run fm_init "$UPDRAFT" init --arch mlp --data "$FASHION/t10k-images-idx3-ubyte.gz" --out fm.udm
    it_run fm_eval "$UPDRAFT" eval fm.udm --data fm20/client-007 --json
    it_expect_rc "a model made from the IDX file scores a client directory (T-shirt/top read back)" 0
    it_expect_eq "fashion eval: the client's sample count" "$(it_json fm20/partition.json 'last["sizes"][7]')" \
        "$(it_json "$OUT" 'last["samples"]')"
else
    echo "     (Fashion-MNIST not at $FASHION: its checks skipped)"
fi

it_finish
