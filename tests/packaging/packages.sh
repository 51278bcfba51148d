#!/usr/bin/env bash
# packages.sh (ctest it_packages) — the installed updraft, not the build tree's:
#   1. `cmake --install --prefix P`: the standard layout, man pages that render each --help, the
#      units rewritten for P, and a C program built against P with
#      `pkg-config --cflags --libs --static updraft` that compiles, links and runs;
#   2. `cpack -G DEB`: the five packages, their dependencies (dpkg-shlibdeps), conffiles, and
#      lintian on each (no errors; warnings are listed);
#   3. the packages unpacked into a scratch root (dpkg -x: this machine is not touched), and the
#      loop run from that root's programs: a standalone training, `updraft info`, the coordinator
#      started by its unit's command line and environment file, the model pushed and pulled
#      (signed), `updraft-agent update` on it, and the agent started by its unit's command line
#      taking part in a one-round federation;
#      the same C program built against the root's libupdraft-dev;
#      the coordinator's log lines as the journal wants them when stderr is the journal;
#   4. the systemd units: `systemd-analyze verify` inside the root (no warnings), their hardening
#      (`systemd-analyze security --offline`), and a broken copy that verify does flag.
# shellcheck source=SCRIPTDIR/../integration/lib/common.bash
source "$(dirname "$0")/../integration/lib/common.bash"
# shellcheck source=SCRIPTDIR/../integration/lib/coord.bash
source "$IT_LIB/coord.bash"
BUILD=${UD_BUILD_DIR:-$(dirname "$UD_BIN_DIR")}
AGENT_PID=""
# shellcheck disable=SC2317 # the EXIT trap
cleanup()
{
    [ -z "$AGENT_PID" ] || kill -KILL "$AGENT_PID" 2>/dev/null || true
    coord_cleanup
}
trap cleanup EXIT
it_require_bins "$WORKER" "$UPDRAFT" "$COORDINATOR" "$UD_BIN_DIR/updraft-agent"
for tool in cpack dpkg-deb lintian systemd-analyze pkg-config cc; do
    if ! command -v "$tool" >/dev/null; then
        echo "$IT_NAME: $tool is missing: run deploy/install-deps.sh"
        exit 1
    fi
done
IT_TIMEOUT=120

# Small data, as tests/integration/agent_update.sh makes it: 3 classes x 200 labeled images.
fixture imgset imgs 198

# A program against the installed library: reads a .udm, prints its parameter count.
cat >use_lib.c <<'EOF'
#include <stdio.h>

#include "updraft/ud_error.h"
#include "updraft/ud_model.h"
#include "updraft/ud_udm.h"

int main(int argc, char **argv)
{
    struct ud_err e = {0};
    if (argc != 2) {
        fprintf(stderr, "usage: use_lib MODEL.udm\n");
        return 2;
    }
    ud_model_t *m = ud_udm_read(argv[1], &e);
    if (!m) {
        fprintf(stderr, "use_lib: %s\n", e.msg);
        return 1;
    }
    printf("%zu\n", ud_model_param_count(m));
    ud_model_destroy(&m);
    return 0;
}
EOF
# build_against PCDIR OUT: compiles use_lib.c with that pkg-config directory only.
build_against()
{
    local text flags
    text=$(PKG_CONFIG_PATH=$1 pkg-config --cflags --libs --static updraft) || return 1
    read -ra flags <<<"$text"
    cc -std=c11 -Wall -Werror -o "$2" use_lib.c "${flags[@]}"
}

# ---- 1. cmake --install --prefix P ---------------------------------------------------------
P=$UD_TEST_SCRATCH/prefix
it_run install cmake --install "$BUILD" --prefix "$P"
it_expect_rc "cmake --install --prefix P exits 0" 0
missing=""
for f in bin/updraft bin/updraft-worker bin/updraft-coordinator bin/updraft-agent lib/libupdraft.a \
    include/updraft/ud_model.h include/updraft/ud_udm.h lib/pkgconfig/updraft.pc \
    share/doc/updraft/README.md share/doc/updraft/docs/packaging.md \
    share/man/man1/updraft.1.gz share/man/man1/updraft-worker.1.gz \
    share/man/man1/updraft-coordinator.1.gz share/man/man1/updraft-agent.1.gz \
    lib/systemd/system/updraft-coordinator.service lib/systemd/system/updraft-agent.service \
    lib/systemd/system/updraft-agent@.service etc/default/updraft-coordinator etc/default/updraft-agent; do
    [ -e "$P/$f" ] || missing+=" $f"
