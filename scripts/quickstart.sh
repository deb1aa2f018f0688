#!/usr/bin/env bash
# The first command of the README: installs what miagrid needs, builds it, and
# runs the default grid grids/quickstart.yaml with 3 MPI ranks (one coordinator,
# two workers). Prints a per-cell table and where the store is.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$here/scripts/install-deps.sh"
"$here/scripts/build.sh"
cd "$here"
# Open MPI refuses to run as root unless told, and needs --oversubscribe when
# there are more ranks than cores (3 ranks on a 2-core laptop is fine: rank 0
# only coordinates and sleeps while it waits).
mpi_flags=(--oversubscribe)
[[ $(id -u) -eq 0 ]] && mpi_flags+=(--allow-run-as-root)
exec mpirun "${mpi_flags[@]}" -np "${MG_RANKS:-3}" build/miagrid "$@" grids/quickstart.yaml
