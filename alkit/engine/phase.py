"""What a learner declares for one training phase: its modules, optimisers, steps, batches and validation.

A learner's ``fit`` is a sequence of phases (VAAL: the task classifier, then the beta-VAE and its
discriminator; M2-VAAL: one phase of M2 + discriminator). A :class:`Phase` says *what* to train; the
engine (:func:`alkit.engine.run_phase` for one run, :func:`alkit.engine.run_fused` for K runs stacked
into one model) runs the iterations:

    for every iteration:
        every optimiser with an lr schedule: VAAL's step drops (:class:`LrDrops`)
        for every step (in order), ``times`` times:
            draw a fresh batch (or reuse the last one: VAAL's discriminator step), set the modules'
            train/eval modes, loss = step.loss(batch, hp, iteration), one optimiser step
        at the schedule's validation points: the loss means since the last one; validation accuracy,
        best state of ``keep`` and early stopping (:class:`Validation`)
        the cycle's time box (:mod:`.timebox`)

``loss(batch, hp, iteration) -> (loss, terms)`` is a closure over the learner's modules: tensors in,
tensors out, no host sync, no data-dependent Python control flow on tensors (the fused engine calls it
under ``torch.vmap`` with the modules' parameters swapped for a run's slice of the stacked ones).
``batch`` holds ``xl``, ``yl``, ``wl`` (labelled images, labels, adversarial-game weights) and, for
steps that draw both sets, ``xu``, ``wu``. ``hp`` holds the per-run numbers that may differ inside a
fused group (``adversary_weight``, ``beta``, ...): Python numbers in a single run, 0-d tensors inside
``vmap``. ``static`` holds the flags a step's Python code branches on; a fused group ORs them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from .speed import OFF, Speed

DRAWS = ("labelled", "both", "reuse")


@dataclass
class Step:
    """One optimiser step: ``loss`` on a batch, gradients into ``optimizer``'s modules only."""

    name: str
    loss: Callable  # (batch: dict, hp: dict, iteration: int) -> (loss, {term: tensor})
    optimizer: str  # key of Phase.optimizers
    draw: str = "both"  # "labelled": a labelled batch; "both": labelled + unlabelled; "reuse": the last batch, first time
    times: int = 1  # repeats per iteration (VAAL: 2 VAE steps, 1 discriminator step); "reuse" reuses for the first only
    train: tuple[str, ...] = ()  # modules in train mode during the step
    eval: tuple[str, ...] = ()  # modules in eval mode during the step
    frozen: tuple[str, ...] = ()  # modules that get no gradient (VAAL: the discriminator during VAE steps)
    phase_of: Callable[[int], object] | None = None  # what of the iteration the loss reads (TA-VAAL); None: nothing

    def __post_init__(self):
        if self.draw not in DRAWS:
            raise ValueError(f"draw must be one of {DRAWS}, got {self.draw!r}")


@dataclass
class Optim:
    """An optimiser over the parameters of ``modules`` (in order): ``kind`` "sgd" or "adam" with ``kwargs``."""

    kind: str
    modules: tuple[str, ...]
    kwargs: dict
    lr_drop_every: float | None = None  # VAAL's lr / 10 every this fraction of the iterations


@dataclass
class Validation:
    """Validation accuracy of ``module`` (its attribute ``attr``, e.g. M2's ``classifier``) on the phase's
    validation set, every :meth:`ScheduleParams.validates_at`; the best state of ``keep`` (ties keep the
    earlier one) is restored after the phase; ``patience`` validations without improvement stop it.
    ``last_key``: also report each check's accuracy among the loss means under this name."""

    module: str
    keep: tuple[str, ...]
    attr: str | None = None
    patience: int | None = None
    last_key: str | None = None


