"""Planted tests for the latent strategies (Alg 1, Alg 2, core-set), norm maximin and BALD.

A planted learner looks its outputs up in tables: every image is a (1,)
tensor holding its row id, so the latent geometry and the model's
probabilities are whatever the test writes down, and the right selection can
be worked out by hand.
"""
import math

import numpy as np
import pytest
import torch

from alkit.strategies import Context, acquire, get_strategy
from alkit.strategies.bald import BaldParams, bald_scores
from alkit.strategies.latent import alg1_select, alg2_scores, cdist_reduce, class_quotas, kcenter_greedy
from alkit.strategies.norm import (
    NormExactParams, NormParams, PoolTooLargeError, compare_norm, kernel_norm_approx_scores, kernel_norm_exact_scores,
    spearman,
)

OFFSET = 100  # pool index of candidate 0, so positions and pool indices differ


class PlantedLearner:
    """Outputs looked up by row id: rows 0..L-1 are the labelled points, L.. the candidates."""

    def __init__(self, proba, latent, mc=None):
        self.proba = torch.as_tensor(proba, dtype=torch.float32)
        self.latent = torch.as_tensor(latent, dtype=torch.float32)
        self.mc = None if mc is None else torch.as_tensor(mc, dtype=torch.float32)

    def predict_proba(self, x):
        return self.proba[x[:, 0].long()]

    def embed(self, x):
        return self.latent[x[:, 0].long()]

    def mc_proba(self, x, samples):
        return self.mc[:samples, x[:, 0].long()]


def onehot_proba(pred, num_classes, conf=0.9):
    """Rows with ``conf`` on the predicted class and the rest spread evenly."""
    pred = np.asarray(pred)
    p = np.full((pred.size, num_classes), (1 - conf) / (num_classes - 1))
    p[np.arange(pred.size), pred] = conf
    return p


def make_ctx(z_lab, y_lab, pred_lab, z_cand, proba_cand, num_classes, seed=0, params=None, mc=None):
    z_cand = np.asarray(z_cand, dtype=np.float64).reshape(len(proba_cand), -1)
    n_lab, n_cand, d = len(y_lab), len(z_cand), z_cand.shape[1]
    z_lab = np.asarray(z_lab, dtype=np.float64).reshape(n_lab, d)
    proba_lab = onehot_proba(pred_lab, num_classes) if n_lab else np.zeros((0, num_classes))
    learner = PlantedLearner(
        np.concatenate([proba_lab, np.asarray(proba_cand)]),
        np.concatenate([z_lab.reshape(n_lab, d), z_cand]),
        mc,
    )
    ids = torch.arange(n_lab + n_cand, dtype=torch.float32)[:, None]
    return Context(
        learner=learner, x_unlabelled=ids[n_lab:], x_labelled=ids[:n_lab],
        y_labelled=torch.as_tensor(np.asarray(y_lab, dtype=np.int64)),
        unlabelled_indices=np.arange(OFFSET, OFFSET + n_cand), labelled_indices=np.arange(n_lab),
        num_classes=num_classes, seed=seed, params=params,
    )


# ------------------------------------------------------------------------------------------
# distances


@pytest.mark.parametrize("reduce", [None, "min", "sum", "mean"])
def test_cdist_reduce_matches_full_matrix_in_small_blocks(reduce):
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(37, 5, generator=g, dtype=torch.float64), torch.randn(11, 5, generator=g, dtype=torch.float64)
    full = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1).sqrt()  # (37, 11)
    want = {None: full, "min": full.min(1).values, "sum": full.sum(1), "mean": full.mean(1)}[reduce]
    got = cdist_reduce(a, b, reduce, block_rows=4, exact=True)
    torch.testing.assert_close(got, want)


def test_cdist_reduce_empty_reference_set():
    a = torch.zeros(3, 2)
    assert torch.isinf(cdist_reduce(a, torch.zeros(0, 2), "min")).all()
    assert (cdist_reduce(a, torch.zeros(0, 2), "sum") == 0).all()


# ------------------------------------------------------------------------------------------
# class quotas