done
it_expect_eq "the prefix has programs, library, headers, .pc, docs, man pages, units" "" "$missing"
it_expect_eq "every public header is installed" "$(ls "$UD_SOURCE_DIR/common/include/updraft" | sort | tr '\n' ' ')" \
    "$(ls "$P/include/updraft" | sort | tr '\n' ' ')"
# Each man page is the program's --help: its options appear in it.
man_has()
{
    zcat "$P/share/man/man1/$1.1.gz" | grep -c -F -e "$2" || true
}
it_expect_py "man updraft-worker: .TH header and its options (--data, --arch, --epochs)" \
    'min(v) >= 1' "$(man_has updraft-worker '.TH UPDRAFT-WORKER')" \
    "$(man_has updraft-worker '\-\-data')" "$(man_has updraft-worker '\-\-arch')" \
    "$(man_has updraft-worker '\-\-epochs')"
it_expect_py "man updraft-coordinator: its options (--state, --tls-cert)" 'v[0] >= 1 and v[1] >= 1' \
    "$(man_has updraft-coordinator '\-\-state')" "$(man_has updraft-coordinator 'tls\-cert')"
it_expect_py "man updraft-agent, man updraft: their commands" 'v[0] >= 1 and v[1] >= 1' \
    "$(man_has updraft-agent 'model\-pubkey')" "$(man_has updraft 'checkpoints')"
it_expect_grep "the coordinator unit under P runs P/bin/updraft-coordinator" \
    "$P/lib/systemd/system/updraft-coordinator.service" "ExecStart=$P/bin/updraft-coordinator --state"
it_expect_grep "... with P/etc/default's options" \
    "$P/lib/systemd/system/updraft-coordinator.service" "EnvironmentFile=-$P/etc/default/updraft-coordinator"

# ---- 2. cpack -G DEB, lintian ----------------------------------------------------------------
it_run cpack cpack -G DEB --config "$BUILD/CPackConfig.cmake" -B "$UD_TEST_SCRATCH/debs"
it_expect_rc "cpack -G DEB exits 0" 0
debs=()
for p in updraft-coordinator updraft-worker updraft-agent updraft-cli libupdraft-dev; do
    d=$(ls "$UD_TEST_SCRATCH/debs/${p}_"*.deb 2>/dev/null | head -1)
    if [ -n "$d" ]; then debs+=("$d"); else it_fail "package $p built" "no debs/${p}_*.deb"; fi
done
it_expect_eq "five packages" 5 "${#debs[@]}"
echo "packages:"
for d in "${debs[@]}"; do
    printf '  %-40s %8d bytes, installed %s KiB\n' "$(basename "$d")" "$(stat -c %s "$d")" \
        "$(dpkg-deb -f "$d" Installed-Size)"
done
dep() { dpkg-deb -f "$UD_TEST_SCRATCH/debs/$1_"*.deb Depends; }
it_expect_py "updraft-coordinator depends on libzmq5, libsqlite3-0, libmicrohttpd12, libgnutls30" \
    'all(x in v[0] for x in ("libzmq5", "libsqlite3-0", "libmicrohttpd12", "libgnutls30"))' "$(dep updraft-coordinator)"
it_expect_py "updraft-worker depends on libopenmpi3 and libzmq5" \
    '"libopenmpi3" in v[0] and "libzmq5" in v[0]' "$(dep updraft-worker)"
it_expect_py "updraft-agent depends on libcurl4 and libjansson4, not on MPI or ZeroMQ" \
    '"libcurl4" in v[0] and "libjansson4" in v[0] and "mpi" not in v[0] and "zmq" not in v[0]' "$(dep updraft-agent)"
it_expect_py "libupdraft-dev depends on the -dev packages of its Requires.private" \
    'all(x in v[0] for x in ("libmsgpack-dev", "libsodium-dev", "libpng-dev", "pkg-config"))' "$(dep libupdraft-dev)"
