"""TypiClust, ProbCover and BADGE on planted answers (the registry contract is in test_strategy_contract)."""
import numpy as np
import pytest
import torch

from alkit.strategies import lowbudget as lb


def blobs(sizes, centres, spread=0.05, seed=0):
    """Tight Gaussian blobs: (N, d) points and their blob id, blob after blob."""
    g = torch.Generator().manual_seed(seed)
    c = torch.as_tensor(centres, dtype=torch.float32)
    pts = [c[i] + spread * torch.randn(n, c.shape[1], generator=g) for i, n in enumerate(sizes)]
    return torch.cat(pts), np.repeat(np.arange(len(sizes)), sizes)


def same_partition(a, b):
    """Two labelings define the same partition (cluster ids may differ)."""
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_kmeans_recovers_planted_blobs():
    z, truth = blobs([30, 50, 20], [[0, 0], [5, 0], [0, 5]])
    labels, centres = lb.kmeans(z, 3, np.random.default_rng(0))
    assert same_partition(labels, truth)
    for i in range(3):
        assert torch.allclose(centres[labels[truth == i][0]], z[truth == i].mean(0), atol=1e-5)


def test_kmeans_with_fewer_distinct_points_than_clusters():
    z = torch.tensor([[0.0, 0.0]] * 5 + [[1.0, 1.0]] * 5)
    labels, _ = lb.kmeans(z, 4, np.random.default_rng(0))
    assert labels.shape == (10,)
    assert len(set(labels[:5])) == 1 and len(set(labels[5:])) == 1 and labels[0] != labels[5]


def test_typicality_is_highest_at_the_dense_centre():
    # a centre point with 8 neighbours on a ring at distance 1, and an outlier at distance 10
    ring = [[np.cos(t), np.sin(t)] for t in np.linspace(0, 2 * np.pi, 8, endpoint=False)]
    z = torch.tensor([[0.0, 0.0]] + ring + [[10.0, 0.0]], dtype=torch.float32)
    t = lb.typicality(z, knn=4)
    assert int(t.argmax()) == 0
    assert int(t.argmin()) == 9
    # hand value for the centre: its 4 nearest are ring points at squared distance 1
    assert float(t[0]) == pytest.approx(1 / (1 + 1e-5), rel=1e-4)
    assert torch.isinf(lb.typicality(z[:1], knn=20)).all()  # one point: K = 0


def test_typiclust_takes_the_typical_point_of_the_largest_clusters_without_labels():
    # blob A (labelled point inside), blob B of 40, blob C of 25; each has an exact centre point
    z, truth = blobs([30, 40, 25], [[0, 0], [10, 0], [0, 10]], spread=0.3)
    z[30] = torch.tensor([10.0, 0.0])  # the centre of B
    z[70] = torch.tensor([0.0, 10.0])  # the centre of C
    z_lab, cand = z[:1], z[1:]
    p = lb.TypiClustParams(max_clusters=3, min_cluster_size=5, knn=10)
    picks = lb.typiclust_select(z_lab, cand, 2, np.random.default_rng(0), p)
    chosen = truth[1:][picks]
    assert chosen.tolist() == [1, 2], "largest uncovered cluster first, then the next"
    # the most typical point of a blob is one near its centre
    assert float((cand[picks[0]] - torch.tensor([10.0, 0.0])).norm()) < 0.5
    assert float((cand[picks[1]] - torch.tensor([0.0, 10.0])).norm()) < 0.5


def test_typiclust_when_every_cluster_holds_a_label_and_budget_exceeds_clusters():
    z, truth = blobs([20, 20], [[0, 0], [10, 0]])
    z_lab = torch.cat([z[:1], z[20:21]])  # one labelled point in each blob: no uncovered cluster
    cand = torch.cat([z[1:20], z[21:]])
    p = lb.TypiClustParams(max_clusters=2, min_cluster_size=5, knn=5)
    picks = lb.typiclust_select(z_lab, cand, 5, np.random.default_rng(0), p)
    assert np.unique(picks).size == 5
    # it alternates between the two clusters (wrap-around), so both get points
    assert set(np.r_[truth[1:20], truth[21:]][picks]) == {0, 1}


def test_typiclust_passes_over_exhausted_clusters():
    # cluster sizes 6 and 30; budget 12 empties the small one (6 candidates) and continues in the big one
    z, truth = blobs([6, 30], [[0, 0], [10, 0]])
    p = lb.TypiClustParams(max_clusters=2, min_cluster_size=5, knn=5)
    picks = lb.typiclust_select(z[:0], z, 12, np.random.default_rng(0), p)
    assert np.unique(picks).size == 12
    assert (truth[picks] == 0).sum() == 6


def test_purity_delta_is_the_order_statistic():
    d = np.arange(1, 21, dtype=float)  # 20 balls; pure while delta <= d
    delta = lb.purity_delta(d, 0.95)
    assert delta == 2.0
    assert np.mean(d >= delta) >= 0.95
    assert np.mean(d >= delta + 1e-9) < 0.95  # any larger radius breaks the purity
    assert lb.purity_delta(d, 1.0) == 1.0
    assert lb.purity_delta(d, 0.5) == 11.0


def test_nearest_other_label_by_hand():
    z = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    lab = np.array([0, 0, 1, 1])
    d = lb.nearest_other_label(z, lab, z, lab)
    assert d.tolist() == pytest.approx([3.0, 2.0, 2.0, 6.0], abs=1e-5)


