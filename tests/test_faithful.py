"""Faithfulness to the study and to VAAL's solver: schedule, M2-VAAL's adversarial gradient,
every label used by the task model, one model state per selection.

Each test here failed on the code before these fixes (epochs over the labelled set; q(y|x)
detached in the adversarial term; 10 % of the labels withheld from m2_* and tavaal task models;
predictions from the best-validation classifier but latent codes from the final one).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import alkit.engine.single as engine_single
from alkit.learners import LEARNERS, TrainData, make_learner
from alkit.learners.schedule import ScheduleParams
from alkit.models import Classifier
from alkit.learners.task import fit_task_model
from helpers import synthetic_images

WITH_DISC = ["vaal", "tavaal", "m2_disc", "m2_vaal"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one torch thread for tiny models


def fingerprinted(n_lab=40, n_unl=120, n_val=30, seed=0) -> TrainData:
    """Images whose pixel (0, 0) names them: labelled i -> 0.5 + i/1000, unlabelled j -> j/10000 (< 0.05)."""
    x, y = synthetic_images(n_lab + n_unl + n_val, seed, num_classes=3)
    x[:n_lab, 0, 0, 0] = 0.5 + torch.arange(n_lab) / 1000
    x[n_lab : n_lab + n_unl, 0, 0, 0] = torch.arange(n_unl) / 10000
    x[n_lab + n_unl :, 0, 0, 0] = 0.3
    return TrainData(
        x_labelled=x[:n_lab], y_labelled=y[:n_lab], x_unlabelled=x[n_lab : n_lab + n_unl],
        x_val=x[n_lab + n_unl :], y_val=y[n_lab + n_unl :], num_classes=3,
    )


# ------------------------------------------------------------------------------------------ 1. schedule


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_default_schedule_is_vaals_whatever_the_number_of_labels(name):
    """VAAL: num_images * train_epochs // batch_size = 55,000 * 20 // 128 = 8,593 iterations per cycle."""
    p = make_learner(name, None, 10, "cpu").params
    assert (p.epochs, p.epoch_unit, p.batch_size, p.val_every) == (20, "pool", 128, 1000)
    for n_labelled in (50, 1000, 8000):
        assert p.iterations_per_cycle(n_labelled, 55_000 - n_labelled) == 8593


def test_schedule_units_and_override():
    assert ScheduleParams(epochs=3, epoch_unit="labelled", batch_size=32).iterations_per_cycle(100, 900) == 4 * 3
    assert ScheduleParams(epochs=3, batch_size=32).iterations_per_cycle(100, 900) == 1000 * 3 // 32
    assert ScheduleParams(iterations=7).iterations_per_cycle(100, 900) == 7
    for bad in ({"epoch_unit": "images"}, {"iterations": 0}, {"val_every": 0}, {"epochs": 1.5}):
        with pytest.raises(ValueError):
            ScheduleParams(**bad)


def test_task_model_follows_vaals_sgd_schedule():
    """lr 0.01 divided by 10 before iterations 2, 4, 6 of 8 (every 8 // 4); validated at 0, 2, 4, 6 and the last."""
    data = fingerprinted()
    p = make_learner("classifier", {"iterations": 8, "batch_size": 16, "val_every": 2}, 3, "cpu").params
    model = Classifier(3)
    m = fit_task_model(model, data.x_labelled, data.y_labelled, data.x_val, data.y_val, schedule=p, optim=p,
                       seed=0, n_unlabelled=120)
    assert m["iterations"] == 8 and m["val_checks"] == 5
    assert m["lr_final"] == pytest.approx(0.01 / 1000)
    assert isinstance(torch.optim.SGD([torch.zeros(1, requires_grad=True)]), torch.optim.SGD)


# ------------------------------------------------------------------ 2. M2-VAAL's adversarial gradient


