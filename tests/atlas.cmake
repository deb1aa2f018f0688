# The vulnerability atlas under MPI: miagrid-atlas on a small store built by
# miagrid from tests/e2e/tiny.yaml, on 1 and on 4 ranks, checked through h5py
# and numpy (tests/atlas/atlas_mpi.py). Needs Fashion-MNIST; skipped without it.
if(TARGET miagrid-atlas)
  if(NOT MG_PYTHON)
    find_program(MG_PYTHON NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
    if(NOT MG_PYTHON)
      find_program(MG_PYTHON NAMES python3 REQUIRED)
    endif()
  endif()
  add_test(NAME atlas/mpi_1_vs_4
    COMMAND ${MG_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/atlas/atlas_mpi.py
            --miagrid $<TARGET_FILE:miagrid> --atlas $<TARGET_FILE:miagrid-atlas>
            --mpiexec ${MPIEXEC_EXECUTABLE} --np-flag=${MPIEXEC_NUMPROC_FLAG}
            --grid ${PROJECT_SOURCE_DIR}/tests/e2e/tiny.yaml
            --tmp ${CMAKE_CURRENT_BINARY_DIR}/tmp/atlas-mpi)
  set_tests_properties(atlas/mpi_1_vs_4 PROPERTIES
    LABELS "mpi;atlas"
    SKIP_RETURN_CODE 77
    TIMEOUT 600
    COST 89   # seconds in a sanitized build (see e2e.cmake)
    ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OPENBLAS_NUM_THREADS=1;OMPI_MCA_mpi_yield_when_idle=1;ASAN_OPTIONS=fast_unwind_on_malloc=0;LSAN_OPTIONS=suppressions=${PROJECT_SOURCE_DIR}/tests/lsan.supp:print_suppressions=0")
endif()

# The unit tests start MPI (a singleton) for BLACS: full stack unwinding lets
# the LeakSanitizer suppressions recognise what Open MPI keeps until exit.
file(GLOB MG_ATLAS_UNIT_TESTS ${CMAKE_CURRENT_SOURCE_DIR}/atlas/test_*.c)
foreach(src IN LISTS MG_ATLAS_UNIT_TESTS)
  get_filename_component(name ${src} NAME_WE)
  if(TEST atlas/${name})
    set_property(TEST atlas/${name} APPEND PROPERTY ENVIRONMENT "ASAN_OPTIONS=fast_unwind_on_malloc=0")
  endif()
endforeach()
