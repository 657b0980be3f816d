"""Statistics over seeds: paired tests of per-seed summaries, Holm's correction, the smallest detectable effect,
and the noise of the discriminator's held-out signal.

The seed is the unit: each seed's curve is summarised first (:func:`alkit.analysis.tables.per_seed`), then arms
are compared across seeds (:func:`compare_seeds`); cycles of one seed are never independent samples.
"""
from __future__ import annotations

import functools
import math
from typing import Iterable

import numpy as np

from .tables import on_common_labels, per_class_error, per_seed, seed_order, rounded_accuracies


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


@functools.lru_cache(maxsize=None)
def t_quantile(q: float, df: int) -> float:
    """Student's t quantile ``scipy.stats.t.ppf(q, df)``, kept per (q, df): a notebook's family asks for the same
    few (1 - alpha / 2 and the power at 2-9 degrees of freedom), and each scipy call costs about 0.2 ms."""
    from scipy import stats

    return float(stats.t.ppf(q, df))


#: fewer seeds than this give no direction ("higher", "lower"): with 2 seeds the t-test has 1 degree of
#: freedom and the sign-flip test cannot go below 0.5
MIN_SEEDS_FOR_DIRECTION = 3


def minimum_detectable_effect(std: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float | None:
    """Smallest true mean difference a two-sided paired t-test over ``n`` seeds finds with ``power``.

    ``(t_{1 - alpha/2, n-1} + t_{power, n-1}) * std / sqrt(n)`` (the usual normal-approximation formula
    with t quantiles), ``std`` the measured spread (ddof 1) of the per-seed differences, in their units.
    None for fewer than 2 seeds or no spread measured.
    """
    if std is None or n < 2 or not math.isfinite(std):
        return None
    df = n - 1
    return float((t_quantile(1 - alpha / 2, df) + t_quantile(power, df)) * std / math.sqrt(n))


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
    half = t_quantile(1 - alpha / 2, df) * se
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
    seeds = sorted(set(left) & set(right), key=seed_order)
    diffs = [left[s] - right[s] for s in seeds]
    return {"a": a, "b": b, "y": y, "summary": summary, "alpha": alpha, "seeds": seeds, "diffs": diffs,
            "labels": info["labels"] if seeds else [], "labels_dropped": info["dropped"],
            "missing": [arm for arm in dict.fromkeys((a, b)) if not by_arm[arm]],
            **paired_seed_test(diffs, alpha=alpha, a=a, b=b)}


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


def auc_noise(rows: Iterable[dict], key: str = "n_disc_heldout") -> dict:
    """Standard error of a chance ROC AUC (0.5) on the smallest held-out set: ``n`` labelled and ``n``
    unlabelled points give ``sqrt((2n + 1) / (12 n^2))`` (Hanley & McNeil 1982, the Mann-Whitney null).
    ``n_min``, ``n_max``, ``se_at_chance``; empty when no record has ``key``."""
    ns = [int(r[key]) for r in rows if r.get(key)]
    if not ns:
        return {}
    n = min(ns)
    return {"n_min": n, "n_max": max(ns), "se_at_chance": float(np.sqrt((2 * n + 1) / (12 * n * n)))}


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
            # the misclassified share in percentage points, as its figure and the batch table give it (no "unit":
            # the family's default scale); the rank correlation in its own unit
            out.append({"a": arm, "b": "random batch", "y": y, "alpha": alpha, "seeds": list(seeds), "diffs": diffs,
                        "missing": [] if diffs else [arm], **d, "kind": f"confusion claim: {y}",
                        "held_fixed": "learner and cycle", **({"unit": "(\u03c1)"} if y == "rho_gain" else {})})
    return out


def class_entropy(counts: np.ndarray) -> float:
    """Shannon entropy (nats) of the class histogram; 0 for an empty batch, log C when balanced."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total == 0:
        return 0.0
    p = counts[counts > 0] / total
    return float(-(p * np.log(p)).sum())


def reconstruction_quality(original: np.ndarray, reconstruction: np.ndarray) -> dict:
    """How much better the reconstructions are than drawing the average image, per pixel.

    ``mse``: mean squared error of the reconstructions; ``mse_mean_image``: that of the average of the
    originals drawn for every one; ``gain`` = 1 - mse / mse_mean_image (0: no better than the average
    image; 1: perfect). Inputs (N, H, W) in [0, 1].
    """
    original, reconstruction = np.asarray(original, float), np.asarray(reconstruction, float)
    mse = float(np.mean((reconstruction - original) ** 2))
    base = float(np.mean((original.mean(0, keepdims=True) - original) ** 2))
    return {"mse": mse, "mse_mean_image": base, "gain": 1.0 - mse / base if base > 0 else float("nan")}


def mechanism_tests(diag: Iterable[dict], spread: Iterable[dict], arms: Iterable[str], plain: str = "m2_disc",
                    adv: str = "m2_vaal") -> list[dict]:
    """Notebook 04's test of the equalising explanation: ``plain`` (M2 with the discriminator's acquisition,
    no adversarial loss) against ``adv`` (with it), each seed's mean over its cycles then paired over seeds
    (:func:`compare_seeds`), on the batches' class entropy and pairwise-distance ratio (``diag``:
    :func:`alkit.analysis.tables.diagnostics_rows`) and on the entropy gap of y′ (``spread``:
    :func:`alkit.analysis.tables.entropy_gap`). Rows for the notebook's family (``kind``, ``held_fixed``,
    ``unit``); none when ``arms`` lacks either arm."""
    arms = list(arms)
    if plain not in arms or adv not in arms:
        return []
    diag, spread = list(diag), list(spread)
    return [dict(compare_seeds(src, plain, adv, y=y, summary="mean"), kind=f"batch measure: {y}",
                 held_fixed="acquisition `vaal`", unit=unit)
            for y, src, unit in (("class_entropy", diag, "nats"), ("pairwise_ratio", diag, ""), ("entropy_gap", spread, "nats"))]


def checkpoint_tests(rows: Iterable[dict], arms: Iterable[str]) -> list[dict]:
    """Per arm, best-validated against final state with the seed as the unit (:func:`compare_seeds` on one
    AUBC per seed over every cycle, the start included: the gap matters most at the smallest label
    counts), the arms Holm-corrected as one family (:func:`correct_family`)."""
    rows = list(rows)
    tests = []
    for arm in arms:
        kept = [rounded_accuracies(r) for r in rows if r.get("arm") == arm and r.get("test_acc_final") is not None]
        if not kept:
            continue
        pair = ([{**r, "arm": "best-validated"} for r in kept]
                + [{**r, "arm": "final state", "test_acc": r["test_acc_final"]} for r in kept])
        tests.append({**compare_seeds(pair, "best-validated", "final state"), "arm": arm})
    return correct_family(tests)
