#!/usr/bin/env bash
# tests/bench/rest.sh — the REST API under load, against the coordinator issue's goals.
#
# Starts build/bin/updraft-coordinator on loopback (a fresh state directory, free ports), then
# runs wrk (-t2, 64 connections by default) on GET /v1/status and on GET /healthz and prints
# requests/s and p99 latency next to the goals (>= 20,000 requests/s, p99 < 10 ms) and, as a
# ratio, next to nginx serving a static JSON file on this machine (~77,000 requests/s, p99 ~5 ms,
# measured with the same wrk command).
#
# --with-job submits a small job first (launch --np ranks, default 2, Fashion-MNIST cut to --max-samples, many
# epochs, progress every 5 steps) and measures while it reports progress; the job is cancelled
# afterwards. Its training shares the machine's cores with wrk and the server, as in the issue.
#
#   tests/bench/rest.sh [--with-job [--np N]] [--duration S] [--connections C] [--max-samples N]
# Exit status: 0 when /v1/status met both goals, 1 when not, 2 on a usage or setup error.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=tests/bench/lib.bash
source tests/bench/lib.bash
duration=10 conns=64 with_job=0 max_samples=4000 np=2
while [ $# -gt 0 ]; do
    case "$1" in
    --with-job) with_job=1 ;;
    --duration) duration=$2; shift ;;
    --connections) conns=$2; shift ;;
    --max-samples) max_samples=$2; shift ;;
    --np) np=$2; shift ;;
    *) echo "usage: $0 [--with-job] [--duration S] [--connections C] [--max-samples N]" >&2
       exit 2 ;;
    esac
    shift
done

GOAL_RPS=20000 GOAL_P99_MS=10 NGINX_RPS=77000 NGINX_P99_MS=5
coord=$bin/updraft-coordinator
if [ ! -x "$coord" ]; then
    echo "rest.sh: $coord is missing: build the coordinator first" \
         "(cmake -S . -B build && cmake --build build)" >&2
    exit 2
fi
command -v wrk >/dev/null || { echo "rest.sh: wrk is not installed (apt-get install wrk)" >&2; exit 2; }
command -v curl >/dev/null || { echo "rest.sh: curl is not installed" >&2; exit 2; }
train=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
if [ "$with_job" = 1 ] && [ ! -f "$train" ]; then
    echo "rest.sh: --with-job needs $train" >&2
    exit 2
fi
if [ "$with_job" = 1 ] && [ ! -x "$bin/updraft-worker" ]; then
    echo "rest.sh: --with-job needs $bin/updraft-worker (the coordinator launches it)" >&2
    exit 2
fi

state=$(mktemp -d /tmp/updraft-rest-bench.XXXXXX)
pid=
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$state"
}
trap cleanup EXIT

http_port=$(free_port)
zmq_port=$(free_port)
while [ "$zmq_port" = "$http_port" ]; do zmq_port=$(free_port); done
url=http://127.0.0.1:$http_port
token=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '%s\n' "$token" >"$state/token"
chmod 600 "$state/token"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader,tcp
export OPENBLAS_NUM_THREADS=1

"$coord" --state "$state/state" --http "127.0.0.1:$http_port" \
    --zmq "tcp://127.0.0.1:$zmq_port" --advertise "tcp://127.0.0.1:$zmq_port" \
    --token-file "$state/token" >"$state/coordinator.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
    curl -sf "$url/healthz" >/dev/null 2>&1 && break
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "rest.sh: the coordinator exited:" >&2
        tail -20 "$state/coordinator.log" >&2
        exit 2
    fi
    sleep 0.1
done
curl -sf "$url/healthz" >/dev/null || { echo "rest.sh: no answer from $url/healthz" >&2; exit 2; }

# The first value of "key" in a JSON answer (a job's own fields come before its checkpoints').
jfield() { { grep -o "\"$1\":\"\{0,1\}[^\",}]*" || true; } | head -1 | sed -E "s/^\"$1\":\"?//"; }