def test_quotas_divisible_and_remainder_seeded():
    q = class_quotas(np.array([10, 10, 10]), 9, np.random.default_rng(0))
    assert q.tolist() == [3, 3, 3]
    seen = set()
    for seed in range(20):
        q = class_quotas(np.array([10, 10, 10]), 7, np.random.default_rng(seed))
        assert q.sum() == 7 and sorted(q.tolist()) == [2, 2, 3]
        assert (q == class_quotas(np.array([10, 10, 10]), 7, np.random.default_rng(seed))).all()
        seen.add(int(np.argmax(q)))
    assert seen == {0, 1, 2}, "the remainder should not always go to the same class"


def test_quotas_spill_shortfall_to_classes_with_candidates():
    assert class_quotas(np.array([1, 10, 10]), 9, np.random.default_rng(0)).tolist() == [1, 4, 4]
    assert class_quotas(np.array([1, 1, 100]), 10, np.random.default_rng(0)).tolist() == [1, 1, 8]
    for seed in range(10):  # the shortfall levels the open classes, whoever got the remainder
        q = class_quotas(np.array([0, 5, 5, 5]), 10, np.random.default_rng(seed))
        assert q.sum() == 10 and q[0] == 0 and sorted(q[1:].tolist()) == [3, 3, 4]
    assert class_quotas(np.array([2, 3]), 5, np.random.default_rng(0)).tolist() == [2, 3]
    with pytest.raises(ValueError):
        class_quotas(np.array([2, 2]), 5, np.random.default_rng(0))


# ------------------------------------------------------------------------------------------
# Algorithm 1


def _alg1_planted_ctx():
    # class 0 anchor at (0, 0); class 1 anchor at (50, 0); a class-0 labelled point at (0, -100)
    # that the model calls class 1: not an anchor (if it were, (0, 1) would be picked first).
    z_lab = [[0, 0], [50, 0], [0, -100]]
    y_lab, pred_lab = [0, 1, 0], [0, 1, 1]
    z_cand = [[4, 0], [-3, 0], [0, 1], [0, -2],  # predicted 0
              [53, 0], [50, 1], [48, 0]]  # predicted 1
    pred = [0, 0, 0, 0, 1, 1, 1]
    return make_ctx(z_lab, y_lab, pred_lab, z_cand, onehot_proba(pred, 2), 2)


def test_alg1_picks_farthest_by_sum_distance_in_order():
    # class 0, by hand: distances to (0,0): 4, 3, 1, 2 -> (4,0); sums then: (-3,0) 3+7=10,
    # (0,1) 1+4.12=5.12, (0,-2) 2+4.47=6.47 -> (-3,0); then (0,1) 5.12+3.16=8.28,
    # (0,-2) 6.47+3.61=10.08 -> (0,-2).  class 1 around (50,0): (53,0) 3, (50,1) 1, (48,0) 2 -> (53,0);
    # then (50,1) 1+3.16, (48,0) 2+5 -> (48,0); then (50,1).
    ctx = _alg1_planted_ctx()
    assert acquire("alg1", ctx, 6).tolist() == [OFFSET + i for i in (0, 1, 3, 4, 6, 5)]


def test_alg1_budget_not_divisible_gives_remainder_to_a_seeded_class():
    greedy = {0: [0, 1, 3, 2], 1: [4, 6, 5]}  # per-class pick order, from the test above
    extra_class = set()
    for seed in range(12):
        ctx = _alg1_planted_ctx()
        ctx.seed = seed
        pos = (acquire("alg1", ctx, 5) - OFFSET).tolist()
        n0 = sum(p < 4 for p in pos)
        assert sorted([n0, 5 - n0]) == [2, 3]
        assert pos == greedy[0][:n0] + greedy[1][: 5 - n0], "each class takes a prefix of its greedy order"
        ctx2 = _alg1_planted_ctx()
        ctx2.seed = seed
        assert (acquire("alg1", ctx2, 5) - OFFSET).tolist() == pos
        extra_class.add(int(n0 == 2))
    assert extra_class == {0, 1}, "the seed decides which class gets the remainder"


def test_alg1_class_without_anchors_starts_farthest_from_all_labelled():
    # class 1's only labelled point is misclassified -> no anchors for class 1.
    # min distance to the labelled set: (10,0) 10, (20,0) 1, (12,3) 9.49 -> (10,0) first,
    # then farthest from it: (20,0) 10 vs (12,3) 3.61.
    z_lab, y_lab, pred_lab = [[0, 0], [21, 0]], [0, 1], [0, 0]
    z_cand = [[-1, 0], [-2, 0], [10, 0], [20, 0], [12, 3]]
    pred = [0, 0, 1, 1, 1]
    ctx = make_ctx(z_lab, y_lab, pred_lab, z_cand, onehot_proba(pred, 2), 2)
    assert acquire("alg1", ctx, 4).tolist() == [OFFSET + i for i in (1, 0, 2, 3)]
    z = ctx.latent()
    _, starts = alg1_select(z, ctx.proba().argmax(1), ctx.proba().max(1).values, ctx.labelled_latent(),
                            [ctx.labelled_latent()[:1], ctx.labelled_latent()[:0]], np.array([2, 2]))
    assert starts == ["anchors", "farthest"]


