"""Tables from result records: curves over seeds, one number per seed, areas under the budget curve, class
counts, confusions, selection diagnostics, the study's numbers beside ours, and how much of an experiment is on disk.

Reads records only (lists of dicts as :func:`alkit.results.load_results` returns them); nothing here trains,
loads a model or writes a file.
"""
from __future__ import annotations

import math
import numbers
from collections import defaultdict
from typing import Iterable

import numpy as np

from .study import STUDY_1000_NAME

#: the notebooks' AUBC: cycles >= 1 (cycle 0 is the same initial set in every arm)
AUBC_MIN_CYCLE = 1


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


def seed_order(seed) -> tuple:
    """Sort key: numeric seeds numerically (2 before 10), anything else after them as text."""
    return (0, seed, "") if isinstance(seed, numbers.Real) and not isinstance(seed, bool) else (1, 0, str(seed))


def _area_over_budget(xs: np.ndarray, ys: np.ndarray) -> float:
    """Trapezoid area of ``ys`` over ``xs`` (both (C,), ``xs`` sorted) divided by ``xs[-1] - xs[0]``.

    In the units of ``ys`` (a mean accuracy for accuracies); one point -> its value.
    """
    return float(np.trapezoid(ys, xs) / (xs[-1] - xs[0])) if xs.size > 1 else float(ys[0])


def per_seed(rows: Iterable[dict], y: str = "test_acc", by: str = "arm", min_cycle: int = 0,
             summary: str = "aubc") -> dict:
    """One number per seed and arm: ``{arm: {seed: value}}``, arms sorted by name, seeds in numeric order.

    Each seed's curve is summarised before any comparison, because the cycles
    of one seed are strongly correlated (same initial set, same init, the
    labelled set only grows), so they are not independent repeats.

    ``summary="aubc"``: trapezoid area of ``y`` over ``n_labelled`` divided by
    the seed's label range (a mean accuracy; a seed with one cycle gives that
    cycle's value), as in :func:`aubc`. ``summary="mean"``: plain mean of ``y``
    over the seed's cycles. Only cycles ``>= min_cycle`` are used
    (``min_cycle=1`` drops the shared cycle-0 start); records without ``y``
    are skipped, and a seed left with no value is absent.
    """
    if summary not in ("aubc", "mean"):
        raise ValueError(f"summary must be 'aubc' or 'mean', got {summary!r}")
    kept = (r for r in rows if r.get(y) is not None and (min_cycle <= 0 or r["cycle"] >= min_cycle))
    out: dict = {}
    for (b, seed), rs in group(kept, by, "seed").items():
        if summary == "aubc":
            rs = sorted(rs, key=lambda r: r["n_labelled"])
            value = _area_over_budget(np.array([r["n_labelled"] for r in rs], float), np.array([r[y] for r in rs], float))
        else:
            value = float(np.mean([r[y] for r in rs]))
        out.setdefault(b, {})[seed] = value
    return {b: dict(sorted(out[b].items(), key=lambda kv: seed_order(kv[0]))) for b in sorted(out, key=str)}


def common_labels(rows: Iterable[dict], y: str = "test_acc", by: str = "arm", x: str = "n_labelled") -> list | None:
    """The ``x`` values (label counts) at which every run (``by``, seed) among ``rows`` has ``y``, sorted.

    Runs whose last record says ``stopped`` (the stopping rule ended them: finished, not partial)
    do not narrow the grid; None when there is no other run (no restriction).
    """
    runs = group((r for r in rows if r.get(y) is not None), by, "seed")
    open_runs = [rs for rs in runs.values() if not any(r.get("stopped") for r in rs)]
    if not open_runs:
        return None
    return sorted(set.intersection(*({r.get(x) for r in rs} for rs in open_runs)), key=lambda v: (v is None, v))


def on_common_labels(rows: Iterable[dict], y: str = "test_acc", by: str = "arm",
                     x: str = "n_labelled") -> tuple[list[dict], dict]:
    """``rows`` with ``y`` kept at the :func:`common_labels` only; and ``{"labels", "dropped"}``: the grid
    used and how many other label counts some run has on disk (0 when the runs share their grid)."""
    rows = [r for r in rows if r.get(y) is not None]
    grid = common_labels(rows, y=y, by=by, x=x)
    if grid is None:
        return rows, {"labels": sorted({r.get(x) for r in rows}, key=lambda v: (v is None, v)), "dropped": 0}
    keep = set(grid)
    return [r for r in rows if r.get(x) in keep], {"labels": grid, "dropped": len({r.get(x) for r in rows} - keep)}