it_expect_eq "the /etc/default files are conffiles" "/etc/default/updraft-coordinator /etc/default/updraft-agent" \
    "$(for p in updraft-coordinator updraft-agent; do dpkg-deb -I "$UD_TEST_SCRATCH/debs/${p}_"*.deb conffiles; done | tr '\n' ' ' | sed 's/ $//')"

# lintian runs as root here (CI): it says so on stderr, which is not a finding.
it_run lintian lintian --no-tag-display-limit "${debs[@]}"
echo "lintian (exit $RC):"
sed 's/^/  /' "$OUT"
it_expect_eq "lintian: no errors" "" "$(grep '^E:' "$OUT" || true)"
it_expect_py "lintian ran on the packages (exit 0, or 1 with no error tag)" 'v[0] in (0, 1)' "$RC"

# ---- 3. a clean root: dpkg -x each package, run the loop from it ----------------------------
R=$UD_TEST_SCRATCH/root
mkdir -p "$R"
for d in "${debs[@]}"; do dpkg -x "$d" "$R"; done
B=$R/usr/bin
it_expect_eq "the root's programs are stripped ELF executables" "4" \
    "$(file "$B"/updraft "$B"/updraft-worker "$B"/updraft-coordinator "$B"/updraft-agent | grep -c 'ELF.*, stripped')"

it_run train "$B/updraft-worker" --data imgs --arch mlp --input 1,28,28 --epochs 1 --threads 1 \
    --seed 4 --json --out mlp.udm
it_expect_rc "installed updraft-worker trains (standalone) and writes a model" 0
it_expect_eq "its summary names the model" '"mlp.udm"' "$(it_json "$OUT" 'last["out"]')"
it_run info "$B/updraft" info mlp.udm --json
it_expect_rc "installed updraft info reads it" 0
it_expect_eq "info: 784-512-256-3 mlp, 3 labels" '[534019, ["checker", "hstripes", "vstripes"]]' \
    "$(it_json "$OUT" '[last["params"], last["labels"]]')"
sha=$(it_json "$OUT" 'last["params_sha256"]')

