#!/usr/bin/env bash
# coord_protocol.sh — updraft-coordinator's worker protocol at the socket level.
#
# A real coordinator on loopback (REST for submitting jobs, ZeroMQ for the protocol) and
# tests/tools/zmq_poke as the worker: registration (unknown job, wrong world, live ranks, the
# shard plan), misbehaving peers (garbage, truncated, other protocol version, extra frames, a
# frame over the size limit, a type workers do not send) after which a heartbeat is still
# answered, progress and checkpoints in the database, model uploads (wrong sha256, not a .udm,
# registered, re-sent, next version), heartbeat silence -> RESTARTING -> FAILED, done
# (retryable, fatal, cancelled), the local launcher with a stand-in mpirun (exit before
# registering, relaunch with --resume up to max_restarts, the cancel grace), and a kill -9 of
# the coordinator: rows intact, running jobs recovered with a grace period.
# shellcheck disable=SC2086 # job ids (job-000001) are unquoted inside requests on purpose
# shellcheck source=SCRIPTDIR/lib/common.bash
source "$(dirname "$0")/lib/common.bash"

COORD=$UD_BIN_DIR/updraft-coordinator
POKE=${UD_POKE:-$UD_BIN_DIR/../tests/zmq_poke}
it_require_bins "$COORD" "$POKE"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
HP=$(free_port)
ZP=$(free_port)
ZMQ=tcp://127.0.0.1:$ZP
URL=http://127.0.0.1:$HP
STATE=$UD_TEST_SCRATCH/state
LOG=$UD_TEST_SCRATCH/coord.log
COORD_PID=
HB=6      # --heartbeat-timeout (generous: checks spawn python, and the machine may be busy)
RESTART=6 # --restart-timeout

# shellcheck disable=SC2317 # called from the EXIT trap
stop_coord() { [ -n "$COORD_PID" ] && kill -9 "$COORD_PID" 2>/dev/null; COORD_PID=; }
# On the way out: the coordinator, and any stand-in mpirun still running (by its process group).
KEEP=
# shellcheck disable=SC2317 # the EXIT trap
cleanup()
{
    [ -n "$KEEP" ] && kill "$KEEP" 2>/dev/null
    stop_coord
    local p
    for p in $(sql "SELECT pid FROM jobs WHERE pid IS NOT NULL" 2>/dev/null); do
        kill -9 -- "-$p" 2>/dev/null || true
    done
}
trap cleanup EXIT

start_coord()
{
    "$COORD" --state "$STATE" --http "127.0.0.1:$HP" --zmq "$ZMQ" --heartbeat-timeout $HB \
        --restart-timeout $RESTART --cancel-grace 1 --mpirun "$UD_TEST_SCRATCH/fake-mpirun" \
        --worker /bin/true 2>>"$LOG" &
    COORD_PID=$!
    for _ in $(seq 50); do
        curl -sf "$URL/healthz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "coordinator did not come up:"
    tail -5 "$LOG"
    exit 1
}

# sql QUERY: rows as a|b|c lines (NULL as empty).
sql()
{
    python3 - "$STATE/updraft.db" "$1" <<'EOF'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], timeout=10)
for r in c.execute(sys.argv[2]):
    print("|".join("" if v is None else str(v) for v in r))
EOF
}

submit()
{
    curl -s -H "Authorization: Bearer $(cat "$STATE/admin.token")" -d "$1" "$URL/v1/jobs" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])'
}

