"""Planted tests for selection_diagnostics: every number checked against a hand computation."""
import json
import math

import numpy as np
import pytest
import torch

from alkit.diagnostics import _STREAM_RANDOM_REFERENCE, class_entropy, selection_diagnostics
from alkit.strategies import Context


class PlantedLearner:
    """Outputs looked up by row id (rows 0..L-1 labelled, then candidates); records embed batch sizes."""

    def __init__(self, proba, latent):
        self.proba = torch.as_tensor(proba, dtype=torch.float32)
        self.latent = torch.as_tensor(latent, dtype=torch.float32)
        self.embed_sizes = []

    def predict_proba(self, x):
        return self.proba[x[:, 0].long()]

    def embed(self, x):
        self.embed_sizes.append(len(x))
        return self.latent[x[:, 0].long()]


class NoEmbedLearner:
    def __init__(self, proba):
        self.proba = torch.as_tensor(proba, dtype=torch.float32)

    def predict_proba(self, x):
        return self.proba[x[:, 0].long()]


def make_ctx(learner, n_lab, n_cand, y_lab, num_classes, seed=0):
    ids = torch.arange(n_lab + n_cand, dtype=torch.float32)[:, None]
    return Context(
        learner=learner, x_unlabelled=ids[n_lab:], x_labelled=ids[:n_lab],
        y_labelled=torch.as_tensor(y_lab, dtype=torch.int64),
        unlabelled_indices=np.arange(50, 50 + n_cand), labelled_indices=np.arange(n_lab),
        num_classes=num_classes, seed=seed,
    )


# labelled at (0,0) and (0,4); candidates (3,0), (3,4), (6,0) -- a 3-4-5 geometry
Z_LAB = [[0, 0], [0, 4]]
Z_CAND = [[3, 0], [3, 4], [6, 0]]
P_LAB = [[1, 0, 0], [0, 1, 0]]
P_CAND = [[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6]]  # predictions 0, 1, 2


def planted(seed=0, embed=True):
    learner = PlantedLearner(P_LAB + P_CAND, Z_LAB + Z_CAND) if embed else NoEmbedLearner(P_LAB + P_CAND)
    return make_ctx(learner, 2, 3, [0, 1], 3, seed)


def test_diagnostics_match_hand_computation():
    ctx = planted()
    # the whole candidate set is selected, so the random reference batch is the same set
    d = selection_diagnostics(ctx, [0, 1, 2], torch.tensor([0, 2, 2]))
    assert d["batch_size"] == 3 and d["n_labelled"] == 2
    assert d["class_counts"] == [1, 0, 2]
    assert d["class_entropy"] == pytest.approx(-(1 / 3) * math.log(1 / 3) - (2 / 3) * math.log(2 / 3))
    assert d["misclassified_fraction"] == pytest.approx(1 / 3)  # predicted (0, 1, 2) vs labels (0, 2, 2)
    assert d["mean_confidence"] == pytest.approx((0.7 + 0.6 + 0.6) / 3)
    # pairs: (3,0)-(3,4) = 4, (3,0)-(6,0) = 3, (3,4)-(6,0) = 5
    assert d["mean_pairwise_distance"] == pytest.approx(4.0)
    # nearest labelled: 3, 3, 6; all distances: (3, 5), (5, 3), (6, sqrt(52))
    assert d["mean_min_distance_to_labelled"] == pytest.approx(4.0)
    assert d["mean_distance_to_labelled"] == pytest.approx((3 + 5 + 5 + 3 + 6 + math.sqrt(52)) / 6)
    keys = ("mean_pairwise_distance", "mean_min_distance_to_labelled", "mean_distance_to_labelled", "mean_confidence")
    for k in keys:
        assert d["random_" + k] == pytest.approx(d[k])
    json.dumps(d)


def test_random_reference_is_a_seeded_batch_of_the_same_size():
    rng = np.random.default_rng(0)
    n_lab, n_cand = 4, 200
    z = rng.normal(size=(n_lab + n_cand, 3))
    p = rng.dirichlet(np.ones(3), size=n_lab + n_cand)

    def ctx(seed):
        return make_ctx(PlantedLearner(p, z), n_lab, n_cand, [0, 1, 2, 0], 3, seed)

    pos, y = [5, 6, 7], [0, 1, 2]
    a, b, c = (selection_diagnostics(ctx(s), pos, y) for s in (1, 1, 2))
    assert a == b
    assert a["random_mean_pairwise_distance"] != c["random_mean_pairwise_distance"]
    assert a["mean_pairwise_distance"] == c["mean_pairwise_distance"]
    # the reference is one of the candidate batches: its pairwise mean is that of 3 candidate rows
    zc = z[n_lab:]
    r = ctx(1).rng(stream=_STREAM_RANDOM_REFERENCE).choice(n_cand, size=3, replace=False)
    want = np.mean([np.linalg.norm(zc[i] - zc[j]) for i, j in ((r[0], r[1]), (r[0], r[2]), (r[1], r[2]))])
    assert a["random_mean_pairwise_distance"] == pytest.approx(want, rel=1e-5)


def test_without_embed_latent_entries_are_none():
    d = selection_diagnostics(planted(embed=False), [2, 0], [2, 1])
    assert d["class_counts"] == [0, 1, 1]
    assert d["misclassified_fraction"] == pytest.approx(0.5)
    for k in ("mean_pairwise_distance", "mean_min_distance_to_labelled", "mean_distance_to_labelled"):
        assert d[k] is None and d["random_" + k] is None


def test_cheap_embeds_only_batch_reference_and_labelled_rows():
    rng = np.random.default_rng(0)
    n_lab, n_cand = 6, 5000
    learner = PlantedLearner(rng.dirichlet(np.ones(4), n_lab + n_cand), rng.normal(size=(n_lab + n_cand, 8)))
    ctx = make_ctx(learner, n_lab, n_cand, [0, 1, 2, 3, 0, 1], 4)
    selection_diagnostics(ctx, np.arange(10), np.zeros(10, dtype=int))
    assert max(learner.embed_sizes) <= 10, "diagnostics embedded the whole pool"
    # when a strategy already embedded the pool, the cached codes are reused: no further embed calls
    ctx2 = make_ctx(learner, n_lab, n_cand, [0, 1, 2, 3, 0, 1], 4)
    ctx2.latent(), ctx2.labelled_latent()
    learner.embed_sizes.clear()
    assert selection_diagnostics(ctx2, np.arange(10), np.zeros(10, dtype=int)) == selection_diagnostics(
        ctx, np.arange(10), np.zeros(10, dtype=int))
    assert learner.embed_sizes == [10, 10], "cached pool codes should have been used for ctx2"


def test_single_point_batch_and_nothing_labelled():
    learner = PlantedLearner(P_CAND, Z_CAND)
    ctx = make_ctx(learner, 0, 3, [], 3)
    d = selection_diagnostics(ctx, [1], [1])
    assert d["mean_pairwise_distance"] is None
    assert d["mean_min_distance_to_labelled"] is None and d["mean_distance_to_labelled"] is None
    assert d["class_entropy"] == 0.0 and d["misclassified_fraction"] == 0.0


def test_class_entropy_balanced_is_log_c():
    assert class_entropy([5, 5, 5, 5]) == pytest.approx(math.log(4))
    assert class_entropy([0, 0]) == 0.0


def test_bad_inputs_raise():
    ctx = planted()
    with pytest.raises(ValueError):
        selection_diagnostics(ctx, [0, 1], [0])
    with pytest.raises(ValueError):
        selection_diagnostics(ctx, [0, 3], [0, 1])
