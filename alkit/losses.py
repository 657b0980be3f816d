"""Losses of VAAL, M2 and TA-VAAL as plain functions with explicit reductions.

Convention: every *per-image* quantity is a sum over its own dimensions
(reconstruction: sum over the 784 pixels; KL: sum over the d latent dims),
and a batch is reduced by the MEAN over images. Reconstruction and KL are
therefore on the same per-image scale (nats per image), and beta keeps its
meaning from the beta-VAE paper. (VAAL's code averages the squared error over
pixels *and* images but sums the KL over latents *and* images, which weights
the KL ~784 x batch times more than intended; we do not copy that by default.
:func:`vaal_vae_loss` is VAAL's own form, the ``vae_loss: vaal`` option of the
``vaal`` / ``tavaal`` learners, so the adversarial term can get VAAL's relative weight.)

Losses are things to *minimise*: an ELBO appears with a minus sign
(``*_loss`` = negative bound).

References: Sinha et al. 2019 (VAAL, https://arxiv.org/abs/1904.00370);
Kingma et al. 2014 (M2, https://arxiv.org/abs/1406.5298); Yoo & Kweon 2019
(loss prediction, https://arxiv.org/abs/1905.03677); Kim et al. 2021
(TA-VAAL, https://arxiv.org/abs/2002.04709).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .models import M2, reparameterize

LIKELIHOODS = ("bernoulli", "gaussian")
#: the VAE objective of VAAL / TA-VAAL: alkit's per-image beta-ELBO, or VAAL's code's reductions
VAE_LOSSES = ("elbo", "vaal")


def _reduce(per_item: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_item.mean()
    if reduction == "none":
        return per_item
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag exp(logvar)) || N(0, I)), summed over the last (latent) dim.

    ``mu``, ``logvar`` (..., d) -> (...,) nats. Closed form
    ``0.5 * sum(exp(logvar) + mu^2 - 1 - logvar)``.
    """
    return 0.5 * (logvar.exp() + mu.pow(2) - 1.0 - logvar).sum(-1)


def reconstruction_nll(
    logits: torch.Tensor, x: torch.Tensor, likelihood: str = "bernoulli", sigma: float = 0.1
) -> torch.Tensor:
    """-log p(x | decoder output), summed over pixels: (..., 1, 28, 28) -> (...,) nats.

    ``logits`` are the decoder's raw outputs. ``"bernoulli"``: each pixel
    intensity in [0, 1] is the success probability target of a Bernoulli with
    ``sigmoid(logits)`` (binary cross-entropy with logits; for non-binary x this
    is the usual "continuous" use of the Bernoulli likelihood, not a normalised
    density). ``"gaussian"``: N(x; sigmoid(logits), sigma^2) with fixed ``sigma``,
    including the ``log(sigma * sqrt(2 pi))`` constant.
    """
    if likelihood == "bernoulli":
        nll = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    elif likelihood == "gaussian":
        nll = 0.5 * ((x - torch.sigmoid(logits)) / sigma).pow(2) + math.log(sigma * math.sqrt(2 * math.pi))
    else:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
    return nll.flatten(-3).sum(-1)


def beta_elbo_loss(
    x: torch.Tensor,
    logits: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    beta: float = 1.0,
    likelihood: str = "bernoulli",
    reduction: str = "mean",
) -> torch.Tensor:
    """Negative beta-ELBO: reconstruction NLL (sum over pixels) + beta * KL (sum over latent dims).

    x, logits (B, 1, 28, 28); mu, logvar (B, d). ``reduction="mean"``: mean over
    the batch (a scalar in nats per image); ``"none"``: (B,).
    """
    per_image = reconstruction_nll(logits, x, likelihood) + beta * gaussian_kl(mu, logvar)
    return _reduce(per_image, reduction)


