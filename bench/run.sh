#!/usr/bin/env bash
# bench/run.sh: miagrid's training throughput and peak memory against
# PyTorch's on the same machine in the same run. Builds mg_bench if needed,
# then runs, for each repetition, each model once in miagrid and once in
# PyTorch (the reference script given by --torch or $MG_TORCH_BASELINE), each
# in a process of its own so that the peak memory is that model's, the two
# back to back in alternating order, plus the single-thread SGEMM rate; then
# prints the medians as one table, the spread of the repetitions behind them,
# and checks the speed targets.
#
# usage: bench/run.sh [--reps N] [--models "lenet5 mlp resnet20"] [--torch SCRIPT]
#   MG_BUILD_DIR      build directory (default build/)
#   PYTHON            the Python with torch (default: the first of /usr/bin/python3, python3 that has it)
#   MG_TORCH_BASELINE the PyTorch reference script (same as --torch): run as
#                     `python3 SCRIPT MODEL STEPS`, it trains MODEL for 5 + STEPS steps
#                     with the protocol of bench/README.md and prints its samples per second
# Without PyTorch it says so and prints miagrid's numbers alone. Exits 0 when
# the benchmarks ran, whether or not the targets are met.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${MG_BUILD_DIR:-$here/build}
reps=3
models="lenet5 mlp resnet20"
while (($#)); do
  case $1 in
    --reps) reps=$2; shift 2 ;;
    --models) models=$2; shift 2 ;;
    --torch) MG_TORCH_BASELINE=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ $reps =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --reps wants a positive integer (got '$reps')" >&2; exit 2; }

# Timed steps per model, the same for both engines (after 5 warm-up steps).
declare -A steps=([lenet5]=200 [mlp]=100 [resnet20]=20)
for m in $models; do
  [[ -n ${steps[$m]:-} ]] || { echo "run.sh: unknown model '$m' (lenet5, mlp, resnet20)" >&2; exit 2; }
done

# One thread for both engines, whatever the BLAS: torch.set_num_threads(1)
# limits OpenMP but not an OpenBLAS that torch calls, whose idle second thread
# then spins against whatever else runs. OPENBLAS_CORETYPE, when set, picks
# the GEMM kernels of both (the table prints which ones ran).
# (nproc honours OMP_NUM_THREADS: the cores are counted without it.)
ncpu=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1

# ---- build --------------------------------------------------------------------
if [[ ! -f $build/CMakeCache.txt ]]; then
  cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$build" --target mg_bench -j "$ncpu" >/dev/null
bench=$build/mg_bench

# ---- PyTorch ------------------------------------------------------------------
baseline=${MG_TORCH_BASELINE:-}
py=
for cand in ${PYTHON:-} /usr/bin/python3 python3; do
  if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import torch' >/dev/null 2>&1; then
    py=$cand
    break
  fi
done
if [[ -z $py ]]; then
  echo "run.sh: PyTorch not found (scripts/install-deps.sh --bench installs it): miagrid's numbers alone"
elif [[ -z $baseline ]]; then
  echo "run.sh: no PyTorch reference script (--torch SCRIPT or MG_TORCH_BASELINE): miagrid's numbers alone"
  py=
elif [[ ! -f $baseline ]]; then
  echo "run.sh: $baseline not found (--torch SCRIPT or MG_TORCH_BASELINE): miagrid's numbers alone"
  py=
fi