def test_max_coverage_greedy_on_a_planted_graph():
    # centres 0..3, targets 0..5; centre 0 is labelled and covers target 0
    edges = [(0, 0), (1, 0), (1, 1), (1, 2), (2, 2), (2, 3), (3, 4), (3, 5), (3, 3)]
    c, t = np.array(edges).T
    covered = np.zeros(6, dtype=bool)
    covered[0] = True
    eligible = np.array([False, True, True, True])
    picks, covered = lb.max_coverage(c, t, 4, 6, covered, 3, eligible)
    # 3 covers 3 new, then 1 covers {1, 2} (2 new) over 2's {2} (1 new), then nothing is left
    assert picks == [3, 1]
    assert covered.all()


def test_probcover_covers_the_uncovered_blobs_and_falls_back_when_all_is_covered():
    z, truth = blobs([20, 40, 25], [[0, 0], [10, 0], [0, 10]], spread=0.2)
    z_lab, cand = z[:1], z[1:]
    rng = lambda s: np.random.default_rng([0, s])  # noqa: E731
    p = lb.ProbCoverParams(delta=3.0)
    pos, info = lb.probcover_select(z_lab, cand, 3, 3, rng, p)
    assert sorted(truth[1:][pos[:2]].tolist()) == [1, 2] and truth[1:][pos[0]] == 1, "largest uncovered blob first"
    assert info["coverage_before"] == pytest.approx(20 / 85)
    assert info["coverage_after"] == 1.0
    assert info["fallback"] == 1  # the third pick: nothing left to cover, a seeded random candidate
    again, _ = lb.probcover_select(z_lab, cand, 3, 3, rng, p)
    assert again.tolist() == pos.tolist()
    assert np.unique(pos).size == 3


def test_probcover_purity_delta_separates_the_blobs():
    # with k-means pseudo-labels = the blobs, every ball is pure up to the gap between blobs
    z, truth = blobs([30, 30, 30], [[0, 0], [10, 0], [0, 10]], spread=0.2)
    rng = lambda s: np.random.default_rng([1, s])  # noqa: E731
    pos, info = lb.probcover_select(z[:0], z, 3, 3, rng, lb.ProbCoverParams())
    assert 5.0 < info["delta"] < 10.5  # about the blob distance, far above the blob radius
    assert sorted(truth[pos].tolist()) == [0, 1, 2]


def test_badge_distance_identity_and_first_pick():
    g = torch.Generator().manual_seed(0)
    h = torch.rand(30, 6, generator=g)
    proba = torch.softmax(torch.randn(30, 4, generator=g), 1)
    a = -proba.clone()
    a[torch.arange(30), proba.argmax(1)] += 1
    emb = (a[:, :, None] * h[:, None, :]).reshape(30, -1)  # the explicit (U, C*H) gradient embedding
    pos = lb.badge_select(h, proba, 5, np.random.default_rng(0))
    assert pos[0] == int(emb.norm(dim=1).argmax())
    assert np.unique(pos).size == 5
    # the sampling weights after the first pick are the explicit squared distances
    d2 = (emb - emb[pos[0]]).square().sum(1)
    a_sq, h_sq = a.square().sum(1), h.square().sum(1)
    ident = a_sq * h_sq + a_sq[pos[0]] * h_sq[pos[0]] - 2 * (a @ a[pos[0]]) * (h @ h[pos[0]])
    assert torch.allclose(ident.clamp_min(0), d2, atol=1e-5)


def test_badge_never_picks_a_copy_of_a_chosen_point():
    # rows 0 and 1 are identical (largest gradient), row 2 and 3 differ: the copy has D = 0 once 0 is chosen
    h = torch.tensor([[3.0, 0.0], [3.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    proba = torch.tensor([[0.4, 0.6], [0.4, 0.6], [0.9, 0.1], [0.7, 0.3]])
    for seed in range(20):
        pos = lb.badge_select(h, proba, 3, np.random.default_rng(seed))
        assert pos[0] in (0, 1) and set(pos.tolist()) == {pos[0], 2, 3}
    # all gradients zero (confident one-hot predictions): uniform over the unchosen, still valid
    pos = lb.badge_select(h, torch.tensor([[1.0, 0.0]] * 4), 4, np.random.default_rng(0))
    assert sorted(pos.tolist()) == [0, 1, 2, 3]


def test_penultimate_features_by_method_and_by_hook():
    from alkit.models import Classifier

    net = Classifier(10, "small", 0.3)
    x = torch.rand(7, 1, 28, 28, generator=torch.Generator().manual_seed(0))

    class L:
        def task_network(self):
            return net

    class Plain(torch.nn.Module):  # no penultimate method: the last Linear's input via a hook
        def __init__(self):
            super().__init__()
            self.f, self.head = net.features, net.head

        def forward(self, x):
            return self.head(self.f(x))

    class L2:
        def task_network(self):
            return Plain()

    net.train()
    a = lb.penultimate_features(L(), x)
    assert net.training, "the network's mode is restored"
    b = lb.penultimate_features(L2(), x)
    net.eval()
    assert a.shape == (7, 128) and torch.allclose(a, net.penultimate(x)) and torch.allclose(a, b)


@pytest.mark.parametrize("cls,bad", [
    (lb.ProbCoverParams, {"purity": 0.0}), (lb.ProbCoverParams, {"delta": -1.0}),
    (lb.ProbCoverParams, {"targets": 0}), (lb.TypiClustParams, {"knn": 0}),
])
def test_bad_strategy_params_are_refused(cls, bad):
    with pytest.raises(ValueError):
        cls(**bad)


def test_kmeans_fitted_on_a_subsample_still_labels_every_point():
    z, truth = blobs([100, 150, 80], [[0, 0], [5, 0], [0, 5]], spread=0.3)
    labels, _ = lb.kmeans(z, 3, np.random.default_rng(1), sample=60)
    assert labels.shape == (330,) and same_partition(labels, truth)
