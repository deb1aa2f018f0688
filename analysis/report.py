#!/usr/bin/python3
"""Write every table and figure of a miagrid store into one folder.

    analysis/report.py STORE OUTDIR

OUTDIR gets index.md (lists and shows everything, and notes what was
skipped and the node failures the store records), cells.csv (every cell with its status and main metrics),
tables/<metric>.{csv,md,tex} (mean ± std over seeds per configuration, see
mgtable.py), tables/tradeoff.csv, tables/divergence.csv and
tables/divergence_summary.{csv,md}, and figures/<name>.{png,pdf} (see
mgplot.py). Cells that are not complete (pending, failed, skipped) are left
out and listed in index.md. With one seed there is no spread to show: std
is blank and the figures have no bands.

Exit status: 0 when the report is written (even if no cell is complete:
index.md says so), 1 when the store cannot be read or OUTDIR written.
"""
import argparse
import datetime
import math
import os
import sys

import mgdivergence
import mgplot
import mgstore
import mgtable

MODEL_METRICS = {
    "test_acc": "accuracy of the target model on its non-members",
    "train_acc": "accuracy of the target model on its members",
    "gap": "train − test accuracy of the target model",
    "sparsity": "fraction of the target model's prunable weights masked (measured)",
    "selected_sparsity": "the candidate sparsity MIA-Pruning's selection kept (selecting cells only)",
    "selection_gain": "the attack gain on the shadow models at the kept sparsity (−log 4 = −1.386 is a coin)",
}
ATTACK_METRICS = {
    "balanced_acc": "attack balanced accuracy on the target model (0.5 = chance)",
    "auc": "area under the attack's ROC curve on the target model",
    "advantage": "attack advantage, max over thresholds of TPR − FPR",
    "tpr_at_1pct_fpr": "attack true positive rate at 1 % false positive rate",
    "tpr_at_0.1pct_fpr": "attack true positive rate at 0.1 % false positive rate",
}
SPARSITY_FIGURE_METRICS = ("balanced_acc", "tpr_at_1pct_fpr", "auc")
# Up to this many cells that are not complete are listed one by one in index.md.
MAX_LISTED = 20


def markdown_frame(df, digits=3):
    """A DataFrame as a Markdown table, floats rounded to `digits` decimals, NaN blank."""
    def text(c, v):
        if isinstance(v, float):
            if math.isnan(v):
                return ""
            return mgstore.format_value(c, v) if c in mgstore.AXES else mgtable.number(v, digits)
        return str(v)
    lines = ["| " + " | ".join(df.columns) + " |", "| " + " | ".join("---" for _ in df.columns) + " |"]
    for r in df.to_dict("records"):
        lines.append("| " + " | ".join(text(c, r[c]) for c in df.columns) + " |")
    return "\n".join(lines) + "\n"