# Runs the PyTorch baseline for one model and appends its peak resident set
# (the child's ru_maxrss, KiB) to its output line.
torch_run() {
  "$py" - "$baseline" "$1" "$2" <<'EOF'
import resource, subprocess, sys
r = subprocess.run([sys.executable] + sys.argv[1:], stdout=subprocess.PIPE, text=True)
line = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
print(line, "peak_kib=%d" % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(r.returncode)
EOF
}

# The value of key in a line of key=value pairs.
field() { sed -n "s/.*\b$2=\([^ ]*\).*/\1/p" <<<"$1"; }
# The value of key in each line of key=value pairs in file.
fields() { sed -n "s/.*\b$2=\([^ ]*\).*/\1/p" "$1"; }

# A missing number (nan) as a dash in the table.
dash() { if [[ $1 == nan ]]; then echo -; else echo "$1"; fi; }

median() { sort -g | awk '{v[NR] = $1} END {if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# ---- the machine ----------------------------------------------------------------
cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)
os=$( (. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME") || uname -sr)
cc=$(sed -n 's/^CMAKE_C_COMPILER:[A-Z]*=//p' "$build/CMakeCache.txt")
ccver=$("${cc:-cc}" --version 2>/dev/null | head -1)
btype=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build/CMakeCache.txt")
echo "machine: $cpu, $ncpu cores; $os; $ccver; build type ${btype:-none}"
load_start=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo '?')
[[ -n $py ]] && echo "pytorch: $("$py" -c 'import torch; print(torch.__version__)') ($py, one thread)"

# ---- the runs -------------------------------------------------------------------
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for ((r = 1; r <= reps; r++)); do
  echo "repetition $r of $reps ..."
  "$bench" --sgemm >>"$tmp/sgemm"
  for m in $models; do
    ours() { "$bench" --model "$m" --steps "${steps[$m]}" >>"$tmp/mg.$m"; }
    theirs() {
      [[ -n $py ]] || return 0
      torch_run "$m" "${steps[$m]}" >>"$tmp/torch.$m" || echo "run.sh: the PyTorch baseline failed on $m" >&2
    }
    if ((r % 2)); then ours; theirs; else theirs; ours; fi
  done
done

# Other work on the machine slows the long runs (ResNet20's) more than the
# short SGEMM, whose best run counts: the load average says how quiet it was.
echo "load average (1 min) at the start: $load_start, at the end: $(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo '?') ($ncpu cores)"

# ---- the table --------------------------------------------------------------------
sgemm=$(fields "$tmp/sgemm" gflops | median)
blas=$(sed -n 's/.*openblas="\([^"]*\)".*/\1/p' "$tmp/sgemm" | head -1)
echo
echo "single-thread SGEMM (best of square 512 and 1024, median of $reps runs): $sgemm GFLOP/s${blas:+; $blas}"
echo "medians of $reps runs; training FLOPs = 2 x multiply-adds of the conv and linear layers,"
echo "3x the forward's (2x for the layer reading the input); peak = the process's maximum resident set"
echo
printf '%-9s %12s %12s %7s %9s %8s %10s %10s %8s\n' model "mg samp/s" "torch samp/s" ratio "mg GF/s" "% SGEMM" "mg MiB" "torch MiB" "mem mg/t"
declare -A R_ratio R_pct R_mem
for m in $models; do
  mg_sps=$(fields "$tmp/mg.$m" samples_per_s | median)
  mg_mib=$(fields "$tmp/mg.$m" peak_mib | median)
  mflop=$(field "$(head -1 "$tmp/mg.$m")" train_mflop_per_sample)
  gf=$(awk -v s="$mg_sps" -v f="$mflop" 'BEGIN {printf "%.1f", s * f / 1000}')
  # One decimal, and the target is checked on that, not on a whole percent
  # rounded up to it.
  pct=$(awk -v g="$mg_sps" -v f="$mflop" -v s="$sgemm" 'BEGIN {printf "%.1f", 100 * g * f / 1000 / s}')
  t_sps=nan t_mib=nan ratio=nan mem=nan
  if [[ -s $tmp/torch.$m ]]; then
    t_sps=$(fields "$tmp/torch.$m" train_samples_per_s | median)
    t_mib=$(fields "$tmp/torch.$m" peak_kib | median | awk '{printf "%.1f", $1 / 1024}')
    ratio=$(awk -v a="$mg_sps" -v b="$t_sps" 'BEGIN {printf "%.2f", a / b}')
    mem=$(awk -v a="$mg_mib" -v b="$t_mib" 'BEGIN {printf "%.3f", a / b}')
  fi
  R_ratio[$m]=$ratio R_pct[$m]=$pct R_mem[$m]=$mem
  printf '%-9s %12.0f %12s %7s %9s %8s %10s %10s %8s\n' "$m" "$mg_sps" "$(dash "$t_sps")" "$(dash "$ratio")" "$gf" \
    "$pct" "$mg_mib" "$(dash "$t_mib")" "$(dash "$mem")"
done

# The spread behind each median: the slowest and fastest run of each engine,
# and each run's FLOP rate against the SGEMM rate of its own repetition.
range_of() { sort -g | awk 'NR == 1 {lo = $1} {hi = $1} END {if (NR) printf "%.0f-%.0f", lo, hi; else print "-"}'; }
echo
echo "by repetition (samples/s, slowest-fastest; % of that repetition's SGEMM):"
for m in $models; do
  mflop=$(field "$(head -1 "$tmp/mg.$m")" train_mflop_per_sample)
  pcts=$(paste -d' ' <(fields "$tmp/mg.$m" samples_per_s) <(fields "$tmp/sgemm" gflops) |
         awk -v f="$mflop" '{printf "%s%.1f", (NR > 1 ? " " : ""), 100 * $1 * f / 1000 / $2}')
  t_range=-
  [[ -s $tmp/torch.$m ]] && t_range=$(fields "$tmp/torch.$m" train_samples_per_s | range_of)
  printf '  %-9s miagrid %s, PyTorch %s; %% SGEMM %s\n' "$m" \
    "$(fields "$tmp/mg.$m" samples_per_s | range_of)" "$t_range" "$pcts"
done

# ---- the targets ------------------------------------------------------------------
check() {   # name, value, comparison, bound
  local verdict
  if [[ $2 == nan ]]; then verdict="n/a (no PyTorch numbers)"; set -- "$1" - "$3" "$4"
  elif awk -v v="$2" -v b="$4" -v op="$3" 'BEGIN {exit !(op == ">=" ? v >= b : v <= b)}'; then verdict=met
  else verdict="NOT met"
  fi
  printf '  %-44s %8s %s %-5s %s\n' "$1" "$2" "$3" "$4" "$verdict"
}
echo
echo "targets:"
for m in $models; do
  case $m in
    lenet5) check "lenet5 samples/s vs PyTorch" "${R_ratio[$m]}" ">=" 2.0
            check "lenet5 peak memory vs PyTorch" "${R_mem[$m]}" "<=" 0.2 ;;
    mlp) check "mlp samples/s vs PyTorch" "${R_ratio[$m]}" ">=" 1.0 ;;
    resnet20) check "resnet20 samples/s vs PyTorch" "${R_ratio[$m]}" ">=" 1.0
              check "resnet20 training GFLOP/s, % of SGEMM" "${R_pct[$m]}" ">=" 60 ;;
  esac
done
exit 0
