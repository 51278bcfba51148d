#!/usr/bin/env bash
# ckpt_cli.sh — a standalone worker keeps a session's checkpoints; `updraft checkpoints` lists
# them (text and JSON), `updraft export` writes the newest complete one's model (the same
# parameters as the checkpoint's model.udm, with its metrics), and a checkpoint whose DONE is
# missing or whose state.ckpt is corrupt is listed with the reason, refused by export (exit 1),
# and skipped in favour of the one before it.
# shellcheck source=SCRIPTDIR/lib/common.bash
source "$(dirname "$0")/lib/common.bash"
it_require_bins "$WORKER" "$UPDRAFT"

fixture csv train.csv 200 1
cp "$IT_LIB/tab8.spec" tab.spec
args=(--data train.csv --arch tab.spec --epochs 3 --batch 16 --lr 0.05 --seed 3 --threads 1)
sha() { "$UPDRAFT" info "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["params_sha256"])'; }
# Iterations of the listing in $1 (JSON), optionally only the complete ones.
its() { python3 -c 'import json,sys; print(" ".join(str(c["iteration"]) for c in json.load(open(sys.argv[1])) if sys.argv[2] == "all" or c["complete"]))' "$1" "${2:-all}"; }
ckdir() { printf 's/checkpoints/ckpt-%012d' "$1"; }

it_run train "$WORKER" "${args[@]}" --session s --checkpoint-every 5 --keep-checkpoints 3 --out final.udm --json
it_expect_rc "a standalone session run exits 0" 0

# ---- 1. the listing ---------------------------------------------------------------------------
it_run list "$UPDRAFT" checkpoints s --json
it_expect_rc "updraft checkpoints --json exits 0" 0
L=$OUT
read -r -a all <<<"$(its "$L")"
it_expect_eq "3 checkpoints kept, all complete" "3 3" "${#all[@]} $(its "$L" complete | wc -w)"
it_expect_eq "each has MLCheckpoint's fields and ours" '[]' \
    "$(python3 -c 'import json,sys; print(sorted({k for c in json.load(open(sys.argv[1])) for k in ("phase","iteration","date","url","path","metrics","epoch","minibatch","world","complete","problem") if k not in c}))' "$L")"
it_expect_eq "phase training, world 1, no problem" '[True]' \
    "$(python3 -c 'import json,sys; print(list({c["phase"] == "training" and c["world"] == 1 and c["problem"] is None for c in json.load(open(sys.argv[1]))}))' "$L")"
newest=${all[2]}
prev=${all[1]}
oldest=${all[0]}
it_expect_py "oldest first" 'v[0] < v[1] < v[2]' "$oldest" "$prev" "$newest"
it_run list_text "$UPDRAFT" checkpoints s
it_expect_rc "updraft checkpoints (text) exits 0" 0
it_expect_eq "text: a header and one line per checkpoint" 4 "$(wc -l <"$OUT")"
it_expect_grep "text: the newest one's path" "$OUT" "$(ckdir "$newest")"
it_expect_nogrep "text: nothing incomplete yet" "$OUT" "incomplete"

# ---- 2. export ----------------------------------------------------------------------------------
it_run export "$UPDRAFT" export s --out e1.udm
it_expect_rc "export of the session exits 0" 0
it_expect_grep "export says which checkpoint" "$OUT" "$(ckdir "$newest")"
it_expect_eq "exported parameters are the checkpoint's" "$(sha "$(ckdir "$newest")/model.udm")" "$(sha e1.udm)"
it_run info "$UPDRAFT" info e1.udm --json
it_expect_eq "export sets checkpoint_iteration" "$newest" "$(it_json "$OUT" 'int(last["metrics"]["checkpoint_iteration"])')"
it_expect_py "export sets a finite train_loss" 'math.isfinite(v[0])' "$(it_json "$OUT" 'last["metrics"]["train_loss"]')"

# ---- 3. the newest loses DONE: listed incomplete, refused, skipped -----------------------------
rm "$(ckdir "$newest")/DONE"
it_run list2 "$UPDRAFT" checkpoints s --json
it_expect_eq "without DONE: listed incomplete with the reason" "[False, 'no DONE marker']" \
    "$(python3 -c 'import json,sys; c = json.load(open(sys.argv[1]))[-1]; print([c["complete"], c["problem"][:14]])' "$OUT")"
it_run export_incomplete "$UPDRAFT" export "$(ckdir "$newest")" --out never.udm
it_expect_rc "export of an incomplete checkpoint exits 1" 1
it_expect_grep "and says why" "$ERR" "no DONE marker"
if [ -e never.udm ]; then it_fail "nothing written" "never.udm exists"; else it_pass "nothing written"; fi
it_run export2 "$UPDRAFT" export s --out e2.udm
it_expect_rc "export of the session falls back" 0
it_expect_eq "to the one before" "$(sha "$(ckdir "$prev")/model.udm")" "$(sha e2.udm)"

# ---- 4. a corrupt state.ckpt: the same ----------------------------------------------------------
python3 - "$(ckdir "$prev")/state.ckpt" <<'EOF'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
b[len(b) // 2] ^= 0x10
open(sys.argv[1], "wb").write(b)
EOF
it_run list_text2 "$UPDRAFT" checkpoints s
it_expect_grep "corrupt state.ckpt: listed with the reason" "$OUT" "state.ckpt: checksum mismatch"
it_run export_corrupt "$UPDRAFT" export "$(ckdir "$prev")" --out never.udm
it_expect_rc "export of a corrupt checkpoint exits 1" 1
it_expect_grep "and names the file" "$ERR" "state.ckpt"
it_run export3 "$UPDRAFT" export s --out e3.udm
it_expect_rc "export of the session falls back again" 0
it_expect_eq "to the oldest, the only complete one" "$(sha "$(ckdir "$oldest")/model.udm")" "$(sha e3.udm)"

it_finish
