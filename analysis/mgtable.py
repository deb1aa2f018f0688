#!/usr/bin/python3
"""Tabulate one metric of a miagrid store, grouped by axes, mean ± std over seeds.

    analysis/mgtable.py STORE --metric balanced_acc --attack conf --by arch sparsity --format markdown

Only complete cells enter the table; the others are named on stderr. Each
row is one group of cells (one value of each --by axis); `mean` and `std`
are over the group's cells: the sample mean and the sample standard
deviation (ddof = 1, undefined for a single value). `n_seeds` counts the
distinct seeds in the group. When the group also pools cells that differ on
an axis left out of --by (so it holds more cells than seeds), an `n_cells`
column is added and stderr names those axes.

An attack metric without --attack is tabulated per attack (the column
`attack` is added to the groups). --model shadow gives the attack's numbers
on the shadow model it was fitted on, and the shadow model's own metrics.

Exit status: 0 on success, 1 when the store cannot be read, 2 for a bad
command line (an unknown metric, axis, attack or model is named with the
accepted values).
"""
import argparse
import math
import sys

import mgstore

# What a group may be formed on: the cell axes, plus the attack and the model.
GROUPABLE = (*mgstore.AXES, "attack", "model")
FORMATS = ("csv", "markdown", "latex")


class TableError(Exception):
    """A request the store cannot answer (unknown metric, axis, ...); the message is for the user."""


def _check_known(what, given, known, plural=None):
    if given not in known:
        raise TableError(f"unknown {what} {given!r}; {plural or what + 's'}: {', '.join(map(str, known))}")


def aggregate(tidy, metric, by=(), attack=None, model="target"):
    """Group the rows of `tidy` (mgstore.tidy of complete cells) for `metric`.

    by: axes to group on (GROUPABLE). attack: one attack name, or None for
    every attack (then 'attack' joins the groups unless in `by` already);
    must be None for a model metric. model: 'target' or 'shadow'.
    Returns a DataFrame with the group columns, then mean, std (ddof 1,
    NaN for one value), n_seeds, n_cells; and the list of axes that vary
    inside some group other than seed."""
    model_metrics = sorted(tidy[tidy.attack == ""].metric.unique())
    attack_metrics = sorted(tidy[tidy.attack != ""].metric.unique())
    if metric not in model_metrics and metric not in attack_metrics:
        if not len(tidy):
            raise TableError(f"no metric {metric!r}: the store has no complete cell")
        raise TableError(f"unknown metric {metric!r}; model metrics: {', '.join(model_metrics)}; "
                         f"attack metrics: {', '.join(attack_metrics)}")
    by = list(by)
    for a in by:
        _check_known("axis", a, GROUPABLE, "axes")
    if len(set(by)) != len(by):
        raise TableError(f"an axis is named twice in --by: {' '.join(by)}")
    _check_known("model", model, sorted(tidy.model.unique()), "models in this store")
    is_attack_metric = metric in attack_metrics
    sel = tidy[(tidy.metric == metric) & (tidy.model == model)]
    if is_attack_metric:
        sel = sel[sel.attack != ""]
        if attack is not None:
            _check_known("attack", attack, sorted(sel.attack.unique()), f"attacks with {metric} in this store")
            sel = sel[sel.attack == attack]
        elif "attack" not in by:
            by.append("attack")
    else:
        if attack is not None:
            raise TableError(f"{metric} is a metric of the model itself, not of an attack: drop --attack "
                             f"(attack metrics: {', '.join(attack_metrics)})")
        sel = sel[sel.attack == ""]
    keys = by if by else ["_all"]
    sel = sel.assign(_all="all")
    g = sel.groupby(keys, sort=True)
    out = g.value.agg(mean="mean", std=lambda v: v.std(ddof=1) if len(v) > 1 else math.nan,
                      n_cells="count")
    out["n_seeds"] = g.seed.nunique()
    out = out.reset_index()[[*by, "mean", "std", "n_seeds", "n_cells"]]
    pooled = [a for a in mgstore.AXES
              if a not in by and a != "seed" and (g[a].nunique() > 1).any()]
    return out, pooled


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _tex_escape(text):
    return "".join(_TEX.get(ch, ch) for ch in text)