cancel() { curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $(cat "$STATE/admin.token")" "$URL/v1/jobs/$1/cancel"; }

# poke LABEL REQUEST...: replies as JSON lines in $OUT
poke()
{
    local label=$1
    shift
    it_run "$label" "$POKE" "$ZMQ" "$@"
}

# reply N KEY: field KEY of reply line N (0-based; -1 the last) of $OUT, strings raw.
reply()
{
    python3 - "$OUT" "$1" "$2" <<'EOF'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
try:
    v = lines[int(sys.argv[2])][sys.argv[3]]
except (IndexError, KeyError):
    v = "<none>"
print(v if isinstance(v, str) else json.dumps(v))
EOF
}

# wait_state JOB STATE SECONDS: polls the database; returns 1 on a timeout.
wait_state()
{
    local _
    for _ in $(seq $(($3 * 10))); do
        [ "$(sql "SELECT state FROM jobs WHERE id = '$1'")" = "$2" ] && return 0
        sleep 0.1
    done
    return 1
}
state_of() { sql "SELECT state FROM jobs WHERE id = '$1'"; }

fixture idx tiny 80 4 4 80 3
DATA=$UD_TEST_SCRATCH/tiny-images-idx3-ubyte
spec() { echo "{\"name\": \"$1\", \"data\": \"$DATA\", \"arch\": \"mlp\", \"batch\": 8, \"epochs\": 1, \"validation\": 0.1${2:+, $2}}"; }

# A stand-in for mpirun: registers as rank 0 of the job it was given with zmq_poke, then does
# what FAKE_MODE (a file, so each launch can read the current one) says.
cat >"$UD_TEST_SCRATCH/fake-mpirun" <<EOF
#!/usr/bin/env bash
echo "fake mpirun: \$*"
echo "env: OMPI_ALLOW_RUN_AS_ROOT=\$OMPI_ALLOW_RUN_AS_ROOT OMPI_MCA_btl=\$OMPI_MCA_btl"
while [ \$# -gt 0 ]; do
    case \$1 in
    --coordinator) ep=\$2; shift ;;
    --job) job=\$2; shift ;;
    -np) np=\$2; shift ;;
    esac
    shift
done
mode=\$(cat "$UD_TEST_SCRATCH/fake-mode")
case \$mode in
exit3) echo "the worker could not start"; exit 3 ;;
crash)
    "$POKE" "\$ep" register,job=\$job,world=\$np,pid=\$\$ heartbeat,job=\$job,rank=1,pid=\$\$ \
        checkpoint,job=\$job,step=4,path=/tmp/ckpt-4
    echo "rank 1 lost its peer"; exit 1 ;;
stubborn)
    "$POKE" "\$ep" register,job=\$job,world=\$np,pid=\$\$
    while true; do
        "$POKE" "\$ep" heartbeat,job=\$job,rank=0,pid=\$\$ heartbeat,job=\$job,rank=1,pid=\$\$ >/dev/null
        sleep 0.3
    done ;;
esac
EOF
chmod +x "$UD_TEST_SCRATCH/fake-mpirun"
echo exit3 >"$UD_TEST_SCRATCH/fake-mode"

start_coord
it_expect_grep "start-up names the REST URL" "$LOG" "REST API at $URL"
it_expect_grep "start-up names the ZeroMQ endpoint" "$LOG" "workers connect to $ZMQ"
it_expect_grep "start-up names the token file" "$LOG" "admin token in $STATE/admin.token"
it_expect_eq "admin token file is mode 0600" 600 "$(stat -c %a "$STATE/admin.token")"

# ---- registration
poke reg_unknown register,job=job-000099,world=2 register,job=,world=1
it_expect_eq "register for an unknown job: error" error "$(reply 0 t)"
it_expect_eq "... UD_ENOTFOUND" UD_ENOTFOUND "$(reply 0 code_name)"
it_expect_eq "register for any job with none waiting: UD_ENOTFOUND" UD_ENOTFOUND "$(reply 1 code_name)"
it_expect_grep "unknown job logged as dropped" "$LOG" "dropped message from"

A=$(submit "$(spec proto)")
poke reg_a register,job=$A,world=2,pid=1001 heartbeat,job=$A,rank=0,pid=1001 heartbeat,job=$A,rank=1,pid=1002
# Job A's two ranks heartbeat in the background from here until its model is registered, so
# that slow steps (every check runs python) never make it silent.
keepalive()
{
    while :; do
        "$POKE" "$ZMQ" "heartbeat,job=$1,rank=0,pid=1001" "heartbeat,job=$1,rank=1,pid=1002" >/dev/null 2>&1
        sleep 0.5
    done
}
keepalive "$A" &
KEEP=$!

it_expect_eq "register: a job reply" job "$(reply 0 t)"
it_expect_eq "... for the job" "$A" "$(reply 0 job)"
it_expect_eq "... plan for 2 ranks" 2 "$(reply 0 world)"
it_expect_py "... shards and validation cover the 80 samples" 'v[0] == 80 and v[1] + v[2] == 80 and v[2] == 8' \
    "$(reply 0 samples)" "$(python3 -c "import json; print(sum(json.loads('$(reply 0 shards)')))")" "$(reply 0 nvalidation)"
