#!/usr/bin/env bash
# install-deps.sh — install what updraft needs to build, test and run its demo on Debian 12.
#
# Idempotent: asks dpkg what is already there and runs apt-get only for what is missing.
# Needs root (or sudo) only when something is missing (with --cross: or a sysroot is to be made).
#
#   deploy/install-deps.sh            build + test + demo dependencies
#   deploy/install-deps.sh --peers    also PyTorch and NumPy, for the side-by-side benchmarks
#   deploy/install-deps.sh --cross    also the arm64/armhf cross compilers, qemu-user and the
#                                     agent's private sysroots in /opt/updraft-sysroot/{arm64,armhf}
#                                     (deploy/make-sysroot.sh; no amd64 package changes; docs/cross.md)
set -euo pipefail

cross=0
pkgs=(
    build-essential cmake pkg-config git clang-format python3
    clang libclang-rt-dev
    libopenblas-dev libmsgpack-dev libzmq3-dev
    libsqlite3-dev libmicrohttpd-dev libjansson-dev sqlite3 curl wrk python3-msgpack
    libopenmpi-dev openmpi-bin
    libcurl4-openssl-dev libcmocka-dev libgnutls28-dev openssl
    zlib1g-dev libpng-dev libjpeg62-turbo-dev libsodium-dev
    dataset-fashion-mnist
    help2man lintian file systemd  # man pages; it_packages (lintian: 16 MB with its Perl)
    iproute2 # ip netns: the multi-host tests' "hosts" (tests/integration/lib/netns.bash)
    slurm-wlm munge # a real single-node Slurm for it_slurm (8 MB)
)
for arg in "$@"; do
    case "$arg" in
    --peers) pkgs+=(python3-torch python3-numpy) ;;
    --cross)
        cross=1
        pkgs+=(gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf qemu-user)
        ;;
    -h | --help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "install-deps.sh: unknown option '$arg' (try --help)" >&2; exit 2 ;;
    esac
done

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
# The sysroots, once the packages are in (each is a no-op when its stamp matches).
sysroots()
{
    [ "$cross" = 1 ] || return 0
    local arch as=""
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
        as=sudo
    fi
    for arch in arm64 armhf; do
        $as "$(dirname "$0")/make-sysroot.sh" "$arch"
    done
}
sudo=""
if [ ${#missing[@]} -eq 0 ]; then
    sysroots
    exit 0
fi

echo "install-deps.sh: installing ${missing[*]}" >&2
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo="sudo"
    else
        echo "install-deps.sh: need root (or sudo) to install: ${missing[*]}" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
# A fresh machine has no package lists yet; refresh them once if a package is not known.
if ! apt-cache show "${missing[0]}" >/dev/null 2>&1 || [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v lock)" ]; then
    $sudo apt-get update -qq
fi
if ! $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/updraft-apt.log 2>&1; then
    # Package lists may be stale on a machine that was set up long ago: refresh once and retry.
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" || {
        echo "install-deps.sh: apt-get install failed; see /tmp/updraft-apt.log" >&2
        exit 1
    }
fi
sysroots