def aubc(rows: Iterable[dict], y: str = "test_acc", by: str = "arm", min_cycle: int = 0) -> list[dict]:
    """Area under the budget curve per run, normalised by the label range (so it is a mean accuracy).

    Trapezoid rule of ``y`` over ``n_labelled`` for each (arm, seed) (see
    :func:`per_seed`); then mean and std over seeds per arm. Records without
    ``y`` are skipped. Only the label counts that every unfinished-or-complete
    run of every arm has are used (:func:`common_labels`), so a run still
    under way (partial results) does not give its arm an area over a shorter
    range than the others; runs the stopping rule ended are compared over the
    cycles they have. :func:`grid_note` says when label counts were left out. ``min_cycle=1`` keeps the
    cycles after the first acquisition only (the notebooks' one AUBC, :data:`AUBC_MIN_CYCLE`).
    """
    rows = [r for r in rows if min_cycle <= 0 or r["cycle"] >= min_cycle]
    rows, _ = on_common_labels(rows, y=y, by=by)
    return [
        {by: b, "aubc": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, "n": len(v)}
        for b, v in ((b, list(seeds.values())) for b, seeds in per_seed(rows, y=y, by=by).items())
    ]


def at_largest_budget(table: list[dict], by: str = "arm") -> list[dict]:
    """The rows of a :func:`curve` table at each arm's largest number of labels (``n_labelled``), in table order."""
    last: dict = {}
    for r in table:
        if r[by] not in last or r["n_labelled"] > last[r[by]]["n_labelled"]:
            last[r[by]] = r
    return list(last.values())


def differences(rows: Iterable[dict], baseline: str = "random", y: str = "test_acc", by: str = "arm") -> list[dict]:
    """``y`` of every arm minus ``baseline``'s at the same seed and cycle: rows ``{arm, seed, cycle, n_labelled, diff}``.

    Only (seed, cycle) pairs present in both are kept; ``baseline`` itself is left out. For a
    fair reading the arms should share the baseline's learner (then only the acquisition differs).
    """
    rows = [r for r in rows if r.get(y) is not None]
    base = {(r["seed"], r["cycle"]): r[y] for r in rows if r.get(by) == baseline}
    return [{"arm": r[by], "seed": r["seed"], "cycle": r["cycle"], "n_labelled": r["n_labelled"],
             "diff": r[y] - base[(r["seed"], r["cycle"])]}
            for r in rows if r.get(by) != baseline and (r["seed"], r["cycle"]) in base]


