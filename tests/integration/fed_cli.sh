#!/usr/bin/env bash
# fed_cli.sh — the `updraft` federation commands against a real coordinator.
#   1. A base model made by updraft-worker in a second is pushed (`model push`); a push without
#      the token (401) or of a file that is not a .udm (422) is refused with the server's words.
#   2. `devices add --count 3 --out F` enrols three devices: the tokens go to F (0600, "ID TOKEN"
#      lines) and never to stdout; an --out that cannot be written enrols nothing. `devices`
#      shows when each was last seen.
#   3. `fed start` refuses an unknown key (400), an lr outside the model's range (422) and an
#      unknown model (404). A federation of one round that nobody uploads to: `fed show` and
#      `fed list` describe it, the round FAILS at its deadline ("0 updates by the deadline"),
#      the federation ends FAILED and `fed wait` exits 1.
#   4. A second federation, with an evaluation set: the sampled devices upload crafted deltas
#      (tests/tools/fed_upload.py), a stale and a duplicate upload are counted as rejections, the
#      round PUBLISHES version 2, `fed wait --progress` prints it with its eval accuracy, exit 0.
#   5. `fed cancel`, `fed wait --timeout`, and usage errors.
#   6. `devices revoke ID`: the device then shows revoked=yes and its token gets 401.
#   Roles: a sampled device downloads its task's model with its token until its update is in;
#   another device, another model and the job list are 403 to it; no token is 401.
# shellcheck source=SCRIPTDIR/lib/common.bash
source "$(dirname "$0")/lib/common.bash"
it_require_bins "$WORKER" "$UPDRAFT" "$UD_BIN_DIR/updraft-coordinator"
source "$IT_LIB/coord.bash"

STATE=$UD_TEST_SCRATCH/state
# fed_upload.py needs msgpack, which the system Python has (a pyenv python3 on PATH may not).
SYSPY=/usr/bin/python3
UPLOAD=$UD_SOURCE_DIR/tests/tools/fed_upload.py

coord_start "$STATE" || { it_fail "coordinator starts" "no /healthz"; it_finish; }
it_pass "coordinator starts"

# device_get TOKEN PATH — GET PATH with a device's token; the status code.
device_get()
{
    curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $1" "$URL$2" 2>/dev/null || echo 000
}

# device_poll TOKEN — GET its task (which also marks the device available); the status code.
device_poll()
{
    local t=$1
    curl -s -o "$UD_TEST_SCRATCH/out/task-${t%%.*}.json" -w '%{http_code}' \
        -H "Authorization: Bearer $t" "$URL/v1/devices/${t%%.*}/task" 2>/dev/null || echo 000
}

# ---- 1. a base model, pushed
fixture idx tiny 60 28 28 60 10
it_run worker "$WORKER" --data tiny-images-idx3-ubyte --arch mlp --input 1,28,28 --epochs 1 \
    --threads 1 --quiet --out m.udm
it_expect_rc "updraft-worker makes a small base model" 0

it_run push_noauth env -u UPDRAFT_TOKEN -u UPDRAFT_TOKEN_FILE "$UPDRAFT" model push m.udm --name fm
it_expect_rc "model push without the token exits 1" 1
it_expect_grep "it prints the server's 401 message" "$ERR" "needs the admin token: Authorization: Bearer TOKEN (HTTP 401)"
it_run push_bad "$UPDRAFT" model push tiny-labels-idx1-ubyte --name fm
it_expect_rc "model push of a file that is not a .udm exits 1" 1
it_expect_grep "it prints the server's 422 message" "$ERR" "not a valid .udm"
it_expect_grep "with the status" "$ERR" "(HTTP 422)"
it_run push_noname "$UPDRAFT" model push m.udm
it_expect_rc "model push without --name is a usage error" 2
api GET /v1/models
it_expect_eq "the refused pushes registered nothing" 0 "$(jq_ "$API_BODY" 'len(j["models"])')"

it_run push "$UPDRAFT" model push m.udm --name fm
it_expect_rc "model push m.udm --name fm" 0
api GET /v1/models/fm/versions/1
SHA=$(jq_ "$API_BODY" 'j["sha256"]')
it_expect_grep "it prints the version and the stored file's sha256" "$OUT" "registered fm version 1 (sha256 $SHA)"
it_run pull_fm "$UPDRAFT" model pull fm@1 --out fm1.udm
it_expect_eq "the stored file is the pushed model, signed by the coordinator (64-byte header and signature)" \
    "$(sha256sum m.udm | cut -d' ' -f1)" \
    "$(/usr/bin/python3 -c 'import hashlib,sys; b=open(sys.argv[1],"rb").read(); print(hashlib.sha256(b[64:-64]).hexdigest())' fm1.udm)"
