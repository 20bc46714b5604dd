# offload_adapter_targets()
#
# Defines a target for each adapter whose library is found: offload::asio (standalone Asio,
# <offload/asio.hpp>), offload::boost_asio (Boost.Asio, the same header) and offload::uv
# (libuv through pkg-config, <offload/uv.hpp>). Each is offload::offload plus the library;
# link one to use the adapter. Called by offload's own CMakeLists.txt and by the installed
# offloadConfig.cmake, so a consumer gets the targets for what its machine has.
function(offload_adapter_targets)
  if(NOT TARGET offload::asio)
    find_path(OFFLOAD_ASIO_INCLUDE_DIR asio.hpp)
    if(OFFLOAD_ASIO_INCLUDE_DIR)
      add_library(offload::asio INTERFACE IMPORTED GLOBAL)
      target_include_directories(offload::asio SYSTEM INTERFACE "${OFFLOAD_ASIO_INCLUDE_DIR}")
      target_compile_definitions(offload::asio INTERFACE OFFLOAD_ASIO_STANDALONE)
      target_link_libraries(offload::asio INTERFACE offload::offload)
    endif()
  endif()
  if(NOT TARGET offload::boost_asio)
    find_path(OFFLOAD_BOOST_ASIO_INCLUDE_DIR boost/asio.hpp)
    if(OFFLOAD_BOOST_ASIO_INCLUDE_DIR)
      add_library(offload::boost_asio INTERFACE IMPORTED GLOBAL)
      target_include_directories(offload::boost_asio SYSTEM INTERFACE
        "${OFFLOAD_BOOST_ASIO_INCLUDE_DIR}")
      target_compile_definitions(offload::boost_asio INTERFACE OFFLOAD_ASIO_BOOST)
      target_link_libraries(offload::boost_asio INTERFACE offload::offload)
    endif()
  endif()
  if(NOT TARGET offload::uv)
    find_package(PkgConfig QUIET)
    if(PKG_CONFIG_FOUND)
      pkg_check_modules(OFFLOAD_LIBUV QUIET IMPORTED_TARGET GLOBAL libuv)
      if(OFFLOAD_LIBUV_FOUND)
        add_library(offload::uv INTERFACE IMPORTED GLOBAL)
        target_link_libraries(offload::uv INTERFACE offload::offload PkgConfig::OFFLOAD_LIBUV)
      endif()
    endif()
  endif()
endfunction()
