# libFuzzer targets, one per parser (tests/fuzz/fuzz_*.c), built with
# -DMG_FUZZ=ON and clang. Each CTest test (label fuzz) is a short run over
# the target's seed corpus tests/fuzz/corpus/<target>; new inputs go to the
# build tree, never to the sources. Longer runs: see the README ("Hostile
# input").
if(NOT MG_FUZZ)
  return()
endif()

set(MG_FUZZ_SECONDS 3 CACHE STRING "Seconds each fuzz target runs under ctest -L fuzz")
file(GLOB MG_FUZZ_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_*.c)
add_custom_target(mg_fuzz)
foreach(src IN LISTS MG_FUZZ_SOURCES)
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src} ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/harness.c)
  target_include_directories(${name} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR} ${CMAKE_CURRENT_SOURCE_DIR}/fuzz
                             ${PROJECT_SOURCE_DIR}/src)
  target_compile_options(${name} PRIVATE ${MG_WARNINGS})
  target_link_libraries(${name} PRIVATE miagrid_lib)
  target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  add_dependencies(mg_fuzz ${name})

  set(work ${CMAKE_CURRENT_BINARY_DIR}/tmp/fuzz/${name})
  file(MAKE_DIRECTORY ${work}/corpus)
  add_test(NAME fuzz/${name}
    COMMAND ${name} -max_total_time=${MG_FUZZ_SECONDS} -runs=1000000 -timeout=20 -rss_limit_mb=2048
            -print_final_stats=1 -artifact_prefix=${work}/
            ${work}/corpus ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/${name})
  set_tests_properties(fuzz/${name} PROPERTIES
    LABELS fuzz
    TIMEOUT 120
    ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OPENBLAS_NUM_THREADS=1;UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1;LSAN_OPTIONS=suppressions=${PROJECT_SOURCE_DIR}/tests/lsan.supp:print_suppressions=0")
endforeach()

# The seed generator: writes the data and node-file seeds of the corpus with
# miagrid's own writers (tests/fuzz/make_seeds.c; run by hand, see its header).
if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/make_seeds.c)
  add_executable(mg_fuzz_seeds ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/make_seeds.c ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/harness.c)
  target_include_directories(mg_fuzz_seeds PRIVATE ${CMAKE_CURRENT_SOURCE_DIR} ${PROJECT_SOURCE_DIR}/src)
  target_compile_options(mg_fuzz_seeds PRIVATE ${MG_WARNINGS})
  target_link_libraries(mg_fuzz_seeds PRIVATE miagrid_lib)
endif()
