#!/usr/bin/env bash
# tls.sh — transport security with the real programs (issue 6, "Trust"):
#   - HTTPS: a test CA and a server certificate made with openssl; the coordinator serves
#     HTTPS; the CLI works with --cacert (and $UPDRAFT_CACERT, and a pin) and refuses, clearly,
#     without it; the model file downloads with Range and ETag; a federated round completes with
#     updraft-agent run --cacert (one agent also pinning the server's key); an agent given a
#     wrong CA or a wrong pin exits 2 with the TLS message, and the coordinator never saw its
#     token (its device was never heard from); bad certificate/key pairs stop the coordinator
#     at start with a reason;
#   - plain HTTP: the coordinator warns when it serves it on 0.0.0.0, not on loopback; the CLI
#     and the agent warn for an http:// URL whose host is not loopback;
#   - CURVE: a job with launch.np 2 completes over a CURVE worker link; a worker with a wrong
#     server key, one whose key is not listed, and one without CURVE fail with the handshake
#     message in bounded time; the coordinator logs the refused key's id; a listed key gets
#     through the handshake.
source "$(dirname "$0")/lib/common.bash"
source "$IT_LIB/coord.bash"
source "$IT_LIB/mpi.bash"

AGENT=$UD_BIN_DIR/updraft-agent
it_require_bins "$COORDINATOR" "$UPDRAFT" "$AGENT" "$WORKER"
# keygen SECRET PUBLIC: a CURVE keypair (updraft keys generate); prints the key id.
keygen()
{
    "$UPDRAFT" keys generate --type curve --out "$1" | sed -n '1s/.* //p'
    mv "$1.pub" "$2"
}
command -v openssl >/dev/null || {
    echo "$IT_NAME: openssl is missing (deploy/install-deps.sh installs it)"
    exit 1
}
T0=$SECONDS

# ---- a test CA, a server certificate for 127.0.0.1 and localhost, and an unrelated CA
mkdir -p pki
(
    cd pki
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=updraft test CA" -keyout ca.key -out ca.pem
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
        -keyout server.key -out server.csr
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >ext.cnf
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -extfile ext.cnf -out server.pem
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=another CA" -keyout ca-wrong.key -out ca-wrong.pem
    openssl x509 -in server.pem -pubkey -noout >server-pub.pem
) >out/openssl.log 2>&1 || {
    cat out/openssl.log
    exit 1
}
PIN="sha256//$(openssl pkey -pubin -in pki/server-pub.pem -outform der | openssl dgst -sha256 -binary | base64)"
WRONG_PIN="sha256//$(head -c 32 /dev/zero | base64)"

# ---- HTTPS coordinator
it_run badpair "$COORDINATOR" --state "$PWD/bad" --http 127.0.0.1:0 --tls-cert pki/server.pem \
    --tls-key pki/ca.key
it_expect_rc "a key of another certificate stops the coordinator at start" 1
it_expect_grep "... saying so" "$ERR" "does not match the certificate"
it_run notpem "$COORDINATOR" --state "$PWD/bad" --http 127.0.0.1:0 --tls-cert pki/server.key \
    --tls-key pki/server.key
it_expect_grep "a key file given as the certificate: 'not a PEM certificate'" "$ERR" \
    "--tls-cert pki/server.key: not a PEM certificate"
it_run halfpair "$COORDINATOR" --state "$PWD/bad" --tls-cert pki/server.pem
it_expect_rc "--tls-cert without --tls-key is a usage error" 2

URL=https://127.0.0.1:$HTTP_PORT
export UPDRAFT_URL=$URL
CURL_TLS=(--cacert pki/ca.pem)
coord_start "$PWD/state" --tls-cert pki/server.pem --tls-key pki/server.key || exit 1
it_expect_grep "the coordinator says it serves HTTPS" "$COORD_LOG" "serving HTTPS on $URL"
it_expect_nogrep "... with no plain-HTTP warning" "$COORD_LOG" "plain HTTP"

it_run status "$UPDRAFT" --cacert pki/ca.pem status
it_expect_rc "updraft --cacert status works over HTTPS" 0
it_expect_grep "... and prints the status" "$OUT" "coordinator"
it_expect_nogrep "... without a plain-HTTP warning" "$ERR" "plain HTTP"
it_run status_env env UPDRAFT_CACERT=pki/ca.pem "$UPDRAFT" status
it_expect_rc "\$UPDRAFT_CACERT does the same" 0
it_run status_noca "$UPDRAFT" status
it_expect_rc "without --cacert the CLI exits 1" 1
it_expect_grep "... naming the server and the system store" "$ERR" \
    "TLS: $URL: server certificate not trusted by the system's CA store"
