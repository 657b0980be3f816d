"""Every loss against a hand computation (plain math / numpy), and M2's marginalisation against a loop."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from alkit.losses import (
    beta_elbo_loss,
    classification_loss,
    cross_entropy,
    discriminator_loss,
    gaussian_kl,
    kingma_alpha,
    loss_prediction_loss,
    m2_labelled_loss,
    m2_unlabelled_loss,
    reconstruction_nll,
    vaal_adversarial_loss,
)
from alkit.models import M2


def softplus(v: float) -> float:
    return math.log1p(math.exp(v))


def test_gaussian_kl_by_hand():
    # KL = 0.5 * sum(var + mu^2 - 1 - logvar): dim 1: 0.5*(1 + 1 - 1 - 0) = 0.5; dim 2: 0.5*(2 - 1 - ln 2)
    mu = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)], [0.0, 0.0]])
    expected = 0.5 + 0.5 * (1 - math.log(2))
    torch.testing.assert_close(gaussian_kl(mu, logvar), torch.tensor([expected, 0.0]))


def test_bernoulli_reconstruction_sums_over_pixels():
    # half the pixels: logit 0 (nll ln 2 whatever x); the other half: logit 2, x = 1 (nll = log(1 + e^-2))
    logits = torch.zeros(1, 1, 28, 28)
    logits[..., 14:, :] = 2.0
    x = torch.full((1, 1, 28, 28), 0.3)
    x[..., 14:, :] = 1.0
    expected = 392 * math.log(2) + 392 * softplus(-2.0)
    torch.testing.assert_close(reconstruction_nll(logits, x), torch.tensor([expected]))


def test_gaussian_reconstruction_by_hand():
    # mean sigmoid(0) = 0.5, x = 0.7, sigma 0.1: 0.5 * (0.2 / 0.1)^2 + log(0.1 sqrt(2 pi)) per pixel
    per_pixel = 0.5 * 4.0 + math.log(0.1 * math.sqrt(2 * math.pi))
    out = reconstruction_nll(torch.zeros(1, 1, 28, 28), torch.full((1, 1, 28, 28), 0.7), "gaussian", 0.1)
    torch.testing.assert_close(out, torch.tensor([784 * per_pixel]))


def test_beta_elbo_is_mean_over_batch_of_per_image_sums():
    # image 0: all logits 0 -> 784 ln 2, KL 0.5; image 1: logits 0, KL 0 -> 784 ln 2
    x = torch.rand(2, 1, 28, 28)
    logits = torch.zeros(2, 1, 28, 28)
    mu = torch.tensor([[1.0], [0.0]])
    logvar = torch.zeros(2, 1)
    for beta in (1.0, 4.0):
        expected = 784 * math.log(2) + beta * 0.5 / 2
        torch.testing.assert_close(beta_elbo_loss(x, logits, mu, logvar, beta), torch.tensor(expected))
    # doubling the batch with copies leaves a mean unchanged (a sum over the batch would double)
    x2, l2, m2, v2 = (torch.cat([t, t]) for t in (x, logits, mu, logvar))
    torch.testing.assert_close(beta_elbo_loss(x2, l2, m2, v2), beta_elbo_loss(x, logits, mu, logvar))


def test_vaal_adversarial_and_discriminator_losses_by_hand():
    lab, unl = torch.tensor([2.0, 0.0]), torch.tensor([-1.0])
    # -log sigmoid(a) = softplus(-a); -log(1 - sigmoid(a)) = softplus(a); means per set
    adv = (softplus(-2.0) + softplus(0.0)) / 2 + softplus(1.0)
    disc = (softplus(-2.0) + softplus(0.0)) / 2 + softplus(-1.0)
    torch.testing.assert_close(vaal_adversarial_loss(lab, unl), torch.tensor(adv))
    torch.testing.assert_close(discriminator_loss(lab, unl), torch.tensor(disc))
    # labelled = 1: a discriminator confident in the right direction has a small loss
    assert discriminator_loss(torch.tensor([10.0]), torch.tensor([-10.0])) < 1e-3
    assert discriminator_loss(torch.tensor([-10.0]), torch.tensor([10.0])) > 19
    # stable where a sigmoid + log would give inf
    assert torch.isfinite(discriminator_loss(torch.tensor([-200.0]), torch.tensor([200.0])))


def test_loss_prediction_ranking_loss_by_hand():
    pred = torch.tensor([3.0, 1.0, 2.0, 0.0])
    true = torch.tensor([1.0, 2.0, 0.0, 5.0])
    # pairs (0, 3), (1, 2): prediction gaps 3, -1; true gaps -4 (A=-1), 2 (A=+1)
    # hinge max(0, 1 - A*gap): max(0, 1 + 3) = 4, max(0, 1 + 1) = 2 -> mean 3
    torch.testing.assert_close(loss_prediction_loss(pred, true), torch.tensor(3.0))
    torch.testing.assert_close(loss_prediction_loss(torch.cat([pred, torch.tensor([9.0])]), torch.cat([true, torch.tensor([0.0])])), torch.tensor(3.0))
    # correctly ordered by more than the margin: zero loss
    assert loss_prediction_loss(torch.tensor([5.0, 0.0]), torch.tensor([2.0, 1.0])).item() == 0.0
    # the true losses get no gradient
    p, t = pred.clone().requires_grad_(), true.clone().requires_grad_()
    loss_prediction_loss(p, t).backward()
    assert t.grad is None and p.grad is not None


def test_classification_term_and_kingma_alpha():
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    y = torch.tensor([0, 1])
    expected = (-math.log(math.exp(2) / (math.exp(2) + 1)) + math.log(2)) / 2
    torch.testing.assert_close(classification_loss(logits, y), torch.tensor(expected))
    assert kingma_alpha(1000, 55000) == pytest.approx(5.5)


@pytest.fixture()
def tiny_m2():
    torch.manual_seed(0)
    return M2(num_classes=3, latent_dim=2, width=2, hidden=4).eval()


def test_m2_labelled_bound_against_numpy(tiny_m2):
    x = torch.rand(4, 1, 28, 28)
    y = torch.tensor([0, 2, 1, 2])
    with torch.no_grad():
        y1 = torch.nn.functional.one_hot(y, 3).float()
        mu, logvar = tiny_m2.encode(x, y1)
        logits = tiny_m2.decode(mu, y1).numpy().reshape(4, -1)
        out = m2_labelled_loss(tiny_m2, x, y, sample=False, reduction="none").numpy()
    xn, mun, lvn = x.numpy().reshape(4, -1), mu.numpy(), logvar.numpy()
    prob = 1 / (1 + np.exp(-logits.astype(np.float64)))
    bce = -(xn * np.log(prob) + (1 - xn) * np.log(1 - prob)).sum(1)
    kl = 0.5 * (np.exp(lvn) + mun**2 - 1 - lvn).sum(1)
    np.testing.assert_allclose(out, bce + kl + np.log(3), rtol=1e-4)


def test_m2_unlabelled_bound_equals_explicit_sum_over_classes(tiny_m2):
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        q = tiny_m2.classify(x).softmax(1)  # (B, C)
        marginal = m2_unlabelled_loss(tiny_m2, x, sample=False, reduction="none")
        explicit = torch.zeros(4)
        for c in range(3):  # the loop the batched version must equal
            explicit += q[:, c] * m2_labelled_loss(tiny_m2, x, torch.full((4,), c), sample=False, reduction="none")
        entropy = -(q * q.log()).sum(1)
    # -U(x) = sum_y q(y|x) (-L(x, y)) + H[q(y|x)]
    torch.testing.assert_close(marginal, explicit - entropy, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(
        m2_unlabelled_loss(tiny_m2, x, sample=False), marginal.mean()
    )


def test_m2_losses_backpropagate_without_nan():
    torch.manual_seed(0)
    m2 = M2(num_classes=3, latent_dim=2, width=2, hidden=4).train()
    x, y = torch.rand(6, 1, 28, 28), torch.tensor([0, 1, 2, 0, 1, 2])
    loss = m2_labelled_loss(m2, x, y) + m2_unlabelled_loss(m2, x) + 0.5 * classification_loss(m2.classify(x), y)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in m2.parameters() if p.grad is not None)
    assert m2.classifier.head[-1].weight.grad.abs().sum() > 0  # q(y|x) learns from the unlabelled bound too


def test_vaal_vae_loss_is_vaals_solver_by_hand():
    """VAAL's Solver.vae_loss: nn.MSELoss() (mean over every pixel of every image) + beta * KL summed over the batch."""
    import torch

    from alkit.losses import vaal_vae_loss

    x = torch.zeros(2, 1, 28, 28)
    logits = torch.zeros(2, 1, 28, 28)  # sigmoid 0.5 everywhere: squared error 0.25 per pixel -> mean 0.25
    mu = torch.tensor([[1.0, 0.0], [0.0, 2.0]])  # KL per image 0.5 * mu^2 with logvar 0: 0.5 and 2.0 -> sum 2.5
    logvar = torch.zeros(2, 2)
    assert vaal_vae_loss(x, logits, mu, logvar, beta=1.0).item() == pytest.approx(0.25 + 2.5)
    assert vaal_vae_loss(x, logits, mu, logvar, beta=0.1).item() == pytest.approx(0.25 + 0.25)


