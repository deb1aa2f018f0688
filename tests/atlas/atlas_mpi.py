#!/usr/bin/env python3
"""MPI test of miagrid-atlas: builds a small store with miagrid (tests/e2e/tiny.yaml,
needs Fashion-MNIST), runs the atlas on 1 rank and on 4 ranks (a 2 x 2 process
grid with a block size that divides nothing), and checks that

  - both runs agree: the consolidated matrix exactly, the per-sample statistics to
    1e-12, the singular values to 1e-10 relative, the singular vectors up to sign,
    the weight spectra to 1e-10 relative;
  - the numbers are right: numpy recomputes the matrix from the node files, the
    statistics, the SVD of the standardised matrix and every weight spectrum;
  - the errors are clear: a missing store, a bad option, an unreadable node file
    (skipped with a warning, or an error with --strict), a rank that cannot see
    the store. (tests/atlas/test_run.c covers the rest on one rank.)

usage: atlas_mpi.py --miagrid BIN --atlas BIN --mpiexec MPIEXEC --np-flag FLAG --grid YAML --tmp DIR
Exits 77 (skipped) when Fashion-MNIST is not installed.
"""
import argparse
import glob
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np

DATA = "/usr/share/datasets/fashion-mnist"


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)
    print("ok: " + msg)


