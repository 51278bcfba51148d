#!/usr/bin/env bash
# model_trust.sh — signed and encrypted models, from the operator's keys to the device:
#   - updraft keys generate|show|sign|verify and updraft encrypt|decrypt, with their exit codes
#     (3 unsigned, 4 another key, 5 altered) and messages;
#   - updraft-agent update refuses an unsigned model, one signed by another key, a signed model
#     with one byte changed, an encrypted model under another key or with no key, and an
#     encrypted model with one byte changed, each with its own exit code and message, and
#     writes nothing; with the right keys it updates, and its output stays encrypted;
#   - the real coordinator signs every version it registers (a push, a federation's publish)
#     and, with --model-key, encrypts it; agents holding the public key and the model key
#     complete a round; an agent trusting another key refuses the model, reports the failure
#     and uploads nothing; a stand-in coordinator serving a tampered signed model (with a
#     matching sha256 in the task) is refused the same way; and no plaintext model reaches an
#     agent's state directory.
source "$(dirname "$0")/lib/common.bash"
source "$IT_LIB/coord.bash"

AGENT=$UD_BIN_DIR/updraft-agent
it_require_bins "$AGENT" "$UPDRAFT"
PY=/usr/bin/python3

fixture csv c.csv 300 3
printf 'input 2 1 1\ndense 16\nrelu\ndense 3\nsoftmax\n' >tab.spec
it_run init "$UPDRAFT" init --arch tab.spec --data c.csv --seed 1 --out base.udm
it_expect_rc "updraft init makes the base model" 0

# ---- keys ------------------------------------------------------------------------------------
it_run gen_sign "$UPDRAFT" keys generate --type sign --out op.key
it_expect_rc "keys generate --type sign" 0
it_expect_eq "the secret is mode 0600, the public half 0644" "600 644" \
    "$(stat -c %a op.key) $(stat -c %a op.key.pub)"
SIGN_ID=$(sed -n 's/^op.key: sign-secret key \([0-9a-f]*\)$/\1/p' "$OUT")
it_expect_eq "it prints the key id (16 hex digits)" 16 "${#SIGN_ID}"
it_run gen_again "$UPDRAFT" keys generate --type sign --out op.key
it_expect_rc "an existing key file is not replaced" 1
"$UPDRAFT" keys generate --type sign --out other.key >/dev/null
"$UPDRAFT" keys generate --type model --out model.key >/dev/null
"$UPDRAFT" keys generate --type model --out model2.key >/dev/null
it_run show "$UPDRAFT" keys show op.key.pub
it_expect_grep "keys show names the type and id" "$OUT" "sign-public key $SIGN_ID"
chmod 644 other.key
it_run loose "$UPDRAFT" keys sign --key other.key base.udm --out x.udm
it_expect_rc "a secret key readable by others is refused" 1
it_expect_grep "... saying how to fix it" "$ERR" "chmod 600"
chmod 600 other.key
it_run wrongtype "$UPDRAFT" keys sign --key op.key.pub base.udm --out x.udm
it_expect_grep "a public key given to sign: named" "$ERR" "is a sign-public key, not a sign-secret key"

it_run sign "$UPDRAFT" keys sign --key op.key base.udm --out signed.udm
it_expect_rc "keys sign" 0
it_run verify "$UPDRAFT" keys verify --key op.key.pub signed.udm
it_expect_rc "keys verify: 0 for the signer's key" 0
it_run verify_other "$UPDRAFT" keys verify --key other.key.pub signed.udm
it_expect_rc "keys verify: 4 for another key" 4
it_expect_grep "... naming both keys" "$ERR" "signed by key $SIGN_ID, not by the trusted key"
it_run verify_plain "$UPDRAFT" keys verify --key op.key.pub base.udm
it_expect_rc "keys verify: 3 for an unsigned model" 3
# One byte of the model changed, past the 64-byte header.
flip() # SRC DST OFFSET
{
    $PY -c 'import sys; b = bytearray(open(sys.argv[1], "rb").read()); i = int(sys.argv[3]); b[i] ^= 1; open(sys.argv[2], "wb").write(b)' "$@"
}
flip signed.udm tampered.udm 300
it_run verify_tampered "$UPDRAFT" keys verify --key op.key.pub tampered.udm
it_expect_rc "keys verify: 5 for a changed byte" 5
it_expect_grep "... saying it was altered" "$ERR" "altered after it was signed"

