"""Norm-based maximin (Karzand & Nowak 2019): the study's network weight norms, and a kernel stand-in.

Karzand & Nowak, "MaxiMin Active Learning in Overparameterized Model Classes",
arXiv 1905.12782. For binary labels their data-based criterion is::

    f^{u,y} = argmin ||f||  s.t.  f(x_l) = y_l for every labelled l,  f(u) = y
    score(u) = min_{y} ||f^{u,y}|| ;   query argmax_u score(u)

i.e. the point whose *easiest* label still forces the model to grow the most.
It picks points between differently labelled neighbours (the decision
boundary) and points far from all labels (unexplored clusters). The study's
slides ("Acquisition Function") state it on network weights::

    score1(u) = ||f^u||        score2(u) = ||f^u - f||

with ``f`` the current network and ``f^u`` the network after adding ``u``
(with a hypothetical label) to the labelled set, and dismiss it as "extremely
inefficient". This module has both that network version and a kernel model
in which the criterion is cheap.

``network_norm`` — the study's score, on the network's weights
------------------------------------------------------------------
For each candidate ``u`` and each label ``y`` in 0..C-1: copy the current
task network's trainable weights ``theta``, fine-tune the copy with ``steps``
plain SGD steps (learning rate ``lr``, no momentum, no weight decay), each on
``batch_size`` labelled points plus ``(u, y)`` (cross-entropy, mean over the
``batch_size + 1`` points), and measure::

    norm(u, y)      = ||theta^{u,y}||            (score1)
    deviation(u, y) = ||theta^{u,y} - theta||    (score2)

over all trainable parameters (``requires_grad``; BatchNorm running
statistics are buffers and are not counted). score(u) = ``min_y`` of the
chosen one (``which``). BatchNorm stays in eval mode while fine-tuning, so
running statistics neither drift nor depend on the batch, and dropout is off.
The labelled minibatches are drawn once per call (seeded by ``ctx.rng``) and
shared by every (u, y): candidates differ only by themselves, not by batch
noise. A short fine-tuning from ``theta`` is a local version of the paper's
refit (which interpolates from scratch); it is what "adding u to the labelled
set" costs the *current* network.

Cost: ``U * C * steps`` SGD steps on ``batch_size + 1`` images, i.e. about
``C * steps * (batch_size + 1)`` image forward-backward passes per candidate
(1,700 with the defaults). ``benchmarks/bench_norm.py`` measures it on real
Fashion-MNIST against the kernel versions below, on the same candidates: with
the small CNN on a 2-core CPU, 0.8-1.1 s per candidate, 700-800 times
``kernel_norm_exact`` and 1,000-1,300 times ``kernel_norm_approx``. It therefore
refuses more than ``max_pool`` candidates; set the run config's
``candidates:`` to score a seeded random subsample of the pool.

Two implementations of the same arithmetic, tested equal:
:func:`network_norm_scores` fine-tunes the C label hypotheses of ``chunk``
candidates as one batched computation (``torch.func.vmap`` of
``torch.func.grad`` over stacked weights, through
``torch.func.functional_call``); :func:`network_norm_scores_loop` is the
plain loop (``torch.optim.SGD`` on one copy of the network, its weights reset
to theta for every (u, y)). On a CPU one step of the small CNN already keeps
the cores busy and vmap's grouped convolutions are slower (one thread,
defaults: 1.54 vs 1.16 s per candidate, ``bench_norm.py --both-impls``), so
``batched=None`` (the default) takes the loop on CPU and the batched version
on CUDA, where a single 17-image step cannot fill the device (expected, not
timed here: no GPU was at hand).

``kernel_norm_exact`` / ``kernel_norm_approx`` — a kernel min-norm interpolator
-------------------------------------------------------------------------------
Not the network: the model class is an RKHS on the learner's latent codes
(``ctx.latent()``), which makes the criterion computable exactly:

- kernel ``k(a, b) = exp(-||a - b||^2 / (2 h^2))`` on latent codes; ``h``
  is ``NormParams.bandwidth`` or, if None, the median pairwise distance of
  (up to 1000, seeded) labelled codes.
- multi-class labels: one-vs-rest ``+-1`` targets ``t_y = 2 e_y - 1`` (C,),
  one function per class, ``||F||^2 = sum_c ||f_c||^2``. For C = 2 this is
  twice the paper's binary norm, so the picks are the paper's.
- ``K`` gets a ridge ``lambda * I`` (``NormParams.ridge``, default 1e-6)
  so the interpolation solves are stable; with lambda -> 0 it interpolates
  exactly. Computations are float64.

``kernel_norm_exact``: for each candidate ``u`` and each label ``y``, solve the
bordered (L+1) system for the interpolant of ``labelled + (u, y)`` and take
``||F||^2 = tr(T'^T (K' + lambda I)^{-1} T')``; score = ``min_y sqrt(||F||^2)``.
One Cholesky per candidate (shared by the C labels, each label its own
solve): O(U L^3). Refuses more than ``max_pool`` candidates.

``kernel_norm_approx``: the same quantity in closed form for all candidates at
once. Adding one point borders the kernel matrix, and the block inverse gives::

    ||F^{u,y}||^2 = ||F_L||^2 + ||t_y - F_L(u)||^2 / s(u)
    F_L(u) = k_u^T (K + lambda I)^{-1} T_L             (C,) current interpolant at u
    s(u)   = k(u,u) + lambda - k_u^T (K + lambda I)^{-1} k_u     (posterior variance)

and ``min_y ||t_y - F_L(u)||^2`` is reached at ``y = argmax_c F_L(u)_c``.
One Cholesky of K (O(L^3)) and O(U L^2) for the pool, in candidate blocks.
For this kernel model it equals ``kernel_norm_exact`` up to rounding; both
stand in for the network version (the kernel on the network's own latent
features in place of the network's function space). :func:`compare_norm`
measures the agreement of the two kernel versions and their times.

Batches: all three register as score strategies, so a batch is the ``budget``
highest scores (the paper queries one point at a time).
"""
from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from .base import Context, register, select

