# arm-linux-gnueabihf.cmake — cross-build for 32-bit ARM, hard float (Debian armhf: ARMv7 + VFPv3)
# in the sysroot /opt/updraft-sysroot/armhf; tests run under qemu-arm (docs/cross.md).
set(UD_CROSS_TRIPLE arm-linux-gnueabihf)
set(UD_CROSS_PROCESSOR armv7l)
set(UD_CROSS_DEBARCH armhf)
set(UD_CROSS_QEMU qemu-arm)
include(${CMAKE_CURRENT_LIST_DIR}/debian-sysroot.cmake)
