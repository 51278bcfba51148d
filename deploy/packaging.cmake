# packaging.cmake — what `cmake --install` lays out and how CPack packs it (docs/packaging.md).
#
# A prefix P (`cmake --install build --prefix P`) gets bin/ (the programs built), lib/libupdraft.a
# with include/updraft/*.h and lib/pkgconfig/updraft.pc, share/doc/updraft (README, docs/),
# share/man/man1 (man pages made at build time from each program's --help by help2man), the
# systemd units in lib/systemd/system and their environment files in etc/default. With the
# prefix /usr (the Debian packages) the units go to /lib/systemd/system, the environment files
# to /etc/default and the library to the multiarch lib/x86_64-linux-gnu, as Debian 12 has them.
#
# `cpack -G DEB` in the build directory makes one package per role (install component):
#   coordinator -> updraft-coordinator   worker -> updraft-worker   agent -> updraft-agent
#   cli -> updraft-cli                   dev -> libupdraft-dev
# with dependencies from dpkg-shlibdeps; tests/packaging/packages.sh builds, lints and runs them.
include(GNUInstallDirs)

set(UD_PACKAGE_MAINTAINER "updraft maintainers <maintainers@users.noreply.b-seed-a663afab.example>"
    CACHE STRING "Maintainer field of the Debian packages")
set(_deploy ${CMAKE_SOURCE_DIR}/deploy)

# ---- programs: each in its role's component ----------------------------------------------------
# program  component  package  man page's one-line description (help2man --name)
set(_ud_programs
    "updraft-coordinator|coordinator|updraft-coordinator|the updraft service: jobs, model registry, federated rounds, REST API"
    "updraft-worker|worker|updraft-worker|train a model, alone or as one rank of a data-parallel job under mpirun"
    "updraft-agent|agent|updraft-agent|update a model on a device's own data, take part in federated rounds"
    "updraft|cli|updraft-cli|inspect, evaluate and use models, the client of updraft-coordinator")
find_program(UD_HELP2MAN help2man)
set(_ud_components dev)
set(_ud_man_outputs)
foreach(row IN LISTS _ud_programs)
    string(REPLACE "|" ";" fields "${row}")
    list(GET fields 0 prog)
    list(GET fields 1 comp)
    list(GET fields 2 pkg)
    list(GET fields 3 what)
    if(NOT TARGET ${prog})
        continue()
    endif()
    list(APPEND _ud_components ${comp})
    set(_ud_pkg_${comp} ${pkg})
    install(TARGETS ${prog} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT ${comp})
    if(UD_HELP2MAN AND NOT CMAKE_CROSSCOMPILING AND NOT UD_FUZZ)
        set(man ${CMAKE_BINARY_DIR}/man/${prog}.1)
        add_custom_command(OUTPUT ${man}.gz
            COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/man
            COMMAND ${CMAKE_COMMAND} -E env OPENBLAS_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=0
                    ${UD_HELP2MAN} --no-info --no-discard-stderr --version-string=${PROJECT_VERSION}
                    --name=${what} --output=${man} $<TARGET_FILE:${prog}>
            COMMAND gzip -9nf ${man}
            DEPENDS ${prog}
            COMMENT "man page of ${prog} from its --help"
            VERBATIM)
        list(APPEND _ud_man_outputs ${man}.gz)
        install(FILES ${man}.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1 COMPONENT ${comp})
    endif()
endforeach()
if(_ud_man_outputs)
    add_custom_target(man ALL DEPENDS ${_ud_man_outputs})
    set(UD_MAN_PAGES "yes (help2man)")
elseif(UD_FUZZ)
    set(UD_MAN_PAGES "no (a fuzzing build)")
elseif(CMAKE_CROSSCOMPILING)
    set(UD_MAN_PAGES "no (cross-compiling: the programs cannot run to print --help)")
else()
    set(UD_MAN_PAGES "no (help2man not found: deploy/install-deps.sh installs it)")
endif()

# ---- libupdraft: the static library, its headers and its pkg-config file -----------------------
# The library directory is chosen at install time, when the prefix is known: lib/ under any
# prefix, the multiarch lib/x86_64-linux-gnu (CMAKE_LIBRARY_ARCHITECTURE) under /usr, as Debian's
# -dev packages have it. updraft.pc finds the prefix from its own place (${pcfiledir}), so an
# installed tree can also be moved.
set(_ud_pkg_dev libupdraft-dev)
set(UD_PC_REQUIRES_PRIVATE "msgpack zlib libpng libjpeg libsodium")
if(UD_WITH_OPENBLAS)
    string(APPEND UD_PC_REQUIRES_PRIVATE " openblas")