it_expect_grep "... args carry --report-every 20" "$OUT" '"--report-every", "20"'
it_expect_grep "... out under the state dir" "$OUT" "$STATE/jobs/$A/model.udm"
it_expect_eq "heartbeats acked" "ack ack" "$(reply 1 t) $(reply 2 t)"
it_expect_eq "job RUNNING with np 2 and a stored plan" "RUNNING|2|1" "$(sql "SELECT state, np, plan IS NOT NULL FROM jobs WHERE id = '$A'")"


# ---- misbehaving peers: each dropped with a log line; the next heartbeat is still answered
ndrop=$(grep -c "dropped message from" "$LOG")
poke bad --timeout 300 garbage "trunc:heartbeat,job=$A,rank=0" "version:2:heartbeat,job=$A,rank=0" \
    "frames:heartbeat,job=$A,rank=0" "raw:c0" ack,cancel=0 heartbeat,job=$A,rank=0,pid=1001 heartbeat,job=$A,rank=1,pid=1002
it_expect_eq "garbage: no reply (no id to answer)" none "$(reply 0 t)"
it_expect_py "truncated message: dropped (an error reply or none)" 'v[0] in ("none", "error")' "$(reply 1 t)"
it_expect_eq "other protocol version: refused with UD_EVERSION" UD_EVERSION "$(reply 2 code_name)"
it_expect_eq "two frames: no reply" none "$(reply 3 t)"
it_expect_eq "msgpack nil: no reply" none "$(reply 4 t)"
it_expect_eq "a type only the coordinator sends: error" UD_EFORMAT "$(reply 5 code_name)"
it_expect_eq "heartbeats after all that: acked" "ack ack" "$(reply 6 t) $(reply 7 t)"
it_expect_py "each bad message logged as dropped" 'v[0] - v[1] >= 6' "$(grep -c "dropped message from" "$LOG")" "$ndrop"
it_expect_grep "the version mismatch says both versions" "$LOG" "protocol version 2, this side speaks 1"

# A frame declaring 300 MiB (over UD_PROTO_MAX_MESSAGE): libzmq drops the connection.
it_run oversize python3 - "$ZP" <<'EOF'
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"\xff" + b"\x00" * 8 + b"\x7f\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" * 32)
got = b""
while len(got) < 64:
    got += s.recv(64 - len(got))
body = b"\x05READY\x0bSocket-Type" + struct.pack(">I", 6) + b"DEALER"
s.sendall(bytes([0x04, len(body)]) + body)
s.sendall(b"\x02" + struct.pack(">Q", 300 << 20) + b"x" * 4096)
s.settimeout(10)
try:
    while s.recv(4096):
        pass
    print("closed")
except OSError as ex:
    print("still open: %s" % ex)
EOF
it_expect_grep "a 300 MiB frame: the connection is closed" "$OUT" closed
it_expect_grep "... and logged" "$LOG" "closed (the peer left, or sent something libzmq refused"
poke after_oversize heartbeat,job=$A,rank=0,pid=1001 heartbeat,job=$A,rank=1,pid=1002
it_expect_eq "heartbeats after the oversized frame: acked" "ack ack" "$(reply 0 t) $(reply 1 t)"

# ---- wrong world, live ranks, ranks outside the job
poke conflicts register,job=$A,world=3,pid=1001 register,job=$A,world=2,pid=4242,host=elsewhere \
    heartbeat,job=$A,rank=5 register,job=$A,world=2,pid=1001
it_expect_eq "register with the wrong world: UD_ECONFLICT" UD_ECONFLICT "$(reply 0 code_name)"
it_expect_py "... naming both sizes" '"2 ranks" in v[0] and "3" in v[0]' "$(reply 0 msg)"
it_expect_eq "register while other ranks are live: UD_ECONFLICT" UD_ECONFLICT "$(reply 1 code_name)"
it_expect_grep "... saying so" "$OUT" "live ranks"
it_expect_eq "heartbeat from rank 5 of a 2-rank job: UD_EINVAL" UD_EINVAL "$(reply 2 code_name)"
it_expect_eq "the same rank 0 registering again (a reconnect): job" job "$(reply 3 t)"
it_expect_eq "... and the job stays RUNNING" RUNNING "$(state_of "$A")"

