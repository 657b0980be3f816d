"""BALD: Bayesian Active Learning by Disagreement with MC dropout.

Gal, Islam & Ghahramani, "Deep Bayesian Active Learning with Image Data",
ICML 2017. https://arxiv.org/abs/1703.02910

The score is the mutual information between the label and the model
parameters, estimated from T stochastic forward passes (dropout on)::

    I[y; w | x] ~= H[ mean_t p_t(y|x) ] - mean_t H[ p_t(y|x) ]     (nats)

High when the samples are individually confident but disagree; low when they
agree, whether confidently or not (pure aleatoric uncertainty scores ~0).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .base import Context, register
from .uncertainty import entropy_of

_STREAM_BALD_DROPOUT = 13


@dataclass
class BaldParams:
    samples: int = 20  # T, MC-dropout forward passes

    def __post_init__(self):
        if self.samples < 2:
            raise ValueError(f"BALD needs at least 2 MC samples, got {self.samples}")


def bald_scores(mc: torch.Tensor) -> torch.Tensor:
    """(T, U, C) sampled class probabilities -> (U,) mutual information in nats (>= 0 up to rounding)."""
    mean = mc.mean(dim=0)  # (U, C)
    return (entropy_of(mean) - entropy_of(mc).mean(dim=0)).clamp_min(0.0)


@register("bald", params=BaldParams, needs=("mc_proba",))
def bald(ctx: Context) -> np.ndarray:
    """BALD: mutual information H[mean_t p_t] - mean_t H[p_t] from T MC-dropout samples (nats).

    The dropout masks are drawn from a torch generator seeded by the run's
    seed inside a forked RNG state, so the selection is reproducible and the
    caller's global RNG is left as it was.
    """
    samples = ctx.params.samples if ctx.params is not None else BaldParams().samples
    seed = int(ctx.rng(stream=_STREAM_BALD_DROPOUT).integers(2**31 - 1))
    device = ctx.x_unlabelled.device
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        mc = ctx.learner.mc_proba(ctx.x_unlabelled, samples)  # (T, U, C)
    return bald_scores(mc).cpu().numpy()


__all__ = ["BaldParams", "bald_scores", "bald"]
