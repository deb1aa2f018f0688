#!/usr/bin/python3
"""Compare the defenses of a store: privacy gained against accuracy and time spent.

    analysis/mgdefense.py runs/defenses --sparsity 0.6 --format markdown

One row per defense (the cells of the given sparsity; every sparsity when
none is given, one block each), mean ± std over the seeds of:

- test accuracy of the target model, and its change from `none`'s;
- the strongest attack: per cell the highest balanced accuracy of any
  attack on the target, and its change from `none`'s (the column names
  the attack that was strongest in most cells);
- the highest TPR at 1 % FPR of any attack;
- epsilon, for DP-SGD;
- time: the target's training time in seconds over its whole pruning chain
  (dense training excluded, every fine-tuning round included; the dense
  training alone for sparsity 0), and the part of it spent inside the
  defense's own computations.

Cells are grouped by defense name and phase; when other axes vary (datasets,
architectures, pruning methods), rows are formed per value of each too.
Only complete cells enter. A store without a `none` defense gets no change
columns. Exit status: 0, 1 (store unreadable), 2 (bad command line).
"""
import argparse
import json
import math
import sys

import mgstore
import pandas as pd
from mgtable import number

FORMATS = ("markdown", "csv")


def _defense_label(d):
    name = d["name"]
    return name if name == "none" or d.get("phase") in (None, _default_phase(name)) else f"{name} ({d['phase']})"


def _labels(defenses):
    """A short label per distinct defense (JSON text): its name, its phase
    when not the default, and, when two defenses would share a label, the
    parameters that tell them apart."""
    parsed = {t: json.loads(t) for t in set(defenses)}
    short = {t: _defense_label(d) for t, d in parsed.items()}
    out = {}
    for t, d in parsed.items():
        twins = [parsed[u] for u in parsed if u != t and short[u] == short[t]]
        if not twins:
            out[t] = short[t]
            continue
        differ = sorted(k for k in d if k not in ("name", "phase") and any(w.get(k) != d[k] for w in twins))
        extra = ", ".join(f"{k}: {d[k]}" for k in differ)
        out[t] = f"{short[t]} {{{extra}}}"
    return out


def _default_phase(name):
    return "prune" if name in ("ppb", "rsw", "rmr", "swmr") else "both"


def _chain_seconds(store, key):
    """Training and defense seconds of a model over its pruning chain."""
    train = defense = 0.0
    while True:
        node = store.node(key)
        m = node["metrics"].attrs
        train += float(m.get("train_seconds", math.nan))
        defense += float(m.get("defense_seconds", 0.0))
        recipe = json.loads(node.attrs["recipe"])
        if recipe.get("kind") != "prune" or "input" not in recipe:
            return train, defense
        up = json.loads(store.node(recipe["input"]).attrs["recipe"])
        if up.get("kind") != "prune":
            return train, defense
        key = recipe["input"]


def per_cell(store):
    """One row per complete cell: its axes and the compared quantities."""
    cells = store.complete_cells()
    t = store.tidy
    t = t[(t.model == "target")]
    rows = []
    texts = [json.dumps(json.loads(a)["defense"], sort_keys=True) for a in cells["axes"]]
    labels = _labels(texts)
    for (_, c), text in zip(cells.iterrows(), texts):
        sub = t[t.cell_id == c.cell_id]
        model = sub[sub.attack == ""].set_index("metric").value
        ba = sub[(sub.attack != "") & (sub.metric == "balanced_acc")]
        tpr = sub[(sub.attack != "") & (sub.metric == "tpr_at_1pct_fpr")]
        best = ba.loc[ba.value.idxmax()] if len(ba) else None
        train, defense = _chain_seconds(store, c.target_model)
        rows.append({
            "cell_id": c.cell_id,
            "dataset": c.dataset, "arch": c.arch, "prune": c.prune, "sparsity": c.sparsity, "seed": c.seed,
            "defense": labels[text],
            "test_acc": model.get("test_acc", math.nan),
            "attack_acc": best.value if best is not None else math.nan,
            "attack": best.attack if best is not None else "",
            "tpr_1pct": tpr.value.max() if len(tpr) else math.nan,
            "epsilon": model.get("epsilon", math.nan),
            "seconds": train,
            "defense_seconds": defense,
        })
    return pd.DataFrame(rows)


def _ms(v):
    v = [x for x in v if not (isinstance(x, float) and math.isnan(x))]
    if not v:
        return math.nan, math.nan
    m = sum(v) / len(v)
    s = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else math.nan
    return m, s