it_run enc "$UPDRAFT" encrypt --key model.key base.udm --out enc.udm
it_expect_rc "encrypt" 0
it_expect_eq "the encrypted file does not hold the model's label names" 0 "$(grep -c 'Ankle\|class' enc.udm)"
it_run dec_wrong "$UPDRAFT" decrypt --key model2.key enc.udm --out x.udm
it_expect_rc "decrypt with another key: 4" 4
flip enc.udm enc_tampered.udm 300
it_run dec_tampered "$UPDRAFT" decrypt --key model.key enc_tampered.udm --out x.udm
it_expect_rc "decrypt of a changed byte: 5" 5
it_expect_eq "... and no output written" no "$([ -e x.udm ] && echo yes || echo no)"
it_run dec "$UPDRAFT" decrypt --key model.key enc.udm --out back.udm
it_expect_rc "decrypt with the key" 0
it_expect_eq "decrypt gives the model back byte for byte" "$(sha256sum <base.udm)" "$(sha256sum <back.udm)"
"$UPDRAFT" keys sign --key op.key enc.udm --out enc_signed.udm >/dev/null
it_run info_enc "$UPDRAFT" info enc_signed.udm
it_expect_rc "updraft info on an encrypted model without its key: 4" 4
it_expect_grep "... saying which variable to set" "$ERR" "UPDRAFT_MODEL_KEY"
UPDRAFT_MODEL_KEY=model.key it_run info_enc_key "$UPDRAFT" info enc_signed.udm
it_expect_grep "with UPDRAFT_MODEL_KEY: signer and model key shown" "$OUT" "signed by key $SIGN_ID (not verified here); encrypted with model key"

# ---- updraft-agent update ---------------------------------------------------------------------
upd() # LABEL MODEL ARGS...
{
    local label=$1 model=$2
    shift 2
    rm -f upd.udm
    it_run "$label" "$AGENT" update --model "$model" --data c.csv --epochs 1 --out upd.udm "$@"
}
upd a_unsigned base.udm --model-pubkey op.key.pub
it_expect_rc "agent update: an unsigned model is refused (3)" 3
it_expect_grep "... saying so" "$ERR" "refusing the model: "
it_expect_grep "... it is not signed" "$ERR" "not signed"
it_expect_eq "... and nothing is written" no "$([ -e upd.udm ] && echo yes || echo no)"
upd a_other signed.udm --model-pubkey other.key.pub
it_expect_rc "agent update: a model signed by another key is refused (4)" 4
upd a_tampered tampered.udm --model-pubkey op.key.pub
it_expect_rc "agent update: a signed model with a changed byte is refused (5)" 5
it_expect_grep "... as altered" "$ERR" "altered after it was signed"
upd a_nokey enc_signed.udm --model-pubkey op.key.pub
it_expect_rc "agent update: an encrypted model without --model-key is refused (4)" 4
it_expect_grep "... saying to give the key" "$ERR" "give --model-key"
upd a_wrongkey enc_signed.udm --model-pubkey op.key.pub --model-key model2.key
it_expect_rc "agent update: an encrypted model under another key is refused (4)" 4
"$UPDRAFT" keys sign --key op.key enc_tampered.udm --out enc_tampered_signed.udm >/dev/null
upd a_enc_tampered enc_tampered_signed.udm --model-pubkey op.key.pub --model-key model.key
it_expect_rc "agent update: an encrypted model changed before signing is refused (5)" 5
it_expect_grep "... by the authentication tag" "$ERR" "does not authenticate"
upd a_ok enc_signed.udm --model-pubkey op.key.pub --model-key model.key
it_expect_rc "agent update with the public key and the model key: 0" 0
it_expect_grep "... saying the signature verified and the model was decrypted in memory" "$ERR" "decrypted in memory"
it_expect_eq "the updated model is written encrypted" UDSEAL01 "$(head -c 8 upd.udm)"
UPDRAFT_MODEL_KEY=model.key it_run info_upd "$UPDRAFT" info upd.udm
it_expect_rc "... and reads back with the model key" 0

