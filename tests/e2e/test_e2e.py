#!/usr/bin/env python3
"""End-to-end tests of the miagrid command: serial against MPI, resume after
SIGKILL, growing a grid, dry runs and configuration errors.

usage: test_e2e.py CASE --miagrid BIN --mpiexec MPIEXEC --tmp DIR
Each CASE is one CTest test; the script exits non-zero on the first failure.
"""
import argparse
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
TINY = os.path.join(HERE, "tiny.yaml")


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)
    print("ok: " + msg)


class Runner:
    def __init__(self, args):
        self.miagrid = args.miagrid
        self.mpiexec = args.mpiexec
        self.tmp = args.tmp

    def mpi_cmd(self, np_):
        return [self.mpiexec, "--oversubscribe", "-np", str(np_), self.miagrid]

    def run(self, grid, store, ranks=1, extra=(), expect=0):
        cmd = (self.mpi_cmd(ranks) if ranks > 1 else [self.miagrid]) + list(extra) + ["--store", store, grid]
        print("$ " + " ".join(cmd), flush=True)
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        sys.stdout.write(p.stdout[-4000:])
        sys.stderr.write(p.stderr[-12000:])
        if expect is not None and p.returncode != expect:
            fail(f"exit status {p.returncode}, expected {expect}")
        return p

    def fresh(self, name):
        d = os.path.join(self.tmp, name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        return d


def write_grid(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def metrics(store, timings=False):
    """The tidy metrics table; without `timings`, less the wall times
    (*_seconds), the only metrics that differ from run to run."""
    with h5py.File(os.path.join(store, "results.h5"), "r") as f:
        df = pd.DataFrame(f["metrics"][()])
    for c in ("model", "attack", "metric", "node"):
        df[c] = df[c].str.decode("utf-8")
    if not timings:
        df = df[~df.metric.str.endswith("_seconds")]
    return df.sort_values(["cell_id", "model", "attack", "metric"]).reset_index(drop=True)


def node_files(store):
    d = os.path.join(store, "nodes")
    if not os.path.isdir(d):
        return []
    return sorted(f for f in os.listdir(d) if re.fullmatch(r"[0-9a-f]{32}\.h5", f))


def check_store(store, n_cells):
    with h5py.File(os.path.join(store, "results.h5"), "r") as f:
        cells = pd.DataFrame(f["cells"][()])
        check(len(cells) == n_cells, f"{n_cells} cells in /cells")
        check(all(s == b"complete" for s in cells["status"]), "every cell complete")
        check(b"name:" in f["grid/yaml"][()], "the grid YAML is stored as given")
        df = metrics(store)
        for cid in cells["cell_id"]:
            sub = df[df.cell_id == cid]
            for model in ("target", "shadow"):
                names = set(sub[(sub.model == model) & (sub.attack == "")].metric)
                check({"train_acc", "test_acc", "sparsity"} <= names, f"cell {cid} {model}: model metrics")
            for attack in ("loss", "conf"):
                names = set(sub[(sub.model == "target") & (sub.attack == attack)].metric)
                need = {"balanced_acc", "auc", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr"}
                check(need <= names, f"cell {cid} {attack}: attack metrics")
        # Masks give exactly the stated sparsity; pruned weights are exactly zero.
        for _, c in cells.iterrows():
            key = c["target_model"].decode()
            node = f["nodes/" + key]
            total = zeros = 0
            for layer in node["model"]:
                g = node["model"][layer]
                check("weight" in g, f"weights of {layer} stored in node {key[:8]}")
                if "mask" in g:
                    m = g["mask"][()]
                    w = g["weight"][()]
                    total += m.size
                    zeros += int((m == 0).sum())
                    check(np.all(w[m == 0] == 0.0), f"pruned weights of {layer} are exactly 0")
            stated = node["metrics"].attrs["sparsity"]
            check(abs(zeros / total - stated) < 1e-12, f"node {key[:8]}: masks give the stated sparsity {stated:.4f}")
            # Unstructured methods hit the requested sparsity; structured ones
            # spare the output layer, so theirs is lower.
            if c["sparsity"] > 0 and b"unstructured" in c["prune"]:
                check(abs(stated - c["sparsity"]) < 0.01, f"node {key[:8]}: sparsity {stated:.4f} ~ requested {c['sparsity']}")


def case_serial_vs_mpi(r):
    s1 = r.fresh("serial")
    s3 = r.fresh("mpi3")
    out = r.run(TINY, s1).stdout
    check("store:" in out, "serial run prints where the store is")
    r.run(TINY, s3, ranks=3)
    check_store(s1, 4)
    check_store(s3, 4)
    a, b = metrics(s1), metrics(s3)
    check(len(a) == len(b) and len(a) > 0, f"same number of metric rows ({len(a)})")
    same = (a[["cell_id", "model", "attack", "metric", "node"]].equals(b[["cell_id", "model", "attack", "metric", "node"]])
            and np.array_equal(a["value"].to_numpy(), b["value"].to_numpy()))
    check(same, "1 rank and 3 ranks give bit-identical metrics")
    # Even this small grid overfits, and the attacks see it.
    t = a[(a.model == "target") & (a.attack == "")].pivot(index="cell_id", columns="metric", values="value")
    check((t.train_acc > t.test_acc).all(), "every target model fits its members better than non-members")
    conf = a[(a.model == "target") & (a.attack == "conf") & (a.metric == "balanced_acc")]
    check(conf.value.max() > 0.55, f"the confidence attack beats chance (best balanced accuracy {conf.value.max():.3f})")
    before = {f: os.path.getmtime(os.path.join(s3, "nodes", f)) for f in node_files(s3)}
    out = r.run(TINY, s3, ranks=3).stdout
    check("nothing to compute" in out, "a rerun of a finished grid computes nothing and says so")
    after = {f: os.path.getmtime(os.path.join(s3, "nodes", f)) for f in node_files(s3)}
    check(before == after, "no node file was rewritten")


def case_grow(r):
    s = r.fresh("grow")
    r.run(TINY, s)
    bigger = write_grid(os.path.join(s, "grown.yaml"),
                        open(TINY).read().replace("sparsity: [0.0, 0.5]", "sparsity: [0.0, 0.5, 0.8]"))
    dry_old = r.run(TINY, s, extra=["--dry-run"]).stdout
    dry_new = r.run(bigger, s, extra=["--dry-run"]).stdout
    n_old = int(re.search(r"(\d+) nodes \(", dry_old).group(1))
    n_new = int(re.search(r"(\d+) nodes \(", dry_new).group(1))
    out = r.run(bigger, s, ranks=2).stdout
    m = re.search(r"(\d+) nodes: (\d+) complete in the store, (\d+) to compute", out)
    check(m is not None, "the run says how many nodes it reuses")
    check(int(m.group(2)) == n_old and int(m.group(3)) == n_new - n_old,
          f"adding a sparsity level computes only the {n_new - n_old} new nodes")
    check_store(s, 6)


def case_kill_resume(r):
    s = r.fresh("kill")
    slow = write_grid(os.path.join(s, "slow.yaml"),
                      open(TINY).read().replace("epochs: 5", "epochs: 25").replace(": 200", ": 1500")
                      .replace("e2e-tiny", "e2e-slow"))
    cmd = r.mpi_cmd(3) + ["--store", s, slow]
    print("$ " + " ".join(cmd), flush=True)
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(node_files(s)) < 3 and p.poll() is None:
        time.sleep(0.2)
    check(p.poll() is None, "the run was still going when killed")
    # SIGKILL every rank and the launcher at once: Open MPI puts ranks in
    # their own process groups, so they are found by their command line.
    subprocess.run(["pkill", "-KILL", "-f", s])
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    while subprocess.run(["pgrep", "-f", s], capture_output=True).returncode == 0:
        time.sleep(0.1)
    done = node_files(s)
    print(f"killed with {len(done)} complete node files")
    check(len(done) >= 3, "some nodes completed before the kill")
    check(len(done) < 16, "the run was killed before it finished")
    for f in done:
        with h5py.File(os.path.join(s, "nodes", f), "r") as h:
            check(h.attrs["status"] == "complete", f"node file {f[:8]} is whole")
    out = r.run(slow, s, ranks=3).stdout
    m = re.search(r"(\d+) nodes: (\d+) complete in the store, (\d+) to compute", out)
    check(m is not None and int(m.group(2)) == len(done), "the rerun reuses every node finished before the kill")
    check_store(s, 4)
    check(not [f for f in os.listdir(os.path.join(s, "nodes")) if ".tmp." in f], "no temporary files left")


def case_dry_run(r):
    s = r.fresh("dry")
    out = r.run(TINY, s, extra=["--dry-run"]).stdout
    m = re.search(r"(\d+) cells, (\d+) nodes \((\d+) train, (\d+) prune, (\d+) attack\); (\d+) references, (\d+) shared", out)
    check(m is not None, "dry run prints the summary line")
    cells, nodes, tr, pr, at = (int(m.group(i)) for i in range(1, 6))
    check((cells, nodes, tr, pr, at) == (4, 16, 4, 4, 8), f"tiny grid: 4 cells, 16 nodes ({m.group(0)})")
    check(not os.path.exists(os.path.join(s, "results.h5")), "a dry run writes no store")


def case_config_error(r):
    s = r.fresh("bad")
    bad = write_grid(os.path.join(s, "bad.yaml"), open(TINY).read().replace("finetune:", "fintune:"))
    p = r.run(bad, s, expect=2)
    check(re.search(r"bad\.yaml:\d+:\d+: .*unknown key \"fintune\"", p.stderr) is not None,
          "an unknown key is reported with file:line:column")
    p = r.run(os.path.join(s, "missing.yaml"), s, expect=2)
    check("missing.yaml" in p.stderr, "a missing grid file is named")
    p = r.run(TINY, s, ranks=2, extra=["--threads", "zero"], expect=2)
    check("--threads" in p.stderr, "a bad option value is named")


def case_csv_content(r):
    """A CSV dataset is named by its bytes: moved elsewhere, its results are
    reused; edited in place, its nodes are computed anew; gone, the run says
    which file before touching the store."""
    s = r.fresh("csv")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 10))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    data = os.path.join(s, "a", "data.csv")
    os.makedirs(os.path.dirname(data))
    with open(data, "w") as f:
        for label, row in zip(y, x):
            f.write(f"{label}," + ",".join(f"{v:.4f}" for v in row) + "\n")
    grid_text = open(TINY).read().replace("e2e-tiny", "e2e-csv").replace(
        "dataset: [fashion-mnist]", "dataset: [{name: csv, root: %s}]").replace(
        "arch: [lenet5, {name: mlp, hidden: [32], activation: tanh}]", "arch: [{name: mlp, hidden: [16]}]").replace(
        "sparsity: [0.0, 0.5]", "sparsity: [0.0]").replace("epochs: 5", "epochs: 2")
    g = write_grid(os.path.join(s, "csv.yaml"), grid_text % data)
    first = summary_counts(r.run(g, s, ranks=2).stdout)
    check(first["computed"] == first["nodes"] == 4, f"the CSV grid runs its 4 nodes ({first})")
    with h5py.File(os.path.join(s, "results.h5"), "r") as f:
        ds = json.loads(f["cells"][()]["axes"][0])["dataset"]
    digest = hashlib.sha256(open(data, "rb").read()).hexdigest()
    check(ds.get("sha256") == digest and "root" not in ds, "the cell names the CSV file by its SHA-256, not its path")

    moved = os.path.join(s, "b", "data.csv")
    os.makedirs(os.path.dirname(moved))
    os.rename(data, moved)
    g = write_grid(os.path.join(s, "csv.yaml"), grid_text % moved)
    out = r.run(g, s, ranks=2).stdout
    check("nothing to compute" in out, "the same file under another path reuses every node")

    lines = open(moved).read().splitlines(True)
    lines[7] = ("0" if lines[7][0] == "1" else "1") + lines[7][1:]
    with open(moved, "w") as f:
        f.writelines(lines)
    again = summary_counts(r.run(g, s, ranks=2).stdout)
    check(again["computed"] == 4 and again["reused"] == 0, f"one label edited in place: every node anew ({again})")
    check(len(node_files(s)) == 8, "the results of both versions of the file are kept")

    os.remove(moved)
    p = r.run(g, s, ranks=2, expect=2)
    check(f"csv.yaml: axes.dataset[0]: csv: {moved} is not a file" in p.stderr,
          "a missing CSV file is named with its place in the grid")


def case_analysis(r):
    s = r.fresh("analysis")
    r.run(TINY, s)
    sys.path.insert(0, os.path.join(HERE, "..", "..", "analysis"))
    import mgstore
    tidy = mgstore.tidy(s)
    check({"cell_id", "model", "attack", "metric", "value", "arch", "sparsity", "seed"} <= set(tidy.columns),
          "the tidy table has the metric and axis columns")
    table = mgstore.summary(s)
    check(len(table) == 4 and "loss_balanced_acc" in table.columns, "the summary has one row per cell")
    p = subprocess.run([sys.executable, os.path.join(HERE, "..", "..", "analysis", "mgstore.py"), s],
                       capture_output=True, text=True)
    check(p.returncode == 0 and "conf_balanced_acc" in p.stdout, "mgstore.py prints the table")
    p = subprocess.run([sys.executable, os.path.join(HERE, "..", "..", "analysis", "mgstore.py"), s + "/nope"],
                       capture_output=True, text=True)
    check(p.returncode == 1 and "nope" in p.stderr, "a missing store is named")


def slow_grid(d, name, epochs=30, n=2000):
    return write_grid(os.path.join(d, name + ".yaml"),
                      open(TINY).read().replace("epochs: 5", f"epochs: {epochs}").replace(": 200", f": {n}")
                      .replace("e2e-tiny", name))


def summary_counts(out):
    m = re.search(r"(\d+) nodes: (\d+) computed, (\d+) reused from the store, (\d+) failed, (\d+) skipped, (\d+) left", out)
    check(m is not None, "the run prints its summary line")
    return dict(zip(["nodes", "computed", "reused", "failed", "skipped", "left"], (int(x) for x in m.groups())))


def case_node_failure(r):
    s = r.fresh("fail")
    # Two datasets: MNIST's root does not exist, so its nodes fail; Fashion-MNIST's complete.
    text = open(TINY).read().replace("dataset: [fashion-mnist]",
                                     "dataset: [fashion-mnist, {name: mnist, root: " + s + "/no-such-dir}]")
    g = write_grid(os.path.join(s, "two.yaml"), text)
    p = r.run(g, s, ranks=3, expect=1)
    c = summary_counts(p.stdout)
    check(c["failed"] == 4 and c["computed"] == 16, f"the 4 MNIST train nodes fail, the 16 others complete ({c})")
    check(c["skipped"] == 12, "the 12 nodes that consume them are skipped")
    check("no-such-dir" in p.stderr and "--retry-failed" in p.stderr, "the failures are named, with what to do")
    with h5py.File(os.path.join(s, "results.h5"), "r") as f:
        fails = pd.DataFrame(f["failures"][()])
        check(len(fails) == 4 and all(b"no-such-dir" in m for m in fails["message"]), "/failures records why")
        st = pd.DataFrame(f["cells"][()])
        ok = st[st.dataset == b"fashion-mnist"].status
        bad = st[st.dataset == b"mnist"].status
        check((ok == b"complete").all() and set(bad) == {b"failed", b"skipped"},
              "Fashion-MNIST cells are complete, MNIST cells failed or skipped")
    p = r.run(g, s, expect=1)
    c = summary_counts(p.stdout)
    check(c["computed"] == 0 and c["failed"] == 4, "a rerun does not retry failed nodes by itself")
    fixed = write_grid(os.path.join(s, "two.yaml"), text.replace(s + "/no-such-dir", "/usr/share/datasets/fashion-mnist"))
    p = r.run(fixed, s, expect=0, extra=["--retry-failed"])
    c = summary_counts(p.stdout)
    check(c["failed"] == 0 and c["computed"] == 16 and c["reused"] == 16, "--retry-failed runs them again")


def case_stop_resume(r):
    s = r.fresh("stop")
    g = slow_grid(s, "e2e-stop")
    # SIGTERM to a serial run: it finishes its node, writes the root file and exits 3.
    cmd = [r.miagrid, "--store", s, g]
    print("$ " + " ".join(cmd), flush=True)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(node_files(s)) < 1:
        time.sleep(0.1)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=300)
    print(out[-2000:], err[-2000:])
    check(p.returncode == 3, f"a stopped run exits 3 (got {p.returncode})")
    check("run the same command again to resume" in err, "it says the grid can be resumed")
    c = summary_counts(out)
    check(c["left"] > 0 and c["computed"] >= 1, f"it stopped early with work left ({c})")
    done = len(node_files(s))
    ckpts = [f for f in os.listdir(os.path.join(s, "nodes")) if f.endswith(".ckpt.h5")]
    check(len(ckpts) == 1, "the interrupted node saved its training state")
    check(not [f for f in os.listdir(os.path.join(s, "nodes")) if ".tmp." in f], "no half-written node file")
    # --walltime: hands out nothing after the limit and exits 3; the next run finishes.
    p = r.run(g, s, ranks=3, extra=["--walltime", "1"], expect=3)
    c = summary_counts(p.stdout)
    check(c["reused"] == done and c["left"] > 0, "--walltime stops the hand-out")
    p = r.run(g, s, ranks=3)
    c = summary_counts(p.stdout)
    check(c["left"] == 0 and c["computed"] + c["reused"] == 16, "the rerun completes the grid")
    check_store(s, 4)
    check(not [f for f in os.listdir(os.path.join(s, "nodes")) if f.endswith(".ckpt.h5")],
          "checkpoints are removed once their nodes complete")
    # Resuming from checkpoints changes no bit: the same grid run straight through agrees.
    s2 = r.fresh("straight")
    r.run(g, s2, ranks=3)
    a, b = metrics(s), metrics(s2)
    check(np.array_equal(a["value"].to_numpy(), b["value"].to_numpy()) and a["node"].equals(b["node"]),
          "a grid stopped and resumed mid-training gives the same metrics as one run straight through")