def compare(df):
    """The table: one row per (group axes, defense), with changes from none."""
    group_axes = [a for a in ("dataset", "arch", "prune", "sparsity") if df[a].nunique() > 1 or a == "sparsity"]
    out = []
    for keys, g in df.groupby(group_axes if len(group_axes) > 1 else group_axes[0], sort=True):
        keys = keys if isinstance(keys, tuple) else (keys,)
        base = g[g.defense == "none"]
        base_acc = base.test_acc.mean() if len(base) else math.nan
        base_att = base.attack_acc.mean() if len(base) else math.nan
        order = ["none"] + sorted(d for d in g.defense.unique() if d != "none")
        for d in order:
            s = g[g.defense == d]
            if not len(s):
                continue
            row = dict(zip(group_axes, keys))
            row["defense"] = d
            row["seeds"] = s.seed.nunique()
            for col in ("test_acc", "attack_acc", "tpr_1pct", "epsilon", "seconds", "defense_seconds"):
                row[col], row[col + "_std"] = _ms(list(s[col]))
            row["d_acc"] = row["test_acc"] - base_acc
            row["d_attack"] = row["attack_acc"] - base_att
            row["attack"] = s.attack.value_counts().idxmax()
            out.append(row)
    return pd.DataFrame(out), group_axes


def _pm(m, s, digits=3):
    if isinstance(m, float) and math.isnan(m):
        return ""
    return f"{number(m, digits)} ± {number(s, digits)}" if not (isinstance(s, float) and math.isnan(s)) else number(m, digits)


def _signed(v, digits=3):
    if isinstance(v, float) and math.isnan(v):
        return ""
    t = number(v, digits)
    return t if t.startswith("-") or float(t) == 0 else "+" + t


def format_table(table, group_axes, fmt):
    if fmt == "csv":
        return table.to_csv(index=False, na_rep="")
    head = [*[a for a in group_axes if a != "sparsity"], "sparsity", "defense", "test accuracy", "Δ accuracy",
            "strongest attack (balanced accuracy)", "Δ attack", "best TPR at 1 % FPR", "ε",
            "training s", "defense s", "seeds"]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join(":---" if i < len(group_axes) + 1 else "---:" for i in range(len(head))) + "|"]
    for r in table.to_dict("records"):
        cells = [str(r[a]) for a in group_axes if a != "sparsity"]
        cells += [mgstore.format_value("sparsity", r["sparsity"]), f"`{r['defense']}`",
                  _pm(r["test_acc"], r["test_acc_std"]), _signed(r["d_acc"]),
                  f"{_pm(r['attack_acc'], r['attack_acc_std'])} ({r['attack']})", _signed(r["d_attack"]),
                  _pm(r["tpr_1pct"], r["tpr_1pct_std"]), _pm(r["epsilon"], r["epsilon_std"], 2),
                  _pm(r["seconds"], r["seconds_std"], 1), _pm(r["defense_seconds"], r["defense_seconds_std"], 1),
                  str(r["seeds"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(prog="mgdefense.py", description=__doc__.splitlines()[0])
    ap.add_argument("store", help="store directory or its results.h5")
    ap.add_argument("--sparsity", type=float, help="only the cells of this sparsity")
    ap.add_argument("--format", default="markdown", help=f"{', '.join(FORMATS)} (default markdown)")
    ap.add_argument("--out", help="write here instead of stdout")
    a = ap.parse_args(argv)
    if a.format not in FORMATS:
        print(f"mgdefense: unknown format {a.format!r}; formats: {', '.join(FORMATS)}", file=sys.stderr)
        return 2
    try:
        with mgstore.Store(a.store) as s:
            df = per_cell(s)
    except (mgstore.StoreError, OSError, KeyError) as e:
        print(f"mgdefense: {e}", file=sys.stderr)
        return 1
    if not len(df):
        print("mgdefense: the store has no complete cell", file=sys.stderr)
        return 1
    if a.sparsity is not None:
        known = sorted(df.sparsity.unique())
        df = df[(df.sparsity - a.sparsity).abs() < 1e-9]
        if not len(df):
            print(f"mgdefense: no complete cell of sparsity {a.sparsity}; sparsities: "
                  f"{', '.join(map(str, known))}", file=sys.stderr)
            return 2
    table, group_axes = compare(df)
    text = format_table(table, group_axes, a.format)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
