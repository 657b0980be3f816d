"""Norm-based maximin (Karzand & Nowak 2019) with a kernel min-norm interpolator on the latent space.

Karzand & Nowak, "MaxiMin Active Learning in Overparameterized Model Classes",
arXiv 1905.12782. For binary labels their data-based criterion is::

    f^{u,y} = argmin ||f||_H  s.t.  f(x_l) = y_l for every labelled l,  f(u) = y
    score(u) = min_{y in {-1, +1}} ||f^{u,y}||_H ;   query argmax_u score(u)

i.e. the point whose *easiest* label still forces the interpolant to grow
the most. It picks points between differently labelled neighbours (the
decision boundary) and points far from all labels (unexplored clusters).

What alkit implements
---------------------
The study's exact version retrained the network per candidate and label and
was too slow. Here the model class is an RKHS on the learner's latent codes
(``ctx.latent()``), which makes the criterion computable:

- kernel ``k(a, b) = exp(-||a - b||^2 / (2 h^2))`` on latent codes; ``h``
  is ``NormParams.bandwidth`` or, if None, the median pairwise distance of
  (up to 1000, seeded) labelled codes.
- multi-class labels: one-vs-rest ``+-1`` targets ``t_y = 2 e_y - 1`` (C,),
  one function per class, ``||F||^2 = sum_c ||f_c||^2``. For C = 2 this is
  twice the paper's binary norm, so the picks are the paper's.
- ``K`` gets a ridge ``lambda * I`` (``NormParams.ridge``, default 1e-6)
  so the interpolation solves are stable; with lambda -> 0 it interpolates
  exactly. Computations are float64.

``norm_exact``: for each candidate ``u`` and each label ``y``, solve the
bordered (L+1) system for the interpolant of ``labelled + (u, y)`` and take
``||F||^2 = tr(T'^T (K' + lambda I)^{-1} T')``; score = ``min_y sqrt(||F||^2)``.
One Cholesky per candidate (shared by the C labels, each label its own
solve): O(U L^3). Refuses more than ``max_pool`` candidates.

``norm_approx``: the same quantity in closed form for all candidates at
once. Adding one point borders the kernel matrix, and the block inverse gives::

    ||F^{u,y}||^2 = ||F_L||^2 + ||t_y - F_L(u)||^2 / s(u)
    F_L(u) = k_u^T (K + lambda I)^{-1} T_L             (C,) current interpolant at u
    s(u)   = k(u,u) + lambda - k_u^T (K + lambda I)^{-1} k_u     (posterior variance)

and ``min_y ||t_y - F_L(u)||^2`` is reached at ``y = argmax_c F_L(u)_c``.
One Cholesky of K (O(L^3)) and O(U L^2) for the pool, in candidate blocks.
For this kernel model it equals ``norm_exact`` up to rounding; what both
approximate is the study's network retraining (the kernel on the network's
own latent features stands in for the network's function space).
:func:`compare_norm` measures the agreement and the times.

Batches: both register as score strategies, so a batch is the ``budget``
highest scores (the paper queries one point at a time).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from .base import Context, register, select

_STREAM_BANDWIDTH = 14
_STREAM_COMPARE = 15


@dataclass
class NormParams:
    bandwidth: float | None = None  # RBF width h on latent codes; None = median labelled pairwise distance
    ridge: float = 1e-6  # lambda added to the kernel diagonal (k(u,u) = 1)

    def __post_init__(self):
        if self.bandwidth is not None and self.bandwidth <= 0:
            raise ValueError(f"bandwidth must be > 0, got {self.bandwidth}")
        if self.ridge < 0:
            raise ValueError(f"ridge must be >= 0, got {self.ridge}")


@dataclass
class NormExactParams(NormParams):
    max_pool: int = 2000  # norm_exact refuses more candidates than this (O(U L^3))


class PoolTooLargeError(ValueError):
    """norm_exact asked to score a pool it would take hours on."""


# --------------------------------------------------------------------------------------------
# kernel pieces


def rbf_kernel(a: torch.Tensor, b: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """(N, M) ``exp(-||a_i - b_j||^2 / (2 h^2))`` in float64."""
    a, b = a.double(), b.double().to(a.device)
    d2 = torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist").square()
    return torch.exp(-d2 / (2.0 * bandwidth**2))


def median_bandwidth(z: torch.Tensor, rng: np.random.Generator, max_points: int = 1000) -> float:
    """Median pairwise Euclidean distance among (a seeded subsample of) rows of ``z``; 1.0 if undefined."""
    if len(z) > max_points:
        z = z[torch.as_tensor(rng.choice(len(z), max_points, replace=False), device=z.device)]
    if len(z) < 2:
        return 1.0
    d = torch.pdist(z.double())
    h = float(d.median()) if d.numel() else 0.0
    return h if h > 0 else 1.0


def ovr_targets(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N,) labels -> (N, C) one-vs-rest targets in {-1, +1}, float64."""
    return 2.0 * torch.nn.functional.one_hot(y.long(), num_classes).double() - 1.0