def test_alg1_without_any_labelled_point_starts_least_confident():
    proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.8, 0.2]])
    z = torch.tensor([[0.0], [1.0], [5.0]])
    pos, starts = alg1_select(z, torch.tensor([0, 0, 0]), torch.tensor(proba.max(1)), torch.zeros(0, 1),
                              [torch.zeros(0, 1), torch.zeros(0, 1)], np.array([2, 0]))
    assert starts == ["least_confident", "none"]
    assert pos.tolist() == [1, 2]  # least confident, then farthest from it


def test_alg1_class_with_too_few_candidates_spills_to_the_other():
    ctx = _alg1_planted_ctx()
    # only 3 candidates predicted class 1; a budget of 7 puts 4 in class 0 and 3 in class 1
    pos = acquire("alg1", ctx, 7) - OFFSET
    assert sorted(pos.tolist()) == list(range(7))
    # 8 classes predicted, 6 without a single candidate: the budget still gets spent
    z_cand = np.arange(6, dtype=float)[:, None]
    proba = onehot_proba([0, 0, 0, 0, 1, 1], 8)
    ctx = make_ctx([[0.0]], [0], [0], z_cand, proba, 8)
    assert sorted((acquire("alg1", ctx, 6) - OFFSET).tolist()) == list(range(6))


def _alg1_reference(z, pred, anchors, quota):
    """Python-loop transcription of Algorithm 1 for classes that have anchors."""
    out = []
    for c, q in enumerate(quota):
        members = [i for i in range(len(z)) if pred[i] == c]
        a = [np.asarray(v) for v in anchors[c]]
        for _ in range(q):
            best, best_s = None, -1.0
            for i in members:
                if i in out:
                    continue
                s = sum(float(np.linalg.norm(z[i] - v)) for v in a)
                if s > best_s:
                    best, best_s = i, s
            out.append(best)
            a.append(z[best])
    return out


def test_alg1_matches_python_reference_on_random_geometry():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(60, 3))
    pred = rng.integers(0, 3, size=60)
    anchors = [rng.normal(size=(k, 3)) for k in (1, 2, 4)]
    quota = np.array([4, 3, 5])
    got, _ = alg1_select(torch.tensor(z), torch.tensor(pred), torch.ones(60, dtype=torch.float64),
                         torch.tensor(np.concatenate(anchors)), [torch.tensor(a) for a in anchors], quota)
    assert got.tolist() == _alg1_reference(z, pred, anchors, quota)


# ------------------------------------------------------------------------------------------
# Algorithm 2


def test_alg2_prefers_low_confidence_far_over_low_confidence_near():
    # anchors of class 0 at (0,0) and (0,2): mean distance of (10,1) is sqrt(101), of (1,1) sqrt(2).
    z_lab, y_lab, pred_lab = [[0, 0], [0, 2], [30, 0]], [0, 0, 1], [0, 0, 1]
    z_cand = [[10, 1], [1, 1], [10, 1], [29, 0]]
    proba = np.array([[0.5, 0.5], [0.5, 0.5], [0.99, 0.01], [0.2, 0.8]])  # far-uncertain, near-uncertain, far-sure, c1
    ctx = make_ctx(z_lab, y_lab, pred_lab, z_cand, proba, 2)
    scores = get_strategy("alg2").fn(ctx)
    d = np.array([math.sqrt(101), math.sqrt(2), math.sqrt(101), 1.0])
    want = (1 - proba.max(1)) * d / d.max()
    np.testing.assert_allclose(scores, want, rtol=1e-5)
    assert acquire("alg2", ctx, 1).tolist() == [OFFSET + 0]
    assert scores[0] > scores[1] and scores[0] > scores[2]


