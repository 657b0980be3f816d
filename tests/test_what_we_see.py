"""Each notebook's "What we see" lines (``alkit.analysis.what_we_see``): planted records -> the expected sentence.

The notebooks' cells only display these; the verdicts they choose are tested here, not in a cell.
"""
from __future__ import annotations

import pytest

from alkit import analysis
from alkit.analysis import what_we_see as ws
from alkit.experiment import Experiment
from helpers import rec

EXP = Experiment(name="04_discriminator_only", profile="smoke", seeds=[0, 1, 2], arms={"m2_disc": {}, "m2_vaal": {}},
                 base={"initial": {"kind": "random", "n": 100}, "budget": 100, "cycles": 2, "val_size": 500})


# ------------------------------------------------------------------------------------------ notebook 01


def test_latent_map_line_names_the_batch_only_when_one_was_selected():
    s = {"knn_purity": 0.8123, "selected_classes": 4, "selected_to_labelled": 1.5}
    assert ws.describe_latent_map("vaal", 0, s) == (
        "- **vaal**, cycle 0: a 10-nearest-neighbour vote on the 2-D map recovers the true class of 81.2 % of points "
        "(chance ≈ 10 %); the batch it selects spans 4 classes and lies on average 1.50× as far from its nearest "
        "labelled point as the unlabelled sample does.")
    last = dict(s, selected_classes=0)  # the last cycle selects nothing
    assert ws.describe_latent_map("vaal", 1, last).endswith("recovers the true class of 81.2 % of points (chance ≈ 10 %).")
    rows = [rec("vaal", 0, 0, 500, 0.5), rec("vaal", 0, 1, 2000, 0.625)]
    text = ws.describe_latent_maps([("vaal", 0, s), ("vaal", 1, last)], rows, ["vaal", "m2_vaal"])
    lines = text.split("\n")
    assert lines[0].startswith("**What the maps show (one seed: an illustration, not a test):**") and lines[1] == ""
    assert len(lines) == 5 and lines[4] == ("- Test accuracy of the task model: vaal 50.0 % with 500 labels → 62.5 % "
                                            "with 2000, m2_vaal: no records yet.")
    assert ws.latent_maps_answer([]).startswith("**This profile cannot show the latent spaces yet")


# ------------------------------------------------------------------------------------------ notebook 02