def number(v, digits):
    """v rounded to `digits` decimals as text; '' for NaN or None."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    t = f"{v:.{digits}f}"
    # A value that rounds to zero is shown without a sign ("-0.000" reads as a result).
    return t.lstrip("-") if float(t) == 0 else t


def _cell_text(col, v):
    return mgstore.format_value(col, v) if col in mgstore.AXES else str(v)


def format_table(table, fmt, metric, digits=3, caption=""):
    """The aggregated table as text: 'csv' (full precision), 'markdown' or 'latex'
    (mean ± std rounded to `digits` decimals)."""
    show_cells = (table.n_cells != table.n_seeds).any()
    groups = [c for c in table.columns if c not in ("mean", "std", "n_seeds", "n_cells")]
    if fmt == "csv":
        cols = [*groups, "mean", "std", "n_seeds"] + (["n_cells"] if show_cells else [])
        return table[cols].to_csv(index=False, na_rep="")
    head = [*groups, f"{metric} (mean ± std)", "seeds"] + (["cells"] if show_cells else [])
    rows = []
    for r in table.to_dict("records"):
        value = (number(r["mean"], digits), number(r["std"], digits))
        rows.append(([_cell_text(c, r[c]) for c in groups], value, [str(int(r["n_seeds"]))]
                     + ([str(int(r["n_cells"]))] if show_cells else [])))
    if fmt == "markdown":
        def line(cells):
            return "| " + " | ".join(cells) + " |"
        numeric = {c for c in groups if c in ("sparsity", "seed")}
        align = [("---:" if c in numeric else ":---") for c in groups] + ["---:"] * (len(head) - len(groups))
        out = ([f"{caption}", ""] if caption else []) + [line(head), line(align)]
        for g, (m, s), n in rows:
            out.append(line([*g, f"{m} ± {s}" if s else m, *n]))
        return "\n".join(out) + "\n"
    if fmt == "latex":
        spec = "l" * len(groups) + "r" * (len(head) - len(groups))
        head_tex = [_tex_escape(h).replace("±", r"$\pm$") for h in head]
        out = ["% needs \\usepackage{booktabs}"]
        if caption:
            out.append(f"% {caption}")
        out += [f"\\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(head_tex) + r" \\", r"\midrule"]
        for g, (m, s), n in rows:
            value = f"${m} \\pm {s}$" if s else f"${m}$"
            out.append(" & ".join([*map(_tex_escape, g), value, *n]) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}"]
        return "\n".join(out) + "\n"
    raise TableError(f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}")


def skipped_note(cells):
    """A sentence naming the cells that are not complete, or '' when all are."""
    bad = cells[cells.status != "complete"]
    if not len(bad):
        return ""
    counts = ", ".join(f"{n} {s}" for s, n in bad.status.value_counts().sort_index().items())
    return f"skipped {len(bad)} of {len(cells)} cells that are not complete ({counts}): cells {mgstore.cell_ranges(bad.cell_id)}"


def main(argv=None):
    ap = argparse.ArgumentParser(prog="mgtable.py", description=__doc__.splitlines()[0])
    ap.add_argument("store", help="store directory or its results.h5")
    ap.add_argument("--metric", required=True, help="e.g. balanced_acc, auc, tpr_at_1pct_fpr, test_acc")
    ap.add_argument("--attack", help="one attack (default: every attack, one group each)")
    ap.add_argument("--by", nargs="*", default=None, metavar="AXIS",
                    help=f"axes to group on, among {', '.join(GROUPABLE)} "
                         "(default: the cell axes that vary in the store, seed excepted)")
    ap.add_argument("--model", default="target", help="target (default) or shadow")
    ap.add_argument("--format", default="markdown", help=f"{', '.join(FORMATS)} (default markdown)")
    ap.add_argument("--digits", type=int, default=3, help="decimals for markdown and latex (default 3)")
    ap.add_argument("--out", help="write here instead of stdout")
    a = ap.parse_args(argv)
    try:
        if a.format not in FORMATS:
            raise TableError(f"unknown format {a.format!r}; formats: {', '.join(FORMATS)}")
        cells, metrics = mgstore.load(a.store)
    except TableError as e:
        print(f"mgtable: {e}", file=sys.stderr)
        return 2
    except (mgstore.StoreError, OSError) as e:
        print(f"mgtable: {e}", file=sys.stderr)
        return 1
    complete = cells[cells.status == "complete"]
    tidy = mgstore.join(complete, metrics[metrics.cell_id.isin(complete.cell_id)])
    by = a.by if a.by is not None else mgstore.varying_axes(complete, exclude=("seed",))
    try:
        table, pooled = aggregate(tidy, a.metric, by, a.attack, a.model)
        text = format_table(table, a.format, a.metric, a.digits)
    except TableError as e:
        print(f"mgtable: {e}", file=sys.stderr)
        return 2
    note = skipped_note(cells)
    if note:
        print(f"mgtable: {note}", file=sys.stderr)
    if pooled:
        print(f"mgtable: groups pool cells that differ on {', '.join(pooled)} (not in --by)", file=sys.stderr)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
