"""Training utilities shared by learners: on-device minibatching, classifier fitting, evaluation.

The whole split lives as tensors on the run's device; a minibatch is an index
tensor drawn from a seeded ``torch.Generator`` and applied with ``x[idx]``:
no DataLoader, no per-item Python work.
"""
from __future__ import annotations

import copy
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .progress import progress_bar


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


def seed_everything(seed: int) -> None:
    """Seed torch's global RNG (parameter init, dropout) and numpy's legacy one."""
    torch.manual_seed(int(seed) % (2**63))
    np.random.seed(int(seed) % (2**32))


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2048) -> float:
    """Fraction of ``x`` that ``model`` (returning logits) classifies as ``y``, in eval mode."""
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


def fit_classifier(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
    patience: int | None = None,
    progress: bool = False,
) -> dict:
    """Train ``model`` with Adam and cross-entropy on (x, y); keep the weights of the best validation epoch.

    Validation accuracy is measured after every epoch; the returned model holds
    the best epoch's weights (ties: the earliest). ``patience`` stops after that
    many epochs without improvement. Returns metrics: ``train_loss`` (mean
    cross-entropy of the last epoch), ``val_acc`` (best), ``best_epoch``,
    ``epochs_run``.
    """
    gen = generator(seed, x.device)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    best_acc, best_state, best_epoch, since = -1.0, None, -1, 0
    train_loss = float("nan")
    bar = progress_bar(range(epochs), desc="classifier", leave=False, disable=not progress)
    epoch = -1
    for epoch in bar:
        model.train()
        total, count = torch.zeros((), device=x.device), 0
        for idx in epoch_batches(len(x), batch_size, gen):
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * len(idx)
            count += len(idx)
        train_loss = (total / max(count, 1)).item()
        acc = accuracy(model, x_val, y_val)
        if acc > best_acc:
            best_acc, best_epoch, since = acc, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            since += 1
        bar.set_postfix(loss=f"{train_loss:.3f}", val=f"{acc:.3f}")
        if patience is not None and since >= patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return {"train_loss": train_loss, "val_acc": best_acc, "best_epoch": best_epoch, "epochs_run": epoch + 1}


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



@torch.no_grad()
def batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    """Apply ``fn`` over ``x`` in chunks of ``batch_size`` rows and concatenate."""
    if len(x) == 0:
        return fn(x[:1])[:0]
    return torch.cat([fn(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
