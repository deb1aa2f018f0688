# End-to-end tests: the miagrid command under mpirun, checked through h5py.
# They need Debian's python3 with h5py and pandas (scripts/install-deps.sh).
find_program(MG_PYTHON NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(NOT MG_PYTHON)
  find_program(MG_PYTHON NAMES python3 REQUIRED)
endif()
set(MG_E2E_CASES select defenses attacks sens_shadows refattacks prune_schedules admm_slim cifar_archs serial_vs_mpi grow
                 kill_resume dry_run config_error analysis node_failure stop_resume store_guard csv_content)
foreach(case IN LISTS MG_E2E_CASES)
  add_test(NAME e2e/${case}
    COMMAND ${MG_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/e2e/test_e2e.py ${case}
            --miagrid $<TARGET_FILE:miagrid> --mpiexec ${MPIEXEC_EXECUTABLE}
            --tmp ${CMAKE_CURRENT_BINARY_DIR}/tmp/e2e-${case})
  set_tests_properties(e2e/${case} PROPERTIES
    LABELS "e2e;mpi"
    SKIP_RETURN_CODE 77
    TIMEOUT 900
    ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OPENBLAS_NUM_THREADS=1;LSAN_OPTIONS=suppressions=${PROJECT_SOURCE_DIR}/tests/lsan.supp:print_suppressions=0;OMPI_MCA_rmaps_base_oversubscribe=1")
endforeach()
# Seconds each case took in a sanitized build on 2 cores. ctest -j starts
# the costliest tests first, so that none of the long ones is left running
# alone at the end of a fresh build's run (later runs go by ctest's own record
# of their times).
set(MG_E2E_COSTS admm_slim=92 stop_resume=81 cifar_archs=62 select=59 store_guard=35 sens_shadows=33
                 kill_resume=28 defenses=24 attacks=20 refattacks=19 serial_vs_mpi=17 grow=15 node_failure=14
                 analysis=10 csv_content=10 prune_schedules=9 config_error=6 dry_run=3)
foreach(pair IN LISTS MG_E2E_COSTS)
  string(REPLACE "=" ";" kv ${pair})
  list(GET kv 0 case)
  list(GET kv 1 cost)
  set_tests_properties(e2e/${case} PROPERTIES COST ${cost})
endforeach()

# The scheduler benchmark stays runnable (a smoke run; figures come from bench/).
if(TARGET mg_sched_bench)
  add_test(NAME e2e/sched_bench_smoke
    COMMAND ${MPIEXEC_EXECUTABLE} --oversubscribe ${MPIEXEC_NUMPROC_FLAG} 4 $<TARGET_FILE:mg_sched_bench> --seeds 3)
  set_tests_properties(e2e/sched_bench_smoke PROPERTIES
    LABELS "e2e;mpi" TIMEOUT 120 PASS_REGULAR_EXPRESSION "nodes=240 "
    ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")
endif()
