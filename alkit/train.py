"""Training utilities shared by learners: on-device minibatching, classifier fitting, evaluation.

The whole split lives as tensors on the run's device; a minibatch is an index
tensor drawn from a seeded ``torch.Generator`` and applied with ``x[idx]``:
no DataLoader, no per-item Python work.
"""
from __future__ import annotations

import copy
import functools
import math
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .progress import progress_bar
from .timebox import Watch


def generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A seeded generator on ``device`` (CUDA generators must live on the GPU)."""
    g = torch.Generator(device=torch.device(device))
    g.manual_seed(int(seed) % (2**63))
    return g


def epoch_batches(n: int, batch_size: int, gen: torch.Generator, drop_last: bool = False) -> Iterator[torch.Tensor]:
    """Index tensors covering ``range(n)`` once in a random order, ``batch_size`` at a time."""
    perm = torch.randperm(n, generator=gen, device=gen.device)
    stop = n - (n % batch_size) if (drop_last and n >= batch_size) else n
    for i in range(0, stop, batch_size):
        yield perm[i : i + batch_size]


def endless_batches(n: int, batch_size: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """Index tensors drawn epoch after epoch forever (VAAL draws unlabelled batches alongside labelled ones)."""
    while True:
        yield from epoch_batches(n, batch_size, gen, drop_last=n >= batch_size)


def tensor_batches(
    x: torch.Tensor, y: torch.Tensor | None, batch_size: int, gen: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    """Endless ``(idx, x[idx], y[idx])`` minibatches of on-device tensors (``y`` may be None), drawn by
    :func:`endless_batches`: the batch source of every training loop. (A benchmark may pass another
    source with the same signature, e.g. a DataLoader's, to time the same loops fed another way.)"""
    for idx in endless_batches(len(x), batch_size, gen):
        yield idx, x[idx], None if y is None else y[idx]


def seed_everything(seed: int) -> None:
    """Seed torch's global RNG (parameter init, dropout) and numpy's legacy one."""
    torch.manual_seed(int(seed) % (2**63))
    np.random.seed(int(seed) % (2**32))


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int | None = None) -> float:
    """Fraction of ``x`` that ``model`` (returning logits) classifies as ``y``, in eval mode."""
    batch_size = batch_size or inference_chunk(x)
    was = model.training
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += (model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum().item()
    model.train(was)
    return correct / max(len(x), 1)


def confusion_matrix(pred: torch.Tensor, y: torch.Tensor, num_classes: int) -> np.ndarray:
    """(C, C) counts, rows = true class, columns = predicted class."""
    idx = y.long() * num_classes + pred.long()
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes).cpu().numpy()


class RunningMeans:
    """Running sums of loss tensors kept on device; one host sync when the means are read."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, **losses: torch.Tensor) -> None:
        for k, v in losses.items():
            v = v.detach()
            self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()
            self.counts[k] = self.counts.get(k, 0) + 1

    def means(self, where: str) -> dict[str, float]:
        """Means since construction; a non-finite one is an error naming ``where``."""
        out = {k: (s / self.counts[k]).item() for k, s in self.sums.items()}
        bad = [k for k, v in out.items() if not math.isfinite(v)]
        if bad:
            raise FloatingPointError(f"{where}: non-finite {', '.join(bad)} ({out}); lower the learning rates")
        return out


def make_task_optimizer(params, p, fused: bool = False) -> torch.optim.Optimizer:
    """``p``: :class:`~alkit.learners.schedule.TaskOptimParams` (optimizer, lr, momentum, weight_decay).
    ``fused``: one fused kernel per step (``fused=True``, see :mod:`alkit.learners.speed`)."""
    kw = {"fused": True} if fused else {}
    if p.optimizer == "sgd":
        return torch.optim.SGD(params, lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay, **kw)
    return torch.optim.Adam(params, lr=p.lr, weight_decay=p.weight_decay, **kw)


class LrDrops:
    """VAAL's step schedule: before iteration ``i > 0`` with ``i % (fraction * iterations) == 0``, lr /= 10."""

    def __init__(self, optimizer: torch.optim.Optimizer, fraction: float | None, iterations: int):
        self.optimizer = optimizer
        self.every = int(fraction * iterations) if fraction else 0

    def before(self, iteration: int) -> None:
        if self.every and iteration and iteration % self.every == 0:
            for group in self.optimizer.param_groups:
                group["lr"] = group["lr"] / 10


def cross_entropy_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, iteration: int):
    """The default task-model loss: mean cross-entropy of the batch."""
    loss = F.cross_entropy(model(x), y)
    return loss, {"task_loss": loss}


