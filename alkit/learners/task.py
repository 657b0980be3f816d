"""The task model's training phase, shared by the ``classifier`` learner, VAAL and TA-VAAL.

VAAL's solver: one step per iteration on a fresh labelled batch (batches cycle through a new
permutation of the labelled set every pass, the last incomplete batch dropped as VAAL's loader does),
``schedule.iterations_per_cycle`` iterations, SGD with VAAL's lr drops, validation accuracy at
:meth:`ScheduleParams.validates_at`, the best validated state kept (ties keep the earlier state).
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from ..engine import Optim, Phase, PhaseResult, Step, Validation, run_phase
from ..engine.batches import tensor_batches
from ..engine.speed import OFF
from ..losses import cross_entropy
from ..models import Classifier, count_parameters
from ..train import seed_everything


def cross_entropy_loss(model: nn.Module) -> Callable:
    """The default task-model loss: mean cross-entropy of the batch."""

    def loss(batch, hp, iteration):
        value = cross_entropy(model(batch["xl"]), batch["yl"])
        return value, {"task_loss": value}

    return loss


def task_optimizer(optim, modules: tuple[str, ...]) -> Optim:
    """``optim``: :class:`~alkit.learners.schedule.TaskOptimParams` (VAAL's SGD by default)."""
    if optim.optimizer == "sgd":
        kw = {"lr": optim.lr, "momentum": optim.momentum, "weight_decay": optim.weight_decay}
    else:
        kw = {"lr": optim.lr, "weight_decay": optim.weight_decay}
    return Optim(optim.optimizer, modules, kw, optim.lr_drop_every)


def task_phase(modules: dict[str, nn.Module], x, y, x_val, y_val, *, schedule, optim, seed: int, n_unlabelled: int,
               loss: Callable | None = None, name: str = "classifier", speed=OFF, batch_source=tensor_batches,
               phase_of=None) -> Phase:
    """The phase that trains ``modules["model"]`` (and any other module given, e.g. TA-VAAL's loss predictor,
    optimised and restored with it) as VAAL trains its task model; ``loss`` defaults to cross-entropy."""
    names = tuple(modules)
    return Phase(
        name=name, modules=modules, optimizers={"task": task_optimizer(optim, names)},
        steps=[Step("task", loss or cross_entropy_loss(modules["model"]), "task", draw="labelled", train=names,
                    phase_of=phase_of)],
        iterations=schedule.iterations_per_cycle(len(x), n_unlabelled), batch_size=schedule.batch_size,
        labelled=(x, y, None), seed_labelled=seed,
        validation=Validation("model", keep=names, patience=schedule.patience), x_val=x_val, y_val=y_val,
        validates_at=schedule.validates_at, speed=speed, batch_source=batch_source,
    )


def task_metrics(result: PhaseResult) -> dict:
    """The task phase's record fields: loss means since the last validation, iterations, validation."""
    return {**result.last, "iterations": result.iterations, "val_checks": result.val_checks,
            "best_iteration": result.best_iteration, "val_acc": result.best_acc, "lr_final": result.lr["task"]}


def fit_task_model(model: nn.Module, x, y, x_val, y_val, *, schedule, optim, seed: int, n_unlabelled: int,
                   progress: bool = False, speed=OFF) -> dict:
    """Train ``model`` alone (:func:`task_phase` run by the engine); returns :func:`task_metrics`."""
    phase = task_phase({"model": model}, x, y, x_val, y_val, schedule=schedule, optim=optim, seed=seed,
                       n_unlabelled=n_unlabelled, speed=speed)
    return task_metrics(run_phase(phase, progress))


def train_task_classifier(data, p, size: str, dropout: float, seed: int, device, speed=OFF,
                          batch_source=tensor_batches):
    """Build and train the task classifier on every labelled point: the ``classifier`` learner *and* VAAL's
    task model (a generator of phases: ``model, metrics = yield from train_task_classifier(...)``).

    ``p`` carries the schedule and optimiser (:class:`ScheduleParams`, :class:`TaskOptimParams`). One
    function for both keeps a VAAL arm's task model identical to the random arm's, seed for seed.
    Returns the model (best validated state) and its metrics, ``task_labelled`` and ``classifier_params``
    included.
    """
    seed_everything(seed)
    model = Classifier(data.num_classes, size, dropout, data.x_labelled.shape[1]).to(device)
    speed.prepare(model)
    result = yield task_phase({"model": model}, data.x_labelled, data.y_labelled, data.x_val, data.y_val,
                              schedule=p, optim=p, seed=seed + 1, n_unlabelled=len(data.x_unlabelled),
                              speed=speed, batch_source=batch_source)
    metrics = task_metrics(result)
    metrics["task_labelled"] = len(data.x_labelled)
    metrics["classifier_params"] = count_parameters(model)
    return model, metrics

