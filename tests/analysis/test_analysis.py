#!/usr/bin/python3
"""Tests of the analysis scripts (analysis/*.py) on stores the built miagrid writes.

usage: test_analysis.py --miagrid BIN --tmp DIR

Runs the tiny grid with seeds 0 and 1, then checks: the table numbers
against a hand computation from /metrics, each output format, the error
messages, the divergence on synthetic cases with known answers, the store
readers, and that report.py writes every expected file (PNGs that are real
images, PDFs) on a store with two seeds and failed, skipped and pending
cells, one with a single seed and one where nothing is complete.
Exits 77 (skipped) when Fashion-MNIST is not installed, 1 on the first failure.
"""
import argparse
import contextlib
import csv
import importlib
import io
import math
import os
import re
import shutil
import subprocess
import sys

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.normpath(os.path.join(HERE, "..", ".."))
ANALYSIS = os.path.join(SRC, "analysis")
TINY = os.path.join(SRC, "tests", "e2e", "tiny.yaml")
sys.path.insert(0, ANALYSIS)

LN2 = math.log(2.0)
N_CHECKS = 0


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    global N_CHECKS
    if not cond:
        fail(msg)
    N_CHECKS += 1
    print("ok: " + msg)


def near(a, b, tol=1e-12):
    return abs(a - b) <= tol * max(1.0, abs(b))


