"""The strategy contract: a registry of ``score`` functions and one shared ``select``.

A strategy is a plain function registered under a name::

    @register("least_confidence", needs=("proba",))
    def least_confidence(ctx: Context) -> np.ndarray:   # (U,) higher = acquire first
        return 1.0 - ctx.proba().max(dim=1).values.cpu().numpy()

:func:`acquire` turns scores into ``budget`` pool indices with :func:`select`
(top scores, ties broken by the run's seed). A *batch-aware* strategy
(core-set, Algorithm 1) registers with ``batch=True`` and returns positions
into the candidate array directly: ``fn(ctx, budget) -> (budget,) int``.

Strategies see a :class:`Context`: the trained learner, the candidate images,
the labelled images *with* their labels, and nothing else. The labels of
unlabelled points never reach a strategy, so a contract test can shuffle them
and expect the same selection.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from ..config import ConfigError, from_dict
from ..pool import BudgetError


class UnknownStrategyError(KeyError):
    def __str__(self):  # KeyError quotes its message; keep it readable
        return str(self.args[0])


@dataclass
class StrategySpec:
    name: str
    fn: Callable
    batch: bool = False
    params: type | None = None  # dataclass of the strategy's own parameters
    needs: tuple[str, ...] = ()  # learner capabilities: "proba", "embed", "labelled_prob", "mc_proba"
    doc: str = ""


STRATEGIES: dict[str, StrategySpec] = {}


def register(name: str, *, batch: bool = False, params: type | None = None, needs: tuple[str, ...] = ()):
    """Decorator adding a strategy to the registry under ``name``."""

    def deco(fn):
        if name in STRATEGIES:
            raise ValueError(f"strategy {name!r} registered twice")
        STRATEGIES[name] = StrategySpec(name, fn, batch, params, tuple(needs), (fn.__doc__ or "").strip())
        return fn

    return deco


def get_strategy(name: str) -> StrategySpec:
    if name not in STRATEGIES:
        raise UnknownStrategyError(f"unknown strategy {name!r}; known strategies: {', '.join(sorted(STRATEGIES))}")
    return STRATEGIES[name]


@dataclass
class Context:
    """What a strategy may look at in one acquisition step.

    Tensors live on the run's device. ``x_unlabelled`` are the candidates,
    ``unlabelled_indices[i]`` is the pool index of candidate ``i``. Model
    outputs are computed once per context and cached (several diagnostics and
    strategies ask for the same probabilities).
    """

    learner: Any  # alkit.learners.base.Learner, trained this cycle
    x_unlabelled: torch.Tensor  # (U, 1, 28, 28) float in [0, 1]
    x_labelled: torch.Tensor  # (L, 1, 28, 28)
    y_labelled: torch.Tensor  # (L,) int64
    unlabelled_indices: np.ndarray  # (U,) pool indices, read-only
    labelled_indices: np.ndarray  # (L,) pool indices, read-only
    num_classes: int
    seed: int  # seeds the strategy's own randomness (and tie breaks)
    params: Any = None  # the strategy's params dataclass instance, if it has one
    _cache: dict = field(default_factory=dict, repr=False)

    def rng(self, stream: int = 0) -> np.random.Generator:
        """A fresh generator for ``stream``; the same seed gives the same draws."""
        return np.random.default_rng([self.seed, 0x5E1EC7, stream])

    def computed(self, key: str) -> torch.Tensor | None:
        """A model output already computed for every candidate (``"proba"``, ``"latent"``, ...), else None:
        diagnostics read rows of it instead of running the model again."""
        return self._cache.get(key)

    def provide(self, **outputs: torch.Tensor) -> None:
        """Model outputs computed elsewhere (``latent=``, ``labelled_latent=``, ...: saved codes standing in
        for the model); :meth:`latent` and the others return them."""
        self._cache.update(outputs)

    def _cached(self, key: str, fn: Callable[[], Any]):
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    def proba(self) -> torch.Tensor:
        """(U, C) class probabilities of the task model on the candidates."""
        return self._cached("proba", lambda: self.learner.predict_proba(self.x_unlabelled))

    def labelled_proba(self) -> torch.Tensor:
        """(L, C) class probabilities on the labelled points."""
        return self._cached("labelled_proba", lambda: self.learner.predict_proba(self.x_labelled))

    def latent(self) -> torch.Tensor:
        """(U, d) latent codes of the candidates (the learner's embedding)."""
        return self._cached("latent", lambda: self.learner.embed(self.x_unlabelled))

    def labelled_latent(self) -> torch.Tensor:
        """(L, d) latent codes of the labelled points."""
        return self._cached("labelled_latent", lambda: self.learner.embed(self.x_labelled))

    def labelled_prob(self) -> torch.Tensor:
        """(U,) discriminator probability that each candidate is labelled."""
        return self._cached("labelled_prob", lambda: self.learner.labelled_prob(self.x_unlabelled))


def select(scores: np.ndarray, budget: int, rng: np.random.Generator) -> np.ndarray:
    """Positions of the ``budget`` highest scores; ties broken uniformly by ``rng``.

    Returns a (budget,) int64 array ordered from the highest score down.
    NaN scores are an error: they would be ranked arbitrarily.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if np.isnan(scores).any():
        raise ValueError(f"{int(np.isnan(scores).sum())} NaN scores: the model diverged or the strategy is broken")
    if not 0 <= budget <= scores.size:
        raise ValueError(f"budget {budget} outside [0, {scores.size}]")
    tie = rng.random(scores.size)
    order = np.lexsort((tie, -scores))  # last key is primary: highest score first
    return order[:budget].astype(np.int64)


def make_params(spec: StrategySpec, values: dict | None):
    if spec.params is None:
        if values:
            raise ConfigError(
                f"strategy {spec.name!r} takes no parameters, got {sorted(values)}"
            )
        return None
    return from_dict(spec.params, values or {}, where=f"strategy_params[{spec.name}]")


def acquire(name: str, ctx: Context, budget: int) -> np.ndarray:
    """Run strategy ``name`` on ``ctx`` and return ``budget`` pool indices (in pick order)."""
    spec = get_strategy(name)
    n = len(ctx.unlabelled_indices)
    if budget > n:
        raise BudgetError(f"budget {budget} exceeds the {n} unlabelled candidates")
    if spec.batch:
        pos = np.asarray(spec.fn(ctx, budget), dtype=np.int64).ravel()
    else:
        scores = np.asarray(spec.fn(ctx), dtype=np.float64).ravel()
        if scores.shape != (n,):
            raise ValueError(f"strategy {name!r} returned {scores.shape} scores for {n} candidates")
        pos = select(scores, budget, ctx.rng(stream=1))
    if pos.size != budget or np.unique(pos).size != budget or (pos.size and (pos.min() < 0 or pos.max() >= n)):
        raise RuntimeError(f"strategy {name!r} broke the contract: returned {pos.size} positions for budget {budget}")
    return np.asarray(ctx.unlabelled_indices)[pos]


def describe() -> list[dict]:
    """One row per registered strategy: name, kind, needs, first docstring line."""
    return [
        {"name": s.name, "batch": s.batch, "needs": list(s.needs), "doc": s.doc.splitlines()[0] if s.doc else ""}
        for s in sorted(STRATEGIES.values(), key=lambda s: s.name)
    ]


__all__ = ["Context", "StrategySpec", "STRATEGIES", "register", "get_strategy", "select", "acquire", "describe"]