class Report:
    """Collects the files written and the index's sections."""

    def __init__(self, outdir):
        self.outdir = outdir
        self.files = []
        self.notes = []
        self.tables = []   # markdown chunks
        self.figures = []  # markdown chunks

    def write(self, rel, text):
        path = os.path.join(self.outdir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        self.files.append(rel)
        return rel


def _cells_csv(store):
    cells = store.cells[["cell_id", *mgstore.AXES, "status", "target_model", "shadow_model"]]
    m = store.metrics[store.metrics.model == "target"]
    own = m[(m.attack == "") & m.metric.isin(["train_acc", "test_acc"])].pivot(
        index="cell_id", columns="metric", values="value")
    att = m[(m.attack != "") & (m.metric == "balanced_acc")].pivot(
        index="cell_id", columns="attack", values="value").add_suffix("_balanced_acc")
    return cells.set_index("cell_id").join(own).join(att).reset_index().to_csv(index=False)


def _tables(rep, complete, tidy, digits):
    by = mgstore.varying_axes(complete, exclude=("seed",))
    present = set(tidy.metric.unique())
    for metric, what in [*MODEL_METRICS.items(), *ATTACK_METRICS.items()]:
        if metric not in present:
            continue
        table, _ = mgtable.aggregate(tidy, metric, by)
        md = mgtable.format_table(table, "markdown", metric, digits)
        files = [rep.write(f"tables/{metric}.{ext}", mgtable.format_table(table, fmt, metric, digits))
                 for ext, fmt in (("csv", "csv"), ("md", "markdown"), ("tex", "latex"))]
        links = " · ".join(f"[{f.rsplit('.', 1)[1]}]({f})" for f in files)
        rep.tables.append(f"### `{metric}`: {what}\n\n{md}\n{links}\n")


def _figure(rep, name, caption, make):
    try:
        fig = make()
    except (mgplot.PlotError, mgstore.StoreError) as e:
        rep.notes.append(f"figure `{name}` not drawn: {e}")
        return
    paths = mgplot.save(fig, os.path.join(rep.outdir, "figures", name))
    png, pdf = (os.path.relpath(p, rep.outdir) for p in paths)
    rep.files += [png, pdf]
    rep.figures.append(f"### {caption}\n\n![{caption}]({png})\n\n[PNG]({png}) · [PDF]({pdf})\n")


def _divergence(rep, store, complete, quantity, bins):
    table = mgdivergence.store_divergence(store, list(complete.cell_id), quantity, bins)
    f = rep.write("tables/divergence.csv", table.to_csv(index=False))
    config = [a for a in mgstore.AXES if a != "seed"]
    per_class = table.groupby([*config, "class"], sort=True).agg(js=("js", "mean"), js_null=("js_null", "mean"))
    per_cell = table.groupby(["cell_id", *config], sort=True).js.mean()
    per_cell_std = per_cell.groupby(config).agg(lambda v: v.std(ddof=1) if len(v) > 1 else math.nan)
    summary = per_class.groupby(config).agg(js_class_mean=("js", "mean"), js_null=("js_null", "mean"))
    summary["js_class_mean_std"] = per_cell_std
    top = per_class.js.groupby(config).idxmax().map(lambda k: k[-1])
    summary["most_divergent_class"] = top
    summary["js_most_divergent"] = per_class.js.groupby(config).max()
    summary["n_seeds"] = table.groupby(config).seed.nunique()
    shown = mgstore.varying_axes(complete, exclude=("seed",))
    summary = summary.reset_index()[[*shown, "js_class_mean", "js_class_mean_std", "js_null",
                                     "most_divergent_class", "js_most_divergent", "n_seeds"]]
    names = mgplot.CLASS_NAMES.get(str(complete.dataset.iloc[0])) if complete.dataset.nunique() == 1 else None
    if names:
        summary["most_divergent_class"] = summary.most_divergent_class.map(
            lambda c: f"{c} ({names[c]})" if c < len(names) else str(c))
    md = markdown_frame(summary, 4)
    g = [rep.write("tables/divergence_summary.csv", summary.to_csv(index=False)),
         rep.write("tables/divergence_summary.md", md)]
    conf = "true-class softmax probability" if quantity == "true" else "largest softmax probability"
    rep.tables.append(
        f"### Per-class member/non-member divergence (target model)\n\n"
        f"Jensen–Shannon divergence in nats (0 = identical, ln 2 ≈ 0.693 = disjoint) between the members' "
        f"and the non-members' {conf}, per class, from {bins} equal-mass bins of the pooled values; "
        f"`js_null` is the mean divergence of random member/non-member relabellings (what identical "
        f"distributions give with these sample sizes). `js_class_mean` averages the classes, then the seeds "
        f"(`js_class_mean_std`: sample std over seeds); `most_divergent_class` has the largest seed-mean "
        f"divergence, `js_most_divergent`. Exact definition: `analysis/mgdivergence.py`.\n\n{md}\n"
        f"[per cell and class (csv)]({f}) · [summary csv]({g[0]}) · [summary md]({g[1]})\n")
    return table


def build(store_path, outdir, quantity="true", bins=10, digits=3):
    """Write the report of the store at `store_path` into `outdir`; return the Report."""
    rep = Report(outdir)
    os.makedirs(outdir, exist_ok=True)
    with mgstore.Store(store_path) as store:
        cells = store.cells
        complete = store.complete_cells()
        tidy = mgstore.join(complete, store.metrics[store.metrics.cell_id.isin(complete.cell_id)])
        shown = mgstore.varying_axes(cells, exclude=())
        bad = store.incomplete_cells()
        if len(bad) <= MAX_LISTED:
            for _, c in bad.iterrows():
                rep.notes.append(f"cell {c.cell_id} ({mgstore.describe(c, shown)}) is **{c.status}**: left out")
        else:
            for status, sub in bad.groupby("status", sort=True):
                rep.notes.append(f"{len(sub)} cells are **{status}** and left out: "
                                 f"cells {mgstore.cell_ranges(sub.cell_id)} (see cells.csv)")
        fails = store.failures
        for msg in fails.message.head(MAX_LISTED):
            rep.notes.append(f"node failure recorded in the store: {msg}")
        if len(fails) > MAX_LISTED:
            rep.notes.append(f"... and {len(fails) - MAX_LISTED} more node failures (the /failures table of "
                             f"{store.root})")
        rep.write("cells.csv", _cells_csv(store))
        if len(complete):
            _tables(rep, complete, tidy, digits)
            _figure(rep, "sparsity_test_acc", "Target test accuracy against sparsity",
                    lambda: mgplot.fig_sparsity(store, "test_acc"))
            present = set(tidy.metric.unique())
            for attack in store.attacks():
                for metric in SPARSITY_FIGURE_METRICS:
                    if metric in present:
                        _figure(rep, f"sparsity_{metric}_{attack}",
                                f"{attack} attack: {mgplot.LABELS[metric]} against sparsity",
                                lambda m=metric, a=attack: mgplot.fig_sparsity(store, m, a))
            pts = None
            try:
                pts = mgplot.tradeoff_points(store)
            except mgplot.PlotError as e:
                rep.notes.append(f"trade-off table not written: {e}")
            if pts is not None:
                f = rep.write("tables/tradeoff.csv", pts.to_csv(index=False))
                rep.tables.append(
                    "### Privacy–utility points\n\nPer configuration: defense level D = 200 − 2A "
                    "(A = balanced accuracy in % of the cell's strongest attack; Gonon et al. 2023) and "
                    f"target test accuracy in %, mean and sample std over seeds: [csv]({f})\n")
            _figure(rep, "tradeoff", "Privacy–utility: test accuracy against defense level D = 200 − 2A "
                    "(strongest attack of each cell)", lambda: mgplot.fig_tradeoff(store))
            first = mgplot.default_cells(store)
            seed = int(complete.seed.min())
            for attack in store.attacks():
                _figure(rep, f"roc_{attack}", f"ROC of the {attack} attack, log-log (seed {seed})",
                        lambda a=attack: mgplot.fig_roc(store, first, [a]))
            try:
                div = _divergence(rep, store, complete, quantity, bins)
            except mgstore.StoreError as e:
                rep.notes.append(f"divergence not computed: {e}")
                div = None
            if div is not None:
                _figure(rep, "divergence", "Per-class member/non-member divergence (Jensen–Shannon, nats)",
                        lambda: mgplot.fig_divergence(store, div, quantity))
            _figure(rep, "history", f"Training curves of the target models (seed {seed})",
                    lambda: mgplot.fig_history(store, first))
        else:
            rep.notes.append("no cell is complete: there is nothing to tabulate or draw")
        index = _index(rep, store, complete)
    rep.write("index.md", index)
    return rep


def _index(rep, store, complete):
    cells = store.cells
    counts = ", ".join(f"{n} {s}" for s, n in cells.status.value_counts().sort_index().items())
    seeds = sorted(complete.seed.unique()) if len(complete) else []
    out = [f"# miagrid report: {store.name}", "",
           f"Store `{store.root}` (root file written {store.written or 'at an unknown time'}); "
           f"{len(cells)} cells: {counts}. Report written "
           f"{datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')} by `analysis/report.py`.",
           "",
           f"Only complete cells are used. Seeds: {', '.join(map(str, seeds)) or 'none'}. "
           "Mean ± std is the mean and the sample standard deviation (ddof = 1) over the seeds of "
           "a configuration" + (" (one seed here: no std, no bands)." if len(seeds) == 1 else "."),
           "", "[All cells with their status (csv)](cells.csv)", ""]
    if rep.notes:
        out += ["## Notes", ""] + [f"- {n}" for n in rep.notes] + [""]
    if rep.tables:
        out += ["## Tables", ""] + rep.tables
    if rep.figures:
        out += ["## Figures", ""] + rep.figures
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="report.py", description=__doc__.splitlines()[0])
    ap.add_argument("store", help="store directory or its results.h5")
    ap.add_argument("outdir", help="folder to write (created; existing files of the same names are replaced)")
    ap.add_argument("--quantity", default="true", choices=mgdivergence.QUANTITIES,
                    help="confidence for the divergence: true-class (default) or max softmax probability")
    ap.add_argument("--bins", type=int, default=10, help="equal-mass bins for the divergence (default 10)")
    ap.add_argument("--digits", type=int, default=3, help="decimals in Markdown and LaTeX tables (default 3)")
    a = ap.parse_args(argv)
    try:
        rep = build(a.store, a.outdir, a.quantity, a.bins, a.digits)
    except (mgstore.StoreError, OSError) as e:
        print(f"report: {e}", file=sys.stderr)
        return 1
    for n in rep.notes:
        print(f"report: note: {n}", file=sys.stderr)
    print(f"{os.path.join(a.outdir, 'index.md')}: {len(rep.files)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