def run(cmd, expect=0, timeout=600):
    print("$ " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if expect is not None and p.returncode != expect:
        sys.stdout.write(p.stdout[-4000:])
        sys.stderr.write(p.stderr[-4000:])
        fail(f"exit status {p.returncode}, expected {expect}: {' '.join(cmd)}")
    return p


class Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def script(name, *args, expect=0, subprocess_=False):
    """Run analysis/<name> with args: in this process through its main() (the
    scripts load pandas and matplotlib, slow to start), or as a command."""
    if subprocess_:
        return run([sys.executable, os.path.join(ANALYSIS, name), *args], expect=expect)
    mod = importlib.import_module(name[:-3])
    out, err = io.StringIO(), io.StringIO()
    print("> " + " ".join([name, *args]), flush=True)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = mod.main(list(args))
        except SystemExit as e:
            rc = e.code
    p = Result(rc, out.getvalue(), err.getvalue())
    if expect is not None and rc != expect:
        sys.stdout.write(p.stdout[-4000:])
        sys.stderr.write(p.stderr[-4000:])
        fail(f"exit status {rc}, expected {expect}: {name} {' '.join(args)}")
    return p


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def raw_tables(store):
    """/cells and /metrics read straight through h5py, as lists of dicts with str fields."""
    def rows(ds):
        out = []
        for r in ds[()]:
            out.append({k: (r[k].decode() if isinstance(r[k], bytes) else r[k].item()) for k in ds.dtype.names})
        return out
    with h5py.File(os.path.join(store, "results.h5"), "r") as f:
        return rows(f["cells"]), rows(f["metrics"])


def hand_groups(store, metric, attack, by):
    """{group tuple: [values]} over complete cells, computed without the analysis code."""
    cells, metrics = raw_tables(store)
    cell = {c["cell_id"]: c for c in cells if c["status"] == "complete"}
    groups = {}
    for m in metrics:
        if m["cell_id"] in cell and m["model"] == "target" and m["metric"] == metric and m["attack"] == attack:
            c = cell[m["cell_id"]]
            groups.setdefault(tuple(c[a] for a in by), []).append((m["value"], c["seed"]))
    return groups


def mean_std(vals):
    n = len(vals)
    mean = sum(vals) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else float("nan")
    return mean, std


# --------------------------------------------------------------------------- tables

def check_tables(store):
    by = ["arch", "sparsity"]
    hand = hand_groups(store, "balanced_acc", "conf", by)
    check(len(hand) == 4 and all(len(v) == 2 for v in hand.values()), "hand computation: 4 groups of 2 seeds")

    out = script("mgtable.py", store, "--metric", "balanced_acc", "--attack", "conf",
                 "--by", "arch", "sparsity", "--format", "csv", subprocess_=True).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    check([*rows[0].keys()] == ["arch", "sparsity", "mean", "std", "n_seeds"], f"csv columns: {list(rows[0])}")
    check(len(rows) == 4, "csv: one row per arch x sparsity")
    for r in rows:
        vals = [v for v, _ in hand[(r["arch"], float(r["sparsity"]))]]
        mean, std = mean_std(vals)
        check(near(float(r["mean"]), mean) and near(float(r["std"]), std),
              f"csv {r['arch']} {r['sparsity']}: mean {r['mean']} std {r['std']} = hand {mean!r} {std!r}")
        check(r["n_seeds"] == "2", f"csv {r['arch']} {r['sparsity']}: 2 seeds")

    md = script("mgtable.py", store, "--metric", "balanced_acc", "--attack", "conf",
                "--by", "arch", "sparsity", "--format", "markdown").stdout.splitlines()
    check(md[0] == "| arch | sparsity | balanced_acc (mean ± std) | seeds |", f"markdown header: {md[0]}")
    check(md[1] == "| :--- | ---: | ---: | ---: |", "markdown alignment row")
    check(len(md) == 6, "markdown: header, alignment and 4 rows")
    for (arch, sp), vals in hand.items():
        mean, std = mean_std([v for v, _ in vals])
        want = f"| {arch} | {sp:g} | {mean:.3f} ± {std:.3f} | 2 |"
        check(want in md, f"markdown row {want}")

    tex = script("mgtable.py", store, "--metric", "balanced_acc", "--attack", "conf",
                 "--by", "arch", "sparsity", "--format", "latex", "--digits", "4").stdout
    check("\\begin{tabular}{llrr}" in tex and "\\toprule" in tex and "\\bottomrule" in tex
          and tex.rstrip().endswith("\\end{tabular}"), "latex: a booktabs tabular")
    check("arch & sparsity & balanced\\_acc (mean $\\pm$ std) & seeds \\\\" in tex, "latex header, _ escaped")
    for (arch, sp), vals in hand.items():
        mean, std = mean_std([v for v, _ in vals])
        want = f"{arch} & {sp:g} & ${mean:.4f} \\pm {std:.4f}$ & 2 \\\\"
        check(want in tex, f"latex row {want}")

    out = script("mgtable.py", store, "--metric", "balanced_acc", "--format", "csv", "--by", "arch", "sparsity")
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    check(len(rows) == 8 and {r["attack"] for r in rows} == {"loss", "conf"},
          "an attack metric without --attack is tabulated per attack")
    out = script("mgtable.py", store, "--metric", "balanced_acc", "--attack", "loss", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    check([*rows[0].keys()][:2] == ["arch", "sparsity"] and len(rows) == 4,
          "without --by the table groups on the axes that vary (seed excepted)")

    p = script("mgtable.py", store, "--metric", "test_acc", "--by", "arch", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(p.stdout)))
    hand_acc = hand_groups(store, "test_acc", "", ["arch"])
    for r in rows:
        vals = [v for v, _ in hand_acc[(r["arch"],)]]
        mean, std = mean_std(vals)
        check(near(float(r["mean"]), mean) and near(float(r["std"]), std) and r["n_cells"] == "4"
              and r["n_seeds"] == "2", f"model metric pooled over sparsity ({r['arch']}): 4 cells, 2 seeds")
    check("sparsity" in p.stderr and "pool" in p.stderr, "pooling over an axis left out of --by is reported")

    rows = list(csv.DictReader(io.StringIO(script("mgtable.py", store, "--metric", "auc", "--attack", "loss",
                                                  "--by", "arch", "sparsity", "seed", "--format", "csv").stdout)))
    check(len(rows) == 8 and all(r["std"] == "" and r["n_seeds"] == "1" for r in rows),
          "one value per group: std is blank, 1 seed")
    out = os.path.join(os.path.dirname(store), "table.md")
    script("mgtable.py", store, "--metric", "auc", "--attack", "loss", "--out", out)
    check(open(out).read().startswith("| arch | sparsity | auc"), "--out writes the table to a file")

    # Errors name what was wrong and what exists.
    p = script("mgtable.py", store, "--metric", "bal", expect=2, subprocess_=True)
    check("'bal'" in p.stderr and "balanced_acc" in p.stderr and "test_acc" in p.stderr,
          f"unknown metric: named with the known ones ({p.stderr.strip()})")
    p = script("mgtable.py", store, "--metric", "auc", "--by", "arch", "spars", expect=2)
    check("'spars'" in p.stderr and "sparsity" in p.stderr and "defense" in p.stderr,
          f"unknown axis: named with the axes ({p.stderr.strip()})")
    p = script("mgtable.py", store, "--metric", "auc", "--attack", "lira", expect=2)
    check("'lira'" in p.stderr and "conf, loss" in p.stderr, f"unknown attack: named ({p.stderr.strip()})")
    p = script("mgtable.py", store, "--metric", "test_acc", "--attack", "conf", expect=2)
    check("drop --attack" in p.stderr, "--attack with a model metric is refused")
    p = script("mgtable.py", store, "--metric", "auc", "--model", "victim", expect=2)
    check("'victim'" in p.stderr and "shadow, target" in p.stderr, "unknown model: named")
    p = script("mgtable.py", store, "--metric", "auc", "--format", "html", expect=2)
    check("csv, markdown, latex" in p.stderr, "unknown format: the formats are listed")
    p = script("mgtable.py", store + "/nope", "--metric", "auc", expect=1, subprocess_=True)
    check("nope" in p.stderr and "no such store" in p.stderr, "a missing store is named")


# --------------------------------------------------------------------------- divergence

def check_divergence():
    import mgdivergence as d
    check(near(d.js_divergence([1, 0], [0, 1]), LN2), "JS of disjoint histograms = ln 2")
    check(d.js_divergence([3, 1, 2], [3, 1, 2]) == 0.0, "JS of identical histograms = 0")
    check(near(d.js_divergence([1, 1], [2, 0]), 0.75 * math.log(4 / 3)),
          "JS([1/2,1/2], [1,0]) = 3/4 ln(4/3) (histograms are normalised)")
    check(near(d.js_divergence([0.2, 0.8], [0.6, 0.4]), d.js_divergence([0.6, 0.4], [0.2, 0.8])), "JS is symmetric")
    rng = np.random.default_rng(5)
    a = rng.uniform(0.0, 0.4, 300)
    b = rng.uniform(0.6, 1.0, 300)
    check(near(d.histogram_js(a, b, 10), LN2), "disjoint samples: ln 2 nats")
    check(d.histogram_js(a, a.copy(), 10) == 0.0, "identical samples: 0")
    x, y = rng.normal(0, 1, 400), rng.normal(0.5, 1, 300)
    check(near(d.histogram_js(x, y, 10), d.histogram_js(np.exp(x), np.exp(y), 10)),
          "the estimate does not depend on a monotone rescaling of the confidence")
    j, n = d.histogram_js(x, y, 10), d.null_js(x, y, 10, 20)
    check(0 < n < j < LN2, f"shifted normals: {j:.4f} nats, above the same-distribution level {n:.4f}")
    check(d.null_js(x, y, 10, 20) == n, "the same-distribution level is reproducible")

    # Members of class 0 are predicted confidently, its non-members are not;
    # class 1 gets the same logits in both parts.
    k = 4
    lm = np.zeros((100, k), np.float32)
    ln = np.zeros((100, k), np.float32)
    ym = np.array([0] * 50 + [1] * 50)
    yn = ym.copy()
    lm[:50, 0] = np.linspace(6, 8, 50)      # true-class probability ~0.99
    ln[:50, 0] = np.linspace(-1, 0.5, 50)   # ~0.1 to 0.4
    lm[50:, 1] = ln[50:, 1] = np.linspace(-2, 3, 50)
    t = d.per_class(lm, ym, ln, yn, "true", 10, 5)
    check(list(t["class"]) == [0, 1] and list(t.n_member) == [50, 50], "per-class table: one row per class")
    check(near(t.js[0], LN2) and t.js[1] == 0.0, "per class: disjoint class ln 2, identical class 0")
    p = d.softmax(np.array([[0.0, math.log(3.0)]]))
    check(near(p[0, 0], 0.25) and near(p[0, 1], 0.75), "softmax")
    c = d.confidence(np.array([[0.0, math.log(3.0)]]), [0], "true")
    cmax = d.confidence(np.array([[0.0, math.log(3.0)]]), [0], "max")
    check(near(c[0], 0.25) and near(cmax[0], 0.75), "true-class and max confidence")


# --------------------------------------------------------------------------- readers

def check_readers(store):
    import mgstore
    cells, metrics = raw_tables(store)
    with mgstore.Store(store) as s:
        check(len(s.complete_cells()) == 8 and s.attacks() == ["conf", "loss"], "Store: 8 complete cells, 2 attacks")
        pruned = next(c for c in cells if c["sparsity"] == 0.5)
        key = next(m["node"] for m in metrics
                   if m["cell_id"] == pruned["cell_id"] and m["attack"] == "conf" and m["model"] == "target")
        with h5py.File(os.path.join(store, "nodes", key + ".h5"), "r") as f:
            fpr0, tpr0, sc0 = f["roc/fpr"][()], f["roc/tpr"][()], f["scores/score"][()]
        fpr, tpr = s.roc(pruned["cell_id"], "conf")
        check(np.array_equal(fpr, fpr0) and np.array_equal(tpr, tpr0), "roc() reads the attack node's roc/fpr, roc/tpr")
        check(np.array_equal(s.scores(pruned["cell_id"], "conf")["score"], sc0), "scores() reads scores/score")
        out = s.outputs(pruned["cell_id"])
        check(out["member"]["logits"].shape == (200, 10) and out["nonmember"]["labels"].shape == (200,),
              "outputs(): member/non-member logits and labels")
        h = s.history(pruned["cell_id"])
        epochs = int(re.search(r"train: \{epochs: (\d+)", open(TINY).read()).group(1))
        check([k for k, _, _ in h] == ["train", "prune"] and len(h[0][2]["loss"]) == epochs and len(h[1][2]["loss"]) == 1,
              f"history() of a pruned model: {epochs} epochs of training, then 1 of fine-tuning")
        dense = next(c for c in cells if c["sparsity"] == 0.0)
        check([k for k, _, _ in s.history(dense["cell_id"])] == ["train"], "history() of a dense model: training only")
        try:
            s.roc(pruned["cell_id"], "lira")
            fail("an unknown attack raises")
        except mgstore.StoreError as e:
            check("lira" in str(e) and "conf" in str(e), "an unknown attack is named with the cell's attacks")


# --------------------------------------------------------------------------- figures and reports

PNG_SIG = b"\x89PNG\r\n\x1a\n"


def check_image(path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.image as mpimg
    with open(path, "rb") as f:
        check(f.read(8) == PNG_SIG, f"{os.path.basename(path)} is a PNG")
    img = mpimg.imread(path)
    check(img.ndim == 3 and img.shape[0] >= 300 and img.shape[1] >= 300 and float(img[..., :3].std()) > 0.01,
          f"{os.path.basename(path)}: {img.shape[1]}x{img.shape[0]} pixels with something drawn")


def expected_report_files(attacks=("conf", "loss"), tables=True):
    files = {"index.md", "cells.csv"}
    if not tables:
        return files
    for m in ("test_acc", "train_acc", "gap", "sparsity", "balanced_acc", "auc", "advantage",
              "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr"):
        files |= {f"tables/{m}.{e}" for e in ("csv", "md", "tex")}
    files |= {"tables/tradeoff.csv", "tables/divergence.csv", "tables/divergence_summary.csv",
              "tables/divergence_summary.md"}
    figs = ["sparsity_test_acc", "tradeoff", "divergence", "history"]
    for a in attacks:
        figs += [f"sparsity_{m}_{a}" for m in ("balanced_acc", "tpr_at_1pct_fpr", "auc")] + [f"roc_{a}"]
    for f in figs:
        files |= {f"figures/{f}.png", f"figures/{f}.pdf"}
    return files


def check_report(store, outdir, expect_files, label, subprocess_=False):
    shutil.rmtree(outdir, ignore_errors=True)
    p = script("report.py", store, outdir, subprocess_=subprocess_)
    got = {os.path.relpath(os.path.join(d, f), outdir) for d, _, fs in os.walk(outdir) for f in fs}
    check(got == expect_files, f"{label}: report.py writes exactly the expected files "
          f"(missing {sorted(expect_files - got)}, extra {sorted(got - expect_files)})")
    index = open(os.path.join(outdir, "index.md")).read()
    links = set(re.findall(r"\]\(([^)]+)\)", index))
    check(links | {"index.md"} == got, f"{label}: index.md links every file it wrote, and only those")
    for f in sorted(got):
        path = os.path.join(outdir, f)
        if f.endswith(".png"):
            check_image(path)
        elif f.endswith(".pdf"):
            with open(path, "rb") as h:
                check(h.read(5) == b"%PDF-" and os.path.getsize(path) > 1000, f"{label}: {f} is a PDF")
    return index, p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--miagrid", required=True)
    ap.add_argument("--tmp", required=True)
    a = ap.parse_args()
    if not os.path.isdir("/usr/share/datasets/fashion-mnist") and not os.environ.get("MIAGRID_DATA_FASHION_MNIST"):
        print("skipped: Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
        return 77
    shutil.rmtree(a.tmp, ignore_errors=True)
    os.makedirs(a.tmp)
    tiny = open(TINY).read()
    check("seeds: [0]" in tiny, "tiny.yaml has one seed")
    two = write(os.path.join(a.tmp, "two-seeds.yaml"), tiny.replace("seeds: [0]", "seeds: [0, 1]"))
    s2 = os.path.join(a.tmp, "two")
    run([a.miagrid, "--quiet", "--store", s2, two])

    check_divergence()
    check_tables(s2)
    check_readers(s2)

    # mgplot: one figure from the command line, and its errors.
    stem = os.path.join(a.tmp, "plots", "roc")
    script("mgplot.py", s2, "roc", stem, "--cells", "0", "1", "--attack", "conf", subprocess_=True)
    check_image(stem + ".png")
    p = script("mgplot.py", s2, "scatter", stem, expect=2)
    check("sparsity, tradeoff, roc, divergence, history" in p.stderr, "mgplot: an unknown figure lists the figures")
    p = script("mgplot.py", s2, "sparsity", stem, "--metric", "balanced_acc", expect=2)
    check("--attack" in p.stderr and "conf, loss" in p.stderr, "mgplot: an attack metric needs --attack")
    p = script("mgplot.py", s2, "roc", stem, "--cells", "99", expect=2)
    check("99" in p.stderr and "0-7" in p.stderr, "mgplot: an unknown cell is named with the cells")

    # Two seeds with failed, skipped and pending cells (a report takes a few
    # seconds of drawing, so one store serves both): the grid grows a dataset
    # whose files do not exist (its nodes fail, the pruned ones are skipped),
    # and one complete cell is marked pending in the root file as an
    # interrupted run leaves it.
    mixed = os.path.join(a.tmp, "mixed")
    shutil.copytree(s2, mixed)
    grid = write(os.path.join(a.tmp, "mixed.yaml"), open(two).read().replace(
        "dataset: [fashion-mnist]", "dataset: [fashion-mnist, {name: mnist, root: " + a.tmp + "/no-mnist}]"))
    run([a.miagrid, "--quiet", "--store", mixed, grid], expect=1)
    with h5py.File(os.path.join(mixed, "results.h5"), "r+") as f:
        cells = f["cells"][()]
        cells["status"][0] = b"pending"
        f["cells"][...] = cells
    index, p = check_report(mixed, os.path.join(a.tmp, "report-mixed"), expected_report_files(), "mixed store",
                            subprocess_=True)
    check("Seeds: 0, 1" in index, "mixed store: two seeds")
    check("± " in open(os.path.join(a.tmp, "report-mixed", "tables", "balanced_acc.md")).read(),
          "two seeds: the tables show a spread")
    check("cell 0 (" in index and "**pending**" in index and "**failed**" in index and "**skipped**" in index,
          "mixed store: index.md names the pending, failed and skipped cells")
    check("16 cells: 7 complete, 4 failed, 1 pending, 4 skipped" in index, "mixed store: the status counts")
    check("node failure recorded in the store: train node" in index and "train-images-idx3-ubyte" in index,
          "mixed store: index.md quotes the failure messages of the /failures table")
    rows = list(csv.DictReader(open(os.path.join(a.tmp, "report-mixed", "cells.csv"))))
    check(len(rows) == 16 and rows[0]["status"] == "pending", "mixed store: cells.csv lists every cell")
    rows = list(csv.DictReader(open(os.path.join(a.tmp, "report-mixed", "tables", "balanced_acc.csv"))))
    first = [r for r in rows if r["arch"] == "lenet5" and float(r["sparsity"]) == 0.0]
    check(all(r["n_seeds"] == "1" for r in first) and len(rows) == 8,
          "mixed store: the pending cell's configuration is averaged over its one complete seed")
    p = script("mgtable.py", mixed, "--metric", "auc", "--attack", "conf")
    check("skipped 9 of 16 cells" in p.stderr and "1 pending" in p.stderr, "mgtable names the cells it leaves out")

    # One seed: no spread.
    one = os.path.join(a.tmp, "one")
    run([a.miagrid, "--quiet", "--store", one, TINY])
    index, _ = check_report(one, os.path.join(a.tmp, "report-one"), expected_report_files(), "one seed")
    md = open(os.path.join(a.tmp, "report-one", "tables", "balanced_acc.md")).read()
    check("one seed here" in index and "±" not in md.split("\n", 2)[2], "one seed: no spread in the tables")
    rows = list(csv.DictReader(open(os.path.join(a.tmp, "report-one", "tables", "auc.csv"))))
    check(all(r["std"] == "" for r in rows), "one seed: std is blank in the csv")

    # Nothing complete.
    none = os.path.join(a.tmp, "none")
    grid = write(os.path.join(a.tmp, "none.yaml"), tiny.replace(
        "dataset: [fashion-mnist]", "dataset: [{name: mnist, root: " + a.tmp + "/no-mnist}]"))
    run([a.miagrid, "--quiet", "--store", none, grid], expect=1)
    index, _ = check_report(none, os.path.join(a.tmp, "report-none"), expected_report_files(tables=False),
                            "no complete cell")
    check("no cell is complete" in index, "no complete cell: index.md says so")

    p = script("report.py", os.path.join(a.tmp, "absent"), os.path.join(a.tmp, "report-absent"), expect=1,
               subprocess_=True)
    check("absent" in p.stderr, "report.py names a missing store")
    print(f"{N_CHECKS} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