def vaal_vae_loss(x: torch.Tensor, logits: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                  beta: float = 1.0) -> torch.Tensor:
    """VAAL's VAE loss as its solver computes it (github.com/sinhasam/vaal, ``Solver.vae_loss``), for one batch.

    ``MSE(recon, x)`` averaged over pixels *and* images (``nn.MSELoss()``'s mean) + ``beta`` * KL summed over
    latent dims *and* images. x, logits (B, 1, 28, 28); mu, logvar (B, d) -> scalar. alkit's decoder gives
    logits, so ``recon = sigmoid(logits)`` (images in [0, 1]). VAAL adds this for the labelled and for the
    unlabelled batch, each with its own reductions.
    """
    return F.mse_loss(torch.sigmoid(logits), x) + beta * gaussian_kl(mu, logvar).sum()


# ---------------------------------------------------------------------------------------------
# M2 (Kingma et al. 2014)
# ---------------------------------------------------------------------------------------------


def m2_labelled_loss(
    model: M2,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    beta: float = 1.0,
    likelihood: str = "bernoulli",
    sample: bool = True,
    h: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """L(x, y) = -[E_q(z|x,y) log p(x|y,z) + log p(y) - beta KL(q(z|x,y) || p(z))], Kingma's eq. (6) negated.

    x (B, 1, 28, 28); y (B, C) one-hot (float) or (B,) int class indices.
    One reparameterised sample of z (``sample=False`` uses z = mu: deterministic,
    for tests). p(y) is uniform, so ``-log p(y) = log C``. ``h`` may pass
    precomputed trunk features ``model.trunk(x)`` (B, F).
    Reductions: pixels and latent dims summed per image; ``"mean"`` over the batch.
    """
    if y.dim() == 1:
        y = F.one_hot(y, model.num_classes).to(x.dtype)  # (B, C)
    if h is None:
        h = model.trunk(x)  # (B, F)
    mu, logvar = model.encode_h(h, y)  # (B, d)
    z = reparameterize(mu, logvar) if sample else mu
    logits = model.decode(z, y)  # (B, 1, 28, 28)
    per_image = (
        reconstruction_nll(logits, x, likelihood) + beta * gaussian_kl(mu, logvar) + math.log(model.num_classes)
    )
    return _reduce(per_image, reduction)


def m2_unlabelled_loss(
    model: M2,
    x: torch.Tensor,
    *,
    beta: float = 1.0,
    likelihood: str = "bernoulli",
    sample: bool = True,
    h: torch.Tensor | None = None,
    logits: torch.Tensor | None = None,
    reduction: str = "mean",
    topk: int | None = None,
) -> torch.Tensor:
    """U(x) = sum_y q(y|x) L(x, y) - H[q(y|x)], Kingma's eq. (7) negated.

    y is marginalised exactly: all C classes go through the encoder head and the
    decoder in ONE batched forward of C*B rows (x's trunk features are computed once
    and broadcast), no Python loop over classes. ``logits`` may pass precomputed
    q(y|x) logits (B, C), ``h`` the trunk features (B, F). z: one sample per
    (class, image) pair, or the mean with ``sample=False``.
    Reductions: pixels and latent dims summed per image; ``"mean"`` over the batch.

    ``topk`` (k < C): a cheaper approximation for CPU schedules: the expectation runs over each image's k most
    probable classes only, with q renormalised over them (``sum_{c in top-k} q(c|x) / Q_k * L(x, c)``), so the
    decoder sees k*B rows instead of C*B; the entropy term stays exact. Its bias against the exact U is measured
    by ``benchmarks/m2_topk.py`` before a profile uses it. None (default) or k >= C: the exact marginal.
    """
    B, C = x.shape[0], model.num_classes
    if h is None:
        h = model.trunk(x)  # (B, F)
    if logits is None:
        logits = model.classify(x)  # (B, C)
    q = logits.softmax(1)  # (B, C)
    mu, logvar = model.encode_all_classes(h)  # (C, B, d)
    if topk is not None and topk < C:
        return _reduce(_unlabelled_topk(model, x, logits, q, mu, logvar, topk, beta, likelihood, sample), reduction)
    z = reparameterize(mu, logvar) if sample else mu  # (C, B, d)
    y = torch.eye(C, dtype=x.dtype, device=x.device).unsqueeze(1).expand(C, B, C)  # (C, B, C) one-hot of row c
    x_logits = model.decode(z.reshape(C * B, -1), y.reshape(C * B, C))  # (C*B, 1, 28, 28)
    x_rep = x.unsqueeze(0).expand(C, *x.shape).reshape(C * B, *x.shape[1:])  # (C*B, 1, 28, 28)
    nll = reconstruction_nll(x_logits, x_rep, likelihood).view(C, B)  # (C, B)
    per_class = nll + beta * gaussian_kl(mu, logvar) + math.log(C)  # (C, B): L(x, y=c)
    expected = (q.t() * per_class).sum(0)  # (B,)
    entropy = -(q * F.log_softmax(logits, 1)).sum(1)  # (B,)
    return _reduce(expected - entropy, reduction)


def _unlabelled_topk(model: M2, x, logits, q, mu, logvar, k: int, beta: float, likelihood: str, sample: bool):
    """Per-image U(x) with the expectation over the top-``k`` classes of q(y|x), renormalised (B,)."""
    B, C = q.shape
    top = logits.detach().topk(k, dim=1).indices.t()  # (k, B): class of row j for each image
    q_k = q.gather(1, top.t())  # (B, k)
    q_k = q_k / q_k.sum(1, keepdim=True)  # renormalised over the k classes
    idx = top.unsqueeze(-1).unsqueeze(0).expand(1, k, B, mu.shape[-1])  # gather along the class axis of (C, B, d)
    mu_k = mu.unsqueeze(0).gather(1, idx).squeeze(0)  # (k, B, d)
    logvar_k = logvar.unsqueeze(0).gather(1, idx).squeeze(0)  # (k, B, d)
    z = reparameterize(mu_k, logvar_k) if sample else mu_k  # (k, B, d)
    y = F.one_hot(top, C).to(x.dtype)  # (k, B, C)
    x_logits = model.decode(z.reshape(k * B, -1), y.reshape(k * B, C))  # (k*B, 1, 28, 28)
    x_rep = x.unsqueeze(0).expand(k, *x.shape).reshape(k * B, *x.shape[1:])  # (k*B, 1, 28, 28)
    nll = reconstruction_nll(x_logits, x_rep, likelihood).view(k, B)  # (k, B)
    per_class = nll + beta * gaussian_kl(mu_k, logvar_k) + math.log(C)  # (k, B)
    expected = (q_k.t() * per_class).sum(0)  # (B,)
    entropy = -(q * F.log_softmax(logits, 1)).sum(1)  # (B,) exact
    return expected - entropy


def cross_entropy(logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """``F.cross_entropy`` of (B, C) logits and (B,) classes, ``reduction`` "mean" or "none".

    Under ``torch.vmap`` (the fused engine, :mod:`alkit.engine.fused`) the same quantity as
    ``-log_softmax.gather``: vmap has no batching rule for ``nll_loss`` and runs its Python decomposition
    (masks, ``where``, two sums: 32 dispatched ops forward and backward at K = 9, against 19 for the gather
    form). Unbatched it is ``F.cross_entropy`` itself, so an unfused run computes exactly what it did."""
    if reduction not in ("mean", "none"):
        raise ValueError(f"cross_entropy: reduction must be 'mean' or 'none', got {reduction!r}")
    if not torch._C._functorch.is_batchedtensor(logits):
        return F.cross_entropy(logits, y, reduction=reduction)
    nll = -logits.log_softmax(-1).gather(-1, y.unsqueeze(-1)).squeeze(-1)  # (B,)
    return nll.mean() if reduction == "mean" else nll


def classification_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """E_labelled[-log q(y|x)]: cross-entropy, mean over the batch. Weighted by alpha in :func:`m2_objective`."""
    return cross_entropy(logits, y)


def kingma_alpha(n_labelled: int, n_total: int, scale: float = 0.1) -> float:
    """Kingma et al.'s classification weight alpha = 0.1 * N, in alkit's per-image-mean units.

    The paper's J^alpha sums L and U over the data set and adds
    ``alpha * E_labelled[-log q(y|x)]`` with alpha = 0.1 N. Dividing J^alpha by the
    number of labelled images (our losses are means over labelled and unlabelled
    batches of equal size) keeps the ratio of the classification term to the
    labelled bound: alpha_mean = 0.1 * N / N_labelled, with N = labelled + unlabelled.
    """
    return scale * n_total / max(n_labelled, 1)


# ---------------------------------------------------------------------------------------------
# VAAL adversarial game (labelled = 1, unlabelled = 0)
# ---------------------------------------------------------------------------------------------


def _bce_mean(logits: torch.Tensor, target: float, weight: torch.Tensor | None) -> torch.Tensor:
    """Mean BCE-with-logits against a constant target; with ``weight`` (B,) a weighted mean (sum w * bce / sum w).

    Weights of 0 drop rows (e.g. points held out of the adversarial game) without a data-dependent
    shape; a batch whose weights are all 0 contributes 0.
    """
    bce = F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target), reduction="none")  # (B,)
    if weight is None:
        return bce.mean()
    weight = weight.to(bce.dtype)
    return (weight * bce).sum() / weight.sum().clamp_min(1.0)