def _bandwidth(params: NormParams | None, z_labelled: torch.Tensor, z: torch.Tensor, rng) -> float:
    if params is not None and params.bandwidth is not None:
        return float(params.bandwidth)
    return median_bandwidth(z_labelled if len(z_labelled) >= 2 else z, rng)


# --------------------------------------------------------------------------------------------
# the two scorers


def norm_exact_scores(
    z: torch.Tensor,  # (U, d) candidates
    z_labelled: torch.Tensor,  # (L, d)
    y_labelled: torch.Tensor,  # (L,)
    num_classes: int,
    bandwidth: float,
    ridge: float = 1e-6,
    max_pool: int = 2000,
) -> torch.Tensor:
    """(U,) ``min_y ||F^{u,y}||`` by refitting the interpolant for every candidate and label.

    For candidate ``u``: ``K' = k([X_L; u], [X_L; u]) + ridge * I`` (L+1, L+1),
    one Cholesky; for each label ``y`` the interpolant's coefficients solve
    ``K' A_y = [T_L; t_y]`` and ``||F||^2 = sum(T'_y * A_y)``. No shortcut is
    taken beyond sharing the factorisation across the C label hypotheses.
    """
    if len(z) > max_pool:
        raise PoolTooLargeError(
            f"norm_exact refits one interpolant per candidate and label (O(U L^3)); {len(z)} candidates "
            f"exceed max_pool={max_pool}. Use norm_approx on the full pool, or raise max_pool."
        )
    dev = z.device
    t_lab = ovr_targets(y_labelled.to(dev), num_classes)  # (L, C)
    t_all = ovr_targets(torch.arange(num_classes, device=dev), num_classes)  # (C labels, C outputs)
    k_ll = rbf_kernel(z_labelled, z_labelled, bandwidth)  # (L, L)
    k_ul = rbf_kernel(z, z_labelled, bandwidth)  # (U, L)
    n_lab = len(z_labelled)
    eye = torch.eye(n_lab + 1, dtype=torch.float64, device=dev)
    out = torch.empty(len(z), dtype=torch.float64, device=dev)
    for i in range(len(z)):
        kp = torch.empty(n_lab + 1, n_lab + 1, dtype=torch.float64, device=dev)
        kp[:n_lab, :n_lab] = k_ll
        kp[:n_lab, n_lab] = k_ul[i]
        kp[n_lab, :n_lab] = k_ul[i]
        kp[n_lab, n_lab] = 1.0  # k(u, u) for the RBF kernel
        chol = torch.linalg.cholesky(kp + ridge * eye)
        # (L+1, C labels * C outputs): column block y holds the targets [T_L; t_y]
        rhs = torch.cat([t_lab.repeat(1, num_classes), t_all.reshape(1, -1)], dim=0)
        coef = torch.cholesky_solve(rhs, chol)
        sq = (rhs * coef).sum(dim=0).reshape(num_classes, num_classes).sum(dim=1)  # (C labels,)
        out[i] = sq.min().clamp_min(0).sqrt()
    return out


