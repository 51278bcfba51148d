# tests/integration/lib/coord.bash — a coordinator for integration tests, sourced after
# common.bash. Picks free loopback ports, starts and kills updraft-coordinator, and talks REST.
#
#   coord_start STATE [ARGS...]   starts it in the background (log: out/coordinator-N.log),
#                                 waits until /healthz answers; sets COORD_PID, URL, TOKEN
#                                 (admin), READER (the read-only token), READ_AUTH (curl's
#                                 -H for it: every GET but /healthz needs a token), ZMQ
#   coord_kill9                   kill -9 (as a crash would), waits for the process to go
#   coord_stop                    SIGTERM, waits
#   api METHOD PATH [BODY]        curl with the admin token; body in $API_BODY (file),
#                                 HTTP status in $API_STATUS
#   jq_ FILE EXPR                 a Python expression over the JSON in FILE (as `j`)
#   wait_state PATH STATES SECS   polls GET PATH until its "state" is one of STATES
#                                 (space-separated); returns 1 on timeout. $WAIT_STATE is the last,
#                                 $API_BODY the last answer
#   wait_job ID STATES SECS       wait_state on /v1/jobs/ID; $JOB_STATE is the last state
#   wait_iteration ID N SECS      polls until the job's iteration >= N
# Over HTTPS: set URL to https://127.0.0.1:$HTTP_PORT and CURL_TLS=(--cacert CA.pem) after
# sourcing; coord_start's readiness check and api use them.
COORDINATOR=$UD_BIN_DIR/updraft-coordinator
CURL_TLS=()
COORD_RUNS=0
COORD_PID=""

free_port()
{
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

HTTP_PORT=$(free_port)
ZMQ_PORT=$(free_port)
URL=http://127.0.0.1:$HTTP_PORT
ZMQ=tcp://127.0.0.1:$ZMQ_PORT
export UPDRAFT_URL=$URL

coord_start()
{
    local state=$1 i
    shift
    COORD_RUNS=$((COORD_RUNS + 1))
    COORD_LOG=$UD_TEST_SCRATCH/out/coordinator-$COORD_RUNS.log
    "$COORDINATOR" --state "$state" --http "127.0.0.1:$HTTP_PORT" --zmq "tcp://127.0.0.1:$ZMQ_PORT" \
        "$@" >"$COORD_LOG" 2>&1 &
    COORD_PID=$!
    for ((i = 0; i < 100; i++)); do
        if curl -sf "${CURL_TLS[@]}" "$URL/healthz" >/dev/null 2>&1; then
            TOKEN=$(cat "$state/admin.token" 2>/dev/null || true)
            READER=$(cat "$state/reader.token" 2>/dev/null || true)
            # shellcheck disable=SC2034 # read by the scripts
            READ_AUTH=(-H "Authorization: Bearer $READER")
            export UPDRAFT_TOKEN=$TOKEN
            return 0
        fi
        kill -0 "$COORD_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "coordinator did not come up; its log:"
    sed 's/^/    /' "$COORD_LOG" | tail -20
    return 1
}

coord_kill9()
{
    kill -KILL "$COORD_PID" 2>/dev/null || true
    wait "$COORD_PID" 2>/dev/null || true
    COORD_PID=""
}

coord_stop()
{
    [ -n "$COORD_PID" ] || return 0
    kill -TERM "$COORD_PID" 2>/dev/null || true
    local i
    for ((i = 0; i < 100; i++)); do
        kill -0 "$COORD_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$COORD_PID" 2>/dev/null || true
    wait "$COORD_PID" 2>/dev/null || true
    COORD_PID=""
}

API_N=0
api()
{
    local method=$1 path=$2
    API_N=$((API_N + 1))
    API_BODY=$UD_TEST_SCRATCH/out/api-$API_N.json
    local args=(-s "${CURL_TLS[@]}" -o "$API_BODY" -w '%{http_code}' -X "$method"
        -H "Authorization: Bearer $TOKEN")
    if [ $# -ge 3 ]; then
        args+=(-H 'Content-Type: application/json' --data-binary "$3")
    fi
    API_STATUS=$(curl "${args[@]}" "$URL$path" 2>/dev/null) || API_STATUS=000
}

jq_()
{
    python3 - "$1" "$2" <<'EOF' 2>/dev/null || echo "<no value>"
import json, sys
try:
    j = json.load(open(sys.argv[1]))
except Exception:
    j = None
v = eval(sys.argv[2], {"j": j})
print(v if isinstance(v, str) else json.dumps(v))
EOF
}

wait_state()
{
    local path=$1 states=$2 secs=$3 i
    WAIT_STATE=""
    for ((i = 0; i < secs * 5; i++)); do
        api GET "$path"
        WAIT_STATE=$(jq_ "$API_BODY" 'j["state"]')
        case " $states " in *" $WAIT_STATE "*) return 0 ;; esac
        sleep 0.2
    done
    return 1
}

wait_job()
{
    local rc=0
    wait_state "/v1/jobs/$1" "$2" "$3" || rc=$?
    # shellcheck disable=SC2034 # read by the scripts
    JOB_STATE=$WAIT_STATE
    return $rc
}

wait_iteration()
{
    local id=$1 n=$2 secs=$3 i it
    for ((i = 0; i < secs * 5; i++)); do
        api GET "/v1/jobs/$id"
        it=$(jq_ "$API_BODY" 'j.get("iteration") or 0')
        [ "${it:-0}" -ge "$n" ] 2>/dev/null && return 0
        sleep 0.2
    done
    return 1
}

coord_cleanup()
{
    coord_stop
    pkill -KILL -f "updraft-worker --coordinator $ZMQ" 2>/dev/null || true
    pkill -KILL -f "mpirun.*--coordinator $ZMQ" 2>/dev/null || true
}
trap coord_cleanup EXIT
