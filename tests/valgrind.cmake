# The miagrid command under valgrind (label valgrind): a tiny grid on one
# rank (and store verify), and on two ranks as `mpirun -np 2 valgrind
# miagrid` (and its rerun), with tests/valgrind.supp for Open MPI, HDF5 and
# OpenBLAS internals. Not in sanitizer or fuzz builds (valgrind cannot run
# sanitized programs).
if(MG_SANITIZE OR MG_FUZZ)
  return()
endif()
find_program(MG_VALGRIND valgrind)
if(NOT MG_VALGRIND)
  message(STATUS "valgrind not found: the valgrind tests are left out (scripts/install-deps.sh installs it)")
  return()
endif()
if(NOT MG_PYTHON)
  find_program(MG_PYTHON NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
  if(NOT MG_PYTHON)
    find_program(MG_PYTHON NAMES python3 REQUIRED)
  endif()
endif()
foreach(case serial mpi)
  add_test(NAME valgrind/${case}
    COMMAND ${MG_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/valgrind/run_valgrind.py ${case}
            --miagrid $<TARGET_FILE:miagrid> --mpiexec ${MPIEXEC_EXECUTABLE} --valgrind ${MG_VALGRIND}
            --supp ${CMAKE_CURRENT_SOURCE_DIR}/valgrind.supp --tmp ${CMAKE_CURRENT_BINARY_DIR}/tmp/valgrind-${case})
  set_tests_properties(valgrind/${case} PROPERTIES
    LABELS "valgrind;mpi"
    TIMEOUT 900
    ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OPENBLAS_NUM_THREADS=1;OMPI_MCA_rmaps_base_oversubscribe=1;OMPI_MCA_btl_vader_single_copy_mechanism=none")
endforeach()
