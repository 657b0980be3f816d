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
