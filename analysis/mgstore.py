#!/usr/bin/env python3
"""Read a miagrid store into pandas.

    import mgstore
    cells, metrics = mgstore.load("runs/quickstart/results.h5")
    tidy = mgstore.tidy("runs/quickstart/results.h5")   # metrics joined with cell axes

As a command: `python3 analysis/mgstore.py STORE [--metric balanced_acc]`
prints, per cell, the target's accuracies and each attack's metric.
"""
import argparse
import sys

import h5py
import pandas as pd


def _decode(df):
    for c in df.columns:
        if df[c].dtype == object or df[c].dtype.kind == "S":
            df[c] = df[c].map(lambda v: v.decode("utf-8") if isinstance(v, bytes) else v)
    return df


def load(path):
    """The /cells and /metrics tables of a store's root file as DataFrames."""
    if not path.endswith(".h5"):
        path = path.rstrip("/") + "/results.h5"
    with h5py.File(path, "r") as f:
        cells = _decode(pd.DataFrame(f["cells"][()]))
        metrics = _decode(pd.DataFrame(f["metrics"][()]))
    return cells, metrics


def tidy(path):
    """One row per cell x model x attack x metric, with the cell's axes."""
    cells, metrics = load(path)
    axes = cells[["cell_id", "dataset", "arch", "prune", "sparsity", "defense", "seed", "status"]]
    return metrics.merge(axes, on="cell_id", how="left")


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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store", help="store directory or its results.h5")
    ap.add_argument("--metric", default="balanced_acc", help="attack metric to show (default balanced_acc)")
    a = ap.parse_args(argv)
    try:
        table = summary(a.store, a.metric)
    except (OSError, KeyError) as e:
        print(f"mgstore: {a.store}: {e}", file=sys.stderr)
        return 1
    with pd.option_context("display.width", 200, "display.max_columns", 50):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