def test_vaal_vs_random_states_the_gap_to_the_study_where_the_grids_meet():
    rows = [rec(arm, s, c, 1000 * (c + 1), acc + 0.01 * c + 0.001 * s)
            for arm, acc in (("m2_vaal", 0.85), ("vaal", 0.80)) for s in (0, 1) for c in range(3)]
    table = analysis.curve(rows)
    aubc = analysis.aubc(rows, min_cycle=1)
    text = ws.describe_vaal_vs_random(rows, table, aubc, [], ["vaal", "m2_vaal"])
    lines = text.split("\n")
    assert lines[0] == ("**This profile cannot answer the question yet.** Not run yet: vaal vs random, "
                        "m2_vaal vs m2_vaal_random.") and lines[1] == ""
    assert lines[2] == ("- At the largest budget (mean ± sd over seeds): vaal 82.05 ± 0.07 % (3,000 labels, 2 seeds), "
                        "m2_vaal 87.05 ± 0.07 % (3,000 labels, 2 seeds).")
    # study: 84.91, 85.84, 86.58 at 1,000-3,000; ours m2_vaal 85.05, 86.05, 87.05 -> +0.14, +0.21, +0.47: mean +0.27
    assert lines[3] == "- alkit's m2_vaal minus the study's model, averaged over the study's label counts: +0.27 points."
    assert lines[4].startswith("- alkit's vaal minus the study's model") and len(lines) == 5
    smoke = [dict(r, n_labelled=r["n_labelled"] // 10) for r in rows]  # 100-300 labels: outside the study's grid
    assert "minus the study's model" not in ws.describe_vaal_vs_random(smoke, analysis.curve(smoke), aubc, [], ["vaal"])


# ------------------------------------------------------------------------------------------ notebook 03


def test_adversary_sweep_reads_no_direction_from_two_seeds():
    table = [{"arm": "vaal", "weight": 0, "seeds": 2, "entropy": 1.594, "entropy_sd": 0.15, "unseen": 95.83,
              "unseen_sd": 1.2, "aubc": 38.154}]
    text = ws.describe_adversary_sweep(table, 2, "smoke")
    assert text.splitlines()[2] == "| vaal | 0 | 2 | 1.59 | 0.15 | 95.8 | 1.2 | 38.15 |"
    assert text.endswith("\n\n2 seeds: a trend, not a test.")
    assert ws.describe_adversary_sweep(table, 3, "paper").endswith("3 seeds: see the spread before reading a direction.")
    assert ws.describe_adversary_sweep(None, 2, "smoke") == "No adversary-weight sweep in the `smoke` profile (`options.sweep` unset)."


# ------------------------------------------------------------------------------------------ notebook 04


def mech_rows(gap_plain: float, gap_adv: float, seeds=(0, 1, 2)) -> tuple[list[dict], list[dict]]:
    """Diagnostics rows (class entropy, pairwise ratio) and entropy-gap rows, one per seed and cycle."""
    diag, spread = [], []
    for s in seeds:
        for c in range(2):
            for arm, gap in (("m2_disc", gap_plain), ("m2_vaal", gap_adv)):
                noise = 0.01 * ((s * 7 + c * 3) % 5)
                diag.append(rec(arm, s, c, class_entropy=2.0 + noise, pairwise_ratio=1.0 + noise))
                spread.append(rec(arm, s, c, entropy_gap=gap + noise + (0.003 * s if arm == "m2_vaal" else 0)))
    return diag, spread


@pytest.mark.parametrize("plain, adv, reading", [
    (0.5, 0.1, "The adversarial arm has the smaller gap, consistent with the equalising explanation."),
    (0.1, 0.5, "The adversarial arm has the larger gap: this run contradicts the equalising explanation."),
    (0.3, 0.3, "This run can neither confirm nor refute the equalising explanation."),
])
def test_mechanism_verdict_follows_the_entropy_gap_test(plain, adv, reading):
    diag, spread = mech_rows(plain, adv)
    mech = analysis.mechanism_tests(diag, spread, ["m2_disc", "m2_vaal"])
    assert [d["kind"] for d in mech] == ["batch measure: class_entropy", "batch measure: pairwise_ratio",
                                         "batch measure: entropy_gap"]
    lines = ws.describe_mechanism({d["y"]: d for d in analysis.correct_family(mech)}, "m2_disc", "m2_vaal")
    assert lines[0].startswith("- Batch diversity, class entropy: m2_disc − m2_vaal: ") and "Pairwise-distance ratio: " in lines[0]
    assert lines[1].startswith("- y′ spread, unlabelled-minus-labelled entropy gap: m2_disc − m2_vaal: ")
    assert lines[1].endswith(" " + reading)


def test_discriminator_only_lists_pairs_unseen_classes_mechanism_and_validation():
    assert analysis.mechanism_tests([], [], ["m2_disc"]) == []  # an arm missing: nothing to test
    diag, spread = mech_rows(0.5, 0.1)
    fam = analysis.correct_family(analysis.mechanism_tests(diag, spread, ["m2_disc", "m2_vaal"]))
    rows = [rec(a, s, c, 100 + 100 * c, 0.5, selected_class_counts=[1] * 10) for a in ("m2_disc", "m2_vaal")
            for s in (0, 1, 2) for c in range(3)]
    lines = ws.describe_discriminator_only(fam, rows, ["m2_disc", "m2_vaal"], [0, 1, 3, 5, 6, 8, 9], EXP).split("\n")
    assert lines[0] == ("**This profile cannot answer the question yet.** Not run yet: m2_vaal vs m2_disc, "
                        "m2_disc vs m2_random.") and lines[1] == ""
    assert lines[2] == "- " + analysis.aubc_definition()
    assert lines[3] == ("- Share of selected images from the seven unseen classes (mean over seeds): m2_disc 70.0 %, "
                        "m2_vaal 70.0 %.")
    assert lines[4].startswith("- Batch diversity") and lines[5].startswith("- y′ spread")
    assert lines[6].startswith("- Validation: every checkpoint is chosen on 500 labelled validation images") and len(lines) == 7
    no_mech = ws.describe_discriminator_only([], rows, ["m2_disc"], [0], EXP).split("\n")
    assert len(no_mech) == 5 and not any("y′ spread" in line for line in no_mech)


# ------------------------------------------------------------------------------------------ notebook 05


def test_latent_acquisition_ranks_describes_batches_and_the_norm_comparison():
    rows = [rec(arm, s, c, 50 + 50 * c, acc + 0.02 * c) for arm, acc in (("random", 0.5), ("alg1", 0.55))
            for s in (0, 1) for c in range(3)]
    aubc = analysis.aubc(rows, min_cycle=1)
    summary = [{"arm": "random", "pairwise_ratio": 1.0, "misclassified_fraction": 0.40},
               {"arm": "alg1", "pairwise_ratio": 1.234, "misclassified_fraction": 0.612},
               {"arm": "alg2", "pairwise_ratio": None, "misclassified_fraction": 0.5}]
    norm = {"spearman": 0.876, "exact_seconds": 2.0, "approx_seconds": 0.01}
    exp = Experiment(name="05_latent_acquisition", profile="smoke", seeds=[0, 1], arms={"random": {}, "alg1": {}},
                     base={"initial": {"kind": "random", "n": 50}, "budget": 50, "cycles": 2, "val_size": 500})
    lines = ws.describe_latent_acquisition(rows, aubc, [], summary, norm, exp).split("\n")
    assert lines[0].startswith("**This profile cannot answer the question yet.**") and lines[1] == ""
    assert lines[2] == "- Ranking by area under the budget curve (means; an order, not a verdict): alg1 (58.00 %), random (53.00 %)."
    assert lines[3] == ("- alg1: its batches are 1.23× as spread out as random batches and 61.2 % of them are "
                        "misclassified (random: 40.0 %).")  # alg2 has no pairwise ratio: no line
    assert lines[4] == ("- Kernel norm-based maximin: the closed form ranks the small pool with Spearman ρ = 0.88 "
                        "against the exact kernel score and is 200× faster there.")
    assert lines[5].startswith("- Validation:") and len(lines) == 6
    assert not any("Kernel" in line for line in ws.describe_latent_acquisition(rows, aubc, [], summary, None, exp).split("\n"))


# ------------------------------------------------------------------------------------------ the opening sentence


def test_the_answer_reads_a_direction_only_where_the_statistics_allow_and_says_the_rest_once():
    lower = {"a": "vaal", "b": "random", "testable": True, "verdict": "random higher", "mean": -0.0064,
             "ci_low": -0.0101, "ci_high": -0.0027, "n": 5, "p_holm": 0.008, "mde": 0.005}
    two = {"a": "m2_vaal", "b": "m2_vaal_random", "testable": False, "verdict": "not testable with 2 seeds",
           "mean": -0.0024, "n": 2}
    claims = [("vaal", "random"), ("m2_vaal", "m2_vaal_random"), ("tavaal", "tavaal_random")]
    assert analysis.answer([lower, two], claims) == (
        "**The answer on this profile:** random is higher than vaal by 0.64 points of AUBC (95% CI +0.27 to +1.01; "
        "5 seeds, Holm-adjusted p = 0.008). Not testable yet (a direction needs at least 3 seeds): m2_vaal vs "
        "m2_vaal_random (2 seeds). Not run yet: tavaal vs tavaal_random.")
    noise = {"a": "alg1", "b": "random", "testable": True, "verdict": "within noise", "mean": 0.001, "mde": 0.012,
             "n": 5, "p_holm": 0.7}
    assert analysis.answer([noise], [("alg1", "random")]) == (
        "**The answer on this profile:** alg1 and random are within noise of each other (alg1 − random: +0.10 points "
        "of AUBC; with 5 seeds a difference below ≈ 1.2 points could not be seen).")
    assert analysis.answer([two], [("m2_vaal", "m2_vaal_random")]).startswith(
        "**This profile cannot answer the question yet.** Not testable yet")
