"""Uncertainty baselines on the task model's class probabilities, and random sampling."""
from __future__ import annotations

import numpy as np
import torch

from .base import Context, register


@register("random")
def random(ctx: Context) -> np.ndarray:
    """Uniform random sampling: i.i.d. uniform scores from the run's seed."""
    return ctx.rng(stream=2).random(len(ctx.unlabelled_indices))


@register("least_confidence", needs=("proba",))
def least_confidence(ctx: Context) -> np.ndarray:
    """1 - max_c p(c|x): the model's confidence in its own prediction, inverted."""
    return (1.0 - ctx.proba().max(dim=1).values).cpu().numpy()


@register("margin", needs=("proba",))
def margin(ctx: Context) -> np.ndarray:
    """-(p_top1 - p_top2): a small gap between the two likeliest classes scores high."""
    top2 = ctx.proba().topk(2, dim=1).values
    return (top2[:, 1] - top2[:, 0]).cpu().numpy()


def entropy_of(p: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) along the last dim; 0 log 0 = 0."""
    return -(p * torch.log(p.clamp_min(1e-12))).sum(-1)


@register("entropy", needs=("proba",))
def entropy(ctx: Context) -> np.ndarray:
    """Max entropy: H[p(y|x)] in nats."""
    return entropy_of(ctx.proba()).cpu().numpy()
