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

#: test accuracy (%) of the study's "Initial Set of Results On Fashion MNIST", 1000 -> 8000 labels, one run. The
#: slide never names the arm: it follows "Proposed Model" (M2-VAAL) and "Components of our Architecture:
#: Variational autoencoder with classifier ..." and precedes "Comparison to TA-VAAL, VAAL and Random Selection",
#: so it is most likely the study's own model, M2-VAAL. Label it as :data:`STUDY_1000_NAME` says.
STUDY_1000 = {1000: 84.91, 2000: 85.84, 3000: 86.58, 4000: 87.33, 5000: 88.66, 6000: 88.79, 7000: 89.94, 8000: 90.37}
STUDY_1000_NAME = "the study's model, one run; most likely M2-VAAL \u2014 the slide does not say"
#: the arms of ours set beside it: the study's model and VAAL
STUDY_1000_ARMS = ("m2_vaal", "vaal")
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


def aubc(rows: Iterable[dict], y: str = "test_acc", by: str = "arm", min_cycle: int = 0) -> list[dict]:
    """Area under the budget curve per run, normalised by the label range (so it is a mean accuracy).

    Trapezoid rule of ``y`` over ``n_labelled`` for each (arm, seed) (see
    :func:`per_seed`); then mean and std over seeds per arm. Records without
    ``y`` are skipped. Only the label counts that every unfinished-or-complete
    run of every arm has are used (:func:`common_labels`), so a run still
    under way (partial results) does not give its arm an area over a shorter
    range than the others; runs the stopping rule ended are compared over the
    cycles they have. :func:`grid_note` says when label counts were left out. ``min_cycle=1`` keeps the
    cycles after the first acquisition only (the notebooks' one AUBC, :data:`alkit.comparisons.AUBC_MIN_CYCLE`).
    """
    rows = [r for r in rows if min_cycle <= 0 or r["cycle"] >= min_cycle]
    rows, _ = on_common_labels(rows, y=y, by=by)
    return [
        {by: b, "aubc": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, "n": len(v)}
        for b, v in ((b, list(seeds.values())) for b, seeds in per_seed(rows, y=y, by=by).items())
    ]


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


def _labels_text(labels: list) -> str:
    """"1,000–3,000 labels" (or "1,000 labels" for one count)."""
    lo, hi = labels[0], labels[-1]
    return f"{lo:,} labels" if lo == hi else f"{lo:,}\u2013{hi:,} labels"


def grid_note(rows: Iterable[dict], y: str = "test_acc", by: str = "arm", what: str = "The areas under the budget curve") -> str:
    """A sentence when some run has label counts that others lack (partial results), else "".

    E.g. "The areas under the budget curve use 1,000–3,000 labels only (3 label counts): those every
    seed of every arm has; 2 more label counts on disk for some seeds are left out of them."
    """
    rows = list(rows)
    _, info = on_common_labels(rows, y=y, by=by)
    if not info["dropped"]:
        return ""
    if not info["labels"]:
        return f"{what}: no label count is shared by every seed of every arm yet, so nothing is compared."
    k = len(info["labels"])
    return (f"{what} use {_labels_text(info['labels'])} only ({k} label count{'s' if k != 1 else ''}): those every seed "
            f"of every arm has; {info['dropped']} more label count{'s' if info['dropped'] != 1 else ''} on disk for "
            "some seeds are left out of them.")


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


#: fewer seeds than this give no direction ("higher", "lower"): with 2 seeds the t-test has 1 degree of
#: freedom and the sign-flip test cannot go below 0.5
MIN_SEEDS_FOR_DIRECTION = 3


