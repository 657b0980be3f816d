"""Shapes and parameter counts of the generative models (VAE, M2, discriminator, loss predictor)."""
from __future__ import annotations

import torch

from alkit.models import (
    M2,
    VAE,
    Classifier,
    Discriminator,
    LossPredictor,
    classifier_taps,
    count_parameters,
    reparameterize,
)

x = torch.rand(5, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def test_vae_shapes_and_default_size():
    vae = VAE()  # latent 32, width 64
    logits, z, mu, logvar = vae(x)
    assert logits.shape == (5, 1, 28, 28)
    assert z.shape == mu.shape == logvar.shape == (5, 32)
    # the study's "around 1M parameters"; VAAL's 32x32x3 original is ~ 50M
    assert count_parameters(vae) == 1_252_673
    assert count_parameters(VAE(32, 8)) == 63_457


def test_vae_decoder_conditioning_for_tavaal():
    vae = VAE(latent_dim=4, width=4, cond_dim=1)
    logits, *_ = vae(x, torch.rand(5, 1))
    assert logits.shape == (5, 1, 28, 28)
    # one extra input column in the decoder's first layer: 4w*16 extra weights
    assert count_parameters(vae) - count_parameters(VAE(4, 4)) == 4 * 4 * 16


def test_m2_shapes_and_size():
    m2 = M2(num_classes=10)
    assert count_parameters(m2) == 2_521_099
    assert count_parameters(m2.classifier) == count_parameters(Classifier(10)) == 421_834
    y = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 3, 9]), 10).float()
    mu, logvar = m2.encode(x, y)
    assert mu.shape == logvar.shape == (5, 32)
    assert m2.decode(mu, y).shape == (5, 1, 28, 28)
    assert m2.classify(x).shape == (5, 10)


def test_m2_all_classes_match_one_class_at_a_time():
    m2 = M2(num_classes=3, latent_dim=4, width=4, hidden=8).eval()
    h = m2.trunk(x)
    mu_all, lv_all = m2.encode_all_classes(h)  # (C, B, d)
    assert mu_all.shape == (3, 5, 4)
    for c in range(3):
        y = torch.zeros(5, 3)
        y[:, c] = 1
        mu, lv = m2.encode(x, y)
        torch.testing.assert_close(mu_all[c], mu)
        torch.testing.assert_close(lv_all[c], lv)


def test_m2_latent_uses_predicted_class_and_no_labels():
    m2 = M2(num_classes=3, latent_dim=4, width=4, hidden=8).eval()
    mu, q = m2.latent(x)
    assert mu.shape == (5, 4) and q.shape == (5, 3)
    torch.testing.assert_close(q.sum(1), torch.ones(5))
    y_hat = torch.nn.functional.one_hot(q.argmax(1), 3).float()
    torch.testing.assert_close(mu, m2.encode(x, y_hat)[0])


def test_discriminator_returns_logits_per_row():
    d = Discriminator(32)
    assert count_parameters(d) == 32 * 512 + 512 + 512 * 512 + 512 + 512 + 1 == 280_065
    out = d(torch.randn(7, 32))
    assert out.shape == (7,)
    assert (out.abs() > 0).any()  # logits, not a probability squashed into (0, 1)


def test_classifier_taps_reproduce_forward_and_feed_loss_predictor():
    clf = Classifier(10).eval()
    logits, taps = classifier_taps(clf, x)
    torch.testing.assert_close(logits, clf(x))
    assert [t.shape for t in taps] == [(5, 32, 14, 14), (5, 64, 7, 7), (5, 128)]
    lp = LossPredictor.for_classifier(clf)
    assert lp(taps).shape == (5,)
    assert count_parameters(lp) == (32 + 1) * 128 + (64 + 1) * 128 + (128 + 1) * 128 + 3 * 128 + 1 == 29_441
    large = Classifier(10, "large")
    assert [t.shape[1] for t in classifier_taps(large.eval(), x)[1]] == [64, 128, 256, 1024]


def test_reparameterize_moments():
    torch.manual_seed(0)
    mu, logvar = torch.full((20000, 1), 2.0), torch.full((20000, 1), 2 * torch.log(torch.tensor(3.0)))
    z = reparameterize(mu, logvar)
    assert abs(z.mean().item() - 2.0) < 0.1 and abs(z.std().item() - 3.0) < 0.1
