# offload_adapter_targets()
#
# Defines a target for each adapter whose library is found: offload::asio (standalone Asio,
# <offload/asio.hpp>) and offload::boost_asio (Boost.Asio, the same header). Each is
# offload::offload plus the library's include directory (both are header-only); link one to
# use the adapter. Called by offload's own CMakeLists.txt and by the installed
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
endfunction()