@dataclass
class Phase:
    """One training phase of one run (see the module docstring)."""

    name: str  # progress bar and time-box message
    modules: dict[str, torch.nn.Module]
    optimizers: dict[str, Optim]
    steps: list[Step]
    iterations: int
    batch_size: int
    labelled: tuple  # (x (L, ...), y (L,), w (L,) or None)
    seed_labelled: int
    unlabelled: tuple | None = None  # (x (U, ...), w (U,) or None)
    seed_unlabelled: int | None = None
    validation: Validation | None = None
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None
    validates_at: Callable[[int, int], bool] = lambda it, n: it == n - 1
    hp: dict = field(default_factory=dict)
    static: dict = field(default_factory=dict)
    speed: Speed = OFF
    batch_source: Callable | None = None  # unfused only: (x, y, batch_size, gen) -> (idx, xb, yb); None = tensor_batches
    watch: str | None = None  # time-box message; None = name
    #: called on the validated module (eval mode) in the run's final state -- its last iteration, or its
    #: early stop -- before the best validated state is restored; its dict is :attr:`PhaseResult.final`
    #: (the loop's final-state test accuracy beside the best-validated one). Reads, never trains.
    probe: Callable[[torch.nn.Module], dict] | None = None

    @property
    def device(self) -> torch.device:
        return self.labelled[0].device


@dataclass
class PhaseResult:
    """What a phase reports: loss means since the last validation point, iterations run, validation."""

    last: dict
    iterations: int
    val_checks: int = 0
    best_acc: float = -1.0
    best_iteration: int = -1
    lr: dict = field(default_factory=dict)  # optimiser -> final learning rate
    fused: int = 1  # runs trained together (1: alone)
    final: dict = field(default_factory=dict)  # what Phase.probe said of the final state (validated phases)
    graphs: int = 0  # CUDA graphs of the whole iteration captured and replayed (Speed.fused_graphs; 0: none)


def make_optimizer(spec: Optim, params, speed: Speed = OFF, foreach: bool | None = None) -> torch.optim.Optimizer:
    """``spec``'s optimiser over ``params``; ``foreach=True``: the multi-tensor implementation (a few kernels per
    step whatever the number of tensors; the fused engine's choice unless ``fused_optim``), None: torch's default."""
    kw = dict(spec.kwargs, **speed.optimizer_kwargs())
    if foreach is not None and "fused" not in kw:
        kw["foreach"] = foreach
    if spec.kind == "sgd":
        return torch.optim.SGD(params, **kw)
    if spec.kind == "adam":
        return torch.optim.Adam(params, **kw)
    raise ValueError(f"optimizer kind must be 'sgd' or 'adam', got {spec.kind!r}")


class LrDrops:
    """VAAL's step schedule: before iteration ``i > 0`` with ``i % (fraction * iterations) == 0``, lr /= 10.

    A tensor lr (a CUDA-graph optimiser's, :mod:`.graph`: the captured step reads that very tensor) is
    refilled in place, outside the iteration, from the same float schedule: ``group["float_lr"]`` (the
    Python float the tensor holds, rounded to its dtype) is divided as a float lr is, then copied in."""

    def __init__(self, optimizer: torch.optim.Optimizer, fraction: float | None, iterations: int):
        self.optimizer = optimizer
        self.every = int(fraction * iterations) if fraction else 0

    def before(self, iteration: int) -> None:
        if self.every and iteration and iteration % self.every == 0:
            for group in self.optimizer.param_groups:
                if torch.is_tensor(group["lr"]):
                    if "float_lr" not in group:
                        group["float_lr"] = float(group["lr"])
                    group["float_lr"] = group["float_lr"] / 10
                    group["lr"].fill_(group["float_lr"])  # a host scalar written on the device: no sync
                else:
                    group["lr"] = group["lr"] / 10


def lr_value(group: dict) -> float:
    """An optimiser group's learning rate as a float (a tensor lr's float schedule, :class:`LrDrops`)."""
    lr = group["lr"]
    if not torch.is_tensor(lr):
        return lr
    return group["float_lr"] if "float_lr" in group else float(lr)
