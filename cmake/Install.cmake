# Install.cmake: installs the libraries, their headers, an exported CMake
# package (find_package(tasker_health) -> tasker::health, tasker::health_core,
# ...) and a pkg-config file (tasker-health.pc). Included at the end of the
# top-level CMakeLists.txt, after every library target exists.
#
#   cmake --install <build> --prefix <P>
#
#   P/include/tasker-health/{core,core/postgres,messages,actors}/*.hpp
#   P/<libdir>/libtasker_health_{core,postgres,messages,actors}.a
#   P/<libdir>/cmake/tasker_health/  tasker_healthConfig.cmake,
#       tasker_healthConfigVersion.cmake, tasker_healthTargets*.cmake,
#       FindCAF.cmake
#   P/<libdir>/pkgconfig/tasker-health.pc

include(CMakePackageConfigHelpers)

# Headers keep their repo-relative layout below this directory; core already
# declares it as its INSTALL_INTERFACE include directory.
set(TASKER_HEALTH_INSTALL_INCLUDEDIR "include/tasker-health")
set(TASKER_HEALTH_INSTALL_CMAKEDIR
    "${CMAKE_INSTALL_LIBDIR}/cmake/tasker_health")

# In link order (dependents first).
set(_th_libs tasker_health_actors tasker_health_messages
             tasker_health_postgres tasker_health_core)
set(_th_export_names health_actors health_messages health_postgres
                     health_core)

# ---- the targets of the export set ------------------------------------------
foreach(_lib _name IN ZIP_LISTS _th_libs _th_export_names)
  if(NOT TARGET ${_lib})
    message(FATAL_ERROR "Install.cmake: library target ${_lib} is missing")
  endif()
  set_target_properties(${_lib} PROPERTIES EXPORT_NAME ${_name})
  # tasker_health_options (warnings, sanitizers) must never reach a consumer:
  # every reference to it has to be wrapped in $<BUILD_INTERFACE:...>.
  foreach(_prop LINK_LIBRARIES INTERFACE_LINK_LIBRARIES)
    get_target_property(_deps ${_lib} ${_prop})
    if(NOT _deps)
      continue()
    endif()
    foreach(_dep IN LISTS _deps)
      if(_dep MATCHES "tasker_health_options"
         AND NOT _dep MATCHES "BUILD_INTERFACE:tasker_health_options")
        message(
          FATAL_ERROR
            "Install.cmake: ${_lib} links tasker_health_options without "
            "$<BUILD_INTERFACE:...>; it would leak into the exported package")
      endif()
    endforeach()
  endforeach()
endforeach()

# One target for the whole component: tasker::health.
add_library(tasker_health_all INTERFACE)
add_library(tasker::health ALIAS tasker_health_all)
set_target_properties(tasker_health_all PROPERTIES EXPORT_NAME health)
target_link_libraries(tasker_health_all INTERFACE ${_th_libs})

# Which PostgreSQL client libraries the libraries link (the postgres library
# talks libpq directly; libpqxx only if some library links it), so that the
# package config and the .pc file ask for exactly those.
set(_th_uses_pq OFF)
set(_th_uses_pqxx OFF)
foreach(_lib IN LISTS _th_libs)
  get_target_property(_deps ${_lib} LINK_LIBRARIES)
  if(_deps)
    if("PkgConfig::PQ" IN_LIST _deps)
      set(_th_uses_pq ON)
    endif()
    if("PkgConfig::PQXX" IN_LIST _deps)
      set(_th_uses_pqxx ON)
    endif()
  endif()
endforeach()

# ---- install rules ----------------------------------------------------------
install(
  TARGETS ${_th_libs} tasker_health_all
  EXPORT tasker_healthTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT tasker_health_dev
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT tasker_health_dev
  # Every exported target gets the header directory as its include
  # directory, not only core (which declares it itself).
  INCLUDES
  DESTINATION ${TASKER_HEALTH_INSTALL_INCLUDEDIR})