def vaal_adversarial_loss(
    logits_labelled: torch.Tensor,
    logits_unlabelled: torch.Tensor,
    weight_labelled: torch.Tensor | None = None,
    weight_unlabelled: torch.Tensor | None = None,
) -> torch.Tensor:
    """The VAE's adversarial loss L_adv = -E[log D(z_L)] - E[log D(z_U)].

    The VAE wants *both* sets called "labelled". Arguments are discriminator
    logits (B_L,), (B_U,); each expectation is a mean over its own batch
    (weighted by the optional 0/1 ``weight_*`` (B_L,), (B_U,)).
    BCE-with-logits: log D = -softplus(-logit), stable for any logit.
    """
    return _bce_mean(logits_labelled, 1.0, weight_labelled) + _bce_mean(logits_unlabelled, 1.0, weight_unlabelled)


def discriminator_loss(
    logits_labelled: torch.Tensor,
    logits_unlabelled: torch.Tensor,
    weight_labelled: torch.Tensor | None = None,
    weight_unlabelled: torch.Tensor | None = None,
) -> torch.Tensor:
    """The discriminator's loss L_D = -E[log D(z_L)] - E[log(1 - D(z_U))]: labelled = 1, unlabelled = 0.

    Logits (B_L,), (B_U,); each expectation is a mean over its own batch (the two
    sets weigh equally whatever the batch sizes), weighted by the optional 0/1
    ``weight_*``. BCE-with-logits for stability.
    """
    return _bce_mean(logits_labelled, 1.0, weight_labelled) + _bce_mean(logits_unlabelled, 0.0, weight_unlabelled)


