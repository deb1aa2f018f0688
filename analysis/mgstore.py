#!/usr/bin/python3
"""Read a miagrid store into pandas and numpy.

    import mgstore
    cells, metrics = mgstore.load("runs/quickstart")        # the /cells and /metrics tables
    tidy = mgstore.tidy("runs/quickstart")                  # metrics joined with cell axes
    with mgstore.Store("runs/quickstart") as s:             # per-node arrays
        fpr, tpr = s.roc(cell_id=0, attack="conf")
        out = s.outputs(cell_id=0)                          # out["member"]["logits"], ...
        segments = s.history(cell_id=2)                     # dense training, then fine-tuning

As a command: `analysis/mgstore.py STORE [--metric balanced_acc]`
prints, per cell, the target's accuracies and each attack's metric.

Node arrays are read through the root file's external links
(/nodes/<key> -> nodes/<key>.h5), so only results.h5 needs to be named.
"""
import argparse
import json
import os
import sys

try:
    import h5py
    import pandas as pd
except ImportError as e:  # the first python3 on PATH may not be Debian's
    raise ImportError(f"{e.name} is missing: run the analysis with Debian's /usr/bin/python3 "
                      "(scripts/install-deps.sh installs python3-h5py, python3-pandas, "
                      "python3-matplotlib)") from e

# The axes of a cell, in the order the grid varies them (seed fastest).
AXES = ("dataset", "arch", "prune", "sparsity", "defense", "seed")
CELL_STATUSES = ("complete", "pending", "failed", "skipped")


class StoreError(Exception):
    """A store that cannot be read, or a request it cannot answer; the message is for the user."""


def root_path(path):
    """The results.h5 of a store given as its directory or as the file itself."""
    p = path if path.endswith(".h5") else os.path.join(path, "results.h5")
    if not os.path.isfile(p):
        if os.path.isdir(path):
            raise StoreError(f"{path}: no results.h5 in this directory: is it a miagrid store?")
        raise StoreError(f"{path}: no such store (give a store directory or its results.h5)")
    return p


def _decode(df):
    for c in df.columns:
        if df[c].dtype == object or df[c].dtype.kind == "S":
            df[c] = df[c].map(lambda v: v.decode("utf-8") if isinstance(v, bytes) else v)
    return df


def _read_tables(f, where):
    for name in ("cells", "metrics"):
        if name not in f:
            raise StoreError(f"{where}: no /{name} table: not a miagrid root file")
    cells = _decode(pd.DataFrame(f["cells"][()]))
    metrics = _decode(pd.DataFrame(f["metrics"][()]))
    return cells, metrics


def load(path):
    """The /cells and /metrics tables of a store's root file as DataFrames (strings decoded)."""
    p = root_path(path)
    with h5py.File(p, "r") as f:
        return _read_tables(f, p)


def join(cells, metrics):
    """The metrics table joined with each row's cell axes and status."""
    axes = cells[["cell_id", *AXES, "status"]]
    return metrics.merge(axes, on="cell_id", how="left")


def tidy(path, complete_only=False):
    """One row per cell x model x attack x metric, with the cell's axes and status.

    complete_only keeps the rows of complete cells only (a pending cell may
    already have its model's metrics but not yet its attacks')."""
    cells, metrics = load(path)
    df = join(cells, metrics)
    return df[df.status == "complete"].reset_index(drop=True) if complete_only else df


def summary(path, metric="balanced_acc"):
    """Per cell: target train/test accuracy and each attack's `metric` on the target."""
    df = tidy(path)
    keys = ["cell_id", "dataset", "arch", "prune", "sparsity", "seed"]
    model = df[(df.model == "target") & (df.attack == "") & df.metric.isin(["train_acc", "test_acc"])]
    out = model.pivot_table(index=keys, columns="metric", values="value")
    att = df[(df.model == "target") & (df.attack != "") & (df.metric == metric)]
    if len(att):
        out = out.join(att.pivot_table(index=keys, columns="attack", values="value").add_suffix("_" + metric))
    return out.reset_index()


def varying_axes(cells, exclude=()):
    """The axes (in AXES order) that take more than one value in `cells`, less `exclude`."""
    return [a for a in AXES if a not in exclude and cells[a].nunique() > 1]


def format_value(axis, v):
    """An axis value as text: sparsities as short decimals, the rest as they are."""
    if axis == "sparsity":
        return f"{float(v):g}"
    return str(v)


def describe(row, axes):
    """`axis=value, ...` for the given axes of a cell row (a label for legends and notes)."""
    return ", ".join(f"{a}={format_value(a, row[a])}" for a in axes)


def cell_ranges(ids):
    """Cell ids as compact ranges: [0, 1, 2, 5] -> '0-2, 5'."""
    ids = sorted(int(i) for i in ids)
    out, i = [], 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        out.append(str(ids[i]) if i == j else f"{ids[i]}-{ids[j]}")
        i = j + 1
    return ", ".join(out)