foreach(_dir core messages actors)
  # core/ includes core/postgres/.
  install(
    DIRECTORY "${PROJECT_SOURCE_DIR}/${_dir}/"
    DESTINATION "${TASKER_HEALTH_INSTALL_INCLUDEDIR}/${_dir}"
    COMPONENT tasker_health_dev
    FILES_MATCHING
    PATTERN "*.hpp")
endforeach()

install(
  EXPORT tasker_healthTargets
  NAMESPACE tasker::
  FILE tasker_healthTargets.cmake
  DESTINATION ${TASKER_HEALTH_INSTALL_CMAKEDIR}
  COMPONENT tasker_health_dev)

# Debian's CAF has no CMake package: the config finds it with our module.
install(FILES "${PROJECT_SOURCE_DIR}/cmake/FindCAF.cmake"
        DESTINATION ${TASKER_HEALTH_INSTALL_CMAKEDIR}
        COMPONENT tasker_health_dev)

set(TASKER_HEALTH_CAF_VERSION "${CAF_VERSION}")
set(TASKER_HEALTH_FIND_PQ "${_th_uses_pq}")
set(TASKER_HEALTH_FIND_PQXX "${_th_uses_pqxx}")
configure_package_config_file(
  "${PROJECT_SOURCE_DIR}/cmake/tasker_healthConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/package/tasker_healthConfig.cmake"
  INSTALL_DESTINATION ${TASKER_HEALTH_INSTALL_CMAKEDIR})
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/package/tasker_healthConfigVersion.cmake"
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMajorVersion)
install(FILES "${PROJECT_BINARY_DIR}/package/tasker_healthConfig.cmake"
              "${PROJECT_BINARY_DIR}/package/tasker_healthConfigVersion.cmake"
        DESTINATION ${TASKER_HEALTH_INSTALL_CMAKEDIR}
        COMPONENT tasker_health_dev)

# ---- pkg-config -------------------------------------------------------------
# Relocatable: the prefix is derived from the .pc file's own location, so the
# file is right for any `cmake --install --prefix`.
set(_th_pcdir "${CMAKE_INSTALL_LIBDIR}/pkgconfig")
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  message(
    FATAL_ERROR
      "Install.cmake: CMAKE_INSTALL_LIBDIR must be relative to the prefix")
endif()
file(RELATIVE_PATH _th_pc_to_prefix "/${_th_pcdir}" "/")
string(REGEX REPLACE "/$" "" _th_pc_to_prefix "${_th_pc_to_prefix}")
set(TASKER_HEALTH_PC_PREFIX "\${pcfiledir}/${_th_pc_to_prefix}")
set(TASKER_HEALTH_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
set(TASKER_HEALTH_PC_INCLUDEDIR "\${prefix}/include")
set(TASKER_HEALTH_PC_REQUIRES "spdlog libssl")
set(TASKER_HEALTH_PC_DEP_LIBS "-lcaf_openssl -lcaf_io -lcaf_core")
if(_th_uses_pqxx)
  string(APPEND TASKER_HEALTH_PC_REQUIRES " libpqxx")
  string(APPEND TASKER_HEALTH_PC_DEP_LIBS " -lpqxx")
endif()
if(_th_uses_pq)
  string(APPEND TASKER_HEALTH_PC_REQUIRES " libpq")
  string(APPEND TASKER_HEALTH_PC_DEP_LIBS " -lpq")
endif()
string(APPEND TASKER_HEALTH_PC_DEP_LIBS " -lspdlog -lfmt -lssl -lcrypto -pthread")
set(TASKER_HEALTH_PC_LIBS "")
foreach(_lib IN LISTS _th_libs)
  string(APPEND TASKER_HEALTH_PC_LIBS " -l${_lib}")
endforeach()
string(STRIP "${TASKER_HEALTH_PC_LIBS}" TASKER_HEALTH_PC_LIBS)
configure_file("${PROJECT_SOURCE_DIR}/cmake/tasker-health.pc.in"
               "${PROJECT_BINARY_DIR}/package/tasker-health.pc" @ONLY)
install(FILES "${PROJECT_BINARY_DIR}/package/tasker-health.pc"
        DESTINATION ${_th_pcdir}
        COMPONENT tasker_health_dev)
