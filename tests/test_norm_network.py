"""The study's network weight-norm score (``network_norm``): known answers, the batched == loop check, refusals.

Known answers come from softmax regression (a linear network), whose SGD steps
are written out by hand in numpy below; the batched fine-tuning is checked
against the plain per-(u, y) loop on a tiny CNN with BatchNorm and dropout.
"""
import numpy as np
import pytest
import torch
from torch import nn

from alkit.learners import LEARNERS, CapabilityError, Learner
from alkit.strategies import Context, acquire, get_strategy
from alkit.strategies.norm import (
    NetworkNormParams, PoolTooLargeError, labelled_batches, network_norm_scores, network_norm_scores_loop,
)

OFFSET = 100  # pool index of candidate 0


class NetLearner(Learner):
    """Exposes a given module as its task network (not registered)."""

    name = "planted_network"

    def __init__(self, net):
        super().__init__(None, num_classes=0, device="cpu")
        self.net = net

    def task_network(self):
        return self.net


class NoNetworkLearner(Learner):
    name = "no_network"


def make_ctx(learner, x_lab, y_lab, x_cand, num_classes, params=None, seed=0):
    x_lab, x_cand = torch.as_tensor(x_lab), torch.as_tensor(x_cand)
    return Context(
        learner=learner, x_unlabelled=x_cand, x_labelled=x_lab, y_labelled=torch.as_tensor(y_lab).long(),
        unlabelled_indices=np.arange(OFFSET, OFFSET + len(x_cand)), labelled_indices=np.arange(len(x_lab)),
        num_classes=num_classes, seed=seed, params=params,
    )


