#!/usr/bin/env bash
# tests/build/agent_only.sh — the device agent builds on a machine that has none of the
# service's libraries (ctest: build_agent_only).
#
# Configures a build of updraft-agent alone (UD_BUILD_WORKER/COORDINATOR/CLI=OFF) in a scratch
# directory where pkg-config cannot see libzmq, SQLite, libmicrohttpd, GnuTLS or MPI and CMake's
# MPI lookup is disabled, as on a phone-class device image. Checks that the configure summary
# reports them absent, that the agent and the common unit tests build, that the agent links no
# MPI, ZeroMQ, SQLite or libmicrohttpd (GnuTLS may still come in through libcurl), and that the unit tests of the training core and the update engine pass in that build.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
scratch=${UD_TEST_SCRATCH:-$(mktemp -d)}
rm -rf "$scratch"
mkdir -p "$scratch/pc"
build=$scratch/build

fail() { echo "agent_only: FAIL: $*" >&2; exit 1; }

# A pkg-config search path with every module this machine has except the service's.
hidden='^(libzmq|sqlite3|libmicrohttpd|gnutls|gnutls-dane|mpi|mpi-c|ompi|ompi-c|mpi-cxx|ompi-cxx|mpi-fort|ompi-fort)\.pc$'
IFS=: read -r -a pcdirs <<<"$(pkg-config --variable pc_path pkg-config)"
for d in "${pcdirs[@]}"; do
    [ -d "$d" ] || continue
    for pc in "$d"/*.pc; do
        [ -e "$pc" ] || continue
        name=$(basename "$pc")
        [[ $name =~ $hidden ]] && continue
        [ -e "$scratch/pc/$name" ] || ln -s "$pc" "$scratch/pc/$name"
    done
done
PKG_CONFIG_LIBDIR=$scratch/pc pkg-config --exists libzmq && fail "libzmq still visible to pkg-config"

PKG_CONFIG_LIBDIR=$scratch/pc PKG_CONFIG_PATH= cmake -S "$root" -B "$build" \
    -DCMAKE_BUILD_TYPE=Release -DUD_WERROR=ON \
    -DUD_BUILD_WORKER=OFF -DUD_BUILD_COORDINATOR=OFF -DUD_BUILD_CLI=OFF -DUD_BUILD_AGENT=ON \
    -DCMAKE_DISABLE_FIND_PACKAGE_MPI=ON >"$scratch/configure.log" 2>&1 ||
    { cat "$scratch/configure.log" >&2; fail "the agent-only build does not configure"; }
for lib in MPI libzmq SQLite libmicrohttpd GnuTLS; do
    grep -Eq "^-- +$lib +absent" "$scratch/configure.log" ||
        { cat "$scratch/configure.log" >&2; fail "the configure summary does not report $lib absent"; }
done
echo "agent_only: configured without MPI, libzmq, SQLite, libmicrohttpd and GnuTLS"

cmake --build "$build" -j"$(nproc)" >"$scratch/build.log" 2>&1 ||
    { tail -40 "$scratch/build.log" >&2; fail "the agent-only build does not build"; }
agent=$build/bin/updraft-agent
[ -x "$agent" ] || fail "no $agent"
for other in updraft-worker updraft-coordinator updraft; do
    [ ! -e "$build/bin/$other" ] || fail "$other was built although it was switched off"
done
if ldd "$agent" | grep -Eq 'libzmq|libmpi|libsqlite3|libmicrohttpd'; then
    ldd "$agent" >&2
    fail "updraft-agent links a service library"
fi
"$agent" --help >/dev/null || fail "updraft-agent --help"
echo "agent_only: updraft-agent built; it links no MPI, ZeroMQ, SQLite or libmicrohttpd"

# The training core and the update engine, as the agent uses them, pass their tests here too.
(cd "$build" && ctest -R '^test_(model|update|udm|optim|delta|seal)$' --output-on-failure) >"$scratch/ctest.log" 2>&1 ||
    { cat "$scratch/ctest.log" >&2; fail "unit tests in the agent-only build"; }
n=$(grep -c ' Passed ' "$scratch/ctest.log" || true)
[ "$n" -ge 6 ] || { cat "$scratch/ctest.log" >&2; fail "expected 6 unit tests in the agent-only build, $n passed"; }
echo "agent_only: $n unit tests of the training core passed in the agent-only build"
