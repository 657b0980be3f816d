"""Every pair a notebook compares differs in one thing only: learner or acquisition (issue 26)."""
from __future__ import annotations

from pathlib import Path

import pytest

from alkit import analysis, comparisons
from alkit.config import ConfigError
from alkit.experiment import Experiment, load_experiment

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted(p for p in (ROOT / "params").glob("*/0[2-5]_*.yaml"))


def exp(arms: dict, base: dict | None = None) -> Experiment:
    return Experiment(name="02_vaal_vs_random", profile="smoke", seeds=[0, 1, 2], arms=arms,
                      base=base or {"initial": {"kind": "random", "n": 100}, "budget": 100, "cycles": 2})


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_compared_pair_differs_in_learner_or_acquisition_only(path):
    e = load_experiment(path)
    found = comparisons.pairs(e)  # raises on a confounded pair
    kinds = {k for _, _, k in found}
    assert found and all(comparisons.kind_of(e, a, b) == k for a, b, k in found)
    if e.name != "05_latent_acquisition":
        assert kinds == {"acquisition", "learner"}  # both kinds of comparison in 02-04
        declared = comparisons.PAIRS[e.name]
        assert [p for p in declared if p[0] in e.arms and p[1] in e.arms] == declared  # every pair runs, smoke and paper


@pytest.mark.parametrize("path", [p for p in FILES if "05_" not in p.name], ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_acquisition_arm_has_a_same_learner_random_control(path):
    e = load_experiment(path)
    for arm in e.arms:
        cfg = e.config(arm, e.seeds[0])
        if cfg.strategy == "random":
            continue
        controls = [b for b in e.arms if e.config(b, e.seeds[0]).strategy == "random"
                    and comparisons._learner_key(e.config(b, e.seeds[0])) == comparisons._learner_key(cfg)]
        assert controls, f"{path.name}: {arm} has no random-acquisition arm with its learner"
        assert any((arm, c, "acquisition") in comparisons.PAIRS[e.name] for c in controls)


def test_paper_files_run_the_study_arms_and_their_controls_first():
    first = {"02_vaal_vs_random": ["vaal", "random", "m2_vaal", "m2_vaal_random", "tavaal", "tavaal_random"],
             "03_three_class_start": ["m2_vaal", "m2_vaal_random", "vaal", "random"],
             "04_discriminator_only": ["m2_vaal", "m2_vaal_random", "m2_disc", "m2_random"]}
    for name, arms in first.items():
        assert list(load_experiment(ROOT / "params" / "paper" / f"{name}.yaml").arms)[:len(arms)] == arms


def test_a_pair_that_differs_in_both_is_refused():
    e = exp({"random": {"learner": "classifier", "strategy": "random"}, "tavaal": {"learner": "tavaal", "strategy": "vaal"},
             "m2_vaal": {"learner": "m2_vaal", "strategy": "vaal"}, "m2_random": {"learner": "m2", "strategy": "random"},
             "vaal": {"learner": "vaal", "strategy": "vaal"}})
    with pytest.raises(ConfigError, match="tavaal .* differs in both learner and strategy"):
        comparisons.kind_of(e, "tavaal", "random")
    with pytest.raises(ConfigError, match="m2_vaal .* differs in both learner and strategy"):
        comparisons.kind_of(e, "m2_vaal", "m2_random")  # the pair the README used to call "learner held fixed"
    assert comparisons.kind_of(e, "vaal", "random") == "acquisition"  # VAAL's task model is the classifier
    assert comparisons.kind_of(e, "m2_vaal", "vaal") == "learner"
    with pytest.raises(ConfigError, match="declared a acquisition comparison"):
        comparisons.PAIRS["test_bad"] = [("m2_vaal", "vaal", "acquisition")]
        try:
            comparisons.pairs(Experiment(name="test_bad", profile="smoke", seeds=[0], arms=e.arms, base=e.base))
        finally:
            del comparisons.PAIRS["test_bad"]


def test_vaals_classifier_size_is_the_classifiers_size():
    """VAAL names its task model's size ``classifier_size``, the classifier learner ``size``: the same parameter,
    so a large-CNN VAAL against the small-CNN classifier differs in both (it used to pass as an acquisition pair,
    ``classifier_size`` being dropped as a VAE-side parameter), and against a large classifier in acquisition only."""
    arms = {"random": {"learner": "classifier", "strategy": "random"},
            "random_large": {"learner": "classifier", "strategy": "random", "learner_params": {"size": "large"}},
            "vaal_large": {"learner": "vaal", "strategy": "vaal", "learner_params": {"classifier_size": "large"}}}
    e = exp(arms)
    with pytest.raises(ConfigError, match="vaal_large .* differs in both learner and strategy"):
        comparisons.kind_of(e, "vaal_large", "random")
    assert comparisons.kind_of(e, "vaal_large", "random_large") == "acquisition"


def test_learner_parameters_and_run_settings_count():
    e = exp({"a": {"learner": "m2", "strategy": "random", "learner_params": {"width": 8}},
             "b": {"learner": "m2", "strategy": "entropy", "learner_params": {"width": 16}},
             "c": {"learner": "m2", "strategy": "entropy", "budget": 50},
             "d": {"learner": "m2", "strategy": "random", "learner_params": {"width": 64}},  # 64 is the default
             "e": {"learner": "m2_disc", "strategy": "vaal", "learner_params": {"disc_hidden": 16}},
             "f": {"learner": "m2", "strategy": "random", "latent_sample": 400}})
    with pytest.raises(ConfigError, match="both learner and strategy"):
        comparisons.kind_of(e, "a", "b")  # another width is another learner
    with pytest.raises(ConfigError, match="differs in budget"):
        comparisons.kind_of(e, "b", "c")
    with pytest.raises(ConfigError, match="neither"):
        comparisons.kind_of(e, "d", "f")  # a default written out, or saved codes, change nothing
    assert comparisons.kind_of(e, "e", "d") == "acquisition"  # m2_disc's discriminator size is not M2's


def test_family_is_holm_corrected_over_the_notebook_pairs():
    arms = {"random": {"learner": "classifier", "strategy": "random"}, "vaal": {"learner": "vaal", "strategy": "vaal"},
            "m2_random": {"learner": "m2", "strategy": "random"}}
    e = exp(arms)
    rows = []
    for seed, noise in enumerate([0.0, 0.01, -0.005]):
        for cycle in range(3):
            base = 0.6 + 0.05 * cycle + noise
            for arm, gain in (("random", 0.0), ("vaal", 0.05 + 0.001 * seed), ("m2_random", 0.001 * (seed - 1))):
                rows.append({"arm": arm, "seed": seed, "cycle": cycle, "n_labelled": 100 * (cycle + 1),
                             "test_acc": base + (gain if cycle else 0.0)})
    fam = comparisons.family(rows, e)
    assert [(d["a"], d["b"], d["kind"]) for d in fam] == [("vaal", "random", "acquisition"), ("m2_random", "random", "learner")]
    assert all(d["family_size"] == 2 for d in fam) and fam[0]["verdict"] == "vaal higher"
    assert fam[1]["verdict"] == "within noise" and fam[1]["mde"] is not None
    assert fam[0]["labels"] == [200, 300]  # cycles >= 1 only: one AUBC definition
    table = analysis.family_markdown(fam)
    assert "Holm p" in table and "raw p" in table and "learner `vaal`" in table