_STREAM_BANDWIDTH = 14
_STREAM_COMPARE = 15
_STREAM_NETWORK = 16


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
    max_pool: int = 2000  # kernel_norm_exact refuses more candidates than this (O(U L^3))


@dataclass
class NetworkNormParams:
    steps: int = 10  # plain SGD steps of each fine-tuning (one per candidate and hypothetical label)
    lr: float = 0.05  # SGD learning rate (no momentum, no weight decay)
    batch_size: int = 16  # labelled points per step, mixed with the one (u, y)
    which: str = "deviation"  # "deviation": min_y ||theta^{u,y} - theta|| (score2); "norm": min_y ||theta^{u,y}||
    max_pool: int = 64  # refuse more candidates than this (U * C fine-tunings); subsample with the run's `candidates:`
    batched: bool | None = None  # vmap the label hypotheses (True) or loop over (u, y) (False); None: batched on CUDA
    chunk: int = 1  # batched only: candidates fine-tuned together (chunk * C weight copies and activations in memory)

    def __post_init__(self):
        for name in ("steps", "batch_size", "max_pool", "chunk"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.which not in ("deviation", "norm"):
            raise ValueError(f"which must be 'deviation' or 'norm', got {self.which!r}")


class PoolTooLargeError(ValueError):
    """kernel_norm_exact or network_norm asked to score a pool it would take hours on."""


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
# the two kernel scorers


def kernel_norm_exact_scores(
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
            f"kernel_norm_exact refits one interpolant per candidate and label (O(U L^3)); {len(z)} candidates "
            f"exceed max_pool={max_pool}. Use kernel_norm_approx on the full pool, or raise max_pool."
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


def kernel_norm_approx_scores(
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


@register("kernel_norm_exact", params=NormExactParams, needs=("embed",))
def kernel_norm_exact(ctx: Context) -> np.ndarray:
    """Kernel stand-in for the norm maximin, exact: refit an RBF min-norm interpolant per candidate and label.

    Karzand & Nowak (2019) on a kernel model, not the study's network weight
    norm (that is ``network_norm``): score(u) = min_y ||F^{u,y}||_H of an
    RBF-kernel interpolant over the learner's latent codes, one-vs-rest +-1
    targets; O(U L^3), small pools only (``max_pool``, default 2000).
    """
    z, z_lab, y_lab, h, ridge = _inputs(ctx)
    max_pool = ctx.params.max_pool if ctx.params is not None else NormExactParams().max_pool
    return kernel_norm_exact_scores(z, z_lab, y_lab, ctx.num_classes, h, ridge, max_pool).cpu().numpy()


@register("kernel_norm_approx", params=NormParams, needs=("embed",))
def kernel_norm_approx(ctx: Context) -> np.ndarray:
    """Kernel stand-in for the norm maximin, closed form ||F_L||^2 + min_y ||t_y - F_L(u)||^2 / s(u), full pool.

    Same kernel model and scores as ``kernel_norm_exact`` (not the study's
    network weight norm, ``network_norm``); one Cholesky of the labelled
    kernel and O(U L^2) work in candidate blocks.
    """
    z, z_lab, y_lab, h, ridge = _inputs(ctx)
    return kernel_norm_approx_scores(z, z_lab, y_lab, ctx.num_classes, h, ridge).cpu().numpy()


# --------------------------------------------------------------------------------------------
# the network version: fine-tune per candidate and hypothetical label, measure the weights


@dataclass
class NetworkNorms:
    """Weight norms after fine-tuning, one row per candidate and one column per hypothetical label."""

    norm: torch.Tensor  # (U, C) float64 ||theta^{u,y}||, score1
    deviation: torch.Tensor  # (U, C) float64 ||theta^{u,y} - theta||, score2
    base_norm: float  # ||theta|| of the current network


def _check_network_pool(n: int, max_pool: int, num_classes: int, steps: int) -> None:
    if n > max_pool:
        raise PoolTooLargeError(
            f"network_norm fine-tunes the network once per candidate and label ({n} x {num_classes} x {steps} "
            f"SGD steps); {n} candidates exceed max_pool={max_pool}. Set the run's `candidates:` to score a "
            f"random subsample (e.g. candidates: {max_pool}), use kernel_norm_approx, or raise max_pool."
        )


def labelled_batches(n_labelled: int, batch_size: int, steps: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``steps`` index arrays of ``min(batch_size, n_labelled)`` distinct labelled positions each (seeded)."""
    b = min(batch_size, n_labelled)
    return [np.sort(rng.choice(n_labelled, size=b, replace=False)) for _ in range(steps)]


@contextlib.contextmanager
def _eval_mode(net: torch.nn.Module):
    """BatchNorm on running statistics, dropout off; every module's own mode restored afterwards."""
    modes = [(m, m.training) for m in net.modules()]
    net.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.train(mode)


def _prepare(net, x, x_labelled, y_labelled, num_classes, rng, *, steps, batch_size, max_pool):
    """Shared set-up of both implementations: the pool check, inputs on the network's device and dtype,
    the current trainable weights theta (detached, not copied: neither implementation writes to ``net``)
    and the ``steps`` labelled minibatches (one ``rng`` draw, shared by every (u, y))."""
    _check_network_pool(len(x), max_pool, num_classes, steps)
    x, x_lab, y_lab = _inputs_on_device(net, x, x_labelled, y_labelled, num_classes)
    theta = {k: v.detach() for k, v in net.named_parameters() if v.requires_grad}
    batches = [torch.as_tensor(b, device=x.device) for b in labelled_batches(len(x_lab), batch_size, steps, rng)]
    return x, x_lab, y_lab, theta, batches


def _result(norm: torch.Tensor, deviation: torch.Tensor, theta: dict[str, torch.Tensor]) -> "NetworkNorms":
    base = float(sum(v.double().square().sum() for v in theta.values()).sqrt())
    return NetworkNorms(norm, deviation, base)


def _inputs_on_device(net, x, x_labelled, y_labelled, num_classes):
    first = next((p for p in net.parameters() if p.requires_grad), None)
    if first is None:
        raise ValueError("network_norm: the task network has no trainable parameters")
    dev, dtype = first.device, first.dtype
    x, x_lab = x.to(dev, dtype), x_labelled.to(dev, dtype)
    y_lab = y_labelled.to(dev).long()
    with torch.no_grad(), _eval_mode(net):
        out = net(x[:1] if len(x) else x_lab[:1])
    if out.ndim != 2 or out.shape[1] != num_classes:
        raise ValueError(
            f"network_norm: the task network returns {tuple(out.shape)}, expected (B, {num_classes}) logits"
        )
    return x, x_lab, y_lab


def _squared_norms(p: dict[str, torch.Tensor], theta: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) ||p||^2 and ||p - theta||^2 in float64 for weights stacked along dim 0 (N, ...)."""
    sq = sum(v.double().flatten(1).square().sum(1) for v in p.values())
    dev = sum((p[k].double() - theta[k].double()).flatten(1).square().sum(1) for k in p)
    return sq, dev


def network_norm_scores(
    net: torch.nn.Module,  # (B, 1, 28, 28) -> (B, C) logits; left unchanged
    x: torch.Tensor,  # (U, 1, 28, 28) candidates
    x_labelled: torch.Tensor,  # (L, 1, 28, 28)
    y_labelled: torch.Tensor,  # (L,)
    num_classes: int,
    rng: np.random.Generator,
    *,
    steps: int = 10,
    lr: float = 0.05,
    batch_size: int = 16,
    max_pool: int = 64,
    chunk: int = 1,
) -> NetworkNorms:
    """Fine-tune a copy of ``net``'s weights for every candidate and label; return the weight norms (see module doc).

    ``chunk`` candidates times C labels are fine-tuned together: their weights
    are stacked along a new leading dim (chunk * C, ...) and one SGD step of
    all copies is ``vmap(grad(loss))`` over ``functional_call(net, ...)``, the
    labelled minibatch shared. Step ``t`` of every copy uses the same labelled
    minibatch (drawn from ``rng`` up front). Memory: chunk * C copies of the
    weights and their activations on ``batch_size + 1`` images.
    """
    x, x_lab, y_lab, theta, batches = _prepare(
        net, x, x_labelled, y_labelled, num_classes, rng, steps=steps, batch_size=batch_size, max_pool=max_pool
    )
    fixed = {k: v.detach() for k, v in net.named_parameters() if not v.requires_grad}
    fixed.update(dict(net.named_buffers()))
    labels = torch.arange(num_classes, device=x.device)

    def loss(p, xu, yu, xb, yb):  # one copy: p its weights, (xu, yu) its candidate and label, (xb, yb) shared batch
        logits = functional_call(net, (p, fixed), (torch.cat([xb, xu[None]]),))  # (b + 1, C)
        return F.cross_entropy(logits, torch.cat([yb, yu[None]]))  # mean over the b + 1 points

    step_grads = vmap(grad(loss), in_dims=(0, 0, 0, None, None))
    n = len(x)
    norm = torch.empty(n, num_classes, dtype=torch.float64)
    deviation = torch.empty(n, num_classes, dtype=torch.float64)
    with _eval_mode(net):
        for i in range(0, n, chunk):
            k = min(chunk, n - i)
            xu = x[i : i + k].repeat_interleave(num_classes, dim=0)  # (k*C, 1, 28, 28): row j*C + y = (u_j, y)
            yu = labels.repeat(k)  # (k*C,)
            p = {name: v.expand(k * num_classes, *v.shape).clone() for name, v in theta.items()}  # (k*C, ...)
            for idx in batches:
                g = step_grads(p, xu, yu, x_lab[idx], y_lab[idx])
                p = {name: p[name] - lr * g[name] for name in p}
            sq, dev = _squared_norms(p, theta)  # (k*C,)
            norm[i : i + k] = sq.sqrt().view(k, num_classes).cpu()
            deviation[i : i + k] = dev.sqrt().view(k, num_classes).cpu()
    return _result(norm, deviation, theta)


def network_norm_scores_loop(
    net: torch.nn.Module,
    x: torch.Tensor,
    x_labelled: torch.Tensor,
    y_labelled: torch.Tensor,
    num_classes: int,
    rng: np.random.Generator,
    *,
    steps: int = 10,
    lr: float = 0.05,
    batch_size: int = 16,
    max_pool: int = 64,
) -> NetworkNorms:
    """:func:`network_norm_scores` done plainly: per (u, y), ``torch.optim.SGD`` on a copy of ``net`` reset to theta.

    Same ``rng`` draws and the same arithmetic as the batched version (tested
    equal); faster than it on CPU, slower where one small step cannot fill the
    device (CUDA).
    """
    x, x_lab, y_lab, theta, batches = _prepare(
        net, x, x_labelled, y_labelled, num_classes, rng, steps=steps, batch_size=batch_size, max_pool=max_pool
    )
    norm = torch.empty(len(x), num_classes, dtype=torch.float64)
    deviation = torch.empty(len(x), num_classes, dtype=torch.float64)
    tuned = copy.deepcopy(net).eval()  # one working copy, its weights reset to theta for every (u, y)
    trainable = {k: v for k, v in tuned.named_parameters() if v.requires_grad}
    opt = torch.optim.SGD(trainable.values(), lr=lr)  # no momentum: no state carried between (u, y)
    for i in range(len(x)):
        for y in range(num_classes):
            with torch.no_grad():
                for k, v in trainable.items():
                    v.copy_(theta[k])
            target = torch.tensor([y], device=x.device)
            for idx in batches:
                loss = F.cross_entropy(tuned(torch.cat([x_lab[idx], x[i : i + 1]])), torch.cat([y_lab[idx], target]))
                opt.zero_grad()
                loss.backward()
                opt.step()
            with torch.no_grad():
                sq, dev = _squared_norms({k: v[None] for k, v in trainable.items()}, theta)
            norm[i, y], deviation[i, y] = float(sq.sqrt()), float(dev.sqrt())
    return _result(norm, deviation, theta)


@register("network_norm", params=NetworkNormParams, needs=("network",))
def network_norm(ctx: Context) -> np.ndarray:
    """The study's weight-norm score (Karzand & Nowak 2019): fine-tune the network per candidate and hypothetical label.

    For each candidate u and hypothetical label y: copy the task network's
    weights theta, take ``steps`` SGD steps on ``batch_size`` labelled points
    plus (u, y), and score u by min_y ||theta^{u,y} - theta|| (``which=
    "deviation"``, score2, default) or min_y ||theta^{u,y}|| (``"norm"``,
    score1). Costs U * C * steps SGD steps: about 1,700 image forward-backward
    passes per candidate with the defaults, 0.8-1.1 s per candidate for the
    small CNN on a 2-core CPU, 700-800 times ``kernel_norm_exact`` and
    1,000-1,300 times ``kernel_norm_approx`` (``benchmarks/bench_norm.py``, 32
    candidates, 100 labelled). Meant for small candidate sets: it refuses more than
    ``max_pool`` (default 64) candidates; set the run config's
    ``candidates:`` to subsample the pool.
    """
    p = ctx.params if ctx.params is not None else NetworkNormParams()
    net = ctx.learner.task_network()
    batched = p.batched
    if batched is None:
        batched = any(t.is_cuda for t in net.parameters())
    args = (net, ctx.x_unlabelled, ctx.x_labelled, ctx.y_labelled, ctx.num_classes, ctx.rng(stream=_STREAM_NETWORK))
    kw = dict(steps=p.steps, lr=p.lr, batch_size=p.batch_size, max_pool=p.max_pool)
    r = network_norm_scores(*args, chunk=p.chunk, **kw) if batched else network_norm_scores_loop(*args, **kw)
    return getattr(r, p.which).min(dim=1).values.numpy()


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
    """Run kernel_norm_exact and kernel_norm_approx on the same (small) pool and report agreement and time.

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
    exact = kernel_norm_exact_scores(
        z, z_lab, ctx.y_labelled, ctx.num_classes, h, params.ridge, max_pool=max(params.max_pool, len(z))
    )
    t1 = time.perf_counter()
    approx = kernel_norm_approx_scores(z, z_lab, ctx.y_labelled, ctx.num_classes, h, params.ridge)
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
    "NormParams", "NormExactParams", "NetworkNormParams", "NetworkNorms", "PoolTooLargeError", "rbf_kernel",
    "median_bandwidth", "ovr_targets", "kernel_norm_exact_scores", "kernel_norm_approx_scores", "kernel_norm_exact",
    "kernel_norm_approx", "labelled_batches", "network_norm_scores", "network_norm_scores_loop", "network_norm",
    "compare_norm", "spearman",
]