it_run verify_fm "$UPDRAFT" keys verify --key "$STATE/signing.pub" fm1.udm
it_expect_rc "updraft keys verify: the signature verifies against STATE/signing.pub" 0
it_run push_json "$UPDRAFT" --json model push m.udm --name fm-copy
it_expect_eq "model push --json prints the server's answer (the same signed bytes)" "fm-copy 1 $SHA" \
    "$(jq_ "$OUT" 'j["name"] + " " + str(j["version"]) + " " + j["sha256"]')"

# ---- 2. devices
it_run devices0 "$UPDRAFT" devices
it_expect_grep "devices before any enrolment" "$OUT" "no devices enrolled"
it_run add_baddir "$UPDRAFT" devices add --count 2 --out "$UD_TEST_SCRATCH/no/such/dir/tokens"
it_expect_rc "devices add --out into a missing directory exits 1" 1
api GET /v1/devices
it_expect_eq "and enrolled nothing (the file is made before the request)" 0 "$(jq_ "$API_BODY" 'j["count"]')"

it_run add "$UPDRAFT" devices add --count 3 --out tokens
it_expect_rc "devices add --count 3 --out tokens" 0
it_expect_eq "the tokens file is mode 0600" 600 "$(stat -c %a tokens 2>/dev/null)"
it_expect_eq "it holds 3 lines of 'ID TOKEN'" 3 "$(grep -cE '^([0-9]+) \1\.[0-9a-f]{64}$' tokens)"
T1=$(sed -n 1p tokens | cut -d' ' -f2)
T2=$(sed -n 2p tokens | cut -d' ' -f2)
T3=$(sed -n 3p tokens | cut -d' ' -f2)
it_expect_nogrep "no token on stdout" "$OUT" "${T1#*.}"
it_expect_nogrep "nor on stderr" "$ERR" "${T1#*.}"
it_expect_grep "stdout names the devices" "$OUT" "enrolled device 3 (device-3)"
it_expect_eq "no temporary file left beside it" "tokens" "$(echo tokens*)"

it_run add_json "$UPDRAFT" --json devices add --name spare --count 1 --out spare.tokens
it_expect_rc "devices add --json --out" 0
it_expect_eq "--json with --out prints the devices without their tokens" "spare-4 False" \
    "$(jq_ "$OUT" 'j["devices"][0]["name"] + " " + str(any("token" in d for d in j["devices"]))')"
it_run add_one "$UPDRAFT" devices add --name phone
it_expect_rc "devices add --name phone (no --out)" 0
it_expect_py "without --out the token is printed once" 'v[0] == 1' \
    "$(grep -cE '^5 +phone +5\.[0-9a-f]{64}$' "$OUT")"

for t in "$T1" "$T2" "$T3"; do code=$(device_poll "$t"); done
it_expect_eq "a device polling its task gets 204 (nothing to do)" 204 "$code"
code=$(curl -s -o out/task-403.json -w '%{http_code}' -H "Authorization: Bearer $T1" "$URL/v1/devices/2/task")
it_expect_eq "device 1's token on device 2's task: 403" 403 "$code"
it_run devices "$UPDRAFT" devices
it_expect_py "devices: the three that polled were seen seconds ago" 'v[0] == 3' \
    "$(grep -cE '^[123] +device-[123] +[0-9]+s ago +0 +no$' "$OUT")"
it_expect_py "and the others never" 'v[0] == 2' "$(grep -cE '^[45] .* never +0 +no$' "$OUT")"
it_run devices_json "$UPDRAFT" --json devices
it_expect_eq "devices --json: the server's list" 5 "$(jq_ "$OUT" 'j["count"]')"