# ---- the real coordinator: signed and encrypted versions, agents refusing what they should ------
coord_start "$PWD/state" --model-key "$PWD/model.key" || exit 1
it_expect_eq "the coordinator made its signing key on first start" "600 644" \
    "$(stat -c %a state/signing.key) $(stat -c %a state/signing.pub)"
it_expect_grep "... and logs its id" "$(ls out/coordinator-*.log | head -1)" "model versions are signed with key"
it_run push "$UPDRAFT" model push base.udm --name tab
it_expect_rc "base model pushed" 0
it_run pull "$UPDRAFT" model pull tab@1 --out v1.udm
it_run v1_verify "$UPDRAFT" keys verify --key state/signing.pub v1.udm
it_expect_rc "version 1 is signed by the coordinator's key" 0
it_expect_grep "... and encrypted (--model-key)" "$OUT" "the model inside is encrypted"
it_run push_wrong "$UPDRAFT" model push enc.udm --name tab2
it_expect_rc "a push encrypted under the coordinator's key is accepted" 0
"$UPDRAFT" encrypt --key model2.key base.udm --out enc2.udm >/dev/null
it_run push_wrong2 "$UPDRAFT" model push enc2.udm --name tab3
it_expect_rc "a push encrypted under another key is refused" 1
it_expect_grep "... 422 naming the keys" "$ERR" "not with the given key"

it_run part "$UPDRAFT" dataset partition --data c.csv --clients 3 --scheme iid --seed 1 --out parts
it_run enrol "$UPDRAFT" devices add --count 3 --name d --out tokens
cat >spec.json <<EOF
{"model": "tab", "rounds": 1, "clients_per_round": 3, "min_clients": 2, "round_deadline": 60,
 "epochs": 2, "batch": 16, "lr": 0.05, "max_norm": 1000, "eval": "$PWD/c.csv"}
EOF
it_run start "$UPDRAFT" fed start spec.json
it_expect_rc "federation started" 0
tok() { sed -n "$1p" tokens | cut -d' ' -f2; }
# Devices 1 and 2 hold the right keys; device 3 trusts another signing key.
"$AGENT" run --coordinator "$URL" --token "$(tok 1)" --data parts/client-000 --state ag1 \
    --model-pubkey state/signing.pub --model-key model.key --poll 0.2 --max-rounds 1 --json \
    >out/ag1.jsonl 2>out/ag1.log &
P1=$!
"$AGENT" run --coordinator "$URL" --token "$(tok 2)" --data parts/client-001 --state ag2 \
    --model-pubkey state/signing.pub --model-key model.key --poll 0.2 --max-rounds 1 --json \
    >out/ag2.jsonl 2>out/ag2.log &
P2=$!
"$AGENT" run --coordinator "$URL" --token "$(tok 3)" --data parts/client-002 --state ag3 \
    --model-pubkey other.key.pub --model-key model.key --poll 0.2 --max-rounds 1 --json \
    >out/ag3.jsonl 2>out/ag3.log &
P3=$!
it_run fedwait "$UPDRAFT" fed wait 1 --timeout 90
it_expect_rc "the federation finishes" 0
for p in $P1 $P2 $P3; do
    timeout 20 tail --pid="$p" -f /dev/null || kill "$p" 2>/dev/null
done
api GET /v1/rounds/1
it_expect_eq "round 1 published from the 2 devices that trusted the model" "PUBLISHED 2" \
    "$(jq_ "$API_BODY" 'j["state"] + " " + str(j["accepted"])')"