class Store:
    """An open store: the root file's tables and readers of the node files' arrays.

    Use as a context manager, or call close(). `cells`, `metrics` and
    `failures` are the decoded tables; `tidy` the join of the first two
    (every cell, any status)."""

    def __init__(self, path):
        self.root = root_path(path)
        self.dir = os.path.dirname(os.path.abspath(self.root))
        try:
            self.file = h5py.File(self.root, "r")
        except OSError as e:
            raise StoreError(f"{self.root}: cannot open as HDF5: {e}") from e
        try:
            self.cells, self.metrics = _read_tables(self.file, self.root)
        except Exception:
            self.file.close()
            raise
        self.tidy = join(self.cells, self.metrics)
        # /failures (node, kind, message): the nodes that failed, with why; older stores lack it.
        self.failures = (_decode(pd.DataFrame(self.file["failures"][()])) if "failures" in self.file
                         else pd.DataFrame(columns=["node", "kind", "message"]))
        g = self.file["grid"].attrs if "grid" in self.file else {}
        self.name = str(g.get("name", os.path.basename(self.dir)))
        self.written = str(g.get("written", ""))

    def close(self):
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # Cells ------------------------------------------------------------

    def complete_cells(self):
        return self.cells[self.cells.status == "complete"].reset_index(drop=True)

    def incomplete_cells(self):
        return self.cells[self.cells.status != "complete"].reset_index(drop=True)

    def cell(self, cell_id):
        rows = self.cells[self.cells.cell_id == cell_id]
        if not len(rows):
            raise StoreError(f"{self.root}: no cell {cell_id} (cells are 0-{len(self.cells) - 1})")
        return rows.iloc[0]

    def attacks(self):
        """The attack names that have metrics in the store, sorted."""
        return sorted(a for a in self.metrics.attack.unique() if a)

    def metric_names(self, kind=None):
        """Metric names, sorted: kind 'model' (attack empty), 'attack', or None for both."""
        m = self.metrics
        if kind == "model":
            m = m[m.attack == ""]
        elif kind == "attack":
            m = m[m.attack != ""]
        return sorted(m.metric.unique())

    # Nodes ------------------------------------------------------------

    def node(self, key):
        """The h5py group of node `key` (through the root file's external link)."""
        try:
            return self.file["nodes/" + key]
        except KeyError as e:
            raise StoreError(f"{self.root}: node {key} is not in the store "
                             f"(no complete file nodes/{key}.h5)") from e

    def model_key(self, cell_id, role="target"):
        if role not in ("target", "shadow"):
            raise StoreError(f"unknown model role {role!r} (target or shadow)")
        return self.cell(cell_id)[role + "_model"]

    def attack_key(self, cell_id, attack):
        """The key of the attack node that attacked the cell's target model."""
        m = self.metrics
        rows = m[(m.cell_id == cell_id) & (m.model == "target") & (m.attack == attack)]
        if not len(rows):
            known = sorted(a for a in m[m.cell_id == cell_id].attack.unique() if a)
            raise StoreError(f"{self.root}: cell {cell_id} has no results of attack {attack!r} "
                             f"(it has: {', '.join(known) or 'none'})")
        return rows.node.iloc[0]

    def scores(self, cell_id, attack):
        """The attack's per-sample scores on the target: dict of score, is_member, sample_index."""
        g = self.node(self.attack_key(cell_id, attack))["scores"]
        return {k: g[k][()] for k in ("score", "is_member", "sample_index")}

    def roc(self, cell_id, attack):
        """The attack's ROC curve on the target model: (fpr, tpr) arrays."""
        g = self.node(self.attack_key(cell_id, attack))["roc"]
        return g["fpr"][()], g["tpr"][()]

    def outputs(self, cell_id, role="target"):
        """The model's outputs: {'member': {...}, 'nonmember': {...}}, each with
        logits (n, classes), labels (n,), sample_index (n,)."""
        g = self.node(self.model_key(cell_id, role))["outputs"]
        return {part: {k: g[part][k][()] for k in ("logits", "labels", "sample_index")}
                for part in ("member", "nonmember")}

    def node_history(self, key):
        """A train or prune node's per-epoch history: dict of loss, train_acc, seconds."""
        g = self.node(key)["history"]
        return {k: g[k][()] for k in g}

    def history(self, cell_id, role="target"):
        """The training history of the cell's model, oldest first: a list of
        (kind, key, history) with the dense training node first and, for a
        pruned model, the fine-tuning after pruning second."""
        key = self.model_key(cell_id, role)
        out = []
        while key:
            n = self.node(key)
            kind = n.attrs["kind"]
            out.append((kind, key, self.node_history(key)))
            key = json.loads(n.attrs["recipe"]).get("input") if kind == "prune" else None
        return out[::-1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store", help="store directory or its results.h5")
    ap.add_argument("--metric", default="balanced_acc", help="attack metric to show (default balanced_acc)")
    a = ap.parse_args(argv)
    try:
        table = summary(a.store, a.metric)
    except (StoreError, OSError, KeyError) as e:
        print(f"mgstore: {a.store}: {e}", file=sys.stderr)
        return 1
    with pd.option_context("display.width", 200, "display.max_columns", 50):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
