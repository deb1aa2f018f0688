#!/usr/bin/python3
"""Figures of a miagrid store (matplotlib, Agg backend; each written as PNG and PDF).

    analysis/mgplot.py STORE FIGURE OUT [options]      writes OUT.png and OUT.pdf

FIGURE is one of
  sparsity    an attack metric (--metric, default balanced_acc; --attack) against
              sparsity, one line per --lines axis (default: prune, defense or arch,
              whichever varies first), mean over seeds with a band of ± one sample
              standard deviation (no band with one seed), seeds as dots; one panel
              per value of the other varying axes. A model metric (test_acc, ...)
              works too, without --attack.
  tradeoff    privacy-utility scatter after Gonon et al. 2023 (Fig. 1): target test
              accuracy (%) against defense level D = 200 - 2A, A = the attack's
              balanced accuracy in %; --attack, default the strongest attack of each
              cell. One point per configuration, mean ± std over seeds as error bars,
              coloured by sparsity.
  roc         ROC curves of the attacks (--attack, default all) on log-log axes
              for --cells (default: the complete cells of the smallest seed).
  divergence  per-class Jensen-Shannon divergence between the member and
              non-member confidence of the target model (see mgdivergence.py for
              exactly what is computed); bars per sparsity, mean ± std over seeds,
              with the permutation level of identical distributions as a dashed line.
  history     training curves (history/loss, history/train_acc per epoch) of the
              target models of --cells (default: complete cells of the smallest seed):
              the dense training, then each pruned model's fine-tuning.

Only complete cells are drawn. Exit status: 0, 1 (store unreadable), 2 (bad
command line: unknown metric, attack, axis or cell is named with what exists).
"""
import argparse
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (the backend must be chosen first)
import numpy as np  # noqa: E402

import mgdivergence  # noqa: E402
import mgstore  # noqa: E402
import mgtable  # noqa: E402

FIGURES = ("sparsity", "tradeoff", "roc", "divergence", "history")

LABELS = {
    "balanced_acc": "balanced accuracy",
    "auc": "AUC",
    "advantage": "advantage (max TPR − FPR)",
    "tpr_at_1pct_fpr": "TPR at 1% FPR",
    "tpr_at_0.1pct_fpr": "TPR at 0.1% FPR",
    "test_acc": "test accuracy",
    "train_acc": "train accuracy",
    "gap": "train − test accuracy",
    "sparsity": "measured sparsity",
}
# What an attack that guesses at random scores.
CHANCE = {"balanced_acc": 0.5, "auc": 0.5, "advantage": 0.0, "tpr_at_1pct_fpr": 0.01, "tpr_at_0.1pct_fpr": 0.001}
CLASS_NAMES = {
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
}
LINE_AXES = ("prune", "defense", "arch", "dataset")


class PlotError(Exception):
    """A request the store cannot answer; the message is for the user."""


def save(fig, stem):
    """Write fig to stem.png (150 dpi) and stem.pdf, close it; return the two paths."""
    d = os.path.dirname(stem)
    if d:
        os.makedirs(d, exist_ok=True)
    paths = [stem + ".png", stem + ".pdf"]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
    plt.close(fig)
    return paths


def _groups(df, axes):
    """The sub-frames of df for each combination of `axes` values, sorted."""
    if not axes:
        return [df]
    return [sub for _, sub in df.groupby(axes[0] if len(axes) == 1 else list(axes), sort=True)]


def _facets(cells, exclude):
    """[(title, cells of the panel)] over the varying axes not in `exclude`."""
    axes = mgstore.varying_axes(cells, exclude)
    if not axes:
        return [("", cells)]
    return [(mgstore.describe(sub.iloc[0], axes), sub) for sub in _groups(cells, axes)]


