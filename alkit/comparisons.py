"""What each notebook compares, and the check that every compared pair differs in one thing only.

Two kinds of comparison (issue 26):

- ``acquisition``: the same learner, its strategy against another (random, for the study's arms);
- ``learner``: the same acquisition, one learner against another.

A pair whose arms differ in both learner and strategy mixes the two effects and is refused
(:func:`kind_of` raises). Two learners count as the same where alkit's tests show they train the
task model step for step alike (:data:`SAME_TASK_MODEL`): VAAL's task classifier is the
``classifier`` learner (``tests/test_generative.py::test_vaal_task_model_is_the_classifier_learner``),
and ``m2_disc`` trains its M2 as plain ``m2`` does (``test_m2_disc_trains_m2_as_plain_m2``); the
parameters that only shape their discriminator side (VAE, discriminator) are then left out of the
learner's identity. Every other learner is its own.

Each notebook's family of comparisons is one AUBC definition (:data:`alkit.analysis.tables.AUBC_MIN_CYCLE`: the area under
the budget curve over the cycles after the first acquisition, trapezoid over labels divided by their
range, per seed), compared across seeds by :func:`alkit.analysis.stats.compare_seeds` and Holm-corrected
together (:func:`alkit.analysis.stats.correct_family`).
"""
from __future__ import annotations

import dataclasses
from typing import Iterable

from .analysis.stats import compare_seeds, correct_family
from .analysis.tables import AUBC_MIN_CYCLE
from .config import ConfigError
from .learners import LEARNERS
from .strategies import get_strategy
from .strategies.base import make_params

#: learner -> the learner whose task model it trains step for step (tested; see the module docstring)
SAME_TASK_MODEL = {"vaal": "classifier", "m2_disc": "m2"}
#: learner -> {its parameter: the same parameter's name in its SAME_TASK_MODEL learner}
SAME_PARAMETER = {"vaal": {"classifier_size": "size"}}

#: run-config keys that record or budget a run but do not change what it learns or selects
NOT_THE_EXPERIMENT = ("seed", "device", "latent_sample", "save_learner", "data_dir")

#: per notebook: (a, b, kind) in the order the notebook reports them; pairs whose arms a run lacks are skipped
PAIRS: dict[str, list[tuple[str, str, str]]] = {
    "02_vaal_vs_random": [
        ("vaal", "random", "acquisition"),
        ("tavaal", "tavaal_random", "acquisition"),
        ("m2_vaal", "m2_vaal_random", "acquisition"),
        ("tavaal", "vaal", "learner"),
        ("m2_vaal", "vaal", "learner"),
        ("m2_random", "random", "learner"),
    ],
    "03_three_class_start": [
        ("vaal", "random", "acquisition"),
        ("m2_vaal", "m2_vaal_random", "acquisition"),
        ("m2_vaal", "vaal", "learner"),
        ("m2_random", "random", "learner"),
        ("m2_vaal_random", "m2_random", "learner"),
    ],
    "04_discriminator_only": [
        ("m2_disc", "m2_random", "acquisition"),
        ("m2_vaal", "m2_vaal_random", "acquisition"),
        ("m2_vaal_detached", "m2_vaal_detached_random", "acquisition"),
        ("m2_vaal", "m2_disc", "learner"),
        ("m2_vaal", "m2_vaal_detached", "learner"),
        ("m2_vaal_random", "m2_random", "learner"),
    ],
}


def _learner_key(cfg) -> tuple:
    """The task model's identity: its learner (up to :data:`SAME_TASK_MODEL`) and that learner's parameters."""
    name = SAME_TASK_MODEL.get(cfg.learner, cfg.learner)
    cls = LEARNERS[name]
    own = {f.name for f in dataclasses.fields(cls.Params)} if cls.Params else set()
    renamed = {SAME_PARAMETER.get(cfg.learner, {}).get(k, k): v for k, v in (cfg.learner_params or {}).items()}
    values = {k: v for k, v in renamed.items() if k in own or name == cfg.learner}
    params = dataclasses.asdict(cls.Params(**values)) if cls.Params else {}
    return name, tuple(sorted((k, repr(v)) for k, v in params.items()))


def _strategy_key(cfg) -> tuple:
    p = make_params(get_strategy(cfg.strategy), cfg.strategy_params)
    return cfg.strategy, repr(dataclasses.asdict(p)) if p is not None else ""


