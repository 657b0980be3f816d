"""Summaries computed from result records: curves over seeds, area under the budget curve, comparisons.

Every number a notebook states in prose comes from here, so "what we see"
paragraphs are computed, not typed.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable

import numpy as np

#: test accuracy (%) of the study's Fig./Table for VAAL on Fashion-MNIST, 1000 -> 8000 labels
STUDY_VAAL = {1000: 84.91, 2000: 85.84, 3000: 86.58, 4000: 87.33, 5000: 88.66, 6000: 88.79, 7000: 89.94, 8000: 90.37}
#: the study's three-class start ({2, 4, 7}, 500 labels, +64 per cycle): the points it reports
STUDY_THREE_CLASS = {500: 27.25, 1012: 48.52, 1396: 52.44}


def group(rows: Iterable[dict], *keys: str) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        out[tuple(r.get(k) for k in keys)].append(r)
    return dict(out)


def curve(rows: Iterable[dict], y: str = "test_acc", x: str = "n_labelled", by: str = "arm") -> list[dict]:
    """Mean, std (ddof=1; 0 for one seed), min, max and seed count of ``y`` per (``by``, ``x``).

    Returns rows sorted by ``by`` then ``x``: ``{by, x, "mean", "std", "min", "max", "n"}``.
    Records without ``y`` (e.g. a learner with no discriminator) are skipped.
    """
    table = []
    for (b, xv), rs in sorted(group(rows, by, x).items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        vals = np.array([r[y] for r in rs if r.get(y) is not None], dtype=float)
        if vals.size == 0:
            continue
        table.append({by: b, x: xv, "mean": vals.mean(), "std": vals.std(ddof=1) if vals.size > 1 else 0.0,
                      "min": vals.min(), "max": vals.max(), "n": int(vals.size)})
    return table


def aubc(rows: Iterable[dict], y: str = "test_acc", by: str = "arm") -> list[dict]:
    """Area under the budget curve per run, normalised by the label range (so it is a mean accuracy).

    Trapezoid rule of ``y`` over ``n_labelled`` for each (arm, seed); then mean
    and std over seeds per arm. Records without ``y`` are skipped. Runs of one arm
    must share their ``n_labelled`` grid (stopped runs are compared over the
    cycles they have).
    """
    per_run = defaultdict(list)
    for (b, seed), rs in group((r for r in rows if r.get(y) is not None), by, "seed").items():
        rs = sorted(rs, key=lambda r: r["n_labelled"])
        xs = np.array([r["n_labelled"] for r in rs], float)
        ys = np.array([r[y] for r in rs], float)
        area = np.trapezoid(ys, xs) / (xs[-1] - xs[0]) if xs.size > 1 else ys[0]
        per_run[b].append(area)
    return [
        {by: b, "aubc": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, "n": len(v)}
        for b, v in sorted(per_run.items(), key=lambda kv: str(kv[0]))
    ]


def paired_difference(rows: Iterable[dict], a: str, b: str, y: str = "test_acc", by: str = "arm",
                      min_cycle: int = 0) -> dict:
    """Mean of ``y[a] - y[b]`` over matching (seed, cycle) pairs, with wins/losses and the pair count.

    ``min_cycle=1`` compares only cycles after the first acquisition (cycle 0
    is trained on the same initial set in every arm).
    """
    rows = [r for r in rows if r["cycle"] >= min_cycle and r.get(y) is not None]
    left = {(r["seed"], r["cycle"]): r[y] for r in rows if r.get(by) == a}
    right = {(r["seed"], r["cycle"]): r[y] for r in rows if r.get(by) == b}
    keys = sorted(set(left) & set(right))
    d = np.array([left[k] - right[k] for k in keys], float)
    if d.size == 0:
        return {"a": a, "b": b, "pairs": 0, "mean": float("nan"), "std": float("nan"), "wins": 0, "losses": 0}
    return {"a": a, "b": b, "pairs": int(d.size), "mean": float(d.mean()), "std": float(d.std(ddof=1)) if d.size > 1 else 0.0,
            "wins": int((d > 0).sum()), "losses": int((d < 0).sum())}


def distinguishable(d: dict, z: float = 2.0) -> bool:
    """Whether a :func:`paired_difference` is told apart from zero: ``|mean| > z * std / sqrt(pairs)``.

    ``z = 2`` is a rough 95 % interval on the mean paired difference; with fewer
    than two pairs nothing is distinguishable.
    """
    if d.get("pairs", 0) < 2 or not np.isfinite(d.get("mean", np.nan)):
        return False
    return abs(d["mean"]) > z * d["std"] / np.sqrt(d["pairs"])


def heldout_noise(rows: Iterable[dict], key: str = "n_disc_heldout") -> dict:
    """Size of the discriminator's held-out set over ``rows`` and the standard error of a chance accuracy on it.

    Each cycle holds out ``n`` labelled and ``n`` unlabelled points; an accuracy
    of 0.5 measured on those 2n points has a binomial standard error of
    ``sqrt(0.25 / 2n)``. Returned for the smallest set: ``n_min``, ``n_max``,
    ``se_at_chance``. Empty dict when no record has ``key``.
    """
    ns = [int(r[key]) for r in rows if r.get(key)]
    if not ns:
        return {}
    return {"n_min": min(ns), "n_max": max(ns), "se_at_chance": float(np.sqrt(0.25 / (2 * min(ns))))}


def beside_study(table: list[dict], study: dict[int, float], arm: str, by: str = "arm") -> list[dict]:
    """Rows ``{n_labelled, study, ours_mean, ours_std, diff}`` (percent) at the study's label counts.

    The nearest measured label count is used when the grid differs (``ours_n``
    says which); label counts outside our measured range are left out.
    """
    ours = [r for r in table if r[by] == arm]
    if not ours:
        return []
    xs = np.array([r["n_labelled"] for r in ours])
    out = []
    for n, acc in sorted(study.items()):
        if n < xs.min() or n > xs.max():
            continue
        r = ours[int(np.abs(xs - n).argmin())]
        out.append({"n_labelled": n, "study": acc, "ours_n": int(r["n_labelled"]), "ours_mean": 100 * r["mean"],
                    "ours_std": 100 * r["std"], "diff": 100 * r["mean"] - acc})
    return out


def class_coverage(rows: Iterable[dict], classes: Iterable[int]) -> dict:
    """For each (arm, seed): the first cycle whose selection includes any of ``classes``, and the share of them.

    Used for the three-class start: do the selections reach the unseen classes?
    """
    classes = list(classes)
    out = {}
    for (arm, seed), rs in group(rows, "arm", "seed").items():
        first, picked, total = None, 0, 0
        for r in sorted(rs, key=lambda r: r["cycle"]):
            counts = r.get("selected_class_counts")
            if not counts:
                continue
            hit = sum(counts[c] for c in classes)
            picked, total = picked + hit, total + sum(counts)
            if hit and first is None:
                first = r["cycle"]
        out[(arm, seed)] = {"first_cycle": first, "share": picked / total if total else float("nan")}
    return out


def markdown_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """A Markdown table: ``columns`` = [(key, header, format spec)]."""
    head = "| " + " | ".join(h for _, h, _ in columns) + " |"
    rule = "|" + "|".join(":---" if f == "s" else "---:" for _, _, f in columns) + "|"
    body = ["| " + " | ".join(format(r[k], f) if r.get(k) is not None else "–" for k, _, f in columns) + " |" for r in rows]
    return "\n".join([head, rule, *body])


def first_below(rows: Iterable[dict], key: str, threshold: float) -> dict[tuple, int | None]:
    """Per (arm, seed): the first cycle whose ``key`` is <= ``threshold`` (None if never).

    With ``disc_acc_heldout`` this is where the optional stopping rule would
    stop acquisition ("stop when the discriminator is unable to differentiate").
    """
    out = {}
    for (arm, seed), rs in sorted(group(rows, "arm", "seed").items(), key=lambda kv: str(kv[0])):
        hits = [r["cycle"] for r in sorted(rs, key=lambda r: r["cycle"]) if r.get(key) is not None and r[key] <= threshold]
        out[(arm, seed)] = hits[0] if hits else None
    return out


def diagnostics_rows(rows: Iterable[dict]) -> list[dict]:
    """Flatten each record's selection ``diagnostics`` into a row (with arm, seed, cycle, n_labelled).

    Adds ``pairwise_ratio`` and ``to_labelled_ratio``: the batch's mean pairwise
    latent distance and its mean nearest-labelled distance, each divided by
    the same quantity for a random batch of the same size (1 = like random).
    """
    out = []
    for r in rows:
        d = r.get("diagnostics")
        if not d:
            continue
        row = {k: r.get(k) for k in ("arm", "seed", "cycle", "n_labelled", "strategy")}
        row.update(d)
        for name, key in (("pairwise_ratio", "mean_pairwise_distance"), ("to_labelled_ratio", "mean_min_distance_to_labelled")):
            a, b = d.get(key), d.get("random_" + key)
            row[name] = a / b if a is not None and b else None
        out.append(row)
    return out


def diagnostics_summary(diag: list[dict], arms: list[str]) -> list[dict]:
    """Mean (and ``<key>_std``, population std) of each diagnostic over cycles and seeds, per arm.

    None where an arm has no value; ``batches`` counts the selected batches averaged.
    """
    keys = ("pairwise_ratio", "to_labelled_ratio", "class_entropy", "misclassified_fraction", "mean_confidence")
    out = []
    for arm in arms:
        rs = [r for r in diag if r["arm"] == arm]
        row = {"arm": arm, "batches": len(rs)}
        for k in keys:
            vals = [r[k] for r in rs if r.get(k) is not None]
            row[k] = float(np.mean(vals)) if vals else None
            row[k + "_std"] = float(np.std(vals)) if vals else None
        out.append(row)
    return out


def final_confusions(rows: Iterable[dict], arms: list[str]) -> dict[str, np.ndarray]:
    """Test confusion matrix of each run's last cycle, summed over the seeds of each arm.

    Each (arm, seed) run contributes its own last cycle, so a run the stopping
    rule ended early still counts. Arms without records are left out.
    """
    last = {}
    for r in rows:
        key = (r["arm"], r["seed"])
        if r["arm"] in arms and (key not in last or r["cycle"] > last[key]["cycle"]):
            last[key] = r
    out = {}
    for arm in arms:
        mats = [np.asarray(r["test_confusion"]) for (a, _), r in sorted(last.items(), key=lambda kv: str(kv[0])) if a == arm]
        if mats:
            out[arm] = sum(mats)
    return out


def norm_comparison(exp, arm: str = "norm_approx", seed: int | None = None, cycle: int = 0,
                    pool: int = 400, budget: int = 25) -> dict:
    """Exact vs approximate norm-based maximin on one small pool, from a run's saved latent codes.

    Uses ``latent/cycleNN.npz`` of (``arm``, ``seed``) — the run must set
    ``latent_sample`` — so no model is needed: candidates are the unlabelled
    sample points, anchors the labelled ones with their labels. The result
    (with the time of each method) is cached as ``norm_comparison.json`` in
    the experiment folder, so redrawing does not re-time it.
    """
    import torch

    from . import results
    from .strategies import Context
    from .strategies.norm import compare_norm

    seed = exp.seeds[0] if seed is None else seed
    cache = exp.folder / "norm_comparison.json"
    key = {"arm": arm, "seed": seed, "cycle": cycle, "pool": pool, "budget": budget}
    if cache.exists():
        saved = results.read_json(cache)
        if saved.get("key") == key:
            return saved["result"]
    path = exp.run_dir(arm, seed) / "latent" / f"cycle{cycle:02d}.npz"
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: set latent_sample for arm {arm!r} to compare norm scores")
    f = np.load(path)
    z = torch.as_tensor(f["z"].astype(np.float32))
    unl, lab = f["status"] == 0, f["status"] == 1
    ctx = Context(learner=None, x_unlabelled=z[unl], x_labelled=z[lab], y_labelled=torch.as_tensor(f["y"][lab]).long(),
                  unlabelled_indices=f["pool_index"][unl], labelled_indices=f["pool_index"][lab], num_classes=10, seed=seed)
    ctx._cache.update(latent=z[unl], labelled_latent=z[lab])  # the saved codes stand in for the model
    raw = compare_norm(ctx, budget=budget, pool_size=pool)
    result = {"pool": raw["n_candidates"], "labelled": raw["n_labelled"], "exact_seconds": raw["seconds_exact"],
              "approx_seconds": raw["seconds_approx"], "spearman": raw["spearman"], "overlap": raw["top_overlap"]}
    results.write_json(cache, {"key": key, "result": result, "raw": raw})
    return result


def latent_summary(exp, arm: str, seed: int, cycle: int, umap_map: dict) -> dict:
    """Numbers behind a UMAP figure: how class-organised the map is, and where the selected batch lies.

    ``knn_purity``: share of points whose 10 nearest neighbours on the 2-D map
    vote for their true class. ``selected_classes``: classes present in the
    batch selected at this cycle. ``selected_to_labelled``: mean latent (not
    map) distance from a selected point to its nearest labelled point, divided
    by the same for the unlabelled sample.
    """
    import torch
    from sklearn.neighbors import KNeighborsClassifier

    xy, y, status = umap_map["xy"], umap_map["y"], umap_map["status"]
    knn = KNeighborsClassifier(n_neighbors=11).fit(xy, y)
    neigh = knn.kneighbors(xy, return_distance=False)[:, 1:]  # drop the point itself
    votes = np.array([np.bincount(y[n], minlength=10).argmax() for n in neigh])
    with np.load(exp.run_dir(arm, seed) / "latent" / f"cycle{cycle:02d}.npz") as f:
        z = torch.as_tensor(f["z"].astype(np.float32))
    lab = z[torch.as_tensor(status == 1)]
    near = lambda pts: torch.cdist(pts, lab).min(1).values.mean().item() if len(pts) and len(lab) else float("nan")
    sel, unl = z[torch.as_tensor(status == 2)], z[torch.as_tensor(status == 0)]
    return {"knn_purity": float((votes == y).mean()), "selected_classes": int(np.unique(y[status == 2]).size),
            "selected_to_labelled": near(sel) / near(unl) if len(sel) else float("nan")}
