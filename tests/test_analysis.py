"""alkit.analysis against hand computations on small, hand-written per-cycle records.

Every expected number is worked out in a comment or written as a literal, never by calling numpy the
way the implementation does. Records look like those of ``alkit.loop.run`` plus the ``arm`` that
``results.load_results`` adds. ``alkit.derive.norm_comparison`` and ``latent_summary`` need saved runs and are not
covered here.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from alkit import analysis
from alkit.analysis import (
    aubc,
    beside_study,
    class_coverage,
    curve,
    diagnostics_rows,
    diagnostics_summary,
    final_confusions,
    first_below,
    group,
    markdown_table,
    paired_difference,
)
from helpers import rec


def by_key(table: list[dict], *keys: str) -> dict[tuple, dict]:
    return {tuple(r[k] for k in keys): r for r in table}


# --------------------------------------------------------------------------------------------- group


def test_group_keys_are_tuples_in_input_order_and_missing_key_is_none():
    rows = [rec("vaal", 0, 0), rec("random", 0, 0), rec("vaal", 1, 0), rec("vaal", 0, 1), {"seed": 0, "cycle": 0}]
    g = group(rows, "arm", "seed")
    assert set(g) == {("vaal", 0), ("random", 0), ("vaal", 1), (None, 0)}
    assert [r["cycle"] for r in g[("vaal", 0)]] == [0, 1]  # input order kept within a group
    assert g[(None, 0)] == [{"seed": 0, "cycle": 0}]
    assert type(g) is dict  # not a defaultdict: an unknown key must not silently appear
    with pytest.raises(KeyError):
        g[("alg1", 0)]
    assert set(group(rows, "arm")) == {("vaal",), ("random",), (None,)}  # one key -> 1-tuples


def test_group_accepts_a_one_shot_iterator():
    g = group(iter([rec("vaal", 0, 0), rec("vaal", 0, 1)]), "arm")
    assert len(g[("vaal",)]) == 2


# --------------------------------------------------------------------------------------------- curve


CURVE_ROWS = [  # deliberately unsorted, arms interleaved
    rec("vaal", 1, 1, test_acc=0.8),
    rec("random", 0, 1, test_acc=0.55),
    rec("vaal", 0, 0, test_acc=0.5),
    rec("vaal", 2, 0, test_acc=0.7),
    rec("vaal", 0, 1, test_acc=0.6),
    rec("random", 0, 0, test_acc=0.45),
    rec("vaal", 1, 0, test_acc=0.6),
]


def test_curve_mean_sample_std_min_max_n():
    table = curve(CURVE_ROWS)
    t = by_key(table, "arm", "n_labelled")
    # vaal @100: 0.5, 0.6, 0.7 -> mean 0.6; sample std sqrt((0.01 + 0 + 0.01) / 2) = 0.1
    #            (population std would be sqrt(0.02 / 3) = 0.0816)
    assert t[("vaal", 100)]["mean"] == pytest.approx(0.6)
    assert t[("vaal", 100)]["std"] == pytest.approx(0.1)
    assert (t[("vaal", 100)]["min"], t[("vaal", 100)]["max"], t[("vaal", 100)]["n"]) == (pytest.approx(0.5), pytest.approx(0.7), 3)
    # vaal @200: 0.6, 0.8 -> mean 0.7; sample std sqrt((0.01 + 0.01) / 1) = sqrt(0.02) = 0.141421 (population: 0.1)
    assert t[("vaal", 200)]["mean"] == pytest.approx(0.7)
    assert t[("vaal", 200)]["std"] == pytest.approx(0.1414213562)
    assert t[("vaal", 200)]["n"] == 2
    assert isinstance(t[("vaal", 200)]["n"], int)


def test_curve_single_seed_has_std_zero_and_n_one():
    t = by_key(curve(CURVE_ROWS), "arm", "n_labelled")
    assert t[("random", 100)] == {"arm": "random", "n_labelled": 100, "mean": pytest.approx(0.45), "std": 0.0,
                                  "min": pytest.approx(0.45), "max": pytest.approx(0.45), "n": 1}
    assert t[("random", 200)]["std"] == 0.0 and t[("random", 200)]["n"] == 1


def test_curve_sorted_by_arm_then_numeric_budget_from_unsorted_input():
    rows = [rec("vaal", 0, 0, n_labelled=1000, test_acc=0.9), rec("vaal", 0, 0, n_labelled=200, test_acc=0.5),
            rec("alg1", 0, 0, n_labelled=1000, test_acc=0.8), rec("random", 0, 0, n_labelled=200, test_acc=0.4)]
    order = [(r["arm"], r["n_labelled"]) for r in curve(rows)]
    # 200 before 1000: numeric, not string, order of the budget
    assert order == [("alg1", 1000), ("random", 200), ("vaal", 200), ("vaal", 1000)]
    assert [(r["arm"], r["n_labelled"]) for r in curve(CURVE_ROWS)] == [("random", 100), ("random", 200), ("vaal", 100), ("vaal", 200)]


def test_curve_skips_records_without_y_and_arms_without_any():
    rows = [rec("vaal", 0, 0, disc_acc_heldout=0.9), rec("vaal", 1, 0, disc_acc_heldout=0.7),
            rec("vaal", 2, 0, disc_acc_heldout=None), rec("vaal", 3, 0),  # no value: not counted
            rec("random", 0, 0), rec("random", 1, 0)]  # random has no discriminator at all
    table = curve(rows, y="disc_acc_heldout")
    assert len(table) == 1
    # 0.9, 0.7 -> mean 0.8, sample std sqrt(0.02) ; n counts only the two values
    assert table[0]["arm"] == "vaal" and table[0]["n"] == 2
    assert table[0]["mean"] == pytest.approx(0.8)
    assert table[0]["std"] == pytest.approx(0.1414213562)
    assert curve([]) == []


def test_curve_custom_x_and_by_keys():
    rows = [{"strategy": "margin", "cycle": 2, "acc": 0.3}, {"strategy": "margin", "cycle": 2, "acc": 0.5},
            {"strategy": "margin", "cycle": 1, "acc": 0.1}]
    table = curve(rows, y="acc", x="cycle", by="strategy")
    assert [(r["strategy"], r["cycle"], r["n"]) for r in table] == [("margin", 1, 1), ("margin", 2, 2)]
    assert table[1]["mean"] == pytest.approx(0.4)


# ---------------------------------------------------------------------------------------------- aubc


def test_aubc_of_a_constant_curve_is_that_constant():
    rows = [rec("vaal", 0, c, n_labelled=n, test_acc=0.7) for c, n in enumerate((100, 200, 400, 1000))]
    (r,) = aubc(rows)
    assert r == {"arm": "vaal", "aubc": pytest.approx(0.7), "std": 0.0, "n": 1}


def test_aubc_of_a_linear_curve_is_its_midpoint():
    # y = n / 1000 from 100 to 500 -> mean value over the range = y(300) = 0.3
    rows = [rec("vaal", 0, c, n_labelled=n, test_acc=n / 1000) for c, n in enumerate((100, 200, 300, 400, 500))]
    assert aubc(rows)[0]["aubc"] == pytest.approx(0.3)


def test_aubc_uses_the_trapezoid_rule_on_an_uneven_grid_from_unsorted_rows():
    # points (0, 0.0), (100, 1.0), (400, 1.0): area 0.5*100*(0+1) + 300*1 = 350, range 400 -> 0.875
    # (the plain mean of the three points would be 0.667, the mean of the end points 0.5)
    rows = [rec("vaal", 0, 2, n_labelled=400, test_acc=1.0), rec("vaal", 0, 0, n_labelled=0, test_acc=0.0),
            rec("vaal", 0, 1, n_labelled=100, test_acc=1.0)]
    assert aubc(rows)[0]["aubc"] == pytest.approx(0.875)


def test_aubc_mean_and_sample_std_over_seeds_per_arm_sorted_by_arm():
    rows = [
        # vaal seed 0: 0.1, 0.2, 0.3 at 100, 200, 300 -> 0.2; seed 1: 0.3, 0.4, 0.5 -> 0.4
        *[rec("vaal", 0, c, test_acc=0.1 * (c + 1)) for c in range(3)],
        *[rec("vaal", 1, c, test_acc=0.1 * (c + 3)) for c in range(3)],
        # random, one seed: 0.5 flat
        *[rec("random", 0, c, test_acc=0.5) for c in range(3)],
    ]
    out = aubc(rows)
    assert [r["arm"] for r in out] == ["random", "vaal"]
    # vaal: mean (0.2 + 0.4) / 2 = 0.3; sample std sqrt((0.01 + 0.01) / 1) = 0.141421 (population would be 0.1)
    assert out[1] == {"arm": "vaal", "aubc": pytest.approx(0.3), "std": pytest.approx(0.1414213562), "n": 2}
    assert out[0] == {"arm": "random", "aubc": pytest.approx(0.5), "std": 0.0, "n": 1}


def test_aubc_normalises_each_stopped_run_over_its_own_range():
    # seed 0: 0.1, 0.2, 0.3 at 100..300 -> 0.2; seed 1 stopped after 200: 0.5, 0.7 -> 0.6
    # mean 0.4; sample std sqrt((0.2^2 + 0.2^2) / 1) = sqrt(0.08) = 0.282843
    rows = [*[rec("vaal", 0, c, test_acc=0.1 * (c + 1)) for c in range(3)],
            rec("vaal", 1, 0, test_acc=0.5), rec("vaal", 1, 1, test_acc=0.7, stopped=True)]
    (r,) = aubc(rows)
    assert r["aubc"] == pytest.approx(0.4)
    assert r["std"] == pytest.approx(0.2828427125)


def test_aubc_skips_records_without_the_value():
    rows = [rec("a", 0, 0, test_acc=0.4), rec("a", 0, 1, test_acc=0.6), rec("a", 0, 2, test_acc=None)]
    rows[2]["test_acc"] = None  # e.g. a cycle whose evaluation was not recorded
    # only cycles 0, 1 (100 -> 200 labels): (0.4 + 0.6) / 2 = 0.5
    assert aubc(rows)[0]["aubc"] == pytest.approx(0.5)


def test_aubc_single_budget_run_is_its_value_and_empty_rows_give_nothing():
    assert aubc([rec("vaal", 0, 0, test_acc=0.42)])[0]["aubc"] == pytest.approx(0.42)
    assert aubc([]) == []


# --------------------------------------------------------------------------------- paired_difference


# (seed, cycle): vaal, random
PAIRED = {
    (0, 0): (0.50, 0.50),  # d = 0      (tie)
    (0, 1): (0.60, 0.62),  # d = -0.02  (loss)
    (0, 2): (0.70, 0.65),  # d = +0.05  (win)
    (1, 0): (0.50, 0.50),  # d = 0      (tie)
    (1, 1): (0.55, 0.50),  # d = +0.05  (win)
    (1, 2): (0.80, 0.80),  # d = 0      (tie)
}


def paired_rows() -> list[dict]:
    rows = []
    for (seed, cycle), (v, r) in PAIRED.items():
        rows += [rec("vaal", seed, cycle, test_acc=v), rec("random", seed, cycle, test_acc=r)]
    rows.append(rec("random", 2, 1, test_acc=0.99))  # no vaal partner: must be ignored
    rows.append(rec("vaal", 3, 1, test_acc=0.01))  # no random partner: must be ignored
    return rows[::-1]  # reversed: pairing must not rely on order


def test_paired_difference_all_cycles():
    d = paired_difference(paired_rows(), "vaal", "random")
    # sum of d = -0.02 + 0.05 + 0.05 = 0.08 over 6 pairs -> 0.013333; ties are neither wins nor losses
    assert d["a"] == "vaal" and d["b"] == "random"
    assert d["pairs"] == 6
    assert d["mean"] == pytest.approx(0.08 / 6)
    assert (d["wins"], d["losses"]) == (2, 1)


def test_paired_difference_min_cycle_drops_the_shared_start():
    d = paired_difference(paired_rows(), "vaal", "random", min_cycle=1)
    # pairs (0,1) -0.02, (0,2) +0.05, (1,1) +0.05, (1,2) 0 -> mean 0.08 / 4 = 0.02
    # deviations -0.04, 0.03, 0.03, -0.02 -> squares 0.0016 + 0.0009 + 0.0009 + 0.0004 = 0.0038
    # sample std sqrt(0.0038 / 3) = 0.0355903
    assert d["pairs"] == 4
    assert d["mean"] == pytest.approx(0.02)
    assert d["std"] == pytest.approx(0.0355902608)
    assert (d["wins"], d["losses"]) == (2, 1)
    assert paired_difference(paired_rows(), "vaal", "random", min_cycle=2)["pairs"] == 2  # (0,2), (1,2)


def test_paired_difference_is_antisymmetric():
    ab = paired_difference(paired_rows(), "vaal", "random", min_cycle=1)
    ba = paired_difference(paired_rows(), "random", "vaal", min_cycle=1)
    assert ba["mean"] == pytest.approx(-0.02)
    assert (ba["wins"], ba["losses"]) == (ab["losses"], ab["wins"]) == (1, 2)
    assert ba["std"] == pytest.approx(ab["std"])


def test_paired_difference_pairs_by_cycle_not_by_budget_and_skips_missing_values():
    rows = [
        rec("alg1", 0, 1, n_labelled=150, test_acc=0.7), rec("random", 0, 1, n_labelled=200, test_acc=0.6),
        rec("alg1", 0, 2, class_entropy=None), rec("random", 0, 2, test_acc=0.1),  # alg1 has no value here
    ]
    d = paired_difference(rows, "alg1", "random")
    # only cycle 1 pairs: 0.7 - 0.6 = 0.1; one pair -> std 0
    assert d["pairs"] == 1
    assert d["mean"] == pytest.approx(0.1)
    assert d["std"] == 0.0
    assert (d["wins"], d["losses"]) == (1, 0)


def test_paired_difference_on_another_key_and_grouping():
    rows = [{"strategy": "m2_disc", "seed": 0, "cycle": 0, "class_entropy": 2.0},
            {"strategy": "m2_vaal", "seed": 0, "cycle": 0, "class_entropy": 1.5}]
    d = paired_difference(rows, "m2_disc", "m2_vaal", y="class_entropy", by="strategy")
    assert (d["pairs"], d["wins"]) == (1, 1)
    assert d["mean"] == pytest.approx(0.5)


def test_paired_difference_without_common_pairs():
    d = paired_difference(paired_rows(), "vaal", "alg1")  # alg1 absent
    assert (d["pairs"], d["wins"], d["losses"]) == (0, 0, 0)
    assert math.isnan(d["mean"])
    # only the cycle-0 pairs exist, and min_cycle removes them
    d = paired_difference([rec("a", 0, 0, test_acc=0.1), rec("b", 0, 0, test_acc=0.2)], "a", "b", min_cycle=1)
    assert d["pairs"] == 0 and math.isnan(d["mean"]) and math.isnan(d["std"])  # same keys as with pairs


# -------------------------------------------------------------------------------------- beside_study


def curve_row(arm, n, mean, std):
    return {"arm": arm, "n_labelled": n, "mean": mean, "std": std, "min": mean, "max": mean, "n": 3}


def test_beside_study_aligns_exact_budgets_in_percent():
    table = [curve_row("vaal", n, 0.80 + n / 100000, 0.01) for n in sorted(analysis.STUDY_1000)]
    table += [curve_row("random", n, 0.10, 0.5) for n in sorted(analysis.STUDY_1000)]  # other arm: must not be used
    side = beside_study(table, analysis.STUDY_1000, arm="vaal")
    assert [s["n_labelled"] for s in side] == [1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000]
    assert all(s["ours_n"] == s["n_labelled"] for s in side)
    first, last = side[0], side[-1]
    # 1000: ours 0.80 + 0.01 = 0.81 -> 81.00 %, std 1.00 %, diff 81.00 - 84.91 = -3.91
    assert first == {"n_labelled": 1000, "study": 84.91, "ours_n": 1000, "ours_mean": pytest.approx(81.0),
                     "ours_std": pytest.approx(1.0), "diff": pytest.approx(-3.91)}
    # 8000: ours 0.80 + 0.08 = 0.88 -> 88.00 %, diff 88.00 - 90.37 = -2.37
    assert last["ours_mean"] == pytest.approx(88.0) and last["diff"] == pytest.approx(-2.37)


def test_beside_study_missing_budgets_use_the_nearest_and_out_of_range_are_dropped():
    # our grid: 1000, 2000, 4000 (no 3000), given unsorted
    table = [curve_row("vaal", 4000, 0.88, 0.0), curve_row("vaal", 1000, 0.85, 0.01), curve_row("vaal", 2000, 0.86, 0.02)]
    study = {500: 80.0, 1000: 84.91, 2600: 86.0, 3400: 87.0, 4000: 87.33, 8000: 90.37}
    side = beside_study(table, study, arm="vaal")
    # 500 is below and 8000 above the measured range: left out; 2600 -> 2000 (600 away, vs 1400); 3400 -> 4000 (600 vs 1400)
    assert [(s["n_labelled"], s["ours_n"]) for s in side] == [(1000, 1000), (2600, 2000), (3400, 4000), (4000, 4000)]
    s2600 = side[1]
    # ours at 2000: 86.0 % ± 2.0 %, diff 86.0 - 86.0 = 0
    assert (s2600["study"], s2600["ours_mean"], s2600["ours_std"], s2600["diff"]) == (
        86.0, pytest.approx(86.0), pytest.approx(2.0), pytest.approx(0.0))
    assert side[2]["diff"] == pytest.approx(88.0 - 87.0)


def test_beside_study_absent_arm_or_no_overlap_gives_empty():
    table = [curve_row("vaal", 100, 0.5, 0.0), curve_row("vaal", 500, 0.6, 0.0)]
    assert beside_study(table, analysis.STUDY_1000, arm="random") == []
    assert beside_study(table, analysis.STUDY_1000, arm="vaal") == []  # 100..500 lies below 1000..8000
    assert beside_study([], analysis.STUDY_1000, arm="vaal") == []


def test_beside_study_three_class_points_from_a_curve_table():
    # full path from records: three-class study points 500, 1012, 1396 on a +64 grid measured exactly
    rows = [rec("vaal", s, c, n_labelled=500 + 64 * c, test_acc=acc)
            for s, accs in ((0, (0.26, 0.50, 0.50)), (1, (0.28, 0.48, 0.52)))
            for c, acc in zip((0, 8, 14), accs)]
    three = {n: analysis.STUDY_THREE_CLASS[n] for n in (500, 1012, 1396)}  # the study reports all 15; three measured here
    assert len(analysis.STUDY_THREE_CLASS) == 15 and list(analysis.STUDY_THREE_CLASS)[1] == 564
    side = beside_study(curve(rows), three, arm="vaal")
    assert [s["ours_n"] for s in side] == [500, 1012, 1396]
    # 500: mean (0.26 + 0.28) / 2 = 0.27 -> 27.0 %, std sqrt(0.0002) = 1.414 %, diff 27.0 - 27.25 = -0.25
    assert side[0]["ours_mean"] == pytest.approx(27.0)
    assert side[0]["ours_std"] == pytest.approx(1.414213562)
    assert side[0]["diff"] == pytest.approx(-0.25)
    # 1396: mean 0.51 -> 51.0 %, diff 51.0 - 52.44 = -1.44
    assert side[2]["diff"] == pytest.approx(-1.44)


# ------------------------------------------------------------------------------------ class_coverage


def test_class_coverage_first_cycle_and_share():
    unseen = [3, 4]
    rows = [
        # vaal seed 0 (unsorted): cycle 0 picks none of {3, 4}; cycle 1 picks 2 of 10; cycle 2 picks 10 of 10;
        # cycle 3 is the last (no selection) -> first cycle 1, share (0 + 2 + 10) / 30 = 0.4
        rec("vaal", 0, 2, selected_class_counts=[0, 0, 0, 5, 5]),
        rec("vaal", 0, 0, selected_class_counts=[5, 5, 0, 0, 0]),
        rec("vaal", 0, 3),
        rec("vaal", 0, 1, selected_class_counts=[4, 4, 0, 2, 0]),
        # vaal seed 1 never reaches them -> None, share 0
        rec("vaal", 1, 0, selected_class_counts=[10, 0, 0, 0, 0]),
        rec("vaal", 1, 1, selected_class_counts=[0, 10, 0, 0, 0]),
        # random seed 0 reaches them at cycle 0 (a falsy cycle number must still count): 1 of 4, then 3 of 4 -> 4 / 8
        rec("random", 0, 0, selected_class_counts=[1, 1, 1, 1, 0]),
        rec("random", 0, 1, selected_class_counts=[0, 1, 0, 1, 2]),
        # alg1 seed 0 has only a final record: no selection at all -> None, share nan
        rec("alg1", 0, 0),
    ]
    cov = class_coverage(rows, iter(unseen))  # classes may be any iterable
    assert set(cov) == {("vaal", 0), ("vaal", 1), ("random", 0), ("alg1", 0)}
    assert cov[("vaal", 0)] == {"first_cycle": 1, "share": pytest.approx(0.4)}
    assert cov[("vaal", 1)] == {"first_cycle": None, "share": 0.0}
    assert cov[("random", 0)] == {"first_cycle": 0, "share": pytest.approx(0.5)}
    assert cov[("alg1", 0)]["first_cycle"] is None and math.isnan(cov[("alg1", 0)]["share"])


def test_unseen_classes_come_from_the_records_label_space_not_ten():
    three = [rec("vaal", 0, 0, labelled_class_counts=[5, 0, 5])]
    assert analysis.unseen_classes(three, [0, 2]) == [1]
    fifteen = [rec("vaal", 0, 0), rec("vaal", 0, 1, labelled_class_counts=[1] * 15)]  # the first with counts decides
    assert analysis.unseen_classes(fifteen, iter([2, 4, 7])) == [c for c in range(15) if c not in (2, 4, 7)]
    assert analysis.unseen_classes([], [2, 4, 7]) == []  # no records: no label space yet


def test_number_word_spells_small_counts_and_writes_digits_beyond_twelve():
    assert [analysis.number_word(n) for n in (0, 1, 7, 12, 13, 1500)] == ["zero", "one", "seven", "twelve", "13", "1,500"]


# --------------------------------------------------------------------------------------- first_below


def test_first_below_threshold_is_inclusive_and_order_free():
    rows = [
        # vaal seed 0: 0.9, 0.7, 0.5, 0.4 at cycles 0..3 (given unsorted) -> 0.5 <= 0.5 first at cycle 2
        rec("vaal", 0, 3, disc_acc_heldout=0.4), rec("vaal", 0, 0, disc_acc_heldout=0.9),
        rec("vaal", 0, 2, disc_acc_heldout=0.5), rec("vaal", 0, 1, disc_acc_heldout=0.7),
        # vaal seed 1: never at or below 0.5; a missing value is not "below"
        rec("vaal", 1, 0, disc_acc_heldout=0.9), rec("vaal", 1, 1, disc_acc_heldout=None), rec("vaal", 1, 2, disc_acc_heldout=0.8),
        # random has no discriminator
        rec("random", 0, 0, test_acc=0.1),
        # alg1 is below from the start: cycle 0 (falsy) must be returned, not None
        rec("alg1", 0, 0, disc_acc_heldout=0.2), rec("alg1", 0, 1, disc_acc_heldout=0.1),
    ]
    out = first_below(rows, "disc_acc_heldout", 0.5)
    assert out == {("vaal", 0): 2, ("vaal", 1): None, ("random", 0): None, ("alg1", 0): 0}
    assert first_below(rows, "disc_acc_heldout", 0.45)[("vaal", 0)] == 3


# ------------------------------------------------------------------------------------ markdown_table


def test_markdown_table_format_alignment_and_missing_values():
    rows = [{"arm": "vaal", "acc": 85.126, "n": 3, "diff": 0.09},
            {"arm": "random", "acc": None, "n": 0, "diff": -1.5},  # None -> en dash; 0 is a value, not missing
            {"arm": "alg1", "n": 2, "diff": 0.0}]  # absent key -> en dash
    cols = [("arm", "arm", "s"), ("acc", "acc (%)", ".2f"), ("n", "seeds", "d"), ("diff", "difference", "+.2f")]
    expected = (
        "| arm | acc (%) | seeds | difference |\n"
        "|:---|---:|---:|---:|\n"  # strings left-aligned, numbers right-aligned
        "| vaal | 85.13 | 3 | +0.09 |\n"
        "| random | \u2013 | 0 | -1.50 |\n"
        "| alg1 | \u2013 | 2 | +0.00 |"
    )
    assert markdown_table(rows, cols) == expected


def test_markdown_table_without_rows_is_header_and_rule():
    assert markdown_table([], [("arm", "arm", "s"), ("aubc", "AUBC (%)", ".1f")]) == "| arm | AUBC (%) |\n|:---|---:|"


# ---------------------------------------------------------------------------------- diagnostics_rows


DIAG = {"mean_pairwise_distance": 3.0, "random_mean_pairwise_distance": 2.0,
        "mean_min_distance_to_labelled": 1.0, "random_mean_min_distance_to_labelled": 4.0, "class_entropy": 1.5}


def test_diagnostics_rows_flatten_and_ratios_to_random():
    r0 = rec("alg1", 0, 0, test_acc=0.5, strategy="alg1", diagnostics=dict(DIAG))
    rows = diagnostics_rows([r0])
    assert len(rows) == 1
    row = rows[0]
    assert {k: row[k] for k in ("arm", "seed", "cycle", "n_labelled", "strategy")} == {
        "arm": "alg1", "seed": 0, "cycle": 0, "n_labelled": 100, "strategy": "alg1"}
    assert row["class_entropy"] == 1.5 and row["random_mean_pairwise_distance"] == 2.0  # diagnostics copied over
    assert row["pairwise_ratio"] == pytest.approx(1.5)  # 3.0 / 2.0
    assert row["to_labelled_ratio"] == pytest.approx(0.25)  # 1.0 / 4.0
    assert "test_acc" not in row  # only identifiers and diagnostics
    assert "pairwise_ratio" not in r0["diagnostics"]  # the record is not modified


def test_diagnostics_rows_ratio_none_without_random_value_and_skips_records_without_diagnostics():
    rows = [
        rec("a", 0, 0, diagnostics={**DIAG, "random_mean_pairwise_distance": 0.0}),  # random 0: no ratio
        rec("a", 0, 1, diagnostics={"mean_pairwise_distance": 3.0, "mean_min_distance_to_labelled": 2.0,
                                    "random_mean_min_distance_to_labelled": None}),  # random missing / None
        rec("a", 0, 2, diagnostics={**DIAG, "mean_pairwise_distance": None, "mean_min_distance_to_labelled": 0.0}),
        rec("a", 0, 3),  # last cycle: no selection, no diagnostics
        rec("a", 0, 4, diagnostics={}),
    ]
    out = diagnostics_rows(rows)
    assert [r["cycle"] for r in out] == [0, 1, 2]
    assert out[0]["pairwise_ratio"] is None and out[0]["to_labelled_ratio"] == pytest.approx(0.25)
    assert out[1]["pairwise_ratio"] is None and out[1]["to_labelled_ratio"] is None
    assert out[1]["strategy"] is None  # identifier absent from the record
    assert out[2]["pairwise_ratio"] is None  # own value missing
    assert out[2]["to_labelled_ratio"] == 0.0  # 0 / 4 is a real ratio, not missing


# ------------------------------------------------------------------------------- diagnostics_summary


def test_diagnostics_summary_mean_population_std_and_batches():
    diag = [
        {"arm": "alg1", "pairwise_ratio": 1.0, "class_entropy": 1.0},
        {"arm": "random", "pairwise_ratio": 1.0, "to_labelled_ratio": None},
        {"arm": "alg1", "pairwise_ratio": 2.0, "class_entropy": None},
        {"arm": "alg1", "pairwise_ratio": 3.0, "class_entropy": 2.0},
    ]
    out = diagnostics_summary(diag, ["random", "alg1", "ghost"])
    assert [r["arm"] for r in out] == ["random", "alg1", "ghost"]  # the order asked for
    rnd, alg1, ghost = out
    # alg1 pairwise 1, 2, 3: mean 2; population std sqrt((1 + 0 + 1) / 3) = 0.816497 (sample std would be 1.0)
    assert alg1["batches"] == 3
    assert alg1["pairwise_ratio"] == pytest.approx(2.0)
    assert alg1["pairwise_ratio_std"] == pytest.approx(0.8164965809)
    # class entropy 1, 2 (None skipped): mean 1.5, population std 0.5
    assert alg1["class_entropy"] == pytest.approx(1.5) and alg1["class_entropy_std"] == pytest.approx(0.5)
    # no value anywhere -> None, also for the std
    for k in ("to_labelled_ratio", "misclassified_fraction", "mean_confidence"):
        assert alg1[k] is None and alg1[k + "_std"] is None
    # one batch -> std 0
    assert rnd["batches"] == 1 and rnd["pairwise_ratio"] == pytest.approx(1.0) and rnd["pairwise_ratio_std"] == 0.0
    assert rnd["to_labelled_ratio"] is None
    # an arm without rows
    keys = ("pairwise_ratio", "to_labelled_ratio", "class_entropy", "misclassified_fraction", "mean_confidence")
    assert ghost == {"arm": "ghost", "batches": 0, **{k: None for k in keys}, **{k + "_std": None for k in keys}}


def test_diagnostics_summary_from_records():
    rows = [rec("alg1", s, c, diagnostics={"mean_pairwise_distance": d, "random_mean_pairwise_distance": 2.0})
            for s, c, d in ((0, 0, 2.0), (0, 1, 4.0), (1, 0, 6.0))] + [rec("alg1", 0, 2)]
    (s,) = diagnostics_summary(diagnostics_rows(rows), ["alg1"])
    # ratios 1, 2, 3 over 3 batches (the final record has none): mean 2
    assert s["batches"] == 3 and s["pairwise_ratio"] == pytest.approx(2.0)


# --------------------------------------------------------------------------------- final_confusions


def confusion_rows() -> list[dict]:
    return [
        rec("vaal", 0, 0, test_confusion=[[100, 0], [0, 100]]),  # earlier cycles must not count
        rec("vaal", 0, 1, test_confusion=[[3, 1], [0, 4]]),
        rec("vaal", 1, 1, test_confusion=[[2, 2], [1, 3]]),
        rec("vaal", 1, 0, test_confusion=[[100, 0], [0, 100]]),
        rec("random", 0, 0, test_confusion=[[50, 0], [0, 50]]),
        rec("random", 0, 2, test_confusion=[[1, 0], [0, 1]]),
    ]


def test_final_confusions_last_cycle_summed_over_seeds():
    out = final_confusions(confusion_rows(), ["random", "vaal", "alg1"])
    assert list(out) == ["random", "vaal"]  # arm order kept; an arm without rows is left out
    # vaal cycle 1: [[3,1],[0,4]] + [[2,2],[1,3]] = [[5,3],[1,7]]
    assert isinstance(out["vaal"], np.ndarray)
    assert out["vaal"].tolist() == [[5, 3], [1, 7]]
    assert out["random"].tolist() == [[1, 0], [0, 1]]  # single seed, cycle 2 only


def test_final_confusions_includes_runs_that_stopped_early():
    rows = [
        rec("vaal", 0, 0, test_confusion=[[9, 9], [9, 9]]),
        rec("vaal", 0, 1, test_confusion=[[3, 1], [0, 4]], stopped=True),  # seed 0 stopped at cycle 1
        rec("vaal", 1, 0, test_confusion=[[9, 9], [9, 9]]),
        rec("vaal", 1, 1, test_confusion=[[9, 9], [9, 9]]),
        rec("vaal", 1, 2, test_confusion=[[2, 2], [1, 3]]),
    ]
    # each run's own last cycle: [[3,1],[0,4]] + [[2,2],[1,3]] = [[5,3],[1,7]]
    assert final_confusions(rows, ["vaal"])["vaal"].tolist() == [[5, 3], [1, 7]]


def test_final_confusions_accepts_a_one_shot_iterator():
    out = final_confusions(iter(confusion_rows()), ["random", "vaal"])
    assert set(out) == {"random", "vaal"}


def test_heldout_noise_is_the_binomial_standard_error_of_the_smallest_set():
    from alkit.analysis import heldout_noise

    rows = [{"n_disc_heldout": 8}, {"n_disc_heldout": 50}, {"n_disc_heldout": None}, {}]
    # smallest set: 8 labelled + 8 unlabelled = 16 points; sqrt(0.25 / 16) = 0.125
    assert heldout_noise(rows) == {"n_min": 8, "n_max": 50, "se_at_chance": 0.125}
    assert heldout_noise([{}]) == {}


def test_stopping_by_auc_with_accuracy_as_the_second_line():
    """Planted: seed 0's accuracy reads exactly 0.5 at cycle 0 (all logits one side) while its AUC is 0.64;
    by AUC <= 0.55 it stops at cycle 1, by accuracy at cycle 0."""
    from alkit import analysis

    def r(seed, cycle, acc, auc):
        return {"arm": "vaal", "seed": seed, "cycle": cycle, "disc_acc_heldout": acc, "disc_auc_heldout": auc,
                "n_disc_heldout": 8}

    rows = [r(0, 0, 0.5, 0.64), r(0, 1, 0.52, 0.53), r(1, 0, 0.7, 0.8), r(1, 1, 0.6, 0.56)]
    d = analysis.stop_decisions(rows, 0.55)
    assert [(x["seed"], x["auc"], x["acc"], x["changed"], x["flat"]) for x in d] == [(0, 1, 0, True, [0]), (1, None, None, False, [])]
    lines = analysis.describe_stopping(rows, 0.55)
    assert "seed 0: cycle 1; by held-out accuracy ≤ 55 % (second line): cycle 0" in lines[0] and "exactly 50 %" in lines[0]
    assert lines[2] == "- AUC and accuracy disagree on 1 of 2 stop decisions."
    # 8 + 8 points: sqrt(17 / 768) = 0.1488
    assert analysis.auc_noise(rows)["se_at_chance"] == pytest.approx(0.148780, abs=1e-6)
    assert "± 0.15" in lines[3] and "within that noise" in lines[3]


def test_the_1000_to_8000_table_is_labelled_as_the_slide_and_both_arms_stand_beside_it():
    from alkit import analysis

    assert "most likely M2-VAAL" in analysis.STUDY_1000_NAME and "does not say" in analysis.STUDY_1000_NAME
    assert analysis.STUDY_1000[1000] == 84.91 and analysis.STUDY_1000[8000] == 90.37
    assert not hasattr(analysis, "STUDY_VAAL")  # the slide never says VAAL
    table = [curve_row("m2_vaal", n, 0.80, 0.01) for n in (1000, 2000)] + [curve_row("vaal", n, 0.86, 0.02) for n in (1000, 2000)]
    text, rows = analysis.beside_study_arms_markdown(table, analysis.STUDY_1000, ["m2_vaal", "vaal"], "paper")
    assert [r["n_labelled"] for r in rows] == [1000, 2000]
    assert rows[0]["m2_vaal_diff"] == pytest.approx(80.0 - 84.91) and rows[0]["vaal_diff"] == pytest.approx(86.0 - 84.91)
    assert "alkit m2_vaal (%)" in text and "alkit vaal (%)" in text and "most likely M2-VAAL" in text
    text, rows = analysis.beside_study_arms_markdown(table[:2], analysis.STUDY_1000, ["m2_vaal", "vaal"], "paper")
    assert "No records yet at the study's label counts: `vaal`." in text
    text, rows = analysis.beside_study_arms_markdown([curve_row("vaal", 100, 0.5, 0.0)], analysis.STUDY_1000, ["m2_vaal", "vaal"], "smoke")
    assert rows == [] and "No `m2_vaal` records yet" in text


def test_a_best_arm_is_named_only_when_it_beats_the_runner_up():
    from alkit import analysis

    def rows(gains, seeds=3):
        out = []
        for seed in range(seeds):
            for cycle in range(3):
                for arm, g in gains.items():
                    out.append({"arm": arm, "seed": seed, "cycle": cycle, "n_labelled": 100 * (cycle + 1),
                                "test_acc": 0.6 + 0.05 * cycle + 0.003 * seed * (arm == "b") + (g[seed] if cycle else 0.0)})
        return out

    clear = rows({"a": [0.10, 0.11, 0.12], "b": [0.0, 0.0, 0.0], "c": [0.0, 0.001, -0.001]})
    text = analysis.describe_best_aubc(analysis.aubc(clear, min_cycle=1), clear, min_cycle=1, family_size=2)
    assert "the best area under the budget curve is **a**, ahead of the runner-up" in text and "over 3 comparisons" in text
    close = rows({"a": [0.02, -0.01, 0.015], "b": [0.0, 0.0, 0.0]})
    text = analysis.describe_best_aubc(analysis.aubc(close, min_cycle=1), close, min_cycle=1)
    assert "no arm distinguishable from the others" in text and "cannot be told from noise" in text
    two = rows({"a": [0.10, 0.11], "b": [0.0, 0.0]}, seeds=2)
    assert "not testable with 2 seeds" in analysis.describe_best_aubc(analysis.aubc(two), two)


def test_confusion_relation_planted():
    """Planted: the model errs on classes 0-2 only; alg1's batch takes those classes, random's is uniform-ish."""
    from alkit import analysis

    conf = np.diag([5.0] * 10)
    conf[0, 1] = conf[1, 2] = conf[2, 0] = 5.0  # classes 0, 1, 2: error 0.5; others 0
    conf[3, 4] = 1.0  # class 3: error 1/6, so the errors have more than two ranks
    def rec_(arm, seed, cycle, counts, mis):
        return {"arm": arm, "seed": seed, "cycle": cycle, "n_labelled": 10 * (cycle + 1), "test_confusion": conf.tolist(),
                "selected_class_counts": counts, "diagnostics": {"misclassified_fraction": mis}}
    rows = []
    for seed in range(3):
        rows.append(rec_("alg1", seed, 0, [3, 3, 3, 1, 0, 0, 0, 0, 0, 0], 0.6 + 0.01 * seed))
        rows.append(rec_("random", seed, 0, [1, 1, 1, 1, 1, 1, 1, 1, 1, 1 + seed], 0.2))
    rel = analysis.confusion_relation(rows, ["alg1"])
    assert len(rel) == 3 and all(r["rho"] > 0.8 for r in rel)
    assert rel[0]["rho_random"] is None  # a uniform batch has no ranks
    assert rel[1]["rho_random"] < 0.0  # the only extra image falls on a class the model gets right
    assert rel[0]["misclassified_gain"] == pytest.approx(0.4)
    tests = analysis.confusion_claim_tests(rel, ["alg1"])
    mis = next(t for t in tests if t["y"] == "misclassified_gain")
    assert mis["n"] == 3 and mis["verdict"] == "alg1 higher"  # 0.40, 0.41, 0.42: every seed
    rho = next(t for t in tests if t["y"] == "rho_gain")
    assert rho["n"] == 2 and rho["verdict"] == "not testable with 2 seeds"  # seed 0's random batch had no ranks
    assert analysis.per_class_error(conf)[:4] == pytest.approx([0.5, 0.5, 0.5, 1 / 6])


def test_capacity_is_read_both_ways():
    from alkit import analysis

    paper = [{"classifier_params": 2_740_000, "m2_params": 4_840_000}]
    assert analysis.describe_capacity(paper) == ("- Capacity: q(y|x) alone has 2.74M parameters, the whole M2 (encoder, "
                                                 "decoder and q(y|x)) 4.84M; the study's ~3M matches q(y|x) alone.")
    smoke = [{"classifier_params": 421_834, "m2_params": 600_000}]
    assert "neither is near the study's ~3M" in analysis.describe_capacity(smoke)
    assert "not recorded" in analysis.describe_capacity([{}])
    assert analysis.STUDY_CAPACITY_ANCHORS == {50: 68.0, 1000: 85.0}


def test_adversary_sweep_table_planted():
    from alkit import analysis

    def r(arm, seed, cycle, counts):
        return {"arm": arm, "seed": seed, "cycle": cycle, "n_labelled": 60 + 20 * cycle, "test_acc": 0.3 + 0.1 * cycle,
                "selected_class_counts": counts, "diagnostics": {"class_entropy": analysis_entropy(counts)}}

    from alkit.analysis import class_entropy as analysis_entropy
    rows = []
    for seed in (0, 1):
        rows += [r("vaal", seed, c, [0, 0, 10, 0, 10, 0, 0, 0, 0, 0]) for c in range(2)]  # only start classes
        rows += [r("vaal_w0", seed, c, [2] * 10) for c in range(2)]  # balanced: 7 of 10 classes unseen
    assert analysis.sweep_arm("vaal", 1) == "vaal" and analysis.sweep_arm("vaal", 10) == "vaal_w10"
    t = analysis.adversary_sweep(rows, ["vaal"], [0, 1, 10], unseen=[0, 1, 3, 5, 6, 8, 9])
    assert [(x["weight"], x["seeds"]) for x in t] == [(0, 2), (1, 2)]  # no records at weight 10
    assert t[0]["entropy"] == pytest.approx(np.log(10)) and t[0]["unseen"] == pytest.approx(70.0)
    assert t[1]["entropy"] == pytest.approx(np.log(2)) and t[1]["unseen"] == pytest.approx(0.0)
    assert t[0]["aubc"] == pytest.approx(40.0)  # cycle 1 only: 0.4


def test_validation_size_is_stated_beside_the_labels():
    from alkit import analysis
    from alkit.experiment import Experiment

    exp = Experiment(name="05_latent_acquisition", profile="paper", seeds=[0], arms={"random": {}},
                     base={"initial": {"kind": "stratified", "n": 50}, "budget": 50, "cycles": 2})
    text = analysis.describe_validation(exp, [{"n_labelled": 50}, {"n_labelled": 150}])
    assert "5,000 labelled validation images" in text and "50–150 labels" in text and "100.0× the smallest" in text
    assert analysis.describe_validation(exp, []) == ""


def test_checkpoint_table_and_tests_from_planted_records():
    """Best-validated vs final state: means per arm and label count, the gap in points, the validation size,
    and per arm a paired test over seeds (3 seeds: the gap +2, +3, +4 points at every cycle -> 'best-validated
    higher'; 2 seeds: not testable); records without test_acc_final are skipped."""
    rows = []
    for seed, gap in enumerate((0.02, 0.03, 0.04)):
        for cycle, n in enumerate((50, 100)):
            rows.append({"arm": "random", "seed": seed, "cycle": cycle, "n_labelled": n, "n_val": 500,
                         "test_acc": 0.6 + 0.1 * cycle, "test_acc_final": 0.6 + 0.1 * cycle - gap})
    for seed in (0, 1):
        for cycle, n in enumerate((50, 100)):
            rows.append({"arm": "vaal", "seed": seed, "cycle": cycle, "n_labelled": n, "n_val": 500,
                         "test_acc": 0.5, "test_acc_final": 0.5 - 0.01 * (seed + 1)})
    rows.append({"arm": "vaal", "seed": 2, "cycle": 0, "n_labelled": 50, "test_acc": 0.9})  # an old record
    table = analysis.checkpoint_rows(rows, ["random", "vaal"])
    assert [(r["arm"], r["n_labelled"], r["seeds"], r["n_val"]) for r in table] == [
        ("random", 50, 3, 500), ("random", 100, 3, 500), ("vaal", 50, 2, 500), ("vaal", 100, 2, 500)]
    assert table[0]["best"] == pytest.approx(60.0) and table[0]["final"] == pytest.approx(57.0)
    assert table[0]["gap"] == pytest.approx(3.0) and table[2]["gap"] == pytest.approx(1.5)
    tests = {t["arm"]: t for t in analysis.checkpoint_tests(rows, ["random", "vaal"])}
    assert tests["random"]["diffs"] == pytest.approx([0.02, 0.03, 0.04])
    assert tests["random"]["verdict"] == "best-validated higher" and tests["random"]["family_size"] == 1
    assert tests["vaal"]["verdict"] == "not testable with 2 seeds"
    text = analysis.checkpoint_markdown(rows, ["random", "vaal"])
    assert "| random | 50 | 500 | 3 | 60.00 | 57.00 | +3.00 |" in text
    assert "- vaal: best-validated \u2212 final state: +1.50 points (per seed +1.00, +2.00" in text
    assert analysis.checkpoint_markdown([r for r in rows if "test_acc_final" not in r], ["vaal"]) == ""


def test_checkpoint_gap_of_one_state_is_zero_whatever_the_float_type():
    """test_acc is a float32 mean, test_acc_final an exact fraction: the same state (0.587 both ways) has gap 0,
    not -1e-8 (which printed as '-0.00' and '-1.99e-07 points')."""
    import numpy as np

    rows = [{"arm": "a", "seed": s, "cycle": c, "n_labelled": 50 * (c + 1), "n_val": 500,
             "test_acc": float(np.float32(0.587)), "test_acc_final": 0.587} for s in (0, 1) for c in (0, 1)]
    assert analysis.checkpoint_rows(rows, ["a"])[0]["gap"] == 0.0
    t = analysis.checkpoint_tests(rows, ["a"])[0]
    assert t["diffs"] == [0.0, 0.0]
    assert "+0.00 |" in analysis.checkpoint_markdown(rows, ["a"])
