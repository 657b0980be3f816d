"""Minibatches as index tensors drawn from seeded generators, for one run and for K fused runs.

The whole split lives as tensors on the run's device; a minibatch is an index tensor drawn from a seeded
``torch.Generator`` and applied with ``x[idx]``: no DataLoader, no per-item Python work. A fused group
(:mod:`.fused`) draws each run's indices from that run's own generator, in the same order, so every run
of a group sees exactly the batches it would see trained alone (:class:`IndexBlocks`).
"""
from __future__ import annotations

from typing import Iterator

import torch


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
    """Index tensors drawn epoch after epoch forever (VAAL draws unlabelled batches alongside labelled ones).

    With ``n >= batch_size`` every batch has ``batch_size`` rows (the last incomplete one of an epoch is
    dropped, as VAAL's loader does); with ``n < batch_size`` every batch is one whole epoch of ``n`` rows."""
    while True:
        yield from epoch_batches(n, batch_size, gen, drop_last=n >= batch_size)


def tensor_batches(
    x: torch.Tensor, y: torch.Tensor | None, batch_size: int, gen: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    """Endless ``(idx, x[idx], y[idx])`` minibatches of on-device tensors (``y`` may be None), drawn by
    :func:`endless_batches`: the batch source of every unfused training phase. (A benchmark may pass another
    source with the same signature, e.g. a DataLoader's, to time the same loops fed another way.)"""
    for idx in endless_batches(len(x), batch_size, gen):
        yield idx, x[idx], None if y is None else y[idx]


def batch_rows(n: int, batch_size: int) -> int:
    """Rows of every batch :func:`endless_batches` yields for a set of ``n`` points."""
    return batch_size if n >= batch_size else n


class IndexBlocks:
    """The index stream of :func:`endless_batches` for K runs at once, ``block`` iterations at a time.

    ``sizes[k]`` points and generator ``gens[k]`` per run; every run's batches have :func:`batch_rows`
    rows (the same for all K: the caller groups runs so). :meth:`next` returns the (K, rows) indices of
    the next batch of every run, each run's exactly as its own :func:`endless_batches` would draw them
    (the same ``randperm`` calls on the same generator, in the same order). Epochs are drawn ahead in
    blocks: per block one ``randperm`` per run and epoch, and per batch one slice, whatever K.
    """

    def __init__(self, sizes: list[int], batch_size: int, gens: list[torch.Generator], block: int = 256):
        rows = {batch_rows(n, batch_size) for n in sizes}
        if len(rows) != 1:
            raise ValueError(f"runs of one fused group need batches of one size; sets of {sizes} give {sorted(rows)}")
        self.rows, self.sizes, self.gens, self.block = rows.pop(), sizes, gens, block
        self.batch_size = batch_size
        self.buffers: list[list[torch.Tensor]] = [[] for _ in sizes]  # per run: (r, rows) pieces not yet stacked
        self.left = [0 for _ in sizes]  # rows drawn ahead per run
        self.stack: torch.Tensor | None = None  # (K, T, rows)
        self.cursor = 0

    def _epoch(self, k: int) -> torch.Tensor:
        n, b = self.sizes[k], self.batch_size
        perm = torch.randperm(n, generator=self.gens[k], device=self.gens[k].device)
        if n >= b:
            return perm[: n - n % b].view(-1, b)  # (n // b, b): epoch_batches with drop_last
        return perm.view(1, n)  # one batch of the whole epoch

    def _refill(self) -> None:
        per_run = []
        for k in range(len(self.sizes)):
            while self.left[k] < self.block:
                e = self._epoch(k)
                self.buffers[k].append(e)
                self.left[k] += len(e)
            rows = torch.cat(self.buffers[k]) if len(self.buffers[k]) > 1 else self.buffers[k][0]
            per_run.append(rows[: self.block])
            rest = rows[self.block :]
            self.buffers[k] = [rest] if len(rest) else []
            self.left[k] = len(rest)
        self.stack = torch.stack(per_run)  # (K, block, rows)
        self.cursor = 0

    def next(self) -> torch.Tensor:
        if self.stack is None or self.cursor == self.block:
            self._refill()
        out = self.stack[:, self.cursor]  # (K, rows)
        self.cursor += 1
        return out