# ---- progress and checkpoints
poke progress progress,job=$A,step=5,epoch=0,steps_per_epoch=9,total_steps=9,m.loss=0.75,m.accuracy=0.5,m.val_loss=nan \
    checkpoint,job=$A,step=5,epoch=0,minibatch=5,path=/tmp/proto-ckpt-5
it_expect_eq "progress and checkpoint acked" "ack ack" "$(reply 0 t) $(reply 1 t)"
it_expect_eq "metrics stored (NaN left out)" "accuracy|0.5 loss|0.75" "$(sql "SELECT key, value FROM metrics WHERE job = '$A' ORDER BY key" | tr '\n' ' ' | sed 's/ $//')"
it_expect_eq "progress columns" "5|0|9|9" "$(sql "SELECT iteration, epoch, steps_per_epoch, total_steps FROM jobs WHERE id = '$A'")"
it_expect_eq "checkpoint row and resume_from" "5|/tmp/proto-ckpt-5" "$(sql "SELECT c.iteration, j.resume_from FROM checkpoints c JOIN jobs j ON j.id = c.job WHERE c.job = '$A'")"

# ---- model uploads
poke model_bad model,job=$A,name=proto,sha256=zero model,job=$A,name=proto,udm=junk model,job=$A,name=other
it_expect_eq "model with a wrong sha256: UD_ECHECKSUM" UD_ECHECKSUM "$(reply 0 code_name)"
it_expect_py "bytes that are not a .udm: refused" 'v[0] not in ("<none>", "")' "$(reply 1 code_name)"
it_expect_eq "model under another name: UD_EINVAL" UD_EINVAL "$(reply 2 code_name)"
it_expect_eq "the job is still RUNNING" RUNNING "$(state_of "$A")"
it_expect_eq "nothing registered" 0 "$(sql "SELECT count(*) FROM models")"

poke model_ok model,job=$A,name=proto,udm=tiny:1,m.test_accuracy=0.625 model,job=$A,name=proto,udm=tiny:1 \
    model,job=$A,name=proto,udm=tiny:2 heartbeat,job=$A,rank=1,pid=1002
it_expect_eq "model registered: model_ack version 1" "model_ack 1" "$(reply 0 t) $(reply 0 version)"
SHA=$(reply 0 sha256)
it_expect_eq "re-sent upload: the same version and sha256" "model_ack 1 $SHA" "$(reply 1 t) $(reply 1 version) $(reply 1 sha256)"
it_expect_eq "other bytes for a finished job: UD_ECONFLICT" UD_ECONFLICT "$(reply 2 code_name)"
it_expect_eq "heartbeat of a SUCCEEDED job: ack without cancel" "ack false" "$(reply 3 t) $(reply 3 cancel)"
it_expect_eq "job SUCCEEDED with model_version 1" "SUCCEEDED|1" "$(sql "SELECT state, model_version FROM jobs WHERE id = '$A'")"
STORED=$(sql "SELECT sha256 FROM models")
it_expect_eq "one models row" "proto|1|$STORED|$A" "$(sql "SELECT name, version, sha256, job FROM models")"
it_expect_grep "metrics as sent" <(sql "SELECT metrics FROM models") '"test_accuracy":0.625'
it_expect_grep "lineage names job and dataset" <(sql "SELECT lineage FROM models") "\"job\":\"$A\""
it_expect_eq "the file is in the store under its sha256" 1 "$([ -f "$STATE/models/sha256/${STORED:0:2}/$STORED" ] && echo 1)"
it_expect_eq "... signed: the uploaded bytes (sha256 $SHA) inside a 64-byte header and signature" "$SHA" \
    "$(/usr/bin/python3 -c 'import hashlib,sys; b=open(sys.argv[1],"rb").read(); print(hashlib.sha256(b[64:-64]).hexdigest())' "$STATE/models/sha256/${STORED:0:2}/$STORED")"

kill "$KEEP"
wait "$KEEP" 2>/dev/null || true
KEEP=

