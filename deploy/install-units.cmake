# install-units.cmake — run by `cmake --install` (packaging.cmake's install(CODE)): installs the
# systemd units and environment files named in UD_UNITS (paths under UD_UNITS_SRC), with the
# unit files' /usr/bin and /etc rewritten for the prefix of this install.
#   prefix /usr (the Debian packages): units in /lib/systemd/system, files in /etc/default
#   any other prefix P:                 units in P/lib/systemd/system, files in P/etc/default
# DESTDIR, when set, is prepended by file(INSTALL) as for every installed file.
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
    set(_etc /etc)
    set(_units /lib/systemd/system)
else()
    set(_etc ${CMAKE_INSTALL_PREFIX}/etc)
    set(_units ${CMAKE_INSTALL_PREFIX}/lib/systemd/system)
endif()
foreach(f IN LISTS UD_UNITS)
    get_filename_component(name ${f} NAME)
    if(f MATCHES "^systemd/")
        file(READ ${UD_UNITS_SRC}/${f} text)
        string(REPLACE "/usr/bin/" "${CMAKE_INSTALL_PREFIX}/bin/" text "${text}")
        string(REPLACE "=/etc/" "=${_etc}/" text "${text}")
        string(REPLACE "=-/etc/" "=-${_etc}/" text "${text}")
        string(REPLACE ":/etc/" ":${_etc}/" text "${text}")
        file(WRITE ${UD_UNITS_TMP}/${name} "${text}")
        file(INSTALL DESTINATION ${_units} TYPE FILE PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ
             WORLD_READ FILES ${UD_UNITS_TMP}/${name})
    else()
        file(INSTALL DESTINATION ${_etc}/default TYPE FILE PERMISSIONS OWNER_READ OWNER_WRITE
             GROUP_READ WORLD_READ FILES ${UD_UNITS_SRC}/${f})
    endif()
endforeach()