def minimum_detectable_effect(std: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float | None:
    """Smallest true mean difference a two-sided paired t-test over ``n`` seeds finds with ``power``.

    ``(t_{1 - alpha/2, n-1} + t_{power, n-1}) * std / sqrt(n)`` (the usual normal-approximation formula
    with t quantiles), ``std`` the measured spread (ddof 1) of the per-seed differences, in their units.
    None for fewer than 2 seeds or no spread measured.
    """
    from scipy import stats

    if std is None or n < 2 or not math.isfinite(std):
        return None
    df = n - 1
    return float((stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * std / math.sqrt(n))


def holm(pvalues: Iterable[float | None]) -> list[float | None]:
    """Holm–Bonferroni adjusted p-values (same order; None entries are not tests and stay None).

    Sorted ascending, the k-th smallest of m gets ``max over j <= k of min(1, (m - j + 1) p_(j))``;
    rejecting where the adjusted p < alpha keeps the chance of any false rejection in the family <= alpha.
    """
    ps = list(pvalues)
    idx = sorted((i for i, p in enumerate(ps) if p is not None), key=lambda i: ps[i])
    m, out, running = len(idx), [None] * len(ps), 0.0
    for k, i in enumerate(idx):
        running = max(running, min(1.0, (m - k) * ps[i]))
        out[i] = running
    return out


def correct_family(results: list[dict], alpha: float | None = None) -> list[dict]:
    """A notebook's family of :func:`compare_seeds` results, Holm-corrected together.

    Each result gets ``p_raw`` (its own p), ``p_holm`` (adjusted over the ``family_size`` testable
    comparisons; None where not testable), its verdict re-read from ``p_holm`` and ``mde`` at Holm's
    strictest level ``alpha / family_size`` (the smallest effect the family could be sure to find).
    """
    ps = [r["p"] if r.get("testable") else None for r in results]
    adjusted = holm(ps)
    m = sum(p is not None for p in ps)
    out = []
    for r, pa in zip(results, adjusted):
        level = r["alpha"] if alpha is None else alpha
        r = dict(r, p_raw=r.get("p"), p_holm=pa, family_size=m)
        if pa is not None:
            r["verdict"] = ("within noise" if not pa < level else f"{r['a']} higher" if r["mean"] > 0 else f"{r['b']} higher")
            r["mde"] = minimum_detectable_effect(r["std"], r["n"], level / m) if r["std"] else r.get("mde")
        out.append(r)
    return out


def paired_seed_test(diffs, alpha: float = 0.05, a: str = "a", b: str = "b",
                     min_seeds: int = MIN_SEEDS_FOR_DIRECTION) -> dict:
    """Is the mean of per-seed differences ``diffs`` (n,) (a - b, one per seed) told apart from zero?

    Returns ``n, mean, std`` (ddof 1), ``se = std / sqrt(n)``, ``df = n - 1``,
    ``t = mean / se``, ``p`` (two-sided paired t-test on ``df`` degrees of
    freedom), ``ci_low, ci_high`` (the t-based ``1 - alpha`` interval of the
    mean difference), ``p_signflip`` (two-sided sign-flip permutation test,
    exact for n <= 20), ``min_p_signflip = 2 / 2**n`` (its smallest reachable
    value), ``testable`` and ``verdict``, all plain Python values.

    Verdict: fewer than ``min_seeds`` (3) seeds -> ``"not testable with n seed(s)"``: no
    direction is read from 2 seeds (1 degree of freedom); ``mean`` and, with 2 seeds, ``std``
    and ``se`` (the spread) are given, every other statistic is None. Otherwise
    ``"{a} higher"`` / ``"{b} higher"`` when ``p < alpha``, else ``"within
    noise"``. When all differences are equal (std 0): nonzero -> ``t = ±inf``,
    ``p = 0`` and a direction (every seed moved the same way by the same
    amount); all zero -> ``t = 0``, ``p = 1``, within noise. ``mde``: the
    :func:`minimum_detectable_effect` at ``alpha`` and 80 % power for this
    number of seeds and measured spread.

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
           "ci_low": None, "ci_high": None, "p_signflip": None, "min_p_signflip": min(1.0, 2.0 / 2.0 ** n), "mde": None}
    if n < min_seeds:
        if n >= 2:  # the effect with its spread, but no test: a 1-degree-of-freedom t-test decides nothing
            out.update(std=float(d.std(ddof=1)), se=float(d.std(ddof=1) / np.sqrt(n)))
        return {**out, "testable": False, "verdict": f"not testable with {n} seed{'' if n == 1 else 's'}"}
    mean, std = float(d.mean()), float(d.std(ddof=1))
    se, df = std / np.sqrt(n), n - 1
    out["mde"] = minimum_detectable_effect(std, n, alpha)
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

    Partial results: only seeds present in both arms are used, and only the label counts every one of
    those runs has (:func:`common_labels`), so a run still under way is not compared over a shorter
    range than its partner. ``labels`` is that grid, ``labels_dropped`` how many other label counts
    were on disk (0 with complete runs), ``missing`` the arms of ``a, b`` without any value.
    """
    kept = [r for r in rows if r.get(by) in (a, b) and r.get(y) is not None and (min_cycle <= 0 or r["cycle"] >= min_cycle)]
    by_arm = {arm: {r.get("seed") for r in kept if r.get(by) == arm} for arm in (a, b)}
    paired = by_arm[a] & by_arm[b]
    kept, info = on_common_labels([r for r in kept if r.get("seed") in paired], y=y, by=by)
    values = per_seed(kept, y=y, by=by, summary=summary)
    left, right = values.get(a, {}), values.get(b, {})
    seeds = sorted(set(left) & set(right), key=_seed_order)
    diffs = [left[s] - right[s] for s in seeds]
    return {"a": a, "b": b, "y": y, "summary": summary, "alpha": alpha, "seeds": seeds, "diffs": diffs,
            "labels": info["labels"] if seeds else [], "labels_dropped": info["dropped"],
            "missing": [arm for arm in dict.fromkeys((a, b)) if not by_arm[arm]],
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
    if d.get("labels_dropped") and d.get("labels") and isinstance(d["labels"][0], numbers.Real):
        amount += f" over {_labels_text(d['labels'])} only (the label counts every compared seed has)"
    if not d["testable"]:
        if d["n"] >= 2 and d.get("std") is not None:
            each = ", ".join(_signed(scale * v) for v in d.get("diffs") or [])
            spread = f" (per seed {each}; sd {scale * d['std']:.2f})" if each else f" (sd {scale * d['std']:.2f})"
            return (f"{head}: {amount}{spread} \u2014 {d['verdict']}: a direction needs at least "
                    f"{MIN_SEEDS_FOR_DIRECTION} seeds.")
        return f"{head}: {amount} \u2014 {d['verdict']}."
    level = f"{100 * (1 - d['alpha']):g}%"
    holm_text = (f", Holm-adjusted p {_p_text(d['p_holm'])} over {d['family_size']} comparisons"
                 if d.get("p_holm") is not None else "")
    text = (f"{head}: {amount} ({level} CI {_signed(scale * d['ci_low'])} to "
            f"{_signed(scale * d['ci_high'])}; paired t over {d['n']} seeds, p {_p_text(d['p'])}{holm_text}; "
            f"sign-flip p {_p_text(d['p_signflip'])}) \u2014 {d['verdict']}")
    if d["verdict"] == "within noise" and d.get("mde") is not None:
        text += (f": with {d['n']} seeds and this spread, differences below \u2248 {scale * d['mde']:.2g}"
                 f"{' ' + unit if unit else ''} cannot be told from noise")
    return text + "."


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
    """Two clauses for a notebook: the cycle-0 (learner) gap, then the AUBC gap after acquisition.

    An arm with no records yet (partial results) gives one clause saying so instead.
    """
    missing = v["cycle0"].get("missing") or []
    if missing:
        return f"not compared yet: no records of {' and '.join(missing)}."
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


def auc_noise(rows: Iterable[dict], key: str = "n_disc_heldout") -> dict:
    """Standard error of a chance ROC AUC (0.5) on the smallest held-out set: ``n`` labelled and ``n``
    unlabelled points give ``sqrt((2n + 1) / (12 n^2))`` (Hanley & McNeil 1982, the Mann-Whitney null).
    ``n_min``, ``n_max``, ``se_at_chance``; empty when no record has ``key``."""
    ns = [int(r[key]) for r in rows if r.get(key)]
    if not ns:
        return {}
    n = min(ns)
    return {"n_min": n, "n_max": max(ns), "se_at_chance": float(np.sqrt((2 * n + 1) / (12 * n * n)))}


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


def describe_stopping(rows: Iterable[dict], threshold: float) -> list[str]:
    """Lines for notebook 03: where the stopping rule (held-out AUC <= ``threshold``) would stop each run,
    where the accuracy signal would have, how many decisions the two disagree on, and the noise of the AUC."""
    rows = list(rows)
    out = []
    decisions = stop_decisions(rows, threshold)
    when = lambda c: "never" if c is None else f"cycle {c}"
    for d in decisions:
        line = (f"- Stopping rule (held-out ROC AUC \u2264 {threshold:g}) for {d['arm']}, seed {d['seed']}: {when(d['auc'])}; "
                f"by held-out accuracy \u2264 {100 * threshold:g} % (second line): {when(d['acc'])}")
        if d["flat"]:
            line += (f" (accuracy exactly 50 % at cycle{'s' if len(d['flat']) > 1 else ''} "
                     f"{', '.join(map(str, d['flat']))}: every logit on one side of 0, the AUC still ranks)")
        out.append(line + ".")
    if decisions:
        k = sum(d["changed"] for d in decisions)
        out.append(f"- AUC and accuracy disagree on {k} of {len(decisions)} stop decisions.")
    noise = auc_noise(rows)
    if noise:
        out.append(f"- The held-out set behind this signal has {noise['n_min']}\u2013{noise['n_max']} labelled and as many unlabelled "
                   f"points per cycle, so an AUC of 0.5 is measured to \u00b1 {noise['se_at_chance']:.2f} (one standard error): "
                   + ("crossings of the stop line are within that noise." if noise["se_at_chance"] > abs(threshold - 0.5)
                      else "the stop line lies outside that noise."))
    return out


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
    the experiment folder, so redrawing does not re-time it. None when the run has not reached
    ``cycle`` yet (partial results: no record of that cycle on disk).
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
        if not any(r.get("cycle") == cycle for r in results.read_records(exp.run_dir(arm, seed) / results.RECORDS_FILE)):
            return None  # the run has not reached this cycle yet
        raise FileNotFoundError(f"{path} missing: set latent_sample for arm {arm!r} to compare norm scores")
    f = np.load(path)
    z = torch.as_tensor(f["z"].astype(np.float32))
    unl, lab = f["status"] == 0, f["status"] == 1
    classes = count_classes(results.read_records(exp.run_dir(arm, seed) / results.RECORDS_FILE))
    ctx = Context(learner=None, x_unlabelled=z[unl], x_labelled=z[lab], y_labelled=torch.as_tensor(f["y"][lab]).long(),
                  unlabelled_indices=f["pool_index"][unl], labelled_indices=f["pool_index"][lab],
                  num_classes=classes or int(f["y"].max()) + 1, seed=seed)
    ctx.provide(latent=z[unl], labelled_latent=z[lab])  # the saved codes stand in for the model
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
    votes = np.array([np.bincount(y[n]).argmax() for n in neigh])  # the majority class among the neighbours
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
    if exp.oracle is None:  # an oracle session grows round by round: "partial" would say nothing
        from .experiment import coverage

        cov = coverage(exp, list(rows))
        if cov["partial"]:
            parts.append(f"PARTIAL: {partial_counts(cov)}")
    return " · ".join(p for p in parts if p)


def partial_counts(cov: dict) -> str:
    """"3 of 15 runs started, 9 of 120 cycles" from :func:`alkit.experiment.coverage`."""
    return (f"{cov['runs_started']} of {cov['runs_total']} runs started, "
            f"{cov['cycles_on_disk']:,} of {cov['cycles_expected']:,} cycles")


def _seeds_text(seeds: list) -> str:
    return f"seed{'s' if len(seeds) != 1 else ''} {', '.join(str(s) for s in seeds)}"


def partial_note(exp, rows: Iterable[dict]) -> str:
    """Markdown for a notebook when its results are partial (what is missing), or empty when every run is finished.

    No record at all: says that nothing of the notebook has run yet, so its figures and statistics are
    skipped. Otherwise: the counts of :func:`partial_counts`, the arms with no record (left out of
    every figure and table), and per arm the seeds that are still under way with their cycles on disk.
    """
    from .experiment import coverage, cycle_span

    if exp.oracle is not None:
        return ""
    cov = coverage(exp, list(rows))
    if not cov["partial"]:
        return ""
    if not cov["runs_started"]:
        return (f"**Nothing of this notebook has run yet** in the `{exp.profile}` profile: no records under "
                f"`{exp.folder}` (0 of {cov['runs_total']} runs, 0 of {cov['cycles_expected']:,} cycles), so its figures "
                f"and statistics are skipped. Train them with `alkit run params/{exp.profile}/{exp.name}.yaml`, then redraw.")
    lines = [f"**Partial results**: {partial_counts(cov)} ({cov['runs_finished']} finished). Figures and numbers "
             "below use what is on disk: a mean at a label count is over the seeds that reached it, and areas under "
             "the budget curve and paired comparisons use only the label counts every compared seed has."]
    by_arm: dict = {}
    for r in cov["runs"]:
        by_arm.setdefault(r["arm"], []).append(r)
    absent = [a for a, rs in by_arm.items() if not any(r["cycles"] for r in rs)]
    if absent:
        lines.append(f"- No record yet (left out of every figure and table): {', '.join(f'`{a}`' for a in absent)}.")
    for arm, rs in by_arm.items():
        if arm in absent:
            continue
        cfg = exp.config(arm, exp.seeds[0])
        target = cfg.initial.n + cfg.cycles * cfg.budget
        spans: dict = {}
        for r in rs:
            if r["finished"]:
                continue
            key = (cycle_span(r["cycles"]), r["n_labelled"][0] if r["cycles"] else None,
                   r["n_labelled"][-1] if r["cycles"] else None)
            spans.setdefault(key, []).append(r["seed"])
        parts = []
        for (span, lo, hi), seeds in spans.items():
            parts.append(f"{_seeds_text(seeds)}: no cycle on disk" if not span else
                         f"{_seeds_text(seeds)}: cycles {span} of {cycle_span(list(range(cfg.cycles + 1)))} "
                         f"({lo:,}\u2013{hi:,} of {cfg.initial.n:,}\u2013{target:,} labels)")
        if parts:
            lines.append(f"- `{arm}` under way: " + "; ".join(parts) + ".")
    return "\n".join(lines)


def describe_best_aubc(aubc_rows: list[dict], rows: Iterable[dict], y: str = "test_acc", min_cycle: int = 0,
                       family_size: int = 0, alpha: float = 0.05) -> str:
    """The "What we see" line on the areas under the budget curve of :func:`aubc`.

    The arm with the largest mean is named "best" only when it beats the runner-up under a paired test
    over seeds (:func:`compare_seeds` on the same AUBC), Bonferroni-corrected for the ``family_size``
    other comparisons of the notebook plus this one (a data-chosen pair, so no less strict than Holm);
    otherwise "no arm distinguishable from the others", with the two means and the runner-up test.
    """
    if not aubc_rows:
        return "- No area under the budget curve yet: no arm has records."
    rows = [r for r in rows if min_cycle <= 0 or r["cycle"] >= min_cycle]
    _, info = on_common_labels(list(rows), y=y)
    seeds = max(r["n"] for r in aubc_rows)
    where = f"{seeds} seed{'s' if seeds != 1 else ''} and {len(info['labels'])} label count{'s' if len(info['labels']) != 1 else ''}"
    if len(aubc_rows) == 1:
        (r,) = aubc_rows
        return (f"- Only **{r['arm']}** has records yet: over {where}, its area under the budget curve is "
                f"{100 * r['aubc']:.2f} ± {100 * r['std']:.2f} %; nothing to compare it with.")
    ranked = sorted(aubc_rows, key=lambda r: -r["aubc"])
    best, second = ranked[0], ranked[1]
    d = compare_seeds(rows, best["arm"], second["arm"], y=y, min_cycle=min_cycle, alpha=alpha)
    m = family_size + 1
    if d["testable"]:
        d = dict(d, p_holm=min(1.0, m * d["p"]), family_size=m)
        d["verdict"] = f"{best['arm']} higher" if d["p_holm"] < alpha and d["mean"] > 0 else "within noise"
        if d["verdict"] == "within noise" and d["std"]:
            d["mde"] = minimum_detectable_effect(d["std"], d["n"], alpha / m)
    means = (f"{best['arm']} {100 * best['aubc']:.2f} ± {100 * best['std']:.2f} %, runner-up {second['arm']} "
             f"{100 * second['aubc']:.2f} ± {100 * second['std']:.2f} %")
    if d["testable"] and d["verdict"] == f"{best['arm']} higher":
        return (f"- Over {where}, the best area under the budget curve is **{best['arm']}**, ahead of the runner-up "
                f"under the corrected test ({means}; {describe_comparison(d)})")
    return (f"- Over {where}: no arm distinguishable from the others by area under the budget curve "
            f"(largest means: {means}; best vs runner-up: {describe_comparison(d)})")


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


def _unseen_shares(cover: dict, arm: str) -> list[float]:
    """Per seed of ``arm``, the share of its selected images from the unseen classes (:func:`class_coverage`)."""
    return [v["share"] for (a, _), v in cover.items() if a == arm]


def describe_unseen_share(cover: dict, arms: Iterable[str]) -> list[str]:
    """Lines on :func:`class_coverage`: per arm with records, the share of selected images from the unseen
    classes (mean over seeds) and the first batch per seed with one; arms without records say so."""
    lines = []
    for arm in arms:
        share = _unseen_shares(cover, arm)
        first = [v["first_cycle"] for (a, s), v in cover.items() if a == arm]
        if not share:
            lines.append(f"- **{arm}**: no records yet.")
            continue
        lines.append(f"- **{arm}**: {100 * sum(share) / len(share):.1f} % of all selected images belong to the seven unseen "
                     f"classes (mean over {len(share)} seeds); first batch with an unseen class, per seed: cycle "
                     f"{', '.join('never' if f is None else str(f) for f in first)}.")
    return lines


def unseen_share_line(cover: dict, arms: Iterable[str]) -> str:
    """"Share of selected images from the seven unseen classes (mean over seeds): a x %, b y %." over arms with records."""
    parts = []
    for arm in arms:
        share = _unseen_shares(cover, arm)
        if share:
            parts.append(f"{arm} {100 * sum(share) / len(share):.1f} %")
    missing = [a for a in arms if not any(k[0] == a for k in cover)]
    text = ("- Share of selected images from the seven unseen classes (mean over seeds): "
            + (", ".join(parts) if parts else "no arm has records yet") + ".")
    return text + (f" No records yet: {', '.join(missing)}." if missing and parts else "")


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


def count_classes(rows: Iterable[dict]) -> int | None:
    """The number of classes the records were drawn over (the length of their ``labelled_class_counts``)."""
    return next((len(r["labelled_class_counts"]) for r in rows if r.get("labelled_class_counts")), None)


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


def _spearman(a, b) -> float | None:
    from scipy import stats

    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = ~(np.isnan(a) | np.isnan(b))
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return None  # a constant vector has no ranks to correlate
    return float(stats.spearmanr(a[ok], b[ok]).statistic)


def confusion_relation(rows: Iterable[dict], arms: Iterable[str], baseline: str = "random") -> list[dict]:
    """The study's last claim, per (arm, seed, cycle): do the selected batches go where the model errs?

    For the batch an arm selects at the end of a cycle: ``rho`` = Spearman correlation between its class
    shares and the per-class test error (:func:`per_class_error` of the record's ``test_confusion``) of the
    model that chose it; ``rho_random`` = the same model's error against the class shares of ``baseline``'s
    batch of the same size at the same seed and cycle (random acquisition, same learner: at cycle 0 the
    very same model). ``misclassified`` / ``misclassified_random``: the share of each batch its own
    arm's model misclassifies (``diagnostics.misclassified_fraction``). Rows where a correlation is
    undefined (a constant vector) keep None.
    """
    rows = list(rows)
    base = {(r["seed"], r["cycle"]): r for r in rows if r.get("arm") == baseline and r.get("selected_class_counts")}
    out = []
    for r in rows:
        if r.get("arm") not in arms or r.get("arm") == baseline or not r.get("selected_class_counts") \
                or r.get("test_confusion") is None or (r["seed"], r["cycle"]) not in base:
            continue
        b = base[(r["seed"], r["cycle"])]
        err = per_class_error(r["test_confusion"])
        share = np.asarray(r["selected_class_counts"], float)
        share_b = np.asarray(b["selected_class_counts"], float)
        out.append({"arm": r["arm"], "seed": r["seed"], "cycle": r["cycle"], "n_labelled": r["n_labelled"],
                    "rho": _spearman(share / share.sum(), err), "rho_random": _spearman(share_b / share_b.sum(), err),
                    "misclassified": (r.get("diagnostics") or {}).get("misclassified_fraction"),
                    "misclassified_random": (b.get("diagnostics") or {}).get("misclassified_fraction")})
    for o in out:
        o["rho_gain"] = None if o["rho"] is None or o["rho_random"] is None else o["rho"] - o["rho_random"]
        o["misclassified_gain"] = (None if o["misclassified"] is None or o["misclassified_random"] is None
                                   else round(o["misclassified"] - o["misclassified_random"], 6))  # float32 shares: no 1e-8 "gains"
    return out


def confusion_claim_tests(relation: list[dict], arms: Iterable[str], alpha: float = 0.05) -> list[dict]:
    """Per arm, two paired tests over seeds (each seed's mean over its cycles first): ``rho_gain`` (rank
    correlation with the per-class error, selected minus random batch) and ``misclassified_gain``
    (misclassified share, selected minus random batch), each against 0. Rows as :func:`compare_seeds`'s
    (``a`` the arm, ``b`` "random batch") with ``y``, ``kind`` and ``held_fixed``, for a notebook family."""
    out = []
    for arm in arms:
        for y in ("rho_gain", "misclassified_gain"):
            seeds = per_seed([r for r in relation if r["arm"] == arm], y=y, summary="mean").get(arm, {})
            diffs = list(seeds.values())
            d = paired_seed_test(diffs, alpha=alpha, a=arm, b="random batch")
            out.append({"a": arm, "b": "random batch", "y": y, "alpha": alpha, "seeds": list(seeds), "diffs": diffs,
                        "missing": [] if diffs else [arm], **d, "kind": f"confusion claim: {y}",
                        "held_fixed": "learner and cycle", "unit": "(\u03c1)" if y == "rho_gain" else "(share)"})
    return out


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


#: the study's "Increased Model Capacity" slide: "~3M parameters", "Training with 1000 labeled samples: ~85%
#: accuracy", "Training with 50 labeled samples: ~68% accuracy" (approximate, as the slide says)
STUDY_CAPACITY_PARAMS = 3_000_000
STUDY_CAPACITY_ANCHORS = {50: 68.0, 1000: 85.0}
STUDY_CAPACITY_NAME = "the study's ~3M model: ~68 % at 50, ~85 % at 1,000 labels (its slide, approximate)"


def describe_capacity(rows: Iterable[dict]) -> str:
    """The study's "~3M parameters" read both ways from the records: q(y|x) alone (``classifier_params``)
    and the whole M2 (``m2_params``), and which of the two it matches (the closer, within a factor 1.5)."""
    rows = list(rows)
    q = sorted({int(r["classifier_params"]) for r in rows if r.get("classifier_params")})
    m2 = sorted({int(r["m2_params"]) for r in rows if r.get("m2_params")})
    if len(q) != 1 or len(m2) != 1:
        return "- Parameter counts: not recorded (or not one per run) yet."
    (q,), (m2,) = q, m2
    near = min((("q(y|x) alone", q), ("the whole M2", m2)), key=lambda kv: abs(math.log(kv[1] / STUDY_CAPACITY_PARAMS)))
    match = (f"the study's ~3M matches {near[0]}" if abs(math.log(near[1] / STUDY_CAPACITY_PARAMS)) <= math.log(1.5)
             else "neither is near the study's ~3M (this profile's classifier is another size)")
    return (f"- Capacity: q(y|x) alone has {q / 1e6:.2f}M parameters, the whole M2 (encoder, decoder and q(y|x)) "
            f"{m2 / 1e6:.2f}M; {match}.")


def describe_validation(exp, rows: Iterable[dict]) -> str:
    """The validation-set size beside the label counts: the checkpoint of every arm is chosen on ``val_size``
    labelled validation images, which at small label counts is far more labelled data than the training set
    (a known inflation of semi-supervised and active-learning results: Oliver et al. 2018)."""
    cfg = exp.config(next(iter(exp.arms)), exp.seeds[0])
    labels = sorted({r["n_labelled"] for r in rows if r.get("n_labelled") is not None})
    if not labels:
        return ""
    ratio = cfg.val_size / labels[0]
    return (f"- Validation: every checkpoint is chosen on {cfg.val_size:,} labelled validation images, beside "
            f"{_labels_text(labels)} for training ({ratio:.1f}\u00d7 the smallest labelled set): at small label counts "
            "this flatters every arm alike (Oliver et al. 2018); the test accuracies are of the best-validated state.")


def describe_task_model(rows: Iterable[dict], base: dict) -> str:
    """What task classifier this run trained, from its parameters and records (for a notebook's Method)."""
    rows = list(rows)
    size = (base.get("learner_params") or {}).get("classifier_size", "small")
    params = sorted({int(r["classifier_params"]) for r in rows if r.get("classifier_params")})
    count = f"{params[0] / 1e6:.2f}M parameters" if len(params) == 1 else "parameters not recorded"
    return f"the `{size}` task classifier ({count})"


def describe_against_random(rows: Iterable[dict], summary: list[dict], rank: list[dict], arm: str,
                            baseline: str = "random") -> str:
    """Notebook 05's line on ``arm`` (Alg 1 / Alg 2): its AUBC rank, the paired comparison with ``baseline``
    after the first acquisition, and how spread out and how often misclassified its batches are.
    Says so instead where ``arm`` or ``baseline`` has no records yet."""
    stats = {r["arm"]: r for r in summary}
    pos = {r["arm"]: i + 1 for i, r in enumerate(rank)}
    missing = [a for a in (arm, baseline) if a not in pos]
    if missing:
        return f"- {arm}: not compared yet: no records of {' and '.join(missing)}."
    d = compare_seeds(rows, arm, baseline, min_cycle=1)
    line = (f"- {arm}: rank {pos[arm]} of {len(rank)}; AUBC after the first acquisition, per seed then paired over seeds: "
            f"{describe_comparison(d)}")
    s, base = stats.get(arm), stats.get(baseline)
    if s and base and s["pairwise_ratio"] is not None and s["misclassified_fraction"] is not None \
            and base["misclassified_fraction"] is not None:
        line += (f" Its batches are {s['pairwise_ratio']:.2f}× as spread out as random batches and "
                 f"{100 * s['misclassified_fraction']:.1f} % of them are misclassified ({baseline}: "
                 f"{100 * base['misclassified_fraction']:.1f} %).")
    return line


def describe_accuracy_change(rows: Iterable[dict], arms: Iterable[str], seed=None, first: int = 0, last: int = 1) -> str:
    """Notebook 01's line: each arm's test accuracy at cycle ``first`` -> ``last`` (of ``seed``, default any);
    an arm short of a cycle says what it has."""
    acc = {(r["arm"], r["cycle"]): r for r in rows if seed is None or r.get("seed") == seed}
    parts = []
    for a in arms:
        x, y = acc.get((a, first)), acc.get((a, last))
        if x and y:
            parts.append(f"{a} {100 * x['test_acc']:.1f} % with {x['n_labelled']} labels → {100 * y['test_acc']:.1f} % with "
                         f"{y['n_labelled']}")
        elif x:
            parts.append(f"{a} {100 * x['test_acc']:.1f} % with {x['n_labelled']} labels (cycle {last} not on disk yet)")
        else:
            parts.append(f"{a}: no records yet")
    return "- Test accuracy of the task model: " + ", ".join(parts) + "."


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
    seeds = sorted({r["seed"] for r in rows}, key=_seed_order)
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


def checkpoint_rows(rows: Iterable[dict], arms: Iterable[str]) -> list[dict]:
    """Per arm and label count, means over seeds: the best-validated state's test accuracy (``test_acc``, the
    one every figure reports), the final state's (``test_acc_final``: the model after its last iteration or
    early stop, before the best validated state is restored) and the validation-set size that chose the
    checkpoint (``n_val``). Records without ``test_acc_final`` (written before it existed) are skipped."""
    out = []
    for arm in arms:
        kept = [r for r in rows if r.get("arm") == arm and r.get("test_acc_final") is not None]
        for (n,), rs in sorted(group(kept, "n_labelled").items()):
            out.append({"arm": arm, "n_labelled": n, "n_val": rs[0].get("n_val"), "seeds": len(rs),
                        "best": 100 * float(np.mean([r["test_acc"] for r in rs])),
                        "final": 100 * float(np.mean([r["test_acc_final"] for r in rs])),
                        "gap": 100 * float(np.mean([r["test_acc"] - r["test_acc_final"] for r in rs]))})
    return out


def checkpoint_tests(rows: Iterable[dict], arms: Iterable[str]) -> list[dict]:
    """Per arm, best-validated against final state with the seed as the unit (:func:`compare_seeds` on one
    AUBC per seed over every cycle, the start included: the gap matters most at the smallest label
    counts), the arms Holm-corrected as one family (:func:`correct_family`)."""
    rows = list(rows)
    tests = []
    for arm in arms:
        kept = [r for r in rows if r.get("arm") == arm and r.get("test_acc_final") is not None]
        if not kept:
            continue
        pair = ([{**r, "arm": "best-validated"} for r in kept]
                + [{**r, "arm": "final state", "test_acc": r["test_acc_final"]} for r in kept])
        tests.append({**compare_seeds(pair, "best-validated", "final state"), "arm": arm})
    return correct_family(tests)


def checkpoint_markdown(rows: Iterable[dict], arms: Iterable[str]) -> str:
    """The checkpoint section of a notebook: the :func:`checkpoint_rows` table and one line per arm from
    :func:`checkpoint_tests` ('' when no record has ``test_acc_final``)."""
    rows = list(rows)
    table = checkpoint_rows(rows, arms)
    if not table:
        return ""
    text = markdown_table(table, [("arm", "arm", "s"), ("n_labelled", "labels", ",d"),
                                  ("n_val", "validation images", ",d"), ("seeds", "seeds", "d"),
                                  ("best", "best-validated (%)", ".2f"), ("final", "final state (%)", ".2f"),
                                  ("gap", "best − final (points)", "+.2f")])
    lines = [f"- {t['arm']}: " + describe_comparison(t) for t in checkpoint_tests(rows, arms)]
    return text + "\n\n" + "\n".join(lines)
