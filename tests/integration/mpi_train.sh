#!/usr/bin/env bash
# mpi_train.sh — updraft-worker under mpirun: N=1 and N=2 follow the same loss curve, -np 1 is
# bitwise the standalone run, evaluation counts every test sample once on 3 ranks, ranks that
# disagree on settings or cannot read their data stop together with the reason, a session's
# checkpoints list and export, and a resume with another world size works.
# shellcheck source=SCRIPTDIR/lib/common.bash
source "$(dirname "$0")/lib/common.bash"
it_require_bins "$WORKER" "$UPDRAFT"
source "$IT_LIB/mpi.bash"

TRAIN=$FASHION/train-images-idx3-ubyte.gz
TEST=$FASHION/t10k-images-idx3-ubyte.gz
base=(--data "$TRAIN" --arch mlp --epochs 2 --batch 64 --lr 0.05 --max-samples 2000
      --validation none --threads 1 --json)

# ---- 1. N=1 and N=2: same global batch and seed, same curve -----------------------------------
it_run solo "$WORKER" "${base[@]}" --report-every 1 --out solo.udm
it_expect_rc "standalone run exits 0" 0
cp "$OUT" out/solo.json
it_run np2 "$MPI" 2 "$WORKER" "${base[@]}" --report-every 1 --out np2.udm
it_expect_rc "mpirun -np 2 exits 0" 0
cp "$OUT" out/np2.json
it_expect_eq "-np 2 reports world 2" 2 "$(it_json out/np2.json 'lines[0]["world"]')"
it_expect_eq "one JSON stream (rank 0 only): 64 progress lines" 64 \
    "$(it_json out/np2.json 'len([l for l in lines if l["event"] == "progress"])')"
curve() { it_json "$1" '[l["loss"] for l in lines if l["event"] == "progress"]'; }
it_expect_py "N=1 and N=2 loss curves agree at every step (rel. 1e-3)" \
    'len(eval(v[0])) == 64 and all(abs(a - b) <= 1e-3 * abs(a) for a, b in zip(eval(v[0]), eval(v[1])))' \
    "$(curve out/solo.json)" "$(curve out/np2.json)"
it_expect_py "N=1 and N=2 end within 0.5% training accuracy" 'abs(v[0] - v[1]) < 0.005' \
    "$(it_json out/solo.json 'last["train_accuracy"]')" "$(it_json out/np2.json 'last["train_accuracy"]')"

it_run np1 "$MPI" 1 "$WORKER" "${base[@]}" --out np1.udm
it_expect_rc "mpirun -np 1 exits 0" 0
sha() { "$UPDRAFT" info "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["params_sha256"])'; }
it_expect_eq "-np 1 is bitwise the standalone run" "$(sha solo.udm)" "$(sha np1.udm)"

# ---- 2. evaluation on 3 ranks: every test sample once -----------------------------------------
it_run np3 "$MPI" 3 "$WORKER" "${base[@]}" --epochs 1 --test "$TEST" --out np3.udm
it_expect_rc "mpirun -np 3 with a test set exits 0" 0
cp "$OUT" out/np3.json
it_expect_eq "3 ranks scored 10000 test samples (10000 = 3*3333+1)" 10000 \
    "$(it_json out/np3.json '[l for l in lines if l["event"] == "evaluation"][0]["samples"]')"
it_run eval3 "$UPDRAFT" eval np3.udm --data "$TEST" --json
it_expect_py "sharded test accuracy equals updraft eval's on one process" 'v[0] == v[1]' \
    "$(it_json out/np3.json '[l for l in lines if l["event"] == "evaluation"][0]["accuracy"]')" \
    "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["accuracy"])' "$OUT")"

# ---- 3. ranks that disagree, ranks that cannot read their data --------------------------------
python3 - "$TRAIN" <<'EOF'
import gzip, sys
raw = gzip.open(sys.argv[1]).read()
open("bad-images-idx3-ubyte", "wb").write(raw[: 16 + 784 * 100 + 300])  # truncated mid-image
open("bad-labels-idx1-ubyte", "wb").write(gzip.open(sys.argv[1].replace("images-idx3", "labels-idx1")).read())
EOF
bad=(--arch mlp --epochs 1 --batch 64 --max-samples 2000 --validation none --threads 1 --out bad.udm)
it_run badshard "$MPI" --mpmd "$WORKER --data $TRAIN ${bad[*]}" "$WORKER --data bad-images-idx3-ubyte ${bad[*]}"
it_expect_error "a rank that cannot read its data fails the job"
it_expect_py "both ranks print the failure" 'v[0] >= 2' "$(grep -c 'rank 1' "$ERR" || true)"
it_expect_grep "the message names the rank's file" "$ERR" "bad-images-idx3-ubyte"
it_expect_grep "rank 0 says it could not start because of rank 1" "$ERR" "rank 0: cannot load the training data: rank 1"

it_run disagree "$MPI" --mpmd "$WORKER --data $TRAIN ${bad[*]}" "$WORKER --data $TRAIN ${bad[*]} --lr 0.1"
it_expect_error "ranks with different settings refuse to train"
it_expect_grep "the difference is named" "$ERR" "lr 0.10000000000000001"

# ---- 4. a session: checkpoints listed and exported; resume with another world ------------------
sess=(--session s1 --checkpoint-every 10 --keep-checkpoints 2)
it_run sess "$MPI" 2 "$WORKER" "${base[@]}" "${sess[@]}" --out s1.udm
it_expect_rc "a session run exits 0" 0
it_expect_eq "checkpoint events every 10 steps and at the end" '[10, 20, 30, 40, 50, 60, 64]' \
    "$(it_json "$OUT" '[l["iteration"] for l in lines if l["event"] == "checkpoint"]')"
it_run list "$UPDRAFT" checkpoints s1 --json
it_expect_rc "updraft checkpoints exits 0" 0
it_expect_eq "the newest 2 are kept, both complete" '[[60, True], [64, True]]' \
    "$(python3 -c 'import json,sys; print([[c["iteration"], c["complete"]] for c in json.load(open(sys.argv[1]))])' "$OUT")"
it_run export "$UPDRAFT" export s1 --out exported.udm
it_expect_rc "updraft export of the session's newest checkpoint" 0
it_expect_eq "the exported model is the trained one" "$(sha s1.udm)" "$(sha exported.udm)"

it_run again "$MPI" 2 "$WORKER" "${base[@]}" "${sess[@]}" --out s1b.udm
it_expect_error "a new run into a session with checkpoints is refused"
it_expect_grep "and told to add --resume" "$ERR" "add --resume"

# Resume an unfinished session with one rank instead of two.
it_run part "$MPI" 2 "$WORKER" "${base[@]}" --session s2 --checkpoint-every 10 --epochs 1 --out part.udm
it_expect_rc "first half (1 epoch) into s2" 0
it_run world1 "$WORKER" "${base[@]}" --session s2 --resume --out world1.udm
it_expect_rc "resume of a 2-rank checkpoint with 1 process (--epochs raised to 2)" 0
it_expect_grep "says the world changed" "$ERR" "written by 2 ranks, this run has 1"
it_expect_eq "it continued from the end of epoch 1" '[1, 0]' \
    "$(it_json "$OUT" '[lines[0]["start_epoch"], lines[0]["start_minibatch"]]')"

it_finish
