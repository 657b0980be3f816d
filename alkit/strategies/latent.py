"""Latent-space strategies: the study's Algorithms 1 and 2, and the core-set (k-center greedy).

All three work in the learner's embedding (``ctx.latent()``: the M2 latent for
the ``m2`` learner, penultimate features for the plain classifier) with
Euclidean distance, on the device the latent codes live on.

"Anchors" of class ``c`` are the labelled points of class ``c`` that the
*current* model classifies correctly::

    anchors_c = { l : y_l = c  and  argmax_k p(k | x_l) = c }

References
----------
- Sener & Savarese, "Active Learning for Convolutional Neural Networks: A
  Core-Set Approach", ICLR 2018. https://arxiv.org/abs/1708.00489
- Algorithms 1 and 2 are the study's own ("Active Learning using Deep
  Generative Models", Fashion-MNIST); exact formulas are in each docstring.

Shapes: U = candidates, L = labelled, d = latent size, C = classes.
Cost: distances are computed in row blocks (:func:`cdist_reduce`), so memory
is O(block * L), never O(U * L); greedy loops run over the budget only.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch

from .base import Context, register

#: rows of the left operand per distance block; a block holds rows * M floats
_BLOCK_ELEMENTS = 1 << 24  # 16M floats = 64 MiB in float32

# rng streams (base.select uses 1, uncertainty.random uses 2)
_STREAM_ALG1_REMAINDER = 11
_STREAM_CORESET_FIRST = 12


# --------------------------------------------------------------------------------------------
# distances


def _block_rows(m: int) -> int:
    return max(1, _BLOCK_ELEMENTS // max(1, m))


def cdist_reduce(
    a: torch.Tensor, b: torch.Tensor, reduce: str | None = None, block_rows: int | None = None, exact: bool = False
):
    """Euclidean distances between rows of ``a`` (N, d) and ``b`` (M, d), computed in row blocks.

    ``reduce=None`` returns the full (N, M) matrix (only for small N * M);
    ``"min"``, ``"sum"`` and ``"mean"`` reduce over ``b`` inside each block and
    return (N,), so peak memory is ``block_rows * M`` floats whatever N is
    (55,000 x 8,000 takes ~64 MiB at a time instead of 1.8 GB).
    ``"min"``/``"mean"`` with M = 0 give +inf / NaN, like their definitions.
    Runs on ``a``'s device; ``b`` is moved there. ``exact=False`` lets
    ``torch.cdist`` use the matmul expansion (about 2x faster, absolute error
    ~sqrt(eps) * |z|, so a point's distance to itself may read ~1e-3 in
    float32); ``exact=True`` computes differences directly, for small batches.
    """
    mode = "donot_use_mm_for_euclid_dist" if exact else "use_mm_for_euclid_dist_if_necessary"
    if reduce not in (None, "min", "sum", "mean"):
        raise ValueError(f"reduce must be None, 'min', 'sum' or 'mean', got {reduce!r}")
    b = b.to(device=a.device, dtype=a.dtype)
    n, m = a.shape[0], b.shape[0]
    if reduce is None:
        if n == 0 or m == 0:
            return a.new_zeros((n, m))
        rows = block_rows or _block_rows(m)
        return torch.cat([torch.cdist(a[i : i + rows], b, compute_mode=mode) for i in range(0, n, rows)])
    if m == 0:
        fill = {"min": float("inf"), "sum": 0.0, "mean": float("nan")}[reduce]
        return a.new_full((n,), fill)
    rows = block_rows or _block_rows(m)
    out = a.new_empty((n,))
    for i in range(0, n, rows):
        dist = torch.cdist(a[i : i + rows], b, compute_mode=mode)  # (rows, M)
        if reduce == "min":
            out[i : i + rows] = dist.min(dim=1).values
        elif reduce == "sum":
            out[i : i + rows] = dist.sum(dim=1)
        else:
            out[i : i + rows] = dist.mean(dim=1)
    return out


def min_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N,) distance from each row of ``a`` to its nearest row of ``b`` (+inf if ``b`` is empty)."""
    return cdist_reduce(a, b, "min")


