"""Seed-level comparisons (``per_seed``, ``paired_seed_test``, ``compare_seeds``, ``describe_comparison``).

Expected numbers are literals worked out by hand in the comments: t quantiles and tails on 2 and 3
degrees of freedom have closed forms (df 2: ``sf(t) = (1 - t / sqrt(t^2 + 2)) / 2``, quantile
``(2q - 1) / sqrt(2 q (1 - q))``; df 3: ``cdf(t) = 1/2 + (theta + sin theta cos theta) / pi`` with
``theta = atan(t / sqrt 3)``), and sign-flip p-values are enumerated pattern by pattern.
The simulations check the property the seed-level test exists for: about 5 % false positives when
cycles within a seed are correlated, where the old every-(seed, cycle)-pair rule gave far more.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from alkit import analysis
from alkit.analysis import compare_seeds, describe_comparison, paired_difference, paired_seed_test, per_seed
from helpers import rec

ROOT = Path(__file__).resolve().parent.parent
MINUS, DASH = "\u2212", "\u2014"


# ------------------------------------------------------------------------------------------ per_seed


def per_seed_rows() -> list[dict]:
    return [
        # vaal seed 10, given unsorted: 0.2, 0.4, 0.4 at 100, 200, 300
        rec("vaal", 10, 2, test_acc=0.4), rec("vaal", 10, 0, test_acc=0.2), rec("vaal", 10, 1, test_acc=0.4),
        # vaal seed 2, uneven grid: (0, 0.0), (100, 1.0), (400, 1.0)
        rec("vaal", 2, 1, n_labelled=100, test_acc=1.0), rec("vaal", 2, 0, n_labelled=0, test_acc=0.0),
        rec("vaal", 2, 2, n_labelled=400, test_acc=1.0),
        # random seed 2: one cycle with a value, one without
        rec("random", 2, 0, test_acc=0.3), rec("random", 2, 1),
    ]


def test_per_seed_aubc_is_the_trapezoid_area_over_the_label_range():
    out = per_seed(per_seed_rows())
    # vaal 10: (0.2 + 2 * 0.4 + 0.4) / 4 = 0.35 ; vaal 2: (0.5 * 100 * 1 + 300 * 1) / 400 = 0.875 ;
    # random 2: one cycle -> its value 0.3
    assert out == {"random": {2: pytest.approx(0.3)}, "vaal": {2: pytest.approx(0.875), 10: pytest.approx(0.35)}}
    assert list(out) == ["random", "vaal"]
    assert list(out["vaal"]) == [2, 10]  # numeric seed order, not "10" < "2"


def test_per_seed_mean_summary_and_min_cycle():
    out = per_seed(per_seed_rows(), summary="mean")
    # vaal 10: (0.2 + 0.4 + 0.4) / 3 = 0.333333 ; vaal 2: 2 / 3 = 0.666667 (the area, 0.875, weights the grid)
    assert out["vaal"] == {2: pytest.approx(0.6666666667), 10: pytest.approx(0.3333333333)}
    assert out["random"] == {2: pytest.approx(0.3)}
    later = per_seed(per_seed_rows(), min_cycle=1)
    # vaal 10: 0.4 flat over 200..300 -> 0.4 ; vaal 2: 1.0 flat over 100..400 -> 1.0 ; random keeps no value
    assert later == {"vaal": {2: pytest.approx(1.0), 10: pytest.approx(0.4)}}
    with pytest.raises(ValueError, match="summary"):
        per_seed(per_seed_rows(), summary="median")


def test_per_seed_other_keys():
    rows = [{"strategy": "m2", "seed": 0, "cycle": c, "n_labelled": 10 * (c + 1), "entropy": e} for c, e in enumerate((1.0, 3.0))]
    # (1 + 3) / 2 = 2 over 10..20
    assert per_seed(rows, y="entropy", by="strategy") == {"m2": {0: pytest.approx(2.0)}}
    assert per_seed([]) == {}


# ----------------------------------------------------------------------------------- compare_seeds


def curves(vaal_last: dict, random_level: float = 0.5) -> list[dict]:
    """vaal: 0.5, 0.5, ``vaal_last[seed]`` at 100, 200, 300; random flat at ``random_level``.

    vaal's area is (0.5 + 2 * 0.5 + last) / 4, so ``last = 0.5 + 4 a`` gives an area a above 0.5, while
    its plain mean is 0.5 + 4 a / 3 and from cycle 1 on its area is 0.5 + 2 a.
    """
    rows = []
    for seed, last in vaal_last.items():
        rows += [rec("vaal", seed, 0, test_acc=0.5), rec("vaal", seed, 1, test_acc=0.5), rec("vaal", seed, 2, test_acc=last)]
        rows += [rec("random", seed, c, test_acc=random_level) for c in range(3)]
    return rows


# a = 0.01, 0.02, 0.06 per seed, plus a seed that only vaal has (must be ignored)
NOISY = curves({0: 0.54, 1: 0.58, 2: 0.74}) + [rec("vaal", 3, c, test_acc=0.99) for c in range(3)]


def test_compare_seeds_t_test_ci_and_sign_flip_by_hand():
    d = compare_seeds(NOISY, "vaal", "random")
    assert (d["a"], d["b"], d["y"], d["summary"], d["alpha"]) == ("vaal", "random", "test_acc", "aubc", 0.05)
    assert d["seeds"] == [0, 1, 2] and d["n"] == 3 and d["df"] == 2
    assert d["diffs"] == [pytest.approx(0.01), pytest.approx(0.02), pytest.approx(0.06)]
    # mean 0.03; deviations -0.02, -0.01, 0.03 -> sum of squares 0.0014, std sqrt(0.0007) = 0.0264575
    # se 0.0264575 / sqrt 3 = 0.0152753 ; t = 0.03 / se = 1.9639610
    assert d["mean"] == pytest.approx(0.03)
    assert d["std"] == pytest.approx(0.0264575131)
    assert d["se"] == pytest.approx(0.0152752523)
    assert d["t"] == pytest.approx(1.9639610121)
    # df 2: p = 1 - t / sqrt(t^2 + 2) = 1 - 1.963961 / sqrt(5.857143) = 0.1884973
    assert d["p"] == pytest.approx(0.1884973288)
    # t quantile 0.975 on df 2: 0.95 / sqrt(2 * 0.975 * 0.025) = 4.3026527 ; half width 4.3026527 * se = 0.0657241
    assert d["ci_low"] == pytest.approx(-0.0357241061)
    assert d["ci_high"] == pytest.approx(0.0957241061)
    # sign patterns of (1, 2, 6) (x 0.01): sums 9, -3, 5, -7, 7, -5, 3, -9 -> |sum| >= 9 twice -> 2 / 8
    assert d["p_signflip"] == pytest.approx(0.25)
    assert d["min_p_signflip"] == pytest.approx(0.25)  # 2 / 2^3: the observed pattern and its mirror
    assert d["testable"] is True and d["verdict"] == "within noise"
    assert json.loads(json.dumps(d, allow_nan=False)) == d  # JSON-able as it is


def test_compare_seeds_summary_min_cycle_and_order_of_arms():
    # plain mean: diffs 4a / 3 = 0.013333, 0.026667, 0.08 -> mean 0.04; t is scale-free, so p as above
    m = compare_seeds(NOISY, "vaal", "random", summary="mean")
    assert m["summary"] == "mean" and m["mean"] == pytest.approx(0.04) and m["p"] == pytest.approx(0.1884973288)
    # from cycle 1: diffs 2a -> mean 0.06
    assert compare_seeds(NOISY, "vaal", "random", min_cycle=1)["mean"] == pytest.approx(0.06)
    ba = compare_seeds(NOISY, "random", "vaal")
    assert ba["mean"] == pytest.approx(-0.03) and ba["t"] == pytest.approx(-1.9639610121)
    assert (ba["ci_low"], ba["ci_high"]) == (pytest.approx(-0.0957241061), pytest.approx(0.0357241061))
    assert ba["p"] == pytest.approx(0.1884973288) and ba["verdict"] == "within noise"


def test_compare_seeds_verdict_names_the_higher_arm_when_p_below_alpha():
    rows = curves({0: 0.70, 1: 0.74, 2: 0.78})  # a = 0.05, 0.06, 0.07
    d = compare_seeds(rows, "vaal", "random")
    # mean 0.06, std 0.01, se 0.0057735, t = 10.3923048 (t^2 = 108); p = 1 - sqrt(108 / 110) = 0.0091326
    assert d["t"] == pytest.approx(10.3923048454)
    assert d["p"] == pytest.approx(0.0091326114)
    assert (d["ci_low"], d["ci_high"]) == (pytest.approx(0.0351586229), pytest.approx(0.0848413771))
    assert d["verdict"] == "vaal higher"
    assert compare_seeds(rows, "random", "vaal")["verdict"] == "vaal higher"
    # a stricter level: p 0.0091 is not below 0.005
    assert compare_seeds(rows, "vaal", "random", alpha=0.005)["verdict"] == "within noise"
    # the sign-flip test still cannot go below 0.25 with 3 seeds
    assert d["p_signflip"] == pytest.approx(0.25)


def test_compare_seeds_90_percent_interval():
    d = compare_seeds(NOISY, "vaal", "random", alpha=0.1)
    # t quantile 0.95 on df 2: 0.9 / sqrt(2 * 0.95 * 0.05) = 2.9199856 ; half width 0.0446035
    assert (d["ci_low"], d["ci_high"]) == (pytest.approx(-0.0146035165), pytest.approx(0.0746035165))


def test_compare_seeds_same_difference_in_every_seed():
    # vaal is 0.02 above random at every cycle of every seed, from different levels per seed, so the
    # three differences are equal only up to rounding (0.72 - 0.7 != 0.52 - 0.5 in floating point)
    rows = []
    for seed, level in ((0, 0.5), (1, 0.6), (2, 0.7)):
        rows += [rec("random", seed, c, test_acc=level + 0.1 * c) for c in range(3)]
        rows += [rec("vaal", seed, c, test_acc=level + 0.1 * c + 0.02) for c in range(3)]
    d = compare_seeds(rows, "vaal", "random")
    assert d["mean"] == pytest.approx(0.02)
    assert d["t"] == math.inf and d["p"] == 0.0 and d["verdict"] == "vaal higher"
    assert d["ci_low"] == pytest.approx(0.02) and d["ci_high"] == pytest.approx(0.02)
    assert d["p_signflip"] == pytest.approx(0.25)
    assert compare_seeds(rows, "random", "vaal")["t"] == -math.inf
    same = compare_seeds(rows, "random", "random")  # all differences exactly zero
    assert (same["mean"], same["std"], same["t"], same["p"], same["verdict"]) == (0.0, 0.0, 0.0, 1.0, "within noise")
    assert same["p_signflip"] == 1.0


def test_compare_seeds_fewer_than_two_seeds_is_not_testable():
    one = compare_seeds(curves({7: 0.58}), "vaal", "random")  # a = 0.02 in seed 7 only
    assert one["n"] == 1 and one["seeds"] == [7] and one["mean"] == pytest.approx(0.02)
    assert one["testable"] is False and one["verdict"] == "not testable with 1 seed"
    assert all(one[k] is None for k in ("std", "se", "df", "t", "p", "ci_low", "ci_high", "p_signflip"))
    assert one["min_p_signflip"] == 1.0  # 2 / 2^1
    none = compare_seeds(NOISY, "vaal", "alg1")
    assert (none["n"], none["seeds"], none["diffs"], none["mean"]) == (0, [], [], None)
    assert none["testable"] is False and none["verdict"] == "not testable with 0 seeds"
    assert json.loads(json.dumps(none, allow_nan=False)) == none


# ----------------------------------------------------------------------------------- paired_seed_test


def test_sign_flip_p_enumerated_on_four_seeds_and_df3_t():
    d = paired_seed_test([0.03, 0.01, -0.01, 0.02], a="x", b="y")
    # |sum| of the 16 patterns of (3, 1, 1, 2) = 7 - 2 * (sum of the negated ones): negated sum 0 -> 7,
    # 1 -> 5 (twice), 6 -> -5 (twice), 7 -> -7: six of 16 reach |5| -> 0.375 (the minimum would be 2/16)
    assert d["p_signflip"] == pytest.approx(0.375)
    assert d["min_p_signflip"] == pytest.approx(0.125)
    # mean 0.0125; deviations 1.75, -0.25, -2.25, 0.75 (x 0.01) -> squares sum 8.75, std 0.0170783, se 0.0085391
    # t = 1.4638501; df 3: theta = atan(t / sqrt 3) -> p = 1 - 2 (theta + sin cos) / pi = 0.2394426
    assert d["std"] == pytest.approx(0.0170782513) and d["t"] == pytest.approx(1.4638501094)
    assert d["p"] == pytest.approx(0.2394425986)
    assert d["df"] == 3 and d["verdict"] == "within noise"


def test_sign_flip_ties_zero_differences_and_rounding():
    # (2, 0, 1): the zero's sign is free, so the observed |3| is reached by 4 of 8 patterns -> 0.5, not 0.25
    assert paired_seed_test([0.02, 0.0, 0.01])["p_signflip"] == pytest.approx(0.5)
    # 0.1 + 0.2 - 0.3 is 5.6e-17, not 0: every pattern ties with "no difference" -> 1, t ~ 0
    d = paired_seed_test([0.1, 0.2, -0.3])
    assert d["p_signflip"] == 1.0 and d["p"] == pytest.approx(1.0) and d["verdict"] == "within noise"


def test_sign_flip_minimum_p_is_computed_for_any_n_and_large_n_is_estimated():
    assert [paired_seed_test(np.arange(1.0, n + 1))["min_p_signflip"] for n in (2, 5, 6)] == [0.5, 0.0625, 0.03125]
    # 21 equal positive differences: only 2 of 2^21 patterns reach the observed sum; beyond 20 seeds the
    # p-value is a Monte-Carlo estimate, (1 + hits) / (1 + 100000) with hits ~ 0
    big = paired_seed_test(np.full(21, 0.01) + np.linspace(0, 1e-3, 21))
    assert big["p_signflip"] < 1e-4 and big["min_p_signflip"] == pytest.approx(2 / 2 ** 21)


# ------------------------------------------------------------------------------- describe_comparison


def test_describe_comparison_sentences():
    assert describe_comparison(compare_seeds(NOISY, "vaal", "random")) == (
        f"vaal {MINUS} random: +3.00 points (95% CI {MINUS}3.57 to +9.57; paired t over 3 seeds, p = 0.19; "
        f"sign-flip p = 0.25) {DASH} within noise: with 3 seeds and this spread, differences below \u2248 8.2 points "
        "cannot be told from noise.")
    strong = compare_seeds(curves({0: 0.70, 1: 0.74, 2: 0.78}), "random", "vaal", alpha=0.1)
    assert describe_comparison(strong) == (
        f"random {MINUS} vaal: {MINUS}6.00 points (90% CI {MINUS}7.69 to {MINUS}4.31; paired t over 3 seeds, "
        f"p = 0.009; sign-flip p = 0.25) {DASH} vaal higher.")
    exact = compare_seeds(curves({0: 0.58, 1: 0.58, 2: 0.58}), "vaal", "random")  # 0.02 in every seed
    assert "p < 0.001" in describe_comparison(exact) and describe_comparison(exact).endswith("vaal higher.")
    assert describe_comparison(compare_seeds(curves({7: 0.58}), "vaal", "random"), scale=1, unit="") == (
        f"vaal {MINUS} random: +0.02 {DASH} not testable with 1 seed.")
    assert describe_comparison(compare_seeds(curves({7: 0.58}), "vaal", "random")) == (
        f"vaal {MINUS} random: +2.00 points {DASH} not testable with 1 seed.")
    assert describe_comparison(compare_seeds(NOISY, "vaal", "alg1")) == (
        f"vaal {MINUS} alg1: no seed in common {DASH} not testable with 0 seeds.")
    assert "-" not in describe_comparison(strong).replace("sign-flip", "")  # no hyphen-minus as a sign


def test_paired_difference_keeps_its_descriptive_role():
    d = paired_difference(NOISY, "vaal", "random", min_cycle=2)
    # cycle 2: 0.04, 0.08, 0.24 -> 3 wins
    assert (d["pairs"], d["wins"], d["losses"]) == (3, 3, 0)
    assert "not use it for significance" in " ".join(analysis.paired_difference.__doc__.split())


# ------------------------------------------------------------------------------------- simulations


def old_rule(d: dict) -> bool:
    """The removed every-(seed, cycle)-pair rule, kept here only to show why it went."""
    return d["pairs"] >= 2 and abs(d["mean"]) > 2 * d["std"] / np.sqrt(d["pairs"])


def simulate(rng, sims: int, seeds: int, cycles: int, rho: float, effect: float = 0.0) -> np.ndarray:
    """Test accuracies (sims, 2 arms, seeds, cycles): a rising curve + 0.01 * (seed effect + noise).

    Seed effect ``sqrt(rho) u`` and cycle noise ``sqrt(1 - rho) e`` (``u, e ~ N(0, 1)``): two cycles
    of one run correlate ``rho``. A per-seed offset shared by both arms (same initial set) cancels in
    every difference. Arm 0 gets ``+effect`` at every cycle.
    """
    u = rng.standard_normal((sims, 2, seeds, 1))
    e = rng.standard_normal((sims, 2, seeds, cycles))
    shared = 0.01 * rng.standard_normal((sims, 1, seeds, 1))
    acc = 0.8 + 0.01 * np.arange(cycles) + 0.01 * (np.sqrt(rho) * u + np.sqrt(1 - rho) * e) + shared
    acc[:, 0] += effect
    return acc


def to_records(acc: np.ndarray) -> list[dict]:
    """(2, seeds, cycles) -> records of arms "a" and "b", 1000 labels per cycle."""
    return [{"arm": arm, "seed": s, "cycle": c, "n_labelled": 1000 * (c + 1), "test_acc": float(acc[k, s, c])}
            for k, arm in enumerate("ab") for s in range(acc.shape[1]) for c in range(acc.shape[2])]


@pytest.mark.parametrize("rho", [0.5, 0.95])
def test_false_positive_rate_on_correlated_null_curves(rho):
    rng = np.random.default_rng(20240601)
    acc = simulate(rng, 2000, seeds=3, cycles=7, rho=rho)
    # the simulation is what it says: within-seed differences of cycle 0 and 6 correlate ~rho
    diff = (acc[:, 0] - acc[:, 1]).reshape(-1, 7)
    assert np.corrcoef(diff[:, 0], diff[:, 6])[0, 1] == pytest.approx(rho, abs=0.04)
    new = old = 0
    for x in acc:  # all 2000 through the records path, as a notebook would call it
        rows = to_records(x)
        d = compare_seeds(rows, "a", "b")
        assert d["n"] == 3 and d["p_signflip"] >= d["min_p_signflip"] == 0.25
        new += d["verdict"] != "within noise"
        old += old_rule(paired_difference(rows, "a", "b"))
    # nominal 5 %; binomial s.e. over 2000 runs ~0.005, so 0.07 is 4 s.e. above
    assert new / 2000 <= 0.07
    assert new / 2000 >= 0.03  # and not a test that never says anything
    # the old rule on the same experiments: many times the nominal rate (0.37 at rho 0.5, 0.58 at 0.95 here)
    assert old / 2000 > 0.25


def test_power_a_large_effect_is_found_with_five_seeds():
    # effect 0.03 vs seed-level s.d. of a per-seed AUBC difference 0.01 * sqrt(2 (0.5 + 0.5 * 5.5 / 36)) = 0.0107
    rng = np.random.default_rng(7)
    verdicts = [compare_seeds(to_records(x), "a", "b")["verdict"] for x in simulate(rng, 300, seeds=5, cycles=7, rho=0.5, effect=0.03)]
    assert verdicts.count("a higher") / 300 > 0.9
    assert "b higher" not in verdicts


def test_null_fpr_benchmark_prints_a_row_per_correlation():
    proc = subprocess.run([sys.executable, "benchmarks/null_fpr.py", "--sims", "40", "--rho", "0", "0.9"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line.split("|")[1:-1] for line in proc.stdout.splitlines() if line.startswith("|") and "---" not in line]
    assert [r[0].strip() for r in rows] == ["rho", "0", "0.9"]
    for r in rows[1:]:
        assert all(0.0 <= float(v) <= 1.0 for v in r[1:4])  # rates
        assert float(r[3]) == 0.0  # sign-flip p never below 0.05 with 3 seeds (minimum 0.25)


def test_versus_separates_the_learner_gap_at_cycle_0_from_the_gap_after_acquisition():
    """Arm a starts 2 points above b in every seed (learner effect) and gains nothing afterwards."""
    from alkit.analysis import describe_versus, versus

    rows = []
    for seed, noise in enumerate([0.01, -0.02, 0.015]):
        for cycle in range(3):
            n = 100 + 100 * cycle
            b = 0.6 + 0.05 * cycle + noise
            a = b + (0.02 if cycle == 0 else [0.0, 0.001, -0.001][seed])
            rows += [{"arm": "a", "seed": seed, "cycle": cycle, "n_labelled": n, "test_acc": a},
                     {"arm": "b", "seed": seed, "cycle": cycle, "n_labelled": n, "test_acc": b}]
    v = versus(rows, "a", "b")
    assert v["cycle0"]["diffs"] == pytest.approx([0.02, 0.02, 0.02])
    assert v["cycle0"]["verdict"] == "a higher"  # identical non-zero differences: t infinite
    assert v["after"]["diffs"] == pytest.approx([0.0, 0.001, -0.001])  # AUBC over cycles 1-2
    assert v["after"]["verdict"] == "within noise"
    text = describe_versus(v)
    assert "cycle 0" in text and "within noise" in text and "a higher" in text


def test_small_effects_keep_their_digits():
    from alkit.analysis import signed as _signed

    assert _signed(0.00312) == "+0.00312" and _signed(-0.0004567) == "\u22120.000457"
    assert _signed(1.234) == "+1.23" and _signed(-0.4) == "\u22120.40" and _signed(0.0) == "+0.00"


# ------------------------------------------------------------------ seeds, spread, families (issue 26)


def test_two_seeds_give_the_effect_and_its_spread_but_no_direction():
    rows = curves({0: 0.70, 1: 0.74})  # a = 0.05, 0.06 in every cycle: a 1-df t-test would say p = 0.06
    d = compare_seeds(rows, "vaal", "random")
    assert d["n"] == 2 and d["testable"] is False and d["verdict"] == "not testable with 2 seeds"
    assert d["mean"] == pytest.approx(0.055) and d["std"] == pytest.approx(0.01 / math.sqrt(2))
    assert d["p"] is None and d["t"] is None
    assert describe_comparison(d) == (f"vaal {MINUS} random: +5.50 points (per seed +5.00, +6.00; sd 0.71) {DASH} "
                                      "not testable with 2 seeds: a direction needs at least 3 seeds.")


def test_minimum_detectable_effect_by_hand():
    # df 2: t_0.975 = 4.3026527, t_0.8 = 0.6 / sqrt(0.32) = 1.0606602 -> 5.3633129 * 0.03 / sqrt 3 = 0.0928953
    assert analysis.minimum_detectable_effect(0.03, 3) == pytest.approx(0.0928953, rel=1e-6)
    # df 1 at alpha 0.05 / 2: t_0.9875 = tan(pi (0.9875 - 0.5)) = 25.451700, t_0.8 = tan(0.3 pi) = 1.3763819
    assert analysis.minimum_detectable_effect(1.0, 2, alpha=0.025) == pytest.approx((25.4517 + 1.3763819) / math.sqrt(2), rel=1e-5)
    assert analysis.minimum_detectable_effect(0.1, 1) is None


def test_holm_by_hand():
    # sorted 0.01, 0.02, 0.03, 0.04 (m = 4): 4 * 0.01 = 0.04, 3 * 0.02 = 0.06, 2 * 0.03 = 0.06, 1 * 0.04 -> max 0.06
    assert analysis.holm([0.03, None, 0.01, 0.04, 0.02]) == [pytest.approx(0.06), None, pytest.approx(0.04),
                                                              pytest.approx(0.06), pytest.approx(0.06)]
    assert analysis.holm([0.5, 0.9]) == [pytest.approx(1.0), pytest.approx(1.0)]  # capped at 1, monotone
    assert analysis.holm([]) == []


def test_correct_family_rereads_verdicts_from_adjusted_p():
    def test(diffs, a):
        return dict(paired_seed_test(diffs, a=a, b="random"), a=a, b="random", alpha=0.05, diffs=diffs)

    # df 2, p = 1 - t / sqrt(t^2 + 2): (0.05, 0.06, 0.07) t = 10.392 -> 0.0091326;
    # (0.03, 0.05, 0.07) t = 0.05 / (0.02 / sqrt 3) = 4.3301 -> 1 - 4.3301 / sqrt(20.75) = 0.049414
    strong, weak = test([0.05, 0.06, 0.07], "vaal"), test([0.03, 0.05, 0.07], "alg1")
    null, two = test([0.01, -0.01, 0.0], "alg2"), test([0.05, 0.06], "coreset")
    assert strong["p"] == pytest.approx(0.0091326114) and weak["p"] == pytest.approx(0.049414, abs=1e-6)
    assert weak["verdict"] == "alg1 higher"  # alone, it passes
    fam = analysis.correct_family([strong, weak, null, two])
    # Holm over the 3 testable: 3 * 0.0091326 = 0.027398; max(that, 2 * 0.049414) = 0.098828; max(.., 1 * 1) = 1
    assert [f["family_size"] for f in fam] == [3, 3, 3, 3]
    assert [f["p_holm"] for f in fam] == [pytest.approx(0.0273978342), pytest.approx(0.098828, abs=1e-6), 1.0, None]
    assert [f["p_raw"] for f in fam[:2]] == [strong["p"], weak["p"]]
    assert [f["verdict"] for f in fam] == ["vaal higher", "within noise", "within noise", "not testable with 2 seeds"]
    # the detectable effect is read at Holm's strictest level 0.05 / 3
    assert fam[1]["mde"] == pytest.approx(analysis.minimum_detectable_effect(0.02, 3, 0.05 / 3))
    text = describe_comparison(fam[1])
    assert "p = 0.05, Holm-adjusted p = 0.10 over 3 comparisons" in text and "cannot be told from noise" in text


def simulate_family(rng, sims: int, arms: int, seeds: int = 3, cycles: int = 7, rho: float = 0.5) -> np.ndarray:
    """Null accuracies (sims, arms, seeds, cycles): as :func:`simulate`, every arm the same in distribution."""
    u = rng.standard_normal((sims, arms, seeds, 1))
    e = rng.standard_normal((sims, arms, seeds, cycles))
    shared = 0.01 * rng.standard_normal((sims, 1, seeds, 1))
    return 0.8 + 0.01 * np.arange(cycles) + 0.01 * (np.sqrt(rho) * u + np.sqrt(1 - rho) * e) + shared


@pytest.mark.parametrize("family", [6, 9])
def test_holm_keeps_the_familywise_false_positive_rate(family):
    """A notebook's family: ``family`` arms each against one shared control (05's shape: correlated
    comparisons), 3 seeds, no true effect. The chance of at least one false "higher" stays <= 5 %
    (+ 4 binomial s.e. of 1,000 families) with Holm; without it, it is several times that."""
    sims = 1000
    acc = simulate_family(np.random.default_rng(26 + family), sims, family + 1)
    names = ["control"] + [f"arm{k}" for k in range(family)]
    any_holm = any_raw = 0
    for x in acc:
        rows = [{"arm": names[k], "seed": s, "cycle": c, "n_labelled": 1000 * (c + 1), "test_acc": float(x[k, s, c])}
                for k in range(family + 1) for s in range(x.shape[1]) for c in range(x.shape[2])]
        raw = [compare_seeds(rows, a, "control") for a in names[1:]]
        fam = analysis.correct_family(raw)
        any_raw += any(r["verdict"] != "within noise" for r in raw)
        any_holm += any(r["verdict"] != "within noise" for r in fam)
    assert any_holm / sims <= 0.05 + 4 * math.sqrt(0.05 * 0.95 / sims)
    assert any_holm / sims >= 0.005  # not a rule that never speaks
    assert any_raw / sims > 0.15  # uncorrected, a family of 6 or 9 errs far more often