def test_alg2_predicted_class_without_anchors_counts_as_farthest():
    z = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.5, 0.0]])
    proba = torch.tensor([[0.6, 0.4], [0.6, 0.4], [0.3, 0.7]])
    anchors = [torch.tensor([[0.0, 0.0]]), torch.zeros(0, 2)]  # class 1 has none
    s = alg2_scores(z, proba, anchors)
    torch.testing.assert_close(s, torch.tensor([0.4 * 1 / 3, 0.4 * 1.0, 0.3 * 1.0]))


# ------------------------------------------------------------------------------------------
# core-set


def test_coreset_returns_the_known_farthest_first_cover():
    # labelled at the origin; by hand: (10,0) at 10, then (0,9) at 9, then (5,0) at 5
    ctx = make_ctx([[0, 0]], [0], [0], [[1, 0], [5, 0], [10, 0], [6, 0], [0, 9]], onehot_proba([0] * 5, 2), 2)
    assert acquire("coreset", ctx, 3).tolist() == [OFFSET + i for i in (2, 4, 1)]


def test_coreset_cover_radius_matches_brute_force_greedy():
    rng = np.random.default_rng(1)
    z, z_lab = rng.normal(size=(80, 4)), rng.normal(size=(5, 4))
    got = kcenter_greedy(torch.tensor(z), torch.tensor(z_lab), 10)
    centres, want = list(z_lab), []
    for _ in range(10):
        m = np.array([min(np.linalg.norm(p - c) for c in centres) for p in z])
        m[want] = -1
        want.append(int(m.argmax()))
        centres.append(z[want[-1]])
    assert got.tolist() == want


def test_coreset_without_labelled_points_is_seeded():
    z = np.random.default_rng(2).normal(size=(30, 2))
    ctx = lambda seed: make_ctx(np.zeros((0, 2)), [], [], z, onehot_proba([0] * 30, 2), 2, seed=seed)  # noqa: E731
    assert (acquire("coreset", ctx(5), 4) == acquire("coreset", ctx(5), 4)).all()


# ------------------------------------------------------------------------------------------
# norm maximin, kernel versions (the network version: test_norm_network.py)


def _hand_norm(z_lab, y_lab, z_cand, num_classes, h, ridge):
    """Brute force: invert the bordered kernel matrix for every candidate and label (numpy)."""
    out = []
    for u in z_cand:
        x = np.vstack([z_lab, u[None]])
        d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
        k_inv = np.linalg.inv(np.exp(-d2 / (2 * h * h)) + ridge * np.eye(len(x)))
        norms = []
        for y in range(num_classes):
            t = -np.ones((len(x), num_classes))
            t[np.arange(len(y_lab)), y_lab] = 1
            t[-1, y] = 1
            norms.append(np.trace(t.T @ k_inv @ t))
        out.append(math.sqrt(min(norms)))
    return np.array(out)


def test_kernel_norm_exact_and_approx_match_hand_computation_on_six_points():
    # 1-d latent: class 0 at 0 and 0.5, class 1 at 4; candidates near class 0, on the boundary, far away
    z_lab = np.array([[0.0], [0.5], [4.0]])
    y_lab = np.array([0, 0, 1])
    z_cand = np.array([[-0.2], [2.0], [20.0]])
    h, ridge = 1.0, 1e-6
    want = _hand_norm(z_lab, y_lab, z_cand, 2, h, ridge)
    args = (torch.tensor(z_cand), torch.tensor(z_lab), torch.tensor(y_lab), 2, h, ridge)
    np.testing.assert_allclose(kernel_norm_exact_scores(*args).numpy(), want, rtol=1e-9)
    np.testing.assert_allclose(kernel_norm_approx_scores(*args).numpy(), want, rtol=1e-9)
    # the maximin ranks the point between the classes and the unexplored point above the near one
    assert want[0] < want[1] and want[0] < want[2]


def test_kernel_norm_two_classes_is_the_papers_binary_criterion():
    # with +-1 targets y_bin, one-vs-rest gives columns (-y_bin, y_bin): ||F||^2 = 2 y^T K^-1 y
    z_lab, y_lab, z_cand = np.array([[0.0], [1.0], [3.0]]), np.array([0, 1, 1]), np.array([[0.4], [2.0]])
    h, ridge = 0.8, 1e-8
    paper = []
    for u in z_cand:
        x = np.vstack([z_lab, u[None]])
        k = np.exp(-((x - x.T) ** 2) / (2 * h * h)) + ridge * np.eye(4)
        paper.append(min(float(y @ np.linalg.solve(k, y)) for y in
                         (np.r_[2 * y_lab - 1, -1.0], np.r_[2 * y_lab - 1, 1.0])))
    got = kernel_norm_exact_scores(torch.tensor(z_cand), torch.tensor(z_lab), torch.tensor(y_lab), 2, h, ridge)
    np.testing.assert_allclose(got.numpy() ** 2, 2 * np.array(paper), rtol=1e-7)


