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

Each notebook's family of comparisons is one AUBC definition (:data:`AUBC_MIN_CYCLE`: the area under
the budget curve over the cycles after the first acquisition, trapezoid over labels divided by their
range, per seed), compared across seeds by :func:`alkit.analysis.compare_seeds` and Holm-corrected
together (:func:`alkit.analysis.correct_family`).
"""
from __future__ import annotations

import dataclasses
from typing import Iterable

from . import analysis
from .config import ConfigError
from .learners import LEARNERS
from .strategies import get_strategy
from .strategies.base import make_params

#: learner -> the learner whose task model it trains step for step (tested; see the module docstring)
SAME_TASK_MODEL = {"vaal": "classifier", "m2_disc": "m2"}

#: the notebooks' AUBC: cycles >= 1 (cycle 0 is the same initial set in every arm)
AUBC_MIN_CYCLE = 1

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
    values = {k: v for k, v in (cfg.learner_params or {}).items() if k in own or name == cfg.learner}
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


def held_fixed(exp, a: str, kind: str) -> str:
    """What a pair shares, in words: "learner m2_vaal" or "acquisition vaal"."""
    cfg = exp.config(a, exp.seeds[0])
    return f"learner `{cfg.learner}`" if kind == "acquisition" else f"acquisition `{cfg.strategy}`"


def family(rows: Iterable[dict], exp, y: str = "test_acc", extra: Iterable[dict] = ()) -> list[dict]:
    """Every pair of :func:`pairs` compared on the per-seed AUBC over cycles >= :data:`AUBC_MIN_CYCLE`,
    Holm-corrected as one family together with ``extra`` (other :func:`alkit.analysis.compare_seeds`
    results the notebook tests, e.g. 04's batch diversity; each with its ``kind`` and ``held_fixed``).
    Each result is :func:`alkit.analysis.compare_seeds`'s plus ``kind``, ``held_fixed`` and the keys of
    :func:`alkit.analysis.correct_family`; pairs with an arm that has no records yet (partial results)
    keep ``missing`` and are not tested."""
    rows = list(rows)
    out = []
    for a, b, kind in pairs(exp):
        d = analysis.compare_seeds(rows, a, b, y=y, min_cycle=AUBC_MIN_CYCLE)
        out.append(dict(d, kind=kind, held_fixed=held_fixed(exp, a, kind)))
    return analysis.correct_family(out + list(extra))


def aubc_definition(min_cycle: int = AUBC_MIN_CYCLE) -> str:
    """The one AUBC a notebook uses, in words (its tables and its tests alike)."""
    span = "every cycle" if min_cycle <= 0 else f"cycles \u2265 {min_cycle} (after the first acquisition; cycle 0 is the same initial set in every arm)"
    return (f"AUBC here = area under the test-accuracy curve over {span}, trapezoid rule over the label counts "
            "divided by their range (a mean accuracy), one per seed; arms are then compared across seeds.")


def family_markdown(fam: list[dict], scale: float = 100, unit: str = "points") -> str:
    """The family as a table: pair, kind, what is held fixed, difference with its per-seed values, raw and
    Holm-adjusted p, verdict, and the smallest difference the family could have detected."""
    if not fam:
        return "No pair of this notebook has both arms yet."
    rows = []
    for d in fam:
        sc, un = (1.0, d["unit"]) if "unit" in d else (scale, unit)  # extra measures carry their own unit
        each = " / ".join(analysis._signed(sc * v) for v in d.get("diffs") or [])
        rows.append({"pair": f"{d['a']} \u2212 {d['b']}", "kind": d["kind"], "fixed": d["held_fixed"],
                     "mean": None if d.get("mean") is None else f"{analysis._signed(sc * d['mean'])} {un}".strip(),
                     "each": each or None, "p": d.get("p_raw"), "p_holm": d.get("p_holm"),
                     "verdict": "no records yet" if d.get("missing") else d["verdict"],
                     "mde": None if d.get("mde") is None else f"{sc * d['mde']:.2g} {un}".strip()})
    return analysis.markdown_table(rows, [
        ("pair", "pair", "s"), ("kind", "kind", "s"), ("fixed", "held fixed", "s"),
        ("mean", "difference", "s"), ("each", "per seed", "s"), ("p", "raw p", ".3f"),
        ("p_holm", "Holm p", ".3f"), ("verdict", "verdict", "s"), ("mde", "smallest detectable", "s")])


def describe_family(fam: list[dict], scale: float = 100, unit: str = "points") -> list[str]:
    """One prose line per pair (:func:`alkit.analysis.describe_comparison` of the corrected result), kind first."""
    return [f"- **{d['a']} vs {d['b']}** ({d['kind']}: {d['held_fixed']} held fixed): "
            + (f"not compared yet: no records of {' and '.join(d['missing'])}." if d.get("missing")
               else analysis.describe_comparison(d, *((1.0, d["unit"]) if "unit" in d else (scale, unit)))) for d in fam]