def norm_approx_scores(
    z: torch.Tensor,
    z_labelled: torch.Tensor,
    y_labelled: torch.Tensor,
    num_classes: int,
    bandwidth: float,
    ridge: float = 1e-6,
    block: int = 4096,
) -> torch.Tensor:
    """(U,) the same ``min_y ||F^{u,y}||`` from the bordered-inverse closed form (see module doc).

    ``||F^{u,y}||^2 = ||F_L||^2 + min_y ||t_y - F_L(u)||^2 / s(u)``; ``s`` is
    clamped below at ``ridge`` (its exact lower bound) against rounding.
    Candidates are processed in blocks of ``block`` rows: memory O(block * L).
    """
    dev = z.device
    t_lab = ovr_targets(y_labelled.to(dev), num_classes)  # (L, C)
    t_all = ovr_targets(torch.arange(num_classes, device=dev), num_classes)  # (C, C)
    n_lab = len(z_labelled)
    if n_lab:
        chol = torch.linalg.cholesky(
            rbf_kernel(z_labelled, z_labelled, bandwidth) + ridge * torch.eye(n_lab, dtype=torch.float64, device=dev)
        )
        alpha = torch.cholesky_solve(t_lab, chol)  # (L, C)
        base = float((t_lab * alpha).sum())  # ||F_L||^2
    else:
        base = 0.0
    out = torch.empty(len(z), dtype=torch.float64, device=dev)
    for i in range(0, len(z), block):
        zb = z[i : i + block]
        if n_lab:
            k = rbf_kernel(zb, z_labelled, bandwidth)  # (b, L)
            f = k @ alpha  # (b, C)
            v = torch.linalg.solve_triangular(chol, k.T, upper=False)  # (L, b)
            s = 1.0 + ridge - v.square().sum(dim=0)  # (b,)
        else:
            f = torch.zeros(len(zb), num_classes, dtype=torch.float64, device=dev)
            s = torch.full((len(zb),), 1.0 + ridge, dtype=torch.float64, device=dev)
        s = s.clamp_min(max(ridge, 1e-300))
        resid = torch.cdist(f, t_all, compute_mode="donot_use_mm_for_euclid_dist").square().min(dim=1).values  # (b,)
        out[i : i + block] = (base + resid / s).clamp_min(0).sqrt()
    return out


# --------------------------------------------------------------------------------------------
# strategies


def _inputs(ctx: Context):
    z = ctx.latent()
    z_lab = ctx.labelled_latent().to(z.device)
    p = ctx.params
    h = _bandwidth(p, z_lab, z, ctx.rng(stream=_STREAM_BANDWIDTH))
    return z, z_lab, ctx.y_labelled, h, (p.ridge if p is not None else NormParams().ridge)


@register("norm_exact", params=NormExactParams, needs=("embed",))
def norm_exact(ctx: Context) -> np.ndarray:
    """Norm maximin (Karzand & Nowak 2019), exact: refit a kernel min-norm interpolant per candidate and label.

    score(u) = min_y ||F^{u,y}||_H on an RBF kernel over latent codes,
    one-vs-rest +-1 targets; small pools only (``max_pool``, default 2000).
    """
    z, z_lab, y_lab, h, ridge = _inputs(ctx)
    max_pool = ctx.params.max_pool if ctx.params is not None else NormExactParams().max_pool
    return norm_exact_scores(z, z_lab, y_lab, ctx.num_classes, h, ridge, max_pool).cpu().numpy()