def run(cmd, expect=0):
    print("$ " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    sys.stdout.write(p.stdout[-4000:])
    sys.stderr.write(p.stderr[-4000:])
    if expect is not None and p.returncode != expect:
        fail(f"exit status {p.returncode}, expected {expect}")
    return p


def load(path):
    out = {}
    with h5py.File(path, "r") as f:
        a = f["atlas"]
        for name in ("sample_index", "node_key", "scores", "is_member", "nodes", "sample_stats", "top_exposed",
                     "spectra_summary"):
            out[name] = a[name][()]
        for name in ("singular_values", "explained", "left", "right"):
            out["svd/" + name] = a["svd/" + name][()]
        out["spectra"] = {}
        for key in a["spectra"]:
            for layer in a["spectra"][key]:
                out["spectra"][key + "/" + layer] = a["spectra"][key][layer][()]
        out["attrs"] = dict(a.attrs)
    return out


def same_table(a, b, name, tol):
    check(a.dtype == b.dtype and a.shape == b.shape, f"{name}: same columns and rows")
    for field in a.dtype.names:
        x, y = a[field], b[field]
        if x.dtype.kind == "f":
            ok = np.allclose(x, y, rtol=tol, atol=tol, equal_nan=True)
            d = np.nanmax(np.abs(x - y)) if np.isfinite(x).any() else 0.0
            check(ok, f"{name}.{field} agrees to {tol:g} (max diff {d:.2e})")
        else:
            check(np.array_equal(x, y), f"{name}.{field} identical")


def same_vectors(a, b, sv, name, tol):
    """Columns equal up to sign, except where singular values are too close to
    separate their vectors."""
    for k in range(a.shape[1]):
        gap = min([abs(sv[k] - sv[j]) for j in range(len(sv)) if j != k] + [np.inf]) / sv[0]
        if gap < 1e-6:
            print(f"note: {name} component {k} is near-degenerate (gap {gap:.1e}); not compared")
            continue
        s = 1.0 if np.dot(a[:, k], b[:, k]) >= 0 else -1.0
        d = np.max(np.abs(a[:, k] - s * b[:, k]))
        check(d < tol, f"{name} component {k} agrees up to sign (max diff {d:.2e})")


def compare_runs(a, b):
    check(np.array_equal(a["sample_index"], b["sample_index"]), "sample_index identical")
    check(np.array_equal(a["node_key"], b["node_key"]), "node_key identical")
    check(np.array_equal(a["scores"], b["scores"], equal_nan=True), "scores identical")
    check(np.array_equal(a["is_member"], b["is_member"]), "is_member identical")
    same_table(a["nodes"], b["nodes"], "nodes", 0.0)
    same_table(a["sample_stats"], b["sample_stats"], "sample_stats", 1e-12)
    same_table(a["top_exposed"], b["top_exposed"], "top_exposed", 1e-12)
    sa, sb = a["svd/singular_values"], b["svd/singular_values"]
    check(np.max(np.abs(sa - sb) / sa[0]) < 1e-10, "singular values agree to 1e-10 relative")
    same_vectors(a["svd/left"], b["svd/left"], sa, "left singular vectors", 1e-8)
    same_vectors(a["svd/right"], b["svd/right"], sa, "right singular vectors", 1e-8)
    check(sorted(a["spectra"]) == sorted(b["spectra"]), "the same weight matrices have spectra")
    worst = max(np.max(np.abs(a["spectra"][k] - b["spectra"][k])) / a["spectra"][k][0] for k in a["spectra"])
    check(worst < 1e-10, f"weight spectra agree to 1e-10 relative (worst {worst:.1e})")
    same_table(a["spectra_summary"], b["spectra_summary"], "spectra_summary", 1e-10)


def recompute(store, a):
    """Everything again in numpy, straight from the node files."""
    keys = [k.decode() for k in a["node_key"]]
    rows = {s: i for i, s in enumerate(a["sample_index"])}
    M, N = len(rows), len(keys)
    S = np.full((M, N), np.nan)
    mem = np.full((M, N), -1, dtype=np.int8)
    for j, k in enumerate(keys):
        with h5py.File(os.path.join(store, "nodes", k + ".h5"), "r") as f:
            check(f.attrs["kind"] == "attack", f"column {j} is an attack node")
            idx = f["scores/sample_index"][()]
            r = np.array([rows[s] for s in idx])
            S[r, j] = f["scores/score"][()]
            mem[r, j] = f["scores/is_member"][()].astype(np.int8)
    attack_files = 0
    for p in glob.glob(os.path.join(store, "nodes", "*.h5")):
        with h5py.File(p, "r") as f:
            attack_files += f.attrs["kind"] == "attack"
    check(attack_files == N, f"every attack node is a column ({N})")
    check(np.array_equal(S, a["scores"], equal_nan=True), "scores match the node files")
    check(np.array_equal(mem, a["is_member"]), "is_member matches the node files")

    present = ~np.isnan(S)
    mean = np.array([S[present[:, j], j].mean() for j in range(N)])
    std = np.array([S[present[:, j], j].std() for j in range(N)])
    med = np.array([np.median(S[present[:, j] & (mem[:, j] == 0), j]) for j in range(N)])
    check(np.allclose(a["nodes"]["mean"], mean, rtol=1e-12), "column means")
    check(np.allclose(a["nodes"]["std"], std, rtol=1e-12), "column standard deviations")
    check(np.array_equal(a["nodes"]["median_nonmember"], med), "median non-member scores")

    Z = np.where(present, (S - mean) / std, 0.0)
    ismem = present & (mem == 1)
    nmem = ismem.sum(axis=1)
    st = a["sample_stats"]
    check(np.array_equal(st["n_members"], nmem), "per-sample member counts")
    check(np.array_equal(st["n_scores"], present.sum(axis=1)), "per-sample score counts")
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_z = np.where(ismem, Z, 0).sum(axis=1) / nmem
        exposed = (ismem & (S > med)).sum(axis=1) / nmem
        max_z = np.where(ismem, Z, -np.inf).max(axis=1)
    max_z[nmem == 0] = np.nan
    check(np.allclose(st["mean_z"], mean_z, rtol=1e-12, atol=1e-12, equal_nan=True), "per-sample mean z")
    check(np.array_equal(st["exposed_fraction"], exposed, equal_nan=True), "per-sample exposed fraction")
    check(np.allclose(st["max_z"], max_z, rtol=1e-12, atol=1e-12, equal_nan=True), "per-sample max z")
    order = sorted((i for i in range(M) if nmem[i] > 0), key=lambda i: (-exposed[i], -mean_z[i], a["sample_index"][i]))
    check(np.array_equal(a["top_exposed"]["sample_index"], a["sample_index"][order[:50]]), "top-50 most exposed samples")

    u, s, vt = np.linalg.svd(Z, full_matrices=False)
    K = len(a["svd/singular_values"])
    check(np.max(np.abs(s[:K] - a["svd/singular_values"]) / s[0]) < 1e-10, "singular values match numpy")
    same_vectors(u[:, :K], a["svd/left"], s[:K], "left vectors vs numpy", 1e-8)
    same_vectors(vt[:K].T, a["svd/right"], s[:K], "right vectors vs numpy", 1e-8)

    worst = 0.0
    for name, spec in a["spectra"].items():
        key, layer = name.split("/")
        with h5py.File(os.path.join(store, "nodes", key + ".h5"), "r") as f:
            w = f[f"model/{layer}/weight"][()].astype(np.float64)
            if f"model/{layer}/mask" in f:
                w = w * (f[f"model/{layer}/mask"][()] != 0)
        w = w.reshape(w.shape[0], -1)
        ref = np.linalg.svd(w, compute_uv=False)
        worst = max(worst, np.max(np.abs(ref - spec)) / ref[0])
    check(worst < 1e-10, f"every weight spectrum matches numpy (worst {worst:.1e})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--miagrid", required=True)
    ap.add_argument("--atlas", required=True)
    ap.add_argument("--mpiexec", required=True)
    ap.add_argument("--np-flag", default="-n")
    ap.add_argument("--grid", required=True)
    ap.add_argument("--tmp", required=True)
    args = ap.parse_args()
    if not os.path.isdir(DATA):
        print(f"skip: {DATA} is missing (apt-get install dataset-fashion-mnist)")
        sys.exit(77)

    shutil.rmtree(args.tmp, ignore_errors=True)
    os.makedirs(args.tmp)
    store = os.path.join(args.tmp, "store")
    run([args.miagrid, "--quiet", "--store", store, args.grid])

    def mpi(n, *extra, expect=0):
        return run([args.mpiexec, args.np_flag, str(n), "--oversubscribe", args.atlas] + list(extra), expect=expect)

    one = os.path.join(args.tmp, "atlas-1.h5")
    four = os.path.join(args.tmp, "atlas-4.h5")
    mpi(1, "--out", one, store)
    p = mpi(4, "--block", "5", "--components", "6", "--out", four, store)
    check("2 x 2 process grid, block 5" in p.stdout, "4 ranks run as a 2 x 2 grid")
    a, b = load(one), load(four)
    check(a["attrs"]["npcol"] == 1 and b["attrs"]["nprow"] == 2 and b["attrs"]["npcol"] == 2, "grid recorded")
    # The 4-rank run keeps 6 components: compare those.
    for k in ("svd/singular_values", "svd/explained"):
        a[k] = a[k][:6]
    a["svd/left"], a["svd/right"] = a["svd/left"][:, :6], a["svd/right"][:, :6]
    compare_runs(a, b)
    recompute(store, load(one))

    # The default output goes into the store.
    mpi(1, "--quiet", store)
    check(os.path.exists(os.path.join(store, "atlas.h5")), "default output STORE/atlas.h5")
    check(not glob.glob(os.path.join(store, "atlas.h5.tmp*")), "no temporary file left")

    # Errors.
    p = mpi(1, os.path.join(args.tmp, "nowhere"), expect=1)
    check("no such store directory" in p.stderr, "a missing store is named")
    p = mpi(1, "--block", "0", store, expect=2)
    check("--block" in p.stderr, "a bad block size is a command-line error")

    broken = os.path.join(args.tmp, "broken")
    shutil.copytree(store, broken)
    # An attack node that a rank other than 0 of 4 reads (node i goes to rank
    # i % 4), so the --strict error travels from that rank to rank 0's message.
    every = sorted(f[:-3] for f in os.listdir(os.path.join(store, "nodes"))
                   if f.endswith(".h5") and not f.endswith(".ckpt.h5"))
    attack = [k.decode() for k in a["node_key"]]
    victim_rank, victim = next((i % 4, k) for i, k in enumerate(every) if i % 4 != 0 and k in attack)
    with open(os.path.join(broken, "nodes", victim + ".h5"), "wb") as f:
        f.write(b"not an HDF5 file")
    p = mpi(4, "--out", os.path.join(args.tmp, "broken.h5"), broken)
    check(victim in p.stderr and "warning: skipping node" in p.stderr, "an unreadable node file is named and skipped")
    c = load(os.path.join(args.tmp, "broken.h5"))
    check(len(c["node_key"]) == len(a["node_key"]) - 1 and c["attrs"]["skipped_nodes"] == victim,
          "the skipped node is left out and recorded")
    p = mpi(4, "--strict", "--out", os.path.join(args.tmp, "strict.h5"), broken, expect=1)
    check(victim in p.stderr and "--strict" in p.stderr and f"rank {victim_rank}: " in p.stderr,
          "--strict makes it an error, reported from the rank that read the file")
    check(not os.path.exists(os.path.join(args.tmp, "strict.h5")) and
          not glob.glob(os.path.join(args.tmp, "strict.h5.tmp*")), "a failed run leaves no output")
    # A rank that does not see the store: the same relative path from another
    # working directory (Open MPI's MPMD syntax with -wdir).
    version = subprocess.run([args.mpiexec, "--version"], capture_output=True, text=True).stdout
    if "Open MPI" in version:
        wa, wb = os.path.join(args.tmp, "wdir-a"), os.path.join(args.tmp, "wdir-b")
        os.makedirs(wa)
        os.makedirs(wb)
        os.symlink(store, os.path.join(wa, "st"))
        vis = os.path.join(args.tmp, "vis.h5")
        p = run([args.mpiexec, "--oversubscribe", args.np_flag, "1", "-wdir", wa, args.atlas, "--out", vis, "st", ":",
                 args.np_flag, "1", "-wdir", wb, args.atlas, "--out", vis, "st"], expect=1)
        check("cannot read the store from rank 1" in p.stderr and "every rank sees" in p.stderr,
              "a rank that cannot see the store is named")
    else:
        print("note: not Open MPI; the store-visibility case is not run")
    print("atlas MPI test: all checks passed")


if __name__ == "__main__":
    main()
