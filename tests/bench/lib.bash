# tests/bench/lib.bash — what the tests/bench/*.sh scripts share; sourced after they cd to the
# top of the checkout.
#
#   bench_build                 installs the PyTorch peers (deploy/install-deps.sh --peers) and
#                               builds build/ in Release (run.sh, dp.sh)
#   bench_peer FILE             prints the path of the peer script FILE: ../shared/peers beside
#                               the checkout, else /work/shared/peers
#   bench_require_bins DIR NAME...  exits 2 saying which DIR/NAME is missing, unless each is
#                               an executable
#   free_port                   prints a free loopback TCP port
#   bench_agent_workload DIR    the device agent's workload (agent_rss.sh, agent_arch.sh): 600
#                               Fashion-MNIST test images as one device's labeled folder
#                               (DIR/dev/client-000, PNG files) and an untrained reference mlp
#                               (DIR/m.udm); exits 2 without the dataset or the built updraft
#   ratio A B                   A / B with two decimals, or n/a when B is not positive
#   max A B                     the larger of two numbers
# and sets root (the checkout), bin (the built programs: $UD_BIN_DIR, else build/bin) and PY
# (the system Python, which has the peers' packages).
root=$PWD
# shellcheck disable=SC2034 # used by the scripts that source this file
bin=${UD_BIN_DIR:-$root/build/bin}
# shellcheck disable=SC2034
PY=/usr/bin/python3

bench_build()
{
    deploy/install-deps.sh --peers
    cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build build -j"$(nproc)" >/dev/null
}

bench_peer()
{
    local p
    p=$PWD/../shared/peers/$1
    [ -f "$p" ] || p=/work/shared/peers/$1
    echo "$p"
}

bench_require_bins()
{
    local dir=$1 x
    shift
    for x in "$@"; do
        [ -x "$dir/$x" ] || { echo "$(basename "$0"): $dir/$x is missing: build first" >&2; exit 2; }
    done
}

free_port()
{
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

bench_agent_workload()
{
    local F=/usr/share/datasets/fashion-mnist
    bench_require_bins "$bin" updraft
    [ -f "$F/t10k-images-idx3-ubyte.gz" ] ||
        { echo "$(basename "$0"): needs $F (deploy/install-deps.sh)" >&2; exit 2; }
    "$bin/updraft" dataset partition --data "$F/t10k-images-idx3-ubyte.gz" --skip 9400 --clients 1 \
        --scheme iid --seed 1 --out "$1/dev" >/dev/null 2>&1
    "$bin/updraft" init --arch mlp --data "$F/t10k-images-idx3-ubyte.gz" --seed 1 --out "$1/m.udm" >/dev/null
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
max() { awk -v a="$1" -v b="$2" 'BEGIN { print (a > b ? a : b) }'; }