# ---- 3. fed start refusals, then a federation nobody uploads to
it_run start_key "$UPDRAFT" fed start /dev/stdin <<<'{"model": "fm", "roundz": 1}'
it_expect_rc "fed start with an unknown key exits 1" 1
it_expect_grep "the 400 names the key" "$ERR" "unknown key 'roundz'"
it_expect_grep "with the status" "$ERR" "(HTTP 400)"
it_run start_lr "$UPDRAFT" fed start /dev/stdin <<<'{"model": "fm", "lr": 5}'
it_expect_rc "fed start with lr outside the model's range exits 1" 1
it_expect_grep "the 422 says the model does not allow it" "$ERR" "update parameters do not allow this"
it_expect_grep "with the status" "$ERR" "(HTTP 422)"
it_run start_model "$UPDRAFT" fed start /dev/stdin <<<'{"model": "nope"}'
it_expect_rc "fed start of an unknown model exits 1" 1
it_expect_grep "the 404 names the model" "$ERR" "model 'nope' has no registered version"
it_expect_grep "with the status" "$ERR" "(HTTP 404)"
it_run start_noauth env -u UPDRAFT_TOKEN "$UPDRAFT" fed start /dev/stdin <<<'{"model": "fm"}'
it_expect_rc "fed start without the token exits 1" 1
api GET /v1/federations
it_expect_eq "the refused specs started nothing" 0 "$(jq_ "$API_BODY" 'len(j["federations"])')"

cat >f1.json <<EOF
{"name": "idle", "model": "fm", "rounds": 1, "clients_per_round": 2, "min_clients": 1,
 "round_deadline": 2}
EOF
it_run start "$UPDRAFT" fed start f1.json
it_expect_rc "fed start f1.json" 0
F1=$(awk 'NR == 1 {print $1}' "$OUT")
it_expect_grep "it prints the id, name and base version" "$OUT" "$F1 started: idle, model fm from version 1"
it_run show "$UPDRAFT" fed show "$F1"
it_expect_rc "fed show" 0
cp "$OUT" out/show-first.out
# The round may close (2 s after it opens) while these run: the list may say FAILED already.
it_run list "$UPDRAFT" fed list
it_expect_py "fed list: one line for it (id, name, state, model, versions, round)" 'v[0] == 1' \
    "$(grep -cE "^$F1 +idle +(RUNNING|FAILED) +fm +1 -> 1 +[01]/1 " "$OUT")"
OUT=out/show-first.out
it_expect_grep "fed show: id, name, state" "$OUT" "$F1  idle  RUNNING"
it_expect_grep "fed show: model and versions" "$OUT" "fm  version 1 -> 1"
it_expect_py "fed show: round k of n" 'v[0] == 1' "$(grep -cE '^round +[01] of 1 ' "$OUT")"
it_expect_grep "fed show: the spec with its defaults" "$OUT" '"server_lr":1.0'

it_run wait1 "$UPDRAFT" fed wait "$F1" --progress --timeout 30
it_expect_rc "fed wait on a federation that fails exits 1" 1
it_expect_grep "--progress prints the round as it fails" "$OUT" "$F1 round 1/1 FAILED"
it_expect_grep "the last line says how it ended" "$OUT" "$F1: FAILED: 0 of 1 rounds published"
it_expect_grep "stderr too" "$ERR" "federation $F1 ended FAILED"
it_run show1 "$UPDRAFT" fed show "$F1"
it_expect_grep "fed show: the federation FAILED" "$OUT" "$F1  idle  FAILED"
it_expect_py "fed show: round 1 FAILED, 2 sampled, 0 accepted, at the deadline" 'v[0] == 1' \
    "$(grep -cE '^ +1 FAILED +2 +0 +- +- +- +0 updates by the deadline, 1 needed: nothing published$' "$OUT")"
it_run show1_json "$UPDRAFT" --json fed show "$F1"
it_expect_eq "fed show --json: the server's object" "FAILED FAILED" \
    "$(jq_ "$OUT" 'j["state"] + " " + j["rounds_detail"][0]["state"]')"
it_run show404 "$UPDRAFT" fed show 999
it_expect_rc "fed show of an unknown id exits 1" 1
it_expect_grep "with the server's 404" "$ERR" "no federation '999' (HTTP 404)"

# ---- 4. a round that publishes
cat >f2.json <<EOF
{"name": "live", "model": "fm", "rounds": 1, "clients_per_round": 2, "min_clients": 1,
 "round_deadline": 60, "eval": "$UD_TEST_SCRATCH/tiny-images-idx3-ubyte"}
EOF
for t in "$T1" "$T2" "$T3"; do device_poll "$t" >/dev/null; done
it_run start2 "$UPDRAFT" fed start - <f2.json
it_expect_rc "fed start - (the spec on stdin)" 0
F2=$(awk 'NR == 1 {print $1}' "$OUT")
"$UPDRAFT" fed wait "$F2" --progress --timeout 50 >out/wait2.out 2>out/wait2.err &
WAITPID=$!
# Once the round is OPEN, exactly its sampled devices have a task.
for _ in $(seq 100); do
    api GET "/v1/federations/$F2"
    [ "$(jq_ "$API_BODY" 'j["rounds_detail"][0]["state"]')" = OPEN ] && break
    sleep 0.1