@register("norm_approx", params=NormParams, needs=("embed",))
def norm_approx(ctx: Context) -> np.ndarray:
    """Norm maximin (Karzand & Nowak 2019), closed form: ||F_L||^2 + min_y ||t_y - F_L(u)||^2 / s(u), for the full pool.

    Same kernel model as ``norm_exact``; one Cholesky of the labelled kernel
    and O(U L^2) work in candidate blocks.
    """
    z, z_lab, y_lab, h, ridge = _inputs(ctx)
    return norm_approx_scores(z, z_lab, y_lab, ctx.num_classes, h, ridge).cpu().numpy()


def _average_ranks(a: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1, tied values sharing their mean rank."""
    order = np.argsort(a, kind="stable")
    ranks = np.empty(a.size, dtype=np.float64)
    ranks[order] = np.arange(a.size, dtype=np.float64)
    _, inverse, counts = np.unique(a, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (Pearson on average ranks); NaN if either side is constant."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(np.corrcoef(_average_ranks(a), _average_ranks(b))[0, 1])


def compare_norm(ctx: Context, budget: int, pool_size: int | None = 500, params: NormExactParams | None = None) -> dict:
    """Run norm_exact and norm_approx on the same (small) pool and report agreement and time.

    ``pool_size`` candidates are drawn uniformly (seeded by ``ctx.seed``) from
    ``ctx``'s candidates (all of them if None or fewer). Both see the same
    bandwidth. Returns a JSON-able dict: ``n_candidates``, ``n_labelled``,
    ``budget``, ``bandwidth``, ``spearman`` (rank correlation of the two score
    vectors), ``top_overlap`` (|picks_exact & picks_approx| / budget, picks by the
    shared ``select``), ``max_rel_diff`` (max |exact - approx| / max exact),
    ``seconds_exact``, ``seconds_approx``, ``speedup``. The latent codes are
    computed before the clocks start.
    """
    params = params or NormExactParams()
    z_all = ctx.latent()
    z_lab = ctx.labelled_latent().to(z_all.device)
    rng = ctx.rng(stream=_STREAM_COMPARE)
    if pool_size is not None and pool_size < len(z_all):
        keep = np.sort(rng.choice(len(z_all), pool_size, replace=False))
        z = z_all[torch.as_tensor(keep, device=z_all.device)]
    else:
        z = z_all
    if budget > len(z):
        raise ValueError(f"budget {budget} exceeds the {len(z)} compared candidates")
    h = _bandwidth(params, z_lab, z, ctx.rng(stream=_STREAM_BANDWIDTH))
    t0 = time.perf_counter()
    exact = norm_exact_scores(
        z, z_lab, ctx.y_labelled, ctx.num_classes, h, params.ridge, max_pool=max(params.max_pool, len(z))
    )
    t1 = time.perf_counter()
    approx = norm_approx_scores(z, z_lab, ctx.y_labelled, ctx.num_classes, h, params.ridge)
    t2 = time.perf_counter()
    exact, approx = exact.cpu().numpy(), approx.cpu().numpy()
    pick_e = select(exact, budget, ctx.rng(stream=1))
    pick_a = select(approx, budget, ctx.rng(stream=1))
    scale = float(np.abs(exact).max()) or 1.0
    return {
        "n_candidates": int(len(z)),
        "n_labelled": int(len(z_lab)),
        "budget": int(budget),
        "bandwidth": float(h),
        "spearman": spearman(exact, approx),
        "top_overlap": float(np.intersect1d(pick_e, pick_a).size / budget) if budget else float("nan"),
        "max_rel_diff": float(np.abs(exact - approx).max() / scale) if len(z) else 0.0,
        "seconds_exact": t1 - t0,
        "seconds_approx": t2 - t1,
        "speedup": (t1 - t0) / max(t2 - t1, 1e-12),
    }


__all__ = [
    "NormParams", "NormExactParams", "PoolTooLargeError", "rbf_kernel", "median_bandwidth", "ovr_targets",
    "norm_exact_scores", "norm_approx_scores", "norm_exact", "norm_approx", "compare_norm", "spearman",
]