it_run status_pin "$UPDRAFT" --cacert pki/ca.pem --pin "$PIN" status
it_expect_rc "the CLI with the server's pin works" 0
it_run status_pinfile "$UPDRAFT" --cacert pki/ca.pem --pin pki/server-pub.pem status
it_expect_rc "... and with the pin as a public key file" 0
it_run status_badpin "$UPDRAFT" --cacert pki/ca.pem --pin "$WRONG_PIN" status
it_expect_rc "a wrong pin: exit 1" 1
it_expect_grep "... saying the key does not match the pin" "$ERR" "does not match the pin"
it_run plain_to_https "$UPDRAFT" --url "http://127.0.0.1:$HTTP_PORT" --cacert pki/ca.pem status
it_expect_rc "--cacert with an http:// URL is a usage error" 2

# A model, devices, and a federation of one round over HTTPS.
fixture csv c.csv 400 3
printf 'input 2 1 1\ndense 16\nrelu\ndense 3\nsoftmax\n' >tab.spec
it_run init "$UPDRAFT" init --arch tab.spec --data c.csv --seed 1 --out base.udm
it_run part "$UPDRAFT" dataset partition --data c.csv --clients 2 --scheme iid --seed 1 --out parts
it_expect_rc "a base model and 2 devices' data" 0
it_run push "$UPDRAFT" --cacert pki/ca.pem model push base.udm --name tab
it_expect_rc "model push over HTTPS (a binary upload)" 0
it_run pull "$UPDRAFT" --cacert pki/ca.pem model pull tab --out pulled.udm
it_expect_rc "model pull over HTTPS" 0
it_run pulled_verify "$UPDRAFT" keys verify --key state/signing.pub pulled.udm
it_expect_rc "... the pushed model, signed by the coordinator" 0
if cmp -s base.udm <(tail -c +65 pulled.udm | head -c "$(stat -c %s base.udm)"); then it_pass "... around the same bytes"; else it_fail "pulled = pushed" "files differ"; fi
FILE_URL=$URL/v1/models/tab/versions/1/file
code=$(curl -s --cacert pki/ca.pem "${READ_AUTH[@]}" -r 100-199 -D out/range.hdr -o range.bin -w '%{http_code}' "$FILE_URL")
it_expect_eq "a Range request for the model file over HTTPS → 206" 206 "$code"
if cmp -s range.bin <(tail -c +101 pulled.udm | head -c 100); then it_pass "... with bytes 100..199"; else it_fail "range bytes" "differ"; fi
etag=$(tr -d '\r' <out/range.hdr | sed -n 's/^[Ee][Tt][Aa][Gg]: //p')
code=$(curl -s --cacert pki/ca.pem "${READ_AUTH[@]}" -H "If-None-Match: $etag" -o /dev/null -w '%{http_code}' "$FILE_URL")
it_expect_eq "... and its ETag answers If-None-Match with 304" 304 "$code"

it_run enrol "$UPDRAFT" --cacert pki/ca.pem devices add --count 2 --name tls --out tokens
it_expect_rc "devices enrolled over HTTPS" 0
cat >spec.json <<EOF
{"model": "tab", "rounds": 1, "clients_per_round": 2, "min_clients": 2, "round_deadline": 60,
 "epochs": 2, "batch": 16, "lr": 0.05, "max_norm": 1000}
EOF
it_run start "$UPDRAFT" --cacert pki/ca.pem fed start spec.json
it_expect_rc "federation started over HTTPS" 0
mapfile -t TOKS < <(awk '{print $2}' tokens)
timeout 60 "$AGENT" run --coordinator "$URL" --model-pubkey state/signing.pub --cacert pki/ca.pem --token "${TOKS[0]}" \
    --data parts/client-000 --state agent-0 --poll 0.2 --max-rounds 1 --json \
    >out/agent-0.jsonl 2>out/agent-0.log &
A0=$!
timeout 60 "$AGENT" run --coordinator "$URL" --model-pubkey state/signing.pub --cacert pki/ca.pem --pin "$PIN" \
    --token "${TOKS[1]}" --data parts/client-001 --state agent-1 --poll 0.2 --max-rounds 1 --json \
    >out/agent-1.jsonl 2>out/agent-1.log &
A1=$!
RC=0
wait $A0 || RC=$?
it_expect_rc "an agent with --cacert contributes its round over HTTPS and exits" 0
RC=0
wait $A1 || RC=$?
it_expect_rc "an agent with --cacert and the server's --pin does too" 0
it_run fedwait "$UPDRAFT" --cacert pki/ca.pem fed wait 1 --timeout 30
it_expect_rc "the federation SUCCEEDED over HTTPS" 0
api GET /v1/federations/1
it_expect_eq "... publishing version 2 from both devices' updates" "2 2" \
    "$(jq_ "$API_BODY" 'str(j["current_version"]) + " " + str(j["rounds_detail"][0]["accepted"])')"
