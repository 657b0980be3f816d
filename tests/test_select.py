import numpy as np
import pytest
import torch

from alkit.config import ConfigError
from alkit.learners import make_learner
from alkit.strategies import Context, acquire, get_strategy, select
from alkit.strategies.base import UnknownStrategyError


def test_select_takes_highest_scores_in_order():
    scores = np.array([0.1, 0.9, 0.5, 0.7, 0.2])
    assert select(scores, 3, np.random.default_rng(0)).tolist() == [1, 3, 2]


def test_select_breaks_ties_by_seed_and_reproducibly():
    scores = np.zeros(100)
    a = select(scores, 10, np.random.default_rng(5))
    b = select(scores, 10, np.random.default_rng(5))
    c = select(scores, 10, np.random.default_rng(6))
    assert a.tolist() == b.tolist() and a.tolist() != c.tolist()
    assert a.tolist() != list(range(10)), "ties must not fall back to index order"


def test_select_rejects_nan_and_bad_budget():
    with pytest.raises(ValueError, match="NaN"):
        select(np.array([0.1, np.nan]), 1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="budget"):
        select(np.zeros(3), 4, np.random.default_rng(0))


def test_unknown_strategy_lists_known_ones():
    with pytest.raises(UnknownStrategyError, match="known strategies: .*least_confidence"):
        get_strategy("least_confident")


class _Fixed:
    """A fake learner with planted class probabilities."""

    def __init__(self, proba):
        self.proba = torch.tensor(proba, dtype=torch.float32)

    def predict_proba(self, x):
        return self.proba[: len(x)]


def _ctx(proba):
    n = len(proba)
    return Context(
        learner=_Fixed(proba), x_unlabelled=torch.zeros(n, 1, 28, 28), x_labelled=torch.zeros(0, 1, 28, 28),
        y_labelled=torch.zeros(0, dtype=torch.long), unlabelled_indices=np.arange(100, 100 + n),
        labelled_indices=np.arange(0), num_classes=3, seed=0,
    )


PROBA = [
    [0.90, 0.05, 0.05],  # confident
    [0.40, 0.35, 0.25],  # least confident (max .40); margin .05; high entropy
    [0.50, 0.49, 0.01],  # smallest margin .01; low entropy
    [0.34, 0.335, 0.325],  # smallest margin .005, highest entropy, least confident overall
]


@pytest.mark.parametrize(
    "name, expected",
    [("least_confidence", [103, 101]), ("margin", [103, 102]), ("entropy", [103, 101])],
)
def test_uncertainty_strategies_pick_planted_points(name, expected):
    assert acquire(name, _ctx(PROBA), 2).tolist() == expected


def test_margin_prefers_small_gap_over_flat():
    proba = [[0.40, 0.35, 0.25], [0.50, 0.49, 0.01]]
    assert acquire("margin", _ctx(proba), 1).tolist() == [101]
    assert acquire("entropy", _ctx(proba), 1).tolist() == [100]


def test_strategy_without_params_rejects_params():
    from alkit.strategies.base import make_params

    with pytest.raises(ConfigError, match="takes no parameters"):
        make_params(get_strategy("margin"), {"k": 1})


def test_unknown_learner_and_bad_learner_key():
    with pytest.raises(ConfigError, match="known learners"):
        make_learner("vgg", {}, 10, "cpu")
    with pytest.raises(ConfigError, match="epoch.*did you mean 'epochs'"):
        make_learner("classifier", {"epoch": 3}, 10, "cpu")
