#!/usr/bin/env bash
# coord_e2e.sh — the coordinator with real workers: a job submitted over REST with a local
# launch of 2 ranks (2000 Fashion-MNIST samples, 2 epochs) reaches SUCCEEDED; its progress and
# metrics history are in the API; the model version is downloadable (ETag = sha256) and
# `updraft eval` scores it. Then a second job, during which the coordinator is killed with
# kill -9 and restarted: the job, its metrics history and the first model are still there and
# the job completes.
# shellcheck source=SCRIPTDIR/lib/common.bash
source "$(dirname "$0")/lib/common.bash"

COORD=$UD_BIN_DIR/updraft-coordinator
it_require_bins "$COORD" "$WORKER" "$UPDRAFT"
if ! "$WORKER" --help 2>&1 | grep -q -- --coordinator; then
    echo "$IT_NAME: $WORKER has no --coordinator mode (the worker side of the protocol, h-worker)"
    exit 1
fi
if [ ! -f "$FASHION/train-images-idx3-ubyte.gz" ]; then
    echo "$IT_NAME: Fashion-MNIST not found in $FASHION (set UD_FASHION_DIR)"
    exit 1
fi

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
HP=$(free_port)
ZP=$(free_port)
URL=http://127.0.0.1:$HP
STATE=$UD_TEST_SCRATCH/state
LOG=$UD_TEST_SCRATCH/coord.log
COORD_PID=

# shellcheck disable=SC2317 # the EXIT trap
cleanup()
{
    [ -n "$COORD_PID" ] && kill -9 "$COORD_PID" 2>/dev/null
    local p
    for p in $(python3 -c 'import sqlite3, sys; print(" ".join(str(r[0]) for r in sqlite3.connect(sys.argv[1]).execute("SELECT pid FROM jobs WHERE pid IS NOT NULL")))' "$STATE/updraft.db" 2>/dev/null); do
        kill -9 -- "-$p" 2>/dev/null || true
    done
}
trap cleanup EXIT

start_coord()
{
    "$COORD" --state "$STATE" --http "127.0.0.1:$HP" --zmq "tcp://127.0.0.1:$ZP" 2>>"$LOG" &
    COORD_PID=$!
    for _ in $(seq 50); do
        curl -sf "$URL/healthz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "coordinator did not come up:"
    tail -5 "$LOG"
    exit 1
}

# get PATH EXPR: Python EXPR over the JSON document j of GET PATH.
get() { curl -s "$URL$1" | python3 -c 'import json, sys; j = json.load(sys.stdin); v = eval(sys.argv[1]); print(v if isinstance(v, str) else json.dumps(v))' "$2"; }

# wait_done ID SECONDS: until the job is in a terminal state; prints it.
wait_done()
{
    local s=
    for _ in $(seq $(($2 * 2))); do
        s=$(get "/v1/jobs/$1" 'j["state"]')
        case $s in SUCCEEDED | FAILED | CANCELLED) break ;; esac
        sleep 0.5
    done
    echo "$s"
}

SPEC=$(cat <<EOF
{"name": "fashion-e2e", "data": "$FASHION/train-images-idx3-ubyte.gz",
 "test": "$FASHION/t10k-images-idx3-ubyte.gz", "arch": "mlp", "epochs": 2, "batch": 64,
 "max_samples": 2000, "report_every": 5, "checkpoint_every": 10, "launch": {"np": 2}}
EOF
)
submit() { curl -s -H "Authorization: Bearer $(cat "$STATE/admin.token")" -d "$SPEC" "$URL/v1/jobs" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])'; }

start_coord
J1=$(submit)
it_expect_eq "job 1 submitted" job-000001 "$J1"
it_expect_eq "job 1 SUCCEEDED" SUCCEEDED "$(wait_done "$J1" 240)"
[ "$(get "/v1/jobs/$J1" 'j["state"]')" = SUCCEEDED ] || tail -20 "$STATE/jobs/$J1/worker.log"
it_expect_eq "... progress 1" 1 "$(get "/v1/jobs/$J1" 'j["progress"]')"
it_expect_eq "... model version 1" '{"name": "fashion-e2e", "version": 1}' "$(get "/v1/jobs/$J1" 'j["model"]')"
it_expect_py "... a loss history" 'v[0] >= 5' "$(get "/v1/jobs/$J1/metrics?key=loss" 'len(j["metrics"])')"
it_expect_py "... validation accuracy reported" 'v[0] > 0.5' "$(get "/v1/jobs/$J1" 'j["metrics"]["val_accuracy"]["value"]')"
it_expect_py "... test accuracy reported" 'v[0] > 0.5' "$(get "/v1/jobs/$J1" 'j["metrics"].get("test_accuracy", {}).get("value", 0)')"
it_expect_py "... both ranks heartbeated" 'v[0] == 2' "$(get "/v1/jobs/$J1" 'len(j["ranks"])')"

SHA=$(get /v1/models/fashion-e2e/versions/1 'j["sha256"]')
it_run pull curl -sf -D "$UD_TEST_SCRATCH/headers" -o "$UD_TEST_SCRATCH/model.udm" "$URL/v1/models/fashion-e2e/versions/1/file"
it_expect_rc "model file downloads" 0
it_expect_eq "... its sha256 is the registry's" "$SHA" "$(sha256sum "$UD_TEST_SCRATCH/model.udm" | cut -d' ' -f1)"
it_expect_grep "... ETag is the sha256" "$UD_TEST_SCRATCH/headers" "etag: \"$SHA\""
it_run eval "$UPDRAFT" eval "$UD_TEST_SCRATCH/model.udm" --data "$FASHION/t10k-images-idx3-ubyte.gz" --json
it_expect_rc "updraft eval scores it" 0
it_expect_py "... accuracy above 60 %" 'v[0] > 0.6' "$(it_json "$OUT" 'last["accuracy"]')"

# ---- kill -9 mid-job, restart, the job completes
J2=$(submit)
for _ in $(seq 240); do
    it=$(get "/v1/jobs/$J2" 'j["iteration"] or 0')
    [ "$it" -ge 10 ] 2>/dev/null && break
    sleep 0.25
done
it_expect_py "job 2 under way when the coordinator is killed" 'v[0] >= 10' "$it"
nmetrics=$(get "/v1/jobs/$J2/metrics?key=loss" 'len(j["metrics"])')
{
    kill -9 "$COORD_PID"
    wait "$COORD_PID"
} 2>/dev/null || true # (bash would report "Killed")
COORD_PID=
sleep 2
start_coord
it_expect_grep "restart lists job 2" "$LOG" "recovered $J2"
it_expect_py "job 2's metrics history survived" 'v[0] >= v[1]' "$(get "/v1/jobs/$J2/metrics?key=loss" 'len(j["metrics"])')" "$nmetrics"
it_expect_eq "the first model is still registered" "$SHA" "$(get /v1/models/fashion-e2e/versions/1 'j["sha256"]')"
it_expect_eq "job 2 SUCCEEDED after the restart" SUCCEEDED "$(wait_done "$J2" 240)"
[ "$(get "/v1/jobs/$J2" 'j["state"]')" = SUCCEEDED ] || tail -20 "$STATE/jobs/$J2/worker.log"
it_expect_eq "... as version 2" 2 "$(get "/v1/jobs/$J2" 'j["model"]["version"]')"

kill -TERM "$COORD_PID"
rc=0
wait "$COORD_PID" || rc=$?
COORD_PID=
it_expect_eq "coordinator stops cleanly" 0 "$rc"
it_finish