@pytest.mark.parametrize("detach", [False, True])
def test_m2_vaal_adversarial_loss_reaches_the_classifier_unless_detached(detach):
    data = fingerprinted()
    learner = make_learner("m2_vaal", {**LEARNERS["m2_vaal"].test_params, "detach_y_in_adversary": detach}, 3, "cpu")
    learner.fit(data, seed=1)
    model = learner.model
    model.train()
    x = torch.cat([data.x_labelled[:8], data.x_unlabelled[:8]])
    model.zero_grad(set_to_none=True)
    adv = learner.adversarial_loss(model.trunk(x), model.classify(x), 8)
    adv.backward()
    grad = sum(p.grad.abs().sum().item() for p in model.classifier.parameters() if p.grad is not None)
    enc = sum(p.grad.abs().sum().item() for p in model.encoder.parameters() if p.grad is not None)
    assert enc > 0  # the encoder always plays the game
    if detach:
        assert grad == 0.0
    else:
        assert grad > 0.0
    assert make_learner("m2_vaal", None, 10, "cpu").params.detach_y_in_adversary is False  # the study's form by default


# ------------------------------------------------------------- 3. the task model uses every label


def _spy_on_classifiers(monkeypatch) -> list:
    """Record pixel (0, 0) of every batch a Classifier sees in training mode with gradients on."""
    seen = []
    original = Classifier.__init__

    def init(self, *a, **kw):
        original(self, *a, **kw)

        def hook(module, args):
            if module.training and torch.is_grad_enabled():
                seen.append(args[0][:, 0, 0, 0].detach().clone())

        self.features[0].register_forward_pre_hook(hook)

    monkeypatch.setattr(Classifier, "__init__", init)
    return seen


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_every_learner_runs_its_schedule_on_every_label(name, monkeypatch):
    """1. Pool units: (40 + 120) * 2 // 32 = 10 iterations for the task model and the generative model alike
    (before: epochs over the labelled set). 3. Every labelled point reaches the task model's training and the
    record's ``task_labelled`` equals the labelled count (before, m2_disc/m2_vaal/tavaal lost 10 %)."""
    data = fingerprinted()
    seen = _spy_on_classifiers(monkeypatch)
    params = {**LEARNERS[name].test_params, "iterations": None, "epochs": 2, "epoch_unit": "pool"}
    learner = make_learner(name, params, 3, "cpu")
    steps = {"n": 0}
    generative = hasattr(learner, "_generative_step")
    if generative:
        orig = type(learner)._generative_step

        def counting(self, *a):
            steps["n"] += 1
            return orig(self, *a)

        monkeypatch.setattr(type(learner), "_generative_step", counting)
    metrics = learner.fit(data, seed=2)
    assert learner.params.iterations_per_cycle(40, 120) == 10
    assert metrics.get("task_iterations", metrics["iterations"]) == 10
    if generative:
        assert metrics["iterations"] == 10
        assert steps["n"] == 10 * learner.params.vae_steps
    pix = torch.cat(seen)
    lab_ids = set(torch.round((pix[pix >= 0.5] - 0.5) * 1000).long().tolist())
    assert lab_ids == set(range(40)), f"{name}: task model never trained on labelled {sorted(set(range(40)) - lab_ids)}"
    assert metrics["task_labelled"] == 40


# ------------------------------------------------------------------- 4. one state per selection


@pytest.mark.parametrize("name", ["m2", "m2_disc", "m2_vaal"])
def test_m2_selection_reads_one_model_state(name, monkeypatch):
    """With the first validation the best (later ones forced worse), predictions, latent codes and
    discriminator scores must all come from that first state. Before, predictions came from the
    best-validation classifier and latent codes from the final M2."""
    calls = {"n": 0}

    def falling_accuracy(model, x, y, batch_size=2048):
        calls["n"] += 1
        return 1.0 / calls["n"]

    monkeypatch.setattr(engine_single, "accuracy", falling_accuracy)  # the engine validates every learner
    data = fingerprinted()
    learner = make_learner(name, {**LEARNERS[name].test_params, "iterations": 6, "val_every": 2}, 3, "cpu")
    metrics = learner.fit(data, seed=3)
    assert metrics["best_iteration"] == 0 and calls["n"] == 4  # checks at 0, 2, 4, 5
    x = torch.cat([data.x_labelled, data.x_unlabelled])
    q = learner.predict_proba(x)
    z = learner.embed(x)
    with torch.no_grad():
        learner.model.eval()
        y_hat = torch.nn.functional.one_hot(q.argmax(1), 3).float()
        mu, _ = learner.model.encode(x, y_hat)
    torch.testing.assert_close(z, mu)
    if name != "m2":
        with torch.no_grad():
            p = torch.sigmoid(learner.disc(torch.cat([z, q], 1)))
        torch.testing.assert_close(learner.labelled_prob(x), p)
    # and that state is the first validation's, not the last iteration's
    assert not np.isclose(metrics["val_acc_last"], metrics["val_acc"])