# unit_cmd UNIT ENVFILE: the unit's ExecStart as systemd would run it from the root: %S the
# state root, %d the credentials directory, /usr/bin the root's, and the environment file's
# variables (word-split, as systemd splits an unbraced $VAR). Sets CMD (an array).
CRED=$UD_TEST_SCRATCH/credentials
mkdir -p "$CRED" "$R/var/lib"
unit_cmd()
{
    local line
    line=$(sed -n 's/^ExecStart=//p' "$R/lib/systemd/system/$1")
    line=${line//%S/$R/var/lib}
    line=${line//%d/$CRED}
    line=${line//\/usr\/bin\//$B/}
    # shellcheck disable=SC1090
    set -a && source "$2" && set +a
    eval "CMD=($line)"
}
# The coordinator as its unit starts it, with the packaged /etc/default file (its ports moved to
# free ones): the state directory is the unit's StateDirectory.
STATE=$R/var/lib/updraft
sed -e "s/127.0.0.1:8470/127.0.0.1:$HTTP_PORT/" -e "s/127.0.0.1:8471/127.0.0.1:$ZMQ_PORT/" \
    "$R/etc/default/updraft-coordinator" >coordinator.env
unit_cmd updraft-coordinator.service coordinator.env
echo "coordinator unit runs: ${CMD[*]}"
COORD_LOG=$UD_TEST_SCRATCH/out/coordinator-unit.log
"${CMD[@]}" >"$COORD_LOG" 2>&1 &
COORD_PID=$!
for ((i = 0; i < 100; i++)); do
    curl -sf "$URL/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
if curl -sf "$URL/healthz" >/dev/null 2>&1; then
    it_pass "installed updraft-coordinator, from its unit's command line and environment file, answers /healthz"
else
    it_fail "installed updraft-coordinator, from its unit's command line and environment file, answers /healthz" \
        "$(tail -5 "$COORD_LOG" | tr '\n' '|')"
fi
TOKEN=$(cat "$STATE/admin.token" 2>/dev/null || true)
export UPDRAFT_TOKEN=$TOKEN
it_expect_eq "it made its admin token and signing key in the unit's state directory" "admin.token signing.pub" \
    "$(cd "$STATE" && ls admin.token signing.pub 2>/dev/null | tr '\n' ' ' | sed 's/ $//')"
it_run push "$B/updraft" model push mlp.udm --name pkgtest
it_expect_rc "installed updraft model push registers the model" 0
it_run pull "$B/updraft" model pull pkgtest@latest --out pulled.udm
it_expect_rc "installed updraft model pull downloads it (signed by the coordinator)" 0
it_run update "$B/updraft-agent" update --model pulled.udm --model-pubkey "$STATE/signing.pub" \
    --data imgs --epochs 1 --seed 2 --out updated.udm --delta updated.delta --json
it_expect_rc "installed updraft-agent update verifies the signature and updates the model" 0
it_expect_eq "its last event is completed, on 600 samples" '["completed", 600]' \
    "$(it_json "$OUT" '[last["event"], last["samples"]]')"
it_run info2 "$B/updraft" info updated.udm --json
it_expect_py "the updated model reads back, with other parameters than the trained one" \
    'v[0] == 534019 and v[1] != v[2]' "$(it_json "$OUT" 'last["params"]')" \
    "$(it_json "$OUT" 'last["params_sha256"]')" "$sha"
it_run unsigned "$B/updraft-agent" update --model mlp.udm --model-pubkey "$STATE/signing.pub" \
    --data imgs --out never.udm
it_expect_rc "installed agent refuses the unsigned original (exit 3)" 3

# The agent as its unit starts it (the packaged /etc/default file pointed at this coordinator,
# its key and the test's images, polling faster): one federated round publishes version 2.
it_run enrol "$B/updraft" devices add --count 1 --name pkg --out tokens
it_expect_rc "installed updraft devices add enrols a device" 0
cut -d' ' -f2 tokens >"$CRED/device.token"
sed -e "s|http://127.0.0.1:8470|$URL|" -e "s|/etc/updraft-agent/signing.pub|$STATE/signing.pub|" \
    -e "s|/srv/updraft-agent/data|$UD_TEST_SCRATCH/imgs --poll 0.2|" \
    "$R/etc/default/updraft-agent" >agent.env
unit_cmd updraft-agent.service agent.env
echo "agent unit runs: ${CMD[*]}"
"${CMD[@]}" >out/agent-unit.log 2>&1 &
AGENT_PID=$!
echo '{"model": "pkgtest", "rounds": 1, "clients_per_round": 1, "min_clients": 1, "round_deadline": 60,
 "epochs": 1, "batch": 32, "lr": 0.05}' >fed.json
it_run fed_start "$B/updraft" fed start fed.json
it_expect_rc "installed updraft fed start starts a federation of one round" 0
it_run fed_wait "$B/updraft" fed wait 1
it_expect_rc "the agent, from its unit's command line, takes part: the federation SUCCEEDED" 0
api GET /v1/federations/1
it_expect_eq "... and published the model's version 2" 2 "$(jq_ "$API_BODY" 'j["current_version"]')"
it_expect_eq "the agent's state is in the unit's StateDirectory" yes \
    "$([ -n "$(ls -A "$R/var/lib/updraft-agent" 2>/dev/null)" ] && echo yes || echo no)"
kill -TERM "$AGENT_PID" 2>/dev/null || true
wait "$AGENT_PID" 2>/dev/null || true
AGENT_PID=""
coord_stop

# Under systemd, stderr is the journal (JOURNAL_STREAM=DEV:INODE names it): the coordinator's
# lines go without their timestamp and with a priority prefix; elsewhere they keep the time.
journal_lines()
{
    local log=$1 stream=$2 pid i
    : >"$log"
    [ "$stream" = self ] && stream=$(stat -c '%d:%i' "$log")
    JOURNAL_STREAM=$stream "$B/updraft-coordinator" --state "$STATE" \
        --http "127.0.0.1:$(free_port)" --zmq "tcp://127.0.0.1:$(free_port)" 2>>"$log" &
    pid=$!
    for ((i = 0; i < 100; i++)); do
        grep -q "REST API at" "$log" && break
        sleep 0.1
    done
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
journal_lines out/journal.log self
it_expect_grep "journal: a line with the warning priority and no timestamp" out/journal.log "<4>coordinator: REST API at"
it_expect_eq "journal: every line starts with a <N> priority" "" "$(grep -v '^<[346]>coordinator: ' out/journal.log || true)"
journal_lines out/notjournal.log "1:1"
it_expect_py "JOURNAL_STREAM naming another file (inherited): lines keep their timestamp" \
    'v[0] >= 1 and v[1] == 0' "$(grep -c '^20[0-9-]*T[0-9:.]*Z coordinator: ' out/notjournal.log)" \
    "$(grep -c '^<' out/notjournal.log)"

# ---- the C program against the prefix and against the root's libupdraft-dev ----------------
for where in prefix root; do
    case $where in
    prefix) pcdir=$P/lib/pkgconfig inc=$P/include ;;
    root) pcdir=$(dirname "$(find "$R/usr/lib" -name updraft.pc | head -1)") inc=$R/usr/include ;;
    esac
    IT_LAST_CMD="pkg-config --cflags --libs --static updraft (PKG_CONFIG_PATH=$pcdir); cc use_lib.c"
    RC=0
    build_against "$pcdir" "use_lib_$where" >"out/cc_$where.err" 2>&1 || RC=$?
    ERR=out/cc_$where.err
    it_expect_rc "a C program compiles and links against the $where with pkg-config --static" 0
    it_expect_eq "... with the $where's headers (its first -I, resolved)" "$(realpath "$inc")" \
        "$(PKG_CONFIG_PATH=$pcdir pkg-config --cflags-only-I updraft | tr ' ' '\n' | sed -n 's/^-I//p' |
            head -1 | xargs realpath)"
    it_run "use_lib_$where" "./use_lib_$where" updated.udm
    it_expect_eq "... and runs: it reads the model's parameter count" 534019 "$(cat "$OUT")"
