from dataclasses import dataclass, field

import pytest

from alkit.config import ConfigError, from_dict, load_yaml, to_dict
from alkit.experiment import load_experiment
from alkit.loop import RunConfig


@dataclass
class Inner:
    a: int = 1


@dataclass
class Outer:
    inner: Inner = field(default_factory=Inner)
    b: str = "x"


def test_nested_and_roundtrip():
    o = from_dict(Outer, {"inner": {"a": 5}, "b": "y"})
    assert o.inner.a == 5 and to_dict(o) == {"inner": {"a": 5}, "b": "y"}


def test_unknown_key_is_named_with_suggestion():
    with pytest.raises(ConfigError, match=r"'budgt' \(did you mean 'budget'\?\)"):
        from_dict(RunConfig, {"budgt": 10})
    with pytest.raises(ConfigError, match=r"initial: unknown key\(s\) 'size'"):
        from_dict(RunConfig, {"initial": {"size": 10}})


def test_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_yaml(bad)


def test_experiment_yaml_bad_arm_key_fails_before_training(tmp_path):
    p = tmp_path / "exp.yaml"
    p.write_text(
        "name: t\nseeds: [0]\nbase: {budget: 10, cycles: 1}\n"
        "arms:\n  rnd: {learner: classifier, strategy: random, learner_params: {epochz: 2}}\n"
    )
    with pytest.raises(ConfigError, match="epochz"):
        load_experiment(p)
    p.write_text("name: t\nseeds: [0]\narms:\n  x: {strategy: vaal_typo}\n")
    with pytest.raises(Exception, match="unknown strategy 'vaal_typo'; known strategies"):
        load_experiment(p)
    p.write_text("name: t\nseeds: [0]\nbudget: 5\narms:\n  x: {strategy: random}\n")
    with pytest.raises(ConfigError, match="'budget'"):
        load_experiment(p)


def test_values_of_the_wrong_kind_name_the_key_the_value_and_what_is_allowed():
    with pytest.raises(ConfigError, match=r"^budget: '100' is a string; allowed: an integer$"):
        from_dict(RunConfig, {"budget": "100"})
    with pytest.raises(ConfigError, match=r"budget: True is a boolean; allowed: an integer"):
        from_dict(RunConfig, {"budget": True})  # YAML's true is no count
    with pytest.raises(ConfigError, match=r"initial.classes: \[2, 'x'\] is a list; allowed: a list of integers"):
        from_dict(RunConfig, {"initial": {"classes": [2, "x"]}})
    with pytest.raises(ConfigError, match=r"learner_params: \[1\] is a list; allowed: a mapping"):
        from_dict(RunConfig, {"learner_params": [1]})
    with pytest.raises(ConfigError, match=r"initial: 5 is an integer; allowed: a mapping of InitialSet keys"):
        from_dict(RunConfig, {"initial": 5})
    with pytest.raises(ConfigError, match=r"pool_size: 1.5 is a number; allowed: an integer or null"):
        from_dict(RunConfig, {"pool_size": 1.5})
    cfg = from_dict(RunConfig, {"pool_size": None, "stop_disc_acc": 1, "data_dir": None})  # an int is a float
    assert cfg.pool_size is None and cfg.stop_disc_acc == 1


def test_a_file_whose_base_is_not_a_mapping_is_named_with_the_key(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("name: e\nbase: [1, 2]\narms: {a: {learner: classifier, strategy: random}}\n")
    with pytest.raises(ConfigError, match=r"exp.yaml: base: \[1, 2\] is a list; allowed: a mapping \(key: value\)"):
        load_experiment(path)
