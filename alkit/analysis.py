"""Summaries computed from result records: curves over seeds, area under the budget curve, comparisons.

Every number a notebook states in prose comes from here, so "what we see"
paragraphs are computed, not typed.
"""
from __future__ import annotations

import math
import numbers
from collections import defaultdict
from typing import Iterable

import numpy as np

#: test accuracy (%) of the study's Fig./Table for VAAL on Fashion-MNIST, 1000 -> 8000 labels
STUDY_VAAL = {1000: 84.91, 2000: 85.84, 3000: 86.58, 4000: 87.33, 5000: 88.66, 6000: 88.79, 7000: 89.94, 8000: 90.37}
#: the study's three-class start ({2, 4, 7}, 500 labels, +64 per cycle): test accuracy (%) of its one run
STUDY_THREE_CLASS = {500: 27.25, 564: 28.34, 628: 30.29, 692: 40.42, 756: 36.39, 820: 36.61, 884: 39.97, 948: 42.84,
                     1012: 48.52, 1076: 45.46, 1140: 52.14, 1204: 50.59, 1268: 50.82, 1332: 49.86, 1396: 52.44}
#: the study's "Discriminator Selection of Samples" (three-class start, one run): class counts per class index
#: 0-9 of the initial set and of the first two batches of 64. Its "Skirt" is read as Shirt (class 6):
#: Fashion-MNIST has no skirt, and each list then sums to 64.
STUDY_THREE_CLASS_SELECTIONS = {
    "initial set": [0, 0, 166, 0, 167, 0, 0, 167, 0, 0],
    "batch 1": [2, 0, 4, 11, 7, 8, 13, 5, 10, 4],
    "batch 2": [1, 0, 19, 1, 5, 14, 5, 0, 1, 18],
}


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

    Trapezoid rule of ``y`` over ``n_labelled`` for each (arm, seed) (see
    :func:`per_seed`); then mean and std over seeds per arm. Records without
    ``y`` are skipped. Runs of one arm must share their ``n_labelled`` grid
    (stopped runs are compared over the cycles they have).
    """
    return [
        {by: b, "aubc": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, "n": len(v)}
        for b, v in ((b, list(seeds.values())) for b, seeds in per_seed(rows, y=y, by=by).items())
    ]


def _seed_order(seed) -> tuple:
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
    return {b: dict(sorted(out[b].items(), key=lambda kv: _seed_order(kv[0]))) for b in sorted(out, key=str)}


def _signflip_p(d: np.ndarray, exact_up_to: int = 20, draws: int = 100_000) -> float:
    """Two-sided sign-flip permutation p-value of the mean of ``d`` (n,): share of sign patterns with ``|sum| >= |observed|``.

    Exact over all ``2**n`` patterns for ``n <= exact_up_to`` (the pattern
    sums are built by doubling, 2**20 floats = 8 MB at most). Larger ``n``:
    ``draws`` random patterns from a fixed generator (seed 0) plus the
    observed one, ``(1 + hits) / (1 + draws)``.
    """
    obs = abs(float(d.sum()))
    tol = 1e-9 * float(np.abs(d).sum())  # the same sum added in another order must still count as a tie
    if d.size <= exact_up_to:
        sums = np.zeros(1)
        for v in d:
            sums = np.concatenate([sums + v, sums - v])  # (2**k,)
        return float(np.mean(np.abs(sums) >= obs - tol))
    signs = np.random.default_rng(0).choice([-1.0, 1.0], size=(draws, d.size))
    return float((1 + np.sum(np.abs(signs @ d) >= obs - tol)) / (1 + draws))


def paired_seed_test(diffs, alpha: float = 0.05, a: str = "a", b: str = "b") -> dict:
    """Is the mean of per-seed differences ``diffs`` (n,) (a - b, one per seed) told apart from zero?

    Returns ``n, mean, std`` (ddof 1), ``se = std / sqrt(n)``, ``df = n - 1``,
    ``t = mean / se``, ``p`` (two-sided paired t-test on ``df`` degrees of
    freedom), ``ci_low, ci_high`` (the t-based ``1 - alpha`` interval of the
    mean difference), ``p_signflip`` (two-sided sign-flip permutation test,
    exact for n <= 20), ``min_p_signflip = 2 / 2**n`` (its smallest reachable
    value), ``testable`` and ``verdict``, all plain Python values.

    Verdict: fewer than 2 seeds -> ``"not testable with n seed(s)"`` (every
    statistic but ``n``, ``mean`` and ``min_p_signflip`` is None). Otherwise
    ``"{a} higher"`` / ``"{b} higher"`` when ``p < alpha``, else ``"within
    noise"``. When all differences are equal (std 0): nonzero -> ``t = ±inf``,
    ``p = 0`` and a direction (every seed moved the same way by the same
    amount); all zero -> ``t = 0``, ``p = 1``, within noise.

    Assumptions: the t-test treats the per-seed summaries as independent and
    roughly normal; with 3-5 seeds nothing can check that, so ``p_signflip``
    is reported beside it. The sign-flip test assumes only symmetry about
    zero under no effect, but with n seeds it cannot go below ``2 / 2**n``:
    0.5 for 2 seeds, 0.25 for 3, 0.125 for 4, 0.0625 for 5 — below 0.05 only
    from 6 seeds on — so it decides nothing with fewer seeds; the verdict
    uses the t-test.
    """
    from scipy import stats  # installed with the notebook extras (scikit-learn); training does not need it

    d = np.asarray(diffs, dtype=float).ravel()
    n = int(d.size)
    out = {"n": n, "mean": float(d.mean()) if n else None, "std": None, "se": None, "df": None, "t": None, "p": None,
           "ci_low": None, "ci_high": None, "p_signflip": None, "min_p_signflip": min(1.0, 2.0 / 2.0 ** n)}
    if n < 2:
        return {**out, "testable": False, "verdict": f"not testable with {n} seed{'' if n == 1 else 's'}"}
    mean, std = float(d.mean()), float(d.std(ddof=1))
    se, df = std / np.sqrt(n), n - 1
    half = float(stats.t.ppf(1 - alpha / 2, df)) * se
    if std <= 1e-12 * abs(mean):  # the same difference in every seed (up to rounding)
        t, p = (0.0, 1.0) if mean == 0.0 else (float(np.copysign(np.inf, mean)), 0.0)
    else:
        t = mean / se
        p = float(2 * stats.t.sf(abs(t), df))
    out.update(mean=mean, std=std, se=float(se), df=df, t=float(t), p=p, ci_low=mean - half, ci_high=mean + half,
               p_signflip=_signflip_p(d))
    verdict = "within noise" if not p < alpha else f"{a} higher" if mean > 0 else f"{b} higher"
    return {**out, "testable": True, "verdict": verdict}


def compare_seeds(rows: Iterable[dict], a: str, b: str, y: str = "test_acc", by: str = "arm", min_cycle: int = 0,
                  summary: str = "aubc", alpha: float = 0.05) -> dict:
    """Arm ``a`` against arm ``b`` with the seed as the unit: one summary per seed and arm, then a paired test.

    Each seed's curve is reduced to one number by :func:`per_seed` (``summary``
    "aubc" or "mean", cycles ``>= min_cycle``); seeds present in both arms are
    paired (same seed = same initial set), ``diffs`` = a - b per seed, in seed
    order, in the units of ``y``. The test is :func:`paired_seed_test` (its
    docstring states the assumptions and the verdict rules). Returns a
    JSON-able dict: ``a, b, y, summary, alpha, seeds, diffs`` and the keys of
    :func:`paired_seed_test` (``n, mean, std, se, df, t, p, ci_low, ci_high,
    p_signflip, min_p_signflip, testable, verdict``).

    Why not every (seed, cycle) pair: cycles of one seed are strongly
    correlated, so counting them as independent pairs shrinks the standard
    error. With 3 seeds x 7 cycles and no true effect, "|mean| > 2 s.e. over
    all pairs" called 37 % (AR(1) cycles: 22 %) of comparisons real at a
    within-seed correlation of 0.5 and 58 % (54 %) at 0.95; this test calls
    5 % (``benchmarks/null_fpr.py``, 2000 experiments per row).
    """
    values = per_seed(rows, y=y, by=by, min_cycle=min_cycle, summary=summary)
    left, right = values.get(a, {}), values.get(b, {})
    seeds = sorted(set(left) & set(right), key=_seed_order)
    diffs = [left[s] - right[s] for s in seeds]
    return {"a": a, "b": b, "y": y, "summary": summary, "alpha": alpha, "seeds": seeds, "diffs": diffs,
            **paired_seed_test(diffs, alpha=alpha, a=a, b=b)}


def _signed(x: float) -> str:
    """``+1.23`` / ``−0.40`` with a real minus sign (U+2212); below 0.1 in size, three significant
    figures (``+0.00312``), so a small effect in small units never prints as ``+0.00``."""
    text = f"{x:+.2f}" if x == 0 or abs(x) >= 0.1 or not math.isfinite(x) else f"{x:+.3g}"
    return text.replace("-", "\u2212")


def _p_text(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"= {p:.3f}" if p < 0.01 else f"= {p:.2f}"


def describe_comparison(d: dict, scale: float = 100, unit: str = "points") -> str:
    """One sentence for a notebook's prose from a :func:`compare_seeds` result.

    ``scale`` turns the difference into ``unit`` (100: accuracy fractions to
    percentage points). Minus signs are the real minus (U+2212), also between
    the arm names, e.g. "vaal − random: +1.23 points (95% CI −0.40 to +2.86;
    paired t over 3 seeds, p = 0.14; sign-flip p = 0.25) — within noise."
    """
    head = f"{d['a']} \u2212 {d['b']}"
    if not d["testable"] and d["n"] == 0:
        return f"{head}: no seed in common \u2014 {d['verdict']}."
    amount = _signed(scale * d["mean"]) + (f" {unit}" if unit else "")
    if not d["testable"]:
        return f"{head}: {amount} \u2014 {d['verdict']}."
    level = f"{100 * (1 - d['alpha']):g}%"
    return (f"{head}: {amount} ({level} CI {_signed(scale * d['ci_low'])} to "
            f"{_signed(scale * d['ci_high'])}; paired t over {d['n']} seeds, p {_p_text(d['p'])}; "
            f"sign-flip p {_p_text(d['p_signflip'])}) \u2014 {d['verdict']}.")


def versus(rows: Iterable[dict], a: str, b: str, y: str = "test_acc", by: str = "arm") -> dict:
    """Arm ``a`` against arm ``b`` in two parts: before any acquisition, and after.

    ``cycle0``: :func:`compare_seeds` of ``y`` at cycle 0, where every arm holds the
    same initial labels (per seed), so a gap there is the *learner's*, not the
    acquisition's. ``after``: :func:`compare_seeds` of the per-seed AUBC over cycles
    >= 1 (learner and acquisition together; with the learner held fixed, the
    acquisition's effect).
    """
    rows = list(rows)
    first = [r for r in rows if r.get("cycle") == 0]
    return {"a": a, "b": b, "cycle0": compare_seeds(first, a, b, y=y, by=by, summary="mean"),
            "after": compare_seeds(rows, a, b, y=y, by=by, min_cycle=1)}


def describe_versus(v: dict, scale: float = 100, unit: str = "points") -> str:
    """Two clauses for a notebook: the cycle-0 (learner) gap, then the AUBC gap after acquisition."""
    return (f"before any acquisition (cycle 0, learner only): {describe_comparison(v['cycle0'], scale, unit)} "
            f"After acquisition (AUBC over cycles \u2265 1): {describe_comparison(v['after'], scale, unit)}")


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


def norm_comparison(exp, arm: str = "kernel_norm_approx", seed: int | None = None, cycle: int = 0,
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


def setting(exp, rows: Iterable[dict] = (), pool: int | None = None) -> str:
    """The setting of an experiment in one line, for figure subtitles and prose.

    E.g. "paper · pool 55,000 · start 1,000 labels (random), +1,000 per cycle × 7 · 8,593 training iterations
    per cycle · 3 seeds". The pool is ``pool`` when given (your own data), else the configured subset, else
    Fashion-MNIST's 60,000 training images less the validation set; iterations come from the records
    (``iterations_per_cycle``), a range where arms differ.
    """
    cfg = exp.config(next(iter(exp.arms)), exp.seeds[0])
    pool = pool or cfg.pool_size or 60_000 - cfg.val_size
    init = cfg.initial
    start = (f"start {init.n:,} labels of classes {{{', '.join(map(str, init.classes))}}}" if init.kind == "classes"
             else f"start {init.n:,} labels ({init.kind})")
    iters = sorted({int(r["iterations_per_cycle"]) for r in rows if r.get("iterations_per_cycle")})
    schedule = ("" if not iters else f"{iters[0]:,} training iterations per cycle" if len(iters) == 1
                else f"{iters[0]:,}–{iters[-1]:,} training iterations per cycle")
    n = len(exp.seeds)
    parts = [exp.profile, f"pool {pool:,}", f"{start}, +{cfg.budget:,} per cycle × {cfg.cycles}", schedule,
             f"{n} seed{'s' if n != 1 else ''}"]
    return " · ".join(p for p in parts if p)


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


def class_counts_by_cycle(rows: Iterable[dict], arm: str, num_classes: int = 10) -> list[tuple[str, list[int]]]:
    """Rows of a class histogram for ``arm``, summed over seeds: ("initial set", counts), ("batch 1", ...), ...

    The initial set is the labelled set of cycle 0 (``labelled_class_counts``); batch k is the one selected
    at the end of cycle k - 1 (``selected_class_counts``), i.e. the labels cycle k trains on in addition.
    """
    rs = [r for r in rows if r.get("arm") == arm]
    out = []
    initial = [r["labelled_class_counts"] for r in rs if r["cycle"] == 0 and r.get("labelled_class_counts")]
    if initial:
        out.append(("initial set", [int(v) for v in np.sum(initial, axis=0)]))
    for c in sorted({r["cycle"] for r in rs if r.get("selected_class_counts")}):
        counts = np.sum([r["selected_class_counts"] for r in rs if r["cycle"] == c and r.get("selected_class_counts")], axis=0)
        out.append((f"batch {c + 1}", [int(v) for v in np.resize(counts, num_classes)]))
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


def chosen_cycles(cycles: Iterable[int], k: int = 3) -> list[int]:
    """``k`` cycles spread over ``cycles`` (first, last and evenly between), for a static grid."""
    cs = sorted(set(cycles))
    if len(cs) <= k:
        return cs
    return sorted({cs[round(i * (len(cs) - 1) / (k - 1))] for i in range(k)})


def at_largest_budget(table: list[dict], by: str = "arm") -> list[dict]:
    """The rows of a :func:`curve` table at each arm's largest number of labels (``n_labelled``), in table order."""
    last: dict = {}
    for r in table:
        if r[by] not in last or r["n_labelled"] > last[r[by]]["n_labelled"]:
            last[r[by]] = r
    return list(last.values())


def describe_largest(table: list[dict], order: Iterable[str] | None = None, scale: float = 100, unit: str = "%") -> str:
    """"vaal 71.80 ± 0.85 % (400 labels, 2 seeds), …": mean ± sd over seeds at each arm's largest budget."""
    rows = {r["arm"]: r for r in at_largest_budget(table)}
    arms = [a for a in (order or rows) if a in rows]
    return ", ".join(f"{a} {scale * rows[a]['mean']:.2f} ± {scale * rows[a]['std']:.2f} {unit} "
                     f"({rows[a]['n_labelled']:,} labels, {rows[a]['n']} seed{'s' if rows[a]['n'] != 1 else ''})"
                     for a in arms)


def entropy_gap(rows: Iterable[dict]) -> list[dict]:
    """Records with ``entropy_gap`` = mean entropy of q(y|x) on unlabelled minus on labelled points (nats).

    Records without both entropies (learners that do not measure them) are left out.
    """
    return [dict(r, entropy_gap=r["pred_entropy_unlabelled"] - r["pred_entropy_labelled"]) for r in rows
            if r.get("pred_entropy_unlabelled") is not None and r.get("pred_entropy_labelled") is not None]


def describe_task_model(rows: Iterable[dict], base: dict) -> str:
    """What task classifier this run trained, from its parameters and records (for a notebook's Method)."""
    rows = list(rows)
    size = (base.get("learner_params") or {}).get("classifier_size", "small")
    params = sorted({int(r["classifier_params"]) for r in rows if r.get("classifier_params")})
    count = f"{params[0] / 1e6:.2f}M parameters" if len(params) == 1 else "parameters not recorded"
    return f"the `{size}` task classifier ({count})"
