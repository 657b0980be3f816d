"""Notebook 05's low-budget section (issue 29): tables, statistics rules and prose, on planted records."""
import math

import numpy as np
import pytest

from alkit import plots
from alkit.analysis import lowbudget as lo, stats
from helpers import rec


def runs(effects: dict, seeds, noise=None, cycles=3, base=0.60):
    """Records of random + arms whose accuracy is random's + a planted effect (per seed noise optional)."""
    rows = []
    for s in seeds:
        for c in range(cycles):
            acc = base + 0.01 * c + 0.001 * s
            rows.append(rec("random", s, c, 50 + 25 * c, acc))
            for arm, eff in effects.items():
                e = 0.0 if c == 0 else eff + (noise[arm][s] if noise else 0.0)
                rows.append(rec(arm, s, c, 50 + 25 * c, acc + e))
    return rows


def test_holm_by_hand():
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([0.5]) == [0.5]
    assert stats.holm([0.6, 0.9]) == pytest.approx([1.0, 1.0])


def test_min_detectable_effect_by_hand():
    # (t_{0.975, 2} + t_{0.8, 2}) / sqrt(3) = (4.3027 + 1.0607) / 1.7321
    assert stats.minimum_detectable_effect(1.0, 3) == pytest.approx((4.302653 + 1.060660) / math.sqrt(3), rel=1e-5)
    assert stats.minimum_detectable_effect(1.0, 1) is None
    assert stats.minimum_detectable_effect(2.0, 5) == pytest.approx(2 * stats.minimum_detectable_effect(1.0, 5))


def test_two_seeds_are_not_testable_however_large_the_difference():
    rows = runs({"typiclust": 0.10, "probcover": 0.05}, seeds=[0, 1], noise={"typiclust": [0.0, 0.01], "probcover": [0.0, 0.001]})
    fam = lo.compare_family(rows, ["typiclust", "probcover"], ["random"])
    assert [d["verdict"] for d in fam] == ["not testable with 2 seeds"] * 2
    assert all(d["p_holm"] is None and d["mde"] is None and d["family"] == 0 for d in fam)
    text = "\n".join(lo.describe_family(fam))
    assert "not testable with 2 seeds" in text and "higher" not in text and "+10.5" in text


def test_family_is_holm_corrected_and_within_noise_states_the_detectable_effect():
    noise = {"typiclust": [0.001, -0.001, 0.002, 0.0], "badge": [0.004, -0.006, 0.003, -0.002]}
    rows = runs({"typiclust": 0.05, "badge": 0.0}, seeds=[0, 1, 2, 3], noise=noise)
    fam = lo.compare_family(rows, ["typiclust", "badge"], ["random"])
    by = {d["a"]: d for d in fam}
    assert by["typiclust"]["verdict"] == "typiclust higher"
    assert by["badge"]["verdict"] == "within noise"
    assert all(d["family"] == 2 for d in fam)
    assert by["badge"]["p_holm"] == pytest.approx(stats.holm([by["typiclust"]["p"], by["badge"]["p"]])[1])
    assert by["badge"]["mde"] == pytest.approx(stats.minimum_detectable_effect(by["badge"]["std"], 4, 0.05 / 2))
    text = "\n".join(lo.describe_family(fam))
    assert "Holm-adjusted over 2 comparisons" in text
    assert f"{100 * by['badge']['mde']:.2f} points" in text and "smallest effect" in text


def test_a_raw_p_below_alpha_can_lose_its_direction_after_holm():
    # three comparisons with raw p just under 0.05 but above 0.05 / 3 after correction
    rng = np.random.default_rng(3)
    noise = {a: (0.01 * rng.standard_normal(3)).tolist() for a in ("typiclust", "probcover", "badge")}
    rows = runs({"typiclust": 0.012, "probcover": 0.012, "badge": 0.012}, seeds=[0, 1, 2], noise=noise)
    fam = lo.compare_family(rows, ["typiclust", "probcover", "badge"], ["random"])
    for d in fam:
        assert (d["verdict"] == "within noise") == (not d["p_holm"] < 0.05)
        assert d["p_holm"] >= d["p"]