def case_store_guard(r):
    s = r.fresh("guard")
    r.run(TINY, s)
    # A second run on a store in use is refused.
    holder = subprocess.Popen(["flock", "-o", os.path.join(s, "lock"), "sleep", "30"])
    time.sleep(0.5)
    try:
        p = r.run(TINY, s, expect=1)
        check("in use by another miagrid run" in p.stderr, "a second run on the same store is refused")
    finally:
        holder.kill()
        holder.wait()
    # verify: clean store passes; a damaged node file is found, removed on request, and recomputed.
    p = subprocess.run([r.miagrid, "store", "verify", s], capture_output=True, text=True)
    check(p.returncode == 0 and "16 node files ok, 0 problems" in p.stdout, "store verify passes a good store")
    victim = os.path.join(s, "nodes", node_files(s)[0])
    with open(victim, "r+b") as f:
        f.seek(os.path.getsize(victim) // 2)
        f.write(b"\0" * 4096)
    p = subprocess.run([r.miagrid, "store", "verify", s], capture_output=True, text=True)
    print(p.stdout)
    check(p.returncode == 1 and os.path.basename(victim) in p.stdout, "store verify names the damaged node file")
    p = subprocess.run([r.miagrid, "store", "verify", "--remove-bad", s], capture_output=True, text=True)
    check(not os.path.exists(victim), "--remove-bad removes it")
    c = summary_counts(r.run(TINY, s).stdout)
    check(c["computed"] >= 1 and c["left"] == 0, "the next run recomputes it")
    # rebuild: the root file comes back from the node files alone.
    before = metrics(s)
    os.remove(os.path.join(s, "results.h5"))
    p = subprocess.run([r.miagrid, "store", "rebuild", s, TINY], capture_output=True, text=True)
    check(p.returncode == 0, "store rebuild with the grid file")
    after = metrics(s)
    check(before.equals(after), "the rebuilt root file has the same metrics")
    p = subprocess.run([r.miagrid, "store", "rebuild", s], capture_output=True, text=True)
    check(p.returncode == 0, "store rebuild from the grid kept in the root file")
    # Every rank must see the store: a rank started in another directory sees
    # another (relative) store path and the run stops before computing.
    a_dir, b_dir = os.path.join(s, "wa"), os.path.join(s, "wb")
    os.makedirs(a_dir)
    os.makedirs(b_dir)
    cmd = [r.mpiexec, "--oversubscribe", "-np", "1", "-wdir", a_dir, r.miagrid, "--store", "rel", TINY, ":",
           "-np", "1", "-wdir", b_dir, r.miagrid, "--store", "rel", TINY]
    print("$ " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    check(p.returncode != 0 and "rank 1" in p.stderr and "does not see the store directory" in p.stderr,
          "a rank that does not see the store is named and the run stops")
    check(not os.path.exists(os.path.join(a_dir, "rel", "results.h5")), "nothing was computed")
    # A store of another format version is refused with both versions named.
    with open(os.path.join(s, "miagrid-store"), "w") as f:
        f.write("miagrid store format 99\n")
    p = r.run(TINY, s, expect=1)
    check("format 99" in p.stderr and "reads format 1" in p.stderr, "another format version is a clear error")


def write_cifar10(d, per_file=100, seed=0):
    """Six CIFAR-10 binary files (the release's names and record format):
    one label byte then 3072 pixel bytes (R, G, B planes of 32x32). The class
    sets the mean colour so that there is something to learn."""
    rng = np.random.default_rng(seed)
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    for name in names:
        labels = rng.integers(0, 10, per_file, dtype=np.uint8)
        base = (labels.astype(np.float64)[:, None] * 20.0 + 30.0)
        pix = np.clip(base + rng.normal(0, 40, (per_file, 3072)), 0, 255).astype(np.uint8)
        rec = np.concatenate([labels[:, None], pix], axis=1)
        rec.tofile(os.path.join(d, name))


def case_cifar_archs(r):
    s = r.fresh("cifar")
    data = os.path.join(s, "cifar-10-batches-bin")
    os.makedirs(data)
    write_cifar10(data)
    g = write_grid(os.path.join(s, "cifar.yaml"), f"""
name: e2e-cifar
seeds: [0]
data:
  split: {{target_train: 60, target_test: 60, target_dev: 20, shadow_train: 60, shadow_test: 60, shadow_dev: 20}}
train: {{epochs: 2, batch: 20, optimizer: sgd, lr: 0.05, momentum: 0.9, nesterov: true,
        schedule: {{name: cosine}}, augment: [crop, flip], early_stopping: {{patience: 5}}}}
finetune: {{epochs: 1, lr: 0.01, optimizer: adamw, weight_decay: 0.01}}
axes:
  dataset: [{{name: cifar10, root: {data}}}]
  arch: [resnet20, vgg16_bn]
  prune: [l1-unstructured, {{method: butterfly, layers: [L.8.c, L.6.c, L.7.c]}}]
  sparsity: [0.0, 0.5]
attacks: [loss, conf]
exclude:
  - {{arch: vgg16_bn, prune: butterfly}}
""")
    r.run(g, s, ranks=3)
    check_store(s, 6)
    with h5py.File(os.path.join(s, "results.h5"), "r") as f:
        cells = pd.DataFrame(f["cells"][()])
        key = cells[cells.arch == b"resnet20"].target_model.iloc[0].decode()
        node = f["nodes/" + key]
        bns = [l for l in node["model"] if "running_mean" in node["model"][l]]
        check(len(bns) == 21 and all("running_var" in node["model"][l] for l in bns),
              "the running statistics of resnet20's 21 batch norms (stem, blocks, shortcuts) are stored with the model")
        rm = node["model"][bns[0]]["running_mean"][()]
        check(np.any(rm != 0.0), "and they moved away from their initial values in training")
        h = node["history"]
        check(len(h["lr"][()]) == 2 and h["lr"][1] < h["lr"][0], "the cosine schedule lowered the learning rate")
        check(np.all(np.isfinite(h["dev_acc"][()])), "the dev set was evaluated every epoch")
        # Butterfly on the last segment only (Gonon et al.'s S = 1): its six
        # 3x3 convolutions get the support, every other tensor is untouched.
        bf = f["nodes/" + cells[(cells.prune == b"butterfly/one-shot") & (cells.sparsity == 0.5)].target_model.iloc[0].decode()]
        zeros = {l: int((bf["model"][l]["mask"][()] == 0).sum()) for l in bf["model"] if "mask" in bf["model"][l]}
        hit = sorted(l for l, z in zeros.items() if z > 0)
        print("butterfly masks with zeros:", hit)
        check(hit == ["L.6.c1", "L.6.c2", "L.7.c1", "L.7.c2", "L.8.c1", "L.8.c2"],
              "layers: [L.8.c, L.6.c, L.7.c] restricts butterfly to the last segment's six convolutions")
        pruned = cells[(cells.arch == b"vgg16_bn") & (cells.sparsity == 0.5)].target_model.iloc[0].decode()
        pn = f["nodes/" + pruned]
        check(abs(pn["metrics"].attrs["sparsity"] - 0.5) < 0.01, "vgg16_bn was pruned to 50 %")
        # 313,201,664 MACs per sample: the sum over layers of C_out * C_in * 9 * OH * OW, plus 512 * 10.
        check(int(pn["prune_stats/macs_dense"][()].sum()) == 313201664
              and abs(pn["metrics"].attrs["macs_saved"] - 0.5) < 0.01,
              "vgg16_bn's multiply-accumulates are stored: 313.2 M per sample dense, half of them saved")


def case_prune_schedules(r):
    s = r.fresh("schedules")
    g = write_grid(os.path.join(s, "sched.yaml"), open(TINY).read()
                   .replace("arch: [lenet5, {name: mlp, hidden: [32], activation: tanh}]", "arch: [{name: mlp, hidden: [32]}]")
                   .replace("prune: [l1-unstructured]",
                            "prune: [{method: l1-unstructured, schedule: imp, rate: 0.2, rewind_epoch: 1}, "
                            "{method: l2-structured, schedule: iterative, rounds: 3}, random-unstructured]")
                   .replace("sparsity: [0.0, 0.5]", "sparsity: [0.0, 0.5, 0.7]"))
    out = r.run(g, s, extra=["--dry-run"]).stdout
    check(out.count("rewind point: epoch 1") == 2, "imp adds one rewind-point node per role")
    # imp stages 0.2, 0.36, 0.488 are shared by the 0.5 and 0.7 chains.
    for sp in ("0.2", "0.36", "0.488"):
        check(len(re.findall(rf"prune  target \w+  inputs \d+,\d+  uses 2  sparsity {sp}\b", out)) == 1,
              f"the imp stage at {sp} is one node shared by both chains")
    r.run(g, s, ranks=3)
    check_store(s, 9)
    with h5py.File(os.path.join(s, "results.h5"), "r") as f:
        cells = pd.DataFrame(f["cells"][()])
        for _, c in cells[cells.sparsity > 0].iterrows():
            node = f["nodes/" + c.target_model.decode()]
            check("prune_stats/nonzero" in node and node["metrics"].attrs["compression"] > 1.0,
                  f"cell {c.cell_id}: pruning statistics are stored")
            if c.prune.startswith(b"l2-structured"):
                w = node["model/fc1/weight"][()]
                dead = np.all(w == 0, axis=1).sum()
                check(dead == round(c.sparsity * w.shape[0]), f"cell {c.cell_id}: structured pruning removes whole neurons")
            if c.prune.startswith(b"l1-unstructured/imp"):
                check(len(node["history/loss"][()]) == 5, "an imp stage retrains with the full training schedule")


def case_attacks(r):
    s = r.fresh("attacks")
    names = ["loss", "conf", "entropy", "mentropy", "hconf", "nn", "top3-nn", "nn-cls", "gap"]
    g = write_grid(os.path.join(s, "att.yaml"), open(TINY).read()
                   .replace("attacks: [loss, conf]", "attacks: [" + ", ".join(names) + "]"))
    r.run(g, s, ranks=3)
    df = metrics(s)
    for a in names:
        sub = df[(df.attack == a) & (df.model == "target")]
        need = {"balanced_acc", "auc", "tpr_at_1pct_fpr", "tpr_at_0fpr", "precision", "defense_level", "js_divergence"}
        check(need <= set(sub.metric), f"{a}: every metric is stored")
        ba = sub[sub.metric == "balanced_acc"].value
        check(((ba >= 0.0) & (ba <= 1.0)).all(), f"{a}: balanced accuracies are rates")
        d = sub[sub.metric == "defense_level"].value.to_numpy()
        check(np.allclose(d, 200 - 200 * ba.to_numpy()), f"{a}: D = 200 - 2A")
    with h5py.File(os.path.join(s, "results.h5"), "r") as f:
        node = f["nodes/" + df[df.attack == "nn"].node.iloc[0]]
        check(node["per_class/metrics"].shape == (10, 4), "per-class metrics are stored for each of 10 classes")


def case_refattacks(r):
    """lira (online and offline) and rmia through the grid: each reference
    model is a train node of its own, shared between offline lira and rmia
    and across sparsities; every target candidate is in exactly half of the
    online references; 1 and 3 ranks give the same bits; on this overfit
    grid lira finds more members at 1 % FPR than the loss attack."""
    s = r.fresh("refattacks")
    attacks = ("[loss, {name: lira, references: 4}, {name: lira, references: 4, online: false}, "
               "{name: rmia, references: 4}]")
    g = write_grid(os.path.join(s, "refs.yaml"), open(TINY).read()
                   .replace("arch: [lenet5, {name: mlp, hidden: [32], activation: tanh}]",
                            "arch: [{name: mlp, hidden: [32], activation: tanh}]")
                   .replace("shadow_test: 200}", "shadow_test: 200, population: 800}")
                   .replace("epochs: 5,", "epochs: 30,")
                   .replace("attacks: [loss, conf]", "attacks: " + attacks))
    out = r.run(g, s, ranks=3).stdout
    check("20 nodes" in out, "2 cells: 4 models, 8 reference models (4 online, 4 offline) and 8 attack nodes")
    df = metrics(s)
    names = ["loss", "lira", "lira-offline", "rmia"]
    for a in names:
        sub = df[(df.attack == a) & (df.model == "target")]
        need = {"balanced_acc", "auc", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr", "advantage"}
        check(need <= set(sub.metric) and len(sub[sub.metric == "auc"]) == 2, f"{a}: metrics stored for both cells")
        auc = sub[sub.metric == "auc"].value
        check(((auc >= 0) & (auc <= 1)).all(), f"{a}: AUC in [0, 1]")

    def tpr(a):
        return df[(df.attack == a) & (df.model == "target") & (df.metric == "tpr_at_1pct_fpr")].value.mean()
    for a in ("lira", "lira-offline"):
        check(tpr(a) >= tpr("loss"), f"{a} finds more members at 1 % FPR than loss ({tpr(a):.3f} >= {tpr('loss'):.3f})")

    with h5py.File(os.path.join(s, "results.h5"), "r") as f:
        cells = pd.DataFrame(f["cells"][()])
        refs = {}
        for key in f["nodes"]:
            node = f["nodes/" + key]
            if "reference" in node:
                refs[key] = node
        check(len(refs) == 8, "8 reference nodes")
        online = [n for n in refs.values() if n.attrs["reference_pool"] == "candidates"]
        offline = [n for n in refs.values() if n.attrs["reference_pool"] == "population"]
        check(len(online) == 4 and len(offline) == 4, "4 online and 4 offline references")
        target = f["nodes/" + cells.target_model[0].decode()]
        cand = np.concatenate([target["outputs/member/sample_index"][()], target["outputs/nonmember/sample_index"][()]])
        ins = np.array([n["reference/candidates/in"][()] for n in online])
        check(all(np.array_equal(n["reference/candidates/sample_index"][()], cand) for n in refs.values()),
              "every reference scores the target's candidates in the target's order")
        check((ins.sum(axis=0) == 2).all(), "online: each candidate is in exactly 2 of the 4 references")
        for n in online:
            mem = set(n["outputs/member/sample_index"][()])
            inn = n["reference/candidates/in"][()]
            check(all((i in mem) == bool(b) for i, b in zip(cand, inn)), "online: in marks what the reference trained on")
            check(abs(len(mem) - 200) <= 40, "online: a reference trains on about half of the 400 candidates")
            check("population" not in n["reference"], "online: no comparison set")
        pop = offline[0]["reference/population/sample_index"][()]
        check(len(pop) == 400 and not set(pop) & set(cand), "offline: z is the population's second half, 400 samples")
        for n in offline:
            check(not n["reference/candidates/in"][()].any(), "offline: no candidate is in a reference")
            mem = set(n["outputs/member/sample_index"][()])
            check(not mem & set(cand) and not mem & set(pop), "offline: references train on neither candidates nor z")
            check(np.array_equal(n["reference/population/sample_index"][()], pop), "offline: one z for all references")
            check("defense" not in n and n["model/fc1/mask"][()].all(), "references are dense and undefended")
        for _, c in cells.iterrows():
            atk = df[(df.cell_id == c.cell_id) & (df.attack != "")].groupby("attack").node.first()
            recipe = {a: json.loads(f["nodes/" + atk[a]].attrs["recipe"]) for a in names}
            check(recipe["lira-offline"]["references"] == recipe["rmia"]["references"],
                  "offline lira and rmia share their references")
            check(set(recipe["lira"]["references"]) == {k for k, n in refs.items() if n in online},
                  "online lira reads the online references")
            check(f["nodes/" + atk["rmia"]].attrs["rmia_a"] == 0.33, "rmia records its a")
    s1 = r.fresh("refattacks-1")
    r.run(g, s1, ranks=1)
    a, b = metrics(s), metrics(s1)
    # Offline attacks have no calibration (reference 0 trained on no candidate): NaN shadow metrics.
    check(len(a) == len(b) and np.array_equal(a["value"].to_numpy(), b["value"].to_numpy(), equal_nan=True),
          "reference attacks give the same bits on 1 and 3 ranks")


def case_defenses(r):
    """Every defense runs through the grid, on 1 and 3 ranks with the same
    bits; the phase decides which models are defended; DP-SGD reports its
    epsilon, composed over dense training and fine-tuning; every model
    reports its training and defense time."""
    s = r.fresh("defenses")
    rng = np.random.default_rng(0)
    mem = os.path.join(s, "mem.csv")
    with open(mem, "w") as f:
        f.write("index,score\n")
        for i, v in enumerate(rng.uniform(-0.2, 1.0, 70000)):
            f.write(f"{i},{v:.4f}\n")
    defenses = ("[none, base, label-smoothing, {name: adv-reg, k: 2}, {name: dp-sgd, noise_multiplier: 1.0}, "
                "relaxloss, ppb, {name: rsw, mem_scores: %s, width: 12, step: 4}, "
                "{name: rmr, mem_scores: %s, tau: 0.5}, {name: swmr, mem_scores: %s, width: 12, step: 4}, "
                "{name: ppb, lambda: 2.0, phase: both}, {name: rmr, subsets: 4, tau: 0.3}]" % (mem, mem, mem))
    g = write_grid(os.path.join(s, "def.yaml"), open(TINY).read()
                   .replace("arch: [lenet5, {name: mlp, hidden: [32], activation: tanh}]", "arch: [{name: mlp, hidden: [32]}]")
                   .replace("shadow_test: 200}", "shadow_test: 200, target_dev: 100, shadow_dev: 100}")
                   .replace("finetune: {epochs: 1, lr: 0.01}", "finetune: {epochs: 3, lr: 0.01}")
                   .replace("defense: [none]", "defense: " + defenses))
    r.run(g, s, ranks=3)
    check_store(s, 24)
    s1 = r.fresh("defenses-1")
    r.run(g, s1, ranks=1)
    a, b = metrics(s), metrics(s1)
    check(len(a) == len(b) and np.array_equal(a["value"].to_numpy(), b["value"].to_numpy()),
          "defended grids give the same bits on 1 and 3 ranks")
    t = metrics(s, timings=True)
    for name in ("train_seconds", "defense_seconds"):
        v = t[(t.metric == name) & (t.attack == "")].value
        check(len(v) > 0 and (v >= 0).all(), f"{name} is recorded for the models")
    with h5py.File(os.path.join(s, "results.h5"), "r") as f:
        cells = pd.DataFrame(f["cells"][()])
        cells["defense"] = cells["defense"].str.decode("utf-8")
        dense = {}
        for _, c in cells[cells.sparsity == 0].iterrows():
            d = json.loads(c["axes"].decode())["defense"]
            dense[d["name"] if d.get("phase") != "both" or d["name"] != "ppb" else "ppb-both"] = c.target_model.decode()
        check(dense["ppb"] == dense["none"] == dense["rsw"],
              "defenses of the pruning phase leave the dense model undefended and shared")
        check(len({dense[d] for d in ("base", "label-smoothing", "adv-reg", "dp-sgd", "relaxloss", "none")}) == 6,
              "defenses of both phases train their own dense models")
        check(dense["ppb-both"] not in (dense["none"], dense["ppb"]), "ppb on both phases trains its own dense model")
        dp = cells[cells.defense == "dp-sgd"]
        eps = {}
        for _, c in dp.iterrows():
            node = f["nodes/" + c.target_model.decode()]
            e = node["metrics"].attrs["epsilon"]
            check(np.isfinite(e) and e > 0 and node["defense/rdp"].shape == (151,), "DP-SGD reports a finite epsilon")
            eps[c.sparsity] = e
        check(eps[0.5] > eps[0.0], "fine-tuning adds to the dense training's privacy cost")
        base = f["nodes/" + dense["base"]]
        check(np.isfinite(base["history/dev_acc"][()]).all(), "base stops early on the dev part")
        est = [c for _, c in cells[(cells.sparsity > 0) & (cells.defense == "rmr")].iterrows()
               if "subsets" in json.loads(c["axes"].decode())["defense"]]
        check(len(est) == 1, "one cell estimates its memorisation scores with subset models")
        node = f["nodes/" + est[0].target_model.decode()]
        mem = node["defense/mem_scores"][()]
        check(mem.shape == (200,) and (mem >= -1).all() and (mem <= 1).all() and mem.std() > 0,
              "the estimated memorisation scores are stored with the node that used them")
        for _, c in cells[(cells.sparsity > 0) & cells.defense.isin(["rsw", "swmr"])].iterrows():
            node = f["nodes/" + c.target_model.decode()]
            check(len(node["history/loss"][()]) == 3, f"{c.defense}: fine-tuning runs its epochs on windows")
    # The comparison table: one row per defense and sparsity, the strongest
    # attack as the metrics table has it, changes measured from none.
    script = os.path.join(HERE, "..", "..", "analysis", "mgdefense.py")
    p = subprocess.run([sys.executable, script, s, "--format", "csv"], capture_output=True, text=True)
    check(p.returncode == 0, "mgdefense.py reads the store: " + p.stderr[-300:])
    table = pd.read_csv(io.StringIO(p.stdout))
    check(len(table) == 24 and table.defense.nunique() == 12, "one row per defense (12, the two rmr told apart) and sparsity")
    none = table[table.defense == "none"]
    check((none.d_acc == 0).all() and (none.d_attack == 0).all(), "changes are measured from none")
    ba = a[(a.model == "target") & (a.metric == "balanced_acc") & (a.attack != "")]
    cid = int(cells[(cells.defense == "dp-sgd") & (cells.sparsity > 0)].cell_id.iloc[0])
    row = table[(table.defense == "dp-sgd") & (table.sparsity > 0)].iloc[0]
    check(abs(row.attack_acc - ba[ba.cell_id == cid].value.max()) < 1e-12 and np.isfinite(row.epsilon),
          "the strongest attack and epsilon are the store's")


def case_sens_shadows(r):
    """samia and gonon, whose attack nodes compute sensitivity features from
    the models they rebuild, on the tiny grid's MLP; then k = 2 shadow models
    of a mia-prune split pooled by the loss attack."""
    s = r.fresh("sens")
    g = write_grid(os.path.join(s, "sens.yaml"), open(TINY).read()
                   .replace("arch: [lenet5, {name: mlp, hidden: [32], activation: tanh}]",
                            "arch: [{name: mlp, hidden: [32], activation: tanh}]")
                   .replace(": 200", ": 100")
                   .replace("attacks: [loss, conf]", "attacks: [samia, {name: gonon, depth: 1}]"))
    r.run(g, s, ranks=3)
    df = metrics(s)
    for a in ("samia", "gonon"):
        for model in ("target", "shadow"):
            sub = df[(df.attack == a) & (df.model == model)]
            need = {"balanced_acc", "auc", "tpr_at_1pct_fpr", "js_divergence"}
            check(need <= set(sub.metric) and sub.cell_id.nunique() == 2, f"{a}: {model} metrics of both cells are stored")
            ba = sub[sub.metric == "balanced_acc"].value
            check(((ba >= 0.0) & (ba <= 1.0)).all(), f"{a}: {model} balanced accuracies are in [0, 1]")
    with h5py.File(os.path.join(s, "results.h5"), "r") as f:
        key = df[df.attack == "gonon"].node.iloc[0]
        recipe = json.loads(f["nodes/" + key].attrs["recipe"])
        check(recipe["attack"] == {"depth": 1, "name": "gonon"}, "gonon's depth is in its recipe")
        sc = f["nodes/" + key + "/scores/score"][()]
        check(sc.shape == (200,) and np.all(np.isfinite(sc)), "gonon scores every target sample")

    # k = 2 shadow models: each trained on its own part of the attacker's
    # half, both pooled by every attack node.
    s2 = r.fresh("shadows")
    g2 = write_grid(os.path.join(s2, "shadows.yaml"), open(TINY).read()
                    .replace("arch: [lenet5, {name: mlp, hidden: [32], activation: tanh}]",
                             "arch: [{name: mlp, hidden: [32], activation: tanh}]")
                    .replace("split: {target_train: 200, target_test: 200, shadow_train: 200, shadow_test: 200}",
                             "split: {protocol: mia-prune, shadows: 2}")
                    .replace("epochs: 5", "epochs: 2")
                    .replace("attacks: [loss, conf]", "attacks: [loss]")
                    .replace("e2e-tiny", "e2e-shadows"))
    out = r.run(g2, s2, extra=["--dry-run"]).stdout
    check(re.search(r"2 cells, 8 nodes \(3 train, 3 prune, 2 attack\)", out) is not None,
          "per cell: the target and 2 shadow models, dense and pruned, and one attack node")
    check(len(re.findall(r"attack +loss .* shadow models \d+,\d+", out)) == 2, "the listing names both shadow models")
    r.run(g2, s2, ranks=3)
    df = metrics(s2)
    ba = df[(df.attack == "loss") & (df.metric == "balanced_acc")].value
    check(len(ba) == 4 and ((ba >= 0.0) & (ba <= 1.0)).all(), "loss: balanced accuracies of target and pooled shadows")
    with h5py.File(os.path.join(s2, "results.h5"), "r") as f:
        cells = pd.DataFrame(f["cells"][()])
        for _, c in cells.iterrows():
            att = df[(df.cell_id == c.cell_id) & (df.attack == "loss")].node.iloc[0]
            shadows = json.loads(f["nodes/" + att].attrs["recipe"])["shadow"]
            check(isinstance(shadows, list) and len(shadows) == 2 and shadows[0] == c.shadow_model.decode(),
                  f"cell {c.cell_id}: the attack pools 2 shadow models, the first the cells table's")
            members = [set(f["nodes/" + k + "/outputs/member/sample_index"][()]) for k in shadows]
            target = set(f["nodes/" + c.target_model.decode() + "/outputs/member/sample_index"][()])
            check(members[0] != members[1] and len(members[0]) == len(members[1]),
                  f"cell {c.cell_id}: each shadow model trains on its own members")
            check(not (target & (members[0] | members[1])), f"cell {c.cell_id}: no shadow trains on a target member")


def check_exact_masks(node, sparsity, what):
    """Every masked tensor of an unstructured node drops exactly round(s * n)
    entries (half to even, as the library), and its masked weights are 0."""
    for layer in node["model"]:
        g = node["model"][layer]
        if "mask" not in g:
            continue
        m, w = g["mask"][()], g["weight"][()]
        check(int((m == 0).sum()) == round(sparsity * m.size) and np.all(w[m == 0] == 0.0),
              f"{what}: {layer} drops exactly round({sparsity} * {m.size}) weights, all 0")


def wait_for(pred, proc, limit=300):
    deadline = time.time() + limit
    while time.time() < deadline and proc.poll() is None:
        if pred():
            return True
        time.sleep(0.02)
    return False


def admm_ckpts(store, finished):
    """Keys of the ADMM phases whose checkpoint is there with that `finished` flag."""
    out = []
    d = os.path.join(store, "nodes")
    for f in os.listdir(d) if os.path.isdir(d) else []:
        if f.endswith(".admm.ckpt.h5"):
            try:
                with h5py.File(os.path.join(d, f), "r") as h:
                    if int(h.attrs["finished"]) == finished:
                        out.append(f[:32])
            except OSError:
                pass  # being renamed into place
    return out


def case_admm_slim(r):
    """ADMM pruning (one-shot and iterative) reaches exactly the requested
    sparsity with its residual recorded; stopping in the ADMM phase and after
    it resumes to the bits of a run straight through without redoing a
    finished phase; slimming's penalty trains dense models of its own with
    smaller batch-norm scales."""
    s = r.fresh("admm")
    g = write_grid(os.path.join(s, "admm.yaml"), open(TINY).read()
                   .replace("arch: [lenet5, {name: mlp, hidden: [32], activation: tanh}]", "arch: [{name: mlp, hidden: [32]}]")
                   .replace("finetune: {epochs: 1, lr: 0.01}", "finetune: {epochs: 2, lr: 0.01}")
                   .replace("prune: [l1-unstructured]",
                            "prune: [{method: admm, admm_epochs: 2}, "
                            "{method: admm, schedule: iterative, rounds: 2, admm_epochs: 2}]"))
    out = r.run(g, s, extra=["--dry-run"]).stdout
    check("(2 train, 6 prune, 6 attack)" in out,
          "admm shares the dense models; the iterative schedule adds a stage node per role")
    r.run(g, s, ranks=2)
    check_store(s, 4)
    df = metrics(s)
    with h5py.File(os.path.join(s, "results.h5"), "r") as f:
        cells = pd.DataFrame(f["cells"][()])
        for _, c in cells[cells.sparsity > 0].iterrows():
            for role in ("target_model", "shadow_model"):
                key = c[role].decode()
                node = f["nodes/" + key]
                check_exact_masks(node, 0.5, f"cell {c.cell_id} {role[:6]}")
                res = node["metrics"].attrs["admm_residual"]
                check(np.isfinite(res) and 0.0 <= res < 1.0, f"the ADMM residual is recorded ({res:.4f})")
                check(len(node["history/loss"][()]) == 2, "the masked retraining runs the finetune epochs")
            if c.prune.endswith(b"iterative"):
                first = json.loads(f["nodes/" + c.target_model.decode()].attrs["recipe"])["input"]
                check_exact_masks(f["nodes/" + first], 1 - 0.5 ** 0.5, "the first iterative stage")
    check(len(df[(df.metric == "admm_residual") & (df.attack == "")]) == 4,
          "the residual is in the metrics table for the pruned models of both cells")
    check(not [x for x in os.listdir(os.path.join(s, "nodes")) if x.endswith(".ckpt.h5")],
          "no checkpoint is left once the nodes complete")

    # Stop in the ADMM phase, then in the retraining after it; resume.
    st = r.fresh("admm-stop")
    sg = write_grid(os.path.join(st, "stop.yaml"), open(TINY).read()
                    .replace("e2e-tiny", "e2e-admm-stop").replace(": 200", ": 2000")
                    .replace("arch: [lenet5, {name: mlp, hidden: [32], activation: tanh}]", "arch: [lenet5]")
                    .replace("epochs: 5", "epochs: 2")
                    .replace("finetune: {epochs: 1, lr: 0.01}", "finetune: {epochs: 6, lr: 0.01}")
                    .replace("prune: [l1-unstructured]", "prune: [{method: admm, admm_epochs: 4}]")
                    .replace("sparsity: [0.0, 0.5]", "sparsity: [0.5]"))
    cmd = [r.miagrid, "--checkpoint-every", "0.001", "--store", st, sg]

    def stopped_run(pred, what):
        print("$ " + " ".join(cmd), flush=True)
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        hit = wait_for(pred, p)
        p.send_signal(signal.SIGTERM)
        o, e = p.communicate(timeout=300)
        print(o[-1500:], e[-1500:])
        check(hit and p.returncode == 3, f"a run stopped {what} exits 3 (got {p.returncode})")

    stopped_run(lambda: admm_ckpts(st, 0) or admm_ckpts(st, 1), "in an ADMM phase")
    mid = admm_ckpts(st, 0)
    print(f"ADMM checkpoints mid-phase: {len(mid)}, finished: {len(admm_ckpts(st, 1))}")
    # A phase finished in this run (one finished before may complete first).
    before = set(admm_ckpts(st, 1))
    stopped_run(lambda: set(admm_ckpts(st, 1)) - before, "after an ADMM phase")
    done = sorted(set(admm_ckpts(st, 1)) - before)
    check(len(done) == 1, "a finished ADMM phase keeps its state until its node completes")
    key = done[0]
    with h5py.File(os.path.join(st, "nodes", key + ".admm.ckpt.h5"), "r") as h:
        admm_time = 0.0
        for v in h["history/seconds"][()]:
            admm_time += float(v)  # in the order the node sums them
    p = r.run(sg, st)
    check(summary_counts(p.stdout)["left"] == 0, "the third run completes the grid")
    with h5py.File(os.path.join(st, "nodes", key + ".h5"), "r") as h:
        check(h["metrics"].attrs["admm_seconds"] == admm_time,
              "the resumed node took its ADMM phase from the checkpoint instead of training it again")
    check(not [x for x in os.listdir(os.path.join(st, "nodes")) if x.endswith(".ckpt.h5")],
          "both checkpoints go when the node completes")
    s2 = r.fresh("admm-straight")
    r.run(sg, s2)
    a, b = metrics(st), metrics(s2)
    check(np.array_equal(a["value"].to_numpy(), b["value"].to_numpy()) and a["node"].equals(b["node"]),
          "stopped in and after the ADMM phase and resumed, the grid gives the bits of a run straight through")

    # Slimming's penalty: dense models of their own, with smaller scales.
    sl = r.fresh("slim")
    data = os.path.join(sl, "cifar-10-batches-bin")
    os.makedirs(data)
    write_cifar10(data)
    gs = write_grid(os.path.join(sl, "slim.yaml"), f"""
name: e2e-slim
seeds: [0]
data:
  split: {{target_train: 60, target_test: 60, shadow_train: 60, shadow_test: 60}}
train: {{epochs: 1, batch: 20, optimizer: sgd, lr: 0.05, momentum: 0.9}}
finetune: {{epochs: 1, lr: 0.01}}
axes:
  dataset: [{{name: cifar10, root: {data}}}]
  arch: [resnet20]
  prune: [slim, {{method: slim, penalty: 0.1}}]
  sparsity: [0.0, 0.5]
attacks: [loss]
""")
    r.run(gs, sl, ranks=2)
    with h5py.File(os.path.join(sl, "results.h5"), "r") as f:
        cells = pd.DataFrame(f["cells"][()])
        dense = {}
        for _, c in cells[cells.sparsity == 0].iterrows():
            pen = json.loads(c["axes"].decode())["prune"].get("penalty", 0)
            dense[pen] = c.target_model.decode()
        check(len(dense) == 2 and dense[0] != dense[0.1], "slim with a penalty trains dense models of its own")

        def gamma_l1(key):
            m = f["nodes/" + key]["model"]
            return sum(float(np.abs(m[l]["weight"][()]).sum()) for l in m if "running_mean" in m[l])
        g0, g1 = gamma_l1(dense[0]), gamma_l1(dense[0.1])
        check(g1 < g0, f"the penalty shrinks the batch-norm scales (sum |gamma| {g1:.2f} < {g0:.2f})")
        for _, c in cells[cells.sparsity > 0].iterrows():
            node = f["nodes/" + c.target_model.decode()]
            want = dense[json.loads(c["axes"].decode())["prune"].get("penalty", 0)]
            check(json.loads(node.attrs["recipe"])["input"] == want, f"cell {c.cell_id} prunes its own dense model")


def case_select(r):
    """Wang et al.'s MIA-Pruning: a cell selecting among candidate sparsities
    0.5 and 0.9 shares its candidates with the plain cells, keeps the one of
    least gain on its shadow models (the record agrees with itself), holds
    the chosen target and shadow models bit for bit, gives the same bits on 1
    and 3 ranks, and redoes only a lost select node."""
    s1, s3 = r.fresh("select1"), r.fresh("select3")
    g = write_grid(os.path.join(s1, "select.yaml"), open(TINY).read()
                   .replace("arch: [lenet5, {name: mlp, hidden: [32], activation: tanh}]",
                            "arch: [{name: mlp, hidden: [64], activation: tanh}]")
                   .replace("shadow_test: 200}", "shadow_test: 200, shadows: 2}")
                   .replace("split: {", "split: {protocol: explicit, ")
                   .replace("epochs: 5", "epochs: 12")
                   .replace("prune: [l1-unstructured]",
                            "prune: [l1-unstructured, {method: l1-unstructured, select: [0.9, 0.5]}]")
                   .replace("sparsity: [0.0, 0.5]", "sparsity: [0.0, 0.9]")
                   .replace("attacks: [loss, conf]", "attacks: [loss, nn]")
                   .replace("e2e-tiny", "e2e-select"))
    out = r.run(g, s1, extra=["--dry-run"]).stdout
    check(re.search(r"4 cells, 18 nodes \(3 train, 6 prune, 3 select, 6 attack\)", out) is not None,
          "candidates 0.5 and 0.9 for 3 models, 0.9 shared with the plain cell; 3 select nodes")
    check("l1-unstructured/one-shot/select 0.9" in out, "the listing names the selecting cell")
    r.run(g, s3, ranks=3)
    r.run(g, s1)
    a, b = metrics(s1), metrics(s3)
    check(len(a) == len(b) and a[["cell_id", "model", "attack", "metric", "node"]].equals(
        b[["cell_id", "model", "attack", "metric", "node"]]) and np.array_equal(a.value.to_numpy(), b.value.to_numpy()),
        "1 rank and 3 ranks give bit-identical metrics")
    with h5py.File(os.path.join(s1, "results.h5"), "r") as f:
        cells = pd.DataFrame(f["cells"][()])
        sel = cells[(cells.prune == b"l1-unstructured/one-shot/select") & (cells.sparsity == 0.9)].iloc[0]
        plain0 = cells[(cells.prune == b"l1-unstructured/one-shot") & (cells.sparsity == 0.0)].iloc[0]
        dense0 = cells[(cells.prune == b"l1-unstructured/one-shot/select") & (cells.sparsity == 0.0)].iloc[0]
        check(dense0.target_model == plain0.target_model, "at sparsity 0 the selection changes nothing")
        t = f["nodes/" + sel.target_model.decode()]
        recipe = json.loads(t.attrs["recipe"])
        check(t.attrs["kind"] in ("select", b"select") and recipe["attack"] == "nn-cls", "the cell's target is a select node")
        sp, gain = t["selection/sparsity"][()], t["selection/gain"][()]
        chosen = int(t["selection"].attrs["chosen"])
        print(f"selection: sparsities {sp}, gains {gain}, chosen {sp[chosen]}")
        check(list(sp) == [0.5, 0.9] and np.all(np.isfinite(gain)) and np.all(gain <= 0.0), "a gain per candidate")
        best = max(k for k in range(len(gain)) if gain[k] == gain.min())
        check(chosen == best, "the least gain wins (on a tie the sparser)")
        check(t["metrics"].attrs["selected_sparsity"] == sp[chosen] and t["metrics"].attrs["selection_gain"] == gain[chosen],
              "the metrics say which sparsity won and its gain")
        models = recipe["candidates"][chosen]["models"]
        check(len(models) == 3, "each candidate names its target and 2 shadow models")
        att = json.loads(f["nodes/" + a[(a.cell_id == sel.cell_id) & (a.attack == "nn")].node.iloc[0]].attrs["recipe"])
        check(att["shadow"][0] == sel.shadow_model.decode() and len(att["shadow"]) == 2,
              "the attacks pool the selected shadow models")
        for node, src_key in zip([t] + [f["nodes/" + k] for k in att["shadow"]], models):
            src = f["nodes/" + src_key]
            same = all(np.array_equal(node["model"][layer][ds][()], src["model"][layer][ds][()])
                       for layer in src["model"] for ds in src["model"][layer])
            check(same, f"the chosen model {src_key[:8]}: weights and masks held bit for bit")
            check(np.array_equal(node["outputs/member/logits"][()], src["outputs/member/logits"][()]),
                  f"the chosen model {src_key[:8]}: its outputs come along")
        sm = a[(a.cell_id == sel.cell_id) & (a.model == "target") & (a.attack == "")]
        check(sm[sm.metric == "selected_sparsity"].value.iloc[0] == sp[chosen], "the results table has the selected sparsity")
        lost = sel.target_model.decode()
    out = r.run(g, s1).stdout
    check("nothing to compute" in out, "a rerun computes nothing")
    os.remove(os.path.join(s1, "nodes", lost + ".h5"))
    out = r.run(g, s1, ranks=2).stdout
    n = summary_counts(out)
    check(n["computed"] == 1 and n["reused"] == 17, "a lost select node is the only one redone")
    check(np.array_equal(metrics(s1).value.to_numpy(), b.value.to_numpy()), "and it decides the same, bit for bit")
    v = subprocess.run([r.miagrid, "store", "verify", s1], capture_output=True, text=True)
    check(v.returncode == 0 and "0 problems" in v.stdout, "store verify accepts the select nodes")
    rep = os.path.join(r.tmp, "select-report")
    p = subprocess.run([sys.executable, os.path.join(HERE, "..", "..", "analysis", "report.py"), s1, rep],
                       capture_output=True, text=True)
    check(p.returncode == 0 and os.path.exists(os.path.join(rep, "tables", "selected_sparsity.csv")),
          "report.py tabulates the selected sparsity")


CASES = {
    "select": case_select,
    "sens_shadows": case_sens_shadows,
    "admm_slim": case_admm_slim,
    "defenses": case_defenses,
    "attacks": case_attacks,
    "refattacks": case_refattacks,
    "prune_schedules": case_prune_schedules,
    "cifar_archs": case_cifar_archs,
    "node_failure": case_node_failure,
    "stop_resume": case_stop_resume,
    "store_guard": case_store_guard,
    "analysis": case_analysis,
    "csv_content": case_csv_content,
    "serial_vs_mpi": case_serial_vs_mpi,
    "grow": case_grow,
    "kill_resume": case_kill_resume,
    "dry_run": case_dry_run,
    "config_error": case_config_error,
}

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("case", choices=sorted(CASES))
    ap.add_argument("--miagrid", required=True)
    ap.add_argument("--mpiexec", required=True)
    ap.add_argument("--tmp", required=True)
    a = ap.parse_args()
    if not os.path.isdir("/usr/share/datasets/fashion-mnist") and not os.environ.get("MIAGRID_DATA_FASHION_MNIST"):
        print("skipped: Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
        sys.exit(77)
    CASES[a.case](Runner(a))
    print("1 passed, 0 failed")