# ---------------------------------------------------------------------------------------------
# Loss prediction (Yoo & Kweon 2019), used by TA-VAAL
# ---------------------------------------------------------------------------------------------


def loss_prediction_loss(predicted: torch.Tensor, target: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Yoo & Kweon's pairwise margin ranking loss for the loss-prediction module.

    The batch (B,) is split into pairs (i, B-1-i) for i < B//2 (an odd last item
    is unpaired and ignored), as in the authors' code. For a pair with true losses
    l_i, l_j and predictions p_i, p_j:
    ``max(0, -A (p_i - p_j) + margin)`` with A = +1 if l_i > l_j else -1.
    Mean over the B//2 pairs. ``target`` (the true per-image losses) is detached:
    the ranking never pushes the classifier's loss around. (TA-VAAL's code swaps
    this hinge for a BCE on sigmoid(p_i - p_j); we keep Yoo & Kweon's.)
    """
    n = predicted.shape[0] // 2
    if n == 0:
        return predicted.sum() * 0.0
    p, t = predicted[: 2 * n], target[: 2 * n].detach()
    dp = (p - p.flip(0))[:n]  # (n,) p_i - p_{B-1-i}
    dt = (t - t.flip(0))[:n]  # (n,)
    a = torch.where(dt > 0, 1.0, -1.0).to(dp.dtype)
    return torch.clamp(margin - a * dp, min=0).mean()
