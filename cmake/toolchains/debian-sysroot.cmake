# debian-sysroot.cmake — what the cross toolchain files share (docs/cross.md): the Debian cross
# compiler, the private sysroot that deploy/make-sysroot.sh unpacks, pkg-config pointed into it,
# and qemu-user as the emulator through which ctest runs the built tests.
#
# The including file sets UD_CROSS_TRIPLE (GNU triple: compiler prefix and multiarch directory),
# UD_CROSS_PROCESSOR (CMAKE_SYSTEM_PROCESSOR), UD_CROSS_DEBARCH (Debian architecture: the
# sysroot's name) and UD_CROSS_QEMU (the qemu-user program). -DUD_SYSROOT=DIR (or the environment
# variable UD_SYSROOT) overrides the sysroot, /opt/updraft-sysroot/<Debian architecture>.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR ${UD_CROSS_PROCESSOR})

if(NOT UD_SYSROOT)
    if(DEFINED ENV{UD_SYSROOT})
        set(UD_SYSROOT $ENV{UD_SYSROOT})
    else()
        set(UD_SYSROOT /opt/updraft-sysroot/${UD_CROSS_DEBARCH})
    endif()
endif()
# try_compile re-reads this file in a fresh scope: without UD_SYSROOT passed on, it would point
# pkg-config elsewhere and every module would come back "not found".
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES UD_SYSROOT)
if(NOT EXISTS ${UD_SYSROOT}/.updraft-sysroot)
    message(FATAL_ERROR "No ${UD_CROSS_DEBARCH} sysroot at ${UD_SYSROOT}: run "
                        "deploy/install-deps.sh --cross (or pass -DUD_SYSROOT=DIR)")
endif()

find_program(UD_CROSS_CC ${UD_CROSS_TRIPLE}-gcc)
if(NOT UD_CROSS_CC)
    message(FATAL_ERROR "${UD_CROSS_TRIPLE}-gcc not found: run deploy/install-deps.sh --cross")
endif()
set(CMAKE_C_COMPILER ${UD_CROSS_CC})
set(CMAKE_SYSROOT ${UD_SYSROOT})
set(CMAKE_FIND_ROOT_PATH ${UD_SYSROOT})
set(CMAKE_LIBRARY_ARCHITECTURE ${UD_CROSS_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER) # build tools run on the host
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# pkg-config reads only the sysroot's .pc files and prefixes their paths with the sysroot.
set(ENV{PKG_CONFIG_SYSROOT_DIR} ${UD_SYSROOT})
set(ENV{PKG_CONFIG_LIBDIR}
    ${UD_SYSROOT}/usr/lib/${UD_CROSS_TRIPLE}/pkgconfig:${UD_SYSROOT}/usr/share/pkgconfig)
set(ENV{PKG_CONFIG_PATH} "")

# ctest (and any add_test on a built program) runs target binaries through qemu-user, whose -L
# makes the sysroot the root for the dynamic loader and the shared libraries.
find_program(UD_CROSS_EMULATOR ${UD_CROSS_QEMU})
if(UD_CROSS_EMULATOR)
    set(CMAKE_CROSSCOMPILING_EMULATOR ${UD_CROSS_EMULATOR} -L ${UD_SYSROOT})
else()
    message(WARNING "${UD_CROSS_QEMU} not found (qemu-user): tests cannot run on this machine")
endif()