job=
if [ "$with_job" = 1 ]; then
    spec="{\"name\":\"rest-bench\",\"data\":\"$train\",\"arch\":\"mlp\",\"epochs\":100000,"
    spec+="\"batch\":64,\"max_samples\":$max_samples,\"validation\":\"none\",\"threads\":1,"
    spec+="\"report_every\":5,\"launch\":{\"np\":$np,\"max_restarts\":0}}"
    answer=$(curl -s -X POST "$url/v1/jobs" -H "Authorization: Bearer $token" \
        -H 'Content-Type: application/json' -d "$spec")
    job=$(printf '%s' "$answer" | jfield id)
    [ -n "$job" ] || { echo "rest.sh: job submit failed: $answer" >&2; exit 2; }
    echo "job $job submitted (np $np, $max_samples samples); waiting for its first progress..."
    it=
    for _ in $(seq 600); do
        detail=$(curl -s -H "Authorization: Bearer $token" "$url/v1/jobs/$job")
        st=$(printf '%s' "$detail" | jfield state)
        it=$(printf '%s' "$detail" | jfield iteration)
        case "$st" in
        SUCCEEDED | FAILED | CANCELLED)
            echo "rest.sh: the job ended $st before the measurement:" >&2
            printf '%s\n' "$detail" | head -c 2000 >&2
            exit 2 ;;
        esac
        [ "$st" = RUNNING ] && [ -n "$it" ] && [ "$it" != null ] && [ "$it" -gt 0 ] && break
        sleep 0.2
    done
    [ "$st" = RUNNING ] || { echo "rest.sh: the job is still $st after 120 s" >&2; exit 2; }
    echo "job $job RUNNING at step $it"
fi

# wrk's "99%" latency in milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
        printf "%.2f", n }'
}

failed=0
measure() { # measure PATH GATED
    local path=$1 gated=$2 out rps p99 non2xx verdict
    # every GET but /healthz needs a token: the admin token, as a dashboard's reader token would
    out=$(wrk -t2 -c"$conns" -d"${duration}s" --latency -H "Authorization: Bearer $token" \
        "$url$path" 2>&1)
    rps=$(printf '%s\n' "$out" | awk '/^Requests\/sec:/ {printf "%.0f", $2}')
    p99=$(to_ms "$(printf '%s\n' "$out" | awk '$1 == "99%" {print $2}')")
    non2xx=$(printf '%s\n' "$out" | awk '/Non-2xx/ {print $NF}')
    errors=$(printf '%s\n' "$out" | sed -n 's/.*Socket errors: //p')
    if [ -z "$rps" ]; then
        echo "rest.sh: wrk failed on $path:" >&2
        printf '%s\n' "$out" >&2
        failed=1
        return
    fi
    verdict=$(awk -v r="$rps" -v p="$p99" -v gr="$GOAL_RPS" -v gp="$GOAL_P99_MS" 'BEGIN {
        printf "%s", (r >= gr && p < gp) ? "meets the goals" : "MISSES the goals" }')
    printf '%-11s %8s req/s (goal >= %s, nginx ~%s: %sx)   p99 %6s ms (goal < %s, nginx ~%s)   %s\n' \
        "$path" "$rps" "$GOAL_RPS" "$NGINX_RPS" \
        "$(awk -v r="$rps" -v n="$NGINX_RPS" 'BEGIN {printf "%.2f", r / n}')" \
        "$p99" "$GOAL_P99_MS" "$NGINX_P99_MS" "$verdict"
    [ -n "$non2xx" ] && echo "            $non2xx answers were not 2xx" && failed=1
    [ -n "$errors" ] && echo "            socket errors: $errors"
    if [ "$gated" = 1 ] && [ "$verdict" != "meets the goals" ]; then
        failed=1
    fi
}

echo "wrk -t2 -c$conns -d${duration}s --latency on $url ($(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
it0=
[ -n "$job" ] && it0=$(curl -s -H "Authorization: Bearer $token" "$url/v1/jobs/$job" | jfield iteration)
measure /v1/status 1
measure /healthz 0
if [ -n "$job" ]; then
    it1=$(curl -s -H "Authorization: Bearer $token" "$url/v1/jobs/$job" | jfield iteration)
    echo "job $job went from step $it0 to $it1 during the measurements (reporting every 5 steps)"
    curl -s -X POST "$url/v1/jobs/$job/cancel" -H "Authorization: Bearer $token" >/dev/null
    for _ in $(seq 150); do
        st=$(curl -s -H "Authorization: Bearer $token" "$url/v1/jobs/$job" | jfield state)
        [ "$st" = CANCELLED ] || [ "$st" = FAILED ] && break
        sleep 0.2
    done
    echo "job $job: $st"
fi
exit "$failed"