done
it_expect_eq "the round opens with 2 of the 3 available devices sampled" "OPEN 2" \
    "$(jq_ "$API_BODY" 'j["rounds_detail"][0]["state"] + " " + str(len(j["rounds_detail"][0]["participants"]))')"
SEL=()
for t in "$T1" "$T2" "$T3"; do [ "$(device_poll "$t")" = 200 ] && SEL+=("$t"); done
it_expect_eq "the sampled devices, and only they, get a task" 2 "${#SEL[@]}"
ROUND=$(jq_ "out/task-${SEL[0]%%.*}.json" 'j["round"]')
# Roles: a device reads its task's model file and nothing else.
MODEL_URL=$(jq_ "out/task-${SEL[0]%%.*}.json" 'j["model"]["url"]')
for t in "$T1" "$T2" "$T3"; do case " ${SEL[*]} " in *" $t "*) ;; *) UNSEL=$t ;; esac; done
it_expect_eq "a sampled device downloads its task's model ($MODEL_URL) with its token" 200 "$(device_get "${SEL[0]}" "$MODEL_URL")"
it_expect_eq "... the unsampled device may not (403)" 403 "$(device_get "$UNSEL" "$MODEL_URL")"
it_expect_eq "... nor another model (403)" 403 "$(device_get "${SEL[0]}" /v1/models/fm-copy/versions/1/file)"
it_expect_eq "... nor the job list (403)" 403 "$(device_get "${SEL[0]}" /v1/jobs)"
it_expect_eq "... and no token at all is 401" 401 "$(curl -s -o /dev/null -w '%{http_code}' "$URL$MODEL_URL")"
api GET "/v1/rounds/$ROUND"
FLOATS=$(jq_ "$API_BODY" 'j["delta_floats"]')
it_run up1 "$SYSPY" "$UPLOAD" "$URL" "${SEL[0]}" "$ROUND" --base 1 --floats "$FLOATS" --random 1 --value 0.001
it_expect_grep "the first sampled device's update is accepted" "$OUT" '200 {"status":"accepted"'
it_expect_eq "once its update is in, the device's model read is over (403)" 403 "$(device_get "${SEL[0]}" "$MODEL_URL")"
it_run dup "$SYSPY" "$UPLOAD" "$URL" "${SEL[0]}" "$ROUND" --base 1 --floats "$FLOATS" --random 1 --value 0.001
it_expect_grep "sent again: duplicate" "$OUT" '"status":"duplicate"'
it_run stale "$SYSPY" "$UPLOAD" "$URL" "${SEL[1]:-x}" "$ROUND" --base 7 --floats "$FLOATS"
it_expect_grep "an update against another version: 409 stale" "$OUT" '409 '
it_run up2 "$SYSPY" "$UPLOAD" "$URL" "${SEL[1]:-x}" "$ROUND" --base 1 --floats "$FLOATS" --random 2 --value 0.001
it_expect_grep "the second sampled device's update is accepted" "$OUT" '"accepted":2'
RC=0
wait "$WAITPID" || RC=$?
ERR=out/wait2.err
it_expect_rc "fed wait exits 0 once the federation SUCCEEDED" 0
it_expect_py "--progress: round 1 PUBLISHED version 2 with its eval accuracy (4 decimals)" 'v[0] == 1' \
    "$(grep -cE "^$F2 round 1/1 PUBLISHED +version 2 +eval accuracy [01]\.[0-9]{4}$" out/wait2.out)"
it_expect_grep "the last line: SUCCEEDED" out/wait2.out "$F2: SUCCEEDED: 1 of 1 rounds published; model fm is at version 2"
it_run show2 "$UPDRAFT" fed show "$F2"
it_expect_grep "fed show: base -> current version" "$OUT" "fm  version 1 -> 2"
it_expect_py "fed show: the round line (sampled, accepted, rejections by reason, version, eval, message)" \
    'v[0] == 1' "$(grep -cE '^ +1 PUBLISHED +2 +2 duplicate=1,stale=1 +2 +[01]\.[0-9]{4}  published version 2 from 2 updates' "$OUT")"
