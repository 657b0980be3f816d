"""How long and how every learner trains in one cycle: the training schedule, shared by all learners.

VAAL's solver (``solver.py`` of github.com/sinhasam/vaal) runs, per cycle::

    train_iterations = num_images * train_epochs // batch_size

iterations, each on one labelled and one unlabelled batch, *whatever the number
of labels*. alkit counts the pool (labelled + unlabelled): with the study's
55,000 Fashion-MNIST training images, 20 epochs and batches of 128 that is
8,593 iterations per cycle. (VAAL's ``num_images`` is its whole training set,
validation split included: 50,000 on CIFAR-10 where the pool is 45,000; we
count the 55,000 images the study trains on, not the 60,000 with validation.) Its task model takes one SGD
step per iteration (lr 0.01, momentum 0.9, weight decay 5e-4), the learning
rate divided by 10 every ``train_iterations // 4`` iterations; validation
accuracy is measured every 1,000 iterations and the best model is the one
tested. The VAE takes ``num_vae_steps = 2`` Adam (5e-4) steps per iteration,
the discriminator ``num_adv_steps = 1``.

:class:`ScheduleParams` makes that explicit for every learner (the plain
``classifier`` baseline included): ``epochs`` counted over the *pool*
(``epoch_unit="pool"``, VAAL's count, the default) or over the labelled set
(``"labelled"``: ``ceil(L / batch_size)`` iterations per epoch, a cheap CPU
setting), or ``iterations`` given outright. The resolved count is recorded in
every cycle record as ``iterations``. :class:`TaskOptimParams` is the task
model's optimiser (VAAL's SGD schedule by default).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

EPOCH_UNITS = ("pool", "labelled")
OPTIMIZERS = ("sgd", "adam")


@dataclass
class ScheduleParams:
    """Training length per cycle and validation; mixed into every learner's parameters."""

    epochs: int = 20  # the study: "we train the VAE, Classifier and Discriminator for 20 epochs"
    epoch_unit: str = "pool"  # "pool": one epoch = (labelled + unlabelled) / batch_size iterations (VAAL); "labelled"
    iterations: int | None = None  # iterations per cycle, overriding epochs x epoch_unit
    batch_size: int = 128  # labelled batch (and unlabelled batch, where a learner draws one)
    val_every: int = 1000  # validate (keep the best state) every this many iterations and after the last (VAAL: 1000)
    patience: int | None = None  # stop after this many validations without improvement; None = run every iteration
    # a floor under the epochs' count (not under ``iterations``): the cpu profile's task model runs epochs over the
    # labelled set, but never fewer than this many iterations (where few labels would make a cycle too short)
    min_iterations: int | None = None

    def __post_init__(self):
        _check_int("epochs", self.epochs, 1)
        _check_int("batch_size", self.batch_size, 2)
        _check_int("val_every", self.val_every, 1)
        if self.iterations is not None:
            _check_int("iterations", self.iterations, 1)
        if self.patience is not None:
            _check_int("patience", self.patience, 1)
        if self.min_iterations is not None:
            _check_int("min_iterations", self.min_iterations, 1)
        if self.epoch_unit not in EPOCH_UNITS:
            raise ValueError(f"epoch_unit must be one of {EPOCH_UNITS}, got {self.epoch_unit!r}")

    def iterations_per_cycle(self, n_labelled: int, n_unlabelled: int) -> int:
        """Iterations of one cycle: ``iterations`` if set, else VAAL's ``pool * epochs // batch_size``
        (``epoch_unit="pool"``, pool = labelled + unlabelled) or ``ceil(L / batch_size) * epochs`` ("labelled"),
        at least ``min_iterations`` (if set) and at least 1."""
        if self.iterations is not None:
            return self.iterations
        if self.epoch_unit == "pool":
            n = max(1, (n_labelled + n_unlabelled) * self.epochs // self.batch_size)
        else:
            n = max(1, math.ceil(n_labelled / self.batch_size)) * self.epochs
        return max(n, self.min_iterations or 1)

    def validates_at(self, iteration: int, iterations: int) -> bool:
        """VAAL validates when ``iteration % 1000 == 0`` (iteration 0 included); we also validate after the last."""
        return iteration % self.val_every == 0 or iteration == iterations - 1


@dataclass
class TaskOptimParams:
    """The task classifier's optimiser; defaults are VAAL's (``optim.SGD(lr=0.01, momentum=0.9, weight_decay=5e-4)``)."""

    optimizer: str = "sgd"  # "sgd" (VAAL) or "adam"
    lr: float = 0.01
    momentum: float = 0.9  # SGD only
    weight_decay: float = 5e-4
    lr_drop_every: float | None = 0.25  # divide lr by 10 every this fraction of the iterations (VAAL: // 4); None = never

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if self.momentum < 0 or self.weight_decay < 0:
            raise ValueError(f"momentum and weight_decay must be >= 0, got {self.momentum}, {self.weight_decay}")
        if self.lr_drop_every is not None and not 0.0 < self.lr_drop_every <= 1.0:
            raise ValueError(f"lr_drop_every must be in (0, 1] or None, got {self.lr_drop_every}")


def _check_int(name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
