#!/usr/bin/env bash
# make-sysroot.sh — a private Debian sysroot for cross-building updraft-agent (docs/cross.md).
#
#   deploy/make-sysroot.sh ARCH [DIR]     ARCH: arm64 or armhf; DIR: /opt/updraft-sysroot/ARCH
#
# Downloads the ARCH builds of the agent's libraries (libcurl, jansson, libsodium, zlib, libpng,
# libjpeg, msgpack-c, OpenBLAS, and cmocka for the unit tests) and their dependency closure with
# `apt-get download`, and unpacks them with `dpkg -x` into DIR. Nothing is installed: dpkg's
# database, its list of architectures and the amd64 packages stay as they are (a multiarch
# install of the same libraries would upgrade amd64 ones, since Multi-Arch: same packages must
# have equal versions on every architecture). apt runs with its own package lists and cache
# under DIR/../apt, with ARCH added as an architecture for this run only.
#
# Idempotent: a stamp file in DIR records what was unpacked; the same request is a no-op. Needs
# root only to write DIR. deploy/install-deps.sh --cross calls this for arm64 and armhf.
set -euo pipefail

arch=${1:-}
case "$arch" in
arm64) triple=aarch64-linux-gnu ;;
armhf) triple=arm-linux-gnueabihf ;;
*) echo "make-sysroot.sh: ARCH must be arm64 or armhf, not '$arch' (usage: make-sysroot.sh arm64|armhf [DIR])" >&2; exit 2 ;;
esac
dir=${2:-/opt/updraft-sysroot/$arch}

# What the agent links (and the unit tests' cmocka). The C++ msgpack headers and Boost, which
# libmsgpack-dev drags in, are never used by C code: left out.
wanted=(libcurl4-openssl-dev libjansson-dev libsodium-dev zlib1g-dev libpng-dev
    libjpeg62-turbo-dev libmsgpack-dev libopenblas-dev libcmocka-dev)
skip='^(libboost|libmsgpack-cxx-dev)'
stamp="make-sysroot v1 $arch: ${wanted[*]} skip $skip"
if [ -f "$dir/.updraft-sysroot" ] && [ "$(cat "$dir/.updraft-sysroot")" = "$stamp" ]; then
    exit 0
fi

apt_dir=$(dirname "$dir")/apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs-$arch"
apt_opts=(-o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
    -o "APT::Architectures::=$(dpkg --print-architecture)" -o "APT::Architectures::=$arch")
echo "make-sysroot.sh: $arch package lists" >&2
apt-get "${apt_opts[@]}" update -qq >"$apt_dir/update-$arch.log" 2>&1 ||
    { cat "$apt_dir/update-$arch.log" >&2; echo "make-sysroot.sh: apt-get update failed" >&2; exit 1; }

# The closure: what a multiarch install would add for ARCH (simulated, -s: nothing changes).
# The amd64 upgrades that simulation also lists are exactly what this script avoids.
apt-get "${apt_opts[@]}" install -s --no-install-recommends "${wanted[@]/%/:$arch}" \
    >"$apt_dir/closure-$arch.txt" 2>&1 ||
    { cat "$apt_dir/closure-$arch.txt" >&2; echo "make-sysroot.sh: cannot resolve the $arch packages" >&2; exit 1; }
mapfile -t debs < <(awk -v a="[$arch]" '/^Inst/ && (index($0, a) || index($0, "[all]")) {print $2}' \
    "$apt_dir/closure-$arch.txt" | grep -Ev "$skip")
[ ${#debs[@]} -gt 10 ] || { echo "make-sysroot.sh: only ${#debs[@]} $arch packages in the closure" >&2; exit 1; }

echo "make-sysroot.sh: downloading ${#debs[@]} $arch packages" >&2
rm -f "$apt_dir/debs-$arch"/*.deb
# (as root into a root-owned directory: apt's _apt sandbox user could not write there)
(cd "$apt_dir/debs-$arch" && apt-get "${apt_opts[@]}" -o APT::Sandbox::User=root download "${debs[@]}" >/dev/null)

new=$dir.new
rm -rf "$new"
mkdir -p "$new"
for d in "$apt_dir/debs-$arch"/*.deb; do
    dpkg -x "$d" "$new"
done
# Debian ships absolute links (libm.so -> /lib/...): inside a sysroot they must point inside it.
while IFS= read -r -d '' link; do
    target=$(readlink "$link")
    ln -sfn "$(realpath -s -m --relative-to="$(dirname "$link")" "$new$target")" "$link"
done < <(find "$new" -type l -lname '/*' -print0)
# update-alternatives would name the OpenBLAS variant at install time; dpkg -x runs no scripts.
lib=$new/usr/lib/$triple
if [ -d "$lib/openblas-pthread" ]; then
    ln -sfn ../openblas-pthread/pkgconfig/openblas.pc "$lib/pkgconfig/openblas.pc"
    ln -sfn openblas-pthread/libopenblas.so.0 "$lib/libopenblas.so.0"
fi
for f in "$lib/libcurl.so" "$lib/libjansson.so" "$lib/libsodium.so" "$lib/libmsgpackc.so" \
    "$lib/libcmocka.so" "$lib/pkgconfig/openblas.pc" "$new/lib/$triple/libc.so.6"; do
    [ -e "$f" ] || { echo "make-sysroot.sh: $f missing after unpacking" >&2; exit 1; }
done
echo "$stamp" >"$new/.updraft-sysroot"
rm -rf "$dir"
mv "$new" "$dir"
rm -rf "$apt_dir/debs-$arch" "$apt_dir/lists" "$apt_dir/cache" # the closure-*.txt stay, as a record
echo "make-sysroot.sh: $arch sysroot in $dir ($(du -sh "$dir" | cut -f1))" >&2
