"""Running means of loss terms kept on the device: one host sync when they are read (validation points)."""
from __future__ import annotations

import math

import torch


class RunningMeans:
    """Running sums of loss tensors kept on device; one host sync when the means are read.

    Scalars for one run; (K,) tensors for K fused runs (:meth:`per_run` reads them run by run)."""

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

    def per_run(self, k: int) -> tuple[dict[str, float], list[str]]:
        """Run ``k``'s means of (K,) sums (one host sync for all runs: the first call reads every sum)."""
        if not hasattr(self, "_host"):  # the same float division as :meth:`means`, for all runs at once
            self._host = {key: (s / self.counts[key]).tolist() for key, s in self.sums.items()}
        out = {key: v[k] for key, v in self._host.items()}
        return out, [key for key, v in out.items() if not math.isfinite(v)]


class StaticSums:
    """Running sums of (K,) loss terms in tensors allocated once and accumulated in place, for the fused engine:
    an iteration captured as a CUDA graph (:mod:`.graph`) adds into the very tensors it was captured with.
    Read (one host sync) and reset between iterations only, at validation points.

    The numbers of :class:`RunningMeans`: a sum starts at -0.0, the exact identity of float addition
    (``-0.0 + x == x`` for every ``x``, +0.0, -0.0, inf and NaN included), so its first add is the copy
    RunningMeans takes and every later add the same addition in the same order."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}  # adds since the last read

    def add(self, **losses: torch.Tensor) -> None:
        """Inside the iteration: in place (a term's tensor is allocated on its first add, in an eager iteration)."""
        for k, v in losses.items():
            v = v.detach()
            if k not in self.sums:
                self.sums[k] = torch.full_like(v, -0.0)
            self.sums[k].add_(v)
            self.counts[k] = self.counts.get(k, 0) + 1

    def repeat(self, counts: dict[str, int]) -> None:
        """Count the adds of one replayed iteration (its Python :meth:`add` calls ran once, at capture)."""
        for k, n in counts.items():
            self.counts[k] = self.counts.get(k, 0) + n

    def read(self, K: int) -> list[tuple[dict[str, float], list[str]]]:
        """Each run's means since the last read and its non-finite terms (as :meth:`RunningMeans.per_run`);
        the sums start again from -0.0."""
        host = {key: (s / self.counts[key]).tolist() for key, s in self.sums.items() if self.counts.get(key)}
        for s in self.sums.values():
            s.fill_(-0.0)
        self.counts = {}
        out = []
        for k in range(K):
            means = {key: v[k] for key, v in host.items()}
            out.append((means, [key for key, v in means.items() if not math.isfinite(v)]))
        return out