def paired_difference(rows: Iterable[dict], a: str, b: str, y: str = "test_acc", by: str = "arm",
                      min_cycle: int = 0) -> dict:
    """Mean of ``y[a] - y[b]`` over matching (seed, cycle) pairs, with wins/losses and the pair count.

    Descriptive only: do not use it for significance. Its pairs are not
    independent (the cycles of one seed are strongly correlated), so any
    standard error built from ``std / sqrt(pairs)`` is far too small; use
    :func:`compare_seeds`, which tests per-seed summaries.

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


def markdown_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """A Markdown table: ``columns`` = [(key, header, format spec)]."""
    head = "| " + " | ".join(h for _, h, _ in columns) + " |"
    rule = "|" + "|".join(":---" if f == "s" else "---:" for _, _, f in columns) + "|"
    body = ["| " + " | ".join(format(r[k], f) if r.get(k) is not None else "–" for k, _, f in columns) + " |" for r in rows]
    return "\n".join([head, rule, *body])


def curve_markdown(rows: Iterable[dict], order: Iterable[str], y: str = "test_acc", scale: float = 100,
                   study: dict | None = None, study_name: str = "study") -> str:
    """The numbers of a curve figure as a Markdown table: per arm and label count, the mean ± sd over the
    seeds that reached it, their count, each seed's own value (in seed order, "–" where a seed has none)
    and ``study``'s number ({label count: value}, already in percent) where it reports that label count.

    Arms without records are left out; the study's column only appears where it meets our label counts.
    """
    rows = [r for r in rows if r.get(y) is not None]
    table = curve(rows, y=y)
    value = {(r["arm"], r["seed"], r["n_labelled"]): r[y] for r in rows}
    seeds = sorted({r["seed"] for r in rows}, key=seed_order)
    out = []
    for arm in [a for a in order if any(t["arm"] == a for t in table)]:
        for t in (t for t in table if t["arm"] == arm):
            each = [value.get((arm, s, t["n_labelled"])) for s in seeds]
            out.append({"arm": arm, "n_labelled": t["n_labelled"], "mean": scale * t["mean"], "std": scale * t["std"],
                        "n": t["n"], "each": " / ".join("–" if v is None else f"{scale * v:.2f}" for v in each),
                        "study": (study or {}).get(t["n_labelled"])})
    if not out:
        return ""
    columns = [("arm", "arm", "s"), ("n_labelled", "labels", ","), ("mean", "mean", ".2f"), ("std", "± sd", ".2f"),
               ("n", "seeds", "d"), ("each", f"seed {' / '.join(str(s) for s in seeds)}", "s")]
    if any(r["study"] is not None for r in out):
        columns.append(("study", study_name, ".2f"))
    return markdown_table(out, columns)


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


def beside_study_markdown(table: list[dict], study: dict[int, float], arm: str, profile: str,
                          name: str = "VAAL") -> tuple[str, list[dict]]:
    """The side-by-side table of :func:`beside_study` as Markdown (with the seeds behind each mean), and its rows.

    Where there is none: why (``arm`` has no records yet, or our label counts lie outside the study's grid).
    """
    side = beside_study(table, study, arm=arm)
    if side:
        seeds = {r["n_labelled"]: r["n"] for r in table if r["arm"] == arm}
        rows = [dict(s, seeds=seeds.get(s["ours_n"])) for s in side]
        return markdown_table(rows, [("n_labelled", "labels", "d"), ("study", f"study {name} (%)", ".2f"),
                                     ("ours_mean", f"alkit {name} (%)", ".2f"), ("ours_std", "± std", ".2f"),
                                     ("seeds", "seeds", "d"), ("diff", "difference", "+.2f")]), side
    if not any(r["arm"] == arm for r in table):
        return (f"No `{arm}` records yet: the side-by-side table with the study's {name} appears once that arm has run."), []
    grid = sorted({r["n_labelled"] for r in table})
    lo, hi = min(study), max(study)
    return (f"The `{profile}` profile measures {grid[0]}–{grid[-1]} labels, outside the study's "
            f"{lo:,}–{hi:,} grid: run the `paper` profile for the side-by-side table."), []


def beside_study_arms_markdown(table: list[dict], study: dict[int, float], arms: Iterable[str], profile: str,
                               name: str = STUDY_1000_NAME) -> tuple[str, list[dict]]:
    """The study's table with several of our arms beside it (mean ± sd over seeds, seeds, difference), as Markdown.

    One row per label count of the study within our range (nearest measured label count, as
    :func:`beside_study`); arms without records are left out with a sentence. Where no arm meets the
    study's grid, the sentence of :func:`beside_study_markdown` says why.
    """
    arms = [a for a in arms]
    sides = {a: beside_study(table, study, arm=a) for a in arms}
    have = [a for a in arms if sides[a]]
    if not have:
        return beside_study_markdown(table, study, arms[0], profile, name=name)[0], []
    seeds = {(r["arm"], r["n_labelled"]): r["n"] for r in table}
    rows, columns = [], [("n_labelled", "labels", ","), ("study", f"{name} (%)", ".2f")]
    for i, s in enumerate(sides[have[0]]):
        row = {"n_labelled": s["n_labelled"], "study": s["study"]}
        for a in have:
            o = next((x for x in sides[a] if x["n_labelled"] == s["n_labelled"]), None)
            if o:
                row.update({f"{a}_mean": o["ours_mean"], f"{a}_std": o["ours_std"], f"{a}_n": seeds.get((a, o["ours_n"])),
                            f"{a}_diff": o["diff"]})
        rows.append(row)
    for a in have:
        columns += [(f"{a}_mean", f"alkit {a} (%)", ".2f"), (f"{a}_std", "± sd", ".2f"), (f"{a}_n", "seeds", "d"),
                    (f"{a}_diff", f"{a} \u2212 study", "+.2f")]
    text = markdown_table(rows, columns)
    missing = [a for a in arms if a not in have]
    if missing:
        text += "\n\nNo records yet at the study's label counts: " + ", ".join(f"`{a}`" for a in missing) + "."
    return text, rows


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


def count_classes(rows: Iterable[dict]) -> int | None:
    """The number of classes the records were drawn over (the length of their ``labelled_class_counts``)."""
    return next((len(r["labelled_class_counts"]) for r in rows if r.get("labelled_class_counts")), None)


def unseen_classes(rows: Iterable[dict], seen: Iterable[int]) -> list[int]:
    """The classes of the records' label space (:func:`count_classes`) outside ``seen``, in order: a three-class
    start's unseen classes, whatever the dataset's number of classes ([] without records)."""
    seen = set(seen)
    return [c for c in range(count_classes(rows) or 0) if c not in seen]


def class_counts_by_cycle(rows: Iterable[dict], arm: str, num_classes: int | None = None) -> list[tuple[str, list[int]]]:
    """Rows of a class histogram for ``arm``, summed over seeds: ("initial set", counts), ("batch 1", ...), ...

    The initial set is the labelled set of cycle 0 (``labelled_class_counts``); batch k is the one selected
    at the end of cycle k - 1 (``selected_class_counts``), i.e. the labels cycle k trains on in addition.
    A batch that fewer seeds have reached than the initial set (partial results) is named with its
    seed count, e.g. "batch 3 (2 seeds)". ``num_classes``: None: the records' own (:func:`count_classes`).
    """
    rs = [r for r in rows if r.get("arm") == arm]
    num_classes = num_classes or count_classes(rs) or 0
    out = []
    initial = [r["labelled_class_counts"] for r in rs if r["cycle"] == 0 and r.get("labelled_class_counts")]
    if initial:
        out.append(("initial set", [int(v) for v in np.sum(initial, axis=0)]))
    for c in sorted({r["cycle"] for r in rs if r.get("selected_class_counts")}):
        batch = [r["selected_class_counts"] for r in rs if r["cycle"] == c and r.get("selected_class_counts")]
        counts = np.sum(batch, axis=0)
        few = f" ({len(batch)} seed{'s' if len(batch) != 1 else ''})" if initial and len(batch) < len(initial) else ""
        out.append((f"batch {c + 1}{few}", [int(v) for v in np.resize(counts, num_classes)]))
    return out


def sweep_arm(arm: str, weight: float) -> str:
    """The arm name of ``arm`` at adversary weight ``weight`` in an adversary-weight sweep (1 = the arm itself)."""
    return arm if weight == 1 else f"{arm}_w{weight:g}"


def adversary_sweep(rows: Iterable[dict], arms: Iterable[str], weights: Iterable[float], unseen: Iterable[int]) -> list[dict]:
    """Per learner arm and adversary weight (arm names from :func:`sweep_arm`): the mean class entropy of the
    selected batches and the share of selected images from the ``unseen`` classes, each a per-seed value
    first (mean over batches; share over all batches), then mean ± sd over seeds; test AUBC over cycles >= 1.
    Rows ``{arm, weight, seeds, entropy, entropy_sd, unseen, unseen_sd, aubc}``; weights without records are skipped."""
    rows, unseen = list(rows), list(unseen)
    diag = diagnostics_rows(rows)
    cover = class_coverage(rows, unseen)
    out = []
    for arm in arms:
        for w in weights:
            name = sweep_arm(arm, w)
            ent = list(per_seed(diag, y="class_entropy", summary="mean").get(name, {}).values())
            share = [v["share"] for (a, _), v in cover.items() if a == name and not math.isnan(v["share"])]
            area = list(per_seed(rows, min_cycle=1).get(name, {}).values())
            if not ent:
                continue
            sd = lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
            out.append({"arm": arm, "weight": w, "seeds": len(ent), "entropy": float(np.mean(ent)), "entropy_sd": sd(ent),
                        "unseen": 100 * float(np.mean(share)) if share else None, "unseen_sd": 100 * sd(share) if share else None,
                        "aubc": 100 * float(np.mean(area)) if area else None})
    return out


def confusions_by_cycle(rows: Iterable[dict], arms: Iterable[str]) -> dict[str, dict[int, np.ndarray]]:
    """Test confusion counts per arm and cycle, summed over the seeds that reached the cycle: ``{arm: {cycle: (C, C)}}``."""
    out: dict[str, dict[int, np.ndarray]] = {}
    arms = list(arms)
    for r in rows:
        if r.get("arm") in arms and r.get("test_confusion") is not None:
            per = out.setdefault(r["arm"], {})
            m = np.asarray(r["test_confusion"], float)
            per[r["cycle"]] = per[r["cycle"]] + m if r["cycle"] in per else m
    return {a: dict(sorted(out[a].items())) for a in arms if a in out}


def per_class_error(confusion) -> np.ndarray:
    """(C,) test error per true class from a (C, C) confusion matrix (rows = true class); NaN for an empty row."""
    m = np.asarray(confusion, float)
    total = m.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 1.0 - np.diag(m) / total, np.nan)


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


def chosen_cycles(cycles: Iterable[int], k: int = 3) -> list[int]:
    """``k`` cycles spread over ``cycles`` (first, last and evenly between), for a static grid."""
    cs = sorted(set(cycles))
    if len(cs) <= k:
        return cs
    return sorted({cs[round(i * (len(cs) - 1) / (k - 1))] for i in range(k)})


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


def stop_decisions(rows: Iterable[dict], threshold: float) -> list[dict]:
    """Per (arm, seed) with a discriminator: the first cycle the stopping rule would stop at, by the held-out
    ROC AUC (the rule) and by the held-out balanced accuracy (the second line), each None for never;
    ``changed`` when the two differ, ``flat`` the cycles whose accuracy reads exactly 0.5 (every logit on
    one side of 0) while the AUC does not."""
    rows = [r for r in rows if r.get("disc_auc_heldout") is not None]
    by_auc, by_acc = first_below(rows, "disc_auc_heldout", threshold), first_below(rows, "disc_acc_heldout", threshold)
    flat = {k: [r["cycle"] for r in sorted(rs, key=lambda r: r["cycle"]) if r.get("disc_acc_heldout") == 0.5
                and r["disc_auc_heldout"] != 0.5] for k, rs in group(rows, "arm", "seed").items()}
    return [{"arm": k[0], "seed": k[1], "auc": by_auc[k], "acc": by_acc.get(k), "changed": by_auc[k] != by_acc.get(k),
             "flat": flat.get(k, [])} for k in by_auc]


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


def diagnostics_summary(diag: list[dict], arms: list[str], empty: bool = True) -> list[dict]:
    """Mean (and ``<key>_std``, population std) of each diagnostic over cycles and seeds, per arm.

    None where an arm has no value; ``batches`` counts the selected batches averaged. ``empty=False``
    leaves out arms with no selected batch on disk (partial results) instead of giving them a row of None.
    """
    keys = ("pairwise_ratio", "to_labelled_ratio", "class_entropy", "misclassified_fraction", "mean_confidence")
    out = []
    for arm in arms:
        rs = [r for r in diag if r["arm"] == arm]
        if not rs and not empty:
            continue
        row = {"arm": arm, "batches": len(rs)}
        for k in keys:
            vals = [r[k] for r in rs if r.get(k) is not None]
            row[k] = float(np.mean(vals)) if vals else None
            row[k + "_std"] = float(np.std(vals)) if vals else None
        out.append(row)
    return out


def entropy_gap(rows: Iterable[dict]) -> list[dict]:
    """Records with ``entropy_gap`` = mean entropy of q(y|x) on unlabelled minus on labelled points (nats).

    Records without both entropies (learners that do not measure them) are left out.
    """
    return [dict(r, entropy_gap=r["pred_entropy_unlabelled"] - r["pred_entropy_labelled"]) for r in rows
            if r.get("pred_entropy_unlabelled") is not None and r.get("pred_entropy_labelled") is not None]


def coverage(exp, rows: list[dict]) -> dict:
    """How much of ``exp`` (an :class:`alkit.experiment.Experiment`) the records ``rows`` hold: per run and in total.

    ``runs``: one dict per (arm, seed) of the parameters, in arm then seed order: ``arm, seed,
    cycles`` (sorted cycle numbers present), ``n_labelled`` (their label counts), ``expected``
    (``cycles + 1`` of its config), ``stopped`` (the stopping rule ended it) and ``finished``
    (every cycle present, or stopped). Totals: ``runs_total, runs_started, runs_finished,
    cycles_on_disk, cycles_expected`` (a stopped run expects the cycles it has) and ``partial``
    (some run is not finished).
    """
    present: dict = {}
    for r in rows:
        if r.get("cycle") is not None:
            present.setdefault((r.get("arm"), r.get("seed")), {})[r["cycle"]] = r
    runs = []
    for arm in exp.arms:
        expected = exp.config(arm, exp.seeds[0]).cycles + 1
        for seed in exp.seeds_of(arm) if hasattr(exp, "seeds_of") else exp.seeds:
            recs = present.get((arm, seed), {})
            cycles = sorted(recs)
            stopped = bool(cycles) and bool(recs[cycles[-1]].get("stopped"))
            runs.append({"arm": arm, "seed": seed, "cycles": cycles, "expected": expected, "stopped": stopped,
                         "n_labelled": [recs[c].get("n_labelled") for c in cycles],
                         "finished": stopped or len(cycles) >= expected})
    out = {"runs": runs, "runs_total": len(runs), "runs_started": sum(1 for r in runs if r["cycles"]),
           "runs_finished": sum(1 for r in runs if r["finished"]),
           "cycles_on_disk": sum(len(r["cycles"]) for r in runs),
           "cycles_expected": sum(len(r["cycles"]) if r["stopped"] else r["expected"] for r in runs)}
    out["partial"] = out["runs_finished"] < out["runs_total"]
    return out


def cycle_span(cycles: list[int]) -> str:
    """``[0, 1, 2]`` -> "0-2"; gaps as in "0-2, 5"; one cycle -> "3"."""
    parts, start = [], None
    for i, c in enumerate(cycles):
        if start is None:
            start = c
        if i + 1 == len(cycles) or cycles[i + 1] != c + 1:
            parts.append(str(start) if start == c else f"{start}-{c}")
            start = None
    return ", ".join(parts)


def sample_row_labels(sample_rows, class_names) -> list[str]:
    """Row labels of a samples grid: ``"y=k"`` (an M2 row decoded with class k) -> ``class_names[k]``, else ``""``."""
    out = []
    for s in (str(v) for v in sample_rows):
        k = s[2:] if s.startswith("y=") else ""
        out.append(class_names[int(k)] if k.isdigit() and int(k) < len(class_names) else "")
    return out


def checkpoint_rows(rows: Iterable[dict], arms: Iterable[str]) -> list[dict]:
    """Per arm and label count, means over seeds: the best-validated state's test accuracy (``test_acc``, the
    one every figure reports), the final state's (``test_acc_final``: the model after its last iteration or
    early stop, before the best validated state is restored) and the validation-set size that chose the
    checkpoint (``n_val``). Records without ``test_acc_final`` (written before it existed) are skipped. Both
    accuracies are read at :func:`rounded_accuracies`' resolution, so one state measured twice has a gap of 0."""
    out = []
    for arm in arms:
        kept = [rounded_accuracies(r) for r in rows if r.get("arm") == arm and r.get("test_acc_final") is not None]
        for (n,), rs in sorted(group(kept, "n_labelled").items()):
            out.append({"arm": arm, "n_labelled": n, "n_val": rs[0].get("n_val"), "seeds": len(rs),
                        "best": 100 * float(np.mean([r["test_acc"] for r in rs])),
                        "final": 100 * float(np.mean([r["test_acc_final"] for r in rs])),
                        "gap": 100 * float(np.mean([r["test_acc"] - r["test_acc_final"] for r in rs]))})
    return out


def rounded_accuracies(r: dict) -> dict:
    """``r`` with ``test_acc`` and ``test_acc_final`` rounded to 1e-6: the first is a float32 mean, the second an
    exact fraction, so the same state would otherwise differ by ~1e-8 (test sets are far below 10^6 images)."""
    return {**r, **{k: round(r[k], 6) for k in ("test_acc", "test_acc_final") if r.get(k) is not None}}
