#!/usr/bin/env bash
# The second command of the README: installs what is missing, builds, and runs
# the whole test suite through CTest (unit tests per module and the MPI
# end-to-end tests). Extra arguments go to ctest, e.g. -L mpi or -R grid.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$here/scripts/install-deps.sh"
"$here/scripts/build.sh"
ctest --test-dir "${MG_BUILD_DIR:-$here/build}" --output-on-failure "$@"
