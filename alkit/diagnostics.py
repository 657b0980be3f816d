"""What a selected batch looks like, next to a random batch of the same size: recorded every cycle.

:func:`selection_diagnostics` turns "the strategy picks diverse and
informative points, unlike random" into numbers: class balance of the batch
(from the labels revealed after labelling), how often the current model gets
the batch wrong, how spread the batch is in the latent space and how far it
is from what is already labelled, and the same latent numbers for a seeded
random batch drawn from the same candidates.

Cost: only the batch, the random batch and the labelled set are embedded
(unless the strategy already embedded the whole pool, then the cached codes
are reused), and distances are O(B^2 + B L) in blocks.
"""
from __future__ import annotations

import numpy as np
import torch

from .analysis.stats import class_entropy
from .learners.base import CapabilityError
from .strategies import lowbudget as lb
from .strategies.base import Context
from .strategies.latent import cdist_reduce

_STREAM_RANDOM_REFERENCE = 21


def _rows(ctx: Context, key: str, full, positions: np.ndarray) -> torch.Tensor:
    """Rows ``positions`` of a per-candidate model output: from the context cache if the
    strategy computed it for the whole pool, else computed on those rows only."""
    out = ctx.computed(key)
    if out is not None:
        return out[torch.as_tensor(positions, device=out.device)]
    x = ctx.x_unlabelled[torch.as_tensor(positions, device=ctx.x_unlabelled.device)]
    return full(x)


def _has_embed(learner) -> bool:
    caps = getattr(type(learner), "capabilities", None)
    if caps is not None:
        return "embed" in caps()
    return callable(getattr(learner, "embed", None))


def mean_pairwise_distance(z: torch.Tensor) -> float | None:
    """Mean Euclidean distance over the B(B-1)/2 unordered pairs of rows; None if B < 2."""
    if len(z) < 2:
        return None
    return float(cdist_reduce(z, z, "sum", exact=True).sum() / (len(z) * (len(z) - 1)))


def _to_labelled(z: torch.Tensor, z_lab: torch.Tensor) -> tuple[float | None, float | None]:
    """(mean over batch of the nearest-labelled distance, mean over batch x labelled of the distance)."""
    if len(z) == 0 or len(z_lab) == 0:
        return None, None
    return (
        float(cdist_reduce(z, z_lab, "min", exact=True).mean()),
        float(cdist_reduce(z, z_lab, "mean", exact=True).mean()),
    )


