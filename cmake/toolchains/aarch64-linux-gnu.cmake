# aarch64-linux-gnu.cmake — cross-build for 64-bit ARM (Debian arm64) in the sysroot
# /opt/updraft-sysroot/arm64; tests run under qemu-aarch64 (docs/cross.md).
set(UD_CROSS_TRIPLE aarch64-linux-gnu)
set(UD_CROSS_PROCESSOR aarch64)
set(UD_CROSS_DEBARCH arm64)
set(UD_CROSS_QEMU qemu-aarch64)
include(${CMAKE_CURRENT_LIST_DIR}/debian-sysroot.cmake)