it_run list2 "$UPDRAFT" fed list
it_expect_py "fed list: both federations" 'v[0] == 1 and v[1] == 1' \
    "$(grep -cE "^$F1 +idle +FAILED " "$OUT")" "$(grep -cE "^$F2 +live +SUCCEEDED +fm +1 -> 2 +1/1 " "$OUT")"
it_run list_json "$UPDRAFT" --json fed list
it_expect_eq "fed list --json: the server's list" "idle live" "$(jq_ "$OUT" '" ".join(f["name"] for f in j["federations"])')"
it_run models "$UPDRAFT" model show fm@2
it_expect_rc "the published version is in the registry" 0

# ---- 5. cancel, timeouts, usage
it_run start3 "$UPDRAFT" fed start /dev/stdin <<<'{"name": "long", "model": "fm", "rounds": 5, "round_deadline": 600}'
F3=$(awk 'NR == 1 {print $1}' "$OUT")
it_run wait_to "$UPDRAFT" fed wait "$F3" --timeout 1
it_expect_rc "fed wait --timeout on a running federation exits 1" 1
it_expect_grep "saying it timed out" "$ERR" "timed out after 1 s"
it_run cancel "$UPDRAFT" fed cancel "$F3"
it_expect_rc "fed cancel" 0
it_expect_grep "it prints the new state" "$OUT" "$F3: CANCELLED"
it_run cancel2 "$UPDRAFT" fed cancel "$F3"
it_expect_rc "cancelling it again exits 1" 1
it_expect_grep "with the server's 409" "$ERR" "is already CANCELLED (HTTP 409)"
it_run cancel_noauth env -u UPDRAFT_TOKEN "$UPDRAFT" fed cancel "$F1"
it_expect_grep "fed cancel without the token: 401" "$ERR" "(HTTP 401)"
it_run wait3 "$UPDRAFT" fed wait "$F3"
it_expect_rc "fed wait on a cancelled federation exits 1" 1
it_expect_grep "it says CANCELLED" "$OUT" "$F3: CANCELLED"

it_run u1 "$UPDRAFT" fed
it_expect_rc "fed without a subcommand: usage error" 2
it_run u2 "$UPDRAFT" fed bogus 1
it_expect_rc "fed bogus: usage error" 2
it_run u3 "$UPDRAFT" devices add --count 0
it_expect_rc "devices add --count 0: usage error" 2
it_run u4 "$UPDRAFT" devices remove
it_expect_rc "devices remove: usage error" 2
it_run u5 "$UPDRAFT" status --count 3
it_expect_rc "status --count (an option of devices add): usage error" 2
it_expect_grep "it names the command and the option" "$ERR" \
    "updraft status: unknown option --count (try updraft status --help)"
it_run u6 "$UPDRAFT" fed wait --help
it_expect_rc "fed wait --help exits 0" 0
it_expect_grep "fed wait --help prints its line" "$OUT" "fed wait ID [--timeout S] [--progress]"

# ---- 6. devices revoke
it_run add_lost "$UPDRAFT" devices add --name lost --out lost.token
it_expect_rc "devices add --name lost --out lost.token" 0
LOST_ID=$(cut -d' ' -f1 lost.token)
LOST_TOKEN=$(cut -d' ' -f2 lost.token)
it_run revoke "$UPDRAFT" devices revoke "$LOST_ID"
it_expect_rc "devices revoke ID" 0
it_expect_grep "it says the device is revoked" "$OUT" "device $LOST_ID revoked"
it_run devices_rv "$UPDRAFT" devices
it_expect_py "devices shows it revoked=yes" 'v[0] == 1' \
    "$(grep -cE "^$LOST_ID +lost +never +0 +yes$" "$OUT")"
it_expect_eq "its token gets 401" 401 "$(device_poll "$LOST_TOKEN")"
it_run revoke_noauth env -u UPDRAFT_TOKEN "$UPDRAFT" devices revoke "$LOST_ID"
it_expect_grep "devices revoke without the token: 401" "$ERR" "(HTTP 401)"
it_run revoke_404 "$UPDRAFT" devices revoke 9999
it_expect_rc "devices revoke of an unknown device exits 1" 1
it_expect_grep "with the server's 404" "$ERR" "(HTTP 404)"
it_run help "$UPDRAFT" --help
it_expect_grep "--help lists fed wait" "$OUT" "fed wait ID [--timeout S] [--progress]"
it_expect_grep "--help lists devices add" "$OUT" "devices add [--name N] [--count K] [--out F]"
it_finish
