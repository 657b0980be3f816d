"""Each notebook's own parameters cell holds the smoke profile, so opening it in Jupyter runs `smoke`."""
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("0*.ipynb"))


def test_every_notebook_has_both_profiles():
    assert len(NOTEBOOKS) == 6
    for nb in NOTEBOOKS:
        for profile in ("smoke", "paper"):
            assert (ROOT / "params" / profile / f"{nb.stem}.yaml").exists(), (nb.name, profile)


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_matches_smoke_yaml(nb_path):
    nb = nbformat.read(nb_path, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "exactly one cell tagged 'parameters'"
    defaults: dict = {}
    exec(cells[0].source, {}, defaults)  # a cell of literals only
    smoke = yaml.safe_load((ROOT / "params" / "smoke" / f"{nb_path.stem}.yaml").read_text())
    assert set(smoke) <= set(defaults), f"yaml keys missing from the parameters cell: {set(smoke) - set(defaults)}"
    for key, value in smoke.items():
        assert defaults[key] == value, f"{nb_path.name}: parameters cell {key}={defaults[key]!r}, smoke yaml {value!r}"
    paper = yaml.safe_load((ROOT / "params" / "paper" / f"{nb_path.stem}.yaml").read_text())
    assert set(paper) <= set(defaults), f"paper yaml keys unknown to the notebook: {set(paper) - set(defaults)}"


@pytest.mark.parametrize("path", sorted((ROOT / "params").glob("*/*.yaml")) + [ROOT / "benchmarks" / "generative_short.yaml"],
                         ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_parameter_file_validates_before_any_training(path):
    """Every arm of every profile builds a valid run config (names, learner params, capabilities, budget vs pool):
    a typo in params/paper/ must fail here on CPU, not hours into a GPU job."""
    from alkit.experiment import load_experiment

    exp = load_experiment(path)
    assert exp.profile == path.parent.name or path.parent.name == "benchmarks"
    assert exp.name == path.stem
    for arm in exp.arms:
        for seed in exp.seeds:
            exp.config(arm, seed)


@pytest.mark.parametrize("profile", ["smoke", "paper"])
def test_every_m2_acquisition_arm_has_an_m2_random_control(profile):
    """Strategies are compared with the learner held fixed: wherever an M2-family arm acquires with its
    discriminator, the same experiment has plain M2 with random acquisition."""
    for path in sorted((ROOT / "params" / profile).glob("0[1-4]_*.yaml")):
        exp = yaml.safe_load(path.read_text())
        learners = {arm: (spec or {}).get("learner", exp["base"].get("learner")) for arm, spec in exp["arms"].items()}
        strategies = {arm: (spec or {}).get("strategy", exp["base"].get("strategy")) for arm, spec in exp["arms"].items()}
        m2_arms = [a for a, l in learners.items() if str(l).startswith("m2") and strategies[a] != "random"]
        if m2_arms and not path.stem.startswith("01"):  # 01 draws latent spaces, it compares no strategies
            assert any(learners[a] == "m2" and strategies[a] == "random" for a in learners), (path, m2_arms)


@pytest.mark.parametrize("profile", ["smoke", "paper"])
def test_notebook_04_is_the_studys_low_label_section(profile):
    exp = yaml.safe_load((ROOT / "params" / profile / "04_discriminator_only.yaml").read_text())
    assert exp["base"]["initial"]["kind"] == "classes" and exp["base"]["initial"]["classes"] == [2, 4, 7]
    arms = exp["arms"]
    assert {"m2_vaal", "m2_disc", "m2_random"} <= set(arms)
    if profile == "paper":
        assert exp["base"]["initial"]["n"] == 500 and exp["base"]["budget"] == 64