def fit_task_model(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    *,
    schedule,
    optim,
    seed: int,
    n_unlabelled: int,
    loss_fn: Callable = cross_entropy_step,
    extra: tuple[nn.Module, ...] = (),
    progress: bool = False,
    desc: str = "classifier",
    speed=None,
    batch_source: Callable = tensor_batches,
) -> dict:
    """Train the task model as VAAL's solver does; keep the best validated state.

    ``schedule`` (:class:`~alkit.learners.schedule.ScheduleParams`) gives the
    iterations (``schedule.iterations_per_cycle(len(x), n_unlabelled)``), each one
    step on a fresh labelled batch (batches cycle through a new permutation of
    ``x`` every pass, the last incomplete batch dropped as VAAL's loader does);
    ``optim`` (:class:`~alkit.learners.schedule.TaskOptimParams`) the optimiser
    and VAAL's lr drops. ``loss_fn(model, xb, yb, iteration) -> (loss, terms)``
    defaults to cross-entropy; ``extra`` modules (TA-VAAL's loss predictor) are
    optimised with the model and restored with it. Validation accuracy is
    measured at :meth:`ScheduleParams.validates_at`; ties keep the earlier state.

    ``speed`` (:class:`~alkit.learners.speed.Speed`, None = every option off) wraps the
    forward + loss in autocast / ``torch.compile`` and picks the fused optimiser. A compiled
    step sees a fixed ``iteration``: a loss that depends on it exposes ``loss_fn.phase(iteration)``,
    the only thing it depends on (one compiled step per phase); without ``phase``, it must not
    depend on it. ``batch_source`` yields ``(idx, xb, yb)`` (:func:`tensor_batches`).

    Returns ``iterations`` (run), ``val_checks``, ``best_iteration``, ``val_acc``
    (best), ``lr_final`` and the mean of each loss term since the last validation.
    """
    iterations = schedule.iterations_per_cycle(len(x), n_unlabelled)
    gen = generator(seed, x.device)
    modules = (model, *extra)
    opt = make_task_optimizer([p for m in modules for p in m.parameters()], optim,
                              fused=speed is not None and speed.fused_optim)
    drops = LrDrops(opt, optim.lr_drop_every, iterations)
    batches = batch_source(x, y, schedule.batch_size, gen)
    compiled = speed is not None and speed.compile != "off"
    step = speed.step(loss_fn) if speed is not None and not compiled else loss_fn
    phase_of, phases = getattr(loss_fn, "phase", lambda it: None), {}
    best_acc, best_state, best_it, since, checks = -1.0, None, -1, 0, 0
    means, last = RunningMeans(), {}
    bar = progress_bar(range(iterations), desc=desc, leave=False, disable=not progress, mininterval=1.0)
    watch = Watch(iterations, desc)  # gives the cycle up when it cannot end inside a time box (alkit.timebox)
    it = -1
    for it in bar:
        drops.before(it)
        for m in modules:
            m.train()
        _, xb, yb = next(batches)
        if compiled:  # one compiled step per phase of the loss, with the phase's first iteration bound
            key = phase_of(it)
            if key not in phases:
                phases[key] = speed.step(functools.partial(loss_fn, model, iteration=it))
            loss, terms = phases[key](xb, yb)
        else:
            loss, terms = step(model, xb, yb, it)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        means.add(**terms)
        if schedule.validates_at(it, iterations):
            checks += 1
            last = means.means(f"{desc} iteration {it}")
            means = RunningMeans()
            acc = accuracy(model, x_val, y_val)
            if acc > best_acc:
                best_acc, best_it, since = acc, it, 0
                best_state = [copy.deepcopy(m.state_dict()) for m in modules]
            else:
                since += 1
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}", val=f"{acc:.3f}")
            if schedule.patience is not None and since >= schedule.patience:
                break
        watch.tick(it)
    for m, state in zip(modules, best_state):
        m.load_state_dict(state)
        m.eval()
    return {**last, "iterations": it + 1, "val_checks": checks, "best_iteration": best_it, "val_acc": best_acc,
            "lr_final": opt.param_groups[0]["lr"]}


@torch.no_grad()
def mc_dropout_proba(model: torch.nn.Module, x: torch.Tensor, samples: int) -> torch.Tensor:
    """(T, N, C) softmax outputs of ``model`` with dropout active and BatchNorm in eval mode (MC dropout)."""
    model.eval()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.train()
    try:
        return torch.stack([batched(lambda b: model(b).softmax(1), x) for _ in range(samples)])
    finally:
        model.eval()



def inference_chunk(x: torch.Tensor) -> int:
    """Rows per inference chunk: 2048 on a GPU; 256 on CPU, where chunks that fit in cache ran the
    small CNNs 1.5-2x faster than 2048 (measured on 2,000 images, 2 cores)."""
    return 2048 if x.is_cuda else 256


@torch.no_grad()
def batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """Apply ``fn`` over ``x`` in chunks of ``batch_size`` rows (default :func:`inference_chunk`) and concatenate."""
    batch_size = batch_size or inference_chunk(x)
    if len(x) == 0:
        return fn(x[:1])[:0]
    return torch.cat([fn(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