@contextmanager
def _greedy_threads(device: torch.device):
    """One intra-op thread on CPU for the greedy loops, restored after.

    Each greedy step is a handful of O(N) vector ops; split over OpenMP
    threads they gain little, and on a busy machine every op pays a thread
    barrier: measured on 2 shared cores, k-center over 55,000 points took
    48 s with 2 threads and 0.55 s with 1.
    """
    if device.type != "cpu":
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


class _DistToRow:
    """Distances from every row of a fixed (N, d) set to one of its rows, for greedy loops.

    ``||a - a_i||^2 = |a|^2 - 2 a a_i + |a_i|^2`` with the squared norms kept:
    one matrix-vector product per call instead of an (N, d) difference tensor
    (the same matmul expansion, and error, as ``cdist_reduce(exact=False)``).
    """

    def __init__(self, a: torch.Tensor):
        self.a = a
        self.sq = a.square().sum(dim=1)  # (N,)

    def __call__(self, i: int) -> torch.Tensor:
        d2 = torch.mv(self.a, self.a[i]).mul_(-2.0).add_(self.sq).add_(self.sq[i])  # (N,)
        return d2.clamp_min_(0.0).sqrt_()


# --------------------------------------------------------------------------------------------
# shared pieces


def anchor_mask(ctx: Context) -> torch.Tensor:
    """(L,) bool: labelled points the current model classifies correctly (``argmax p = y``)."""
    if len(ctx.y_labelled) == 0:
        return torch.zeros(0, dtype=torch.bool)
    pred = ctx.labelled_proba().argmax(dim=1)
    return (pred.cpu() == ctx.y_labelled.cpu())