B=$(submit "$(spec proto)")
poke model_b register,job=$B,world=1 model,job=$B,name=proto,udm=tiny:3
it_expect_eq "a second job of the same name: version 2" "model_ack 2" "$(reply 1 t) $(reply 1 version)"

# ---- silence: RUNNING -> RESTARTING (after --heartbeat-timeout) -> FAILED (--restart-timeout)
C=$(submit "$(spec silent)")
poke silent register,job=$C,world=2 heartbeat,job=$C,rank=0
it_expect_eq "silent job registered" job "$(reply 0 t)"
if wait_state "$C" RESTARTING $((HB + 3)); then it_pass "silent ranks: RESTARTING"; else it_fail "silent ranks: RESTARTING" "state $(state_of "$C")"; fi
it_expect_grep "... the message names the silent ranks" <(sql "SELECT message FROM jobs WHERE id = '$C'") "silent for"
if wait_state "$C" FAILED $((RESTART + 3)); then it_pass "RESTARTING too long: FAILED"; else it_fail "RESTARTING too long: FAILED" "state $(state_of "$C")"; fi
it_expect_grep "... saying why" <(sql "SELECT message FROM jobs WHERE id = '$C'") "within $RESTART s of going RESTARTING"
poke silent_after heartbeat,job=$C,rank=0 register,job=$C,world=2
it_expect_eq "heartbeat of a FAILED job: cancel" "ack true" "$(reply 0 t) $(reply 0 cancel)"
it_expect_eq "register for a FAILED job: UD_ESTATE" UD_ESTATE "$(reply 1 code_name)"

# ---- done: retryable -> RESTARTING, re-register -> RUNNING, fatal -> FAILED; cancelled
D=$(submit "$(spec retry)")
poke done_d register,job=$D,world=1 done,job=$D,status=failed,code=-20,msg=peer-died
it_expect_eq "done failed with UD_EMPI: acked" ack "$(reply 1 t)"
it_expect_eq "... job RESTARTING" RESTARTING "$(state_of "$D")"
poke done_d2 register,job=$D,world=1,resume=1 done,job=$D,status=failed,code=-2,msg=bad-input
it_expect_eq "re-register with --resume: job, resume true" "job true" "$(reply 0 t) $(reply 0 resume)"
it_expect_eq "done failed with UD_EINVAL: FAILED" FAILED "$(state_of "$D")"
it_expect_grep "... with the worker's message" <(sql "SELECT message FROM jobs WHERE id = '$D'") "bad-input"

E=$(submit "$(spec cancelme)")
poke cancel_e1 register,job=$E,world=1
it_expect_eq "cancel over REST: 202" 202 "$(cancel "$E")"
poke cancel_e2 heartbeat,job=$E,rank=0 done,job=$E,status=cancelled
it_expect_eq "heartbeat after the cancel: cancel true" true "$(reply 0 cancel)"
it_expect_eq "done cancelled: CANCELLED" CANCELLED "$(state_of "$E")"
it_expect_eq "events recorded each transition" 2 "$(sql "SELECT count(*) FROM events WHERE job = '$E' AND kind = 'state'")"

# ---- the local launcher, with the stand-in mpirun
F=$(submit "$(spec launched '"launch": {"np": 2}')")
if wait_state "$F" FAILED 5; then it_pass "mpirun exiting before registration: FAILED"; else it_fail "mpirun exiting before registration: FAILED" "state $(state_of "$F")"; fi
it_expect_grep "... message has the exit status" <(sql "SELECT message FROM jobs WHERE id = '$F'") "exited with status 3 before rank 0 registered"
it_expect_grep "... and worker.log's last line" <(sql "SELECT message FROM jobs WHERE id = '$F'") "the worker could not start"
it_expect_grep "launch command line" "$STATE/jobs/$F/worker.log" "--oversubscribe -np 2 /bin/true --coordinator $ZMQ --job $F"
it_expect_grep "launch environment" "$STATE/jobs/$F/worker.log" "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_MCA_btl=self,vader,tcp"