it_expect_grep "the third device refused it: signed by another key" out/ag3.log \
    "the model is signed by key"
it_expect_eq "... its model_refused event names UD_EWRONGKEY" '"UD_EWRONGKEY"' \
    "$(it_json out/ag3.jsonl '[l["reason"] for l in lines if l["event"] == "model_refused"][0]')"
it_expect_eq "... it reported the failure and uploaded nothing" '["model_refused"]' \
    "$(it_json out/ag3.jsonl '[l["reason"] for l in lines if l["event"] == "failure_report"]')"
it_expect_eq "... no upload from it" 0 "$(it_json out/ag3.jsonl 'len([l for l in lines if l["event"] == "upload"])')"
it_expect_eq "the others verified the signature and decrypted in memory" '[1, 1]' \
    "$(it_json out/ag1.jsonl '[[l["encrypted"] for l in lines if l["event"] == "model_verified"][0], len([l for l in lines if l["event"] == "upload"])]')"
plain=0
for f in ag1/* ag2/* ag3/*; do
    [ -f "$f" ] || continue
    if head -c 16 "$f" | grep -q UDM1; then plain=$((plain + 1)); fi
done
it_expect_eq "no plain .udm in any agent's state directory" 0 "$plain"
it_expect_eq "the model the agents kept is the sealed download" 1 \
    "$(for f in ag1/model-*.udm; do [ "$(head -c 8 "$f")" = UDSEAL01 ] && echo 1; done | head -1)"
it_run v2_verify "$UPDRAFT" model pull tab@2 --out v2.udm
it_run v2_sig "$UPDRAFT" keys verify --key state/signing.pub v2.udm
it_expect_rc "the published version 2 is signed too" 0
it_expect_grep "... and encrypted" "$OUT" "the model inside is encrypted"
coord_stop

# ---- a stand-in coordinator serving a tampered signed model with a matching sha256 -------------
mkdir -p fake
flip v1.udm fake/model.udm 400
SHA=$(sha256sum fake/model.udm | cut -d' ' -f1)
SIZE=$(stat -c %s fake/model.udm)
cat >fake/config.json <<EOF
{"token": "dev7.00ff12ab", "model_file": "$PWD/fake/model.udm",
 "task": {"federation": 1, "round": 42, "number": 1,
          "model": {"name": "tab", "version": 1, "sha256": "$SHA", "size": $SIZE,
                    "url": "/v1/models/tab/versions/1/file"},
          "epochs": 1, "batch": 16, "lr": 0.05, "max_norm": 1000, "deadline": $(($(date +%s) + 60)),
          "upload": "/v1/rounds/42/updates"}}
EOF
$PY "$UD_SOURCE_DIR/tests/tools/fake_coordinator.py" fake >out/fake.log 2>&1 &
FAKE=$!
for _ in $(seq 50); do [ -s fake/port ] && break; sleep 0.1; done
IT_TIMEOUT=30 it_run tampered_run "$AGENT" run --coordinator "http://127.0.0.1:$(cat fake/port)" \
    --token dev7.00ff12ab --data parts/client-000 --state ag4 --model-pubkey state/signing.pub \
    --model-key model.key --poll 0.2 --max-rounds 1 --json
it_expect_grep "a tampered model whose sha256 the task vouches for: refused" "$ERR" \
    "altered after it was signed"
it_expect_eq "... no update posted to the stand-in" 0 \
    "$($PY -c 'import json,sys; print(len([l for l in map(json.loads, open(sys.argv[1])) if l["method"] == "POST" and l["path"].endswith("/updates")]))' fake/requests.jsonl)"
it_expect_eq "... the failure reported instead" 1 \
    "$($PY -c 'import json,sys; print(len([l for l in map(json.loads, open(sys.argv[1])) if l["method"] == "POST" and l["path"].endswith("/failures")]))' fake/requests.jsonl)"
kill "$FAKE" 2>/dev/null
it_finish