def test_m2_pool_pass_survives_the_passes_a_cycle_interleaves(monkeypatch):
    """A cycle's diagnostics pass the batch, a random reference batch and the labelled set between the
    pool's predictions and its latent codes: the pool is still passed once, and the codes are the same."""
    data = fingerprinted()
    learner = make_learner("m2", LEARNERS["m2"].test_params, 3, "cpu")
    learner.fit(data, seed=0)
    pool, lab = data.x_unlabelled.clone(), data.x_labelled
    passes = []
    latent = learner.model.latent
    monkeypatch.setattr(learner.model, "latent", lambda b: passes.append(len(b)) or latent(b))
    q = learner.predict_proba(pool)
    n_pool = len(passes)
    learner.predict_proba(pool[:5])
    learner.embed(pool[5:9])
    learner.embed(lab)
    learner.predict_proba(lab)  # the labelled set's pass is reused too
    n_small = len(passes)
    z = learner.embed(pool)
    assert len(passes) == n_small and n_pool >= 1 and sum(passes[:n_pool]) == len(pool)
    monkeypatch.undo()
    again = pool.clone()  # another tensor: passed afresh, the same numbers
    assert torch.equal(learner.embed(again), z) and torch.equal(learner.predict_proba(again), q)
    learner.fit(data, seed=0)  # a refit forgets every pass
    assert learner._memo is None


def test_m2_latent_pass_is_reused_only_for_the_same_unmodified_tensor():
    data = fingerprinted()
    learner = make_learner("m2_disc", LEARNERS["m2_disc"].test_params, 3, "cpu")
    learner.fit(data, seed=0)
    x = data.x_unlabelled.clone()
    q1 = learner.predict_proba(x)
    assert learner.embed(x) is learner._memo[0][2]  # one pass served both
    x[:5] = 0.0  # in place: the version changes, so the pass is redone
    q2 = learner.predict_proba(x)
    assert not torch.equal(q1[:5], q2[:5]) and torch.equal(q1[5:], q2[5:])
    fresh = learner.predict_proba(x.clone())  # another tensor with equal content: recomputed, same numbers
    torch.testing.assert_close(fresh, q2)
    with torch.no_grad():
        learner.model.eval()
        torch.testing.assert_close(q2, learner.model.classify(x).softmax(1))
    import pickle
    assert "_memo" not in pickle.loads(pickle.dumps(learner)).__dict__


@pytest.mark.parametrize("channels_last", [False, True])
def test_mc_dropout_runs_the_trunk_once_with_the_same_masks_and_outputs(channels_last):
    """BALD's T passes: the classifier's layers before its dropout run once, the rest T times, and the samples
    equal T full passes bit for bit (same chunks, same masks in the same order), ragged last chunk included."""
    from alkit.train import batched, mc_dropout_proba

    torch.manual_seed(0)
    model = Classifier(10, "tiny", dropout=0.3)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    x = torch.rand(600, 1, 28, 28)  # 256 + 256 + 88 rows
    calls = []
    features = model.features.forward
    model.features.forward = lambda b: calls.append(len(b)) or features(b)
    torch.manual_seed(5)
    fast = mc_dropout_proba(model, x, 4)
    assert sum(calls) == len(x)  # the trunk saw each image once, not 4 times
    del model.features.forward
    model.eval()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.train()
    torch.manual_seed(5)
    with torch.no_grad():
        full = torch.stack([batched(lambda b: model(b).softmax(1), x) for _ in range(4)])
    model.eval()
    assert torch.equal(fast, full) and not torch.equal(fast[0], fast[1])  # the samples differ; each equals its pass
    assert not model.training and not any(m.training for m in model.modules())
