# Builds and runs one consumer project. Run with cmake -P, given:
#   MODE        find_package | add_subdirectory | fetch_content | makefile
#   SOURCE_DIR  offload's source tree;  WORK_DIR  a scratch folder;  CXX  the compiler
cmake_minimum_required(VERSION 3.21)

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  message(STATUS "${out}")
endfunction()

file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)
set(consumer ${SOURCE_DIR}/tests/cmake/${MODE})

if(MODE STREQUAL "find_package" OR MODE STREQUAL "makefile")
  # Install offload alone (no tests, no examples) into a private prefix.
  run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/offload -DCMAKE_CXX_COMPILER=${CXX}
      -DOFFLOAD_BUILD_TESTS=OFF -DOFFLOAD_BUILD_EXAMPLES=OFF -DCMAKE_INSTALL_PREFIX=${prefix})
  run(${CMAKE_COMMAND} --install ${WORK_DIR}/offload)
endif()

if(MODE STREQUAL "makefile")
  file(COPY ${consumer}/Makefile DESTINATION ${WORK_DIR}/make)
  file(COPY ${SOURCE_DIR}/tests/cmake/app.cpp DESTINATION ${WORK_DIR})
  run(${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${prefix}/share/pkgconfig CXX=${CXX}
      make -C ${WORK_DIR}/make app)
  run(${WORK_DIR}/make/app)
  return()
endif()

run(${CMAKE_COMMAND} -S ${consumer} -B ${WORK_DIR}/app -DCMAKE_CXX_COMPILER=${CXX}
    -DCMAKE_PREFIX_PATH=${prefix} -DOFFLOAD_SOURCE_DIR=${SOURCE_DIR})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/app)
run(${WORK_DIR}/app/app)