def _panels(n, ncols=3, size=(5.0, 3.6)):
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axs = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows + 0.6),
                            squeeze=False, layout="constrained")
    flat = list(axs.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _metric_label(metric, attack):
    label = LABELS.get(metric, metric)
    return f"{attack} attack: {label}" if attack else label


def _need_cells(cells, what):
    if not len(cells):
        raise PlotError(f"{what}: no complete cell to draw")


def default_lines(cells):
    """The axis that gets one line each: the first of prune, defense, arch, dataset that varies."""
    for a in LINE_AXES:
        if cells[a].nunique() > 1:
            return a
    return "arch"


def default_cells(store):
    """The complete cells of the smallest seed."""
    c = store.complete_cells()
    return list(c[c.seed == c.seed.min()].cell_id) if len(c) else []


def _select_cells(store, cell_ids):
    known = set(store.cells.cell_id)
    bad = [c for c in cell_ids if c not in known]
    if bad:
        raise PlotError(f"unknown cell {bad[0]}; cells are {mgstore.cell_ranges(known)}")
    cells = store.cells[store.cells.cell_id.isin(cell_ids)]
    incomplete = cells[cells.status != "complete"]
    if len(incomplete):
        raise PlotError(f"cell {incomplete.cell_id.iloc[0]} is {incomplete.status.iloc[0]}, not complete; "
                        f"complete cells: {mgstore.cell_ranges(store.complete_cells().cell_id) or 'none'}")
    return cells.reset_index(drop=True)


def _complete_tidy(store):
    complete = store.complete_cells()
    return complete, mgstore.join(complete, store.metrics[store.metrics.cell_id.isin(complete.cell_id)])


def _as_plot_error(fn, *args, **kw):
    try:
        return fn(*args, **kw)
    except mgtable.TableError as e:
        raise PlotError(str(e)) from e


def fig_sparsity(store, metric="balanced_acc", attack=None, lines=None, model="target"):
    """Metric against sparsity: a line per `lines` value, a band of ± one std over seeds."""
    complete, tidy = _complete_tidy(store)
    _need_cells(complete, "sparsity figure")
    lines = lines or default_lines(complete)
    if lines not in LINE_AXES:
        raise PlotError(f"unknown line axis {lines!r}; line axes: {', '.join(LINE_AXES)}")
    if attack is None and metric in set(tidy[tidy.attack != ""].metric):
        attacks = sorted(a for a in tidy.attack.unique() if a)
        raise PlotError(f"{metric} is an attack metric: name one attack with --attack ({', '.join(attacks)})")
    panel_axes = mgstore.varying_axes(complete, exclude=(lines, "sparsity", "seed"))
    agg, _ = _as_plot_error(mgtable.aggregate, tidy, metric, [*panel_axes, lines, "sparsity"], attack, model)
    raw = tidy[(tidy.metric == metric) & (tidy.model == model) & (tidy.attack == (attack or ""))]
    facets = [("", agg)] if not panel_axes else [
        (mgstore.describe(sub.iloc[0], panel_axes), sub) for sub in _groups(agg, panel_axes)]
    fig, axs = _panels(len(facets), size=(6.4 if len(facets) == 1 else 5.0, 4.0))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    values = sorted(agg[lines].unique())
    one_seed = agg.n_seeds.max() <= 1
    for ax, (title, sub) in zip(axs, facets):
        for i, v in enumerate(values):
            s = sub[sub[lines] == v].sort_values("sparsity")
            if not len(s):
                continue
            col = colors[i % len(colors)]
            x, m, sd = s.sparsity.to_numpy(), s["mean"].to_numpy(), s["std"].to_numpy()
            ax.plot(x, m, "o-", color=col, label=mgstore.format_value(lines, v), zorder=3)
            ok = ~np.isnan(sd)
            if ok.any():
                ax.fill_between(x[ok], (m - sd)[ok], (m + sd)[ok], color=col, alpha=0.2, linewidth=0)
            r = raw[raw[lines] == v]
            for a in panel_axes:
                r = r[r[a] == s[a].iloc[0]]
            ax.plot(r.sparsity, r.value, ".", color=col, alpha=0.45, markersize=5, zorder=2)
        if metric in CHANCE and attack:
            ax.axhline(CHANCE[metric], color="gray", linestyle=":", linewidth=1, label="chance")
        ax.set_xticks(sorted(agg.sparsity.unique()))
        ax.set_xlabel("sparsity (fraction of prunable weights removed)")
        ax.set_ylabel(_metric_label(metric, attack))
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(title=lines, fontsize=8, title_fontsize=8)
    spread = "one seed" if one_seed else "mean ± 1 std over seeds (band), seeds as dots"
    fig.suptitle(f"{store.name}: {_metric_label(metric, attack)} of the {model} model\n{spread}", fontsize=11)
    return fig


def tradeoff_points(store, attack=None):
    """Per configuration (every axis but seed): mean and std over seeds of the
    defense level D = 200 - 2A (A = balanced accuracy of `attack` in %, or of
    the cell's strongest attack when None) and of the target test accuracy (%)."""
    complete, tidy = _complete_tidy(store)
    t = tidy[tidy.model == "target"]
    bacc = t[(t.metric == "balanced_acc") & (t.attack != "")]
    if attack is not None:
        known = sorted(bacc.attack.unique())
        if attack not in known:
            raise PlotError(f"unknown attack {attack!r}; attacks in this store: {', '.join(known)}")
        bacc = bacc[bacc.attack == attack]
    a = bacc.groupby("cell_id").value.max().rename("attack_bacc")
    acc = t[(t.metric == "test_acc") & (t.attack == "")].set_index("cell_id").value.rename("test_acc")
    per_cell = complete.set_index("cell_id")[list(mgstore.AXES)].join(a, how="inner").join(acc, how="inner")
    per_cell["D"] = 200.0 - 2.0 * 100.0 * per_cell.attack_bacc
    per_cell["acc"] = 100.0 * per_cell.test_acc
    keys = [x for x in mgstore.AXES if x != "seed"]
    g = per_cell.reset_index().groupby(keys, sort=True)
    out = g.agg(D_mean=("D", "mean"), D_std=("D", lambda v: v.std(ddof=1) if len(v) > 1 else math.nan),
                acc_mean=("acc", "mean"), acc_std=("acc", lambda v: v.std(ddof=1) if len(v) > 1 else math.nan),
                n_seeds=("seed", "nunique"))
    return out.reset_index()


def fig_tradeoff(store, attack=None):
    """Test accuracy against defense D = 200 - 2A, one point per configuration."""
    complete = store.complete_cells()
    _need_cells(complete, "trade-off figure")
    pts = tradeoff_points(store, attack)
    series_axes = mgstore.varying_axes(complete, exclude=("sparsity", "seed")) or ["arch"]
    fig, ax = plt.subplots(figsize=(7.5, 5.2), layout="constrained")
    markers = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "*"]
    norm = matplotlib.colors.Normalize(vmin=0.0, vmax=1.0)
    cmap = matplotlib.colormaps["viridis"]
    handles = []
    for i, s in enumerate(_groups(pts, series_axes)):
        s = s.sort_values("sparsity")
        label = mgstore.describe(s.iloc[0], series_axes)
        ax.plot(s.D_mean, s.acc_mean, "-", color="0.6", linewidth=1, zorder=1)
        ax.errorbar(s.D_mean, s.acc_mean, xerr=s.D_std.fillna(0), yerr=s.acc_std.fillna(0),
                    fmt="none", ecolor="0.5", elinewidth=1, capsize=2, zorder=2)
        marker = markers[i % len(markers)]
        ax.scatter(s.D_mean, s.acc_mean, c=cmap(norm(s.sparsity.to_numpy())), marker=marker,
                   s=60, edgecolors="black", linewidths=0.6, zorder=3)
        handles.append(matplotlib.lines.Line2D([], [], marker=marker, linestyle="", markerfacecolor="white",
                                               markeredgecolor="black", label=label))
        for _, r in s.iterrows():
            ax.annotate(f"{r.sparsity:g}", (r.D_mean, r.acc_mean), textcoords="offset points",
                        xytext=(6, 4), fontsize=8)
    sm = matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=ax, label="sparsity (fraction of weights removed)")
    ax.legend(handles=handles, fontsize=8, loc="best")
    ax.set_xlabel("defense level D = 200 − 2A (A = attack balanced accuracy, %; 100 = chance)")
    ax.set_ylabel("target test accuracy (%)")
    ax.grid(alpha=0.3)
    which = f"{attack} attack" if attack else "strongest attack of each cell"
    spread = "one seed" if pts.n_seeds.max() <= 1 else "mean ± 1 std over seeds"
    ax.set_title(f"{store.name}: privacy–utility ({which}; {spread})\nafter Gonon et al. 2023, Fig. 1",
                 fontsize=10)
    return fig