def class_quotas(n_candidates: np.ndarray, budget: int, rng: np.random.Generator) -> np.ndarray:
    """Per-class quotas for a class-balanced batch of ``budget`` points.

    1. Every class gets ``budget // C``; the remainder ``budget % C`` goes one
       each to the first classes of a seeded permutation ``order = rng.permutation(C)``.
    2. A class with fewer candidates than its quota keeps them all; the
       shortfall is water-filled, one point at a time, to the class with the
       smallest quota among those with candidates left (ties: first in ``order``).

    Returns a (C,) int64 array summing to ``budget`` with ``quota <= n_candidates``.
    """
    n = np.asarray(n_candidates, dtype=np.int64)
    c = n.size
    if budget > n.sum():
        raise ValueError(f"budget {budget} exceeds the {int(n.sum())} candidates")
    order = rng.permutation(c)
    quota = np.full(c, budget // c, dtype=np.int64)
    quota[order[: budget % c]] += 1
    quota = np.minimum(quota, n)
    rank = np.empty(c, dtype=np.int64)
    rank[order] = np.arange(c)
    for _ in range(budget - int(quota.sum())):  # at most budget steps of O(C)
        open_ = np.flatnonzero(quota < n)
        k = open_[np.lexsort((rank[open_], quota[open_]))[0]]
        quota[k] += 1
    return quota


# --------------------------------------------------------------------------------------------
# Algorithm 1


def alg1_select(
    z: torch.Tensor,  # (U, d) candidate latent codes
    pred: torch.Tensor,  # (U,) predicted class of each candidate
    confidence: torch.Tensor,  # (U,) max_k p(k|x), used only for the no-anchor fallback without labels
    z_labelled: torch.Tensor,  # (L, d)
    anchors_per_class: list[torch.Tensor],  # C tensors of anchor latent codes (n_c, d)
    quota: np.ndarray,  # (C,) points to pick per class
) -> tuple[np.ndarray, list[str]]:
    """The greedy core of Algorithm 1; returns candidate positions and, per class, how it started.

    For each class ``c`` (in class order), over the candidates predicted ``c``:
    ``score(u) = sum_{a in A} ||z_u - z_a||`` with ``A`` = anchors of ``c``;
    pick ``argmax score`` (first index on ties), add it to ``A``, repeat ``quota[c]``
    times. The score is kept as a running vector: each pick adds one column
    of distances, so the loop is over the quota, never over candidates.

    No anchors for ``c``: the first pick is the candidate farthest from *all*
    labelled points (``argmax min_l ||z_u - z_l||``; "start" = ``"farthest"``),
    or, with no labelled points at all, the least confident one (``"least_confident"``);
    it then becomes the first anchor.
    """
    pred = pred.to(z.device)
    picks: list[np.ndarray] = []
    starts: list[str] = []
    for c, q in enumerate(quota.tolist()):
        if q == 0:
            starts.append("none")
            continue
        members = torch.nonzero(pred == c).flatten()  # (n_c,) candidate positions
        zc = z[members]  # (n_c, d)
        anchors = anchors_per_class[c]
        dist = _DistToRow(zc)
        order: list[int] = []
        if len(anchors):
            score = cdist_reduce(zc, anchors, "sum")  # (n_c,)
            starts.append("anchors")
        else:
            if len(z_labelled):
                first = int(min_distance(zc, z_labelled).argmax())
                starts.append("farthest")
            else:
                first = int((1.0 - confidence.to(z.device)[members]).argmax())
                starts.append("least_confident")
            order.append(first)
            score = dist(first)
            score[first] = float("-inf")
        with _greedy_threads(z.device):
            while len(order) < q:
                i = int(score.argmax())
                order.append(i)
                score.add_(dist(i))  # a picked point stays at -inf
                score[i] = float("-inf")
        picks.append(members[torch.as_tensor(order, device=z.device)].cpu().numpy())
    pos = np.concatenate(picks) if picks else np.zeros(0, dtype=np.int64)
    return pos.astype(np.int64), starts


@register("alg1", batch=True, needs=("proba", "embed"))
def alg1(ctx: Context, budget: int) -> np.ndarray:
    """Algorithm 1: class-balanced latent maximin; per predicted class, greedily the candidate
    with the largest SUM of latent distances to that class's correctly classified labelled points.

    Quotas: ``budget // C`` per class, remainder one each to classes in a
    seeded permutation, shortfall of classes with too few candidates
    water-filled over the others (:func:`class_quotas`). Within a class:
    ``argmax_u sum_{a in anchors_c} ||z_u - z_a||``, the pick joins the anchors,
    repeat (:func:`alg1_select`). Classes without anchors start from the
    candidate farthest from all labelled points. Positions are returned
    class by class (class 0 first), each class in pick order.

    Interpretations (the study's text leaves these open): the quota split and its
    remainder/shortfall rules; the no-anchor fallback (farthest from all labelled
    points, or the least confident candidate when nothing is labelled); "sum of
    distances" is the Euclidean distance in M2's latent mean, summed, not averaged.
    """
    z = ctx.latent()  # (U, d)
    proba = ctx.proba()  # (U, C)
    pred = proba.argmax(dim=1)
    conf = proba.max(dim=1).values
    z_lab = ctx.labelled_latent()  # (L, d)
    ok = anchor_mask(ctx).to(z_lab.device)
    y_lab = ctx.y_labelled.to(z_lab.device)
    anchors = [z_lab[ok & (y_lab == c)] for c in range(ctx.num_classes)]
    n_per_class = torch.bincount(pred.cpu(), minlength=ctx.num_classes).numpy()
    quota = class_quotas(n_per_class, budget, ctx.rng(stream=_STREAM_ALG1_REMAINDER))
    pos, _ = alg1_select(z, pred, conf, z_lab, anchors, quota)
    return pos


# --------------------------------------------------------------------------------------------
# Algorithm 2


def alg2_scores(
    z: torch.Tensor,  # (U, d)
    proba: torch.Tensor,  # (U, C)
    anchors_per_class: list[torch.Tensor],  # C tensors (n_c, d)
) -> torch.Tensor:
    """(U,) Algorithm 2 scores ``(1 - max_k p(k|x_u)) * d_norm(u)``; higher = acquire first.

    ``d(u)`` = mean latent distance from ``u`` to the anchors of its predicted
    class; ``d_norm(u) = d(u) / max_v d(v)`` over the candidates whose predicted
    class has anchors (so ``d_norm`` is in [0, 1]). A candidate whose predicted
    class has no anchors gets ``d_norm = 1``: nothing confirms the model on that
    class, so it counts as maximally far. If every ``d`` is 0, ``d_norm = 1``.
    """
    pred = proba.argmax(dim=1).to(z.device)
    conf = proba.max(dim=1).values.to(z.device, dtype=z.dtype)
    d = torch.full((len(z),), float("nan"), dtype=z.dtype, device=z.device)
    for c, anchors in enumerate(anchors_per_class):
        members = pred == c
        if members.any() and len(anchors):
            d[members] = cdist_reduce(z[members], anchors, "mean")
    has_anchor = ~torch.isnan(d)
    d_norm = torch.ones_like(d)
    if has_anchor.any():
        d_max = d[has_anchor].max()
        if d_max > 0:
            d_norm[has_anchor] = d[has_anchor] / d_max
    return (1.0 - conf) * d_norm


@register("alg2", needs=("proba", "embed"))
def alg2(ctx: Context) -> np.ndarray:
    """Algorithm 2: low confidence weighted by latent distance, ``(1 - max p) * d / max d``.

    ``d(u)`` = mean latent distance to the correctly classified labelled points
    of ``u``'s predicted class, normalised by its maximum over the pool;
    predicted classes without such anchors get the maximum, 1 (:func:`alg2_scores`).

    Interpretations (the study's text leaves these open): "minimum prediction
    confidence, weighted by normalised distance" is read as the product
    ``(1 - confidence) * distance / max distance`` (a product, not a sum or a
    lexicographic order; max-normalised over the candidates); the no-anchor
    fallback ``d_norm = 1``; the "average sum of distances" is the mean distance.
    """
    z_lab = ctx.labelled_latent()
    ok = anchor_mask(ctx).to(z_lab.device)
    y_lab = ctx.y_labelled.to(z_lab.device)
    anchors = [z_lab[ok & (y_lab == c)] for c in range(ctx.num_classes)]
    return alg2_scores(ctx.latent(), ctx.proba(), anchors).cpu().numpy()


# --------------------------------------------------------------------------------------------
# core-set


def kcenter_greedy(z: torch.Tensor, z_labelled: torch.Tensor, budget: int, first: int | None = None) -> np.ndarray:
    """Greedy k-center (Sener & Savarese 2018, Alg. 1): repeatedly the candidate farthest
    from the labelled set plus the points picked so far.

    Keeps ``m(u) = min_{s in labelled + picked} ||z_u - z_s||`` (U,) and
    updates it with one distance column per pick. With no labelled points the
    first centre is ``first`` (the caller's seeded choice). Ties: first index.
    Returns (budget,) candidate positions in pick order.
    """
    m = min_distance(z, z_labelled)  # (U,), +inf when L = 0
    dist = _DistToRow(z)
    out: list[int] = []
    if len(z_labelled) == 0 and budget > 0:
        if first is None:
            raise ValueError("k-center greedy with no labelled points needs a first centre")
        out.append(first)
        m = dist(first)
        m[first] = float("-inf")
    with _greedy_threads(z.device):
        while len(out) < budget:
            i = int(m.argmax())
            out.append(i)
            torch.minimum(m, dist(i), out=m)  # a picked point stays at -inf
            m[i] = float("-inf")
    return np.asarray(out, dtype=np.int64)


@register("coreset", batch=True, needs=("embed",))
def coreset(ctx: Context, budget: int) -> np.ndarray:
    """Core-set (k-center greedy) in the latent space: farthest-first from the labelled set.

    With no labelled points the first centre is a seeded uniform draw.
    """
    z = ctx.latent()
    first = int(ctx.rng(stream=_STREAM_CORESET_FIRST).integers(len(z))) if len(z) else None
    return kcenter_greedy(z, ctx.labelled_latent(), budget, first=first)


__all__ = [
    "cdist_reduce", "min_distance", "anchor_mask", "class_quotas", "alg1_select", "alg2_scores",
    "kcenter_greedy", "alg1", "alg2", "coreset",
]