def test_kernel_norm_exact_refuses_large_pools_and_strategies_agree():
    rng = np.random.default_rng(0)
    z_lab, y_lab = rng.normal(size=(12, 3)), rng.integers(0, 3, 12)
    z_cand = rng.normal(size=(40, 3))
    ctx = make_ctx(z_lab, y_lab, y_lab, z_cand, onehot_proba(rng.integers(0, 3, 40), 3), 3,
                   params=NormExactParams(max_pool=39))
    with pytest.raises(PoolTooLargeError, match="kernel_norm_approx"):
        acquire("kernel_norm_exact", ctx, 5)
    ctx.params = NormExactParams(max_pool=40)
    exact = acquire("kernel_norm_exact", ctx, 5)
    ctx.params = NormParams()
    assert (acquire("kernel_norm_approx", ctx, 5) == exact).all()


def test_compare_norm_reports_agreement_and_times():
    rng = np.random.default_rng(3)
    z_lab, y_lab = rng.normal(size=(20, 4)), rng.integers(0, 4, 20)
    ctx = make_ctx(z_lab, y_lab, y_lab, rng.normal(size=(90, 4)), onehot_proba(rng.integers(0, 4, 90), 4), 4)
    r = compare_norm(ctx, budget=10, pool_size=50)
    assert r["n_candidates"] == 50 and r["n_labelled"] == 20
    assert r["spearman"] > 0.999 and r["top_overlap"] == 1.0 and r["max_rel_diff"] < 1e-8
    assert r["seconds_exact"] > 0 and r["seconds_approx"] > 0


def test_spearman_by_hand():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties share average ranks: ranks (0.5, 0.5, 2) vs (0, 1, 2) -> Pearson = 0.866...
    assert spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(math.sqrt(3) / 2)


# ------------------------------------------------------------------------------------------
# BALD


def test_bald_scores_disagreement_high_and_agreeing_uncertainty_low():
    t = 6
    disagree = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).repeat(t // 2, 1)  # (T, 2): confident, opposite
    flat = torch.full((t, 2), 0.5)  # uncertain but every sample says so
    sure = torch.tensor([[0.9, 0.1]]).repeat(t, 1)
    mc = torch.stack([disagree, flat, sure], dim=1)  # (T, 3, 2)
    s = bald_scores(mc)
    torch.testing.assert_close(s, torch.tensor([math.log(2), 0.0, 0.0]), atol=1e-6, rtol=0)


def test_bald_strategy_uses_mc_samples_and_is_reproducible():
    rng = np.random.default_rng(0)
    t, n = 20, 5
    mc = np.tile(np.array([0.5, 0.5]), (t, 1 + n, 1))  # row 0 is the labelled point
    mc[:, 1 + 3] = np.where(rng.random((t, 1)) < 0.5, [0.95, 0.05], [0.05, 0.95])  # point 3 disagrees
    ctx = make_ctx([[0.0]], [0], [0], np.zeros((n, 1)), np.full((n, 2), 0.5), 2, mc=mc,
                   params=BaldParams(samples=20))
    assert acquire("bald", ctx, 1).tolist() == [OFFSET + 3]
    with pytest.raises(ValueError):
        BaldParams(samples=1)


def test_bald_seeds_dropout_and_restores_global_rng():
    class Stochastic(PlantedLearner):
        def mc_proba(self, x, samples):
            return torch.rand(samples, len(x), 3).softmax(-1)

    def ctx(seed):
        c = make_ctx([[0.0]], [0], [0], np.zeros((8, 1)), np.full((8, 3), 1 / 3), 3, seed=seed,
                     params=BaldParams())
        c.learner.__class__ = Stochastic
        return c

    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = get_strategy("bald").fn(ctx(1))
    assert torch.equal(torch.random.get_rng_state(), before)
    np.testing.assert_array_equal(a, get_strategy("bald").fn(ctx(1)))
    assert not np.array_equal(a, get_strategy("bald").fn(ctx(2)))