echo crash >"$UD_TEST_SCRATCH/fake-mode"
G=$(submit "$(spec relaunch '"launch": {"np": 2, "max_restarts": 1}')")
if wait_state "$G" FAILED 15; then it_pass "crashing mpirun: relaunched, then FAILED"; else it_fail "crashing mpirun: relaunched, then FAILED" "state $(state_of "$G")"; fi
it_expect_eq "... one relaunch (max_restarts 1)" 1 "$(sql "SELECT restarts FROM jobs WHERE id = '$G'")"
it_expect_grep "... gave up saying so" <(sql "SELECT message FROM jobs WHERE id = '$G'") "gave up after 1 relaunch"
it_expect_eq "... went RESTARTING twice" 2 "$(sql "SELECT count(*) FROM events WHERE job = '$G' AND message LIKE 'RUNNING -> RESTARTING%'")"
it_expect_grep "... relaunched with --resume" "$STATE/jobs/$G/worker.log" "--job $G --resume"
it_expect_grep "... the exit status in the message" <(sql "SELECT message FROM events WHERE job = '$G' AND message LIKE 'RUNNING -> RESTARTING%'") "exited with status 1"

echo stubborn >"$UD_TEST_SCRATCH/fake-mode"
H=$(submit "$(spec stubborn '"launch": {"np": 2}')")
if wait_state "$H" RUNNING 5; then it_pass "launched job registers: RUNNING"; else it_fail "launched job registers: RUNNING" "state $(state_of "$H")"; fi
HPID=$(sql "SELECT pid FROM jobs WHERE id = '$H'")
it_expect_eq "cancel of the launched job: 202" 202 "$(cancel "$H")"
if wait_state "$H" CANCELLED 5; then it_pass "workers ignoring the cancel: CANCELLED after the grace"; else it_fail "workers ignoring the cancel: CANCELLED after the grace" "state $(state_of "$H")"; fi
it_expect_grep "... with SIGTERM" <(sql "SELECT message FROM jobs WHERE id = '$H'") "SIGTERM"
for _ in $(seq 30); do kill -0 "$HPID" 2>/dev/null || break; sleep 0.2; done
it_expect_eq "... the mpirun is gone" gone "$(kill -0 "$HPID" 2>/dev/null && echo alive || echo gone)"

# ---- kill -9 and restart: rows intact, RUNNING jobs recovered with a grace period
sleep 0.5 # let the monitor record the last exits
K=$(submit "$(spec survivor)")
poke survivor register,job=$K,world=1 heartbeat,job=$K,rank=0 progress,job=$K,step=3,epoch=0,steps_per_epoch=9,total_steps=9,m.loss=1.5
before=$(sql "SELECT (SELECT count(*) FROM jobs), (SELECT count(*) FROM models), (SELECT count(*) FROM metrics), (SELECT count(*) FROM events), (SELECT count(*) FROM checkpoints)")
{
    kill -9 "$COORD_PID"
    wait "$COORD_PID"
} 2>/dev/null || true # (bash would report "Killed")
COORD_PID=
sleep $((HB + 1)) # the last heartbeat is now older than the timeout
start_coord
it_expect_eq "after kill -9: every row still there" "$before" "$(sql "SELECT (SELECT count(*) FROM jobs), (SELECT count(*) FROM models), (SELECT count(*) FROM metrics), (SELECT count(*) FROM events), (SELECT count(*) FROM checkpoints)")"
it_expect_grep "start-up lists the recovered job" "$LOG" "recovered $K (survivor) RUNNING"
sleep 1
it_expect_eq "recovered job keeps RUNNING for a grace period" RUNNING "$(state_of "$K")"
poke survivor2 heartbeat,job=$K,rank=0 model,job=$K,name=survivor
it_expect_eq "heartbeat to the new coordinator: acked" ack "$(reply 0 t)"
it_expect_eq "... and the job completes" "model_ack SUCCEEDED" "$(reply 1 t) $(state_of "$K")"
it_expect_eq "models from before the crash still served" "proto|2" "$(sql "SELECT name, max(version) FROM models WHERE name = 'proto'")"

# ---- a clean stop
kill -TERM "$COORD_PID"
rc=0
wait "$COORD_PID" || rc=$?
COORD_PID=
it_expect_eq "SIGTERM: exit 0" 0 "$rc"
it_expect_grep "... logged" "$LOG" "stopping (SIGTERM)"
it_expect_nogrep "no crash or assertion in the log" "$LOG" "assert"

it_finish
