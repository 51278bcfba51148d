#!/usr/bin/env bash
# multihost_loop.sh — the README's loop across three "hosts" (network namespaces, lib/netns.bash):
# the coordinator on ud-lp-h0 serving HTTPS on its address (a test CA, a certificate for that
# address) and a CURVE worker link on all its interfaces, advertising the address; two workers
# started by hand under mpirun on ud-lp-h1 that join the job with --coordinator and their CURVE
# keys; the CLI and two agents on ud-lp-h2 reaching the coordinator over HTTPS. One job, then
# one the coordinator launches itself (its workers get the advertised address, not the
# default 127.0.0.1), then one federated round of the job's model. Needs root.
# shellcheck source=SCRIPTDIR/lib/common.bash
source "$(dirname "$0")/lib/common.bash"
COORDINATOR=$UD_BIN_DIR/updraft-coordinator
AGENT=$UD_BIN_DIR/updraft-agent
it_require_bins "$WORKER" "$UPDRAFT" "$COORDINATOR" "$AGENT"
source "$IT_LIB/mpi.bash"
source "$IT_LIB/netns.bash"

netns_up ud-lp- 10.231.16 3
C=$(netns_addr 0) # the coordinator's host
H1=${NETNS_HOSTS[1]}
H2=${NETNS_HOSTS[2]}
ZMQ=tcp://$C:8471
export UPDRAFT_URL=https://$C:8443 UPDRAFT_CACERT=$PWD/pki/ca.pem
ON1=("$NETNS_LAUNCH" --exec "$H1") # a command run on h1, h2
ON2=("$NETNS_LAUNCH" --exec "$H2")

# ---- a test CA and a certificate for the coordinator's address; CURVE keys
mkdir -p pki keys
(
    cd pki
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=updraft test CA" -keyout ca.key -out ca.pem
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$C" \
        -keyout server.key -out server.csr
    printf 'subjectAltName=IP:%s\nextendedKeyUsage=serverAuth\n' "$C" >ext.cnf
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -extfile ext.cnf -out server.pem
) >out/openssl.log 2>&1 || {
    cat out/openssl.log
    exit 1
}
"$UPDRAFT" keys generate --type curve --out keys/server.key >/dev/null
"$UPDRAFT" keys generate --type curve --out keys/worker.key >/dev/null
"$UPDRAFT" keys generate --type curve --out keys/launched.key >/dev/null
grep -v '^#' keys/worker.key.pub >keys/clients.txt

# ---- the coordinator on h0
"$NETNS_LAUNCH" --exec "${NETNS_HOSTS[0]}" "$COORDINATOR" --state "$PWD/state" --http "$C:8443" \
    --zmq "tcp://*:8471" --advertise "$ZMQ" --tls-cert pki/server.pem --tls-key pki/server.key \
    --curve-secret keys/server.key --curve-clients keys/clients.txt \
    --curve-worker-key keys/launched.key >out/coordinator.log 2>&1 &
COORD_PID=$!
for ((i = 0; i < 100; i++)); do
    "${ON2[@]}" curl -sf --cacert pki/ca.pem "$UPDRAFT_URL/healthz" >/dev/null 2>&1 && break
    kill -0 "$COORD_PID" 2>/dev/null || break
    sleep 0.1
done
it_run health "${ON2[@]}" curl -sf --cacert pki/ca.pem "$UPDRAFT_URL/healthz"
it_expect_rc "from $H2, the coordinator answers over HTTPS at $UPDRAFT_URL" 0
it_expect_grep "the coordinator serves HTTPS on its own address" out/coordinator.log \
    "serving HTTPS on $UPDRAFT_URL"
it_expect_grep "... and a CURVE worker link" out/coordinator.log "worker link encrypted with CURVE"
export UPDRAFT_TOKEN_FILE=$PWD/state/admin.token
it_run plain "${ON2[@]}" curl -s -o /dev/null "http://$C:8443/healthz"
it_expect_py "plain HTTP to the HTTPS port gets no answer (curl exit $RC)" 'v[0] != 0' "$RC"

# ---- a job trained by two workers started by hand on h1
fixture csv c.csv 400 3
printf 'input 2 1 1\ndense 16\nrelu\ndense 3\nsoftmax\n' >tab.spec
printf '{"name": "tab", "data": "%s", "arch": "%s", "epochs": 3, "batch": 32, "lr": 0.05,
 "threads": 1, "validation": "none"}\n' "$PWD/c.csv" "$PWD/tab.spec" >job.json