def fig_roc(store, cell_ids, attacks=None):
    """ROC curves (log-log) of `attacks` (default all) on the target models of `cell_ids`."""
    cells = _select_cells(store, cell_ids)
    _need_cells(cells, "ROC figure")
    known = store.attacks()
    attacks = attacks or known
    for a in attacks:
        if a not in known:
            raise PlotError(f"unknown attack {a!r}; attacks in this store: {', '.join(known)}")
    facets = _facets(cells, exclude=("sparsity", "seed"))
    fig, axs = _panels(len(facets), size=(5.0, 4.4))
    for ax, (title, sub) in zip(axs, facets):
        curve_axes = mgstore.varying_axes(sub)
        lo = 1.0
        for _, c in sub.sort_values(["sparsity", "seed"]).iterrows():
            for a in attacks:
                fpr, tpr = store.roc(int(c.cell_id), a)
                auc = store.metrics[(store.metrics.cell_id == c.cell_id) & (store.metrics.model == "target")
                                    & (store.metrics.attack == a) & (store.metrics.metric == "auc")].value
                parts = [mgstore.describe(c, curve_axes)] if curve_axes else []
                if len(attacks) > 1:
                    parts.append(a)
                if len(auc):
                    parts.append(f"AUC {auc.iloc[0]:.3f}")
                ok = (fpr > 0) & (tpr > 0)
                ax.plot(fpr[ok], tpr[ok], linewidth=1.3, label=", ".join(parts))
                pos = np.concatenate([fpr[fpr > 0], tpr[tpr > 0]])
                if len(pos):
                    lo = min(lo, pos.min())
        lo = 10 ** math.floor(math.log10(lo))
        ax.plot([lo, 1], [lo, 1], ":", color="gray", linewidth=1, label="chance")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, 1.05)
        ax.set_ylim(lo, 1.05)
        ax.set_xlabel("false positive rate (log)")
        ax.set_ylabel("true positive rate (log)")
        ax.set_title(title or store.name, fontsize=10)
        ax.grid(which="both", alpha=0.25)
        ax.legend(fontsize=7, loc="lower right")
    what = ", ".join(attacks)
    fig.suptitle(f"{store.name}: ROC of the {what} attack{'s' if len(attacks) > 1 else ''} on the target model",
                 fontsize=11)
    return fig


