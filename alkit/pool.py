"""The labelled/unlabelled split of the pool, and initial labelled sets.

:class:`Pool` is the one object that owns which pool indices are labelled.
Only the active-learning loop calls :meth:`Pool.label`; strategies receive
read-only index arrays and never the labels of unlabelled points.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .config import ConfigError


class BudgetError(ValueError):
    """A request for more points than the pool can give."""


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    a.setflags(write=False)
    return a


class Pool:
    """Labelled mask over ``size`` pool points (indices ``0..size-1``).

    >>> p = Pool(5, labelled=[0, 3])
    >>> p.unlabelled_indices().tolist()
    [1, 2, 4]
    """

    def __init__(self, size: int, labelled: Sequence[int] = ()):
        self.size = int(size)
        self._mask = np.zeros(self.size, dtype=bool)
        self.label(labelled)

    @property
    def n_labelled(self) -> int:
        return int(self._mask.sum())

    @property
    def n_unlabelled(self) -> int:
        return self.size - self.n_labelled

    def labelled_indices(self) -> np.ndarray:
        """Sorted pool indices of labelled points (read-only array)."""
        return _readonly(np.flatnonzero(self._mask))

    def unlabelled_indices(self) -> np.ndarray:
        """Sorted pool indices of unlabelled points (read-only array)."""
        return _readonly(np.flatnonzero(~self._mask))

    def is_labelled(self, indices: Sequence[int]) -> np.ndarray:
        return self._mask[np.asarray(indices, dtype=np.int64)].copy()

    def label(self, indices: Sequence[int]) -> None:
        """Move ``indices`` from unlabelled to labelled.

        Raises ``ValueError`` on out-of-range, duplicate or already-labelled
        indices: a selection bug must never silently shrink a batch.
        """
        idx = np.asarray(indices, dtype=np.int64).ravel()
        if idx.size == 0:
            return
        if idx.min() < 0 or idx.max() >= self.size:
            raise ValueError(f"indices out of range [0, {self.size}): min {idx.min()}, max {idx.max()}")
        if np.unique(idx).size != idx.size:
            raise ValueError("duplicate indices in a labelling request")
        already = idx[self._mask[idx]]
        if already.size:
            raise ValueError(f"{already.size} indices are already labelled, e.g. {already[:5].tolist()}")
        self._mask[idx] = True

    def copy(self) -> "Pool":
        p = Pool(self.size)
        p._mask = self._mask.copy()
        return p


@dataclass
class InitialSet:
    """How the first labelled set is drawn.

    kind: ``random`` (n uniform draws), ``stratified`` (n split as evenly as
    possible over classes) or ``classes`` (n split as evenly as possible over
    ``classes``, the remainder to the *last* listed classes, uniform draws within
    each: the study's 500 images of {2, 4, 7} are exactly 166 / 167 / 167).
    """

    kind: str = "random"
    n: int = 1000
    classes: list[int] = field(default_factory=list)

    def __post_init__(self):
        if self.kind not in ("random", "stratified", "classes"):
            raise ValueError(f"initial.kind must be 'random', 'stratified' or 'classes', got {self.kind!r}")
        if self.n < 1:
            raise ValueError(f"initial.n must be >= 1, got {self.n}")
        if self.kind == "classes" and not self.classes:
            raise ValueError("initial.kind 'classes' needs a non-empty initial.classes list")

    def check_classes(self, num_classes: int, dataset: str = "the dataset") -> None:
        """A :class:`ConfigError` naming the classes that are not in ``0..num_classes - 1``."""
        bad = [c for c in self.classes if not 0 <= c < num_classes]
        if bad:
            raise ConfigError(f"initial.classes: {self.classes}: {', '.join(map(str, bad))} "
                              f"{'is' if len(bad) == 1 else 'are'} not a class of {dataset}; "
                              f"allowed: class numbers 0..{num_classes - 1}")


def initial_labelled(labels: np.ndarray, spec: InitialSet, seed: int, num_classes: int | None = None) -> np.ndarray:
    """Pool indices of the initial labelled set (sorted), drawn with ``seed``.

    ``labels`` are the pool labels: drawing a stratified or class-restricted
    start is an oracle query the experimenter makes once, before the loop. ``num_classes``: the dataset's
    (``Data.num_classes``); None: the labels' own, ``max + 1``.
    """
    labels = np.asarray(labels)
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if labels.size else 0
    rng = np.random.default_rng([seed, 0xA1])
    if spec.kind == "random":
        if spec.n > labels.size:
            raise BudgetError(f"initial.n={spec.n} exceeds the pool size {labels.size}")
        return np.sort(rng.choice(labels.size, size=spec.n, replace=False))
    if spec.kind == "classes":
        spec.check_classes(num_classes)
        candidates = np.flatnonzero(np.isin(labels, spec.classes))
        if spec.n > candidates.size:
            raise BudgetError(
                f"initial.n={spec.n} exceeds the {candidates.size} pool points of classes {spec.classes}"
            )
        # the study's "[PullOver:166, Coat:167, Sneaker:167]": n // k each, the remainder to the last classes
        k = len(spec.classes)
        per = [spec.n // k + (i >= k - spec.n % k) for i in range(k)]
        chosen = []
        for c, m in zip(spec.classes, per):
            members = np.flatnonzero(labels == c)
            if m > members.size:
                raise BudgetError(f"initial.n={spec.n} over classes {spec.classes} needs {m} points of class {c}, "
                                  f"pool has {members.size}")
            chosen.append(rng.choice(members, size=m, replace=False))
        return np.sort(np.concatenate(chosen))
    # stratified: n // C per class, the remainder to randomly chosen classes
    per_class = np.full(num_classes, spec.n // num_classes)
    per_class[rng.choice(num_classes, size=spec.n % num_classes, replace=False)] += 1
    chosen = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        if per_class[c] > members.size:
            raise BudgetError(f"stratified start needs {per_class[c]} points of class {c}, pool has {members.size}")
        chosen.append(rng.choice(members, size=per_class[c], replace=False))
    return np.sort(np.concatenate(chosen))
