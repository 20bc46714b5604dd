# Copies single_include/offload/offload.hpp and tests/cmake/app.cpp into an empty folder and
# builds them with nothing but the compiler: `CXX -std=c++20 -pthread`. Run with cmake -P.
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR}/offload)
file(COPY ${SOURCE_DIR}/single_include/offload/offload.hpp DESTINATION ${WORK_DIR}/offload)
file(COPY ${SOURCE_DIR}/tests/cmake/app.cpp DESTINATION ${WORK_DIR})
execute_process(COMMAND ${CXX} -std=c++20 -pthread -Wall -Wextra -Werror -I. app.cpp -o app
  WORKING_DIRECTORY ${WORK_DIR} RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the single header does not build with ${CXX}:\n${err}")
endif()
execute_process(COMMAND ${WORK_DIR}/app WORKING_DIRECTORY ${WORK_DIR} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the single-header program failed (${rc})")
endif()
