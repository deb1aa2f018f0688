#!/usr/bin/env python3
"""The miagrid command under valgrind: a tiny grid (an MLP on a 300-row CSV
written here, 8 nodes) run on one rank, checked with `store verify`, then
run on two ranks with `mpirun -np 2 valgrind miagrid` and run again (every
node reused). Each valgrind run must report no error and no leak outside
the suppressed Open MPI, HDF5 and OpenBLAS internals (tests/valgrind.supp).

usage: run_valgrind.py CASE --miagrid BIN --mpiexec MPIEXEC --valgrind VALGRIND --supp FILE --tmp DIR
CASE is serial or mpi.
"""
import argparse
import glob
import os
import random
import re
import shutil
import subprocess
import sys

GRID = """name: vg
seeds: [0]
data: {split: {target_train: 60, target_test: 60, shadow_train: 60, shadow_test: 60}}
train: {epochs: 2, batch: 30}
finetune: {epochs: 1}
axes:
  dataset: {name: csv, root: DATA, classes: 3}
  arch: {name: mlp, hidden: [8]}
  sparsity: [0, 0.5]
attacks: [loss, conf]
"""


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)
    print("ok: " + msg, flush=True)


def run(cmd, logs):
    print("$ " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    sys.stdout.write(p.stdout[-3000:])
    sys.stderr.write(p.stderr[-3000:])
    for log in sorted(glob.glob(logs)):
        text = open(log).read()
        summary = re.findall(r"ERROR SUMMARY: (\d+) errors", text)
        # A child that Open MPI forks to exec its daemon (a singleton run)
        # leaves a log with the header only: it ran no code of miagrid's.
        body = text.split("Parent PID:", 1)[-1].splitlines()[1:]
        exec_only = not summary and not [l for l in body if re.sub(r"^==\d+==", "", l).strip()]
        if not exec_only and (not summary or summary[-1] != "0"):
            sys.stderr.write(text[-20000:])
            fail(f"valgrind reported errors ({log})")
        os.remove(log)
    if p.returncode != 0:
        fail(f"exit status {p.returncode}")
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("case", choices=["serial", "mpi"])
    ap.add_argument("--miagrid", required=True)
    ap.add_argument("--mpiexec", required=True)
    ap.add_argument("--valgrind", required=True)
    ap.add_argument("--supp", required=True)
    ap.add_argument("--tmp", required=True)
    a = ap.parse_args()
    shutil.rmtree(a.tmp, ignore_errors=True)
    os.makedirs(a.tmp)
    rng = random.Random(1)
    data = os.path.join(a.tmp, "data.csv")
    with open(data, "w") as f:
        for i in range(300):
            y = i % 3
            f.write(",".join([str(y)] + [f"{0.5 * y + rng.gauss(0, 1):.4f}" for _ in range(6)]) + "\n")
    grid = os.path.join(a.tmp, "vg.yaml")
    with open(grid, "w") as f:
        f.write(GRID.replace("DATA", data))
    store = os.path.join(a.tmp, "store")
    vg = [a.valgrind, "--error-exitcode=1", "--leak-check=full", "--num-callers=40",
          "--suppressions=" + a.supp, "--log-file=" + os.path.join(a.tmp, "vg.%p.log")]
    logs = os.path.join(a.tmp, "vg.*.log")
    if a.case == "serial":
        p = run(vg + [a.miagrid, "--quiet", "--store", store, grid], logs)
        check("8 nodes: 8 computed" in p.stdout, "one rank under valgrind computes the grid")
        p = run(vg + [a.miagrid, "store", "verify", store], logs)
        check("8 node files ok, 0 problems" in p.stdout, "store verify under valgrind passes the store")
    else:
        mpi = [a.mpiexec, "--oversubscribe", "-np", "2"]
        p = run(mpi + vg + [a.miagrid, "--quiet", "--store", store, grid], logs)
        check("8 nodes: 8 computed" in p.stdout, "two ranks under valgrind compute the grid")
        p = run(mpi + vg + [a.miagrid, "--quiet", "--store", store, grid], logs)
        check("8 nodes: 0 computed, 8 reused" in p.stdout, "a second run under valgrind reuses every node")
    print("valgrind: no errors, no leaks outside the suppressed libraries")


if __name__ == "__main__":
    main()