def test_difference_table_has_each_seed_and_the_aubc():
    rows = runs({"typiclust": 0.02}, seeds=[0, 1], noise={"typiclust": [-0.01, 0.01]})
    md = lo.difference_table(rows, arms=("typiclust",))
    assert "| arm | 50 labels | 75 labels | 100 labels | AUBC per seed, cycles ≥ 1 (%) | AUBC mean (%) |" in md
    assert "+2.00 (+1.00, +3.00)" in md  # mean over seeds, then each seed
    assert "0 (baseline)" in md
    # the notebook's one AUBC, cycles >= 1: typiclust seed 0's trapezoid of 62.0, 63.0 over 75..100, divided by 25
    assert "s0: 62.50" in md


def coverage_records():
    rows = []
    for arm, covs in (("random", [(0.2, 0.3), (0.3, 0.35)]), ("probcover", [(0.2, 0.5), (0.5, 0.7)])):
        for s in (0, 1):
            for c, (before, after) in enumerate(covs):
                rows.append(rec(arm, s, c, 50 + 25 * c, 0.6, selected=list(range(25)),
                                coverage={"delta": 1.5 + 0.1 * c, "purity": 0.95, "targets": 1000, "labelled": before,
                                          "after_selection": after},
                                labelled_class_counts=[5] * 10 if c == 0 else [10] + [5] * 8 + [10 + 5 * c]))
            rows.append(rec(arm, s, 2, 100, 0.6, selected=None, labelled_class_counts=[20] + [5] * 8 + [40]))
    return rows


def test_coverage_and_balance_rows():
    cov = lo.coverage_rows(coverage_records())
    pc = sorted((r for r in cov if r["arm"] == "probcover" and r["seed"] == 0), key=lambda r: r["n_labelled"])
    assert [(r["n_labelled"], r["coverage"]) for r in pc] == [(50, 0.2), (75, 0.5), (100, 0.7)]
    bal = lo.balance_rows(coverage_records())
    first = next(r for r in bal if r["cycle"] == 0)
    assert first["class_entropy"] == pytest.approx(math.log(10)) and first["min_class_share"] == 0.1
    last = next(r for r in bal if r["cycle"] == 2)
    assert last["min_class_share"] == pytest.approx(5 / 100)


def test_describe_coverage_gives_numbers_and_no_direction_with_two_seeds():
    lines = lo.describe_coverage(coverage_records(), ["random", "probcover"])
    text = "\n".join(lines)
    assert "ranged 1.50\u20131.60" in text
    assert "- probcover: after its last batch it covers 70.0 % (70.0, 70.0)" in text
    assert "probcover \u2212 random" in text and "not testable with 2 seeds" in text
    assert lo.describe_coverage([rec("random", 0, 0, 50, 0.5)], ["random"])[0].startswith("- No coverage recorded yet")


def test_coverage_balance_figure_has_both_panels_per_arm():
    rows = coverage_records()
    fig = plots.coverage_balance(lo.coverage_rows(rows), lo.balance_rows(rows), order=["random", "probcover"], title="t")
    means = [t for t in fig.data if t.showlegend is not False and t.name]
    assert sorted({t.name for t in means}) == ["probcover", "random"]
    pc = [t for t in fig.data if t.name == "probcover"]
    assert len(pc) == 2 and list(pc[0].y) == pytest.approx([20.0, 50.0, 70.0])  # coverage in %, mean of 2 seeds
    assert plots.ARM_COLORS["probcover"] in {t.line.color for t in pc}
    assert not plots.coverage_balance([], [], order=[], title="t").data


def test_selection_seconds_table():
    rows = [rec("badge", 0, 0, 50, 0.5, seconds={"select": 0.2}), rec("badge", 1, 0, 50, 0.5, seconds={"select": 0.4}),
            rec("badge", 0, 1, 75, 0.5, seconds={"train": 1.0})]
    md = lo.selection_seconds(rows, ["badge", "typiclust"])
    assert "| badge | 0.300 | 2 |" in md and "typiclust" not in md


def test_rounding_noise_reads_as_zero():
    fam = [{"a": "badge", "b": "random", "diffs": [0.05, 5.55e-17], "mean": 0.025, "testable": False, "n": 2,
            "verdict": "not testable with 2 seeds"}]
    text = lo.describe_family(fam)[0]
    assert "+0.00)" in text and "e\u2212" not in text and "e-" not in text