def linear_net(w, b):
    """Softmax regression (C, d) as a module: (N, d) -> (N, C) logits, float64."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(w.shape[1], w.shape[0])).double()
    with torch.no_grad():
        net[1].weight.copy_(torch.as_tensor(w))
        net[1].bias.copy_(torch.as_tensor(b))
    return net


def hand_sgd(w, b, x_lab, y_lab, u, y, steps, lr):
    """``steps`` full-batch SGD steps of mean cross-entropy on labelled + (u, y), gradients written out."""
    x = np.vstack([x_lab, u[None]])  # (n, d)
    t = np.eye(w.shape[0])[np.r_[y_lab, y]]  # (n, C) one-hot targets
    for _ in range(steps):
        logits = x @ w.T + b
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        g = (p - t) / len(x)  # d(mean CE)/d(logits), (n, C)
        w, b = w - lr * g.T @ x, b - lr * g.sum(0)
    return w, b


def test_linear_network_matches_hand_written_sgd():
    rng = np.random.default_rng(0)
    c, d = 3, 4
    w0, b0 = rng.normal(size=(c, d)), rng.normal(size=c)
    x_lab, y_lab = rng.normal(size=(5, d)), rng.integers(0, c, 5)
    x_cand = rng.normal(size=(4, d))
    steps, lr = 3, 0.3
    theta = np.r_[w0.ravel(), b0]
    want_norm, want_dev = np.empty((4, c)), np.empty((4, c))
    for i, u in enumerate(x_cand):
        for y in range(c):
            w, b = hand_sgd(w0, b0, x_lab, y_lab, u, y, steps, lr)
            want_norm[i, y] = np.linalg.norm(np.r_[w.ravel(), b])
            want_dev[i, y] = np.linalg.norm(np.r_[w.ravel(), b] - theta)
    kw = dict(steps=steps, lr=lr, batch_size=5)  # batch = every labelled point, so the rng does not matter
    for fn in (network_norm_scores, network_norm_scores_loop):
        got = fn(linear_net(w0, b0), torch.tensor(x_cand), torch.tensor(x_lab), torch.tensor(y_lab), c,
                 np.random.default_rng(1), **kw)
        np.testing.assert_allclose(got.norm.numpy(), want_norm, rtol=1e-12)
        np.testing.assert_allclose(got.deviation.numpy(), want_dev, rtol=1e-12)
        assert got.base_norm == pytest.approx(np.linalg.norm(theta), rel=1e-12)


def tiny_cnn(num_classes=3):
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(inplace=True), nn.MaxPool2d(4),  # (B, 3, 7, 7)
        nn.Flatten(), nn.Dropout(0.5), nn.Linear(3 * 7 * 7, num_classes),  # (B, C)
    ).double()
    with torch.no_grad():  # BatchNorm running statistics away from (0, 1), so eval mode is visible
        net[1].running_mean.uniform_(-0.2, 0.2)
        net[1].running_var.uniform_(0.5, 2.0)
    return net.train()  # as a learner might leave it: the scorer must switch to eval and back


def test_batched_fine_tuning_equals_plain_loop_and_leaves_the_network_alone():
    net = tiny_cnn()
    g = torch.Generator().manual_seed(1)
    x_lab, y_lab = torch.rand(7, 1, 28, 28, generator=g), torch.tensor([0, 1, 2, 0, 1, 2, 0])
    x_cand = torch.rand(3, 1, 28, 28, generator=g)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    kw = dict(steps=2, lr=0.5, batch_size=4)  # 4 of 7 labelled points per step: the seeded draws matter
    loop = network_norm_scores_loop(net, x_cand, x_lab, y_lab, 3, np.random.default_rng(5), **kw)
    for chunk in (1, 2):  # 2 leaves a last chunk of one candidate
        batched = network_norm_scores(net, x_cand, x_lab, y_lab, 3, np.random.default_rng(5), chunk=chunk, **kw)
        np.testing.assert_allclose(batched.deviation.numpy(), loop.deviation.numpy(), rtol=1e-10)
        np.testing.assert_allclose(batched.norm.numpy(), loop.norm.numpy(), rtol=1e-12)
    assert loop.deviation.min() > 0 and loop.deviation.std() > 0  # the comparison compares something
    assert all(m.training for m in net.modules()), "train/eval modes not restored"
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed"
    # another seed draws other labelled batches, hence other fine-tunings
    other = network_norm_scores(net, x_cand, x_lab, y_lab, 3, np.random.default_rng(6), **kw)
    assert not torch.allclose(other.deviation, loop.deviation)
    for fn in (network_norm_scores, network_norm_scores_loop):
        # dropout off: a second call with the same seed repeats exactly (dropout would draw new masks)
        again = fn(net, x_cand, x_lab, y_lab, 3, np.random.default_rng(5), **kw)
        assert torch.equal(again.deviation, fn(net, x_cand, x_lab, y_lab, 3, np.random.default_rng(5), **kw).deviation)
        # BatchNorm in eval mode: the running statistics, not the batch's, normalise
        shifted = tiny_cnn()
        with torch.no_grad():
            shifted[1].running_mean += 0.3
        moved = fn(shifted, x_cand, x_lab, y_lab, 3, np.random.default_rng(5), **kw)
        assert not torch.allclose(moved.deviation, loop.deviation, rtol=1e-6)


def test_labelled_batches_are_distinct_points_and_seeded():
    a = labelled_batches(10, 4, 3, np.random.default_rng(0))
    assert [len(np.unique(b)) for b in a] == [4, 4, 4] and all(b.max() < 10 for b in a)
    assert all((x == y).all() for x, y in zip(a, labelled_batches(10, 4, 3, np.random.default_rng(0))))
    assert [len(b) for b in labelled_batches(2, 4, 2, np.random.default_rng(0))] == [2, 2]
    assert [len(b) for b in labelled_batches(0, 4, 2, np.random.default_rng(0))] == [0, 0]


def planted():
    """Two classes on the x-axis, fitted by a linear network; candidates: a duplicate, a far boundary point."""
    w, b = np.array([[2.0, 0.0], [-2.0, 0.0]]), np.zeros(2)  # class 0 for x > 0, confident at |x| = 2
    x_lab = np.array([[2.0, 0.0], [2.0, 0.1], [-2.0, 0.0], [-2.0, -0.1]])
    y_lab = np.array([0, 0, 1, 1])
    x_cand = np.array([[2.0, 0.0],  # duplicates a class-0 labelled point, predicted 0 with p = 0.9997
                       [0.0, 8.0]])  # far away on the decision boundary: p = (0.5, 0.5)
    return w, b, x_lab, y_lab, x_cand


@pytest.mark.parametrize("batched", [True, False, None])
@pytest.mark.parametrize("which", ["deviation", "norm"])
def test_planted_duplicate_costs_little_and_far_boundary_point_is_picked(which, batched):
    w, b, x_lab, y_lab, x_cand = planted()
    ctx = make_ctx(NetLearner(linear_net(w, b)), x_lab, y_lab, x_cand, 2,
                   params=NetworkNormParams(steps=5, lr=0.5, batch_size=4, which=which, batched=batched))
    r = network_norm_scores(linear_net(w, b), torch.tensor(x_cand), torch.tensor(x_lab), torch.tensor(y_lab), 2,
                            np.random.default_rng(0), steps=5, lr=0.5, batch_size=4)
    dev = r.deviation.numpy()
    # the duplicate with its own label barely moves the weights; with the conflicting label it must
    assert dev[0, 0] < 0.01 * dev[0, 1]
    # ... and far less than the far point under either label
    assert dev[0, 0] < 0.01 * dev[1].min()
    assert acquire("network_norm", ctx, 1).tolist() == [OFFSET + 1]
    scores = get_strategy("network_norm").fn(ctx)
    want = (r.deviation if which == "deviation" else r.norm).min(dim=1).values.numpy()
    np.testing.assert_allclose(scores, want, rtol=1e-12)


def test_refuses_more_candidates_than_max_pool_before_any_work():
    w, b, x_lab, y_lab, _ = planted()
    x_cand = np.random.default_rng(0).normal(size=(65, 2))
    ctx = make_ctx(NetLearner(linear_net(w, b)), x_lab, y_lab, x_cand, 2)  # default params: max_pool 64
    with pytest.raises(PoolTooLargeError, match=r"65 candidates exceed max_pool=64.*candidates:"):
        acquire("network_norm", ctx, 5)
    ctx.params = NetworkNormParams(max_pool=65, steps=1)
    assert len(acquire("network_norm", ctx, 5)) == 5


def test_learner_without_task_network_is_a_capability_error():
    w, b, x_lab, y_lab, x_cand = planted()
    ctx = make_ctx(NoNetworkLearner(None, 2, "cpu"), x_lab, y_lab, x_cand, 2)
    with pytest.raises(CapabilityError, match=r"no 'network'.*classifier"):
        acquire("network_norm", ctx, 1)
    assert get_strategy("network_norm").needs == ("network",)
    assert "network" in LEARNERS["classifier"].capabilities()
    assert "network" not in NoNetworkLearner.capabilities()


def test_wrong_output_width_is_an_error():
    w, b, x_lab, y_lab, x_cand = planted()
    with pytest.raises(ValueError, match=r"expected \(B, 3\) logits"):
        network_norm_scores(linear_net(w, b), torch.tensor(x_cand), torch.tensor(x_lab), torch.tensor(y_lab), 3,
                            np.random.default_rng(0))


@pytest.mark.parametrize("bad", [{"which": "sum"}, {"steps": 0}, {"lr": 0.0}, {"max_pool": 0}, {"chunk": 0}])
def test_params_are_checked(bad):
    with pytest.raises(ValueError):
        NetworkNormParams(**bad)
