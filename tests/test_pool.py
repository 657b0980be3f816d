import numpy as np
import pytest

from alkit.pool import BudgetError, InitialSet, Pool, initial_labelled

LABELS = np.repeat(np.arange(10), 100)  # 1000 points, 100 per class


def test_pool_labels_and_guards():
    p = Pool(10, labelled=[1, 3])
    assert p.labelled_indices().tolist() == [1, 3]
    assert p.unlabelled_indices().tolist() == [0, 2, 4, 5, 6, 7, 8, 9]
    with pytest.raises(ValueError, match="already labelled"):
        p.label([3])
    with pytest.raises(ValueError, match="duplicate"):
        p.label([4, 4])
    with pytest.raises(ValueError, match="out of range"):
        p.label([10])
    with pytest.raises(ValueError):
        p.unlabelled_indices()[0] = 5  # read-only view: strategies cannot mutate the split
    assert p.n_labelled == 2


def test_random_initial_is_seeded():
    a = initial_labelled(LABELS, InitialSet("random", 50), seed=1)
    b = initial_labelled(LABELS, InitialSet("random", 50), seed=1)
    c = initial_labelled(LABELS, InitialSet("random", 50), seed=2)
    assert a.tolist() == b.tolist() != c.tolist()
    assert np.unique(a).size == 50


def test_stratified_initial_balances_classes():
    idx = initial_labelled(LABELS, InitialSet("stratified", 53), seed=0)
    counts = np.bincount(LABELS[idx], minlength=10)
    assert counts.sum() == 53 and counts.min() == 5 and counts.max() == 6 and (counts == 6).sum() == 3


def test_class_subset_initial_is_the_study_start():
    idx = initial_labelled(LABELS, InitialSet("classes", 120, [2, 4, 7]), seed=0)
    assert set(LABELS[idx]) == {2, 4, 7} and idx.size == 120
    # the study's start: "[PullOver:166, Coat:167, Sneaker:167]", whatever the seed
    labels = np.repeat(np.arange(10), 300)
    for seed in (0, 1, 2):
        idx = initial_labelled(labels, InitialSet("classes", 500, [2, 4, 7]), seed=seed)
        assert np.bincount(labels[idx], minlength=10)[[2, 4, 7]].tolist() == [166, 167, 167]
        assert np.unique(idx).size == 500


def test_initial_budget_errors_name_the_problem():
    with pytest.raises(BudgetError, match="exceeds the pool size 1000"):
        initial_labelled(LABELS, InitialSet("random", 1001), seed=0)
    with pytest.raises(BudgetError, match="classes \\[2\\]"):
        initial_labelled(LABELS, InitialSet("classes", 101, [2]), seed=0)
    with pytest.raises(ValueError, match="initial.kind"):
        InitialSet("balanced", 10)
