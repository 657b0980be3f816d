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
    and std over seeds per arm. Runs of one arm must share their ``n_labelled``
    grid (stopped runs are compared over the cycles they have).
    """
    per_run = defaultdict(list)
    for (b, seed), rs in group(rows, by, "seed").items():
        rs = sorted(rs, key=lambda r: r["n_labelled"])
        xs = np.array([r["n_labelled"] for r in rs], float)
        ys = np.array([r[y] for r in rs], float)
        area = np.trapezoid(ys, xs) / (xs[-1] - xs[0]) if xs.size > 1 else ys[0]
        per_run[b].append(area)
    return [
        {by: b, "aubc": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, "n": len(v)}
        for b, v in sorted(per_run.items(), key=lambda kv: str(kv[0]))
    ]


def paired_difference(rows: Iterable[dict], a: str, b: str, y: str = "test_acc", by: str = "arm") -> dict:
    """Mean of ``y[a] - y[b]`` over matching (seed, cycle) pairs, with wins/losses and the pair count."""
    rows = list(rows)
    left = {(r["seed"], r["cycle"]): r[y] for r in rows if r.get(by) == a}
    right = {(r["seed"], r["cycle"]): r[y] for r in rows if r.get(by) == b}
    keys = sorted(set(left) & set(right))
    d = np.array([left[k] - right[k] for k in keys], float)
    if d.size == 0:
        return {"a": a, "b": b, "pairs": 0, "mean": float("nan"), "wins": 0, "losses": 0}
    return {"a": a, "b": b, "pairs": int(d.size), "mean": float(d.mean()), "std": float(d.std(ddof=1)) if d.size > 1 else 0.0,
            "wins": int((d > 0).sum()), "losses": int((d < 0).sum())}


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
    rule = "|" + "|".join("---:" for _ in columns) + "|"
    body = ["| " + " | ".join(format(r[k], f) if r.get(k) is not None else "–" for k, _, f in columns) + " |" for r in rows]
    return "\n".join([head, rule, *body])
