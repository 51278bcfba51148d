# tests/integration/lib/common.bash — sourced by every tests/integration/*.sh script.
#
# Sets up the environment ctest gives (UD_BIN_DIR, UD_SOURCE_DIR, UD_TEST_SCRATCH; defaults so a
# script also runs by hand from a checkout with build/), an empty scratch directory as the
# working directory, and small assertion helpers that count passes and failures and say what
# was expected and what came instead. A script ends with `it_finish`, which prints
# "it_<name>: P passed, F failed" and exits non-zero when anything failed.
#
#   it_run LABEL CMD...         runs CMD under `timeout 60`; stdout in $OUT, stderr in $ERR
#                               (files), exit code in $RC; never stops the script
#   it_expect_rc NAME WANT      $RC == WANT
#   it_expect_error NAME        $RC is 1 or 2: an error exit, not success, a signal or a hang
#   it_expect_grep NAME FILE TEXT      FILE contains TEXT (fixed string, case-insensitive)
#   it_expect_nogrep NAME FILE TEXT    FILE does not contain TEXT
#   it_expect_eq NAME WANT GOT
#   it_expect_py NAME EXPR [VALUES...] Python expression true, with v[0], v[1]... = the values
#                               as floats when they parse as numbers, else strings
#   it_json FILE EXPR           prints EXPR (Python, over `lines` and `last`) as JSON
#   it_known_bug TEXT           marks the next check as a known bug (printed with it)
#   it_signal PID SIGNAL        sends SIGNAL to the background PID and waits; exit code in $RC
set -euo pipefail

IT_NAME=it_$(basename "$0" .sh)
IT_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
UD_SOURCE_DIR=${UD_SOURCE_DIR:-$(cd "$IT_LIB/../../.." && pwd)}
UD_BIN_DIR=${UD_BIN_DIR:-$UD_SOURCE_DIR/build/bin}
UD_TEST_SCRATCH=${UD_TEST_SCRATCH:-${TMPDIR:-/tmp}/updraft-$IT_NAME}
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
# shellcheck disable=SC2034 # used by the scripts that source this file
WORKER=$UD_BIN_DIR/updraft-worker
# shellcheck disable=SC2034
UPDRAFT=$UD_BIN_DIR/updraft
# shellcheck disable=SC2034
FASHION=${UD_FASHION_DIR:-/usr/share/datasets/fashion-mnist}
IT_TIMEOUT=${IT_TIMEOUT:-60}

rm -rf "$UD_TEST_SCRATCH"
mkdir -p "$UD_TEST_SCRATCH/out"
cd "$UD_TEST_SCRATCH"

IT_PASS=0
IT_FAIL=0
IT_FAILED=()
IT_KNOWN=""
RC=0
OUT=/dev/null
ERR=/dev/null

fixture() { python3 "$IT_LIB/fixtures.py" "$@"; }

it_pass()
{
    IT_PASS=$((IT_PASS + 1))
    echo "ok   $1${IT_KNOWN:+ (known bug: $IT_KNOWN — now passes)}"
    IT_KNOWN=""
}

it_fail()
{
    IT_FAIL=$((IT_FAIL + 1))
    IT_FAILED+=("$1")
    echo "FAIL $1: $2${IT_KNOWN:+ [known bug: $IT_KNOWN]}"
    if [ -n "${IT_LAST_CMD:-}" ]; then
        echo "     last command: $IT_LAST_CMD (exit $RC)"
        [ -s "$ERR" ] && sed 's/^/     stderr: /' "$ERR" | head -5
    fi
    IT_KNOWN=""
}

it_known_bug() { IT_KNOWN="$1"; }

it_signal()
{
    kill -"$2" "$1"
    RC=0
    wait "$1" || RC=$?
}

it_require_bins()
{
    local b
    for b in "$@"; do
        if [ ! -x "$b" ]; then
            echo "$IT_NAME: $b is missing: build first (cmake --build BUILD), or set UD_BIN_DIR"
            exit 1
        fi
    done
}

# it_run LABEL CMD... — output in out/LABEL.{out,err}
it_run()
{
    local label=$1
    shift
    OUT=$UD_TEST_SCRATCH/out/$label.out
    ERR=$UD_TEST_SCRATCH/out/$label.err
    IT_LAST_CMD="$*"
    RC=0
    timeout "$IT_TIMEOUT" "$@" >"$OUT" 2>"$ERR" || RC=$?
}

it_expect_rc()
{
    if [ "$RC" -eq "$2" ]; then it_pass "$1"; else it_fail "$1" "expected exit $2, got $RC"; fi
}

it_expect_error()
{
    case $RC in
    1 | 2) it_pass "$1" ;;
    0) it_fail "$1" "expected an error exit (1 or 2), got 0 (success)" ;;
    124) it_fail "$1" "expected an error exit (1 or 2), got a hang (killed after ${IT_TIMEOUT}s)" ;;
    *) it_fail "$1" "expected an error exit (1 or 2), got $RC$([ "$RC" -ge 128 ] && echo " (signal $((RC - 128)): a crash)")" ;;
    esac
}

it_expect_grep()
{
    if grep -qiF -- "$3" "$2"; then
        it_pass "$1"
    else
        it_fail "$1" "expected $(basename "$2") to contain '$3', got: $(head -c 300 "$2" | tr '\n' '|')"
    fi
}

it_expect_nogrep()
{
    if grep -qiF -- "$3" "$2"; then
        it_fail "$1" "expected $(basename "$2") not to contain '$3', got: $(grep -iF -- "$3" "$2" | head -2 | tr '\n' '|')"
    else
        it_pass "$1"
    fi
}

it_expect_eq()
{
    if [ "$2" = "$3" ]; then it_pass "$1"; else it_fail "$1" "expected '$2', got '$3'"; fi
}

it_expect_py()
{
    local name=$1 expr=$2
    shift 2
    if python3 - "$expr" "$@" <<'EOF'; then
import math, sys
def val(s):
    try:
        return float(s)
    except ValueError:
        return s
v = [val(s) for s in sys.argv[2:]]
sys.exit(0 if eval(sys.argv[1], {"math": math, "v": v}) else 1)
EOF
        it_pass "$name"
    else
        it_fail "$name" "expected $expr with v = [$*]"
    fi
}

# Never fails (a check that uses the value does): no value prints "<no value: why>".
it_json() { fixture json "$@" 2>/dev/null || echo "<no value: $2 from $(basename "$1")>"; }

it_finish()
{
    echo "$IT_NAME: $IT_PASS passed, $IT_FAIL failed"
    if [ "$IT_FAIL" -gt 0 ]; then
        printf '  failed: %s\n' "${IT_FAILED[@]}"
        exit 1
    fi
    exit 0
}