def selection_diagnostics(ctx: Context, positions, y_selected) -> dict:
    """Diagnostics of one acquired batch; a flat JSON-able dict.

    ``positions``: (B,) positions into ``ctx``'s candidates (not pool indices);
    ``y_selected``: (B,) their labels, revealed after labelling.

    Keys (distances are Euclidean in the learner's latent space, ``ctx.latent()``;
    all latent entries are None when the learner has no ``embed``):

    - ``class_counts``: list of C ints, histogram of ``y_selected``.
    - ``class_entropy``: entropy of that histogram in nats (max ``log C``).
    - ``misclassified_fraction``: fraction of the batch with ``argmax p != y``.
    - ``mean_confidence`` / ``random_mean_confidence``: mean ``max_k p`` of the
      batch / of the random reference batch.
    - ``mean_pairwise_distance``: mean over unordered pairs within the batch (None if B < 2).
    - ``mean_min_distance_to_labelled``: mean over the batch of the distance to
      the nearest labelled point (None if nothing is labelled).
    - ``mean_distance_to_labelled``: mean over batch x labelled pairs.
    - ``random_mean_pairwise_distance``, ``random_mean_min_distance_to_labelled``,
      ``random_mean_distance_to_labelled``: the same for a random batch of size B
      drawn without replacement from the same candidates with ``ctx.rng(21)``.
    - ``batch_size``, ``n_labelled``.
    """
    pos = np.asarray(positions, dtype=np.int64).ravel()
    y = y_selected.detach().cpu() if torch.is_tensor(y_selected) else torch.as_tensor(np.asarray(y_selected))
    y = y.long().ravel()
    if y.shape != (pos.size,):
        raise ValueError(f"{pos.size} positions but {tuple(y.shape)} labels")
    n_cand = len(ctx.unlabelled_indices)
    if pos.size and (pos.min() < 0 or pos.max() >= n_cand):
        raise ValueError(f"positions must index the {n_cand} candidates")
    rand = ctx.rng(stream=_STREAM_RANDOM_REFERENCE).choice(n_cand, size=pos.size, replace=False)

    counts = np.bincount(y.numpy(), minlength=ctx.num_classes)[: ctx.num_classes]
    proba = _rows(ctx, "proba", ctx.learner.predict_proba, pos).cpu()
    proba_rand = _rows(ctx, "proba", ctx.learner.predict_proba, rand).cpu()
    out: dict = {
        "batch_size": int(pos.size),
        "n_labelled": int(len(ctx.labelled_indices)),
        "class_counts": [int(c) for c in counts],
        "class_entropy": class_entropy(counts),
        "misclassified_fraction": float((proba.argmax(dim=1) != y).float().mean()) if pos.size else None,
        "mean_confidence": float(proba.max(dim=1).values.mean()) if pos.size else None,
        "random_mean_confidence": float(proba_rand.max(dim=1).values.mean()) if pos.size else None,
    }
    latent_keys = ("mean_pairwise_distance", "mean_min_distance_to_labelled", "mean_distance_to_labelled")
    if not _has_embed(ctx.learner):
        for k in latent_keys:
            out[k] = None
            out["random_" + k] = None
        return out
    try:
        z = _rows(ctx, "latent", ctx.learner.embed, pos)
        z_rand = _rows(ctx, "latent", ctx.learner.embed, rand)
        z_lab = ctx.labelled_latent().to(z.device)
    except (CapabilityError, NotImplementedError):
        for k in latent_keys:
            out[k] = None
            out["random_" + k] = None
        return out
    for prefix, zz in (("", z), ("random_", z_rand.to(z.device))):
        near, mean = _to_labelled(zz, z_lab)
        out[prefix + "mean_pairwise_distance"] = mean_pairwise_distance(zz)
        out[prefix + "mean_min_distance_to_labelled"] = near
        out[prefix + "mean_distance_to_labelled"] = mean
    return out


def latent_coverage(ctx: Context, positions, purity: float = 0.95) -> dict | None:
    """How much of the latent space the labelled set covers, before and after this batch; a flat JSON-able dict.

    Coverage is ProbCover's (Yehuda et al., NeurIPS 2022): the share of points within
    ``delta`` of a labelled point, over the labelled points and the candidates
    (``ctx.latent()``; a seeded sample of 5,000 of them when there are more), with
    ``delta`` chosen for this cycle's latent by ProbCover's own rule -- the largest
    radius at which ``purity`` of the balls are pure under k-means pseudo-labels
    with k = C (:func:`alkit.strategies.lowbudget.coverage_setup`, the strategy's
    own code and generator streams, so for a ``probcover`` run ``delta`` and the
    targets are exactly those it selected with). Every arm gets the same
    rule, so the numbers compare across methods within a cycle.

    Keys: ``delta``, ``purity``, ``targets`` (points counted), ``labelled`` (share
    covered by the labelled set the model was trained on), ``after_selection``
    (share covered once ``positions`` are labelled too). None when the learner has
    no ``embed``.
    """
    if not _has_embed(ctx.learner):
        return None
    try:
        z, z_lab = ctx.latent(), ctx.labelled_latent()
    except (CapabilityError, NotImplementedError):
        return None
    p = lb.ProbCoverParams(purity=purity)
    n_lab = len(z_lab)
    allz, tgt, z_t, delta = lb.coverage_setup(z_lab, z, ctx.num_classes, ctx.rng, p)
    centre, target = lb.coverage_edges(allz, z_t, delta)
    pos = np.asarray(positions, dtype=np.int64).ravel() + n_lab
    before = np.zeros(len(tgt), dtype=bool)
    before[np.unique(target[centre < n_lab])] = True
    after = before.copy()
    after[np.unique(target[np.isin(centre, pos)])] = True
    return {"delta": delta, "purity": purity, "targets": int(len(tgt)), "labelled": float(before.mean()),
            "after_selection": float(after.mean())}


__all__ = ["selection_diagnostics", "class_entropy", "mean_pairwise_distance", "latent_coverage"]
