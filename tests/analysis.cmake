# Tests of the analysis scripts (analysis/*.py): the tiny grid is run with the
# built miagrid into a temporary store, then tables, figures and report.py are
# checked against it. They need Debian's python3 with h5py, pandas and
# matplotlib (scripts/install-deps.sh); e2e.cmake finds it as MG_PYTHON.
if(NOT MG_PYTHON)
  find_program(MG_PYTHON NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
  if(NOT MG_PYTHON)
    find_program(MG_PYTHON NAMES python3 REQUIRED)
  endif()
endif()
add_test(NAME analysis/test_analysis
  COMMAND ${MG_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/analysis/test_analysis.py
          --miagrid $<TARGET_FILE:miagrid> --tmp ${CMAKE_CURRENT_BINARY_DIR}/tmp/analysis)
set_tests_properties(analysis/test_analysis PROPERTIES
  LABELS analysis
  SKIP_RETURN_CODE 77
  TIMEOUT 600
  COST 51   # seconds in a sanitized build (see e2e.cmake)
  ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OPENBLAS_NUM_THREADS=1;MPLBACKEND=Agg;MPLCONFIGDIR=${CMAKE_CURRENT_BINARY_DIR}/tmp/matplotlib;LSAN_OPTIONS=suppressions=${PROJECT_SOURCE_DIR}/tests/lsan.supp:print_suppressions=0")
