#!/usr/bin/env bash
# The second command of the README, and what CI runs (.ci/run): installs what
# is missing, then
#   1. normal     builds build/ and runs the whole suite (but the valgrind tests)
#   2. asan       builds build-asan/ with AddressSanitizer and UBSan
#                 (-DMG_SANITIZE=ON) and runs the whole suite under them
#   3. fuzz       builds the libFuzzer targets into build-fuzz/ with clang
#                 (-DMG_FUZZ=ON) and runs each a few seconds (ctest -L fuzz)
#   4. valgrind   runs miagrid under valgrind on one and on two MPI ranks
#                 (ctest -L valgrind, in build/)
# and prints the time each stage took. MG_TEST_STAGES="normal valgrind" (any
# of the four names) runs some of them. With arguments, only the normal build
# is made and the arguments go to its ctest (./scripts/test.sh -L mpi, -R grid).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${MG_BUILD_DIR:-$here/build}
"$here/scripts/install-deps.sh"

if (($# > 0)); then
  "$here/scripts/build.sh"
  exec ctest --test-dir "$build" --output-on-failure "$@"
fi

stages=${MG_TEST_STAGES:-normal asan fuzz valgrind}
# As many tests at once as there are cores: most are single-threaded, and
# the MPI ones oversubscribe anyway.
jobs=$(nproc)
summary=()
t_all=$SECONDS
for stage in $stages; do
  t0=$SECONDS
  echo "==== test.sh: $stage"
  case $stage in
    normal)
      "$here/scripts/build.sh"
      ctest --test-dir "$build" --output-on-failure -j "$jobs" -LE valgrind ;;
    asan)
      MG_BUILD_DIR=$here/build-asan "$here/scripts/build.sh" -DMG_SANITIZE=ON
      ctest --test-dir "$here/build-asan" --output-on-failure -j "$jobs" ;;
    fuzz)
      CC=clang cmake -S "$here" -B "$here/build-fuzz" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMG_FUZZ=ON >/dev/null
      cmake --build "$here/build-fuzz" -j "$(nproc)" --target mg_fuzz
      ctest --test-dir "$here/build-fuzz" --output-on-failure -j "$jobs" -L fuzz ;;
    valgrind)
      "$here/scripts/build.sh"
      ctest --test-dir "$build" --output-on-failure -j "$jobs" -L valgrind ;;
    *)
      echo "test.sh: unknown stage \"$stage\" (normal, asan, fuzz, valgrind)" >&2
      exit 2 ;;
  esac
  summary+=("$(printf '%-9s %5d s' "$stage" $((SECONDS - t0)))")
done
echo "==== test.sh: every stage passed"
printf '  %s\n' "${summary[@]}"
printf '  %-9s %5d s\n' total $((SECONDS - t_all))
