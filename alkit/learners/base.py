"""The learner contract: what is trained in one cycle, and what strategies may ask of it.

A learner is built fresh for every cycle (``re-initialised each cycle``;
warm start is a learner parameter where supported), fitted on a
:class:`TrainData` that carries the labelled images with labels and the
unlabelled images *without* labels, then queried by strategies through a few
capabilities:

=================  =======================================  ==========================
capability         method                                   used by
=================  =======================================  ==========================
``proba``          ``predict_proba(x) -> (N, C)``           uncertainty, evaluation
``embed``          ``embed(x) -> (N, d)``                   latent strategies, UMAP
``labelled_prob``  ``labelled_prob(x) -> (N,)``             VAAL-family sampling
``mc_proba``       ``mc_proba(x, T) -> (T, N, C)``          BALD
``network``        ``task_network() -> nn.Module``          network_norm (fine-tunes a
                   (B, 1, 28, 28) images -> (B, C) logits   copy of its weights)
=================  =======================================  ==========================

A learner lacking a capability raises :class:`CapabilityError` naming the
learners that have it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..config import ConfigError, from_dict
from ..engine import drive
from ..train import batched  # noqa: F401  (re-exported for learners)


class CapabilityError(TypeError):
    """A strategy asked a learner for something it cannot give."""


@dataclass
class TrainData:
    """Everything a learner may train on in one cycle. No unlabelled labels, by construction."""

    x_labelled: torch.Tensor  # (L, 1, 28, 28) float in [0, 1], on device
    y_labelled: torch.Tensor  # (L,) int64
    x_unlabelled: torch.Tensor  # (U, 1, 28, 28)
    x_val: torch.Tensor  # (V, 1, 28, 28) for model selection / early stopping
    y_val: torch.Tensor  # (V,)
    num_classes: int


class Learner:
    """Base class. Subclasses set ``name``, ``Params`` and implement ``fit`` (or ``fit_phases``) and ``predict_proba``.

    ``Params`` is a dataclass with ``iterations_per_cycle(n_labelled, n_unlabelled)`` (every record stores it;
    :func:`alkit.loop.validate` refuses a learner without it): subclass
    :class:`~alkit.learners.schedule.ScheduleParams`. See ARCHITECTURE.md, "How to add a learner"."""

    name: str = "base"
    Params: type | None = None
    #: tiny parameter overrides that make ``fit`` take well under a second on a
    #: few hundred images; the strategy contract test trains every learner with them
    test_params: dict = {}

    def __init__(self, params: Any, num_classes: int, device: torch.device):
        self.params = params
        self.num_classes = num_classes
        self.device = torch.device(device)
        #: the previous cycle's fitted learner, set by the loop before ``fit``
        #: when ``warm_start`` is on; learners that support warm starts read it
        self.previous: "Learner | None" = None

    def fit(self, data: TrainData, seed: int, progress: bool = False, probe=None) -> dict:
        """Train on ``data``; return scalar metrics (losses, val accuracy, ...) for the cycle record.

        Learners of alkit write :meth:`fit_phases` instead and inherit this: the engine runs their
        phases (:func:`alkit.engine.drive`), alone or fused with other runs (:func:`alkit.engine.drive_fused`).
        A plug-in learner may override ``fit`` itself; it then trains alone, never fused. ``probe``: what the
        engine asks of each validated phase's final state (:attr:`alkit.engine.Phase.probe`)."""
        return drive(self.fit_phases(data, seed), progress, probe)

    def fit_phases(self, data: TrainData, seed: int):
        """A generator: build the modules (seeded), ``result = yield phase`` for each training phase
        (:class:`alkit.engine.Phase`), ``return`` the cycle's metrics."""
        raise NotImplementedError(f"learner {self.name!r} implements neither fit nor fit_phases")

    @classmethod
    def fusable(cls) -> bool:
        """Whether runs of this learner can be trained as one stacked model (it declares its phases)."""
        return cls.fit is Learner.fit and cls.fit_phases is not Learner.fit_phases

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _missing(self, capability: str):
        have = [n for n, cls in LEARNERS.items() if capability in cls.capabilities()]
        return CapabilityError(
            f"learner {self.name!r} has no {capability!r}; learners that have it: {', '.join(sorted(have)) or 'none'}"
        )

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        raise self._missing("embed")

    def labelled_prob(self, x: torch.Tensor) -> torch.Tensor:
        raise self._missing("labelled_prob")

    def mc_proba(self, x: torch.Tensor, samples: int) -> torch.Tensor:
        raise self._missing("mc_proba")

    def task_network(self) -> torch.nn.Module:
        """The fitted task classifier as a module mapping (B, 1, 28, 28) images to (B, C) logits.

        Callers must not change it: strategies fine-tune copies of its weights.
        """
        raise self._missing("network")

    @classmethod
    def capabilities(cls) -> set[str]:
        caps = {"proba"}
        for cap, meth in (("embed", "embed"), ("labelled_prob", "labelled_prob"), ("mc_proba", "mc_proba"),
                          ("network", "task_network")):
            if getattr(cls, meth) is not getattr(Learner, meth):
                caps.add(cap)
        return caps


LEARNERS: dict[str, type[Learner]] = {}


def register_learner(cls: type[Learner]) -> type[Learner]:
    if cls.name in LEARNERS:
        raise ValueError(f"learner {cls.name!r} registered twice")
    LEARNERS[cls.name] = cls
    return cls


def make_learner(name: str, params: dict | None, num_classes: int, device) -> Learner:
    """Build a registered learner; unknown names and unknown parameter keys are errors."""
    if name not in LEARNERS:
        raise ConfigError(f"unknown learner {name!r}; known learners: {', '.join(sorted(LEARNERS))}")
    cls = LEARNERS[name]
    p = from_dict(cls.Params, params or {}, where=f"learner_params[{name}]") if cls.Params else None
    return cls(p, num_classes, device)
