"""Generative learners and the VAAL strategy: planted discriminator test, no NaN, determinism, contracts."""
from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from alkit.config import ConfigError
from alkit.learners import LEARNERS, TrainData, make_learner
from alkit.learners.adversarial import heldout_scores, holdout_split
from alkit.strategies import Context, acquire, get_strategy
from alkit.engine.batches import generator

GENERATIVE = ["vaal", "tavaal", "m2", "m2_disc", "m2_vaal"]
WITH_DISC = ["vaal", "tavaal", "m2_disc", "m2_vaal"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one torch thread for tiny models


def synthetic_images(cls: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """(N,) classes -> (N, 1, 28, 28) in [0, 1]: 0 = "top" (wide block), 1 = "trouser" (two legs),
    2 = fine checkerboard, a pattern unlike anything in classes 0-1. Random shifts, brightness and noise."""
    n = len(cls)
    img = torch.zeros(n, 28, 28)
    r = torch.arange(28)
    dy = torch.randint(-2, 3, (n, 1, 1), generator=gen)
    dx = torch.randint(-2, 3, (n, 1, 1), generator=gen)
    rows, cols = r.view(1, 28, 1) - dy, r.view(1, 1, 28) - dx
    top = (rows >= 6) & (rows < 20) & (cols >= 4) & (cols < 24)
    legs = (rows >= 4) & (rows < 25) & (((cols >= 8) & (cols < 12)) | ((cols >= 16) & (cols < 20)))
    checker = ((rows + cols) % 2 == 0) & (rows >= 2) & (rows < 26) & (cols >= 2) & (cols < 26)
    c = cls.view(n, 1, 1)
    img = torch.where(c == 0, top.float(), img)
    img = torch.where(c == 1, legs.float(), img)
    img = torch.where(c == 2, checker.float(), img)
    img = img * (0.6 + 0.4 * torch.rand(n, 1, 1, generator=gen))
    img = (img + 0.1 * torch.rand(n, 28, 28, generator=gen)).clamp(0, 1)
    return img.unsqueeze(1)


def planted_data(n_lab=40, n_unl=200, n_cluster=30, n_val=40, seed=0):
    """Labelled: classes 0-1 only. Unlabelled: classes 0-1 plus a checkerboard cluster (the last n_cluster)."""
    g = torch.Generator().manual_seed(seed)
    y_l = torch.arange(n_lab) % 2
    y_u = torch.cat([torch.arange(n_unl) % 2, torch.full((n_cluster,), 2)])
    y_v = torch.arange(n_val) % 2
    data = TrainData(
        x_labelled=synthetic_images(y_l, g), y_labelled=y_l, x_unlabelled=synthetic_images(y_u, g),
        x_val=synthetic_images(y_v, g), y_val=y_v, num_classes=3,
    )
    return data, np.arange(n_unl, n_unl + n_cluster)


def context(learner, data: TrainData, seed: int = 0) -> Context:
    L, U = len(data.x_labelled), len(data.x_unlabelled)
    return Context(
        learner=learner, x_unlabelled=data.x_unlabelled, x_labelled=data.x_labelled, y_labelled=data.y_labelled,
        unlabelled_indices=np.arange(L, L + U), labelled_indices=np.arange(L), num_classes=data.num_classes, seed=seed,
    )


PLANTED = {  # small models; more discriminator steps than VAAL's 1 so that tens of iterations suffice
    "vaal": {"iterations": 80, "batch_size": 32, "latent_dim": 8, "vae_width": 8, "disc_hidden": 64,
             "vae_steps": 1, "disc_steps": 3, "lr_disc": 2e-3, "val_every": 40},
    "m2_vaal": {"iterations": 32, "batch_size": 32, "latent_dim": 8, "width": 8, "hidden": 32, "disc_hidden": 64,
                "vae_steps": 1, "disc_steps": 3, "lr_disc": 2e-3, "val_every": 8},
}


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_discriminator_ranks_planted_cluster_first(name):
    """A cluster that exists only among the unlabelled points is what the discriminator calls least labelled."""
    data, cluster = planted_data(n_lab=120, n_unl=150, n_cluster=50)
    learner = make_learner(name, PLANTED[name], data.num_classes, "cpu")
    metrics = learner.fit(data, seed=0)
    assert all(math.isfinite(v) for v in metrics.values() if isinstance(v, float))
    picked = acquire("vaal", context(learner, data), budget=len(cluster))
    hits = np.isin(picked - len(data.x_labelled), cluster).mean()
    assert hits >= 0.7, f"{name}: only {hits:.0%} of the top-{len(cluster)} are from the planted cluster"
    p = learner.labelled_prob(data.x_unlabelled)
    assert p[cluster].mean() < p[: cluster[0]].mean() - 0.2


@pytest.fixture(scope="module")
def small_data():
    data, _ = planted_data(n_lab=40, n_unl=120, n_cluster=20, n_val=30, seed=1)
    return data


@pytest.mark.parametrize("name", GENERATIVE)
def test_fit_with_test_params_is_finite_and_fulfils_capabilities(name, small_data):
    learner = make_learner(name, LEARNERS[name].test_params, small_data.num_classes, "cpu")
    metrics = learner.fit(small_data, seed=3)
    for key in ("task_loss", "val_acc", "vae_loss" if name in ("vaal", "tavaal") else "m2_loss"):
        assert key in metrics, key
    if name in WITH_DISC:
        for key in ("disc_loss", "disc_acc_heldout", "disc_auc_heldout", "n_disc_heldout"):
            assert key in metrics, key
        assert 0.0 <= metrics["disc_acc_heldout"] <= 1.0 and 0.0 <= metrics["disc_auc_heldout"] <= 1.0
        assert metrics["n_disc_heldout"] == 4  # 10% of 40 labelled
        p = learner.labelled_prob(small_data.x_unlabelled)
        assert p.shape == (len(small_data.x_unlabelled),) and torch.isfinite(p).all()
        assert ((p >= 0) & (p <= 1)).all()
    for k, v in metrics.items():
        assert isinstance(v, (int, float, bool)), (k, v)  # JSON-able scalars for the cycle record
        assert not (isinstance(v, float) and math.isnan(v)), k
    proba = learner.predict_proba(small_data.x_val)
    torch.testing.assert_close(proba.sum(1), torch.ones(len(small_data.x_val)))
    mc = learner.mc_proba(small_data.x_val[:5], 3)
    assert mc.shape == (3, 5, 3) and torch.isfinite(mc).all()
    torch.testing.assert_close(learner.predict_proba(small_data.x_val[:5]), proba[:5])  # eval mode restored
    z = learner.embed(small_data.x_unlabelled[:7])
    assert z.shape == (7, 4) and torch.isfinite(z).all()
    buf = io.BytesIO()
    torch.save(learner, buf)  # the loop pickles the learner for warm starts


@pytest.mark.parametrize("name", ["vaal", "m2_vaal", "tavaal"])
def test_same_seed_same_fit_on_cpu(name, small_data):
    def run(seed):
        learner = make_learner(name, LEARNERS[name].test_params, small_data.num_classes, "cpu")
        return learner.fit(small_data, seed=seed), learner.labelled_prob(small_data.x_unlabelled)

    (m1, p1), (m2, p2), (m3, p3) = run(5), run(5), run(6)
    assert m1 == m2
    assert torch.equal(p1, p2)
    assert not torch.equal(p1, p3)


def test_warm_start_loads_previous_weights(small_data):
    prev = make_learner("vaal", LEARNERS["vaal"].test_params, 3, "cpu")
    prev.fit(small_data, seed=0)
    learner = make_learner("vaal", {**LEARNERS["vaal"].test_params, "warm_start": True}, 3, "cpu")
    learner.previous = prev
    assert learner.fit(small_data, seed=1)["warm_started"] is True
    cold = make_learner("vaal", LEARNERS["vaal"].test_params, 3, "cpu")
    assert cold.fit(small_data, seed=1)["warm_started"] is False


def test_vaal_task_model_is_the_classifier_learner(small_data):
    """VAAL's task classifier is trained exactly as the ``classifier`` baseline: same seed, same predictions."""
    vaal = make_learner("vaal", {**LEARNERS["vaal"].test_params, "iterations": 5}, 3, "cpu")
    vaal.fit(small_data, seed=4)
    base = make_learner("classifier", {"iterations": 5, "batch_size": 32, "val_every": 2,
                                       "size": vaal.params.classifier_size}, 3, "cpu")
    base.fit(small_data, seed=4)
    torch.testing.assert_close(vaal.predict_proba(small_data.x_val), base.predict_proba(small_data.x_val))


def test_m2_disc_trains_m2_as_plain_m2(small_data):
    """``m2_disc`` trains its M2 step for step as ``m2`` (the discriminator neither feeds M2's loss nor
    draws from its random stream), so ``m2_random`` is the random-acquisition control of ``m2_disc``."""
    tp = {k: v for k, v in LEARNERS["m2_disc"].test_params.items() if k != "disc_hidden"}
    disc = make_learner("m2_disc", LEARNERS["m2_disc"].test_params, 3, "cpu")
    m_disc = disc.fit(small_data, seed=4)
    plain = make_learner("m2", tp, 3, "cpu")
    m_plain = plain.fit(small_data, seed=4)
    torch.testing.assert_close(disc.predict_proba(small_data.x_val), plain.predict_proba(small_data.x_val), rtol=0, atol=0)
    torch.testing.assert_close(disc.embed(small_data.x_unlabelled), plain.embed(small_data.x_unlabelled), rtol=0, atol=0)
    assert m_disc["val_acc"] == m_plain["val_acc"] and m_disc["best_iteration"] == m_plain["best_iteration"]
    # m2_vaal's adversarial term does change M2 (the control must be m2_vaal + random, not m2_random)
    vaal = make_learner("m2_vaal", LEARNERS["m2_disc"].test_params, 3, "cpu")
    vaal.fit(small_data, seed=4)
    assert not torch.equal(vaal.predict_proba(small_data.x_val), plain.predict_proba(small_data.x_val))


def test_params_defaults_follow_vaal_and_reject_bad_values():
    p = make_learner("vaal", None, 10, "cpu").params
    assert (p.batch_size, p.lr_vae, p.lr_disc, p.beta, p.adversary_weight, p.latent_dim) == (128, 5e-4, 5e-4, 1.0, 1.0, 32)
    assert (p.vae_steps, p.disc_steps, p.epochs, p.epoch_unit, p.val_every, p.warm_start) == (2, 1, 20, "pool", 1000, False)
    assert (p.optimizer, p.lr, p.momentum, p.weight_decay, p.lr_drop_every) == ("sgd", 0.01, 0.9, 5e-4, 0.25)
    with pytest.raises(ConfigError, match="unknown key"):
        make_learner("vaal", {"adversarial_weight": 1.0}, 10, "cpu")
    for name, bad in [("vaal", {"disc_holdout": 0.0}), ("m2", {"likelihood": "poisson"}),
                      ("m2_vaal", {"adversary_weight": -1}), ("tavaal", {"ranker_detach_after": 2.0}),
                      ("m2_disc", {"epochs": 0})]:
        with pytest.raises(ConfigError):
            make_learner(name, bad, 10, "cpu")
    with pytest.raises(ConfigError, match="unknown key"):
        make_learner("m2_disc", {"adversary_weight": 1.0}, 10, "cpu")  # m2_disc has no adversarial term


def test_capabilities():
    for name in WITH_DISC:
        assert {"proba", "embed", "labelled_prob"} <= LEARNERS[name].capabilities()
    assert LEARNERS["m2"].capabilities() == {"proba", "embed", "mc_proba", "network"}  # BALD on M2's classifier
    assert get_strategy("vaal").needs == ("labelled_prob",)


class PlantedProb:
    """A learner whose discriminator says P(labelled) = the image's first pixel."""

    def labelled_prob(self, x):
        return x[:, 0, 0, 0]


def test_vaal_strategy_picks_least_likely_labelled():
    p = torch.tensor([0.9, 0.05, 0.5, 0.01, 0.99, 0.2])
    x = p.view(-1, 1, 1, 1).expand(-1, 1, 28, 28).contiguous()
    ctx = Context(
        learner=PlantedProb(), x_unlabelled=x, x_labelled=x[:0], y_labelled=torch.zeros(0, dtype=torch.long),
        unlabelled_indices=np.arange(10, 16), labelled_indices=np.arange(0), num_classes=3, seed=0,
    )
    np.testing.assert_allclose(get_strategy("vaal").fn(ctx), 1 - p.double().numpy())
    assert acquire("vaal", ctx, 3).tolist() == [13, 11, 15]  # P = 0.01, 0.05, 0.2: lowest first


def test_holdout_split_and_heldout_scores():
    s = holdout_split(40, 100, 0.1, generator(0))
    assert len(s.l_held) == len(s.u_held) == 4 and len(set(s.l_held.tolist())) == len(set(s.u_held.tolist())) == 4
    assert s.l_weight.shape == (40,) and s.u_weight.shape == (100,)
    assert s.l_weight.sum() == 36 and s.u_weight.sum() == 96  # the held-out points weigh 0 in the game
    assert (s.l_weight[s.l_held] == 0).all() and (s.u_weight[s.u_held] == 0).all()
    assert len(holdout_split(40, 100, 0.0, generator(0)).l_held) == 0
    with pytest.raises(ValueError, match="too few"):
        holdout_split(2, 100, 0.1, generator(0))
    # labelled logits 2, -1, 3; unlabelled -2, 1, 0 -> acc (2/3 + 2/3) / 2;
    # AUC: pairs (l > u) out of 9: 2>-2,2>1,2>0; -1>-2; 3>-2,3>1,3>0 -> 7/9
    out = heldout_scores(torch.tensor([2.0, -1.0, 3.0]), torch.tensor([-2.0, 1.0, 0.0]))
    assert out["disc_acc_heldout"] == pytest.approx(2 / 3)
    assert out["disc_auc_heldout"] == pytest.approx(7 / 9)


def test_m2_disc_snapshot_option_keeps_the_final_discriminator(small_data):
    """disc_snapshot: best (default) restores the discriminator saved with M2's best validation; final keeps the
    last iteration's on the same restored M2 (VAAL's sampler uses its final discriminator)."""
    tp = {**LEARNERS["m2_disc"].test_params, "iterations": 6, "val_every": 2}
    for seed in range(3, 12):  # a seed whose best validation comes before the last iteration
        best = make_learner("m2_disc", tp, 3, "cpu")
        m = best.fit(small_data, seed=seed)
        if m["best_iteration"] < m["iterations"] - 1:
            break
    assert m["best_iteration"] < m["iterations"] - 1
    final = make_learner("m2_disc", {**tp, "disc_snapshot": "final"}, 3, "cpu")
    final.fit(small_data, seed=seed)
    # the same restored M2, another discriminator
    torch.testing.assert_close(best.predict_proba(small_data.x_val), final.predict_proba(small_data.x_val), rtol=0, atol=0)
    assert not torch.equal(best.labelled_prob(small_data.x_unlabelled), final.labelled_prob(small_data.x_unlabelled))
    with pytest.raises((ConfigError, ValueError), match="disc_snapshot='last': allowed best, final"):
        make_learner("m2_disc", {"disc_snapshot": "last"}, 3, "cpu")