done

# ---- 4. systemd units: verify inside the root ------------------------------------------------
# verify resolves the units' dependencies (sysinit.target, ...) and ExecStart inside --root:
# the root gets a copy of this machine's own units beside the packages' ones.
cp -an /lib/systemd/system/. "$R/lib/systemd/system/"
units=(updraft-coordinator.service updraft-agent.service updraft-agent@dev1.service)
it_run verify systemd-analyze verify --man=no --root="$R" "${units[@]}"
it_expect_rc "systemd-analyze verify: the coordinator's and the agents' units" 0
it_expect_eq "... with no warnings" "" "$(cat "$ERR")"
for u in updraft-coordinator.service updraft-agent.service; do
    it_run "security_$u" systemd-analyze security --offline=yes --root="$R" "$u"
    it_expect_py "$u: hardened (exposure from systemd-analyze security <= 2.5)" 'v[0] <= 2.5' \
        "$(sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p' "$OUT")"
done
for k in "DynamicUser=yes" "StateDirectory=updraft" "ProtectSystem=strict" "ProtectHome=yes" \
    "NoNewPrivileges=yes" "PrivateTmp=yes" "PrivateDevices=yes" "RestrictAddressFamilies=" \
    "EnvironmentFile=-/etc/default/updraft-coordinator" "ExecStart=/usr/bin/updraft-coordinator --state %S/updraft"; do
    it_expect_grep "coordinator unit: $k" "$R/lib/systemd/system/updraft-coordinator.service" "$k"
done
# verify is not vacuous: a misspelt key and a missing program are reported.
sed 's/^ProtectHome=yes/ProtectHomme=yes/' "$R/lib/systemd/system/updraft-agent.service" \
    >"$R/lib/systemd/system/broken-agent.service"
it_run verify_broken systemd-analyze verify --man=no --root="$R" broken-agent.service
it_expect_grep "verify flags a misspelt key" "$ERR" "Unknown key 'ProtectHomme'"
mv "$B/updraft-coordinator" "$UD_TEST_SCRATCH/coordinator.moved"
it_run verify_noexec systemd-analyze verify --man=no --root="$R" updraft-coordinator.service
it_expect_rc "verify fails when the unit's program is missing" 1
mv "$UD_TEST_SCRATCH/coordinator.moved" "$B/updraft-coordinator"

it_finish