def test_vae_loss_option_of_vaal():
    import torch

    from alkit.learners import LEARNERS, make_learner
    from alkit.config import ConfigError

    with pytest.raises((ConfigError, ValueError), match="vae_loss='mse': allowed elbo, vaal"):
        make_learner("vaal", {"vae_loss": "mse"}, 3, "cpu")
    xl, xu = torch.rand(4, 1, 28, 28), torch.rand(6, 1, 28, 28)
    ones = lambda n: torch.ones(n)
    out = {}
    for form in ("elbo", "vaal"):
        learner = make_learner("vaal", {**LEARNERS["vaal"].test_params, "vae_loss": form, "adversary_weight": 0.0}, 3, "cpu")
        learner._build_generative(3)
        torch.manual_seed(0)
        learner._static = learner._static_flags()
        loss, terms = learner._generative_loss(xl, None, xu, ones(4), ones(6), learner._hp())
        out[form] = terms["vae_loss"].item()
    # per-image ELBO sums 784 pixels: hundreds of nats; VAAL's pixel-mean MSE + batch-summed KL is far smaller
    assert out["elbo"] > 100 > out["vaal"] > 0


def test_cross_entropy_is_torchs_unbatched_and_the_same_quantity_under_vmap():
    """Unbatched, ``losses.cross_entropy`` is ``F.cross_entropy`` bit for bit (unfused runs unchanged); under
    ``torch.vmap`` (the fused engine) its gather form gives each slice F.cross_entropy's value and gradient
    (float64, 1e-12), for both reductions, with fewer dispatched ops than vmap's nll_loss decomposition."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 16, 10, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (5, 16), generator=g)
    for k in range(5):
        for red in ("mean", "none"):
            x = logits[k].float()
            assert torch.equal(cross_entropy(x, y[k], red), F.cross_entropy(x, y[k], reduction=red))
    for red in ("mean", "none"):
        a = logits.clone().requires_grad_(True)
        b = logits.clone().requires_grad_(True)
        mine = torch.vmap(lambda l, t: cross_entropy(l, t, red))(a, y)
        ref = torch.stack([F.cross_entropy(b[k], y[k], reduction=red) for k in range(5)])
        assert mine.shape == ref.shape
        torch.testing.assert_close(mine, ref, rtol=0, atol=1e-12)
        mine.sum().backward()
        ref.sum().backward()
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=1e-12)

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from bench_gpu import OpCounter  # what the benchmark's ops per model-iteration count

    def ops(fn):
        x = logits.clone().requires_grad_(True)
        with OpCounter() as mode:
            torch.vmap(fn)(x, y).sum().backward()
        return mode.n

    assert ops(cross_entropy) < ops(F.cross_entropy)
    for batched in (False, True):  # the same rule alone and under vmap
        with pytest.raises(ValueError, match="reduction"):
            (torch.vmap(lambda l, t: cross_entropy(l, t, "sum")) if batched else
             lambda l, t: cross_entropy(l, t, "sum"))(logits, y)