it_expect_nogrep "no plain-HTTP warning for an https:// URL" out/agent-0.log "plain HTTP"

# A device whose agent is given the wrong CA, or a wrong pin: exit 2, and its token never
# reaches the coordinator (the device is never heard from).
it_run enrol3 "$UPDRAFT" --cacert pki/ca.pem devices add --name victim --out token3
TOK3=$(awk '{print $2}' token3)
DEV3=$(awk '{print $1}' token3)
it_run wrongca "$AGENT" run --coordinator "$URL" --model-pubkey state/signing.pub --cacert pki/ca-wrong.pem --token "$TOK3" \
    --data parts/client-000 --state agent-3 --poll 0.2
it_expect_rc "an agent with the wrong CA exits 2 (not retried)" 2
it_expect_grep "... with the TLS message" "$ERR" \
    "TLS: $URL: server certificate not trusted by CA file pki/ca-wrong.pem (SSL certificate problem: unable to get local issuer certificate)"
it_run wrongpin "$AGENT" run --coordinator "$URL" --model-pubkey state/signing.pub --cacert pki/ca.pem --pin "$WRONG_PIN" \
    --token "$TOK3" --data parts/client-000 --state agent-3 --poll 0.2 --json
it_expect_rc "an agent with a wrong pin exits 2" 2
it_expect_grep "... saying the server key does not match the pin" "$ERR" \
    "TLS: $URL: server public key does not match the pin $WRONG_PIN"
it_expect_grep "... also as a JSON error event" "$OUT" '"event":"error"'
api GET /v1/devices
it_expect_eq "the coordinator never saw that device's token (last_seen null)" null \
    "$(jq_ "$API_BODY" "[d for d in j['devices'] if str(d['id']) == '$DEV3'][0]['last_seen']")"
coord_stop

# ---- plain HTTP: a warning off loopback, none on loopback
P2=$(free_port)
"$COORDINATOR" --state "$PWD/state-open" --http "0.0.0.0:$P2" --zmq tcp://127.0.0.1:0 \
    >out/coord-open.log 2>&1 &
OPEN_PID=$!
for ((i = 0; i < 100; i++)); do
    curl -sf "http://127.0.0.1:$P2/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
it_expect_grep "plain HTTP on 0.0.0.0: the coordinator warns" out/coord-open.log \
    "warning: plain HTTP on 0.0.0.0"
it_run cli_open "$UPDRAFT" --url "http://0.0.0.0:$P2" --token-file state-open/reader.token status
it_expect_rc "the CLI still talks to http://0.0.0.0" 0
it_expect_grep "... and warns that the URL is not loopback" "$ERR" "is plain HTTP to a host that is not loopback"
it_run agent_open "$AGENT" run --coordinator "http://0.0.0.0:$P2" --allow-unsigned --token "dev-9.00ff" \
    --data parts/client-000 --state agent-open --poll 0.2
it_expect_grep "the agent warns for a plain-HTTP URL off loopback" "$ERR" "is plain HTTP to a host that is not loopback"
it_run cli_lo "$UPDRAFT" --url "http://127.0.0.1:$P2" --token-file state-open/reader.token status
it_expect_nogrep "... the CLI does not for http://127.0.0.1" "$ERR" "plain HTTP"
kill -TERM $OPEN_PID 2>/dev/null || true
wait $OPEN_PID 2>/dev/null || true

# ---- CURVE on the worker link
mkdir -p keys
keygen keys/server.key keys/server.pub >/dev/null
keygen keys/worker.key keys/worker.pub >/dev/null
ALICE=$(keygen keys/alice.key keys/alice.pub)
STRANGER=$(keygen keys/stranger.key keys/stranger.pub)
{
    echo "# workers allowed besides the launched ones"
    grep -v '^#' keys/alice.pub
} >keys/clients.txt
it_run curve_nosecret "$COORDINATOR" --state "$PWD/bad" --curve-clients keys/clients.txt
it_expect_rc "--curve-clients without --curve-secret is a usage error" 2
cat keys/alice.key >keys/leaked.txt
it_run curve_secretline "$COORDINATOR" --state "$PWD/bad" --http none --zmq tcp://127.0.0.1:0 \
    --curve-secret keys/server.key --curve-clients keys/leaked.txt
it_expect_rc "a secret key in --curve-clients stops the coordinator" 1
it_expect_grep "... saying to list public keys only" "$ERR" "list the workers' public keys only"
mkdir -p keys/clients.d
cp keys/alice.pub keys/clients.d/
"$COORDINATOR" --state "$PWD/bad" --http none --zmq tcp://127.0.0.1:0 --curve-secret keys/server.key \
    --curve-clients keys/clients.d --quiet 2>out/curve_dir.err &