def _rest_key(cfg) -> dict:
    skip = {"learner", "learner_params", "strategy", "strategy_params", *NOT_THE_EXPERIMENT}
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in skip}


def kind_of(exp, a: str, b: str) -> str:
    """``"acquisition"`` (same learner, other strategy) or ``"learner"`` (same strategy, other learner).

    A :class:`ConfigError` names the pair when its arms differ in both, in neither, or in anything
    else that shapes the run (initial set, budget, cycles, pool, ...).
    """
    ca, cb = exp.config(a, exp.seeds[0]), exp.config(b, exp.seeds[0])
    rest_a, rest_b = _rest_key(ca), _rest_key(cb)
    if rest_a != rest_b:
        keys = sorted(k for k in rest_a if rest_a[k] != rest_b.get(k))
        raise ConfigError(f"{exp.name}: pair {a} / {b} differs in {', '.join(keys)}; allowed: learner or strategy only")
    same_learner, same_strategy = _learner_key(ca) == _learner_key(cb), _strategy_key(ca) == _strategy_key(cb)
    if same_learner and not same_strategy:
        return "acquisition"
    if same_strategy and not same_learner:
        return "learner"
    what = "both learner and strategy" if not (same_learner or same_strategy) else "neither learner nor strategy"
    raise ConfigError(f"{exp.name}: pair {a} ({ca.learner} + {ca.strategy}) / {b} ({cb.learner} + {cb.strategy}) "
                      f"differs in {what}; allowed: exactly one of them")


def pairs(exp) -> list[tuple[str, str, str]]:
    """The notebook's pairs present in ``exp`` (05: every arm against ``random``), each checked by :func:`kind_of`.

    A declared kind that the configs contradict is an error, so a notebook cannot call a confounded
    pair "learner held fixed".
    """
    if exp.name in PAIRS:
        declared = [(a, b, k) for a, b, k in PAIRS[exp.name] if a in exp.arms and b in exp.arms]
    else:  # one learner, every strategy against random acquisition
        declared = [(a, "random", "acquisition") for a in exp.arms if a != "random"] if "random" in exp.arms else []
    for a, b, k in declared:
        found = kind_of(exp, a, b)
        if found != k:
            raise ConfigError(f"{exp.name}: pair {a} / {b} is declared a {k} comparison but differs in its {found}")
    return declared


#: learner parameters that make another model of the same learner, named where a pair holds that learner fixed
NAMED_LEARNER_PARAMS = {"detach_y_in_adversary": "with `detach_y_in_adversary`"}


def held_fixed(exp, a: str, kind: str) -> str:
    """What a pair shares, in words: "learner m2_vaal", "learner m2_vaal with detach_y_in_adversary" (a table cell:
    no "|") or "acquisition vaal"."""
    cfg = exp.config(a, exp.seeds[0])
    if kind != "acquisition":
        return f"acquisition `{cfg.strategy}`"
    named = [text for key, text in NAMED_LEARNER_PARAMS.items() if cfg.learner_params.get(key)]
    return " ".join([f"learner `{cfg.learner}`", *named])


def family(rows: Iterable[dict], exp, y: str = "test_acc", extra: Iterable[dict] = ()) -> list[dict]:
    """Every pair of :func:`pairs` compared on the per-seed AUBC over cycles >= :data:`~alkit.analysis.tables.AUBC_MIN_CYCLE`,
    Holm-corrected as one family together with ``extra`` (other :func:`alkit.analysis.stats.compare_seeds`
    results the notebook tests, e.g. 04's batch diversity; each with its ``kind`` and ``held_fixed``).
    Each result is :func:`alkit.analysis.stats.compare_seeds`'s plus ``kind``, ``held_fixed`` and the keys of
    :func:`alkit.analysis.stats.correct_family`; pairs with an arm that has no records yet (partial results)
    keep ``missing`` and are not tested."""
    rows = list(rows)
    out = []
    for a, b, kind in pairs(exp):
        d = compare_seeds(rows, a, b, y=y, min_cycle=AUBC_MIN_CYCLE)
        out.append(dict(d, kind=kind, held_fixed=held_fixed(exp, a, kind)))
    return correct_family(out + list(extra))
