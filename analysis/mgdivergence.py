"""Per-class member/non-member prediction divergence (after Yuan & Zhang, USENIX Security 2022).

What is computed, for one model and one class c:

1. The model's softmax outputs are computed in float64 from the stored
   float32 logits (max subtracted first), for its members
   (outputs/member/logits) and its non-members (outputs/nonmember/logits).
2. Each sample with true label c gives one number, its *confidence*:
   `true` (default) = the softmax probability of its true class c, the
   quantity the `conf` attack thresholds; `max` = the largest softmax
   probability, whatever the class.
3. The two samples (members of class c, non-members of class c) are binned
   into the same `bins` (default 10) equal-mass bins: the bin edges are the
   quantiles of the pooled member + non-member confidences, so the estimate
   does not depend on how the confidence is scaled (the same bins, hence the
   same number, for the true-class probability, the loss or the logit). Ties
   are kept in one bin (repeated edges are merged).
4. The Jensen-Shannon divergence between the two normalised histograms P
   (members) and Q (non-members), in nats (natural logarithm):
       JS(P, Q) = 1/2 KL(P || M) + 1/2 KL(Q || M),  M = (P + Q) / 2,
   with 0 log 0 = 0. It is 0 for identical histograms and ln 2 = 0.693 for
   histograms with disjoint support; divide by ln 2 for bits.
5. A histogram estimate is above 0 even for two samples of one distribution.
   `js_null` is that level for the class: the mean JS over `n_perm`
   (default 20) random reassignments of the pooled confidences to groups of
   the same sizes (numpy PCG64 seeded with the class number, so reproducible). A class whose
   `js` is well above `js_null` is one whose members the model treats
   differently from its non-members.

A class with fewer than 2 members or 2 non-members gets NaN.
"""
import numpy as np
import pandas as pd

import mgstore

QUANTITIES = ("true", "max")
LN2 = float(np.log(2.0))


def softmax(logits):
    """Row-wise softmax in float64 of an (n, classes) array."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def confidence(logits, labels, quantity="true"):
    """Per-sample confidence: softmax probability of the true class ('true') or the largest ('max')."""
    if quantity not in QUANTITIES:
        raise ValueError(f"unknown confidence {quantity!r}; known: {', '.join(QUANTITIES)}")
    p = softmax(logits)
    if quantity == "max":
        return p.max(axis=1)
    labels = np.asarray(labels, dtype=np.int64)
    return p[np.arange(len(labels)), labels]


def js_divergence(p, q):
    """Jensen-Shannon divergence in nats between two histograms (non-negative
    weights, normalised here). 0 for p == q, ln 2 for disjoint supports."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.shape != q.shape or p.ndim != 1:
        raise ValueError(f"histograms must be 1-D of one length, got {p.shape} and {q.shape}")
    if p.sum() <= 0 or q.sum() <= 0 or (p < 0).any() or (q < 0).any():
        raise ValueError("histograms must be non-negative with a positive total")
    p = p / p.sum()
    q = q / q.sum()
    m = 0.5 * (p + q)

    def kl(a):
        nz = a > 0
        return float(np.sum(a[nz] * np.log(a[nz] / m[nz])))

    # Clamp rounding: the true value lies in [0, ln 2].
    return min(max(0.5 * kl(p) + 0.5 * kl(q), 0.0), LN2)


def equal_mass_edges(values, bins):
    """Inner bin edges at the quantiles k/bins of `values`, repeated edges merged."""
    qs = np.quantile(np.asarray(values, dtype=np.float64), np.arange(1, bins) / bins)
    return np.unique(qs)


def _histogram(x, inner):
    idx = np.searchsorted(inner, x, side="right")
    return np.bincount(idx, minlength=len(inner) + 1)


def histogram_js(a, b, bins=10):
    """JS divergence (nats) between samples a and b binned into `bins` equal-mass bins of the pooled sample."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    inner = equal_mass_edges(np.concatenate([a, b]), bins)
    return js_divergence(_histogram(a, inner), _histogram(b, inner))


def null_js(a, b, bins=10, n_perm=20, seed=0):
    """Mean histogram JS over n_perm random splits of the pooled a+b into groups of
    sizes len(a), len(b): the level a divergence of identical distributions reaches."""
    pooled = np.concatenate([np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)])
    rng = np.random.Generator(np.random.PCG64(seed))
    n = len(a)
    vals = []
    for _ in range(n_perm):
        perm = rng.permutation(pooled)
        vals.append(histogram_js(perm[:n], perm[n:], bins))
    return float(np.mean(vals)) if vals else float("nan")


def per_class(member_logits, member_labels, nonmember_logits, nonmember_labels,
              quantity="true", bins=10, n_perm=20):
    """Per-class divergence table: one row per class present in either part, with
    columns class, n_member, n_nonmember, js, js_null (see the module docstring)."""
    cm = confidence(member_logits, member_labels, quantity)
    cn = confidence(nonmember_logits, nonmember_labels, quantity)
    ym = np.asarray(member_labels)
    yn = np.asarray(nonmember_labels)
    rows = []
    for c in np.union1d(np.unique(ym), np.unique(yn)):
        a, b = cm[ym == c], cn[yn == c]
        if len(a) < 2 or len(b) < 2:
            js = jn = float("nan")
        else:
            js = histogram_js(a, b, bins)
            jn = null_js(a, b, bins, n_perm, seed=int(c))
        rows.append({"class": int(c), "n_member": len(a), "n_nonmember": len(b), "js": js, "js_null": jn})
    return pd.DataFrame(rows, columns=["class", "n_member", "n_nonmember", "js", "js_null"])


def store_divergence(store, cell_ids, quantity="true", bins=10, n_perm=20, role="target"):
    """per_class() for the `role` model of each cell (an mgstore.Store), joined with the cell's axes."""
    frames = []
    for cid in cell_ids:
        out = store.outputs(cid, role)
        t = per_class(out["member"]["logits"], out["member"]["labels"],
                      out["nonmember"]["logits"], out["nonmember"]["labels"], quantity, bins, n_perm)
        cell = store.cell(cid)
        for a in ("cell_id", *mgstore.AXES):
            t[a] = cell[a]
        frames.append(t)
    cols = ["cell_id", *mgstore.AXES, "class", "n_member", "n_nonmember", "js", "js_null"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)