DIR_PID=$!
for ((i = 0; i < 50; i++)); do
    grep -q "worker link encrypted" out/curve_dir.err && break
    sleep 0.1
done
it_expect_grep "a directory of *.pub files is read as the allowed keys" out/curve_dir.err \
    "only listed worker keys are accepted"
kill -TERM $DIR_PID 2>/dev/null || true
wait $DIR_PID 2>/dev/null || true

URL=http://127.0.0.1:$HTTP_PORT
export UPDRAFT_URL=$URL
CURL_TLS=()
coord_start "$PWD/state-curve" --curve-secret keys/server.key --curve-clients keys/clients.txt \
    --curve-worker-key keys/worker.key || exit 1
it_expect_grep "the coordinator says the worker link is CURVE" "$COORD_LOG" "worker link encrypted with CURVE"
it_expect_nogrep "plain HTTP on loopback: no warning" "$COORD_LOG" "plain HTTP"
spec=$(cat <<EOF
{"name": "curve-tab", "data": "$PWD/c.csv", "arch": "$PWD/tab.spec", "epochs": 2, "batch": 32,
 "lr": 0.05, "threads": 1, "launch": {"np": 2}}
EOF
)
api POST /v1/jobs "$spec"
it_expect_eq "a job with launch.np 2 is accepted" 201 "$API_STATUS"
JOB=$(jq_ "$API_BODY" 'j["id"]')
if wait_job "$JOB" "SUCCEEDED FAILED CANCELLED" 60; then :; fi
it_expect_eq "... and SUCCEEDS over the CURVE link" SUCCEEDED "$JOB_STATE"
it_expect_grep "... its workers were launched with the CURVE keys" "state-curve/jobs/$JOB/worker.log" \
    "--curve-server-key $PWD/state-curve/curve-server.pub"

# A worker with a wrong server key: the handshake fails within bounded time.
start=$SECONDS
it_run wrongserver "$WORKER" --coordinator "$ZMQ" --job "$JOB" --curve-server-key keys/stranger.pub \
    --curve-secret keys/alice.key --coordinator-timeout 120
took=$((SECONDS - start))
it_expect_error "a worker with a wrong --curve-server-key fails"
it_expect_grep "... with the handshake message" "$ERR" \
    "CURVE handshake with $ZMQ failed: the coordinator closed the connection: a wrong --curve-server-key"
it_expect_py "... within 30 s, not its 120 s coordinator timeout (took ${took}s)" 'v[0] <= 30' "$took"

# A worker whose key is not listed: refused; the coordinator logs the key id.
start=$SECONDS
it_run unlisted "$WORKER" --coordinator "$ZMQ" --job "$JOB" \
    --curve-server-key state-curve/curve-server.pub --curve-secret keys/stranger.key \
    --coordinator-timeout 120
took=$((SECONDS - start))
it_expect_error "a worker whose key is not allowed fails"
it_expect_grep "... saying its key $STRANGER was refused" "$ERR" \
    "CURVE handshake with $ZMQ failed: the coordinator refused this worker's key $STRANGER"
it_expect_py "... within 30 s (took ${took}s)" 'v[0] <= 30' "$took"
it_expect_grep "the coordinator logs the refused key id" "$COORD_LOG" "refused worker CURVE key $STRANGER"
it_expect_grep "... and the wrong server key's undecryptable hello" "$COORD_LOG" \
    "its CURVE hello did not decrypt"

# Mixed: a worker without CURVE against a CURVE coordinator.
start=$SECONDS
it_run mixed "$WORKER" --coordinator "$ZMQ" --job "$JOB" --coordinator-timeout 120
took=$((SECONDS - start))
it_expect_error "a plain worker against a CURVE coordinator fails"
# (libzmq reports either a mechanism mismatch or a connection closed mid-handshake: whichever
# side reads the other's greeting first; both messages say what to pass.)
it_expect_grep "... saying the coordinator requires CURVE" "$ERR" \
    "requires CURVE: pass --curve-server-key"
it_expect_grep "... in a ZeroMQ handshake message" "$ERR" "ZeroMQ handshake with $ZMQ failed"
it_expect_py "... within 30 s (took ${took}s)" 'v[0] <= 30' "$took"

# A listed key: the handshake passes and the coordinator answers (here: the job is finished).
it_run listed "$WORKER" --coordinator "$ZMQ" --job "$JOB" \
    --curve-server-key state-curve/curve-server.pub --curve-secret keys/alice.key \
    --coordinator-timeout 20
it_expect_grep "a listed worker key ($ALICE) gets through to the coordinator's answer" "$ERR" \
    "the coordinator says"
it_expect_nogrep "... with no handshake failure" "$ERR" "handshake"
coord_stop

echo "     ($((SECONDS - T0)) s)"
it_finish
