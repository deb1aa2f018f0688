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
    COST 57   # seconds in a sanitized build (see e2e.cmake)
    ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OPENBLAS_NUM_THREADS=1;OMPI_MCA_mpi_yield_when_idle=1;LSAN_OPTIONS=suppressions=${PROJECT_SOURCE_DIR}/tests/lsan.supp:print_suppressions=0")
endif()