endif()
set(UD_PC_LIBS_PRIVATE "-pthread -lm")
if(UD_SANITIZE) # the objects call the sanitizers' runtimes: programs linking them need them too
    string(APPEND UD_PC_LIBS_PRIVATE " -fsanitize=address,undefined")
endif()
set(_ud_libdirs lib)
if(CMAKE_LIBRARY_ARCHITECTURE)
    list(APPEND _ud_libdirs lib/${CMAKE_LIBRARY_ARCHITECTURE})
endif()
foreach(UD_PC_LIBDIR IN LISTS _ud_libdirs)
    file(RELATIVE_PATH UD_PC_RELPREFIX /prefix/${UD_PC_LIBDIR}/pkgconfig /prefix)
    string(REGEX REPLACE "/$" "" UD_PC_RELPREFIX "${UD_PC_RELPREFIX}")
    string(REPLACE "/" "-" _dir "${UD_PC_LIBDIR}")
    configure_file(${_deploy}/updraft.pc.in ${CMAKE_BINARY_DIR}/pc/${_dir}/updraft.pc @ONLY)
endforeach()
install(CODE "set(UD_LIBDIR lib)
if(CMAKE_INSTALL_PREFIX STREQUAL \"/usr\" AND NOT \"${CMAKE_LIBRARY_ARCHITECTURE}\" STREQUAL \"\")
    set(UD_LIBDIR lib/${CMAKE_LIBRARY_ARCHITECTURE})
endif()
string(REPLACE / - _ud_pc \"\${UD_LIBDIR}\")
file(INSTALL DESTINATION \"\${CMAKE_INSTALL_PREFIX}/\${UD_LIBDIR}/pkgconfig\" TYPE FILE
     FILES \"${CMAKE_BINARY_DIR}/pc/\${_ud_pc}/updraft.pc\")" COMPONENT dev)
install(TARGETS updraft_common ARCHIVE DESTINATION "\${UD_LIBDIR}" COMPONENT dev)
install(DIRECTORY ${CMAKE_SOURCE_DIR}/common/include/updraft
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT dev FILES_MATCHING PATTERN "*.h")

# ---- documentation: the README and docs/ with the operator's tool; each package's copyright and
# changelog in share/doc/PACKAGE, as Debian wants them.
set(_ud_doc_component dev)
if(TARGET updraft)
    set(_ud_doc_component cli)
endif()
install(FILES ${CMAKE_SOURCE_DIR}/README.md DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/updraft
        COMPONENT ${_ud_doc_component})
install(DIRECTORY ${CMAKE_SOURCE_DIR}/docs DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/updraft
        COMPONENT ${_ud_doc_component} FILES_MATCHING PATTERN "*.md")
add_custom_command(OUTPUT ${CMAKE_BINARY_DIR}/changelog.gz
    COMMAND gzip -9n -c ${_deploy}/debian/changelog > ${CMAKE_BINARY_DIR}/changelog.gz
    DEPENDS ${_deploy}/debian/changelog
    VERBATIM)
add_custom_target(changelog ALL DEPENDS ${CMAKE_BINARY_DIR}/changelog.gz)
foreach(comp IN LISTS _ud_components)
    install(FILES ${_deploy}/debian/copyright ${CMAKE_BINARY_DIR}/changelog.gz
            DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/${_ud_pkg_${comp}} COMPONENT ${comp})
endforeach()

# ---- systemd units and their environment files (deploy/systemd/, deploy/default/) -------------
# The units name /usr/bin and /etc; deploy/install-units.cmake rewrites them for the prefix the
# install runs with, which is only known then (`--prefix`, or /usr under CPack).
macro(ud_install_units comp)
    install(CODE "set(UD_UNITS_SRC \"${_deploy}\")
set(UD_UNITS_TMP \"${CMAKE_BINARY_DIR}/units-${comp}\")
set(UD_UNITS \"${ARGN}\")
include(\"${_deploy}/install-units.cmake\")" COMPONENT ${comp})
endmacro()
if(TARGET updraft-coordinator)
    ud_install_units(coordinator systemd/updraft-coordinator.service default/updraft-coordinator)
endif()
if(TARGET updraft-agent)
    ud_install_units(agent systemd/updraft-agent.service systemd/updraft-agent@.service
                     default/updraft-agent)
endif()

# ---- CPack: Debian packages, one per component --------------------------------------------------
set(CPACK_PACKAGE_NAME updraft)
set(CPACK_PACKAGE_VENDOR "the updraft maintainers")
set(CPACK_PACKAGE_CONTACT "${UD_PACKAGE_MAINTAINER}")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "distributed training with federated on-device updates")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
# The install scripts see CMAKE_INSTALL_PREFIX=/usr (and DESTDIR=the staging tree), so the units
# and /etc/default files land where Debian wants them.
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL ${_ud_components})
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${UD_PACKAGE_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

set(CPACK_DEBIAN_COORDINATOR_PACKAGE_NAME updraft-coordinator)
set(CPACK_DEBIAN_COORDINATOR_PACKAGE_SECTION net)
set(CPACK_DEBIAN_COORDINATOR_PACKAGE_RECOMMENDS "updraft-worker, updraft-cli")
set(CPACK_COMPONENT_COORDINATOR_DESCRIPTION "updraft's coordinator service
It keeps training jobs, shard plans, metrics, checkpoints and model versions in
SQLite, launches workers under mpirun or takes the ones started elsewhere
(ZeroMQ), runs federated rounds with enrolled devices, and answers a REST API.
A systemd unit (updraft-coordinator.service) runs it as a hardened service.")

set(CPACK_DEBIAN_WORKER_PACKAGE_NAME updraft-worker)
set(CPACK_DEBIAN_WORKER_PACKAGE_SECTION science)
set(CPACK_DEBIAN_WORKER_PACKAGE_RECOMMENDS "openmpi-bin")
set(CPACK_COMPONENT_WORKER_DESCRIPTION "updraft's training worker
It trains image and tabular classifiers (.udm models) on one machine, or as one
rank of a synchronous data-parallel job under mpirun, with checkpoints and
exact resume, alone or for updraft-coordinator.")

set(CPACK_DEBIAN_AGENT_PACKAGE_NAME updraft-agent)
set(CPACK_DEBIAN_AGENT_PACKAGE_SECTION science)
set(CPACK_COMPONENT_AGENT_DESCRIPTION "updraft's on-device agent
It updates a model on a device's own data (one-shot updates) and, as a
daemon, takes part in an updraft coordinator's federated rounds: it pulls
signed models, trains locally and uploads only the delta. Systemd units
(updraft-agent.service, updraft-agent@.service) run it as a hardened service.")

set(CPACK_DEBIAN_CLI_PACKAGE_NAME updraft-cli)
set(CPACK_DEBIAN_CLI_PACKAGE_SECTION utils)
set(CPACK_COMPONENT_CLI_DESCRIPTION "updraft's command-line tool
The updraft command inspects, evaluates and uses .udm models, manages training
checkpoints, keys and dataset partitions, and is the client of an updraft
coordinator's REST API (jobs, models, devices, federations). It also holds
updraft's documentation.")

set(CPACK_DEBIAN_DEV_PACKAGE_NAME libupdraft-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
# A static library: what it links comes from the -dev packages of its pkg-config Requires.private.
set(_ud_dev_depends "libmsgpack-dev, zlib1g-dev, libpng-dev, libjpeg-dev, libsodium-dev, pkg-config")
if(UD_WITH_OPENBLAS)
    string(APPEND _ud_dev_depends ", libopenblas-dev")
endif()
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS "${_ud_dev_depends}")
set(CPACK_COMPONENT_DEV_DESCRIPTION "updraft's training core, for building against it
libupdraft (static) with its headers and a pkg-config file: models and their
maths, the .udm format, datasets, the update engine, checkpoints and the worker
protocol's messages. Build with pkg-config --cflags --libs --static updraft.")

# Files under /etc are conffiles (kept across upgrades, the admin's edits preserved).
foreach(comp coordinator agent)
    string(TOUPPER ${comp} COMP)
    file(WRITE ${CMAKE_BINARY_DIR}/conffiles-${comp}/conffiles "/etc/default/updraft-${comp}\n")
    set(CPACK_DEBIAN_${COMP}_PACKAGE_CONTROL_EXTRA ${CMAKE_BINARY_DIR}/conffiles-${comp}/conffiles)
endforeach()
include(CPack)