it_run submit "${ON2[@]}" "$UPDRAFT" job submit job.json
it_expect_rc "the job is submitted from $H2 over HTTPS" 0
JOB=$(grep -o 'job-[0-9]*' "$OUT" | head -1)
it_run workers "${ON1[@]}" "$MPI" 2 "$WORKER" --coordinator "$ZMQ" --job "$JOB" \
    --curve-server-key state/curve-server.pub --curve-secret keys/worker.key
it_expect_rc "2 workers on $H1 join $JOB over the CURVE link and train it" 0
it_run jobshow "${ON2[@]}" "$UPDRAFT" --json job show "$JOB"
it_expect_eq "the job SUCCEEDED" '"SUCCEEDED"' "$(it_json "$OUT" 'last["state"]')"
# (rank 0 registers; rank 1 is listed once it has sent a heartbeat, which a job this short may
# not have done: every rank listed, at least rank 0)
it_expect_eq "the ranks the coordinator heard from ran on $H1" "[\"$H1\"]" \
    "$(it_json "$OUT" 'sorted(set(r["host"] for r in last["ranks"]))')"
it_expect_eq "its model is registered as tab version 1" '{"name": "tab", "version": 1}' \
    "$(it_json "$OUT" 'last["model"]')"

# The same job launched by the coordinator (mpirun on h0): its workers reach it at --advertise.
sed 's/"name": "tab"/"name": "tab-launched", "launch": {"np": 2}/' job.json >job2.json
it_run submit2 "${ON2[@]}" "$UPDRAFT" job submit job2.json
JOB2=$(grep -o 'job-[0-9]*' "$OUT" | head -1)
it_run wait2 "${ON2[@]}" "$UPDRAFT" job wait "$JOB2" --timeout 50
it_expect_rc "a job the coordinator launches on its own host SUCCEEDS" 0
it_expect_grep "... its workers were told the advertised endpoint" "state/jobs/$JOB2/worker.log" \
    "--coordinator $ZMQ"

# ---- one federated round of the job's model, by two agents on h2
it_run part "$UPDRAFT" dataset partition --data c.csv --clients 2 --scheme iid --seed 1 --out parts
it_run enrol "${ON2[@]}" "$UPDRAFT" devices add --count 2 --name edge --out tokens
it_expect_rc "2 devices enrolled from $H2" 0
printf '{"model": "tab", "rounds": 1, "clients_per_round": 2, "min_clients": 2,
 "round_deadline": 60, "epochs": 2, "batch": 16, "lr": 0.05, "max_norm": 1000}\n' >fed.json
it_run fed "${ON2[@]}" "$UPDRAFT" fed start fed.json
it_expect_rc "a federation of tab started from $H2" 0
mapfile -t TOKS < <(awk '{print $2}' tokens)
APIDS=()
for d in 0 1; do
    timeout 60 "${ON2[@]}" "$AGENT" run --coordinator "$UPDRAFT_URL" --cacert pki/ca.pem \
        --model-pubkey state/signing.pub --token "${TOKS[$d]}" --data "parts/client-00$d" \
        --state "agent-$d" --poll 0.2 --max-rounds 1 --json >"out/agent-$d.jsonl" 2>"out/agent-$d.log" &
    APIDS+=($!)
done
for d in 0 1; do
    RC=0
    wait "${APIDS[$d]}" || RC=$?
    ERR=out/agent-$d.log
    it_expect_rc "agent $d on $H2 contributes its round over HTTPS and exits" 0
done
it_run fedwait "${ON2[@]}" "$UPDRAFT" fed wait 1 --timeout 30
it_expect_rc "the federation SUCCEEDED" 0
it_run fedshow "${ON2[@]}" "$UPDRAFT" --json fed show 1
it_expect_eq "... publishing tab version 2 from both devices' updates" '"2 2"' \
    "$(it_json "$OUT" 'str(last["current_version"]) + " " + str(last["rounds_detail"][0]["accepted"])')"

kill -TERM "$COORD_PID" 2>/dev/null || true
wait "$COORD_PID" 2>/dev/null || true
it_finish