def fig_divergence(store, table, quantity="true"):
    """Bars of per-class JS divergence (mgdivergence.store_divergence `table`)."""
    if not len(table):
        raise PlotError("divergence figure: no complete cell to draw")
    cells = store.cells[store.cells.cell_id.isin(table.cell_id.unique())]
    facets = _facets(cells, exclude=("sparsity", "seed"))
    fig, axs = _panels(len(facets), ncols=2, size=(6.8, 3.8))
    sparsities = sorted(table.sparsity.unique())
    cmap = matplotlib.colormaps["viridis"]
    for ax, (title, sub) in zip(axs, facets):
        t = table[table.cell_id.isin(sub.cell_id)]
        g = t.groupby(["sparsity", "class"]).js
        mean = g.mean()
        std = g.agg(lambda v: v.std(ddof=1) if len(v) > 1 else math.nan)
        classes = sorted(t["class"].unique())
        width = 0.8 / len(sparsities)
        for i, s in enumerate(sparsities):
            if s not in mean.index.get_level_values(0):
                continue
            m = mean.loc[s].reindex(classes)
            sd = std.loc[s].reindex(classes)
            x = np.arange(len(classes)) + (i - (len(sparsities) - 1) / 2) * width
            ax.bar(x, m, width, yerr=None if sd.isna().all() else sd.fillna(0), capsize=2,
                   color=cmap(s / max(1e-9, max(sparsities)) * 0.85), edgecolor="black", linewidth=0.4,
                   label=f"{s:g}", error_kw={"elinewidth": 0.8})
        ax.axhline(t.js_null.mean(), color="black", linestyle="--", linewidth=1,
                   label="same-distribution level")
        ax.set_ylim(0, ax.get_ylim()[1] * 1.25)
        names = CLASS_NAMES.get(str(sub.dataset.iloc[0]))
        ax.set_xticks(np.arange(len(classes)))
        if names and len(names) > max(classes):
            ax.set_xticklabels([names[c] for c in classes], rotation=35, ha="right", fontsize=8)
        else:
            ax.set_xticklabels([str(c) for c in classes], fontsize=8)
            ax.set_xlabel("class")
        ax.set_ylabel("JS divergence (nats; max ln 2 ≈ 0.693)")
        ax.set_title(title or store.name, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(title="sparsity", fontsize=7, title_fontsize=8)
    conf = "true-class softmax probability" if quantity == "true" else "largest softmax probability"
    n_seeds = table.groupby(["sparsity", "class"]).seed.nunique().max()
    spread = "one seed" if n_seeds <= 1 else "mean ± 1 std over seeds"
    fig.suptitle(f"{store.name}: per-class member/non-member divergence of the {conf}\n"
                 f"(target model; {spread}; dashed: mean over random member/non-member relabellings)",
                 fontsize=11)
    return fig


def fig_history(store, cell_ids, role="target"):
    """Loss and training accuracy per epoch: dense training, then each pruned model's fine-tuning."""
    cells = _select_cells(store, cell_ids)
    _need_cells(cells, "history figure")
    facets = _facets(cells, exclude=("sparsity", "seed"))
    fig, axs = plt.subplots(len(facets), 2, figsize=(11, 3.6 * len(facets) + 0.6), squeeze=False,
                            layout="constrained")
    sparsities = sorted(cells.sparsity.unique())
    cmap = matplotlib.colormaps["viridis"]
    styles = ["-", "--", "-.", ":"]
    for row, (title, sub) in enumerate(facets):
        seeds = sorted(sub.seed.unique())
        drawn, pruned_at = set(), set()
        for _, c in sub.sort_values(["seed", "sparsity"]).iterrows():
            segs = store.history(int(c.cell_id), role)
            dense_key, dense = segs[0][1], segs[0][2]
            n_dense = len(dense["loss"])
            seed_txt = f" (seed {c.seed})" if len(seeds) > 1 else ""
            ls = styles[seeds.index(c.seed) % len(styles)]
            for col, key in enumerate(("loss", "train_acc")):
                ax = axs[row][col]
                if dense_key not in drawn:
                    ax.plot(np.arange(1, n_dense + 1), dense[key], ls, color="black", linewidth=1.4,
                            label=f"dense training{seed_txt}")
                for _, _, h in segs[1:]:
                    n_ft = len(h[key])
                    x = np.arange(n_dense, n_dense + n_ft + 1)
                    y = np.concatenate([[dense[key][-1]], h[key]])
                    col_s = cmap(c.sparsity / max(1e-9, max(sparsities)) * 0.85)
                    ax.plot(x, y, ls, marker=".", color=col_s, linewidth=1.4,
                            label=f"fine-tuning at sparsity {c.sparsity:g}{seed_txt}")
                    if (n_dense, col) not in pruned_at:
                        ax.axvline(n_dense + 0.5, color="gray", linestyle=":", linewidth=1)
                        pruned_at.add((n_dense, col))
            drawn.add(dense_key)
        for col, key in enumerate(("loss", "train_acc")):
            ax = axs[row][col]
            ax.set_xlabel("epoch (dotted line: pruning, then fine-tuning)")
            ax.set_ylabel("training loss (mean cross-entropy)" if key == "loss" else "training accuracy")
            ax.set_title(title or store.name, fontsize=10)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle(f"{store.name}: training curves of the {role} models", fontsize=11)
    return fig


def main(argv=None):
    ap = argparse.ArgumentParser(prog="mgplot.py", description=__doc__.splitlines()[0],
                                 epilog="FIGURE: " + ", ".join(FIGURES))
    ap.add_argument("store", help="store directory or its results.h5")
    ap.add_argument("figure", help=" | ".join(FIGURES))
    ap.add_argument("out", help="output path without extension (OUT.png and OUT.pdf are written)")
    ap.add_argument("--metric", default="balanced_acc", help="sparsity: the metric (default balanced_acc)")
    ap.add_argument("--attack", nargs="*", help="the attack (roc: one or more; default all / strongest)")
    ap.add_argument("--lines", help=f"sparsity: the axis with one line per value ({', '.join(LINE_AXES)})")
    ap.add_argument("--model", default="target", help="sparsity: target (default) or shadow")
    ap.add_argument("--cells", nargs="+", type=int, help="roc, divergence, history: cell ids")
    ap.add_argument("--quantity", default="true", help="divergence: true (default) or max")
    ap.add_argument("--bins", type=int, default=10, help="divergence: equal-mass bins (default 10)")
    a = ap.parse_args(argv)
    attack = a.attack[0] if a.attack and a.figure != "roc" else None
    try:
        if a.figure not in FIGURES:
            raise PlotError(f"unknown figure {a.figure!r}; figures: {', '.join(FIGURES)}")
        if a.attack and len(a.attack) > 1 and a.figure != "roc":
            raise PlotError(f"{a.figure}: one --attack only (several are for roc)")
        if a.quantity not in mgdivergence.QUANTITIES:
            raise PlotError(f"unknown --quantity {a.quantity!r}; known: {', '.join(mgdivergence.QUANTITIES)}")
        with mgstore.Store(a.store) as s:
            if a.figure == "sparsity":
                fig = fig_sparsity(s, a.metric, attack, a.lines, a.model)
            elif a.figure == "tradeoff":
                fig = fig_tradeoff(s, attack)
            elif a.figure == "roc":
                fig = fig_roc(s, a.cells or default_cells(s), a.attack)
            elif a.figure == "divergence":
                ids = a.cells or list(s.complete_cells().cell_id)
                _select_cells(s, ids)
                fig = fig_divergence(s, mgdivergence.store_divergence(s, ids, a.quantity, a.bins), a.quantity)
            else:
                fig = fig_history(s, a.cells or default_cells(s))
            paths = save(fig, a.out)
    except PlotError as e:
        print(f"mgplot: {e}", file=sys.stderr)
        return 2
    except (mgstore.StoreError, OSError) as e:
        print(f"mgplot: {e}", file=sys.stderr)
        return 1
    print("\n".join(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
