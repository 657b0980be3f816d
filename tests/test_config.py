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
